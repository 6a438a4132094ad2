//! The Docker engine, through the Docker Engine API (`bollard`). Never shells
//! out to the `docker` CLI and never pulls images.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig,
    HostConfigLogConfig, Mount, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StatsOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::beneath::link_refused;
use crate::error::{ExecutorError, Result};
use crate::glob::Glob;
use crate::logcap::CappedLog;
use crate::outputs;
use crate::record::{self, JobMetadata};
use crate::types::{
    ExecutorConfig, ExecutorState, Finalize, JobDefinition, JobResults, JobStatus, LogLine,
    LogStream, TIMESTAMP_FILE,
};
use crate::util::{is_safe_relative, now_ns, now_secs, parse_docker_time_ns, safe_join};
use crate::{Executor, fsops};
use warden_pipeline::escape::escape_name;

/// Time limit for inspecting a container when deriving status.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Docker keeps at most this many files of this size of a container's
/// output (compressed on disk): 100 MB, so a job printing 10 GB cannot fill
/// the disk. The job log keeps a head and tail of it (see `logcap`).
const DOCKER_LOG_FILES: &str = "5";
const DOCKER_LOG_FILE_SIZE: &str = "20m";
/// Longest name shown in the unmatched-patterns hint (a job's tree can be
/// deeper than `PATH_MAX`); longer ones are cut in the middle.
const MAX_HINT_NAME: usize = 300;
/// Most undeclared files listed in the unmatched-patterns hint.
const MAX_HINT_FILES: usize = 100;
/// Smallest process limit accepted (Docker reads 0 as "no limit").
const MIN_PIDS_LIMIT: u64 = 8;
/// Written in the job's log directory when its container was seen at its
/// process limit; finalize then explains a failure by it.
const PIDS_LIMIT_MARKER: &str = "pids-limit-reached";
/// Exit code of a process killed by SIGKILL (`128 + 9`).
const EXIT_KILLED: i64 = 137;

/// An [`Executor`] on the local Docker daemon.
pub struct DockerExecutor {
    docker: Docker,
    config: ExecutorConfig,
    job_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    manifest_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::DockerUnavailable {
        reason: e.to_string(),
    }
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn docker_err(operation: &'static str, object: &str) -> impl FnOnce(BollardError) -> ExecutorError {
    let object = object.to_string();
    move |source| match source {
        BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError => ExecutorError::DockerUnavailable {
            reason: format!("{operation} of {object}: {source}"),
        },
        source => ExecutorError::Docker {
            operation,
            object,
            source,
        },
    }
}

impl DockerExecutor {
    /// Connect to the local Docker daemon (`DOCKER_HOST` or the default
    /// socket), agree on an API version, and check it answers.
    pub async fn connect(config: ExecutorConfig) -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(unavailable)?;
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        Self::with_client(docker, config)
    }

    /// Use an existing client (its API version already agreed).
    pub fn with_client(docker: Docker, config: ExecutorConfig) -> Result<Self> {
        let config = config
            .absolutized()
            .map_err(ExecutorError::io("resolving", &config.volumes_dir))?;
        Ok(DockerExecutor {
            docker,
            config,
            job_locks: Mutex::new(HashMap::new()),
            manifest_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration (paths made absolute).
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// The Docker client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Check the daemon answers.
    pub async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(unavailable)
    }

    /// Is `image` present locally?
    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(false),
            Err(e) => Err(docker_err("inspect image", image)(e)),
        }
    }

