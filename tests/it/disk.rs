//! The disk formats (`raw-efi`, `qcow2-efi`, `iso-efi`) of `examples/minimal.yml`, with the
//! loader of `pkg/efi`: each is built twice (identical bytes), checked by the tools of its
//! format (`sgdisk -v`, `fsck.fat -n`, `qemu-img check`, `xorriso -report_el_torito`), and
//! booted under qemu with OVMF (software emulation) into the assembled system: the kernel
//! command line and the onboot container's output are seen on the serial console, and the
//! VM powers off by itself (`imagesmith.boottest=1` in the spec's command line, as the
//! loader entry carries it). `--size` sizes the raw disk; a size too small fails and leaves
//! nothing behind; a missing loader image is an error that says how to build it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::pkg::{build, efi_package, minimal_yml};
use common::qemu::{self, Console};
use common::{imagesmith, run_ok};

/// OVMF, then systemd-boot, then the system, all emulated: slower than `-kernel`.
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);
/// The command line the spec gives (the loader entry carries it).
const CMDLINE: &str = "console=ttyS0 imagesmith.boottest=1 panic=-1";

/// One VM at a time: they are CPU-bound under emulation.
static VM: Mutex<()> = Mutex::new(());

/// `examples/minimal.yml` (this process's package images) with the boot test's command
/// line, in `dir`.
fn spec(dir: &Path) -> PathBuf {
    let yml = minimal_yml(dir);
    let text = std::fs::read_to_string(&yml).expect("reading minimal.yml");
    let from = "cmdline: \"console=ttyS0\"";
    assert!(text.contains(from), "examples/minimal.yml lost {from}");
    std::fs::write(&yml, text.replace(from, &format!("cmdline: \"{CMDLINE}\""))).expect("write");
    yml
}

/// Builds `format` into `<dir>/<sub>/` with the extra arguments; returns the output file.
fn build_disk(yml: &Path, dir: &Path, sub: &str, format: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(sub);
    std::fs::create_dir_all(&out).expect("mkdir");
    let loader = efi_package();
    let mut args = vec![
        "-f",
        format,
        "--efi-loader",
        &loader,
        "--dir",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    build(yml, &args);
    let ext = match format {
        "raw-efi" => "img",
        "qcow2-efi" => "qcow2",
        _ => "iso",
    };
    let file = out.join(format!("minimal-efi.{ext}"));
    let names: Vec<_> = std::fs::read_dir(&out)
        .expect("listing")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "only the image in {}: {names:?}",
        out.display()
    );
    assert!(file.is_file(), "{} missing", file.display());
    file
}

/// Builds `format` twice; the two outputs must be byte-identical. Returns the first.
fn build_twice(format: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = spec(d.path());
    let a = build_disk(&yml, d.path(), "a", format, &[]);
    let b = build_disk(&yml, d.path(), "b", format, &[]);
    let (x, y) = (
        std::fs::read(&a).expect("read"),
        std::fs::read(&b).expect("read"),
    );
    assert!(x.len() > 1 << 20, "{format}: {} bytes", x.len());
    assert!(x == y, "{format}: two builds differ");
    (d, a)
}

fn tool(cmd: &mut Command) -> String {
    let out = run_ok(cmd);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Boots `drive` (qemu `-drive` options naming the image) with OVMF.
fn boot(drive: &str) -> Console {
    let _one = VM.lock().unwrap_or_else(|p| p.into_inner());
    let mut q = Command::new("qemu-system-x86_64");
    q.args(["-accel", "tcg", "-nographic", "-m", "1024", "-no-reboot"])
        .args(["-nic", "none", "-snapshot"])
        .arg("-bios")
        .arg(qemu::ovmf())
        .args(["-drive", drive]);
    let vm = qemu::run(q, BOOT_TIMEOUT);
    eprintln!(
        "{drive}: booted, ran and powered off in {:.1} s",
        vm.took.as_secs_f64()
    );
    vm
}

fn assert_booted(vm: &Console) {
    // systemd-boot handed the entry's command line to the kernel (after an `initrd=` it
    // adds for kernels without the initrd media protocol)
    let i = vm.find(0, "Kernel command line:");
    assert!(
        vm.lines[i].trim_end().ends_with(CMDLINE),
        "the kernel got another command line: {}",
        vm.lines[i]
    );
    qemu::assert_minimal_ran(vm, BOOT_TIMEOUT);
}

/// The EFI system partition of a raw disk (from 1 MiB to the end of its GPT entry), copied
/// out for `fsck.fat`.
fn check_esp(disk: &Path, dir: &Path) {
    let info = tool(Command::new("sgdisk").arg("-i").arg("1").arg(disk));
    assert!(
        info.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "partition 1 is not an EFI system partition:\n{info}"
    );
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in:\n{info}"))
    };
    let (first, last) = (field("First sector: "), field("Last sector: "));
    assert_eq!(first, 2048, "partition aligned at 1 MiB");
    let bytes = std::fs::read(disk).expect("read");
    let esp = &bytes[(first * 512) as usize..((last + 1) * 512) as usize];
    let p = dir.join("esp.img");
    std::fs::write(&p, esp).expect("write");
    let fsck = tool(Command::new("fsck.fat").arg("-n").arg(&p));
    assert!(
        !fsck.contains("differ") && !fsck.contains("Free cluster summary"),
        "{fsck}"
    );
    std::fs::remove_file(&p).expect("rm");
}

