//! The drafts the schema pass produces (the typed model before cross-checks), the reading
//! context [`Cx`] with its position type [`P`], and the key lists of every object.

use std::fmt;
use std::sync::Arc;

use crate::spec::Diagnostic;
use crate::spec::model::{FileEntry, Id, ImageConfig, ImageRef, Kernel, Pos, Trust, Volume};
use crate::spec::yaml::Node;

/// Where a value is, for messages: `services[2].capabilities[0]`.
#[derive(Clone, Copy)]
pub(crate) enum P<'a> {
    Root,
    Key(&'a P<'a>, &'a str),
    Index(&'a P<'a>, usize),
}

impl<'a> P<'a> {
    pub(super) fn key(&'a self, k: &'a str) -> P<'a> {
        P::Key(self, k)
    }
    pub(super) fn at(&'a self, i: usize) -> P<'a> {
        P::Index(self, i)
    }
}

impl fmt::Display for P<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            P::Root => write!(f, "(top level)"),
            P::Key(P::Root, k) => write!(f, "{k}"),
            P::Key(p, k) => write!(f, "{p}.{k}"),
            P::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// Which list a container entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Onboot,
    Onshutdown,
    Services,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "services",
        }
    }
}

/// A container entry as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct DraftEntry {
    /// `services[2]`, for messages.
    pub path: String,
    pub pos: Pos,
    pub name: Option<(String, Pos)>,
    pub image: Option<ImageRef>,
    pub config: ImageConfig,
    /// `uid`, `gid` and `additionalGids` values (with position and path), to resolve
    /// against the container names.
    pub ids: Vec<(Id, Pos, String)>,
    /// `binds` and `binds.add` entries (with position and path), for the volume checks.
    pub binds: Vec<(String, Pos, String)>,
}

/// A `files` entry as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct DraftFile {
    pub entry: Option<FileEntry>,
    pub ids: Vec<(Id, Pos, String)>,
}

/// A volume as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct DraftVolume {
    /// `volumes[1]`, for messages.
    pub path: String,
    pub name: Option<(String, Pos)>,
    pub volume: Option<Volume>,
}

/// One file, read.
#[derive(Debug, Clone, Default)]
pub(crate) struct DraftDoc {
    pub kernel: Option<Kernel>,
    pub init: Vec<ImageRef>,
    pub onboot: Vec<DraftEntry>,
    pub onshutdown: Vec<DraftEntry>,
    pub services: Vec<DraftEntry>,
    pub files: Vec<DraftFile>,
    pub volumes: Vec<DraftVolume>,
    pub trust: Option<Trust>,
}

/// The conversion context: the file and the problems found so far.
pub(crate) struct Cx {
    pub(super) file: Arc<str>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// The keys of a map that passed the structural check, by canonical name.
pub(super) struct Fields<'n> {
    pub(super) node: &'n Node,
    pub(super) entries: Vec<(&'static str, &'n Node, &'n Node)>,
    /// No unknown or duplicate key: checks that span several keys ("missing `x`") are made
    /// only then, so that a misspelt key is not also reported as a missing one.
    pub(super) clean: bool,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }
    pub(super) fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }
}

pub(super) const TOP_KEYS: &[&str] = &[
    "kernel",
    "init",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "volumes",
    "trust",
];
pub(super) const KERNEL_KEYS: &[&str] = &["image", "cmdline", "binary", "tar", "ucode"];
pub(super) const ENTRY_KEYS: &[&str] = &[
    "name",
    "image",
    "capabilities",
    "capabilities.add",
    "ambient",
    "mounts",
    "binds",
    "binds.add",
    "devices",
    "tmpfs",
    "command",
    "env",
    "cwd",
    "net",
    "pid",
    "ipc",
    "uts",
    "userns",
    "hostname",
    "readonly",
    "maskedPaths",
    "readonlyPaths",
    "uid",
    "gid",
    "additionalGids",
    "noNewPrivileges",
    "oomScoreAdj",
    "rootfsPropagation",
    "cgroupsPath",
    "resources",
    "sysctl",
    "rlimits",
    "uidMappings",
    "gidMappings",
    "annotations",
    "runtime",
];
pub(super) const FILE_KEYS: &[&str] = &[
    "path",
    "directory",
    "symlink",
    "contents",
    "source",
    "metadata",
    "optional",
    "mode",
    "uid",
    "gid",
];
pub(super) const VOLUME_KEYS: &[&str] = &["name", "image", "readonly", "format", "platforms"];
pub(super) const TRUST_KEYS: &[&str] = &["image", "org"];
pub(super) const MOUNT_KEYS: &[&str] = &[
    "destination",
    "type",
    "source",
    "options",
    "uidMappings",
    "gidMappings",
];
pub(super) const MOUNT_ALIASES: &[(&str, &str)] = &[
    ("uidmappings", "uidMappings"),
    ("gidmappings", "gidMappings"),
];
pub(super) const DEVICE_KEYS: &[&str] = &["path", "type", "major", "minor", "mode"];
pub(super) const IDMAP_KEYS: &[&str] = &["containerID", "hostID", "size"];
pub(super) const RUNTIME_KEYS: &[&str] = &[
    "cgroups",
    "mounts",
    "mkdir",
    "interfaces",
    "bindNS",
    "namespace",
];
pub(super) const INTERFACE_KEYS: &[&str] = &["name", "add", "peer", "createInRoot"];
pub(super) const BINDNS_KEYS: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];
pub(super) const RESOURCES_KEYS: &[&str] = &[
    "devices",
    "memory",
    "cpu",
    "pids",
    "blockIO",
    "hugepageLimits",
    "network",
    "rdma",
    "unified",
];
pub(super) const RESOURCES_ALIASES: &[(&str, &str)] = &[("blockio", "blockIO")];
