//! The executor: streams a [`Plan`] into a [`Sink`]. Every decision was taken by the plan;
//! this module only moves bytes: image streams from the [`ExportQueue`] through the
//! per-image rewrite ([`rewrite::place`], [`rewrite::kernel::kernel`]), generated entries,
//! and `files` entries with the parents the output does not have yet.
//!
//! Later images (up to `ahead` at a time, the largest first) are exported and rewritten at
//! the same time on helper threads, each into a spool file holding its entries as a tar
//! ([`GrowingSpool`]); at its turn a spool is handed to the sink as it grows
//! ([`Sink::append_tar`]): a tar output file takes its bytes whole, without parsing them
//! again (read into the output's direct-I/O buffers, or moved with `copy_file_range` where
//! the file system refuses direct I/O; the other formats read the entries back). When the
//! executor catches up with a helper that is still exporting, the spool hands the rest over
//! in memory, so it is written once. The output is the same bytes whatever `ahead` is.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};

use crate::archive::{self, Entry, Kind, Name, Sink, TarSink};
use crate::output::cpio::Counting;
use crate::plan::{FileContent, FileOp, Op, Plan};
use crate::rewrite::{self, Placement};
use crate::source::queue::{ExportQueue, Helper, Next};
use crate::source::{ImageSource, ImageStream};
use crate::spool::GrowingSpool;

/// How the executor runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Images exported and rewritten ahead of the one being written (`--jobs` - 1).
    pub ahead: usize,
    /// The time of generated entries.
    pub mtime: u64,
    /// Where spool files go (anonymous files, gone with the process): the output's
    /// directory, so that moving a spool into the output stays on one file system. `None`:
    /// the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
}

/// Writes `plan` into `sink`.
pub fn execute(
    plan: &Plan,
    source: Arc<dyn ImageSource>,
    opts: &ExecOptions,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let mtime = opts.mtime;
    let watch: Arc<HashSet<Name>> = Arc::new(
        plan.file_parents()
            .into_iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
    );
    let mut w = Watch {
        sink,
        watch: watch.clone(),
        has: HashSet::new(),
    };
    let helper = Placer {
        exported: plan
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Kernel { .. } | Op::Image { .. }))
            .cloned()
            .collect(),
        mtime,
        watch,
        spool_dir: opts.spool_dir.clone(),
    };
    let mut queue = ExportQueue::new(
        source,
        plan.exports().cloned().collect(),
        opts.ahead,
        helper,
    );
    for op in &plan.ops {
        match op {
            Op::Dir(d) => {
                let e = Entry::dir(d.as_bytes(), 0o755, mtime);
                w.append(&e, &mut io::empty()).map_err(write_err)?;
            }
            Op::File { path, data } => {
                let e = Entry::file(path.as_bytes(), 0o644, mtime, data.len() as u64);
                archive::append_bytes(&mut w, &e, data).map_err(write_err)?;
            }
            Op::Kernel { .. } | Op::Image { .. } => match queue.open_next()? {
                Next::Stream(src) => write_export(op, src, mtime, &mut w)?,
                Next::Ahead(a) => {
                    let placing = a.shared.clone();
                    let appended = placing
                        .spool
                        .reader()
                        .and_then(|mut r| w.sink.append_tar(&mut r));
                    let helper_failed = placing.spool.has_failed();
                    if appended.is_err() {
                        queue.cancel();
                    }
                    let placed = a.wait();
                    match (appended, placed) {
                        (Ok(()), Ok(())) => {}
                        (_, Err(e)) if helper_failed => return Err(e),
                        (Err(e), _) => return Err(write_err(e)),
                        (Ok(()), Err(e)) => return Err(e),
                    }
                    let has = std::mem::take(&mut *lock(&placing.has));
                    w.has.extend(has);
                }
            },
            Op::UserFile(f) => user_file(&mut w, f, mtime).with_context(|| f.what.clone())?,
        }
    }
    queue.finish();
    Ok(())
}

/// Writes one exported image's op (kernel or image placement) from its stream.
fn write_export(op: &Op, src: ImageStream, mtime: u64, sink: &mut dyn Sink) -> anyhow::Result<()> {
    match op {
        Op::Kernel { parts, .. } => rewrite::kernel::kernel(src, sink, parts, mtime),
        Op::Image {
            image,
            prefix,
            resolv,
        } => {
            log::info!("placing {} at /{prefix}", image.reference);
            let p = Placement {
                image: &image.reference,
                prefix,
                filter: true,
                resolv: *resolv,
                mtime,
            };
            Ok(rewrite::place(src, sink, &p)?)
        }
        _ => bail!("internal error: not an export"),
    }
}

