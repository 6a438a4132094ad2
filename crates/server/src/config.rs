//! The controller's settings, parsed once at start-up.

use std::path::PathBuf;
use std::time::Duration;

/// Environment variables the server and the admin commands read (each is
/// also a command-line option; the option wins).
pub mod env {
    /// Data directory: the SQLite database and the repository cache.
    pub const DATA_DIR: &str = "WARDEN_DATA_DIR";
    /// `postgres://…` to use PostgreSQL instead of the SQLite file.
    pub const DATABASE_URL: &str = "WARDEN_DATABASE_URL";
    /// PostgreSQL schema for warden's tables.
    pub const PG_SCHEMA: &str = "WARDEN_PG_SCHEMA";
    /// Address to listen on.
    pub const BIND: &str = "WARDEN_BIND";
    /// Log filter (`tracing` syntax).
    pub const LOG: &str = "WARDEN_LOG";
}

/// Default worker slots per backend (job-runner's default `MAX_WORKERS`).
pub const DEFAULT_MAX_WORKERS: f64 = 10.0;

/// Everything the controller needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory: `warden.sqlite` (unless `database_url` is set) and
    /// `repos/` (the bare repository cache).
    pub data_dir: PathBuf,
    /// A `postgres://` URL, `sqlite://` URL or file path; `None`: the SQLite
    /// file `<data_dir>/warden.sqlite`.
    pub database_url: Option<String>,
    /// PostgreSQL only: keep the tables in this schema (tests).
    pub pg_schema: Option<String>,
    /// Registry prefix of action images.
    pub image_registry: String,
    /// Worker slots of a backend without its own `max-workers` flag.
    pub default_max_workers: f64,
    /// Database-job slots of a backend without its own `max-db-workers`
    /// flag; `None`: the same as its worker slots.
    pub default_max_db_workers: Option<f64>,
    /// The scheduler reacts to events at once; this is only the safety net
    /// for changes made by other processes (e.g. `warden admin backend
    /// pause` against the same database) and for heartbeats.
    pub poll_interval: Duration,
    /// RUNJOB attempts before an executor error that is not fatal fails the
    /// job with `job_error` (the reference retries forever).
    pub max_task_attempts: u32,
    /// CPUs per job container.
    pub job_cpu_count: f64,
    /// Memory per job container, bytes.
    pub job_memory_limit: u64,
    /// How long a git fetch may take.
    pub git_fetch_timeout: Duration,
}

impl Config {
    /// Defaults with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            pg_schema: None,
            image_registry: "ghcr.io/opensafely-core".into(),
            default_max_workers: DEFAULT_MAX_WORKERS,
            default_max_db_workers: None,
            poll_interval: Duration::from_secs(5),
            max_task_attempts: 3,
            job_cpu_count: 2.0,
            job_memory_limit: 4 * 1024 * 1024 * 1024,
            git_fetch_timeout: Duration::from_secs(300),
        }
    }

    /// The database to open.
    pub fn database(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self.data_dir.join("warden.sqlite").display().to_string(),
        }
    }

    /// The bare repository cache.
    pub fn repo_cache_dir(&self) -> PathBuf {
        self.data_dir.join("repos")
    }
}
