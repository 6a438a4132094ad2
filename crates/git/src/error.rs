//! Errors of this crate. Every repository in them is already redacted.

use std::path::PathBuf;
use std::time::Duration;

/// The result type of this crate.
pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// How a caller (an HTTP API, the CLI) should treat a [`GitError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The repository, branch, commit or file asked for does not exist (a 4xx).
    NotFound,
    /// The request was malformed: a URL, branch name or path that cannot be valid (400).
    InvalidInput,
    /// Git failed, timed out or could not be run; the request may be fine (a 5xx).
    Failed,
}

/// An error from git, naming the repository (redacted), branch and commit involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The repository location cannot be used (relative path, bad scheme, …).
    #[error("Invalid repository location {repo}: {reason}")]
    InvalidRepo { repo: String, reason: String },

    /// Git reported that there is no repository at that location (or no access to it).
    #[error("Could not find a git repository at {repo}: {detail}")]
    RepoNotFound { repo: String, detail: String },

    /// An empty branch name (the reference's message).
    #[error("A branch name must be supplied")]
    BranchRequired { repo: String },

    /// `refs/heads/<branch>` does not exist (the reference's exact message).
    #[error("Could not find branch '{branch}'")]
    BranchNotFound { repo: String, branch: String },

    /// The commit is unknown or not reachable from the branch head (the reference's
    /// exact message; `commit` is as the caller gave it).
    #[error("Could not find commit on branch '{branch}': {commit}")]
    CommitNotOnBranch {
        repo: String,
        branch: String,
        commit: String,
    },

    /// The commit (as the caller gave it) is not in the repository.
    #[error("Could not find commit {commit} in {repo}")]
    CommitNotFound { repo: String, commit: String },

    /// A path inside a commit that cannot be valid (absolute, `..`, empty).
    #[error("Invalid path '{path}' in {repo}: {reason}")]
    InvalidPath {
        repo: String,
        path: String,
        reason: String,
    },

    /// The path exists at the commit but is a directory, symlink or submodule.
    #[error("'{path}' at commit {commit} in {repo} is not a regular file")]
    NotAFile {
        repo: String,
        commit: String,
        path: String,
    },

    /// The file at the path is larger than the caller's limit; it was not read.
    #[error(
        "'{path}' at commit {commit} in {repo} is {size} bytes, more than the limit of {limit} bytes"
    )]
    FileTooLarge {
        repo: String,
        commit: String,
        path: String,
        size: u64,
        limit: u64,
    },

    /// Git ran and failed. `stderr` is git's message, scrubbed of secrets.
    #[error("git {op} failed for {repo} ({status}): {stderr}")]
    Command {
        repo: String,
        op: String,
        status: String,
        stderr: String,
    },

    /// A network operation did not finish in time; git and its helpers were killed.
    #[error("git {op} for {repo} did not finish within {} s", timeout.as_secs())]
    Timeout {
        repo: String,
        op: String,
        timeout: Duration,
    },

    /// The `git` executable could not be started.
    #[error("could not run git (is it installed and on PATH?): {source}")]
    Spawn { source: std::io::Error },

    /// A file-system operation of this crate failed (cache directory, lock, target).
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GitError {
    /// Whether the caller asked for something that is not there, was malformed, or
    /// git failed; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            GitError::RepoNotFound { .. }
            | GitError::BranchNotFound { .. }
            | GitError::CommitNotOnBranch { .. }
            | GitError::CommitNotFound { .. } => ErrorKind::NotFound,
            GitError::InvalidRepo { .. }
            | GitError::BranchRequired { .. }
            | GitError::InvalidPath { .. }
            | GitError::NotAFile { .. }
            | GitError::FileTooLarge { .. } => ErrorKind::InvalidInput,
            GitError::Command { .. }
            | GitError::Timeout { .. }
            | GitError::Spawn { .. }
            | GitError::Io { .. } => ErrorKind::Failed,
        }
    }

    /// Shorthand for `kind() == ErrorKind::NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// The repository involved, redacted, when there is one.
    pub fn repo(&self) -> Option<&str> {
        match self {
            GitError::InvalidRepo { repo, .. }
            | GitError::RepoNotFound { repo, .. }
            | GitError::BranchRequired { repo }
            | GitError::BranchNotFound { repo, .. }
            | GitError::CommitNotOnBranch { repo, .. }
            | GitError::CommitNotFound { repo, .. }
            | GitError::InvalidPath { repo, .. }
            | GitError::NotAFile { repo, .. }
            | GitError::FileTooLarge { repo, .. }
            | GitError::Command { repo, .. }
            | GitError::Timeout { repo, .. } => Some(repo),
            GitError::Spawn { .. } | GitError::Io { .. } => None,
        }
    }
}
