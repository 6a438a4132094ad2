//! Validation: the rules of the reference `pipeline` library, in its check order,
//! with its exact messages — but every error is collected, not only the first.
//!
//! The order of `Report::errors` follows the reference's check order (see
//! `reference/pipeline-spec.md` §6), so `errors[0]` is the error the reference
//! reports. After the reference's checks come warden's own (cycles in `needs`).

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use indexmap::IndexMap;

use crate::diagnostic::{Diagnostic, DiagnosticKind, Report, Span};
use crate::model::{
    Action, Command, Expectations, Outputs, Pipeline, PrivacyLevel, RUN_ALL_COMMAND,
};
use crate::python::{self, ShlexError};
use crate::yaml::{self, Node, Value};

/// The file types a `moderately_sensitive` output may have (case-sensitive, last suffix).
pub const LEVEL4_FILE_TYPES: [&str; 11] = [
    ".csv", ".jpg", ".jpeg", ".png", ".svg", ".svgz", ".html", ".txt", ".log", ".json", ".md",
];

/// The newest `project.yaml` format version.
pub const LATEST_VERSION: f64 = 5.0;

/// What a version turns on (reference `features.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Output patterns must be unique across the project (v ≥ 2).
    pub unique_output_path: bool,
    /// `expectations` is required and validated (v == 3).
    pub expectations_population: bool,
    /// cohortextractor and `expectations` are refused (v ≥ 4).
    pub no_cohortextractor: bool,
    /// An action named `run_all` is an error, not a warning (v ≥ 5).
    pub no_run_all_action: bool,
    /// The `:latest` tag is an error (v ≥ 5).
    pub no_latest_tag: bool,
}

impl Features {
    /// The flags for a version (which must not be above 5).
    pub fn for_version(v: f64) -> Features {
        Features {
            unique_output_path: v >= 2.0,
            expectations_population: (3.0..=3.0).contains(&v),
            no_cohortextractor: v >= 4.0,
            no_run_all_action: v >= 5.0,
            no_latest_tag: v >= 5.0,
        }
    }
}

struct Checker {
    errors: Vec<Diagnostic>,
    warnings: Vec<String>,
}

impl Checker {
    fn error(&mut self, message: impl Into<String>, span: Span) {
        self.errors
            .push(Diagnostic::new(DiagnosticKind::Validation, message, span));
    }

    fn crash(&mut self, message: impl Into<String>, span: Span) {
        self.errors.push(Diagnostic::new(
            DiagnosticKind::ReferenceCrash,
            message,
            span,
        ));
    }

    fn extra(&mut self, message: impl Into<String>, span: Span) {
        self.errors
            .push(Diagnostic::new(DiagnosticKind::Extra, message, span));
    }
}

/// Parses and validates `project.yaml` text, collecting every error.
pub fn check(source: &str) -> Report {
    check_keeping_tree(source).0
}

/// [`check`], also handing back the YAML tree it read (when the text parsed), so
/// that a process about to exit can skip freeing it one node at a time.
pub fn check_keeping_tree(source: &str) -> (Report, Option<Node>) {
    let mut c = Checker {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            c.crash(
                "project.yaml is empty: it must be a mapping with `version` and `actions`",
                Span::default(),
            );
            return (finish(c, None), None);
        }
        Err(errors) => {
            for e in errors {
                c.errors
                    .push(Diagnostic::new(DiagnosticKind::Yaml, e.message, e.span));
            }
            return (finish(c, None), None);
        }
    };
    let pipeline = check_root(&mut c, &root);
    (finish(c, pipeline), Some(root))
}

fn finish(c: Checker, pipeline: Option<Pipeline>) -> Report {
    let pipeline = if c.errors.is_empty() { pipeline } else { None };
    Report {
        pipeline,
        errors: c.errors,
        warnings: c.warnings,
    }
}

/// Python `str()` of a key, or `None` for a collection used as a key.
fn key_name(node: &Node) -> Option<String> {
    node.value.python_str()
}

/// Checks that a mapping's keys are all strings, as Python's `**kwargs` needs.
/// Returns false (after reporting) when one is not.
fn string_keys(c: &mut Checker, map: &[(Node, Node)], what: &str) -> bool {
    for (k, _) in map {
        if k.value.as_str().is_none() {
            let type_name = k.value.type_name();
            let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            c.crash(
                format!(
                    "{what} keys must be text, but `{}` is {article} {type_name}",
                    k.value.python_str().unwrap_or_else(|| "…".into()),
                ),
                k.span,
            );
            return false;
        }
    }
    true
}

