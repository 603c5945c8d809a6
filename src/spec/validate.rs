//! The semantic rules of SPEC §2: one pure function per rule over single values
//! (capabilities, binds, tmpfs, rlimits, modes, names, namespaces, ids, mounts, devices,
//! `files` paths), and the checks that need the whole merged file (unique service and volume
//! names, `uid`/`gid` names, volumes named in binds).
//!
//! The per-value rules return a message without a position; the schema pass
//! ([`super::schema`]) calls them while converting and attaches the line of the value. They
//! are public so that `build` can apply the same rules to values that come from image labels.

use std::collections::{BTreeMap, HashMap};

use crate::oci::types::Mount;
use crate::spec::Diagnostic;
use crate::spec::model::{Id, Pos, Volume};

/// Every capability, in kernel order (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40): what
/// a lone `all` stands for.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The 16 standard resource limits.
pub const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// `CAP_X` for a capability written in any case, with or without `CAP_`.
pub fn normalize_capability(name: &str) -> Option<&'static str> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    CAPABILITIES.iter().copied().find(|c| *c == full)
}

fn is_all_or_none(s: &str) -> bool {
    s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("none")
}

/// Checks a `capabilities` / `capabilities.add` / `ambient` list: known names, or a lone
/// `all` / `none`. Returns the index and the problem of every bad item.
pub fn check_capabilities<S: AsRef<str>>(items: &[S]) -> Vec<(usize, String)> {
    if let [only] = items
        && is_all_or_none(only.as_ref())
    {
        return Vec::new();
    }
    let mut bad = Vec::new();
    for (i, s) in items.iter().enumerate() {
        let s = s.as_ref();
        if is_all_or_none(s) {
            bad.push((
                i,
                format!("`{s}` must be the only item of the list, not mixed with capability names"),
            ));
        } else if normalize_capability(s).is_none() {
            bad.push((i, format!("unknown capability `{s}`")));
        }
    }
    bad
}

/// A bind mount `source:destination[:options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    /// `None` when no options were written (the default is `rw,rbind,rshared`).
    pub options: Option<Vec<&'a str>>,
}

impl Bind<'_> {
    /// The volume this bind mounts: a source not starting with `/` (SPEC §2.4).
    pub fn volume(&self) -> Option<&str> {
        (!self.source.starts_with('/')).then_some(self.source)
    }

    /// Whether the options include `ro`.
    pub fn read_only(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.contains(&"ro"))
    }
}

fn options(s: &str) -> Result<Vec<&str>, String> {
    let opts: Vec<&str> = s.split(',').collect();
    if opts.iter().any(|o| o.is_empty()) {
        return Err(format!("empty mount option in `{s}`"));
    }
    Ok(opts)
}

/// Parses a `binds` entry.
pub fn parse_bind(s: &str) -> Result<Bind<'_>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, destination, opts) = match parts.as_slice() {
        [_] => {
            return Err(format!(
                "bind `{s}` has no `:`; expected `source:destination[:options]`"
            ));
        }
        [src, dst] => (*src, *dst, None),
        [src, dst, o] => (*src, *dst, Some(*o)),
        _ => {
            return Err(format!(
                "bind `{s}` has too many `:`; expected `source:destination[:options]`"
            ));
        }
    };
    if source.is_empty() {
        return Err(format!("bind `{s}` has an empty source"));
    }
    if destination.is_empty() {
        return Err(format!("bind `{s}` has an empty destination"));
    }
    let options = opts.map(options).transpose()?;
    Ok(Bind {
        source,
        destination,
        options,
    })
}

/// Parses a `tmpfs` entry `destination[:options]` into the destination and the options.
pub fn parse_tmpfs(s: &str) -> Result<(&str, Option<Vec<&str>>), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (dst, opts) = match parts.as_slice() {
        [d] => (*d, None),
        [d, o] => (*d, Some(*o)),
        _ => {
            return Err(format!(
                "tmpfs `{s}` has too many `:`; expected `destination[:options]`"
            ));
        }
    };
    if dst.is_empty() {
        return Err(format!("tmpfs `{s}` has an empty destination"));
    }
    Ok((dst, opts.map(options).transpose()?))
}

