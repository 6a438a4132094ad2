//! [`Store`]: the storage interface, on SQLite or PostgreSQL.

mod access;
mod admin;
mod flags;
mod jobs;
mod rows;
mod tasks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use admin::{
    BackendUpdate, NewBackend, NewOrganisation, NewProject, NewWorkspace, OrganisationUpdate,
    ProjectUpdate, UserUpdate, WorkspaceUpdate,
};
pub use flags::{FLAG_MANUAL_DB_MAINTENANCE, FLAG_MODE, FLAG_PAUSED, MODE_DB_MAINTENANCE};
pub use jobs::{INTERRUPTED_MESSAGE, JobRequestDetail, UpdatedJob};
pub use tasks::{MAX_AGENT_CLOCK_SKEW, agent_update_time};

use crate::db::{Engine, Pool, Sql};
use crate::error::{Error, Result};

/// How to open a [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `postgres://...` / `postgresql://...`, `sqlite://PATH` / `sqlite:PATH`,
    /// or a plain file path (SQLite).
    pub url: String,
    /// Pool size (default: 8 for SQLite, 10 for PostgreSQL).
    pub max_connections: Option<u32>,
    /// PostgreSQL only: keep every table in this schema (created if missing)
    /// instead of the connection's default; lets several stores, e.g.
    /// parallel tests, share one database. Must match `[a-z_][a-z0-9_]{0,62}`.
    pub pg_schema: Option<String>,
    /// SQLite only: how long a writer waits for the write lock (default 30 s).
    pub busy_timeout: Duration,
}

impl StoreOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: None,
            pg_schema: None,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// The storage interface: a cheap-to-clone handle on a connection pool.
///
/// Every method is a complete operation (its own transaction where it writes
/// more than one row), so callers never hold a transaction open across their
/// own awaits.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// SQLite only: the background checkpointer, stopped when the last
    /// clone of the store is dropped.
    _checkpointer: Option<std::sync::Arc<AbortOnDrop>>,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often the SQLite checkpointer copies the write-ahead log into the
