//! Reading the input documents, merging several of them in order (SPEC §1), running the
//! checks over the merged result and assembling the validated [`Spec`]; also the reading of an
//! image label. Owns the order in which problems are reported.
//!
//! Merge rules (as LinuxKit's `AppendConfig`): a later file's `kernel.image`, `cmdline` and
//! `binary` override when non-empty, `tar` and `ucode` whenever present (even empty); every
//! list (`init`, `onboot`, `onshutdown`, `services`, `files`, `volumes`, `trust.image`,
//! `trust.org`) is appended. The cross-file checks then run on the result.
//!
//! Reporting: a file that cannot be read and a YAML syntax error stop everything, and only
//! those are reported. Otherwise every problem of every file is reported, sorted by file (in
//! command-line order), line and column.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use crate::spec::model::{ImageConfig, ImageEntry, Kernel, Pos, Spec, Trust};
use crate::spec::schema::{self, Cx, DraftDoc, DraftEntry};
use crate::spec::validate::{self, EntryFacts, VolumeFacts};
use crate::spec::{Diagnostic, Diagnostics, Input, Loaded, STDIN_NAME, yaml};

pub(crate) fn load(inputs: &[Input]) -> Result<Loaded, Diagnostics> {
    let mut fatal = Vec::new();
    let mut texts = Vec::new();
    let mut stdin_used = false;
    for input in inputs {
        match read(input, &mut stdin_used) {
            Ok(x) => texts.push(x),
            Err(d) => fatal.push(d),
        }
    }
    if !fatal.is_empty() {
        return Err(Diagnostics(fatal));
    }
    load_texts(texts.iter().map(|(f, t)| (f.clone(), t.as_str())))
}

/// [`load`] over documents already read: (name for messages, text).
pub(crate) fn load_texts<'a>(
    texts: impl IntoIterator<Item = (Arc<str>, &'a str)>,
) -> Result<Loaded, Diagnostics> {
    let mut fatal = Vec::new();
    let mut parsed = Vec::new();
    for (file, text) in texts {
        match yaml::parse(text) {
            Ok(doc) => parsed.push((file, doc)),
            Err(e) => fatal.push(Diagnostic {
                pos: Some(Pos {
                    file,
                    line: e.line,
                    column: e.col,
                }),
                message: format!("YAML syntax error: {}", e.message),
            }),
        }
    }
    if !fatal.is_empty() {
        return Err(Diagnostics(fatal));
    }
    let order: Vec<Arc<str>> = parsed.iter().map(|(f, _)| f.clone()).collect();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut merged = DraftDoc::default();
    for (file, doc) in &parsed {
        let mut cx = Cx::new(file.clone());
        for i in &doc.issues {
            errors.push(Diagnostic {
                pos: Some(Pos {
                    file: file.clone(),
                    line: i.line,
                    column: i.col,
                }),
                message: i.message.clone(),
            });
        }
        let d = schema::document(&mut cx, &doc.root);
        errors.append(&mut cx.errors);
        warnings.append(&mut cx.warnings);
        append(&mut merged, d);
    }
    check(&merged, &mut errors);
    sort(&mut warnings, &order);
    if !errors.is_empty() {
        sort(&mut errors, &order);
        return Err(Diagnostics(errors));
    }
    Ok(Loaded {
        spec: assemble(merged),
        warnings,
    })
}

