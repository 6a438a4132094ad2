//! The data the executor takes and gives: job definitions, configuration,
//! states and results. All of it is serde-serialisable so the agent can store
//! it and send it over the wire.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default CPU count for a job.
pub const DEFAULT_CPU_COUNT: f64 = 2.0;
/// Default memory limit for a job: 4 GiB (Docker's `4G`).
pub const DEFAULT_MEMORY_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
/// Default most processes (and threads: the kernel counts both) a job's
/// container may have at once. Docker sets no limit, so without one a fork
/// loop fills the host's process table. 1,024 is far above what an analysis
/// uses (an interpreter, a worker pool per core and their threads on a
/// 64-core backend are a few hundred) and far below a host's `pid_max`
/// (32,768 or more), so one job can never starve the machine.
pub const DEFAULT_PIDS_LIMIT: u64 = 1024;
/// Default largest moderately_sensitive file: 16 MiB
/// ([`warden_pipeline::LEVEL4_MAX_FILESIZE`]).
pub const DEFAULT_LEVEL4_MAX_FILESIZE: u64 = warden_pipeline::LEVEL4_MAX_FILESIZE;
/// Default most data rows in a moderately_sensitive CSV file
/// ([`warden_pipeline::LEVEL4_MAX_CSV_ROWS`]).
pub const DEFAULT_LEVEL4_MAX_CSV_ROWS: u64 = warden_pipeline::LEVEL4_MAX_CSV_ROWS;
/// File types allowed in moderately_sensitive outputs (level 4), with dots
/// ([`warden_pipeline::LEVEL4_FILE_TYPES`]).
pub const DEFAULT_LEVEL4_FILE_TYPES: &[&str] = &warden_pipeline::LEVEL4_FILE_TYPES;

/// Name of the marker written last by `prepare`; its content is the time (ns
/// since the epoch) preparation finished and its mtime is the reference for
/// spotting files the job created.
pub const TIMESTAMP_FILE: &str = ".opensafely-timestamp";

/// Privacy level of an output, as declared in `project.yaml`: the pipeline's
/// one definition.
pub use warden_pipeline::PrivacyLevel;

fn default_cpu_count() -> f64 {
    DEFAULT_CPU_COUNT
}

fn default_memory_limit() -> u64 {
    DEFAULT_MEMORY_LIMIT
}

fn default_pids_limit() -> u64 {
    DEFAULT_PIDS_LIMIT
}

/// Everything the executor needs to run one job.
///
/// Deserialisation fills defaults for every optional field, so definitions
/// stored by an older version still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDefinition {
    /// Job id (16 lowercase base32 characters in warden; any of
    /// `[A-Za-z0-9_.-]` is accepted). Names the container `os-job-<id>`.
    pub id: String,
    /// Id of the job request this job belongs to.
    pub request_id: String,
    /// Id of the task (attempt) running this job, if the caller retries jobs
    /// under new task ids: stored metadata of another task is ignored, so a
    /// retry starts fresh.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Workspace name.
    pub workspace: String,
    /// Action name (from `project.yaml`).
    pub action: String,
    /// Full image reference, e.g. `ghcr.io/opensafely-core/python:v2`.
    pub image: String,
    /// Arguments after the image (the container's command).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment for the container (e.g. `OPENSAFELY_BACKEND=expectations`).
    /// `HOME=/tmp` is added unless set here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Directory whose files are copied into the job as its code (a working
    /// tree or a checkout: the caller decides).
    pub code_dir: PathBuf,
    /// Globs (relative to `code_dir`, `*` only) of entries not to copy, in
    /// addition to `.git` and the top-level `metadata/`: typically every
    /// action's declared output patterns.
    #[serde(default)]
    pub code_exclude: Vec<String>,
    /// Relative paths of input files (outputs of the job's `needs`), copied
    /// from the high-privacy workspace to the same path in the job.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Declared outputs: `{glob: privacy level}`.
    #[serde(default)]
    pub output_spec: BTreeMap<String, PrivacyLevel>,
    /// CPUs for the container (fractions allowed).
    #[serde(default = "default_cpu_count")]
    pub cpu_count: f64,
    /// Memory limit in bytes (no swap beyond it).
    #[serde(default = "default_memory_limit")]
    pub memory_limit: u64,
    /// Most processes and threads in the container at once.
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u64,
    /// `uid:gid` to run as; `None` means the executor process's own.
    #[serde(default)]
    pub user: Option<String>,
    /// Extra container labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time of the job, seconds since the Unix epoch (UTC). Chooses
    /// the month directory of the job's logs.
    pub created_at: i64,
    /// Repository URL of the study, recorded in the manifest.
    #[serde(default)]
    pub repo_url: Option<String>,
    /// Commit of the study, recorded in the manifest and log.
    #[serde(default)]
    pub commit: Option<String>,
    /// Who asked for the job, recorded in the manifest.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Database name, recorded in the log (none for local runs).
    #[serde(default)]
    pub database_name: Option<String>,
}

