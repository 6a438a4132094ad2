//! Creating a job request: validate, resolve the commit, read and check
//! `project.yaml`, plan, store — job-runner §3 behind job-server's guards.
//!
//! Guarantees:
//!
//! * **Nothing changes on bad input.** Every check (fields, workspace,
//!   backend, permission, git, `project.yaml`, planning) happens before the
//!   one transaction that stores the request, its jobs and its audit entry,
//!   and a planning error inside it rolls it back.
//! * **"Nothing to do" is an answer**: the request is recorded with status
//!   `nothing_to_do` and the planner's message, and the call succeeds.
//! * **Idempotent by id**: sending the same request id again returns the
//!   request created the first time (`result: already_exists`, HTTP 200),
//!   provided it asks for the same thing; a different request under a known
//!   id is a 409. Concurrent retries with one id create it once.
//! * **No duplicate in-flight work**: planning reads the workspace state
//!   inside `warden-state`'s per-workspace creation lock, so however many
//!   requests arrive at once for one workspace, no action ever gets two
//!   pending or running jobs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warden_planner::{JobState, Plan, PlanError, PriorJob};
use warden_state::{JobRequestStatus, NewJob, NewJobRequest, State};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, shown};
use crate::views::{CreateJobRequestResponse, job_request_view};
use warden_pipeline::escape::needs_escape;

/// The body of `POST /api/v1/job-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// Optional id chosen by the client (16 characters of `[a-z0-9]`), which
    /// makes retries safe: the same id twice creates one request. Default: a
    /// new random id.
    #[serde(default)]
    pub id: Option<String>,
    /// Workspace name.
    pub workspace: String,
    /// Backend slug.
    pub backend: String,
    /// Commit to run (full or abbreviated sha, on the workspace's branch).
    /// Default: the branch head now.
    #[serde(default)]
    pub commit: Option<String>,
    /// Actions to run; `run_all` runs every action that has not succeeded.
    pub actions: Vec<String>,
    /// Re-run the dependencies of the requested actions even if they
    /// succeeded.
    #[serde(default)]
    pub force_run_dependencies: bool,
}

fn planner_state(state: State) -> JobState {
    match state {
        State::Pending => JobState::Pending,
        State::Running => JobState::Running,
        State::Failed => JobState::Failed,
        State::Succeeded => JobState::Succeeded,
    }
}

fn plan_error(e: PlanError) -> AppError {
    AppError::Plan {
        message: e.to_string(),
        valid_actions: e.valid_actions().map(<[String]>::to_vec),
    }
}

/// Whether an existing request is what `body` asks for (a retry).
fn same_request(
    existing: &warden_state::JobRequest,
    body: &CreateJobRequest,
    username: &str,
) -> bool {
    existing.workspace == body.workspace.to_lowercase()
        && existing.backend == body.backend
        && existing.requested_actions == body.actions
        && existing.force_run_dependencies == body.force_run_dependencies
        && existing.created_by == username
        && body
            .commit
            .as_deref()
            .is_none_or(|c| existing.commit.starts_with(&c.to_ascii_lowercase()))
}

async fn replay(
    state: &AppState,
    id: &str,
    body: &CreateJobRequest,
    user: &CurrentUser,
) -> Result<Option<CreateJobRequestResponse>, AppError> {
    let Some(existing) = state.store.get_job_request(id).await? else {
        return Ok(None);
    };
    if !same_request(&existing, body, &user.0.username) {
        return Err(AppError::Conflict(format!(
            "Job request '{id}' already exists and asks for something else"
        )));
    }
    let jobs = state.store.jobs_for_request(id).await?;
    Ok(Some(CreateJobRequestResponse {
        result: "already_exists".into(),
        details: format!("Job request '{id}' was already created"),
        count: 0,
        job_request: job_request_view(&existing, &jobs, true),
    }))
}

