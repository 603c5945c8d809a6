//! Registry credentials for pulls, from what `docker login` stored (SPEC §3):
//! `config.json` in `DOCKER_CONFIG` (default `~/.docker`), its `auths` entries, `credsStore`
//! and `credHelpers` (through `docker-credential-<name> get`, found on `PATH`). The lookup
//! itself is the `docker_credential` crate's; this module decides the server key of a
//! registry, treats "no credential" as anonymous, turns failures into errors that name the
//! file or helper at fault, and asks once per registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::auth::DockerCredentials;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use tokio::sync::OnceCell;

/// Docker Hub's key in `config.json` (as the docker CLI writes it).
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A failure to get a registry's credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("credentials for registry `{registry}`: {message}")]
pub struct AuthError {
    pub registry: String,
    pub message: String,
}

/// Where the credentials of a registry came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No credential stored: the pull is anonymous.
    Anonymous,
    /// An `auths` entry of this file.
    Config(PathBuf),
    /// This helper program.
    Helper(String),
}

/// Credentials found for a registry.
#[derive(Debug, Clone)]
pub struct Found {
    pub credentials: Option<DockerCredentials>,
    pub source: Source,
}

/// Credential lookups, cached per registry.
pub struct Credentials {
    dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, Arc<OnceCell<Found>>>>,
}

impl Credentials {
    /// Reads `DOCKER_CONFIG`, else `~/.docker`, as the docker CLI does.
    pub fn from_env() -> Credentials {
        let dir = config_dir(
            std::env::var_os("DOCKER_CONFIG")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        );
        Credentials::in_dir(dir)
    }

    /// Reads `<dir>/config.json`; `None`: no configuration at all (every pull anonymous).
    pub fn in_dir(dir: Option<PathBuf>) -> Credentials {
        Credentials {
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration file looked at.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("config.json"))
    }

    /// The credentials for registry `domain` (`docker.io`, `127.0.0.1:5000`, …). Runs at most
    /// one lookup per registry, however many pulls ask at once; a failed lookup is retried by
    /// the next caller.
    pub async fn get(&self, domain: &str) -> Result<Found, AuthError> {
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entry(domain.to_string()).or_default().clone()
        };
        let file = self.config_file();
        let domain = domain.to_string();
        cell.get_or_try_init(|| async move {
            let d = domain.clone();
            tokio::task::spawn_blocking(move || lookup(file.as_deref(), &d))
                .await
                .map_err(|e| AuthError {
                    registry: domain,
                    message: format!("the lookup did not finish: {e}"),
                })?
        })
        .await
        .cloned()
    }
}

/// The docker CLI's configuration directory: `DOCKER_CONFIG` (`docker_config`), else
/// `<home>/.docker`.
pub fn config_dir(docker_config: Option<PathBuf>, home: Option<&Path>) -> Option<PathBuf> {
    docker_config.or_else(|| home.map(|h| h.join(".docker")))
}

/// The key of `domain` in `config.json`.
pub fn server_key(domain: &str) -> String {
    match domain {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_SERVER.to_string(),
        d => d.to_string(),
    }
}

/// Looks up `domain` in `file` (blocking: may run a helper program).
pub fn lookup(file: Option<&Path>, domain: &str) -> Result<Found, AuthError> {
    let anonymous = Found {
        credentials: None,
        source: Source::Anonymous,
    };
    let err = |message: String| AuthError {
        registry: domain.to_string(),
        message,
    };
    let Some(file) = file else {
        return Ok(anonymous);
    };
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous),
        Err(e) => return Err(err(format!("reading {}: {e}", file.display()))),
    };
    let server = server_key(domain);
    // The helper that would be asked, for messages (the crate does not say).
    let helper = helper_for(&text, &server);
    match docker_credential::get_credential_from_reader(&text[..], &server) {
        Ok(c) => {
            let source = match &helper {
                Some(h) => Source::Helper(format!("docker-credential-{h}")),
                None => Source::Config(file.to_path_buf()),
            };
            let mut creds = DockerCredentials {
                serveraddress: Some(server.clone()),
                ..Default::default()
            };
            match c {
                DockerCredential::UsernamePassword(u, p) => {
                    creds.username = Some(u);
                    creds.password = Some(p);
                }
                DockerCredential::IdentityToken(t) => creds.identitytoken = Some(t),
            }
            log::debug!("credentials for {domain} from {source:?}");
            Ok(Found {
                credentials: Some(creds),
                source,
            })
        }
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(anonymous),
        Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. })
            if is_not_found(&stdout) || is_not_found(&stderr) =>
        {
            Ok(anonymous)
        }
        Err(e) => Err(err(describe(e, file, helper.as_deref()))),
    }
}

/// The docker-credential-helpers protocol's answer for "no credential" (exit status 1).
fn is_not_found(s: &str) -> bool {
    s.contains("credentials not found")
}

