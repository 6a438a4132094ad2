//! Who is asking, and what they may do.
//!
//! Every API call carries `Authorization: Bearer <token>`:
//!
//! * **User tokens** (made by `warden admin user create|token`) for the
//!   researcher API. Missing or unknown: 401.
//! * **Backend tokens** (made by `warden admin backend create|token`) for
//!   the task API of that backend only. Missing or unknown: 401; a valid
//!   token of *another* backend: 403; another backend's task: 404.
//!
//! Tokens are compared by their SHA-256 only (the store keeps no plaintext)
//! and never logged. Permissions, checked explicitly in each handler:
//!
//! | action | allowed for |
//! |---|---|
//! | read job requests, jobs, workspaces, backends | any user |
//! | create a job request | global role `admin`, or project role `developer` in the workspace's project; and (unless `admin`) membership of the backend |
//! | cancel | `admin`, the request's creator, or a `developer` of the project |
//! | pause / unpause a backend | `admin` |

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use warden_state::{JobRequest, User, Workspace};

use crate::app::AppState;
use crate::error::{AppError, shown};

/// Global role: may do everything.
pub const ROLE_ADMIN: &str = "admin";
/// Project role: may run and cancel jobs in the project's workspaces.
pub const ROLE_DEVELOPER: &str = "developer";

/// The bearer token of a request, if any; `Err` for a malformed header.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::Unauthorized("invalid Authorization header".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AppError::Unauthorized(
            "invalid Authorization header: expected `Bearer <token>`".into(),
        ));
    }
    Ok(Some(token))
}

fn missing() -> AppError {
    AppError::Unauthorized("No token provided: send `Authorization: Bearer <token>`".into())
}

/// The authenticated user of a researcher API call.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers)?.ok_or_else(missing)?;
        match state.store.user_for_token(token).await? {
            Some(user) => Ok(CurrentUser(user)),
            None => {
                tracing::info!("refused a request with an unknown user token");
                Err(AppError::Unauthorized("Invalid token".into()))
            }
        }
    }
}

impl CurrentUser {
    /// Has the global `admin` role.
    pub fn is_admin(&self) -> bool {
        self.0.roles.iter().any(|r| r == ROLE_ADMIN)
    }

    async fn is_developer(
        &self,
        state: &AppState,
        workspace: &Workspace,
    ) -> Result<bool, AppError> {
        let Some(project_id) = workspace.project_id else {
            return Ok(false);
        };
        Ok(state
            .store
            .project_roles(project_id, self.0.id)
            .await?
            .iter()
            .any(|r| r == ROLE_DEVELOPER))
    }

    /// May this user run jobs in `workspace` on `backend`?
    pub async fn check_may_run(
        &self,
        state: &AppState,
        workspace: &Workspace,
        backend: &str,
    ) -> Result<(), AppError> {
        if self.is_admin() {
            return Ok(());
        }
        if !self.is_developer(state, workspace).await? {
            return Err(AppError::Forbidden(
                "You do not have permission to run jobs on this workspace".into(),
            ));
        }
        if !state
            .store
            .user_backends(self.0.id)
            .await?
            .iter()
            .any(|b| b == backend)
        {
            return Err(AppError::Forbidden(format!(
                "You do not have permission to run jobs on backend '{backend}'"
            )));
        }
        Ok(())
    }

    /// May this user cancel jobs of `request`?
    pub async fn check_may_cancel(
        &self,
        state: &AppState,
        request: &JobRequest,
    ) -> Result<(), AppError> {
        if self.is_admin() || request.created_by == self.0.username {
            return Ok(());
        }
        if let Some(workspace) = state
            .store
            .get_workspace_by_name(&request.workspace)
            .await?
            && self.is_developer(state, &workspace).await?
        {
            return Ok(());
        }
        Err(AppError::Forbidden(
            "You do not have permission to cancel jobs of this job request".into(),
        ))
    }

    /// Only admins.
    pub fn check_admin(&self) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden("This needs the admin role".into()))
        }
    }
}

/// Checks that the request carries a live token of backend `slug`: 404 if
/// there is no such backend, 401 without a token or with an unknown one, 403
/// with another backend's token.
pub async fn authenticate_backend(
    state: &AppState,
    headers: &HeaderMap,
    slug: &str,
) -> Result<(), AppError> {
    let token = bearer(headers)?.ok_or_else(missing)?;
    let owner = state.store.backend_for_token(token).await?;
    if state.store.get_backend(slug).await?.is_none() {
        return Err(AppError::NotFound(format!(
            "Backend '{}' not found",
            shown(slug)
        )));
    }
    match owner {
        None => {
            tracing::info!(backend = slug, "refused an unknown backend token");
            Err(AppError::Unauthorized(format!(
                "Invalid token for backend '{slug}'"
            )))
        }
        Some(owner) if owner == slug => Ok(()),
        Some(owner) => {
            tracing::warn!(backend = slug, token_backend = %owner, "a backend token was used for another backend");
            Err(AppError::Forbidden(format!(
                "This token is not valid for backend '{slug}'"
            )))
        }
    }
}
