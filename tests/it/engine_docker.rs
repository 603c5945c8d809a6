//! The Docker engine implementation against the real engine, through the library: resolve
//! (inspect, pull with credentials, platform), export containers and their removal, the
//! clean-up of containers left by dead runs, TLS. Needs the engine (scripts/setup.sh): these
//! tests fail, never skip, without it. Every image, container and registry is the test's own.

use crate::common;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use common::engine::{Certs, ENGINE_SOCKET, Registry, TlsProxy, free_port};
use common::{
    TestImage, containers, docker, engine_arch, labelled_container, other_arch, require_engine,
    runtime, tar_text, unique,
};
use imagesmith::engine::auth::Credentials;
use imagesmith::engine::connect::{Address, Env};
use imagesmith::engine::docker::DockerEngine;
use imagesmith::engine::{Engine, Exports};
use imagesmith::owner::{self, Owner};
use imagesmith::source::{ImageInfo, ResolveOptions, SourceError as EngineError};
use imagesmith::spec::reference::Reference;

fn local_env() -> Env {
    Env {
        docker_host: Some(format!("unix://{ENGINE_SOCKET}")),
        ..Env::default()
    }
}

fn connect(rt: &tokio::runtime::Runtime, env: &Env, creds: Credentials) -> DockerEngine {
    require_engine();
    let addr = Address::from_env(env).expect("address");
    rt.block_on(DockerEngine::connect(&addr, creds))
        .unwrap_or_else(|e| panic!("connecting to the engine: {e}"))
}

fn no_credentials() -> Credentials {
    Credentials::in_dir(None)
}

fn resolve(
    rt: &tokio::runtime::Runtime,
    engine: &DockerEngine,
    image: &str,
    opts: &ResolveOptions,
) -> Result<ImageInfo, EngineError> {
    let r = Reference::parse(image).expect("valid reference");
    rt.block_on(engine.resolve(&r, opts))
}

/// Reads a whole export and returns the content of `marker` in it.
fn marker_of(mut reader: impl Read) -> String {
    let mut tar = Vec::new();
    reader.read_to_end(&mut tar).expect("reading the export");
    tar_text(&tar, "marker")
}

#[test]
fn a_local_image_is_resolved_exported_and_its_container_removed() {
    let rt = runtime();
    let image = TestImage::new("local");
    let engine = connect(&rt, &local_env(), no_credentials());
    let info = resolve(&rt, &engine, &image.name, &ResolveOptions::default()).expect("resolves");
    assert_eq!(info.id, image.id);
    assert_eq!(info.os, "linux");
    assert_eq!(info.architecture, engine_arch());
    assert_eq!(info.cmd, ["/bin/sh"]);
    assert_eq!(info.reference, format!("docker.io/library/{}", image.name));

    let engine: Arc<dyn Engine> = Arc::new(engine);
    let exports = Exports::new(engine, rt.handle().clone());
    let reader = exports.open(&info).expect("export opens");
    let live = image.containers();
    assert_eq!(live.len(), 1, "one export container: {live:?}");
    let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", &live[0]]);
    let labels: std::collections::HashMap<String, String> =
        serde_json::from_str(&labels).expect("labels JSON");
    let me = Owner::current();
    assert_eq!(labels.get(owner::LABEL_TOOL).map(String::as_str), Some("1"));
    assert_eq!(labels.get(owner::LABEL_PID), Some(&me.pid.to_string()));
    assert_eq!(labels.get(owner::LABEL_HOST), Some(&me.host));
    assert_eq!(
        labels.get(owner::LABEL_START),
        me.start.map(|s| s.to_string()).as_ref()
    );
    assert!(labels.contains_key(owner::LABEL_RUN));
    let state = docker(&["inspect", "--format", "{{.State.Status}}", &live[0]]);
    assert_eq!(state, "created", "never started");

    assert_eq!(marker_of(reader), image.name);
    assert!(image.containers().is_empty(), "removed after the export");
    assert!(exports.live().is_empty());
}

