//! Registries and TLS for the tests that need the real Docker engine: a `docker-registry`
//! with htpasswd auth on a free 127.0.0.1 port (with `docker login` configurations and
//! credential helpers for it), TLS certificates made with `openssl`, and a TLS listener
//! (stunnel) in front of the engine's socket. Every process and directory a helper starts or
//! makes is removed by a Drop guard. The engine check, names, test images and `docker` are in
//! the parent module.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{docker_in, unique};

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process killed (by its pid) when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docker-registry serve` on 127.0.0.1:<free port>, with htpasswd auth for one user.
pub struct Registry {
    pub port: u16,
    pub user: String,
    pub password: String,
    dir: tempfile::TempDir,
    _process: Background,
}

impl Registry {
    /// Starts a registry that requires `user`/`password`.
    pub fn with_auth() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let user = "imagesmith".to_string();
        let password = unique("pw");
        let out = Command::new("htpasswd")
            .args(["-nbB", &user, &password])
            .output()
            .expect("htpasswd (package apache2-utils; run scripts/setup.sh)");
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("htpasswd file");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: imagesmith-test\n    path: {htpasswd}\n",
                root = dir.path().join("data").display(),
                htpasswd = dir.path().join("htpasswd").display(),
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).expect("registry config");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry (package docker-registry; run scripts/setup.sh)");
            let mut bg = Background(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut up = false;
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                if let Ok(Some(s)) = bg.0.try_wait() {
                    last_err = format!("docker-registry exited: {s}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if up {
                return Registry {
                    port,
                    user,
                    password,
                    dir,
                    _process: bg,
                };
            }
        }
        panic!("could not start docker-registry: {last_err}");
    }

    /// The registry's storage (`docker/registry/v2/blobs/sha256/<xx>/<hex>/data`, …).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A docker configuration directory holding this registry's credentials (as
    /// `docker login` writes them: an `auths` entry).
    pub fn login_config(&self) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("temp dir");
        docker_in(
            &["login", "-u", &self.user, "--password-stdin", &self.host()],
            Some(self.password.as_bytes()),
            Some(d.path()),
        );
        let cfg = std::fs::read_to_string(d.path().join("config.json")).expect("config.json");
        assert!(cfg.contains(&self.host()), "docker login wrote {cfg}");
        d
    }

    /// A configuration directory whose `config.json` says `{key: helper}` (e.g.
    /// `"credsStore": "x"` or `"credHelpers": {"127.0.0.1:5000": "x"}`), and a directory
    /// holding `docker-credential-<helper>`, a script that answers with this registry's
    /// credentials. Put the second on PATH.
    pub fn helper_config(
        &self,
        helper: &str,
        use_cred_helpers: bool,
    ) -> (tempfile::TempDir, tempfile::TempDir) {
        let conf = tempfile::tempdir().expect("temp dir");
        let json = if use_cred_helpers {
            format!(r#"{{"credHelpers": {{"{}": "{helper}"}}}}"#, self.host())
        } else {
            format!(
                r#"{{"auths": {{"{}": {{}}}}, "credsStore": "{helper}"}}"#,
                self.host()
            )
        };
        std::fs::write(conf.path().join("config.json"), json).expect("config.json");
        let bin = tempfile::tempdir().expect("temp dir");
        let script = bin.path().join(format!("docker-credential-{helper}"));
        // The helper protocol: `get` reads the server on stdin, answers JSON on stdout;
        // an unknown server is "credentials not found" with exit status 1.
        let body = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\necho \"$server\" >> \"$0.log\"\nif [ \"$server\" = \"{host}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pw}\"}}\\n' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            host = self.host(),
            user = self.user,
            pw = self.password,
        );
        std::fs::write(&script, body).expect("helper script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod helper");
        (conf, bin)
    }
}

/// Certificates for a TLS engine endpoint on 127.0.0.1: a CA, a server certificate (IP SAN
/// 127.0.0.1) and a client certificate, made with `openssl`. `dir` holds `ca.pem`,
/// `cert.pem`, `key.pem` (the client's, as `DOCKER_CERT_PATH` wants them), `server.pem`,
/// `server-key.pem`.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ossl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl (run scripts/setup.sh)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        let key = |name: &str| {
            ossl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ])
        };
        key("ca-key.pem");
        ossl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-days",
            "2",
            "-subj",
            "/CN=imagesmith test CA",
            "-out",
            "ca.pem",
        ]);
        for (k, csr, cert, cn, ext) in [
            (
                "server-key.pem",
                "server.csr",
                "server.pem",
                "/CN=127.0.0.1",
                "server.ext",
            ),
            (
                "key.pem",
                "client.csr",
                "cert.pem",
                "/CN=imagesmith client",
                "client.ext",
            ),
        ] {
            key(k);
            ossl(&["req", "-new", "-key", k, "-subj", cn, "-out", csr]);
            ossl(&[
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                cert,
            ]);
        }
        Certs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// stunnel listening with TLS (client certificates required) on 127.0.0.1:<port>,
/// forwarding to the engine's unix socket. (socat's OpenSSL listener cannot be used: it
/// fails TLS 1.3 session resumption with "session id context uninitialized" when it
/// verifies clients, and rustls resumes.)
pub struct TlsProxy {
    pub port: u16,
    _process: Background,
    _conf: tempfile::TempDir,
}

impl TlsProxy {
    pub fn start(certs: &Certs, socket: &str) -> TlsProxy {
        let d = certs.path();
        let conf = tempfile::tempdir().expect("temp dir");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let file = conf.path().join("stunnel.conf");
            std::fs::write(
                &file,
                format!(
                    "foreground = yes\npid =\ndebug = warning\n[docker]\naccept = 127.0.0.1:{port}\nconnect = {socket}\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                    d.join("server.pem").display(),
                    d.join("server-key.pem").display(),
                    d.join("ca.pem").display(),
                ),
            )
            .expect("stunnel config");
            let child = Command::new("stunnel")
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("stunnel (package stunnel4; run scripts/setup.sh)");
            let mut bg = Background(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TlsProxy {
                        port,
                        _process: bg,
                        _conf: conf,
                    };
                }
                if let Ok(Some(s)) = bg.0.try_wait() {
                    last = format!("stunnel exited: {s}");
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("stunnel did not start a TLS listener: {last}");
    }
}

/// The engine's socket (tests run against the local engine).
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";
