//! The planning rules of job-runner's `create_jobs`, one by one.

use std::collections::HashMap;

use warden_planner::JobState::{Failed, Pending, Running, Succeeded};
use warden_planner::{
    JobRequest, NewJob, NoHistory, NothingToDo, Plan, PlanError, PriorJob, RunReason, job_id, plan,
};

use crate::builder::{history, pipeline};

fn request(actions: &[&str]) -> JobRequest {
    JobRequest::new("abcdefghijklmnop", actions.iter().copied())
}

fn jobs<'p>(outcome: Result<Plan<'p>, PlanError>) -> Vec<NewJob<'p>> {
    match outcome.expect("a plan") {
        Plan::Jobs(jobs) => {
            assert!(!jobs.is_empty(), "Plan::Jobs is never empty");
            jobs
        }
        Plan::NothingToDo(n) => panic!("nothing to do: {n}"),
    }
}

fn actions<'a>(jobs: &'a [NewJob<'_>]) -> Vec<&'a str> {
    jobs.iter().map(|j| j.action).collect()
}

fn id(action: &str) -> String {
    job_id("abcdefghijklmnop", action)
}

fn chain() -> warden_pipeline::Pipeline {
    pipeline()
        .act("a", &[])
        .act("b", &["a"])
        .act("c", &["b"])
        .build()
}

fn diamond() -> warden_pipeline::Pipeline {
    pipeline()
        .act("a", &[])
        .act("b", &["a"])
        .act("c", &["a"])
        .act("d", &["b", "c"])
        .act("e", &[])
        .build()
}

#[test]
fn never_run_dependencies_run_first_and_are_waited_on() {
    let p = chain();
    let jobs = jobs(plan(&p, &request(&["c"]), &NoHistory));
    assert_eq!(actions(&jobs), ["a", "b", "c"]);
    assert_eq!(jobs[0].wait_for_job_ids, Vec::<String>::new());
    assert_eq!(jobs[1].wait_for_job_ids, [id("a")]);
    assert_eq!(jobs[2].wait_for_job_ids, [id("b")]);
    assert_eq!(jobs[2].requires_outputs_from, ["b"]);
    assert_eq!(jobs[0].reason, RunReason::NeverRun);
    assert_eq!(jobs[2].reason, RunReason::Requested);
    for job in &jobs {
        assert_eq!(job.id, id(job.action));
    }
}

#[test]
fn diamond_dependency_is_created_once() {
    let p = diamond();
    let jobs = jobs(plan(&p, &request(&["d"]), &NoHistory));
    assert_eq!(actions(&jobs), ["a", "b", "c", "d"]);
    // Both parents wait on the same grandparent job.
    assert_eq!(jobs[1].wait_for_job_ids, [id("a")]);
    assert_eq!(jobs[2].wait_for_job_ids, [id("a")]);
    assert_eq!(jobs[3].wait_for_job_ids, [id("b"), id("c")]);
}

#[test]
fn in_flight_dependencies_of_other_requests_are_reused_and_waited_on() {
    let p = diamond();
    for state in [Pending, Running] {
        let h = history(&[
            ("a", "otherrequestjoba", Succeeded),
            ("b", "otherrequestjobb", state),
        ]);
        let jobs = jobs(plan(&p, &request(&["d"]), &h));
        assert_eq!(actions(&jobs), ["c", "d"], "{state}");
        assert_eq!(jobs[0].wait_for_job_ids, Vec::<String>::new());
        assert_eq!(
            jobs[1].wait_for_job_ids,
            ["otherrequestjobb".to_owned(), id("c")]
        );
        assert_eq!(jobs[1].requires_outputs_from, ["b", "c"]);
    }
}

#[test]
fn succeeded_dependency_is_reused_and_not_waited_on() {
    let p = chain();
    let h = history(&[("a", "ja", Succeeded), ("b", "jb", Succeeded)]);
    let jobs = jobs(plan(&p, &request(&["c"]), &h));
    assert_eq!(actions(&jobs), ["c"]);
    assert!(jobs[0].wait_for_job_ids.is_empty());
    assert_eq!(jobs[0].requires_outputs_from, ["b"]);
}

#[test]
fn explicitly_requested_action_always_runs_but_not_its_succeeded_dependencies() {
    let p = chain();
    let h = history(&[
        ("a", "ja", Succeeded),
        ("b", "jb", Succeeded),
        ("c", "jc", Succeeded),
    ]);
    let jobs = jobs(plan(&p, &request(&["c"]), &h));
    assert_eq!(actions(&jobs), ["c"]);
    assert_eq!(jobs[0].reason, RunReason::Requested);
    // Requested by name, even a dependency of another requested action.
    let jobs2 = jobs_of(&p, &["b", "c"], &h);
    assert_eq!(jobs2, ["b", "c"]);
}

fn jobs_of(
    p: &warden_pipeline::Pipeline,
    requested: &[&str],
    h: &HashMap<String, PriorJob>,
) -> Vec<String> {
    jobs(plan(p, &request(requested), h))
        .iter()
        .map(|j| j.action.to_owned())
        .collect()
}

#[test]
fn requested_action_in_flight_is_not_duplicated() {
    let p = chain();
    for state in [Pending, Running] {
        let h = history(&[
            ("a", "ja", Succeeded),
            ("b", "jb", Succeeded),
            ("c", "jc", state),
        ]);
        let outcome = plan(&p, &request(&["c"]), &h).unwrap();
        assert_eq!(outcome, Plan::NothingToDo(NothingToDo::AllScheduled));
        let Plan::NothingToDo(nothing) = outcome else {
            unreachable!()
        };
        assert_eq!(
            nothing.message(),
            "All requested actions were already scheduled to run"
        );
        assert_eq!(
            nothing.to_string(),
            "All requested actions were already scheduled to run"
        );
    }
    // One requested action in flight, another not: only the other runs.
    let h = history(&[("a", "ja", Succeeded), ("b", "jb", Running)]);
    let jobs = jobs(plan(&p, &request(&["b", "c"]), &h));
    assert_eq!(actions(&jobs), ["c"]);
    assert_eq!(jobs[0].wait_for_job_ids, ["jb"]);
}

#[test]
fn force_run_dependencies_reruns_succeeded_dependencies() {
    let p = chain();
    let h = history(&[
        ("a", "ja", Succeeded),
        ("b", "jb", Succeeded),
        ("c", "jc", Succeeded),
    ]);
    let forced = request(&["c"]).with_force_run_dependencies(true);
    let jobs = jobs(plan(&p, &forced, &h));
    assert_eq!(actions(&jobs), ["a", "b", "c"]);
    assert_eq!(jobs[0].reason, RunReason::Forced);
    assert_eq!(jobs[1].reason, RunReason::Forced);
    assert_eq!(jobs[2].reason, RunReason::Requested);
    assert_eq!(jobs[2].wait_for_job_ids, [id("b")]);
}

#[test]
fn force_never_duplicates_in_flight_work() {
    let p = chain();
    let h = history(&[("a", "ja", Running), ("b", "jb", Succeeded)]);
    let forced = request(&["c"]).with_force_run_dependencies(true);
    let jobs = jobs(plan(&p, &forced, &h));
    assert_eq!(actions(&jobs), ["b", "c"]);
    assert_eq!(jobs[0].wait_for_job_ids, ["ja"]);
}

#[test]
fn failed_dependency_is_rerun() {
    let p = chain();
    let h = history(&[("a", "ja", Succeeded), ("b", "jb", Failed)]);
    let jobs = jobs(plan(&p, &request(&["c"]), &h));
    assert_eq!(actions(&jobs), ["b", "c"]);
    assert_eq!(jobs[0].reason, RunReason::PreviouslyFailed);
    assert!(jobs[0].wait_for_job_ids.is_empty());
    assert_eq!(jobs[1].wait_for_job_ids, [id("b")]);
}

#[test]
fn succeeded_dependency_with_an_output_missing_is_rerun() {
    let p = chain();
    let mut h = history(&[("a", "ja", Succeeded), ("b", "jb", Succeeded)]);
    h.insert(
        "a".to_owned(),
        PriorJob::new("ja", Succeeded).with_outputs_missing(),
    );
    let jobs = jobs(plan(&p, &request(&["c"]), &h));
    // `b` still has its outputs, so the walk stops there: `a` is not reached.
    assert_eq!(actions(&jobs), ["c"]);

    h.insert(
        "b".to_owned(),
        PriorJob::new("jb", Succeeded).with_outputs_missing(),
    );
    let jobs = jobs_of(&p, &["c"], &h);
    assert_eq!(jobs, ["a", "b", "c"]);
    let planned = self::jobs(plan(&p, &request(&["c"]), &h));
    assert_eq!(planned[0].reason, RunReason::OutputsMissing);
    assert_eq!(planned[1].reason, RunReason::OutputsMissing);
}

#[test]
fn dependencies_of_a_kept_job_are_not_looked_at() {
    // As job-runner: `b` succeeded, so `a` (failed) is not re-run for `c`.
    let p = chain();
    let h = history(&[("a", "ja", Failed), ("b", "jb", Succeeded)]);
    assert_eq!(jobs_of(&p, &["c"], &h), ["c"]);
}

#[test]
fn run_all_runs_what_never_ran_or_failed_in_file_order() {
    let p = diamond();
    let jobs = jobs(plan(&p, &request(&["run_all"]), &NoHistory));
    assert_eq!(actions(&jobs), ["a", "b", "c", "d", "e"]);
    assert!(jobs.iter().all(|j| j.reason == RunReason::NeverRun));

    // No action is "explicitly requested" with run_all: succeeded ones stay.
    let h = history(&[
        ("a", "ja", Succeeded),
        ("b", "jb", Failed),
        ("c", "jc", Succeeded),
        ("e", "je", Succeeded),
    ]);
    assert_eq!(jobs_of(&p, &["run_all"], &h), ["b", "d"]);

    // With force, everything not in flight runs.
    let h = history(&[("a", "ja", Succeeded), ("c", "jc", Running)]);
    let forced = request(&["run_all"]).with_force_run_dependencies(true);
    let planned = self::jobs(plan(&p, &forced, &h));
    assert_eq!(actions(&planned), ["a", "b", "d", "e"]);
    assert_eq!(planned[2].wait_for_job_ids, [id("b"), "jc".to_owned()]);
}

#[test]
fn run_all_with_everything_succeeded_is_nothing_to_do() {
    let p = chain();
    let h = history(&[
        ("a", "ja", Succeeded),
        ("b", "jb", Succeeded),
        ("c", "jc", Succeeded),
    ]);
    let outcome = plan(&p, &request(&["run_all"]), &h).unwrap();
    let Plan::NothingToDo(nothing) = outcome else {
        panic!("expected nothing to do, got {outcome:?}")
    };
    assert_eq!(nothing, NothingToDo::AllSucceeded);
    assert_eq!(
        nothing.message(),
        "All actions have already completed successfully"
    );
    assert_eq!(
        nothing.local_run_lines(),
        [
            "=> All actions already completed successfully",
            "   Use -f option to force everything to re-run",
        ]
    );
    assert!(outcome.jobs().is_empty());
}

#[test]
fn run_all_ignores_history_of_deleted_actions_and_a_user_defined_run_all() {
    let p = pipeline()
        .act("a", &[])
        .act("b", &["a"])
        .act("run_all", &["b"])
        .build();
    let h = history(&[
        ("a", "ja", Succeeded),
        ("b", "jb", Succeeded),
        ("deleted", "jd", Failed),
    ]);
    let outcome = plan(&p, &request(&["run_all"]), &h).unwrap();
    assert_eq!(outcome, Plan::NothingToDo(NothingToDo::AllSucceeded));
    // Without history, the user-defined `run_all` action is not planned.
    let planned = jobs(plan(&p, &request(&["run_all"]), &NoHistory));
    assert_eq!(actions(&planned), ["a", "b"]);
}

#[test]
fn no_action_requested_is_an_error_with_the_valid_actions() {
    let p = pipeline()
        .act("a", &[])
        .act("run_all", &["a"])
        .act("b", &[])
        .build();
    let err = plan(&p, &request(&[]), &NoHistory).unwrap_err();
    assert_eq!(err.to_string(), "At least one action must be supplied");
    assert_eq!(
        err,
        PlanError::NoActions {
            valid_actions: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(
        err.valid_actions(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
}

#[test]
fn unknown_action_is_an_error_with_the_valid_actions() {
    let p = chain();
    let err = plan(&p, &request(&["a", "nope", "c"]), &NoHistory).unwrap_err();
    assert_eq!(err.to_string(), "Action 'nope' not found in project.yaml");
    assert_eq!(
        err.valid_actions(),
        Some(&["a".to_owned(), "b".to_owned(), "c".to_owned()][..])
    );
    // Also next to run_all (job-runner would silently ignore it).
    let err = plan(&p, &request(&["run_all", "nope"]), &NoHistory).unwrap_err();
    assert_eq!(err.to_string(), "Action 'nope' not found in project.yaml");
}

#[test]
fn unknown_need_is_an_error_not_a_panic() {
    let p = pipeline().act("a", &["ghost"]).act("b", &[]).build();
    let err = plan(&p, &request(&["a"]), &NoHistory).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Action `a` references an unknown action in its `needs` list: ghost"
    );
    // An unrelated broken action does not block other requests.
    assert_eq!(jobs_of(&p, &["b"], &HashMap::new()), ["b"]);
}

#[test]
fn a_cycle_is_an_error_naming_its_path() {
    let p = pipeline()
        .act("x", &["a"])
        .act("a", &["b"])
        .act("b", &["c"])
        .act("c", &["a"])
        .build();
    let err = plan(&p, &request(&["x"]), &NoHistory).unwrap_err();
    assert_eq!(
        err,
        PlanError::Cycle {
            path: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }
    );
    assert_eq!(
        err.to_string(),
        "Actions form a cycle through their `needs`: a -> b -> c -> a"
    );
    let err = plan(&p, &request(&["run_all"]), &NoHistory).unwrap_err();
    assert!(matches!(err, PlanError::Cycle { .. }), "{err}");
}

#[test]
fn two_action_and_self_cycles_are_errors() {
    let p = pipeline().act("a", &["b"]).act("b", &["a"]).build();
    let err = plan(&p, &request(&["a"]), &NoHistory).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Actions form a cycle through their `needs`: a -> b -> a"
    );

    let p = pipeline().act("a", &[]).act("s", &["a", "s"]).build();
    let err = plan(&p, &request(&["s"]), &NoHistory).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Actions form a cycle through their `needs`: s -> s"
    );
}

#[test]
fn job_ids_are_deterministic() {
    // Computed independently:
    // base64.b32encode(hashlib.sha1(b"abcdefghijklmnop\ngenerate_dataset").digest()[:10]).decode().lower()
    assert_eq!(
        job_id("abcdefghijklmnop", "generate_dataset"),
        "5pkaxqfxspwgwjtu"
    );
    assert_eq!(job_id("123", "generate_cohort"), "cekdw4n2mqtn622b");
    let p = chain();
    let first = jobs(plan(&p, &request(&["c"]), &NoHistory));
    let again = jobs(plan(&p, &request(&["c"]), &NoHistory));
    assert_eq!(first, again);
    let other = jobs(plan(
        &p,
        &JobRequest::new("otherrequest0000", ["c"]),
        &NoHistory,
    ));
    assert_ne!(first[0].id, other[0].id);
    assert!(first.iter().all(|j| {
        j.id.len() == 16
            && j.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    }));
}

#[test]
fn duplicate_requests_and_duplicate_needs_plan_once() {
    let p = pipeline().act("a", &[]).act("b", &["a", "a"]).build();
    let jobs = jobs(plan(&p, &request(&["b", "a", "b"]), &NoHistory));
    assert_eq!(actions(&jobs), ["a", "b"]);
    assert_eq!(jobs[1].wait_for_job_ids, [id("a")]);
    assert_eq!(jobs[1].requires_outputs_from, ["a", "a"]);
}

#[test]
fn run_command_image_outputs_and_database_flag() {
    let p = pipeline()
        .action(
            "extract",
            "ehrql:v1 generate-dataset analysis/dataset.py --output output/dataset.csv.gz",
            &[],
        )
        .action(
            "model",
            r#"stata-mp:latest analysis/model.do "output/a file.csv""#,
            &["extract"],
        )
        .with(|a| {
            a.config = Some(
                serde_json::json!({"name": "it's", "n": [1, 2.5, 1e20], "nested": {"ok": true}}),
            );
        })
        .act("empty_config", &[])
        .with(|a| a.config = Some(serde_json::json!({})))
        .build();
    let jobs = jobs(plan(&p, &request(&["run_all"]), &NoHistory));
    let extract = &jobs[0];
    assert!(extract.requires_db);
    assert_eq!(extract.image, "ehrql:v1");
    assert_eq!(
        extract.run_command,
        "ehrql:v1 generate-dataset analysis/dataset.py --output output/dataset.csv.gz"
    );
    assert_eq!(extract.output_spec, &p.actions["extract"].outputs);

    let model = &jobs[1];
    assert!(!model.requires_db);
    assert_eq!(model.image, "stata-mp:latest");
    // Python: shlex.join(parts + ["--config", json.dumps(config).replace("'", "\\u0027")])
    assert_eq!(
        model.run_command,
        r#"stata-mp:latest analysis/model.do 'output/a file.csv' --config '{"name": "it\u0027s", "n": [1, 2.5, 1e+20], "nested": {"ok": true}}'"#
    );
    let words = shlex::split(&model.run_command).unwrap();
    assert_eq!(words[..3], p.actions["model"].run.parts[..]);
    assert_eq!(words[3], "--config");
    let config: serde_json::Value = serde_json::from_str(&words[4]).unwrap();
    assert_eq!(Some(config), p.actions["model"].config);

    // `config: {}` adds nothing, as in job-runner (`if action.config:`).
    assert_eq!(
        jobs[2].run_command,
        "python:latest python analysis/empty_config.py"
    );
}

#[test]
fn legacy_cohortextractor_gets_its_dummy_data_and_output_dir_options() {
    let p = pipeline()
        .population(1000)
        .action(
            "generate_cohort",
            "cohortextractor:latest generate_cohort",
            &[],
        )
        .with(|a| {
            a.outputs.highly_sensitive = Some(
                [("cohort".to_owned(), "input.csv".to_owned())]
                    .into_iter()
                    .collect(),
            );
        })
        .action(
            "with_file",
            "cohortextractor:latest generate_cohort --study-definition sd",
            &[],
        )
        .with(|a| a.dummy_data_file = Some("dummy/x.csv".to_owned()))
        .build();
    let local = request(&["run_all"]).with_dummy_data(true);
    let jobs = jobs(plan(&p, &local, &NoHistory));
    // Expected text from job-runner's own test.
    assert_eq!(
        jobs[0].run_command,
        "cohortextractor:latest generate_cohort --expectations-population=1000 --output-dir=."
    );
    assert!(jobs[0].requires_db);
    assert_eq!(
        jobs[1].run_command,
        "cohortextractor:latest generate_cohort --study-definition sd --dummy-data-file=dummy/x.csv --output-dir=output"
    );
    let backend = self::jobs(plan(&p, &request(&["run_all"]), &NoHistory));
    assert_eq!(
        backend[0].run_command,
        "cohortextractor:latest generate_cohort --output-dir=."
    );
}

#[test]
fn a_100_000_action_chain_plans_without_overflowing_the_stack() {
    // a0 needs a1 needs a2 ... : the walk from a0 is 100,000 deep.
    const N: usize = 100_000;
    let names: Vec<String> = (0..N).map(|i| format!("a{i}")).collect();
    let mut b = pipeline();
    for i in 0..N {
        let needs: Vec<&str> = if i + 1 < N {
            vec![names[i + 1].as_str()]
        } else {
            vec![]
        };
        b = b.act(&names[i], &needs);
    }
    let p = b.build();
    let jobs = jobs(plan(&p, &request(&["a0"]), &NoHistory));
    assert_eq!(jobs.len(), N);
    assert_eq!(jobs[0].action, names[N - 1]);
    assert_eq!(jobs[N - 1].action, "a0");
    assert_eq!(jobs[N - 1].wait_for_job_ids, [id("a1")]);
    // Dropping a deep structure must not recurse either.
    drop(jobs);

    let order = warden_planner::topological_order(&p).unwrap();
    assert_eq!(order.first().copied(), Some(names[N - 1].as_str()));
    assert_eq!(order.len(), N);
    let closure = warden_planner::dependency_closure(&p, &["a1"]).unwrap();
    assert_eq!(closure.len(), N - 1);

    // Close the chain into one 100,000-long cycle: still an error, not a crash.
    let mut p = p;
    p.actions[N - 1].needs = vec!["a0".to_owned()];
    let err = plan(&p, &request(&["a0"]), &NoHistory).unwrap_err();
    let PlanError::Cycle { path } = &err else {
        panic!("{err}")
    };
    assert_eq!(path.len(), N + 1);
    assert!(matches!(
        warden_planner::topological_order(&p),
        Err(PlanError::Cycle { .. })
    ));
}
