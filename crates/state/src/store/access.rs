//! Who may do what: users' API tokens, project memberships with roles, and
//! backend memberships.
//!
//! Tokens are like backend tokens: 32 random bytes, shown once, stored as
//! their SHA-256 and looked up by it. A token of a disabled user, or a
//! revoked token, authenticates nobody. The meaning of role names is the
//! server's business; this module only stores them.

use super::rows::{USER_COLUMNS, UserRow, parse_json, to_json};
use crate::db::Sql;
use crate::error::{Error, Result};
use crate::ids::{hash_token, new_token};
use crate::model::{User, UserToken};
use crate::store::Store;
use crate::time_util::{from_ns, now, to_ns};

const USER_TOKEN_COLUMNS: &str = "id, user_id, label, created_at, revoked_at";

#[derive(sqlx::FromRow)]
struct UserTokenRow {
    id: i64,
    user_id: i64,
    label: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<UserTokenRow> for UserToken {
    fn from(r: UserTokenRow) -> UserToken {
        UserToken {
            id: r.id,
            user_id: r.user_id,
            label: r.label,
            created_at: from_ns(r.created_at),
            revoked_at: r.revoked_at.map(from_ns),
        }
    }
}

impl Store {
    /// Creates an API token for user `user_id`. The plaintext token is
    /// returned only here; the store keeps its SHA-256.
    pub async fn create_user_token(
        &self,
        user_id: i64,
        label: &str,
    ) -> Result<(UserToken, String)> {
        let token = new_token();
        let mut tx = self.pool.begin().await?;
        let row: UserTokenRow = tx
            .fetch_one(
                Sql::new(format!(
                    "INSERT INTO user_tokens (user_id, label, token_sha256, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING {USER_TOKEN_COLUMNS}"
                ))
                .bind(user_id)
                .bind(label)
                .bind(hash_token(&token))
                .bind(to_ns(now())),
            )
            .await
            .map_err(|e| match e.on_insert("user token", label) {
                // The only foreign key: the user.
                Error::Conflict(_) => Error::not_found("user", user_id.to_string()),
                e => e,
            })?;
        tx.commit().await?;
        Ok((row.into(), token))
    }

    /// The active user a live token belongs to, if any (looked up by the
    /// token's hash).
    pub async fn user_for_token(&self, token: &str) -> Result<Option<User>> {
        let columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut conn = self.pool.acquire().await?;
        let row: Option<UserRow> = conn
            .fetch_optional(
                Sql::new(format!(
                    "SELECT {columns} FROM user_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND u.active"
                ))
                .bind(hash_token(token)),
            )
            .await?;
        row.map(User::try_from).transpose()
    }

    /// A user's tokens (without the secrets), oldest first.
    pub async fn list_user_tokens(&self, user_id: i64) -> Result<Vec<UserToken>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<UserTokenRow> = conn
            .fetch_all(
                Sql::new(format!(
                    "SELECT {USER_TOKEN_COLUMNS} FROM user_tokens WHERE user_id = $1 ORDER BY id"
                ))
                .bind(user_id),
            )
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Revokes a user token (idempotent).
    pub async fn revoke_user_token(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let n = tx
            .execute(
                Sql::new(
                    "UPDATE user_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(to_ns(now())),
            )
            .await?;
        tx.commit().await?;
        if n == 0 {
            return Err(Error::not_found("user token", id.to_string()));
        }
        Ok(())
    }

    /// Sets `user_id`'s roles in project `project_id` (replacing any); an
    /// empty list removes the membership.
    pub async fn set_project_roles(
        &self,
        project_id: i64,
        user_id: i64,
        roles: &[String],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let result = if roles.is_empty() {
            tx.execute(
                Sql::new("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                    .bind(project_id)
                    .bind(user_id),
            )
            .await
        } else {
            tx.execute(
                Sql::new(
                    "INSERT INTO project_members (project_id, user_id, roles, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (project_id, user_id) DO UPDATE SET roles = excluded.roles",
                )
                .bind(project_id)
                .bind(user_id)
                .bind(to_json(&roles))
                .bind(to_ns(now())),
            )
            .await
        };
        result.map_err(
            |e| match e.on_insert("project membership", user_id.to_string()) {
                Error::Conflict(_) => {
                    Error::not_found("project or user", format!("{project_id}/{user_id}"))
                }
                e => e,
            },
        )?;
        tx.commit().await?;
        Ok(())
    }

    /// `user_id`'s roles in project `project_id` (empty if not a member).
    pub async fn project_roles(&self, project_id: i64, user_id: i64) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<(String,)> = conn
            .fetch_optional(
                Sql::new(
                    "SELECT roles FROM project_members WHERE project_id = $1 AND user_id = $2",
                )
                .bind(project_id)
                .bind(user_id),
            )
            .await?;
        match row {
            Some((roles,)) => parse_json("project_members.roles", &roles),
            None => Ok(Vec::new()),
        }
    }

    /// Lets `user_id` run jobs on `backend` (idempotent).
    pub async fn add_backend_member(&self, backend: &str, user_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        tx.execute(
            Sql::new(
                "INSERT INTO backend_members (backend, user_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (backend, user_id) DO NOTHING",
            )
            .bind(backend)
            .bind(user_id)
            .bind(to_ns(now())),
        )
        .await
        .map_err(|e| match e.on_insert("backend membership", backend) {
            Error::Conflict(_) => {
                Error::not_found("backend or user", format!("{backend}/{user_id}"))
            }
            e => e,
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `user_id` from `backend` (idempotent).
    pub async fn remove_backend_member(&self, backend: &str, user_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        tx.execute(
            Sql::new("DELETE FROM backend_members WHERE backend = $1 AND user_id = $2")
                .bind(backend)
                .bind(user_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The backends `user_id` may run jobs on, by slug.
    pub async fn user_backends(&self, user_id: i64) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<(String,)> = conn
            .fetch_all(
                Sql::new("SELECT backend FROM backend_members WHERE user_id = $1 ORDER BY backend")
                    .bind(user_id),
            )
            .await?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }
}
