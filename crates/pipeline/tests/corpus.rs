//! Every real `project.yaml` of the corpus gets the verdict and first-error text
//! recorded from the reference validator (`VERDICTS-reference.tsv`, column
//! `opensafely` 1.57.0, which behaves as 2.0.1).

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../corpus/project-yaml")
}

#[test]
fn corpus_verdicts_match_the_reference() {
    let dir = corpus_dir();
    let tsv = std::fs::read_to_string(dir.join("VERDICTS-reference.tsv")).unwrap_or_else(|e| {
        panic!(
            "the corpus is part of the repository, but {} is missing: {e}",
            dir.display()
        )
    });
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, verdict, first_error) = (cols[0], cols[1], cols[2]);
        let bytes = std::fs::read(dir.join(file)).expect("corpus file");
        let text = String::from_utf8_lossy(&bytes);
        let report = warden_pipeline::check(&text);
        checked += 1;
        // Deliberate divergence: the reference crashes on integer `needs` items
        // (`needs: [2019]` for an action `2019:`); warden treats them as names.
        if file == "opensafely__ckd-healthcare-use.yaml" {
            assert!(first_error.starts_with("TypeError"), "{first_error}");
            assert!(report.is_valid(), "{file}: {:?}", report.errors);
            continue;
        }
        match (verdict, report.first_error()) {
            ("ok", None) => {}
            ("error", Some(d))
                if d.message.replace('\n', " ") == first_error.replace("\\n", " ") => {}
            ("error", Some(d)) if d.kind == warden_pipeline::DiagnosticKind::Yaml => {}
            (v, got) => failures.push(format!(
                "{file}: reference {v} `{first_error}`, warden {:?}",
                got.map(|d| &d.message)
            )),
        }
    }
    assert!(checked >= 250, "only {checked} corpus files");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
