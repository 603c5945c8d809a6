//! The executor through the engine trait with the in-memory engine (no Docker needed):
//! `--jobs` runs exports ahead without changing a byte of the output, and every container is
//! removed on success, on error and on a panic.

use crate::common;

use std::collections::HashMap;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::oci::image_ref;
use common::{runtime, tar_of};
use imagesmith::archive::{Entry, Sink, TarSink};
use imagesmith::build;
use imagesmith::engine::fake::{Event, FakeEngine};
use imagesmith::engine::{Engine, Exports};
use imagesmith::exec;
use imagesmith::plan::{self, Plan};
use imagesmith::source::{ImageInfo, ImageSource, ResolveOptions};
use imagesmith::spec::Spec;
use imagesmith::spec::reference::Reference;

const IMAGES: usize = 4;

/// An image of a few files, different per image, ~100 KiB.
fn image_tar(i: usize) -> Vec<u8> {
    let mut entries = vec![(Entry::dir(format!("d{i}"), 0o755, 7), Vec::new())];
    for f in 0..4 {
        let data: Vec<u8> = (0..25_000u32)
            .map(|b| (b as usize * (i + 3) + f) as u8)
            .collect();
        let e = Entry::file(format!("d{i}/f{f}"), 0o644, 7, data.len() as u64);
        entries.push((e, data));
    }
    tar_of(&entries)
}

fn spec(n: usize) -> Spec {
    let init = (0..n)
        .map(|i| image_ref(&format!("test/jobs{i}:1")))
        .collect();
    Spec {
        init,
        ..Spec::default()
    }
}

fn engine(n: usize) -> FakeEngine {
    let mut e = FakeEngine::new();
    e.chunk_size = 8 * 1024;
    e.chunk_delay = Duration::from_millis(4);
    for i in 0..n {
        e.add(
            &format!("test/jobs{i}:1"),
            ImageInfo::default(),
            image_tar(i),
        );
    }
    e
}

struct Run {
    output: Vec<u8>,
    engine: Arc<FakeEngine>,
    exports: Exports,
}

fn exec_options(ahead: usize) -> exec::ExecOptions {
    exec::ExecOptions {
        ahead,
        mtime: 1,
        spool_dir: None,
    }
}

fn run_with(
    rt: &tokio::runtime::Runtime,
    engine: FakeEngine,
    spec: &Spec,
    jobs: usize,
    sink: &mut dyn Sink,
) -> (anyhow::Result<()>, Arc<FakeEngine>, Exports) {
    with_plan(rt, engine, spec, jobs, |p, exports| {
        exec::execute(p, Arc::new(exports.clone()), &exec_options(jobs - 1), sink)
    })
}

/// Resolves and plans `spec` on `engine`, then calls `execute` with the plan and the
/// exports; returns what it returned, the engine and the exports.
fn with_plan<R>(
    rt: &tokio::runtime::Runtime,
    engine: FakeEngine,
    spec: &Spec,
    jobs: usize,
    execute: impl FnOnce(&Plan, &Exports) -> R,
) -> (R, Arc<FakeEngine>, Exports) {
    let engine = Arc::new(engine);
    let dynengine: Arc<dyn Engine> = engine.clone();
    let exports = Exports::new(dynengine, rt.handle().clone());
    let source: &dyn ImageSource = &exports;
    let images = build::resolve_all(
        rt,
        source,
        &plan::images(spec),
        &ResolveOptions::default(),
        jobs,
    )
    .expect("resolve");
    let p = plan::plan(spec, &images, plan::files(spec).expect("files")).expect("plan");
    let res = execute(&p, &exports);
    (res, engine, exports)
}

fn run(jobs: usize) -> Run {
    let rt = runtime();
    let spec = spec(IMAGES);
    let mut sink = TarSink::new(Vec::new());
    let (res, engine, exports) = run_with(&rt, engine(IMAGES), &spec, jobs, &mut sink);
    res.expect("build succeeds");
    Run {
        output: sink.finish().expect("tar"),
        engine,
        exports,
    }
}

/// Per container: from the first chunk asked for to the end of its stream (or its removal,
/// when the reader stopped early).
fn export_intervals(events: &[(Instant, Event)]) -> Vec<(String, Instant, Instant)> {
    let mut start: HashMap<String, Instant> = HashMap::new();
    let mut end: HashMap<String, Instant> = HashMap::new();
    for (t, e) in events {
        match e {
            Event::ExportStart(c) => {
                start.insert(c.clone(), *t);
            }
            Event::ExportEnd(c) | Event::Remove(c) => {
                end.entry(c.clone()).or_insert(*t);
            }
            _ => {}
        }
    }
    let mut v: Vec<_> = start
        .into_iter()
        .map(|(c, s)| {
            let e = end
                .get(&c)
                .copied()
                .unwrap_or_else(|| panic!("{c} never ended"));
            (c, s, e)
        })
        .collect();
    v.sort_by_key(|(_, s, _)| *s);
    v
}