impl JobDefinition {
    /// A definition with the given identity, image and code directory and
    /// defaults for everything else (no args, env, inputs or outputs; 2 CPUs;
    /// 4 GiB; the caller's user; created now).
    pub fn new(
        id: impl Into<String>,
        request_id: impl Into<String>,
        workspace: impl Into<String>,
        action: impl Into<String>,
        image: impl Into<String>,
        code_dir: impl Into<PathBuf>,
    ) -> Self {
        JobDefinition {
            id: id.into(),
            request_id: request_id.into(),
            task_id: None,
            workspace: workspace.into(),
            action: action.into(),
            image: image.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            code_dir: code_dir.into(),
            code_exclude: Vec::new(),
            inputs: Vec::new(),
            output_spec: BTreeMap::new(),
            cpu_count: DEFAULT_CPU_COUNT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            pids_limit: DEFAULT_PIDS_LIMIT,
            user: None,
            labels: BTreeMap::new(),
            created_at: crate::util::now_secs(),
            repo_url: None,
            commit: None,
            created_by: None,
            database_name: None,
        }
    }

    /// The definition of a task an agent was handed (`warden_api`'s
    /// payload: the one wire form, not mirrored here), with the job's code
    /// checked out at `code_dir`. The executor's own settings (user, labels,
    /// process limit, code exclusions) take their defaults. An output level
    /// that is not one of the three is [`ExecutorError::InvalidJob`].
    pub fn from_task(
        task: &warden_api::JobDefinition,
        code_dir: impl Into<PathBuf>,
    ) -> Result<Self, crate::ExecutorError> {
        let mut output_spec = BTreeMap::new();
        for (glob, level) in &task.output_spec {
            let level =
                PrivacyLevel::parse(level).ok_or_else(|| crate::ExecutorError::InvalidJob {
                    job_id: task.id.clone(),
                    reason: format!(
                        "output {} has an unknown privacy level {}",
                        warden_pipeline::escape::escape_name(glob),
                        warden_pipeline::escape::escape_name(level)
                    ),
                })?;
            output_spec.insert(glob.clone(), level);
        }
        Ok(JobDefinition {
            task_id: Some(task.task_id.clone()),
            args: task.args.clone(),
            env: task.env.clone(),
            inputs: task.inputs.clone(),
            output_spec,
            cpu_count: task.cpu_count,
            memory_limit: task.memory_limit,
            created_at: task.created_at,
            repo_url: Some(task.repo_url.clone()),
            commit: Some(task.commit.clone()),
            created_by: Some(task.created_by.clone()),
            database_name: task.database_name.clone(),
            ..JobDefinition::new(
                task.id.clone(),
                task.request_id.clone(),
                task.workspace.clone(),
                task.action.clone(),
                task.image.clone(),
                code_dir,
            )
        })
    }

    /// Name of the job's container: `os-job-<id>`.
    pub fn container_name(&self) -> String {
        container_name(&self.id)
    }
}

/// Name of the container of the job with this id: `os-job-<id>`.
pub(crate) fn container_name(job_id: &str) -> String {
    format!("os-job-{job_id}")
}

