//! Hostile nesting: a project.yaml of deeply nested block collections committed
//! to a workspace is refused with the YAML error (line and column), and the
//! server goes on serving.

use serde_json::json;
use warden_state::NewWorkspace;

use crate::common::{Db, TestApp};
use crate::db_tests;

db_tests!(deep_nesting_is_refused_and_the_server_keeps_serving);

async fn deep_nesting_is_refused_and_the_server_keeps_serving(db: Db) {
    let app = TestApp::start(db).await;
    // `'- ' * 2000` (4 KB, the file of the issue), a deeper one, complex keys,
    // and block sequences holding flow collections.
    let files = [
        ("deep2000", format!("{}x\n", "- ".repeat(2000))),
        ("deep200k", format!("{}x\n", "- ".repeat(200_000))),
        ("keys", format!("{}x\n", "? ".repeat(50_000))),
        (
            "mixed",
            format!(
                "{}{}x{}\n",
                "- ".repeat(5_000),
                "[".repeat(250),
                "]".repeat(250)
            ),
        ),
    ];
    for (name, text) in &files {
        app.repo.checkout("main");
        app.repo.checkout_new(name);
        app.repo.commit("project.yaml", text, name);
        app.store
            .create_workspace(&NewWorkspace {
                name: (*name).into(),
                repo_url: app.repo.url(),
                branch: (*name).into(),
                project_id: Some(1),
            })
            .await
            .unwrap();
    }
    app.repo.checkout("main");
    for (name, text) in &files {
        let a = app
            .create(json!({"workspace": name, "backend": "test", "actions": ["a"]}))
            .await;
        assert_eq!(a.status, 400, "{name}: {:#}", a.body);
        assert_eq!(
            a.body["error"], "invalid_project_yaml",
            "{name}: {:#}",
            a.body
        );
        let expected = warden_pipeline::check(text);
        let first = expected.first_error().unwrap();
        assert!(
            first.message.contains("recursion limit exceeded"),
            "{name}: {}",
            first.message
        );
        assert_eq!(a.body["message"], first.message.as_str(), "{name}");
        assert_eq!(a.body["line"], first.line, "{name}");
        assert_eq!(a.body["column"], first.column, "{name}");
        // The server is still there: a good request goes through.
        let ok = app.request("ws", &["other"]).await;
        assert!(ok["id"].is_string(), "{ok:#}");
    }
    app.stop().await;
}
