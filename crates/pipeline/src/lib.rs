//! `project.yaml`: parsing with source spans, the pipeline model, validation
//! compatible with OpenSAFELY's `pipeline` library, and the dependency graph.
//!
//! ```
//! let report = warden_pipeline::check(
//!     "version: '4.0'\nactions:\n  a:\n    run: python:v2 python a.py\n    outputs:\n      moderately_sensitive:\n        t: output/t.csv\n",
//! );
//! assert!(report.is_valid());
//! let pipeline = report.pipeline.unwrap();
//! assert_eq!(pipeline.all_actions(), vec!["a"]);
//! ```
//!
//! Every error carries the line and column of the value it is about. The first
//! error of a [`Report`] is, word for word, the one the reference validator
//! (`opensafely==2.0.1`, vendored `pipeline`) reports; the others follow in the
//! reference's check order, then warden's own checks (cycles in `needs`).
//! Where the reference crashes with a bare Python exception (an empty file, a
//! `run` with an unbalanced quote, a version above 5...), warden reports an
//! error of kind [`DiagnosticKind::ReferenceCrash`] instead.

#![deny(missing_docs)]

pub mod diagnostic;
pub mod escape;
mod graph;
pub mod model;
pub mod python;
pub mod read;
pub mod render;
pub mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, DiagnosticKind, Report};
pub use model::{
    Action, Command, Expectations, LEVEL4_MAX_CSV_ROWS, LEVEL4_MAX_FILESIZE, Outputs, Pipeline,
    PrivacyLevel, RUN_ALL_COMMAND, is_database_action,
};
pub use read::{MAX_PROJECT_FILE_BYTES, ReadError, read_project_file};
pub use validate::{LEVEL4_FILE_TYPES, check, check_keeping_tree};

/// Parses and validates, returning the pipeline or the report of what is wrong.
pub fn load(source: &str) -> Result<Pipeline, Box<Report>> {
    let mut report = check(source);
    match report.pipeline.take() {
        Some(p) if report.errors.is_empty() => Ok(p),
        _ => Err(Box::new(report)),
    }
}
