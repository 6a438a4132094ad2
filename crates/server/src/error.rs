//! The one error type of the HTTP API.
//!
//! Handlers return `Result<_, AppError>`. Client mistakes (4xx) keep their
//! message and reach the client as JSON ([`ErrorBody`]); a server fault (5xx)
//! reaches the client as a generic message, while its cause travels in a
//! response extension ([`InternalCause`]) that the logging middleware in
//! [`mod@crate::app`] writes to the log. Converting an error has no side effects.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use warden_api::ErrorBody;

/// `text` from a request or a repository (a name, an id, a path) as it may
/// appear in an error message or a log line: control, bidirectional and
/// invisible characters escaped (`warden_pipeline::escape`), so that no
/// request can forge a log line or garble a terminal.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    warden_pipeline::escape::escape_name(text)
}

/// The cause of a 5xx response, for the log only.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed or asks for something impossible.
    #[error("{message}")]
    BadRequest {
        /// See [`ErrorBody::error`].
        code: &'static str,
        /// See [`ErrorBody::message`].
        message: String,
    },
    /// 400: `project.yaml` at the requested commit is invalid.
    #[error("{message}")]
    InvalidProject {
        /// The first error, as the reference validator words it.
        message: String,
        /// Its line.
        line: usize,
        /// Its column.
        column: usize,
    },
    /// 400: the planner refused the request (no action, unknown action,
    /// cycle).
    #[error("{message}")]
    Plan {
        /// The planner's message (reference wording).
        message: String,
        /// The valid action names, when they help.
        valid_actions: Option<Vec<String>>,
    },
    /// 401: no credentials, or unknown ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: known credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is larger than
    /// [`MAX_REQUEST_BODY_BYTES`](crate::app::MAX_REQUEST_BODY_BYTES).
    #[error(
        "The request body is larger than the limit of {limit} bytes; nothing was read or changed"
    )]
    PayloadTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// 502: a repository could not be fetched.
    #[error("{0}")]
    Upstream(String),
    /// 500: a fault of the server; the message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. }
            | AppError::InvalidProject { .. }
            | AppError::Plan { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let plain = |code: &str, message: &str| ErrorBody {
            error: code.to_owned(),
            message: message.to_owned(),
            line: None,
            column: None,
            valid_actions: None,
        };
        match self {
            AppError::BadRequest { code, message } => plain(code, message),
            AppError::InvalidProject {
                message,
                line,
                column,
            } => ErrorBody {
                line: Some(*line),
                column: Some(*column),
                ..plain("invalid_project_yaml", message)
            },
            AppError::Plan {
                message,
                valid_actions,
            } => ErrorBody {
                valid_actions: valid_actions.clone(),
                ..plain("invalid_actions", message)
            },
            AppError::Unauthorized(m) => plain("unauthorized", m),
            AppError::Forbidden(m) => plain("forbidden", m),
            AppError::NotFound(m) => plain("not_found", m),
            AppError::Conflict(m) => plain("conflict", m),
            AppError::PayloadTooLarge { .. } => plain("payload_too_large", &self.to_string()),
            AppError::Upstream(m) => plain("git", m),
            AppError::Internal(_) => plain(
                "internal",
                "Internal error: the server failed on this request; it has been logged",
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        if let AppError::Internal(cause) = self {
            response.extensions_mut().insert(InternalCause(cause));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<warden_state::Error> for AppError {
    fn from(e: warden_state::Error) -> AppError {
        use warden_state::Error as E;
        match e {
            E::NotFound { kind, id } => AppError::NotFound(format!("{kind} {id:?} not found")),
            E::AlreadyExists { .. } | E::ActiveJobExists { .. } | E::Conflict(_) => {
                AppError::Conflict(e.to_string())
            }
            E::InvalidInput(m) => AppError::bad_request(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> AppError {
        // A body that streams past the limit (no or a false Content-Length)
        // is cut off while being read.
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::PayloadTooLarge {
                limit: crate::app::MAX_REQUEST_BODY_BYTES,
            };
        }
        AppError::BadRequest {
            code: "invalid_json",
            message: format!("could not parse JSON from request body: {}", r.body_text()),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> AppError {
        AppError::bad_request(format!("invalid query string: {}", r.body_text()))
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> AppError {
        AppError::bad_request(format!("invalid path: {}", r.body_text()))
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> AppError {
        AppError::Internal(format!("background task failed: {e}"))
    }
}

/// `Json` whose rejection is an [`AppError`], so malformed bodies get the
/// same JSON error shape as everything else.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct AppJson<T>(pub T);

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// The raw body, whose rejection is an [`AppError`] (a 413 for a body over
/// the limit, as for [`AppJson`]).
#[derive(Debug, Clone, Default)]
pub struct AppBytes(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for AppBytes {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(AppBytes(bytes)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::PayloadTooLarge {
                    limit: crate::app::MAX_REQUEST_BODY_BYTES,
                })
            }
            Err(r) => Err(AppError::bad_request(format!(
                "could not read the request body: {}",
                r.body_text()
            ))),
        }
    }
}

/// `Query` whose rejection is an [`AppError`].
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct AppQuery<T>(pub T);

/// `Path` whose rejection is an [`AppError`].
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct AppPath<T>(pub T);
