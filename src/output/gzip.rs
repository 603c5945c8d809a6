//! gzip as every compressed format writes it (SPEC §5, §6, §7): one standard gzip member,
//! deflate level 6 (zlib-rs through flate2), compressed block-parallel on helper threads
//! the way pigz does it, and byte-identical whatever the number of threads.
//!
//! The uncompressed stream is cut into blocks of `BLOCK` (128 KiB) bytes, a cut that depends
//! only on the position in the stream. Each block is deflated on its own by a fresh compressor
//! primed with the last 32 KiB of the block before it as its dictionary (so matches still reach
//! back across the cut) and ended with a sync flush (an empty stored block, which byte-aligns
//! it), the last with a final block. The raw deflate pieces, concatenated in order, are one
//! valid deflate stream; the CRC-32 of the whole is combined from the blocks' CRCs. Which
//! thread compresses a block changes nothing in its bytes, so the output is the same with 0
//! helper threads (everything on the caller's thread), 1 or 8.
//!
//! Incompressible blocks (random or already-compressed data) are not deflated: a cheap probe
//! of the block's content ([`incompressible`]: byte entropy, then a quick search for
//! repeats) sends them out as stored deflate blocks, and so is any block that deflate made
//! larger than stored. Both rules look at the block's bytes (and the 32 KiB before it) only,
//! so they keep the output independent of threads and write sizes. Measured with the encoder
//! alone (`cargo bench --bench compress`, 2 threads): 256 MiB of random data cost 8.5 s of
//! CPU before, 0.6 s after; a tar of `/usr/lib/x86_64-linux-gnu` kept its size.
//!
//! Why (measured with `benches/build.py --runs 3` on a 2-core machine, 2980 MiB of exports):
//! with one compression thread `tar.gz` took 82 s and `kernel+initrd` 77 s, ~4.6x the export
//! floor of 17.5 s (gzip was the only bottleneck); block-parallel, 55 s and 53 s.
//! The cost: the output is a little larger than one continuous
//! deflate stream (each block restarts its match finder and Huffman tables), and memory grows
//! by about 2 blocks in flight per thread (each with its dictionary and compressed output)
//! plus one compressor state (~300 KiB) per thread.
//! The alternatives tried: `gzp` (same scheme) panics in `Drop` when the sink fails and
//! needs a `Send + 'static` writer on a thread of its own; a lower level trades size for speed
//! instead of using the idle core. See the module's tests for the properties kept.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Uncompressed bytes per block (pigz's default), one block a job. (Four blocks a job, for
/// fewer thread wake-ups, raised the peak RSS of a gzip initrd build from 24 to 33 MiB and
/// gained nothing measurable on the benchmark.)
const BLOCK: usize = 128 * 1024;
/// The deflate window: how much of the previous block primes the next one.
const DICT: usize = 32 * 1024;
/// The level every format uses.
const LEVEL: u32 = 6;
/// At most this many helper threads, whatever the machine (memory stays bounded).
const MAX_THREADS: usize = 4;

/// The gzip header: no name, no time (mtime 0), XFL 0 (level 6), OS 255 ("unknown"), as
/// flate2's `GzBuilder::new().mtime(0)` writes it.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Helper threads used by [`gzip`]: the available cores, at most [`MAX_THREADS`].
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS)
}

/// gzip as every format writes it (level 6, the default number of threads).
pub fn gzip<W: Write>(w: W) -> ParGzEncoder<W> {
    ParGzEncoder::new(w, default_threads())
}

/// One block to compress.
struct Job {
    data: Vec<u8>,
    /// The last [`DICT`] bytes before the block (empty for the first).
    dict: Vec<u8>,
    last: bool,
}

/// A compressed block.
struct Done {
    out: Vec<u8>,
    crc: Crc,
}

/// Where a helper thread sends the result of one job.
type Reply = SyncSender<io::Result<Done>>;

/// Deflates `data` as one piece of the stream.
fn deflate_block(dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    // A new compressor for every block, never a reset one: `reset` keeps the old window, and
    // zlib(-rs)'s match finder reads a little past the end of the input, so a reused
    // compressor's bytes would depend on the blocks it compressed before (measured: they do).
    let mut c = Compress::new(Compression::new(LEVEL), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Well over deflate's worst case, so one call does it; grown below if ever short. The
    // output slices handed to the compressor depend on `data` alone, so nothing but the block
    // decides its bytes.
    let mut out = vec![0u8; data.len() + data.len() / 8 + 1024];
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
            return Ok(out);
        }
        if written == out.len() {
            out.resize(out.len() + 64 * 1024, 0);
        }
    }
}

