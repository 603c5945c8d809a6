//! [`CachedSource`]: an image source that serves streams from the cache and fills it from
//! the source it wraps. `resolve` always asks the inner source (an engine inspect is cheap,
//! and the image ID it answers is the key); `open` serves the entry of that ID when there is
//! a sound one, else opens the inner stream and copies it into a temporary entry while the
//! build reads it (one pass, one chunk of memory), renamed into place only when the stream
//! ended cleanly and whole.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::entry::{self, Entry, EntryReader, EntryWriter};
use super::{Cache, Meta};
use crate::source::{BoxFuture, ImageInfo, ImageSource, ImageStream, ResolveOptions, SourceError};
use crate::spec::reference::Reference;

/// What is left of a stream that the build stopped reading at the tar end-of-archive
/// marker is read on to its end, up to this much, so that the entry can be completed.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The cache as an image source around `inner`.
pub struct CachedSource {
    inner: Arc<dyn ImageSource>,
    cache: Cache,
    kind: String,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// An entry found damaged after some of its bytes were handed out.
    damaged: AtomicBool,
    /// Set by `abort`: no more entries are written.
    closed: AtomicBool,
    /// Temporary entry files being written (removed by `abort`).
    pending: Mutex<Vec<PathBuf>>,
    /// Entries served or written by this build (spared by eviction).
    used: Mutex<Vec<PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CachedSource {
    /// Wraps `inner` with the cache at `dir`, for streams of `kind` (see the module
    /// documentation: the kind is part of the key). Fails only when the directory cannot be
    /// made; the caller then goes on without a cache.
    pub fn new(inner: Arc<dyn ImageSource>, dir: &Path, kind: &str) -> io::Result<CachedSource> {
        Ok(CachedSource {
            inner,
            cache: Cache::open(dir)?,
            kind: kind.to_string(),
            state: Arc::new(State::default()),
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether an entry was found damaged after part of it was read (and dropped), since
    /// the last call. The build that read it must start over.
    pub fn take_damaged(&self) -> bool {
        self.state.damaged.swap(false, Ordering::SeqCst)
    }

    /// Evicts least recently used entries down to `limit` bytes, sparing those this build
    /// used.
    pub fn evict(&self, limit: u64) {
        let keep = lock(&self.state.used).clone();
        for item in self.cache.evict(limit, &keep) {
            let what = item
                .meta
                .as_ref()
                .map(|m| m.id.clone())
                .unwrap_or_else(|| item.path.display().to_string());
            log::debug!(
                "cache: evicted {what} ({})",
                crate::progress::human(item.disk)
            );
        }
    }

    /// The cached stream of `image`, or `None` (no entry, or a damaged one, which is then
    /// dropped with a warning).
    fn serve(&self, image: &ImageInfo, path: &Path) -> Option<ImageStream> {
        let id = entry::id_bytes(&image.id)?;
        let damage = match Entry::open(path, &id) {
            Ok(None) => return None,
            Ok(Some(e)) => match e.read() {
                Ok(reader) => {
                    log::info!("{}: from the cache", image.reference);
                    self.cache
                        .touch(path, &image.id, &self.kind, &image.reference);
                    lock(&self.state.used).push(path.to_path_buf());
                    return Some(Box::new(Served {
                        reader,
                        path: path.to_path_buf(),
                        image: image.reference.clone(),
                        id: image.id.clone(),
                        state: self.state.clone(),
                        handed_out: 0,
                    }));
                }
                Err(d) => d,
            },
            Err(d) => d,
        };
        log::warn!(
            "cache entry {} of image `{}` is damaged ({damage}): removed; fetching the image again",
            path.display(),
            image.reference
        );
        if let Err(e) = Cache::remove_entry(path) {
            log::warn!("cache: cannot remove {}: {e}", path.display());
        }
        None
    }

    /// A temporary entry for `image`, or `None` when the cache cannot take it.
    fn start_entry(&self, image: &ImageInfo, path: &Path) -> Option<Pending> {
        let id = entry::id_bytes(&image.id)?;
        let res = (|| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
            let tmp = tempfile::Builder::new()
                .prefix(&format!("{name}.{}.", super::owner_tag()))
                .suffix(".tmp")
                .tempfile_in(self.cache.tmp_dir())?;
            let file = tmp.as_file().try_clone()?;
            let writer = entry::file_writer(file, &id)?;
            Ok::<_, io::Error>((tmp, writer))
        })();
        match res {
            Ok((tmp, writer)) => {
                lock(&self.state.pending).push(tmp.path().to_path_buf());
                Some(Pending {
                    tmp,
                    writer,
                    path: path.to_path_buf(),
                })
            }
            Err(e) => {
                log::warn!(
                    "cache: not caching image `{}`: cannot create an entry in {}: {e}",
                    image.reference,
                    self.cache.tmp_dir().display()
                );
                None
            }
        }
    }
}

impl ImageSource for CachedSource {
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>> {
        self.inner.resolve(image, opts)
    }

    fn open(&self, image: &ImageInfo) -> Result<ImageStream, SourceError> {
        let path = self.cache.entry_path(&image.id, &self.kind);
        if let Some(p) = &path
            && let Some(s) = self.serve(image, p)
        {
            return Ok(s);
        }
        let inner = self.inner.open(image)?;
        let pending = match &path {
            Some(p) if !self.state.closed.load(Ordering::SeqCst) => self.start_entry(image, p),
            _ => None,
        };
        Ok(match pending {
            Some(pending) => Box::new(Tee {
                inner,
                pending: Some(pending),
                eof: false,
                image: image.clone(),
                kind: self.kind.clone(),
                cache: self.cache.clone(),
                state: self.state.clone(),
            }),
            None => inner,
        })
    }

    fn abort(&self) -> BoxFuture<'_, ()> {
        self.state.closed.store(true, Ordering::SeqCst);
        for p in lock(&self.state.pending).drain(..) {
            let _ = std::fs::remove_file(p);
        }
        self.inner.abort()
    }

    /// An entry exists for it (checked when it is opened: a damaged one is fetched again).
    fn is_local(&self, image: &ImageInfo) -> bool {
        self.cache
            .entry_path(&image.id, &self.kind)
            .is_some_and(|p| p.is_file())
    }

    fn stream_kind(&self) -> Option<&str> {
        self.inner.stream_kind()
    }
}

/// A cached stream being read.
struct Served {
    reader: EntryReader,
    path: PathBuf,
    image: String,
    id: String,
    state: Arc<State>,
    handed_out: u64,
}

impl Read for Served {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.reader.read_checked(buf) {
            Ok(n) => {
                self.handed_out += n as u64;
                Ok(n)
            }
            Err(damage) => {
                // Part of the stream is out already: the build that read it starts over.
                let _ = Cache::remove_entry(&self.path);
                self.state.damaged.store(true, Ordering::SeqCst);
                log::warn!(
                    "cache entry {} of image `{}` ({}) is damaged ({damage}) after {} bytes were read: removed",
                    self.path.display(),
                    self.image,
                    self.id,
                    self.handed_out
                );
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "cache entry {} of image `{}` is damaged ({damage}); it was removed, so the next build fetches the image again",
                        self.path.display(),
                        self.image
                    ),
                ))
            }
        }
    }
}

