//! The coarse [`State`] of a job, its fine-grained [`StatusCode`], and the
//! derived [`JobRequestStatus`] of a job request.
//!
//! The string values are part of the compatibility contract (they are what
//! OpenSAFELY's job-runner and job-server store and send), so they are spelled
//! out here once and used for storage, JSON and display alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct ParseEnumError {
    /// Which enum was being parsed (`"state"`, `"status code"`, ...).
    pub kind: &'static str,
    /// The offending text.
    pub value: String,
}

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $value)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order (which is also the [`Ord`] order).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialised string value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($value => Ok($name::$variant),)+
                    _ => Err(ParseEnumError { kind: $kind, value: s.to_owned() }),
                }
            }
        }
    };
}

string_enum! {
    /// The coarse state of a job: what the scheduler acts on.
    pub enum State ("state") {
        /// Waiting to start (for dependencies, workers, an unpaused backend...).
        Pending = "pending",
        /// A RUNJOB task exists for it.
        Running = "running",
        /// Finished unsuccessfully (including cancelled).
        Failed = "failed",
        /// Finished successfully.
        Succeeded = "succeeded",
    }
}

impl State {
    /// `failed` or `succeeded`: the job will never change again.
    pub const fn is_final(self) -> bool {
        matches!(self, State::Failed | State::Succeeded)
    }

    /// `pending` or `running`.
    pub const fn is_active(self) -> bool {
        !self.is_final()
    }
}

string_enum! {
    /// The fine-grained status of a job, exactly as OpenSAFELY's job-runner
    /// spells it (reference/job-runner.md §2.6). Declaration order defines the
    /// total order (`Ord`).
    pub enum StatusCode ("status code") {
        /// Job inserted.
        Created = "created",
        /// RUNJOB task created: the job's state becomes `running`.
        Initiated = "initiated",
        /// The backend is paused and the job is pending.
        WaitingPaused = "paused",
        /// A database job while the database is in maintenance (a reset code).
        WaitingDbMaintenance = "waiting_db_maintenance",
        /// Some awaited job has not yet succeeded.
        WaitingOnDependencies = "waiting_on_dependencies",
        /// No worker capacity for a non-database job.
        WaitingOnWorkers = "waiting_on_workers",
        /// No worker capacity for a database job.
        WaitingOnDbWorkers = "waiting_on_db_workers",
        /// Reset before a reboot of the backend (a reset code).
        WaitingOnReboot = "waiting_on_reboot",
        /// The agent reported a retryable error: a new task will be made (a reset code).
        WaitingOnNewTask = "waiting_on_new_task",
        /// Agent stage.
        Preparing = "preparing",
        /// Agent stage.
        Prepared = "prepared",
        /// Agent stage.
        Executing = "executing",
        /// Agent stage.
        Executed = "executed",
        /// Agent stage.
        Finalizing = "finalizing",
        /// Agent stage.
        Finalized = "finalized",
        /// Finished, outputs as declared.
        Succeeded = "succeeded",
        /// An awaited job failed.
        DependencyFailed = "dependency_failed",
        /// The action exited with a non-zero code.
        NonzeroExit = "nonzero_exit",
        /// Cancelled by a user (or by an interrupted local run).
        CancelledByUser = "cancelled_by_user",
        /// Exit code 0 but some output pattern matched nothing.
        UnmatchedPatterns = "unmatched_patterns",
        /// The controller failed fatally on this job.
        InternalError = "internal_error",
        /// Legacy; no longer set.
        KilledByAdmin = "killed_by_admin",
        /// Legacy; no longer set.
        StaleCodelists = "stale_codelists",
        /// The agent reported a fatal error.
        JobError = "job_error",
    }
}

impl StatusCode {
    /// Codes after which the job never changes again.
    pub const FINAL: &'static [StatusCode] = &[
        StatusCode::Succeeded,
        StatusCode::DependencyFailed,
        StatusCode::NonzeroExit,
        StatusCode::CancelledByUser,
        StatusCode::UnmatchedPatterns,
        StatusCode::InternalError,
        StatusCode::KilledByAdmin,
        StatusCode::StaleCodelists,
        StatusCode::JobError,
    ];

    /// Codes that put a job back to `pending` and clear its `started_at`.
    pub const RESET: &'static [StatusCode] = &[
        StatusCode::WaitingOnReboot,
        StatusCode::WaitingDbMaintenance,
        StatusCode::WaitingOnNewTask,
    ];

    /// Whether this code ends the job.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            StatusCode::Succeeded
                | StatusCode::DependencyFailed
                | StatusCode::NonzeroExit
                | StatusCode::CancelledByUser
                | StatusCode::UnmatchedPatterns
                | StatusCode::InternalError
                | StatusCode::KilledByAdmin
                | StatusCode::StaleCodelists
                | StatusCode::JobError
        )
    }

    /// Whether this code resets the job to `pending`.
    pub const fn is_reset(self) -> bool {
        matches!(
            self,
            StatusCode::WaitingOnReboot
                | StatusCode::WaitingDbMaintenance
                | StatusCode::WaitingOnNewTask
        )
    }

    /// Whether entering this code makes the job `running` (and sets
    /// `started_at` the first time).
    pub const fn starts_running(self) -> bool {
        matches!(
            self,
            StatusCode::Initiated
                | StatusCode::Preparing
                | StatusCode::Prepared
                | StatusCode::Executing
        )
    }

    /// The group the code is listed under in the reference table (pending,
    /// running, succeeded, failed). Note this is *not* always the state a job
    /// with this code is in: `initiated` is listed as pending but makes the job
    /// running, and `waiting_on_workers` leaves whatever state the job had.
    pub const fn group(self) -> State {
        match self {
            StatusCode::Created
            | StatusCode::Initiated
            | StatusCode::WaitingPaused
            | StatusCode::WaitingDbMaintenance
            | StatusCode::WaitingOnDependencies
            | StatusCode::WaitingOnWorkers
            | StatusCode::WaitingOnDbWorkers
            | StatusCode::WaitingOnReboot
            | StatusCode::WaitingOnNewTask => State::Pending,
            StatusCode::Preparing
            | StatusCode::Prepared
            | StatusCode::Executing
            | StatusCode::Executed
            | StatusCode::Finalizing
            | StatusCode::Finalized => State::Running,
            StatusCode::Succeeded => State::Succeeded,
            _ => State::Failed,
        }
    }
}

