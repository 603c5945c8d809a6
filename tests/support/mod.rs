//! Helpers for the format and boot tests: the real Docker engine (required: a test that
//! needs it fails loudly when it is unreachable), the packages of `pkg/` built once per test
//! process under tags unique to it (removed when the process exits), `examples/minimal.yml`
//! pointed at them, and readers for the outputs (tar, gzip, GNU cpio).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

pub const PACKAGES: [&str; 4] = ["kernel", "init", "runc", "hello"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn imagesmith() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imagesmith"))
}

/// Runs a command, failing the test with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails the test unless a Docker engine answers. Tests never skip.
pub fn require_engine() {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Docker engine is not reachable (run scripts/setup.sh): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run the docker CLI (run scripts/setup.sh): {e}"),
    }
}

/// Images this process created, removed at exit.
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn remove_created() {
    let images = CREATED.lock().map(|v| v.clone()).unwrap_or_default();
    if !images.is_empty() {
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", "--no-prune"])
            .args(&images)
            .output();
    }
}

/// Records an image to remove when the test process exits.
pub fn remove_at_exit(image: &str) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn` without arguments, as atexit(3) expects.
        unsafe {
            libc::atexit(remove_created);
        }
    });
    if let Ok(mut v) = CREATED.lock() {
        v.push(image.to_string());
    }
}

/// The tag this process gives package `name`.
pub fn package_tag(name: &str) -> String {
    format!("imagesmith-test/{name}-{}:dev", std::process::id())
}

/// Builds the four packages of `pkg/` once per process with `imagesmith pkg build --tag`.
pub fn packages() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_engine();
        for p in PACKAGES {
            let tag = package_tag(p);
            remove_at_exit(&tag);
            let out = run_ok(
                imagesmith()
                    .args(["-q", "pkg", "build", "--tag", &tag])
                    .arg(repo().join("pkg").join(p)),
            );
            let line = String::from_utf8_lossy(&out.stdout);
            assert!(
                line.starts_with(&format!("{tag} sha256:")),
                "pkg build printed {line:?}"
            );
        }
    });
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

/// Builds `yml` with the given extra arguments.
pub fn build(yml: &Path, args: &[&str]) -> Output {
    run_ok(imagesmith().arg("-q").arg("build").args(args).arg(yml))
}

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut v)
        .expect("not gzip data");
    v
}

/// One member of a tar: path, type flag, size, content.
#[derive(Debug, Clone)]
pub struct Member {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub mtime: u64,
    pub data: Vec<u8>,
    pub link: Option<String>,
}

pub fn read_tar(bytes: &[u8]) -> Vec<Member> {
    let mut ar = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in ar.entries().expect("reading tar") {
        let mut e = e.expect("reading tar entry");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("reading tar data");
        out.push(Member {
            path: String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string(),
            kind: e.header().entry_type(),
            mode: e.header().mode().unwrap_or(0),
            mtime: e.header().mtime().unwrap_or(0),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
            data,
        });
    }
    out
}

/// `cpio -t` (GNU cpio) of an uncompressed archive: the paths, in order.
pub fn gnu_cpio_list(cpio: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.cpio");
    std::fs::write(&f, cpio).expect("writing cpio");
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cpio --quiet -t -H newc < '{}'", f.display())),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