/// A temporary entry being written.
struct Pending {
    tmp: tempfile::NamedTempFile,
    writer: EntryWriter<io::BufWriter<std::fs::File>>,
    path: PathBuf,
}

/// The inner stream, copied into a temporary entry as it is read.
struct Tee {
    inner: ImageStream,
    /// `None` once caching was given up (a write failed) or done.
    pending: Option<Pending>,
    eof: bool,
    image: ImageInfo,
    kind: String,
    cache: Cache,
    state: Arc<State>,
}

impl Tee {
    fn give_up(&mut self, why: &str) {
        if let Some(p) = self.pending.take() {
            log::warn!("cache: not caching image `{}`: {why}", self.image.reference);
            self.forget(&p);
        }
    }

    fn forget(&self, p: &Pending) {
        let tmp = p.tmp.path().to_path_buf();
        lock(&self.state.pending).retain(|x| x != &tmp);
    }

    /// The stream ended cleanly: the entry goes into place if it is whole.
    fn commit(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        self.forget(&p);
        if self.state.closed.load(Ordering::SeqCst) {
            return;
        }
        if !p.writer.ends_like_tar() {
            log::warn!(
                "cache: not caching image `{}`: its stream ended without the tar end-of-archive marker",
                self.image.reference
            );
            return;
        }
        let Pending { tmp, writer, path } = p;
        let res = (|| {
            let (w, len) = writer.finish()?;
            w.into_inner().map_err(|e| e.into_error())?;
            let file_size = entry::file_len(len);
            tmp.persist(&path).map_err(|e| e.error)?;
            let t = super::now();
            let meta = Meta {
                id: self.image.id.clone(),
                kind: self.kind.clone(),
                names: vec![self.image.reference.clone()],
                size: len,
                file_size,
                created: t,
                last_used: t,
            };
            self.cache.write_meta(&path, &meta)?;
            Ok::<_, io::Error>(len)
        })();
        match res {
            Ok(len) => {
                log::debug!(
                    "cache: kept image `{}` ({})",
                    self.image.reference,
                    crate::progress::human(len)
                );
                lock(&self.state.used).push(path);
            }
            Err(e) => log::warn!("cache: not caching image `{}`: {e}", self.image.reference),
        }
    }

