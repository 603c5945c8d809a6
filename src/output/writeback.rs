//! How an output file is written: bytes, and files taken from a spool, go straight to the
//! disk with direct I/O; where the file system refuses it, through the page cache, with
//! taken files copied inside the kernel and written behind.
//!
//! - Bytes (every format's stream) are collected in an aligned buffer and written with
//!   `O_DIRECT` through a second handle to the same file, a [`DIRECT`] piece at a time: the
//!   disk reads them from this buffer, so no page-cache page is allocated, filled and written
//!   back. Measured on this project's machine (ext4 on a virtual disk): writing 2 GB
//!   buffered and then `fsync` cost 1.6–8.6 s of system CPU and 2.6–10 s; with `O_DIRECT`,
//!   0.2 s of system CPU and 1.4 s (`dd bs=4M`). The few bytes that do not fill an aligned
//!   block (after a taken file, at the end) are written through the page cache. Where the
//!   file system refuses `O_DIRECT`, everything is written through the page cache.
//! - The direct writes are made by threads of their own ([`DiskThread`]): [`WRITERS`] of
//!   them, so that the disk has two writes at once, and [`BUFFERS`] buffers, so that both
//!   write while the next piece is filled. Measured on the benchmark's warm spec (2.3 GB
//!   from the cache): with the writes made by the thread filling the buffer, the disk was
//!   idle while the next piece was copied in; with one disk thread and three buffers,
//!   2.09–2.75 s (median 2.24) against 1.93–2.98 s (2.11) with two and four (eight
//!   alternated pairs, with the kernel streamed), as `fio` finds on this disk (2285 MiB of
//!   512 KiB direct writes: 2.20–2.40 s one at a time, 2.02–2.19 s four in flight).
//! - Files ([`TakeFile`]) are read straight into the aligned buffers and written like the
//!   bytes ([`WriteBehind::read_in`]): one copy into this process, no page-cache page filled
//!   for the output. Measured on the benchmark's spec as `tar` (A/B, alternated): system CPU
//!   2.6–3.5 s → 2.4–2.7 s with `--jobs 2`, 3.0–4.1 s → 2.4–2.7 s with `--jobs 3`, where
//!   `copy_file_range` filled a page-cache page for every byte of a spooled image.
//! - Without direct I/O, files are copied in with `copy_file_range` (inside the kernel, never
//!   through this process's memory), a [`WINDOW`] at a time; after each window the kernel is
//!   asked to start writing it to the disk (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which
//!   does not wait), so the `fsync` before the rename only waits for the last window.
//!   Measured on the 1 GiB benchmark image: the final `fsync` of a file written without it
//!   took 0.5 s.
//!
//! Every write names its offset, so the handles never depend on a shared file position and
//! never write the same block; [`Write::flush`] waits for the disk threads and leaves the
//! buffered handle's position at the end of what was written.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::archive::{self, TakeFile};

/// Bytes between two write-back requests while a file is copied in.
pub const WINDOW: u64 = 8 << 20;
/// Bytes written with direct I/O at once (the size of each aligned buffer). 512 KiB pieces
/// of `O_DIRECT` reach 1.1 GB/s here (`dd bs=512K oflag=direct`; 2 and 8 MiB pieces were no
/// faster); larger ones would add to the peak RSS of every build.
pub const DIRECT: usize = 512 << 10;
/// Alignment of direct writes, in memory and in the file (a page: every block size of a
/// Linux file system divides it).
const ALIGN: usize = 4096;
/// Aligned buffers at most: one being filled, one with each disk thread and one queued for
/// the first that is free. (With one disk thread, the warm spec of the benchmark took
/// 2.26–2.54 s with two buffers and 2.17–2.34 s with three.)
const BUFFERS: usize = 4;
/// Threads making the direct writes, each one write at a time.
const WRITERS: usize = 2;

/// A second handle to `file`, for writing with `O_DIRECT` (its own open file description,
/// so its flags are not `file`'s).
fn open_direct(file: &File) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// [`DIRECT`] bytes starting at an [`ALIGN`]ed address (`bytes[base..]`).
struct Block {
    bytes: Vec<u8>,
    base: usize,
}

impl Block {
    fn new() -> Block {
        let bytes = vec![0u8; DIRECT + ALIGN];
        let base = bytes.as_ptr().align_offset(ALIGN).min(ALIGN);
        Block { bytes, base }
    }
}

