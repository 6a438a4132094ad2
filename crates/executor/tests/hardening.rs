//! Hostile jobs and studies against a real Docker daemon: links in every
//! path component of every tree written into, floods of output, file names
//! that are not UTF-8, trees deeper than `PATH_MAX`, fork loops.
//!
//! Without Docker these print `SKIPPED: docker not available` and pass,
//! unless `CI` is set, where they fail.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::{TestEnv, WORKSPACE};
use warden_executor::logcap::{LOG_DROPPED_MARKER, LOG_HEAD_BYTES, LOG_TAIL_BYTES};
use warden_executor::{Executor, ExecutorConfig, ExecutorError, Finalize, PrivacyLevel};

use PrivacyLevel::{HighlySensitive as High, ModeratelySensitive as Moderate};

macro_rules! env_or_skip {
    () => {
        match TestEnv::new().await {
            Some(env) => env,
            None => return,
        }
    };
    ($adjust:expr) => {
        match TestEnv::with($adjust).await {
            Some(env) => env,
            None => return,
        }
    };
}

/// What a link in the way points at.
#[derive(Debug, Clone, Copy)]
enum Target {
    OutsideDir,
    OutsideFile,
    Dangling,
    Loop,
}

const TARGETS: [Target; 4] = [
    Target::OutsideDir,
    Target::OutsideFile,
    Target::Dangling,
    Target::Loop,
];

/// Puts a link at `at` pointing as `target` says.
fn plant(at: &Path, target: Target, outside: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    let to: PathBuf = match target {
        Target::OutsideDir => outside.join("dir"),
        Target::OutsideFile => outside.join("file"),
        Target::Dangling => PathBuf::from("/nonexistent/warden-dangling"),
        Target::Loop => PathBuf::from(at.file_name().unwrap()),
    };
    std::os::unix::fs::symlink(to, at).unwrap();
}

/// A directory outside every tree, with a directory and a file links point at.
fn outside(env: &TestEnv) -> PathBuf {
    let outside = env.root.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("file"), "untouched").unwrap();
    outside
}

