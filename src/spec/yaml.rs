//! YAML text → a tree that keeps the line and column of every node, built from the events
//! of `granit-parser` (re-exported by `serde-saphyr`). Owns the scalar resolution rules.
//!
//! Plain scalars are resolved as Go's `gopkg.in/yaml.v3` does (the decoder LinuxKit uses),
//! which is the YAML 1.2 core schema plus a few of its compatibility rules:
//! - null: empty, `~`, `null`, `Null`, `NULL`;
//! - booleans: `true`, `True`, `TRUE`, `false`, `False`, `FALSE` only (`yes`, `no`, `on`,
//!   `off` are strings);
//! - integers: decimal, `0x…`, `0o…`, `0b…`, and a leading `0` meaning octal (`0644` is 420,
//!   as in yaml.v3), with an optional sign and `_` separators;
//! - floats: `1.5`, `1e3`, `.5`, `.inf`, `.nan`, … ;
//! - everything else, and every quoted or block scalar, is a string.
//!
//! Tags: `!!str`, `!!int`, `!!bool`, `!!float`, `!!null`, `!!seq`, `!!map` and the
//! non-specific `!` are honoured; any other tag is reported (and ignored).
//!
//! Anchors and aliases work. An alias is expanded into a copy of the anchored node; the
//! copies made for one file may hold at most [`ALIAS_BUDGET`] nodes in all, and no tree may
//! be deeper than [`MAX_DEPTH`], so an "alias bomb" is an error, not an exhausted machine.
//!
//! Merge keys (`<<: *base`, or `<<: [*a, *b]`) are supported as yaml.v3 supports them: the
//! keys of the merged map(s) are added unless the map already has them (earlier maps of a
//! list win). A merged entry keeps the position where it was written.
//!
//! A file holds one YAML document; a second document is an error.

use std::collections::HashMap;
use std::fmt;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, Span, Tag};

/// Deepest nesting of collections accepted (real LinuxKit files use fewer than 10 levels).
pub const MAX_DEPTH: usize = 200;
/// Most nodes that alias expansion may create in one file.
pub const ALIAS_BUDGET: usize = 100_000;

/// A node and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in document order; duplicate keys are kept (the schema pass reports them).
    Map(Vec<(Node, Node)>),
}

/// A scalar: its text (after escapes and folding) and what it resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub kind: ScalarKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
    /// The plain key `<<`; only seen while a map is being built.
    Merge,
}

impl Node {
    fn new(value: Value, line: u32, col: u32) -> Node {
        Node { value, line, col }
    }

    /// A null node (an empty document).
    pub fn null() -> Node {
        Node::new(
            Value::Scalar(Scalar {
                text: String::new(),
                kind: ScalarKind::Null,
            }),
            1,
            1,
        )
    }

    /// The scalar, if this is one.
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a string scalar (quoted, block, or a plain scalar that resolved to a
    /// string).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(Scalar {
                text,
                kind: ScalarKind::Str,
            }) => Some(text),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages ("the number `0644`").
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a map".to_string(),
            Value::Scalar(s) => match s.kind {
                ScalarKind::Null => "nothing (null)".to_string(),
                ScalarKind::Bool(_) => format!("the boolean `{}`", s.text),
                ScalarKind::Int(_) | ScalarKind::Float(_) => format!("the number `{}`", s.text),
                ScalarKind::Str | ScalarKind::Merge => format!("the string `{}`", short(&s.text)),
            },
        }
    }
}

fn short(s: &str) -> String {
    let first_line = s.lines().next().unwrap_or("");
    let mut out: String = first_line.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A YAML syntax error (or a resource limit): parsing cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// A problem that does not stop parsing (an unsupported tag, a bad merge key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Node,
    pub issues: Vec<Issue>,
}

/// Parses one YAML document.
pub fn parse(src: &str) -> Result<Document, SyntaxError> {
    let mut options = Options::default();
    options.set_emit_comments(false);
    let mut b = Builder::default();
    for ev in Parser::new_from_str_with_options(src, options) {
        let (event, span) = ev.map_err(syntax)?;
        b.event(event, span)?;
    }
    Ok(Document {
        root: b.root.unwrap_or_else(Node::null),
        issues: b.issues,
    })
}

