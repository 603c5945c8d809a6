//! Helpers shared by the integration tests: the real Docker engine (required: a test that
//! needs it fails loudly when it is unreachable), uniquely named test images that are
//! removed when dropped, running the `imagesmith` binary with its peak memory measured, and
//! reading output tars.
#![allow(dead_code)]

pub mod engine;
pub mod oci;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `../shared` (or `$IMAGESMITH_SHARED`): the specification's golden files and corpus, read
/// in place.
pub fn shared_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IMAGESMITH_SHARED") {
        return PathBuf::from(d);
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if beside.is_dir() {
        return beside;
    }
    PathBuf::from("/work/shared")
}

/// Panics (fails the test) unless a Docker engine answers. Tests never skip.
pub fn require_engine() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Docker engine is not reachable (run scripts/setup.sh): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run the docker CLI (run scripts/setup.sh): {e}"),
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call: `imagesmith-test/<what>-<pid>-<n>`.
pub fn unique(what: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("imagesmith-test/{what}-{}-{n}", std::process::id())
}

/// Runs a command, panicking with its output on failure.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A test image, removed (with any container made from it) when dropped.
pub struct TestImage {
    pub name: String,
}

impl TestImage {
    /// `name:1` made by `docker import` of `rootfs` with Dockerfile-style `changes`.
    pub fn import(rootfs: &Path, what: &str, changes: &[&str]) -> TestImage {
        require_engine();
        let name = format!("{}:1", unique(what));
        let tar = tempfile::NamedTempFile::new().unwrap();
        sh(Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(rootfs)
            .args(["-cf"])
            .arg(tar.path())
            .arg("."));
        let mut cmd = Command::new("docker");
        cmd.arg("import");
        for c in changes {
            cmd.args(["-c", c]);
        }
        cmd.arg(tar.path()).arg(&name);
        sh(&mut cmd);
        TestImage { name }
    }

    /// The normalised reference imagesmith uses for it.
    pub fn normalized(&self) -> String {
        format!("docker.io/{}", self.name)
    }

    /// Containers made from this image (none should survive a build).
    pub fn containers(&self) -> Vec<String> {
        let out = sh(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("ancestor={}", self.name),
        ]));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        for c in self.containers() {
            let _ = Command::new("docker").args(["rm", "-f", &c]).output();
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.name])
            .output();
    }
}

/// A minimal busybox root file system in `dir`: `/bin/busybox` from `busybox-static` with a
/// few applet links, `/etc/passwd`, `/etc/group`, and the usual empty directories.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "tmp", "root", "var", "proc", "sys", "dev"] {
        fs::create_dir_all(dir.join(d)).unwrap();
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static is installed (scripts/setup.sh)");
    for a in [
        "sh", "cat", "echo", "ls", "id", "sleep", "true", "grep", "touch", "pwd", "env",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A busybox image with extra files (`path`, content), `CMD ["/bin/sh"]`, `ENV PATH=/bin`.
pub fn busybox_image(what: &str, extra: &[(&str, &[u8])]) -> TestImage {
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    for (p, content) in extra {
        let path = dir.path().join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
    }
    TestImage::import(dir.path(), what, &["CMD [\"/bin/sh\"]", "ENV PATH=/bin"])
}

/// The `imagesmith` binary under test.
pub fn imagesmith() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imagesmith"))
}

/// What a finished command did, with its peak resident memory.
pub struct Measured {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Peak RSS in KiB (`ru_maxrss` of this child alone, from `wait4`).
    pub max_rss_kib: i64,
}

/// Runs `cmd` to completion and measures its peak RSS with `wait4` (so that other tests'
/// children running in parallel do not count).
pub fn run_measured(cmd: &mut Command) -> Measured {
    let out_file = tempfile::tempfile().unwrap();
    let err_file = tempfile::tempfile().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(err_file.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers to locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    std::mem::forget(child); // already reaped
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let read = |mut f: fs::File| {
        use std::io::{Read, Seek};
        f.rewind().unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Measured {
        status: code,
        stdout: read(out_file),
        stderr: String::from_utf8_lossy(&read(err_file)).into_owned(),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

/// One entry of an output tar, as tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarItem {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: String,
    pub data: Vec<u8>,
}

/// Reads every entry of a tar file (names as stored, trailing `/` removed).
pub fn read_tar(path: &Path) -> Vec<TarItem> {
    use std::io::Read;
    let f = fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(f);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(TarItem {
            path,
            kind: match h.entry_type() {
                tar::EntryType::Regular => 'f',
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                tar::EntryType::Char => 'c',
                tar::EntryType::Block => 'b',
                tar::EntryType::Fifo => 'p',
                _ => '?',
            },
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
        });
    }
    out
}
