//! A real registry for the registry tests: Debian's `docker-registry` (CNCF distribution 2.8) on a
//! loopback port of its own, with no auth, HTTP Basic, TLS, TLS + Basic or Docker-Hub-style bearer
//! tokens; skopeo to seed it from OCI layouts; a fault-injecting proxy; a `registries.conf` writer.
//!
//! Every registry listens on `127.0.0.1:0` and reports the port the kernel chose, so tests run in
//! parallel. It lives in a temp dir of its own, removed (and the process killed) on drop.
//!
//! ```no_run
//! use e2e::registry::{Auth, Registry};
//! let reg = Registry::start(Auth::basic("alice", "s3cret"));
//! reg.push_layout(e2e::fixtures::busybox(), "latest", "library/busybox:latest");
//! // … point the pull client at reg.host() with reg.creds() …
//! ```

mod proxy;
mod token;

pub use proxy::{FaultProxy, ProxiedRequest};
pub use token::{TokenRequest, TokenServer};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How a registry lets clients in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Plain HTTP, anyone may pull and push.
    Plain,
    /// Plain HTTP with HTTP Basic auth (htpasswd, bcrypt) for every request, pulls included.
    Basic { user: String, pass: String },
    /// HTTPS with a server certificate for `IP:127.0.0.1` signed by a CA of the registry's own.
    Tls,
    /// HTTPS as [`Auth::Tls`] plus HTTP Basic auth as [`Auth::Basic`].
    TlsBasic { user: String, pass: String },
    /// HTTPS as [`Auth::Tls`] that also requires a client certificate signed by its CA (mutual
    /// TLS); [`Registry::cert_dir`] then holds the client pair too.
    MutualTls,
    /// Plain HTTP with bearer tokens from a [`TokenServer`], the Docker Hub / GHCR flow: anonymous
    /// clients get pull tokens, `user`/`pass` get whatever they ask for.
    Token { user: String, pass: String },
}

impl Auth {
    pub fn basic(user: &str, pass: &str) -> Auth {
        Auth::Basic {
            user: user.into(),
            pass: pass.into(),
        }
    }

    pub fn tls_basic(user: &str, pass: &str) -> Auth {
        Auth::TlsBasic {
            user: user.into(),
            pass: pass.into(),
        }
    }

    pub fn token(user: &str, pass: &str) -> Auth {
        Auth::Token {
            user: user.into(),
            pass: pass.into(),
        }
    }

    /// The credentials this registry accepts, if it wants any.
    pub fn creds(&self) -> Option<(&str, &str)> {
        match self {
            Auth::Plain | Auth::Tls | Auth::MutualTls => None,
            Auth::Basic { user, pass }
            | Auth::TlsBasic { user, pass }
            | Auth::Token { user, pass } => Some((user, pass)),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Auth::Tls | Auth::TlsBasic { .. } | Auth::MutualTls)
    }
}

/// The `service` the registry names in its bearer challenge and the `aud` its tokens must carry.
pub const TOKEN_SERVICE: &str = "oci2bin-test-registry";
/// The `iss` of our tokens, the only issuer the registry trusts.
pub const TOKEN_ISSUER: &str = "oci2bin-test-token-issuer";

