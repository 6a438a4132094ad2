//! The storage suite: every test runs on SQLite and on PostgreSQL.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::TestDb;
use serde_json::json;
use warden_state::{
    AuditFilter, BackendUpdate, Change, Error, Job, JobFilter, JobRequestFilter, JobRequestStatus,
    JobUpdate, NewAuditEvent, NewBackend, NewJob, NewJobRequest, NewOrganisation, NewProject,
    NewTask, NewUser, NewWorkspace, ProjectUpdate, SCHEMA_VERSION, State, StatusCode, Store,
    TaskType, TaskUpdate, TaskUpdateOutcome, UserUpdate, WorkspaceUpdate, job_id,
    new_job_request_id, runjob_task_id,
};

db_tests!(
    migrations_are_idempotent,
    requests_and_jobs_round_trip,
    fifty_concurrent_planned_creates_never_duplicate_active_jobs,
    fifty_concurrent_plain_creates_admit_one,
    unique_index_backs_up_the_lock,
    planner_errors_roll_back,
    requests_without_jobs,
    set_code_clamps_timestamps,
    set_code_lifecycle_and_heartbeat,
    final_jobs_refuse_new_codes,
    latest_jobs_per_action,
    cancelling,
    interrupted_local_run,
    tasks_crud_and_agent_updates,
    agent_clocks_cannot_freeze_tasks,
    update_job_is_atomic_with_tasks,
    flags,
    audit_log_is_append_only,
    admin_records,
    workspace_git_values_cannot_be_options,
    nul_characters_are_bad_input,
    jobs_of_many_requests_at_once,
    cancel_and_pause_audits_commit_with_the_change,
    backend_tokens_and_last_seen,
    derived_request_status,
    listing,
    user_tokens_and_memberships,
    batched_updates_and_lookups,
    audited_creation,
);

