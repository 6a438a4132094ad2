//! The execution layer: one SQL text with `$1, $2, ...` placeholders and a
//! list of typed arguments, run on either engine with its concrete sqlx
//! driver. Everything above this module is engine-agnostic.

use std::borrow::Cow;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{FromRow, Postgres, Sqlite, Transaction};

use crate::error::Result;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Embedded, one file, WAL.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// One bound argument. Only types both engines store the same way.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// A statement and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub text: Cow<'static, str>,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: impl Into<Cow<'static, str>>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next `$n`.
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds an argument and returns its placeholder, for building SQL text.
    pub fn push(&mut self, arg: impl Into<Arg>) -> String {
        self.args.push(arg.into());
        format!("${}", self.args.len())
    }
}

/// Rows decodable from both engines (`#[derive(sqlx::FromRow)]` structs and
/// tuples are).
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// Refuses text holding a NUL character before it reaches a database:
/// PostgreSQL cannot store one (and fails the statement), so neither engine
/// accepts it, as a lookup or a write; an id or name from a request that
/// holds one is bad input, never a fault of the store.
fn check_args(args: &[Arg]) -> Result<()> {
    if args
        .iter()
        .any(|a| matches!(a, Arg::Text(Some(t)) if t.contains('\0')))
    {
        return Err(crate::error::Error::InvalidInput(
            "text containing a NUL character cannot be stored or looked up".into(),
        ));
    }
    Ok(())
}

macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Implements the statement runners on an enum whose variants deref to a
/// concrete connection (a pooled connection or a transaction).
macro_rules! impl_exec {
    ($ty:ident) => {
        #[allow(dead_code)] // not every runner is used on both kinds of handle
        impl $ty {
            pub fn engine(&self) -> Engine {
                match self {
                    $ty::Sqlite(_) => Engine::Sqlite,
                    $ty::Postgres(_) => Engine::Postgres,
                }
            }

            /// Runs a statement; returns the number of rows affected.
            pub async fn execute(&mut self, sql: Sql) -> Result<u64> {
                let Sql { text, args } = sql;
                check_args(&args)?;
                Ok(match self {
                    $ty::Sqlite(c) => bind_args!(sqlx::query(&text), args)
                        .execute(&mut **c)
                        .await?
                        .rows_affected(),
                    $ty::Postgres(c) => bind_args!(sqlx::query(&text), args)
                        .execute(&mut **c)
                        .await?
                        .rows_affected(),
                })
            }

            pub async fn fetch_all<T: Row>(&mut self, sql: Sql) -> Result<Vec<T>> {
                let Sql { text, args } = sql;
                check_args(&args)?;
                Ok(match self {
                    $ty::Sqlite(c) => {
                        bind_args!(sqlx::query_as::<_, T>(&text), args)
                            .fetch_all(&mut **c)
                            .await?
                    }
                    $ty::Postgres(c) => {
                        bind_args!(sqlx::query_as::<_, T>(&text), args)
                            .fetch_all(&mut **c)
                            .await?
                    }
                })
            }

            pub async fn fetch_optional<T: Row>(&mut self, sql: Sql) -> Result<Option<T>> {
                let Sql { text, args } = sql;
                check_args(&args)?;
                Ok(match self {
                    $ty::Sqlite(c) => {
                        bind_args!(sqlx::query_as::<_, T>(&text), args)
                            .fetch_optional(&mut **c)
                            .await?
                    }
                    $ty::Postgres(c) => {
                        bind_args!(sqlx::query_as::<_, T>(&text), args)
                            .fetch_optional(&mut **c)
                            .await?
                    }
                })
            }

            pub async fn fetch_one<T: Row>(&mut self, sql: Sql) -> Result<T> {
                let Sql { text, args } = sql;
                check_args(&args)?;
                Ok(match self {
                    $ty::Sqlite(c) => {
                        bind_args!(sqlx::query_as::<_, T>(&text), args)
                            .fetch_one(&mut **c)
                            .await?
                    }
                    $ty::Postgres(c) => {
                        bind_args!(sqlx::query_as::<_, T>(&text), args)
                            .fetch_one(&mut **c)
                            .await?
                    }
                })
            }

            /// Runs several `;`-separated statements without arguments.
            pub async fn execute_script(&mut self, script: &str) -> Result<()> {
                match self {
                    $ty::Sqlite(c) => {
                        sqlx::raw_sql(script).execute(&mut **c).await?;
                    }
                    $ty::Postgres(c) => {
                        sqlx::raw_sql(script).execute(&mut **c).await?;
                    }
                }
                Ok(())
            }
        }
    };
}

/// A pooled connection, for reads and single statements.
pub(crate) enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}
impl_exec!(Conn);

/// A transaction; rolled back if dropped without [`Tx::commit`].
pub(crate) enum Tx {
    Sqlite(SqliteTx),
    Postgres(Transaction<'static, Postgres>),
}
impl_exec!(Tx);

/// A SQLite write transaction with this process's write turn ([`Pool::begin`]).
pub(crate) struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl std::ops::Deref for SqliteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            // The write turn is released after the commit.
            Tx::Sqlite(t) => t.tx.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// The connection pool of either engine. A SQLite pool carries the
/// process's write turn: an async FIFO lock taken before `BEGIN IMMEDIATE`.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool, std::sync::Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

impl Pool {
    pub fn engine(&self) -> Engine {
        match self {
            Pool::Sqlite(..) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    pub async fn acquire(&self) -> Result<Conn> {
        Ok(match self {
            Pool::Sqlite(p, _) => Conn::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes
    /// the database's write lock up front (waiting up to the busy timeout), so
    /// a transaction that reads and then writes can never fail half-way with
    /// `SQLITE_BUSY` because another writer got in between. Before that, the
    /// writers of this process queue for their turn on an async FIFO lock,
    /// so they never meet in SQLite's busy handler, whose sleeps (up to
    /// 100 ms at a time) are unfair and would add long tail latencies under
    /// load; only writers of other processes (e.g. admin commands) still wait
    /// there. On PostgreSQL it is READ COMMITTED; the code that needs
    /// serialisation takes a row lock.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p, turn) => {
                let turn = std::sync::Arc::clone(turn).lock_owned().await;
                Tx::Sqlite(SqliteTx {
                    tx: p.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: turn,
                })
            }
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p, _) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}
