//! `pkg/init/usr/bin/start-bundle`, the runtime.json applier of the init, run on this host
//! with runc (`--root`): the generated rootfs mounts, user mounts and mkdir entries, the
//! container's output and exit status, nothing left mounted afterwards, detached runs and
//! `--cleanup`, and refusals. Needs root and runc (scripts/setup.sh), not the engine.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::pkg::{start_bundle, start_bundle_script};
use common::{busybox_rootfs, run_ok, unique};

/// A config.json as imagesmith writes it (SPEC §4.4 defaults) running `args`.
fn config(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"{{"ociVersion":"1.2.1","process":{{"user":{{"uid":0,"gid":0}},"args":[{}],"env":["PATH=/bin"],"cwd":"/","capabilities":{{}}}},"root":{{"path":"rootfs"}},"mounts":[{{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}},{{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","nodev","noexec","relatime"]}},{{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev"]}}],"linux":{{"resources":{{}},"namespaces":[{{"type":"pid"}},{{"type":"mount"}}]}}}}"#,
        args.join(",")
    )
}

/// A writable bundle `containers/onboot/000-<name>` under `root`, its image a static busybox
/// ([`busybox_rootfs`]) with `/srv/only-in-image`.
fn bundle(root: &Path, name: &str, args: &[&str], user_mounts: &str, mkdir: &str) -> PathBuf {
    let rel = format!("containers/onboot/000-{name}");
    let b = root.join(&rel);
    for d in ["lower/srv", "tmp", "rootfs"] {
        fs::create_dir_all(b.join(d)).expect("mkdir");
    }
    busybox_rootfs(&b.join("lower"));
    fs::write(b.join("lower/srv/only-in-image"), "from the image\n").expect("write");
    fs::write(b.join("config.json"), config(args)).expect("write");
    let p = format!("/{rel}");
    let runtime = format!(
        r#"{{
    "cgroups": [],
    "mounts": [
        {{"destination": "{p}/tmp", "type": "tmpfs", "source": "tmpfs"}},
        {{"destination": "{p}/tmp", "options": ["remount", "private"]}},
        {{"destination": "{p}/rootfs", "type": "overlay", "source": "overlay",
          "options": ["lowerdir={p}/lower", "upperdir={p}/tmp/upper", "workdir={p}/tmp/work"]}}{user_mounts}
    ],
    "mkdir": [{mkdir}],
    "interfaces": [],
    "bindNS": {{"cgroup": "", "ipc": "", "mnt": "", "net": "", "pid": "", "user": "", "uts": ""}},
    "namespace": ""
}}"#
    );
    fs::write(b.join("runtime.json"), runtime).expect("write");
    b
}

fn start(root: &Path, args: &[&str], bundle: &Path) -> Output {
    start_bundle(root)
        .args(args)
        .arg(bundle)
        .output()
        .expect("running start-bundle")
}

fn mounts_under(root: &Path) -> Vec<String> {
    let prefix = root.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

#[test]
fn runs_a_bundle_to_completion_and_undoes_its_mounts() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    fs::create_dir_all(root.join("data")).expect("mkdir");
    fs::write(root.join("data/shared.txt"), "bound\n").expect("write");
    let user = r#",
        {"destination": "/var/made/by-mount", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]},
        {"destination": "/containers/onboot/000-a/rootfs/mnt", "source": "/data", "options": ["rbind", "ro"]}"#;
    let b = bundle(
        root,
        "a",
        &[
            "/bin/sh",
            "-c",
            "echo pid=$$; cat /srv/only-in-image /mnt/shared.txt; [ -d /relative/dir ] && echo relative; exit 3",
        ],
        user,
        r#""/var/made/by-mkdir", "relative/dir""#,
    );
    let name = unique("a");
    let out = start(root, &["--name", &name], &b);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the container's status: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A relative mkdir entry is inside the container's root.
    assert_eq!(stdout, "pid=1\nfrom the image\nbound\nrelative\n");
    assert!(root.join("var/made/by-mount").is_dir());
    assert!(root.join("var/made/by-mkdir").is_dir());
    assert_eq!(mounts_under(root), Vec::<String>::new());
}

#[test]
fn detached_run_then_cleanup() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    let b = bundle(root, "svc", &["/bin/sleep", "600"], "", "");
    let name = unique("svc");
    // The container inherits start-bundle's output (runc's pass-through mode): not a pipe
    // here, or reading it to the end would wait for the container.
    let log = root.join("detached.log");
    let out = start_bundle(root)
        .args(["--detach", "--name", &name])
        .arg(&b)
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(fs::File::create(root.join("detached.err")).expect("log"))
        .status()
        .expect("running start-bundle");
    assert!(
        out.success(),
        "{}",
        fs::read_to_string(root.join("detached.err")).unwrap_or_default()
    );
    let state = run_ok(Command::new("runc").args(["state", &name]));
    let running = String::from_utf8_lossy(&state.stdout).contains("\"running\"");
    let _ = Command::new("runc").args(["kill", &name, "KILL"]).output();
    let _ = Command::new("runc")
        .args(["delete", "--force", &name])
        .output();
    assert!(running, "the service is not running");
    assert_eq!(mounts_under(root).len(), 2, "tmp and rootfs stay mounted");
    let out = start(root, &["--cleanup"], &b);
    assert!(out.status.success());
    assert_eq!(mounts_under(root), Vec::<String>::new());
}

#[test]
fn refuses_what_it_cannot_do_and_undoes_partial_work() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    let b = bundle(root, "bad", &["/bin/true"], "", "");
    let runtime = fs::read_to_string(b.join("runtime.json")).expect("read");
    fs::write(
        b.join("runtime.json"),
        runtime.replace(r#""net": """#, r#""net": "/run/netns/x""#),
    )
    .expect("write");
    let out = start(root, &[], &b);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("000-bad") && err.contains("net namespace"),
        "{err}"
    );
    assert_eq!(mounts_under(root), Vec::<String>::new());

    // A mount that fails: the ones before it are undone.
    let b = bundle(
        root,
        "badmount",
        &["/bin/true"],
        r#", {"destination": "/x", "type": "no-such-fs", "source": "x"}"#,
        "",
    );
    let out = start(root, &[], &b);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot mount x"));
    assert_eq!(mounts_under(root), Vec::<String>::new());

    fs::write(b.join("runtime.json"), "{\"mounts\": [").expect("write");
    let out = start(root, &[], &b);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid JSON"));
}

#[test]
fn dump_decodes_go_escapes() {
    let d = tempfile::tempdir().expect("tempdir");
    fs::write(d.path().join("config.json"), "{}").expect("write");
    fs::write(
        d.path().join("runtime.json"),
        r#"{"mkdir": ["/a\u003cb\u0026c", "/\u00e9\ud83d\ude00"], "namespace": "", "n": [1, true, null]}"#,
    )
    .expect("write");
    let out = run_ok(
        Command::new("sh")
            .arg(start_bundle_script())
            .arg("--dump")
            .arg(d.path()),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "mkdir.0\t/a<b&c\nmkdir.1\t/é😀\nnamespace\t\nn.0\t1\nn.1\ttrue\nn.2\tnull\n"
    );
}
