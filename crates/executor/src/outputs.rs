//! Finding a finished job's outputs and filing them by privacy level.
//!
//! Engine-independent: works on the job's working directory once its
//! container has stopped.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{ExecutorError, Result};
use crate::fsops::{AtomicCopier, Entry, Kind, hex, open_regular, remove_if_exists, walk};
use crate::glob::Glob;
use crate::level4::check_file;
use crate::types::{ExecutorConfig, JobDefinition, PrivacyLevel, TIMESTAMP_FILE};
use crate::util::{now_secs, write_atomic};

/// What the job left in its working directory, matched against its output spec.
#[derive(Debug, Default, Clone)]
pub(crate) struct Collected {
    /// `{path: (level, relative path on disk)}` — regular files only.
    pub outputs: BTreeMap<String, (PrivacyLevel, PathBuf)>,
    pub unmatched_patterns: Vec<String>,
    /// New files (newer than the prepare marker) no pattern matched.
    pub unmatched_outputs: Vec<String>,
    /// Matches that are not regular files: `{path: reason}`.
    pub skipped: BTreeMap<String, String>,
}

/// When several patterns match one file, the most restrictive level wins, so
/// a file is only copied to the medium store if every pattern allows it.
fn restrictiveness(level: PrivacyLevel) -> u8 {
    match level {
        PrivacyLevel::HighlySensitive => 0,
        PrivacyLevel::MinimallySensitive => 1,
        PrivacyLevel::ModeratelySensitive => 2,
    }
}

/// Match `spec` against the files under `job_dir`.
pub(crate) fn collect(job_dir: &Path, spec: &BTreeMap<String, PrivacyLevel>) -> Result<Collected> {
    let entries = walk(job_dir)?;
    let globs: Vec<(Glob, PrivacyLevel)> = spec.iter().map(|(p, l)| (Glob::new(p), *l)).collect();
    let marker_mtime = fs::symlink_metadata(job_dir.join(TIMESTAMP_FILE))
        .ok()
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
        });

    let mut collected = Collected::default();
    let mut pattern_hit = vec![false; globs.len()];
    for Entry {
        rel,
        path,
        kind,
        mtime_ns,
    } in entries
    {
        if rel == TIMESTAMP_FILE {
            continue;
        }
        let mut level: Option<PrivacyLevel> = None;
        let mut matched_any = false;
        for (i, (glob, l)) in globs.iter().enumerate() {
            if glob.matches(&rel) {
                matched_any = true;
                if kind == Kind::File {
                    pattern_hit[i] = true;
                    level = Some(match level {
                        Some(prev) if restrictiveness(prev) <= restrictiveness(*l) => prev,
                        _ => *l,
                    });
                } else {
                    collected
                        .skipped
                        .insert(rel.clone(), kind.skip_reason().to_string());
                }
            }
        }
        match level {
            Some(level) => {
                collected.outputs.insert(rel, (level, path));
            }
            None => {
                if !matched_any && kind != Kind::Dir && marker_mtime.is_some_and(|m| mtime_ns > m) {
                    collected.unmatched_outputs.push(rel);
                }
            }
        }
    }
    collected.unmatched_outputs.sort();
    collected.unmatched_patterns = globs
        .iter()
        .zip(pattern_hit)
        .filter(|(_, hit)| !hit)
        .map(|((g, _), _)| g.as_str().to_string())
        .collect();
    Ok(collected)
}

/// The result of filing outputs.
#[derive(Debug, Default)]
pub(crate) struct Persisted {
    /// `{path: reason}` of moderately_sensitive files that failed the checks.
    pub level4_excluded: BTreeMap<String, String>,
    /// `{path: reason}` of matches that turned out not to be regular files
    /// when copied.
    pub skipped: BTreeMap<String, String>,
    /// Manifest entries for every output.
    pub manifest_entries: BTreeMap<String, Value>,
}

/// What happened to one output.
enum Filed {
    /// Not a regular file when it came to copying it.
    Skipped(String),
    /// Copied; level-4 reason if excluded; manifest entry.
    Done(Option<String>, Value),
}

/// Outputs are filed by this many threads at most: creating files is mostly
/// kernel time, and a few threads get through 10,000 small files much faster
/// than one.
const MAX_FILING_THREADS: usize = 4;

