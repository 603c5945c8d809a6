//! Every file of `tests/spec_invalid/` holds one mistake and is named after the line it must
//! be reported on (`bad-capability.L7.yml`): `spec::load` must reject it with diagnostics on
//! that line only. The messages themselves are snapshotted; `tests/spec_mixed/` holds files
//! with several problems whose complete diagnostic lists are snapshotted.

use crate::common;

use std::path::{Path, PathBuf};

use common::yml_files;
use imagesmith::spec::{self, Input};

fn dir(name: &str) -> PathBuf {
    common::repo().join("tests").join(name)
}

/// The diagnostics of loading `path`, with the directory part of file names removed.
fn problems(path: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let d = spec::load_text(&[(name, &std::fs::read_to_string(path).unwrap())])
        .err()
        .unwrap_or_else(|| panic!("{name} was accepted"));
    d.0.iter().map(ToString::to_string).collect()
}

#[test]
fn each_invalid_file_is_rejected_on_the_line_in_its_name() {
    let files = yml_files(&dir("spec_invalid"));
    assert!(files.len() >= 30, "only {} invalid files", files.len());
    let mut report = String::new();
    let mut wrong = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let line: u32 = name
            .split('.')
            .find_map(|s| s.strip_prefix('L'))
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no `.L<line>.` in the name"));
        let d = spec::load(&[Input::Path(f.clone())])
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        let lines: Vec<u32> =
            d.0.iter()
                .map(|d| d.pos.as_ref().map_or(0, |p| p.line))
                .collect();
        if lines.is_empty() || lines.iter().any(|l| *l != line) {
            wrong.push(format!("{name}: expected line {line}, got:\n{d}"));
        }
        for p in problems(f) {
            report.push_str(&p);
            report.push('\n');
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    insta::assert_snapshot!("invalid_files", report);
}

#[test]
fn mixed_problems_are_all_reported() {
    let files = yml_files(&dir("spec_mixed"));
    assert!(!files.is_empty());
    for f in &files {
        let name = f.file_stem().unwrap().to_str().unwrap().to_string();
        insta::assert_snapshot!(name, problems(f).join("\n"));
    }
}
