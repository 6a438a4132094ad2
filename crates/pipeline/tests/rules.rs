//! One test per validation rule of the reference, with its exact message (the
//! catalogue of `reference/pipeline-spec.md` §12), plus warden's pinned verdicts
//! where the reference crashes (§13), and its own checks.

use warden_pipeline::{DiagnosticKind, check};

fn first(source: &str) -> (DiagnosticKind, String, usize, usize) {
    let report = check(source);
    let d = report
        .first_error()
        .unwrap_or_else(|| panic!("expected an error for:\n{source}"))
        .clone();
    (d.kind, d.message, d.line, d.column)
}

#[track_caller]
fn assert_first(source: &str, message: &str) {
    let (kind, got, _, _) = first(source);
    assert_eq!(got, message, "for:\n{source}");
    assert_eq!(kind, DiagnosticKind::Validation, "for:\n{source}");
}

#[track_caller]
fn assert_valid(source: &str) {
    let report = check(source);
    assert!(
        report.is_valid(),
        "expected valid:\n{source}\n{:?}",
        report.errors
    );
}

const OK_ACTION: &str = "  a:\n    run: python:v2 python a.py\n    outputs:\n      moderately_sensitive:\n        t: output/a.csv\n";

#[test]
fn m1_unknown_top_level_keys_come_first() {
    assert_first(
        "describe: 1\nextra: 2\nactions: {}\n",
        "Unexpected parameters (describe, extra) in project",
    );
}

#[test]
fn m2_version_missing_or_null() {
    let msg = "Project file must have a `version` attribute specifying which version of the project configuration format it uses (current latest version is 5)";
    assert_first("actions: {}\n", msg);
    assert_first("version:\nactions: {}\n", msg);
}

#[test]
fn m3_version_not_a_number() {
    for v in ["test", "'0x5'", "yes", "2020-01-01", "[1]"] {
        assert_first(
            &format!("version: {v}\nactions: {{}}\n"),
            "`version` must be a number between 1 and 5",
        );
    }
}

#[test]
fn odd_versions_that_the_reference_accepts() {
    for v in ["0", "-1", "1e-05", "true", "0x5", "'+4.'", "' 5 '", "'4e0'"] {
        let src = format!("version: {v}\nactions: {{}}\n");
        assert_valid(&src);
    }
}

#[test]
fn m4_version_above_five_is_pinned_as_an_error() {
    for (v, shown) in [
        ("6", "6.0"),
        ("'4_0'", "40.0"),
        (".inf", "inf"),
        ("1e20", "1e+20"),
    ] {
        let (kind, msg, line, col) = first(&format!("version: {v}\nactions: {{}}\n"));
        assert_eq!(kind, DiagnosticKind::ReferenceCrash);
        assert_eq!(msg, format!("The latest version is v5, but got v{shown}"));
        assert_eq!((line, col), (1, 10));
    }
}

#[test]
fn m5_actions_must_be_a_mapping() {
    let msg = "Project `actions` section must be a dictionary of key/value pairs";
    assert_first("version: 4\n", msg);
    assert_first("version: 4\nactions:\n", msg);
    assert_first("version: 4\nactions: []\n", msg);
}

#[test]
fn empty_actions_are_valid() {
    assert_valid("version: 5\nactions: {}\n");
}

#[test]
fn m6_run_all_is_reserved_in_v5_and_a_warning_before() {
    assert_first(
        "version: 5\nactions:\n  run_all:\n    run: test:v1\n    outputs: {}\n",
        "`run_all` is a reserved action name and is not allowed for user-defined actions.",
    );
    let report = check(&format!(
        "version: 4\nactions:\n{OK_ACTION}  run_all:\n    run: python:v2 python b.py\n    outputs:\n      moderately_sensitive:\n        t: output/b.csv\n"
    ));
    assert!(report.is_valid(), "{:?}", report.errors);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("`run_all` is a reserved action name"))
    );
    let p = report.pipeline.unwrap();
    assert_eq!(p.all_actions(), vec!["a"]);
    assert_eq!(p.actions.len(), 2);
}

