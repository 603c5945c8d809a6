//! The bootable disk formats (SPEC §10, issue 15): `raw-efi` (a GPT disk image),
//! `qcow2-efi` (the same disk as a qcow2 image) and `iso-efi` (an ISO 9660 image whose El
//! Torito UEFI entry, and hybrid GPT, is the same EFI system partition).
//!
//! Every one of them reads the entry stream of `kernel+initrd` through the same split
//! ([`Splitter`]) and the same initrd writer ([`Initrd`]): the kernel and the initrd (cpio,
//! gzip; a microcode cpio uncompressed at its head, as `kernel+initrd` writes it) are spooled
//! to anonymous temporary files while the entries arrive, hashed on the way. At
//! [`Output::finish`] the EFI system partition is written ([`esp`]: the loader's files, the
//! kernel, the initrd, the command line and a Boot Loader Specification entry for
//! systemd-boot), then the container around it ([`gpt`], [`qcow2`], [`iso`]). Nothing is held
//! in memory but the command line and the (small) directory tree of the partition.
//!
//! Reproducible: GUIDs, the FAT volume serial and the ISO's GUIDs derive from a SHA-256 over
//! the content ([`ContentHash`]); every time is the build's fixed time. The output goes
//! through [`AtomicFile`]: on any error (content too large for `--size`, say) nothing is left.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::archive::{Entry, Exact, Sink};
use crate::output::cpio::Counting;
use crate::output::kernel::{Initrd, Part, Splitter, no_kernel, read_cmdline};
use crate::output::{AtomicFile, Codec, Destination, Format, Output, OutputError, Target};

pub mod esp;
pub mod gpt;
pub mod iso;
pub mod loader;
pub mod qcow2;

pub use loader::Loader;

/// The loader image used when `--efi-loader` is not given: what `pkg/efi` builds.
pub const DEFAULT_LOADER: &str = "imagesmith/efi:dev";

/// The disk formats' own options.
#[derive(Clone)]
pub struct DiskOptions {
    /// `--size`: the disk size in bytes (raw-efi, qcow2-efi); `None`: content plus margin.
    pub size: Option<u64>,
    /// The EFI loader's files.
    pub loader: Loader,
}

/// Parses a `--size`: a number with an optional unit `K`, `M`, `G`, `T` (binary, with or
/// without `B`/`iB`); a bare number is MiB, as in LinuxKit. The result must be a multiple
/// of 512 bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 300M, 2G)"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 20,
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("`{s}`: unknown unit (K, M, G or T)")),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes == 0 || bytes % 512 != 0 {
        return Err(format!(
            "`{s}`: a disk size is a positive multiple of 512 bytes"
        ));
    }
    Ok(bytes)
}

/// Which container the partition goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Qcow2,
    Iso,
}

impl Kind {
    fn of(format: Format) -> Option<Kind> {
        match format {
            Format::RawEfi => Some(Kind::Raw),
            Format::Qcow2Efi => Some(Kind::Qcow2),
            Format::IsoEfi => Some(Kind::Iso),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw-efi",
            Kind::Qcow2 => "qcow2-efi",
            Kind::Iso => "iso-efi",
        }
    }
}

/// Opens a disk format's output (`target.format` is one of the `-efi` formats).
pub fn open(
    target: &Target,
    mtime: u64,
    options: &DiskOptions,
) -> Result<Box<dyn Output>, OutputError> {
    let kind = Kind::of(target.format).ok_or(OutputError::NotADisk)?;
    let path: PathBuf = match &target.destination {
        Destination::File(p) => p.clone(),
        Destination::Stdout => return Err(OutputError::DiskToStdout(kind.name())),
        Destination::Files { dir, name } => dir.join(target.format.file_name(name)),
    };
    if kind == Kind::Iso && options.size.is_some() {
        log::warn!("--size sets the size of raw-efi and qcow2-efi disks; iso-efi ignores it");
    }
    let out = AtomicFile::create(&path)?;
    Ok(Box::new(DiskOutput {
        kind,
        out,
        options: options.clone(),
        mtime,
        split: Splitter::default(),
        cmdline: Vec::new(),
        kernel: None,
        initrd: InitrdSpool::Raw(Some(Box::new(Hashing::new(spool()?))), target.initrd),
    }))
}

fn spool() -> Result<File, OutputError> {
    tempfile::tempfile().map_err(|source| OutputError::Io {
        path: "a temporary file".into(),
        source,
    })
}

