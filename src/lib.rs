//! imagesmith assembles bootable Linux system images from container images, reading
//! LinuxKit's YAML format and writing LinuxKit's output layout. See `ARCHITECTURE.md` for the
//! module map and the path data takes.

pub mod archive;
pub mod build;
pub mod bundle;
pub mod cache;
pub mod engine;
pub mod exec;
pub mod oci;
pub mod output;
pub mod owner;
pub mod pkg;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod rewrite;
pub mod signals;
pub mod source;
pub mod spec;
pub mod spool;
pub mod text;
