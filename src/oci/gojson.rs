//! A `serde_json` formatter that reproduces Go's `json.MarshalIndent(v, "", "    ")`:
//! 4-space indent, `<`, `>`, `&`, U+2028 and U+2029 escaped, no trailing newline, empty
//! arrays and objects written `[]` and `{}`.
//!
//! Everything else already matches Go (Go 1.22 and later): `"` and `\` escaped with a
//! backslash, `\b`, `\f`, `\n`, `\r`, `\t` short forms, other control characters as
//! `\u00xx` in lower-case hex, DEL and all other characters written as they are. Map keys
//! go through the same escaping; their order is the caller's (use `BTreeMap`, which sorts
//! by bytes as Go does).

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// A [`PrettyFormatter`] with a 4-space indent and Go's HTML-safe string escaping.
struct GoFormatter<'a> {
    pretty: PrettyFormatter<'a>,
}

impl GoFormatter<'_> {
    fn new() -> Self {
        GoFormatter {
            pretty: PrettyFormatter::with_indent(b"    "),
        }
    }
}

/// The escape Go writes for a character it escapes beyond JSON's own, if any.
fn go_escape(c: char) -> Option<&'static [u8]> {
    match c {
        '<' => Some(b"\\u003c"),
        '>' => Some(b"\\u003e"),
        '&' => Some(b"\\u0026"),
        '\u{2028}' => Some(b"\\u2028"),
        '\u{2029}' => Some(b"\\u2029"),
        _ => None,
    }
}

impl Formatter for GoFormatter<'_> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if let Some(esc) = go_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                writer.write_all(esc)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

/// Serialises `v` as Go would, or the serialiser's error (a map with non-string keys, or a
/// `Serialize` implementation that fails).
pub fn try_to_vec<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter::new());
    v.serialize(&mut ser)?;
    Ok(out)
}

/// Serialises `v` as Go would.
///
/// Meant for values whose serialisation cannot fail: structs, strings, numbers, `Vec`s and
/// maps keyed by strings, as every type of the `types` module and
/// `RuntimeJson` (the bundle module). Should it fail anyway, the error is logged and the result is
/// empty (never valid JSON, so never mistaken for a good file); use [`try_to_vec`] to see
/// the error.
pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    match try_to_vec(v) {
        Ok(out) => out,
        Err(e) => {
            log::error!("encoding JSON: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    fn go(v: &impl Serialize) -> String {
        String::from_utf8_lossy(&to_vec(v)).into_owned()
    }

    // Each expected string is what Go's json.MarshalIndent(v, "", "    ") writes for the
    // corresponding Go value.

    #[test]
    fn scalars() {
        assert_eq!(go(&"plain"), r#""plain""#);
        assert_eq!(go(&0u32), "0");
        assert_eq!(go(&-500i64), "-500");
        assert_eq!(go(&u64::MAX), "18446744073709551615");
        assert_eq!(go(&true), "true");
    }

    #[test]
    fn html_and_line_separators_are_escaped() {
        // Go: json.MarshalIndent("a<b>&c\u2028d\u2029e", "", "    ")
        assert_eq!(
            go(&"a<b>&c\u{2028}d\u{2029}e"),
            r#""a\u003cb\u003e\u0026c\u2028d\u2029e""#
        );
        assert_eq!(go(&"<<>>"), r#""\u003c\u003c\u003e\u003e""#);
        assert_eq!(go(&"é ü 日本 \u{7f}"), "\"é ü 日本 \u{7f}\"");
    }

    #[test]
    fn control_characters() {
        // Go 1.22+: "\"\\\b\f\n\r\t\x00\x1f"
        assert_eq!(
            go(&"\"\\\u{8}\u{c}\n\r\t\u{0}\u{1f}"),
            r#""\"\\\b\f\n\r\t\u0000\u001f""#
        );
    }

    #[test]
    fn empty_containers_and_nesting() {
        #[derive(Serialize)]
        struct S {
            a: Vec<u8>,
            b: BTreeMap<String, u8>,
            c: Vec<Vec<u8>>,
            d: BTreeMap<String, Vec<String>>,
        }
        let mut d = BTreeMap::new();
        d.insert("k&".to_string(), vec!["x".to_string(), "y".to_string()]);
        d.insert("a".to_string(), vec![]);
        let s = S {
            a: vec![],
            b: BTreeMap::new(),
            c: vec![vec![], vec![1, 2]],
            d,
        };
        let want = "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n        [],\n        [\n            1,\n            2\n        ]\n    ],\n    \"d\": {\n        \"a\": [],\n        \"k\\u0026\": [\n            \"x\",\n            \"y\"\n        ]\n    }\n}";
        assert_eq!(go(&s), want);
    }

    #[test]
    fn top_level_empty_values_have_no_newline() {
        assert_eq!(go(&Vec::<u8>::new()), "[]");
        assert_eq!(go(&BTreeMap::<String, u8>::new()), "{}");
    }

    #[test]
    fn non_string_keys_are_an_error_not_a_panic() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1u8);
        assert!(try_to_vec(&m).is_err());
        assert!(to_vec(&m).is_empty());
    }
}