/// A writer that hashes (SHA-256) what goes through it.
pub(crate) struct Hashing<W> {
    inner: W,
    ctx: ring::digest::Context,
    len: u64,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        }
    }
    /// The writer, the digest and the number of bytes.
    pub(crate) fn finish(self) -> (W, [u8; 32], u64) {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.ctx.finish().as_ref());
        (self.inner, d, self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A part spooled to an anonymous temporary file: its file, length and SHA-256.
pub struct Spooled {
    pub file: File,
    pub len: u64,
    pub digest: [u8; 32],
}

impl Spooled {
    /// Copies `data` (exactly `entry.size` bytes) to a temporary file.
    pub(crate) fn copy(entry: &Entry, data: &mut dyn Read) -> io::Result<Spooled> {
        let mut h = Hashing::new(BufWriter::with_capacity(256 * 1024, tempfile::tempfile()?));
        io::copy(&mut Exact::new(entry, data), &mut h)?;
        let (w, digest, len) = h.finish();
        let file = w.into_inner().map_err(|e| e.into_error())?;
        Ok(Spooled { file, len, digest })
    }

    /// A path that opens this (unlinked) file again, for writers that take host paths.
    pub(crate) fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

enum InitrdSpool {
    /// Nothing compressed yet: a microcode cpio may still be written raw. `None` only while
    /// switching.
    Raw(Option<Box<Hashing<File>>>, Codec),
    Compressing(Box<Initrd<BufWriter<Hashing<File>>>>),
}

impl InitrdSpool {
    fn compressing(&mut self) -> io::Result<&mut Initrd<BufWriter<Hashing<File>>>> {
        if let InitrdSpool::Raw(f, codec) = self {
            let f = f.take().ok_or_else(gone)?;
            *self = InitrdSpool::Compressing(Box::new(Initrd::new(
                *codec,
                BufWriter::with_capacity(256 * 1024, *f),
            )?));
        }
        match self {
            InitrdSpool::Compressing(i) => Ok(i),
            InitrdSpool::Raw(..) => Err(gone()),
        }
    }

    fn finish(mut self) -> io::Result<Spooled> {
        self.compressing()?;
        let InitrdSpool::Compressing(i) = self else {
            return Err(gone());
        };
        let h = i.finish()?.into_inner().map_err(|e| e.into_error())?;
        let (file, digest, len) = h.finish();
        Ok(Spooled { file, len, digest })
    }
}

fn gone() -> io::Error {
    io::Error::other("internal error: the initrd spool is gone")
}

/// The SHA-256 every generated identifier derives from: of the kernel, the initrd, the
/// command line and the loader's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// 16 bytes for `what` (a GUID), with the RFC 4122 variant and version 8 ("custom")
    /// bits set, so tools show it as a well-formed GUID.
    pub fn guid(&self, what: &str) -> [u8; 16] {
        let d = self.derive(what);
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        g[7] = (g[7] & 0x0f) | 0x80; // version, in the mixed-endian GUID layout
        g[8] = (g[8] & 0x3f) | 0x80;
        g
    }
    /// A 32-bit value for `what` (a FAT volume serial).
    pub fn u32(&self, what: &str) -> u32 {
        let d = self.derive(what);
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    }
    /// A 64-bit value for `what` (a seed).
    pub fn u64(&self, what: &str) -> u64 {
        let d = self.derive(what);
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b)
    }
    fn derive(&self, what: &str) -> [u8; 32] {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        c.update(b"imagesmith disk ");
        c.update(what.as_bytes());
        c.update(&self.0);
        let mut d = [0u8; 32];
        d.copy_from_slice(c.finish().as_ref());
        d
    }
}

/// A disk format being written.
struct DiskOutput {
    kind: Kind,
    out: AtomicFile,
    options: DiskOptions,
    mtime: u64,
    split: Splitter,
    cmdline: Vec<u8>,
    kernel: Option<Spooled>,
    initrd: InitrdSpool,
}

impl Sink for DiskOutput {
    fn append(&mut self, e: &Entry, data: &mut dyn Read) -> io::Result<()> {
        match self.split.classify(e) {
            Part::Cmdline => self.cmdline = read_cmdline(e, data)?,
            Part::Kernel => self.kernel = Some(Spooled::copy(e, data)?),
            Part::Ucode => match &mut self.initrd {
                InitrdSpool::Raw(Some(f), _) => {
                    let mut w = Counting::new(f);
                    io::copy(&mut Exact::new(e, data), &mut w)?;
                    w.pad4()?;
                }
                _ => return Err(io::Error::other("boot/ucode.cpio after the initrd began")),
            },
            Part::Skip => {}
            Part::Initrd => self.initrd.compressing()?.append(e, data)?,
        }
        Ok(())
    }
}

