//! Helpers shared by every integration test, one implementation of each:
//!
//! - paths: the repository and `../shared` (the specification's golden files and corpus),
//!   the YAML files of a directory ([`yml_files`]);
//! - the real Docker engine, always the local one (every `docker` run here is without
//!   `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`): [`require_engine`] fails
//!   the test loudly when it is unreachable (tests never skip), [`docker`] runs the CLI,
//!   [`labelled_container`] creates a container with given labels, [`engine_arch`] and
//!   [`other_arch`] name the engine's architecture and one that is not;
//! - names: [`unique`] gives a name unique to this process and call (and, by the clock, to
//!   this run), usable as an image repository, a container name and a file name;
//! - images: [`TestImage`] imports a root file system (a busybox one, [`busybox_rootfs`])
//!   with `docker import` and is removed, with its tags and every container made from it, by
//!   its Drop guard; [`remove_at_exit`] for images the tests of a process share;
//! - running commands: [`run_ok`], the `imagesmith` binary under test ([`imagesmith`]),
//!   its peak memory ([`run_measured`]), a tokio runtime for library tests ([`runtime`]);
//! - reading outputs: tars ([`read_tar`]), gzip, zstd, GNU cpio listings.
//!
//! Registries and TLS are in [`engine`], OCI image layouts written by tests (and pushed
//! with skopeo) in [`layout`], the OCI schema and golden values in [`oci`], the
//! packages of `pkg/` and `examples/minimal.yml` in [`pkg`], booting under qemu in [`qemu`].
#![allow(dead_code)] // each test file uses a part of it

pub mod engine;
pub mod layout;
pub mod oci;
pub mod pkg;
pub mod qemu;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

// ---- paths ----

/// The repository (the crate's manifest directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` (or `$IMAGESMITH_SHARED`): the specification's golden files and corpus, read
/// in place.
pub fn shared_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IMAGESMITH_SHARED") {
        return PathBuf::from(d);
    }
    let beside = repo().join("../shared");
    assert!(
        beside.is_dir(),
        "the shared test data is missing: neither $IMAGESMITH_SHARED is set nor {} exists",
        beside.display()
    );
    beside
}

/// The `.yml` and `.yaml` files under `dir`, its subdirectories included, sorted (by name
/// within each directory, a subdirectory's files where its name sorts); fails the test when
/// a directory cannot be listed.
pub fn yml_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| {
                e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                    .path()
            })
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

// ---- the engine ----

/// `docker` for the local engine: without `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and
/// `DOCKER_CERT_PATH` from the caller's environment. For what [`docker`] cannot do (binary
/// output, an environment of its own).
pub fn docker_command() -> Command {
    let mut cmd = Command::new("docker");
    cmd.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH");
    cmd
}

/// Fails the test (panics) unless the local Docker engine answers. Tests never skip.
pub fn require_engine() {
    match docker_command()
        .args(["version", "--format", "{{.Server.APIVersion}}"])
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

/// Runs `docker args…`; fails the test with its output unless it succeeds. Returns its
/// standard output, trimmed.
pub fn docker(args: &[&str]) -> String {
    docker_in(args, None, None)
}

/// Runs `docker args…` with optional standard input bytes and `--config` directory, as
/// [`docker`] does.
pub fn docker_in(args: &[&str], stdin: Option<&[u8]>, config: Option<&Path>) -> String {
    let mut cmd = docker_command();
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI: {e}"));
    if let Some(data) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(data).expect("writing to docker");
    }
    let out = child.wait_with_output().expect("docker runs");
    let out = succeeded(&cmd, out);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Ids of all containers (running or not) matching a `docker ps` filter.
pub fn containers(filter: &str) -> Vec<String> {
    docker(&["ps", "-aq", "--no-trunc", "--filter", filter])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Creates (never starts) a container of `image` with the given labels; returns its id.
pub fn labelled_container<K: AsRef<str>, V: AsRef<str>>(
    image: &TestImage,
    labels: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut args: Vec<String> = vec!["create".into()];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{}={}", k.as_ref(), v.as_ref()));
    }
    args.push(image.id.clone());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs)
}

/// The engine's architecture (`docker version`'s `Server.Arch`: `amd64`, `arm64`, …).
pub fn engine_arch() -> String {
    docker(&["version", "--format", "{{.Server.Arch}}"])
}

/// An architecture that is not the engine's: `amd64` on an `arm64` engine, else `arm64`.
pub fn other_arch() -> &'static str {
    if engine_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

// ---- names ----

/// A name no other test, call or run uses: `imagesmith-test-<what>-<pid>-<n>-<nanos>` (`n`
/// counts the calls of this process; `nanos` tells runs apart when a pid comes again). It
/// has no `/` or `:`, so it serves as an image repository (lowercase `what`), a container
/// name (docker's or runc's), a file name and a label value.
pub fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "imagesmith-test-{what}-{}-{n}-{nanos:x}",
        std::process::id()
    )
}

// ---- images ----

