//! Job requests and jobs.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Filter;
use super::rows::{self, JOB_COLUMNS, JOB_REQUEST_COLUMNS, JobRequestRow, JobRow, to_json};
use crate::db::{Engine, Sql, Tx};
use crate::error::{Error, Result};
use crate::ids::{is_valid_job_request_id, job_id};
use crate::model::{
    CancelOutcome, CreatedJobRequest, Job, JobFilter, JobRequest, JobRequestFilter, JobUpdate,
    NewAuditEvent, NewJob, NewJobRequest,
};
use crate::request_status::{RequestStatus, derive_request_status};
use crate::status::{JobRequestStatus, State, StatusCode};
use crate::store::Store;
use crate::time_util::{from_ns, now, to_ns};
use crate::transition::{Change, set_code};

/// The message of jobs failed by [`Store::fail_interrupted_jobs`].
pub const INTERRUPTED_MESSAGE: &str =
    "Cancelled: the previous run stopped before this job finished";

/// Rows per multi-row `INSERT` (9 arguments each, well under both engines'
/// limits on arguments per statement).
const INSERT_CHUNK: usize = 1000;

/// A job after [`Store::update_job`], and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatedJob {
    /// The job as stored now.
    pub job: Job,
    /// What the status change did ([`Change::None`]: nothing was written
    /// unless outputs or tasks were).
    pub change: Change,
}

/// A job request with its jobs and derived status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequestDetail {
    /// The request.
    pub request: JobRequest,
    /// Its jobs in creation order.
    pub jobs: Vec<Job>,
    /// Its derived status.
    pub status: RequestStatus,
}

fn for_update(engine: Engine) -> &'static str {
    match engine {
        // SQLite write transactions hold the database's write lock already.
        Engine::Sqlite => "",
        Engine::Postgres => " FOR UPDATE",
    }
}

const ACTIVE: &str = "state IN ('pending', 'running')";

impl Store {
    /// Creates a job request and its jobs in one transaction. Fails with
    /// [`Error::ActiveJobExists`] (creating nothing) if any of the actions
    /// already has a pending or running, non-cancelled job in the workspace
    /// and backend. Use [`Store::create_job_request_planned`] to decide the
    /// jobs from the workspace's state under the same lock.
    pub async fn create_job_request(
        &self,
        request: NewJobRequest,
        jobs: Vec<NewJob>,
    ) -> Result<CreatedJobRequest> {
        match self
            .create_job_request_planned(request, move |_, _| {
                Ok::<_, std::convert::Infallible>(jobs)
            })
            .await?
        {
            Ok(created) => Ok(created),
            Err(never) => match never {},
        }
    }

    /// Creates a job request and the jobs `plan` decides on, in one
    /// transaction that holds the workspace's lock from before `plan` sees
    /// the workspace state until the jobs are committed.
    ///
    /// `plan` receives the request (which it may amend, e.g. to record
    /// `nothing_to_do` and its message) and the workspace state: the latest
    /// non-cancelled job of each action in the request's workspace and
    /// backend, as [`Store::latest_jobs`] returns it. It returns the jobs to
    /// create, or its own error, which rolls everything back and is returned
    /// as the inner `Err`. Because creates for one workspace are serialised,
    /// a planner that never duplicates in-flight work (job-runner §3) can
    /// never create two active jobs for one action, however many requests
    /// arrive at once.
    ///
    /// Rules enforced: a valid, new request id; non-empty workspace, backend
    /// and action names; one job per action; a request with jobs is recorded
    /// `pending`, one without needs a non-active status such as
    /// `nothing_to_do`, `failed` or `unknown_error_creating_jobs`.
    pub async fn create_job_request_planned<F, E>(
        &self,
        request: NewJobRequest,
        plan: F,
    ) -> Result<std::result::Result<CreatedJobRequest, E>>
    where
        F: FnOnce(&mut NewJobRequest, &[Job]) -> std::result::Result<Vec<NewJob>, E> + Send,
        E: Send,
    {
        self.create_planned(request, plan, None).await
    }