fn unexpected(keys: &[&Node]) -> String {
    keys.iter()
        .map(|k| k.value.python_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_root(c: &mut Checker, root: &Node) -> Option<Pipeline> {
    let Some(map) = root.as_map() else {
        c.crash(
            format!(
                "project.yaml must be a mapping with `version` and `actions`, but its top level is a {}",
                python_type_phrase(&root.value)
            ),
            root.span,
        );
        return None;
    };
    if !string_keys(c, map, "Top-level") {
        return None;
    }
    // 1. Unknown top-level keys.
    let unknown: Vec<&Node> = map
        .iter()
        .map(|(k, _)| k)
        .filter(|k| {
            !matches!(
                k.value.as_str(),
                Some("version" | "actions" | "expectations")
            )
        })
        .collect();
    if !unknown.is_empty() {
        let msg = format!(
            "Unexpected parameters ({}) in project",
            unexpected(&unknown)
        );
        if unknown.iter().any(|k| k.value.as_str() == Some("cls")) {
            c.crash(msg, unknown[0].span);
        } else {
            c.error(msg, unknown[0].span);
        }
    }
    // 2–5. Version.
    let version_entry = root.get_entry("version");
    let version_node = match version_entry {
        Some((_, v)) if !v.is_null() => v,
        other => {
            let span = other.map(|(k, _)| k.span).unwrap_or(root.span);
            c.error(
                "Project file must have a `version` attribute specifying which version of the project configuration format it uses (current latest version is 5)",
                span,
            );
            return None;
        }
    };
    let v = match version_float(&version_node.value) {
        Ok(v) => v,
        Err(VersionError::NotANumber) => {
            c.error(
                "`version` must be a number between 1 and 5",
                version_node.span,
            );
            return None;
        }
        Err(VersionError::Overflow) => {
            c.crash(
                "`version` must be a number between 1 and 5 (this one is too large to be a number)",
                version_node.span,
            );
            return None;
        }
    };
    if v != LATEST_VERSION {
        c.warnings.push(format!(
            "ProjectWarning: Your project file is using an old version ({}); consider updating to version 5",
            python::float_repr(v)
        ));
    }
    if v > LATEST_VERSION {
        c.crash(
            format!(
                "The latest version is v5, but got v{}",
                python::float_repr(v)
            ),
            version_node.span,
        );
        return None;
    }
    let features = Features::for_version(v);

    // 6. Actions.
    let actions_node = root.get("actions");
    let Some(actions_map) = actions_node.and_then(Node::as_map) else {
        let span = root
            .get_entry("actions")
            .map(|(_, v)| v.span)
            .unwrap_or(root.span);
        c.error(
            "Project `actions` section must be a dictionary of key/value pairs",
            span,
        );
        return None;
    };

    // 7. Each action, fully, in document order.
    let mut built: Vec<(Action, &Node)> = Vec::with_capacity(actions_map.len());
    let mut names: Vec<(String, Span)> = Vec::with_capacity(actions_map.len());
    let mut string_named: HashSet<String> = HashSet::with_capacity(actions_map.len());
    let mut action_needs: Vec<(usize, Vec<NeedRef>)> = Vec::new();
    for (key, value) in actions_map {
        let Some(id) = key_name(key) else {
            c.crash("action names must be text, not a mapping", key.span);
            continue;
        };
        let index = names.len();
        names.push((id.clone(), key.span));
        if matches!(key.value, Value::Str(_)) {
            string_named.insert(id.clone());
        }
        if let Some((action, needs)) = check_action(c, &id, key, value, features) {
            action_needs.push((index, needs));
            built.push((action, value));
        } else if let Some(needs) = value.get("needs").and_then(needs_items) {
            action_needs.push((index, needs));
        }
    }

    // 8. cohortextractor images (v ≥ 4).
    if features.no_cohortextractor {
        for (action, node) in &built {
            if action.run.parts[0].starts_with("cohortextractor") {
                c.error(
                    format!(
                        "Action {} uses cohortextractor actions, which are not supported in this version.",
                        action.id
                    ),
                    run_span(node),
                );
            }
        }
    }
    // 9. `:latest` (v ≥ 5).
    if features.no_latest_tag {
        for (action, node) in &built {
            let first = &action.run.parts[0];
            if first.ends_with(":latest") {
                c.error(
                    format!(
                        "Action {} uses `{first}`, which is not supported. Provide a version e.g. `:v2` instead",
                        action.id
                    ),
                    run_span(node),
                );
            }
        }
    }
    // 10. Duplicate run commands.
    let mut runs: HashMap<&str, &str> = HashMap::with_capacity(built.len());
    for (action, node) in &built {
        if let Some(earlier) = runs.get(action.run.raw.as_str()) {
            c.error(
                format!(
                    "Action {} has the same 'run' command as other actions: {earlier}",
                    action.id
                ),
                run_span(node),
            );
        } else {
            runs.insert(&action.run.raw, &action.id);
        }
    }
    // 11. Duplicate output patterns (v ≥ 2).
    if features.unique_output_path {
        let mut seen: HashSet<&str> = HashSet::new();
        for (action, node) in &built {
            for (level, pattern) in action.outputs.patterns() {
                if !seen.insert(pattern) {
                    c.error(
                        format!("Output path {pattern} is not unique"),
                        output_span(node, level, pattern),
                    );
                }
            }
        }
    }
    // 12. Unknown needs. A string names an action whose key is that string; an
    // integer names the action of that number, whatever its key's type.
    let known: HashSet<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    let mut unknown_needs = false;
    for (index, needs) in &action_needs {
        for need in needs {
            let found = match need.kind {
                NeedKind::Str => string_named.contains(&need.name),
                NeedKind::Int => known.contains(need.name.as_str()),
                NeedKind::Unhashable(type_name) => {
                    unknown_needs = true;
                    c.crash(
                        format!(
                            "`needs` for action {} must list action names, but one item is a {type_name}",
                            names[*index].0
                        ),
                        need.span,
                    );
                    continue;
                }
            };
            if !found && !need.name.contains(' ') {
                unknown_needs = true;
                c.error(
                    format!(
                        "Action `{}` references an unknown action in its `needs` list: {}",
                        names[*index].0, need.name
                    ),
                    need.span,
                );
            }
        }
    }
    // 13. Expectations.
    let expectations = check_expectations(c, root, v, features);

    // warden's own: images and output paths no backend can use safely.
    check_warden_rules(c, actions_map, &built);
    // warden's own: cycles in `needs`.
    if !unknown_needs {
        check_cycles(c, &names, &action_needs);
    }

    if !c.errors.is_empty() {
        return None;
    }
    let actions: IndexMap<String, Action> =
        built.into_iter().map(|(a, _)| (a.id.clone(), a)).collect();
    Some(Pipeline {
        version: v,
        actions,
        expectations,
    })
}

fn python_type_phrase(v: &Value) -> &'static str {
    match v {
        Value::Seq(_) => "list",
        Value::Map(_) => "mapping",
        Value::Null => "null",
        _ => "single value",
    }
}

enum VersionError {
    NotANumber,
    Overflow,
}

/// Python's `float(version)`.
fn version_float(v: &Value) -> Result<f64, VersionError> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::BigInt(s) => {
            let digits = s.trim_start_matches('-').len();
            if digits > 308 {
                Err(VersionError::Overflow)
            } else {
                s.parse().map_err(|_| VersionError::Overflow)
            }
        }
        Value::Float(f) => Ok(*f),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Str(s) => python::py_float(s).ok_or(VersionError::NotANumber),
        _ => Err(VersionError::NotANumber),
    }
}