/// A local image made by `docker import`, removed (with its tags and every container made
/// from it) when dropped.
pub struct TestImage {
    /// `repository:tag`: `imagesmith-test-<what>-…:1`.
    pub name: String,
    /// The image id (`sha256:…`).
    pub id: String,
    extra_tags: Vec<String>,
}

impl TestImage {
    /// A busybox image (see [`busybox_rootfs`]) named `imagesmith-test-<what>-…:1`, its
    /// `/marker` holding that name (so every test image differs), `CMD ["/bin/sh"]`.
    pub fn new(what: &str) -> TestImage {
        let dir = tempfile::tempdir().expect("temp dir");
        busybox_rootfs(dir.path());
        let name = image_name(what);
        fs::write(dir.path().join("marker"), &name).expect("writing the marker");
        TestImage::import_as(name, dir.path(), &["CMD [\"/bin/sh\"]"])
    }

    /// `imagesmith-test-<what>-…:1` made by `docker import` of `rootfs` with
    /// Dockerfile-style `changes`.
    pub fn import(rootfs: &Path, what: &str, changes: &[&str]) -> TestImage {
        TestImage::import_as(image_name(what), rootfs, changes)
    }

    fn import_as(name: String, rootfs: &Path, changes: &[&str]) -> TestImage {
        require_engine();
        let tar = tempfile::NamedTempFile::new().expect("temp file");
        run_ok(
            Command::new("tar")
                .args(["--numeric-owner", "--sort=name", "-C"])
                .arg(rootfs)
                .args(["-cf"])
                .arg(tar.path())
                .arg("."),
        );
        let mut args = vec!["import"];
        for c in changes {
            args.extend(["-c", c]);
        }
        let path = tar.path().to_str().expect("a UTF-8 temp path");
        args.extend([path, &name]);
        docker(&args);
        // From here on the Drop guard removes it.
        let mut image = TestImage {
            name,
            id: String::new(),
            extra_tags: Vec::new(),
        };
        image.id = docker(&["image", "inspect", "--format", "{{.Id}}", &image.name]);
        image
    }

    /// Pushes the image to `registry` as `<registry>/<name>` and removes every local copy,
    /// so that using it needs a pull. Returns the registry reference.
    pub fn push_to(&mut self, registry: &engine::Registry) -> String {
        let remote = format!("{}/{}", registry.host(), self.name);
        docker(&["tag", &self.name, &remote]);
        self.extra_tags.push(remote.clone());
        let config = registry.login_config();
        docker_in(&["push", &remote], None, Some(config.path()));
        self.remove_local();
        remote
    }

    /// Removes the image and its tags from the engine (a pull brings it back).
    pub fn remove_local(&self) {
        let _ = docker_command()
            .args(["rmi", "-f", &self.name])
            .args(&self.extra_tags)
            .output();
    }

    /// Containers (running or not) made from this image; none should survive a build.
    pub fn containers(&self) -> Vec<String> {
        containers(&format!("ancestor={}", self.id))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        // Containers of this image that a failing test left go too, so one failure does not
        // leak into the engine. Nothing here panics: this also runs while a test unwinds.
        if !self.id.is_empty() {
            let filter = format!("ancestor={}", self.id);
            if let Ok(o) = docker_command()
                .args(["ps", "-aq", "--no-trunc", "--filter", &filter])
                .output()
            {
                for c in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = docker_command().args(["rm", "-f", c]).output();
                }
            }
        }
        self.remove_local();
        if !self.id.is_empty() {
            let _ = docker_command().args(["rmi", "-f", &self.id]).output();
        }
    }
}

fn image_name(what: &str) -> String {
    format!("{}:1", unique(what))
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

/// Images this process created for its whole life, removed at exit (with their untagged
/// parents: the intermediate images of a classic `docker build`).
static AT_EXIT: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn remove_images_at_exit() {
    let images = AT_EXIT.lock().map(|v| v.clone()).unwrap_or_default();
    if !images.is_empty() {
        let _ = docker_command()
            .args(["image", "rm", "--force"])
            .args(&images)
            .output();
    }
}

/// Records an image to remove when the test process exits (for images shared by the tests
/// of a process, which no single Drop guard owns).
pub fn remove_at_exit(image: &str) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn` without arguments, as atexit(3) expects.
        unsafe {
            libc::atexit(remove_images_at_exit);
        }
    });
    if let Ok(mut v) = AT_EXIT.lock() {
        v.push(image.to_string());
    }
}

// ---- running commands ----

/// Fails the test with the output of `cmd` unless it succeeded.
fn succeeded(cmd: &Command, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tar in memory of `entries` (written by imagesmith's own tar writer).
pub fn tar_of<D: AsRef<[u8]>>(entries: &[(imagesmith::archive::Entry, D)]) -> Vec<u8> {
    let mut s = imagesmith::archive::TarSink::new(Vec::new());
    for (e, d) in entries {
        imagesmith::archive::append_bytes(&mut s, e, d.as_ref()).expect("tar in memory");
    }
    s.finish().expect("tar in memory")
}

/// Runs a command, failing the test with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    succeeded(cmd, out)
}

/// The `imagesmith` binary under test, for the local engine like [`docker`]: without
/// `DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_TLS`, `DOCKER_CERT_PATH` and `RUST_LOG` from
/// the caller's environment (a test that sets one afterwards still does), and with an
/// empty image cache of its own ([`fresh_cache_home`]; a test that wants a warm cache passes
/// `--cache-dir`), never the user's.
pub fn imagesmith() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imagesmith"));
    cmd.env("XDG_CACHE_HOME", fresh_cache_home());
    for k in [
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_TLS",
        "DOCKER_CERT_PATH",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    cmd
}

/// The directory holding the test process's cache homes, removed at exit.
static CACHE_ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_cache_root() {
    if let Some(r) = CACHE_ROOT.get() {
        let _ = fs::remove_dir_all(r);
    }
}

/// A new, empty `XDG_CACHE_HOME` for one run, under a directory of this process that is
/// removed when it exits.
pub fn fresh_cache_home() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let root = CACHE_ROOT.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn` without arguments, as atexit(3) expects.
        unsafe {
            libc::atexit(remove_cache_root);
        }
        tempfile::Builder::new()
            .prefix("imagesmith-test-cache-")
            .tempdir()
            .expect("temp dir")
            .keep()
    });
    root.join(N.fetch_add(1, Ordering::SeqCst).to_string())
}

