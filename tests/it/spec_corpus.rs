//! The real LinuxKit files of `../shared/linuxkit-corpus/` (read in place): every file of
//! `valid/` validates, the three of `invalid/` are rejected on a line in the range their names
//! give.

use crate::common;

use std::path::{Path, PathBuf};

use common::yml_files;
use imagesmith::spec::{self, Input};

fn corpus() -> PathBuf {
    common::shared_dir().join("linuxkit-corpus")
}

#[test]
fn every_valid_linuxkit_file_validates() {
    let files = yml_files(&corpus().join("valid"));
    assert_eq!(files.len(), 177, "the corpus should hold 177 valid files");
    let mut failures = Vec::new();
    for f in &files {
        if let Err(d) = spec::load(&[Input::Path(f.clone())]) {
            failures.push(d.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 177 files rejected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `name.L24-28.yml` → 24..=28, `name.L1.yml` → 1..=1.
fn line_range(p: &Path) -> (u32, u32) {
    let name = p.file_name().unwrap().to_str().unwrap();
    let l = name.split('.').find(|s| s.starts_with('L')).unwrap();
    let (a, b) = l[1..].split_once('-').unwrap_or((&l[1..], &l[1..]));
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn the_invalid_linuxkit_files_are_rejected_in_range() {
    let files = yml_files(&corpus().join("invalid"));
    assert_eq!(files.len(), 3);
    for f in &files {
        let (lo, hi) = line_range(f);
        let d = spec::load(&[Input::Path(f.clone())]).expect_err("must be rejected");
        assert!(
            d.0.iter()
                .any(|d| d.pos.as_ref().is_some_and(|p| (lo..=hi).contains(&p.line))),
            "{}: no diagnostic in lines {lo}-{hi}:\n{d}",
            f.display()
        );
    }
}
