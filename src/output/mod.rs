//! Output formats (SPEC §6) and where the output goes (SPEC §1): the target file(s) or
//! standard output. Files are written to a temporary file beside the target and renamed
//! into place only when complete ([`AtomicFile`]); temporary files are removed on error and
//! by the signal handler ([`remove_pending`]).
//!
//! Every format is an [`Output`]: a [`Sink`] of entries in the order of SPEC §4, finished
//! once at the end.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::archive::{Sink, TakeFile};
use crate::owner;
use pipe::Threaded;
use writeback::WriteBehind;

pub mod compress;
pub mod cpio;
pub mod disk;
pub mod gzip;
pub mod kernel;
pub mod pipe;
pub mod tar;
pub mod tee;
pub mod writeback;
pub mod zstd;

pub use compress::Codec;
pub use kernel::{KernelInitrdOutput, TarKernelInitrdOutput, kernel_initrd_paths};
pub use tar::{CompressedTarOutput, DOCKERFILE, DockerOutput, TarOutput};

/// Output formats (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
    KernelInitrd,
    TarKernelInitrd,
    Docker,
    /// A GPT disk image booting with UEFI (`output::disk`).
    RawEfi,
    /// The same disk as a qcow2 image.
    Qcow2Efi,
    /// An ISO 9660 image with an El Torito UEFI entry (and a hybrid GPT).
    IsoEfi,
}

impl Format {
    /// Every format, in the order the help lists them.
    pub const ALL: &[Format] = &[
        Format::Tar,
        Format::TarGz,
        Format::TarZst,
        Format::KernelInitrd,
        Format::TarKernelInitrd,
        Format::Docker,
        Format::RawEfi,
        Format::Qcow2Efi,
        Format::IsoEfi,
    ];

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::KernelInitrd => "kernel+initrd",
            Format::TarKernelInitrd => "tar-kernel-initrd",
            Format::Docker => "docker",
            Format::RawEfi => "raw-efi",
            Format::Qcow2Efi => "qcow2-efi",
            Format::IsoEfi => "iso-efi",
        }
    }

    /// Formats that write an initrd (whose codec `--initrd-compression` chooses).
    pub fn has_initrd(self) -> bool {
        matches!(self, Format::KernelInitrd | Format::TarKernelInitrd) || self.is_disk()
    }

    /// Formats that need a `kernel` section.
    pub fn needs_kernel(self) -> bool {
        self.has_initrd()
    }

    /// Formats that produce one file (and may go to standard output).
    pub fn single_file(self) -> bool {
        self != Format::KernelInitrd
    }

    /// The disk formats, which need `--efi-loader`'s image (`output::disk`).
    pub fn is_disk(self) -> bool {
        matches!(self, Format::RawEfi | Format::Qcow2Efi | Format::IsoEfi)
    }

    /// The default file name of a single-file format.
    pub(crate) fn file_name(self, name: &str) -> String {
        match self {
            Format::Tar => format!("{name}.tar"),
            Format::TarGz => format!("{name}.tar.gz"),
            Format::TarZst => format!("{name}.tar.zst"),
            Format::Docker => format!("{name}.docker.tar"),
            Format::TarKernelInitrd => format!("{name}-initrd.tar"),
            Format::KernelInitrd => format!("{name}-initrd.img"),
            Format::RawEfi => format!("{name}-efi.img"),
            Format::Qcow2Efi => format!("{name}-efi.qcow2"),
            Format::IsoEfi => format!("{name}-efi.iso"),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format `{s}` (one of: {})", names.join(", "))
            })
    }
}

