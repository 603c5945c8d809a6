//! The value rules of SPEC §2, one pure function per rule over a single value: binds, tmpfs,
//! rlimits, modes, names, namespaces, ids, mounts, devices, hugepage sizes, `files` paths.
//! The capability rules (the table of 41, name normalisation, `all`/`none`) are in
//! [`crate::oci::caps`].
//!
//! This is the only implementation of these rules. Each returns a message (or, for ids, an
//! [`IdError`]) that names the value but not where it is: the schema pass
//! (`schema`) attaches the line of the YAML value, `config.json` generation
//! ([`crate::oci`]) wraps it in an [`OciError`](crate::oci::OciError) for values that come
//! from image labels, and `build` applies the mode and id rules to `files` entries.

use std::collections::BTreeMap;
use std::fmt;

use crate::oci::types::Mount;
use crate::spec::model::Id;

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

/// A bind mount `source:destination[:options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// As written: an absolute host path, or a volume name.
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
    pub fn is_readonly(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.contains(&"ro"))
    }
}

/// A comma-separated list of mount options; an empty one is an error.
fn options(s: &str) -> Result<Vec<&str>, String> {
    let opts: Vec<&str> = s.split(',').collect();
    if opts.iter().any(|o| o.is_empty()) {
        return Err(format!("empty mount option in `{s}`"));
    }
    Ok(opts)
}

