//! Benchmark: plan `run_all` for synthetic pipelines, against Snakemake's dry
//! run of the same graph. Run it through `bench/planner.sh`, which installs
//! Snakemake and builds this in release mode.
//!
//! ```text
//! bench_plan [--sizes 1000,10000,100000] [--runs 15] [--snakemake PATH]
//!            [--snakemake-runs 3] [--timeout 300] [--workdir DIR]
//! ```
//!
//! The pipeline is built in Rust (no parsing): only planning is timed, from
//! the `Pipeline` value to the finished list of jobs (graph, ids, run
//! commands). Snakemake is timed as a whole process (`snakemake -n`), so its
//! figure also includes interpreter start-up and reading the Snakefile; the
//! time for a one-rule Snakefile is printed as that floor.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use warden_pipeline::{Action, Command, Outputs, Pipeline};
use warden_planner::{JobRequest, JobState, NoHistory, Plan, PriorJob, plan};

struct Options {
    sizes: Vec<usize>,
    runs: usize,
    snakemake: Option<PathBuf>,
    snakemake_runs: usize,
    timeout: Duration,
    workdir: PathBuf,
}

fn parse_options() -> Options {
    let mut options = Options {
        sizes: vec![1_000, 10_000, 100_000],
        runs: 15,
        snakemake: None,
        snakemake_runs: 3,
        timeout: Duration::from_secs(300),
        workdir: std::env::temp_dir().join("warden-bench-planner"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--sizes" => {
                options.sizes = value()
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .replace('_', "")
                            .parse()
                            .unwrap_or_else(|_| usage("bad size"))
                    })
                    .collect();
            }
            "--runs" => options.runs = value().parse().unwrap_or_else(|_| usage("bad --runs")),
            "--snakemake" => options.snakemake = Some(PathBuf::from(value())),
            "--snakemake-runs" => {
                options.snakemake_runs = value()
                    .parse()
                    .unwrap_or_else(|_| usage("bad --snakemake-runs"));
            }
            "--timeout" => {
                let secs: u64 = value().parse().unwrap_or_else(|_| usage("bad --timeout"));
                options.timeout = Duration::from_secs(secs);
            }
            "--workdir" => options.workdir = PathBuf::from(value()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    options.runs = options.runs.max(1);
    options.snakemake_runs = options.snakemake_runs.max(1);
    options
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("bench_plan: {problem}");
    }
    eprintln!(
        "usage: bench_plan [--sizes 1000,10000,100000] [--runs N] [--snakemake PATH] \
         [--snakemake-runs N] [--timeout SECS] [--workdir DIR]"
    );
    std::process::exit(2)
}

/// The needs of action `i`: blocks of 100 actions; action 0 and each block's
/// first action (which fans in the previous block's last 10) are heads; the
/// next 10 fan out from the head; the rest chain on `i-1` and `i-10`.
fn needs_of(i: usize) -> Vec<usize> {
    match (i, i % 100) {
        (0, _) => vec![],
        (_, 0) => (i - 10..i).collect(),
        (_, w) if w <= 10 => vec![i - w],
        _ => vec![i - 1, i - 10],
    }
}

fn outputs_of(i: usize) -> Vec<(&'static str, String)> {
    let mut outputs = vec![("highly_sensitive", format!("output/a{i}.csv"))];
    if i > 0 && i.is_multiple_of(100) {
        outputs.push(("moderately_sensitive", format!("output/summary_{i}.csv")));
    }
    outputs
}

