//! The image cache against the real engine: a warm build is byte-identical to a cold one and
//! creates no container; a retagged name serves the new image; damaged entries are detected
//! and fetched again; concurrent builds share an empty cache; a killed build leaves nothing
//! trusted; a cache that cannot be written only skips caching; `cache ls/rm/prune`.
//! Every test has a cache directory of its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{
    TestImage, busybox_image, docker, imagesmith, read_tar_file, run_ok, write_file,
};

/// `len` bytes that do not repeat within a chunk (a flipped byte anywhere changes output).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A busybox image with a 3 MiB `/data` (its stream spans 5 chunks of the cache).
fn image(what: &str) -> TestImage {
    busybox_image(what, &[("data", &noise(3 << 20, what.len() as u64))])
}

fn spec(dir: &Path, images: &[&str]) -> PathBuf {
    let mut y = String::from("init:\n");
    for i in images {
        y.push_str(&format!("  - {i}\n"));
    }
    write_file(dir, "spec.yml", &y)
}

fn build_cmd(yml: &Path, out: &Path, cache: &Path) -> Command {
    let mut c = imagesmith();
    c.arg("build")
        .arg(yml)
        .arg("-o")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn secs_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs `cmd` (which must succeed) and counts the containers its process created, from the
/// engine's events (containers carry imagesmith's pid label).
fn run_counting_creates(cmd: &mut Command) -> (Output, usize) {
    let since = secs_now() - 1.0;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imagesmith");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", stderr(&out));
    let until = secs_now() + 1.0;
    let events = docker(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label=org.imagesmith.pid={pid}"),
        "--format",
        "{{.ID}}",
    ]);
    (out, events.lines().filter(|l| !l.trim().is_empty()).count())
}

/// The data files of image entries in `cache`.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("images/v1");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_none_or(|x| x != "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x5a;
    fs::write(path, b).unwrap();
}

#[test]
fn cache_warm_build_is_identical_and_creates_no_container() {
    let img = image("cache-warm");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&img.name]);
    let (cold, cold_creates) =
        run_counting_creates(&mut build_cmd(&yml, &d.path().join("cold.tar"), &cache));
    assert_eq!(cold_creates, 1, "{}", stderr(&cold));
    assert_eq!(entries(&cache).len(), 1);
    let (warm, warm_creates) =
        run_counting_creates(&mut build_cmd(&yml, &d.path().join("warm.tar"), &cache));
    assert_eq!(warm_creates, 0, "the warm build created a container");
    assert!(
        stderr(&warm).contains("from the cache"),
        "{}",
        stderr(&warm)
    );
    let cold_bytes = fs::read(d.path().join("cold.tar")).unwrap();
    assert_eq!(cold_bytes, fs::read(d.path().join("warm.tar")).unwrap());
    // --no-cache exports again, and neither reads nor fills the cache.
    let other = d.path().join("xdg");
    let (_, nc_creates) = run_counting_creates(
        imagesmith()
            .arg("build")
            .arg(&yml)
            .arg("-o")
            .arg(d.path().join("nocache.tar"))
            .arg("--no-cache")
            .env("XDG_CACHE_HOME", &other),
    );
    assert_eq!(nc_creates, 1);
    assert!(!other.exists());
    assert_eq!(cold_bytes, fs::read(d.path().join("nocache.tar")).unwrap());
    assert!(img.containers().is_empty());
}

#[test]
fn cache_retagged_name_serves_the_new_image() {
    let a = busybox_image("cache-retag-a", &[("which", b"a")]);
    let b = busybox_image("cache-retag-b", &[("which", b"b")]);
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&a.name]);
    let out = d.path().join("out.tar");
    run_ok(&mut build_cmd(&yml, &out, &cache));
    let which = |p: &Path| {
        read_tar_file(p)
            .into_iter()
            .find(|e| e.path == "which")
            .map(|e| e.data)
            .expect("which in the output")
    };
    assert_eq!(which(&out), b"a");
    docker(&["tag", &b.id, &a.name]);
    let (o, creates) = run_counting_creates(&mut build_cmd(&yml, &out, &cache));
    assert_eq!(creates, 1, "{}", stderr(&o));
    assert_eq!(which(&out), b"b", "a retagged name served the old image");
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn cache_damaged_entries_are_fetched_again() {
    let img = image("cache-damage");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&img.name]);
    let cold = d.path().join("cold.tar");
    run_ok(&mut build_cmd(&yml, &cold, &cache));
    let cold_bytes = fs::read(&cold).unwrap();
    let entry = entries(&cache).pop().expect("an entry");
    let len = fs::metadata(&entry).unwrap().len() as usize;
    let out = d.path().join("out.tar");
    // In the first chunk: known before the first byte, the image comes from the engine.
    // In the last chunk: known after bytes were used, the build starts over without it.
    // A truncated file: known when opened.
    for (what, damage) in [
        ("first chunk", 0usize),
        ("last chunk", 1),
        ("truncation", 2),
    ] {
        match damage {
            0 => flip(&entry, 64 + 12 + 4321),
            1 => flip(&entry, len - 32 - 700),
            _ => {
                let f = fs::OpenOptions::new().write(true).open(&entry).unwrap();
                f.set_len(len as u64 - 5000).unwrap();
            }
        }
        let (o, creates) = run_counting_creates(&mut build_cmd(&yml, &out, &cache));
        let err = stderr(&o);
        assert!(err.contains("damaged"), "{what}: no warning:\n{err}");
        assert_eq!(creates, 1, "{what}: not fetched again:\n{err}");
        if damage == 1 {
            assert!(err.contains("building again"), "{err}");
        }
        assert_eq!(fs::read(&out).unwrap(), cold_bytes, "{what}: other bytes");
        // The entry is sound again.
        let (o, creates) = run_counting_creates(&mut build_cmd(&yml, &out, &cache));
        assert_eq!(creates, 0, "{what}: {}", stderr(&o));
        assert_eq!(fs::read(&out).unwrap(), cold_bytes);
    }
    // To standard output a build cannot start over: it fails, clearly, and the next one
    // fetches the image again.
    flip(&entry, len - 32 - 700);
    let o = imagesmith()
        .args(["build", "-o", "-", "--cache-dir"])
        .arg(&cache)
        .arg(&yml)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is damaged"), "{}", stderr(&o));
    let o = run_ok(
        imagesmith()
            .args(["build", "-o", "-", "--cache-dir"])
            .arg(&cache)
            .arg(&yml),
    );
    assert_eq!(o.stdout, cold_bytes);
}

