//! A tiny YAML document model and block-style emitter for the case generator. Keys and
//! scalars are kept as raw YAML text, so a case can hold anything the reference parser
//! might meet: duplicate keys, integer keys, tags, anchors, flow collections.

#[derive(Clone, Debug)]
pub enum Node {
    /// A scalar (or any inline text, e.g. a flow collection), as raw YAML.
    Raw(String),
    /// A block mapping; keys are raw YAML text and may repeat.
    Map(Vec<(String, Node)>),
    /// A block sequence.
    Seq(Vec<Node>),
    /// A node emitted in flow style (`{a: b}`, `[a, b]`); `true` adds a trailing comma.
    Flow(Box<Node>, bool),
    /// A node with an anchor (`&name`).
    Anchor(String, Box<Node>),
    /// A block scalar: the indicator (`>`, `|`, `>-`...) and its lines.
    Block(String, Vec<String>),
}

/// A string scalar, quoted only when a plain scalar would not be read back as this string.
pub fn s(text: &str) -> Node {
    Node::Raw(quote(text))
}

/// Raw YAML text for a string.
pub fn quote(text: &str) -> String {
    if is_plain_safe(text) {
        return text.to_string();
    }
    if text.chars().any(|c| c.is_control()) {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        return out;
    }
    format!("'{}'", text.replace('\'', "''"))
}

/// The string a raw scalar made by [`quote`] (or a plain one) stands for.
pub fn unquote(raw: &str) -> Option<String> {
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(inner.replace("''", "'"));
    }
    if raw.starts_with('"') {
        return None;
    }
    Some(raw.to_string())
}

fn is_plain_safe(t: &str) -> bool {
    let Some(first) = t.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    const WORDS: [&str; 11] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", ".inf", ".nan",
    ];
    if WORDS.iter().any(|w| w.eq_ignore_ascii_case(t)) {
        return false;
    }
    !(t.ends_with(' ')
        || t.ends_with(':')
        || t.contains(": ")
        || t.contains(" #")
        || t.chars().any(|c| {
            c.is_control() || matches!(c, ',' | '[' | ']' | '{' | '}' | '\'' | '"' | '\\')
        }))
}

impl Node {
    pub fn map() -> Node {
        Node::Map(Vec::new())
    }

    pub fn map_mut(&mut self) -> Option<&mut Vec<(String, Node)>> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.map_mut()?
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Replace the value of `key`, or append it.
    pub fn set(&mut self, key: &str, value: Node) {
        if let Some(m) = self.map_mut() {
            match m.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => m.push((key.to_string(), value)),
            }
        }
    }

    pub fn with(mut self, key: &str, value: Node) -> Node {
        self.set(key, value);
        self
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let m = self.map_mut()?;
        let i = m.iter().position(|(k, _)| k == key)?;
        Some(m.remove(i).1)
    }

    /// The string a `Raw` scalar stands for.
    pub fn as_str(&self) -> Option<String> {
        match self {
            Node::Raw(r) => unquote(r),
            _ => None,
        }
    }
}

/// Emit a document (a mapping at the top, or anything else inline).
pub fn emit(doc: &Node) -> String {
    let mut out = String::new();
    match doc {
        Node::Map(m) if !m.is_empty() => emit_map(m, 0, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn emit_map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    for (k, v) in entries {
        pad(out, indent);
        out.push_str(k);
        out.push(':');
        emit_value(v, indent, out);
    }
}

/// After `key:` (or after `- key:`), at a mapping of indentation `indent`.
fn emit_value(v: &Node, indent: usize, out: &mut String) {
    match v {
        Node::Raw(t) if t.is_empty() => out.push('\n'),
        Node::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(m, indent + 2, out);
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(items, indent + 2, out);
        }
        Node::Anchor(name, inner) => {
            out.push_str(" &");
            out.push_str(name);
            match inner.as_ref() {
                Node::Map(m) if !m.is_empty() => {
                    out.push('\n');
                    emit_map(m, indent + 2, out);
                }
                Node::Seq(items) if !items.is_empty() => {
                    out.push('\n');
                    emit_seq(items, indent + 2, out);
                }
                other => {
                    out.push(' ');
                    out.push_str(&inline(other));
                    out.push('\n');
                }
            }
        }
        Node::Block(indicator, lines) => {
            out.push(' ');
            out.push_str(indicator);
            out.push('\n');
            for line in lines {
                pad(out, indent + 2);
                out.push_str(line);
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn emit_seq(items: &[Node], indent: usize, out: &mut String) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Node::Map(m) if !m.is_empty() => {
                out.push(' ');
                out.push_str(&m[0].0);
                out.push(':');
                emit_value(&m[0].1, indent + 2, out);
                emit_map(&m[1..], indent + 2, out);
            }
            Node::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                emit_seq(inner, indent + 2, out);
            }
            Node::Raw(t) if t.is_empty() => out.push('\n'),
            other => {
                out.push(' ');
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// Flow-style text of a node.
fn inline(v: &Node) -> String {
    match v {
        Node::Raw(t) => t.clone(),
        Node::Map(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", inline(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Node::Seq(items) => {
            let parts: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        Node::Flow(inner, trailing_comma) => {
            let text = inline(inner);
            if *trailing_comma && text.len() > 2 {
                format!("{},{}", &text[..text.len() - 1], &text[text.len() - 1..])
            } else {
                text
            }
        }
        Node::Anchor(name, inner) => format!("&{name} {}", inline(inner)),
        Node::Block(_, lines) => quote(&lines.join(" ")),
    }
}
