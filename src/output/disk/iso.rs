//! `iso-efi`: an ISO 9660 image (hadris-iso) whose only content is the EFI system partition
//! ([`esp`]), appended after the (empty) ISO 9660 tree and named twice: by the El Torito
//! catalog's UEFI entry (booting from a CD) and by a GPT (booting the same file as a disk,
//! a USB stick). The partition is written to an anonymous temporary file first, then copied
//! into the image by hadris in 64 KiB chunks.
//!
//! Limit: the El Torito entry's sector count is 16 bits. hadris writes the partition's size
//! in 512-byte sectors, capped at 65535; EDK2 (OVMF) reads the count in 2048-byte units, so
//! it sees a partition of up to 128 MiB. A larger partition (a larger initrd) boots from the
//! GPT, not from El Torito; raw-efi and qcow2-efi have no such limit.

use std::fs::File;
use std::io;

use hadris_iso::{AppendedPartition, BootEntry, ElTorito, Hybrid, IsoId, IsoOptions};
use hadris_storage::host::FileDevice;

use crate::output::disk::Spooled;
use crate::output::disk::esp::{self, Content};

/// Writes the ISO image into `file` (empty).
pub fn write_iso(file: &File, c: &Content<'_>) -> io::Result<()> {
    let size = c.default_size();
    let part = tempfile::tempfile()?;
    part.set_len(size)?;
    esp::write(&part, 0, size, c, "iso-efi")?;
    let part = Spooled {
        file: part,
        len: size,
        digest: [0; 32],
    };
    let content = hadris_fs::host::file(part.proc_path()).map_err(io::Error::from)?;
    let options = IsoOptions::default()
        .with_id(IsoId::Volume, "IMAGESMITH_EFI")
        .with_time(c.time())
        .with_seed(c.hash.u64("iso seed"))
        .with_el_torito(ElTorito::new().with_entry(BootEntry::uefi_appended(0)))
        .with_hybrid(Hybrid::gpt().with_appended(AppendedPartition::esp(content)));
    let tree = hadris_fs::Tree::new();
    hadris_iso::sync::write(FileDevice::new(file.try_clone()?)?, &tree, &options)
        .map_err(|e| io::Error::other(format!("iso-efi: writing the ISO image: {e}")))?;
    Ok(())
}
