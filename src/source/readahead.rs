//! An async byte stream as a blocking reader that reads ahead: a task on the runtime pulls
//! the stream into a bounded queue while the reading thread works on what it already has,
//! so a source never waits for the rewrite or the output (and the other way round) except
//! when the queue is full or empty. At most `depth` batches are queued.
//!
//! The task hands over batches, not single chunks: every chunk the stream has ready at once
//! (at least [`MIN_BATCH`] bytes, up to [`BATCH`]) goes into one queue slot. The engine's export arrives as HTTP
//! chunks of about 32 KiB, several per socket read; handing them over one by one cost a
//! thread wake-up each (measured with `strace -f -c` on the 1 GiB benchmark image: 32,000
//! `eventfd` writes and 74,000 `futex` calls for 6,200 socket reads).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::pin::Pin;

use bytes::{Buf, Bytes};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A stream of byte chunks, as sources produce them.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Bytes handed over in one batch at most (a batch also ends where the stream has nothing
/// ready).
pub const BATCH: usize = 256 << 10;
/// Bytes a batch waits for before it is handed over (unless the stream ends): the reading
/// thread is woken once per batch, and it is faster than any source.
pub const MIN_BATCH: usize = 128 << 10;

/// The chunks of one batch, and the error the stream ended with, if it did.
type Batch = (VecDeque<Bytes>, Option<io::Error>);

/// The reading end; dropping it stops the task (and drops the stream).
pub struct ReadAhead {
    rx: mpsc::Receiver<Batch>,
    current: VecDeque<Bytes>,
    error: Option<io::Error>,
    done: bool,
}

impl ReadAhead {
    /// Starts pulling `stream` on `rt`, `depth` batches ahead at most.
    pub fn spawn(rt: &Handle, mut stream: ByteStream, depth: usize) -> ReadAhead {
        let (tx, rx) = mpsc::channel::<Batch>(depth.max(1));
        rt.spawn(async move {
            while let Some(first) = stream.next().await {
                let mut batch: Batch = (VecDeque::new(), None);
                let mut size = 0;
                let mut item = Some(first);
                let mut ended = false;
                while let Some(next) = item.take() {
                    match next {
                        Ok(b) => {
                            size += b.len();
                            batch.0.push_back(b);
                        }
                        Err(e) => {
                            batch.1 = Some(e);
                            ended = true;
                            break;
                        }
                    }
                    if size >= BATCH {
                        break;
                    }
                    // Below MIN_BATCH, wait for more; above, take only what is ready.
                    let next = if size < MIN_BATCH {
                        Some(stream.next().await)
                    } else {
                        stream.next().now_or_never()
                    };
                    match next {
                        Some(Some(i)) => item = Some(i),
                        Some(None) => ended = true,
                        None => {}
                    }
                }
                if tx.send(batch).await.is_err() || ended {
                    break;
                }
            }
        });
        ReadAhead {
            rx,
            current: VecDeque::new(),
            error: None,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            while let Some(front) = self.current.front_mut() {
                if front.is_empty() {
                    self.current.pop_front();
                    continue;
                }
                let n = buf.len().min(front.len());
                buf[..n].copy_from_slice(&front[..n]);
                front.advance(n);
                return Ok(n);
            }
            if let Some(e) = self.error.take() {
                self.done = true;
                return Err(e);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some((chunks, error)) => {
                    self.current = chunks;
                    self.error = error;
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_chunk_then_the_error() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let chunks: Vec<io::Result<Bytes>> = (0..100u8)
            .map(|i| Ok(Bytes::from(vec![i; 1000])))
            .chain([Err(io::Error::other("cut"))])
            .collect();
        let mut r = ReadAhead::spawn(rt.handle(), Box::pin(futures_util::stream::iter(chunks)), 3);
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.to_string(), "cut");
        assert_eq!(got.len(), 100_000);
        assert!(
            got.chunks(1000)
                .enumerate()
                .all(|(i, c)| c.iter().all(|b| *b == i as u8))
        );
    }
}
