//! Errors and warnings with the place in the source they point at.

use serde::Serialize;

/// What kind of problem a diagnostic reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticKind {
    /// The text is not valid YAML (syntax, duplicate keys, several documents).
    Yaml,
    /// A rule of the pipeline format is broken; the text matches the reference validator.
    Validation,
    /// An input on which the reference library crashes with a bare Python exception;
    /// warden reports it as a validation error instead.
    ReferenceCrash,
    /// A check the reference does not make (cycles in `needs`).
    Extra,
}

/// One error, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// What kind of problem this is.
    pub kind: DiagnosticKind,
    /// The message (reference-compatible text for `Validation`).
    pub message: String,
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column (in characters) of the offending value.
    pub column: usize,
    /// Byte offset of the offending value in the source.
    pub offset: usize,
    /// Length in bytes of the offending value (at least 1 where the source has text there).
    pub len: usize,
}

/// A source position: byte offset, 1-based line and column. Stored as `u32`
/// (a 4 GiB project file is not a thing) to keep the YAML tree small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Pos {
    /// Byte offset.
    pub offset: u32,
    /// 1-based line.
    pub line: u32,
    /// 1-based column in characters.
    pub column: u32,
}

impl Pos {
    /// A position from `usize` parts (saturating).
    pub fn new(offset: usize, line: usize, column: usize) -> Pos {
        let c = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Pos {
            offset: c(offset),
            line: c(line),
            column: c(column),
        }
    }
}

/// A span of source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    /// Where it starts.
    pub start: Pos,
    /// Where it ends (exclusive).
    pub end: Pos,
}

impl Diagnostic {
    /// A diagnostic at a span.
    pub fn new(kind: DiagnosticKind, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            kind,
            message: message.into(),
            line: span.start.line.max(1) as usize,
            column: span.start.column.max(1) as usize,
            offset: span.start.offset as usize,
            len: span.end.offset.saturating_sub(span.start.offset) as usize,
        }
    }
}

/// The result of checking a `project.yaml`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The pipeline, when there are no errors.
    #[serde(skip)]
    pub pipeline: Option<crate::Pipeline>,
    /// Every error found. The first one is the one the reference validator reports.
    pub errors: Vec<Diagnostic>,
    /// Warnings (old version, `run_all` action name), in the reference's text.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the file is valid.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The error the reference validator would report.
    pub fn first_error(&self) -> Option<&Diagnostic> {
        self.errors.first()
    }
}
