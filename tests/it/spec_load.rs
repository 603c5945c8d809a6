//! `spec::load` on whole files: the golden specs and the examples validate, several files
//! merge as LinuxKit merges them, warnings are reported, labels are read with the same rules.

use crate::common;

use common::{repo, yml_files};
use imagesmith::spec::{self, Id, Input, MetadataFormat};

#[test]
fn golden_specs_validate() {
    let files = yml_files(&common::shared_dir().join("golden/specs"));
    assert_eq!(files.len(), 4);
    for f in files {
        let l = spec::load(&[Input::Path(f.clone())])
            .unwrap_or_else(|d| panic!("{}:\n{d}", f.display()));
        assert!(l.warnings.is_empty(), "{}: {:?}", f.display(), l.warnings);
    }
}

#[test]
fn golden_03_reads_every_field() {
    let l = spec::load(&[Input::Path(
        common::shared_dir().join("golden/specs/03-fields.yml"),
    )])
    .unwrap();
    let a = &l.spec.onboot[0];
    assert_eq!(a.image.normalized(), "docker.io/golden/base:1");
    assert_eq!(a.config.uid, Some(Id::Name("b".into())));
    assert_eq!(
        a.config.additional_gids,
        Some(vec![Id::Name("b".into()), Id::Num(27)])
    );
    assert_eq!(a.config.oom_score_adj, Some(-500));
    assert_eq!(a.config.devices.as_ref().map(Vec::len), Some(2));
    let r = a.config.resources.as_ref().unwrap();
    assert_eq!(r.memory.as_ref().and_then(|m| m.limit), Some(268_435_456));
    assert_eq!(
        a.config
            .runtime
            .as_ref()
            .and_then(|r| r.bind_ns.as_ref())
            .and_then(|b| b.net.clone()),
        Some("/run/netns/a".into())
    );
    let c = &l.spec.services[1];
    assert_eq!(c.config.uid_mappings.as_ref().unwrap()[0].host_id, 100_000);
    let ids = spec::id_map(&l.spec);
    assert_eq!(ids.get("b"), Some(&101));
}

#[test]
fn golden_04_files() {
    let l = spec::load(&[Input::Path(
        common::shared_dir().join("golden/specs/04-kernel-files.yml"),
    )])
    .unwrap();
    let paths: Vec<&str> = l.spec.files.iter().map(|f| f.output_path()).collect();
    assert_eq!(
        paths,
        [
            "etc/motd",
            "opt/app/config.json",
            "var/lib/state",
            "var/lib/state-owned",
            "usr/local/bin/sh",
            "etc/system.yml",
            "etc/system.json"
        ]
    );
    assert_eq!(l.spec.files[5].metadata, Some(MetadataFormat::Yaml));
    let k = l.spec.kernel.as_ref().unwrap();
    assert_eq!(
        (k.binary(), k.tar(), k.ucode()),
        ("kernel", Some("kernel.tar"), Some("ucode.cpio"))
    );
}

#[test]
fn examples_validate() {
    let files = yml_files(&repo().join("examples"));
    assert!(!files.is_empty(), "no examples");
    for f in files {
        spec::load(&[Input::Path(f.clone())]).unwrap_or_else(|d| panic!("{}:\n{d}", f.display()));
    }
}

const BASE: &str = "kernel:
  image: linuxkit/kernel:6.6
  cmdline: console=tty0
  tar: none
init:
  - linuxkit/init:v1
onboot:
  - name: first
    image: alpine
services:
  - name: getty
    image: linuxkit/getty:v1
";

