//! YAML 1.2 with source spans, resolved the way the reference (ruamel, round-trip
//! loader) resolves it.
//!
//! The parser is `saphyr-parser`'s event stream; this module builds a tree of
//! [`Node`]s from it and does everything the reference's loader does on top:
//! scalar resolution in the YAML 1.2 core schema (`yes`/`no` stay strings, `017`
//! is 17, `2020-01-01` is a date), anchors and aliases, merge keys (`<<`),
//! duplicate-key errors and the one-document rule.

use std::hash::{BuildHasher as _, Hasher as _};

use foldhash::HashMapExt as _;
use foldhash::fast::RandomState;
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diagnostic::{Pos, Span};

/// A YAML value with the span of its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The resolved value.
    pub value: Value,
    /// Where it is in the source.
    pub span: Span,
}

/// A resolved YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing.
    Null,
    /// `true` / `false` (YAML 1.2 spellings only).
    Bool(bool),
    /// An integer that fits in an `i64`.
    Int(i64),
    /// An integer too large for an `i64`, as its decimal digits.
    BigInt(String),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A timestamp (`2020-01-01`), as written.
    Timestamp(String),
    /// A value with an explicit tag the loader does not resolve (`!foo x`, `!!binary`).
    Tagged(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (merged keys after own keys).
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The Python type name the reference would see, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Timestamp(_) => "date",
            Value::Tagged(_) => "TaggedScalar",
            Value::Seq(_) => "list",
            Value::Map(_) => "dict",
        }
    }

    /// Python's `str()` of a scalar value; `None` for collections.
    pub fn python_str(&self) -> Option<String> {
        Some(match self {
            Value::Null => "None".to_string(),
            Value::Bool(true) => "True".to_string(),
            Value::Bool(false) => "False".to_string(),
            Value::Int(i) => i.to_string(),
            Value::BigInt(s) => s.clone(),
            Value::Float(f) => crate::python::float_repr(*f),
            Value::Str(s) => s.clone(),
            Value::Timestamp(s) => crate::python::timestamp_str(s),
            Value::Tagged(s) => s.clone(),
            // A sequence used as a key becomes a tuple in the reference.
            Value::Seq(items) => {
                let reprs: Option<Vec<String>> =
                    items.iter().map(|i| i.value.python_repr()).collect();
                let reprs = reprs?;
                if reprs.len() == 1 {
                    format!("({},)", reprs[0])
                } else {
                    format!("({})", reprs.join(", "))
                }
            }
            Value::Map(_) => return None,
        })
    }

    /// Python's `repr()` of a scalar (or tuple) value.
    pub fn python_repr(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(crate::python::str_repr(s)),
            other => other.python_str(),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Node {
    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks a string key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.get_entry(key).map(|(_, v)| v)
    }

    /// Looks a string key up in a mapping, returning key and value nodes.
    pub fn get_entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.value.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }

    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
}

/// A YAML error with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// How many nodes aliases may copy in total before the document is refused (a
/// guard against "billion laughs" documents).
const ALIAS_BUDGET: usize = 1_000_000;

/// Maps the parser's character-based markers to byte offsets in the original
/// source (which may start with a byte-order mark the parser never sees).
struct Positions<'a> {
    /// The text given to the parser (without the BOM).
    text: &'a str,
    /// Bytes before `text` in the original source.
    shift: usize,
    ascii: bool,
    /// Byte offset of every character of `text`, built only for non-ASCII input.
    char_bytes: Vec<usize>,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str, shift: usize) -> Positions<'a> {
        let ascii = text.is_ascii();
        let char_bytes = if ascii {
            Vec::new()
        } else {
            text.char_indices().map(|(b, _)| b).collect()
        };
        Positions {
            text,
            shift,
            ascii,
            char_bytes,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        let b = if self.ascii {
            char_index.min(self.text.len())
        } else {
            self.char_bytes
                .get(char_index)
                .copied()
                .unwrap_or(self.text.len())
        };
        b + self.shift
    }

    fn pos(&self, m: &saphyr_parser::Marker) -> Pos {
        Pos::new(self.byte(m.index()), m.line().max(1), m.col() + 1)
    }

    fn span(&self, s: &saphyr_parser::Span) -> Span {
        Span {
            start: self.pos(&s.start),
            end: self.pos(&s.end),
        }
    }

    /// A position computed from a byte offset of the original source.
    fn at_byte(&self, offset: usize) -> Pos {
        let local = offset.saturating_sub(self.shift).min(self.text.len());
        let before = &self.text[..local];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos::new(
            local + self.shift,
            line,
            before[line_start..].chars().count() + 1,
        )
    }
}

