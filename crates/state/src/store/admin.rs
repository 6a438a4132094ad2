//! Organisations, projects, workspaces, backends (and their tokens), users.
//!
//! Job requests and jobs name their workspace and backend rather than
//! pointing at these rows, so the local runner needs none of them.

use serde::{Deserialize, Serialize};

use super::Filter;
use super::rows::{
    BACKEND_COLUMNS, BackendRow, ORG_COLUMNS, OrgRow, PROJECT_COLUMNS, ProjectRow, TOKEN_COLUMNS,
    TokenRow, USER_COLUMNS, UserRow, WORKSPACE_COLUMNS, WorkspaceRow, to_json,
};
use crate::db::{Arg, Sql};
use crate::error::{Error, Result};
use crate::ids::{hash_token, new_token};
use crate::model::{Backend, BackendToken, NewUser, Organisation, Project, User, Workspace};
use crate::store::Store;
use crate::time_util::{now, to_ns};

/// An organisation to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrganisation {
    /// Unique slug (`[a-z0-9-]+`).
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// Changes to an organisation (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationUpdate {
    /// New display name.
    pub name: Option<String>,
}

/// A project to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProject {
    /// Unique slug (`[a-z0-9-]+`).
    pub slug: String,
    /// Unique display name.
    pub name: String,
    /// Lead organisation.
    pub org_id: Option<i64>,
}

/// Changes to a project (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New lead organisation (`Some(None)` removes it).
    pub org_id: Option<Option<i64>>,
}

/// A workspace to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWorkspace {
    /// Unique name, `[A-Za-z0-9_-]+`; stored lowercased (as job-server does).
    pub name: String,
    /// Repository URL.
    pub repo_url: String,
    /// Branch.
    pub branch: String,
    /// Owning project.
    pub project_id: Option<i64>,
}

/// Changes to a workspace (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceUpdate {
    /// New repository URL.
    pub repo_url: Option<String>,
    /// New branch.
    pub branch: Option<String>,
    /// New project (`Some(None)` removes it).
    pub project_id: Option<Option<i64>>,
    /// Archive or unarchive.
    pub archived: Option<bool>,
}

/// A backend to register.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBackend {
    /// Unique slug (`[a-z0-9_-]+`), e.g. `tpp`.
    pub slug: String,
    /// Display name, e.g. `TPP`.
    pub name: String,
}

/// Changes to a backend (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendUpdate {
    /// New display name.
    pub name: Option<String>,
    /// Activate or deactivate.
    pub active: Option<bool>,
}

/// Changes to a user (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdate {
    /// New full name.
    pub fullname: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New global roles.
    pub roles: Option<Vec<String>>,
    /// Enable or disable.
    pub active: Option<bool>,
}

fn check_slug(kind: &str, slug: &str, extra: &[u8]) -> Result<()> {
    if slug.is_empty()
        || !slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    {
        return Err(Error::InvalidInput(format!(
            "invalid {kind} {slug:?}: use lowercase letters, digits and {}",
            String::from_utf8_lossy(extra)
        )));
    }
    Ok(())
}

/// A workspace's repository or branch: handed to `git` later, so never
/// something it could read as an option (`-x`, `--upload-pack=…`), and no
/// control characters (which would garble every message that names it).
fn check_git_value(what: &str, value: &str) -> Result<()> {
    if value.starts_with('-') {
        return Err(Error::InvalidInput(format!(
            "invalid {what} {value:?}: it cannot begin with '-' (git would read it as an option)"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "invalid {what} {value:?}: it contains control characters"
        )));
    }
    Ok(())
}

fn check_nonempty(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidInput(format!("{what} cannot be blank")));
    }
    Ok(())
}

/// Builds `UPDATE table SET a = $1, ... WHERE key = $n`; `None` if nothing to set.
struct Update {
    sql: Sql,
    sets: Vec<String>,
}

impl Update {
    fn new() -> Self {
        Update {
            sql: Sql::new(""),
            sets: Vec::new(),
        }
    }