string_enum! {
    /// The status of a job request (job-server's `JobRequestStatus`): a
    /// superset of [`State`]. Derived from the request's jobs by
    /// [`derive_request_status`](crate::derive_request_status).
    pub enum JobRequestStatus ("job request status") {
        /// Jobs created, none started.
        Pending = "pending",
        /// Some job is running, or some have finished and others are pending.
        Running = "running",
        /// Some job failed and none is active, or creation failed.
        Failed = "failed",
        /// Every job succeeded.
        Succeeded = "succeeded",
        /// No job was needed.
        NothingToDo = "nothing_to_do",
        /// The jobs' states do not determine a status.
        Unknown = "unknown",
        /// Creating the jobs failed in a way that may not be final.
        UnknownErrorCreatingJobs = "unknown_error_creating_jobs",
    }
}

impl JobRequestStatus {
    /// `pending`, `running`, `unknown` and `unknown_error_creating_jobs`.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            JobRequestStatus::Pending
                | JobRequestStatus::Running
                | JobRequestStatus::Unknown
                | JobRequestStatus::UnknownErrorCreatingJobs
        )
    }

    /// `failed`, `succeeded` and `nothing_to_do`: never change again.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobRequestStatus::Failed | JobRequestStatus::Succeeded | JobRequestStatus::NothingToDo
        )
    }

    /// "Nothing to do", "Unknown error creating jobs", "Succeeded", ...
    pub fn human_readable(self) -> String {
        let s = self.as_str().replace('_', " ");
        let mut chars = s.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => s,
        }
    }
}

impl From<State> for JobRequestStatus {
    fn from(state: State) -> Self {
        match state {
            State::Pending => JobRequestStatus::Pending,
            State::Running => JobRequestStatus::Running,
            State::Failed => JobRequestStatus::Failed,
            State::Succeeded => JobRequestStatus::Succeeded,
        }
    }
}

string_enum! {
    /// What a task asks an agent to do.
    pub enum TaskType ("task type") {
        /// Run a job.
        RunJob = "runjob",
        /// Stop a job and finalise it as cancelled.
        CancelJob = "canceljob",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_values_and_order_match_the_reference() {
        let values: Vec<&str> = StatusCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            values,
            [
                "created",
                "initiated",
                "paused",
                "waiting_db_maintenance",
                "waiting_on_dependencies",
                "waiting_on_workers",
                "waiting_on_db_workers",
                "waiting_on_reboot",
                "waiting_on_new_task",
                "preparing",
                "prepared",
                "executing",
                "executed",
                "finalizing",
                "finalized",
                "succeeded",
                "dependency_failed",
                "nonzero_exit",
                "cancelled_by_user",
                "unmatched_patterns",
                "internal_error",
                "killed_by_admin",
                "stale_codelists",
                "job_error",
            ]
        );
        let mut sorted = StatusCode::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, StatusCode::ALL);
        assert!(StatusCode::Created < StatusCode::JobError);
    }

    #[test]
    fn final_and_reset_sets() {
        for code in StatusCode::ALL {
            assert_eq!(code.is_final(), StatusCode::FINAL.contains(code), "{code}");
            assert_eq!(code.is_reset(), StatusCode::RESET.contains(code), "{code}");
            assert!(!(code.is_final() && code.is_reset()));
        }
        assert_eq!(StatusCode::FINAL.len(), 9);
        assert_eq!(StatusCode::RESET.len(), 3);
    }

    #[test]
    fn round_trips_through_strings_and_json() {
        for code in StatusCode::ALL {
            assert_eq!(code.as_str().parse::<StatusCode>().unwrap(), *code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<StatusCode>(&json).unwrap(), *code);
        }
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>().unwrap(), *state);
        }
        assert_eq!(
            "Running".parse::<State>().unwrap_err().to_string(),
            "unknown state \"Running\""
        );
    }

    #[test]
    fn request_status_labels() {
        assert_eq!(
            JobRequestStatus::NothingToDo.human_readable(),
            "Nothing to do"
        );
        assert_eq!(
            JobRequestStatus::UnknownErrorCreatingJobs.human_readable(),
            "Unknown error creating jobs"
        );
        assert!(JobRequestStatus::Unknown.is_active());
        assert!(!JobRequestStatus::NothingToDo.is_active());
    }
}
