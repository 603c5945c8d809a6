//! The cpio "newc" writer (SPEC §6): a [`Sink`] that turns entries into the archive format
//! the Linux kernel unpacks as an initramfs (`070701` headers, 4-byte alignment, a
//! `TRAILER!!!` entry at the end).
//!
//! What newc cannot carry is handled here, never silently broken:
//! - hard links become relative symbolic links to their target (as LinuxKit does), so every
//!   entry has a link count of 1 and no two entries share an inode number;
//! - a file of 4 GiB or more, a uid, gid or time beyond 32 bits, a name or link target longer
//!   than the kernel accepts (`PATH_MAX`) are errors naming the entry;
//! - PAX records (extended attributes) are dropped; [`CpioSink::finish`] logs one warning that
//!   counts them.
//!
//! Inode numbers are a counter in entry order, so the same entries always give the same bytes.

use std::io::{self, Read, Write};

use crate::archive::{Entry, Exact, Kind, Sink, copy_body};

/// The kernel's `PATH_MAX`: names (with their NUL) and link targets must fit.
const PATH_MAX: usize = 4096;

const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

const TRAILER: &str = "TRAILER!!!";

/// Why an entry cannot go into a newc archive.
fn unfit(e: &Entry, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "`{}` cannot go into the initrd (cpio newc): {why}",
            e.display_path()
        ),
    )
}

/// Extended attributes and other PAX records dropped so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// PAX records dropped.
    pub records: u64,
    /// Entries that had any.
    pub entries: u64,
    /// The first entry that had any, for the warning.
    pub first: Option<String>,
}

/// A [`Sink`] writing a cpio newc archive to `W`.
pub struct CpioSink<W: Write> {
    out: Counting<W>,
    next_ino: u32,
    dropped: Dropped,
    /// Where file contents pass through ([`copy_body`]).
    body: Vec<u8>,
}

impl<W: Write> CpioSink<W> {
    pub fn new(out: W) -> CpioSink<W> {
        CpioSink {
            out: Counting::new(out),
            next_ino: 1,
            dropped: Dropped::default(),
            body: Vec::new(),
        }
    }

    /// What was dropped so far.
    pub fn dropped(&self) -> &Dropped {
        &self.dropped
    }

    /// Writes the trailer, logs the warning about dropped extended attributes (once, if any)
    /// and returns the writer (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.header(&Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rmajor: 0,
            rminor: 0,
            name: TRAILER.as_bytes(),
        })?;
        if self.dropped.records > 0 {
            log::warn!(
                "the initrd (cpio newc) cannot carry extended attributes: dropped {} PAX record(s) from {} entr{} (the first: `{}`)",
                self.dropped.records,
                self.dropped.entries,
                if self.dropped.entries == 1 {
                    "y"
                } else {
                    "ies"
                },
                self.dropped.first.as_deref().unwrap_or("")
            );
        }
        Ok(self.out.into_inner())
    }

    fn header(&mut self, h: &Header<'_>) -> io::Result<()> {
        let namesize = h.name.len() + 1;
        let text = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.size,
            0, // devmajor of the file system the file came from: meaningless here
            0,
            h.rmajor,
            h.rminor,
            namesize,
            0, // check: only for the crc format
        );
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(h.name)?;
        self.out.write_all(&[0])?;
        self.out.pad4()
    }
}

struct Header<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rmajor: u32,
    rminor: u32,
    name: &'a [u8],
}

/// The relative path from the directory holding `from` to `to` (both archive paths, relative
/// to the root, normalised): `usr/bin/b` → `usr/lib/a` gives `../lib/a`.
pub fn relative_link(from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut dir: Vec<&[u8]> = from.split(|b| *b == b'/').collect();
    dir.pop();
    let target: Vec<&[u8]> = to.split(|b| *b == b'/').collect();
    let common = dir.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = Vec::new();
    for _ in common..dir.len() {
        out.extend_from_slice(b"../");
    }
    for (i, c) in target[common..].iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

fn fit32(e: &Entry, what: &str, v: u64) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| unfit(e, format!("its {what} {v} does not fit in 32 bits")))
}