/// How deeply collections may nest: block and flow together, complex keys
/// included, and also once aliases are expanded. Every walk over a [`Node`] tree
/// (clone, drop, validation, conversion to JSON) therefore recurses at most this
/// deep, whatever the input. The tree builder itself is iterative. (The parser
/// refuses flow collections nested deeper than 255 levels on its own; the reference
/// fails with a Python `RecursionError` somewhere past 500 levels.)
pub const MAX_DEPTH: usize = 255;

fn depth_error(span: Span) -> Vec<YamlError> {
    vec![YamlError {
        message: depth_message(),
        span,
    }]
}

fn depth_message() -> String {
    format!(
        "invalid YAML: recursion limit exceeded (collections nested more than {MAX_DEPTH} levels deep)"
    )
}

/// Parses one YAML document. An empty stream is `Ok(None)`.
pub fn parse(source: &str) -> Result<Option<Node>, Vec<YamlError>> {
    // A byte-order mark is accepted, as the reference accepts it.
    let text = source.strip_prefix('\u{feff}').unwrap_or(source);
    let positions = Positions::new(text, source.len() - text.len());
    let mut builder = Builder {
        positions: &positions,
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
        budget: ALIAS_BUDGET,
        errors: Vec::new(),
        quoted: Vec::new(),
        stack: Vec::new(),
    };
    let mut document: Option<Node> = None;
    let mut documents = 0usize;
    while let Some((event, span)) = builder.next_event()? {
        if builder.stack.is_empty() {
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                    continue;
                }
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(vec![YamlError {
                            message:
                                "expected a single document in the stream, but found another document"
                                    .into(),
                            span: positions.span(&span),
                        }]);
                    }
                    continue;
                }
                _ => {}
            }
        }
        if let Some(node) = builder.event(event, span)? {
            document = Some(node);
        }
    }
    if let Some(frame) = builder.stack.last() {
        let (inside, span) = match frame {
            Frame::Seq(f) => ("sequence", f.start),
            Frame::Map(f) => ("mapping", f.key.as_ref().map_or(f.start, |(k, _)| k.span)),
        };
        return Err(vec![YamlError {
            message: format!("unexpected end of the document inside a {inside}"),
            span,
        }]);
    }
    if let Some(err) = misplaced_tab(&positions, &builder.quoted) {
        return Err(vec![err]);
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(document)
}

/// The reference's YAML scanner refuses a tab anywhere but inside a quoted or
/// block scalar or a comment (even where YAML 1.2 allows one). Returns the
/// first such tab.
fn misplaced_tab(positions: &Positions<'_>, quoted: &[(u32, u32)]) -> Option<YamlError> {
    let text = positions.text;
    let shift = positions.shift;
    let inside_quoted = |b: usize| {
        let b = (b + shift) as u32;
        quoted.iter().any(|&(s, e)| b >= s && b < e)
    };
    for (i, _) in text.match_indices('\t') {
        if inside_quoted(i) {
            continue;
        }
        let line_start = text[..i].rfind('\n').map_or(0, |j| j + 1);
        let in_comment = text[line_start..i].char_indices().any(|(j, c)| {
            let at = line_start + j;
            c == '#'
                && !inside_quoted(at)
                && (at == line_start || matches!(text.as_bytes()[at - 1], b' ' | b'\t'))
        });
        if in_comment {
            continue;
        }
        let pos = positions.at_byte(i + shift);
        return Some(YamlError {
            message:
                "found a tab character where YAML allows none (indent and separate with spaces)"
                    .into(),
            span: Span {
                start: pos,
                end: Pos {
                    offset: pos.offset + 1,
                    line: pos.line,
                    column: pos.column + 1,
                },
            },
        });
    }
    None
}

