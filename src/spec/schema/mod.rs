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

use crate::spec::model::ImageConfig;
use crate::spec::yaml::{Node, ScalarKind};

mod draft;
mod entries;
mod files;
mod oci;
mod readers;

use draft::*;
pub(crate) use draft::{Cx, DraftDoc, DraftEntry, Section};
use entries::*;
use files::*;

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
    use super::readers::unknown_key;
    use super::*;
    use crate::spec::model::{Id, Pos};
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
