//! The tars imagesmith writes read back identically with GNU tar and Python's `tarfile`:
//! long names and link targets, binary extended attributes, big ids, devices, fifos,
//! setuid bits.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::run_ok;
use imagesmith::archive::{Entry, Kind, TarSink, append_bytes};

/// The sample entries written as `t.tar` in a new temporary directory (returned with the
/// path, to keep it), and the entries.
fn sample() -> (tempfile::TempDir, PathBuf, Vec<Entry>) {
    let long = "dir/".repeat(60) + "file";
    let target = "../".repeat(70) + "target";
    let mut f = Entry::file(long.clone(), 0o4755, 1_577_836_800, 5);
    f.uid = 3_000_000;
    f.gid = 4_000_000;
    f.pax.push((
        "SCHILY.xattr.security.capability".into(),
        vec![
            1, 0, 0, 2, b'\n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    ));
    let entries = vec![
        Entry::dir("d", 0o755, 1),
        f,
        Entry::symlink("s", target, 0o777, 2),
        Entry::new("h", Kind::Link(long.into_bytes()), 0o644, 3, 0),
        Entry::new("c", Kind::Char { major: 1, minor: 3 }, 0o666, 4, 0),
        Entry::new("p", Kind::Fifo, 0o600, 6, 0),
    ];
    let mut sink = TarSink::new(Vec::new());
    for e in &entries {
        let data: &[u8] = if e.kind == Kind::File { b"hello" } else { b"" };
        append_bytes(&mut sink, e, data).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tar");
    std::fs::write(&path, sink.finish().unwrap()).unwrap();
    (dir, path, entries)
}

#[test]
fn python_tarfile_reads_what_we_write() {
    let (_dir, path, entries) = sample();
    let script = r#"
import sys, tarfile
for m in tarfile.open(sys.argv[1]):
    x = m.pax_headers.get("SCHILY.xattr.security.capability", "")
    print("|".join([m.name, str(m.type, "ascii"), oct(m.mode), str(m.uid), str(m.gid), m.linkname,
                    str(m.devmajor), str(m.devminor), str(len(x.encode("utf-8", "surrogateescape")))]))
"#;
    let out = run_ok(Command::new("python3").arg("-c").arg(script).arg(&path));
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), entries.len());
    let f = lines[1].split('|').collect::<Vec<_>>();
    assert_eq!(f[0], String::from_utf8_lossy(&entries[1].path));
    assert_eq!(
        (f[1], f[2], f[3], f[4]),
        ("0", "0o4755", "3000000", "4000000")
    );
    assert_eq!(f[8], "20", "the 20-byte capability survives");
    let s = lines[2].split('|').collect::<Vec<_>>();
    assert_eq!(s[5], "../".repeat(70) + "target");
    let h = lines[3].split('|').collect::<Vec<_>>();
    assert_eq!((h[1], h[5]), ("1", f[0]));
    let c = lines[4].split('|').collect::<Vec<_>>();
    assert_eq!((c[1], c[6], c[7]), ("3", "1", "3"));
    assert!(lines[5].starts_with("p|6|"));
}

#[test]
fn gnu_tar_lists_what_we_write() {
    let (dir, path, entries) = sample();
    let out = run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&path),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), entries.len(), "{text}");
    assert!(
        lines[1].starts_with("-rwsr-xr-x 3000000/4000000"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(&String::from_utf8_lossy(&entries[1].path).to_string()));
    assert!(
        lines[2].ends_with(&format!("s -> {}", "../".repeat(70) + "target")),
        "{}",
        lines[2]
    );
    assert!(
        lines[4].starts_with("crw-rw-rw-") && lines[4].contains("1,3"),
        "{}",
        lines[4]
    );
    // And it extracts the capability (GNU tar restores security.* xattrs with --xattrs).
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-xf"])
            .arg(&path)
            .arg("-C")
            .arg(&x)
            .arg(String::from_utf8_lossy(&entries[1].path).to_string()),
    );
}