    fn set(&mut self, column: &str, value: Option<impl Into<Arg>>) -> &mut Self {
        if let Some(v) = value {
            let p = self.sql.push(v);
            self.sets.push(format!("{column} = {p}"));
        }
        self
    }

    fn finish(mut self, table: &str, key: &str, id: impl Into<Arg>) -> Option<Sql> {
        if self.sets.is_empty() {
            return None;
        }
        let p = self.sql.push(id);
        self.sql.text = format!(
            "UPDATE {table} SET {} WHERE {key} = {p}",
            self.sets.join(", ")
        )
        .into();
        Some(self.sql)
    }
}

impl Store {
    async fn write_one(&self, sql: Sql) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = tx.execute(sql).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn apply_update(
        &self,
        update: Update,
        table: &'static str,
        key: &str,
        kind: &'static str,
        id: impl Into<Arg> + ToString,
    ) -> Result<()> {
        let label = id.to_string();
        if let Some(sql) = update.finish(table, key, id) {
            let n = self
                .write_one(sql)
                .await
                .map_err(|e| e.on_insert(kind, &label))?;
            if n == 0 {
                return Err(Error::not_found(kind, label));
            }
        }
        Ok(())
    }

    async fn delete_one(
        &self,
        table: &str,
        key: &str,
        kind: &'static str,
        id: impl Into<Arg> + ToString,
    ) -> Result<()> {
        let label = id.to_string();
        let n = self
            .write_one(Sql::new(format!("DELETE FROM {table} WHERE {key} = $1")).bind(id))
            .await
            .map_err(|e| e.on_delete(kind, &label))?;
        if n == 0 {
            return Err(Error::not_found(kind, label));
        }
        Ok(())
    }

    async fn insert_returning<R: crate::db::Row>(
        &self,
        sql: Sql,
        kind: &'static str,
        id: &str,
    ) -> Result<R> {
        let mut tx = self.pool.begin().await?;
        let row = tx.fetch_one(sql).await.map_err(|e| e.on_insert(kind, id))?;
        tx.commit().await?;
        Ok(row)
    }

    async fn fetch_opt<R: crate::db::Row>(&self, sql: Sql) -> Result<Option<R>> {
        let mut conn = self.pool.acquire().await?;
        conn.fetch_optional(sql).await
    }

    async fn fetch_vec<R: crate::db::Row>(&self, sql: Sql) -> Result<Vec<R>> {
        let mut conn = self.pool.acquire().await?;
        conn.fetch_all(sql).await
    }

    // ---- organisations ----------------------------------------------------

    /// Creates an organisation.
    pub async fn create_organisation(&self, org: &NewOrganisation) -> Result<Organisation> {
        check_slug("organisation slug", &org.slug, b"-")?;
        check_nonempty("organisation name", &org.name)?;
        let row: OrgRow = self
            .insert_returning(
                Sql::new(format!(
                    "INSERT INTO organisations (slug, name, created_at) VALUES ($1, $2, $3) \
                     RETURNING {ORG_COLUMNS}"
                ))
                .bind(&org.slug)
                .bind(&org.name)
                .bind(to_ns(now())),
                "organisation",
                &org.slug,
            )
            .await?;
        Ok(row.into())
    }