impl<W: Write> Sink for CpioSink<W> {
    fn append(&mut self, e: &Entry, data: &mut dyn Read) -> io::Result<()> {
        if e.path.len() + 1 > PATH_MAX {
            return Err(unfit(
                e,
                format!(
                    "its name is {} bytes long (at most {})",
                    e.path.len(),
                    PATH_MAX - 1
                ),
            ));
        }
        let uid = fit32(e, "uid", e.uid)?;
        let gid = fit32(e, "gid", e.gid)?;
        let mtime = fit32(e, "modification time", e.mtime)?;
        let perm = e.mode & 0o7777;
        let link_body;
        let (mode, size, rmajor, rminor, body): (u32, u64, u32, u32, Option<&[u8]>) = match &e.kind
        {
            Kind::File => (S_IFREG | perm, e.size, 0, 0, None),
            Kind::Dir => (S_IFDIR | perm, 0, 0, 0, None),
            Kind::Symlink(t) => (S_IFLNK | perm, t.len() as u64, 0, 0, Some(t.as_slice())),
            Kind::Link(t) => {
                link_body = relative_link(&e.path, t);
                (
                    S_IFLNK | 0o777,
                    link_body.len() as u64,
                    0,
                    0,
                    Some(link_body.as_slice()),
                )
            }
            Kind::Char { major, minor } => (S_IFCHR | perm, 0, *major, *minor, None),
            Kind::Block { major, minor } => (S_IFBLK | perm, 0, *major, *minor, None),
            Kind::Fifo => (S_IFIFO | perm, 0, 0, 0, None),
        };
        if let Some(b) = body
            && b.len() >= PATH_MAX
        {
            return Err(unfit(
                e,
                format!(
                    "its link target is {} bytes long (at most {})",
                    b.len(),
                    PATH_MAX - 1
                ),
            ));
        }
        if size > u64::from(u32::MAX) {
            return Err(unfit(
                e,
                format!("it is {size} bytes long; newc holds files under 4 GiB"),
            ));
        }
        if !e.pax.is_empty() {
            self.dropped.records += e.pax.len() as u64;
            self.dropped.entries += 1;
            if self.dropped.first.is_none() {
                self.dropped.first = Some(e.display_path());
            }
        }
        let ino = self.next_ino;
        self.next_ino = self
            .next_ino
            .checked_add(1)
            .ok_or_else(|| unfit(e, "the archive already holds 2^32 - 1 entries".to_string()))?;
        self.header(&Header {
            ino,
            mode,
            uid,
            gid,
            nlink: if e.kind == Kind::Dir { 2 } else { 1 },
            mtime,
            size: size as u32,
            rmajor,
            rminor,
            name: &e.path,
        })?;
        match body {
            Some(b) => self.out.write_all(b)?,
            None if e.kind == Kind::File => {
                copy_body(
                    &mut self.out,
                    &mut Exact::new(e, data),
                    e.size,
                    &mut self.body,
                )?;
            }
            None => {}
        }
        self.out.pad4()
    }
}

/// Counts the bytes written through it, so that they can be padded with zeros to a multiple
/// of 4 ([`Counting::pad4`]): the alignment of newc records, and of the initrd (LinuxKit's
/// `pad4` writer around the compressed archive and after the microcode).
pub(crate) struct Counting<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Counting<W> {
    pub(crate) fn new(inner: W) -> Counting<W> {
        Counting { inner, written: 0 }
    }

    /// Writes zeros up to the next multiple of 4 bytes.
    pub(crate) fn pad4(&mut self) -> io::Result<()> {
        let n = ((4 - self.written % 4) % 4) as usize;
        self.write_all(&[0u8; 3][..n])
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }

    /// Bytes written through it so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::append_bytes;

