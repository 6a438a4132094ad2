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
        missing
            .stderr
            .starts_with("error: `nope.yaml` cannot be read: it does not exist"),
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

/// Runs warden with a deadline: a special file must be refused, not waited on.
fn warden_within(dir: &Path, args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run warden");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warden {args:?} still running after {secs} s: it blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("mkfifo");
}

// Issue 7 item 3: special files are refused at once, naming the path (exit 2).
#[test]
fn check_and_graph_refuse_special_files() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("pipe.yaml"));
    std::fs::create_dir(dir.path().join("study")).unwrap();
    mkfifo(&dir.path().join("study/project.yaml"));
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
    let mut seen = Vec::new();
    for target in ["pipe.yaml", "study", "/dev/zero", "zero.yaml", "/dev/null"] {
        for command in ["check", "graph"] {
            let out = warden_within(dir.path(), &[command, target], 30);
            assert_eq!(out.code, 2, "{command} {target}: {}", out.stderr);
            assert_eq!(out.stdout, "");
            if command == "check" {
                seen.push(out.stderr);
            } else {
                assert_eq!(&out.stderr, seen.last().unwrap());
            }
        }
    }
    insta::assert_snapshot!(seen.concat(), @r"
    error: `pipe.yaml` cannot be read: it is a named pipe (FIFO), not a regular file
    error: `study/project.yaml` cannot be read: it is a named pipe (FIFO), not a regular file
    error: `/dev/zero` cannot be read: it is a character device, not a regular file
    error: `zero.yaml` cannot be read: it is a character device, not a regular file
    error: `/dev/null` cannot be read: it is a character device, not a regular file
    ");
}

// Issue 7 item 4: a size cap, with files around it.
#[test]
fn check_refuses_a_project_file_over_the_size_limit() {
    let limit = usize::try_from(warden_pipeline::MAX_PROJECT_FILE_BYTES).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for size in [limit - 1, limit, limit + 1, 2 * limit + 7] {
        // A valid file padded with a comment to exactly `size` bytes.
        let head = "version: '5.0'\nactions: {}\n#";
        let mut text = head.as_bytes().to_vec();
        text.resize(size, b'x');
        std::fs::write(dir.path().join("project.yaml"), &text).unwrap();
        let out = warden(dir.path(), &["check"]);
        if size <= limit {
            assert_eq!(out.code, 0, "{size}: {}", out.stderr);
        } else {
            assert_eq!(out.code, 2, "{size}");
            assert_eq!(
                out.stderr,
                "error: `project.yaml` cannot be read: it is larger than the limit of 4194304 bytes (4 MiB) for a project file\n"
            );
        }
    }
}

// Issue 7 item 12: names from the file are printed escaped.
#[test]
fn check_and_graph_print_names_escaped() {
    let dir = study(
        "version: '5.0'\nactions:\n  \"evil\\e[2J\\u202e\":\n    run: python:v2 python a.py\n    outputs:\n      moderately_sensitive:\n        t: \"out/\\e]0;x\\a.pdf\"\n",
    );
    let out = warden(dir.path(), &["check"]);
    assert_eq!(out.code, 1);
    assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{202e}'));
    insta::assert_snapshot!(out.stderr, @r#"
    error: Output path out/\x1b]0;x\x07.pdf is invalid: out/\x1b]0;x\x07.pdf is not an allowed file type for moderately_sensitive outputs
      --> project.yaml:7:12
      |
    7 |         t: "out/\e]0;x\a.pdf"
      |            ^^^^^^^^^^^^^^^^^^

    project.yaml is invalid: 1 error
    "#);
    let dir = study(
        "version: '5.0'\nactions:\n  \"evil\\e[2J\\u202e\":\n    run: python:v2 python a.py\n    outputs:\n      moderately_sensitive:\n        t: out/a.csv\n",
    );
    let order = warden(dir.path(), &["graph", "--order"]);
    assert_eq!(order.code, 0, "{}", order.stderr);
    insta::assert_snapshot!(order.stdout, @r"evil\x1b[2J\u{202e}");
    let mermaid = warden(dir.path(), &["graph"]);
    insta::assert_snapshot!(mermaid.stdout, @r#"
    graph LR
        a0["evil\\x1b[2J\\u{202e}"]
    "#);
    let unknown = warden(dir.path(), &["graph", "--action", "x\u{1b}[31m"]);
    assert_eq!(unknown.code, 2);
    insta::assert_snapshot!(unknown.stderr, @r"error: action `x\x1b[31m` is not in project.yaml; valid actions are: evil\x1b[2J\u{202e}");
}

// Issue 7 item 11: a long line shows a window around the column, not the line.
#[test]
fn check_cuts_a_long_line_around_the_error() {
    let pad = "x".repeat(1 << 20);
    let dir = study(&format!(
        "{{version: '5.0', actions: {{a: {{config: {{pad: {pad}}}, run: python:v2 a, outputs: {{moderately_sensitive: {{t: o/a.pdf}}}}}}}}}}\n"
    ));
    let out = warden(dir.path(), &["check"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.len() < 2000, "{} bytes", out.stderr.len());
    insta::assert_snapshot!(out.stderr, @r"
    error: Output path o/a.pdf is invalid: o/a.pdf is not an allowed file type for moderately_sensitive outputs
      --> project.yaml:1:1048679
      |
    1 | … a, outputs: {moderately_sensitive: {t: o/a.pdf}}}}}
      |                                          ^^^^^^^

    project.yaml is invalid: 1 error
    ");
}

// Issue 7 items 6 and 11: paths outside the workspace or into `.git`, and
// image names outside the prefix, are refused after the reference's errors.
#[test]
fn check_refuses_escaping_outputs_and_images() {
    let dir = study(
        "version: '5.0'\nactions:\n  a:\n    run: ../../x/evil:v1 go\n    outputs:\n      highly_sensitive:\n        t: ../x.csv\n  b:\n    run: python:v2 b\n    outputs:\n      highly_sensitive:\n        t: .GIT/refs/heads/main.csv\n",
    );
    let out = warden(dir.path(), &["check"]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!(out.stderr, @r"
    error: Action a uses the image `../../x/evil`, which is not a valid image name: use only lowercase letters and digits, with single `.`, `_` or `__`, or `-`, between them (no `/`: images come from one registry prefix)
      --> project.yaml:4:10
      |
    4 |     run: ../../x/evil:v1 go
      |          ^^^^^^^^^^^^^^^^^^

    error: Output path ../x.csv is invalid: is not in standard form (contains double slashes or '..' elements)
      --> project.yaml:7:12
      |
    7 |         t: ../x.csv
      |            ^^^^^^^^

    error: Output path .GIT/refs/heads/main.csv is invalid: is inside the repository's `.git` directory, which outputs must never touch
      --> project.yaml:12:12
       |
    12 |         t: .GIT/refs/heads/main.csv
       |            ^^^^^^^^^^^^^^^^^^^^^^^^

    project.yaml is invalid: 3 errors
    ");
}
