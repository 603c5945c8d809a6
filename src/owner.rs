//! Who owns what a run leaves while it works — export containers and temporary output
//! files — and whether that run is gone. For containers (SPEC §3): the labels imagesmith puts on every container it
//! creates — the tool, a run id, the host, the process id, the process's start time and the
//! boot id — and the rule that decides whether a labelled container was left behind by a run
//! that is gone (killed with SIGKILL, or the machine rebooted), so that a later run may remove
//! it. A container of another host, or of a process that still runs, is never stale.
//!
//! The process start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot) guards
//! against pid reuse: a new process with the same pid has a different start time. The boot id
//! (`/proc/sys/kernel/random/boot_id`) guards against a reboot, after which start times
//! repeat.

use std::collections::HashMap;

/// Marks a container as imagesmith's (value `1`).
pub const LABEL_TOOL: &str = "org.imagesmith";
/// The run that created it (unique per process and start).
pub const LABEL_RUN: &str = "org.imagesmith.run";
/// The host name of the machine the run was on.
pub const LABEL_HOST: &str = "org.imagesmith.host";
/// The run's process id.
pub const LABEL_PID: &str = "org.imagesmith.pid";
/// The run's process start time, in clock ticks since boot.
pub const LABEL_START: &str = "org.imagesmith.start";
/// The kernel's boot id when the run started.
pub const LABEL_BOOT: &str = "org.imagesmith.boot";

/// The identity of one process, as written into the labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub run: String,
    pub host: String,
    pub pid: u32,
    /// `None` when `/proc` cannot tell (the label is then left out).
    pub start: Option<u64>,
    pub boot: Option<String>,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Owner {
            run: format!("{pid:x}-{nanos:x}"),
            host: hostname(),
            pid,
            start: start_time(pid),
            boot: boot_id(),
        }
    }

    /// The labels of a container created by this owner.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (LABEL_TOOL.to_string(), "1".to_string()),
            (LABEL_RUN.to_string(), self.run.clone()),
            (LABEL_HOST.to_string(), self.host.clone()),
            (LABEL_PID.to_string(), self.pid.to_string()),
        ]);
        if let Some(s) = self.start {
            l.insert(LABEL_START.to_string(), s.to_string());
        }
        if let Some(b) = &self.boot {
            l.insert(LABEL_BOOT.to_string(), b.clone());
        }
        l
    }
}

/// What the machine says about processes; a trait so the rule can be tested.
pub trait Processes {
    /// The start time of process `pid`, or `None` when there is no such process.
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// Whether `pid` exists at all (used when the label has no start time).
    fn exists(&self, pid: u32) -> bool;
}

/// The processes of this machine, through `/proc`.
pub struct Proc;

impl Processes for Proc {
    fn start_time(&self, pid: u32) -> Option<u64> {
        start_time(pid)
    }
    fn exists(&self, pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}

/// Why a container is (or is not) considered left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its run is gone: remove it. The string says why, for the log.
    Stale(String),
    /// Its run may still be alive, or it is not ours to judge.
    Keep,
}

/// Decides whether a container with `labels` was left by a run that is gone, seen from
/// `me` (this host, this boot) with `procs`. Containers without imagesmith's labels, of
/// another host, or whose pid label does not parse, are kept.
pub fn judge(labels: &HashMap<String, String>, me: &Owner, procs: &dyn Processes) -> Verdict {
    if labels.get(LABEL_TOOL).is_none() {
        return Verdict::Keep;
    }
    if labels.get(LABEL_HOST) != Some(&me.host) || me.host.is_empty() {
        return Verdict::Keep;
    }
    let Some(pid) = labels.get(LABEL_PID).and_then(|p| p.parse::<u32>().ok()) else {
        return Verdict::Keep;
    };
    if let (Some(theirs), Some(ours)) = (labels.get(LABEL_BOOT), &me.boot)
        && theirs != ours
    {
        return Verdict::Stale(format!("process {pid} ran before the last reboot"));
    }
    let recorded = labels.get(LABEL_START).and_then(|s| s.parse::<u64>().ok());
    match recorded {
        Some(start) => match procs.start_time(pid) {
            None => Verdict::Stale(format!("process {pid} is gone")),
            Some(now) if now != start => Verdict::Stale(format!(
                "process {pid} is gone (the pid now belongs to another process)"
            )),
            Some(_) => Verdict::Keep,
        },
        None if procs.exists(pid) => Verdict::Keep,
        None => Verdict::Stale(format!("process {pid} is gone")),
    }
}

