//! Boots `examples/minimal.yml` under qemu (software emulation, serial console) and checks,
//! on the console, that the system really ran: the onboot container under runc in its own
//! PID namespace (PID 1) printing a file that exists only in its image, then the service's
//! first line, then the onshutdown container, then the power-off. The VM powers itself off:
//! `imagesmith.boottest=1` on the kernel command line makes the init call `poweroff` once
//! the services run (pkg/init/etc/init.d/rcS), and busybox init runs the onshutdown
//! containers on the way down. Booted twice: with a gzip initrd (the default) and a zstd one.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pkg::{build, minimal_yml};
use common::require_engine;

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Strips what the serial console adds around text: carriage returns and ANSI sequences.
fn clean(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Boots the kernel+initrd in `dir` (named `minimal`), returning the console lines, whether
/// qemu ended by itself, and how long it ran.
fn boot(dir: &Path) -> (Vec<String>, bool, Duration) {
    let cmdline = std::fs::read_to_string(dir.join("minimal-cmdline")).expect("cmdline");
    let append = format!("{} imagesmith.boottest=1 panic=-1", cmdline.trim());
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nographic", "-m", "512", "-no-reboot"])
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(dir.join("minimal-kernel"))
        .arg("-initrd")
        .arg(dir.join("minimal-initrd.img"))
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-system-x86_64 (run scripts/setup.sh)");
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("qemu has no standard output");
    };
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = clean(&String::from_utf8_lossy(&line));
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let mut status = None;
    while start.elapsed() < BOOT_TIMEOUT {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let took = start.elapsed();
    let _ = reader.join();
    let lines: Vec<String> = rx.try_iter().collect();
    if let Some(s) = status {
        assert!(s.success(), "qemu failed ({s}):\n{}", lines.join("\n"));
    }
    (lines, status.is_some(), took)
}

#[test]
fn minimal_example_boots_under_qemu() {
    builds_and_boots("gzip", [0x1f, 0x8b]);
}

/// The same system with a zstd initrd (`--initrd-compression zstd`): Debian's kernel unpacks
/// it (its window is small enough for the kernel's buffer).
#[test]
fn minimal_example_with_a_zstd_initrd_boots_under_qemu() {
    builds_and_boots("zstd", [0x28, 0xb5]);
}

/// Builds `examples/minimal.yml` as `kernel+initrd` with the initrd compressed by `codec`
/// (whose first two bytes are `magic`), boots it and checks the console.
fn builds_and_boots(codec: &str, magic: [u8; 2]) {
    require_engine();
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let out = d.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    build(
        &yml,
        &[
            "-f",
            "kernel+initrd",
            "--initrd-compression",
            codec,
            "--dir",
            out.to_str().expect("utf-8"),
        ],
    );
    let initrd = std::fs::read(out.join("minimal-initrd.img")).expect("initrd");
    assert_eq!(initrd[..2], magic, "a {codec} initrd");
    let (lines, ended, took) = boot(&out);
    let console = lines.join("\n");
    eprintln!(
        "{codec} initrd: booted, ran and powered off in {:.1} s",
        took.as_secs_f64()
    );
    let find = |from: usize, what: &str| -> usize {
        lines[from..]
            .iter()
            .position(|l| l.contains(what))
            .map(|i| i + from)
            .unwrap_or_else(|| {
                panic!("`{what}` not on the console (after line {from}):\n{console}")
            })
    };
    // In this order: onboot under runc (PID 1 in its namespace, its image's own file), the
    // service's first line, the onshutdown container, the kernel powering off.
    let a = find(0, "hello: running as pid 1");
    let b = find(
        a,
        "hello: message.txt says: Hello from the imagesmith hello package.",
    );
    let c = find(b, "greeter: service started as pid 1");
    let p = find(c, "imagesmith-init: boot test: powering off");
    let e = find(p, "goodbye: onshutdown ran");
    find(e, "reboot: Power down");
    assert!(
        ended,
        "the VM did not power off within {BOOT_TIMEOUT:?}:\n{console}"
    );
    assert!(
        !console.contains("Kernel panic"),
        "kernel panic:\n{console}"
    );
}
