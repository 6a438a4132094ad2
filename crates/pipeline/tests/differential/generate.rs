//! The deterministic case generator: realistic valid pipelines of every format version,
//! then one to three named mutations each (structural, on the document tree, or on the
//! emitted text). The same seed always gives the same cases.

use super::rng::Rng;
use super::yaml::{Node, emit, quote, s};

/// One generated input.
pub struct Case {
    pub name: String,
    /// What was done to the base pipeline, for the mismatch report.
    pub mutation: String,
    pub text: String,
}

/// Changes made to the emitted text, after the tree has been written out.
enum TextOp {
    Crlf,
    Bom,
    NoFinalNewline,
    Append(String),
    Prepend(String),
    /// Replace leading spaces of one (1-based, wrapping) line with a tab.
    TabLine(usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    /// Cut the text at this fraction (per mille) of its length, at a char boundary.
    Truncate(usize),
    /// Insert a character at this fraction (per mille) of the length.
    Insert(usize, char),
}

/// A pipeline being mutated.
struct Ctx {
    doc: Node,
    version: f64,
    text_ops: Vec<TextOp>,
    /// Replaces the whole emitted text.
    whole: Option<String>,
}

pub fn generate(seed: u64, count: usize) -> Vec<Case> {
    let mut cases = Vec::with_capacity(count);
    for i in 0..count {
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let (doc, version, base_desc) = base(&mut rng);
        let mut ctx = Ctx {
            doc,
            version,
            text_ops: Vec::new(),
            whole: None,
        };
        let n = match rng.below(20) {
            0 => 3,
            1..=5 => 2,
            _ => 1,
        };
        let mut applied = Vec::new();
        for _ in 0..n {
            let (name, mutate) = MUTATIONS[rng.below(MUTATIONS.len())];
            let detail = mutate(&mut ctx, &mut rng);
            applied.push(format!("{name}({detail})"));
        }
        let text = render(&ctx);
        cases.push(Case {
            name: format!("gen-{seed}-{i:05}"),
            mutation: format!("{base_desc} + {}", applied.join(" + ")),
            text,
        });
    }
    cases
}

/// Variants of the corpus files: each one with another `version:` line.
pub fn corpus_variants(seed: u64, files: &[(String, String)]) -> Vec<Case> {
    let mut rng = Rng::new(seed ^ 0xC0FF_EE00);
    let mut cases = Vec::new();
    for (name, text) in files {
        let Some(start) = text
            .match_indices("version:")
            .map(|(i, _)| i)
            .find(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
        else {
            continue;
        };
        let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
        let line_end = if text[..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        let new_version = *rng.pick(&["1", "2", "'3.0'", "3.5", "4", "'4.0'", "5", "6"]);
        let mut out = String::with_capacity(text.len() + 8);
        out.push_str(&text[..start]);
        out.push_str("version: ");
        out.push_str(new_version);
        out.push_str(&text[line_end..]);
        cases.push(Case {
            name: format!("corpus-version-{new_version}-{name}"),
            mutation: format!("corpus file {name} with version: {new_version}"),
            text: out,
        });
    }
    cases
}

fn render(ctx: &Ctx) -> String {
    let mut text = match &ctx.whole {
        Some(w) => return w.clone(),
        None => emit(&ctx.doc),
    };
    for op in &ctx.text_ops {
        text = apply_text_op(text, op);
    }
    text
}

fn boundary(text: &str, per_mille: usize) -> usize {
    let mut at = text.len() * per_mille / 1000;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply_text_op(text: String, op: &TextOp) -> String {
    let map_line = |text: &str, n: usize, f: &dyn Fn(&str) -> Vec<String>| -> String {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        if lines.is_empty() {
            return text.to_string();
        }
        let target = n % lines.len();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            if i == target {
                out.extend(f(line));
            } else {
                out.push_str(line);
            }
        }
        out
    };
    match op {
        TextOp::Crlf => text.replace('\n', "\r\n"),
        TextOp::Bom => format!("\u{feff}{text}"),
        TextOp::NoFinalNewline => text.trim_end_matches('\n').to_string(),
        TextOp::Append(extra) => text + extra,
        TextOp::Prepend(extra) => format!("{extra}{text}"),
        TextOp::TabLine(n) => map_line(&text, *n, &|line| {
            let trimmed = line.trim_start_matches(' ');
            if trimmed.len() == line.len() {
                vec![format!("\t{line}")]
            } else {
                vec![format!("\t{trimmed}")]
            }
        }),
        TextOp::DeleteLine(n) => map_line(&text, *n, &|_| vec![]),
        TextOp::DuplicateLine(n) => map_line(&text, *n, &|line| {
            let line = if line.ends_with('\n') {
                line.to_string()
            } else {
                format!("{line}\n")
            };
            vec![line.clone(), line]
        }),
        TextOp::Truncate(pm) => text[..boundary(&text, *pm)].to_string(),
        TextOp::Insert(pm, c) => {
            let at = boundary(&text, *pm);
            format!("{}{c}{}", &text[..at], &text[at..])
        }
    }
}

// ---------------------------------------------------------------------------------------
// Base pipelines

const VERSIONS: [(&str, f64); 12] = [
    ("1", 1.0),
    ("'1.0'", 1.0),
    ("2", 2.0),
    ("'3.0'", 3.0),
    ("'3.0'", 3.0),
    ("3", 3.0),
    ("\"3.0\"", 3.0),
    ("4", 4.0),
    ("'4.0'", 4.0),
    ("5", 5.0),
    ("5", 5.0),
    ("5.0", 5.0),
];

fn outputs(level: &str, entries: &[(&str, &str)]) -> Node {
    let mut files = Node::map();
    for (k, v) in entries {
        files.set(&quote(k), s(v));
    }
    Node::map().with(level, files)
}

fn tag(rng: &mut Rng, version: f64) -> &'static str {
    if version >= 5.0 {
        rng.pick::<&str>(&["v2", "v2", "v1", "v1.2.3", "dev", "v2-pre"])
    } else {
        rng.pick::<&str>(&["latest", "latest", "v2", "v1", "v1.2"])
    }
}

/// A valid pipeline: (document, version as a float, description).
fn base(rng: &mut Rng) -> (Node, f64, String) {
    let (version_raw, version) = *rng.pick(&VERSIONS);
    let n_actions = rng.range(1, 6);
    let mut actions: Vec<(String, Node)> = Vec::new();

    // The data action.
    let cohortextractor = version < 4.0 && rng.chance(2, 3);
    let (data_name, data_action) = if cohortextractor {
        let t = if rng.chance(3, 4) { "latest" } else { "v1.2" };
        match rng.below(3) {
            0 => (
                "generate_study_population",
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "cohortextractor:{t} generate_cohort --study-definition study_definition"
                        )),
                    )
                    .with("outputs", outputs("highly_sensitive", &[("cohort", "output/input.csv")])),
            ),
            1 => (
                "generate_cohort",
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "cohortextractor:{t} generate_cohort --study-definition study_definition --index-date-range '2020-01-01 to 2020-12-01 by month' --output-dir=output/measures --output-format=feather"
                        )),
                    )
                    .with(
                        "outputs",
                        outputs("highly_sensitive", &[("cohort", "output/measures/input_*.feather")]),
                    ),
            ),
            _ => (
                "generate_study_population_1",
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "cohortextractor:{t} generate_cohort --study-definition study_definition_1 --output-format csv.gz"
                        )),
                    )
                    .with("outputs", outputs("highly_sensitive", &[("cohort", "output/input_1.csv.gz")]))
                    .with("dummy_data_file", s("analysis/dummy_1.csv.gz")),
            ),
        }
    } else {
        let t = tag(rng, version);
        match rng.below(4) {
            0 => (
                "generate_dataset",
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "ehrql:{t} generate-dataset analysis/dataset_definition.py --output output/dataset.csv.gz"
                        )),
                    )
                    .with("outputs", outputs("highly_sensitive", &[("dataset", "output/dataset.csv.gz")])),
            ),
            1 => (
                "generate-dataset",
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "ehrql:{t} generate-dataset analysis/dataset_definition.py --output=output/dataset.arrow --dummy-tables dummy_tables"
                        )),
                    )
                    .with("outputs", outputs("highly_sensitive", &[("dataset", "output/dataset.arrow")])),
            ),
            2 => (
                "extract",
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "ehrql:{t} generate-dataset analysis/dataset_definition.py --output output/extract:csv.gz"
                        )),
                    )
                    .with(
                        "outputs",
                        outputs("highly_sensitive", &[("tables", "output/extract/*.csv.gz")]),
                    ),
            ),
            _ => (
                "run_query",
                Node::map()
                    .with(
                        "run",
                        s(&format!("sqlrunner:{t} analysis/query.sql --output output/results.csv")),
                    )
                    .with("outputs", outputs("highly_sensitive", &[("results", "output/results.csv")])),
            ),
        }
    };
    actions.push((data_name.to_string(), data_action));

    for i in 1..n_actions {
        let earlier: Vec<String> = actions.iter().map(|(k, _)| k.clone()).collect();
        let mut needs = vec![s(&unquoted_key(&earlier[0]))];
        if i > 1 && rng.chance(1, 2) {
            let other = &earlier[rng.range(1, earlier.len() - 1)];
            needs.push(s(&unquoted_key(other)));
        }
        let t = tag(rng, version);
        let (name, action) = match rng.below(6) {
            0 => (
                format!("analyse_{i}"),
                Node::map()
                    .with("run", s(&format!("python:{t} analysis/analyse_{i}.py")))
                    .with("needs", Node::Seq(needs))
                    .with(
                        "outputs",
                        outputs(
                            "moderately_sensitive",
                            &[
                                ("table", &format!("output/table_{i}.csv")),
                                ("figure", &format!("output/figures/plot_{i}_*.png")),
                            ],
                        ),
                    ),
            ),
            1 => (
                format!("model_{i}"),
                Node::map()
                    .with("run", s(&format!("r:{t} analysis/model_{i}.R")))
                    .with("needs", Node::Flow(Box::new(Node::Seq(needs)), rng.chance(1, 4)))
                    .with(
                        "outputs",
                        outputs("moderately_sensitive", &[("log", &format!("logs/model_{i}.log"))])
                            .with(
                                "highly_sensitive",
                                Node::map().with("rds", s(&format!("output/model_{i}.rds"))),
                            ),
                    ),
            ),
            2 => (
                format!("describe_{i}"),
                Node::map()
                    .with("run", s(&format!("stata-mp:{t} analysis/describe_{i}.do output/input.csv")))
                    .with("needs", Node::Seq(needs))
                    .with(
                        "outputs",
                        outputs("moderately_sensitive", &[("log", &format!("logs/describe_{i}.log"))]),
                    ),
            ),
            3 => {
                let run = if cohortextractor {
                    format!(
                        "cohortextractor:{} generate_measures --study-definition study_definition --output-dir=output/measures_{i}",
                        if version >= 4.0 { "v1" } else { "latest" }
                    )
                } else {
                    format!(
                        "ehrql:{t} generate-measures analysis/measures_{i}.py --output output/measures_{i}.csv"
                    )
                };
                (
                    format!("measures_{i}"),
                    Node::map().with("run", s(&run)).with("needs", Node::Seq(needs)).with(
                        "outputs",
                        outputs("moderately_sensitive", &[("measure", &format!("output/measures_{i}/measure_*.csv"))]),
                    ),
                )
            }
            4 => (
                format!("join_{i}"),
                Node::map()
                    .with(
                        "run",
                        s(&format!(
                            "cohort-joiner:v0.0.{i} --lhs output/input_*.csv --rhs output/extra.csv --output-dir output/joined_{i}"
                        )),
                    )
                    .with("needs", Node::Seq(needs))
                    .with(
                        "config",
                        Node::map().with("lhs", s("output/input_*.csv")).with(
                            "options",
                            Node::map().with("suffix", s(".backup")).with("n", Node::Raw(i.to_string())),
                        ),
                    )
                    .with(
                        "outputs",
                        outputs("highly_sensitive", &[("cohort", &format!("output/joined_{i}/input_*.csv"))]),
                    ),
            ),
            _ => (
                format!("report_{i}"),
                Node::map()
                    .with(
                        "run",
                        Node::Block(
                            ">".into(),
                            vec![format!("python:{t} analysis/report.py"), format!("--part {i}")],
                        ),
                    )
                    .with("needs", Node::Seq(needs))
                    .with(
                        "outputs",
                        outputs("minimally_sensitive", &[("text", &format!("output/report_{i}.md"))])
                            .with(
                                "moderately_sensitive",
                                Node::map().with("html", s(&format!("output/report_{i}.html"))),
                            ),
                    ),
            ),
        };
        actions.push((name, action));
    }

    let mut doc = Node::map()
        .with("version", Node::Raw(version_raw.into()))
        .with("actions", Node::Map(actions));
    if version == 3.0 || (version < 3.0 && rng.chance(1, 4)) {
        let size = *rng.pick(&["1000", "10000", "500"]);
        doc.set(
            "expectations",
            Node::map().with("population_size", Node::Raw(size.into())),
        );
    }
    if rng.chance(1, 6) {
        // Put `expectations` (when there) or `actions` first: key order is free.
        if let Some(m) = doc.map_mut() {
            m.rotate_left(1);
        }
    }
    (
        doc,
        version,
        format!("base(v={version_raw}, {n_actions} actions)"),
    )
}

