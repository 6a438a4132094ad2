//! Text from requests (ids and names in paths and bodies, agents' messages)
//! reaches error messages and job statuses escaped: no control,
//! bidirectional or invisible character arrives raw.

use serde_json::{Value, json};
use warden_pipeline::escape::needs_escape;
use warden_state::job_id;

use crate::common::{Db, TestApp};
use crate::db_tests;

db_tests!(hostile_text_is_escaped_in_answers);

fn hostile() -> Vec<String> {
    let mut out = Vec::new();
    for c in [
        '\n',
        '\r',
        '\t',
        '\0',
        '\x07',
        '\x1b',
        '\x7f',
        '\u{85}',
        '\u{9b}',
        '\u{200b}',
        '\u{202e}',
        '\u{2066}',
        '\u{2028}',
        '\u{feff}',
        '\u{e0041}',
    ] {
        out.push(format!("x{c}y"));
        out.push(format!("{c}"));
    }
    out.push("\x1b[2J\x1b[31mforged\nINFO ok".to_owned());
    out
}

fn raw(text: &str) -> bool {
    text.chars().any(|c| c != '\\' && needs_escape(c))
}

fn pct(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn hostile_text_is_escaped_in_answers(db: Db) {
    use reqwest::Method;
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let task = app.wait_task(&job_id(&id, "other"), "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let t = app.tokens.clone();
    for h in hostile() {
        let p = pct(&h);
        let checks = [
            (
                Method::GET,
                format!("/api/v1/job-requests/{p}"),
                &t.dev,
                None,
                404,
            ),
            (
                Method::GET,
                format!("/api/v1/job-requests/{p}/events"),
                &t.dev,
                None,
                404,
            ),
            (
                Method::POST,
                format!("/api/v1/job-requests/{p}/cancel"),
                &t.dev,
                None,
                404,
            ),
            (Method::GET, format!("/api/v1/jobs/{p}"), &t.dev, None, 404),
            (
                Method::POST,
                format!("/api/v1/jobs/{p}/cancel"),
                &t.dev,
                None,
                404,
            ),
            (
                Method::GET,
                format!("/api/v1/workspaces/{p}"),
                &t.dev,
                None,
                404,
            ),
            (
                Method::POST,
                format!("/api/v1/backends/{p}/pause"),
                &t.admin,
                None,
                404,
            ),
            (
                Method::GET,
                format!("/api/v1/backends/{p}/tasks"),
                &t.agent,
                None,
                404,
            ),
            (
                Method::POST,
                format!("/api/v1/backends/test/tasks/{p}"),
                &t.agent,
                Some(json!({"stage": "executing", "timestamp_ns": 1})),
                404,
            ),
            (
                Method::POST,
                "/api/v1/job-requests".to_owned(),
                &t.dev,
                Some(json!({"workspace": "ws", "backend": h, "actions": ["other"]})),
                404,
            ),
            (
                Method::POST,
                "/api/v1/job-requests".to_owned(),
                &t.dev,
                Some(
                    json!({"workspace": "ws", "backend": "test", "actions": [format!("other{h}")]}),
                ),
                400,
            ),
            (
                Method::POST,
                format!("/api/v1/job-requests/{id}/cancel"),
                &t.dev,
                Some(json!({"actions": [h]})),
                404,
            ),
        ];
        for (method, path, token, body, status) in checks {
            let (got, answer) = send(&app, method.clone(), &path, token, body).await;
            // A NUL can be neither stored nor looked up: bad input on both
            // databases (PostgreSQL cannot hold one).
            let looked_up = !path.ends_with("/cancel") || path.contains(&p);
            let status = if h.contains('\0') && status == 404 && looked_up {
                400
            } else {
                status
            };
            assert_eq!(got, status, "{method} {path:?}: {answer:#}");
            let message = answer["message"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"));
            assert!(!raw(message), "{method} {path:?}: raw text in {message:?}");
        }
    }
    // An agent's message becomes the job's status, escaped.
    let a = app
        .report(
            &task_id,
            json!({"stage": "finalized", "complete": true, "timestamp_ns": crate::common::now_ns(),
                   "results": {"exit_code": 1, "status_message": "\x1b[2Jbad\nINFO forged \u{202e}"}}),
        )
        .await;
    assert_eq!(a.body["outcome"], "applied");
    let job = app.wait_code(&id, "other", "nonzero_exit").await;
    let message = job["status_message"].as_str().unwrap();
    assert_eq!(
        message,
        "Job exited with an error: \\x1b[2Jbad\\nINFO forged \\u{202e}"
    );
    app.stop().await;
}