#[test]
fn raw_efi_is_reproducible_checks_clean_and_boots() {
    let (d, img) = build_twice("raw-efi");
    let verify = tool(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(verify.contains("No problems found"), "{verify}");
    check_esp(&img, d.path());
    let vm = boot(&format!("file={},format=raw,if=virtio", img.display()));
    assert_booted(&vm);
}

#[test]
fn qcow2_efi_is_reproducible_checks_clean_and_boots() {
    let (_d, img) = build_twice("qcow2-efi");
    let check = tool(
        Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&img),
    );
    assert!(check.contains("No errors were found"), "{check}");
    let info = tool(
        Command::new("qemu-img")
            .args(["info", "-f", "qcow2"])
            .arg(&img),
    );
    assert!(info.contains("compat: 1.1"), "{info}");
    let vm = boot(&format!("file={},format=qcow2,if=virtio", img.display()));
    assert_booted(&vm);
}

#[test]
fn iso_efi_is_reproducible_has_a_uefi_entry_and_boots() {
    let (_d, iso) = build_twice("iso-efi");
    let report = tool(
        Command::new("xorriso")
            .arg("-indev")
            .arg(&iso)
            .args(["-report_el_torito", "plain"]),
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("El Torito boot img") && l.contains("UEFI")),
        "no UEFI El Torito entry:\n{report}"
    );
    let vm = boot(&format!(
        "file={},media=cdrom,if=ide,format=raw",
        iso.display()
    ));
    assert_booted(&vm);
}

#[test]
fn size_sets_the_raw_disk_and_too_small_leaves_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = spec(d.path());
    let img = build_disk(&yml, d.path(), "big", "raw-efi", &["--size", "300M"]);
    assert_eq!(std::fs::metadata(&img).expect("stat").len(), 300 << 20);
    let verify = tool(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(verify.contains("No problems found"), "{verify}");
    check_esp(&img, d.path());

    for format in ["raw-efi", "qcow2-efi"] {
        let out = d.path().join(format!("small-{format}"));
        std::fs::create_dir(&out).expect("mkdir");
        let loader = efi_package();
        let res = imagesmith()
            .args([
                "-q",
                "build",
                "-f",
                format,
                "--size",
                "1M",
                "--efi-loader",
                &loader,
            ])
            .arg("--dir")
            .arg(&out)
            .arg(&yml)
            .output()
            .expect("running imagesmith");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{format} --size 1M succeeded");
        assert!(
            err.contains(format) && err.contains("--size") && err.contains("MiB"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(&out).expect("ls").collect();
        assert!(left.is_empty(), "{format}: left behind {left:?}");
    }
}

#[test]
fn a_missing_loader_image_says_how_to_build_it() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = spec(d.path());
    let missing = format!("{}:dev", common::unique("no-efi"));
    let res = imagesmith()
        .args(["-q", "build", "-f", "raw-efi", "--efi-loader", &missing])
        .arg("--dir")
        .arg(d.path())
        .arg(&yml)
        .output()
        .expect("running imagesmith");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains(&missing) && err.contains("imagesmith pkg build pkg/efi"),
        "{err}"
    );
    assert!(!d.path().join("minimal-efi.img").exists());
}
