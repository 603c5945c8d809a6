//! The output formats end to end (SPEC §6): the cpio writer against GNU cpio; then
//! `examples/minimal.yml` built through the real engine in every format: file names,
//! contents, the initrd against the tar, the docker output through `docker build`, standard
//! output, and byte-identical rebuilds.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::pkg::{build, minimal_yml, package_tag};
use common::*;
use imagesmith::archive::{Entry, Kind, Sink, TarSink, append_bytes};
use imagesmith::output::cpio::CpioSink;
use proptest::prelude::*;

/// A tree with every kind of entry newc and tar both hold.
fn sample() -> Vec<(Entry, Vec<u8>)> {
    let long = format!("usr/share/{}", "long-name-".repeat(20));
    let mut suid = Entry::file("usr/bin/tool", 0o4755, 1_500_000_000, 4);
    suid.uid = 1000;
    suid.gid = 100;
    vec![
        (Entry::dir("usr", 0o755, 1_400_000_000), vec![]),
        (Entry::dir("usr/bin", 0o750, 1_400_000_000), vec![]),
        (suid, b"tool".to_vec()),
        (
            Entry::new(
                "usr/bin/tool2",
                Kind::Link(b"usr/bin/tool".to_vec()),
                0o4755,
                1,
                0,
            ),
            vec![],
        ),
        (Entry::dir("usr/share", 0o755, 1), vec![]),
        (Entry::file(long, 0o600, 1_600_000_000, 3), b"abc".to_vec()),
        (Entry::symlink("bin", "usr/bin", 0o777, 1), vec![]),
        (Entry::dir("dev", 0o755, 1), vec![]),
        (
            Entry::new("dev/null", Kind::Char { major: 1, minor: 3 }, 0o666, 1, 0),
            vec![],
        ),
        (Entry::new("fifo", Kind::Fifo, 0o640, 1, 0), vec![]),
        (Entry::file("empty", 0o644, 1, 0), vec![]),
        (Entry::file("odd", 0o644, 1, 5), b"12345".to_vec()),
    ]
}

fn write_all(sink: &mut dyn Sink, entries: &[(Entry, Vec<u8>)]) {
    for (e, d) in entries {
        append_bytes(sink, e, d).expect("appending");
    }
}

fn cpio_bytes(entries: &[(Entry, Vec<u8>)]) -> Vec<u8> {
    let mut s = CpioSink::new(Vec::new());
    write_all(&mut s, entries);
    s.finish().expect("finishing cpio")
}

