use serde_json::json;
use warden_state::job_id;

use crate::common::{Db, TestApp, now_ns};
use crate::db_tests;

db_tests!(
    agent_drives_jobs_and_dependants_start,
    a_failure_cascades_down_the_chain,
    cancelling_a_running_job_hands_the_agent_a_canceljob,
    executor_errors_are_retried_then_fail,
    agent_clocks_cannot_freeze_jobs,
);

fn parse(t: &serde_json::Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        t.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

async fn agent_drives_jobs_and_dependants_start(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["report"]).await;
    let id = r["id"].as_str().unwrap();
    let (extract, model, report) = (
        job_id(id, "extract"),
        job_id(id, "model"),
        job_id(id, "report"),
    );

    // extract runs through every stage; the job follows.
    let task = app.wait_task(&extract, "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["definition"]["allow_database_access"], true);
    assert_eq!(task["definition"]["database_name"], "default");
    assert_eq!(
        app.job(id, "model").await["status_code"],
        "waiting_on_dependencies"
    );
    let mut ts = now_ns();
    for stage in [
        "preparing",
        "prepared",
        "executing",
        "executed",
        "finalizing",
    ] {
        ts += 1_000_000_000;
        let a = app
            .report(&task_id, json!({"stage": stage, "timestamp_ns": ts}))
            .await;
        assert_eq!(a.body["outcome"], "applied");
        let job = app.wait_code(id, "extract", stage).await;
        assert_eq!(job["state"], "running");
        assert_eq!(job["status_message"], "Job executing on the backend");
    }
    ts += 1_000_000_000;
    app.report(
        &task_id,
        json!({"stage": "finalized", "complete": true, "timestamp_ns": ts,
               "results": {"exit_code": 0, "output_count": 1, "image_id": "sha256:abc",
                           "job_metrics": {"cpu_peak": 99.5}}}),
    )
    .await;
    let done = app.wait_code(id, "extract", "succeeded").await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["status_message"], "Completed successfully");
    // The agent's clock sets the times: started at `initiated` (the
    // controller's clock), completed at the agent's final timestamp.
    let started = parse(&done["started_at"]);
    let completed = parse(&done["completed_at"]);
    assert!(started <= completed);
    assert_eq!(completed.unix_timestamp_nanos() as i64, ts);
    assert!(done["runtime_seconds"].as_u64().unwrap() >= 5);

    // The dependant starts at once, and its definition points at extract's job.
    let task = app.wait_task(&model, "runjob").await;
    assert_eq!(
        task["definition"]["input_job_ids"],
        json!({"extract": extract})
    );
    app.run_task(task["id"].as_str().unwrap(), 0).await;
    app.wait_code(id, "model", "succeeded").await;
    let task = app.wait_task(&report, "runjob").await;
    app.run_task(task["id"].as_str().unwrap(), 0).await;
    let r = app
        .wait_request(id, "the request to succeed", |r| r["status"] == "succeeded")
        .await;
    assert_eq!(r["is_completed"], true);
    assert_eq!(r["counts"]["succeeded"], 3);
    // Runtime is the sum of the jobs' runtimes.
    let sum: u64 = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["runtime_seconds"].as_u64().unwrap())
        .sum();
    assert_eq!(r["runtime_seconds"], sum);
    let first_start = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| parse(&j["started_at"]))
        .min()
        .unwrap();
    assert_eq!(parse(&r["started_at"]), first_start);
    let last_end = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| parse(&j["completed_at"]))
        .max()
        .unwrap();
    assert_eq!(parse(&r["completed_at"]), last_end);
    // Timestamps never go backwards.
    for j in r["jobs"].as_array().unwrap() {
        let created = parse(&j["created_at"]);
        let started = parse(&j["started_at"]);
        let completed = parse(&j["completed_at"]);
        let updated = parse(&j["updated_at"]);
        assert!(
            created <= started && started <= completed && completed <= updated,
            "{j:#}"
        );
    }
    assert!(app.pull().await.is_empty());

    // Re-requesting a succeeded dependency's dependant reuses it.
    let again = app.request("ws", &["report"]).await;
    assert_eq!(again["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(again["jobs"][0]["wait_for_job_ids"], json!([]));
    app.stop().await;
}

async fn a_failure_cascades_down_the_chain(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["run_all"]).await;
    let id = r["id"].as_str().unwrap();
    let extract = app.wait_task(&job_id(id, "extract"), "runjob").await;
    app.run_task(extract["id"].as_str().unwrap(), 0).await;
    let model = app.wait_task(&job_id(id, "model"), "runjob").await;
    app.run_task(model["id"].as_str().unwrap(), 3).await;
    let failed = app.wait_code(id, "model", "nonzero_exit").await;
    assert_eq!(failed["status_message"], "Job exited with an error");
    assert_eq!(failed["state"], "failed");
    let report = app.wait_code(id, "report", "dependency_failed").await;
    assert_eq!(
        report["status_message"],
        "Not starting as dependency failed"
    );
    assert_eq!(report["state"], "failed");
    assert_eq!(report["started_at"], serde_json::Value::Null);
    // `other` is independent and still runs.
    let other = app.wait_task(&job_id(id, "other"), "runjob").await;
    app.run_task(other["id"].as_str().unwrap(), 0).await;
    let r = app
        .wait_request(id, "the request to finish", |r| r["is_completed"] == true)
        .await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["status_message"], "Failed due to job failure");
    assert_eq!(r["counts"]["failed"], 2);
    assert_eq!(r["counts"]["succeeded"], 2);

    // A deeper chain fails all the way down, across requests: model failed,
    // so a new request for report re-runs model; failing extract now fails
    // model and report of the new request.
    let r2 = app
        .create(
            json!({"workspace": "ws", "backend": "test", "actions": ["report"],
                       "force_run_dependencies": true}),
        )
        .await;
    assert_eq!(r2.body["count"], 3);
    let id2 = r2.body["job_request"]["id"].as_str().unwrap().to_owned();
    let extract = app.wait_task(&job_id(&id2, "extract"), "runjob").await;
    app.run_task(extract["id"].as_str().unwrap(), 1).await;
    app.wait_code(&id2, "model", "dependency_failed").await;
    app.wait_code(&id2, "report", "dependency_failed").await;
    app.stop().await;
}