/// Blocks shorter than this are always deflated: the probe would not pay for itself.
const PROBE_MIN: usize = 4096;
/// Largest stored deflate block (LEN is 16 bits).
const STORED_MAX: usize = 65_535;

/// `data` as stored deflate blocks (header byte, LEN, NLEN, the bytes), the last one final
/// with `last`. The piece starts and ends on a byte boundary, as every piece does (the
/// compressed ones end with a sync flush), so pieces of both kinds concatenate freely.
fn stored_blocks(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(data.len()));
    let mut chunks = data.chunks(STORED_MAX).peekable();
    if data.is_empty() {
        out.extend_from_slice(&[u8::from(last), 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let len = chunk.len() as u16; // at most STORED_MAX
        out.push(u8::from(last && chunks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The size of [`stored_blocks`] for `n` bytes: 5 bytes per 64 KiB.
fn stored_len(n: usize) -> usize {
    n + 5 * n.div_ceil(STORED_MAX).max(1)
}

/// `log2(x)` in fixed point (16 fractional bits), in integers so that the decision below is
/// the same on every machine (no libm rounding). `x` ≥ 1.
fn log2_q16(x: u64) -> u64 {
    let int = 63 - u64::from(x.max(1).leading_zeros());
    // x / 2^int in [1, 2), 32 fractional bits; squared bit by bit for the fraction.
    let mut y = (u128::from(x) << 32) >> int;
    let mut frac = 0u64;
    for bit in (0..16).rev() {
        y = (y * y) >> 32;
        if y >= 2 << 32 {
            y >>= 1;
            frac |= 1 << bit;
        }
    }
    (int << 16) | frac
}

/// Whether deflate cannot be expected to save even ~3% on `data`, decided cheaply from the
/// content alone (the block and the 32 KiB before it), so the same block gets the same
/// answer whatever the threads or write sizes:
///
/// 1. the order-0 entropy of the bytes (what Huffman coding of literals could reach) is at
///    least 97% of 8 bits a byte, and
/// 2. a greedy probe for 4-byte repeats within deflate's 32 KiB window (a hash of positions,
///    stepping faster while it finds nothing, as LZ4 does) finds matches covering less than
///    1/32 of the block.
///
/// Random or already-compressed data passes both in well under a millisecond per block
/// (full deflate effort costs ~3 ms); text, code and binaries fail the first at once.
fn incompressible(dict: &[u8], data: &[u8]) -> bool {
    let n = data.len();
    if n < PROBE_MIN {
        return false;
    }
    let n64 = n as u64;
    // Entropy in bits (Q16): n·log2(n) − Σ c·log2(c).
    let mut sum_c_log_c = 0u64;
    for c in histogram(data).into_iter().filter(|&c| c > 0) {
        sum_c_log_c += c * log2_q16(c);
    }
    let bits_q16 = (n64 * log2_q16(n64)).saturating_sub(sum_c_log_c);
    // bits / (8 n) ≥ 0.97  ⇔  100·bits ≥ 776·n
    if 100 * bits_q16 < (776 * n64) << 16 {
        return false;
    }
    matched_bytes(dict, data) < n / 32
}

/// How many times each byte value occurs in `data`. Four tables counted in turn, summed at
/// the end, so that consecutive equal bytes do not wait on each other's increment.
fn histogram(data: &[u8]) -> [u64; 256] {
    let mut t = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        for (table, &b) in t.iter_mut().zip(q) {
            table[usize::from(b)] += 1;
        }
    }
    for &b in quads.remainder() {
        t[0][usize::from(b)] += 1;
    }
    std::array::from_fn(|v| t.iter().map(|table| u64::from(table[v])).sum())
}

/// log2 of the probe's hash table size.
const HASH_BITS: u32 = 14;

/// The probe's memory, kept by each thread from one block to the next instead of ~290 KiB
/// allocated and freed per block (the dictionary and block side by side, the table).
struct ProbeScratch {
    /// The dictionary and the block, one after the other.
    buf: Vec<u8>,
    /// Position + 1 of the last place each hash was seen (0: never).
    table: Vec<u32>,
}

/// Entries in the probe's hash table.
const TABLE: usize = 1 << HASH_BITS;

thread_local! {
    static PROBE: std::cell::RefCell<ProbeScratch> = const {
        std::cell::RefCell::new(ProbeScratch { buf: Vec::new(), table: Vec::new() })
    };
}

/// Bytes of `data` that a greedy search finds in 4-byte-or-longer repeats at most 32 KiB
/// back (the dictionary included).
fn matched_bytes(dict: &[u8], data: &[u8]) -> usize {
    PROBE.with(|p| match p.try_borrow_mut() {
        Ok(mut p) => {
            let ProbeScratch { buf, table } = &mut *p;
            matched_in(dict, data, buf, table)
        }
        // Not reached (the probe does not call itself); fresh memory keeps it correct.
        Err(_) => matched_in(dict, data, &mut Vec::new(), &mut Vec::new()),
    })
}

fn matched_in(dict: &[u8], data: &[u8], buf: &mut Vec<u8>, table: &mut Vec<u32>) -> usize {
    buf.clear();
    buf.extend_from_slice(dict);
    buf.extend_from_slice(data);
    let buf = &buf[..];
    let read4 = |i: usize| -> u32 {
        match buf.get(i..i + 4) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    };
    let hash = |v: u32| (v.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize;
    table.clear();
    table.resize(TABLE, 0);
    let Some(table) = table.first_chunk_mut::<TABLE>() else {
        return 0; // not reached: it was just sized
    };
    // Positions fit in u32: a block and its dictionary are far below 4 GiB.
    let slot = |i: usize| u32::try_from(i + 1).unwrap_or(0);
    for (i, w) in buf[..dict.len()].windows(4).enumerate() {
        table[hash(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))] = slot(i);
    }
    let (mut i, end) = (dict.len(), buf.len().saturating_sub(3));
    let (mut matched, mut misses) = (0usize, 0usize);
    while i < end {
        let v = read4(i);
        let h = hash(v);
        let cand = table[h] as usize;
        table[h] = slot(i);
        if cand > 0 && i - (cand - 1) <= DICT && read4(cand - 1) == v {
            let from = cand - 1;
            let len = 4 + buf[i + 4..]
                .iter()
                .zip(&buf[from + 4..])
                .take_while(|(a, b)| a == b)
                .count();
            matched += len;
            i += len;
            misses = 0;
        } else {
            misses += 1;
            i += 1 + (misses >> 8);
        }
    }
    matched
}

/// One block's piece of the deflate stream: stored when [`incompressible`] says deflate
/// would not pay, or when deflate made it larger than stored; else deflated at [`LEVEL`].
fn encode_block(dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    if incompressible(dict, data) {
        return Ok(stored_blocks(data, last));
    }
    let out = deflate_block(dict, data, last)?;
    if out.len() > stored_len(data.len()) {
        return Ok(stored_blocks(data, last));
    }
    Ok(out)
}

fn compress(job: &Job) -> io::Result<Done> {
    let out = encode_block(&job.dict, &job.data, job.last)?;
    let mut crc = Crc::new();
    crc.update(&job.data);
    Ok(Done { out, crc })
}

fn worker(jobs: Arc<Mutex<Receiver<(Job, Reply)>>>) {
    loop {
        let (job, reply) = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // the encoder is finished or dropped
            },
            Err(_) => return,
        };
        // The encoder may be gone (dropped on an error): nothing left to do then.
        let _ = reply.send(compress(&job));
    }
}

/// The helper threads, the queue that feeds them and the results in flight.
///
/// Dropped (the encoder finished, or dropped unfinished after an error), it stops the
/// helpers: the fields drop in order, `jobs` first, which closes the queue, then `workers`,
/// which waits for them; queued blocks are dropped.
struct Pool {
    jobs: SyncSender<(Job, Reply)>,
    /// Compressed results still to write, oldest first.
    pending: VecDeque<Receiver<io::Result<Done>>>,
    workers: Workers,
}

/// Joins the helper threads when dropped.
struct Workers(Vec<JoinHandle<()>>);

impl Drop for Workers {
    fn drop(&mut self) {
        for h in self.0.drain(..) {
            let _ = h.join();
        }
    }
}

impl Pool {
    /// Starts `threads` helper threads (fewer if a thread cannot be started); `None` if none
    /// runs.
    fn start(threads: usize) -> Option<Pool> {
        let (tx, rx) = mpsc::sync_channel(threads.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            match std::thread::Builder::new()
                .name(format!("imagesmith-gzip-{i}"))
                .spawn(move || worker(rx))
            {
                Ok(h) => workers.push(h),
                Err(e) => {
                    log::debug!("gzip: could not start a compression thread: {e}");
                    break;
                }
            }
        }
        (!workers.is_empty()).then(|| Pool {
            jobs: tx,
            pending: VecDeque::new(),
            workers: Workers(workers),
        })
    }

    /// Blocks in flight at most: 2 per thread.
    fn full(&self) -> bool {
        self.pending.len() >= 2 * self.workers.0.len()
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.jobs.send((job, reply)).map_err(|_| stopped())?;
        self.pending.push_back(rx);
        Ok(())
    }

    /// The oldest block in flight once compressed (waiting for it with `wait`); `None` if
    /// there is none, or it is not done and `wait` is false.
    fn oldest(&mut self, wait: bool) -> io::Result<Option<Done>> {
        let Some(rx) = self.pending.front() else {
            return Ok(None);
        };
        let r = if wait {
            rx.recv().map_err(|_| stopped())?
        } else {
            match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            }
        };
        self.pending.pop_front();
        r.map(Some)
    }
}

fn stopped() -> io::Error {
    io::Error::other("gzip: a compression thread stopped")
}

/// The gzip member as it reaches the inner writer: the header (before the first block), the
/// compressed blocks in order, the trailer.
struct Member<W: Write> {
    inner: W,
    header_written: bool,
    crc: Crc,
}

impl<W: Write> Member<W> {
    fn write(&mut self, done: Done) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        self.inner.write_all(&done.out)?;
        self.crc.combine(&done.crc);
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        let trailer = [
            self.crc.sum().to_le_bytes(),
            self.crc.amount().to_le_bytes(),
        ]
        .concat();
        self.inner.write_all(&trailer)?;
        Ok(self.inner)
    }
}

