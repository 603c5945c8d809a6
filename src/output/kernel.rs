//! The kernel formats (SPEC §6): `kernel+initrd` (three files `<name>-kernel`,
//! `<name>-initrd.img`, `<name>-cmdline` in `--dir`) and `tar-kernel-initrd` (one tar of
//! `kernel`, `initrd.img`, `cmdline` and, if any, `ucode.cpio`).
//!
//! Both read the entry stream of SPEC §4 and split it as LinuxKit's `CopySplitTar` does:
//! `boot/cmdline`, `boot/kernel` and `boot/ucode.cpio` are the boot parts; the rest of `boot/`
//! is skipped; everything else becomes the initrd, a cpio newc archive ([`CpioSink`])
//! compressed (gzip, or zstd with `--initrd-compression zstd`: [`Codec`]) and zero-padded to a
//! multiple of 4 bytes. The boot parts are only taken
//! from the head of the stream (the kernel section comes first, SPEC §4.1); a `boot/…` entry
//! after the first initrd entry is skipped too, with one warning that counts the skipped ones.
//!
//! Nothing is held in memory but the command line: the kernel is streamed to its file (or tar
//! member), the initrd is compressed as entries arrive. `kernel+initrd` writes a microcode
//! cpio uncompressed at the head of the initrd file, padded with zeros to a multiple of 4
//! bytes (so the kernel finds the compressed archive after it); `tar-kernel-initrd` spools the
//! initrd and the microcode to temporary files, because its members need their sizes up front
//! and come in a fixed order.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::archive::{Entry, Exact, Kind, Sink, TarSink};
use crate::output::compress::{Codec, Compressor};
use crate::output::cpio::{Counting, CpioSink};
use crate::output::{AtomicFile, FileOut, Output};

/// Largest `boot/cmdline` accepted (the only part held in memory).
const MAX_CMDLINE: u64 = 1 << 20;

/// The initrd being written: cpio, then the codec, then padding.
pub struct Initrd<W: Write> {
    cpio: CpioSink<Compressor<Counting<W>>>,
}

impl<W: Write> Initrd<W> {
    pub fn new(codec: Codec, w: W) -> io::Result<Initrd<W>> {
        Ok(Initrd {
            cpio: CpioSink::new(Compressor::new(codec, Counting::new(w))?),
        })
    }

    /// Ends the archive and the compressed stream; returns the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = self.cpio.finish()?.finish()?;
        w.pad4()?;
        Ok(w.into_inner())
    }
}

impl<W: Write> Sink for Initrd<W> {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.cpio.append(entry, data)
    }
}

/// Where an entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Cmdline,
    Kernel,
    Ucode,
    Skip,
    Initrd,
}

/// The split of SPEC §6 shared by both formats.
#[derive(Default)]
pub(crate) struct Splitter {
    /// The first initrd entry has been seen: no more boot parts.
    started: bool,
    cmdline: bool,
    kernel: bool,
    ucode: bool,
    skipped: u64,
    first_skipped: Option<String>,
}

impl Splitter {
    pub(crate) fn classify(&mut self, e: &Entry) -> Part {
        let p = e.path.as_slice();
        if p != b"boot" && !p.starts_with(b"boot/") {
            self.started = true;
            return Part::Initrd;
        }
        if !self.started && e.kind == Kind::File {
            let slot = match p {
                b"boot/cmdline" => Some((&mut self.cmdline, Part::Cmdline)),
                b"boot/kernel" => Some((&mut self.kernel, Part::Kernel)),
                b"boot/ucode.cpio" => Some((&mut self.ucode, Part::Ucode)),
                _ => None,
            };
            if let Some((seen, part)) = slot
                && !*seen
            {
                *seen = true;
                return part;
            }
        }
        if self.started || p != b"boot" {
            self.skipped += 1;
            if self.first_skipped.is_none() {
                self.first_skipped = Some(e.display_path());
            }
        }
        Part::Skip
    }

    pub(crate) fn warn(&self, format: &str) {
        if self.skipped > 0 {
            log::warn!(
                "{format}: skipped {} entr{} under boot/ that {} not the kernel, its command line or microcode of the kernel section (the first: `{}`)",
                self.skipped,
                if self.skipped == 1 { "y" } else { "ies" },
                if self.skipped == 1 { "is" } else { "are" },
                self.first_skipped.as_deref().unwrap_or("")
            );
        }
    }
}

