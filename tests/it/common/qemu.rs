//! Booting under qemu (software emulation, serial console on standard output): [`run`]
//! starts a VM, collects its console lines ([`clean`]ed of carriage returns and ANSI
//! sequences) until it ends by itself or a timeout kills it; [`Console::find`] checks that
//! lines appear in order; [`ovmf`] is Debian's UEFI firmware for the disk formats.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Strips what the serial console adds around text: carriage returns and ANSI sequences.
pub fn clean(line: &str) -> String {
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

/// What a VM printed, whether it ended by itself, and how long it ran.
pub struct Console {
    pub lines: Vec<String>,
    pub ended: bool,
    pub took: Duration,
}

impl Console {
    /// The index of the first line at or after `from` containing `what`; fails the test
    /// with the whole console otherwise.
    pub fn find(&self, from: usize, what: &str) -> usize {
        self.lines[from..]
            .iter()
            .position(|l| l.contains(what))
            .map(|i| i + from)
            .unwrap_or_else(|| {
                panic!(
                    "`{what}` not on the console (after line {from}):\n{}",
                    self.lines.join("\n")
                )
            })
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Runs `qemu` (a `qemu-system-*` command with its arguments; standard input, output and
/// error are set here) until it ends or `timeout` passes (then it is killed). A VM that ends
/// with a failure status fails the test.
pub fn run(mut qemu: Command, timeout: Duration) -> Console {
    let start = Instant::now();
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {qemu:?} (run scripts/setup.sh): {e}"));
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
    while start.elapsed() < timeout {
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
    Console {
        lines,
        ended: status.is_some(),
        took,
    }
}

/// Debian's OVMF firmware image for `-bios` (package `ovmf`); fails the test when missing.
pub fn ovmf() -> PathBuf {
    let p = PathBuf::from("/usr/share/ovmf/OVMF.fd");
    assert!(
        p.is_file(),
        "{} missing (apt-get install ovmf, or run scripts/setup.sh)",
        p.display()
    );
    p
}

/// Checks that the system of `examples/minimal.yml` ran, in this order: onboot under runc
/// (PID 1 in its namespace, printing its image's own file), the service's first line, the
/// onshutdown container, the kernel powering off; that the VM ended by itself (within
/// `timeout`), and without a kernel panic.
pub fn assert_minimal_ran(vm: &Console, timeout: Duration) {
    let console = vm.text();
    let a = vm.find(0, "hello: running as pid 1");
    let b = vm.find(
        a,
        "hello: message.txt says: Hello from the imagesmith hello package.",
    );
    let c = vm.find(b, "greeter: service started as pid 1");
    let p = vm.find(c, "imagesmith-init: boot test: powering off");
    let e = vm.find(p, "goodbye: onshutdown ran");
    vm.find(e, "reboot: Power down");
    assert!(
        vm.ended,
        "the VM did not power off within {timeout:?}:\n{console}"
    );
    assert!(
        !console.contains("Kernel panic"),
        "kernel panic:\n{console}"
    );
}
