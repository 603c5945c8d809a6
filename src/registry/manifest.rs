//! The image documents a registry or an archive holds, read leniently and bounded: image
//! indexes (OCI index, Docker manifest list), image manifests (OCI, Docker schema 2) and
//! image configs; and the choice of a manifest from an index for a platform (our own
//! resolver: it honours the variant and skips attestation entries, `unknown/unknown`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::source::{ImageInfo, normalize_arch};

/// Manifests and indexes larger than this are refused (containerd uses the same limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Image configs larger than this are refused.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Every manifest type we read, for `Accept`.
pub const ACCEPT: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parses a normalised `os/arch[/variant]` (see `source::normalize_platform`).
    pub fn parse(normalised: &str) -> Platform {
        let mut p = normalised.split('/');
        Platform {
            os: p.next().unwrap_or_default().to_string(),
            architecture: p.next().unwrap_or_default().to_string(),
            variant: p.next().unwrap_or_default().to_string(),
        }
    }

    /// The machine this runs on (what the docker CLI would pick).
    pub fn host() -> Platform {
        let architecture = normalize_arch(std::env::consts::ARCH).to_string();
        let variant = match architecture.as_str() {
            "arm64" => "v8",
            "arm" => "v7",
            _ => "",
        };
        Platform {
            os: "linux".into(),
            architecture,
            variant: variant.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An index or a manifest: which one it is follows from `mediaType`, else its fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Document {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Descriptor>,
}

/// What a document is.
pub enum Parsed {
    Index(Vec<Descriptor>),
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Reads a manifest or index (`content_type`: the HTTP header, if any).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let d: Document =
        serde_json::from_slice(bytes).map_err(|e| format!("not a manifest or index: {e}"))?;
    if d.schema_version != 2 {
        return Err(format!(
            "unsupported manifest schema version {} (only 2)",
            d.schema_version
        ));
    }
    let ty = if d.media_type.is_empty() {
        content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    } else {
        d.media_type.as_str()
    };
    let is_index = match ty {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ => d.config.is_none() && !d.manifests.is_empty(),
    };
    if is_index {
        return Ok(Parsed::Index(d.manifests));
    }
    let config = d
        .config
        .ok_or_else(|| format!("manifest of type `{ty}` has no config"))?;
    for l in &d.layers {
        let m = l.media_type.as_str();
        let ok = m.is_empty()
            || m.starts_with("application/vnd.oci.image.layer.")
            || m.starts_with("application/vnd.docker.image.rootfs.");
        if !ok {
            return Err(format!(
                "layer {} has media type `{m}`, not a file-system layer",
                l.digest
            ));
        }
    }
    Ok(Parsed::Manifest {
        config,
        layers: d.layers,
    })
}

fn is_attestation(d: &Descriptor) -> bool {
    d.annotations
        .get("vnd.docker.reference.type")
        .is_some_and(|t| t == "attestation-manifest")
        || d.platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown")
}

/// The platforms an index offers (attestations left out), for messages.
pub fn platforms(entries: &[Descriptor]) -> Vec<String> {
    entries
        .iter()
        .filter(|d| !is_attestation(d))
        .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
        .collect()
}

/// The entry of an index for `want`: same OS and architecture (aliases normalised), and
/// the variant when one is wanted (an entry without variant matches `arm64/v8`). Without a
/// wanted variant, an entry with the host's default variant (or none) is preferred.
pub fn pick<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let matching = |d: &&'a Descriptor| {
        if is_attestation(d) {
            return false;
        }
        let Some(p) = &d.platform else { return false };
        let arch = normalize_arch(&p.architecture.to_ascii_lowercase()).to_string();
        p.os.eq_ignore_ascii_case(&want.os) && arch == want.architecture
    };
    let variant_ok = |d: &Descriptor, v: &str| {
        let have = d.platform.as_ref().map_or("", |p| p.variant.as_str());
        have.eq_ignore_ascii_case(v)
            || (have.is_empty() && want.architecture == "arm64" && v == "v8")
    };
    if !want.variant.is_empty() {
        return entries
            .iter()
            .filter(matching)
            .find(|d| variant_ok(d, &want.variant));
    }
    let default_variant = match want.architecture.as_str() {
        "arm64" => "v8",
        "arm" => "v7",
        _ => "",
    };
    entries
        .iter()
        .filter(matching)
        .find(|d| variant_ok(d, default_variant))
        .or_else(|| entries.iter().find(matching))
}