/// Where the output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
    /// Several files `<dir>/<name>-…` (kernel+initrd).
    Files {
        dir: PathBuf,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub format: Format,
    pub destination: Destination,
    /// The initrd's codec (`--initrd-compression`), for the kernel formats.
    pub initrd: Codec,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "`-o` is only for single-file formats; kernel+initrd writes <dir>/<name>-kernel, -initrd.img and -cmdline (use --dir and --name)"
    )]
    OutputWithMultiFile,
    #[error("`-o` names one output: with several formats, use --dir and --name")]
    OutputWithSeveralFormats,
    #[error("format {0} is given twice")]
    DuplicateFormat(Format),
    #[error("{0}: is a directory; `-o` names the output file")]
    IsDirectory(String),
    #[error(
        "--initrd-compression is for the formats with an initrd (kernel+initrd, tar-kernel-initrd); use -f tar.zst for a zstd tar"
    )]
    InitrdCompression,
    #[error("{0} writes a disk image, which needs a seekable file: give -o FILE or --dir/--name")]
    DiskToStdout(&'static str),
    #[error("internal error: the disk formats need the EFI loader (output::disk::open)")]
    NotADisk,
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Decides the format and destination from the command line (SPEC §1).
pub fn target(
    format: Option<Format>,
    output: Option<&str>,
    name: Option<&str>,
    dir: Option<&Path>,
    last_input: Option<&Path>,
) -> Result<Target, OutputError> {
    let format = format.unwrap_or_else(|| match output {
        Some(o) if o.ends_with(".tar.gz") || o.ends_with(".tgz") => Format::TarGz,
        Some(o) if o.ends_with(".tar.zst") || o.ends_with(".tzst") => Format::TarZst,
        _ => Format::Tar,
    });
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = name.map(str::to_string).unwrap_or_else(|| {
        last_input
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".to_string())
    });
    let destination = match output {
        Some(_) if !format.single_file() => return Err(OutputError::OutputWithMultiFile),
        Some("-") => Destination::Stdout,
        Some(o) => Destination::File(PathBuf::from(o)),
        None if format.single_file() => Destination::File(dir.join(format.file_name(&name))),
        None => Destination::Files { dir, name },
    };
    Ok(Target {
        format,
        destination,
        initrd: Codec::default(),
    })
}

/// Sets the initrd codec of the targets that have an initrd; anything but the default is an
/// error when none has.
pub fn with_initrd_compression(
    targets: Vec<Target>,
    codec: Codec,
) -> Result<Vec<Target>, OutputError> {
    if codec != Codec::default() && !targets.iter().any(|t| t.format.has_initrd()) {
        return Err(OutputError::InitrdCompression);
    }
    Ok(targets
        .into_iter()
        .map(|mut t| {
            if t.format.has_initrd() {
                t.initrd = codec;
            }
            t
        })
        .collect())
}

/// The targets of one build: one per format (several formats write from one pass over
/// the images, each under its default name; `-o` is for a single format).
pub fn targets(
    formats: &[Format],
    output: Option<&str>,
    name: Option<&str>,
    dir: Option<&Path>,
    last_input: Option<&Path>,
) -> Result<Vec<Target>, OutputError> {
    if formats.len() <= 1 {
        return Ok(vec![target(
            formats.first().copied(),
            output,
            name,
            dir,
            last_input,
        )?]);
    }
    if output.is_some() {
        return Err(OutputError::OutputWithSeveralFormats);
    }
    let mut out: Vec<Target> = Vec::new();
    for f in formats {
        if out.iter().any(|t| t.format == *f) {
            return Err(OutputError::DuplicateFormat(*f));
        }
        out.push(target(Some(*f), None, name, dir, last_input)?);
    }
    Ok(out)
}

impl Target {
    /// Checks what can be checked before any work: a file destination is not a directory.
    pub fn check(&self) -> Result<(), OutputError> {
        match &self.destination {
            Destination::File(p) if p.is_dir() => {
                Err(OutputError::IsDirectory(p.display().to_string()))
            }
            _ => Ok(()),
        }
    }
}

/// A format being written.
pub trait Output: Sink {
    /// Completes the output: trailers written, files flushed, synced and renamed into place.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Temporary files not yet renamed into place, for the signal handler.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every temporary output file (on Ctrl-C / SIGTERM, before exiting).
pub fn remove_pending() {
    for p in pending().drain(..) {
        let _ = std::fs::remove_file(&p);
    }
}

/// The name of a temporary output file starts with `.<target name>.<pid>-<start>.`: the
/// process writing it and that process's start time (see [`owner`]), so that a later run
/// can tell the file of a killed run from one being written.
fn temp_prefix(base: &str, pid: u32, start: Option<u64>) -> String {
    format!(".{base}.{pid}-{}.", start.unwrap_or(0))
}

/// Removes the temporary files of `base` in `dir` whose writer is gone (killed with
/// SIGKILL, or the machine restarted): the pid in the name runs no more, or runs a process
/// started at another time. Failures are logged, never fatal.
fn remove_stale_temporaries(dir: &Path, base: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let lead = format!(".{base}.");
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&lead))
            .filter(|r| r.ends_with(".tmp"))
        else {
            continue;
        };
        let Some((pid, start)) = rest
            .split_once('.')
            .and_then(|(owner, _)| owner.split_once('-'))
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
        else {
            continue;
        };
        let alive = match owner::start_time(pid) {
            Some(now) => start == 0 || now == start,
            None => false,
        };
        if !alive {
            let path = e.path();
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!(
                    "removed {}, left by imagesmith process {pid}, which is gone",
                    path.display()
                ),
                Err(err) => log::warn!("cannot remove {}: {err}", path.display()),
            }
        }
    }
}

