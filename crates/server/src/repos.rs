//! Workspace repositories: resolving a request's commit, checking that it is
//! on the workspace's branch, and reading and parsing `project.yaml` there
//! (job-runner §3 steps 1–2, with its messages).
//!
//! Git runs in blocking threads (the `git` executable, through
//! `warden-git`'s bare repository cache under `<data dir>/repos`). Two
//! in-memory memos keep creation fast, and are safe because what they
//! remember cannot change:
//!
//! * a parsed `project.yaml` per (repository, full commit): a commit's
//!   content never changes;
//! * the (repository, branch, commit) triples already shown to be on the
//!   branch.
//!
//! A request that names its commit is first checked against the cached
//! clone, without network; only if the cache does not show the commit on the
//! branch is the repository fetched. A request without a commit always
//! fetches, to learn the branch head. So a force-push that removes a commit
//! from a branch is noticed by the next fetch, not by a request that names a
//! commit the server has already seen there (the guard is against commits
//! that were never on the branch, e.g. from a pull request).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use warden_git::{ErrorKind, GitError, RepoCache};
use warden_pipeline::Pipeline;

use crate::error::AppError;

/// How many parsed `project.yaml` files to keep.
const DEFINITION_CACHE: usize = 256;

/// A commit with its parsed `project.yaml`.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Full commit sha.
    pub commit: String,
    /// The `project.yaml` text at that commit.
    pub text: Arc<str>,
    /// The parsed pipeline.
    pub pipeline: Arc<Pipeline>,
}

type Parsed = Result<(Arc<str>, Arc<Pipeline>), AppError>;

/// The repository service; cheap to share.
#[derive(Debug)]
pub struct Repos {
    cache: RepoCache,
    verified: Mutex<HashSet<(String, String, String)>>,
    definitions: Mutex<HashMap<(String, String), Arc<Parsed>>>,
}