fn overlapping_pairs(iv: &[(String, Instant, Instant)]) -> usize {
    let mut n = 0;
    for (i, a) in iv.iter().enumerate() {
        for b in &iv[i + 1..] {
            if a.1 < b.2 && b.1 < a.2 {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn exports_overlap_with_jobs_3_and_not_with_jobs_1_and_output_is_identical() {
    let one = run(1);
    let three = run(3);

    let iv1 = export_intervals(&one.engine.events());
    let iv3 = export_intervals(&three.engine.events());
    assert_eq!(iv1.len(), IMAGES, "{iv1:?}");
    assert_eq!(iv3.len(), IMAGES, "{iv3:?}");
    assert_eq!(overlapping_pairs(&iv1), 0, "--jobs 1 overlapped: {iv1:?}");
    for w in iv1.windows(2) {
        assert!(
            w[0].2 <= w[1].1,
            "--jobs 1: {} ended after {} began",
            w[0].0,
            w[1].0
        );
    }
    assert!(
        overlapping_pairs(&iv3) >= 2,
        "--jobs 3 should run exports at once: {iv3:?}"
    );
    // Never more than 3 at once.
    for (_, s, _) in &iv3 {
        let running = iv3.iter().filter(|(_, a, b)| a <= s && s < b).count();
        assert!(running <= 3, "{running} exports at once with --jobs 3");
    }

    assert!(one.output.len() > IMAGES * 100_000);
    assert!(one.output == three.output, "--jobs changed the output");
    for r in [&one, &three] {
        assert!(r.engine.live_containers().is_empty());
        assert!(r.exports.live().is_empty());
    }
}

/// A sink that fails (or panics) at the n-th entry.
struct Failing {
    left: usize,
    panic: bool,
}

impl Sink for Failing {
    fn append(&mut self, _entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink())?;
        if self.left == 0 {
            if self.panic {
                panic!("sink panics on purpose");
            }
            return Err(io::Error::other("disk full (on purpose)"));
        }
        self.left -= 1;
        Ok(())
    }
}

#[test]
fn containers_are_removed_when_the_output_fails() {
    let rt = runtime();
    let spec = spec(IMAGES);
    let mut sink = Failing {
        left: 3,
        panic: false,
    };
    let (res, engine, exports) = run_with(&rt, engine(IMAGES), &spec, 3, &mut sink);
    let err = format!("{:#}", res.expect_err("the sink fails"));
    assert!(err.contains("disk full"), "{err}");
    assert!(
        engine.live_containers().is_empty(),
        "{:?}",
        engine.live_containers()
    );
    assert!(exports.live().is_empty());
    let created = engine
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::Create { .. }))
        .count();
    assert!(
        created >= 2,
        "exports ran ahead before the failure ({created})"
    );
}

#[test]
fn containers_are_removed_on_a_panic() {
    let rt = runtime();
    let spec = spec(IMAGES);
    let mut sink = Failing {
        left: 2,
        panic: true,
    };
    let (caught, engine, exports) = with_plan(&rt, engine(IMAGES), &spec, 3, |p, exports| {
        catch_unwind(AssertUnwindSafe(|| {
            let _ = exec::execute(p, Arc::new(exports.clone()), &exec_options(2), &mut sink);
        }))
    });
    assert!(caught.is_err(), "the sink panicked");
    assert!(
        engine.live_containers().is_empty(),
        "left after a panic: {:?}",
        engine.live_containers()
    );
    assert!(exports.live().is_empty());
    assert!(
        engine
            .events()
            .iter()
            .any(|(_, e)| matches!(e, Event::Create { .. })),
        "containers were created"
    );
}

#[test]
fn exports_opened_after_remove_all_are_removed_at_once() {
    let rt = runtime();
    let engine = Arc::new(engine(1));
    let dynengine: Arc<dyn Engine> = engine.clone();
    let r = Reference::parse("test/jobs0:1").expect("reference");
    let info = rt
        .block_on(dynengine.resolve(&r, &ResolveOptions::default()))
        .expect("resolve");
    let exports = Exports::new(dynengine, rt.handle().clone());
    let first = exports.open(&info).expect("opens");
    rt.block_on(exports.remove_all());
    assert!(engine.live_containers().is_empty(), "remove_all removed it");
    let err = exports
        .open(&info)
        .err()
        .expect("no export after remove_all");
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(
        engine.live_containers().is_empty(),
        "the late container is removed"
    );
    drop(first);
    assert!(exports.live().is_empty());
}

/// With `--jobs 3`, the two free helpers first take the two largest later images (by the
/// size the source reports), not the next two in output order; the output is unchanged.
#[test]
fn helpers_start_the_largest_images_first() {
    let rt = runtime();
    let n = 5;
    let sizes = [0u64, 10, 20, 5_000, 9_000];
    let mk = || {
        let mut e = FakeEngine::new();
        e.chunk_size = 8 * 1024;
        e.chunk_delay = Duration::from_millis(4);
        for (i, size) in sizes.iter().enumerate() {
            let info = ImageInfo {
                size: (*size).max(1),
                ..ImageInfo::default()
            };
            e.add(&format!("test/jobs{i}:1"), info, image_tar(i));
        }
        e
    };
    let spec = spec(n);
    let mut sink = TarSink::new(Vec::new());
    let (res, engine, _) = run_with(&rt, mk(), &spec, 3, &mut sink);
    res.expect("build succeeds");
    let created: Vec<String> = engine
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Create { image, .. } => Some(image.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), n, "{created:?}");
    let mut first: Vec<&str> = created[..3].iter().map(String::as_str).collect();
    first.sort();
    assert_eq!(
        first,
        [
            "docker.io/test/jobs0:1",
            "docker.io/test/jobs3:1",
            "docker.io/test/jobs4:1"
        ],
        "{created:?}"
    );
    let mut one = TarSink::new(Vec::new());
    let (res, _, _) = run_with(&rt, mk(), &spec, 1, &mut one);
    res.expect("build succeeds");
    assert!(
        one.finish().unwrap() == sink.finish().unwrap(),
        "the order of exports changed the output"
    );
}
