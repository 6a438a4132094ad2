//! The single transition function: every change to a job's status goes
//! through [`set_code`], in memory, before the store persists the result.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::Job;
use crate::status::{State, StatusCode};
use crate::time_util::{from_ns, to_ns};

/// How long an unchanged status may go without a write: a "heartbeat" bumps
/// `updated_at` at most this often, so users can see the job is alive without
/// a database write per controller loop.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

/// How far a transition is pushed after the previous one when its timestamp
/// would not be later (clock skew between agent and controller).
pub const CLAMP_STEP_NS: i64 = 1_000_000;

/// What [`set_code`] did to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The status code changed.
    Transition {
        /// The code left.
        from: StatusCode,
        /// The state left (may equal the new state).
        from_state: State,
        /// The transition time, unix nanoseconds (after clamping).
        at_ns: i64,
        /// The requested time was not after the previous transition and was
        /// moved to previous + 1 ms.
        clamped: bool,
    },
    /// Same code, new message: message and `updated_at` changed.
    Message,
    /// Same code and message, and [`HEARTBEAT_INTERVAL`] had passed:
    /// `updated_at` changed.
    Heartbeat,
    /// Nothing changed: no write is needed.
    None,
}

impl Change {
    /// Whether the job needs writing.
    pub fn is_write(&self) -> bool {
        !matches!(self, Change::None)
    }

    /// Whether the coarse state changed.
    pub fn state_changed(&self, job: &Job) -> bool {
        matches!(self, Change::Transition { from_state, .. } if *from_state != job.state)
    }
}

/// A transition [`set_code`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// Final jobs never change code.
    #[error("job {job_id} is already final ({current}); refusing to set {requested}")]
    AlreadyFinal {
        /// The job.
        job_id: String,
        /// Its final code.
        current: StatusCode,
        /// The code asked for.
        requested: StatusCode,
    },
}

/// Sets `code` and `message` on `job`, deriving everything else (reference
/// job-runner §2.7, with two deliberate differences noted below).
///
/// When the code changes:
/// * the transition time is `timestamp_ns` (the agent's clock, more accurate)
///   or else `now`; if it is not after the previous `status_code_updated_at`
///   it is clamped to previous + 1 ms (and a warning logged), so transition
///   times strictly increase and no span has a negative duration;
/// * `initiated`, `preparing`, `prepared`, `executing` make the job `running`
///   and set `started_at` the first time;
/// * `cancelled_by_user` makes it `failed`, setting `completed_at` if not yet
///   set; other final codes set `completed_at` and make it `succeeded` (for
///   `succeeded`) or `failed`;
/// * reset codes make it `pending` and clear `started_at` (and `completed_at`);
/// * other codes leave the state alone;
/// * `updated_at` becomes the latest of its old value, `now` and the
///   transition time, so it never goes backwards either.
///
/// When the code is unchanged: a different message is recorded (the reference
/// drops it), otherwise `updated_at` is bumped only if [`HEARTBEAT_INTERVAL`]
/// has passed ([`Change::None`] tells the caller not to write at all).
///
/// A final job never changes code ([`TransitionError::AlreadyFinal`]); the
/// reference does not check this.
pub fn set_code(
    job: &mut Job,
    code: StatusCode,
    message: &str,
    timestamp_ns: Option<i64>,
    now: OffsetDateTime,
) -> Result<Change, TransitionError> {
    let now_ns = to_ns(now);
    if code == job.status_code {
        if message != job.status_message {
            job.status_message = message.to_owned();
            job.updated_at = later(job.updated_at, now);
            return Ok(Change::Message);
        }
        if now - job.updated_at >= HEARTBEAT_INTERVAL {
            job.updated_at = now;
            return Ok(Change::Heartbeat);
        }
        return Ok(Change::None);
    }
    if job.state.is_final() {
        return Err(TransitionError::AlreadyFinal {
            job_id: job.id.clone(),
            current: job.status_code,
            requested: code,
        });
    }

    let previous = job.status_code_updated_at;
    let mut at_ns = timestamp_ns.unwrap_or(now_ns);
    let clamped = at_ns <= previous;
    if clamped {
        let adjusted = previous.saturating_add(CLAMP_STEP_NS);
        tracing::warn!(
            job_id = %job.id,
            from = %job.status_code,
            to = %code,
            requested_ns = at_ns,
            previous_ns = previous,
            adjusted_ns = adjusted,
            "status transition time is not after the previous one; clamping"
        );
        at_ns = adjusted;
    }
    let at = from_ns(at_ns);
    let from = job.status_code;
    let from_state = job.state;

    if code.starts_running() {
        job.state = State::Running;
        if job.started_at.is_none() {
            job.started_at = Some(at);
        }
    } else if code == StatusCode::CancelledByUser {
        job.state = State::Failed;
        if job.completed_at.is_none() {
            job.completed_at = Some(at);
        }
    } else if code.is_final() {
        job.state = if code == StatusCode::Succeeded {
            State::Succeeded
        } else {
            State::Failed
        };
        job.completed_at = Some(at);
    } else if code.is_reset() {
        job.state = State::Pending;
        job.started_at = None;
        job.completed_at = None;
    }

    job.status_code = code;
    job.status_message = message.to_owned();
    job.status_code_updated_at = at_ns;
    job.updated_at = later(later(job.updated_at, now), at);
    tracing::info!(
        job_id = %job.id,
        action = %job.action,
        from = %from,
        to = %code,
        state = %job.state,
        "{message}"
    );
    Ok(Change::Transition {
        from,
        from_state,
        at_ns,
        clamped,
    })
}

