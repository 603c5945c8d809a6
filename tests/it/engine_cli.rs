//! `imagesmith build` end to end against the real engine (SPEC §1, §3, §8): pulls with the
//! credentials of `DOCKER_CONFIG` (auths, credsStore, credHelpers), the engine over TCP with
//! TLS, error messages for an unreachable engine, a missing image and a platform mismatch,
//! Ctrl-C and SIGTERM while an export is blocked, containers left by a SIGKILLed run, and
//! what `-q` and a non-terminal standard error print. After each build, no container
//! created by it is left. Needs the engine (scripts/setup.sh): these tests fail, never skip,
//! without it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::engine::{Certs, ENGINE_SOCKET, Registry, TlsProxy};
use common::{
    TestImage, busybox_image, containers, docker, labelled_container, other_arch, require_engine,
    tar_text, unique,
};

/// A build command with a clean environment: no DOCKER_* and no RUST_LOG from the caller
/// (`common::imagesmith` removes them), DOCKER_CONFIG `config` (an empty directory unless the
/// test gives one).
fn imagesmith_in(config: &Path) -> Command {
    require_engine();
    let mut c = common::imagesmith();
    c.env("DOCKER_CONFIG", config);
    c.stdin(Stdio::null());
    c
}

/// A YAML file with the images as `init` entries.
fn yaml(dir: &Path, images: &[&str]) -> PathBuf {
    let mut y = String::from("init:\n");
    for i in images {
        y.push_str(&format!("  - {i}\n"));
    }
    let p = dir.join("system.yml");
    std::fs::write(&p, y).expect("yaml");
    p
}

/// Runs a build to completion, checks that no container created by it is left, and
/// returns its output.
fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("imagesmith runs");
    let pid = child.id();
    let out = child.wait_with_output().expect("imagesmith ends");
    assert_no_containers_of(pid);
    out
}

fn assert_no_containers_of(pid: u32) {
    let left = containers(&format!("label=org.imagesmith.pid={pid}"));
    assert!(
        left.is_empty(),
        "containers left by imagesmith (pid {pid}): {left:?}"
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The content of `marker` in an output tar (init images are at `/`).
fn marker_in(tar_path: &Path) -> String {
    tar_text(&std::fs::read(tar_path).expect("output tar"), "marker")
}

#[test]
fn a_pull_uses_docker_config_credentials_and_fails_without_them_naming_the_image() {
    let registry = Registry::with_auth();
    let mut image = TestImage::new("cli-pull");
    let remote = image.push_to(&registry);
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &[&remote]);
    let out_tar = dir.path().join("out.tar");

    // Without credentials: refused, the image named, the registry's answer quoted.
    let empty = tempfile::tempdir().expect("dir");
    let mut c = imagesmith_in(empty.path());
    c.arg("build").arg(&y).arg("-o").arg(&out_tar);
    let o = run(c);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "system.yml:2:5: init image 1: image `{remote}`: pull denied: "
        )),
        "{err}"
    );
    assert!(err.contains("no basic auth credentials"), "{err}");
    assert!(!out_tar.exists());

    // With `docker login`'s configuration: pulled, built, and progress as plain lines
    // (standard error is not a terminal here).
    let login = registry.login_config();
    let mut c = imagesmith_in(login.path());
    c.arg("build").arg(&y).arg("-o").arg(&out_tar);
    let o = run(c);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(marker_in(&out_tar), image.name);
    assert!(err.contains(&format!("pulling {remote}")), "{err}");
    assert!(err.contains(&format!("pulled {remote}")), "{err}");
    assert!(err.contains(&format!("exporting {remote}")), "{err}");
    assert!(err.contains(&format!("exported {remote}")), "{err}");
    assert!(
        !err.contains('\r') && !err.contains("\x1b["),
        "no bars: {err:?}"
    );
    image.remove_local();
}

#[test]
fn a_pull_gets_its_password_from_creds_store_and_cred_helpers() {
    let registry = Registry::with_auth();
    let mut image = TestImage::new("cli-helper");
    let remote = image.push_to(&registry);
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &[&remote]);
    for cred_helpers in [false, true] {
        let helper = unique("helper");
        let (conf, bin) = registry.helper_config(&helper, cred_helpers);
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out_tar = dir.path().join(format!("out-{cred_helpers}.tar"));
        let mut c = imagesmith_in(conf.path());
        c.env("PATH", path)
            .arg("build")
            .arg(&y)
            .arg("--pull")
            .arg("-o")
            .arg(&out_tar);
        let o = run(c);
        assert!(
            o.status.success(),
            "credHelpers={cred_helpers}: {}",
            stderr(&o)
        );
        assert_eq!(marker_in(&out_tar), image.name);
        let asked =
            std::fs::read_to_string(bin.path().join(format!("docker-credential-{helper}.log")))
                .expect("the helper was run");
        assert_eq!(
            asked.trim(),
            registry.host(),
            "asked once, for the registry"
        );
        image.remove_local();
    }
}

