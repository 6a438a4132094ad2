//! The planner: a request, a pipeline and the workspace history in, the new
//! jobs (or "nothing to do") out.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use indexmap::IndexMap;
use warden_pipeline::{Outputs, Pipeline};

use crate::PlanError;
use crate::command::run_command;
use crate::graph::{Graph, UNKNOWN};
use crate::id::JobIdPrefix;

/// The coarse state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Created, not started.
    Pending,
    /// Started, not finished.
    Running,
    /// Finished unsuccessfully (cancelled jobs are not history at all).
    Failed,
    /// Finished successfully.
    Succeeded,
}

impl JobState {
    /// The name used in storage and APIs: `pending`, `running`, `failed`, `succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Failed => "failed",
            JobState::Succeeded => "succeeded",
        }
    }

    /// Parses [`JobState::as_str`]'s names.
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Pending,
            JobState::Running,
            JobState::Failed,
            JobState::Succeeded,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// Pending or running: in flight, so never duplicated and always waited on.
    pub fn is_in_flight(self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The latest non-cancelled job of one action in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorJob {
    /// Its id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// Whether every output it recorded is still there (the caller checks;
    /// the planner does no I/O). Only consulted for succeeded jobs: one with
    /// an output missing is run again.
    pub outputs_present: bool,
}

impl PriorJob {
    /// A job whose recorded outputs are all present.
    pub fn new(id: impl Into<String>, state: JobState) -> Self {
        PriorJob {
            id: id.into(),
            state,
            outputs_present: true,
        }
    }

    /// The same job with at least one recorded output missing.
    pub fn with_outputs_missing(mut self) -> Self {
        self.outputs_present = false;
        self
    }
}

/// The workspace history: the latest non-cancelled job of each action.
///
/// Implemented for maps from action name to [`PriorJob`]. Entries for actions
/// that are no longer in the pipeline are simply never asked for.
pub trait History {
    /// The latest non-cancelled job of `action`, if it ever ran.
    fn latest(&self, action: &str) -> Option<&PriorJob>;
}

impl<S: BuildHasher> History for HashMap<String, PriorJob, S> {
    fn latest(&self, action: &str) -> Option<&PriorJob> {
        self.get(action)
    }
}

impl<S: BuildHasher> History for IndexMap<String, PriorJob, S> {
    fn latest(&self, action: &str) -> Option<&PriorJob> {
        self.get(action)
    }
}

impl History for BTreeMap<String, PriorJob> {
    fn latest(&self, action: &str) -> Option<&PriorJob> {
        self.get(action)
    }
}

impl<H: History + ?Sized> History for &H {
    fn latest(&self, action: &str) -> Option<&PriorJob> {
        (**self).latest(action)
    }
}

/// A workspace where nothing has run yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

impl History for NoHistory {
    fn latest(&self, _action: &str) -> Option<&PriorJob> {
        None
    }
}

/// What was asked for: a job request as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRequest {
    /// The request id; job ids derive from it.
    pub id: String,
    /// Action names as requested, possibly including `run_all`.
    pub requested_actions: Vec<String>,
    /// Re-run the dependencies of the requested actions even when they
    /// succeeded.
    pub force_run_dependencies: bool,
    /// The jobs will run on dummy data (a local run). Only legacy
    /// `cohortextractor generate_cohort` commands care: they are given
    /// `--dummy-data-file=…` or `--expectations-population=N`.
    pub dummy_data: bool,
}

impl JobRequest {
    /// A request for `actions`, without force, for a real backend.
    pub fn new<I, S>(id: impl Into<String>, actions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        JobRequest {
            id: id.into(),
            requested_actions: actions.into_iter().map(Into::into).collect(),
            force_run_dependencies: false,
            dummy_data: false,
        }
    }

    /// Sets [`JobRequest::force_run_dependencies`].
    pub fn with_force_run_dependencies(mut self, force: bool) -> Self {
        self.force_run_dependencies = force;
        self
    }

    /// Sets [`JobRequest::dummy_data`].
    pub fn with_dummy_data(mut self, dummy_data: bool) -> Self {
        self.dummy_data = dummy_data;
        self
    }
}

/// Why an action gets a new job, for telling users (cheap and explainable:
/// the planner never guesses from timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunReason {
    /// The action was requested by name: it always runs (unless in flight).
    Requested,
    /// The action never ran in this workspace (or its job was cancelled).
    NeverRun,
    /// Its latest job failed.
    PreviouslyFailed,
    /// Its latest job succeeded but an output it recorded is gone.
    OutputsMissing,
    /// It succeeded, but the request forces dependencies to re-run.
    Forced,
}

