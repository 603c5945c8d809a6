//! A spool file one thread writes while another reads it as it grows: the executor's
//! helpers write images placed ahead of their turn into one ([`GrowingSpool::writer`]), and
//! the executor moves the bytes into the output as they come ([`SpoolReader`]), instead of
//! waiting for the whole image. The file is anonymous (gone with the process).
//!
//! Once the reader has caught up with the writer (the image's turn came while it was still
//! being written), the file has served its purpose: the writer's later bytes are handed over
//! in memory ([`LIVE`] bytes at most, the writer waiting for the reader beyond that), so the
//! rest of the image goes into the output once, not into the spool and then copied.
//!
//! The writer writes at explicit offsets (`pwrite`) and never moves the file offset; the
//! reader owns it, so handles it hands out ([`archive::Spool::next_piece`]) can be read (or
//! copied from with `copy_file_range`) in order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::archive::{self, Piece};

/// Bytes handed over in memory and not yet read, at most (two of the helper's 128 KiB
/// writes; the reader takes them faster than any source makes them).
pub const LIVE: usize = 256 << 10;

/// How far the writer got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still writing.
    Open,
    /// Complete: `len` is final.
    Done,
    /// The writer failed; its error is the caller's to report.
    Failed,
}

struct State {
    /// Bytes written (into the file, then handed over).
    len: u64,
    end: End,
    /// The reader waited at the end of what was written: the writer hands over from now on.
    live: bool,
    /// Where the file's part ends, once the writer hands over.
    switched: Option<u64>,
    /// Bytes handed over and not yet read.
    queue: VecDeque<Vec<u8>>,
    /// The reader is gone: a writer waiting for it stops.
    closed: bool,
}

impl State {
    /// Bytes handed over and not yet read.
    fn queued(&self) -> usize {
        self.queue.iter().map(Vec::len).sum()
    }
}

/// A spool file being written by one thread and read by another.
pub struct GrowingSpool {
    file: File,
    state: Mutex<State>,
    /// Signalled whenever the state changes (more bytes, the end, bytes read, the reader
    /// gone): the reader and the writer wait on it.
    changed: Condvar,
}

impl GrowingSpool {
    /// An empty spool in `dir` (the system's temporary directory when `None`).
    pub fn new_in(dir: Option<&Path>) -> io::Result<GrowingSpool> {
        let file = match dir {
            Some(d) => tempfile::tempfile_in(d),
            None => tempfile::tempfile(),
        }?;
        Ok(GrowingSpool {
            file,
            state: Mutex::new(State {
                len: 0,
                end: End::Open,
                live: false,
                switched: None,
                queue: VecDeque::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(s).unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state();
        if s.end == End::Open {
            f(&mut s);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// The writing end: every write is readable once it returns.
    pub fn writer(&self) -> SpoolWriter<'_> {
        SpoolWriter {
            spool: self,
            pos: 0,
        }
    }

    /// Marks the spool complete at `len` bytes: what is written after this call is not read
    /// (bytes written before it are already readable, so `len` must cover them).
    pub fn done(&self, len: u64) {
        self.set(|s| {
            s.len = len;
            s.end = End::Done;
        });
    }

    /// Marks the writer as failed: the reader stops with an error.
    pub fn fail(&self) {
        self.set(|s| s.end = End::Failed);
    }

    /// Whether the writer failed.
    pub fn has_failed(&self) -> bool {
        self.state().end == End::Failed
    }

    /// The reading end (one per spool: it owns the file offset).
    pub fn reader(&self) -> io::Result<SpoolReader<'_>> {
        Ok(SpoolReader {
            spool: self,
            file: self.file.try_clone()?,
            pos: 0,
            current: Vec::new(),
            at: 0,
        })
    }
}

/// Writes into a [`GrowingSpool`] at its end.
pub struct SpoolWriter<'a> {
    spool: &'a GrowingSpool,
    pos: u64,
}

impl Write for SpoolWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.spool.state();
        if s.live && s.switched.is_none() && s.end == End::Open {
            s.switched = Some(self.pos);
        }
        if s.switched.is_some() {
            if s.end != End::Open {
                // Past the end (the tar's end-of-archive blocks): never read.
                return Ok(buf.len());
            }
            while s.queued() >= LIVE && !s.closed {
                s = self.spool.wait(s);
            }
            if s.closed {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the output stopped taking this image",
                ));
            }
            s.queue.push_back(buf.to_vec());
            self.pos += buf.len() as u64;
            s.len = self.pos;
            drop(s);
            self.spool.changed.notify_all();
            return Ok(buf.len());
        }
        drop(s);
        let n = self.spool.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        let pos = self.pos;
        self.spool.set(|s| s.len = pos);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the reader has next.
enum Next {
    /// File bytes up to this offset.
    File(u64),
    /// Bytes handed over.
    Bytes(Vec<u8>),
}

/// Reads a [`GrowingSpool`] as it grows.
pub struct SpoolReader<'a> {
    spool: &'a GrowingSpool,
    file: File,
    /// Bytes read (from the file, then handed over).
    pos: u64,
    /// Handed-over bytes being read by [`Read`], from `at`.
    current: Vec<u8>,
    at: usize,
}