#[test]
fn a_build_goes_through_tcp_with_tls_verify() {
    let image = TestImage::new("cli-tls");
    let certs = Certs::new();
    let proxy = TlsProxy::start(&certs, ENGINE_SOCKET);
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &[&image.name]);
    let out_tar = dir.path().join("out.tar");
    let mut c = imagesmith_in(dir.path());
    c.env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", proxy.port))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs.path())
        .arg("build")
        .arg(&y)
        .arg("-o")
        .arg(&out_tar);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(marker_in(&out_tar), image.name);
    assert!(image.containers().is_empty());
}

#[test]
fn an_unreachable_engine_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &["busybox:1"]);
    let sock = dir.path().join("no-engine.sock");
    let mut c = imagesmith_in(dir.path());
    c.env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .arg("build")
        .arg(&y)
        .arg("-o")
        .arg(dir.path().join("out.tar"));
    let o = run(c);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(
        err.starts_with(&format!(
            "error: no Docker engine at unix://{}",
            sock.display()
        )),
        "{err}"
    );
    assert!(err.contains("DOCKER_HOST"), "{err}");
}

#[test]
fn a_missing_image_and_a_platform_mismatch_are_errors_naming_the_image() {
    let registry = Registry::with_auth();
    let login = registry.login_config();
    let dir = tempfile::tempdir().expect("dir");
    let missing = format!("{}/{}:1", registry.host(), unique("missing"));
    let y = yaml(dir.path(), &[&missing]);
    let mut c = imagesmith_in(login.path());
    c.arg("build")
        .arg(&y)
        .arg("-o")
        .arg(dir.path().join("a.tar"));
    let o = run(c);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "system.yml:2:5: init image 1: image `{missing}`: it is not in the engine, and pulling it failed: "
        )),
        "{err}"
    );

    let image = TestImage::new("cli-platform");
    let other = other_arch();
    let y = yaml(dir.path(), &[&image.name]);
    let mut c = imagesmith_in(dir.path());
    c.arg("build")
        .arg(&y)
        .arg("--platform")
        .arg(format!("linux/{other}"))
        .arg("-o")
        .arg(dir.path().join("b.tar"));
    let o = run(c);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&image.name), "{err}");
    assert!(
        err.contains(&format!("not the requested platform linux/{other}")),
        "{err}"
    );
    assert!(image.containers().is_empty());
}

#[test]
fn quiet_prints_nothing_on_success() {
    let image = TestImage::new("cli-quiet");
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &[&image.name]);
    let out_tar = dir.path().join("out.tar");
    let mut c = imagesmith_in(dir.path());
    c.arg("-q").arg("build").arg(&y).arg("-o").arg(&out_tar);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "-q printed {:?}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(marker_in(&out_tar), image.name);
}

/// Starts a build whose output goes to a pipe nobody reads, so it blocks in the middle of
/// the export; returns once its export container exists (and the writer had time to fill
/// the pipe).
fn blocked_build(image: &TestImage, dir: &Path) -> Child {
    let y = yaml(dir, &[&image.name]);
    let mut c = imagesmith_in(dir);
    c.arg("build")
        .arg(&y)
        .arg("--jobs")
        .arg("1")
        .arg("-o")
        .arg("-")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("imagesmith runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !containers(&format!("label=org.imagesmith.pid={}", child.id())).is_empty() {
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("imagesmith ended before exporting: {s}");
        }
        assert!(Instant::now() < deadline, "no export container after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().ok().flatten().is_none(),
        "the build is blocked on its output"
    );
    child
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imagesmith did not exit within {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) with a pid of a child of ours that has not been reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// Sends `sig` to a build blocked in its export: it exits with `code` and leaves no
/// container (`what` names the test image).
fn interrupt_blocked(what: &str, sig: libc::c_int, code: i32) {
    let image = TestImage::new(what);
    let dir = tempfile::tempdir().expect("dir");
    let mut child = blocked_build(&image, dir.path());
    let pid = child.id();
    signal(&child, sig);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(45)), Some(code));
    assert_no_containers_of(pid);
    assert!(image.containers().is_empty());
}