/// Limits of the moderately_sensitive (level 4) checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level4Limits {
    /// Largest allowed file, bytes.
    pub max_file_size: u64,
    /// Most allowed data rows (after the header) in a CSV file.
    pub max_csv_rows: u64,
    /// Allowed extensions, with the dot (`.csv`).
    pub file_types: Vec<String>,
}

impl Default for Level4Limits {
    fn default() -> Self {
        Level4Limits {
            max_file_size: DEFAULT_LEVEL4_MAX_FILESIZE,
            max_csv_rows: DEFAULT_LEVEL4_MAX_CSV_ROWS,
            file_types: DEFAULT_LEVEL4_FILE_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// Where the executor keeps things.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorConfig {
    /// High-privacy store: where outputs land. For a local run it is the study
    /// directory itself.
    pub high_privacy_dir: PathBuf,
    /// Medium-privacy (level 4) store, if any: moderately_sensitive outputs
    /// that pass the checks are copied here. Local runs have none.
    #[serde(default)]
    pub medium_privacy_dir: Option<PathBuf>,
    /// When true, the two directories above are roots holding one directory
    /// per workspace (`<dir>/<workspace>`), as on a backend; when false they are
    /// the workspace itself, as in a local run.
    #[serde(default)]
    pub per_workspace_dirs: bool,
    /// Per-job working directories (`<volumes_dir>/<job id>`), bind-mounted at
    /// `/workspace`.
    pub volumes_dir: PathBuf,
    /// Job logs and metadata: `<log_dir>/<YYYY-MM>/os-job-<id>/{logs.txt,metadata.json}`.
    pub log_dir: PathBuf,
    /// Level-4 limits.
    #[serde(default)]
    pub level4: Level4Limits,
}

impl ExecutorConfig {
    /// A local-run configuration: outputs land in `study_dir`, working
    /// directories in `<study>/metadata/volumes`, logs in `<study>/metadata/logs`,
    /// and there is no medium-privacy store.
    pub fn local(study_dir: impl Into<PathBuf>) -> Self {
        let study_dir = study_dir.into();
        ExecutorConfig {
            volumes_dir: study_dir.join("metadata").join("volumes"),
            log_dir: study_dir.join("metadata").join("logs"),
            high_privacy_dir: study_dir,
            medium_privacy_dir: None,
            per_workspace_dirs: false,
            level4: Level4Limits::default(),
        }
    }

    /// High-privacy directory of `workspace`.
    pub fn high_privacy_workspace(&self, workspace: &str) -> PathBuf {
        if self.per_workspace_dirs {
            self.high_privacy_dir.join(workspace)
        } else {
            self.high_privacy_dir.clone()
        }
    }

    /// Medium-privacy directory of `workspace`, if there is a medium store.
    pub fn medium_privacy_workspace(&self, workspace: &str) -> Option<PathBuf> {
        self.medium_privacy_dir.as_ref().map(|dir| {
            if self.per_workspace_dirs {
                dir.join(workspace)
            } else {
                dir.clone()
            }
        })
    }

    /// The job's working directory.
    pub fn job_dir(&self, job: &JobDefinition) -> PathBuf {
        self.volumes_dir.join(&job.id)
    }

    /// The job's log directory (month of its creation).
    pub fn job_log_dir(&self, job: &JobDefinition) -> PathBuf {
        self.log_dir
            .join(crate::util::year_month(job.created_at))
            .join(job.container_name())
    }

    /// Where `metadata/manifest.json` of `workspace` lives: in the medium store
    /// if there is one, else in the high-privacy workspace.
    pub fn manifest_path(&self, workspace: &str) -> PathBuf {
        self.medium_privacy_workspace(workspace)
            .unwrap_or_else(|| self.high_privacy_workspace(workspace))
            .join("metadata")
            .join("manifest.json")
    }

    /// The high-privacy workspace as a no-follow tree (created if needed).
    pub(crate) fn high_tree(&self, workspace: &str) -> std::io::Result<crate::beneath::Tree> {
        crate::beneath::Tree::create_within(
            &self.high_privacy_dir,
            &self.high_privacy_workspace(workspace),
        )
    }

    /// The medium-privacy workspace as a no-follow tree, if there is a medium store.
    pub(crate) fn medium_tree(
        &self,
        workspace: &str,
    ) -> std::io::Result<Option<crate::beneath::Tree>> {
        match (
            &self.medium_privacy_dir,
            self.medium_privacy_workspace(workspace),
        ) {
            (Some(root), Some(ws)) => crate::beneath::Tree::create_within(root, &ws).map(Some),
            _ => Ok(None),
        }
    }

    /// The tree holding `metadata/manifest.json` of `workspace`.
    pub(crate) fn manifest_tree(&self, workspace: &str) -> std::io::Result<crate::beneath::Tree> {
        match self.medium_tree(workspace)? {
            Some(tree) => Ok(tree),
            None => self.high_tree(workspace),
        }
    }

    /// A directory of ours (logs, volumes) as a no-follow tree: reached
    /// beneath the high-privacy store when it lies inside it (a local run's
    /// `metadata/`), so a link committed in a study is refused there too.
    pub(crate) fn own_tree(&self, dir: &Path) -> std::io::Result<crate::beneath::Tree> {
        crate::beneath::Tree::create_within(&self.high_privacy_dir, dir)
    }

    /// Absolute form of every path (relative ones are taken from the current
    /// directory), so bind mounts and comparisons work.
    pub(crate) fn absolutized(&self) -> std::io::Result<Self> {
        fn abs(p: &Path) -> std::io::Result<PathBuf> {
            std::path::absolute(p)
        }
        Ok(ExecutorConfig {
            high_privacy_dir: abs(&self.high_privacy_dir)?,
            medium_privacy_dir: self.medium_privacy_dir.as_deref().map(abs).transpose()?,
            per_workspace_dirs: self.per_workspace_dirs,
            volumes_dir: abs(&self.volumes_dir)?,
            log_dir: abs(&self.log_dir)?,
            level4: self.level4.clone(),
        })
    }
}

/// Where a job is, as derived from the world (container, working directory,
/// metadata file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorState {
    /// Nothing is known: no metadata, no container, no complete working directory.
    Unknown,
    /// The working directory is complete (its timestamp marker exists); no
    /// container has started.
    Prepared,
    /// The container is running.
    Executing,
    /// The container has exited; results are not recorded yet.
    Executed,
    /// Results are recorded (metadata file written).
    Finalized,
    /// The executor failed on this job and recorded the error.
    Error,
}

impl ExecutorState {
    /// Lowercase name, as in the status codes.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorState::Unknown => "unknown",
            ExecutorState::Prepared => "prepared",
            ExecutorState::Executing => "executing",
            ExecutorState::Executed => "executed",
            ExecutorState::Finalized => "finalized",
            ExecutorState::Error => "error",
        }
    }
}

