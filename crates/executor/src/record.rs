//! What finalize writes down: the job's `metadata.json` (whose existence marks
//! the job finalized) and the log file with its summary trailer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use warden_pipeline::escape::escape_name;

use crate::error::{ExecutorError, Result};
use crate::types::{ExecutorConfig, JobDefinition, JobResults};

/// Write `contents` to `rel` beneath `tree`, as an executor error.
fn write_beneath(tree: &crate::beneath::Tree, rel: &Path, contents: &[u8]) -> Result<()> {
    tree.write_atomic(rel, contents)
        .map_err(ExecutorError::io("writing", tree.path().join(rel)))
}

/// Where the job's log directory is beneath the log tree.
pub(crate) fn job_log_rel(job: &JobDefinition) -> PathBuf {
    PathBuf::from(crate::util::year_month(job.created_at)).join(job.container_name())
}

fn log_tree(config: &ExecutorConfig) -> Result<crate::beneath::Tree> {
    config
        .own_tree(&config.log_dir)
        .map_err(ExecutorError::io("opening log directory", &config.log_dir))
}

/// Name of the metadata file in a job's log directory.
pub const METADATA_FILE: &str = "metadata.json";
/// Largest `metadata.json` read back (they are a few tens of KB).
const MAX_METADATA_BYTES: u64 = 64 * 1024 * 1024;
/// Name of the log file in a job's log directory.
pub const LOG_FILE: &str = "logs.txt";
/// The line that separates the container's output from the job summary in a
/// job log (`logs.txt`, `metadata/<action>.log`).
pub const LOG_SUMMARY_MARKER: &str = "=============JOB SUMMARY=============";

/// Environment variables whose values may be kept in stored container
/// metadata; every other value is replaced by [`REDACTED`].
pub const SAFE_ENV_VARS: &[&str] = &[
    "PATH",
    "PYTHON_VERSION",
    "DEBIAN_FRONTEND",
    "DEBCONF_NONINTERACTIVE_SEEN",
    "UBUNTU_VERSION",
    "PYENV_SHELL",
    "PYENV_VERSION",
    "PYTHONUNBUFFERED",
    "OPENSAFELY_BACKEND",
    "TZ",
    "TEMP_DATABASE_NAME",
    "PYTHONPATH",
    "container",
    "LANG",
    "LC_ALL",
    "HOME",
];

/// Replacement for redacted environment values.
pub const REDACTED: &str = "xxxx-REDACTED-xxxx";

/// Everything recorded about a finished job, stored as `metadata.json` in its
/// log directory. Readers tolerate missing fields (defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct JobMetadata {
    /// Job id.
    pub job_definition_id: String,
    /// Job request id.
    #[serde(default)]
    pub job_definition_request_id: String,
    /// Task id, if the caller uses them.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Workspace name.
    #[serde(default)]
    pub workspace: String,
    /// Action name.
    #[serde(default)]
    pub action: String,
    /// Requested image reference.
    #[serde(default)]
    pub image: String,
    /// Job creation time, Unix seconds.
    #[serde(default)]
    pub created_at: i64,
    /// Finalize time, Unix seconds.
    #[serde(default)]
    pub completed_at: i64,
    /// Study commit.
    #[serde(default)]
    pub commit: Option<String>,
    /// Database name.
    #[serde(default)]
    pub database_name: Option<String>,
    /// Who asked for the job.
    #[serde(default)]
    pub user: Option<String>,
    /// Image labels (`org.opencontainers.image.version` …), `unknown` if absent.
    #[serde(default)]
    pub action_version: String,
    /// `org.opencontainers.image.revision`.
    #[serde(default)]
    pub action_revision: String,
    /// `org.opencontainers.image.created`.
    #[serde(default)]
    pub action_created: String,
    /// `org.opensafely.base.vcs-ref`.
    #[serde(default)]
    pub base_revision: String,
    /// `org.opencontainers.base.build-date`.
    #[serde(default)]
    pub base_created: String,
    /// Docker's inspect of the container, environment values redacted; null if none ran.
    #[serde(default)]
    pub container_metadata: serde_json::Value,
    /// The results.
    #[serde(flatten)]
    pub results: JobResults,
}

/// Path of the job's metadata file.
pub(crate) fn metadata_path(config: &ExecutorConfig, job: &JobDefinition) -> PathBuf {
    config.job_log_dir(job).join(METADATA_FILE)
}

