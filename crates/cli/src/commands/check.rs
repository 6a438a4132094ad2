//! `warden check [PATH]`: validate a project.yaml and report every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

/// Output formats of `warden check`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    /// Compiler-style messages with the source line and a caret.
    Human,
    /// One JSON object: `{"valid", "errors": [{"message", "line", "column"}], "warnings"}`.
    Json,
}

/// Arguments of `warden check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The project file, or a directory holding `project.yaml` [default: ./project.yaml].
    pub path: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: CheckFormat,
}

/// Runs `warden check`: exit 0 valid, 1 invalid, 2 cannot read (missing, not a
/// regular file, larger than [`warden_pipeline::MAX_PROJECT_FILE_BYTES`]).
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let path = super::project_path(args.path.as_deref());
    let file = match super::read_project(&path) {
        Ok(file) => file,
        Err(super::ProjectFileError::Unreadable(e)) => return Ok(super::report_unreadable(&e)),
        Err(super::ProjectFileError::NotUtf8 { message }) => {
            if args.format == CheckFormat::Json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "errors": [{"message": "the file is not valid UTF-8 text", "line": 1, "column": 1, "kind": "yaml"}], "warnings": []})
                );
            } else {
                eprint!("{message}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let (report, tree) = warden_pipeline::check_keeping_tree(&file.text);
    let name = warden_pipeline::escape::escape_path(&file.path).into_owned();
    match args.format {
        CheckFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&warden_pipeline::render::json(&report))?
            );
        }
        CheckFormat::Human => {
            eprint!(
                "{}",
                warden_pipeline::render::human(&report, &file.text, &name)
            );
            match &report.pipeline {
                Some(p) => println!(
                    "{name} is valid: {} action{}",
                    p.actions.len(),
                    if p.actions.len() == 1 { "" } else { "s" }
                ),
                None => eprintln!(
                    "{name} is invalid: {} error{}",
                    report.errors.len(),
                    if report.errors.len() == 1 { "" } else { "s" }
                ),
            }
        }
    }
    let code = if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    // The process ends here: freeing the YAML tree, the pipeline and the text one
    // allocation at a time would only cost time (issue 13).
    std::mem::forget(report);
    std::mem::forget(tree);
    std::mem::forget(file);
    Ok(code)
}
