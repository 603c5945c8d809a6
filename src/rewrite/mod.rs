//! Rewriting one image's file system into the output (SPEC §4.5): a pure function from a tar
//! stream (the engine's export, or any tar) to [`Entry`]s appended to a [`Sink`] under a
//! prefix. It owns every per-entry rule: name normalisation, the drop list, the replaced
//! `etc/hosts` / `etc/resolv.conf`, the always-present set with the fixed time, hard-link
//! re-prefixing, and the rejection of hostile names. It never holds an entry's content in
//! memory: data is streamed from the reader to the sink.
//!
//! [`kernel`] is its twin for a kernel image: `boot/` and the modules tarball (SPEC §4.1).

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{self, Read};

use crate::archive::{self, Entry, Kind, Name, ReadError, Sink};

pub mod kernel;

/// What `etc/resolv.conf` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolv {
    /// A file holding only a comment (container bundles).
    File,
    /// A symlink to `/run/resolvconf/resolv.conf` (init images and volumes).
    Symlink,
}

/// How to place one image.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The image, for error messages.
    pub image: &'a str,
    /// Output directory the entries go under (`containers/onboot/000-x/lower`), empty for `/`.
    pub prefix: &'a str,
    /// Apply the filter of SPEC §4.5 (images); `false` copies entries as they are apart from
    /// normalising and checking names (a kernel's modules tarball).
    pub filter: bool,
    pub resolv: Resolv,
    /// The fixed time of generated and touched entries.
    pub mtime: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("image `{image}`")]
    Read {
        image: String,
        #[source]
        source: ReadError,
    },
    #[error("image `{image}`: entry `{path}`: {why}")]
    Hostile {
        image: String,
        path: String,
        why: &'static str,
    },
    #[error("writing the output")]
    Write(#[source] io::Error),
}

