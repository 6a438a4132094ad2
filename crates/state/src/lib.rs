//! warden's state: job requests, jobs and their status transitions, tasks for
//! agents, per-backend flags, an append-only audit log, and the admin records
//! (organisations, projects, workspaces, backends and their tokens, users),
//! stored in **SQLite** (embedded, the default: `warden run` keeps its history
//! in `<study>/metadata/db.sqlite`) or **PostgreSQL** (`warden serve`).
//!
//! # The model
//!
//! * A [`JobRequest`] is one "run these actions" submission for a workspace on
//!   a backend at a commit, with the `project.yaml` text it was planned from.
//!   Its id is 16 random lowercase base32 characters ([`new_job_request_id`]).
//! * A [`Job`] is one action run for one request. Its id is deterministic
//!   ([`job_id`]): the first 10 bytes of SHA-1 of `"<request id>\n<action>"`,
//!   base32, lowercase. It has a coarse [`State`] (`pending`, `running`,
//!   `failed`, `succeeded`) and a fine [`StatusCode`] with exactly
//!   OpenSAFELY's values and order.
//! * A [`Task`] is what the controller hands an agent (RUNJOB, CANCELJOB);
//!   agents report back with [`TaskUpdate`]s.
//! * [`Flag`]s are per-backend settings (`paused`, `mode`, ...) that remember
//!   since when they hold.
//! * The audit log ([`AuditEvent`]) records who did what to which target.
//!
//! # Guarantees
//!
//! * **One transition function.** A job's state is never set directly: every
//!   status change goes through the pure [`set_code`] (job-runner §2.7), then
//!   is persisted by [`Store::update_job`]. The state follows from the code;
//!   `started_at` is set once and cleared by reset codes; `completed_at` is
//!   set by final codes; transition times strictly increase (an earlier or
//!   equal time is clamped to the previous one + 1 ms) and `updated_at` never
//!   goes backwards; an unchanged code is a heartbeat that writes at most once
//!   a minute; a final job never changes code.
//! * **No duplicate in-flight work.** Creating a request and its jobs is one
//!   transaction, serialised per workspace: the transaction first takes the
//!   workspace's lock (an upsert of its `workspace_locks` row: a row lock on
//!   PostgreSQL; on SQLite every write transaction is `BEGIN IMMEDIATE` and
//!   holds the database's write lock), then reads the workspace state, lets
//!   the planner decide ([`Store::create_job_request_planned`]), checks that
//!   no new job's action already has an active job, inserts, and commits. A
//!   partial unique index on `jobs (workspace, backend, action) WHERE state IN
//!   ('pending', 'running') AND NOT cancelled` backs this up in the database
//!   itself, so even a writer that bypassed this crate could not insert a
//!   second active job for an action.
//! * **Creation times strictly increase within a workspace**, so "the latest
//!   job of an action" is always well defined.
//! * **The audit log is append-only**: there is no API to change it, and
//!   database triggers refuse `UPDATE` and `DELETE` (and `TRUNCATE`).
//! * **Backend tokens and user API tokens are stored hashed** (SHA-256 of 32
//!   random bytes; the plaintext is returned once, by
//!   [`Store::create_backend_token`] and [`Store::create_user_token`]). A
//!   disabled user's tokens authenticate nobody. Project roles
//!   ([`Store::set_project_roles`]) and backend memberships
//!   ([`Store::add_backend_member`]) are stored here; what the role names
//!   allow is the server's business.
//! * **Agents touch only their own tasks**; their updates are idempotent and
//!   out-of-order progress updates are ignored ([`Store::update_task`]).
//!   Updates are ordered by the agent's clock bounded to within
//!   [`MAX_AGENT_CLOCK_SKEW`] of the store's clock on arrival
//!   ([`agent_update_time`]), so no agent clock can freeze a task or push a
//!   job's times into the future, and a final update is always applied,
//!   exactly once.
//! * **Migrations run on open**, each in a transaction under a lock, so
//!   opening is idempotent and safe for concurrent openers; a database from a
//!   newer warden is refused rather than misread.
//! * **Crash safety** is the database's: every operation that writes more
//!   than one row is one transaction (SQLite in WAL mode with
//!   `synchronous=NORMAL`, which never corrupts and loses at most the last
//!   transactions on power loss, not on a process crash).
//! * **No request waits for the disk on SQLite**: writers of one process
//!   take turns on a FIFO lock (never SQLite's unfair busy-wait), and the
//!   write-ahead log is checkpointed by a background task rather than inside
//!   some unlucky commit.
//!
//! # Two engines, one [`Store`]
//!
//! [`Store`] is one concrete type over either engine, not a trait with two
//! implementations and not `sqlx::Any`:
//!
//! * The logic (transitions, locking order, validation, JSON encoding, row
//!   mapping) is written once. All SQL is shared except the migrations and
//!   one `FOR UPDATE` suffix; the engines differ only in the last step, which
//!   runs a finished statement with a concrete driver (`db.rs`). A trait with
//!   two implementations would duplicate some 60 methods, or need sqlx's
//!   generic executor bounds on every helper.
//! * Concrete drivers rather than `sqlx::Any`: `Any` only takes its settings
//!   from the URL, so it cannot configure SQLite's WAL, `synchronous`,
//!   `busy_timeout` and foreign keys, nor `BEGIN IMMEDIATE`, nor a
//!   PostgreSQL `search_path`; and it decodes through a lowest-common-
//!   denominator value type (SQLite's booleans arrive as integers).
//! * A trait would only pay off for a third engine or for mocks; the project
//!   tests against the real databases instead (see `tests/`).
//!
//! Portable conventions: times are `BIGINT` unix **nanoseconds** (exposed as
//! [`time::OffsetDateTime`], UTC), JSON is `TEXT`, booleans `BOOLEAN`,
//! placeholders `$1, $2, ...` (which SQLite accepts too). Queries are built at
//! run time with `sqlx::query`, so building needs no database.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> warden_state::Result<()> {
//! use warden_state::{NewJob, NewJobRequest, StatusCode, Store};
//!
//! let store = Store::open_sqlite("study/metadata/db.sqlite").await?;
//! store.fail_interrupted_jobs(None, warden_state::INTERRUPTED_MESSAGE).await?;
//! let request = NewJobRequest::new("my-study", "local", "0123abcd", vec!["analyse".into()]);
//! let created = store
//!     .create_job_request(request, vec![NewJob::new("analyse")])
//!     .await?;
//! let job = &created.jobs[0];
//! store.set_code(&job.id, StatusCode::Initiated, "Job executing on the backend").await?;
//! store.set_code(&job.id, StatusCode::Succeeded, "Completed successfully").await?;
//! # Ok(()) }
//! ```

