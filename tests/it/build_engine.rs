//! End-to-end builds through the real Docker engine: the bundle layout of an onboot and a
//! service container, the filter, container cleanup, and flat memory on a large image.

use crate::common;

use std::fs;
use std::io::Read;

use common::*;

#[test]
fn builds_writable_and_readonly_bundles() {
    let img = busybox_image("bundle", &[("srv/marker.txt", b"marker\n")]);
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(
        dir.path(),
        "system.yml",
        &format!(
            "onboot:\n  - name: hello\n    image: {img}\n    command: [\"/bin/cat\", \"/srv/marker.txt\"]\n\
             services:\n  - name: svc\n    image: {img}\n    readonly: true\n",
            img = img.name
        ),
    );
    let out = dir.path().join("out.tar");
    run_ok(imagesmith().arg("build").arg(&yml).arg("-o").arg(&out));
    let items = read_tar_file(&out);
    for i in items.iter().filter(|i| i.path.ends_with("/config.json")) {
        common::oci::assert_schema_valid(&i.data);
    }
    let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    let pos = |p: &str| {
        paths
            .iter()
            .position(|x| *x == p)
            .unwrap_or_else(|| panic!("{p} missing from {paths:?}"))
    };
    let ob = "containers/onboot/000-hello";
    // Writable layout, in order: lower/, config.json, tmp/, rootfs/, runtime.json.
    let order = [
        pos(ob),
        pos(&format!("{ob}/lower")),
        pos(&format!("{ob}/lower/srv/marker.txt")),
        pos(&format!("{ob}/config.json")),
        pos(&format!("{ob}/tmp")),
        pos(&format!("{ob}/rootfs")),
        pos(&format!("{ob}/runtime.json")),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "writable bundle order {order:?}"
    );
    // The service reuses the same image: it is placed once, the service's rootfs is empty.
    let sv = "containers/services/svc";
    let order = [
        pos(sv),
        pos(&format!("{sv}/config.json")),
        pos(&format!("{sv}/rootfs")),
        pos(&format!("{sv}/runtime.json")),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "read-only bundle order {order:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with(&format!("{sv}/rootfs/")))
    );
    let runtime: serde_json::Value =
        serde_json::from_slice(&items[pos(&format!("{sv}/runtime.json"))].data).unwrap();
    assert_eq!(runtime["mounts"][0]["source"], format!("/{ob}/lower"));

    let marker = &items[pos(&format!("{ob}/lower/srv/marker.txt"))];
    assert_eq!(marker.data, b"marker\n");
    for gone in [".dockerenv", "etc/hostname", "dev/console"] {
        assert!(
            !paths.contains(&format!("{ob}/lower/{gone}").as_str()),
            "{gone} not filtered"
        );
    }
    let hosts = &items[pos(&format!("{ob}/lower/etc/hosts"))];
    assert!(String::from_utf8_lossy(&hosts.data).starts_with("127.0.0.1       localhost\n"));
    let config: serde_json::Value =
        serde_json::from_slice(&items[pos(&format!("{ob}/config.json"))].data).unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/bin/cat", "/srv/marker.txt"])
    );
    assert_eq!(config["process"]["env"], serde_json::json!(["PATH=/bin"]));
    let ro: serde_json::Value =
        serde_json::from_slice(&items[pos(&format!("{sv}/config.json"))].data).unwrap();
    assert_eq!(ro["root"]["readonly"], true);
    assert!(img.containers().is_empty(), "containers left behind");
}

/// A 300 MB image (made here, incompressible) builds with a peak RSS far below its size:
/// nothing holds an image in memory (SPEC §7: at most 32 MiB).
#[test]
fn large_image_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    busybox_rootfs(&root);
    fs::create_dir_all(root.join("data")).unwrap();
    // 3 × 100 MiB of random bytes.
    let mut urandom = fs::File::open("/dev/urandom").unwrap();
    for i in 0..3 {
        let mut f = fs::File::create(root.join(format!("data/blob{i}"))).unwrap();
        std::io::copy(&mut (&mut urandom).take(100 << 20), &mut f).unwrap();
    }
    let img = TestImage::import(&root, "large", &["CMD [\"/bin/sh\"]"]);
    fs::remove_dir_all(&root).unwrap();
    let yml = write_file(
        dir.path(),
        "large.yml",
        &format!(
            "init:\n  - {img}\nonboot:\n  - name: big\n    image: {img}\n",
            img = img.name
        ),
    );
    let out = dir.path().join("large.tar");
    let m = run_measured(
        imagesmith()
            .arg("build")
            .arg(&yml)
            .arg("-o")
            .arg(&out)
            .arg("--jobs")
            .arg("2"),
    );
    assert_eq!(m.status, 0, "build failed: {}", m.stderr);
    let size = fs::metadata(&out).unwrap().len();
    assert!(
        size > 600 << 20,
        "output holds the image twice ({size} bytes)"
    );
    eprintln!(
        "peak RSS {} KiB for a {} MiB output",
        m.max_rss_kib,
        size >> 20
    );
    assert!(
        m.max_rss_kib < 32 * 1024,
        "peak RSS {} KiB ≥ 32 MiB",
        m.max_rss_kib
    );
    assert!(img.containers().is_empty(), "containers left behind");
}

