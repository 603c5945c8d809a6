//! The image cache (SPEC §7, §10): image streams kept on disk, keyed by what they are made
//! of — never by a name — so that a rebuild whose images did not change exports nothing.
//! This module owns the directory and its rules; [`CachedSource`] is the image source that
//! wraps another one with it, [`entry`] the file format of one stream.
//!
//! # Layout
//!
//! ```text
//! <cache>/                      $XDG_CACHE_HOME/imagesmith, else ~/.cache/imagesmith
//!   CACHEDIR.TAG                so that backup tools skip it
//!   images/v1/<id hex>.<kind>   one image's stream (entry format 1, see [`entry`])
//!   images/v1/<id hex>.<kind>.json   its index record: the image id, the names it was
//!                               seen under, stream and file size, creation and last use
//!                               (seconds since the epoch)
//!   blobs/sha256/<hex>          registry blobs by digest (filled by the registry source;
//!                               counted and evicted by the same size limit, last use = the
//!                               file's modification time unless a `<hex>.json` says)
//!   tmp/                        entries being written: `<id hex>.<kind>.<pid>-<start>.*.tmp`
//! ```
//!
//! The key is the image ID (the config digest) + the entry format version (`v1`) + the
//! kind of stream (`engine`: the engine's export of a container, with what the engine adds;
//! another source whose stream of the same image differs in bytes uses another kind). The
//! filter and the placement are applied after the cache, so one entry serves every use of
//! an image, and a warm build writes the very bytes a cold one does.
//!
//! # Safety
//!
//! - An entry is written under `tmp/` and renamed into `images/` only once the source's
//!   stream ended cleanly, whole (it ends with the tar end-of-archive marker) and every byte
//!   was written; a killed build leaves at most a temporary file, which no build reads, and
//!   which a later run removes once the pid and start time in its name are gone.
//! - Every entry carries per-chunk checksums (1 MiB chunks, xxh3) checked as it is read, and
//!   a trailer checked when it is opened. Damage found before the first byte is handed out
//!   (a truncated file, a bad first chunk) drops the entry and the image is fetched from the
//!   source as if it were not cached. Damage found later drops the entry and fails the read;
//!   the build then starts over once without it (the build module does), unless its output
//!   is standard output or a device, in which case the build fails with that error.
//! - Several processes may share a cache: files appear only by rename, disappear only by
//!   unlink (an open reader keeps its file), and index records are replaced by rename (the
//!   last writer wins; a name seen at the same moment by two processes may be lost from
//!   the list, never the entry). No locks.
//! - Any failure of the cache itself — a full disk, a read-only directory — is a warning
//!   and the build goes on without caching.
//! - Entries are not synced to disk: an entry that a power loss truncated or zeroed fails
//!   its checks and is fetched again.
//!
//! # Size
//!
//! After each build the least recently used entries are removed until the cache is within
//! its limit ([`DEFAULT_LIMIT`], 10 GiB), sparing the entries the build used.

pub mod entry;
mod source;

pub use source::CachedSource;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::spec::reference::Reference;

/// The default size limit of the cache: 10 GiB.
pub const DEFAULT_LIMIT: u64 = 10 << 30;

/// The cache a build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    pub dir: PathBuf,
    /// Least recently used entries are evicted after the build down to this many bytes.
    pub limit: u64,
}

/// The default cache directory: `$XDG_CACHE_HOME/imagesmith` when that is an absolute path
/// (the XDG rule), else `$HOME/.cache/imagesmith`; `None` without either.
pub fn default_dir(xdg_cache_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    if let Some(x) = xdg_cache_home.filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(x).join("imagesmith"));
    }
    home.filter(|h| !h.is_empty())
        .map(|h| Path::new(h).join(".cache").join("imagesmith"))
}

/// Parses a size: a number of bytes, or with a unit `K`, `M`, `G`, `T` (powers of 1024;
/// `KiB`, `KB`, `k` … are read alike), fractions allowed (`1.5G`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid size `{s}`: expected e.g. 500M, 10G or 1.5GiB"
            ));
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid size `{s}`: expected e.g. 500M, 10G or 1.5GiB"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("invalid size `{s}`"));
    }
    Ok(bytes as u64)
}

/// The index record of an image entry (`<entry>.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// `sha256:…`
    pub id: String,
    /// The kind of stream (`engine`).
    pub kind: String,
    /// Normalised references the image was used under, sorted.
    pub names: Vec<String>,
    /// The stream's length.
    pub size: u64,
    /// The entry file's length.
    pub file_size: u64,
    /// Seconds since the epoch.
    pub created: u64,
    pub last_used: u64,
}

