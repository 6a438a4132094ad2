//! The store's typed errors.

use crate::transition::TransitionError;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one this crate can open.
    #[error(
        "unsupported database URL {0:?} (expected postgres://..., sqlite://... or a file path)"
    )]
    UnsupportedUrl(String),

    /// A record that was asked for does not exist (or, for tasks, belongs to
    /// another backend: the two are not distinguished).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What kind of record.
        kind: &'static str,
        /// Its id, slug or name.
        id: String,
    },

    /// A record with the same unique key exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// What kind of record.
        kind: &'static str,
        /// Its id, slug or name.
        id: String,
    },

    /// The action already has a pending or running job in this workspace and
    /// backend; a second one would duplicate in-flight work.
    #[error(
        "action {action:?} already has an active job ({job_id}) in workspace {workspace:?} on backend {backend:?}"
    )]
    ActiveJobExists {
        /// Workspace.
        workspace: String,
        /// Backend.
        backend: String,
        /// Action.
        action: String,
        /// The active job.
        job_id: String,
    },

    /// The input breaks a rule of the model.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The status change is not allowed.
    #[error(transparent)]
    Transition(#[from] TransitionError),

    /// The change conflicts with other records (e.g. deleting a project that
    /// workspaces still belong to) or with concurrent writers.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The database's schema is from a newer warden, or a migration failed.
    #[error("migration {version}: {message}")]
    Migration {
        /// The migration's version.
        version: i64,
        /// What went wrong.
        message: String,
    },

    /// Stored data that cannot be read back (unknown enum value, bad JSON).
    #[error("corrupt {what}: {message}")]
    Corrupt {
        /// Which column or record.
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Shorthand for the store's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Whether this is a unique-constraint violation from the database.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Database(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()))
    }

    fn is_foreign_key_violation(&self) -> bool {
        matches!(self, Error::Database(e) if e.as_database_error().is_some_and(|d| d.is_foreign_key_violation()))
    }

    /// Maps a unique violation to [`Error::AlreadyExists`] and a foreign-key
    /// violation to [`Error::Conflict`].
    pub(crate) fn on_insert(self, kind: &'static str, id: impl Into<String>) -> Self {
        if self.is_unique_violation() {
            Error::AlreadyExists {
                kind,
                id: id.into(),
            }
        } else if self.is_foreign_key_violation() {
            Error::Conflict(format!("{kind} {:?} refers to a missing record", id.into()))
        } else {
            self
        }
    }

    /// Maps a foreign-key violation on delete to [`Error::Conflict`].
    pub(crate) fn on_delete(self, kind: &'static str, id: impl Into<String>) -> Self {
        if self.is_foreign_key_violation() {
            Error::Conflict(format!("{kind} {:?} is still referred to", id.into()))
        } else {
            self
        }
    }
}