#[test]
fn m7_action_must_be_a_mapping() {
    assert_first(
        "version: 1\nactions:\n  action1:\n",
        "Configuration for action action1 must be a dictionary of key/value pairs",
    );
    assert_first(
        "version: 1\nactions:\n  action1: [1]\n",
        "Configuration for action action1 must be a dictionary of key/value pairs",
    );
}

#[test]
fn m8_run_then_outputs_required() {
    assert_first(
        "version: 1\nactions:\n  action1: {}\n",
        "Action action1 must contain a configuration for 'run'",
    );
    assert_first(
        "version: 1\nactions:\n  action1:\n    run: test\n",
        "Action action1 must contain a configuration for 'outputs'",
    );
}

#[test]
fn m9_unknown_action_keys() {
    assert_first(
        "version: 1\nactions:\n  action1:\n    run: test:v1\n    outputs: {}\n    extra: 123\n",
        "Unexpected parameters (extra) in action action1",
    );
}

#[test]
fn m10_types_in_the_reference_order() {
    let base = "version: 1\nactions:\n  action1:\n";
    assert_first(
        &format!("{base}    run: [a]\n    outputs: []\n"),
        "`outputs` section for action action1 must be a dictionary of key/value pairs",
    );
    assert_first(
        &format!("{base}    run: [a]\n    outputs: {{}}\n"),
        "`run` section for action action1 must be a string",
    );
    assert_first(
        &format!("{base}    run:\n    outputs: {{}}\n"),
        "`run` section for action action1 must be a string",
    );
    assert_first(
        &format!("{base}    run: test:v1\n    outputs: {{}}\n    needs: ''\n"),
        "`needs` section for action action1 must be a list",
    );
    assert_first(
        &format!("{base}    run: test:v1\n    outputs: {{}}\n    config: []\n"),
        "`config` section for action action1 must be a dictionary of key/value pairs",
    );
    assert_first(
        &format!("{base}    run: test:v1\n    outputs: {{}}\n    dummy_data_file: []\n"),
        "`dummy_data_file` section for action action1 must be a string",
    );
}

#[test]
fn m11_at_least_one_output_level() {
    let msg = "must specify at least one output of: highly_sensitive, moderately_sensitive, minimally_sensitive";
    let base = "version: 1\nactions:\n  action1:\n    run: test:v1\n";
    assert_first(&format!("{base}    outputs: {{}}\n"), msg);
    assert_first(
        &format!("{base}    outputs:\n      test:\n        a: a.csv\n"),
        msg,
    );
}

#[test]
fn m12_unknown_output_keys() {
    assert_first(
        "version: 1\nactions:\n  action1:\n    run: test:v1\n    outputs:\n      highly_sensitive:\n        dataset: {}\n      extra: 123\n",
        "Unexpected parameters (extra) in `outputs` section for action action1",
    );
}

#[test]
fn m13_m14_level_and_entry_types() {
    let base = "version: 3\nexpectations:\n  population_size: 10\nactions:\n  action1:\n    run: test:v1\n    outputs:\n";
    assert_first(
        &format!("{base}      highly_sensitive: []\n"),
        "`highly_sensitive` section for action action1 must be a dictionary of key/value pairs",
    );
    assert_first(
        &format!("{base}      highly_sensitive:\n        dataset: {{}}\n"),
        "`dataset` output for action action1 must be a string",
    );
}

