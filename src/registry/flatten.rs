//! Flattening an image's layers into one file-system tree, in user space and with bounded
//! memory (issue #14): the overlay rules of the OCI image spec applied to layer tars (gzip,
//! zstd or uncompressed) and the result written as [`Entry`]s to an [`archive::Sink`], so that
//! it goes through the same filter and placement (`rewrite::place`) as an engine export.
//!
//! Two passes over the layer files, never holding a layer or a file in memory:
//!
//! 1. headers only, oldest layer first, building the index of winners (path → which entry of
//!    which layer wins, plus the full metadata of directories): whiteouts `.wh.NAME` and
//!    opaque directories `.wh..wh..opq` remove what lower layers had (never what the same
//!    layer has), later layers win, a non-directory replacing a directory removes its
//!    subtree, hard links remember the entry whose content they share. Every hostile entry
//!    is refused here, before anything is written: absolute names, `..` components, names
//!    reaching through a symlink (or a file) of an earlier entry (`up -> /` then
//!    `up/etc/x`), hard links to anything that is not an earlier non-directory entry.
//!    The compressed bytes of each layer are checked against its digest on the way.
//! 2. directories first (sorted, so parents come before children), then every layer again,
//!    oldest first, emitting only the winners. A hard link whose target was whited out or
//!    replaced later gets the content itself (the first such link becomes a regular file
//!    with the original content; the others link to it).
//!
//! Memory is the winner index: about a path and a few words per entry of the final tree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::store::hex;
use crate::archive::{self, Entry, Kind, Name, ReadError, Sink};
use crate::rewrite::normalize;

/// Layers larger than this once decompressed are refused (a decompression bomb would
/// otherwise fill the disk).
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

/// One layer file (a blob of the cache).
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    /// `sha256:<hex>` of the file: checked during the first pass when `verify` is set, and
    /// named in messages.
    pub digest: String,
}

/// How to flatten.
#[derive(Debug, Clone)]
pub struct FlattenOptions<'a> {
    /// The image, for messages.
    pub image: &'a str,
    /// Time of directories that no layer has but that are parents of entries.
    pub mtime: u64,
    /// Limit of a layer's decompressed size.
    pub max_layer_bytes: u64,
    /// Check each layer file's sha256 against [`Layer::digest`].
    pub verify: bool,
}

impl<'a> FlattenOptions<'a> {
    pub fn new(image: &'a str) -> FlattenOptions<'a> {
        FlattenOptions {
            image,
            mtime: 0,
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            verify: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    #[error("image `{image}`: layer {layer}: entry `{path}` refused: {why}")]
    Hostile {
        image: String,
        layer: String,
        path: String,
        why: String,
    },
    #[error("image `{image}`: layer {layer}: {message}")]
    Layer {
        image: String,
        layer: String,
        message: String,
    },
    #[error(
        "image `{image}`: layer {layer}: digest mismatch: the cached blob {path} has {actual}; it should be removed and fetched again"
    )]
    Digest {
        image: String,
        layer: String,
        path: String,
        actual: String,
    },
    #[error("image `{image}`: writing the flattened file system: {source}")]
    Write {
        image: String,
        #[source]
        source: io::Error,
    },
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlattenStats {
    pub entries: u64,
    pub bytes: u64,
}

/// An entry of a layer: layer index and position in the layer (every tar member counts,
/// whiteouts included, so both passes number them the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Id {
    layer: u32,
    ordinal: u32,
}

#[derive(Debug)]
enum What {
    /// A directory entry; its path is the key (cleared here to save memory).
    Dir(Box<Entry>),
    /// A directory no layer has, parent of entries.
    Implicit,
    /// Any other non-link entry.
    Other { symlink: bool },
    /// A hard link sharing the content of that entry.
    Link(Id),
}

#[derive(Debug)]
struct Node {
    id: Id,
    what: What,
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self.what, What::Dir(_) | What::Implicit)
    }
}

/// Internal failure, before the image and layer are attached.
enum Fail {
    Read(ReadError),
    Hostile(String, String),
    Write(io::Error),
    Other(String),
}

impl From<ReadError> for Fail {
    fn from(e: ReadError) -> Fail {
        Fail::Read(e)
    }
}

/// The index of winners built by pass 1.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<Name, Node>,
}

fn child_prefix(path: &[u8]) -> Name {
    let mut p = path.to_vec();
    p.push(b'/');
    p
}

