//! Boots `examples/minimal.yml` under qemu (software emulation, serial console) and checks,
//! on the console, that the system really ran: the onboot container under runc in its own
//! PID namespace printing a file of its image, then the service's first line, then the
//! onshutdown container, then the power-off. The VM powers itself off:
//! `imagesmith.boottest=1` on the kernel command line makes the init call `poweroff` once
//! the services run (pkg/init/etc/init.d/rcS), and busybox init runs the onshutdown
//! containers on the way down. Booted twice: with a gzip initrd (the default) and a zstd one.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::pkg::{build, minimal_yml};
use common::qemu::{self, Console};
use common::require_engine;

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Boots the kernel+initrd in `dir` (named `minimal`).
fn boot(dir: &Path) -> Console {
    let cmdline = std::fs::read_to_string(dir.join("minimal-cmdline")).expect("cmdline");
    let append = format!("{} imagesmith.boottest=1 panic=-1", cmdline.trim());
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-nographic", "-m", "512", "-no-reboot"])
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(dir.join("minimal-kernel"))
        .arg("-initrd")
        .arg(dir.join("minimal-initrd.img"))
        .arg("-append")
        .arg(&append);
    qemu::run(qemu, BOOT_TIMEOUT)
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
    let vm = boot(&out);
    eprintln!(
        "{codec} initrd: booted, ran and powered off in {:.1} s",
        vm.took.as_secs_f64()
    );
    qemu::assert_minimal_ran(&vm, BOOT_TIMEOUT);
}
