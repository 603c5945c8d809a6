//! Property tests: random entries, labels and image configs never make the merge or
//! `bundle_config` panic; whatever `bundle_config` accepts validates against the OCI schema;
//! entries made only of valid values always build; Go-style JSON strings round-trip.

use crate::common;

use std::collections::BTreeMap;

use common::oci::*;
use imagesmith::bundle::{bundle_config, own_root, rootfs_mounts, runtime_json};
use imagesmith::oci::types::{
    BlockIo, Cpu, DeviceCgroup, HugepageLimit, IdMapping, InterfacePriority, Memory, Mount,
    Network, Pids, Rdma, Resources, ThrottleDevice, WeightDevice,
};
use imagesmith::oci::{caps, gojson};
use imagesmith::spec::merge::{ImageDefaults, MergeError, resolve};
use imagesmith::spec::model::{BindNs, Device, Id, ImageConfig, Interface, Runtime};
use proptest::collection::{btree_map, vec};
use proptest::option::{of, weighted};
use proptest::prelude::*;
use proptest::sample::select;

/// Any short string, often one that means something somewhere.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "\\PC{0,8}",
        "[a-z0-9/:,._<>&-]{0,10}",
        select(vec![
            "",
            "all",
            "none",
            "host",
            "root",
            "new",
            "/",
            "/proc",
            "/dev",
            "/x",
            "data",
            "ro",
            "rw",
            "0666",
            "0",
            "cap_chown",
            "CAP_SYS_ADMIN",
            "b",
            "c",
            "2MB",
            "shared",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// Mostly one of `good`, sometimes one of `bad`, now and then anything.
fn mostly(good: &[&'static str], bad: &[&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        24 => select(good.to_vec()).prop_map(String::from),
        2 => select(bad.to_vec()).prop_map(String::from),
        1 => text(),
    ]
    .boxed()
}

fn texts() -> BoxedStrategy<Vec<String>> {
    vec(text(), 0..4).boxed()
}

fn cap_name() -> BoxedStrategy<String> {
    prop_oneof![
        20 => select(caps::ALL.to_vec()).prop_map(String::from),
        1 => select(vec!["all", "none", "cap_chown", "sys_admin", "ALL", "CAP_NOPE"]).prop_map(String::from),
        1 => text(),
    ]
        .boxed()
}

/// `a:b[:c]`-like strings (binds, tmpfs), mostly well-formed.
fn colon_list() -> BoxedStrategy<String> {
    prop_oneof![
        8 => (
            mostly(&["/a", "/b", "data", "/dev/x"], &["", "Vol", "../x"]),
            of(mostly(&["/a", "/b", "/c"], &[""])),
            of(mostly(&["ro", "rw,rbind", "size=1m"], &[""])),
        )
            .prop_map(|(a, b, c)| [Some(a), b, c].into_iter().flatten().collect::<Vec<_>>().join(":")),
        1 => vec(text(), 1..5).prop_map(|parts| parts.join(":")),
    ]
    .boxed()
}

fn id() -> BoxedStrategy<Id> {
    prop_oneof![
        1 => any::<u64>().prop_map(Id::Num),
        4 => (0u64..70000).prop_map(Id::Num),
        5 => mostly(&["root", "", "web", "db", "42"], &["nobody", "4294967296", "-1"])
            .prop_map(Id::Name),
    ]
    .boxed()
}

fn id_mapping() -> BoxedStrategy<IdMapping> {
    (any::<u32>(), any::<u32>(), any::<u32>())
        .prop_map(|(c, h, s)| IdMapping {
            container_id: c,
            host_id: h,
            size: s,
        })
        .boxed()
}

fn mount() -> BoxedStrategy<Mount> {
    let place = || {
        prop_oneof![
            select(vec![
                "", "proc", "tmpfs", "bind", "mqueue", "cgroup", "/dev", "/x"
            ])
            .prop_map(String::from),
            text(),
        ]
    };
    (
        place(),
        place(),
        place(),
        texts(),
        vec(id_mapping(), 0..2),
        vec(id_mapping(), 0..2),
    )
        .prop_map(|(destination, kind, source, options, u, g)| Mount {
            destination,
            kind,
            source,
            options,
            uid_mappings: u,
            gid_mappings: g,
        })
        .boxed()
}

fn device() -> BoxedStrategy<Device> {
    (
        mostly(&["all", "/dev/null", "/dev/fuse"], &[""]),
        mostly(&["b", "c"], &["a", "u", "p", "x"]),
        any::<i64>(),
        any::<i64>(),
        weighted(
            0.9,
            mostly(
                &["0666", "777", "0600", "0"],
                &["0888", "", "01000", "-1", "0o644"],
            ),
        ),
    )
        .prop_map(|(path, kind, major, minor, mode)| Device {
            path,
            kind,
            major,
            minor,
            mode,
        })
        .boxed()
}

fn rlimit() -> BoxedStrategy<String> {
    let value = || {
        prop_oneof![
            3 => (0u64..100).prop_map(|v| v.to_string()),
            1 => any::<u64>().prop_map(|v| v.to_string()),
            2 => mostly(&["unlimited", "UNLIMITED"], &["", "-1", "99999999999999999999"]),
        ]
    };
    prop_oneof![
        6 => (
            mostly(&["nofile", "RLIMIT_CORE", "Nproc"], &["fly", ""]),
            value(),
            value()
        )
            .prop_map(|(n, s, h)| format!("{n},{s},{h}")),
        1 => text(),
    ]
    .boxed()
}

fn memory() -> BoxedStrategy<Memory> {
    (
        (of(any::<i64>()), of(any::<i64>()), of(any::<i64>())),
        (of(any::<i64>()), of(any::<i64>()), of(any::<u64>())),
        (of(any::<bool>()), of(any::<bool>()), of(any::<bool>())),
    )
        .prop_map(|((l, r, s), (k, kt, sw), (d, u, c))| Memory {
            limit: l,
            reservation: r,
            swap: s,
            kernel: k,
            kernel_tcp: kt,
            swappiness: sw,
            disable_oom_killer: d,
            use_hierarchy: u,
            check_before_update: c,
        })
        .boxed()
}

fn cpu() -> BoxedStrategy<Cpu> {
    (
        (of(any::<u64>()), of(any::<i64>()), of(any::<u64>())),
        (of(any::<u64>()), of(any::<i64>()), of(any::<u64>())),
        (text(), text(), of(any::<i64>())),
    )
        .prop_map(|((sh, q, b), (p, rr, rp), (cpus, mems, idle))| Cpu {
            shares: sh,
            quota: q,
            burst: b,
            period: p,
            realtime_runtime: rr,
            realtime_period: rp,
            cpus,
            mems,
            idle,
        })
        .boxed()
}

fn throttle() -> BoxedStrategy<Vec<ThrottleDevice>> {
    vec(
        (any::<i64>(), any::<i64>(), any::<u64>())
            .prop_map(|(major, minor, rate)| ThrottleDevice { major, minor, rate }),
        0..2,
    )
    .boxed()
}

fn block_io() -> BoxedStrategy<BlockIo> {
    (
        of(any::<u16>()),
        of(any::<u16>()),
        vec(
            (
                any::<i64>(),
                any::<i64>(),
                of(any::<u16>()),
                of(any::<u16>()),
            )
                .prop_map(|(major, minor, weight, leaf_weight)| WeightDevice {
                    major,
                    minor,
                    weight,
                    leaf_weight,
                }),
            0..2,
        ),
        (throttle(), throttle(), throttle(), throttle()),
    )
        .prop_map(
            |(weight, leaf_weight, weight_device, (rb, wb, ri, wi))| BlockIo {
                weight,
                leaf_weight,
                weight_device,
                throttle_read_bps_device: rb,
                throttle_write_bps_device: wb,
                throttle_read_iops_device: ri,
                throttle_write_iops_device: wi,
            },
        )
        .boxed()
}

fn resources() -> BoxedStrategy<Resources> {
    let rule = (
        any::<bool>(),
        text(),
        of(any::<i64>()),
        of(any::<i64>()),
        text(),
    )
        .prop_map(|(allow, kind, major, minor, access)| DeviceCgroup {
            allow,
            kind,
            major,
            minor,
            access,
        });
    let hugepage = (
        mostly(
            &["2MB", "1GB", "64KB", "2097152"],
            &["1000", "0MB", "", "2mb"],
        ),
        any::<u64>(),
    )
        .prop_map(|(page_size, limit)| HugepageLimit { page_size, limit });
    let network = (
        of(any::<u32>()),
        vec(
            (text(), any::<u32>())
                .prop_map(|(name, priority)| InterfacePriority { name, priority }),
            0..2,
        ),
    )
        .prop_map(|(class_id, priorities)| Network {
            class_id,
            priorities,
        });
    let rdma = btree_map(
        text(),
        (of(any::<u32>()), of(any::<u32>())).prop_map(|(h, o)| Rdma {
            hca_handles: h,
            hca_objects: o,
        }),
        0..2,
    );
    (
        vec(rule, 0..3),
        of(memory()),
        of(cpu()),
        of(any::<i64>().prop_map(|limit| Pids { limit })),
        of(block_io()),
        vec(hugepage, 0..3),
        of(network),
        rdma,
        btree_map(text(), text(), 0..3),
    )
        .prop_map(
            |(devices, memory, cpu, pids, block_io, hugepage_limits, network, rdma, unified)| {
                Resources {
                    devices,
                    memory,
                    cpu,
                    pids,
                    block_io,
                    hugepage_limits,
                    network,
                    rdma,
                    unified,
                }
            },
        )
        .boxed()
}

fn runtime() -> BoxedStrategy<Runtime> {
    let interface =
        (text(), text(), text(), any::<bool>()).prop_map(|(name, add, peer, c)| Interface {
            name,
            add,
            peer,
            create_in_root: c,
        });
    let bind_ns = (
        (of(text()), of(text()), of(text()), of(text())),
        (of(text()), of(text()), of(text())),
    )
        .prop_map(|((cgroup, ipc, mnt, net), (pid, user, uts))| BindNs {
            cgroup,
            ipc,
            mnt,
            net,
            pid,
            user,
            uts,
        });
    (
        of(texts()),
        of(vec(mount(), 0..3)),
        of(texts()),
        of(vec(interface, 0..3)),
        of(bind_ns),
        of(text()),
    )
        .prop_map(
            |(cgroups, mounts, mkdir, interfaces, bind_ns, namespace)| Runtime {
                cgroups,
                mounts,
                mkdir,
                interfaces,
                bind_ns,
                namespace,
            },
        )
        .boxed()
}

/// Any `ImageConfig`: each field absent, empty, valid or not.
fn config() -> BoxedStrategy<ImageConfig> {
    let caps = || weighted(0.3, vec(cap_name(), 0..4)).boxed();
    let ns = || {
        weighted(
            0.3,
            prop_oneof![
                select(vec!["host", "root", "new", "none", "", "/proc/1/ns/net"])
                    .prop_map(String::from),
                text(),
            ],
        )
    };
    let a = (
        (caps(), caps(), caps()),
        (
            weighted(0.3, vec(mount(), 0..3)),
            weighted(0.3, vec(colon_list(), 0..3)),
            weighted(0.3, vec(colon_list(), 0..3)),
        ),
        (
            weighted(0.3, vec(device(), 0..3)),
            weighted(0.3, vec(colon_list(), 0..3)),
        ),
        (
            weighted(0.3, texts()),
            weighted(0.3, texts()),
            weighted(0.3, text()),
        ),
        (ns(), ns(), ns(), ns(), ns()),
    );
    let b = (
        (
            weighted(0.3, text()),
            weighted(0.3, any::<bool>()),
            weighted(0.3, texts()),
            weighted(0.3, texts()),
        ),
        (
            weighted(0.3, id()),
            weighted(0.3, id()),
            weighted(0.3, vec(id(), 0..3)),
        ),
        (
            weighted(0.3, any::<bool>()),
            weighted(0.3, prop_oneof![1 => any::<i64>(), 6 => -1200i64..1200]),
            weighted(
                0.3,
                mostly(
                    &["private", "shared", "slave", "unbindable", ""],
                    &["rshared"],
                ),
            ),
            weighted(0.3, text()),
        ),
        (
            weighted(0.3, resources()),
            weighted(0.3, btree_map(text(), text(), 0..3)),
            weighted(0.3, vec(rlimit(), 0..3)),
        ),
        (
            weighted(0.3, vec(id_mapping(), 0..2)),
            weighted(0.3, vec(id_mapping(), 0..2)),
            weighted(0.3, btree_map(text(), text(), 0..3)),
            weighted(0.3, runtime()),
        ),
    );
    (a, b)
        .prop_map(
            |(
                (
                    (capabilities, capabilities_add, ambient),
                    (mounts, binds, binds_add),
                    (devices, tmpfs),
                    (command, env, cwd),
                    (net, pid, ipc, uts, userns),
                ),
                (
                    (hostname, readonly, masked_paths, readonly_paths),
                    (uid, gid, additional_gids),
                    (no_new_privileges, oom_score_adj, rootfs_propagation, cgroups_path),
                    (resources, sysctl, rlimits),
                    (uid_mappings, gid_mappings, annotations, runtime),
                ),
            )| ImageConfig {
                capabilities,
                capabilities_add,
                ambient,
                mounts,
                binds,
                binds_add,
                devices,
                tmpfs,
                command,
                env,
                cwd,
                net,
                pid,
                ipc,
                uts,
                userns,
                hostname,
                readonly,
                masked_paths,
                readonly_paths,
                uid,
                gid,
                additional_gids,
                no_new_privileges,
                oom_score_adj,
                rootfs_propagation,
                cgroups_path,
                resources,
                sysctl,
                rlimits,
                uid_mappings,
                gid_mappings,
                annotations,
                runtime,
            },
        )
        .boxed()
}

fn defaults() -> BoxedStrategy<ImageDefaults> {
    (texts(), texts(), of(texts()), text())
        .prop_map(|(entrypoint, cmd, env, working_dir)| ImageDefaults {
            entrypoint,
            cmd,
            env,
            working_dir,
        })
        .boxed()
}

fn ids() -> BTreeMap<String, u32> {
    BTreeMap::from([("web".to_string(), 100), ("db".to_string(), 101)])
}

/// Only valid values: every entry made of them must build.
fn valid_config() -> BoxedStrategy<ImageConfig> {
    let cap_list = || {
        prop_oneof![
            vec(select(caps::ALL.to_vec()).prop_map(String::from), 0..5),
            select(vec!["all", "none", "ALL"]).prop_map(|k| vec![k.to_string()]),
        ]
    };
    let ns = || of(select(vec!["host", "root", "new", "", "/run/netns/x"]).prop_map(String::from));
    let path = || "/[a-z]{1,6}(/[a-z]{1,6}){0,2}";
    let bind = (
        prop_oneof![path().boxed(), "[a-z0-9_-]{1,8}".boxed()],
        path(),
        of(vec(select(vec!["ro", "rw", "rshared", "nosuid"]), 1..3)),
    )
        .prop_map(|(s, d, o)| match o {
            Some(o) => format!("{s}:{d}:{}", o.join(",")),
            None => format!("{s}:{d}"),
        });
    let device = prop_oneof![
        select(vec!["a", "b", "c"]).prop_map(|k| Device {
            path: "all".into(),
            kind: k.into(),
            ..Device::default()
        }),
        (
            path(),
            select(vec!["c", "b", "u", "p"]),
            0i64..300,
            0i64..300,
            0u32..0o1000
        )
            .prop_map(|(p, k, major, minor, mode)| Device {
                path: p,
                kind: k.into(),
                major,
                minor,
                mode: Some(format!("{mode:04o}")),
            }),
    ];
    let rlimit = (
        select(vec!["nofile", "RLIMIT_CORE", "nproc", "Stack"]),
        0u64..1000,
        prop_oneof![Just(None), (0u64..1000).prop_map(Some)],
    )
        .prop_map(|(n, s, extra)| match extra {
            Some(e) => format!("{n},{s},{}", s + e),
            None => format!("{n},{s},unlimited"),
        });
    let id = || {
        prop_oneof![
            (0u64..=u32::MAX as u64).prop_map(Id::Num),
            select(vec!["root", "web", "db", "7"]).prop_map(|s| Id::Name(s.into())),
        ]
    };
    (
        (of(cap_list()), of(cap_list()), of(cap_list())),
        (
            of(vec(bind, 0..3)),
            of(vec(device, 0..3)),
            of(vec(rlimit, 0..3)),
        ),
        (ns(), ns(), ns(), ns(), ns(), of(any::<bool>())),
        (of(id()), of(id()), of(vec(id(), 0..3)), of(-1000i64..=1000)),
        (
            of(select(vec!["private", "shared", "slave", "unbindable"]).prop_map(String::from)),
            of(vec(path().prop_map(|p| format!("{p}:size=1m")), 0..2)),
        ),
    )
        .prop_map(
            |(
                (capabilities, capabilities_add, ambient),
                (binds, devices, rlimits),
                (net, pid, ipc, uts, userns, readonly),
                (uid, gid, additional_gids, oom_score_adj),
                (rootfs_propagation, tmpfs),
            )| ImageConfig {
                capabilities,
                capabilities_add,
                ambient,
                binds,
                devices,
                rlimits,
                net,
                pid,
                ipc,
                uts,
                userns,
                readonly,
                uid,
                gid,
                additional_gids,
                oom_score_adj,
                rootfs_propagation,
                tmpfs,
                ..ImageConfig::default()
            },
        )
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_configs_never_panic_and_build_schema_valid_json(
        yaml in config(),
        label in of(config()),
        image in defaults(),
    ) {
        let e = entry("x", "golden/base:1", yaml.clone());
        match resolve(&e, label.as_ref(), &image) {
            Err(MergeError::EmptyCommand) => {
                let command = yaml
                    .command
                    .or_else(|| label.and_then(|l| l.command))
                    .unwrap_or_else(|| [image.entrypoint, image.cmd].concat());
                prop_assert!(command.is_empty());
            }
            Ok(r) => {
                prop_assert!(!r.args.is_empty());
                prop_assert!(!r.cwd.is_empty());
                if let Ok(b) = bundle_config(&r, &ids()) {
                    let errors = schema_errors(&b.config_json);
                    prop_assert!(
                        errors.is_empty(),
                        "{}\n{}",
                        errors.join("\n"),
                        String::from_utf8_lossy(&b.config_json)
                    );
                    let dir = "containers/services/x";
                    let rt = runtime_json(
                        &b.runtime,
                        rootfs_mounts(dir, &own_root(dir, r.readonly), r.readonly),
                    );
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&rt).is_ok());
                }
            }
        }
    }

    #[test]
    fn valid_configs_always_build(yaml in valid_config(), label in of(valid_config())) {
        let e = entry("x", "golden/base:1", yaml);
        let r = resolve(&e, label.as_ref(), &base_image()).expect("resolve");
        let b = bundle_config(&r, &ids());
        prop_assert!(b.is_ok(), "{:?}", b.err());
        if let Ok(b) = b {
            let errors = schema_errors(&b.config_json);
            prop_assert!(errors.is_empty(), "{}", errors.join("\n"));
        }
    }

    #[test]
    fn go_json_strings_round_trip_and_are_html_safe(s in "\\PC{0,40}|[<>&\u{2028}\u{2029}a]{0,10}") {
        let bytes = gojson::to_vec(&s);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        for c in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            prop_assert!(!text.contains(c), "{text}");
        }
        let back: String = serde_json::from_slice(&bytes).expect("valid JSON");
        prop_assert_eq!(back, s);
    }
}
