//! The entry model shared by every reader and writer of archives: one [`Entry`] per file
//! system object, with its full name, type, metadata and extended attributes, independent of
//! the tar header format it came from. Readers turn a tar stream into entries
//! ([`for_each_entry`]); writers are [`Sink`]s ([`TarSink`] here, the cpio writer of
//! `output::cpio`).
//!
//! Every output tar header is built fresh from an [`Entry`] (`Header::new_gnu()` plus the
//! fields), never reused from an input header: a reused ustar header keeps a stale name
//! prefix when its path is changed.

use std::fs::File;
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

    /// Appends the entries a [`TarSink`] writes into `spool` (without end-of-archive
    /// blocks), as they come: the executor places images ahead of their turn this way. The
    /// result is the same as appending each entry here; the default reads them back and does
    /// just that, and a sink that writes a tar as it is takes the bytes whole instead
    /// ([`take_spool`]).
    fn append_tar(&mut self, spool: &mut dyn Spool) -> io::Result<()> {
        for_each_entry::<_, io::Error, _>(spool, |e, data| self.append(&e, data))
    }
}

/// Tar bytes written elsewhere (by another thread), readable while they grow: [`Read`]
/// gives them in order, waiting for more until the end.
pub trait Spool: Read {
    /// The next run of bytes. Waits until there are some; `None` at the end.
    fn next_piece(&mut self) -> io::Result<Option<Piece>>;
}

/// A run of a [`Spool`]'s bytes.
pub enum Piece {
    /// A range of a file: a handle whose offset is at its start, and its length.
    Range(File, u64),
    /// Bytes handed over in memory.
    Bytes(Vec<u8>),
}

/// Moves every byte of `spool` into `w`, piece by piece: file ranges with
/// [`TakeFile::take_file`], bytes in memory with `write_all`.
pub fn take_spool<W: TakeFile + ?Sized>(w: &mut W, spool: &mut dyn Spool) -> io::Result<()> {
    while let Some(piece) = spool.next_piece()? {
        match piece {
            Piece::Range(file, len) => w.take_file(file, len)?,
            Piece::Bytes(bytes) => w.write_all(&bytes)?,
        }
    }
    Ok(())
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// A [`Write`] that can take `len` bytes of a file from its current offset; the default
/// copies them through memory, an output file overrides it to copy inside the kernel.
pub trait TakeFile: Write {
    fn take_file(&mut self, file: File, len: u64) -> io::Result<()> {
        let n = io::copy(&mut file.take(len), self)?;
        if n != len {
            return Err(short_file(n, len));
        }
        Ok(())
    }
}

/// The error of a file that [`TakeFile::take_file`] found shorter than `len`.
pub fn short_file(got: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("spool file ended after {got} of {len} bytes"),
    )
}

impl TakeFile for Vec<u8> {}
impl TakeFile for io::Stdout {}
/// `io::copy` between two files is `copy_file_range`: the bytes stay in the kernel.
impl TakeFile for File {}

/// Appends a generated entry with in-memory content.
pub fn append_bytes(sink: &mut dyn Sink, entry: &Entry, data: &[u8]) -> io::Result<()> {
    let mut r = data;
    sink.append(entry, &mut r)
}

/// A [`Sink`] writing a tar stream (GNU headers, GNU long names and link targets, PAX records
/// for extended attributes).
pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    /// Where file contents pass through, grown to at most [`BODY`] bytes by the first file
    /// that needs it.
    body: Vec<u8>,
}

/// Bytes of a file's content moved per read and write. tar-rs copies contents through an
/// 8 KiB stack buffer; measured on a warm build of the benchmark's spec (everything from
/// the cache), that buffer was one of four copies of every byte and a call per 8 KiB.
pub const BODY: usize = 128 << 10;

impl<W: Write> TarSink<W> {
    pub fn new(w: W) -> TarSink<W> {
        let mut builder = tar::Builder::new(w);
        builder.mode(tar::HeaderMode::Complete);
        TarSink {
            builder,
            body: Vec::new(),
        }
    }

