//! Planning: from a validated spec and the resolved images to the ordered list of output
//! operations of SPEC §4.1. Every decision is taken here, before the first export: the label
//! merge and the `config.json`/`runtime.json` of every bundle, the bundle layouts, which
//! bundle gets the first copy of an image and which ones point at it, the generated
//! directories. The executor (`build`) only streams.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use crate::bundle;
use crate::rewrite::Resolv;
use crate::rewrite::kernel::KernelParts;
use crate::source::ImageInfo;
use crate::spec::merge::{self, ImageDefaults};
use crate::spec::reference::Reference;
use crate::spec::{
    self, FileEntry, FileKind, Id, ImageEntry, MetadataFormat, Spec, Volume, validate,
};

/// One step of writing the output, in output order. Each carries all it needs: the
/// executor only streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A generated directory (0755, uid/gid 0, fixed time); a plan names each one once.
    Dir(String),
    /// A generated file (0644, uid/gid 0, fixed time).
    File { path: String, data: Vec<u8> },
    /// `boot/` from a kernel image, then its modules tarball at `/` (SPEC §4.1 step 1).
    Kernel {
        image: ImageInfo,
        parts: KernelParts,
    },
    /// An image's filtered file system under `prefix` (empty for `/`).
    Image {
        image: ImageInfo,
        prefix: String,
        resolv: Resolv,
    },
    /// A `files` entry (SPEC §2.2), resolved.
    UserFile(FileOp),
}

/// A `files` entry with everything decided: where, what, with which mode and owner.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOp {
    /// `file:line:column: files entry `path``, for messages.
    pub what: String,
    /// The path in the output (no leading `/`).
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The ancestors of `path`, outermost first: each one the output does not have yet is
    /// written as a directory with `parent_mode` and the entry's owner.
    pub parents: Vec<String>,
    pub parent_mode: u32,
    pub content: FileContent,
}

/// What a `files` entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum FileContent {
    Directory,
    Symlink(String),
    /// `contents:` or `metadata:` bytes.
    Data(Vec<u8>),
    /// A host file, streamed at execution time.
    Source(PathBuf),
    /// An `optional` source that does not exist: nothing is written.
    Missing(String),
}

/// The whole output, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    /// The images exported, in output order (an image is exported once per `Image`/`Kernel`
    /// op it appears in).
    pub fn exports(&self) -> impl Iterator<Item = &ImageInfo> {
        self.ops.iter().filter_map(|op| match op {
            Op::Kernel { image, .. } | Op::Image { image, .. } => Some(image),
            _ => None,
        })
    }

    /// Every ancestor of a `files` entry: the only paths whose presence in the output the
    /// executor must remember.
    pub fn file_parents(&self) -> HashSet<&str> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::UserFile(f) => Some(f.parents.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{what} (image `{image}`): invalid org.mobyproject.config label:\n{diags}")]
    Label {
        what: String,
        image: String,
        diags: spec::Diagnostics,
    },
    #[error("{what} (image `{image}`)")]
    Merge {
        what: String,
        image: String,
        #[source]
        source: merge::MergeError,
    },
    #[error("{what} (image `{image}`)")]
    Oci {
        what: String,
        image: String,
        #[source]
        source: bundle::OciError,
    },
    #[error("{what} (image `{image}`): {message}")]
    Volume {
        what: String,
        image: String,
        message: String,
    },
    #[error("image `{0}` was not resolved")]
    Unresolved(String),
    #[error("{what}: {message}")]
    File { what: String, message: String },
}

/// An image the output needs, and what needs it first (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    pub reference: Reference,
    /// Where the YAML names it first (`None`: the command line does).
    pub pos: Option<spec::Pos>,
    /// E.g. "service `sshd`", "the kernel".
    pub what: String,
}