/// A parsed `rlimits` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, …
    pub kind: &'static str,
    pub soft: u64,
    pub hard: u64,
}

/// Parses `name,soft,hard`: the name in any case with or without `RLIMIT_`, the values
/// numbers or `unlimited` (2^64-1).
pub fn parse_rlimit(s: &str) -> Result<Rlimit, String> {
    let parts: Vec<&str> = s.splitn(3, ',').map(str::trim).collect();
    let [name, soft, hard] = parts.as_slice() else {
        return Err(format!("rlimit `{s}` is not `name,soft,hard`"));
    };
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("RLIMIT_") {
        up
    } else {
        format!("RLIMIT_{up}")
    };
    let Some(kind) = RLIMITS.iter().copied().find(|r| *r == full) else {
        return Err(format!(
            "unknown rlimit `{name}` (known: {})",
            short_names(&RLIMITS, "RLIMIT_")
        ));
    };
    let value = |v: &str| -> Result<u64, String> {
        if v.eq_ignore_ascii_case("unlimited") {
            return Ok(u64::MAX);
        }
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "rlimit `{s}`: `{v}` is not a number or `unlimited`"
            ));
        }
        v.parse::<u64>()
            .map_err(|_| format!("rlimit `{s}`: `{v}` is too large"))
    };
    let (soft, hard) = (value(soft)?, value(hard)?);
    if soft > hard {
        return Err(format!(
            "rlimit `{s}`: the soft limit is above the hard limit"
        ));
    }
    Ok(Rlimit { kind, soft, hard })
}

fn short_names(names: &[&str], prefix: &str) -> String {
    names
        .iter()
        .map(|n| n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses an octal mode string such as `0644` (at most `07777`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let hint = if s.starts_with("0o") {
            " (write it without `0o`)"
        } else {
            ""
        };
        return Err(format!(
            "mode `{s}` is not an octal number such as \"0644\"{hint}"
        ));
    }
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("mode `{s}` is larger than 07777")),
    }
}

/// A container name: non-empty, no `/`, not `.` or `..`, no control characters.
pub fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the name is empty".to_string());
    }
    if s.contains('/') {
        return Err(format!("name `{s}` contains `/`"));
    }
    if s == "." || s == ".." {
        return Err(format!("`{s}` is not a usable name"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("name {s:?} contains a control character"));
    }
    Ok(())
}

/// A volume name: `[a-z0-9_-]+`.
pub fn check_volume_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the volume name is empty".to_string());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "volume name `{s}` may only use a-z, 0-9, `_` and `-`"
        ));
    }
    Ok(())
}

/// `net`, `ipc`, `uts`, `pid`, `userns`: `host`/`root`, `new` (and `none` for `net`), a path
/// to a namespace (absolute), or "" (unset).
pub fn check_namespace(key: &str, s: &str) -> Result<(), String> {
    let keyword = matches!(s, "" | "host" | "root" | "new") || (key == "net" && s == "none");
    if keyword || s.starts_with('/') {
        return Ok(());
    }
    let none = if key == "net" { ", `none`" } else { "" };
    Err(format!(
        "`{s}` is not `host`, `root`, `new`{none} or the absolute path of a namespace"
    ))
}

/// `rootfsPropagation`: the values runc knows.
pub fn check_propagation(s: &str) -> Result<(), String> {
    const KNOWN: [&str; 9] = [
        "",
        "shared",
        "slave",
        "private",
        "unbindable",
        "rshared",
        "rslave",
        "rprivate",
        "runbindable",
    ];
    if KNOWN.contains(&s) {
        return Ok(());
    }
    Err(format!(
        "`{s}` is not one of shared, slave, private, unbindable (or their r- forms)"
    ))
}

