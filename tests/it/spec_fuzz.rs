//! Property test: mutated YAML (byte flips, truncation, inserted characters, deep nesting,
//! alias chains) never makes `spec::load` or `spec::parse_label` panic; every diagnostic has
//! a message and a position inside the text; whatever loads writes back out to YAML that
//! loads again to the same document.

use crate::common;

use imagesmith::spec;
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    let mut out = Vec::new();
    for rel in [
        "../shared/golden/specs/01-layouts.yml",
        "../shared/golden/specs/02-label.yml",
        "../shared/golden/specs/03-fields.yml",
        "../shared/golden/specs/04-kernel-files.yml",
        "../shared/linuxkit-corpus/valid/examples/volumes.yml",
        "../shared/linuxkit-corpus/valid/linuxkit.yml",
        "tests/spec_mixed/mixed-entries.yml",
        "tests/spec_mixed/mixed-resources.yml",
    ] {
        let file = match rel.strip_prefix("../shared/") {
            Some(r) => common::shared_dir().join(r),
            None => common::repo().join(rel),
        };
        out.push(std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{rel}: {e}")));
    }
    out.push(
        r#"{"capabilities": ["all"], "binds": ["/a:/b"], "runtime": {"mkdir": ["/x"]}}"#
            .to_string(),
    );
    out.push("a: &a {b: *a}\n".to_string());
    out.push("x: &x [1]\ny: {<<: *x}\nz: {<<: [*x, {q: 1}]}\n".to_string());
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, String),
    Delete(usize, usize),
    Nest(usize, usize, u8),
}

const SIGNIFICANT: &[&str] = &[
    ":", "-", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!", "!!str ", "|", ">", "'", "\"", "#",
    "%", "@", "`", "\n", "\t", " ", "  ", "---\n", "...\n", "<<: ", "~", "\u{feff}", "\u{0}", "\\",
    "0x", "ü", "\r\n",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::sample::select(SIGNIFICANT))
            .prop_map(|(p, s)| Mutation::Insert(p, s.to_string())),
        (any::<usize>(), 0usize..40).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 1usize..400, 0u8..4).prop_map(|(p, n, k)| Mutation::Nest(p, n, k)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut b = text.as_bytes().to_vec();
    for m in muts {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, x) if !b.is_empty() => {
                let i = p % b.len();
                b[i] ^= x;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(p) => b.truncate(at(*p, b.len())),
            Mutation::Insert(p, s) => {
                let i = at(*p, b.len());
                b.splice(i..i, s.bytes());
            }
            Mutation::Delete(p, n) => {
                let i = at(*p, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Mutation::Nest(p, n, kind) => {
                let deep = match kind {
                    0 => format!("{}{}", "[".repeat(*n), "]".repeat(*n)),
                    1 => format!("{}x{}", "{a: ".repeat(*n), "}".repeat(*n)),
                    2 => (0..*n)
                        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
                        .collect(),
                    _ => (0..*n)
                        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                        .collect(),
                };
                let i = at(*p, b.len());
                b.splice(i..i, deep.bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let lines = u32::try_from(text.lines().count())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    match spec::load_text(&[("m.yml", text)]) {
        Err(d) => {
            prop_assert!(!d.0.is_empty());
            for d in &d.0 {
                prop_assert!(!d.message.is_empty());
                let p = d.pos.as_ref().expect("a position");
                prop_assert!(
                    p.line >= 1 && p.line <= lines,
                    "{} (text has {} lines)",
                    d,
                    lines
                );
                prop_assert!(p.column >= 1);
            }
        }
        Ok(l) => {
            let yaml = spec::to_yaml(&l.spec);
            let again = spec::load_text(&[("again.yml", &yaml)]);
            prop_assert!(
                again.is_ok(),
                "re-reading the output failed: {:?}\n{}",
                again.err(),
                yaml
            );
            if let Ok(again) = again {
                prop_assert_eq!(spec::to_yaml(&again.spec), yaml);
            }
        }
    }
    if let Err(d) = spec::parse_label("img:1", text) {
        prop_assert!(
            d.0.iter()
                .all(|d| d.to_string().starts_with("label of image `img:1`:"))
        );
    }
    Ok(())
}

proptest! {
    // 1000 cases by default; `PROPTEST_CASES=N` runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_yaml_never_panics(seed in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..6)) {
        let seeds = seeds();
        let text = apply(&seeds[seed.index(seeds.len())], &muts);
        check(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text)?;
    }
}

#[test]
fn seeds_hold_their_ground() {
    // The unmutated seeds go through the same checks (and most of them load).
    let mut loaded = 0;
    for s in seeds() {
        check(&s).unwrap();
        loaded += usize::from(spec::load_text(&[("s.yml", &s)]).is_ok());
    }
    assert!(loaded >= 6, "only {loaded} seeds load");
}
