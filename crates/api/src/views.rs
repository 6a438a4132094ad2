//! The JSON shapes of the researcher API and of the task list agents pull.
//! The server builds them from its records; they are never the records
//! themselves, so a storage change cannot leak into the API by accident.

use serde::{Deserialize, Serialize};

/// One job: one run of one action for one job request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    /// Deterministic id: base32 of the first 10 bytes of SHA-1 of
    /// `"<job request id>\n<action>"`, lowercase.
    pub id: String,
    /// The job request that created it.
    pub job_request_id: String,
    /// Workspace name.
    pub workspace: String,
    /// Backend slug.
    pub backend: String,
    /// Action name.
    pub action: String,
    /// `pending`, `running`, `failed` or `succeeded`.
    pub state: String,
    /// Fine-grained status code (job-runner's `StatusCode` values, e.g.
    /// `waiting_on_dependencies`, `executing`, `dependency_failed`).
    pub status_code: String,
    /// Human-readable status.
    pub status_message: String,
    /// `image:tag args...`, shell-quoted.
    pub run_command: String,
    /// Full image name.
    pub image: String,
    /// Whether the action reads the backend's database.
    pub requires_db: bool,
    /// The actions whose outputs it reads.
    pub needs: Vec<String>,
    /// Jobs that must succeed before it starts.
    pub wait_for_job_ids: Vec<String>,
    /// Someone asked for it to be cancelled.
    pub cancelled: bool,
    /// Creation time.
    pub created_at: String,
    /// When it first started running.
    pub started_at: Option<String>,
    /// When it finished.
    pub completed_at: Option<String>,
    /// Last change (or heartbeat).
    pub updated_at: String,
    /// `completed_at - started_at` in whole seconds, for finished jobs.
    pub runtime_seconds: Option<u64>,
}

/// Jobs by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCountsView {
    /// Pending.
    pub pending: usize,
    /// Running.
    pub running: usize,
    /// Failed.
    pub failed: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// All jobs.
    pub total: usize,
    /// Failed plus succeeded.
    pub completed: usize,
}

/// A job request with its derived fields (job-server §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRequestView {
    /// 16 lowercase base32 characters.
    pub id: String,
    /// Workspace name.
    pub workspace: String,
    /// Backend slug.
    pub backend: String,
    /// The workspace's repository (credentials redacted).
    pub repo_url: String,
    /// The branch the commit was taken from.
    pub branch: String,
    /// Full commit sha.
    pub commit: String,
    /// Requested actions as given (`run_all` is a pseudo-action).
    pub requested_actions: Vec<String>,
    /// Re-run dependencies even if they succeeded.
    pub force_run_dependencies: bool,
    /// Username of whoever asked.
    pub created_by: String,
    /// Creation time.
    pub created_at: String,
    /// Derived: `pending`, `running`, `failed`, `succeeded`,
    /// `nothing_to_do`, `unknown` or `unknown_error_creating_jobs`.
    pub status: String,
    /// With the status: "Failed due to job failure", the planner's "nothing
    /// to do" text, or empty.
    pub status_message: String,
    /// Derived: the status no longer changes.
    pub is_completed: bool,
    /// Derived: earliest job start.
    pub started_at: Option<String>,
    /// Derived: latest job completion, once the request is complete.
    pub completed_at: Option<String>,
    /// Derived: the **sum** of the finished jobs' runtimes, in seconds (not
    /// wall-clock time).
    pub runtime_seconds: u64,
    /// The same as `HH:MM:SS`, or `-` when zero.
    pub runtime: String,
    /// Jobs by state.
    pub counts: JobCountsView,
    /// The jobs, in creation order (only in single-request responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<JobView>>,
    /// The `project.yaml` text it was planned from (only in single-request
    /// responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_definition: Option<String>,
}

/// The answer to creating a job request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateJobRequestResponse {
    /// `created` (jobs were created), `nothing_to_do` (recorded, no job
    /// needed) or `already_exists` (the same id was sent before: this is that
    /// request, unchanged).
    pub result: String,
    /// Human-readable: "Jobs created", or the planner's nothing-to-do text.
    pub details: String,
    /// Number of jobs this call created.
    pub count: usize,
    /// The job request, with its jobs.
    pub job_request: JobRequestView,
}

/// A page of job requests, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRequestList {
    /// The job requests (without jobs).
    pub job_requests: Vec<JobRequestView>,
}

/// A list of jobs, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<JobView>,
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelResponse {
    /// Ids of the jobs now flagged for cancellation (the scheduler stops them
    /// at once: pending jobs fail with `cancelled_by_user`, running ones get
    /// a CANCELJOB task for their agent).
    pub cancelled: Vec<String>,
    /// Ids of jobs that had already finished: left as they were.
    pub already_finished: Vec<String>,
}

/// A workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceView {
    /// Unique name.
    pub name: String,
    /// Repository (credentials redacted).
    pub repo_url: String,
    /// Branch.
    pub branch: String,
    /// Owning project's slug.
    pub project: Option<String>,
    /// Archived workspaces accept no new job requests.
    pub archived: bool,
    /// Creation time.
    pub created_at: String,
    /// The latest job of each action (on any backend), by action (only in
    /// single-workspace responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ActionStatusView>>,
}

/// The latest job of one action in a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionStatusView {
    /// Action name.
    pub action: String,
    /// Backend slug.
    pub backend: String,
    /// Its latest job's id.
    pub job_id: String,
    /// Its latest job's state.
    pub state: String,
    /// Its latest job's status code.
    pub status_code: String,
}

/// Workspaces, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceList {
    /// The workspaces.
    pub workspaces: Vec<WorkspaceView>,
}

/// A switch with the time it last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagView {
    /// `on` or `off`.
    pub status: String,
    /// When it last changed (null: never set).
    pub since: Option<String>,
}

/// A backend's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendView {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Schedulable and shown.
    pub active: bool,
    /// Last time its agent asked for tasks.
    pub last_seen: Option<String>,
    /// Pending jobs do not start while paused.
    pub paused: FlagView,
    /// Worker slots for non-database jobs (sum of weights).
    pub max_workers: f64,
    /// Worker slots for database jobs (a separate pool).
    pub max_db_workers: f64,
    /// Jobs running now.
    pub running_jobs: usize,
    /// Jobs waiting.
    pub pending_jobs: usize,
}

/// Backends, by slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendList {
    /// The backends.
    pub backends: Vec<BackendView>,
}

/// The user a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeView {
    /// Login name.
    pub username: String,
    /// Full name.
    pub fullname: String,
    /// Global roles (`admin`).
    pub roles: Vec<String>,
    /// Backends the user may run jobs on.
    pub backends: Vec<String>,
}

/// A task for an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    /// `<job id>-NNN` (RUNJOB attempt NNN) or `<runjob id>-cancel`.
    pub id: String,
    /// The backend whose agent runs it.
    pub backend: String,
    /// `runjob` or `canceljob`.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The job definition (see [`crate::JobDefinition`]).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: serde_json::Value,
    /// When the controller made it.
    pub created_at: String,
}

/// The active tasks of a backend, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskList {
    /// The tasks.
    pub tasks: Vec<TaskView>,
}

/// What became of a task update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskUpdateResponse {
    /// `applied`; `inactive` (the task was already complete or cancelled:
    /// nothing changed, so a retried update is harmless); or `stale` (older
    /// than the update already recorded: nothing changed).
    pub outcome: String,
}

/// Liveness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}
