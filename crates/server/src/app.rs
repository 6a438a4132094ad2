//! The application: state, router, and serving.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use warden_state::{Store, StoreOptions};

use crate::config::Config;
use crate::error::{AppError, ErrorBody, InternalCause};
use crate::events::Events;
use crate::repos::Repos;
use crate::scheduler::{Scheduler, SchedulerHandle};

/// The largest request body accepted, on every route: 1 MiB, far more than
/// any request of the API needs (a job request names actions; an agent's
/// report carries counts and a short message). A larger body gets a 413
/// with an [`ErrorBody`] naming the limit, before it is read when its
/// `Content-Length` says so, or as soon as the limit is passed when it
/// streams (chunked, or a `Content-Length` that lies).
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// Everything a request handler may need.
pub struct App {
    /// The database.
    pub store: Store,
    /// Settings.
    pub config: Config,
    /// Workspace repositories.
    pub repos: Arc<Repos>,
    /// Wakes the scheduler.
    pub scheduler: SchedulerHandle,
    /// Job change notifications.
    pub events: Events,
    /// The OpenAPI document, as served.
    pub openapi: Arc<serde_json::Value>,
    /// Turns true when the server is shutting down (ends event streams).
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

/// The handle handlers get: cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("could not open the database {url}")]
    Database {
        /// The database, credentials redacted.
        url: String,
        /// Why.
        #[source]
        source: warden_state::Error,
    },
    /// The data directory could not be created.
    #[error("could not create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `git` is not installed.
    #[error("git is required")]
    Git(#[source] warden_git::GitError),
}

/// Opens the database named by `config` (migrating it).
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let url = config.database();
    Store::open_with(StoreOptions {
        pg_schema: config.pg_schema.clone(),
        ..StoreOptions::new(url.clone())
    })
    .await
    .map_err(|source| StartError::Database {
        url: warden_git::redact_url(&url),
        source,
    })
}

impl App {
    /// Opens the database and builds the state (the scheduler is not started:
    /// see [`Server::start`]).
    pub async fn open(config: Config) -> Result<AppState, StartError> {
        let store = open_store(&config).await?;
        Ok(App::with_store(config, store))
    }

    /// The state over an open store.
    pub fn with_store(config: Config, store: Store) -> AppState {
        let cache = warden_git::RepoCache::new(config.repo_cache_dir())
            .with_fetch_timeout(config.git_fetch_timeout);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let openapi = serde_json::to_value(openapi()).expect("the OpenAPI document serialises");
        AppState(Arc::new(App {
            store,
            config,
            repos: Arc::new(Repos::new(cache)),
            scheduler: SchedulerHandle::new(),
            events: Events::new(),
            openapi: Arc::new(openapi),
            shutdown,
            shutdown_tx,
        }))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warden",
        description = "The warden controller's JSON API: researchers create, read, watch and cancel job requests (user tokens); agents pull their backend's tasks and report on them (backend tokens). Every call except `health` and `openapi.json` needs `Authorization: Bearer <token>`. Errors are `ErrorBody` JSON.",
    ),
    modifiers(&SecuritySchemes),
    components(schemas(crate::definition::JobDefinition)),
    tags(
        (name = "job requests", description = "Create, read, watch and cancel job requests"),
        (name = "jobs", description = "Read and cancel jobs"),
        (name = "workspaces", description = "Workspaces"),
        (name = "backends", description = "Backend status, pause and unpause"),
        (name = "agents", description = "The task API for agents (backend tokens)"),
        (name = "meta", description = "Health, identity, this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "user_token",
                "A user API token (`warden admin user create|token`)",
            ),
            (
                "backend_token",
                "A backend token (`warden admin backend create|token`), valid for that backend's task API only",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// The OpenAPI document of the API, built from the same route list as the
/// router.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::routes::api())
        .split_for_parts();
    let mut doc = doc;
    document_body_limit(&mut doc);
    doc
}

/// Every operation may answer 413 ([`MAX_REQUEST_BODY_BYTES`]): the limit
/// is a layer over the whole router, so it is documented for the whole
/// document here rather than route by route.
fn document_body_limit(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description(format!(
            "The request body is larger than {MAX_REQUEST_BODY_BYTES} bytes"
        ))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("413".to_owned())
                .or_insert_with(|| response.clone().into());
        }
    }
}

/// The router with its middleware: the app, without a socket (tests can
/// call it with `oneshot`).
pub fn app(state: AppState) -> Router {
    let (router, _) = crate::routes::api().split_for_parts();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Inner to outer: cap the body as extractors read it, refuse a body
        // declared too large before reading any of it, log the cause of 5xx
        // errors, then trace every request (outermost, so its span covers
        // everything, and names the matched route rather than the raw URI,
        // which may carry ids). Layers cover the fallbacks too.
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(middleware::from_fn(log_internal_errors))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("unmatched");
                tracing::info_span!("request", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

async fn no_route() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(ErrorBody {
            error: "no_route".into(),
            message: "No such route; see /api/v1/openapi.json".into(),
            line: None,
            column: None,
            valid_actions: None,
        }),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(ErrorBody {
            error: "method_not_allowed".into(),
            message: "This route does not accept this method; see /api/v1/openapi.json".into(),
            line: None,
            column: None,
            valid_actions: None,
        }),
    )
        .into_response()
}

/// A 413 for a request whose `Content-Length` is over
/// [`MAX_REQUEST_BODY_BYTES`], without reading the body. Bodies without one
/// (or with a false one) are cut off by [`DefaultBodyLimit`] as they are
/// read, which also ends in a 413 (see `From<JsonRejection>`).
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY_BYTES as u64) {
        return AppError::PayloadTooLarge {
            limit: MAX_REQUEST_BODY_BYTES,
        }
        .into_response();
    }
    next.run(request).await
}

async fn log_internal_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        tracing::error!(status = %response.status(), cause = %cause, "request failed");
    }
    response
}

/// A running server: HTTP on a socket plus the scheduler.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub state: AppState,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    scheduler: tokio::task::JoinHandle<()>,
}

/// How long a graceful shutdown may take before connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Server {
    /// Starts the scheduler and serves `state` on `listener`.
    pub fn start(state: AppState, listener: TcpListener) -> Result<Server, StartError> {
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: "listener".into(),
            source,
        })?;
        let scheduler = Scheduler::new(
            state.store.clone(),
            state.config.clone(),
            state.events.clone(),
            state.scheduler.clone(),
        );
        let scheduler = tokio::spawn(scheduler.run(state.shutdown.clone()));
        // Whatever was left pending by a previous run is decided at once.
        state.scheduler.wake();
        let mut shutdown = state.shutdown.clone();
        let router = app(state.clone());
        let http = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%addr, "warden controller listening");
        Ok(Server {
            addr,
            state,
            http,
            scheduler,
        })
    }

    /// Binds `addr` and starts.
    pub async fn bind(state: AppState, addr: &str) -> Result<Server, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Server::start(state, listener)
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, ends event streams, waits (at most
    /// 10 s) for requests in flight and for the scheduler's current pass.
    pub async fn shutdown(self) {
        let _ = self.state.shutdown_tx.send(true);
        let Server {
            http, scheduler, ..
        } = self;
        let abort = http.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, http).await.is_err() {
            tracing::warn!("graceful shutdown timed out; dropping connections");
            abort.abort();
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, scheduler).await;
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
