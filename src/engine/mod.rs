//! Everything imagesmith gets from a container engine, behind the [`Engine`] trait (SPEC §3):
//! resolving a reference to an image (inspect, pull when needed, inspect again), and getting
//! an image's file system as a tar stream from a container that is created, never started,
//! exported and removed. [`docker`] implements it over the Docker Engine API; tests use
//! in-memory fakes.
//!
//! [`Exports`] wraps an engine with the guarantee that every container it creates is removed:
//! when the export reader is dropped (success, error, panic unwinding), and by
//! [`Exports::remove_all`] from the signal handler. It also reports export progress and
//! turns an engine that stops sending into an error.
//!
//! Submodules: [`connect`] (where the engine is), [`auth`] (registry credentials),
//! `crate::owner` (container labels, and which containers a dead run left behind).

pub mod auth;
pub mod connect;
pub mod docker;
pub mod fake;

/// Connects to the Docker engine named by the environment (`DOCKER_HOST`, …), removes the
/// containers dead runs left behind, and returns it as an image source that reports
/// pulls and exports to `progress`.
pub fn docker_source(
    rt: &tokio::runtime::Runtime,
    progress: Progress,
) -> Result<Arc<dyn ImageSource>, SourceError> {
    let docker = rt
        .block_on(docker::DockerEngine::connect_from_env())?
        .with_progress(progress.clone());
    rt.block_on(docker.remove_stale());
    let engine: Arc<dyn Engine> = Arc::new(docker);
    Ok(Arc::new(
        Exports::new(engine, rt.handle().clone()).with_progress(progress),
    ))
}

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::progress::{ExportProgress, Progress};
use crate::source::readahead::ReadAhead;
use crate::source::{BoxFuture, ImageInfo, ImageSource, ImageStream, ResolveOptions, SourceError};
use crate::spec::reference::Reference;

/// An export that sends nothing for this long is an error (a wedged engine).
pub const EXPORT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an export's tail is read when the reader is dropped before its end (a tar
/// reader stops at the end-of-archive block; the engine's stream has a little more).
const DRAIN_LIMIT: usize = 64 * 1024;

pub use crate::source::readahead::ByteStream;

/// Batches of an export read ahead of the rewrite (each 128 to 256 KiB, see
/// `source::readahead`): at most 512 KiB queued.
const READ_AHEAD: usize = 2;

/// A container engine.
pub trait Engine: Send + Sync {
    /// Inspects `image`, pulls it when missing (or always, with `always_pull`), and returns
    /// its configuration.
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>>;

    /// Creates (never starts) a container of `image` and returns its id.
    fn create<'a>(&'a self, image: &'a ImageInfo) -> BoxFuture<'a, Result<String, SourceError>>;

    /// The container's file system as a tar stream.
    fn export(&self, container: &str) -> ByteStream;

    /// Removes the container (forced).
    fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// Creates export containers and guarantees their removal.
#[derive(Clone)]
pub struct Exports {
    engine: Arc<dyn Engine>,
    rt: Handle,
    live: Arc<Mutex<Live>>,
    progress: Progress,
}

impl Exports {
    pub fn new(engine: Arc<dyn Engine>, rt: Handle) -> Exports {
        Exports {
            engine,
            rt,
            live: Arc::new(Mutex::new(Live::default())),
            progress: Progress::quiet(),
        }
    }

    /// Reports export progress to `progress` (default: nothing).
    pub fn with_progress(mut self, progress: Progress) -> Exports {
        self.progress = progress;
        self
    }

    /// Containers created and not removed yet.
    pub fn live(&self) -> Vec<String> {
        lock(&self.live).ids.iter().cloned().collect()
    }

    /// Creates a container of `image` and opens its export as a blocking reader. Must be
    /// called from a thread that is not a runtime worker (it blocks on the runtime). The
    /// container is removed when the reader is dropped.
    pub fn open(&self, image: &ImageInfo) -> Result<ExportReader, SourceError> {
        let live = self.live.clone();
        let engine = self.engine.clone();
        {
            let mut l = lock(&live);
            if l.closed {
                return Err(SourceError::Container {
                    container: String::new(),
                    message: "interrupted".into(),
                });
            }
            l.creating += 1;
        }
        let id = self.rt.block_on(async move {
            let created = engine.create(image).await;
            let closed = {
                let mut l = lock(&live);
                match (&created, l.closed) {
                    (Ok(id), false) => {
                        l.ids.insert(id.clone());
                    }
                    // Removed below before `creating` drops to 0.
                    (Ok(_), true) => {}
                    (Err(_), _) => l.creating -= 1,
                }
                l.closed
            };
            let id = created?;
            if closed {
                // Created while the signal handler clears up: remove it at once, and only
                // then let the handler (which waits for `creating` to reach 0) exit.
                let _ = engine.remove(&id).await;
                lock(&live).creating -= 1;
                return Err(SourceError::Container {
                    container: short(&id).to_string(),
                    message: "interrupted".into(),
                });
            }
            lock(&live).creating -= 1;
            Ok::<_, SourceError>(id)
        })?;
        let stream = idle_timeout(self.engine.export(&id), EXPORT_IDLE_TIMEOUT);
        let reader = ReadAhead::spawn(&self.rt, stream, READ_AHEAD);
        Ok(ExportReader {
            inner: Some(reader),
            container: id,
            image: image.reference.clone(),
            progress: self.progress.export(&image.reference),
            eof: false,
            exports: self.clone(),
        })
    }