fn later(a: OffsetDateTime, b: OffsetDateTime) -> OffsetDateTime {
    if b > a { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn job(created: OffsetDateTime) -> Job {
        Job {
            id: "j".into(),
            job_request_id: "r".into(),
            workspace: "w".into(),
            backend: "b".into(),
            action: "a".into(),
            state: State::Pending,
            status_code: StatusCode::Created,
            status_message: "Created".into(),
            run_command: String::new(),
            image: String::new(),
            output_spec: serde_json::json!({}),
            requires_outputs_from: vec![],
            wait_for_job_ids: vec![],
            requires_db: false,
            outputs: None,
            cancelled: false,
            created_at: created,
            started_at: None,
            completed_at: None,
            updated_at: created,
            status_code_updated_at: to_ns(created),
        }
    }

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn secs(n: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(n)
    }

    #[test]
    fn lifecycle_to_success() {
        let mut j = job(T0);
        let c = set_code(
            &mut j,
            StatusCode::WaitingOnWorkers,
            "Waiting on available workers",
            None,
            secs(1),
        )
        .unwrap();
        assert!(matches!(c, Change::Transition { clamped: false, .. }));
        assert_eq!(j.state, State::Pending);
        set_code(
            &mut j,
            StatusCode::Initiated,
            "Job executing on the backend",
            None,
            secs(2),
        )
        .unwrap();
        assert_eq!(j.state, State::Running);
        assert_eq!(j.started_at, Some(secs(2)));
        set_code(&mut j, StatusCode::Executing, "m", None, secs(3)).unwrap();
        assert_eq!(j.started_at, Some(secs(2)), "started_at is set once");
        set_code(&mut j, StatusCode::Executed, "m", None, secs(4)).unwrap();
        assert_eq!(j.state, State::Running, "executed leaves the state alone");
        set_code(
            &mut j,
            StatusCode::Succeeded,
            "Completed successfully",
            None,
            secs(5),
        )
        .unwrap();
        assert_eq!(j.state, State::Succeeded);
        assert_eq!(j.completed_at, Some(secs(5)));
        assert_eq!(j.runtime(), Some(Duration::from_secs(3)));
        assert_eq!(j.status_code_updated_at, to_ns(secs(5)));
    }

    #[test]
    fn agent_timestamp_is_used_when_later() {
        let mut j = job(T0);
        let agent = to_ns(secs(10)) + 123;
        set_code(&mut j, StatusCode::Initiated, "m", Some(agent), secs(20)).unwrap();
        assert_eq!(j.status_code_updated_at, agent);
        assert_eq!(j.started_at, Some(from_ns(agent)));
        assert_eq!(j.updated_at, secs(20));
    }

    #[test]
    fn earlier_timestamps_are_clamped_to_previous_plus_1ms() {
        let mut j = job(T0);
        set_code(&mut j, StatusCode::Initiated, "m", None, secs(10)).unwrap();
        let prev = j.status_code_updated_at;
        let c = set_code(
            &mut j,
            StatusCode::Preparing,
            "m",
            Some(to_ns(secs(5))),
            secs(11),
        )
        .unwrap();
        assert_eq!(
            c,
            Change::Transition {
                from: StatusCode::Initiated,
                from_state: State::Running,
                at_ns: prev + 1_000_000,
                clamped: true
            }
        );
        assert_eq!(j.status_code_updated_at, prev + 1_000_000);
        // Equal timestamps are clamped too: transition times strictly increase.
        let prev = j.status_code_updated_at;
        set_code(&mut j, StatusCode::Executing, "m", Some(prev), secs(11)).unwrap();
        assert_eq!(j.status_code_updated_at, prev + 1_000_000);
        // A final code with a skewed clock still completes after it started.
        set_code(
            &mut j,
            StatusCode::NonzeroExit,
            "m",
            Some(to_ns(secs(1))),
            secs(12),
        )
        .unwrap();
        assert!(j.completed_at.unwrap() > j.started_at.unwrap());
        assert_eq!(j.updated_at, secs(12));
    }

    #[test]
    fn now_going_backwards_is_clamped_and_updated_at_never_decreases() {
        let mut j = job(T0);
        set_code(&mut j, StatusCode::Initiated, "m", None, secs(10)).unwrap();
        set_code(&mut j, StatusCode::Preparing, "m", None, secs(3)).unwrap();
        assert_eq!(j.status_code_updated_at, to_ns(secs(10)) + 1_000_000);
        assert!(j.updated_at >= secs(10));
    }

    #[test]
    fn reset_codes_go_back_to_pending_and_clear_started_at() {
        for reset in StatusCode::RESET {
            let mut j = job(T0);
            set_code(&mut j, StatusCode::Initiated, "m", None, secs(1)).unwrap();
            set_code(&mut j, *reset, "m", None, secs(2)).unwrap();
            assert_eq!(j.state, State::Pending, "{reset}");
            assert_eq!(j.started_at, None);
            set_code(&mut j, StatusCode::Initiated, "m", None, secs(3)).unwrap();
            assert_eq!(j.started_at, Some(secs(3)));
        }
    }

    #[test]
    fn cancelled_keeps_an_existing_completed_at() {
        let mut j = job(T0);
        j.completed_at = Some(secs(4));
        set_code(
            &mut j,
            StatusCode::CancelledByUser,
            "Cancelled by user",
            None,
            secs(9),
        )
        .unwrap();
        assert_eq!(j.state, State::Failed);
        assert_eq!(j.completed_at, Some(secs(4)));
        let mut j = job(T0);
        set_code(
            &mut j,
            StatusCode::CancelledByUser,
            "Cancelled by user",
            None,
            secs(9),
        )
        .unwrap();
        assert_eq!(j.completed_at, Some(secs(9)));
        assert_eq!(j.runtime(), None, "never started");
    }

    #[test]
    fn every_final_code_sets_its_state() {
        for code in StatusCode::FINAL {
            let mut j = job(T0);
            set_code(&mut j, *code, "m", None, secs(1)).unwrap();
            let want = if *code == StatusCode::Succeeded {
                State::Succeeded
            } else {
                State::Failed
            };
            assert_eq!(j.state, want, "{code}");
            assert!(j.completed_at.is_some());
        }
    }

    #[test]
    fn waiting_codes_leave_state_alone() {
        let mut j = job(T0);
        set_code(&mut j, StatusCode::Initiated, "m", None, secs(1)).unwrap();
        set_code(&mut j, StatusCode::WaitingOnWorkers, "m", None, secs(2)).unwrap();
        assert_eq!(j.state, State::Running);
    }

    #[test]
    fn unchanged_code_only_heartbeats() {
        let mut j = job(T0);
        let before = j.clone();
        assert_eq!(
            set_code(&mut j, StatusCode::Created, "Created", None, secs(59)).unwrap(),
            Change::None
        );
        assert_eq!(j, before);
        assert_eq!(
            set_code(&mut j, StatusCode::Created, "Created", None, secs(60)).unwrap(),
            Change::Heartbeat
        );
        assert_eq!(j.updated_at, secs(60));
        assert_eq!(j.status_code_updated_at, before.status_code_updated_at);
        assert_eq!(
            set_code(&mut j, StatusCode::Created, "Other", None, secs(61)).unwrap(),
            Change::Message
        );
        assert_eq!(j.status_message, "Other");
        assert_eq!(j.status_code_updated_at, before.status_code_updated_at);
    }

    #[test]
    fn final_jobs_do_not_change() {
        let mut j = job(T0);
        set_code(&mut j, StatusCode::Succeeded, "ok", None, secs(1)).unwrap();
        let before = j.clone();
        let err = set_code(&mut j, StatusCode::Executing, "m", None, secs(2)).unwrap_err();
        assert!(matches!(err, TransitionError::AlreadyFinal { .. }));
        assert_eq!(j, before);
    }
}
