//! The Docker Engine API implementation of [`Engine`], over `bollard`.

use std::collections::HashMap;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{BoxFuture, ByteStream, Engine, EngineError, ImageInfo, ResolveOptions, byte_stream};
use crate::spec::reference::Reference;

/// Label keys put on every container imagesmith creates.
pub const LABEL_TOOL: &str = "org.imagesmith";
pub const LABEL_RUN: &str = "org.imagesmith.run";
pub const LABEL_HOST: &str = "org.imagesmith.host";
pub const LABEL_PID: &str = "org.imagesmith.pid";

/// The Docker engine.
pub struct DockerEngine {
    docker: Docker,
    /// Where we connected, for messages.
    host: String,
    run_id: String,
}

impl DockerEngine {
    /// Connects as the docker CLI does (`DOCKER_HOST`, default `/var/run/docker.sock`),
    /// negotiates the API version and checks that the engine answers.
    pub async fn connect(run_id: &str) -> Result<DockerEngine, EngineError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let hint = "start a Docker engine (e.g. `dockerd`), or set DOCKER_HOST to where one listens (docker CLI contexts are not read)";
        if let Some(path) = host.strip_prefix("unix://")
            && !std::path::Path::new(path).exists()
        {
            return Err(EngineError::Connect(format!(
                "no Docker engine at {host}: {path} does not exist; {hint}"
            )));
        }
        let docker = Docker::connect_with_defaults().map_err(|e| {
            EngineError::Connect(format!(
                "cannot connect to the Docker engine at {host}: {e}; {hint}"
            ))
        })?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            EngineError::Connect(format!(
                "the Docker engine at {host} does not answer: {e}; {hint}"
            ))
        })?;
        log::debug!(
            "connected to {host}, API version {:?}",
            docker.client_version()
        );
        Ok(DockerEngine {
            docker,
            host,
            run_id: run_id.to_string(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    async fn inspect(&self, image: &str) -> Result<Option<ImageInfo>, EngineError> {
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
                }))
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::Image {
                image: image.to_string(),
                message: format!("inspect failed: {}", message(&e)),
            }),
        }
    }

    async fn pull(&self, r: &Reference, opts: &ResolveOptions) -> Result<(), EngineError> {
        let image = r.to_string();
        let mut b = CreateImageOptionsBuilder::default()
            .from_image(&r.repository())
            .tag(r.tag_or_digest());
        if let Some(p) = &opts.platform {
            b = b.platform(p);
        }
        log::info!("pulling {image}");
        let mut stream = self.docker.create_image(Some(b.build()), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status {
                        log::debug!("{image}: {status}");
                    }
                }
                Err(e) => {
                    return Err(EngineError::Pull {
                        image,
                        message: message(&e),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The engine's own words for an error.
pub(crate) fn message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

fn platform_matches(info: &ImageInfo, wanted: &str) -> bool {
    let mut w = wanted.split('/');
    let (os, arch, variant) = (w.next(), w.next(), w.next());
    os.is_none_or(|o| o == info.os)
        && arch.is_none_or(|a| a == info.architecture)
        && variant.is_none_or(|v| info.variant.is_empty() || v == info.variant)
}

impl Engine for DockerEngine {
    fn resolve<'a>(
        &'a self,
        r: &'a Reference,
        opts: &'a ResolveOptions,
    ) -> BoxFuture<'a, Result<ImageInfo, EngineError>> {
        Box::pin(async move {
            let image = r.to_string();
            let mut info = if opts.always_pull {
                None
            } else {
                self.inspect(&image).await?
            };
            if info.is_none() {
                self.pull(r, opts).await?;
                info = self.inspect(&image).await?;
            }
            let info = info.ok_or_else(|| EngineError::NotFound {
                image: image.clone(),
                message: "the engine does not have it after the pull".into(),
            })?;
            if let Some(p) = &opts.platform
                && !platform_matches(&info, p)
            {
                let mut actual = format!("{}/{}", info.os, info.architecture);
                if !info.variant.is_empty() {
                    actual = format!("{actual}/{}", info.variant);
                }
                return Err(EngineError::Platform {
                    image,
                    actual,
                    wanted: p.clone(),
                });
            }
            Ok(info)
        })
    }

    fn create<'a>(&'a self, image: &'a ImageInfo) -> BoxFuture<'a, Result<String, EngineError>> {
        Box::pin(async move {
            let labels = HashMap::from([
                (LABEL_TOOL.to_string(), "1".to_string()),
                (LABEL_RUN.to_string(), self.run_id.clone()),
                (LABEL_HOST.to_string(), hostname()),
                (LABEL_PID.to_string(), std::process::id().to_string()),
            ]);
            let body = ContainerCreateBody {
                image: Some(image.id.clone()),
                // Never run; an image without a command still needs one to be created.
                cmd: Some(vec!["/dev/null".to_string()]),
                entrypoint: Some(Vec::new()),
                labels: Some(labels),
                network_disabled: Some(true),
                ..Default::default()
            };
            let opts = CreateContainerOptionsBuilder::default().build();
            let resp = self
                .docker
                .create_container(Some(opts), body)
                .await
                .map_err(|e| EngineError::Image {
                    image: image.reference.clone(),
                    message: format!("creating a container failed: {}", message(&e)),
                })?;
            log::debug!("created container {} for {}", resp.id, image.reference);
            Ok(resp.id)
        })
    }

    fn export(&self, container: &str) -> ByteStream {
        byte_stream(self.docker.export_container(container))
    }

    fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match self.docker.remove_container(container, Some(opts)).await {
                Ok(())
                | Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    log::debug!("removed container {container}");
                    Ok(())
                }
                Err(e) => Err(EngineError::Container {
                    container: container.to_string(),
                    message: format!("remove failed: {}", message(&e)),
                }),
            }
        })
    }
}

/// This host's name, as labels record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
