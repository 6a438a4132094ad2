//! The status of a job request, derived from its jobs (reference
//! job-server.md §2, "Job request status rules" and "How each derived field is
//! computed").

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Job, JobRequest};
use crate::status::{JobRequestStatus, State};

/// The message of a request that failed because a job failed.
pub const FAILED_DUE_TO_JOB_FAILURE: &str = "Failed due to job failure";

/// Counts of a request's jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Jobs pending.
    pub pending: usize,
    /// Jobs running.
    pub running: usize,
    /// Jobs failed.
    pub failed: usize,
    /// Jobs succeeded.
    pub succeeded: usize,
}

impl JobCounts {
    /// All jobs.
    pub fn total(&self) -> usize {
        self.pending + self.running + self.failed + self.succeeded
    }

    /// Failed plus succeeded.
    pub fn completed(&self) -> usize {
        self.failed + self.succeeded
    }
}

/// A job request's derived status and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// The status.
    pub status: JobRequestStatus,
    /// Its message ("Failed due to job failure", the planner's "Nothing to
    /// do" text, or empty).
    pub message: String,
    /// Earliest `started_at` of its jobs.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Latest `completed_at` of its jobs, once the request is complete.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// The **sum** of the finished jobs' runtimes (not wall-clock time); a job
    /// with a missing time or a negative duration counts as zero.
    pub runtime: Duration,
    /// Jobs by state.
    pub counts: JobCounts,
}

impl RequestStatus {
    /// Whether the request will not change any more.
    pub fn is_completed(&self) -> bool {
        !self.status.is_active()
    }

    /// The runtime as `HH:MM:SS`, or `-` when zero.
    pub fn runtime_hms(&self) -> String {
        let s = self.runtime.as_secs();
        if s == 0 {
            return "-".into();
        }
        format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// Derives a request's status from the status recorded at its creation and
/// its jobs:
///
/// 1. a terminal recorded status (`failed`, `succeeded`, `nothing_to_do`)
///    stands;
/// 2. with no jobs, the recorded status stands;
/// 3. if every job has the same state, that state (`failed` with
///    "Failed due to job failure");
/// 4. otherwise any `running` job, or any `pending` one (some have finished),
///    makes it `running`;
/// 5. otherwise any `failed` job makes it `failed`;
/// 6. otherwise `unknown` (not reachable with four states; kept for parity).
///
/// A request is created `pending` only with jobs, and a finished job never
/// changes again, so the derived status moves forward only and needs no
/// write-back (job-server saves it as a side effect of reading; warden never
/// has to).
pub fn derive_request_status(request: &JobRequest, jobs: &[Job]) -> RequestStatus {
    derive_status(request.status, &request.status_message, jobs)
}

/// [`derive_request_status`] from the recorded status and message directly.
pub fn derive_status(recorded: JobRequestStatus, message: &str, jobs: &[Job]) -> RequestStatus {
    let mut counts = JobCounts::default();
    let mut runtime = Duration::ZERO;
    let mut started_at: Option<OffsetDateTime> = None;
    let mut completed_at: Option<OffsetDateTime> = None;
    for job in jobs {
        match job.state {
            State::Pending => counts.pending += 1,
            State::Running => counts.running += 1,
            State::Failed => counts.failed += 1,
            State::Succeeded => counts.succeeded += 1,
        }
        if let Some(s) = job.started_at {
            started_at = Some(started_at.map_or(s, |m| m.min(s)));
        }
        if job.state.is_final() {
            if let Some(c) = job.completed_at {
                completed_at = Some(completed_at.map_or(c, |m| m.max(c)));
            }
            runtime += job.runtime().unwrap_or(Duration::ZERO);
        }
    }

    let (status, message) = if recorded.is_terminal() || jobs.is_empty() {
        (recorded, message.to_owned())
    } else {
        let states = [
            (State::Pending, counts.pending),
            (State::Running, counts.running),
            (State::Failed, counts.failed),
            (State::Succeeded, counts.succeeded),
        ];
        let only: Vec<State> = states
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, _)| *s)
            .collect();
        let status = if let [single] = only.as_slice() {
            JobRequestStatus::from(*single)
        } else if counts.running > 0 || counts.pending > 0 {
            JobRequestStatus::Running
        } else if counts.failed > 0 {
            JobRequestStatus::Failed
        } else {
            JobRequestStatus::Unknown
        };
        let message = if status == JobRequestStatus::Failed {
            FAILED_DUE_TO_JOB_FAILURE.to_owned()
        } else {
            String::new()
        };
        (status, message)
    };

