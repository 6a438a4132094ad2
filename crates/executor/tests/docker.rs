//! The executor against a real Docker daemon and the local busybox image.
//!
//! Without Docker these print `SKIPPED: docker not available` and pass,
//! unless `CI` is set, where they fail.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, WORKSPACE, files_under, read};
use futures_util::StreamExt;
use warden_executor::{
    Executor, ExecutorError, ExecutorState, Finalize, LOG_SUMMARY_MARKER, Outcome, PrivacyLevel,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_files_outputs_by_privacy_level() {
    let env = env_or_skip!();
    env.put_high("output/input.csv", "a,b\n1,2\n");
    // an output of some action: excluded from the code copy
    std::fs::create_dir_all(env.study.join("output")).unwrap();
    std::fs::write(env.study.join("output/stale.csv"), "old").unwrap();
    std::fs::create_dir_all(env.study.join("metadata")).unwrap();
    std::fs::write(env.study.join("metadata/secret.log"), "x").unwrap();

    let script = r#"
        set -e
        echo "backend=$OPENSAFELY_BACKEND home=$HOME pwd=$(pwd) id=$(id -u):$(id -g)"
        test -f project.yaml && test -f analysis/script.sh
        test ! -e .git && test ! -e metadata && test ! -e output/stale.csv
        cp output/input.csv output/copied.csv
        echo "patient_id,x" > output/dataset.csv
        echo "n,count" > output/table.csv && echo "a,10" >> output/table.csv
        echo "summary" > output/summary.txt
        echo "to stderr" >&2
    "#;
    let mut job = env.job(
        "generate",
        script,
        &[
            ("output/dataset.csv", High),
            ("output/copied.csv", High),
            ("output/table.csv", Moderate),
            ("output/*.txt", Moderate),
        ],
    );
    job.inputs = vec!["output/input.csv".into()];
    job.code_exclude = vec!["output/*.csv".into()];
    job.commit = Some("abc123".into());

    let results = env.run(&job).await;
    assert_eq!(
        results.exit_code,
        Some(0),
        "{results:?}\n{}",
        env.log_text(&job)
    );
    assert_eq!(
        results.status_message.as_deref(),
        Some("Completed successfully")
    );
    assert_eq!(results.outcome(), Outcome::Succeeded);
    let outputs: Vec<_> = results
        .outputs
        .iter()
        .map(|(p, l)| (p.as_str(), *l))
        .collect();
    assert_eq!(
        outputs,
        [
            ("output/copied.csv", High),
            ("output/dataset.csv", High),
            ("output/summary.txt", Moderate),
            ("output/table.csv", Moderate),
        ]
    );
    assert!(results.unmatched_patterns.is_empty() && results.level4_excluded_files.is_empty());

    // high privacy has everything; medium only the moderately_sensitive files
    let high = env.high();
    assert_eq!(read(&high.join("output/copied.csv")), "a,b\n1,2\n");
    assert_eq!(read(&high.join("output/table.csv")), "n,count\na,10\n");
    assert_eq!(
        files_under(&env.medium().join("output")),
        ["summary.txt", "table.csv"]
    );

    // logs: container output with timestamps, then the summary
    let log = read(&high.join("metadata/generate.log"));
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    assert!(
        log.contains(&format!(
            "backend=expectations home=/tmp pwd=/workspace id={uid}:{gid}"
        )),
        "{log}"
    );
    assert!(log.contains("to stderr"));
    assert!(log.contains(LOG_SUMMARY_MARKER));
    assert!(log.contains("status_message: Completed successfully"));
    assert!(log.contains("commit: abc123"));
    assert!(
        log.contains("  output/table.csv    - moderately_sensitive"),
        "{log}"
    );
    assert_eq!(log, env.log_text(&job));
    assert_eq!(read(&env.medium().join("metadata/generate.log")), log);

    // manifest (in the medium store) covers every output of the job
    let manifest = env.manifest();
    assert_eq!(manifest["workspace"], WORKSPACE);
    let table = &manifest["outputs"]["output/table.csv"];
    assert_eq!(table["level"], "moderately_sensitive");
    assert_eq!(table["job_id"], job.id.as_str());
    assert_eq!(table["action"], "generate");
    assert_eq!(table["size"], 13);
    assert_eq!(table["row_count"], 1);
    assert_eq!(table["col_count"], 2);
    assert_eq!(table["excluded"], false);
    assert_eq!(table["content_hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        manifest["outputs"]["output/dataset.csv"]["level"],
        "highly_sensitive"
    );

    // metadata, state, redaction
    let status = env.executor.status(&job).await.unwrap();
    assert_eq!(status.state, ExecutorState::Finalized);
    let meta: serde_json::Value =
        serde_json::from_str(&read(&env.config.job_log_dir(&job).join("metadata.json"))).unwrap();
    assert_eq!(meta["job_definition_id"], job.id.as_str());
    assert_eq!(meta["exit_code"], 0);
    assert_eq!(meta["action_version"], "1:1.35.0-4+deb12u1+b1");
    let env_list = meta["container_metadata"]["Config"]["Env"].to_string();
    assert!(env_list.contains("OPENSAFELY_BACKEND=expectations"));
    let redacted = serde_json::to_string(&results.redacted()).unwrap();
    assert!(!redacted.contains("output/"), "{redacted}");
    assert_eq!(results.redacted().output_count, 4);

    env.executor.cleanup(&job).await;
    assert!(!env.config.job_dir(&job).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonzero_exit_still_keeps_outputs() {
    let env = env_or_skip!();
    let job = env.job(
        "fails",
        "echo partial > output/part.csv; echo oops >&2; exit 3",
        &[("output/part.csv", High), ("output/never.csv", High)],
    );
    // the job's own output directory must exist for `>` to work
    std::fs::create_dir_all(env.study.join("output")).unwrap();
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(3));
    assert_eq!(results.status_message, None);
    assert_eq!(results.outcome(), Outcome::NonzeroExit);
    assert_eq!(final_message(&results), "Job exited with an error");
    // unmatched patterns are still reported, the exit code outranks them
    assert_eq!(results.unmatched_patterns, ["output/never.csv"]);
    assert_eq!(read(&env.high().join("output/part.csv")), "partial\n");
    assert!(env.log_text(&job).contains("oops"));
    assert!(env.log_text(&job).contains("exit_code: 3"));
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_patterns_give_a_hint() {
    let env = env_or_skip!();
    let job = env.job(
        "typo",
        "mkdir -p output && echo x > output/actual.csv && echo y > output/other.txt",
        &[("output/expected.csv", Moderate), ("output/*.json", High)],
    );
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(0));
    assert_eq!(
        results.status_message.as_deref(),
        Some("\n  No outputs found matching patterns:\n - output/*.json\n   - output/expected.csv")
    );
    assert_eq!(
        results.hint.as_deref(),
        Some(
            "\n  Did you mean to match one of these files instead?\n - output/actual.csv\n   - output/other.txt"
        )
    );
    assert_eq!(results.outcome(), Outcome::UnmatchedPatterns);
    assert_eq!(
        final_message(&results),
        "Outputs matching expected patterns were not found. See job log for details."
    );
    // undeclared files are dropped
    assert!(!env.high().join("output/actual.csv").exists());
    // the message names files, so it does not leave the backend
    let redacted = results.redacted();
    assert!(redacted.has_unmatched_patterns);
    assert_eq!(redacted.status_message, None);
    assert!(
        !serde_json::to_string(&redacted)
            .unwrap()
            .contains("output/")
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_reported() {
    let env = env_or_skip!();
    let mut job = env.job(
        "hungry",
        "head -c 300m /dev/zero | tail",
        &[("output/x.csv", High)],
    );
    job.memory_limit = 32 * 1024 * 1024;
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(137), "{results:?}");
    assert!(results.oom_killed);
    assert_eq!(
        results.status_message.as_deref(),
        Some("Job ran out of memory (limit was 0.03GB)")
    );
    assert_eq!(
        final_message(&results),
        "Job exited with an error: Job ran out of memory (limit was 0.03GB)"
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_clear_error_and_never_pulled() {
    let env = env_or_skip!();
    let mut job = env.job("noimage", "true", &[]);
    job.image = "ghcr.io/opensafely-core/no-such-image:v0".into();
    env.executor.prepare(&job).await.unwrap();
    let err = env.executor.execute(&job).await.unwrap_err();
    assert!(
        matches!(err, ExecutorError::ImageNotFound { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("ghcr.io/opensafely-core/no-such-image:v0"),
        "{text}"
    );
    assert!(
        text.contains("docker pull") && text.contains("build-images"),
        "{text}"
    );
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Prepared
    );
    // recording the error ends the job in state `error`
    let results = env
        .executor
        .finalize(&job, Finalize::Error(text.clone()))
        .await
        .unwrap();
    assert_eq!(results.error.as_deref(), Some(text.as_str()));
    assert_eq!(results.status_message.as_deref(), Some("Job errored"));
    assert_eq!(results.outcome(), Outcome::Error);
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Error
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_running_job() {
    let env = env_or_skip!();
    let job = env.job(
        "sleeper",
        "mkdir -p output; echo early > output/early.csv; echo started; sleep 300",
        &[("output/early.csv", High)],
    );
    env.executor.prepare(&job).await.unwrap();
    let status = env.executor.execute(&job).await.unwrap();
    assert_eq!(status.state, ExecutorState::Executing);
    assert!(status.timestamp_ns.is_some());
    // cancel once the job is under way (it has said so), not before it could
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<_> = env.executor.logs(&job, false).collect().await;
        if lines
            .iter()
            .any(|l| l.as_ref().is_ok_and(|l| l.text == "started"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let results = env.executor.cancel(&job).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(results.cancelled);
    assert_eq!(results.exit_code, Some(137));
    assert_eq!(
        results.status_message.as_deref(),
        Some("Job cancelled by system")
    );
    assert_eq!(results.outcome(), Outcome::Cancelled);
    // a cancelled job's outputs are not collected
    assert!(results.outputs.is_empty());
    assert!(!env.high().join("output/early.csv").exists());
    // the log goes to the log directory only
    assert!(env.log_text(&job).contains("started"));
    assert!(!env.high().join("metadata/sleeper.log").exists());
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Finalized
    );
    // again: nothing changes
    assert_eq!(env.executor.cancel(&job).await.unwrap(), results);
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_start_records_only_metadata() {
    let env = env_or_skip!();
    let job = env.job("never", "true", &[]);
    env.executor.prepare(&job).await.unwrap();
    let results = env.executor.cancel(&job).await.unwrap();
    assert!(results.cancelled);
    assert_eq!(results.exit_code, None);
    assert_eq!(
        results.status_message.as_deref(),
        Some("Job cancelled by system")
    );
    assert!(env.config.job_log_dir(&job).join("metadata.json").exists());
    assert!(!env.config.job_log_dir(&job).join("logs.txt").exists());
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Finalized
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_executor_picks_up_where_the_last_stopped() {
    let env = env_or_skip!();
    let running = env.job(
        "slow",
        "sleep 2; mkdir -p output; echo done > output/x.txt",
        &[("output/x.txt", High)],
    );
    let prepared = env.job("later", "true", &[]);
    env.executor.prepare(&running).await.unwrap();
    env.executor.execute(&running).await.unwrap();
    env.executor.prepare(&prepared).await.unwrap();

    // "restart": a new instance that has never seen these jobs
    let restarted = env.second_executor();
    assert_eq!(
        restarted.status(&running).await.unwrap().state,
        ExecutorState::Executing
    );
    assert_eq!(
        restarted.status(&prepared).await.unwrap().state,
        ExecutorState::Prepared
    );
    let status = restarted.wait(&running).await.unwrap();
    assert_eq!(status.state, ExecutorState::Executed);
    assert!(status.timestamp_ns.is_some());
    let again = env.second_executor();
    assert_eq!(
        again.status(&running).await.unwrap().state,
        ExecutorState::Executed
    );
    let results = again.finalize(&running, Finalize::Completed).await.unwrap();
    assert_eq!(
        results.status_message.as_deref(),
        Some("Completed successfully")
    );
    assert_eq!(read(&env.high().join("output/x.txt")), "done\n");
    again.cleanup(&running).await;
    again.cleanup(&prepared).await;
    assert_eq!(
        again.status(&prepared).await.unwrap().state,
        ExecutorState::Unknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_is_locked_down() {
    let env = env_or_skip!();
    let script = "mkdir -p output; ls /sys/class/net > output/net.txt; \
                  grep -E '^(CapEff|NoNewPrivs)' /proc/self/status > output/status.txt; \
                  (wget -T 2 -q -O- http://1.1.1.1/ >/dev/null 2>&1 && echo reachable || echo unreachable) > output/wget.txt";
    let mut job = env.job("locked", script, &[("output/*.txt", High)]);
    job.cpu_count = 1.5;
    job.labels.insert("run".into(), "test-run".into());
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(0), "{}", env.log_text(&job));
    assert_eq!(read(&env.high().join("output/net.txt")), "lo\n");
    let status = read(&env.high().join("output/status.txt"));
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert_eq!(read(&env.high().join("output/wget.txt")), "unreachable\n");

    let inspect = env
        .docker
        .inspect_container(&job.container_name(), None)
        .await
        .unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.nano_cpus, Some(1_500_000_000));
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_string()])
    );
    let config = inspect.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels.get("warden").map(String::as_str), Some(""));
    assert_eq!(labels.get("workspace").map(String::as_str), Some(WORKSPACE));
    assert_eq!(labels.get("action").map(String::as_str), Some("locked"));
    assert_eq!(labels.get("run").map(String::as_str), Some("test-run"));
    assert_eq!(config.working_dir.as_deref(), Some("/workspace"));
    assert!(config.env.unwrap().contains(&"HOME=/tmp".to_string()));
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_special_files_are_never_copied() {
    let env = env_or_skip!();
    let script = "mkdir -p output && ln -s /etc/passwd output/passwd.csv && ln -s /etc output/etc \
                  && mkfifo output/pipe.csv && echo real > output/real.csv";
    let job = env.job(
        "sneaky",
        script,
        &[("output/*.csv", Moderate), ("output/etc/passwd", High)],
    );
    let results = env.run(&job).await;
    let outputs: Vec<_> = results.outputs.keys().map(String::as_str).collect();
    assert_eq!(outputs, ["output/real.csv"]);
    assert!(results.skipped_outputs["output/passwd.csv"].contains("symbolic link"));
    assert!(results.skipped_outputs["output/pipe.csv"].contains("pipe"));
    // a pattern reaching through a linked directory matches nothing
    assert_eq!(results.unmatched_patterns, ["output/etc/passwd"]);
    // nothing from outside the job reached either store
    for store in [env.high(), env.medium()] {
        for f in files_under(&store) {
            let text = read(&store.join(&f));
            assert!(!text.contains("root:x:0:0"), "{f} holds /etc/passwd");
        }
    }
    assert!(std::fs::symlink_metadata(env.high().join("output/passwd.csv")).is_err());
    assert!(std::fs::symlink_metadata(env.high().join("output/etc")).is_err());
    assert!(
        env.log_text(&job)
            .contains("Skipped outputs (not regular files):")
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_matching_a_pattern_is_not_an_output() {
    let env = env_or_skip!();
    let job = env.job(
        "dirs",
        "mkdir -p output/folder.csv && echo a > output/folder.csv/inner.csv && echo b > output/b.csv",
        &[("output/*.csv", High)],
    );
    let results = env.run(&job).await;
    let outputs: Vec<_> = results.outputs.keys().map(String::as_str).collect();
    assert_eq!(outputs, ["output/b.csv"]);
    assert!(results.skipped_outputs["output/folder.csv"].contains("directory"));
    assert!(!env.high().join("output/folder.csv").exists());
    assert_eq!(
        results.status_message.as_deref(),
        Some("Completed successfully")
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_small_outputs() {
    let env = env_or_skip!();
    let script = "mkdir -p output; i=0; while [ $i -lt 10000 ]; do echo $i > output/f$i.txt; i=$((i+1)); done";
    let job = env.job("many", script, &[("output/*.txt", Moderate)]);
    env.executor.prepare(&job).await.unwrap();
    env.executor.execute(&job).await.unwrap();
    env.executor.wait(&job).await.unwrap();
    let started = Instant::now();
    let results = env
        .executor
        .finalize(&job, Finalize::Completed)
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("finalize of 10,000 outputs took {took:?}");
    assert_eq!(results.exit_code, Some(0));
    assert_eq!(results.outputs.len(), 10_000);
    assert_eq!(
        std::fs::read_dir(env.high().join("output"))
            .unwrap()
            .count(),
        10_000
    );
    assert_eq!(
        std::fs::read_dir(env.medium().join("output"))
            .unwrap()
            .count(),
        10_000
    );
    assert_eq!(read(&env.high().join("output/f9999.txt")), "9999\n");
    assert_eq!(env.manifest()["outputs"].as_object().unwrap().len(), 10_000);
    let started = Instant::now();
    env.executor.cleanup(&job).await;
    eprintln!("cleanup took {:?}", started.elapsed());
    assert!(!env.config.job_dir(&job).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn level4_exclusions() {
    let env = env_or_skip!(|c| {
        c.level4.max_file_size = 1024;
        c.level4.max_csv_rows = 3;
    });
    // leftovers of an earlier run in the medium store
    std::fs::create_dir_all(env.medium().join("output")).unwrap();
    std::fs::write(env.medium().join("output/patients.csv"), "old copy").unwrap();
    std::fs::write(env.medium().join("output/ok.csv.txt"), "old explanation").unwrap();

    let script = "mkdir -p output; head -c 2000 /dev/zero | tr '\\0' x > output/big.txt; \
                  echo model > output/model.dta; \
                  printf 'patient_id,age\\n1,30\\n' > output/patients.csv; \
                  printf 'n\\n1\\n2\\n3\\n4\\n5\\n' > output/rows.csv; \
                  printf 'n\\n1\\n2\\n3\\n' > output/ok.csv";
    let job = env.job(
        "checks",
        script,
        &[
            ("output/*.txt", Moderate),
            ("output/*.dta", Moderate),
            ("output/*.csv", Moderate),
        ],
    );
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(0), "{}", env.log_text(&job));
    let excluded: Vec<_> = results
        .level4_excluded_files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        excluded,
        [
            (
                "output/big.txt",
                "File size of 0.0Mb is larger that limit of 0.0Mb."
            ),
            (
                "output/model.dta",
                "File type of .dta is not valid level 4 file"
            ),
            ("output/patients.csv", "File has patient_id column"),
            (
                "output/rows.csv",
                "File row count (5) exceeds maximum allowed rows (3)"
            ),
        ]
    );
    assert_eq!(results.outcome(), Outcome::Succeeded);
    assert_eq!(
        final_message(&results),
        "Completed successfully, but some file(s) marked as moderately_sensitive were excluded. See job log for details."
    );
    // every output stays in high privacy; only ok.csv reaches medium, the rest get explanations
    assert_eq!(results.outputs.len(), 5);
    assert!(env.high().join("output/patients.csv").exists());
    assert_eq!(
        files_under(&env.medium().join("output")),
        [
            "big.txt.txt",
            "model.dta.txt",
            "ok.csv",
            "patients.csv.txt",
            "rows.csv.txt"
        ]
    );
    assert!(read(&env.medium().join("output/patients.csv.txt")).contains("patient_id"));
    let manifest = env.manifest();
    assert_eq!(manifest["outputs"]["output/rows.csv"]["excluded"], true);
    assert_eq!(manifest["outputs"]["output/rows.csv"]["row_count"], 5);
    assert_eq!(
        manifest["outputs"]["output/model.dta"]["message"],
        "File type of .dta is not valid level 4 file"
    );
    assert_eq!(manifest["outputs"]["output/ok.csv"]["excluded"], false);
    let log = env.log_text(&job);
    assert!(log.contains("Invalid moderately_sensitive outputs:"));
    assert!(
        log.contains("  output/model.dta     - File type of .dta is not valid level 4 file"),
        "{log}"
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_idempotent() {
    let env = env_or_skip!();
    let job = env.job(
        "twice",
        "mkdir -p output; echo hi > output/a.txt",
        &[("output/a.txt", High)],
    );
    // through the trait object, as the agent and the CLI hold it
    let ex: std::sync::Arc<dyn Executor> = env.executor.clone();

    // nothing to execute or finalize yet
    assert_eq!(ex.status(&job).await.unwrap().state, ExecutorState::Unknown);
    assert!(matches!(
        ex.execute(&job).await,
        Err(ExecutorError::InvalidState {
            state: ExecutorState::Unknown,
            ..
        })
    ));
    assert!(ex.finalize(&job, Finalize::Completed).await.is_err());

    let first = ex.prepare(&job).await.unwrap();
    assert_eq!(first.state, ExecutorState::Prepared);
    let marker = read(&env.config.job_dir(&job).join(".opensafely-timestamp"));
    let second = ex.prepare(&job).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        read(&env.config.job_dir(&job).join(".opensafely-timestamp")),
        marker
    );

    ex.execute(&job).await.unwrap();
    let id1 = env
        .docker
        .inspect_container(&job.container_name(), None)
        .await
        .unwrap()
        .id;
    ex.execute(&job).await.unwrap();
    let id2 = env
        .docker
        .inspect_container(&job.container_name(), None)
        .await
        .unwrap()
        .id;
    assert_eq!(id1, id2);
    ex.wait(&job).await.unwrap();
    assert_eq!(
        ex.execute(&job).await.unwrap().state,
        ExecutorState::Executed
    );
    assert!(matches!(
        ex.finalize(&job, Finalize::Completed).await,
        Ok(ref r) if r.exit_code == Some(0)
    ));
    let again = ex.finalize(&job, Finalize::Completed).await.unwrap();
    assert_eq!(Some(again.clone()), ex.results(&job).await.unwrap());
    // later steps after finalize change nothing
    assert_eq!(
        ex.prepare(&job).await.unwrap().state,
        ExecutorState::Finalized
    );
    assert_eq!(
        ex.execute(&job).await.unwrap().state,
        ExecutorState::Finalized
    );
    assert_eq!(ex.cancel(&job).await.unwrap(), again);

    ex.cleanup(&job).await;
    ex.cleanup(&job).await;
    assert!(!env.config.job_dir(&job).exists());
    assert!(
        env.docker
            .inspect_container(&job.container_name(), None)
            .await
            .is_err()
    );
    assert_eq!(
        ex.status(&job).await.unwrap().state,
        ExecutorState::Finalized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_prepared_directory_is_prepared_again() {
    let env = env_or_skip!();
    let job = env.job("half", "true", &[]);
    let dir = env.config.job_dir(&job);
    std::fs::create_dir_all(dir.join("junk")).unwrap();
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Unknown
    );
    env.executor.prepare(&job).await.unwrap();
    assert!(!dir.join("junk").exists());
    assert!(dir.join("project.yaml").exists());
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_names_the_file() {
    let env = env_or_skip!();
    let mut job = env.job("needy", "true", &[]);
    job.inputs = vec!["output/nope.csv".into()];
    let err = env.executor.prepare(&job).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "The file output/nope.csv doesn't exist in workspace {WORKSPACE} as requested for job {}",
            job.id
        )
    );
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Unknown
    );
    env.executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_can_be_followed_and_read_back() {
    let env = env_or_skip!();
    let job = env.job("chatty", "echo one; sleep 1; echo two >&2", &[]);
    env.executor.prepare(&job).await.unwrap();
    env.executor.execute(&job).await.unwrap();
    let lines: Vec<_> = env
        .executor
        .logs(&job, true)
        .map(|l| l.unwrap())
        .collect()
        .await;
    let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(lines.iter().all(|l| l.timestamp.is_some()));
    assert_eq!(lines[1].stream, warden_executor::LogStream::Stderr);

    env.executor.wait(&job).await.unwrap();
    env.executor
        .finalize(&job, Finalize::Completed)
        .await
        .unwrap();
    env.executor.cleanup(&job).await;
    // the container is gone: lines come from the stored log, without the summary
    let stored: Vec<_> = env
        .executor
        .logs(&job, false)
        .map(|l| l.unwrap().text)
        .collect()
        .await;
    assert_eq!(stored, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_layout() {
    // A local run: outputs land in the study directory itself, no medium store.
    let env = env_or_skip!(|c| {
        let study = c.high_privacy_dir.parent().unwrap().join("study");
        *c = warden_executor::ExecutorConfig::local(study);
    });
    std::fs::create_dir_all(env.study.join("output")).unwrap();
    std::fs::write(env.study.join("output/old.csv"), "previous output").unwrap();
    let mut job = env.job(
        "local",
        "test ! -e metadata && test ! -e output/old.csv && echo hi > output/new.csv",
        &[("output/new.csv", Moderate)],
    );
    job.code_exclude = vec!["output/*.csv".into()];
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(0), "{}", env.log_text(&job));
    assert_eq!(read(&env.study.join("output/new.csv")), "hi\n");
    assert!(env.study.join("metadata/local.log").exists());
    assert!(env.study.join("metadata/manifest.json").exists());
    env.executor.cleanup(&job).await;
    assert!(!env.study.join("metadata/volumes").join(&job.id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_and_following_outlast_the_client_timeout() {
    let env = env_or_skip!();
    // a client that gives up on any answer after 1 s
    let impatient = env.docker.clone().with_timeout(Duration::from_secs(1));
    let executor =
        warden_executor::DockerExecutor::with_client(impatient, env.config.clone()).unwrap();
    let job = env.job("patient", "echo a; sleep 3; echo b", &[]);
    // Preparing and starting use the ordinary client: on a loaded machine a
    // container start alone can take longer than 1 s. The executor keeps no
    // state of its own, so the impatient one picks the job up from the engine.
    env.executor.prepare(&job).await.unwrap();
    env.executor.execute(&job).await.unwrap();
    // wait and follow at once, both longer than the client's timeout
    let (lines, status) = tokio::join!(
        executor
            .logs(&job, true)
            .map(|l| l.unwrap().text)
            .collect::<Vec<_>>(),
        executor.wait(&job)
    );
    assert_eq!(lines, ["a", "b"]);
    assert_eq!(status.unwrap().state, ExecutorState::Executed);
    executor.cleanup(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_action_end_to_end() {
    let env = env_or_skip!();
    const PYTHON: &str = "ghcr.io/opensafely-core/python:v2";
    if env.docker.inspect_image(PYTHON).await.is_err() {
        common::skip(&format!(
            "image {PYTHON} is missing; build it with scripts/build-images.sh python"
        ));
        return;
    }
    std::fs::write(
        env.study.join("analysis/report.py"),
        "import csv, os\n\
         os.makedirs('output', exist_ok=True)\n\
         with open('output/report.csv', 'w', newline='') as f:\n\
         \x20   w = csv.writer(f)\n\
         \x20   w.writerow(['group', 'n'])\n\
         \x20   w.writerow(['a', 10])\n\
         print('backend', os.environ['OPENSAFELY_BACKEND'], 'home', os.environ['HOME'])\n",
    )
    .unwrap();
    let mut job = env.job("report", "", &[("output/report.csv", Moderate)]);
    job.image = PYTHON.into();
    job.args = vec!["python".into(), "analysis/report.py".into()];
    let results = env.run(&job).await;
    assert_eq!(results.exit_code, Some(0), "{}", env.log_text(&job));
    assert_eq!(
        read(&env.medium().join("output/report.csv")),
        "group,n\r\na,10\r\n"
    );
    assert!(
        env.log_text(&job)
            .contains("backend expectations home /tmp")
    );
    env.executor.cleanup(&job).await;
}

/// The final status message the controller (and a local run) gives these
/// results: the one decision, `StatusCode::for_results` (job-runner §5.9).
fn final_message(results: &warden_executor::JobResults) -> String {
    warden_state::StatusCode::for_results(&results.redacted(), false).1
}
