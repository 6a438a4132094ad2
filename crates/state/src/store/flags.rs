//! Per-backend flags and the append-only audit log.

use super::Filter;
use super::rows::{AUDIT_COLUMNS, AuditRow, FLAG_COLUMNS, FlagRow, to_json};
use crate::db::{Sql, Tx};
use crate::error::{Error, Result};
use crate::model::{AuditEvent, AuditFilter, Flag, NewAuditEvent};
use crate::store::Store;
use crate::time_util::{from_ns, now, to_ns};

/// Flag: `"true"` while the backend is paused (pending jobs do not start).
pub const FLAG_PAUSED: &str = "paused";
/// Flag: `"db-maintenance"` while the backend's database is in maintenance.
pub const FLAG_MODE: &str = "mode";
/// Value of [`FLAG_MODE`] during database maintenance.
pub const MODE_DB_MAINTENANCE: &str = "db-maintenance";
/// Flag: `"on"` when database maintenance was switched on by hand.
pub const FLAG_MANUAL_DB_MAINTENANCE: &str = "manual-db-maintenance";

/// Appends `event` inside `tx`, so that the audit record and the change it
/// records commit together or not at all.
pub(crate) async fn insert_audit(tx: &mut Tx, event: &NewAuditEvent) -> Result<AuditRow> {
    if event.actor.is_empty() || event.action.is_empty() {
        return Err(Error::InvalidInput(
            "an audit event needs an actor and an action".into(),
        ));
    }
    tx.fetch_one(
        Sql::new(format!(
            "INSERT INTO audit_log (actor, action, target_type, target_id, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {AUDIT_COLUMNS}"
        ))
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target_type)
        .bind(&event.target_id)
        .bind(to_json(&event.detail))
        .bind(to_ns(now())),
    )
    .await
}

impl Store {
    /// One flag of one backend.
    pub async fn get_flag(&self, backend: &str, id: &str) -> Result<Option<Flag>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<FlagRow> = conn
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {FLAG_COLUMNS} FROM flags WHERE backend = $1 AND id = $2"
                ))
                .bind(backend)
                .bind(id),
            )
            .await?;
        Ok(row.map(Flag::from))
    }

    /// Every flag of one backend, by name.
    pub async fn list_flags(&self, backend: &str) -> Result<Vec<Flag>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<FlagRow> = conn
            .fetch_all(
                Sql::new(format!(
                    "SELECT {FLAG_COLUMNS} FROM flags WHERE backend = $1 ORDER BY id"
                ))
                .bind(backend),
            )
            .await?;
        Ok(rows.into_iter().map(Flag::from).collect())
    }

    /// Sets (or, with `None`, clears) a flag. Setting the value it already has
    /// changes nothing, so the timestamp keeps saying since when it has held.
    pub async fn set_flag(&self, backend: &str, id: &str, value: Option<&str>) -> Result<Flag> {
        self.set_flag_audited(backend, id, value, None).await
    }

    /// [`Store::set_flag`], appending `audit` (if any) in the same
    /// transaction.
    pub async fn set_flag_audited(
        &self,
        backend: &str,
        id: &str,
        value: Option<&str>,
        audit: Option<&NewAuditEvent>,
    ) -> Result<Flag> {
        if backend.is_empty() || id.is_empty() {
            return Err(Error::InvalidInput(
                "a flag needs a backend and a name".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        // The upsert returns no row when the WHERE of DO UPDATE is false,
        // i.e. when the value is unchanged.
        let changed: Option<FlagRow> = tx
            .fetch_optional(
                Sql::new(format!(
                    "INSERT INTO flags (id, backend, value, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id, backend) DO UPDATE \
                         SET value = excluded.value, updated_at = excluded.updated_at \
                         WHERE flags.value IS DISTINCT FROM excluded.value \
                     RETURNING {FLAG_COLUMNS}"
                ))
                .bind(id)
                .bind(backend)
                .bind(value)
                .bind(to_ns(now())),
            )
            .await?;
        let row = match changed {
            Some(row) => row,
            None => {
                tx.fetch_one(
                    Sql::new(format!(
                        "SELECT {FLAG_COLUMNS} FROM flags WHERE backend = $1 AND id = $2"
                    ))
                    .bind(backend)
                    .bind(id),
                )
                .await?
            }
        };
        if let Some(event) = audit {
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(Flag::from(row))
    }

    /// Whether the backend is paused ([`FLAG_PAUSED`] is `"true"`).
    pub async fn is_paused(&self, backend: &str) -> Result<bool> {
        Ok(self
            .get_flag(backend, FLAG_PAUSED)
            .await?
            .is_some_and(|f| f.value.as_deref() == Some("true")))
    }

    /// Pauses or unpauses a backend.
    pub async fn set_paused(&self, backend: &str, paused: bool) -> Result<Flag> {
        self.set_flag(backend, FLAG_PAUSED, paused.then_some("true"))
            .await
    }

    /// [`Store::set_paused`], with its audit record (`backend.pause` or
    /// `backend.unpause` by `actor`) in the same transaction.
    pub async fn set_paused_audited(
        &self,
        backend: &str,
        paused: bool,
        actor: &str,
    ) -> Result<Flag> {
        let event = NewAuditEvent {
            actor: actor.into(),
            action: if paused {
                "backend.pause"
            } else {
                "backend.unpause"
            }
            .into(),
            target_type: "backend".into(),
            target_id: backend.into(),
            detail: serde_json::json!({}),
        };
        self.set_flag_audited(backend, FLAG_PAUSED, paused.then_some("true"), Some(&event))
            .await
    }

    /// Appends an entry to the audit log. There is no way to change or remove
    /// one: the API has none, and the database's triggers refuse `UPDATE` and
    /// `DELETE` (and, on PostgreSQL, `TRUNCATE`).
    pub async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent> {
        let mut tx = self.pool.begin().await?;
        let row = insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        AuditEvent::try_from(row)
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let mut f = Filter::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log"));
        f.eq("actor", filter.actor.as_deref())
            .eq("target_type", filter.target_type.as_deref())
            .eq("target_id", filter.target_id.as_deref());
        if let Some(before) = filter.before_id {
            f.cond("id < {}", before);
        }
        let sql = f.finish(&format!(
            "ORDER BY id DESC LIMIT {}",
            filter.limit.unwrap_or(100)
        ));
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<AuditRow> = conn.fetch_all(sql).await?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }

    /// Records that `backend`'s agent was seen now (it asked for tasks).
    /// [`Error::NotFound`] if the backend is not registered.
    pub async fn record_backend_seen(&self, backend: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let n = tx
            .execute(
                Sql::new(
                    "UPDATE backends SET last_seen_at = CASE \
                         WHEN last_seen_at IS NULL OR last_seen_at < $2 THEN $2 \
                         ELSE last_seen_at END \
                     WHERE slug = $1",
                )
                .bind(backend)
                .bind(to_ns(now())),
            )
            .await?;
        tx.commit().await?;
        if n == 0 {
            return Err(Error::not_found("backend", backend));
        }
        Ok(())
    }

    /// When `backend`'s agent was last seen.
    pub async fn backend_last_seen(&self, backend: &str) -> Result<Option<time::OffsetDateTime>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<(Option<i64>,)> = conn
            .fetch_optional(
                Sql::new("SELECT last_seen_at FROM backends WHERE slug = $1").bind(backend),
            )
            .await?;
        match row {
            None => Err(Error::not_found("backend", backend)),
            Some((seen,)) => Ok(seen.map(from_ns)),
        }
    }
}
