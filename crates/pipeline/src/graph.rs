//! The dependency graph of a valid pipeline: order, closure, images, and pictures.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::model::{Pipeline, RUN_ALL_COMMAND};

impl Pipeline {
    /// Action ids in document order, without a user-defined `run_all`.
    pub fn all_actions(&self) -> Vec<&str> {
        self.actions
            .keys()
            .map(String::as_str)
            .filter(|a| *a != RUN_ALL_COMMAND)
            .collect()
    }

    /// The images the pipeline uses, as `name:tag` with `latest` mapped to `v1`.
    pub fn action_images(&self) -> BTreeSet<String> {
        self.actions
            .values()
            .map(|a| {
                let tag = match a.run.version() {
                    "latest" => "v1",
                    other => other,
                };
                format!("{}:{tag}", a.run.name())
            })
            .collect()
    }

    /// Expands `run_all` and returns the requested actions plus everything they
    /// need, transitively, in document order. Unknown names are ignored here (the
    /// planner reports them).
    pub fn dependency_closure(&self, requested: &[&str]) -> Vec<&str> {
        let mut wanted = vec![false; self.actions.len()];
        let mut stack: Vec<usize> = Vec::new();
        for name in requested {
            if *name == RUN_ALL_COMMAND {
                for a in self.all_actions() {
                    stack.extend(self.actions.get_index_of(a));
                }
            } else {
                stack.extend(self.actions.get_index_of(*name));
            }
        }
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut wanted[i], true) {
                continue;
            }
            let (_, action) = self.actions.get_index(i).expect("index in range");
            for need in &action.needs {
                if let Some(j) = self.actions.get_index_of(need.as_str())
                    && !wanted[j]
                {
                    stack.push(j);
                }
            }
        }
        self.actions
            .keys()
            .enumerate()
            .filter(|(i, _)| wanted[*i])
            .map(|(_, k)| k.as_str())
            .collect()
    }

    /// A run order: every action after the actions it needs; among actions that
    /// are ready at the same time, document order. A valid pipeline has no cycles.
    pub fn topological_order(&self) -> Vec<&str> {
        let n = self.actions.len();
        let mut indegree = vec![0usize; n];
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, action) in self.actions.values().enumerate() {
            let mut seen = Vec::new();
            for need in &action.needs {
                if let Some(j) = self.actions.get_index_of(need.as_str())
                    && !seen.contains(&j)
                {
                    seen.push(j);
                    indegree[i] += 1;
                    dependants[j].push(i);
                }
            }
        }
        let mut ready: BTreeSet<usize> = (0..n).filter(|i| indegree[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(self.actions.get_index(i).expect("in range").0.as_str());
            for &d in &dependants[i] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        order
    }

    /// The graph in Mermaid syntax (`graph LR`).
    pub fn to_mermaid(&self) -> String {
        let ids = node_ids(self);
        let mut out = String::from("graph LR\n");
        for (name, action) in &self.actions {
            let _ = writeln!(
                out,
                "    {}[\"{}\"]",
                ids[name.as_str()],
                escape_label(name)
            );
            for need in &action.needs {
                if let Some(from) = ids.get(need.as_str()) {
                    let _ = writeln!(out, "    {from} --> {}", ids[name.as_str()]);
                }
            }
        }
        out
    }

    /// The graph in Graphviz DOT syntax.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph pipeline {\n    rankdir=LR;\n    node [shape=box];\n");
        for (name, action) in &self.actions {
            let _ = writeln!(out, "    \"{}\";", escape_label(name));
            for need in &action.needs {
                let _ = writeln!(
                    out,
                    "    \"{}\" -> \"{}\";",
                    escape_label(need),
                    escape_label(name)
                );
            }
        }
        out.push_str("}\n");
        out
    }

    /// The graph as JSON: nodes with image and outputs, edges need → action.
    pub fn to_graph_json(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .actions
            .values()
            .map(|a| {
                serde_json::json!({
                    "id": a.id,
                    "image": format!("{}:{}", a.run.name(), a.run.version()),
                    "needs": a.needs,
                    "database_action": a.is_database_action(),
                    "outputs": a
                        .outputs
                        .levels()
                        .map(|(l, m)| (l.as_str().to_string(), serde_json::json!(m)))
                        .collect::<serde_json::Map<String, serde_json::Value>>(),
                })
            })
            .collect();
        let edges: Vec<serde_json::Value> = self
            .actions
            .values()
            .flat_map(|a| {
                a.needs
                    .iter()
                    .map(move |n| serde_json::json!({"from": n, "to": a.id}))
            })
            .collect();
        serde_json::json!({ "nodes": nodes, "edges": edges })
    }
}

fn node_ids(p: &Pipeline) -> HashMap<&str, String> {
    p.actions
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), format!("a{i}")))
        .collect()
}

/// A name for a quoted Mermaid or DOT label: escaped for a person to read
/// ([`crate::escape::escape_name`]: no control or bidi character reaches the
/// picture), then with `\` and `"` quoted for the label syntax.
fn escape_label(s: &str) -> String {
    crate::escape::escape_name(s)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}
