//! The typed model of a LinuxKit YAML file, after parsing, merging several files and
//! validating (SPEC §2). Every field that may be absent is an `Option`, so that "absent" and
//! "present but empty" stay distinct: the label merge (§2.1) and the dry-run output need it.
//!
//! `Serialize` writes the model back with the YAML key names (`capabilities.add`,
//! `noNewPrivileges`, …); that is what `build --dry-run` and `files: metadata:` print.
//! Values are as written except image references, which are normalised.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::oci::types::{IdMapping, Mount, Resources};
use crate::spec::reference::Reference;

/// Where a value was written: file (as given on the command line, `<stdin>` for standard
/// input),
/// 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A whole (merged, validated) system description.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Kernel>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<ImageRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onboot: Vec<ImageEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onshutdown: Vec<ImageEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ImageEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Accepted and ignored (a warning says so); not written back out, as LinuxKit does not
    /// write it into its `metadata:` files either.
    #[serde(skip)]
    pub trust: Option<Trust>,
}

/// An image reference as written, with its normalised form (SPEC §2.3).
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// As written in the YAML.
    pub original: String,
    pub reference: Reference,
    pub pos: Pos,
}

impl ImageRef {
    /// The normalised reference, e.g. `docker.io/library/redis:latest`.
    pub fn normalized(&self) -> String {
        self.reference.to_string()
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.reference.to_string())
    }
}

/// `kernel:`. Fields keep "absent" distinct from "empty" for the multi-file merge (SPEC §1).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Kernel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ucode: Option<String>,
    #[serde(skip)]
    pub pos: Option<Pos>,
}

impl Kernel {
    pub fn cmdline(&self) -> &str {
        self.cmdline.as_deref().unwrap_or("")
    }
    /// The kernel file in the image (default `kernel`).
    pub fn binary(&self) -> &str {
        match self.binary.as_deref() {
            Some(b) if !b.is_empty() => b,
            _ => "kernel",
        }
    }
    /// The modules tarball in the image: default `kernel.tar`; `none` or "" = none.
    pub fn tar(&self) -> Option<&str> {
        match self.tar.as_deref() {
            None => Some("kernel.tar"),
            Some("") | Some("none") => None,
            Some(t) => Some(t),
        }
    }
    /// The microcode cpio in the image, if any.
    pub fn ucode(&self) -> Option<&str> {
        self.ucode.as_deref().filter(|u| !u.is_empty())
    }
}

/// An `onboot` / `onshutdown` / `services` entry.
#[derive(Debug, Clone, Serialize)]
pub struct ImageEntry {
    pub name: String,
    pub image: ImageRef,
    #[serde(flatten)]
    pub config: ImageConfig,
    #[serde(skip)]
    pub pos: Pos,
}

/// A uid/gid as written: a number, or a string (numeric, `root`, or a container name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Num(u64),
    Name(String),
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Num(n) => s.serialize_u64(*n),
            Id::Name(n) => s.serialize_str(n),
        }
    }
}

/// Every field of an image entry except `name` and `image`; also the typed form of an
/// `org.mobyproject.config` label. `None` = absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(rename = "capabilities.add", skip_serializing_if = "Option::is_none")]
    pub capabilities_add: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambient: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binds: Option<Vec<String>>,
    #[serde(rename = "binds.add", skip_serializing_if = "Option::is_none")]
    pub binds_add: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    #[serde(rename = "maskedPaths", skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    #[serde(rename = "readonlyPaths", skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<Id>,
    #[serde(rename = "additionalGids", skip_serializing_if = "Option::is_none")]
    pub additional_gids: Option<Vec<Id>>,
    #[serde(rename = "noNewPrivileges", skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    #[serde(rename = "oomScoreAdj", skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(rename = "rootfsPropagation", skip_serializing_if = "Option::is_none")]
    pub rootfs_propagation: Option<String>,
    #[serde(rename = "cgroupsPath", skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimits: Option<Vec<String>>,
    #[serde(rename = "uidMappings", skip_serializing_if = "Option::is_none")]
    pub uid_mappings: Option<Vec<IdMapping>>,
    #[serde(rename = "gidMappings", skip_serializing_if = "Option::is_none")]
    pub gid_mappings: Option<Vec<IdMapping>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
}

/// A `devices` entry. `path: all` allows every device of `type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    /// Octal string, e.g. "0666".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `runtime:`, consumed by LinuxKit's init (written to `runtime.json`). Each sub-field merges
/// on its own (YAML over label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Runtime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkdir: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    #[serde(rename = "bindNS", skip_serializing_if = "Option::is_none")]
    pub bind_ns: Option<BindNs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `runtime.bindNS`: paths where init binds the container's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BindNs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
}

/// `runtime.interfaces` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Interface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub add: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(rename = "createInRoot")]
    pub create_in_root: bool,
}

/// A `files` entry (SPEC §2.2). Validation guarantees exactly one content source.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// As written (validated: not empty, no `..` component); see [`FileEntry::output_path`].
    pub path: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub directory: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// As written; resolved by `build` (see `spec::resolve_source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataFormat>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Octal string as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<Id>,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataFormat {
    Yaml,
    Json,
}

/// What a files entry writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind<'a> {
    Contents(&'a str),
    Source(&'a str),
    Metadata(MetadataFormat),
    Directory,
    Symlink(&'a str),
}

impl FileEntry {
    /// The path in the output: leading `/` dropped (SPEC §2.2).
    pub fn output_path(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    /// The entry's single content source (validation rejects entries with none or several).
    pub fn kind(&self) -> Option<FileKind<'_>> {
        if self.directory {
            Some(FileKind::Directory)
        } else if let Some(s) = &self.symlink {
            Some(FileKind::Symlink(s))
        } else if let Some(c) = &self.contents {
            Some(FileKind::Contents(c))
        } else if let Some(s) = &self.source {
            Some(FileKind::Source(s))
        } else {
            self.metadata.map(FileKind::Metadata)
        }
    }
}

/// A `volumes` entry (SPEC §2.4).
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(skip)]
    pub pos: Pos,
}

/// `trust:` — accepted for compatibility and ignored (with a warning).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trust {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<Vec<String>>,
}

/// Where every container name of the file maps for `uid`/`gid`/`additionalGids` (SPEC §2.1):
/// 100, 101, … over onboot, then onshutdown, then services; a name used twice maps to the
/// later number.
pub fn id_map(spec: &Spec) -> BTreeMap<String, u32> {
    let all = spec
        .onboot
        .iter()
        .chain(&spec.onshutdown)
        .chain(&spec.services);
    id_map_from(all.map(|e| Some(e.name.as_str())))
}

/// [`id_map`] over the container names in file order: the `i`-th entry (from 0) is numbered
/// 100 + `i` (saturating at 2^32-1); an entry without a (readable) name takes its number but
/// maps nothing; a name used twice maps to the later number.
pub(crate) fn id_map_from<'a>(
    names: impl IntoIterator<Item = Option<&'a str>>,
) -> BTreeMap<String, u32> {
    let mut map = BTreeMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some(name) = name {
            let id = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(100);
            map.insert(name.to_string(), id);
        }
    }
    map
}