/// This host's name, as labels record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The kernel's boot id.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parses `starttime` out of a `/proc/<pid>/stat` line. The second field (`comm`) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After `comm`: field 3 (state) is the first; starttime is field 22.
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeProcs(HashMap<u32, u64>);

    impl Processes for FakeProcs {
        fn start_time(&self, pid: u32) -> Option<u64> {
            self.0.get(&pid).copied()
        }
        fn exists(&self, pid: u32) -> bool {
            self.0.contains_key(&pid)
        }
    }

    fn me() -> Owner {
        Owner {
            run: "r".into(),
            host: "h1".into(),
            pid: 10,
            start: Some(500),
            boot: Some("b1".into()),
        }
    }

    fn labels(
        host: &str,
        pid: &str,
        start: Option<&str>,
        boot: Option<&str>,
    ) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (LABEL_TOOL.to_string(), "1".to_string()),
            (LABEL_HOST.to_string(), host.to_string()),
            (LABEL_PID.to_string(), pid.to_string()),
        ]);
        if let Some(s) = start {
            l.insert(LABEL_START.into(), s.into());
        }
        if let Some(b) = boot {
            l.insert(LABEL_BOOT.into(), b.into());
        }
        l
    }

    #[test]
    fn live_runs_and_other_hosts_are_kept() {
        let procs = FakeProcs(HashMap::from([(10, 500), (20, 700)]));
        let keep = [
            labels("h1", "20", Some("700"), Some("b1")),
            labels("h1", "10", Some("500"), Some("b1")),
            labels("h1", "20", None, None),
            labels("h2", "99", Some("1"), Some("b1")),
            labels("h1", "not-a-pid", Some("1"), Some("b1")),
            HashMap::from([(LABEL_HOST.to_string(), "h1".to_string())]),
        ];
        for l in keep {
            assert_eq!(judge(&l, &me(), &procs), Verdict::Keep, "{l:?}");
        }
    }

    #[test]
    fn dead_reused_and_rebooted_runs_are_stale() {
        let procs = FakeProcs(HashMap::from([(10, 500), (20, 700)]));
        let stale = [
            (labels("h1", "99", Some("700"), Some("b1")), "gone"),
            (
                labels("h1", "20", Some("699"), Some("b1")),
                "another process",
            ),
            (labels("h1", "20", Some("700"), Some("b0")), "reboot"),
            (labels("h1", "99", None, None), "gone"),
        ];
        for (l, why) in stale {
            match judge(&l, &me(), &procs) {
                Verdict::Stale(s) => assert!(s.contains(why), "{s}"),
                Verdict::Keep => panic!("kept {l:?}"),
            }
        }
    }

    #[test]
    fn start_time_of_odd_comm_names() {
        let mut fields: Vec<String> = (3..=30).map(|i| i.to_string()).collect();
        fields[0] = "S".into();
        let rest = fields.join(" ");
        assert_eq!(parse_start_time(&format!("42 (a) b)) {rest}")), Some(22));
        assert_eq!(parse_start_time(&format!("42 (plain) {rest}")), Some(22));
        assert_eq!(parse_start_time("42 (short) S 1 2"), None);
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time(""), None);
    }

    #[test]
    fn this_process_has_a_start_time_and_labels() {
        let me = Owner::current();
        assert_eq!(me.pid, std::process::id());
        let start = me.start.expect("start time of this process");
        assert_eq!(start_time(me.pid), Some(start));
        let l = me.labels();
        assert_eq!(l.get(LABEL_PID), Some(&me.pid.to_string()));
        assert_eq!(judge(&l, &me, &Proc), Verdict::Keep);
    }
}