fn scan_error(positions: &Positions<'_>, e: &ScanError) -> YamlError {
    let pos = positions.at_byte(positions.byte(e.marker().index()));
    YamlError {
        // The parser's own nesting limit (flow collections) reads like ours.
        message: if e.info() == "recursion limit exceeded" {
            depth_message()
        } else {
            format!("invalid YAML: {}", e.info())
        },
        span: Span {
            start: pos,
            end: pos,
        },
    }
}

struct Builder<'p, 'a> {
    positions: &'p Positions<'a>,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: Vec<Option<Anchored>>,
    budget: usize,
    errors: Vec<YamlError>,
    /// Byte ranges of quoted and block scalars (where tabs are allowed).
    quoted: Vec<(u32, u32)>,
    /// The collections open at this point of the event stream, innermost last
    /// (never longer than [`MAX_DEPTH`]).
    stack: Vec<Frame<'a>>,
}

/// A node an anchor names, with what an alias to it costs.
struct Anchored {
    node: Node,
    /// Nodes in it (an upper bound), charged to the alias budget per alias.
    size: usize,
    /// Its nesting height: 0 for a scalar, 1 + the highest child for a collection.
    height: usize,
}

/// A finished node on its way to its parent.
struct Built {
    node: Node,
    size: usize,
    height: usize,
}

/// An open collection.
enum Frame<'a> {
    Seq(SeqFrame<'a>),
    Map(MapFrame<'a>),
}

struct SeqFrame<'a> {
    anchor: usize,
    tag: Option<std::borrow::Cow<'a, saphyr_parser::Tag>>,
    start: Span,
    items: Vec<Node>,
    size: usize,
    height: usize,
}

struct MapFrame<'a> {
    anchor: usize,
    tag: Option<std::borrow::Cow<'a, saphyr_parser::Tag>>,
    start: Span,
    own: Vec<(Node, Node)>,
    seen: KeyIndex,
    merged: Vec<(Node, Node)>,
    /// The key read, waiting for its value, and whether it is a merge key (`<<`).
    key: Option<(Node, bool)>,
    size: usize,
    height: usize,
}

/// Identity of a mapping key as a Python dict sees it: numbers compare by
/// value (`1`, `1.0` and `true` are the same key), strings by content. A
/// collection used as a key is only ever equal to itself (copies of one alias):
/// its identity is where it starts.
fn key_identity(key: &Node) -> String {
    match &key.value {
        Value::Int(i) => format!("n{i}"),
        Value::Bool(b) => format!("n{}", u8::from(*b)),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => format!("n{}", *f as i128),
        Value::Float(f) => format!("f{}", f.to_bits()),
        Value::BigInt(s) => format!("n{s}"),
        Value::Str(s) => format!("s{s}"),
        Value::Null => "z".to_string(),
        Value::Timestamp(s) => format!("t{s}"),
        Value::Tagged(s) => format!("g{s}"),
        Value::Seq(_) | Value::Map(_) => format!("x{}", key.span.start.offset),
    }
}

/// Whether two keys are the same key of a Python dict ([`key_identity`]), without
/// building identities for the common case of two strings.
fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Str(_), _) | (_, Value::Str(_)) => false,
        _ => key_identity(a) == key_identity(b),
    }
}

/// A hash agreeing with [`same_key`] (string identities start with `s`, no other
/// does), seeded per process so that crafted keys cannot all collide.
fn key_hash(state: &RandomState, key: &Node) -> u64 {
    let mut h = state.build_hasher();
    match &key.value {
        Value::Str(s) => {
            h.write_u8(b's');
            h.write(s.as_bytes());
        }
        _ => h.write(key_identity(key).as_bytes()),
    }
    h.finish()
}