fn synthetic_pipeline(n: usize) -> Pipeline {
    let mut actions = IndexMap::with_capacity(n);
    for i in 0..n {
        let name = format!("a{i}");
        let (raw, config) = match (i, i % 100) {
            (0, _) => (
                "ehrql:v1 generate-dataset analysis/dataset.py --output output/a0.csv".to_owned(),
                None,
            ),
            (_, 0) => (
                "r:latest analysis/aggregate.R".to_owned(),
                Some(serde_json::json!({"block": i / 100, "label": "it's a summary"})),
            ),
            _ => (
                format!("python:latest python analysis/step.py --index {i}"),
                None,
            ),
        };
        let mut outputs = Outputs::default();
        for (level, pattern) in outputs_of(i) {
            let map = if level == "highly_sensitive" {
                &mut outputs.highly_sensitive
            } else {
                &mut outputs.moderately_sensitive
            };
            map.get_or_insert_with(IndexMap::new)
                .insert(format!("o{i}"), pattern);
        }
        let action = Action {
            id: name.clone(),
            run: Command {
                parts: raw.split(' ').map(str::to_owned).collect(),
                raw,
            },
            outputs,
            needs: needs_of(i).into_iter().map(|j| format!("a{j}")).collect(),
            config,
            dummy_data_file: None,
            line: i * 6 + 4,
            column: 3,
        };
        actions.insert(name, action);
    }
    Pipeline {
        version: 4.0,
        actions,
        expectations: None,
    }
}

/// The same graph as a Snakefile: one rule per action, inputs = outputs of
/// its needs, outputs touched; `rule all` asks for every output.
fn snakefile(n: usize) -> String {
    let mut text = String::with_capacity(n * 120);
    text.push_str("rule all:\n    input:\n");
    for i in 0..n {
        for (_, pattern) in outputs_of(i) {
            let _ = writeln!(text, "        \"{pattern}\",");
        }
    }
    for i in 0..n {
        let _ = write!(text, "\nrule a{i}:\n");
        let needs = needs_of(i);
        if !needs.is_empty() {
            text.push_str("    input:\n");
            for j in needs {
                for (_, pattern) in outputs_of(j) {
                    let _ = writeln!(text, "        \"{pattern}\",");
                }
            }
        }
        text.push_str("    output:\n");
        for (_, pattern) in outputs_of(i) {
            let _ = writeln!(text, "        \"{pattern}\",");
        }
        text.push_str("    shell:\n        \"touch {output}\"\n");
    }
    text
}

/// CPU time of this thread so far, so that a busy shared machine inflates
/// wall time but not this.
fn thread_cpu() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u32::try_from(t.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2
    }
}

/// Wall and CPU time of planning `run_all`, over several runs.
struct WardenTimes {
    wall: Duration,
    min: Duration,
    max: Duration,
    cpu: Option<Duration>,
    runs: usize,
}

/// Plans `run_all` on `pipeline` with `history` `runs` times after a warm-up.
fn time_warden<H: warden_planner::History>(
    pipeline: &Pipeline,
    history: &H,
    runs: usize,
    expect_jobs: Option<usize>,
) -> WardenTimes {
    let request = JobRequest::new("benchrequest0000", ["run_all"]);
    // Warm-up, and a check that the plan is the one intended.
    let outcome = plan(pipeline, &request, history).expect("plan");
    match (&outcome, expect_jobs) {
        (Plan::Jobs(jobs), Some(n)) => assert_eq!(jobs.len(), n),
        (Plan::NothingToDo(_), None) => {}
        _ => panic!("unexpected plan outcome"),
    }
    drop(outcome);
    let mut walls = Vec::with_capacity(runs);
    let mut cpus = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_start = thread_cpu();
        let start = Instant::now();
        let outcome = plan(black_box(pipeline), &request, history);
        let elapsed = start.elapsed();
        let cpu_end = thread_cpu();
        black_box(&outcome);
        drop(outcome);
        walls.push(elapsed);
        if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
            cpus.push(b.saturating_sub(a));
        }
    }
    let min = *walls.iter().min().expect("runs");
    let max = *walls.iter().max().expect("runs");
    WardenTimes {
        wall: median(&mut walls),
        min,
        max,
        cpu: (cpus.len() == runs).then(|| median(&mut cpus)),
        runs,
    }
}

enum SnakemakeRun {
    /// Wall time, and CPU time (user + system, its children included) when
    /// `/proc` could tell.
    Finished(Duration, Option<Duration>),
    TimedOut,
    Failed(String),
}