/// The distinct images of `spec`, in the order they first appear in the output.
pub fn images(spec: &Spec) -> Vec<ImageUse> {
    let mut out: Vec<ImageUse> = Vec::new();
    let mut add = |r: &spec::ImageRef, what: String| {
        if !out.iter().any(|u| u.reference == r.reference) {
            out.push(ImageUse {
                reference: r.reference.clone(),
                pos: Some(r.pos.clone()),
                what,
            });
        }
    };
    if let Some(img) = spec.kernel.as_ref().and_then(|k| k.image.as_ref()) {
        add(img, "the kernel".into());
    }
    for (i, img) in spec.init.iter().enumerate() {
        add(img, format!("init image {}", i + 1));
    }
    for v in &spec.volumes {
        if let Some(i) = &v.image {
            add(i, format!("volume `{}`", v.name));
        }
    }
    for (section, entries) in sections(spec) {
        for e in entries {
            add(&e.image, section.what(&e.name));
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Section {
    Onboot,
    Onshutdown,
    Services,
}

/// The bundle sections of `spec`, in output order.
fn sections(spec: &Spec) -> [(Section, &[ImageEntry]); 3] {
    [
        (Section::Onboot, spec.onboot.as_slice()),
        (Section::Onshutdown, spec.onshutdown.as_slice()),
        (Section::Services, spec.services.as_slice()),
    ]
}

impl Section {
    /// The directory holding the section's bundles.
    fn parent(self) -> &'static str {
        match self {
            Section::Onboot => "containers/onboot",
            Section::Onshutdown => "containers/onshutdown",
            Section::Services => "containers/services",
        }
    }
    /// The directory of the bundle of entry `index`, named `name`.
    fn dir(self, index: usize, name: &str) -> String {
        let parent = self.parent();
        match self {
            Section::Onboot | Section::Onshutdown => format!("{parent}/{index:03}-{name}"),
            Section::Services => format!("{parent}/{name}"),
        }
    }
    fn what(self, name: &str) -> String {
        match self {
            Section::Onboot => format!("onboot container `{name}`"),
            Section::Onshutdown => format!("onshutdown container `{name}`"),
            Section::Services => format!("service `{name}`"),
        }
    }
}

/// The defaults an entry inherits from its image.
pub fn image_defaults(info: &ImageInfo) -> ImageDefaults {
    ImageDefaults {
        entrypoint: info.entrypoint.clone(),
        cmd: info.cmd.clone(),
        env: info.env.clone(),
        working_dir: info.working_dir.clone(),
    }
}

/// Plans the output of `spec`: `images` maps every reference of [`images`] to what the
/// source said about it; `files` are the spec's `files` entries, resolved by [`files`].
pub fn plan(
    spec: &Spec,
    images: &HashMap<Reference, ImageInfo>,
    files: Vec<FileOp>,
) -> Result<Plan, PlanError> {
    let mut ops = Vec::new();
    let info = |r: &Reference| {
        images
            .get(r)
            .ok_or_else(|| PlanError::Unresolved(r.to_string()))
    };

    // 1. kernel
    if let Some(k) = &spec.kernel
        && let Some(img) = &k.image
    {
        ops.push(Op::Kernel {
            image: info(&img.reference)?.clone(),
            parts: KernelParts {
                image: img.normalized(),
                binary: k.binary().to_string(),
                tar: k.tar().map(str::to_string),
                ucode: k.ucode().map(str::to_string),
                cmdline: k.cmdline().to_string(),
            },
        });
    }
    // 2. init images at /
    for i in &spec.init {
        ops.push(Op::Image {
            image: info(&i.reference)?.clone(),
            prefix: String::new(),
            resolv: Resolv::Symlink,
        });
    }
    // `containers/`, once, before the volumes and bundles in it.
    let bundles = sections(spec);
    if !spec.volumes.is_empty() || bundles.iter().any(|(_, entries)| !entries.is_empty()) {
        ops.push(Op::Dir("containers".into()));
    }
    // 3. volumes
    if !spec.volumes.is_empty() {
        ops.push(Op::Dir("containers/volumes".into()));
    }
    for v in &spec.volumes {
        let base = format!("containers/volumes/{}", v.name);
        ops.push(Op::Dir(base.clone()));
        ops.push(Op::Dir(format!("{base}/lower")));
        if let Some(img) = &v.image {
            ops.push(Op::Image {
                image: info(&img.reference)?.clone(),
                prefix: format!("{base}/lower"),
                resolv: Resolv::Symlink,
            });
        }
        ops.push(Op::Dir(format!("{base}/tmp")));
        ops.push(Op::Dir(format!("{base}/merged")));
    }
    // 4-6. bundles
    let ids = spec::id_map(spec);
    let mut first_copy: HashMap<String, String> = HashMap::new();
    for (section, entries) in bundles {
        if entries.is_empty() {
            continue;
        }
        ops.push(Op::Dir(section.parent().into()));
        for (i, e) in entries.iter().enumerate() {
            bundle(
                &mut ops,
                &spec.volumes,
                section,
                i,
                e,
                info(&e.image.reference)?,
                &ids,
                &mut first_copy,
            )?;
        }
    }
    // 7. files
    ops.extend(files.into_iter().map(Op::UserFile));
    Ok(Plan { ops })
}

#[allow(clippy::too_many_arguments)]
fn bundle(
    ops: &mut Vec<Op>,
    volumes: &[Volume],
    section: Section,
    index: usize,
    e: &ImageEntry,
    info: &ImageInfo,
    ids: &BTreeMap<String, u32>,
    first_copy: &mut HashMap<String, String>,
) -> Result<(), PlanError> {
    let what = section.what(&e.name);
    let image = e.image.normalized();
    let label = match info.moby_label() {
        Some(text) => Some(
            spec::parse_label(&image, text).map_err(|diags| PlanError::Label {
                what: what.clone(),
                image: image.clone(),
                diags,
            })?,
        ),
        None => None,
    };
    let resolved = merge::resolve(e, label.as_ref(), &image_defaults(info)).map_err(|source| {
        PlanError::Merge {
            what: what.clone(),
            image: image.clone(),
            source,
        }
    })?;
    // The label may bind volumes too: check the merged binds (SPEC §2.4).
    for b in resolved.config.binds.iter().flatten() {
        validate::check_volume_bind(volumes, b).map_err(|message| PlanError::Volume {
            what: what.clone(),
            image: image.clone(),
            message,
        })?;
    }
    let cfg = bundle::bundle_config(&resolved, ids).map_err(|source| PlanError::Oci {
        what: what.clone(),
        image: image.clone(),
        source,
    })?;
    let dir = section.dir(index, &e.name);
    let own = bundle::own_root(&dir, resolved.readonly);
    let root = match first_copy.get(&image) {
        Some(first) => first.clone(),
        None => {
            first_copy.insert(image.clone(), own.clone());
            own.clone()
        }
    };
    let placed_here = root == own;
    ops.push(Op::Dir(dir.clone()));
    if placed_here {
        ops.push(Op::Dir(own.clone()));
        ops.push(Op::Image {
            image: info.clone(),
            prefix: own,
            resolv: Resolv::File,
        });
    }
    ops.push(Op::File {
        path: format!("{dir}/config.json"),
        data: cfg.config_json,
    });
    if !resolved.readonly {
        ops.push(Op::Dir(format!("{dir}/tmp")));
        ops.push(Op::Dir(format!("{dir}/rootfs")));
    } else if !placed_here {
        ops.push(Op::Dir(format!("{dir}/rootfs")));
    }
    let mounts = bundle::rootfs_mounts(&dir, &root, resolved.readonly);
    ops.push(Op::File {
        path: format!("{dir}/runtime.json"),
        data: bundle::runtime_json(&cfg.runtime, mounts),
    });
    Ok(())
}

/// Resolves the `files` entries of `spec` (SPEC §2.2): sources found on the host (a missing
/// non-optional one is an error), modes and owners as numbers, `metadata` documents
/// generated. Touches only the host's file system: run before any image is fetched.
pub fn files(spec: &Spec) -> Result<Vec<FileOp>, PlanError> {
    let ids = spec::id_map(spec);
    spec.files.iter().map(|f| file(spec, f, &ids)).collect()
}

fn file(spec: &Spec, f: &FileEntry, ids: &BTreeMap<String, u32>) -> Result<FileOp, PlanError> {
    let what = format!("{}: files entry `{}`", f.pos, f.path);
    let fail = |message: String| PlanError::File {
        what: what.clone(),
        message,
    };
    let kind = f.kind().ok_or_else(|| fail("no content source".into()))?;
    let dir = kind == FileKind::Directory;
    // `mode: ""` is the default, as in LinuxKit.
    let mode = match f.mode.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => spec::rules::parse_mode(m).map_err(&fail)?,
        None if dir => 0o700,
        None => 0o600,
    };
    let id = |id: Option<&Id>| {
        id.map_or(Ok(0), |id| spec::rules::resolve_id(id, ids))
            .map(u64::from)
            .map_err(|e| fail(e.to_string()))
    };
    let (uid, gid) = (id(f.uid.as_ref())?, id(f.gid.as_ref())?);
    // Parents get the entry's permissions, plus `x` wherever a class may read or write.
    let mut parent_mode = mode & 0o777;
    for shift in [6, 3, 0] {
        if (parent_mode >> shift) & 0o7 != 0 {
            parent_mode |= 1 << shift;
        }
    }
    let path = f.output_path().to_string();
    let parents = path
        .match_indices('/')
        .map(|(i, _)| path[..i].to_string())
        .collect();
    let content = match kind {
        FileKind::Directory => FileContent::Directory,
        FileKind::Symlink(t) => FileContent::Symlink(t.to_string()),
        FileKind::Contents(c) => FileContent::Data(c.as_bytes().to_vec()),
        FileKind::Metadata(MetadataFormat::Yaml) => {
            FileContent::Data(spec::to_yaml(spec).into_bytes())
        }
        FileKind::Metadata(MetadataFormat::Json) => {
            FileContent::Data(spec::to_json(spec).into_bytes())
        }
        FileKind::Source(s) => match spec::resolve_source(f).map_err(&fail)? {
            Some(p) => FileContent::Source(p),
            None => FileContent::Missing(s.to_string()),
        },
    };
    Ok(FileOp {
        what,
        path,
        mode,
        uid,
        gid,
        parents,
        parent_mode,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_generated_directory_once_in_first_use_order() {
        let yaml = "init:\n  - i/init:1\nvolumes:\n  - name: v\nonboot:\n  - name: a\n    image: i/a:1\n    command: [x]\nservices:\n  - name: s\n    image: i/a:1\n    command: [x]\n    readonly: true\n";
        let spec = spec::load_text(&[("t.yml", yaml)]).unwrap().spec;
        let images = images(&spec)
            .iter()
            .map(|u| (u.reference.clone(), ImageInfo::default()))
            .collect();
        let p = plan(&spec, &images, files(&spec).unwrap()).unwrap();
        let dirs: Vec<&str> = p
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Dir(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            dirs,
            [
                "containers",
                "containers/volumes",
                "containers/volumes/v",
                "containers/volumes/v/lower",
                "containers/volumes/v/tmp",
                "containers/volumes/v/merged",
                "containers/onboot",
                "containers/onboot/000-a",
                "containers/onboot/000-a/lower",
                "containers/onboot/000-a/tmp",
                "containers/onboot/000-a/rootfs",
                "containers/services",
                "containers/services/s",
                "containers/services/s/rootfs",
            ]
        );
        assert!(matches!(&p.ops[0], Op::Image { prefix, .. } if prefix.is_empty()));
        assert_eq!(p.ops[1], Op::Dir("containers".into()));
    }
}
