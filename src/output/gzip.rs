//! gzip as every compressed format writes it (SPEC §5, §6, §7): one standard gzip member,
//! deflate level 6 (zlib-rs through flate2), compressed block-parallel on helper threads
//! the way pigz does it, and byte-identical whatever the number of threads.
//!
//! The uncompressed stream is cut into blocks of [`BLOCK`] bytes, a cut that depends only on
//! the position in the stream. Each block is deflated on its own by a fresh compressor primed
//! with the last 32 KiB of the block before it as its dictionary (so matches still reach back
//! across the cut) and ended with a sync flush (an empty stored block, which byte-aligns it),
//! the last with a final block. The raw deflate pieces, concatenated in order, are one valid
//! deflate stream; the CRC-32 of the whole is combined from the blocks' CRCs. Which thread
//! compresses a block changes nothing in its bytes, so the output is the same with 0 helper
//! threads (everything on the caller's thread), 1 or 8.
//!
//! Why (measured with `benches/build.py --runs 3` on a 2-core machine, 2980 MiB of exports):
//! with one compression thread `tar.gz` took 82 s and `kernel+initrd` 77 s, ~4.6x the export
//! floor of 17.5 s (gzip was the only bottleneck); block-parallel, 55 s and 53 s.
//! The cost: the output is a little larger than one continuous
//! deflate stream (each block restarts its match finder and Huffman tables), and memory grows
//! by about 2 blocks in flight per thread plus one compressor state (~300 KiB) per thread.
//! The alternatives tried: `gzp` (same scheme) panics in `Drop` when the sink fails and
//! needs a `Send + 'static` writer on a thread of its own; a lower level trades size for speed
//! instead of using the idle core. See the module's tests for the properties kept.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Uncompressed bytes per block (pigz's default).
pub const BLOCK: usize = 128 * 1024;
/// The deflate window: how much of the previous block primes the next one.
const DICT: usize = 32 * 1024;
/// The level every format uses.
pub const LEVEL: u32 = 6;
/// At most this many helper threads, whatever the machine (memory stays bounded).
const MAX_THREADS: usize = 4;

/// The gzip header: no name, no time (mtime 0), XFL 0 (level 6), OS 255 ("unknown"), as
/// flate2's `GzBuilder::new().mtime(0)` writes it.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Helper threads used by [`gzip`]: the available cores, at most [`MAX_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS)
}

/// gzip as every format writes it (level 6, the default number of threads).
pub fn gzip<W: Write>(w: W) -> ParGzEncoder<W> {
    ParGzEncoder::new(w, Compression::new(LEVEL), default_threads())
}

/// One block to compress, and the buffers to do it with.
struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    out: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<Done>>,
}

/// A compressed block; `data` and `dict` come back for reuse.
struct Done {
    out: Vec<u8>,
    crc: Crc,
    data: Vec<u8>,
    dict: Vec<u8>,
}

/// Deflates `data` as one piece of the stream into `out` (cleared first).
///
/// The output slices handed to the compressor have lengths that depend on `data` alone, never
/// on the capacity of a reused buffer, so nothing but the block decides its bytes.
fn deflate_block(
    level: Compression,
    dict: &[u8],
    data: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // A new compressor for every block, never a reset one: `reset` keeps the old window, and
    // zlib(-rs)'s match finder reads a little past the end of the input, so a reused
    // compressor's bytes would depend on the blocks it compressed before (measured: they do).
    let mut c = Compress::new(level, false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    out.clear();
    // Well over deflate's worst case, so one call does it; grown below if ever short.
    out.resize(data.len() + data.len() / 8 + 1024, 0);
    let (mut read, mut written) = (0, 0);
    loop {
        let (in0, out0) = (c.total_in(), c.total_out());
        let status = c
            .compress(
                data.get(read..).unwrap_or_default(),
                out.get_mut(written..).unwrap_or_default(),
                flush,
            )
            .map_err(io::Error::other)?;
        read += usize::try_from(c.total_in() - in0).map_err(io::Error::other)?;
        written += usize::try_from(c.total_out() - out0).map_err(io::Error::other)?;
        // zlib's rule: a flush is complete when it left output space unused.
        let done = match status {
            Status::StreamEnd => true,
            _ => !last && read == data.len() && written < out.len(),
        };
        if done {
            out.truncate(written);
            return Ok(());
        }
        if written == out.len() {
            out.resize(out.len() + 64 * 1024, 0);
        }
    }
}

fn compress(level: Compression, job: Job) -> (io::Result<Done>, SyncSender<io::Result<Done>>) {
    let Job {
        data,
        dict,
        mut out,
        last,
        reply,
    } = job;
    let r = deflate_block(level, &dict, &data, last, &mut out).map(|()| {
        let mut crc = Crc::new();
        crc.update(&data);
        Done {
            out,
            crc,
            data,
            dict,
        }
    });
    (r, reply)
}

fn worker(level: Compression, jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // the encoder is finished or dropped
            },
            Err(_) => return,
        };
        let (r, reply) = compress(level, job);
        // The encoder may be gone (dropped on an error): nothing left to do then.
        let _ = reply.send(r);
    }
}

