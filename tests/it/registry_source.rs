//! Images without a Docker engine (issue #14), against a real `docker-registry` with
//! htpasswd auth started by the tests, images pushed with `docker push` and `skopeo copy`:
//! pulls with credentials from a docker configuration, image indexes and `--platform`,
//! `cache import` of `docker save` archives, OCI archives and layouts, hostile layers and
//! corrupted blobs refused, and flattened trees equal to the engine's exports.

use crate::common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::engine::Registry;
use common::layout::{Image, Layout, dir, file, layer_tar, sym};
use common::{busybox_image, docker, docker_command, read_tar, run_ok, unique};
use imagesmith::archive::TarSink;
use imagesmith::engine::auth::Credentials;
use imagesmith::registry::store::Store;
use imagesmith::registry::{RegistryError, RegistryOptions, RegistrySource, import};
use imagesmith::rewrite::{Placement, Resolv, place};
use imagesmith::source::ImageInfo;
use imagesmith::spec::reference::Reference;

fn source(cache: &Path, config: Option<&Path>, platform: Option<&str>) -> RegistrySource {
    RegistrySource::with_credentials(
        RegistryOptions {
            cache_dir: cache.to_path_buf(),
            insecure: Vec::new(),
            platform: platform.map(str::to_string),
        },
        Credentials::in_dir(config.map(Path::to_path_buf)),
    )
    .expect("registry source")
}

fn resolve(src: &RegistrySource, name: &str) -> Result<ImageInfo, RegistryError> {
    let r = Reference::parse(name).expect("reference");
    common::runtime().block_on(src.resolve(&r))
}

/// One entry of a placed tree, as compared between sources.
type Tree = BTreeMap<String, String>;

/// An image's tar stream through the filter and placement of an engine export (SPEC §4.5),
/// as `path → kind mode uid:gid mtime target/content`, without what only the engine adds
/// (`dev/pts`, `dev/shm`, `etc/mtab` are in both anyway, but from different sources).
fn placed(src: impl Read, image: &str) -> Tree {
    let mut sink = TarSink::new(Vec::new());
    place(
        src,
        &mut sink,
        &Placement {
            image,
            prefix: "",
            filter: true,
            resolv: Resolv::File,
            mtime: 1_492_533_000,
        },
    )
    .expect("placing the image");
    let bytes = sink.finish().expect("tar");
    read_tar(&bytes)
        .into_iter()
        .filter(|e| !["dev/pts", "dev/shm", "etc/mtab"].contains(&e.path.as_str()))
        .map(|e| (e.path.clone(), e.describe()))
        .collect()
}

/// The engine's export of `image` (a container created, exported, removed), placed.
fn engine_tree(image: &str) -> Tree {
    let id = docker(&["create", image]);
    let out = docker_command()
        .args(["export", &id])
        .output()
        .expect("docker export");
    docker(&["rm", "-f", &id]);
    assert!(out.status.success(), "docker export failed");
    placed(&out.stdout[..], image)
}

/// The flattened stream of a resolved image, placed.
fn registry_tree(src: &RegistrySource, info: &ImageInfo) -> Tree {
    placed(src.open(info).expect("open"), &info.reference)
}

/// The members of the flattened (unplaced) stream: path → content.
fn flattened_files(src: &RegistrySource, info: &ImageInfo) -> BTreeMap<String, Vec<u8>> {
    let mut v = Vec::new();
    src.open(info).expect("open").read_to_end(&mut v).unwrap();
    read_tar(&v).into_iter().map(|e| (e.path, e.data)).collect()
}

