//! Differential test: `warden_pipeline::check` against the reference validator
//! (opensafely==2.0.1's vendored `pipeline.load_pipeline`), on every corpus file and on
//! a few thousand generated variants.
//!
//! The oracle runs once, in one Python process, over all inputs
//! (`scripts/oracle/oracle.py`). Install it with `scripts/oracle/setup.sh`; the venv's
//! python is found through `WARDEN_ORACLE_PYTHON`, else
//! `${WARDEN_CACHE:-$HOME/.cache/warden}/oracle-venv/bin/python`. Without it the test
//! prints `SKIPPED` and passes, except when `CI` is set, where it fails.
//!
//! What must agree, per input:
//! - the verdict (valid or not);
//! - a reference validation error: warden's first error is `Validation` with the same
//!   text (the directory list of the generate_cohort "only one directory" message is
//!   compared as a set: the reference prints it in Python set order);
//! - a reference YAML error: warden's first error is `Yaml`;
//! - a reference crash (spec §13): warden's first error is `ReferenceCrash` with a
//!   message (for a version above 5, exactly the reference's ValueError text);
//! - deliberate divergences: a cycle in `needs` (the reference accepts it) must give only
//!   `Extra` errors, and so must warden's other refusals of inputs the reference accepts
//!   (image names outside Docker's grammar, output paths with `..`, `.git`, control
//!   characters, `metadata` in another letter case); integer `needs` items (the reference crashes) are judged against the
//!   reference run with integer ids turned into strings, or may be a `ReferenceCrash`;
//! - on valid inputs, the warnings (compared without the `ProjectWarning: ` prefix);
//! - every diagnostic's line and column agree with its byte offset, and its span is
//!   inside the text.
//!
//! Knobs: `WARDEN_DIFF_SEED` (default 20260901), `WARDEN_DIFF_CASES` (default 3000),
//! `WARDEN_DIFF_ONLY` (run only inputs whose name contains this). Inputs, oracle results
//! and mismatches are written to `$TMPDIR/warden-differential/`.

#[path = "differential/generate.rs"]
mod generate;
#[path = "differential/rng.rs"]
mod rng;
#[path = "differential/yaml.rs"]
mod yaml;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use warden_pipeline::{DiagnosticKind, Report, check};

const DEFAULT_SEED: u64 = 20_260_901;
const DEFAULT_CASES: usize = 3000;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("WARDEN_ORACLE_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("WARDEN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/warden")
        });
    cache.join("oracle-venv/bin/python")
}

struct Input {
    name: String,
    mutation: String,
    text: String,
}

fn corpus_files() -> Vec<(String, String)> {
    let dir = manifest_dir().join("../../corpus/project-yaml");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus not found at {}: {e}", dir.display()));
    let mut files: Vec<(String, String)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 200,
        "expected the 250-file corpus in {}",
        dir.display()
    );
    files
}