#[test]
fn m15_every_glob_rule_with_its_reason() {
    let cases = [
        ("highly_sensitive", "/abs/path.txt", "is an absolute path"),
        (
            "highly_sensitive",
            "not//canonical.txt",
            "is not in standard form (contains double slashes or '..' elements)",
        ),
        (
            "highly_sensitive",
            "path/../traversal.txt",
            "is not in standard form (contains double slashes or '..' elements)",
        ),
        (
            "highly_sensitive",
            "c:/windows/absolute.txt",
            "is an absolute path",
        ),
        (
            "highly_sensitive",
            "recursive/**/glob.pattern",
            "contains '**' (only the * wildcard character is supported)",
        ),
        (
            "highly_sensitive",
            "questionmark?.txt",
            "contains '?' (only the * wildcard character is supported)",
        ),
        (
            "highly_sensitive",
            "/[square]brackets.txt",
            "contains '[' (only the * wildcard character is supported)",
        ),
        (
            "highly_sensitive",
            "back\\\\slash.txt",
            "contains back slashes (use forward slashes only)",
        ),
        (
            "highly_sensitive",
            "metadata",
            "output paths must have a file type extension at the end",
        ),
        (
            "highly_sensitive",
            "metadata/test.txt",
            "should not include the metadata directory",
        ),
        (
            "highly_sensitive",
            "outputs/*",
            "output paths must have a file type extension at the end",
        ),
        (
            "highly_sensitive",
            "outputs/foo.*",
            "output paths must have a file type extension at the end",
        ),
        (
            "highly_sensitive",
            "foo.",
            "output paths must have a file type extension at the end",
        ),
        (
            "highly_sensitive",
            "./x.csv",
            "is not in standard form (contains double slashes or '..' elements)",
        ),
        ("highly_sensitive", "//abs.txt", "is an absolute path"),
        (
            "moderately_sensitive",
            "outputs/output.rds",
            "outputs/output.rds is not an allowed file type for moderately_sensitive outputs",
        ),
        (
            "moderately_sensitive",
            "outputs/output.pdf",
            "outputs/output.pdf is not an allowed file type for moderately_sensitive outputs",
        ),
        (
            "moderately_sensitive",
            "a//b.pdf",
            "a/b.pdf is not an allowed file type for moderately_sensitive outputs",
        ),
        (
            "moderately_sensitive",
            "x.csv.gz",
            "x.csv.gz is not an allowed file type for moderately_sensitive outputs",
        ),
    ];
    for (level, pattern, reason) in cases {
        let src = format!(
            "version: 1\nactions:\n  a:\n    run: test:v1\n    outputs:\n      {level}:\n        o: \"{pattern}\"\n"
        );
        let shown = pattern.replace("\\\\", "\\");
        assert_first(&src, &format!("Output path {shown} is invalid: {reason}"));
    }
    // Accepted by the reference, refused by warden's own rules (kind `Extra`,
    // tests/warden_rules.rs).
    let leading_dotdot = "version: 1\nactions:\n  a:\n    run: test:v1\n    outputs:\n      highly_sensitive:\n        o: \"../x.csv\"\n";
    let report = warden_pipeline::check(leading_dotdot);
    assert!(
        report
            .errors
            .iter()
            .all(|d| d.kind == DiagnosticKind::Extra)
            && !report.errors.is_empty()
    );
    for ok in [
        "out/*/x.csv",
        "~/x.csv",
        "c:w.txt",
        "metadata2/x.txt",
        "x/metadata/y.txt",
        "foo.c*v",
    ] {
        assert_valid(&format!(
            "version: 1\nactions:\n  a:\n    run: test:v1\n    outputs:\n      highly_sensitive:\n        o: \"{ok}\"\n"
        ));
    }
}

#[test]
fn m16_empty_run() {
    assert_first(
        "version: 1\nactions:\n  action1:\n    run: ''\n    outputs:\n      highly_sensitive:\n        a: a.csv\n",
        "run must have a value, action1 has an empty run key",
    );
}

#[test]
fn m17_image_tags() {
    // The reference accepts a Unicode digit; Docker does not, so warden refuses
    // it with an `Extra` error (tests/warden_rules.rs).
    let report = warden_pipeline::check(
        "version: 1\nactions:\n  a:\n    run: test:v\u{661}\n    outputs:\n      highly_sensitive:\n        a: a.csv\n",
    );
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].kind, DiagnosticKind::Extra);
    for bad in [
        "test",
        "test:",
        "test:v",
        "test:other",
        "test:vnotdigits",
        "test:v1x1",
        "test:pre",
        "test:V1",
        "x:v1:v2",
    ] {
        let name = bad.split(':').next().unwrap();
        assert_first(
            &format!(
                "version: 1\nactions:\n  a:\n    run: \"{bad}\"\n    outputs:\n      highly_sensitive:\n        a: a.csv\n"
            ),
            &format!(
                "Action command {name} must have a version specified in the form :vN (e.g. {name}:v2)"
            ),
        );
    }
    for good in [
        "v1", "v2", "v1.2", "v1.2.3", "dev", "latest", "v1-pre", "v1.2-pre", "v.",
    ] {
        assert_valid(&format!(
            "version: 1\nactions:\n  a:\n    run: test:{good}\n    outputs:\n      highly_sensitive:\n        a: a.csv\n"
        ));
    }
}

