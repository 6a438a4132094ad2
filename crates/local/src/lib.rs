//! Local runs: what `warden run` does in a study folder.
//!
//! A local run is a job request against a workspace that lives on the
//! researcher's machine: the study directory itself is the high-privacy
//! workspace, job history lives in `<study>/metadata/db.sqlite` (the same
//! [`warden_state::Store`] a server uses), jobs are planned by the same
//! [`warden_planner::plan`] a server uses, and each job runs through the same
//! [`warden_executor::Executor`] an agent uses — on dummy data
//! (`OPENSAFELY_BACKEND=expectations`), with no network.
//!
//! [`run`] does it all:
//!
//! 1. loads and validates `project.yaml`;
//! 2. takes the study's run lock (two runs in one folder would trample each
//!    other's outputs), opens the history and marks any job a killed earlier run
//!    left pending or running as failed (it can never finish);
//! 3. plans, against the history: named actions always run; a dependency runs
//!    when it never ran, last failed, has an output missing on disk, or is forced;
//! 4. runs the new jobs, independent ones concurrently (up to `concurrency`),
//!    each once its dependencies succeeded; a failed dependency fails its
//!    dependants with `dependency_failed`; without `continue_on_error` nothing new
//!    starts after the first failure (running jobs finish; the rest are recorded
//!    as not started);
//! 5. on cancellation (Ctrl-C), kills running containers, cleans up, and records
//!    every unfinished job as cancelled.
//!
//! Every job ends in a true, final state in the history: nothing is left
//! pending or running.
//!
//! Progress is reported as [`Event`]s on a channel, so the caller decides how to
//! show it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warden_executor::beneath::Tree;
use warden_executor::driver::{DriveEvents, Driven, Stage, drive};
use warden_executor::{
    Executor, ExecutorError, JobDefinition, JobResults, LogLine, Outcome as ExecOutcome,
};
use warden_pipeline::escape::{escape_name, escape_path};
use warden_pipeline::{Pipeline, Report};
use warden_planner::{JobRequest as PlanRequest, JobState, Plan, PriorJob};
use warden_state::{Job, JobRequestStatus, JobUpdate, NewJob, NewJobRequest, Store};

pub use warden_planner::PlanError;
pub use warden_state::StatusCode;

/// The backend name local runs record.
pub const LOCAL_BACKEND: &str = "local";

/// The default image prefix.
pub const DEFAULT_IMAGE_PREFIX: &str = "ghcr.io/opensafely-core";

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The study directory (holding `project.yaml`).
    pub project_dir: PathBuf,
    /// Requested actions (or `run_all`).
    pub actions: Vec<String>,
    /// Re-run dependencies even when their outputs exist.
    pub force_run_dependencies: bool,
    /// Keep going after a job fails (independent branches go on).
    pub continue_on_error: bool,
    /// How many jobs may run at once.
    pub concurrency: usize,
    /// CPUs per job.
    pub cpu_count: f64,
    /// Memory limit per job, bytes.
    pub memory_limit: u64,
    /// Most processes and threads per job.
    pub pids_limit: u64,
    /// Image name prefix (`ghcr.io/opensafely-core`).
    pub image_prefix: String,
    /// Who is running (recorded in the history).
    pub created_by: String,
}

/// Progress of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Something the researcher should know before anything runs.
    Warning(String),
    /// The jobs that will run, in plan order (dependencies first).
    Planned {
        /// The job request id.
        request_id: String,
        /// Actions with a new job.
        actions: Vec<String>,
    },
    /// A job's status changed.
    Status {
        /// The action.
        action: String,
        /// What is happening, in words.
        message: String,
    },
    /// A line of a running job's output.
    Log {
        /// The action.
        action: String,
        /// The line, without its newline.
        line: String,
    },
}

/// How one job ended.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// The action.
    pub action: String,
    /// The job id.
    pub job_id: String,
    /// The final status code.
    pub code: StatusCode,
    /// The final status message.
    pub message: String,
    /// The executor's results, when the job ran.
    pub results: Option<JobResults>,
    /// `metadata/<action>.log`, when it was written.
    pub log_path: Option<PathBuf>,
}