    RequestStatus {
        status,
        message,
        started_at,
        completed_at: if status.is_active() || jobs.is_empty() {
            None
        } else {
            completed_at
        },
        runtime,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StatusCode;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn job(state: State, started: Option<i64>, completed: Option<i64>) -> Job {
        let at = |s: i64| T0 + time::Duration::seconds(s);
        Job {
            id: "j".into(),
            job_request_id: "r".into(),
            workspace: "w".into(),
            backend: "b".into(),
            action: "a".into(),
            state,
            status_code: StatusCode::Created,
            status_message: String::new(),
            run_command: String::new(),
            image: String::new(),
            output_spec: serde_json::json!({}),
            requires_outputs_from: vec![],
            wait_for_job_ids: vec![],
            requires_db: false,
            outputs: None,
            cancelled: false,
            created_at: T0,
            started_at: started.map(at),
            completed_at: completed.map(at),
            updated_at: T0,
            status_code_updated_at: 0,
        }
    }

    fn derive(jobs: &[Job]) -> RequestStatus {
        derive_status(JobRequestStatus::Pending, "", jobs)
    }

    #[test]
    fn rules() {
        use State::*;
        let s = |states: &[State]| {
            let jobs: Vec<Job> = states.iter().map(|s| job(*s, None, None)).collect();
            derive(&jobs).status
        };
        assert_eq!(s(&[Pending, Pending]), JobRequestStatus::Pending);
        assert_eq!(s(&[Running]), JobRequestStatus::Running);
        assert_eq!(s(&[Succeeded, Succeeded]), JobRequestStatus::Succeeded);
        assert_eq!(s(&[Failed]), JobRequestStatus::Failed);
        assert_eq!(s(&[Pending, Running]), JobRequestStatus::Running);
        assert_eq!(s(&[Pending, Succeeded]), JobRequestStatus::Running);
        assert_eq!(s(&[Pending, Failed]), JobRequestStatus::Running);
        assert_eq!(s(&[Failed, Succeeded]), JobRequestStatus::Failed);
        assert_eq!(
            derive(&[job(Failed, None, None)]).message,
            FAILED_DUE_TO_JOB_FAILURE
        );
    }

    #[test]
    fn recorded_status_wins_when_terminal_or_without_jobs() {
        let r = derive_status(JobRequestStatus::NothingToDo, "All done", &[]);
        assert_eq!(r.status, JobRequestStatus::NothingToDo);
        assert_eq!(r.message, "All done");
        assert!(r.is_completed());
        let r = derive_status(JobRequestStatus::UnknownErrorCreatingJobs, "", &[]);
        assert!(!r.is_completed());
        let r = derive_status(JobRequestStatus::Pending, "", &[]);
        assert_eq!(r.status, JobRequestStatus::Pending);
    }

    #[test]
    fn times_and_runtime() {
        let jobs = [
            job(State::Succeeded, Some(10), Some(70)),
            job(State::Failed, Some(5), Some(65)),
            job(State::Failed, None, Some(80)), // never started: 0
            job(State::Succeeded, Some(90), Some(80)), // negative: 0
        ];
        let r = derive(&jobs);
        assert_eq!(r.status, JobRequestStatus::Failed);
        assert_eq!(r.started_at, Some(T0 + time::Duration::seconds(5)));
        assert_eq!(r.completed_at, Some(T0 + time::Duration::seconds(80)));
        assert_eq!(r.runtime, Duration::from_secs(120));
        assert_eq!(r.runtime_hms(), "00:02:00");
        assert_eq!(r.counts.completed(), 4);

        let active = [
            job(State::Succeeded, Some(1), Some(2)),
            job(State::Running, Some(1), None),
        ];
        let r = derive(&active);
        assert_eq!(r.completed_at, None);
        assert_eq!(r.runtime, Duration::from_secs(1));
        assert_eq!(derive(&[]).runtime_hms(), "-");
    }
}
