//! warden's own refusals of what the reference accepts (issue 7, items 6 and
//! 11): output paths outside the workspace or into `.git`/`metadata`, control
//! characters in output paths, and image names or tags that would leave the
//! image prefix. Each is an error of kind `Extra`, after every reference error.
//! The variants are generated.

use proptest::prelude::*;
use warden_pipeline::{DiagnosticKind, check};

/// A valid v4 project with one action whose output (at `level`) is `pattern`
/// and whose run command starts with `image`.
fn project(image: &str, level: &str, pattern: &str) -> String {
    let q = |s: &str| {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if warden_pipeline::escape::needs_escape(c) => {
                    out.push_str(&format!("\\U{:08x}", u32::from(c)));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    format!(
        "version: '4.0'\nactions:\n  a:\n    run: {}\n    outputs:\n      {level}:\n        t: {}\n",
        q(&format!("{image} python a.py")),
        q(pattern)
    )
}

#[track_caller]
fn assert_extra_only(source: &str, starts: &str) {
    let report = check(source);
    assert!(!report.is_valid(), "expected refused:\n{source}");
    assert!(report.pipeline.is_none());
    for d in &report.errors {
        assert_eq!(
            d.kind,
            DiagnosticKind::Extra,
            "{source}\n{:?}",
            report.errors
        );
    }
    assert!(
        report.errors[0].message.starts_with(starts),
        "{source}\n{:?}",
        report.errors
    );
}

#[track_caller]
fn assert_valid(source: &str) {
    let report = check(source);
    assert!(report.is_valid(), "{source}\n{:?}", report.errors);
}

/// A random letter-case of `word`.
fn any_case(word: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,8}"
}

fn level() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("highly_sensitive"),
        Just("moderately_sensitive"),
        Just("minimally_sensitive")
    ]
}

#[test]
fn examples() {
    assert_extra_only(
        &project("python:v2", "highly_sensitive", "../x.csv"),
        "Output path ../x.csv is invalid: is not in standard form (contains double slashes or '..' elements)",
    );
    assert_extra_only(
        &project("python:v2", "highly_sensitive", ".git/index.lock"),
        "Output path .git/index.lock is invalid: is inside the repository's `.git` directory",
    );
    assert_extra_only(
        &project("python:v2", "moderately_sensitive", ".git/refs/heads/*.csv"),
        "Output path .git/refs/heads/*.csv is invalid: is inside the repository's `.git`",
    );
    assert_extra_only(
        &project("python:v2", "highly_sensitive", "*/x.csv"),
        "Output path */x.csv is invalid: is inside the repository's `.git`",
    );
    assert_extra_only(
        &project("python:v2", "highly_sensitive", "Metadata/x.csv"),
        "Output path Metadata/x.csv is invalid: should not include the metadata directory",
    );
    assert_extra_only(
        &project("python:v2", "highly_sensitive", "out/a\u{1b}x.csv"),
        "Output path out/a\u{1b}x.csv is invalid: contains the character U+001B",
    );
    assert_extra_only(
        &project("../../x/evil:latest", "highly_sensitive", "out/x.csv"),
        "Action a uses the image `../../x/evil`, which is not a valid image name",
    );
    assert_extra_only(
        &project(
            "ghcr.io/opensafely-core/python:v2",
            "highly_sensitive",
            "out/x.csv",
        ),
        "Action a uses the image `ghcr.io/opensafely-core/python`",
    );
    assert_extra_only(
        &project(":v2", "highly_sensitive", "out/x.csv"),
        "Action a uses `:v2`, which has no image name",
    );
    assert_extra_only(
        &project("python:v\u{661}", "highly_sensitive", "out/x.csv"),
        "Action a uses the image tag `v\u{661}`, which is not a valid Docker tag",
    );
    // What real studies use stays valid.
    for image in [
        "python:v2",
        "r:latest",
        "stata-mp:v1.2",
        "cohort-joiner:v0.0.7",
        "deciles-charts:v0.0.15",
        "ehrql:v1.2-pre",
        "my_action:dev",
        "a__b.c--d:v1",
    ] {
        assert_valid(&project(image, "highly_sensitive", "output/x.csv"));
    }
    for pattern in [
        "output/x.csv",
        "output/*/x.csv",
        "out*/x.csv",
        "output/.git.csv",
        "output/git/x.csv",
        "x/metadata/y.txt",
        "metadata2/x.txt",
        "metadata.csv",
        ".gitignore.txt",
        "..x.csv",
        "output/..x.csv",
    ] {
        assert_valid(&project("python:v2", "moderately_sensitive", pattern));
    }
}