    /// One organisation by id.
    pub async fn get_organisation(&self, id: i64) -> Result<Option<Organisation>> {
        let row: Option<OrgRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {ORG_COLUMNS} FROM organisations WHERE id = $1"
                ))
                .bind(id),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// One organisation by slug.
    pub async fn get_organisation_by_slug(&self, slug: &str) -> Result<Option<Organisation>> {
        let row: Option<OrgRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {ORG_COLUMNS} FROM organisations WHERE slug = $1"
                ))
                .bind(slug),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// Every organisation, by name.
    pub async fn list_organisations(&self) -> Result<Vec<Organisation>> {
        let rows: Vec<OrgRow> = self
            .fetch_vec(Sql::new(format!(
                "SELECT {ORG_COLUMNS} FROM organisations ORDER BY name, id"
            )))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Changes an organisation.
    pub async fn update_organisation(&self, id: i64, update: &OrganisationUpdate) -> Result<()> {
        if let Some(name) = &update.name {
            check_nonempty("organisation name", name)?;
        }
        let mut u = Update::new();
        u.set("name", update.name.as_deref());
        self.apply_update(u, "organisations", "id", "organisation", id)
            .await
    }

    /// Deletes an organisation ([`Error::Conflict`] while projects refer to it).
    pub async fn delete_organisation(&self, id: i64) -> Result<()> {
        self.delete_one("organisations", "id", "organisation", id)
            .await
    }

    // ---- projects ---------------------------------------------------------

    /// Creates a project.
    pub async fn create_project(&self, project: &NewProject) -> Result<Project> {
        check_slug("project slug", &project.slug, b"-")?;
        check_nonempty("project name", &project.name)?;
        let row: ProjectRow = self
            .insert_returning(
                Sql::new(format!(
                    "INSERT INTO projects (slug, name, org_id, created_at) VALUES ($1, $2, $3, $4) \
                     RETURNING {PROJECT_COLUMNS}"
                ))
                .bind(&project.slug)
                .bind(&project.name)
                .bind(project.org_id)
                .bind(to_ns(now())),
                "project",
                &project.slug,
            )
            .await?;
        Ok(row.into())
    }

    /// One project by id.
    pub async fn get_project(&self, id: i64) -> Result<Option<Project>> {
        let row: Option<ProjectRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
                ))
                .bind(id),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// One project by slug.
    pub async fn get_project_by_slug(&self, slug: &str) -> Result<Option<Project>> {
        let row: Option<ProjectRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects WHERE slug = $1"
                ))
                .bind(slug),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// Projects (of one organisation, or all), by name.
    pub async fn list_projects(&self, org_id: Option<i64>) -> Result<Vec<Project>> {
        let mut f = Filter::new(format!("SELECT {PROJECT_COLUMNS} FROM projects"));
        f.eq("org_id", org_id);
        let rows: Vec<ProjectRow> = self.fetch_vec(f.finish("ORDER BY name, id")).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Changes a project.
    pub async fn update_project(&self, id: i64, update: &ProjectUpdate) -> Result<()> {
        if let Some(name) = &update.name {
            check_nonempty("project name", name)?;
        }
        let mut u = Update::new();
        u.set("name", update.name.as_deref())
            .set("org_id", update.org_id.map(Arg::Int));
        self.apply_update(u, "projects", "id", "project", id).await
    }

    /// Deletes a project ([`Error::Conflict`] while workspaces refer to it).
    pub async fn delete_project(&self, id: i64) -> Result<()> {
        self.delete_one("projects", "id", "project", id).await
    }

    // ---- workspaces -------------------------------------------------------

    /// Creates a workspace; its name is lowercased.
    pub async fn create_workspace(&self, workspace: &NewWorkspace) -> Result<Workspace> {
        let name = workspace.name.to_ascii_lowercase();
        check_slug("workspace name", &name, b"-_")?;
        check_git_value("workspace repository", &workspace.repo_url)?;
        check_git_value("workspace branch", &workspace.branch)?;
        let row: WorkspaceRow = self
            .insert_returning(
                Sql::new(format!(
                    "INSERT INTO workspaces (name, repo_url, branch, project_id, archived, created_at) \
                     VALUES ($1, $2, $3, $4, FALSE, $5) RETURNING {WORKSPACE_COLUMNS}"
                ))
                .bind(&name)
                .bind(&workspace.repo_url)
                .bind(&workspace.branch)
                .bind(workspace.project_id)
                .bind(to_ns(now())),
                "workspace",
                &name,
            )
            .await?;
        Ok(row.into())
    }

    /// One workspace by id.
    pub async fn get_workspace(&self, id: i64) -> Result<Option<Workspace>> {
        let row: Option<WorkspaceRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1"
                ))
                .bind(id),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// One workspace by name.
    pub async fn get_workspace_by_name(&self, name: &str) -> Result<Option<Workspace>> {
        let row: Option<WorkspaceRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE name = $1"
                ))
                .bind(name.to_ascii_lowercase()),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// Workspaces (of one project, or all), by name.
    pub async fn list_workspaces(&self, project_id: Option<i64>) -> Result<Vec<Workspace>> {
        let mut f = Filter::new(format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces"));
        f.eq("project_id", project_id);
        let rows: Vec<WorkspaceRow> = self.fetch_vec(f.finish("ORDER BY name")).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Changes a workspace.
    pub async fn update_workspace(&self, id: i64, update: &WorkspaceUpdate) -> Result<()> {
        if let Some(repo) = &update.repo_url {
            check_git_value("workspace repository", repo)?;
        }
        if let Some(branch) = &update.branch {
            check_git_value("workspace branch", branch)?;
        }
        let mut u = Update::new();
        u.set("repo_url", update.repo_url.as_deref())
            .set("branch", update.branch.as_deref())
            .set("project_id", update.project_id.map(Arg::Int))
            .set("archived", update.archived);
        self.apply_update(u, "workspaces", "id", "workspace", id)
            .await
    }

    /// Deletes a workspace record (its job history stays).
    pub async fn delete_workspace(&self, id: i64) -> Result<()> {
        self.delete_one("workspaces", "id", "workspace", id).await
    }

    // ---- backends and tokens ----------------------------------------------

    /// Registers a backend.
    pub async fn create_backend(&self, backend: &NewBackend) -> Result<Backend> {
        check_slug("backend slug", &backend.slug, b"-_")?;
        check_nonempty("backend name", &backend.name)?;
        let row: BackendRow = self
            .insert_returning(
                Sql::new(format!(
                    "INSERT INTO backends (slug, name, active, last_seen_at, created_at) \
                     VALUES ($1, $2, TRUE, NULL, $3) RETURNING {BACKEND_COLUMNS}"
                ))
                .bind(&backend.slug)
                .bind(&backend.name)
                .bind(to_ns(now())),
                "backend",
                &backend.slug,
            )
            .await?;
        Ok(row.into())
    }

    /// One backend.
    pub async fn get_backend(&self, slug: &str) -> Result<Option<Backend>> {
        let row: Option<BackendRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {BACKEND_COLUMNS} FROM backends WHERE slug = $1"
                ))
                .bind(slug),
            )
            .await?;
        Ok(row.map(Into::into))
    }

    /// Every backend, by slug.
    pub async fn list_backends(&self) -> Result<Vec<Backend>> {
        let rows: Vec<BackendRow> = self
            .fetch_vec(Sql::new(format!(
                "SELECT {BACKEND_COLUMNS} FROM backends ORDER BY slug"
            )))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Changes a backend.
    pub async fn update_backend(&self, slug: &str, update: &BackendUpdate) -> Result<()> {
        if let Some(name) = &update.name {
            check_nonempty("backend name", name)?;
        }
        let mut u = Update::new();
        u.set("name", update.name.as_deref())
            .set("active", update.active);
        self.apply_update(u, "backends", "slug", "backend", slug)
            .await
    }

    /// Deletes a backend and its tokens (its jobs, tasks and flags stay).
    pub async fn delete_backend(&self, slug: &str) -> Result<()> {
        self.delete_one("backends", "slug", "backend", slug).await
    }

    /// Creates a token for `backend`'s agent. The plaintext token is returned
    /// only here; the store keeps its SHA-256.
    pub async fn create_backend_token(
        &self,
        backend: &str,
        label: &str,
    ) -> Result<(BackendToken, String)> {
        let token = new_token();
        let row: TokenRow = self
            .insert_returning(
                Sql::new(format!(
                    "INSERT INTO backend_tokens (backend, label, token_sha256, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING {TOKEN_COLUMNS}"
                ))
                .bind(backend)
                .bind(label)
                .bind(hash_token(&token))
                .bind(to_ns(now())),
                "backend token",
                backend,
            )
            .await
            .map_err(|e| match e {
                Error::Conflict(_) => Error::not_found("backend", backend),
                e => e,
            })?;
        Ok((row.into(), token))
    }

    /// Whether `token` is a live (unrevoked) token of `backend`.
    pub async fn verify_backend_token(&self, backend: &str, token: &str) -> Result<bool> {
        Ok(self.backend_for_token(token).await?.as_deref() == Some(backend))
    }

    /// The backend a live token belongs to, if any. The lookup is by the
    /// token's hash, so response time does not depend on how much of a
    /// guessed token is right.
    pub async fn backend_for_token(&self, token: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = self
            .fetch_opt(
                Sql::new(
                    "SELECT backend FROM backend_tokens \
                     WHERE token_sha256 = $1 AND revoked_at IS NULL",
                )
                .bind(hash_token(token)),
            )
            .await?;
        Ok(row.map(|(b,)| b))
    }

    /// `backend`'s tokens (without the secrets), oldest first.
    pub async fn list_backend_tokens(&self, backend: &str) -> Result<Vec<BackendToken>> {
        let rows: Vec<TokenRow> = self
            .fetch_vec(
                Sql::new(format!(
                    "SELECT {TOKEN_COLUMNS} FROM backend_tokens WHERE backend = $1 ORDER BY id"
                ))
                .bind(backend),
            )
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Revokes a token (idempotent).
    pub async fn revoke_backend_token(&self, id: i64) -> Result<()> {
        let n = self
            .write_one(
                Sql::new(
                    "UPDATE backend_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(to_ns(now())),
            )
            .await?;
        if n == 0 {
            return Err(Error::not_found("backend token", id.to_string()));
        }
        Ok(())
    }

    // ---- users ------------------------------------------------------------

    /// Creates a user.
    pub async fn create_user(&self, user: &NewUser) -> Result<User> {
        check_nonempty("username", &user.username)?;
        let row: UserRow = self
            .insert_returning(
                Sql::new(format!(
                    "INSERT INTO users (username, fullname, email, roles, active, created_at) \
                     VALUES ($1, $2, $3, $4, TRUE, $5) RETURNING {USER_COLUMNS}"
                ))
                .bind(&user.username)
                .bind(&user.fullname)
                .bind(user.email.to_lowercase())
                .bind(to_json(&user.roles))
                .bind(to_ns(now())),
                "user",
                &user.username,
            )
            .await?;
        User::try_from(row)
    }

    /// One user by id.
    pub async fn get_user(&self, id: i64) -> Result<Option<User>> {
        let row: Option<UserRow> = self
            .fetch_opt(Sql::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).bind(id))
            .await?;
        row.map(User::try_from).transpose()
    }

    /// One user by username.
    pub async fn get_user_by_username(&self, username: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = self
            .fetch_opt(
                Sql::new(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
                ))
                .bind(username),
            )
            .await?;
        row.map(User::try_from).transpose()
    }

    /// Every user, by username.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = self
            .fetch_vec(Sql::new(format!(
                "SELECT {USER_COLUMNS} FROM users ORDER BY username"
            )))
            .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    /// Changes a user.
    pub async fn update_user(&self, id: i64, update: &UserUpdate) -> Result<()> {
        let mut u = Update::new();
        u.set("fullname", update.fullname.as_deref())
            .set("email", update.email.as_deref().map(str::to_lowercase))
            .set("roles", update.roles.as_ref().map(to_json))
            .set("active", update.active);
        self.apply_update(u, "users", "id", "user", id).await
    }

    /// Deletes a user.
    pub async fn delete_user(&self, id: i64) -> Result<()> {
        self.delete_one("users", "id", "user", id).await
    }
}
