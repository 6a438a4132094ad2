//! Rendering a [`Report`] for people (like a compiler) and for programs (JSON).
//!
//! The human form is built in time linear in the size of the source plus the
//! number of errors: the start of every line is found once ([`LineIndex`]),
//! and each error then does a bounded amount of work, because the source line
//! it shows is cut to a window of at most [`SNIPPET_CHARS`] characters around
//! the error's column (with `…` where text is left out). Everything taken from
//! the file (messages, which quote names and paths, the file name, the source
//! line) is escaped with [`crate::escape`], so a control character, an escape
//! sequence or a bidirectional override in the file never reaches the
//! terminal. The JSON form carries the messages unescaped: it is data for
//! programs (JSON itself escapes the C0 controls).

use std::fmt::Write as _;

use crate::diagnostic::{Diagnostic, Report};
use crate::escape::{escape_name, needs_escape};

/// The most characters of a source line shown under an error (escapes count
/// as their printed length). Longer lines are cut to a window around the
/// error's column.
pub const SNIPPET_CHARS: usize = 120;

/// How many characters of context to keep before the error's column when a
/// line is cut.
const CONTEXT_BEFORE: usize = 40;

#[cfg(test)]
thread_local! {
    /// Bytes of the source the renderer has looked at (tests check it is linear).
    static EXAMINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
fn examined(_bytes: usize) {
    #[cfg(test)]
    EXAMINED.with(|c| c.set(c.get() + _bytes));
}

/// The byte offset where each line of a text starts, computed once. A line
/// ends at `\n` (a `\r` before it is not part of the line), as in
/// [`str::lines`].
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    /// Indexes `source` in one pass.
    pub fn new(source: &str) -> LineIndex {
        examined(source.len());
        let mut starts = vec![0];
        starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            starts,
            len: source.len(),
        }
    }

    /// The byte range of 1-based line `line` (without its `\n` or `\r\n`), or
    /// `None` past the last line. Constant time.
    pub fn line_range(&self, source: &str, line: usize) -> Option<(usize, usize)> {
        let start = *self.starts.get(line.checked_sub(1)?)?;
        if start >= self.len {
            return None;
        }
        let mut end = self
            .starts
            .get(line)
            .map(|next| next - 1)
            .unwrap_or(self.len);
        if end > start && source.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        Some((start, end))
    }
}

/// Renders errors and warnings the way a compiler does: the message, the
/// `--> file:line:column` pointer, the source line and a caret under the value.
pub fn human(report: &Report, source: &str, filename: &str) -> String {
    let index = LineIndex::new(source);
    let filename = escape_name(filename);
    let mut out = String::new();
    for d in &report.errors {
        render_one(&mut out, d, source, &index, &filename);
    }
    for w in &report.warnings {
        let text = w.strip_prefix("ProjectWarning: ").unwrap_or(w);
        let _ = writeln!(out, "warning: {}", escape_name(text));
    }
    out
}

/// One line of a message, escaped; a message longer than a screenful is cut
/// (a name quoted in it can be as long as the file).
fn message_line(line: &str) -> String {
    const MAX: usize = 4 * SNIPPET_CHARS;
    examined(line.len().min(MAX * 4));
    match line.char_indices().nth(MAX) {
        None => escape_name(line).into_owned(),
        Some((cut, _)) => format!("{}…", escape_name(&line[..cut])),
    }
}

fn render_one(out: &mut String, d: &Diagnostic, source: &str, index: &LineIndex, filename: &str) {
    let mut lines = d.message.split('\n');
    let _ = writeln!(out, "error: {}", message_line(lines.next().unwrap_or("")));
    for rest in lines {
        let _ = writeln!(out, "       {}", message_line(rest));
    }
    let _ = writeln!(out, "  --> {filename}:{}:{}", d.line, d.column);
    let Some((start, end)) = index.line_range(source, d.line) else {
        out.push('\n');
        return;
    };
    let snippet = Snippet::new(source, start, end, d);
    let gutter = d.line.to_string().len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{} | {}", d.line, snippet.text);
    let _ = writeln!(
        out,
        "{pad} | {}{}",
        " ".repeat(snippet.caret),
        "^".repeat(snippet.width)
    );
    out.push('\n');
}

