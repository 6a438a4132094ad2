//! Load client for `bench/server.sh`.
//!
//! ```text
//! load study   --actions 50 > project.yaml
//! load setup   --data-dir D [--database-url U --pg-schema S] --repo R --workspaces N
//!              (creates backend `bench`, project, N workspaces `ws0..` (and a spare one),
//!               and user `bench`; prints the user's token)
//! load run     --url http://127.0.0.1:PORT --token T --requests N --concurrency C
//!              --workspaces W --commit SHA [--label L] [--warmup]
//!              (request i asks for `run_all` in workspace `ws{i % W}`; prints one JSON
//!               line: throughput, p50/p99/max latency, outcomes)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_state::{NewBackend, NewProject, NewUser, NewWorkspace, Store, StoreOptions};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn req(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| panic!("missing {name}"))
}

/// A study of `n` actions: one database extract, then python actions that
/// each need the previous one and, every fifth, the one before that too, and
/// every seventh the extract (a graph with chains, fan-in and fan-out).
fn study(n: usize) -> String {
    let mut out = String::from("version: '4.0'\nactions:\n");
    out.push_str(
        "  extract:\n    run: ehrql:v1 generate-dataset analysis/dataset.py --output output/extract.csv.gz\n    outputs:\n      highly_sensitive:\n        dataset: output/extract.csv.gz\n",
    );
    let name = |i: usize| {
        if i == 0 {
            "extract".to_owned()
        } else {
            format!("step_{i:02}")
        }
    };
    for i in 1..n {
        let mut needs = vec![name(i - 1)];
        if i % 5 == 0 && i >= 2 {
            needs.push(name(i - 2));
        }
        if i % 7 == 0 && i > 1 {
            needs.push(name(0));
        }
        out.push_str(&format!(
            "  {}:\n    run: python:latest python analysis/{}.py\n    needs: [{}]\n    outputs:\n      moderately_sensitive:\n        table: output/{}.csv\n",
            name(i),
            name(i),
            needs.join(", "),
            name(i)
        ));
    }
    out
}

async fn setup(args: &[String]) {
    let data_dir = std::path::PathBuf::from(req(args, "--data-dir"));
    let url = arg(args, "--database-url")
        .unwrap_or_else(|| data_dir.join("warden.sqlite").display().to_string());
    std::fs::create_dir_all(&data_dir).unwrap();
    let store = Store::open_with(StoreOptions {
        pg_schema: arg(args, "--pg-schema"),
        ..StoreOptions::new(url)
    })
    .await
    .expect("open store");
    let repo = req(args, "--repo");
    let n: usize = req(args, "--workspaces").parse().unwrap();
    store
        .create_backend(&NewBackend {
            slug: "bench".into(),
            name: "Bench".into(),
        })
        .await
        .unwrap();
    let project = store
        .create_project(&NewProject {
            slug: "bench".into(),
            name: "Bench".into(),
            org_id: None,
        })
        .await
        .unwrap();
    for i in 0..=n {
        store
            .create_workspace(&NewWorkspace {
                name: format!("ws{i}"),
                repo_url: repo.clone(),
                branch: "main".into(),
                project_id: Some(project.id),
            })
            .await
            .unwrap();
    }
    let user = store
        .create_user(&NewUser {
            username: "bench".into(),
            fullname: "Bench".into(),
            email: "bench@example.org".into(),
            roles: vec!["admin".into()],
        })
        .await
        .unwrap();
    let (_, token) = store.create_user_token(user.id, "bench").await.unwrap();
    store.close().await;
    println!("{token}");
}

async fn run(args: &[String]) {
    let url = req(args, "--url");
    let token = req(args, "--token");
    let requests: usize = req(args, "--requests").parse().unwrap();
    let concurrency: usize = req(args, "--concurrency").parse().unwrap();
    let workspaces: usize = req(args, "--workspaces").parse().unwrap();
    let commit = req(args, "--commit");
    let label = arg(args, "--label").unwrap_or_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    if args.iter().any(|a| a == "--warmup") {
        // One request, not measured, on the spare workspace `ws{W}`: the
        // server clones the repository and parses project.yaml once.
        let resp = client
            .post(format!("{url}/api/v1/job-requests"))
            .bearer_auth(&token)
            .json(
                &json!({"workspace": format!("ws{workspaces}"), "backend": "bench",
                          "actions": ["run_all"], "commit": commit}),
            )
            .send()
            .await
            .expect("send");
        assert!(
            resp.status().is_success(),
            "warm-up failed: {}",
            resp.status()
        );
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, token, commit, next) = (
            client.clone(),
            url.clone(),
            token.clone(),
            commit.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut results: Vec<(Duration, u16, String, u64)> = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= requests {
                    break;
                }
                let body = json!({"workspace": format!("ws{}", i % workspaces), "backend": "bench",
                                  "actions": ["run_all"], "commit": commit});
                let t = Instant::now();
                let resp = client
                    .post(format!("{url}/api/v1/job-requests"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("send");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let elapsed = t.elapsed();
                results.push((
                    elapsed,
                    status,
                    body["result"].as_str().unwrap_or("error").to_owned(),
                    body["count"].as_u64().unwrap_or(0),
                ));
            }
            results
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = all.iter().map(|r| r.0.as_secs_f64() * 1000.0).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let count = |r: &str| all.iter().filter(|x| x.2 == r).count();
    let errors = all.iter().filter(|x| x.1 >= 400).count();
    let jobs: u64 = all.iter().map(|x| x.3).sum();
    println!(
        "{}",
        json!({
            "label": label,
            "requests": all.len(),
            "concurrency": concurrency,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "throughput_per_s": (all.len() as f64 / seconds * 10.0).round() / 10.0,
            "p50_ms": (pct(0.50) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "max_ms": (lat[lat.len() - 1] * 100.0).round() / 100.0,
            "created": count("created"),
            "nothing_to_do": count("nothing_to_do"),
            "errors": errors,
            "jobs_created": jobs,
        })
    );
    if errors > 0 {
        let first = all.iter().find(|x| x.1 >= 400).unwrap();
        eprintln!("first error: HTTP {}", first.1);
        std::process::exit(1);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("study") => print!(
            "{}",
            study(arg(&args, "--actions").map_or(50, |n| n.parse().unwrap()))
        ),
        Some("setup") => setup(&args).await,
        Some("run") => run(&args).await,
        _ => {
            eprintln!("usage: load study|setup|run ... (see the source)");
            std::process::exit(2);
        }
    }
}