#[test]
fn a_missing_image_is_an_error_naming_it() {
    let rt = runtime();
    let registry = Registry::with_auth();
    let login = registry.login_config();
    let engine = connect(
        &rt,
        &local_env(),
        Credentials::in_dir(Some(login.path().to_path_buf())),
    );
    let missing = format!("{}/{}:1", registry.host(), unique("missing"));
    let e = resolve(&rt, &engine, &missing, &ResolveOptions::default()).expect_err("missing");
    let msg = e.to_string();
    assert!(matches!(e, EngineError::NotFound { .. }), "{e:?}");
    assert!(
        msg.contains(&format!(
            "image `{missing}`: it is not in the engine, and pulling it failed: "
        )) && msg.contains("manifest unknown"),
        "{msg}"
    );

    // A registry that is not there at all.
    let nowhere = format!("127.0.0.1:{}/{}:1", free_port(), unique("nowhere"));
    let e = resolve(&rt, &engine, &nowhere, &ResolveOptions::default()).expect_err("no registry");
    assert!(e.to_string().contains(&format!("image `{nowhere}`")), "{e}");
    assert!(
        e.to_string()
            .contains("it is not in the engine, and pulling it failed: "),
        "{e}"
    );
}

#[test]
fn a_platform_mismatch_names_the_image_and_the_platform() {
    let rt = runtime();
    let image = TestImage::new("platform");
    let engine = connect(&rt, &local_env(), no_credentials());
    let other = other_arch();
    let opts = ResolveOptions {
        always_pull: false,
        platform: Some(format!("linux/{other}")),
    };
    let e = resolve(&rt, &engine, &image.name, &opts).expect_err("mismatch");
    let msg = e.to_string();
    assert!(msg.contains(&image.name), "{msg}");
    assert!(msg.contains(&format!("linux/{other}")), "{msg}");
    assert!(msg.contains(&format!("linux/{}", engine_arch())), "{msg}");
    let opts = ResolveOptions {
        always_pull: false,
        platform: Some(format!("linux/{}", engine_arch())),
    };
    resolve(&rt, &engine, &image.name, &opts).expect("the engine's own platform matches");
    assert!(image.containers().is_empty());
}

