//! Running a request's jobs in dependency order, concurrently.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinSet;
use warden_executor::JobResults;
use warden_state::{Job, StatusCode};

use crate::job::run_job;
use crate::{Ctx, JobSummary};

/// Where a job stands in this run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Running,
    Succeeded,
    Failed,
}

/// Runs the jobs: each once what it waits for succeeded, up to `concurrency`
/// at a time. Returns summaries in plan order and whether the run was cancelled.
pub(crate) async fn schedule(ctx: &Arc<Ctx>, jobs: Vec<Job>) -> (Vec<JobSummary>, bool) {
    let ids: HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut slots: HashMap<String, Slot> =
        jobs.iter().map(|j| (j.id.clone(), Slot::Waiting)).collect();
    let mut summaries: HashMap<String, JobSummary> = HashMap::new();
    let mut running: JoinSet<JobSummary> = JoinSet::new();
    let concurrency = ctx.opts.concurrency.max(1);
    let mut stopping = false;
    let mut cancelled = false;
    loop {
        // Decide what every waiting job does now, in plan order.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for job in &jobs {
                if slots[&job.id] != Slot::Waiting {
                    continue;
                }
                let waits: Vec<Slot> = job
                    .wait_for_job_ids
                    .iter()
                    .filter(|w| ids.contains(*w))
                    .map(|w| slots[w])
                    .collect();
                if waits.contains(&Slot::Failed) {
                    let msg = "Not starting as dependency failed";
                    ctx.set(job, StatusCode::DependencyFailed, msg).await;
                    ctx.status(&job.action, msg);
                    slots.insert(job.id.clone(), Slot::Failed);
                    summaries.insert(
                        job.id.clone(),
                        summary(job, StatusCode::DependencyFailed, msg, None, None),
                    );
                    progressed = true;
                    continue;
                }
                if stopping || cancelled {
                    let (code, msg) = if cancelled {
                        (
                            StatusCode::CancelledByUser,
                            "Cancelled by user before it started",
                        )
                    } else {
                        (
                            StatusCode::CancelledByUser,
                            "Not started: the run stopped after a job failed (use --continue-on-error to keep going)",
                        )
                    };
                    let _ = ctx.store.cancel_job(&job.id).await;
                    ctx.set(job, code, msg).await;
                    ctx.status(&job.action, msg);
                    slots.insert(job.id.clone(), Slot::Failed);
                    summaries.insert(job.id.clone(), summary(job, code, msg, None, None));
                    progressed = true;
                    continue;
                }
                if waits.iter().all(|s| *s == Slot::Succeeded) && running.len() < concurrency {
                    slots.insert(job.id.clone(), Slot::Running);
                    let ctx = Arc::clone(ctx);
                    let job = job.clone();
                    running.spawn(async move { run_job(ctx, job).await });
                    progressed = true;
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = running.join_next() => {
                let Some(done) = done else { continue };
                match done {
                    Ok(s) => {
                        let ok = s.succeeded();
                        slots.insert(s.job_id.clone(), if ok { Slot::Succeeded } else { Slot::Failed });
                        if !ok && !ctx.opts.continue_on_error {
                            stopping = true;
                        }
                        summaries.insert(s.job_id.clone(), s);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a job task panicked");
                        stopping = true;
                    }
                }
            }
            () = ctx.cancel.cancelled(), if !cancelled => {
                // Running jobs see the same token and cancel themselves.
                cancelled = true;
            }
        }
    }
    if ctx.cancel.is_cancelled() {
        cancelled = true;
    }
    // A job whose task panicked has no summary: record the truth.
    for job in &jobs {
        if !summaries.contains_key(&job.id) {
            let msg = "Internal error: the job's runner stopped unexpectedly";
            ctx.set(job, StatusCode::InternalError, msg).await;
            summaries.insert(
                job.id.clone(),
                summary(job, StatusCode::InternalError, msg, None, None),
            );
        }
    }
    let ordered = jobs
        .iter()
        .filter_map(|j| summaries.remove(&j.id))
        .collect();
    (ordered, cancelled)
}

pub(crate) fn summary(
    job: &Job,
    code: StatusCode,
    message: &str,
    results: Option<JobResults>,
    log: Option<PathBuf>,
) -> JobSummary {
    JobSummary {
        action: job.action.clone(),
        job_id: job.id.clone(),
        code,
        message: message.to_string(),
        results,
        log_path: log,
    }
}
