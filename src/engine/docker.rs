//! The Docker Engine API implementation of [`Engine`], over `bollard`: resolving images
//! (inspect, pull with the stored credentials and progress, inspect again, platform check),
//! export containers labelled with their owner, and removing the containers a dead run left
//! behind ([`DockerEngine::remove_stale`]).

use std::collections::HashMap;
use std::io;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::auth::{self, Credentials, Source};
use super::connect::{self, Address, Env, message};
use super::{ByteStream, Engine, short};
use crate::owner::{self, Owner, Proc, Verdict};
use crate::progress::{Progress, PullEvent};
use crate::source::{BoxFuture, ImageInfo, ResolveOptions, SourceError, platform_matches};
use crate::spec::reference::Reference;

/// The Docker engine.
pub struct DockerEngine {
    docker: Docker,
    owner: Owner,
    credentials: Credentials,
    progress: Progress,
}

impl DockerEngine {
    /// Connects as the docker CLI does (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
    /// `DOCKER_CERT_PATH`; default `/var/run/docker.sock`), with the credentials of
    /// `DOCKER_CONFIG` (default `~/.docker`).
    pub async fn connect_from_env() -> Result<DockerEngine, SourceError> {
        let address = Address::from_env(&Env::current())?;
        DockerEngine::connect(&address, Credentials::from_env()).await
    }

    /// Connects to the engine at `address`; pulls use `credentials`.
    pub async fn connect(
        address: &Address,
        credentials: Credentials,
    ) -> Result<DockerEngine, SourceError> {
        let docker = connect::connect(address).await?;
        Ok(DockerEngine {
            docker,
            owner: Owner::current(),
            credentials,
            progress: Progress::quiet(),
        })
    }

    /// Reports pull progress to `progress` (default: nothing).
    pub fn with_progress(mut self, progress: Progress) -> DockerEngine {
        self.progress = progress;
        self
    }

    /// Removes the containers that imagesmith runs on this host left behind and whose
    /// process is gone (SIGKILL, crash, reboot); never those of a live run or of another
    /// host. Returns the ids removed. Failures are logged: they never stop a build.
    pub async fn remove_stale(&self) -> Vec<String> {
        let filters = HashMap::from([("label", vec![owner::LABEL_TOOL])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = match self.docker.list_containers(Some(opts)).await {
            Ok(l) => l,
            Err(e) => {
                log::warn!(
                    "listing containers left by earlier runs failed: {}",
                    message(&e)
                );
                return Vec::new();
            }
        };
        let mut removed = Vec::new();
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Verdict::Stale(why) = owner::judge(&labels, &self.owner, &Proc) else {
                continue;
            };
            match self.remove(&id).await {
                Ok(()) => {
                    log::info!(
                        "removed container {} left by an earlier imagesmith run ({why})",
                        short(&id)
                    );
                    removed.push(id);
                }
                Err(e) => log::warn!("{e}"),
            }
        }
        removed
    }

    async fn inspect(&self, image: &str) -> Result<Option<ImageInfo>, SourceError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => {
                let c = i.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    reference: image.to_string(),
                    id: i.id.unwrap_or_default(),
                    os: i.os.unwrap_or_default(),
                    architecture: i.architecture.unwrap_or_default(),
                    variant: i.variant.unwrap_or_default(),
                    entrypoint: c.entrypoint.unwrap_or_default(),
                    cmd: c.cmd.unwrap_or_default(),
                    env: c.env,
                    working_dir: c.working_dir.unwrap_or_default(),
                    labels: c.labels.unwrap_or_default().into_iter().collect(),
                    size: i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                }))
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(SourceError::Image {
                image: image.to_string(),
                message: format!("inspecting it failed: {}", message(&e)),
            }),
        }
    }

    async fn pull(&self, r: &Reference, opts: &ResolveOptions) -> Result<(), SourceError> {
        let image = r.to_string();
        let found =
            self.credentials
                .get(&r.domain)
                .await
                .map_err(|cause| SourceError::Credentials {
                    image: image.clone(),
                    cause: cause.to_string(),
                })?;
        let mut b = CreateImageOptionsBuilder::default()
            .from_image(&r.repository())
            .tag(r.tag_or_digest());
        if let Some(p) = &opts.platform {
            b = b.platform(p);
        }
        let mut progress = self.progress.pull(&image);
        let mut stream = self
            .docker
            .create_image(Some(b.build()), None, found.credentials.clone());
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let detail = info.progress_detail.unwrap_or_default();
                    progress.event(&PullEvent {
                        id: info.id.as_deref(),
                        status: info.status.as_deref().unwrap_or(""),
                        current: detail.current,
                        total: detail.total,
                    });
                }
                Err(e) => return Err(pull_error(&image, &e, r, &found.source, &self.credentials)),
            }
        }
        progress.finish();
        Ok(())
    }
    /// Builds `context` (a tar file) into the image `tag`; returns the image id.
    pub async fn build_image(
        &self,
        context: std::fs::File,
        tag: &str,
    ) -> Result<String, SourceError> {
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .networkmode("none")
            .build();
        let img = |message: String| SourceError::Image {
            image: tag.to_string(),
            message,
        };
        let file = tokio::fs::File::from_std(context);
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        let mut stream = self.docker.build_image(opts, None, Some(body));
        let mut id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| img(message(&e)))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(img(err.trim().to_string()));
            }
            if let Some(line) = info.stream {
                let line = line.trim_end();
                if line.starts_with("Step ") {
                    log::info!("{tag}: {line}");
                } else if !line.is_empty() {
                    log::debug!("{tag}: {line}");
                }
            }
            if let Some(aux) = info.aux
                && let Some(i) = aux.id
            {
                id = Some(i);
            }
        }
        id.ok_or_else(|| img("the engine did not report an image id".into()))
    }
}

