//! Raw rows as both engines return them, and their conversion to the model.

use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{
    AuditEvent, Backend, BackendToken, Flag, Job, JobRequest, Organisation, Project, Task, User,
    Workspace,
};
use crate::status::ParseEnumError;
use crate::time_util::from_ns;

pub(crate) fn parse_enum<T: FromStr<Err = ParseEnumError>>(
    what: &'static str,
    s: &str,
) -> Result<T> {
    s.parse().map_err(|e: ParseEnumError| Error::Corrupt {
        what,
        message: e.to_string(),
    })
}

pub(crate) fn parse_json<T: DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt {
        what,
        message: e.to_string(),
    })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model values always serialise")
}

pub(crate) const JOB_COLUMNS: &str = "id, job_request_id, workspace, backend, action, state, \
    status_code, status_message, run_command, image, output_spec, requires_outputs_from, \
    wait_for_job_ids, requires_db, outputs, cancelled, created_at, started_at, completed_at, \
    updated_at, status_code_updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    job_request_id: String,
    workspace: String,
    backend: String,
    action: String,
    state: String,
    status_code: String,
    status_message: String,
    run_command: String,
    image: String,
    output_spec: String,
    requires_outputs_from: String,
    wait_for_job_ids: String,
    requires_db: bool,
    outputs: Option<String>,
    cancelled: bool,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    updated_at: i64,
    status_code_updated_at: i64,
}

impl TryFrom<JobRow> for Job {
    type Error = Error;
    fn try_from(r: JobRow) -> Result<Job> {
        Ok(Job {
            state: parse_enum("jobs.state", &r.state)?,
            status_code: parse_enum("jobs.status_code", &r.status_code)?,
            output_spec: parse_json("jobs.output_spec", &r.output_spec)?,
            requires_outputs_from: parse_json(
                "jobs.requires_outputs_from",
                &r.requires_outputs_from,
            )?,
            wait_for_job_ids: parse_json("jobs.wait_for_job_ids", &r.wait_for_job_ids)?,
            outputs: r
                .outputs
                .as_deref()
                .map(|s| parse_json("jobs.outputs", s))
                .transpose()?,
            id: r.id,
            job_request_id: r.job_request_id,
            workspace: r.workspace,
            backend: r.backend,
            action: r.action,
            status_message: r.status_message,
            run_command: r.run_command,
            image: r.image,
            requires_db: r.requires_db,
            cancelled: r.cancelled,
            created_at: from_ns(r.created_at),
            started_at: r.started_at.map(from_ns),
            completed_at: r.completed_at.map(from_ns),
            updated_at: from_ns(r.updated_at),
            status_code_updated_at: r.status_code_updated_at,
        })
    }
}

pub(crate) fn jobs(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

pub(crate) const JOB_REQUEST_COLUMNS: &str = "id, workspace, backend, repo_url, branch, \
    commit_sha, requested_actions, force_run_dependencies, project_definition, created_by, \
    created_at, status, status_message";

#[derive(sqlx::FromRow)]
pub(crate) struct JobRequestRow {
    id: String,
    workspace: String,
    backend: String,
    repo_url: String,
    branch: String,
    commit_sha: String,
    requested_actions: String,
    force_run_dependencies: bool,
    project_definition: String,
    created_by: String,
    created_at: i64,
    status: String,
    status_message: String,
}

impl TryFrom<JobRequestRow> for JobRequest {
    type Error = Error;
    fn try_from(r: JobRequestRow) -> Result<JobRequest> {
        Ok(JobRequest {
            requested_actions: parse_json("job_requests.requested_actions", &r.requested_actions)?,
            status: parse_enum("job_requests.status", &r.status)?,
            id: r.id,
            workspace: r.workspace,
            backend: r.backend,
            repo_url: r.repo_url,
            branch: r.branch,
            commit: r.commit_sha,
            force_run_dependencies: r.force_run_dependencies,
            project_definition: r.project_definition,
            created_by: r.created_by,
            created_at: from_ns(r.created_at),
            status_message: r.status_message,
        })
    }
}

pub(crate) const TASK_COLUMNS: &str = "id, backend, task_type, definition, active, agent_stage, \
    agent_complete, agent_results, agent_timestamp_ns, created_at, finished_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: String,
    backend: String,
    task_type: String,
    definition: String,
    active: bool,
    agent_stage: Option<String>,
    agent_complete: bool,
    agent_results: Option<String>,
    agent_timestamp_ns: Option<i64>,
    created_at: i64,
    finished_at: Option<i64>,
}

