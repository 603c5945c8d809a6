//! What `imagesmith build` tells a person, through the binary and the local engine: every
//! missing image named with its YAML line at once, the success line, and the generated
//! shell completions and manual page.

use crate::common;

use std::process::Stdio;

use common::engine::free_port;
use common::*;

#[test]
fn every_missing_image_is_named_with_file_and_line() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: the engine has neither image and cannot pull them.
    let port = free_port();
    let (a, b) = (
        format!("127.0.0.1:{port}/{}:1", unique("gone-a")),
        format!("127.0.0.1:{port}/{}:1", unique("gone-b")),
    );
    let yml = write_file(
        dir.path(),
        "sys.yml",
        &format!("init:\n  - {a}\nservices:\n  - name: svc\n    image: {b}\n"),
    );
    let out = imagesmith()
        .arg("build")
        .arg(&yml)
        .arg("-o")
        .arg(dir.path().join("x.tar"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let file = yml.display().to_string();
    assert!(err.contains("error: 2 images could not be had:"), "{err}");
    for (line_col, what, image) in [("2:5", "init image 1", &a), ("5:12", "service `svc`", &b)] {
        assert!(
            err.contains(&format!(
                "{file}:{line_col}: {what}: image `{image}`: it is not in the engine, and pulling it failed: "
            )),
            "{err}"
        );
    }
    assert!(!dir.path().join("x.tar").exists());
}

#[test]
fn a_successful_build_says_what_it_wrote_unless_quiet() {
    let image = TestImage::new("success-line");
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(
        dir.path(),
        "sys.yml",
        &format!("init:\n  - {}\n", image.name),
    );
    let out_tar = dir.path().join("sys.tar");
    let out = run_ok(imagesmith().arg("build").arg(&yml).arg("-o").arg(&out_tar));
    let err = String::from_utf8_lossy(&out.stderr);
    let size = std::fs::metadata(&out_tar).unwrap().len();
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("built {} as tar in ", yml.display())),
        "{err}"
    );
    assert!(
        last.ends_with(&format!(
            "s: {} ({})",
            out_tar.display(),
            imagesmith::progress::human(size)
        )),
        "{err}"
    );
    let quiet = run_ok(
        imagesmith()
            .arg("-q")
            .arg("build")
            .arg(&yml)
            .arg("-o")
            .arg(&out_tar),
    );
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}

#[test]
fn completions_and_manual_page_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef imagesmith"),
        ("fish", "complete -c imagesmith"),
    ] {
        let out = run_ok(imagesmith().args(["completions", shell]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        for word in ["build", "validate", "jobs", "kernel+initrd"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let man = run_ok(imagesmith().arg("man"));
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        text.starts_with(".ie") || text.contains(".TH imagesmith"),
        "{text}"
    );
    assert!(
        text.contains("build") && text.contains("validate"),
        "{text}"
    );
}
