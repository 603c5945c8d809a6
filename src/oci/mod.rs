//! `config.json` and `runtime.json` of a bundle (SPEC §4.3, §4.4), from a resolved entry.
//! Encoded as Go's `encoding/json` does ([`gojson`]) so the bytes equal LinuxKit's.

pub mod gojson;
pub mod types;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::oci::types::Mount;
use crate::spec::merge::Resolved;
use crate::spec::model::{Interface, Runtime};

/// `runtime.json` (read by LinuxKit's init), every key always present.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuntimeJson {
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNsJson,
    pub namespace: String,
}

/// `runtime.json`'s `bindNS`: all seven keys, "" when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BindNsJson {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Invalid(String),
}

/// The generated files of one bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleConfig {
    pub config_json: Vec<u8>,
    /// `runtime.json` without the generated rootfs mounts (see [`runtime_json`]).
    pub runtime: RuntimeJson,
}

/// Builds the bundle's `config.json` (and the merged `runtime` section). `ids` maps container
/// names to uid/gid numbers (`spec::model::id_map`).
pub fn bundle_config(r: &Resolved, ids: &BTreeMap<String, u32>) -> Result<BundleConfig, OciError> {
    let _ = (r, ids);
    todo!("oci::bundle_config")
}

/// The generated rootfs mounts of a bundle at `dir` (e.g. `containers/onboot/000-a`) whose
/// image is at `root` (its own `lower`/`rootfs`, or the first copy's), SPEC §4.3.
pub fn rootfs_mounts(dir: &str, root: &str, readonly: bool) -> Vec<Mount> {
    let _ = (dir, root, readonly);
    todo!("oci::rootfs_mounts")
}

/// `runtime.json` bytes: `rootfs` mounts first, then the user's.
pub fn runtime_json(runtime: &RuntimeJson, rootfs: Vec<Mount>) -> Vec<u8> {
    let _ = (runtime, rootfs);
    todo!("oci::runtime_json")
}

/// Converts a merged `runtime:` section (absent fields empty).
pub fn runtime_from(rt: Option<&Runtime>) -> RuntimeJson {
    let _ = rt;
    todo!("oci::runtime_from")
}