pub(crate) fn read_cmdline(e: &Entry, data: &mut dyn Read) -> io::Result<Vec<u8>> {
    if e.size > MAX_CMDLINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "boot/cmdline is {} bytes long (at most {MAX_CMDLINE})",
                e.size
            ),
        ));
    }
    let mut v = Vec::with_capacity(e.size as usize);
    io::copy(&mut Exact::new(e, data), &mut v)?;
    Ok(v)
}

pub(crate) fn no_kernel(format: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{format} needs a kernel, and the build wrote no boot/kernel (add a `kernel` section)"
        ),
    )
}

/// The file names of `kernel+initrd` in `dir` for `name`: kernel, initrd, command line.
pub fn kernel_initrd_paths(dir: &Path, name: &str) -> [PathBuf; 3] {
    [
        dir.join(format!("{name}-kernel")),
        dir.join(format!("{name}-initrd.img")),
        dir.join(format!("{name}-cmdline")),
    ]
}

fn gone() -> io::Error {
    io::Error::other("internal error: the initrd is gone")
}

enum InitrdFile {
    /// Nothing compressed yet: a microcode cpio may still be written raw.
    Raw(AtomicFile),
    Compressing(Box<Initrd<AtomicFile>>),
    /// Only while switching from one to the other.
    Gone,
}

/// `kernel+initrd`.
pub struct KernelInitrdOutput {
    paths: [PathBuf; 3],
    split: Splitter,
    kernel: Option<AtomicFile>,
    cmdline: Vec<u8>,
    initrd: InitrdFile,
    codec: Codec,
}

impl KernelInitrdOutput {
    /// Opens `<dir>/<name>-initrd.img` at once (so an unwritable directory fails before any
    /// image is exported); the other two files are written as their parts arrive.
    pub fn create(dir: &Path, name: &str, codec: Codec) -> io::Result<KernelInitrdOutput> {
        let paths = kernel_initrd_paths(dir, name);
        let initrd = AtomicFile::create(&paths[1]).map_err(io::Error::other)?;
        Ok(KernelInitrdOutput {
            paths,
            split: Splitter::default(),
            kernel: None,
            cmdline: Vec::new(),
            initrd: InitrdFile::Raw(initrd),
            codec,
        })
    }

    fn compressing(&mut self) -> io::Result<&mut Initrd<AtomicFile>> {
        if let InitrdFile::Raw(_) = self.initrd
            && let InitrdFile::Raw(f) = std::mem::replace(&mut self.initrd, InitrdFile::Gone)
        {
            self.initrd = InitrdFile::Compressing(Box::new(Initrd::new(self.codec, f)?));
        }
        match &mut self.initrd {
            InitrdFile::Compressing(i) => Ok(i),
            _ => Err(gone()),
        }
    }
}

impl Sink for KernelInitrdOutput {
    fn append(&mut self, e: &Entry, data: &mut dyn Read) -> io::Result<()> {
        match self.split.classify(e) {
            Part::Cmdline => self.cmdline = read_cmdline(e, data)?,
            Part::Kernel => {
                let mut f = AtomicFile::create(&self.paths[0]).map_err(io::Error::other)?;
                io::copy(&mut Exact::new(e, data), &mut f)?;
                f.end_writing()?;
                self.kernel = Some(f);
            }
            Part::Ucode => match &mut self.initrd {
                InitrdFile::Raw(f) => {
                    let mut w = Counting::new(f);
                    io::copy(&mut Exact::new(e, data), &mut w)?;
                    w.pad4()?;
                }
                _ => return Err(io::Error::other("boot/ucode.cpio after the initrd began")),
            },
            Part::Skip => {}
            Part::Initrd => self.compressing()?.append(e, data)?,
        }
        Ok(())
    }
}

