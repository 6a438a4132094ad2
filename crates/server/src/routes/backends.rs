//! `/api/v1/backends`: status, pause and unpause.

use axum::Json;
use axum::extract::State;
use warden_state::{FLAG_PAUSED, State as JobState};

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppPath, ErrorBody, shown};
use crate::scheduler::{FLAG_MAX_DB_WORKERS, FLAG_MAX_WORKERS};
use crate::views::{BackendList, BackendView, FlagView, rfc3339};

async fn view(state: &AppState, backend: warden_state::Backend) -> Result<BackendView, AppError> {
    let flags = state.store.list_flags(&backend.slug).await?;
    let flag = |id: &str| flags.iter().find(|f| f.id == id);
    let number = |id: &str| {
        flag(id)
            .and_then(|f| f.value.as_deref())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let max_workers = number(FLAG_MAX_WORKERS).unwrap_or(state.config.default_max_workers);
    let max_db_workers = number(FLAG_MAX_DB_WORKERS)
        .or(state.config.default_max_db_workers)
        .unwrap_or(max_workers);
    let paused = flag(FLAG_PAUSED);
    let active = state.store.active_jobs(Some(&backend.slug)).await?;
    Ok(BackendView {
        paused: FlagView {
            status: if paused.and_then(|f| f.value.as_deref()) == Some("true") {
                "on".into()
            } else {
                "off".into()
            },
            since: paused.map(|f| rfc3339(f.timestamp)),
        },
        max_workers,
        max_db_workers,
        running_jobs: active
            .iter()
            .filter(|j| j.state == JobState::Running)
            .count(),
        pending_jobs: active
            .iter()
            .filter(|j| j.state == JobState::Pending)
            .count(),
        last_seen: backend.last_seen_at.map(rfc3339),
        slug: backend.slug,
        name: backend.name,
        active: backend.active,
    })
}

/// Every backend's status.
#[utoipa::path(
    get,
    operation_id = "list_backends",
    path = "/api/v1/backends",
    tag = "backends",
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Backends", body = BackendList),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<BackendList>, AppError> {
    let mut backends = Vec::new();
    for b in state.store.list_backends().await? {
        backends.push(view(&state, b).await?);
    }
    Ok(Json(BackendList { backends }))
}

async fn set_paused(
    state: &AppState,
    user: &CurrentUser,
    slug: &str,
    paused: bool,
) -> Result<BackendView, AppError> {
    user.check_admin()?;
    let backend = state
        .store
        .get_backend(slug)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Backend '{}' not found", shown(slug))))?;
    state
        .store
        .set_paused_audited(slug, paused, &user.0.username)
        .await?;
    state.scheduler.wake();
    view(state, backend).await
}

/// Pause a backend: its pending jobs do not start (running jobs carry on).
/// Needs the `admin` role.
#[utoipa::path(
    post,
    operation_id = "pause_backend",
    path = "/api/v1/backends/{slug}/pause",
    tag = "backends",
    params(("slug" = String, Path, description = "Backend slug")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The backend", body = BackendView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    user: CurrentUser,
    AppPath(slug): AppPath<String>,
) -> Result<Json<BackendView>, AppError> {
    Ok(Json(set_paused(&state, &user, &slug, true).await?))
}

/// Unpause a backend. Needs the `admin` role.
#[utoipa::path(
    post,
    operation_id = "unpause_backend",
    path = "/api/v1/backends/{slug}/unpause",
    tag = "backends",
    params(("slug" = String, Path, description = "Backend slug")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The backend", body = BackendView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
    )
)]
pub async fn unpause(
    State(state): State<AppState>,
    user: CurrentUser,
    AppPath(slug): AppPath<String>,
) -> Result<Json<BackendView>, AppError> {
    Ok(Json(set_paused(&state, &user, &slug, false).await?))
}
