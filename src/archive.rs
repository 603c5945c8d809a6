//! The entry model shared by every reader and writer of archives: one [`Entry`] per file
//! system object, with its full name, type, metadata and extended attributes, independent of
//! the tar header format it came from. Readers turn a tar stream into entries
//! ([`for_each_entry`]); writers are [`Sink`]s ([`TarSink`] here, the cpio writer of
//! `output::cpio`).
//!
//! Every output tar header is built fresh from an [`Entry`] (`Header::new_gnu()` plus the
//! fields), never reused from an input header: a reused ustar header keeps a stale name
//! prefix when its path is changed.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{EntryType, Header};

/// A path inside an archive: bytes, as Linux file names are.
pub type Name = Vec<u8>;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(Name),
    /// Hard link to an earlier entry of the same archive (a full path, not relative).
    Link(Name),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One file system object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path, no leading `/` or `./`, no trailing `/`.
    pub path: Name,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Content length; 0 for everything but regular files.
    pub size: u64,
    /// PAX records carried through unchanged (extended attributes and other records that
    /// are not part of the fields above), sorted by key.
    pub pax: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// A generated entry: uid/gid 0, no names, no extended attributes.
    pub fn new(path: impl Into<Name>, kind: Kind, mode: u32, mtime: u64, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            mtime,
            size,
            pax: Vec::new(),
        }
    }

    pub fn dir(path: impl Into<Name>, mode: u32, mtime: u64) -> Entry {
        Entry::new(path, Kind::Dir, mode, mtime, 0)
    }

    pub fn file(path: impl Into<Name>, mode: u32, mtime: u64, size: u64) -> Entry {
        Entry::new(path, Kind::File, mode, mtime, size)
    }

    pub fn symlink(path: impl Into<Name>, target: impl Into<Name>, mode: u32, mtime: u64) -> Entry {
        Entry::new(path, Kind::Symlink(target.into()), mode, mtime, 0)
    }

    /// The path for messages.
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Where entries go. `data` must yield exactly `entry.size` bytes for regular files.
pub trait Sink {
    fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()>;
}

/// Appends a generated entry with in-memory content.
pub fn append_bytes(sink: &mut dyn Sink, entry: &Entry, data: &[u8]) -> io::Result<()> {
    let mut r = data;
    sink.append(entry, &mut r)
}

/// A [`Sink`] writing a tar stream (GNU headers, GNU long names and link targets, PAX records
/// for extended attributes).
pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    pub fn new(w: W) -> TarSink<W> {
        let mut builder = tar::Builder::new(w);
        builder.mode(tar::HeaderMode::Complete);
        TarSink { builder }
    }

    /// Writes the end-of-archive blocks and returns the writer (not flushed or finished).
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn append(&mut self, e: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let mut h = Header::new_gnu();
        let (ty, size) = match &e.kind {
            Kind::File => (EntryType::Regular, e.size),
            Kind::Dir => (EntryType::Directory, 0),
            Kind::Symlink(_) => (EntryType::Symlink, 0),
            Kind::Link(_) => (EntryType::Link, 0),
            Kind::Char { .. } => (EntryType::Char, 0),
            Kind::Block { .. } => (EntryType::Block, 0),
            Kind::Fifo => (EntryType::Fifo, 0),
        };
        h.set_entry_type(ty);
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(size);
        if !e.uname.is_empty() {
            set_name_field(&mut h, true, &e.uname)?;
        }
        if !e.gname.is_empty() {
            set_name_field(&mut h, false, &e.gname)?;
        }
        if let Kind::Char { major, minor } | Kind::Block { major, minor } = e.kind {
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
        }
        if !e.pax.is_empty() {
            self.builder
                .append_pax_extensions(e.pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(&e.path));
        match &e.kind {
            Kind::Symlink(t) | Kind::Link(t) => {
                let target = Path::new(std::ffi::OsStr::from_bytes(t));
                self.builder.append_link(&mut h, path, target)
            }
            Kind::File => self.builder.append_data(
                &mut h,
                path,
                Exact {
                    inner: data,
                    left: size,
                },
            ),
            _ => self.builder.append_data(&mut h, path, io::empty()),
        }
    }
}

/// Yields exactly `left` bytes of `inner`, or fails: a short source must not produce an
/// archive whose header promises more than its data.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "content ended {} bytes short of its declared size",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Sets `uname`/`gname`; names longer than the 32-byte field are cut (GNU tar does the same).
fn set_name_field(h: &mut Header, user: bool, name: &[u8]) -> io::Result<()> {
    let gnu = h
        .as_gnu_mut()
        .ok_or_else(|| io::Error::other("not a GNU header"))?;
    let field = if user { &mut gnu.uname } else { &mut gnu.gname };
    let n = name.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&name[..n]);
    Ok(())
}