    /// Removes every container created and not yet removed, and makes every later
    /// [`Exports::open`] remove its container at once and fail (signal handler path).
    pub async fn remove_all(&self) {
        let ids: Vec<String> = {
            let mut l = lock(&self.live);
            l.closed = true;
            std::mem::take(&mut l.ids).into_iter().collect()
        };
        for id in ids {
            if let Err(e) = self.engine.remove(&id).await {
                log::warn!("{e}");
            }
        }
        // Creations in flight remove their container themselves once they see `closed`;
        // wait for them (the caller bounds the whole clean-up in time).
        while lock(&self.live).creating > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn remove_blocking(&self, id: &str) {
        if !lock(&self.live).ids.remove(id) {
            return; // already removed (by the signal handler)
        }
        let engine = self.engine.clone();
        let id = id.to_string();
        if Handle::try_current().is_ok() {
            // Inside the runtime (not how the executor uses it): remove in the background.
            self.rt.spawn(async move {
                if let Err(e) = engine.remove(&id).await {
                    log::warn!("{e}");
                }
            });
            return;
        }
        if let Err(e) = self.rt.block_on(async { engine.remove(&id).await }) {
            log::warn!("{e}");
        }
    }
}

/// The containers to remove, and whether the signal handler has taken them.
#[derive(Default)]
struct Live {
    ids: BTreeSet<String>,
    closed: bool,
    /// Container creations in flight: the signal handler waits for them, since a container
    /// the engine creates after `remove_all` took the list would otherwise survive the exit.
    creating: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `stream`, failing with `TimedOut` when the next chunk takes longer than `idle`.
fn idle_timeout(stream: ByteStream, idle: Duration) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        Some(stream),
        move |state| async move {
            let mut s = state?;
            match tokio::time::timeout(idle, futures_util::StreamExt::next(&mut s)).await {
                Ok(Some(item)) => Some((item, Some(s))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the engine sent nothing for {} s", idle.as_secs()),
                    )),
                    None,
                )),
            }
        },
    ))
}

/// A container's export as a blocking reader; removes the container when dropped.
pub struct ExportReader {
    inner: Option<ReadAhead>,
    container: String,
    image: String,
    progress: ExportProgress,
    eof: bool,
    exports: Exports,
}

impl ExportReader {
    /// Reads what is left of the stream, up to [`DRAIN_LIMIT`]: a tar reader stops at the
    /// end-of-archive block, before the stream's end. Reaching the end means the export
    /// was whole.
    fn drain_tail(&mut self) {
        let Some(r) = &mut self.inner else {
            return;
        };
        let mut buf = [0u8; 8192];
        let mut left = DRAIN_LIMIT;
        while left > 0 {
            match r.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    self.progress.add(n);
                    left = left.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

impl Read for ExportReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(r) = &mut self.inner else {
            return Ok(0);
        };
        match r.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.eof = true;
                self.progress.finish();
                Ok(0)
            }
            Ok(n) => {
                self.progress.add(n);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "exporting container {} of image `{}`: {}",
                    short(&self.container),
                    self.image,
                    e
                ),
            )),
        }
    }
}

/// The 12-character form of a container id, as the docker CLI shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Drop for ExportReader {
    fn drop(&mut self) {
        if !self.eof && !std::thread::panicking() {
            self.drain_tail();
        }
        if self.eof {
            self.progress.finish();
        }
        // Close the stream first so the engine is not blocked on a reader that is gone.
        self.inner = None;
        self.exports.remove_blocking(&self.container);
    }
}

/// The engine as an image source: resolve through the engine, open through an export
/// container that is removed when the stream is dropped.
impl ImageSource for Exports {
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>> {
        self.engine.resolve(image, opts)
    }

    fn open(&self, image: &ImageInfo) -> Result<ImageStream, SourceError> {
        Ok(Box::new(Exports::open(self, image)?))
    }

    fn abort(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.remove_all())
    }

    /// A container's export: the image's files plus what the engine adds.
    fn stream_kind(&self) -> Option<&str> {
        Some("engine")
    }
}