#[test]
fn several_files_merge_in_order() {
    let over = "kernel:
  cmdline: console=ttyS0
  binary: bzImage
init:
  - linuxkit/runc:v1
services:
  - name: sshd
    image: linuxkit/sshd:v1
    uid: first
";
    let l = spec::load_text(&[("base.yml", BASE), ("over.yml", over)]).unwrap();
    let k = l.spec.kernel.as_ref().unwrap();
    assert_eq!(
        k.image.as_ref().unwrap().normalized(),
        "docker.io/linuxkit/kernel:6.6"
    );
    assert_eq!(k.cmdline(), "console=ttyS0");
    assert_eq!(k.binary(), "bzImage");
    assert_eq!(
        k.tar(),
        None,
        "tar from the first file stays when the second has none"
    );
    let init: Vec<String> = l.spec.init.iter().map(|i| i.normalized()).collect();
    assert_eq!(
        init,
        ["docker.io/linuxkit/init:v1", "docker.io/linuxkit/runc:v1"]
    );
    let names: Vec<&str> = l.spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["getty", "sshd"]);
    assert_eq!(&*l.spec.services[1].pos.file, "over.yml");

    // Empty values: cmdline/binary only override when non-empty, tar whenever present.
    let empty = "kernel:\n  cmdline: \"\"\n  tar: \"\"\n";
    let l = spec::load_text(&[("base.yml", BASE), ("empty.yml", empty)]).unwrap();
    let k = l.spec.kernel.as_ref().unwrap();
    assert_eq!((k.cmdline(), k.tar.as_deref()), ("console=tty0", Some("")));
}

