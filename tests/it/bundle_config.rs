//! `config.json` generation rules beyond the golden cases: namespaces, ids, binds, mounts,
//! devices, rlimits, runtime.json, and every error case (never a panic).

use crate::common;

use std::collections::BTreeMap;

use common::oci::*;
use imagesmith::bundle::{
    OciError, bundle_config, config_spec, own_root, rootfs_mounts, runtime_from, runtime_json,
};
use imagesmith::oci::caps::CapError;
use imagesmith::oci::types::{HugepageLimit, Mount, Resources};
use imagesmith::spec::merge::{Resolved, resolve};
use imagesmith::spec::model::{Device, Id, ImageConfig, Runtime};
use imagesmith::spec::rules::{
    IdError, complete_mount, parse_bind, parse_rlimit, parse_tmpfs, resolve_id,
};

fn resolved(config: ImageConfig) -> Resolved {
    resolve(&entry("x", "golden/base:1", config), None, &base_image()).expect("resolve")
}

fn ids() -> BTreeMap<String, u32> {
    BTreeMap::from([("a".to_string(), 100), ("b".to_string(), 101)])
}

fn err(config: ImageConfig) -> OciError {
    match bundle_config(&resolved(config), &ids()) {
        Ok(b) => panic!(
            "expected an error, got\n{}",
            String::from_utf8_lossy(&b.config_json)
        ),
        Err(e) => e,
    }
}

fn ok(config: ImageConfig) -> imagesmith::oci::types::Spec {
    let r = resolved(config);
    let b = bundle_config(&r, &ids()).expect("bundle_config");
    assert_schema_valid(&b.config_json);
    config_spec(&r, &ids()).expect("config_spec")
}

