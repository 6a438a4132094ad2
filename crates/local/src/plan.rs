//! Planning a local run against the study's history.

use std::collections::HashMap;
use std::path::Path;

use warden_pipeline::Pipeline;
use warden_planner::{JobRequest as PlanRequest, JobState, Plan, PriorJob};
use warden_state::{Job, JobRequestStatus, NewJob, NewJobRequest};

use crate::PlanError;

/// The first shell word of a run command (its image).
pub(crate) fn first_word(command: &str) -> String {
    warden_pipeline::python::shlex_split(command)
        .ok()
        .and_then(|p| p.into_iter().next())
        .unwrap_or_default()
}

/// `<prefix>/<name>:<tag>`.
pub(crate) fn full_image(prefix: &str, image: String) -> String {
    format!("{}/{}", prefix.trim_end_matches('/'), image)
}

/// Plans against the workspace state; the closure run inside the store's
/// per-workspace transaction.
pub(crate) fn plan_jobs(
    pipeline: &Pipeline,
    dir: &Path,
    req: &mut NewJobRequest,
    state: &[Job],
    actions: &[String],
    force: bool,
    nothing: &mut Option<Vec<String>>,
) -> Result<Vec<NewJob>, PlanError> {
    let mut history: HashMap<String, PriorJob> = HashMap::new();
    for job in state {
        let Some(state) = JobState::parse(job.state.as_str()) else {
            continue;
        };
        let mut prior = PriorJob::new(job.id.clone(), state);
        let missing = job
            .outputs
            .as_ref()
            .is_some_and(|outs| outs.keys().any(|p| !dir.join(p).is_file()));
        if missing {
            prior = prior.with_outputs_missing();
        }
        history.insert(job.action.clone(), prior);
    }
    let request = PlanRequest::new(req.id.clone(), actions.iter().cloned())
        .with_force_run_dependencies(force)
        .with_dummy_data(true);
    match warden_planner::plan(pipeline, &request, &history)? {
        Plan::NothingToDo(n) => {
            req.status = JobRequestStatus::NothingToDo;
            req.status_message = n.message().to_string();
            *nothing = Some(n.local_run_lines().iter().map(|s| s.to_string()).collect());
            Ok(Vec::new())
        }
        plan => Ok(plan
            .into_jobs()
            .into_iter()
            .map(|j| NewJob {
                action: j.action.to_string(),
                run_command: j.run_command.clone(),
                image: j.image.to_string(),
                output_spec: j.output_spec.to_json(),
                requires_outputs_from: j.requires_outputs_from.to_vec(),
                wait_for_job_ids: j.wait_for_job_ids.clone(),
                requires_db: j.requires_db,
            })
            .collect()),
    }
}
