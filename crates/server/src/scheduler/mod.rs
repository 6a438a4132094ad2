//! The scheduler: the controller's job state machine (job-runner §2.8 and
//! §4), run as one task per server.
//!
//! # When it runs
//!
//! It reacts to events at once: creating a job request, cancelling, an
//! agent's task update and pausing or unpausing a backend all call
//! [`SchedulerHandle::wake`] (a `tokio::sync::Notify`). Wake-ups that arrive
//! while a pass runs coalesce into one more pass, so a burst of events costs
//! one or two passes, not one each. A pass that finishes a job (which may
//! unblock its dependants or free a worker slot) or puts one back to pending
//! is followed at once by another, so a failure cascades down a whole chain
//! without waiting. The only timer is a safety net
//! ([`Config::poll_interval`](crate::Config)) for changes made by other
//! processes against the same database (`warden admin backend pause`) and
//! for heartbeats.
//!
//! # One pass
//!
//! It brings its view of the pending and running jobs up to date (see
//! `View`: read whole at start, then kept current by the job events every
//! writer publishes), then decides, in memory, for each: running jobs first; then pending jobs by fewest running jobs in
//! their workspace (fair share, updated as jobs start), database jobs before
//! others, oldest first.
//!
//! * cancelled: a pending job fails with `cancelled_by_user`; a running one
//!   too, and its RUNJOB task is replaced by a CANCELJOB task for the agent
//!   (one transaction), unless the agent had already finished the task, in
//!   which case its real outcome is recorded;
//! * backend paused: pending jobs wait (`paused`); running jobs carry on;
//! * database maintenance (flag `mode` = `db-maintenance`): database jobs wait,
//!   running ones are stopped and put back to pending;
//! * a dependency failed: `dependency_failed`, which then cascades;
//! * a dependency not yet succeeded: `waiting_on_dependencies`;
//! * no free worker slot on the backend: `waiting_on_workers` /
//!   `waiting_on_db_workers` (weights from the backend's `job-weights` flag;
//!   separate pools for database and other jobs);
//! * otherwise: a RUNJOB task is created and the job becomes `initiated` /
//!   running, in one transaction;
//! * running: the agent's stage becomes the status code (with the agent's
//!   timestamp); a completed task's results decide the final code
//!   (`succeeded`, `nonzero_exit`, `unmatched_patterns`), an executor error
//!   retries under a new task (`waiting_on_new_task`) up to
//!   `max_task_attempts`, then `job_error`.
//!
//! Every change goes through `warden-state`'s `set_code`, so states follow
//! from codes and timestamps never go backwards. The decisions of a pass are
//! written in order, in batches of [`WRITE_BATCH`] per transaction. A crash
//! at any point leaves every job in a true state: a job is running if and only
//! if its RUNJOB task was committed with it, and the next pass (after a
//! restart) simply decides again from what is stored. Only one scheduler may
//! run against a database at a time (one `warden serve` per database).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use warden_state::{
    FLAG_MODE, FLAG_PAUSED, HEARTBEAT_INTERVAL, Job, JobRequest, JobUpdate, MODE_DB_MAINTENANCE,
    NewTask, State, StatusCode, Store, Task, TaskType, canceljob_task_id, runjob_task_id,
};

use crate::config::Config;
use crate::definition::{
    AgentStage, FATAL_ERROR_MESSAGE, JobDefinition, LEVEL4_FILE_TYPES, RETRY_MESSAGE, TaskResults,
};
use crate::events::Events;

/// Decisions written per transaction: small enough that a batch holds
/// SQLite's write lock for a few milliseconds, so API writes queued behind it
/// (creates, cancels, agent reports) wait little.
pub const WRITE_BATCH: usize = 64;

/// Flag: worker slots of a backend (a number).
pub const FLAG_MAX_WORKERS: &str = "max-workers";
/// Flag: database-job slots of a backend (a number).
pub const FLAG_MAX_DB_WORKERS: &str = "max-db-workers";
/// Flag: job weights of a backend, JSON:
/// `{"default": {"<regex on run command>": w}, "workspaces": {"<ws>": {"<regex on action>": w}}}`;
/// regexes match the whole text; the workspace's section is tried first,
/// then `default`; otherwise the weight is 1.
pub const FLAG_JOB_WEIGHTS: &str = "job-weights";