impl Output for KernelInitrdOutput {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        let kernel = self
            .kernel
            .take()
            .ok_or_else(|| no_kernel("kernel+initrd"))?;
        self.split.warn("kernel+initrd");
        let initrd = match std::mem::replace(&mut self.initrd, InitrdFile::Gone) {
            InitrdFile::Raw(f) => Initrd::new(self.codec, f)?,
            InitrdFile::Compressing(i) => *i,
            InitrdFile::Gone => return Err(gone()),
        };
        let mut cmdline = AtomicFile::create(&self.paths[2]).map_err(io::Error::other)?;
        cmdline.write_all(&self.cmdline)?;
        initrd.finish()?.commit()?;
        kernel.commit()?;
        cmdline.commit()
    }
}

/// `tar-kernel-initrd`.
pub struct TarKernelInitrdOutput {
    tar: TarSink<FileOut>,
    mtime: u64,
    split: Splitter,
    cmdline: Vec<u8>,
    ucode: Option<(File, u64)>,
    initrd: Option<Initrd<BufWriter<File>>>,
    codec: Codec,
}

impl TarKernelInitrdOutput {
    pub fn new(out: FileOut, mtime: u64, codec: Codec) -> TarKernelInitrdOutput {
        TarKernelInitrdOutput {
            tar: TarSink::new(out),
            mtime,
            split: Splitter::default(),
            cmdline: Vec::new(),
            ucode: None,
            initrd: None,
            codec,
        }
    }

    fn member(&self, name: &str, size: u64) -> Entry {
        Entry::file(name, 0o644, self.mtime, size)
    }
}

fn spool() -> io::Result<File> {
    tempfile::tempfile()
}

/// An initrd compressed into a temporary file.
fn spooled_initrd(codec: Codec) -> io::Result<Initrd<BufWriter<File>>> {
    Initrd::new(codec, BufWriter::with_capacity(256 * 1024, spool()?))
}

impl Sink for TarKernelInitrdOutput {
    fn append(&mut self, e: &Entry, data: &mut dyn Read) -> io::Result<()> {
        match self.split.classify(e) {
            Part::Cmdline => self.cmdline = read_cmdline(e, data)?,
            Part::Kernel => {
                // The first member: streamed straight into the output.
                let m = self.member("kernel", e.size);
                self.tar.append(&m, data)?;
            }
            Part::Ucode => {
                let mut f = spool()?;
                io::copy(&mut Exact::new(e, data), &mut f)?;
                self.ucode = Some((f, e.size));
            }
            Part::Skip => {}
            Part::Initrd => {
                if self.initrd.is_none() {
                    if !self.split.kernel {
                        return Err(no_kernel("tar-kernel-initrd"));
                    }
                    self.initrd = Some(spooled_initrd(self.codec)?);
                }
                if let Some(i) = &mut self.initrd {
                    i.append(e, data)?;
                }
            }
        }
        Ok(())
    }
}

impl Output for TarKernelInitrdOutput {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        if !self.split.kernel {
            return Err(no_kernel("tar-kernel-initrd"));
        }
        self.split.warn("tar-kernel-initrd");
        let initrd = match self.initrd.take() {
            Some(i) => i,
            None => spooled_initrd(self.codec)?,
        };
        let mut file = initrd.finish()?.into_inner().map_err(|e| e.into_error())?;
        let size = file.stream_position()?;
        file.rewind()?;
        let m = self.member("initrd.img", size);
        self.tar.append(&m, &mut file)?;
        let cmdline = std::mem::take(&mut self.cmdline);
        let m = self.member("cmdline", cmdline.len() as u64);
        self.tar.append(&m, &mut cmdline.as_slice())?;
        if let Some((mut f, size)) = self.ucode.take() {
            f.rewind()?;
            let m = self.member("ucode.cpio", size);
            self.tar.append(&m, &mut f)?;
        }
        self.tar.finish()?.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::append_bytes;
    use crate::output::cpio::tests::parse;
    use crate::output::gzip::tests::gunzip;
    use crate::output::zstd::tests::unzstd;
    use crate::output::{Destination, Format, target};

    const T: u64 = 1_492_533_000;

