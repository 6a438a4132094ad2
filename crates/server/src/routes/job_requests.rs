//! `/api/v1/job-requests`: create, list, read, cancel, and watch.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use warden_state::JobRequestFilter;

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::create::{CreateJobRequest, create_job_request};
use crate::error::{AppBytes, AppError, AppJson, AppPath, AppQuery, ErrorBody, shown};
use crate::views::{
    CancelResponse, CreateJobRequestResponse, FromRecord, JobRequestList, JobRequestView, JobView,
    job_request_view,
};

/// Create a job request: plan the requested actions at a commit of the
/// workspace's branch and store the jobs. "Nothing to do" is a successful
/// answer (`result: nothing_to_do`); sending the same `id` again returns the
/// first request (`200`, `result: already_exists`).
#[utoipa::path(
    post,
    operation_id = "create_job_request",
    path = "/api/v1/job-requests",
    tag = "job requests",
    request_body = CreateJobRequest,
    security(("user_token" = [])),
    responses(
        (status = 201, description = "Created (with jobs, or recorded as nothing to do)", body = CreateJobRequestResponse),
        (status = 200, description = "The same id was sent before: that request", body = CreateJobRequestResponse),
        (status = 400, description = "Invalid body, actions, branch, commit or project.yaml", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not allowed to run jobs there", body = ErrorBody),
        (status = 404, description = "Unknown workspace or backend", body = ErrorBody),
        (status = 409, description = "The id is taken by a different request", body = ErrorBody),
        (status = 502, description = "The repository could not be fetched", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<CreateJobRequest>,
) -> Result<(StatusCode, Json<CreateJobRequestResponse>), AppError> {
    let (new, answer) = create_job_request(&state, &user, body).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)))
}

/// Filters for listing job requests.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this workspace.
    workspace: Option<String>,
    /// Only this backend.
    backend: Option<String>,
    /// Only by this user.
    created_by: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
    /// Skip this many.
    offset: Option<u32>,
}

/// List job requests, newest first, with derived status.
#[utoipa::path(
    get,
    operation_id = "list_job_requests",
    path = "/api/v1/job-requests",
    tag = "job requests",
    params(ListParams),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Job requests", body = JobRequestList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: CurrentUser,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<JobRequestList>, AppError> {
    let requests = state
        .store
        .list_job_requests(&JobRequestFilter {
            workspace: params.workspace,
            backend: params.backend,
            created_by: params.created_by,
            limit: Some(params.limit.unwrap_or(100).min(1000)),
            offset: params.offset,
        })
        .await?;
    // Two queries for the page, whatever its length.
    let ids: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
    let jobs = state.store.jobs_for_requests(&ids).await?;
    let views = requests
        .iter()
        .map(|request| job_request_view(request, &jobs[&request.id], false))
        .collect();
    Ok(Json(JobRequestList {
        job_requests: views,
    }))
}

async fn load(state: &AppState, id: &str) -> Result<JobRequestView, AppError> {
    let detail = state
        .store
        .job_request_detail(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Job request '{}' not found", shown(id))))?;
    Ok(job_request_view(&detail.request, &detail.jobs, true))
}

/// One job request with its jobs and derived fields.
#[utoipa::path(
    get,
    operation_id = "get_job_request",
    path = "/api/v1/job-requests/{id}",
    tag = "job requests",
    params(("id" = String, Path, description = "Job request id")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The job request", body = JobRequestView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such job request", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<JobRequestView>, AppError> {
    Ok(Json(load(&state, &id).await?))
}

/// What to cancel; without a body, every action of the request.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Actions to cancel (default: all of the request's).
    #[serde(default)]
    pub actions: Option<Vec<String>>,
}

/// Cancel some or all actions of a job request, whatever their state:
/// pending and running jobs are stopped, finished ones are left alone.
#[utoipa::path(
    post,
    operation_id = "cancel_job_request",
    path = "/api/v1/job-requests/{id}/cancel",
    tag = "job requests",
    params(("id" = String, Path, description = "Job request id")),
    request_body(content = Option<CancelBody>, description = "Optional: which actions"),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "What was cancelled", body = CancelResponse),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not allowed to cancel", body = ErrorBody),
        (status = 404, description = "No such job request, or an action without a job in it", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<String>,
    AppBytes(body): AppBytes,
) -> Result<Json<CancelResponse>, AppError> {
    let body: CancelBody = if body.iter().all(u8::is_ascii_whitespace) {
        CancelBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest {
            code: "invalid_json",
            message: format!("could not parse JSON from request body: {e}"),
        })?
    };
    let request = state
        .store
        .get_job_request(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Job request '{}' not found", shown(&id))))?;
    user.check_may_cancel(&state, &request).await?;
    let jobs = state.store.jobs_for_request(&id).await?;
    let actions: Vec<String> = match body.actions {
        Some(actions) => {
            let mut missing: Vec<&str> = actions
                .iter()
                .filter(|a| !jobs.iter().any(|j| &j.action == *a))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                missing.sort_unstable();
                return Err(AppError::NotFound(format!(
                    "Jobs matching requested cancelled actions could not be found: {}",
                    shown(&missing.join(","))
                )));
            }
            actions
        }
        None => jobs.iter().map(|j| j.action.clone()).collect(),
    };
    if jobs.is_empty() {
        return Ok(Json(CancelResponse {
            cancelled: vec![],
            already_finished: vec![],
        }));
    }
    let outcome = state
        .store
        .cancel_actions_audited(&id, &actions, &user.0.username)
        .await?;
    for job in state.store.get_jobs(&outcome.cancelled).await? {
        state.events.publish(job);
    }
    state.scheduler.wake();
    Ok(Json(CancelResponse {
        cancelled: outcome.cancelled,
        already_finished: outcome.already_finished,
    }))
}

