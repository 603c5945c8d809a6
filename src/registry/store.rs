//! The content-addressed part of the cache directory (issues #13, #14), shared by registry
//! pulls and `cache import`:
//!
//! - `blobs/sha256/<hex>`: manifests, configs and layers, by digest, exactly as the
//!   registry (or archive) had them. A blob is written to `tmp/` while its sha256 and size
//!   are checked, and renamed into place only when both match: a blob in `blobs/` is always
//!   whole and verified; a mismatch fails naming the digest and leaves nothing behind.
//! - `images/sha256/<config-hex>.tar`: an image's flattened file system (before filtering
//!   and placement), keyed by the image ID; written to `tmp/` and renamed.
//! - `refs/<sha256 of the reference>.json`: references that `cache import` loaded, mapped to
//!   their manifest (or index) digest, so a later build resolves them with no network.
//!
//! Several processes may share the directory: every file appears by an atomic rename.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {digest}: digest mismatch: the content received has {actual}")]
    Digest { digest: String, actual: String },
    #[error("blob {digest}: size mismatch: expected {expected} bytes, {got}")]
    Size {
        digest: String,
        expected: u64,
        got: String,
    },
    #[error("blob {digest}: larger than the limit of {limit} bytes")]
    TooLarge { digest: String, limit: u64 },
    #[error("invalid digest `{0}`: only sha256:<64 lower-case hex digits> is supported")]
    BadDigest(String),
    #[error("cache {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest, checked.
pub fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(StoreError::BadDigest(digest.to_string())),
    }
}

/// A reference recorded by `cache import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// The normalised reference (`docker.io/library/alpine:3.20`).
    pub reference: String,
    /// The manifest or index it names.
    pub digest: String,
    /// Where it came from (`docker save archive /path`, …).
    pub source: String,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, sub: &str) -> Result<PathBuf, StoreError> {
        let d = self.root.join(sub);
        fs::create_dir_all(&d).map_err(io_err(&d))?;
        Ok(d)
    }

    /// Where blob `digest` is (or would be).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Whether blob `digest` is stored (with `size` bytes, when given).
    pub fn has_blob(&self, digest: &str, size: Option<u64>) -> bool {
        self.blob_path(digest)
            .ok()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|m| m.is_file() && size.is_none_or(|s| m.len() == s))
    }

    /// Starts writing a blob. `digest`: what it must hash to (`None`: whatever it hashes
    /// to, for archive members named otherwise); `size`: its exact size, if known;
    /// `limit`: the most bytes accepted.
    pub fn writer(
        &self,
        digest: Option<&str>,
        size: Option<u64>,
        limit: u64,
    ) -> Result<BlobWriter, StoreError> {
        if let Some(d) = digest {
            digest_hex(d)?;
        }
        let tmp = self.dir("tmp")?;
        let file = tempfile::NamedTempFile::new_in(&tmp).map_err(io_err(&tmp))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: io::BufWriter::with_capacity(256 * 1024, file),
            hash: Sha256::new(),
            written: 0,
            digest: digest.map(str::to_string),
            size,
            limit: size.map_or(limit, |s| s.min(limit)),
        })
    }

    /// Stores what `r` yields as blob `digest`, checked (see [`Store::writer`]).
    pub fn put(
        &self,
        digest: Option<&str>,
        size: Option<u64>,
        limit: u64,
        r: &mut dyn Read,
    ) -> Result<(String, PathBuf), StoreError> {
        let mut w = self.writer(digest, size, limit)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StoreError::Io {
                        path: format!("reading blob {}", digest.unwrap_or("(new)")),
                        source,
                    });
                }
            };
            w.write(&buf[..n])?;
        }
        w.commit()
    }

    /// A stored blob's bytes, for small blobs (manifests, configs): at most `limit` bytes,
    /// its digest checked again.
    pub fn read_small(&self, digest: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(digest)?;
        let f = File::open(&p).map_err(io_err(&p))?;
        let mut v = Vec::new();
        f.take(limit + 1).read_to_end(&mut v).map_err(io_err(&p))?;
        if v.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                digest: digest.to_string(),
                limit,
            });
        }
        let actual = sha256_digest(&v);
        if actual != digest {
            return Err(StoreError::Digest {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(v)
    }

    /// Where the flattened file system of the image with config digest `id` is kept.
    pub fn image_path(&self, id: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .root
            .join("images/sha256")
            .join(format!("{}.tar", digest_hex(id)?)))
    }

    /// A temporary file in the cache (same file system as its entries, for the rename).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let tmp = self.dir("tmp")?;
        tempfile::NamedTempFile::new_in(&tmp).map_err(io_err(&tmp))
    }

    /// Renames a finished temporary file to `dest`.
    pub fn install(&self, tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), StoreError> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        tmp.persist(dest).map_err(|e| StoreError::Io {
            path: dest.display().to_string(),
            source: e.error,
        })?;
        Ok(())
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        self.root.join("refs").join(format!(
            "{}.json",
            hex(&Sha256::digest(reference.as_bytes()))
        ))
    }

    /// Records `reference` → manifest `digest`.
    pub fn put_ref(&self, record: &RefRecord) -> Result<(), StoreError> {
        let dest = self.ref_path(&record.reference);
        let mut tmp = self.temp_file()?;
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Io {
            path: dest.display().to_string(),
            source: io::Error::other(e),
        })?;
        tmp.write_all(&json).map_err(io_err(&dest))?;
        self.install(tmp, &dest)
    }

    /// The record of `reference`, if `cache import` made one.
    pub fn get_ref(&self, reference: &str) -> Option<RefRecord> {
        let text = fs::read(self.ref_path(reference)).ok()?;
        if text.len() > 64 * 1024 {
            return None;
        }
        let r: RefRecord = serde_json::from_slice(&text).ok()?;
        (r.reference == reference && digest_hex(&r.digest).is_ok()).then_some(r)
    }
}