#[test]
fn cache_concurrent_builds_share_an_empty_cache() {
    let img = image("cache-concurrent");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&img.name]);
    let outs: Vec<PathBuf> = (0..2).map(|i| d.path().join(format!("{i}.tar"))).collect();
    let children: Vec<_> = outs
        .iter()
        .map(|o| {
            build_cmd(&yml, o, &cache)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let first = fs::read(&outs[0]).unwrap();
    assert_eq!(first, fs::read(&outs[1]).unwrap());
    assert_eq!(entries(&cache).len(), 1);
    let (o, creates) = run_counting_creates(&mut build_cmd(&yml, &outs[0], &cache));
    assert_eq!(creates, 0, "the entry left is not sound: {}", stderr(&o));
    assert_eq!(fs::read(&outs[0]).unwrap(), first);
    assert_eq!(fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
}

#[test]
fn cache_killed_build_leaves_no_trusted_entry() {
    // 96 MiB: the export takes long enough to be caught midway.
    let img = busybox_image("cache-killed", &[("data", &noise(96 << 20, 7))]);
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&img.name]);
    let out = d.path().join("out.tar");
    let mut child = build_cmd(&yml, &out, &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tmp = cache.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let big = fs::read_dir(&tmp).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| fs::metadata(p).is_ok_and(|m| m.len() > 8 << 20))
        });
        if let Some(p) = big {
            break p;
        }
        assert!(Instant::now() < deadline, "no temporary entry grew");
        assert!(child.try_wait().unwrap().is_none(), "the build ended first");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(entries(&cache).is_empty(), "a killed build left an entry");
    assert!(
        partial.exists(),
        "the partial file is expected until a later run"
    );
    // The next build does not use it, removes it, and caches the image whole.
    let (o, creates) = run_counting_creates(&mut build_cmd(&yml, &out, &cache));
    assert_eq!(creates, 1, "{}", stderr(&o));
    assert!(
        !partial.exists(),
        "the killed run's temporary file was not removed"
    );
    assert_eq!(entries(&cache).len(), 1);
    let o = run_ok(
        imagesmith()
            .args(["build", "--no-cache", "-o", "-"])
            .arg(&yml),
    );
    assert_eq!(fs::read(&out).unwrap(), o.stdout);
}

