//! Hostile nesting depths (issue 7): block sequences, block mappings, complex
//! keys (`? `), flow inside block, aliases, and random mixtures of them, from 10^2
//! to 10^6 levels. Everything runs on a thread with a 1 MiB stack (half of
//! a normal test thread's, in debug builds), so a recursion over the input would overflow it: past
//! `MAX_DEPTH` the answer is one YAML error at the opener that went too deep, with
//! its line and column; up to it, the document parses and validates.

use proptest::prelude::*;
use warden_pipeline::yaml::{self, MAX_DEPTH, Node, Value};
use warden_pipeline::{DiagnosticKind, check};

const SMALL_STACK: usize = 1024 * 1024;

const DEPTHS: [usize; 9] = [100, 200, 254, 255, 256, 1_000, 10_000, 100_000, 1_000_000];

/// Runs `f` on a thread with a small stack.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the check panicked (or overflowed its stack)");
}

/// A generated document: its text and where each collection opens (1-based line
/// and column), outermost first.
struct Doc {
    text: String,
    openers: Vec<(usize, usize)>,
    /// Index in `openers` of the first flow collection (`openers.len()` if none).
    flow_from: usize,
    line: usize,
    line_start: usize,
}

impl Doc {
    fn new() -> Doc {
        Doc {
            text: String::new(),
            openers: Vec::new(),
            flow_from: usize::MAX,
            line: 1,
            line_start: 0,
        }
    }

    /// Appends `token`, a collection opening at its first character.
    fn open(&mut self, token: &str) {
        self.openers
            .push((self.line, self.text.len() - self.line_start + 1));
        self.push(token);
    }

    fn push(&mut self, s: &str) {
        for (i, _) in s.match_indices('\n') {
            self.line += 1;
            self.line_start = self.text.len() + i + 1;
        }
        self.text.push_str(s);
    }
}

/// The openers a shape uses on one line.
#[derive(Debug, Clone, Copy)]
enum Inline {
    Seq,
    Key,
}

fn inline(levels: &[Inline]) -> Doc {
    let mut d = Doc::new();
    for l in levels {
        d.open(match l {
            Inline::Seq => "- ",
            Inline::Key => "? ",
        });
    }
    d.push("x\n");
    d
}

/// One collection per line, each indented one more: `-` or `k:` lines.
fn indented(levels: &[bool]) -> Doc {
    let mut d = Doc::new();
    for (i, &seq) in levels.iter().enumerate() {
        d.push(&" ".repeat(i));
        d.open(if seq { "-\n" } else { "k:\n" });
    }
    d.push(&" ".repeat(levels.len()));
    d.push("x\n");
    d
}

/// Block openers, then flow openers (`[` or `{k: `) closed on the same line.
fn flow_in_block(block: &[Inline], flow: &[bool]) -> Doc {
    let mut d = Doc::new();
    for l in block {
        d.open(match l {
            Inline::Seq => "- ",
            Inline::Key => "? ",
        });
    }
    d.flow_from = d.openers.len();
    for &seq in flow {
        d.open(if seq { "[" } else { "{k: " });
    }
    d.push("x");
    for &seq in flow.iter().rev() {
        d.push(if seq { "]" } else { "}" });
    }
    d.push("\n");
    d
}

