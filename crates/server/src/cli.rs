//! `warden serve` and `warden admin`: the clap arguments and what they run.
//! The `warden` binary (crate `warden-cli`) embeds [`ServeArgs`] and
//! [`AdminArgs`] as subcommands; `warden-server` is the same on its own.
//!
//! Admin commands work on the database directly (as job-runner's
//! `manage.py` does), so they need no running server and no token. A running
//! server sees their changes at its next scheduling pass (at most its poll
//! interval later). Secrets go to stdout once, alone on their line, so
//! scripts can capture them; everything else goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use warden_state::{NewBackend, NewOrganisation, NewProject, NewUser, NewWorkspace, Store};

use crate::app::{App, Server, StartError, open_store};
use crate::auth::{ROLE_ADMIN, ROLE_DEVELOPER};
use crate::config::{Config, DEFAULT_MAX_WORKERS, env};
use crate::scheduler::{FLAG_JOB_WEIGHTS, FLAG_MAX_DB_WORKERS, FLAG_MAX_WORKERS};

/// The value parser of every text option of `warden admin` (and of the
/// database options): a value that begins with `-` is refused. Such a value
/// is never a name anyone means (`--repo=-x`, `--branch=--upload-pack=…`),
/// and it would be read as an option by `git` or any other command it
/// reached; refusing it when given is clearer than finding out later.
fn not_an_option(value: &str) -> Result<String, String> {
    if value.starts_with('-') {
        return Err(
            "a value cannot begin with '-' (it could be read as an option of git or another \
             command)"
                .to_owned(),
        );
    }
    Ok(value.to_owned())
}

/// Where the controller keeps its state.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data directory: the SQLite database (`warden.sqlite`) and the cache of
    /// bare repositories (`repos/`).
    #[arg(long, env = env::DATA_DIR, default_value = "warden-data")]
    pub data_dir: PathBuf,
    /// Use this database instead of `<data-dir>/warden.sqlite`, e.g.
    /// `postgres://user@host/db`.
    #[arg(long, env = env::DATABASE_URL, hide_env_values = true, value_parser = not_an_option)]
    pub database_url: Option<String>,
    /// PostgreSQL only: keep warden's tables in this schema (created if
    /// missing), so that several warden servers or test runs can share one
    /// database.
    #[arg(long, env = env::PG_SCHEMA, value_parser = not_an_option)]
    pub pg_schema: Option<String>,
}

impl DataArgs {
    fn config(&self) -> Config {
        Config {
            database_url: self.database_url.clone(),
            pg_schema: self.pg_schema.clone(),
            ..Config::new(&self.data_dir)
        }
    }
}

/// Run the controller: the JSON API for researchers and agents, and the
/// scheduler.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the state is.
    #[command(flatten)]
    pub data: DataArgs,
    /// Address to listen on (`127.0.0.1:0` picks a free port; see
    /// `--addr-file`).
    #[arg(long, env = env::BIND, default_value = "127.0.0.1:8000")]
    pub bind: String,
    /// Write the address actually listened on to this file once ready.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Worker slots of a backend that has no `max-workers` setting.
    #[arg(long, default_value_t = DEFAULT_MAX_WORKERS)]
    pub max_workers: f64,
    /// Database-job slots of a backend that has no `max-db-workers` setting
    /// (default: its worker slots).
    #[arg(long)]
    pub max_db_workers: Option<f64>,
    /// Registry prefix of action images.
    #[arg(long, default_value = "ghcr.io/opensafely-core")]
    pub image_registry: String,
    /// Safety-net interval of the scheduler, in milliseconds (it reacts to
    /// its own events at once; this catches changes made by other processes).
    #[arg(long, default_value_t = 5000)]
    pub poll_interval_ms: u64,
    /// Attempts of a job whose executor fails before it fails with
    /// `job_error`.
    #[arg(long, default_value_t = 3)]
    pub max_task_attempts: u32,
    /// Log filter (`tracing` syntax, e.g. `info,warden_server=debug`).
    #[arg(long, env = env::LOG, default_value = "info")]
    pub log: String,
}

/// Administer the controller's records: organisations, projects,
/// workspaces, backends, users and their tokens.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Where the state is.
    #[command(flatten)]
    pub data: DataArgs,
    /// What to administer.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Backends and their agents' tokens.
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Users, their roles and API tokens.
    #[command(subcommand)]
    User(UserCommand),
}