mod db;
mod error;
mod final_status;
mod ids;
mod migrations;
mod model;
mod request_status;
mod status;
mod store;
mod time_util;
mod transition;

pub use db::Engine;
pub use error::{Error, Result};
pub use final_status::{CANCELLED_MESSAGE, INTERNAL_ERROR_MESSAGE};
pub use ids::{
    canceljob_task_id, hash_token, is_valid_job_request_id, job_id, new_job_request_id, new_token,
    runjob_task_id,
};
pub use migrations::SCHEMA_VERSION;
pub use model::{
    AuditEvent, AuditFilter, Backend, BackendToken, CancelOutcome, CreatedJobRequest, Flag, Job,
    JobFilter, JobRequest, JobRequestFilter, JobUpdate, NewAuditEvent, NewJob, NewJobRequest,
    NewTask, NewUser, Organisation, PrivacyLevel, Project, Task, TaskUpdate, TaskUpdateOutcome,
    User, UserToken, Workspace,
};
pub use request_status::{
    FAILED_DUE_TO_JOB_FAILURE, JobCounts, RequestStatus, derive_request_status, derive_status,
};
pub use status::{JobRequestStatus, ParseEnumError, State, StatusCode, TaskType};
pub use store::{
    BackendUpdate, JobRequestDetail, NewBackend, NewOrganisation, NewProject, NewWorkspace,
    OrganisationUpdate, ProjectUpdate, Store, StoreOptions, UpdatedJob, UserUpdate,
    WorkspaceUpdate,
};
pub use store::{
    FLAG_MANUAL_DB_MAINTENANCE, FLAG_MODE, FLAG_PAUSED, INTERRUPTED_MESSAGE, MODE_DB_MAINTENANCE,
};
pub use store::{MAX_AGENT_CLOCK_SKEW, agent_update_time};
pub use transition::{CLAMP_STEP_NS, Change, HEARTBEAT_INTERVAL, TransitionError, set_code};

pub use time;
