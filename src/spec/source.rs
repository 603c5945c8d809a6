//! Where the host file of a `files` entry's `source:` is.
//!
//! Decision (SPEC §2.2 says "relative to the working directory", as LinuxKit does, while
//! issue #3 asks for "relative to the YAML file's directory"): a relative source is looked up
//! in the working directory first, so that existing LinuxKit files build unchanged, and, if no
//! file exists there, in the directory of the YAML file that holds the entry (not for a file
//! read from standard input). `~/…` is below the user's home directory (`$HOME`); an absolute
//! path is used as it is. `validate` does not look at the host; `build` calls
//! [`resolve_source`].

use std::path::{Path, PathBuf};

use crate::spec::model::FileEntry;

/// The host path of `entry`'s `source`, or `None` when the entry is `optional` and the source
/// does not exist. An error names the source and where it was looked for.
pub fn resolve_source(entry: &FileEntry) -> Result<Option<PathBuf>, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot get the working directory: {e}"))?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    resolve_source_in(entry, &cwd, home.as_deref())
}

/// [`resolve_source`] with the working and home directories given.
pub fn resolve_source_in(
    entry: &FileEntry,
    cwd: &Path,
    home: Option<&Path>,
) -> Result<Option<PathBuf>, String> {
    let Some(source) = entry.source.as_deref() else {
        return Err(format!("files entry `{}` has no `source`", entry.path));
    };
    let mut candidates = Vec::new();
    if source == "~" || source.starts_with("~/") {
        let Some(home) = home else {
            return Err(format!(
                "source `{source}`: the home directory is unknown (HOME is not set)"
            ));
        };
        candidates.push(home.join(source.trim_start_matches('~').trim_start_matches('/')));
    } else if Path::new(source).is_absolute() {
        candidates.push(PathBuf::from(source));
    } else {
        candidates.push(cwd.join(source));
        let file = &*entry.pos.file;
        if file != crate::spec::STDIN_NAME {
            let dir = Path::new(file).parent().unwrap_or(Path::new(""));
            let beside = if dir.is_absolute() {
                dir.join(source)
            } else {
                cwd.join(dir).join(source)
            };
            if beside != candidates[0] {
                candidates.push(beside);
            }
        }
    }
    if let Some(found) = candidates.iter().find(|c| c.exists()) {
        return Ok(Some(found.clone()));
    }
    if entry.optional {
        return Ok(None);
    }
    let looked = candidates
        .iter()
        .map(|c| format!("`{}`", c.display()))
        .collect::<Vec<_>>()
        .join(" and ");
    Err(format!(
        "source `{source}` of files entry `{}` does not exist (looked at {looked})",
        entry.path
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Pos;

    fn entry(source: &str, file: &str, optional: bool) -> FileEntry {
        FileEntry {
            path: "etc/x".into(),
            directory: false,
            symlink: None,
            contents: None,
            source: Some(source.into()),
            metadata: None,
            optional,
            mode: None,
            uid: None,
            gid: None,
            pos: Pos {
                file: file.into(),
                line: 1,
                column: 1,
            },
        }
    }

    #[test]
    fn working_directory_first_then_yaml_directory() {
        let t = tempfile::tempdir().unwrap();
        let cwd = t.path().join("cwd");
        let conf = t.path().join("conf");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("a"), "").unwrap();
        std::fs::write(conf.join("b"), "").unwrap();
        std::fs::write(cwd.join("b"), "").unwrap();
        let yml = conf.join("s.yml").display().to_string();
        assert_eq!(
            resolve_source_in(&entry("a", &yml, false), &cwd, None),
            Ok(Some(conf.join("a")))
        );
        assert_eq!(
            resolve_source_in(&entry("b", &yml, false), &cwd, None),
            Ok(Some(cwd.join("b")))
        );
        assert_eq!(
            resolve_source_in(&entry("./b", crate::spec::STDIN_NAME, false), &cwd, None),
            Ok(Some(cwd.join("./b")))
        );
        assert_eq!(
            resolve_source_in(&entry("c", &yml, true), &cwd, None),
            Ok(None)
        );
        let e = resolve_source_in(&entry("c", &yml, false), &cwd, None).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("conf"), "{e}");
        assert_eq!(
            resolve_source_in(&entry("~/a", &yml, false), &cwd, Some(&conf)),
            Ok(Some(conf.join("a")))
        );
        assert!(resolve_source_in(&entry("~/a", &yml, false), &cwd, None).is_err());
        let abs = conf.join("a").display().to_string();
        assert_eq!(
            resolve_source_in(&entry(&abs, &yml, false), &cwd, None),
            Ok(Some(conf.join("a")))
        );
    }
}