/// A gzip encoder that compresses blocks in parallel; see the module doc. Bytes reach the
/// inner writer on the caller's thread, in order.
pub struct ParGzEncoder<W: Write> {
    inner: Option<W>,
    /// The block being filled.
    block: Vec<u8>,
    /// The last [`DICT`] bytes of the previous block.
    dict: Vec<u8>,
    crc: Crc,
    header_written: bool,
    /// Compressed results still to write, oldest first.
    pending: VecDeque<Receiver<io::Result<Done>>>,
    max_pending: usize,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    level: Compression,
    /// No helper thread: blocks are compressed on the caller's thread.
    local: bool,
    /// Buffers back from finished blocks.
    spare: Vec<Vec<u8>>,
}

impl<W: Write> ParGzEncoder<W> {
    /// `threads` helper threads compress; with 0 the caller's thread does. The output does
    /// not depend on `threads`. If a thread cannot be started, fewer are used.
    pub fn new(inner: W, level: Compression, threads: usize) -> ParGzEncoder<W> {
        let (tx, rx) = mpsc::sync_channel::<Job>(threads.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            match std::thread::Builder::new()
                .name(format!("imagesmith-gzip-{i}"))
                .spawn(move || worker(level, rx))
            {
                Ok(h) => workers.push(h),
                Err(e) => {
                    log::debug!("gzip: could not start a compression thread: {e}");
                    break;
                }
            }
        }
        let local = workers.is_empty();
        let jobs = (!local).then_some(tx);
        ParGzEncoder {
            inner: Some(inner),
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: Crc::new(),
            header_written: false,
            pending: VecDeque::new(),
            max_pending: 2 * workers.len(),
            jobs,
            workers,
            level,
            local,
            spare: Vec::new(),
        }
    }

    fn inner(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip: write after finish"))
    }

    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        v.reserve(capacity);
        v
    }

    fn recycle(&mut self, v: Vec<u8>) {
        // Enough for every block in flight; the rest is freed.
        if self.spare.len() < 3 * self.max_pending + 3 {
            self.spare.push(v);
        }
    }

    /// Writes one compressed block to the inner writer.
    fn emit(&mut self, done: Done) -> io::Result<()> {
        if !self.header_written {
            self.inner()?.write_all(&HEADER)?;
            self.header_written = true;
        }
        self.inner()?.write_all(&done.out)?;
        self.crc.combine(&done.crc);
        self.recycle(done.out);
        self.recycle(done.data);
        self.recycle(done.dict);
        Ok(())
    }

    /// Waits for the oldest block in flight and writes it.
    fn emit_oldest(&mut self, wait: bool) -> io::Result<bool> {
        let Some(rx) = self.pending.front() else {
            return Ok(false);
        };
        let r = if wait {
            rx.recv().map_err(|_| stopped())?
        } else {
            match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            }
        };
        self.pending.pop_front();
        self.emit(r?)?;
        Ok(true)
    }

    /// Hands the current block (and the dictionary it needs) to be compressed.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let next = self.buffer(BLOCK);
        let data = std::mem::replace(&mut self.block, next);
        let mut dict = self.buffer(DICT);
        dict.extend_from_slice(&self.dict);
        // The next block's dictionary: the tail of this one.
        self.dict.clear();
        self.dict
            .extend_from_slice(&data[data.len().saturating_sub(DICT)..]);
        let out = self.buffer(0);
        let (reply, rx) = mpsc::sync_channel(1);
        let job = Job {
            data,
            dict,
            out,
            last,
            reply,
        };
        if self.local {
            let (r, _) = compress(self.level, job);
            return self.emit(r?);
        }
        while self.pending.len() >= self.max_pending {
            self.emit_oldest(true)?;
        }
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        self.pending.push_back(rx);
        // Write out what is already done, keeping memory low.
        while self.emit_oldest(false)? {}
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.emit_oldest(true)? {}
        let trailer = [
            self.crc.sum().to_le_bytes(),
            self.crc.amount().to_le_bytes(),
        ]
        .concat();
        let mut w = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("gzip: finished twice"))?;
        w.write_all(&trailer)?;
        Ok(w)
    }
}

