//! `warden run ACTION…`: run a study's actions locally in Docker, on dummy data,
//! with the same planner and executor a backend uses.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context as _;
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warden_executor::{DockerExecutor, ExecutorConfig, PrivacyLevel};
use warden_local::{Event, JobSummary, Outcome, PlanError, RunError, RunOptions, StatusCode};
use warden_pipeline::escape::{escape_name, escape_path};

/// Arguments of `warden run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Actions to run (with what they need), or `run_all` for every action.
    #[arg(required = true, value_name = "ACTION")]
    pub actions: Vec<String>,
    /// Re-run dependencies even when their outputs exist.
    #[arg(short = 'f', long)]
    pub force_run_dependencies: bool,
    /// The study directory.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub project_dir: PathBuf,
    /// Keep going after a job fails: independent actions still run.
    #[arg(long)]
    pub continue_on_error: bool,
    /// Prefix progress lines with a UTC timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// How many jobs may run at once [default: the number of cores].
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// CPUs per job.
    #[arg(long, alias = "cpu", default_value_t = 2.0, value_name = "CPUS")]
    pub cpus: f64,
    /// Memory per job (bytes, or with a K, M or G suffix).
    #[arg(short = 'm', long, default_value = "4G", value_parser = parse_memory, value_name = "SIZE")]
    pub memory: u64,
    /// Most processes and threads per job (a fork loop stops there instead of
    /// filling the machine's process table).
    #[arg(long, default_value_t = warden_executor::DEFAULT_PIDS_LIMIT, value_parser = clap::value_parser!(u64).range(8..), value_name = "N")]
    pub pids_limit: u64,
    /// Don't show the jobs' own output while they run.
    #[arg(long)]
    pub no_logs: bool,
    /// Prefix of image names.
    #[arg(long, env = "WARDEN_IMAGE_PREFIX", default_value = warden_local::DEFAULT_IMAGE_PREFIX)]
    pub image_prefix: String,
}