fn read(input: &Input, stdin_used: &mut bool) -> Result<(Arc<str>, String), Diagnostic> {
    let (name, bytes) = match input {
        Input::Path(p) => {
            let name = p.display().to_string();
            match std::fs::read(p) {
                Ok(b) => (name, b),
                Err(e) => {
                    return Err(Diagnostic {
                        pos: None,
                        message: format!("cannot read `{name}`: {e}"),
                    });
                }
            }
        }
        Input::Stdin => {
            if *stdin_used {
                return Err(Diagnostic {
                    pos: None,
                    message: "standard input (`-`) is given twice".to_string(),
                });
            }
            *stdin_used = true;
            let mut b = Vec::new();
            if let Err(e) = std::io::stdin().lock().read_to_end(&mut b) {
                return Err(Diagnostic {
                    pos: None,
                    message: format!("cannot read standard input: {e}"),
                });
            }
            (STDIN_NAME.to_string(), b)
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name.into(), text)),
        Err(e) => Err(Diagnostic {
            pos: None,
            message: format!(
                "`{name}` is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        }),
    }
}

/// Appends a later file to the merged result (see the module documentation).
fn append(m: &mut DraftDoc, d: DraftDoc) {
    if let Some(k) = d.kernel {
        m.kernel = Some(match m.kernel.take() {
            None => k,
            Some(base) => merge_kernel(base, k),
        });
    }
    m.init.extend(d.init);
    m.onboot.extend(d.onboot);
    m.onshutdown.extend(d.onshutdown);
    m.services.extend(d.services);
    m.files.extend(d.files);
    m.volumes.extend(d.volumes);
    if let Some(t) = d.trust {
        let base = m.trust.get_or_insert_with(Trust::default);
        for (to, from) in [(&mut base.image, t.image), (&mut base.org, t.org)] {
            if let Some(items) = from {
                to.get_or_insert_with(Vec::new).extend(items);
            }
        }
    }
}

fn merge_kernel(base: Kernel, k: Kernel) -> Kernel {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Kernel {
        image: k.image.or(base.image),
        cmdline: non_empty(k.cmdline).or(base.cmdline),
        binary: non_empty(k.binary).or(base.binary),
        tar: k.tar.or(base.tar),
        ucode: k.ucode.or(base.ucode),
        pos: k.pos.or(base.pos),
    }
}

/// The checks that need the whole merged file.
fn check(m: &DraftDoc, errors: &mut Vec<Diagnostic>) {
    if let Some(k) = &m.kernel
        && k.image.is_none()
    {
        errors.push(Diagnostic {
            pos: k.pos.clone(),
            message: "`kernel`: missing `image` (a kernel section needs a kernel image)"
                .to_string(),
        });
    }
    fn facts<'a>(section: &'static str, e: &'a [DraftEntry]) -> Vec<EntryFacts<'a>> {
        e.iter()
            .map(|d| EntryFacts {
                section,
                path: &d.path,
                name: d.name.as_ref().map(|(n, p)| (n.as_str(), p)),
                ids: &d.ids,
                binds: &d.binds,
            })
            .collect()
    }
    let mut entries = facts("onboot", &m.onboot);
    entries.extend(facts("onshutdown", &m.onshutdown));
    entries.extend(facts("services", &m.services));
    let volumes: Vec<VolumeFacts<'_>> = m
        .volumes
        .iter()
        .filter_map(|v| {
            let (name, pos) = v.name.as_ref()?;
            Some(VolumeFacts {
                path: &v.path,
                name,
                pos,
                readonly: v.volume.as_ref().is_some_and(|v| v.readonly),
            })
        })
        .collect();
    let file_ids: Vec<_> = m.files.iter().flat_map(|f| f.ids.iter().cloned()).collect();
    validate::cross_check(&entries, &volumes, &file_ids, errors);
}

/// Builds the spec from drafts that passed every check.
///
/// Called only when no error was found. The schema pass reports an error for every entry it
/// leaves without a `name` or `image` (not a map, key missing or misspelt, wrong type, bad
/// reference), as it does for a `files` or `volumes` entry it could not read; so with no
/// error, no draft is left out here.
fn assemble(m: DraftDoc) -> Spec {
    let entries = |list: Vec<DraftEntry>| -> Vec<ImageEntry> {
        list.into_iter()
            .filter_map(|d| {
                Some(ImageEntry {
                    name: d.name?.0,
                    image: d.image?,
                    config: d.config,
                    pos: d.pos,
                })
            })
            .collect()
    };
    Spec {
        kernel: m.kernel,
        init: m.init,
        onboot: entries(m.onboot),
        onshutdown: entries(m.onshutdown),
        services: entries(m.services),
        files: m.files.into_iter().filter_map(|f| f.entry).collect(),
        volumes: m.volumes.into_iter().filter_map(|v| v.volume).collect(),
        trust: m.trust,
    }
}

/// Sorts by file (in input order), line, column; keeps the order of equal positions.
fn sort(d: &mut [Diagnostic], order: &[Arc<str>]) {
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .rev()
        .map(|(i, f)| (&**f, i))
        .collect();
    d.sort_by_key(|d| match &d.pos {
        Some(p) => (
            index.get(&*p.file).copied().unwrap_or(usize::MAX),
            p.line,
            p.column,
        ),
        None => (usize::MAX, 0, 0),
    });
}

/// Parses and validates an `org.mobyproject.config` label of `image`.
pub(crate) fn parse_label(image: &str, text: &str) -> Result<ImageConfig, Diagnostics> {
    let file: Arc<str> = format!("label of image `{image}`").into();
    let doc = yaml::parse(text).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            pos: Some(Pos {
                file: file.clone(),
                line: e.line,
                column: e.col,
            }),
            message: format!("syntax error: {}", e.message),
        }])
    })?;
    let mut cx = Cx::new(file.clone());
    let mut errors: Vec<Diagnostic> = doc
        .issues
        .iter()
        .map(|i| Diagnostic {
            pos: Some(Pos {
                file: file.clone(),
                line: i.line,
                column: i.col,
            }),
            message: i.message.clone(),
        })
        .collect();
    let config = schema::label(&mut cx, &doc.root);
    errors.append(&mut cx.errors);
    for w in &cx.warnings {
        log::warn!("{w}");
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        sort(&mut errors, &[file]);
        Err(Diagnostics(errors))
    }
}