impl SpoolReader<'_> {
    /// Waits until there are bytes past `pos`; `None` at the end. Waiting at the end of
    /// what was written asks the writer to hand its later bytes over.
    fn next(&self) -> io::Result<Option<Next>> {
        let mut s = self.spool.state();
        loop {
            let file_end = s.switched.unwrap_or(s.len);
            if file_end > self.pos {
                return Ok(Some(Next::File(file_end)));
            }
            if s.switched.is_some()
                && let Some(b) = s.queue.pop_front()
            {
                drop(s);
                self.spool.changed.notify_all();
                return Ok(Some(Next::Bytes(b)));
            }
            match s.end {
                End::Done => return Ok(None),
                End::Failed => return Err(io::Error::other("the image placed ahead failed")),
                End::Open => {
                    s.live = true;
                    s = self.spool.wait(s);
                }
            }
        }
    }
}

impl Drop for SpoolReader<'_> {
    /// A writer waiting for room stops (the output failed, or took the image whole).
    fn drop(&mut self) {
        self.spool.state().closed = true;
        self.spool.changed.notify_all();
    }
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            match self.next()? {
                None => return Ok(0),
                Some(Next::Bytes(b)) => {
                    self.current = b;
                    self.at = 0;
                }
                Some(Next::File(end)) => {
                    let want = buf
                        .len()
                        .min(usize::try_from(end - self.pos).unwrap_or(usize::MAX));
                    let n = self.file.read(&mut buf[..want])?;
                    if n == 0 && want > 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "spool file shorter than written",
                        ));
                    }
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        self.pos += n as u64;
        Ok(n)
    }
}