/// Status messages (job-runner §2.8).
pub mod messages;
mod view;
mod weights;

use view::{Tracked, View};
use weights::{Weights, number};

/// Wakes the scheduler.
#[derive(Debug, Clone, Default)]
pub struct SchedulerHandle {
    notify: Arc<Notify>,
}

impl SchedulerHandle {
    /// A handle on a new (not yet running) scheduler.
    pub fn new() -> SchedulerHandle {
        SchedulerHandle::default()
    }

    /// Asks for a pass as soon as possible (coalesces with other wake-ups).
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// The scheduler task.
pub struct Scheduler {
    store: Store,
    config: Config,
    events: Events,
    handle: SchedulerHandle,
    view: View,
}

/// Per-backend settings read at the start of a pass.
struct BackendInfo {
    paused: bool,
    db_maintenance: bool,
    max_workers: f64,
    max_db_workers: f64,
    weights: Weights,
    used: f64,
    used_db: f64,
}

/// The decisions of one pass, in order.
struct Pass {
    now: OffsetDateTime,
    updates: Vec<JobUpdate>,
    /// Some job finished or went back to pending: pass again.
    again: bool,
}

impl Pass {
    /// [`Pass::propose`] of a plain code change, without building the update
    /// when nothing would change (the common case: a job still waiting for
    /// the same reason).
    fn code(&mut self, job: &Job, code: StatusCode, message: &str) -> State {
        if code == job.status_code
            && message == job.status_message
            && self.now - job.updated_at < HEARTBEAT_INTERVAL
        {
            return job.state;
        }
        self.propose(job, JobUpdate::code(&job.id, code, message))
    }

    /// Queues `code`/`message` for `job` if that writes anything; returns the
    /// job's state afterwards.
    fn propose(&mut self, job: &Job, update: JobUpdate) -> State {
        let extras = update.insert_task.is_some() || update.deactivate_task.is_some();
        if !extras
            && update.code == job.status_code
            && update.message == job.status_message
            && self.now - job.updated_at < HEARTBEAT_INTERVAL
        {
            return job.state;
        }
        let mut probe = job.clone();
        match warden_state::set_code(
            &mut probe,
            update.code,
            &update.message,
            update.timestamp_ns,
            self.now,
        ) {
            Ok(change) => {
                if change.is_write() || extras {
                    if probe.state != job.state
                        && (probe.state.is_final() || probe.state == State::Pending)
                    {
                        self.again = true;
                    }
                    self.updates.push(update);
                }
                probe.state
            }
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "refused transition");
                job.state
            }
        }
    }
}