/// User + system CPU time of a process that has exited but is not reaped
/// yet, from `/proc/<pid>/stat` (its waited-for children included); `None`
/// while it still runs.
fn zombie_cpu(pid: u32) -> Option<Option<Duration>> {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Some(None);
    };
    // Fields after the `(comm)`: state is the 3rd field, utime the 14th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    let ticks: u64 = fields[11..15]
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Some(Some(Duration::from_millis(ticks * 10)))
}

/// Runs `snakemake -n` on the Snakefile in `dir`, timing the whole process.
fn time_snakemake(snakemake: &Path, dir: &Path, timeout: Duration) -> SnakemakeRun {
    // A stale `.snakemake` from an earlier run could make it skip work.
    let _ = std::fs::remove_dir_all(dir.join(".snakemake"));
    let log = dir.join("snakemake.stderr");
    let Ok(stderr) = std::fs::File::create(&log) else {
        return SnakemakeRun::Failed(format!("cannot write {}", log.display()));
    };
    let start = Instant::now();
    let child = Process::new(snakemake)
        .args([
            "--dry-run",
            "--quiet",
            "all",
            "--cores",
            "1",
            "--snakefile",
            "Snakefile",
            "all",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return SnakemakeRun::Failed(format!("cannot start {}: {e}", snakemake.display()));
        }
    };
    // Poll without reaping, so the exited process's CPU times can be read.
    let cpu = loop {
        if let Some(cpu) = zombie_cpu(child.id()) {
            break cpu;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return SnakemakeRun::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    match child.wait() {
        Ok(status) if status.success() => SnakemakeRun::Finished(elapsed, cpu),
        Ok(status) => {
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            SnakemakeRun::Failed(format!("{status}: {}", tail.join(" | ")))
        }
        Err(e) => SnakemakeRun::Failed(e.to_string()),
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn with_commas(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(d: Option<Duration>, show: fn(Duration) -> String) -> String {
    d.map_or_else(|| "n/a".to_owned(), show)
}

fn ratio(snakemake: Option<Duration>, warden: Option<Duration>) -> String {
    match (snakemake, warden) {
        (Some(s), Some(w)) if !w.is_zero() => {
            format!(
                "{}x",
                with_commas((s.as_secs_f64() / w.as_secs_f64()).round() as usize)
            )
        }
        _ => "n/a".to_owned(),
    }
}

fn main() {
    let options = parse_options();
    println!(
        "warden planner benchmark: plan `run_all` on a fresh workspace (every action gets a job)"
    );
    println!(
        "graph: blocks of 100 actions; each block head fans in the last 10 actions of the \
         previous block and fans out to the next 10; the others chain on a(i-1) and a(i-10)"
    );
    println!(
        "warden: planning only (the pipeline is built in memory), median of the runs after a \
         warm-up; `nothing-to-do` = the same with every action already succeeded"
    );
    if let Some(snakemake) = &options.snakemake {
        let version = Process::new(snakemake)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|e| format!("unavailable ({e})"));
        println!(
            "snakemake {version}: `snakemake --dry-run --quiet all --cores 1 all` on an \
             equivalent Snakefile (one rule per action), whole process timed, median of up to {} \
             runs (1 when a run exceeds 60 s), {} s timeout",
            options.snakemake_runs,
            options.timeout.as_secs()
        );
        let dir = options.workdir.join("floor");
        std::fs::create_dir_all(&dir).expect("workdir");
        std::fs::write(dir.join("Snakefile"), snakefile(1)).expect("write Snakefile");
        let mut samples = Vec::new();
        for _ in 0..options.snakemake_runs {
            if let SnakemakeRun::Finished(d, _) = time_snakemake(snakemake, &dir, options.timeout) {
                samples.push(d);
            }
        }
        if !samples.is_empty() {
            println!(
                "snakemake floor (start-up and a one-rule Snakefile): {}",
                secs(median(&mut samples))
            );
        }
    } else {
        println!("snakemake: not measured");
    }
    println!("ratio = snakemake median / warden median, both measured in this run");

    let mut goals = Vec::new();
    for &n in &options.sizes {
        let pipeline = synthetic_pipeline(n);
        let edges: usize = pipeline.actions.values().map(|a| a.needs.len()).sum();
        let runs = if n >= 100_000 {
            options.runs.div_ceil(3).max(3)
        } else {
            options.runs
        };
        let warden = time_warden(&pipeline, &NoHistory, runs, Some(n));
        let done: std::collections::HashMap<String, PriorJob> = pipeline
            .actions
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    PriorJob::new(format!("done-{k}"), JobState::Succeeded),
                )
            })
            .collect();
        let nothing = time_warden(&pipeline, &done, runs, None);

        println!();
        println!(
            "{:>9} actions ({} needs)",
            with_commas(n),
            with_commas(edges)
        );
        println!(
            "    warden     wall {} (min {}, max {}, {} runs)   cpu {}   nothing-to-do {}",
            ms(warden.wall),
            ms(warden.min),
            ms(warden.max),
            warden.runs,
            opt(warden.cpu, ms),
            ms(nothing.wall),
        );
        let mut snake_wall = None;
        let mut timed_out = false;
        if let Some(snakemake) = &options.snakemake {
            let dir = options.workdir.join(format!("n{n}"));
            std::fs::create_dir_all(&dir).expect("workdir");
            std::fs::write(dir.join("Snakefile"), snakefile(n)).expect("write Snakefile");
            let mut walls = Vec::new();
            let mut cpus = Vec::new();
            let mut problem = None;
            for _ in 0..options.snakemake_runs {
                match time_snakemake(snakemake, &dir, options.timeout) {
                    SnakemakeRun::Finished(wall, cpu) => {
                        walls.push(wall);
                        cpus.extend(cpu);
                        if wall > Duration::from_secs(60) {
                            break;
                        }
                    }
                    SnakemakeRun::TimedOut => {
                        problem = Some(format!(
                            "stopped after the {} s timeout: more than {} s",
                            options.timeout.as_secs(),
                            options.timeout.as_secs()
                        ));
                        timed_out = true;
                        break;
                    }
                    SnakemakeRun::Failed(e) => {
                        problem = Some(format!("failed: {e}"));
                        break;
                    }
                }
            }
            if walls.is_empty() {
                println!("    snakemake  {}", problem.unwrap_or_default());
                if timed_out {
                    let lower = Some(options.timeout);
                    println!(
                        "    ratio      more than {} wall",
                        ratio(lower, Some(warden.wall))
                    );
                    snake_wall = lower;
                }
            } else {
                let count = walls.len();
                let wall = median(&mut walls);
                let cpu = (cpus.len() == count).then(|| median(&mut cpus));
                println!(
                    "    snakemake  wall {} ({count} runs)   cpu {}",
                    secs(wall),
                    opt(cpu, secs)
                );
                println!(
                    "    ratio      {} wall   {} cpu",
                    ratio(Some(wall), Some(warden.wall)),
                    ratio(cpu, warden.cpu)
                );
                snake_wall = Some(wall);
            }
        }
        goals.push((n, warden.wall, snake_wall, timed_out));
    }

    println!();
    for (n, warden, snake, timed_out) in goals {
        if n != 10_000 {
            continue;
        }
        let fast = warden < Duration::from_millis(100);
        println!(
            "goal: 10,000 actions plan in under 100 ms: {} ({})",
            if fast { "met" } else { "NOT met" },
            ms(warden)
        );
        if let Some(snake) = snake {
            let r = snake.as_secs_f64() / warden.as_secs_f64();
            println!(
                "goal: at least 50x faster than snakemake -n at 10,000 actions: {} ({}{})",
                if r >= 50.0 { "met" } else { "NOT met" },
                if timed_out { "more than " } else { "" },
                ratio(Some(snake), Some(warden))
            );
        }
    }
}
