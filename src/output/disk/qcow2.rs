//! `qcow2-efi`: the raw disk of `raw-efi` converted to qcow2 (version 3, 64 KiB clusters,
//! 16-bit refcounts, no compression, no backing file), written by hand: the format is small
//! (header, refcount table and blocks, L1 and L2 tables, data) and the one crate that writes
//! it (imago) orders its header extensions from a `HashMap`, so its bytes vary between runs
//! (notes/crates.md §9.2).
//!
//! Only clusters holding a non-zero byte are stored, in guest order; everything is laid out
//! before the first byte is written, so the image is written front to back in one pass
//! after one scan of the raw disk. Memory: one bit per guest cluster and one cluster buffer.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// L2 entries per table, refcounts per block (16-bit).
const L2_ENTRIES: u64 = CLUSTER / 8;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// "Refcount is exactly one": set on L1 and L2 entries of clusters used once.
const COPIED: u64 = 1 << 63;
const HEADER_LEN: u32 = 104;

/// Reads `buf.len()` bytes, or fewer at the end of the file (the rest zeroed).
fn read_cluster(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[n..].fill(0);
    Ok(())
}

/// Where everything goes, in host clusters.
struct Layout {
    virtual_size: u64,
    /// Guest clusters holding data.
    used: Vec<u64>,
    refcount_table: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    l1: u64,
    l1_entries: u64,
    l1_clusters: u64,
    /// L2 tables in L1 order: (L1 index, host cluster).
    l2: Vec<(u64, u64)>,
    data: u64,
    total: u64,
}

impl Layout {
    fn new(virtual_size: u64, used_bits: &[u64]) -> Layout {
        let guest = virtual_size.div_ceil(CLUSTER);
        let is_used = |c: u64| used_bits[(c / 64) as usize] >> (c % 64) & 1 == 1;
        let l1_entries = guest.div_ceil(L2_ENTRIES);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
        let mut l2_tables: Vec<u64> = Vec::new();
        let mut data_count = 0;
        for i in 0..l1_entries {
            let from = i * L2_ENTRIES;
            let to = (from + L2_ENTRIES).min(guest);
            let n = (from..to).filter(|c| is_used(*c)).count() as u64;
            if n > 0 {
                l2_tables.push(i);
                data_count += n;
            }
        }
        // The refcount structures cover every cluster, themselves included: grow them
        // until they do.
        let fixed = 1 + l1_clusters + l2_tables.len() as u64 + data_count;
        let (mut rt, mut rb) = (1u64, 1u64);
        loop {
            let total = fixed + rt + rb;
            let need_rb = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let need_rt = (need_rb * 8).div_ceil(CLUSTER);
            if need_rb <= rb && need_rt <= rt {
                break;
            }
            rb = rb.max(need_rb);
            rt = rt.max(need_rt);
        }
        let refcount_table = 1;
        let first_rb = refcount_table + rt;
        let l1 = first_rb + rb;
        let first_l2 = l1 + l1_clusters;
        let l2: Vec<(u64, u64)> = l2_tables
            .iter()
            .enumerate()
            .map(|(k, i)| (*i, first_l2 + k as u64))
            .collect();
        let data = first_l2 + l2.len() as u64;
        let used = (0..guest).filter(|c| is_used(*c)).collect();
        Layout {
            virtual_size,
            used,
            refcount_table,
            refcount_table_clusters: rt,
            refcount_blocks: rb,
            l1,
            l1_entries,
            l1_clusters,
            l2,
            data,
            total: data + data_count,
        }
    }

    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN as usize);
        h.extend_from_slice(b"QFI\xfb");
        h.extend_from_slice(&3u32.to_be_bytes()); // version
        h.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
        h.extend_from_slice(&0u32.to_be_bytes()); // backing file size
        h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
        h.extend_from_slice(&self.virtual_size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // encryption
        h.extend_from_slice(&(self.l1_entries as u32).to_be_bytes());
        h.extend_from_slice(&(self.l1 * CLUSTER).to_be_bytes());
        h.extend_from_slice(&(self.refcount_table * CLUSTER).to_be_bytes());
        h.extend_from_slice(&(self.refcount_table_clusters as u32).to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // snapshots
        h.extend_from_slice(&0u64.to_be_bytes()); // snapshots offset
        h.extend_from_slice(&0u64.to_be_bytes()); // incompatible features
        h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
        h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
        h.extend_from_slice(&4u32.to_be_bytes()); // refcount order: 16 bits
        h.extend_from_slice(&HEADER_LEN.to_be_bytes());
        h
    }
}

/// Writes whole clusters of big-endian u64 / u16 values, zero-padded.
struct Clusters<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
}

