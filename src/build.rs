//! `imagesmith build`: the pipeline that turns a validated spec into an output.
//!
//! 1. load and validate the YAML (no engine call before the input is known good), decide the
//!    output target, check that `files` sources exist;
//! 2. connect to the engine and resolve every distinct image (max(`--jobs`, 4) at once);
//! 3. plan (label merge, `config.json`s, layouts) — still nothing written;
//! 4. execute the plan on this thread, the only one that writes the output: each image's
//!    export is streamed from the engine through `rewrite::place` into the output. With
//!    `--jobs N`, up to N-1 later exports run ahead on helper threads and spool to temporary
//!    files; the output order never changes.
//!
//! Containers are removed on every path (see `engine::Exports`); Ctrl-C and SIGTERM remove
//! them and the temporary output, then exit with 130 / 143.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt;

use crate::archive::{self, Entry, Kind, Name, Sink};
use crate::cli::{self, BuildArgs};
use crate::engine::docker::DockerEngine;
use crate::engine::{Engine, ExportReader, Exports, ImageInfo, ResolveOptions};
use crate::output::{self, Format};
use crate::plan::{self, KernelOp, Op, Plan};
use crate::progress::Progress;
use crate::rewrite::{self, Placement, Resolv};
use crate::signals;
use crate::spec::{self, FileEntry, FileKind, Id, MetadataFormat, Spec};

/// LinuxKit's fixed time for generated entries: 2017-04-18T16:30:00Z.
pub const DEFAULT_MTIME: u64 = 1_492_533_000;

/// The time of generated entries: `SOURCE_DATE_EPOCH` when set, else [`DEFAULT_MTIME`].
pub fn fixed_mtime() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH must be a number of seconds, not `{v}`")),
        _ => Ok(DEFAULT_MTIME),
    }
}

/// The least number of images inspected or pulled at once.
const RESOLVE_AT_ONCE: usize = 4;

/// Runs `imagesmith build`.
pub fn run(args: &BuildArgs, quiet: bool) -> anyhow::Result<()> {
    let spec = cli::load(&args.files)?.spec;
    let mtime = fixed_mtime()?;
    let last_input = args.files.last().filter(|f| *f != "-").map(Path::new);
    let target = output::target(
        args.format,
        args.output.as_deref(),
        args.name.as_deref(),
        args.dir.as_deref(),
        last_input,
    )?;
    if matches!(
        target.format,
        Format::KernelInitrd
            | Format::TarKernelInitrd
            | Format::RawEfi
            | Format::Qcow2Efi
            | Format::IsoEfi
    ) && spec
        .kernel
        .as_ref()
        .and_then(|k| k.image.as_ref())
        .is_none()
    {
        bail!(
            "format {:?} needs a `kernel` section with an image",
            target.format
        );
    }
    let sources = file_sources(&spec)?;
    // `--dir` is created when missing (as a place to put outputs, not a file to replace).
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the output directory {}", dir.display()))?;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("imagesmith-io")
        .build()
        .context("starting the async runtime")?;
    let platform = args
        .platform
        .as_deref()
        .map(crate::engine::normalize_platform)
        .transpose()?;
    let progress = Progress::auto(quiet);
    let docker = rt
        .block_on(DockerEngine::connect_from_env())?
        .with_progress(progress.clone());
    rt.block_on(docker.remove_stale());
    let engine: Arc<dyn Engine> = Arc::new(docker);
    let exports = Exports::new(engine.clone(), rt.handle().clone()).with_progress(progress);
    signals::install(&rt, exports.clone());

    let opts = ResolveOptions {
        always_pull: args.pull,
        platform,
    };
    let jobs = usize::from(args.jobs).max(1);
    // Inspects and pulls wait on the engine and the network, not on this machine's disk:
    // more of them at once than exports.
    let images = resolve_all(
        &rt,
        engine.as_ref(),
        &plan::images(&spec),
        &opts,
        jobs.max(RESOLVE_AT_ONCE),
    )?;
    let plan = plan::plan(&spec, &images)?;

    let mut out = if target.format.is_disk() {
        let loader = efi_loader(&rt, engine.as_ref(), &exports, &args.efi_loader, &opts)?;
        let disk = output::disk::DiskOptions {
            size: args.size,
            loader,
        };
        output::disk::open(&target, mtime, &disk)?
    } else {
        output::open(&target, mtime)?
    };
    let cx = Context {
        spec: &spec,
        images: &images,
        sources: &sources,
        mtime,
        jobs,
    };
    execute(&plan, &cx, &exports, out.as_mut())?;
    out.finish().context("finishing the output")?;
    Ok(())
}