    /// The entry stream of a small build: boot parts first, then the rest.
    fn stream(ucode: bool, cmdline: &str) -> Vec<(Entry, Vec<u8>)> {
        let mut v = vec![
            (Entry::dir("boot", 0o755, T), Vec::new()),
            (
                Entry::file("boot/cmdline", 0o644, T, cmdline.len() as u64),
                cmdline.as_bytes().to_vec(),
            ),
            (Entry::file("boot/kernel", 0o600, T, 6), b"KERNEL".to_vec()),
        ];
        if ucode {
            v.push((
                Entry::file("boot/ucode.cpio", 0o644, T, 5),
                b"UCODE".to_vec(),
            ));
        }
        v.extend([
            (Entry::dir("lib", 0o755, 9), Vec::new()),
            (Entry::file("lib/m.ko", 0o644, 9, 2), b"ko".to_vec()),
            (
                Entry::new("lib/m2.ko", Kind::Link(b"lib/m.ko".to_vec()), 0o644, 9, 0),
                Vec::new(),
            ),
            (Entry::dir("boot", 0o755, 9), Vec::new()),
            (Entry::file("boot/kernel", 0o644, 9, 3), b"bad".to_vec()),
            (Entry::file("init", 0o755, 9, 4), b"#!sh".to_vec()),
        ]);
        v
    }

    fn feed(out: &mut dyn Sink, entries: &[(Entry, Vec<u8>)]) {
        for (e, d) in entries {
            append_bytes(out, e, d).unwrap();
        }
    }

    /// Writes a small build (`stream(true, cmdline)`) as `format`, named `sys`, in `dir`.
    fn write_sys(format: Format, dir: &Path, cmdline: &str) -> crate::output::Target {
        let t = target(Some(format), None, Some("sys"), Some(dir), None).unwrap();
        let mut out = crate::output::open(&t, T).unwrap();
        feed(out.as_mut(), &stream(true, cmdline));
        out.finish().unwrap();
        t
    }