fn syntax(e: ScanError) -> SyntaxError {
    let m = e.marker();
    SyntaxError {
        line: clamp(m.line()),
        col: clamp(m.col() + 1),
        message: e.info(),
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct Frame {
    is_map: bool,
    line: u32,
    col: u32,
    anchor: usize,
    items: Vec<Node>,
    /// Nodes in this collection so far, itself included.
    size: usize,
    /// Height of the tallest child.
    height: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize, usize)>,
    root: Option<Node>,
    documents: usize,
    alias_nodes: usize,
    issues: Vec<Issue>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let line = clamp(span.start.line());
        let col = clamp(span.start.col() + 1);
        let fail = |message: String| SyntaxError { line, col, message };
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(fail(
                        "a second YAML document: a file holds one document (remove the `---`)"
                            .to_string(),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let kind = self.scalar_kind(&text, style, tag.as_deref(), line, col);
                let node = Node::new(
                    Value::Scalar(Scalar {
                        text: text.into_owned(),
                        kind,
                    }),
                    line,
                    col,
                );
                self.complete(node, 1, 0, anchor);
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.start(false, anchor, tag.as_deref(), line, col)?;
            }
            Event::MappingStart(_, anchor, tag) => {
                self.start(true, anchor, tag.as_deref(), line, col)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(f) = self.stack.pop() else {
                    return Err(fail("unbalanced collection end".to_string()));
                };
                let (value, size) = if f.is_map {
                    let (entries, extra) = self.finish_map(f.items, f.line, f.col)?;
                    (Value::Map(entries), f.size + extra)
                } else {
                    (Value::Seq(f.items), f.size)
                };
                self.complete(
                    Node::new(value, f.line, f.col),
                    size,
                    f.height + 1,
                    f.anchor,
                );
            }
            Event::Alias(id) => {
                let Some((node, size, height)) = self.anchors.get(&id).cloned() else {
                    return Err(fail("alias to an unknown anchor".to_string()));
                };
                self.charge(size).map_err(fail)?;
                if self.stack.len() + height > MAX_DEPTH {
                    return Err(fail(format!(
                        "this alias nests the document more than {MAX_DEPTH} levels deep"
                    )));
                }
                self.complete(node, size, height, 0);
            }
            Event::UnresolvedAlias(name) => {
                return Err(fail(format!("alias `*{name}` to an unknown anchor")));
            }
            _ => {}
        }
        Ok(())
    }

    fn charge(&mut self, nodes: usize) -> Result<(), String> {
        self.alias_nodes = self.alias_nodes.saturating_add(nodes);
        if self.alias_nodes > ALIAS_BUDGET {
            return Err(format!(
                "aliases expand to more than {ALIAS_BUDGET} nodes (an alias bomb?)"
            ));
        }
        Ok(())
    }

    fn start(
        &mut self,
        is_map: bool,
        anchor: usize,
        tag: Option<&Tag>,
        line: u32,
        col: u32,
    ) -> Result<(), SyntaxError> {
        if let Some(t) = tag {
            let want = if is_map { "map" } else { "seq" };
            if t.core_suffix() != Some(want) && !is_non_specific(t) {
                self.issue(line, col, format!("unsupported tag `{}` here", tag_text(t)));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                line,
                col,
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        self.stack.push(Frame {
            is_map,
            line,
            col,
            anchor,
            items: Vec::new(),
            size: 1,
            height: 0,
        });
        Ok(())
    }

    fn complete(&mut self, node: Node, size: usize, height: usize, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size, height));
        }
        match self.stack.last_mut() {
            Some(f) => {
                f.items.push(node);
                f.size = f.size.saturating_add(size);
                f.height = f.height.max(height);
            }
            None => self.root = Some(node),
        }
    }

    fn issue(&mut self, line: u32, col: u32, message: String) {
        self.issues.push(Issue { line, col, message });
    }

    fn scalar_kind(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        line: u32,
        col: u32,
    ) -> ScalarKind {
        let plain = style == ScalarStyle::Plain;
        let Some(tag) = tag else {
            return if plain {
                resolve_plain(text)
            } else {
                ScalarKind::Str
            };
        };
        if is_non_specific(tag) {
            return ScalarKind::Str;
        }
        let resolved = resolve_plain(text);
        let ok = match tag.core_suffix() {
            Some("str") => return ScalarKind::Str,
            Some("int") => matches!(resolved, ScalarKind::Int(_)),
            Some("bool") => matches!(resolved, ScalarKind::Bool(_)),
            Some("null") => matches!(resolved, ScalarKind::Null),
            Some("float") => {
                if let ScalarKind::Int(i) = resolved {
                    return ScalarKind::Float(i as f64);
                }
                matches!(resolved, ScalarKind::Float(_))
            }
            _ => {
                self.issue(line, col, format!("unsupported tag `{}`", tag_text(tag)));
                return if plain { resolved } else { ScalarKind::Str };
            }
        };
        if !ok {
            self.issue(
                line,
                col,
                format!("`{text}` is not a valid `{}`", tag_text(tag)),
            );
            return ScalarKind::Str;
        }
        if resolved == ScalarKind::Merge {
            ScalarKind::Str
        } else {
            resolved
        }
    }

    /// Pairs up a map's items and applies merge keys. Returns the entries and the number of
    /// nodes the merge copied.
    fn finish_map(
        &mut self,
        items: Vec<Node>,
        line: u32,
        col: u32,
    ) -> Result<(Vec<(Node, Node)>, usize), SyntaxError> {
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        let is_merge =
            |k: &Node| matches!(&k.value, Value::Scalar(s) if s.kind == ScalarKind::Merge);
        if !entries.iter().any(|(k, _)| is_merge(k)) {
            return Ok((entries, 0));
        }
        let mut sources = Vec::new();
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if !is_merge(&k) {
                out.push((k, v));
                continue;
            }
            match v.value {
                Value::Map(m) => sources.push(m),
                Value::Seq(items) => {
                    for item in items {
                        match item.value {
                            Value::Map(m) => sources.push(m),
                            _ => self.issue(
                                item.line,
                                item.col,
                                "`<<` merges maps only; this item is not a map".to_string(),
                            ),
                        }
                    }
                }
                _ => self.issue(
                    v.line,
                    v.col,
                    "the value of `<<` must be a map or a list of maps".to_string(),
                ),
            }
        }
        let mut copied = 0usize;
        for src in sources {
            for (k, v) in src {
                let key = key_text(&k);
                if out.iter().any(|(o, _)| key_text(o) == key) {
                    continue;
                }
                copied = copied.saturating_add(measure(&v));
                out.push((k, v));
            }
        }
        self.charge(copied)
            .map_err(|message| SyntaxError { line, col, message })?;
        Ok((out, copied))
    }
}