    /// Serialise operations on one job within this process.
    async fn lock(&self, job: &JobDefinition) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.job_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(job.id.clone()).or_default().clone()
        };
        m.lock_owned().await
    }

    fn validate(&self, job: &JobDefinition) -> Result<()> {
        let bad = |reason: String| {
            Err(ExecutorError::InvalidJob {
                job_id: job.id.clone(),
                reason,
            })
        };
        if !valid_job_id(&job.id) {
            return bad(format!(
                "job id {:?} must be 1-128 characters of A-Z a-z 0-9 _ . - (not starting with . or -)",
                job.id
            ));
        }
        if job.action.is_empty()
            || job.action.contains(['/', '\\', '\0'])
            || job.action == "."
            || job.action == ".."
        {
            return bad(format!(
                "action name {:?} cannot be used as a file name",
                job.action
            ));
        }
        if self.config.per_workspace_dirs
            && (job.workspace.is_empty()
                || job.workspace.contains(['/', '\\', '\0'])
                || job.workspace == "."
                || job.workspace == "..")
        {
            return bad(format!(
                "workspace name {:?} cannot be used as a directory name",
                job.workspace
            ));
        }
        if job.image.trim().is_empty() {
            return bad("no image given".to_string());
        }
        if !(job.cpu_count.is_finite() && job.cpu_count > 0.0) {
            return bad(format!(
                "cpu count {} must be a positive number",
                job.cpu_count
            ));
        }
        if job.memory_limit == 0 || job.memory_limit > i64::MAX as u64 {
            return bad(format!(
                "memory limit {} bytes is not usable",
                job.memory_limit
            ));
        }
        if job.pids_limit < MIN_PIDS_LIMIT || job.pids_limit > i64::MAX as u64 {
            return bad(format!(
                "process limit {} must be at least {MIN_PIDS_LIMIT}",
                job.pids_limit
            ));
        }
        if let Some(input) = job.inputs.iter().find(|i| !is_safe_relative(i)) {
            return bad(format!(
                "input file {input:?} must be a relative path inside the workspace"
            ));
        }
        if let Some(p) = job.output_spec.keys().find(|p| !is_safe_relative(p)) {
            return bad(format!(
                "output pattern {p:?} must be a relative path inside the job"
            ));
        }
        if let Some(user) = &job.user
            && (user.is_empty() || user.contains(char::is_whitespace))
        {
            return bad(format!("user {user:?} must look like uid:gid"));
        }
        Ok(())
    }

    /// `uid:gid` the container runs as.
    fn user_of(job: &JobDefinition) -> String {
        job.user.clone().unwrap_or_else(|| {
            format!(
                "{}:{}",
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw()
            )
        })
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>> {
        let call = self.docker.inspect_container(name, None);
        match tokio::time::timeout(INSPECT_TIMEOUT, call).await {
            Err(_) => Err(ExecutorError::DockerTimeout {
                operation: "inspect container",
                object: name.to_string(),
                seconds: INSPECT_TIMEOUT.as_secs(),
            }),
            Ok(Ok(c)) => Ok(Some(c)),
            Ok(Err(e)) if is_status(&e, 404) => Ok(None),
            Ok(Err(e)) => Err(docker_err("inspect container", name)(e)),
        }
    }

    /// The limit the job's container was seen at, if it was.
    fn pids_limit_reached(&self, job: &JobDefinition) -> Option<u64> {
        let path = self.config.job_log_dir(job).join(PIDS_LIMIT_MARKER);
        let text = std::fs::read_to_string(path).ok()?;
        text.trim().parse().ok()
    }

    fn read_timestamp(&self, job: &JobDefinition) -> Option<u64> {
        let text = std::fs::read_to_string(self.config.job_dir(job).join(TIMESTAMP_FILE)).ok()?;
        text.trim().parse().ok()
    }

    async fn status_inner(&self, job: &JobDefinition) -> Result<JobStatus> {
        if let Some(meta) = record::read_metadata(&self.config, job)? {
            let state = if meta.results.error.is_some() {
                ExecutorState::Error
            } else {
                ExecutorState::Finalized
            };
            return Ok(JobStatus {
                state,
                timestamp_ns: Some(meta.results.timestamp_ns),
            });
        }
        if let Some(container) = self.inspect(&job.container_name()).await? {
            let state = container.state.unwrap_or_default();
            let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
            return Ok(match status {
                ContainerStateStatusEnum::CREATED => JobStatus {
                    state: ExecutorState::Prepared,
                    timestamp_ns: self.read_timestamp(job),
                },
                ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD => JobStatus {
                    state: ExecutorState::Executed,
                    timestamp_ns: state.finished_at.as_deref().and_then(parse_docker_time_ns),
                },
                _ if state.running == Some(false) && state.finished_at.is_some() => JobStatus {
                    state: ExecutorState::Executed,
                    timestamp_ns: state.finished_at.as_deref().and_then(parse_docker_time_ns),
                },
                _ => JobStatus {
                    state: ExecutorState::Executing,
                    timestamp_ns: state.started_at.as_deref().and_then(parse_docker_time_ns),
                },
            });
        }
        Ok(match self.read_timestamp(job) {
            Some(ts) => JobStatus {
                state: ExecutorState::Prepared,
                timestamp_ns: Some(ts),
            },
            None => JobStatus {
                state: ExecutorState::Unknown,
                timestamp_ns: None,
            },
        })
    }

    fn stored_results(&self, job: &JobDefinition) -> Result<JobResults> {
        match record::read_metadata(&self.config, job)? {
            Some(meta) => Ok(meta.results),
            None => Err(ExecutorError::InvalidState {
                operation: "read the results of",
                job_id: job.id.clone(),
                state: ExecutorState::Unknown,
            }),
        }
    }

    async fn blocking<T: Send + 'static>(
        job: &JobDefinition,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ExecutorError::Task {
                job_id: job.id.clone(),
                reason: e.to_string(),
            })?
    }

    fn prepare_blocking(config: &ExecutorConfig, job: &JobDefinition, user: &str) -> Result<()> {
        let code_dir = std::path::absolute(&job.code_dir)
            .map_err(ExecutorError::io("resolving code directory", &job.code_dir))?;
        if !code_dir.is_dir() {
            return Err(ExecutorError::CodeDirMissing {
                path: job.code_dir.clone(),
                job_id: job.id.clone(),
            });
        }
        let job_dir = config.job_dir(job);
        let volumes = config
            .own_tree(&config.volumes_dir)
            .map_err(ExecutorError::io(
                "creating volumes directory",
                &config.volumes_dir,
            ))?;
        let marker = record::job_log_rel(job).join(PIDS_LIMIT_MARKER);
        config
            .own_tree(&config.log_dir)
            .and_then(|t| t.remove_file(&marker))
            .map_err(ExecutorError::io("removing", config.log_dir.join(&marker)))?;
        // A half-prepared directory (no marker) is started afresh.
        let problems = fsops::remove_tree_in(&volumes, Path::new(&job.id));
        if !problems.is_empty() {
            return Err(ExecutorError::Io {
                operation: "removing half-prepared job directory",
                path: job_dir,
                source: std::io::Error::other(problems.join("; ")),
            });
        }
        rustix::fs::mkdirat(
            volumes.fd(),
            job.id.as_str(),
            rustix::fs::Mode::from_raw_mode(0o777),
        )
        .map_err(|e| ExecutorError::io("creating job directory", &job_dir)(e.into()))?;
        let job_tree = volumes
            .subtree(Path::new(&job.id), false)
            .map_err(ExecutorError::io("opening job directory", &job_dir))?;

        tracing::info!(job = %job.id, action = %job.action, from = %code_dir.display(), "copying in code");
        let exclude: Vec<Glob> = job.code_exclude.iter().map(|p| Glob::new(p)).collect();
        let skip_dirs = [config.volumes_dir.clone(), config.log_dir.clone()];
        let copied = fsops::copy_code_tree(&code_dir, &job_tree, &exclude, &skip_dirs)?;
        tracing::debug!(job = %job.id, files = copied.files, symlinks = copied.symlinks, "code copied");

        let high_path = config.high_privacy_workspace(&job.workspace);
        let high = config
            .high_tree(&job.workspace)
            .map_err(ExecutorError::io("opening workspace", &high_path))?;
        let mut copier = fsops::AtomicCopier::new(job_tree.clone());
        for input in &job.inputs {
            tracing::info!(job = %job.id, file = %input, "copying input file");
            let invalid = || ExecutorError::InvalidJob {
                job_id: job.id.clone(),
                reason: format!(
                    "input file {input:?} must be a relative path inside the workspace"
                ),
            };
            let src = safe_join(&high_path, input).ok_or_else(invalid)?;
            let rel = safe_join(Path::new(""), input).ok_or_else(invalid)?;
            let mut file = match high.open_file(&rel) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ExecutorError::MissingInput {
                        file: input.clone(),
                        workspace: job.workspace.clone(),
                        job_id: job.id.clone(),
                    });
                }
                Err(e) => {
                    let kind = if link_refused(&e).is_some() {
                        "a symbolic link, or under one"
                    } else if e.kind() == std::io::ErrorKind::InvalidInput {
                        match std::fs::symlink_metadata(&src) {
                            Ok(m) if m.is_dir() => "a directory",
                            _ => "a special file",
                        }
                    } else {
                        return Err(ExecutorError::io("reading input file", &src)(e));
                    };
                    return Err(ExecutorError::InputNotRegularFile {
                        file: input.clone(),
                        workspace: job.workspace.clone(),
                        job_id: job.id.clone(),
                        kind,
                    });
                }
            };
            copier
                .write_from(&mut file, &rel)
                .map_err(ExecutorError::io(
                    "copying input file to",
                    job_dir.join(&rel),
                ))?;
        }

        job_tree
            .write_atomic(Path::new(TIMESTAMP_FILE), now_ns().to_string().as_bytes())
            .map_err(ExecutorError::io("writing", job_dir.join(TIMESTAMP_FILE)))?;

        // Make the directory the container's user's, when we are root and it is someone else.
        if let Some((uid, gid)) = parse_numeric_user(user) {
            let me = rustix::process::geteuid().as_raw();
            if me == 0 && uid != 0 {
                fsops::chown_tree(&job_tree, uid, gid)?;
            }
        }
        Ok(())
    }

    async fn create_and_start(&self, job: &JobDefinition) -> Result<()> {
        let name = job.container_name();
        if !self.image_exists(&job.image).await? {
            return Err(ExecutorError::ImageNotFound {
                image: job.image.clone(),
            });
        }
        let existing = self.inspect(&name).await?;
        if existing.is_none() {
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            env.insert("HOME".to_string(), "/tmp".to_string());
            env.extend(job.env.clone());
            let mut labels: HashMap<String, String> = job.labels.clone().into_iter().collect();
            labels.insert("warden".to_string(), String::new());
            labels.insert("warden.job_id".to_string(), job.id.clone());
            labels.insert("workspace".to_string(), job.workspace.clone());
            labels.insert("action".to_string(), job.action.clone());
            let memory = job.memory_limit as i64;
            let host_config = HostConfig {
                init: Some(true),
                network_mode: Some("none".to_string()),
                nano_cpus: Some((job.cpu_count * 1e9).round() as i64),
                memory: Some(memory),
                // no swap beyond the memory limit
                memory_swap: Some(memory),
                pids_limit: Some(job.pids_limit as i64),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                mounts: Some(vec![Mount {
                    typ: Some(MountType::BIND),
                    source: Some(self.config.job_dir(job).to_string_lossy().into_owned()),
                    target: Some("/workspace".to_string()),
                    read_only: Some(false),
                    ..Default::default()
                }]),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("local".to_string()),
                    config: Some(HashMap::from([
                        ("max-file".to_string(), DOCKER_LOG_FILES.to_string()),
                        ("max-size".to_string(), DOCKER_LOG_FILE_SIZE.to_string()),
                        ("compress".to_string(), "true".to_string()),
                    ])),
                }),
                ..Default::default()
            };
            let body = ContainerCreateBody {
                image: Some(job.image.clone()),
                cmd: if job.args.is_empty() {
                    None
                } else {
                    Some(job.args.clone())
                },
                env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
                labels: Some(labels),
                user: Some(Self::user_of(job)),
                working_dir: Some("/workspace".to_string()),
                attach_stdin: Some(false),
                attach_stdout: Some(false),
                attach_stderr: Some(false),
                open_stdin: Some(false),
                tty: Some(false),
                host_config: Some(host_config),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            match self.docker.create_container(Some(options), body).await {
                Ok(_) => {}
                // created meanwhile (by another executor instance): fine
                Err(e) if is_status(&e, 409) => {}
                Err(e) if is_status(&e, 404) => {
                    return Err(ExecutorError::ImageNotFound {
                        image: job.image.clone(),
                    });
                }
                Err(e) => return Err(docker_err("create container", &name)(e)),
            }
        }
        match self.docker.start_container(&name, None).await {
            Ok(()) => Ok(()),
            // already started
            Err(e) if is_status(&e, 304) => Ok(()),
            Err(e) => Err(docker_err("start container", &name)(e)),
        }
    }

    async fn wait_inner(&self, job: &JobDefinition) -> Result<JobStatus> {
        let mut waited = false;
        loop {
            let status = self.status_inner(job).await?;
            if status.state != ExecutorState::Executing {
                return Ok(status);
            }
            if waited {
                // Docker may answer the wait a moment before inspect shows the
                // exit: look again shortly rather than waiting again at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.wait_not_running(&job.container_name()).await?;
            waited = true;
        }
    }

    /// Removes the container and the working directory of a job, whatever is
    /// left of them: the one removal behind `cleanup` and the reaping of a
    /// killed run's leftovers. Problems are logged, never raised.
    async fn remove_container_and_dir(&self, job_id: &str) {
        let name = crate::types::container_name(job_id);
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(&name, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => tracing::warn!(container = %name, error = %e, "could not remove container"),
        }
        let config = self.config.clone();
        let id = job_id.to_string();
        let problems =
            tokio::task::spawn_blocking(move || match config.own_tree(&config.volumes_dir) {
                Ok(volumes) => fsops::remove_tree_in(&volumes, Path::new(&id)),
                Err(e) => vec![format!("opening {}: {e}", config.volumes_dir.display())],
            })
            .await
            .unwrap_or_else(|e| vec![e.to_string()]);
        if !problems.is_empty() {
            tracing::warn!(job = %job_id, problems = %problems.join("; "), "could not remove job directory");
        }
    }

    async fn kill_and_wait(&self, job: &JobDefinition) -> Result<()> {
        let name = job.container_name();
        let options = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        match self.docker.kill_container(&name, Some(options)).await {
            Ok(()) => {}
            // not running (409) or gone (404)
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => {}
            Err(e) => return Err(docker_err("kill container", &name)(e)),
        }
        self.wait_not_running(&name).await
    }

    async fn wait_not_running(&self, name: &str) -> Result<()> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut waits = self.docker.wait_container(name, Some(options));
        match waits.next().await {
            None | Some(Ok(_)) => Ok(()),
            // exited non-zero: that is an answer, not a failure
            Some(Err(BollardError::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(e)) if is_status(&e, 404) => Ok(()),
            // the caller checks again and waits again
            Some(Err(BollardError::RequestTimeoutError)) => Ok(()),
            Some(Err(e)) => Err(docker_err("wait for container", name)(e)),
        }
    }

    /// The container's output, its head and tail within the caps of
    /// [`crate::logcap`], in bounded memory however much it printed.
    async fn container_log(&self, name: &str) -> Result<Vec<u8>> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .build();
        let mut out = CappedLog::default();
        let mut logs = self.docker.logs(name, Some(options));
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(chunk) => out.push(&chunk.into_bytes()),
                Err(e) if is_status(&e, 404) => break,
                Err(e) => return Err(docker_err("read logs of container", name)(e)),
            }
        }
        let (bytes, lines) = out.dropped();
        if bytes > 0 {
            tracing::info!(container = %name, bytes, lines, "job output over the log caps: middle dropped");
        }
        Ok(out.finish())
    }

    async fn finalize_inner(&self, job: &JobDefinition, how: Finalize) -> Result<JobResults> {
        let status = self.status_inner(job).await?;
        match status.state {
            ExecutorState::Finalized | ExecutorState::Error => return self.stored_results(job),
            ExecutorState::Executed => {}
            ExecutorState::Executing if how != Finalize::Completed => {
                self.kill_and_wait(job).await?;
            }
            state if how == Finalize::Completed => {
                return Err(ExecutorError::InvalidState {
                    operation: "finalize",
                    job_id: job.id.clone(),
                    state,
                });
            }
            _ => {}
        }

        let name = job.container_name();
        let mut container = self.inspect(&name).await?;
        // Docker learns of an OOM kill from a kernel event that can land just
        // after it records the exit: on a 137 without the flag, look again.
        for _ in 0..10 {
            let state = container.as_ref().and_then(|c| c.state.as_ref());
            let killed = state.and_then(|s| s.exit_code) == Some(EXIT_KILLED);
            let flagged = state.and_then(|s| s.oom_killed).unwrap_or(false);
            if how != Finalize::Completed || !killed || flagged {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            container = self.inspect(&name).await?;
        }
        let (cancelled, error) = match &how {
            Finalize::Completed => (false, None),
            Finalize::Cancelled => (true, None),
            Finalize::Error(message) => (false, Some(message.clone())),
        };

        let mut results = JobResults {
            cancelled,
            error: error.clone(),
            ..JobResults::default()
        };
        let mut meta = JobMetadata {
            job_definition_id: job.id.clone(),
            job_definition_request_id: job.request_id.clone(),
            task_id: job.task_id.clone(),
            workspace: job.workspace.clone(),
            action: job.action.clone(),
            image: job.image.clone(),
            created_at: job.created_at,
            commit: job.commit.clone(),
            database_name: job.database_name.clone(),
            user: job.created_by.clone(),
            ..JobMetadata::default()
        };
        let mut labels: HashMap<String, String> = HashMap::new();
        let mut memory_limit = job.memory_limit as i64;
        if let Some(c) = &container {
            let state = c.state.clone().unwrap_or_default();
            results.exit_code = state.exit_code;
            results.oom_killed = state.oom_killed.unwrap_or(false);
            results.image_id = c.image.clone();
            if let Some(config) = &c.config {
                labels = config.labels.clone().unwrap_or_default();
            }
            if let Some(m) = c
                .host_config
                .as_ref()
                .and_then(|h| h.memory)
                .filter(|m| *m > 0)
            {
                memory_limit = m;
            }
            let mut inspect = serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
            record::redact_env(&mut inspect);
            meta.container_metadata = inspect;
        }
        let label = |key: &str| {
            labels
                .get(key)
                .cloned()
                .unwrap_or_else(|| "unknown".to_string())
        };
        meta.action_version = label("org.opencontainers.image.version");
        meta.action_revision = label("org.opencontainers.image.revision");
        meta.action_created = label("org.opencontainers.image.created");
        meta.base_revision = label("org.opensafely.base.vcs-ref");
        meta.base_created = label("org.opencontainers.base.build-date");

        let completed = how == Finalize::Completed;
        if completed {
            let config = self.config.clone();
            let job2 = job.clone();
            let job_dir = self.config.job_dir(job);
            let collected = Self::blocking(job, move || {
                let job_tree = config
                    .own_tree(&config.volumes_dir)
                    .and_then(|v| v.subtree(Path::new(&job2.id), false))
                    .map_err(ExecutorError::io("opening job directory", &job_dir))?;
                let collected = outputs::collect(&job2, &job_tree, &job2.output_spec)?;
                let outs = collected.outputs.clone();
                let persisted = outputs::persist(&config, &job2, &job_tree, &outs)?;
                Ok((collected, persisted))
            })
            .await?;
            let (collected, persisted) = collected;
            results.outputs = collected
                .outputs
                .iter()
                .filter(|(p, _)| !persisted.skipped.contains_key(*p))
                .map(|(p, (l, _))| (p.clone(), *l))
                .collect();
            results.unmatched_patterns = collected.unmatched_patterns;
            results.unmatched_outputs = collected.unmatched_outputs;
            results.skipped_outputs = collected.skipped;
            results.skipped_outputs.extend(persisted.skipped);
            results.level4_excluded_files = persisted.level4_excluded;

            {
                let _guard = self.manifest_lock.lock().await;
                let config = self.config.clone();
                let job2 = job.clone();
                let entries = persisted.manifest_entries;
                Self::blocking(job, move || {
                    outputs::update_manifest(&config, &job2, &entries)
                })
                .await?;
            }
        }

        // The message, from the container's end (job-runner §5.7, §5.8).
        let exit_code = results.exit_code;
        results.status_message = if container.is_none() {
            Some(
                if error.is_some() {
                    "Job errored"
                } else {
                    "Job cancelled by system"
                }
                .to_string(),
            )
        } else if error.is_some() {
            Some("Job errored".to_string())
        } else if cancelled {
            Some("Job cancelled by system".to_string())
        } else if exit_code == Some(0) && results.unmatched_patterns.is_empty() {
            Some("Completed successfully".to_string())
        } else if exit_code == Some(0) {
            if !results.unmatched_outputs.is_empty() {
                // a job that scatters thousands of files gets a readable hint
                let shown: Vec<String> = results.unmatched_outputs
                    [..results.unmatched_outputs.len().min(MAX_HINT_FILES)]
                    .iter()
                    .map(|name| shorten(&escape_name(name)))
                    .collect();
                let mut hint = format!(
                    "\n  Did you mean to match one of these files instead?\n - {}",
                    shown.join("\n   - ")
                );
                let more = results.unmatched_outputs.len() - shown.len();
                if more > 0 {
                    hint.push_str(&format!("\n   ... and {more} more"));
                }
                results.hint = Some(hint);
            }
            Some(format!(
                "\n  No outputs found matching patterns:\n - {}",
                results
                    .unmatched_patterns
                    .iter()
                    .map(|p| escape_name(p))
                    .collect::<Vec<_>>()
                    .join("\n   - ")
            ))
        } else if let Some(limit) = self.pids_limit_reached(job) {
            Some(format!(
                "Job reached its limit of {limit} processes and threads, so starting more failed; \
                 use fewer processes or threads, or raise the job's process limit"
            ))
        } else if exit_code == Some(EXIT_KILLED) && results.oom_killed {
            Some(format!(
                "Job ran out of memory (limit was {:.2}GB)",
                memory_limit as f64 / (1024.0 * 1024.0 * 1024.0)
            ))
        } else if exit_code == Some(EXIT_KILLED) {
            Some("Job killed by OpenSAFELY admin or memory limits".to_string())
        } else {
            None
        };
        results.timestamp_ns = now_ns();
        meta.completed_at = now_secs();
        meta.results = results.clone();

        let container_log = if container.is_some() {
            Some(self.container_log(&name).await?)
        } else {
            None
        };
        let config = self.config.clone();
        let job2 = job.clone();
        Self::blocking(job, move || {
            if let Some(log) = container_log {
                let written = record::write_logs(&config, &job2, &log, &meta, completed)?;
                tracing::info!(job = %job2.id, path = %written.display(), "logs written");
            }
            record::write_metadata(&config, &job2, &meta)
        })
        .await?;
        tracing::info!(job = %job.id, action = %job.action, message = ?results.status_message, "job finalized");
        Ok(results)
    }
}

