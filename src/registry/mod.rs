//! Images without a Docker engine (issue #14): [`RegistrySource`] resolves a reference
//! straight from its registry (or from what `cache import` loaded) into the cache
//! directory, and opens an image's file system as a tar stream flattened in user space —
//! the same contract as the engine's resolve + export, with no engine contacted.
//!
//! Submodules: [`client`] (registry access on `oci-client`), [`manifest`] (indexes,
//! manifests, configs, platform choice), [`store`] (the cache's blobs, flattened images
//! and imported references), [`flatten`] (layers → one tree), [`import`] (`docker save`
//! archives, OCI archives and layouts).

pub mod client;
pub mod flatten;
pub mod import;
pub mod manifest;
pub mod store;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::archive::TarSink;
use crate::engine::auth::Credentials;
use crate::source::{
    BoxFuture, ImageInfo, ImageSource, ImageStream, ResolveOptions, SourceError,
    normalize_platform, platform_matches,
};
use crate::spec::reference::Reference;
use client::{PullError, Puller, Target};
use flatten::{FlattenError, FlattenOptions, Layer};
use manifest::{Descriptor, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Parsed, Platform};
use store::{Store, StoreError};

pub use import::{ImportReport, import};

/// The most bytes a single layer blob may have.
pub const MAX_LAYER_BLOB_BYTES: u64 = 64 << 30;
/// Time of directories a flattened image gets without any layer having them.
const IMPLICIT_DIR_MTIME: u64 = 1_492_533_000;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("image `{image}`: {message}")]
    Image { image: String, message: String },
    #[error("image `{image}`: {source}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("image `{image}`: the index has no manifest for {wanted}; it has {available}")]
    Platform {
        image: String,
        wanted: String,
        available: String,
    },
    #[error("image `{image}` is {actual}, not the requested platform {wanted}")]
    WrongPlatform {
        image: String,
        actual: String,
        wanted: String,
    },
    #[error("invalid platform `{0}`: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
    BadPlatform(String),
    #[error(transparent)]
    Flatten(#[from] FlattenError),
    #[error("cache import {path}: {message}")]
    Import { path: String, message: String },
}

/// How a [`RegistrySource`] works.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// The cache directory (blobs, flattened images, imported references).
    pub cache_dir: PathBuf,
    /// `--insecure-registry` entries: `HOST[:PORT]` spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// `--platform os/arch[/variant]`; `None`: the host's.
    pub platform: Option<String>,
}

/// Images from registries and the cache, with no engine.
pub struct RegistrySource {
    store: Store,
    puller: Puller,
    platform: Platform,
    /// Whether the platform was asked for (a single-platform image must then match it).
    explicit: Option<String>,
    /// Layers of the images resolved, by image ID.
    layers: Mutex<HashMap<String, Vec<Descriptor>>>,
}

impl RegistrySource {
    /// Credentials come from `DOCKER_CONFIG` (else `~/.docker`), as the engine path's.
    pub fn new(opts: RegistryOptions) -> Result<RegistrySource, RegistryError> {
        Self::with_credentials(opts, Credentials::from_env())
    }