fn height(node: &Node) -> usize {
    // Iterative, so the test itself is no recursion over the input either.
    let mut max = 0;
    let mut stack = vec![(node, 0usize)];
    while let Some((n, depth)) = stack.pop() {
        match &n.value {
            Value::Seq(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Map(entries) => {
                for (k, v) in entries {
                    stack.push((k, depth + 1));
                    stack.push((v, depth + 1));
                }
            }
            _ => max = max.max(depth),
        }
    }
    max
}

/// The verdict on `doc`: parsed to its full height up to the limit, else the
/// depth error at the first opener past it; `check` agrees and never crashes.
fn assert_verdict(name: &str, doc: &Doc) {
    let depth = doc.openers.len();
    let parsed = yaml::parse(&doc.text);
    if depth <= MAX_DEPTH {
        let root = parsed.unwrap_or_else(|e| panic!("{name} ({depth}): {:?}", e[0]));
        assert_eq!(height(&root.unwrap()), depth, "{name}");
        let report = check(&doc.text);
        let first = report.first_error().expect("not a project");
        assert!(
            !first.message.contains("recursion"),
            "{name}: {}",
            first.message
        );
        return;
    }
    let errors = parsed.expect_err(name);
    let e = &errors[0];
    assert_eq!(
        e.message,
        format!(
            "invalid YAML: recursion limit exceeded (collections nested more than {MAX_DEPTH} levels deep)"
        ),
        "{name} ({depth})"
    );
    // The opener past the limit; or, when the flow part alone is deeper than
    // the parser's own limit (255 flow levels), possibly that flow opener: the
    // parser's scanner reads a token ahead of the events.
    let (line, column) = doc.openers[MAX_DEPTH];
    let at = (e.span.start.line as usize, e.span.start.column as usize);
    let flow_limit = doc.openers.get(doc.flow_from.saturating_add(255)).copied();
    assert!(
        at == (line, column) || Some(at) == flow_limit,
        "{name} ({depth}): error at {at:?}, expected {:?} (or {flow_limit:?})",
        (line, column)
    );
    let (line, column) = at;
    let report = check(&doc.text);
    let first = report.first_error().unwrap();
    assert_eq!(first.kind, DiagnosticKind::Yaml, "{name}");
    assert_eq!(first.message, e.message, "{name}");
    assert_eq!((first.line, first.column), (line, column), "{name}");
    assert!(report.pipeline.is_none());
}

#[test]
fn block_sequences_complex_keys_and_mixtures_at_every_depth() {
    on_small_stack(|| {
        for depth in DEPTHS {
            assert_verdict("seq", &inline(&vec![Inline::Seq; depth]));
            assert_verdict("keys", &inline(&vec![Inline::Key; depth]));
            let alternating: Vec<Inline> = (0..depth)
                .map(|i| if i % 2 == 0 { Inline::Seq } else { Inline::Key })
                .collect();
            assert_verdict("seq-key", &inline(&alternating));
        }
    });
}

#[test]
fn indented_block_mappings_and_sequences() {
    on_small_stack(|| {
        // One level per line costs its depth in indentation: 3000 levels is 4.5 MB.
        for depth in [100, 255, 256, 1_000, 3_000] {
            assert_verdict("maps", &indented(&vec![false; depth]));
            assert_verdict("seqs", &indented(&vec![true; depth]));
            let mixed: Vec<bool> = (0..depth).map(|i| i % 3 == 0).collect();
            assert_verdict("mixed", &indented(&mixed));
        }
    });
}

#[test]
fn flow_inside_block() {
    on_small_stack(|| {
        for depth in DEPTHS {
            // The flow part alone stays within the parser's own limit or not.
            for flow in [10, 200, 250, 300] {
                let block = depth.saturating_sub(flow);
                let kinds: Vec<bool> = (0..flow.min(depth)).map(|i| i % 2 == 0).collect();
                assert_verdict(
                    "flow-in-block",
                    &flow_in_block(&vec![Inline::Seq; block], &kinds),
                );
            }
        }
    });
}

#[test]
fn aliases_cannot_build_past_the_limit() {
    on_small_stack(|| {
        // a0 is 200 deep; each a(k+1) = [*ak] is one deeper, with no new opener.
        let mut text = format!("a0: &a0 {}x{}\n", "[".repeat(200), "]".repeat(200));
        for k in 0..100 {
            text.push_str(&format!("a{}: &a{} [*a{k}]\n", k + 1, k + 1));
        }
        let errors = yaml::parse(&text).unwrap_err();
        assert!(errors[0].message.contains("recursion limit exceeded"));
        // Root mapping (1) + the list (1) + a_k's height (200 + k) > 255 at k = 54.
        assert_eq!(errors[0].span.start.line, 56);
        assert_eq!(errors[0].span.start.column, 12);
        // Merge keys only bring entries one level up: fine at any count.
        let mut text = String::from("base: &b {x: 1}\n");
        for i in 0..1000 {
            text.push_str(&format!("m{i}: {{<<: *b, y: {i}}}\n"));
        }
        assert!(yaml::parse(&text).is_ok());
    });
}

#[test]
fn a_deep_config_at_the_limit_validates_and_converts() {
    on_small_stack(|| {
        // root, actions, the action: the config's collections start at level 4.
        for total in [MAX_DEPTH, MAX_DEPTH + 1] {
            // `config: {k: [[…]]}`: the mapping is level 4, the lists below it.
            let inner = total - 4;
            let text = format!(
                "version: '4.0'\nactions:\n  a:\n    run: python:latest python a.py\n    config: {{k: {}1{}}}\n    outputs:\n      moderately_sensitive:\n        t: output/t.csv\n",
                "[".repeat(inner),
                "]".repeat(inner)
            );
            let report = check(&text);
            if total <= MAX_DEPTH {
                assert!(report.is_valid(), "{:?}", report.errors);
                let pipeline = report.pipeline.as_ref().unwrap();
                let mut json = &pipeline.actions["a"].config.as_ref().unwrap()["k"];
                let mut levels = 0;
                while let serde_json::Value::Array(items) = json {
                    levels += 1;
                    json = &items[0];
                }
                assert_eq!(levels, inner);
                assert_eq!(json, &serde_json::json!(1));
            } else {
                let first = report.first_error().unwrap();
                assert!(first.message.contains("recursion limit exceeded"));
                // `{` is at column 13, the first `[` at 17, the 256th opener
                // is the 252nd `[`.
                assert_eq!((first.line, first.column), (5, 17 + MAX_DEPTH - 4));
            }
        }
    });
}

fn inline_kind() -> impl Strategy<Value = Inline> {
    prop_oneof![Just(Inline::Seq), Just(Inline::Key)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random mixtures: a random pattern of block openers repeated up to 10^6
    /// levels, then flow openers.
    #[test]
    fn random_mixtures(
        pattern in proptest::collection::vec(inline_kind(), 1..8),
        repeat in prop_oneof![1..40usize, 40..400usize, 1_000..200_000usize],
        flow in proptest::collection::vec(any::<bool>(), 0..300),
    ) {
        on_small_stack(move || {
            let block: Vec<Inline> = pattern.iter().copied().cycle().take(pattern.len() * repeat).collect();
            assert_verdict("random", &flow_in_block(&block, &flow));
        });
    }
}