/// `cwd`: absolute (or empty: unset).
pub fn check_cwd(s: &str) -> Result<(), String> {
    if s.is_empty() || s.starts_with('/') {
        return Ok(());
    }
    Err(format!("cwd `{s}` is not an absolute path"))
}

/// An `env` entry: `KEY=value` with a non-empty key.
pub fn check_env(s: &str) -> Result<(), String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(()),
        _ => Err(format!("environment entry `{s}` is not `KEY=value`")),
    }
}

/// `oomScoreAdj`: -1000 … 1000.
pub fn check_oom_score_adj(v: i64) -> Result<(), String> {
    if (-1000..=1000).contains(&v) {
        return Ok(());
    }
    Err(format!("oomScoreAdj {v} is outside -1000 … 1000"))
}

/// The syntax of a `uid` / `gid` / `additionalGids` value: a number or numeric string in
/// 0 … 2^32-1, or a non-empty name.
pub fn check_id(id: &Id) -> Result<(), String> {
    match id {
        Id::Num(n) if u32::try_from(*n).is_ok() => Ok(()),
        Id::Num(n) => Err(format!("id {n} is larger than 4294967295")),
        Id::Name(s) if s.is_empty() => Err("the id is an empty string".to_string()),
        Id::Name(s) if s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<u32>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("id `{s}` is larger than 4294967295")),
        },
        Id::Name(_) => Ok(()),
    }
}

/// The number a `uid` / `gid` stands for: a number, a numeric string, `root` (0), or the name
/// of a container of the file (`names`, see [`crate::spec::model::id_map`]).
pub fn resolve_id(id: &Id, names: &BTreeMap<String, u32>) -> Result<u32, String> {
    check_id(id)?;
    match id {
        Id::Num(n) => u32::try_from(*n).map_err(|_| format!("id {n} is too large")),
        Id::Name(s) if s == "root" => Ok(0),
        Id::Name(s) => {
            if let Ok(n) = s.parse::<u32>() {
                return Ok(n);
            }
            names.get(s).copied().ok_or_else(|| {
                format!("`{s}` is not a number, `root`, or the name of a container of this file")
            })
        }
    }
}

/// The path of a `files` entry: leading `/` dropped; empty or with a `..` component = error.
pub fn normalize_file_path(p: &str) -> Result<String, String> {
    let rel = p.trim_start_matches('/');
    if rel.is_empty() {
        return Err("the path is empty".to_string());
    }
    if rel.split('/').any(|c| c == "..") {
        return Err(format!("path `{p}` has a `..` component"));
    }
    if rel.contains('\0') {
        return Err(format!("path {p:?} contains a NUL character"));
    }
    Ok(rel.to_string())
}

/// Completes a `mounts` entry as LinuxKit does (SPEC §2.1): an empty type is taken from a
/// known source (`proc`, `sysfs`, `devpts`, `mqueue`, `cgroup`), or `tmpfs` for `/dev`; an
/// empty source is the type; an empty destination is the type's usual place.
pub fn complete_mount(m: &Mount) -> Result<Mount, String> {
    let mut kind = m.kind.clone();
    if kind.is_empty()
        && matches!(
            m.source.as_str(),
            "proc" | "sysfs" | "devpts" | "mqueue" | "cgroup"
        )
    {
        kind = m.source.clone();
    }
    if kind.is_empty() && m.destination == "/dev" {
        kind = "tmpfs".to_string();
    }
    if kind.is_empty() {
        let dst = if m.destination.is_empty() {
            "(none)"
        } else {
            &m.destination
        };
        return Err(format!(
            "mount for destination `{dst}` has no type, and none can be derived from its source"
        ));
    }
    let source = if m.source.is_empty() {
        kind.clone()
    } else {
        m.source.clone()
    };
    let destination = if m.destination.is_empty() {
        match kind.as_str() {
            "proc" => "/proc",
            "sysfs" => "/sys",
            "devpts" => "/dev/pts",
            "mqueue" => "/dev/mqueue",
            "cgroup" => "/sys/fs/cgroup",
            _ => return Err(format!("mount of type `{kind}` has no destination")),
        }
        .to_string()
    } else {
        m.destination.clone()
    };
    Ok(Mount {
        destination,
        kind,
        source,
        ..m.clone()
    })
}