#[test]
fn extra_errors_come_after_the_reference_errors() {
    // The reference reports the duplicate run command; warden's own errors follow.
    let source = "version: '4.0'\nactions:\n  a:\n    run: Evil/x:v1 go\n    outputs:\n      highly_sensitive:\n        t: ../a.csv\n  b:\n    run: Evil/x:v1 go\n    outputs:\n      highly_sensitive:\n        t: .GIT/b.csv\n";
    let report = check(source);
    let kinds: Vec<_> = report.errors.iter().map(|d| d.kind).collect();
    assert_eq!(kinds[0], DiagnosticKind::Validation, "{:?}", report.errors);
    assert_eq!(
        report.errors[0].message,
        "Action b has the same 'run' command as other actions: a"
    );
    assert!(kinds[1..].iter().all(|k| *k == DiagnosticKind::Extra));
    assert_eq!(kinds.len(), 1 + 2 + 2, "{:?}", report.errors);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `..` anywhere: after a real segment the reference refuses it; leading
    /// ones only warden does, with the reference's text.
    #[test]
    fn dotdot_components_are_refused(
        before in proptest::collection::vec(Just(".."), 1..4),
        after in proptest::collection::vec(segment(), 0..3),
        level in level(),
    ) {
        let pattern = format!("{}/{}x.csv", before.join("/"),
            after.iter().map(|s| format!("{s}/")).collect::<String>());
        let report = check(&project("python:v2", level, &pattern));
        prop_assert!(!report.is_valid());
        let d = &report.errors[0];
        prop_assert_eq!(d.kind, DiagnosticKind::Extra);
        prop_assert_eq!(&d.message, &format!("Output path {pattern} is invalid: is not in standard form (contains double slashes or '..' elements)"));
    }

    /// `.git` in any letter case at any depth, or a top wildcard that could be it.
    #[test]
    fn git_components_are_refused(
        git in prop_oneof![any_case(".git"), Just("*".to_string()), Just(".g*".to_string()), Just("*t".to_string()), Just(".*".to_string())],
        before in proptest::collection::vec(segment(), 0..3),
        after in proptest::collection::vec(segment(), 0..3),
        level in level(),
    ) {
        let before = if git.contains('*') { Vec::new() } else { before };
        let mut parts: Vec<String> = before;
        parts.push(git);
        parts.extend(after);
        parts.push("x.csv".into());
        let pattern = parts.join("/");
        let report = check(&project("python:v2", level, &pattern));
        prop_assert!(!report.is_valid());
        prop_assert!(report.errors.iter().all(|d| d.kind == DiagnosticKind::Extra));
        prop_assert!(report.errors[0].message.contains("`.git` directory"), "{:?}", report.errors);
    }

    /// `metadata` in a letter case the reference does not refuse, at the top.
    #[test]
    fn metadata_case_variants_are_refused(
        m in any_case("metadata").prop_filter("exact is the reference's", |m| m != "metadata"),
        rest in proptest::collection::vec(segment(), 0..3),
    ) {
        let pattern = format!("{m}/{}x.log", rest.iter().map(|s| format!("{s}/")).collect::<String>());
        let report = check(&project("python:v2", "moderately_sensitive", &pattern));
        prop_assert!(!report.is_valid());
        prop_assert_eq!(report.errors[0].kind, DiagnosticKind::Extra);
        prop_assert!(report.errors[0].message.ends_with("should not include the metadata directory"));
    }

    /// Any control or invisible formatting character in an output path.
    #[test]
    fn control_characters_in_output_paths_are_refused(
        c in any::<char>().prop_filter("escaped, not a backslash", |c| warden_pipeline::escape::needs_escape(*c) && *c != '\\'),
        seg in segment(),
        at_start in any::<bool>(),
    ) {
        let pattern = if at_start { format!("{c}{seg}/x.csv") } else { format!("{seg}/x{c}.csv") };
        let report = check(&project("python:v2", "highly_sensitive", &pattern));
        prop_assert!(!report.is_valid(), "{pattern:?}");
        let d = &report.errors[0];
        prop_assert_eq!(d.kind, DiagnosticKind::Extra, "{:?}", d);
        let expected = format!("contains the character U+{:04X}", u32::from(c));
        prop_assert!(d.message.contains(&expected));
    }

    /// Image names outside Docker's one-component grammar: capitals, `/`,
    /// `..`, other punctuation, separators at the ends.
    #[test]
    fn bad_image_names_are_refused(
        name in prop_oneof![
            "[a-z]{1,5}[A-Z][a-z]{0,5}",
            "[a-z]{1,5}/[a-z]{1,5}",
            "(\\.\\./){1,3}[a-z]{1,5}",
            "[a-z]{1,5}\\.\\.[a-z]{1,5}",
            "[a-z]{1,5}[@#$%+=~!,]{1,2}[a-z]{1,5}",
            "[._-][a-z]{1,5}",
            "[a-z]{1,5}[._-]",
            "[a-z]{1,3}___[a-z]{1,3}",
        ],
        tag in prop_oneof![Just("v1"), Just("latest"), Just("dev"), Just("v1.2-pre")],
    ) {
        let report = check(&project(&format!("{name}:{tag}"), "highly_sensitive", "out/x.csv"));
        prop_assert!(!report.is_valid(), "{name}");
        prop_assert_eq!(report.errors[0].kind, DiagnosticKind::Extra);
        let expected = format!("Action a uses the image `{name}`, which is not a valid image name");
        prop_assert!(report.errors[0].message.starts_with(&expected), "{:?}", report.errors);
    }

    /// Names in the grammar, with the tags the reference accepts, stay valid.
    #[test]
    fn good_image_names_are_accepted(
        name in "[a-z0-9]{1,6}(([._]|__|-{1,3})[a-z0-9]{1,6}){0,3}",
        tag in prop_oneof![Just("v1".to_string()), Just("latest".to_string()), Just("dev".to_string()), "v[0-9]{1,3}(\\.[0-9]{1,3}){0,2}(-pre)?"],
    ) {
        prop_assume!(!name.starts_with("cohortextractor"));
        assert_valid(&project(&format!("{name}:{tag}"), "highly_sensitive", "out/x.csv"));
    }
}
