//! `config.json` and `runtime.json` of a bundle (SPEC §4.3, §4.4), from a resolved entry.
//! Encoded as Go's `encoding/json` does ([`gojson`]) so the bytes equal LinuxKit's.
//!
//! This module owns the translation of every entry field into the OCI runtime spec. A label
//! is merged after the parser ran, so capability names, binds, tmpfs, mounts, devices,
//! rlimits, `oomScoreAdj`, hugepage sizes and uid/gid names are checked again here, by the
//! same rules the parser applies ([`crate::spec::rules`], [`caps`]), their messages wrapped
//! in an [`OciError`]. What the OCI schema constrains beyond them (propagation) is checked
//! here only; nothing schema-invalid is written out.
//!
//! Decisions where LinuxKit's `ConfigToOCI` differs or the SPEC is silent:
//! - no cgroup namespace (the golden files have none); `linux.resources` always present;
//! - an empty namespace value (`net: ""`) means the default, like an absent one;
//! - device `mode` is required (as in LinuxKit) and must be permission bits (≤ `0777`, the
//!   OCI schema's limit); a device type is `c`, `b`, `u` or `p`, and `a`, `b` or `c` for
//!   `path: all` ([`rules::check_device`]);
//! - `rootfsPropagation` must be one of the schema's four values (runc's `r…` variants are
//!   refused rather than written into a schema-invalid file);
//! - hugepage sizes written as a number of bytes (LinuxKit's old schema) become `2MB`-style;
//! - `oomScoreAdj` outside -1000 … 1000 and an rlimit whose soft limit exceeds its hard
//!   limit are errors (the kernel would refuse them at boot);
//! - `mounts` entries keep their `uidMappings`/`gidMappings` (LinuxKit drops them);
//! - a uid/gid `""` is an error (LinuxKit reads it as `root`; SPEC §2.1 does not allow it);
//! - a bind source that is neither absolute nor a volume name (`[a-z0-9_-]+`) is an error,
//!   and so is an empty mount option in a bind or tmpfs. Whether the volume exists, and
//!   whether a read-only volume is bound `ro`, is the caller's check ([`parse_bind`],
//!   [`Bind::volume`], [`Bind::is_readonly`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::oci::caps::{self, CapError};
use crate::oci::types::{
    Capabilities, Device, DeviceCgroup, Linux, Mount, Namespace, Process, Resources, Rlimit, Root,
    Spec, User,
};
use crate::oci::{OCI_VERSION, gojson};
use crate::spec::merge::Resolved;
use crate::spec::model::{self, Id, Interface, Runtime};
use crate::spec::rules::{self, IdError};

pub use crate::spec::rules::Bind;

/// Where a volume named in a bind is mounted in the booted system.
pub const VOLUMES_DIR: &str = "/containers/volumes";

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

/// A value of a resolved entry that cannot become a valid OCI configuration. Each variant
/// names the field and the value at fault; the caller adds the container's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    #[error("`{field}`: {error}")]
    Capability {
        field: &'static str,
        error: CapError,
    },
    /// `message` (from [`rules::parse_bind`]) names the bind.
    #[error("{message}")]
    Bind { bind: String, message: String },
    /// `message` (from [`rules::parse_tmpfs`]) names the entry.
    #[error("{message}")]
    Tmpfs { tmpfs: String, message: String },
    /// From [`rules::complete_mount`].
    #[error("{0}")]
    Mount(String),
    #[error("device `{path}`: {message}")]
    Device { path: String, message: String },
    /// `message` (from [`rules::parse_rlimit`]) names the entry or the limit.
    #[error("{message}")]
    Rlimit { rlimit: String, message: String },
    #[error("`{field}`: {error}")]
    Id { field: &'static str, error: IdError },
    #[error("`rootfsPropagation`: `{0}` is not one of `private`, `shared`, `slave`, `unbindable`")]
    RootfsPropagation(String),
    #[error(
        "`resources.hugepageLimits`: page size `{0}` is neither like `2MB` (KB, MB, GB) nor a whole number of kilobytes in bytes"
    )]
    HugepageSize(String),
    #[error("`oomScoreAdj`: {0} is out of range (-1000 … 1000)")]
    OomScoreAdj(i64),
    #[error("encoding config.json: {0}")]
    Encode(String),
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
    let spec = config_spec(r, ids)?;
    let config_json = gojson::try_to_vec(&spec).map_err(|e| OciError::Encode(e.to_string()))?;
    Ok(BundleConfig {
        config_json,
        runtime: runtime_from(r.config.runtime.as_ref()),
    })
}

