//! The test harness: a real server on 127.0.0.1 (port 0) over a fresh
//! SQLite file or a fresh PostgreSQL schema, real git repositories made with
//! the git CLI, and an HTTP client that checks every response against the
//! served OpenAPI document.
//!
//! PostgreSQL tests need `WARDEN_TEST_DATABASE_URL` (`eval
//! "$(scripts/postgres.sh)"`); without it they print a SKIPPED line and
//! pass, unless `CI` is set, when they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use warden_server::{App, Config, Server};
use warden_state::{NewBackend, NewProject, NewUser, NewWorkspace, Store};

use crate::schema::Spec;

pub const URL_VAR: &str = "WARDEN_TEST_DATABASE_URL";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// For each `async fn NAME(db: Db)`, a module `NAME` with tests `sqlite`
/// and `postgres`.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Db::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::common::postgres_url(stringify!($name)).is_none() {
                        return;
                    }
                    super::$name($crate::common::Db::Postgres).await;
                }
            }
        )*
    };
}

/// The PostgreSQL URL, or `None` after saying SKIPPED (panics in CI).
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{URL_VAR} is not set but CI is: the PostgreSQL tests must run in CI \
                     (eval \"$(scripts/postgres.sh)\" first)"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {URL_VAR} not set; PostgreSQL test `{test}` did not run \
                 (eval \"$(scripts/postgres.sh)\" to run it)"
            );
            None
        }
    }
}

/// A fresh, unique PostgreSQL schema name.
pub fn fresh_schema() -> String {
    format!("t_server_{:016x}", rand::random::<u64>())
}

/// Database settings (URL, schema) for a fresh database of kind `db`.
pub fn database(db: Db) -> (Option<String>, Option<String>) {
    match db {
        Db::Sqlite => (None, None),
        Db::Postgres => (
            Some(postgres_url("database").expect("postgres url")),
            Some(fresh_schema()),
        ),
    }
}