fn unquoted_key(raw: &str) -> String {
    super::yaml::unquote(raw).unwrap_or_else(|| raw.to_string())
}

// ---------------------------------------------------------------------------------------
// Mutations

type Mutation = fn(&mut Ctx, &mut Rng) -> String;

const MUTATIONS: &[(&str, Mutation)] = &[
    ("remove_top_key", remove_top_key),
    ("unknown_top_key", unknown_top_key),
    ("version", set_version),
    ("version", set_version),
    ("version", set_version),
    ("remove_action_key", remove_action_key),
    ("unknown_action_key", unknown_action_key),
    ("outputs_odd", outputs_odd),
    ("output_value_type", output_value_type),
    ("break_glob", break_glob),
    ("break_glob", break_glob),
    ("break_glob", break_glob),
    ("moderately_extension", moderately_extension),
    ("other_level_extension", other_level_extension),
    ("run_tag", run_tag),
    ("run_tag", run_tag),
    ("run_odd", run_odd),
    ("run_type", run_type),
    ("needs_unknown", needs_unknown),
    ("needs_space", needs_space),
    ("needs_type", needs_type),
    ("needs_item_type", needs_item_type),
    ("integer_action_id", integer_action_id),
    ("needs_cycle", needs_cycle),
    ("needs_run_all", needs_run_all),
    ("duplicate_action_name", duplicate_action_name),
    ("duplicate_output", duplicate_output),
    ("duplicate_output", duplicate_output),
    ("duplicate_run", duplicate_run),
    ("run_all_action", run_all_action),
    ("latest_tag", latest_tag),
    ("cohortextractor", add_cohortextractor),
    ("cohortextractor", add_cohortextractor),
    ("generate_cohort_outputs", generate_cohort_outputs),
    ("generate_cohort_outputs", generate_cohort_outputs),
    ("ehrql_output", ehrql_output),
    ("ehrql_output", ehrql_output),
    ("ehrql_output", ehrql_output),
    ("expectations", expectations),
    ("expectations", expectations),
    ("action_value_type", action_value_type),
    ("actions_type", actions_type),
    ("config", config),
    ("dummy_data_file", dummy_data_file),
    ("action_name", action_name),
    ("whole_file", whole_file),
    ("text", text_op),
    ("text", text_op),
    ("anchors", anchors),
    ("flow_style", flow_style),
    ("reorder_actions", reorder_actions),
];