/// Copy every output to the high-privacy workspace (atomically), run the
/// level-4 checks on moderately_sensitive ones, copy those that pass to the
/// medium store (if any) and write explanations for those that don't.
pub(crate) fn persist(
    config: &ExecutorConfig,
    job: &JobDefinition,
    job_dir: &Path,
    outputs: &BTreeMap<String, (PrivacyLevel, PathBuf)>,
) -> Result<Persisted> {
    let items: Vec<(&String, &(PrivacyLevel, PathBuf))> = outputs.iter().collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_FILING_THREADS)
        .min(items.len().div_ceil(256).max(1));
    let chunk = items.len().div_ceil(threads).max(1);

    let filed: Vec<Result<Vec<(String, Filed)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut high_copier = AtomicCopier::default();
                    let mut medium_copier = AtomicCopier::default();
                    part.iter()
                        .map(|(rel, (level, disk_rel))| {
                            let filed = file_one(
                                config,
                                job,
                                job_dir,
                                rel,
                                *level,
                                disk_rel,
                                &mut high_copier,
                                &mut medium_copier,
                            )?;
                            Ok(((*rel).clone(), filed))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ExecutorError::Task {
                        job_id: job.id.clone(),
                        reason: "a thread filing outputs panicked".to_string(),
                    })
                })
            })
            .collect()
    });

    let mut persisted = Persisted::default();
    for part in filed {
        for (rel, filed) in part? {
            match filed {
                Filed::Skipped(reason) => {
                    persisted.skipped.insert(rel, reason);
                }
                Filed::Done(excluded, entry) => {
                    if let Some(reason) = excluded {
                        persisted.level4_excluded.insert(rel.clone(), reason);
                    }
                    persisted.manifest_entries.insert(rel, entry);
                }
            }
        }
    }
    Ok(persisted)
}

#[allow(clippy::too_many_arguments)]
fn file_one(
    config: &ExecutorConfig,
    job: &JobDefinition,
    job_dir: &Path,
    rel: &str,
    level: PrivacyLevel,
    disk_rel: &Path,
    high_copier: &mut AtomicCopier,
    medium_copier: &mut AtomicCopier,
) -> Result<Filed> {
    let src = job_dir.join(disk_rel);
    let dest = config.high_privacy_workspace(&job.workspace).join(disk_rel);
    tracing::debug!(job = %job.id, file = %rel, "extracting output file");
    let (size, hash) = match high_copier.copy(&src, &dest) {
        Ok(v) => v,
        Err(e)
            if e.kind() == std::io::ErrorKind::InvalidInput
                || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            // not a regular file any more (ELOOP: a symlink now)
            return Ok(Filed::Skipped(
                "is not a regular file: never copied".to_string(),
            ));
        }
        Err(e) => return Err(ExecutorError::io("copying output to", &dest)(e)),
    };

    let mut excluded = None;
    let (mut row_count, mut col_count) = (None, None);
    if level == PrivacyLevel::ModeratelySensitive {
        let check = check_file(rel, size, &config.level4, || open_regular(&dest));
        row_count = check.row_count;
        col_count = check.col_count;
        if let Some(medium) = config.medium_privacy_workspace(&job.workspace) {
            let medium_file = medium.join(disk_rel);
            let note = note_path(&medium_file);
            match &check.explanation {
                None => {
                    medium_copier
                        .copy(&dest, &medium_file)
                        .map_err(ExecutorError::io("copying output to", &medium_file))?;
                    remove_if_exists(&note)
                        .map_err(ExecutorError::io("removing old explanation", &note))?;
                }
                Some(text) => {
                    write_atomic(&note, text.as_bytes())?;
                    remove_if_exists(&medium_file)
                        .map_err(ExecutorError::io("removing excluded file", &medium_file))?;
                }
            }
        }
        excluded = check.message;
    }

    let mtime = fs::metadata(&dest)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    let entry = json!({
        "level": level.as_str(),
        "job_id": job.id,
        "job_request": job.request_id,
        "action": job.action,
        "user": job.created_by,
        "repo": job.repo_url,
        "commit": job.commit,
        "size": size,
        "timestamp": mtime,
        "content_hash": hex(&hash),
        "excluded": excluded.is_some(),
        "message": excluded,
        "row_count": row_count,
        "col_count": col_count,
        "out_of_date_output": false,
    });
    Ok(Filed::Done(excluded, entry))
}

/// `<path>.txt` next to `path`.
fn note_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".txt");
    path.with_file_name(name)
}