#[test]
fn command_properties() {
    let p = warden_pipeline::load(
        "version: 1\nactions:\n  a:\n    run: cohortextractor:latest generate_cohort another_arg\n    outputs:\n      highly_sensitive:\n        a: output/input.csv\n",
    )
    .unwrap();
    let run = &p.actions["a"].run;
    assert_eq!(run.name(), "cohortextractor");
    assert_eq!(run.version(), "latest");
    assert_eq!(run.args(), "generate_cohort another_arg");
    assert_eq!(
        run.parts,
        vec!["cohortextractor:latest", "generate_cohort", "another_arg"]
    );
    assert!(p.actions["a"].is_database_action());
}

#[test]
fn m18_needs_separated_by_commas() {
    assert_first(
        &format!(
            "version: 1\nactions:\n{OK_ACTION}  b:\n    run: python:v2 python b.py\n    needs: [a, 'generate_cohort do_analysis']\n    outputs:\n      highly_sensitive:\n        t: b.csv\n"
        ),
        "`needs` actions should be separated with commas, but b needs `generate_cohort do_analysis`",
    );
}

#[test]
fn m19_m20_generate_cohort_rules() {
    assert_first(
        "version: 1\nactions:\n  generate_cohort:\n    run: cohortextractor:latest generate_cohort\n    outputs:\n      highly_sensitive:\n        a: output/input.csv\n      moderately_sensitive:\n        b: output/b.csv\n",
        "A `generate_cohort` action must have exactly one output; generate_cohort had 2",
    );
    assert_first(
        "version: 1\nactions:\n  generate_cohort:\n    run: cohortextractor:latest generate_cohort\n    outputs:\n      moderately_sensitive:\n        a: output/input.csv\n        b: other/graph.png\n",
        "generate_cohort command should produce output in only one directory, found 2:\n - output/\n - other/",
    );
    assert_valid(
        "version: 1\nactions:\n  generate_cohort:\n    run: cohortextractor:latest generate_cohort --output-dir=output\n    outputs:\n      moderately_sensitive:\n        a: output/input.csv\n        b: other/graph.png\n",
    );
}

#[test]
fn m21_m22_m23_generate_dataset_rules() {
    for image in ["databuilder:latest", "ehrql:v1"] {
        assert_first(
            &format!(
                "version: 1\nactions:\n  generate_cohort:\n    run: {image} generate-dataset a.py --output=output/d.csv\n    outputs:\n      moderately_sensitive:\n        a: output/d.csv\n"
            ),
            "`generate_cohort` action uses `generate-dataset` and so all outputs must be labelled `highly_sensitive`",
        );
    }
    assert_first(
        "version: 4\nactions:\n  generate_dataset:\n    run: ehrql:v1 generate-dataset a.py\n    outputs:\n      highly_sensitive:\n        a: output/d.csv\n",
        "`generate_dataset` action does not provide an `--output` argument specifying where the results of `generate-dataset` should be stored",
    );
    assert_first(
        "version: 4\nactions:\n  g:\n    run: ehrql:v1 generate-dataset a.py --output outputs:arrow\n    outputs:\n      highly_sensitive:\n        a: outputs.arrow\n",
        "output specification must match the `--output` argument in the `run` command\n              got: outputs.arrow\nbut was expecting: outputs/:arrow",
    );
    assert_first(
        "version: 4\nactions:\n  g:\n    run: ehrql:v1 generate-dataset a.py --output=output/d.csv\n    outputs:\n      highly_sensitive:\n        a: output/e.csv\n        b: output/f.csv\n",
        "output specification must match the `--output` argument in the `run` command\n              got: output/e.csv                   \noutput/f.csv\nbut was expecting: output/d.csv",
    );
    assert_valid(
        "version: 4\nactions:\n  g:\n    run: ehrql:v1 generate-dataset a.py --output outputs:arrow\n    outputs:\n      highly_sensitive:\n        a: outputs/*.arrow\n",
    );
    assert_valid(
        "version: 1\nactions:\n  generate-dataset:\n    run: ehrql:v1 generate-dataset a.py --output=output/dataset.csv\n    outputs:\n      highly_sensitive:\n        a: output/dataset.csv\n",
    );
}