impl Output for DiskOutput {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        let name = self.kind.name();
        let kernel = self.kernel.take().ok_or_else(|| no_kernel(name))?;
        self.split.warn(name);
        let initrd =
            std::mem::replace(&mut self.initrd, InitrdSpool::Raw(None, Codec::Gzip)).finish()?;
        let cmdline = String::from_utf8(std::mem::take(&mut self.cmdline)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the kernel command line is not UTF-8",
            )
        })?;
        let hash = {
            let mut c = ring::digest::Context::new(&ring::digest::SHA256);
            for d in [
                &kernel.digest,
                &initrd.digest,
                &self.options.loader.digest(),
            ] {
                c.update(d);
            }
            c.update(cmdline.as_bytes());
            let mut h = [0u8; 32];
            h.copy_from_slice(c.finish().as_ref());
            ContentHash(h)
        };
        let content = esp::Content {
            loader: &self.options.loader,
            kernel: &kernel,
            initrd: &initrd,
            cmdline: &cmdline,
            hash,
            mtime: self.mtime,
        };
        let file = self.out.file()?;
        match self.kind {
            Kind::Raw => gpt::write_disk(&file, &content, self.options.size, name)?,
            Kind::Qcow2 => {
                let raw = tempfile::tempfile()?;
                gpt::write_disk(&raw, &content, self.options.size, name)?;
                qcow2::convert(&raw, &mut self.out)?;
            }
            Kind::Iso => iso::write_iso(&file, &content)?,
        }
        self.out.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("300M"), Ok(300 << 20));
        assert_eq!(parse_size("300"), Ok(300 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert!(parse_size("1000B").is_err(), "not a multiple of 512");
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("3Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    fn stream() -> Vec<(Entry, Vec<u8>)> {
        const T: u64 = 1_492_533_000;
        vec![
            (Entry::dir("boot", 0o755, T), Vec::new()),
            (
                Entry::file("boot/cmdline", 0o644, T, 13),
                b"console=ttyS0".to_vec(),
            ),
            (Entry::file("boot/kernel", 0o600, T, 6), b"KERNEL".to_vec()),
            (Entry::file("init", 0o755, T, 4), b"#!sh".to_vec()),
        ]
    }

    fn disk(format: Format, dir: &std::path::Path, size: Option<u64>) -> io::Result<()> {
        let t = crate::output::target(Some(format), None, Some("sys"), Some(dir), None).unwrap();
        let options = DiskOptions {
            size,
            loader: loader::tests::fake(),
        };
        let mut out = open(&t, 1_492_533_000, &options).unwrap();
        for (e, d) in stream() {
            crate::archive::append_bytes(out.as_mut(), &e, &d)?;
        }
        out.finish()
    }

    #[test]
    fn raw_disk_has_a_valid_gpt_and_esp() {
        let d = tempfile::tempdir().unwrap();
        disk(Format::RawEfi, d.path(), None).unwrap();
        let p = d.path().join("sys-efi.img");
        let mut f = File::open(&p).unwrap();
        let len = f.metadata().unwrap().len();
        assert_eq!(len % (1 << 20), 0);
        let gpt = gptman::GPT::read_from(&mut f, 512).unwrap();
        let (_, e) = gpt.iter().find(|(_, e)| e.is_used()).unwrap();
        assert_eq!(e.partition_type_guid, gpt::ESP_TYPE);
        assert_eq!(e.starting_lba, 2048);
        // the loader entry carries the command line, in the partition
        let bytes = std::fs::read(&p).unwrap();
        let needle = b"options console=ttyS0\n";
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn too_small_fails_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        for f in [Format::RawEfi, Format::Qcow2Efi] {
            let err = disk(f, d.path(), Some(1 << 20)).unwrap_err().to_string();
            assert!(err.contains("a disk of 1 MiB is too small"), "{err}");
            assert!(err.contains("--size"), "{err}");
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // 3 MiB: a partition of 1 MiB, enough for this content
        disk(Format::RawEfi, d.path(), Some(3 << 20)).unwrap();
        let len = std::fs::metadata(d.path().join("sys-efi.img"))
            .unwrap()
            .len();
        assert_eq!(len, 3 << 20);
    }

    #[test]
    fn a_disk_needs_a_kernel_and_a_file() {
        let d = tempfile::tempdir().unwrap();
        let t = crate::output::target(Some(Format::IsoEfi), Some("-"), None, None, None).unwrap();
        let options = DiskOptions {
            size: None,
            loader: loader::tests::fake(),
        };
        let err = open(&t, 1, &options).err().unwrap().to_string();
        assert!(err.contains("iso-efi") && err.contains("-o FILE"), "{err}");
        let t = crate::output::target(Some(Format::IsoEfi), None, Some("n"), Some(d.path()), None)
            .unwrap();
        let out = open(&t, 1, &options).unwrap();
        let err = out.finish().unwrap_err().to_string();
        assert!(err.contains("iso-efi needs a kernel"), "{err}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn derived_ids_differ_by_purpose_and_content() {
        let a = ContentHash([1; 32]);
        let b = ContentHash([2; 32]);
        assert_ne!(a.guid("disk"), a.guid("esp"));
        assert_ne!(a.guid("disk"), b.guid("disk"));
        assert_eq!(a.guid("disk"), ContentHash([1; 32]).guid("disk"));
        assert_eq!(a.guid("disk")[8] & 0xc0, 0x80);
    }
}
