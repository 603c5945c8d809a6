//! Bundles built through the real engine run under runc exactly as LinuxKit's init runs them:
//! the output tar is unpacked, `pkg/init/usr/bin/start-bundle` (the init's runtime.json
//! applier) performs the mounts of `runtime.json` and runs `runc run`. From inside each
//! container we check what `config.json` promised: uid/gid, capability masks, env, cwd, a
//! bind mount, a writable or read-only root, and that a deduplicated bundle sees the first
//! copy's files.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::pkg::start_bundle;
use common::*;
use imagesmith::oci::caps;

/// The `/proc/<pid>/status` mask of a list of capability names (bit `n` for `caps::ALL[n]`,
/// the kernel's numbering).
fn mask(list: &serde_json::Value) -> u64 {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str())
                .map(|c| {
                    1u64 << caps::ALL
                        .iter()
                        .position(|x| *x == c)
                        .expect("known capability")
                })
                .fold(0, |m, b| m | b)
        })
        .unwrap_or(0)
}

/// `Name:\tvalue` lines of the output.
fn fields(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn run_bundle(root: &Path, bundle: &str) -> (i32, String) {
    let name = format!(
        "{}-{}",
        unique("runc"),
        bundle.rsplit('/').next().unwrap_or("b")
    );
    let out = start_bundle(root)
        .args(["--name", &name])
        .arg(root.join(bundle))
        .output()
        .expect("running start-bundle");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

#[test]
fn bundles_run_under_runc_as_configured() {
    let a = busybox_image("runc-a", &[("srv/only-in-a.txt", b"first copy\n")]);
    let b = busybox_image("runc-b", &[("srv/b.txt", b"b\n")]);
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host-share");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("shared.txt"), "from the host\n").unwrap();
    let probe = "id; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; echo cwd: $(pwd); echo foo: $FOO; \
                 cat /mnt/share/shared.txt; if touch /written 2>/dev/null; then echo root: writable; else echo root: read-only; fi";
    let yml = write_file(
        dir.path(),
        "runc.yml",
        &format!(
            r#"onboot:
  - name: ids
    image: {a}
    command: ["/bin/sh", "-c", "{probe}"]
    uid: 1234
    gid: 5678
    additionalGids: [42]
    env: ["PATH=/bin", "FOO=bar"]
    cwd: /srv
    binds: ["{host}:/mnt/share:ro"]
  - name: caps
    image: {a}
    command: ["/bin/sh", "-c", "{probe}"]
    capabilities: [CAP_CHOWN, CAP_NET_RAW, CAP_SETUID, CAP_DAC_OVERRIDE]
    ambient: [CAP_NET_BIND_SERVICE]
    env: ["PATH=/bin", "FOO=caps"]
    binds: ["{host}:/mnt/share"]
  - name: ro
    image: {b}
    readonly: true
    command: ["/bin/sh", "-c", "{probe}"]
    env: ["PATH=/bin", "FOO=ro"]
    binds: ["{host}:/mnt/share"]
  - name: dedup
    image: {a}
    readonly: true
    command: ["/bin/cat", "/srv/only-in-a.txt"]
"#,
            a = a.name,
            b = b.name,
            host = host.display(),
            probe = probe.replace('"', "\\\""),
        ),
    );
    let out = dir.path().join("out.tar");
    run_ok(imagesmith().arg("build").arg(&yml).arg("-o").arg(&out));
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&out)
            .arg("-C")
            .arg(&root),
    );
    for b in ["000-ids", "001-caps", "002-ro", "003-dedup"] {
        common::oci::assert_schema_valid(
            &fs::read(root.join("containers/onboot").join(b).join("config.json")).unwrap(),
        );
    }
    let config = |b: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(root.join(b).join("config.json")).unwrap()).unwrap()
    };

    // uid/gid, env, cwd, bind, writable root (as root would be; a non-root user cannot write
    // to / by permissions, so writability is checked in the next bundle).
    let (code, text) = run_bundle(&root, "containers/onboot/000-ids");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("uid=1234 gid=5678 groups=42"), "{text}");
    let f = fields(&text);
    assert_eq!(f["cwd"], "/srv", "{text}");
    assert_eq!(f["foo"], "bar", "{text}");
    assert!(text.contains("from the host"), "{text}");

    // Capability masks equal config.json's sets; a writable root.
    let (code, text) = run_bundle(&root, "containers/onboot/001-caps");
    assert_eq!(code, 0, "{text}");
    let f = fields(&text);
    let caps = &config("containers/onboot/001-caps")["process"]["capabilities"];
    let hex = |k: &str| u64::from_str_radix(&f[k], 16).unwrap_or_else(|_| panic!("{k} in {text}"));
    assert_eq!(hex("CapBnd"), mask(&caps["bounding"]), "{text}");
    assert_eq!(hex("CapPrm"), mask(&caps["permitted"]), "{text}");
    assert_eq!(hex("CapInh"), mask(&caps["inheritable"]), "{text}");
    assert_eq!(
        hex("CapEff"),
        mask(&caps["effective"]) | mask(&caps["ambient"]),
        "{text}"
    );
    assert_eq!(hex("CapAmb"), mask(&caps["ambient"]), "{text}");
    assert_ne!(mask(&caps["effective"]), 0);
    assert_eq!(f["root"], "writable", "{text}");
    assert_eq!(f["foo"], "caps", "{text}");

    // A read-only bundle: writing to / fails.
    let (code, text) = run_bundle(&root, "containers/onboot/002-ro");
    assert_eq!(code, 0, "{text}");
    assert_eq!(fields(&text)["root"], "read-only", "{text}");
    assert!(text.contains("uid=0(root) gid=0(root)"), "{text}");

    // The deduplicated bundle has no files of its own and sees the first copy's.
    assert!(
        fs::read_dir(root.join("containers/onboot/003-dedup/rootfs"))
            .unwrap()
            .next()
            .is_none()
    );
    let (code, text) = run_bundle(&root, "containers/onboot/003-dedup");
    assert_eq!(code, 0, "{text}");
    assert_eq!(text, "first copy\n");

    for i in [&a, &b] {
        assert!(i.containers().is_empty(), "containers left behind");
    }
}