#[test]
fn pulls_with_stored_credentials_and_is_refused_without() {
    let rt = runtime();
    let registry = Registry::with_auth();
    let mut image = TestImage::new("pull");
    let remote = image.push_to(&registry);
    let remote_norm = Reference::parse(&remote).expect("ref").to_string();

    // No credentials: refused, the image and the registry's answer named.
    let empty = tempfile::tempdir().expect("dir");
    let engine = connect(
        &rt,
        &local_env(),
        Credentials::in_dir(Some(empty.path().to_path_buf())),
    );
    let e = resolve(&rt, &engine, &remote, &ResolveOptions::default()).expect_err("refused");
    let msg = e.to_string();
    assert!(matches!(e, EngineError::PullDenied { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("image `{remote_norm}`: pull denied: ")),
        "{msg}"
    );
    assert!(msg.contains("docker login"), "{msg}");

    // Wrong password: refused, saying whose credentials.
    let wrong = tempfile::tempdir().expect("dir");
    let auth = base64_of(&format!("{}:not-the-password", registry.user));
    std::fs::write(
        wrong.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .expect("config");
    let engine = connect(
        &rt,
        &local_env(),
        Credentials::in_dir(Some(wrong.path().to_path_buf())),
    );
    let e = resolve(&rt, &engine, &remote, &ResolveOptions::default()).expect_err("refused");
    assert!(e.to_string().contains("refused the credentials"), "{e}");

    // `docker login`'s configuration: pulled.
    let login = registry.login_config();
    let engine = connect(
        &rt,
        &local_env(),
        Credentials::in_dir(Some(login.path().to_path_buf())),
    );
    let info = resolve(&rt, &engine, &remote, &ResolveOptions::default()).expect("pulled");
    assert_eq!(info.cmd, ["/bin/sh"]);
    // --pull pulls again although the engine has it now.
    let again = resolve(
        &rt,
        &engine,
        &remote,
        &ResolveOptions {
            always_pull: true,
            platform: None,
        },
    )
    .expect("pulled again");
    assert_eq!(again.id, info.id);
    let engine: Arc<dyn Engine> = Arc::new(engine);
    let exports = Exports::new(engine, rt.handle().clone());
    assert_eq!(marker_of(exports.open(&info).expect("export")), image.name);
    assert!(containers(&format!("ancestor={}", info.id)).is_empty());
    image.remove_local();
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn connects_over_tcp_with_tls_verify() {
    let rt = runtime();
    let image = TestImage::new("tls");
    let certs = Certs::new();
    let proxy = TlsProxy::start(&certs, ENGINE_SOCKET);
    let env = Env {
        docker_host: Some(format!("tcp://127.0.0.1:{}", proxy.port)),
        tls_verify: Some("1".into()),
        cert_path: Some(certs.path().to_path_buf()),
        ..Env::default()
    };
    let engine = connect(&rt, &env, no_credentials());
    let info = resolve(&rt, &engine, &image.name, &ResolveOptions::default()).expect("resolves");
    let engine: Arc<dyn Engine> = Arc::new(engine);
    let exports = Exports::new(engine, rt.handle().clone());
    assert_eq!(marker_of(exports.open(&info).expect("export")), image.name);
    assert!(image.containers().is_empty());

    // Certificates of another CA: refused, one error naming the address.
    let others = Certs::new();
    let env = Env {
        cert_path: Some(others.path().to_path_buf()),
        ..env
    };
    let addr = Address::from_env(&env).expect("address");
    let e = rt
        .block_on(DockerEngine::connect(&addr, no_credentials()))
        .err()
        .expect("refused");
    assert!(
        e.to_string()
            .contains(&format!("tcp://127.0.0.1:{}", proxy.port)),
        "{e}"
    );
}

#[test]
fn an_unreachable_engine_is_one_clear_error() {
    let rt = runtime();
    let sock = PathBuf::from("/tmp").join(format!("{}.sock", unique("nosock")));
    let env = Env {
        docker_host: Some(format!("unix://{}", sock.display())),
        ..Env::default()
    };
    let addr = Address::from_env(&env).expect("address");
    let e = rt
        .block_on(DockerEngine::connect(&addr, no_credentials()))
        .err()
        .expect("unreachable");
    let msg = e.to_string();
    assert!(msg.contains(&sock.display().to_string()), "{msg}");
    assert!(msg.contains("DOCKER_HOST"), "{msg}");
}

#[test]
fn containers_of_dead_runs_on_this_host_are_removed_and_no_others() {
    let rt = runtime();
    let image = TestImage::new("stale");
    let me = Owner::current();
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let dead_pid = gone.id();
    gone.wait().expect("true ends");
    let base = |host: &str, pid: u32, start: Option<u64>| {
        let mut l = vec![
            (owner::LABEL_TOOL, "1".to_string()),
            (owner::LABEL_RUN, unique("run")),
            (owner::LABEL_HOST, host.to_string()),
            (owner::LABEL_PID, pid.to_string()),
        ];
        if let Some(s) = start {
            l.push((owner::LABEL_START, s.to_string()));
        }
        if let Some(b) = &me.boot {
            l.push((owner::LABEL_BOOT, b.clone()));
        }
        l
    };
    let dead = labelled_container(&image, base(&me.host, dead_pid, Some(1)));
    // This process, alive: never removed.
    let live = labelled_container(&image, base(&me.host, me.pid, me.start));
    // The pid of a live process but another start time: the pid was reused, the run is gone.
    let reused = labelled_container(&image, base(&me.host, me.pid, me.start.map(|s| s + 1)));
    // Another host's: not ours to judge.
    let elsewhere = labelled_container(&image, base(&unique("host"), dead_pid, Some(1)));

    let engine = connect(&rt, &local_env(), no_credentials());
    // Other tests' builds run `remove_stale` at the same time and may remove `dead` and
    // `reused` first: what counts is what is left, and that this call removed no other.
    let removed = rt.block_on(engine.remove_stale());
    assert!(!removed.contains(&live) && !removed.contains(&elsewhere));
    let left = image.containers();
    assert!(
        left.contains(&live) && left.contains(&elsewhere),
        "{left:?}"
    );
    assert!(!left.contains(&dead) && !left.contains(&reused), "{left:?}");
    docker(&["rm", "-f", &live, &elsewhere]);
    assert!(image.containers().is_empty());
}
