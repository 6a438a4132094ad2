//! A finished job's final status code and message, from its redacted
//! results (job-runner §5.9): the one decision shared by the controller (an
//! agent's report), and a local run.

use warden_api::TaskResults;

use crate::status::StatusCode;

/// The message of a job the executor failed on (not the job itself).
pub const INTERNAL_ERROR_MESSAGE: &str =
    "Internal error: this usually means a platform issue rather than a problem for users to fix.";
/// The message of a cancelled job.
pub const CANCELLED_MESSAGE: &str = "Cancelled by user";

impl StatusCode {
    /// The final status code and message of a job that ran, from its redacted
    /// `results` (job-runner §5.9, with the reference's words); `requires_db`
    /// says whether it is a database action, whose exit codes have their
    /// own explanations (§5.8).
    ///
    /// In order: the executor failed on it (`has_error`): `internal_error`
    /// (the controller decides about retries before asking); it was
    /// cancelled: `cancelled_by_user`; a non-zero or missing exit code:
    /// `nonzero_exit`, "Job exited with an error", followed by the agent's
    /// message if any, else "Job ran out of memory" when the container was
    /// killed for memory, else the database message of the exit code; a
    /// pattern that matched nothing: `unmatched_patterns`; otherwise
    /// `succeeded`, noting that "some file(s)" marked moderately_sensitive
    /// were excluded if any were (the reference's words: how many is not
    /// said, as a count is a fact about files).
    pub fn for_results(results: &TaskResults, requires_db: bool) -> (StatusCode, String) {
        if results.has_error {
            return (StatusCode::InternalError, INTERNAL_ERROR_MESSAGE.to_owned());
        }
        if results.cancelled {
            return (StatusCode::CancelledByUser, CANCELLED_MESSAGE.to_owned());
        }
        if results.exit_code != Some(0) {
            let mut message = "Job exited with an error".to_owned();
            let detail = results
                .status_message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| {
                    if results.oom_killed {
                        Some("Job ran out of memory".to_owned())
                    } else if requires_db {
                        results
                            .exit_code
                            .and_then(db_exit_message)
                            .map(str::to_owned)
                    } else {
                        None
                    }
                });
            if let Some(detail) = detail {
                message.push_str(": ");
                message.push_str(&detail);
            }
            (StatusCode::NonzeroExit, message)
        } else if results.has_unmatched_patterns {
            (
                StatusCode::UnmatchedPatterns,
                "Outputs matching expected patterns were not found. See job log for details."
                    .into(),
            )
        } else if results.has_level4_excluded_files {
            (
                StatusCode::Succeeded,
                "Completed successfully, but some file(s) marked as moderately_sensitive were \
                 excluded. See job log for details."
                    .into(),
            )
        } else {
            (StatusCode::Succeeded, "Completed successfully".into())
        }
    }
}

impl StatusCode {
    /// The code a running job takes while its task is at the agent's
    /// `stage`; `None` for `unknown` and `error`, which leave the code alone
    /// (job-runner §2.8).
    pub fn for_agent_stage(stage: warden_api::AgentStage) -> Option<StatusCode> {
        use warden_api::AgentStage as S;
        Some(match stage {
            S::Preparing => StatusCode::Preparing,
            S::Prepared => StatusCode::Prepared,
            S::Executing => StatusCode::Executing,
            S::Executed => StatusCode::Executed,
            S::Finalizing => StatusCode::Finalizing,
            S::Finalized => StatusCode::Finalized,
            S::Unknown | S::Error => return None,
        })
    }
}

