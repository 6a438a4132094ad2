//! `/api/v1/workspaces`: read workspaces.

use axum::Json;
use axum::extract::State;

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppPath, ErrorBody, shown};
use crate::views::{ActionStatusView, WorkspaceList, WorkspaceView, rfc3339};

async fn view(
    state: &AppState,
    w: warden_state::Workspace,
    detail: bool,
) -> Result<WorkspaceView, AppError> {
    let project = match w.project_id {
        Some(id) => state.store.get_project(id).await?.map(|p| p.slug),
        None => None,
    };
    let actions = if detail {
        let latest = state.store.latest_jobs(&w.name, None).await?;
        Some(
            latest
                .iter()
                .map(|j| ActionStatusView {
                    action: j.action.clone(),
                    backend: j.backend.clone(),
                    job_id: j.id.clone(),
                    state: j.state.as_str().into(),
                    status_code: j.status_code.as_str().into(),
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(WorkspaceView {
        repo_url: warden_git::redact_url(&w.repo_url),
        name: w.name,
        branch: w.branch,
        project,
        archived: w.archived,
        created_at: rfc3339(w.created_at),
        actions,
    })
}

/// Every workspace, by name.
#[utoipa::path(
    get,
    operation_id = "list_workspaces",
    path = "/api/v1/workspaces",
    tag = "workspaces",
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Workspaces", body = WorkspaceList),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<WorkspaceList>, AppError> {
    let mut workspaces = Vec::new();
    for w in state.store.list_workspaces(None).await? {
        workspaces.push(view(&state, w, false).await?);
    }
    Ok(Json(WorkspaceList { workspaces }))
}

/// One workspace, with the latest job of each action.
#[utoipa::path(
    get,
    operation_id = "get_workspace",
    path = "/api/v1/workspaces/{name}",
    tag = "workspaces",
    params(("name" = String, Path, description = "Workspace name")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such workspace", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    AppPath(name): AppPath<String>,
) -> Result<Json<WorkspaceView>, AppError> {
    let w = state
        .store
        .get_workspace_by_name(&name.to_lowercase())
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Workspace '{}' not found", shown(&name))))?;
    Ok(Json(view(&state, w, true).await?))
}