#[test]
fn ctrl_c_while_an_export_is_blocked_exits_130_and_removes_the_container() {
    interrupt_blocked("cli-sigint", libc::SIGINT, 130);
}

#[test]
fn sigterm_while_an_export_is_blocked_exits_143_and_removes_the_container() {
    interrupt_blocked("cli-sigterm", libc::SIGTERM, 143);
}

#[test]
fn the_next_run_removes_what_a_sigkilled_run_left_and_nothing_of_live_runs() {
    let image = TestImage::new("cli-sigkill");
    let dir = tempfile::tempdir().expect("dir");
    let mut child = blocked_build(&image, dir.path());
    let killed = child.id();
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    // SIGKILL leaves the container; another test's build running at the same moment may
    // already have removed it (any later run does): what counts is that it is gone after
    // the next run, and that a live run's container never is.
    let left = containers(&format!("label=org.imagesmith.pid={killed}"));
    assert!(left.len() <= 1, "one export container: {left:?}");

    // A container of a live run on this host (this test process): must survive.
    let me = imagesmith::owner::Owner::current();
    let live = labelled_container(&image, me.labels());

    let other = TestImage::new("cli-sigkill-next");
    let y = yaml(dir.path(), &[&other.name]);
    let mut c = imagesmith_in(dir.path());
    c.arg("build")
        .arg(&y)
        .arg("-o")
        .arg(dir.path().join("next.tar"));
    let o = run(c);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        containers(&format!("label=org.imagesmith.pid={killed}")).is_empty(),
        "the next run removed the SIGKILLed run's container"
    );
    assert_eq!(
        image.containers(),
        vec![live.clone()],
        "the live run's container stays"
    );
    docker(&["rm", "-f", &live]);
}

#[test]
fn a_terminal_gets_progress_bars() {
    let image = TestImage::new("cli-tty");
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &[&image.name]);
    let out_tar = dir.path().join("out.tar");
    let pid_file = dir.path().join("imagesmith.pid");
    // The shell `script` starts writes its pid and becomes imagesmith (`exec`), so the file
    // holds imagesmith's pid, the one its containers are labelled with.
    let line = format!(
        "echo $$ > '{}'; exec '{}' build '{}' -o '{}'",
        pid_file.display(),
        env!("CARGO_BIN_EXE_imagesmith"),
        y.display(),
        out_tar.display()
    );
    // `script` (util-linux) runs the build with a pseudo-terminal as standard error, in the
    // environment of the other builds here (`imagesmith_in`).
    let env = imagesmith_in(dir.path());
    let mut c = Command::new("script");
    for (k, v) in env.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null());
    let o = c.output().expect("script runs");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("the shell wrote imagesmith's pid")
        .trim()
        .parse()
        .expect("a pid");
    assert_no_containers_of(pid);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{shown}");
    assert_eq!(marker_in(&out_tar), image.name);
    assert!(
        shown.contains(&format!("exporting docker.io/library/{}", image.name)),
        "{shown:?}"
    );
    assert!(
        shown.contains("\x1b[2K"),
        "a bar was drawn and cleared: {shown:?}"
    );
    assert!(
        shown.contains(&format!("exported docker.io/library/{}", image.name)),
        "log lines still come through: {shown:?}"
    );
    assert!(image.containers().is_empty());
}

#[test]
fn the_next_run_removes_the_temporary_file_of_a_sigkilled_run() {
    // Big enough that the build is still writing when it is killed.
    let big = vec![7u8; 96 << 20];
    let image = busybox_image("cli-sigkill-tmp", &[("big", &big)]);
    let dir = tempfile::tempdir().expect("dir");
    let y = yaml(dir.path(), &[&image.name]);
    let target = dir.path().join("k.tar");
    let temporaries = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".k.tar.") && n.ends_with(".tmp"))
            .collect()
    };
    let mut c = imagesmith_in(dir.path());
    c.arg("build").arg(&y).arg("-o").arg(&target);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().expect("imagesmith runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    while temporaries().is_empty() {
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the build ended before its temporary file was seen"
        );
        assert!(Instant::now() < deadline, "no temporary file after 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    let left = temporaries();
    assert_eq!(left.len(), 1, "SIGKILL leaves the temporary file: {left:?}");
    assert!(!target.exists());

    let mut next = imagesmith_in(dir.path());
    next.arg("build").arg(&y).arg("-o").arg(&target);
    let o = run(next);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("removed {}", dir.path().join(&left[0]).display())),
        "{err}"
    );
    assert!(temporaries().is_empty(), "left: {:?}", temporaries());
    assert!(target.is_file());
}