fn run_span(node: &Node) -> Span {
    node.get("run").map(|n| n.span).unwrap_or(node.span)
}

fn output_span(action: &Node, level: PrivacyLevel, pattern: &str) -> Span {
    action
        .get("outputs")
        .and_then(|o| o.get(level.as_str()))
        .and_then(Node::as_map)
        .and_then(|m| m.iter().find(|(_, v)| v.value.as_str() == Some(pattern)))
        .map(|(_, v)| v.span)
        .unwrap_or(action.span)
}

/// One item of a `needs` list.
#[derive(Debug, Clone)]
struct NeedRef {
    /// The action name it refers to (Python `str()` of the item).
    name: String,
    /// How the item was written.
    kind: NeedKind,
    span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NeedKind {
    /// A string: refers to an action whose key is that string.
    Str,
    /// An integer: refers to the action of that number (a real study names
    /// actions `2019:` and needs `[2019]`; the reference crashes on it).
    Int,
    /// A list or mapping: the reference crashes on it when it looks it up.
    Unhashable(&'static str),
}

/// A `needs` item; `None` for items the reference crashes on at once (null,
/// floats, booleans: `" " in item` raises).
fn need_ref(item: &Node) -> Option<NeedRef> {
    let (name, kind) = match &item.value {
        Value::Str(s) => (s.clone(), NeedKind::Str),
        Value::Int(_) | Value::BigInt(_) => (item.value.python_str()?, NeedKind::Int),
        Value::Seq(_) | Value::Map(_) => {
            (String::new(), NeedKind::Unhashable(item.value.type_name()))
        }
        _ => return None,
    };
    Some(NeedRef {
        name,
        kind,
        span: item.span,
    })
}

/// The items of a `needs` list that are names, for the graph.
fn needs_items(node: &Node) -> Option<Vec<NeedRef>> {
    let Value::Seq(items) = &node.value else {
        return None;
    };
    Some(items.iter().filter_map(need_ref).collect())
}

const ACTION_KEYS: [&str; 5] = ["run", "outputs", "needs", "config", "dummy_data_file"];

fn check_action(
    c: &mut Checker,
    id: &str,
    key: &Node,
    value: &Node,
    features: Features,
) -> Option<(Action, Vec<NeedRef>)> {
    let before = c.errors.len();
    // a. `run_all` is reserved.
    if id == RUN_ALL_COMMAND {
        if features.no_run_all_action {
            c.error(
                "`run_all` is a reserved action name and is not allowed for user-defined actions.",
                key.span,
            );
        } else {
            c.warnings.push(
                "ProjectWarning: `run_all` is a reserved action name; user-defined actions with this name are ignored and will raise an error in later versions.".into(),
            );
        }
    }
    // b. A mapping.
    let Some(map) = value.as_map() else {
        c.error(
            format!("Configuration for action {id} must be a dictionary of key/value pairs"),
            if value.is_null() {
                key.span
            } else {
                value.span
            },
        );
        return None;
    };
    // c. `run` then `outputs` present.
    let run = value.get("run");
    let outputs = value.get("outputs");
    if run.is_none() {
        c.error(
            format!("Action {id} must contain a configuration for 'run'"),
            key.span,
        );
        return None;
    }
    if outputs.is_none() {
        c.error(
            format!("Action {id} must contain a configuration for 'outputs'"),
            key.span,
        );
        return None;
    }
    let (run, outputs) = (run?, outputs?);
    if !string_keys(c, map, &format!("Action {id}'s")) {
        return None;
    }
    // d1. Unknown keys.
    let unknown: Vec<&Node> = map
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !ACTION_KEYS.contains(&k.value.as_str().unwrap_or("")))
        .collect();
    if !unknown.is_empty() {
        let msg = format!(
            "Unexpected parameters ({}) in action {id}",
            unexpected(&unknown)
        );
        if unknown
            .iter()
            .any(|k| matches!(k.value.as_str(), Some("action_id" | "cls")))
        {
            c.crash(msg, unknown[0].span);
        } else {
            c.error(msg, unknown[0].span);
        }
    }
    // d2–d6. Types.
    let outputs_ok = outputs.as_map().is_some();
    if !outputs_ok {
        c.error(
            format!("`outputs` section for action {id} must be a dictionary of key/value pairs"),
            outputs.span,
        );
    }
    let run_str = run.value.as_str();
    if run_str.is_none() {
        c.error(
            format!("`run` section for action {id} must be a string"),
            run.span,
        );
    }
    let needs_node = value.get("needs");
    let needs_ok = needs_node.is_none_or(|n| n.is_null() || matches!(n.value, Value::Seq(_)));
    if !needs_ok {
        c.error(
            format!("`needs` section for action {id} must be a list"),
            needs_node.map(|n| n.span).unwrap_or(key.span),
        );
    }
    let config_node = value.get("config");
    if let Some(cfg) = config_node
        && !cfg.is_null()
        && cfg.as_map().is_none()
    {
        c.error(
            format!("`config` section for action {id} must be a dictionary of key/value pairs"),
            cfg.span,
        );
    }
    let dummy_node = value.get("dummy_data_file");
    if let Some(d) = dummy_node
        && !d.is_null()
        && d.value.as_str().is_none()
    {
        c.error(
            format!("`dummy_data_file` section for action {id} must be a string"),
            d.span,
        );
    }
    // d7. Outputs.
    let parsed_outputs = if outputs_ok {
        check_outputs(c, id, outputs)
    } else {
        None
    };
    // d8. The run command.
    let mut command = None;
    if let Some(raw) = run_str {
        command = check_run(c, id, raw, run.span);
    }
    // d9. Needs items.
    let mut needs: Vec<NeedRef> = Vec::new();
    if let Some(Value::Seq(items)) = needs_node.map(|n| &n.value) {
        let mut reported_space = false;
        for item in items {
            match need_ref(item) {
                Some(need) => {
                    if need.name.contains(' ') && !reported_space {
                        reported_space = true;
                        c.error(
                            format!(
                                "`needs` actions should be separated with commas, but {id} needs `{}`",
                                need.name
                            ),
                            item.span,
                        );
                    }
                    needs.push(need);
                }
                None => c.crash(
                    format!(
                        "`needs` for action {id} must list action names, but one item is a {}",
                        item.value.type_name()
                    ),
                    item.span,
                ),
            }
        }
    }
    if c.errors.len() > before {
        return None;
    }
    let (outputs_model, command) = (parsed_outputs?, command?);
    // d10. cohortextractor generate_cohort.
    if is_generate_cohort(&command.raw) {
        let levels = outputs_model.len();
        if levels != 1 {
            c.error(
                format!(
                    "A `generate_cohort` action must have exactly one output; {id} had {levels}"
                ),
                outputs.span,
            );
        } else {
            let mut dirs: Vec<String> = Vec::new();
            for (_, pattern) in outputs_model.patterns() {
                let parent = posix_parent(pattern);
                if !dirs.contains(&parent) {
                    dirs.push(parent);
                }
            }
            let has_output_dir = command
                .parts
                .iter()
                .any(|p| p == "--output-dir" || p.starts_with("--output-dir="));
            if dirs.len() != 1 && !has_output_dir {
                let listed: Vec<String> = dirs.iter().map(|d| format!(" - {d}/")).collect();
                let msg = format!(
                    "generate_cohort command should produce output in only one directory, found {}:\n{}",
                    dirs.len(),
                    listed.join("\n")
                );
                c.error(msg, outputs.span);
            }
        }
    }
    // d11. ehrql / databuilder generate-dataset.
    if is_generate_dataset(&command.raw) {
        let non_empty = |m: Option<&IndexMap<String, String>>| m.is_some_and(|m| !m.is_empty());
        if non_empty(outputs_model.moderately_sensitive.as_ref())
            || non_empty(outputs_model.minimally_sensitive.as_ref())
        {
            c.error(
                format!(
                    "`{id}` action uses `generate-dataset` and so all outputs must be labelled `highly_sensitive`"
                ),
                outputs.span,
            );
        } else {
            match output_spec_from_args(&command.parts) {
                None => c.error(
                    format!(
                        "`{id}` action does not provide an `--output` argument specifying where the results of `generate-dataset` should be stored"
                    ),
                    run.span,
                ),
                Some(spec) => {
                    let patterns: Vec<&str> = outputs_model
                        .highly_sensitive
                        .as_ref()
                        .map(|m| m.values().map(String::as_str).collect())
                        .unwrap_or_default();
                    if !output_patterns_match_spec(&spec, &patterns) {
                        c.error(
                            format!(
                                "output specification must match the `--output` argument in the `run` command\n              got: {}\nbut was expecting: {}",
                                patterns.join("                   \n"),
                                expected_pattern_for_spec(&spec)
                            ),
                            outputs.span,
                        );
                    }
                }
            }
        }
    }
    if c.errors.len() > before {
        return None;
    }
    let config = config_node.filter(|n| !n.is_null()).map(node_to_json);
    let dummy_data_file = dummy_node.and_then(|n| n.value.as_str().map(str::to_string));
    Some((
        Action {
            id: id.to_string(),
            run: command,
            outputs: outputs_model,
            needs: needs.iter().map(|n| n.name.clone()).collect(),
            config,
            dummy_data_file,
            line: key.span.start.line as usize,
            column: key.span.start.column as usize,
        },
        needs,
    ))
}

fn check_outputs(c: &mut Checker, id: &str, outputs: &Node) -> Option<Outputs> {
    let map = outputs.as_map()?;
    if !string_keys(c, map, &format!("Action {id}'s `outputs`")) {
        return None;
    }
    let before = c.errors.len();
    let present = |level: PrivacyLevel| outputs.get(level.as_str()).filter(|n| !n.is_null());
    if PrivacyLevel::ALL.iter().all(|l| present(*l).is_none()) {
        c.error(
            "must specify at least one output of: highly_sensitive, moderately_sensitive, minimally_sensitive",
            outputs.span,
        );
    }
    let unknown: Vec<&Node> = map
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.value.as_str().and_then(PrivacyLevel::parse).is_none())
        .collect();
    if !unknown.is_empty() {
        let msg = format!(
            "Unexpected parameters ({}) in `outputs` section for action {id}",
            unexpected(&unknown)
        );
        if unknown
            .iter()
            .any(|k| k.value.as_str() == Some("action_id"))
        {
            c.crash(msg, unknown[0].span);
        } else {
            c.error(msg, unknown[0].span);
        }
    }
    let mut model = Outputs::default();
    for level in PrivacyLevel::ALL {
        let Some(node) = present(level) else { continue };
        let Some(entries) = node.as_map() else {
            c.error(
                format!(
                    "`{}` section for action {id} must be a dictionary of key/value pairs",
                    level.as_str()
                ),
                node.span,
            );
            continue;
        };
        let mut out = IndexMap::with_capacity(entries.len());
        for (name_node, value) in entries {
            let name = name_node.value.python_str().unwrap_or_default();
            let Some(pattern) = value.value.as_str() else {
                c.error(
                    format!("`{name}` output for action {id} must be a string"),
                    if value.is_null() {
                        name_node.span
                    } else {
                        value.span
                    },
                );
                continue;
            };
            if let Err(reason) = validate_glob_pattern(pattern, level) {
                c.error(
                    format!("Output path {pattern} is invalid: {reason}"),
                    value.span,
                );
                continue;
            }
            out.insert(name, pattern.to_string());
        }
        match level {
            PrivacyLevel::HighlySensitive => model.highly_sensitive = Some(out),
            PrivacyLevel::ModeratelySensitive => model.moderately_sensitive = Some(out),
            PrivacyLevel::MinimallySensitive => model.minimally_sensitive = Some(out),
        }
    }
    (c.errors.len() == before).then_some(model)
}

