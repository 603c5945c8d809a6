//! The whole build — spec text to output bytes — through the library entry point the
//! command line uses (`build::run`), with the in-memory fake engine; and the same build of
//! the same images through the real engine, byte for byte.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use imagesmith::archive::Entry;
use imagesmith::build::{self, BuildOptions, DEFAULT_MTIME};
use imagesmith::engine::docker::DockerEngine;
use imagesmith::engine::fake::{Event, FakeEngine};
use imagesmith::engine::{Engine, Exports};
use imagesmith::output::{self, Format};
use imagesmith::source::{ImageInfo, ImageSource, ResolveOptions};
use imagesmith::spec::Input;
use imagesmith::spec::reference::Reference;

/// Options for building `yml` into `out` as `format`, as the command line would make them.
fn options(yml: &Path, out: &Path, format: Format) -> BuildOptions {
    let target = output::target(
        Some(format),
        Some(out.to_str().expect("utf-8")),
        None,
        None,
        None,
    )
    .expect("target");
    options_with(yml, vec![target], None)
}

/// Options for building `yml` into `targets`, creating `dir` first.
fn options_with(yml: &Path, targets: Vec<output::Target>, dir: Option<&Path>) -> BuildOptions {
    BuildOptions {
        inputs: vec![Input::Path(yml.to_path_buf())],
        targets,
        create_dir: dir.map(Path::to_path_buf),
        mtime: DEFAULT_MTIME,
        ahead: 0,
        resolve_at_once: 4,
        resolve: ResolveOptions::default(),
        efi_loader: Reference::parse("imagesmith/efi:dev").expect("reference"),
        disk_size: None,
        cache: None,
    }
}

/// Runs `build::run` with `engine` as the image source.
fn run_fake(opts: &BuildOptions, engine: Arc<FakeEngine>) -> anyhow::Result<build::Report> {
    let connect = move |rt: &tokio::runtime::Runtime| -> anyhow::Result<Arc<dyn ImageSource>> {
        let e: Arc<dyn Engine> = engine.clone();
        Ok(Arc::new(Exports::new(e, rt.handle().clone())))
    };
    build::run(opts, &connect)
}

#[test]
fn kernel_init_and_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = FakeEngine::new();
    let modules = tar_of(&[
        (Entry::dir("lib", 0o755, 9), &b""[..]),
        (Entry::file("lib/m.ko", 0o644, 9, 1), b"m"),
    ]);
    // Lexical export order: the tarball comes before the microcode.
    let kernel_tar = tar_of(&[
        (Entry::file("kernel", 0o600, 9, 3), &b"krn"[..]),
        (
            Entry::file("kernel.tar", 0o644, 9, modules.len() as u64),
            &modules,
        ),
        (Entry::file("ucode.cpio", 0o640, 9, 2), b"uc"),
    ]);
    engine.add("k/kernel:1", ImageInfo::default(), kernel_tar);
    engine.add(
        "i/init:1",
        ImageInfo::default(),
        tar_of(&[
            (Entry::dir("etc", 0o755, 9), &b""[..]),
            (Entry::file("etc/passwd", 0o644, 9, 1), b"p"),
        ]),
    );
    let yml = write_file(
        dir.path(),
        "t.yml",
        r#"kernel:
  image: k/kernel:1
  cmdline: console=ttyS0
  ucode: ucode.cpio
init:
  - i/init:1
files:
  - path: etc/motd
    contents: "hi\n"
    mode: ""
  - path: opt/app/conf
    contents: "{}"
    mode: "0644"
    uid: 7
  - path: usr/local/bin/sh
    symlink: /bin/busybox
"#,
    );
    let out = dir.path().join("out.tar");
    let engine = Arc::new(engine);
    let report = run_fake(&options(&yml, &out, Format::Tar), engine.clone()).expect("build");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        report.written,
        vec![(Some(out.clone()), bytes.len() as u64)]
    );
    let out = read_tar(&bytes);
    let names: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
    let idx = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} missing in {names:?}"))
    };
    assert_eq!(
        &names[..6],
        [
            "boot",
            "boot/cmdline",
            "boot/kernel",
            "boot/ucode.cpio",
            "lib",
            "lib/m.ko"
        ]
    );
    let get = |n: &str| &out[idx(n)];
    assert_eq!(get("boot/cmdline").data, b"console=ttyS0");
    assert_eq!(get("boot/kernel").mode, 0o600);
    assert_eq!(get("boot/kernel").mtime, DEFAULT_MTIME);
    assert_eq!(get("boot/ucode.cpio").mode, 0o640);
    assert_eq!(get("lib/m.ko").mtime, 9, "modules keep their headers");
    assert!(idx("etc/passwd") < idx("etc/motd"));
    // etc exists (from init): not written again; opt/app derived from 0644 + uid 7
    assert_eq!(names.iter().filter(|n| **n == "etc").count(), 1);
    assert_eq!(get("opt").mode, 0o755);
    assert_eq!(get("opt/app").uid, 7);
    assert_eq!(get("etc/motd").mode, 0o600);
    assert_eq!(get("usr/local/bin").mode, 0o700);
    assert_eq!(
        get("usr/local/bin/sh").link.as_deref(),
        Some("/bin/busybox")
    );
    assert!(engine.live_containers().is_empty());
    let creates = engine
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::Create { .. }))
        .count();
    assert_eq!(creates, 2);
}

