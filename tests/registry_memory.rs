//! Flattening keeps memory flat (issue #14: RSS < 32 MiB for a 1 GiB image): a 1 GiB image
//! of four gzip layers (big files, 40,000 small ones, whiteouts and hard links) is
//! flattened into a tar written to disk, and this process's peak RSS (`getrusage`) stays
//! under 32 MiB. Runs alone in its own test binary, so the figure is the flattening's.

mod common;

use std::io::{BufWriter, Write};
use std::time::Instant;

use imagesmith::archive::TarSink;
use imagesmith::registry::flatten::{FlattenOptions, Layer, flatten};

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss
    }
}

/// A gzip layer written straight to `path`: `big` files of 64 MiB (a pattern, so gzip
/// has work but files differ) and `small` files of 100 bytes under `dir`.
fn write_layer(path: &std::path::Path, dir: &str, big: usize, small: usize, extra: &[(&str, &str)]) -> Layer {
    let f = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(BufWriter::new(f), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, dir, std::io::empty()).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for n in 0..big {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(64 << 20);
        let name = format!("{dir}/big-{n}");
        let reader = std::io::Read::take(std::io::Read::chain(&chunk[..], std::io::repeat(n as u8)), 64 << 20);
        b.append_data(&mut h, name, reader).unwrap();
    }
    for n in 0..small {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(100);
        b.append_data(&mut h, format!("{dir}/s/{:03}/file-{n:06}", n % 500), &[n as u8; 100][..])
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
    let digest = common::layout::sha256(&std::fs::read(path).unwrap());
    Layer {
        path: path.to_path_buf(),
        digest,
    }
}

#[test]
fn flattening_a_1_gib_image_stays_under_32_mib() {
    let d = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let layers = vec![
        write_layer(&d.path().join("l0"), "a", 4, 10_000, &[]),
        write_layer(&d.path().join("l1"), "b", 4, 10_000, &[("b/link", "a/big-0")]),
        write_layer(&d.path().join("l2"), "c", 4, 10_000, &[("a/.wh.big-0", "")]),
        write_layer(&d.path().join("l3"), "e", 4, 10_000, &[("b/.wh..wh..opq", "")]),
    ];
    eprintln!("layers written in {:.1} s", t.elapsed().as_secs_f64());
    let before = peak_rss_kib();
    let t = Instant::now();
    let out = std::fs::File::create(d.path().join("flat.tar")).unwrap();
    let mut sink = TarSink::new(BufWriter::new(out));
    let stats = flatten(&layers, &mut sink, &FlattenOptions::new("memory-test")).unwrap();
    sink.finish().unwrap().flush().unwrap();
    let peak = peak_rss_kib();
    eprintln!(
        "flattened {} entries, {} MiB in {:.1} s; peak RSS {} KiB (before: {} KiB)",
        stats.entries,
        stats.bytes >> 20,
        t.elapsed().as_secs_f64(),
        peak,
        before
    );
    // Of the 16 files of 64 MiB, a/big-0 is whited out (its content lives on in b/link
    // until l3), and b/ is opaque in l3: b/big-*, b/link and b's small files go.
    assert_eq!(stats.bytes >> 20, 11 * 64 + ((30_000 * 100) >> 20));
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
}