impl RunReason {
    /// A short explanation.
    pub fn describe(self) -> &'static str {
        match self {
            RunReason::Requested => "requested",
            RunReason::NeverRun => "never run",
            RunReason::PreviouslyFailed => "failed last time",
            RunReason::OutputsMissing => "outputs missing",
            RunReason::Forced => "dependencies forced to re-run",
        }
    }
}

impl fmt::Display for RunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A job to create. It borrows the names and specs from the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob<'p> {
    /// Deterministic id: see [`crate::job_id`].
    pub id: String,
    /// The action's name.
    pub action: &'p str,
    /// Why it runs.
    pub reason: RunReason,
    /// Ids of the jobs of its needs that are in flight: new in this plan, or
    /// pending/running already (possibly for another request). Needs that
    /// already succeeded are not waited on. No duplicates, needs order.
    pub wait_for_job_ids: Vec<String>,
    /// Every action it needs, as written.
    pub requires_outputs_from: &'p [String],
    /// The shell-quoted command: `image:tag args…`, then `--config <json>`
    /// when the action has a `config:` (Python `json.dumps` text, `'` written
    /// as `\u0027`), then, for legacy `cohortextractor generate_cohort`, the
    /// dummy-data and `--output-dir=<dir>` options job-runner adds.
    pub run_command: String,
    /// The image and tag as written (`python:latest`), without registry.
    pub image: &'p str,
    /// The declared outputs by privacy level.
    pub output_spec: &'p Outputs,
    /// Whether the action reads the database on a real backend.
    pub requires_db: bool,
}

/// The answer when no new job is needed. It is an answer, not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NothingToDo {
    /// `run_all` was requested and nothing needs running.
    AllSucceeded,
    /// Every requested action is already pending or running.
    AllScheduled,
}

impl NothingToDo {
    /// The backend's message.
    pub fn message(self) -> &'static str {
        match self {
            NothingToDo::AllSucceeded => "All actions have already completed successfully",
            NothingToDo::AllScheduled => "All requested actions were already scheduled to run",
        }
    }

    /// What a local run prints, line by line (then it exits 0).
    pub fn local_run_lines(self) -> &'static [&'static str] {
        match self {
            NothingToDo::AllSucceeded => &[
                "=> All actions already completed successfully",
                "   Use -f option to force everything to re-run",
            ],
            NothingToDo::AllScheduled => {
                &["=> All requested actions were already scheduled to run"]
            }
        }
    }
}

impl fmt::Display for NothingToDo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The outcome of planning.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan<'p> {
    /// New jobs, never empty, each after the new jobs it waits for.
    Jobs(Vec<NewJob<'p>>),
    /// Nothing needs to run.
    NothingToDo(NothingToDo),
}

impl<'p> Plan<'p> {
    /// The new jobs (none for [`Plan::NothingToDo`]).
    pub fn jobs(&self) -> &[NewJob<'p>] {
        match self {
            Plan::Jobs(jobs) => jobs,
            Plan::NothingToDo(_) => &[],
        }
    }

    /// The new jobs, by value.
    pub fn into_jobs(self) -> Vec<NewJob<'p>> {
        match self {
            Plan::Jobs(jobs) => jobs,
            Plan::NothingToDo(_) => Vec::new(),
        }
    }
}

/// Plans `request` against `pipeline` and the workspace `history`.
///
/// See the [crate documentation](crate) for the rules. Builds a [`Graph`];
/// use [`Graph::plan`] to plan several requests against one pipeline.
///
/// # Errors
///
/// [`PlanError::NoActions`], [`PlanError::UnknownAction`] (also for a name
/// next to `run_all`), [`PlanError::UnknownNeed`] or [`PlanError::Cycle`]
/// among the actions that would run.
pub fn plan<'p, H: History + ?Sized>(
    pipeline: &'p Pipeline,
    request: &JobRequest,
    history: &H,
) -> Result<Plan<'p>, PlanError> {
    Graph::new(pipeline).plan(request, history)
}

/// Where an action stands during planning.
#[derive(Clone, Copy)]
enum Slot<'h> {
    /// Not reached yet.
    Unseen,
    /// On the depth-first path: its needs are being planned.
    Open,
    /// Its latest job stands.
    Reused(&'h PriorJob),
    /// It gets the new job at this position of the plan.
    New(u32),
}

/// An action whose needs are being planned.
struct Frame {
    node: u32,
    next_need: u32,
    reason: RunReason,
}

/// Whether an action gets a new job, and why; `None` keeps its latest job.
fn decide(prior: Option<&PriorJob>, requested: bool, force: bool) -> Option<RunReason> {
    match prior {
        // In flight: never duplicated, whoever asks.
        Some(p) if p.state.is_in_flight() => None,
        _ if requested => Some(RunReason::Requested),
        None => Some(RunReason::NeverRun),
        Some(p) if p.state == JobState::Failed => Some(RunReason::PreviouslyFailed),
        Some(p) if !p.outputs_present => Some(RunReason::OutputsMissing),
        Some(_) if force => Some(RunReason::Forced),
        Some(_) => None,
    }
}