fn ns(spec: &imagesmith::oci::types::Spec) -> Vec<(String, String)> {
    spec.linux
        .namespaces
        .iter()
        .map(|n| (n.kind.clone(), n.path.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn namespace_values() {
    let spec = ok(ImageConfig {
        net: Some("none".into()),
        ipc: Some("/proc/1/ns/ipc".into()),
        uts: Some("root".into()),
        pid: Some("new".into()),
        userns: Some("host".into()),
        ..ImageConfig::default()
    });
    assert_eq!(
        ns(&spec),
        pairs(&[
            ("network", ""),
            ("ipc", "/proc/1/ns/ipc"),
            ("pid", ""),
            ("mount", "")
        ])
    );
    // Defaults: only pid and mount; `none` means a new namespace for the network only.
    assert_eq!(
        ns(&ok(ImageConfig::default())),
        pairs(&[("pid", ""), ("mount", "")])
    );
    let spec = ok(ImageConfig {
        pid: Some("root".into()),
        uts: Some("new".into()),
        userns: Some("/run/userns".into()),
        net: Some(String::new()),
        ..ImageConfig::default()
    });
    assert_eq!(
        ns(&spec),
        pairs(&[("uts", ""), ("user", "/run/userns"), ("mount", "")])
    );
}

#[test]
fn ids_by_number_string_root_and_name() {
    let ids = ids();
    assert_eq!(resolve_id(&Id::Num(4294967295), &ids), Ok(u32::MAX));
    assert_eq!(resolve_id(&Id::Name("42".into()), &ids), Ok(42));
    assert_eq!(resolve_id(&Id::Name("root".into()), &ids), Ok(0));
    // "" is `root` to LinuxKit, but not a value SPEC §2.1 allows (the parser refuses it).
    assert_eq!(
        resolve_id(&Id::Name(String::new()), &ids),
        Err(IdError::Empty)
    );
    assert_eq!(resolve_id(&Id::Name("b".into()), &ids), Ok(101));
    assert!(matches!(
        resolve_id(&Id::Num(4294967296), &ids),
        Err(IdError::TooLarge(_))
    ));
    assert!(matches!(
        resolve_id(&Id::Name("4294967296".into()), &ids),
        Err(IdError::TooLarge(_))
    ));
    assert_eq!(
        resolve_id(&Id::Name("nobody".into()), &ids),
        Err(IdError::Unknown("nobody".into()))
    );
    // In a bundle, the error names the field.
    assert_eq!(
        config_spec(
            &resolved(ImageConfig {
                additional_gids: Some(vec![Id::Name("nobody".into())]),
                ..ImageConfig::default()
            }),
            &ids
        )
        .err(),
        Some(OciError::Id {
            field: "additionalGids",
            error: IdError::Unknown("nobody".into())
        })
    );
    assert!(matches!(
        resolve_id(&Id::Name("+5".into()), &ids),
        Err(IdError::Unknown(_))
    ));
    let spec = ok(ImageConfig {
        uid: Some(Id::Name("a".into())),
        gid: Some(Id::Name("7".into())),
        additional_gids: Some(vec![Id::Name("root".into()), Id::Name("b".into())]),
        ..ImageConfig::default()
    });
    assert_eq!(
        (
            spec.process.user.uid,
            spec.process.user.gid,
            spec.process.user.additional_gids.clone()
        ),
        (100, 7, vec![0, 101])
    );
}

#[test]
fn unknown_uid_name_from_a_label_is_an_error() {
    let label = ImageConfig {
        uid: Some(Id::Name("ghost".into())),
        ..ImageConfig::default()
    };
    let r = resolve(
        &entry("x", "golden/base:1", ImageConfig::default()),
        Some(&label),
        &base_image(),
    )
    .unwrap();
    let e = bundle_config(&r, &ids()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`uid`: `ghost` is not a number, `root`, or the name of a container of this file"
    );
}

#[test]
fn binds() {
    let b = parse_bind("/a:/b").unwrap();
    assert_eq!(b.volume(), None);
    assert!(!b.is_readonly());
    assert_eq!(b.to_mount().options, strings(&["rw", "rbind", "rshared"]));
    let b = parse_bind("data:/data:ro,nosuid").unwrap();
    assert_eq!(b.volume(), Some("data"));
    assert!(b.is_readonly());
    let m = b.to_mount();
    assert_eq!(m.source, "/containers/volumes/data/merged");
    assert_eq!(m.kind, "bind");
    assert_eq!(m.options, strings(&["ro", "nosuid", "rbind"]));
    for bad in [
        "/only",
        "/a:/b:ro:x",
        ":/b",
        "/a:",
        "../etc:/x",
        "Data:/x",
        "",
        "/a:/b:",
        "/a:/b:ro,,x",
    ] {
        assert!(parse_bind(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_bind("/only").unwrap_err().to_string(),
        "bind `/only` has no `:`; expected `source:destination[:options]`"
    );
}

#[test]
fn tmpfs_entries() {
    assert_eq!(
        parse_tmpfs("/run:rw,size=1m"),
        Ok(("/run", Some(vec!["rw", "size=1m"])))
    );
    assert_eq!(parse_tmpfs("/x"), Ok(("/x", None)));
    for bad in ["/a:b:c", ":rw", "/run:"] {
        assert!(parse_tmpfs(bad).is_err(), "{bad}");
    }
    // In a bundle: a tmpfs mount with the options as listed.
    let spec = config_spec(
        &resolved(ImageConfig {
            tmpfs: Some(vec!["/run:rw,size=1m".into()]),
            ..ImageConfig::default()
        }),
        &ids(),
    )
    .unwrap();
    let m = spec
        .mounts
        .iter()
        .find(|m| m.destination == "/run")
        .expect("the tmpfs mount");
    assert_eq!((m.kind.as_str(), m.source.as_str()), ("tmpfs", "tmpfs"));
    assert_eq!(m.options, strings(&["rw", "size=1m"]));
    assert!(matches!(
        config_spec(
            &resolved(ImageConfig {
                tmpfs: Some(vec!["/run:".into()]),
                ..ImageConfig::default()
            }),
            &ids()
        ),
        Err(OciError::Tmpfs { ref tmpfs, .. }) if tmpfs == "/run:"
    ));
}

#[test]
fn mounts_are_completed() {
    let m = |d: &str, k: &str, s: &str| Mount {
        destination: d.into(),
        kind: k.into(),
        source: s.into(),
        ..Mount::default()
    };
    let done = complete_mount(&m("", "", "mqueue")).unwrap();
    assert_eq!(
        (
            done.destination.as_str(),
            done.kind.as_str(),
            done.source.as_str()
        ),
        ("/dev/mqueue", "mqueue", "mqueue")
    );
    let done = complete_mount(&m("/dev", "", "")).unwrap();
    assert_eq!(
        (done.kind.as_str(), done.source.as_str()),
        ("tmpfs", "tmpfs")
    );
    let done = complete_mount(&m("", "devpts", "")).unwrap();
    assert_eq!(done.destination, "/dev/pts");
    let done = complete_mount(&m("/data", "ext4", "/dev/sda1")).unwrap();
    assert_eq!(done, m("/data", "ext4", "/dev/sda1"));
    assert_eq!(
        complete_mount(&m("/x", "", "/host"))
            .unwrap_err()
            .to_string(),
        "mount for destination `/x` has no type, and none can be derived from its source"
    );
    assert_eq!(
        complete_mount(&m("", "tmpfs", "")).unwrap_err().to_string(),
        "mount of type `tmpfs` has no destination"
    );
}

#[test]
fn later_mounts_replace_earlier_ones_and_are_sorted() {
    let spec = ok(ImageConfig {
        readonly: Some(true),
        tmpfs: some_strings(&["/dev:size=1m", "/b"]),
        binds: some_strings(&["/host:/b", "/a:/a"]),
        mounts: Some(vec![Mount {
            destination: "/b".into(),
            kind: "tmpfs".into(),
            options: strings(&["final"]),
            ..Mount::default()
        }]),
        ..ImageConfig::default()
    });
    let got: Vec<(&str, &str, Vec<String>)> = spec
        .mounts
        .iter()
        .map(|m| (m.destination.as_str(), m.kind.as_str(), m.options.clone()))
        .collect();
    assert_eq!(got[0], ("/a", "bind", strings(&["rw", "rbind", "rshared"])));
    assert_eq!(got[1], ("/b", "tmpfs", strings(&["final"])));
    assert_eq!(got[2], ("/dev", "tmpfs", strings(&["size=1m"])));
    let dests: Vec<&str> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
    assert_eq!(
        dests,
        [
            "/a",
            "/b",
            "/dev",
            "/dev/pts",
            "/proc",
            "/sys",
            "/sys/fs/cgroup"
        ]
    );
    assert!(spec.root.readonly);
    let sys = spec
        .mounts
        .iter()
        .find(|m| m.destination == "/sys")
        .unwrap();
    assert_eq!(sys.options.last().map(String::as_str), Some("ro"));
}

#[test]
fn capability_errors() {
    assert_eq!(
        err(ImageConfig {
            capabilities: some_strings(&["CAP_FLY"]),
            ..ImageConfig::default()
        }),
        OciError::Capability {
            field: "capabilities",
            error: CapError::Unknown("CAP_FLY".into())
        }
    );
    assert_eq!(
        err(ImageConfig {
            ambient: some_strings(&["all", "CAP_CHOWN"]),
            ..ImageConfig::default()
        })
        .to_string(),
        "`ambient`: `all` must be the only item of the list, not mixed with capability names"
    );
}

#[test]
fn an_unknown_capability_in_a_label_is_an_error() {
    let label = ImageConfig {
        capabilities: some_strings(&["CAP_SYS_ADMIN", "CAP_TELEPORT"]),
        ..ImageConfig::default()
    };
    let entry = entry(
        "x",
        "golden/base:1",
        ImageConfig {
            capabilities_add: some_strings(&["CAP_CHOWN"]),
            ..ImageConfig::default()
        },
    );
    let r = resolve(&entry, Some(&label), &base_image()).unwrap();
    assert_eq!(
        bundle_config(&r, &ids()).unwrap_err().to_string(),
        "`capabilities`: unknown capability `CAP_TELEPORT`"
    );
}

#[test]
fn capabilities_are_normalised_and_unioned_with_ambient() {
    let spec = ok(ImageConfig {
        capabilities: some_strings(&["sys_admin", "cap_chown"]),
        ambient: some_strings(&["NET_RAW"]),
        ..ImageConfig::default()
    });
    let c = &spec.process.capabilities;
    assert_eq!(c.effective, strings(&["CAP_SYS_ADMIN", "CAP_CHOWN"]));
    assert_eq!(c.ambient, strings(&["CAP_NET_RAW"]));
    let sorted = strings(&["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]);
    assert_eq!(
        (&c.bounding, &c.permitted, &c.inheritable),
        (&sorted, &sorted, &sorted)
    );
}

fn device(path: &str, kind: &str, mode: Option<&str>) -> ImageConfig {
    ImageConfig {
        devices: Some(vec![Device {
            path: path.into(),
            kind: kind.into(),
            major: 1,
            minor: 3,
            mode: mode.map(String::from),
        }]),
        ..ImageConfig::default()
    }
}

#[test]
fn device_errors() {
    for (d, want) in [
        (
            device("/dev/null", "c", Some("rw")),
            "device `/dev/null`: mode `rw` is not an octal number such as \"0644\"",
        ),
        (
            device("/dev/null", "c", Some("0888")),
            "device `/dev/null`: mode `0888` is not an octal number such as \"0644\"",
        ),
        (
            device("/dev/null", "c", Some("01777")),
            "device `/dev/null`: mode `01777` is larger than 0777 (a device mode holds permission bits only)",
        ),
        (
            device("/dev/null", "c", Some("")),
            "device `/dev/null`: mode `` is not an octal number such as \"0644\"",
        ),
        (
            device("/dev/null", "c", None),
            "device `/dev/null`: a device needs `mode` (an octal string such as \"0666\")",
        ),
        (
            device("/dev/null", "x", Some("0666")),
            "device `/dev/null`: device type `x` is not `b`, `c`, `u` or `p`",
        ),
        (
            device("all", "p", None),
            "device `all`: device type `p` is not `a`, `b` or `c` (for `path: all`)",
        ),
        (
            device("", "c", Some("0666")),
            "device ``: device path `` is neither `all` nor an absolute path",
        ),
        (
            device("dev/null", "c", Some("0666")),
            "device `dev/null`: device path `dev/null` is neither `all` nor an absolute path",
        ),
        (
            device("all", "", None),
            "device `all`: device type `` is not `a`, `b` or `c` (for `path: all`)",
        ),
        (
            device("all", "b", None),
            "device `all`: `path: all` allows every device of the type; `major`/`minor` would be ignored",
        ),
    ] {
        assert_eq!(err(d).to_string(), want);
    }
    let mut negative = device("/dev/null", "c", Some("0666"));
    if let Some(d) = negative.devices.as_mut().and_then(|d| d.first_mut()) {
        d.major = -1;
    }
    assert_eq!(
        err(negative).to_string(),
        "device `/dev/null`: `major` may not be negative"
    );
}

#[test]
fn devices_add_cgroup_rules_after_the_given_ones() {
    let mut config = device("/dev/null", "c", Some("666"));
    config.resources = Some(Resources {
        devices: vec![imagesmith::oci::types::DeviceCgroup {
            allow: false,
            access: "rwm".into(),
            ..Default::default()
        }],
        ..Resources::default()
    });
    let spec = ok(config);
    assert_eq!(spec.linux.devices[0].file_mode, Some(0o666));
    let rules = &spec.linux.resources.devices;
    assert_eq!(rules.len(), 2);
    assert!(!rules[0].allow);
    assert_eq!(
        (
            rules[1].allow,
            rules[1].kind.as_str(),
            rules[1].major,
            rules[1].minor
        ),
        (true, "c", Some(1), Some(3))
    );
}

#[test]
fn rlimits() {
    let r = parse_rlimit(" NoFile , 10 , Unlimited").unwrap();
    assert_eq!((r.kind, r.soft, r.hard), ("RLIMIT_NOFILE", 10, u64::MAX));
    assert_eq!(parse_rlimit("rlimit_core,0,0").unwrap().kind, "RLIMIT_CORE");
    for (bad, want) in [
        ("nofile,1", "rlimit `nofile,1` is not `name,soft,hard`"),
        (
            "fly,1,2",
            "unknown rlimit `fly` (known: cpu, fsize, data, stack, core, rss, nproc, nofile, memlock, as, locks, sigpending, msgqueue, nice, rtprio, rttime)",
        ),
        (
            "nofile,x,2",
            "rlimit `nofile,x,2`: `x` is not a number or `unlimited`",
        ),
        (
            "nofile,-1,2",
            "rlimit `nofile,-1,2`: `-1` is not a number or `unlimited`",
        ),
        (
            "nofile,1,2,3",
            "rlimit `nofile,1,2,3`: `2,3` is not a number or `unlimited`",
        ),
        (
            "nofile,99999999999999999999,1",
            "rlimit `nofile,99999999999999999999,1`: `99999999999999999999` is larger than 18446744073709551615",
        ),
        (
            "nofile,5,4",
            "rlimit `nofile,5,4`: the soft limit is above the hard limit",
        ),
        (
            "nofile,unlimited,4",
            "rlimit `nofile,unlimited,4`: the soft limit is above the hard limit",
        ),
    ] {
        assert_eq!(parse_rlimit(bad).unwrap_err().to_string(), want);
    }
}

#[test]
fn schema_constrained_values_are_errors() {
    assert_eq!(
        err(ImageConfig {
            rootfs_propagation: Some("rshared".into()),
            ..ImageConfig::default()
        }),
        OciError::RootfsPropagation("rshared".into())
    );
    assert_eq!(
        err(ImageConfig {
            oom_score_adj: Some(-1001),
            ..ImageConfig::default()
        }),
        OciError::OomScoreAdj(-1001)
    );
    for bad in ["2mb", "0MB", "", "3TB", "1000"] {
        assert_eq!(
            err(ImageConfig {
                resources: Some(Resources {
                    hugepage_limits: vec![HugepageLimit {
                        page_size: bad.into(),
                        limit: 1
                    }],
                    ..Resources::default()
                }),
                ..ImageConfig::default()
            }),
            OciError::HugepageSize(bad.into()),
            "{bad}"
        );
    }
}

#[test]
fn hugepage_sizes_in_bytes_become_oci_sizes() {
    let sizes = ["2097152", "1073741824", "65536", "2MB", "3145728"];
    let spec = ok(ImageConfig {
        resources: Some(Resources {
            hugepage_limits: sizes
                .iter()
                .map(|s| HugepageLimit {
                    page_size: s.to_string(),
                    limit: 0,
                })
                .collect(),
            ..Resources::default()
        }),
        ..ImageConfig::default()
    });
    let got: Vec<&str> = spec
        .linux
        .resources
        .hugepage_limits
        .iter()
        .map(|h| h.page_size.as_str())
        .collect();
    assert_eq!(got, ["2MB", "1GB", "64KB", "2MB", "3MB"]);
}

#[test]
fn rootfs_mounts_accept_relative_or_absolute_paths() {
    assert_eq!(
        rootfs_mounts(
            "containers/services/a",
            "/containers/services/a/rootfs/",
            true
        ),
        rootfs_mounts(
            "/containers/services/a/",
            "containers/services/a/rootfs",
            true
        )
    );
    assert_eq!(
        own_root("containers/onboot/000-a/", false),
        "containers/onboot/000-a/lower"
    );
    assert_eq!(
        own_root("containers/onboot/000-a", true),
        "containers/onboot/000-a/rootfs"
    );
}

#[test]
fn runtime_json_puts_rootfs_mounts_first() {
    let rt = Runtime {
        mounts: Some(vec![Mount {
            destination: "/user".into(),
            kind: "bind".into(),
            source: "/src".into(),
            options: strings(&["rbind"]),
            ..Mount::default()
        }]),
        namespace: Some("ns".into()),
        ..Runtime::default()
    };
    let json = runtime_json(
        &runtime_from(Some(&rt)),
        rootfs_mounts(
            "containers/services/s",
            "containers/services/s/rootfs",
            true,
        ),
    );
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v["mounts"][0]["destination"],
        "/containers/services/s/rootfs"
    );
    assert_eq!(v["mounts"][1]["destination"], "/user");
    assert_eq!(v["namespace"], "ns");
    assert_eq!(v["bindNS"]["uts"], "");
    assert_eq!(runtime_from(None), Default::default());
}

#[test]
fn nothing_optional_is_written_when_empty() {
    let r = resolved(ImageConfig {
        env: Some(vec![]),
        hostname: Some(String::new()),
        sysctl: Some(BTreeMap::new()),
        annotations: Some(BTreeMap::new()),
        rlimits: Some(vec![]),
        masked_paths: Some(vec![]),
        cgroups_path: Some(String::new()),
        rootfs_propagation: Some(String::new()),
        ..ImageConfig::default()
    });
    let text = String::from_utf8(bundle_config(&r, &ids()).unwrap().config_json).unwrap();
    for key in [
        "\"env\"",
        "hostname",
        "sysctl",
        "annotations",
        "rlimits",
        "maskedPaths",
        "cgroupsPath",
        "rootfsPropagation",
        "terminal",
        "noNewPrivileges",
        "oomScoreAdj",
    ] {
        assert!(!text.contains(key), "{key} in\n{text}");
    }
    assert!(text.contains("\"capabilities\": {}"));
    assert!(text.contains("\"resources\": {}"));
}

#[test]
fn the_schema_validator_rejects_invalid_configs() {
    let r = resolved(ImageConfig::default());
    let good = bundle_config(&r, &ids()).unwrap().config_json;
    assert!(schema_errors(&good).is_empty());
    let mut doc: serde_json::Value = serde_json::from_slice(&good).unwrap();
    doc["linux"]["namespaces"][0]["type"] = "bogus".into();
    doc["process"]["rlimits"] = serde_json::json!([{"type": "nofile", "hard": 1, "soft": 1}]);
    doc["process"]["user"]["uid"] = serde_json::json!(-1);
    let errors = schema_errors(&serde_json::to_vec(&doc).unwrap());
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(!schema_errors(b"{not json").is_empty());
}