/// Classifies a failed pull: missing image, refused credentials, or anything else, each
/// naming the image and quoting the engine's (the registry's) words.
fn pull_error(
    image: &str,
    e: &BollardError,
    r: &Reference,
    source: &Source,
    credentials: &Credentials,
) -> SourceError {
    let msg = message(e);
    let lower = msg.to_ascii_lowercase();
    let denied = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "403 forbidden",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if denied {
        let registry = &r.domain;
        let hint = match source {
            Source::Anonymous => {
                let file = credentials
                    .config_file()
                    .map(|f| format!(" in {}", f.display()))
                    .unwrap_or_default();
                format!(
                    "; no credentials for registry `{registry}`{file} (log in with `docker login {}`, or set DOCKER_CONFIG)",
                    auth::server_key(registry)
                )
            }
            Source::Config(f) => format!(
                "; the registry refused the credentials for `{registry}` from {}",
                f.display()
            ),
            Source::Helper(h) => {
                format!("; the registry refused the credentials for `{registry}` from `{h}`")
            }
        };
        return SourceError::PullDenied {
            image: image.to_string(),
            message: msg,
            hint,
        };
    }
    let not_found = matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    ) || lower.contains("manifest unknown")
        || lower.contains("not found");
    if not_found {
        SourceError::NotFound {
            image: image.to_string(),
            message: msg,
        }
    } else {
        SourceError::Pull {
            image: image.to_string(),
            message: msg,
        }
    }
}

impl Engine for DockerEngine {
    fn resolve<'a>(
        &'a self,
        r: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, SourceError>> {
        Box::pin(async move {
            let image = r.to_string();
            let local = if opts.always_pull {
                None
            } else {
                self.inspect(&image).await?
            };
            let info = match local {
                Some(info) => Some(info),
                None => {
                    let why = if opts.always_pull {
                        "pulling it (--pull) failed"
                    } else {
                        "it is not in the engine, and pulling it failed"
                    };
                    self.pull(r, opts).await.map_err(|e| match e {
                        SourceError::NotFound { image, message }
                        | SourceError::Pull { image, message } => SourceError::NotFound {
                            image,
                            message: format!("{why}: {message}"),
                        },
                        other => other,
                    })?;
                    self.inspect(&image).await?
                }
            };
            let info = info.ok_or_else(|| SourceError::Image {
                image: image.clone(),
                message: "the engine does not have it after a successful pull".into(),
            })?;
            if let Some(p) = &opts.platform
                && !platform_matches(&info, p)
            {
                let mut actual = format!("{}/{}", info.os, info.architecture);
                if !info.variant.is_empty() {
                    actual = format!("{actual}/{}", info.variant);
                }
                return Err(SourceError::Platform {
                    image,
                    actual,
                    wanted: p.clone(),
                });
            }
            log::debug!("{image} is {}", info.id);
            Ok(info)
        })
    }

    fn create<'a>(&'a self, image: &'a ImageInfo) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move {
            let body = ContainerCreateBody {
                image: Some(image.id.clone()),
                // Never run; an image without a command still needs one to be created.
                cmd: Some(vec!["/dev/null".to_string()]),
                entrypoint: Some(Vec::new()),
                labels: Some(self.owner.labels()),
                network_disabled: Some(true),
                ..Default::default()
            };
            let opts = CreateContainerOptionsBuilder::default().build();
            let resp = self
                .docker
                .create_container(Some(opts), body)
                .await
                .map_err(|e| SourceError::Image {
                    image: image.reference.clone(),
                    message: format!("creating a container failed: {}", message(&e)),
                })?;
            log::debug!(
                "created container {} for {}",
                short(&resp.id),
                image.reference
            );
            Ok(resp.id)
        })
    }

    fn export(&self, container: &str) -> ByteStream {
        Box::pin(
            self.docker
                .export_container(container)
                .map(|r| r.map_err(|e| io::Error::other(message(&e)))),
        )
    }

    fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(container, Some(opts)).await {
                Ok(()) => {
                    log::debug!("removed container {}", short(container));
                    Ok(())
                }
                // Gone already, or being removed by someone else (another run's clean-up).
                Err(BollardError::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => Ok(()),
                Err(e) => Err(SourceError::Container {
                    container: short(container).to_string(),
                    message: format!("removing it failed: {}", message(&e)),
                }),
            }
        })
    }
}