impl archive::Spool for SpoolReader<'_> {
    fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        if self.at < self.current.len() {
            let rest = self.current.split_off(self.at);
            self.pos += rest.len() as u64;
            (self.current, self.at) = (Vec::new(), 0);
            return Ok(Some(Piece::Bytes(rest)));
        }
        Ok(match self.next()? {
            None => None,
            Some(Next::File(end)) => {
                let piece = Piece::Range(self.file.try_clone()?, end - self.pos);
                self.pos = end;
                Some(piece)
            }
            Some(Next::Bytes(b)) => {
                self.pos += b.len() as u64;
                Some(Piece::Bytes(b))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Spool as _;

    /// The bytes of a piece (a file range read from its handle).
    fn bytes_of(piece: Piece) -> Vec<u8> {
        match piece {
            Piece::Range(f, len) => {
                let mut got = Vec::new();
                let n = f.take(len).read_to_end(&mut got).unwrap();
                assert_eq!(n as u64, len);
                got
            }
            Piece::Bytes(b) => b,
        }
    }

    fn live(spool: &GrowingSpool) -> bool {
        spool.state().live
    }

    /// Once the reader caught up, the writer's later bytes come in memory and never reach
    /// the file; every byte arrives once, in order, and what follows `done` is not read.
    #[test]
    fn after_the_reader_caught_up_the_rest_comes_in_memory() {
        let spool = GrowingSpool::new_in(None).unwrap();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();
        let (early, late) = data.split_at(1_000_000);
        let (mut ranges, mut handed) = (0, 0);
        let mut w = spool.writer();
        w.write_all(early).unwrap();
        let (spool, data) = (&spool, &data);
        std::thread::scope(|s| {
            s.spawn(move || {
                while !live(spool) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                for piece in late.chunks(100_000) {
                    w.write_all(piece).unwrap();
                }
                spool.done(data.len() as u64);
                w.write_all(b"past the end").unwrap();
            });
            let mut r = spool.reader().unwrap();
            let mut got = Vec::new();
            while let Some(piece) = r.next_piece().unwrap() {
                match &piece {
                    Piece::Range(..) => ranges += 1,
                    Piece::Bytes(_) => handed += 1,
                }
                got.extend(bytes_of(piece));
            }
            assert!(&got == data, "the bytes differ");
        });
        assert!(
            ranges >= 1 && handed >= 30,
            "{ranges} ranges, {handed} handed over"
        );
        assert_eq!(spool.file.metadata().unwrap().len(), early.len() as u64);
    }

    /// Read (the formats that parse the entries back) gives the same bytes across the switch.
    #[test]
    fn read_follows_the_switch() {
        let spool = GrowingSpool::new_in(None).unwrap();
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
        let mut w = spool.writer();
        w.write_all(&data[..300_000]).unwrap();
        let (spool, data) = (&spool, &data);
        std::thread::scope(|s| {
            s.spawn(move || {
                while !live(spool) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                for piece in data[300_000..].chunks(70_000) {
                    w.write_all(piece).unwrap();
                }
                spool.done(data.len() as u64);
            });
            let mut got = Vec::new();
            spool.reader().unwrap().read_to_end(&mut got).unwrap();
            assert!(&got == data, "the bytes differ");
        });
        assert_eq!(spool.file.metadata().unwrap().len(), 300_000);
    }

    /// A writer waiting for room stops with an error when the reader goes away, instead of
    /// waiting forever.
    #[test]
    fn a_writer_waiting_for_a_gone_reader_stops() {
        let spool = GrowingSpool::new_in(None).unwrap();
        spool.state().live = true;
        let r = spool.reader().unwrap();
        std::thread::scope(|s| {
            let w = s.spawn(|| {
                let mut w = spool.writer();
                let piece = vec![7u8; LIVE / 2];
                (0..4).try_for_each(|_| w.write_all(&piece))
            });
            while spool.state().queued() < LIVE {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            drop(r);
            let err = w.join().unwrap().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        });
    }

    #[test]
    fn the_reader_follows_the_writer_to_the_end() {
        let spool = GrowingSpool::new_in(None).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut w = spool.writer();
                for piece in data.chunks(100_000) {
                    w.write_all(piece).unwrap();
                }
                spool.done(data.len() as u64);
                // What comes after `done` (the tar trailer, in the executor) is not read.
                w.write_all(b"past the end").unwrap();
            });
            let mut got = Vec::new();
            spool.reader().unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(got, data);
        });
    }

    #[test]
    fn ranges_cover_every_byte_in_order() {
        let spool = GrowingSpool::new_in(None).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut w = spool.writer();
                for i in 0..50u8 {
                    w.write_all(&[i; 10_000]).unwrap();
                }
                spool.done(500_000);
            });
            let mut r = spool.reader().unwrap();
            let mut got = Vec::new();
            while let Some(piece) = r.next_piece().unwrap() {
                got.extend(bytes_of(piece));
            }
            assert_eq!(got.len(), 500_000);
            assert!(
                got.chunks(10_000)
                    .enumerate()
                    .all(|(i, c)| c.iter().all(|b| *b == i as u8))
            );
        });
    }

    #[test]
    fn a_failed_writer_stops_the_reader_with_an_error() {
        let spool = GrowingSpool::new_in(None).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                spool.writer().write_all(b"some").unwrap();
                spool.fail();
            });
            let mut got = Vec::new();
            let err = spool.reader().unwrap().read_to_end(&mut got).unwrap_err();
            assert_eq!(err.to_string(), "the image placed ahead failed");
            assert!(spool.has_failed());
        });
    }
}
