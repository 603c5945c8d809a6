//! The label merge (SPEC §2.1): YAML > label > image config > default, field by field.

use crate::common;

use common::oci::*;
use imagesmith::oci::types::Mount;
use imagesmith::spec::merge::{ImageDefaults, MergeError, resolve};
use imagesmith::spec::model::{BindNs, Id, ImageConfig, Interface, Runtime};

fn yaml(config: ImageConfig) -> imagesmith::spec::model::ImageEntry {
    entry("svc", "golden/label:1", config)
}

#[test]
fn image_config_is_the_fallback_for_command_env_cwd() {
    let r = resolve(&yaml(ImageConfig::default()), None, &label_image()).unwrap();
    assert_eq!(r.name, "svc");
    assert_eq!(r.args, strings(&["/bin/echo", "from", "label"]));
    assert_eq!(r.env, strings(&["PATH=/bin"]));
    assert_eq!(r.cwd, "/tmp");
    assert!(!r.readonly);
}

#[test]
fn defaults_when_the_image_has_nothing_but_a_command() {
    let image = ImageDefaults {
        cmd: strings(&["/bin/sh"]),
        ..ImageDefaults::default()
    };
    let r = resolve(&yaml(ImageConfig::default()), None, &image).unwrap();
    assert_eq!(r.args, strings(&["/bin/sh"]));
    assert_eq!(r.env, Vec::<String>::new());
    assert_eq!(r.cwd, "/");
    assert!(!r.readonly);
    assert_eq!(r.config, ImageConfig::default());
}

#[test]
fn label_beats_image_config() {
    let label = ImageConfig {
        command: some_strings(&["/bin/label"]),
        env: some_strings(&["L=1"]),
        cwd: Some("/label".into()),
        ..ImageConfig::default()
    };
    let r = resolve(&yaml(ImageConfig::default()), Some(&label), &label_image()).unwrap();
    assert_eq!(r.args, strings(&["/bin/label"]));
    assert_eq!(r.env, strings(&["L=1"]));
    assert_eq!(r.cwd, "/label");
}

#[test]
fn yaml_beats_label_and_image() {
    let label = ImageConfig {
        command: some_strings(&["/bin/label"]),
        env: some_strings(&["L=1"]),
        cwd: Some("/label".into()),
        hostname: Some("label".into()),
        uid: Some(Id::Num(5)),
        readonly: Some(true),
        ..ImageConfig::default()
    };
    let entry = yaml(ImageConfig {
        command: some_strings(&["/bin/yaml", "x"]),
        env: some_strings(&["Y=1"]),
        cwd: Some("/yaml".into()),
        hostname: Some("yaml".into()),
        uid: Some(Id::Name("root".into())),
        readonly: Some(false),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&label), &label_image()).unwrap();
    assert_eq!(r.args, strings(&["/bin/yaml", "x"]));
    assert_eq!(r.env, strings(&["Y=1"]));
    assert_eq!(r.cwd, "/yaml");
    assert!(!r.readonly);
    assert_eq!(r.config.hostname.as_deref(), Some("yaml"));
    assert_eq!(r.config.uid, Some(Id::Name("root".into())));
}

#[test]
fn present_but_empty_yaml_fields_replace_the_label() {
    let label = golden_label();
    let entry = yaml(ImageConfig {
        env: Some(vec![]),
        capabilities: Some(vec![]),
        binds: Some(vec![]),
        mounts: Some(vec![]),
        hostname: Some(String::new()),
        cwd: Some(String::new()),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&label), &label_image()).unwrap();
    assert_eq!(
        r.env,
        Vec::<String>::new(),
        "empty env beats label and image"
    );
    assert_eq!(r.config.capabilities, Some(vec![]));
    assert_eq!(r.config.binds, Some(vec![]));
    assert_eq!(r.config.mounts, Some(vec![]));
    assert_eq!(r.config.hostname, Some(String::new()));
    assert_eq!(r.cwd, "/", "an empty cwd is /, not the image's WorkingDir");
    // Fields the YAML leaves out still come from the label.
    assert_eq!(r.config.pid.as_deref(), Some("host"));
    assert!(r.readonly);
}

