//! Real git repositories in temporary directories, made with the git CLI and a fixed
//! identity, so no global configuration is needed or read.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs git in `dir` with an isolated configuration; panics on failure; returns
/// stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.org")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.org")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A bare "origin" repository and a work tree that pushes to it.
pub struct Origin {
    pub tmp: tempfile::TempDir,
    /// The bare repository: what a cache clones from.
    pub bare: PathBuf,
    /// A work tree whose `origin` remote is `bare`.
    pub work: PathBuf,
}

impl Origin {
    pub fn new() -> Origin {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("origin.git");
        let work = tmp.path().join("work");
        fs::create_dir_all(&bare).unwrap();
        fs::create_dir_all(&work).unwrap();
        git(
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Origin { tmp, bare, work }
    }

    /// The bare repository's path as a string, for `RepoCache::ensure`.
    pub fn url(&self) -> String {
        self.bare.to_str().unwrap().to_owned()
    }

    /// Writes `files` (path, content) in the work tree, commits everything and
    /// returns the new commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        git(&self.work, &["add", "--all"]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes the current branch's HEAD to `origin` as `refs/heads/<branch>`.
    pub fn push(&self, branch: &str) {
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
    }

    /// Pushes HEAD to an arbitrary ref of `origin` (e.g. `refs/pull/1/head`).
    pub fn push_ref(&self, refname: &str) {
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                &format!("HEAD:{refname}"),
            ],
        );
    }

    pub fn checkout_new_branch(&self, branch: &str) {
        git(&self.work, &["checkout", "--quiet", "-b", branch]);
    }

    pub fn checkout(&self, branch: &str) {
        git(&self.work, &["checkout", "--quiet", branch]);
    }
}

/// The names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