impl Tree {
    /// Keys strictly below `path`.
    fn descendants(&self, path: &[u8]) -> Vec<Name> {
        let prefix = child_prefix(path);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn remove_subtree(&mut self, path: &[u8]) {
        for k in self.descendants(path) {
            self.nodes.remove(&k);
        }
        self.nodes.remove(path);
    }

    /// Removes what layers below `layer` have strictly below `dir`, keeping directories
    /// that hold entries of `layer` itself (they are that layer's directories too).
    fn remove_lower_below(&mut self, dir: &[u8], layer: u32) {
        let keys = self.descendants(dir);
        let same: Vec<&Name> = keys
            .iter()
            .filter(|k| self.nodes.get(*k).is_some_and(|n| n.id.layer >= layer))
            .collect();
        let mut doomed = Vec::new();
        for k in &keys {
            let Some(n) = self.nodes.get(k) else { continue };
            if n.id.layer >= layer {
                continue;
            }
            if n.is_dir() {
                let p = child_prefix(k);
                if same.iter().any(|s| s.starts_with(&p)) {
                    continue;
                }
            }
            doomed.push(k.clone());
        }
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// Makes sure every ancestor of `path` is a directory, adding implicit ones; refuses a
    /// path whose ancestor is a symlink or another non-directory.
    fn ensure_parents(&mut self, path: &[u8], id: Id) -> Result<(), String> {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|b| *b == b'/') {
            let parent = &path[..end + i];
            match self.nodes.get(parent) {
                Some(n) if n.is_dir() => {}
                Some(n) => {
                    let what = match n.what {
                        What::Other { symlink: true } => "a symlink",
                        _ => "not a directory",
                    };
                    return Err(format!(
                        "reaches through `{}`, which is {what} in an earlier entry",
                        String::from_utf8_lossy(parent)
                    ));
                }
                None => {
                    self.nodes.insert(
                        parent.to_vec(),
                        Node {
                            id,
                            what: What::Implicit,
                        },
                    );
                }
            }
            end += i + 1;
        }
        Ok(())
    }

    /// Pass 1 for one entry.
    fn add(&mut self, mut e: Entry, id: Id) -> Result<(), Fail> {
        let shown = e.display_path();
        let hostile = |why: &str| Fail::Hostile(shown.clone(), why.to_string());
        if e.path.first() == Some(&b'/') {
            return Err(hostile("it is an absolute name"));
        }
        let path = normalize(&e.path).map_err(hostile)?;
        if path.is_empty() {
            return Ok(()); // the root directory
        }
        let (dir, base) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        if let Some(rest) = base.strip_prefix(b".wh.") {
            if !dir.is_empty() {
                let mut d = dir.to_vec();
                d.push(b'/');
                self.ensure_parents(&d, id).map_err(|w| hostile(&w))?;
                if self.nodes.get(dir).is_some_and(|n| !n.is_dir()) {
                    return Err(hostile("whites out below an entry that is not a directory"));
                }
            }
            if rest == b".wh..opq" {
                self.remove_lower_below(dir, id.layer);
            } else if rest.starts_with(b".wh.") {
                // Other AUFS metadata (`.wh..wh.plnk`, …): not part of the tree.
            } else if rest.is_empty() || rest == b"." || rest == b".." {
                return Err(hostile("is a whiteout of no name"));
            } else {
                let mut gone = dir.to_vec();
                if !gone.is_empty() {
                    gone.push(b'/');
                }
                gone.extend_from_slice(rest);
                // Only what lower layers have goes: the same layer's entries stay.
                self.remove_lower_below(&gone, id.layer);
                if self.nodes.get(&gone).is_some_and(|n| n.id.layer < id.layer)
                    && self.descendants(&gone).is_empty()
                {
                    self.nodes.remove(&gone);
                }
            }
            return Ok(());
        }
        self.ensure_parents(&path, id).map_err(|w| hostile(&w))?;
        let existing_dir = self.nodes.get(&path).map(Node::is_dir);
        let what = match &e.kind {
            Kind::Dir => What::Implicit, // replaced below, with the entry
            Kind::Link(target) => {
                let t = normalize(target)
                    .map_err(|_| hostile("is a hard link whose target has a `..` component"))?;
                let content = match self.nodes.get(&t) {
                    Some(Node {
                        what: What::Link(c),
                        ..
                    }) => *c,
                    Some(Node {
                        id,
                        what: What::Other { .. },
                    }) => *id,
                    Some(_) => return Err(hostile("is a hard link to a directory")),
                    None => {
                        return Err(Fail::Hostile(
                            shown.clone(),
                            format!(
                                "is a hard link to `{}`, which is not an earlier entry of the image",
                                String::from_utf8_lossy(target)
                            ),
                        ));
                    }
                };
                What::Link(content)
            }
            Kind::Symlink(_) => What::Other { symlink: true },
            _ => What::Other { symlink: false },
        };
        let what = if e.kind == Kind::Dir {
            e.path = Vec::new();
            What::Dir(Box::new(e))
        } else {
            what
        };
        let new_is_dir = matches!(what, What::Dir(_));
        if existing_dir == Some(true) && !new_is_dir {
            self.remove_subtree(&path);
        }
        self.nodes.insert(path, Node { id, what });
        Ok(())
    }
}

/// A reader hashing and counting what goes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader failing once more than `left` bytes went through.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(format!(
                "larger than {} bytes once decompressed",
                self.limit
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `raw` decompressed according to its first bytes (gzip, zstd, else plain tar).
fn decompress<'a, R: Read + 'a>(raw: R, limit: u64) -> io::Result<Box<dyn Read + 'a>> {
    let mut b = BufReader::with_capacity(64 * 1024, raw);
    let head = b.fill_buf()?;
    let inner: Box<dyn Read + 'a> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(b))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(b)?)
    } else {
        Box::new(b)
    };
    Ok(Box::new(Capped {
        inner,
        left: limit,
        limit,
    }))
}