/// Automatic checkpoints are off; the background checkpointer copies the
/// log into the database file while the store is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open_sqlite(&path).await.unwrap();
    let names: Vec<String> = (0..400).map(|i| format!("action_{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = std::fs::metadata(&path).unwrap().len();
    store
        .create_job_request(request("ckpt", &refs), jobs(&refs))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after = std::fs::metadata(&path).unwrap().len();
        if after > before + 100_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {before} -> {after} bytes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close().await;
}

#[tokio::test]
async fn urls() {
    assert!(matches!(
        Store::open("mysql://localhost/x").await,
        Err(Error::UnsupportedUrl(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.engine(), warden_state::Engine::Sqlite);
    let path = dir.path().join("nested/dir/db.sqlite");
    let plain = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(plain.schema_version().await.unwrap(), SCHEMA_VERSION);
    // Write-ahead logging is on: the WAL file exists while the store is open.
    one_job(&plain, "ws", "a").await;
    assert!(dir.path().join("nested/dir/db.sqlite-wal").exists());
}

fn request(workspace: &str, actions: &[&str]) -> NewJobRequest {
    let mut r = NewJobRequest::new(
        workspace,
        "test",
        "0123456789abcdef0123456789abcdef01234567",
        actions.iter().map(|a| a.to_string()).collect(),
    );
    r.created_by = "alice".into();
    r.repo_url = "https://github.com/opensafely/example".into();
    r.branch = "main".into();
    r.project_definition = "version: '3.0'\nactions: {}\n".into();
    r
}

fn jobs(actions: &[&str]) -> Vec<NewJob> {
    actions
        .iter()
        .map(|a| NewJob {
            run_command: format!("python:latest python {a}.py"),
            image: "ghcr.io/opensafely-core/python:latest".into(),
            output_spec: json!({"moderately_sensitive": {"out": format!("output/{a}.csv")}}),
            ..NewJob::new(*a)
        })
        .collect()
}

/// A planner in the spirit of job-runner §3: re-run requested actions unless
/// they are pending or running.
fn plan(req: &mut NewJobRequest, state: &[Job]) -> Result<Vec<NewJob>, std::convert::Infallible> {
    let latest: HashMap<&str, &Job> = state.iter().map(|j| (j.action.as_str(), j)).collect();
    let todo: Vec<&str> = req
        .requested_actions
        .iter()
        .map(String::as_str)
        .filter(|a| !latest.get(a).is_some_and(|j| j.state.is_active()))
        .collect();
    if todo.is_empty() {
        req.status = JobRequestStatus::NothingToDo;
        req.status_message = "All requested actions were already scheduled to run".into();
    }
    Ok(jobs(&todo))
}

async fn one_job(store: &Store, workspace: &str, action: &str) -> Job {
    store
        .create_job_request(request(workspace, &[action]), jobs(&[action]))
        .await
        .unwrap()
        .jobs
        .remove(0)
}

async fn migrations_are_idempotent(db: &TestDb) {
    assert_eq!(db.store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let job = one_job(&db.store, "ws", "a").await;
    // Open again, and three more times at once: nothing re-applied, data kept.
    let again = db.reopen().await;
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(again.get_job(&job.id).await.unwrap().unwrap(), job);
    let (a, b, c) = tokio::join!(db.reopen(), db.reopen(), db.reopen());
    for s in [&a, &b, &c] {
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert!(s.get_job(&job.id).await.unwrap().is_some());
        s.close().await;
    }
    // Refuses a database from a newer warden.
    db.raw_execute(&format!(
        "INSERT INTO warden_migrations (version, name, applied_at) VALUES ({}, 'future', 0)",
        SCHEMA_VERSION + 1
    ))
    .await
    .unwrap();
    let err = match db.reopen_result().await {
        Err(e) => e,
        Ok(_) => panic!("opened a database from the future"),
    };
    assert!(matches!(err, Error::Migration { .. }), "{err}");
    again.close().await;
}

async fn requests_and_jobs_round_trip(db: &TestDb) {
    let store = &db.store;
    let mut req = request("ws", &["generate", "analyse"]);
    req.force_run_dependencies = true;
    let mut new_jobs = jobs(&["generate", "analyse"]);
    new_jobs[0].requires_db = true;
    new_jobs[1].requires_outputs_from = vec!["generate".into()];
    new_jobs[1].wait_for_job_ids = vec![job_id(&req.id, "generate")];
    let created = store
        .create_job_request(req.clone(), new_jobs)
        .await
        .unwrap();

    let stored = store.get_job_request(&req.id).await.unwrap().unwrap();
    assert_eq!(stored, created.request);
    assert_eq!(stored.requested_actions, vec!["generate", "analyse"]);
    assert!(stored.force_run_dependencies);
    assert_eq!(stored.project_definition, req.project_definition);
    assert_eq!(stored.commit, req.commit);
    assert_eq!(stored.status, JobRequestStatus::Pending);

    let listed = store.jobs_for_request(&req.id).await.unwrap();
    assert_eq!(listed, created.jobs, "creation order, same values");
    let [generate, analyse] = &listed[..] else {
        panic!()
    };
    assert_eq!(generate.id, job_id(&req.id, "generate"));
    assert_eq!(generate.state, State::Pending);
    assert_eq!(generate.status_code, StatusCode::Created);
    assert_eq!(generate.status_message, "Created");
    assert!(generate.requires_db);
    assert_eq!(generate.created_at, stored.created_at);
    assert_eq!(
        analyse.output_spec,
        json!({"moderately_sensitive": {"out": "output/analyse.csv"}})
    );
    assert_eq!(analyse.wait_for_job_ids, vec![generate.id.clone()]);
    assert_eq!(store.get_job(&analyse.id).await.unwrap().unwrap(), *analyse);
    assert!(store.get_job("nope").await.unwrap().is_none());

    // Same id twice.
    let err = store
        .create_job_request(req.clone(), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

    // Creation times strictly increase within a workspace.
    let mut last = stored.created_at;
    for _ in 0..5 {
        let j = one_job(store, "ws", &format!("x{}", rand_suffix())).await;
        assert!(j.created_at > last);
        last = j.created_at;
    }

    // Validation.
    let mut bad = request("ws", &["a"]);
    bad.id = "TOO-SHORT".into();
    assert!(matches!(
        store.create_job_request(bad, jobs(&["a"])).await,
        Err(Error::InvalidInput(_))
    ));
    let err = store
        .create_job_request(request("ws", &["a"]), jobs(&["a", "a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
}

fn rand_suffix() -> u32 {
    rand::random()
}

async fn fifty_concurrent_planned_creates_never_duplicate_active_jobs(db: &TestDb) {
    let actions = ["generate", "analyse", "report"];
    let mut handles = Vec::new();
    for _ in 0..50 {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            store
                .create_job_request_planned(request("busy", &actions), plan)
                .await
                .unwrap()
                .unwrap()
        }));
    }
    let mut with_jobs = 0;
    let mut nothing = 0;
    for h in handles {
        let created = h.await.unwrap();
        if created.jobs.is_empty() {
            assert_eq!(created.request.status, JobRequestStatus::NothingToDo);
            nothing += 1;
        } else {
            assert_eq!(created.jobs.len(), 3);
            with_jobs += 1;
        }
    }
    assert_eq!((with_jobs, nothing), (1, 49));
    let active = db.store.active_jobs(Some("test")).await.unwrap();
    let mut per_action: BTreeMap<&str, usize> = BTreeMap::new();
    for j in &active {
        *per_action.entry(j.action.as_str()).or_default() += 1;
    }
    assert_eq!(
        per_action,
        BTreeMap::from([("analyse", 1), ("generate", 1), ("report", 1)])
    );
    let requests = db
        .store
        .list_job_requests(&JobRequestFilter {
            workspace: Some("busy".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(requests.len(), 50);

    // Once they finish, the next round creates exactly one set again.
    for j in &active {
        db.store
            .set_code(&j.id, StatusCode::Succeeded, "done")
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for _ in 0..50 {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            store
                .create_job_request_planned(request("busy", &actions), plan)
                .await
                .unwrap()
                .unwrap()
                .jobs
                .len()
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    assert_eq!(total, 3);
}

async fn fifty_concurrent_plain_creates_admit_one(db: &TestDb) {
    let mut handles = Vec::new();
    for _ in 0..50 {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            store
                .create_job_request(request("plain", &["a", "b"]), jobs(&["a", "b"]))
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::ActiveJobExists { action, .. }) => assert!(action == "a" || action == "b"),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        db.store
            .list_jobs(&JobFilter {
                workspace: Some("plain".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
    // The failed creates left no request behind.
    assert_eq!(
        db.store
            .list_job_requests(&JobRequestFilter {
                workspace: Some("plain".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn unique_index_backs_up_the_lock(db: &TestDb) {
    let job = one_job(&db.store, "ws", "a").await;
    let req = db
        .store
        .get_job_request(&job.job_request_id)
        .await
        .unwrap()
        .unwrap();
    let columns = "id, job_request_id, workspace, backend, action, state, status_code, \
        status_message, run_command, image, output_spec, requires_outputs_from, \
        wait_for_job_ids, requires_db, cancelled, created_at, updated_at, status_code_updated_at";
    let insert = |id: &str, state: &str, cancelled: &str| {
        format!(
            "INSERT INTO jobs ({columns}) VALUES ('{id}', '{}', 'ws', 'test', 'a', '{state}', \
             'created', 'Created', '', '', '{{}}', '[]', '[]', FALSE, {cancelled}, 1, 1, 1)",
            req.id
        )
    };
    // A second active job for the action, written behind the store's back: refused.
    let err = db
        .raw_execute(&insert("dup1", "running", "FALSE"))
        .await
        .unwrap_err();
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err}"
    );
    // Finished or cancelled ones are not in-flight work: allowed.
    db.raw_execute(&insert("dup2", "succeeded", "FALSE"))
        .await
        .unwrap();
    db.raw_execute(&insert("dup3", "pending", "TRUE"))
        .await
        .unwrap();
}

async fn planner_errors_roll_back(db: &TestDb) {
    let req = request("ws", &["a"]);
    let id = req.id.clone();
    let result = db
        .store
        .create_job_request_planned(req, |_, _| Err::<Vec<NewJob>, _>("Action 'a' not found"))
        .await
        .unwrap();
    assert_eq!(result.unwrap_err(), "Action 'a' not found");
    assert!(db.store.get_job_request(&id).await.unwrap().is_none());

    let err = db
        .store
        .create_job_request_planned(request("ws", &["a"]), |r, _| {
            r.workspace = "elsewhere".into();
            Ok::<_, ()>(jobs(&["a"]))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
}

async fn requests_without_jobs(db: &TestDb) {
    // Pending without jobs would be pending forever: refused.
    let err = db
        .store
        .create_job_request(request("ws", &["a"]), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");

    let mut req = request("ws", &["a"]);
    req.status = JobRequestStatus::NothingToDo;
    req.status_message = "All actions have already completed successfully".into();
    let created = db.store.create_job_request(req, vec![]).await.unwrap();
    let detail = db
        .store
        .job_request_detail(&created.request.id)
        .await
        .unwrap()
        .unwrap();
    assert!(detail.jobs.is_empty());
    assert_eq!(detail.status.status, JobRequestStatus::NothingToDo);
    assert_eq!(
        detail.status.message,
        "All actions have already completed successfully"
    );

    let mut req = request("ws", &["a"]);
    req.status = JobRequestStatus::Failed;
    let err = db
        .store
        .create_job_request(req, jobs(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
}

async fn set_code_clamps_timestamps(db: &TestDb) {
    let store = &db.store;
    let job = one_job(store, "ws", "a").await;
    let created_ns = job.status_code_updated_at;

    // An agent clock far behind: clamped to previous + 1 ms.
    let mut u = JobUpdate::code(
        &job.id,
        StatusCode::Initiated,
        "Job executing on the backend",
    );
    u.timestamp_ns = Some(created_ns - 3_600_000_000_000);
    let r = store.update_job(u).await.unwrap();
    assert!(
        matches!(r.change, Change::Transition { clamped: true, at_ns, .. } if at_ns == created_ns + 1_000_000),
        "{:?}",
        r.change
    );
    let stored = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(stored, r.job);
    assert_eq!(stored.status_code_updated_at, created_ns + 1_000_000);
    assert_eq!(stored.state, State::Running);
    assert_eq!(
        stored.started_at.unwrap().unix_timestamp_nanos(),
        i128::from(created_ns + 1_000_000)
    );

    // An equal time is clamped too; a later agent time is taken as is.
    let mut u = JobUpdate::code(&job.id, StatusCode::Preparing, "m");
    u.timestamp_ns = Some(stored.status_code_updated_at);
    let r = store.update_job(u).await.unwrap();
    assert_eq!(
        r.job.status_code_updated_at,
        stored.status_code_updated_at + 1_000_000
    );
    let later = r.job.status_code_updated_at + 5_000_000_123;
    let mut u = JobUpdate::code(&job.id, StatusCode::Executing, "m");
    u.timestamp_ns = Some(later);
    let r = store.update_job(u).await.unwrap();
    assert!(matches!(
        r.change,
        Change::Transition { clamped: false, .. }
    ));
    assert_eq!(r.job.status_code_updated_at, later);

    // A final code from a skewed clock still completes after it started.
    let mut u = JobUpdate::code(&job.id, StatusCode::NonzeroExit, "exit 1");
    u.timestamp_ns = Some(0);
    let r = store.update_job(u).await.unwrap();
    let stored = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.status_code_updated_at, later + 1_000_000);
    assert!(stored.completed_at.unwrap() > stored.started_at.unwrap());
    assert!(stored.updated_at >= job.updated_at);
    assert_eq!(stored, r.job);
}

async fn set_code_lifecycle_and_heartbeat(db: &TestDb) {
    let store = &db.store;
    let job = one_job(store, "ws", "a").await;
    // Unchanged code and message: nothing written.
    let r = store
        .set_code(&job.id, StatusCode::Created, "Created")
        .await
        .unwrap();
    assert_eq!(r.change, Change::None);
    assert_eq!(store.get_job(&job.id).await.unwrap().unwrap(), job);
    // Same code, new message: recorded without a transition.
    let r = store
        .set_code(&job.id, StatusCode::Created, "Still created")
        .await
        .unwrap();
    assert_eq!(r.change, Change::Message);
    let stored = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.status_message, "Still created");
    assert_eq!(stored.status_code_updated_at, job.status_code_updated_at);

    let steps = [
        (StatusCode::WaitingOnDependencies, State::Pending),
        (StatusCode::Initiated, State::Running),
        (StatusCode::Preparing, State::Running),
        (StatusCode::WaitingOnReboot, State::Pending),
        (StatusCode::Initiated, State::Running),
        (StatusCode::Executing, State::Running),
        (StatusCode::Executed, State::Running),
        (StatusCode::Finalizing, State::Running),
        (StatusCode::Succeeded, State::Succeeded),
    ];
    let mut last_ns = stored.status_code_updated_at;
    for (code, state) in steps {
        let r = store.set_code(&job.id, code, code.as_str()).await.unwrap();
        let stored = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(stored, r.job);
        assert_eq!(stored.state, state, "{code}");
        assert!(stored.status_code_updated_at > last_ns, "{code}");
        last_ns = stored.status_code_updated_at;
        if code == StatusCode::WaitingOnReboot {
            assert_eq!(stored.started_at, None, "reset clears started_at");
        }
    }
    let done = store.get_job(&job.id).await.unwrap().unwrap();
    assert!(done.completed_at.is_some());
    assert!(done.runtime().is_some());
    assert!(matches!(
        store.set_code("missing", StatusCode::Initiated, "m").await,
        Err(Error::NotFound { .. })
    ));
}

async fn final_jobs_refuse_new_codes(db: &TestDb) {
    let job = one_job(&db.store, "ws", "a").await;
    db.store
        .set_code(
            &job.id,
            StatusCode::DependencyFailed,
            "Not starting as dependency failed",
        )
        .await
        .unwrap();
    let err = db
        .store
        .set_code(&job.id, StatusCode::Initiated, "m")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transition(_)), "{err}");
    let stored = db.store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.status_code, StatusCode::DependencyFailed);
    assert_eq!(stored.state, State::Failed);
}

async fn latest_jobs_per_action(db: &TestDb) {
    let store = &db.store;
    let first = store
        .create_job_request(request("ws", &["a", "b"]), jobs(&["a", "b"]))
        .await
        .unwrap();
    for j in &first.jobs {
        store
            .set_code(&j.id, StatusCode::NonzeroExit, "failed")
            .await
            .unwrap();
    }
    let second = one_job(store, "ws", "a").await;
    // Another workspace and another backend do not interfere.
    one_job(store, "other", "a").await;
    let mut elsewhere = request("ws", &["a"]);
    elsewhere.backend = "tpp".into();
    let tpp = store
        .create_job_request(elsewhere, jobs(&["a"]))
        .await
        .unwrap();

    let latest = store.latest_jobs("ws", Some("test")).await.unwrap();
    let ids: Vec<(&str, &str)> = latest
        .iter()
        .map(|j| (j.action.as_str(), j.id.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![("a", second.id.as_str()), ("b", first.jobs[1].id.as_str())]
    );
    let any_backend = store.latest_jobs("ws", None).await.unwrap();
    assert_eq!(any_backend[0].id, tpp.jobs[0].id, "newest across backends");

    // Cancelled jobs drop out of the workspace state.
    store.cancel_job(&second.id).await.unwrap();
    let latest = store.latest_jobs("ws", Some("test")).await.unwrap();
    assert_eq!(latest[0].id, first.jobs[0].id);
}

async fn cancelling(db: &TestDb) {
    let store = &db.store;
    let created = store
        .create_job_request(request("ws", &["a", "b", "c"]), jobs(&["a", "b", "c"]))
        .await
        .unwrap();
    let [a, b, c] = &created.jobs[..] else {
        panic!()
    };
    store
        .set_code(&c.id, StatusCode::Succeeded, "ok")
        .await
        .unwrap();
    store
        .set_code(&b.id, StatusCode::Initiated, "running")
        .await
        .unwrap();

    let outcome = store
        .cancel_actions(
            &created.request.id,
            &["a".into(), "b".into(), "c".into(), "zz".into(), "a".into()],
        )
        .await
        .unwrap();
    assert_eq!(outcome.cancelled, vec![a.id.clone(), b.id.clone()]);
    assert_eq!(outcome.already_finished, vec![c.id.clone()]);
    assert_eq!(outcome.not_found, vec!["zz".to_string()]);

    let stored_a = store.get_job(&a.id).await.unwrap().unwrap();
    assert!(stored_a.cancelled);
    assert_eq!(
        stored_a.state,
        State::Pending,
        "the scheduler finishes the cancellation"
    );
    assert!(!store.get_job(&c.id).await.unwrap().unwrap().cancelled);

    // set_code never clobbers the flag.
    store
        .set_code(&b.id, StatusCode::CancelledByUser, "Cancelled by user")
        .await
        .unwrap();
    let stored_b = store.get_job(&b.id).await.unwrap().unwrap();
    assert!(stored_b.cancelled);
    assert_eq!(stored_b.state, State::Failed);
    assert!(stored_b.completed_at.is_some());

    // A cancelled pending job does not block a new request for its action.
    one_job(store, "ws", "a").await;

    assert!(matches!(
        store
            .cancel_actions("aaaaaaaaaaaaaaaa", &["a".into()])
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        !store.cancel_job(&c.id).await.unwrap(),
        "finished: not cancelled"
    );
    assert!(matches!(
        store.cancel_job("missing").await,
        Err(Error::NotFound { .. })
    ));
}

async fn interrupted_local_run(db: &TestDb) {
    let store = &db.store;
    let created = store
        .create_job_request(request("ws", &["a", "b", "c"]), jobs(&["a", "b", "c"]))
        .await
        .unwrap();
    let [a, b, c] = &created.jobs[..] else {
        panic!()
    };
    let task = NewTask {
        id: runjob_task_id(&b.id, 1),
        backend: "test".into(),
        task_type: TaskType::RunJob,
        definition: json!({"action": "b"}),
    };
    let mut u = JobUpdate::code(&b.id, StatusCode::Initiated, "Job executing on the backend");
    u.insert_task = Some(task.clone());
    store.update_job(u).await.unwrap();
    store
        .set_code(&c.id, StatusCode::Succeeded, "ok")
        .await
        .unwrap();

    // Another backend's active job is not this run's business.
    let mut elsewhere = request("ws", &["z"]);
    elsewhere.backend = "tpp".into();
    let tpp = store
        .create_job_request(elsewhere, jobs(&["z"]))
        .await
        .unwrap();

    let failed = store
        .fail_interrupted_jobs(Some("test"), warden_state::INTERRUPTED_MESSAGE)
        .await
        .unwrap();
    let ids: Vec<&str> = failed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec![a.id.as_str(), b.id.as_str()]);
    for j in [a, b] {
        let s = store.get_job(&j.id).await.unwrap().unwrap();
        assert!(s.cancelled);
        assert_eq!(s.state, State::Failed);
        assert_eq!(s.status_code, StatusCode::CancelledByUser);
        assert_eq!(s.status_message, warden_state::INTERRUPTED_MESSAGE);
        assert!(s.completed_at.is_some());
    }
    assert_eq!(
        store.get_job(&c.id).await.unwrap().unwrap().state,
        State::Succeeded
    );
    let t = store.get_task(&task.id).await.unwrap().unwrap();
    assert!(!t.active);
    assert!(t.finished_at.is_some());
    assert!(store.active_jobs(Some("test")).await.unwrap().is_empty());
    assert_eq!(store.active_jobs(None).await.unwrap(), tpp.jobs);
    let rest = store.fail_interrupted_jobs(None, "again").await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        store
            .fail_interrupted_jobs(None, "again")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn tasks_crud_and_agent_updates(db: &TestDb) {
    let store = &db.store;
    let t1 = NewTask {
        id: "job1-001".into(),
        backend: "test".into(),
        task_type: TaskType::RunJob,
        definition: json!({"id": "job1", "args": ["a"]}),
    };
    let inserted = store.insert_task(&t1).await.unwrap();
    assert!(inserted.active);
    assert_eq!(store.get_task(&t1.id).await.unwrap().unwrap(), inserted);
    assert!(matches!(
        store.insert_task(&t1).await,
        Err(Error::AlreadyExists { .. })
    ));
    let t2 = NewTask {
        id: "job1-001-cancel".into(),
        task_type: TaskType::CancelJob,
        ..t1.clone()
    };
    store.insert_task(&t2).await.unwrap();
    let t3 = NewTask {
        id: "job9-001".into(),
        backend: "tpp".into(),
        ..t1.clone()
    };
    store.insert_task(&t3).await.unwrap();

    let active: Vec<String> = store
        .active_tasks("test")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(active, vec!["job1-001", "job1-001-cancel"]);
    assert_eq!(store.tasks_for_job("job1", None).await.unwrap().len(), 2);
    assert_eq!(
        store.latest_runjob_task("job1").await.unwrap().unwrap().id,
        "job1-001"
    );

    // Agent times near the store's clock are believed (see
    // `agent_clocks_cannot_freeze_tasks` for the others).
    let base = now_ns();
    let update = |stage: &str, complete: bool, ts: i64| TaskUpdate {
        task_id: "job1-001".into(),
        stage: stage.into(),
        results: json!({"exit_code": 0}),
        complete,
        timestamp_ns: base + ts,
    };
    // Another backend's agent cannot touch it, nor learn it exists.
    assert!(matches!(
        store
            .update_task("tpp", &update("executing", false, 10))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        store
            .update_task("test", &update("executing", false, 10))
            .await
            .unwrap(),
        TaskUpdateOutcome::Applied
    );
    assert_eq!(
        store
            .update_task("test", &update("prepared", false, 5))
            .await
            .unwrap(),
        TaskUpdateOutcome::Stale
    );
    let t = store.get_task("job1-001").await.unwrap().unwrap();
    assert_eq!(t.agent_stage.as_deref(), Some("executing"));
    assert_eq!(t.agent_timestamp_ns, Some(base + 10));
    assert!(t.active);
    assert_eq!(
        store
            .update_task("test", &update("finalized", true, 20))
            .await
            .unwrap(),
        TaskUpdateOutcome::Applied
    );
    // The agent retries its final update: idempotent.
    assert_eq!(
        store
            .update_task("test", &update("finalized", true, 20))
            .await
            .unwrap(),
        TaskUpdateOutcome::Inactive
    );
    let t = store.get_task("job1-001").await.unwrap().unwrap();
    assert!(!t.active && t.agent_complete && t.finished_at.is_some());
    assert_eq!(t.agent_results, Some(json!({"exit_code": 0})));
    assert_eq!(t.agent_stage.as_deref(), Some("finalized"));

    assert!(store.deactivate_task("job1-001-cancel").await.unwrap());
    assert!(!store.deactivate_task("missing").await.unwrap());
    assert!(store.active_tasks("test").await.unwrap().is_empty());
    assert_eq!(store.active_tasks("tpp").await.unwrap().len(), 1);
}

fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Clock values an agent might send: extremes, far off, near, random.
fn agent_clocks(rng: &mut impl rand::Rng, now: i64) -> Vec<i64> {
    const YEAR: i64 = 365 * 24 * 3600 * 1_000_000_000;
    let mut clocks = vec![
        0,
        1,
        i64::MAX,
        i64::MAX - 1,
        now,
        now + 1,
        now - 1,
        now + YEAR,
        now - YEAR,
        now + 30 * YEAR,
        now + 61_000_000_000,
        now - 61_000_000_000,
        now + 59_000_000_000,
    ];
    for _ in 0..12 {
        clocks.push(rng.random_range(0..=i64::MAX));
        clocks.push(now + rng.random_range(-120_000_000_000..120_000_000_000i64));
    }
    clocks
}

/// Whatever clock an agent has, its task can always be completed, exactly
/// once; recorded times stay within the skew bound of the store's clock and
/// never go backwards; negative clocks are refused; an out-of-order progress
/// update within the bound is stale.
async fn agent_clocks_cannot_freeze_tasks(db: &TestDb) {
    use rand::{Rng, SeedableRng};
    let store = &db.store;
    let skew = warden_state::MAX_AGENT_CLOCK_SKEW.as_nanos() as i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let clocks = agent_clocks(&mut rng, now_ns());
    let update = |id: &str, stage: &str, complete: bool, ts: i64| TaskUpdate {
        task_id: id.into(),
        stage: stage.into(),
        results: json!({"exit_code": 0}),
        complete,
        timestamp_ns: ts,
    };
    for (i, &poison) in clocks.iter().enumerate() {
        let id = format!("clock{i}-001");
        store
            .insert_task(&NewTask {
                id: id.clone(),
                backend: "test".into(),
                task_type: TaskType::RunJob,
                definition: json!({}),
            })
            .await
            .unwrap();
        // A first report with an arbitrary clock, then more with other
        // arbitrary clocks (duplicates and out of order included).
        let mut recorded: Option<i64> = None;
        let mut sequence = vec![poison, poison];
        for _ in 0..3 {
            sequence.push(clocks[rng.random_range(0..clocks.len())]);
        }
        for (n, &ts) in sequence.iter().enumerate() {
            let before = now_ns();
            let outcome = store
                .update_task("test", &update(&id, "executing", false, ts))
                .await
                .unwrap();
            let after = now_ns();
            let t = store.get_task(&id).await.unwrap().unwrap();
            let at = t.agent_timestamp_ns.unwrap();
            assert!(
                (at >= before - skew && at <= after + skew) || Some(at) == recorded,
                "clock {ts} (#{n}) recorded at {at}, outside {before}±{skew}"
            );
            if let Some(r) = recorded {
                assert!(at >= r, "recorded time went backwards: {r} -> {at}");
            }
            match outcome {
                TaskUpdateOutcome::Applied => {}
                TaskUpdateOutcome::Stale => {
                    // Only an update older than the recorded one, and the
                    // recorded one is at most the skew ahead of now.
                    let r = recorded.expect("a first update is never stale");
                    assert!(r - after <= skew, "stale against {r}, now {after}");
                    assert_eq!(at, r);
                }
                TaskUpdateOutcome::Inactive => panic!("an active task was inactive"),
            }
            recorded = Some(at);
        }
        // The final update lands whatever the clock, once.
        let final_clock = clocks[rng.random_range(0..clocks.len())];
        assert_eq!(
            store
                .update_task("test", &update(&id, "finalized", true, final_clock))
                .await
                .unwrap(),
            TaskUpdateOutcome::Applied,
            "final update with clock {final_clock} after {sequence:?}"
        );
        let t = store.get_task(&id).await.unwrap().unwrap();
        assert!(t.agent_complete && !t.active);
        assert_eq!(t.agent_stage.as_deref(), Some("finalized"));
        assert!(t.agent_timestamp_ns.unwrap() >= recorded.unwrap());
        for again in [final_clock, 0, i64::MAX] {
            assert_eq!(
                store
                    .update_task("test", &update(&id, "finalized", true, again))
                    .await
                    .unwrap(),
                TaskUpdateOutcome::Inactive
            );
        }
        assert_eq!(store.get_task(&id).await.unwrap().unwrap(), t);
    }

    // Out of order within the bound: stale, and nothing changes.
    let now = now_ns();
    store
        .insert_task(&NewTask {
            id: "order-001".into(),
            backend: "test".into(),
            task_type: TaskType::RunJob,
            definition: json!({}),
        })
        .await
        .unwrap();
    for (ts, stage, expected) in [
        (now, "executing", TaskUpdateOutcome::Applied),
        (now - 1_000, "prepared", TaskUpdateOutcome::Stale),
        (now, "executing", TaskUpdateOutcome::Applied),
        (now + 1_000, "executed", TaskUpdateOutcome::Applied),
        (now - 2_000, "preparing", TaskUpdateOutcome::Stale),
    ] {
        assert_eq!(
            store
                .update_task("test", &update("order-001", stage, false, ts))
                .await
                .unwrap(),
            expected,
            "{stage} at {ts}"
        );
    }
    let t = store.get_task("order-001").await.unwrap().unwrap();
    assert_eq!(t.agent_stage.as_deref(), Some("executed"));
    assert_eq!(t.agent_timestamp_ns, Some(now + 1_000));
    // An older final update still lands.
    assert_eq!(
        store
            .update_task("test", &update("order-001", "finalized", true, now - 5_000))
            .await
            .unwrap(),
        TaskUpdateOutcome::Applied
    );

    // Negative clocks are refused, and change nothing.
    for ts in [-1, -1_000_000_000, i64::MIN] {
        let id = format!("neg{}-001", ts.unsigned_abs());
        store
            .insert_task(&NewTask {
                id: id.clone(),
                backend: "test".into(),
                task_type: TaskType::RunJob,
                definition: json!({}),
            })
            .await
            .unwrap();
        for complete in [false, true] {
            let err = store
                .update_task("test", &update(&id, "finalized", complete, ts))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput(m) if m.contains("timestamp_ns is negative")),
                "{err}"
            );
        }
        let t = store.get_task(&id).await.unwrap().unwrap();
        assert!(t.active && t.agent_stage.is_none());
    }
}

/// A workspace's repository and branch go to git: values git would read as
/// options, or with control characters, are refused on create and update.
async fn workspace_git_values_cannot_be_options(db: &TestDb) {
    let store = &db.store;
    let ws = store
        .create_workspace(&NewWorkspace {
            name: "plain".into(),
            repo_url: "/srv/repo.git".into(),
            branch: "main".into(),
            project_id: None,
        })
        .await
        .unwrap();
    let mut hostile: Vec<String> = ["-", "--", "-x", "--upload-pack=evil", "-oProxyCommand=x"]
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    for c in ['\n', '\r', '\t', '\0', '\x1b', '\x7f', '\u{85}'] {
        hostile.push(format!("main{c}x"));
    }
    for (i, value) in hostile.iter().enumerate() {
        for field in ["repository", "branch"] {
            let (repo_url, branch) = if field == "branch" {
                ("/srv/repo.git".to_owned(), value.clone())
            } else {
                (value.clone(), "main".to_owned())
            };
            let err = store
                .create_workspace(&NewWorkspace {
                    name: format!("ws{i}"),
                    repo_url: repo_url.clone(),
                    branch: branch.clone(),
                    project_id: None,
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput(m) if m.contains(&format!("workspace {field}"))),
                "{value:?}: {err}"
            );
            assert!(
                store
                    .get_workspace_by_name(&format!("ws{i}"))
                    .await
                    .unwrap()
                    .is_none()
            );
            let update = if field == "branch" {
                WorkspaceUpdate {
                    branch: Some(branch),
                    ..Default::default()
                }
            } else {
                WorkspaceUpdate {
                    repo_url: Some(repo_url),
                    ..Default::default()
                }
            };
            assert!(matches!(
                store.update_workspace(ws.id, &update).await,
                Err(Error::InvalidInput(_))
            ));
        }
    }
    let unchanged = store.get_workspace(ws.id).await.unwrap().unwrap();
    assert_eq!(
        (unchanged.repo_url.as_str(), unchanged.branch.as_str()),
        ("/srv/repo.git", "main")
    );
}

/// PostgreSQL cannot hold a NUL character, so neither engine takes one, as
/// a lookup key or a value: bad input, never a database failure.
async fn nul_characters_are_bad_input(db: &TestDb) {
    let store = &db.store;
    for text in ["\0", "a\0b", "job\0-001", "\0\0"] {
        let bad = |r: Result<(), Error>| {
            assert!(
                matches!(&r, Err(Error::InvalidInput(m)) if m.contains("NUL")),
                "{text:?}: {r:?}"
            );
        };
        bad(store.get_job_request(text).await.map(drop));
        bad(store.get_job(text).await.map(drop));
        bad(store.get_task(text).await.map(drop));
        bad(store.get_backend(text).await.map(drop));
        bad(store.get_workspace_by_name(text).await.map(drop));
        bad(store
            .create_backend(&NewBackend {
                slug: "b".into(),
                name: text.into(),
            })
            .await
            .map(drop));
    }
    assert!(store.get_backend("b").await.unwrap().is_none());
}

/// `jobs_for_requests` gives each request exactly what `jobs_for_request`
/// gives, for pages of many sizes (across the 500-id chunks), unknown ids
/// and requests without jobs included.
async fn jobs_of_many_requests_at_once(db: &TestDb) {
    let store = &db.store;
    let mut ids = Vec::new();
    for i in 0..620 {
        let ws = format!("many{i}");
        let actions: Vec<String> = (0..(i % 4)).map(|a| format!("a{a}")).collect();
        let refs: Vec<&str> = actions.iter().map(String::as_str).collect();
        let mut r = request(&ws, &refs);
        if refs.is_empty() {
            r.status = JobRequestStatus::NothingToDo;
        }
        let created = store.create_job_request(r, jobs(&refs)).await.unwrap();
        ids.push(created.request.id);
    }
    ids.push("unknownunknown00".into());
    for n in [0, 1, 2, 499, 500, 501, ids.len()] {
        let page = &ids[ids.len() - n..];
        let all = store.jobs_for_requests(page).await.unwrap();
        assert_eq!(all.len(), page.len());
        for id in page {
            assert_eq!(all[id], store.jobs_for_request(id).await.unwrap(), "{id}");
        }
    }
}

/// Cancelling and pausing write their audit record in the same transaction
/// as the change: both or neither. An audit that cannot be written (no
/// actor) undoes the change.
async fn cancel_and_pause_audits_commit_with_the_change(db: &TestDb) {
    let store = &db.store;
    let audits = |target: &'static str, id: String| async move {
        store
            .list_audit(&AuditFilter {
                target_id: Some(id),
                target_type: Some(target.into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    };
    for (i, actor) in ["", "alice"].into_iter().enumerate() {
        let created = store
            .create_job_request(
                request(&format!("audit{i}"), &["a", "b", "c"]),
                jobs(&["a", "b", "c"]),
            )
            .await
            .unwrap();
        let rid = created.request.id.clone();
        let result = store
            .cancel_actions_audited(&rid, &["a".into(), "nope".into()], actor)
            .await;
        let job_a = store.get_job(&created.jobs[0].id).await.unwrap().unwrap();
        let log = audits("job_request", rid.clone()).await;
        if actor.is_empty() {
            assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
            assert!(!job_a.cancelled, "cancelled without its audit record");
            assert!(log.is_empty());
        } else {
            let outcome = result.unwrap();
            assert_eq!(outcome.cancelled, vec![job_a.id.clone()]);
            assert!(job_a.cancelled);
            assert_eq!(log.len(), 1);
            assert_eq!(log[0].action, "job_request.cancel");
            assert_eq!(log[0].actor, actor);
            assert_eq!(
                log[0].detail,
                json!({"actions": ["a", "nope"], "cancelled": [job_a.id]})
            );
        }
        let job_b = &created.jobs[1].id;
        let result = store.cancel_job_audited(job_b, actor).await;
        let b = store.get_job(job_b).await.unwrap().unwrap();
        let log = audits("job", job_b.clone()).await;
        if actor.is_empty() {
            assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
            assert!(!b.cancelled);
            assert!(log.is_empty());
        } else {
            assert!(result.unwrap());
            assert!(b.cancelled);
            assert_eq!(log.len(), 1);
            assert_eq!(log[0].detail, json!({"job_request_id": rid, "action": "b"}));
        }
        for paused in [true, false] {
            let before = store.is_paused("test").await.unwrap();
            let result = store.set_paused_audited("test", paused, actor).await;
            let log = audits("backend", "test".into()).await;
            if actor.is_empty() {
                assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
                assert_eq!(store.is_paused("test").await.unwrap(), before);
                assert!(log.is_empty());
            } else {
                result.unwrap();
                assert_eq!(store.is_paused("test").await.unwrap(), paused);
                assert_eq!(
                    log[0].action,
                    if paused {
                        "backend.pause"
                    } else {
                        "backend.unpause"
                    }
                );
            }
        }
    }
}

async fn update_job_is_atomic_with_tasks(db: &TestDb) {
    let store = &db.store;
    let job = one_job(store, "ws", "a").await;
    let task = NewTask {
        id: runjob_task_id(&job.id, 1),
        backend: "test".into(),
        task_type: TaskType::RunJob,
        definition: json!({}),
    };
    store.insert_task(&task).await.unwrap();
    // The task insert fails (duplicate id), so the status change must not land.
    let mut u = JobUpdate::code(
        &job.id,
        StatusCode::Initiated,
        "Job executing on the backend",
    );
    u.insert_task = Some(task.clone());
    assert!(matches!(
        store.update_job(u).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(store.get_job(&job.id).await.unwrap().unwrap(), job);

    // Cancel: deactivate the RUNJOB task and add a CANCELJOB task with the code.
    let mut u = JobUpdate::code(&job.id, StatusCode::CancelledByUser, "Cancelled by user");
    u.deactivate_task = Some(task.id.clone());
    u.insert_task = Some(NewTask {
        id: warden_state::canceljob_task_id(&task.id),
        task_type: TaskType::CancelJob,
        ..task.clone()
    });
    let r = store.update_job(u).await.unwrap();
    assert_eq!(r.job.state, State::Failed);
    assert!(!store.get_task(&task.id).await.unwrap().unwrap().active);
    let active = store.active_tasks("test").await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].task_type, TaskType::CancelJob);

    // Outputs are recorded with the update.
    let job = one_job(store, "ws", "b").await;
    let mut u = JobUpdate::code(&job.id, StatusCode::Succeeded, "Completed successfully");
    u.outputs = Some(BTreeMap::from([
        (
            "output/b.csv".to_string(),
            "moderately_sensitive".to_string(),
        ),
        (
            "output/raw.arrow".to_string(),
            "highly_sensitive".to_string(),
        ),
    ]));
    store.update_job(u.clone()).await.unwrap();
    let stored = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(stored.outputs, u.outputs);
}

async fn flags(db: &TestDb) {
    let store = &db.store;
    assert!(store.get_flag("tpp", "paused").await.unwrap().is_none());
    assert!(!store.is_paused("tpp").await.unwrap());
    let f1 = store.set_paused("tpp", true).await.unwrap();
    assert_eq!(f1.value.as_deref(), Some("true"));
    assert!(store.is_paused("tpp").await.unwrap());
    assert!(!store.is_paused("emis").await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Same value: timestamp kept.
    let f2 = store.set_paused("tpp", true).await.unwrap();
    assert_eq!(f2, f1);
    // New value: timestamp moves.
    let f3 = store.set_paused("tpp", false).await.unwrap();
    assert_eq!(f3.value, None);
    assert!(f3.timestamp > f1.timestamp);
    assert!(!store.is_paused("tpp").await.unwrap());
    store
        .set_flag(
            "tpp",
            warden_state::FLAG_MODE,
            Some(warden_state::MODE_DB_MAINTENANCE),
        )
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_flags("tpp")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(names, vec!["mode", "paused"]);
}

async fn audit_log_is_append_only(db: &TestDb) {
    let store = &db.store;
    let mut appended = Vec::new();
    for i in 0..3 {
        appended.push(
            store
                .append_audit(&NewAuditEvent {
                    actor: if i == 2 { "bob" } else { "alice" }.into(),
                    action: "backend.pause".into(),
                    target_type: "backend".into(),
                    target_id: format!("b{i}"),
                    detail: json!({"paused": true, "i": i}),
                })
                .await
                .unwrap(),
        );
    }
    assert!(appended[0].id < appended[1].id && appended[1].id < appended[2].id);
    let all = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], appended[2], "newest first");
    let alice = store
        .list_audit(&AuditFilter {
            actor: Some("alice".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    let page = store
        .list_audit(&AuditFilter {
            before_id: Some(appended[2].id),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page, vec![appended[1].clone()]);

    // The database itself refuses changes.
    for sql in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ] {
        let err = db.raw_execute(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    if store.engine() == warden_state::Engine::Postgres {
        let err = db.raw_execute("TRUNCATE audit_log").await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(
        store.list_audit(&AuditFilter::default()).await.unwrap(),
        all
    );
}

async fn admin_records(db: &TestDb) {
    let store = &db.store;
    let org = store
        .create_organisation(&NewOrganisation {
            slug: "bennett".into(),
            name: "Bennett Institute".into(),
        })
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_organisation(&NewOrganisation {
                slug: "bennett".into(),
                name: "Again".into()
            })
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        store
            .create_organisation(&NewOrganisation {
                slug: "Bad Slug".into(),
                name: "x".into()
            })
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(store.get_organisation(org.id).await.unwrap().unwrap(), org);
    assert_eq!(
        store
            .get_organisation_by_slug("bennett")
            .await
            .unwrap()
            .unwrap(),
        org
    );

    let project = store
        .create_project(&NewProject {
            slug: "covid".into(),
            name: "COVID vaccine effectiveness".into(),
            org_id: Some(org.id),
        })
        .await
        .unwrap();
    assert_eq!(
        store.list_projects(Some(org.id)).await.unwrap(),
        vec![project.clone()]
    );
    assert!(
        store
            .list_projects(Some(org.id + 1000))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .update_project(
            project.id,
            &ProjectUpdate {
                name: Some("Renamed".into()),
                org_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_project(project.id).await.unwrap().unwrap().name,
        "Renamed"
    );
    // A project pointing at a missing organisation is refused.
    assert!(matches!(
        store
            .create_project(&NewProject {
                slug: "orphan".into(),
                name: "Orphan".into(),
                org_id: Some(org.id + 1000),
            })
            .await,
        Err(Error::Conflict(_))
    ));

    let ws = store
        .create_workspace(&NewWorkspace {
            name: "My-Workspace".into(),
            repo_url: "https://github.com/opensafely/example".into(),
            branch: "main".into(),
            project_id: Some(project.id),
        })
        .await
        .unwrap();
    assert_eq!(ws.name, "my-workspace");
    assert!(!ws.archived);
    assert!(matches!(
        store
            .create_workspace(&NewWorkspace {
                name: "my-workspace".into(),
                ..Default::default()
            })
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    store
        .update_workspace(
            ws.id,
            &WorkspaceUpdate {
                branch: Some("dev".into()),
                archived: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ws2 = store
        .get_workspace_by_name("MY-workspace")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ws2.branch.as_str(), ws2.archived), ("dev", true));
    assert_eq!(
        store.list_workspaces(Some(project.id)).await.unwrap().len(),
        1
    );

    // Deletes that would orphan records are conflicts.
    assert!(matches!(
        store.delete_organisation(org.id).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.delete_project(project.id).await,
        Err(Error::Conflict(_))
    ));
    store
        .update_workspace(
            ws.id,
            &WorkspaceUpdate {
                project_id: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.delete_project(project.id).await.unwrap();
    store.delete_organisation(org.id).await.unwrap();
    store.delete_workspace(ws.id).await.unwrap();
    assert!(matches!(
        store.delete_workspace(ws.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.list_organisations().await.unwrap().is_empty());

    let user = store
        .create_user(&NewUser {
            username: "alice".into(),
            fullname: "Alice A".into(),
            email: "Alice@Example.org".into(),
            roles: vec!["OutputChecker".into()],
        })
        .await
        .unwrap();
    assert_eq!(user.email, "alice@example.org");
    assert!(user.active);
    store
        .update_user(
            user.id,
            &UserUpdate {
                roles: Some(vec![]),
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let u = store.get_user_by_username("alice").await.unwrap().unwrap();
    assert!(u.roles.is_empty() && !u.active);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    assert!(matches!(
        store
            .update_user(
                user.id + 99,
                &UserUpdate {
                    active: Some(true),
                    ..Default::default()
                }
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    store.delete_user(user.id).await.unwrap();
    assert!(store.get_user(user.id).await.unwrap().is_none());
}

async fn backend_tokens_and_last_seen(db: &TestDb) {
    let store = &db.store;
    let tpp = store
        .create_backend(&NewBackend {
            slug: "tpp".into(),
            name: "TPP".into(),
        })
        .await
        .unwrap();
    store
        .create_backend(&NewBackend {
            slug: "emis".into(),
            name: "EMIS".into(),
        })
        .await
        .unwrap();
    assert!(tpp.active && tpp.last_seen_at.is_none());

    let (meta, token) = store.create_backend_token("tpp", "agent").await.unwrap();
    assert_eq!(token.len(), 64);
    assert!(store.verify_backend_token("tpp", &token).await.unwrap());
    assert!(!store.verify_backend_token("emis", &token).await.unwrap());
    assert!(!store.verify_backend_token("tpp", "wrong").await.unwrap());
    assert_eq!(
        store.backend_for_token(&token).await.unwrap().as_deref(),
        Some("tpp")
    );
    // Only the hash is stored.
    let listed = store.list_backend_tokens("tpp").await.unwrap();
    assert_eq!(listed, vec![meta.clone()]);
    assert_eq!(
        db.raw_execute(&format!(
            "UPDATE backend_tokens SET label = label WHERE token_sha256 = '{token}'"
        ))
        .await
        .unwrap(),
        0
    );
    store.revoke_backend_token(meta.id).await.unwrap();
    assert!(!store.verify_backend_token("tpp", &token).await.unwrap());
    assert!(matches!(
        store.create_backend_token("nowhere", "agent").await,
        Err(Error::NotFound { .. })
    ));

    assert_eq!(store.backend_last_seen("tpp").await.unwrap(), None);
    store.record_backend_seen("tpp").await.unwrap();
    let seen = store.backend_last_seen("tpp").await.unwrap().unwrap();
    assert!(seen <= warden_state::time::OffsetDateTime::now_utc());
    assert!(matches!(
        store.record_backend_seen("nowhere").await,
        Err(Error::NotFound { .. })
    ));

    store
        .update_backend(
            "emis",
            &BackendUpdate {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let backends = store.list_backends().await.unwrap();
    assert_eq!(
        backends
            .iter()
            .map(|b| (b.slug.as_str(), b.active))
            .collect::<Vec<_>>(),
        vec![("emis", false), ("tpp", true)]
    );
    store.delete_backend("tpp").await.unwrap();
    assert!(store.list_backend_tokens("tpp").await.unwrap().is_empty());
}

async fn derived_request_status(db: &TestDb) {
    let store = &db.store;
    let created = store
        .create_job_request(request("ws", &["a", "b"]), jobs(&["a", "b"]))
        .await
        .unwrap();
    let id = &created.request.id;
    let [a, b] = &created.jobs[..] else { panic!() };
    let status = |d: warden_state::JobRequestDetail| d.status;
    let s = status(store.job_request_detail(id).await.unwrap().unwrap());
    assert_eq!(s.status, JobRequestStatus::Pending);
    assert_eq!(s.started_at, None);

    store
        .set_code(&a.id, StatusCode::Initiated, "m")
        .await
        .unwrap();
    let s = status(store.job_request_detail(id).await.unwrap().unwrap());
    assert_eq!(s.status, JobRequestStatus::Running);
    assert!(s.started_at.is_some());

    store
        .set_code(&a.id, StatusCode::Succeeded, "ok")
        .await
        .unwrap();
    let s = status(store.job_request_detail(id).await.unwrap().unwrap());
    assert_eq!(s.status, JobRequestStatus::Running, "one done, one pending");
    assert_eq!(s.completed_at, None);

    store
        .set_code(&b.id, StatusCode::Initiated, "m")
        .await
        .unwrap();
    store
        .set_code(&b.id, StatusCode::NonzeroExit, "exit 1")
        .await
        .unwrap();
    let detail = store.job_request_detail(id).await.unwrap().unwrap();
    let s = detail.status;
    assert_eq!(s.status, JobRequestStatus::Failed);
    assert_eq!(s.message, warden_state::FAILED_DUE_TO_JOB_FAILURE);
    assert_eq!(s.counts.completed(), 2);
    let sum: std::time::Duration = detail.jobs.iter().filter_map(Job::runtime).sum();
    assert_eq!(s.runtime, sum);
    assert_eq!(
        s.completed_at,
        detail.jobs.iter().filter_map(|j| j.completed_at).max()
    );
    assert!(
        store
            .job_request_detail("aaaaaaaaaaaaaaaa")
            .await
            .unwrap()
            .is_none()
    );
}

async fn listing(db: &TestDb) {
    let store = &db.store;
    let r1 = store
        .create_job_request(request("ws1", &["a", "b"]), jobs(&["a", "b"]))
        .await
        .unwrap();
    let mut other = request("ws2", &["a"]);
    other.created_by = "bob".into();
    other.backend = "tpp".into();
    let r2 = store.create_job_request(other, jobs(&["a"])).await.unwrap();
    store
        .set_code(&r1.jobs[0].id, StatusCode::Succeeded, "ok")
        .await
        .unwrap();

    let newest_first = store
        .list_job_requests(&JobRequestFilter::default())
        .await
        .unwrap();
    assert_eq!(
        newest_first.iter().map(|r| &r.id).collect::<Vec<_>>(),
        vec![&r2.request.id, &r1.request.id]
    );
    let bobs = store
        .list_job_requests(&JobRequestFilter {
            created_by: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1);
    let page = store
        .list_job_requests(&JobRequestFilter {
            limit: Some(1),
            offset: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].id, r1.request.id);

    assert_eq!(store.active_jobs(None).await.unwrap().len(), 2);
    assert_eq!(store.active_jobs(Some("tpp")).await.unwrap().len(), 1);
    let succeeded = store
        .list_jobs(&JobFilter {
            states: vec![State::Succeeded],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    let limited = store
        .list_jobs(&JobFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(
        store
            .list_jobs(&JobFilter {
                action: Some("a".into()),
                workspace: Some("ws2".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
    let _ = new_job_request_id();
}

async fn user_tokens_and_memberships(db: &TestDb) {
    let store = &db.store;
    let alice = store
        .create_user(&NewUser {
            username: "alice".into(),
            fullname: "Alice A".into(),
            email: "alice@example.org".into(),
            roles: vec![],
        })
        .await
        .unwrap();
    let (meta, token) = store.create_user_token(alice.id, "cli").await.unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(meta.user_id, alice.id);
    assert_eq!(
        store
            .user_for_token(&token)
            .await
            .unwrap()
            .map(|u| u.username),
        Some("alice".into())
    );
    assert_eq!(store.user_for_token("wrong").await.unwrap(), None);
    assert_eq!(
        store.list_user_tokens(alice.id).await.unwrap(),
        vec![meta.clone()]
    );
    // Only the hash is stored.
    assert_eq!(
        db.raw_execute(&format!(
            "UPDATE user_tokens SET label = label WHERE token_sha256 = '{token}'"
        ))
        .await
        .unwrap(),
        0
    );
    // A disabled user's token authenticates nobody; enabling restores it.
    store
        .update_user(
            alice.id,
            &UserUpdate {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(store.user_for_token(&token).await.unwrap(), None);
    store
        .update_user(
            alice.id,
            &UserUpdate {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(store.user_for_token(&token).await.unwrap().is_some());
    store.revoke_user_token(meta.id).await.unwrap();
    store.revoke_user_token(meta.id).await.unwrap();
    assert_eq!(store.user_for_token(&token).await.unwrap(), None);
    assert!(matches!(
        store.create_user_token(999_999, "x").await,
        Err(Error::NotFound { .. })
    ));

    // Project roles.
    let project = store
        .create_project(&NewProject {
            slug: "p".into(),
            name: "P".into(),
            org_id: None,
        })
        .await
        .unwrap();
    assert!(
        store
            .project_roles(project.id, alice.id)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_project_roles(project.id, alice.id, &["developer".into()])
        .await
        .unwrap();
    store
        .set_project_roles(
            project.id,
            alice.id,
            &["developer".into(), "collaborator".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        store.project_roles(project.id, alice.id).await.unwrap(),
        vec!["developer".to_string(), "collaborator".to_string()]
    );
    store
        .set_project_roles(project.id, alice.id, &[])
        .await
        .unwrap();
    assert!(
        store
            .project_roles(project.id, alice.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .set_project_roles(999_999, alice.id, &["developer".into()])
            .await,
        Err(Error::NotFound { .. })
    ));

    // Backend memberships.
    store
        .create_backend(&NewBackend {
            slug: "tpp".into(),
            name: "TPP".into(),
        })
        .await
        .unwrap();
    store.add_backend_member("tpp", alice.id).await.unwrap();
    store.add_backend_member("tpp", alice.id).await.unwrap();
    assert_eq!(
        store.user_backends(alice.id).await.unwrap(),
        vec!["tpp".to_string()]
    );
    assert!(matches!(
        store.add_backend_member("nowhere", alice.id).await,
        Err(Error::NotFound { .. })
    ));
    store.remove_backend_member("tpp", alice.id).await.unwrap();
    assert!(store.user_backends(alice.id).await.unwrap().is_empty());

    // Deleting the user takes its tokens and memberships with it.
    store.add_backend_member("tpp", alice.id).await.unwrap();
    store.create_user_token(alice.id, "again").await.unwrap();
    store.delete_user(alice.id).await.unwrap();
    assert!(store.list_user_tokens(alice.id).await.unwrap().is_empty());
    assert!(store.user_backends(alice.id).await.unwrap().is_empty());
}

async fn batched_updates_and_lookups(db: &TestDb) {
    let store = &db.store;
    let created = store
        .create_job_request(request("batch", &["a", "b", "c"]), jobs(&["a", "b", "c"]))
        .await
        .unwrap();
    let ids: Vec<String> = created.jobs.iter().map(|j| j.id.clone()).collect();
    let mut found = store.get_jobs(&ids).await.unwrap();
    found.sort_by(|x, y| x.action.cmp(&y.action));
    assert_eq!(found, created.jobs);
    assert!(
        store
            .get_jobs(&["nope".to_string()])
            .await
            .unwrap()
            .is_empty()
    );

    // One batch: a waits, b starts with its task, c is unchanged (skipped).
    let task = NewTask {
        id: runjob_task_id(&ids[1], 1),
        backend: "test".into(),
        task_type: TaskType::RunJob,
        definition: json!({"id": ids[1]}),
    };
    let done = store
        .update_jobs(vec![
            JobUpdate::code(
                &ids[0],
                StatusCode::WaitingOnWorkers,
                "Waiting on available workers",
            ),
            JobUpdate {
                insert_task: Some(task.clone()),
                ..JobUpdate::code(
                    &ids[1],
                    StatusCode::Initiated,
                    "Job executing on the backend",
                )
            },
            JobUpdate::code(&ids[2], StatusCode::Created, "Created"),
        ])
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].job.status_code, StatusCode::WaitingOnWorkers);
    assert_eq!(done[1].job.state, State::Running);
    assert!(store.get_task(&task.id).await.unwrap().unwrap().active);

    // All or nothing: a failing update rolls back the whole batch.
    let err = store
        .update_jobs(vec![
            JobUpdate::code(
                &ids[0],
                StatusCode::WaitingOnDependencies,
                "Waiting on dependencies",
            ),
            JobUpdate {
                insert_task: Some(task),
                ..JobUpdate::code(
                    &ids[2],
                    StatusCode::Initiated,
                    "Job executing on the backend",
                )
            },
        ])
        .await;
    assert!(matches!(err, Err(Error::AlreadyExists { .. })), "{err:?}");
    let a = store.get_job(&ids[0]).await.unwrap().unwrap();
    assert_eq!(a.status_code, StatusCode::WaitingOnWorkers);
    let c = store.get_job(&ids[2]).await.unwrap().unwrap();
    assert_eq!(c.state, State::Pending);
    assert!(store.update_jobs(vec![]).await.unwrap().is_empty());

    // Two updates of one job apply in order; a batch larger than one
    // multi-row UPDATE is written whole.
    let done = store
        .update_jobs(vec![
            JobUpdate::code(
                &ids[2],
                StatusCode::WaitingOnWorkers,
                "Waiting on available workers",
            ),
            JobUpdate::code(
                &ids[2],
                StatusCode::Initiated,
                "Job executing on the backend",
            ),
        ])
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    let c = store.get_job(&ids[2]).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.status_code),
        (State::Running, StatusCode::Initiated)
    );
    assert!(c.started_at.is_some());
    assert_eq!(c, done[1].job);
    let names: Vec<String> = (0..450).map(|i| format!("many_{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let many = store
        .create_job_request(request("many", &refs), jobs(&refs))
        .await
        .unwrap();
    let done = store
        .update_jobs(
            many.jobs
                .iter()
                .map(|j| {
                    JobUpdate::code(
                        &j.id,
                        StatusCode::WaitingOnDependencies,
                        "Waiting on dependencies",
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(done.len(), 450);
    let stored = store.jobs_for_request(&many.request.id).await.unwrap();
    assert!(
        stored.iter().all(
            |j| j.status_code == StatusCode::WaitingOnDependencies && j.state == State::Pending
        )
    );
    assert_eq!(stored, done.into_iter().map(|d| d.job).collect::<Vec<_>>());
}

async fn audited_creation(db: &TestDb) {
    let store = &db.store;
    let req = request("audited", &["a", "b"]);
    let id = req.id.clone();
    let created = store
        .create_job_request_audited(req, "alice", plan)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.jobs.len(), 2);
    let log = store
        .list_audit(&AuditFilter {
            target_id: Some(id.clone()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].actor, "alice");
    assert_eq!(log[0].action, "job_request.create");
    assert_eq!(log[0].target_type, "job_request");
    assert_eq!(log[0].detail["jobs"], 2);
    assert_eq!(log[0].detail["workspace"], "audited");
    // A planner error rolls back the audit entry with the request.
    let req = request("audited", &["c"]);
    let failed_id = req.id.clone();
    let err = store
        .create_job_request_audited(req, "alice", |_, _| Err::<Vec<NewJob>, _>("no"))
        .await
        .unwrap();
    assert_eq!(err.unwrap_err(), "no");
    let log = store
        .list_audit(&AuditFilter {
            target_id: Some(failed_id),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(log.is_empty());
    assert!(matches!(
        store
            .create_job_request_audited(request("audited", &["d"]), "", plan)
            .await,
        Err(Error::InvalidInput(_))
    ));
}