/// Nothing was written outside: the directory is empty, the file unchanged.
fn assert_untouched(outside: &Path, case: &str) {
    let names: Vec<_> = std::fs::read_dir(outside.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{case}: written outside: {names:?}");
    assert_eq!(
        std::fs::read_to_string(outside.join("file")).unwrap(),
        "untouched",
        "{case}"
    );
}

/// The job fails on `component` with a message saying it is a link, and the
/// redacted results (what may leave a backend) name no file.
async fn assert_refused(
    env: &TestEnv,
    job: &warden_executor::JobDefinition,
    error: ExecutorError,
    component: &str,
    names: &[&str],
    case: &str,
) {
    match &error {
        ExecutorError::LinkInPath { component: c, .. } => {
            assert_eq!(c, Path::new(component), "{case}: {error}")
        }
        other => panic!("{case}: expected a refused link, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("never writes through a link"), "{message}");
    let results = env
        .executor
        .finalize(job, Finalize::Error(message))
        .await
        .expect("record the error");
    let redacted = serde_json::to_string(&results.redacted()).unwrap();
    for name in names {
        assert!(!redacted.contains(name), "{case}: {redacted}");
    }
    assert!(final_message(&results).contains("Internal error"));
    env.executor.cleanup(job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_never_go_through_a_link_in_the_study_at_any_depth() {
    // A local run: the study is the high-privacy store. A link committed in
    // the study at any component of an output's path, replaced by a real
    // directory inside the container, must not make the copy-out follow it.
    let env = env_or_skip!(|c| {
        let study = c.high_privacy_dir.parent().unwrap().join("study");
        *c = ExecutorConfig::local(study);
    });
    let outside = outside(&env);
    let components = ["lnk", "lnk/b", "lnk/b/c"];
    for (depth, component) in components.iter().enumerate() {
        for target in TARGETS {
            let case = format!("{component} -> {target:?}");
            let _ = std::fs::remove_dir_all(env.study.join("lnk"));
            plant(&env.study.join(component), target, &outside);
            let job = env.job(
                "linked",
                "rm -rf lnk && mkdir -p lnk/b/c && echo data > lnk/b/c/out.csv",
                &[("lnk/b/c/out.csv", High)],
            );
            env.executor.prepare(&job).await.expect("prepare");
            env.executor.execute(&job).await.expect("execute");
            env.executor.wait(&job).await.expect("wait");
            let error = env
                .executor
                .finalize(&job, Finalize::Completed)
                .await
                .expect_err(&case);
            assert_refused(&env, &job, error, component, &["out.csv", "lnk"], &case).await;
            assert_untouched(&outside, &case);
            // the link itself is left as it was, not replaced
            assert!(
                std::fs::symlink_metadata(env.study.join(component))
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{case}"
            );
            let _ = depth;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_metadata_directory_in_the_study_is_refused_before_anything_runs() {
    let env = env_or_skip!(|c| {
        let study = c.high_privacy_dir.parent().unwrap().join("study");
        *c = ExecutorConfig::local(study);
    });
    let outside = outside(&env);
    for target in TARGETS {
        let case = format!("metadata -> {target:?}");
        let _ = std::fs::remove_file(env.study.join("metadata"));
        plant(&env.study.join("metadata"), target, &outside);
        let job = env.job("linked", "echo hi", &[]);
        let error = env.executor.prepare(&job).await.expect_err(&case);
        match &error {
            ExecutorError::LinkInPath { component, .. } => {
                assert_eq!(component, Path::new("metadata"), "{case}")
            }
            other => panic!("{case}: {other}"),
        }
        assert_untouched(&outside, &case);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_logs_and_notes_never_go_through_a_link() {
    // A backend layout: links in the high store's metadata/ (job logs), in
    // the medium store's output/ (level-4 copies and .txt notes) and in its
    // metadata/ (manifest.json).
    let env = env_or_skip!();
    let outside = outside(&env);
    type At = fn(&TestEnv) -> PathBuf;
    let cases: [(&str, At, &str); 3] = [
        ("high metadata", |e| e.high().join("metadata"), "metadata"),
        ("medium output", |e| e.medium().join("output"), "output"),
        (
            "medium metadata",
            |e| e.medium().join("metadata"),
            "metadata",
        ),
    ];
    for (what, at, component) in cases {
        for target in TARGETS {
            let case = format!("{what} -> {target:?}");
            for dir in [env.high(), env.medium()] {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
            }
            plant(&at(&env), target, &outside);
            let job = env.job(
                "stored",
                "mkdir -p output && echo n > output/ok.csv && echo x > output/bad.exe",
                &[("output/ok.csv", Moderate), ("output/bad.exe", Moderate)],
            );
            env.executor.prepare(&job).await.expect("prepare");
            env.executor.execute(&job).await.expect("execute");
            env.executor.wait(&job).await.expect("wait");
            let error = env
                .executor
                .finalize(&job, Finalize::Completed)
                .await
                .expect_err(&case);
            assert_refused(&env, &job, error, component, &["ok.csv", "bad.exe"], &case).await;
            assert_untouched(&outside, &case);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_never_written_through_a_link_in_the_code() {
    // The code tree holds `output -> <outside>`; the job needs output/in.csv.
    let env = env_or_skip!();
    let outside = outside(&env);
    env.put_high("output/in.csv", "a\n1\n");
    for target in TARGETS {
        let case = format!("output -> {target:?}");
        let _ = std::fs::remove_file(env.study.join("output"));
        plant(&env.study.join("output"), target, &outside);
        let mut job = env.job("reads", "cat output/in.csv", &[]);
        job.inputs = vec!["output/in.csv".into()];
        let error = env.executor.prepare(&job).await.expect_err(&case);
        match &error {
            ExecutorError::LinkInPath { component, .. } => {
                assert_eq!(component, Path::new("output"), "{case}")
            }
            other => panic!("{case}: {other}"),
        }
        assert_untouched(&outside, &case);
        env.executor.cleanup(&job).await;
    }
    let _ = std::fs::remove_file(env.study.join("output"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_keeps_head_and_tail_within_the_caps() {
    let env = env_or_skip!();
    // 12 MB of short lines, then one line of 10 MB, then a last line
    // (within what Docker keeps, over what the job log keeps).
    let script = "echo FIRST-LINE; yes 'a line of flood output' | head -c 12000000; \
                  head -c 10000000 /dev/zero | tr '\\0' x; echo; echo LAST-LINE";
    let job = env.job("flood", script, &[]);
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(0));
    let log_file = env.config.job_log_dir(&job).join("logs.txt");
    let size = std::fs::metadata(&log_file).unwrap().len() as usize;
    assert!(
        size < LOG_HEAD_BYTES + LOG_TAIL_BYTES + 64 * 1024,
        "log is {size} bytes"
    );
    let log = env.log_text(&job);
    let head: Vec<&str> = log.lines().take(3).collect();
    assert!(head[0].ends_with(" FIRST-LINE"), "{head:?}");
    assert!(
        log.contains(LOG_DROPPED_MARKER),
        "no note of what was dropped"
    );
    let container = warden_executor::container_part_of_log(&log);
    let end = &container[container.len().saturating_sub(300)..];
    assert!(
        container.trim_end().ends_with(" LAST-LINE"),
        "tail lost: {end:?}"
    );
    let note = log
        .lines()
        .find(|l| l.starts_with(LOG_DROPPED_MARKER))
        .unwrap();
    let dropped: u64 = note
        .trim_start_matches(LOG_DROPPED_MARKER)
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 15_000_000, "{note}");
    env.executor.cleanup(&job).await;
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A file name of 1-40 bytes (no `/`, no NUL, not `.` or `..`), mixing
    /// ASCII, control characters, multi-byte UTF-8 and, when `utf8` is
    /// false, at least one byte sequence that is not UTF-8.
    fn name(&mut self, utf8: bool) -> Vec<u8> {
        let len = 1 + self.next() % 12;
        let mut name = Vec::new();
        for _ in 0..len {
            match self.next() % 5 {
                0 => name.push(b'a' + (self.next() % 26) as u8),
                1 => name.push(1 + (self.next() % 31) as u8), // control characters, newline, tab, ESC
                2 => name.extend_from_slice("é✓\u{202e}".as_bytes()),
                3 => name.extend_from_slice(b" -'\"$`;*?"),
                _ => name.push(b'0' + (self.next() % 10) as u8),
            }
        }
        if !utf8 {
            let bad: &[&[u8]] = &[b"\xff", b"\xfe", b"\xc3", b"\xe9", b"\x80\x80"];
            let at = (self.next() as usize) % (name.len() + 1);
            let b = bad[(self.next() as usize) % bad.len()];
            name.splice(at..at, b.iter().copied());
        }
        name.retain(|b| *b != b'/');
        name.truncate(200);
        name.extend_from_slice(b".csv");
        name
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_names_are_kept_byte_for_byte_or_fail_the_job() {
    let env = env_or_skip!();
    let mut generator = Gen(0x9e37_79b9_7f4a_7c15);

    // UTF-8 names (with control characters, quotes, right-to-left marks):
    // every one is recorded and copied exactly.
    let job = env.job("names", "true", &[("output/*.csv", High)]);
    env.executor.prepare(&job).await.expect("prepare");
    let out_dir = env.config.job_dir(&job).join("output");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut expected = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let name = generator.name(true);
        let name_os = std::ffi::OsStr::from_bytes(&name);
        std::fs::write(out_dir.join(name_os), &name).unwrap();
        expected.insert(name);
    }
    env.executor.execute(&job).await.expect("execute");
    env.executor.wait(&job).await.expect("wait");
    let results = env
        .executor
        .finalize(&job, Finalize::Completed)
        .await
        .expect("finalize");
    assert_eq!(results.outputs.len(), expected.len(), "an output was lost");
    for name in &expected {
        let rel = format!("output/{}", std::str::from_utf8(name).unwrap());
        assert!(results.outputs.contains_key(&rel), "{rel:?} not recorded");
        let copied = std::fs::read(env.high().join(&rel)).unwrap();
        assert_eq!(&copied, name, "{rel:?} copied wrongly");
    }
    env.executor.cleanup(&job).await;

    // Names that are not UTF-8 fail the job, whose message prints none of them.
    for round in 0..5 {
        let job = env.job("badnames", "true", &[("output/*.csv", High)]);
        env.executor.prepare(&job).await.expect("prepare");
        let out_dir = env.config.job_dir(&job).join("output");
        std::fs::create_dir_all(&out_dir).unwrap();
        let bad: Vec<Vec<u8>> = (0..=round).map(|_| generator.name(false)).collect();
        for name in &bad {
            std::fs::write(out_dir.join(std::ffi::OsStr::from_bytes(name)), "x").unwrap();
        }
        std::fs::write(out_dir.join("fine.csv"), "x").unwrap();
        env.executor.execute(&job).await.expect("execute");
        env.executor.wait(&job).await.expect("wait");
        let error = env
            .executor
            .finalize(&job, Finalize::Completed)
            .await
            .expect_err("a name that is not UTF-8 must fail the job");
        match &error {
            ExecutorError::UnusableOutputNames { count, names, .. } => {
                let distinct: std::collections::BTreeSet<_> = bad.iter().collect();
                assert_eq!(*count, distinct.len());
                assert_eq!(names.len(), distinct.len());
                for shown in names {
                    assert!(
                        !shown.chars().any(|c| c.is_control() || c == '\u{fffd}'),
                        "{shown:?} is not escaped"
                    );
                }
            }
            other => panic!("{other}"),
        }
        let message = error.to_string();
        assert!(message.contains("not valid UTF-8"), "{message}");
        for name in &bad {
            let lossy = String::from_utf8_lossy(name);
            assert!(!message.contains(lossy.as_ref()), "{message}");
        }
        let results = env
            .executor
            .finalize(&job, Finalize::Error(message))
            .await
            .unwrap();
        assert!(results.outputs.is_empty());
        env.executor.cleanup(&job).await;
    }
}

/// Makes `levels` nested directories named `name` under `dir`, one
/// `mkdirat` at a time (the whole path is longer than `PATH_MAX`), with a
/// file at the bottom.
fn nest(dir: &Path, name: &str, levels: usize) {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let mut fd = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..levels {
        mkdirat(&fd, name, Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, name, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    }
    let file = openat(
        &fd,
        "deep.txt",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    drop(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_deeper_than_path_max_are_walked_and_removed_without_names_in_errors() {
    let env = env_or_skip!();
    let long = "d".repeat(60);
    for (levels, too_deep) in [(100usize, false), (300, true)] {
        // 100 levels of 61 bytes: 6,100 bytes of path, over PATH_MAX (4,096)
        // but under the depth limit: walked, the job's output still found.
        // 300: over the depth limit: the job fails with a message naming
        // none of the job's directories. Cleanup removes both.
        let job = env.job(
            "deep",
            "mkdir -p output && echo ok > output/top.csv",
            &[("output/top.csv", High)],
        );
        env.executor.prepare(&job).await.expect("prepare");
        nest(&env.config.job_dir(&job), &long, levels);
        env.executor.execute(&job).await.expect("execute");
        env.executor.wait(&job).await.expect("wait");
        let finalized = env.executor.finalize(&job, Finalize::Completed).await;
        if too_deep {
            let error = finalized.expect_err("too deep");
            let message = error.to_string();
            assert!(matches!(error, ExecutorError::JobTree { .. }), "{message}");
            assert!(message.contains("nested more than"), "{message}");
            assert!(!message.contains(&long), "{message}");
            assert!(message.len() < 300, "{message}");
            let results = env
                .executor
                .finalize(&job, Finalize::Error(message))
                .await
                .unwrap();
            let redacted = serde_json::to_string(&results.redacted()).unwrap();
            assert!(!redacted.contains(&long));
        } else {
            let results = finalized.expect("finalize");
            assert_eq!(results.exit_code, Some(0), "{}", env.log_text(&job));
            assert!(results.outputs.contains_key("output/top.csv"));
        }
        env.executor.cleanup(&job).await;
        assert!(!env.config.job_dir(&job).exists(), "deep tree not removed");
    }
    let _ = WORKSPACE;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_loop_stops_at_the_process_limit_with_a_clear_message() {
    let env = env_or_skip!();
    // A subshell starts sleepers until fork fails (ash then exits), the
    // parent waits a little, then fails.
    let script = "(i=0; while [ $i -lt 500 ]; do sleep 8 & i=$((i+1)); done); \
                  echo started; sleep 3; exit 3";
    let mut job = env.job("forks", script, &[]);
    job.pids_limit = 48;
    let results = env.run(&job).await;
    let log = env.log_text(&job);
    assert_eq!(results.exit_code, Some(3), "{log}");
    assert!(log.contains("can't fork"), "{log}");
    let message = results.status_message.clone().unwrap_or_default();
    assert!(
        message.contains("limit of 48 processes and threads"),
        "{message}\n{log}"
    );
    assert!(
        final_message(&results).contains("processes and threads"),
        "{}",
        final_message(&results)
    );
    env.executor.cleanup(&job).await;
}

/// The final status message the controller (and a local run) gives these
/// results: the one decision, `StatusCode::for_results` (job-runner §5.9).
fn final_message(results: &warden_executor::JobResults) -> String {
    warden_state::StatusCode::for_results(&results.redacted(), false).1
}