/// Parses `4G`, `512m`, `1.5G`, `1048576`.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], t[i..].to_ascii_lowercase()),
        None => (t, String::new()),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size: use bytes or a number with K, M or G"))?;
    let mult: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{s}` has an unknown unit: use K, M or G")),
    };
    let bytes = n * mult;
    if bytes.is_nan() || bytes < 6.0 * 1024.0 * 1024.0 {
        return Err(format!("`{s}` is too small: Docker needs at least 6M"));
    }
    Ok(bytes as u64)
}

/// Runs `warden run`: exit 0 when every job succeeded, 1 when one failed or
/// the run could not start, 130 when interrupted.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Diagnostics of the libraries go to stderr: warnings by default, more with
    // `WARDEN_LOG=info` (or `debug`, or per-crate filters such as `warden_executor=debug`).
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.project_dir)
        .with_context(|| format!("cannot resolve `{}`", args.project_dir.display()))?;
    // Validate first: a broken project.yaml or a mistyped action name needs no
    // Docker to be reported.
    let shown = shown_project_file(&args.project_dir);
    let project = match warden_local::load_project(&dir) {
        Ok(project) => project,
        Err(e) => return Ok(report_run_error(&e, &shown)),
    };
    if let Err(e) = warden_local::check_request(&project.pipeline, &args.actions) {
        return Ok(report_run_error(&RunError::Plan(e), &shown));
    }
    warn_about_uncommitted(&dir);

    let executor = match DockerExecutor::connect(ExecutorConfig::local(&dir)).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("hint: warden runs every action in Docker; start Docker and try again");
            return Ok(ExitCode::from(1));
        }
    };
    let cancel = CancellationToken::new();
    let stopped_by = Arc::new(AtomicU8::new(0));
    match watch_signals(cancel.clone(), Arc::clone(&stopped_by)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let show_logs = !args.no_logs;
    let timestamps = args.timestamps;
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            print_event(&event, timestamps, show_logs);
        }
    });
    let opts = RunOptions {
        project_dir: dir.clone(),
        actions: args.actions.clone(),
        force_run_dependencies: args.force_run_dependencies,
        continue_on_error: args.continue_on_error,
        concurrency: args
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        cpu_count: args.cpus,
        memory_limit: args.memory,
        pids_limit: args.pids_limit,
        image_prefix: args.image_prefix.clone(),
        created_by: std::env::var("USER").unwrap_or_else(|_| "local".into()),
    };
    let result = warden_local::run(opts, project, Arc::new(executor), tx, cancel.clone()).await;
    let _ = printer.await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return Ok(report_run_error(&e, &shown)),
    };
    match &outcome {
        Outcome::NothingToDo(lines) => {
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Ran {
            jobs, cancelled, ..
        } => {
            print_summary(&dir, jobs, *cancelled);
            if *cancelled {
                // the terminal may be gone (SIGHUP): never panic on a failed write
                let _ = writeln!(std::io::stderr(), "\n=> Cancelled by user");
                let code = match stopped_by.load(Ordering::SeqCst) {
                    0 => 130,
                    code => code,
                };
                Ok(ExitCode::from(code))
            } else if outcome.all_succeeded() {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// Handles SIGINT (Ctrl-C), SIGTERM and SIGHUP alike: the first cancels the
/// run (running containers are stopped and removed, unfinished jobs recorded
/// as cancelled) and sets the exit code, 128 + the signal's number as shells
/// report it (130, 143, 129); a second one of any quits at once (what it
/// leaves is reaped by the next run).
fn watch_signals(cancel: CancellationToken, stopped_by: Arc<AtomicU8>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let (code, text) = tokio::select! {
            _ = int.recv() => (130u8, "Cancelling: stopping running jobs and cleaning up (Ctrl-C again to quit at once)"),
            _ = term.recv() => (143u8, "Cancelling (SIGTERM): stopping running jobs and cleaning up (send it again to quit at once)"),
            _ = hup.recv() => (129u8, "Cancelling (SIGHUP): stopping running jobs and cleaning up"),
        };
        stopped_by.store(code, Ordering::SeqCst);
        let _ = writeln!(std::io::stderr(), "\n{text}");
        cancel.cancel();
        let again = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
            _ = hup.recv() => 129,
        };
        std::process::exit(again);
    });
    Ok(())
}

/// `project.yaml` as the user would write it: relative to where they are
/// (as `warden check` shows it), so that error locations can be clicked.
fn shown_project_file(project_dir: &Path) -> String {
    if project_dir == Path::new(".") {
        "project.yaml".to_string()
    } else {
        project_dir.join("project.yaml").display().to_string()
    }
}

fn report_run_error(e: &RunError, shown: &str) -> ExitCode {
    match e {
        RunError::InvalidProject { text, report, .. } => {
            eprint!("{}", warden_pipeline::render::human(report, text, shown));
            let n = report.errors.len();
            eprintln!(
                "{shown} is invalid: {n} error{}",
                if n == 1 { "" } else { "s" }
            );
        }
        RunError::Plan(plan) => {
            eprintln!("error: {plan}");
            if let Some(valid) = plan_valid_actions(plan) {
                eprintln!("\n   Valid action names are:");
                eprintln!("     run_all (runs all actions in project)");
                for a in valid {
                    eprintln!("     {a}");
                }
            }
        }
        other => {
            eprint!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                eprint!(": {s}");
                source = s.source();
            }
            eprintln!();
        }
    }
    ExitCode::from(1)
}

fn plan_valid_actions(e: &PlanError) -> Option<&[String]> {
    match e {
        PlanError::NoActions { valid_actions } | PlanError::UnknownAction { valid_actions, .. } => {
            Some(valid_actions)
        }
        _ => None,
    }
}

/// Names every file a backend would not see: uncommitted changes, untracked
/// and ignored files (outside `metadata/` and declared outputs).
fn warn_about_uncommitted(dir: &Path) {
    let status = match warden_git::worktree_status(dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "warning: {} is not in a git repository: a backend runs committed code only",
                escape_path(dir)
            );
            return;
        }
        Err(e) => {
            eprintln!(
                "warning: cannot read the git status of {}: {e}",
                escape_path(dir)
            );
            return;
        }
    };
    let skip = |p: &Path| {
        let s = p.to_string_lossy();
        s == "metadata" || s.starts_with("metadata/") || s.starts_with("output/") || s == "output"
    };
    let mut lines: Vec<String> = Vec::new();
    for (what, list) in [
        ("modified", &status.modified),
        ("deleted", &status.deleted),
        ("untracked", &status.untracked),
        ("ignored", &status.ignored),
    ] {
        for p in list.iter().filter(|p| !skip(p)) {
            lines.push(format!("  {what}: {}", escape_path(p)));
        }
    }
    if lines.is_empty() {
        return;
    }
    eprintln!(
        "warning: {} file(s) here are not committed, so a backend would not see them as they are:",
        lines.len()
    );
    for l in lines.iter().take(30) {
        eprintln!("{l}");
    }
    if lines.len() > 30 {
        eprintln!("  … and {} more", lines.len() - 30);
    }
}

fn now_prefix(timestamps: bool) -> String {
    if !timestamps {
        return String::new();
    }
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z "
    );
    now.format(&fmt).unwrap_or_default()
}

fn print_event(event: &Event, timestamps: bool, show_logs: bool) {
    let mut out = std::io::stdout().lock();
    let p = now_prefix(timestamps);
    let _ = match event {
        Event::Warning(w) => writeln!(out, "{p}warning: {w}"),
        Event::Planned { actions, .. } => {
            let actions: Vec<_> = actions.iter().map(|a| escape_name(a)).collect();
            writeln!(out, "\n{p}Running actions: {}\n", actions.join(", "))
        }
        // One line per line of the message, each naming its action.
        Event::Status { action, message } => message
            .lines()
            .filter(|l| !l.trim().is_empty())
            .try_for_each(|l| writeln!(out, "{p}{}: {l}", escape_name(action))),
        Event::Log { action, line } if show_logs => {
            writeln!(out, "{p}{} | {line}", escape_name(action))
        }
        Event::Log { .. } => Ok(()),
    };
}

/// The final summary: successes first, then failures; jobs that never ran
/// because a dependency failed are named at the end.
fn print_summary(dir: &Path, jobs: &[JobSummary], cancelled: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out);
    let ordered = jobs
        .iter()
        .filter(|j| j.succeeded())
        .chain(jobs.iter().filter(|j| !j.succeeded()));
    let mut skipped = Vec::new();
    for job in ordered {
        if job.code == StatusCode::DependencyFailed {
            skipped.push(job.action.as_str());
            continue;
        }
        let _ = writeln!(out, "=> {}", escape_name(&job.action));
        write_block(&mut out, &job.message);
        if let Some(r) = &job.results {
            if let Some(hint) = &r.hint {
                write_block(&mut out, hint);
            }
            let _ = writeln!(out);
            if let Some(log) = &job.log_path {
                let shown = log.strip_prefix(dir).unwrap_or(log);
                let _ = writeln!(out, "   log file: {}", escape_path(shown));
            }
            let _ = writeln!(out, "   outputs:");
            if r.outputs.is_empty() {
                let _ = writeln!(out, "     (no outputs)");
            }
            // every file name through the one escaping function
            let width = r
                .outputs
                .keys()
                .map(|k| escape_name(k).chars().count())
                .max()
                .unwrap_or(0);
            for (path, level) in &r.outputs {
                let path = escape_name(path);
                let _ = writeln!(out, "     {path:<width$}  - {}", level_name(*level));
            }
            if !r.level4_excluded_files.is_empty() {
                let _ = writeln!(out, "   invalid moderately_sensitive outputs:");
                for (path, why) in &r.level4_excluded_files {
                    let (path, why) = (escape_name(path), escape_name(why));
                    let _ = writeln!(out, "     {path:<width$}  - {why}");
                }
            }
            if !r.skipped_outputs.is_empty() {
                let _ = writeln!(out, "   matched but not copied (not regular files):");
                for (path, why) in &r.skipped_outputs {
                    let (path, why) = (escape_name(path), escape_name(why));
                    let _ = writeln!(out, "     {path}  - {why}");
                }
            }
            if r.exit_code.is_some_and(|c| c != 0)
                && let Some(log) = &job.log_path
                && let Ok(text) = std::fs::read_to_string(log)
            {
                let container = warden_executor::container_part_of_log(&text);
                let tail: Vec<&str> = container.lines().collect();
                let start = tail.len().saturating_sub(32);
                let _ = writeln!(out, "\n   logs (truncated):\n");
                for line in &tail[start..] {
                    let _ = writeln!(out, "     {}", strip_docker_timestamp(line));
                }
            }
        }
        let _ = writeln!(out);
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "=> Not started because a dependency failed: {}\n",
            skipped.join(", ")
        );
    }
    let ok = jobs.iter().filter(|j| j.succeeded()).count();
    let _ = writeln!(
        out,
        "=> {ok} of {} job(s) succeeded{}",
        jobs.len(),
        if ok == jobs.len() {
            ""
        } else if cancelled {
            "; the run was cancelled"
        } else {
            "; see the failures above"
        }
    );
}

/// Writes a status message or hint under its action: three spaces in, list
/// items (`- file`, `... and N more`) four. The executor keeps the reference's
/// texts, which start with a newline and indent their items unevenly.
fn write_block(out: &mut impl std::io::Write, text: &str) {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let indent = if line.starts_with("- ") || line.starts_with("... ") {
            "    "
        } else {
            "   "
        };
        let _ = writeln!(out, "{indent}{line}");
    }
}

fn level_name(level: PrivacyLevel) -> &'static str {
    level.as_str()
}

/// Docker's `--timestamps` prefix (RFC 3339 with nanoseconds, then a space).
fn strip_docker_timestamp(line: &str) -> &str {
    match line.split_once(' ') {
        Some((ts, rest)) if ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("4G"), Ok(4 * 1024 * 1024 * 1024));
        assert_eq!(parse_memory("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory("1.5g"), Ok(1536 * 1024 * 1024));
        assert_eq!(parse_memory("10485760"), Ok(10 * 1024 * 1024));
        assert!(parse_memory("4X").is_err());
        assert!(parse_memory("abc").is_err());
        assert!(parse_memory("1k").is_err());
    }

    #[test]
    fn docker_timestamps_are_stripped() {
        assert_eq!(
            strip_docker_timestamp("2026-01-02T03:04:05.123456789Z hello world"),
            "hello world"
        );
        assert_eq!(strip_docker_timestamp("plain line"), "plain line");
    }
}