    /// One parsed newc record.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Rec {
        pub ino: u32,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub nlink: u32,
        pub mtime: u32,
        pub rmajor: u32,
        pub rminor: u32,
        pub name: String,
        pub data: Vec<u8>,
    }

    /// A strict newc reader for tests: checks magic, alignment and the trailer.
    pub(crate) fn parse(mut b: &[u8]) -> Vec<Rec> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            let off = total - b.len();
            assert_eq!(off % 4, 0, "record at unaligned offset {off}");
            assert_eq!(&b[..6], b"070701", "bad magic at {off}");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (ino, mode, uid, gid, nlink, mtime, size) = (
                field(0),
                field(1),
                field(2),
                field(3),
                field(4),
                field(5),
                field(6),
            );
            let (rmajor, rminor, namesize) = (field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            assert_eq!(b[name_end - 1], 0, "name not NUL-terminated");
            let name = String::from_utf8(b[110..name_end - 1].to_vec()).unwrap();
            let data_start = (name_end + 3) & !3;
            let data_end = data_start + size as usize;
            let data = b[data_start..data_end].to_vec();
            b = &b[(data_end + 3) & !3..];
            if name == TRAILER {
                assert!(b.is_empty(), "bytes after the trailer");
                return out;
            }
            out.push(Rec {
                ino,
                mode,
                uid,
                gid,
                nlink,
                mtime,
                rmajor,
                rminor,
                name,
                data,
            });
        }
    }

    fn cpio_of(entries: &[(Entry, &[u8])]) -> io::Result<Vec<u8>> {
        let mut s = CpioSink::new(Vec::new());
        for (e, d) in entries {
            append_bytes(&mut s, e, d)?;
        }
        s.finish()
    }

    #[test]
    fn writes_every_kind() {
        let mut f = Entry::file("usr/bin/a", 0o4755, 1_492_533_000, 5);
        f.uid = 7;
        f.gid = 8;
        let entries: Vec<(Entry, &[u8])> = vec![
            (Entry::dir("usr", 0o755, 1), b""),
            (Entry::dir("usr/bin", 0o700, 1), b""),
            (f, b"hello"),
            (
                Entry::new("usr/bin/b", Kind::Link(b"usr/bin/a".to_vec()), 0o755, 2, 0),
                b"",
            ),
            (Entry::symlink("bin", "usr/bin", 0o777, 3), b""),
            (
                Entry::new("dev/null", Kind::Char { major: 1, minor: 3 }, 0o666, 4, 0),
                b"",
            ),
            (
                Entry::new("dev/sda", Kind::Block { major: 8, minor: 0 }, 0o660, 4, 0),
                b"",
            ),
            (Entry::new("p", Kind::Fifo, 0o600, 4, 0), b""),
        ];
        let recs = parse(&cpio_of(&entries).unwrap());
        let names: Vec<&str> = recs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "usr",
                "usr/bin",
                "usr/bin/a",
                "usr/bin/b",
                "bin",
                "dev/null",
                "dev/sda",
                "p"
            ]
        );
        assert_eq!(recs[0].mode, 0o040755);
        assert_eq!(recs[0].nlink, 2);
        assert_eq!(recs[2].mode, 0o104755);
        assert_eq!((recs[2].uid, recs[2].gid), (7, 8));
        assert_eq!(recs[2].mtime, 1_492_533_000);
        assert_eq!(recs[2].data, b"hello");
        assert_eq!(recs[2].nlink, 1);
        assert_eq!(recs[3].mode, 0o120777, "hard link became a symlink");
        assert_eq!(recs[3].data, b"a");
        assert_eq!(recs[4].data, b"usr/bin");
        assert_eq!(
            (recs[5].mode, recs[5].rmajor, recs[5].rminor),
            (0o020666, 1, 3)
        );
        assert_eq!((recs[6].mode, recs[6].rmajor), (0o060660, 8));
        assert_eq!(recs[7].mode, 0o010600);
        let inos: Vec<u32> = recs.iter().map(|r| r.ino).collect();
        assert_eq!(inos, (1..=8).collect::<Vec<u32>>());
    }

    #[test]
    fn relative_links() {
        let rel = |a: &str, b: &str| String::from_utf8(relative_link(a.as_bytes(), b.as_bytes()));
        assert_eq!(rel("usr/bin/b", "usr/bin/a").unwrap(), "a");
        assert_eq!(rel("usr/bin/b", "usr/lib/x/a").unwrap(), "../lib/x/a");
        assert_eq!(rel("b", "usr/a").unwrap(), "usr/a");
        assert_eq!(rel("x/y/z/b", "a").unwrap(), "../../../a");
        assert_eq!(rel("ab/c", "a/c").unwrap(), "../a/c");
    }

    #[test]
    fn refuses_what_newc_cannot_hold() {
        let big = Entry::file("big", 0o644, 1, 1 << 32);
        let err = CpioSink::new(Vec::new())
            .append(&big, &mut io::empty())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`big`") && err.contains("4 GiB"), "{err}");
        let mut uid = Entry::file("u", 0o644, 1, 0);
        uid.uid = 1 << 32;
        let err = cpio_of(&[(uid, b"")]).unwrap_err().to_string();
        assert!(err.contains("`u`") && err.contains("uid"), "{err}");
        let mut gid = Entry::dir("g", 0o755, 1);
        gid.gid = u64::MAX;
        assert!(cpio_of(&[(gid, b"")]).is_err());
        let time = Entry::dir("t", 0o755, 1 << 33);
        let err = cpio_of(&[(time, b"")]).unwrap_err().to_string();
        assert!(err.contains("modification time"), "{err}");
        let long = Entry::file("a/".repeat(2048), 0o644, 1, 0);
        assert!(cpio_of(&[(long, b"")]).is_err());
        let target = Entry::symlink("l", "x".repeat(4096), 0o777, 1);
        assert!(cpio_of(&[(target, b"")]).is_err());
        // the limits themselves are fine
        let mut edge = Entry::file("e", 0o644, u64::from(u32::MAX), 0);
        edge.uid = u64::from(u32::MAX);
        assert_eq!(parse(&cpio_of(&[(edge, b"")]).unwrap())[0].uid, u32::MAX);
    }

    #[test]
    fn short_content_is_an_error() {
        let e = Entry::file("f", 0o644, 1, 10);
        let err = cpio_of(&[(e, b"abc")]).unwrap_err().to_string();
        assert!(
            err.contains("`f`") && err.contains("7 bytes short"),
            "{err}"
        );
    }

    #[test]
    fn counts_dropped_extended_attributes() {
        let mut a = Entry::file("a", 0o755, 1, 0);
        a.pax = vec![
            ("SCHILY.xattr.security.capability".into(), vec![1, 2]),
            ("SCHILY.xattr.user.x".into(), b"y".to_vec()),
        ];
        let mut b = Entry::dir("b", 0o755, 1);
        b.pax = vec![("SCHILY.xattr.user.z".into(), b"1".to_vec())];
        let mut s = CpioSink::new(Vec::new());
        append_bytes(&mut s, &a, b"").unwrap();
        append_bytes(&mut s, &b, b"").unwrap();
        append_bytes(&mut s, &Entry::dir("c", 0o755, 1), b"").unwrap();
        assert_eq!(
            s.dropped(),
            &Dropped {
                records: 3,
                entries: 2,
                first: Some("a".into())
            }
        );
        let recs = parse(&s.finish().unwrap());
        assert_eq!(recs.len(), 3);
    }

    #[test]
    fn same_entries_same_bytes() {
        let entries: Vec<(Entry, &[u8])> = vec![
            (Entry::dir("d", 0o755, 1), b""),
            (Entry::file("d/f", 0o644, 1, 3), b"abc"),
        ];
        assert_eq!(cpio_of(&entries).unwrap(), cpio_of(&entries).unwrap());
    }
}