#[test]
fn empty_final_command_is_an_error() {
    let none = ImageDefaults::default();
    assert_eq!(
        resolve(&yaml(ImageConfig::default()), None, &none),
        Err(MergeError::EmptyCommand)
    );
    // A YAML `command: []` replaces the image's command and leaves nothing.
    let entry = yaml(ImageConfig {
        command: Some(vec![]),
        ..ImageConfig::default()
    });
    assert_eq!(
        resolve(&entry, None, &base_image()),
        Err(MergeError::EmptyCommand)
    );
    // So does a label's.
    let label = ImageConfig {
        command: Some(vec![]),
        ..ImageConfig::default()
    };
    assert_eq!(
        resolve(&yaml(ImageConfig::default()), Some(&label), &base_image()),
        Err(MergeError::EmptyCommand)
    );
}

#[test]
fn capabilities_add_appends_without_normalised_duplicates() {
    let label = ImageConfig {
        capabilities: some_strings(&["CAP_SYS_ADMIN", "net_admin"]),
        ..ImageConfig::default()
    };
    let entry = yaml(ImageConfig {
        capabilities_add: some_strings(&["cap_sys_admin", "CAP_NET_ADMIN", "SYS_TIME", "sys_time"]),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&label), &base_image()).unwrap();
    assert_eq!(
        r.config.capabilities,
        some_strings(&["CAP_SYS_ADMIN", "net_admin", "SYS_TIME"])
    );
    assert_eq!(r.config.capabilities_add, None);
}

