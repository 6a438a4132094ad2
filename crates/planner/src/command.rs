//! The run command a job stores: the action's `run:` tokens plus what the
//! platform appends, joined back into one shell-quoted string.
//!
//! The text is byte-compatible with job-runner's (`shlex.join` of the tokens,
//! `json.dumps` of the config), so jobs and logs read the same whichever
//! platform made them. That is why quoting and JSON are written here rather
//! than taken from crates with their own (equally valid) conventions.

use std::fmt::Write as _;

use serde_json::Value;
use warden_pipeline::validate::posix_parent;
use warden_pipeline::{Action, Pipeline};

/// Builds the run command of `action`; see [`crate::NewJob::run_command`].
pub(crate) fn run_command(pipeline: &Pipeline, action: &Action, dummy_data: bool) -> String {
    // Room for the words, their separators and some quoting.
    let words: usize = action.run.parts.iter().map(|p| p.len() + 3).sum();
    let mut out = String::with_capacity(words + 8);
    for part in &action.run.parts {
        push_word(&mut out, part);
    }
    // `if action.config:` in the reference: null and `{}` add nothing.
    if let Some(config) = action.config.as_ref().filter(|c| is_truthy(c)) {
        push_word(&mut out, "--config");
        let mut json = String::new();
        write_python_json(&mut json, config);
        push_word(&mut out, &json);
    }
    if is_cohortextractor_v1(&action.run.parts) {
        if dummy_data {
            if let Some(file) = &action.dummy_data_file {
                push_word(&mut out, &format!("--dummy-data-file={file}"));
            } else if let Some(expectations) = &pipeline.expectations {
                let size = expectations.population_size;
                push_word(&mut out, &format!("--expectations-population={size}"));
            }
        }
        if let Some(dir) = single_output_dir(action) {
            push_word(&mut out, &format!("--output-dir={dir}"));
        }
    }
    out
}

/// `cohortextractor:<tag> generate_cohort|generate_dataset`: the v1 extractor,
/// to which job-runner appends the dummy-data and output-directory options.
fn is_cohortextractor_v1(parts: &[String]) -> bool {
    parts.len() > 1
        && parts[0].starts_with("cohortextractor:")
        && matches!(parts[1].as_str(), "generate_cohort" | "generate_dataset")
}

/// The one parent directory of all output patterns, if there is exactly one
/// (POSIX parents, as Python's `PurePosixPath(p).parent`).
fn single_output_dir(action: &Action) -> Option<String> {
    let mut found: Option<String> = None;
    for (_, pattern) in action.outputs.patterns() {
        let dir = posix_parent(pattern);
        match &found {
            None => found = Some(dir),
            Some(seen) if *seen == dir => {}
            Some(_) => return None,
        }
    }
    found
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Appends one word, space-separated and quoted as Python's `shlex.quote`.
fn push_word(out: &mut String, word: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    push_quoted(out, word);
}

/// Python's `shlex.quote` (a word of only `[A-Za-z0-9_@%+=:,./-]` stays as it
/// is; anything else is single-quoted, with `'` written as `'"'"'`).
pub(crate) fn push_quoted(out: &mut String, word: &str) {
    out.push_str(&warden_pipeline::python::shlex_quote(word));
}

/// Python's `json.dumps(value)` with its defaults (`", "` and `": "`
/// separators, `ensure_ascii`, `repr` of floats), then `'` written as
/// `\u0027` as job-runner does, so the JSON survives single-quoting.
pub(crate) fn write_python_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                push_python_float(out, f);
            }
        }
        Value::String(s) => push_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_json_string(out, key);
                out.push_str(": ");
                write_python_json(out, item);
            }
            out.push('}');
        }
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' if c != '\'' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `json.dumps` writes it: `repr(float)`, and `NaN` /
/// `Infinity` for the values JSON has no spelling for.
pub(crate) fn push_python_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&warden_pipeline::python::float_repr(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py_float(f: f64) -> String {
        let mut s = String::new();
        push_python_float(&mut s, f);
        s
    }

    #[test]
    fn floats_print_as_python_repr() {
        // Expected values printed by CPython's repr().
        let cases = [
            (1e20, "1e+20"),
            (1.5, "1.5"),
            (0.0001, "0.0001"),
            (1e-05, "1e-05"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (2.5e-300, "2.5e-300"),
            (0.1, "0.1"),
            (-3.25, "-3.25"),
            (100.0, "100.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float(f), want, "{f:?}");
        }
    }

    #[test]
    fn json_matches_python_dumps() {
        // Python: json.dumps(v).replace("'", "\\u0027") for the same value.
        let v: Value = serde_json::from_str(
            r#"{"a": 1e20, "b": [1.5, 0.0001, 1e-05, 1e16, 1e15, -0.0], "c": "it's é 😀 \u007f \u0001", "d": true, "e": null, "f": {}, "g": []}"#,
        )
        .unwrap();
        let mut s = String::new();
        write_python_json(&mut s, &v);
        assert_eq!(
            s,
            r#"{"a": 1e+20, "b": [1.5, 0.0001, 1e-05, 1e+16, 1000000000000000.0, -0.0], "c": "it\u0027s \u00e9 \ud83d\ude00 \u007f \u0001", "d": true, "e": null, "f": {}, "g": []}"#
        );
    }

    #[test]
    fn quoting_matches_python_shlex_join() {
        let words = [
            "python:latest",
            "a b",
            "--config",
            "it's",
            "",
            "--output-dir=.",
            "x,y%",
            "é",
            "a*",
        ];
        let mut out = String::new();
        for w in words {
            push_word(&mut out, w);
        }
        // Python: shlex.join(words)
        assert_eq!(
            out,
            r#"python:latest 'a b' --config 'it'"'"'s' '' --output-dir=. x,y% 'é' 'a*'"#
        );
    }

    #[test]
    fn posix_parents() {
        assert_eq!(posix_parent("output/input.csv"), "output");
        assert_eq!(posix_parent("input.csv"), ".");
        assert_eq!(posix_parent("./a//b/c.csv"), "a/b");
        assert_eq!(posix_parent("a/b/"), "a");
        assert_eq!(posix_parent("/abs/x"), "/abs");
        assert_eq!(posix_parent("/x"), "/");
    }
}
