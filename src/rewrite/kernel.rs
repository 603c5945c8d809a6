//! A kernel image into the output (SPEC §4.1 step 1): `boot/cmdline`, `boot/kernel`,
//! `boot/ucode.cpio`, then the modules tarball's entries at `/`. The parts are spooled to
//! anonymous temporary files while the image's stream is read, because the output wants
//! them in a fixed order whatever the image's order; nothing is held in memory.

use std::fs::File;
use std::io::{self, BufReader, Seek};

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
        k.tar.as_deref().map(want),
        k.ucode.as_deref().map(want),
    ];
    let mut parts: [Option<Part>; 3] = [None, None, None];
    archive::for_each_entry::<_, anyhow::Error, _>(src, |e, data| {
        let name = normalize(&e.path).unwrap_or_default();
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
    let write = |e: io::Error| anyhow::Error::new(e).context("writing the output");
    sink.append(&Entry::dir("boot", 0o755, mtime), &mut io::empty())
        .map_err(write)?;
    let cmdline = Entry::file("boot/cmdline", 0o644, mtime, k.cmdline.len() as u64);
    archive::append_bytes(sink, &cmdline, k.cmdline.as_bytes()).map_err(write)?;
    for (path, part) in [
        ("boot/kernel", Some(kernel_part)),
        ("boot/ucode.cpio", ucode_part),
    ] {
        if let Some(mut p) = part {
            let e = Entry::file(path, p.mode, mtime, p.size);
            sink.append(&e, &mut p.file).map_err(write)?;
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
        place(BufReader::new(t.file), sink, &p)
            .with_context(|| format!("kernel image `{}`: modules tarball", k.image))?;
    }
    Ok(())
}