/// Read the job's metadata, if it is this task's (metadata of another task id
/// is ignored, so a retry under a new task starts fresh).
pub(crate) fn read_metadata(
    config: &ExecutorConfig,
    job: &JobDefinition,
) -> Result<Option<JobMetadata>> {
    let path = metadata_path(config, job);
    let read = crate::beneath::Tree::open_within(&config.high_privacy_dir, &config.log_dir)
        .and_then(|tree| {
            tree.read_limited(&job_log_rel(job).join(METADATA_FILE), MAX_METADATA_BYTES)
        });
    let bytes = match read {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ExecutorError::io("reading job metadata", &path)(e)),
    };
    let meta: JobMetadata =
        serde_json::from_slice(&bytes).map_err(|source| ExecutorError::Json {
            operation: "reading job metadata",
            path: path.clone(),
            source,
        })?;
    if let (Some(ours), Some(theirs)) = (&job.task_id, &meta.task_id)
        && ours != theirs
    {
        return Ok(None);
    }
    Ok(Some(meta))
}

/// Write the job's metadata atomically (this marks the job finalized).
pub(crate) fn write_metadata(
    config: &ExecutorConfig,
    job: &JobDefinition,
    meta: &JobMetadata,
) -> Result<()> {
    let path = metadata_path(config, job);
    let text = serde_json::to_vec_pretty(meta).map_err(|source| ExecutorError::Json {
        operation: "serialising job metadata",
        path: path.clone(),
        source,
    })?;
    write_beneath(
        &log_tree(config)?,
        &job_log_rel(job).join(METADATA_FILE),
        &text,
    )
}

/// Replace the values of environment variables not on the safe-list in a
/// Docker inspect document (`Config.Env`).
pub(crate) fn redact_env(inspect: &mut serde_json::Value) {
    let Some(env) = inspect
        .get_mut("Config")
        .and_then(|c| c.get_mut("Env"))
        .and_then(|e| e.as_array_mut())
    else {
        return;
    };
    for item in env.iter_mut() {
        if let Some(s) = item.as_str() {
            let (name, _) = s.split_once('=').unwrap_or((s, ""));
            if !SAFE_ENV_VARS.contains(&name) {
                *item = serde_json::Value::String(format!("{name}={REDACTED}"));
            }
        }
    }
}