fn top(ctx: &mut Ctx) -> &mut Vec<(String, Node)> {
    if ctx.doc.map_mut().is_none() {
        ctx.doc = Node::map();
    }
    ctx.doc.map_mut().expect("a map")
}

fn actions(ctx: &mut Ctx) -> Option<&mut Vec<(String, Node)>> {
    ctx.doc
        .get_mut("actions")?
        .map_mut()
        .filter(|m| !m.is_empty())
}

fn action_names(ctx: &Ctx) -> Vec<String> {
    match ctx.doc.get("actions") {
        Some(Node::Map(m)) => m.iter().map(|(k, _)| k.clone()).collect(),
        _ => Vec::new(),
    }
}

/// A random action whose value is a mapping: (index, name).
fn pick_action(ctx: &mut Ctx, rng: &mut Rng) -> Option<(usize, String)> {
    let acts = actions(ctx)?;
    let candidates: Vec<usize> = (0..acts.len())
        .filter(|&i| matches!(acts[i].1, Node::Map(_)))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let i = *rng.pick(&candidates);
    Some((i, acts[i].0.clone()))
}

fn action_mut(ctx: &mut Ctx, i: usize) -> &mut Node {
    &mut actions(ctx).expect("actions")[i].1
}

/// A random output entry: (action index, level, entry key).
fn pick_output(ctx: &mut Ctx, rng: &mut Rng) -> Option<(usize, String, String)> {
    let acts = actions(ctx)?;
    let mut all = Vec::new();
    for (i, (_, a)) in acts.iter().enumerate() {
        if let Some(Node::Map(levels)) = a.get("outputs") {
            for (level, files) in levels {
                if let Node::Map(files) = files {
                    for (k, _) in files {
                        all.push((i, level.clone(), k.clone()));
                    }
                }
            }
        }
    }
    if all.is_empty() {
        return None;
    }
    Some(all.swap_remove(rng.below(all.len())))
}

fn run_of(ctx: &mut Ctx, i: usize) -> Option<String> {
    match action_mut(ctx, i).get("run")? {
        Node::Raw(r) => super::yaml::unquote(r),
        Node::Block(_, lines) => Some(lines.join(" ")),
        _ => None,
    }
}

fn remove_top_key(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let key = *rng.pick(&["version", "actions", "expectations"]);
    ctx.doc.remove(key);
    key.into()
}

fn unknown_top_key(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let key = *rng.pick(&[
        "describe",
        "extra",
        "Version",
        "action",
        "cls",
        "1",
        "null",
        "'actions '",
        "run_all",
        "x-common",
    ]);
    let value = rng.pick(&["1", "x", "{}", "[]", ""]).to_string();
    let m = top(ctx);
    let at = rng.below(m.len() + 1);
    m.insert(at, (key.into(), Node::Raw(value.clone())));
    if rng.chance(1, 4) {
        let at = rng.below(m.len() + 1);
        m.insert(at, ("another".into(), Node::Raw("2".into())));
    }
    format!("{key}: {value}")
}

