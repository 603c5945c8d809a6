//! `imagesmith pkg build <DIR>...`: turns a package directory (the ones under `pkg/`) into a
//! local image through the Docker Engine API, the way `docker build` would, with no registry
//! and no network.
//!
//! A package directory holds a `Dockerfile` and, optionally, a `prepare` shell script (run
//! with `sh`, so it need not be executable). The directory is copied to a temporary staging
//! directory; `prepare`, when present, runs there as `sh prepare <staging dir>` (working
//! directory: the staging directory) to add files from the host, such as Debian's kernel or busybox; then the
//! staging directory, as a tar with uid/gid 0 and every time set to `SOURCE_DATE_EPOCH` (else
//! LinuxKit's fixed time), is the build context of the engine's classic builder, with network
//! mode `none` (the engine here has no bridge, and packages must not download anything).
//!
//! The image is tagged `imagesmith/<directory name>:dev` unless `--tag` says otherwise (one
//! directory only). The tag and the image id are printed on standard output, one line per
//! package; the build log goes to standard error (`-v` for every step).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, anyhow, bail};

use crate::archive::{Entry, Name, Sink, TarSink};
use crate::engine::docker::DockerEngine;

/// The tag a package directory gets by default: `imagesmith/<name>:dev`.
pub fn default_tag(dir: &Path) -> anyhow::Result<String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{}: a package directory needs a name", dir.display()))?;
    let valid = !name.is_empty()
        && name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !valid {
        bail!(
            "{}: `{name}` cannot be an image name (lower-case letters, digits and single `.`, `_`, `-` between them); give one with --tag",
            dir.display()
        );
    }
    Ok(format!("imagesmith/{name}:dev"))
}

/// What `imagesmith pkg build` is asked to do.
#[derive(Debug, Clone)]
pub struct PkgOptions {
    /// Package directories (each with a Dockerfile and optionally a `prepare` script).
    pub dirs: Vec<std::path::PathBuf>,
    /// Tag of the image (one directory only); default `imagesmith/<dir name>:dev`.
    pub tag: Option<String>,
    /// The time of every entry of the build context.
    pub mtime: u64,
}

/// Runs `imagesmith pkg build`; returns `(tag, image id)` of each package, in order.
pub fn run(args: &PkgOptions) -> anyhow::Result<Vec<(String, String)>> {
    if args.tag.is_some() && args.dirs.len() != 1 {
        bail!("--tag names one image: give one package directory with it");
    }
    let mtime = args.mtime;
    let mut jobs = Vec::new();
    for dir in &args.dirs {
        if !dir.join("Dockerfile").is_file() {
            bail!("{}: not a package directory (no Dockerfile)", dir.display());
        }
        let tag = match &args.tag {
            Some(t) => t.clone(),
            None => default_tag(&fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()))?,
        };
        jobs.push((dir, tag));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let engine = rt.block_on(DockerEngine::connect_from_env())?;
    let mut built = Vec::new();
    for (dir, tag) in jobs {
        let context = stage(dir, mtime).with_context(|| format!("package {}", dir.display()))?;
        let id = rt
            .block_on(engine.build_image(context, &tag))
            .with_context(|| format!("package {}: building {tag}", dir.display()))?;
        built.push((tag, id));
    }
    Ok(built)
}

/// Stages `dir`, runs its `prepare`, and returns the build context as a tar in an anonymous
/// temporary file, rewound.
pub fn stage(dir: &Path, mtime: u64) -> anyhow::Result<fs::File> {
    let staging = tempfile::Builder::new()
        .prefix("imagesmith-pkg.")
        .tempdir()
        .context("creating a staging directory")?;
    copy_tree(dir, staging.path())?;
    let prepare = staging.path().join("prepare");
    if prepare.is_file() {
        log::info!("{}: running prepare", dir.display());
        let status = Command::new("sh")
            .arg(&prepare)
            .arg(staging.path())
            .current_dir(staging.path())
            .env("SOURCE_DATE_EPOCH", mtime.to_string())
            .stdin(Stdio::null())
            .stdout(io::stderr())
            .status()
            .with_context(|| format!("running {}", dir.join("prepare").display()))?;
        if !status.success() {
            bail!("{} failed ({status})", dir.join("prepare").display());
        }
    }
    let mut file = tempfile::tempfile().context("creating the build context file")?;
    {
        let mut tar = TarSink::new(io::BufWriter::new(&mut file));
        add_tree(&mut tar, staging.path(), Vec::new(), mtime)?;
        let mut w = tar.finish().context("writing the build context")?;
        io::Write::flush(&mut w).context("writing the build context")?;
    }
    file.rewind().context("rewinding the build context")?;
    Ok(file)
}

