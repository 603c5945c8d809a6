//! Output formats (SPEC §6) and where the output goes (SPEC §1): the target file(s) or
//! standard output. Files are written to a temporary file beside the target and renamed
//! into place only when complete ([`AtomicFile`]); temporary files are removed on error and
//! by the signal handler ([`remove_pending`]).
//!
//! Every format is an [`Output`]: a [`Sink`] of entries in the order of SPEC §4, finished
//! once at the end.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::ValueEnum;

use crate::archive::Sink;

pub mod cpio;
pub mod disk;
pub mod gzip;
pub mod kernel;
pub mod tar;

pub use kernel::{KernelInitrdOutput, TarKernelInitrdOutput, kernel_initrd_paths};
pub use tar::{DOCKERFILE, DockerOutput, TarGzOutput, TarOutput};

/// Output formats (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[value(name = "tar")]
    Tar,
    #[value(name = "tar.gz")]
    TarGz,
    #[value(name = "kernel+initrd")]
    KernelInitrd,
    #[value(name = "tar-kernel-initrd")]
    TarKernelInitrd,
    #[value(name = "docker")]
    Docker,
    /// A GPT disk image booting with UEFI (`output::disk`).
    #[value(name = "raw-efi")]
    RawEfi,
    /// The same disk as a qcow2 image.
    #[value(name = "qcow2-efi")]
    Qcow2Efi,
    /// An ISO 9660 image with an El Torito UEFI entry (and a hybrid GPT).
    #[value(name = "iso-efi")]
    IsoEfi,
}

impl Format {
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
            Format::Docker => format!("{name}.docker.tar"),
            Format::TarKernelInitrd => format!("{name}-initrd.tar"),
            Format::KernelInitrd => format!("{name}-initrd.img"),
            Format::RawEfi => format!("{name}-efi.img"),
            Format::Qcow2Efi => format!("{name}-efi.qcow2"),
            Format::IsoEfi => format!("{name}-efi.iso"),
        }
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
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "`-o` is only for single-file formats; kernel+initrd writes <dir>/<name>-kernel, -initrd.img and -cmdline (use --dir and --name)"
    )]
    OutputWithMultiFile,
    #[error("{0} writes a disk image, which needs a seekable file: give -o FILE or --dir/--name")]
    DiskToStdout(&'static str),
    #[error("internal error: the disk formats are opened by output::disk::open")]
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
    })
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

/// A file written beside its final path and renamed into place by [`AtomicFile::commit`].
/// Dropped without a commit, the temporary file is removed and the target left untouched.
pub struct AtomicFile {
    tmp: Option<tempfile::NamedTempFile>,
    target: PathBuf,
    writer: Option<BufWriter<File>>,
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
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{base}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io_err)?;
        pending().push(tmp.path().to_path_buf());
        let file = tmp.as_file().try_clone().map_err(io_err)?;
        Ok(AtomicFile {
            tmp: Some(tmp),
            target: target.to_path_buf(),
            writer: Some(BufWriter::with_capacity(256 * 1024, file)),
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

    /// Flushes, syncs, gives the file mode 0644 and renames it to the target.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(w) = self.writer.take() {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
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

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("output already committed")),
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

/// A single-file destination: an [`AtomicFile`] or standard output.
pub enum FileOut {
    Atomic(AtomicFile),
    Stdout(BufWriter<io::Stdout>),
}

impl FileOut {
    pub fn open(dest: &Destination) -> Result<FileOut, OutputError> {
        match dest {
            Destination::Stdout => Ok(FileOut::Stdout(BufWriter::with_capacity(
                256 * 1024,
                io::stdout(),
            ))),
            Destination::File(p) => Ok(FileOut::Atomic(AtomicFile::create(p)?)),
            Destination::Files { dir, name } => {
                Ok(FileOut::Atomic(AtomicFile::create(&dir.join(name))?))
            }
        }
    }

    pub fn commit(self) -> io::Result<()> {
        match self {
            FileOut::Atomic(a) => a.commit(),
            FileOut::Stdout(mut w) => w.flush(),
        }
    }
}

impl Write for FileOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FileOut::Atomic(a) => a.write(buf),
            FileOut::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            FileOut::Atomic(a) => a.flush(),
            FileOut::Stdout(s) => s.flush(),
        }
    }
}

/// Opens the output for `target`. `mtime` is the fixed time of generated entries (and of
/// the members the formats add: the docker `Dockerfile`, the `tar-kernel-initrd` members).
pub fn open(target: &Target, mtime: u64) -> Result<Box<dyn Output>, OutputError> {
    let out = || FileOut::open(&target.destination);
    Ok(match target.format {
        Format::Tar => Box::new(TarOutput::new(out()?)),
        Format::TarGz => Box::new(TarGzOutput::new(out()?)),
        Format::Docker => Box::new(DockerOutput::new(out()?, mtime)),
        Format::TarKernelInitrd => Box::new(TarKernelInitrdOutput::new(out()?, mtime)),
        Format::KernelInitrd => match &target.destination {
            Destination::Files { dir, name } => {
                Box::new(KernelInitrdOutput::create(dir, name).map_err(|source| {
                    OutputError::Io {
                        path: dir.display().to_string(),
                        source,
                    }
                })?)
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
}
