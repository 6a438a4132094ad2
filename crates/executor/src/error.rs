//! Typed errors of the executor. Each message names the job, file, image or
//! container involved, so it can be shown to a person as it is.

use std::path::PathBuf;

use warden_pipeline::escape::{escape_name, escape_path};

use crate::types::ExecutorState;

/// Everything that can go wrong while the executor works on a job.
///
/// These are failures of the *executor* (the platform), not of the job: a job
/// that exits non-zero or misses its outputs is a normal [`crate::JobResults`].
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The Docker daemon could not be reached at all.
    #[error("cannot reach the Docker daemon: {reason}")]
    DockerUnavailable {
        /// What the client said.
        reason: String,
    },

    /// A Docker API call failed.
    #[error("Docker {operation} failed for {object}: {source}")]
    Docker {
        /// What we asked Docker to do (e.g. "create container").
        operation: &'static str,
        /// The container or image name.
        object: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },

    /// A Docker API call did not answer in time.
    #[error("Docker timed out after {seconds}s during {operation} of {object}")]
    DockerTimeout {
        /// What we asked Docker to do.
        operation: &'static str,
        /// The container or image name.
        object: String,
        /// The time limit.
        seconds: u64,
    },

    /// The job's image is not present locally; images are never pulled implicitly.
    #[error(
        "Docker image {image} is not currently available on this machine; images are never pulled \
         during a job: build it (scripts/build-images.sh) or pull it (`docker pull {image}`) first"
    )]
    ImageNotFound {
        /// Full image reference.
        image: String,
    },

    /// An input file (an output of one of the job's `needs`) is missing from the
    /// high-privacy workspace.
    #[error(
        "The file {} doesn't exist in workspace {} as requested for job {job_id}",
        escape_name(file),
        escape_name(workspace)
    )]
    MissingInput {
        /// Relative path of the input.
        file: String,
        /// Workspace name.
        workspace: String,
        /// Job id.
        job_id: String,
    },

    /// An input file exists but is not a regular file (a symlink, directory, fifo…).
    #[error(
        "The file {} in workspace {} requested for job {job_id} is not a regular file ({kind})",
        escape_name(file),
        escape_name(workspace)
    )]
    InputNotRegularFile {
        /// Relative path of the input.
        file: String,
        /// Workspace name.
        workspace: String,
        /// Job id.
        job_id: String,
        /// What it is instead.
        kind: &'static str,
    },

    /// The code directory to copy into the job does not exist or is not a directory.
    #[error(
        "code directory {} for job {job_id} does not exist or is not a directory",
        escape_path(path)
    )]
    CodeDirMissing {
        /// The path given in the job definition.
        path: PathBuf,
        /// Job id.
        job_id: String,
    },

    /// The job definition is unusable (unsafe names, bad paths, bad limits).
    #[error("invalid job definition for job {job_id}: {reason}")]
    InvalidJob {
        /// Job id (as given).
        job_id: String,
        /// What is wrong.
        reason: String,
    },

    /// The operation does not apply to the job's current state.
    #[error("cannot {operation} job {job_id}: it is {state}")]
    InvalidState {
        /// What was asked.
        operation: &'static str,
        /// Job id.
        job_id: String,
        /// The state the job is in.
        state: ExecutorState,
    },

    /// A filesystem operation failed.
    #[error("{operation} {}: {source}", escape_path(path))]
    Io {
        /// What we were doing (e.g. "copying output").
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A write (or read) would have gone through a symbolic link: a path
    /// component in a study, job or store is a link (or a file) where a
    /// directory was needed. Writes never follow links.
    #[error(
        "refusing to write {}: {} is {what} where a directory was needed, and warden \
         never writes through a link; replace it with a real directory (or remove it) and run again",
        escape_path(path),
        escape_path(component)
    )]
    LinkInPath {
        /// What was being written (or read).
        path: PathBuf,
        /// The offending component, relative to the tree written into.
        component: PathBuf,
        /// What the component is (`a symbolic link`, `a file`, …).
        what: &'static str,
    },

    /// A job's working directory could not be walked within the limits. The
    /// message names no file: the names are the job's.
    #[error("cannot collect the outputs of job {job_id}: its working directory {reason}")]
    JobTree {
        /// Job id.
        job_id: String,
        /// What went wrong, without names.
        reason: String,
    },

    /// Files matching the job's output patterns have names that are not
    /// valid UTF-8, so they cannot be recorded exactly (and two of them could
    /// collapse into one name). The message gives their number only; the
    /// escaped names are in `names`, for a person on the same machine.
    #[error(
        "job {job_id} produced {count} output file(s) whose names are not valid UTF-8, so they \
         cannot be recorded exactly; rename them (e.g. to ASCII names) in the action"
    )]
    UnusableOutputNames {
        /// Job id.
        job_id: String,
        /// How many.
        count: usize,
        /// The names, escaped (never the raw bytes): not in the message.
        names: Vec<String>,
    },

    /// A JSON file we own (metadata, manifest) could not be read or written.
    #[error("{operation} {}: {source}", escape_path(path))]
    Json {
        /// What we were doing.
        operation: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// A background task panicked or was cancelled.
    #[error("internal task for job {job_id} failed: {reason}")]
    Task {
        /// Job id.
        job_id: String,
        /// What happened.
        reason: String,
    },
}

impl ExecutorError {
    /// True when trying the same operation again later may succeed (Docker
    /// unreachable, time-outs, I/O hiccups); false for problems that need a
    /// person (missing image or input, bad definition, wrong state).
    pub fn is_transient(&self) -> bool {
        match self {
            ExecutorError::DockerUnavailable { .. }
            | ExecutorError::DockerTimeout { .. }
            | ExecutorError::Io { .. }
            | ExecutorError::Task { .. } => true,
            ExecutorError::Docker { source, .. } => !matches!(
                source,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 400..=499,
                    ..
                }
            ),
            ExecutorError::ImageNotFound { .. }
            | ExecutorError::MissingInput { .. }
            | ExecutorError::InputNotRegularFile { .. }
            | ExecutorError::CodeDirMissing { .. }
            | ExecutorError::InvalidJob { .. }
            | ExecutorError::InvalidState { .. }
            | ExecutorError::LinkInPath { .. }
            | ExecutorError::JobTree { .. }
            | ExecutorError::UnusableOutputNames { .. }
            | ExecutorError::Json { .. } => false,
        }
    }

    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| match crate::beneath::link_refused(&source) {
            Some(refused) => ExecutorError::LinkInPath {
                path,
                component: refused.component.clone(),
                what: refused.what,
            },
            None => ExecutorError::Io {
                operation,
                path,
                source,
            },
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ExecutorError> = std::result::Result<T, E>;
