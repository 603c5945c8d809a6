//! zstd as `tar.zst` and a zstd initrd write it (SPEC §6, §10): one zstd frame, level 3,
//! compressed by zstd's own worker threads, byte-identical whatever their number.
//!
//! What keeps the bytes fixed (`../shared/notes/crates.md` §9.3):
//! - always at least one worker: zstd's output is the same for 1, 2 or 4 workers, but not for
//!   0 (the single-threaded path cuts the stream differently);
//! - every parameter that shapes the frame is set here, not left to the library's defaults
//!   for the input size: level, window, job size, checksum; no long-distance matching;
//! - the stream is never flushed mid-way (a flush ends a block early, so the bytes would
//!   depend on when flushes happen): [`ZstdEncoder`]'s `flush` only writes out what is done;
//! - the `zstd` crate is pinned (`=` in Cargo.toml; Cargo.lock pins the C library), because
//!   zstd's output changes between releases; a test holds the bytes of a known input.
//!
//! The window is 2 MiB (`WINDOW_LOG` 21, level 3's own): the kernel allocates a buffer as
//! large as the window to unpack an initrd, so no long windows. Memory: each worker holds a
//! job of `JOB_SIZE` with its overlap and output, plus level 3's match tables (~1 MiB).

use std::io::{self, Write};

use zstd::stream::write::Encoder;
use zstd::zstd_safe::CParameter;

/// The level every zstd output uses (zstd's default).
const LEVEL: i32 = 3;
/// log2 of the window: 2 MiB.
const WINDOW_LOG: u32 = 21;
/// Uncompressed bytes per job handed to a worker.
const JOB_SIZE: u32 = 1 << 20;
/// At most this many worker threads, whatever the machine.
const MAX_WORKERS: u32 = 4;
/// Input handed to zstd per call at most. Each call of the `zstd` crate's writer gives the
/// inner writer at most its 32 KiB output buffer, so writes larger than that let finished
/// jobs' output pile up inside zstd, in 1 MiB buffers: measured on the benchmark's `tar.zst`
/// with the spool's 128 KiB hand-overs, peak RSS 29.1–32.6 MiB against 28.4–28.8 MiB
/// without them. Half the output buffer keeps the output ahead of the input.
const FEED: usize = 16 << 10;

/// Worker threads used by [`zstd`]: the available cores, 1 to [`MAX_WORKERS`].
fn default_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(MAX_WORKERS))
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
}

/// zstd as every format writes it (the default number of workers).
pub fn zstd<W: Write>(w: W) -> io::Result<ZstdEncoder<W>> {
    ZstdEncoder::new(w, default_workers())
}

/// A zstd encoder whose bytes depend only on its input; see the module doc.
pub struct ZstdEncoder<W: Write> {
    enc: Encoder<'static, W>,
}

impl<W: Write> ZstdEncoder<W> {
    /// `workers` threads compress (at least 1: with 0 the bytes would differ).
    fn new(w: W, workers: u32) -> io::Result<ZstdEncoder<W>> {
        let mut enc = Encoder::new(w, LEVEL)?;
        let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("zstd {what}: {e}"));
        enc.multithread(workers.max(1))
            .map_err(|e| ctx("worker threads", e))?;
        for p in [
            CParameter::WindowLog(WINDOW_LOG),
            CParameter::JobSize(JOB_SIZE),
            CParameter::EnableLongDistanceMatching(false),
            CParameter::ChecksumFlag(true),
            CParameter::ContentSizeFlag(false),
        ] {
            enc.set_parameter(p).map_err(|e| ctx("parameters", e))?;
        }
        Ok(ZstdEncoder { enc })
    }

    /// Ends the frame and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.enc.finish()
    }
}

impl<W: Write> Write for ZstdEncoder<W> {
    /// Takes at most [`FEED`] bytes per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.enc.write(&buf[..buf.len().min(FEED)])
    }

    /// Flushes the inner writer only: flushing the zstd stream would cut a block where the
    /// flush happened to come, and the bytes would depend on it.
    fn flush(&mut self) -> io::Result<()> {
        self.enc.get_mut().flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::output::gzip::tests::random;
    use std::io::Read;

    /// The decompressed bytes of a zstd frame, whatever follows it (an initrd's zero
    /// padding), for the tests of every format.
    pub(crate) fn unzstd(z: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        zstd::stream::read::Decoder::new(z)
            .unwrap()
            .single_frame()
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    /// Compressible text with random stretches, several jobs long.
    fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {} of the sample {}\n", i % 977, i % 13).as_bytes());
            if i.is_multiple_of(5000) {
                v.extend_from_slice(&random(30_000, i + 1));
            }
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn compress_with(data: &[u8], workers: u32, chunk: usize) -> Vec<u8> {
        let mut e = ZstdEncoder::new(Vec::new(), workers).unwrap();
        for c in data.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
            e.flush().unwrap();
        }
        e.finish().unwrap()
    }

    /// A call takes at most FEED bytes, so that zstd's output never lags far behind.
    #[test]
    fn one_call_takes_at_most_feed_bytes() {
        let mut e = ZstdEncoder::new(Vec::new(), 2).unwrap();
        assert_eq!(e.write(&random(128 << 10, 7)).unwrap(), FEED);
        assert_eq!(e.write(b"short").unwrap(), 5);
    }

    #[test]
    fn same_bytes_whatever_the_workers_and_write_sizes() {
        for len in [
            0,
            1,
            100_000,
            JOB_SIZE as usize + 1,
            5 * JOB_SIZE as usize + 777,
        ] {
            let data = sample(len);
            let one = compress_with(&data, 1, 1 << 20);
            for (workers, chunk) in [(1, 999), (2, 65_536), (4, 3 << 20), (0, 4096)] {
                assert_eq!(
                    compress_with(&data, workers, chunk),
                    one,
                    "len {len}, {workers} workers, writes of {chunk}"
                );
            }
            assert_eq!(unzstd(&one), data, "len {len}");
            if len > 100_000 {
                assert!(one.len() < data.len() / 3, "len {len}: {} bytes", one.len());
            }
        }
    }

    #[test]
    fn frame_header_has_the_small_window_and_a_checksum() {
        let z = compress_with(&sample(3 << 20), 2, 1 << 16);
        assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        let descriptor = z[4];
        assert_eq!(descriptor & 0x04, 0x04, "content checksum flag");
        assert_eq!(
            descriptor & 0x20,
            0,
            "not single-segment: a window descriptor"
        );
        assert_eq!(descriptor >> 6, 0, "no content size");
        // Window descriptor: exponent in the high 5 bits, 2^(10 + exponent) bytes.
        let window = 1u64 << (10 + (z[5] >> 3));
        assert!(window <= 1 << WINDOW_LOG, "window {window}");
    }

    /// The bytes of a known input, as the pinned zstd writes them: a release of the crate or
    /// the C library that changes them must be a deliberate change (update the value).
    #[test]
    fn pinned_bytes() {
        let z = compress_with(&sample(3 << 20), 2, 1 << 16);
        let mut crc = flate2::Crc::new();
        crc.update(&z);
        assert_eq!(
            (z.len(), crc.sum()),
            (803_491, 692_781_781),
            "zstd output changed"
        );
    }

    #[test]
    fn sink_errors_are_returned() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut e = ZstdEncoder::new(Full, 2).unwrap();
        let r = e
            .write_all(&random(8 << 20, 1))
            .and_then(|()| e.finish().map(drop));
        assert_eq!(r.unwrap_err().to_string(), "disk full");
    }
}