fn check_run(c: &mut Checker, id: &str, raw: &str, span: Span) -> Option<Command> {
    if raw.is_empty() {
        c.error(
            format!("run must have a value, {id} has an empty run key"),
            span,
        );
        return None;
    }
    let parts = match python::shlex_split(raw) {
        Ok(parts) => parts,
        Err(ShlexError::NoClosingQuotation) => {
            c.crash(
                format!("`run` for action {id} has a quote that is never closed"),
                span,
            );
            return None;
        }
        Err(ShlexError::NoEscapedCharacter) => {
            c.crash(
                format!("`run` for action {id} ends with a backslash that escapes nothing"),
                span,
            );
            return None;
        }
    };
    let Some(first) = parts.first() else {
        c.crash(
            format!("run must have a value, {id} has a run key with only white space"),
            span,
        );
        return None;
    };
    let (name, version) = first.split_once(':').unwrap_or((first.as_str(), ""));
    if !is_valid_tag(version) {
        c.error(
            format!(
                "Action command {name} must have a version specified in the form :vN (e.g. {name}:v2)"
            ),
            span,
        );
        return None;
    }
    Some(Command {
        raw: raw.to_string(),
        parts,
    })
}

/// `^((v[\d.]+(-pre)?)|dev|latest)$` with Python's `re.match` (`$` also matches
/// before a final newline; `\d` is any Unicode decimal digit).
fn is_valid_tag(version: &str) -> bool {
    let v = version.strip_suffix('\n').unwrap_or(version);
    if v == "dev" || v == "latest" {
        return true;
    }
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let rest = rest.strip_suffix("-pre").unwrap_or(rest);
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c == '.' || python::decimal_digit(c).is_some())
}