    #[test]
    fn kernel_initrd_writes_three_files() {
        let d = tempfile::tempdir().unwrap();
        write_sys(Format::KernelInitrd, d.path(), "console=ttyS0");
        let [k, i, c] = kernel_initrd_paths(d.path(), "sys");
        assert_eq!(std::fs::read(&k).unwrap(), b"KERNEL");
        assert_eq!(std::fs::read(&c).unwrap(), b"console=ttyS0");
        let initrd = std::fs::read(&i).unwrap();
        assert_eq!(initrd.len() % 4, 0);
        // microcode first, uncompressed, padded to 4 bytes; then the gzip stream
        assert_eq!(&initrd[..8], b"UCODE\0\0\0");
        assert_eq!(&initrd[8..10], &[0x1f, 0x8b]);
        let recs = parse(&gunzip(&initrd[8..]));
        let names: Vec<&str> = recs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["lib", "lib/m.ko", "lib/m2.ko", "init"]);
        assert_eq!(recs[2].data, b"m.ko", "hard link → relative symlink");
        // nothing but the three files (no temporary files left)
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    }

    #[test]
    fn empty_cmdline_is_written_and_no_ucode_means_gzip_first() {
        let d = tempfile::tempdir().unwrap();
        let mut out: Box<dyn Output> =
            Box::new(KernelInitrdOutput::create(d.path(), "n", Codec::Gzip).unwrap());
        feed(out.as_mut(), &stream(false, ""));
        out.finish().unwrap();
        let [_, i, c] = kernel_initrd_paths(d.path(), "n");
        assert_eq!(std::fs::read(&c).unwrap(), b"");
        assert_eq!(&std::fs::read(&i).unwrap()[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn without_a_kernel_both_formats_fail_and_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let no_kernel: Vec<(Entry, Vec<u8>)> = vec![(Entry::dir("etc", 0o755, T), Vec::new())];
        let mut out: Box<dyn Output> =
            Box::new(KernelInitrdOutput::create(d.path(), "n", Codec::Gzip).unwrap());
        feed(out.as_mut(), &no_kernel);
        let err = out.finish().unwrap_err().to_string();
        assert!(
            err.contains("kernel+initrd") && err.contains("kernel"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);

        let p = d.path().join("x-initrd.tar");
        let mut out = crate::output::open(
            &crate::output::Target {
                format: Format::TarKernelInitrd,
                destination: Destination::File(p.clone()),
                initrd: Codec::Gzip,
            },
            T,
        )
        .unwrap();
        let err = append_bytes(out.as_mut(), &no_kernel[0].0, b"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tar-kernel-initrd"), "{err}");
        drop(out);
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn tar_kernel_initrd_members_in_order() {
        let d = tempfile::tempdir().unwrap();
        let t = write_sys(Format::TarKernelInitrd, d.path(), "quiet");
        assert_eq!(
            t.destination,
            Destination::File(d.path().join("sys-initrd.tar"))
        );
        let tar = std::fs::read(d.path().join("sys-initrd.tar")).unwrap();
        let members = crate::archive::tests::read_all(&tar);
        let names: Vec<String> = members.iter().map(|(e, _)| e.display_path()).collect();
        assert_eq!(names, ["kernel", "initrd.img", "cmdline", "ucode.cpio"]);
        for (e, _) in &members {
            assert_eq!((e.mode, e.mtime, e.uid, e.gid), (0o644, T, 0, 0));
        }
        assert_eq!(members[0].1, b"KERNEL");
        assert_eq!(members[2].1, b"quiet");
        assert_eq!(members[3].1, b"UCODE");
        // the initrd member is the compressed archive alone (microcode not prepended)
        let initrd = &members[1].1;
        assert_eq!(initrd.len() % 4, 0);
        let names: Vec<String> = parse(&gunzip(initrd)).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["lib", "lib/m.ko", "lib/m2.ko", "init"]);
    }

    #[test]
    fn same_stream_same_bytes() {
        let run = || {
            let d = tempfile::tempdir().unwrap();
            let mut out: Box<dyn Output> =
                Box::new(KernelInitrdOutput::create(d.path(), "n", Codec::Gzip).unwrap());
            feed(out.as_mut(), &stream(true, "x"));
            out.finish().unwrap();
            std::fs::read(d.path().join("n-initrd.img")).unwrap()
        };
        assert_eq!(run(), run());
    }

    /// `--initrd-compression zstd`: the same archive, zstd-compressed, in both formats (the
    /// microcode still first and raw in `kernel+initrd`).
    #[test]
    fn zstd_initrd_in_both_formats() {
        let d = tempfile::tempdir().unwrap();
        for format in [Format::KernelInitrd, Format::TarKernelInitrd] {
            let t = target(Some(format), None, Some("z"), Some(d.path()), None).unwrap();
            let t = crate::output::with_initrd_compression(vec![t], Codec::Zstd)
                .unwrap()
                .remove(0);
            let mut out = crate::output::open(&t, T).unwrap();
            feed(out.as_mut(), &stream(true, "c"));
            out.finish().unwrap();
        }
        let initrd = std::fs::read(d.path().join("z-initrd.img")).unwrap();
        assert_eq!(initrd.len() % 4, 0);
        assert_eq!(&initrd[..8], b"UCODE\0\0\0");
        assert_eq!(&initrd[8..12], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        let names: Vec<String> = parse(&unzstd(&initrd[8..]))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["lib", "lib/m.ko", "lib/m2.ko", "init"]);
        let tar = std::fs::read(d.path().join("z-initrd.tar")).unwrap();
        let members = crate::archive::tests::read_all(&tar);
        assert_eq!(members[1].0.display_path(), "initrd.img");
        assert_eq!(
            &members[1].1[..],
            &initrd[8..],
            "the same compressed archive"
        );
    }

    #[test]
    fn skips_boot_entries_outside_the_head() {
        let mut s = Splitter::default();
        let f = |p: &str| Entry::file(p, 0o644, T, 0);
        assert_eq!(s.classify(&Entry::dir("boot", 0o755, T)), Part::Skip);
        assert_eq!(s.classify(&f("boot/cmdline")), Part::Cmdline);
        assert_eq!(s.classify(&f("boot/kernel")), Part::Kernel);
        assert_eq!(s.classify(&f("boot/kernel")), Part::Skip);
        assert_eq!(s.classify(&f("boot/other")), Part::Skip);
        assert_eq!(s.classify(&f("bootx")), Part::Initrd);
        assert_eq!(s.classify(&f("boot/ucode.cpio")), Part::Skip);
        assert_eq!(s.skipped, 3);
        assert_eq!(s.first_skipped.as_deref(), Some("boot/kernel"));
    }
}