/// Parses a `binds` entry: two or three parts, a non-empty destination, a source that is an
/// absolute path or a volume name (`[a-z0-9_-]+`), no empty option.
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
    if !source.starts_with('/') && !is_volume_name(source) {
        return Err(format!(
            "bind `{s}`: the source is neither an absolute path nor a volume name ([a-z0-9_-]+)"
        ));
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
/// numbers or `unlimited` (2^64-1), the soft limit not above the hard one.
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
            .map_err(|_| format!("rlimit `{s}`: `{v}` is larger than {}", u64::MAX))
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

/// Parses the `mode` of a device: an octal mode of permission bits only (at most `0777`,
/// the OCI schema's limit for `fileMode`).
pub fn parse_device_mode(s: &str) -> Result<u32, String> {
    match parse_mode(s)? {
        m if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "mode `{s}` is larger than 0777 (a device mode holds permission bits only)"
        )),
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

fn is_volume_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A volume name: `[a-z0-9_-]+`.
pub fn check_volume_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the volume name is empty".to_string());
    }
    if !is_volume_name(s) {
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

/// `rootfsPropagation`: the values runc knows. (`config.json` generation accepts only the
/// four of the OCI schema, see [`crate::oci`].)
pub fn check_propagation(s: &str) -> Result<(), String> {
    // The OCI schema's values: a `config.json` with runc's `rshared`-style forms would not
    // validate, so they are refused here rather than when the bundle is generated.
    const KNOWN: [&str; 5] = ["", "shared", "slave", "private", "unbindable"];
    if KNOWN.contains(&s) {
        return Ok(());
    }
    Err(format!(
        "`{s}` is not one of shared, slave, private, unbindable"
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

/// What is wrong with a `uid` / `gid` / `additionalGids` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// A string id that is empty (LinuxKit reads it as `root`; SPEC §2.1 does not allow it).
    Empty,
    /// A number, or a numeric string, above 2^32-1.
    TooLarge(Id),
    /// A name that is not `root` nor the name of a container of the file.
    Unknown(String),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("the id is an empty string"),
            IdError::TooLarge(Id::Num(n)) => write!(f, "id {n} is larger than {}", u32::MAX),
            IdError::TooLarge(Id::Name(s)) => write!(f, "id `{s}` is larger than {}", u32::MAX),
            IdError::Unknown(s) => write!(
                f,
                "`{s}` is not a number, `root`, or the name of a container of this file"
            ),
        }
    }
}

impl std::error::Error for IdError {}

/// The syntax of a `uid` / `gid` / `additionalGids` value: a number or numeric string
/// (ASCII digits only) in 0 … 2^32-1, or a non-empty name.
pub fn check_id(id: &Id) -> Result<(), IdError> {
    match id {
        Id::Num(n) if u32::try_from(*n).is_err() => Err(IdError::TooLarge(id.clone())),
        Id::Name(s) if s.is_empty() => Err(IdError::Empty),
        Id::Name(s) if is_numeric(s) && s.parse::<u32>().is_err() => {
            Err(IdError::TooLarge(id.clone()))
        }
        _ => Ok(()),
    }
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The number a `uid` / `gid` stands for: a number, a numeric string, `root` (0), or the name
/// of a container of the file (`names`, see [`crate::spec::model::id_map`]).
pub fn resolve_id(id: &Id, names: &BTreeMap<String, u32>) -> Result<u32, IdError> {
    check_id(id)?;
    match id {
        Id::Num(n) => u32::try_from(*n).map_err(|_| IdError::TooLarge(id.clone())),
        Id::Name(s) if s == "root" => Ok(0),
        Id::Name(s) if is_numeric(s) => s.parse().map_err(|_| IdError::TooLarge(id.clone())),
        Id::Name(s) => names
            .get(s)
            .copied()
            .ok_or_else(|| IdError::Unknown(s.clone())),
    }
}

/// The path of a `files` entry: with the leading `/` dropped (as
/// [`FileEntry::output_path`](crate::spec::model::FileEntry::output_path) does), not empty,
/// no `..` component, no NUL.
pub fn check_file_path(p: &str) -> Result<(), String> {
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
    Ok(())
}

/// A `resources.hugepageLimits[].pageSize`, brought to the OCI form: `<n>KB`, `<n>MB` or
/// `<n>GB` as written, or a number of bytes (LinuxKit's old spelling) that is a whole number
/// of kilobytes (`2097152` → `2MB`). No leading zero.
pub fn hugepage_size(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "page size `{s}` is neither like `2MB` (KB, MB, GB) nor a whole number of kilobytes in bytes"
        )
    };
    let digits_end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() || num.starts_with('0') {
        return Err(bad());
    }
    match unit {
        "KB" | "MB" | "GB" => Ok(s.to_string()),
        "" => {
            let bytes: u64 = num.parse().map_err(|_| bad())?;
            [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10)]
                .into_iter()
                .find(|(_, size)| bytes.is_multiple_of(*size))
                .map(|(unit, size)| format!("{}{unit}", bytes / size))
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
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

/// Checks a `devices` entry; returns the key at fault (or "" for the entry) and the problem,
/// every problem in the order of the keys.
///
/// `path: all` allows every device of type `a`, `b` or `c` (`major`/`minor` absent or 0, as
/// LinuxKit writes them); any other path is absolute, of type `b`, `c`, `u` or `p`, with
/// `major` and `minor` (but for `p`) and a `mode` ([`parse_device_mode`], required as in
/// LinuxKit). `major`/`minor` are never negative.
pub fn check_device(
    path: &str,
    kind: &str,
    major: Option<i64>,
    minor: Option<i64>,
    mode: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut bad = Vec::new();
    if path == "all" {
        if !matches!(kind, "a" | "b" | "c") {
            bad.push((
                "type",
                format!("device type `{kind}` is not `a`, `b` or `c` (for `path: all`)"),
            ));
        }
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
        if mode.is_none() {
            bad.push((
                "",
                "a device needs `mode` (an octal string such as \"0666\")".to_string(),
            ));
        }
    }
    for (key, v) in [("major", major), ("minor", minor)] {
        if v.is_some_and(|v| v < 0) {
            bad.push((key, format!("`{key}` may not be negative")));
        }
    }
    if let Some(m) = mode
        && let Err(e) = parse_device_mode(m)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let b = parse_bind("/a:/b").unwrap();
        assert_eq!((b.source, b.destination, b.options), ("/a", "/b", None));
        let b = parse_bind("vol:/b:ro,rshared").unwrap();
        assert_eq!(b.volume(), Some("vol"));
        assert!(b.is_readonly());
        for s in [
            "/a",
            "/a:/b:ro:x",
            ":/b",
            "/a:",
            "/a:/b:",
            "/a:/b:ro,,x",
            "Vol:/b",
            "../x:/b",
        ] {
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
        for s in ["", ":x", "/a:b:c", "/a:", "/a:x,"] {
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
        for s in ["", "0o644", "0x1", "888", "-1", "17777", "rw", " 644"] {
            assert!(parse_mode(s).is_err(), "{s}");
        }
        assert_eq!(parse_device_mode("0666"), Ok(0o666));
        assert_eq!(parse_device_mode("0"), Ok(0));
        for s in ["01000", "01777", "0888", ""] {
            assert!(parse_device_mode(s).is_err(), "{s}");
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
        assert!(
            check_propagation("rshared").is_err(),
            "not valid in config.json (OCI schema)"
        );
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
        assert_eq!(
            resolve_id(&Id::Name("+5".into()), &names),
            Err(IdError::Unknown("+5".into()))
        );
        assert_eq!(
            IdError::TooLarge(Id::Num(1 << 32)).to_string(),
            "id 4294967296 is larger than 4294967295"
        );
    }

    #[test]
    fn file_paths() {
        assert_eq!(check_file_path("/etc/motd"), Ok(()));
        assert_eq!(check_file_path("etc/x"), Ok(()));
        for s in ["", "/", "../x", "a/../b", "a/.."] {
            assert!(check_file_path(s).is_err(), "{s}");
        }
    }

    #[test]
    fn hugepage_sizes() {
        for (s, oci) in [
            ("2MB", "2MB"),
            ("1GB", "1GB"),
            ("2097152", "2MB"),
            ("1073741824", "1GB"),
            ("65536", "64KB"),
        ] {
            assert_eq!(hugepage_size(s).as_deref(), Ok(oci), "{s}");
        }
        for s in [
            "",
            "2mb",
            "0MB",
            "02MB",
            "3TB",
            "1000",
            "MB",
            "99999999999999999999",
        ] {
            assert!(hugepage_size(s).is_err(), "{s}");
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
        assert!(check_device("/dev/fifo", "p", None, None, Some("0600")).is_empty());
        assert_eq!(check_device("/dev/fifo", "p", None, None, None)[0].0, "");
        assert_eq!(check_device("all", "x", None, None, None)[0].0, "type");
        assert_eq!(check_device("all", "", None, None, None)[0].0, "type");
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
            check_device("/dev/x", "c", Some(1), Some(1), Some("01777"))[0].0,
            "mode"
        );
        assert_eq!(
            check_device("/dev/x", "c", Some(-1), Some(1), Some("0666"))[0].0,
            "major"
        );
        assert!(check_device_rule("a", "rwm").is_ok());
        assert!(check_device_rule("x", "rwm").is_err() && check_device_rule("c", "rx").is_err());
    }
}