/// The keys of a mapping being built, by identity: a scan while the mapping is
/// small, a hash index (built on first need) once it is not.
#[derive(Default)]
struct KeyIndex {
    /// The hash of keys, made when first needed.
    state: Option<RandomState>,
    /// Key hash → index of the first own entry with that hash.
    by_hash: foldhash::HashMap<u64, usize>,
    /// How many of the own entries are in `by_hash`.
    indexed: usize,
}

impl KeyIndex {
    const SCAN: usize = 12;

    /// The index in `own` of the entry whose key is `key`'s identity, if any.
    fn find(&mut self, own: &[(Node, Node)], key: &Node) -> Option<usize> {
        if own.len() <= Self::SCAN {
            return own.iter().position(|(k, _)| same_key(k, key));
        }
        let state = self.state.get_or_insert_with(RandomState::default);
        if self.by_hash.is_empty() {
            self.by_hash = foldhash::HashMap::with_capacity(own.len() * 2);
        }
        for (i, (k, _)) in own.iter().enumerate().skip(self.indexed) {
            self.by_hash.entry(key_hash(state, k)).or_insert(i);
        }
        self.indexed = own.len();
        let first = *self.by_hash.get(&key_hash(state, key))?;
        if same_key(&own[first].0, key) {
            Some(first)
        } else {
            // Two different keys with one hash: rare, look at them all.
            own.iter().position(|(k, _)| same_key(k, key))
        }
    }
}

