//! The ordered export queue: hands the executor each image's stream in output order. With
//! `ahead > 0`, the next `ahead` images are opened on helper threads and spooled to anonymous
//! temporary files while the executor writes the current one; the order never changes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, anyhow, bail};

use super::{ImageInfo, ImageSource, ImageStream};

/// Opens planned images in order, some ahead of time.
pub struct ExportQueue {
    source: Arc<dyn ImageSource>,
    queue: Vec<ImageInfo>,
    next: usize,
    ahead: usize,
    spools: HashMap<usize, JoinHandle<anyhow::Result<File>>>,
    cancel: Arc<AtomicBool>,
}

impl ExportQueue {
    /// A queue of `queue`'s images, `ahead` of them spooled in advance (0: none).
    pub fn new(source: Arc<dyn ImageSource>, queue: Vec<ImageInfo>, ahead: usize) -> ExportQueue {
        ExportQueue {
            source,
            queue,
            next: 0,
            ahead,
            spools: HashMap::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next image's stream.
    pub fn open_next(&mut self) -> anyhow::Result<ImageStream> {
        let k = self.next;
        let info = self
            .queue
            .get(k)
            .cloned()
            .ok_or_else(|| anyhow!("internal error: more exports than planned"))?;
        self.next += 1;
        let spooled = self.spools.remove(&k);
        for j in k + 1..(k + 1 + self.ahead).min(self.queue.len()) {
            if !self.spools.contains_key(&j) {
                let source = self.source.clone();
                let info = self.queue[j].clone();
                let cancel = self.cancel.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("spool-{j}"))
                    .spawn(move || spool(source.as_ref(), &info, &cancel))
                    .context("starting a spool thread")?;
                self.spools.insert(j, handle);
            }
        }
        match spooled {
            Some(h) => {
                let file = h.join().map_err(|_| anyhow!("a spool thread panicked"))??;
                Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
            }
            None => {
                log::debug!("opening {}", info.reference);
                Ok(self.source.open(&info)?)
            }
        }
    }

    /// Stops and joins the spool threads (what they opened is released as they end).
    pub fn finish(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        for (_, h) in self.spools.drain() {
            let _ = h.join();
        }
    }
}

impl Drop for ExportQueue {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Copies one image's stream into an anonymous temporary file.
fn spool(source: &dyn ImageSource, info: &ImageInfo, cancel: &AtomicBool) -> anyhow::Result<File> {
    log::debug!("opening {} ahead", info.reference);
    let mut r = source.open(info)?;
    let mut f = tempfile::tempfile().context("creating a spool file")?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            bail!("cancelled");
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("reading image `{}`", info.reference))
                );
            }
        };
        f.write_all(&buf[..n]).context("writing a spool file")?;
    }
    f.rewind().context("rewinding a spool file")?;
    Ok(f)
}