#[test]
fn checks_run_on_the_merged_files() {
    let dup = "services:\n  - name: getty\n    image: linuxkit/getty:v2\n    gid: nobody\n";
    let d = spec::load_text(&[("base.yml", BASE), ("dup.yml", dup)]).unwrap_err();
    insta::assert_snapshot!(d.to_string(), @r"
    dup.yml:2:11: `services[0].name`: duplicate service name `getty` (first used at base.yml:11:11)
    dup.yml:4:10: `services[0].gid`: `nobody` is not a number, `root`, or the name of a container of this file
    ");
    // Problems of every file are reported together, in command-line order.
    let d = spec::load_text(&[("b.yml", "foo: 1\n"), ("a.yml", "bar: 2\n")]).unwrap_err();
    let files: Vec<&str> = d.0.iter().map(|d| &*d.pos.as_ref().unwrap().file).collect();
    assert_eq!(files, ["b.yml", "a.yml"]);
    // A syntax error is reported alone, even when another file has other problems.
    let d = spec::load_text(&[("b.yml", "foo: 1\n"), ("a.yml", "bar: [\n")]).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert!(d.0[0].message.starts_with("YAML syntax error"), "{d}");
}

#[test]
fn warnings() {
    let src = "trust:
  org: [linuxkit]
services:
  - name: a
    image: alpine
    capabilities: [CAP_CHOWN]
    capabilities.add: [CAP_NET_ADMIN]
    binds: [\"/a:/a\"]
    binds.add: [\"/b:/b\"]
";
    let l = spec::load_text(&[("w.yml", src)]).unwrap();
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(w.join("\n"), @r"
    w.yml:1:1: `trust`: `trust` is accepted for compatibility and ignored (no content trust check is made)
    w.yml:7:5: `services[0]`: `capabilities.add` is ignored because `capabilities` is also set (as LinuxKit does)
    w.yml:9:5: `services[0]`: `binds.add` is ignored because `binds` is also set (as LinuxKit does)
    ");
}

/// LinuxKit's own test `070_volumes/002_rw_on_ro` expects its build to fail on a read-only
/// volume bound without `ro`: `validate` rejects it, on the bind's line, as `build` does
/// (and `build` applies the same check to binds from labels).
#[test]
fn read_only_volume_bound_read_write_is_an_error() {
    let f =
        common::shared_dir().join("linuxkit-corpus/invalid/rw-bind-of-readonly-volume.L12-19.yml");
    let d = spec::load(&[Input::Path(f)]).unwrap_err();
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!(d.0[0].pos.as_ref().map(|p| p.line), Some(12));
    assert!(
        d.0[0]
            .message
            .contains("read-only volume `vola` without `ro`"),
        "{}",
        d.0[0]
    );
    let vols = [spec::Volume {
        name: "vola".into(),
        image: None,
        readonly: true,
        format: None,
        platforms: None,
        pos: spec::Pos {
            file: "t.yml".into(),
            line: 1,
            column: 1,
        },
    }];
    assert!(spec::validate::check_volume_bind(&vols, "vola:/v").is_err());
    assert!(spec::validate::check_volume_bind(&vols, "vola:/v:ro").is_ok());
}

#[test]
fn labels_are_read_with_the_same_rules() {
    let text = r#"{"pid":"host","net":"host","capabilities":["CAP_SYS_ADMIN","CAP_NET_ADMIN"],"binds":["/dev:/dev","/var:/var:rshared,rbind"],"mounts":[{"destination":"/run","type":"tmpfs","options":["nosuid","nodev","mode=755"]}],"env":["FROM_LABEL=1"],"readonly":true,"runtime":{"mkdir":["/var/lib/label"]}}"#;
    let c = spec::parse_label("golden/label:1", text).unwrap();
    assert_eq!(c.pid.as_deref(), Some("host"));
    assert_eq!(c.readonly, Some(true));
    assert_eq!(c.mounts.as_ref().unwrap()[0].destination, "/run");
    assert_eq!(
        c.runtime.as_ref().unwrap().mkdir,
        Some(vec!["/var/lib/label".to_string()])
    );
    // Names of containers are resolved later; any name is fine here, as are volume binds.
    assert!(spec::parse_label("x", r#"{"uid": "sshd", "binds": ["data:/data"]}"#).is_ok());

    let bad = r#"{"name": "x", "image": "y", "capabilities": ["CAP_FOO"], "readonly": "yes", "bindz": []}"#;
    let d = spec::parse_label("docker.io/org/img:1", bad).unwrap_err();
    insta::assert_snapshot!(d.to_string(), @r"
    label of image `docker.io/org/img:1`:1:2: `name`: may not be set in an image label
    label of image `docker.io/org/img:1`:1:15: `image`: may not be set in an image label
    label of image `docker.io/org/img:1`:1:46: `capabilities[0]`: unknown capability `CAP_FOO`
    label of image `docker.io/org/img:1`:1:70: `readonly`: expected `true` or `false`, found the string `yes`
    label of image `docker.io/org/img:1`:1:77: unknown key `bindz`; did you mean `binds`?
    ");
    for text in ["[1, 2]", "{\"pid\": ", "\"str\""] {
        let d = spec::parse_label("img:2", text).unwrap_err();
        assert!(
            d.to_string().starts_with("label of image `img:2`:1:"),
            "{d}"
        );
    }
}

/// The parser applies the rules `config.json` generation applies (`spec::rules`), so what
/// `build` would refuse is refused when the file or label is read.
#[test]
fn values_build_would_refuse_are_refused_when_read() {
    for (label, want) in [
        (
            r#"{"devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]}"#,
            "`devices[0]`: a device needs `mode` (an octal string such as \"0666\")",
        ),
        (
            r#"{"devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "mode": "01777"}]}"#,
            "`devices[0].mode`: mode `01777` is larger than 0777 (a device mode holds permission bits only)",
        ),
        (
            r#"{"devices": [{"path": "all"}]}"#,
            "`devices[0].type`: device type `` is not `a`, `b` or `c` (for `path: all`)",
        ),
        (
            r#"{"binds": ["Data:/data"]}"#,
            "`binds[0]`: bind `Data:/data`: the source is neither an absolute path nor a volume name ([a-z0-9_-]+)",
        ),
        (
            r#"{"tmpfs": ["/run:"]}"#,
            "`tmpfs[0]`: empty mount option in ``",
        ),
        (r#"{"uid": ""}"#, "`uid`: the id is an empty string"),
        (
            r#"{"capabilities": [" CAP_CHOWN"]}"#,
            "`capabilities[0]`: unknown capability ` CAP_CHOWN`; did you mean `CAP_CHOWN`?",
        ),
    ] {
        let d = spec::parse_label("img:1", label).unwrap_err();
        assert_eq!(d.0.len(), 1, "{label}: {d}");
        assert_eq!(d.0[0].message, want, "{label}");
    }
}

#[test]
fn unreadable_files_are_errors() {
    let d = spec::load(&[Input::Path(repo().join("tests/no-such-file.yml"))]).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert!(d.0[0].message.starts_with("cannot read"), "{d}");
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin.yml");
    std::fs::write(&bin, b"init: [\xff]\n").unwrap();
    let d = spec::load(&[Input::Path(bin)]).unwrap_err();
    assert!(d.0[0].message.contains("not UTF-8"), "{d}");
}