/// Upsert this job's entries into the workspace manifest (atomically), marking
/// earlier entries of the same action that this run did not produce as
/// `out_of_date_output`. A corrupt manifest is moved aside, not fatal.
pub(crate) fn update_manifest(
    config: &ExecutorConfig,
    job: &JobDefinition,
    entries: &BTreeMap<String, Value>,
) -> Result<()> {
    let path = config.manifest_path(&job.workspace);
    let mut manifest = match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("outputs").is_some_and(Value::is_object) => v,
            _ => {
                let aside = path.with_extension(format!("json.corrupt-{}", now_secs()));
                tracing::warn!(manifest = %path.display(), moved_to = %aside.display(), "manifest is not valid JSON; starting a new one");
                fs::rename(&path, &aside).map_err(ExecutorError::io("moving aside", &path))?;
                new_manifest(&job.workspace)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_manifest(&job.workspace),
        Err(e) => return Err(ExecutorError::io("reading manifest", &path)(e)),
    };
    let outputs = manifest
        .get_mut("outputs")
        .and_then(Value::as_object_mut)
        .expect("checked above");
    for (name, entry) in outputs.iter_mut() {
        if entry.get("action").and_then(Value::as_str) == Some(job.action.as_str())
            && !entries.contains_key(name)
            && let Some(obj) = entry.as_object_mut()
        {
            obj.insert("out_of_date_output".to_string(), Value::Bool(true));
        }
    }
    for (name, entry) in entries {
        outputs.insert(name.clone(), entry.clone());
    }
    let text = serde_json::to_vec_pretty(&manifest).map_err(|source| ExecutorError::Json {
        operation: "serialising manifest",
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &text)
}

fn new_manifest(workspace: &str) -> Value {
    json!({"workspace": workspace, "repo": null, "outputs": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "warden-outputs-{}-{}",
            std::process::id(),
            crate::util::now_ns()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn collect_matches_files_and_reports_the_rest() {
        let dir = tempdir();
        fs::create_dir_all(dir.join("output/sub.csv")).unwrap();
        fs::write(dir.join("old.txt"), "before").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.join(TIMESTAMP_FILE), "1").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.join("output/a.csv"), "a").unwrap();
        fs::write(dir.join("output/b.txt"), "b").unwrap();
        fs::write(dir.join("output/stray.log"), "c").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("output/link.csv")).unwrap();

        let spec = BTreeMap::from([
            (
                "output/*.csv".to_string(),
                PrivacyLevel::ModeratelySensitive,
            ),
            ("output/b.txt".to_string(), PrivacyLevel::HighlySensitive),
            (
                "output/*.txt".to_string(),
                PrivacyLevel::ModeratelySensitive,
            ),
            (
                "output/missing.json".to_string(),
                PrivacyLevel::HighlySensitive,
            ),
        ]);
        let c = collect(&dir, &spec).unwrap();
        let outputs: Vec<_> = c.outputs.iter().map(|(k, v)| (k.as_str(), v.0)).collect();
        assert_eq!(
            outputs,
            [
                ("output/a.csv", PrivacyLevel::ModeratelySensitive),
                // the most restrictive level of the matching patterns
                ("output/b.txt", PrivacyLevel::HighlySensitive),
            ]
        );
        assert_eq!(c.unmatched_patterns, ["output/missing.json"]);
        assert_eq!(c.unmatched_outputs, ["output/stray.log"]);
        assert_eq!(c.skipped.len(), 2);
        assert!(c.skipped["output/link.csv"].contains("symbolic link"));
        assert!(c.skipped["output/sub.csv"].contains("directory"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pattern_matching_only_a_link_is_unmatched() {
        let dir = tempdir();
        fs::create_dir_all(dir.join("output")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("output/passwd.csv")).unwrap();
        let spec = BTreeMap::from([(
            "output/passwd.csv".to_string(),
            PrivacyLevel::HighlySensitive,
        )]);
        let c = collect(&dir, &spec).unwrap();
        assert!(c.outputs.is_empty());
        assert_eq!(c.unmatched_patterns, ["output/passwd.csv"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifest_upsert_marks_stale_outputs() {
        let dir = tempdir();
        let config = ExecutorConfig::local(&dir);
        let job = JobDefinition::new("j1", "r1", "ws", "act", "img", &dir);
        let e = |n: &str| (n.to_string(), json!({"action": "act", "size": 1}));
        update_manifest(&config, &job, &BTreeMap::from([e("a.csv"), e("b.csv")])).unwrap();
        update_manifest(&config, &job, &BTreeMap::from([e("a.csv")])).unwrap();
        let m: Value =
            serde_json::from_slice(&fs::read(config.manifest_path("ws")).unwrap()).unwrap();
        assert_eq!(m["workspace"], "ws");
        assert_eq!(m["outputs"]["b.csv"]["out_of_date_output"], true);
        assert!(m["outputs"]["a.csv"].get("out_of_date_output").is_none());
        // corrupt manifests are moved aside
        fs::write(config.manifest_path("ws"), "{not json").unwrap();
        update_manifest(&config, &job, &BTreeMap::from([e("c.csv")])).unwrap();
        let m: Value =
            serde_json::from_slice(&fs::read(config.manifest_path("ws")).unwrap()).unwrap();
        assert_eq!(m["outputs"].as_object().unwrap().len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