/// Places images ahead of their turn, each into a [`GrowingSpool`] that the executor
/// moves into the output as it grows.
struct Placer {
    /// The plan's kernel and image ops, in export order.
    exported: Vec<Op>,
    mtime: u64,
    watch: Arc<HashSet<Name>>,
    spool_dir: Option<PathBuf>,
}

/// One image being placed ahead: its spool, and the watched names it holds (set at the end).
struct Placing {
    spool: GrowingSpool,
    has: Mutex<HashSet<Name>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Helper for Placer {
    type Shared = Placing;

    fn start(&self, _k: usize) -> anyhow::Result<Arc<Placing>> {
        let spool = GrowingSpool::new_in(self.spool_dir.as_deref()).with_context(|| match &self
            .spool_dir
        {
            Some(d) => format!("creating a spool file in {}", d.display()),
            None => "creating a spool file".to_string(),
        })?;
        Ok(Arc::new(Placing {
            spool,
            has: Mutex::new(HashSet::new()),
        }))
    }

    fn run(&self, k: usize, src: ImageStream, shared: &Placing) -> anyhow::Result<()> {
        let op = self
            .exported
            .get(k)
            .context("internal error: an export the plan does not have")?;
        let mut tar = TarSink::new(Counting::new(BufWriter::with_capacity(
            128 << 10,
            shared.spool.writer(),
        )));
        let mut w = Watch {
            sink: &mut tar,
            watch: self.watch.clone(),
            has: HashSet::new(),
        };
        write_export(op, src, self.mtime, &mut w)?;
        *lock(&shared.has) = w.has;
        let c = tar.get_mut();
        c.flush().context("writing a spool file")?;
        // The end-of-archive blocks the sink writes when dropped fall past this length.
        shared.spool.done(c.written());
        Ok(())
    }

    fn failed(&self, shared: &Placing) {
        shared.spool.fail();
    }
}

fn write_err(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("writing the output")
}

/// The sink, remembering which ancestors of `files` entries the output has.
struct Watch<'a> {
    sink: &'a mut dyn Sink,
    watch: Arc<HashSet<Name>>,
    has: HashSet<Name>,
}

impl Sink for Watch<'_> {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        if self.watch.contains(&entry.path) {
            self.has.insert(entry.path.clone());
        }
        self.sink.append(entry, data)
    }
}

/// Writes one `files` entry (SPEC §2.2), with the parents the output does not have yet.
fn user_file(w: &mut Watch<'_>, f: &FileOp, mtime: u64) -> anyhow::Result<()> {
    if let FileContent::Missing(source) = &f.content {
        log::info!("{}: optional source `{source}` is missing; skipped", f.what);
        return Ok(());
    }
    for p in &f.parents {
        if !w.has.contains(p.as_bytes()) {
            let mut e = Entry::dir(p.as_bytes(), f.parent_mode, mtime);
            (e.uid, e.gid) = (f.uid, f.gid);
            w.append(&e, &mut io::empty()).map_err(write_err)?;
        }
    }
    let entry = |kind: Kind, size: u64| {
        let mut e = Entry::new(f.path.as_bytes(), kind, f.mode, mtime, size);
        (e.uid, e.gid) = (f.uid, f.gid);
        e
    };
    match &f.content {
        FileContent::Directory => w.append(&entry(Kind::Dir, 0), &mut io::empty()),
        FileContent::Symlink(t) => w.append(
            &entry(Kind::Symlink(t.as_bytes().to_vec()), 0),
            &mut io::empty(),
        ),
        FileContent::Data(d) => archive::append_bytes(w, &entry(Kind::File, d.len() as u64), d),
        FileContent::Source(src) => {
            let file = File::open(src).with_context(|| format!("opening {}", src.display()))?;
            let meta = file
                .metadata()
                .with_context(|| format!("reading {}", src.display()))?;
            if !meta.is_file() {
                bail!("source {} is not a regular file", src.display());
            }
            let size = meta.len();
            let mut limited = BufReader::new(file).take(size);
            w.append(&entry(Kind::File, size), &mut limited)
        }
        FileContent::Missing(_) => Ok(()),
    }
    .map_err(write_err)
}