    pub fn with_credentials(
        opts: RegistryOptions,
        credentials: Credentials,
    ) -> Result<RegistrySource, RegistryError> {
        let explicit = match &opts.platform {
            Some(p) => {
                Some(normalize_platform(p).map_err(|_| RegistryError::BadPlatform(p.clone()))?)
            }
            None => None,
        };
        let platform = explicit
            .as_deref()
            .map(Platform::parse)
            .unwrap_or_else(Platform::host);
        let puller = Puller::new(opts.insecure, credentials).map_err(|e| RegistryError::Image {
            image: String::new(),
            message: e.0,
        })?;
        Ok(RegistrySource {
            store: Store::new(opts.cache_dir),
            puller,
            platform,
            explicit,
            layers: Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The platform images are picked for.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Resolves `image`: manifest (through its index for the platform), config and layers
    /// into the cache. A reference `cache import` loaded, or one by digest whose manifest
    /// is cached, needs no network.
    pub async fn resolve(&self, image: &Reference) -> Result<ImageInfo, RegistryError> {
        let name = image.to_string();
        let err = |message: String| RegistryError::Image {
            image: name.clone(),
            message,
        };
        let store_err = |source| RegistryError::Store {
            image: name.clone(),
            source,
        };
        let pull_err = |e: PullError| err(e.0);
        // Where the top manifest comes from.
        let local = match (&image.digest, self.store.get_ref(&name)) {
            (Some(d), _) if self.store.has_blob(d, None) => Some(d.clone()),
            (None, Some(rec)) => Some(rec.digest),
            _ => None,
        };
        let mut target: Option<Target> = None;
        let (bytes, ctype, digest) = match &local {
            Some(d) => (
                self.store
                    .read_small(d, MAX_MANIFEST_BYTES)
                    .map_err(store_err)?,
                None,
                d.clone(),
            ),
            None => {
                let t = self.puller.target(image).await.map_err(pull_err)?;
                let got = self
                    .puller
                    .manifest(&t, image.tag_or_digest())
                    .await
                    .map_err(pull_err)?;
                target = Some(t);
                got
            }
        };
        self.keep(&digest, &bytes).map_err(store_err)?;
        let doc = manifest::parse(&bytes, ctype.as_deref())
            .map_err(|m| err(format!("manifest {digest}: {m}")))?;
        let (config, layers) = match doc {
            Parsed::Manifest { config, layers } => (config, layers),
            Parsed::Index(entries) => {
                let chosen = manifest::pick(&entries, &self.platform).ok_or_else(|| {
                    let have = manifest::platforms(&entries);
                    RegistryError::Platform {
                        image: name.clone(),
                        wanted: self.platform.to_string(),
                        available: if have.is_empty() {
                            "no platforms".into()
                        } else {
                            have.join(", ")
                        },
                    }
                })?;
                if chosen.size > MAX_MANIFEST_BYTES {
                    return Err(err(format!(
                        "manifest {} is larger than {MAX_MANIFEST_BYTES} bytes",
                        chosen.digest
                    )));
                }
                let bytes = if self.store.has_blob(&chosen.digest, Some(chosen.size)) {
                    self.store
                        .read_small(&chosen.digest, MAX_MANIFEST_BYTES)
                        .map_err(store_err)?
                } else {
                    let t = self.target(&mut target, image, &local).await?;
                    let (b, _, d) = self
                        .puller
                        .manifest(t, &chosen.digest)
                        .await
                        .map_err(pull_err)?;
                    if b.len() as u64 != chosen.size {
                        return Err(err(format!(
                            "manifest {d}: size mismatch: the index says {} bytes, the registry sent {}",
                            chosen.size,
                            b.len()
                        )));
                    }
                    self.keep(&d, &b).map_err(store_err)?;
                    b
                };
                match manifest::parse(&bytes, Some(&chosen.media_type))
                    .map_err(|m| err(format!("manifest {}: {m}", chosen.digest)))?
                {
                    Parsed::Manifest { config, layers } => (config, layers),
                    Parsed::Index(_) => {
                        return Err(err(format!(
                            "index entry {} is another index, not a manifest",
                            chosen.digest
                        )));
                    }
                }
            }
        };
        if config.size > MAX_CONFIG_BYTES {
            return Err(err(format!(
                "config {} is larger than {MAX_CONFIG_BYTES} bytes",
                config.digest
            )));
        }
        for d in std::iter::once(&config).chain(&layers) {
            store::digest_hex(&d.digest).map_err(store_err)?;
        }
        let missing: Vec<&Descriptor> = std::iter::once(&config)
            .chain(&layers)
            .filter(|d| !self.store.has_blob(&d.digest, Some(d.size)))
            .collect();
        if !missing.is_empty() {
            let t = self.target(&mut target, image, &local).await?;
            for d in missing {
                let limit = if d.digest == config.digest {
                    MAX_CONFIG_BYTES
                } else {
                    MAX_LAYER_BLOB_BYTES
                };
                self.puller
                    .blob(t, d, &self.store, limit)
                    .await
                    .map_err(pull_err)?;
            }
        }
        let cfg = self
            .store
            .read_small(&config.digest, MAX_CONFIG_BYTES)
            .map_err(store_err)?;
        let mut info = manifest::image_info(&name, &config.digest, &cfg).map_err(err)?;
        // The compressed layers' sizes: enough to start the larger images first.
        info.size = layers.iter().map(|d| d.size).sum();
        if let Some(wanted) = &self.explicit
            && !platform_matches(&info, wanted)
        {
            let actual = Platform {
                os: info.os.clone(),
                architecture: info.architecture.clone(),
                variant: info.variant.clone(),
            };
            return Err(RegistryError::WrongPlatform {
                image: name,
                actual: actual.to_string(),
                wanted: wanted.clone(),
            });
        }
        self.layers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.id.clone(), layers);
        Ok(info)
    }

    /// The registry connection, made when first needed; an image loaded by `cache import`
    /// whose blobs are incomplete is an error rather than a pull from a registry it never
    /// came from.
    async fn target<'t>(
        &self,
        target: &'t mut Option<Target>,
        image: &Reference,
        local: &Option<String>,
    ) -> Result<&'t Target, RegistryError> {
        let name = image.to_string();
        if local.is_some() && image.digest.is_none() {
            return Err(RegistryError::Image {
                image: name,
                message: "it was loaded by `cache import`, but the cache lacks some of its blobs: import it again".into(),
            });
        }
        if target.is_none() {
            let t = self
                .puller
                .target(image)
                .await
                .map_err(|e| RegistryError::Image {
                    image: name,
                    message: e.0,
                })?;
            *target = Some(t);
        }
        target.as_ref().ok_or_else(|| RegistryError::Image {
            image: image.to_string(),
            message: "no registry connection".into(),
        })
    }

