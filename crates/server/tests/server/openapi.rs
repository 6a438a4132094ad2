use reqwest::Method;
use serde_json::Value;

use crate::common::{Db, TestApp};

/// Every documented operation is routed (no `no_route`, no 405), and every
/// `$ref` in the document resolves. The router and the document are built
/// from one list (`routes::api`), so no route can be missing from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let app = TestApp::start(Db::Sqlite).await;
    let doc = app.spec.doc.clone();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{paths:?}");
    let mut operations = 0;
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let path = template
                .replace("{slug}", "test")
                .replace("{name}", "ws")
                .replace("{id}", "aaaaaaaaaaaaaaaa");
            let agent = template.starts_with("/api/v1/backends/{slug}/tasks");
            let token = if agent {
                &app.tokens.agent
            } else {
                &app.tokens.admin
            };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .client
                .request(method.clone(), format!("{}{path}", app.url))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {template}");
            assert_ne!(body["error"], "no_route", "{method} {template}");
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {template}: {status} is not documented: {body}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 18);
    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        app.spec.resolve(&serde_json::json!({"$ref": r})).unwrap();
    }
    // Both security schemes are declared, and every operation but two needs one.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["user_token"]["scheme"], "bearer");
    assert_eq!(schemes["backend_token"]["scheme"], "bearer");
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let public = template == "/api/v1/health" || template == "/api/v1/openapi.json";
            assert_eq!(op.get("security").is_none(), public, "{method} {template}");
        }
    }
    // Operation ids are unique.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operation ids: {ids:?}");
    // The validator is not a rubber stamp.
    let job = serde_json::json!({"$ref": "#/components/schemas/JobView"});
    assert!(
        app.spec
            .validate(&job, &serde_json::json!({}), "$")
            .is_err()
    );
    let r = app.request("ws", &["other"]).await;
    let mut view = r["jobs"][0].clone();
    app.spec.validate(&job, &view, "$").unwrap();
    view["surprise"] = Value::Bool(true);
    assert!(
        app.spec
            .validate(&job, &view, "$")
            .unwrap_err()
            .contains("surprise")
    );
    view.as_object_mut().unwrap().remove("surprise");
    view["started_at"] = Value::from(3);
    assert!(app.spec.validate(&job, &view, "$").is_err());
    // The served document is the one the library builds.
    assert_eq!(doc, serde_json::to_value(warden_server::openapi()).unwrap());
    app.stop().await;
}
