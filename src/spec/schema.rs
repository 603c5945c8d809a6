//! The structure of a LinuxKit YAML file (what LinuxKit's JSON schema says, with the OCI
//! spelling of `resources` and the additions of SPEC §2): a pass over the position-keeping
//! tree of [`super::yaml`] that reports unknown keys, duplicate keys and wrong types, converts
//! what is well-formed into the typed model, and applies the per-value rules of
//! [`super::rules`] and [`crate::oci::caps`] on the way, every problem with the line and
//! column of its value.
//!
//! Nothing stops at the first problem: a field that is wrong is reported and left out, and
//! the pass goes on, so that every problem of a file is found in one run.
//!
//! Keys accepted besides LinuxKit's schema: the OCI keys of `resources` that LinuxKit's schema
//! lacks (`rdma`, `unified`, `memory.useHierarchy`, `memory.checkBeforeUpdate`, `cpu.burst`,
//! `cpu.idle`), `blockIO` next to the schema's `blockio`, and `uidMappings`/`gidMappings`
//! next to the schema's `uidmappings`/`gidmappings` on mounts (each pair is one field: writing
//! both is a duplicate key). `resources.hugepageLimits[].pageSize` may be a string (OCI) or an
//! integer (LinuxKit's schema), is checked by [`rules::hugepage_size`] and is kept as written
//! (as a string).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::oci::caps;
use crate::oci::types::{
    BlockIo, Cpu, DeviceCgroup, HugepageLimit, IdMapping, InterfacePriority, Memory, Mount,
    Network, Pids, Rdma, Resources, ThrottleDevice, WeightDevice,
};
use crate::spec::Diagnostic;
use crate::spec::model::{
    BindNs, Device, FileEntry, Id, ImageConfig, ImageRef, Interface, Kernel, MetadataFormat, Pos,
    Runtime, Trust, Volume,
};
use crate::spec::reference::Reference;
use crate::spec::rules;
use crate::spec::yaml::{Node, ScalarKind, Value};

/// Where a value is, for messages: `services[2].capabilities[0]`.
#[derive(Clone, Copy)]
pub(crate) enum P<'a> {
    Root,
    Key(&'a P<'a>, &'a str),
    Index(&'a P<'a>, usize),
}

impl<'a> P<'a> {
    fn key(&'a self, k: &'a str) -> P<'a> {
        P::Key(self, k)
    }
    fn at(&'a self, i: usize) -> P<'a> {
        P::Index(self, i)
    }
}

impl fmt::Display for P<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            P::Root => write!(f, "(top level)"),
            P::Key(P::Root, k) => write!(f, "{k}"),
            P::Key(p, k) => write!(f, "{p}.{k}"),
            P::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// Which list a container entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Onboot,
    Onshutdown,
    Services,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "services",
        }
    }
}

/// A container entry as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct DraftEntry {
    /// `services[2]`, for messages.
    pub path: String,
    pub pos: Pos,
    pub name: Option<(String, Pos)>,
    pub image: Option<ImageRef>,
    pub config: ImageConfig,
    /// `uid`, `gid` and `additionalGids` values (with position and path), to resolve
    /// against the container names.
    pub ids: Vec<(Id, Pos, String)>,
    /// `binds` and `binds.add` entries (with position and path), for the volume checks.
    pub binds: Vec<(String, Pos, String)>,
}

/// A `files` entry as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct DraftFile {
    pub entry: Option<FileEntry>,
    pub ids: Vec<(Id, Pos, String)>,
}

/// A volume as far as it could be read.
#[derive(Debug, Clone)]
pub(crate) struct DraftVolume {
    /// `volumes[1]`, for messages.
    pub path: String,
    pub name: Option<(String, Pos)>,
    pub volume: Option<Volume>,
}

/// One file, read.
#[derive(Debug, Clone, Default)]
pub(crate) struct DraftDoc {
    pub kernel: Option<Kernel>,
    pub init: Vec<ImageRef>,
    pub onboot: Vec<DraftEntry>,
    pub onshutdown: Vec<DraftEntry>,
    pub services: Vec<DraftEntry>,
    pub files: Vec<DraftFile>,
    pub volumes: Vec<DraftVolume>,
    pub trust: Option<Trust>,
}

/// The conversion context: the file and the problems found so far.
pub(crate) struct Cx {
    file: Arc<str>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// The keys of a map that passed the structural check, by canonical name.
struct Fields<'n> {
    node: &'n Node,
    entries: Vec<(&'static str, &'n Node, &'n Node)>,
    /// No unknown or duplicate key: checks that span several keys ("missing `x`") are made
    /// only then, so that a misspelt key is not also reported as a missing one.
    clean: bool,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }
    fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }
}

const TOP_KEYS: &[&str] = &[
    "kernel",
    "init",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "volumes",
    "trust",
];
const KERNEL_KEYS: &[&str] = &["image", "cmdline", "binary", "tar", "ucode"];
const ENTRY_KEYS: &[&str] = &[
    "name",
    "image",
    "capabilities",
    "capabilities.add",
    "ambient",
    "mounts",
    "binds",
    "binds.add",
    "devices",
    "tmpfs",
    "command",
    "env",
    "cwd",
    "net",
    "pid",
    "ipc",
    "uts",
    "userns",
    "hostname",
    "readonly",
    "maskedPaths",
    "readonlyPaths",
    "uid",
    "gid",
    "additionalGids",
    "noNewPrivileges",
    "oomScoreAdj",
    "rootfsPropagation",
    "cgroupsPath",
    "resources",
    "sysctl",
    "rlimits",
    "uidMappings",
    "gidMappings",
    "annotations",
    "runtime",
];
const FILE_KEYS: &[&str] = &[
    "path",
    "directory",
    "symlink",
    "contents",
    "source",
    "metadata",
    "optional",
    "mode",
    "uid",
    "gid",
];
const VOLUME_KEYS: &[&str] = &["name", "image", "readonly", "format", "platforms"];
const TRUST_KEYS: &[&str] = &["image", "org"];
const MOUNT_KEYS: &[&str] = &[
    "destination",
    "type",
    "source",
    "options",
    "uidMappings",
    "gidMappings",
];
const MOUNT_ALIASES: &[(&str, &str)] = &[
    ("uidmappings", "uidMappings"),
    ("gidmappings", "gidMappings"),
];
const DEVICE_KEYS: &[&str] = &["path", "type", "major", "minor", "mode"];
const IDMAP_KEYS: &[&str] = &["containerID", "hostID", "size"];
const RUNTIME_KEYS: &[&str] = &[
    "cgroups",
    "mounts",
    "mkdir",
    "interfaces",
    "bindNS",
    "namespace",
];
const INTERFACE_KEYS: &[&str] = &["name", "add", "peer", "createInRoot"];
const BINDNS_KEYS: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];
const RESOURCES_KEYS: &[&str] = &[
    "devices",
    "memory",
    "cpu",
    "pids",
    "blockIO",
    "hugepageLimits",
    "network",
    "rdma",
    "unified",
];
const RESOURCES_ALIASES: &[(&str, &str)] = &[("blockio", "blockIO")];

