//! Snapshots of `config.json` / `runtime.json` bytes for representative entries (reviewed by
//! hand against SPEC §4.3–4.4 and LinuxKit's `ConfigToOCI`). Every `config.json` is also
//! checked against the OCI schema.

use crate::common;

use std::collections::BTreeMap;

use common::oci::*;
use imagesmith::bundle::{bundle_config, own_root, rootfs_mounts, runtime_json};
use imagesmith::oci::types::{
    BlockIo, Cpu, DeviceCgroup, HugepageLimit, InterfacePriority, Memory, Mount, Network, Pids,
    Rdma, Resources, ThrottleDevice, WeightDevice,
};
use imagesmith::spec::merge::{ImageDefaults, resolve};
use imagesmith::spec::model::{BindNs, Device, Id, ImageConfig, Interface, Runtime};

/// `(config.json, runtime.json)` of `config` (over `label`) as bundle `dir`, holding its own
/// copy of the image.
fn build(
    dir: &str,
    config: ImageConfig,
    label: Option<&ImageConfig>,
    image: &ImageDefaults,
) -> (String, String) {
    let ids = BTreeMap::from([
        ("web".to_string(), 100),
        ("db".to_string(), 101),
        ("app".to_string(), 102),
    ]);
    let name = dir.rsplit('/').next().unwrap_or(dir);
    let r = resolve(&entry(name, "example/app:1", config), label, image).expect("resolve");
    let b = bundle_config(&r, &ids).expect("bundle_config");
    assert_schema_valid(&b.config_json);
    let rootfs = rootfs_mounts(dir, &own_root(dir, r.readonly), r.readonly);
    (
        String::from_utf8(b.config_json).expect("utf-8"),
        String::from_utf8(runtime_json(&b.runtime, rootfs)).expect("utf-8"),
    )
}

fn app_image() -> ImageDefaults {
    ImageDefaults {
        entrypoint: strings(&["/usr/bin/app"]),
        cmd: strings(&["--serve"]),
        env: some_strings(&["PATH=/usr/bin:/bin", "HOME=/root"]),
        working_dir: "/srv".into(),
    }
}

#[test]
fn writable() {
    let (config, runtime) = build(
        "containers/services/app",
        ImageConfig::default(),
        None,
        &app_image(),
    );
    insta::assert_snapshot!("writable_config", config);
    insta::assert_snapshot!("writable_runtime", runtime);
}

#[test]
fn read_only() {
    let (config, runtime) = build(
        "containers/onboot/000-ro",
        ImageConfig {
            readonly: Some(true),
            command: some_strings(&["/bin/true"]),
            ..ImageConfig::default()
        },
        None,
        &base_image(),
    );
    insta::assert_snapshot!("read_only_config", config);
    insta::assert_snapshot!("read_only_runtime", runtime);
}

#[test]
fn label_driven() {
    let (config, runtime) = build(
        "containers/services/labelled",
        ImageConfig::default(),
        Some(&golden_label()),
        &label_image(),
    );
    insta::assert_snapshot!("label_driven_config", config);
    insta::assert_snapshot!("label_driven_runtime", runtime);
}

#[test]
fn add_forms() {
    let (config, _) = build(
        "containers/services/adds",
        ImageConfig {
            capabilities_add: some_strings(&["cap_sys_admin", "sys_time", "CAP_KILL"]),
            binds_add: some_strings(&["/var:/var:rshared,rbind", "/srv:/srv:ro"]),
            ambient: some_strings(&["CAP_NET_BIND_SERVICE"]),
            ..ImageConfig::default()
        },
        Some(&golden_label()),
        &label_image(),
    );
    insta::assert_snapshot!("add_forms_config", config);
}

