use reqwest::Method;
use serde_json::{Value, json};
use warden_state::{NewWorkspace, job_id};

use crate::common::{Db, TestApp};
use crate::db_tests;

db_tests!(
    every_call_checks_who_is_asking,
    create_plans_and_reads_back,
    nothing_to_do_is_an_answer,
    same_id_twice_is_idempotent,
    bad_input_is_refused_and_changes_nothing,
    cancel_requests_and_jobs,
    pause_and_unpause,
    worker_slots_and_database_pool,
    task_api_rules,
    events_stream_follows_a_request,
    credentials_in_urls_are_never_shown,
);

async fn every_call_checks_who_is_asking(db: Db) {
    let app = TestApp::start(db).await;
    let t = &app.tokens;
    // Researcher API: no token, a malformed header, an unknown token.
    let a = app
        .call(
            Method::GET,
            "/api/v1/job-requests",
            "/api/v1/job-requests",
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["error"], "unauthorized");
    let a = app
        .get("/api/v1/job-requests", "/api/v1/job-requests", "nonsense")
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["message"], "Invalid token");
    // A backend token is not a user token.
    let a = app.get("/api/v1/me", "/api/v1/me", &t.agent).await;
    assert_eq!(a.status, 401);
    let a = app.get("/api/v1/me", "/api/v1/me", &t.dev).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["username"], "dev");
    assert_eq!(a.body["backends"], json!(["test"]));

    // Agent API: no token, a user token, another backend's token, unknown backend.
    let tasks = "/api/v1/backends/{slug}/tasks";
    let a = app
        .call(
            Method::GET,
            tasks,
            "/api/v1/backends/test/tasks",
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 401);
    let a = app.get(tasks, "/api/v1/backends/test/tasks", &t.dev).await;
    assert_eq!(a.status, 401);
    let a = app
        .get(tasks, "/api/v1/backends/test/tasks", &t.other_agent)
        .await;
    assert_eq!(a.status, 403);
    let a = app
        .get(tasks, "/api/v1/backends/nowhere/tasks", &t.agent)
        .await;
    assert_eq!(a.status, 404);
    let a = app
        .get(tasks, "/api/v1/backends/test/tasks", &t.agent)
        .await;
    assert_eq!(a.status, 200);

    // Permissions: an outsider may read but not run; a developer may not pause.
    let a = app
        .post(
            "/api/v1/job-requests",
            "/api/v1/job-requests",
            &t.outsider,
            json!({"workspace": "ws", "backend": "test", "actions": ["other"]}),
        )
        .await;
    assert_eq!(a.status, 403, "{:#}", a.body);
    let a = app
        .get("/api/v1/job-requests", "/api/v1/job-requests", &t.outsider)
        .await;
    assert_eq!(a.status, 200);
    // The developer is not a member of backend `other`.
    let a = app
        .create(json!({"workspace": "ws", "backend": "other", "actions": ["other"]}))
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.body["message"],
        "You do not have permission to run jobs on backend 'other'"
    );
    let a = app
        .post(
            "/api/v1/backends/{slug}/pause",
            "/api/v1/backends/test/pause",
            &t.dev,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 403);

    // Public: health and the document.
    let a = app
        .call(Method::GET, "/api/v1/health", "/api/v1/health", None, None)
        .await;
    assert_eq!(a.status, 200);
    app.stop().await;
}

