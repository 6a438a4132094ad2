//! The task API for agents: `/api/v1/backends/{slug}/tasks`.
//!
//! An agent is never reached from outside: it pulls its backend's active
//! tasks and reports on each. Both calls need a token of that backend. A task
//! of another backend does not exist as far as an agent can tell (404).
//! Updates are idempotent: repeating one, or sending one for a task that is
//! already complete or was cancelled, changes nothing.
//!
//! **Ordering.** The agent's `timestamp_ns` is believed only within
//! [`warden_state::MAX_AGENT_CLOCK_SKEW`] of the server's clock when the
//! update arrives (it is clamped into that window, and a negative one is a
//! 400): so updates are ordered by a time the server bounds, not by
//! whatever the agent's clock says. A progress update older than the one
//! recorded is ignored (`stale`); a final one (`complete`) is always
//! applied, once (a repeat is `inactive`), so no agent clock, however
//! wrong, can leave a job un-completable or push its times into the future
//! ([`warden_state::agent_update_time`]). Results carry no file names: see
//! [`crate::definition`].

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use warden_state::{TaskType, TaskUpdate, TaskUpdateOutcome};

use crate::app::AppState;
use crate::auth::authenticate_backend;
use crate::definition::TaskUpdateBody;
use crate::error::{AppError, AppJson, AppPath, ErrorBody, shown};
use crate::views::{FromRecord, TaskList, TaskUpdateResponse, TaskView};

/// The backend's active tasks, oldest first. Records that its agent was
/// seen.
#[utoipa::path(
    get,
    operation_id = "pull_tasks",
    path = "/api/v1/backends/{slug}/tasks",
    tag = "agents",
    params(("slug" = String, Path, description = "Backend slug")),
    security(("backend_token" = [])),
    responses(
        (status = 200, description = "Active tasks", body = TaskList),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A token of another backend", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
    )
)]
pub async fn pull(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppPath(slug): AppPath<String>,
) -> Result<Json<TaskList>, AppError> {
    authenticate_backend(&state, &headers, &slug).await?;
    state.store.record_backend_seen(&slug).await?;
    let tasks = state.store.active_tasks(&slug).await?;
    Ok(Json(TaskList {
        tasks: tasks.iter().map(TaskView::from_record).collect(),
    }))
}

/// Report on a task: its stage, whether the agent is done with it, and (when
/// done) the redacted results. Unknown fields anywhere in the body, in
/// particular anything that could carry output file names, are refused.
#[utoipa::path(
    post,
    operation_id = "update_task",
    path = "/api/v1/backends/{slug}/tasks/{id}",
    tag = "agents",
    params(
        ("slug" = String, Path, description = "Backend slug"),
        ("id" = String, Path, description = "Task id"),
    ),
    request_body = TaskUpdateBody,
    security(("backend_token" = [])),
    responses(
        (status = 200, description = "Recorded, or ignored as a repeat", body = TaskUpdateResponse),
        (status = 400, description = "Invalid body (including unknown fields)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A token of another backend", body = ErrorBody),
        (status = 404, description = "No such backend, or no such task on it", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppPath((slug, id)): AppPath<(String, String)>,
    AppJson(body): AppJson<TaskUpdateBody>,
) -> Result<Json<TaskUpdateResponse>, AppError> {
    authenticate_backend(&state, &headers, &slug).await?;
    let task = state
        .store
        .get_task(&id)
        .await?
        .filter(|t| t.backend == slug)
        .ok_or_else(|| AppError::NotFound(format!("Task '{}' not found", shown(&id))))?;
    let results = match body.results {
        Some(r) => {
            let mut r = r.sanitise().map_err(AppError::bad_request)?;
            // The message becomes part of the job's status message, which
            // people read and the log repeats.
            r.status_message = r.status_message.map(|m| shown(&m).into_owned());
            Some(r)
        }
        None => None,
    };
    if body.complete && results.is_none() && task.task_type == TaskType::RunJob {
        return Err(AppError::bad_request(
            "a complete update of a runjob task needs results",
        ));
    }
    let update = TaskUpdate {
        task_id: id.clone(),
        stage: body.stage.as_str().to_owned(),
        results: serde_json::to_value(&results).expect("results serialise"),
        complete: body.complete,
        timestamp_ns: body.timestamp_ns,
    };
    let outcome = state.store.update_task(&slug, &update).await?;
    if outcome == TaskUpdateOutcome::Applied {
        state.scheduler.wake();
    }
    let outcome = match outcome {
        TaskUpdateOutcome::Applied => "applied",
        TaskUpdateOutcome::Inactive => "inactive",
        TaskUpdateOutcome::Stale => "stale",
    };
    Ok(Json(TaskUpdateResponse {
        outcome: outcome.into(),
    }))
}
