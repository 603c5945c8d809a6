//! Talking to registries over the OCI distribution API, on `oci-client`: credentials as the
//! engine path finds them (`engine::auth`: `DOCKER_CONFIG` `auths`, `credsStore`,
//! `credHelpers`), bearer-token and basic auth (oci-client's token dance), plain HTTP only
//! for loopback registries and `--insecure-registry` hosts.
//!
//! Manifests are fetched here with a size bound (oci-client reads a manifest body whole,
//! however large), with the token oci-client negotiated. Blobs stream through
//! `pull_blob_stream` into the [`Store`], capped at the descriptor's size and checked
//! against its digest while they stream (oci-client checks the digest only at the end and
//! never the size).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::manifest::{ACCEPT, Descriptor, MAX_MANIFEST_BYTES};
use super::store::{Store, sha256_digest};
use crate::engine::auth::Credentials;
use crate::spec::reference::Reference;

/// A failure talking to a registry (the caller adds the image).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PullError(pub String);

/// Whether `host` (`name[:port]`) is spoken to over plain HTTP: loopback registries (as
/// Docker does) and the `--insecure-registry` entries (`HOST[:PORT]`; an entry without a
/// port covers every port of that host).
pub fn plain_http(host: &str, insecure: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    loopback
        || insecure.iter().any(|i| {
            let i = i.trim().trim_end_matches('/');
            i == host || (!i.contains(':') && i == name)
        })
}

/// Registry clients (one per registry host, so each gets its own protocol) and credentials.
pub struct Puller {
    insecure: Vec<String>,
    credentials: Credentials,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    http: reqwest::Client,
}

/// What one reference needs for its requests.
pub struct Target {
    pub oci: oci_client::Reference,
    pub auth: RegistryAuth,
    client: Arc<Client>,
    /// The bearer token oci-client negotiated, if any.
    token: Option<String>,
}

fn oci_error(e: oci_client::errors::OciDistributionError) -> PullError {
    PullError(e.to_string())
}

