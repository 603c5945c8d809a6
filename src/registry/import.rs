//! `imagesmith cache import PATH` (issue #14): loads a `docker save` archive, an OCI
//! archive (a tar of an image layout; either may be gzip-compressed) or an OCI image layout
//! directory into the cache's blob store, and records the image's references (`RepoTags`,
//! or the `io.containerd.image.name` / `org.opencontainers.image.ref.name` annotations when
//! they hold a full reference) so that a later registry-source build resolves them with no
//! network.
//!
//! Every file is streamed into the store, never held in memory (the small JSON documents
//! apart, bounded): `blobs/sha256/<hex>` files are checked against their name, other files
//! (`docker save`'s `layer.tar` and config files) are stored under the digest they hash to.
//! A `docker save` image gets an OCI manifest written for it; its layers are checked
//! against the config's `rootfs.diff_ids`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::MAX_LAYER_BLOB_BYTES;
use super::RegistryError;
use super::manifest::{
    self, Descriptor, Document, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, OCI_CONFIG, OCI_LAYER_TAR,
    OCI_MANIFEST, Parsed,
};
use super::store::{RefRecord, Store, StoreError, digest_hex};
use crate::archive::{self, Kind, ReadError};
use crate::rewrite::normalize;
use crate::spec::reference::Reference;

/// What an import loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// `(reference, manifest or index digest)`, sorted.
    pub references: Vec<(String, String)>,
    /// Manifests or indexes of the archive that name no full reference (reachable by
    /// `name@digest` only).
    pub unnamed: Vec<String>,
    /// Blobs written (those already cached not counted).
    pub blobs_written: usize,
}

/// The small documents of an archive, kept in memory.
const DOCS: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];

#[derive(Default)]
struct Loaded {
    docs: BTreeMap<String, Vec<u8>>,
    /// Archive member → digest of its content.
    files: BTreeMap<String, String>,
    /// Archive member → member it links to.
    aliases: Vec<(String, String)>,
    written: usize,
}

enum Fail {
    Read(ReadError),
    Msg(String),
}

impl From<ReadError> for Fail {
    fn from(e: ReadError) -> Fail {
        Fail::Read(e)
    }
}

impl Loaded {
    fn file(
        &mut self,
        store: &Store,
        name: &str,
        size: u64,
        r: &mut dyn Read,
    ) -> Result<(), String> {
        if DOCS.contains(&name) {
            let mut v = Vec::new();
            r.take(MAX_MANIFEST_BYTES + 1)
                .read_to_end(&mut v)
                .map_err(|e| format!("{name}: {e}"))?;
            if v.len() as u64 > MAX_MANIFEST_BYTES {
                return Err(format!("{name} is larger than {MAX_MANIFEST_BYTES} bytes"));
            }
            self.docs.insert(name.to_string(), v);
            return Ok(());
        }
        // Legacy `docker save` metadata that no manifest refers to.
        if name.ends_with("/json") || name.ends_with("/VERSION") {
            return Ok(());
        }
        let named = name
            .strip_prefix("blobs/sha256/")
            .map(|h| format!("sha256:{h}"))
            .filter(|d| digest_hex(d).is_ok());
        if let Some(d) = &named
            && store.has_blob(d, Some(size))
        {
            self.files.insert(name.to_string(), d.clone());
            return Ok(());
        }
        let (digest, _) = store
            .put(named.as_deref(), Some(size), MAX_LAYER_BLOB_BYTES, r)
            .map_err(|e| format!("{name}: {e}"))?;
        self.written += 1;
        self.files.insert(name.to_string(), digest);
        Ok(())
    }
}

/// Joins a link target to the directory of `name` (tar symlinks are relative).
fn resolve_link(name: &str, target: &[u8], symlink: bool) -> Option<String> {
    let mut full = Vec::new();
    if symlink
        && !target.starts_with(b"/")
        && let Some(i) = name.rfind('/')
    {
        full.extend_from_slice(&name.as_bytes()[..=i]);
    }
    full.extend_from_slice(target);
    // Resolve `..` within the archive.
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in full.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    String::from_utf8(parts.join(&b'/')).ok()
}

