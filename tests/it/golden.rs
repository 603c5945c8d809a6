//! The golden cases of `../shared/golden/`: each spec is built through the real engine and
//! its manifest and every `config.json` / `runtime.json` compared with LinuxKit's output
//! (with imagesmith's documented deviations applied), read in place.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use common::*;

static IMAGES: Once = Once::new();

fn golden_images() {
    require_engine();
    IMAGES.call_once(|| {
        // The images the script makes now are this process's: removed when it exits (the
        // script keeps images that are already there).
        for image in ["golden/label:1", "golden/kernel:1", "golden/base:1"] {
            let there = docker_command()
                .args(["image", "inspect", image])
                .output()
                .is_ok_and(|o| o.status.success());
            if !there {
                remove_at_exit(image);
            }
        }
        run_ok(Command::new("bash").arg(shared_dir().join("golden/make-images.sh")));
    });
}

/// Rows of a manifest by path.
fn rows(tsv: &str) -> BTreeMap<String, String> {
    tsv.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            (
                l.split('\t').next().unwrap_or_default().to_string(),
                l.to_string(),
            )
        })
        .collect()
}

/// The `metadata:` files are Go-formatted in LinuxKit's output; only their header fields
/// are compared here (their content is checked semantically in `assert_metadata_is_the_spec`).
const NOT_COMPARED: [&str; 2] = ["etc/system.yml", "etc/system.json"];

fn without_content(row: &str) -> String {
    let f: Vec<&str> = row.split('\t').collect();
    // path type mode uid gid [size] mtime link [sha]
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        f[0], f[1], f[2], f[3], f[4], f[6], f[7]
    )
}