impl Puller {
    pub fn new(insecure: Vec<String>, credentials: Credentials) -> Result<Puller, PullError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| PullError(format!("cannot make an HTTP client: {e}")))?;
        Ok(Puller {
            insecure,
            credentials,
            clients: Mutex::new(HashMap::new()),
            http,
        })
    }

    fn client_for(&self, registry: &str) -> Arc<Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(registry.to_string())
            .or_insert_with(|| {
                let protocol = if plain_http(registry, &self.insecure) {
                    ClientProtocol::HttpsExcept(vec![registry.to_string()])
                } else {
                    ClientProtocol::Https
                };
                Arc::new(Client::new(ClientConfig {
                    protocol,
                    // We pick from indexes ourselves.
                    platform_resolver: None,
                    connect_timeout: Some(Duration::from_secs(30)),
                    read_timeout: Some(Duration::from_secs(300)),
                    ..Default::default()
                }))
            })
            .clone()
    }

    /// Credentials and an authenticated client for `r` (its repository, pull scope).
    pub async fn target(&self, r: &Reference) -> Result<Target, PullError> {
        let oci = match (&r.tag, &r.digest) {
            (_, Some(d)) => {
                oci_client::Reference::with_digest(r.domain.clone(), r.path.clone(), d.clone())
            }
            (t, None) => oci_client::Reference::with_tag(
                r.domain.clone(),
                r.path.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let found = self
            .credentials
            .get(&r.domain)
            .await
            .map_err(|e| PullError(e.to_string()))?;
        let auth = match found.credentials {
            Some(c) => match (c.username, c.password, c.identitytoken) {
                (Some(u), Some(p), _) => RegistryAuth::Basic(u, p),
                (_, _, Some(_)) => {
                    log::warn!(
                        "credentials for {} are an identity token, which registry pulls cannot use; pulling anonymously",
                        r.domain
                    );
                    RegistryAuth::Anonymous
                }
                _ => RegistryAuth::Anonymous,
            },
            None => RegistryAuth::Anonymous,
        };
        let client = self.client_for(oci.resolve_registry());
        let token = client
            .auth(&oci, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| PullError(format!("authenticating with {}: {e}", r.domain)))?;
        Ok(Target {
            oci,
            auth,
            client,
            token,
        })
    }

    /// The manifest or index `reference` (a tag or a digest) names: its bytes (at most
    /// [`MAX_MANIFEST_BYTES`]), `Content-Type` and digest (checked when `reference` is one).
    pub async fn manifest(
        &self,
        t: &Target,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, String), PullError> {
        let registry = t.oci.resolve_registry();
        let scheme = if plain_http(registry, &self.insecure) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{reference}",
            t.oci.repository()
        );
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPT.join(", "));
        match (&t.token, &t.auth) {
            (Some(tok), _) => req = req.bearer_auth(tok),
            (None, RegistryAuth::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
            (None, RegistryAuth::Bearer(tok)) => req = req.bearer_auth(tok),
            (None, RegistryAuth::Anonymous) => {}
        }
        let resp = req
            .send()
            .await
            .map_err(|e| PullError(format!("GET {url}: {e}")))?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            let mut body = Vec::new();
            let mut s = resp.bytes_stream();
            while let Some(Ok(c)) = s.next().await {
                body.extend_from_slice(&c);
                if body.len() > 4096 {
                    body.truncate(4096);
                    break;
                }
            }
            let said = String::from_utf8_lossy(&body).trim().to_string();
            let hint = match status.as_u16() {
                401 | 403 => match &t.auth {
                    RegistryAuth::Anonymous => {
                        " (no credentials found for this registry: `docker login` it, or set DOCKER_CONFIG)"
                    }
                    _ => " (credentials from the docker configuration were refused)",
                },
                404 => " (no such image or tag)",
                _ => "",
            };
            return Err(PullError(format!("GET {url}: {status}{hint}: {said}")));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES)
        {
            return Err(PullError(format!(
                "GET {url}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        let mut s = resp.bytes_stream();
        while let Some(c) = s.next().await {
            let c = c.map_err(|e| PullError(format!("GET {url}: {e}")))?;
            if (body.len() + c.len()) as u64 > MAX_MANIFEST_BYTES {
                return Err(PullError(format!(
                    "GET {url}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&c);
        }
        let digest = sha256_digest(&body);
        if reference.contains(':') && reference != digest {
            return Err(PullError(format!(
                "manifest {reference}: digest mismatch: the registry sent content with {digest}"
            )));
        }
        Ok((body, ctype, digest))
    }

    /// Streams blob `d` into `store` (nothing to do when it is there already), checked
    /// against its size, digest and `limit`.
    pub async fn blob(
        &self,
        t: &Target,
        d: &Descriptor,
        store: &Store,
        limit: u64,
    ) -> Result<(), PullError> {
        if store.has_blob(&d.digest, Some(d.size)) {
            return Ok(());
        }
        if d.size > limit {
            return Err(PullError(format!(
                "blob {} is {} bytes, more than the limit of {limit}",
                d.digest, d.size
            )));
        }
        let desc = OciDescriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: i64::try_from(d.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut s = t
            .client
            .pull_blob_stream(&t.oci, &desc)
            .await
            .map_err(|e| PullError(format!("blob {}: {}", d.digest, oci_error(e))))?;
        if let Some(n) = s.content_length
            && n != d.size
        {
            return Err(PullError(format!(
                "blob {}: size mismatch: the registry announces {n} bytes, the manifest {}",
                d.digest, d.size
            )));
        }
        let mut w = store
            .writer(Some(&d.digest), Some(d.size), limit)
            .map_err(|e| PullError(e.to_string()))?;
        while let Some(chunk) = s.stream.next().await {
            let chunk = chunk.map_err(|e| PullError(format!("blob {}: {e}", d.digest)))?;
            w.write(&chunk).map_err(|e| PullError(e.to_string()))?;
        }
        w.commit().map_err(|e| PullError(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_hosts() {
        let none: Vec<String> = Vec::new();
        for h in [
            "127.0.0.1:5000",
            "localhost:1",
            "localhost",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(plain_http(h, &none), "{h}");
        }
        for h in [
            "docker.io",
            "index.docker.io",
            "r.example:5000",
            "10.0.0.1:5000",
        ] {
            assert!(!plain_http(h, &none), "{h}");
        }
        let insecure = vec!["r.example:5000".to_string(), "10.0.0.1".to_string()];
        assert!(plain_http("r.example:5000", &insecure));
        assert!(!plain_http("r.example:5001", &insecure));
        assert!(!plain_http("r.example", &insecure));
        assert!(plain_http("10.0.0.1:5000", &insecure));
        assert!(plain_http("10.0.0.1", &insecure));
    }
}