fn stopped() -> io::Error {
    io::Error::other("gzip: a compression thread stopped")
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Writes out the blocks already compressed and flushes the inner writer. It does not cut
    /// a block (that would make the output depend on when flushes happen).
    fn flush(&mut self) -> io::Result<()> {
        while self.emit_oldest(false)? {}
        self.inner()?.flush()
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    fn drop(&mut self) {
        // Unfinished (an error elsewhere): stop the helpers; queued blocks are dropped.
        self.jobs.take();
        self.pending.clear();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Compressible, not trivially so, and not a multiple of the block size.
    fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = 12345;
        while v.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let word = (x >> 16) % 97;
            v.extend_from_slice(format!("w{word} ").as_bytes());
            if x.is_multiple_of(13) {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
        v.truncate(len);
        v
    }

    fn compress_with(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut e = ParGzEncoder::new(Vec::new(), Compression::new(LEVEL), threads);
        for c in data.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    #[test]
    fn same_bytes_whatever_the_threads_and_write_sizes() {
        for len in [
            0,
            1,
            DICT,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK,
            5 * BLOCK + 777,
        ] {
            let data = sample(len);
            let one = compress_with(&data, 0, 1 << 20);
            for (threads, chunk) in [(1, 1000), (2, 4096), (3, BLOCK + 5), (8, 1 << 20)] {
                assert_eq!(
                    compress_with(&data, threads, chunk),
                    one,
                    "len {len}, {threads} threads"
                );
            }
            assert_eq!(gunzip(&one), data, "len {len}");
        }
    }

    #[test]
    fn header_and_trailer_are_standard() {
        let data = sample(2 * BLOCK + 3);
        let gz = compress_with(&data, 2, 8192);
        assert_eq!(&gz[..10], &HEADER);
        let n = gz.len();
        let mut crc = Crc::new();
        crc.update(&data);
        assert_eq!(&gz[n - 8..n - 4], &crc.sum().to_le_bytes());
        assert_eq!(&gz[n - 4..], &(data.len() as u32).to_le_bytes());
        // one member: a multi-member decoder finds nothing after it
        let mut v = Vec::new();
        let mut d = flate2::read::MultiGzDecoder::new(gz.as_slice());
        d.read_to_end(&mut v).unwrap();
        assert_eq!(v, data);
    }

    #[test]
    fn dropped_unfinished_stops_quietly() {
        let mut e = ParGzEncoder::new(Vec::new(), Compression::new(LEVEL), 2);
        e.write_all(&sample(10 * BLOCK)).unwrap();
        drop(e);
    }

    /// A sink that fails: the error comes back from a write or `finish`, never a panic.
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
        for threads in [0, 2] {
            let mut e = ParGzEncoder::new(Full, Compression::new(LEVEL), threads);
            let r = e
                .write_all(&sample(6 * BLOCK))
                .and_then(|()| e.finish().map(drop));
            assert_eq!(r.unwrap_err().to_string(), "disk full");
        }
    }
}
