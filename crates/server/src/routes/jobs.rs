//! `/api/v1/jobs`: read and cancel single jobs.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use warden_state::JobFilter;

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppPath, AppQuery, ErrorBody, shown};
use crate::views::{CancelResponse, FromRecord, JobList, JobView};

/// Filters for listing jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs of this job request.
    job_request_id: Option<String>,
    /// Only this workspace.
    workspace: Option<String>,
    /// Only this backend.
    backend: Option<String>,
    /// Only this action.
    action: Option<String>,
    /// Only this state (`pending`, `running`, `failed`, `succeeded`).
    state: Option<String>,
    /// At most this many (default 1000, at most 10000).
    limit: Option<u32>,
}

/// List jobs, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_jobs",
    path = "/api/v1/jobs",
    tag = "jobs",
    params(ListParams),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Jobs", body = JobList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: CurrentUser,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<JobList>, AppError> {
    let states = match params.state.as_deref() {
        None => Vec::new(),
        Some(s) => vec![s.parse::<warden_state::State>().map_err(|_| {
            AppError::bad_request(format!(
                "invalid state {s:?}: expected pending, running, failed or succeeded"
            ))
        })?],
    };
    let jobs = state
        .store
        .list_jobs(&JobFilter {
            job_request_id: params.job_request_id,
            workspace: params.workspace,
            backend: params.backend,
            action: params.action,
            states,
            limit: Some(params.limit.unwrap_or(1000).min(10_000)),
        })
        .await?;
    Ok(Json(JobList {
        jobs: jobs.iter().map(JobView::from_record).collect(),
    }))
}

/// One job.
#[utoipa::path(
    get,
    operation_id = "get_job",
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<JobView>, AppError> {
    let job = state
        .store
        .get_job(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Job '{}' not found", shown(&id))))?;
    Ok(Json(JobView::from_record(&job)))
}

/// Cancel one job, whatever its state (a finished job is left as it is).
#[utoipa::path(
    post,
    operation_id = "cancel_job",
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "What was cancelled", body = CancelResponse),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not allowed to cancel", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<CancelResponse>, AppError> {
    let job = state
        .store
        .get_job(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Job '{}' not found", shown(&id))))?;
    let request = state
        .store
        .get_job_request(&job.job_request_id)
        .await?
        .ok_or_else(|| AppError::Internal(format!("job {id} has no job request")))?;
    user.check_may_cancel(&state, &request).await?;
    let flagged = state
        .store
        .cancel_job_audited(&id, &user.0.username)
        .await?;
    if flagged {
        if let Some(job) = state.store.get_job(&id).await? {
            state.events.publish(job);
        }
        state.scheduler.wake();
    }
    let (cancelled, already_finished) = if flagged {
        (vec![id], vec![])
    } else {
        (vec![], vec![id])
    };
    Ok(Json(CancelResponse {
        cancelled,
        already_finished,
    }))
}
