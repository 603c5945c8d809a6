//! The readers of the schema pass: typed values out of YAML nodes ([`Cx`]'s methods), with
//! every problem recorded at its position; unknown keys with a "did you mean".

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::spec::Diagnostic;
use crate::spec::model::{Id, ImageRef, Pos};
use crate::spec::reference::Reference;
use crate::spec::rules;
use crate::spec::yaml::{Node, ScalarKind, Value};

use super::draft::*;

impl Cx {
    pub fn new(file: Arc<str>) -> Cx {
        Cx {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn pos(&self, n: &Node) -> Pos {
        Pos {
            file: self.file.clone(),
            line: n.line,
            column: n.col,
        }
    }

    pub(super) fn error(&mut self, n: &Node, p: &P<'_>, msg: impl fmt::Display) {
        let d = self.diagnostic(n, p, msg);
        self.errors.push(d);
    }

    pub(super) fn warn(&mut self, n: &Node, p: &P<'_>, msg: impl fmt::Display) {
        let d = self.diagnostic(n, p, msg);
        self.warnings.push(d);
    }

    pub(super) fn diagnostic(&self, n: &Node, p: &P<'_>, msg: impl fmt::Display) -> Diagnostic {
        let message = match p {
            P::Root => msg.to_string(),
            _ => format!("`{p}`: {msg}"),
        };
        Diagnostic {
            pos: Some(self.pos(n)),
            message,
        }
    }

    pub(super) fn type_error(&mut self, n: &Node, p: &P<'_>, expected: &str) {
        let hint = match &n.value {
            Value::Scalar(s) if expected.contains("string") && s.kind != ScalarKind::Null => {
                "; quote it"
            }
            _ => "",
        };
        let found = n.describe();
        self.error(
            n,
            p,
            format_args!("expected {expected}, found {found}{hint}"),
        );
    }

    /// Checks that `n` is a map with only `keys` (and `aliases` of them), each once.
    pub(super) fn fields<'n>(
        &mut self,
        n: &'n Node,
        p: &P<'_>,
        keys: &[&'static str],
        aliases: &[(&str, &'static str)],
    ) -> Option<Fields<'n>> {
        let Value::Map(map) = &n.value else {
            self.type_error(n, p, "a map");
            return None;
        };
        let mut entries: Vec<(&'static str, &'n Node, &'n Node)> = Vec::with_capacity(map.len());
        let mut clean = true;
        for (k, v) in map {
            let Some(text) = k.scalar().map(|s| s.text.as_str()) else {
                self.error(k, p, "a key must be a plain string, not a list or a map");
                clean = false;
                continue;
            };
            let canonical = keys
                .iter()
                .copied()
                .find(|c| *c == text)
                .or_else(|| aliases.iter().find(|(a, _)| *a == text).map(|(_, c)| *c));
            let Some(canonical) = canonical else {
                let msg = unknown_key(text, keys);
                self.error(k, p, msg);
                clean = false;
                continue;
            };
            if let Some((_, first, _)) = entries.iter().find(|(c, _, _)| *c == canonical) {
                let (line, first_text) = (
                    first.line,
                    first.scalar().map(|s| s.text.clone()).unwrap_or_default(),
                );
                let also = if first_text == text {
                    String::new()
                } else {
                    format!(" (as `{first_text}`)")
                };
                self.error(
                    k,
                    p,
                    format_args!("duplicate key `{text}`: already set{also} on line {line}"),
                );
                continue;
            }
            entries.push((canonical, k, v));
        }
        Some(Fields {
            node: n,
            entries,
            clean,
        })
    }

    pub(super) fn string(&mut self, n: &Node, p: &P<'_>) -> Option<String> {
        match n.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.type_error(n, p, "a string");
                None
            }
        }
    }

    pub(super) fn bool(&mut self, n: &Node, p: &P<'_>) -> Option<bool> {
        match n.scalar().map(|s| s.kind) {
            Some(ScalarKind::Bool(b)) => Some(b),
            _ => {
                self.type_error(n, p, "`true` or `false`");
                None
            }
        }
    }

    /// An integer in `min..=max` (an integral float counts, as in JSON schema).
    pub(super) fn int(&mut self, n: &Node, p: &P<'_>, min: i128, max: i128) -> Option<i128> {
        let v = match n.scalar().map(|s| s.kind) {
            Some(ScalarKind::Int(i)) => i,
            Some(ScalarKind::Float(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19 => {
                f as i128
            }
            _ => {
                self.type_error(n, p, "an integer");
                return None;
            }
        };
        if v < min || v > max {
            self.error(n, p, format_args!("{v} is out of range ({min} … {max})"));
            return None;
        }
        Some(v)
    }

    pub(super) fn i64(&mut self, n: &Node, p: &P<'_>) -> Option<i64> {
        self.int(n, p, i64::MIN.into(), i64::MAX.into())
            .and_then(|v| i64::try_from(v).ok())
    }
    pub(super) fn u64(&mut self, n: &Node, p: &P<'_>) -> Option<u64> {
        self.int(n, p, 0, u64::MAX.into())
            .and_then(|v| u64::try_from(v).ok())
    }
    pub(super) fn u32(&mut self, n: &Node, p: &P<'_>) -> Option<u32> {
        self.int(n, p, 0, u32::MAX.into())
            .and_then(|v| u32::try_from(v).ok())
    }
    pub(super) fn u16(&mut self, n: &Node, p: &P<'_>) -> Option<u16> {
        self.int(n, p, 0, u16::MAX.into())
            .and_then(|v| u16::try_from(v).ok())
    }

    pub(super) fn list<'n>(&mut self, n: &'n Node, p: &P<'_>) -> Option<&'n [Node]> {
        match &n.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.type_error(n, p, "a list");
                None
            }
        }
    }

    /// The items of the list under `key` (if present), each converted by `conv` at its own
    /// path; items `conv` rejects are left out (their problems are reported).
    pub(super) fn each<T>(
        &mut self,
        f: &Fields<'_>,
        p: &P<'_>,
        key: &'static str,
        mut conv: impl FnMut(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Vec<T> {
        let Some(n) = f.get(key) else {
            return Vec::new();
        };
        let lp = p.key(key);
        let Some(items) = self.list(n, &lp) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| conv(self, item, &lp.at(i)))
            .collect()
    }

    /// A list, each item converted by `f`; `None` if any item (or the list) is wrong.
    pub(super) fn list_of<T>(
        &mut self,
        n: &Node,
        p: &P<'_>,
        mut f: impl FnMut(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.list(n, p)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match f(self, item, &p.at(i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A list of strings, each checked by `rule`.
    pub(super) fn strings_with(
        &mut self,
        n: &Node,
        p: &P<'_>,
        rule: fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        self.list_of(n, p, |cx, item, ip| checked_string(cx, item, ip, rule))
    }

    pub(super) fn strings(&mut self, n: &Node, p: &P<'_>) -> Option<Vec<String>> {
        self.strings_with(n, p, |_| Ok(()))
    }

    /// A map of strings to strings (`sysctl`, `annotations`, `unified`).
    pub(super) fn string_map(&mut self, n: &Node, p: &P<'_>) -> Option<BTreeMap<String, String>> {
        self.map_of(n, p, |cx, v, vp| cx.string(v, vp))
    }

    pub(super) fn map_of<T>(
        &mut self,
        n: &Node,
        p: &P<'_>,
        mut f: impl FnMut(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Option<BTreeMap<String, T>> {
        let Value::Map(map) = &n.value else {
            self.type_error(n, p, "a map");
            return None;
        };
        let mut out = BTreeMap::new();
        let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                self.type_error(k, p, "a string key");
                ok = false;
                continue;
            };
            if let Some(line) = lines.get(key) {
                self.error(
                    k,
                    p,
                    format_args!("duplicate key `{key}`: already set on line {line}"),
                );
                ok = false;
                continue;
            }
            lines.insert(key, k.line);
            match f(self, v, &p.key(key)) {
                Some(v) => {
                    out.insert(key.to_string(), v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn reference(&mut self, n: &Node, p: &P<'_>) -> Option<ImageRef> {
        let s = self.string(n, p)?;
        match Reference::parse(&s) {
            Ok(reference) => Some(ImageRef {
                original: s,
                reference,
                pos: self.pos(n),
            }),
            Err(e) => {
                self.error(n, p, e);
                None
            }
        }
    }

    pub(super) fn id(&mut self, n: &Node, p: &P<'_>) -> Option<Id> {
        let id = match n.scalar().map(|s| s.kind) {
            Some(ScalarKind::Int(i)) => match u64::try_from(i) {
                Ok(v) => Id::Num(v),
                Err(_) => {
                    self.error(n, p, format_args!("id {i} is negative"));
                    return None;
                }
            },
            Some(ScalarKind::Str) => Id::Name(n.as_str().unwrap_or_default().to_string()),
            _ => {
                self.type_error(n, p, "a number or a string");
                return None;
            }
        };
        match rules::check_id(&id) {
            Ok(()) => Some(id),
            Err(e) => {
                self.error(n, p, e);
                None
            }
        }
    }

    /// Converts the field `key` of `f` with `conv` when present; a failure clears `ok`.
    pub(super) fn opt<T>(
        &mut self,
        f: &Fields<'_>,
        p: &P<'_>,
        key: &str,
        ok: &mut bool,
        conv: impl FnOnce(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Option<T> {
        let n = f.get(key)?;
        let v = conv(self, n, &p.key(key));
        if v.is_none() {
            *ok = false;
        }
        v
    }
}

pub(super) fn unknown_key(text: &str, keys: &[&str]) -> String {
    match crate::text::closest(text, keys) {
        Some(k) => format!("unknown key `{text}`; did you mean `{k}`?"),
        None if keys.len() <= 10 => format!(
            "unknown key `{text}` (expected one of: {})",
            keys.join(", ")
        ),
        None => format!("unknown key `{text}`"),
    }
}

/// A string, checked by `rule` (its message reported at the value).
pub(super) fn checked_string(
    cx: &mut Cx,
    n: &Node,
    p: &P<'_>,
    rule: impl Fn(&str) -> Result<(), String>,
) -> Option<String> {
    let s = cx.string(n, p)?;
    match rule(&s) {
        Ok(()) => Some(s),
        Err(e) => {
            cx.error(n, p, e);
            None
        }
    }
}

pub(super) fn non_empty(cx: &mut Cx, n: &Node, p: &P<'_>, what: &str) -> Option<String> {
    let s = cx.string(n, p)?;
    if s.is_empty() {
        cx.error(n, p, format_args!("the {what} is empty"));
        return None;
    }
    Some(s)
}