/// Ctrl-C during a build into an existing output file: exit 130, the old file untouched, no
/// temporary file left beside it, no container left.
#[test]
fn sigint_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    busybox_rootfs(&root);
    let mut urandom = fs::File::open("/dev/urandom").unwrap();
    let mut f = fs::File::create(root.join("blob")).unwrap();
    std::io::copy(&mut (&mut urandom).take(150 << 20), &mut f).unwrap();
    drop(f);
    let img = TestImage::import(&root, "sigint", &["CMD [\"/bin/sh\"]"]);
    fs::remove_dir_all(&root).unwrap();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("system.tar");
    fs::write(&out, b"previous output").unwrap();
    // The same image several times, exported for each: long enough to interrupt.
    let yml = write_file(
        dir.path(),
        "s.yml",
        &format!(
            "init:\n  - {img}\nonboot:\n  - name: a\n    image: {img}\n",
            img = img.name
        ),
    );
    let mut child = imagesmith()
        .arg("build")
        .arg(&yml)
        .arg("-o")
        .arg(&out)
        .arg("--jobs")
        .arg("1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the build is writing its temporary file.
    let start = std::time::Instant::now();
    loop {
        let tmp = fs::read_dir(&out_dir).unwrap().count() > 1;
        if tmp && !img.containers().is_empty() {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "the build never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(fs::read(&out).unwrap(), b"previous output");
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    assert!(img.containers().is_empty(), "containers left behind");
}

/// The same spec built with `--jobs 1` and `--jobs 4` gives byte-identical output (SPEC §5).
#[test]
fn output_is_identical_whatever_jobs() {
    let a = busybox_image("jobs-a", &[("a.txt", b"a")]);
    let b = busybox_image("jobs-b", &[("b.txt", b"b")]);
    let c = busybox_image("jobs-c", &[("c.txt", b"c")]);
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(
        dir.path(),
        "j.yml",
        &format!(
            "init:\n  - {a}\nonboot:\n  - name: b\n    image: {b}\n  - name: c\n    image: {c}\n    readonly: true\n\
             services:\n  - name: a\n    image: {a}\n  - name: c2\n    image: {c}\n\
             files:\n  - path: etc/motd\n    contents: hi\n",
            a = a.name,
            b = b.name,
            c = c.name
        ),
    );
    for ext in ["tar", "tar.gz"] {
        let mut outputs = Vec::new();
        for jobs in ["1", "4", "4"] {
            let out = dir.path().join(format!("out-{jobs}.{ext}"));
            run_ok(
                imagesmith()
                    .arg("build")
                    .arg(&yml)
                    .arg("-o")
                    .arg(&out)
                    .args(["--jobs", jobs]),
            );
            outputs.push(fs::read(&out).unwrap());
        }
        assert!(
            outputs[0] == outputs[1] && outputs[1] == outputs[2],
            "the {ext} output changed between builds"
        );
    }
    for i in [&a, &b, &c] {
        assert!(i.containers().is_empty(), "containers left behind");
    }
}

/// Standard output closed before the output is complete: the artifact is incomplete, so
/// the exit status is not 0 (SPEC §1), and no container is left.
#[test]
fn closed_stdout_is_a_failure() {
    let img = busybox_image("epipe", &[("blob", &vec![7u8; 4 << 20])]);
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(dir.path(), "p.yml", &format!("init:\n  - {}\n", img.name));
    let mut child = imagesmith()
        .arg("build")
        .arg(&yml)
        .args(["-o", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 512];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // the reader goes away, like `| head -c 512`
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("closed standard output before the end"),
        "{stderr}"
    );
    assert!(img.containers().is_empty(), "containers left behind");
}