/// The EFI loader of the disk formats (`--efi-loader`): resolved (pulled when missing) and
/// exported through the engine like any image, its EFI/ and loader/ files spooled.
fn efi_loader(
    rt: &tokio::runtime::Runtime,
    engine: &dyn Engine,
    exports: &Exports,
    image: &str,
    opts: &ResolveOptions,
) -> anyhow::Result<output::disk::Loader> {
    let what = || {
        format!(
            "EFI loader image `{image}` (build it with `imagesmith pkg build pkg/efi`, or name another with --efi-loader)"
        )
    };
    let reference = crate::spec::reference::Reference::parse(image).with_context(what)?;
    let info = rt
        .block_on(engine.resolve(&reference, opts))
        .with_context(what)?;
    let src = exports.open(&info).with_context(what)?;
    output::disk::Loader::from_tar(image, src)
}

/// Resolves every image, `jobs` at once; the first failure in spec order is reported,
/// naming what needs the image.
pub fn resolve_all(
    rt: &tokio::runtime::Runtime,
    engine: &dyn Engine,
    uses: &[plan::ImageUse],
    opts: &ResolveOptions,
    jobs: usize,
) -> anyhow::Result<HashMap<String, ImageInfo>> {
    // Unordered: a slow pull does not hold back the next ones; sorted back to spec order.
    let mut results: Vec<_> = rt.block_on(
        futures_util::stream::iter(uses.iter().enumerate())
            .map(|(i, u)| async move { (i, engine.resolve(&u.reference, opts).await) })
            .buffer_unordered(jobs)
            .collect(),
    );
    results.sort_by_key(|(i, _)| *i);
    let mut map = HashMap::new();
    for (u, (_, res)) in uses.iter().zip(results) {
        let info = res.with_context(|| format!("building {}", u.what))?;
        map.insert(u.reference.to_string(), info);
    }
    Ok(map)
}

/// Resolves every `files` source (SPEC §2.2, rules in `spec::resolve_source`): `None` for
/// entries without a source and for optional sources that are missing.
pub fn file_sources(spec: &Spec) -> anyhow::Result<Vec<Option<PathBuf>>> {
    spec.files
        .iter()
        .map(|f| {
            if f.source.is_none() {
                return Ok(None);
            }
            spec::resolve_source(f).map_err(|e| anyhow!("{}: files entry `{}`: {e}", f.pos, f.path))
        })
        .collect()
}

/// What the executor needs besides the plan.
pub struct Context<'a> {
    pub spec: &'a Spec,
    pub images: &'a HashMap<String, ImageInfo>,
    /// Resolved `files` sources, by files index (see [`file_sources`]).
    pub sources: &'a [Option<PathBuf>],
    pub mtime: u64,
    pub jobs: usize,
}

