//! `warden check` and `warden graph` as a user sees them: exit codes and output
//! snapshots.

use std::path::Path;
use std::process::Command;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn warden(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run warden");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn study(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("project.yaml"), text).unwrap();
    dir
}

const BROKEN: &str = "version: '3.0'
expectations:
  population_size: 1000
actions:
  generate:
    run: cohortextractor:latest generate_cohort --study-definition study_definition
    outputs:
      highly_sensitive:
        cohort: output/input.csv
  analyse:
    run: python:latest python analysis/a.py
    needs: [generate, report]
    outputs:
      moderately_sensitive:
        chart: output/chart.pdf
  report:
    run: python:latest python analysis/r.py
    needs: [analyse]
    outputs:
      moderately_sensitive:
        table: output/table.csv
";

#[test]
fn check_reports_every_error_like_a_compiler() {
    let dir = study(BROKEN);
    let out = warden(dir.path(), &["check"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    insta::assert_snapshot!(out.stderr, @r"
    error: Output path output/chart.pdf is invalid: output/chart.pdf is not an allowed file type for moderately_sensitive outputs
      --> project.yaml:15:16
       |
    15 |         chart: output/chart.pdf
       |                ^^^^^^^^^^^^^^^^

    error: Actions depend on each other in a cycle: analyse -> report -> analyse
      --> project.yaml:18:13
       |
    18 |     needs: [analyse]
       |             ^^^^^^^

    warning: Your project file is using an old version (3.0); consider updating to version 5
    project.yaml is invalid: 2 errors
    ");
}

#[test]
fn check_json_has_the_reference_first_error() {
    let dir = study(BROKEN);
    let out = warden(dir.path(), &["check", "--format", "json"]);
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["errors"][0]["message"],
        "Output path output/chart.pdf is invalid: output/chart.pdf is not an allowed file type for moderately_sensitive outputs"
    );
    assert_eq!(v["errors"][0]["line"], 15);
    assert_eq!(v["errors"][0]["column"], 16);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["warnings"][0],
        "ProjectWarning: Your project file is using an old version (3.0); consider updating to version 5"
    );
}

#[test]
fn check_exit_codes() {
    let dir = study("version: 5\nactions: {}\n");
    let ok = warden(dir.path(), &["check"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    insta::assert_snapshot!(ok.stdout, @"project.yaml is valid: 0 actions");
    let missing = warden(dir.path(), &["check", "nope.yaml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.starts_with("error: cannot read `nope.yaml`"),
        "{}",
        missing.stderr
    );
    std::fs::write(dir.path().join("bad.yaml"), b"version: 5\nactions: \xff\n").unwrap();
    let bad = warden(dir.path(), &["check", "bad.yaml"]);
    assert_eq!(bad.code, 1);
    insta::assert_snapshot!(bad.stderr, @r"
    error: the file is not valid UTF-8 text
      --> bad.yaml:2:10
    ");
}

#[test]
fn check_accepts_a_directory_and_yaml_errors_point_at_the_key() {
    let dir = study("version: 5\nactions:\n  a: 1\n  a: 2\n");
    let out = warden(dir.path(), &["check", "."]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!(out.stderr, @r#"
    error: found duplicate key "a" (first defined at line 3, column 3)
      --> ./project.yaml:4:3
      |
    4 |   a: 2
      |   ^

    ./project.yaml is invalid: 1 error
    "#);
}

const EXAMPLE: &str = "version: '4.0'
actions:
  extract:
    run: ehrql:v1 generate-dataset analysis/dataset.py --output output/dataset.csv
    outputs:
      highly_sensitive:
        dataset: output/dataset.csv
  model:
    run: python:v2 python analysis/model.py
    needs: [extract]
    outputs:
      moderately_sensitive:
        table: output/model.csv
  chart:
    run: python:v2 python analysis/chart.py
    needs: [extract]
    outputs:
      moderately_sensitive:
        chart: output/chart.png
  report:
    run: python:v2 python analysis/report.py
    needs: [model, chart]
    outputs:
      moderately_sensitive:
        report: output/report.html
";

#[test]
fn graph_formats() {
    let dir = study(EXAMPLE);
    let mermaid = warden(dir.path(), &["graph"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    insta::assert_snapshot!(mermaid.stdout, @r#"
    graph LR
        a0["extract"]
        a1["model"]
        a0 --> a1
        a2["chart"]
        a0 --> a2
        a3["report"]
        a1 --> a3
        a2 --> a3
    "#);
    let dot = warden(dir.path(), &["graph", "--format", "dot"]);
    insta::assert_snapshot!(dot.stdout, @r#"
    digraph pipeline {
        rankdir=LR;
        node [shape=box];
        "extract";
        "model";
        "extract" -> "model";
        "chart";
        "extract" -> "chart";
        "report";
        "model" -> "report";
        "chart" -> "report";
    }
    "#);
    let json = warden(dir.path(), &["graph", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(v["nodes"][0]["database_action"], true);
    assert_eq!(
        v["edges"][0],
        serde_json::json!({"from": "extract", "to": "model"})
    );
}

#[test]
fn graph_order_and_closure() {
    let dir = study(EXAMPLE);
    let order = warden(dir.path(), &["graph", "--order"]);
    insta::assert_snapshot!(order.stdout, @r"
    extract
    model
    chart
    report
    ");
    let some = warden(dir.path(), &["graph", "--order", "--action", "chart"]);
    insta::assert_snapshot!(some.stdout, @r"
    extract
    chart
    ");
    let all = warden(dir.path(), &["graph", "--order", "--action", "run_all"]);
    assert_eq!(all.stdout, order.stdout);
    let unknown = warden(dir.path(), &["graph", "--action", "nope"]);
    assert_eq!(unknown.code, 2);
    insta::assert_snapshot!(unknown.stderr, @"error: action `nope` is not in project.yaml; valid actions are: extract, model, chart, report");
}

#[test]
fn graph_refuses_an_invalid_project() {
    let dir = study(BROKEN);
    let out = warden(dir.path(), &["graph"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("project.yaml:15:16"), "{}", out.stderr);
    assert!(
        out.stderr
            .ends_with("project.yaml is invalid: run `warden check` for details\n")
    );
}

#[test]
fn check_and_graph_refuse_deep_nesting_with_the_place() {
    // Block sequences, complex keys, and flow inside block, far deeper than the
    // limit: an error with line and column, exit 1, never a crash.
    for text in [
        format!("{}x\n", "- ".repeat(2000)),
        format!("{}x\n", "- ".repeat(1_000_000)),
        format!("{}x\n", "? ".repeat(100_000)),
        format!(
            "version: 5\nactions:\n  a:\n    config:\n      {}{}x{}\n",
            "- ".repeat(100),
            "[".repeat(200),
            "]".repeat(200)
        ),
    ] {
        let dir = study(&text);
        let expected = warden_pipeline::check(&text);
        let first = expected.first_error().unwrap();
        assert!(
            first.message.contains("recursion limit exceeded"),
            "{}",
            first.message
        );
        let place = format!("project.yaml:{}:{}", first.line, first.column);
        for args in [&["check"][..], &["graph"][..]] {
            let out = warden(dir.path(), args);
            assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains("recursion limit exceeded"), "{args:?}");
            assert!(out.stderr.contains(&place), "{args:?}: {place}");
        }
        let out = warden(dir.path(), &["check", "--format", "json"]);
        assert_eq!(out.code, 1);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["errors"][0]["kind"], "yaml");
        assert_eq!(v["errors"][0]["line"], first.line);
        assert_eq!(v["errors"][0]["column"], first.column);
    }
}