const ODD_VERSIONS: &[&str] = &[
    "'3'",
    "3.5",
    "4",
    "5",
    "6",
    "0x5",
    "yes",
    ".inf",
    "-.inf",
    ".nan",
    "'abc'",
    "1",
    "2",
    "\"4.0\"",
    "' 5 '",
    "'4_0'",
    "1e-05",
    "0",
    "-1",
    "true",
    "false",
    "null",
    "~",
    "",
    "[]",
    "{}",
    "[5]",
    "2020-01-01",
    "5.0",
    "'٥'",
    "1e20",
    "'+4.'",
    "4e0",
    "'inf'",
    "'nan'",
    "!!binary aGVsbG8=",
    "!foo 4",
    "0o5",
    "017",
    "1_000",
    "4.9999",
    "5.0000001",
    "'5.0'",
    "'v5'",
    "3.0",
    "3.00001",
    "2.9",
    "'4 '",
    "0x10",
    "1e400",
    "-0.0",
    "100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];

fn set_version(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let v = *rng.pick(ODD_VERSIONS);
    ctx.doc.set("version", Node::Raw(v.into()));
    let shown: String = v.chars().take(12).collect();
    shown
}

fn remove_action_key(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let key = *rng.pick(&["run", "outputs", "needs", "run", "outputs"]);
    action_mut(ctx, i).remove(key);
    format!("{name}.{key}")
}

fn unknown_action_key(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let key = *rng.pick(&[
        "extra",
        "description",
        "action_id",
        "cls",
        "output",
        "Run",
        "1",
        "need",
        "image",
        "env",
    ]);
    let m = action_mut(ctx, i).map_mut().expect("map");
    let at = rng.below(m.len() + 1);
    m.insert(at, (key.into(), Node::Raw("x".into())));
    if rng.chance(1, 3) {
        m.push(("comment".into(), Node::Raw("y".into())));
    }
    format!("{name}.{key}")
}

fn outputs_odd(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let options: &[&str] = &[
        "{}",
        "null",
        "[]",
        "output/x.csv",
        "{foo: {x: a.csv}}",
        "{highly_sensitive: null}",
        "{highly_sensitive: {}}",
        "{highly_sensitive: {a: b.csv}, extra: 1}",
        "{highly_sensitive: {a: b.csv}, action_id: 1}",
        "{highly_sensitive: {a: b.csv}, 1: {c: d.csv}}",
        "{highly_sensitive: [a.csv]}",
        "{highly_sensitive: a.csv}",
        "{moderately_sensitive: {a: b.csv}, minimally_sensitive: null}",
        "{minimally_sensitive: {}, highly_sensitive: null}",
        "{Highly_sensitive: {a: b.csv}}",
        "{highly_sensitive: {a: out/b.csv}, foo: {x: a.csv}, bar: 2}",
    ];
    let v = *rng.pick(options);
    action_mut(ctx, i).set("outputs", Node::Raw(v.into()));
    format!("{name}.outputs = {v}")
}

fn output_value_type(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, level, key)) = pick_output(ctx, rng) else {
        return "no output".into();
    };
    let v = *rng.pick(&["{}", "[]", "1", "null", "true", "[a.csv]", "", "2020-01-01"]);
    set_output(ctx, i, &level, &key, Node::Raw(v.into()));
    format!("{level}.{key} = {v}")
}

fn set_output(ctx: &mut Ctx, i: usize, level: &str, key: &str, value: Node) {
    if let Some(files) = action_mut(ctx, i)
        .get_mut("outputs")
        .and_then(|o| o.get_mut(level))
    {
        files.set(key, value);
    }
}

const BROKEN_GLOBS: &[&str] = &[
    "output/**/x.csv",
    "output/**.csv",
    "output/x?.csv",
    "output/[ab].csv",
    "/[square]brackets.txt",
    "output\\x.csv",
    "output\\ftest.txt",
    "/abs/path.csv",
    "c:/windows/absolute.txt",
    "C:\\x.csv",
    "//server/share/x.csv",
    "///abs.txt",
    "output/../x.csv",
    "../x.csv",
    "../../x.csv",
    "./x.csv",
    "output/./x.csv",
    "output//x.csv",
    "output/x.csv/",
    "output/foo",
    "output/*",
    "output/foo.*",
    "output/foo.",
    ".csv",
    "output/.csv",
    "metadata/x.csv",
    "metadata",
    "metadata/",
    "metadata2/x.txt",
    "x/metadata/y.txt",
    "metadata.csv",
    "out/*/x.csv",
    "out*/x.csv",
    "output/{a,b}.csv",
    "output/]x.csv",
    "~/x.csv",
    "$HOME/x.csv",
    " x.csv",
    "x.csv ",
    "c:w.txt",
    "ünï/x.csv",
    "output/foo.c*v",
    "output/dir.d/foo",
    "*",
    ".",
    "..",
    "",
    "output/x y.csv",
    "output/x\ty.csv",
    "output/table.CSV",
    "output/a.csv.gz",
    "*.csv",
    "output/*.*",
    "output/*_*.*",
    "a:b/d.csv",
];

fn break_glob(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, level, key)) = pick_output(ctx, rng) else {
        return "no output".into();
    };
    let g = *rng.pick(BROKEN_GLOBS);
    set_output(ctx, i, &level, &key, s(g));
    format!("{level}.{key} = {g:?}")
}

const EXTENSIONS: &[&str] = &[
    ".pdf", ".rds", ".tsv", ".CSV", ".csv.gz", ".htm", ".gph", ".xlsx", ".ipynb", ".feather",
    ".svgz", ".md", ".json", ".log", ".html", ".jpeg", ".txt", ".jpg", ".png", ".svg", ".csv",
    ".dta", ".RData", ".arrow", ".out", ".xml", ".pickle", ".Csv", ".txt.csv", ".csv ",
];

fn moderately_extension(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let ext = *rng.pick(EXTENSIONS);
    let path = format!(
        "output/{}_result{ext}",
        unquoted_key(&name).replace(' ', "_")
    );
    let action = action_mut(ctx, i);
    match action.get_mut("outputs") {
        Some(o @ Node::Map(_)) => match o.get_mut("moderately_sensitive") {
            Some(m @ Node::Map(_)) => m.set("extra_file", s(&path)),
            _ => o.set(
                "moderately_sensitive",
                Node::map().with("extra_file", s(&path)),
            ),
        },
        _ => action.set(
            "outputs",
            outputs("moderately_sensitive", &[("extra_file", &path)]),
        ),
    }
    format!("{name} moderately {path:?}")
}

fn other_level_extension(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, level, key)) = pick_output(ctx, rng) else {
        return "no output".into();
    };
    let ext = *rng.pick(EXTENSIONS);
    let path = format!("output/other_{i}{ext}");
    set_output(ctx, i, &level, &key, s(&path));
    format!("{level}.{key} = {path:?}")
}

const TAGS: &[&str] = &[
    "v2",
    "",
    ":",
    ":v",
    ":other",
    ":V1",
    ":v1x1",
    ":v1.2-pre",
    ":dev",
    ":latest",
    ":v1:v2",
    ":v.",
    ":v1..2",
    ":v١",
    ":pre",
    ":vnotdigits",
    ":v1-pre",
    ":v1-PRE",
    ":latest-pre",
    ":dev2",
    ":v 1",
    ":v1.2.3",
    ":v0",
];