impl<'a> Builder<'_, 'a> {
    fn next_event(&mut self) -> Result<Option<(Event<'a>, saphyr_parser::Span)>, Vec<YamlError>> {
        match self.parser.next() {
            None => Ok(None),
            Some(Ok(ev)) => Ok(Some(ev)),
            Some(Err(e)) => {
                // A tab is the likelier cause of a scanner error; say so first.
                if let Some(err) = misplaced_tab(self.positions, &self.quoted) {
                    return Err(vec![err]);
                }
                Err(vec![scan_error(self.positions, &e)])
            }
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node, size: usize, height: usize) {
        if anchor == 0 {
            return;
        }
        if self.anchors.len() <= anchor {
            self.anchors.resize_with(anchor + 1, || None);
        }
        self.anchors[anchor] = Some(Anchored {
            node: node.clone(),
            size,
            height,
        });
    }

    /// Takes one event inside the document. Returns the root node once it is
    /// complete. Nothing here recurses: collections are frames on `self.stack`.
    fn event(
        &mut self,
        event: Event<'a>,
        span: saphyr_parser::Span,
    ) -> Result<Option<Node>, Vec<YamlError>> {
        let start_span = self.positions.span(&span);
        let is_merge = matches!(
            &event,
            Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<"
        );
        let built = match event {
            Event::Alias(id) => {
                let Some(Some(target)) = self.anchors.get(id) else {
                    return Err(vec![YamlError {
                        message: "found undefined alias".into(),
                        span: start_span,
                    }]);
                };
                if target.size > self.budget {
                    return Err(vec![YamlError {
                        message: "too many alias expansions: the document is too large once its aliases are expanded".into(),
                        span: start_span,
                    }]);
                }
                if self.stack.len() + target.height > MAX_DEPTH {
                    return Err(depth_error(start_span));
                }
                self.budget -= target.size;
                let mut node = target.node.clone();
                node.span = start_span;
                Built {
                    node,
                    size: target.size,
                    height: target.height,
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if style != ScalarStyle::Plain {
                    self.quoted.push((
                        start_span.start.offset,
                        start_span.end.offset.max(start_span.start.offset + 1),
                    ));
                }
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let value = resolve_scalar(text, style, tag.as_deref());
                let node = Node {
                    value,
                    span: start_span,
                };
                self.remember(anchor, &node, 1, 0);
                Built {
                    node,
                    size: 1,
                    height: 0,
                }
            }
            Event::SequenceStart(anchor, tag) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(depth_error(start_span));
                }
                self.stack.push(Frame::Seq(SeqFrame {
                    anchor,
                    tag,
                    start: start_span,
                    items: Vec::new(),
                    size: 1,
                    height: 1,
                }));
                return Ok(None);
            }
            Event::MappingStart(anchor, tag) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(depth_error(start_span));
                }
                self.stack.push(Frame::Map(MapFrame {
                    anchor,
                    tag,
                    start: start_span,
                    own: Vec::new(),
                    seen: KeyIndex::default(),
                    merged: Vec::new(),
                    key: None,
                    size: 1,
                    height: 1,
                }));
                return Ok(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(vec![YamlError {
                        message: "unexpected end of a collection".into(),
                        span: start_span,
                    }]);
                };
                self.finish(frame, start_span.end)
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {
                return Err(vec![YamlError {
                    message: "expected a value".into(),
                    span: start_span,
                }]);
            }
        };
        self.deliver(built, is_merge)
    }

    /// Hands a finished node to the innermost open collection (or returns it as
    /// the root).
    fn deliver(&mut self, built: Built, is_merge: bool) -> Result<Option<Node>, Vec<YamlError>> {
        match self.stack.last_mut() {
            None => Ok(Some(built.node)),
            Some(Frame::Seq(f)) => {
                f.size += built.size;
                f.height = f.height.max(built.height + 1);
                f.items.push(built.node);
                Ok(None)
            }
            Some(Frame::Map(f)) => {
                f.size += built.size;
                f.height = f.height.max(built.height + 1);
                let Some((key, key_is_merge)) = f.key.take() else {
                    f.key = Some((built.node, is_merge));
                    return Ok(None);
                };
                let value = built.node;
                if key_is_merge {
                    merge_into(&mut f.merged, &value)?;
                    return Ok(None);
                }
                if let Some(first) = f.seen.find(&f.own, &key) {
                    let first = &f.own[first].0;
                    self.errors.push(YamlError {
                        message: format!(
                            "found duplicate key {} (first defined at line {}, column {})",
                            describe_key(&key.value),
                            first.span.start.line,
                            first.span.start.column
                        ),
                        span: key.span,
                    });
                    return Ok(None);
                }
                f.own.push((key, value));
                Ok(None)
            }
        }
    }

    /// Closes a collection whose end event was read (`end` is where that event ends).
    fn finish(&mut self, frame: Frame<'a>, end: Pos) -> Built {
        match frame {
            Frame::Seq(mut f) => {
                f.items.shrink_to_fit();
                let node = self.collection(f.tag, "seq", Value::Seq(f.items), f.start, end);
                self.remember(f.anchor, &node, f.size, f.height);
                Built {
                    node,
                    size: f.size,
                    height: f.height,
                }
            }
            Frame::Map(mut f) => {
                for (k, v) in f.merged {
                    if f.seen.find(&f.own, &k).is_none() {
                        f.own.push((k, v));
                    }
                }
                f.own.shrink_to_fit();
                let node = self.collection(f.tag, "map", Value::Map(f.own), f.start, end);
                self.remember(f.anchor, &node, f.size, f.height);
                Built {
                    node,
                    size: f.size,
                    height: f.height,
                }
            }
        }
    }

    /// Finishes a sequence or mapping: an unresolved tag makes it a tagged
    /// value, and the span runs to its end.
    fn collection(
        &self,
        tag: Option<std::borrow::Cow<'_, saphyr_parser::Tag>>,
        kind: &str,
        value: Value,
        start_span: Span,
        end: Pos,
    ) -> Node {
        let value = match tag {
            Some(t) if !is_core_tag(&t.handle, &t.suffix, kind) => {
                Value::Tagged(format!("{}{}", t.handle, t.suffix))
            }
            _ => value,
        };
        Node {
            value,
            span: Span {
                start: start_span.start,
                end: end.max_by_offset(start_span.end),
            },
        }
    }
}

