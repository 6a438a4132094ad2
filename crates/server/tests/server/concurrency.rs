use std::collections::HashMap;

use serde_json::json;

use crate::common::{Db, TestApp};
use crate::db_tests;

db_tests!(fifty_concurrent_creates_never_duplicate_a_job);

async fn fifty_concurrent_creates_never_duplicate_a_job(db: Db) {
    let app = TestApp::start(db).await;
    let choices: [&[&str]; 5] = [
        &["run_all"],
        &["report"],
        &["model", "other"],
        &["other"],
        &["extract"],
    ];
    let answers = futures_util::future::join_all((0..50).map(|i| {
        let actions = choices[i % choices.len()];
        app.create(json!({"workspace": "ws", "backend": "test", "actions": actions}))
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, 201, "{:#}", a.body);
        assert!(a.body["result"] == "created" || a.body["result"] == "nothing_to_do");
    }
    let created: usize = answers
        .iter()
        .map(|a| a.body["count"].as_u64().unwrap() as usize)
        .sum();
    let jobs = app
        .get("/api/v1/jobs", "/api/v1/jobs?workspace=ws", &app.tokens.dev)
        .await;
    let jobs = jobs.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), created);
    // Nothing ran yet, so every job is still active: one per action at most.
    let mut per_action: HashMap<&str, usize> = HashMap::new();
    for j in &jobs {
        assert!(j["state"] == "pending" || j["state"] == "running", "{j:#}");
        *per_action.entry(j["action"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(per_action.len(), 4, "{per_action:?}");
    assert!(per_action.values().all(|n| *n == 1), "{per_action:?}");
    let requests = app
        .get(
            "/api/v1/job-requests",
            "/api/v1/job-requests?limit=100",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(requests.body["job_requests"].as_array().unwrap().len(), 50);
    app.stop().await;
}
