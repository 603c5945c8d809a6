//! The schema of `files` and `volumes` entries.

use crate::spec::model::{FileEntry, MetadataFormat, Volume};
use crate::spec::rules;
use crate::spec::yaml::{Node, ScalarKind};

use super::draft::*;
use super::readers::*;

/// Reads a `files` entry.
pub(super) fn file(cx: &mut Cx, n: &Node, p: &P<'_>) -> DraftFile {
    let mut d = DraftFile {
        entry: None,
        ids: Vec::new(),
    };
    let Some(f) = cx.fields(n, p, FILE_KEYS, &[]) else {
        return d;
    };
    let mut ok = true;
    // Kept as written (the `metadata:` document shows it so, as LinuxKit's does); the output
    // uses `FileEntry::output_path`.
    let path = cx.opt(&f, p, "path", &mut ok, |cx, n, p| {
        checked_string(cx, n, p, rules::check_file_path)
    });
    if f.get("path").is_none() {
        if f.clean {
            cx.error(n, p, "missing `path`");
        }
        ok = false;
    }
    let directory = cx.opt(&f, p, "directory", &mut ok, Cx::bool);
    let symlink = cx.opt(&f, p, "symlink", &mut ok, |cx, n, p| {
        non_empty(cx, n, p, "symlink target")
    });
    let contents = cx.opt(&f, p, "contents", &mut ok, Cx::string);
    let source = cx.opt(&f, p, "source", &mut ok, |cx, n, p| {
        non_empty(cx, n, p, "source")
    });
    let metadata = cx.opt(&f, p, "metadata", &mut ok, |cx, n, p| {
        match cx.string(n, p)?.as_str() {
            "yaml" => Some(MetadataFormat::Yaml),
            "json" => Some(MetadataFormat::Json),
            other => {
                cx.error(
                    n,
                    p,
                    format_args!("metadata format `{other}` is not `yaml` or `json`"),
                );
                None
            }
        }
    });
    let optional = cx.opt(&f, p, "optional", &mut ok, Cx::bool);
    let mode = cx.opt(&f, p, "mode", &mut ok, |cx, n, p| {
        let s = cx.string(n, p)?;
        if !s.is_empty()
            && let Err(e) = rules::parse_mode(&s)
        {
            cx.error(n, p, e);
            return None;
        }
        Some(s)
    });
    let mut id = |cx: &mut Cx, n: &Node, p: &P<'_>| {
        let v = cx.id(n, p)?;
        d.ids.push((v.clone(), cx.pos(n), p.to_string()));
        Some(v)
    };
    let uid = cx.opt(&f, p, "uid", &mut ok, &mut id);
    let gid = cx.opt(&f, p, "gid", &mut ok, &mut id);
    let given: Vec<&str> = ["contents", "source", "metadata", "directory", "symlink"]
        .into_iter()
        .filter(|k| match *k {
            "directory" => f
                .get(k)
                .is_some_and(|n| n.scalar().map(|s| s.kind) != Some(ScalarKind::Bool(false))),
            _ => f.get(k).is_some(),
        })
        .collect();
    match given.as_slice() {
        _ if !f.clean => ok = false,
        [] => {
            cx.error(
                n,
                p,
                "needs one of `contents`, `source`, `metadata`, `directory: true` or `symlink`",
            );
            ok = false;
        }
        [_] => {}
        many => {
            let list = many
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" and ");
            cx.error(
                n,
                p,
                format_args!("has {list}; a files entry takes exactly one of them"),
            );
            ok = false;
        }
    }
    if optional == Some(true) && f.get("source").is_none() {
        if let Some(k) = f.key_node("optional") {
            cx.error(
                k,
                &p.key("optional"),
                "`optional: true` applies only to an entry with `source`",
            );
        }
        ok = false;
    }
    if let (true, Some(path)) = (ok, path) {
        d.entry = Some(FileEntry {
            path,
            directory: directory.unwrap_or(false),
            symlink,
            contents,
            source,
            metadata,
            optional: optional.unwrap_or(false),
            mode,
            uid,
            gid,
            pos: cx.pos(n),
        });
    }
    d
}

/// Reads a `volumes` entry.
pub(super) fn volume(cx: &mut Cx, n: &Node, p: &P<'_>) -> DraftVolume {
    let mut d = DraftVolume {
        path: p.to_string(),
        name: None,
        volume: None,
    };
    let Some(f) = cx.fields(n, p, VOLUME_KEYS, &[]) else {
        return d;
    };
    let mut ok = true;
    match f.get("name") {
        Some(v) => {
            let np = p.key("name");
            if let Some(name) = cx.string(v, &np) {
                match rules::check_volume_name(&name) {
                    Ok(()) => d.name = Some((name, cx.pos(v))),
                    Err(e) => {
                        cx.error(v, &np, e);
                        ok = false;
                    }
                }
            } else {
                ok = false;
            }
        }
        None => {
            if f.clean {
                cx.error(n, p, "missing `name`");
            }
            ok = false;
        }
    }
    let image = cx.opt(&f, p, "image", &mut ok, Cx::reference);
    let readonly = cx.opt(&f, p, "readonly", &mut ok, Cx::bool);
    let format = cx.opt(&f, p, "format", &mut ok, |cx, n, p| {
        let s = cx.string(n, p)?;
        match s.as_str() {
            "" | "filesystem" => Some(s),
            "oci" => {
                cx.error(
                    n,
                    p,
                    "volume format `oci` is not supported yet (use `filesystem`)",
                );
                None
            }
            other => {
                cx.error(
                    n,
                    p,
                    format_args!("unknown volume format `{other}` (expected `filesystem`)"),
                );
                None
            }
        }
    });
    let platforms = cx.opt(&f, p, "platforms", &mut ok, Cx::strings);
    if let (true, Some((name, _))) = (ok, &d.name) {
        d.volume = Some(Volume {
            name: name.clone(),
            image,
            readonly: readonly.unwrap_or(false),
            format,
            platforms,
            pos: cx.pos(n),
        });
    }
    d
}