/// A file written beside its final path and renamed into place by [`AtomicFile::commit`].
/// Dropped without a commit, the temporary file is removed and the target left untouched.
pub struct AtomicFile {
    tmp: Option<tempfile::NamedTempFile>,
    target: PathBuf,
    writer: Option<Writer>,
}

/// How an [`AtomicFile`]'s bytes reach its file.
enum Writer {
    /// With direct I/O the [`WriteBehind`]'s own disk threads make the writes, so the bytes
    /// are copied once, into its aligned buffers, by the thread that produces them. (A
    /// writing thread in front of it cost a second copy of every byte: the warm spec's
    /// system and user CPU, README Performance.)
    Direct(Box<WriteBehind>),
    /// Through the page cache, a writing thread of its own ([`Threaded`]) overlaps the
    /// writes with the stages that produce the bytes.
    Threaded(Threaded<WriteBehind>),
}

impl Writer {
    fn new(file: File) -> io::Result<Writer> {
        let w = WriteBehind::new(file);
        Ok(if w.is_direct() {
            Writer::Direct(Box::new(w))
        } else {
            Writer::Threaded(Threaded::new(w)?)
        })
    }

    /// Writes everything and returns the file.
    fn finish(self) -> io::Result<File> {
        match self {
            Writer::Direct(w) => w.into_inner(),
            Writer::Threaded(t) => t.finish()?.into_inner(),
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Writer::Direct(w) => w.write(buf),
            Writer::Threaded(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Direct(w) => w.flush(),
            Writer::Threaded(t) => t.flush(),
        }
    }
}

impl TakeFile for Writer {
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        match self {
            Writer::Direct(w) => w.take_file(file, len),
            Writer::Threaded(t) => t.take_file(file, len),
        }
    }
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile, OutputError> {
        let io_err = |source| OutputError::Io {
            path: target.display().to_string(),
            source,
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        remove_stale_temporaries(&dir, &base);
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(
                &base,
                std::process::id(),
                owner::start_time(std::process::id()),
            ))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io_err)?;
        pending().push(tmp.path().to_path_buf());
        let file = tmp.as_file().try_clone().map_err(io_err)?;
        Ok(AtomicFile {
            tmp: Some(tmp),
            target: target.to_path_buf(),
            writer: Some(Writer::new(file).map_err(io_err)?),
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file itself (another handle to it), for formats that write at offsets;
    /// what was written through `Write` is flushed first.
    pub fn file(&mut self) -> io::Result<File> {
        if let Some(w) = &mut self.writer {
            w.flush()?;
        }
        match &self.tmp {
            Some(t) => t.as_file().try_clone(),
            None => Err(io::Error::other("output already committed")),
        }
    }

    /// Ends writing: every byte written reaches the disk, and the writing thread and its
    /// buffers are released; the file is still renamed by [`AtomicFile::commit`] (or removed
    /// if dropped). For a file complete long before the build ends (the kernel of
    /// `kernel+initrd`), so that its buffers do not add to the build's peak memory.
    pub fn end_writing(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.take() {
            w.finish()?.sync_all()?;
        }
        Ok(())
    }

    /// Flushes, syncs, gives the file mode 0644 and renames it to the target.
    pub fn commit(mut self) -> io::Result<()> {
        self.end_writing()?;
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        let path = tmp.path().to_path_buf();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.persist(&self.target).map_err(|e| e.error)?;
        pending().retain(|p| p != &path);
        Ok(())
    }
}

impl TakeFile for AtomicFile {
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.take_file(file, len),
            None => Err(io::Error::other("output already written")),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("output already written")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_path_buf();
            drop(tmp); // removes the file
            pending().retain(|p| p != &path);
        }
    }
}