fn files_under(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn pull_by_tag_with_basic_auth_matches_the_engine_export() {
    let reg = Registry::with_auth();
    let mut img = busybox_image("regpull", &[("etc/motd", b"hello\n"), ("a/b/c", b"deep")]);
    let engine = engine_tree(&img.name);
    let remote = img.push_to(&reg);
    let config = reg.login_config();
    let cache = tempfile::tempdir().unwrap();

    // No credentials: the registry's refusal, with what to do.
    let e = resolve(&source(cache.path(), None, None), &remote).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&remote) && msg.contains("401"), "{msg}");
    assert!(msg.contains("docker login"), "{msg}");

    let src = source(cache.path(), Some(config.path()), None);
    let info = resolve(&src, &remote).expect("resolve");
    assert_eq!(info.id, img.id, "the image ID is the config digest");
    assert_eq!(info.cmd, ["/bin/sh"]);
    assert_eq!(info.env, Some(vec!["PATH=/bin".to_string()]));
    assert_eq!(
        (info.os.as_str(), info.architecture.as_str()),
        ("linux", "amd64")
    );
    let tree = registry_tree(&src, &info);
    assert_eq!(
        tree, engine,
        "registry tree differs from the engine's export"
    );
    assert!(tree.contains_key("etc/motd") && tree.contains_key("a/b/c"));

    // Layers and config are blobs of the cache; the flattened image is keyed by its ID.
    let blobs = files_under(&cache.path().join("blobs/sha256"));
    assert!(blobs.len() >= 3, "{blobs:?}");
    let hex = &info.id["sha256:".len()..];
    let flat = cache.path().join(format!("images/sha256/{hex}.tar"));
    assert!(flat.is_file());

    // A second source on another cache: the same bytes.
    let cache2 = tempfile::tempdir().unwrap();
    let src2 = source(cache2.path(), Some(config.path()), None);
    let info2 = resolve(&src2, &remote).unwrap();
    src2.open(&info2).unwrap();
    assert_eq!(
        std::fs::read(&flat).unwrap(),
        std::fs::read(cache2.path().join(format!("images/sha256/{hex}.tar"))).unwrap(),
        "two registry builds differ"
    );
    assert!(
        files_under(&cache2.path().join("refs")).is_empty(),
        "pulls record no references"
    );
    // By digest: the same image.
    let repo = remote.rsplit_once(':').unwrap().0;
    let by_digest = format!("{repo}@{}", manifest_digest(&reg, &remote));
    assert_eq!(resolve(&src2, &by_digest).unwrap().id, info.id);
}

/// The digest of `remote`'s manifest, as skopeo sees it.
fn manifest_digest(reg: &Registry, remote: &str) -> String {
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg("--creds")
            .arg(format!("{}:{}", reg.user, reg.password))
            .arg(format!("docker://{remote}")),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn two_platforms() -> Layout {
    let mk = |arch: &str, platform: &str| {
        let mut i = Image::new(
            platform,
            vec![
                layer_tar(&[
                    dir("etc/"),
                    file("etc/arch", arch.as_bytes()),
                    file("common", b"c"),
                ]),
                layer_tar(&[file(&format!("only-{arch}"), b"1")]),
            ],
        );
        i.labels.insert("arch".into(), arch.into());
        i
    };
    Layout::write(
        &[mk("amd64", "linux/amd64"), mk("arm64", "linux/arm64/v8")],
        "multi",
    )
}

#[test]
fn a_two_platform_index_gives_each_platform_its_own_files() {
    let reg = Registry::with_auth();
    let config = reg.login_config();
    let layout = two_platforms();
    let remote = layout.push("multi", &reg, &unique("multi"));
    let cache = tempfile::tempdir().unwrap();
    for (i, (platform, arch)) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")]
        .into_iter()
        .enumerate()
    {
        let src = source(cache.path(), Some(config.path()), Some(platform));
        let info = resolve(&src, &remote).expect(platform);
        assert_eq!(info.architecture, arch);
        assert_eq!(info.id, layout.ids[i]);
        assert_eq!(info.labels.get("arch").map(String::as_str), Some(arch));
        let files = flattened_files(&src, &info);
        assert_eq!(files["etc/arch"], arch.as_bytes(), "{platform}");
        assert!(files.contains_key(&format!("only-{arch}")), "{platform}");
        let other = if arch == "amd64" { "arm64" } else { "amd64" };
        assert!(!files.contains_key(&format!("only-{other}")), "{platform}");
    }
    // Default: the host's platform.
    let src = source(cache.path(), Some(config.path()), None);
    let host = imagesmith::registry::manifest::Platform::host();
    assert_eq!(
        resolve(&src, &remote).unwrap().architecture,
        host.architecture
    );
    // A platform the index lacks: named, with those it has.
    let src = source(cache.path(), Some(config.path()), Some("linux/s390x"));
    let msg = resolve(&src, &remote).unwrap_err().to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains(&remote),
        "{msg}"
    );
    assert!(msg.contains("linux/amd64, linux/arm64/v8"), "{msg}");
}