/// The typed `config.json` of a resolved entry (what [`bundle_config`] encodes).
pub fn config_spec(r: &Resolved, ids: &BTreeMap<String, u32>) -> Result<Spec, OciError> {
    let c = &r.config;
    let (devices, device_rules) = devices(c.devices.as_deref().unwrap_or(&[]))?;
    let mut resources = c.resources.clone().unwrap_or_default();
    normalize_resources(&mut resources)?;
    resources.devices.extend(device_rules);

    let additional_gids = c
        .additional_gids
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|g| numeric_id("additionalGids", g, ids))
        .collect::<Result<Vec<_>, _>>()?;

    let rootfs_propagation = c.rootfs_propagation.clone().unwrap_or_default();
    if rules::check_propagation(&rootfs_propagation).is_err() {
        return Err(OciError::RootfsPropagation(rootfs_propagation));
    }
    if let Some(adj) = c.oom_score_adj {
        rules::check_oom_score_adj(adj).map_err(|_| OciError::OomScoreAdj(adj))?;
    }

    Ok(Spec {
        oci_version: OCI_VERSION.to_string(),
        process: Process {
            user: User {
                uid: optional_id("uid", c.uid.as_ref(), ids)?,
                gid: optional_id("gid", c.gid.as_ref(), ids)?,
                additional_gids,
            },
            args: r.args.clone(),
            env: r.env.clone(),
            cwd: r.cwd.clone(),
            capabilities: capabilities(c.capabilities.as_deref(), c.ambient.as_deref())?,
            rlimits: c
                .rlimits
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|s| rlimit(s))
                .collect::<Result<_, _>>()?,
            no_new_privileges: c.no_new_privileges.unwrap_or(false),
            oom_score_adj: c.oom_score_adj,
        },
        root: Root {
            path: "rootfs".to_string(),
            readonly: r.readonly,
        },
        hostname: c.hostname.clone().unwrap_or_default(),
        mounts: mounts(r)?,
        annotations: c.annotations.clone().unwrap_or_default(),
        linux: Linux {
            uid_mappings: c.uid_mappings.clone().unwrap_or_default(),
            gid_mappings: c.gid_mappings.clone().unwrap_or_default(),
            sysctl: c.sysctl.clone().unwrap_or_default(),
            resources,
            cgroups_path: c.cgroups_path.clone().unwrap_or_default(),
            namespaces: namespaces(&r.config),
            devices,
            rootfs_propagation,
            masked_paths: c.masked_paths.clone().unwrap_or_default(),
            readonly_paths: c.readonly_paths.clone().unwrap_or_default(),
        },
    })
}

/// Effective = the list as given (normalised, `all`/`none` expanded); bounding, permitted
/// and inheritable = the sorted union with ambient; ambient as given.
fn capabilities(
    caps_list: Option<&[String]>,
    ambient: Option<&[String]>,
) -> Result<Capabilities, OciError> {
    let effective =
        caps::expand(caps_list.unwrap_or(&[])).map_err(|error| OciError::Capability {
            field: "capabilities",
            error,
        })?;
    let ambient = caps::expand(ambient.unwrap_or(&[])).map_err(|error| OciError::Capability {
        field: "ambient",
        error,
    })?;
    let bounding: Vec<String> = effective
        .iter()
        .chain(&ambient)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(String::from)
        .collect();
    let owned = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    Ok(Capabilities {
        inheritable: bounding.clone(),
        permitted: bounding.clone(),
        bounding,
        effective: owned(effective),
        ambient: owned(ambient),
    })
}

/// `network`, `ipc`, `uts`, `pid`, `user`, then `mount` (always new).
fn namespaces(c: &model::ImageConfig) -> Vec<Namespace> {
    let specs = [
        ("network", c.net.as_deref(), false),
        ("ipc", c.ipc.as_deref(), false),
        ("uts", c.uts.as_deref(), false),
        ("pid", c.pid.as_deref(), true),
        ("user", c.userns.as_deref(), false),
    ];
    let mut out: Vec<Namespace> = specs
        .into_iter()
        .filter_map(|(kind, value, new_by_default)| namespace(kind, value, new_by_default))
        .collect();
    out.push(Namespace {
        kind: "mount".to_string(),
        path: String::new(),
    });
    out
}

