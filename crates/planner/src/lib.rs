//! Planning: a job request becomes the jobs to create.
//!
//! One pure function, [`plan`], with no I/O: give it the [`Pipeline`], the
//! [`JobRequest`] (its id, the requested action names, possibly `run_all`,
//! and `force_run_dependencies`) and the workspace [`History`] (for each
//! action, its latest non-cancelled job: id, [`JobState`], and whether all its
//! recorded outputs are still present, which the caller checks). It answers
//! with the [`NewJob`]s to create, dependencies first, or
//! [`Plan::NothingToDo`], or a [`PlanError`]. The backend and local runs use
//! it alike.
//!
//! # The rules
//!
//! Starting from the requested actions (every action in file order for
//! `run_all`, except an action itself called `run_all`), the planner walks
//! `needs` depth first. An action whose latest job is kept stops the walk
//! there: its own needs are not looked at. For each action reached:
//!
//! | latest job | new job? |
//! |---|---|
//! | pending or running | no: reused and waited on, never duplicated |
//! | any other, action requested by name | **yes, always** |
//! | none (never run, or only cancelled) | yes |
//! | failed | yes |
//! | succeeded, a recorded output missing | yes |
//! | succeeded, `force_run_dependencies` | yes |
//! | succeeded, outputs present | no: reused, not waited on |
//!
//! With `run_all` no action counts as requested by name, so only what never
//! ran, failed or lost an output runs (everything, with force).
//!
//! A new job waits for the jobs of its needs that are in flight: new in this
//! plan, or already pending/running, also for other requests
//! ([`NewJob::wait_for_job_ids`]). It requires the outputs of all its needs.
//! Its id is deterministic ([`job_id`]). A diamond gets one job per action.
//! Each job says why it runs ([`RunReason`]), and carries its shell-quoted
//! run command, text-compatible with job-runner's
//! ([`NewJob::run_command`]; [`JobRequest::dummy_data`] for local runs).
//!
//! When nothing needs to run, the answer is [`NothingToDo::AllSucceeded`]
//! (`All actions have already completed successfully`) for `run_all`, else
//! [`NothingToDo::AllScheduled`] (`All requested actions were already
//! scheduled to run`).
//!
//! Errors, with the reference's texts: no action (`At least one action must
//! be supplied`); an unknown action (`Action '<x>' not found in
//! project.yaml`), both with the valid action names; and, where job-runner
//! would recurse until it crashes, a cycle in `needs`, named as a path
//! (`a -> b -> a`). Nothing recurses, so 100,000-action chains plan fine.
//!
//! Deliberate differences from job-runner: an unknown name next to `run_all`
//! is an error rather than ignored; wait lists have no duplicates when an
//! action lists a need twice.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use warden_planner::{plan, JobRequest, JobState, Plan, PriorJob};
//! # use indexmap::IndexMap;
//! # use warden_pipeline::{Action, Command, Outputs, Pipeline};
//! # fn action(name: &str, run: &str, needs: &[&str]) -> (String, Action) {
//! #     let outputs = Outputs {
//! #         highly_sensitive: Some([("data".to_owned(), format!("output/{name}.csv"))].into_iter().collect()),
//! #         ..Outputs::default()
//! #     };
//! #     let command = Command { raw: run.to_owned(), parts: run.split(' ').map(str::to_owned).collect() };
//! #     let needs = needs.iter().map(|s| s.to_string()).collect();
//! #     let action = Action { id: name.to_owned(), run: command, outputs, needs, config: None,
//! #         dummy_data_file: None, line: 1, column: 1 };
//! #     (name.to_owned(), action)
//! # }
//! # let pipeline = Pipeline { version: 5.0, expectations: None, actions: IndexMap::from_iter([
//! #     action("extract", "ehrql:v1 generate-dataset analysis/dataset.py --output output/extract.csv", &[]),
//! #     action("model", "python:latest python analysis/model.py", &["extract"]),
//! #     action("report", "python:latest python analysis/report.py", &["model"]),
//! # ]) };
//! // `pipeline`: extract <- model <- report. `extract` already succeeded;
//! // `model` is running for another request.
//! let history = HashMap::from([
//!     ("extract".to_owned(), PriorJob::new("aaaaaaaaaaaaaaaa", JobState::Succeeded)),
//!     ("model".to_owned(), PriorJob::new("bbbbbbbbbbbbbbbb", JobState::Running)),
//! ]);
//! let request = JobRequest::new("abcdefghijklmnop", ["report"]);
//! let Plan::Jobs(jobs) = plan(&pipeline, &request, &history)? else { unreachable!() };
//! assert_eq!(jobs.len(), 1);
//! assert_eq!(jobs[0].action, "report");
//! assert_eq!(jobs[0].id, warden_planner::job_id("abcdefghijklmnop", "report"));
//! assert_eq!(jobs[0].wait_for_job_ids, ["bbbbbbbbbbbbbbbb"]);
//! assert_eq!(jobs[0].run_command, "python:latest python analysis/report.py");
//!
//! // Asking for `run_all` now creates nothing: the answer says so.
//! let history = HashMap::from([
//!     ("extract".to_owned(), PriorJob::new("aaaaaaaaaaaaaaaa", JobState::Succeeded)),
//!     ("model".to_owned(), PriorJob::new("bbbbbbbbbbbbbbbb", JobState::Succeeded)),
//!     ("report".to_owned(), PriorJob::new("cccccccccccccccc", JobState::Succeeded)),
//! ]);
//! let outcome = plan(&pipeline, &JobRequest::new("r2", ["run_all"]), &history)?;
//! let Plan::NothingToDo(nothing) = outcome else { unreachable!() };
//! assert_eq!(nothing.message(), "All actions have already completed successfully");
//! # Ok::<(), warden_planner::PlanError>(())
//! ```
//!
//! The dependency graph itself is exposed too: [`Graph`] (index-based
//! adjacency built once), [`topological_order`] and [`dependency_closure`],
//! both deterministic (file order among the actions that are ready).
//!
//! [`Pipeline`]: warden_pipeline::Pipeline

#![deny(missing_docs)]

mod command;
mod error;
mod graph;
mod id;
mod plan;

pub use error::PlanError;
pub use graph::{Graph, dependency_closure, topological_order};
pub use id::job_id;
pub use plan::{
    History, JobRequest, JobState, NewJob, NoHistory, NothingToDo, Plan, PriorJob, RunReason, plan,
};
