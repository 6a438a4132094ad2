//! Reading and checking a study's `project.yaml`.

use std::path::Path;

use warden_pipeline::Pipeline;

use crate::{PlanError, RunError};

/// A study's `project.yaml`, read and validated once.
#[derive(Debug, Clone)]
pub struct Project {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// The file's text (recorded with the job request).
    pub text: String,
}

/// Loads `project.yaml` from a study directory (through the pipeline's one
/// bounded project-file reader).
pub fn load_project(dir: &Path) -> Result<Project, RunError> {
    let path = dir.join("project.yaml");
    let bytes = match warden_pipeline::read_project_file(&path) {
        Ok(bytes) => bytes,
        Err(warden_pipeline::ReadError::NotFound { .. }) => {
            return Err(RunError::NoProject(dir.to_path_buf()));
        }
        Err(e) => return Err(RunError::Unreadable(e)),
    };
    let text = String::from_utf8(bytes).map_err(|e| RunError::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    match warden_pipeline::load(&text) {
        Ok(pipeline) => Ok(Project { pipeline, text }),
        Err(report) => Err(RunError::InvalidProject { path, text, report }),
    }
}

/// Checks the requested action names against the pipeline (and that what they
/// need can be ordered), so that a typo is reported at once: before Docker is
/// reached or the history opened. [`run`] plans with the same rules.
pub fn check_request(pipeline: &Pipeline, actions: &[String]) -> Result<(), PlanError> {
    warden_planner::Graph::new(pipeline)
        .closure(actions)
        .map(|_| ())
}
