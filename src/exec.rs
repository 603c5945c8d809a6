//! The executor: streams a [`Plan`] into a [`Sink`]. Every decision was taken by the plan;
//! this module only moves bytes: image streams from the [`ExportQueue`] through the
//! per-image rewrite ([`rewrite::place`], [`rewrite::kernel::kernel`]), generated entries,
//! and `files` entries with the parents the output does not have yet.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::archive::{self, Entry, Kind, Name, Sink};
use crate::plan::{FileContent, FileOp, Op, Plan};
use crate::rewrite::{self, Placement};
use crate::source::ImageSource;
use crate::source::queue::ExportQueue;

/// Writes `plan` into `sink`. `ahead` images are opened before their turn (see
/// [`ExportQueue`]); generated entries get the time `mtime`.
pub fn execute(
    plan: &Plan,
    source: Arc<dyn ImageSource>,
    ahead: usize,
    mtime: u64,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let mut w = Watch {
        sink,
        watch: plan
            .file_parents()
            .into_iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        has: HashSet::new(),
    };
    let mut queue = ExportQueue::new(source, plan.exports().cloned().collect(), ahead);
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
            Op::Kernel { parts, .. } => {
                rewrite::kernel::kernel(queue.open_next()?, &mut w, parts, mtime)?;
            }
            Op::Image {
                image,
                prefix,
                resolv,
            } => {
                let src = queue.open_next()?;
                log::info!("placing {} at /{prefix}", image.reference);
                let p = Placement {
                    image: &image.reference,
                    prefix,
                    filter: true,
                    resolv: *resolv,
                    mtime,
                };
                rewrite::place(src, &mut w, &p)?;
            }
            Op::UserFile(f) => user_file(&mut w, f, mtime).with_context(|| f.what.clone())?,
        }
    }
    queue.finish();
    Ok(())
}

fn write_err(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("writing the output")
}

/// The sink, remembering which ancestors of `files` entries the output has.
struct Watch<'a> {
    sink: &'a mut dyn Sink,
    watch: HashSet<Name>,
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
