//! The study's history database: recognising a corrupt one, and reaping
//! what a killed earlier run left behind.

use std::path::Path;

use warden_executor::Executor;
use warden_state::Store;

use crate::RunError;

/// SQLite's "not a database" and "malformed" errors as
/// [`RunError::CorruptHistory`]; anything else as it is.
pub(crate) fn corrupt_or(error: warden_state::Error, db: &Path) -> RunError {
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
pub(crate) async fn reap_leftovers(store: &Store, executor: &dyn Executor) {
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
