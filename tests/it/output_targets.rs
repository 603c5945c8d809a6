//! Where `-o` may point: a regular file is replaced atomically; anything else that exists
//! and is not a directory (a device, a FIFO) is written in place and stays what it is; a
//! directory is refused.

use crate::common;

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::process::Command;

use common::*;

fn spec(dir: &std::path::Path, image: &TestImage) -> std::path::PathBuf {
    write_file(dir, "sys.yml", &format!("init:\n  - {}\n", image.name))
}

#[test]
fn a_device_node_stays_a_device() {
    let image = TestImage::new("out-device");
    let dir = tempfile::tempdir().unwrap();
    let yml = spec(dir.path(), &image);
    let dev = dir.path().join("null");
    // The same device as /dev/null: writing to it discards.
    run_ok(Command::new("mknod").arg(&dev).args(["c", "1", "3"]));
    run_ok(
        imagesmith()
            .arg("-q")
            .arg("build")
            .arg(&yml)
            .arg("-o")
            .arg(&dev),
    );
    let meta = std::fs::metadata(&dev).unwrap();
    assert!(meta.file_type().is_char_device(), "{meta:?}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporary left"
    );
}

#[test]
fn a_fifo_delivers_the_whole_output_and_stays_a_fifo() {
    let image = TestImage::new("out-fifo");
    let dir = tempfile::tempdir().unwrap();
    let yml = spec(dir.path(), &image);
    let file = dir.path().join("plain.tar");
    run_ok(
        imagesmith()
            .arg("-q")
            .arg("build")
            .arg(&yml)
            .arg("-o")
            .arg(&file),
    );
    let fifo = dir.path().join("pipe");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(&fifo)
                .expect("opening the fifo")
                .read_to_end(&mut got)
                .expect("reading the fifo");
            got
        })
    };
    run_ok(
        imagesmith()
            .arg("-q")
            .arg("build")
            .arg(&yml)
            .arg("-o")
            .arg(&fifo),
    );
    let got = reader.join().expect("reader");
    assert!(
        got == std::fs::read(&file).unwrap(),
        "the fifo got other bytes"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_directory_is_refused() {
    let image = TestImage::new("out-dir");
    let dir = tempfile::tempdir().unwrap();
    let yml = spec(dir.path(), &image);
    let out = imagesmith()
        .arg("build")
        .arg(&yml)
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a directory"), "{err}");
    assert!(dir.path().is_dir());
}
