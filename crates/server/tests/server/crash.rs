//! kill -9 of the server in the middle of scheduling: the real
//! `warden-server` binary runs as a child process, set up with its own admin
//! commands; a test agent keeps completing tasks; the server is killed with
//! SIGKILL while it reacts to them; every job must then be in a true state in
//! the database, and after a restart on the same data scheduling resumes and
//! everything finishes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_state::{State, StatusCode, Store, StoreOptions, TaskType};

use crate::common::{Db, STUDY, StudyRepo, database, drop_schema, now_ns};
use crate::db_tests;

db_tests!(
    kill_nine_mid_scheduling_leaves_true_states,
    admin_commands_reach_a_running_server,
);

const BIN: &str = env!("CARGO_BIN_EXE_warden-server");
const WORKSPACES: usize = 8;

struct Setup {
    data_dir: PathBuf,
    database_url: Option<String>,
    pg_schema: Option<String>,
}

impl Setup {
    fn db_args(&self) -> Vec<String> {
        let mut args = vec!["--data-dir".to_owned(), self.data_dir.display().to_string()];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        if let Some(schema) = &self.pg_schema {
            args.extend(["--pg-schema".to_owned(), schema.clone()]);
        }
        args
    }

    /// Runs `warden-server admin <args>` and returns its stdout.
    fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .arg("admin")
            .args(self.db_args())
            .args(args)
            .output()
            .expect("run admin");
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Starts `warden-server serve` (safety-net poll: `poll_ms`) and waits
    /// for its address.
    fn serve(&self, dir: &Path, poll_ms: u64) -> ServerProcess {
        let addr_file = dir.join(format!("addr-{}", rand::random::<u32>()));
        let child = Command::new(BIN)
            .arg("serve")
            .args(self.db_args())
            .args(["--bind", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .args(["--max-workers", "3", "--log", "warn", "--poll-interval-ms"])
            .arg(poll_ms.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn server");
        let mut server = ServerProcess {
            child,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                server.url = format!("http://{addr}");
                return server;
            }
            // (Dropping `server` kills it.)
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn store(&self) -> Store {
        match &self.database_url {
            None => Store::open_sqlite(self.data_dir.join("warden.sqlite"))
                .await
                .unwrap(),
            Some(url) => Store::open_with(StoreOptions {
                pg_schema: self.pg_schema.clone(),
                ..StoreOptions::new(url.clone())
            })
            .await
            .unwrap(),
        }
    }
}

/// A running `warden-server serve`; killed (SIGKILL) and reaped when
/// dropped, so a failing test leaves no server behind.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    /// kill -9, and wait for it to be gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test agent: pulls tasks and runs each through every stage to success,
/// against whatever server `base` points at, ignoring connection errors.
fn agent(
    base: Arc<Mutex<String>>,
    token: String,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while !stop.load(Ordering::SeqCst) {
            let url = base.lock().unwrap().clone();
            let tasks: Value = match client
                .get(format!("{url}/api/v1/backends/test/tasks"))
                .bearer_auth(&token)
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            for task in tasks["tasks"].as_array().cloned().unwrap_or_default() {
                let id = task["id"].as_str().unwrap();
                let post = |body: Value| {
                    client
                        .post(format!("{url}/api/v1/backends/test/tasks/{id}"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                };
                let mut ok = true;
                if task["type"] == "runjob" {
                    for stage in [
                        "preparing",
                        "prepared",
                        "executing",
                        "executed",
                        "finalizing",
                    ] {
                        ok &= post(json!({"stage": stage, "timestamp_ns": now_ns()}))
                            .await
                            .is_ok();
                    }
                }
                ok &= post(json!({"stage": "finalized", "complete": true,
                                  "timestamp_ns": now_ns(),
                                  "results": {"exit_code": 0, "output_count": 1}}))
                .await
                .is_ok();
                if ok {
                    completed.fetch_add(1, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Every job is in a true state: its state agrees with its code, times are
/// ordered, and a job is running exactly when its latest RUNJOB task is
/// live (active, or completed by the agent and not yet processed).
async fn check_true_states(store: &Store) -> (usize, usize) {
    let mut finished = 0;
    let jobs = store.list_jobs(&Default::default()).await.unwrap();
    for job in &jobs {
        let tasks = store
            .tasks_for_job(&job.id, Some(TaskType::RunJob))
            .await
            .unwrap();
        let latest = tasks.last();
        for earlier in tasks.iter().rev().skip(1) {
            assert!(
                !earlier.active,
                "{}: an older RUNJOB task is active",
                job.id
            );
        }
        let code_state = match job.status_code {
            StatusCode::Succeeded => Some(State::Succeeded),
            c if c.is_final() => Some(State::Failed),
            StatusCode::Initiated
            | StatusCode::Preparing
            | StatusCode::Prepared
            | StatusCode::Executing
            | StatusCode::Executed
            | StatusCode::Finalizing
            | StatusCode::Finalized => Some(State::Running),
            _ => Some(State::Pending),
        };
        assert_eq!(Some(job.state), code_state, "{job:#?}");
        match job.state {
            State::Running => {
                let task = latest.unwrap_or_else(|| panic!("{}: running without a task", job.id));
                assert!(
                    task.active || task.agent_complete,
                    "{}: running, but its task was dropped: {task:#?}",
                    job.id
                );
                assert!(job.started_at.is_some());
            }
            State::Pending => {
                assert!(
                    latest.is_none_or(|t| !t.active),
                    "{}: pending with an active task",
                    job.id
                );
                assert!(job.started_at.is_none());
            }
            State::Succeeded | State::Failed => {
                assert!(
                    latest.is_none_or(|t| !t.active),
                    "{}: finished with an active task",
                    job.id
                );
                assert!(job.completed_at.is_some());
                finished += 1;
            }
        }
        if let (Some(s), Some(c)) = (job.started_at, job.completed_at) {
            assert!(s <= c, "{job:#?}");
        }
        if let Some(s) = job.started_at {
            assert!(job.created_at <= s, "{job:#?}");
        }
        assert!(job.updated_at >= job.created_at);
    }
    (jobs.len(), finished)
}

async fn kill_nine_mid_scheduling_leaves_true_states(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let repo = StudyRepo::new(dir.path(), STUDY);
    let (database_url, pg_schema) = database(db);
    let setup = Setup {
        data_dir: dir.path().join("data"),
        database_url,
        pg_schema,
    };

    // Set up with the admin commands.
    let agent_token = setup.admin(&["backend", "create", "--slug", "test", "--name", "Test"]);
    assert_eq!(agent_token.len(), 64);
    setup.admin(&["org", "create", "--slug", "org", "--name", "Org"]);
    setup.admin(&[
        "project", "create", "--slug", "study", "--name", "Study", "--org", "org",
    ]);
    for i in 0..WORKSPACES {
        setup.admin(&[
            "workspace",
            "create",
            "--name",
            &format!("ws{i}"),
            "--repo",
            &repo.url(),
            "--branch",
            "main",
            "--project",
            "study",
        ]);
    }
    let dev = setup.admin(&[
        "user",
        "create",
        "--username",
        "dev",
        "--backend",
        "test",
        "--developer-of",
        "study",
    ]);
    assert_eq!(dev.len(), 64);

    let mut server = setup.serve(dir.path(), 3_600_000);
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..WORKSPACES {
        let r: Value = client
            .post(format!("{url}/api/v1/job-requests"))
            .bearer_auth(&dev)
            .json(
                &json!({"workspace": format!("ws{i}"), "backend": "test", "actions": ["run_all"]}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["job_request"]["id"].as_str().expect("created").to_owned());
    }
    // One request is cancelled along the way.
    let resp = client
        .post(format!("{url}/api/v1/job-requests/{}/cancel", ids[0]))
        .bearer_auth(&dev)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let base = Arc::new(Mutex::new(url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let agent = agent(base.clone(), agent_token, stop.clone(), completed.clone());

    // Kill -9 while the scheduler is reacting to the agent's reports.
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed.load(Ordering::SeqCst) < 6 {
        assert!(Instant::now() < deadline, "the agent made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill(); // SIGKILL

    let store = setup.store().await;
    let (total, finished) = check_true_states(&store).await;
    assert_eq!(total, WORKSPACES * 4);
    assert!(finished < total, "the kill came too late to test anything");
    eprintln!("killed with {finished} of {total} jobs finished");

    // Restart on the same data: scheduling resumes and everything finishes.
    let mut server = setup.serve(dir.path(), 3_600_000);
    let url = server.url.clone();
    *base.lock().unwrap() = url.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // (Only counted while the server runs: the full check reads jobs and
        // tasks in separate queries, so it needs a server at rest.)
        let finished = store
            .list_jobs(&Default::default())
            .await
            .unwrap()
            .iter()
            .filter(|j| j.state.is_final())
            .count();
        if finished == total {
            break;
        }
        assert!(Instant::now() < deadline, "scheduling did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    agent.await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let r: Value = client
            .get(format!("{url}/api/v1/job-requests/{id}"))
            .bearer_auth(&dev)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if i == 0 {
            assert_eq!(r["status"], "failed", "{r:#}");
        } else {
            assert_eq!(r["status"], "succeeded", "{r:#}");
            for j in r["jobs"].as_array().unwrap() {
                assert_eq!(j["status_code"], "succeeded", "{j:#}");
            }
        }
    }
    // No task is left behind, and every state is still true.
    assert!(store.active_tasks("test").await.unwrap().is_empty());
    assert_eq!(check_true_states(&store).await, (total, total));
    server.kill();
    store.close().await;
    if let (Some(url), Some(schema)) = (&setup.database_url, &setup.pg_schema) {
        drop_schema(url, schema).await;
    }
}

/// `warden admin` works on the database directly; a running server sees a
/// pause or unpause made that way at its next safety-net poll.
async fn admin_commands_reach_a_running_server(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let repo = StudyRepo::new(dir.path(), STUDY);
    let (database_url, pg_schema) = database(db);
    let setup = Setup {
        data_dir: dir.path().join("data"),
        database_url,
        pg_schema,
    };
    setup.admin(&["backend", "create", "--slug", "test", "--name", "Test"]);
    setup.admin(&["project", "create", "--slug", "study", "--name", "Study"]);
    setup.admin(&[
        "workspace",
        "create",
        "--name",
        "ws",
        "--repo",
        &repo.url(),
        "--project",
        "study",
    ]);
    let dev = setup.admin(&[
        "user",
        "create",
        "--username",
        "dev",
        "--backend",
        "test",
        "--developer-of",
        "study",
    ]);
    let second = setup.admin(&["user", "token", "--username", "dev", "--label", "second"]);
    assert_ne!(dev, second);
    setup.admin(&[
        "backend",
        "workers",
        "--slug",
        "test",
        "--max-workers",
        "1",
        "--max-db-workers",
        "0",
    ]);
    setup.admin(&["backend", "pause", "--slug", "test"]);
    // Bad input to an admin command fails with a message and exit status 1.
    let out = Command::new(BIN)
        .arg("admin")
        .args(setup.db_args())
        .args(["backend", "pause", "--slug", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backend \"nowhere\""));

    let mut server = setup.serve(dir.path(), 100);
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{url}/api/v1/job-requests"))
        .bearer_auth(&second)
        .json(&json!({"workspace": "ws", "backend": "test", "actions": ["run_all"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["job_request"]["id"]
        .as_str()
        .expect("created")
        .to_owned();
    let codes = || async {
        let r: Value = client
            .get(format!("{url}/api/v1/job-requests/{id}"))
            .bearer_auth(&dev)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["action"].as_str().unwrap().to_owned(),
                    j["status_code"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let wait = |action: &'static str, code: &'static str| {
        let codes = &codes;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = codes().await;
                if now[action] == code {
                    return now;
                }
                assert!(
                    Instant::now() < deadline,
                    "{action} never became {code}: {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait("other", "paused").await;
    setup.admin(&["backend", "unpause", "--slug", "test"]);
    // One worker slot, no database slots: `other` starts, `extract` waits.
    let now = wait("other", "initiated").await;
    assert_eq!(now["extract"], "waiting_on_db_workers");
    server.kill();
    if let (Some(url), Some(schema)) = (&setup.database_url, &setup.pg_schema) {
        drop_schema(url, schema).await;
    }
}
