//! The JSON shapes of the API are `warden-api`'s views (so a client or an
//! agent reads exactly the types the server writes); this module builds them
//! from the store's records. Views are never the records themselves, so a
//! storage change cannot leak into the API by accident.

use time::OffsetDateTime;
use warden_state::{Job, JobRequest, RequestStatus, Task};

pub use warden_api::views::*;

/// RFC 3339 (UTC, with `Z`) or null.
fn ts(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(rfc3339)
}

/// RFC 3339, UTC.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A view built from one of the store's records.
pub trait FromRecord<R> {
    /// The view of `record`.
    fn from_record(record: &R) -> Self;
}

impl FromRecord<Job> for JobView {
    fn from_record(j: &Job) -> JobView {
        JobView {
            id: j.id.clone(),
            job_request_id: j.job_request_id.clone(),
            workspace: j.workspace.clone(),
            backend: j.backend.clone(),
            action: j.action.clone(),
            state: j.state.as_str().to_owned(),
            status_code: j.status_code.as_str().to_owned(),
            status_message: j.status_message.clone(),
            run_command: j.run_command.clone(),
            image: j.image.clone(),
            requires_db: j.requires_db,
            needs: j.requires_outputs_from.clone(),
            wait_for_job_ids: j.wait_for_job_ids.clone(),
            cancelled: j.cancelled,
            created_at: rfc3339(j.created_at),
            started_at: ts(j.started_at),
            completed_at: ts(j.completed_at),
            updated_at: rfc3339(j.updated_at),
            runtime_seconds: j.runtime().map(|d| d.as_secs()),
        }
    }
}

/// The view of `request` with status derived from `jobs`; `detail` adds
/// the jobs and the project definition.
pub fn job_request_view(request: &JobRequest, jobs: &[Job], detail: bool) -> JobRequestView {
    let status: RequestStatus = warden_state::derive_request_status(request, jobs);
    JobRequestView {
        id: request.id.clone(),
        workspace: request.workspace.clone(),
        backend: request.backend.clone(),
        repo_url: warden_git::redact_url(&request.repo_url),
        branch: request.branch.clone(),
        commit: request.commit.clone(),
        requested_actions: request.requested_actions.clone(),
        force_run_dependencies: request.force_run_dependencies,
        created_by: request.created_by.clone(),
        created_at: rfc3339(request.created_at),
        status: status.status.as_str().to_owned(),
        status_message: status.message.clone(),
        is_completed: status.is_completed(),
        started_at: ts(status.started_at),
        completed_at: ts(status.completed_at),
        runtime_seconds: status.runtime.as_secs(),
        runtime: status.runtime_hms(),
        counts: JobCountsView {
            pending: status.counts.pending,
            running: status.counts.running,
            failed: status.counts.failed,
            succeeded: status.counts.succeeded,
            total: status.counts.total(),
            completed: status.counts.completed(),
        },
        jobs: detail.then(|| jobs.iter().map(JobView::from_record).collect()),
        project_definition: detail.then(|| request.project_definition.clone()),
    }
}

impl FromRecord<Task> for TaskView {
    fn from_record(t: &Task) -> TaskView {
        TaskView {
            id: t.id.clone(),
            backend: t.backend.clone(),
            task_type: t.task_type.as_str().to_owned(),
            definition: t.definition.clone(),
            created_at: rfc3339(t.created_at),
        }
    }
}
