//! Everything imagesmith gets from a container engine, behind the [`Engine`] trait (SPEC §3):
//! resolving a reference to an image (inspect, pull when needed, inspect again), and getting
//! an image's file system as a tar stream from a container that is created, never started,
//! exported and removed. [`docker`] implements it over the Docker Engine API; tests use
//! in-memory fakes.
//!
//! [`Exports`] wraps an engine with the guarantee that every container it creates is removed:
//! when the export reader is dropped (success, error, panic unwinding), and by
//! [`Exports::remove_all`] from the signal handler.

pub mod docker;
pub mod fake;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::TryStreamExt;
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::spec::reference::Reference;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What imagesmith needs to know about a resolved image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The normalised reference it was resolved from.
    pub reference: String,
    /// The engine's image id (`sha256:…`).
    pub id: String,
    pub os: String,
    pub architecture: String,
    pub variant: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `None` when the image has no `Env` at all.
    pub env: Option<Vec<String>>,
    /// Empty when unset.
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
}

impl ImageInfo {
    /// The `org.mobyproject.config` label, if any.
    pub fn moby_label(&self) -> Option<&str> {
        self.labels
            .get("org.mobyproject.config")
            .map(String::as_str)
            .filter(|l| !l.is_empty())
    }
}

/// How images are resolved.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Pull even when the engine has the image.
    pub always_pull: bool,
    /// `os/arch[/variant]` the image must match; `None` = the engine's own.
    pub platform: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Connect(String),
    #[error("image `{image}` not found: {message}")]
    NotFound { image: String, message: String },
    #[error("image `{image}`: pull failed: {message}")]
    Pull { image: String, message: String },
    #[error("image `{image}` is {actual}, not the requested platform {wanted}")]
    Platform {
        image: String,
        actual: String,
        wanted: String,
    },
    #[error("image `{image}`: {message}")]
    Image { image: String, message: String },
    #[error("container `{container}`: {message}")]
    Container { container: String, message: String },
}

/// A container engine.
pub trait Engine: Send + Sync {
    /// Inspects `image`, pulls it when missing (or always, with `always_pull`), and returns
    /// its configuration.
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, EngineError>>;

    /// Creates (never starts) a container of `image` and returns its id.
    fn create<'a>(&'a self, image: &'a ImageInfo) -> BoxFuture<'a, Result<String, EngineError>>;

    /// The container's file system as a tar stream.
    fn export(&self, container: &str) -> ByteStream;

    /// Removes the container (forced).
    fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
}

/// Creates export containers and guarantees their removal.
#[derive(Clone)]
pub struct Exports {
    engine: Arc<dyn Engine>,
    rt: Handle,
    live: Arc<Mutex<BTreeSet<String>>>,
}

impl Exports {
    pub fn new(engine: Arc<dyn Engine>, rt: Handle) -> Exports {
        Exports {
            engine,
            rt,
            live: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Creates a container of `image` and opens its export as a blocking reader. Must be
    /// called from a thread that is not a runtime worker (it blocks on the runtime). The
    /// container is removed when the reader is dropped.
    pub fn open(&self, image: &ImageInfo) -> Result<ExportReader, EngineError> {
        let live = self.live.clone();
        let engine = self.engine.clone();
        let id = self.rt.block_on(async move {
            let id = engine.create(image).await?;
            lock(&live).insert(id.clone());
            Ok::<_, EngineError>(id)
        })?;
        let stream = self.engine.export(&id);
        let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream), self.rt.clone());
        Ok(ExportReader {
            inner: Some(reader),
            container: id,
            exports: self.clone(),
        })
    }

    /// Removes every container created and not yet removed (signal handler path).
    pub async fn remove_all(&self) {
        let ids: Vec<String> = std::mem::take(&mut *lock(&self.live)).into_iter().collect();
        for id in ids {
            if let Err(e) = self.engine.remove(&id).await {
                log::warn!("removing container {id}: {e}");
            }
        }
    }

    fn remove_blocking(&self, id: &str) {
        if !lock(&self.live).remove(id) {
            return; // already removed (by the signal handler)
        }
        let engine = self.engine.clone();
        let id = id.to_string();
        let res = match Handle::try_current() {
            // Inside the runtime (should not happen): remove in the background.
            Ok(_) => {
                self.rt.spawn(async move {
                    if let Err(e) = engine.remove(&id).await {
                        log::warn!("removing container {id}: {e}");
                    }
                });
                return;
            }
            Err(_) => self.rt.block_on(async { engine.remove(&id).await }),
        };
        if let Err(e) = res {
            log::warn!("removing container: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Bridge = SyncIoBridge<StreamReader<ByteStream, Bytes>>;

/// A container's export as a blocking reader; removes the container when dropped.
pub struct ExportReader {
    inner: Option<Bridge>,
    container: String,
    exports: Exports,
}

impl ExportReader {
    pub fn container(&self) -> &str {
        &self.container
    }
}

impl Read for ExportReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl Drop for ExportReader {
    fn drop(&mut self) {
        // Close the stream first so the engine is not blocked on a reader that is gone.
        self.inner = None;
        self.exports.remove_blocking(&self.container);
    }
}

/// Turns a bollard stream into the `ByteStream` of the trait.
pub(crate) fn byte_stream<S, E>(s: S) -> ByteStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(s.map_err(io::Error::other))
}
