//! # warden-executor
//!
//! Runs one job of a research pipeline and files what it produced.
//!
//! A job goes through four steps, each a method of the [`Executor`] trait:
//!
//! 1. **prepare** — make the job's working directory
//!    (`<volumes_dir>/<job id>`): copy the code tree in (without `.git`,
//!    `metadata/` and every declared output pattern; symlinks stay symlinks and
//!    are never followed), copy the input files (outputs of the job's `needs`)
//!    from the high-privacy workspace, and write the `.opensafely-timestamp`
//!    marker **last**.
//! 2. **execute** — start the container `os-job-<job id>` from a local image
//!    (never pulled), with no network, CPU, memory and process limits, all capabilities
//!    dropped, `no-new-privileges`, the caller's `uid:gid`, `HOME=/tmp`, and the
//!    working directory bind-mounted at `/workspace`. It runs detached.
//! 3. **finalize** — once the container has exited: match the declared output
//!    globs (`*` only) against regular files in the working directory (symlinks,
//!    directories and special files are never outputs), copy outputs to the
//!    high-privacy workspace atomically, run the moderately_sensitive (level 4)
//!    checks and copy what passes to the medium-privacy store, update
//!    `metadata/manifest.json`, write the log (container output plus a summary)
//!    and finally the job's `metadata.json`.
//! 4. **cleanup** — remove the container and the working directory.
//!
//! plus **cancel** (kill a running container and finalize as cancelled),
//! **status**, **wait** and **logs** (read or follow the job's output).
//!
//! ## State model
//!
//! The executor keeps no state of its own: every call derives the job's
//! [`ExecutorState`] from the world, so a restarted process (or another
//! executor instance) carries on where the last one stopped:
//!
//! | what exists | state |
//! |---|---|
//! | `metadata.json` in the job's log directory, with an error | `error` |
//! | `metadata.json` in the job's log directory | `finalized` |
//! | container `os-job-<id>`, running | `executing` |
//! | container `os-job-<id>`, exited | `executed` |
//! | container created but never started, or the working directory with its timestamp marker | `prepared` |
//! | none of these (a half-prepared directory counts as nothing) | `unknown` |
//!
//! Every operation is idempotent: calling it again in the state it leads to
//! returns the same answer without redoing work, and each writes the fact
//! that moves the state forward last (the marker, the container start, the
//! metadata file), so a crash at any point leaves a state from which the same
//! call simply runs again.
//!
//! [`DockerExecutor`] talks to the Docker Engine API (through `bollard`); the
//! trait admits other engines.
//!
//! Every write into a study, a working directory or a store goes through
//! [`beneath`], which never follows a symbolic link in any path component.
//! Job logs keep the head and tail of a container's output within the caps
//! of [`logcap`].
//!
//! Results with file names ([`JobResults`]) stay on the backend;
//! [`JobResults::redacted`] gives the form that may be sent off it.

pub mod beneath;
mod docker;
pub mod driver;
mod error;
mod fsops;
pub mod glob;
pub mod level4;
pub mod logcap;
mod outputs;
mod record;
mod types;
mod util;

use futures_util::stream::BoxStream;

pub use docker::DockerExecutor;
pub use error::{ExecutorError, Result};
pub use record::{
    JobMetadata, LOG_FILE, LOG_SUMMARY_MARKER, METADATA_FILE, REDACTED, SAFE_ENV_VARS,
    container_part_of_log,
};
pub use types::{
    DEFAULT_CPU_COUNT, DEFAULT_LEVEL4_FILE_TYPES, DEFAULT_LEVEL4_MAX_CSV_ROWS,
    DEFAULT_LEVEL4_MAX_FILESIZE, DEFAULT_MEMORY_LIMIT, DEFAULT_PIDS_LIMIT, ExecutorConfig,
    ExecutorState, Finalize, JobDefinition, JobResults, JobStatus, Level4Limits, LogLine,
    LogStream, Outcome, PrivacyLevel, RedactedResults, TIMESTAMP_FILE,
};

/// Runs jobs. Implementations must be idempotent in every method and derive
/// state from the world (see the crate documentation).
///
/// Usable as `Arc<dyn Executor>`.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// Name of the engine (e.g. `docker`).
    fn engine(&self) -> &'static str;

    /// The job's state, derived from the world.
    async fn status(&self, job: &JobDefinition) -> Result<JobStatus>;

    /// Make the job's working directory. In any state but `unknown` this does
    /// nothing and returns the status.
    async fn prepare(&self, job: &JobDefinition) -> Result<JobStatus>;

    /// Start the job. Needs `prepared`; in later states it does nothing and
    /// returns the status; in `unknown` it is an error.
    async fn execute(&self, job: &JobDefinition) -> Result<JobStatus>;

    /// Wait until the job is no longer `executing`, then return its status.
    async fn wait(&self, job: &JobDefinition) -> Result<JobStatus>;

    /// Record the job's results. [`Finalize::Completed`] needs `executed`;
    /// [`Finalize::Cancelled`] and [`Finalize::Error`] work from any state (a
    /// running container is killed first). A job already finalized returns
    /// its stored results.
    async fn finalize(&self, job: &JobDefinition, how: Finalize) -> Result<JobResults>;

    /// Cancel the job: kill its container if running, then finalize as
    /// cancelled. A finalized job is left as it is and its results returned.
    /// Does not clean up.
    async fn cancel(&self, job: &JobDefinition) -> Result<JobResults>;

    /// Remove the job's container and working directory. Never fails:
    /// problems are logged. Logs and metadata are kept.
    async fn cleanup(&self, job: &JobDefinition);

    /// The stored results of a finalized job, if any.
    async fn results(&self, job: &JobDefinition) -> Result<Option<JobResults>>;

    /// Whether `image` is available to run without pulling. Engines that
    /// cannot tell say yes, and `execute` reports a missing image.
    async fn image_available(&self, image: &str) -> Result<bool> {
        let _ = image;
        Ok(true)
    }

    /// Ids of the jobs this engine holds something of (a container labelled
    /// with the job, or a working directory), whatever their state: after a
    /// crash (`kill -9`) of the process that drove them, the caller reaps
    /// those its records say are no longer running with [`Executor::reap`].
    async fn leftover_jobs(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Remove the container (killed if running) and working directory of
    /// job `job_id`, knowing only its id. Never fails: problems are logged.
    async fn reap(&self, job_id: &str) {
        let _ = job_id;
    }

    /// The job's output lines: from the container while it exists (following
    /// new output if `follow`), else from the stored log.
    fn logs(&self, job: &JobDefinition, follow: bool) -> BoxStream<'static, Result<LogLine>>;
}
