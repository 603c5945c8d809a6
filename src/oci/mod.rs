//! The OCI runtime-spec vocabulary, as a leaf: the typed `config.json` ([`types`]), the
//! capability table ([`caps`]) and Go-compatible JSON encoding ([`gojson`]). Nothing here
//! imports the rest of the crate but the leaf `text` (for "did you mean"); turning a spec
//! entry into a bundle is the bundle module's job.

pub mod caps;
pub mod gojson;
pub mod types;

/// The runtime-spec version written to `ociVersion`.
pub const OCI_VERSION: &str = "1.2.1";