fn build_inputs() -> Vec<Input> {
    let seed = std::env::var("WARDEN_DIFF_SEED")
        .ok()
        .map(|s| s.parse().expect("WARDEN_DIFF_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    let count = std::env::var("WARDEN_DIFF_CASES")
        .ok()
        .map(|s| s.parse().expect("WARDEN_DIFF_CASES is a number"))
        .unwrap_or(DEFAULT_CASES);
    let corpus = corpus_files();
    let mut inputs: Vec<Input> = corpus
        .iter()
        .map(|(name, text)| Input {
            name: format!("corpus/{name}"),
            mutation: "corpus file as is".into(),
            text: text.clone(),
        })
        .collect();
    let generated = generate::corpus_variants(seed, &corpus)
        .into_iter()
        .chain(generate::generate(seed, count));
    inputs.extend(generated.map(|c| Input {
        name: c.name,
        mutation: c.mutation,
        text: c.text,
    }));
    if let Ok(only) = std::env::var("WARDEN_DIFF_ONLY") {
        inputs.retain(|i| i.name.contains(&only));
    }
    inputs
}

/// Run the oracle over all inputs in one process; one JSON object per input.
fn run_oracle(python: &Path, inputs: &[Input], out_dir: &Path) -> Vec<Value> {
    let script = manifest_dir().join("../../scripts/oracle/oracle.py");
    let payload: Vec<Value> = inputs
        .iter()
        .map(|i| json!({"name": i.name, "text": i.text}))
        .collect();
    let payload = serde_json::to_vec(&payload).expect("json");
    let mut child = Command::new(python)
        .arg(&script)
        // The reference lists generate_cohort directories in set order: fix it.
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the oracle {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&payload));
    let stdout = child.stdout.take().expect("stdout");
    let mut results = Vec::with_capacity(inputs.len());
    let mut raw = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("oracle output");
        raw.push_str(&line);
        raw.push('\n');
        results.push(serde_json::from_str::<Value>(&line).expect("oracle JSON line"));
    }
    writer
        .join()
        .expect("writer")
        .expect("writing to the oracle");
    let status = child.wait().expect("oracle");
    assert!(status.success(), "the oracle failed: {status}");
    std::fs::write(out_dir.join("oracle-results.jsonl"), raw).expect("write results");
    assert_eq!(
        results.len(),
        inputs.len(),
        "the oracle answered for every input"
    );
    for (r, i) in results.iter().zip(inputs) {
        assert_eq!(
            r["name"],
            i.name.as_str(),
            "oracle results are in input order"
        );
    }
    results
}

fn kind_name(kind: DiagnosticKind) -> &'static str {
    match kind {
        DiagnosticKind::Yaml => "yaml",
        DiagnosticKind::Validation => "validation",
        DiagnosticKind::ReferenceCrash => "reference-crash",
        DiagnosticKind::Extra => "extra",
    }
}

fn describe(report: &Report) -> String {
    match report.first_error() {
        None => format!("valid, warnings {:?}", report.warnings),
        Some(d) => format!(
            "{} error ({} in all) at {}:{}: {}",
            kind_name(d.kind),
            report.errors.len(),
            d.line,
            d.column,
            d.message
        ),
    }
}

fn describe_oracle(o: &Value) -> String {
    let mut s = match o["verdict"].as_str() {
        Some("ok") if o["cycle"] == true => "valid, with a cycle in `needs`".to_string(),
        Some("ok") => format!("valid, warnings {}", o["warnings"]),
        _ => format!(
            "{} {}: {}",
            o["verdict"].as_str().unwrap_or("?"),
            o["category"].as_str().unwrap_or("?"),
            o["message"].as_str().unwrap_or("")
        ),
    };
    if let Some(adj) = o.get("adjusted") {
        let _ = write!(
            s,
            "\n    (with integer ids as strings: {})",
            describe_oracle(adj)
        );
    }
    s
}

fn strip_warning(w: &str) -> &str {
    w.strip_prefix("ProjectWarning: ").unwrap_or(w)
}

/// Messages equal, except that the generate_cohort directory list is a set.
fn same_message(reference: &str, warden: &str) -> bool {
    const DIRS: &str = "generate_cohort command should produce output in only one directory";
    if reference.starts_with(DIRS) {
        let mut a: Vec<&str> = reference.split('\n').collect();
        let mut b: Vec<&str> = warden.split('\n').collect();
        if a.len() != b.len() || a[0] != b[0] {
            return false;
        }
        a[1..].sort_unstable();
        b[1..].sort_unstable();
        return a == b;
    }
    reference == warden
}