/// Writes `plan` into `sink`.
pub fn execute(
    plan: &Plan,
    cx: &Context<'_>,
    exports: &Exports,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let mut w = Writer::new(sink, cx.spec);
    let queue: Vec<ImageInfo> = plan
        .exports()
        .map(|r| {
            cx.images
                .get(r)
                .cloned()
                .ok_or_else(|| anyhow!("image `{r}` was not resolved"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut fetch = Prefetch::new(exports.clone(), queue, cx.jobs);
    for op in &plan.ops {
        match op {
            Op::Dir(d) => w.generated_dir(d, cx.mtime)?,
            Op::File { path, data } => {
                let e = Entry::file(path.as_bytes(), 0o644, cx.mtime, data.len() as u64);
                archive::append_bytes(&mut w, &e, data).map_err(write_err)?;
            }
            Op::Kernel(k) => {
                let src = fetch.next()?;
                kernel(&mut w, k, src, cx.mtime)?;
            }
            Op::Image {
                image,
                prefix,
                resolv,
            } => {
                let src = fetch.next()?;
                log::info!("placing {image} at /{prefix}");
                let p = Placement {
                    image,
                    prefix,
                    filter: true,
                    resolv: *resolv,
                    mtime: cx.mtime,
                };
                rewrite::place(src, &mut w, &p)?;
            }
            Op::UserFile(i) => {
                let f = &cx.spec.files[*i];
                let source = cx.sources.get(*i).and_then(|s| s.as_deref());
                user_file(&mut w, f, source, cx, &plan.ids)
                    .with_context(|| format!("{}: files entry `{}`", f.pos, f.path))?;
            }
        }
    }
    fetch.finish();
    Ok(())
}

fn write_err(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("writing the output")
}

/// The output sink, with what the executor must remember about what it wrote: which
/// ancestors of `files` entries the output has.
struct Writer<'a> {
    sink: &'a mut dyn Sink,
    /// Ancestors of `files` entries: the only paths whose presence matters.
    watch: HashSet<Name>,
    has: HashSet<Name>,
}

impl<'a> Writer<'a> {
    fn new(sink: &'a mut dyn Sink, spec: &Spec) -> Writer<'a> {
        let mut watch = HashSet::new();
        for f in &spec.files {
            let p = f.output_path().as_bytes();
            for (i, b) in p.iter().enumerate() {
                if *b == b'/' {
                    watch.insert(p[..i].to_vec());
                }
            }
        }
        Writer {
            sink,
            watch,
            has: HashSet::new(),
        }
    }

    /// Writes a generated directory (0755, uid/gid 0).
    fn generated_dir(&mut self, path: &str, mtime: u64) -> anyhow::Result<()> {
        let e = Entry::dir(path.as_bytes(), 0o755, mtime);
        self.append(&e, &mut io::empty()).map_err(write_err)
    }
}

impl Sink for Writer<'_> {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        if self.watch.contains(&entry.path) {
            self.has.insert(entry.path.clone());
        }
        self.sink.append(entry, data)
    }
}

/// Hands the executor each export in order; with `jobs > 1`, the next `jobs - 1` exports run
/// ahead on helper threads, each spooled to an anonymous temporary file.
struct Prefetch {
    exports: Exports,
    queue: Vec<ImageInfo>,
    next: usize,
    jobs: usize,
    spools: HashMap<usize, JoinHandle<anyhow::Result<File>>>,
    cancel: Arc<AtomicBool>,
}

impl Prefetch {
    fn new(exports: Exports, queue: Vec<ImageInfo>, jobs: usize) -> Prefetch {
        Prefetch {
            exports,
            queue,
            next: 0,
            jobs: jobs.max(1),
            spools: HashMap::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next export, as a reader.
    fn next(&mut self) -> anyhow::Result<Box<dyn Read>> {
        let k = self.next;
        let info = self
            .queue
            .get(k)
            .cloned()
            .ok_or_else(|| anyhow!("internal error: more exports than planned"))?;
        self.next += 1;
        let spooled = self.spools.remove(&k);
        for j in k + 1..(k + self.jobs).min(self.queue.len()) {
            if !self.spools.contains_key(&j) {
                let exports = self.exports.clone();
                let info = self.queue[j].clone();
                let cancel = self.cancel.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("spool-{j}"))
                    .spawn(move || spool(&exports, &info, &cancel))
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
                log::debug!("exporting {}", info.reference);
                let r: ExportReader = self.exports.open(&info)?;
                Ok(Box::new(r))
            }
        }
    }

    /// Stops and joins the spool threads (their containers are removed as they end).
    fn finish(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        for (_, h) in self.spools.drain() {
            let _ = h.join();
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Copies one export into an anonymous temporary file.
fn spool(exports: &Exports, info: &ImageInfo, cancel: &AtomicBool) -> anyhow::Result<File> {
    log::debug!("exporting {} ahead", info.reference);
    let mut r = exports.open(info)?;
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
                    anyhow::Error::new(e).context(format!("exporting image `{}`", info.reference))
                );
            }
        };
        f.write_all(&buf[..n]).context("writing a spool file")?;
    }
    f.rewind().context("rewinding a spool file")?;
    Ok(f)
}

/// `boot/` and the modules of a kernel image (SPEC §4.1 step 1). The parts are spooled to
/// temporary files while the export is read, because they are written in a fixed order.
fn kernel(w: &mut Writer<'_>, k: &KernelOp, src: Box<dyn Read>, mtime: u64) -> anyhow::Result<()> {
    let want = |s: &str| rewrite::normalize(s.as_bytes()).unwrap_or_default();
    let (binary, tar, ucode) = (
        want(&k.binary),
        k.tar.as_deref().map(want),
        k.ucode.as_deref().map(want),
    );
    struct Part {
        file: File,
        mode: u32,
        size: u64,
    }
    let mut parts: [Option<Part>; 3] = [None, None, None];
    let names = [Some(binary), tar, ucode];
    archive::for_each_entry::<_, anyhow::Error, _>(src, |e, data| {
        let name = rewrite::normalize(&e.path).unwrap_or_default();
        let Some(slot) = names
            .iter()
            .position(|n| n.as_deref() == Some(name.as_slice()))
        else {
            return Ok(());
        };
        if parts[slot].is_some() {
            bail!(
                "kernel image `{}` has more than one `{}`",
                k.image,
                e.display_path()
            );
        }
        if e.kind != Kind::File {
            bail!(
                "kernel image `{}`: `{}` is not a regular file",
                k.image,
                e.display_path()
            );
        }
        let mut file = tempfile::tempfile().context("creating a spool file")?;
        let size = io::copy(data, &mut file)
            .with_context(|| format!("reading kernel image `{}`", k.image))?;
        file.rewind()?;
        parts[slot] = Some(Part {
            file,
            mode: e.mode,
            size,
        });
        Ok(())
    })
    .with_context(|| format!("reading kernel image `{}`", k.image))?;

    let [kernel_part, tar_part, ucode_part] = parts;
    let kernel_part = kernel_part.ok_or_else(|| {
        anyhow!(
            "kernel image `{}` has no kernel file `{}`",
            k.image,
            k.binary
        )
    })?;
    if let (Some(t), None) = (&k.tar, &tar_part) {
        bail!(
            "kernel image `{}` has no modules tarball `{t}` (set `tar: none` if it has none)",
            k.image
        );
    }
    if let (Some(u), None) = (&k.ucode, &ucode_part) {
        bail!("kernel image `{}` has no microcode file `{u}`", k.image);
    }
    w.generated_dir("boot", mtime)?;
    let cmdline = Entry::file("boot/cmdline", 0o644, mtime, k.cmdline.len() as u64);
    archive::append_bytes(w, &cmdline, k.cmdline.as_bytes()).map_err(write_err)?;
    for (path, part) in [
        ("boot/kernel", Some(kernel_part)),
        ("boot/ucode.cpio", ucode_part),
    ] {
        if let Some(mut p) = part {
            let e = Entry::file(path, p.mode, mtime, p.size);
            w.append(&e, &mut p.file).map_err(write_err)?;
        }
    }
    if let Some(t) = tar_part {
        let p = Placement {
            image: &k.image,
            prefix: "",
            filter: false,
            resolv: Resolv::File,
            mtime,
        };
        rewrite::place(BufReader::new(t.file), w, &p)
            .with_context(|| format!("kernel image `{}`: modules tarball", k.image))?;
    }
    Ok(())
}

/// Writes one `files` entry (SPEC §2.2), with the parents the output does not have yet.
fn user_file(
    w: &mut Writer<'_>,
    f: &FileEntry,
    source: Option<&Path>,
    cx: &Context<'_>,
    ids: &std::collections::BTreeMap<String, u32>,
) -> anyhow::Result<()> {
    let Some(kind) = f.kind() else {
        bail!("no content source");
    };
    if matches!(kind, FileKind::Source(_)) && source.is_none() {
        log::info!(
            "{}: optional source `{}` is missing; skipped",
            f.pos,
            f.source.as_deref().unwrap_or("")
        );
        return Ok(());
    }
    let dir = kind == FileKind::Directory;
    // `mode: ""` is the default, as in LinuxKit.
    let mode = match f.mode.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => spec::rules::parse_mode(m).map_err(|e| anyhow!(e))?,
        None if dir => 0o700,
        None => 0o600,
    };
    let id = |id: Option<&Id>| id.map_or(Ok(0), |id| spec::rules::resolve_id(id, ids));
    let uid = u64::from(id(f.uid.as_ref())?);
    let gid = u64::from(id(f.gid.as_ref())?);
    let mtime = cx.mtime;
    let mut parent_mode = mode & 0o777;
    for shift in [6, 3, 0] {
        if (parent_mode >> shift) & 0o7 != 0 {
            parent_mode |= 1 << shift;
        }
    }
    let path = f.output_path().as_bytes();
    for (i, b) in path.iter().enumerate() {
        if *b == b'/' && !w.has.contains(&path[..i]) {
            let mut e = Entry::dir(&path[..i], parent_mode, mtime);
            (e.uid, e.gid) = (uid, gid);
            w.append(&e, &mut io::empty()).map_err(write_err)?;
        }
    }
    let entry = |kind: Kind, size: u64| {
        let mut e = Entry::new(path, kind, mode, mtime, size);
        (e.uid, e.gid) = (uid, gid);
        e
    };
    match kind {
        FileKind::Directory => w.append(&entry(Kind::Dir, 0), &mut io::empty()),
        FileKind::Symlink(t) => w.append(
            &entry(Kind::Symlink(t.as_bytes().to_vec()), 0),
            &mut io::empty(),
        ),
        FileKind::Contents(c) => {
            archive::append_bytes(w, &entry(Kind::File, c.len() as u64), c.as_bytes())
        }
        FileKind::Metadata(fmt) => {
            let doc = match fmt {
                MetadataFormat::Yaml => spec::to_yaml(cx.spec),
                MetadataFormat::Json => spec::to_json(cx.spec),
            };
            archive::append_bytes(w, &entry(Kind::File, doc.len() as u64), doc.as_bytes())
        }
        FileKind::Source(_) => {
            let src = source.ok_or_else(|| anyhow!("missing source"))?;
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
    }
    .map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::TarSink;
    use crate::engine::fake::{Event, FakeEngine};
    use crate::spec::reference::Reference;
    use crate::spec::{ImageRef, Pos};

    const T: u64 = DEFAULT_MTIME;

    fn tar_of(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut s = TarSink::new(Vec::new());
        for (e, d) in entries {
            archive::append_bytes(&mut s, e, d).unwrap();
        }
        s.finish().unwrap()
    }

    fn pos() -> Pos {
        Pos {
            file: "t.yml".into(),
            line: 1,
            column: 1,
        }
    }

    fn file_entry(path: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            directory: false,
            symlink: None,
            contents: None,
            source: None,
            metadata: None,
            optional: false,
            mode: None,
            uid: None,
            gid: None,
            pos: pos(),
        }
    }

    fn run_plan(
        engine: FakeEngine,
        spec: &Spec,
        plan: &Plan,
        jobs: usize,
    ) -> (Vec<(Entry, Vec<u8>)>, Arc<FakeEngine>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = Arc::new(engine);
        let dynengine: Arc<dyn Engine> = engine.clone();
        let refs = plan::images(spec);
        let images = resolve_all(
            &rt,
            dynengine.as_ref(),
            &refs,
            &ResolveOptions::default(),
            jobs,
        )
        .unwrap();
        let exports = Exports::new(dynengine, rt.handle().clone());
        let mut sink = TarSink::new(Vec::new());
        let sources = vec![None; spec.files.len()];
        let cx = Context {
            spec,
            images: &images,
            sources: &sources,
            mtime: T,
            jobs,
        };
        execute(plan, &cx, &exports, &mut sink).unwrap();
        let out = crate::archive::tests::read_all(&sink.finish().unwrap());
        (out, engine)
    }

    fn image_ref(s: &str) -> ImageRef {
        ImageRef {
            original: s.into(),
            reference: Reference::parse(s).unwrap(),
            pos: pos(),
        }
    }

    #[test]
    fn kernel_init_and_files_in_order() {
        let mut engine = FakeEngine::new();
        let modules = tar_of(&[
            (Entry::dir("lib", 0o755, 9), b""),
            (Entry::file("lib/m.ko", 0o644, 9, 1), b"m"),
        ]);
        // Lexical export order: the tarball comes before the microcode.
        let kernel_tar = tar_of(&[
            (Entry::file("kernel", 0o600, 9, 3), b"krn"),
            (
                Entry::file("kernel.tar", 0o644, 9, modules.len() as u64),
                &modules,
            ),
            (Entry::file("ucode.cpio", 0o640, 9, 2), b"uc"),
        ]);
        engine.add("k/kernel:1", ImageInfo::default(), kernel_tar);
        engine.add(
            "i/init:1",
            ImageInfo::default(),
            tar_of(&[
                (Entry::dir("etc", 0o755, 9), b""),
                (Entry::file("etc/passwd", 0o644, 9, 1), b"p"),
            ]),
        );
        let mut spec = Spec::default();
        spec.kernel = Some(spec::Kernel {
            image: Some(image_ref("k/kernel:1")),
            cmdline: Some("console=ttyS0".into()),
            ucode: Some("ucode.cpio".into()),
            ..Default::default()
        });
        spec.init = vec![image_ref("i/init:1")];
        let mut motd = file_entry("etc/motd");
        motd.contents = Some("hi\n".into());
        motd.mode = Some(String::new()); // empty = the default, 0600
        let mut app = file_entry("opt/app/conf");
        app.contents = Some("{}".into());
        app.mode = Some("0644".into());
        app.uid = Some(Id::Num(7));
        let mut link = file_entry("usr/local/bin/sh");
        link.symlink = Some("/bin/busybox".into());
        spec.files = vec![motd, app, link];
        let images = plan::images(&spec)
            .iter()
            .map(|u| (u.reference.to_string(), ImageInfo::default()))
            .collect();
        let p = plan::plan(&spec, &images).unwrap();
        let (out, engine) = run_plan(engine, &spec, &p, 1);
        let names: Vec<String> = out.iter().map(|(e, _)| e.display_path()).collect();
        let idx = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .unwrap_or_else(|| panic!("{n} missing in {names:?}"))
        };
        assert_eq!(
            &names[..6],
            [
                "boot",
                "boot/cmdline",
                "boot/kernel",
                "boot/ucode.cpio",
                "lib",
                "lib/m.ko"
            ]
        );
        let get = |n: &str| &out[idx(n)];
        assert_eq!(get("boot/cmdline").1, b"console=ttyS0");
        assert_eq!(get("boot/kernel").0.mode, 0o600);
        assert_eq!(get("boot/kernel").0.mtime, T);
        assert_eq!(get("boot/ucode.cpio").0.mode, 0o640);
        assert_eq!(get("lib/m.ko").0.mtime, 9, "modules keep their headers");
        assert!(idx("etc/passwd") < idx("etc/motd"));
        // etc exists (from init): not written again; opt/app derived from 0644 + uid 7
        assert_eq!(names.iter().filter(|n| *n == "etc").count(), 1);
        assert_eq!(get("opt").0.mode, 0o755);
        assert_eq!(get("opt/app").0.uid, 7);
        assert_eq!(get("etc/motd").0.mode, 0o600);
        assert_eq!(get("usr/local/bin").0.mode, 0o700);
        assert_eq!(
            get("usr/local/bin/sh").0.kind,
            Kind::Symlink(b"/bin/busybox".to_vec())
        );
        assert!(engine.live_containers().is_empty());
        let creates = engine
            .events()
            .iter()
            .filter(|(_, e)| matches!(e, Event::Create { .. }))
            .count();
        assert_eq!(creates, 2);
    }

    #[test]
    fn kernel_errors_name_the_image() {
        let mut engine = FakeEngine::new();
        engine.add(
            "k/kernel:1",
            ImageInfo::default(),
            tar_of(&[(Entry::file("kernel", 0o600, 9, 1), b"k")]),
        );
        let mut spec = Spec::default();
        spec.kernel = Some(spec::Kernel {
            image: Some(image_ref("k/kernel:1")),
            ..Default::default()
        });
        let images = plan::images(&spec)
            .iter()
            .map(|u| (u.reference.to_string(), ImageInfo::default()))
            .collect();
        let p = plan::plan(&spec, &images).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine: Arc<dyn Engine> = Arc::new(engine);
        let resolved = resolve_all(
            &rt,
            engine.as_ref(),
            &plan::images(&spec),
            &ResolveOptions::default(),
            1,
        )
        .unwrap();
        let exports = Exports::new(engine, rt.handle().clone());
        let mut sink = TarSink::new(Vec::new());
        let cx = Context {
            spec: &spec,
            images: &resolved,
            sources: &[],
            mtime: T,
            jobs: 1,
        };
        let err = execute(&p, &cx, &exports, &mut sink).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("docker.io/k/kernel:1") && msg.contains("kernel.tar"),
            "{msg}"
        );
    }
}
