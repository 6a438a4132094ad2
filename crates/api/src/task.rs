//! What goes to an agent and what comes back.
//!
//! * [`JobDefinition`]: the payload of a RUNJOB or CANCELJOB task
//!   (job-runner §2.4), built by the controller when it starts a job.
//! * [`TaskUpdateBody`] / [`TaskResults`]: an agent's report. **Results
//!   carry no output file names**: the types reject (HTTP 400) any field they
//!   do not declare, so `outputs`, `unmatched_outputs`, `unmatched_patterns`,
//!   `level4_excluded_files` and anything else an agent might try to send is
//!   refused rather than stored; what is declared is counts and booleans, an
//!   exit code, an image id and a short status message, which
//!   [`TaskResults::sanitise`] drops whenever the results say some pattern
//!   was unmatched or some file excluded or skipped (the cases where a
//!   message would name files, as in the reference agent's redaction, §5.9).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The moderately_sensitive file types the level-4 checks allow (job-runner
/// §5.7).
pub const LEVEL4_FILE_TYPES: &[&str] = &[
    ".csv", ".html", ".jpeg", ".jpg", ".json", ".log", ".md", ".png", ".svg", ".svgz", ".txt",
];

/// The payload of a task: everything an agent needs to run (or cancel) one
/// job. Field names follow the executor's `JobDefinition` where they share a
/// meaning; the agent adds its own `code_dir` after checking out
/// `repo_url` at `commit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDefinition {
    /// Job id.
    pub id: String,
    /// Job request id.
    pub request_id: String,
    /// This task's id (a retry runs under a new one).
    pub task_id: String,
    /// Workspace (the output directory on the backend).
    pub workspace: String,
    /// Action name.
    pub action: String,
    /// Repository of the code to run (credentials included only if the
    /// workspace's URL has them: the agent needs them to fetch).
    pub repo_url: String,
    /// Branch the commit is on.
    pub branch: String,
    /// Commit to check out.
    pub commit: String,
    /// Full image reference, e.g. `ghcr.io/opensafely-core/python:v2`.
    pub image: String,
    /// The command's arguments after the image.
    pub args: Vec<String>,
    /// Environment for the container.
    pub env: BTreeMap<String, String>,
    /// Deprecated; always empty (inputs come from `input_job_ids`).
    pub inputs: Vec<String>,
    /// For each action in `needs`, the id of its latest job in this
    /// workspace and backend when the task was made.
    pub input_job_ids: BTreeMap<String, String>,
    /// Declared outputs: `{glob: privacy level}`.
    pub output_spec: BTreeMap<String, String>,
    /// The action reads the backend's database.
    pub allow_database_access: bool,
    /// `default` for database actions, else null.
    pub database_name: Option<String>,
    /// Who asked (username).
    pub created_by: String,
    /// CPUs for the container.
    pub cpu_count: f64,
    /// Memory limit in bytes.
    pub memory_limit: u64,
    /// Job creation time, seconds since the epoch.
    pub created_at: i64,
    /// Largest moderately_sensitive file, bytes.
    pub level4_max_filesize: u64,
    /// Most CSV data rows in a moderately_sensitive file.
    pub level4_max_csv_rows: u64,
    /// Allowed moderately_sensitive file types.
    pub level4_file_types: Vec<String>,
}

/// The executor stage an agent reports (job-runner §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStage {
    /// Preparing the job's volume.
    Preparing,
    /// Volume ready, container not started.
    Prepared,
    /// Container running.
    Executing,
    /// Container exited.
    Executed,
    /// Collecting outputs.
    Finalizing,
    /// Done; results final.
    Finalized,
    /// The agent knows nothing of the job.
    Unknown,
    /// The executor failed (not the job).
    Error,
}

impl AgentStage {
    /// The stage named `text` (as [`AgentStage::as_str`] writes it).
    pub fn parse(text: &str) -> Option<AgentStage> {
        [
            AgentStage::Preparing,
            AgentStage::Prepared,
            AgentStage::Executing,
            AgentStage::Executed,
            AgentStage::Finalizing,
            AgentStage::Finalized,
            AgentStage::Unknown,
            AgentStage::Error,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The stage as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStage::Preparing => "preparing",
            AgentStage::Prepared => "prepared",
            AgentStage::Executing => "executing",
            AgentStage::Executed => "executed",
            AgentStage::Finalizing => "finalizing",
            AgentStage::Finalized => "finalized",
            AgentStage::Unknown => "unknown",
            AgentStage::Error => "error",
        }
    }
}

/// Resource use of a job (numbers only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobMetrics {
    /// Mean CPU, percent of one core.
    #[serde(default)]
    pub cpu_mean: Option<f64>,
    /// Peak CPU, percent of one core.
    #[serde(default)]
    pub cpu_peak: Option<f64>,
    /// Mean memory, MB.
    #[serde(default)]
    pub mem_mb_mean: Option<f64>,
    /// Peak memory, MB.
    #[serde(default)]
    pub mem_mb_peak: Option<f64>,
}