/// Reaches action `v`: keeps its latest job, or opens it so that its needs
/// are planned first.
fn reach<'h, H: History + ?Sized>(
    graph: &Graph<'_>,
    history: &'h H,
    requested: &[bool],
    force: bool,
    v: u32,
    slots: &mut [Slot<'h>],
    stack: &mut Vec<Frame>,
) {
    let prior = history.latest(graph.name(v as usize));
    match decide(prior, requested[v as usize], force) {
        Some(reason) => {
            slots[v as usize] = Slot::Open;
            stack.push(Frame {
                node: v,
                next_need: 0,
                reason,
            });
        }
        None => {
            let prior = prior.expect("only an existing job is kept");
            slots[v as usize] = Slot::Reused(prior);
        }
    }
}

impl<'p> Graph<'p> {
    /// Plans `request` against this graph's pipeline; see [`plan`].
    ///
    /// # Errors
    ///
    /// As [`plan`].
    pub fn plan<H: History + ?Sized>(
        &self,
        request: &JobRequest,
        history: &H,
    ) -> Result<Plan<'p>, PlanError> {
        if request.requested_actions.is_empty() {
            return Err(PlanError::NoActions {
                valid_actions: self.valid_actions(),
            });
        }
        let n = self.len();
        let (named, run_all) = self.resolve(&request.requested_actions)?;
        let mut requested = vec![false; n];
        for &i in &named {
            requested[i as usize] = true;
        }
        let roots: Vec<u32> = if run_all {
            self.run_all_actions().map(|i| i as u32).collect()
        } else {
            named
        };

        let ids = JobIdPrefix::new(&request.id);
        let force = request.force_run_dependencies;
        let mut slots: Vec<Slot<'_>> = vec![Slot::Unseen; n];
        // `stamp[c] == v` once need `c` is in `v`'s wait list (no duplicates).
        let mut stamp: Vec<u32> = vec![UNKNOWN; n];
        let mut stack: Vec<Frame> = Vec::new();
        let mut jobs: Vec<NewJob<'p>> = Vec::new();

        for root in roots {
            if !matches!(slots[root as usize], Slot::Unseen) {
                continue;
            }
            reach(
                self, history, &requested, force, root, &mut slots, &mut stack,
            );
            while let Some(frame) = stack.last_mut() {
                let v = frame.node as usize;
                let needs = self.raw_needs(v);
                if let Some(&need) = needs.get(frame.next_need as usize) {
                    let position = frame.next_need as usize;
                    frame.next_need += 1;
                    if need == UNKNOWN {
                        return Err(self.unknown_need(v, position));
                    }
                    match slots[need as usize] {
                        Slot::Unseen => {
                            reach(
                                self, history, &requested, force, need, &mut slots, &mut stack,
                            );
                        }
                        Slot::Open => {
                            return Err(self.cycle_error(stack.iter().map(|f| f.node), need));
                        }
                        Slot::Reused(_) | Slot::New(_) => {}
                    }
                    continue;
                }
                // All needs planned: the job itself.
                let reason = frame.reason;
                stack.pop();
                let mut wait_for_job_ids = Vec::new();
                for &need in needs {
                    let id = match slots[need as usize] {
                        Slot::New(k) => &jobs[k as usize].id,
                        Slot::Reused(prior) if prior.state.is_in_flight() => &prior.id,
                        _ => continue,
                    };
                    if stamp[need as usize] != v as u32 {
                        stamp[need as usize] = v as u32;
                        wait_for_job_ids.push(id.clone());
                    }
                }
                let name = self.name(v);
                let action = self.action(v);
                slots[v] = Slot::New(jobs.len() as u32);
                jobs.push(NewJob {
                    id: ids.job_id(name),
                    action: name,
                    reason,
                    wait_for_job_ids,
                    requires_outputs_from: &action.needs,
                    run_command: run_command(self.pipeline(), action, request.dummy_data),
                    image: action.run.parts.first().map_or("", String::as_str),
                    output_spec: &action.outputs,
                    requires_db: action.is_database_action(),
                });
            }
        }

        if !jobs.is_empty() {
            Ok(Plan::Jobs(jobs))
        } else if run_all {
            Ok(Plan::NothingToDo(NothingToDo::AllSucceeded))
        } else {
            // Requested actions always run unless in flight, so all are.
            Ok(Plan::NothingToDo(NothingToDo::AllScheduled))
        }
    }
}