impl fmt::Display for ExecutorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's state plus when it was entered, if known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The state.
    pub state: ExecutorState,
    /// When the state was entered (ns since the epoch): the prepare marker,
    /// the container's start or finish, or the finalize time.
    pub timestamp_ns: Option<u64>,
}

/// How `finalize` ends a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finalize {
    /// The container exited by itself: collect outputs, check, record.
    Completed,
    /// The job was cancelled: record it, collect no outputs.
    Cancelled,
    /// The executor failed on the job: record the error, collect no outputs;
    /// the job ends in state `error`.
    Error(String),
}

/// How a job ended, as the controller decides it (job-runner §5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit 0 and every pattern matched.
    Succeeded,
    /// Non-zero (or no) exit code.
    NonzeroExit,
    /// Exit 0 but some output pattern matched no file.
    UnmatchedPatterns,
    /// Cancelled.
    Cancelled,
    /// The executor failed on the job.
    Error,
}

/// Results of a finished job, with file names: stays on the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct JobResults {
    /// Container exit code; `None` if no container ran.
    pub exit_code: Option<i64>,
    /// Docker's OOMKilled flag.
    #[serde(default)]
    pub oom_killed: bool,
    /// The job was cancelled.
    #[serde(default)]
    pub cancelled: bool,
    /// The executor's error, if it failed on the job.
    #[serde(default)]
    pub error: Option<String>,
    /// Outputs found: `{path: level}`.
    #[serde(default)]
    pub outputs: BTreeMap<String, PrivacyLevel>,
    /// Output patterns that matched no regular file.
    #[serde(default)]
    pub unmatched_patterns: Vec<String>,
    /// Files the job created (newer than the prepare marker) that no pattern
    /// matched: dropped, listed as a hint. A name that is not UTF-8 is given
    /// escaped (`warden_pipeline::escape::escape_path`).
    #[serde(default)]
    pub unmatched_outputs: Vec<String>,
    /// Entries that matched a pattern but are not regular files (symlinks,
    /// directories, fifos, devices, sockets): never copied. `{path: reason}`.
    #[serde(default)]
    pub skipped_outputs: BTreeMap<String, String>,
    /// moderately_sensitive outputs that failed the level-4 checks: `{path: reason}`.
    #[serde(default)]
    pub level4_excluded_files: BTreeMap<String, String>,
    /// The executor's message (job-runner §5.7), e.g. `Completed successfully`.
    #[serde(default)]
    pub status_message: Option<String>,
    /// A hint for the user, e.g. the undeclared files after unmatched patterns.
    #[serde(default)]
    pub hint: Option<String>,
    /// When the job was finalized (ns since the epoch).
    #[serde(default)]
    pub timestamp_ns: u64,
    /// Id of the image the container actually ran.
    #[serde(default)]
    pub image_id: Option<String>,
}

