//! An async byte stream as a blocking reader that reads ahead: a task on the runtime pulls
//! the stream into a bounded queue while the reading thread works on what it already has,
//! so a source never waits for the rewrite or the output (and the other way round) except
//! when the queue is full or empty. At most `depth` chunks are queued.

use std::io::{self, Read};
use std::pin::Pin;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A stream of byte chunks, as sources produce them.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The reading end; dropping it stops the task (and drops the stream).
pub struct ReadAhead {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    done: bool,
}

impl ReadAhead {
    /// Starts pulling `stream` on `rt`, `depth` chunks ahead at most.
    pub fn spawn(rt: &Handle, mut stream: ByteStream, depth: usize) -> ReadAhead {
        let (tx, rx) = mpsc::channel(depth.max(1));
        rt.spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        ReadAhead {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current.advance(n);
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
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
