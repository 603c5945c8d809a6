//! `imagesmith validate` and `imagesmith build --dry-run` as a user runs them.

use crate::common;

use std::path::PathBuf;

use assert_cmd::Command;
use imagesmith::spec;

fn path(rel: &str) -> PathBuf {
    common::repo().join(rel)
}

fn imagesmith() -> Command {
    let mut c = Command::cargo_bin("imagesmith").unwrap();
    // No engine may be asked: point DOCKER_HOST nowhere.
    c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("RUST_LOG");
    c
}

#[test]
fn validate_accepts_a_valid_file() {
    imagesmith()
        .arg("validate")
        .arg(common::shared_dir().join("golden/specs/03-fields.yml"))
        .assert()
        .success()
        .stdout("");
}

#[test]
fn validate_lists_every_problem_and_fails() {
    let f = path("tests/spec_mixed/mixed-files-volumes.yml");
    let out = imagesmith()
        .current_dir(path("tests/spec_mixed"))
        .arg("validate")
        .arg("mixed-files-volumes.yml")
        .assert()
        .failure();
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 12, "{stderr}");
    assert!(
        lines
            .iter()
            .take(11)
            .all(|l| l.starts_with("mixed-files-volumes.yml:")),
        "{stderr}"
    );
    assert_eq!(lines[11], "error: 11 problems found");
    let expected = spec::load(&[spec::Input::Path(f)]).unwrap_err();
    assert_eq!(expected.0.len(), 11);
}

#[test]
fn validate_reads_standard_input_and_several_files() {
    imagesmith()
        .args(["validate", "-"])
        .write_stdin("services:\n  - name: a\n    image: alpine\n    readonly: yes\n")
        .assert()
        .failure()
        .stderr(predicates::str::starts_with(
            "<stdin>:4:15: `services[0].readonly`: expected `true` or `false`, found the string `yes`\n",
        ));
    // The uid names a container of the other file.
    imagesmith()
        .args(["validate"])
        .arg(common::shared_dir().join("golden/specs/01-layouts.yml"))
        .arg("-")
        .write_stdin("services:\n  - name: x\n    image: alpine\n    uid: first\n")
        .assert()
        .success();
}

#[test]
fn validate_warns_on_standard_error() {
    imagesmith()
        .args(["validate", "-"])
        .write_stdin("trust:\n  org: [linuxkit]\n")
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "<stdin>:1:1: `trust`: `trust` is accepted for compatibility and ignored",
        ));
}

#[test]
fn the_corpus_invalid_files_fail() {
    for f in ["static-ip.L24-28.yml", "unknown-top-level-key.L1.yml"] {
        imagesmith()
            .arg("validate")
            .arg(common::shared_dir().join("linuxkit-corpus/invalid").join(f))
            .assert()
            .failure()
            .stderr(predicates::str::contains("error: 1 problem found"));
    }
}

#[test]
fn dry_run_prints_the_merged_yaml_with_normalised_references() {
    let out = imagesmith()
        .args(["build", "--dry-run"])
        .arg(common::shared_dir().join("golden/specs/01-layouts.yml"))
        .arg(common::shared_dir().join("golden/specs/04-kernel-files.yml"))
        .assert()
        .success();
    let yaml = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(yaml.contains("image: docker.io/golden/base:1"), "{yaml}");
    assert!(!yaml.contains("image: golden/"), "{yaml}");
    let direct = spec::load(&[
        spec::Input::Path(common::shared_dir().join("golden/specs/01-layouts.yml")),
        spec::Input::Path(common::shared_dir().join("golden/specs/04-kernel-files.yml")),
    ])
    .unwrap();
    assert_eq!(yaml, spec::to_yaml(&direct.spec));
    // The output is itself a valid file that means the same.
    let again = spec::load_text(&[("dry-run.yml", &yaml)]).unwrap();
    assert_eq!(spec::to_yaml(&again.spec), yaml);
    assert_eq!(spec::to_json(&again.spec), spec::to_json(&direct.spec));
    assert_eq!(again.spec.onboot.len(), 4);
    assert_eq!(again.spec.services.len(), 1);
}

#[test]
fn dry_run_of_an_invalid_file_fails_without_output() {
    imagesmith()
        .args(["build", "--dry-run", "-"])
        .write_stdin("onboot:\n  - name: a\n")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicates::str::contains(
            "<stdin>:2:5: `onboot[0]`: missing `image`",
        ));
}

#[test]
fn dry_run_refuses_output_options() {
    // `--dry-run` writes the merged YAML to standard output: an output option with it is a
    // usage error (exit 2), not silently ignored.
    imagesmith()
        .args(["build", "--dry-run", "-o", "x.tar", "-"])
        .write_stdin("init: []\n")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicates::str::contains("cannot be used with"));
}

#[test]
fn every_corpus_file_dry_runs_to_a_file_that_validates() {
    let dir = common::shared_dir().join("linuxkit-corpus/valid/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() > 20);
    for f in files {
        let l = spec::load(&[spec::Input::Path(f.clone())]).unwrap();
        let yaml = spec::to_yaml(&l.spec);
        let again = spec::load_text(&[("out.yml", &yaml)])
            .unwrap_or_else(|d| panic!("{}:\n{d}\n{yaml}", f.display()));
        assert_eq!(spec::to_yaml(&again.spec), yaml, "{}", f.display());
    }
}