impl JobResults {
    /// The form that may leave the backend: no file names at all.
    pub fn redacted(&self) -> RedactedResults {
        // Our messages name files only when listing unmatched patterns, but
        // check against every name we know, so none can slip through.
        let names_a_file = |text: &str| {
            self.unmatched_patterns
                .iter()
                .chain(&self.unmatched_outputs)
                .chain(self.outputs.keys())
                .chain(self.skipped_outputs.keys())
                .chain(self.level4_excluded_files.keys())
                .any(|name| {
                    text.contains(name.as_str())
                        || text.contains(warden_pipeline::escape::escape_name(name).as_ref())
                })
        };
        RedactedResults {
            exit_code: self.exit_code,
            oom_killed: self.oom_killed,
            cancelled: self.cancelled,
            has_error: self.error.is_some(),
            fatal: false,
            has_unmatched_patterns: !self.unmatched_patterns.is_empty(),
            has_level4_excluded_files: !self.level4_excluded_files.is_empty(),
            level4_excluded_count: self.level4_excluded_files.len() as u64,
            has_skipped_outputs: !self.skipped_outputs.is_empty(),
            output_count: self.outputs.len() as u64,
            status_message: self.status_message.clone().filter(|m| !names_a_file(m)),
            timestamp_ns: self.timestamp_ns,
            image_id: self.image_id.clone(),
            job_metrics: None,
        }
    }

    /// How the job ended, in the reference controller's order (its final
    /// status code and message are `warden_state::StatusCode::for_results`
    /// of [`JobResults::redacted`]).
    pub fn outcome(&self) -> Outcome {
        if self.error.is_some() {
            Outcome::Error
        } else if self.cancelled {
            Outcome::Cancelled
        } else if self.exit_code != Some(0) {
            Outcome::NonzeroExit
        } else if !self.unmatched_patterns.is_empty() {
            Outcome::UnmatchedPatterns
        } else {
            Outcome::Succeeded
        }
    }
}

/// Results without any file name, for sending off the backend (job-runner
/// §5.9): the protocol's type, `warden_api::TaskResults`, which an agent
/// sends as it is.
pub type RedactedResults = warden_api::TaskResults;