/// What a path is on disk, for comparing extracted trees.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    perm: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    target: Option<String>,
    content: Option<Vec<u8>>,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let m = fs::symlink_metadata(&p).expect("lstat");
        let rel = p
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        out.insert(
            rel,
            Node {
                kind,
                perm: if ft.is_symlink() {
                    0
                } else {
                    m.permissions().mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                rdev: m.rdev(),
                target: ft.is_symlink().then(|| {
                    fs::read_link(&p)
                        .expect("readlink")
                        .to_string_lossy()
                        .into_owned()
                }),
                content: ft.is_file().then(|| fs::read(&p).expect("read")),
            },
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

#[test]
fn gnu_cpio_lists_and_extracts_the_same_tree_as_tar() {
    let entries = sample();
    let cpio = cpio_bytes(&entries);
    let paths: Vec<String> = entries.iter().map(|(e, _)| e.display_path()).collect();
    assert_eq!(gnu_cpio_list(&cpio), paths);

    let mut tar = TarSink::new(Vec::new());
    write_all(&mut tar, &entries);
    let tar = tar.finish().expect("tar");
    let d = tempfile::tempdir().expect("tempdir");
    let (a, b) = (d.path().join("cpio"), d.path().join("tar"));
    fs::create_dir(&a).expect("mkdir");
    fs::create_dir(&b).expect("mkdir");
    fs::write(d.path().join("x.cpio"), &cpio).expect("write");
    fs::write(d.path().join("x.tar"), &tar).expect("write");
    run_ok(
        Command::new("sh")
            .current_dir(&a)
            .arg("-c")
            .arg("cpio --quiet -i -d -m -H newc --no-absolute-filenames < ../x.cpio"),
    );
    run_ok(Command::new("tar").current_dir(&b).args([
        "-x",
        "-p",
        "--same-owner",
        "-f",
        "../x.tar",
    ]));
    let (mut ta, mut tb) = (BTreeMap::new(), BTreeMap::new());
    walk(&a, &a, &mut ta);
    walk(&b, &b, &mut tb);
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    // The one deliberate difference: the hard link is a relative symlink in the initrd.
    let link = ta.remove("usr/bin/tool2").expect("tool2");
    assert_eq!(link.kind, "symlink");
    assert_eq!(link.target.as_deref(), Some("tool"));
    assert_eq!(
        fs::read(a.join("usr/bin/tool2")).expect("follow"),
        b"tool",
        "the symlink leads to the file"
    );
    tb.remove("usr/bin/tool2");
    assert_eq!(ta, tb);
    // and file times survive
    let m = fs::metadata(a.join("usr/bin/tool")).expect("stat");
    assert_eq!(m.mtime(), 1_500_000_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any names, modes and sizes: GNU cpio lists exactly what was written, in order.
    #[test]
    fn gnu_cpio_lists_generated_archives(
        files in proptest::collection::btree_map("[a-zA-Z0-9 ._-]{1,40}", (0u32..0o7777, 0usize..700), 1..20),
        deep in "[a-z]{1,60}(/[a-z]{1,60}){0,6}",
    ) {
        let mut entries = Vec::new();
        let mut parent = String::new();
        for c in deep.split('/') {
            parent = if parent.is_empty() { c.to_string() } else { format!("{parent}/{c}") };
            entries.push((Entry::dir(parent.clone(), 0o755, 7), Vec::new()));
        }
        for (name, (mode, size)) in &files {
            let path = format!("{parent}/f{name}");
            let data = vec![b'x'; *size];
            entries.push((Entry::file(path, *mode, 9, *size as u64), data));
        }
        let cpio = cpio_bytes(&entries);
        prop_assert_eq!(cpio.len() % 4, 0);
        let want: Vec<String> = entries.iter().map(|(e, _)| e.display_path()).collect();
        prop_assert_eq!(gnu_cpio_list(&cpio), want);
    }
}

// ---- through the engine: examples/minimal.yml in every format ----

fn paths_without_boot(tar: &[TarEntry]) -> Vec<String> {
    tar.iter()
        .map(|m| m.path.clone())
        .filter(|p| p != "boot" && !p.starts_with("boot/"))
        .collect()
}

#[test]
fn every_format_of_minimal() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let out = d.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    let o = |s: &str| out.to_str().expect("utf-8 path").to_string() + "/" + s;

    // Default names without -o, in --dir.
    for f in [
        "tar",
        "tar.gz",
        "docker",
        "tar-kernel-initrd",
        "kernel+initrd",
    ] {
        build(&yml, &["-f", f, "--dir", &o("")]);
    }
    let mut names: Vec<String> = fs::read_dir(&out)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "minimal-cmdline",
            "minimal-initrd.img",
            "minimal-initrd.tar",
            "minimal-kernel",
            "minimal.docker.tar",
            "minimal.tar",
            "minimal.tar.gz",
        ]
    );

    let tar_bytes = fs::read(o("minimal.tar")).expect("tar");
    let tar = read_tar(&tar_bytes);
    let get = |p: &str| {
        tar.iter()
            .find(|m| m.path == p)
            .unwrap_or_else(|| panic!("{p} missing from the tar"))
    };

    // tar.gz: the tar's bytes, compressed.
    assert_eq!(
        gunzip(&fs::read(o("minimal.tar.gz")).expect("tgz")),
        tar_bytes
    );

    // docker: the tar's entries, then LinuxKit's Dockerfile.
    let docker = read_tar(&fs::read(o("minimal.docker.tar")).expect("docker"));
    assert_eq!(docker.len(), tar.len() + 1);
    let last = docker.last().expect("entries");
    assert_eq!(last.path, "Dockerfile");
    assert_eq!(
        String::from_utf8_lossy(&last.data),
        "\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n"
    );

    // kernel+initrd: the kernel and command line of boot/, the rest as a cpio.
    assert_eq!(
        fs::read(o("minimal-kernel")).expect("kernel"),
        get("boot/kernel").data
    );
    assert_eq!(
        fs::read(o("minimal-cmdline")).expect("cmdline"),
        b"console=ttyS0"
    );
    assert_eq!(get("boot/cmdline").data, b"console=ttyS0");
    let initrd = fs::read(o("minimal-initrd.img")).expect("initrd");
    assert_eq!(&initrd[..2], &[0x1f, 0x8b], "no microcode: gzip first");
    assert_eq!(initrd.len() % 4, 0);
    let cpio = gunzip(&initrd);
    assert_eq!(gnu_cpio_list(&cpio), paths_without_boot(&tar));

    // tar-kernel-initrd: the same three parts as members.
    let kt = read_tar(&fs::read(o("minimal-initrd.tar")).expect("initrd.tar"));
    let names: Vec<&str> = kt.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(names, ["kernel", "initrd.img", "cmdline"]);
    assert_eq!(kt[0].data, get("boot/kernel").data);
    assert_eq!(
        kt[1].data, initrd,
        "the same initrd bytes (no microcode here)"
    );
    assert_eq!(kt[2].data, b"console=ttyS0");
    assert!(
        kt.iter()
            .all(|m| m.mode == 0o644 && m.mtime == 1_492_533_000)
    );

    // Byte-identical rebuild of the multi-file format.
    let again = d.path().join("again");
    fs::create_dir(&again).expect("mkdir");
    build(
        &yml,
        &[
            "-f",
            "kernel+initrd",
            "--dir",
            again.to_str().expect("utf-8"),
            "--name",
            "minimal",
        ],
    );
    for f in ["minimal-kernel", "minimal-initrd.img", "minimal-cmdline"] {
        assert_eq!(
            fs::read(again.join(f)).expect("rebuilt"),
            fs::read(out.join(f)).expect("first"),
            "{f} differs between two builds"
        );
    }
}

