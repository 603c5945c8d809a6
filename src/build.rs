//! `imagesmith build` as a library operation: validated [`BuildOptions`] in, an output out.
//!
//! 1. load and validate the YAML, check that the format can be made, resolve the `files`
//!    entries — no image source is contacted before the input is known good;
//! 2. connect the image source (the caller says which: the Docker engine, a fake in tests)
//!    and resolve every distinct image, several at once; every failure is reported, each
//!    with where the YAML names the image;
//! 3. plan (label merge, `config.json`s, layouts) — still nothing written;
//! 4. execute the plan on this thread, the only one that writes the output;
//! 5. with a cache ([`BuildOptions::cache`]), the source is wrapped in a
//!    [`CachedSource`], and least recently used entries are evicted at the end. A cache
//!    entry found damaged midway makes the build start over once without it (an output
//!    file is not in place until the end; standard output and devices cannot start over).
//!
//! Ctrl-C and SIGTERM release what the source holds and remove the temporary output, then
//! exit with 130 / 143 (`crate::signals`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;

use crate::cache::{CacheOptions, CachedSource};
use crate::exec;
use crate::output::{self, Destination, Target};
use crate::plan::{self, ImageUse};
use crate::signals;
use crate::source::{ImageInfo, ImageSource, ResolveOptions};
use crate::spec::reference::Reference;
use crate::spec::{self, Input};

/// LinuxKit's fixed time for generated entries: 2017-04-18T16:30:00Z.
pub const DEFAULT_MTIME: u64 = 1_492_533_000;

/// Everything a build needs to know, validated.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The YAML documents, merged in order.
    pub inputs: Vec<Input>,
    /// One per format, written from one pass over the images.
    pub targets: Vec<Target>,
    /// A directory to create before writing (`--dir`).
    pub create_dir: Option<PathBuf>,
    /// The time of generated entries.
    pub mtime: u64,
    /// Images opened ahead of the one being written (`--jobs` - 1).
    pub ahead: usize,
    /// Images resolved at once.
    pub resolve_at_once: usize,
    pub resolve: ResolveOptions,
    /// The disk formats' EFI loader image (`--efi-loader`) and disk size (`--size`).
    pub efi_loader: Reference,
    pub disk_size: Option<u64>,
    /// The image cache; `None`: no cache (`--no-cache`).
    pub cache: Option<CacheOptions>,
}

/// What a successful build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each file written with its size in bytes; `None` for standard output.
    pub written: Vec<(Option<PathBuf>, u64)>,
    pub elapsed: Duration,
}

/// Connects the image source, given the runtime its calls run on. Called once the input is
/// known good.
pub type Connect<'a> = &'a dyn Fn(&tokio::runtime::Runtime) -> anyhow::Result<Arc<dyn ImageSource>>;

/// Runs a build. A spec with problems fails with a [`spec::Diagnostics`] error listing
/// them all; warnings are logged.
pub fn run(opts: &BuildOptions, connect: Connect<'_>) -> anyhow::Result<Report> {
    let started = Instant::now();
    let loaded = spec::load(&opts.inputs)?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let spec = loaded.spec;
    let has_kernel = spec
        .kernel
        .as_ref()
        .and_then(|k| k.image.as_ref())
        .is_some();
    for t in &opts.targets {
        t.check()?;
        if t.format.needs_kernel() && !has_kernel {
            bail!("format {} needs a `kernel` section with an image", t.format);
        }
    }
    let files = plan::files(&spec)?;
    if let Some(dir) = &opts.create_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output directory {}", dir.display()))?;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("imagesmith-io")
        .build()
        .context("starting the async runtime")?;
    let source = connect(&rt)?;
    let cached = opts.cache.as_ref().and_then(|c| wrap(&source, c));
    let source = match &cached {
        Some(c) => c.clone() as Arc<dyn ImageSource>,
        None => source,
    };
    signals::install(&rt, source.clone());
    let mut uses = plan::images(&spec);
    let disks = opts.targets.iter().any(|t| t.format.is_disk());
    if disks && !uses.iter().any(|u| u.reference == opts.efi_loader) {
        uses.push(ImageUse {
            reference: opts.efi_loader.clone(),
            pos: None,
            what: format!(
                "the EFI loader of the disk formats (--efi-loader; `imagesmith pkg build pkg/efi` builds the default, {})",
                output::disk::DEFAULT_LOADER
            ),
        });
    }
    let images = resolve_all(
        &rt,
        source.as_ref(),
        &uses,
        &opts.resolve,
        opts.resolve_at_once,
    )?;
    let plan = plan::plan(&spec, &images, files)?;
    let disk = match images.get(&opts.efi_loader) {
        Some(info) if disks => {
            let what = || format!("the EFI loader image `{}`", info.reference);
            let stream = source.open(info).with_context(what)?;
            let loader =
                output::disk::Loader::from_tar(&info.reference, stream).with_context(what)?;
            Some(output::disk::DiskOptions {
                size: opts.disk_size,
                loader,
            })
        }
        _ => None,
    };

    let mut again = true;
    loop {
        let mut out = output::open_all(&opts.targets, opts.mtime, disk.as_ref())?;
        let exec_opts = exec::ExecOptions {
            ahead: opts.ahead,
            mtime: opts.mtime,
            spool_dir: spool_dir(&opts.targets),
        };
        match exec::execute(&plan, source.clone(), &exec_opts, out.as_mut()) {
            Ok(()) => {
                out.finish().context("finishing the output")?;
                break;
            }
            Err(e) => {
                let damaged = cached.as_ref().is_some_and(|c| c.take_damaged());
                if !(damaged && again && opts.targets.iter().all(|t| restartable(&t.destination))) {
                    return Err(e);
                }
                // The damaged entry is gone: its image comes from the source this time.
                log::warn!("{e:#}; building again");
                again = false;
            }
        }
    }
    if let (Some(c), Some(o)) = (&cached, &opts.cache) {
        c.evict(o.limit);
    }
    Ok(Report {
        written: opts.targets.iter().flat_map(written).collect(),
        elapsed: started.elapsed(),
    })
}

