//! The warden controller, `warden serve`: it owns all state, turns job
//! requests into jobs with the same planner as local runs, schedules them,
//! hands tasks to agents, and serves the JSON API that researchers and
//! agents use.
//!
//! # The model
//!
//! * **Organisations, projects, workspaces, backends, users** are admin
//!   records (`warden admin`). A workspace has a globally unique name, a
//!   repository (a URL or a local path) and a branch; a backend has a slug, a
//!   display name and hashed agent tokens; a user has API tokens (hashed),
//!   global roles (`admin`), project roles (`developer`) and backend
//!   memberships.
//! * A **job request** asks for some actions of a workspace's `project.yaml`
//!   at a commit of its branch, on one backend. Its id is 16 random base32
//!   characters (or chosen by the client, for idempotent retries). It
//!   records the `project.yaml` text it was planned from, who asked and when.
//!   Its status and times are derived from its jobs (job-server §2).
//! * A **job** is one action run for one request, with a deterministic id
//!   (SHA-1 of `"<request id>\n<action>"`), a coarse state (`pending`,
//!   `running`, `failed`, `succeeded`) and job-runner's status codes and
//!   messages.
//! * A **task** is what an agent is handed: RUNJOB (run a job; a retry is a
//!   new task) or CANCELJOB. Agents pull their backend's tasks and report
//!   stages and redacted results; they are never called.
//! * The **audit log** records who created, cancelled, paused or administered
//!   what; it is append-only (the database refuses changes).
//!
//! # How a request flows
//!
//! 1. `POST /api/v1/job-requests` ([`create`]): checks the caller and the
//!    input, resolves the commit on the workspace's branch and reads
//!    `project.yaml` there ([`repos`], job-runner §3 messages), validates it
//!    with `warden-pipeline` (its first error, with line and column), plans
//!    with `warden-planner` against the workspace's history, and stores the
//!    request, its jobs and an audit entry in one transaction that holds the
//!    workspace's lock.
//! 2. The [`scheduler`] wakes at once (a `tokio::sync::Notify`, no polling
//!    loop) and moves each job along: dependencies, worker slots (weighted;
//!    a separate pool for database actions), pause, cancellation; a job
//!    that may start gets a RUNJOB task in the same transaction as its
//!    `initiated` code.
//! 3. The backend's agent pulls the task (`GET
//!    /api/v1/backends/{slug}/tasks`), reports stages and finally results
//!    without file names (`POST …/tasks/{id}`, [`definition`]); each report
//!    wakes the scheduler, which records the stage or decides the final code
//!    (job-runner §5.9), and a failure fails the dependants with
//!    `dependency_failed`, down the chain.
//! 4. Researchers read requests and jobs with their derived fields, or
//!    follow one request live as server-sent events
//!    (`GET /api/v1/job-requests/{id}/events`), and can cancel a job or a
//!    whole request in any state.
//!
//! The whole API is described by an OpenAPI document served at
//! `/api/v1/openapi.json` ([`openapi`]); the router and the document are
//! built from one list of routes ([`routes`]).
//!
//! # Guarantees
//!
//! * **Every call checks who is asking** ([`auth`]): user tokens for the
//!   researcher API, backend tokens for the agent API (401 without or with
//!   an unknown token, 403 with another backend's token, 404 for another
//!   backend's task). Tokens are stored hashed and never logged; repository
//!   and database URLs are logged and shown with their credentials redacted.
//! * **Bad input changes nothing** and gets a 4xx with a JSON
//!   [`ErrorBody`]: malformed JSON, unknown fields, an unknown workspace,
//!   backend or action, a missing branch, a commit that is not on the branch,
//!   an invalid `project.yaml`, a missing or wrong token.
//! * **No duplicate in-flight work**: concurrent requests on one workspace
//!   are serialised by `warden-state`, so no action ever has two pending or
//!   running jobs; a request id sent twice creates one request.
//! * **States are always true**: every change goes through `warden-state`'s
//!   single transition function (timestamps never go backwards), a job is
//!   running exactly when its RUNJOB task was committed with it, and the
//!   scheduler decides afresh from what is stored after any crash or restart
//!   (tested with `kill -9`).
//! * **Results carry no file names**: the agent API refuses any field it
//!   does not declare, and drops the free-text message whenever files were
//!   involved ([`definition`]).
//!
//! # Storage
//!
//! SQLite by default (`<data dir>/warden.sqlite`, WAL, migrations on start),
//! or PostgreSQL with `--database-url postgres://…`; the same code and the
//! same integration tests run on both. One `warden serve` per database: the
//! scheduler assumes it is the only one writing status codes.
//!
//! # Running it
//!
//! ```no_run
//! # async fn demo() -> Result<(), warden_server::StartError> {
//! use warden_server::{App, Config, Server};
//!
//! let state = App::open(Config::new("/var/lib/warden")).await?;
//! let server = Server::bind(state, "127.0.0.1:8000").await?;
//! println!("listening on {}", server.url());
//! server.run_until_signal().await;
//! # Ok(()) }
//! ```
//!
//! From the command line: `warden serve --data-dir DIR` and
//! `warden admin --data-dir DIR …` ([`cli`]).

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod create;
pub mod definition;
pub mod error;
pub mod events;
pub mod repos;
pub mod routes;
pub mod scheduler;
pub mod views;

pub use app::{App, AppState, Server, StartError, app, openapi};
pub use config::Config;
pub use error::{AppError, ErrorBody};