    /// [`Store::create_job_request_planned`], appending an audit entry
    /// (`job_request.create` by `actor`, with the workspace, backend, commit,
    /// actions and number of jobs) in the same transaction: the request and
    /// its audit record exist together or not at all.
    pub async fn create_job_request_audited<F, E>(
        &self,
        request: NewJobRequest,
        actor: &str,
        plan: F,
    ) -> Result<std::result::Result<CreatedJobRequest, E>>
    where
        F: FnOnce(&mut NewJobRequest, &[Job]) -> std::result::Result<Vec<NewJob>, E> + Send,
        E: Send,
    {
        if actor.is_empty() {
            return Err(Error::InvalidInput("an audit event needs an actor".into()));
        }
        self.create_planned(request, plan, Some(actor)).await
    }

    async fn create_planned<F, E>(
        &self,
        mut request: NewJobRequest,
        plan: F,
        audit_actor: Option<&str>,
    ) -> Result<std::result::Result<CreatedJobRequest, E>>
    where
        F: FnOnce(&mut NewJobRequest, &[Job]) -> std::result::Result<Vec<NewJob>, E> + Send,
        E: Send,
    {
        validate_request(&request)?;
        let mut tx = self.pool.begin().await?;
        let created_ns = lock_workspace(&mut tx, &request.workspace).await?;
        let exists: Option<(String,)> = tx
            .fetch_optional(Sql::new("SELECT id FROM job_requests WHERE id = $1").bind(&request.id))
            .await?;
        if exists.is_some() {
            return Err(Error::AlreadyExists {
                kind: "job request",
                id: request.id,
            });
        }
        let state = latest_jobs(&mut tx, &request.workspace, Some(&request.backend)).await?;
        let (workspace, backend, id) = (
            request.workspace.clone(),
            request.backend.clone(),
            request.id.clone(),
        );
        let new_jobs = match plan(&mut request, &state) {
            Ok(jobs) => jobs,
            Err(e) => return Ok(Err(e)),
        };
        if (
            request.workspace.as_str(),
            request.backend.as_str(),
            request.id.as_str(),
        ) != (workspace.as_str(), backend.as_str(), id.as_str())
        {
            return Err(Error::InvalidInput(
                "the planner may not change the request's id, workspace or backend".into(),
            ));
        }
        validate_request(&request)?;
        validate_jobs(&request, &new_jobs)?;
        check_no_active_duplicates(&mut tx, &request, &new_jobs).await?;

        tx.execute(
            Sql::new(format!(
                "INSERT INTO job_requests ({JOB_REQUEST_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .bind(&request.id)
            .bind(&request.workspace)
            .bind(&request.backend)
            .bind(&request.repo_url)
            .bind(&request.branch)
            .bind(&request.commit)
            .bind(to_json(&request.requested_actions))
            .bind(request.force_run_dependencies)
            .bind(&request.project_definition)
            .bind(&request.created_by)
            .bind(created_ns)
            .bind(request.status.as_str())
            .bind(&request.status_message),
        )
        .await
        .map_err(|e| e.on_insert("job request", &request.id))?;

        insert_jobs(&mut tx, &request, &new_jobs, created_ns).await?;
        if let Some(actor) = audit_actor {
            tx.execute(
                Sql::new(
                    "INSERT INTO audit_log (actor, action, target_type, target_id, detail, created_at) \
                     VALUES ($1, 'job_request.create', 'job_request', $2, $3, $4)",
                )
                .bind(actor)
                .bind(&request.id)
                .bind(to_json(&serde_json::json!({
                    "workspace": request.workspace,
                    "backend": request.backend,
                    "commit": request.commit,
                    "actions": request.requested_actions,
                    "jobs": new_jobs.len(),
                })))
                .bind(created_ns),
            )
            .await?;
        }
        tx.commit().await?;

        let created_at = from_ns(created_ns);
        let jobs = new_jobs
            .into_iter()
            .map(|j| Job {
                id: job_id(&request.id, &j.action),
                job_request_id: request.id.clone(),
                workspace: request.workspace.clone(),
                backend: request.backend.clone(),
                action: j.action,
                state: State::Pending,
                status_code: StatusCode::Created,
                status_message: "Created".into(),
                run_command: j.run_command,
                image: j.image,
                output_spec: j.output_spec,
                requires_outputs_from: j.requires_outputs_from,
                wait_for_job_ids: j.wait_for_job_ids,
                requires_db: j.requires_db,
                outputs: None,
                cancelled: false,
                created_at,
                started_at: None,
                completed_at: None,
                updated_at: created_at,
                status_code_updated_at: created_ns,
            })
            .collect();
        let request = JobRequest {
            id: request.id,
            workspace: request.workspace,
            backend: request.backend,
            repo_url: request.repo_url,
            branch: request.branch,
            commit: request.commit,
            requested_actions: request.requested_actions,
            force_run_dependencies: request.force_run_dependencies,
            project_definition: request.project_definition,
            created_by: request.created_by,
            created_at,
            status: request.status,
            status_message: request.status_message,
        };
        tracing::info!(
            job_request_id = %request.id,
            workspace = %request.workspace,
            backend = %request.backend,
            "created job request"
        );
        Ok(Ok(CreatedJobRequest { request, jobs }))
    }

    /// The latest non-cancelled job of each action in `workspace` (on
    /// `backend`, or on any backend if `None`), by creation time, ordered by
    /// action: the "workspace state" planning starts from.
    pub async fn latest_jobs(&self, workspace: &str, backend: Option<&str>) -> Result<Vec<Job>> {
        let mut conn = self.pool.acquire().await?;
        latest_jobs(&mut conn, workspace, backend).await
    }

    /// One job.
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<JobRow> = conn
            .fetch_optional(
                Sql::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")).bind(id),
            )
            .await?;
        row.map(Job::try_from).transpose()
    }

    /// Jobs matching `filter`, oldest first (creation order).
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut f = Filter::new(format!("SELECT {JOB_COLUMNS} FROM jobs"));
        f.eq("job_request_id", filter.job_request_id.as_deref())
            .eq("workspace", filter.workspace.as_deref())
            .eq("backend", filter.backend.as_deref())
            .eq("action", filter.action.as_deref());
        if !filter.states.is_empty() {
            let states: Vec<String> = filter
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            f.raw(format!("state IN ({})", states.join(", ")));
        }
        let mut suffix = "ORDER BY created_at, position, id".to_owned();
        if let Some(limit) = filter.limit {
            suffix.push_str(&format!(" LIMIT {limit}"));
        }
        let mut conn = self.pool.acquire().await?;
        rows::jobs(conn.fetch_all(f.finish(&suffix)).await?)
    }