#[test]
fn docker_save_import_resolves_with_no_registry_and_matches_the_engine() {
    let img = busybox_image("regsave", &[("etc/saved", b"saved\n")]);
    let engine = engine_tree(&img.name);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("save.tar");
    docker(&["save", "-o", archive.to_str().unwrap(), &img.name]);
    let cache = tempfile::tempdir().unwrap();
    let report = import(&Store::new(cache.path()), &archive).expect("import");
    let full = Reference::parse(&img.name).unwrap().to_string();
    assert_eq!(report.references.len(), 1, "{report:?}");
    assert_eq!(report.references[0].0, full);
    // Nothing listens for docker.io here: the cache alone answers.
    let src = source(cache.path(), None, None);
    let info = resolve(&src, &img.name).expect("resolve from the cache");
    assert_eq!(info.id, img.id);
    assert_eq!(info.cmd, ["/bin/sh"]);
    assert_eq!(registry_tree(&src, &info), engine);
    // Gzip-compressed archives too, into another cache.
    let gz = work.path().join("save.tar.gz");
    std::fs::write(&gz, common::layout::gzip(&std::fs::read(&archive).unwrap())).unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    import(&Store::new(cache2.path()), &gz).expect("import gz");
    let info2 = resolve(&source(cache2.path(), None, None), &img.name).unwrap();
    assert_eq!(info2.id, img.id);
}

#[test]
fn oci_layouts_and_archives_import_with_their_index() {
    // Port 1: nothing listens, so any network use would fail.
    let name = format!("127.0.0.1:1/{}:1", unique("layout"));
    let layout = two_platforms();
    // index.json names the image by its full reference.
    let index = layout.dir.path().join("index.json");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace("\"multi\"", &format!("\"{name}\""));
    std::fs::write(&index, text).unwrap();
    let archive = tempfile::NamedTempFile::new().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(layout.dir.path())
            .arg("-cf")
            .arg(archive.path())
            .arg("."),
    );
    for input in [layout.dir.path(), archive.path()] {
        let cache = tempfile::tempdir().unwrap();
        let report = import(&Store::new(cache.path()), input).expect("import");
        assert_eq!(report.references, vec![(name.clone(), layout.top.clone())]);
        let src = source(cache.path(), None, Some("linux/arm64"));
        let info = resolve(&src, &name).expect("resolve");
        assert_eq!(info.id, layout.ids[1]);
        assert_eq!(flattened_files(&src, &info)["etc/arch"], b"arm64");
    }
}

#[test]
fn hostile_layers_are_refused_naming_image_and_path() {
    let reg = Registry::with_auth();
    let config = reg.login_config();
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (
            vec![layer_tar(&[file("ok", b"1"), file("../escape", b"x")])],
            "../escape",
        ),
        (vec![layer_tar(&[file("/abs", b"x")])], "/abs"),
        (
            vec![
                layer_tar(&[sym("up", "/")]),
                layer_tar(&[file("up/etc/owned", b"x")]),
            ],
            "up/etc/owned",
        ),
    ];
    for (layers, path) in cases {
        let layout = Layout::write(&[Image::new("linux/amd64", layers)], "bad");
        let remote = layout.push("bad", &reg, &unique("hostile"));
        let cache = tempfile::tempdir().unwrap();
        let src = source(cache.path(), Some(config.path()), None);
        let info = resolve(&src, &remote).expect("resolve (layers are read when flattened)");
        let e = src.open(&info).map(|_| ()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RegistryError::Flatten(_)), "{msg}");
        assert!(msg.contains(&remote), "{msg}");
        assert!(msg.contains(&format!("`{path}`")), "{msg}");
        assert!(
            files_under(&cache.path().join("images/sha256")).is_empty(),
            "{path}: output left"
        );
        assert!(
            files_under(&cache.path().join("tmp")).is_empty(),
            "{path}: temp left"
        );
    }
}

#[test]
fn a_blob_corrupted_in_the_registry_fails_naming_its_digest() {
    let reg = Registry::with_auth();
    let config = reg.login_config();
    let layout = Layout::write(
        &[Image::new(
            "linux/amd64",
            vec![layer_tar(&[file("f", &[7u8; 5000])])],
        )],
        "c",
    );
    let remote = layout.push("c", &reg, &unique("corrupt"));
    let digest = layout.layer_digests[0][0].clone();
    let hex = &digest["sha256:".len()..];
    let data = reg
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).expect("the layer in the registry's storage");
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let src = source(cache.path(), Some(config.path()), None);
    let msg = resolve(&src, &remote).unwrap_err().to_string();
    assert!(msg.contains(&digest), "{msg}");
    assert!(msg.contains(&remote), "{msg}");
    assert!(
        !cache.path().join("blobs/sha256").join(hex).exists(),
        "corrupt blob kept"
    );
    assert!(
        files_under(&cache.path().join("tmp")).is_empty(),
        "temp left"
    );
    assert!(files_under(&cache.path().join("images/sha256")).is_empty());

    // Longer than the manifest says: refused the same way.
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&data, &bytes).unwrap();
    let msg = resolve(&src, &remote).unwrap_err().to_string();
    assert!(msg.contains(&digest) && msg.contains("size"), "{msg}");
    assert!(!cache.path().join("blobs/sha256").join(hex).exists());
}