/// zstd (SPEC §10): `tar.zst` (by `-f` and inferred from `-o x.tar.zst`) is the tar's bytes
/// compressed; `--initrd-compression zstd` gives a zstd initrd holding the same cpio, the same
/// bytes on a rebuild and inside `tar-kernel-initrd`; the flag is refused without an initrd.
#[test]
fn zstd_formats_of_minimal() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let out = d.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    let o = |s: &str| out.join(s).to_str().expect("utf-8 path").to_string();

    build(&yml, &["-o", &o("minimal.tar")]);
    build(&yml, &["-o", &o("inferred.tar.zst")]);
    build(&yml, &["-f", "tar.zst", "--dir", &o("")]);
    let tar_bytes = fs::read(o("minimal.tar")).expect("tar");
    let zst = fs::read(o("minimal.tar.zst")).expect("tar.zst");
    assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    assert_eq!(unzstd(&zst), tar_bytes);
    assert_eq!(fs::read(o("inferred.tar.zst")).expect("inferred"), zst);
    let tar = read_tar(&tar_bytes);
    assert!(
        tar.iter().any(|m| m.path == "init"),
        "the tar holds the init"
    );

    let kz = |dir: &str| {
        build(
            &yml,
            &[
                "-f",
                "kernel+initrd",
                "--initrd-compression",
                "zstd",
                "--dir",
                &o(dir),
                "--name",
                "minimal",
            ],
        );
        fs::read(out.join(dir).join("minimal-initrd.img")).expect("initrd")
    };
    let initrd = kz("k1");
    assert_eq!(&initrd[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd initrd");
    assert_eq!(initrd.len() % 4, 0);
    let cpio = unzstd(&initrd);
    assert_eq!(gnu_cpio_list(&cpio), paths_without_boot(&tar));
    assert!(cpio.windows(8).any(|w| w == b"TRAILER!"), "cpio trailer");
    assert_eq!(kz("k2"), initrd, "byte-identical rebuild");
    let kernel = tar
        .iter()
        .find(|m| m.path == "boot/kernel")
        .expect("boot/kernel");
    assert_eq!(
        fs::read(out.join("k1/minimal-kernel")).expect("kernel"),
        kernel.data
    );

    build(
        &yml,
        &[
            "-f",
            "tar-kernel-initrd",
            "--initrd-compression",
            "zstd",
            "-o",
            &o("k.tar"),
        ],
    );
    let kt = read_tar(&fs::read(o("k.tar")).expect("initrd.tar"));
    assert_eq!(kt[1].path, "initrd.img");
    assert_eq!(kt[1].data, initrd, "the same initrd (no microcode here)");

    let refused = imagesmith()
        .args(["build", "--initrd-compression", "zstd", "-o"])
        .arg(o("no.tar"))
        .arg(&yml)
        .output()
        .expect("running imagesmith");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--initrd-compression"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!out.join("no.tar").exists());
}

#[test]
fn single_file_formats_stream_to_stdout() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let file = d.path().join("k.tar");
    build(
        &yml,
        &[
            "-f",
            "tar-kernel-initrd",
            "-o",
            file.to_str().expect("utf-8"),
        ],
    );
    let streamed = build(&yml, &["-f", "tar-kernel-initrd", "-o", "-"]).stdout;
    assert_eq!(streamed, fs::read(&file).expect("file"));
    let gz = build(&yml, &["-o", "-", "-f", "tar.gz"]).stdout;
    let tar = build(&yml, &["-o", "-"]).stdout;
    assert_eq!(gunzip(&gz), tar);
}