/// Checks a `devices` entry; returns the key at fault (or "" for the entry) and the problem.
pub fn check_device(
    path: &str,
    kind: &str,
    major: Option<i64>,
    minor: Option<i64>,
    mode: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut bad = Vec::new();
    if path == "all" {
        if !matches!(kind, "" | "a" | "b" | "c") {
            bad.push((
                "type",
                format!("device type `{kind}` is not `a`, `b` or `c` (for `path: all`)"),
            ));
        }
        // LinuxKit writes `major: 0`/`minor: 0` for these in its own output; accept that.
        if major.is_some_and(|m| m != 0) || minor.is_some_and(|m| m != 0) {
            bad.push((
                "",
                "`path: all` allows every device of the type; `major`/`minor` would be ignored"
                    .to_string(),
            ));
        }
    } else {
        if !path.starts_with('/') {
            bad.push((
                "path",
                format!("device path `{path}` is neither `all` nor an absolute path"),
            ));
        }
        if !matches!(kind, "b" | "c" | "u" | "p") {
            bad.push((
                "type",
                format!("device type `{kind}` is not `b`, `c`, `u` or `p`"),
            ));
        }
        if kind != "p" && (major.is_none() || minor.is_none()) {
            bad.push(("", "a device needs `major` and `minor`".to_string()));
        }
    }
    for (key, v) in [("major", major), ("minor", minor)] {
        if v.is_some_and(|v| v < 0) {
            bad.push((key, format!("`{key}` may not be negative")));
        }
    }
    if let Some(m) = mode
        && let Err(e) = parse_mode(m)
    {
        bad.push(("mode", e));
    }
    bad
}

/// Checks a device cgroup rule of `resources.devices`: type `a`/`b`/`c` (or empty), access
/// letters from `rwm`.
pub fn check_device_rule(kind: &str, access: &str) -> Result<(), String> {
    if !matches!(kind, "" | "a" | "b" | "c") {
        return Err(format!("device rule type `{kind}` is not `a`, `b` or `c`"));
    }
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(format!(
            "device rule access `{access}` may only use the letters r, w, m"
        ));
    }
    Ok(())
}

