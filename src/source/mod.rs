//! The image-source seam: what the build asks of wherever images come from. A source
//! resolves a reference to an [`ImageInfo`] (its id and configuration) and opens an image's
//! file system as a tar stream; the Docker engine (the `engine` module) is one implementation,
//! and the cache and registry sources plug in the same way. Nothing here knows a Docker type.
//!
//! [`queue::ExportQueue`] hands the executor each image's stream in output order, running
//! later ones ahead when asked to.

pub mod queue;
pub mod readahead;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;

use crate::spec::reference::Reference;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An image's file system as a tar stream (blocking reads).
pub type ImageStream = Box<dyn Read + Send>;

/// Where images come from.
pub trait ImageSource: Send + Sync {
    /// Resolves `image` (fetching it when the source needs to) and returns its id and
    /// configuration.
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>>;

    /// Opens the file system of a resolved image as a tar stream. Blocks: call it from a
    /// thread that is not a runtime worker. Whatever the source created for it is released
    /// when the stream is dropped.
    fn open(&self, image: &ImageInfo) -> Result<ImageStream, SourceError>;

    /// Releases everything the source holds (containers, temporary files) and makes every
    /// later [`ImageSource::open`] fail: the signal handler's path.
    fn abort(&self) -> BoxFuture<'_, ()>;

    /// Whether opening `image` reads a local copy at disk speed (a cache hit). The export
    /// queue leaves such an image for its turn instead of opening it ahead into a spool,
    /// which would only copy its bytes twice. `false` (the default): opening means an export
    /// or a download, which is worth starting early.
    fn is_local(&self, _image: &ImageInfo) -> bool {
        false
    }

    /// What `open`'s streams are, as part of the cache key (the cache module's): two sources
    /// whose streams of one image differ in bytes answer differently. `None` (the default):
    /// never cached.
    fn stream_kind(&self) -> Option<&str> {
        None
    }
}

/// What imagesmith needs to know about a resolved image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The normalised reference it was resolved from.
    pub reference: String,
    /// The engine's image id (`sha256:…`).
    pub id: String,
    pub os: String,
    pub architecture: String,
    pub variant: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `None` when the image has no `Env` at all.
    pub env: Option<Vec<String>>,
    /// Empty when unset.
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    /// The image's size as its source reports it (the engine's `Size`: the bytes of its file
    /// system); 0 when unknown. Used only to schedule exports: with `--jobs`, larger images
    /// start first ([`queue::ExportQueue`]).
    pub size: u64,
}

impl ImageInfo {
    /// The `org.mobyproject.config` label, if any.
    pub fn moby_label(&self) -> Option<&str> {
        self.labels
            .get("org.mobyproject.config")
            .map(String::as_str)
            .filter(|l| !l.is_empty())
    }
}

/// How images are resolved.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Pull even when the engine has the image.
    pub always_pull: bool,
    /// `os/arch[/variant]` the image must match; `None` = the engine's own.
    pub platform: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Connect(String),
    /// `message` says why: not in the engine and the pull failed, not in the registry, …
    #[error("image `{image}`: {message}")]
    NotFound { image: String, message: String },
    #[error("image `{image}`: pull denied: {message}{hint}")]
    PullDenied {
        image: String,
        /// The registry's answer, as the engine relays it.
        message: String,
        /// What credentials were used, and what to do (starts with `; `).
        hint: String,
    },
    #[error("image `{image}`: pull failed: {message}")]
    Pull { image: String, message: String },
    #[error("image `{image}`: {cause}")]
    Credentials {
        image: String,
        /// What went wrong looking the credentials up.
        cause: String,
    },
    #[error(
        "image `{image}` is {actual}, not the requested platform {wanted} (with --pull, the engine pulls it for {wanted})"
    )]
    Platform {
        image: String,
        actual: String,
        wanted: String,
    },
    #[error("invalid platform `{0}`: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
    BadPlatform(String),
    #[error("image `{image}`: {message}")]
    Image { image: String, message: String },
    #[error("container `{container}`: {message}")]
    Container { container: String, message: String },
}

/// Checks and normalises a `--platform` value the way the engine reads it: lower case,
/// `OS/ARCH[/VARIANT]`, with the usual architecture aliases (`x86_64` = `amd64`,
/// `aarch64` = `arm64`).
pub fn normalize_platform(p: &str) -> Result<String, SourceError> {
    let lower = p.trim().to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let ok_part = |s: &&str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    };
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok_part) {
        return Err(SourceError::BadPlatform(p.to_string()));
    }
    let mut out = vec![parts[0].to_string(), normalize_arch(parts[1]).to_string()];
    if let Some(v) = parts.get(2) {
        out.push((*v).to_string());
    }
    Ok(out.join("/"))
}

/// The engine's name for an architecture.
pub fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

/// Whether an image of `info` is of the (normalised) platform `wanted`. A variant is
/// compared only when both sides have one.
pub fn platform_matches(info: &ImageInfo, wanted: &str) -> bool {
    let mut w = wanted.split('/');
    let (os, arch, variant) = (w.next(), w.next(), w.next());
    os.is_none_or(|o| o.eq_ignore_ascii_case(&info.os))
        && arch.is_none_or(|a| a == normalize_arch(&info.architecture.to_ascii_lowercase()))
        && variant.is_none_or(|v| info.variant.is_empty() || v.eq_ignore_ascii_case(&info.variant))
}