/// A gzip encoder that compresses blocks in parallel; see the module doc. Bytes reach the
/// inner writer on the caller's thread, in order.
pub struct ParGzEncoder<W: Write> {
    member: Member<W>,
    /// The block being filled.
    block: Vec<u8>,
    /// The last [`DICT`] bytes of the previous block.
    dict: Vec<u8>,
    /// `None`: no helper thread; blocks are compressed on the caller's thread.
    pool: Option<Pool>,
}

impl<W: Write> ParGzEncoder<W> {
    /// `threads` helper threads compress; with 0 the caller's thread does. The output does
    /// not depend on `threads`. If a thread cannot be started, fewer are used.
    fn new(inner: W, threads: usize) -> ParGzEncoder<W> {
        ParGzEncoder {
            member: Member {
                inner,
                header_written: false,
                crc: Crc::new(),
            },
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            pool: Pool::start(threads),
        }
    }

    /// Hands the current block (and the dictionary it needs) to be compressed, and writes
    /// what is already done.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        // The next block's dictionary: the tail of this one.
        let tail = data[data.len().saturating_sub(DICT)..].to_vec();
        let dict = std::mem::replace(&mut self.dict, tail);
        let job = Job { data, dict, last };
        let Some(pool) = &mut self.pool else {
            return self.member.write(compress(&job)?);
        };
        while pool.full() {
            let Some(done) = pool.oldest(true)? else {
                break;
            };
            self.member.write(done)?;
        }
        pool.send(job)?;
        // Write out what is already done, keeping memory low.
        self.write_done(false)
    }

    /// Writes the compressed blocks that are done (all of them, waiting, with `wait`).
    fn write_done(&mut self, wait: bool) -> io::Result<()> {
        if let Some(pool) = &mut self.pool {
            while let Some(done) = pool.oldest(wait)? {
                self.member.write(done)?;
            }
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        self.write_done(true)?;
        self.member.finish()
    }
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
        self.write_done(false)?;
        self.member.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let mut e = ParGzEncoder::new(Vec::new(), threads);
        for c in data.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    /// The decompressed bytes of a gzip stream (for the tests of every format).
    pub(crate) fn gunzip(gz: &[u8]) -> Vec<u8> {
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

    /// Incompressible bytes (xorshift64), the same for the same seed.
    pub(crate) fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Random and compressible runs of odd lengths, crossing block boundaries.
    fn mixed(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            let run = 40_000 + (i as usize * 7_919) % 150_000;
            if i.is_multiple_of(2) {
                v.extend_from_slice(&random(run, i + 1));
            } else {
                v.extend_from_slice(&sample(run));
            }
            i += 1;
        }
        v.truncate(len);
        v
    }

    /// The bytes of a known input, held: a change to the block cut, the probe, the stored
    /// fallback or the level shows here (the output of a release must not change by accident).
    #[test]
    fn known_input_gives_known_bytes() {
        use sha2::{Digest, Sha256};
        let data = [mixed(3 << 20), sample(BLOCK * 3), random(BLOCK, 9)].concat();
        for (threads, chunk) in [(0, 1 << 20), (2, 7_777)] {
            let gz = compress_with(&data, threads, chunk);
            let hex: String = Sha256::digest(&gz)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                (gz.len(), hex.as_str()),
                (
                    2_538_833,
                    "f00557b374d47ad1c11d37778914d46db9a3f93bda2d111053b6736bcbc3480d"
                ),
                "{threads} threads"
            );
        }
    }

    #[test]
    fn log2_in_fixed_point() {
        assert_eq!(log2_q16(1), 0);
        assert_eq!(log2_q16(2), 1 << 16);
        assert_eq!(log2_q16(1 << 17), 17 << 16);
        // log2(3) = 1.5849625…, log2(131071) = 16.99998899…
        assert!(log2_q16(3).abs_diff(103_872) <= 2, "{}", log2_q16(3));
        assert!(log2_q16(131_071).abs_diff(1_114_111) <= 2);
        let mut last = 0;
        for x in 1..5000 {
            assert!(log2_q16(x) >= last, "not monotonic at {x}");
            last = log2_q16(x);
        }
    }

    #[test]
    fn stored_blocks_decode() {
        for len in [
            0,
            1,
            STORED_MAX - 1,
            STORED_MAX,
            STORED_MAX + 1,
            BLOCK,
            200_000,
        ] {
            let data = random(len, 7);
            let raw = stored_blocks(&data, true);
            assert_eq!(raw.len(), stored_len(len), "len {len}");
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(raw.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    #[test]
    fn the_probe_tells_random_from_compressible() {
        let rnd = random(BLOCK, 3);
        assert!(incompressible(&[], &rnd));
        assert!(incompressible(&random(DICT, 4), &rnd));
        assert!(!incompressible(&[], &sample(BLOCK)));
        assert!(!incompressible(&[], &vec![0; BLOCK]));
        // Random bytes repeated within the window: high entropy, yet deflate halves them.
        let half = random(BLOCK / 8, 5);
        let repeated = half.repeat(8);
        assert!(!incompressible(&[], &repeated));
        // ... and repeats reaching back into the dictionary count too.
        let dict = random(DICT, 6);
        let mut block = dict.clone();
        block.extend_from_slice(&random(BLOCK - DICT, 8));
        assert!(!incompressible(&dict, &block));
        // Too short to probe: deflated (and stored afterwards if that did not pay).
        assert!(!incompressible(&[], &rnd[..PROBE_MIN - 1]));
    }

    /// Random input: stored, so the output is the input plus 5 bytes per 64 KiB of each
    /// block and the gzip header and trailer; it decodes back and does not depend on threads or writes.
    #[test]
    fn random_input_is_stored() {
        for len in [100, PROBE_MIN + 1, BLOCK, 3 * BLOCK + 12_345] {
            let data = random(len, 11);
            let gz = compress_with(&data, 0, 1 << 20);
            // header and trailer (18 bytes), then each block stored: 5 bytes per 64 KiB
            let mut stored: usize = data.chunks(BLOCK).map(|b| stored_len(b.len())).sum();
            if len.is_multiple_of(BLOCK) {
                stored += 2; // the last block is empty: an empty final fixed-Huffman block
            }
            assert!(gz.len() <= 18 + stored, "len {len}: {} bytes", gz.len());
            if len >= PROBE_MIN {
                assert_eq!(gz.len(), 18 + stored, "len {len}: not stored");
            }
            assert_eq!(gunzip(&gz), data);
            for (threads, chunk) in [(1, 777), (2, 65_536), (4, BLOCK + 1)] {
                assert_eq!(compress_with(&data, threads, chunk), gz, "len {len}");
            }
        }
    }

    /// Random and compressible runs: the random blocks cost their size, the rest still
    /// compresses, and the bytes do not depend on threads or writes.
    #[test]
    fn mixed_input_same_bytes_and_still_compressed() {
        let data = mixed(12 * BLOCK + 999);
        let gz = compress_with(&data, 0, 1 << 20);
        assert_eq!(gunzip(&gz), data);
        assert!(
            gz.len() < data.len() * 3 / 4,
            "{} of {}",
            gz.len(),
            data.len()
        );
        for (threads, chunk) in [(1, 1000), (2, 4096), (3, BLOCK - 1)] {
            assert_eq!(
                compress_with(&data, threads, chunk),
                gz,
                "{threads} threads"
            );
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
        let mut e = ParGzEncoder::new(Vec::new(), 2);
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
            let mut e = ParGzEncoder::new(Full, threads);
            let r = e
                .write_all(&sample(6 * BLOCK))
                .and_then(|()| e.finish().map(drop));
            assert_eq!(r.unwrap_err().to_string(), "disk full");
        }
    }
}
