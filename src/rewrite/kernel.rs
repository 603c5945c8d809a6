//! A kernel image into the output (SPEC §4.1 step 1): `boot/cmdline`, `boot/kernel`,
//! `boot/ucode.cpio`, then the modules tarball's entries at `/`. The output wants the parts
//! in that order whatever the image's order: a part that comes when its turn has come
//! (every part before it written) goes straight into the output from the image's stream;
//! one that comes early is spooled to an anonymous temporary file and written in its turn.
//! Nothing is held in memory. An export lists `kernel` before `kernel.tar`, so a kernel
//! image without microcode is never spooled (a warm build of the benchmark's kernel spent
//! 0.1 s spooling 94 MB before its first byte reached the output).

use std::fs::File;
use std::io::{self, Seek};

use anyhow::{Context as _, anyhow, bail};

use super::{Placement, Resolv, normalize, place};
use crate::archive::{self, Entry, Kind, Sink};

/// What to take from a kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelParts {
    /// The image, for messages.
    pub image: String,
    /// The kernel file's name in the image.
    pub binary: String,
    /// The modules tarball's name, if any.
    pub tar: Option<String>,
    /// The microcode cpio's name, if any.
    pub ucode: Option<String>,
    pub cmdline: String,
}

/// The parts, in output order (indexes of [`Parts`]' arrays).
const KERNEL: usize = 0;
const UCODE: usize = 1;
const TAR: usize = 2;

struct Part {
    file: File,
    mode: u32,
    size: u64,
}

/// Reads a kernel image's stream and writes its parts into `sink`, generated entries at
/// `mtime`.
pub fn kernel(
    src: impl io::Read,
    sink: &mut dyn Sink,
    k: &KernelParts,
    mtime: u64,
) -> anyhow::Result<()> {
    let want = |s: &str| normalize(s.as_bytes()).unwrap_or_default();
    let names = [
        Some(want(&k.binary)),
        k.ucode.as_deref().map(want),
        k.tar.as_deref().map(want),
    ];
    let mut parts = Parts {
        sink,
        k,
        mtime,
        wanted: names.each_ref().map(Option::is_some),
        spooled: [None, None, None],
        written: [false; 3],
    };
    archive::for_each_entry::<_, anyhow::Error, _>(src, |e, data| {
        let name = normalize(&e.path).unwrap_or_default();
        let Some(slot) = names
            .iter()
            .position(|n| n.as_deref() == Some(name.as_slice()))
        else {
            return Ok(());
        };
        if parts.spooled[slot].is_some() || parts.written[slot] {
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
        if parts.next() == Some(slot) {
            return parts.write(slot, data, e.mode, e.size);
        }
        let mut file = tempfile::tempfile().context("creating a spool file")?;
        let size = io::copy(data, &mut file)
            .with_context(|| format!("reading kernel image `{}`", k.image))?;
        file.rewind()?;
        parts.spooled[slot] = Some(Part {
            file,
            mode: e.mode,
            size,
        });
        Ok(())
    })
    .with_context(|| format!("reading kernel image `{}`", k.image))?;
    parts.finish()
}

/// The parts of a kernel image on their way into the output.
struct Parts<'a> {
    sink: &'a mut dyn Sink,
    k: &'a KernelParts,
    mtime: u64,
    /// Which parts the image must have.
    wanted: [bool; 3],
    /// Parts read ahead of their turn.
    spooled: [Option<Part>; 3],
    /// Parts in the output (`boot` and `boot/cmdline` are written before the first).
    written: [bool; 3],
}

