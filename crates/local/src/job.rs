//! One job of a local run: its definition, driving it through the
//! executor's driver, and recording every step in the history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use warden_executor::driver::{DriveEvents, Driven, Stage, drive};
use warden_executor::{ExecutorError, JobDefinition, JobResults, LogLine, Outcome as ExecOutcome};
use warden_pipeline::escape::escape_name;
use warden_state::{Job, JobUpdate, StatusCode};

use crate::plan::full_image;
use crate::schedule::summary;
use crate::{Ctx, Event, JobSummary, LOCAL_BACKEND};

/// The final status text of a job that ran, as the researcher sees it locally.
///
/// The controller's text (`StatusCode::for_results` of the redacted results,
/// the same for a backend) names no file: for unmatched patterns it only says
/// "See job log for details". Locally the study is the researcher's own, so
/// name the patterns that matched nothing, as `opensafely run` does.
pub fn local_message(results: &JobResults) -> String {
    match results.outcome() {
        ExecOutcome::UnmatchedPatterns if !results.unmatched_patterns.is_empty() => {
            let mut message = "No outputs found matching patterns:".to_string();
            for pattern in &results.unmatched_patterns {
                message.push_str("\n - ");
                message.push_str(&escape_name(pattern));
            }
            message
        }
        _ => StatusCode::for_results(&results.redacted(), false).1,
    }
}

/// The executor's job definition for a planned job.
async fn definition(ctx: &Ctx, job: &Job) -> Result<JobDefinition, String> {
    let parts = warden_pipeline::python::shlex_split(&job.run_command)
        .map_err(|e| format!("cannot split the run command `{}`: {e:?}", job.run_command))?;
    let image = parts.first().cloned().unwrap_or_default();
    let mut def = JobDefinition::new(
        &job.id,
        &ctx.request_id,
        &ctx.workspace,
        &job.action,
        full_image(&ctx.opts.image_prefix, image),
        &ctx.dir,
    );
    def.args = parts.into_iter().skip(1).collect();
    def.env
        .insert("OPENSAFELY_BACKEND".into(), "expectations".into());
    def.code_exclude = ctx.exclude.clone();
    def.cpu_count = ctx.opts.cpu_count;
    def.memory_limit = ctx.opts.memory_limit;
    def.pids_limit = ctx.opts.pids_limit;
    def.created_by = Some(ctx.opts.created_by.clone());
    def.repo_url = Some(ctx.dir.display().to_string());
    def.labels
        .insert("warden.request".into(), ctx.request_id.clone());
    if let Some(action) = ctx.pipeline.actions.get(&job.action) {
        for (level, entries) in action.outputs.levels() {
            for pattern in entries.values() {
                def.output_spec.insert(pattern.clone(), level);
            }
        }
    }
    // Inputs: every output recorded for the latest job of each action needed.
    let latest = ctx
        .store
        .latest_jobs(&ctx.workspace, Some(LOCAL_BACKEND))
        .await
        .map_err(|e| format!("cannot read the job history: {e}"))?;
    let by_action: HashMap<&str, &Job> = latest.iter().map(|j| (j.action.as_str(), j)).collect();
    let mut inputs = BTreeMap::new();
    for need in &job.requires_outputs_from {
        if let Some(outputs) = by_action
            .get(need.as_str())
            .and_then(|j| j.outputs.as_ref())
        {
            for path in outputs.keys() {
                inputs.insert(path.clone(), ());
            }
        }
    }
    def.inputs = inputs.into_keys().collect();
    Ok(def)
}

/// What the driver's stages mean to a local run: a status change in the
/// history and a line for the researcher.
struct LocalEvents<'a> {
    ctx: &'a Ctx,
    job: &'a Job,
}

