//! The GPT disk of `raw-efi` (and, converted, `qcow2-efi`): a protective MBR, the primary
//! and backup GPT (gptman) and one partition, the EFI system partition ([`esp`]), from
//! 1 MiB to the last whole MiB before the backup table. The disk and partition GUIDs derive
//! from the content hash. The file is sized first (sparse: only what is written takes
//! space).

use std::fs::File;
use std::io;

use gptman::{GPT, GPTPartitionEntry};

use crate::output::disk::esp::{self, Content};

const SECTOR: u64 = 512;
/// Partitions start and end on 1 MiB boundaries.
const ALIGN: u64 = 1 << 20;
/// Sectors the backup GPT takes at the end of the disk: 32 of entries and the header.
const BACKUP_SECTORS: u64 = 33;

/// The EFI system partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, as stored.
pub const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];

/// The disk size when none is asked for: 1 MiB before the partition, 1 MiB after.
pub fn default_size(c: &Content<'_>) -> u64 {
    c.default_size() + 2 * ALIGN
}

fn gpt_err(e: gptman::Error) -> io::Error {
    io::Error::other(format!("writing the partition table: {e}"))
}

/// Writes the whole disk into `file` (which it resizes): `size` bytes, or
/// [`default_size`].
pub fn write_disk(file: &File, c: &Content<'_>, size: Option<u64>, format: &str) -> io::Result<()> {
    let disk = size.unwrap_or_else(|| default_size(c));
    let sectors = disk / SECTOR;
    let first = ALIGN / SECTOR;
    // The last usable sector is the one before the backup table; the partition ends on
    // the last MiB boundary at or before it.
    let end = (sectors.saturating_sub(BACKUP_SECTORS) / first) * first;
    if end <= first {
        return Err(esp::too_small(
            format,
            &format!("a disk of {} MiB", disk.div_ceil(1 << 20)),
            c,
        ));
    }
    file.set_len(disk)?;
    esp::write(file, first * SECTOR, (end - first) * SECTOR, c, format)?;
    let mut w = file.try_clone()?;
    let mut gpt = GPT::new_from(&mut w, SECTOR, c.hash.guid("gpt disk")).map_err(gpt_err)?;
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: ESP_TYPE,
        unique_partition_guid: c.hash.guid("gpt esp"),
        starting_lba: first,
        ending_lba: end - 1,
        attribute_bits: 0,
        partition_name: "EFI system partition".into(),
    };
    gpt.write_into(&mut w).map_err(gpt_err)?;
    GPT::write_protective_mbr_into(&mut w, SECTOR).map_err(gpt_err)?;
    Ok(())
}
