//! `build --source registry` through the binary, with no engine reachable (`DOCKER_HOST`
//! points at nothing): the same system as the engine path, byte-identical between builds,
//! and from a `docker save` archive loaded with `cache import` with neither engine nor
//! registry.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::engine::Registry;
use common::*;

/// What a build holds, one sorted line per entry ([`TarEntry::describe`]), minus what the engine
/// itself adds to a container (`dev/pts`, `dev/shm`, `dev/console`, `etc/mtab`, wherever
/// an image is placed).
fn tree(tar: &Path) -> Vec<String> {
    read_tar_file(tar)
        .into_iter()
        .filter(|e| {
            !["dev/pts", "dev/shm", "dev/console", "etc/mtab"]
                .iter()
                .any(|x| e.path == *x || e.path.ends_with(&format!("/{x}")))
        })
        .map(|e| format!("{} {}", e.path, e.describe()))
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect()
}

/// The entries one tree has and the other lacks, for the message.
///
/// (The trees are compared as sets: a flattened image lists its directories first, an
/// engine export walks the tree, so the order of entries differs.)
fn differences(a: &[String], b: &[String]) -> String {
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter()
            .filter(|l| !y.contains(l))
            .take(10)
            .cloned()
            .collect()
    };
    format!(
        "only in the registry build:\n{}\nonly in the engine build:\n{}",
        only(a, b).join("\n"),
        only(b, a).join("\n")
    )
}

/// `imagesmith build` with no engine: DOCKER_HOST names a socket that does not exist.
fn registry_build(yml: &Path, out: &Path, cache: &Path, config: Option<&Path>) -> Command {
    let mut c = imagesmith();
    c.env("DOCKER_HOST", "unix:///nonexistent/imagesmith-test.sock")
        .args(["-q", "build", "--source", "registry", "--cache-dir"])
        .arg(cache)
        .arg("-o")
        .arg(out)
        .arg(yml);
    if let Some(d) = config {
        c.env("DOCKER_CONFIG", d);
    }
    c
}

fn system(dir: &Path, image: &str) -> std::path::PathBuf {
    write_file(
        dir,
        "sys.yml",
        &format!(
            "init:\n  - {image}\nonboot:\n  - name: one\n    image: {image}\nservices:\n  - name: two\n    image: {image}\n    readonly: true\n"
        ),
    )
}

#[test]
fn a_registry_build_needs_no_engine_and_equals_the_engine_build() {
    let reg = Registry::with_auth();
    let mut img = busybox_image("regcli", &[("etc/motd", b"from the registry\n")]);
    let remote = img.push_to(&reg);
    let config = reg.login_config();
    let dir = tempfile::tempdir().unwrap();
    let yml = system(dir.path(), &remote);

    let engine_out = dir.path().join("engine.tar");
    run_ok(
        imagesmith()
            .env("DOCKER_CONFIG", config.path())
            .args(["-q", "build", "--no-cache", "-o"])
            .arg(&engine_out)
            .arg(&yml),
    );
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let (cache_a, cache_b) = (dir.path().join("cache-a"), dir.path().join("cache-b"));
    run_ok(&mut registry_build(&yml, &a, &cache_a, Some(config.path())));
    run_ok(&mut registry_build(&yml, &b, &cache_b, Some(config.path())));
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two registry builds differ"
    );
    let (reg_tree, eng_tree) = (tree(&a), tree(&engine_out));
    assert!(reg_tree.iter().any(|e| e.starts_with("etc/motd ")));
    assert!(
        reg_tree
            .iter()
            .any(|e| e.starts_with("containers/onboot/000-one/config.json ")),
        "the bundles are there"
    );
    assert!(
        reg_tree == eng_tree,
        "{}",
        differences(&reg_tree, &eng_tree)
    );
    // Without credentials the registry refuses, and the message says what to do.
    let out = registry_build(
        &yml,
        &dir.path().join("c.tar"),
        &dir.path().join("cache-c"),
        None,
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&remote) && err.contains("401"), "{err}");
}

#[test]
fn a_docker_save_archive_builds_with_no_engine_and_no_registry() {
    let img = busybox_image("regclisave", &[("etc/saved", b"saved\n")]);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("save.tar");
    docker(&["save", "-o", archive.to_str().unwrap(), &img.name]);
    let yml = system(dir.path(), &img.name);
    let engine_out = dir.path().join("engine.tar");
    run_ok(
        imagesmith()
            .args(["-q", "build", "--no-cache", "-o"])
            .arg(&engine_out)
            .arg(&yml),
    );
    let cache = dir.path().join("cache");
    let imported = run_ok(
        imagesmith()
            .args(["-q", "cache", "import", "--cache-dir"])
            .arg(&cache)
            .arg(&archive),
    );
    let listed = String::from_utf8_lossy(&imported.stdout);
    assert!(
        listed.contains(&format!("docker.io/library/{}", img.name)),
        "{listed}"
    );
    // The name is `docker.io/library/…`: no registry answers for it here.
    let out = dir.path().join("saved.tar");
    run_ok(&mut registry_build(&yml, &out, &cache, None));
    let (reg_tree, eng_tree) = (tree(&out), tree(&engine_out));
    assert!(reg_tree.iter().any(|e| e.starts_with("etc/saved ")));
    assert!(
        reg_tree == eng_tree,
        "{}",
        differences(&reg_tree, &eng_tree)
    );
}