/// Organisation commands.
#[derive(Debug, Clone, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation.
    Create {
        /// Unique slug (`[a-z0-9-]+`).
        #[arg(long, value_parser = not_an_option)]
        slug: String,
        /// Display name.
        #[arg(long, value_parser = not_an_option)]
        name: String,
    },
}

/// Project commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        /// Unique slug (`[a-z0-9-]+`).
        #[arg(long, value_parser = not_an_option)]
        slug: String,
        /// Unique display name.
        #[arg(long, value_parser = not_an_option)]
        name: String,
        /// Slug of the lead organisation.
        #[arg(long, value_parser = not_an_option)]
        org: Option<String>,
    },
}

/// Workspace commands.
#[derive(Debug, Clone, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        /// Unique name (`[A-Za-z0-9_-]+`, stored lowercased).
        #[arg(long, value_parser = not_an_option)]
        name: String,
        /// Repository: a URL or an absolute local path.
        #[arg(long, value_parser = not_an_option)]
        repo: String,
        /// Branch.
        #[arg(long, value_parser = not_an_option, default_value = "main")]
        branch: String,
        /// Slug of the owning project.
        #[arg(long, value_parser = not_an_option)]
        project: Option<String>,
    },
    /// Archive a workspace (no new job requests).
    Archive {
        /// Workspace name.
        #[arg(long, value_parser = not_an_option)]
        name: String,
    },
    /// Unarchive a workspace.
    Unarchive {
        /// Workspace name.
        #[arg(long, value_parser = not_an_option)]
        name: String,
    },
}

/// Backend commands.
#[derive(Debug, Clone, Subcommand)]
pub enum BackendCommand {
    /// Register a backend and print a token for its agent (once).
    Create {
        /// Unique slug (`[a-z0-9_-]+`), e.g. `tpp`.
        #[arg(long, value_parser = not_an_option)]
        slug: String,
        /// Display name, e.g. `TPP`.
        #[arg(long, value_parser = not_an_option)]
        name: String,
    },
    /// Print a new token for a backend's agent (once).
    Token {
        /// Backend slug.
        #[arg(long, value_parser = not_an_option)]
        slug: String,
        /// What the token is for.
        #[arg(long, value_parser = not_an_option, default_value = "agent")]
        label: String,
    },
    /// Pause a backend: its pending jobs do not start.
    Pause {
        /// Backend slug.
        #[arg(long, value_parser = not_an_option)]
        slug: String,
    },
    /// Unpause a backend.
    Unpause {
        /// Backend slug.
        #[arg(long, value_parser = not_an_option)]
        slug: String,
    },
    /// Set a backend's worker slots and job weights.
    Workers {
        /// Backend slug.
        #[arg(long, value_parser = not_an_option)]
        slug: String,
        /// Slots for non-database jobs (sum of weights).
        #[arg(long)]
        max_workers: Option<f64>,
        /// Slots for database jobs (a separate pool).
        #[arg(long)]
        max_db_workers: Option<f64>,
        /// Job weights as JSON: `{"default": {"<regex on run command>": w},
        /// "workspaces": {"<ws>": {"<regex on action>": w}}}`.
        #[arg(long, value_parser = not_an_option)]
        weights: Option<String>,
    },
}

/// User commands.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user and print an API token for them (once).
    Create {
        /// Unique login name.
        #[arg(long, value_parser = not_an_option)]
        username: String,
        /// Full name.
        #[arg(long, value_parser = not_an_option, default_value = "")]
        fullname: String,
        /// Email address.
        #[arg(long, value_parser = not_an_option, default_value = "")]
        email: String,
        /// Give the global `admin` role (everything, everywhere).
        #[arg(long)]
        admin: bool,
        /// May run jobs on this backend (repeatable).
        #[arg(long = "backend", value_parser = not_an_option)]
        backends: Vec<String>,
        /// Is a `developer` (may run and cancel jobs) of this project
        /// (repeatable).
        #[arg(long = "developer-of", value_parser = not_an_option)]
        developer_of: Vec<String>,
    },
    /// Print a new API token for a user (once).
    Token {
        /// Login name.
        #[arg(long, value_parser = not_an_option)]
        username: String,
        /// What the token is for.
        #[arg(long, value_parser = not_an_option, default_value = "api")]
        label: String,
    },
    /// Give a user more rights.
    Grant {
        /// Login name.
        #[arg(long, value_parser = not_an_option)]
        username: String,
        /// Give the global `admin` role.
        #[arg(long)]
        admin: bool,
        /// May run jobs on this backend (repeatable).
        #[arg(long = "backend", value_parser = not_an_option)]
        backends: Vec<String>,
        /// Make a `developer` of this project (repeatable).
        #[arg(long = "developer-of", value_parser = not_an_option)]
        developer_of: Vec<String>,
    },
}

