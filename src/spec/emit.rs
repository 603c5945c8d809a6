//! Writing the merged spec back out: YAML for `build --dry-run` and `metadata: yaml`, JSON
//! for `metadata: json`. The document is the model's `Serialize` output (values as written,
//! image references normalised, nothing from image labels).

use crate::spec::model::Spec;

/// The spec as YAML.
pub fn to_yaml(spec: &Spec) -> String {
    match serde_saphyr::to_string(spec) {
        Ok(mut s) => {
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        // The model holds only strings, integers, booleans, lists and string-keyed maps,
        // which always serialise; this arm exists so that nothing can panic.
        Err(e) => format!("# the configuration could not be written as YAML: {e}\n"),
    }
}

/// The spec as JSON (2-space indent, trailing newline).
pub fn to_json(spec: &Spec) -> String {
    match serde_json::to_string_pretty(spec) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::{load_text, to_json, to_yaml};

    const TRICKY: &[&str] = &[
        "0644",
        "yes",
        "no",
        "on",
        "True",
        "null",
        "~",
        "",
        "1.10",
        "1e3",
        "0o17",
        "0x1F",
        ".inf",
        "-",
        "- x",
        "a: b",
        "#x",
        "x #y",
        "'q'",
        "\"d\"",
        "2001-12-14",
        "<<",
        "&a",
        "*a",
        "!t",
        "%x",
        "@x",
        "`x",
        "{a}",
        "[a]",
        " lead",
        "trail ",
        "multi\nline\n",
        "no newline\nat end",
        "tab\tx",
        "ü ñ",
        "\u{1F600}",
        "12:30",
        "1_000",
    ];

    fn roundtrip(src: &str) {
        let first = load_text(&[("a.yml", src)]).unwrap_or_else(|e| panic!("{e}"));
        let out = to_yaml(&first.spec);
        let second = load_text(&[("b.yml", &out)]).unwrap_or_else(|e| panic!("{e}\n---\n{out}"));
        assert_eq!(to_yaml(&second.spec), out);
        assert_eq!(to_json(&second.spec), to_json(&first.spec));
    }

    #[test]
    fn tricky_strings_survive_a_round_trip() {
        let mut src = String::from("files:\n");
        for (i, s) in TRICKY.iter().enumerate() {
            src.push_str(&format!(
                "  - path: f{i}\n    contents: {}\n",
                serde_json::to_string(s).unwrap()
            ));
        }
        src.push_str("services:\n  - name: s\n    image: redis\n    env:\n");
        for s in TRICKY {
            src.push_str(&format!(
                "      - {}\n",
                serde_json::to_string(&format!("K={s}")).unwrap()
            ));
        }
        roundtrip(&src);
        let first = load_text(&[("a.yml", &src)]).unwrap();
        let contents: Vec<_> = first
            .spec
            .files
            .iter()
            .map(|f| f.contents.clone().unwrap())
            .collect();
        assert_eq!(contents, TRICKY);
    }

    #[test]
    fn image_references_are_normalised_and_empty_is_braces() {
        let l = load_text(&[("a.yml", "init: [redis, \"org/x:1\"]\n")]).unwrap();
        assert_eq!(
            to_yaml(&l.spec),
            "init:\n- docker.io/library/redis:latest\n- docker.io/org/x:1\n"
        );
        let l = load_text(&[("a.yml", "")]).unwrap();
        roundtrip(&to_yaml(&l.spec));
        assert_eq!(to_json(&l.spec), "{}\n");
    }
}