impl JobSummary {
    /// Whether the job succeeded.
    pub fn succeeded(&self) -> bool {
        self.code == StatusCode::Succeeded
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Nothing needed to run; the lines say why, as the reference says it.
    NothingToDo(Vec<String>),
    /// Jobs ran.
    Ran {
        /// The job request id.
        request_id: String,
        /// Every job of the request, in plan order.
        jobs: Vec<JobSummary>,
        /// The run was cancelled (Ctrl-C).
        cancelled: bool,
    },
}

impl Outcome {
    /// Whether every job succeeded (or nothing needed to run).
    pub fn all_succeeded(&self) -> bool {
        match self {
            Outcome::NothingToDo(_) => true,
            Outcome::Ran {
                jobs, cancelled, ..
            } => !cancelled && jobs.iter().all(JobSummary::succeeded),
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No `project.yaml` in the directory.
    #[error("No project.yaml file found in {}", escape_path(.0))]
    NoProject(PathBuf),
    /// The project file or directory could not be read.
    #[error("cannot read `{}`", escape_path(path))]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `project.yaml` is not a regular file, or is too large.
    #[error(transparent)]
    Unreadable(warden_pipeline::ReadError),
    /// `project.yaml` is invalid.
    #[error("{} is invalid", escape_path(path))]
    InvalidProject {
        /// The file.
        path: PathBuf,
        /// Its text, for rendering the report.
        text: String,
        /// What is wrong.
        report: Box<Report>,
    },
    /// Planning failed (unknown action, no action, cycle).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Another run holds the study's lock.
    #[error("another `warden run` is already running in `{}`; wait for it to finish", escape_path(.0))]
    Busy(PathBuf),
    /// The history database failed.
    #[error("the job history in metadata/db.sqlite failed")]
    Store(#[from] warden_state::Error),
    /// The history database is not a readable SQLite database.
    #[error(
        "the job history {} is corrupt ({reason}); move it aside (`mv {} {}.corrupt`) and run \
         again: warden starts a new history, outputs on disk are kept, and actions whose history \
         is lost run again when needed",
        escape_path(path),
        escape_path(path),
        escape_path(path)
    )]
    CorruptHistory {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// Images the jobs need are not available (warden never pulls during a run).
    #[error(
        "{} not available locally: {}\nbuild the local images with `scripts/build-images.sh`, or `docker pull` them where a registry is reachable",
        if .0.len() == 1 { "this image is" } else { "these images are" },
        .0.join(", ")
    )]
    MissingImages(Vec<String>),
    /// The container engine failed before any job started.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
}

/// The first shell word of a run command (its image).
fn first_word(command: &str) -> String {
    warden_pipeline::python::shlex_split(command)
        .ok()
        .and_then(|p| p.into_iter().next())
        .unwrap_or_default()
}

/// `<prefix>/<name>:<tag>`.
fn full_image(prefix: &str, image: String) -> String {
    format!("{}/{}", prefix.trim_end_matches('/'), image)
}

/// Shared by the jobs of one run.
struct Ctx {
    opts: RunOptions,
    dir: PathBuf,
    workspace: String,
    request_id: String,
    store: Store,
    executor: Arc<dyn Executor>,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
    pipeline: Pipeline,
    exclude: Vec<String>,
}

impl Ctx {
    fn status(&self, action: &str, message: impl Into<String>) {
        let _ = self.events.send(Event::Status {
            action: action.to_string(),
            message: message.into(),
        });
    }

    async fn set(&self, job: &Job, code: StatusCode, message: &str) {
        self.record(JobUpdate::code(&job.id, code, message)).await;
    }