#[test]
fn kernel_errors_name_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = FakeEngine::new();
    engine.add(
        "k/kernel:1",
        ImageInfo::default(),
        tar_of(&[(Entry::file("kernel", 0o600, 9, 1), &b"k"[..])]),
    );
    let yml = write_file(dir.path(), "t.yml", "kernel:\n  image: k/kernel:1\n");
    let out = dir.path().join("out.tar");
    let err = run_fake(&options(&yml, &out, Format::Tar), Arc::new(engine)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("docker.io/k/kernel:1") && msg.contains("kernel.tar"),
        "{msg}"
    );
    assert!(!out.exists(), "no output after a failure");
}

#[test]
fn every_missing_image_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = FakeEngine::new();
    engine.add("i/here:1", ImageInfo::default(), tar_of::<&[u8]>(&[]));
    let yml = write_file(
        dir.path(),
        "t.yml",
        "init:\n  - i/here:1\n  - i/gone:1\nservices:\n  - name: s\n    image: i/lost:2\n",
    );
    let out = dir.path().join("out.tar");
    let err = run_fake(&options(&yml, &out, Format::Tar), Arc::new(engine)).unwrap_err();
    let msg = format!("{err:#}");
    let file = yml.display().to_string();
    assert!(msg.contains("2 images"), "{msg}");
    assert!(
        msg.contains(&format!(
            "{file}:3:5: init image 2: image `docker.io/i/gone:1`"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{file}:6:12: service `s`: image `docker.io/i/lost:2`"
        )),
        "{msg}"
    );
}

#[test]
fn an_invalid_spec_contacts_no_source() {
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(dir.path(), "t.yml", "init:\n  - i/x:1\nbogus: 1\n");
    let out = dir.path().join("out.tar");
    let connect = |_: &tokio::runtime::Runtime| -> anyhow::Result<Arc<dyn ImageSource>> {
        panic!("the source was contacted")
    };
    let err = build::run(&options(&yml, &out, Format::Tar), &connect).unwrap_err();
    let d = err
        .downcast_ref::<imagesmith::spec::Diagnostics>()
        .expect("the problems of the spec");
    assert_eq!(d.0.len(), 1, "{d}");
    assert!(d.to_string().contains(":3:1:"), "{d}");
}

/// A spec of busybox test images built twice: by the binary through the engine, and by
/// `build::run` through the fake engine holding the engine's own exports and image
/// configurations. The outputs are the same bytes.
#[test]
fn fake_engine_build_equals_engine_build() {
    require_engine();
    let base = busybox_image("fake-eq-base", &[("etc/motd", b"base\n")]);
    let rootfs = tempfile::tempdir().unwrap();
    busybox_rootfs(rootfs.path());
    let svc = TestImage::import(
        rootfs.path(),
        "fake-eq-svc",
        &[
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]",
            "ENV PATH=/bin",
            r#"LABEL org.mobyproject.config="{\"capabilities\":[\"CAP_NET_ADMIN\"]}""#,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(
        dir.path(),
        "sys.yml",
        &format!(
            "init:\n  - {b}\nonboot:\n  - name: one\n    image: {s}\nservices:\n  - name: two\n    image: {b}\n    command: [\"/bin/sh\"]\n    readonly: true\nfiles:\n  - path: etc/issue\n    contents: \"x\\n\"\n",
            b = base.name,
            s = svc.name
        ),
    );
    let engine_out = dir.path().join("engine.tar");
    run_ok(
        imagesmith()
            .args(["-q", "build", "-o"])
            .arg(&engine_out)
            .arg(&yml),
    );

    // The same images in the fake engine: the engine's configuration and export of each.
    let rt = runtime();
    let engine = rt
        .block_on(DockerEngine::connect_from_env())
        .expect("connecting to the engine");
    let mut fake = FakeEngine::new();
    for image in [&base.name, &svc.name] {
        let r = Reference::parse(image).expect("reference");
        let info = rt
            .block_on(engine.resolve(&r, &ResolveOptions::default()))
            .expect("inspect");
        let container = unique("fake-eq");
        docker(&["create", "--name", &container, image, "/dev/null"]);
        let export = run_ok(docker_command().args(["export", &container])).stdout;
        docker(&["rm", "-f", &container]);
        fake.add(image, info, export);
    }
    let fake_out = dir.path().join("fake.tar");
    run_fake(&options(&yml, &fake_out, Format::Tar), Arc::new(fake)).expect("fake build");
    let (a, b) = (
        std::fs::read(&engine_out).unwrap(),
        std::fs::read(&fake_out).unwrap(),
    );
    assert!(
        read_tar(&a)
            .iter()
            .any(|e| e.path == "containers/onboot/000-one/config.json"),
        "the build has the onboot bundle"
    );
    assert!(
        a == b,
        "the fake-engine build differs from the engine build"
    );
}