/// Runs git with a clean environment; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A study repository: a work tree that pushes to a bare repository, which
/// is what workspaces point at.
pub struct StudyRepo {
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl StudyRepo {
    /// A bare repository whose `main` has one commit with `project_yaml`.
    pub fn new(dir: &Path, project_yaml: &str) -> StudyRepo {
        let bare = dir.join("study.git");
        let work = dir.join("study");
        std::fs::create_dir_all(&work).unwrap();
        git(
            dir,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let repo = StudyRepo { work, bare };
        repo.commit("project.yaml", project_yaml, "first");
        repo
    }

    /// Commits `path` with `content` on the current branch and pushes it;
    /// returns the commit sha.
    pub fn commit(&self, path: &str, content: &str, message: &str) -> String {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        git(&self.work, &["add", path]);
        git(&self.work, &["commit", "-q", "-m", message]);
        let branch = git(&self.work, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(&self.work, &["push", "-q", "origin", &branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Creates and checks out `branch` from the current commit.
    pub fn checkout_new(&self, branch: &str) {
        git(&self.work, &["checkout", "-q", "-b", branch]);
    }

    /// Checks out an existing branch.
    pub fn checkout(&self, branch: &str) {
        git(&self.work, &["checkout", "-q", branch]);
    }

    pub fn url(&self) -> String {
        self.bare.display().to_string()
    }
}

/// extract (database) <- model <- report; other (independent).
pub const STUDY: &str = "\
version: '4.0'
actions:
  extract:
    run: ehrql:v1 generate-dataset analysis/dataset.py --output output/dataset.csv.gz
    outputs:
      highly_sensitive:
        dataset: output/dataset.csv.gz
  model:
    run: python:latest python analysis/model.py
    needs: [extract]
    outputs:
      moderately_sensitive:
        table: output/table.csv
  report:
    run: python:latest python analysis/report.py
    needs: [model]
    outputs:
      moderately_sensitive:
        report: output/report.html
  other:
    run: python:latest python analysis/other.py
    outputs:
      moderately_sensitive:
        other: output/other.csv
";

/// Tokens of the seeded principals.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Global admin.
    pub admin: String,
    /// Developer of project `study`, member of backend `test`.
    pub dev: String,
    /// A user with no rights.
    pub outsider: String,
    /// Agent of backend `test`.
    pub agent: String,
    /// Agent of backend `other`.
    pub other_agent: String,
}

/// A running server with seeded records and a study repository.
pub struct TestApp {
    pub server: Option<Server>,
    pub store: Store,
    pub url: String,
    pub client: reqwest::Client,
    pub tokens: Tokens,
    pub repo: StudyRepo,
    pub spec: Arc<Spec>,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

/// An HTTP answer: status and JSON body (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    /// A server on `db` with the default settings.
    pub async fn start(db: Db) -> TestApp {
        TestApp::start_with(db, |_| {}).await
    }

    /// A server on `db`, with `tweak` applied to its config. The poll
    /// interval is an hour: everything a test sees must come from the
    /// scheduler reacting to events.
    pub async fn start_with(db: Db, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let repo = StudyRepo::new(dir.path(), STUDY);
        let (database_url, pg_schema) = database(db);
        let mut config = Config::new(dir.path().join("data"));
        config.database_url = database_url.clone();
        config.pg_schema = pg_schema.clone();
        config.poll_interval = Duration::from_secs(3600);
        config.default_max_workers = 2.0;
        config.default_max_db_workers = Some(1.0);
        tweak(&mut config);
        let state = App::open(config).await.expect("open app");
        let store = state.store.clone();
        let tokens = seed(&store, &repo).await;
        let server = Server::bind(state, "127.0.0.1:0").await.expect("bind");
        let url = server.url();
        let client = reqwest::Client::new();
        let spec = Arc::new(Spec::fetch(&client, &url).await);
        TestApp {
            server: Some(server),
            store,
            url,
            client,
            tokens,
            repo,
            spec,
            pg: database_url.zip(pg_schema),
            _dir: dir,
        }
    }

    /// Sends a request and checks the answer against the OpenAPI document
    /// (`template` is the documented path, e.g. `/api/v1/jobs/{id}`).
    pub async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let sent = body.clone();
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        self.spec
            .check_response(method.as_str(), template, status, &body)
            .unwrap_or_else(|e| panic!("{method} {path} -> {status}: {e}\n{body:#}"));
        // A body the server accepted must match the documented request schema.
        if let Some(sent) = &sent
            && (200..300).contains(&status)
        {
            self.spec
                .check_request(method.as_str(), template, sent)
                .unwrap_or_else(|e| panic!("{method} {path}: request body: {e}\n{sent:#}"));
        }
        Answer { status, body }
    }

    pub async fn get(&self, template: &str, path: &str, token: &str) -> Answer {
        self.call(Method::GET, template, path, Some(token), None)
            .await
    }

    pub async fn post(&self, template: &str, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, template, path, Some(token), Some(body))
            .await
    }

    /// Creates a job request as the developer.
    pub async fn create(&self, body: Value) -> Answer {
        self.post(
            "/api/v1/job-requests",
            "/api/v1/job-requests",
            &self.tokens.dev,
            body,
        )
        .await
    }

    /// Creates a job request for `actions` in workspace `ws` on `test`, and
    /// returns its id (asserting success).
    pub async fn request(&self, ws: &str, actions: &[&str]) -> Value {
        let a = self
            .create(json!({"workspace": ws, "backend": "test", "actions": actions}))
            .await;
        assert_eq!(a.status, 201, "{:#}", a.body);
        a.body["job_request"].clone()
    }

    pub async fn job_request(&self, id: &str) -> Value {
        let a = self
            .get(
                "/api/v1/job-requests/{id}",
                &format!("/api/v1/job-requests/{id}"),
                &self.tokens.dev,
            )
            .await;
        assert_eq!(a.status, 200, "{:#}", a.body);
        a.body
    }

    /// The job of `action` in request `id`.
    pub async fn job(&self, id: &str, action: &str) -> Value {
        let r = self.job_request(id).await;
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["action"] == action)
            .unwrap_or_else(|| panic!("no job for {action} in {r:#}"))
            .clone()
    }

    /// Waits (up to 10 s) until `check` holds for request `id`.
    pub async fn wait_request(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.job_request(id).await;
            if check(&r) {
                return r;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {r:#}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the job of `action` in request `id` has `status_code`.
    pub async fn wait_code(&self, id: &str, action: &str, code: &str) -> Value {
        let r = self
            .wait_request(id, &format!("{action} to be {code}"), |r| {
                r["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|j| j["action"] == action && j["status_code"] == code)
            })
            .await;
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["action"] == action)
            .unwrap()
            .clone()
    }

    /// The agent's active tasks on backend `test`.
    pub async fn pull(&self) -> Vec<Value> {
        let a = self
            .get(
                "/api/v1/backends/{slug}/tasks",
                "/api/v1/backends/test/tasks",
                &self.tokens.agent,
            )
            .await;
        assert_eq!(a.status, 200, "{:#}", a.body);
        a.body["tasks"].as_array().unwrap().clone()
    }

    /// Waits until the agent sees a task for `job_id` (of `kind`).
    pub async fn wait_task(&self, job_id: &str, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tasks = self.pull().await;
            if let Some(t) = tasks
                .iter()
                .find(|t| t["definition"]["id"] == job_id && t["type"] == kind)
            {
                return t.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for a {kind} task of {job_id}: {tasks:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the agent sees the task `task_id`.
    pub async fn wait_task_id(&self, task_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tasks = self.pull().await;
            if let Some(t) = tasks.iter().find(|t| t["id"] == task_id) {
                return t.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for task {task_id}: {tasks:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The agent reports on a task.
    pub async fn report(&self, task_id: &str, body: Value) -> Answer {
        self.post(
            "/api/v1/backends/{slug}/tasks/{id}",
            &format!("/api/v1/backends/test/tasks/{task_id}"),
            &self.tokens.agent,
            body,
        )
        .await
    }

    /// The agent runs a task through every stage to a clean finish with
    /// `exit_code`.
    pub async fn run_task(&self, task_id: &str, exit_code: i64) {
        let mut ts = now_ns();
        for stage in [
            "preparing",
            "prepared",
            "executing",
            "executed",
            "finalizing",
        ] {
            ts += 1_000_000;
            let a = self
                .report(task_id, json!({"stage": stage, "timestamp_ns": ts}))
                .await;
            assert_eq!(a.status, 200, "{:#}", a.body);
        }
        let a = self
            .report(
                task_id,
                json!({"stage": "finalized", "complete": true, "timestamp_ns": ts + 1_000_000,
                       "results": {"exit_code": exit_code, "output_count": 1}}),
            )
            .await;
        assert_eq!(a.status, 200, "{:#}", a.body);
        assert_eq!(a.body["outcome"], "applied");
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.store.close().await;
        if let Some((url, schema)) = &self.pg {
            drop_schema(url, schema).await;
        }
    }
}

pub async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .expect("drop schema");
}

pub fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Backends `test` and `other`, project `study` with workspace `ws` (and
/// `ws2`, `ws3`) on the study repo, and users admin, dev, outsider.
async fn seed(store: &Store, repo: &StudyRepo) -> Tokens {
    for (slug, name) in [("test", "Test"), ("other", "Other")] {
        store
            .create_backend(&NewBackend {
                slug: slug.into(),
                name: name.into(),
            })
            .await
            .unwrap();
    }
    let (_, agent) = store.create_backend_token("test", "agent").await.unwrap();
    let (_, other_agent) = store.create_backend_token("other", "agent").await.unwrap();
    let project = store
        .create_project(&NewProject {
            slug: "study".into(),
            name: "Study".into(),
            org_id: None,
        })
        .await
        .unwrap();
    for ws in ["ws", "ws2", "ws3"] {
        store
            .create_workspace(&NewWorkspace {
                name: ws.into(),
                repo_url: repo.url(),
                branch: "main".into(),
                project_id: Some(project.id),
            })
            .await
            .unwrap();
    }
    let token = |username: &'static str, roles: Vec<String>| {
        let store = store.clone();
        async move {
            let user = store
                .create_user(&NewUser {
                    username: username.into(),
                    fullname: username.into(),
                    email: format!("{username}@example.org"),
                    roles,
                })
                .await
                .unwrap();
            let (_, token) = store.create_user_token(user.id, "test").await.unwrap();
            (user, token)
        }
    };
    let (_, admin) = token("admin", vec!["admin".into()]).await;
    let (dev_user, dev) = token("dev", vec![]).await;
    let (_, outsider) = token("outsider", vec![]).await;
    store
        .set_project_roles(project.id, dev_user.id, &["developer".into()])
        .await
        .unwrap();
    store.add_backend_member("test", dev_user.id).await.unwrap();
    Tokens {
        admin,
        dev,
        outsider,
        agent,
        other_agent,
    }
}
