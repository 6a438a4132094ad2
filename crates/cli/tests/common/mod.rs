//! Shared setup for the `warden run` integration tests: throwaway studies
//! (optionally real git repositories), running the real `warden` binary with a
//! time limit, the skip-or-fail rule when Docker is missing, and readers for
//! what a run leaves behind (the history database, job metadata, containers).
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "ghcr.io/opensafely-core/busybox:latest";
pub const PYTHON: &str = "ghcr.io/opensafely-core/python:latest";
pub const COHORTEXTRACTOR: &str = "ghcr.io/opensafely-core/cohortextractor:latest";

/// No single `warden run` in these tests may take longer than this.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Writes to the real stderr: the test harness captures `eprintln!`, not this.
pub fn loud(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

/// Whether the Docker tests can run: `false` (after a loud SKIPPED line) when
/// the Docker engine is unreachable, a panic instead when `CI` is set (CI must
/// run them). A missing image is always a failure: the test script builds the
/// images first, so a missing one means a broken set-up, not a missing engine.
#[must_use]
pub fn docker(images: &[&str]) -> bool {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    let reason = match info {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("cannot run the docker CLI: {e}")),
    };
    if let Some(reason) = reason {
        if std::env::var_os("CI").is_some() {
            panic!("docker tests must run in CI, but docker is not available: {reason}");
        }
        loud(&format!("SKIPPED: docker not available ({reason})"));
        return false;
    }
    for image in images {
        let present = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            present,
            "image {image} is missing: build the local images with scripts/build-images.sh"
        );
    }
    true
}

/// What one `warden` invocation did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Both streams, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit code {} after {:.1?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    /// The actions of the `Running actions: a, b` line (empty if none).
    pub fn ran(&self) -> Vec<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Running actions: "))
            .map(|l| l.split(", ").map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The summary: everything from the first `=> ` line on.
    pub fn summary(&self) -> &str {
        match self.stdout.find("\n=> ") {
            Some(i) => &self.stdout[i + 1..],
            None => "",
        }
    }
}

/// A throwaway study directory, `<tmp>/study`.
pub struct Study {
    _root: tempfile::TempDir,
    pub dir: PathBuf,
}

/// Git with a fixed identity and no user or system configuration.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Study {
    /// A study holding only `project.yaml`.
    pub fn new(project: &str) -> Study {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("study");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("project.yaml"), project).unwrap();
        Study { _root: root, dir }
    }

    /// A copy of the bundled `examples/study`.
    pub fn example() -> Study {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("study");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/study");
        copy_tree(&source, &dir);
        Study { _root: root, dir }
    }

    /// Writes `text` to `rel`, creating its directory.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `git init` and commit everything, with a fixed author and date.
    pub fn git_commit_all(&self) {
        git(&self.dir, &["init", "--quiet", "--initial-branch=main"]);
        git(&self.dir, &["add", "--all"]);
        git(&self.dir, &["commit", "--quiet", "--message", "study"]);
    }

    /// `warden ARGS…` in the study, to completion (at most [`RUN_LIMIT`]).
    pub fn warden(&self, args: &[&str]) -> Output {
        self.warden_env(args, &[])
    }

    /// Like [`Study::warden`], with extra environment variables.
    pub fn warden_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let running = self.spawn(args, env);
        running.finish()
    }

    /// Starts `warden ARGS…` in the study, its output read as it comes.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("WARDEN_IMAGE_PREFIX")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let mut child = cmd.spawn().expect("start warden");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr.read_to_string(&mut all);
            all
        });
        Running {
            child,
            start,
            lines,
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
        }
    }

    /// Every job in the study's history, oldest first (plan order within a run).
    pub fn jobs(&self) -> Vec<warden_state::Job> {
        history(&self.path("metadata/db.sqlite"))
    }

    /// The latest job of `action`.
    pub fn job(&self, action: &str) -> warden_state::Job {
        self.jobs()
            .into_iter()
            .rev()
            .find(|j| j.action == action)
            .unwrap_or_else(|| panic!("no job of `{action}` in the history"))
    }

    /// Every `metadata.json` the executor wrote (one per finalized job).
    pub fn job_metadata(&self) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        let logs = self.path("metadata/logs");
        let Ok(months) = std::fs::read_dir(&logs) else {
            return found;
        };
        for month in months.flatten() {
            for job in std::fs::read_dir(month.path()).unwrap().flatten() {
                let path = job.path().join("metadata.json");
                if let Ok(text) = std::fs::read_to_string(&path) {
                    found.push(serde_json::from_str(&text).expect("metadata.json is JSON"));
                }
            }
        }
        found
    }

    /// The executor's metadata of the latest finalized job of `action`.
    pub fn metadata_of(&self, action: &str) -> serde_json::Value {
        self.job_metadata()
            .into_iter()
            .filter(|m| m["action"] == action)
            .max_by_key(|m| m["timestamp_ns"].as_u64())
            .unwrap_or_else(|| panic!("no metadata.json for `{action}`"))
    }

    /// Replaces what differs from run to run (the study's path, job and
    /// request ids, times) so output can be snapshotted.
    pub fn normalise(&self, text: &str) -> String {
        let dir = self.dir.display().to_string();
        let mut text = text.replace(&dir, "[STUDY]");
        for job in self.jobs() {
            text = text.replace(&job.id, "[JOB_ID]");
            text = text.replace(&job.job_request_id, "[REQUEST_ID]");
        }
        text
    }
}

/// A `warden` process still running.
pub struct Running {
    pub child: Child,
    start: Instant,
    lines: mpsc::Receiver<String>,
    out_reader: Option<std::thread::JoinHandle<String>>,
    err_reader: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// Waits (at most `limit`) for a stdout line satisfying `wanted`; returns it.
    pub fn wait_for_line(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.collect();
                    panic!("the expected line never came\n{}", out.dump());
                }
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to end (killing it after [`RUN_LIMIT`]).
    pub fn finish(mut self) -> Output {
        let deadline = self.start + RUN_LIMIT;
        loop {
            if self.child.try_wait().expect("wait for warden").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let out = self.collect();
                panic!("warden ran longer than {RUN_LIMIT:?}\n{}", out.dump());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.collect()
    }

    fn collect(&mut self) -> Output {
        let status = self.child.wait().expect("wait for warden");
        let elapsed = self.start.elapsed();
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt as _;
            128 + status.signal().unwrap_or(0)
        });
        Output {
            code,
            stdout: self
                .out_reader
                .take()
                .map(|r| r.join().unwrap())
                .unwrap_or_default(),
            stderr: self
                .err_reader
                .take()
                .map(|r| r.join().unwrap())
                .unwrap_or_default(),
            elapsed,
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Reads the job history, opening the database read-only.
pub fn history(db: &Path) -> Vec<warden_state::Job> {
    assert!(db.is_file(), "no job history at {}", db.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=ro", db.display());
        let store = warden_state::Store::open(&url)
            .await
            .expect("open the history read-only");
        let jobs = store
            .list_jobs(&warden_state::JobFilter::default())
            .await
            .expect("list jobs");
        store.close().await;
        jobs
    })
}

/// Names of the Docker containers (any state) whose name holds one of `ids`.
pub fn containers_of(ids: &[String]) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "--all", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|name| ids.iter().any(|id| name.contains(id.as_str())))
        .map(str::to_string)
        .collect()
}

/// Names in `dir` (sorted; none if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Files (and symlinks) under `dir`, relative and sorted; symlinks are not
/// followed.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(base, &entry.path(), found);
            } else {
                let rel = entry.path().strip_prefix(base).unwrap().to_path_buf();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}