    async fn record(&self, update: JobUpdate) {
        let id = update.job_id.clone();
        if let Err(e) = self.store.update_job(update).await {
            tracing::warn!(job = %id, error = %e, "could not record a job's status");
        }
    }
}

/// Loads `project.yaml` from a study directory.
pub fn load_project(dir: &Path) -> Result<(Pipeline, String), RunError> {
    let path = dir.join("project.yaml");
    let bytes = match warden_pipeline::read_project_file(&path) {
        Ok(bytes) => bytes,
        Err(warden_pipeline::ReadError::NotFound { .. }) => {
            return Err(RunError::NoProject(dir.to_path_buf()));
        }
        Err(e) => return Err(RunError::Unreadable(e)),
    };
    let text = String::from_utf8(bytes).map_err(|e| RunError::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    match warden_pipeline::load(&text) {
        Ok(p) => Ok((p, text)),
        Err(report) => Err(RunError::InvalidProject { path, text, report }),
    }
}

/// Checks the requested action names against the pipeline (and that what they
/// need can be ordered), so that a typo is reported at once: before Docker is
/// reached or the history opened. [`run`] plans with the same rules.
pub fn check_request(pipeline: &Pipeline, actions: &[String]) -> Result<(), PlanError> {
    warden_planner::Graph::new(pipeline)
        .closure(actions)
        .map(|_| ())
}

/// The final status text of a job that ran, as the researcher sees it locally.
///
/// The executor's [`JobResults::user_message`] is the text a backend may send
/// off the backend, so it names no file: for unmatched patterns it only says
/// "See job log for details". Locally the study is the researcher's own, so
/// name the patterns that matched nothing, as `opensafely run` does.
pub fn local_message(results: &JobResults) -> String {
    match results.outcome() {
        ExecOutcome::UnmatchedPatterns if !results.unmatched_patterns.is_empty() => {
            let mut message = "No outputs found matching patterns:".to_string();
            for pattern in &results.unmatched_patterns {
                message.push_str("\n - ");
                message.push_str(&escape_name(pattern));
            }
            message
        }
        _ => results.user_message(),
    }
}

/// Runs a local job request; see the crate documentation.
pub async fn run(
    opts: RunOptions,
    executor: Arc<dyn Executor>,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<Outcome, RunError> {
    let dir = std::path::absolute(&opts.project_dir).map_err(|source| RunError::Io {
        path: opts.project_dir.clone(),
        source,
    })?;
    let (pipeline, text) = load_project(&dir)?;
    let metadata = dir.join("metadata");
    // `metadata/` is reached without following a link: a study committing
    // `metadata -> /elsewhere` must not have its history written there.
    let metadata_tree = Tree::open(&dir)
        .and_then(|study| study.subtree(Path::new("metadata"), true))
        .map_err(|source| RunError::Io {
            path: metadata.clone(),
            source,
        })?;
    let lock_path = metadata.join(".run.lock");
    let lock = rustix::fs::openat(
        metadata_tree.fd(),
        ".run.lock",
        OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map(std::fs::File::from)
    .map_err(|e| RunError::Io {
        path: lock_path.clone(),
        source: e.into(),
    })?;
    if lock.try_lock().is_err() {
        return Err(RunError::Busy(dir));
    }
    let db = metadata.join("db.sqlite");
    let store = Store::open_sqlite(&db)
        .await
        .map_err(|e| corrupt_or(e, &db))?;
    store
        .fail_interrupted_jobs(None, warden_state::INTERRUPTED_MESSAGE)
        .await
        .map_err(|e| corrupt_or(e, &db))?;
    reap_leftovers(&store, executor.as_ref()).await;

    let workspace = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workspace".into());
    let mut request = NewJobRequest::new(&workspace, LOCAL_BACKEND, "", opts.actions.clone());
    request.repo_url = dir.display().to_string();
    request.force_run_dependencies = opts.force_run_dependencies;
    request.project_definition = text;
    request.created_by = opts.created_by.clone();

    // Every image the new jobs need must be here before any job is created: a
    // missing one found after an hour of other jobs would waste the hour.
    {
        let latest = store.latest_jobs(&workspace, Some(LOCAL_BACKEND)).await?;
        let mut dry_request = request.clone();
        let mut dry_nothing = None;
        let jobs = plan_jobs(
            &pipeline,
            &dir,
            &mut dry_request,
            &latest,
            &opts.actions,
            opts.force_run_dependencies,
            &mut dry_nothing,
        )?;
        let images: std::collections::BTreeSet<String> = jobs
            .iter()
            .map(|j| full_image(&opts.image_prefix, first_word(&j.run_command)))
            .collect();
        let mut missing = Vec::new();
        for image in images {
            if !executor.image_available(&image).await? {
                missing.push(image);
            }
        }
        if !missing.is_empty() {
            return Err(RunError::MissingImages(missing));
        }
    }

    let mut nothing: Option<Vec<String>> = None;
    let planned = {
        let pipeline = &pipeline;
        let dir = &dir;
        let nothing = &mut nothing;
        let force = opts.force_run_dependencies;
        let actions = opts.actions.clone();
        store
            .create_job_request_planned(request, move |req, state| {
                plan_jobs(pipeline, dir, req, state, &actions, force, nothing)
            })
            .await?
    };
    let created = planned?;
    if let Some(lines) = nothing {
        return Ok(Outcome::NothingToDo(lines));
    }
    let request_id = created.request.id.clone();
    let _ = events.send(Event::Planned {
        request_id: request_id.clone(),
        actions: created.jobs.iter().map(|j| j.action.clone()).collect(),
    });
    let exclude: Vec<String> = pipeline
        .actions
        .values()
        .flat_map(|a| a.outputs.patterns().map(|(_, p)| p.to_string()))
        .collect();
    let ctx = Arc::new(Ctx {
        opts,
        dir,
        workspace,
        request_id: request_id.clone(),
        store,
        executor,
        events,
        cancel,
        pipeline,
        exclude,
    });
    let (jobs, cancelled) = schedule(&ctx, created.jobs).await;
    drop(lock);
    Ok(Outcome::Ran {
        request_id,
        jobs,
        cancelled,
    })
}

/// SQLite's "not a database" and "malformed" errors as
/// [`RunError::CorruptHistory`]; anything else as it is.
fn corrupt_or(error: warden_state::Error, db: &Path) -> RunError {
    let reason = match &error {
        warden_state::Error::Database(e) => e.as_database_error().and_then(|d| {
            let code = d.code();
            let corrupt = matches!(code.as_deref(), Some("11" | "26"))
                || d.message().contains("not a database")
                || d.message().contains("malformed");
            corrupt.then(|| d.message().to_string())
        }),
        warden_state::Error::Migration { message, .. }
            if message.contains("not a database") || message.contains("malformed") =>
        {
            Some(message.clone())
        }
        _ => None,
    };
    match reason {
        Some(reason) => RunError::CorruptHistory {
            path: db.to_path_buf(),
            reason,
        },
        None => RunError::Store(error),
    }
}

/// Removes what a killed earlier run (`kill -9`) left in Docker and in
/// `metadata/volumes`: containers and working directories of jobs of this
/// study that the history says are no longer running (jobs of other studies
/// on the same machine are not in this history, and are left alone). Runs
/// under the study's lock, after interrupted jobs were recorded as failed.
async fn reap_leftovers(store: &Store, executor: &dyn Executor) {
    let ids = match executor.leftover_jobs().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for containers left by an earlier run");
            return;
        }
    };
    for id in ids {
        match store.get_job(&id).await {
            Ok(Some(job)) if job.state.is_final() => {
                tracing::info!(job = %id, "removing what an earlier run left behind");
                executor.reap(&id).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %id, error = %e, "could not look up a leftover job"),
        }
    }
}

/// Plans against the workspace state; the closure run inside the store's
/// per-workspace transaction.
fn plan_jobs(
    pipeline: &Pipeline,
    dir: &Path,
    req: &mut NewJobRequest,
    state: &[Job],
    actions: &[String],
    force: bool,
    nothing: &mut Option<Vec<String>>,
) -> Result<Vec<NewJob>, PlanError> {
    let mut history: HashMap<String, PriorJob> = HashMap::new();
    for job in state {
        let Some(state) = JobState::parse(job.state.as_str()) else {
            continue;
        };
        let mut prior = PriorJob::new(job.id.clone(), state);
        let missing = job
            .outputs
            .as_ref()
            .is_some_and(|outs| outs.keys().any(|p| !dir.join(p).is_file()));
        if missing {
            prior = prior.with_outputs_missing();
        }
        history.insert(job.action.clone(), prior);
    }
    let request = PlanRequest::new(req.id.clone(), actions.iter().cloned())
        .with_force_run_dependencies(force)
        .with_dummy_data(true);
    match warden_planner::plan(pipeline, &request, &history)? {
        Plan::NothingToDo(n) => {
            req.status = JobRequestStatus::NothingToDo;
            req.status_message = n.message().to_string();
            *nothing = Some(n.local_run_lines().iter().map(|s| s.to_string()).collect());
            Ok(Vec::new())
        }
        plan => Ok(plan
            .into_jobs()
            .into_iter()
            .map(|j| NewJob {
                action: j.action.to_string(),
                run_command: j.run_command.clone(),
                image: j.image.to_string(),
                output_spec: j.output_spec.to_json(),
                requires_outputs_from: j.requires_outputs_from.to_vec(),
                wait_for_job_ids: j.wait_for_job_ids.clone(),
                requires_db: j.requires_db,
            })
            .collect()),
    }
}

/// Where a job stands in this run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Running,
    Succeeded,
    Failed,
}

/// Runs the jobs: each once what it waits for succeeded, up to `concurrency`
/// at a time. Returns summaries in plan order and whether the run was cancelled.
async fn schedule(ctx: &Arc<Ctx>, jobs: Vec<Job>) -> (Vec<JobSummary>, bool) {
    let ids: HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut slots: HashMap<String, Slot> =
        jobs.iter().map(|j| (j.id.clone(), Slot::Waiting)).collect();
    let mut summaries: HashMap<String, JobSummary> = HashMap::new();
    let mut running: JoinSet<JobSummary> = JoinSet::new();
    let concurrency = ctx.opts.concurrency.max(1);
    let mut stopping = false;
    let mut cancelled = false;
    loop {
        // Decide what every waiting job does now, in plan order.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for job in &jobs {
                if slots[&job.id] != Slot::Waiting {
                    continue;
                }
                let waits: Vec<Slot> = job
                    .wait_for_job_ids
                    .iter()
                    .filter(|w| ids.contains(*w))
                    .map(|w| slots[w])
                    .collect();
                if waits.contains(&Slot::Failed) {
                    let msg = "Not starting as dependency failed";
                    ctx.set(job, StatusCode::DependencyFailed, msg).await;
                    ctx.status(&job.action, msg);
                    slots.insert(job.id.clone(), Slot::Failed);
                    summaries.insert(
                        job.id.clone(),
                        summary(job, StatusCode::DependencyFailed, msg, None, None),
                    );
                    progressed = true;
                    continue;
                }
                if stopping || cancelled {
                    let (code, msg) = if cancelled {
                        (
                            StatusCode::CancelledByUser,
                            "Cancelled by user before it started",
                        )
                    } else {
                        (
                            StatusCode::CancelledByUser,
                            "Not started: the run stopped after a job failed (use --continue-on-error to keep going)",
                        )
                    };
                    let _ = ctx.store.cancel_job(&job.id).await;
                    ctx.set(job, code, msg).await;
                    ctx.status(&job.action, msg);
                    slots.insert(job.id.clone(), Slot::Failed);
                    summaries.insert(job.id.clone(), summary(job, code, msg, None, None));
                    progressed = true;
                    continue;
                }
                if waits.iter().all(|s| *s == Slot::Succeeded) && running.len() < concurrency {
                    slots.insert(job.id.clone(), Slot::Running);
                    let ctx = Arc::clone(ctx);
                    let job = job.clone();
                    running.spawn(async move { run_job(ctx, job).await });
                    progressed = true;
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = running.join_next() => {
                let Some(done) = done else { continue };
                match done {
                    Ok(s) => {
                        let ok = s.succeeded();
                        slots.insert(s.job_id.clone(), if ok { Slot::Succeeded } else { Slot::Failed });
                        if !ok && !ctx.opts.continue_on_error {
                            stopping = true;
                        }
                        summaries.insert(s.job_id.clone(), s);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a job task panicked");
                        stopping = true;
                    }
                }
            }
            () = ctx.cancel.cancelled(), if !cancelled => {
                // Running jobs see the same token and cancel themselves.
                cancelled = true;
            }
        }
    }
    if ctx.cancel.is_cancelled() {
        cancelled = true;
    }
    // A job whose task panicked has no summary: record the truth.
    for job in &jobs {
        if !summaries.contains_key(&job.id) {
            let msg = "Internal error: the job's runner stopped unexpectedly";
            ctx.set(job, StatusCode::InternalError, msg).await;
            summaries.insert(
                job.id.clone(),
                summary(job, StatusCode::InternalError, msg, None, None),
            );
        }
    }
    let ordered = jobs
        .iter()
        .filter_map(|j| summaries.remove(&j.id))
        .collect();
    (ordered, cancelled)
}

fn summary(
    job: &Job,
    code: StatusCode,
    message: &str,
    results: Option<JobResults>,
    log: Option<PathBuf>,
) -> JobSummary {
    JobSummary {
        action: job.action.clone(),
        job_id: job.id.clone(),
        code,
        message: message.to_string(),
        results,
        log_path: log,
    }
}

/// The executor's job definition for a planned job.
async fn definition(ctx: &Ctx, job: &Job) -> Result<JobDefinition, String> {
    let parts = warden_pipeline::python::shlex_split(&job.run_command)
        .map_err(|e| format!("cannot split the run command `{}`: {e:?}", job.run_command))?;
    let image = parts.first().cloned().unwrap_or_default();
    let mut def = JobDefinition::new(
        &job.id,
        &ctx.request_id,
        &ctx.workspace,
        &job.action,
        full_image(&ctx.opts.image_prefix, image),
        &ctx.dir,
    );
    def.args = parts.into_iter().skip(1).collect();
    def.env
        .insert("OPENSAFELY_BACKEND".into(), "expectations".into());
    def.code_exclude = ctx.exclude.clone();
    def.cpu_count = ctx.opts.cpu_count;
    def.memory_limit = ctx.opts.memory_limit;
    def.pids_limit = ctx.opts.pids_limit;
    def.created_by = Some(ctx.opts.created_by.clone());
    def.repo_url = Some(ctx.dir.display().to_string());
    def.labels
        .insert("warden.request".into(), ctx.request_id.clone());
    if let Some(action) = ctx.pipeline.actions.get(&job.action) {
        for (level, entries) in action.outputs.levels() {
            for pattern in entries.values() {
                def.output_spec
                    .insert(pattern.clone(), executor_level(level));
            }
        }
    }
    // Inputs: every output recorded for the latest job of each action needed.
    let latest = ctx
        .store
        .latest_jobs(&ctx.workspace, Some(LOCAL_BACKEND))
        .await
        .map_err(|e| format!("cannot read the job history: {e}"))?;
    let by_action: HashMap<&str, &Job> = latest.iter().map(|j| (j.action.as_str(), j)).collect();
    let mut inputs = BTreeMap::new();
    for need in &job.requires_outputs_from {
        if let Some(outputs) = by_action
            .get(need.as_str())
            .and_then(|j| j.outputs.as_ref())
        {
            for path in outputs.keys() {
                inputs.insert(path.clone(), ());
            }
        }
    }
    def.inputs = inputs.into_keys().collect();
    Ok(def)
}

fn executor_level(level: warden_pipeline::PrivacyLevel) -> warden_executor::PrivacyLevel {
    match level {
        warden_pipeline::PrivacyLevel::HighlySensitive => {
            warden_executor::PrivacyLevel::HighlySensitive
        }
        warden_pipeline::PrivacyLevel::ModeratelySensitive => {
            warden_executor::PrivacyLevel::ModeratelySensitive
        }
        warden_pipeline::PrivacyLevel::MinimallySensitive => {
            warden_executor::PrivacyLevel::MinimallySensitive
        }
    }
}

/// What the driver's stages mean to a local run: a status change in the
/// history and a line for the researcher.
struct LocalEvents<'a> {
    ctx: &'a Ctx,
    job: &'a Job,
}