#[test]
fn cache_that_cannot_be_written_only_skips_caching() {
    let img = image("cache-full");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&img.name]);
    // Files may grow to 1 MiB only (as a full disk would stop them), and writing past
    // that fails with EFBIG instead of killing the process; the output is a pipe.
    let bin = imagesmith().get_program().to_owned();
    let o = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
        .arg(&bin)
        .args(["build", "-o", "-", "--cache-dir"])
        .arg(&cache)
        .arg(&yml)
        .env("XDG_CACHE_HOME", d.path().join("unused"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not caching"), "{}", stderr(&o));
    assert!(entries(&cache).is_empty());
    assert_eq!(fs::read_dir(cache.join("tmp")).unwrap().count(), 0);
    let expected = run_ok(
        imagesmith()
            .args(["build", "--no-cache", "-o", "-"])
            .arg(&yml),
    );
    assert_eq!(o.stdout, expected.stdout);
}

fn cache_cli(cache: &Path, args: &[&str]) -> Output {
    imagesmith()
        .arg("cache")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cache_ls_rm_prune() {
    let a = image("cache-cli-a");
    let b = image("cache-cli-b");
    let c = image("cache-cli-c");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let out = d.path().join("out.tar");
    // a first, then b and c: a is the least recently used.
    run_ok(&mut build_cmd(&spec(d.path(), &[&a.name]), &out, &cache));
    std::thread::sleep(Duration::from_millis(1100));
    run_ok(&mut build_cmd(
        &spec(d.path(), &[&b.name, &c.name]),
        &out,
        &cache,
    ));

    let ls = cache_cli(&cache, &["ls"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let text = stdout(&ls);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LAST USE"),
        "{text}"
    );
    for img in [&a, &b, &c] {
        let short = &img.id["sha256:".len()..][..12];
        let row = lines
            .iter()
            .find(|l| l.contains(&img.name))
            .unwrap_or_else(|| panic!("{} not listed:\n{text}", img.name));
        assert!(row.contains(short), "{row}");
        assert!(row.contains("MiB") && row.contains("UTC"), "{row}");
    }
    // Most recently used first: a is the last row.
    assert!(lines[3].contains(&a.name), "{text}");
    assert!(lines[4].starts_with("3 images in "), "{text}");

    // rm by name, by id prefix; an unknown one fails.
    let rm = cache_cli(&cache, &["rm", &b.name]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert!(stdout(&rm).contains(&b.id), "{}", stdout(&rm));
    let rm = cache_cli(&cache, &["rm", &c.id["sha256:".len()..][..16]]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert_eq!(entries(&cache).len(), 1);
    let rm = cache_cli(&cache, &["rm", "no-such-image:1"]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(stderr(&rm).contains("no cached image"), "{}", stderr(&rm));
    assert!(!stdout(&cache_cli(&cache, &["ls"])).contains(&b.name));

    // prune: nothing under the default limit; --keep-size evicts the least recently used.
    run_ok(&mut build_cmd(&spec(d.path(), &[&b.name]), &out, &cache));
    let p = cache_cli(&cache, &["prune"]);
    assert!(
        stdout(&p).starts_with("removed 0 entries"),
        "{}",
        stdout(&p)
    );
    assert_eq!(entries(&cache).len(), 2);
    let p = cache_cli(&cache, &["prune", "--keep-size", "6M"]);
    assert!(p.status.success(), "{}", stderr(&p));
    assert!(stdout(&p).starts_with("removed 1 entry"), "{}", stdout(&p));
    let left = stdout(&cache_cli(&cache, &["ls"]));
    assert!(left.contains(&b.name) && !left.contains(&a.name), "{left}");
    let p = cache_cli(&cache, &["prune", "--all"]);
    assert!(p.status.success());
    assert!(entries(&cache).is_empty());
    assert!(stdout(&cache_cli(&cache, &["ls"])).contains("0 images"));
    let bad = cache_cli(&cache, &["prune", "--keep-size", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `build --cache-size` sets the limit the build evicts down to: the least recently used
/// entries go, the build's own stay; a bad size is a usage error.
#[test]
fn cache_size_option_evicts_down_to_it() {
    let a = image("cache-size-a");
    let b = image("cache-size-b");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let out = d.path().join("out.tar");
    run_ok(&mut build_cmd(&spec(d.path(), &[&a.name]), &out, &cache));
    run_ok(&mut build_cmd(&spec(d.path(), &[&b.name]), &out, &cache));
    assert_eq!(entries(&cache).len(), 2, "the default limit keeps both");
    run_ok(build_cmd(&spec(d.path(), &[&b.name]), &out, &cache).args(["--cache-size", "1K"]));
    let left = stdout(&cache_cli(&cache, &["ls"]));
    assert!(left.contains(&b.name) && !left.contains(&a.name), "{left}");
    assert_eq!(entries(&cache).len(), 1);
    let bad = build_cmd(&spec(d.path(), &[&b.name]), &out, &cache)
        .args(["--cache-size", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// Damage found in an image that a helper places ahead of its turn (`--jobs` > 1) is
/// handled as on the build thread: the build starts over without the entry and writes the
/// same bytes.
#[test]
fn cache_damage_in_an_image_placed_ahead_is_handled() {
    let first = image("cache-ahead-first");
    let img = image("cache-ahead-damaged");
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let yml = spec(d.path(), &[&first.name, &img.name]);
    let cold = d.path().join("cold.tar");
    run_ok(build_cmd(&yml, &cold, &cache).args(["--jobs", "1"]));
    let cold_bytes = fs::read(&cold).unwrap();
    let short = &img.id["sha256:".len()..];
    let entry = entries(&cache)
        .into_iter()
        .find(|e| e.to_string_lossy().contains(short))
        .expect("the entry of the second image");
    let len = fs::metadata(&entry).unwrap().len() as usize;
    flip(&entry, len - 32 - 700);
    let out = d.path().join("out.tar");
    let (o, creates) = run_counting_creates(build_cmd(&yml, &out, &cache).args(["--jobs", "3"]));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("damaged") && err.contains("building again"),
        "{err}"
    );
    assert_eq!(
        creates, 1,
        "only the damaged image is fetched again:\n{err}"
    );
    assert_eq!(fs::read(&out).unwrap(), cold_bytes);
}