    fn tee(&mut self, data: &[u8]) {
        if let Some(p) = &mut self.pending
            && let Err(e) = p.writer.write(data)
        {
            self.give_up(&format!("writing to the cache: {e}"));
        }
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.eof = true;
                self.commit();
                Ok(0)
            }
            Ok(n) => {
                self.tee(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                // Never cache a stream that broke off.
                if let Some(p) = self.pending.take() {
                    self.forget(&p);
                }
                Err(e)
            }
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if self.pending.is_none() || self.eof || std::thread::panicking() {
            return;
        }
        // The build stopped at the end-of-archive marker: read the rest, if short.
        let mut buf = [0u8; 8192];
        let mut left = DRAIN_LIMIT;
        while left > 0 && self.pending.is_some() {
            match self.inner.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    self.commit();
                    return;
                }
                Ok(n) => {
                    self.tee(&buf[..n]);
                    left = left.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // Not read to its end: the temporary file goes with `pending`.
        if let Some(p) = self.pending.take() {
            self.forget(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The wrapper over the in-memory fake engine: what it serves, when it asks the engine,
    //! what it keeps.

    use super::*;
    use crate::archive::{self, TarSink};
    use crate::engine::fake::{Event, FakeEngine};
    use crate::engine::{Engine, Exports};

    const ID: &str = "sha256:5ca1ab1e00000000000000000000000000000000000000000000000000000001";

    /// A tar of about 3.5 MiB (four chunks), bytes varying so that a flip anywhere matters.
    fn image_tar() -> Vec<u8> {
        let mut s = TarSink::new(Vec::new());
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        let e = archive::Entry::file(&b"big"[..], 0o644, 1, data.len() as u64);
        archive::append_bytes(&mut s, &e, &data).unwrap();
        let e = archive::Entry::file(&b"small"[..], 0o644, 1, 5);
        archive::append_bytes(&mut s, &e, b"hello").unwrap();
        s.finish().unwrap()
    }

    struct Setup {
        rt: tokio::runtime::Runtime,
        engine: Arc<FakeEngine>,
        dir: tempfile::TempDir,
        info: ImageInfo,
        tar: Vec<u8>,
    }

    fn setup_with(tar: Vec<u8>) -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut engine = FakeEngine::new();
        let info = ImageInfo {
            id: ID.into(),
            ..ImageInfo::default()
        };
        engine.add("cache-test:1", info, tar.clone());
        let engine = Arc::new(engine);
        let r = Reference::parse("cache-test:1").unwrap();
        let info = rt
            .block_on(engine.resolve(&r, &ResolveOptions::default()))
            .unwrap();
        Setup {
            rt,
            engine,
            dir: tempfile::tempdir().unwrap(),
            info,
            tar,
        }
    }

    impl Setup {
        fn source(&self) -> CachedSource {
            let e: Arc<dyn Engine> = self.engine.clone();
            let exports: Arc<dyn ImageSource> = Arc::new(Exports::new(e, self.rt.handle().clone()));
            let kind = exports.stream_kind().unwrap().to_string();
            CachedSource::new(exports, self.dir.path(), &kind).unwrap()
        }
        fn creates(&self) -> usize {
            self.engine
                .events()
                .iter()
                .filter(|(_, e)| matches!(e, Event::Create { .. }))
                .count()
        }
        fn entry(&self) -> PathBuf {
            self.source().cache().entry_path(ID, "engine").unwrap()
        }
        fn tmp_files(&self) -> usize {
            std::fs::read_dir(self.dir.path().join("tmp"))
                .unwrap()
                .count()
        }
    }

    fn read_all(s: &CachedSource, info: &ImageInfo) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        s.open(info).unwrap().read_to_end(&mut out)?;
        Ok(out)
    }

    fn flip(path: &Path, at: u64) {
        let mut b = std::fs::read(path).unwrap();
        b[at as usize] ^= 0x20;
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn warm_open_serves_the_same_bytes_without_a_container() {
        let t = setup_with(image_tar());
        let s = t.source();
        assert_eq!(read_all(&s, &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), 1);
        assert!(t.entry().exists(), "no entry after a whole read");
        let meta = Cache::read_meta(&t.entry()).unwrap();
        assert_eq!(meta.names, vec!["docker.io/library/cache-test:1"]);
        assert_eq!(meta.size, t.tar.len() as u64);
        // A new source (a later build) on the same directory.
        let s2 = t.source();
        assert_eq!(read_all(&s2, &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), 1, "the warm open created a container");
        assert!(!s2.take_damaged());
        assert_eq!(t.tmp_files(), 0);
    }

    #[test]
    fn damage_before_the_first_byte_falls_back_to_the_engine() {
        let t = setup_with(image_tar());
        read_all(&t.source(), &t.info).unwrap();
        // A byte of chunk 0's data; then a truncated file.
        flip(&t.entry(), 64 + 12 + 1000);
        assert_eq!(read_all(&t.source(), &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), 2);
        // The fresh export replaced the entry, which is sound again.
        assert_eq!(read_all(&t.source(), &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), 2);
        let len = std::fs::metadata(t.entry()).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(t.entry())
            .unwrap();
        f.set_len(len - 100).unwrap();
        assert_eq!(read_all(&t.source(), &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), 3);
    }

    #[test]
    fn damage_midway_fails_the_read_and_drops_the_entry() {
        let t = setup_with(image_tar());
        read_all(&t.source(), &t.info).unwrap();
        // A byte of chunk 2.
        flip(&t.entry(), 64 + 2 * (12 + (1 << 20)) + 500);
        let s = t.source();
        let err = read_all(&s, &t.info).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("chunk 2"), "{err}");
        assert!(s.take_damaged());
        assert!(!s.take_damaged(), "taken once");
        assert!(!t.entry().exists(), "a damaged entry was kept");
        // The next read comes from the engine again, and whole.
        assert_eq!(read_all(&s, &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), 2);
    }

    #[test]
    fn a_stream_not_read_to_its_end_is_not_kept() {
        let t = setup_with(image_tar());
        let s = t.source();
        let mut r = s.open(&t.info).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        r.read_exact(&mut buf).unwrap();
        drop(r);
        assert!(!t.entry().exists());
        assert_eq!(t.tmp_files(), 0, "the temporary entry was left");
        assert!(Cache::read_meta(&t.entry()).is_none());
    }

    #[test]
    fn a_reader_stopping_at_the_tar_end_still_fills_the_cache() {
        let t = setup_with(image_tar());
        let s = t.source();
        let r = s.open(&t.info).unwrap();
        let mut n = 0;
        archive::for_each_entry::<_, archive::ReadError, _>(r, |_, data| {
            n += io::copy(data, &mut io::sink()).map_err(archive::ReadError::Io)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3_500_005);
        assert!(t.entry().exists(), "not kept after a tar reader's read");
    }

    #[test]
    fn a_stream_that_is_not_a_whole_tar_is_not_kept() {
        let mut tar = image_tar();
        tar.truncate(2_000_000 / 512 * 512);
        let t = setup_with(tar);
        let s = t.source();
        assert_eq!(read_all(&s, &t.info).unwrap(), t.tar);
        assert!(!t.entry().exists());
        assert_eq!(t.tmp_files(), 0);
    }

    #[test]
    fn an_unusable_cache_only_skips_caching() {
        let t = setup_with(image_tar());
        let s = t.source();
        let entry = t.entry();
        // The temporary directory is a file now: no entry can be started.
        std::fs::remove_dir(t.dir.path().join("tmp")).unwrap();
        std::fs::write(t.dir.path().join("tmp"), b"x").unwrap();
        assert_eq!(read_all(&s, &t.info).unwrap(), t.tar);
        assert!(!entry.exists());
    }

    #[test]
    fn concurrent_opens_on_an_empty_cache() {
        let t = setup_with(image_tar());
        let s = Arc::new(t.source());
        let s2 = Arc::new(t.source());
        let (a, b) = std::thread::scope(|sc| {
            let h1 = sc.spawn(|| read_all(&s, &t.info).unwrap());
            let h2 = sc.spawn(|| read_all(&s2, &t.info).unwrap());
            (h1.join().unwrap(), h2.join().unwrap())
        });
        assert_eq!(a, t.tar);
        assert_eq!(b, t.tar);
        let creates = t.creates();
        assert_eq!(read_all(&t.source(), &t.info).unwrap(), t.tar);
        assert_eq!(t.creates(), creates, "the entry left is not sound");
    }

    #[test]
    fn eviction_spares_what_the_build_used() {
        let t = setup_with(image_tar());
        let s = t.source();
        read_all(&s, &t.info).unwrap();
        // Another, older entry.
        let other = s
            .cache()
            .entry_path(&ID.replace("5ca1ab1e", "01d0000e"), "engine")
            .unwrap();
        std::fs::write(&other, vec![0u8; 4096]).unwrap();
        s.evict(1);
        assert!(!other.exists(), "the unused entry was kept");
        assert!(t.entry().exists(), "the entry in use was evicted");
    }
}
