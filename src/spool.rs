//! A spool file one thread writes while another reads it as it grows: the executor's
//! helpers write images placed ahead of their turn into one ([`GrowingSpool::writer`]), and
//! the executor moves the bytes into the output as they come ([`SpoolReader`]), instead of
//! waiting for the whole image. The file is anonymous (gone with the process).
//!
//! The writer writes at explicit offsets (`pwrite`) and never moves the file offset; the
//! reader owns it, so handles it hands out ([`archive::Spool::next_range`]) can be copied
//! from with `copy_file_range` in order.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::archive;

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
    len: u64,
    end: End,
}

/// A spool file being written by one thread and read by another.
pub struct GrowingSpool {
    file: File,
    state: Mutex<State>,
    grown: Condvar,
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
            }),
            grown: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state();
        if s.end == End::Open {
            f(&mut s);
        }
        drop(s);
        self.grown.notify_all();
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

/// Reads a [`GrowingSpool`] as it grows.
pub struct SpoolReader<'a> {
    spool: &'a GrowingSpool,
    file: File,
    pos: u64,
}

impl SpoolReader<'_> {
    /// Waits until there are bytes past `pos`: how far they go, or `None` at the end.
    fn wait(&self) -> io::Result<Option<u64>> {
        let mut s = self.spool.state();
        loop {
            if s.len > self.pos {
                return Ok(Some(s.len));
            }
            match s.end {
                End::Done => return Ok(None),
                End::Failed => return Err(io::Error::other("the image placed ahead failed")),
                End::Open => s = self.spool.grown.wait(s).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(end) = self.wait()? else {
            return Ok(0);
        };
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
        Ok(n)
    }
}

impl archive::Spool for SpoolReader<'_> {
    fn next_range(&mut self) -> io::Result<Option<(File, u64)>> {
        let Some(end) = self.wait()? else {
            return Ok(None);
        };
        let range = (self.file.try_clone()?, end - self.pos);
        self.pos = end;
        Ok(Some(range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Spool as _;

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
            while let Some((f, len)) = r.next_range().unwrap() {
                let n = f.take(len).read_to_end(&mut got).unwrap();
                assert_eq!(n as u64, len);
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