/// The controller's messages for the exit codes of database jobs (§5.8).
fn db_exit_message(code: i64) -> Option<&'static str> {
    Some(match code {
        2 => {
            "There was a problem with the arguments of your command; please confirm that it runs locally"
        }
        3 => "A transient database error occurred; your job may run if you try it again",
        4 => "New data is being imported into the database, please try again in a few hours",
        5 => "Something went wrong with the database, please contact tech support",
        6 => "Your SQL query is too complex for the database to run",
        10 => "There was a problem reading your ehrQL code",
        11 => "There was a problem reading one of the supplied data files",
        12 => "You do not have the required permissions for the ehrQL you are trying to run",
        13 => "Assurance tests failed; please confirm the tests pass locally",
        14 => "The job was stopped because it was making too little progress",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(exit_code: Option<i64>) -> TaskResults {
        TaskResults {
            exit_code,
            ..TaskResults::default()
        }
    }

    /// Every combination of the flags and some exit codes: the code follows
    /// the reference's order, the message its words, and no message names a
    /// count or a file.
    #[test]
    fn every_combination_follows_the_reference() {
        let exits = [
            None,
            Some(0),
            Some(1),
            Some(2),
            Some(4),
            Some(14),
            Some(137),
            Some(-1),
        ];
        let messages = [None, Some(String::new()), Some("Disk full".to_owned())];
        for bits in 0u32..64 {
            for exit in exits {
                for message in &messages {
                    for requires_db in [false, true] {
                        let r = TaskResults {
                            exit_code: exit,
                            has_error: bits & 1 != 0,
                            cancelled: bits & 2 != 0,
                            oom_killed: bits & 4 != 0,
                            has_unmatched_patterns: bits & 8 != 0,
                            has_level4_excluded_files: bits & 16 != 0,
                            level4_excluded_count: if bits & 16 != 0 { 3 } else { 0 },
                            has_skipped_outputs: bits & 32 != 0,
                            status_message: message.clone(),
                            ..TaskResults::default()
                        };
                        let (code, text) = StatusCode::for_results(&r, requires_db);
                        let expected = if r.has_error {
                            StatusCode::InternalError
                        } else if r.cancelled {
                            StatusCode::CancelledByUser
                        } else if exit != Some(0) {
                            StatusCode::NonzeroExit
                        } else if r.has_unmatched_patterns {
                            StatusCode::UnmatchedPatterns
                        } else {
                            StatusCode::Succeeded
                        };
                        assert_eq!(code, expected, "{r:?}");
                        assert!(code.is_final(), "{code}");
                        assert!(!text.contains('3'), "{text}");
                        if code == StatusCode::NonzeroExit {
                            assert!(text.starts_with("Job exited with an error"), "{text}");
                            match message.as_deref() {
                                Some("Disk full") => {
                                    assert_eq!(text, "Job exited with an error: Disk full");
                                }
                                _ if r.oom_killed => {
                                    assert_eq!(
                                        text,
                                        "Job exited with an error: Job ran out of memory"
                                    );
                                }
                                _ if requires_db && exit == Some(4) => {
                                    assert!(text.contains("New data is being imported"), "{text}");
                                }
                                _ if !requires_db
                                    || !matches!(exit, Some(2) | Some(4) | Some(14)) =>
                                {
                                    assert_eq!(text, "Job exited with an error");
                                }
                                _ => assert!(text.len() > "Job exited with an error: ".len()),
                            }
                        }
                        if code == StatusCode::Succeeded {
                            assert_eq!(
                                text,
                                if r.has_level4_excluded_files {
                                    "Completed successfully, but some file(s) marked as moderately_sensitive were excluded. See job log for details."
                                } else {
                                    "Completed successfully"
                                }
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reference_messages() {
        assert_eq!(
            StatusCode::for_results(&results(Some(0)), false),
            (StatusCode::Succeeded, "Completed successfully".into())
        );
        assert_eq!(
            StatusCode::for_results(&results(Some(1)), false),
            (StatusCode::NonzeroExit, "Job exited with an error".into())
        );
        assert_eq!(
            StatusCode::for_results(&results(None), false).0,
            StatusCode::NonzeroExit
        );
        assert_eq!(
            StatusCode::for_results(
                &TaskResults {
                    has_unmatched_patterns: true,
                    ..results(Some(0))
                },
                false
            ),
            (
                StatusCode::UnmatchedPatterns,
                "Outputs matching expected patterns were not found. See job log for details."
                    .into()
            )
        );
        // Database exit codes are explained only for database actions.
        assert_eq!(
            StatusCode::for_results(&results(Some(4)), true).1,
            "Job exited with an error: New data is being imported into the database, please try again in a few hours"
        );
        assert_eq!(
            StatusCode::for_results(&results(Some(4)), false).1,
            "Job exited with an error"
        );
    }
}
