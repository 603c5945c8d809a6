//! A writer on its own thread: the stage that writes the output overlaps the stages that
//! read and rewrite images. Used for standard output, devices, FIFOs and output files
//! without direct I/O; an output file with direct I/O has disk threads of its own
//! ([`super::writeback`]) and no writing thread in front of it. [`Threaded`] collects
//! writes into large chunks and hands them to a thread that owns the real writer, through
//! a bounded queue (at most [`DEPTH`] chunks of [`CHUNK`] bytes in flight, so memory stays
//! bounded); emptied chunks come back for reuse. A write error of the thread is returned by the next write or by
//! [`Threaded::finish`], with its kind kept (a closed pipe stays `BrokenPipe`).
//!
//! A file can be queued too ([`TakeFile`]): the thread copies it in, after what was
//! written before, the way the inner writer takes files (inside the kernel for an output
//! file).

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::archive::TakeFile;

/// Bytes handed to the writing thread at once. (512 KiB before the output file got its own
/// 512 KiB buffer for direct I/O; with both, the zstd initrd build of the benchmark peaked at
/// 32.0 MiB, with 256 KiB chunks at 29.6 MiB, no slower.)
pub const CHUNK: usize = 256 << 10;
/// Chunks queued for the writing thread at most (besides the one it is writing). One: an
/// output file's own disk threads keep pieces in flight while the writing thread fills the
/// next ([`super::writeback`]), so a deeper queue would only add 256 KiB of memory per chunk.
pub const DEPTH: usize = 1;

/// What the writing thread is handed.
enum Job {
    Bytes(Vec<u8>),
    File(File, u64),
}

/// A [`Write`] whose bytes are written by another thread.
pub struct Threaded<W: TakeFile + Send + 'static> {
    buf: Vec<u8>,
    to_thread: Option<SyncSender<Job>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<W>>>,
}

impl<W: TakeFile + Send + 'static> Threaded<W> {
    /// Starts the writing thread for `inner`.
    pub fn new(mut inner: W) -> io::Result<Threaded<W>> {
        let (to_thread, from_main) = sync_channel::<Job>(DEPTH);
        let (give_back, spare) = sync_channel::<Vec<u8>>(1);
        let thread = std::thread::Builder::new()
            .name("imagesmith-write".into())
            .spawn(move || {
                for job in from_main {
                    match job {
                        Job::Bytes(mut chunk) => {
                            inner.write_all(&chunk)?;
                            chunk.clear();
                            let _ = give_back.try_send(chunk);
                        }
                        Job::File(f, len) => inner.take_file(f, len)?,
                    }
                }
                inner.flush()?;
                Ok(inner)
            })?;
        Ok(Threaded {
            buf: Vec::with_capacity(CHUNK),
            to_thread: Some(to_thread),
            spare,
            thread: Some(thread),
        })
    }

    /// Hands the buffered bytes to the thread.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        self.hand(Job::Bytes(chunk))
    }

    fn hand(&mut self, job: Job) -> io::Result<()> {
        let sent = self.to_thread.as_ref().map(|t| t.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread ended: it failed; its error says why.
            _ => Err(self.thread_error()),
        }
    }

    /// The error the writing thread ended with.
    fn thread_error(&mut self) -> io::Error {
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the output thread panicked"),
            _ => io::Error::other("the output thread has ended"),
        }
    }

    /// Writes what is left, ends the thread and returns the inner writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.send()?;
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the output thread panicked")),
            None => Err(io::Error::other("the output thread has ended")),
        }
    }
}

impl<W: TakeFile + Send + 'static> TakeFile for Threaded<W> {
    /// Queues the file after the bytes written so far; the thread copies it in.
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        self.send()?;
        self.hand(Job::File(file, len))
    }
}

impl<W: TakeFile + Send + 'static> Write for Threaded<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Hands the buffered bytes over; does not wait for them to be written (only
    /// [`Threaded::finish`] does).
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl<W: TakeFile + Send + 'static> Drop for Threaded<W> {
    fn drop(&mut self) {
        // Unfinished (an error elsewhere): stop the thread; what it still writes is
        // discarded with the temporary file.
        self.to_thread = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_arrives_in_order() {
        let data: Vec<u8> = (0..5 * CHUNK + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut w = Threaded::new(Vec::new()).unwrap();
        for piece in data.chunks(77_777) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.finish().unwrap(), data);
    }

    #[derive(Debug)]
    struct Closed;
    impl TakeFile for Closed {}
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_of_the_thread_keeps_its_kind() {
        let mut w = Threaded::new(Closed).unwrap();
        let err = (0..DEPTH + 4)
            .find_map(|_| w.write_all(&vec![0u8; CHUNK]).err())
            .expect("the error comes back");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let mut w = Threaded::new(Closed).unwrap();
        w.write_all(b"x").unwrap();
        assert_eq!(w.finish().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
