//! Linux capabilities: the table of the 41 known ones in kernel order, name normalisation
//! (`cap_x`, `x`, `CAP_X` → `CAP_X`), and the `all`/`none` keywords of SPEC §2.1 — the one
//! implementation of the capability rules.
//!
//! Used by the YAML parser's validation ([`check`]: every bad item with its index), by the
//! label merge (`.add` forms compare normalised names) and by `config.json` generation
//! ([`expand`]). Names are taken as written, without trimming (as LinuxKit does).

use std::collections::BTreeSet;

/// Every capability imagesmith knows, in kernel order (`CAP_CHOWN` = 0 …
/// `CAP_CHECKPOINT_RESTORE` = 40). A lone `all` expands to exactly this list.
pub const ALL: [&str; 41] = [
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

/// What is wrong with a capability list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("unknown capability `{name}`{hint}", name = .0, hint = did_you_mean(.0))]
    Unknown(String),
    #[error("`{0}` must be the only item of the list, not mixed with capability names")]
    KeywordMixed(String),
}

/// `; did you mean `CAP_…`?` when `name` is close to a known capability, else nothing.
fn did_you_mean(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    match crate::text::closest(&full, &ALL) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

/// The canonical spelling of a capability name written in any case, with or without the
/// `CAP_` prefix; `None` when it is not a known capability.
pub fn normalize(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    ALL.iter().copied().find(|c| *c == full)
}

/// The key two names are compared by: the canonical name when known, else the upper-cased
/// name with a `CAP_` prefix (so unknown names still compare case-insensitively).
fn key(name: &str) -> String {
    match normalize(name) {
        Some(c) => c.to_string(),
        None => {
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("CAP_") || is_keyword(&upper) {
                upper
            } else {
                format!("CAP_{upper}")
            }
        }
    }
}

fn is_keyword(upper: &str) -> bool {
    upper == "ALL" || upper == "NONE"
}

/// `all` or `none` (lower-cased) when the list is that keyword alone.
fn lone_keyword<S: AsRef<str>>(list: &[S]) -> Option<String> {
    match list {
        [one] => {
            let k = one.as_ref().to_ascii_lowercase();
            (k == "all" || k == "none").then_some(k)
        }
        _ => None,
    }
}

/// One name of a list that is not a lone keyword: a known capability, never `all`/`none`.
fn item(name: &str) -> Result<&'static str, CapError> {
    if is_keyword(&name.to_ascii_uppercase()) {
        Err(CapError::KeywordMixed(name.to_string()))
    } else {
        normalize(name).ok_or_else(|| CapError::Unknown(name.to_string()))
    }
}

/// Checks a capability list as written (`capabilities`, `capabilities.add`, `ambient`):
/// known names, or a lone `all` / `none`. Returns the index and the problem of every bad
/// item.
pub fn check<S: AsRef<str>>(list: &[S]) -> Vec<(usize, CapError)> {
    if lone_keyword(list).is_some() {
        return Vec::new();
    }
    list.iter()
        .enumerate()
        .filter_map(|(i, name)| item(name.as_ref()).err().map(|e| (i, e)))
        .collect()
}

/// Expands a capability list as written into canonical names: a lone `all` is [`ALL`], a
/// lone `none` is empty, anything else is normalised name by name (order and repeats kept);
/// the error is the first bad item of [`check`].
pub fn expand(list: &[String]) -> Result<Vec<&'static str>, CapError> {
    match lone_keyword(list).as_deref() {
        Some("all") => Ok(ALL.to_vec()),
        Some(_) => Ok(Vec::new()),
        None => list.iter().map(|name| item(name)).collect(),
    }
}

