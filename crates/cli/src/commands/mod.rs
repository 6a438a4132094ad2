//! One module per subcommand.

pub mod check;
pub mod graph;
pub mod run;

use std::path::{Path, PathBuf};

/// A `project.yaml` read from disk, with the name to show in messages.
pub struct ProjectFile {
    /// The path as the user gave it (or the default).
    pub path: PathBuf,
    /// The text.
    pub text: String,
}

/// Resolves the `PATH` argument: a file, a directory holding `project.yaml`, or
/// `./project.yaml` by default.
pub fn project_path(arg: Option<&Path>) -> PathBuf {
    match arg {
        None => PathBuf::from("project.yaml"),
        Some(p) if p.is_dir() => p.join("project.yaml"),
        Some(p) => p.to_path_buf(),
    }
}

/// Why a project file could not be used.
pub enum ProjectFileError {
    /// It could not be read (missing, not a regular file, too large, I/O):
    /// exit 2.
    Unreadable(warden_pipeline::ReadError),
    /// It is not UTF-8: reported like a syntax error at `line:column`, exit 1.
    NotUtf8 {
        /// The rendered error.
        message: String,
    },
}

/// Reads a project file with [`warden_pipeline::read_project_file`] (regular
/// files only, at most [`warden_pipeline::MAX_PROJECT_FILE_BYTES`]).
pub fn read_project(path: &Path) -> Result<ProjectFile, ProjectFileError> {
    let bytes = warden_pipeline::read_project_file(path).map_err(ProjectFileError::Unreadable)?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(ProjectFile {
            path: path.to_path_buf(),
            text,
        }),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let column = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            Err(ProjectFileError::NotUtf8 {
                message: format!(
                    "error: the file is not valid UTF-8 text\n  --> {}:{line}:{column}\n",
                    warden_pipeline::escape::escape_path(path)
                ),
            })
        }
    }
}

/// Prints why a project file cannot be read and gives the exit code (2).
pub fn report_unreadable(e: &warden_pipeline::ReadError) -> std::process::ExitCode {
    match e {
        warden_pipeline::ReadError::Io { source, .. } => eprintln!("error: {e}: {source}"),
        _ => eprintln!("error: {e}"),
    }
    std::process::ExitCode::from(2)
}
