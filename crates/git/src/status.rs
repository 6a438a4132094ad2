//! What a local run sees that a backend would not: the working tree against HEAD.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cache::CommitId;
use crate::cmd;
use crate::error::{GitError, Result};

/// How the working tree under a directory differs from its HEAD commit, which is
/// all a backend would run. Paths are relative to the directory asked about;
/// directories (only in `ignored`, and untracked nested repositories) end in `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorktreeStatus {
    /// The top of the work tree (the directory holding `.git`).
    pub root: PathBuf,
    /// The HEAD commit; `None` before the first commit.
    pub head: Option<CommitId>,
    /// The checked-out branch; `None` when HEAD is detached.
    pub branch: Option<String>,
    /// Tracked files whose content or mode differs from HEAD, staged or not,
    /// including files added to the index but not yet committed, the new names of
    /// renamed files and unmerged files.
    pub modified: Vec<PathBuf>,
    /// Files in HEAD that are missing from the working tree: a backend would have
    /// them, a local run does not.
    pub deleted: Vec<PathBuf>,
    /// Files git does not track and does not ignore.
    pub untracked: Vec<PathBuf>,
    /// Files and directories matched by an ignore rule (`.gitignore`,
    /// `.git/info/exclude`): a backend never sees these either. An ignored directory
    /// is listed once, not file by file.
    pub ignored: Vec<PathBuf>,
}

impl WorktreeStatus {
    /// True when nothing is modified, deleted or untracked (ignored files aside):
    /// a local run would see exactly what HEAD holds, apart from ignored files.
    pub fn is_clean(&self) -> bool {
        self.modified.is_empty() && self.deleted.is_empty() && self.untracked.is_empty()
    }
}