#[test]
fn kernel_formats_refuse_output_to_stdout_and_specs_without_kernel() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let out = imagesmith()
        .args(["build", "-f", "kernel+initrd", "-o", "-"])
        .arg(&yml)
        .output()
        .expect("running imagesmith");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir"));

    let no_kernel = d.path().join("nokernel.yml");
    fs::write(&no_kernel, format!("init:\n  - {}\n", package_tag("init"))).expect("write");
    for f in ["kernel+initrd", "tar-kernel-initrd"] {
        let out = imagesmith()
            .args(["build", "-f", f, "--dir"])
            .arg(d.path())
            .arg(&no_kernel)
            .output()
            .expect("running imagesmith");
        assert!(!out.status.success(), "{f} without a kernel must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("kernel"), "{f}: {err}");
    }
    let left: Vec<_> = fs::read_dir(d.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("nokernel"))
        .collect();
    assert_eq!(left, ["nokernel.yml"], "no partial output");
}

#[test]
fn docker_format_builds_into_an_image() {
    let d = tempfile::tempdir().expect("tempdir");
    let yml = minimal_yml(d.path());
    let out = d.path().join("sys.docker.tar");
    build(&yml, &["-f", "docker", "-o", out.to_str().expect("utf-8")]);
    let tag = format!("{}:1", unique("docker-format"));
    remove_at_exit(&tag);
    // `docker` cannot give the build its own environment: the same local-engine command.
    let built = run_ok(
        docker_command()
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "--network", "none", "-t", &tag, "-"])
            .stdin(fs::File::open(&out).expect("open")),
    );
    assert!(String::from_utf8_lossy(&built.stdout).starts_with("sha256:"));
    let entrypoint = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        &tag,
    ]);
    assert_eq!(entrypoint, r#"["/bin/rc.init"]"#);
    // The image holds the system: export it and look for what the build placed. (A tar is
    // binary: `docker` returns text, so the export runs as a command of its own.)
    let cid = docker(&["create", &tag, "/dev/null"]);
    let exported = docker_command()
        .args(["export", &cid])
        .output()
        .expect("docker export");
    docker(&["rm", "-f", &cid]);
    assert!(exported.status.success());
    let members = read_tar(&exported.stdout);
    let has = |p: &str| members.iter().any(|m| m.path == p);
    for p in [
        "boot/kernel",
        "boot/cmdline",
        "init",
        "usr/bin/runc",
        "usr/bin/start-bundle",
        "containers/onboot/000-hello/config.json",
        "containers/onboot/000-hello/lower/hello/message.txt",
        "containers/services/greeter/runtime.json",
    ] {
        assert!(
            has(p),
            "{p} missing from the image built from the docker output"
        );
    }
}
