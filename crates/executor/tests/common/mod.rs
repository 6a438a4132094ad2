//! Shared setup for the Docker tests: a throwaway study, stores and executor,
//! and the skip-or-fail rule when Docker (or the test image) is missing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use warden_executor::{
    DockerExecutor, Executor, ExecutorConfig, Finalize, JobDefinition, JobResults, Level4Limits,
    PrivacyLevel,
};

/// The image the tests run (built by `scripts/build-images.sh`).
pub const BUSYBOX: &str = "ghcr.io/opensafely-core/busybox:latest";
/// Workspace name used by the tests.
pub const WORKSPACE: &str = "testws";

/// Docker is missing: print a loud SKIPPED line and return `None`, or fail
/// when `CI` is set (CI must run these tests).
pub fn skip(reason: &str) -> Option<TestEnv> {
    if std::env::var_os("CI").is_some() {
        panic!("docker tests cannot run in CI: {reason}");
    }
    loud(&format!("SKIPPED: docker not available ({reason})"));
    None
}

/// Write to the real stderr: libtest captures `eprintln!`, not this.
fn loud(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

/// A throwaway study with its high/medium/volume/log directories and an executor.
pub struct TestEnv {
    pub root: tempfile::TempDir,
    pub study: PathBuf,
    pub config: ExecutorConfig,
    pub executor: Arc<DockerExecutor>,
    pub docker: Docker,
    jobs: Mutex<Vec<String>>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh job id: 16 lowercase alphanumerics.
pub fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed =
        nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("t{:015x}", mixed & 0x0fff_ffff_ffff_ffff)
}

impl TestEnv {
    /// Connect to Docker and set up a study; `None` (after printing SKIPPED)
    /// when Docker or the busybox image is not there.
    pub async fn new() -> Option<TestEnv> {
        Self::with(|_| {}).await
    }

    /// Like [`TestEnv::new`], adjusting the configuration first.
    pub async fn with(adjust: impl FnOnce(&mut ExecutorConfig)) -> Option<TestEnv> {
        let docker = match Docker::connect_with_local_defaults() {
            Ok(d) => d,
            Err(e) => return skip(&e.to_string()),
        };
        let docker = match docker.negotiate_version().await {
            Ok(d) => d,
            Err(e) => return skip(&e.to_string()),
        };
        if docker.inspect_image(BUSYBOX).await.is_err() {
            let reason = format!(
                "image {BUSYBOX} is missing; build it with scripts/build-images.sh busybox"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{reason}");
            }
            loud(&format!("SKIPPED: docker not available: {reason}"));
            return None;
        }
        let root = tempfile::tempdir().expect("temp dir");
        let study = root.path().join("study");
        std::fs::create_dir_all(study.join("analysis")).unwrap();
        std::fs::create_dir_all(study.join(".git")).unwrap();
        std::fs::write(study.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(study.join("project.yaml"), "version: '3.0'\nactions: {}\n").unwrap();
        std::fs::write(study.join("analysis/script.sh"), "echo from script\n").unwrap();
        let mut config = ExecutorConfig {
            high_privacy_dir: root.path().join("high"),
            medium_privacy_dir: Some(root.path().join("medium")),
            per_workspace_dirs: true,
            volumes_dir: root.path().join("volumes"),
            log_dir: root.path().join("logs"),
            level4: Level4Limits::default(),
        };
        adjust(&mut config);
        let executor =
            DockerExecutor::with_client(docker.clone(), config.clone()).expect("executor");
        Some(TestEnv {
            root,
            study,
            config,
            executor: Arc::new(executor),
            docker,
            jobs: Mutex::new(Vec::new()),
        })
    }

    /// A busybox job running `script` with `sh -c`, declaring `outputs`.
    pub fn job(
        &self,
        action: &str,
        script: &str,
        outputs: &[(&str, PrivacyLevel)],
    ) -> JobDefinition {
        let id = new_id();
        self.jobs.lock().unwrap().push(id.clone());
        let mut job = JobDefinition::new(
            &id,
            "req0000000000000",
            WORKSPACE,
            action,
            BUSYBOX,
            &self.study,
        );
        job.args = vec!["sh".into(), "-c".into(), script.into()];
        job.env = BTreeMap::from([("OPENSAFELY_BACKEND".to_string(), "expectations".to_string())]);
        job.output_spec = outputs.iter().map(|(p, l)| (p.to_string(), *l)).collect();
        job.cpu_count = 1.0;
        job.memory_limit = 256 * 1024 * 1024;
        job
    }

    /// Another executor instance on the same directories (as after a restart).
    pub fn second_executor(&self) -> DockerExecutor {
        DockerExecutor::with_client(self.docker.clone(), self.config.clone()).expect("executor")
    }

    /// prepare → execute → wait → finalize.
    pub async fn run(&self, job: &JobDefinition) -> JobResults {
        self.executor.prepare(job).await.expect("prepare");
        self.executor.execute(job).await.expect("execute");
        self.executor.wait(job).await.expect("wait");
        self.executor
            .finalize(job, Finalize::Completed)
            .await
            .expect("finalize")
    }

    /// High-privacy workspace directory.
    pub fn high(&self) -> PathBuf {
        self.config.high_privacy_workspace(WORKSPACE)
    }

    /// Medium-privacy workspace directory.
    pub fn medium(&self) -> PathBuf {
        self.config
            .medium_privacy_workspace(WORKSPACE)
            .expect("medium store")
    }

    /// Put a file in the high-privacy workspace (as an earlier job's output).
    pub fn put_high(&self, rel: &str, contents: &str) {
        let p = self.high().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    /// The stored `logs.txt` of a job.
    pub fn log_text(&self, job: &JobDefinition) -> String {
        std::fs::read_to_string(self.config.job_log_dir(job).join("logs.txt")).unwrap_or_default()
    }

    /// The workspace manifest.
    pub fn manifest(&self) -> serde_json::Value {
        let text = std::fs::read(self.config.manifest_path(WORKSPACE)).expect("manifest");
        serde_json::from_slice(&text).expect("manifest json")
    }
}

impl Drop for TestEnv {
    /// Remove every container the test made, even when it failed.
    fn drop(&mut self) {
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap());
        let docker = self.docker.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for id in jobs {
                    let options = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker
                        .remove_container(&format!("os-job-{id}"), Some(options))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Read a file to a string, or "" if absent.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every regular file under `dir`, as relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}
