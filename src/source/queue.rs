//! The ordered export queue: hands the executor each image in output order. With
//! `ahead > 0`, up to `ahead` later images are opened on helper threads while the executor
//! writes the current one (the largest waiting ones first, see [`ExportQueue::open_next`]); each helper runs the caller's [`Helper`] on its stream (the
//! executor places the image into a spool file there) and shares something with the
//! executor while it runs (the spool, which the executor reads as it grows). The order
//! never changes.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, anyhow};

use super::{ImageInfo, ImageSource, ImageStream};

/// What is done with an image opened ahead of its turn.
pub trait Helper: Send + Sync + 'static {
    /// What the helper thread and the executor share while the helper runs.
    type Shared: Send + Sync + 'static;
    /// On the executor's thread, when the `k`-th image is handed to a helper.
    fn start(&self, k: usize) -> anyhow::Result<Arc<Self::Shared>>;
    /// On the helper thread: the `k`-th image's stream, once opened.
    fn run(&self, k: usize, stream: ImageStream, shared: &Self::Shared) -> anyhow::Result<()>;
    /// On the helper thread, when opening the image or `run` failed (before the error is
    /// returned by [`Ahead::wait`]), so that a reader of `shared` stops waiting.
    fn failed(&self, shared: &Self::Shared);
}

/// An image in a helper's hands.
pub struct Ahead<S> {
    pub shared: Arc<S>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl<S> Ahead<S> {
    /// Waits for the helper: its error, if it failed.
    pub fn wait(self) -> anyhow::Result<()> {
        self.handle
            .join()
            .map_err(|_| anyhow!("a helper thread panicked"))?
    }
}

/// The next image: its stream, opened now, or a helper's work on it.
pub enum Next<S> {
    Stream(ImageStream),
    Ahead(Ahead<S>),
}

/// Opens planned images in order, some ahead of time.
pub struct ExportQueue<H: Helper> {
    source: Arc<dyn ImageSource>,
    queue: Vec<ImageInfo>,
    next: usize,
    ahead: usize,
    helper: Arc<H>,
    helpers: HashMap<usize, Ahead<H::Shared>>,
    cancel: Arc<AtomicBool>,
}

impl<H: Helper> ExportQueue<H> {
    /// A queue of `queue`'s images, `ahead` of them handed to helpers in advance (0: none).
    pub fn new(
        source: Arc<dyn ImageSource>,
        queue: Vec<ImageInfo>,
        ahead: usize,
        helper: H,
    ) -> ExportQueue<H> {
        ExportQueue {
            source,
            queue,
            next: 0,
            ahead,
            helper: Arc::new(helper),
            helpers: HashMap::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next image: a helper's when one took it, else its stream, opened now. Free
    /// helpers first take later images, the largest first.
    pub fn open_next(&mut self) -> anyhow::Result<Next<H::Shared>> {
        let k = self.next;
        let info = self
            .queue
            .get(k)
            .cloned()
            .ok_or_else(|| anyhow!("internal error: more exports than planned"))?;
        self.next += 1;
        let taken = self.helpers.remove(&k);
        for j in self.to_start(k) {
            let ahead = self.spawn(j)?;
            self.helpers.insert(j, ahead);
        }
        match taken {
            Some(a) => Ok(Next::Ahead(a)),
            None => {
                log::debug!("opening {}", info.reference);
                Ok(Next::Stream(self.source.open(&info)?))
            }
        }
    }

    /// The images to hand to helpers now, with the `k`-th about to be written: as many as
    /// there are free helpers (`ahead` minus those still running), the largest first
    /// among those after `k` not started yet (ties in output order). A large image is the
    /// long pole of a build, so it starts as early as it can; small ones fit around it.
    fn to_start(&self, k: usize) -> Vec<usize> {
        let running = self
            .helpers
            .values()
            .filter(|a| !a.handle.is_finished())
            .count();
        let free = self.ahead.saturating_sub(running);
        let mut waiting: Vec<usize> = (k + 1..self.queue.len())
            .filter(|j| !self.helpers.contains_key(j))
            .collect();
        waiting.sort_by_key(|&j| std::cmp::Reverse(self.queue[j].size));
        waiting.truncate(free);
        waiting
    }

    fn spawn(&self, j: usize) -> anyhow::Result<Ahead<H::Shared>> {
        let shared = self.helper.start(j)?;
        let (source, info) = (self.source.clone(), self.queue[j].clone());
        let (cancel, helper, mine) = (self.cancel.clone(), self.helper.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("ahead-{j}"))
            .spawn(move || {
                log::debug!("opening {} ahead", info.reference);
                let res = source
                    .open(&info)
                    .map_err(anyhow::Error::from)
                    .and_then(|stream| {
                        helper.run(j, Box::new(Cancellable { stream, cancel }), &mine)
                    });
                if res.is_err() {
                    helper.failed(&mine);
                }
                res
            })
            .context("starting a helper thread")?;
        Ok(Ahead { shared, handle })
    }

    /// Makes every helper stop at its next read (their errors then say `cancelled`).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Stops and joins the helper threads (what they opened is released as they end).
    pub fn finish(&mut self) {
        self.cancel();
        for (_, a) in self.helpers.drain() {
            let _ = a.wait();
        }
    }
}

impl<H: Helper> Drop for ExportQueue<H> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A stream that fails once the queue is cancelled, so helpers stop early.
struct Cancellable {
    stream: ImageStream,
    cancel: Arc<AtomicBool>,
}

impl Read for Cancellable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled"));
        }
        self.stream.read(buf)
    }
}