#[async_trait::async_trait]
impl DriveEvents for LocalEvents<'_> {
    async fn stage(&self, stage: Stage) {
        let (code, msg, shown) = match stage {
            Stage::Preparing => (
                StatusCode::Preparing,
                "Preparing your code and workspace files",
                true,
            ),
            Stage::Prepared => (StatusCode::Prepared, "Prepared and ready to run", true),
            Stage::Executing => (StatusCode::Executing, "Executing job on the backend", true),
            Stage::Executed => (
                StatusCode::Executed,
                "Job has finished executing and is waiting to be finalized",
                false,
            ),
            Stage::Finalizing => (StatusCode::Finalizing, "Recording job results", true),
        };
        self.ctx.set(self.job, code, msg).await;
        if shown {
            self.ctx.status(&self.job.action, msg);
        }
    }

    fn follow_logs(&self) -> bool {
        true
    }

    fn log(&self, line: LogLine) {
        let _ = self.ctx.events.send(Event::Log {
            action: self.job.action.clone(),
            line: line.text.trim_end_matches(['\n', '\r']).to_string(),
        });
    }
}

/// Runs one job through the executor's driver and records every step.
pub(crate) async fn run_job(ctx: Arc<Ctx>, job: Job) -> JobSummary {
    let events = LocalEvents {
        ctx: &ctx,
        job: &job,
    };
    let def = match definition(&ctx, &job).await {
        Ok(def) => def,
        Err(e) => {
            events.stage(Stage::Preparing).await;
            return fail(&ctx, &job, None, format!("Internal error: {e}")).await;
        }
    };
    let driven = drive(
        ctx.executor.as_ref(),
        &def,
        &ctx.cancel,
        &events,
        &failure_message,
    )
    .await;
    let results = match driven {
        Driven::Completed(results) => results,
        Driven::Failed { error, results } => {
            return fail(&ctx, &job, results, failure_message(&error)).await;
        }
        Driven::Cancelled(results) => return cancel(&ctx, &job, results).await,
    };
    let action = &job.action;
    // The one decision of a final code, as on a backend (job-runner §5.9).
    let (code, _) = StatusCode::for_results(&results.redacted(), false);
    let message = local_message(&results);
    let mut update = JobUpdate::code(&job.id, code, &message);
    update.outputs = Some(
        results
            .outputs
            .iter()
            .map(|(p, l)| (p.clone(), l.as_str().to_string()))
            .collect(),
    );
    ctx.record(update).await;
    ctx.status(action, &message);
    let log = ctx.dir.join("metadata").join(format!("{action}.log"));
    summary(
        &job,
        code,
        &message,
        Some(results),
        log.is_file().then_some(log),
    )
}

/// The text of an executor failure. Problems a person must fix (a missing
/// image, a missing input file) are shown as they are: they say what to do,
/// and calling them internal errors ("a platform issue rather than a problem
/// for users to fix") would send the researcher the wrong way. Anything else
/// is an internal error.
fn failure_message(error: &ExecutorError) -> String {
    match error {
        ExecutorError::ImageNotFound { .. }
        | ExecutorError::MissingInput { .. }
        | ExecutorError::InputNotRegularFile { .. }
        | ExecutorError::LinkInPath { .. }
        | ExecutorError::JobTree { .. } => error.to_string(),
        // Locally the study is the researcher's own: name the files (escaped).
        ExecutorError::UnusableOutputNames { names, .. } => {
            let mut message = error.to_string();
            message.push(':');
            for name in names {
                message.push_str("\n - ");
                message.push_str(name);
            }
            message
        }
        _ => format!("Internal error: {error}"),
    }
}

/// Records an executor failure as the job's final state (`internal_error`),
/// keeping the error's text: locally it is the researcher's to read. The
/// driver has recorded it in the job's metadata (`results`) and cleaned up.
async fn fail(ctx: &Ctx, job: &Job, results: Option<JobResults>, message: String) -> JobSummary {
    ctx.set(job, StatusCode::InternalError, &message).await;
    ctx.status(&job.action, &message);
    summary(job, StatusCode::InternalError, &message, results, None)
}

/// Records the job as cancelled (the driver killed its container, recorded
/// it and cleaned up).
async fn cancel(ctx: &Ctx, job: &Job, results: Option<JobResults>) -> JobSummary {
    let _ = ctx.store.cancel_job(&job.id).await;
    let msg = "Cancelled by user";
    ctx.set(job, StatusCode::CancelledByUser, msg).await;
    ctx.status(&job.action, msg);
    summary(job, StatusCode::CancelledByUser, msg, results, None)
}