/// The volume check of a bind, for `build` to apply to the merged (YAML + label) binds: a
/// source that is not an absolute path must name a volume, and a read-only volume must be
/// bound `ro`.
pub fn check_volume_bind(volumes: &[Volume], bind: &str) -> Result<(), String> {
    let b = parse_bind(bind)?;
    let Some(name) = b.volume() else {
        return Ok(());
    };
    match volumes.iter().find(|v| v.name == name) {
        None => Err(format!(
            "bind `{bind}` names volume `{name}`, which is not in `volumes`"
        )),
        Some(v) if v.readonly && !b.read_only() => Err(format!(
            "bind `{bind}` mounts read-only volume `{name}` without `ro`"
        )),
        Some(_) => Ok(()),
    }
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
/// naming containers, volumes named in binds (an unknown one is an error; a read-only one
/// bound without `ro` is a warning here, because LinuxKit accepts the file and fails only
/// when building it — `build` must apply [`check_volume_bind`] to the merged binds).
pub(crate) fn cross_check(
    entries: &[EntryFacts<'_>],
    volumes: &[VolumeFacts<'_>],
    file_ids: &[(Id, Pos, String)],
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
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
    let mut names = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some((name, _)) = e.name {
            names.insert(
                name.to_string(),
                100 + u32::try_from(i).unwrap_or(u32::MAX - 100),
            );
        }
    }
    let all_ids = entries.iter().flat_map(|e| e.ids.iter()).chain(file_ids);
    for (id, pos, path) in all_ids {
        if let Err(e) = resolve_id(id, &names) {
            err(errors, pos, format!("`{path}`: {e}"));
        }
    }
    for e in entries {
        for (bind, pos, path) in e.binds {
            let Ok(b) = parse_bind(bind) else { continue };
            let Some(name) = b.volume() else { continue };
            match vols.get(name) {
                None => err(
                    errors,
                    pos,
                    format!("`{path}`: bind `{bind}` names volume `{name}`, which is not in `volumes`"),
                ),
                Some(v) if v.readonly && !b.read_only() => warnings.push(Diagnostic {
                    pos: Some(pos.clone()),
                    message: format!(
                        "`{path}`: bind `{bind}` mounts read-only volume `{name}` without `ro`: `build` will refuse it"
                    ),
                }),
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        assert!(check_capabilities(&["CAP_CHOWN", "sys_admin", "Cap_Net_Raw"]).is_empty());
        assert!(check_capabilities(&["all"]).is_empty());
        assert!(check_capabilities(&["NONE"]).is_empty());
        assert!(check_capabilities::<&str>(&[]).is_empty());
        let bad = check_capabilities(&["all", "CAP_CHOWN"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 0);
        let bad = check_capabilities(&["CAP_CHOWN", "CAP_FLY"]);
        assert_eq!(bad, vec![(1, "unknown capability `CAP_FLY`".to_string())]);
        assert_eq!(normalize_capability("bpf"), Some("CAP_BPF"));
        assert_eq!(CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn binds() {
        let b = parse_bind("/a:/b").unwrap();
        assert_eq!((b.source, b.destination, b.options), ("/a", "/b", None));
        let b = parse_bind("vol:/b:ro,rshared").unwrap();
        assert_eq!(b.volume(), Some("vol"));
        assert!(b.read_only());
        for s in ["/a", "/a:/b:ro:x", ":/b", "/a:", "/a:/b:", "/a:/b:ro,,x"] {
            assert!(parse_bind(s).is_err(), "{s}");
        }
    }

    #[test]
    fn tmpfs() {
        assert_eq!(parse_tmpfs("/run").unwrap(), ("/run", None));
        assert_eq!(
            parse_tmpfs("/run:size=1m,nosuid").unwrap(),
            ("/run", Some(vec!["size=1m", "nosuid"]))
        );
        for s in ["", ":x", "/a:b:c"] {
            assert!(parse_tmpfs(s).is_err(), "{s}");
        }
    }

    #[test]
    fn rlimits() {
        assert_eq!(
            parse_rlimit("nofile,1024,2048").unwrap(),
            Rlimit {
                kind: "RLIMIT_NOFILE",
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(
            parse_rlimit(" RLIMIT_NPROC , unlimited, UNLIMITED")
                .unwrap()
                .soft,
            u64::MAX
        );
        for s in [
            "nofile,1",
            "nofile,1,2,3",
            "nofiles,1,2",
            "nofile,-1,2",
            "nofile,a,2",
            "nofile,3,2",
            "",
        ] {
            assert!(parse_rlimit(s).is_err(), "{s}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("07777"), Ok(0o7777));
        for s in ["", "0o644", "0x1", "888", "-1", "17777", "rw"] {
            assert!(parse_mode(s).is_err(), "{s}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("getty").is_ok());
        for s in ["", "a/b", ".", "..", "a\nb"] {
            assert!(check_name(s).is_err(), "{s:?}");
        }
        assert!(check_volume_name("my_vol-1").is_ok());
        for s in ["", "Vol", "a b", "a/b"] {
            assert!(check_volume_name(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn namespaces_and_paths() {
        for (k, v) in [
            ("net", "host"),
            ("net", "none"),
            ("pid", "new"),
            ("ipc", "/run/netns/x"),
            ("uts", ""),
        ] {
            assert!(check_namespace(k, v).is_ok(), "{k}: {v}");
        }
        assert!(check_namespace("pid", "none").is_err());
        assert!(check_namespace("net", "hots").is_err());
        assert!(check_propagation("rshared").is_ok());
        assert!(check_propagation("sharde").is_err());
        assert!(check_cwd("/x").is_ok() && check_cwd("x").is_err());
        assert!(check_env("A=b").is_ok() && check_env("A=").is_ok());
        assert!(check_env("A").is_err() && check_env("=b").is_err());
        assert!(check_oom_score_adj(-1000).is_ok() && check_oom_score_adj(1001).is_err());
    }

    #[test]
    fn ids() {
        let names: BTreeMap<String, u32> = [("getty".to_string(), 103)].into();
        assert_eq!(resolve_id(&Id::Num(5), &names), Ok(5));
        assert_eq!(resolve_id(&Id::Name("root".into()), &names), Ok(0));
        assert_eq!(resolve_id(&Id::Name("42".into()), &names), Ok(42));
        assert_eq!(resolve_id(&Id::Name("getty".into()), &names), Ok(103));
        assert!(resolve_id(&Id::Name("nobody".into()), &names).is_err());
        assert!(resolve_id(&Id::Num(1 << 32), &names).is_err());
        assert!(check_id(&Id::Name("99999999999".into())).is_err());
        assert!(check_id(&Id::Name(String::new())).is_err());
    }

    #[test]
    fn file_paths() {
        assert_eq!(normalize_file_path("/etc/motd"), Ok("etc/motd".to_string()));
        assert_eq!(normalize_file_path("etc/x"), Ok("etc/x".to_string()));
        for s in ["", "/", "../x", "a/../b", "a/.."] {
            assert!(normalize_file_path(s).is_err(), "{s}");
        }
    }

    #[test]
    fn mounts() {
        let m = |d: &str, t: &str, s: &str| Mount {
            destination: d.into(),
            kind: t.into(),
            source: s.into(),
            ..Mount::default()
        };
        let c = complete_mount(&m("", "proc", "")).unwrap();
        assert_eq!(
            (c.destination.as_str(), c.kind.as_str(), c.source.as_str()),
            ("/proc", "proc", "proc")
        );
        let c = complete_mount(&m("/dev", "", "")).unwrap();
        assert_eq!((c.kind.as_str(), c.source.as_str()), ("tmpfs", "tmpfs"));
        let c = complete_mount(&m("", "", "cgroup")).unwrap();
        assert_eq!(c.destination, "/sys/fs/cgroup");
        assert!(complete_mount(&m("/x", "", "")).is_err());
        assert!(complete_mount(&m("", "bind", "/x")).is_err());
    }

    #[test]
    fn devices() {
        assert!(check_device("all", "b", None, None, None).is_empty());
        assert!(check_device("/dev/console", "c", Some(5), Some(1), Some("0666")).is_empty());
        assert!(check_device("/dev/fifo", "p", None, None, None).is_empty());
        assert_eq!(check_device("all", "x", None, None, None)[0].0, "type");
        assert_eq!(check_device("all", "b", Some(1), None, None)[0].0, "");
        assert!(check_device("all", "b", Some(0), Some(0), None).is_empty());
        assert_eq!(check_device("/dev/x", "c", None, Some(1), None)[0].0, "");
        assert_eq!(
            check_device("dev/x", "c", Some(1), Some(1), None)[0].0,
            "path"
        );
        assert_eq!(
            check_device("/dev/x", "c", Some(1), Some(1), Some("rw"))[0].0,
            "mode"
        );
        assert_eq!(
            check_device("/dev/x", "c", Some(-1), Some(1), None)[0].0,
            "major"
        );
        assert!(check_device_rule("a", "rwm").is_ok());
        assert!(check_device_rule("x", "rwm").is_err() && check_device_rule("c", "rx").is_err());
    }

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
