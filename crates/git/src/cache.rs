//! The bare-repository cache and what can be asked of one cached repository.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::cmd::{self, Output, RunError};
use crate::error::{GitError, Result};
use crate::location::Location;

/// A full commit id (lowercase hex, 40 digits, or 64 in a SHA-256 repository).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(String);

impl CommitId {
    /// Accepts a full commit id (40 or 64 hex digits, any case), e.g. one read back
    /// from a database. Abbreviated ids must be resolved by a repository instead.
    pub fn parse(id: &str) -> Option<CommitId> {
        ((id.len() == 40 || id.len() == 64) && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| CommitId(id.to_ascii_lowercase()))
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 7 digits, as `git log --oneline` shows them.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl std::fmt::Display for CommitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CommitId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<CommitId> for String {
    fn from(id: CommitId) -> String {
        id.0
    }
}

/// How long a fetch may take by default before git is killed.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A directory of bare clones, one per repository, fetched on demand.
///
/// Cheap to clone and share between threads; two `RepoCache`s (even in two
/// processes) on the same directory cooperate through lock files.
#[derive(Clone, Debug)]
pub struct RepoCache {
    dir: PathBuf,
    fetch_timeout: Duration,
}

impl RepoCache {
    /// A cache in `dir`, created on first use.
    pub fn new(dir: impl Into<PathBuf>) -> RepoCache {
        RepoCache {
            dir: dir.into(),
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }

    /// Sets how long one clone or fetch may take (default 15 minutes) before git and
    /// its helpers are killed and [`GitError::Timeout`] is returned.
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> RepoCache {
        self.fetch_timeout = timeout;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the bare clone of `url` lives (or will live) in this cache.
    pub fn path_for(&self, url: &str) -> Result<PathBuf> {
        let location = Location::parse(url)?;
        Ok(self.dir.join(format!("{}.git", location.cache_name())))
    }

    /// The cached clone of `url`, cloning it on first use and fetching every branch
    /// and tag (pruning deleted ones) on every later call.
    ///
    /// `url` is an absolute local path, a `file://`, `https://`, `ssh://` … URL or an
    /// scp-like `user@host:path`. Concurrent calls for one repository are serialised.
    pub fn ensure(&self, url: &str) -> Result<BareRepo> {
        self.ensure_inner(url, None)
    }

    /// Like [`ensure`](Self::ensure), but when the cache already holds `commit` (full
    /// or abbreviated) no fetch is made: what an agent needs before checking out a
    /// job's code. Fails with [`GitError::CommitNotFound`] when even a fetch does not
    /// bring the commit.
    pub fn ensure_commit(&self, url: &str, commit: &str) -> Result<BareRepo> {
        let repo = self.ensure_inner(url, Some(commit))?;
        repo.resolve_commit(commit)?;
        Ok(repo)
    }

    /// The cached clone of `url` as it is, with no network access; `None` when the
    /// repository has never been fetched into this cache.
    pub fn cached(&self, url: &str) -> Result<Option<BareRepo>> {
        let location = Location::parse(url)?;
        let path = self.dir.join(format!("{}.git", location.cache_name()));
        Ok(is_bare_repo(&path).then_some(BareRepo {
            path,
            repo: location.display,
        }))
    }

    fn ensure_inner(&self, url: &str, commit: Option<&str>) -> Result<BareRepo> {
        let location = Location::parse(url)?;
        fs::create_dir_all(&self.dir).map_err(|source| GitError::Io {
            action: "create the repository cache",
            path: self.dir.clone(),
            source,
        })?;
        let name = location.cache_name();
        let path = self.dir.join(format!("{name}.git"));
        let repo = BareRepo {
            path: path.clone(),
            repo: location.display.clone(),
        };

        let lock_path = self.dir.join(format!("{name}.lock"));
        let started = Instant::now();
        let _lock = lock_exclusive(&lock_path)?;
        let waited = started.elapsed();
        if waited > Duration::from_secs(1) {
            debug!(repo = %location.display, ?waited, "waited for the repository cache lock");
        }

        if is_bare_repo(&path) {
            if let Some(commit) = commit
                && repo.find_commit(commit)?.is_some()
            {
                debug!(repo = %location.display, commit, "commit already cached; no fetch");
                return Ok(repo);
            }
            let started = Instant::now();
            self.fetch(&location, &path)?;
            info!(repo = %location.display, elapsed = ?started.elapsed(), "fetched");
            return Ok(repo);
        }

        // First use (or a broken leftover): build the clone aside, then rename it in.
        let partial = self.dir.join(format!("{name}.git.partial"));
        for leftover in [&partial, &path] {
            if leftover.exists() {
                warn!(path = %leftover.display(), "removing an incomplete repository cache");
                fs::remove_dir_all(leftover).map_err(|source| GitError::Io {
                    action: "remove the incomplete cache",
                    path: leftover.clone(),
                    source,
                })?;
            }
        }
        let started = Instant::now();
        let mut init = cmd::git();
        init.args(["init", "--bare", "--quiet", "--"]).arg(&partial);
        let out =
            cmd::run(&mut init, None).map_err(|e| run_error(e, &location.display, "init", None))?;
        check(&out, &location.display, "init")?;
        if let Err(err) = self.fetch(&location, &partial) {
            let _ = fs::remove_dir_all(&partial);
            return Err(err);
        }
        fs::rename(&partial, &path).map_err(|source| GitError::Io {
            action: "move the new clone into place at",
            path: path.clone(),
            source,
        })?;
        info!(repo = %location.display, elapsed = ?started.elapsed(), "cloned");
        Ok(repo)
    }

    /// Mirrors the remote's branches and tags into the bare repository at `git_dir`.
    fn fetch(&self, location: &Location, git_dir: &Path) -> Result<()> {
        let mut fetch = cmd::git();
        fetch.arg("--git-dir").arg(git_dir);
        for config in [
            // Housekeeping runs now, under our lock, not detached after it.
            "gc.autoDetach=false",
            "maintenance.autoDetach=false",
            // Never run an arbitrary command as a "transport".
            "protocol.ext.allow=never",
            // Abort an HTTP transfer that stalls below 1 KB/s for a minute.
            "http.lowSpeedLimit=1000",
            "http.lowSpeedTime=60",
        ] {
            fetch.arg("-c").arg(config);
        }
        fetch.args([
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
            &location.fetch_url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ]);
        if let Some(credentials) = &location.credentials {
            // An empty helper resets the list, so only ours answers; it answers only
            // for the URL's own host (never for a host we are redirected to).
            fetch
                .env("GIT_CONFIG_COUNT", "2")
                .env("GIT_CONFIG_KEY_0", "credential.helper")
                .env("GIT_CONFIG_VALUE_0", "")
                .env("GIT_CONFIG_KEY_1", "credential.helper")
                .env("GIT_CONFIG_VALUE_1", CREDENTIAL_HELPER)
                .env("WARDEN_GIT_CREDENTIAL_HOST", &credentials.host)
                .env("WARDEN_GIT_CREDENTIAL_USERNAME", &credentials.username)
                .env("WARDEN_GIT_CREDENTIAL_PASSWORD", &credentials.password);
        }
        debug!(repo = %location.display, git_dir = %git_dir.display(), "git fetch");
        let deadline = Instant::now() + self.fetch_timeout;
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let out = cmd::run(&mut fetch, Some(remaining))
                .map_err(|e| run_error(e, &location.display, "fetch", Some(self.fetch_timeout)))?;
            if out.status.success() {
                return Ok(());
            }
            let stderr = location.scrub(&out.stderr_text());
            let lower = stderr.to_ascii_lowercase();
            if lower.contains("does not appear to be a git repository")
                || lower.contains("repository not found")
                || (lower.contains("repository '") && lower.contains("' not found"))
                || lower.contains("no such file or directory")
            {
                return Err(GitError::RepoNotFound {
                    repo: location.display.clone(),
                    detail: cmd::stderr_summary(&stderr),
                });
            }
            let pause = FIRST_RETRY_PAUSE * 2u32.pow(attempt - 1);
            if attempt < FETCH_ATTEMPTS && is_transient(&lower) && Instant::now() + pause < deadline
            {
                warn!(
                    repo = %location.display,
                    attempt,
                    error = %cmd::stderr_summary(&stderr),
                    "fetch failed; retrying in {pause:?}"
                );
                std::thread::sleep(pause);
                attempt += 1;
                continue;
            }
            return Err(GitError::Command {
                repo: location.display.clone(),
                op: "fetch".to_owned(),
                status: cmd::describe_status(&out.status),
                stderr: cmd::stderr_summary(&stderr),
            });
        }
    }
}

/// A fetch is tried this many times when it fails in a way that may pass (the
/// reference retries TLS resets from its GitHub proxy the same way).
const FETCH_ATTEMPTS: u32 = 3;
/// The pause before the first retry; it doubles before each later one.
const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Whether git's (lowercased) message describes a network hiccup worth a retry,
/// rather than a refusal (authentication, missing repository) that would recur.
fn is_transient(stderr: &str) -> bool {
    [
        "connection reset",
        "connection timed out",
        "operation timed out",
        "tls",
        "gnutls",
        "ssl",
        "early eof",
        "rpc failed",
        "unexpected disconnect",
        "the remote end hung up unexpectedly",
        "returned error: 429",
        "returned error: 500",
        "returned error: 502",
        "returned error: 503",
        "returned error: 504",
    ]
    .iter()
    .any(|pattern| stderr.contains(pattern))
}

/// A credential helper (run by git through `sh`) that answers `get` for one host
/// with the user name and password from its environment, and nothing else.
const CREDENTIAL_HELPER: &str = r#"!f() { test "$1" = get || exit 0; host=; while IFS= read -r line; do case "$line" in host=*) host=${line#host=};; esac; done; test "$host" = "$WARDEN_GIT_CREDENTIAL_HOST" || exit 0; printf 'username=%s\npassword=%s\n' "$WARDEN_GIT_CREDENTIAL_USERNAME" "$WARDEN_GIT_CREDENTIAL_PASSWORD"; }; f"#;

/// One bare repository: a cache entry (from [`RepoCache`]) or any git directory
/// opened with [`BareRepo::open`]. Every method is read-only and takes no lock.
#[derive(Clone, Debug)]
pub struct BareRepo {
    path: PathBuf,
    repo: String,
}

impl BareRepo {
    /// Opens an existing git directory (a bare repository, or the `.git` of a work
    /// tree) directly, without any cache or network. Messages name it by its path.
    pub fn open(git_dir: impl Into<PathBuf>) -> Result<BareRepo> {
        let path = git_dir.into();
        let repo = path.display().to_string();
        if !is_bare_repo(&path) {
            return Err(GitError::RepoNotFound {
                repo,
                detail: "not a git directory (no HEAD and objects/)".to_owned(),
            });
        }
        Ok(BareRepo { path, repo })
    }

    /// The git directory on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's URL as given to the cache, redacted (or the path, when
    /// opened directly): what messages should call it.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The commit at the head of `refs/heads/<branch>`.
    ///
    /// Only branches count (not tags, not `refs/pull/…`); a name that cannot be a
    /// branch is simply not found. Errors: [`GitError::BranchRequired`] (empty),
    /// [`GitError::BranchNotFound`] (`Could not find branch '<branch>'`).
    pub fn branch_head(&self, branch: &str) -> Result<CommitId> {
        if branch.is_empty() {
            return Err(GitError::BranchRequired {
                repo: self.repo.clone(),
            });
        }
        let not_found = || GitError::BranchNotFound {
            repo: self.repo.clone(),
            branch: branch.to_owned(),
        };
        if !is_valid_branch_name(branch) {
            return Err(not_found());
        }
        self.rev_parse_commit(&format!("refs/heads/{branch}"))?
            .ok_or_else(not_found)
    }

    /// The commit at `refs/tags/<tag>` (annotated tags are followed to their commit),
    /// or `None` when there is no such tag: resolving a reusable action's version.
    pub fn tag_commit(&self, tag: &str) -> Result<Option<CommitId>> {
        if !is_valid_branch_name(tag) {
            return Ok(None);
        }
        self.rev_parse_commit(&format!("refs/tags/{tag}"))
    }

    /// Resolves `commit` (full or abbreviated, at least 4 hex digits) to the full id
    /// of a commit in this repository, wherever it is.
    /// Error: [`GitError::CommitNotFound`].
    pub fn resolve_commit(&self, commit: &str) -> Result<CommitId> {
        self.find_commit(commit)?
            .ok_or_else(|| GitError::CommitNotFound {
                repo: self.repo.clone(),
                commit: commit.to_owned(),
            })
    }

    /// Resolves `commit` (full or abbreviated) and checks that it is the head of
    /// `branch` or one of its ancestors, which rules out commits that exist only on
    /// another branch or in someone's pull request.
    ///
    /// Errors: [`GitError::BranchNotFound`], then [`GitError::CommitNotOnBranch`]
    /// (`Could not find commit on branch '<branch>': <commit>`, whether the commit is
    /// unknown or merely elsewhere).
    pub fn commit_on_branch(&self, commit: &str, branch: &str) -> Result<CommitId> {
        let head = self.branch_head(branch)?;
        let not_on_branch = || GitError::CommitNotOnBranch {
            repo: self.repo.clone(),
            branch: branch.to_owned(),
            commit: commit.to_owned(),
        };
        let resolved = self.find_commit(commit)?.ok_or_else(not_on_branch)?;
        if resolved == head {
            return Ok(resolved);
        }
        let mut cmd = self.git();
        cmd.args([
            "merge-base",
            "--is-ancestor",
            "--end-of-options",
            resolved.as_str(),
            head.as_str(),
        ]);
        let out = self.run(&mut cmd, "merge-base")?;
        match out.status.code() {
            Some(0) => Ok(resolved),
            Some(1) => Err(not_on_branch()),
            _ => Err(self.command_error(&out, "merge-base")),
        }
    }

    /// The contents of the file at `path` (relative, `/`-separated) in `commit`, or
    /// `None` when there is nothing at that path. A directory, symlink or submodule
    /// there is [`GitError::NotAFile`]; an unknown commit [`GitError::CommitNotFound`].
    ///
    /// Reads the whole file into memory: for a file from someone else's repository,
    /// use [`read_file_limited`](Self::read_file_limited).
    pub fn read_file(&self, commit: impl AsRef<str>, path: &str) -> Result<Option<Vec<u8>>> {
        self.read_file_limited(commit, path, u64::MAX)
    }

    /// Like [`read_file`](Self::read_file), but a file of more than `max_bytes` is
    /// [`GitError::FileTooLarge`] and is not read at all: git is asked for the
    /// blob's size first (`ls-tree --long`), so a huge committed file costs no memory.
    pub fn read_file_limited(
        &self,
        commit: impl AsRef<str>,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let commit = commit.as_ref();
        if let Err(reason) = check_tree_path(path) {
            return Err(GitError::InvalidPath {
                repo: self.repo.clone(),
                path: path.to_owned(),
                reason: reason.to_owned(),
            });
        }
        let resolved = self.resolve_commit(commit)?;

        let mut cmd = self.git();
        cmd.args([
            "ls-tree",
            "-z",
            "--long",
            "--full-tree",
            "--end-of-options",
            resolved.as_str(),
            "--",
            path,
        ]);
        let out = self.run(&mut cmd, "ls-tree")?;
        if !out.status.success() {
            return Err(self.command_error(&out, "ls-tree"));
        }
        // `<mode> SP <type> SP <object> SP+ <size> TAB <path> NUL`
        let entry = out
            .stdout
            .split(|&b| b == 0)
            .filter_map(|record| {
                let tab = record.iter().position(|&b| b == b'\t')?;
                (&record[tab + 1..] == path.as_bytes()).then_some(&record[..tab])
            })
            .next();
        let Some(entry) = entry else {
            return Ok(None);
        };
        let entry = String::from_utf8_lossy(entry);
        let mut fields = entry.split_ascii_whitespace();
        let (mode, kind, object, size) =
            (fields.next(), fields.next(), fields.next(), fields.next());
        match (mode, kind, object) {
            (Some("100644" | "100755" | "100664"), Some("blob"), Some(object))
                if CommitId::parse(object).is_some() =>
            {
                let size =
                    size.and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| GitError::Command {
                            repo: self.repo.clone(),
                            op: "ls-tree".to_owned(),
                            status: "unexpected output".to_owned(),
                            stderr: entry.to_string(),
                        })?;
                if size > max_bytes {
                    return Err(GitError::FileTooLarge {
                        repo: self.repo.clone(),
                        commit: commit.to_owned(),
                        path: path.to_owned(),
                        size,
                        limit: max_bytes,
                    });
                }
                let mut cmd = self.git();
                cmd.args(["cat-file", "blob", object]);
                let out = self.run(&mut cmd, "cat-file")?;
                if !out.status.success() {
                    return Err(self.command_error(&out, "cat-file"));
                }
                Ok(Some(out.stdout))
            }
            _ => Err(GitError::NotAFile {
                repo: self.repo.clone(),
                commit: commit.to_owned(),
                path: path.to_owned(),
            }),
        }
    }

    /// Writes the tree of `commit` into `dest` (created if missing; existing files
    /// at the same paths are overwritten): files with their executable bit, symlinks
    /// as symlinks, no `.git`. Unlike `git archive`, `export-ignore` attributes are
    /// not applied: a job sees exactly the committed tree. Submodules are left empty.
    pub fn checkout(&self, commit: impl AsRef<str>, dest: &Path) -> Result<()> {
        let commit = commit.as_ref();
        let resolved = self.resolve_commit(commit)?;
        let dest = if dest.is_absolute() {
            dest.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|source| GitError::Io {
                    action: "find the current directory for",
                    path: dest.to_owned(),
                    source,
                })?
                .join(dest)
        };
        fs::create_dir_all(&dest).map_err(|source| GitError::Io {
            action: "create the checkout directory",
            path: dest.clone(),
            source,
        })?;

        // A private index, so concurrent checkouts never share (or lock) one.
        let index = TempIndex::new();
        let mut read_tree = self.git();
        read_tree.env("GIT_INDEX_FILE", &index.0).args([
            "read-tree",
            "--end-of-options",
            resolved.as_str(),
        ]);
        let out = self.run(&mut read_tree, "read-tree")?;
        if !out.status.success() {
            return Err(self.command_error(&out, "read-tree"));
        }
        let mut checkout = self.git();
        checkout
            .env("GIT_INDEX_FILE", &index.0)
            .arg("--work-tree")
            .arg(&dest)
            .args(["-c", "core.symlinks=true", "-c", "core.autocrlf=false"])
            .args(["checkout-index", "--all", "--force"]);
        let out = self.run(&mut checkout, "checkout-index")?;
        if !out.status.success() {
            return Err(self.command_error(&out, "checkout-index"));
        }
        debug!(repo = %self.repo, commit = %resolved, dest = %dest.display(), "checked out");
        Ok(())
    }

    /// `Some(full id)` when `commit` names a commit here; `None` when it does not
    /// (including strings that are not 4–64 hex digits).
    pub(crate) fn find_commit(&self, commit: &str) -> Result<Option<CommitId>> {
        if !(4..=64).contains(&commit.len()) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.rev_parse_commit(commit)
    }

    /// `git rev-parse --verify <spec>^{commit}`; `None` when it names nothing.
    fn rev_parse_commit(&self, spec: &str) -> Result<Option<CommitId>> {
        let mut cmd = self.git();
        cmd.args([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{spec}^{{commit}}"),
        ]);
        let out = self.run(&mut cmd, "rev-parse")?;
        if out.status.success() {
            let id = out.stdout_text();
            return CommitId::parse(&id)
                .map(Some)
                .ok_or_else(|| GitError::Command {
                    repo: self.repo.clone(),
                    op: "rev-parse".to_owned(),
                    status: "unexpected output".to_owned(),
                    stderr: id,
                });
        }
        let stderr = out.stderr_text();
        // Nothing on stderr (thanks to --quiet) or an ambiguous short id: not found.
        if stderr.is_empty()
            || stderr.contains("ambiguous")
            || stderr.contains("Needed a single revision")
        {
            Ok(None)
        } else {
            Err(self.command_error(&out, "rev-parse"))
        }
    }

    fn git(&self) -> Command {
        let mut cmd = cmd::git();
        cmd.arg("--git-dir").arg(&self.path);
        cmd
    }

    fn run(&self, cmd: &mut Command, op: &str) -> Result<Output> {
        cmd::run(cmd, None).map_err(|e| run_error(e, &self.repo, op, None))
    }

    fn command_error(&self, out: &Output, op: &str) -> GitError {
        GitError::Command {
            repo: self.repo.clone(),
            op: op.to_owned(),
            status: cmd::describe_status(&out.status),
            stderr: cmd::stderr_summary(&out.stderr_text()),
        }
    }
}

fn run_error(err: RunError, repo: &str, op: &str, timeout: Option<Duration>) -> GitError {
    match err {
        RunError::Spawn(source) => cmd::spawn_error(source),
        RunError::TimedOut => GitError::Timeout {
            repo: repo.to_owned(),
            op: op.to_owned(),
            timeout: timeout.unwrap_or_default(),
        },
    }
}

fn check(out: &Output, repo: &str, op: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(GitError::Command {
        repo: repo.to_owned(),
        op: op.to_owned(),
        status: cmd::describe_status(&out.status),
        stderr: cmd::stderr_summary(&out.stderr_text()),
    })
}

fn is_bare_repo(path: &Path) -> bool {
    path.join("HEAD").is_file() && path.join("objects").is_dir() && path.join("refs").is_dir()
}

/// Takes an exclusive `flock` on `path` (created if missing), held until the file
/// is dropped. Separate opens conflict, so this serialises threads and processes.
fn lock_exclusive(path: &Path) -> Result<File> {
    let io_error = |source| GitError::Io {
        action: "lock",
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error)?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(io_error(errno.into())),
        }
    }
}