/// database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` every [`CHECKPOINT_INTERVAL`]
/// until the pool closes.
///
/// SQLite's automatic checkpoint runs inside whichever commit makes the log
/// cross 1000 pages, and (with `synchronous=NORMAL`) that commit then waits
/// for the checkpoint's fsync: tens of milliseconds added to one unlucky
/// request. Here automatic checkpoints are off and this task does them
/// instead; a passive checkpoint never blocks readers or writers, and
/// commits in WAL mode with `synchronous=NORMAL` do not fsync, so no request
/// waits for the disk. SQLite also checkpoints when the last connection
/// closes.
fn spawn_checkpointer(pool: sqlx::SqlitePool) -> AbortOnDrop {
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
    AbortOnDrop(task.abort_handle())
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`; see
    /// [`StoreOptions::url`].
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(StoreOptions::new(url)).await
    }

    /// Opens (creating it and its parent directories if needed) and migrates
    /// the SQLite database at `path`, e.g. `<study>/metadata/db.sqlite`.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new().filename(path);
        Store::open_sqlite_options(options, &StoreOptions::new(path.display().to_string())).await
    }

    /// Opens and migrates the database described by `options`.
    pub async fn open_with(options: StoreOptions) -> Result<Store> {
        let url = options.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::open_postgres(&options).await
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?;
            Store::open_sqlite_options(connect, &options).await
        } else if url.contains("://") || url.is_empty() {
            Err(Error::UnsupportedUrl(url.to_owned()))
        } else {
            let connect = SqliteConnectOptions::new().filename(url);
            Store::open_sqlite_options(connect, &options).await
        }
    }

    async fn open_sqlite_options(
        options: SqliteConnectOptions,
        settings: &StoreOptions,
    ) -> Result<Store> {
        if settings.pg_schema.is_some() {
            return Err(Error::InvalidInput(
                "pg_schema applies to PostgreSQL only".into(),
            ));
        }
        let filename = options.get_filename();
        if let Some(parent) = filename.parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::InvalidInput(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout)
            // Checkpoints run in the background (see `spawn_checkpointer`).
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.unwrap_or(8))
            .connect_with(options)
            .await?;
        let checkpointer = spawn_checkpointer(pool.clone());
        let mut store = Store::finish_open(Pool::Sqlite(pool, Default::default())).await?;
        store._checkpointer = Some(std::sync::Arc::new(checkpointer));
        Ok(store)
    }

    async fn open_postgres(settings: &StoreOptions) -> Result<Store> {
        let mut options = PgConnectOptions::from_str(&settings.url)?;
        if let Some(schema) = &settings.pg_schema {
            if !valid_schema_name(schema) {
                return Err(Error::InvalidInput(format!(
                    "invalid PostgreSQL schema name {schema:?}"
                )));
            }
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.unwrap_or(10))
            .connect_with(options)
            .await?;
        if let Some(schema) = &settings.pg_schema {
            let mut conn = Pool::Postgres(pool.clone()).acquire().await?;
            let created = conn
                .execute(Sql::new(format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                )))
                .await;
            // Two stores creating the same schema at once: one loses the race
            // with a unique violation, and the schema exists either way.
            match created {
                Err(e) if e.is_unique_violation() => {}
                other => {
                    other?;
                }
            }
        }
        Store::finish_open(Pool::Postgres(pool)).await
    }

    async fn finish_open(pool: Pool) -> Result<Store> {
        crate::migrations::migrate(&pool).await?;
        Ok(Store {
            pool,
            _checkpointer: None,
        })
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.pool.engine()
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        let (v,): (Option<i64>,) = conn
            .fetch_one(Sql::new("SELECT MAX(version) FROM warden_migrations"))
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Closes every connection (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn valid_schema_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && s.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// `WHERE`-clause builder: collects conditions and their arguments.
pub(crate) struct Filter {
    sql: Sql,
    conditions: Vec<String>,
}

impl Filter {
    pub fn new(select: impl Into<String>) -> Self {
        Filter {
            sql: Sql::new(select.into()),
            conditions: Vec::new(),
        }
    }

    /// Adds `column = $n`.
    pub fn eq(&mut self, column: &str, value: Option<impl Into<crate::db::Arg>>) -> &mut Self {
        if let Some(v) = value {
            let p = self.sql.push(v);
            self.conditions.push(format!("{column} = {p}"));
        }
        self
    }

    /// Adds a condition with one argument, written as `{}` in `template`.
    pub fn cond(&mut self, template: &str, value: impl Into<crate::db::Arg>) -> &mut Self {
        let p = self.sql.push(value);
        self.conditions.push(template.replace("{}", &p));
        self
    }

    /// Adds a condition without arguments.
    pub fn raw(&mut self, condition: impl Into<String>) -> &mut Self {
        self.conditions.push(condition.into());
        self
    }

    /// The statement with `suffix` (ORDER BY, LIMIT ...) appended.
    pub fn finish(mut self, suffix: &str) -> Sql {
        let mut text = self.sql.text.into_owned();
        if !self.conditions.is_empty() {
            text.push_str(" WHERE ");
            text.push_str(&self.conditions.join(" AND "));
        }
        text.push(' ');
        text.push_str(suffix);
        self.sql.text = text.into();
        self.sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(valid_schema_name("t_abc_123"));
        assert!(!valid_schema_name("1abc"));
        assert!(!valid_schema_name("a\"b"));
        assert!(!valid_schema_name(""));
    }

    #[test]
    fn filter_numbers_placeholders() {
        let mut f = Filter::new("SELECT x FROM t");
        f.eq("a", Some("1"))
            .eq("b", None::<String>)
            .cond("c > {}", 3i64);
        let sql = f.finish("ORDER BY x");
        assert_eq!(
            sql.text,
            "SELECT x FROM t WHERE a = $1 AND c > $2 ORDER BY x"
        );
        assert_eq!(sql.args.len(), 2);
    }
}
