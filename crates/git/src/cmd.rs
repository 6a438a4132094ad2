//! Running the `git` executable: a clean environment, captured output, an optional
//! deadline that kills git and every helper it started.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::GitError;

/// Variables a calling git (a hook, `git rebase --exec`) or a user's shell may have
/// set that would make git act on another repository or read other configuration.
const SCRUBBED_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_QUARANTINE_PATH",
    "GIT_REPLACE_REF_BASE",
    "GIT_GRAFT_FILE",
    "GIT_SHALLOW_FILE",
    "GIT_OPTIONAL_LOCKS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
];

/// A `git` command with a clean environment: no inherited repository variables,
/// English messages, no prompts, literal pathspecs, no standard input.
pub(crate) fn git() -> Command {
    let mut cmd = Command::new("git");
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_LITERAL_PATHSPECS", "1")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .stdin(Stdio::null());
    cmd
}

/// What a finished git process left.
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_owned()
    }
}

/// Why a git process gave no [`Output`].
pub(crate) enum RunError {
    Spawn(std::io::Error),
    TimedOut,
}

/// Runs `cmd` to completion (or until `timeout`, after which git's whole process
/// group is killed) and captures both outputs.
pub(crate) fn run(cmd: &mut Command, timeout: Option<Duration>) -> Result<Output, RunError> {
    let Some(timeout) = timeout else {
        return cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map(|o| Output {
                status: o.status,
                stdout: o.stdout,
                stderr: o.stderr,
            })
            .map_err(RunError::Spawn);
    };

    // Its own process group, so that a kill also reaches git-remote-https, ssh and
    // credential helpers, which hold the pipes open.
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(RunError::Spawn)?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );

    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(_) => break child.wait().ok(),
        }
    };
    let Some(status) = status else {
        let pgid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        let _ = child.kill();
        let _ = child.wait();
        let _ = stdout.join();
        let _ = stderr.join();
        return Err(RunError::TimedOut);
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Describes an exit status for messages: `exit code 128`, `killed by signal 9`.
pub(crate) fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// Git's message for an error: the last lines of stderr, at most ~2 KB.
pub(crate) fn stderr_summary(stderr: &str) -> String {
    const MAX: usize = 2000;
    let text = stderr.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut start = text.len() - MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Turns a spawn failure into the crate's error.
pub(crate) fn spawn_error(source: std::io::Error) -> GitError {
    GitError::Spawn { source }
}