/// Two columns, the first padded, separated by `  - `, each row indented.
fn tabulate(rows: &[(String, String)], indent: usize, empty: &str) -> String {
    let pad = " ".repeat(indent);
    if rows.is_empty() {
        return format!("{pad}{empty}");
    }
    let width = rows
        .iter()
        .map(|(a, _)| a.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(a, b)| {
            let fill = " ".repeat(width - a.chars().count());
            format!("{pad}{a}{fill}  - {b}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The summary appended to the container's output in the job log.
pub(crate) fn log_trailer(meta: &JobMetadata) -> String {
    let r = &meta.results;
    let mut out = String::new();
    out.push_str("\n\n");
    out.push_str(LOG_SUMMARY_MARKER);
    out.push('\n');
    let exit_code = r.exit_code.map(|c| c.to_string());
    let created_at = meta.created_at.to_string();
    let completed_at = meta.completed_at.to_string();
    let fields: [(&str, Option<&str>); 10] = [
        ("job_definition_id", Some(&meta.job_definition_id)),
        (
            "job_definition_request_id",
            Some(&meta.job_definition_request_id),
        ),
        ("commit", meta.commit.as_deref()),
        ("docker_image_id", r.image_id.as_deref()),
        ("exit_code", exit_code.as_deref()),
        ("created_at", Some(&created_at)),
        ("completed_at", Some(&completed_at)),
        ("database_name", meta.database_name.as_deref()),
        ("status_message", r.status_message.as_deref()),
        ("hint", r.hint.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push_str(&format!("{key}: {v}\n"));
        }
    }
    // every name through the one escaping function: a name is the job's
    let outputs: Vec<(String, String)> = r
        .outputs
        .iter()
        .map(|(p, l)| (escape_name(p).into_owned(), l.to_string()))
        .collect();
    out.push_str("\noutputs:\n");
    out.push_str(&tabulate(&outputs, 2, "(no outputs)"));
    let tables: [(&str, &BTreeMap<String, String>); 2] = [
        (
            "Invalid moderately_sensitive outputs:",
            &r.level4_excluded_files,
        ),
        ("Skipped outputs (not regular files):", &r.skipped_outputs),
    ];
    for (title, map) in tables {
        if !map.is_empty() {
            let rows: Vec<(String, String)> = map
                .iter()
                .map(|(a, b)| (escape_name(a).into_owned(), escape_name(b).into_owned()))
                .collect();
            out.push_str(&format!("\n\n{title}\n"));
            out.push_str(&tabulate(&rows, 2, ""));
        }
    }
    out.push('\n');
    out
}

/// The container-output part of a stored job log (everything before the summary).
pub fn container_part_of_log(log: &str) -> &str {
    match log.find(&format!("\n\n{LOG_SUMMARY_MARKER}\n")) {
        Some(i) => &log[..i],
        None => log,
    }
}

/// Write `logs.txt` in the job's log directory, and copy it to the workspace
/// `metadata/<action>.log` (high and, if any, medium) when `to_workspace`.
pub(crate) fn write_logs(
    config: &ExecutorConfig,
    job: &JobDefinition,
    container_log: &[u8],
    meta: &JobMetadata,
    to_workspace: bool,
) -> Result<PathBuf> {
    let mut text = container_log.to_vec();
    text.extend_from_slice(log_trailer(meta).as_bytes());
    let log_path = config.job_log_dir(job).join(LOG_FILE);
    write_beneath(&log_tree(config)?, &job_log_rel(job).join(LOG_FILE), &text)?;
    if to_workspace {
        let rel = Path::new("metadata").join(format!("{}.log", job.action));
        let high_ws = config.high_privacy_workspace(&job.workspace);
        let high = config
            .high_tree(&job.workspace)
            .map_err(ExecutorError::io("opening workspace", &high_ws))?;
        write_beneath(&high, &rel, &text)?;
        if let Some(medium) = config
            .medium_tree(&job.workspace)
            .map_err(ExecutorError::io("opening workspace", &high_ws))?
        {
            write_beneath(&medium, &rel, &text)?;
        }
        return Ok(high_ws.join(rel));
    }
    Ok(log_path)
}

/// Path of the job's stored log file.
pub(crate) fn log_path(config: &ExecutorConfig, job: &JobDefinition) -> PathBuf {
    config.job_log_dir(job).join(LOG_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PrivacyLevel;

    #[test]
    fn trailer_format() {
        let mut meta = JobMetadata {
            job_definition_id: "abc".into(),
            job_definition_request_id: "req".into(),
            created_at: 10,
            completed_at: 20,
            ..JobMetadata::default()
        };
        meta.results.exit_code = Some(0);
        meta.results.status_message = Some("Completed successfully".into());
        meta.results.outputs = BTreeMap::from([
            (
                "output/a.csv".to_string(),
                PrivacyLevel::ModeratelySensitive,
            ),
            (
                "output/longer.csv".to_string(),
                PrivacyLevel::HighlySensitive,
            ),
        ]);
        meta.results.level4_excluded_files = BTreeMap::from([(
            "output/a.csv".to_string(),
            "File has patient_id column".to_string(),
        )]);
        let t = log_trailer(&meta);
        assert_eq!(
            t,
            "\n\n=============JOB SUMMARY=============\n\
             job_definition_id: abc\n\
             job_definition_request_id: req\n\
             exit_code: 0\n\
             created_at: 10\n\
             completed_at: 20\n\
             status_message: Completed successfully\n\
             \noutputs:\n\
             \x20 output/a.csv       - moderately_sensitive\n\
             \x20 output/longer.csv  - highly_sensitive\n\
             \nInvalid moderately_sensitive outputs:\n\
             \x20 output/a.csv  - File has patient_id column\n"
        );
        let log = format!("line 1\nline 2{t}");
        assert_eq!(container_part_of_log(&log), "line 1\nline 2");
    }

    #[test]
    fn empty_outputs() {
        let t = log_trailer(&JobMetadata::default());
        assert!(t.contains("\noutputs:\n  (no outputs)\n"));
    }

    #[test]
    fn env_redaction() {
        let mut v = serde_json::json!({"Config": {"Env": ["PATH=/bin", "SECRET=x", "OPENSAFELY_BACKEND=expectations", "NOVALUE"]}});
        redact_env(&mut v);
        assert_eq!(
            v["Config"]["Env"],
            serde_json::json!([
                "PATH=/bin",
                "SECRET=xxxx-REDACTED-xxxx",
                "OPENSAFELY_BACKEND=expectations",
                "NOVALUE=xxxx-REDACTED-xxxx"
            ])
        );
    }
}
