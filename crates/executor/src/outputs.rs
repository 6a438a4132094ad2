//! Finding a finished job's outputs and filing them by privacy level.
//!
//! Engine-independent: works on the job's working directory once its
//! container has stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::beneath::{Tree, link_refused};
use crate::error::{ExecutorError, Result};
use crate::fsops::{AtomicCopier, Entry, Kind, hex, walk};
use crate::glob::Glob;
use crate::level4::check_file;
use crate::types::{ExecutorConfig, JobDefinition, PrivacyLevel, TIMESTAMP_FILE};
use crate::util::now_secs;
use warden_pipeline::escape::escape_path;

/// Largest `metadata/manifest.json` read (10,000 outputs take about 5 MB).
const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;

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

/// Match `spec` against the files under the job's working directory `job_dir`.
///
/// A file whose path is not valid UTF-8 and that a pattern would match (on
/// its lossy form) fails the job ([`ExecutorError::UnusableOutputNames`]):
/// recorded lossily it could collapse onto another output's name and one of
/// them would be silently lost.
pub(crate) fn collect(
    job: &JobDefinition,
    job_dir: &Tree,
    spec: &BTreeMap<String, PrivacyLevel>,
) -> Result<Collected> {
    let entries = walk(job_dir).map_err(|e| ExecutorError::JobTree {
        job_id: job.id.clone(),
        reason: e.to_string(),
    })?;
    let globs: Vec<(Glob, PrivacyLevel)> = spec.iter().map(|(p, l)| (Glob::new(p), *l)).collect();
    let marker_mtime = rustix::fs::statat(
        job_dir.fd(),
        TIMESTAMP_FILE,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .ok()
    .map(|st| st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128);
    let unusable: Vec<String> = entries
        .iter()
        .filter(|e| !e.utf8 && e.kind == Kind::File)
        .filter(|e| globs.iter().any(|(g, _)| g.matches(&e.rel)))
        .map(|e| escape_path(&e.path).into_owned())
        .collect();
    if !unusable.is_empty() {
        return Err(ExecutorError::UnusableOutputNames {
            job_id: job.id.clone(),
            count: unusable.len(),
            names: unusable,
        });
    }

    let mut collected = Collected::default();
    let mut pattern_hit = vec![false; globs.len()];
    for Entry {
        rel,
        path,
        kind,
        mtime_ns,
        utf8,
    } in entries
    {
        if rel == TIMESTAMP_FILE {
            continue;
        }
        // A name that is not UTF-8 is listed (skipped, unmatched) in its
        // escaped form: exact and distinct, where the lossy form is neither.
        let rel = if utf8 {
            rel
        } else {
            escape_path(&path).into_owned()
        };
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
    job_dir: &Tree,
    outputs: &BTreeMap<String, (PrivacyLevel, PathBuf)>,
) -> Result<Persisted> {
    let high_path = config.high_privacy_workspace(&job.workspace);
    let high = config
        .high_tree(&job.workspace)
        .map_err(ExecutorError::io("opening workspace", &high_path))?;
    let medium = config
        .medium_tree(&job.workspace)
        .map_err(ExecutorError::io("opening workspace", &high_path))?;
    let (high, medium) = (&high, &medium);
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
                    let mut high_copier = AtomicCopier::new(high.clone());
                    let mut medium_copier = medium.clone().map(AtomicCopier::new);
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
                                medium_copier.as_mut(),
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
    job_dir: &Tree,
    rel: &str,
    level: PrivacyLevel,
    disk_rel: &Path,
    high_copier: &mut AtomicCopier,
    medium_copier: Option<&mut AtomicCopier>,
) -> Result<Filed> {
    let src = job_dir.path().join(disk_rel);
    let dest = high_copier.dest().path().join(disk_rel);
    tracing::debug!(job = %job.id, file = %rel, "extracting output file");
    let mut input = match job_dir.open_file(disk_rel) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput || link_refused(&e).is_some() => {
            // not a regular file any more (a symlink now, or under one)
            return Ok(Filed::Skipped(
                "is not a regular file: never copied".to_string(),
            ));
        }
        Err(e) => return Err(ExecutorError::io("reading output", &src)(e)),
    };
    let (size, hash) = high_copier
        .write_from(&mut input, disk_rel)
        .map_err(ExecutorError::io("copying output to", &dest))?;
    drop(input);

    let mut excluded = None;
    let (mut row_count, mut col_count) = (None, None);
    if level == PrivacyLevel::ModeratelySensitive {
        let high = high_copier.dest().clone();
        let check = check_file(rel, size, &config.level4, || high.open_file(disk_rel));
        row_count = check.row_count;
        col_count = check.col_count;
        if let Some(medium_copier) = medium_copier {
            let medium = medium_copier.dest().clone();
            let medium_file = medium.path().join(disk_rel);
            let note = note_path(disk_rel);
            match &check.explanation {
                None => {
                    medium_copier
                        .copy(&high, disk_rel, disk_rel)
                        .map_err(ExecutorError::io("copying output to", &medium_file))?;
                    medium.remove_file(&note).map_err(ExecutorError::io(
                        "removing old explanation",
                        medium.path().join(&note),
                    ))?;
                }
                Some(text) => {
                    medium
                        .write_atomic(&note, text.as_bytes())
                        .map_err(ExecutorError::io("writing", medium.path().join(&note)))?;
                    medium
                        .remove_file(disk_rel)
                        .map_err(ExecutorError::io("removing excluded file", &medium_file))?;
                }
            }
        }
        excluded = check.message;
    }

    let mtime = high_copier
        .dest()
        .open_file(disk_rel)
        .and_then(|f| f.metadata())
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
    let tree = config
        .manifest_tree(&job.workspace)
        .map_err(ExecutorError::io("opening workspace", &path))?;
    let rel = Path::new("metadata").join("manifest.json");
    let mut manifest = match tree.read_limited(&rel, MAX_MANIFEST_BYTES) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("outputs").is_some_and(Value::is_object) => v,
            _ => {
                let aside = rel.with_extension(format!("json.corrupt-{}", now_secs()));
                tracing::warn!(manifest = %path.display(), moved_to = %aside.display(), "manifest is not valid JSON; starting a new one");
                tree.rename(&rel, &aside)
                    .map_err(ExecutorError::io("moving aside", &path))?;
                new_manifest(&job.workspace)
            }
        },
        Ok(None) => new_manifest(&job.workspace),
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
    tree.write_atomic(&rel, &text)
        .map_err(ExecutorError::io("writing", &path))
}

fn new_manifest(workspace: &str) -> Value {
    json!({"workspace": workspace, "repo": null, "outputs": {}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
        let job = JobDefinition::new("t", "r", "w", "a", "i", &dir);
        let c = collect(&job, &Tree::open(&dir).unwrap(), &spec).unwrap();
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
        let job = JobDefinition::new("t", "r", "w", "a", "i", &dir);
        let c = collect(&job, &Tree::open(&dir).unwrap(), &spec).unwrap();
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
