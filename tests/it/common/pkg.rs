//! The packages of `pkg/` for the format and boot tests: built once per test process with
//! `imagesmith pkg build` under tags unique to it (removed when the process exits, as the
//! tests of the process share them), `examples/minimal.yml` pointed at them, building a spec
//! with the binary under test, and the init's `start-bundle` script (its path, and a command
//! running it with a runc root); `pkg/efi`, the EFI loader of the disk formats
//! ([`efi_package`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::{imagesmith, remove_at_exit, repo, require_engine, run_ok, unique};

/// The packages of `pkg/` that `examples/minimal.yml` uses.
pub const PACKAGES: [&str; 4] = ["kernel", "init", "runc", "hello"];

/// The tag this process gives package `name` (one of [`PACKAGES`]):
/// `imagesmith-test-<name>-…:dev`, the same for every call of the process.
pub fn package_tag(name: &str) -> String {
    static TAGS: OnceLock<BTreeMap<&str, String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        PACKAGES
            .iter()
            .map(|p| (*p, format!("{}:dev", unique(p))))
            .collect()
    })
    .get(name)
    .unwrap_or_else(|| panic!("{name} is not a package of pkg/"))
    .clone()
}

/// Builds the four packages of `pkg/` once per process with `imagesmith pkg build --tag`.
pub fn packages() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_engine();
        for p in PACKAGES {
            pkg_build(p, &package_tag(p));
        }
    });
}

/// `imagesmith pkg build --tag TAG pkg/<name>`, the image removed when the process exits.
fn pkg_build(name: &str, tag: &str) {
    remove_at_exit(tag);
    let out = run_ok(
        imagesmith()
            .args(["-q", "pkg", "build", "--tag", tag])
            .arg(repo().join("pkg").join(name)),
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with(&format!("{tag} sha256:")),
        "pkg build printed {line:?}"
    );
}

/// Builds `pkg/efi` (the EFI loader of the disk formats) once per process under a tag
/// unique to it, and returns the tag, for `--efi-loader`.
pub fn efi_package() -> String {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        require_engine();
        let tag = format!("{}:dev", unique("efi"));
        pkg_build("efi", &tag);
        tag
    })
    .clone()
}

/// `examples/minimal.yml` with the package images replaced by this process's, written as
/// `<dir>/minimal.yml` (so the default output name stays `minimal`).
pub fn minimal_yml(dir: &Path) -> PathBuf {
    packages();
    let mut text = std::fs::read_to_string(repo().join("examples/minimal.yml"))
        .expect("reading examples/minimal.yml");
    for p in PACKAGES {
        let from = format!("imagesmith/{p}:dev");
        assert!(text.contains(&from), "examples/minimal.yml lost {from}");
        text = text.replace(&from, &package_tag(p));
    }
    let path = dir.join("minimal.yml");
    std::fs::write(&path, text).expect("writing minimal.yml");
    path
}

/// Builds `yml` with the given extra arguments (`imagesmith -q build …`), failing the test
/// unless it succeeds.
pub fn build(yml: &Path, args: &[&str]) -> Output {
    run_ok(imagesmith().arg("-q").arg("build").args(args).arg(yml))
}

/// `pkg/init/usr/bin/start-bundle`, the init's runtime.json applier.
pub fn start_bundle_script() -> PathBuf {
    repo().join("pkg/init/usr/bin/start-bundle")
}

/// `sh start-bundle --root <root>`: the init's script with runc's state under `root`; the
/// caller adds the options and the bundle.
pub fn start_bundle(root: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg(start_bundle_script()).arg("--root").arg(root);
    c
}
