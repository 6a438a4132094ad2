//! The one job driver: prepare → execute → wait → finalize → cleanup, with
//! cancellation and stage callbacks, on any [`Executor`].
//!
//! Engine-neutral: everything it does goes through the trait, so `warden
//! run`, the agent and a future engine (Slurm) drive jobs the same way and
//! share preparation, output filing, level-4 checks and records. The caller
//! decides what a stage means to it (a status change in its store, a line on
//! a terminal) through [`DriveEvents`].

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::Executor;
use crate::error::ExecutorError;
use crate::types::{Finalize, JobDefinition, JobResults, LogLine};

/// How long the log follower may go on draining after the container exited.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// Where a driven job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// About to make the working directory.
    Preparing,
    /// The working directory is ready.
    Prepared,
    /// The container is running.
    Executing,
    /// The container exited.
    Executed,
    /// Outputs are being filed and results recorded.
    Finalizing,
}

/// How a driven job ended. In every case the job's container and working
/// directory are gone (cleanup ran) and, when the engine could, its results
/// are recorded.
#[derive(Debug)]
pub enum Driven {
    /// The container ran to its end and the results are recorded.
    Completed(JobResults),
    /// The executor failed on the job; the failure is recorded (with the
    /// caller's description) when the engine could record it.
    Failed {
        /// What failed.
        error: ExecutorError,
        /// The recorded results, if recording worked.
        results: Option<JobResults>,
    },
    /// The cancellation token fired: the container (if any) was killed and
    /// the job recorded as cancelled, when the engine could.
    Cancelled(Option<JobResults>),
}

/// What the caller hears while a job is driven.
#[async_trait::async_trait]
pub trait DriveEvents: Send + Sync {
    /// The job entered `stage`. Called in order, each stage at most once.
    async fn stage(&self, stage: Stage);

    /// Whether to follow the container's output (then [`DriveEvents::log`]
    /// gets every line while the job runs).
    fn follow_logs(&self) -> bool {
        false
    }

    /// A line of the running job's output.
    fn log(&self, line: LogLine) {
        let _ = line;
    }
}

/// Drive `job` through every step on `executor`. `describe` turns an
/// executor failure into the text recorded with the job (a person reads it).
///
/// Cancellation is checked before each step and raced against the wait; a
/// step already under way (preparing, filing outputs) finishes first.
pub async fn drive(
    executor: &dyn Executor,
    job: &JobDefinition,
    cancel: &CancellationToken,
    events: &dyn DriveEvents,
    describe: &(dyn Fn(&ExecutorError) -> String + Sync),
) -> Driven {
    events.stage(Stage::Preparing).await;
    if cancel.is_cancelled() {
        return cancelled(executor, job).await;
    }
    if let Err(e) = executor.prepare(job).await {
        return failed(executor, job, cancel, e, describe).await;
    }
    events.stage(Stage::Prepared).await;
    if cancel.is_cancelled() {
        return cancelled(executor, job).await;
    }
    if let Err(e) = executor.execute(job).await {
        return failed(executor, job, cancel, e, describe).await;
    }
    events.stage(Stage::Executing).await;
    let waited = {
        let follow = events.follow_logs().then(|| executor.logs(job, true));
        let follower = async {
            if let Some(mut lines) = follow {
                while let Some(Ok(line)) = lines.next().await {
                    events.log(line);
                }
            }
        };
        tokio::pin!(follower);
        let mut follower_done = false;
        let waited = loop {
            tokio::select! {
                s = executor.wait(job) => break Some(s),
                () = cancel.cancelled() => break None,
                () = &mut follower, if !follower_done => follower_done = true,
            }
        };
        // Let the follower drain what the container wrote.
        if waited.is_some() && !follower_done {
            let _ = tokio::time::timeout(LOG_DRAIN, &mut follower).await;
        }
        waited
    };
    let Some(waited) = waited else {
        return cancelled(executor, job).await;
    };
    if let Err(e) = waited {
        return failed(executor, job, cancel, e, describe).await;
    }
    events.stage(Stage::Executed).await;
    events.stage(Stage::Finalizing).await;
    let results = match executor.finalize(job, Finalize::Completed).await {
        Ok(r) => r,
        Err(e) => return failed(executor, job, cancel, e, describe).await,
    };
    executor.cleanup(job).await;
    Driven::Completed(results)
}

/// Records an executor failure (or, if cancellation came meanwhile, cancels).
async fn failed(
    executor: &dyn Executor,
    job: &JobDefinition,
    cancel: &CancellationToken,
    error: ExecutorError,
    describe: &(dyn Fn(&ExecutorError) -> String + Sync),
) -> Driven {
    if cancel.is_cancelled() {
        return cancelled(executor, job).await;
    }
    let results = match executor
        .finalize(job, Finalize::Error(describe(&error)))
        .await
    {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "could not record the error in the job's metadata");
            None
        }
    };
    executor.cleanup(job).await;
    Driven::Failed { error, results }
}

/// Kills the job's container (if any), records it as cancelled, cleans up.
async fn cancelled(executor: &dyn Executor, job: &JobDefinition) -> Driven {
    let results = match executor.cancel(job).await {
        Ok(r) => Some(r),
        Err(ExecutorError::DockerUnavailable { .. }) => None,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "cancelling the container failed");
            None
        }
    };
    executor.cleanup(job).await;
    Driven::Cancelled(results)
}