#[test]
fn several_formats_from_one_pass_equal_their_single_builds() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let engine = || {
        let mut e = FakeEngine::new();
        e.add(
            "k/kernel:1",
            ImageInfo::default(),
            tar_of(&[(Entry::file("kernel", 0o600, 9, 3), &b"krn"[..])]),
        );
        e.add(
            "i/init:1",
            ImageInfo::default(),
            tar_of(&[
                (Entry::file("small", 0o644, 9, 2), &b"hi"[..]),
                // Larger than what the tee holds in memory: spooled for the other formats.
                (Entry::file("big", 0o644, 9, big.len() as u64), &big),
            ]),
        );
        Arc::new(e)
    };
    let yml = write_file(
        dir.path(),
        "sys.yml",
        "kernel:\n  image: k/kernel:1\n  cmdline: console=ttyS0\n  tar: none\ninit:\n  - i/init:1\n",
    );
    let formats = [Format::Tar, Format::TarGz, Format::KernelInitrd];
    let together = dir.path().join("together");
    let opts = options_with(
        &yml,
        output::targets(&formats, None, Some("sys"), Some(&together), None).unwrap(),
        Some(&together),
    );
    let engine_once = engine();
    let report = run_fake(&opts, engine_once.clone()).expect("one pass, three formats");
    assert_eq!(report.written.len(), 5, "{:?}", report.written);
    let exports = engine_once
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::ExportStart(_)))
        .count();
    assert_eq!(exports, 2, "each image exported once");
    for f in formats {
        let alone = dir.path().join(f.name());
        let o = options_with(
            &yml,
            output::targets(&[f], None, Some("sys"), Some(&alone), None).unwrap(),
            Some(&alone),
        );
        run_fake(&o, engine()).expect("single format");
        let mut names: Vec<_> = std::fs::read_dir(&alone)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            assert!(
                std::fs::read(alone.join(&n)).unwrap() == std::fs::read(together.join(&n)).unwrap(),
                "{f}: {n:?} differs"
            );
        }
    }
    assert!(
        output::targets(&formats, Some("x.tar"), None, None, None).is_err(),
        "-o with several formats"
    );
    assert!(output::targets(&[Format::Tar, Format::Tar], None, None, None, None).is_err());
}

/// The fake engine of the `--jobs` tests: a kernel, an init providing `etc`, two images
/// (one with an extended attribute, a long name and a hard link), and one more image when
/// `broken` names it, whose export is not a tar.
fn jobs_engine(broken: Option<&str>) -> Arc<FakeEngine> {
    let mut e = FakeEngine::new();
    let modules = tar_of(&[
        (Entry::dir("lib", 0o755, 9), &b""[..]),
        (Entry::file("lib/m.ko", 0o644, 9, 1), b"m"),
    ]);
    e.add(
        "k/kernel:1",
        ImageInfo::default(),
        tar_of(&[
            (Entry::file("kernel", 0o600, 9, 3), &b"krn"[..]),
            (
                Entry::file("kernel.tar", 0o644, 9, modules.len() as u64),
                &modules,
            ),
        ]),
    );
    e.add(
        "i/init:1",
        ImageInfo::default(),
        tar_of(&[
            (Entry::dir("etc", 0o755, 9), &b""[..]),
            (Entry::file("etc/passwd", 0o644, 9, 1), b"p"),
        ]),
    );
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let long = format!("usr/{}/file", "d".repeat(150));
    let mut xattr = Entry::file("bin/ping", 0o755, 9, 4);
    xattr.pax = vec![(
        "SCHILY.xattr.security.capability".into(),
        b"\x01\x00\x00\x02\n\x20".to_vec(),
    )];
    let mut link = Entry::new(
        "bin/ping2",
        imagesmith::archive::Kind::Link(b"bin/ping".to_vec()),
        0o755,
        9,
        0,
    );
    link.uid = 0;
    e.add(
        "a/one:1",
        ImageInfo::default(),
        tar_of(&[
            (Entry::dir("bin", 0o755, 9), &b""[..]),
            (xattr, &b"ping"[..]),
            (link, &b""[..]),
            (Entry::file(long.as_str(), 0o644, 9, 2), &b"ln"[..]),
            (Entry::file("big", 0o644, 9, big.len() as u64), &big[..]),
        ]),
    );
    e.add(
        "b/two:1",
        ImageInfo::default(),
        tar_of(&[
            (Entry::dir("opt", 0o755, 9), &b""[..]),
            (Entry::file("opt/two", 0o644, 9, 3), &b"two"[..]),
        ]),
    );
    if let Some(name) = broken {
        e.add(name, ImageInfo::default(), vec![1u8; 4096]);
    }
    Arc::new(e)
}