async fn cancelling_a_running_job_hands_the_agent_a_canceljob(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["model"]).await;
    let id = r["id"].as_str().unwrap();
    let extract = job_id(id, "extract");
    let task = app.wait_task(&extract, "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    app.report(
        &task_id,
        json!({"stage": "executing", "timestamp_ns": now_ns()}),
    )
    .await;
    app.wait_code(id, "extract", "executing").await;
    let a = app
        .post(
            "/api/v1/job-requests/{id}/cancel",
            &format!("/api/v1/job-requests/{id}/cancel"),
            &app.tokens.dev,
            json!({}),
        )
        .await;
    assert_eq!(a.body["cancelled"].as_array().unwrap().len(), 2);
    let job = app.wait_code(id, "extract", "cancelled_by_user").await;
    assert_eq!(job["state"], "failed");
    assert!(job["completed_at"].is_string());
    app.wait_code(id, "model", "cancelled_by_user").await;
    // The RUNJOB task is gone; a CANCELJOB replaces it.
    let tasks = app.pull().await;
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0]["type"], "canceljob");
    assert_eq!(tasks[0]["id"], format!("{task_id}-cancel"));
    assert_eq!(
        tasks[0]["definition"]["task_id"],
        format!("{task_id}-cancel")
    );
    // Late reports on the cancelled RUNJOB change nothing.
    let a = app
        .report(
            &task_id,
            json!({"stage": "executed", "timestamp_ns": now_ns()}),
        )
        .await;
    assert_eq!(a.body["outcome"], "inactive");
    // The agent finishes the CANCELJOB (results optional).
    let a = app
        .report(
            &format!("{task_id}-cancel"),
            json!({"stage": "finalized", "complete": true, "timestamp_ns": now_ns()}),
        )
        .await;
    assert_eq!(a.body["outcome"], "applied");
    assert!(app.pull().await.is_empty());
    assert_eq!(
        app.job(id, "extract").await["status_code"],
        "cancelled_by_user"
    );
    app.stop().await;
}

async fn executor_errors_are_retried_then_fail(db: Db) {
    let app = TestApp::start_with(db, |c| c.max_task_attempts = 2).await;
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap();
    let job = job_id(id, "other");
    let error = json!({"stage": "error", "complete": true, "timestamp_ns": now_ns(),
                       "results": {"has_error": true}});
    let first = app.wait_task(&job, "runjob").await;
    assert_eq!(first["id"], format!("{job}-001"));
    app.report(first["id"].as_str().unwrap(), error.clone())
        .await;
    // Retried under a new task.
    let second = app.wait_task_id(&format!("{job}-002")).await;
    assert_eq!(second["id"], format!("{job}-002"));
    assert_eq!(second["definition"]["task_id"], format!("{job}-002"));
    app.report(second["id"].as_str().unwrap(), error).await;
    let failed = app.wait_code(id, "other", "job_error").await;
    assert_eq!(
        failed["status_message"],
        "This job returned an error on each of its 2 attempts; it will not be retried."
    );
    // A fatal error fails at once.
    let r = app.request("ws2", &["other"]).await;
    let id = r["id"].as_str().unwrap();
    let task = app.wait_task(&job_id(id, "other"), "runjob").await;
    app.report(
        task["id"].as_str().unwrap(),
        json!({"stage": "error", "complete": true, "timestamp_ns": now_ns(),
               "results": {"has_error": true, "fatal": true}}),
    )
    .await;
    let failed = app.wait_code(id, "other", "job_error").await;
    assert_eq!(failed["status_message"], "This job returned a fatal error.");
    app.stop().await;
}