/// Loads the archive or layout at `path` into `store` (see the module documentation).
pub fn import(store: &Store, path: &Path) -> Result<ImportReport, RegistryError> {
    let shown = path.display().to_string();
    let fail = |message: String| RegistryError::Import {
        path: shown.clone(),
        message,
    };
    let meta = fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let mut loaded = Loaded::default();
    if meta.is_dir() {
        walk(store, path, "", &mut loaded, 0).map_err(fail)?;
    } else {
        let f = File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut b = BufReader::with_capacity(256 * 1024, f);
        let gz = b
            .fill_buf()
            .map_err(|e| fail(e.to_string()))?
            .starts_with(&[0x1f, 0x8b]);
        let r: Box<dyn Read> = if gz {
            Box::new(flate2::bufread::MultiGzDecoder::new(b))
        } else {
            Box::new(b)
        };
        archive::for_each_entry::<_, Fail, _>(r, |e, data| {
            let name = normalize(&e.path)
                .ok()
                .and_then(|n| String::from_utf8(n).ok())
                .ok_or_else(|| {
                    Fail::Msg(format!("member `{}`: not a usable name", e.display_path()))
                })?;
            match &e.kind {
                Kind::File => loaded.file(store, &name, e.size, data).map_err(Fail::Msg),
                Kind::Symlink(t) | Kind::Link(t) => {
                    let symlink = matches!(e.kind, Kind::Symlink(_));
                    if let Some(t) = resolve_link(&name, t, symlink) {
                        loaded.aliases.push((name, t));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .map_err(|f| match f {
            Fail::Read(e) => fail(format!("not a readable tar archive: {e}")),
            Fail::Msg(m) => fail(m),
        })?;
    }
    for (alias, target) in std::mem::take(&mut loaded.aliases) {
        if let Some(d) = loaded.files.get(&target).cloned() {
            loaded.files.insert(alias, d);
        }
    }
    let source = format!("cache import {shown}");
    let mut report = if loaded.docs.contains_key("manifest.json") {
        docker_save(store, &loaded).map_err(fail)?
    } else if loaded.docs.contains_key("index.json") {
        oci_layout(store, &loaded).map_err(fail)?
    } else {
        return Err(fail(
            "neither a `docker save` archive (no manifest.json) nor an OCI image layout (no index.json)".into(),
        ));
    };
    report.blobs_written = loaded.written;
    report.references.sort();
    report.references.dedup();
    for (reference, digest) in &report.references {
        store
            .put_ref(&RefRecord {
                reference: reference.clone(),
                digest: digest.clone(),
                source: source.clone(),
            })
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(report)
}

/// Reads a directory tree (regular files; symlinks are not followed).
fn walk(
    store: &Store,
    dir: &Path,
    prefix: &str,
    loaded: &mut Loaded,
    depth: usize,
) -> Result<(), String> {
    if depth > 8 {
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ty = e
            .file_type()
            .map_err(|err| format!("{}: {err}", e.path().display()))?;
        if ty.is_dir() {
            walk(store, &e.path(), &rel, loaded, depth + 1)?;
        } else if ty.is_file() {
            let f = File::open(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
            let size = f.metadata().map_err(|err| err.to_string())?.len();
            loaded.file(store, &rel, size, &mut BufReader::new(f))?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize, Default)]
struct ConfigRootFs {
    #[serde(default)]
    rootfs: RootFs,
}

fn blob_size(store: &Store, digest: &str) -> Result<u64, String> {
    let p = store.blob_path(digest).map_err(|e| e.to_string())?;
    fs::metadata(&p)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// A full reference from an archive's name, normalised; `None` for a bare tag.
fn full_reference(name: &str) -> Option<String> {
    if !name.contains('/') && !name.contains(':') && !name.contains('@') {
        return None;
    }
    Reference::parse(name).ok().map(|r| r.to_string())
}

fn docker_save(store: &Store, l: &Loaded) -> Result<ImportReport, String> {
    let entries: Vec<SaveEntry> = serde_json::from_slice(&l.docs["manifest.json"])
        .map_err(|e| format!("manifest.json: {e}"))?;
    let mut report = ImportReport::default();
    let member = |name: &str| {
        l.files
            .get(name.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| format!("manifest.json names `{name}`, which the archive lacks"))
    };
    for e in entries {
        let config = member(&e.config)?;
        let config_bytes = store
            .read_small(&config, MAX_CONFIG_BYTES)
            .map_err(|err| format!("config {}: {err}", e.config))?;
        manifest::image_info("", &config, &config_bytes)?;
        let c: ConfigRootFs = serde_json::from_slice(&config_bytes).unwrap_or_default();
        let mut layers = Vec::new();
        for (i, name) in e.layers.iter().enumerate() {
            let digest = member(name)?;
            // `docker save` layers are uncompressed: their digest is the diff ID.
            if let Some(diff) = c.rootfs.diff_ids.get(i)
                && *diff != digest
            {
                return Err(format!(
                    "layer `{name}` has {digest}, but the config's diff ID {i} is {diff}"
                ));
            }
            layers.push(Descriptor {
                media_type: OCI_LAYER_TAR.into(),
                size: blob_size(store, &digest)?,
                digest,
                ..Default::default()
            });
        }
        if !c.rootfs.diff_ids.is_empty() && c.rootfs.diff_ids.len() != layers.len() {
            return Err(format!(
                "config {config} lists {} layers, manifest.json {}",
                c.rootfs.diff_ids.len(),
                layers.len()
            ));
        }
        let doc = Document {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            config: Some(Descriptor {
                media_type: OCI_CONFIG.into(),
                size: config_bytes.len() as u64,
                digest: config.clone(),
                ..Default::default()
            }),
            layers,
            manifests: Vec::new(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
        let (digest, _) = store
            .put(
                None,
                Some(bytes.len() as u64),
                MAX_MANIFEST_BYTES,
                &mut &bytes[..],
            )
            .map_err(|e: StoreError| e.to_string())?;
        let tags = e.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            report.unnamed.push(digest.clone());
        }
        for t in tags {
            match full_reference(&t).or_else(|| Reference::parse(&t).ok().map(|r| r.to_string())) {
                Some(r) => report.references.push((r, digest.clone())),
                None => report.unnamed.push(digest.clone()),
            }
        }
    }
    Ok(report)
}

/// Checks that a manifest or index and what it needs are in the store; an index needs at
/// least one complete manifest.
fn complete(store: &Store, d: &Descriptor, depth: usize) -> Result<(), String> {
    if depth > 4 {
        return Err(format!("{}: indexes nested too deeply", d.digest));
    }
    let bytes = store
        .read_small(&d.digest, MAX_MANIFEST_BYTES)
        .map_err(|e| format!("{}: {e}", d.digest))?;
    match manifest::parse(&bytes, Some(&d.media_type)).map_err(|e| format!("{}: {e}", d.digest))? {
        Parsed::Manifest { config, layers } => {
            for b in std::iter::once(&config).chain(&layers) {
                if !store.has_blob(&b.digest, Some(b.size)) {
                    return Err(format!(
                        "manifest {} needs blob {}, which the layout lacks",
                        d.digest, b.digest
                    ));
                }
            }
            Ok(())
        }
        Parsed::Index(children) => {
            let mut last = format!("index {} lists no manifest", d.digest);
            for c in &children {
                match complete(store, c, depth + 1) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

fn oci_layout(store: &Store, l: &Loaded) -> Result<ImportReport, String> {
    let index: Document =
        serde_json::from_slice(&l.docs["index.json"]).map_err(|e| format!("index.json: {e}"))?;
    let mut report = ImportReport::default();
    for d in &index.manifests {
        digest_hex(&d.digest).map_err(|e| e.to_string())?;
        complete(store, d, 0)?;
        let names: Vec<String> = [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ]
        .iter()
        .filter_map(|k| d.annotations.get(*k))
        .filter_map(|n| full_reference(n))
        .collect();
        if names.is_empty() {
            report.unnamed.push(d.digest.clone());
        }
        for n in names {
            report.references.push((n, d.digest.clone()));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_resolve_inside_the_archive() {
        assert_eq!(
            resolve_link("a/layer.tar", b"../b/layer.tar", true).as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(
            resolve_link("a/layer.tar", b"b/layer.tar", false).as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(resolve_link("a/x", b"../../../etc/passwd", true), None);
    }

    #[test]
    fn names() {
        assert_eq!(full_reference("latest"), None);
        assert_eq!(
            full_reference("alpine:3").as_deref(),
            Some("docker.io/library/alpine:3")
        );
        assert_eq!(
            full_reference("127.0.0.1:5000/x/y:1").as_deref(),
            Some("127.0.0.1:5000/x/y:1")
        );
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path().join("cache"));
        for junk in [&b""[..], b"hello", &[0x1f, 0x8b, 0, 0][..]] {
            let f = d.path().join("junk");
            fs::write(&f, junk).unwrap();
            assert!(import(&store, &f).is_err());
        }
        let e = import(&store, &d.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
