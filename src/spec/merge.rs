//! The label merge of SPEC §2.1 as a pure function of (YAML entry, label, image config):
//! YAML > `org.mobyproject.config` label > image config (command, env, cwd) > default.

use crate::spec::model::{ImageConfig, ImageEntry};

/// The parts of an image's own configuration that an entry can inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `None` when the image has no `Env`.
    pub env: Option<Vec<String>>,
    /// Empty when unset.
    pub working_dir: String,
}

/// An entry with every field decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: String,
    /// Label and YAML merged field by field, `.add` forms folded in (and then `None`).
    pub config: ImageConfig,
    /// `process.args`: never empty.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("the command is empty: set `command` or use an image with an entrypoint or command")]
    EmptyCommand,
}

/// Merges `entry` over `label` over `image`.
pub fn resolve(
    entry: &ImageEntry,
    label: Option<&ImageConfig>,
    image: &ImageDefaults,
) -> Result<Resolved, MergeError> {
    let _ = (entry, label, image);
    todo!("merge::resolve")
}
