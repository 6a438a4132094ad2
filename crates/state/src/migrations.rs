//! Schema migrations, applied in order on open, each in its own transaction
//! and recorded in `warden_migrations`. Opening is idempotent, and safe when
//! several processes open the same database at once (SQLite: the write lock
//! of `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock per
//! schema). A database migrated by a newer warden is refused.
//!
//! Conventions shared by both dialects, so the same queries run on both:
//! times are `BIGINT` unix nanoseconds, JSON is `TEXT`, booleans are
//! `BOOLEAN` (SQLite stores 0/1), surrogate keys are 64-bit.

use crate::db::{Pool, Sql, Tx};
use crate::error::{Error, Result};
use crate::time_util::{now, to_ns};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sqlite: r#"
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    org_id BIGINT REFERENCES organisations(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE workspaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    repo_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    project_id BIGINT REFERENCES projects(id),
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    fullname TEXT NOT NULL,
    email TEXT NOT NULL,
    roles TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE backends (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    last_seen_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE backend_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    backend TEXT NOT NULL REFERENCES backends(slug) ON DELETE CASCADE,
    label TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE job_requests (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    backend TEXT NOT NULL,
    repo_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    requested_actions TEXT NOT NULL,
    force_run_dependencies BOOLEAN NOT NULL,
    project_definition TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL
);
CREATE INDEX job_requests_workspace ON job_requests (workspace, backend, created_at);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    job_request_id TEXT NOT NULL REFERENCES job_requests(id),
    workspace TEXT NOT NULL,
    backend TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT NOT NULL,
    run_command TEXT NOT NULL,
    image TEXT NOT NULL,
    output_spec TEXT NOT NULL,
    requires_outputs_from TEXT NOT NULL,
    wait_for_job_ids TEXT NOT NULL,
    requires_db BOOLEAN NOT NULL,
    outputs TEXT,
    cancelled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL,
    status_code_updated_at BIGINT NOT NULL,
    position BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_request ON jobs (job_request_id);
CREATE INDEX jobs_workspace_action ON jobs (workspace, backend, action, created_at);
CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('pending', 'running');
CREATE UNIQUE INDEX jobs_one_active_per_action ON jobs (workspace, backend, action)
    WHERE state IN ('pending', 'running') AND NOT cancelled;
CREATE TABLE workspace_locks (
    workspace TEXT PRIMARY KEY,
    last_created_at BIGINT NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    task_type TEXT NOT NULL,
    definition TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    agent_stage TEXT,
    agent_complete BOOLEAN NOT NULL DEFAULT FALSE,
    agent_results TEXT,
    agent_timestamp_ns BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX tasks_active ON tasks (backend, created_at) WHERE active;
CREATE TABLE flags (
    id TEXT NOT NULL,
    backend TEXT NOT NULL,
    value TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (id, backend)
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
"#,
        postgres: r#"
CREATE TABLE organisations (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE projects (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    org_id BIGINT REFERENCES organisations(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE workspaces (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    repo_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    project_id BIGINT REFERENCES projects(id),
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    fullname TEXT NOT NULL,
    email TEXT NOT NULL,
    roles TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE backends (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    last_seen_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE backend_tokens (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    backend TEXT NOT NULL REFERENCES backends(slug) ON DELETE CASCADE,
    label TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE job_requests (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    backend TEXT NOT NULL,
    repo_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    requested_actions TEXT NOT NULL,
    force_run_dependencies BOOLEAN NOT NULL,
    project_definition TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL
);
CREATE INDEX job_requests_workspace ON job_requests (workspace, backend, created_at);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    job_request_id TEXT NOT NULL REFERENCES job_requests(id),
    workspace TEXT NOT NULL,
    backend TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT NOT NULL,
    run_command TEXT NOT NULL,
    image TEXT NOT NULL,
    output_spec TEXT NOT NULL,
    requires_outputs_from TEXT NOT NULL,
    wait_for_job_ids TEXT NOT NULL,
    requires_db BOOLEAN NOT NULL,
    outputs TEXT,
    cancelled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL,
    status_code_updated_at BIGINT NOT NULL,
    position BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_request ON jobs (job_request_id);
CREATE INDEX jobs_workspace_action ON jobs (workspace, backend, action, created_at);
CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('pending', 'running');
CREATE UNIQUE INDEX jobs_one_active_per_action ON jobs (workspace, backend, action)
    WHERE state IN ('pending', 'running') AND NOT cancelled;
CREATE TABLE workspace_locks (
    workspace TEXT PRIMARY KEY,
    last_created_at BIGINT NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    task_type TEXT NOT NULL,
    definition TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    agent_stage TEXT,
    agent_complete BOOLEAN NOT NULL DEFAULT FALSE,
    agent_results TEXT,
    agent_timestamp_ns BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX tasks_active ON tasks (backend, created_at) WHERE active;
CREATE TABLE flags (
    id TEXT NOT NULL,
    backend TEXT NOT NULL,
    value TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (id, backend)
);
CREATE TABLE audit_log (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);
CREATE FUNCTION warden_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION warden_audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION warden_audit_log_append_only();
"#,
    },
    Migration {
        version: 2,
        name: "user tokens, project and backend memberships",
        sqlite: r#"
CREATE TABLE user_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id);
CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE backend_members (
    backend TEXT NOT NULL REFERENCES backends(slug) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (backend, user_id)
);
"#,
        postgres: r#"
CREATE TABLE user_tokens (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id);
CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE backend_members (
    backend TEXT NOT NULL REFERENCES backends(slug) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (backend, user_id)
);
"#,
    },
];

/// The schema version this build creates.
pub const SCHEMA_VERSION: i64 = 2;

const _: () = assert!(MIGRATIONS[MIGRATIONS.len() - 1].version == SCHEMA_VERSION);

/// Brings the database to [`SCHEMA_VERSION`]; returns the versions applied.
pub(crate) async fn migrate(pool: &Pool) -> Result<Vec<i64>> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let mut tx = pool.begin().await?;
        lock(&mut tx).await?;
        tx.execute_script(
            "CREATE TABLE IF NOT EXISTS warden_migrations (\
                 version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, \
                 applied_at BIGINT NOT NULL)",
        )
        .await?;
        let (current,): (Option<i64>,) = tx
            .fetch_one(Sql::new("SELECT MAX(version) FROM warden_migrations"))
            .await?;
        let current = current.unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(Error::Migration {
                version: current,
                message: format!(
                    "the database's schema is newer than this warden's ({SCHEMA_VERSION}); upgrade warden"
                ),
            });
        }
        if migration.version <= current {
            continue;
        }
        let script = match pool.engine() {
            crate::Engine::Sqlite => migration.sqlite,
            crate::Engine::Postgres => migration.postgres,
        };
        tx.execute_script(script)
            .await
            .map_err(|e| Error::Migration {
                version: migration.version,
                message: format!("{} failed: {e}", migration.name),
            })?;
        tx.execute(
            Sql::new(
                "INSERT INTO warden_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(to_ns(now())),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}

async fn lock(tx: &mut Tx) -> Result<()> {
    match tx.engine() {
        // BEGIN IMMEDIATE already holds the write lock.
        crate::Engine::Sqlite => Ok(()),
        crate::Engine::Postgres => {
            tx.execute(Sql::new(
                "SELECT pg_advisory_xact_lock(hashtext('warden_migrations:' || current_schema()))",
            ))
            .await?;
            Ok(())
        }
    }
}