/// The status of the working tree at or under `dir`, restricted to `dir`; `None`
/// when `dir` is not inside a git work tree (not in a repository, or inside a bare
/// repository or a `.git` directory).
///
/// Uses `git status --porcelain=v2 -z` (file names with spaces, newlines or
/// non-UTF-8 bytes survive) with `--no-optional-locks`, so the user's index is not
/// rewritten and a concurrent git command in their terminal is not disturbed.
pub fn worktree_status(dir: &Path) -> Result<Option<WorktreeStatus>> {
    let shown = dir.display().to_string();
    if !dir.is_dir() {
        return Err(GitError::Io {
            action: "read the working tree",
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let run = |cmd: &mut std::process::Command, op: &str| {
        cmd::run(cmd, None).map_err(|err| match err {
            cmd::RunError::Spawn(source) => cmd::spawn_error(source),
            cmd::RunError::TimedOut => GitError::Timeout {
                repo: shown.clone(),
                op: op.to_owned(),
                timeout: Default::default(),
            },
        })
    };
    let failed = |out: &cmd::Output, op: &str| GitError::Command {
        repo: shown.clone(),
        op: op.to_owned(),
        status: cmd::describe_status(&out.status),
        stderr: cmd::stderr_summary(&out.stderr_text()),
    };

    let mut rev_parse = cmd::git();
    rev_parse
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel", "--show-prefix"]);
    let out = run(&mut rev_parse, "rev-parse")?;
    if !out.status.success() {
        let stderr = out.stderr_text();
        if stderr.contains("not a git repository") || stderr.contains("must be run in a work tree")
        {
            return Ok(None);
        }
        return Err(failed(&out, "rev-parse"));
    }
    let mut lines = out.stdout.split(|&b| b == b'\n');
    let root = PathBuf::from(OsStr::from_bytes(lines.next().unwrap_or_default()));
    let prefix = lines.next().unwrap_or_default().to_vec();
    if root.as_os_str().is_empty() {
        // `--show-toplevel` prints nothing inside a `.git` directory.
        return Ok(None);
    }

    let mut status = cmd::git();
    status.arg("-C").arg(dir).args([
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "--branch",
        "-z",
        "--untracked-files=all",
        "--ignored=matching",
        "--no-renames",
        "--",
        ".",
    ]);
    let out = run(&mut status, "status")?;
    if !out.status.success() {
        return Err(failed(&out, "status"));
    }
    let mut result = parse_porcelain_v2(&out.stdout, &prefix);
    result.root = root;
    Ok(Some(result))
}

/// Parses `git status --porcelain=v2 --branch -z` output; `prefix` (the directory
/// asked about, relative to the root, ending in `/` or empty) is stripped from paths.
fn parse_porcelain_v2(output: &[u8], prefix: &[u8]) -> WorktreeStatus {
    let mut status = WorktreeStatus::default();
    let mut staged_deletions = Vec::new();
    let mut records = output.split(|&b| b == 0);
    while let Some(record) = records.next() {
        let relative = |path: &[u8]| -> Option<PathBuf> {
            let rest = path.strip_prefix(prefix)?;
            (!rest.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(rest)))
        };
        match record.first() {
            Some(b'#') => {
                let text = String::from_utf8_lossy(record);
                if let Some(oid) = text.strip_prefix("# branch.oid ") {
                    status.head = CommitId::parse(oid);
                } else if let Some(head) = text.strip_prefix("# branch.head ") {
                    status.branch = (head != "(detached)").then(|| head.to_owned());
                }
            }
            // `1 XY sub mH mI mW hH hI path` and `u XY sub m1 m2 m3 mW h1 h2 h3 path`
            // (and `2 … path NUL origPath`, though --no-renames means none come).
            Some(kind @ (b'1' | b'2' | b'u')) => {
                let fields = match kind {
                    b'1' => 9,
                    b'2' => 10,
                    _ => 11,
                };
                let mut parts = record.splitn(fields, |&b| b == b' ');
                let xy = parts.nth(1).unwrap_or_default();
                let path = parts.last().unwrap_or_default();
                if *kind == b'2' {
                    // The original path of a rename: gone from HEAD's point of view.
                    if let Some(orig) = records.next().and_then(relative) {
                        status.deleted.push(orig);
                    }
                }
                let Some(path) = relative(path) else { continue };
                let (x, y) = (
                    xy.first().copied().unwrap_or(b'.'),
                    xy.get(1).copied().unwrap_or(b'.'),
                );
                match (kind, x, y) {
                    (b'u', _, _) => status.modified.push(path),
                    // Added to the index, then removed from disk: in neither HEAD
                    // nor the working tree.
                    (_, b'A', b'D') => {}
                    (_, b'D', _) => staged_deletions.push(path),
                    (_, _, b'D') => status.deleted.push(path),
                    _ => status.modified.push(path),
                }
            }
            Some(b'?') => {
                if let Some(path) = record.get(2..).and_then(relative) {
                    status.untracked.push(path);
                }
            }
            Some(b'!') => {
                if let Some(path) = record.get(2..).and_then(relative) {
                    status.ignored.push(path);
                }
            }
            _ => {}
        }
    }
    // Removed from the index but still on disk (`git rm --cached`): git lists the
    // file twice, staged-deleted and untracked; it exists on both sides, perhaps
    // with other content, so it counts as modified.
    for path in staged_deletions {
        if let Some(i) = status.untracked.iter().position(|p| *p == path) {
            status.untracked.remove(i);
            status.modified.push(path);
        } else {
            status.deleted.push(path);
        }
    }
    for list in [
        &mut status.modified,
        &mut status.deleted,
        &mut status.untracked,
        &mut status.ignored,
    ] {
        list.sort();
        list.dedup();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_record_kind() {
        let out = b"# branch.oid 0123456789abcdef0123456789abcdef01234567\0\
# branch.head main\0\
1 .M N... 100644 100644 100644 aaaa aaaa sub/a file.txt\0\
1 A. N... 000000 100644 100644 0000 bbbb sub/new.txt\0\
1 .D N... 100644 100644 000000 cccc cccc sub/gone.txt\0\
1 D. N... 100644 000000 000000 dddd 0000 sub/uncached.txt\0\
1 AD N... 000000 100644 000000 0000 eeee sub/added-then-removed.txt\0\
2 R. N... 100644 100644 100644 ffff ffff R100 sub/renamed.txt\0sub/original.txt\0\
u UU N... 100644 100644 100644 100644 1111 2222 3333 sub/conflict.txt\0\
? sub/uncached.txt\0\
? sub/fresh \xc3\xa9.txt\0\
! sub/output/\0\
? other/outside.txt\0";
        let status = parse_porcelain_v2(out, b"sub/");
        assert_eq!(
            status.head.as_ref().map(CommitId::as_str),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(status.branch.as_deref(), Some("main"));
        let paths = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(&status.modified),
            [
                "a file.txt",
                "conflict.txt",
                "new.txt",
                "renamed.txt",
                "uncached.txt"
            ]
        );
        assert_eq!(paths(&status.deleted), ["gone.txt", "original.txt"]);
        assert_eq!(paths(&status.untracked), ["fresh é.txt"]);
        assert_eq!(paths(&status.ignored), ["output/"]);
    }

    #[test]
    fn unborn_and_detached() {
        let status = parse_porcelain_v2(b"# branch.oid (initial)\0# branch.head (detached)\0", b"");
        assert_eq!(status.head, None);
        assert_eq!(status.branch, None);
        assert!(status.is_clean());
    }
}
