//! OCI image layouts written by tests, byte by byte (so layers can hold what no image
//! builder would write: `../escape`, absolute names, symlink traversals), and pushed to a
//! test registry with `skopeo copy --all` (Debian package skopeo; scripts/setup.sh).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::engine::Registry;
use super::run_ok;

/// One member of a test layer; names are stored exactly as given.
#[derive(Debug, Clone)]
pub enum Member {
    File(String, Vec<u8>),
    Dir(String),
    Sym(String, String),
    Hard(String, String),
}

pub fn file(name: &str, data: &[u8]) -> Member {
    Member::File(name.into(), data.into())
}

pub fn dir(name: &str) -> Member {
    Member::Dir(name.into())
}

pub fn sym(name: &str, target: &str) -> Member {
    Member::Sym(name.into(), target.into())
}

pub fn hard(name: &str, target: &str) -> Member {
    Member::Hard(name.into(), target.into())
}

/// An uncompressed layer tar holding `members` with their names as given (old-style
/// headers, names up to 100 bytes), mtime 1000, root-owned.
pub fn layer_tar(members: &[Member]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_old();
        let (name, ty, link, data, mode): (&str, _, &str, &[u8], u32) = match m {
            Member::File(n, d) => (n, tar::EntryType::Regular, "", d, 0o644),
            Member::Dir(n) => (n, tar::EntryType::Directory, "", b"", 0o755),
            Member::Sym(n, t) => (n, tar::EntryType::Symlink, t, b"", 0o777),
            Member::Hard(n, t) => (n, tar::EntryType::Link, t, b"", 0o644),
        };
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("tar member");
    }
    b.into_inner().expect("tar")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// One image of a layout.
#[derive(Debug, Clone)]
pub struct Image {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Uncompressed layer tars, oldest first.
    pub layers: Vec<Vec<u8>>,
    /// Store the layers gzip-compressed.
    pub gzip: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Image {
    pub fn new(platform: &str, layers: Vec<Vec<u8>>) -> Image {
        Image {
            platform: platform.into(),
            layers,
            gzip: true,
            env: vec!["PATH=/bin".into()],
            cmd: vec!["/bin/sh".into()],
            labels: BTreeMap::new(),
        }
    }
}

/// An OCI image layout in a temporary directory.
pub struct Layout {
    pub dir: tempfile::TempDir,
    /// Digest of what index.json names (a manifest, or an index of several).
    pub top: String,
    /// Config digests (image IDs), in the order of the images.
    pub ids: Vec<String>,
    /// Layer blob digests of each image.
    pub layer_digests: Vec<Vec<String>>,
}

fn put(dir: &Path, bytes: &[u8]) -> (String, u64) {
    let d = sha256(bytes);
    let p = dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    std::fs::write(p, bytes).expect("blob");
    (d, bytes.len() as u64)
}

impl Layout {
    /// Writes `images` as a layout whose index.json names `tag` (`ref.name`): one image is
    /// a plain manifest, several are an image index with their platforms.
    pub fn write(images: &[Image], tag: &str) -> Layout {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("blobs/sha256")).expect("blobs dir");
        std::fs::write(d.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        let mut manifests = Vec::new();
        let mut ids = Vec::new();
        let mut layer_digests = Vec::new();
        for img in images {
            let mut p = img.platform.split('/');
            let (os, arch, variant) = (p.next().unwrap(), p.next().unwrap(), p.next());
            let mut layers = Vec::new();
            let mut diff_ids = Vec::new();
            let mut digests = Vec::new();
            for l in &img.layers {
                diff_ids.push(sha256(l));
                let (blob, ty) = if img.gzip {
                    (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
                } else {
                    (l.clone(), "application/vnd.oci.image.layer.v1.tar")
                };
                let (digest, size) = put(d, &blob);
                digests.push(digest.clone());
                layers.push(serde_json::json!({"mediaType": ty, "digest": digest, "size": size}));
            }
            let mut config = serde_json::json!({
                "architecture": arch, "os": os,
                "config": {"Env": img.env, "Cmd": img.cmd, "Labels": img.labels},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [],
            });
            if let Some(v) = variant {
                config["variant"] = v.into();
            }
            let (cdigest, csize) = put(d, &serde_json::to_vec(&config).unwrap());
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
                "layers": layers,
            });
            let (mdigest, msize) = put(d, &serde_json::to_vec(&manifest).unwrap());
            let mut platform = serde_json::json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = v.into();
            }
            manifests.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": mdigest, "size": msize, "platform": platform,
            }));
            ids.push(cdigest);
            layer_digests.push(digests);
        }
        let ann = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        let mut top = if manifests.len() == 1 {
            manifests[0].clone()
        } else {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            });
            let (digest, size) = put(d, &serde_json::to_vec(&index).unwrap());
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": digest, "size": size,
            })
        };
        top["annotations"] = ann;
        let top_digest = top["digest"].as_str().unwrap().to_string();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(d.join("index.json"), serde_json::to_vec(&index).unwrap())
            .expect("index.json");
        Layout {
            dir,
            top: top_digest,
            ids,
            layer_digests,
        }
    }

    /// `skopeo copy --all` of the layout's `tag` to `<registry>/<repo>:<tag>` (with the
    /// registry's credentials, plain HTTP); returns that reference.
    pub fn push(&self, tag: &str, registry: &Registry, repo: &str) -> String {
        let remote = format!("{}/{repo}:{tag}", registry.host());
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--all", "--preserve-digests"])
                .arg("--dest-creds")
                .arg(format!("{}:{}", registry.user, registry.password))
                .arg("--dest-tls-verify=false")
                .arg(format!("oci:{}:{tag}", self.dir.path().display()))
                .arg(format!("docker://{remote}")),
        );
        remote
    }
}
