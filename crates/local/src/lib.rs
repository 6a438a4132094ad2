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
//! 1. takes `project.yaml` as [`load_project`] read and validated it (once:
//!    the caller checks the request against the same [`Project`]);
//! 2. takes the study's run lock (two runs in one folder would trample each
//!    other's outputs), opens the history and marks any job a killed earlier run
//!    left pending or running as failed (it can never finish);
//! 3. plans once, against the history read under the lock: named actions always run; a dependency runs
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
//!
//! Modules by concern: `project` (reading `project.yaml`), `plan` (planning
//! against the history), `history` (a corrupt database, reaping leftovers),
//! `schedule` (dependency order, concurrency, stopping), `job` (one job through
//! [`warden_executor::driver`], recorded step by step).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use warden_executor::beneath::Tree;
use warden_executor::{Executor, ExecutorError, JobResults};
use warden_pipeline::escape::escape_path;
use warden_pipeline::{Pipeline, Report};
use warden_state::{Job, JobUpdate, NewJobRequest, Store};

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

mod history;
mod job;
mod plan;
mod project;
mod schedule;

pub use job::local_message;
pub use project::{Project, check_request, load_project};

use history::{corrupt_or, reap_leftovers};
use plan::{first_word, full_image, plan_jobs};
use schedule::schedule;

/// Runs a local job request; see the crate documentation.
///
/// `project` is the study's `project.yaml` as [`load_project`] read it (the
/// caller has usually validated the request against it already: it is read
/// and parsed once).
pub async fn run(
    opts: RunOptions,
    project: Project,
    executor: Arc<dyn Executor>,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<Outcome, RunError> {
    let dir = std::path::absolute(&opts.project_dir).map_err(|source| RunError::Io {
        path: opts.project_dir.clone(),
        source,
    })?;
    let Project { pipeline, text } = project;
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

    // Plan once, against the history read under the study's lock (no other
    // run can write it meanwhile), then check every image the new jobs need
    // before any job is created: a missing one found after an hour of other
    // jobs would waste the hour.
    let latest = store.latest_jobs(&workspace, Some(LOCAL_BACKEND)).await?;
    let mut nothing: Option<Vec<String>> = None;
    let jobs = plan_jobs(
        &pipeline,
        &dir,
        &mut request,
        &latest,
        &opts.actions,
        opts.force_run_dependencies,
        &mut nothing,
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
    let planned = store
        .create_job_request_planned(request, move |_, _| Ok::<_, PlanError>(jobs))
        .await?;
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