/// Where the executor's spool files go: beside the first output file, so that moving a
/// spool into it stays on one file system (see `exec`); the system's temporary directory
/// for standard output, and for a device or FIFO written in place (its directory may be
/// `/dev`).
fn spool_dir(targets: &[output::Target]) -> Option<PathBuf> {
    targets.iter().find_map(|t| match &t.destination {
        output::Destination::File(p) if std::fs::metadata(p).is_ok_and(|m| !m.is_file()) => None,
        output::Destination::File(p) => Some(match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }),
        output::Destination::Files { dir, .. } => Some(dir.clone()),
        output::Destination::Stdout => None,
    })
}

/// `source` with the cache of `opts`, when the source's streams can be cached and the
/// cache directory can be made (else a warning, and no cache).
fn wrap(source: &Arc<dyn ImageSource>, opts: &CacheOptions) -> Option<Arc<CachedSource>> {
    let kind = source.stream_kind()?.to_string();
    match CachedSource::new(source.clone(), &opts.dir, &kind) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            log::warn!(
                "cache: cannot use {}: {e}; building without a cache",
                opts.dir.display()
            );
            None
        }
    }
}

/// Whether an output can be written again from the start: files written beside their
/// target and renamed at the end can; standard output and devices cannot.
fn restartable(dest: &Destination) -> bool {
    match dest {
        Destination::Stdout => false,
        Destination::File(p) => std::fs::metadata(p).map_or(true, |m| m.is_file()),
        Destination::Files { .. } => true,
    }
}

/// The files a finished output consists of, with their sizes.
fn written(target: &Target) -> Vec<(Option<PathBuf>, u64)> {
    let size = |p: PathBuf| {
        let n = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        (Some(p), n)
    };
    match &target.destination {
        Destination::Stdout => vec![(None, 0)],
        Destination::File(p) => vec![size(p.clone())],
        Destination::Files { dir, name } => output::kernel_initrd_paths(dir, name)
            .into_iter()
            .map(size)
            .collect(),
    }
}

/// Resolves every image, `at_once` at a time. Every failure is reported, in spec order,
/// each with where the YAML names the image and what needs it.
pub fn resolve_all(
    rt: &tokio::runtime::Runtime,
    source: &dyn ImageSource,
    uses: &[ImageUse],
    opts: &ResolveOptions,
    at_once: usize,
) -> anyhow::Result<HashMap<Reference, ImageInfo>> {
    // Unordered: a slow pull does not hold back the next ones; sorted back to spec order.
    let mut results: Vec<_> = rt.block_on(
        futures_util::stream::iter(uses.iter().enumerate())
            .map(|(i, u)| async move { (i, source.resolve(&u.reference, opts).await) })
            .buffer_unordered(at_once.max(1))
            .collect(),
    );
    results.sort_by_key(|(i, _)| *i);
    let mut map = HashMap::new();
    let mut failed = Vec::new();
    for (u, (_, res)) in uses.iter().zip(results) {
        match res {
            Ok(info) => {
                map.insert(u.reference.clone(), info);
            }
            Err(e) => failed.push(match &u.pos {
                Some(pos) => format!("{pos}: {}: {e}", u.what),
                None => format!("{}: {e}", u.what),
            }),
        }
    }
    match failed.len() {
        0 => Ok(map),
        1 => bail!("{}", failed[0]),
        n => bail!("{n} images could not be had:\n{}", failed.join("\n")),
    }
}
