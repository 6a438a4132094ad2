//! The controller's side of the agent protocol. The types themselves live in
//! `warden-api` (shared with the agent, never mirrored): [`JobDefinition`]
//! (a task's payload, built by the scheduler when it starts a job),
//! [`TaskUpdateBody`] and the redacted [`TaskResults`] (an agent's report,
//! refusing any field they do not declare, so no file name is stored). The
//! final status of a completed task is `warden_state::StatusCode::for_results`
//! (job-runner §5.9).

pub use warden_api::{
    AgentStage, JobDefinition, JobMetrics, LEVEL4_FILE_TYPES, MAX_STATUS_MESSAGE, TaskResults,
    TaskUpdateBody,
};

/// The message of a job whose agent reported a fatal error (§2.8).
pub const FATAL_ERROR_MESSAGE: &str = "This job returned a fatal error.";
/// The message of a job put back to pending after a retryable agent error
/// (§2.8, reference text kept as it is, missing space included).
pub const RETRY_MESSAGE: &str = "This job returned an error that could be retriedwith a new task.";

#[cfg(test)]
mod tests {
    /// `warden-api` is a protocol crate with no dependencies beyond serde, so it
    /// keeps its own list of level-4 file types; it must be the pipeline's
    /// rule (the one definition; the executor re-exports it).
    #[test]
    fn level4_rules_are_the_pipelines() {
        fn sorted(types: &[&'static str]) -> Vec<&'static str> {
            let mut v = types.to_vec();
            v.sort_unstable();
            v
        }
        let rule = sorted(&warden_pipeline::LEVEL4_FILE_TYPES);
        assert_eq!(sorted(super::LEVEL4_FILE_TYPES), rule);
    }
}
