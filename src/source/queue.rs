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
    /// Images the source reads locally ([`ImageSource::is_local`]): never opened ahead.
    local: Vec<bool>,
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
        let local = queue.iter().map(|i| source.is_local(i)).collect();
        ExportQueue {
            source,
            queue,
            local,
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
    /// among those after `k` not started yet and not local (ties in output order). A large image is the
    /// long pole of a build, so it starts as early as it can; small ones fit around it.
    fn to_start(&self, k: usize) -> Vec<usize> {
        let running = self
            .helpers
            .values()
            .filter(|a| !a.handle.is_finished())
            .count();
        let free = self.ahead.saturating_sub(running);
        let mut waiting: Vec<usize> = (k + 1..self.queue.len())
            .filter(|j| !self.helpers.contains_key(j) && !self.local[*j])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{BoxFuture, ResolveOptions, SourceError};
    use crate::spec::reference::Reference;
    use std::sync::Mutex;

    /// Opens every image as an empty stream and records the thread that opened it; images
    /// whose reference starts with `local/` are local.
    #[derive(Default)]
    struct Recording {
        opened: Mutex<Vec<(String, String)>>,
    }

    impl ImageSource for Recording {
        fn resolve<'a>(
            &'a self,
            _image: &'a Reference,
            _opts: &'a ResolveOptions,
        ) -> BoxFuture<'a, Result<ImageInfo, SourceError>> {
            unreachable!("the queue only opens")
        }
        fn open(&self, image: &ImageInfo) -> Result<ImageStream, SourceError> {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            self.opened
                .lock()
                .unwrap()
                .push((image.reference.clone(), thread));
            Ok(Box::new(io::empty()))
        }
        fn abort(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn is_local(&self, image: &ImageInfo) -> bool {
            image.reference.starts_with("local/")
        }
    }

    struct Drain;
    impl Helper for Drain {
        type Shared = ();
        fn start(&self, _k: usize) -> anyhow::Result<Arc<()>> {
            Ok(Arc::new(()))
        }
        fn run(&self, _k: usize, mut stream: ImageStream, _: &()) -> anyhow::Result<()> {
            io::copy(&mut stream, &mut io::sink())?;
            Ok(())
        }
        fn failed(&self, _: &()) {}
    }

    #[test]
    fn local_images_wait_for_their_turn_and_the_others_start_largest_first() {
        let images: Vec<ImageInfo> = [("a", 1), ("local/b", 50), ("c", 10), ("d", 20)]
            .into_iter()
            .map(|(r, size)| ImageInfo {
                reference: r.to_string(),
                size,
                ..ImageInfo::default()
            })
            .collect();
        let source = Arc::new(Recording::default());
        let mut q = ExportQueue::new(source.clone(), images, 2, Drain);
        for _ in 0..4 {
            match q.open_next().unwrap() {
                Next::Stream(mut s) => {
                    io::copy(&mut s, &mut io::sink()).unwrap();
                }
                Next::Ahead(a) => a.wait().unwrap(),
            }
        }
        q.finish();
        let mut opened = source.opened.lock().unwrap().clone();
        opened.sort();
        let by = |r: &str| opened.iter().find(|(o, _)| o == r).unwrap().1.clone();
        assert_eq!(opened.len(), 4, "{opened:?}");
        // The first and the local image on the executor's thread, in their turn; the two
        // others, at the start, on helpers.
        assert!(!by("a").starts_with("ahead-"), "{opened:?}");
        assert!(!by("local/b").starts_with("ahead-"), "{opened:?}");
        assert_eq!(by("c"), "ahead-2");
        assert_eq!(by("d"), "ahead-3");
    }
}