/// Why an input tar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the archive")]
    Io(#[from] io::Error),
    #[error("entry `{path}`: unsupported tar entry type {kind:?}")]
    Unsupported { path: String, kind: u8 },
}

/// Reads a tar stream and calls `f` for each entry with a reader of its content. Names come
/// from `entry.path()` (GNU long names and PAX `path` applied), never from the raw header.
/// PAX `uid`, `gid`, `uname`, `gname` and `mtime` override the header fields; other PAX
/// records (extended attributes) are kept in [`Entry::pax`]. PAX global headers are skipped.
/// Names are returned as stored; normalising them is the caller's business.
pub fn for_each_entry<R, E, F>(src: R, mut f: F) -> Result<(), E>
where
    R: Read,
    E: From<ReadError>,
    F: FnMut(Entry, &mut dyn Read) -> Result<(), E>,
{
    let mut ar = tar::Archive::new(src);
    let entries = ar.entries().map_err(ReadError::Io)?;
    for item in entries {
        let mut te = item.map_err(ReadError::Io)?;
        let entry = match convert(&mut te).map_err(E::from)? {
            Some(e) => e,
            None => continue,
        };
        f(entry, &mut te)?;
    }
    Ok(())
}

fn convert<R: Read>(te: &mut tar::Entry<'_, R>) -> Result<Option<Entry>, ReadError> {
    let h = te.header();
    let ty = h.entry_type();
    let path: Name = te.path_bytes().into_owned();
    let link = te
        .link_name_bytes()
        .map(|l| l.into_owned())
        .unwrap_or_default();
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    let kind = match ty {
        EntryType::Regular | EntryType::Continuous => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink(link),
        EntryType::Link => Kind::Link(link),
        EntryType::Char => Kind::Char { major, minor },
        EntryType::Block => Kind::Block { major, minor },
        EntryType::Fifo => Kind::Fifo,
        EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(ReadError::Unsupported {
                path: String::from_utf8_lossy(&path).into_owned(),
                kind: other.as_byte(),
            });
        }
    };
    let mut e = Entry {
        path,
        size: if kind == Kind::File { te.size() } else { 0 },
        kind,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        uname: h.username_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
        gname: h.groupname_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
        mtime: h.mtime().unwrap_or(0),
        pax: Vec::new(),
    };
    if let Some(exts) = te.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = String::from_utf8_lossy(ext.key_bytes()).into_owned();
            let value = ext.value_bytes();
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
            };
            match key.as_str() {
                // Applied by tar-rs already, or recomputed by every writer.
                "path" | "linkpath" | "size" | "atime" | "ctime" => {}
                "uid" => e.uid = num().unwrap_or(e.uid),
                "gid" => e.gid = num().unwrap_or(e.gid),
                "mtime" => e.mtime = num().unwrap_or(e.mtime),
                "uname" => e.uname = value.to_vec(),
                "gname" => e.gname = value.to_vec(),
                _ => e.pax.push((key, value.to_vec())),
            }
        }
        e.pax.sort();
    }
    Ok(Some(e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads every entry of an in-memory tar with its content.
    pub(crate) fn read_all(tar: &[u8]) -> Vec<(Entry, Vec<u8>)> {
        let mut out = Vec::new();
        for_each_entry::<_, ReadError, _>(tar, |e, r| {
            let mut data = Vec::new();
            r.read_to_end(&mut data)?;
            out.push((e, data));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn tar_sink_round_trips_every_kind() {
        let long = "d/".repeat(120) + "file";
        let target = "t/".repeat(100) + "x";
        let mut big = Entry::file(long.clone(), 0o4755, 7, 3);
        big.uid = 3_000_000;
        big.gid = 4_000_000;
        big.uname = "üser".as_bytes().to_vec();
        big.pax.push((
            "SCHILY.xattr.security.capability".into(),
            vec![1, 0, 0, 2, 0xff],
        ));
        let entries = vec![
            (Entry::dir("d", 0o755, 1), Vec::new()),
            (big, b"abc".to_vec()),
            (Entry::symlink("s", target.clone(), 0o777, 2), Vec::new()),
            (
                Entry::new("h", Kind::Link(long.clone().into_bytes()), 0o644, 3, 0),
                Vec::new(),
            ),
            (
                Entry::new("c", Kind::Char { major: 1, minor: 3 }, 0o666, 4, 0),
                Vec::new(),
            ),
            (
                Entry::new("b", Kind::Block { major: 8, minor: 1 }, 0o660, 5, 0),
                Vec::new(),
            ),
            (Entry::new("f", Kind::Fifo, 0o600, 6, 0), Vec::new()),
        ];
        let mut sink = TarSink::new(Vec::new());
        for (e, d) in &entries {
            append_bytes(&mut sink, e, d).unwrap();
        }
        let bytes = sink.finish().unwrap();
        let back = read_all(&bytes);
        assert_eq!(back, entries);
    }
}
