//! The semantic checks of SPEC §2 that need more than one value: the volume named in a bind
//! (also applied by `build` to the merged YAML + label binds), and the checks over the whole
//! merged file (unique service and volume names, `uid`/`gid` names, volumes named in binds).
//!
//! The rules over a single value are in [`super::rules`]; these checks build on them.

use std::collections::HashMap;

use crate::spec::Diagnostic;
use crate::spec::model::{Id, Pos, Volume, id_map_from};
use crate::spec::rules::{Bind, parse_bind, resolve_id};

/// The volume check of a bind, for `build` to apply to the merged (YAML + label) binds: a
/// source that is not an absolute path must name a volume, and a read-only volume must be
/// bound `ro`.
pub fn check_volume_bind(volumes: &[Volume], bind: &str) -> Result<(), String> {
    let b = parse_bind(bind)?;
    let lookup = |name: &str| volumes.iter().find(|v| v.name == name).map(|v| v.readonly);
    match bind_volume(&b, lookup) {
        BindVolume::Ok => Ok(()),
        BindVolume::Unknown(name) => Err(unknown_volume(bind, name)),
        BindVolume::ReadOnlyWithoutRo(name) => Err(readonly_without_ro(bind, name)),
    }
}

/// What the volume a bind names says about the bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindVolume<'a> {
    /// No volume (an absolute source), or a volume the bind may mount so.
    Ok,
    /// The named volume is not in `volumes`.
    Unknown(&'a str),
    /// The named volume is read-only and the bind lacks `ro`.
    ReadOnlyWithoutRo(&'a str),
}

/// The volume check of a parsed bind; `readonly` looks a volume up by name: `None` when there
/// is no such volume, else whether it is read-only.
fn bind_volume<'b>(b: &'b Bind<'_>, readonly: impl FnOnce(&str) -> Option<bool>) -> BindVolume<'b> {
    let Some(name) = b.volume() else {
        return BindVolume::Ok;
    };
    match readonly(name) {
        None => BindVolume::Unknown(name),
        Some(true) if !b.is_readonly() => BindVolume::ReadOnlyWithoutRo(name),
        Some(_) => BindVolume::Ok,
    }
}

fn unknown_volume(bind: &str, name: &str) -> String {
    format!("bind `{bind}` names volume `{name}`, which is not in `volumes`")
}

fn readonly_without_ro(bind: &str, name: &str) -> String {
    format!("bind `{bind}` mounts read-only volume `{name}` without `ro`")
}

/// What a cross-file check needs to know about one container entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryFacts<'a> {
    pub section: &'static str,
    /// `services[2]`.
    pub path: &'a str,
    pub name: Option<(&'a str, &'a Pos)>,
    /// Value, position, path.
    pub ids: &'a [(Id, Pos, String)],
    pub binds: &'a [(String, Pos, String)],
}

/// What a cross-file check needs to know about one volume.
#[derive(Debug, Clone)]
pub(crate) struct VolumeFacts<'a> {
    /// `volumes[1]`.
    pub path: &'a str,
    pub name: &'a str,
    pub pos: &'a Pos,
    pub readonly: bool,
}

/// The checks over the whole merged file: unique service names, unique volume names, ids
/// naming containers, volumes named in binds (an unknown one, or a read-only one bound
/// without `ro`, is an error; LinuxKit's own test `070_volumes/002_rw_on_ro` expects its
/// build to fail on the latter). Labels may bind volumes too: `build` applies
/// [`check_volume_bind`] to the merged binds.
pub(crate) fn cross_check(
    entries: &[EntryFacts<'_>],
    volumes: &[VolumeFacts<'_>],
    file_ids: &[(Id, Pos, String)],
    errors: &mut Vec<Diagnostic>,
) {
    let err = |errors: &mut Vec<Diagnostic>, pos: &Pos, message: String| {
        errors.push(Diagnostic {
            pos: Some(pos.clone()),
            message,
        });
    };
    let mut services: HashMap<&str, &Pos> = HashMap::new();
    for e in entries.iter().filter(|e| e.section == "services") {
        if let Some((name, pos)) = e.name {
            if let Some(first) = services.get(name) {
                err(
                    errors,
                    pos,
                    format!(
                        "`{}.name`: duplicate service name `{name}` (first used at {first})",
                        e.path
                    ),
                );
            } else {
                services.insert(name, pos);
            }
        }
    }
    let mut vols: HashMap<&str, &VolumeFacts<'_>> = HashMap::new();
    for v in volumes {
        if let Some(first) = vols.get(v.name) {
            err(
                errors,
                v.pos,
                format!(
                    "`{}.name`: duplicate volume name `{}` (first used at {})",
                    v.path, v.name, first.pos
                ),
            );
        } else {
            vols.insert(v.name, v);
        }
    }
    let names = id_map_from(entries.iter().map(|e| e.name.map(|(name, _)| name)));
    let all_ids = entries.iter().flat_map(|e| e.ids.iter()).chain(file_ids);
    for (id, pos, path) in all_ids {
        if let Err(e) = resolve_id(id, &names) {
            err(errors, pos, format!("`{path}`: {e}"));
        }
    }
    for e in entries {
        for (bind, pos, path) in e.binds {
            let Ok(b) = parse_bind(bind) else { continue };
            match bind_volume(&b, |name| vols.get(name).map(|v| v.readonly)) {
                BindVolume::Ok => {}
                BindVolume::Unknown(name) => {
                    let message = format!("`{path}`: {}", unknown_volume(bind, name));
                    err(errors, pos, message);
                }
                BindVolume::ReadOnlyWithoutRo(name) => {
                    let message = format!("`{path}`: {}", readonly_without_ro(bind, name));
                    err(errors, pos, message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_binds() {
        let pos = Pos {
            file: "f".into(),
            line: 1,
            column: 1,
        };
        let vol = |name: &str, readonly: bool| Volume {
            name: name.into(),
            image: None,
            readonly,
            format: None,
            platforms: None,
            pos: pos.clone(),
        };
        let vols = [vol("rw", false), vol("ro", true)];
        assert!(check_volume_bind(&vols, "/a:/b").is_ok());
        assert!(check_volume_bind(&vols, "rw:/b").is_ok());
        assert!(check_volume_bind(&vols, "ro:/b:ro").is_ok());
        assert!(check_volume_bind(&vols, "ro:/b").is_err());
        assert!(check_volume_bind(&vols, "nope:/b").is_err());
    }
}