/// The part of a source line shown under an error, escaped, with where the
/// caret goes and how wide it is, in printed characters.
struct Snippet {
    text: String,
    caret: usize,
    width: usize,
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Appends `c` as printed in a snippet (escaped as by [`escape_name`], except
/// that a backslash is shown as it is written); returns its printed length.
fn push_shown(out: &mut String, c: char) -> usize {
    if c == '\t' {
        // A tab is shown as one space, so the caret lines up.
        out.push(' ');
        1
    } else if needs_escape(c) && c != '\\' {
        // The line is shown as written, so a backslash stays single; what it
        // cannot show (controls, bidi, invisible characters) is escaped.
        let before = out.len();
        out.push_str(&escape_name(c.encode_utf8(&mut [0; 4])));
        out.len() - before
    } else {
        out.push(c);
        1
    }
}

impl Snippet {
    fn new(source: &str, start: usize, end: usize, d: &Diagnostic) -> Snippet {
        let line = &source[start..end];
        // Where the error starts in the line (bytes), from its offset; the
        // column (in characters) would need a scan from the start of the line.
        let at = floor_char_boundary(line, d.offset.clamp(start, end) - start);
        // A short line is shown whole; a long one from up to CONTEXT_BEFORE
        // characters before the column.
        let short = line.len() <= SNIPPET_CHARS
            || line.chars().take(SNIPPET_CHARS + 1).count() <= SNIPPET_CHARS;
        examined(line.len().min(4 * (SNIPPET_CHARS + 1)));
        let before_start = if short {
            0
        } else {
            line[..at]
                .char_indices()
                .rev()
                .take(CONTEXT_BEFORE)
                .last()
                .map_or(at, |(i, _)| i)
        };
        let mut text = String::new();
        if before_start > 0 {
            text.push('…');
        }
        let mut caret = usize::from(before_start > 0);
        for c in line[before_start..at].chars() {
            caret += push_shown(&mut text, c);
        }
        // The rest of the window, after the column; the caret covers the
        // value up to its last non-blank character on this line.
        let value_len = d.len.min(line.len() - at);
        let mut shown = caret;
        let mut value_width = 0;
        let mut scanned = at - before_start;
        let mut cut = false;
        let budget = caret + SNIPPET_CHARS - caret.min(CONTEXT_BEFORE + 1);
        for (i, c) in line[at..].char_indices() {
            if !short && shown >= budget {
                cut = true;
                break;
            }
            shown += push_shown(&mut text, c);
            scanned += c.len_utf8();
            if i < value_len && !c.is_whitespace() {
                value_width = shown - caret;
            }
        }
        examined(scanned);
        if cut {
            text.push('…');
        }
        let width = if d.len == 0 { 1 } else { value_width.max(1) };
        Snippet { text, caret, width }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::DiagnosticKind;
    use proptest::prelude::*;

    fn examined_by(f: impl FnOnce()) -> usize {
        EXAMINED.with(|c| c.set(0));
        f();
        EXAMINED.with(|c| c.get())
    }

    /// `n` actions with a moderately_sensitive `.pdf` output each: `n` errors.
    fn many_errors(n: usize) -> String {
        let mut s = String::from("version: '4.0'\nactions:\n");
        for i in 0..n {
            s.push_str(&format!(
                "  a{i}:\n    run: python:v2 python a{i}.py\n    outputs:\n      moderately_sensitive:\n        t: output/a{i}.pdf\n"
            ));
        }
        s
    }

    #[test]
    fn rendering_many_errors_is_linear_and_correct() {
        let n = 40_000;
        let source = many_errors(n);
        let report = crate::check(&source);
        assert_eq!(report.errors.len(), n);
        let mut out = String::new();
        let work = examined_by(|| out = human(&report, &source, "project.yaml"));
        // One pass over the source for the line index, then a bounded amount per error.
        assert!(
            work <= source.len() + n * 8 * SNIPPET_CHARS,
            "examined {work} bytes for {} bytes and {n} errors",
            source.len()
        );
        // Every error is there, with its own line and caret.
        let blocks: Vec<&str> = out
            .split("\n\n")
            .filter(|b| b.starts_with("error: "))
            .collect();
        assert_eq!(blocks.len(), n);
        for (i, block) in [0, 1, n / 2, n - 1].map(|i| (i, blocks[i])) {
            let line = 7 + 5 * i;
            assert_eq!(
                block,
                format!(
                    "error: Output path output/a{i}.pdf is invalid: output/a{i}.pdf is not an allowed file type for moderately_sensitive outputs\n  --> project.yaml:{line}:12\n{pad} |\n{line} |         t: output/a{i}.pdf\n{pad} |            {carets}",
                    pad = " ".repeat(line.to_string().len()),
                    carets = "^".repeat(format!("output/a{i}.pdf").len()),
                )
            );
        }
    }

    #[test]
    fn work_grows_linearly_with_the_number_of_errors() {
        let measure = |n: usize| {
            let source = many_errors(n);
            let report = crate::check(&source);
            examined_by(|| {
                human(&report, &source, "p");
            })
        };
        let (small, large) = (measure(500), measure(4000));
        // 8 times the errors: about 8 times the work, not 64.
        assert!(large <= small * 10, "{small} -> {large}");
    }

    fn diag(source: &str, offset: usize, len: usize) -> Diagnostic {
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
        Diagnostic {
            kind: DiagnosticKind::Validation,
            message: "bad".into(),
            line,
            column,
            offset,
            len,
        }
    }

    fn render(source: &str, d: Diagnostic) -> String {
        let report = Report {
            pipeline: None,
            errors: vec![d],
            warnings: vec![],
        };
        human(&report, source, "p")
    }

    #[test]
    fn a_long_line_is_cut_around_the_column() {
        let line = format!("{}HERE{}", "a".repeat(500_000), "b".repeat(500_000));
        let d = diag(&line, 500_000, 4);
        let mut out = String::new();
        let work = examined_by(|| out = render(&line, d));
        assert!(work < line.len() + 10 * SNIPPET_CHARS, "{work}");
        assert!(out.len() < 4 * SNIPPET_CHARS, "{}", out.len());
        let expected_text = format!(
            "…{}HERE{}…",
            "a".repeat(CONTEXT_BEFORE),
            "b".repeat(SNIPPET_CHARS - CONTEXT_BEFORE - 1 - 4)
        );
        assert_eq!(
            out,
            format!(
                "error: bad\n  --> p:1:500001\n  |\n1 | {expected_text}\n  | {}^^^^\n\n",
                " ".repeat(CONTEXT_BEFORE + 1)
            )
        );
    }

    #[test]
    fn control_characters_in_the_line_and_message_are_escaped() {
        let source = "x: \u{1b}[2J\u{202e}value\tend\n";
        let mut d = diag(source, 3, "\u{1b}[2J\u{202e}value".len());
        d.message = "Output path \u{1b}]0;pwned\u{7} is invalid".into();
        let out = render(source, d);
        assert_eq!(
            out,
            "error: Output path \\x1b]0;pwned\\x07 is invalid\n  --> p:1:4\n  |\n1 | x: \\x1b[2J\\u{202e}value end\n  |    ^^^^^^^^^^^^^^^^^^^^\n\n"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the line holds and wherever the error is: the output has no
        /// control or bidi character (other than its own newlines), no shown
        /// line is longer than a bounded window, and the caret sits under the
        /// error's first character.
        #[test]
        fn snippets_are_safe_and_bounded(
            pieces in proptest::collection::vec(prop_oneof![
                "[a-z ]{1,40}", Just("\u{1b}".to_string()), Just("\u{202e}".to_string()),
                Just("\t".to_string()), Just("é".to_string()), Just("\r".to_string()),
                Just("\u{85}".to_string()), Just("数".to_string()),
            ], 1..200),
            at in any::<proptest::sample::Index>(),
            len in 0usize..50,
        ) {
            let line: String = pieces.concat();
            let line = line.trim_end_matches('\r').to_string();
            prop_assume!(!line.is_empty());
            let bounds: Vec<usize> = (0..line.len()).filter(|i| line.is_char_boundary(*i)).collect();
            let offset = bounds[at.index(bounds.len())];
            let source = format!("{line}\nnext\n");
            let len = len.min(line.len() - offset);
            let out = render(&source, diag(&source, offset, len));
            prop_assert!(!out.chars().any(|c| c != '\n' && (c.is_control() || needs_escape(c) && c != '\\')), "{out:?}");
            let lines: Vec<&str> = out.lines().collect();
            let shown = lines[3].strip_prefix("1 | ").unwrap();
            prop_assert!(shown.chars().count() <= 12 * SNIPPET_CHARS);
            let caret = lines[4].strip_prefix("  | ").unwrap();
            let pad = caret.chars().take_while(|c| *c == ' ').count();
            // The character above the caret is the error's first character, shown.
            let first = line[offset..].chars().next().unwrap();
            let mut expect = String::new();
            push_shown(&mut expect, first);
            let above: String = shown.chars().skip(pad).take(expect.chars().count()).collect();
            prop_assert_eq!(above, expect);
        }
    }
}