    /// Writes the end-of-archive blocks and returns the writer (not flushed or finished).
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    /// The writer the entries go to.
    pub fn get_mut(&mut self) -> &mut W {
        self.builder.get_mut()
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
                // Link targets are written byte for byte: tar-rs's `append_link` would
                // normalise them as paths (`//x` → `/x`, `a/` → `a`).
                if t.contains(&0) {
                    return Err(io::Error::other("link target contains a NUL byte"));
                }
                let field = h.as_old().linkname.len();
                if t.len() > field {
                    let mut k = Header::new_gnu();
                    k.set_entry_type(EntryType::GNULongLink);
                    k.set_mode(0o644);
                    k.set_size(t.len() as u64 + 1);
                    if let Some(g) = k.as_gnu_mut() {
                        g.name[..13].copy_from_slice(b"././@LongLink");
                    }
                    k.set_cksum();
                    self.builder.append(&k, t.as_slice().chain(&[0u8][..]))?;
                }
                h.set_link_name_literal(&t[..t.len().min(field)])?;
                self.builder.append_data(&mut h, path, io::empty())
            }
            Kind::File => {
                // The header alone (tar-rs pads the content it copied: none), then the
                // content in large pieces and its padding.
                self.builder.append_data(&mut h, path, io::empty())?;
                let w = self.builder.get_mut();
                copy_body(w, &mut Exact::new(e, data), e.size, &mut self.body)?;
                w.write_all(&[0u8; BLOCK][..padding(e.size) as usize])
            }
            _ => self.builder.append_data(&mut h, path, io::empty()),
        }
    }
}