    /// The jobs of one request, in creation order.
    pub async fn jobs_for_request(&self, job_request_id: &str) -> Result<Vec<Job>> {
        self.list_jobs(&JobFilter {
            job_request_id: Some(job_request_id.into()),
            ..JobFilter::default()
        })
        .await
    }

    /// The jobs of each of these requests, in creation order, in one query
    /// per 500 requests (not one per request): what a page of job requests
    /// needs. Requests without jobs have an empty list.
    pub async fn jobs_for_requests(&self, ids: &[String]) -> Result<HashMap<String, Vec<Job>>> {
        let mut out: HashMap<String, Vec<Job>> =
            ids.iter().map(|id| (id.clone(), Vec::new())).collect();
        let mut conn = self.pool.acquire().await?;
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new("");
            let placeholders: Vec<String> = chunk.iter().map(|id| sql.push(id)).collect();
            sql.text = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE job_request_id IN ({}) \
                 ORDER BY created_at, position, id",
                placeholders.join(", ")
            )
            .into();
            for job in rows::jobs(conn.fetch_all(sql).await?)? {
                out.entry(job.job_request_id.clone()).or_default().push(job);
            }
        }
        Ok(out)
    }

    /// Every pending or running job (of `backend`, or of all backends), oldest
    /// first: what the scheduler works through.
    pub async fn active_jobs(&self, backend: Option<&str>) -> Result<Vec<Job>> {
        self.list_jobs(&JobFilter {
            backend: backend.map(str::to_owned),
            states: vec![State::Pending, State::Running],
            ..JobFilter::default()
        })
        .await
    }

    /// One job request.
    pub async fn get_job_request(&self, id: &str) -> Result<Option<JobRequest>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<JobRequestRow> = conn
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {JOB_REQUEST_COLUMNS} FROM job_requests WHERE id = $1"
                ))
                .bind(id),
            )
            .await?;
        row.map(JobRequest::try_from).transpose()
    }

    /// Job requests matching `filter`, newest first.
    pub async fn list_job_requests(&self, filter: &JobRequestFilter) -> Result<Vec<JobRequest>> {
        let mut f = Filter::new(format!("SELECT {JOB_REQUEST_COLUMNS} FROM job_requests"));
        f.eq("workspace", filter.workspace.as_deref())
            .eq("backend", filter.backend.as_deref())
            .eq("created_by", filter.created_by.as_deref());
        let suffix = format!(
            "ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {}",
            filter.limit.unwrap_or(100),
            filter.offset.unwrap_or(0)
        );
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<JobRequestRow> = conn.fetch_all(f.finish(&suffix)).await?;
        rows.into_iter().map(JobRequest::try_from).collect()
    }

    /// A job request with its jobs and derived status.
    pub async fn job_request_detail(&self, id: &str) -> Result<Option<JobRequestDetail>> {
        let Some(request) = self.get_job_request(id).await? else {
            return Ok(None);
        };
        let jobs = self.jobs_for_request(id).await?;
        let status = derive_request_status(&request, &jobs);
        Ok(Some(JobRequestDetail {
            request,
            jobs,
            status,
        }))
    }

    /// Sets a job's status code through [`set_code`], timed now.
    pub async fn set_code(
        &self,
        job_id: &str,
        code: StatusCode,
        message: &str,
    ) -> Result<UpdatedJob> {
        self.update_job(JobUpdate::code(job_id, code, message))
            .await
    }

    /// Applies `update` in one transaction: the status change through
    /// [`set_code`] (so the state, `started_at`, `completed_at` and clamped
    /// timestamps follow from the code), the outputs, and the task changes.
    /// The `cancelled` flag is never written here. Nothing is written when
    /// nothing changed (an unchanged code within the heartbeat interval).
    pub async fn update_job(&self, update: JobUpdate) -> Result<UpdatedJob> {
        let writes_extra = update.outputs.is_some()
            || update.insert_task.is_some()
            || update.deactivate_task.is_some();
        if !writes_extra {
            // The controller re-asserts every active job's code on every loop:
            // find out without a write transaction (and, on SQLite, without
            // the write lock) whether there is anything to write at all.
            let mut job = self
                .get_job(&update.job_id)
                .await?
                .ok_or_else(|| Error::not_found("job", &update.job_id))?;
            let change = set_code(
                &mut job,
                update.code,
                &update.message,
                update.timestamp_ns,
                now(),
            )?;
            if !change.is_write() {
                return Ok(UpdatedJob { job, change });
            }
        }
        let mut tx = self.pool.begin().await?;
        let engine = tx.engine();
        let row: Option<JobRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1{}",
                    for_update(engine)
                ))
                .bind(&update.job_id),
            )
            .await?;
        let mut job = Job::try_from(row.ok_or_else(|| Error::not_found("job", &update.job_id))?)?;
        let now = now();
        let change = set_code(
            &mut job,
            update.code,
            &update.message,
            update.timestamp_ns,
            now,
        )?;
        if let Some(outputs) = &update.outputs {
            job.outputs = Some(outputs.clone());
        }
        if !change.is_write() && !writes_extra {
            return Ok(UpdatedJob { job, change });
        }
        write_job(&mut tx, &job).await?;
        if let Some(task) = &update.insert_task {
            super::tasks::insert_task(&mut tx, task, to_ns(now)).await?;
        }
        if let Some(task_id) = &update.deactivate_task
            && !super::tasks::deactivate_task(&mut tx, task_id, to_ns(now)).await?
        {
            return Err(Error::not_found("task", task_id));
        }
        tx.commit().await?;
        Ok(UpdatedJob { job, change })
    }

    /// Applies several updates, each as [`Store::update_job`] would, in one
    /// transaction: all or none are written. Updates that would write nothing
    /// are skipped (and not returned). The controller batches the decisions of
    /// one scheduling pass this way: the batch's rows are read and locked with
    /// one statement and written back with one multi-row `UPDATE`, so many
    /// small transitions cost two round trips and one commit (and, on SQLite,
    /// one turn of the write lock). Several updates of one job apply in order.
    pub async fn update_jobs(&self, updates: Vec<JobUpdate>) -> Result<Vec<UpdatedJob>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let engine = tx.engine();
        let now = now();
        let mut ids: Vec<String> = updates.iter().map(|u| u.job_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: HashMap<String, Job> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new("");
            let placeholders: Vec<String> = chunk.iter().map(|id| sql.push(id)).collect();
            sql.text = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({}) ORDER BY id{}",
                placeholders.join(", "),
                for_update(engine)
            )
            .into();
            for job in rows::jobs(tx.fetch_all(sql).await?)? {
                rows.insert(job.id.clone(), job);
            }
        }
        let mut done = Vec::with_capacity(updates.len());
        let mut dirty: Vec<String> = Vec::new();
        let mut tasks: Vec<(Option<crate::model::NewTask>, Option<String>)> = Vec::new();
        for update in updates {
            let job = rows
                .get_mut(&update.job_id)
                .ok_or_else(|| Error::not_found("job", &update.job_id))?;
            let change = set_code(job, update.code, &update.message, update.timestamp_ns, now)?;
            let writes_extra = update.outputs.is_some()
                || update.insert_task.is_some()
                || update.deactivate_task.is_some();
            if let Some(outputs) = update.outputs {
                job.outputs = Some(outputs);
            }
            if !change.is_write() && !writes_extra {
                continue;
            }
            if !dirty.contains(&job.id) {
                dirty.push(job.id.clone());
            }
            tasks.push((update.insert_task, update.deactivate_task));
            done.push(UpdatedJob {
                job: job.clone(),
                change,
            });
        }
        let dirty: Vec<&Job> = dirty.iter().map(|id| &rows[id]).collect();
        write_jobs(&mut tx, &dirty).await?;
        for (insert, deactivate) in tasks {
            if let Some(task) = &insert {
                super::tasks::insert_task(&mut tx, task, to_ns(now)).await?;
            }
            if let Some(task_id) = &deactivate
                && !super::tasks::deactivate_task(&mut tx, task_id, to_ns(now)).await?
            {
                return Err(Error::not_found("task", task_id));
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    /// The jobs with these ids (those that exist), in no particular order.
    pub async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.pool.acquire().await?;
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new("");
            let placeholders: Vec<String> = chunk.iter().map(|id| sql.push(id)).collect();
            sql.text = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({})",
                placeholders.join(", ")
            )
            .into();
            out.extend(rows::jobs(conn.fetch_all(sql).await?)?);
        }
        Ok(out)
    }

    /// Flags the pending or running jobs of `actions` in request
    /// `job_request_id` as cancelled; the scheduler then stops them and sets
    /// `cancelled_by_user`. Finished jobs are left alone (unlike the
    /// reference, which flags them too and so hides them from the workspace
    /// state). Fails with [`Error::NotFound`] if the request has no jobs.
    pub async fn cancel_actions(
        &self,
        job_request_id: &str,
        actions: &[String],
    ) -> Result<CancelOutcome> {
        self.cancel_actions_inner(job_request_id, actions, None)
            .await
    }

    /// [`Store::cancel_actions`], with its audit record (`job_request.cancel`
    /// by `actor`, naming the actions asked for and the jobs flagged) in the
    /// same transaction: the cancellation and its record exist together or
    /// not at all.
    pub async fn cancel_actions_audited(
        &self,
        job_request_id: &str,
        actions: &[String],
        actor: &str,
    ) -> Result<CancelOutcome> {
        self.cancel_actions_inner(job_request_id, actions, Some(actor))
            .await
    }

    async fn cancel_actions_inner(
        &self,
        job_request_id: &str,
        actions: &[String],
        actor: Option<&str>,
    ) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let jobs: Vec<Job> = rows::jobs(
            tx.fetch_all(
                Sql::new(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE job_request_id = $1{}",
                    for_update(tx.engine())
                ))
                .bind(job_request_id),
            )
            .await?,
        )?;
        if jobs.is_empty() {
            return Err(Error::not_found("jobs of job request", job_request_id));
        }
        let by_action: HashMap<&str, &Job> = jobs.iter().map(|j| (j.action.as_str(), j)).collect();
        let mut outcome = CancelOutcome::default();
        let mut seen = HashSet::new();
        for action in actions {
            if !seen.insert(action.as_str()) {
                continue;
            }
            match by_action.get(action.as_str()) {
                None => outcome.not_found.push(action.clone()),
                Some(job) if job.state.is_final() => outcome.already_finished.push(job.id.clone()),
                Some(job) => {
                    flag_cancelled(&mut tx, &job.id).await?;
                    outcome.cancelled.push(job.id.clone());
                }
            }
        }
        outcome.not_found.sort();
        if let Some(actor) = actor {
            super::flags::insert_audit(
                &mut tx,
                &NewAuditEvent {
                    actor: actor.into(),
                    action: "job_request.cancel".into(),
                    target_type: "job_request".into(),
                    target_id: job_request_id.into(),
                    detail: serde_json::json!({"actions": actions, "cancelled": outcome.cancelled}),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Flags one job as cancelled if it is pending or running; returns whether
    /// it was.
    pub async fn cancel_job(&self, job_id: &str) -> Result<bool> {
        self.cancel_job_inner(job_id, None).await
    }

    /// [`Store::cancel_job`], with its audit record (`job.cancel` by
    /// `actor`, naming the job's request and action) in the same
    /// transaction, written only when the job was flagged.
    pub async fn cancel_job_audited(&self, job_id: &str, actor: &str) -> Result<bool> {
        self.cancel_job_inner(job_id, Some(actor)).await
    }

    async fn cancel_job_inner(&self, job_id: &str, actor: Option<&str>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let flagged: Option<(String, String)> = tx
            .fetch_optional(
                Sql::new(format!(
                    "UPDATE jobs SET cancelled = TRUE, version = version + 1 \
                     WHERE id = $1 AND {ACTIVE} RETURNING job_request_id, action"
                ))
                .bind(job_id),
            )
            .await?;
        if let (Some(actor), Some((job_request_id, action))) = (actor, &flagged) {
            super::flags::insert_audit(
                &mut tx,
                &NewAuditEvent {
                    actor: actor.into(),
                    action: "job.cancel".into(),
                    target_type: "job".into(),
                    target_id: job_id.into(),
                    detail: serde_json::json!({"job_request_id": job_request_id, "action": action}),
                },
            )
            .await?;
        }
        tx.commit().await?;
        if flagged.is_none() && self.get_job(job_id).await?.is_none() {
            return Err(Error::not_found("job", job_id));
        }
        Ok(flagged.is_some())
    }

    /// For the start of a local run: every job still pending or running (on
    /// `backend`, or anywhere) was left by a run that died, so it is flagged
    /// cancelled and failed with `cancelled_by_user` and `message`
    /// ([`INTERRUPTED_MESSAGE`] is a good one), and its active tasks are
    /// deactivated, all in one transaction. Returns the jobs changed.
    pub async fn fail_interrupted_jobs(
        &self,
        backend: Option<&str>,
        message: &str,
    ) -> Result<Vec<Job>> {
        let mut tx = self.pool.begin().await?;
        let mut f = Filter::new(format!("SELECT {JOB_COLUMNS} FROM jobs"));
        f.raw(ACTIVE).eq("backend", backend);
        let suffix = format!(
            "ORDER BY created_at, position, id{}",
            for_update(tx.engine())
        );
        let mut jobs = rows::jobs(tx.fetch_all(f.finish(&suffix)).await?)?;
        let now = now();
        for job in &mut jobs {
            set_code(job, StatusCode::CancelledByUser, message, None, now)?;
            job.cancelled = true;
            flag_cancelled(&mut tx, &job.id).await?;
            write_job(&mut tx, job).await?;
            tx.execute(
                Sql::new(
                    "UPDATE tasks SET active = FALSE, finished_at = $2 \
                     WHERE active AND id LIKE $1",
                )
                .bind(format!("{}-%", job.id))
                .bind(to_ns(now)),
            )
            .await?;
        }
        tx.commit().await?;
        if !jobs.is_empty() {
            tracing::warn!(
                count = jobs.len(),
                "failed jobs left active by an interrupted run"
            );
        }
        Ok(jobs)
    }
}

fn validate_request(r: &NewJobRequest) -> Result<()> {
    if !is_valid_job_request_id(&r.id) {
        return Err(Error::InvalidInput(format!(
            "job request id {:?} is not 16 characters of [a-z0-9]",
            r.id
        )));
    }
    if r.workspace.is_empty() {
        return Err(Error::InvalidInput("workspace name cannot be blank".into()));
    }
    if r.backend.is_empty() {
        return Err(Error::InvalidInput("backend cannot be blank".into()));
    }
    Ok(())
}

fn validate_jobs(r: &NewJobRequest, jobs: &[NewJob]) -> Result<()> {
    if jobs.is_empty() && r.status.is_active() {
        return Err(Error::InvalidInput(format!(
            "a job request without jobs cannot be recorded as {}; use nothing_to_do or failed",
            r.status
        )));
    }
    if !jobs.is_empty() && r.status != JobRequestStatus::Pending {
        return Err(Error::InvalidInput(format!(
            "a job request with jobs is recorded as pending, not {}",
            r.status
        )));
    }
    let mut seen = HashSet::new();
    for j in jobs {
        if j.action.is_empty() {
            return Err(Error::InvalidInput("action name cannot be blank".into()));
        }
        if !seen.insert(j.action.as_str()) {
            return Err(Error::InvalidInput(format!(
                "action {:?} appears twice in one job request",
                j.action
            )));
        }
    }
    Ok(())
}

/// Takes the workspace's creation lock and returns the creation time to use:
/// now, or 1 µs after the workspace's previous creation if the clock has not
/// moved past it, so creation times strictly increase within a workspace.
///
/// The lock is the `workspace_locks` row, written by an upsert. On
/// PostgreSQL the upsert takes the row lock, which a concurrent creator for
/// the same workspace waits on until this transaction ends (and a concurrent
/// first insert of the row makes the other wait too); statements after it run
/// on fresh READ COMMITTED snapshots, so they see everything the previous
/// holder committed. On SQLite the transaction already holds the database's
/// write lock (`BEGIN IMMEDIATE`).
async fn lock_workspace(tx: &mut Tx, workspace: &str) -> Result<i64> {
    let (created,): (i64,) = tx
        .fetch_one(
            Sql::new(
                "INSERT INTO workspace_locks (workspace, last_created_at) VALUES ($1, $2) \
                 ON CONFLICT (workspace) DO UPDATE SET last_created_at = CASE \
                     WHEN workspace_locks.last_created_at >= excluded.last_created_at \
                     THEN workspace_locks.last_created_at + 1000 \
                     ELSE excluded.last_created_at END \
                 RETURNING last_created_at",
            )
            .bind(workspace)
            .bind(to_ns(now())),
        )
        .await?;
    Ok(created)
}

async fn latest_jobs<E: LatestJobs>(
    exec: &mut E,
    workspace: &str,
    backend: Option<&str>,
) -> Result<Vec<Job>> {
    let backend_cond = if backend.is_some() {
        " AND backend = $2"
    } else {
        ""
    };
    let mut sql = Sql::new(format!(
        "SELECT {JOB_COLUMNS} FROM (\
             SELECT {JOB_COLUMNS}, ROW_NUMBER() OVER (\
                 PARTITION BY action ORDER BY created_at DESC, id DESC) AS rn \
             FROM jobs WHERE workspace = $1{backend_cond} AND NOT cancelled\
         ) latest WHERE rn = 1 ORDER BY action"
    ))
    .bind(workspace);
    if let Some(b) = backend {
        sql = sql.bind(b);
    }
    rows::jobs(exec.fetch_jobs(sql).await?)
}

/// Lets [`latest_jobs`] run on a pooled connection or inside a transaction.
trait LatestJobs {
    async fn fetch_jobs(&mut self, sql: Sql) -> Result<Vec<JobRow>>;
}
impl LatestJobs for Tx {
    async fn fetch_jobs(&mut self, sql: Sql) -> Result<Vec<JobRow>> {
        self.fetch_all(sql).await
    }
}
impl LatestJobs for crate::db::Conn {
    async fn fetch_jobs(&mut self, sql: Sql) -> Result<Vec<JobRow>> {
        self.fetch_all(sql).await
    }
}

async fn check_no_active_duplicates(
    tx: &mut Tx,
    request: &NewJobRequest,
    jobs: &[NewJob],
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let active: Vec<(String, String)> = tx
        .fetch_all(
            Sql::new(format!(
                "SELECT action, id FROM jobs \
                 WHERE workspace = $1 AND backend = $2 AND {ACTIVE} AND NOT cancelled"
            ))
            .bind(&request.workspace)
            .bind(&request.backend),
        )
        .await?;
    let active: BTreeMap<String, String> = active.into_iter().collect();
    for j in jobs {
        if let Some(existing) = active.get(&j.action) {
            return Err(Error::ActiveJobExists {
                workspace: request.workspace.clone(),
                backend: request.backend.clone(),
                action: j.action.clone(),
                job_id: existing.clone(),
            });
        }
    }
    Ok(())
}

async fn insert_jobs(
    tx: &mut Tx,
    request: &NewJobRequest,
    jobs: &[NewJob],
    created_ns: i64,
) -> Result<()> {
    for (chunk_index, chunk) in jobs.chunks(INSERT_CHUNK).enumerate() {
        let mut sql = Sql::new("")
            .bind(&request.id)
            .bind(&request.workspace)
            .bind(&request.backend)
            .bind(created_ns);
        let mut values = Vec::with_capacity(chunk.len());
        for (i, j) in chunk.iter().enumerate() {
            let id = sql.push(job_id(&request.id, &j.action));
            let action = sql.push(&j.action);
            let run_command = sql.push(&j.run_command);
            let image = sql.push(&j.image);
            let output_spec = sql.push(to_json(&j.output_spec));
            let needs = sql.push(to_json(&j.requires_outputs_from));
            let waits = sql.push(to_json(&j.wait_for_job_ids));
            let requires_db = sql.push(j.requires_db);
            let position = sql.push((chunk_index * INSERT_CHUNK + i) as i64);
            values.push(format!(
                "({id}, $1, $2, $3, {action}, 'pending', 'created', 'Created', {run_command}, \
                 {image}, {output_spec}, {needs}, {waits}, {requires_db}, NULL, FALSE, \
                 $4, NULL, NULL, $4, $4, {position})"
            ));
        }
        sql.text = format!(
            "INSERT INTO jobs ({JOB_COLUMNS}, position) VALUES {}",
            values.join(", ")
        )
        .into();
        tx.execute(sql).await.map_err(|e| {
            if e.is_unique_violation() {
                Error::Conflict(format!(
                    "job request {}: a job id exists already or an action has an active job",
                    request.id
                ))
            } else {
                e
            }
        })?;
    }
    Ok(())
}

/// Rows per multi-row `UPDATE` in [`write_jobs`] (9 arguments each).
const UPDATE_CHUNK: usize = 200;

/// Writes every status field of `jobs` (never `cancelled`) with one
/// multi-row `UPDATE ... FROM` per [`UPDATE_CHUNK`] jobs.
async fn write_jobs(tx: &mut Tx, jobs: &[&Job]) -> Result<()> {
    for chunk in jobs.chunks(UPDATE_CHUNK) {
        let mut sql = Sql::new("");
        let mut values = Vec::with_capacity(chunk.len());
        for job in chunk {
            let row = [
                sql.push(&job.id),
                sql.push(job.state.as_str()),
                sql.push(job.status_code.as_str()),
                sql.push(&job.status_message),
                sql.push(job.started_at.map(to_ns)),
                sql.push(job.completed_at.map(to_ns)),
                sql.push(to_ns(job.updated_at)),
                sql.push(job.status_code_updated_at),
                sql.push(job.outputs.as_ref().map(to_json)),
            ];
            values.push(format!("({})", row.join(", ")));
        }
        // A CTE with a column list: the one spelling of a VALUES table with
        // named columns that both SQLite and PostgreSQL accept.
        sql.text = format!(
            "WITH v (id, state, status_code, status_message, started_at, completed_at, \
                     updated_at, status_code_updated_at, outputs) AS (VALUES {}) \
             UPDATE jobs SET state = v.state, status_code = v.status_code, \
                 status_message = v.status_message, started_at = v.started_at, \
                 completed_at = v.completed_at, updated_at = v.updated_at, \
                 status_code_updated_at = v.status_code_updated_at, outputs = v.outputs, \
                 version = version + 1 \
             FROM v WHERE jobs.id = v.id",
            values.join(", ")
        )
        .into();
        let n = tx.execute(sql).await?;
        if n != chunk.len() as u64 {
            return Err(Error::Conflict(format!(
                "wrote {n} of {} jobs in a batch",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Writes every status field of `job` (never `cancelled`).
async fn write_job(tx: &mut Tx, job: &Job) -> Result<()> {
    tx.execute(
        Sql::new(
            "UPDATE jobs SET state = $2, status_code = $3, status_message = $4, \
             started_at = $5, completed_at = $6, updated_at = $7, \
             status_code_updated_at = $8, outputs = $9, version = version + 1 \
             WHERE id = $1",
        )
        .bind(&job.id)
        .bind(job.state.as_str())
        .bind(job.status_code.as_str())
        .bind(&job.status_message)
        .bind(job.started_at.map(to_ns))
        .bind(job.completed_at.map(to_ns))
        .bind(to_ns(job.updated_at))
        .bind(job.status_code_updated_at)
        .bind(job.outputs.as_ref().map(to_json)),
    )
    .await?;
    Ok(())
}

async fn flag_cancelled(tx: &mut Tx, job_id: &str) -> Result<()> {
    tx.execute(
        Sql::new("UPDATE jobs SET cancelled = TRUE, version = version + 1 WHERE id = $1")
            .bind(job_id),
    )
    .await?;
    Ok(())
}
