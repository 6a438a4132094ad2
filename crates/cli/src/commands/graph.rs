//! `warden graph [PATH]`: the dependency graph as Mermaid, DOT or JSON, or a run order.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use warden_pipeline::escape::escape_name;

/// Output formats of `warden graph`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// Nodes and edges as JSON.
    Json,
}

/// Arguments of `warden graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The project file, or a directory holding `project.yaml` [default: ./project.yaml].
    pub path: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "mermaid")]
    pub format: GraphFormat,
    /// Print a run order (one action per line, dependencies first) instead of the graph.
    #[arg(long)]
    pub order: bool,
    /// Only these actions and what they need (`run_all` means every action).
    #[arg(long = "action", value_name = "ACTION")]
    pub actions: Vec<String>,
}

/// Runs `warden graph`.
pub fn run(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let path = super::project_path(args.path.as_deref());
    let file = match super::read_project(&path) {
        Ok(file) => file,
        Err(super::ProjectFileError::Unreadable(e)) => return Ok(super::report_unreadable(&e)),
        Err(super::ProjectFileError::NotUtf8 { message }) => {
            eprint!("{message}");
            return Ok(ExitCode::from(1));
        }
    };
    let name = warden_pipeline::escape::escape_path(&file.path).into_owned();
    let mut pipeline = match warden_pipeline::load(&file.text) {
        Ok(p) => p,
        Err(report) => {
            eprint!(
                "{}",
                warden_pipeline::render::human(&report, &file.text, &name)
            );
            eprintln!("{name} is invalid: run `warden check` for details");
            return Ok(ExitCode::from(1));
        }
    };
    if !args.actions.is_empty() {
        let requested: Vec<&str> = args.actions.iter().map(String::as_str).collect();
        for a in &requested {
            if *a != warden_pipeline::RUN_ALL_COMMAND && !pipeline.actions.contains_key(*a) {
                let valid: Vec<String> = pipeline
                    .all_actions()
                    .into_iter()
                    .map(|v| escape_name(v).into_owned())
                    .collect();
                bail!(
                    "action `{}` is not in {name}; valid actions are: {}",
                    escape_name(a),
                    valid.join(", ")
                );
            }
        }
        let keep: Vec<String> = pipeline
            .dependency_closure(&requested)
            .into_iter()
            .map(str::to_string)
            .collect();
        pipeline.actions.retain(|k, _| keep.contains(k));
    }
    if args.order {
        for action in pipeline.topological_order() {
            println!("{}", escape_name(action));
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        GraphFormat::Mermaid => print!("{}", pipeline.to_mermaid()),
        GraphFormat::Dot => print!("{}", pipeline.to_dot()),
        GraphFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&pipeline.to_graph_json())?
        ),
    }
    Ok(ExitCode::SUCCESS)
}