#[test]
fn m24_cohortextractor_banned_from_v4() {
    assert_first(
        "version: '4'\nactions:\n  a:\n    run: cohortextractor:latest generate_cohort\n    outputs:\n      highly_sensitive:\n        a: output/input.csv\n",
        "Action a uses cohortextractor actions, which are not supported in this version.",
    );
}

#[test]
fn m25_latest_banned_in_v5() {
    for run in [
        "r:latest 1",
        "python:latest   do python thing",
        "' reusable:latest x'",
    ] {
        let (_, msg, _, _) = first(&format!(
            "version: 5\nactions:\n  my_action:\n    run: {run}\n    outputs:\n      highly_sensitive:\n        a: a.csv\n"
        ));
        assert!(msg.starts_with("Action my_action uses `"), "{msg}");
        assert!(
            msg.ends_with(":latest`, which is not supported. Provide a version e.g. `:v2` instead"),
            "{msg}"
        );
    }
}

#[test]
fn m26_duplicate_run_commands() {
    assert_first(
        "version: 1\nactions:\n  action1:\n    run: test:latest\n    outputs:\n      highly_sensitive:\n        a: a.csv\n  action2:\n    run: test:latest\n    outputs:\n      highly_sensitive:\n        a: a.csv\n",
        "Action action2 has the same 'run' command as other actions: action1",
    );
}

#[test]
fn m27_unique_outputs_from_v2() {
    assert_first(
        "version: 2\nactions:\n  a:\n    run: test:v1\n    outputs:\n      highly_sensitive:\n        a: output/input.csv\n        b: output/input.csv\n",
        "Output path output/input.csv is not unique",
    );
    assert_valid(
        "version: 1\nactions:\n  a:\n    run: test:v1\n    outputs:\n      highly_sensitive:\n        a: output/input.csv\n        b: output/input.csv\n",
    );
}

#[test]
fn m28_unknown_needs() {
    assert_first(
        "version: 1\nactions:\n  action1:\n    run: test:v1\n    needs: [action2]\n    outputs:\n      highly_sensitive:\n        a: a.csv\n",
        "Action `action1` references an unknown action in its `needs` list: action2",
    );
}

#[test]
fn m29_to_m34_expectations() {
    assert_first(
        &format!("version: 4\nexpectations: {{}}\nactions:\n{OK_ACTION}"),
        "Project includes `expectations` section, which is not supported in this version. This section is only applicable to deprecated cohortextractor actions; you can safely remove it.",
    );
    assert_first(
        "version: 3\nactions: {}\n",
        "Project must include `expectations` section",
    );
    assert_first(
        "version: 3\nexpectations: []\nactions: {}\n",
        "Project `expectations` section must be a dictionary of key/value pairs",
    );
    assert_first(
        "version: 3\nexpectations: {}\nactions: {}\n",
        "Project `expectations` section must include `population_size` section",
    );
    assert_first(
        "version: 3\nexpectations:\n  population_size: 10\n  extra: 123\nactions: {}\n",
        "Unexpected parameters (extra) in project `expectations` section",
    );
    assert_first(
        "version: 3\nexpectations:\n  population_size: test\nactions: {}\n",
        "Project expectations population size must be a number",
    );
    let p = warden_pipeline::load("version: 2\nexpectations: junk\nactions: {}\n").unwrap();
    assert_eq!(p.expectations.unwrap().population_size, 1000);
    let p =
        warden_pipeline::load("version: 3\nexpectations:\n  population_size: 10.7\nactions: {}\n")
            .unwrap();
    assert_eq!(p.expectations.unwrap().population_size, 10);
}

