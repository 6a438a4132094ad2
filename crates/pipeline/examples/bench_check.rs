//! In-process timing of `warden_pipeline::check`, for `bench/pipeline.sh`.
//!
//! ```text
//! bench_check --runs K FILE...   median of K runs per file, and of all files as one batch (JSON)
//! bench_check --once FILE        check one file once (for peak-RSS measurement)
//! ```
//! Files are read before timing starts; the timed part is parse + validate of the text.
//! The JSON has the same shape as `scripts/oracle/oracle.py --bench`.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--once") if args.len() == 2 => {
            let text = read(&args[1]);
            let report = warden_pipeline::check(&text);
            let n_actions = report.pipeline.as_ref().map_or(0, |p| p.actions.len());
            println!(
                "{}: {} ({} actions, {} errors)",
                args[1],
                if report.is_valid() {
                    "valid"
                } else {
                    "invalid"
                },
                n_actions,
                report.errors.len()
            );
            if let Some(d) = report.first_error() {
                println!(
                    "first error: {:?} at {}:{} (offset {}, len {}): {}",
                    d.kind, d.line, d.column, d.offset, d.len, d.message
                );
            }
        }
        Some("--runs") if args.len() >= 3 => {
            let k: usize = args[1].parse().expect("--runs K");
            assert!(k > 0, "--runs K with K > 0");
            let files: Vec<(String, String)> =
                args[2..].iter().map(|p| (p.clone(), read(p))).collect();
            let mut per_file = vec![Vec::with_capacity(k); files.len()];
            let mut batch = Vec::with_capacity(k);
            let mut valid = 0;
            for run in 0..k {
                let mut total = 0.0;
                for (i, (_, text)) in files.iter().enumerate() {
                    let start = Instant::now();
                    let report = black_box(warden_pipeline::check(black_box(text)));
                    let dt = start.elapsed().as_secs_f64();
                    if run == 0 && report.is_valid() {
                        valid += 1;
                    }
                    drop(report);
                    per_file[i].push(dt);
                    total += dt;
                }
                batch.push(total);
            }
            let mut medians = serde_json::Map::new();
            for ((path, _), times) in files.iter().zip(per_file.iter_mut()) {
                medians.insert(path.clone(), json!(median(times)));
            }
            let out = json!({
                "k": k,
                "valid": valid,
                "files": medians,
                "batch_median_s": median(&mut batch),
            });
            println!("{out}");
        }
        _ => {
            eprintln!("usage: bench_check --runs K FILE... | bench_check --once FILE");
            std::process::exit(2);
        }
    }
}