/// `credHelpers[server]`, else `credsStore`, of a `config.json`.
fn helper_for(text: &[u8], server: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    let nonempty = |v: Option<&serde_json::Value>| {
        v.and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(h) = nonempty(v.get("credHelpers").and_then(|h| h.get(server))) {
        return Some(h);
    }
    // `auths` entries with credentials win over the store (as the crate decides).
    let entry = v.get("auths").and_then(|a| a.get(server));
    let has_own = entry.is_some_and(|e| {
        ["auth", "identitytoken", "username"].iter().any(|k| {
            e.get(*k)
                .and_then(|x| x.as_str())
                .is_some_and(|x| !x.is_empty())
        })
    });
    if has_own {
        return None;
    }
    nonempty(v.get("credsStore"))
}

fn describe(e: CredentialRetrievalError, file: &Path, helper: Option<&str>) -> String {
    let program = helper
        .map(|h| format!("`docker-credential-{h}`"))
        .unwrap_or_else(|| "the credential helper".to_string());
    match e {
        CredentialRetrievalError::HelperCommunicationError => format!(
            "{program} (configured in {}) could not be run: is it on PATH?",
            file.display()
        ),
        CredentialRetrievalError::MalformedHelperResponse => {
            format!("{program} gave an answer that is not credentials JSON")
        }
        CredentialRetrievalError::HelperFailure { stdout, stderr, .. } => {
            let said = [stderr.trim(), stdout.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            if said.is_empty() {
                format!("{program} failed")
            } else {
                format!("{program} failed: {said}")
            }
        }
        CredentialRetrievalError::CredentialDecodingError => format!(
            "{}: the `auth` entry is not base64 of `user:password`",
            file.display()
        ),
        CredentialRetrievalError::CredentialMismatchError => format!(
            "{}: the `auth` entry does not match its `username`/`password`",
            file.display()
        ),
        CredentialRetrievalError::ConfigReadError | CredentialRetrievalError::ConfigNotFound => {
            format!("{} is not a valid docker config.json", file.display())
        }
        CredentialRetrievalError::NoCredentialConfigured => "no credential configured".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn config(dir: &Path, json: &str) -> PathBuf {
        let f = dir.join("config.json");
        std::fs::write(&f, json).unwrap();
        f
    }

    #[test]
    fn server_keys() {
        assert_eq!(server_key("docker.io"), DOCKER_HUB_SERVER);
        assert_eq!(server_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn auths_entries_and_anonymous() {
        let d = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let f = config(
            d.path(),
            &format!(
                r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}}, "https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#
            ),
        );
        let found = lookup(Some(&f), "127.0.0.1:5000").unwrap();
        let c = found.credentials.unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(found.source, Source::Config(f.clone()));
        let hub = lookup(Some(&f), "docker.io").unwrap().credentials.unwrap();
        assert_eq!(hub.serveraddress.as_deref(), Some(DOCKER_HUB_SERVER));
        let other = lookup(Some(&f), "quay.io").unwrap();
        assert!(other.credentials.is_none());
        assert_eq!(other.source, Source::Anonymous);
        // No file at all, or no configuration directory: anonymous.
        let none = lookup(Some(&d.path().join("nope.json")), "quay.io").unwrap();
        assert!(none.credentials.is_none());
        assert!(lookup(None, "quay.io").unwrap().credentials.is_none());
    }

    #[test]
    fn broken_configs_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = config(d.path(), "{not json");
        let e = lookup(Some(&f), "127.0.0.1:5000").unwrap_err();
        assert!(e.to_string().contains(&*f.to_string_lossy()), "{e}");
        assert!(e.to_string().contains("127.0.0.1:5000"), "{e}");
        let f = config(d.path(), r#"{"auths": {"r.example": {"auth": "%%%"}}}"#);
        let e = lookup(Some(&f), "r.example").unwrap_err();
        assert!(e.message.contains("base64"), "{e}");
    }

    #[test]
    fn a_missing_helper_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = config(
            d.path(),
            r#"{"credHelpers": {"r.example": "imagesmith-test-no-such-helper"}}"#,
        );
        let e = lookup(Some(&f), "r.example").unwrap_err();
        assert!(
            e.message
                .contains("`docker-credential-imagesmith-test-no-such-helper`"),
            "{e}"
        );
        assert!(e.message.contains("PATH"), "{e}");
    }

    #[test]
    fn helper_names() {
        let t = br#"{"credsStore": "pass", "credHelpers": {"a.io": "gcr"},
                     "auths": {"b.io": {"auth": "eDp5"}, "c.io": {}}}"#;
        assert_eq!(helper_for(t, "a.io").as_deref(), Some("gcr"));
        assert_eq!(helper_for(t, "b.io"), None);
        assert_eq!(helper_for(t, "c.io").as_deref(), Some("pass"));
        assert_eq!(helper_for(t, "d.io").as_deref(), Some("pass"));
        assert_eq!(helper_for(b"[]", "d.io"), None);
    }

    #[tokio::test]
    async fn lookups_are_cached_per_registry() {
        let d = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        config(
            d.path(),
            &format!(r#"{{"auths": {{"r.example": {{"auth": "{auth}"}}}}}}"#),
        );
        let creds = Credentials::in_dir(Some(d.path().to_path_buf()));
        let first = creds.get("r.example").await.unwrap();
        assert!(first.credentials.is_some());
        // The file changes; the cached answer stands for this run.
        config(d.path(), "{}");
        let again = creds.get("r.example").await.unwrap();
        assert_eq!(again.credentials.unwrap().username.as_deref(), Some("u"));
        assert!(creds.get("s.example").await.unwrap().credentials.is_none());
    }
}