#[test]
fn warnings_for_old_versions() {
    let report = check("version: '4.0'\nactions: {}\n");
    assert_eq!(
        report.warnings,
        vec![
            "ProjectWarning: Your project file is using an old version (4.0); consider updating to version 5"
        ]
    );
    assert!(check("version: 5\nactions: {}\n").warnings.is_empty());
}

#[test]
fn check_order_decides_the_first_error() {
    // An unknown need is reported after duplicate outputs.
    let src = "version: 2\nactions:\n  a:\n    run: test:v1\n    needs: [zzz]\n    outputs:\n      highly_sensitive:\n        a: x.csv\n  b:\n    run: test:v2\n    outputs:\n      highly_sensitive:\n        a: x.csv\n";
    let report = check(src);
    assert_eq!(report.errors[0].message, "Output path x.csv is not unique");
    assert_eq!(
        report.errors[1].message,
        "Action `a` references an unknown action in its `needs` list: zzz"
    );
    // In v5, cohortextractor:latest reports the cohortextractor ban first.
    let (_, msg, _, _) = first(
        "version: 5\nactions:\n  a:\n    run: cohortextractor:latest generate_measures\n    outputs:\n      highly_sensitive:\n        a: a.csv\n",
    );
    assert_eq!(
        msg,
        "Action a uses cohortextractor actions, which are not supported in this version."
    );
}

#[test]
fn all_errors_are_reported_with_positions() {
    let src = "version: 4\nactions:\n  a:\n    run: python:v2 python a.py\n    outputs:\n      moderately_sensitive:\n        x: out/x.pdf\n        y: out/y.rds\n  b:\n    run: python:v2\n    needs: [nope]\n    outputs:\n      highly_sensitive:\n        z: out/z.csv\n";
    let report = check(src);
    let got: Vec<(usize, usize)> = report.errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(7, 12), (8, 12), (11, 13)]);
}

#[test]
fn yaml_errors() {
    let (kind, msg, line, col) = first("version: 4\nactions:\n  a: 1\n  a: 2\n");
    assert_eq!(kind, DiagnosticKind::Yaml);
    assert_eq!(
        msg,
        "found duplicate key \"a\" (first defined at line 3, column 3)"
    );
    assert_eq!((line, col), (4, 3));
    let (kind, _, _, _) = first("version: 4\nactions: {\n");
    assert_eq!(kind, DiagnosticKind::Yaml);
    let (kind, msg, _, _) = first("version: 4\n---\nversion: 5\n");
    assert_eq!(kind, DiagnosticKind::Yaml);
    assert!(msg.contains("single document"), "{msg}");
}

#[test]
fn pinned_verdicts_where_the_reference_crashes() {
    let crash = |src: &str| {
        let (kind, msg, _, _) = first(src);
        assert_eq!(kind, DiagnosticKind::ReferenceCrash, "{src}: {msg}");
        msg
    };
    assert!(crash("").contains("empty"));
    assert!(crash("   \n").contains("empty"));
    assert!(crash("- a\n- b\n").contains("top level is a list"));
    assert!(crash("just text\n").contains("top level"));
    assert!(crash("version: 4\nactions:\n  a:\n    run: '   '\n    outputs:\n      highly_sensitive:\n        a: a.csv\n").contains("white space"));
    assert!(crash("version: 4\nactions:\n  a:\n    run: python:v2 'oops\n    outputs:\n      highly_sensitive:\n        a: a.csv\n").contains("quote"));
    assert!(crash(&format!("version: 4\nactions:\n{OK_ACTION}  b:\n    run: python:v2 python b.py\n    needs: [null]\n    outputs:\n      highly_sensitive:\n        a: b.csv\n")).contains("needs"));
    assert!(crash(&format!("version: {}\nactions: {{}}\n", "9".repeat(400))).contains("version"));
    assert!(
        crash("version: 3\nexpectations:\n  population_size: .inf\nactions: {}\n")
            .contains("population size")
    );
    assert!(crash("version: 4\n1: x\nactions: {}\n").contains("keys must be text"));
}