/// Server-sent events for one job request: first a `snapshot` (the request
/// with its jobs), then a `job` event (a job) and a `status` event (the
/// request without jobs) whenever one of its jobs changes. The stream ends
/// after the `status` event that shows the request complete (immediately
/// after the snapshot if it already is). Keep-alive comments every 15 s.
#[utoipa::path(
    get,
    operation_id = "watch_job_request",
    path = "/api/v1/job-requests/{id}/events",
    tag = "job requests",
    params(("id" = String, Path, description = "Job request id")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "An event stream (`snapshot`: JobRequestView, `job`: JobView, `status`: JobRequestView)", content_type = "text/event-stream", body = String),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such job request", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    _user: CurrentUser,
    AppPath(id): AppPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    // Subscribe before reading, so no change falls between the two.
    let mut rx = state.events.subscribe();
    let detail = state
        .store
        .job_request_detail(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Job request '{}' not found", shown(&id))))?;
    let mut shutdown = state.shutdown.clone();
    let stream = async_stream(move |yielder| async move {
        let request = detail.request;
        let mut jobs = detail.jobs;
        let snapshot = job_request_view(&request, &jobs, true);
        let done = snapshot.is_completed;
        if !yielder.send(json_event("snapshot", &snapshot)).await {
            return;
        }
        if done {
            return;
        }
        loop {
            let received = tokio::select! {
                r = rx.recv() => r,
                () = yielder.0.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match received {
                Ok(job) if job.job_request_id == request.id => {
                    match jobs.iter_mut().find(|j| j.id == job.id) {
                        Some(slot) => {
                            // Never show an older version after a newer one.
                            if job.updated_at < slot.updated_at
                                || job.status_code_updated_at < slot.status_code_updated_at
                            {
                                continue;
                            }
                            *slot = (*job).clone();
                        }
                        None => jobs.push((*job).clone()),
                    }
                    if !yielder
                        .send(json_event("job", &JobView::from_record(&*job)))
                        .await
                    {
                        return;
                    }
                    let status = job_request_view(&request, &jobs, false);
                    let done = status.is_completed;
                    if !yielder.send(json_event("status", &status)).await {
                        return;
                    }
                    if done {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Fell behind: start again from the store.
                    let Ok(Some(fresh)) = state.store.job_request_detail(&request.id).await else {
                        return;
                    };
                    jobs = fresh.jobs;
                    let snapshot = job_request_view(&request, &jobs, true);
                    let done = snapshot.is_completed;
                    if !yielder.send(json_event("snapshot", &snapshot)).await {
                        return;
                    }
                    if done {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn json_event<T: Serialize>(name: &str, value: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

/// A minimal generator: `f` gets a sender and produces items until it
/// returns; the stream ends then.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(Yielder) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(Yielder(tx)));
    tokio_stream::wrappers::ReceiverStream::new(rx).map_ok()
}

/// The sending half of [`async_stream`].
struct Yielder(tokio::sync::mpsc::Sender<Event>);

impl Yielder {
    /// Sends an event; `false` once the client has gone away.
    async fn send(&self, event: Event) -> bool {
        self.0.send(event).await.is_ok()
    }
}

trait MapOk {
    fn map_ok(self) -> impl Stream<Item = Result<Event, Infallible>>;
}

impl MapOk for tokio_stream::wrappers::ReceiverStream<Event> {
    fn map_ok(self) -> impl Stream<Item = Result<Event, Infallible>> {
        use tokio_stream::StreamExt;
        self.map(Ok)
    }
}
