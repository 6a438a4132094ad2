//! Size limits: request bodies (every route), and `project.yaml` read from
//! a repository.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_server::app::MAX_REQUEST_BODY_BYTES;

use crate::common::{Db, TestApp};
use crate::db_tests;

db_tests!(
    oversized_bodies_get_413_on_every_route,
    streamed_oversized_bodies_get_413,
    oversized_project_yaml_is_refused_unread,
);

/// Sends `method path` with `Content-Length: length` and no body over a raw
/// connection (the server must answer without waiting for the body);
/// returns the status and the JSON body.
async fn declare(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    length: u64,
) -> (u16, Value) {
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("the server answered without reading the body")
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: body not JSON ({e}): {text}"));
    (status, body)
}

fn assert_too_large(what: &str, status: u16, body: &Value) {
    assert_eq!(status, 413, "{what}: {body:#}");
    assert_eq!(body["error"], "payload_too_large", "{what}: {body:#}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("limit of {MAX_REQUEST_BODY_BYTES} bytes")),
        "{what}: {message}"
    );
}

/// Every route of the OpenAPI document (with every method it has), the
/// fallback and a wrong method, with a declared body of many sizes over the
/// limit: 413 with the documented error body, before reading; the limit
/// itself is accepted.
async fn oversized_bodies_get_413_on_every_route(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let job = warden_state::job_id(&id, "other");
    let task = app.wait_task(&job, "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let limit = MAX_REQUEST_BODY_BYTES as u64;
    let sizes = [limit + 1, limit + 4096, 2 * limit, 1 << 40, u64::MAX / 2];
    let mut routes: Vec<(String, String, String)> = Vec::new();
    for (template, item) in app.spec.doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = template
                .replace("{slug}", "test")
                .replace("{name}", "ws")
                .replace(
                    "{id}",
                    if template.contains("tasks") {
                        &task_id
                    } else if template.starts_with("/api/v1/jobs") {
                        &job
                    } else {
                        &id
                    },
                );
            routes.push((method.to_ascii_uppercase(), template.clone(), path));
        }
    }
    assert!(routes.len() >= 15, "{routes:?}");
    routes.push(("POST".into(), "fallback".into(), "/api/v1/nowhere".into()));
    routes.push((
        "DELETE".into(),
        "wrong method".into(),
        "/api/v1/job-requests".into(),
    ));
    for (method, template, path) in &routes {
        let token = if template.contains("tasks") {
            &app.tokens.agent
        } else {
            &app.tokens.admin
        };
        for &size in &sizes {
            let (status, body) = declare(&app, method, path, token, size).await;
            assert_too_large(&format!("{method} {path} ({size} bytes)"), status, &body);
            if let Some(op) = app.spec.operation(method, template) {
                app.spec
                    .check_response(method, template, status, &body)
                    .unwrap_or_else(|e| panic!("{method} {template}: {e}; {op}"));
            }
        }
    }
    // Nothing changed, and the server still serves.
    assert_eq!(app.job(&id, "other").await["status_code"], "initiated");
    let stored = app.store.get_task(&task_id).await.unwrap().unwrap();
    assert!(stored.active && stored.agent_stage.is_none());
    // A body of exactly the limit is read (and then judged on its content).
    let mut padded = format!(
        "{{\"stage\": \"executing\", \"timestamp_ns\": {}}}",
        crate::common::now_ns()
    );
    padded.push_str(&" ".repeat(MAX_REQUEST_BODY_BYTES - padded.len()));
    assert_eq!(padded.len(), MAX_REQUEST_BODY_BYTES);
    let resp = app
        .client
        .post(format!("{}/api/v1/backends/test/tasks/{task_id}", app.url))
        .bearer_auth(&app.tokens.agent)
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["outcome"], "applied");
    app.stop().await;
}