/// A piece for the disk threads: `block.bytes[from..from + len]`, to be written at `at`.
struct DirectWrite {
    block: Block,
    from: usize,
    len: usize,
    at: u64,
}

/// A piece written: its block back, and the bytes that went directly (or the error).
type Done = (Block, io::Result<u64>);

/// The threads that make the direct writes ([`WRITERS`] of them, taking pieces from one
/// queue: the disk gets more than one write at a time).
struct DiskThread {
    pieces: Option<SyncSender<DirectWrite>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl DiskThread {
    /// Starts the threads: each writes through `direct`, or through `cached` (the same
    /// file, through the page cache) once the file system refuses a direct write.
    fn start(direct: File, cached: File) -> io::Result<DiskThread> {
        let (pieces, from_writer) = sync_channel::<DirectWrite>(BUFFERS);
        let (done_tx, done) = sync_channel::<Done>(BUFFERS);
        let from_writer = Arc::new(Mutex::new(from_writer));
        let mut threads = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let mut direct = Some(direct.try_clone()?);
            let cached = cached.try_clone()?;
            let from_writer = Arc::clone(&from_writer);
            let done_tx = done_tx.clone();
            let thread = std::thread::Builder::new()
                .name("imagesmith-disk".into())
                .spawn(move || {
                    // The lock is held only while waiting for the next piece.
                    let next = || from_writer.lock().ok().and_then(|rx| rx.recv().ok());
                    while let Some(p) = next() {
                        let bytes = &p.block.bytes[p.from..p.from + p.len];
                        let result = write_piece(&mut direct, &cached, bytes, p.at);
                        if done_tx.send((p.block, result)).is_err() {
                            break;
                        }
                    }
                })?;
            threads.push(thread);
        }
        Ok(DiskThread {
            pieces: Some(pieces),
            done,
            threads,
        })
    }
}