/// Flattens `layers` (oldest first) into `sink`. Nothing is written when an entry is
/// refused or a layer does not match its digest: both are found in the first pass.
pub fn flatten(
    layers: &[Layer],
    sink: &mut dyn Sink,
    opts: &FlattenOptions<'_>,
) -> Result<FlattenStats, FlattenError> {
    let image = opts.image;
    let layer_err = |l: &Layer, message: String| FlattenError::Layer {
        image: image.to_string(),
        layer: l.digest.clone(),
        message,
    };
    let attach = |l: &Layer, f: Fail| match f {
        Fail::Read(e) => {
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message.push_str(&format!(": {s}"));
                src = s.source();
            }
            layer_err(l, message)
        }
        Fail::Hostile(path, why) => FlattenError::Hostile {
            image: image.to_string(),
            layer: l.digest.clone(),
            path,
            why,
        },
        Fail::Write(source) => FlattenError::Write {
            image: image.to_string(),
            source,
        },
        Fail::Other(m) => layer_err(l, m),
    };
    let open = |l: &Layer| {
        File::open(&l.path).map_err(|e| layer_err(l, format!("{}: {e}", l.path.display())))
    };

    // Pass 1: the winner index.
    let mut tree = Tree::default();
    for (li, l) in layers.iter().enumerate() {
        let li = u32::try_from(li).map_err(|_| layer_err(l, "too many layers".into()))?;
        let mut raw = Hashing {
            inner: open(l)?,
            hash: Sha256::new(),
        };
        {
            let mut r = decompress(&mut raw, opts.max_layer_bytes)
                .map_err(|e| layer_err(l, format!("reading: {e}")))?;
            let mut ordinal: u32 = 0;
            archive::for_each_entry::<_, Fail, _>(&mut r, |e, _data| {
                let id = Id { layer: li, ordinal };
                ordinal = ordinal
                    .checked_add(1)
                    .ok_or_else(|| Fail::Other("too many entries".into()))?;
                tree.add(e, id)
            })
            .map_err(|f| attach(l, f))?;
            // What follows the end-of-archive blocks (it is part of the digest).
            let _ = io::copy(&mut r, &mut io::sink());
        }
        io::copy(&mut raw, &mut io::sink())
            .map_err(|e| layer_err(l, format!("reading {}: {e}", l.path.display())))?;
        if opts.verify {
            let actual = format!("sha256:{}", hex(&raw.hash.finalize()));
            if actual != l.digest {
                return Err(FlattenError::Digest {
                    image: image.to_string(),
                    layer: l.digest.clone(),
                    path: l.path.display().to_string(),
                    actual,
                });
            }
        }
    }

    // Hard links: which contents are shared, and which must be materialised because their
    // original entry lost (whited out or replaced).
    let mut linked: HashSet<Id> = HashSet::new();
    let mut materialize: HashMap<Id, (Id, Name)> = HashMap::new();
    for (path, n) in &tree.nodes {
        if let What::Link(c) = n.what {
            linked.insert(c);
            let e = materialize.entry(c).or_insert((n.id, path.clone()));
            if n.id < e.0 {
                *e = (n.id, path.clone());
            }
        }
    }
    for n in tree.nodes.values() {
        if matches!(n.what, What::Other { .. }) {
            materialize.remove(&n.id);
        }
    }

    // Pass 2: directories, then the winners of each layer.
    let mut stats = FlattenStats::default();
    let write_err = |source| FlattenError::Write {
        image: image.to_string(),
        source,
    };
    for (path, n) in &tree.nodes {
        let e = match &n.what {
            What::Dir(d) => {
                let mut e = (**d).clone();
                e.path = path.clone();
                e
            }
            What::Implicit => Entry::dir(path.clone(), 0o755, opts.mtime),
            _ => continue,
        };
        sink.append(&e, &mut io::empty()).map_err(write_err)?;
        stats.entries += 1;
    }
    let mut out_path: HashMap<Id, Name> = HashMap::new();
    for (li, l) in layers.iter().enumerate() {
        let li = li as u32; // checked in pass 1
        let file = open(l)?;
        let mut r = decompress(file, opts.max_layer_bytes)
            .map_err(|e| layer_err(l, format!("reading: {e}")))?;
        let mut ordinal: u32 = 0;
        archive::for_each_entry::<_, Fail, _>(&mut r, |mut e, data| {
            let id = Id { layer: li, ordinal };
            ordinal = ordinal.saturating_add(1);
            if let Some((_, p)) = materialize.get(&id) {
                e.path = p.clone();
                out_path.insert(id, p.clone());
                stats.entries += 1;
                stats.bytes += e.size;
                return sink.append(&e, data).map_err(Fail::Write);
            }
            if e.path.first() == Some(&b'/') {
                return Ok(());
            }
            let Ok(path) = normalize(&e.path) else {
                return Ok(());
            };
            let Some(n) = tree.nodes.get(&path) else {
                return Ok(());
            };
            if n.id != id || n.is_dir() {
                return Ok(());
            }
            match n.what {
                What::Link(c) => {
                    if materialize.get(&c).is_some_and(|(first, _)| *first == id) {
                        return Ok(()); // written with the content
                    }
                    let target = out_path.get(&c).ok_or_else(|| {
                        Fail::Other(format!(
                            "the target of hard link `{}` changed between two reads of the layer",
                            String::from_utf8_lossy(&path)
                        ))
                    })?;
                    e.kind = Kind::Link(target.clone());
                    e.size = 0;
                }
                _ => {
                    if linked.contains(&id) {
                        out_path.insert(id, path.clone());
                    }
                }
            }
            e.path = path;
            stats.entries += 1;
            stats.bytes += e.size;
            sink.append(&e, data).map_err(Fail::Write)
        })
        .map_err(|f| attach(l, f))?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::TarSink;
    use crate::archive::tests::read_all;
    use std::io::Write;

    /// One member of a test layer: name as stored, and what it is.
    #[derive(Debug, Clone)]
    pub(crate) enum M {
        File(&'static str, &'static [u8]),
        Dir(&'static str),
        Sym(&'static str, &'static str),
        Hard(&'static str, &'static str),
    }

    #[derive(Clone, Copy)]
    pub(crate) enum Z {
        None,
        Gzip,
        Zstd,
    }

    /// A tar whose names are exactly as given (no normalisation, so hostile names too).
    pub(crate) fn raw_tar(members: &[M]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for m in members {
            let mut h = tar::Header::new_gnu();
            let (name, ty, link, data): (&str, _, &str, &[u8]) = match m {
                M::File(n, d) => (n, tar::EntryType::Regular, "", d),
                M::Dir(n) => (n, tar::EntryType::Directory, "", b""),
                M::Sym(n, t) => (n, tar::EntryType::Symlink, t, b""),
                M::Hard(n, t) => (n, tar::EntryType::Link, t, b""),
            };
            h.set_entry_type(ty);
            h.set_size(data.len() as u64);
            h.set_mode(if matches!(m, M::Dir(_)) { 0o755 } else { 0o644 });
            h.set_mtime(7);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    pub(crate) fn compress(tar: &[u8], z: Z) -> Vec<u8> {
        match z {
            Z::None => tar.to_vec(),
            Z::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Z::Zstd => zstd::encode_all(tar, 1).unwrap(),
        }
    }

    pub(crate) fn layer(dir: &std::path::Path, bytes: &[u8]) -> Layer {
        let digest = format!("sha256:{}", hex(&Sha256::digest(bytes)));
        let path = dir.join(digest.replace(':', "-"));
        std::fs::write(&path, bytes).unwrap();
        Layer { path, digest }
    }

    fn layers(dir: &std::path::Path, ls: &[&[M]], z: Z) -> Vec<Layer> {
        ls.iter()
            .map(|m| layer(dir, &compress(&raw_tar(m), z)))
            .collect()
    }

    /// A sink that counts what it was given (nothing must reach it on a refusal).
    struct Counting(usize);
    impl Sink for Counting {
        fn append(&mut self, _: &Entry, _: &mut dyn Read) -> io::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    fn run(ls: &[Layer]) -> Result<Vec<(Entry, Vec<u8>)>, FlattenError> {
        let mut sink = TarSink::new(Vec::new());
        let mut o = FlattenOptions::new("test/img:1");
        o.mtime = 5;
        flatten(ls, &mut sink, &o)?;
        Ok(read_all(&sink.finish().unwrap()))
    }

    fn flat(ls: &[&[M]]) -> Vec<(Entry, Vec<u8>)> {
        let d = tempfile::tempdir().unwrap();
        run(&layers(d.path(), ls, Z::None)).unwrap()
    }

    /// `path → description` of a flattened tree (`file:<content>`, `dir`, `sym:<t>`,
    /// `link:<t>`), in output order.
    fn show(out: &[(Entry, Vec<u8>)]) -> Vec<String> {
        out.iter()
            .map(|(e, d)| {
                let what = match &e.kind {
                    Kind::File => format!("file:{}", String::from_utf8_lossy(d)),
                    Kind::Dir => "dir".into(),
                    Kind::Symlink(t) => format!("sym:{}", String::from_utf8_lossy(t)),
                    Kind::Link(t) => format!("link:{}", String::from_utf8_lossy(t)),
                    k => format!("{k:?}"),
                };
                format!("{}={what}", e.display_path())
            })
            .collect()
    }

    fn assert_parents_first(out: &[(Entry, Vec<u8>)]) {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for (e, _) in out {
            if let Some(i) = e.path.iter().rposition(|b| *b == b'/') {
                assert!(
                    seen.contains(&e.path[..i]),
                    "{} before its parent",
                    e.display_path()
                );
            }
            if let Kind::Link(t) = &e.kind {
                assert!(
                    seen.contains(t),
                    "link {} before its target",
                    e.display_path()
                );
            }
            seen.insert(e.path.clone());
        }
    }

    #[test]
    fn later_layers_win_and_whiteouts_remove_lower_entries() {
        let out = flat(&[
            &[
                M::Dir("a/"),
                M::File("a/f", b"1"),
                M::File("a/g", b"x"),
                M::File("b", b"b"),
                M::Dir("c/"),
                M::File("c/deep", b"d"),
            ],
            &[
                M::File("a/f", b"2"),
                M::File(".wh.b", b""),
                M::File("a/.wh.g", b""),
                M::File(".wh.c", b""),
            ],
        ]);
        assert_eq!(show(&out), ["a=dir", "a/f=file:2"]);
    }

    #[test]
    fn whiteouts_never_remove_entries_of_their_own_layer() {
        let out = flat(&[
            &[M::File("x", b"old"), M::File("y", b"old")],
            // `x` before its whiteout, `y` after it: both stay, with this layer's content.
            &[
                M::File("x", b"new"),
                M::File(".wh.x", b""),
                M::File(".wh.y", b""),
                M::File("y", b"new"),
            ],
        ]);
        assert_eq!(show(&out), ["x=file:new", "y=file:new"]);
    }

    #[test]
    fn opaque_directories_hide_lower_children_but_keep_their_own() {
        let out = flat(&[
            &[
                M::Dir("d/"),
                M::File("d/x", b"x"),
                M::Dir("d/sub/"),
                M::File("d/sub/y", b"y"),
                M::File("e", b"e"),
            ],
            &[
                M::File("d/new", b"n"),
                M::Dir("d/"),
                M::File("d/.wh..wh..opq", b""),
                M::File("d/late", b"l"),
            ],
        ]);
        assert_eq!(
            show(&out),
            ["d=dir", "e=file:e", "d/new=file:n", "d/late=file:l"]
        );
    }

    #[test]
    fn a_non_directory_replacing_a_directory_removes_its_subtree() {
        let out = flat(&[
            &[M::Dir("d/"), M::File("d/x", b"x"), M::File("f", b"f")],
            &[
                M::Sym("d", "/elsewhere"),
                M::Dir("f/"),
                M::File("f/y", b"y"),
            ],
        ]);
        assert_eq!(show(&out), ["f=dir", "d=sym:/elsewhere", "f/y=file:y"]);
    }

    #[test]
    fn directories_take_the_newest_metadata_and_keep_their_children() {
        let d = tempfile::tempdir().unwrap();
        // mode 0700 for the second layer's `d`
        let t2 = {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_path("d").unwrap();
            h.set_mode(0o700);
            h.set_size(0);
            h.set_cksum();
            let mut b = tar::Builder::new(Vec::new());
            b.append(&h, io::empty()).unwrap();
            b.into_inner().unwrap()
        };
        let ls = vec![
            layer(d.path(), &raw_tar(&[M::Dir("d/"), M::File("d/x", b"x")])),
            layer(d.path(), &t2),
        ];
        let out = run(&ls).unwrap();
        assert_eq!(show(&out), ["d=dir", "d/x=file:x"]);
        assert_eq!(out[0].0.mode, 0o700);
    }

    #[test]
    fn hard_links_are_kept() {
        let out = flat(&[
            &[M::File("f", b"c"), M::Hard("h", "f")],
            &[M::Hard("h2", "./f"), M::Hard("h3", "h")],
        ]);
        assert_eq!(
            show(&out),
            ["f=file:c", "h=link:f", "h2=link:f", "h3=link:f"]
        );
    }

    #[test]
    fn hard_links_whose_target_was_whited_out_get_its_content() {
        let out = flat(&[
            &[
                M::File("f", b"c"),
                M::Hard("h1", "f"),
                M::Hard("h2", "f"),
                M::File("g", b"g"),
            ],
            &[
                M::File(".wh.f", b""),
                M::File("g", b"new"),
                M::Hard("h3", "h2"),
            ],
        ]);
        // The first link becomes the file, the others link to it.
        assert_eq!(
            show(&out),
            ["h1=file:c", "h2=link:h1", "g=file:new", "h3=link:h1"]
        );
        // A target replaced in the same layer as the link.
        let out = flat(&[&[
            M::File("f", b"old"),
            M::Hard("h", "f"),
            M::File("f", b"new"),
        ]]);
        assert_eq!(show(&out), ["h=file:old", "f=file:new"]);
        // A link replacing its own target.
        let out = flat(&[&[M::File("f", b"c")], &[M::Hard("f", "f")]]);
        assert_eq!(show(&out), ["f=file:c"]);
    }

    #[test]
    fn parents_come_first_and_missing_ones_are_made() {
        let out = flat(&[
            &[M::File("x/y/z", b"z"), M::Dir("a/")],
            &[M::File("a/b/c", b"c"), M::Dir("x/")],
        ]);
        assert_eq!(
            show(&out),
            [
                "a=dir",
                "a/b=dir",
                "x=dir",
                "x/y=dir",
                "x/y/z=file:z",
                "a/b/c=file:c"
            ]
        );
        assert_parents_first(&out);
        let implicit = out.iter().find(|(e, _)| e.path == b"a/b").unwrap();
        assert_eq!((implicit.0.mode, implicit.0.mtime), (0o755, 5));
    }

    #[test]
    fn compressed_layers() {
        for z in [Z::Gzip, Z::Zstd] {
            let d = tempfile::tempdir().unwrap();
            let ls = layers(d.path(), &[&[M::File("a", b"1")], &[M::File("b", b"2")]], z);
            assert_eq!(show(&run(&ls).unwrap()), ["a=file:1", "b=file:2"]);
        }
    }

    fn refused(ls: &[&[M]], path: &str, why: &str) {
        let d = tempfile::tempdir().unwrap();
        let ls = layers(d.path(), ls, Z::Gzip);
        let mut sink = Counting(0);
        let e = flatten(&ls, &mut sink, &FlattenOptions::new("test/img:1")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, FlattenError::Hostile { .. }), "{msg}");
        assert!(msg.contains("test/img:1"), "{msg}");
        assert!(msg.contains(&format!("`{path}`")), "{msg}");
        assert!(msg.contains(why), "{msg}");
        assert_eq!(sink.0, 0, "nothing written before a refusal");
    }

    #[test]
    fn hostile_entries_are_refused_before_anything_is_written() {
        refused(
            &[&[M::File("ok", b""), M::File("../escape", b"x")]],
            "../escape",
            "`..`",
        );
        refused(&[&[M::File("a/../../x", b"x")]], "a/../../x", "`..`");
        refused(&[&[M::File("/abs", b"x")]], "/abs", "absolute");
        refused(
            &[&[M::Sym("up", "/")], &[M::File("up/etc/owned", b"x")]],
            "up/etc/owned",
            "symlink",
        );
        refused(
            &[&[M::Sym("up", "/"), M::Dir("up/etc/")]],
            "up/etc/",
            "symlink",
        );
        refused(
            &[&[M::File("f", b""), M::File("f/x", b"")]],
            "f/x",
            "not a directory",
        );
        refused(&[&[M::Hard("h", "../etc/passwd")]], "h", "`..`");
        refused(
            &[&[M::Hard("h", "etc/passwd")]],
            "h",
            "not an earlier entry",
        );
        refused(&[&[M::Hard("h", "up/x")], &[]], "h", "not an earlier entry");
        refused(&[&[M::Dir("d/"), M::Hard("h", "d")]], "h", "directory");
        refused(
            &[&[M::File("a", b""), M::File(".wh...", b"")]],
            ".wh...",
            "whiteout",
        );
        refused(
            &[&[M::Sym("up", "/"), M::File("up/.wh.etc", b"")]],
            "up/.wh.etc",
            "symlink",
        );
    }

    #[test]
    fn a_layer_not_matching_its_digest_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut ls = layers(d.path(), &[&[M::File("a", b"1")]], Z::Gzip);
        ls[0].digest = format!("sha256:{}", "0".repeat(64));
        let mut sink = Counting(0);
        let e = flatten(&ls, &mut sink, &FlattenOptions::new("img")).unwrap_err();
        assert!(matches!(e, FlattenError::Digest { .. }), "{e}");
        assert!(e.to_string().contains(&"0".repeat(64)), "{e}");
        assert_eq!(sink.0, 0);
    }

    #[test]
    fn decompressed_size_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![0u8; 1 << 20];
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("big").unwrap();
        h.set_size(big.len() as u64);
        h.set_cksum();
        t.append(&h, &big[..]).unwrap();
        let ls = vec![layer(
            d.path(),
            &compress(&t.into_inner().unwrap(), Z::Gzip),
        )];
        let mut o = FlattenOptions::new("img");
        o.max_layer_bytes = 64 * 1024;
        let e = flatten(&ls, &mut Counting(0), &o).unwrap_err();
        assert!(e.to_string().contains("decompressed"), "{e}");
    }

    #[test]
    fn garbage_layers_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let good = compress(&raw_tar(&[M::File("a", b"abc")]), Z::Gzip);
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![0x1f, 0x8b, 1, 2, 3],
            vec![0x28, 0xb5, 0x2f, 0xfd, 9, 9],
            b"not a tar at all, just some text that is long enough".to_vec(),
        ];
        for cut in [1, 10, good.len() / 2, good.len() - 3] {
            inputs.push(good[..cut].to_vec());
        }
        for bytes in inputs {
            let ls = vec![layer(d.path(), &bytes)];
            let _ = flatten(&ls, &mut Counting(0), &FlattenOptions::new("img"));
        }
    }

    // ---- a model of the overlay rules, checked against `flatten` on random layers ----

    use proptest::prelude::*;

    /// Few paths, so that layers often touch the same ones.
    const PATHS: [&str; 7] = ["a", "b", "a/a", "a/b", "b/a", "a/a/a", "a/a/b"];

    #[derive(Debug, Clone)]
    enum Op {
        File(usize, u8),
        Dir(usize),
        Sym(usize),
        Hard(usize, usize),
        Whiteout(usize),
        Opaque(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = 0..PATHS.len();
        prop_oneof![
            3 => (p.clone(), any::<u8>()).prop_map(|(p, c)| Op::File(p, c)),
            2 => p.clone().prop_map(Op::Dir),
            1 => p.clone().prop_map(Op::Sym),
            2 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Hard(a, b)),
            2 => p.clone().prop_map(Op::Whiteout),
            1 => p.prop_map(Op::Opaque),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    enum MK {
        Dir,
        File(u8),
        Sym(String),
    }

    /// The model: per layer, whiteouts first (the generated tars put them first), then
    /// entries; hard links copy what they point to.
    fn model(layers: &[Vec<Op>]) -> Result<BTreeMap<String, MK>, ()> {
        let mut st: BTreeMap<String, (MK, usize)> = BTreeMap::new();
        fn parents(st: &mut BTreeMap<String, (MK, usize)>, p: &str, l: usize) -> Result<(), ()> {
            let parts: Vec<&str> = p.split('/').collect();
            for i in 1..parts.len() {
                let a = parts[..i].join("/");
                match st.get(&a) {
                    Some((MK::Dir, _)) => {}
                    Some(_) => return Err(()),
                    None => {
                        st.insert(a, (MK::Dir, l));
                    }
                }
            }
            Ok(())
        }
        fn below(st: &BTreeMap<String, (MK, usize)>, p: &str) -> Vec<String> {
            st.keys()
                .filter(|k| k.starts_with(&format!("{p}/")))
                .cloned()
                .collect()
        }
        fn clear_below(st: &mut BTreeMap<String, (MK, usize)>, p: &str, l: usize) {
            let keys = below(st, p);
            let doomed: Vec<String> = keys
                .iter()
                .filter(|k| st[*k].1 < l)
                .filter(|k| {
                    st[*k].0 != MK::Dir
                        || !keys
                            .iter()
                            .any(|o| o.starts_with(&format!("{k}/")) && st[o].1 >= l)
                })
                .cloned()
                .collect();
            for k in doomed {
                st.remove(&k);
            }
        }
        for (l, ops) in layers.iter().enumerate() {
            for o in ops {
                match o {
                    Op::Whiteout(p) => {
                        let p = PATHS[*p];
                        if let Some((d, _)) = p.rsplit_once('/') {
                            parents(&mut st, &format!("{d}/x"), l)?;
                            if st.get(d).is_some_and(|n| n.0 != MK::Dir) {
                                return Err(());
                            }
                        }
                        clear_below(&mut st, p, l);
                        if st.get(p).is_some_and(|n| n.1 < l) && below(&st, p).is_empty() {
                            st.remove(p);
                        }
                    }
                    Op::Opaque(d) => {
                        let d = PATHS[*d];
                        parents(&mut st, &format!("{d}/x"), l)?;
                        clear_below(&mut st, d, l);
                    }
                    _ => {}
                }
            }
            for o in ops {
                let (p, k) = match o {
                    Op::File(p, c) => (PATHS[*p], MK::File(*c)),
                    Op::Dir(p) => (PATHS[*p], MK::Dir),
                    Op::Sym(p) => (PATHS[*p], MK::Sym("t".into())),
                    Op::Hard(p, t) => {
                        let k = match st.get(PATHS[*t]) {
                            Some((MK::Dir, _)) | None => return Err(()),
                            Some((k, _)) => k.clone(),
                        };
                        (PATHS[*p], k)
                    }
                    _ => continue,
                };
                parents(&mut st, p, l)?;
                let was_dir = st.get(p).is_some_and(|n| n.0 == MK::Dir);
                if was_dir && k != MK::Dir {
                    for c in below(&st, p) {
                        st.remove(&c);
                    }
                }
                st.insert(p.to_string(), (k, l));
            }
        }
        Ok(st.into_iter().map(|(k, (v, _))| (k, v)).collect())
    }

    /// The layers as tars: whiteouts first, each path written once per layer.
    fn tars(layers: &[Vec<Op>]) -> Vec<Vec<u8>> {
        layers
            .iter()
            .map(|ops| {
                let mut b = tar::Builder::new(Vec::new());
                let mut add = |name: String, ty: tar::EntryType, link: &str, data: &[u8]| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(ty);
                    h.set_size(data.len() as u64);
                    h.set_mode(0o644);
                    h.set_path(&name).unwrap();
                    if !link.is_empty() {
                        h.set_link_name(link).unwrap();
                    }
                    h.set_cksum();
                    b.append(&h, data).unwrap();
                };
                for o in ops {
                    match o {
                        Op::Whiteout(p) => {
                            let p = PATHS[*p];
                            let name = match p.rsplit_once('/') {
                                Some((d, n)) => format!("{d}/.wh.{n}"),
                                None => format!(".wh.{p}"),
                            };
                            add(name, tar::EntryType::Regular, "", b"");
                        }
                        Op::Opaque(d) => add(
                            format!("{}/.wh..wh..opq", PATHS[*d]),
                            tar::EntryType::Regular,
                            "",
                            b"",
                        ),
                        _ => {}
                    }
                }
                for o in ops {
                    match o {
                        Op::File(p, c) => add(PATHS[*p].into(), tar::EntryType::Regular, "", &[*c]),
                        Op::Dir(p) => add(PATHS[*p].into(), tar::EntryType::Directory, "", b""),
                        Op::Sym(p) => add(PATHS[*p].into(), tar::EntryType::Symlink, "t", b""),
                        Op::Hard(p, t) => {
                            add(PATHS[*p].into(), tar::EntryType::Link, PATHS[*t], b"")
                        }
                        _ => {}
                    }
                }
                b.into_inner().unwrap()
            })
            .collect()
    }

    /// Each layer's ops with one entry per path (whiteouts of a path the layer writes
    /// dropped: the model applies whiteouts first).
    fn dedup(layers: Vec<Vec<Op>>) -> Vec<Vec<Op>> {
        layers
            .into_iter()
            .map(|ops| {
                let mut written = HashSet::new();
                let mut whited = HashSet::new();
                let mut out = Vec::new();
                for o in &ops {
                    if let Op::File(p, _) | Op::Dir(p) | Op::Sym(p) | Op::Hard(p, _) = o
                        && written.insert(*p)
                    {
                        out.push(o.clone());
                    }
                }
                for o in &ops {
                    match o {
                        Op::Whiteout(p) | Op::Opaque(p)
                            if !written.contains(p)
                                && whited.insert((matches!(o, Op::Opaque(_)), *p)) =>
                        {
                            out.push(o.clone())
                        }
                        _ => {}
                    }
                }
                out
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn flatten_agrees_with_the_model(
            layers in prop::collection::vec(prop::collection::vec(op(), 0..7), 1..5)
        ) {
            let layers = dedup(layers);
            let d = tempfile::tempdir().unwrap();
            let ls: Vec<Layer> = tars(&layers).iter().map(|t| layer(d.path(), t)).collect();
            let want = model(&layers);
            let got = run(&ls);
            match (want, got) {
                (Err(()), Err(e)) => prop_assert!(matches!(e, FlattenError::Hostile { .. }), "{e}"),
                (Ok(w), Err(e)) => prop_assert!(false, "refused: {e}; model: {w:?}"),
                (Err(()), Ok(g)) => prop_assert!(false, "model refuses; flatten gave {:?}", show(&g)),
                (Ok(w), Ok(g)) => {
                    assert_parents_first(&g);
                    let mut by_path: BTreeMap<String, MK> = BTreeMap::new();
                    for (e, data) in &g {
                        let k = match &e.kind {
                            Kind::Dir => MK::Dir,
                            Kind::File => MK::File(data[0]),
                            Kind::Symlink(t) => MK::Sym(String::from_utf8_lossy(t).into()),
                            Kind::Link(t) => by_path[&String::from_utf8_lossy(t).into_owned()].clone(),
                            k => panic!("unexpected {k:?}"),
                        };
                        prop_assert!(by_path.insert(e.display_path(), k).is_none(), "{} twice", e.display_path());
                    }
                    prop_assert_eq!(by_path, w);
                }
            }
        }
    }
}
