//! Test databases: a temporary SQLite file, or a fresh schema in the
//! PostgreSQL database named by `WARDEN_TEST_DATABASE_URL`.
//!
//! Without that variable PostgreSQL tests print `SKIPPED: ...` to stderr and
//! pass, except when `CI` is set: then they fail, so CI cannot silently test
//! only SQLite. Start a throwaway server with `eval "$(scripts/postgres.sh)"`.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::Connection;
use warden_state::{Store, StoreOptions};

pub const URL_VAR: &str = "WARDEN_TEST_DATABASE_URL";

enum Kind {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

pub struct TestDb {
    pub store: Store,
    kind: Kind,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("metadata").join("db.sqlite");
        let store = Store::open_sqlite(&path).await.expect("open sqlite");
        TestDb {
            store,
            kind: Kind::Sqlite { _dir: dir, path },
        }
    }

    /// `None` (after saying so) when PostgreSQL is not configured outside CI.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let url = match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                if std::env::var_os("CI").is_some() {
                    panic!(
                        "{URL_VAR} is not set but CI is: the PostgreSQL tests must run in CI \
                         (eval \"$(scripts/postgres.sh)\" first)"
                    );
                }
                // Written to the stderr handle, not with eprintln!, which the
                // test harness captures (and hides) for passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: {URL_VAR} not set; PostgreSQL test `{test}` did not run \
                     (eval \"$(scripts/postgres.sh)\" to run it)"
                );
                return None;
            }
        };
        let suffix: u32 = rand::random();
        let mut schema = format!("t_{test}");
        schema.truncate(50);
        let schema = format!("{schema}_{suffix:08x}");
        let store = Store::open_with(StoreOptions {
            pg_schema: Some(schema.clone()),
            ..StoreOptions::new(url.clone())
        })
        .await
        .expect("open postgres");
        Some(TestDb {
            store,
            kind: Kind::Postgres { url, schema },
        })
    }

    /// Opens the same database again (running migrations again).
    pub async fn reopen(&self) -> Store {
        self.reopen_result().await.expect("reopen")
    }

    pub async fn reopen_result(&self) -> warden_state::Result<Store> {
        match &self.kind {
            Kind::Sqlite { path, .. } => Store::open_sqlite(path).await,
            Kind::Postgres { url, schema } => {
                Store::open_with(StoreOptions {
                    pg_schema: Some(schema.clone()),
                    ..StoreOptions::new(url.clone())
                })
                .await
            }
        }
    }

    /// Runs `sql` on a plain connection, bypassing the store.
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
                let r = sqlx::query(sql).execute(&mut conn).await?;
                Ok(r.rows_affected())
            }
            Kind::Postgres { url, schema } => {
                let opts = sqlx::postgres::PgConnectOptions::from_str(url)?
                    .options([("search_path", schema.as_str())]);
                let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
                let r = sqlx::query(sql).execute(&mut conn).await?;
                Ok(r.rows_affected())
            }
        }
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Kind::Postgres { url, schema } = &self.kind {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await
                .expect("drop schema");
        }
    }
}

/// For each named `async fn NAME(db: &TestDb)`, a module `NAME` with two
/// tests: `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = $crate::common::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(db) = $crate::common::TestDb::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            }
        )*
    };
}