#[test]
fn devices() {
    let dev = |path: &str, kind: &str, major, minor, mode: Option<&str>| Device {
        path: path.into(),
        kind: kind.into(),
        major,
        minor,
        mode: mode.map(String::from),
    };
    let (config, _) = build(
        "containers/services/devs",
        ImageConfig {
            devices: Some(vec![
                dev("all", "c", 0, 0, None),
                dev("/dev/fuse", "c", 10, 229, Some("0666")),
                dev("/dev/sda", "b", 8, 0, Some("660")),
                dev("/dev/fifo", "p", 0, 0, Some("0600")),
            ]),
            resources: Some(Resources {
                devices: vec![DeviceCgroup {
                    allow: false,
                    access: "rwm".into(),
                    ..DeviceCgroup::default()
                }],
                ..Resources::default()
            }),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("devices_config", config);
}

#[test]
fn resources_full() {
    let (config, _) = build(
        "containers/services/limited",
        ImageConfig {
            resources: Some(Resources {
                devices: vec![],
                memory: Some(Memory {
                    limit: Some(536870912),
                    reservation: Some(268435456),
                    swap: Some(1073741824),
                    kernel: Some(-1),
                    kernel_tcp: Some(16777216),
                    swappiness: Some(60),
                    disable_oom_killer: Some(true),
                    use_hierarchy: Some(false),
                    check_before_update: Some(true),
                }),
                cpu: Some(Cpu {
                    shares: Some(1024),
                    quota: Some(50000),
                    burst: Some(10000),
                    period: Some(100000),
                    realtime_runtime: Some(950000),
                    realtime_period: Some(1000000),
                    cpus: "0-1".into(),
                    mems: "0".into(),
                    idle: Some(0),
                }),
                pids: Some(Pids { limit: 64 }),
                block_io: Some(BlockIo {
                    weight: Some(500),
                    leaf_weight: Some(300),
                    weight_device: vec![WeightDevice {
                        major: 8,
                        minor: 0,
                        weight: Some(200),
                        leaf_weight: None,
                    }],
                    throttle_read_bps_device: vec![ThrottleDevice {
                        major: 8,
                        minor: 0,
                        rate: 1048576,
                    }],
                    throttle_write_bps_device: vec![ThrottleDevice {
                        major: 8,
                        minor: 16,
                        rate: 2097152,
                    }],
                    throttle_read_iops_device: vec![ThrottleDevice {
                        major: 8,
                        minor: 0,
                        rate: 1000,
                    }],
                    throttle_write_iops_device: vec![ThrottleDevice {
                        major: 8,
                        minor: 0,
                        rate: 500,
                    }],
                }),
                hugepage_limits: vec![
                    HugepageLimit {
                        page_size: "2MB".into(),
                        limit: 209715200,
                    },
                    HugepageLimit {
                        page_size: "1073741824".into(),
                        limit: 0,
                    },
                ],
                network: Some(Network {
                    class_id: Some(1048577),
                    priorities: vec![
                        InterfacePriority {
                            name: "eth0".into(),
                            priority: 500,
                        },
                        InterfacePriority {
                            name: "eth1".into(),
                            priority: 1000,
                        },
                    ],
                }),
                rdma: BTreeMap::from([(
                    "mlx5_1".to_string(),
                    Rdma {
                        hca_handles: Some(3),
                        hca_objects: Some(10000),
                    },
                )]),
                unified: BTreeMap::from([
                    ("memory.high".to_string(), "1073741824".to_string()),
                    ("io.max".to_string(), "8:0 rbps=1048576".to_string()),
                ]),
            }),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("resources_full_config", config);
}

#[test]
fn volumes_in_binds() {
    let (config, _) = build(
        "containers/services/vols",
        ImageConfig {
            binds: some_strings(&["data:/data", "logs:/var/log:ro", "/etc/ssl:/etc/ssl:ro"]),
            binds_add: some_strings(&["ignored:/ignored"]),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("volumes_in_binds_config", config);
}

#[test]
fn uid_by_name() {
    let (config, _) = build(
        "containers/onboot/001-web",
        ImageConfig {
            uid: Some(Id::Name("web".into())),
            gid: Some(Id::Name("db".into())),
            additional_gids: Some(vec![
                Id::Name("app".into()),
                Id::Name("10".into()),
                Id::Num(20),
                Id::Name("root".into()),
            ]),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("uid_by_name_config", config);
}

#[test]
fn rlimits() {
    let (config, _) = build(
        "containers/services/limits",
        ImageConfig {
            rlimits: some_strings(&[
                "nofile,1024,4096",
                "RLIMIT_CORE,0,unlimited",
                "MemLock , Unlimited , UNLIMITED",
                "rlimit_rttime,1000000,2000000",
            ]),
            no_new_privileges: Some(true),
            oom_score_adj: Some(1000),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("rlimits_config", config);
}

#[test]
fn runtime_full() {
    let (_, runtime) = build(
        "containers/services/net",
        ImageConfig {
            runtime: Some(Runtime {
                cgroups: some_strings(&["net", "shared"]),
                mounts: Some(vec![Mount {
                    destination: "/run/netns".into(),
                    kind: "bind".into(),
                    source: "/run/netns".into(),
                    options: strings(&["rbind", "rshared"]),
                    ..Mount::default()
                }]),
                mkdir: some_strings(&["/var/lib/net", "/run/netns"]),
                interfaces: Some(vec![
                    Interface {
                        name: "eth0".into(),
                        ..Interface::default()
                    },
                    Interface {
                        name: "veth0".into(),
                        add: "veth".into(),
                        peer: "veth0-peer".into(),
                        create_in_root: true,
                    },
                ]),
                bind_ns: Some(BindNs {
                    cgroup: Some("/run/ns/cgroup".into()),
                    ipc: Some("/run/ns/ipc".into()),
                    mnt: Some("/run/ns/mnt".into()),
                    net: Some("/run/ns/net".into()),
                    pid: Some("/run/ns/pid".into()),
                    user: Some("/run/ns/user".into()),
                    uts: Some("/run/ns/uts".into()),
                }),
                namespace: Some("services.linuxkit".into()),
            }),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("runtime_full_runtime", runtime);
}

#[test]
fn go_escaping() {
    let (config, _) = build(
        "containers/services/esc",
        ImageConfig {
            command: some_strings(&["/bin/sh", "-c", "a && b > /tmp/x < /dev/null"]),
            env: some_strings(&["SEP=\u{2028}\u{2029}", "Q=\"quoted\"\\", "T=\ttab"]),
            annotations: Some(BTreeMap::from([(
                "org.example/<html>".to_string(),
                "&amp;".to_string(),
            )])),
            hostname: Some("höst".into()),
            ..ImageConfig::default()
        },
        None,
        &app_image(),
    );
    insta::assert_snapshot!("go_escaping_config", config);
}