/// `name` cut to [`MAX_HINT_NAME`] characters in the middle, saying so.
fn shorten(name: &str) -> String {
    let count = name.chars().count();
    if count <= MAX_HINT_NAME {
        return name.to_string();
    }
    let keep = MAX_HINT_NAME / 2;
    let head: String = name.chars().take(keep).collect();
    let tail: String = name.chars().skip(count - keep).collect();
    format!("{head}…[{} characters]…{tail}", count - 2 * keep)
}

/// 1-128 characters of `A-Z a-z 0-9 _ . -`, not starting with `.` or `-`.
fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_numeric_user(user: &str) -> Option<(u32, u32)> {
    let (u, g) = user.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    fn engine(&self) -> &'static str {
        "docker"
    }

    async fn image_available(&self, image: &str) -> Result<bool> {
        self.image_exists(image).await
    }

    async fn status(&self, job: &JobDefinition) -> Result<JobStatus> {
        self.validate(job)?;
        self.status_inner(job).await
    }

    async fn prepare(&self, job: &JobDefinition) -> Result<JobStatus> {
        self.validate(job)?;
        let _guard = self.lock(job).await;
        let status = self.status_inner(job).await?;
        if status.state != ExecutorState::Unknown {
            return Ok(status);
        }
        let config = self.config.clone();
        let job2 = job.clone();
        let user = Self::user_of(job);
        Self::blocking(job, move || Self::prepare_blocking(&config, &job2, &user)).await?;
        self.status_inner(job).await
    }

    async fn execute(&self, job: &JobDefinition) -> Result<JobStatus> {
        self.validate(job)?;
        let _guard = self.lock(job).await;
        let status = self.status_inner(job).await?;
        match status.state {
            ExecutorState::Prepared => {}
            ExecutorState::Unknown => {
                return Err(ExecutorError::InvalidState {
                    operation: "execute",
                    job_id: job.id.clone(),
                    state: status.state,
                });
            }
            _ => return Ok(status),
        }
        tracing::info!(job = %job.id, action = %job.action, image = %job.image, "starting container");
        self.create_and_start(job).await?;
        self.status_inner(job).await
    }

    async fn wait(&self, job: &JobDefinition) -> Result<JobStatus> {
        self.validate(job)?;
        let watcher = tokio::spawn(watch_pids(
            self.docker.clone(),
            self.config.clone(),
            job.clone(),
        ));
        let result = self.wait_inner(job).await;
        watcher.abort();
        result
    }

    async fn finalize(&self, job: &JobDefinition, how: Finalize) -> Result<JobResults> {
        self.validate(job)?;
        let _guard = self.lock(job).await;
        self.finalize_inner(job, how).await
    }

    async fn cancel(&self, job: &JobDefinition) -> Result<JobResults> {
        self.validate(job)?;
        let _guard = self.lock(job).await;
        let status = self.status_inner(job).await?;
        match status.state {
            ExecutorState::Finalized | ExecutorState::Error => return self.stored_results(job),
            ExecutorState::Executing => {
                tracing::info!(job = %job.id, "killing container");
                self.kill_and_wait(job).await?;
            }
            _ => {}
        }
        self.finalize_inner(job, Finalize::Cancelled).await
    }

    async fn cleanup(&self, job: &JobDefinition) {
        if let Err(e) = self.validate(job) {
            tracing::warn!(job = %job.id, error = %e, "not cleaning up an invalid job");
            return;
        }
        let _guard = self.lock(job).await;
        self.remove_container_and_dir(&job.id).await;
    }

    async fn leftover_jobs(&self) -> Result<Vec<String>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label", vec!["warden.job_id"])]))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(docker_err("list containers", "warden.job_id"))?;
        let mut ids: Vec<String> = containers
            .into_iter()
            .filter_map(|c| c.labels?.get("warden.job_id").cloned())
            .collect();
        if let Ok(dir) = std::fs::read_dir(&self.config.volumes_dir) {
            ids.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| valid_job_id(name)),
            );
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn reap(&self, job_id: &str) {
        if !valid_job_id(job_id) {
            return;
        }
        self.remove_container_and_dir(job_id).await;
    }

    async fn results(&self, job: &JobDefinition) -> Result<Option<JobResults>> {
        self.validate(job)?;
        Ok(record::read_metadata(&self.config, job)?.map(|m| m.results))
    }

    fn logs(&self, job: &JobDefinition, follow: bool) -> BoxStream<'static, Result<LogLine>> {
        if let Err(e) = self.validate(job) {
            return stream::once(async move { Err(e) }).boxed();
        }
        let docker = self.docker.clone();
        let name = job.container_name();
        let log_file = record::log_path(&self.config, job);
        let docker2 = docker.clone();
        let name2 = name.clone();
        stream::once(async move {
            let present = match docker2.inspect_container(&name2, None).await {
                Ok(_) => true,
                Err(e) if is_status(&e, 404) => false,
                Err(e) => {
                    return stream::once(
                        async move { Err(docker_err("inspect container", &name2)(e)) },
                    )
                    .boxed();
                }
            };
            if present {
                container_lines(docker, name, follow)
            } else {
                file_lines(log_file)
            }
        })
        .flatten()
        .boxed()
    }
}