#[async_trait::async_trait]
impl DriveEvents for LocalEvents<'_> {
    async fn stage(&self, stage: Stage) {
        let (code, msg, shown) = match stage {
            Stage::Preparing => (
                StatusCode::Preparing,
                "Preparing your code and workspace files",
                true,
            ),
            Stage::Prepared => (StatusCode::Prepared, "Prepared and ready to run", true),
            Stage::Executing => (StatusCode::Executing, "Executing job on the backend", true),
            Stage::Executed => (
                StatusCode::Executed,
                "Job has finished executing and is waiting to be finalized",
                false,
            ),
            Stage::Finalizing => (StatusCode::Finalizing, "Recording job results", true),
        };
        self.ctx.set(self.job, code, msg).await;
        if shown {
            self.ctx.status(&self.job.action, msg);
        }
    }

    fn follow_logs(&self) -> bool {
        true
    }

    fn log(&self, line: LogLine) {
        let _ = self.ctx.events.send(Event::Log {
            action: self.job.action.clone(),
            line: line.text.trim_end_matches(['\n', '\r']).to_string(),
        });
    }
}

/// Runs one job through the executor's driver and records every step.
async fn run_job(ctx: Arc<Ctx>, job: Job) -> JobSummary {
    let events = LocalEvents {
        ctx: &ctx,
        job: &job,
    };
    let def = match definition(&ctx, &job).await {
        Ok(def) => def,
        Err(e) => {
            events.stage(Stage::Preparing).await;
            return fail(&ctx, &job, None, format!("Internal error: {e}")).await;
        }
    };
    let driven = drive(
        ctx.executor.as_ref(),
        &def,
        &ctx.cancel,
        &events,
        &failure_message,
    )
    .await;
    let results = match driven {
        Driven::Completed(results) => results,
        Driven::Failed { error, results } => {
            return fail(&ctx, &job, results, failure_message(&error)).await;
        }
        Driven::Cancelled(results) => return cancel(&ctx, &job, results).await,
    };
    let action = &job.action;
    let code = match results.outcome() {
        ExecOutcome::Succeeded => StatusCode::Succeeded,
        ExecOutcome::NonzeroExit => StatusCode::NonzeroExit,
        ExecOutcome::UnmatchedPatterns => StatusCode::UnmatchedPatterns,
        ExecOutcome::Cancelled => StatusCode::CancelledByUser,
        ExecOutcome::Error => StatusCode::InternalError,
    };
    let message = local_message(&results);
    let mut update = JobUpdate::code(&job.id, code, &message);
    update.outputs = Some(
        results
            .outputs
            .iter()
            .map(|(p, l)| (p.clone(), l.as_str().to_string()))
            .collect(),
    );
    ctx.record(update).await;
    ctx.status(action, &message);
    let log = ctx.dir.join("metadata").join(format!("{action}.log"));
    summary(
        &job,
        code,
        &message,
        Some(results),
        log.is_file().then_some(log),
    )
}

