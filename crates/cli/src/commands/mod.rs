//! One module per subcommand.

pub mod check;
pub mod graph;
pub mod run;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

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

/// Reads a project file. Invalid UTF-8 is reported as a YAML error by the caller,
/// so only I/O failures are errors here.
pub fn read_project(path: &Path) -> anyhow::Result<Result<ProjectFile, (PathBuf, String)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Ok(ProjectFile {
            path: path.to_path_buf(),
            text,
        })),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let column = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            Ok(Err((
                path.to_path_buf(),
                format!(
                    "error: the file is not valid UTF-8 text\n  --> {}:{line}:{column}\n",
                    path.display()
                ),
            )))
        }
    }
}
