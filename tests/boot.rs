//! Boots `examples/minimal.yml` under qemu (software emulation, serial console) and checks,
//! on the console, that the system really ran: the onboot container under runc in its own
//! PID namespace (PID 1) printing a file that exists only in its image, then the service's
//! first line, then the onshutdown container, then the power-off. The VM powers itself off:
//! `imagesmith.boottest=1` on the kernel command line makes the init call `poweroff` once
//! the services run (pkg/init/etc/init.d/rcS), and busybox init runs the onshutdown
//! containers on the way down.

mod common;

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
    require_engine();
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let out = d.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    build(
        &yml,
        &["-f", "kernel+initrd", "--dir", out.to_str().expect("utf-8")],
    );
    let vm = boot(&out);
    eprintln!(
        "booted, ran and powered off in {:.1} s",
        vm.took.as_secs_f64()
    );
    qemu::assert_minimal_ran(&vm, BOOT_TIMEOUT);
}
