//! Property tests: random graphs and histories, checked against invariants
//! and against a plain recursive model of job-runner's `create_jobs`.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use warden_pipeline::Pipeline;
use warden_planner::{
    Graph, JobRequest, JobState, NothingToDo, Plan, PlanError, PriorJob, job_id, plan,
};

use crate::builder::pipeline;

const STATES: [JobState; 4] = [
    JobState::Pending,
    JobState::Running,
    JobState::Failed,
    JobState::Succeeded,
];

/// A random DAG (needs only point to earlier-generated actions), written to
/// the file in a random order, so file order is not dependency order.
#[derive(Debug, Clone)]
struct Case {
    pipeline: Pipeline,
    history: HashMap<String, PriorJob>,
    request: JobRequest,
}

fn build_pipeline(needs: &[Vec<usize>], file_order: &[usize]) -> Pipeline {
    let mut b = pipeline();
    for &i in file_order {
        let names: Vec<String> = needs[i].iter().map(|n| format!("n{n}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        b = b.act(&format!("n{i}"), &refs);
    }
    b.build()
}

fn permutation(keys: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| (keys[i], i));
    order
}

fn dag_case() -> impl Strategy<Value = Case> {
    (1usize..25).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::collection::vec(any::<usize>(), 0..4), n),
            prop::collection::vec(any::<u64>(), n),
            prop::collection::vec(prop::option::of((0usize..4, prop::bool::weighted(0.8))), n),
            prop::collection::vec(prop::bool::weighted(0.2), n),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(raw, keys, hist, picked, run_all, force)| {
                let needs: Vec<Vec<usize>> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if i == 0 {
                            vec![]
                        } else {
                            r.iter().map(|x| x % i).collect()
                        }
                    })
                    .collect();
                let pipeline = build_pipeline(&needs, &permutation(&keys));
                let history = hist
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| {
                        let (state, present) = (*h)?;
                        let mut job = PriorJob::new(format!("old{i}"), STATES[state]);
                        job.outputs_present = present;
                        Some((format!("n{i}"), job))
                    })
                    .collect();
                let mut actions: Vec<String> = (0..n)
                    .filter(|&i| picked[i])
                    .map(|i| format!("n{i}"))
                    .collect();
                if run_all || actions.is_empty() {
                    actions.push("run_all".to_owned());
                }
                let request =
                    JobRequest::new("requestid0000000", actions).with_force_run_dependencies(force);
                Case {
                    pipeline,
                    history,
                    request,
                }
            })
    })
}

/// job-runner's recursive algorithm, transcribed plainly (fine for small graphs).
fn model(case: &Case) -> Vec<(String, Vec<String>)> {
    struct State<'a> {
        case: &'a Case,
        latest: HashMap<String, (String, JobState, bool)>,
        new: Vec<(String, Vec<String>)>,
    }
    fn rerun(st: &State<'_>, action: &str, state: JobState, present: bool) -> bool {
        if state.is_in_flight() {
            return false;
        }
        if st
            .case
            .request
            .requested_actions
            .iter()
            .any(|a| a == action)
        {
            return true;
        }
        if st.case.request.force_run_dependencies {
            return true;
        }
        !(state == JobState::Succeeded && present)
    }
    fn build(st: &mut State<'_>, action: &str) {
        let kept = st.latest.get(action).cloned();
        if kept.is_some_and(|(_, state, present)| !rerun(st, action, state, present)) {
            return;
        }
        let mut waits = Vec::new();
        for need in &st.case.pipeline.actions[action].needs {
            build(st, need);
            let (id, state, _) = &st.latest[need.as_str()];
            if state.is_in_flight() && !waits.contains(id) {
                waits.push(id.clone());
            }
        }
        let id = job_id(&st.case.request.id, action);
        st.latest
            .insert(action.to_owned(), (id, JobState::Pending, true));
        st.new.push((action.to_owned(), waits));
    }
    let mut st = State {
        case,
        latest: case
            .history
            .iter()
            .map(|(a, j)| (a.clone(), (j.id.clone(), j.state, j.outputs_present)))
            .collect(),
        new: Vec::new(),
    };
    let roots: Vec<String> = if case
        .request
        .requested_actions
        .iter()
        .any(|a| a == "run_all")
    {
        case.pipeline.actions.keys().cloned().collect()
    } else {
        case.request.requested_actions.clone()
    };
    for root in roots {
        build(&mut st, &root);
    }
    st.new
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_respect_dependencies_and_match_the_model(case in dag_case()) {
        let outcome = plan(&case.pipeline, &case.request, &case.history).unwrap();
        let jobs = outcome.jobs();

        // No duplicates; every new need comes before the job needing it.
        let mut position = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            prop_assert!(position.insert(job.action, i).is_none(), "duplicate {}", job.action);
        }
        for (i, job) in jobs.iter().enumerate() {
            for need in job.requires_outputs_from {
                if let Some(&j) = position.get(need.as_str()) {
                    prop_assert!(j < i, "{} before its need {}", job.action, need);
                }
            }
            // In-flight work is never duplicated.
            if let Some(prior) = case.history.get(job.action) {
                prop_assert!(!prior.state.is_in_flight());
            }
            let ids: HashSet<&String> = job.wait_for_job_ids.iter().collect();
            prop_assert_eq!(ids.len(), job.wait_for_job_ids.len());
        }

        // Same jobs, same order, same waits as job-runner's recursion.
        let got: Vec<(String, Vec<String>)> = jobs
            .iter()
            .map(|j| (j.action.to_owned(), j.wait_for_job_ids.clone()))
            .collect();
        prop_assert_eq!(&got, &model(&case));

        if let Plan::NothingToDo(n) = outcome {
            let run_all = case.request.requested_actions.iter().any(|a| a == "run_all");
            prop_assert_eq!(n == NothingToDo::AllSucceeded, run_all);
        }
    }

    #[test]
    fn topological_order_matches_a_naive_sort(
        raw in prop::collection::vec(prop::collection::vec(any::<usize>(), 0..4), 1..40),
        keys in prop::collection::vec(any::<u64>(), 40),
        cyclic in any::<bool>(),
    ) {
        let n = raw.len();
        // Acyclic: needs point to lower generation numbers; else anywhere.
        let needs: Vec<Vec<usize>> = raw
            .iter()
            .enumerate()
            .map(|(i, r)| match (cyclic, i) {
                (true, _) => r.iter().map(|x| x % n).collect(),
                (false, 0) => vec![],
                (false, _) => r.iter().map(|x| x % i).collect(),
            })
            .collect();
        let p = build_pipeline(&needs, &permutation(&keys[..n]));
        let graph = Graph::new(&p);

        // Naive: repeatedly take the first action (file order) whose needs are placed.
        let mut placed = vec![false; n];
        let mut naive = Vec::new();
        while let Some(v) = (0..n).find(|&v| {
            !placed[v] && graph.needs(v).all(|need| placed[need.unwrap()])
        }) {
            placed[v] = true;
            naive.push(v);
        }

        match graph.topological_order() {
            Ok(order) => prop_assert_eq!(order, naive),
            Err(PlanError::Cycle { path }) => {
                prop_assert!(naive.len() < n, "reported a cycle in a DAG");
                prop_assert!(path.len() >= 2);
                prop_assert_eq!(path.first(), path.last());
                for pair in path.windows(2) {
                    let needs = &p.actions[pair[0].as_str()].needs;
                    prop_assert!(needs.contains(&pair[1]), "{} does not need {}", pair[0], pair[1]);
                }
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
