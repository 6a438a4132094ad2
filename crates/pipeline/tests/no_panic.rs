//! Property tests: no input makes `check` panic, and what it reports always
//! points inside the source.

use proptest::prelude::*;

fn corpus() -> &'static [String] {
    static FILES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    FILES.get_or_init(load_corpus)
}

fn load_corpus() -> Vec<String> {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../corpus/project-yaml");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_else(|e| {
            panic!(
                "the corpus is part of the repository, but {} is missing: {e}",
                dir.display()
            )
        });
    files.sort();
    assert!(
        files.len() >= 200,
        "expected the 250-file corpus in {}, found {}",
        dir.display(),
        files.len()
    );
    files
}

fn assert_sane(src: &str) {
    let report = warden_pipeline::check(src);
    for e in &report.errors {
        assert!(
            e.offset <= src.len(),
            "offset {} beyond {}",
            e.offset,
            src.len()
        );
        assert!(e.line >= 1 && e.column >= 1);
        assert!(!e.message.is_empty());
    }
    let _ = warden_pipeline::render::human(&report, src, "project.yaml");
    if let Some(p) = &report.pipeline {
        let _ = p.topological_order();
        let _ = p.to_mermaid();
    }
}

/// Tokens that YAML and the validator care about.
const PIECES: &[&str] = &[
    "version: ",
    "actions:",
    "\n",
    "  ",
    "    ",
    "run: ",
    "outputs:",
    "needs: [",
    "]",
    "{",
    "}",
    "highly_sensitive:",
    "moderately_sensitive:",
    "a: ",
    "b.csv",
    "*",
    "'",
    "\"",
    ":",
    "- ",
    "&x ",
    "*x",
    "<<: ",
    "!!str ",
    "#",
    "\t",
    "\\",
    "cohortextractor:latest generate_cohort",
    "ehrql:v1 generate-dataset --output ",
    "expectations:",
    "population_size: ",
    "3",
    "5",
    ".inf",
    "run_all",
    "é",
    "\u{feff}",
    "---\n",
    ",",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        assert_sane(&s);
    }

    #[test]
    fn yaml_shaped_text_never_panics(parts in proptest::collection::vec(0..PIECES.len(), 0..60)) {
        let s: String = parts.into_iter().map(|i| PIECES[i]).collect();
        assert_sane(&s);
    }

    #[test]
    fn mutated_real_studies_never_panic(
        file in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..PIECES.len(), 0..3u8), 1..8),
    ) {
        let files = corpus();
        let mut s = files[file.index(files.len())].clone();
        for (at, piece, op) in edits {
            let mut pos = at.index(s.len() + 1);
            while !s.is_char_boundary(pos) { pos -= 1; }
            match op {
                0 => s.insert_str(pos, PIECES[piece]),
                1 => { let end = (pos + 5).min(s.len()); let mut end = end; while !s.is_char_boundary(end) { end -= 1; } s.replace_range(pos..end, ""); }
                _ => s.insert(pos, '\n'),
            }
        }
        assert_sane(&s);
    }
}
