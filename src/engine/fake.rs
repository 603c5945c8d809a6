//! An in-memory [`Engine`] for tests: images are tars held in memory, exports are streamed
//! in chunks (optionally slowly), and every call is recorded so tests can check that
//! containers are removed and how exports overlap in time.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{ByteStream, Engine};
use crate::source::{BoxFuture, ImageInfo, ResolveOptions, SourceError};
use crate::spec::reference::Reference;

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Resolve(String),
    Create { container: String, image: String },
    ExportStart(String),
    ExportEnd(String),
    Remove(String),
}

/// A fake engine.
#[derive(Default)]
pub struct FakeEngine {
    images: HashMap<String, (ImageInfo, Bytes)>,
    /// Pause between export chunks.
    pub chunk_delay: Duration,
    pub chunk_size: usize,
    log: Arc<Mutex<Vec<(Instant, Event)>>>,
    next_id: Mutex<u64>,
    containers: Mutex<HashMap<String, String>>,
}

impl FakeEngine {
    pub fn new() -> FakeEngine {
        FakeEngine {
            chunk_size: 64 * 1024,
            ..FakeEngine::default()
        }
    }

    /// Adds an image under its normalised reference.
    pub fn add(&mut self, reference: &str, mut info: ImageInfo, tar: Vec<u8>) {
        let key = Reference::parse(reference)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| reference.to_string());
        info.reference = key.clone();
        if info.id.is_empty() {
            info.id = format!("sha256:{:064x}", self.images.len() + 1);
        }
        if info.size == 0 {
            info.size = tar.len() as u64;
        }
        self.images.insert(key, (info, Bytes::from(tar)));
    }

    pub fn events(&self) -> Vec<(Instant, Event)> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Containers created and not removed.
    pub fn live_containers(&self) -> Vec<String> {
        self.containers
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, e: Event) {
        if let Ok(mut l) = self.log.lock() {
            l.push((Instant::now(), e));
        }
    }
}

impl Engine for FakeEngine {
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        _opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>> {
        Box::pin(async move {
            let key = image.to_string();
            self.record(Event::Resolve(key.clone()));
            self.images
                .get(&key)
                .map(|(i, _)| i.clone())
                .ok_or_else(|| SourceError::NotFound {
                    image: key,
                    message: "not in the fake engine".into(),
                })
        })
    }

    fn create<'a>(&'a self, image: &'a ImageInfo) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move {
            let id = {
                let mut n = self
                    .next_id
                    .lock()
                    .map_err(|_| SourceError::Connect("poisoned".into()))?;
                *n += 1;
                format!("fake{n}")
            };
            if let Ok(mut c) = self.containers.lock() {
                c.insert(id.clone(), image.reference.clone());
            }
            self.record(Event::Create {
                container: id.clone(),
                image: image.reference.clone(),
            });
            Ok(id)
        })
    }

    fn export(&self, container: &str) -> ByteStream {
        let image = self
            .containers
            .lock()
            .ok()
            .and_then(|c| c.get(container).cloned());
        let data = image.and_then(|i| self.images.get(&i).map(|(_, d)| d.clone()));
        let Some(data) = data else {
            let e = io::Error::other(format!("no such container: {container}"));
            return Box::pin(futures_util::stream::once(async move { Err(e) }));
        };
        let log = self.log.clone();
        let id = container.to_string();
        let delay = self.chunk_delay;
        let size = self.chunk_size.max(1);
        let stream = async_stream(data, size, delay, log, id);
        Box::pin(stream)
    }

    fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            if let Ok(mut c) = self.containers.lock() {
                c.remove(container);
            }
            self.record(Event::Remove(container.to_string()));
            Ok(())
        })
    }
}

fn async_stream(
    data: Bytes,
    size: usize,
    delay: Duration,
    log: Arc<Mutex<Vec<(Instant, Event)>>>,
    id: String,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    let chunks: Vec<Bytes> = (0..data.len().div_ceil(size))
        .map(|i| data.slice(i * size..((i + 1) * size).min(data.len())))
        .collect();
    let n = chunks.len();
    futures_util::stream::unfold((0usize, chunks), move |(i, chunks)| {
        let log = log.clone();
        let id = id.clone();
        async move {
            if i == 0
                && let Ok(mut l) = log.lock()
            {
                l.push((Instant::now(), Event::ExportStart(id.clone())));
            }
            if i >= n {
                if let Ok(mut l) = log.lock() {
                    l.push((Instant::now(), Event::ExportEnd(id)));
                }
                return None;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let c = chunks[i].clone();
            Some((Ok(c), (i + 1, chunks)))
        }
    })
}