/// Whatever an agent's clock says (far future, `i64::MAX`, zero, far past,
/// random, repeated, out of order), through the real task API: the job
/// moves with the reports, its final report always lands once, and its
/// times stay within the skew bound of the server's clock. Negative clocks
/// are a 400 that changes nothing.
async fn agent_clocks_cannot_freeze_jobs(db: Db) {
    use rand::{Rng, SeedableRng};
    const YEAR: i64 = 365 * 24 * 3600 * 1_000_000_000;
    let skew = warden_state::MAX_AGENT_CLOCK_SKEW.as_nanos() as i64;
    let app = TestApp::start(db).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let now = now_ns();
    let mut clocks = vec![
        i64::MAX,
        now + 30 * YEAR,
        now + YEAR,
        now + 2 * skew,
        0,
        1,
        now - YEAR,
        now,
    ];
    for _ in 0..4 {
        clocks.push(rng.random_range(0..=i64::MAX));
    }
    for (i, &poison) in clocks.iter().enumerate() {
        let before = now_ns();
        let r = app.request("ws", &["other"]).await;
        let id = r["id"].as_str().unwrap();
        let task = app.wait_task(&job_id(id, "other"), "runjob").await;
        let task_id = task["id"].as_str().unwrap().to_owned();
        // The poisoned report, twice, then honest ones and a random one.
        let mut reports = vec![
            ("executing", poison),
            ("executing", poison),
            ("executed", now_ns()),
            ("finalizing", clocks[rng.random_range(0..clocks.len())]),
        ];
        if i % 2 == 1 {
            reports.swap(0, 2);
        }
        for (stage, ts) in &reports {
            let a = app
                .report(&task_id, json!({"stage": stage, "timestamp_ns": ts}))
                .await;
            assert_eq!(a.status, 200, "{stage} at {ts}: {:#}", a.body);
            assert!(
                a.body["outcome"] == "applied" || a.body["outcome"] == "stale",
                "{:#}",
                a.body
            );
        }
        let final_clock = clocks[rng.random_range(0..clocks.len())];
        let done = json!({"stage": "finalized", "complete": true, "timestamp_ns": final_clock,
                          "results": {"exit_code": 0, "output_count": 1}});
        let a = app.report(&task_id, done.clone()).await;
        assert_eq!(
            a.body["outcome"], "applied",
            "clock {poison}, then {reports:?}, final {final_clock}"
        );
        let a = app.report(&task_id, done).await;
        assert_eq!(a.body["outcome"], "inactive");
        let job = app.wait_code(id, "other", "succeeded").await;
        let after = now_ns();
        for field in ["started_at", "completed_at", "updated_at"] {
            let t = parse(&job[field]).unix_timestamp_nanos() as i64;
            assert!(
                t >= before - skew && t <= after + skew,
                "{field} {t} outside [{before}, {after}] ± {skew} (clock {poison}): {job:#}"
            );
        }
    }

    // Negative clocks: 400, named, nothing recorded.
    let r = app.request("ws2", &["other"]).await;
    let id = r["id"].as_str().unwrap();
    let task = app.wait_task(&job_id(id, "other"), "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    for ts in [-1, -now, i64::MIN] {
        for complete in [false, true] {
            let a = app
                .report(
                    &task_id,
                    json!({"stage": "finalized", "complete": complete, "timestamp_ns": ts,
                           "results": {"exit_code": 0}}),
                )
                .await;
            assert_eq!(a.status, 400, "{:#}", a.body);
            let message = a.body["message"].as_str().unwrap();
            assert!(message.contains("timestamp_ns is negative"), "{message}");
        }
    }
    assert_eq!(app.job(id, "other").await["status_code"], "initiated");
    let stored = app.store.get_task(&task_id).await.unwrap().unwrap();
    assert!(stored.active && stored.agent_stage.is_none());
    app.stop().await;
}