/// One namespace entry: `host`/`root` = none (the host's); `new` (and `none` for the
/// network) = a new one; any other value = the path of a namespace to join; absent or
/// empty = the default (new for pid, the host's for the others).
fn namespace(kind: &str, value: Option<&str>, new_by_default: bool) -> Option<Namespace> {
    let path = match value.unwrap_or("") {
        "" if new_by_default => "",
        "" | "host" | "root" => return None,
        "new" => "",
        "none" if kind == "network" => "",
        path => path,
    };
    Some(Namespace {
        kind: kind.to_string(),
        path: path.to_string(),
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(destination: &str, kind: &str, source: &str, options: Vec<String>) -> Mount {
    Mount {
        destination: destination.to_string(),
        kind: kind.to_string(),
        source: source.to_string(),
        options,
        ..Mount::default()
    }
}

/// The default mounts, then tmpfs, binds and mounts (a later one with the same destination
/// replaces an earlier one), sorted by destination.
fn mounts(r: &Resolved) -> Result<Vec<Mount>, OciError> {
    let c = &r.config;
    let ro = |mut opts: Vec<String>| {
        if r.readonly {
            opts.push("ro".to_string());
        }
        opts
    };
    let defaults = [
        mount(
            "/proc",
            "proc",
            "proc",
            strings(&["nosuid", "nodev", "noexec", "relatime"]),
        ),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            ro(strings(&[
                "nosuid",
                "strictatime",
                "mode=755",
                "size=65536k",
            ])),
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            strings(&[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ]),
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            ro(strings(&["nosuid", "noexec", "nodev"])),
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            strings(&["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ),
    ];
    let mut all: BTreeMap<String, Mount> = BTreeMap::new();
    let mut put = |m: Mount| {
        all.insert(m.destination.clone(), m);
    };
    defaults.into_iter().for_each(&mut put);
    for t in c.tmpfs.as_deref().unwrap_or(&[]) {
        put(tmpfs_mount(t)?);
    }
    for b in c.binds.as_deref().unwrap_or(&[]) {
        put(parse_bind(b)?.to_mount());
    }
    for m in c.mounts.as_deref().unwrap_or(&[]) {
        put(complete_mount(m)?);
    }
    Ok(all.into_values().collect())
}

/// A `tmpfs` entry `dst[:opt,..]` ([`rules::parse_tmpfs`]) as a mount.
fn tmpfs_mount(s: &str) -> Result<Mount, OciError> {
    let (dest, options) = rules::parse_tmpfs(s).map_err(|message| OciError::Tmpfs {
        tmpfs: s.to_string(),
        message,
    })?;
    Ok(mount(
        dest,
        "tmpfs",
        "tmpfs",
        options.map(|o| strings(&o)).unwrap_or_default(),
    ))
}

/// The OCI translation of a bind ([`rules::Bind`], parsed by [`parse_bind`]).
impl Bind<'_> {
    /// The OCI mount: a volume source becomes `/containers/volumes/<name>/merged`; options
    /// default to `rw,rbind,rshared`, given options are used as listed plus `rbind`.
    pub fn to_mount(&self) -> Mount {
        let source = match self.volume() {
            Some(v) => format!("{VOLUMES_DIR}/{v}/merged"),
            None => self.source.to_string(),
        };
        let options = match &self.options {
            Some(o) => o.iter().chain(&["rbind"]).map(|s| s.to_string()).collect(),
            None => strings(&["rw", "rbind", "rshared"]),
        };
        mount(self.destination, "bind", &source, options)
    }
}

/// Parses a `binds` entry ([`rules::parse_bind`]).
fn parse_bind(s: &str) -> Result<Bind<'_>, OciError> {
    rules::parse_bind(s).map_err(|message| OciError::Bind {
        bind: s.to_string(),
        message,
    })
}

/// Completes a `mounts` entry ([`rules::complete_mount`]).
fn complete_mount(m: &Mount) -> Result<Mount, OciError> {
    rules::complete_mount(m).map_err(OciError::Mount)
}

/// `linux.devices` and the device cgroup rules that let the container use them.
fn devices(list: &[model::Device]) -> Result<(Vec<Device>, Vec<DeviceCgroup>), OciError> {
    let mut devices = Vec::new();
    let mut cgroup_rules = Vec::new();
    for d in list {
        let err = |message: String| OciError::Device {
            path: d.path.clone(),
            message,
        };
        let mode = d.mode.as_deref();
        let problems = rules::check_device(&d.path, &d.kind, Some(d.major), Some(d.minor), mode);
        if let Some((_, message)) = problems.into_iter().next() {
            return Err(err(message));
        }
        // `path: all` is a cgroup rule alone, for every device of the type.
        let (major, minor) = if d.path == "all" {
            (None, None)
        } else {
            devices.push(Device {
                path: d.path.clone(),
                kind: d.kind.clone(),
                major: d.major,
                minor: d.minor,
                file_mode: mode
                    .map(rules::parse_device_mode)
                    .transpose()
                    .map_err(err)?,
            });
            (Some(d.major), Some(d.minor))
        };
        cgroup_rules.push(DeviceCgroup {
            allow: true,
            kind: d.kind.clone(),
            major,
            minor,
            access: "rwm".to_string(),
        });
    }
    Ok((devices, cgroup_rules))
}

/// Checks what the OCI schema constrains in `resources` and brings hugepage sizes written
/// as a number of bytes (LinuxKit's old spelling) to the OCI form (`2097152` → `2MB`).
fn normalize_resources(res: &mut Resources) -> Result<(), OciError> {
    for h in &mut res.hugepage_limits {
        h.page_size = rules::hugepage_size(&h.page_size)
            .map_err(|_| OciError::HugepageSize(h.page_size.clone()))?;
    }
    Ok(())
}

/// An `rlimits` entry `name,soft,hard` ([`rules::parse_rlimit`]).
fn rlimit(s: &str) -> Result<Rlimit, OciError> {
    let r = rules::parse_rlimit(s).map_err(|message| OciError::Rlimit {
        rlimit: s.to_string(),
        message,
    })?;
    Ok(Rlimit {
        kind: r.kind.to_string(),
        hard: r.hard,
        soft: r.soft,
    })
}

fn optional_id(
    field: &'static str,
    id: Option<&Id>,
    ids: &BTreeMap<String, u32>,
) -> Result<u32, OciError> {
    id.map_or(Ok(0), |id| numeric_id(field, id, ids))
}

/// A uid/gid as a number ([`rules::resolve_id`]): a number or numeric string
/// (0 … 2^32-1), `root` (0), or the name of a container (`ids`).
fn numeric_id(field: &'static str, id: &Id, ids: &BTreeMap<String, u32>) -> Result<u32, OciError> {
    rules::resolve_id(id, ids).map_err(|error| OciError::Id { field, error })
}

/// `/a/b` from `a/b`, `/a/b/` or `/a/b`.
fn absolute(p: &str) -> String {
    format!("/{}", p.trim_matches('/'))
}

/// Where a bundle at `dir` holds its own copy of the image (SPEC §4.2): `dir/rootfs` when
/// read-only, else `dir/lower`. A later bundle of the same image uses the first one's.
pub fn own_root(dir: &str, readonly: bool) -> String {
    let dir = dir.trim_end_matches('/');
    if readonly {
        format!("{dir}/rootfs")
    } else {
        format!("{dir}/lower")
    }
}

/// The generated rootfs mounts of a bundle at `dir` (e.g. `containers/onboot/000-a`) whose
/// image is at `root` (its own `lower`/`rootfs`, or the first copy's), SPEC §4.3.
pub fn rootfs_mounts(dir: &str, root: &str, readonly: bool) -> Vec<Mount> {
    let dir = absolute(dir);
    let root = absolute(root);
    let rootfs = format!("{dir}/rootfs");
    if readonly {
        return vec![Mount {
            destination: rootfs,
            source: root,
            options: strings(&["bind"]),
            ..Mount::default()
        }];
    }
    let tmp = format!("{dir}/tmp");
    vec![
        mount(&tmp, "tmpfs", "tmpfs", Vec::new()),
        Mount {
            destination: tmp.clone(),
            options: strings(&["remount", "private"]),
            ..Mount::default()
        },
        mount(
            &rootfs,
            "overlay",
            "overlay",
            vec![
                format!("lowerdir={root}"),
                format!("upperdir={tmp}/upper"),
                format!("workdir={tmp}/work"),
            ],
        ),
    ]
}

/// `runtime.json` bytes: `rootfs` mounts first, then the user's.
pub fn runtime_json(runtime: &RuntimeJson, rootfs: Vec<Mount>) -> Vec<u8> {
    let mut full = runtime.clone();
    full.mounts = rootfs
        .into_iter()
        .chain(runtime.mounts.iter().cloned())
        .collect();
    // RuntimeJson holds only strings, lists, booleans and structs: encoding cannot fail.
    gojson::to_vec(&full)
}

/// Converts a merged `runtime:` section (absent fields empty).
pub fn runtime_from(rt: Option<&Runtime>) -> RuntimeJson {
    let Some(rt) = rt else {
        return RuntimeJson::default();
    };
    let ns = rt.bind_ns.clone().unwrap_or_default();
    RuntimeJson {
        cgroups: rt.cgroups.clone().unwrap_or_default(),
        mounts: rt.mounts.clone().unwrap_or_default(),
        mkdir: rt.mkdir.clone().unwrap_or_default(),
        interfaces: rt.interfaces.clone().unwrap_or_default(),
        bind_ns: BindNsJson {
            cgroup: ns.cgroup.unwrap_or_default(),
            ipc: ns.ipc.unwrap_or_default(),
            mnt: ns.mnt.unwrap_or_default(),
            net: ns.net.unwrap_or_default(),
            pid: ns.pid.unwrap_or_default(),
            user: ns.user.unwrap_or_default(),
            uts: ns.uts.unwrap_or_default(),
        },
        namespace: rt.namespace.clone().unwrap_or_default(),
    }
}