/// A running `docker-registry`, killed and its storage removed on drop.
pub struct Registry {
    child: Child,
    host: String,
    auth: Auth,
    token: Option<TokenServer>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with `auth` and returns once it answers. Panics (with its log) if it
    /// does not come up within 10 s.
    pub fn start(auth: Auth) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("o2b-registry-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Readable by all: tests may run a client as the unprivileged test user, which needs the
        // CA. Nothing in here is secret.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut http = String::from(r#"{addr: "127.0.0.1:0", secret: oci2bin-test"#);
        if auth.is_tls() {
            write_tls_certs(d);
            let clientcas = if auth == Auth::MutualTls {
                write_client_pair(d);
                format!(", clientcas: [{}]", yaml_path(&d.join("certs/ca.crt")))
            } else {
                String::new()
            };
            http += &format!(
                ", tls: {{certificate: {}, key: {}{clientcas}}}",
                yaml_path(&d.join("server.crt")),
                yaml_path(&d.join("server.key"))
            );
        }
        http += "}";
        let mut token = None;
        let auth_yaml = match &auth {
            Auth::Plain | Auth::Tls | Auth::MutualTls => String::new(),
            Auth::Basic { user, pass } | Auth::TlsBasic { user, pass } => {
                write_htpasswd(&d.join("htpasswd"), user, pass);
                format!(
                    "auth: {{htpasswd: {{realm: oci2bin-test, path: {}}}}}\n",
                    yaml_path(&d.join("htpasswd"))
                )
            }
            Auth::Token { user, pass } => {
                let t = TokenServer::start(d, user, pass);
                let y = format!(
                    "auth: {{token: {{realm: \"{}\", service: {TOKEN_SERVICE}, \
                     issuer: {TOKEN_ISSUER}, rootcertbundle: {}}}}}\n",
                    t.realm(),
                    yaml_path(t.cert_path())
                );
                token = Some(t);
                y
            }
        };
        // The access log (stdout, Apache combined format) stays on so tests can count blob GETs.
        let config = format!(
            "version: 0.1\n\
             log: {{level: info, accesslog: {{disabled: false}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http: {http}\n\
             {auth_yaml}",
            yaml_path(&d.join("storage"))
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            // REGISTRY_* variables would override the config file.
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("access.log")).unwrap())
            .stderr(std::fs::File::create(d.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let mut reg = Registry {
            child,
            host: String::new(),
            auth,
            token,
            dir,
        };
        reg.host = format!("127.0.0.1:{}", reg.wait_for_port());
        reg.wait_until_answering();
        reg
    }

    /// The port from the log line `listening on 127.0.0.1:PORT` (`, tls` follows with TLS).
    fn wait_for_port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if let Some(rest) = log.split("listening on 127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                return digits.parse().unwrap();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not report its port in 10 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for an answer to `GET /v2/` (200, or 401 when auth is on). The registry logs its
    /// port after binding, so a TLS registry, which this plain HTTP client cannot ask, only
    /// needs its socket to accept.
    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let agent = plain_agent();
        loop {
            let up = if self.auth.is_tls() {
                std::net::TcpStream::connect(&self.host).is_ok()
            } else {
                agent
                    .get(format!("http://{}/v2/", self.host))
                    .call()
                    .is_ok_and(|r| matches!(r.status().as_u16(), 200 | 401))
            };
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry on {} did not answer in 10 s:\n{}",
                self.host,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// `user`, `pass` when the registry wants credentials.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.auth.creds()
    }

    /// `https` for the TLS variants, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.auth.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host)
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`, a skopeo image reference.
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.host)
    }

    /// The CA that signed a TLS registry's certificate (PEM). Panics on a non-TLS registry.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.cert_dir().join("ca.crt")
    }

    /// A dir holding `ca.crt` (and for [`Auth::MutualTls`] the client pair `client.cert` +
    /// `client.key`), the layout of skopeo's `--src-cert-dir` / `--dest-cert-dir` and of
    /// `/etc/containers/certs.d/HOST/`. Panics on a non-TLS registry.
    pub fn cert_dir(&self) -> PathBuf {
        assert!(self.auth.is_tls(), "{:?} registry has no CA", self.auth);
        self.dir.path().join("certs")
    }

    /// The token server of an [`Auth::Token`] registry. Panics on any other.
    pub fn token_server(&self) -> &TokenServer {
        self.token
            .as_ref()
            .unwrap_or_else(|| panic!("{:?} registry has no token server", self.auth))
    }

    /// The registry's own temp dir (config, logs, certs, `storage/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The filesystem storage root.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps blob `sha256:HEX` (it serves the file as is, unchecked): to damage
    /// or truncate a blob at rest.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256: digest");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's own log (stderr), for failure messages.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("registry.log"))
    }

    /// The access log, one Apache combined-format line per request.
    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.path().join("access.log"))
    }

    /// Blob downloads the registry served (`GET /v2/…/blobs/sha256:…`), whatever their status.
    /// A [`FaultProxy`] in front counts without the wait of [`Registry::requests`].
    pub fn blob_gets(&self) -> usize {
        self.requests("GET", "/blobs/sha256:")
    }

    /// Requests in the access log whose request line starts with `METHOD /v2/` and holds `part`.
    /// The registry writes a line once its answer is out, so a client may be done a moment before
    /// its last line: this waits until the count holds still for 30 ms.
    pub fn requests(&self, method: &str, part: &str) -> usize {
        let start = format!("\"{method} /v2/");
        let count = || {
            self.access_log()
                .lines()
                .filter(|l| l.contains(&start) && l.contains(part))
                .count()
        };
        let mut n = count();
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(30));
            let m = count();
            if m == n {
                break;
            }
            n = m;
        }
        n
    }

    /// skopeo flags to reach this registry as `side`: `"src"` or `"dest"` for `copy`, `""` for
    /// commands naming one image (`inspect`, `delete`). They give the CA (`--SIDE-cert-dir`) or
    /// `--SIDE-tls-verify=false` for plain HTTP, and `--SIDE-creds` when `with_creds` and the
    /// registry has credentials.
    pub fn skopeo_flags(&self, side: &str, with_creds: bool) -> Vec<String> {
        let side = if side.is_empty() {
            String::new()
        } else {
            format!("{side}-")
        };
        let mut f = if self.auth.is_tls() {
            vec![format!("--{side}cert-dir={}", self.cert_dir().display())]
        } else {
            vec![format!("--{side}tls-verify=false")]
        };
        if let (true, Some((u, p))) = (with_creds, self.creds()) {
            f.push(format!("--{side}creds={u}:{p}"));
        }
        f
    }

    /// Pushes the image tagged `tag_in_layout` in an OCI layout as `repo_and_tag` (`REPO:TAG`).
    pub fn push_layout(&self, layout_dir: &Path, tag_in_layout: &str, repo_and_tag: &str) {
        self.push(layout_dir, tag_in_layout, repo_and_tag, false)
    }

    /// As [`Registry::push_layout`] for a multi-arch index: pushes every manifest it lists.
    pub fn push_layout_all(&self, layout_dir: &Path, tag_in_layout: &str, repo_and_tag: &str) {
        self.push(layout_dir, tag_in_layout, repo_and_tag, true)
    }

    fn push(&self, layout_dir: &Path, tag: &str, repo_and_tag: &str, all: bool) {
        let mut c = skopeo();
        // Byte for byte: skopeo would otherwise gzip uncompressed layers on the way in.
        c.args(["copy", "--quiet", "--preserve-digests"]);
        if all {
            c.arg("--all");
        }
        let o = c
            .args(self.skopeo_flags("dest", true))
            .arg(format!("oci:{}:{tag}", layout_dir.display()))
            .arg(self.docker_ref(repo_and_tag))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo push of {}:{tag} to {} failed:\n{}\nregistry log:\n{}",
            layout_dir.display(),
            self.docker_ref(repo_and_tag),
            crate::text(&o.stderr),
            self.log()
        );
    }

    /// `skopeo inspect --raw` of `repo_and_tag` with the registry's flags and credentials: the
    /// manifest (or index) as stored.
    pub fn raw_manifest(&self, repo_and_tag: &str) -> serde_json::Value {
        let o = skopeo()
            .args(["inspect", "--raw"])
            .args(self.skopeo_flags("", true))
            .arg(self.docker_ref(repo_and_tag))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo inspect {} failed:\n{}",
            self.docker_ref(repo_and_tag),
            crate::text(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The temp dir goes with `self.dir`; the token server stops with `self.token`.
    }
}

