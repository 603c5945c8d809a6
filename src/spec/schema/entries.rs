//! The schema of the top-level sections other than `files` and `volumes`: `kernel`,
//! `trust`, and the image entries of `onboot`, `onshutdown` and `services` (their
//! configuration keys, capabilities).

use crate::oci::caps;
use crate::spec::model::{Id, ImageConfig, Kernel, Pos, Trust};
use crate::spec::rules;
use crate::spec::yaml::Node;

use super::draft::*;
use super::oci::*;
use super::readers::*;

pub(super) fn kernel(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Kernel> {
    let f = cx.fields(n, p, KERNEL_KEYS, &[])?;
    let mut ok = true;
    let k = Kernel {
        image: cx.opt(&f, p, "image", &mut ok, Cx::reference),
        cmdline: cx.opt(&f, p, "cmdline", &mut ok, Cx::string),
        binary: cx.opt(&f, p, "binary", &mut ok, Cx::string),
        tar: cx.opt(&f, p, "tar", &mut ok, Cx::string),
        ucode: cx.opt(&f, p, "ucode", &mut ok, Cx::string),
        pos: Some(cx.pos(n)),
    };
    // Left out when wrong, so that a bad or misspelt `image` is not also a missing one.
    (ok && f.clean).then_some(k)
}

pub(super) fn trust(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Trust> {
    let f = cx.fields(n, p, TRUST_KEYS, &[])?;
    let mut ok = true;
    let t = Trust {
        image: cx.opt(&f, p, "image", &mut ok, Cx::strings),
        org: cx.opt(&f, p, "org", &mut ok, Cx::strings),
    };
    ok.then_some(t)
}

/// Reads an `onboot` / `onshutdown` / `services` entry.
pub(super) fn entry(cx: &mut Cx, n: &Node, p: &P<'_>) -> DraftEntry {
    let mut d = DraftEntry {
        path: p.to_string(),
        pos: cx.pos(n),
        name: None,
        image: None,
        config: ImageConfig::default(),
        ids: Vec::new(),
        binds: Vec::new(),
    };
    let Some(f) = cx.fields(n, p, ENTRY_KEYS, &[]) else {
        return d;
    };
    match f.get("name") {
        Some(v) => {
            let np = p.key("name");
            if let Some(name) = cx.string(v, &np) {
                if let Err(e) = rules::check_name(&name) {
                    cx.error(v, &np, e);
                }
                d.name = Some((name, cx.pos(v)));
            }
        }
        None if f.clean => cx.error(n, p, "missing `name`"),
        None => {}
    }
    match f.get("image") {
        Some(v) => d.image = cx.reference(v, &p.key("image")),
        None if f.clean => cx.error(n, p, "missing `image`"),
        None => {}
    }
    d.config = config(cx, &f, p, &mut d.ids, &mut d.binds);
    d
}

/// The fields of an entry other than `name` and `image` (also the whole of a label).
pub(super) fn config(
    cx: &mut Cx,
    f: &Fields<'_>,
    p: &P<'_>,
    ids: &mut Vec<(Id, Pos, String)>,
    binds: &mut Vec<(String, Pos, String)>,
) -> ImageConfig {
    // Not read: a field `opt` cannot read is left out and its problem reported, and the
    // reported problems decide whether the entry (or label) is accepted.
    let mut ok = true;
    let caps = |cx: &mut Cx, n: &Node, p: &P<'_>| capabilities(cx, n, p);
    let mut c = ImageConfig {
        capabilities: cx.opt(f, p, "capabilities", &mut ok, caps),
        capabilities_add: cx.opt(f, p, "capabilities.add", &mut ok, caps),
        ambient: cx.opt(f, p, "ambient", &mut ok, caps),
        mounts: cx.opt(f, p, "mounts", &mut ok, |cx, n, p| {
            cx.list_of(n, p, |cx, item, ip| {
                let m = mount(cx, item, ip)?;
                match rules::complete_mount(&m) {
                    Ok(_) => Some(m),
                    Err(e) => {
                        cx.error(item, ip, e);
                        None
                    }
                }
            })
        }),
        devices: cx.opt(f, p, "devices", &mut ok, |cx, n, p| {
            cx.list_of(n, p, device)
        }),
        tmpfs: cx.opt(f, p, "tmpfs", &mut ok, |cx, n, p| {
            cx.strings_with(n, p, |s| rules::parse_tmpfs(s).map(|_| ()))
        }),
        command: cx.opt(f, p, "command", &mut ok, Cx::strings),
        env: cx.opt(f, p, "env", &mut ok, |cx, n, p| {
            cx.strings_with(n, p, rules::check_env)
        }),
        cwd: cx.opt(f, p, "cwd", &mut ok, |cx, n, p| {
            checked_string(cx, n, p, rules::check_cwd)
        }),
        hostname: cx.opt(f, p, "hostname", &mut ok, Cx::string),
        readonly: cx.opt(f, p, "readonly", &mut ok, Cx::bool),
        masked_paths: cx.opt(f, p, "maskedPaths", &mut ok, Cx::strings),
        readonly_paths: cx.opt(f, p, "readonlyPaths", &mut ok, Cx::strings),
        no_new_privileges: cx.opt(f, p, "noNewPrivileges", &mut ok, Cx::bool),
        oom_score_adj: cx.opt(f, p, "oomScoreAdj", &mut ok, |cx, n, p| {
            let v = cx.i64(n, p)?;
            match rules::check_oom_score_adj(v) {
                Ok(()) => Some(v),
                Err(e) => {
                    cx.error(n, p, e);
                    None
                }
            }
        }),
        rootfs_propagation: cx.opt(f, p, "rootfsPropagation", &mut ok, |cx, n, p| {
            checked_string(cx, n, p, rules::check_propagation)
        }),
        cgroups_path: cx.opt(f, p, "cgroupsPath", &mut ok, Cx::string),
        resources: cx.opt(f, p, "resources", &mut ok, resources),
        sysctl: cx.opt(f, p, "sysctl", &mut ok, Cx::string_map),
        rlimits: cx.opt(f, p, "rlimits", &mut ok, |cx, n, p| {
            cx.strings_with(n, p, |s| rules::parse_rlimit(s).map(|_| ()))
        }),
        uid_mappings: cx.opt(f, p, "uidMappings", &mut ok, |cx, n, p| {
            cx.list_of(n, p, id_mapping)
        }),
        gid_mappings: cx.opt(f, p, "gidMappings", &mut ok, |cx, n, p| {
            cx.list_of(n, p, id_mapping)
        }),
        annotations: cx.opt(f, p, "annotations", &mut ok, Cx::string_map),
        runtime: cx.opt(f, p, "runtime", &mut ok, runtime),
        ..ImageConfig::default()
    };
    for key in ["net", "pid", "ipc", "uts", "userns"] {
        let v = cx.opt(f, p, key, &mut ok, |cx, n, p| {
            checked_string(cx, n, p, |s| rules::check_namespace(key, s))
        });
        match key {
            "net" => c.net = v,
            "pid" => c.pid = v,
            "ipc" => c.ipc = v,
            "uts" => c.uts = v,
            _ => c.userns = v,
        }
    }
    for key in ["binds", "binds.add"] {
        let v = cx.opt(f, p, key, &mut ok, |cx, n, p| {
            cx.list_of(n, p, |cx, item, ip| {
                let s = cx.string(item, ip)?;
                if let Err(e) = rules::parse_bind(&s) {
                    cx.error(item, ip, e);
                    return None;
                }
                binds.push((s.clone(), cx.pos(item), ip.to_string()));
                Some(s)
            })
        });
        if key == "binds" {
            c.binds = v;
        } else {
            c.binds_add = v;
        }
    }
    let mut id = |cx: &mut Cx, n: &Node, p: &P<'_>| {
        let v = cx.id(n, p)?;
        ids.push((v.clone(), cx.pos(n), p.to_string()));
        Some(v)
    };
    c.uid = cx.opt(f, p, "uid", &mut ok, &mut id);
    c.gid = cx.opt(f, p, "gid", &mut ok, &mut id);
    c.additional_gids = cx.opt(f, p, "additionalGids", &mut ok, |cx, n, p| {
        cx.list_of(n, p, &mut id)
    });
    for (plain, add) in [("capabilities", "capabilities.add"), ("binds", "binds.add")] {
        if let (Some(_), Some(k)) = (f.get(plain), f.key_node(add)) {
            cx.warn(
                k,
                p,
                format_args!("`{add}` is ignored because `{plain}` is also set (as LinuxKit does)"),
            );
        }
    }
    c
}

pub(super) fn capabilities(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Vec<String>> {
    let items = cx.list(n, p)?;
    let names = cx.strings(n, p)?;
    let bad = caps::check(&names);
    for (i, e) in &bad {
        if let Some(item) = items.get(*i) {
            cx.error(item, &p.at(*i), e);
        }
    }
    bad.is_empty().then_some(names)
}