/// Copies `size` bytes of `data` (which fails rather than end short) to `w` through `buf`,
/// in pieces of at most [`BODY`] bytes.
pub fn copy_body<W>(w: &mut W, data: &mut dyn Read, size: u64, buf: &mut Vec<u8>) -> io::Result<()>
where
    W: Write + ?Sized,
{
    let want = usize::try_from(size).unwrap_or(usize::MAX).min(BODY);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut left = size;
    while left > 0 {
        let max = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = match data.read(&mut buf[..max]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Yields exactly `entry.size` bytes of an entry's content, or fails naming the entry: a short
/// source must not produce an archive whose header promises more than its data.
pub(crate) struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    path: &'a [u8],
}

impl<'a> Exact<'a> {
    pub(crate) fn new(entry: &'a Entry, inner: &'a mut dyn Read) -> Exact<'a> {
        Exact {
            inner,
            left: entry.size,
            path: &entry.path,
        }
    }
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
                    "`{}`: content ended {} bytes short of its declared size",
                    String::from_utf8_lossy(self.path),
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
    #[error("entry `{path}`: unsupported tar entry type `{}`", *kind as char)]
    Unsupported { path: String, kind: u8 },
    #[error("malformed tar header at byte {offset}: {why}")]
    Header { offset: u64, why: &'static str },
    #[error("entry `{path}`: malformed PAX record: {why}")]
    Pax { path: String, why: &'static str },
}

const BLOCK: usize = 512;

/// Reads a tar stream and calls `f` for each entry with a reader of its content.
///
/// This is imagesmith's own reader (tar-rs is used for writing only): it applies GNU long
/// names (`L`, `K`) and PAX records (`path`, `linkpath`, `size`, `uid`, `gid`, `uname`,
/// `gname`, `mtime`) to the entry, keeps every other PAX record (extended attributes) in
/// [`Entry::pax`], skips PAX global headers, and parses PAX records by their length prefix,
/// so binary values (a `security.capability` holding a newline byte) are read correctly —
/// tar-rs splits records at newlines and loses them and the records after them. Names are
/// returned as stored; normalising them is the caller's business. Sparse files and unknown
/// entry types are errors, never silently dropped.
pub fn for_each_entry<R, E, F>(src: R, mut f: F) -> Result<(), E>
where
    R: Read,
    E: From<ReadError>,
    F: FnMut(Entry, &mut dyn Read) -> Result<(), E>,
{
    let mut r = io::BufReader::with_capacity(128 * 1024, src);
    let mut offset: u64 = 0;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<Vec<u8>> = None;
    loop {
        let mut h = [0u8; BLOCK];
        if !read_block(&mut r, &mut h).map_err(ReadError::Io)? {
            return Ok(()); // end of stream without end-of-archive blocks: accepted
        }
        let here = offset;
        offset += BLOCK as u64;
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive
        }
        check_sum(&h).map_err(|why| ReadError::Header { offset: here, why })?;
        let bad = |why| ReadError::Header { offset: here, why };
        let mut size = number(&h[124..136]).ok_or_else(|| bad("bad size"))?;
        let ty = h[156];
        match ty {
            b'x' | b'g' | b'L' | b'K' => {
                if size > 1 << 24 {
                    return Err(bad("extension header larger than 16 MiB").into());
                }
                let mut data = vec![0u8; size as usize];
                r.read_exact(&mut data).map_err(ReadError::Io)?;
                skip(&mut r, padding(size)).map_err(ReadError::Io)?;
                offset += size + padding(size);
                match ty {
                    b'x' => pax = Some(data),
                    b'L' => long_name = Some(trim_nul(&data).to_vec()),
                    b'K' => long_link = Some(trim_nul(&data).to_vec()),
                    _ => {} // global PAX header: not part of any entry
                }
                continue;
            }
            _ => {}
        }
        let ustar = &h[257..263] == b"ustar\0";
        let mut path = match long_name.take() {
            Some(n) => n,
            None if ustar && h[345] != 0 => {
                let mut p = trim_nul(&h[345..500]).to_vec();
                p.push(b'/');
                p.extend_from_slice(trim_nul(&h[0..100]));
                p
            }
            None => trim_nul(&h[0..100]).to_vec(),
        };
        let mut link = long_link
            .take()
            .unwrap_or_else(|| trim_nul(&h[157..257]).to_vec());
        let num = |range: std::ops::Range<usize>, why| number(&h[range]).ok_or_else(|| bad(why));
        let mut e = Entry {
            path: Vec::new(),
            kind: Kind::File,
            mode: (num(100..108, "bad mode")? & 0o7777) as u32,
            uid: num(108..116, "bad uid")?,
            gid: num(116..124, "bad gid")?,
            uname: trim_nul(&h[265..297]).to_vec(),
            gname: trim_nul(&h[297..329]).to_vec(),
            mtime: num(136..148, "bad mtime")?,
            size: 0,
            pax: Vec::new(),
        };
        if let Some(records) = pax.take() {
            // Messages name the entry by its header's path (a `path` record applies after).
            let shown = || String::from_utf8_lossy(&path).into_owned();
            let pax_error = |why| ReadError::Pax { path: shown(), why };
            let mut pax_path = None;
            for (key, value) in pax_records(&records).map_err(pax_error)? {
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
                        .ok_or_else(|| pax_error("bad number"))
                };
                match key {
                    b"path" => pax_path = Some(value.to_vec()),
                    b"linkpath" => link = value.to_vec(),
                    b"size" => size = num()?,
                    b"uid" => e.uid = num()?,
                    b"gid" => e.gid = num()?,
                    b"mtime" => e.mtime = num()?,
                    b"uname" => e.uname = value.to_vec(),
                    b"gname" => e.gname = value.to_vec(),
                    b"atime" | b"ctime" => {}
                    k if k.starts_with(b"GNU.sparse.") => {
                        return Err(ReadError::Unsupported {
                            path: shown(),
                            kind: b'S',
                        }
                        .into());
                    }
                    k => e
                        .pax
                        .push((String::from_utf8_lossy(k).into_owned(), value.to_vec())),
                }
            }
            if let Some(p) = pax_path {
                path = p;
            }
            e.pax.sort();
        }
        let (major, minor) = (
            u32::try_from(num(329..337, "bad device major").unwrap_or(0)).unwrap_or(u32::MAX),
            u32::try_from(num(337..345, "bad device minor").unwrap_or(0)).unwrap_or(u32::MAX),
        );
        e.kind = match ty {
            b'0' | 0 | b'7' => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink(link),
            b'1' => Kind::Link(link),
            b'3' => Kind::Char { major, minor },
            b'4' => Kind::Block { major, minor },
            b'6' => Kind::Fifo,
            other => {
                return Err(ReadError::Unsupported {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    kind: other,
                }
                .into());
            }
        };
        // Old tars mark directories with a trailing slash on a regular entry.
        if e.kind == Kind::File && ty == 0 && path.ends_with(b"/") {
            e.kind = Kind::Dir;
        }
        e.path = path;
        // Links, devices and fifos never carry data (their size field is ignored, as in
        // POSIX); a directory's declared size, if any, is skipped.
        let data_size = if matches!(ty, b'1' | b'2' | b'3' | b'4' | b'6') {
            0
        } else {
            size
        };
        e.size = if e.kind == Kind::File { size } else { 0 };
        let mut data = (&mut r).take(data_size);
        f(e, &mut data)?;
        let rest = data.limit();
        skip(&mut r, rest + padding(data_size)).map_err(ReadError::Io)?;
        offset += data_size + padding(data_size);
    }
}

/// Reads one block; `false` at a clean end of stream.
fn read_block(r: &mut impl Read, buf: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut n = 0;
    while n < BLOCK {
        match r.read(&mut buf[n..]) {
            Ok(0) if n == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated tar header",
                ));
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated tar entry",
        ));
    }
    Ok(())
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|c| *c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// A numeric header field: octal text (space/NUL padded) or GNU base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ');
    let mut v: u64 = 0;
    let mut any = false;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    if any || field.iter().all(|b| *b == 0 || *b == b' ') {
        Some(v)
    } else {
        None
    }
}

fn check_sum(h: &[u8; BLOCK]) -> Result<(), &'static str> {
    let want = number(&h[148..156]).ok_or("bad checksum field")?;
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(*b)
            }
        })
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(*b as i8)
            }
        })
        .sum();
    if want == unsigned || i64::try_from(want).is_ok_and(|w| w == signed) {
        Ok(())
    } else {
        Err("checksum mismatch")
    }
}