impl Cx {
    pub fn new(file: Arc<str>) -> Cx {
        Cx {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn pos(&self, n: &Node) -> Pos {
        Pos {
            file: self.file.clone(),
            line: n.line,
            column: n.col,
        }
    }

    fn error(&mut self, n: &Node, p: &P<'_>, msg: impl fmt::Display) {
        let d = self.diagnostic(n, p, msg);
        self.errors.push(d);
    }

    fn warn(&mut self, n: &Node, p: &P<'_>, msg: impl fmt::Display) {
        let d = self.diagnostic(n, p, msg);
        self.warnings.push(d);
    }

    fn diagnostic(&self, n: &Node, p: &P<'_>, msg: impl fmt::Display) -> Diagnostic {
        let message = match p {
            P::Root => msg.to_string(),
            _ => format!("`{p}`: {msg}"),
        };
        Diagnostic {
            pos: Some(self.pos(n)),
            message,
        }
    }

    fn type_error(&mut self, n: &Node, p: &P<'_>, expected: &str) {
        let hint = match &n.value {
            Value::Scalar(s) if expected.contains("string") && s.kind != ScalarKind::Null => {
                "; quote it"
            }
            _ => "",
        };
        let found = n.describe();
        self.error(
            n,
            p,
            format_args!("expected {expected}, found {found}{hint}"),
        );
    }

    /// Checks that `n` is a map with only `keys` (and `aliases` of them), each once.
    fn fields<'n>(
        &mut self,
        n: &'n Node,
        p: &P<'_>,
        keys: &[&'static str],
        aliases: &[(&str, &'static str)],
    ) -> Option<Fields<'n>> {
        let Value::Map(map) = &n.value else {
            self.type_error(n, p, "a map");
            return None;
        };
        let mut entries: Vec<(&'static str, &'n Node, &'n Node)> = Vec::with_capacity(map.len());
        let mut clean = true;
        for (k, v) in map {
            let Some(text) = k.scalar().map(|s| s.text.as_str()) else {
                self.error(k, p, "a key must be a plain string, not a list or a map");
                clean = false;
                continue;
            };
            let canonical = keys
                .iter()
                .copied()
                .find(|c| *c == text)
                .or_else(|| aliases.iter().find(|(a, _)| *a == text).map(|(_, c)| *c));
            let Some(canonical) = canonical else {
                let msg = unknown_key(text, keys);
                self.error(k, p, msg);
                clean = false;
                continue;
            };
            if let Some((_, first, _)) = entries.iter().find(|(c, _, _)| *c == canonical) {
                let (line, first_text) = (
                    first.line,
                    first.scalar().map(|s| s.text.clone()).unwrap_or_default(),
                );
                let also = if first_text == text {
                    String::new()
                } else {
                    format!(" (as `{first_text}`)")
                };
                self.error(
                    k,
                    p,
                    format_args!("duplicate key `{text}`: already set{also} on line {line}"),
                );
                continue;
            }
            entries.push((canonical, k, v));
        }
        Some(Fields {
            node: n,
            entries,
            clean,
        })
    }

    fn string(&mut self, n: &Node, p: &P<'_>) -> Option<String> {
        match n.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.type_error(n, p, "a string");
                None
            }
        }
    }

    fn bool(&mut self, n: &Node, p: &P<'_>) -> Option<bool> {
        match n.scalar().map(|s| s.kind) {
            Some(ScalarKind::Bool(b)) => Some(b),
            _ => {
                self.type_error(n, p, "`true` or `false`");
                None
            }
        }
    }

    /// An integer in `min..=max` (an integral float counts, as in JSON schema).
    fn int(&mut self, n: &Node, p: &P<'_>, min: i128, max: i128) -> Option<i128> {
        let v = match n.scalar().map(|s| s.kind) {
            Some(ScalarKind::Int(i)) => i,
            Some(ScalarKind::Float(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19 => {
                f as i128
            }
            _ => {
                self.type_error(n, p, "an integer");
                return None;
            }
        };
        if v < min || v > max {
            self.error(n, p, format_args!("{v} is out of range ({min} … {max})"));
            return None;
        }
        Some(v)
    }

    fn i64(&mut self, n: &Node, p: &P<'_>) -> Option<i64> {
        self.int(n, p, i64::MIN.into(), i64::MAX.into())
            .and_then(|v| i64::try_from(v).ok())
    }
    fn u64(&mut self, n: &Node, p: &P<'_>) -> Option<u64> {
        self.int(n, p, 0, u64::MAX.into())
            .and_then(|v| u64::try_from(v).ok())
    }
    fn u32(&mut self, n: &Node, p: &P<'_>) -> Option<u32> {
        self.int(n, p, 0, u32::MAX.into())
            .and_then(|v| u32::try_from(v).ok())
    }
    fn u16(&mut self, n: &Node, p: &P<'_>) -> Option<u16> {
        self.int(n, p, 0, u16::MAX.into())
            .and_then(|v| u16::try_from(v).ok())
    }

    fn list<'n>(&mut self, n: &'n Node, p: &P<'_>) -> Option<&'n [Node]> {
        match &n.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.type_error(n, p, "a list");
                None
            }
        }
    }

    /// The items of the list under `key` (if present), each converted by `conv` at its own
    /// path; items `conv` rejects are left out (their problems are reported).
    fn each<T>(
        &mut self,
        f: &Fields<'_>,
        p: &P<'_>,
        key: &'static str,
        mut conv: impl FnMut(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Vec<T> {
        let Some(n) = f.get(key) else {
            return Vec::new();
        };
        let lp = p.key(key);
        let Some(items) = self.list(n, &lp) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| conv(self, item, &lp.at(i)))
            .collect()
    }

    /// A list, each item converted by `f`; `None` if any item (or the list) is wrong.
    fn list_of<T>(
        &mut self,
        n: &Node,
        p: &P<'_>,
        mut f: impl FnMut(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.list(n, p)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match f(self, item, &p.at(i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A list of strings, each checked by `rule`.
    fn strings_with(
        &mut self,
        n: &Node,
        p: &P<'_>,
        rule: fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        self.list_of(n, p, |cx, item, ip| checked_string(cx, item, ip, rule))
    }

    fn strings(&mut self, n: &Node, p: &P<'_>) -> Option<Vec<String>> {
        self.strings_with(n, p, |_| Ok(()))
    }

    /// A map of strings to strings (`sysctl`, `annotations`, `unified`).
    fn string_map(&mut self, n: &Node, p: &P<'_>) -> Option<BTreeMap<String, String>> {
        self.map_of(n, p, |cx, v, vp| cx.string(v, vp))
    }

    fn map_of<T>(
        &mut self,
        n: &Node,
        p: &P<'_>,
        mut f: impl FnMut(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Option<BTreeMap<String, T>> {
        let Value::Map(map) = &n.value else {
            self.type_error(n, p, "a map");
            return None;
        };
        let mut out = BTreeMap::new();
        let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                self.type_error(k, p, "a string key");
                ok = false;
                continue;
            };
            if let Some(line) = lines.get(key) {
                self.error(
                    k,
                    p,
                    format_args!("duplicate key `{key}`: already set on line {line}"),
                );
                ok = false;
                continue;
            }
            lines.insert(key, k.line);
            match f(self, v, &p.key(key)) {
                Some(v) => {
                    out.insert(key.to_string(), v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn reference(&mut self, n: &Node, p: &P<'_>) -> Option<ImageRef> {
        let s = self.string(n, p)?;
        match Reference::parse(&s) {
            Ok(reference) => Some(ImageRef {
                original: s,
                reference,
                pos: self.pos(n),
            }),
            Err(e) => {
                self.error(n, p, e);
                None
            }
        }
    }

    fn id(&mut self, n: &Node, p: &P<'_>) -> Option<Id> {
        let id = match n.scalar().map(|s| s.kind) {
            Some(ScalarKind::Int(i)) => match u64::try_from(i) {
                Ok(v) => Id::Num(v),
                Err(_) => {
                    self.error(n, p, format_args!("id {i} is negative"));
                    return None;
                }
            },
            Some(ScalarKind::Str) => Id::Name(n.as_str().unwrap_or_default().to_string()),
            _ => {
                self.type_error(n, p, "a number or a string");
                return None;
            }
        };
        match rules::check_id(&id) {
            Ok(()) => Some(id),
            Err(e) => {
                self.error(n, p, e);
                None
            }
        }
    }

    /// Converts the field `key` of `f` with `conv` when present; a failure clears `ok`.
    fn opt<T>(
        &mut self,
        f: &Fields<'_>,
        p: &P<'_>,
        key: &str,
        ok: &mut bool,
        conv: impl FnOnce(&mut Cx, &Node, &P<'_>) -> Option<T>,
    ) -> Option<T> {
        let n = f.get(key)?;
        let v = conv(self, n, &p.key(key));
        if v.is_none() {
            *ok = false;
        }
        v
    }
}

fn unknown_key(text: &str, keys: &[&str]) -> String {
    let best = keys.iter().map(|k| (edit_distance(text, k), *k)).min();
    match best {
        Some((d, k)) if d <= 2 || k.eq_ignore_ascii_case(text) => {
            format!("unknown key `{text}`; did you mean `{k}`?")
        }
        _ if keys.len() <= 10 => format!(
            "unknown key `{text}` (expected one of: {})",
            keys.join(", ")
        ),
        _ => format!("unknown key `{text}`"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads a whole file.
pub(crate) fn document(cx: &mut Cx, root: &Node) -> DraftDoc {
    let mut doc = DraftDoc::default();
    if matches!(root.scalar().map(|s| s.kind), Some(ScalarKind::Null)) {
        return doc;
    }
    let p = P::Root;
    let Some(f) = cx.fields(root, &p, TOP_KEYS, &[]) else {
        return doc;
    };
    let mut ok = true;
    doc.kernel = cx.opt(&f, &p, "kernel", &mut ok, kernel);
    doc.init = cx.each(&f, &p, "init", |cx, n, p| cx.reference(n, p));
    for (section, out) in [
        (Section::Onboot, &mut doc.onboot),
        (Section::Onshutdown, &mut doc.onshutdown),
        (Section::Services, &mut doc.services),
    ] {
        *out = cx.each(&f, &p, section.key(), |cx, n, p| Some(entry(cx, n, p)));
    }
    doc.files = cx.each(&f, &p, "files", |cx, n, p| Some(file(cx, n, p)));
    doc.volumes = cx.each(&f, &p, "volumes", |cx, n, p| Some(volume(cx, n, p)));
    if let Some(n) = f.get("trust") {
        let tp = p.key("trust");
        doc.trust = trust(cx, n, &tp);
        if let Some(k) = f.key_node("trust") {
            cx.warn(k, &tp, "`trust` is accepted for compatibility and ignored (no content trust check is made)");
        }
    }
    doc
}

fn kernel(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Kernel> {
    let f = cx.fields(n, p, KERNEL_KEYS, &[])?;
    let mut ok = true;
    let k = Kernel {
        image: cx.opt(&f, p, "image", &mut ok, Cx::reference),
        cmdline: cx.opt(&f, p, "cmdline", &mut ok, Cx::string),
        binary: cx.opt(&f, p, "binary", &mut ok, Cx::string),
        tar: cx.opt(&f, p, "tar", &mut ok, Cx::string),
        ucode: cx.opt(&f, p, "ucode", &mut ok, Cx::string),
        pos: Some(cx.pos(n)),
    };
    // Left out when wrong, so that a bad or misspelt `image` is not also a missing one.
    (ok && f.clean).then_some(k)
}

fn trust(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Trust> {
    let f = cx.fields(n, p, TRUST_KEYS, &[])?;
    let mut ok = true;
    let t = Trust {
        image: cx.opt(&f, p, "image", &mut ok, Cx::strings),
        org: cx.opt(&f, p, "org", &mut ok, Cx::strings),
    };
    ok.then_some(t)
}

/// Reads an `onboot` / `onshutdown` / `services` entry.
fn entry(cx: &mut Cx, n: &Node, p: &P<'_>) -> DraftEntry {
    let mut d = DraftEntry {
        path: p.to_string(),
        pos: cx.pos(n),
        name: None,
        image: None,
        config: ImageConfig::default(),
        ids: Vec::new(),
        binds: Vec::new(),
    };
    let Some(f) = cx.fields(n, p, ENTRY_KEYS, &[]) else {
        return d;
    };
    match f.get("name") {
        Some(v) => {
            let np = p.key("name");
            if let Some(name) = cx.string(v, &np) {
                if let Err(e) = rules::check_name(&name) {
                    cx.error(v, &np, e);
                }
                d.name = Some((name, cx.pos(v)));
            }
        }
        None if f.clean => cx.error(n, p, "missing `name`"),
        None => {}
    }
    match f.get("image") {
        Some(v) => d.image = cx.reference(v, &p.key("image")),
        None if f.clean => cx.error(n, p, "missing `image`"),
        None => {}
    }
    d.config = config(cx, &f, p, &mut d.ids, &mut d.binds);
    d
}

/// The fields of an entry other than `name` and `image` (also the whole of a label).
fn config(
    cx: &mut Cx,
    f: &Fields<'_>,
    p: &P<'_>,
    ids: &mut Vec<(Id, Pos, String)>,
    binds: &mut Vec<(String, Pos, String)>,
) -> ImageConfig {
    // Not read: a field `opt` cannot read is left out and its problem reported, and the
    // reported problems decide whether the entry (or label) is accepted.
    let mut ok = true;
    let caps = |cx: &mut Cx, n: &Node, p: &P<'_>| capabilities(cx, n, p);
    let mut c = ImageConfig {
        capabilities: cx.opt(f, p, "capabilities", &mut ok, caps),
        capabilities_add: cx.opt(f, p, "capabilities.add", &mut ok, caps),
        ambient: cx.opt(f, p, "ambient", &mut ok, caps),
        mounts: cx.opt(f, p, "mounts", &mut ok, |cx, n, p| {
            cx.list_of(n, p, |cx, item, ip| {
                let m = mount(cx, item, ip)?;
                match rules::complete_mount(&m) {
                    Ok(_) => Some(m),
                    Err(e) => {
                        cx.error(item, ip, e);
                        None
                    }
                }
            })
        }),
        devices: cx.opt(f, p, "devices", &mut ok, |cx, n, p| {
            cx.list_of(n, p, device)
        }),
        tmpfs: cx.opt(f, p, "tmpfs", &mut ok, |cx, n, p| {
            cx.strings_with(n, p, |s| rules::parse_tmpfs(s).map(|_| ()))
        }),
        command: cx.opt(f, p, "command", &mut ok, Cx::strings),
        env: cx.opt(f, p, "env", &mut ok, |cx, n, p| {
            cx.strings_with(n, p, rules::check_env)
        }),
        cwd: cx.opt(f, p, "cwd", &mut ok, |cx, n, p| {
            checked_string(cx, n, p, rules::check_cwd)
        }),
        hostname: cx.opt(f, p, "hostname", &mut ok, Cx::string),
        readonly: cx.opt(f, p, "readonly", &mut ok, Cx::bool),
        masked_paths: cx.opt(f, p, "maskedPaths", &mut ok, Cx::strings),
        readonly_paths: cx.opt(f, p, "readonlyPaths", &mut ok, Cx::strings),
        no_new_privileges: cx.opt(f, p, "noNewPrivileges", &mut ok, Cx::bool),
        oom_score_adj: cx.opt(f, p, "oomScoreAdj", &mut ok, |cx, n, p| {
            let v = cx.i64(n, p)?;
            match rules::check_oom_score_adj(v) {
                Ok(()) => Some(v),
                Err(e) => {
                    cx.error(n, p, e);
                    None
                }
            }
        }),
        rootfs_propagation: cx.opt(f, p, "rootfsPropagation", &mut ok, |cx, n, p| {
            checked_string(cx, n, p, rules::check_propagation)
        }),
        cgroups_path: cx.opt(f, p, "cgroupsPath", &mut ok, Cx::string),
        resources: cx.opt(f, p, "resources", &mut ok, resources),
        sysctl: cx.opt(f, p, "sysctl", &mut ok, Cx::string_map),
        rlimits: cx.opt(f, p, "rlimits", &mut ok, |cx, n, p| {
            cx.strings_with(n, p, |s| rules::parse_rlimit(s).map(|_| ()))
        }),
        uid_mappings: cx.opt(f, p, "uidMappings", &mut ok, |cx, n, p| {
            cx.list_of(n, p, id_mapping)
        }),
        gid_mappings: cx.opt(f, p, "gidMappings", &mut ok, |cx, n, p| {
            cx.list_of(n, p, id_mapping)
        }),
        annotations: cx.opt(f, p, "annotations", &mut ok, Cx::string_map),
        runtime: cx.opt(f, p, "runtime", &mut ok, runtime),
        ..ImageConfig::default()
    };
    for key in ["net", "pid", "ipc", "uts", "userns"] {
        let v = cx.opt(f, p, key, &mut ok, |cx, n, p| {
            checked_string(cx, n, p, |s| rules::check_namespace(key, s))
        });
        match key {
            "net" => c.net = v,
            "pid" => c.pid = v,
            "ipc" => c.ipc = v,
            "uts" => c.uts = v,
            _ => c.userns = v,
        }
    }
    for key in ["binds", "binds.add"] {
        let v = cx.opt(f, p, key, &mut ok, |cx, n, p| {
            cx.list_of(n, p, |cx, item, ip| {
                let s = cx.string(item, ip)?;
                if let Err(e) = rules::parse_bind(&s) {
                    cx.error(item, ip, e);
                    return None;
                }
                binds.push((s.clone(), cx.pos(item), ip.to_string()));
                Some(s)
            })
        });
        if key == "binds" {
            c.binds = v;
        } else {
            c.binds_add = v;
        }
    }
    let mut id = |cx: &mut Cx, n: &Node, p: &P<'_>| {
        let v = cx.id(n, p)?;
        ids.push((v.clone(), cx.pos(n), p.to_string()));
        Some(v)
    };
    c.uid = cx.opt(f, p, "uid", &mut ok, &mut id);
    c.gid = cx.opt(f, p, "gid", &mut ok, &mut id);
    c.additional_gids = cx.opt(f, p, "additionalGids", &mut ok, |cx, n, p| {
        cx.list_of(n, p, &mut id)
    });
    for (plain, add) in [("capabilities", "capabilities.add"), ("binds", "binds.add")] {
        if let (Some(_), Some(k)) = (f.get(plain), f.key_node(add)) {
            cx.warn(
                k,
                p,
                format_args!("`{add}` is ignored because `{plain}` is also set (as LinuxKit does)"),
            );
        }
    }
    c
}

/// A string, checked by `rule` (its message reported at the value).
fn checked_string(
    cx: &mut Cx,
    n: &Node,
    p: &P<'_>,
    rule: impl Fn(&str) -> Result<(), String>,
) -> Option<String> {
    let s = cx.string(n, p)?;
    match rule(&s) {
        Ok(()) => Some(s),
        Err(e) => {
            cx.error(n, p, e);
            None
        }
    }
}

fn capabilities(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Vec<String>> {
    let items = cx.list(n, p)?;
    let names = cx.strings(n, p)?;
    let bad = caps::check(&names);
    for (i, e) in &bad {
        if let Some(item) = items.get(*i) {
            cx.error(item, &p.at(*i), e);
        }
    }
    bad.is_empty().then_some(names)
}

fn mount(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Mount> {
    let f = cx.fields(n, p, MOUNT_KEYS, MOUNT_ALIASES)?;
    let mut ok = true;
    let m = Mount {
        destination: cx
            .opt(&f, p, "destination", &mut ok, Cx::string)
            .unwrap_or_default(),
        kind: cx
            .opt(&f, p, "type", &mut ok, Cx::string)
            .unwrap_or_default(),
        source: cx
            .opt(&f, p, "source", &mut ok, Cx::string)
            .unwrap_or_default(),
        options: cx
            .opt(&f, p, "options", &mut ok, Cx::strings)
            .unwrap_or_default(),
        uid_mappings: cx
            .opt(&f, p, "uidMappings", &mut ok, |cx, n, p| {
                cx.list_of(n, p, id_mapping)
            })
            .unwrap_or_default(),
        gid_mappings: cx
            .opt(&f, p, "gidMappings", &mut ok, |cx, n, p| {
                cx.list_of(n, p, id_mapping)
            })
            .unwrap_or_default(),
    };
    ok.then_some(m)
}

fn id_mapping(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<IdMapping> {
    let f = cx.fields(n, p, IDMAP_KEYS, &[])?;
    let mut ok = true;
    let m = IdMapping {
        container_id: cx
            .opt(&f, p, "containerID", &mut ok, Cx::u32)
            .unwrap_or_default(),
        host_id: cx
            .opt(&f, p, "hostID", &mut ok, Cx::u32)
            .unwrap_or_default(),
        size: cx.opt(&f, p, "size", &mut ok, Cx::u32).unwrap_or_default(),
    };
    ok.then_some(m)
}

fn device(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Device> {
    let f = cx.fields(n, p, DEVICE_KEYS, &[])?;
    let mut ok = true;
    let path = cx.opt(&f, p, "path", &mut ok, Cx::string);
    let kind = cx.opt(&f, p, "type", &mut ok, Cx::string);
    let major = cx.opt(&f, p, "major", &mut ok, Cx::i64);
    let minor = cx.opt(&f, p, "minor", &mut ok, Cx::i64);
    let mode = cx.opt(&f, p, "mode", &mut ok, Cx::string);
    if !f.clean {
        return None;
    }
    let Some(path) = path else {
        if f.get("path").is_none() {
            cx.error(n, p, "missing `path`");
        }
        return None;
    };
    let kind = kind.or_else(|| f.get("type").is_none().then(String::new))?;
    // A value that failed to convert was reported already; count it as present (and valid)
    // here.
    let present = |v: Option<i64>, key: &str| v.or_else(|| f.get(key).map(|_| 0));
    let mode_or_bad = mode.as_deref().or_else(|| f.get("mode").map(|_| "0"));
    let bad = rules::check_device(
        &path,
        &kind,
        present(major, "major"),
        present(minor, "minor"),
        mode_or_bad,
    );
    for (key, msg) in &bad {
        let at = f.get(key).unwrap_or(f.node);
        let kp = if key.is_empty() { *p } else { p.key(key) };
        cx.error(at, &kp, msg);
    }
    (ok && bad.is_empty()).then(|| Device {
        path,
        kind,
        major: major.unwrap_or_default(),
        minor: minor.unwrap_or_default(),
        mode,
    })
}

fn runtime(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Runtime> {
    let f = cx.fields(n, p, RUNTIME_KEYS, &[])?;
    let mut ok = true;
    let r = Runtime {
        cgroups: cx.opt(&f, p, "cgroups", &mut ok, Cx::strings),
        mounts: cx.opt(&f, p, "mounts", &mut ok, |cx, n, p| cx.list_of(n, p, mount)),
        mkdir: cx.opt(&f, p, "mkdir", &mut ok, Cx::strings),
        interfaces: cx.opt(&f, p, "interfaces", &mut ok, |cx, n, p| {
            cx.list_of(n, p, interface)
        }),
        bind_ns: cx.opt(&f, p, "bindNS", &mut ok, bind_ns),
        namespace: cx.opt(&f, p, "namespace", &mut ok, Cx::string),
    };
    ok.then_some(r)
}

fn interface(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Interface> {
    let f = cx.fields(n, p, INTERFACE_KEYS, &[])?;
    let mut ok = true;
    let i = Interface {
        name: cx
            .opt(&f, p, "name", &mut ok, Cx::string)
            .unwrap_or_default(),
        add: cx
            .opt(&f, p, "add", &mut ok, Cx::string)
            .unwrap_or_default(),
        peer: cx
            .opt(&f, p, "peer", &mut ok, Cx::string)
            .unwrap_or_default(),
        create_in_root: cx
            .opt(&f, p, "createInRoot", &mut ok, Cx::bool)
            .unwrap_or_default(),
    };
    ok.then_some(i)
}

fn bind_ns(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<BindNs> {
    let f = cx.fields(n, p, BINDNS_KEYS, &[])?;
    let mut ok = true;
    let b = BindNs {
        cgroup: cx.opt(&f, p, "cgroup", &mut ok, Cx::string),
        ipc: cx.opt(&f, p, "ipc", &mut ok, Cx::string),
        mnt: cx.opt(&f, p, "mnt", &mut ok, Cx::string),
        net: cx.opt(&f, p, "net", &mut ok, Cx::string),
        pid: cx.opt(&f, p, "pid", &mut ok, Cx::string),
        user: cx.opt(&f, p, "user", &mut ok, Cx::string),
        uts: cx.opt(&f, p, "uts", &mut ok, Cx::string),
    };
    ok.then_some(b)
}

fn resources(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Resources> {
    let f = cx.fields(n, p, RESOURCES_KEYS, RESOURCES_ALIASES)?;
    let mut ok = true;
    let r = Resources {
        devices: cx
            .opt(&f, p, "devices", &mut ok, |cx, n, p| {
                cx.list_of(n, p, device_cgroup)
            })
            .unwrap_or_default(),
        memory: cx.opt(&f, p, "memory", &mut ok, memory),
        cpu: cx.opt(&f, p, "cpu", &mut ok, cpu),
        pids: cx.opt(&f, p, "pids", &mut ok, pids),
        block_io: cx.opt(&f, p, "blockIO", &mut ok, block_io),
        hugepage_limits: cx
            .opt(&f, p, "hugepageLimits", &mut ok, |cx, n, p| {
                cx.list_of(n, p, hugepage_limit)
            })
            .unwrap_or_default(),
        network: cx.opt(&f, p, "network", &mut ok, network),
        rdma: cx
            .opt(&f, p, "rdma", &mut ok, |cx, n, p| cx.map_of(n, p, rdma))
            .unwrap_or_default(),
        unified: cx
            .opt(&f, p, "unified", &mut ok, Cx::string_map)
            .unwrap_or_default(),
    };
    ok.then_some(r)
}

fn device_cgroup(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<DeviceCgroup> {
    let f = cx.fields(n, p, &["allow", "type", "major", "minor", "access"], &[])?;
    let mut ok = true;
    let d = DeviceCgroup {
        allow: cx
            .opt(&f, p, "allow", &mut ok, Cx::bool)
            .unwrap_or_default(),
        kind: cx
            .opt(&f, p, "type", &mut ok, |cx, n, p| {
                checked_string(cx, n, p, |s| rules::check_device_rule(s, ""))
            })
            .unwrap_or_default(),
        major: cx.opt(&f, p, "major", &mut ok, Cx::i64),
        minor: cx.opt(&f, p, "minor", &mut ok, Cx::i64),
        access: cx
            .opt(&f, p, "access", &mut ok, |cx, n, p| {
                checked_string(cx, n, p, |s| rules::check_device_rule("", s))
            })
            .unwrap_or_default(),
    };
    ok.then_some(d)
}

fn memory(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Memory> {
    let keys = &[
        "limit",
        "reservation",
        "swap",
        "kernel",
        "kernelTCP",
        "swappiness",
        "disableOOMKiller",
        "useHierarchy",
        "checkBeforeUpdate",
    ];
    let f = cx.fields(n, p, keys, &[])?;
    let mut ok = true;
    let m = Memory {
        limit: cx.opt(&f, p, "limit", &mut ok, Cx::i64),
        reservation: cx.opt(&f, p, "reservation", &mut ok, Cx::i64),
        swap: cx.opt(&f, p, "swap", &mut ok, Cx::i64),
        kernel: cx.opt(&f, p, "kernel", &mut ok, Cx::i64),
        kernel_tcp: cx.opt(&f, p, "kernelTCP", &mut ok, Cx::i64),
        swappiness: cx.opt(&f, p, "swappiness", &mut ok, Cx::u64),
        disable_oom_killer: cx.opt(&f, p, "disableOOMKiller", &mut ok, Cx::bool),
        use_hierarchy: cx.opt(&f, p, "useHierarchy", &mut ok, Cx::bool),
        check_before_update: cx.opt(&f, p, "checkBeforeUpdate", &mut ok, Cx::bool),
    };
    ok.then_some(m)
}

fn cpu(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Cpu> {
    let keys = &[
        "shares",
        "quota",
        "burst",
        "period",
        "realtimeRuntime",
        "realtimePeriod",
        "cpus",
        "mems",
        "idle",
    ];
    let f = cx.fields(n, p, keys, &[])?;
    let mut ok = true;
    let c = Cpu {
        shares: cx.opt(&f, p, "shares", &mut ok, Cx::u64),
        quota: cx.opt(&f, p, "quota", &mut ok, Cx::i64),
        burst: cx.opt(&f, p, "burst", &mut ok, Cx::u64),
        period: cx.opt(&f, p, "period", &mut ok, Cx::u64),
        realtime_runtime: cx.opt(&f, p, "realtimeRuntime", &mut ok, Cx::i64),
        realtime_period: cx.opt(&f, p, "realtimePeriod", &mut ok, Cx::u64),
        cpus: cx
            .opt(&f, p, "cpus", &mut ok, Cx::string)
            .unwrap_or_default(),
        mems: cx
            .opt(&f, p, "mems", &mut ok, Cx::string)
            .unwrap_or_default(),
        idle: cx.opt(&f, p, "idle", &mut ok, Cx::i64),
    };
    ok.then_some(c)
}

fn pids(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Pids> {
    let f = cx.fields(n, p, &["limit"], &[])?;
    let mut ok = true;
    let limit = cx.opt(&f, p, "limit", &mut ok, Cx::i64).unwrap_or_default();
    ok.then_some(Pids { limit })
}

fn block_io(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<BlockIo> {
    let keys = &[
        "weight",
        "leafWeight",
        "weightDevice",
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    ];
    let f = cx.fields(n, p, keys, &[])?;
    let mut ok = true;
    let mut throttle = |cx: &mut Cx, key: &str| {
        cx.opt(&f, p, key, &mut ok, |cx, n, p| {
            cx.list_of(n, p, throttle_device)
        })
        .unwrap_or_default()
    };
    let read_bps = throttle(cx, "throttleReadBpsDevice");
    let write_bps = throttle(cx, "throttleWriteBpsDevice");
    let read_iops = throttle(cx, "throttleReadIOPSDevice");
    let write_iops = throttle(cx, "throttleWriteIOPSDevice");
    let b = BlockIo {
        weight: cx.opt(&f, p, "weight", &mut ok, Cx::u16),
        leaf_weight: cx.opt(&f, p, "leafWeight", &mut ok, Cx::u16),
        weight_device: cx
            .opt(&f, p, "weightDevice", &mut ok, |cx, n, p| {
                cx.list_of(n, p, weight_device)
            })
            .unwrap_or_default(),
        throttle_read_bps_device: read_bps,
        throttle_write_bps_device: write_bps,
        throttle_read_iops_device: read_iops,
        throttle_write_iops_device: write_iops,
    };
    ok.then_some(b)
}

fn weight_device(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<WeightDevice> {
    let f = cx.fields(n, p, &["major", "minor", "weight", "leafWeight"], &[])?;
    let mut ok = true;
    let w = WeightDevice {
        major: cx.opt(&f, p, "major", &mut ok, Cx::i64).unwrap_or_default(),
        minor: cx.opt(&f, p, "minor", &mut ok, Cx::i64).unwrap_or_default(),
        weight: cx.opt(&f, p, "weight", &mut ok, Cx::u16),
        leaf_weight: cx.opt(&f, p, "leafWeight", &mut ok, Cx::u16),
    };
    ok.then_some(w)
}

fn throttle_device(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<ThrottleDevice> {
    let f = cx.fields(n, p, &["major", "minor", "rate"], &[])?;
    let mut ok = true;
    let t = ThrottleDevice {
        major: cx.opt(&f, p, "major", &mut ok, Cx::i64).unwrap_or_default(),
        minor: cx.opt(&f, p, "minor", &mut ok, Cx::i64).unwrap_or_default(),
        rate: cx.opt(&f, p, "rate", &mut ok, Cx::u64).unwrap_or_default(),
    };
    ok.then_some(t)
}

fn hugepage_limit(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<HugepageLimit> {
    let f = cx.fields(n, p, &["pageSize", "limit"], &[])?;
    let mut ok = true;
    let page_size = cx
        .opt(&f, p, "pageSize", &mut ok, |cx, n, p| {
            let s = match n.scalar().map(|s| s.kind) {
                Some(ScalarKind::Int(i)) if i >= 0 => i.to_string(),
                Some(ScalarKind::Str) => n.as_str()?.to_string(),
                _ => {
                    cx.type_error(n, p, "a page size such as \"2MB\" (or a number)");
                    return None;
                }
            };
            // Kept as written; `config.json` generation brings it to the OCI form.
            match rules::hugepage_size(&s) {
                Ok(_) => Some(s),
                Err(e) => {
                    cx.error(n, p, e);
                    None
                }
            }
        })
        .unwrap_or_default();
    let limit = cx.opt(&f, p, "limit", &mut ok, Cx::u64).unwrap_or_default();
    ok.then_some(HugepageLimit { page_size, limit })
}

fn network(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Network> {
    let f = cx.fields(n, p, &["classID", "priorities"], &[])?;
    let mut ok = true;
    let net = Network {
        class_id: cx.opt(&f, p, "classID", &mut ok, Cx::u32),
        priorities: cx
            .opt(&f, p, "priorities", &mut ok, |cx, n, p| {
                cx.list_of(n, p, |cx, n, p| {
                    let f = cx.fields(n, p, &["name", "priority"], &[])?;
                    let mut ok = true;
                    let ip = InterfacePriority {
                        name: cx
                            .opt(&f, p, "name", &mut ok, Cx::string)
                            .unwrap_or_default(),
                        priority: cx
                            .opt(&f, p, "priority", &mut ok, Cx::u32)
                            .unwrap_or_default(),
                    };
                    ok.then_some(ip)
                })
            })
            .unwrap_or_default(),
    };
    ok.then_some(net)
}

fn rdma(cx: &mut Cx, n: &Node, p: &P<'_>) -> Option<Rdma> {
    let f = cx.fields(n, p, &["hcaHandles", "hcaObjects"], &[])?;
    let mut ok = true;
    let r = Rdma {
        hca_handles: cx.opt(&f, p, "hcaHandles", &mut ok, Cx::u32),
        hca_objects: cx.opt(&f, p, "hcaObjects", &mut ok, Cx::u32),
    };
    ok.then_some(r)
}

/// Reads a `files` entry.
fn file(cx: &mut Cx, n: &Node, p: &P<'_>) -> DraftFile {
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

fn non_empty(cx: &mut Cx, n: &Node, p: &P<'_>, what: &str) -> Option<String> {
    let s = cx.string(n, p)?;
    if s.is_empty() {
        cx.error(n, p, format_args!("the {what} is empty"));
        return None;
    }
    Some(s)
}

/// Reads a `volumes` entry.
fn volume(cx: &mut Cx, n: &Node, p: &P<'_>) -> DraftVolume {
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

/// Reads an `org.mobyproject.config` label: the fields of an entry without `name`/`image`.
/// Ids are only checked for syntax, binds only for syntax (volumes are checked by `build`).
pub(crate) fn label(cx: &mut Cx, root: &Node) -> ImageConfig {
    let p = P::Root;
    let Some(f) = cx.fields(root, &p, ENTRY_KEYS, &[]) else {
        return ImageConfig::default();
    };
    for key in ["name", "image"] {
        if let Some(k) = f.key_node(key) {
            cx.error(k, &p.key(key), "may not be set in an image label");
        }
    }
    let (mut ids, mut binds) = (Vec::new(), Vec::new());
    config(cx, &f, &p, &mut ids, &mut binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml;

    fn read(src: &str) -> (DraftDoc, Vec<String>) {
        let doc = yaml::parse(src).unwrap();
        let mut cx = Cx::new("t.yml".into());
        let d = document(&mut cx, &doc.root);
        let mut errors = cx.errors;
        errors.sort_by_key(|d| d.pos.as_ref().map(|p| (p.line, p.column)));
        (d, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn unknown_and_duplicate_keys() {
        let (_, e) = read("kernel:\n  image: a\n  imag: b\n  image: c\nfoo: 1\n");
        assert_eq!(
            e,
            vec![
                "t.yml:3:3: `kernel`: unknown key `imag`; did you mean `image`?",
                "t.yml:4:3: `kernel`: duplicate key `image`: already set on line 2",
                "t.yml:5:1: unknown key `foo` (expected one of: kernel, init, onboot, onshutdown, services, files, volumes, trust)",
            ]
        );
    }

    #[test]
    fn wrong_types() {
        let (_, e) = read(
            "onboot:\n  - name: a\n    image: b\n    readonly: yes\n    cwd: 12\n    command: x\n",
        );
        assert_eq!(
            e,
            vec![
                "t.yml:4:15: `onboot[0].readonly`: expected `true` or `false`, found the string `yes`",
                "t.yml:5:10: `onboot[0].cwd`: expected a string, found the number `12`; quote it",
                "t.yml:6:14: `onboot[0].command`: expected a list, found the string `x`",
            ]
        );
    }

    #[test]
    fn entries_convert() {
        let src = "services:\n  - name: s\n    image: redis\n    capabilities: [sys_admin]\n    uid: s\n    binds: [\"v:/v:ro\"]\n    resources:\n      blockio: {weight: 10}\n      memory: {disableOOMKiller: true}\n      hugepageLimits: [{pageSize: 2097152, limit: 1}, {pageSize: 2MB}]\n";
        let (d, e) = read(src);
        assert!(e.is_empty(), "{e:?}");
        let s = &d.services[0];
        assert_eq!(
            s.image.as_ref().unwrap().normalized(),
            "docker.io/library/redis:latest"
        );
        assert_eq!(
            s.ids,
            vec![(
                Id::Name("s".into()),
                Pos {
                    file: "t.yml".into(),
                    line: 5,
                    column: 10
                },
                "services[0].uid".to_string()
            )]
        );
        let r = s.config.resources.as_ref().unwrap();
        assert_eq!(r.block_io.as_ref().unwrap().weight, Some(10));
        assert_eq!(r.memory.as_ref().unwrap().disable_oom_killer, Some(true));
        assert_eq!(r.hugepage_limits[0].page_size, "2097152");
        assert_eq!(r.hugepage_limits[1].page_size, "2MB");
        assert_eq!(s.binds.len(), 1);
    }

    #[test]
    fn blockio_spellings_are_one_key() {
        let (_, e) = read(
            "services:\n  - name: s\n    image: r\n    resources:\n      blockio: {}\n      blockIO: {}\n",
        );
        assert_eq!(
            e,
            vec![
                "t.yml:6:7: `services[0].resources`: duplicate key `blockIO`: already set (as `blockio`) on line 5"
            ]
        );
    }

    #[test]
    fn files_rules() {
        let (_, e) = read(
            "files:\n  - path: a\n  - path: b\n    contents: x\n    source: y\n  - path: ../c\n    directory: true\n  - path: d\n    contents: x\n    optional: true\n    mode: 0644\n",
        );
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e[0].starts_with("t.yml:2:5: `files[0]`: needs one of"));
        assert!(e[1].starts_with("t.yml:3:5: `files[1]`: has `contents` and `source`"));
        assert!(e[2].starts_with("t.yml:6:11: `files[2].path`: path `../c` has a `..` component"));
        assert!(e[3].contains("10:5: `files[3].optional`"), "{}", e[3]);
        assert!(
            e[4].contains(
                "11:11: `files[3].mode`: expected a string, found the number `0644`; quote it"
            ),
            "{}",
            e[4]
        );
    }

    #[test]
    fn label_rejects_name() {
        let doc =
            yaml::parse(r#"{"name": "x", "capabilities": ["CAP_FOO"], "uid": "anyone"}"#).unwrap();
        let mut cx = Cx::new("label".into());
        let _ = label(&mut cx, &doc.root);
        let e: Vec<String> = cx.errors.iter().map(|d| d.message.clone()).collect();
        assert_eq!(
            e,
            vec![
                "`name`: may not be set in an image label",
                "`capabilities[0]`: unknown capability `CAP_FOO`"
            ]
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            unknown_key("bindz", ENTRY_KEYS),
            "unknown key `bindz`; did you mean `binds`?"
        );
        assert_eq!(
            unknown_key("zzzzzzzz", ENTRY_KEYS),
            "unknown key `zzzzzzzz`"
        );
        assert_eq!(
            unknown_key("BlockIo", RESOURCES_KEYS),
            "unknown key `BlockIo`; did you mean `blockIO`?"
        );
    }
}