/// Applies a merge key's value (`<<: *a` or `<<: [*a, *b]`): keys not already
/// merged are added, earlier sources winning.
fn merge_into(merged: &mut Vec<(Node, Node)>, value: &Node) -> Result<(), Vec<YamlError>> {
    let sources: Vec<&Node> = match &value.value {
        Value::Map(_) => vec![value],
        Value::Seq(items) => items.iter().collect(),
        _ => {
            return Err(vec![YamlError {
                message: "a merge key (`<<`) needs a mapping or a list of mappings".into(),
                span: value.span,
            }]);
        }
    };
    for source in sources {
        let Value::Map(entries) = &source.value else {
            return Err(vec![YamlError {
                message: "a merge key (`<<`) needs a mapping or a list of mappings".into(),
                span: source.span,
            }]);
        };
        for (k, v) in entries {
            if !merged.iter().any(|(mk, _)| same_key(mk, k)) {
                merged.push((k.clone(), v.clone()));
            }
        }
    }
    Ok(())
}

trait MaxByOffset {
    fn max_by_offset(self, other: Self) -> Self;
}

impl MaxByOffset for Pos {
    fn max_by_offset(self, other: Pos) -> Pos {
        if self.offset >= other.offset {
            self
        } else {
            other
        }
    }
}

fn is_core_tag(handle: &str, suffix: &str, kind: &str) -> bool {
    (handle == "!!" || handle == "tag:yaml.org,2002:") && suffix == kind
}

fn describe_key(v: &Value) -> String {
    match v.python_str() {
        Some(s) => format!("\"{s}\""),
        None => format!("(a {})", v.type_name()),
    }
}