/// An agent's results for a task: redacted, **without any file name**
/// (unknown fields are rejected). The same shape as the executor's
/// `RedactedResults`, plus `fatal` and `job_metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskResults {
    /// Container exit code; null when no container ran.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Docker's OOMKilled flag.
    #[serde(default)]
    pub oom_killed: bool,
    /// The job was cancelled.
    #[serde(default)]
    pub cancelled: bool,
    /// The executor failed on the job (not the job itself); the job is
    /// retried under a new task unless `fatal` (or attempts run out).
    #[serde(default)]
    pub has_error: bool,
    /// With `has_error`: do not retry.
    #[serde(default)]
    pub fatal: bool,
    /// Some output pattern matched nothing.
    #[serde(default)]
    pub has_unmatched_patterns: bool,
    /// Some moderately_sensitive output failed the level-4 checks.
    #[serde(default)]
    pub has_level4_excluded_files: bool,
    /// How many did.
    #[serde(default)]
    pub level4_excluded_count: u64,
    /// Some pattern matched a symlink, directory or special file.
    #[serde(default)]
    pub has_skipped_outputs: bool,
    /// Number of outputs found.
    #[serde(default)]
    pub output_count: u64,
    /// A short high-level message (at most 500 characters; dropped by the
    /// server when any of the flags above says files were involved).
    #[serde(default)]
    pub status_message: Option<String>,
    /// When the job was finalized, ns since the epoch (informational).
    #[serde(default)]
    pub timestamp_ns: u64,
    /// Id of the image the container actually ran.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Resource use.
    #[serde(default)]
    pub job_metrics: Option<JobMetrics>,
}

/// Longest status message accepted from an agent.
pub const MAX_STATUS_MESSAGE: usize = 500;

impl TaskResults {
    /// Checks what can be checked and strips what could name files: the
    /// status message goes whenever a pattern was unmatched or a file
    /// excluded or skipped.
    pub fn sanitise(mut self) -> Result<TaskResults, String> {
        if let Some(m) = &self.status_message
            && m.chars().count() > MAX_STATUS_MESSAGE
        {
            return Err(format!(
                "results.status_message is longer than {MAX_STATUS_MESSAGE} characters"
            ));
        }
        if let Some(id) = &self.image_id
            && (id.len() > 200 || id.chars().any(char::is_whitespace))
        {
            return Err("results.image_id is not an image id".into());
        }
        if self.has_unmatched_patterns || self.has_level4_excluded_files || self.has_skipped_outputs
        {
            self.status_message = None;
        }
        Ok(self)
    }
}

/// An agent's report on one task (`POST /api/v1/backends/{slug}/tasks/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskUpdateBody {
    /// The executor stage reached.
    pub stage: AgentStage,
    /// The agent has finished with the task (then `results` is required for
    /// a RUNJOB task).
    #[serde(default)]
    pub complete: bool,
    /// The agent's clock when the stage was reached, ns since the epoch (not
    /// negative). The controller records it clamped to within its clock-skew
    /// bound of its own clock (`warden_state::MAX_AGENT_CLOCK_SKEW`); it
    /// orders progress updates and becomes the job's transition time
    /// (clamped again so that times never go backwards).
    pub timestamp_ns: i64,
    /// Results so far (final when `complete`).
    #[serde(default)]
    pub results: Option<TaskResults>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip() {
        for text in [
            "preparing",
            "prepared",
            "executing",
            "executed",
            "finalizing",
            "finalized",
            "unknown",
            "error",
        ] {
            let stage = AgentStage::parse(text).unwrap();
            assert_eq!(stage.as_str(), text);
            assert_eq!(serde_json::to_value(stage).unwrap(), text);
        }
        assert_eq!(AgentStage::parse("dancing"), None);
    }

    #[test]
    fn unknown_result_fields_are_refused() {
        for field in [
            "outputs",
            "unmatched_outputs",
            "unmatched_patterns",
            "level4_excluded_files",
            "hint",
        ] {
            let body = format!(r#"{{"exit_code": 0, "{field}": ["output/a.csv"]}}"#);
            let err = serde_json::from_str::<TaskResults>(&body).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{field}: {err}");
        }
    }

    #[test]
    fn messages_that_could_name_files_are_dropped() {
        let r = TaskResults {
            exit_code: Some(0),
            has_unmatched_patterns: true,
            status_message: Some("No outputs found matching patterns: output/x.csv".into()),
            ..TaskResults::default()
        };
        assert_eq!(r.sanitise().unwrap().status_message, None);
        let long = TaskResults {
            status_message: Some("x".repeat(501)),
            ..TaskResults::default()
        };
        assert!(long.sanitise().is_err());
    }
}