impl Drop for DiskThread {
    /// Lets the threads finish the pieces they have and waits for them, so that no write
    /// lands after the file was handed on.
    fn drop(&mut self) {
        self.pieces = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Writes `bytes` (aligned in memory and in the file) at `at` with direct I/O; if the file
/// system refuses it (`EINVAL`, or a short write off the block size), the rest and every
/// later piece go through the page cache (`cached`). Returns the bytes written directly.
fn write_piece(direct: &mut Option<File>, cached: &File, bytes: &[u8], at: u64) -> io::Result<u64> {
    let mut done = 0;
    let mut used = 0u64;
    while done < bytes.len() {
        let Some(d) = direct else {
            cached.write_all_at(&bytes[done..], at + done as u64)?;
            break;
        };
        match d.write_at(&bytes[done..], at + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                done += n;
                used += n as u64;
                if n % ALIGN != 0 {
                    // A short write off the block size: the rest could not be aligned.
                    *direct = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                log::debug!("output: direct write refused ({e}); writing through the page cache");
                *direct = None;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(used)
}

/// An output file being written; see the module's documentation.
pub struct WriteBehind {
    /// The file, through the page cache.
    file: File,
    /// The same file opened with `O_DIRECT`, until the disk threads take it; `None` where
    /// that is refused (then every byte goes through the page cache).
    direct: Option<File>,
    /// Started by the first aligned piece (outputs written at offsets, such as the disk
    /// images, never need it).
    disk: Option<DiskThread>,
    /// The buffer being filled, allocated by the first write.
    cur: Option<Block>,
    /// Buffers back from the disk threads, and how many exist.
    spare: Vec<Block>,
    blocks: usize,
    /// Pieces with the disk threads.
    in_flight: usize,
    /// File offset of the buffered bytes; they sit at `cur.bytes[base + pos % ALIGN..]`, so
    /// that a byte's address and its file offset agree modulo [`ALIGN`].
    pos: u64,
    /// Bytes in the buffer.
    filled: usize,
    /// Bytes written with direct I/O (logged at the end, checked by tests).
    direct_bytes: u64,
}

impl WriteBehind {
    pub fn new(file: File) -> WriteBehind {
        let direct = open_direct(&file)
            .map_err(|e| log::debug!("output: no direct I/O ({e}); writing through the page cache"))
            .ok();
        WriteBehind {
            file,
            direct,
            disk: None,
            cur: None,
            spare: Vec::new(),
            blocks: 0,
            in_flight: 0,
            pos: 0,
            filled: 0,
            direct_bytes: 0,
        }
    }

    /// Writes what is buffered and returns the file (through the page cache).
    pub fn into_inner(mut self) -> io::Result<File> {
        self.flush()?;
        self.disk = None;
        log::debug!(
            "output: {} of {} bytes written with direct I/O",
            self.direct_bytes,
            self.pos
        );
        Ok(self.file)
    }

    /// Whether the stream goes to the disk with direct I/O (else through the page cache).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some() || self.disk.is_some()
    }

    /// Bytes written with direct I/O so far (complete after a flush).
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes
    }

    /// Where the buffered bytes start in `block`.
    fn start(&self, block: &Block) -> usize {
        block.base + (self.pos % ALIGN as u64) as usize
    }

    /// The disk threads, started on first use; `None` without direct I/O.
    fn disk(&mut self) -> Option<&DiskThread> {
        if self.disk.is_none() {
            let direct = self.direct.take()?;
            let started = self
                .file
                .try_clone()
                .and_then(|cached| DiskThread::start(direct, cached));
            match started {
                Ok(t) => self.disk = Some(t),
                Err(e) => {
                    log::debug!("output: no disk thread ({e}); writing through the page cache");
                    return None;
                }
            }
        }
        self.disk.as_ref()
    }

    /// Takes the next result of the disk threads: its block becomes spare.
    fn collect(&mut self) -> io::Result<()> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let (block, result) = disk
            .done
            .recv()
            .map_err(|_| io::Error::other("the output's disk threads stopped"))?;
        self.in_flight -= 1;
        self.spare.push(block);
        self.direct_bytes += result?;
        Ok(())
    }

    /// Waits until the disk threads have written every piece.
    fn settle(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.collect()?;
        }
        Ok(())
    }

    /// A free buffer: a spare one, a new one while there are fewer than [`BUFFERS`], else
    /// the next one a disk thread is done with.
    fn free_block(&mut self) -> io::Result<Block> {
        loop {
            if let Some(b) = self.spare.pop() {
                return Ok(b);
            }
            if self.blocks < BUFFERS || self.in_flight == 0 {
                self.blocks += 1;
                return Ok(Block::new());
            }
            self.collect()?;
        }
    }

    /// Writes the buffered bytes: the aligned blocks with direct I/O ([`Self::write_body`]),
    /// the part before the first block boundary through the page cache, and the part after
    /// the last one through the page cache too if `all`, else kept (at the start of the
    /// buffer filled next, at most [`ALIGN`] − 1 bytes).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        let Some(cur) = &self.cur else {
            return Ok(());
        };
        if self.filled == 0 {
            return Ok(());
        }
        let start = self.start(cur);
        let head = ((ALIGN - (self.pos % ALIGN as u64) as usize) % ALIGN).min(self.filled);
        let body = (self.filled - head) / ALIGN * ALIGN;
        let rest = self.filled - head - body;
        let (at, tail) = (self.pos, start + head + body);
        if head > 0 {
            self.file
                .write_all_at(&cur.bytes[start..start + head], at)?;
        }
        if all && rest > 0 {
            let rest_at = at + (head + body) as u64;
            self.file
                .write_all_at(&cur.bytes[tail..tail + rest], rest_at)?;
        }
        if body > 0 {
            let keep = if all { 0 } else { rest };
            self.write_body(start + head, body, at + head as u64, keep)?;
        }
        if all {
            self.pos += self.filled as u64;
            self.filled = 0;
        } else {
            // `at + head + body` is aligned: the rest is at the buffer's aligned start.
            self.pos += (head + body) as u64;
            self.filled = rest;
        }
        Ok(())
    }

    /// Writes `len` aligned bytes of the current buffer, from `from`, at `at`: handed to the
    /// disk threads, a free buffer taking the current one's place (through the page cache
    /// where there is no direct I/O). The `keep` bytes after them move to the start of the
    /// buffer filled next.
    fn write_body(&mut self, from: usize, len: usize, at: u64, keep: usize) -> io::Result<()> {
        let kept = from + len..from + len + keep;
        if self.disk().is_none() {
            let Some(cur) = &mut self.cur else {
                return Ok(());
            };
            self.file.write_all_at(&cur.bytes[from..from + len], at)?;
            cur.bytes.copy_within(kept, cur.base);
            return Ok(());
        }
        let mut next = self.free_block()?;
        let Some(block) = self.cur.take() else {
            return Ok(());
        };
        next.bytes[next.base..next.base + keep].copy_from_slice(&block.bytes[kept]);
        self.cur = Some(next);
        let piece = DirectWrite {
            block,
            from,
            len,
            at,
        };
        let sent = self
            .disk
            .as_ref()
            .and_then(|d| d.pieces.as_ref())
            .map(|p| p.send(piece));
        match sent {
            Some(Ok(())) => {
                self.in_flight += 1;
                Ok(())
            }
            _ => Err(io::Error::other("the output's disk threads stopped")),
        }
    }

    /// Asks the kernel to start writing `[from, to)` of the file to the disk. A hint only:
    /// failures are ignored (the final `fsync` reports real errors).
    fn write_back(&self, from: u64, to: u64) {
        let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
            return;
        };
        // SAFETY: sync_file_range reads no memory of ours; the descriptor is valid for as
        // long as `self.file` lives.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.fill(data.len(), |dst| {
            dst.copy_from_slice(&data[..dst.len()]);
            Ok(dst.len())
        })
    }

    /// Writes everything buffered, waits for the disk threads and leaves the file's position
    /// at its end.
    fn flush(&mut self) -> io::Result<()> {
        self.drain(true)?;
        self.settle()?;
        self.file.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }
}