/// One PAX record: key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// PAX records `"<len> <key>=<value>\n"`, split by their length prefix (values may hold any
/// byte, including newlines).
fn pax_records(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, &'static str> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|b| *b == 0) {
            break; // padding some writers leave
        }
        let sp = data.iter().position(|b| *b == b' ').ok_or("no length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or("bad length")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("length does not match the record");
        }
        let record = &data[sp + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=').ok_or("no `=`")?;
        out.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
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

    /// A reader yielding at most `step` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn contents_larger_than_a_body_piece_are_written_as_tar_rs_writes_them() {
        for size in [0, 1, 511, 512, BODY - 1, BODY, 2 * BODY + 700] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let e = Entry::file("dir/f", 0o644, 9, size as u64);
            let mut sink = TarSink::new(Vec::new());
            sink.append(&e, &mut Trickle(&data, 100_003)).unwrap();
            let ours = sink.finish().unwrap();
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(9);
            h.set_size(size as u64);
            h.set_uid(0);
            h.set_gid(0);
            let mut b = tar::Builder::new(Vec::new());
            b.mode(tar::HeaderMode::Complete);
            b.append_data(&mut h, "dir/f", data.as_slice()).unwrap();
            assert!(ours == b.into_inner().unwrap(), "size {size}");
            assert_eq!(read_all(&ours), vec![(e, data)]);
        }
    }

    #[test]
    fn a_short_content_is_an_error_naming_the_entry() {
        let mut sink = TarSink::new(Vec::new());
        let e = Entry::file("dir/f", 0o644, 9, BODY as u64 + 10);
        let err = sink.append(&e, &mut &[1u8; BODY][..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string()
                .contains("`dir/f`: content ended 10 bytes short"),
            "{err}"
        );
    }

    #[test]
    fn pax_records_with_newlines_and_paths() {
        let long = "p/".repeat(90) + "f";
        let mut b = tar::Builder::new(Vec::new());
        let cap: &[u8] = &[
            1, 0, 0, 2, b'\n', 0, 0, 0, b'\n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        b.append_pax_extensions([
            ("SCHILY.xattr.security.capability", cap),
            ("gid", b"5000000000".as_slice()),
            ("mtime", b"1577836800.123456".as_slice()),
            ("path", long.as_bytes()),
            ("uid", b"4000000000".as_slice()),
        ])
        .unwrap();
        let mut h = Header::new_ustar();
        h.set_path("short").unwrap();
        h.set_size(2);
        h.set_mode(0o755);
        h.set_entry_type(EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"ok"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let all = read_all(&tar);
        assert_eq!(all.len(), 1);
        let (e, data) = &all[0];
        assert_eq!(e.path, long.as_bytes());
        assert_eq!(
            (e.uid, e.gid, e.mtime),
            (4_000_000_000, 5_000_000_000, 1_577_836_800)
        );
        assert_eq!(
            e.pax,
            vec![("SCHILY.xattr.security.capability".to_string(), cap.to_vec())]
        );
        assert_eq!(data, b"ok");
    }

    #[test]
    fn malformed_archives_are_errors_not_panics() {
        let mut sink = TarSink::new(Vec::new());
        append_bytes(&mut sink, &Entry::file("a", 0o644, 1, 3), b"abc").unwrap();
        let good = sink.finish().unwrap();
        // truncated data
        let cut = &good[..512 + 2];
        assert!(
            for_each_entry::<_, ReadError, _>(cut, |_, r| {
                io::copy(r, &mut io::sink())?;
                Ok(())
            })
            .is_err()
        );
        // bad checksum
        let mut bad = good.clone();
        bad[0] = b'b';
        assert!(matches!(
            for_each_entry::<_, ReadError, _>(&bad[..], |_, _| Ok(())),
            Err(ReadError::Header { .. })
        ));
        // garbage
        for n in [1usize, 100, 511, 512, 513, 2000] {
            let junk: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let _ = for_each_entry::<_, ReadError, _>(&junk[..], |_, _| Ok(()));
        }
    }

    #[test]
    fn link_targets_are_written_byte_for_byte() {
        let odd = ["//A", "a/", "./x/../y", &("t/".repeat(80) + "//end/")];
        let mut sink = TarSink::new(Vec::new());
        for (i, t) in odd.iter().enumerate() {
            append_bytes(
                &mut sink,
                &Entry::symlink(format!("l{i}"), *t, 0o777, 1),
                b"",
            )
            .unwrap();
        }
        let back = read_all(&sink.finish().unwrap());
        for (i, t) in odd.iter().enumerate() {
            assert_eq!(back[i].0.kind, Kind::Symlink(t.as_bytes().to_vec()));
        }
    }
}