    /// Stores a manifest (already checked against `digest`) as a blob.
    fn keep(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.store.has_blob(digest, Some(bytes.len() as u64)) {
            return Ok(());
        }
        let mut r = bytes;
        self.store
            .put(
                Some(digest),
                Some(bytes.len() as u64),
                MAX_MANIFEST_BYTES,
                &mut r,
            )
            .map(|_| ())
    }

    /// The flattened file system of a resolved image, as a tar stream (unfiltered, like an
    /// engine export). Flattened once per image ID into the cache
    /// (`images/sha256/<hex>.tar`, temporary file + rename) and read from there.
    pub fn open(&self, image: &ImageInfo) -> Result<File, RegistryError> {
        let store_err = |source| RegistryError::Store {
            image: image.reference.clone(),
            source,
        };
        let path = self.store.image_path(&image.id).map_err(store_err)?;
        if let Ok(f) = File::open(&path) {
            return Ok(f);
        }
        let descs = self
            .layers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&image.id)
            .cloned()
            .ok_or_else(|| RegistryError::Image {
                image: image.reference.clone(),
                message: format!("image {} was not resolved by this source", image.id),
            })?;
        let layers = descs
            .iter()
            .map(|d| {
                Ok(Layer {
                    path: self.store.blob_path(&d.digest)?,
                    digest: d.digest.clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map_err(store_err)?;
        let tmp = self.store.temp_file().map_err(store_err)?;
        let write_err = |e: std::io::Error| RegistryError::Image {
            image: image.reference.clone(),
            message: format!("writing the flattened image to the cache: {e}"),
        };
        let mut sink = TarSink::new(BufWriter::with_capacity(
            256 * 1024,
            tmp.as_file().try_clone().map_err(write_err)?,
        ));
        let mut opts = FlattenOptions::new(&image.reference);
        opts.mtime = IMPLICIT_DIR_MTIME;
        flatten::flatten(&layers, &mut sink, &opts)?;
        let mut w = sink.finish().map_err(write_err)?;
        w.flush().map_err(write_err)?;
        drop(w);
        self.store.install(tmp, &path).map_err(store_err)?;
        File::open(&path).map_err(|e| RegistryError::Store {
            image: image.reference.clone(),
            source: StoreError::Io {
                path: path.display().to_string(),
                source: e,
            },
        })
    }
}

/// The registry as the build's image source: no engine is contacted. Its streams are not
/// cached again by the image cache (it keeps its own flattened images in the same
/// directory), so `stream_kind` stays `None`.
impl ImageSource for RegistrySource {
    fn resolve<'a>(
        &'a self,
        image: &'a Reference,
        _opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>> {
        Box::pin(async move {
            RegistrySource::resolve(self, image)
                .await
                .map_err(|e| source_error(&image.to_string(), e))
        })
    }

    fn open(&self, image: &ImageInfo) -> Result<ImageStream, SourceError> {
        let f = RegistrySource::open(self, image).map_err(|e| source_error(&image.reference, e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, f)))
    }

    fn abort(&self) -> BoxFuture<'_, ()> {
        // Blobs and flattened images are written to temporary files renamed into place:
        // an interrupted build leaves nothing a later one trusts.
        Box::pin(async {})
    }
}

/// A registry error as the seam's error, naming the image.
fn source_error(image: &str, e: RegistryError) -> SourceError {
    let text = e.to_string();
    let message = text
        .strip_prefix(&format!("image `{image}`: "))
        .unwrap_or(&text)
        .to_string();
    SourceError::Image {
        image: image.to_string(),
        message,
    }
}