/// Creates a job request; returns whether it is new, and the answer.
pub async fn create_job_request(
    state: &AppState,
    user: &CurrentUser,
    body: CreateJobRequest,
) -> Result<(bool, CreateJobRequestResponse), AppError> {
    // Field checks (job-runner §3.1 order and messages).
    if body.actions.is_empty() {
        return Err(AppError::Plan {
            message: "At least one action must be supplied".into(),
            valid_actions: None,
        });
    }
    if body.workspace.is_empty() {
        return Err(AppError::bad_request("Workspace name cannot be blank"));
    }
    if !body
        .workspace
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AppError::bad_request(
            "Invalid workspace name (allowed are alphanumeric, dash and underscore)",
        ));
    }
    if let Some(id) = &body.id
        && !warden_state::is_valid_job_request_id(id)
    {
        return Err(AppError::bad_request(format!(
            "Invalid job request id {id:?}: expected 16 characters of [a-z0-9]"
        )));
    }
    if body.actions.iter().any(|a| a.is_empty()) {
        return Err(AppError::bad_request("Action names cannot be blank"));
    }
    // No action of a valid pipeline has such a name, and the planner's
    // messages would repeat it.
    if let Some(bad) = body
        .actions
        .iter()
        .find(|a| a.chars().any(|c| c != '\\' && needs_escape(c)))
    {
        return Err(AppError::bad_request(format!(
            "Invalid action name '{}': it contains control or invisible characters",
            shown(bad)
        )));
    }

    let workspace = state
        .store
        .get_workspace_by_name(&body.workspace.to_lowercase())
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("Workspace '{}' not found", shown(&body.workspace)))
        })?;
    let backend = state
        .store
        .get_backend(&body.backend)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("Backend '{}' not found", shown(&body.backend)))
        })?;
    user.check_may_run(state, &workspace, &backend.slug).await?;
    if !backend.active {
        return Err(AppError::bad_request(format!(
            "Backend '{}' is not active",
            backend.slug
        )));
    }
    if workspace.archived {
        return Err(AppError::bad_request(
            "You cannot create new jobs for an archived workspace. Contact an admin if you \
             require the workspace to be unarchived.",
        ));
    }

    if let Some(id) = &body.id
        && let Some(answer) = replay(state, id, &body, user).await?
    {
        return Ok((false, answer));
    }

    let resolved = state
        .repos
        .resolve(
            &workspace.repo_url,
            &workspace.branch,
            body.commit.as_deref(),
        )
        .await?;

    let id = body
        .id
        .clone()
        .unwrap_or_else(warden_state::new_job_request_id);
    let mut request = NewJobRequest::new(
        workspace.name.clone(),
        backend.slug.clone(),
        resolved.commit.clone(),
        body.actions.clone(),
    );
    request.id = id.clone();
    request.repo_url = workspace.repo_url.clone();
    request.branch = workspace.branch.clone();
    request.force_run_dependencies = body.force_run_dependencies;
    request.project_definition = resolved.text.to_string();
    request.created_by = user.0.username.clone();

    let planner_request = warden_planner::JobRequest::new(id.clone(), body.actions.clone())
        .with_force_run_dependencies(body.force_run_dependencies);
    let pipeline = resolved.pipeline.clone();
    let registry = state.config.image_registry.clone();
    let created = state
        .store
        .create_job_request_audited(request, &user.0.username, move |req, workspace_state| {
            let history: HashMap<String, PriorJob> = workspace_state
                .iter()
                .map(|j| {
                    (
                        j.action.clone(),
                        PriorJob::new(j.id.clone(), planner_state(j.state)),
                    )
                })
                .collect();
            match warden_planner::plan(&pipeline, &planner_request, &history)? {
                Plan::NothingToDo(nothing) => {
                    req.status = JobRequestStatus::NothingToDo;
                    req.status_message = nothing.message().to_owned();
                    Ok(Vec::new())
                }
                Plan::Jobs(jobs) => Ok(jobs
                    .into_iter()
                    .map(|j| NewJob {
                        action: j.action.to_owned(),
                        run_command: j.run_command,
                        image: format!("{registry}/{}", j.image),
                        output_spec: j.output_spec.to_json(),
                        requires_outputs_from: j.requires_outputs_from.to_vec(),
                        wait_for_job_ids: j.wait_for_job_ids,
                        requires_db: j.requires_db,
                    })
                    .collect()),
            }
        })
        .await;
    let created = match created {
        Ok(Ok(created)) => created,
        Ok(Err(plan)) => return Err(plan_error(plan)),
        // A concurrent retry with the same id won the race.
        Err(warden_state::Error::AlreadyExists { .. }) => {
            return match replay(state, &id, &body, user).await? {
                Some(answer) => Ok((false, answer)),
                None => Err(AppError::Conflict(format!(
                    "Job request '{id}' already exists"
                ))),
            };
        }
        Err(e) => return Err(e.into()),
    };

    let count = created.jobs.len();
    let (result, details) = if count == 0 {
        (
            "nothing_to_do".to_owned(),
            created.request.status_message.clone(),
        )
    } else {
        (
            "created".to_owned(),
            format!("Jobs created for job request '{id}'"),
        )
    };
    for job in &created.jobs {
        state.events.publish(job.clone());
    }
    if count > 0 {
        state.scheduler.wake();
    }
    tracing::info!(job_request_id = %id, jobs = count, "job request created");
    Ok((
        true,
        CreateJobRequestResponse {
            result,
            details,
            count,
            job_request: job_request_view(&created.request, &created.jobs, true),
        },
    ))
}