/// Resolves a scalar to a value, as ruamel's YAML 1.2 resolver and constructor do.
/// The text is taken by value so that a string keeps the parser's buffer when it
/// has one.
fn resolve_scalar(cow: std::borrow::Cow<'_, str>, style: ScalarStyle, tag: Option<&str>) -> Value {
    if style != ScalarStyle::Plain && tag.is_none() {
        return Value::Str(cow.into_owned());
    }
    let text: &str = &cow;
    if let Some(tag) = tag {
        let suffix = tag
            .strip_prefix("!!")
            .or_else(|| tag.strip_prefix("tag:yaml.org,2002:"));
        return match suffix {
            Some("str") => Value::Str(text.to_string()),
            Some("null") => Value::Null,
            Some("bool") => match text {
                "true" | "True" | "TRUE" => Value::Bool(true),
                "false" | "False" | "FALSE" => Value::Bool(false),
                _ => Value::Tagged(tag.to_string()),
            },
            Some("int") => parse_int(text).unwrap_or_else(|| Value::Tagged(tag.to_string())),
            Some("float") => parse_float(text)
                .or_else(|| parse_int(text).map(int_to_float))
                .unwrap_or_else(|| Value::Tagged(tag.to_string())),
            Some("timestamp") => Value::Timestamp(text.to_string()),
            // A non-specific tag (`!`) on a quoted scalar means string.
            None if tag == "!" => Value::Str(text.to_string()),
            _ => Value::Tagged(tag.to_string()),
        };
    }
    if style != ScalarStyle::Plain {
        return Value::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if b"-+0123456789".contains(&first)
        && let Some(v) = parse_int(text)
    {
        return v;
    }
    if b"-+0123456789.".contains(&first)
        && let Some(v) = parse_float(text)
    {
        return v;
    }
    if first.is_ascii_digit() && is_timestamp(text) {
        return Value::Timestamp(text.to_string());
    }
    Value::Str(cow.into_owned())
}

fn int_to_float(v: Value) -> Value {
    match v {
        Value::Int(i) => Value::Float(i as f64),
        Value::BigInt(s) => Value::Float(s.parse().unwrap_or(f64::INFINITY)),
        other => other,
    }
}

/// The YAML 1.2 int forms: `0b…`, `0o…` or `0…` (decimal in 1.2), decimal, `0x…`;
/// underscores allowed.
fn parse_int(text: &str) -> Option<Value> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(rest) = body.strip_prefix("0b") {
        (2, rest)
    } else if let Some(rest) = body.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = body.strip_prefix("0o") {
        (8, rest)
    } else {
        (10, body)
    };
    let valid = |c: char| c == '_' || c.is_digit(radix);
    if digits.is_empty() || !digits.chars().all(valid) {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    match i64::from_str_radix(&clean, radix) {
        Ok(v) => Some(Value::Int(if negative { -v } else { v })),
        Err(_) if radix == 10 => {
            let trimmed = clean.trim_start_matches('0');
            Some(Value::BigInt(format!(
                "{}{}",
                if negative { "-" } else { "" },
                trimmed
            )))
        }
        Err(_) => Some(Value::BigInt(format!(
            "{}{}",
            if negative { "-" } else { "" },
            clean
        ))),
    }
}

/// The YAML 1.2 float forms of ruamel's resolver: a dot or an exponent is required.
fn parse_float(text: &str) -> Option<Value> {
    let b = text.as_bytes();
    let (sign, rest) = match b.first()? {
        b'-' => (-1.0, &text[1..]),
        b'+' => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    match rest {
        ".inf" | ".Inf" | ".INF" => return Some(Value::Float(sign * f64::INFINITY)),
        ".nan" | ".NaN" | ".NAN" if rest.len() == text.len() => {
            return Some(Value::Float(f64::NAN));
        }
        _ => {}
    }
    let rb = rest.as_bytes();
    if rb.is_empty() {
        return None;
    }
    let ok = if rb[0].is_ascii_digit() {
        // [0-9][0-9_]* ( \.[0-9_]* )? ([eE][-+]?[0-9]+)?  with a dot or an exponent
        let mut i = 1;
        while i < rb.len() && (rb[i].is_ascii_digit() || rb[i] == b'_') {
            i += 1;
        }
        let mut dot = false;
        if i < rb.len() && rb[i] == b'.' {
            dot = true;
            i += 1;
            while i < rb.len() && (rb[i].is_ascii_digit() || rb[i] == b'_') {
                i += 1;
            }
        }
        let mut exp = false;
        if i < rb.len() && (rb[i] == b'e' || rb[i] == b'E') {
            let mut j = i + 1;
            if j < rb.len() && (rb[j] == b'+' || rb[j] == b'-') {
                j += 1;
            }
            let digits_start = j;
            while j < rb.len() && rb[j].is_ascii_digit() {
                j += 1;
            }
            if j > digits_start {
                exp = true;
                i = j;
            } else {
                return None;
            }
        }
        i == rb.len() && (dot || exp)
    } else if rb[0] == b'.' && sign > 0.0 && rest.len() == text.len() {
        // \.[0-9_]+ ([eE][-+][0-9]+)?
        let mut i = 1;
        while i < rb.len() && (rb[i].is_ascii_digit() || rb[i] == b'_') {
            i += 1;
        }
        if i == 1 {
            return None;
        }
        if i < rb.len() && (rb[i] == b'e' || rb[i] == b'E') {
            let mut j = i + 1;
            if j < rb.len() && (rb[j] == b'+' || rb[j] == b'-') {
                j += 1;
            } else {
                return None;
            }
            let ds = j;
            while j < rb.len() && rb[j].is_ascii_digit() {
                j += 1;
            }
            if j == ds {
                return None;
            }
            i = j;
        }
        i == rb.len()
    } else {
        false
    };
    if !ok {
        return None;
    }
    let clean: String = rest.chars().filter(|c| *c != '_').collect();
    let clean = if clean.ends_with('.') {
        format!("{clean}0")
    } else {
        clean
    };
    let clean = clean.replace(".e", ".0e").replace(".E", ".0E");
    clean.parse::<f64>().ok().map(|f| Value::Float(sign * f))
}

/// The YAML timestamp form: `YYYY-MM-DD`, or a date and time.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if b.len() == 10
        && digits(&b[0..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
    {
        return true;
    }
    // Date with one- or two-digit month/day followed by a time.
    let Some(sep) = text.find(['T', 't', ' ', '\t']) else {
        return false;
    };
    let (date, time) = text.split_at(sep);
    let parts: Vec<&str> = date.split('-').collect();
    if parts.len() != 3
        || parts[0].len() != 4
        || !parts.iter().all(|p| digits(p.as_bytes()))
        || parts[1].len() > 2
        || parts[2].len() > 2
    {
        return false;
    }
    let time = time.trim_start_matches(['T', 't', ' ', '\t']);
    let hms: Vec<&str> = time.splitn(3, ':').collect();
    if hms.len() != 3 || hms[0].is_empty() || hms[0].len() > 2 || !digits(hms[0].as_bytes()) {
        return false;
    }
    if hms[1].len() != 2 || !digits(hms[1].as_bytes()) {
        return false;
    }
    let rest = hms[2];
    if rest.len() < 2 || !digits(&rest.as_bytes()[..2]) {
        return false;
    }
    let mut tail = &rest[2..];
    if let Some(frac) = tail.strip_prefix('.') {
        tail = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let tail = tail.trim_start_matches([' ', '\t']);
    if tail.is_empty() || tail == "Z" {
        return true;
    }
    let Some(tz) = tail.strip_prefix(['+', '-']) else {
        return false;
    };
    let (h, m) = tz.split_once(':').unwrap_or((tz, "00"));
    !h.is_empty() && h.len() <= 2 && digits(h.as_bytes()) && m.len() == 2 && digits(m.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(s: &str) -> Value {
        let node = parse(&format!("k: {s}\n")).unwrap().unwrap();
        node.get("k").unwrap().value.clone()
    }

    #[test]
    fn resolves_the_yaml_1_2_core_schema() {
        assert_eq!(scalar("yes"), Value::Str("yes".into()));
        assert_eq!(scalar("no"), Value::Str("no".into()));
        assert_eq!(scalar("on"), Value::Str("on".into()));
        assert_eq!(scalar("true"), Value::Bool(true));
        assert_eq!(scalar("FALSE"), Value::Bool(false));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert_eq!(scalar("017"), Value::Int(17));
        assert_eq!(scalar("0o17"), Value::Int(15));
        assert_eq!(scalar("0x1F"), Value::Int(31));
        assert_eq!(scalar("1_000"), Value::Int(1000));
        assert_eq!(scalar("3.0"), Value::Float(3.0));
        assert_eq!(scalar("1e3"), Value::Float(1000.0));
        assert_eq!(scalar("1."), Value::Float(1.0));
        assert_eq!(scalar(".5"), Value::Float(0.5));
        assert_eq!(scalar("-.inf"), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(scalar(".nan"), Value::Float(f) if f.is_nan()));
        assert_eq!(scalar("'3.0'"), Value::Str("3.0".into()));
        assert_eq!(scalar("2020-01-01"), Value::Timestamp("2020-01-01".into()));
        assert_eq!(scalar("2020-1-1"), Value::Str("2020-1-1".into()));
        assert_eq!(scalar("!!str 12"), Value::Str("12".into()));
        assert_eq!(scalar("!foo 4"), Value::Tagged("!foo".into()));
        assert_eq!(scalar("a b"), Value::Str("a b".into()));
        assert_eq!(
            scalar("123456789012345678901234567890123456789012345"),
            Value::BigInt("123456789012345678901234567890123456789012345".into())
        );
    }

    #[test]
    fn spans_are_one_based() {
        let node = parse("a:\n  b: c\n").unwrap().unwrap();
        let (k, v) = node.get("a").unwrap().get_entry("b").unwrap();
        assert_eq!((k.span.start.line, k.span.start.column), (2, 3));
        assert_eq!((v.span.start.line, v.span.start.column), (2, 6));
        assert_eq!(v.span.start.offset, 8);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let errs = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(
            errs[0].message,
            "found duplicate key \"a\" (first defined at line 1, column 1)"
        );
        assert_eq!(errs[0].span.start.line, 3);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let node = parse("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
            .unwrap()
            .unwrap();
        let used = node.get("use").unwrap();
        let keys: Vec<_> = used
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.value.clone())
            .collect();
        assert_eq!(keys, vec![Value::Str("y".into()), Value::Str("x".into())]);
        assert_eq!(used.get("y").unwrap().value, Value::Int(3));
    }

    #[test]
    fn one_document_only() {
        let errs = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(errs[0].message.contains("single document"));
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            doc.push_str(&format!(
                "a{i}: &a{i} [{p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}]\n",
                p = prev
            ));
        }
        let errs = parse(&doc).unwrap_err();
        assert!(errs[0].message.contains("alias"));
    }
}