impl Repos {
    /// A service caching clones in `cache`.
    pub fn new(cache: RepoCache) -> Repos {
        Repos {
            cache,
            verified: Mutex::new(HashSet::new()),
            definitions: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `commit` (or the branch head) of `url` on `branch` and loads
    /// `project.yaml` there. Errors are 4xx for the caller's mistakes (with
    /// the reference's messages) and 502 when git fails.
    pub async fn resolve(
        self: &Arc<Self>,
        url: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<Resolved, AppError> {
        let this = Arc::clone(self);
        let (url, branch, commit) = (url.to_owned(), branch.to_owned(), commit.map(str::to_owned));
        tokio::task::spawn_blocking(move || this.resolve_blocking(&url, &branch, commit.as_deref()))
            .await?
    }

    fn resolve_blocking(
        &self,
        url: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<Resolved, AppError> {
        let commit = match commit {
            Some(c) => self.verify_commit(url, branch, c)?,
            None => {
                let repo = self.cache.ensure(url).map_err(git_error)?;
                let head = repo.branch_head(branch).map_err(git_error)?;
                let head = head.as_str().to_owned();
                self.remember(url, branch, &head);
                head
            }
        };
        let parsed = self.definition(url, &commit)?;
        match &*parsed {
            Ok((text, pipeline)) => Ok(Resolved {
                commit,
                text: Arc::clone(text),
                pipeline: Arc::clone(pipeline),
            }),
            Err(e) => Err(e.clone_error()),
        }
    }

    fn verify_commit(&self, url: &str, branch: &str, commit: &str) -> Result<String, AppError> {
        if commit.len() < 4 || commit.len() > 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AppError::bad_request(format!(
                "Invalid commit {commit:?}: expected a hexadecimal commit sha"
            )));
        }
        let commit = commit.to_ascii_lowercase();
        if commit.len() == 40
            && self.verified.lock().expect("verified lock").contains(&(
                url.to_owned(),
                branch.to_owned(),
                commit.clone(),
            ))
        {
            return Ok(commit);
        }
        // The cached clone first (no network), then a fetch.
        if let Ok(Some(repo)) = self.cache.cached(url)
            && let Ok(resolved) = repo.commit_on_branch(&commit, branch)
        {
            let full = resolved.as_str().to_owned();
            self.remember(url, branch, &full);
            return Ok(full);
        }
        let repo = self.cache.ensure(url).map_err(git_error)?;
        let full = repo
            .commit_on_branch(&commit, branch)
            .map_err(git_error)?
            .as_str()
            .to_owned();
        self.remember(url, branch, &full);
        Ok(full)
    }

    fn remember(&self, url: &str, branch: &str, commit: &str) {
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() > 100_000 {
            verified.clear();
        }
        verified.insert((url.to_owned(), branch.to_owned(), commit.to_owned()));
    }

    fn definition(&self, url: &str, commit: &str) -> Result<Arc<Parsed>, AppError> {
        let key = (url.to_owned(), commit.to_owned());
        if let Some(hit) = self.definitions.lock().expect("definitions lock").get(&key) {
            return Ok(Arc::clone(hit));
        }
        let repo = match self.cache.cached(url).map_err(git_error)? {
            Some(repo) => repo,
            None => self.cache.ensure(url).map_err(git_error)?,
        };
        // Capped before anything is read: git gives the blob's size first.
        let read = repo.read_file_limited(
            commit,
            "project.yaml",
            warden_pipeline::MAX_PROJECT_FILE_BYTES,
        );
        // A file over the limit is an answer about this commit, remembered
        // like the others; a failure of git is not.
        let parsed: Parsed = match read {
            Err(GitError::FileTooLarge { size, limit, .. }) => Err(AppError::BadRequest {
                code: "project_yaml_too_large",
                message: format!(
                    "project.yaml at commit {commit} is {size} bytes, more than the limit of \
                     {limit} bytes; nothing was read"
                ),
            }),
            Err(e) => return Err(git_error(e)),
            Ok(None) => Err(AppError::bad_request(format!(
                "No project.yaml file found in {}",
                warden_git::redact_url(url)
            ))),
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Err(_) => Err(AppError::bad_request("project.yaml is not valid UTF-8")),
                Ok(text) => match warden_pipeline::load(&text) {
                    Ok(pipeline) => Ok((Arc::from(text), Arc::new(pipeline))),
                    Err(report) => Err(match report.first_error() {
                        Some(d) => AppError::InvalidProject {
                            message: d.message.clone(),
                            line: d.line,
                            column: d.column,
                        },
                        None => AppError::bad_request("project.yaml is invalid"),
                    }),
                },
            },
        };
        let parsed = Arc::new(parsed);
        let mut definitions = self.definitions.lock().expect("definitions lock");
        if definitions.len() >= DEFINITION_CACHE {
            definitions.clear();
        }
        definitions.insert(key, Arc::clone(&parsed));
        Ok(parsed)
    }
}

impl AppError {
    /// A copy of a cached 4xx error (errors are not `Clone` because internal
    /// ones need not be).
    fn clone_error(&self) -> AppError {
        match self {
            AppError::BadRequest { code, message } => AppError::BadRequest {
                code,
                message: message.clone(),
            },
            AppError::InvalidProject {
                message,
                line,
                column,
            } => AppError::InvalidProject {
                message: message.clone(),
                line: *line,
                column: *column,
            },
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// Git errors: the caller's mistakes are 400 with git's (reference) text;
/// failures are 502. Messages are already redacted by `warden-git`.
fn git_error(e: GitError) -> AppError {
    match e.kind() {
        // The messages name the branch and commit as the request gave them.
        ErrorKind::NotFound | ErrorKind::InvalidInput => AppError::BadRequest {
            code: "git",
            message: crate::error::shown(&e.to_string()).into_owned(),
        },
        ErrorKind::Failed => {
            let e = crate::error::shown(&e.to_string()).into_owned();
            tracing::warn!(error = %e, "git failed");
            AppError::Upstream(format!("could not read the repository: {e}"))
        }
    }
}
