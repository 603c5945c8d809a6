//! The label merge of SPEC §2.1 as a pure function of (YAML entry, label, image config):
//! YAML > `org.mobyproject.config` label > image config (command, env, cwd) > default.
//!
//! Rules, field by field:
//! - a field present in the YAML replaces the label's whole value, even when empty;
//! - `capabilities.add` / `binds.add` append to the label's list (without duplicates;
//!   capabilities compared after normalising, binds as written) when the plain field is
//!   absent from the same layer; when both are present the plain field wins and `.add` is
//!   ignored (the parser warns). A label's own `.add` is folded the same way onto nothing;
//! - `runtime` merges per sub-field (`cgroups`, `mounts`, `mkdir`, `interfaces`,
//!   `namespace`; `bindNS` per key);
//! - command = YAML, else label, else the image's Entrypoint + Cmd; empty in the end is
//!   [`MergeError::EmptyCommand`]; env = YAML, else label, else the image's Env;
//!   cwd = YAML, else label, else the image's WorkingDir, and `/` when that is empty;
//!   readonly defaults to false.
//!
//! Nothing here checks values (capability names, bind syntax, ids): that is the parser's
//! job for the YAML and label, and `oci::bundle_config`'s for the merged result.

use crate::oci::caps;
use crate::spec::model::{BindNs, ImageConfig, ImageEntry, Runtime};

/// The parts of an image's own configuration that an entry can inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `None` when the image has no `Env`.
    pub env: Option<Vec<String>>,
    /// Empty when unset.
    pub working_dir: String,
}

/// An entry with every field decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: String,
    /// Label and YAML merged field by field, `.add` forms folded in (and then `None`).
    pub config: ImageConfig,
    /// `process.args`: never empty.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("the command is empty: set `command` or use an image with an entrypoint or command")]
    EmptyCommand,
}

/// Merges `entry` over `label` over `image`.
pub fn resolve(
    entry: &ImageEntry,
    label: Option<&ImageConfig>,
    image: &ImageDefaults,
) -> Result<Resolved, MergeError> {
    let empty = ImageConfig::default();
    let label = label.unwrap_or(&empty);
    let config = merge_configs(label, &entry.config);

    let args = match &config.command {
        Some(c) => c.clone(),
        None => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    };
    if args.is_empty() {
        return Err(MergeError::EmptyCommand);
    }
    let env = match &config.env {
        Some(e) => e.clone(),
        None => image.env.clone().unwrap_or_default(),
    };
    let cwd = match &config.cwd {
        Some(c) => c.clone(),
        None => image.working_dir.clone(),
    };
    let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
    let readonly = config.readonly.unwrap_or(false);

    Ok(Resolved {
        name: entry.name.clone(),
        config,
        args,
        env,
        cwd,
        readonly,
    })
}

/// `over` (the YAML) merged onto `base` (the label), field by field, `.add` forms folded.
pub fn merge_configs(base: &ImageConfig, over: &ImageConfig) -> ImageConfig {
    fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
        over.as_ref().or(base.as_ref()).cloned()
    }
    let base_caps = fold_add(
        &base.capabilities,
        &base.capabilities_add,
        None,
        caps::merge_add,
    );
    let base_binds = fold_add(&base.binds, &base.binds_add, None, merge_unique);
    ImageConfig {
        capabilities: fold_add(
            &over.capabilities,
            &over.capabilities_add,
            base_caps,
            caps::merge_add,
        ),
        capabilities_add: None,
        ambient: pick(&over.ambient, &base.ambient),
        mounts: pick(&over.mounts, &base.mounts),
        binds: fold_add(&over.binds, &over.binds_add, base_binds, merge_unique),
        binds_add: None,
        devices: pick(&over.devices, &base.devices),
        tmpfs: pick(&over.tmpfs, &base.tmpfs),
        command: pick(&over.command, &base.command),
        env: pick(&over.env, &base.env),
        cwd: pick(&over.cwd, &base.cwd),
        net: pick(&over.net, &base.net),
        pid: pick(&over.pid, &base.pid),
        ipc: pick(&over.ipc, &base.ipc),
        uts: pick(&over.uts, &base.uts),
        userns: pick(&over.userns, &base.userns),
        hostname: pick(&over.hostname, &base.hostname),
        readonly: pick(&over.readonly, &base.readonly),
        masked_paths: pick(&over.masked_paths, &base.masked_paths),
        readonly_paths: pick(&over.readonly_paths, &base.readonly_paths),
        uid: pick(&over.uid, &base.uid),
        gid: pick(&over.gid, &base.gid),
        additional_gids: pick(&over.additional_gids, &base.additional_gids),
        no_new_privileges: pick(&over.no_new_privileges, &base.no_new_privileges),
        oom_score_adj: pick(&over.oom_score_adj, &base.oom_score_adj),
        rootfs_propagation: pick(&over.rootfs_propagation, &base.rootfs_propagation),
        cgroups_path: pick(&over.cgroups_path, &base.cgroups_path),
        resources: pick(&over.resources, &base.resources),
        sysctl: pick(&over.sysctl, &base.sysctl),
        rlimits: pick(&over.rlimits, &base.rlimits),
        uid_mappings: pick(&over.uid_mappings, &base.uid_mappings),
        gid_mappings: pick(&over.gid_mappings, &base.gid_mappings),
        annotations: pick(&over.annotations, &base.annotations),
        runtime: merge_runtime(base.runtime.as_ref(), over.runtime.as_ref()),
    }
}

/// One layer's list: its plain field if present (its `.add` is then ignored), else the
/// lower layer's list with its `.add` appended, else the lower layer's list.
fn fold_add(
    plain: &Option<Vec<String>>,
    add: &Option<Vec<String>>,
    lower: Option<Vec<String>>,
    merge: fn(&[String], &[String]) -> Vec<String>,
) -> Option<Vec<String>> {
    match (plain, add) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(a)) => Some(merge(lower.as_deref().unwrap_or(&[]), a)),
        (None, None) => lower,
    }
}

/// `base` then the entries of `add` not seen yet (a repeat anywhere is dropped).
fn merge_unique(base: &[String], add: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(base.len() + add.len());
    for s in base.iter().chain(add) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// `runtime:` merged per sub-field (and `bindNS` per key); `None` when neither has one.
fn merge_runtime(base: Option<&Runtime>, over: Option<&Runtime>) -> Option<Runtime> {
    let (base, over) = match (base, over) {
        (None, None) => return None,
        (Some(b), None) => return Some(b.clone()),
        (None, Some(o)) => return Some(o.clone()),
        (Some(b), Some(o)) => (b, o),
    };
    fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
        over.as_ref().or(base.as_ref()).cloned()
    }
    let bind_ns = match (&base.bind_ns, &over.bind_ns) {
        (Some(b), Some(o)) => Some(BindNs {
            cgroup: pick(&o.cgroup, &b.cgroup),
            ipc: pick(&o.ipc, &b.ipc),
            mnt: pick(&o.mnt, &b.mnt),
            net: pick(&o.net, &b.net),
            pid: pick(&o.pid, &b.pid),
            user: pick(&o.user, &b.user),
            uts: pick(&o.uts, &b.uts),
        }),
        (b, o) => pick(o, b),
    };
    Some(Runtime {
        cgroups: pick(&over.cgroups, &base.cgroups),
        mounts: pick(&over.mounts, &base.mounts),
        mkdir: pick(&over.mkdir, &base.mkdir),
        interfaces: pick(&over.interfaces, &base.interfaces),
        bind_ns,
        namespace: pick(&over.namespace, &base.namespace),
    })
}
