//! Where the Docker engine is and how to talk to it, decided as the docker CLI does (SPEC §3):
//! `DOCKER_HOST` (`unix://…`, `tcp://…`; default `unix:///var/run/docker.sock`),
//! `DOCKER_TLS_VERIFY` (TLS with certificate checks) with the certificates of
//! `DOCKER_CERT_PATH` (default `DOCKER_CONFIG`, else `~/.docker`): `ca.pem`, `cert.pem`,
//! `key.pem`. Docker CLI contexts are not read. Connecting negotiates the API version (engines
//! from API 1.41 on) and fails with one error that says where it looked and what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{API_DEFAULT_VERSION, Docker};

use super::auth;
use crate::source::SourceError;

/// The docker CLI's default.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// How long a request may wait for the engine's response headers.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long connecting (and the version request) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

const HINT: &str = "start a Docker engine (e.g. `dockerd`, or `sudo systemctl start docker`), or set DOCKER_HOST to where one listens (docker CLI contexts are not read)";

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`, plain HTTP or TLS.
    Tcp {
        addr: String,
        tls: Option<TlsFiles>,
    },
}

/// Client certificate, key and the CA that signed the engine's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem`, `key.pem` in `dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// The engine's address as given (for messages) and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// As the user wrote it (or the default).
    pub host: String,
    pub endpoint: Endpoint,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint {
            Endpoint::Tcp { tls: Some(_), .. } => write!(f, "{} (TLS)", self.host),
            _ => write!(f, "{}", self.host),
        }
    }
}

/// The environment variables that decide the address.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub docker_host: Option<String>,
    pub tls_verify: Option<String>,
    pub tls: Option<String>,
    pub cert_path: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl Env {
    /// This process's environment.
    pub fn current() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            docker_host: var("DOCKER_HOST"),
            tls_verify: var("DOCKER_TLS_VERIFY"),
            tls: var("DOCKER_TLS"),
            cert_path: path("DOCKER_CERT_PATH"),
            config_dir: path("DOCKER_CONFIG"),
            home: path("HOME"),
        }
    }
}

impl Address {
    /// The address the docker CLI would use with `env`.
    pub fn from_env(env: &Env) -> Result<Address, SourceError> {
        let host = env
            .docker_host
            .clone()
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let bad = |why: String| SourceError::Connect(format!("DOCKER_HOST `{host}`: {why}"));
        let tls = env.tls_verify.is_some();
        let endpoint = if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("no socket path".into()));
            }
            Endpoint::Unix(PathBuf::from(path))
        } else if let Some(rest) = host.strip_prefix("tcp://") {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') {
                return Err(bad("expected tcp://HOST:PORT".into()));
            }
            // The docker CLI's default ports.
            let has_port = match hostport.rsplit_once(':') {
                Some((h, p)) => !p.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok(),
                None => false,
            };
            let addr = if has_port {
                hostport.to_string()
            } else if hostport.contains(':') && !hostport.starts_with('[') {
                return Err(bad("invalid port".into()));
            } else {
                format!("{hostport}:{}", if tls { 2376 } else { 2375 })
            };
            if env.tls.is_some() && !tls {
                return Err(bad(
                    "DOCKER_TLS without DOCKER_TLS_VERIFY (TLS without checking the engine's certificate) is not supported; set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH".into(),
                ));
            }
            let tls = if tls {
                let dir = env
                    .cert_path
                    .clone()
                    .or_else(|| auth::config_dir(env.config_dir.clone(), env.home.as_deref()))
                    .ok_or_else(|| {
                        bad(
                            "DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is"
                                .into(),
                        )
                    })?;
                Some(TlsFiles::in_dir(&dir))
            } else {
                None
            };
            Endpoint::Tcp { addr, tls }
        } else {
            let scheme = host.split_once("://").map_or("", |(s, _)| s);
            return Err(bad(if scheme.is_empty() {
                "expected unix:///PATH or tcp://HOST:PORT".into()
            } else {
                format!("the `{scheme}://` scheme is not supported (use unix:// or tcp://)")
            }));
        };
        Ok(Address { host, endpoint })
    }
}

