//! Flattening keeps memory flat (issue #14: RSS < 32 MiB for a 1 GiB image): a 1 GiB image
//! of four gzip layers (big files, 40,000 small ones, whiteouts and hard links) is
//! flattened into a tar written to disk by a child process (this test binary again),
//! whose peak RSS, as GNU time reports it, stays under 32 MiB.

use crate::common;

use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::Instant;

use imagesmith::archive::TarSink;
use imagesmith::registry::flatten::{FlattenOptions, Layer, flatten};
use sha2::{Digest, Sha256};

/// A gzip layer written straight to `path`: `big` files of 64 MiB (a pattern, so gzip
/// has work but files differ) and `small` files of 100 bytes under `dir`.
fn write_layer(
    path: &std::path::Path,
    dir: &str,
    big: usize,
    small: usize,
    extra: &[(&str, &str)],
) -> Layer {
    let f = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(BufWriter::new(f), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, dir, std::io::empty()).unwrap();
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for n in 0..big {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(64 << 20);
        let name = format!("{dir}/big-{n}");
        let reader = std::io::Read::take(
            std::io::Read::chain(&chunk[..], std::io::repeat(n as u8)),
            64 << 20,
        );
        b.append_data(&mut h, name, reader).unwrap();
    }
    for n in 0..small {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(100);
        b.append_data(
            &mut h,
            format!("{dir}/s/{:03}/file-{n:06}", n % 500),
            &[n as u8; 100][..],
        )
        .unwrap();
    }
    for (name, target) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        if target.is_empty() {
            b.append_data(&mut h, name, std::io::empty()).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Link);
            b.append_link(&mut h, name, target).unwrap();
        }
    }
    let gz = b.into_inner().unwrap();
    gz.finish().unwrap().flush().unwrap();
    // The digest, read in chunks (reading the file whole would raise the peak measured).
    let mut hash = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let digest = format!("sha256:{hex}");
    Layer {
        path: path.to_path_buf(),
        digest,
    }
}

const CHILD: &str = "IMAGESMITH_TEST_FLATTEN_LAYERS";

/// In the child process: flattens the layers named in `CHILD` (`path=digest` lines) into
/// `<first layer's directory>/flat.tar`.
fn child(spec: &str) {
    let layers: Vec<Layer> = spec
        .lines()
        .map(|l| {
            let (path, digest) = l.split_once('=').unwrap();
            Layer {
                path: path.into(),
                digest: digest.into(),
            }
        })
        .collect();
    let t = Instant::now();
    let out = std::fs::File::create(layers[0].path.with_file_name("flat.tar")).unwrap();
    let mut sink = TarSink::new(BufWriter::new(out));
    let stats = flatten(&layers, &mut sink, &FlattenOptions::new("memory-test")).unwrap();
    sink.finish().unwrap().flush().unwrap();
    println!(
        "FLATTENED entries={} mib={} seconds={:.1}",
        stats.entries,
        stats.bytes >> 20,
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn flattening_a_1_gib_image_stays_under_32_mib() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let d = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let layers = [
        write_layer(&d.path().join("l0"), "a", 4, 10_000, &[]),
        write_layer(
            &d.path().join("l1"),
            "b",
            4,
            10_000,
            &[("b/link", "a/big-0")],
        ),
        write_layer(&d.path().join("l2"), "c", 4, 10_000, &[("a/.wh.big-0", "")]),
        write_layer(
            &d.path().join("l3"),
            "e",
            4,
            10_000,
            &[("b/.wh..wh..opq", "")],
        ),
    ];
    eprintln!("layers written in {:.1} s", t.elapsed().as_secs_f64());
    let spec: Vec<String> = layers
        .iter()
        .map(|l| format!("{}={}", l.path.display(), l.digest))
        .collect();
    // The flattening runs in a process of its own, measured by GNU time (see
    // common::run_measured: our own peak would be cargo's, inherited through exec).
    let m = common::run_measured(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "registry_memory::flattening_a_1_gib_image_stays_under_32_mib",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, spec.join("\n")),
    );
    let out = String::from_utf8_lossy(&m.stdout);
    assert_eq!(m.status, 0, "{out}\n{}", m.stderr);
    // (libtest may route the child's output to either stream)
    let both = format!("{out}\n{}", m.stderr);
    let line = both
        .lines()
        .find_map(|l| l.find("FLATTENED").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no result from the child: {both}"));
    eprintln!("{line}; peak RSS {} KiB", m.max_rss_kib);
    // Of the 16 files of 64 MiB, a/big-0 is whited out (its content lives on in b/link
    // until l3), and b/ is opaque in l3: b/big-*, b/link and b's small files go.
    let mib = 11 * 64 + ((30_000 * 100) >> 20);
    assert!(line.contains(&format!("mib={mib} ")), "{line}");
    assert!(line.contains("entries=31518 "), "{line}");
    assert!(m.max_rss_kib < 32 * 1024, "peak RSS {} KiB", m.max_rss_kib);
}