/// Bodies with no length (chunked) that stream past the limit are cut off
/// as they are read: 413 JSON, on the task API, creation and cancel.
async fn streamed_oversized_bodies_get_413(db: Db) {
    let app = TestApp::start(db).await;
    let r = app.request("ws", &["other"]).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let job = warden_state::job_id(&id, "other");
    let task = app.wait_task(&job, "runjob").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let routes = [
        (
            format!("/api/v1/backends/test/tasks/{task_id}"),
            &app.tokens.agent,
        ),
        ("/api/v1/job-requests".to_owned(), &app.tokens.dev),
        (format!("/api/v1/job-requests/{id}/cancel"), &app.tokens.dev),
    ];
    for (path, token) in &routes {
        for (chunk, chunks) in [
            (64 * 1024, 17),
            (1000, 1100),
            (MAX_REQUEST_BODY_BYTES + 1, 1),
        ] {
            // The server answers as soon as the limit is passed and closes
            // the connection while the client may still be sending, which
            // can reset the connection before the client reads the answer
            // (HTTP/1.1 has no way around that race): try a few times;
            // every answer received must be the 413.
            let mut answered = 0;
            let mut last_error = None;
            for _ in 0..20 {
                let start = "{\"actions\": [\"".to_owned();
                let mut parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(start.into_bytes())];
                for _ in 0..chunks {
                    parts.push(Ok(vec![b'a'; chunk]));
                }
                let stream = futures_util::stream::iter(parts);
                let sent = app
                    .client
                    .post(format!("{}{path}", app.url))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await;
                let resp = match sent {
                    Ok(resp) => resp,
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                };
                let status = resp.status().as_u16();
                let Ok(body) = resp.json::<Value>().await else {
                    continue;
                };
                assert_too_large(
                    &format!("{path}, {chunks} chunks of {chunk}"),
                    status,
                    &body,
                );
                answered += 1;
                if answered == 3 {
                    break;
                }
            }
            assert!(answered > 0, "{path}: no answer: {last_error:?}");
        }
    }
    assert_eq!(app.job(&id, "other").await["status_code"], "initiated");
    // Small bodies still work.
    let a = app
        .report(
            &task_id,
            json!({"stage": "executing", "timestamp_ns": crate::common::now_ns()}),
        )
        .await;
    assert_eq!(a.body["outcome"], "applied");
    app.stop().await;
}

/// A committed `project.yaml` over `warden_pipeline::MAX_PROJECT_FILE_BYTES`
/// is refused with a 400 naming the size and the limit (git is asked for the
/// blob's size first, so it is never read), for several sizes over the
/// limit; one of exactly the limit is read; the server keeps serving.
async fn oversized_project_yaml_is_refused_unread(db: Db) {
    let app = TestApp::start(db).await;
    let limit = warden_pipeline::MAX_PROJECT_FILE_BYTES as usize;
    let valid = crate::common::STUDY;
    for (i, size) in [limit + 1, limit + 4096, 2 * limit, 8 * limit]
        .into_iter()
        .enumerate()
    {
        // A valid pipeline followed by a comment: only the size is wrong.
        let mut text = format!("{valid}#");
        text.push_str(&"x".repeat(size - text.len()));
        assert_eq!(text.len(), size);
        let branch = format!("big{i}");
        app.repo.checkout_new(&branch);
        let sha = app.repo.commit("project.yaml", &text, "too big");
        app.repo.checkout("main");
        app.store
            .create_workspace(&warden_state::NewWorkspace {
                name: format!("bigws{i}"),
                repo_url: app.repo.url(),
                branch: branch.clone(),
                project_id: Some(1),
            })
            .await
            .unwrap();
        // Named by its commit, and as the branch head.
        for commit in [Some(sha.as_str()), None] {
            let mut body =
                json!({"workspace": format!("bigws{i}"), "backend": "test", "actions": ["other"]});
            if let Some(c) = commit {
                body["commit"] = json!(c);
            }
            let a = app.create(body).await;
            assert_eq!(a.status, 400, "{size} bytes: {:#}", a.body);
            assert_eq!(a.body["error"], "project_yaml_too_large", "{:#}", a.body);
            let message = a.body["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("is {size} bytes"))
                    && message.contains(&format!("limit of {limit} bytes")),
                "{message}"
            );
        }
    }
    // Exactly the limit is read (and planned).
    let mut text = format!("{valid}#");
    text.push_str(&"x".repeat(limit - text.len()));
    app.repo.commit("project.yaml", &text, "as big as allowed");
    let r = app.request("ws", &["other"]).await;
    assert_eq!(r["jobs"].as_array().unwrap().len(), 1, "{r:#}");
    // Still serving.
    let a = app
        .get(
            "/api/v1/job-requests",
            "/api/v1/job-requests",
            &app.tokens.dev,
        )
        .await;
    assert_eq!(a.status, 200);
    app.stop().await;
}
