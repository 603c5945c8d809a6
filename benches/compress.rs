//! `cargo bench --bench compress -- FILE...`: throughput and ratio of the encoders every
//! compressed format uses (gzip: `output::gzip`, zstd: `output::zstd`), each file streamed
//! through them in 1 MiB writes, the output counted and dropped. Prints a table: wall MB/s
//! (input bytes over wall time), CPU seconds (user+system, all threads) and the ratio
//! (output / input). Read the files once before (`cat FILE >/dev/null`) to time the encoder,
//! not the disk. A benchmark that prints a table, not a test.

use std::io::{self, Read, Write};
use std::time::Instant;

use imagesmith::output::Codec;
use imagesmith::output::compress::Compressor;

/// Counts the bytes written to it.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// User + system CPU seconds of this process so far.
fn cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn run(codec: Codec, path: &str) -> io::Result<(u64, u64, f64, f64)> {
    let mut f = std::fs::File::open(path)?;
    let mut enc = Compressor::new(codec, Count(0))?;
    let mut buf = vec![0u8; 1 << 20];
    let (t, c) = (Instant::now(), cpu());
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        enc.write_all(&buf[..k])?;
        n += k as u64;
    }
    let out = enc.finish()?.0;
    Ok((n, out, t.elapsed().as_secs_f64(), cpu() - c))
}

fn main() -> io::Result<()> {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if files.is_empty() {
        eprintln!("usage: cargo bench --bench compress -- FILE...");
        return Ok(());
    }
    println!(
        "| {:40} | {:5} | {:>8} | {:>7} | {:>6} | {:>6} |",
        "file", "codec", "MiB", "MB/s", "CPU s", "ratio"
    );
    println!(
        "|{:-<42}|{:-<7}|{:-<10}|{:-<9}|{:-<8}|{:-<8}|",
        "", "", "", "", "", ""
    );
    for path in &files {
        for (name, codec) in [("gzip", Codec::Gzip), ("zstd", Codec::Zstd)] {
            let (n, out, wall, cpu) = run(codec, path)?;
            println!(
                "| {:40} | {:5} | {:8.1} | {:7.1} | {:6.2} | {:6.4} |",
                path,
                name,
                n as f64 / (1 << 20) as f64,
                n as f64 / 1e6 / wall,
                cpu,
                out as f64 / n.max(1) as f64
            );
        }
    }
    Ok(())
}