async fn create_plans_and_reads_back(db: Db) {
    let app = TestApp::start(db).await;
    let head = crate::common::git(&app.repo.work, &["rev-parse", "HEAD"]);
    let a = app
        .create(json!({"workspace": "ws", "backend": "test", "actions": ["run_all"]}))
        .await;
    assert_eq!(a.status, 201, "{:#}", a.body);
    assert_eq!(a.body["result"], "created");
    assert_eq!(a.body["count"], 4);
    let r = &a.body["job_request"];
    let id = r["id"].as_str().unwrap();
    assert!(warden_state::is_valid_job_request_id(id));
    assert_eq!(r["commit"], head.as_str());
    assert_eq!(r["branch"], "main");
    assert_eq!(r["created_by"], "dev");
    assert_eq!(r["status"], "pending");
    assert_eq!(r["project_definition"], crate::common::STUDY);
    let jobs = r["jobs"].as_array().unwrap();
    let actions: Vec<&str> = jobs.iter().map(|j| j["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["extract", "model", "report", "other"]);
    for j in jobs {
        assert_eq!(j["id"], job_id(id, j["action"].as_str().unwrap()));
    }
    assert_eq!(jobs[0]["requires_db"], true);
    assert_eq!(jobs[0]["image"], "ghcr.io/opensafely-core/ehrql:v1");
    assert_eq!(jobs[1]["wait_for_job_ids"], json!([jobs[0]["id"]]));

    // The scheduler acts at once: extract (database pool) and other start,
    // model and report wait on their dependencies.
    app.wait_code(id, "extract", "initiated").await;
    app.wait_code(id, "other", "initiated").await;
    let model = app.wait_code(id, "model", "waiting_on_dependencies").await;
    assert_eq!(model["status_message"], "Waiting on dependencies");
    assert_eq!(model["state"], "pending");
    let r = app.job_request(id).await;
    assert_eq!(r["status"], "running");
    assert_eq!(r["counts"]["running"], 2);

    // Reading: list, filters, jobs, workspace.
    let list = app
        .get(
            "/api/v1/job-requests",
            "/api/v1/job-requests?workspace=ws&limit=10",
            &app.tokens.outsider,
        )
        .await;
    assert_eq!(list.body["job_requests"].as_array().unwrap().len(), 1);
    assert!(list.body["job_requests"][0].get("jobs").is_none());
    let list = app
        .get(
            "/api/v1/job-requests",
            "/api/v1/job-requests?workspace=ws2",
            &app.tokens.dev,
        )
        .await;
    assert!(list.body["job_requests"].as_array().unwrap().is_empty());
    let jobs = app
        .get(
            "/api/v1/jobs",
            "/api/v1/jobs?state=running",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(jobs.body["jobs"].as_array().unwrap().len(), 2);
    let bad = app
        .get(
            "/api/v1/jobs",
            "/api/v1/jobs?state=sleeping",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(bad.status, 400);
    let job = app
        .get(
            "/api/v1/jobs/{id}",
            &format!("/api/v1/jobs/{}", job_id(id, "model")),
            &app.tokens.dev,
        )
        .await;
    assert_eq!(job.body["action"], "model");
    let missing = app
        .get(
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/nosuchjob",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(missing.status, 404);
    let ws = app
        .get(
            "/api/v1/workspaces/{name}",
            "/api/v1/workspaces/ws",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(ws.body["project"], "study");
    assert_eq!(ws.body["actions"].as_array().unwrap().len(), 4);
    let all = app
        .get("/api/v1/workspaces", "/api/v1/workspaces", &app.tokens.dev)
        .await;
    assert_eq!(all.body["workspaces"].as_array().unwrap().len(), 3);
    let backends = app
        .get("/api/v1/backends", "/api/v1/backends", &app.tokens.dev)
        .await;
    let test = &backends.body["backends"][1];
    assert_eq!(test["slug"], "test");
    assert_eq!(test["running_jobs"], 2);
    assert_eq!(test["pending_jobs"], 2);

    // An explicit commit, abbreviated.
    let a = app
        .create(
            json!({"workspace": "ws2", "backend": "test", "actions": ["other"],
                       "commit": &head[..10]}),
        )
        .await;
    assert_eq!(a.status, 201, "{:#}", a.body);
    assert_eq!(a.body["job_request"]["commit"], head.as_str());

    // A new commit on the branch is picked up without naming it.
    let second = app
        .repo
        .commit("analysis/model.py", "print(1)\n", "model code");
    let a = app
        .create(json!({"workspace": "ws3", "backend": "test", "actions": ["other"]}))
        .await;
    assert_eq!(a.body["job_request"]["commit"], second.as_str());
    app.stop().await;
}

async fn nothing_to_do_is_an_answer(db: Db) {
    let app = TestApp::start(db).await;
    let first = app.request("ws", &["other"]).await;
    let a = app
        .create(json!({"workspace": "ws", "backend": "test", "actions": ["other"]}))
        .await;
    assert_eq!(a.status, 201, "{:#}", a.body);
    assert_eq!(a.body["result"], "nothing_to_do");
    assert_eq!(a.body["count"], 0);
    assert_eq!(
        a.body["details"],
        "All requested actions were already scheduled to run"
    );
    let r = &a.body["job_request"];
    assert_eq!(r["status"], "nothing_to_do");
    assert_eq!(r["is_completed"], true);
    assert_ne!(r["id"], first["id"]);
    assert_eq!(r["jobs"], json!([]));
    app.stop().await;
}

async fn same_id_twice_is_idempotent(db: Db) {
    let app = TestApp::start(db).await;
    let body = json!({"id": "abcdefghijklmnop", "workspace": "ws", "backend": "test",
                      "actions": ["model"]});
    let first = app.create(body.clone()).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["count"], 2);
    let again = app.create(body.clone()).await;
    assert_eq!(again.status, 200, "{:#}", again.body);
    assert_eq!(again.body["result"], "already_exists");
    assert_eq!(again.body["count"], 0);
    assert_eq!(again.body["job_request"]["id"], "abcdefghijklmnop");
    assert_eq!(
        again.body["job_request"]["jobs"].as_array().unwrap().len(),
        2
    );
    // The same id for something else is a conflict.
    let other = app
        .create(
            json!({"id": "abcdefghijklmnop", "workspace": "ws", "backend": "test",
                       "actions": ["other"]}),
        )
        .await;
    assert_eq!(other.status, 409);
    // Concurrent retries of one id create it once.
    let body = json!({"id": "zyxwvutsrqponmlk", "workspace": "ws2", "backend": "test",
                      "actions": ["run_all"]});
    let answers = futures_util::future::join_all((0..8).map(|_| app.create(body.clone()))).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    let replayed = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!((created, replayed), (1, 7), "{answers:#?}");
    let jobs = app
        .get(
            "/api/v1/jobs",
            "/api/v1/jobs?workspace=ws2",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(jobs.body["jobs"].as_array().unwrap().len(), 4);
    app.stop().await;
}

async fn bad_input_is_refused_and_changes_nothing(db: Db) {
    let app = TestApp::start(db).await;
    // A workspace whose branch does not exist, and one on a branch with an
    // invalid project.yaml.
    let sha_other_branch = {
        app.repo.checkout_new("broken");
        let sha = app.repo.commit(
            "project.yaml",
            "version: '4.0'\nactions:\n  a:\n    run: python:latest python a.py\n    outputs:\n      moderately_sensitive:\n        t: output/t.xyz\n",
            "broken",
        );
        app.repo.checkout("main");
        sha
    };
    for (name, branch) in [("nobranch", "gone"), ("broken", "broken")] {
        app.store
            .create_workspace(&NewWorkspace {
                name: name.into(),
                repo_url: app.repo.url(),
                branch: branch.into(),
                project_id: Some(1),
            })
            .await
            .unwrap();
    }
    let url = format!("{}/api/v1/job-requests", app.url);
    // Malformed JSON (sent raw).
    let resp = app
        .client
        .post(&url)
        .bearer_auth(&app.tokens.dev)
        .header("content-type", "application/json")
        .body("{\"workspace\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_json");
    app.spec
        .check_response("POST", "/api/v1/job-requests", 400, &body)
        .unwrap();

    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"workspace": "ws", "backend": "test"}),
            400,
            "invalid_json",
            "missing field `actions`",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": ["a"], "colour": 1}),
            400,
            "invalid_json",
            "unknown field `colour`",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": []}),
            400,
            "invalid_actions",
            "At least one action must be supplied",
        ),
        (
            json!({"workspace": "", "backend": "test", "actions": ["a"]}),
            400,
            "bad_request",
            "Workspace name cannot be blank",
        ),
        (
            json!({"workspace": "w s", "backend": "test", "actions": ["a"]}),
            400,
            "bad_request",
            "Invalid workspace name (allowed are alphanumeric, dash and underscore)",
        ),
        (
            json!({"workspace": "nope", "backend": "test", "actions": ["a"]}),
            404,
            "not_found",
            "Workspace 'nope' not found",
        ),
        (
            json!({"workspace": "ws", "backend": "nope", "actions": ["a"]}),
            404,
            "not_found",
            "Backend 'nope' not found",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": ["nope"]}),
            400,
            "invalid_actions",
            "Action 'nope' not found in project.yaml",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": ["other"], "id": "BAD"}),
            400,
            "bad_request",
            "Invalid job request id \"BAD\": expected 16 characters of [a-z0-9]",
        ),
        (
            json!({"workspace": "nobranch", "backend": "test", "actions": ["other"]}),
            400,
            "git",
            "Could not find branch 'gone'",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": ["other"], "commit": sha_other_branch}),
            400,
            "git",
            "",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": ["other"], "commit": "deadbeefdeadbeef"}),
            400,
            "git",
            "Could not find commit on branch 'main': deadbeefdeadbeef",
        ),
        (
            json!({"workspace": "ws", "backend": "test", "actions": ["other"], "commit": "not-a-sha"}),
            400,
            "bad_request",
            "Invalid commit \"not-a-sha\": expected a hexadecimal commit sha",
        ),
        (
            json!({"workspace": "broken", "backend": "test", "actions": ["a"]}),
            400,
            "invalid_project_yaml",
            "",
        ),
    ];
    for (body, status, code, message) in cases {
        let a = app.create(body.clone()).await;
        assert_eq!(a.status, status, "{body}: {:#}", a.body);
        assert_eq!(a.body["error"], code, "{body}: {:#}", a.body);
        if !message.is_empty() {
            assert!(
                a.body["message"].as_str().unwrap().contains(message),
                "{body}: {:#}",
                a.body
            );
        }
    }
    let a = app
        .create(json!({"workspace": "ws", "backend": "test", "actions": ["other"], "commit": sha_other_branch}))
        .await;
    assert_eq!(
        a.body["message"],
        format!("Could not find commit on branch 'main': {sha_other_branch}")
    );
    // warden's first error, with line and column.
    let a = app
        .create(json!({"workspace": "broken", "backend": "test", "actions": ["a"]}))
        .await;
    let expected = warden_pipeline::check(
        "version: '4.0'\nactions:\n  a:\n    run: python:latest python a.py\n    outputs:\n      moderately_sensitive:\n        t: output/t.xyz\n",
    );
    let first = expected.first_error().unwrap();
    assert_eq!(a.body["message"], first.message.as_str());
    assert_eq!(a.body["line"], first.line);
    assert_eq!(a.body["column"], first.column);
    // The unknown action lists the valid ones.
    let a = app
        .create(json!({"workspace": "ws", "backend": "test", "actions": ["nope"]}))
        .await;
    assert_eq!(
        a.body["valid_actions"],
        json!(["extract", "model", "report", "other"])
    );
    // Nothing was stored.
    let list = app
        .get(
            "/api/v1/job-requests",
            "/api/v1/job-requests",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(list.body["job_requests"], json!([]));
    let jobs = app
        .get("/api/v1/jobs", "/api/v1/jobs", &app.tokens.dev)
        .await;
    assert_eq!(jobs.body["jobs"], json!([]));
    // Unknown routes and methods get JSON errors too.
    let a = app
        .client
        .get(format!("{}/api/v1/nothing-here", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 404);
    assert_eq!(a.json::<Value>().await.unwrap()["error"], "no_route");
    let a = app
        .client
        .delete(format!("{}/api/v1/job-requests", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 405);
    app.stop().await;
}

async fn cancel_requests_and_jobs(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["run_all"]).await;
    let id = r["id"].as_str().unwrap();
    app.wait_code(id, "other", "initiated").await;
    let cancel = "/api/v1/job-requests/{id}/cancel";
    let path = format!("/api/v1/job-requests/{id}/cancel");
    // Not allowed for an outsider; an unknown action is refused whole.
    let a = app
        .post(cancel, &path, &app.tokens.outsider, json!({}))
        .await;
    assert_eq!(a.status, 403);
    let a = app
        .post(
            cancel,
            &path,
            &app.tokens.dev,
            json!({"actions": ["report", "nope"]}),
        )
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.body["message"],
        "Jobs matching requested cancelled actions could not be found: nope"
    );
    // Cancel one pending action.
    let a = app
        .post(
            cancel,
            &path,
            &app.tokens.dev,
            json!({"actions": ["report"]}),
        )
        .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    assert_eq!(a.body["cancelled"], json!([job_id(id, "report")]));
    let report = app.wait_code(id, "report", "cancelled_by_user").await;
    assert_eq!(report["status_message"], "Cancelled by user");
    assert_eq!(report["state"], "failed");
    assert_eq!(report["cancelled"], true);
    // Cancel one running job by id: its agent gets a CANCELJOB task.
    let other = job_id(id, "other");
    let a = app
        .post(
            "/api/v1/jobs/{id}/cancel",
            &format!("/api/v1/jobs/{other}/cancel"),
            &app.tokens.dev,
            json!({}),
        )
        .await;
    assert_eq!(a.body["cancelled"], json!([other]));
    app.wait_code(id, "other", "cancelled_by_user").await;
    let cancel_task = app.wait_task(&other, "canceljob").await;
    assert_eq!(cancel_task["id"], format!("{other}-001-cancel"));
    assert!(
        !app.pull()
            .await
            .iter()
            .any(|t| t["id"] == format!("{other}-001"))
    );
    // Cancelling a finished job changes nothing.
    let a = app
        .post(
            "/api/v1/jobs/{id}/cancel",
            &format!("/api/v1/jobs/{other}/cancel"),
            &app.tokens.dev,
            json!({}),
        )
        .await;
    assert_eq!(a.body["already_finished"], json!([other]));
    // Cancel the whole request (no body): everything left ends cancelled.
    let resp = app
        .client
        .post(format!("{}{path}", app.url))
        .bearer_auth(&app.tokens.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = app
        .wait_request(id, "all jobs to finish", |r| r["is_completed"] == true)
        .await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["status_message"], "Failed due to job failure");
    for j in r["jobs"].as_array().unwrap() {
        assert_eq!(j["status_code"], "cancelled_by_user", "{j:#}");
    }
    // Cancelled jobs are not history: the actions can run again.
    let again = app.request("ws", &["other"]).await;
    assert_eq!(again["jobs"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn pause_and_unpause(db: Db) {
    let app = TestApp::start(db).await;
    let pause = app
        .post(
            "/api/v1/backends/{slug}/pause",
            "/api/v1/backends/test/pause",
            &app.tokens.admin,
            json!({}),
        )
        .await;
    assert_eq!(pause.status, 200);
    assert_eq!(pause.body["paused"]["status"], "on");
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap();
    let other = app.wait_code(id, "other", "paused").await;
    assert_eq!(
        other["status_message"],
        "Backend is currently paused for maintenance, job will start once this is completed"
    );
    assert!(app.pull().await.is_empty());
    let unpause = app
        .post(
            "/api/v1/backends/{slug}/unpause",
            "/api/v1/backends/test/unpause",
            &app.tokens.admin,
            json!({}),
        )
        .await;
    assert_eq!(unpause.body["paused"]["status"], "off");
    app.wait_code(id, "other", "initiated").await;
    assert_eq!(app.pull().await.len(), 1);
    let a = app
        .post(
            "/api/v1/backends/{slug}/pause",
            "/api/v1/backends/nowhere/pause",
            &app.tokens.admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 404);
    app.stop().await;
}

async fn worker_slots_and_database_pool(db: Db) {
    // Two worker slots, one database slot.
    let app = TestApp::start(db).await;
    let mut ids = Vec::new();
    for ws in ["ws", "ws2", "ws3"] {
        ids.push(
            app.request(ws, &["run_all"]).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let jobs = app
            .get("/api/v1/jobs", "/api/v1/jobs", &app.tokens.dev)
            .await;
        let jobs = jobs.body["jobs"].as_array().unwrap().clone();
        let running = |db: bool| {
            jobs.iter()
                .filter(|j| j["state"] == "running" && j["requires_db"] == db)
                .count()
        };
        let code = |c: &str| jobs.iter().filter(|j| j["status_code"] == c).count();
        if code("waiting_on_workers") == 1 && code("waiting_on_db_workers") == 2 {
            assert_eq!(running(true), 1);
            assert_eq!(running(false), 2);
            let w = jobs
                .iter()
                .find(|j| j["status_code"] == "waiting_on_db_workers")
                .unwrap();
            assert_eq!(w["status_message"], "Waiting on available database workers");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Fair share: the two non-database slots went to two different workspaces.
    let jobs = app
        .get(
            "/api/v1/jobs",
            "/api/v1/jobs?state=running",
            &app.tokens.dev,
        )
        .await;
    let mut spaces: Vec<&str> = jobs.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["requires_db"] == false)
        .map(|j| j["workspace"].as_str().unwrap())
        .collect();
    spaces.dedup();
    assert_eq!(spaces.len(), 2, "{:#}", jobs.body);
    app.stop().await;
}

async fn task_api_rules(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap();
    let job = job_id(id, "other");
    let task = app.wait_task(&job, "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task_id, format!("{job}-001"));
    let def = &task["definition"];
    assert_eq!(def["task_id"], task_id.as_str());
    assert_eq!(def["image"], "ghcr.io/opensafely-core/python:latest");
    assert_eq!(def["args"], json!(["python", "analysis/other.py"]));
    assert_eq!(
        def["output_spec"],
        json!({"output/other.csv": "moderately_sensitive"})
    );
    assert_eq!(def["commit"], r["commit"]);
    assert_eq!(def["allow_database_access"], false);
    // The agent was seen.
    let backends = app
        .get("/api/v1/backends", "/api/v1/backends", &app.tokens.dev)
        .await;
    assert!(backends.body["backends"][1]["last_seen"].is_string());

    // Another backend's agent cannot see or touch it.
    let other_tasks = app
        .get(
            "/api/v1/backends/{slug}/tasks",
            "/api/v1/backends/other/tasks",
            &app.tokens.other_agent,
        )
        .await;
    assert_eq!(other_tasks.body["tasks"], json!([]));
    let a = app
        .post(
            "/api/v1/backends/{slug}/tasks/{id}",
            &format!("/api/v1/backends/other/tasks/{task_id}"),
            &app.tokens.other_agent,
            json!({"stage": "preparing", "timestamp_ns": 1}),
        )
        .await;
    assert_eq!(a.status, 404);
    let a = app
        .post(
            "/api/v1/backends/{slug}/tasks/{id}",
            &format!("/api/v1/backends/test/tasks/{task_id}"),
            &app.tokens.other_agent,
            json!({"stage": "preparing", "timestamp_ns": 1}),
        )
        .await;
    assert_eq!(a.status, 403);

    // File names are refused, and nothing is recorded.
    let ts = crate::common::now_ns();
    for results in [
        json!({"exit_code": 0, "outputs": {"output/other.csv": "moderately_sensitive"}}),
        json!({"exit_code": 0, "unmatched_patterns": ["output/*.csv"]}),
        json!({"exit_code": 0, "level4_excluded_files": {"output/x.csv": "too big"}}),
    ] {
        let a = app
            .report(
                &task_id,
                json!({"stage": "finalized", "complete": true, "timestamp_ns": ts, "results": results}),
            )
            .await;
        assert_eq!(a.status, 400, "{:#}", a.body);
        assert!(
            a.body["message"]
                .as_str()
                .unwrap()
                .contains("unknown field")
        );
    }
    let a = app
        .report(
            &task_id,
            json!({"stage": "finalized", "complete": true, "timestamp_ns": ts}),
        )
        .await;
    assert_eq!(a.status, 400);
    let a = app
        .report(&task_id, json!({"stage": "dancing", "timestamp_ns": ts}))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(app.job(id, "other").await["status_code"], "initiated");

    // Stages move the job; an older update is stale; a repeat is harmless.
    let a = app
        .report(&task_id, json!({"stage": "executing", "timestamp_ns": ts}))
        .await;
    assert_eq!(a.body["outcome"], "applied");
    app.wait_code(id, "other", "executing").await;
    let a = app
        .report(
            &task_id,
            json!({"stage": "preparing", "timestamp_ns": ts - 1000}),
        )
        .await;
    assert_eq!(a.body["outcome"], "stale");
    let done = json!({"stage": "finalized", "complete": true, "timestamp_ns": ts + 1000,
                      "results": {"exit_code": 0, "has_unmatched_patterns": true,
                                  "status_message": "No outputs found matching output/x.csv"}});
    let a = app.report(&task_id, done.clone()).await;
    assert_eq!(a.body["outcome"], "applied");
    let a = app.report(&task_id, done).await;
    assert_eq!(a.body["outcome"], "inactive");
    let job = app.wait_code(id, "other", "unmatched_patterns").await;
    assert_eq!(
        job["status_message"],
        "Outputs matching expected patterns were not found. See job log for details."
    );
    // The message that named a file was dropped before storing.
    let stored = app.store.get_task(&task_id).await.unwrap().unwrap();
    assert_eq!(stored.agent_results.unwrap()["status_message"], Value::Null);
    assert!(app.pull().await.is_empty());
    app.stop().await;
}

async fn events_stream_follows_a_request(db: Db) {
    use futures_util::StreamExt;
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let resp = app
        .client
        .get(format!("{}/api/v1/job-requests/{id}/events", app.url))
        .bearer_auth(&app.tokens.dev)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let reader = tokio::spawn(async move {
        let mut events: Vec<(String, Value)> = Vec::new();
        let mut buf = String::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if !name.is_empty() {
                    events.push((name, serde_json::from_str(&data).unwrap()));
                }
            }
        }
        events
    });
    let job = job_id(&id, "other");
    let task = app.wait_task(&job, "runjob").await;
    app.run_task(task["id"].as_str().unwrap(), 0).await;
    let events = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .expect("the stream ends when the request completes")
        .unwrap();
    assert_eq!(events[0].0, "snapshot");
    let spec = &app.spec;
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    for (name, data) in &events {
        let s = match name.as_str() {
            "snapshot" | "status" => schema("JobRequestView"),
            "job" => schema("JobView"),
            other => panic!("unexpected event {other}"),
        };
        spec.validate(&s, data, "$").unwrap();
    }
    let codes: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "job")
        .map(|(_, j)| j["status_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.last(), Some(&"succeeded"), "{codes:?}");
    assert!(codes.contains(&"initiated") || events[0].1["jobs"][0]["status_code"] == "initiated");
    let last = events.last().unwrap();
    assert_eq!(last.0, "status");
    assert_eq!(last.1["status"], "succeeded");
    // A completed request's stream is just its snapshot.
    let resp = app
        .client
        .get(format!("{}/api/v1/job-requests/{id}/events", app.url))
        .bearer_auth(&app.tokens.dev)
        .send()
        .await
        .unwrap();
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("event: snapshot"), "{text}");
    assert_eq!(text.matches("event:").count(), 1);
    let resp = app
        .client
        .get(format!("{}/api/v1/job-requests/nope/events", app.url))
        .bearer_auth(&app.tokens.dev)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

async fn credentials_in_urls_are_never_shown(db: Db) {
    let app = TestApp::start(db).await;
    // Nothing listens on port 9 of 127.0.0.1: the fetch fails at once.
    app.store
        .create_workspace(&NewWorkspace {
            name: "private".into(),
            repo_url: "https://someone:s3cr3t-t0ken@127.0.0.1:9/org/study.git".into(),
            branch: "main".into(),
            project_id: Some(1),
        })
        .await
        .unwrap();
    let a = app
        .create(json!({"workspace": "private", "backend": "test", "actions": ["other"]}))
        .await;
    assert_eq!(a.status, 502, "{:#}", a.body);
    assert_eq!(a.body["error"], "git");
    let text = a.body.to_string();
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("127.0.0.1:9/org/study.git"), "{text}");
    let ws = app
        .get(
            "/api/v1/workspaces/{name}",
            "/api/v1/workspaces/private",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(ws.body["repo_url"], "https://***@127.0.0.1:9/org/study.git");
    // Nothing was stored, and the audit log has only what happened.
    let list = app
        .get(
            "/api/v1/job-requests",
            "/api/v1/job-requests",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(list.body["job_requests"], json!([]));
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap();
    app.post(
        "/api/v1/job-requests/{id}/cancel",
        &format!("/api/v1/job-requests/{id}/cancel"),
        &app.tokens.dev,
        json!({}),
    )
    .await;
    app.post(
        "/api/v1/backends/{slug}/pause",
        "/api/v1/backends/test/pause",
        &app.tokens.admin,
        json!({}),
    )
    .await;
    let log = app
        .store
        .list_audit(&warden_state::AuditFilter::default())
        .await
        .unwrap();
    let actions: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target_id.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("admin", "backend.pause", "test"),
            ("dev", "job_request.cancel", id),
            ("dev", "job_request.create", id),
        ]
    );
    app.stop().await;
}
