//! The records the store keeps, and the inputs that create or change them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::status::{JobRequestStatus, State, StatusCode, TaskType};

/// The privacy level an output was recorded at, as written in `project.yaml`
/// (`highly_sensitive` or `moderately_sensitive`); kept as text so that this
/// crate does not depend on the pipeline model.
pub type PrivacyLevel = String;

/// One "run these actions" submission: what job-server calls a job request
/// and the controller a RAP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// 16 characters, see [`new_job_request_id`](crate::new_job_request_id).
    pub id: String,
    /// Workspace name (the output namespace on the backend).
    pub workspace: String,
    /// Backend slug (`tpp`, `test`, `local`, ...).
    pub backend: String,
    /// The workspace's repository (URL or local path); may be empty.
    pub repo_url: String,
    /// The branch the commit was taken from; may be empty.
    pub branch: String,
    /// Full commit sha the actions run at (for a local run of a dirty work
    /// tree, whatever the runner records).
    pub commit: String,
    /// Requested action names (`run_all` is a pseudo-action).
    pub requested_actions: Vec<String>,
    /// Re-run the requested actions' dependencies even if they succeeded.
    pub force_run_dependencies: bool,
    /// The `project.yaml` text at that commit, as planned.
    pub project_definition: String,
    /// Username (or `local` user name) of whoever asked.
    pub created_by: String,
    /// Creation time; strictly increasing within a workspace.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The status recorded at creation: `pending` when jobs were created,
    /// otherwise a terminal status such as `nothing_to_do`. The live status is
    /// derived from the jobs by [`derive_request_status`](crate::derive_request_status).
    pub status: JobRequestStatus,
    /// The message that goes with `status` (e.g. "All actions have already
    /// completed successfully").
    pub status_message: String,
}

/// A job request to create. `id` defaults to a fresh random id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJobRequest {
    /// See [`JobRequest::id`].
    pub id: String,
    /// See [`JobRequest::workspace`].
    pub workspace: String,
    /// See [`JobRequest::backend`].
    pub backend: String,
    /// See [`JobRequest::repo_url`].
    pub repo_url: String,
    /// See [`JobRequest::branch`].
    pub branch: String,
    /// See [`JobRequest::commit`].
    pub commit: String,
    /// See [`JobRequest::requested_actions`].
    pub requested_actions: Vec<String>,
    /// See [`JobRequest::force_run_dependencies`].
    pub force_run_dependencies: bool,
    /// See [`JobRequest::project_definition`].
    pub project_definition: String,
    /// See [`JobRequest::created_by`].
    pub created_by: String,
    /// See [`JobRequest::status`]; must be terminal when no job is created.
    pub status: JobRequestStatus,
    /// See [`JobRequest::status_message`].
    pub status_message: String,
}

impl NewJobRequest {
    /// A pending request with a fresh id and empty repository, branch,
    /// definition and creator (fill in what you have).
    pub fn new(
        workspace: impl Into<String>,
        backend: impl Into<String>,
        commit: impl Into<String>,
        requested_actions: Vec<String>,
    ) -> Self {
        NewJobRequest {
            id: crate::new_job_request_id(),
            workspace: workspace.into(),
            backend: backend.into(),
            repo_url: String::new(),
            branch: String::new(),
            commit: commit.into(),
            requested_actions,
            force_run_dependencies: false,
            project_definition: String::new(),
            created_by: String::new(),
            status: JobRequestStatus::Pending,
            status_message: String::new(),
        }
    }
}

/// One run of one action for one job request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Deterministic, see [`job_id`](crate::job_id).
    pub id: String,
    /// The job request that created it.
    pub job_request_id: String,
    /// Workspace name.
    pub workspace: String,
    /// Backend slug.
    pub backend: String,
    /// Action name from `project.yaml`.
    pub action: String,
    /// Coarse state; always derived from the codes by [`set_code`](crate::set_code).
    pub state: State,
    /// Fine-grained status.
    pub status_code: StatusCode,
    /// Human-readable status.
    pub status_message: String,
    /// `image:tag args...` as planned.
    pub run_command: String,
    /// Full image name (e.g. `ghcr.io/opensafely-core/python:v2`).
    pub image: String,
    /// The action's outputs: `{privacy_level: {name: glob}}`.
    pub output_spec: serde_json::Value,
    /// The actions whose outputs this one reads (`needs`).
    pub requires_outputs_from: Vec<String>,
    /// Jobs that were pending or running when this job was created and must
    /// succeed before it starts.
    pub wait_for_job_ids: Vec<String>,
    /// Whether the action reads the backend's database.
    pub requires_db: bool,
    /// The outputs produced, `{path: privacy level}`, recorded after finalize.
    pub outputs: Option<BTreeMap<String, PrivacyLevel>>,
    /// A user asked for this job to be cancelled.
    pub cancelled: bool,
    /// Creation time (the request's).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// First time the job became `running` (cleared by reset codes).
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When the job reached a final code.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Last write (transition or heartbeat).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When `status_code` last changed, unix nanoseconds; strictly increasing.
    pub status_code_updated_at: i64,
}