/// What a finished command did, with its peak resident memory.
pub struct Measured {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Peak RSS in KiB, as GNU time's `%M` reports it.
    pub max_rss_kib: i64,
}

/// Runs `cmd` to completion under GNU `time -f %M` and reports its peak RSS.
///
/// Not `wait4` on our own child: a process started from this (large, multi-threaded) test
/// process inherits the test process's memory high-water mark through `vfork` + `exec`
/// (the kernel keeps the old address space's peak in the new program's `ru_maxrss`), so the
/// figure would be the test's, not imagesmith's. `time` is a small process whose forked
/// child's peak is its own.
pub fn run_measured(cmd: &mut Command) -> Measured {
    let out_file = tempfile::tempfile().unwrap();
    let err_file = tempfile::tempfile().unwrap();
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(rss_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let status = timed
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(err_file.try_clone().unwrap())
        .status()
        .unwrap_or_else(|e| {
            panic!("running {cmd:?} under /usr/bin/time (scripts/setup.sh installs it): {e}")
        });
    let read = |mut f: fs::File| {
        use std::io::Seek;
        f.rewind().unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    };
    let report = fs::read_to_string(rss_file.path()).unwrap();
    // The last line is %M; a line before it says how the command ended.
    let max_rss_kib = report
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected report of /usr/bin/time: {report:?}"));
    Measured {
        // GNU time exits with the command's status, 128+N when a signal ended it.
        status: status.code().unwrap_or(-1),
        stdout: read(out_file),
        stderr: String::from_utf8_lossy(&read(err_file)).into_owned(),
        max_rss_kib,
    }
}

/// A multi-threaded tokio runtime (two workers) for tests that call the library's engine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

// ---- reading outputs ----

/// One member of a tar, as tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// The name as stored, trailing `/` removed.
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The link target of a symlink or hard link.
    pub link: Option<String>,
    pub data: Vec<u8>,
}

impl TarEntry {
    /// Everything but the name, for comparing trees: `kind mode uid:gid mtime target
    /// sha256-of-content`.
    pub fn describe(&self) -> String {
        format!(
            "{:?} {:o} {}:{} {} {:?} {}",
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.mtime,
            self.link,
            layout::sha256(&self.data)
        )
    }
}

/// Every member of a tar, in order.
pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut ar = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in ar.entries().expect("reading tar") {
        let mut e = e.expect("reading tar entry");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("reading tar data");
        let h = e.header();
        out.push(TarEntry {
            path: String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string(),
            kind: h.entry_type(),
            mode: h.mode().expect("tar mode"),
            uid: h.uid().expect("tar uid"),
            gid: h.gid().expect("tar gid"),
            mtime: h.mtime().expect("tar mtime"),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
            data,
        });
    }
    out
}

/// [`read_tar`] of a tar file.
pub fn read_tar_file(path: &Path) -> Vec<TarEntry> {
    read_tar(&fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

/// The content of the member `path` of a tar, as text; fails the test when it is missing.
pub fn tar_text(bytes: &[u8], path: &str) -> String {
    let entry = read_tar(bytes)
        .into_iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no {path} in the tar"));
    String::from_utf8(entry.data).unwrap_or_else(|e| panic!("{path} is not UTF-8: {e}"))
}

/// The bytes of gzip data, decompressed.
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut v)
        .expect("not gzip data");
    v
}

/// The bytes of one zstd frame, decompressed (what follows it, such as an initrd's zero
/// padding, is ignored).
pub fn unzstd(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    zstd::stream::read::Decoder::new(b)
        .expect("zstd decoder")
        .single_frame()
        .read_to_end(&mut v)
        .expect("not zstd data");
    v
}

/// `cpio -t` (GNU cpio) of an uncompressed newc archive: the paths, in order.
pub fn gnu_cpio_list(cpio: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.cpio");
    fs::write(&f, cpio).expect("writing cpio");
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