/// Compare warden's report with one expected outcome of the reference. `None` = agree.
fn compare_outcome(o: &Value, report: &Report) -> Option<String> {
    let first = report.first_error();
    match o["verdict"].as_str() {
        Some("ok") if o["cycle"] == true => {
            if report.errors.is_empty() {
                return Some("a cycle in `needs` must be an `extra` error".into());
            }
            if let Some(d) = report
                .errors
                .iter()
                .find(|d| d.kind != DiagnosticKind::Extra)
            {
                return Some(format!(
                    "only `extra` errors expected (cycle), got {}: {}",
                    kind_name(d.kind),
                    d.message
                ));
            }
            None
        }
        Some("ok") => {
            // warden's own refusals (image names, output paths: issue 7) are
            // deliberate divergences: only `Extra` errors, and no pipeline.
            if let Some(d) = report
                .errors
                .iter()
                .find(|d| d.kind != DiagnosticKind::Extra)
            {
                return Some(format!(
                    "expected valid, got {}: {}",
                    kind_name(d.kind),
                    d.message
                ));
            }
            if first.is_some() {
                return report
                    .pipeline
                    .is_some()
                    .then(|| "`extra` errors but a pipeline returned".into());
            }
            if report.pipeline.is_none() {
                return Some("valid but no pipeline returned".into());
            }
            let want: Vec<&str> = o["warnings"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .filter_map(Value::as_str)
                        .map(strip_warning)
                        .collect()
                })
                .unwrap_or_default();
            let got: Vec<&str> = report.warnings.iter().map(|w| strip_warning(w)).collect();
            if want != got {
                return Some(format!(
                    "warnings differ: reference {want:?}, warden {got:?}"
                ));
            }
            None
        }
        _ => {
            let Some(d) = first else {
                return Some("expected an error, warden says valid".into());
            };
            let message = o["message"].as_str().unwrap_or("");
            match o["category"].as_str() {
                Some("validation") => {
                    if d.kind != DiagnosticKind::Validation {
                        Some(format!(
                            "expected a validation error, got {}",
                            kind_name(d.kind)
                        ))
                    } else if !same_message(message, &d.message) {
                        Some("first error text differs".into())
                    } else {
                        None
                    }
                }
                Some("yaml") => (d.kind != DiagnosticKind::Yaml)
                    .then(|| format!("expected a YAML error, got {}", kind_name(d.kind))),
                _ => {
                    if d.kind != DiagnosticKind::ReferenceCrash {
                        return Some(format!(
                            "expected a reference-crash error, got {}",
                            kind_name(d.kind)
                        ));
                    }
                    if d.message.trim().is_empty() {
                        return Some("reference-crash error without a message".into());
                    }
                    if let Some(text) = message.strip_prefix("ValueError: ")
                        && text.starts_with("The latest version is v5")
                        && d.message != text
                    {
                        return Some(format!("expected exactly {text:?}"));
                    }
                    None
                }
            }
        }
    }
}

fn compare(o: &Value, report: &Report) -> Option<String> {
    if let Some(adjusted) = o.get("adjusted") {
        // Integer needs items: warden reads them as the action ids they spell. It may
        // also refuse them as a reference crash.
        let as_crash = compare_outcome(o, report);
        let as_adjusted = compare_outcome(adjusted, report);
        return match (as_crash, as_adjusted) {
            (None, _) | (_, None) => None,
            (Some(_), Some(b)) => Some(format!("{b} (integer needs divergence)")),
        };
    }
    compare_outcome(o, report)
}

/// Every diagnostic's span lies in the text, and its line/column match its offset.
fn check_spans(text: &str, report: &Report) -> Option<String> {
    for d in &report.errors {
        if d.offset > text.len() || d.offset + d.len > text.len() {
            return Some(format!(
                "span {}+{} outside the text ({} bytes): {}",
                d.offset,
                d.len,
                text.len(),
                d.message
            ));
        }
        if !text.is_char_boundary(d.offset) {
            return Some(format!(
                "offset {} is not a char boundary: {}",
                d.offset, d.message
            ));
        }
        let before = &text[..d.offset];
        let line = 1 + before.matches('\n').count();
        let column = 1 + before.rsplit('\n').next().unwrap_or("").chars().count();
        if (d.line, d.column) != (line, column) {
            return Some(format!(
                "position {}:{} does not match offset {} (which is {line}:{column}): {}",
                d.line, d.column, d.offset, d.message
            ));
        }
    }
    None
}

