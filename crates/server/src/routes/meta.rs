//! Health, the caller's identity, and the OpenAPI document.

use axum::Json;
use axum::extract::State;

use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
use crate::views::{Health, MeView};

/// Liveness (no authentication).
#[utoipa::path(
    get,
    operation_id = "health",
    path = "/api/v1/health",
    tag = "meta",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The user the token belongs to.
#[utoipa::path(
    get,
    operation_id = "me",
    path = "/api/v1/me",
    tag = "meta",
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The caller", body = MeView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<MeView>, AppError> {
    let backends = state.store.user_backends(user.0.id).await?;
    Ok(Json(MeView {
        username: user.0.username,
        fullname: user.0.fullname,
        roles: user.0.roles,
        backends,
    }))
}

/// This document (no authentication).
#[utoipa::path(
    get,
    operation_id = "openapi",
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi.as_ref().clone())
}