/// What the commands fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server could not start (or the database could not be opened).
    #[error(transparent)]
    Start(#[from] StartError),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] warden_state::Error),
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
    /// The async runtime could not start, or writing a file failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "could not start the async runtime".into(),
            source,
        })
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `warden serve` until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    init_logging(&args.log);
    if args.max_workers < 0.0 || args.max_db_workers.is_some_and(|w| w < 0.0) {
        return Err(CliError::Invalid("worker slots cannot be negative".into()));
    }
    let config = Config {
        default_max_workers: args.max_workers,
        default_max_db_workers: args.max_db_workers,
        image_registry: args.image_registry.clone(),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
        max_task_attempts: args.max_task_attempts.max(1),
        ..args.data.config()
    };
    runtime()?.block_on(async move {
        if let Err(e) = warden_git::git_version() {
            return Err(CliError::Start(StartError::Git(e)));
        }
        tracing::info!(
            database = %warden_git::redact_url(&config.database()),
            data_dir = %config.data_dir.display(),
            "opening the database"
        );
        let state = App::open(config).await?;
        let server = Server::bind(state, &args.bind).await?;
        if let Some(path) = &args.addr_file {
            // Written whole then renamed, so a reader never sees half of it.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, server.addr.to_string())
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|source| CliError::Io {
                    what: format!("could not write {}", path.display()),
                    source,
                })?;
        }
        server.run_until_signal().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs one `warden admin` command.
pub fn admin(args: AdminArgs) -> Result<ExitCode, CliError> {
    init_logging("warn");
    let config = args.data.config();
    runtime()?.block_on(async move {
        let store = open_store(&config).await?;
        let result = run_admin(&store, args.command).await;
        store.close().await;
        result.map(|()| ExitCode::SUCCESS)
    })
}

fn note(message: impl std::fmt::Display) {
    eprintln!("{message}");
}

async fn audit(
    store: &Store,
    action: &str,
    target_type: &str,
    target_id: &str,
    detail: serde_json::Value,
) {
    let actor = std::env::var("USER").unwrap_or_else(|_| "admin".into());
    let event = warden_state::NewAuditEvent {
        actor: format!("cli:{actor}"),
        action: action.into(),
        target_type: target_type.into(),
        target_id: target_id.into(),
        detail,
    };
    if let Err(e) = store.append_audit(&event).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
}

async fn project_id(store: &Store, slug: &str) -> Result<i64, CliError> {
    Ok(store
        .get_project_by_slug(slug)
        .await?
        .ok_or_else(|| CliError::Invalid(format!("no project {slug:?}")))?
        .id)
}

async fn grant(
    store: &Store,
    user: &warden_state::User,
    admin: bool,
    backends: &[String],
    developer_of: &[String],
) -> Result<(), CliError> {
    if admin && !user.roles.iter().any(|r| r == ROLE_ADMIN) {
        let mut roles = user.roles.clone();
        roles.push(ROLE_ADMIN.into());
        store
            .update_user(
                user.id,
                &warden_state::UserUpdate {
                    roles: Some(roles),
                    ..Default::default()
                },
            )
            .await?;
        note(format!("{} is now an admin", user.username));
    }
    for backend in backends {
        store.add_backend_member(backend, user.id).await?;
        note(format!(
            "{} may run jobs on backend {backend}",
            user.username
        ));
    }
    for project in developer_of {
        let id = project_id(store, project).await?;
        let mut roles = store.project_roles(id, user.id).await?;
        if !roles.iter().any(|r| r == ROLE_DEVELOPER) {
            roles.push(ROLE_DEVELOPER.into());
        }
        store.set_project_roles(id, user.id, &roles).await?;
        note(format!(
            "{} is a developer of project {project}",
            user.username
        ));
    }
    audit(
        store,
        "user.grant",
        "user",
        &user.username,
        serde_json::json!({"admin": admin, "backends": backends, "developer_of": developer_of}),
    )
    .await;
    Ok(())
}

async fn run_admin(store: &Store, command: AdminCommand) -> Result<(), CliError> {
    match command {
        AdminCommand::Org(OrgCommand::Create { slug, name }) => {
            let org = store
                .create_organisation(&NewOrganisation { slug, name })
                .await?;
            audit(
                store,
                "organisation.create",
                "organisation",
                &org.slug,
                serde_json::json!({}),
            )
            .await;
            note(format!("created organisation {}", org.slug));
        }
        AdminCommand::Project(ProjectCommand::Create { slug, name, org }) => {
            let org_id = match org {
                Some(org) => Some(
                    store
                        .get_organisation_by_slug(&org)
                        .await?
                        .ok_or_else(|| CliError::Invalid(format!("no organisation {org:?}")))?
                        .id,
                ),
                None => None,
            };
            let project = store
                .create_project(&NewProject { slug, name, org_id })
                .await?;
            audit(
                store,
                "project.create",
                "project",
                &project.slug,
                serde_json::json!({}),
            )
            .await;
            note(format!("created project {}", project.slug));
        }
        AdminCommand::Workspace(WorkspaceCommand::Create {
            name,
            repo,
            branch,
            project,
        }) => {
            let project_id = match project {
                Some(p) => Some(project_id(store, &p).await?),
                None => None,
            };
            let workspace = store
                .create_workspace(&NewWorkspace {
                    name,
                    repo_url: repo,
                    branch,
                    project_id,
                })
                .await?;
            audit(
                store,
                "workspace.create",
                "workspace",
                &workspace.name,
                serde_json::json!({"repo": warden_git::redact_url(&workspace.repo_url), "branch": workspace.branch}),
            )
            .await;
            note(format!("created workspace {}", workspace.name));
        }
        AdminCommand::Workspace(WorkspaceCommand::Archive { name }) => {
            set_archived(store, &name, true).await?;
        }
        AdminCommand::Workspace(WorkspaceCommand::Unarchive { name }) => {
            set_archived(store, &name, false).await?;
        }
        AdminCommand::Backend(BackendCommand::Create { slug, name }) => {
            let backend = store.create_backend(&NewBackend { slug, name }).await?;
            let (_, token) = store.create_backend_token(&backend.slug, "agent").await?;
            audit(
                store,
                "backend.create",
                "backend",
                &backend.slug,
                serde_json::json!({}),
            )
            .await;
            note(format!(
                "created backend {}; its agent's token (shown only now):",
                backend.slug
            ));
            println!("{token}");
        }
        AdminCommand::Backend(BackendCommand::Token { slug, label }) => {
            let (meta, token) = store.create_backend_token(&slug, &label).await?;
            audit(
                store,
                "backend.token",
                "backend",
                &slug,
                serde_json::json!({"token_id": meta.id}),
            )
            .await;
            note(format!(
                "new token {} for backend {slug} (shown only now):",
                meta.id
            ));
            println!("{token}");
        }
        AdminCommand::Backend(BackendCommand::Pause { slug }) => {
            require_backend(store, &slug).await?;
            store.set_paused(&slug, true).await?;
            audit(
                store,
                "backend.pause",
                "backend",
                &slug,
                serde_json::json!({}),
            )
            .await;
            note(format!("backend {slug} paused"));
        }
        AdminCommand::Backend(BackendCommand::Unpause { slug }) => {
            require_backend(store, &slug).await?;
            store.set_paused(&slug, false).await?;
            audit(
                store,
                "backend.unpause",
                "backend",
                &slug,
                serde_json::json!({}),
            )
            .await;
            note(format!("backend {slug} unpaused"));
        }
        AdminCommand::Backend(BackendCommand::Workers {
            slug,
            max_workers,
            max_db_workers,
            weights,
        }) => {
            require_backend(store, &slug).await?;
            for (flag, value) in [
                (FLAG_MAX_WORKERS, max_workers),
                (FLAG_MAX_DB_WORKERS, max_db_workers),
            ] {
                if let Some(v) = value {
                    if !v.is_finite() || v < 0.0 {
                        return Err(CliError::Invalid(format!("{flag} must be a number >= 0")));
                    }
                    store.set_flag(&slug, flag, Some(&v.to_string())).await?;
                    note(format!("backend {slug}: {flag} = {v}"));
                }
            }
            if let Some(w) = weights {
                serde_json::from_str::<serde_json::Value>(&w)
                    .map_err(|e| CliError::Invalid(format!("--weights is not JSON: {e}")))?;
                store.set_flag(&slug, FLAG_JOB_WEIGHTS, Some(&w)).await?;
                note(format!("backend {slug}: job weights set"));
            }
            audit(
                store,
                "backend.workers",
                "backend",
                &slug,
                serde_json::json!({"max_workers": max_workers, "max_db_workers": max_db_workers}),
            )
            .await;
        }
        AdminCommand::User(UserCommand::Create {
            username,
            fullname,
            email,
            admin,
            backends,
            developer_of,
        }) => {
            let user = store
                .create_user(&NewUser {
                    fullname: if fullname.is_empty() {
                        username.clone()
                    } else {
                        fullname
                    },
                    username,
                    email,
                    roles: Vec::new(),
                })
                .await?;
            audit(
                store,
                "user.create",
                "user",
                &user.username,
                serde_json::json!({}),
            )
            .await;
            grant(store, &user, admin, &backends, &developer_of).await?;
            let (_, token) = store.create_user_token(user.id, "api").await?;
            note(format!(
                "created user {}; their API token (shown only now):",
                user.username
            ));
            println!("{token}");
        }
        AdminCommand::User(UserCommand::Token { username, label }) => {
            let user = require_user(store, &username).await?;
            let (meta, token) = store.create_user_token(user.id, &label).await?;
            audit(
                store,
                "user.token",
                "user",
                &username,
                serde_json::json!({"token_id": meta.id}),
            )
            .await;
            note(format!(
                "new token {} for {username} (shown only now):",
                meta.id
            ));
            println!("{token}");
        }
        AdminCommand::User(UserCommand::Grant {
            username,
            admin,
            backends,
            developer_of,
        }) => {
            let user = require_user(store, &username).await?;
            grant(store, &user, admin, &backends, &developer_of).await?;
        }
    }
    Ok(())
}

async fn set_archived(store: &Store, name: &str, archived: bool) -> Result<(), CliError> {
    let workspace = store
        .get_workspace_by_name(&name.to_lowercase())
        .await?
        .ok_or_else(|| CliError::Invalid(format!("no workspace {name:?}")))?;
    store
        .update_workspace(
            workspace.id,
            &warden_state::WorkspaceUpdate {
                archived: Some(archived),
                ..Default::default()
            },
        )
        .await?;
    audit(
        store,
        if archived {
            "workspace.archive"
        } else {
            "workspace.unarchive"
        },
        "workspace",
        &workspace.name,
        serde_json::json!({}),
    )
    .await;
    note(format!(
        "workspace {} {}",
        workspace.name,
        if archived { "archived" } else { "unarchived" }
    ));
    Ok(())
}

async fn require_backend(store: &Store, slug: &str) -> Result<(), CliError> {
    store
        .get_backend(slug)
        .await?
        .map(|_| ())
        .ok_or_else(|| CliError::Invalid(format!("no backend {slug:?}")))
}

async fn require_user(store: &Store, username: &str) -> Result<warden_state::User, CliError> {
    store
        .get_user_by_username(username)
        .await?
        .ok_or_else(|| CliError::Invalid(format!("no user {username:?}")))
}

/// The `warden-server` binary's commands.
#[derive(Debug, Parser)]
#[command(name = "warden-server", version, about = "The warden controller")]
enum Cli {
    /// Run the controller.
    Serve(ServeArgs),
    /// Administer records.
    Admin(AdminArgs),
}

/// Prints an error with its causes, `error: … / caused by: …`.
pub fn report(err: &dyn std::error::Error) {
    eprintln!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

/// `warden-server`'s entry point.
pub fn main() -> ExitCode {
    let result = match Cli::parse() {
        Cli::Serve(args) => serve(args),
        Cli::Admin(args) => admin(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            match e {
                CliError::Invalid(_) | CliError::Store(_) => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// Every text option of every admin command, with the arguments its
    /// command needs otherwise.
    const OPTIONS: &[(&[&str], &str)] = &[
        (&["org", "create", "--name", "N"], "--slug"),
        (&["org", "create", "--slug", "s"], "--name"),
        (&["project", "create", "--name", "N"], "--slug"),
        (&["project", "create", "--slug", "s"], "--name"),
        (
            &["project", "create", "--slug", "s", "--name", "N"],
            "--org",
        ),
        (
            &["workspace", "create", "--repo", "/r", "--branch", "b"],
            "--name",
        ),
        (
            &["workspace", "create", "--name", "w", "--branch", "b"],
            "--repo",
        ),
        (
            &["workspace", "create", "--name", "w", "--repo", "/r"],
            "--branch",
        ),
        (
            &["workspace", "create", "--name", "w", "--repo", "/r"],
            "--project",
        ),
        (&["workspace", "archive"], "--name"),
        (&["workspace", "unarchive"], "--name"),
        (&["backend", "create", "--name", "N"], "--slug"),
        (&["backend", "create", "--slug", "s"], "--name"),
        (&["backend", "token"], "--slug"),
        (&["backend", "token", "--slug", "s"], "--label"),
        (&["backend", "pause"], "--slug"),
        (&["backend", "unpause"], "--slug"),
        (&["backend", "workers"], "--slug"),
        (&["backend", "workers", "--slug", "s"], "--weights"),
        (&["user", "create"], "--username"),
        (&["user", "create", "--username", "u"], "--fullname"),
        (&["user", "create", "--username", "u"], "--email"),
        (&["user", "create", "--username", "u"], "--backend"),
        (&["user", "create", "--username", "u"], "--developer-of"),
        (&["user", "token"], "--username"),
        (&["user", "token", "--username", "u"], "--label"),
        (&["user", "grant"], "--username"),
        (&["user", "grant", "--username", "u"], "--backend"),
        (&["user", "grant", "--username", "u"], "--developer-of"),
    ];

    /// Values that git (or ssh, or any command) would read as an option.
    fn hostile_values() -> Vec<String> {
        let mut values: Vec<String> = [
            "-",
            "--",
            "-x",
            "--upload-pack=touch /tmp/pwned",
            "--receive-pack=evil",
            "-oProxyCommand=evil",
            "--end-of-options",
            "-c core.sshCommand=evil",
            "--output=/etc/passwd",
        ]
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
        for name in ["main", "repo", "a b", "über", "x=y"] {
            values.push(format!("-{name}"));
            values.push(format!("--{name}"));
        }
        values
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut argv = vec!["warden-server", "admin", "--data-dir", "/tmp/unused"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
    }

    #[test]
    fn admin_values_that_look_like_options_are_refused() {
        for (prefix, option) in OPTIONS {
            let mut good = prefix.to_vec();
            good.extend([*option, "plain"]);
            parse(&good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
            for value in hostile_values() {
                // `--opt=value` reaches the value parser; `--opt value`
                // (with a value clap reads as a flag) must fail too.
                let joined = format!("{option}={value}");
                for args in [
                    [prefix.to_vec(), vec![joined.as_str()]].concat(),
                    [prefix.to_vec(), vec![*option, value.as_str()]].concat(),
                ] {
                    let err = match parse(&args) {
                        Ok(cli) => panic!("{args:?} was accepted: {cli:?}"),
                        Err(e) => e,
                    };
                    let text = err.to_string();
                    assert_eq!(err.exit_code(), 2, "{args:?}: {text}");
                    if args.contains(&joined.as_str()) {
                        assert!(
                            text.contains("a value cannot begin with '-'") && text.contains(option),
                            "{args:?}: {text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn database_options_refuse_option_like_values() {
        for value in hostile_values() {
            for option in ["--database-url", "--pg-schema"] {
                let joined = format!("{option}={value}");
                for argv in [
                    vec!["warden-server", "serve", joined.as_str()],
                    vec![
                        "warden-server",
                        "admin",
                        joined.as_str(),
                        "backend",
                        "pause",
                        "--slug",
                        "s",
                    ],
                ] {
                    let err = Cli::try_parse_from(&argv).unwrap_err();
                    assert!(
                        err.to_string().contains("a value cannot begin with '-'"),
                        "{argv:?}: {err}"
                    );
                }
            }
        }
    }
}