/// `re.match(r"cohortextractor:\S+ generate_cohort", raw)`.
fn is_generate_cohort(raw: &str) -> bool {
    raw.strip_prefix("cohortextractor:")
        .and_then(tag_then_space)
        .is_some_and(|rest| rest.starts_with("generate_cohort"))
}

/// `re.match(r"(ehrql|databuilder):\S+ generate[-_]dataset", raw)`.
fn is_generate_dataset(raw: &str) -> bool {
    raw.strip_prefix("ehrql:")
        .or_else(|| raw.strip_prefix("databuilder:"))
        .and_then(tag_then_space)
        .is_some_and(|rest| {
            rest.starts_with("generate-dataset") || rest.starts_with("generate_dataset")
        })
}

/// Skips `\S+ ` and returns what follows.
fn tag_then_space(s: &str) -> Option<&str> {
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    s[end..].strip_prefix(' ')
}

/// The value of the first `--output` / `--output=` argument, if non-empty.
pub fn output_spec_from_args(parts: &[String]) -> Option<String> {
    for (i, p) in parts.iter().enumerate() {
        if p == "--output" {
            let next = parts.get(i + 1).cloned().unwrap_or_default();
            return (!next.is_empty()).then_some(next);
        }
        if let Some(rest) = p.strip_prefix("--output=") {
            return (!rest.is_empty()).then(|| rest.to_string());
        }
    }
    None
}