fn run_tag(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let run = run_of(ctx, i).unwrap_or_else(|| "python:v2 analysis/x.py".into());
    let (first, rest) = run.split_once(' ').unwrap_or((run.as_str(), ""));
    let image = first.split(':').next().unwrap_or("");
    let image = match rng.below(8) {
        0 => "",
        1 => "ghcr.io/opensafely-core/python",
        2 => "my-action",
        _ => image,
    };
    let t = *rng.pick(TAGS);
    let t = if t == "v2" { ":v2" } else { t };
    let new_run = if rest.is_empty() {
        format!("{image}{t}")
    } else {
        format!("{image}{t} {rest}")
    };
    action_mut(ctx, i).set("run", s(&new_run));
    format!("{name}.run = {new_run:?}")
}

fn run_odd(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let run = run_of(ctx, i).unwrap_or_else(|| "python:v2 analysis/x.py".into());
    let new_run = match rng.below(14) {
        0 => String::new(),
        1 => "   ".into(),
        2 => format!("{run} 'unbalanced"),
        3 => format!("{run} \"unbalanced"),
        4 => format!(" {run}"),
        5 => run.replacen(' ', "  ", 1),
        6 => format!("{run} \"quoted arg\" 'single'"),
        7 => format!("{run} # not a comment"),
        8 => format!("{run} back\\ slash"),
        9 => format!("{run}\n"),
        10 => format!("\t{run}"),
        11 => format!("'{run}'"),
        12 => "\\".into(),
        _ => format!("{run} trailing\\"),
    };
    action_mut(ctx, i).set("run", s(&new_run));
    format!("{name}.run = {new_run:?}")
}

fn run_type(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let v = *rng.pick(&[
        "[python:v2, x.py]",
        "1",
        "null",
        "{a: b}",
        "true",
        "",
        "!!binary aGVsbG8=",
    ]);
    action_mut(ctx, i).set("run", Node::Raw(v.into()));
    format!("{name}.run = {v}")
}

fn needs_items_mut(action: &mut Node) -> Option<&mut Vec<Node>> {
    match action.get_mut("needs")? {
        Node::Seq(items) => Some(items),
        Node::Flow(inner, _) => match inner.as_mut() {
            Node::Seq(items) => Some(items),
            _ => None,
        },
        _ => None,
    }
}

fn push_need(ctx: &mut Ctx, i: usize, need: Node) {
    let action = action_mut(ctx, i);
    match action.get_mut("needs") {
        Some(Node::Seq(items)) => items.push(need),
        Some(Node::Flow(inner, _)) => {
            if let Node::Seq(items) = inner.as_mut() {
                items.push(need);
            }
        }
        _ => action.set("needs", Node::Seq(vec![need])),
    }
}

fn needs_unknown(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let need = *rng.pick(&[
        "missing_action",
        "Generate_dataset",
        "generate_dataset ",
        "a,b",
        "generate_dataset,analyse_1",
        "",
        "run_all",
    ]);
    push_need(ctx, i, s(need));
    format!("{name} needs {need:?}")
}

fn needs_space(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let names = action_names(ctx);
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let a = unquoted_key(&names[rng.below(names.len())]);
    let b = unquoted_key(&names[rng.below(names.len())]);
    let need = match rng.below(4) {
        0 => format!("{a} {b}"),
        1 => format!("{a}, {b}"),
        2 => format!("{a}\t{b}"),
        _ => format!(" {a}"),
    };
    push_need(ctx, i, s(&need));
    format!("{name} needs {need:?}")
}

fn needs_type(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let names = action_names(ctx);
    let first = names.first().cloned().unwrap_or_default();
    let v = match rng.below(7) {
        0 => first.clone(),
        1 => format!("{{{first}: 1}}"),
        2 => "1".into(),
        3 => "null".into(),
        4 => "[]".into(),
        5 => String::new(),
        _ => format!("'{}, {}'", unquoted_key(&first), unquoted_key(&first)),
    };
    action_mut(ctx, i).set("needs", Node::Raw(v.clone()));
    format!("{name}.needs = {v}")
}

fn needs_item_type(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let v = *rng.pick(&["2019", "1.5", "null", "[a]", "{a: b}", "true", "~", "0x10"]);
    push_need(ctx, i, Node::Raw(v.into()));
    format!("{name} needs item {v}")
}

/// Rename an action to an integer id, and refer to it with an integer (or string) need:
/// the reference crashes on integer needs items, warden accepts them (deliberately).
fn integer_action_id(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let names = action_names(ctx);
    if names.is_empty() {
        return "no action".into();
    }
    let target = rng.below(names.len());
    let old = unquoted_key(&names[target]);
    let id = *rng.pick(&["2019", "1", "0", "42"]);
    let quoted_need = rng.chance(1, 4);
    let need_raw = if quoted_need {
        format!("'{id}'")
    } else {
        id.to_string()
    };
    let acts = actions(ctx).expect("actions");
    acts[target].0 = id.to_string();
    // Re-point existing needs at the renamed action.
    for (_, a) in acts.iter_mut() {
        if let Some(items) = needs_items_mut(a) {
            for item in items.iter_mut() {
                if item.as_str().as_deref() == Some(old.as_str()) {
                    *item = Node::Raw(need_raw.clone());
                }
            }
        }
    }
    let others: Vec<usize> = (0..acts.len()).filter(|&j| j != target).collect();
    if !others.is_empty() && rng.chance(2, 3) {
        let j = *rng.pick(&others);
        if matches!(acts[j].1, Node::Map(_)) {
            push_need(ctx, j, Node::Raw(need_raw.clone()));
        }
    }
    format!("{old} renamed {id}, needed as {need_raw}")
}

fn needs_cycle(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let names = action_names(ctx);
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    if rng.chance(1, 2) || names.len() < 2 {
        push_need(ctx, i, s(&unquoted_key(&name)));
        return format!("{name} needs itself");
    }
    // Make the first action need a later one: closes a loop with the chain to it.
    let later = unquoted_key(&names[rng.range(1, names.len() - 1)]);
    if matches!(actions(ctx).expect("actions")[0].1, Node::Map(_)) {
        push_need(ctx, 0, s(&later));
    }
    format!("first action needs {later}")
}

fn needs_run_all(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    push_need(ctx, i, s("run_all"));
    if rng.chance(1, 2) {
        run_all_action(ctx, rng);
        return format!("{name} needs run_all (defined)");
    }
    format!("{name} needs run_all")
}

fn duplicate_action_name(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no action".into();
    };
    let i = rng.below(acts.len());
    let copy = acts[i].clone();
    let at = rng.below(acts.len() + 1);
    let name = copy.0.clone();
    let mut copy = copy;
    if rng.chance(1, 2) {
        copy.1 = Node::map().with("run", s("python:v2 other.py")).with(
            "outputs",
            outputs("moderately_sensitive", &[("o", "output/other.csv")]),
        );
    }
    acts.insert(at, copy);
    format!("{name} twice")
}