/// Git's rules for a branch name (`git check-ref-format --branch`), so that a name
/// is never read as revision syntax (`main^`, `main..x`, `@{-1}`) or an option.
fn is_valid_branch_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.contains("/.")
        && name != "@"
        && !name.split('/').any(|part| part.ends_with(".lock"))
        && !name
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\\x7f".contains(c))
}

/// A path inside a tree: relative, `/`-separated, no empty, `.` or `..` component.
fn check_tree_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.starts_with('/') {
        return Err("the path must be relative to the repository root");
    }
    if path.contains('\0') {
        return Err("the path contains a NUL byte");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("the path has an empty, '.' or '..' component");
    }
    Ok(())
}

/// A unique index file name in the temporary directory, removed on drop.
struct TempIndex(PathBuf);

impl TempIndex {
    fn new() -> TempIndex {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        TempIndex(std::env::temp_dir().join(format!(
            "warden-git-index-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let mut lock = self.0.clone().into_os_string();
        lock.push(".lock");
        let _ = fs::remove_file(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for ok in ["main", "feature/x", "release-1.0", "a_b", "über"] {
            assert!(is_valid_branch_name(ok), "{ok}");
        }
        for bad in [
            "", "-x", "main^", "main~1", "a..b", "a b", "@", "x@{1}", "a.lock", "a/", "/a", "a//b",
            ".a", "a/.b", "a:b", "a*", "a?", "a[", "a\\b",
        ] {
            assert!(!is_valid_branch_name(bad), "{bad}");
        }
    }

    #[test]
    fn tree_paths() {
        assert!(check_tree_path("project.yaml").is_ok());
        assert!(check_tree_path("a/b c/d.txt").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a/"] {
            assert!(check_tree_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commit_ids() {
        let id = "0123456789ABCDEF0123456789abcdef01234567";
        let parsed = CommitId::parse(id).unwrap();
        assert_eq!(parsed.as_str(), id.to_ascii_lowercase());
        assert_eq!(parsed.short(), "0123456");
        assert!(CommitId::parse("0123456").is_none());
        assert!(CommitId::parse(&"g".repeat(40)).is_none());
    }
}