impl Scheduler {
    /// A scheduler over `store`, woken through `handle`.
    /// Subscribes to `events` at once, so no job published from now on is
    /// missed.
    pub fn new(store: Store, config: Config, events: Events, handle: SchedulerHandle) -> Self {
        let view = View {
            rx: events.subscribe(),
            active: HashMap::new(),
            finished: HashSet::new(),
            next_seq: 0,
            reload: true,
            reloaded_at: std::time::Instant::now(),
        };
        Scheduler {
            store,
            config,
            events,
            handle,
            view,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!("scheduler started");
        let notify = Arc::clone(&self.handle.notify);
        loop {
            if *shutdown.borrow() {
                break;
            }
            let mut again = false;
            match self.pass().await {
                Ok(more) => again = more,
                Err(e) => tracing::error!(error = %e, "scheduling pass failed; retrying"),
            }
            if again {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    async fn backend_info(&self, slug: &str) -> warden_state::Result<BackendInfo> {
        let flags: HashMap<String, Option<String>> = self
            .store
            .list_flags(slug)
            .await?
            .into_iter()
            .map(|f| (f.id, f.value))
            .collect();
        let flag = |id: &str| flags.get(id).and_then(|v| v.as_deref());
        let max_workers = number(flag(FLAG_MAX_WORKERS)).unwrap_or(self.config.default_max_workers);
        let max_db_workers = number(flag(FLAG_MAX_DB_WORKERS))
            .or(self.config.default_max_db_workers)
            .unwrap_or(max_workers);
        Ok(BackendInfo {
            paused: flag(FLAG_PAUSED) == Some("true"),
            db_maintenance: flag(FLAG_MODE) == Some(MODE_DB_MAINTENANCE),
            max_workers,
            max_db_workers,
            weights: Weights::parse(flag(FLAG_JOB_WEIGHTS)),
            used: 0.0,
            used_db: 0.0,
        })
    }

    /// One pass over every active job; returns whether another pass should
    /// follow at once.
    pub async fn pass(&mut self) -> warden_state::Result<bool> {
        let started = std::time::Instant::now();
        let reloaded = self.view.refresh(&self.store).await?;
        let loaded = started.elapsed();
        if self.view.active.is_empty() {
            return Ok(false);
        }
        let (updates, again, count) = self.decide().await?;
        let decided = started.elapsed();
        let n = updates.len();
        if let Err(e) = self.write(updates).await {
            // The view may now be ahead of the database: read it again.
            self.view.reload = true;
            return Err(e);
        }
        tracing::debug!(
            jobs = count,
            updates = n,
            reloaded,
            load_ms = loaded.as_millis() as u64,
            decide_ms = (decided - loaded).as_millis() as u64,
            write_ms = (started.elapsed() - decided).as_millis() as u64,
            "scheduling pass"
        );
        Ok(again)
    }

    /// The decisions of one pass over the view, in order.
    async fn decide(&self) -> warden_state::Result<(Vec<JobUpdate>, bool, usize)> {
        let mut tracked: Vec<&Tracked> = self.view.active.values().collect();
        tracked.sort_unstable_by_key(|t| (t.job.created_at, t.seq));
        let jobs: Vec<&Job> = tracked.into_iter().map(|t| &t.job).collect();
        let count = jobs.len();

        let mut states: HashMap<&str, State> =
            jobs.iter().map(|j| (j.id.as_str(), j.state)).collect();
        let missing: Vec<String> = jobs
            .iter()
            .flat_map(|j| j.wait_for_job_ids.iter())
            .filter(|id| !states.contains_key(id.as_str()))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let dependencies = if missing.is_empty() {
            Vec::new()
        } else {
            self.store.get_jobs(&missing).await?
        };
        for job in &dependencies {
            states.insert(job.id.as_str(), job.state);
        }

        let mut backends: HashMap<&str, BackendInfo> = HashMap::new();
        for job in &jobs {
            if !backends.contains_key(job.backend.as_str()) {
                let info = self.backend_info(&job.backend).await?;
                backends.insert(job.backend.as_str(), info);
            }
        }
        let mut running_in: HashMap<(&str, &str), usize> = HashMap::new();
        for job in jobs.iter().filter(|j| j.state == State::Running) {
            let info = backends
                .get_mut(job.backend.as_str())
                .expect("backend info");
            let w = info.weights.weight(job);
            if job.requires_db {
                info.used_db += w;
            } else {
                info.used += w;
            }
            *running_in
                .entry((job.backend.as_str(), job.workspace.as_str()))
                .or_default() += 1;
        }

        let mut pass = Pass {
            now: OffsetDateTime::now_utc(),
            updates: Vec::new(),
            again: false,
        };
        let mut requests: HashMap<String, Option<JobRequest>> = HashMap::new();
        let mut latest: HashMap<(String, String), HashMap<String, String>> = HashMap::new();

        // Running jobs first.
        let (running, pending): (Vec<&Job>, Vec<&Job>) =
            jobs.into_iter().partition(|j| j.state == State::Running);
        for job in running {
            let info = backends
                .get_mut(job.backend.as_str())
                .expect("backend info");
            let new_state = self.handle_running(&mut pass, job, info).await?;
            if new_state != State::Running {
                let w = info.weights.weight(job);
                if job.requires_db {
                    info.used_db -= w;
                } else {
                    info.used -= w;
                }
                if let Some(n) = running_in.get_mut(&(job.backend.as_str(), job.workspace.as_str()))
                {
                    *n = n.saturating_sub(1);
                }
            }
            states.insert(job.id.as_str(), new_state);
        }

        // Pending jobs: fewest running in their workspace, database jobs
        // first, oldest first.
        let mut queues: Vec<VecDeque<&Job>> = Vec::new();
        let mut queue_keys: Vec<(&str, &str)> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for job in pending {
            let key = (job.backend.as_str(), job.workspace.as_str());
            let i = *index.entry(key).or_insert_with(|| {
                queues.push(VecDeque::new());
                queue_keys.push(key);
                queues.len() - 1
            });
            queues[i].push_back(job);
        }
        for q in &mut queues {
            // Stable: database jobs first, creation order otherwise.
            q.make_contiguous().sort_by_key(|j| !j.requires_db);
        }
        type Key = (usize, bool, i128, u64, usize);
        let head_key = |q: &VecDeque<&Job>, running: usize, seq: u64, i: usize| -> Option<Key> {
            q.front().map(|j| {
                (
                    running,
                    !j.requires_db,
                    j.created_at.unix_timestamp_nanos(),
                    seq,
                    i,
                )
            })
        };
        let mut heap: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
        let mut seq = 0u64;
        for (i, q) in queues.iter().enumerate() {
            let running = running_in.get(&queue_keys[i]).copied().unwrap_or(0);
            if let Some(k) = head_key(q, running, seq, i) {
                heap.push(Reverse(k));
                seq += 1;
            }
        }
        while let Some(Reverse((_, _, _, _, i))) = heap.pop() {
            let job = queues[i].pop_front().expect("queue head");
            let info = backends
                .get_mut(job.backend.as_str())
                .expect("backend info");
            let new_state = self
                .handle_pending(&mut pass, job, info, &states, &mut requests, &mut latest)
                .await?;
            states.insert(job.id.as_str(), new_state);
            let running = running_in.entry(queue_keys[i]).or_default();
            if new_state == State::Running {
                *running += 1;
            }
            if let Some(k) = head_key(&queues[i], *running, seq, i) {
                heap.push(Reverse(k));
                seq += 1;
            }
        }
        Ok((pass.updates, pass.again, count))
    }

    async fn write(&mut self, updates: Vec<JobUpdate>) -> warden_state::Result<()> {
        let mut updates = updates.into_iter().peekable();
        while updates.peek().is_some() {
            let batch: Vec<JobUpdate> = updates.by_ref().take(WRITE_BATCH).collect();
            for done in self.store.update_jobs(batch).await? {
                if done.change.state_changed(&done.job) || done.job.state.is_final() {
                    tracing::info!(
                        job_id = %done.job.id,
                        action = %crate::error::shown(&done.job.action),
                        state = %done.job.state,
                        status_code = %done.job.status_code,
                        "{}",
                        done.job.status_message
                    );
                }
                self.view.merge(&done.job);
                self.events.publish(done.job);
            }
        }
        Ok(())
    }

    async fn handle_running(
        &self,
        pass: &mut Pass,
        job: &Job,
        info: &BackendInfo,
    ) -> warden_state::Result<State> {
        let task = self.store.latest_runjob_task(&job.id).await?;
        let Some(task) = task else {
            tracing::error!(job_id = %job.id, "running job without a RUNJOB task");
            return Ok(pass.code(job, StatusCode::InternalError, messages::INTERNAL_ERROR));
        };
        if task.agent_complete {
            // The agent finished: its outcome is the truth, even if a cancel
            // arrived meanwhile.
            return Ok(self.finish(pass, job, &task));
        }
        if job.cancelled {
            return Ok(pass.propose(
                job,
                self.stop(job, &task, StatusCode::CancelledByUser, messages::CANCELLED),
            ));
        }
        if info.db_maintenance && job.requires_db {
            return Ok(pass.propose(
                job,
                self.stop(
                    job,
                    &task,
                    StatusCode::WaitingDbMaintenance,
                    messages::DB_MAINTENANCE,
                ),
            ));
        }
        if !task.active {
            // Deactivated without completing (e.g. by an operator): try again.
            return Ok(pass.code(job, StatusCode::WaitingOnNewTask, RETRY_MESSAGE));
        }
        let code = task
            .agent_stage
            .as_deref()
            .and_then(AgentStage::parse)
            .and_then(StatusCode::for_agent_stage)
            .unwrap_or(job.status_code);
        Ok(pass.propose(
            job,
            JobUpdate {
                timestamp_ns: task.agent_timestamp_ns,
                ..JobUpdate::code(&job.id, code, job.status_message.clone())
            },
        ))
    }

    /// Ends a running job's task: deactivates it and hands the agent a
    /// CANCELJOB task, with the job's new code, in one transaction.
    fn stop(&self, job: &Job, task: &Task, code: StatusCode, message: &str) -> JobUpdate {
        let mut definition = task.definition.clone();
        let cancel_id = canceljob_task_id(&task.id);
        if let Some(obj) = definition.as_object_mut() {
            obj.insert(
                "task_id".into(),
                serde_json::Value::String(cancel_id.clone()),
            );
        }
        JobUpdate {
            deactivate_task: task.active.then(|| task.id.clone()),
            insert_task: task.active.then(|| NewTask {
                id: cancel_id,
                backend: job.backend.clone(),
                task_type: TaskType::CancelJob,
                definition,
            }),
            ..JobUpdate::code(&job.id, code, message)
        }
    }

    /// A job whose RUNJOB task the agent completed.
    fn finish(&self, pass: &mut Pass, job: &Job, task: &Task) -> State {
        let results: Option<TaskResults> = task
            .agent_results
            .as_ref()
            .and_then(|r| serde_json::from_value(r.clone()).ok());
        let errored = task.agent_stage.as_deref() == Some("error")
            || results.as_ref().is_none_or(|r| r.has_error);
        let ts = task.agent_timestamp_ns;
        if errored {
            let fatal = results.as_ref().is_some_and(|r| r.fatal);
            let attempt = attempt_of(&task.id);
            let update = if fatal {
                JobUpdate::code(&job.id, StatusCode::JobError, FATAL_ERROR_MESSAGE)
            } else if attempt >= self.config.max_task_attempts {
                JobUpdate::code(
                    &job.id,
                    StatusCode::JobError,
                    format!(
                        "This job returned an error on each of its {attempt} attempts; it will not be retried."
                    ),
                )
            } else if job.cancelled {
                JobUpdate::code(&job.id, StatusCode::CancelledByUser, messages::CANCELLED)
            } else {
                JobUpdate::code(&job.id, StatusCode::WaitingOnNewTask, RETRY_MESSAGE)
            };
            return pass.propose(
                job,
                JobUpdate {
                    timestamp_ns: ts,
                    ..update
                },
            );
        }
        let (code, message) =
            StatusCode::for_results(results.as_ref().expect("checked"), job.requires_db);
        pass.propose(
            job,
            JobUpdate {
                timestamp_ns: ts,
                ..JobUpdate::code(&job.id, code, message)
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle_pending(
        &self,
        pass: &mut Pass,
        job: &Job,
        info: &mut BackendInfo,
        states: &HashMap<&str, State>,
        requests: &mut HashMap<String, Option<JobRequest>>,
        latest: &mut HashMap<(String, String), HashMap<String, String>>,
    ) -> warden_state::Result<State> {
        if job.cancelled {
            return Ok(pass.code(job, StatusCode::CancelledByUser, messages::CANCELLED));
        }
        if info.paused {
            if job.status_code == StatusCode::WaitingOnReboot {
                return Ok(job.state);
            }
            return Ok(pass.code(job, StatusCode::WaitingPaused, messages::PAUSED));
        }
        if info.db_maintenance && job.requires_db {
            return Ok(pass.code(
                job,
                StatusCode::WaitingDbMaintenance,
                messages::DB_MAINTENANCE,
            ));
        }
        let mut waiting = false;
        for dep in &job.wait_for_job_ids {
            match states.get(dep.as_str()) {
                Some(State::Succeeded) => {}
                // A dependency that cannot be found can never succeed.
                Some(State::Failed) | None => {
                    return Ok(pass.code(
                        job,
                        StatusCode::DependencyFailed,
                        messages::DEPENDENCY_FAILED,
                    ));
                }
                Some(_) => waiting = true,
            }
        }
        if waiting {
            return Ok(pass.code(
                job,
                StatusCode::WaitingOnDependencies,
                messages::WAITING_ON_DEPENDENCIES,
            ));
        }
        let weight = info.weights.weight(job);
        let fits = if job.requires_db {
            info.used_db + weight <= info.max_db_workers
        } else {
            info.used + weight <= info.max_workers
        };
        if !fits {
            let (code, message) = if job.requires_db {
                (
                    StatusCode::WaitingOnDbWorkers,
                    messages::WAITING_ON_DB_WORKERS,
                )
            } else if weight > 1.0 {
                (
                    StatusCode::WaitingOnWorkers,
                    messages::WAITING_ON_WORKERS_HEAVY,
                )
            } else {
                (StatusCode::WaitingOnWorkers, messages::WAITING_ON_WORKERS)
            };
            return Ok(pass.code(job, code, message));
        }

        // Start it.
        if !requests.contains_key(&job.job_request_id) {
            let request = self.store.get_job_request(&job.job_request_id).await?;
            requests.insert(job.job_request_id.clone(), request);
        }
        let Some(request) = requests.get(&job.job_request_id).and_then(Option::as_ref) else {
            tracing::error!(job_id = %job.id, "job without its job request");
            return Ok(pass.code(job, StatusCode::InternalError, messages::INTERNAL_ERROR));
        };
        let key = (job.workspace.clone(), job.backend.clone());
        if !latest.contains_key(&key) {
            let jobs = self
                .store
                .latest_jobs(&job.workspace, Some(&job.backend))
                .await?;
            latest.insert(
                key.clone(),
                jobs.into_iter().map(|j| (j.action, j.id)).collect(),
            );
        }
        let attempt = self
            .store
            .tasks_for_job(&job.id, Some(TaskType::RunJob))
            .await?
            .len() as u32
            + 1;
        let task_id = runjob_task_id(&job.id, attempt);
        let definition = self.definition(job, request, &task_id, &latest[&key]);
        let update = JobUpdate {
            insert_task: Some(NewTask {
                id: task_id,
                backend: job.backend.clone(),
                task_type: TaskType::RunJob,
                definition: serde_json::to_value(definition).expect("definition serialises"),
            }),
            ..JobUpdate::code(&job.id, StatusCode::Initiated, messages::INITIATED)
        };
        let state = pass.propose(job, update);
        if state == State::Running {
            if job.requires_db {
                info.used_db += weight;
            } else {
                info.used += weight;
            }
        }
        Ok(state)
    }

    fn definition(
        &self,
        job: &Job,
        request: &JobRequest,
        task_id: &str,
        latest: &HashMap<String, String>,
    ) -> JobDefinition {
        let mut parts = shlex::split(&job.run_command).unwrap_or_default();
        let args = if parts.is_empty() {
            Vec::new()
        } else {
            parts.split_off(1)
        };
        let mut output_spec = BTreeMap::new();
        if let Some(levels) = job.output_spec.as_object() {
            for (level, names) in levels {
                if let Some(names) = names.as_object() {
                    for glob in names.values().filter_map(|g| g.as_str()) {
                        output_spec.insert(glob.to_owned(), level.clone());
                    }
                }
            }
        }
        let input_job_ids = job
            .requires_outputs_from
            .iter()
            .filter_map(|need| latest.get(need).map(|id| (need.clone(), id.clone())))
            .collect();
        JobDefinition {
            id: job.id.clone(),
            request_id: job.job_request_id.clone(),
            task_id: task_id.to_owned(),
            workspace: job.workspace.clone(),
            action: job.action.clone(),
            repo_url: request.repo_url.clone(),
            branch: request.branch.clone(),
            commit: request.commit.clone(),
            image: job.image.clone(),
            args,
            env: BTreeMap::from([("OPENSAFELY_BACKEND".to_owned(), job.backend.clone())]),
            inputs: Vec::new(),
            input_job_ids,
            output_spec,
            allow_database_access: job.requires_db,
            database_name: job.requires_db.then(|| "default".to_owned()),
            created_by: request.created_by.clone(),
            cpu_count: self.config.job_cpu_count,
            memory_limit: self.config.job_memory_limit,
            created_at: job.created_at.unix_timestamp(),
            level4_max_filesize: warden_pipeline::LEVEL4_MAX_FILESIZE,
            level4_max_csv_rows: warden_pipeline::LEVEL4_MAX_CSV_ROWS,
            level4_file_types: LEVEL4_FILE_TYPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The attempt number of a RUNJOB task id (`<job id>-NNN`).
fn attempt_of(task_id: &str) -> u32 {
    task_id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts() {
        assert_eq!(attempt_of("abcdefghijklmnop-003"), 3);
        assert_eq!(attempt_of("weird"), 1);
    }
}
