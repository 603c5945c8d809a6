//! The four golden specs of `../shared/golden/specs/`, built by hand as model values (the
//! YAML parser is not used here), merged with hand-made image configs, and turned into
//! `config.json` / `runtime.json`: each must equal the golden file byte for byte and every
//! `config.json` must validate against the OCI schema.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::oci::*;
use common::shared_dir;
use imagesmith::bundle::{bundle_config, own_root, rootfs_mounts, runtime_json};
use imagesmith::oci::types::{Cpu, IdMapping, Memory, Pids, Resources};
use imagesmith::spec::merge::{ImageDefaults, resolve};
use imagesmith::spec::model::{
    BindNs, Device, Id, ImageConfig, ImageEntry, Interface, Runtime, Spec, id_map,
};

/// The images the golden specs use: their own config and their label, if any.
fn image(reference: &str) -> (ImageDefaults, Option<ImageConfig>) {
    match reference {
        "golden/base:1" => (base_image(), None),
        "golden/label:1" => (label_image(), Some(golden_label())),
        other => panic!("no such golden image: {other}"),
    }
}

/// Builds every bundle of `spec` as the output layout of SPEC §4.2 places them (dedup by
/// normalised reference: a later bundle uses the first copy's `lower`/`rootfs`), compares
/// both files with `expected/<case>/containers/…`, and checks that every golden file was
/// compared.
fn check_case(case: &str, spec: &Spec) {
    let ids = id_map(spec);
    let mut first_copy: BTreeMap<String, String> = BTreeMap::new();
    let mut compared = BTreeSet::new();
    let sections: [(&str, &[ImageEntry], bool); 3] = [
        ("onboot", &spec.onboot, true),
        ("onshutdown", &spec.onshutdown, true),
        ("services", &spec.services, false),
    ];
    for (section, entries, numbered) in sections {
        for (i, e) in entries.iter().enumerate() {
            let rel = if numbered {
                format!("{section}/{i:03}-{}", e.name)
            } else {
                format!("{section}/{}", e.name)
            };
            let dir = format!("containers/{rel}");
            let (defaults, label) = image(&e.image.original);
            let r = resolve(e, label.as_ref(), &defaults).expect("resolve");
            let root = first_copy
                .entry(e.image.normalized())
                .or_insert_with(|| own_root(&dir, r.readonly))
                .clone();
            let b = bundle_config(&r, &ids).expect("bundle_config");
            assert_schema_valid(&b.config_json);
            let config = String::from_utf8(b.config_json).expect("utf-8");
            let runtime = String::from_utf8(runtime_json(
                &b.runtime,
                rootfs_mounts(&dir, &root, r.readonly),
            ))
            .expect("utf-8");
            assert_eq!(
                config,
                golden(case, &format!("{rel}/config.json")),
                "{case} {rel}/config.json"
            );
            assert_eq!(
                runtime,
                golden(case, &format!("{rel}/runtime.json")),
                "{case} {rel}/runtime.json"
            );
            compared.insert(format!("{rel}/config.json"));
            compared.insert(format!("{rel}/runtime.json"));
        }
    }
    let expected_dir = shared_dir()
        .join("golden/expected")
        .join(case)
        .join("containers");
    let mut on_disk = BTreeSet::new();
    for section in ["onboot", "onshutdown", "services"] {
        let Ok(bundles) = std::fs::read_dir(expected_dir.join(section)) else {
            continue;
        };
        for b in bundles {
            let b = b.expect("dir entry");
            for f in std::fs::read_dir(b.path()).expect("bundle dir") {
                let f = f.expect("dir entry");
                on_disk.insert(format!(
                    "{section}/{}/{}",
                    b.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
            }
        }
    }
    assert_eq!(
        compared, on_disk,
        "{case}: golden files compared vs present"
    );
}

fn cmd(v: &[&str]) -> ImageConfig {
    ImageConfig {
        command: some_strings(v),
        ..ImageConfig::default()
    }
}

#[test]
fn golden_01_layouts() {
    let spec = Spec {
        init: vec![image_ref("golden/base:1")],
        onboot: vec![
            entry("first", "golden/base:1", cmd(&["/bin/cat", "/hello.txt"])),
            entry(
                "ro",
                "golden/label:1",
                ImageConfig {
                    readonly: Some(true),
                    ..ImageConfig::default()
                },
            ),
            entry(
                "again",
                "golden/base:1",
                ImageConfig {
                    readonly: Some(true),
                    ..ImageConfig::default()
                },
            ),
        ],
        onshutdown: vec![entry("bye", "golden/base:1", cmd(&["/bin/echo", "bye"]))],
        services: vec![entry("svc", "golden/base:1", cmd(&["/bin/sleep", "3600"]))],
        ..Spec::default()
    };
    check_case("01-layouts", &spec);
}

#[test]
fn golden_02_label() {
    let spec = Spec {
        services: vec![
            entry("plain", "golden/label:1", ImageConfig::default()),
            entry(
                "override",
                "golden/label:1",
                ImageConfig {
                    capabilities: some_strings(&["CAP_CHOWN"]),
                    binds: some_strings(&["/tmp:/tmp"]),
                    env: Some(vec![]),
                    readonly: Some(false),
                    pid: Some("new".into()),
                    ..ImageConfig::default()
                },
            ),
            entry(
                "adds",
                "golden/label:1",
                ImageConfig {
                    capabilities_add: some_strings(&["CAP_SYS_TIME", "CAP_NET_ADMIN"]),
                    binds_add: some_strings(&["/srv:/srv:ro"]),
                    runtime: Some(Runtime {
                        mkdir: some_strings(&["/var/lib/adds"]),
                        cgroups: some_strings(&["adds"]),
                        ..Runtime::default()
                    }),
                    ..ImageConfig::default()
                },
            ),
        ],
        ..Spec::default()
    };
    check_case("02-label", &spec);
}

fn mount(destination: &str, kind: &str, options: &[&str]) -> imagesmith::oci::types::Mount {
    imagesmith::oci::types::Mount {
        destination: destination.into(),
        kind: kind.into(),
        options: strings(options),
        ..Default::default()
    }
}

/// Entry `a` of `specs/03-fields.yml`, field by field.
fn fields_a() -> ImageConfig {
    ImageConfig {
        command: some_strings(&["/bin/true"]),
        net: Some("new".into()),
        ipc: Some("new".into()),
        uts: Some("new".into()),
        userns: Some("new".into()),
        hostname: Some("golden".into()),
        ambient: some_strings(&["CAP_NET_BIND_SERVICE"]),
        capabilities: some_strings(&["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]),
        tmpfs: some_strings(&["/run:rw,nosuid,size=1m", "/scratch"]),
        mounts: Some(vec![
            mount("", "proc", &[]),
            mount("/dev/mqueue", "mqueue", &["nosuid", "nodev", "noexec"]),
            mount(
                "",
                "cgroup",
                &["rw", "nosuid", "noexec", "nodev", "relatime"],
            ),
        ]),
        binds: some_strings(&["/var:/var", "/etc/resolv.conf:/etc/resolv.conf:ro"]),
        devices: Some(vec![
            Device {
                path: "all".into(),
                kind: "b".into(),
                ..Device::default()
            },
            Device {
                path: "/dev/console".into(),
                kind: "c".into(),
                major: 5,
                minor: 1,
                mode: Some("0666".into()),
            },
        ]),
        rlimits: some_strings(&["nofile,1024,2048", "RLIMIT_NPROC,unlimited,unlimited"]),
        sysctl: Some(BTreeMap::from([
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("kernel.pid_max".to_string(), "65536".to_string()),
        ])),
        masked_paths: some_strings(&["/proc/kcore"]),
        readonly_paths: some_strings(&["/proc/sys"]),
        oom_score_adj: Some(-500),
        no_new_privileges: Some(true),
        rootfs_propagation: Some("shared".into()),
        cgroups_path: Some("/golden/a".into()),
        annotations: Some(BTreeMap::from([
            ("org.example/role".to_string(), "test".to_string()),
            ("org.example/zeta".to_string(), "last".to_string()),
        ])),
        resources: Some(Resources {
            memory: Some(Memory {
                limit: Some(268435456),
                ..Memory::default()
            }),
            cpu: Some(Cpu {
                shares: Some(512),
                ..Cpu::default()
            }),
            pids: Some(Pids { limit: 100 }),
            ..Resources::default()
        }),
        uid: Some(Id::Name("b".into())),
        gid: Some(Id::Num(1000)),
        additional_gids: Some(vec![Id::Name("b".into()), Id::Num(27)]),
        runtime: Some(Runtime {
            mkdir: some_strings(&["/var/lib/a"]),
            interfaces: Some(vec![Interface {
                name: "eth1".into(),
                add: "veth".into(),
                peer: "eth1-host".into(),
                create_in_root: false,
            }]),
            bind_ns: Some(BindNs {
                net: Some("/run/netns/a".into()),
                ..BindNs::default()
            }),
            ..Runtime::default()
        }),
        ..ImageConfig::default()
    }
}

#[test]
fn golden_03_fields() {
    let mapping = || {
        Some(vec![IdMapping {
            container_id: 0,
            host_id: 100000,
            size: 65536,
        }])
    };
    let spec = Spec {
        onboot: vec![entry("a", "golden/base:1", fields_a())],
        services: vec![
            entry(
                "b",
                "golden/base:1",
                ImageConfig {
                    net: Some("/run/netns/a".into()),
                    pid: Some("host".into()),
                    capabilities: some_strings(&["all"]),
                    ..ImageConfig::default()
                },
            ),
            entry(
                "c",
                "golden/base:1",
                ImageConfig {
                    capabilities: some_strings(&["none"]),
                    readonly: Some(true),
                    uid_mappings: mapping(),
                    gid_mappings: mapping(),
                    ..ImageConfig::default()
                },
            ),
        ],
        ..Spec::default()
    };
    check_case("03-fields", &spec);
}

#[test]
fn golden_04_kernel_files() {
    let spec = Spec {
        init: vec![image_ref("golden/base:1")],
        onboot: vec![entry("owner", "golden/base:1", ImageConfig::default())],
        ..Spec::default()
    };
    check_case("04-kernel-files", &spec);
}