/// Watch the container's process count (Docker's stats, about once a
/// second) and leave [`PIDS_LIMIT_MARKER`] in the job's log directory when it
/// reaches the limit: after the exit, nothing else tells that fork failed.
async fn watch_pids(docker: Docker, config: ExecutorConfig, job: JobDefinition) {
    let options = StatsOptionsBuilder::default().stream(true).build();
    let mut stats = docker.stats(&job.container_name(), Some(options));
    while let Some(Ok(sample)) = stats.next().await {
        let Some(pids) = sample.pids_stats else {
            continue;
        };
        let limit = pids.limit.filter(|l| *l > 0).unwrap_or(job.pids_limit);
        if pids.current.is_some_and(|c| c >= limit) {
            let rel = record::job_log_rel(&job).join(PIDS_LIMIT_MARKER);
            let written = tokio::task::spawn_blocking(move || {
                config
                    .own_tree(&config.log_dir)
                    .and_then(|t| t.write_atomic(&rel, limit.to_string().as_bytes()))
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(job = %job.id, "could not record that the job reached its process limit");
            }
            tracing::info!(job = %job.id, limit, "job reached its process limit");
            return;
        }
    }
}

/// Split a Docker log line `<RFC 3339 time> <text>` into its parts.
fn split_timestamp(line: &str) -> (Option<String>, String) {
    if let Some((ts, rest)) = line.split_once(' ')
        && ts.len() >= 20
        && ts.as_bytes()[0].is_ascii_digit()
        && ts.contains('T')
    {
        return (Some(ts.to_string()), rest.to_string());
    }
    (None, line.to_string())
}

fn container_lines(
    docker: Docker,
    name: String,
    follow: bool,
) -> BoxStream<'static, Result<LogLine>> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .follow(follow)
        .build();
    let name2 = name.clone();
    docker
        .logs(&name, Some(options))
        .flat_map(move |chunk| {
            let lines: Vec<Result<LogLine>> = match chunk {
                Ok(chunk) => {
                    let stream = match &chunk {
                        bollard::container::LogOutput::StdErr { .. } => LogStream::Stderr,
                        bollard::container::LogOutput::StdOut { .. } => LogStream::Stdout,
                        _ => LogStream::Unknown,
                    };
                    let bytes = chunk.into_bytes();
                    let text = String::from_utf8_lossy(&bytes);
                    text.strip_suffix('\n')
                        .unwrap_or(&text)
                        .split('\n')
                        .map(|line| {
                            let (timestamp, text) = split_timestamp(line);
                            Ok(LogLine {
                                stream,
                                timestamp,
                                text,
                            })
                        })
                        .collect()
                }
                Err(e) if is_status(&e, 404) => Vec::new(),
                Err(e) => vec![Err(docker_err("read logs of container", &name2)(e))],
            };
            stream::iter(lines)
        })
        .boxed()
}

fn file_lines(path: PathBuf) -> BoxStream<'static, Result<LogLine>> {
    stream::once(async move {
        let read = tokio::fs::read(&path).await;
        let lines: Vec<Result<LogLine>> = match read {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let part = record::container_part_of_log(&text);
                part.lines()
                    .filter(|l| !l.is_empty())
                    .map(|line| {
                        let (timestamp, text) = split_timestamp(line);
                        Ok(LogLine {
                            stream: LogStream::Unknown,
                            timestamp,
                            text,
                        })
                    })
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => vec![Err(ExecutorError::io("reading job log", &path)(e))],
        };
        stream::iter(lines)
    })
    .flatten()
    .boxed()
}
