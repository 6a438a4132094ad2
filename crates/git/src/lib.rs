//! Git for warden: the repository a study lives in, read at a commit.
//!
//! Three jobs fall to this crate:
//!
//! 1. **The server validates a job request** (reference job-runner §3 steps 1–2): the
//!    branch must exist as `refs/heads/<branch>` and the requested commit must be
//!    reachable from its head, then `project.yaml` is read at that commit.
//!    [`RepoCache::ensure`] gives a [`BareRepo`] (a bare clone kept under the cache
//!    directory and fetched again on every call), on which [`BareRepo::branch_head`],
//!    [`BareRepo::commit_on_branch`] and [`BareRepo::read_file`] answer with the
//!    reference's exact messages (`Could not find branch '<b>'`,
//!    `Could not find commit on branch '<b>': <sha>`).
//! 2. **An agent checks out the code of a job** (§5.5 step 6): [`BareRepo::checkout`]
//!    writes the tree of a commit into a directory with no `.git`, keeping symlinks
//!    and executable bits. [`RepoCache::ensure_commit`] skips the network when the
//!    commit is already in the cache.
//! 3. **`warden run` is honest about the working tree**: [`worktree_status`] names
//!    every modified, deleted, untracked and ignored file, i.e. everything a local run
//!    would see differently from a backend that runs the committed tree.
//!
//! # Why the `git` executable and not a library
//!
//! Everything here runs the real `git` through [`std::process::Command`]. It speaks
//! every transport (local paths, `file://`, HTTPS, SSH, proxies) and honours the
//! credential helpers and settings operators already have; it is what the reference
//! implementation uses, so behaviour (reachability, pruning, symlinks) matches; and it
//! costs no C build and no large dependency tree on two shared cores. `gix` would
//! save a process start per call (about a millisecond), which nothing here needs.
//! The price is parsing output, so every command whose output carries paths uses
//! `-z`, and git runs with `LC_ALL=C` so that the few messages recognised are stable.
//!
//! Every git process gets a clean environment: repository variables inherited from a
//! calling git (`GIT_DIR`, `GIT_INDEX_FILE`, …) are removed, prompts are disabled
//! (`GIT_TERMINAL_PROMPT=0`, standard input is null) so a server never hangs on a
//! password question, pathspecs are literal, and network fetches have a deadline
//! ([`RepoCache::with_fetch_timeout`]) after which git and its helpers are killed.
//! A fetch that fails with a network hiccup (TLS or connection reset, early EOF,
//! HTTP 429/5xx) is tried up to three times, 1 s then 2 s apart, as the reference
//! does for its GitHub proxy; refusals (authentication, missing repository) are not.
//!
//! # Secrets
//!
//! A repository URL may carry a token (`https://user:token@host/org/repo`). Such a
//! URL is never shown: every error and log line uses [`redact_url`]
//! (`https://***@host/org/repo`), and git's own messages are scrubbed of the secret
//! too. For HTTP(S) the credentials are not even given to git on its command line
//! (where `ps` would show them) nor stored in the cached repository's config: git is
//! handed the URL without them plus a one-shot credential helper that reads them from
//! its environment and answers only for that host.
//!
//! # The cache
//!
//! `<cache dir>/<name>-<hash>.git` is a bare repository whose `refs/heads/*` and
//! `refs/tags/*` mirror the remote's (`git fetch --prune` with explicit refspecs; no
//! remote is configured, so no URL is written to disk). `<name>` is the last path
//! segment of the URL made file-name safe, `<hash>` 12 hex digits of the SHA-256 of
//! the URL without credentials, so the same repository reached with a rotated token
//! shares one cache. A first clone is made in `<name>-<hash>.git.partial` and renamed
//! into place only when complete, so a crash never leaves a half-made cache. Creation
//! and fetches of one repository are serialised by an exclusive `flock` on
//! `<name>-<hash>.lock`, which works between threads and between processes (a server
//! and an agent on one machine). Reading (`branch_head`, `read_file`, `checkout`) takes
//! no lock: git updates refs atomically and writes objects before refs.
//!
//! # Errors
//!
//! [`GitError`] names the repository (redacted), branch and commit involved, and
//! [`GitError::kind`] sorts it into [`ErrorKind::NotFound`] (a missing branch, commit,
//! repository or file: the caller's mistake, an HTTP 404/400),
//! [`ErrorKind::InvalidInput`] (a malformed URL, path or branch name: 400) and
//! [`ErrorKind::Failed`] (git failed or timed out: 500/502). The two validation
//! errors keep the reference's exact text, which names branch and commit but not the
//! repository; [`GitError::repo`] gives it.
//!
//! # Example
//!
//! ```no_run
//! use warden_git::RepoCache;
//!
//! # fn main() -> Result<(), warden_git::GitError> {
//! let cache = RepoCache::new("/var/lib/warden/repos");
//! let repo = cache.ensure("https://github.com/opensafely/some-study")?;
//! let commit = repo.commit_on_branch("1a2b3c4", "main")?;
//! match repo.read_file(&commit, "project.yaml")? {
//!     Some(bytes) => println!("{} bytes of project.yaml", bytes.len()),
//!     None => println!("No project.yaml file found in {}", repo.repo()),
//! }
//! repo.checkout(&commit, std::path::Path::new("/tmp/job-code"))?;
//! # Ok(())
//! # }
//! ```
//!
//! All types are `Send + Sync`; calls block, so async callers use
//! `tokio::task::spawn_blocking`.

mod cache;
mod cmd;
mod error;
mod location;
mod status;

pub use cache::{BareRepo, CommitId, RepoCache};
pub use error::{ErrorKind, GitError, Result};
pub use location::redact_url;
pub use status::{WorktreeStatus, worktree_status};

/// The version line of the `git` executable (`git version 2.47.3`): a start-up check
/// that git is installed, with an error that says so when it is not.
pub fn git_version() -> Result<String> {
    let out = cmd::git()
        .arg("--version")
        .output()
        .map_err(|source| GitError::Spawn { source })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<RepoCache>();
        assert_send_sync::<BareRepo>();
        assert_send_sync::<CommitId>();
        assert_send_sync::<GitError>();
        assert_send_sync::<WorktreeStatus>();
    }
}
