//! `warden run` end to end: the real binary, in throwaway studies, against the
//! real Docker engine and the local images (`scripts/build-images.sh`).
//!
//! Docker tests print `SKIPPED: docker not available` and pass when the
//! engine is unreachable, except under `CI`, where they fail. Tests that need
//! no Docker (invalid project, unknown action, Docker unreachable) point
//! `DOCKER_HOST` at a socket that does not exist, to prove it.

mod common;

use std::time::{Duration, Instant};

use common::{BUSYBOX, COHORTEXTRACTOR, PYTHON, Study, files_under};
use warden_state::{State, StatusCode};

/// A `DOCKER_HOST` nothing listens on.
const NO_DOCKER: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/warden-test-docker.sock");

/// A version-3 project (as the example study) with `actions` appended.
fn project(actions: &str) -> String {
    format!("version: '3.0'\nexpectations:\n  population_size: 10\nactions:\n{actions}")
}

// --- the bundled example --------------------------------------------------------

#[test]
fn example_study_runs_end_to_end_then_has_nothing_to_do() {
    if !common::docker(&[COHORTEXTRACTOR, PYTHON]) {
        return;
    }
    let study = Study::example();
    let first = study.warden(&["run", "run_all"]);
    assert_eq!(first.code, 0, "{}", first.dump());
    let actions = [
        "generate_study_population",
        "generate_study_population_ethnicity",
        "join_ethnicity",
        "generate_measures",
        "describe",
    ];
    assert_eq!(first.ran(), actions, "{}", first.dump());
    // The jobs' own output is shown live, prefixed with the action.
    assert!(
        first
            .stdout
            .contains("describe | wrote output/descriptives/report.html\n"),
        "{}",
        first.dump()
    );
    assert!(first.summary().ends_with("=> 5 of 5 job(s) succeeded\n"));

    // moderately_sensitive outputs land where project.yaml declares them.
    let outputs = files_under(&study.path("output"));
    let measures: Vec<&String> = outputs
        .iter()
        .filter(|f| f.starts_with("inputs/measure_") && f.ends_with(".csv"))
        .collect();
    assert!(measures.len() >= 4, "{outputs:?}");
    for m in &measures {
        let text = std::fs::read_to_string(study.path(&format!("output/{m}"))).unwrap();
        assert!(text.lines().count() >= 2, "{m} has no rows: {text:?}");
    }
    let descriptives: Vec<&String> = outputs
        .iter()
        .filter(|f| f.starts_with("descriptives/"))
        .collect();
    assert!(descriptives.contains(&&"descriptives/report.html".to_string()));
    assert!(
        descriptives.iter().any(|f| f.ends_with(".csv")),
        "{descriptives:?}"
    );

    // Logs, the manifest and the history.
    for action in actions {
        let log = std::fs::read_to_string(study.path(&format!("metadata/{action}.log")))
            .unwrap_or_else(|e| panic!("metadata/{action}.log: {e}"));
        assert!(
            log.contains("Completed successfully"),
            "{action}.log:\n{log}"
        );
    }
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(study.path("metadata/manifest.json")).expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    for m in &measures {
        let entry = &manifest["outputs"][format!("output/{m}")];
        assert_eq!(entry["level"], "moderately_sensitive", "{m}: {entry}");
        assert_eq!(entry["action"], "generate_measures", "{m}: {entry}");
    }
    assert!(study.path("metadata/db.sqlite").is_file());
    let jobs = study.jobs();
    assert_eq!(jobs.len(), 5);
    for job in &jobs {
        assert_eq!(job.status_code, StatusCode::Succeeded, "{job:?}");
        assert!(
            job.outputs.as_ref().is_some_and(|o| !o.is_empty()),
            "{job:?}"
        );
    }

    // Again: nothing to do.
    let second = study.warden(&["run", "run_all"]);
    assert_eq!(second.code, 0, "{}", second.dump());
    insta::assert_snapshot!(second.stdout, @r"
    => All actions already completed successfully
       Use -f option to force everything to re-run
    ");
    assert_eq!(study.jobs().len(), 5, "nothing new was planned");
}

// --- failures -------------------------------------------------------------------

#[test]
fn nonzero_exit_fails_and_the_summary_shows_the_log_tail() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    // All on stderr (one stream, so the order is certain), as a traceback is.
    let study = Study::new(&project(
        "  fails:
    run: busybox:latest sh -c 'exec >&2; for i in $(seq 1 40); do echo line $i; done; echo Error at the end; exit 3'
    outputs:
      moderately_sensitive:
        table: output/table.csv
",
    ));
    let out = study.warden(&["run", "fails"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stdout.contains("fails | Error at the end\n"),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("fails: Job exited with an error\n"),
        "{}",
        out.dump()
    );
    // The last 32 lines of the job's output, without Docker's timestamps.
    insta::assert_snapshot!(out.summary(), @r"
    => fails
       Job exited with an error

       log file: metadata/fails.log
       outputs:
         (no outputs)

       logs (truncated):

         line 10
         line 11
         line 12
         line 13
         line 14
         line 15
         line 16
         line 17
         line 18
         line 19
         line 20
         line 21
         line 22
         line 23
         line 24
         line 25
         line 26
         line 27
         line 28
         line 29
         line 30
         line 31
         line 32
         line 33
         line 34
         line 35
         line 36
         line 37
         line 38
         line 39
         line 40
         Error at the end

    => 0 of 1 job(s) succeeded; see the failures above
    ");
    let job = study.job("fails");
    assert_eq!(job.status_code, StatusCode::NonzeroExit);
    assert_eq!(job.state, State::Failed);
    let log = std::fs::read_to_string(study.path("metadata/fails.log")).unwrap();
    assert!(
        log.contains("line 1\n") && log.contains("exit_code: 3"),
        "{log}"
    );
}

#[test]
fn unmatched_pattern_is_named_with_a_did_you_mean_hint() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  misnamed:
    run: busybox:latest sh -c 'mkdir -p output && echo a,b > output/tabel.csv'
    outputs:
      moderately_sensitive:
        table: output/table.csv
",
    ));
    let out = study.warden(&["run", "misnamed"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    insta::assert_snapshot!(out.summary(), @r"
    => misnamed
       No outputs found matching patterns:
        - output/table.csv
       Did you mean to match one of these files instead?
        - output/tabel.csv

       log file: metadata/misnamed.log
       outputs:
         (no outputs)

    => 0 of 1 job(s) succeeded; see the failures above
    ");
    assert!(
        out.stdout
            .contains("misnamed: No outputs found matching patterns:\n"),
        "{}",
        out.dump()
    );
    let job = study.job("misnamed");
    assert_eq!(job.status_code, StatusCode::UnmatchedPatterns);
    assert!(job.status_message.contains("output/table.csv"), "{job:?}");
    // The undeclared file is never copied into the study.
    assert!(!study.path("output/tabel.csv").exists());
}

#[test]
fn out_of_memory_is_explained() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    // `dd` allocates (and fills) one 200M block.
    let study = Study::new(&project(
        "  hungry:
    run: busybox:latest sh -c 'echo allocating; dd if=/dev/zero of=/dev/null bs=200M count=1'
    outputs:
      moderately_sensitive:
        table: output/table.csv
",
    ));
    let out = study.warden(&["run", "--memory", "32M", "hungry"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let summary = out.summary();
    assert!(
        summary.contains(
            "=> hungry\n   Job exited with an error: Job ran out of memory (limit was 0.03GB)\n"
        ),
        "{}",
        out.dump()
    );
    let job = study.job("hungry");
    assert_eq!(job.status_code, StatusCode::NonzeroExit);
    assert!(job.status_message.contains("ran out of memory"), "{job:?}");
    let meta = study.metadata_of("hungry");
    assert_eq!(meta["oom_killed"], true, "{meta}");
    assert_eq!(meta["container_metadata"]["HostConfig"]["Memory"], 32 << 20);
}

#[test]
fn a_failed_dependency_stops_its_dependants_but_not_independent_actions() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  broken:
    run: busybox:latest sh -c 'echo broken; exit 1'
    outputs:
      moderately_sensitive:
        table: output/broken.csv
  middle:
    run: busybox:latest sh -c 'mkdir -p output && echo m > output/middle.csv'
    needs: [broken]
    outputs:
      moderately_sensitive:
        table: output/middle.csv
  last:
    run: busybox:latest sh -c 'mkdir -p output && echo l > output/last.csv'
    needs: [middle]
    outputs:
      moderately_sensitive:
        table: output/last.csv
  other:
    run: busybox:latest sh -c 'mkdir -p output && echo o > output/other.csv'
    outputs:
      moderately_sensitive:
        table: output/other.csv
",
    ));
    let out = study.warden(&["run", "--continue-on-error", "run_all"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(out.ran(), ["broken", "middle", "last", "other"]);
    for action in ["middle", "last"] {
        assert!(
            out.stdout
                .contains(&format!("{action}: Not starting as dependency failed\n")),
            "{}",
            out.dump()
        );
        let job = study.job(action);
        assert_eq!(job.status_code, StatusCode::DependencyFailed, "{job:?}");
        assert_eq!(job.state, State::Failed);
        // Never ran: no container, no log, no output.
        assert!(job.started_at.is_none(), "{job:?}");
        assert!(!study.path(&format!("metadata/{action}.log")).exists());
        assert!(!study.path(&format!("output/{action}.csv")).exists());
    }
    let ran: Vec<String> = study
        .job_metadata()
        .iter()
        .map(|m| m["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !ran.contains(&"middle".into()) && !ran.contains(&"last".into()),
        "{ran:?}"
    );
    assert_eq!(study.job("other").status_code, StatusCode::Succeeded);
    assert_eq!(
        std::fs::read_to_string(study.path("output/other.csv")).unwrap(),
        "o\n"
    );
    let summary = out.summary();
    assert!(
        summary.contains("=> Not started because a dependency failed: middle, last\n"),
        "{summary}"
    );
    assert!(summary.ends_with("=> 1 of 4 job(s) succeeded; see the failures above\n"));
}

#[test]
fn ctrl_c_kills_the_job_records_it_cancelled_and_a_rerun_runs_it_again() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  sleepy:
    run: busybox:latest sh -c 'echo started; test -f analysis/quick || sleep 120; mkdir -p output; echo done > output/slept.csv'
    outputs:
      moderately_sensitive:
        table: output/slept.csv
",
    ));
    let mut running = study.spawn(&["run", "sleepy"], &[]);
    running.wait_for_line(Duration::from_secs(60), |l| l == "sleepy | started");
    let interrupted = Instant::now();
    running.interrupt();
    let out = running.finish();
    let stopping = interrupted.elapsed();
    assert_eq!(out.code, 130, "{}", out.dump());
    assert!(
        stopping < Duration::from_secs(30),
        "took {stopping:?} to stop"
    );
    assert!(
        out.stdout.contains("sleepy: Cancelled by user\n"),
        "{}",
        out.dump()
    );
    insta::assert_snapshot!(out.summary(), @r"
    => sleepy
       Cancelled by user

       outputs:
         (no outputs)

    => 0 of 1 job(s) succeeded; the run was cancelled
    ");
    insta::assert_snapshot!(study.normalise(&out.stderr), @r"
    warning: [STUDY] is not in a git repository: a backend runs committed code only

    Cancelling: stopping running jobs and cleaning up (Ctrl-C again to quit at once)

    => Cancelled by user
    ");

    let job = study.job("sleepy");
    assert_eq!(job.status_code, StatusCode::CancelledByUser, "{job:?}");
    assert_eq!(job.state, State::Failed);
    assert!(job.cancelled, "{job:?}");
    assert!(
        common::containers_of(std::slice::from_ref(&job.id)).is_empty(),
        "the job's container was left behind"
    );
    assert_eq!(
        common::entries(&study.path("metadata/volumes")),
        Vec::<String>::new(),
        "the job's working directory was left behind"
    );
    assert!(!study.path("output/slept.csv").exists());

    // A cancelled job is not a success: run_all runs it again.
    study.write("analysis/quick", "");
    let again = study.warden(&["run", "run_all"]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(again.ran(), ["sleepy"]);
    assert_eq!(study.job("sleepy").status_code, StatusCode::Succeeded);
}

#[test]
fn a_missing_image_is_named_with_how_to_build_it_before_anything_runs() {
    if !common::docker(&[]) {
        return;
    }
    // One action whose image exists and one whose image does not: nothing may
    // run (not even the first), and no job may be left in the history.
    let study = Study::new(&project(
        "  fine:
    run: python:v2 python -c 'print(1)'
    outputs:
      moderately_sensitive:
        table: output/fine.csv
  imageless:
    run: warden-test-no-such-image:v1 sh -c 'true'
    needs: [fine]
    outputs:
      moderately_sensitive:
        table: output/table.csv
",
    ));
    let out = study.warden(&["run", "imageless"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    insta::assert_snapshot!(study.normalise(&out.stderr), @r"
    warning: [STUDY] is not in a git repository: a backend runs committed code only
    error: this image is not available locally: ghcr.io/opensafely-core/warden-test-no-such-image:v1
    build the local images with `scripts/build-images.sh`, or `docker pull` them where a registry is reachable
    ");
    assert!(study.jobs().is_empty(), "{:?}", study.jobs());
    assert!(!study.path("output/fine.csv").exists());
}

// --- planning across runs ---------------------------------------------------------

const TWO_STEPS: &str = "  make:
    run: busybox:latest sh -c 'mkdir -p output && echo 1 > output/a.csv && echo 2 > output/b.csv'
    outputs:
      highly_sensitive:
        a: output/a.csv
        b: output/b.csv
  use:
    run: busybox:latest sh -c 'cat output/a.csv output/b.csv > output/used.csv'
    needs: [make]
    outputs:
      moderately_sensitive:
        used: output/used.csv
";

#[test]
fn a_succeeded_dependency_is_skipped_until_one_of_its_outputs_is_deleted() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(TWO_STEPS));
    let first = study.warden(&["run", "use"]);
    assert_eq!(first.code, 0, "{}", first.dump());
    assert_eq!(first.ran(), ["make", "use"]);
    assert_eq!(
        std::fs::read_to_string(study.path("output/used.csv")).unwrap(),
        "1\n2\n"
    );

    // The named action always runs; its succeeded dependency does not.
    let second = study.warden(&["run", "use"]);
    assert_eq!(second.code, 0, "{}", second.dump());
    assert_eq!(second.ran(), ["use"]);
    assert!(!second.stdout.contains("make:"), "{}", second.dump());
    // ... yet its outputs were still the inputs.
    assert_eq!(
        std::fs::read_to_string(study.path("output/used.csv")).unwrap(),
        "1\n2\n"
    );

    std::fs::remove_file(study.path("output/b.csv")).unwrap();
    let third = study.warden(&["run", "use"]);
    assert_eq!(third.code, 0, "{}", third.dump());
    assert_eq!(third.ran(), ["make", "use"]);
    assert!(study.path("output/b.csv").is_file());
}

#[test]
fn force_reruns_dependencies() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(TWO_STEPS));
    let first = study.warden(&["run", "use"]);
    assert_eq!(first.code, 0, "{}", first.dump());
    let make_before = study.job("make").id;
    let forced = study.warden(&["run", "-f", "use"]);
    assert_eq!(forced.code, 0, "{}", forced.dump());
    assert_eq!(forced.ran(), ["make", "use"]);
    assert_ne!(study.job("make").id, make_before, "make ran again");
    let all = study.warden(&["run", "--force-run-dependencies", "run_all"]);
    assert_eq!(all.code, 0, "{}", all.dump());
    assert_eq!(all.ran(), ["make", "use"]);
}

#[test]
fn run_all_runs_what_never_ran_then_has_nothing_to_do() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(&format!(
        "{TWO_STEPS}  alone:
    run: busybox:latest sh -c 'mkdir -p output && echo x > output/alone.csv'
    outputs:
      moderately_sensitive:
        alone: output/alone.csv
"
    )));
    let first = study.warden(&["run", "make"]);
    assert_eq!(first.code, 0, "{}", first.dump());
    assert_eq!(first.ran(), ["make"]);
    let all = study.warden(&["run", "run_all"]);
    assert_eq!(all.code, 0, "{}", all.dump());
    assert_eq!(all.ran(), ["use", "alone"]);
    assert!(
        all.summary().ends_with("=> 2 of 2 job(s) succeeded\n"),
        "{}",
        all.dump()
    );
    let none = study.warden(&["run", "run_all"]);
    assert_eq!(none.code, 0, "{}", none.dump());
    insta::assert_snapshot!(none.stdout, @r"
    => All actions already completed successfully
       Use -f option to force everything to re-run
    ");
    insta::assert_snapshot!(
        study.normalise(&none.stderr),
        @"warning: [STUDY] is not in a git repository: a backend runs committed code only"
    );
}

#[test]
fn independent_actions_run_at_the_same_time() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  left:
    run: busybox:latest sh -c 'sleep 3; mkdir -p output; echo l > output/left.csv'
    outputs:
      moderately_sensitive:
        t: output/left.csv
  right:
    run: busybox:latest sh -c 'sleep 3; mkdir -p output; echo r > output/right.csv'
    outputs:
      moderately_sensitive:
        t: output/right.csv
",
    ));
    let out = study.warden(&["run", "--concurrency", "2", "run_all"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    // The containers' own start and finish times, as Docker recorded them.
    let span = |action: &str| {
        let meta = study.metadata_of(action);
        let state = &meta["container_metadata"]["State"];
        let at = |key: &str| {
            let text = state[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key}: {meta}"));
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{key} {text}: {e}"))
        };
        (at("StartedAt"), at("FinishedAt"))
    };
    let (left_start, left_end) = span("left");
    let (right_start, right_end) = span("right");
    assert!(
        left_start < right_end && right_start < left_end,
        "the containers did not overlap: left {left_start}..{left_end}, right {right_start}..{right_end}"
    );
}

// --- what is (not) an output -------------------------------------------------------

#[test]
fn symlinked_outputs_are_never_followed_or_copied() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  links:
    run: busybox:latest sh -c 'mkdir -p output && echo real > output/real.csv && ln -s /etc/passwd output/passwd.csv && ln -s /etc output/etc.csv && ln -s ../project.yaml output/project.csv'
    outputs:
      moderately_sensitive:
        tables: output/*.csv
",
    ));
    let out = study.warden(&["run", "links"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(files_under(&study.path("output")), ["real.csv"]);
    let job = study.job("links");
    let outputs: Vec<&String> = job.outputs.as_ref().unwrap().keys().collect();
    assert_eq!(outputs, ["output/real.csv"]);
    let summary = out.summary();
    assert!(
        summary.contains("   matched but not copied (not regular files):\n"),
        "{summary}"
    );
    for link in ["passwd", "etc", "project"] {
        assert!(
            summary.contains(&format!(
                "     output/{link}.csv  - is a symbolic link: links are never followed or copied\n"
            )),
            "{summary}"
        );
    }
    // Nothing from outside the job directory reached the study.
    for rel in files_under(&study.dir) {
        let bytes = std::fs::read(study.path(&rel)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("root:x:0:0"),
            "{rel} holds /etc/passwd"
        );
    }
}

#[test]
fn a_directory_matching_a_pattern_is_not_an_output() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  with_file:
    run: busybox:latest sh -c 'mkdir -p output/tables.csv && echo x > output/tables.csv/inner.csv && echo ok > output/ok.csv'
    outputs:
      moderately_sensitive:
        tables: output/*.csv
  only_dir:
    run: busybox:latest sh -c 'mkdir -p output/report.csv && echo x > output/report.csv/part.csv'
    outputs:
      moderately_sensitive:
        report: output/report.csv
",
    ));
    let out = study.warden(&["run", "--continue-on-error", "run_all"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(study.job("with_file").status_code, StatusCode::Succeeded);
    assert_eq!(
        study.job("only_dir").status_code,
        StatusCode::UnmatchedPatterns
    );
    assert_eq!(files_under(&study.path("output")), ["ok.csv"]);
    assert!(!study.path("output/tables.csv").exists());
    let summary = out.summary();
    assert!(
        summary.contains(
            "     output/tables.csv  - is a directory, not a file: directories are not outputs\n"
        ),
        "{summary}"
    );
    assert!(
        summary.contains(
            "=> only_dir\n   No outputs found matching patterns:\n    - output/report.csv\n   Did you mean to match one of these files instead?\n    - output/report.csv/part.csv\n"
        ),
        "{summary}"
    );
}

#[test]
fn ten_thousand_small_outputs_all_land() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    const N: usize = 10_000;
    let study = Study::new(&project(
        "  many:
    run: busybox:latest sh analysis/many.sh
    outputs:
      highly_sensitive:
        parts: output/many/*.csv
",
    ));
    study.write(
        "analysis/many.sh",
        "mkdir -p output/many\n\
         awk 'BEGIN { for (i = 0; i < 10000; i++) { f = sprintf(\"output/many/part%05d.csv\", i); print \"n\" > f; print i > f; close(f) } }'\n",
    );
    let out = study.warden(&["run", "--no-logs", "many"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let files = files_under(&study.path("output/many"));
    assert_eq!(files.len(), N);
    for i in [0, 1234, N - 1] {
        let text =
            std::fs::read_to_string(study.path(&format!("output/many/part{i:05}.csv"))).unwrap();
        assert_eq!(text, format!("n\n{i}\n"));
    }
    assert_eq!(study.job("many").outputs.unwrap().len(), N);
    assert!(
        out.elapsed < Duration::from_secs(90),
        "10,000 outputs took {:?}",
        out.elapsed
    );
}

// --- before anything runs -----------------------------------------------------------

#[test]
fn an_invalid_project_is_reported_like_a_compiler_without_docker() {
    let study = Study::new(&project(
        "  analyse:
    run: busybox:latest sh -c 'true'
    needs: [extract]
    outputs:
      moderately_sensitive:
        table: output/table.csv
",
    ));
    let out = study.warden_env(&["run", "analyse"], &[NO_DOCKER]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(out.stdout, "");
    insta::assert_snapshot!(out.stderr, @r"
    error: Action `analyse` references an unknown action in its `needs` list: extract
      --> project.yaml:7:13
      |
    7 |     needs: [extract]
      |             ^^^^^^^

    warning: Your project file is using an old version (3.0); consider updating to version 5
    project.yaml is invalid: 1 error
    ");
    assert!(!study.path("metadata").exists(), "nothing was recorded");
}

#[test]
fn an_unknown_action_lists_the_valid_names_without_docker() {
    let study = Study::new(&project(TWO_STEPS));
    let out = study.warden_env(&["run", "mkae"], &[NO_DOCKER]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(out.stdout, "");
    insta::assert_snapshot!(out.stderr, @r"
    error: Action 'mkae' not found in project.yaml

       Valid action names are:
         run_all (runs all actions in project)
         make
         use
    ");
}

#[test]
fn docker_unreachable_is_a_clear_error() {
    let study = Study::new(&project(TWO_STEPS));
    let out = study.warden_env(&["run", "make"], &[NO_DOCKER]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.stderr.contains("error: cannot reach the Docker daemon"),
        "{}",
        out.dump()
    );
    assert!(out.stderr.contains("start Docker"), "{}", out.dump());
}

#[test]
fn uncommitted_and_untracked_files_are_named_and_the_working_tree_runs() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  show:
    run: busybox:latest sh -c 'mkdir -p output && cat analysis/data.txt > output/shown.csv'
    outputs:
      moderately_sensitive:
        shown: output/shown.csv
",
    ));
    study.write("analysis/data.txt", "committed\n");
    study.write(".gitignore", "*.tmp\n");
    study.git_commit_all();

    // Clean: no warning (outputs and metadata are not the researcher's code).
    let clean = study.warden(&["run", "show"]);
    assert_eq!(clean.code, 0, "{}", clean.dump());
    assert_eq!(clean.stderr, "", "{}", clean.dump());

    study.write("analysis/data.txt", "edited\n");
    study.write("analysis/new.py", "print('new')\n");
    study.write("scratch.tmp", "scratch\n");
    let dirty = study.warden(&["run", "show"]);
    assert_eq!(dirty.code, 0, "{}", dirty.dump());
    insta::assert_snapshot!(dirty.stderr, @r"
    warning: 3 file(s) here are not committed, so a backend would not see them as they are:
      modified: analysis/data.txt
      untracked: analysis/new.py
      ignored: scratch.tmp
    ");
    // What ran is the working tree, as the warning says.
    assert_eq!(
        std::fs::read_to_string(study.path("output/shown.csv")).unwrap(),
        "edited\n"
    );
}

// --- hostile jobs, signals, leftovers ---------------------------------------------

const SLEEPY: &str = "  sleepy:
    run: busybox:latest sh -c 'echo started; sleep 120'
    outputs:
      moderately_sensitive:
        table: output/slept.csv
";

#[test]
fn sigterm_and_sighup_cancel_like_ctrl_c() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    for (signal, code) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let study = Study::new(&project(SLEEPY));
        let mut running = study.spawn(&["run", "sleepy"], &[]);
        running.wait_for_line(Duration::from_secs(60), |l| l == "sleepy | started");
        let sent = Instant::now();
        running.signal(signal);
        let out = running.finish();
        assert_eq!(out.code, code, "SIG{signal}: {}", out.dump());
        assert!(sent.elapsed() < Duration::from_secs(30), "SIG{signal}");
        assert!(
            out.stdout.contains("sleepy: Cancelled by user\n"),
            "SIG{signal}: {}",
            out.dump()
        );
        let job = study.job("sleepy");
        assert_eq!(job.status_code, StatusCode::CancelledByUser, "{job:?}");
        assert_eq!(job.state, State::Failed);
        assert!(
            common::containers_of(std::slice::from_ref(&job.id)).is_empty(),
            "SIG{signal} left the job's container behind"
        );
        assert_eq!(
            common::entries(&study.path("metadata/volumes")),
            Vec::<String>::new(),
            "SIG{signal} left the job's working directory behind"
        );
    }
}

#[test]
fn what_a_killed_run_left_is_reaped_by_the_next_run() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(&format!(
        "{SLEEPY}  quick:
    run: busybox:latest sh -c 'mkdir -p output; echo 1 > output/q.csv'
    outputs:
      moderately_sensitive:
        table: output/q.csv
"
    )));
    let mut running = study.spawn(&["run", "sleepy"], &[]);
    running.wait_for_line(Duration::from_secs(60), |l| l == "sleepy | started");
    running.signal("KILL");
    let _ = running.finish();
    let job = study.job("sleepy");
    assert_eq!(job.state, State::Running, "{job:?}");
    assert_eq!(
        common::containers_of(std::slice::from_ref(&job.id)).len(),
        1,
        "kill -9 should have left the container running"
    );
    assert_eq!(
        common::entries(&study.path("metadata/volumes")),
        std::slice::from_ref(&job.id)
    );

    let out = study.warden(&["run", "quick"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        common::containers_of(std::slice::from_ref(&job.id)).is_empty(),
        "the leftover container was not reaped"
    );
    assert_eq!(
        common::entries(&study.path("metadata/volumes")),
        Vec::<String>::new(),
        "the leftover working directory was not reaped"
    );
    let job = study.job("sleepy");
    assert_eq!(job.state, State::Failed, "{job:?}");
}

#[test]
fn a_fork_loop_is_stopped_by_the_pids_limit() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  forks:
    run: busybox:latest sh -c '(i=0; while [ $i -lt 2000 ]; do sleep 8 & i=$((i+1)); done); echo started; sleep 3; exit 3'
    outputs:
      moderately_sensitive:
        table: output/none.csv
",
    ));
    let out = study.warden(&["run", "--pids-limit", "64", "forks"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    assert!(
        out.summary().contains(
            "Job exited with an error: Job reached its limit of 64 processes and threads"
        ),
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("can't fork"), "{}", out.dump());
    let meta = study.metadata_of("forks");
    assert_eq!(meta["container_metadata"]["HostConfig"]["PidsLimit"], 64);

    // the default applies without the flag, and nonsense is refused
    let bad = study.warden(&["run", "--pids-limit", "0", "forks"]);
    assert_eq!(bad.code, 2, "{}", bad.dump());
}

#[test]
fn a_corrupt_history_says_which_file_and_how_to_recover() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let study = Study::new(&project(
        "  quick:
    run: busybox:latest sh -c 'mkdir -p output; echo 1 > output/q.csv'
    outputs:
      moderately_sensitive:
        table: output/q.csv
",
    ));
    let first = study.warden(&["run", "quick"]);
    assert_eq!(first.code, 0, "{}", first.dump());
    // overwrite the database's header and first pages with garbage
    let db = study.path("metadata/db.sqlite");
    let mut bytes = std::fs::read(&db).unwrap();
    for (i, b) in bytes.iter_mut().take(8192).enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&db, bytes).unwrap();
    let _ = std::fs::remove_file(study.path("metadata/db.sqlite-wal"));
    let _ = std::fs::remove_file(study.path("metadata/db.sqlite-shm"));

    let out = study.warden(&["run", "quick"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let shown = db.display().to_string();
    assert!(
        out.stderr
            .contains(&format!("the job history {shown} is corrupt")),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains(&format!("mv {shown} {shown}.corrupt")),
        "{}",
        out.dump()
    );
    // following the advice works
    std::fs::rename(&db, study.path("metadata/db.sqlite.corrupt")).unwrap();
    let again = study.warden(&["run", "quick"]);
    assert_eq!(again.code, 0, "{}", again.dump());
}

/// Hostile file names: terminal escapes, carriage returns, newlines,
/// right-to-left overrides, bells, tabs, backslashes, from a fixed seed.
fn hostile_names(count: usize) -> Vec<String> {
    let parts = [
        "\u{1b}[2J",
        "\r",
        "a\nb",
        "\u{202e}",
        "\t",
        "\\",
        "\u{7}",
        "x",
        "é",
        "1",
        "\u{200b}",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|i| {
            let mut name = format!("n{i}");
            for _ in 0..1 + next() % 4 {
                name.push_str(parts[(next() % parts.len() as u64) as usize]);
            }
            name.push_str(".csv");
            name
        })
        .collect()
}

/// `printf` octal escapes that make `name` in a POSIX shell.
fn printf_octal(name: &str) -> String {
    name.bytes().map(|b| format!("\\{b:03o}")).collect()
}

#[test]
fn hostile_file_names_are_escaped_wherever_warden_run_prints_them() {
    if !common::docker(&[BUSYBOX]) {
        return;
    }
    let outputs = hostile_names(24);
    let strays = hostile_names(30)[24..].to_vec();
    let mut script = String::from("mkdir -p output stray\n");
    for name in &outputs {
        script.push_str(&format!(
            "printf x > \"output/$(printf '{}')\"\n",
            printf_octal(name)
        ));
    }
    for name in &strays {
        script.push_str(&format!(
            "printf x > \"stray/$(printf '{}')\"\n",
            printf_octal(name)
        ));
    }
    let study = Study::new(&project(
        "  names:
    run: busybox:latest sh analysis/make.sh
    outputs:
      highly_sensitive:
        data: output/*.csv
        missing: output/missing.txt
",
    ));
    study.write("analysis/make.sh", &script);
    let out = study.warden(&["run", "names"]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let log = std::fs::read_to_string(study.path("metadata/names.log")).unwrap();
    let job = study.job("names");
    for (what, text) in [
        ("stdout", out.stdout.as_str()),
        ("stderr", out.stderr.as_str()),
        ("metadata/names.log", log.as_str()),
        ("the recorded status", job.status_message.as_str()),
    ] {
        for bad in ['\u{1b}', '\r', '\u{7}', '\u{202e}', '\u{200b}', '\t'] {
            assert!(!text.contains(bad), "{what} holds {bad:?} raw:\n{text}");
        }
    }
    // every output is recorded by its exact name and shown escaped
    let recorded = job.outputs.clone().unwrap_or_default();
    for name in &outputs {
        let rel = format!("output/{name}");
        assert!(recorded.contains_key(&rel), "{rel:?} not recorded");
        assert_eq!(std::fs::read_to_string(study.path(&rel)).unwrap(), "x");
        let shown = warden_pipeline::escape::escape_name(&rel);
        assert!(
            out.summary().contains(shown.as_ref()),
            "{shown} not shown\n{}",
            out.dump()
        );
        assert!(
            log.contains(shown.as_ref()),
            "{shown} not in the log\n{log}"
        );
    }
    // the files no pattern matched are named, escaped, in the hint
    for name in &strays {
        let shown = warden_pipeline::escape::escape_name(&format!("stray/{name}")).into_owned();
        assert!(
            out.summary().contains(&shown),
            "{shown} not in the hint\n{}",
            out.dump()
        );
    }
}
