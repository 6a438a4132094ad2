//! The job driver against a real Docker daemon: stages reported in order,
//! cancellation in each stage, failures recorded, and nothing left behind.
//!
//! Without Docker these print `SKIPPED: docker not available` and pass,
//! unless `CI` is set, where they fail.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TestEnv;
use tokio_util::sync::CancellationToken;
use warden_executor::driver::{DriveEvents, Driven, Stage, drive};
use warden_executor::{Executor, ExecutorError, ExecutorState, LogLine, PrivacyLevel};

/// Records the stages and lines it hears; cancels the token on `cancel_at`.
struct Recorder {
    stages: Mutex<Vec<Stage>>,
    lines: Mutex<Vec<String>>,
    cancel_at: Option<Stage>,
    token: CancellationToken,
}

#[async_trait::async_trait]
impl DriveEvents for Recorder {
    async fn stage(&self, stage: Stage) {
        self.stages.lock().unwrap().push(stage);
        if self.cancel_at == Some(stage) {
            self.token.cancel();
        }
    }

    fn follow_logs(&self) -> bool {
        true
    }

    fn log(&self, line: LogLine) {
        self.lines.lock().unwrap().push(line.text);
    }
}

fn describe(e: &ExecutorError) -> String {
    format!("described: {e}")
}

const ALL: [Stage; 5] = [
    Stage::Preparing,
    Stage::Prepared,
    Stage::Executing,
    Stage::Executed,
    Stage::Finalizing,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_in_order_and_cancellation_in_each() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    for cancel_at in [None].into_iter().chain(ALL.map(Some)) {
        let case = format!("cancel at {cancel_at:?}");
        let job = env.job(
            "driven",
            "echo hello; mkdir -p output; echo x > output/a.csv; \
             test -f analysis/long && sleep 300; true",
            &[("output/a.csv", PrivacyLevel::HighlySensitive)],
        );
        // only the job cancelled while executing runs long
        if cancel_at == Some(Stage::Executing) {
            std::fs::write(env.study.join("analysis/long"), "").unwrap();
        } else {
            let _ = std::fs::remove_file(env.study.join("analysis/long"));
        }
        let recorder = Recorder {
            stages: Mutex::new(Vec::new()),
            lines: Mutex::new(Vec::new()),
            cancel_at,
            token: CancellationToken::new(),
        };
        let started = Instant::now();
        let driven = drive(
            env.executor.as_ref(),
            &job,
            &recorder.token,
            &recorder,
            &describe,
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(60), "{case}");
        let stages = recorder.stages.lock().unwrap().clone();
        let reached = match cancel_at {
            None => ALL.len(),
            Some(stage) => ALL.iter().position(|s| *s == stage).unwrap() + 1,
        };
        match (cancel_at, driven) {
            // cancelled before the container exited: killed, recorded, no outputs
            (Some(Stage::Preparing | Stage::Prepared | Stage::Executing), driven) => {
                assert_eq!(stages, ALL[..reached], "{case}");
                let Driven::Cancelled(Some(results)) = driven else {
                    panic!("{case}: {driven:?}");
                };
                assert!(results.cancelled, "{case}");
                assert!(results.outputs.is_empty(), "{case}");
                if cancel_at == Some(Stage::Executing) {
                    assert_eq!(results.exit_code, Some(137), "{case}");
                } else {
                    assert_eq!(results.exit_code, None, "{case}: no container ran");
                }
                assert!(!env.high().join("output/a.csv").exists(), "{case}");
            }
            // once the container exited, its outputs are filed regardless
            (_, driven) => {
                assert_eq!(stages, ALL, "{case}");
                let Driven::Completed(results) = driven else {
                    panic!("{case}: {driven:?}");
                };
                assert_eq!(results.exit_code, Some(0), "{case}");
                assert!(results.outputs.contains_key("output/a.csv"), "{case}");
                assert!(
                    recorder.lines.lock().unwrap().iter().any(|l| l == "hello"),
                    "{case}: the output was not followed"
                );
                let _ = std::fs::remove_file(env.high().join("output/a.csv"));
            }
        }
        // every way out leaves a final state, no container, no working directory
        let state = env.executor.status(&job).await.unwrap().state;
        assert_eq!(state, ExecutorState::Finalized, "{case}");
        assert!(
            env.docker
                .inspect_container(&job.container_name(), None)
                .await
                .is_err(),
            "{case}: container left"
        );
        assert!(!env.config.job_dir(&job).exists(), "{case}: directory left");
    }
    let _ = std::fs::remove_file(env.study.join("analysis/long"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_recorded_with_the_callers_description() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let mut job = env.job("missing", "true", &[]);
    job.image = "ghcr.io/opensafely-core/warden-no-such-image:latest".into();
    let recorder = Recorder {
        stages: Mutex::new(Vec::new()),
        lines: Mutex::new(Vec::new()),
        cancel_at: None,
        token: CancellationToken::new(),
    };
    let driven = drive(
        env.executor.as_ref(),
        &job,
        &recorder.token,
        &recorder,
        &describe,
    )
    .await;
    assert_eq!(
        *recorder.stages.lock().unwrap(),
        [Stage::Preparing, Stage::Prepared]
    );
    let Driven::Failed { error, results } = driven else {
        panic!("{driven:?}");
    };
    assert!(
        matches!(error, ExecutorError::ImageNotFound { .. }),
        "{error}"
    );
    let results = results.expect("recorded");
    assert!(
        results.error.as_deref().unwrap().starts_with("described: "),
        "{results:?}"
    );
    assert_eq!(
        env.executor.status(&job).await.unwrap().state,
        ExecutorState::Error
    );
    assert!(!env.config.job_dir(&job).exists());
}