/// Splits an ehrQL multi-file spec (`dir:ext`) into directory and extension.
fn split_directory_and_extension(spec: &str) -> Option<(String, String)> {
    let norm = pure_posix(spec);
    let (parent, name) = match norm.rfind('/') {
        Some(i) if norm.len() > 1 => (
            if i == 0 {
                "/".to_string()
            } else {
                norm[..i].to_string()
            },
            norm[i + 1..].to_string(),
        ),
        _ => (".".to_string(), norm.clone()),
    };
    let (stem, ext) = name.rsplit_once(':')?;
    let dir = if stem.is_empty() {
        parent
    } else if parent == "." {
        stem.to_string()
    } else if parent == "/" {
        format!("/{stem}")
    } else {
        format!("{parent}/{stem}")
    };
    Some((dir, ext.to_string()))
}

fn output_patterns_match_spec(spec: &str, patterns: &[&str]) -> bool {
    match split_directory_and_extension(spec) {
        None => patterns.contains(&spec),
        Some((dir, ext)) => {
            let glob = format!("{dir}/*.{ext}");
            patterns.iter().all(|p| fnmatch(p, &glob))
        }
    }
}

fn expected_pattern_for_spec(spec: &str) -> String {
    match split_directory_and_extension(spec) {
        None => spec.to_string(),
        Some((dir, ext)) => format!("{dir}/:{ext}"),
    }
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?` and `[...]`.
fn fnmatch(name: &str, pat: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pat.chars().collect();
    let (mut ni, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    ni += 1;
                    pi += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class_match(&p[pi..], n[ni]) {
                        if matched {
                            ni += 1;
                            pi += len;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        ni += 1;
                        pi += 1;
                        continue;
                    }
                }
                ch if ch == n[ni] => {
                    ni += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches a `[...]` class at the start of `p`; `None` when it is not a class.
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i).is_some_and(|ch| *ch == '!');
    if negate {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while i < p.len() && p[i] != ']' {
        i += 1;
    }
    if i >= p.len() {
        return None;
    }
    let body = &p[if negate { 2 } else { 1 }..i];
    let mut hit = false;
    let mut j = 0;
    while j < body.len() {
        if j + 2 < body.len() && body[j + 1] == '-' {
            if body[j] <= c && c <= body[j + 2] {
                hit = true;
            }
            j += 3;
        } else {
            if body[j] == c {
                hit = true;
            }
            j += 1;
        }
    }
    Some((hit != negate, i + 1))
}

/// `str(PurePosixPath(p))`: duplicate slashes and `.` parts removed, trailing
/// slash dropped, exactly two leading slashes kept.
pub fn pure_posix(p: &str) -> String {
    let root = if p.starts_with("//") && !p.starts_with("///") {
        "//"
    } else if p.starts_with('/') {
        "/"
    } else {
        ""
    };
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.is_empty() {
        return if root.is_empty() {
            ".".into()
        } else {
            root.into()
        };
    }
    format!("{root}{}", parts.join("/"))
}

/// `str(PurePosixPath(p).parent)`.
pub fn posix_parent(p: &str) -> String {
    let norm = pure_posix(p);
    match norm.rfind('/') {
        None => ".".into(),
        Some(0) => "/".into(),
        Some(1) if norm.starts_with("//") => "//".into(),
        Some(i) => norm[..i].into(),
    }
}

/// `posixpath.normpath`.
fn normpath(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let initial = if p.starts_with("//") && !p.starts_with("///") {
        2
    } else if p.starts_with('/') {
        1
    } else {
        0
    };
    let mut comps: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(comp);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let joined = comps.join("/");
    let out = format!("{}{}", "/".repeat(initial), joined);
    if out.is_empty() { ".".into() } else { out }
}

/// `PurePath.suffix` (Python 3.10–3.13).
fn suffix(p: &str) -> String {
    let norm = pure_posix(p);
    let name = if norm == "." || norm == "/" || norm == "//" {
        ""
    } else {
        norm.rsplit('/').next().unwrap_or("")
    };
    match name.rfind('.') {
        Some(i) if i > 0 && i < name.len() - 1 => name[i..].to_string(),
        _ => String::new(),
    }
}

/// Checks an output glob; the error is the reason text of the reference.
pub fn validate_glob_pattern(pattern: &str, level: PrivacyLevel) -> Result<(), String> {
    if pattern.contains('\\') {
        return Err("contains back slashes (use forward slashes only)".into());
    }
    for wild in ["**", "?", "["] {
        if pattern.contains(wild) {
            return Err(format!(
                "contains '{wild}' (only the * wildcard character is supported)"
            ));
        }
    }
    let sfx = suffix(pattern);
    if sfx.is_empty() || sfx.ends_with('*') {
        return Err("output paths must have a file type extension at the end".into());
    }
    if level == PrivacyLevel::ModeratelySensitive && !LEVEL4_FILE_TYPES.contains(&sfx.as_str()) {
        return Err(format!(
            "{} is not an allowed file type for moderately_sensitive outputs",
            pure_posix(pattern)
        ));
    }
    if normpath(pattern) != pattern {
        return Err("is not in standard form (contains double slashes or '..' elements)".into());
    }
    if pattern == "metadata" || pattern.starts_with("metadata/") {
        return Err("should not include the metadata directory".into());
    }
    let chars: Vec<char> = pattern.chars().take(3).collect();
    let windows_abs = chars.len() == 3 && chars[1] == ':' && chars[2] == '/';
    if pattern.starts_with('/') || windows_abs {
        return Err("is an absolute path".into());
    }
    Ok(())
}

/// warden's own rules on what the reference accepts (errors of kind
/// [`DiagnosticKind::Extra`], after every reference error): image names that
/// would leave the image prefix, and output patterns that could write outside
/// the workspace or into the repository's `.git` or warden's `metadata/`.
fn check_warden_rules(c: &mut Checker, actions_map: &[(Node, Node)], built: &[(Action, &Node)]) {
    for (action, node) in built {
        if let Some(problem) = image_problem(&action.run.parts[0]) {
            c.extra(
                format!("Action {} uses {problem}", action.id),
                run_span(node),
            );
        }
    }
    for (_, action) in actions_map {
        let Some(outputs) = action.get("outputs") else {
            continue;
        };
        for level in PrivacyLevel::ALL {
            let Some(entries) = outputs.get(level.as_str()).and_then(Node::as_map) else {
                continue;
            };
            for (_, value) in entries {
                let Some(pattern) = value.value.as_str() else {
                    continue;
                };
                if validate_glob_pattern(pattern, level).is_err() {
                    continue;
                }
                if let Some(reason) = output_path_problem(pattern) {
                    c.extra(
                        format!("Output path {pattern} is invalid: {reason}"),
                        value.span,
                    );
                }
            }
        }
    }
}

/// A Docker image name component: `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`.
fn is_image_name_component(name: &str) -> bool {
    let b = name.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or any number of `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &name[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// A Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_docker_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
}

/// Why the image of a `run` command (its first token, `name:tag`) cannot be
/// run by warden, which looks every image up under one prefix
/// (`ghcr.io/opensafely-core/{name}:{tag}`): the name must be one Docker name
/// component (no `/`, no `..`, lowercase) and the tag a Docker tag. `None`
/// when it is fine. The text follows "Action {id} uses ".
pub fn image_problem(first: &str) -> Option<String> {
    let (name, tag) = first.split_once(':').unwrap_or((first, ""));
    if name.is_empty() {
        return Some(format!(
            "`{first}`, which has no image name: write the image before the `:` (e.g. `python:v2`)"
        ));
    }
    if !is_image_name_component(name) {
        return Some(format!(
            "the image `{name}`, which is not a valid image name: use only lowercase letters and digits, with single `.`, `_` or `__`, or `-`, between them (no `/`: images come from one registry prefix)"
        ));
    }
    if !is_docker_tag(tag) {
        return Some(format!(
            "the image tag `{tag}`, which is not a valid Docker tag: use only ASCII letters, digits, `_`, `.` and `-` (e.g. `v2`)"
        ));
    }
    None
}

/// Whether a pattern segment (with `*` wildcards) can match `name`, ignoring
/// ASCII case (case-insensitive file systems fold `.GIT` onto `.git`).
fn segment_may_be(segment: &str, name: &str) -> bool {
    fnmatch(name, &segment.to_ascii_lowercase())
}

/// Why an output pattern that the reference accepts is refused by warden
/// (the reason text after "Output path {p} is invalid: "), or `None`. The
/// pattern must stay inside the workspace and out of what the backend keeps
/// there for itself:
///
/// - no control or invisible formatting characters
///   ([`crate::escape::needs_escape`]): such a name cannot be shown to a
///   person as it is;
/// - no `..` component (the reference accepts a leading `..`), with the
///   reference's "not in standard form" text;
/// - no component that is, or whose `*` could match, `.git` in any letter case
///   (a literal one at any depth; a wildcard one at the top, where the
///   repository's own `.git` is);
/// - no top component that is, or could match, `metadata` in any letter case
///   (warden's logs and job history), with the reference's text.
pub fn output_path_problem(pattern: &str) -> Option<String> {
    if let Some(ch) = pattern.chars().find(|c| crate::escape::needs_escape(*c)) {
        return Some(format!(
            "contains the character U+{:04X}, a control or invisible formatting character, which a file name must not hold",
            u32::from(ch)
        ));
    }
    let segments: Vec<&str> = pattern.split('/').collect();
    if segments.contains(&"..") {
        return Some("is not in standard form (contains double slashes or '..' elements)".into());
    }
    for (i, segment) in segments.iter().enumerate() {
        let literal = !segment.contains('*');
        if (literal || i == 0) && segment_may_be(segment, ".git") {
            return Some(
                "is inside the repository's `.git` directory, which outputs must never touch"
                    .into(),
            );
        }
    }
    if segments.len() > 1 && segment_may_be(segments[0], "metadata") {
        return Some("should not include the metadata directory".into());
    }
    None
}

fn check_expectations(
    c: &mut Checker,
    root: &Node,
    v: f64,
    features: Features,
) -> Option<Expectations> {
    let entry = root.get_entry("expectations");
    let present = entry.filter(|(_, n)| !n.is_null());
    if features.no_cohortextractor {
        if let Some((k, _)) = present {
            c.error(
                "Project includes `expectations` section, which is not supported in this version. This section is only applicable to deprecated cohortextractor actions; you can safely remove it.",
                k.span,
            );
        }
        return None;
    }
    if !features.expectations_population {
        // v < 3 and 3 < v < 4: the user's value is ignored.
        let _ = v;
        return Some(Expectations {
            population_size: 1000,
        });
    }
    let Some((key, node)) = present else {
        c.error(
            "Project must include `expectations` section",
            entry.map(|(k, _)| k.span).unwrap_or(root.span),
        );
        return None;
    };
    let Some(map) = node.as_map() else {
        c.error(
            "Project `expectations` section must be a dictionary of key/value pairs",
            node.span,
        );
        return None;
    };
    if !string_keys(c, map, "`expectations`") {
        return None;
    }
    let Some(size) = node.get("population_size") else {
        c.error(
            "Project `expectations` section must include `population_size` section",
            key.span,
        );
        return None;
    };
    let unknown: Vec<&Node> = map
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.value.as_str() != Some("population_size"))
        .collect();
    if !unknown.is_empty() {
        c.error(
            format!(
                "Unexpected parameters ({}) in project `expectations` section",
                unexpected(&unknown)
            ),
            unknown[0].span,
        );
        return None;
    }
    let n = match &size.value {
        Value::Int(i) => Some(i128::from(*i)),
        Value::BigInt(s) => Some(if s.starts_with('-') {
            i128::MIN
        } else {
            i128::MAX
        }),
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Float(f) if f.is_infinite() => {
            c.crash(
                "Project expectations population size must be a number (infinity is not a whole number)",
                size.span,
            );
            return None;
        }
        Value::Float(f) if f.is_nan() => None,
        Value::Float(f) => Some(f.trunc() as i128),
        Value::Str(s) => python::py_int(s),
        _ => None,
    };
    let Some(n) = n else {
        c.error(
            "Project expectations population size must be a number",
            size.span,
        );
        return None;
    };
    Some(Expectations {
        population_size: n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
    })
}