/// skopeo, insulated from this machine's configuration: no signature policy (`--insecure-policy`),
/// no stored credentials (`HOME` and `REGISTRY_AUTH_FILE` point into an empty dir) and an empty
/// `registries.conf` (no mirrors, no search registries; the system's short-name aliases in
/// `registries.conf.d` still load, and are harmless for full references).
pub fn skopeo() -> Command {
    skopeo_with_registries_conf(&skopeo_env_dir().join("registries.conf"))
}

/// [`skopeo`] reading `conf` as its registries.conf (e.g. from [`write_registries_conf`]).
/// skopeo 1.9 ignores `CONTAINERS_REGISTRIES_CONF`: its hidden `--registries-conf` flag is the way.
pub fn skopeo_with_registries_conf(conf: &Path) -> Command {
    let env = skopeo_env_dir();
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy")
        .arg(format!("--registries-conf={}", conf.display()))
        .env("HOME", env.join("home"))
        .env("REGISTRY_AUTH_FILE", env.join("no-such-auth.json"));
    c
}

fn skopeo_env_dir() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let d = crate::workspace().join("target/e2e-fixtures/skopeo-env");
        std::fs::create_dir_all(d.join("home")).unwrap();
        // Written to a per-process name then renamed: other test processes may read it meanwhile.
        let tmp = d.join(format!("registries.conf.{}", std::process::id()));
        std::fs::write(
            &tmp,
            "# no mirrors, no search registries: tests name full references\n",
        )
        .unwrap();
        std::fs::rename(&tmp, d.join("registries.conf")).unwrap();
        d
    })
}