impl WriteBehind {
    /// Reads `len` bytes of `file` (from its position) straight into the aligned buffers,
    /// which the disk threads write with direct I/O: one copy, and no page-cache pages
    /// filled for the output.
    fn read_in(&mut self, mut file: File, len: u64) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let max = usize::try_from(left).unwrap_or(usize::MAX);
            match self.fill(max, |dst| file.read(dst)) {
                Ok(0) => return Err(archive::short_file(len - left, len)),
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Lets `put` fill at most `max` bytes of the buffer being filled (a free one if there
    /// is none) and returns how many it put there; a full buffer goes to the disk.
    fn fill(
        &mut self,
        max: usize,
        put: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut cur = match self.cur.take() {
            Some(b) => b,
            None => self.free_block()?,
        };
        let at = self.start(&cur) + self.filled;
        let room = DIRECT + cur.base - at;
        let put = put(&mut cur.bytes[at..at + max.min(room)]);
        self.cur = Some(cur);
        let n = put?;
        self.filled += n;
        if n == room {
            self.drain(false)?;
        }
        Ok(n)
    }
}

impl TakeFile for WriteBehind {
    /// With direct I/O, the file is read into the aligned buffers ([`WriteBehind::read_in`]).
    /// Without, `copy_file_range` (through `io::copy`), a window at a time with write-back
    /// started after each: the spool's pages are copied inside the kernel, never through
    /// this process's memory, and the disk starts on them while the copy goes on.
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        if self.is_direct() {
            return self.read_in(file, len);
        }
        self.flush()?;
        let mut left = len;
        while left > 0 {
            let piece = left.min(WINDOW);
            let n = io::copy(&mut io::Read::take(&file, piece), &mut self.file)?;
            if n != piece {
                return Err(archive::short_file(len - left + n, len));
            }
            left -= n;
            self.write_back(self.pos, self.pos + n);
            self.pos += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + seed) % 251) as u8).collect()
    }

    fn content(f: &File) -> Vec<u8> {
        let mut got = Vec::new();
        (&*f).seek(SeekFrom::Start(0)).unwrap();
        (&*f).read_to_end(&mut got).unwrap();
        got
    }

    /// Whether this directory's file system takes `O_DIRECT` writes (tmpfs before 6.6 does
    /// not); where it does, the writer must use them.
    fn direct_io_works(dir: &std::path::Path) -> bool {
        let f = tempfile::tempfile_in(dir).unwrap();
        let Ok(d) = open_direct(&f) else {
            return false;
        };
        let buf = vec![0u8; 2 * ALIGN];
        let off = buf.as_ptr().align_offset(ALIGN);
        d.write_at(&buf[off..off + ALIGN], 0).is_ok()
    }

    #[test]
    fn bytes_and_files_land_in_order() {
        let data = pattern(2 * WINDOW as usize + 12_345, 0);
        let mut spool = tempfile::tempfile().unwrap();
        spool.write_all(&data).unwrap();
        spool.rewind().unwrap();
        let mut w = WriteBehind::new(tempfile::tempfile().unwrap());
        w.write_all(b"head").unwrap();
        w.take_file(spool.try_clone().unwrap(), data.len() as u64 - 7)
            .unwrap();
        w.write_all(b"tail").unwrap();
        // Past its end: an error naming both lengths.
        spool.rewind().unwrap();
        let err = w.take_file(spool, data.len() as u64 + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string()
                .contains(&format!("of {} bytes", data.len() + 1))
        );
        let f = w.into_inner().unwrap();
        let got = content(&f);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..data.len() - 3], &data[..data.len() - 7]);
        assert_eq!(&got[data.len() - 3..data.len() + 1], b"tail");
    }

    /// Writes streams of every alignment, mixed with taken files, in odd pieces through
    /// `w`: the file holds exactly the bytes in order and its position is at the end.
    /// Returns the bytes written directly.
    fn interleave(mut w: WriteBehind) -> u64 {
        let mut want = Vec::new();
        for (i, (stream, taken)) in [
            (3 * DIRECT + 17, 5_000usize),
            (1, 0),
            (ALIGN - 1, 1),
            (DIRECT - 3, 4096),
            (2 * DIRECT + ALIGN, 0),
            (777, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let bytes = pattern(stream, i);
            for piece in bytes.chunks(65_537 + i * 1000) {
                w.write_all(piece).unwrap();
            }
            want.extend_from_slice(&bytes);
            if taken > 0 {
                let t = pattern(taken, 100 + i);
                let mut spool = tempfile::tempfile().unwrap();
                spool.write_all(&t).unwrap();
                spool.rewind().unwrap();
                w.take_file(spool, taken as u64).unwrap();
                want.extend_from_slice(&t);
            }
        }
        w.flush().unwrap();
        assert!(w.blocks <= BUFFERS, "{} buffers for {BUFFERS}", w.blocks);
        let used = w.direct_bytes();
        let f = w.into_inner().unwrap();
        assert_eq!(content(&f).len(), want.len());
        assert!(
            content(&f) == want,
            "the file differs from the bytes written"
        );
        assert_eq!(
            (&f).stream_position().unwrap(),
            want.len() as u64,
            "the position is at the end"
        );
        used
    }

    /// The aligned middle of the stream goes to the disk directly wherever the file system
    /// allows it (this project's CI runs on ext4, which does).
    #[test]
    fn direct_and_buffered_writes_interleave_at_any_offset() {
        let dir = std::env::temp_dir();
        let direct = direct_io_works(&dir);
        let used = interleave(WriteBehind::new(tempfile::tempfile_in(&dir).unwrap()));
        if direct {
            assert!(
                used >= 5 * DIRECT as u64,
                "only {used} bytes went to the disk directly"
            );
        } else {
            assert_eq!(used, 0);
        }
    }

    /// A taken file goes to the disk directly too (read into the aligned buffers), from any
    /// offset of the output.
    #[test]
    fn taken_files_go_to_the_disk_directly() {
        let dir = std::env::temp_dir();
        let direct = direct_io_works(&dir);
        let t = pattern(4 * DIRECT + 99, 7);
        let mut spool = tempfile::tempfile().unwrap();
        spool.write_all(&t).unwrap();
        spool.rewind().unwrap();
        let mut w = WriteBehind::new(tempfile::tempfile_in(&dir).unwrap());
        w.write_all(b"0123456789").unwrap();
        w.take_file(spool, t.len() as u64).unwrap();
        w.flush().unwrap();
        if direct {
            assert!(
                w.direct_bytes() >= 4 * DIRECT as u64 - ALIGN as u64,
                "only {} bytes went to the disk directly",
                w.direct_bytes()
            );
        } else {
            assert_eq!(w.direct_bytes(), 0);
        }
        let f = w.into_inner().unwrap();
        let got = content(&f);
        assert_eq!(&got[..10], b"0123456789");
        assert!(got[10..] == t[..], "the taken file's bytes differ");
    }

    /// Without direct I/O (a file system that refuses it) every byte goes through the page
    /// cache, in the same order.
    #[test]
    fn without_direct_io_the_same_bytes_land() {
        let mut w = WriteBehind::new(tempfile::tempfile().unwrap());
        w.direct = None;
        assert_eq!(interleave(w), 0);
    }
}