/// Finds cycles in `needs` (self-needs included) and reports each once, with its path.
fn check_cycles(c: &mut Checker, names: &[(String, Span)], needs: &[(usize, Vec<NeedRef>)]) {
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut adj: Vec<Vec<(usize, Span)>> = vec![Vec::new(); names.len()];
    for (i, list) in needs {
        for need in list {
            if let Some(&j) = index.get(need.name.as_str()) {
                adj[*i].push((j, need.span));
            }
        }
    }
    // Iterative DFS with colours: 0 new, 1 on stack, 2 done.
    let mut colour = vec![0u8; names.len()];
    for start in 0..names.len() {
        if colour[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < adj[node].len() {
                let (to, span) = adj[node][*next];
                *next += 1;
                match colour[to] {
                    0 => {
                        colour[to] = 1;
                        stack.push((to, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut path: Vec<&str> = stack[from..]
                            .iter()
                            .map(|(n, _)| names[*n].0.as_str())
                            .collect();
                        path.push(names[to].0.as_str());
                        let message = if path.len() == 2 {
                            format!("Action `{}` needs itself", names[to].0)
                        } else {
                            format!(
                                "Actions depend on each other in a cycle: {}",
                                path.join(" -> ")
                            )
                        };
                        c.extra(message, span);
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                stack.pop();
            }
        }
    }
}

/// A YAML node as JSON (for `config:`), keys as Python `str()`.
pub(crate) fn node_to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::BigInt(s) => J::String(s.clone()),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Timestamp(s) => J::String(s.clone()),
        Value::Tagged(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(node_to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.python_str().unwrap_or_default(), node_to_json(v)))
                .collect(),
        ),
    }
}