/// Writes `dir/registries.conf` (containers-registries.conf(5), v2 TOML) sending pulls of each
/// `(prefix, mirror_host, insecure)` to `mirror_host` first: one `[[registry]]` per prefix, its
/// location the prefix itself, with one `[[registry.mirror]]` per mirror. Returns the file's path.
pub fn write_registries_conf(dir: &Path, mirrors: &[(&str, &str, bool)]) -> PathBuf {
    let mut prefixes: Vec<&str> = Vec::new();
    for (prefix, _, _) in mirrors {
        if !prefixes.contains(prefix) {
            prefixes.push(prefix);
        }
    }
    let mut toml = String::from("# written by the e2e registry harness\n");
    for prefix in prefixes {
        toml += &format!("\n[[registry]]\nprefix = \"{prefix}\"\nlocation = \"{prefix}\"\n");
        for (_, host, insecure) in mirrors.iter().filter(|m| m.0 == prefix) {
            toml +=
                &format!("\n[[registry.mirror]]\nlocation = \"{host}\"\ninsecure = {insecure}\n");
        }
    }
    let path = dir.join("registries.conf");
    std::fs::write(&path, toml).unwrap();
    path
}

/// A CA and a server certificate for `IP:127.0.0.1` signed by it, made with the openssl CLI:
/// `server.crt`/`server.key` for the registry, `certs/ca.crt` for clients. EC P-256 keys: they
/// are made in milliseconds.
fn write_tls_certs(d: &Path) {
    std::fs::create_dir_all(d.join("certs")).unwrap();
    let ca = d.join("certs/ca.crt");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=oci2bin test CA",
        "-keyout",
        &d.join("ca.key").display().to_string(),
        "-out",
        &ca.display().to_string(),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &d.join("server.key").display().to_string(),
        "-out",
        &d.join("server.csr").display().to_string(),
    ]);
    // Go checks the SAN, never the CN; a leaf must not be a CA.
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &d.join("server.csr").display().to_string(),
        "-CA",
        &ca.display().to_string(),
        "-CAkey",
        &d.join("ca.key").display().to_string(),
        "-CAcreateserial",
        "-extfile",
        &d.join("server.ext").display().to_string(),
        "-out",
        &d.join("server.crt").display().to_string(),
    ]);
}

/// A client key and certificate signed by the registry's CA, as `certs/client.key` and
/// `certs/client.cert` (the names containers/image and we look for).
fn write_client_pair(d: &Path) {
    let p = |name: &str| d.join(name).display().to_string();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=oci2bin test client",
        "-keyout",
        &p("certs/client.key"),
        "-out",
        &p("client.csr"),
    ]);
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth
",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &p("client.csr"),
        "-CA",
        &p("certs/ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-extfile",
        &p("client.ext"),
        "-out",
        &p("certs/client.cert"),
    ]);
    // Readable by the unprivileged test user, like the rest of this throwaway dir.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.join("certs/client.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

pub(crate) fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        o.status.success(),
        "openssl {args:?} failed:\n{}",
        crate::text(&o.stderr)
    );
}

fn write_htpasswd(path: &Path, user: &str, pass: &str) {
    // The registry reads bcrypt entries only: -B.
    let o = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .expect("htpasswd (apt-get install apache2-utils)");
    assert!(o.status.success(), "htpasswd: {}", crate::text(&o.stderr));
    std::fs::write(path, o.stdout).unwrap();
}

/// A path as a YAML double-quoted scalar (Rust's string escapes are a subset of YAML's).
fn yaml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn read_lossy(p: &Path) -> String {
    let mut b = Vec::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        f.read_to_end(&mut b).unwrap();
    }
    crate::text(&b)
}

/// A ureq agent for plain HTTP test traffic: statuses are answers, not errors, and redirects are
/// returned rather than followed.
pub fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}