/// A single-file destination: an [`AtomicFile`], standard output, or something that exists
/// and is not a regular file (a device, a FIFO), written in place as standard output is —
/// never replaced by a rename.
pub enum FileOut {
    Atomic(AtomicFile),
    Stdout(Threaded<io::Stdout>),
    InPlace(Threaded<File>),
}

impl FileOut {
    pub fn open(dest: &Destination) -> Result<FileOut, OutputError> {
        match dest {
            Destination::Stdout => Ok(FileOut::Stdout(Threaded::new(io::stdout()).map_err(
                |source| OutputError::Io {
                    path: "standard output".into(),
                    source,
                },
            )?)),
            Destination::File(p) => match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => Err(OutputError::IsDirectory(p.display().to_string())),
                Ok(m) if !m.is_file() => {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(p)
                        .map_err(|source| OutputError::Io {
                            path: p.display().to_string(),
                            source,
                        })?;
                    Ok(FileOut::InPlace(Threaded::new(f).map_err(|source| {
                        OutputError::Io {
                            path: p.display().to_string(),
                            source,
                        }
                    })?))
                }
                _ => Ok(FileOut::Atomic(AtomicFile::create(p)?)),
            },
            Destination::Files { dir, name } => {
                Ok(FileOut::Atomic(AtomicFile::create(&dir.join(name))?))
            }
        }
    }

    pub fn commit(self) -> io::Result<()> {
        match self {
            FileOut::Atomic(a) => a.commit(),
            FileOut::Stdout(w) => w.finish().map(drop),
            FileOut::InPlace(w) => w.finish().map(drop),
        }
    }
}

impl TakeFile for FileOut {
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        match self {
            FileOut::Atomic(a) => a.take_file(file, len),
            FileOut::Stdout(s) => s.take_file(file, len),
            FileOut::InPlace(f) => f.take_file(file, len),
        }
    }
}

impl Write for FileOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FileOut::Atomic(a) => a.write(buf),
            FileOut::Stdout(s) => s.write(buf),
            FileOut::InPlace(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            FileOut::Atomic(a) => a.flush(),
            FileOut::Stdout(s) => s.flush(),
            FileOut::InPlace(f) => f.flush(),
        }
    }
}

/// Opens the outputs of `targets`: one, or a [`tee::Tee`] of several. `disk` is what the
/// disk formats need besides the entries (the EFI loader, the size).
pub fn open_all(
    targets: &[Target],
    mtime: u64,
    disk: Option<&disk::DiskOptions>,
) -> Result<Box<dyn Output>, OutputError> {
    let one = |t: &Target| match (t.format.is_disk(), disk) {
        (true, Some(d)) => disk::open(t, mtime, d),
        (true, None) => Err(OutputError::NotADisk),
        (false, _) => open(t, mtime),
    };
    match targets {
        [t] => one(t),
        many => Ok(Box::new(tee::Tee::new(
            many.iter().map(one).collect::<Result<_, _>>()?,
        ))),
    }
}