/// The names in directory `dir`, sorted.
fn sorted_names(dir: &Path) -> anyhow::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort();
    Ok(names)
}

/// Copies the directory tree `from` into the existing directory `to` (files, directories,
/// symbolic links; anything else is an error naming it).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for n in sorted_names(from)? {
        let (src, dst) = (from.join(&n), to.join(&n));
        let meta =
            fs::symlink_metadata(&src).with_context(|| format!("reading {}", src.display()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&dst).with_context(|| format!("creating {}", dst.display()))?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        } else if ft.is_symlink() {
            let t = fs::read_link(&src).with_context(|| format!("reading {}", src.display()))?;
            std::os::unix::fs::symlink(&t, &dst)
                .with_context(|| format!("creating {}", dst.display()))?;
        } else {
            bail!(
                "{}: only files, directories and symbolic links can be in a package",
                src.display()
            );
        }
    }
    Ok(())
}

/// Appends the tree at `dir` (archive path `prefix`) to `tar`, sorted by name, uid/gid 0,
/// time `mtime`, modes as on disk.
fn add_tree(tar: &mut dyn Sink, dir: &Path, prefix: Name, mtime: u64) -> anyhow::Result<()> {
    for n in sorted_names(dir)? {
        let path = dir.join(&n);
        let mut name = prefix.clone();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(n.as_bytes());
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let write = |e: io::Error| anyhow::Error::new(e).context("writing the build context");
        if ft.is_dir() {
            tar.append(&Entry::dir(name.clone(), mode, mtime), &mut io::empty())
                .map_err(write)?;
            add_tree(tar, &path, name, mtime)?;
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).with_context(|| format!("reading {}", path.display()))?;
            let e = Entry::symlink(name, t.as_os_str().as_bytes(), 0o777, mtime);
            tar.append(&e, &mut io::empty()).map_err(write)?;
        } else if ft.is_file() {
            let mut f =
                fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let e = Entry::file(name, mode, mtime, meta.size());
            tar.append(&e, &mut f)
                .with_context(|| format!("adding {} to the build context", path.display()))?;
        } else {
            bail!(
                "{}: only files, directories and symbolic links can be in a package",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Kind;

    #[test]
    fn default_tags() {
        assert_eq!(
            default_tag(Path::new("/x/pkg/kernel")).unwrap(),
            "imagesmith/kernel:dev"
        );
        assert_eq!(
            default_tag(Path::new("pkg/my-pkg.2")).unwrap(),
            "imagesmith/my-pkg.2:dev"
        );
        let err = default_tag(Path::new("pkg/Hello")).unwrap_err().to_string();
        assert!(err.contains("`Hello`") && err.contains("--tag"), "{err}");
        assert!(default_tag(Path::new("pkg/a--b")).is_err());
        assert!(default_tag(Path::new("/")).is_err());
    }

    #[test]
    fn context_is_staged_prepared_and_reproducible() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("demo");
        fs::create_dir_all(p.join("sub")).unwrap();
        fs::write(p.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        fs::write(p.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("sub/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("sub/run.sh", p.join("link")).unwrap();
        fs::write(
            p.join("prepare"),
            "set -eu\nprintf '%s' \"$SOURCE_DATE_EPOCH\" > \"$1/epoch\"\n",
        )
        .unwrap();
        let read = || {
            let mut f = stage(&p, 1234).unwrap();
            let mut v = Vec::new();
            io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        };
        let bytes = read();
        assert_eq!(bytes, read(), "same directory, same context bytes");
        let items = crate::archive::tests::read_all(&bytes);
        let names: Vec<String> = items.iter().map(|(e, _)| e.display_path()).collect();
        assert_eq!(
            names,
            [
                "Dockerfile",
                "epoch",
                "link",
                "prepare",
                "sub",
                "sub/run.sh"
            ]
        );
        let get = |n: &str| items.iter().find(|(e, _)| e.display_path() == n).unwrap();
        assert_eq!(get("epoch").1, b"1234");
        assert_eq!(get("sub/run.sh").0.mode, 0o750);
        assert_eq!(get("link").0.kind, Kind::Symlink(b"sub/run.sh".to_vec()));
        assert!(items.iter().all(|(e, _)| e.mtime == 1234 && e.uid == 0));
        // the package directory itself is untouched
        assert!(!p.join("epoch").exists());
    }

    #[test]
    fn failing_prepare_is_an_error_naming_the_package() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(d.path().join("prepare"), "exit 3\n").unwrap();
        let err = format!("{:#}", stage(d.path(), 1).unwrap_err());
        assert!(err.contains("prepare") && err.contains('3'), "{err}");
    }
}