#[test]
fn integer_action_names_and_needs_are_names() {
    let src = "version: 3\nexpectations:\n  population_size: 10\nactions:\n  2019:\n    run: python:v2 python a.py\n    outputs:\n      highly_sensitive:\n        a: a.csv\n  b:\n    run: python:v2 python b.py\n    needs: [2019]\n    outputs:\n      highly_sensitive:\n        a: b.csv\n";
    let p = warden_pipeline::load(src).unwrap();
    assert_eq!(p.actions["b"].needs, vec!["2019"]);
    assert_eq!(p.topological_order(), vec!["2019", "b"]);
}

#[test]
fn cycles_are_reported_with_their_path() {
    let src = "version: 4\nactions:\n  a:\n    run: python:v2 python a.py\n    needs: [c]\n    outputs:\n      highly_sensitive:\n        a: a.csv\n  b:\n    run: python:v2 python b.py\n    needs: [a]\n    outputs:\n      highly_sensitive:\n        a: b.csv\n  c:\n    run: python:v2 python c.py\n    needs: [b]\n    outputs:\n      highly_sensitive:\n        a: c.csv\n  d:\n    run: python:v2 python d.py\n    needs: [d]\n    outputs:\n      highly_sensitive:\n        a: d.csv\n";
    let report = check(src);
    let msgs: Vec<_> = report
        .errors
        .iter()
        .map(|e| (e.kind, e.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        vec![
            (
                DiagnosticKind::Extra,
                "Actions depend on each other in a cycle: a -> c -> b -> a"
            ),
            (DiagnosticKind::Extra, "Action `d` needs itself"),
        ]
    );
}

#[test]
fn anchors_and_merge_keys_work_in_projects() {
    let src = "version: 4\nx-common: &common\n  run: python:v2 python a.py\nactions:\n  a:\n    <<: *common\n    outputs:\n      highly_sensitive:\n        a: a.csv\n";
    // The extra top-level key is still an error, as in the reference.
    assert_first(src, "Unexpected parameters (x-common) in project");
    let src = "version: 4\nactions:\n  a: &a\n    run: python:v2 python a.py\n    outputs:\n      highly_sensitive:\n        a: a.csv\n  b:\n    <<: *a\n    run: python:v2 python b.py\n    outputs:\n      highly_sensitive:\n        a: b.csv\n";
    assert_valid(src);
}

#[test]
fn library_api_for_the_planner() {
    let p = warden_pipeline::load(
        "version: 4\nactions:\n  g:\n    run: ehrql:v1 generate-dataset a.py --output output/d.csv\n    outputs:\n      highly_sensitive:\n        d: output/d.csv\n  r:\n    run: r:latest analysis/x.R\n    needs: [g]\n    config: {a: 1, b: [x]}\n    dummy_data_file: dummy.csv\n    outputs:\n      moderately_sensitive:\n        t: output/t.csv\n  s:\n    run: r:latest analysis/y.R\n    outputs:\n      minimally_sensitive:\n        t: output/s.csv\n",
    )
    .unwrap();
    assert!(p.actions["g"].is_database_action());
    assert!(!p.actions["r"].is_database_action());
    assert_eq!(
        p.actions["r"].config.as_ref().unwrap().to_string(),
        r#"{"a":1,"b":["x"]}"#
    );
    assert_eq!(p.actions["r"].dummy_data_file.as_deref(), Some("dummy.csv"));
    let images: Vec<_> = p.action_images().into_iter().collect();
    assert_eq!(images, vec!["ehrql:v1", "r:v1"]);
    assert_eq!(p.dependency_closure(&["r"]), vec!["g", "r"]);
    assert_eq!(p.dependency_closure(&["run_all"]), vec!["g", "r", "s"]);
    assert!(p.expectations.is_none());
    let levels: Vec<_> = p.actions["r"].outputs.patterns().collect();
    assert_eq!(
        levels,
        vec![(
            warden_pipeline::PrivacyLevel::ModeratelySensitive,
            "output/t.csv"
        )]
    );
}