/// Opens the output for `target`. `mtime` is the fixed time of generated entries (and of
/// the members the formats add: the docker `Dockerfile`, the `tar-kernel-initrd` members).
pub fn open(target: &Target, mtime: u64) -> Result<Box<dyn Output>, OutputError> {
    let out = || FileOut::open(&target.destination);
    let io_err = |source| OutputError::Io {
        path: match &target.destination {
            Destination::Stdout => "standard output".to_string(),
            Destination::File(p) | Destination::Files { dir: p, .. } => p.display().to_string(),
        },
        source,
    };
    let compressed = |codec| -> Result<Box<dyn Output>, OutputError> {
        Ok(Box::new(
            CompressedTarOutput::new(out()?, codec).map_err(io_err)?,
        ))
    };
    Ok(match target.format {
        Format::Tar => Box::new(TarOutput::new(out()?)),
        Format::TarGz => compressed(Codec::Gzip)?,
        Format::TarZst => compressed(Codec::Zstd)?,
        Format::Docker => Box::new(DockerOutput::new(out()?, mtime)),
        Format::TarKernelInitrd => {
            Box::new(TarKernelInitrdOutput::new(out()?, mtime, target.initrd))
        }
        Format::KernelInitrd => match &target.destination {
            Destination::Files { dir, name } => {
                Box::new(KernelInitrdOutput::create(dir, name, target.initrd).map_err(io_err)?)
            }
            _ => return Err(OutputError::OutputWithMultiFile),
        },
        Format::RawEfi | Format::Qcow2Efi | Format::IsoEfi => return Err(OutputError::NotADisk),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_rules() {
        let t = target(None, Some("x.tgz"), None, None, None).unwrap();
        assert_eq!(t.format, Format::TarGz);
        let t = target(None, Some("d/x.tar.zst"), None, None, None).unwrap();
        assert_eq!(t.format, Format::TarZst);
        assert!(with_initrd_compression(vec![t.clone()], Codec::Zstd).is_err());
        assert_eq!(
            with_initrd_compression(vec![t], Codec::Gzip).unwrap()[0].initrd,
            Codec::Gzip
        );
        // Several targets: the codec goes to those with an initrd only.
        let both = targets(&[Format::Tar, Format::KernelInitrd], None, None, None, None).unwrap();
        let both = with_initrd_compression(both, Codec::Zstd).unwrap();
        assert_eq!((both[0].initrd, both[1].initrd), (Codec::Gzip, Codec::Zstd));
        let t = target(Some(Format::TarZst), None, Some("n"), None, None).unwrap();
        assert_eq!(
            t.destination,
            Destination::File(PathBuf::from("./n.tar.zst"))
        );
        let t = target(
            None,
            None,
            None,
            Some(Path::new("/o")),
            Some(Path::new("a/sys.yml")),
        )
        .unwrap();
        assert_eq!(
            t.destination,
            Destination::File(PathBuf::from("/o/sys.tar"))
        );
        let t = target(Some(Format::Docker), None, Some("n"), None, None).unwrap();
        assert_eq!(
            t.destination,
            Destination::File(PathBuf::from("./n.docker.tar"))
        );
        let t = target(
            Some(Format::KernelInitrd),
            None,
            None,
            None,
            Some(Path::new("m.yml")),
        )
        .unwrap();
        assert_eq!(
            t.destination,
            Destination::Files {
                dir: PathBuf::from("."),
                name: "m".into()
            }
        );
        assert!(target(Some(Format::KernelInitrd), Some("x"), None, None, None).is_err());
        let t = target(None, Some("-"), None, None, None).unwrap();
        assert_eq!(t.destination, Destination::Stdout);
    }

    #[test]
    fn temporaries_of_gone_processes_are_removed_and_no_others() {
        let d = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let mine = owner::start_time(me);
        let names = [
            (temp_prefix("k.tar", dead, Some(5)) + "aB3xYz.tmp", false),
            (
                temp_prefix("k.tar", me, mine.map(|s| s + 1)) + "aB3xYz.tmp",
                false,
            ),
            (temp_prefix("k.tar", me, mine) + "aB3xYz.tmp", true),
            (temp_prefix("other.tar", dead, Some(5)) + "aB3xYz.tmp", true),
            (".k.tar.notours.tmp".to_string(), true),
        ];
        for (n, _) in &names {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        remove_stale_temporaries(d.path(), "k.tar");
        for (n, kept) in &names {
            assert_eq!(d.path().join(n).exists(), *kept, "{n}");
        }
    }

    #[test]
    fn atomic_file_leaves_target_untouched_until_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.tar");
        std::fs::write(&p, b"old").unwrap();
        {
            let mut a = AtomicFile::create(&p).unwrap();
            a.write_all(b"new").unwrap();
            // dropped without commit
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let mut a = AtomicFile::create(&p).unwrap();
        a.write_all(b"new").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    /// A file whose writing ended early (its thread and buffers gone) still holds every
    /// byte, refuses more, and is renamed only by the commit.
    #[test]
    fn ended_writing_keeps_the_bytes_until_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kernel");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut a = AtomicFile::create(&p).unwrap();
        a.write_all(&data).unwrap();
        a.end_writing().unwrap();
        assert!(a.writer.is_none(), "the writing thread is gone");
        let err = a.write_all(b"more").unwrap_err();
        assert_eq!(err.to_string(), "output already written");
        assert!(!p.exists());
        a.commit().unwrap();
        assert!(std::fs::read(&p).unwrap() == data);
    }
}