fn key_text(n: &Node) -> Option<&str> {
    n.scalar().map(|s| s.text.as_str())
}

/// Number of nodes in a tree (depth is bounded by [`MAX_DEPTH`]).
fn measure(n: &Node) -> usize {
    match &n.value {
        Value::Scalar(_) => 1,
        Value::Seq(items) => items
            .iter()
            .map(measure)
            .fold(1usize, usize::saturating_add),
        Value::Map(e) => e
            .iter()
            .map(|(k, v)| measure(k).saturating_add(measure(v)))
            .fold(1usize, usize::saturating_add),
    }
}

fn is_non_specific(t: &Tag) -> bool {
    (t.handle() == "!" && t.suffix().is_empty()) || (t.handle().is_empty() && t.suffix() == "!")
}

fn tag_text(t: &Tag) -> String {
    format!("{}{}", t.original_handle(), t.suffix())
}

/// Resolves a plain scalar the way yaml.v3 does (see the module documentation).
pub fn resolve_plain(text: &str) -> ScalarKind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarKind::Null,
        "true" | "True" | "TRUE" => return ScalarKind::Bool(true),
        "false" | "False" | "FALSE" => return ScalarKind::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return ScalarKind::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarKind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarKind::Float(f64::NEG_INFINITY),
        "<<" => return ScalarKind::Merge,
        _ => {}
    }
    let first = text.as_bytes().first().copied().unwrap_or(b' ');
    if first.is_ascii_digit() || first == b'+' || first == b'-' {
        let plain: String = text.chars().filter(|&c| c != '_').collect();
        if let Some(i) = parse_go_int(&plain) {
            return ScalarKind::Int(i);
        }
        if is_yaml_float(&plain)
            && let Ok(f) = plain.parse::<f64>()
        {
            return ScalarKind::Float(f);
        }
    } else if first == b'.'
        && is_yaml_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return ScalarKind::Float(f);
    }
    ScalarKind::Str
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint` for large positives.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = rest.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &rest[2..]),
        Some("0o") => (8, &rest[2..]),
        Some("0b") => (2, &rest[2..]),
        _ if rest.len() > 1 && rest.starts_with('0') => (8, &rest[1..]),
        _ => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u128::from_str_radix(digits, radix).ok()?;
    if neg {
        let v = -i128::try_from(mag).ok()?;
        (v >= i128::from(i64::MIN)).then_some(v)
    } else {
        (mag <= u128::from(u64::MAX)).then_some(mag as i128)
    }
}

/// yaml.v3's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> ScalarKind {
        resolve_plain(s)
    }

    #[test]
    fn resolves_like_yaml_v3() {
        for s in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(kind(s), ScalarKind::Null, "{s}");
        }
        assert_eq!(kind("true"), ScalarKind::Bool(true));
        assert_eq!(kind("FALSE"), ScalarKind::Bool(false));
        for s in ["yes", "no", "on", "off", "Yes", "y", "n", "tRue", "nULL"] {
            assert_eq!(kind(s), ScalarKind::Str, "{s}");
        }
        assert_eq!(kind("42"), ScalarKind::Int(42));
        assert_eq!(kind("-7"), ScalarKind::Int(-7));
        assert_eq!(kind("+7"), ScalarKind::Int(7));
        assert_eq!(kind("0644"), ScalarKind::Int(0o644));
        assert_eq!(kind("0o17"), ScalarKind::Int(15));
        assert_eq!(kind("0x1F"), ScalarKind::Int(31));
        assert_eq!(kind("0b101"), ScalarKind::Int(5));
        assert_eq!(kind("1_000"), ScalarKind::Int(1000));
        assert_eq!(
            kind("18446744073709551615"),
            ScalarKind::Int(i128::from(u64::MAX))
        );
        assert_eq!(kind("08"), ScalarKind::Float(8.0));
        assert_eq!(kind("1.5"), ScalarKind::Float(1.5));
        assert_eq!(kind(".5"), ScalarKind::Float(0.5));
        assert_eq!(kind("1e3"), ScalarKind::Float(1000.0));
        assert_eq!(kind(".inf"), ScalarKind::Float(f64::INFINITY));
        assert!(matches!(kind(".nan"), ScalarKind::Float(f) if f.is_nan()));
        for s in [
            "1.2.3",
            "2001-12-14",
            "0x",
            "-",
            "1e",
            "abc",
            "CAP_ALL",
            "1,2,3",
            "/dev/sda",
            "0.0.0.0",
        ] {
            assert_eq!(kind(s), ScalarKind::Str, "{s}");
        }
    }

    #[test]
    fn keeps_positions() {
        let doc = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let Value::Map(m) = &doc.root.value else {
            panic!("not a map")
        };
        assert_eq!((m[1].0.line, m[1].0.col), (2, 1));
        let Value::Seq(s) = &m[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!((s[1].line, s[1].col), (4, 5));
        assert_eq!(s[1].scalar().map(|s| s.kind), Some(ScalarKind::Str));
        assert_eq!(m[0].1.scalar().map(|s| s.kind), Some(ScalarKind::Int(1)));
    }

    #[test]
    fn quoted_and_block_scalars_are_strings() {
        let doc = parse("a: '0644'\nb: \"true\"\nc: |\n  1\n").unwrap();
        let Value::Map(m) = &doc.root.value else {
            panic!("not a map")
        };
        assert!(m.iter().all(|(_, v)| v.as_str().is_some()));
    }

    #[test]
    fn tags() {
        let doc = parse("a: !!str 0644\nb: !!int x\nc: !foo bar\nd: ! 12\n").unwrap();
        let Value::Map(m) = &doc.root.value else {
            panic!("not a map")
        };
        assert_eq!(m[0].1.as_str(), Some("0644"));
        assert_eq!(m[3].1.as_str(), Some("12"));
        assert_eq!(doc.issues.len(), 2);
        assert_eq!(doc.issues[0].line, 2);
        assert_eq!(doc.issues[1].line, 3);
    }

    #[test]
    fn aliases_and_merge_keys() {
        let src = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nlist: &l [a, b]\ncopy: *l\n";
        let doc = parse(src).unwrap();
        let Value::Map(m) = &doc.root.value else {
            panic!("not a map")
        };
        let Value::Map(u) = &m[1].1.value else {
            panic!("not a map")
        };
        let keys: Vec<_> = u
            .iter()
            .map(|(k, v)| (k.as_str().unwrap(), v.scalar().unwrap().text.clone()))
            .collect();
        assert_eq!(keys, vec![("y", "3".to_string()), ("x", "1".to_string())]);
        assert_eq!(m[3].1.value, m[2].1.value);
    }

    #[test]
    fn alias_bomb_is_an_error() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("alias"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let src = format!("{}{}", "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        assert!(parse(&src).is_err());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1 && !e.message.is_empty(), "{e}");
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(
            parse("").unwrap().root.scalar().map(|s| s.kind),
            Some(ScalarKind::Null)
        );
        assert_eq!(
            parse("# just a comment\n")
                .unwrap()
                .root
                .scalar()
                .map(|s| s.kind),
            Some(ScalarKind::Null)
        );
    }
}