impl Job {
    /// `completed_at - started_at` for a finished job; `None` while active, if
    /// either time is missing, or if it would be negative.
    pub fn runtime(&self) -> Option<std::time::Duration> {
        if !self.state.is_final() {
            return None;
        }
        let d = self.completed_at? - self.started_at?;
        d.try_into().ok()
    }
}

/// A job to create as part of a job request; id, workspace, backend and times
/// come from the request. It starts `pending` / `created` / "Created".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewJob {
    /// Action name.
    pub action: String,
    /// See [`Job::run_command`].
    pub run_command: String,
    /// See [`Job::image`].
    pub image: String,
    /// See [`Job::output_spec`].
    pub output_spec: serde_json::Value,
    /// See [`Job::requires_outputs_from`].
    pub requires_outputs_from: Vec<String>,
    /// See [`Job::wait_for_job_ids`].
    pub wait_for_job_ids: Vec<String>,
    /// See [`Job::requires_db`].
    pub requires_db: bool,
}

impl NewJob {
    /// A job for `action` with nothing else set.
    pub fn new(action: impl Into<String>) -> Self {
        NewJob {
            action: action.into(),
            output_spec: serde_json::json!({}),
            ..NewJob::default()
        }
    }
}

/// A job request as created, with its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedJobRequest {
    /// The stored request.
    pub request: JobRequest,
    /// The jobs created for it (possibly none), in the order given.
    pub jobs: Vec<Job>,
}

/// A change to one job, applied in one transaction: the status code through
/// [`set_code`](crate::set_code), plus optional outputs and task changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobUpdate {
    /// The job to change.
    pub job_id: String,
    /// The new status code (may equal the current one: a heartbeat).
    pub code: StatusCode,
    /// The new message.
    pub message: String,
    /// When the change happened according to the agent, unix nanoseconds;
    /// `None` means now. Clamped so transitions never go backwards.
    pub timestamp_ns: Option<i64>,
    /// Outputs to record (`{path: privacy level}`), usually with the final code.
    pub outputs: Option<BTreeMap<String, PrivacyLevel>>,
    /// A task to insert in the same transaction (e.g. the RUNJOB task that goes
    /// with `initiated`, or a CANCELJOB task).
    pub insert_task: Option<NewTask>,
    /// A task to mark inactive in the same transaction.
    pub deactivate_task: Option<String>,
}

impl JobUpdate {
    /// Just a status change, timed now.
    pub fn code(job_id: impl Into<String>, code: StatusCode, message: impl Into<String>) -> Self {
        JobUpdate {
            job_id: job_id.into(),
            code,
            message: message.into(),
            timestamp_ns: None,
            outputs: None,
            insert_task: None,
            deactivate_task: None,
        }
    }
}

/// What cancelling some actions of a job request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOutcome {
    /// Ids of the active jobs now flagged as cancelled (including ones that
    /// already were).
    pub cancelled: Vec<String>,
    /// Ids of jobs that had already finished: left untouched.
    pub already_finished: Vec<String>,
    /// Requested actions with no job in the request.
    pub not_found: Vec<String>,
}

/// A unit of work for an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// `<job id>-NNN` for RUNJOB, `<runjob id>-cancel` for CANCELJOB.
    pub id: String,
    /// The backend whose agent runs it.
    pub backend: String,
    /// RUNJOB or CANCELJOB.
    pub task_type: TaskType,
    /// The job definition the agent needs.
    pub definition: serde_json::Value,
    /// Still to be worked on by the agent.
    pub active: bool,
    /// The agent's last reported stage (`preparing`, ..., `finalized`).
    pub agent_stage: Option<String>,
    /// The agent says it is done with this task.
    pub agent_complete: bool,
    /// The agent's results (redacted: no file names).
    pub agent_results: Option<serde_json::Value>,
    /// When the agent's last update happened, unix nanoseconds: the agent's
    /// clock bounded by the store's ([`crate::agent_update_time`]); never
    /// goes backwards.
    pub agent_timestamp_ns: Option<i64>,
    /// When the controller made it.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it became inactive.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// A task to insert (active, with no agent data yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// See [`Task::id`].
    pub id: String,
    /// See [`Task::backend`].
    pub backend: String,
    /// See [`Task::task_type`].
    pub task_type: TaskType,
    /// See [`Task::definition`].
    pub definition: serde_json::Value,
}

