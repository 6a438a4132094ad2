//! Rendering a [`Report`] for people (like a compiler) and for programs (JSON).

use std::fmt::Write as _;

use crate::diagnostic::{Diagnostic, Report};

/// Renders errors and warnings the way a compiler does: the message, the
/// `--> file:line:column` pointer, the source line and a caret under the value.
pub fn human(report: &Report, source: &str, filename: &str) -> String {
    let mut out = String::new();
    for d in &report.errors {
        render_one(&mut out, d, source, filename);
    }
    for w in &report.warnings {
        let text = w.strip_prefix("ProjectWarning: ").unwrap_or(w);
        let _ = writeln!(out, "warning: {text}");
    }
    out
}

fn render_one(out: &mut String, d: &Diagnostic, source: &str, filename: &str) {
    let mut lines = d.message.lines();
    let _ = writeln!(out, "error: {}", lines.next().unwrap_or(""));
    for rest in lines {
        let _ = writeln!(out, "       {rest}");
    }
    let _ = writeln!(out, "  --> {filename}:{}:{}", d.line, d.column);
    let Some(text) = source.lines().nth(d.line.saturating_sub(1)) else {
        out.push('\n');
        return;
    };
    let text = text.trim_end_matches('\r');
    let gutter = d.line.to_string().len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{} | {}", d.line, text.replace('\t', " "));
    let col = d.column.saturating_sub(1);
    let visible = text.chars().count();
    let width = if d.len == 0 {
        1
    } else {
        // Underline the value, but not beyond the end of its first line.
        let value_chars = source
            .get(d.offset..d.offset + d.len)
            .map(|s| s.lines().next().unwrap_or("").trim_end().chars().count())
            .unwrap_or(1);
        value_chars.clamp(1, visible.saturating_sub(col).max(1))
    };
    let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col), "^".repeat(width));
    out.push('\n');
}

/// The machine-readable form: `{"valid", "errors": [{"message", "line", "column", "kind"}], "warnings"}`.
pub fn json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "valid": report.is_valid(),
        "errors": report.errors.iter().map(|d| serde_json::json!({
            "message": d.message,
            "line": d.line,
            "column": d.column,
            "kind": d.kind,
        })).collect::<Vec<_>>(),
        "warnings": report.warnings,
    })
}