/// `base` followed by the names of `add` it does not have yet (compared after
/// normalisation; a repeat inside either list is dropped too). A lone `all` on either side
/// makes the result that `all`; a lone `none` counts as empty. Names are kept as written.
pub fn merge_add(base: &[String], add: &[String]) -> Vec<String> {
    if lone_keyword(add).as_deref() == Some("all") {
        return add.to_vec();
    }
    let add: &[String] = match lone_keyword(add).as_deref() {
        Some(_) => &[],
        None => add,
    };
    let base: &[String] = match lone_keyword(base).as_deref() {
        Some("all") => return base.to_vec(),
        Some(_) => &[],
        None => base,
    };
    let mut seen = BTreeSet::new();
    base.iter()
        .chain(add)
        .filter(|name| seen.insert(key(name)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalize_accepts_any_case_and_prefix() {
        assert_eq!(normalize("cap_chown"), Some("CAP_CHOWN"));
        assert_eq!(normalize("sys_admin"), Some("CAP_SYS_ADMIN"));
        assert_eq!(normalize("CAP_BPF"), Some("CAP_BPF"));
        assert_eq!(
            normalize("Checkpoint_Restore"),
            Some("CAP_CHECKPOINT_RESTORE")
        );
        assert_eq!(normalize("CAP_FLY"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("all"), None);
    }

    #[test]
    fn table_is_complete_and_unique() {
        let set: BTreeSet<_> = ALL.iter().collect();
        assert_eq!(set.len(), 41);
        assert_eq!(ALL[0], "CAP_CHOWN");
        assert_eq!(ALL[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn expand_keywords_and_names() {
        assert_eq!(expand(&strings(&["ALL"])).as_deref(), Ok(&ALL[..]));
        assert_eq!(expand(&strings(&["none"])), Ok(vec![]));
        assert_eq!(
            expand(&strings(&["net_admin", "CAP_CHOWN"])),
            Ok(vec!["CAP_NET_ADMIN", "CAP_CHOWN"])
        );
        assert_eq!(
            expand(&strings(&["all", "CAP_CHOWN"])),
            Err(CapError::KeywordMixed("all".into()))
        );
        assert_eq!(
            expand(&strings(&["CAP_CHOWN", "None"])),
            Err(CapError::KeywordMixed("None".into()))
        );
        assert_eq!(
            expand(&strings(&["CAP_NOPE"])),
            Err(CapError::Unknown("CAP_NOPE".into()))
        );
    }

    #[test]
    fn check_reports_every_bad_item() {
        assert!(check(&["CAP_CHOWN", "sys_admin", "Cap_Net_Raw"]).is_empty());
        assert!(check(&["all"]).is_empty());
        assert!(check(&["NONE"]).is_empty());
        assert!(check::<&str>(&[]).is_empty());
        let bad = check(&["all", "CAP_CHOWN"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 0);
        let bad = check(&["CAP_CHOWN", "CAP_FLY"]);
        assert_eq!(bad, vec![(1, CapError::Unknown("CAP_FLY".into()))]);
        assert_eq!(
            CapError::Unknown("CAP_NET_ADMN".into()).to_string(),
            "unknown capability `CAP_NET_ADMN`; did you mean `CAP_NET_ADMIN`?"
        );
        assert_eq!(
            CapError::Unknown("CAP_FLY".into()).to_string(),
            "unknown capability `CAP_FLY`"
        );
        assert_eq!(
            bad[0].1.to_string(),
            "unknown capability `CAP_FLY`".to_string()
        );
        assert_eq!(
            check(&[" CAP_CHOWN", "none", "x"]),
            vec![
                (0, CapError::Unknown(" CAP_CHOWN".into())),
                (1, CapError::KeywordMixed("none".into())),
                (2, CapError::Unknown("x".into()))
            ]
        );
        assert_eq!(normalize("bpf"), Some("CAP_BPF"));
        assert_eq!(ALL[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn merge_add_skips_normalised_duplicates() {
        assert_eq!(
            merge_add(
                &strings(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]),
                &strings(&["cap_sys_time", "net_admin", "CAP_SYS_TIME"])
            ),
            strings(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "cap_sys_time"])
        );
        assert_eq!(
            merge_add(&strings(&["all"]), &strings(&["CAP_CHOWN"])),
            strings(&["all"])
        );
        assert_eq!(
            merge_add(&strings(&["none"]), &strings(&["CAP_CHOWN"])),
            strings(&["CAP_CHOWN"])
        );
        assert_eq!(merge_add(&[], &strings(&["x", "X"])), strings(&["x"]));
        assert_eq!(
            merge_add(&strings(&["CAP_CHOWN"]), &strings(&["All"])),
            strings(&["All"])
        );
        assert_eq!(
            merge_add(&strings(&["CAP_CHOWN"]), &strings(&["none"])),
            strings(&["CAP_CHOWN"])
        );
        assert_eq!(
            merge_add(&strings(&["none"]), &strings(&["none"])),
            strings(&[])
        );
    }
}
