//! Status messages the scheduler sets (job-runner §2.8).

/// A job cancelled by a user.
pub const CANCELLED: &str = "Cancelled by user";
/// Pending on a paused backend.
pub const PAUSED: &str =
    "Backend is currently paused for maintenance, job will start once this is completed";
/// A database job during database maintenance.
pub const DB_MAINTENANCE: &str = "Waiting for database to finish maintenance";
/// A dependency failed.
pub const DEPENDENCY_FAILED: &str = "Not starting as dependency failed";
/// Dependencies still running.
pub const WAITING_ON_DEPENDENCIES: &str = "Waiting on dependencies";
/// No worker slot.
pub const WAITING_ON_WORKERS: &str = "Waiting on available workers";
/// No worker slot for a heavy job.
pub const WAITING_ON_WORKERS_HEAVY: &str =
    "Waiting on available workers for resource intensive job";
/// No database worker slot.
pub const WAITING_ON_DB_WORKERS: &str = "Waiting on available database workers";
/// Started.
pub const INITIATED: &str = "Job executing on the backend";
/// The controller failed on the job.
pub const INTERNAL_ERROR: &str = "Internal error: this usually means a platform issue rather than a problem for users to fix.\nThe tech team are automatically notified of these errors and will be investigating.";