#[test]
fn capabilities_add_without_a_label_list_is_the_list() {
    let entry = yaml(ImageConfig {
        capabilities_add: some_strings(&["CAP_CHOWN"]),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, None, &base_image()).unwrap();
    assert_eq!(r.config.capabilities, some_strings(&["CAP_CHOWN"]));
}

#[test]
fn capabilities_add_onto_all_or_none() {
    let add = yaml(ImageConfig {
        capabilities_add: some_strings(&["CAP_CHOWN"]),
        ..ImageConfig::default()
    });
    let all = ImageConfig {
        capabilities: some_strings(&["all"]),
        ..ImageConfig::default()
    };
    let none = ImageConfig {
        capabilities: some_strings(&["NONE"]),
        ..ImageConfig::default()
    };
    let r = resolve(&add, Some(&all), &base_image()).unwrap();
    assert_eq!(r.config.capabilities, some_strings(&["all"]));
    let r = resolve(&add, Some(&none), &base_image()).unwrap();
    assert_eq!(r.config.capabilities, some_strings(&["CAP_CHOWN"]));
}

#[test]
fn plain_field_wins_over_add_in_the_same_yaml() {
    let entry = yaml(ImageConfig {
        capabilities: some_strings(&["CAP_CHOWN"]),
        capabilities_add: some_strings(&["CAP_SYS_TIME"]),
        binds: some_strings(&["/a:/a"]),
        binds_add: some_strings(&["/b:/b"]),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&golden_label()), &label_image()).unwrap();
    assert_eq!(r.config.capabilities, some_strings(&["CAP_CHOWN"]));
    assert_eq!(r.config.binds, some_strings(&["/a:/a"]));
    assert_eq!(r.config.binds_add, None);
}

#[test]
fn binds_add_appends_without_duplicates() {
    let entry = yaml(ImageConfig {
        binds_add: some_strings(&["/dev:/dev", "/srv:/srv:ro", "/srv:/srv:ro"]),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&golden_label()), &label_image()).unwrap();
    assert_eq!(
        r.config.binds,
        some_strings(&["/dev:/dev", "/var:/var:rshared,rbind", "/srv:/srv:ro"])
    );
}

#[test]
fn a_labels_own_add_forms_fold_onto_nothing() {
    let label = ImageConfig {
        capabilities_add: some_strings(&["CAP_KILL"]),
        binds_add: some_strings(&["/x:/x"]),
        ..ImageConfig::default()
    };
    let entry = yaml(ImageConfig {
        capabilities_add: some_strings(&["CAP_CHOWN"]),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&label), &base_image()).unwrap();
    assert_eq!(
        r.config.capabilities,
        some_strings(&["CAP_KILL", "CAP_CHOWN"])
    );
    assert_eq!(r.config.binds, some_strings(&["/x:/x"]));
}

#[test]
fn runtime_merges_per_sub_field_and_bind_ns_per_key() {
    let label = ImageConfig {
        runtime: Some(Runtime {
            cgroups: some_strings(&["label"]),
            mkdir: some_strings(&["/var/lib/label"]),
            mounts: Some(vec![Mount {
                destination: "/label".into(),
                ..Mount::default()
            }]),
            bind_ns: Some(BindNs {
                net: Some("/run/netns/label".into()),
                pid: Some("/run/pidns/label".into()),
                ..BindNs::default()
            }),
            namespace: Some("label-ns".into()),
            ..Runtime::default()
        }),
        ..ImageConfig::default()
    };
    let entry = yaml(ImageConfig {
        runtime: Some(Runtime {
            cgroups: Some(vec![]),
            interfaces: Some(vec![Interface {
                name: "eth0".into(),
                ..Interface::default()
            }]),
            bind_ns: Some(BindNs {
                pid: Some("/run/pidns/yaml".into()),
                ..BindNs::default()
            }),
            ..Runtime::default()
        }),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&label), &base_image()).unwrap();
    let rt = r.config.runtime.expect("runtime");
    assert_eq!(rt.cgroups, Some(vec![]), "present-but-empty YAML wins");
    assert_eq!(rt.mkdir, some_strings(&["/var/lib/label"]));
    assert_eq!(rt.mounts.map(|m| m.len()), Some(1));
    assert_eq!(rt.interfaces.map(|i| i.len()), Some(1));
    assert_eq!(rt.namespace.as_deref(), Some("label-ns"));
    let ns = rt.bind_ns.expect("bindNS");
    assert_eq!(ns.net.as_deref(), Some("/run/netns/label"));
    assert_eq!(ns.pid.as_deref(), Some("/run/pidns/yaml"));
    assert_eq!(ns.uts, None);
}

#[test]
fn runtime_from_only_one_side_is_kept_whole() {
    let entry = yaml(ImageConfig::default());
    let r = resolve(&entry, Some(&golden_label()), &label_image()).unwrap();
    assert_eq!(r.config.runtime, golden_label().runtime);
    let r = resolve(&entry, None, &label_image()).unwrap();
    assert_eq!(r.config.runtime, None);
}

#[test]
fn every_other_field_is_yaml_over_label() {
    let label = ImageConfig {
        net: Some("host".into()),
        ipc: Some("new".into()),
        sysctl: Some([("a".to_string(), "1".to_string())].into()),
        rlimits: some_strings(&["nofile,1,2"]),
        oom_score_adj: Some(10),
        ..ImageConfig::default()
    };
    let entry = yaml(ImageConfig {
        net: Some("new".into()),
        sysctl: Some(Default::default()),
        oom_score_adj: Some(-10),
        ..ImageConfig::default()
    });
    let r = resolve(&entry, Some(&label), &base_image()).unwrap();
    assert_eq!(r.config.net.as_deref(), Some("new"));
    assert_eq!(r.config.ipc.as_deref(), Some("new"));
    assert_eq!(r.config.sysctl, Some(Default::default()));
    assert_eq!(r.config.rlimits, some_strings(&["nofile,1,2"]));
    assert_eq!(r.config.oom_score_adj, Some(-10));
}
