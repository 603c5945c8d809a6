//! The LinuxKit YAML format (SPEC §2): parsing with positions, strict structural checks,
//! semantic validation, merging several files, image references, the label merge, and
//! writing the model back out (`--dry-run`, `files: metadata:`).
//!
//! Entry points: [`load`] (parse + merge + validate: everything that needs no engine),
//! [`parse_label`] (an `org.mobyproject.config` label, validated with the same rules),
//! [`merge::resolve`] (YAML entry + label + image config → final values), [`to_yaml`] /
//! [`to_json`] (the merged document), [`resolve_source`] (a `files` source on the host).
//!
//! Modules: [`yaml`] (text → position-keeping tree), `schema` (structure, types, conversion
//! to the model), [`rules`] (the value rules, shared with `config.json` generation and
//! `build`), [`validate`] (the checks across values and files), `load` (files, multi-file
//! merge, reporting), [`source`], `emit`, [`reference`](mod@reference), [`model`], [`merge`].

mod emit;
mod load;
pub mod merge;
pub mod model;
pub mod reference;
pub mod rules;
mod schema;
pub mod source;
pub mod validate;
pub mod yaml;

use std::fmt;
use std::path::PathBuf;

pub use model::*;
pub use source::resolve_source;

/// The name standard input has in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// Where a YAML document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    /// Standard input (`-` on the command line).
    Stdin,
}

/// One problem found in the input, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Every problem found (a syntax error is reported alone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A loaded, valid spec and the warnings found on the way (e.g. `trust` is ignored).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<Diagnostic>,
}

/// Reads, merges (SPEC §1) and validates (SPEC §2) the given documents. On success the
/// warnings (e.g. `trust` is ignored) come with the spec; on failure every problem is
/// returned, sorted by file, line and column (a YAML syntax error or an unreadable file is
/// returned alone).
pub fn load(inputs: &[Input]) -> Result<Loaded, Diagnostics> {
    load::load(inputs)
}

/// [`load`] of documents given as text, each with the name its diagnostics use.
pub fn load_text(docs: &[(&str, &str)]) -> Result<Loaded, Diagnostics> {
    load::load_texts(
        docs.iter()
            .map(|(name, text)| (std::sync::Arc::from(*name), *text)),
    )
}

/// Parses and validates an `org.mobyproject.config` label of `image`: the keys of an image
/// entry except `name` and `image`, with the same rules (ids and volume names in binds are
/// only checked for syntax here; they are resolved when the bundle is generated). Every
/// diagnostic's position names the image (`label of image `…``).
pub fn parse_label(image: &str, text: &str) -> Result<ImageConfig, Diagnostics> {
    load::parse_label(image, text)
}

/// The merged spec as YAML (`--dry-run`, `metadata: yaml`).
pub fn to_yaml(spec: &Spec) -> String {
    emit::to_yaml(spec)
}

/// The merged spec as JSON (`metadata: json`).
pub fn to_json(spec: &Spec) -> String {
    emit::to_json(spec)
}