impl<W: Write> Clusters<'_, W> {
    fn push(&mut self, b: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() as u64 == CLUSTER {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
    /// Pads to `clusters` clusters written in all since `start` (counted by the caller).
    fn pad_to_cluster(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.buf.resize(CLUSTER as usize, 0);
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Converts the raw disk `raw` into a qcow2 image written to `out`.
pub fn convert(raw: &File, out: &mut impl Write) -> io::Result<()> {
    let mut r = raw.try_clone()?;
    let virtual_size = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let guest = virtual_size.div_ceil(CLUSTER);
    let mut bits = vec![0u64; guest.div_ceil(64) as usize];
    let mut buf = vec![0u8; CLUSTER as usize];
    let mut r = io::BufReader::with_capacity(CLUSTER as usize, r);
    for c in 0..guest {
        read_cluster(&mut r, &mut buf)?;
        if buf.iter().any(|b| *b != 0) {
            bits[(c / 64) as usize] |= 1 << (c % 64);
        }
    }
    let l = Layout::new(virtual_size, &bits);
    drop(bits);

    let mut w = Clusters {
        out,
        buf: Vec::with_capacity(CLUSTER as usize),
    };
    // header
    w.push(&l.header())?;
    w.pad_to_cluster()?;
    // refcount table: the refcount blocks
    for k in 0..l.refcount_blocks {
        w.push(&((l.refcount_table + l.refcount_table_clusters + k) * CLUSTER).to_be_bytes())?;
    }
    w.pad_to_cluster()?;
    // refcount blocks: 1 for every cluster of the image
    for c in 0..l.refcount_blocks * REFCOUNTS_PER_BLOCK {
        w.push(&u16::from(c < l.total).to_be_bytes())?;
    }
    w.pad_to_cluster()?;
    // L1
    let mut l2 = l.l2.iter().peekable();
    for i in 0..l.l1_entries {
        let e = match l2.peek() {
            Some((idx, host)) if *idx == i => {
                l2.next();
                (host * CLUSTER) | COPIED
            }
            _ => 0,
        };
        w.push(&e.to_be_bytes())?;
    }
    for _ in l.l1_entries..l.l1_clusters * L2_ENTRIES {
        w.push(&0u64.to_be_bytes())?;
    }
    w.pad_to_cluster()?;
    // L2 tables: data clusters numbered in guest order
    let mut next = 0usize;
    for (i, _) in &l.l2 {
        for c in i * L2_ENTRIES..(i + 1) * L2_ENTRIES {
            let e = if l.used.get(next) == Some(&c) {
                next += 1;
                ((l.data + next as u64 - 1) * CLUSTER) | COPIED
            } else {
                0
            };
            w.push(&e.to_be_bytes())?;
        }
    }
    w.pad_to_cluster()?;
    // data
    let mut r = raw.try_clone()?;
    for c in &l.used {
        r.seek(SeekFrom::Start(c * CLUSTER))?;
        read_cluster(&mut r, &mut buf)?;
        w.out.write_all(&buf)?;
    }
    w.out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// qemu-img checks the image and reads it back as the raw disk.
    #[test]
    fn qemu_img_reads_back_the_raw_disk() {
        let d = tempfile::tempdir().unwrap();
        let raw_path = d.path().join("disk.raw");
        let raw = File::create_new(&raw_path).unwrap();
        // 600 MiB: two L2 tables' worth of guest clusters (8192 × 64 KiB = 512 MiB each).
        raw.set_len(600 << 20).unwrap();
        raw.write_all_at(b"start", 0).unwrap();
        raw.write_all_at(&[1u8; 100_000], 5 << 20).unwrap();
        raw.write_all_at(b"end", (600 << 20) - 3).unwrap();
        let q = d.path().join("disk.qcow2");
        let mut out = io::BufWriter::new(File::create_new(&q).unwrap());
        convert(&raw, &mut out).unwrap();
        drop(out);
        let check = std::process::Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&q)
            .output()
            .expect("qemu-img (apt-get install qemu-utils)");
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let cmp = std::process::Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "raw"])
            .arg(&q)
            .arg(&raw_path)
            .output()
            .unwrap();
        assert!(
            cmp.status.success(),
            "{}{}",
            String::from_utf8_lossy(&cmp.stdout),
            String::from_utf8_lossy(&cmp.stderr)
        );
        // header, refcount table, 1 refcount block, L1, 2 L2 tables, 4 data clusters
        // (100 000 bytes from 5 MiB span two)
        assert_eq!(std::fs::metadata(&q).unwrap().len(), 10 * CLUSTER);
    }
}