/// Every format, several formats at once included, is the same bytes whatever `--jobs`
/// is: images placed ahead into spools (moved in whole for the tar formats, read back
/// entry by entry for the others) change nothing, and `files` entries still see the
/// parents that images placed ahead provided.
#[test]
fn every_format_is_the_same_whatever_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(
        dir.path(),
        "sys.yml",
        "kernel:\n  image: k/kernel:1\n  cmdline: console=ttyS0\ninit:\n  - i/init:1\n  - b/two:1\n\
         onboot:\n  - name: one\n    image: a/one:1\n    command: [/bin/ping]\nservices:\n  - name: two\n    image: b/two:1\n    command: [/bin/two]\n\
         files:\n  - path: etc/motd\n    contents: hi\n  - path: opt/extra/conf\n    contents: x\n",
    );
    let cases: Vec<Vec<Format>> = vec![
        vec![Format::Tar],
        vec![Format::TarGz],
        vec![Format::TarZst],
        vec![Format::Docker],
        vec![Format::KernelInitrd],
        vec![Format::TarKernelInitrd],
        vec![Format::Tar, Format::KernelInitrd],
    ];
    for formats in cases {
        let mut outputs = Vec::new();
        for ahead in [0, 1, 3] {
            let out = dir.path().join(format!("{formats:?}-{ahead}"));
            let mut opts = options_with(
                &yml,
                output::targets(&formats, None, Some("sys"), Some(&out), None).unwrap(),
                Some(&out),
            );
            opts.ahead = ahead;
            let engine = jobs_engine(None);
            run_fake(&opts, engine.clone()).expect("build");
            assert!(engine.live_containers().is_empty());
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(e.path()).unwrap())
                })
                .collect();
            files.sort();
            assert!(!files.is_empty());
            outputs.push(files);
        }
        assert!(
            outputs[0] == outputs[1] && outputs[0] == outputs[2],
            "{formats:?}: the output changed with --jobs"
        );
        if formats == [Format::Tar] {
            let entries = read_tar(&outputs[0][0].1);
            let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
            // `opt` comes from b/two (placed ahead when --jobs > 1): the `files` entry
            // under it adds `opt/extra` only, not `opt` again.
            assert_eq!(
                names.iter().filter(|n| **n == "opt").count(),
                1,
                "{names:?}"
            );
            assert_eq!(names.iter().filter(|n| **n == "opt/extra").count(), 1);
            assert!(names.contains(&"opt/extra/conf"), "{names:?}");
        }
    }
}

/// An image placed ahead of its turn that fails is reported with its own error (its name,
/// what is wrong), not as a failed spool; nothing is left behind.
#[test]
fn an_image_failing_ahead_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let yml = write_file(
        dir.path(),
        "sys.yml",
        "init:\n  - i/init:1\nonboot:\n  - name: one\n    image: a/one:1\n    command: [/bin/ping]\n  - name: bad\n    image: c/broken:1\n    command: [/x]\n",
    );
    for ahead in [0, 2] {
        let out = dir.path().join(format!("out-{ahead}.tar"));
        let mut opts = options(&yml, &out, Format::Tar);
        opts.ahead = ahead;
        let engine = jobs_engine(Some("c/broken:1"));
        let err = format!(
            "{:#}",
            run_fake(&opts, engine.clone()).expect_err("broken image")
        );
        assert!(
            err.contains("c/broken:1") && err.contains("malformed tar header"),
            "--jobs {}: {err}",
            ahead + 1
        );
        assert!(!err.contains("placed ahead"), "{err}");
        assert!(!out.exists());
        assert!(engine.live_containers().is_empty());
    }
}