/// An agent's report on a task (the Task API's update payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    /// The task reported on.
    pub task_id: String,
    /// Executor stage.
    pub stage: String,
    /// Results so far (redacted).
    pub results: serde_json::Value,
    /// The agent has finished with the task.
    pub complete: bool,
    /// The agent's clock, unix nanoseconds (not negative); recorded
    /// bounded by the store's clock ([`crate::agent_update_time`]).
    pub timestamp_ns: i64,
}

/// What became of an agent's task update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskUpdateOutcome {
    /// Recorded.
    Applied,
    /// The task was already complete or deactivated: nothing changed. A
    /// retried final update lands here, which makes updates idempotent.
    Inactive,
    /// A progress update older than the update already recorded
    /// (delivered out of order): nothing changed. Final updates are never
    /// stale.
    Stale,
}

/// A per-backend setting with the time it last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// Flag name, e.g. [`FLAG_PAUSED`](crate::FLAG_PAUSED).
    pub id: String,
    /// Backend slug.
    pub backend: String,
    /// Value; `None` means cleared.
    pub value: Option<String>,
    /// When the value last changed (setting the same value keeps it).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
}

/// An audit log entry to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// Who: a username, `system`, or a backend slug.
    pub actor: String,
    /// What, dotted: `job_request.create`, `job.cancel`, `backend.pause`, ...
    pub action: String,
    /// Kind of the target: `job_request`, `workspace`, `backend`, ...
    pub target_type: String,
    /// The target's id, slug or name.
    pub target_id: String,
    /// Anything else worth keeping (old/new values, reasons).
    pub detail: serde_json::Value,
}

/// An audit log entry. The log is append-only: no API updates or deletes
/// entries, and the database refuses to (triggers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Increasing with time of appending.
    pub id: i64,
    /// See [`NewAuditEvent::actor`].
    pub actor: String,
    /// See [`NewAuditEvent::action`].
    pub action: String,
    /// See [`NewAuditEvent::target_type`].
    pub target_type: String,
    /// See [`NewAuditEvent::target_id`].
    pub target_id: String,
    /// See [`NewAuditEvent::detail`].
    pub detail: serde_json::Value,
    /// When it was appended.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Which audit entries to list (all filters optional), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Only by this actor.
    pub actor: Option<String>,
    /// Only this target type.
    pub target_type: Option<String>,
    /// Only this target id.
    pub target_id: Option<String>,
    /// Only entries with an id below this (for paging).
    pub before_id: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// Which jobs to list (all filters optional), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only jobs of this request.
    pub job_request_id: Option<String>,
    /// Only this workspace.
    pub workspace: Option<String>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only jobs in one of these states (empty: any).
    pub states: Vec<State>,
    /// At most this many.
    pub limit: Option<u32>,
}

/// Which job requests to list (all filters optional), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequestFilter {
    /// Only this workspace.
    pub workspace: Option<String>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Only by this user.
    pub created_by: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
    /// Skip this many.
    pub offset: Option<u32>,
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    /// Surrogate key.
    pub id: i64,
    /// Unique URL slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A research project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Surrogate key.
    pub id: i64,
    /// Unique URL slug.
    pub slug: String,
    /// Display name (unique).
    pub name: String,
    /// The lead organisation.
    pub org_id: Option<i64>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A workspace: a named output directory, the same on every backend, tied to
/// a repository and branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Surrogate key.
    pub id: i64,
    /// Globally unique name.
    pub name: String,
    /// Repository URL.
    pub repo_url: String,
    /// Branch.
    pub branch: String,
    /// Owning project.
    pub project_id: Option<i64>,
    /// Hidden from most listings.
    pub archived: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A secure backend, where one agent runs jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Unique slug (`tpp`, `emis`, `test`).
    pub slug: String,
    /// Display name (`TPP`).
    pub name: String,
    /// Shown on status pages and schedulable.
    pub active: bool,
    /// Last time its agent asked for tasks.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A backend token's record; the token itself is shown once at creation and
/// only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendToken {
    /// Surrogate key.
    pub id: i64,
    /// Backend slug.
    pub backend: String,
    /// What it is for ("agent", "airlock", ...).
    pub label: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A user's API token record; the token itself is shown once at creation and
/// only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserToken {
    /// Surrogate key.
    pub id: i64,
    /// Whose token.
    pub user_id: i64,
    /// What it is for ("cli", "bench", ...).
    pub label: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A person (or bot) who uses warden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Surrogate key.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// Full name.
    pub fullname: String,
    /// Email address.
    pub email: String,
    /// Global role names.
    pub roles: Vec<String>,
    /// May log in.
    pub active: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A user to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// See [`User::username`].
    pub username: String,
    /// See [`User::fullname`].
    pub fullname: String,
    /// See [`User::email`].
    pub email: String,
    /// See [`User::roles`].
    pub roles: Vec<String>,
}