/// The text of an executor failure. Problems a person must fix (a missing
/// image, a missing input file) are shown as they are: they say what to do,
/// and calling them internal errors ("a platform issue rather than a problem
/// for users to fix") would send the researcher the wrong way. Anything else
/// is an internal error.
fn failure_message(error: &ExecutorError) -> String {
    match error {
        ExecutorError::ImageNotFound { .. }
        | ExecutorError::MissingInput { .. }
        | ExecutorError::InputNotRegularFile { .. }
        | ExecutorError::LinkInPath { .. }
        | ExecutorError::JobTree { .. } => error.to_string(),
        // Locally the study is the researcher's own: name the files (escaped).
        ExecutorError::UnusableOutputNames { names, .. } => {
            let mut message = error.to_string();
            message.push(':');
            for name in names {
                message.push_str("\n - ");
                message.push_str(name);
            }
            message
        }
        _ => format!("Internal error: {error}"),
    }
}

/// Records an executor failure as the job's final state (`internal_error`),
/// keeping the error's text: locally it is the researcher's to read. The
/// driver has recorded it in the job's metadata (`results`) and cleaned up.
async fn fail(ctx: &Ctx, job: &Job, results: Option<JobResults>, message: String) -> JobSummary {
    ctx.set(job, StatusCode::InternalError, &message).await;
    ctx.status(&job.action, &message);
    summary(job, StatusCode::InternalError, &message, results, None)
}

/// Records the job as cancelled (the driver killed its container, recorded
/// it and cleaned up).
async fn cancel(ctx: &Ctx, job: &Job, results: Option<JobResults>) -> JobSummary {
    let _ = ctx.store.cancel_job(&job.id).await;
    let msg = "Cancelled by user";
    ctx.set(job, StatusCode::CancelledByUser, msg).await;
    ctx.status(&job.action, msg);
    summary(job, StatusCode::CancelledByUser, msg, results, None)
}
