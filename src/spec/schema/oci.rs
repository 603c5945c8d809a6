//! The schema of the OCI sub-objects of an entry: mounts, id mappings, devices, `runtime`
//! (interfaces, bindNS) and `resources` (memory, cpu, pids, blockIO, hugepages, network,
//! rdma).

use crate::oci::types::{
    BlockIo, Cpu, DeviceCgroup, HugepageLimit, IdMapping, InterfacePriority, Memory, Mount,
    Network, Pids, Rdma, Resources, ThrottleDevice, WeightDevice,
};
use crate::spec::model::{BindNs, Device, Interface, Runtime};
use crate::spec::rules;
use crate::spec::yaml::{Node, ScalarKind};

use super::draft::*;
use super::readers::*;

pub(super) fn mount(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Mount> {
    let f = cx.fields(n, p, MOUNT_KEYS, MOUNT_ALIASES)?;
    let mut ok = true;
    let m = Mount {
        destination: cx
            .opt(&f, p, "destination", &mut ok, Cx::string)
            .unwrap_or_default(),
        kind: cx
            .opt(&f, p, "type", &mut ok, Cx::string)
            .unwrap_or_default(),
        source: cx
            .opt(&f, p, "source", &mut ok, Cx::string)
            .unwrap_or_default(),
        options: cx
            .opt(&f, p, "options", &mut ok, Cx::strings)
            .unwrap_or_default(),
        uid_mappings: cx
            .opt(&f, p, "uidMappings", &mut ok, |cx, n, p| {
                cx.list_of(n, p, id_mapping)
            })
            .unwrap_or_default(),
        gid_mappings: cx
            .opt(&f, p, "gidMappings", &mut ok, |cx, n, p| {
                cx.list_of(n, p, id_mapping)
            })
            .unwrap_or_default(),
    };
    ok.then_some(m)
}

pub(super) fn id_mapping(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<IdMapping> {
    let f = cx.fields(n, p, IDMAP_KEYS, &[])?;
    let mut ok = true;
    let m = IdMapping {
        container_id: cx
            .opt(&f, p, "containerID", &mut ok, Cx::u32)
            .unwrap_or_default(),
        host_id: cx
            .opt(&f, p, "hostID", &mut ok, Cx::u32)
            .unwrap_or_default(),
        size: cx.opt(&f, p, "size", &mut ok, Cx::u32).unwrap_or_default(),
    };
    ok.then_some(m)
}

pub(super) fn device(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Device> {
    let f = cx.fields(n, p, DEVICE_KEYS, &[])?;
    let mut ok = true;
    let path = cx.opt(&f, p, "path", &mut ok, Cx::string);
    let kind = cx.opt(&f, p, "type", &mut ok, Cx::string);
    let major = cx.opt(&f, p, "major", &mut ok, Cx::i64);
    let minor = cx.opt(&f, p, "minor", &mut ok, Cx::i64);
    let mode = cx.opt(&f, p, "mode", &mut ok, Cx::string);
    if !f.clean {
        return None;
    }
    let Some(path) = path else {
        if f.get("path").is_none() {
            cx.error(n, p, "missing `path`");
        }
        return None;
    };
    let kind = kind.or_else(|| f.get("type").is_none().then(String::new))?;
    // A value that failed to convert was reported already; count it as present (and valid)
    // here.
    let present = |v: Option<i64>, key: &str| v.or_else(|| f.get(key).map(|_| 0));
    let mode_or_bad = mode.as_deref().or_else(|| f.get("mode").map(|_| "0"));
    let bad = rules::check_device(
        &path,
        &kind,
        present(major, "major"),
        present(minor, "minor"),
        mode_or_bad,
    );
    for (key, msg) in &bad {
        let at = f.get(key).unwrap_or(f.node);
        let kp = if key.is_empty() { *p } else { p.key(key) };
        cx.error(at, &kp, msg);
    }
    (ok && bad.is_empty()).then(|| Device {
        path,
        kind,
        major: major.unwrap_or_default(),
        minor: minor.unwrap_or_default(),
        mode,
    })
}

pub(super) fn runtime(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Runtime> {
    let f = cx.fields(n, p, RUNTIME_KEYS, &[])?;
    let mut ok = true;
    let r = Runtime {
        cgroups: cx.opt(&f, p, "cgroups", &mut ok, Cx::strings),
        mounts: cx.opt(&f, p, "mounts", &mut ok, |cx, n, p| cx.list_of(n, p, mount)),
        mkdir: cx.opt(&f, p, "mkdir", &mut ok, Cx::strings),
        interfaces: cx.opt(&f, p, "interfaces", &mut ok, |cx, n, p| {
            cx.list_of(n, p, interface)
        }),
        bind_ns: cx.opt(&f, p, "bindNS", &mut ok, bind_ns),
        namespace: cx.opt(&f, p, "namespace", &mut ok, Cx::string),
    };
    ok.then_some(r)
}

pub(super) fn interface(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Interface> {
    let f = cx.fields(n, p, INTERFACE_KEYS, &[])?;
    let mut ok = true;
    let i = Interface {
        name: cx
            .opt(&f, p, "name", &mut ok, Cx::string)
            .unwrap_or_default(),
        add: cx
            .opt(&f, p, "add", &mut ok, Cx::string)
            .unwrap_or_default(),
        peer: cx
            .opt(&f, p, "peer", &mut ok, Cx::string)
            .unwrap_or_default(),
        create_in_root: cx
            .opt(&f, p, "createInRoot", &mut ok, Cx::bool)
            .unwrap_or_default(),
    };
    ok.then_some(i)
}

pub(super) fn bind_ns(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<BindNs> {
    let f = cx.fields(n, p, BINDNS_KEYS, &[])?;
    let mut ok = true;
    let b = BindNs {
        cgroup: cx.opt(&f, p, "cgroup", &mut ok, Cx::string),
        ipc: cx.opt(&f, p, "ipc", &mut ok, Cx::string),
        mnt: cx.opt(&f, p, "mnt", &mut ok, Cx::string),
        net: cx.opt(&f, p, "net", &mut ok, Cx::string),
        pid: cx.opt(&f, p, "pid", &mut ok, Cx::string),
        user: cx.opt(&f, p, "user", &mut ok, Cx::string),
        uts: cx.opt(&f, p, "uts", &mut ok, Cx::string),
    };
    ok.then_some(b)
}

pub(super) fn resources(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Resources> {
    let f = cx.fields(n, p, RESOURCES_KEYS, RESOURCES_ALIASES)?;
    let mut ok = true;
    let r = Resources {
        devices: cx
            .opt(&f, p, "devices", &mut ok, |cx, n, p| {
                cx.list_of(n, p, device_cgroup)
            })
            .unwrap_or_default(),
        memory: cx.opt(&f, p, "memory", &mut ok, memory),
        cpu: cx.opt(&f, p, "cpu", &mut ok, cpu),
        pids: cx.opt(&f, p, "pids", &mut ok, pids),
        block_io: cx.opt(&f, p, "blockIO", &mut ok, block_io),
        hugepage_limits: cx
            .opt(&f, p, "hugepageLimits", &mut ok, |cx, n, p| {
                cx.list_of(n, p, hugepage_limit)
            })
            .unwrap_or_default(),
        network: cx.opt(&f, p, "network", &mut ok, network),
        rdma: cx
            .opt(&f, p, "rdma", &mut ok, |cx, n, p| cx.map_of(n, p, rdma))
            .unwrap_or_default(),
        unified: cx
            .opt(&f, p, "unified", &mut ok, Cx::string_map)
            .unwrap_or_default(),
    };
    ok.then_some(r)
}

pub(super) fn device_cgroup(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<DeviceCgroup> {
    let f = cx.fields(n, p, &["allow", "type", "major", "minor", "access"], &[])?;
    let mut ok = true;
    let d = DeviceCgroup {
        allow: cx
            .opt(&f, p, "allow", &mut ok, Cx::bool)
            .unwrap_or_default(),
        kind: cx
            .opt(&f, p, "type", &mut ok, |cx, n, p| {
                checked_string(cx, n, p, |s| rules::check_device_rule(s, ""))
            })
            .unwrap_or_default(),
        major: cx.opt(&f, p, "major", &mut ok, Cx::i64),
        minor: cx.opt(&f, p, "minor", &mut ok, Cx::i64),
        access: cx
            .opt(&f, p, "access", &mut ok, |cx, n, p| {
                checked_string(cx, n, p, |s| rules::check_device_rule("", s))
            })
            .unwrap_or_default(),
    };
    ok.then_some(d)
}

pub(super) fn memory(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Memory> {
    let keys = &[
        "limit",
        "reservation",
        "swap",
        "kernel",
        "kernelTCP",
        "swappiness",
        "disableOOMKiller",
        "useHierarchy",
        "checkBeforeUpdate",
    ];
    let f = cx.fields(n, p, keys, &[])?;
    let mut ok = true;
    let m = Memory {
        limit: cx.opt(&f, p, "limit", &mut ok, Cx::i64),
        reservation: cx.opt(&f, p, "reservation", &mut ok, Cx::i64),
        swap: cx.opt(&f, p, "swap", &mut ok, Cx::i64),
        kernel: cx.opt(&f, p, "kernel", &mut ok, Cx::i64),
        kernel_tcp: cx.opt(&f, p, "kernelTCP", &mut ok, Cx::i64),
        swappiness: cx.opt(&f, p, "swappiness", &mut ok, Cx::u64),
        disable_oom_killer: cx.opt(&f, p, "disableOOMKiller", &mut ok, Cx::bool),
        use_hierarchy: cx.opt(&f, p, "useHierarchy", &mut ok, Cx::bool),
        check_before_update: cx.opt(&f, p, "checkBeforeUpdate", &mut ok, Cx::bool),
    };
    ok.then_some(m)
}

pub(super) fn cpu(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Cpu> {
    let keys = &[
        "shares",
        "quota",
        "burst",
        "period",
        "realtimeRuntime",
        "realtimePeriod",
        "cpus",
        "mems",
        "idle",
    ];
    let f = cx.fields(n, p, keys, &[])?;
    let mut ok = true;
    let c = Cpu {
        shares: cx.opt(&f, p, "shares", &mut ok, Cx::u64),
        quota: cx.opt(&f, p, "quota", &mut ok, Cx::i64),
        burst: cx.opt(&f, p, "burst", &mut ok, Cx::u64),
        period: cx.opt(&f, p, "period", &mut ok, Cx::u64),
        realtime_runtime: cx.opt(&f, p, "realtimeRuntime", &mut ok, Cx::i64),
        realtime_period: cx.opt(&f, p, "realtimePeriod", &mut ok, Cx::u64),
        cpus: cx
            .opt(&f, p, "cpus", &mut ok, Cx::string)
            .unwrap_or_default(),
        mems: cx
            .opt(&f, p, "mems", &mut ok, Cx::string)
            .unwrap_or_default(),
        idle: cx.opt(&f, p, "idle", &mut ok, Cx::i64),
    };
    ok.then_some(c)
}

pub(super) fn pids(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Pids> {
    let f = cx.fields(n, p, &["limit"], &[])?;
    let mut ok = true;
    let limit = cx.opt(&f, p, "limit", &mut ok, Cx::i64).unwrap_or_default();
    ok.then_some(Pids { limit })
}

pub(super) fn block_io(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<BlockIo> {
    let keys = &[
        "weight",
        "leafWeight",
        "weightDevice",
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    ];
    let f = cx.fields(n, p, keys, &[])?;
    let mut ok = true;
    let mut throttle = |cx: &mut Cx, key: &str| {
        cx.opt(&f, p, key, &mut ok, |cx, n, p| {
            cx.list_of(n, p, throttle_device)
        })
        .unwrap_or_default()
    };
    let read_bps = throttle(cx, "throttleReadBpsDevice");
    let write_bps = throttle(cx, "throttleWriteBpsDevice");
    let read_iops = throttle(cx, "throttleReadIOPSDevice");
    let write_iops = throttle(cx, "throttleWriteIOPSDevice");
    let b = BlockIo {
        weight: cx.opt(&f, p, "weight", &mut ok, Cx::u16),
        leaf_weight: cx.opt(&f, p, "leafWeight", &mut ok, Cx::u16),
        weight_device: cx
            .opt(&f, p, "weightDevice", &mut ok, |cx, n, p| {
                cx.list_of(n, p, weight_device)
            })
            .unwrap_or_default(),
        throttle_read_bps_device: read_bps,
        throttle_write_bps_device: write_bps,
        throttle_read_iops_device: read_iops,
        throttle_write_iops_device: write_iops,
    };
    ok.then_some(b)
}

pub(super) fn weight_device(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<WeightDevice> {
    let f = cx.fields(n, p, &["major", "minor", "weight", "leafWeight"], &[])?;
    let mut ok = true;
    let w = WeightDevice {
        major: cx.opt(&f, p, "major", &mut ok, Cx::i64).unwrap_or_default(),
        minor: cx.opt(&f, p, "minor", &mut ok, Cx::i64).unwrap_or_default(),
        weight: cx.opt(&f, p, "weight", &mut ok, Cx::u16),
        leaf_weight: cx.opt(&f, p, "leafWeight", &mut ok, Cx::u16),
    };
    ok.then_some(w)
}

pub(super) fn throttle_device(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<ThrottleDevice> {
    let f = cx.fields(n, p, &["major", "minor", "rate"], &[])?;
    let mut ok = true;
    let t = ThrottleDevice {
        major: cx.opt(&f, p, "major", &mut ok, Cx::i64).unwrap_or_default(),
        minor: cx.opt(&f, p, "minor", &mut ok, Cx::i64).unwrap_or_default(),
        rate: cx.opt(&f, p, "rate", &mut ok, Cx::u64).unwrap_or_default(),
    };
    ok.then_some(t)
}

pub(super) fn hugepage_limit(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<HugepageLimit> {
    let f = cx.fields(n, p, &["pageSize", "limit"], &[])?;
    let mut ok = true;
    let page_size = cx
        .opt(&f, p, "pageSize", &mut ok, |cx, n, p| {
            let s = match n.scalar().map(|s| s.kind) {
                Some(ScalarKind::Int(i)) if i >= 0 => i.to_string(),
                Some(ScalarKind::Str) => n.as_str()?.to_string(),
                _ => {
                    cx.type_error(n, p, "a page size such as \"2MB\" (or a number)");
                    return None;
                }
            };
            // Kept as written; `config.json` generation brings it to the OCI form.
            match rules::hugepage_size(&s) {
                Ok(_) => Some(s),
                Err(e) => {
                    cx.error(n, p, e);
                    None
                }
            }
        })
        .unwrap_or_default();
    let limit = cx.opt(&f, p, "limit", &mut ok, Cx::u64).unwrap_or_default();
    ok.then_some(HugepageLimit { page_size, limit })
}

pub(super) fn network(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Network> {
    let f = cx.fields(n, p, &["classID", "priorities"], &[])?;
    let mut ok = true;
    let net = Network {
        class_id: cx.opt(&f, p, "classID", &mut ok, Cx::u32),
        priorities: cx
            .opt(&f, p, "priorities", &mut ok, |cx, n, p| {
                cx.list_of(n, p, |cx, n, p| {
                    let f = cx.fields(n, p, &["name", "priority"], &[])?;
                    let mut ok = true;
                    let ip = InterfacePriority {
                        name: cx
                            .opt(&f, p, "name", &mut ok, Cx::string)
                            .unwrap_or_default(),
                        priority: cx
                            .opt(&f, p, "priority", &mut ok, Cx::u32)
                            .unwrap_or_default(),
                    };
                    ok.then_some(ip)
                })
            })
            .unwrap_or_default(),
    };
    ok.then_some(net)
}

pub(super) fn rdma(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Rdma> {
    let f = cx.fields(n, p, &["hcaHandles", "hcaObjects"], &[])?;
    let mut ok = true;
    let r = Rdma {
        hca_handles: cx.opt(&f, p, "hcaHandles", &mut ok, Cx::u32),
        hca_objects: cx.opt(&f, p, "hcaObjects", &mut ok, Cx::u32),
    };
    ok.then_some(r)
}