impl From<ExecutorState> for warden_api::AgentStage {
    /// The stage an agent reports for a job in this state.
    fn from(state: ExecutorState) -> warden_api::AgentStage {
        match state {
            ExecutorState::Unknown => warden_api::AgentStage::Unknown,
            ExecutorState::Prepared => warden_api::AgentStage::Prepared,
            ExecutorState::Executing => warden_api::AgentStage::Executing,
            ExecutorState::Executed => warden_api::AgentStage::Executed,
            ExecutorState::Finalized => warden_api::AgentStage::Finalized,
            ExecutorState::Error => warden_api::AgentStage::Error,
        }
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Unknown (read back from a stored log file).
    Unknown,
}

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Source stream.
    pub stream: LogStream,
    /// Docker's RFC 3339 timestamp of the line, when known.
    pub timestamp: Option<String>,
    /// The text, without the trailing newline.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_becomes_a_definition() {
        let mut task = warden_api::JobDefinition {
            id: "abcdefghijklmnop".into(),
            request_id: "req".into(),
            task_id: "abcdefghijklmnop-002".into(),
            workspace: "ws".into(),
            action: "model".into(),
            repo_url: "https://example.org/study".into(),
            branch: "main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            image: "ghcr.io/opensafely-core/python:v2".into(),
            args: vec!["python".into(), "model.py".into()],
            env: BTreeMap::from([("OPENSAFELY_BACKEND".into(), "test".into())]),
            inputs: vec![],
            input_job_ids: BTreeMap::new(),
            output_spec: BTreeMap::from([
                ("output/a.csv".into(), "moderately_sensitive".into()),
                ("output/b.gz".into(), "highly_sensitive".into()),
            ]),
            allow_database_access: false,
            database_name: None,
            created_by: "alice".into(),
            cpu_count: 1.5,
            memory_limit: 1 << 30,
            created_at: 1_700_000_000,
            level4_max_filesize: 1,
            level4_max_csv_rows: 1,
            level4_file_types: vec![],
        };
        let def = JobDefinition::from_task(&task, "/code").unwrap();
        assert_eq!(def.id, task.id);
        assert_eq!(def.task_id.as_deref(), Some("abcdefghijklmnop-002"));
        assert_eq!(def.args, task.args);
        assert_eq!(def.env, task.env);
        assert_eq!(def.code_dir, PathBuf::from("/code"));
        assert_eq!(
            def.output_spec["output/a.csv"],
            PrivacyLevel::ModeratelySensitive
        );
        assert_eq!(def.cpu_count, 1.5);
        assert_eq!(def.memory_limit, 1 << 30);
        assert_eq!(def.created_at, 1_700_000_000);
        assert_eq!(def.commit.as_deref(), Some(task.commit.as_str()));
        for bad in ["secret", "", "Highly_Sensitive", "highly_sensitive\n"] {
            task.output_spec = BTreeMap::from([("output/x\x1b.csv".into(), bad.to_owned())]);
            let err = JobDefinition::from_task(&task, "/code").unwrap_err();
            let text = err.to_string();
            assert!(text.contains("unknown privacy level"), "{text}");
            assert!(!text.contains('\x1b'), "{text}");
        }
    }

    #[test]
    fn redaction_also_catches_escaped_names() {
        for name in [
            "out\tput.csv",
            "a\u{1b}[2J.csv",
            "rtl\u{202e}vsc.exe",
            "plain.csv",
        ] {
            let shown = warden_pipeline::escape::escape_name(name).into_owned();
            for message in [
                format!("No outputs found matching patterns:\n - {name}"),
                format!("No outputs found matching patterns:\n - {shown}"),
            ] {
                let results = JobResults {
                    exit_code: Some(0),
                    unmatched_patterns: vec![name.to_string()],
                    status_message: Some(message),
                    ..JobResults::default()
                };
                let redacted = serde_json::to_string(&results.redacted()).unwrap();
                assert!(!redacted.contains(&shown), "{redacted}");
                assert!(results.redacted().status_message.is_none());
            }
        }
    }
}