fn run_warden(text: &str) -> Result<Report, String> {
    catch_unwind(AssertUnwindSafe(|| check(text))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

#[test]
fn warden_agrees_with_the_reference_validator() {
    let python = oracle_python();
    // The oracle is installed by `scripts/test.sh` (scripts/oracle/setup.sh): a
    // missing oracle is a broken set-up, never a pass.
    assert!(
        python.exists(),
        "reference oracle not installed: run scripts/oracle/setup.sh (looked for {})",
        python.display()
    );

    let out_dir = std::env::temp_dir().join("warden-differential");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(out_dir.join("cases")).expect("temp dir");

    let inputs = build_inputs();
    let listing: Vec<Value> = inputs
        .iter()
        .map(|i| json!({"name": i.name, "mutation": i.mutation, "text": i.text}))
        .collect();
    std::fs::write(
        out_dir.join("inputs.json"),
        serde_json::to_vec_pretty(&listing).expect("json"),
    )
    .expect("write inputs");
    for i in inputs.iter().filter(|i| !i.name.starts_with("corpus/")) {
        std::fs::write(
            out_dir.join("cases").join(format!("{}.yaml", i.name)),
            &i.text,
        )
        .expect("write case");
    }

    let started = std::time::Instant::now();
    let results = run_oracle(&python, &inputs, &out_dir);
    eprintln!(
        "oracle: {} inputs in {:.1}s",
        inputs.len(),
        started.elapsed().as_secs_f64()
    );

    // Say where we are if warden hangs on an input (a cycle, say).
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    {
        let (current, done) = (current.clone(), done.clone());
        let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        std::thread::spawn(move || {
            let mut last = usize::MAX;
            loop {
                std::thread::sleep(Duration::from_secs(30));
                if done.load(Ordering::SeqCst) == 1 {
                    return;
                }
                let now = current.load(Ordering::SeqCst);
                if now == last {
                    eprintln!("warden has been checking {} for over 30s", names[now]);
                }
                last = now;
            }
        });
    }

    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut mismatches = Vec::new();
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    for (n, (input, oracle)) in inputs.iter().zip(&results).enumerate() {
        current.store(n, Ordering::SeqCst);
        let verdict = oracle["verdict"].as_str().unwrap_or("?");
        let category = if oracle["cycle"] == true {
            "ok+cycle"
        } else if oracle.get("adjusted").is_some() {
            "crash(int needs)"
        } else {
            oracle["category"].as_str().unwrap_or(verdict)
        };
        *tally.entry(category.to_string()).or_default() += 1;
        let (problem, got) = match run_warden(&input.text) {
            Err(panic) => (
                Some("warden panicked".to_string()),
                format!("panic: {panic}"),
            ),
            Ok(report) => (
                compare(oracle, &report).or_else(|| check_spans(&input.text, &report)),
                describe(&report),
            ),
        };
        if let Some(problem) = problem {
            mismatches.push(format!(
                "--- {}\n  mutation:  {}\n  problem:   {problem}\n  reference: {}\n  warden:    {got}\n",
                input.name,
                input.mutation,
                describe_oracle(oracle).replace('\n', "\n             "),
            ));
        }
    }
    std::panic::set_hook(hook);
    done.store(1, Ordering::SeqCst);

    let report_path = out_dir.join("mismatches.txt");
    std::fs::write(&report_path, mismatches.concat()).expect("write mismatches");
    eprintln!(
        "compared {} inputs (reference outcomes: {tally:?}); files in {}",
        inputs.len(),
        out_dir.display()
    );
    if !mismatches.is_empty() {
        const SHOWN: usize = 60;
        for m in mismatches.iter().take(SHOWN) {
            eprintln!("{m}");
        }
        if mismatches.len() > SHOWN {
            eprintln!(
                "... and {} more, all in {}",
                mismatches.len() - SHOWN,
                report_path.display()
            );
        }
        panic!(
            "{} of {} inputs disagree with the reference validator (details above and in {})",
            mismatches.len(),
            inputs.len(),
            report_path.display()
        );
    }
}