/// Installs the process's TLS crypto provider (ring) once; harmless when one is installed.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Connects to the engine at `addr`, checks that it answers and negotiates the API version.
pub async fn connect(addr: &Address) -> Result<Docker, SourceError> {
    let docker = match &addr.endpoint {
        Endpoint::Unix(path) => {
            if !path.exists() {
                return Err(SourceError::Connect(format!(
                    "no Docker engine at {addr}: {} does not exist; {HINT}",
                    path.display()
                )));
            }
            let p = path.to_string_lossy();
            Docker::connect_with_unix(&p, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
        Endpoint::Tcp { addr: a, tls: None } => {
            Docker::connect_with_http(&format!("tcp://{a}"), REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
        Endpoint::Tcp {
            addr: a,
            tls: Some(files),
        } => {
            for (what, f) in [
                ("CA certificate", &files.ca),
                ("client certificate", &files.cert),
                ("client key", &files.key),
            ] {
                if !f.is_file() {
                    return Err(SourceError::Connect(format!(
                        "cannot connect to the Docker engine at {addr}: DOCKER_TLS_VERIFY is set but the {what} {} does not exist (set DOCKER_CERT_PATH to the directory with ca.pem, cert.pem and key.pem)",
                        f.display()
                    )));
                }
            }
            install_crypto_provider();
            Docker::connect_with_ssl(
                &format!("tcp://{a}"),
                &files.key,
                &files.cert,
                &files.ca,
                REQUEST_TIMEOUT_SECS,
                API_DEFAULT_VERSION,
            )
        }
    }
    .map_err(|e| {
        SourceError::Connect(format!(
            "cannot connect to the Docker engine at {addr}: {e}; {HINT}"
        ))
    })?;
    let negotiated = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await;
    let docker = match negotiated {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            let why = message(&e);
            let lower = why.to_ascii_lowercase();
            let hint = if lower.contains("permission denied") {
                "is this user allowed to use the socket (e.g. in the `docker` group)?".to_string()
            } else if let Endpoint::Tcp {
                tls: Some(files), ..
            } = &addr.endpoint
                && ["certificate", "alert", "tls", "handshake"]
                    .iter()
                    .any(|w| lower.contains(w))
            {
                format!(
                    "check the TLS files {}, {} and {} (DOCKER_CERT_PATH) against the engine's",
                    files.ca.display(),
                    files.cert.display(),
                    files.key.display()
                )
            } else {
                HINT.to_string()
            };
            return Err(SourceError::Connect(format!(
                "the Docker engine at {addr} does not answer: {why}; {hint}"
            )));
        }
        Err(_) => {
            return Err(SourceError::Connect(format!(
                "the Docker engine at {addr} did not answer within {} s; {HINT}",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let version = docker.client_version();
    log::debug!(
        "connected to the Docker engine at {addr}, API {}.{}",
        version.major_version,
        version.minor_version
    );
    Ok(docker)
}

/// The engine's own words for an error.
pub fn message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => {
            // Include the causes (hyper's "connection refused" is a few levels down).
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(c) = src {
                let t = c.to_string();
                if !s.contains(&t) {
                    s.push_str(": ");
                    s.push_str(&t);
                }
                src = c.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(host: Option<&str>) -> Env {
        Env {
            docker_host: host.map(str::to_string),
            home: Some(PathBuf::from("/home/u")),
            ..Env::default()
        }
    }

    #[test]
    fn addresses_as_the_docker_cli_reads_them() {
        let a = Address::from_env(&env(None)).unwrap();
        assert_eq!(a.endpoint, Endpoint::Unix("/var/run/docker.sock".into()));
        let a = Address::from_env(&env(Some("unix:///tmp/d.sock"))).unwrap();
        assert_eq!(a.endpoint, Endpoint::Unix("/tmp/d.sock".into()));
        let a = Address::from_env(&env(Some("tcp://10.0.0.1:2375"))).unwrap();
        assert_eq!(
            a.endpoint,
            Endpoint::Tcp {
                addr: "10.0.0.1:2375".into(),
                tls: None
            }
        );
        let a = Address::from_env(&env(Some("tcp://engine"))).unwrap();
        assert_eq!(
            a.endpoint,
            Endpoint::Tcp {
                addr: "engine:2375".into(),
                tls: None
            }
        );
        let mut e = env(Some("tcp://engine/"));
        e.tls_verify = Some("1".into());
        let a = Address::from_env(&e).unwrap();
        assert_eq!(
            a.endpoint,
            Endpoint::Tcp {
                addr: "engine:2376".into(),
                tls: Some(TlsFiles::in_dir(Path::new("/home/u/.docker")))
            }
        );
        assert_eq!(a.to_string(), "tcp://engine/ (TLS)");
        e.config_dir = Some("/cfg".into());
        let a = Address::from_env(&e).unwrap();
        assert!(
            matches!(a.endpoint, Endpoint::Tcp { tls: Some(t), .. } if t.ca == Path::new("/cfg/ca.pem"))
        );
        e.cert_path = Some("/certs".into());
        let a = Address::from_env(&e).unwrap();
        assert!(
            matches!(a.endpoint, Endpoint::Tcp { tls: Some(t), .. } if t.key == Path::new("/certs/key.pem"))
        );
    }

    #[test]
    fn bad_addresses_are_named() {
        for h in [
            "ssh://u@h",
            "/var/run/docker.sock",
            "unix://",
            "tcp://",
            "tcp://h:x",
            "tcp://h:1/x",
        ] {
            let e = Address::from_env(&env(Some(h))).unwrap_err().to_string();
            assert!(e.contains(&format!("DOCKER_HOST `{h}`")), "{e}");
        }
        let mut e = env(Some("tcp://h:1"));
        e.tls = Some("1".into());
        let err = Address::from_env(&e).unwrap_err().to_string();
        assert!(err.contains("DOCKER_TLS_VERIFY"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_one_clear_error() {
        let a = Address::from_env(&env(Some("unix:///nonexistent/imagesmith.sock"))).unwrap();
        let e = connect(&a).await.unwrap_err().to_string();
        assert!(e.contains("unix:///nonexistent/imagesmith.sock"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        assert!(e.contains("DOCKER_HOST"), "{e}");
    }

    #[tokio::test]
    async fn missing_tls_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let mut e = env(Some("tcp://127.0.0.1:1"));
        e.tls_verify = Some("1".into());
        e.cert_path = Some(d.path().to_path_buf());
        let a = Address::from_env(&e).unwrap();
        let err = connect(&a).await.unwrap_err().to_string();
        assert!(
            err.contains(&*d.path().join("ca.pem").to_string_lossy()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_one_clear_error() {
        // Bind then drop a listener: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = Address::from_env(&env(Some(&format!("tcp://127.0.0.1:{port}")))).unwrap();
        let err = connect(&a).await.unwrap_err().to_string();
        assert!(err.contains(&format!("tcp://127.0.0.1:{port}")), "{err}");
        assert!(err.contains("does not answer"), "{err}");
    }
}