impl Parts<'_> {
    /// The part whose turn it is: the first wanted one not yet written.
    fn next(&self) -> Option<usize> {
        (0..3).find(|&i| self.wanted[i] && !self.written[i])
    }

    /// Writes part `slot` (`size` bytes of `data`, with `mode`), after `boot` and
    /// `boot/cmdline` if they are not written yet, then the spooled parts whose turn that
    /// brings.
    fn write(
        &mut self,
        slot: usize,
        data: &mut dyn io::Read,
        mode: u32,
        size: u64,
    ) -> anyhow::Result<()> {
        let write = |e: io::Error| anyhow::Error::new(e).context("writing the output");
        let mtime = self.mtime;
        if !self.written.contains(&true) {
            self.sink
                .append(&Entry::dir("boot", 0o755, mtime), &mut io::empty())
                .map_err(write)?;
            let cmdline = &self.k.cmdline;
            let e = Entry::file("boot/cmdline", 0o644, mtime, cmdline.len() as u64);
            archive::append_bytes(self.sink, &e, cmdline.as_bytes()).map_err(write)?;
        }
        match slot {
            TAR => {
                let p = Placement {
                    image: &self.k.image,
                    prefix: "",
                    filter: false,
                    resolv: Resolv::File,
                    mtime,
                };
                place(data, self.sink, &p)
                    .with_context(|| format!("kernel image `{}`: modules tarball", self.k.image))?;
            }
            _ => {
                let path = if slot == KERNEL {
                    "boot/kernel"
                } else {
                    "boot/ucode.cpio"
                };
                let e = Entry::file(path, mode, mtime, size);
                self.sink.append(&e, data).map_err(write)?;
            }
        }
        self.written[slot] = true;
        self.write_spooled()
    }

    /// Writes the part whose turn it is if it is spooled (which writes the rest in turn).
    fn write_spooled(&mut self) -> anyhow::Result<()> {
        if let Some(next) = self.next()
            && let Some(mut p) = self.spooled[next].take()
        {
            self.write(next, &mut p.file, p.mode, p.size)?;
        }
        Ok(())
    }

    /// After the image's stream: an error for a missing part, else the parts still spooled.
    fn finish(mut self) -> anyhow::Result<()> {
        let k = self.k;
        let missing =
            |slot: usize| self.wanted[slot] && !self.written[slot] && self.spooled[slot].is_none();
        if missing(KERNEL) {
            return Err(anyhow!(
                "kernel image `{}` has no kernel file `{}`",
                k.image,
                k.binary
            ));
        }
        if let (Some(t), true) = (&k.tar, missing(TAR)) {
            bail!(
                "kernel image `{}` has no modules tarball `{t}` (set `tar: none` if it has none)",
                k.image
            );
        }
        if let (Some(u), true) = (&k.ucode, missing(UCODE)) {
            bail!("kernel image `{}` has no microcode file `{u}`", k.image);
        }
        // Every wanted part is written or spooled: the first unwritten one is spooled, and
        // writing it writes the rest.
        self.write_spooled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::read_all;
    use crate::archive::{TarSink, append_bytes};

    const T: u64 = 1_492_533_000;

    fn tar_of(entries: &[(Entry, Vec<u8>)]) -> Vec<u8> {
        let mut s = TarSink::new(Vec::new());
        for (e, d) in entries {
            append_bytes(&mut s, e, d).unwrap();
        }
        s.finish().unwrap()
    }

    fn parts(ucode: bool) -> KernelParts {
        KernelParts {
            image: "k/kernel:1".into(),
            binary: "kernel".into(),
            tar: Some("kernel.tar".into()),
            ucode: ucode.then(|| "ucode.cpio".into()),
            cmdline: "console=ttyS0".into(),
        }
    }

    /// The image's entries: kernel, modules tarball, microcode and an unrelated file.
    fn image_entries() -> Vec<(Entry, Vec<u8>)> {
        let modules = tar_of(&[
            (Entry::dir("lib", 0o755, 9), Vec::new()),
            (Entry::file("lib/m.ko", 0o644, 9, 70_000), vec![7; 70_000]),
        ]);
        vec![
            (Entry::file("kernel", 0o600, 9, 100_000), vec![1; 100_000]),
            (
                Entry::file("kernel.tar", 0o644, 9, modules.len() as u64),
                modules,
            ),
            (Entry::file("ucode.cpio", 0o640, 9, 3), b"ucd".to_vec()),
            (Entry::file("System.map", 0o644, 9, 2), b"sm".to_vec()),
        ]
    }

    fn build(image: &[u8], k: &KernelParts) -> anyhow::Result<Vec<u8>> {
        let mut out = TarSink::new(Vec::new());
        kernel(image, &mut out, k, T)?;
        Ok(out.finish()?)
    }

    fn names(tar: &[(Entry, Vec<u8>)]) -> Vec<String> {
        tar.iter().map(|(e, _)| e.display_path()).collect()
    }

    /// Whatever order the image lists its parts in, the output is the same bytes, in the
    /// output's order.
    #[test]
    fn every_order_of_the_parts_gives_the_same_output() {
        let entries = image_entries();
        let orders = [
            [0, 1, 2, 3],
            [0, 2, 1, 3],
            [1, 0, 2, 3],
            [1, 2, 0, 3],
            [2, 0, 1, 3],
            [2, 1, 0, 3],
            [3, 2, 1, 0],
        ];
        for ucode in [false, true] {
            let k = parts(ucode);
            let mut first: Option<Vec<u8>> = None;
            for order in orders {
                let image = tar_of(&order.map(|i| entries[i].clone()));
                let got = build(&image, &k).unwrap();
                match &first {
                    None => {
                        let all = read_all(&got);
                        let mut want = vec!["boot", "boot/cmdline", "boot/kernel"];
                        if ucode {
                            want.push("boot/ucode.cpio");
                        }
                        want.extend(["lib", "lib/m.ko"]);
                        assert_eq!(names(&all), want);
                        assert_eq!(all[1].1, b"console=ttyS0");
                        assert_eq!(all[2].1, entries[0].1);
                        assert_eq!(all[2].0.mode, 0o600);
                        assert_eq!(all[2].0.mtime, T);
                        assert_eq!(all.last().unwrap().1, vec![7; 70_000]);
                        first = Some(got);
                    }
                    Some(f) => assert!(*f == got, "order {order:?} (ucode {ucode}) differs"),
                }
            }
        }
    }

    /// A part whose turn has come goes into the output as the image's stream is read, not
    /// after it: with the image cut off after its kernel, the kernel is already written.
    #[test]
    fn a_part_in_turn_is_written_before_the_stream_ends() {
        let entries = image_entries();
        let mut image = tar_of(&entries[..1]);
        image.truncate(image.len() - 1024); // the end-of-archive blocks
        image.extend_from_slice(&[0xff; 512]); // a header with a bad checksum
        let mut out = TarSink::new(Vec::new());
        let err = kernel(&image[..], &mut out, &parts(false), T).unwrap_err();
        assert!(format!("{err:#}").contains("k/kernel:1"), "{err:#}");
        let got = read_all(&out.finish().unwrap());
        assert_eq!(names(&got), ["boot", "boot/cmdline", "boot/kernel"]);
        assert_eq!(got[2].1, entries[0].1);
    }

    /// Missing and repeated parts are errors naming the image and the part, whether the
    /// part before them was written or spooled.
    #[test]
    fn missing_and_repeated_parts_are_errors() {
        let e = image_entries();
        let no_tar = tar_of(&[e[0].clone(), e[2].clone()]);
        let msg = format!("{:#}", build(&no_tar, &parts(true)).unwrap_err());
        assert!(
            msg.contains("k/kernel:1") && msg.contains("no modules tarball `kernel.tar`"),
            "{msg}"
        );
        let no_ucode = tar_of(&[e[1].clone(), e[0].clone()]);
        let msg = format!("{:#}", build(&no_ucode, &parts(true)).unwrap_err());
        assert!(msg.contains("no microcode file `ucode.cpio`"), "{msg}");
        let no_kernel = tar_of(&[e[1].clone()]);
        let msg = format!("{:#}", build(&no_kernel, &parts(false)).unwrap_err());
        assert!(msg.contains("no kernel file `kernel`"), "{msg}");
        for twice in [
            vec![e[0].clone(), e[0].clone(), e[1].clone()],
            vec![e[1].clone(), e[1].clone(), e[0].clone()],
        ] {
            let msg = format!("{:#}", build(&tar_of(&twice), &parts(false)).unwrap_err());
            assert!(msg.contains("has more than one"), "{msg}");
        }
    }
}