fn duplicate_output(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, level, key)) = pick_output(ctx, rng) else {
        return "no output".into();
    };
    let pattern = action_mut(ctx, i)
        .get("outputs")
        .and_then(|o| o.get(&level))
        .and_then(|f| f.get(&key))
        .cloned()
        .expect("output");
    let Some((j, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let target_level = *rng.pick(&[level.as_str(), "highly_sensitive", "minimally_sensitive"]);
    let target_level = target_level.to_string();
    let action = action_mut(ctx, j);
    match action.get_mut("outputs") {
        Some(o @ Node::Map(_)) => match o.get_mut(&target_level) {
            Some(m @ Node::Map(_)) => m.set("dup", pattern.clone()),
            _ => o.set(&target_level, Node::map().with("dup", pattern.clone())),
        },
        _ => action.set(
            "outputs",
            Node::map().with(&target_level, Node::map().with("dup", pattern.clone())),
        ),
    }
    format!("{name}.{target_level}.dup = {pattern:?}")
}

fn duplicate_run(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, from)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let Some((j, to)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let Some(run) = action_mut(ctx, i).get("run").cloned() else {
        return "no run".into();
    };
    let run = match (rng.below(3), run.as_str()) {
        (0, Some(r)) => s(&format!("{r} ")),
        _ => run,
    };
    action_mut(ctx, j).set("run", run.clone());
    format!("{to}.run = {from}.run ({run:?})")
}

fn run_all_action(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    if rng.chance(1, 2) {
        let i = rng.below(acts.len());
        let old = acts[i].0.clone();
        acts[i].0 = "run_all".into();
        return format!("{old} renamed run_all");
    }
    let at = rng.below(acts.len() + 1);
    let body = match rng.below(3) {
        0 => Node::Raw("{outputs: {}, run: 'test:v1'}".into()),
        1 => Node::Raw("null".into()),
        _ => Node::map()
            .with("run", s("python:v2 analysis/all.py"))
            .with(
                "outputs",
                outputs("moderately_sensitive", &[("all", "output/all.csv")]),
            ),
    };
    acts.insert(at, ("run_all".into(), body));
    "new run_all action".into()
}

fn latest_tag(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let run = run_of(ctx, i).unwrap_or_else(|| "python:v2 x.py".into());
    let (first, rest) = run.split_once(' ').unwrap_or((run.as_str(), ""));
    let image = first.split(':').next().unwrap_or("");
    let new_run = match rng.below(4) {
        0 => format!(" {image}:latest {rest}"),
        1 => format!("{image}:latest  {rest}"),
        2 => format!("\"{image}:latest\" {rest}"),
        _ => format!("{image}:latest {rest}"),
    };
    action_mut(ctx, i).set("run", s(new_run.trim_end()));
    format!("{name}.run = {new_run:?}")
}

fn add_cohortextractor(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    let image = *rng.pick(&[
        "cohortextractor",
        "cohortextractor",
        "cohortextractor-v2",
        "cohortextractorX",
    ]);
    let t = *rng.pick(&["latest", "v1.2", "v2"]);
    let command = *rng.pick(&[
        "generate_cohort --study-definition study_definition_x",
        "generate_measures --study-definition study_definition_x",
        "generate_codelist_report",
        "generate_cohort",
    ]);
    let action = Node::map()
        .with("run", s(&format!("{image}:{t} {command}")))
        .with(
            "outputs",
            outputs(
                "highly_sensitive",
                &[("cohort", "output/cohort_x/input_x.csv")],
            ),
        );
    let at = rng.below(acts.len() + 1);
    acts.insert(at, ("generate_x".into(), action));
    format!("{image}:{t} {command}")
}

fn generate_cohort_outputs(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    let flags = *rng.pick(&[
        "",
        "",
        " --output-dir=output",
        " --output-dir",
        " --output-dir=",
        " --output-dir output",
        " --output-directory=x",
    ]);
    let spacing = *rng.pick(&[" ", " ", " ", "  "]);
    let command = *rng.pick(&[
        "generate_cohort",
        "generate_cohort",
        "generate_cohorts",
        "generate_measures",
    ]);
    let t = *rng.pick(&["latest", "v1.2"]);
    let run = format!("cohortextractor:{t}{spacing}{command} --study-definition sd{flags}");
    let outs = *rng.pick(&[
        "{highly_sensitive: {a: output/a.csv, b: other/b.csv}}",
        "{highly_sensitive: {a: output/a.csv, b: output/b.csv}}",
        "{highly_sensitive: {a: a.csv, b: output/b.csv}}",
        "{highly_sensitive: {a: a.csv}}",
        "{highly_sensitive: {a: one/a.csv, b: two/b.csv, c: three/c.csv}}",
        "{highly_sensitive: {}}",
        "{highly_sensitive: {a: output/a.csv}, moderately_sensitive: {b: output/b.csv}}",
        "{highly_sensitive: {a: output/a.csv}, minimally_sensitive: {}}",
        "{moderately_sensitive: {a: output/a.csv, b: out2/b.csv}}",
        "{highly_sensitive: {a: output/a.csv, b: output/sub/b.csv}}",
        "{highly_sensitive: {a: output/*/a.csv, b: output/x/b.csv}}",
    ]);
    let action = Node::map()
        .with("run", s(&run))
        .with("outputs", Node::Raw(outs.into()));
    let name = "generate_cohort_x".to_string();
    if rng.chance(1, 2) && !acts.is_empty() {
        let i = rng.below(acts.len());
        acts[i].1 = action;
        let old = acts[i].0.clone();
        format!("{old}: {run:?} {outs}")
    } else {
        let at = rng.below(acts.len() + 1);
        acts.insert(at, (name.clone(), action));
        format!("{name}: {run:?} {outs}")
    }
}

fn ehrql_output(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    let image = *rng.pick(&[
        "ehrql:v1",
        "ehrql:v1",
        "databuilder:v0.36",
        "ehrql:latest",
        "ehrql:dev",
        "ehrql:v1.2-pre",
    ]);
    let command = *rng.pick(&[
        "generate-dataset",
        "generate-dataset",
        "generate_dataset",
        "generate-datasetx",
        "generate-measures",
        "assure",
    ]);
    let prefix = *rng.pick(&["", "", "", "", " ", "'", "\""]);
    let spacing = *rng.pick(&[" ", " ", " ", "  "]);
    let (args, outs): (&str, &str) = *rng.pick(&[
        ("analysis/dd.py", "{highly_sensitive: {d: output/d.csv}}"),
        (
            "analysis/dd.py --output",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output=",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output=output/d.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output='output/d.csv'",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "--output output/d.csv analysis/dd.py",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output output/d1.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output output//d.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output ./output/d.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {d: output/d.csv, e: output/e.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {d: output/e.csv, e: output/f.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {d: output/d.csv}, moderately_sensitive: {}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {d: output/d.csv}, moderately_sensitive: {m: output/m.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{minimally_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {}}",
        ),
        (
            "analysis/dd.py --output output/d.csv --output output/e.csv",
            "{highly_sensitive: {e: output/e.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv --output output/e.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py -o output/d.csv",
            "{highly_sensitive: {d: output/d.csv}}",
        ),
        (
            "analysis/dd.py --output outputs:arrow",
            "{highly_sensitive: {d: outputs/*.arrow}}",
        ),
        (
            "analysis/dd.py --output outputs:arrow",
            "{highly_sensitive: {d: outputs.arrow}}",
        ),
        (
            "analysis/dd.py --output outputs/:csv",
            "{highly_sensitive: {d: outputs/*.csv}}",
        ),
        (
            "analysis/dd.py --output output/:csv",
            "{highly_sensitive: {}}",
        ),
        (
            "analysis/dd.py --output foo/bar:csv",
            "{highly_sensitive: {a: foo/bar/dataset.csv, b: foo/bar/events.csv}}",
        ),
        (
            "analysis/dd.py --output foo/bar:csv",
            "{highly_sensitive: {a: foo/bar/*.csv, b: foo/baz/*.csv}}",
        ),
        (
            "analysis/dd.py --output foo/bar:csv",
            "{highly_sensitive: {a: foo/bar/*}}",
        ),
        (
            "analysis/dd.py --output foo/bar:arrow",
            "{highly_sensitive: {a: foo/bar/*.csv}}",
        ),
        (
            "analysis/dd.py --output ./output:csv",
            "{highly_sensitive: {a: output/x/*.txt}}",
        ),
        (
            "analysis/dd.py --output :csv",
            "{highly_sensitive: {a: x.csv}}",
        ),
        (
            "analysis/dd.py --output :csv",
            "{highly_sensitive: {a: x.txt}}",
        ),
        (
            "analysis/dd.py --output out:",
            "{highly_sensitive: {a: out/x.csv}}",
        ),
        (
            "analysis/dd.py --output a:b/d.csv",
            "{highly_sensitive: {a: a:b/d.csv}}",
        ),
        (
            "analysis/dd.py --output output/sub:csv",
            "{highly_sensitive: {a: output/sub/deep/d.csv}}",
        ),
        (
            "analysis/dd.py --output output/d.csv",
            "{highly_sensitive: {a: output/d.csv, b: output/e.csv, c: output/f.csv}}",
        ),
    ]);
    let close = match prefix {
        "'" => "'",
        "\"" => "\"",
        _ => "",
    };
    let (img, rest) = (image, format!("{spacing}{command} {args}"));
    let run = format!("{prefix}{img}{close}{rest}");
    let action = Node::map()
        .with("run", s(&run))
        .with("outputs", Node::Raw(outs.into()));
    let name = *rng.pick(&["generate_dataset_x", "generate-dataset", "extract x"]);
    if rng.chance(1, 2) && !acts.is_empty() {
        let i = rng.below(acts.len());
        acts[i].1 = action;
        let old = acts[i].0.clone();
        format!("{old}: {run:?} {outs}")
    } else {
        let at = rng.below(acts.len() + 1);
        acts.insert(at, (quote(name), action));
        format!("{name}: {run:?} {outs}")
    }
}

fn expectations(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let v = *rng.pick(&[
        "REMOVE",
        "null",
        "",
        "{}",
        "[]",
        "x",
        "{population_size: 1000}",
        "{population_size: '12'}",
        "{population_size: ' 7 '}",
        "{population_size: 10.7}",
        "{population_size: .inf}",
        "{population_size: .nan}",
        "{population_size: '1e3'}",
        "{population_size: '10.0'}",
        "{population_size: x}",
        "{population_size: 10, extra: 1}",
        "{extra: 1}",
        "{population_size: true}",
        "{population_size: 0x10}",
        "{population_size: '0x10'}",
        "{population_size: -5}",
        "{population_size: null}",
        "{population_size: '1_0'}",
        "{population_size: [1]}",
        "{population_size: 1000, 1: 2}",
        "{population_size: '+5'}",
    ]);
    if v == "REMOVE" {
        ctx.doc.remove("expectations");
    } else {
        ctx.doc.set("expectations", Node::Raw(v.into()));
    }
    format!("{v} (v={})", ctx.version)
}

fn action_value_type(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    let i = rng.below(acts.len());
    let v = *rng.pick(&[
        "null",
        "",
        "[]",
        "[run, outputs]",
        "x",
        "1",
        "{}",
        "{run: 'python:v2 x.py'}",
    ]);
    acts[i].1 = Node::Raw(v.into());
    format!("{} = {v}", acts[i].0)
}

fn actions_type(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let v = *rng.pick(&["null", "", "[]", "[a, b]", "x", "1", "{}", "true"]);
    ctx.doc.set("actions", Node::Raw(v.into()));
    v.into()
}

fn config(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let v = *rng.pick(&[
        "{a: 1}",
        "null",
        "[]",
        "x",
        "1",
        "{files: [a, b], nested: {deep: [1, {x: y}]}}",
        "{}",
        "{1: 2, null: 3}",
    ]);
    action_mut(ctx, i).set("config", Node::Raw(v.into()));
    format!("{name}.config = {v}")
}

fn dummy_data_file(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let v = *rng.pick(&[
        "analysis/dummy.csv",
        "null",
        "[]",
        "1",
        "{}",
        "''",
        "/abs/x.csv",
        "true",
    ]);
    action_mut(ctx, i).set("dummy_data_file", Node::Raw(v.into()));
    format!("{name}.dummy_data_file = {v}")
}

fn action_name(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    let i = rng.below(acts.len());
    let new = *rng.pick(&[
        "'a b/c!'",
        "''",
        "~",
        "null",
        "generate-dataset",
        "ünïcode",
        "'x:y'",
        "'#hash'",
        "'  padded '",
        "true",
        "1.5",
        "Run_All",
        "'run_all '",
        "[a]",
    ]);
    let old = acts[i].0.clone();
    acts[i].0 = new.into();
    format!("{old} renamed {new}")
}

fn whole_file(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let v = *rng.pick(&[
        "",
        "   \n",
        "\n\n",
        "# just a comment\n",
        "null\n",
        "~",
        "[]\n",
        "- a\n- b\n",
        "hello\n",
        "42\n",
        "{}\n",
        "version: 5\n",
        "actions: {}\n",
        "version: 5\nactions: {}\n",
        "version: '3.0'\nactions: {}\n",
        "version: '3.0'\nexpectations:\n  population_size: 10\nactions: {}\n",
        "version: 5\nactions:\n",
        "\t",
        "version: '5\n",
        "version: 5\nactions: [\n",
        "version: 5\nactions:\n  a:\n    run: python:v2 a.py\n   outputs: {}\n",
        "version: 5\n---\nactions: {}\n",
        "---\nversion: 5\nactions: {}\n...\n",
        "version: 5\nactions: {}\nversion: 4\n",
        "version: 5\nactions:\n  a: {run: 'python:v2 a.py', outputs: {moderately_sensitive: {o: o.csv}}}\n  b: {run: 'python:v2 b.py', needs: [a], outputs: {moderately_sensitive: {o: p.csv}}}\n",
        "version: 5\nactions:\n  a: &a {run: 'python:v2 a.py', outputs: {moderately_sensitive: {o: o.csv}}}\n  b: *a\n",
        "%YAML 1.2\n---\nversion: 5\nactions: {}\n",
        "version: 5\nactions: !!map {}\n",
        "version: !!str 5\nactions: {}\n",
        "version: 5 # comment\nactions: {} # comment\n",
        "version: 5\nactions: {}\n\u{0}",
        "? version\n: 5\nactions: {}\n",
        "version: 5\nactions: {? [a, b] : x}\n",
        "[version, 5]: x\n",
        "version: 5\nactions:\n  a:\n    run: python:v2 a.py\n    outputs:\n      moderately_sensitive:\n        o: o.csv\n  a:\n    run: python:v2 b.py\n    outputs:\n      moderately_sensitive:\n        o: p.csv\n",
        "version: 5\nactions:\n  a:\n    run: python:v2 a.py\n    outputs:\n      moderately_sensitive:\n        o: o.csv\n        o: p.csv\n",
        "version: 4\nactions:\n  a:\n    run: python:v2 a.py\n    needs: [a]\n    outputs:\n      moderately_sensitive:\n        o: o.csv\n",
    ]);
    ctx.whole = Some(v.into());
    format!("{v:?}")
}

fn text_op(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let op = match rng.below(13) {
        0 => TextOp::Crlf,
        1 => TextOp::Bom,
        2 => TextOp::NoFinalNewline,
        3 => TextOp::Append("---\nversion: 5\n".into()),
        4 => TextOp::Prepend("---\n".into()),
        5 => TextOp::Append("...\n".into()),
        6 => TextOp::TabLine(rng.below(40)),
        7 => TextOp::DeleteLine(rng.below(40)),
        8 => TextOp::DuplicateLine(rng.below(40)),
        9 => TextOp::Truncate(rng.below(1000)),
        10 => TextOp::Insert(
            rng.below(1000),
            *rng.pick(&[
                '\'', '"', ':', '[', '{', '-', '#', '\t', '&', '*', '!', '%', '|',
            ]),
        ),
        11 => TextOp::Append("\n# trailing comment\n\n".into()),
        _ => TextOp::Prepend("# leading comment\n\n".into()),
    };
    let desc = match &op {
        TextOp::Crlf => "crlf".to_string(),
        TextOp::Bom => "bom".into(),
        TextOp::NoFinalNewline => "no final newline".into(),
        TextOp::Append(t) => format!("append {t:?}"),
        TextOp::Prepend(t) => format!("prepend {t:?}"),
        TextOp::TabLine(n) => format!("tab on line {n}"),
        TextOp::DeleteLine(n) => format!("delete line {n}"),
        TextOp::DuplicateLine(n) => format!("duplicate line {n}"),
        TextOp::Truncate(pm) => format!("truncate at {pm}‰"),
        TextOp::Insert(pm, c) => format!("insert {c:?} at {pm}‰"),
    };
    ctx.text_ops.push(op);
    desc
}

fn anchors(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    if acts.len() < 2 || !matches!(acts[0].1, Node::Map(_)) || !matches!(acts[1].1, Node::Map(_)) {
        return "too few actions".into();
    }
    match rng.below(3) {
        0 => {
            // Shared outputs: a duplicate pattern from v2 on.
            let Some(out) = acts[0].1.get("outputs").cloned() else {
                return "no outputs".into();
            };
            acts[0]
                .1
                .set("outputs", Node::Anchor("out".into(), Box::new(out)));
            acts[1].1.set("outputs", Node::Raw("*out".into()));
            "second action's outputs alias the first's".into()
        }
        1 => {
            // Merge key: own keys win.
            let body = acts[0].1.clone();
            acts[0].1 = Node::Anchor("base".into(), Box::new(body));
            let m = acts[1].1.map_mut().expect("map");
            m.retain(|(k, _)| k != "outputs");
            m.insert(0, ("<<".into(), Node::Raw("*base".into())));
            "second action merges the first (<<: *base), keeping its run".into()
        }
        _ => {
            let Some(run) = acts[0].1.get("run").cloned() else {
                return "no run".into();
            };
            acts[0]
                .1
                .set("run", Node::Anchor("cmd".into(), Box::new(run)));
            acts[1].1.set("run", Node::Raw("*cmd".into()));
            "second action's run aliases the first's".into()
        }
    }
}

fn flow_style(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let trailing = rng.chance(1, 3);
    if rng.chance(1, 3) {
        if let Some(acts) = ctx.doc.get_mut("actions") {
            let inner = std::mem::replace(acts, Node::Raw(String::new()));
            *acts = Node::Flow(Box::new(inner), trailing);
        }
        return format!("actions in flow style (trailing comma {trailing})");
    }
    let Some((i, name)) = pick_action(ctx, rng) else {
        return "no action".into();
    };
    let a = action_mut(ctx, i);
    let inner = std::mem::replace(a, Node::Raw(String::new()));
    *a = Node::Flow(Box::new(inner), trailing);
    format!("{name} in flow style (trailing comma {trailing})")
}

fn reorder_actions(ctx: &mut Ctx, rng: &mut Rng) -> String {
    let Some(acts) = actions(ctx) else {
        return "no actions".into();
    };
    let n = acts.len();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        acts.swap(i, j);
    }
    // And the action keys.
    for (_, a) in acts.iter_mut() {
        if let Some(m) = a.map_mut() {
            let n = m.len();
            if n > 1 {
                m.rotate_left(rng.below(n));
            }
        }
    }
    "shuffled actions and keys".into()
}