/// Builds golden case `spec` and compares it with LinuxKit's output; returns the output tar
/// (`out.tar` in the returned directory, which also holds it extracted, `x/`).
fn check(spec: &str) -> (tempfile::TempDir, PathBuf) {
    golden_images();
    let golden = shared_dir().join("golden");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    run_ok(
        imagesmith()
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("build")
            .arg(golden.join(format!("specs/{spec}.yml")))
            .arg("-o")
            .arg(&out),
    );
    let extracted = dir.path().join("x");
    let manifest = run_ok(
        Command::new("python3")
            .arg(golden.join("manifest.py"))
            .arg(&out)
            .arg(&extracted),
    );
    let got = rows(&String::from_utf8_lossy(&manifest.stdout));
    let want =
        rows(&fs::read_to_string(golden.join(format!("expected/{spec}/manifest.tsv"))).unwrap());
    let mut diffs = Vec::new();
    for path in want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (w, g) = (want.get(path), got.get(path));
        let same = match (w, g) {
            (Some(w), Some(g)) if NOT_COMPARED.contains(&path.as_str()) => {
                without_content(w) == without_content(g)
            }
            (w, g) => w == g,
        };
        if !same {
            diffs.push(format!(
                "- {}\n+ {}",
                w.map_or("(absent)", |s| s),
                g.map_or("(absent)", |s| s)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{spec}: manifest differs:\n{}",
        diffs.join("\n")
    );
    compare_tree(
        &golden.join(format!("expected/{spec}/containers")),
        &extracted.join("containers"),
    );
    (dir, out)
}

/// Every file under `want` exists under `got` with the same bytes, and vice versa.
fn compare_tree(want: &Path, got: &Path) {
    let list = |root: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    v.push(p.strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        v.sort();
        v
    };
    let (w, g) = (list(want), list(got));
    assert_eq!(w, g, "config.json/runtime.json files differ");
    for rel in w {
        let (a, b) = (
            fs::read(want.join(&rel)).unwrap(),
            fs::read(got.join(&rel)).unwrap(),
        );
        assert!(
            a == b,
            "{} differs:\n--- expected\n{}\n--- got\n{}",
            rel.display(),
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
}

#[test]
fn golden_01_layouts() {
    check("01-layouts");
}

#[test]
fn golden_02_label() {
    check("02-label");
}

#[test]
fn golden_03_fields() {
    check("03-fields");
}

/// Case 04, whose `metadata:` files are also checked (on the same build) against
/// LinuxKit's, semantically ([`assert_metadata_is_the_spec`]).
#[test]
fn golden_04_kernel_files() {
    let (_dir, out) = check("04-kernel-files");
    assert_metadata_is_the_spec(&out);
}

/// LinuxKit's `etc/system.json` of golden case 04, reconstructed: its sha256 starts with the
/// digest in `expected/04-kernel-files/manifest.tsv` (checked below), so these are LinuxKit's
/// exact bytes.
const LINUXKIT_04_JSON: &str = r#"{
    "kernel": {
        "image": "docker.io/golden/kernel:1",
        "cmdline": "console=ttyS0 quiet",
        "ucode": "ucode.cpio"
    },
    "init": [
        "docker.io/golden/base:1"
    ],
    "onboot": [
        {
            "name": "owner",
            "image": "docker.io/golden/base:1"
        }
    ],
    "onshutdown": null,
    "services": null,
    "files": [
        {
            "path": "etc/motd",
            "directory": false,
            "contents": "welcome\n",
            "optional": false
        },
        {
            "path": "/opt/app/config.json",
            "directory": false,
            "contents": "{\"debug\": true}",
            "optional": false,
            "mode": "0644"
        },
        {
            "path": "var/lib/state",
            "directory": true,
            "optional": false
        },
        {
            "path": "var/lib/state-owned",
            "directory": true,
            "optional": false,
            "mode": "0750",
            "uid": "owner",
            "gid": 42
        },
        {
            "path": "usr/local/bin/sh",
            "directory": false,
            "symlink": "/bin/busybox",
            "optional": false
        },
        {
            "path": "etc/system.yml",
            "directory": false,
            "metadata": "yaml",
            "optional": false
        },
        {
            "path": "etc/system.json",
            "directory": false,
            "metadata": "json",
            "optional": false
        }
    ],
    "volumes": null
}"#;

/// Drops what the golden README counts as equal to absent: null, empty lists and maps, false.
fn semantic(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, semantic(v)))
                .filter(|(_, v)| !matches!(v, Value::Null | Value::Bool(false)))
                .filter(|(_, v)| !v.as_array().is_some_and(Vec::is_empty))
                .filter(|(_, v)| !v.as_object().is_some_and(serde_json::Map::is_empty))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(semantic).collect()),
        other => other,
    }
}

/// The `metadata:` files of case 04 (`out`, its output tar) hold the same document as
/// LinuxKit's, semantically.
fn assert_metadata_is_the_spec(out: &Path) {
    use sha2_free::sha256_prefix;
    let golden = shared_dir().join("golden");
    let manifest =
        fs::read_to_string(golden.join("expected/04-kernel-files/manifest.tsv")).unwrap();
    let row = manifest
        .lines()
        .find(|l| l.starts_with("etc/system.json\t"))
        .unwrap();
    assert!(
        row.ends_with(&sha256_prefix(LINUXKIT_04_JSON.as_bytes())),
        "reconstruction is not LinuxKit's"
    );
    let items = read_tar_file(out);
    let get = |p: &str| {
        items
            .iter()
            .rev()
            .find(|i| i.path == p)
            .unwrap()
            .data
            .clone()
    };
    let want = semantic(serde_json::from_str(LINUXKIT_04_JSON).unwrap());
    let json: serde_json::Value = serde_json::from_slice(&get("etc/system.json")).unwrap();
    assert_eq!(semantic(json), want);
    let yaml: serde_json::Value = serde_saphyr::from_slice(&get("etc/system.yml")).unwrap();
    assert_eq!(semantic(yaml), want);
}

/// sha256 via the `sha256sum` tool (no hashing crate needed for one test).
mod sha2_free {
    pub fn sha256_prefix(data: &[u8]) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..16].to_string()
    }
}