/// One thing in the cache, as `ls` and eviction see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The data file.
    pub path: PathBuf,
    /// Its index record, if any.
    pub meta_path: Option<PathBuf>,
    /// `Some` for image entries.
    pub meta: Option<Meta>,
    /// Bytes on disk (data + record).
    pub disk: u64,
    pub last_used: u64,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root`, created if missing; removes the temporary files of runs that are
    /// gone.
    pub fn open(root: &Path) -> io::Result<Cache> {
        let c = Cache {
            root: root.to_path_buf(),
        };
        fs::create_dir_all(c.images_dir())?;
        fs::create_dir_all(c.tmp_dir())?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# imagesmith's image cache; `imagesmith cache prune --all` empties it.\n",
            );
        }
        c.remove_stale_temporaries();
        Ok(c)
    }

    /// The cache at `root` as it is, created or not (for `ls`, `rm`, `prune`).
    pub fn at(root: &Path) -> Cache {
        Cache {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images").join(format!("v{}", entry::FORMAT))
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The data file of image `id`'s `kind` stream; `None` for an id that is not
    /// `sha256:<64 hex>` (never cached).
    pub fn entry_path(&self, id: &str, kind: &str) -> Option<PathBuf> {
        entry::id_bytes(id)?;
        let hex = id.strip_prefix("sha256:")?;
        Some(self.images_dir().join(format!("{hex}.{kind}")))
    }

    fn meta_path(data: &Path) -> PathBuf {
        let mut p = data.as_os_str().to_owned();
        p.push(".json");
        PathBuf::from(p)
    }

    /// Reads the index record of an entry.
    pub fn read_meta(data: &Path) -> Option<Meta> {
        let text = fs::read(Self::meta_path(data)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Replaces the index record of an entry (temporary file + rename).
    pub fn write_meta(&self, data: &Path, meta: &Meta) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("meta.{}.", owner_tag()))
            .suffix(".tmp")
            .tempfile_in(self.tmp_dir())?;
        io::Write::write_all(&mut tmp, &json)?;
        tmp.persist(Self::meta_path(data)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Records a use of the entry at `data` under `name` now.
    pub fn touch(&self, data: &Path, id: &str, kind: &str, name: &str) {
        let mut m = Self::read_meta(data).unwrap_or_else(|| Meta {
            id: id.to_string(),
            kind: kind.to_string(),
            size: 0,
            file_size: fs::metadata(data).map(|m| m.len()).unwrap_or(0),
            created: now(),
            ..Meta::default()
        });
        if !name.is_empty() && !m.names.iter().any(|n| n == name) {
            m.names.push(name.to_string());
            m.names.sort();
        }
        m.last_used = now();
        if let Err(e) = self.write_meta(data, &m) {
            log::debug!("cache: cannot update {}: {e}", data.display());
        }
    }

    /// Removes an entry and its record (a missing file is no error: another process may
    /// have removed it first).
    pub fn remove_entry(data: &Path) -> io::Result<()> {
        for p in [data.to_path_buf(), Self::meta_path(data)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every image entry and blob, most recently used first.
    pub fn list(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        if let Ok(rd) = fs::read_dir(self.images_dir()) {
            for e in rd.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "json") {
                    continue;
                }
                let meta_path = Self::meta_path(&path);
                let meta = Self::read_meta(&path);
                let mtime = mtime_secs(&path);
                items.push(Item {
                    disk: size(&path) + size(&meta_path),
                    last_used: meta.as_ref().map_or(mtime, |m| m.last_used.max(mtime)),
                    meta: meta.or_else(|| {
                        // An entry without a record (its writer died between the two
                        // renames): named by its file name.
                        let name = path.file_name()?.to_str()?;
                        let (hex, kind) = name.split_once('.')?;
                        Some(Meta {
                            id: format!("sha256:{hex}"),
                            kind: kind.to_string(),
                            file_size: size(&path),
                            ..Meta::default()
                        })
                    }),
                    meta_path: Some(meta_path),
                    path,
                });
            }
        }
        if let Ok(rd) = fs::read_dir(self.blobs_dir()) {
            for e in rd.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "json") {
                    continue;
                }
                let meta_path = Self::meta_path(&path);
                let has_meta = meta_path.exists();
                items.push(Item {
                    disk: size(&path) + size(&meta_path),
                    last_used: Self::read_meta(&path)
                        .map_or_else(|| mtime_secs(&path), |m| m.last_used),
                    meta: None,
                    meta_path: has_meta.then_some(meta_path),
                    path,
                });
            }
        }
        items.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then_with(|| a.path.cmp(&b.path))
        });
        items
    }

    /// Bytes the cache takes (entries, records, blobs; not temporary files).
    pub fn total(&self) -> u64 {
        self.list().iter().map(|i| i.disk).sum()
    }

    /// Removes least recently used items until the cache takes at most `limit` bytes,
    /// sparing the data files in `keep`. Returns what was removed.
    pub fn evict(&self, limit: u64, keep: &[PathBuf]) -> Vec<Item> {
        let items = self.list();
        let mut total: u64 = items.iter().map(|i| i.disk).sum();
        let mut removed = Vec::new();
        for item in items.into_iter().rev() {
            if total <= limit {
                break;
            }
            if keep.contains(&item.path) {
                continue;
            }
            match Self::remove_entry(&item.path) {
                Ok(()) => {
                    total = total.saturating_sub(item.disk);
                    removed.push(item);
                }
                Err(e) => log::warn!("cache: cannot remove {}: {e}", item.path.display()),
            }
        }
        removed
    }

    /// The image entries matching `what`: a reference (any name the entry was used under,
    /// normalised as the YAML's are), or an image id or a prefix of one (with or without
    /// `sha256:`). An id prefix must match one image only.
    pub fn find(&self, what: &str) -> Result<Vec<Item>, String> {
        let images: Vec<Item> = self
            .list()
            .into_iter()
            .filter(|i| i.meta.is_some())
            .collect();
        let name = Reference::parse(what).map(|r| r.to_string()).ok();
        let by_name: Vec<Item> = images
            .iter()
            .filter(|i| {
                i.meta.as_ref().is_some_and(|m| {
                    m.names
                        .iter()
                        .any(|n| Some(n) == name.as_ref() || n == what)
                })
            })
            .cloned()
            .collect();
        if !by_name.is_empty() {
            return Ok(by_name);
        }
        let hex = what
            .strip_prefix("sha256:")
            .unwrap_or(what)
            .to_ascii_lowercase();
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("no cached image is named `{what}`"));
        }
        let by_id: Vec<Item> = images
            .into_iter()
            .filter(|i| {
                i.meta.as_ref().is_some_and(|m| {
                    m.id.strip_prefix("sha256:")
                        .unwrap_or(&m.id)
                        .starts_with(&hex)
                })
            })
            .collect();
        let ids: std::collections::BTreeSet<&str> = by_id
            .iter()
            .filter_map(|i| i.meta.as_ref().map(|m| m.id.as_str()))
            .collect();
        match ids.len() {
            0 => Err(format!("no cached image is named `{what}` or has that id")),
            1 => Ok(by_id),
            n => Err(format!(
                "`{what}` is the start of {n} cached image ids: give more of it"
            )),
        }
    }

    /// Removes everything: entries, blobs, and temporary files of runs that are gone.
    pub fn clear(&self) -> Vec<Item> {
        self.evict(0, &[])
    }

    /// Removes temporary files whose writer is gone (killed, or the machine restarted).
    pub fn remove_stale_temporaries(&self) {
        let Ok(rd) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(".tmp") {
                continue;
            }
            // `<…>.<pid>-<start>.<random>.tmp`: the owner is the second-to-last field
            // before `.tmp`.
            let mut fields = name.trim_end_matches(".tmp").rsplit('.');
            let _random = fields.next();
            let Some((pid, start)) = fields
                .next()
                .and_then(|o| o.split_once('-'))
                .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
            else {
                continue;
            };
            let alive = match crate::owner::start_time(pid) {
                Some(now) => start == 0 || now == start,
                None => false,
            };
            if !alive {
                let path = e.path();
                match fs::remove_file(&path) {
                    Ok(()) => log::debug!(
                        "cache: removed {}, left by process {pid}, which is gone",
                        path.display()
                    ),
                    Err(err) => log::debug!("cache: cannot remove {}: {err}", path.display()),
                }
            }
        }
    }
}

/// `<pid>-<start time>` of this process, for temporary file names.
pub(crate) fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{pid}-{}", crate::owner::start_time(pid).unwrap_or(0))
}

fn mtime_secs(p: &Path) -> u64 {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-12-07 03:10:00 UTC` for seconds since the epoch.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_follows_xdg() {
        assert_eq!(
            default_dir(Some("/x/cache"), Some("/home/u")),
            Some(PathBuf::from("/x/cache/imagesmith"))
        );
        // A relative XDG_CACHE_HOME is ignored, as the XDG rules say.
        assert_eq!(
            default_dir(Some("rel"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/imagesmith"))
        );
        assert_eq!(
            default_dir(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/imagesmith"))
        );
        assert_eq!(default_dir(None, None), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5 M"), Ok(3 << 19));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_492_533_000), "2017-04-18 16:30:00 UTC");
        assert_eq!(format_time(951_825_600), "2000-02-29 12:00:00 UTC");
    }
}