/// The part of an image config imagesmith reads.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// An [`ImageInfo`] from a config blob (`id`: its digest), as the engine's inspect fills it.
pub fn image_info(reference: &str, id: &str, config: &[u8]) -> Result<ImageInfo, String> {
    let c: ConfigFile = serde_json::from_slice(config)
        .map_err(|e| format!("config {id} is not an image config: {e}"))?;
    let r = c.config.unwrap_or_default();
    Ok(ImageInfo {
        reference: reference.to_string(),
        id: id.to_string(),
        os: c.os.unwrap_or_default(),
        architecture: c.architecture.unwrap_or_default(),
        variant: c.variant.unwrap_or_default(),
        entrypoint: r.entrypoint.unwrap_or_default(),
        cmd: r.cmd.unwrap_or_default(),
        env: r.env,
        working_dir: r.working_dir.unwrap_or_default(),
        labels: r.labels.unwrap_or_default(),
        size: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform::parse(p)),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platform_choice() {
        let mut att = entry("unknown/unknown", "att");
        att.annotations.insert(
            "vnd.docker.reference.type".into(),
            "attestation-manifest".into(),
        );
        let idx = vec![
            att,
            entry("linux/amd64", "amd"),
            entry("linux/arm/v6", "v6"),
            entry("linux/arm/v7", "v7"),
            entry("linux/arm64", "arm64"),
            entry("linux/aarch64/v9", "v9"),
        ];
        let p = |s| pick(&idx, &Platform::parse(s)).map(|d| d.digest.as_str());
        assert_eq!(p("linux/amd64"), Some("amd"));
        assert_eq!(p("linux/arm/v7"), Some("v7"));
        assert_eq!(p("linux/arm/v6"), Some("v6"));
        assert_eq!(p("linux/arm/v5"), None);
        assert_eq!(p("linux/arm64/v8"), Some("arm64"));
        assert_eq!(p("linux/arm64/v9"), Some("v9"));
        assert_eq!(p("linux/arm64"), Some("arm64"));
        assert_eq!(p("linux/riscv64"), None);
        assert_eq!(p("unknown/unknown"), None);
        assert_eq!(
            platforms(&idx),
            [
                "linux/amd64",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64",
                "linux/aarch64/v9"
            ]
        );
    }

    #[test]
    fn documents() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:c","size":3},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:l","size":9}]}"#;
        assert!(matches!(parse(m, None), Ok(Parsed::Manifest { layers, .. }) if layers.len() == 1));
        let i = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(matches!(parse(i, Some(OCI_INDEX)), Ok(Parsed::Index(v)) if v.len() == 1));
        assert!(matches!(parse(i, None), Ok(Parsed::Index(_))));
        for bad in [
            &b"{}"[..],
            b"[]",
            b"nul",
            br#"{"schemaVersion":1}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
            br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":1},"layers":[{"mediaType":"application/x-helm","digest":"sha256:l","size":1}]}"#,
        ] {
            assert!(parse(bad, None).is_err());
        }
    }

    #[test]
    fn configs() {
        let c = br#"{"architecture":"arm64","variant":"v8","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"Entrypoint":null,"WorkingDir":"/w","Labels":{"a":"b"}}}"#;
        let i = image_info("r", "sha256:x", c).unwrap();
        assert_eq!(
            (i.os.as_str(), i.architecture.as_str(), i.variant.as_str()),
            ("linux", "arm64", "v8")
        );
        assert_eq!(i.env, Some(vec!["PATH=/bin".to_string()]));
        assert_eq!(i.cmd, ["/bin/sh"]);
        assert!(i.entrypoint.is_empty());
        assert_eq!(i.working_dir, "/w");
        assert_eq!(i.labels.get("a").map(String::as_str), Some("b"));
        let bare = image_info("r", "sha256:x", br#"{"os":"linux"}"#).unwrap();
        assert_eq!(bare.env, None);
        assert!(image_info("r", "sha256:x", b"[1]").is_err());
    }
}
