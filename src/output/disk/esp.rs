//! The EFI system partition: a FAT file system (hadris-fat; FAT12/16/32 by its size, as
//! hadris chooses) written into a region of a file, holding
//!
//! - the loader image's files (`EFI/BOOT/BOOTX64.EFI`, `loader/loader.conf`, …);
//! - `imagesmith/kernel`, `imagesmith/initrd.img` (the `kernel+initrd` initrd, microcode
//!   first), `imagesmith/cmdline` (for people and scripts; the loader reads the entry);
//! - `loader/entries/imagesmith.conf`, a Boot Loader Specification type #1 entry naming
//!   them, which systemd-boot boots (`pkg/efi`'s loader.conf makes it the default, no menu).
//!
//! Files are copied from their spool files in 64 KiB chunks by hadris (never whole in
//! memory). Every time is the build's fixed time; the volume serial derives from the
//! content hash.

use std::fs::File;
use std::io;

use hadris_fat::{FatOptions, VolumeLabel};
use hadris_fs::{DateTime, Node, Tree};
use hadris_storage::Partition;
use hadris_storage::host::FileDevice;

use crate::output::disk::{ContentHash, Loader, Spooled};

/// What goes into the partition.
pub struct Content<'a> {
    pub loader: &'a Loader,
    pub kernel: &'a Spooled,
    pub initrd: &'a Spooled,
    pub cmdline: &'a str,
    pub hash: ContentHash,
    /// The build's fixed time (seconds since the epoch).
    pub mtime: u64,
}

/// The loader entry's path (BLS type #1), relative to the partition's root.
pub const ENTRY_PATH: &str = "loader/entries/imagesmith.conf";

const MIB: u64 = 1 << 20;

impl Content<'_> {
    /// The Boot Loader Specification entry.
    pub fn entry(&self) -> String {
        format!(
            "title imagesmith\nlinux /imagesmith/kernel\ninitrd /imagesmith/initrd.img\noptions {}\n",
            self.cmdline
        )
    }

    /// The bytes of every file, each rounded up to 64 KiB (the largest cluster a FAT
    /// volume of this size gets), plus room for directories.
    pub fn payload(&self) -> u64 {
        let round = |n: u64| n.div_ceil(64 * 1024) * 64 * 1024;
        let mut sum = round(self.kernel.len)
            + round(self.initrd.len)
            + round(self.cmdline.len() as u64)
            + round(self.entry().len() as u64)
            + 8 * 64 * 1024;
        for (_, f) in self.loader.files() {
            sum += round(f.len);
        }
        sum
    }

    /// The partition size when none is asked for: the payload plus a margin (1/16 and
    /// 4 MiB: the file allocation tables and room to spare), in whole MiB.
    pub fn default_size(&self) -> u64 {
        let p = self.payload();
        (p + p / 16 + 4 * MIB).div_ceil(MIB) * MIB
    }

    /// The build's time as hadris stores it.
    pub(crate) fn time(&self) -> DateTime {
        // FAT stores 1980 to 2107: a time outside is clamped.
        let secs = i64::try_from(self.mtime)
            .unwrap_or(i64::MAX)
            .clamp(315_532_800, 4_354_819_198);
        DateTime::new(secs, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    fn tree(&self) -> io::Result<Tree> {
        let mut t = Tree::new();
        let host = |s: &Spooled| hadris_fs::host::file(s.proc_path()).map_err(io::Error::from);
        for (name, f) in self.loader.files() {
            if name.eq_ignore_ascii_case(ENTRY_PATH) {
                continue; // ours replaces it
            }
            t.insert(name, Node::file(host(f)?))
                .map_err(io::Error::from)?;
        }
        let files = [
            (
                ENTRY_PATH,
                Node::file(hadris_fs::Content::bytes(self.entry())),
            ),
            ("imagesmith/kernel", Node::file(host(self.kernel)?)),
            ("imagesmith/initrd.img", Node::file(host(self.initrd)?)),
            (
                "imagesmith/cmdline",
                Node::file(hadris_fs::Content::bytes(self.cmdline.as_bytes())),
            ),
        ];
        for (p, n) in files {
            t.insert(p, n).map_err(io::Error::from)?;
        }
        Ok(t)
    }
}

/// The error for content that does not fit: `what` says what is too small ("a disk of
/// 1 MiB").
pub(crate) fn too_small(format: &str, what: &str, c: &Content<'_>) -> io::Error {
    let partition = c.default_size() / MIB;
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!(
            "{format}: {what} is too small: the loader, the kernel and the initrd take {} MiB, the EFI system partition needs about {partition} MiB and a disk {} MiB; give a larger --size, or none (the default fits the content)",
            c.payload().div_ceil(MIB),
            partition + 2,
        ),
    )
}

/// Formats `len` bytes of `file` from `offset` as the partition and copies the content in.
/// Content that does not fit is an [`io::ErrorKind::StorageFull`] error naming `format`.
pub fn write(file: &File, offset: u64, len: u64, c: &Content<'_>, format: &str) -> io::Result<()> {
    let too_small = || {
        too_small(
            format,
            &format!("an EFI system partition of {} MiB", len / MIB),
            c,
        )
    };
    if len < c.payload() {
        return Err(too_small());
    }
    let tree = c.tree()?;
    let options = FatOptions::new()
        .with_label(VolumeLabel::new("IMAGESMITH").map_err(|k| io::Error::other(format!("{k:?}")))?)
        .with_time(c.time())
        .with_serial(c.hash.u32("fat serial"))
        .with_seed(c.hash.u64("fat seed"));
    let dev = Partition::new(FileDevice::new(file.try_clone()?)?, offset, len);
    match hadris_fat::sync::write(dev, &tree, &options) {
        Ok(_report) => Ok(()),
        Err(e) if e.kind() == hadris_fs::ErrorKind::NoSpace => Err(too_small()),
        Err(e) => Err(io::Error::other(format!(
            "{format}: writing the EFI system partition: {e}"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::Entry;
    use crate::output::disk::loader::tests::fake;

    pub(crate) fn spooled(data: &[u8]) -> Spooled {
        let e = Entry::file("x", 0o644, 1, data.len() as u64);
        Spooled::copy(&e, &mut &data[..]).unwrap()
    }

    #[test]
    fn fat_is_clean_and_reproducible() {
        let loader = fake();
        let kernel = spooled(&vec![7u8; 300_000]);
        let initrd = spooled(&vec![9u8; 1_000_000]);
        let c = Content {
            loader: &loader,
            kernel: &kernel,
            initrd: &initrd,
            cmdline: "console=ttyS0",
            hash: ContentHash([3; 32]),
            mtime: 1_492_533_000,
        };
        assert!(c.entry().contains("options console=ttyS0\n"));
        let size = c.default_size();
        let image = || {
            let f = tempfile::tempfile().unwrap();
            f.set_len(size).unwrap();
            write(&f, 0, size, &c, "test").unwrap();
            std::fs::read(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ))
            .unwrap()
        };
        let a = image();
        assert_eq!(a, image());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("esp.img");
        std::fs::write(&p, &a).unwrap();
        let out = std::process::Command::new("fsck.fat")
            .arg("-n")
            .arg(&p)
            .output()
            .expect("fsck.fat (apt-get install dosfstools)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // too small: a clear error
        let f = tempfile::tempfile().unwrap();
        f.set_len(MIB).unwrap();
        let err = write(&f, 0, MIB, &c, "raw-efi").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("--size"), "{err}");
    }
}