/// Internal: a read failure before the image name is attached.
enum Fail {
    Read(ReadError),
    Hostile(String, &'static str),
    Write(io::Error),
}

impl From<ReadError> for Fail {
    fn from(e: ReadError) -> Fail {
        Fail::Read(e)
    }
}

pub const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
pub const RESOLV_FILE: &str = "\n# no resolv.conf configured\n";
pub const RESOLV_TARGET: &str = "/run/resolvconf/resolv.conf";

/// Names dropped from every placed image.
const DROPPED: [&[u8]; 4] = [
    b".dockerenv",
    b"Dockerfile",
    b"dev/console",
    b"etc/hostname",
];

/// The always-present set, in the order missing ones are added (parents first).
const TOUCH: [&[u8]; 9] = [
    b"dev",
    b"dev/pts",
    b"dev/shm",
    b"etc",
    b"etc/hosts",
    b"etc/mtab",
    b"etc/resolv.conf",
    b"proc",
    b"sys",
];

/// Normalises an archive name: leading `/` and `./` removed, `.` and empty components
/// dropped, no trailing `/`. A `..` component is an error.
pub fn normalize(name: &[u8]) -> Result<Name, &'static str> {
    let mut out: Name = Vec::with_capacity(name.len());
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("has a `..` component"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

fn join(prefix: &str, name: &[u8]) -> Name {
    if prefix.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    p.extend_from_slice(prefix.as_bytes());
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    p
}

fn dropped(name: &[u8]) -> bool {
    DROPPED.contains(&name) || name.starts_with(b"dev/pts/") || name.starts_with(b"dev/shm/")
}

/// The entries of the always-present set as imagesmith writes them when the image lacks
/// them, or replaces them (`etc/hosts`, `etc/resolv.conf`).
fn touch_entry(name: &[u8], resolv: Resolv, mtime: u64) -> (Entry, &'static [u8]) {
    match name {
        b"etc/hosts" => (
            Entry::file(name, 0o644, mtime, HOSTS.len() as u64),
            HOSTS.as_bytes(),
        ),
        b"etc/resolv.conf" => match resolv {
            Resolv::File => (
                Entry::file(name, 0o644, mtime, RESOLV_FILE.len() as u64),
                RESOLV_FILE.as_bytes(),
            ),
            Resolv::Symlink => (Entry::symlink(name, RESOLV_TARGET, 0o644, mtime), b""),
        },
        b"etc/mtab" => (Entry::symlink(name, "/proc/mounts", 0o777, mtime), b""),
        _ => (Entry::dir(name, 0o755, mtime), b""),
    }
}

/// Set of paths seen so far in one image, for the hard-link check. Paths are kept as 64-bit
/// hashes so that memory stays small for images with many files; a collision could only
/// make a link to an unseen path pass the check (probability ~n²/2⁶⁴).
#[derive(Default)]
struct Seen(HashSet<u64, BuildHasherDefault<IdHasher>>);

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Seen {
    fn key(name: &[u8]) -> u64 {
        // Fixed keys: the same path always hashes the same way.
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(name)
    }
    fn insert(&mut self, name: &[u8]) {
        self.0.insert(Self::key(name));
    }
    fn contains(&self, name: &[u8]) -> bool {
        self.0.contains(&Self::key(name))
    }
}

/// Places one image's tar stream into `sink` under `p.prefix`, applying SPEC §4.5.
pub fn place(src: impl Read, sink: &mut dyn Sink, p: &Placement<'_>) -> Result<(), RewriteError> {
    let mut seen = Seen::default();
    let mut touched = [false; TOUCH.len()];

    let res = archive::for_each_entry::<_, Fail, _>(src, |mut e, data| {
        let name = normalize(&e.path).map_err(|why| Fail::Hostile(e.display_path(), why))?;
        if name.is_empty() {
            // The root directory itself: the prefix directory stands for it.
            return Ok(());
        }
        if p.filter && dropped(&name) {
            return Ok(());
        }
        let touch_idx = if p.filter {
            TOUCH.iter().position(|t| *t == name.as_slice())
        } else {
            None
        };
        if let Some(i) = touch_idx {
            if touched[i] {
                return Ok(()); // exactly once
            }
            touched[i] = true;
            match TOUCH[i] {
                b"etc/hosts" | b"etc/resolv.conf" => {
                    let (mut t, content) = touch_entry(TOUCH[i], p.resolv, p.mtime);
                    t.path = join(p.prefix, &name);
                    seen.insert(&name);
                    return archive::append_bytes(sink, &t, content).map_err(Fail::Write);
                }
                _ => e.mtime = p.mtime,
            }
        }
        if let Kind::Link(target) = &e.kind {
            let t = normalize(target).map_err(|_| {
                Fail::Hostile(
                    e.display_path(),
                    "is a hard link whose target has a `..` component",
                )
            })?;
            if t.is_empty() || !seen.contains(&t) {
                return Err(Fail::Hostile(
                    e.display_path(),
                    "is a hard link to a path that is not (or no longer) in the image before it",
                ));
            }
            e.kind = Kind::Link(join(p.prefix, &t));
        }
        seen.insert(&name);
        e.path = join(p.prefix, &name);
        sink.append(&e, data).map_err(Fail::Write)
    });
    match res {
        Ok(()) => {}
        Err(Fail::Read(source)) => {
            return Err(RewriteError::Read {
                image: p.image.to_string(),
                source,
            });
        }
        Err(Fail::Hostile(path, why)) => {
            return Err(RewriteError::Hostile {
                image: p.image.to_string(),
                path,
                why,
            });
        }
        Err(Fail::Write(e)) => return Err(RewriteError::Write(e)),
    }
    if p.filter {
        for (i, name) in TOUCH.iter().enumerate() {
            if touched[i] {
                continue;
            }
            let (mut t, content) = touch_entry(name, p.resolv, p.mtime);
            t.path = join(p.prefix, name);
            archive::append_bytes(sink, &t, content).map_err(RewriteError::Write)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::read_all;
    use crate::archive::{TarSink, append_bytes};

    const T: u64 = 1_492_533_000;

    fn tar_of(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut s = TarSink::new(Vec::new());
        for (e, d) in entries {
            append_bytes(&mut s, e, d).unwrap();
        }
        s.finish().unwrap()
    }

    /// A raw tar whose names are exactly as given (TarSink would refuse `..`).
    fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, link) in entries {
            let mut h = tar::Header::new_old();
            h.set_entry_type(*ty);
            h.set_size(0);
            h.set_mode(0o644);
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            let l = link.as_bytes();
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn place_vec(
        input: &[u8],
        prefix: &str,
        resolv: Resolv,
    ) -> Result<Vec<(Entry, Vec<u8>)>, RewriteError> {
        let mut out = TarSink::new(Vec::new());
        let p = Placement {
            image: "test/img:1",
            prefix,
            filter: true,
            resolv,
            mtime: T,
        };
        place(input, &mut out, &p)?;
        Ok(read_all(&out.finish().unwrap()))
    }

    fn names(v: &[(Entry, Vec<u8>)]) -> Vec<String> {
        v.iter().map(|(e, _)| e.display_path()).collect()
    }

    #[test]
    fn filters_replaces_and_touches() {
        let input = tar_of(&[
            (Entry::dir("./", 0o755, 5), b""),
            (Entry::file("./.dockerenv", 0o755, 5, 0), b""),
            (Entry::dir("bin/", 0o755, 5), b""),
            (Entry::file("bin/sh", 0o4755, 5, 2), b"#!"),
            (Entry::dir("dev/", 0o700, 5), b""),
            (Entry::file("dev/console", 0o600, 5, 0), b""),
            (Entry::dir("dev/pts/", 0o755, 5), b""),
            (Entry::file("dev/pts/0", 0o600, 5, 0), b""),
            (Entry::dir("etc/", 0o755, 5), b""),
            (Entry::file("etc/hostname", 0o644, 5, 3), b"abc"),
            (Entry::symlink("etc/hosts", "/elsewhere", 0o777, 5), b""),
            (Entry::file("etc/resolv.conf", 0o600, 5, 4), b"xxxx"),
            (Entry::file("Dockerfile", 0o600, 5, 0), b""),
        ]);
        let out = place_vec(&input, "containers/onboot/000-a/lower", Resolv::File).unwrap();
        let p = |s: &str| format!("containers/onboot/000-a/lower/{s}");
        assert_eq!(
            names(&out),
            vec![
                p("bin"),
                p("bin/sh"),
                p("dev"),
                p("dev/pts"),
                p("etc"),
                p("etc/hosts"),
                p("etc/resolv.conf"),
                p("dev/shm"),
                p("etc/mtab"),
                p("proc"),
                p("sys"),
            ]
        );
        let get = |n: &str| out.iter().find(|(e, _)| e.display_path() == p(n)).unwrap();
        // kept headers
        assert_eq!(get("bin/sh").0.mode, 0o4755);
        assert_eq!(get("bin/sh").0.mtime, 5);
        // touched in place: header kept, time fixed
        assert_eq!(get("dev").0.mode, 0o700);
        assert_eq!(get("dev").0.mtime, T);
        // replaced whatever the type
        assert_eq!(get("etc/hosts").0.kind, Kind::File);
        assert_eq!(get("etc/hosts").1, HOSTS.as_bytes());
        assert_eq!(HOSTS.len(), 160);
        assert_eq!(get("etc/resolv.conf").1, RESOLV_FILE.as_bytes());
        assert_eq!(get("etc/resolv.conf").0.mode, 0o644);
        // added
        assert_eq!(
            get("etc/mtab").0.kind,
            Kind::Symlink(b"/proc/mounts".to_vec())
        );
        assert_eq!(get("proc").0.mode, 0o755);
        assert_eq!(get("proc").0.mtime, T);
    }

    #[test]
    fn resolv_symlink_for_init() {
        let input = tar_of(&[(Entry::file("etc/resolv.conf", 0o644, 5, 1), b"x")]);
        let out = place_vec(&input, "", Resolv::Symlink).unwrap();
        let r = out
            .iter()
            .find(|(e, _)| e.path == b"etc/resolv.conf")
            .unwrap();
        assert_eq!(r.0.kind, Kind::Symlink(RESOLV_TARGET.as_bytes().to_vec()));
        assert_eq!(r.0.mode, 0o644);
        assert_eq!(
            out.iter()
                .filter(|(e, _)| e.path == b"etc/resolv.conf")
                .count(),
            1
        );
    }

    #[test]
    fn hard_links_are_reprefixed_and_checked() {
        let input = tar_of(&[
            (Entry::file("./usr/bin/a", 0o755, 5, 1), b"a"),
            (
                Entry::new(
                    "usr/bin/b",
                    Kind::Link(b"./usr/bin/a".to_vec()),
                    0o755,
                    5,
                    0,
                ),
                b"",
            ),
        ]);
        let out = place_vec(&input, "x/lower", Resolv::File).unwrap();
        let b = out
            .iter()
            .find(|(e, _)| e.path == b"x/lower/usr/bin/b")
            .unwrap();
        assert_eq!(b.0.kind, Kind::Link(b"x/lower/usr/bin/a".to_vec()));

        let unseen = tar_of(&[(Entry::new("b", Kind::Link(b"a".to_vec()), 0o755, 5, 0), b"")]);
        let err = place_vec(&unseen, "", Resolv::File)
            .unwrap_err()
            .to_string();
        assert!(err.contains("test/img:1") && err.contains("`b`"), "{err}");

        let to_dropped = tar_of(&[
            (Entry::file(".dockerenv", 0o755, 5, 0), b""),
            (
                Entry::new("b", Kind::Link(b".dockerenv".to_vec()), 0o755, 5, 0),
                b"",
            ),
        ]);
        assert!(place_vec(&to_dropped, "", Resolv::File).is_err());
    }

    #[test]
    fn hostile_names_are_rejected() {
        let dotdot = raw_tar(&[("a/../../etc/passwd", tar::EntryType::Regular, "")]);
        let err = place_vec(&dotdot, "p", Resolv::File)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a/../../etc/passwd") && err.contains("test/img:1"),
            "{err}"
        );
        let link = raw_tar(&[
            ("a", tar::EntryType::Regular, ""),
            ("b", tar::EntryType::Link, "../a"),
        ]);
        let err = place_vec(&link, "p", Resolv::File).unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains(".."), "{err}");
    }

    #[test]
    fn normalize_rules() {
        assert_eq!(normalize(b"/./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"a/../b").is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A name component that never collides with the drop list or the touch set.
        fn component() -> impl Strategy<Value = String> {
            "[a-z0-9_][a-z0-9_.-]{0,40}".prop_filter("not . or ..", |c| c != "." && c != "..")
        }

        fn kind() -> impl Strategy<Value = u8> {
            0u8..7
        }

        prop_compose! {
            fn entry_spec()(
                dirs in proptest::collection::vec(component(), 0..6),
                leaf in component(),
                k in kind(),
                mode in 0u32..0o10000,
                uid in prop_oneof![0u64..70000, 2_000_000u64..5_000_000_000],
                gid in prop_oneof![0u64..70000, 2_000_000u64..5_000_000_000],
                mtime in 0u64..8_589_934_591,
                target in "[ -~]{1,300}",
                data in proptest::collection::vec(any::<u8>(), 0..2000),
                xattr in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40)),
                major in 0u32..4096,
                minor in 0u32..1_000_000,
            ) -> (String, u8, u32, u64, u64, u64, String, Vec<u8>, Option<Vec<u8>>, u32, u32) {
                let mut path = dirs.join("/");
                if !path.is_empty() { path.push('/'); }
                path.push('x');
                path.push_str(&leaf);
                (path, k, mode, uid, gid, mtime, target, data, xattr, major, minor)
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Every entry of any image survives placement with its header, content, long
            /// names and targets, xattrs and big ids; hard links are re-prefixed; the touch set
            /// is added after the image's entries.
            #[test]
            fn placement_preserves_entries(specs in proptest::collection::vec(entry_spec(), 1..25)) {
                let mut input: Vec<(Entry, Vec<u8>)> = Vec::new();
                let mut seen_files: Vec<String> = Vec::new();
                let mut names = std::collections::HashSet::new();
                for (path, k, mode, uid, gid, mtime, target, data, xattr, major, minor) in specs {
                    if !names.insert(path.clone()) { continue; }
                    let kind = match k {
                        0 => Kind::File,
                        1 => Kind::Dir,
                        2 => Kind::Symlink(target.into_bytes()),
                        3 if !seen_files.is_empty() => Kind::Link(seen_files[major as usize % seen_files.len()].clone().into_bytes()),
                        4 => Kind::Char { major, minor },
                        5 => Kind::Block { major, minor },
                        _ => Kind::Fifo,
                    };
                    let size = if kind == Kind::File { data.len() as u64 } else { 0 };
                    let mut e = Entry::new(path.clone(), kind.clone(), mode, mtime, size);
                    (e.uid, e.gid) = (uid, gid);
                    e.uname = b"someone".to_vec();
                    if let Some(x) = xattr {
                        e.pax.push(("SCHILY.xattr.user.test".into(), x));
                    }
                    if kind == Kind::File { seen_files.push(path); }
                    let d = if size > 0 { data } else { Vec::new() };
                    input.push((e, d));
                }
                let refs: Vec<(Entry, &[u8])> = input.iter().map(|(e, d)| (e.clone(), d.as_slice())).collect();
                let tar = tar_of(&refs);
                let out = place_vec(&tar, "containers/onboot/000-p/lower", Resolv::File).unwrap();
                prop_assert_eq!(out.len(), input.len() + TOUCH.len());
                for ((want, data), (got, got_data)) in input.iter().zip(&out) {
                    let mut want = want.clone();
                    want.path = join("containers/onboot/000-p/lower", &want.path);
                    if let Kind::Link(t) = &want.kind {
                        want.kind = Kind::Link(join("containers/onboot/000-p/lower", t));
                    }
                    prop_assert_eq!(&want, got);
                    prop_assert_eq!(data, got_data);
                }
            }

            /// Arbitrary bytes never make placement panic.
            #[test]
            fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let _ = place_vec(&bytes, "p", Resolv::Symlink);
            }
        }
    }
}