/// A blob being written: hashed and counted as it comes, installed by [`BlobWriter::commit`]
/// only when digest and size match. Dropped without commit, it leaves nothing.
pub struct BlobWriter {
    store: Store,
    file: io::BufWriter<tempfile::NamedTempFile>,
    hash: Sha256,
    written: u64,
    digest: Option<String>,
    size: Option<u64>,
    limit: u64,
}

impl BlobWriter {
    fn name(&self) -> String {
        self.digest.clone().unwrap_or_else(|| "(new)".into())
    }

    /// Appends bytes; fails as soon as they exceed the declared size or the limit.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let total = self.written + buf.len() as u64;
        if total > self.limit {
            return Err(match self.size {
                Some(expected) if expected <= self.limit => StoreError::Size {
                    digest: self.name(),
                    expected,
                    got: "received more".into(),
                },
                _ => StoreError::TooLarge {
                    digest: self.name(),
                    limit: self.limit,
                },
            });
        }
        self.hash.update(buf);
        self.written = total;
        self.file.write_all(buf).map_err(|source| StoreError::Io {
            path: self.store.root.join("tmp").display().to_string(),
            source,
        })
    }

    /// Checks size and digest and renames the blob into place; returns its digest and path.
    pub fn commit(self) -> Result<(String, PathBuf), StoreError> {
        let actual = format!("sha256:{}", hex(&self.hash.finalize()));
        let name = self.digest.clone().unwrap_or_else(|| actual.clone());
        if let Some(expected) = self.size
            && expected != self.written
        {
            return Err(StoreError::Size {
                digest: name,
                expected,
                got: format!("received {}", self.written),
            });
        }
        if actual != name {
            return Err(StoreError::Digest {
                digest: name,
                actual,
            });
        }
        let tmp = self.file.into_inner().map_err(|e| StoreError::Io {
            path: "cache tmp".into(),
            source: e.into_error(),
        })?;
        let dest = self.store.blob_path(&actual)?;
        self.store.install(tmp, &dest)?;
        Ok((actual, dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(s: &Store) -> Vec<PathBuf> {
        let d = s.root().join("blobs/sha256");
        fs::read_dir(&d)
            .map(|r| r.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }

    fn tmp_files(s: &Store) -> usize {
        fs::read_dir(s.root().join("tmp")).map_or(0, |r| r.count())
    }

    #[test]
    fn verified_blobs_are_installed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let data = b"hello";
        let digest = sha256_digest(data);
        let (got, path) = s
            .put(Some(&digest), Some(5), 1 << 20, &mut &data[..])
            .unwrap();
        assert_eq!(got, digest);
        assert_eq!(fs::read(&path).unwrap(), data);
        assert!(s.has_blob(&digest, Some(5)));
        assert!(!s.has_blob(&digest, Some(6)));
        assert_eq!(s.read_small(&digest, 100).unwrap(), data);
        // Unknown digest: whatever it hashes to.
        let (got, _) = s.put(None, None, 100, &mut &b"other"[..]).unwrap();
        assert_eq!(got, sha256_digest(b"other"));
        assert_eq!(tmp_files(&s), 0);
    }

    #[test]
    fn mismatches_name_the_digest_and_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let digest = sha256_digest(b"hello");
        for (data, size, what) in [
            (&b"hellO"[..], Some(5), "digest mismatch"),
            (&b"hello, world"[..], Some(5), "size mismatch"),
            (&b"hell"[..], Some(5), "size mismatch"),
            (&b"hello"[..], Some(4), "size mismatch"),
        ] {
            let e = s
                .put(Some(&digest), size, 1 << 20, &mut &data[..])
                .unwrap_err();
            assert!(e.to_string().contains(&digest), "{e}");
            assert!(e.to_string().contains(what), "{e}");
            assert!(blobs(&s).is_empty());
            assert_eq!(tmp_files(&s), 0);
        }
        let e = s.put(None, None, 3, &mut &b"hello"[..]).unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { .. }), "{e}");
        assert!(matches!(
            s.put(Some("sha256:../../x"), None, 3, &mut &b""[..]),
            Err(StoreError::BadDigest(_))
        ));
        // A blob damaged in place is caught when read.
        let (_, p) = s
            .put(Some(&digest), Some(5), 100, &mut &b"hello"[..])
            .unwrap();
        fs::write(&p, b"jello").unwrap();
        assert!(matches!(
            s.read_small(&digest, 100),
            Err(StoreError::Digest { .. })
        ));
    }

    #[test]
    fn refs_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        let r = RefRecord {
            reference: "docker.io/library/x:1".into(),
            digest: sha256_digest(b"m"),
            source: "test".into(),
        };
        s.put_ref(&r).unwrap();
        assert_eq!(s.get_ref("docker.io/library/x:1"), Some(r));
        assert_eq!(s.get_ref("docker.io/library/x:2"), None);
    }
}
