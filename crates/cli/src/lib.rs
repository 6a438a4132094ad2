//! The `warden` command line: argument parsing, the commands, and the one place
//! where errors are rendered for people.
//!
//! Exit codes: 0 success, 1 a failure the user can fix (an invalid pipeline, a
//! failed job), 2 a usage error or a file that cannot be read.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod commands;

/// Runs research pipelines against sensitive data, and controls what leaves.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a project.yaml: every error with file, line and column.
    Check(commands::check::CheckArgs),
    /// Show the dependency graph of a project.yaml.
    Graph(commands::graph::GraphArgs),
    /// Run actions locally in Docker, on dummy data, as a backend would.
    Run(commands::run::RunArgs),
    /// Run the controller: the JSON API for researchers and agents, and the scheduler.
    Serve(warden_server::cli::ServeArgs),
    /// Administer the controller: organisations, projects, workspaces, backends, users.
    Admin(warden_server::cli::AdminArgs),
}

/// Parses the arguments, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => commands::check::run(&args),
        Command::Graph(args) => commands::graph::run(&args),
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => warden_server::cli::serve(args).map_err(anyhow::Error::from),
        Command::Admin(args) => warden_server::cli::admin(args).map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