impl TryFrom<TaskRow> for Task {
    type Error = Error;
    fn try_from(r: TaskRow) -> Result<Task> {
        Ok(Task {
            task_type: parse_enum("tasks.task_type", &r.task_type)?,
            definition: parse_json("tasks.definition", &r.definition)?,
            agent_results: r
                .agent_results
                .as_deref()
                .map(|s| parse_json("tasks.agent_results", s))
                .transpose()?,
            id: r.id,
            backend: r.backend,
            active: r.active,
            agent_stage: r.agent_stage,
            agent_complete: r.agent_complete,
            agent_timestamp_ns: r.agent_timestamp_ns,
            created_at: from_ns(r.created_at),
            finished_at: r.finished_at.map(from_ns),
        })
    }
}

pub(crate) fn tasks(rows: Vec<TaskRow>) -> Result<Vec<Task>> {
    rows.into_iter().map(Task::try_from).collect()
}

pub(crate) const FLAG_COLUMNS: &str = "id, backend, value, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct FlagRow {
    id: String,
    backend: String,
    value: Option<String>,
    updated_at: i64,
}

impl From<FlagRow> for Flag {
    fn from(r: FlagRow) -> Flag {
        Flag {
            id: r.id,
            backend: r.backend,
            value: r.value,
            timestamp: from_ns(r.updated_at),
        }
    }
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, actor, action, target_type, target_id, detail, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    actor: String,
    action: String,
    target_type: String,
    target_id: String,
    detail: String,
    created_at: i64,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = Error;
    fn try_from(r: AuditRow) -> Result<AuditEvent> {
        Ok(AuditEvent {
            detail: parse_json("audit_log.detail", &r.detail)?,
            id: r.id,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            created_at: from_ns(r.created_at),
        })
    }
}

pub(crate) const ORG_COLUMNS: &str = "id, slug, name, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: i64,
    slug: String,
    name: String,
    created_at: i64,
}

impl From<OrgRow> for Organisation {
    fn from(r: OrgRow) -> Organisation {
        Organisation {
            id: r.id,
            slug: r.slug,
            name: r.name,
            created_at: from_ns(r.created_at),
        }
    }
}

pub(crate) const PROJECT_COLUMNS: &str = "id, slug, name, org_id, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ProjectRow {
    id: i64,
    slug: String,
    name: String,
    org_id: Option<i64>,
    created_at: i64,
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Project {
        Project {
            id: r.id,
            slug: r.slug,
            name: r.name,
            org_id: r.org_id,
            created_at: from_ns(r.created_at),
        }
    }
}

pub(crate) const WORKSPACE_COLUMNS: &str =
    "id, name, repo_url, branch, project_id, archived, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    id: i64,
    name: String,
    repo_url: String,
    branch: String,
    project_id: Option<i64>,
    archived: bool,
    created_at: i64,
}

impl From<WorkspaceRow> for Workspace {
    fn from(r: WorkspaceRow) -> Workspace {
        Workspace {
            id: r.id,
            name: r.name,
            repo_url: r.repo_url,
            branch: r.branch,
            project_id: r.project_id,
            archived: r.archived,
            created_at: from_ns(r.created_at),
        }
    }
}

pub(crate) const BACKEND_COLUMNS: &str = "slug, name, active, last_seen_at, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct BackendRow {
    slug: String,
    name: String,
    active: bool,
    last_seen_at: Option<i64>,
    created_at: i64,
}

impl From<BackendRow> for Backend {
    fn from(r: BackendRow) -> Backend {
        Backend {
            slug: r.slug,
            name: r.name,
            active: r.active,
            last_seen_at: r.last_seen_at.map(from_ns),
            created_at: from_ns(r.created_at),
        }
    }
}

pub(crate) const TOKEN_COLUMNS: &str = "id, backend, label, created_at, revoked_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: i64,
    backend: String,
    label: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<TokenRow> for BackendToken {
    fn from(r: TokenRow) -> BackendToken {
        BackendToken {
            id: r.id,
            backend: r.backend,
            label: r.label,
            created_at: from_ns(r.created_at),
            revoked_at: r.revoked_at.map(from_ns),
        }
    }
}

pub(crate) const USER_COLUMNS: &str = "id, username, fullname, email, roles, active, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    fullname: String,
    email: String,
    roles: String,
    active: bool,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            roles: parse_json("users.roles", &r.roles)?,
            id: r.id,
            username: r.username,
            fullname: r.fullname,
            email: r.email,
            active: r.active,
            created_at: from_ns(r.created_at),
        })
    }
}
