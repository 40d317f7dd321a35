//! Registry credentials, found where podman and Docker keep them, and `login`/`logout` writing
//! podman's `auth.json`.
//!
//! Lookup order ([`lookup`]), podman's, with Docker's `credsStore`:
//! 1. `--creds USER[:PASS]` ([`parse_creds`]; the password is asked for, without echo, when it
//!    is left out and stdin is a terminal), for every registry;
//! 2. `--authfile F` or `$REGISTRY_AUTH_FILE`: then that file alone, as in podman;
//! 3. otherwise `$XDG_RUNTIME_DIR/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json`
//!    (default `~/.config`), and `$DOCKER_CONFIG/config.json` (default
//!    `~/.docker/config.json`); the first file with an answer wins.
//!
//! In a file: `credHelpers[registry]` runs `docker-credential-NAME get`; else an `auths` entry,
//! tried as `registry/namespace/repo`, its parents, `registry`, then any key that normalises to
//! the registry (`https://host/v1/`, `http://host`, Docker Hub's `https://index.docker.io/v1/`,
//! `index.docker.io`, `registry-1.docker.io`); `auth` is base64 of `USER:PASS`, `identitytoken`
//! an OAuth2 refresh token. In Docker's `config.json` only, `credsStore` is asked when no entry
//! has credentials (Docker writes empty `auths` markers next to it); podman ignores it. A
//! helper that says "credentials not found", or a `credsStore` helper that is not installed,
//! means no credentials from that file.
//!
//! Secrets: passwords and tokens are [`Secret`]s, whose `Debug` and `Display` print `***`.
//! Errors never quote file contents or helper output that may hold one: a malformed JSON file
//! is reported by line and column only, a bad `auth` by its key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::registry_name::{DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_LEGACY};

/// Docker's key for Docker Hub in `config.json`, and the server URL its helpers know it by.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A password or token. It prints as `***` whichever way it is formatted; [`Secret::expose`]
/// is the only way to the text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Empty, or `<token>`, when only an identity token is known.
    pub username: String,
    pub password: Secret,
    /// Docker's `identitytoken` (a helper's `<token>` user): an OAuth2 refresh token, sent to
    /// the token endpoint as `grant_type=refresh_token` instead of the password.
    pub identity_token: Option<Secret>,
}

impl Credential {
    pub fn basic(username: impl Into<String>, password: Secret) -> Credential {
        Credential {
            username: username.into(),
            password,
            identity_token: None,
        }
    }

    /// base64 of `USER:PASS`, for `Authorization: Basic`.
    pub fn basic_auth(&self) -> Secret {
        Secret(STANDARD.encode(format!("{}:{}", self.username, self.password.expose())))
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CredError {
    // The cause is in the message and not a `source()`, so `{:#}` chains print it once.
    #[error("{what} {}: {err}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    /// Only the position: the text around it may be a secret.
    #[error("{} is not valid {what} (line {line}, column {column})", path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("{}: {what} is not a JSON object", path.display())]
    Shape { path: PathBuf, what: &'static str },
    #[error("{}: the `auth` of {key} is not base64 of USER:PASSWORD", path.display())]
    BadAuth { path: PathBuf, key: String },
    #[error("credential helper docker-credential-{helper} (from {origin}): {message}")]
    Helper {
        helper: String,
        origin: String,
        message: String,
    },
    /// The value is not quoted: it is file content, which may be anything.
    #[error(
        "{entry} in {origin} does not name a credential helper (letters, digits, `.`, `_`, `-`)"
    )]
    BadHelperName { entry: String, origin: String },
    #[error("--creds: the user name is empty (use --creds USER[:PASSWORD])")]
    EmptyUser,
    #[error("--creds {user}: no password given and no terminal to ask for it (use --creds USER:PASSWORD)")]
    NoPassword { user: String },
    #[error("the user name must not contain `:`")]
    ColonInUser,
    #[error("the password is empty")]
    EmptyPassword,
    #[error("cannot read the password: {0}")]
    Prompt(io::Error),
    #[error("`{0}` is not a registry: give host[:port], optionally followed by /namespace")]
    BadRegistry(String),
    #[error("{key} uses the credential helper docker-credential-{helper} in {}: log in with that helper", path.display())]
    HelperManaged {
        key: String,
        helper: String,
        path: PathBuf,
    },
    #[error("not logged in to {key} in {}", path.display())]
    NotLoggedIn { key: String, path: PathBuf },
    #[error("not logged in to {key} in {}; the credentials in {} come from docker login: use docker logout", path.display(), docker.display())]
    DockerLogin {
        key: String,
        path: PathBuf,
        docker: PathBuf,
    },
    #[error("nowhere to keep auth.json: set REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR or HOME, or pass --authfile")]
    NoAuthFile,
    #[error("checking the credentials with {registry}: {err}")]
    Verify { registry: String, err: BoxError },
}

pub type Result<T, E = CredError> = std::result::Result<T, E>;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CredError {
    let path = path.to_path_buf();
    move |err| CredError::Io { what, path, err }
}

fn json_err(path: &Path, what: &'static str, e: &serde_json::Error) -> CredError {
    // serde_json's own message may quote a value ("invalid type: string \"…\""): position only.
    CredError::Json {
        path: path.to_path_buf(),
        what,
        line: e.line(),
        column: e.column(),
    }
}

/// Where credentials are looked for and written; [`CredSources::from_env`] is the real one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredSources {
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME` (default `$HOME/.config`).
    pub xdg_config_home: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, the directory of Docker's `config.json` (default `$HOME/.docker`).
    pub docker_config: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$PATH`, searched for `docker-credential-*` helpers.
    pub path: Option<OsString>,
}

impl CredSources {
    pub fn from_env() -> CredSources {
        let var = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        CredSources {
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME").filter(|p| p.is_absolute()),
            path: std::env::var_os("PATH"),
        }
    }

    fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// Docker's `config.json`.
    pub fn docker_config_file(&self) -> Option<PathBuf> {
        match &self.docker_config {
            Some(d) => Some(d.join("config.json")),
            None => self.home.as_ref().map(|h| h.join(".docker/config.json")),
        }
    }

    /// The files read, in order, and whether each is Docker's (whose `credsStore` counts).
    fn read_order(&self, auth_file: Option<&Path>) -> Vec<(PathBuf, bool)> {
        if let Some(f) = auth_file.or(self.registry_auth_file.as_deref()) {
            return vec![(f.to_path_buf(), false)];
        }
        let mut v = Vec::new();
        if let Some(d) = &self.xdg_runtime_dir {
            v.push((d.join("containers/auth.json"), false));
        }
        if let Some(d) = self.config_home() {
            v.push((d.join("containers/auth.json"), false));
        }
        if let Some(f) = self.docker_config_file() {
            v.push((f, true));
        }
        v
    }
}

/// What [`lookup`] needs besides the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredOptions {
    /// From `--creds`, complete (see [`parse_creds`]): used for every registry. Parsed once up
    /// front, so the password is asked for once, not once per endpoint.
    pub creds: Option<Credential>,
    /// `--authfile F`: like `$REGISTRY_AUTH_FILE`, which it overrides.
    pub auth_file: Option<PathBuf>,
    pub sources: CredSources,
}

impl CredOptions {
    /// Options from the command line's `--creds` and `--authfile` and this process's
    /// environment; asks for the password on the terminal when `--creds` has none.
    pub fn from_env(creds: Option<&str>, auth_file: Option<PathBuf>) -> Result<CredOptions> {
        Ok(CredOptions {
            creds: creds.map(|c| parse_creds(c, ask_on_terminal)).transpose()?,
            auth_file,
            sources: CredSources::from_env(),
        })
    }
}

/// Asks for a secret without echo when stdin is a terminal; `None` when it is not.
pub fn ask_on_terminal(prompt: &str) -> Option<io::Result<Secret>> {
    if !io::stdin().is_terminal() {
        return None;
    }
    Some(rpassword::prompt_password(prompt).map(Secret))
}

/// `--creds USER[:PASS]`: split at the first `:`, as podman does; with no password, `ask` is
/// called (`None` from it: no terminal, an error).
pub fn parse_creds(
    value: &str,
    ask: impl FnOnce(&str) -> Option<io::Result<Secret>>,
) -> Result<Credential> {
    let (user, pass) = match value.split_once(':') {
        Some((u, p)) => (u, Some(p).filter(|p| !p.is_empty())),
        None => (value, None),
    };
    if user.is_empty() {
        return Err(CredError::EmptyUser);
    }
    let password = match pass {
        Some(p) => Secret::new(p),
        None => ask(&format!("Password for {user}: "))
            .ok_or_else(|| CredError::NoPassword {
                user: user.to_string(),
            })?
            .map_err(CredError::Prompt)?,
    };
    if password.is_empty() {
        return Err(CredError::EmptyPassword);
    }
    Ok(Credential::basic(user, password))
}

/// Credentials for `key`: a registry (`docker.io`, `host:port`), optionally followed by the
/// repository (`quay.io/org/app`) for podman's namespaced entries. `None`: go anonymous.
pub fn lookup(key: &str, opts: &CredOptions) -> Result<Option<Credential>> {
    if let Some(c) = &opts.creds {
        return Ok(Some(c.clone()));
    }
    let registry = key.split('/').next().unwrap_or(key);
    for (path, docker) in opts.sources.read_order(opts.auth_file.as_deref()) {
        if let Some(c) = lookup_in_file(&path, docker, key, registry, &opts.sources)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

#[derive(Debug, Deserialize, Default)]
struct AuthFile {
    auths: Option<BTreeMap<String, AuthEntry>>,
    #[serde(rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn read_auth_file(path: &Path) -> Result<Option<AuthFile>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| json_err(path, "JSON", &e))
}

/// Docker Hub's names all mean `docker.io`.
fn normalize_registry(r: &str) -> &str {
    match r {
        DOCKER_HUB_LEGACY | DOCKER_HUB_API => DOCKER_HUB,
        _ => r,
    }
}

/// An `auths` key as a registry: URLs lose scheme and path (`https://host/v1/` → `host`).
fn normalize_auth_key(k: &str) -> &str {
    let stripped = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"));
    match stripped {
        Some(s) => normalize_registry(s.split('/').next().unwrap_or(s)),
        None => normalize_registry(k),
    }
}

fn lookup_in_file(
    path: &Path,
    docker: bool,
    key: &str,
    registry: &str,
    sources: &CredSources,
) -> Result<Option<Credential>> {
    let Some(file) = read_auth_file(path)? else {
        return Ok(None);
    };
    let want = normalize_registry(registry);
    let origin = path.display().to_string();
    if let Some(helpers) = &file.cred_helpers {
        if let Some((server, helper)) = helpers.iter().find(|(k, _)| normalize_auth_key(k) == want)
        {
            let entry = format!("the credHelpers entry of {server}");
            return run_helper(helper, &entry, server, &origin, sources, true);
        }
    }
    let auths = file.auths.unwrap_or_default();
    // Exact keys from the most specific (podman's namespaced entries) to the registry, then
    // any key that normalises to the registry.
    let mut exact = Vec::new();
    let mut k = key;
    loop {
        exact.push(k);
        match k.rfind('/') {
            Some(i) => k = &k[..i],
            None => break,
        }
    }
    let found = exact
        .iter()
        .find_map(|k| auths.get_key_value(*k))
        .or_else(|| auths.iter().find(|(k, _)| normalize_auth_key(k) == want));
    if let Some((k, entry)) = found {
        if let Some(c) = decode_entry(path, k, entry)? {
            return Ok(Some(c));
        }
    }
    if docker {
        if let Some(store) = file.creds_store.filter(|s| !s.is_empty()) {
            let server = if want == DOCKER_HUB {
                DOCKER_HUB_AUTH_KEY
            } else {
                registry
            };
            return run_helper(&store, "credsStore", server, &origin, sources, false);
        }
    }
    Ok(None)
}

/// An `auths` entry; `None` for Docker's empty markers (`{}` next to a credential helper).
fn decode_entry(path: &Path, key: &str, e: &AuthEntry) -> Result<Option<Credential>> {
    let token = e
        .identitytoken
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let auth = e.auth.as_deref().unwrap_or("");
    if auth.is_empty() {
        return Ok(token.map(|t| Credential {
            username: String::new(),
            password: Secret::default(),
            identity_token: Some(t),
        }));
    }
    let bad = || CredError::BadAuth {
        path: path.to_path_buf(),
        key: key.to_string(),
    };
    let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credential {
        username: user.to_string(),
        password: Secret::new(pass.trim_matches('\0')),
        identity_token: token,
    }))
}

/// The first executable `name` on `path`.
fn find_in_path(name: &str, path: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[derive(Deserialize)]
struct HelperCreds {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// `docker-credential-NAME get` with `server` on stdin, as Docker runs it; `entry` says where
/// NAME was configured. `required`: the
/// helper was named for this registry (credHelpers), so its absence is an error; a
/// `credsStore` that is not installed means no credentials.
fn run_helper(
    name: &str,
    entry: &str,
    server: &str,
    origin: &str,
    sources: &CredSources,
    required: bool,
) -> Result<Option<Credential>> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
    {
        return Err(CredError::BadHelperName {
            entry: entry.to_string(),
            origin: origin.to_string(),
        });
    }
    let fail = |message: String| CredError::Helper {
        helper: name.to_string(),
        origin: origin.to_string(),
        message,
    };
    let program = format!("docker-credential-{name}");
    let Some(exe) = find_in_path(&program, sources.path.as_ref()) else {
        return match required {
            true => Err(fail(format!("{program} is not in PATH"))),
            false => Ok(None),
        };
    };
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", exe.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot run {}: {e}", exe.display())))?;
    if !out.status.success() {
        // Helpers print their error on stdout; it holds no secret (there is none on failure).
        let text = String::from_utf8_lossy(&out.stdout);
        let text = if text.trim().is_empty() {
            String::from_utf8_lossy(&out.stderr)
        } else {
            text
        };
        if text.contains("credentials not found") {
            return Ok(None);
        }
        let first: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(fail(match first.trim() {
            "" => format!("`get` failed ({})", out.status),
            m => format!("`get` failed ({}): {m}", out.status),
        }));
    }
    // Its output holds the secret: never quote it.
    let creds: HelperCreds = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "`get` printed no {{\"Username\", \"Secret\"}} JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if creds.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if creds.username == "<token>" {
        Credential {
            username: creds.username,
            password: Secret::default(),
            identity_token: Some(Secret(creds.secret)),
        }
    } else {
        Credential::basic(creds.username, Secret(creds.secret))
    }))
}

/// A registry as `login`/`logout` name it: `host[:port][/namespace…]`, URLs reduced to their
/// host, Docker Hub's names to `docker.io`.
pub fn normalize_key(input: &str) -> Result<String> {
    let bad = || CredError::BadRegistry(input.to_string());
    let s = input.trim();
    let s = match s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    {
        Some(rest) => rest.split('/').next().unwrap_or(""),
        None => s.trim_end_matches('/'),
    };
    let (host, ns) = match s.split_once('/') {
        Some((h, n)) => (h, Some(n)),
        None => (s, None),
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    let host_ok = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        && !matches!(port, Some(p) if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()));
    if !host_ok {
        return Err(bad());
    }
    let host = normalize_registry(host);
    match ns {
        None => Ok(host.to_string()),
        Some(ns) => {
            // A namespace is a repository path: no tag, no digest.
            let r =
                crate::reference::Reference::parse(&format!("{host}/{ns}")).map_err(|_| bad())?;
            if r.tag.is_some() || r.digest.is_some() || r.domain.is_none() {
                return Err(bad());
            }
            Ok(format!("{host}/{}", r.path))
        }
    }
}

/// Where `login` writes and `logout` edits: `--authfile`, else `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json` (when that directory exists), else
/// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config`), all of which [`lookup`] reads.
pub fn auth_file_for_write(path_override: Option<&Path>, s: &CredSources) -> Result<PathBuf> {
    if let Some(p) = path_override.or(s.registry_auth_file.as_deref()) {
        return Ok(p.to_path_buf());
    }
    if let Some(d) = s.xdg_runtime_dir.as_ref().filter(|d| d.is_dir()) {
        return Ok(d.join("containers/auth.json"));
    }
    s.config_home()
        .map(|d| d.join("containers/auth.json"))
        .ok_or(CredError::NoAuthFile)
}

/// Reads an auth file as a JSON object, keeping every field we do not touch.
fn read_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", path)(e)),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice::<Value>(&bytes).map_err(|e| json_err(path, "JSON", &e))? {
        Value::Object(m) => Ok(Some(m)),
        _ => Err(CredError::Shape {
            path: path.to_path_buf(),
            what: "the file",
        }),
    }
}

/// The `auths` object of an auth file, created when missing.
fn auths_of<'a>(m: &'a mut Map<String, Value>, path: &Path) -> Result<&'a mut Map<String, Value>> {
    let v = m
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().ok_or_else(|| CredError::Shape {
        path: path.to_path_buf(),
        what: "`auths`",
    })
}

/// Replaces `path` atomically with `m`, mode 0600, creating missing directories 0700.
fn write_object(path: &Path, m: &Map<String, Value>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create", dir))?;
    let mut text = serde_json::to_string_pretty(m).expect("a JSON map serialises");
    text.push('\n');
    // The temporary file is created 0600 (tempfile's mode) before any secret is written to it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".auth.json.")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_err("cannot create a file in", dir))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io_err("cannot write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_err("cannot replace", path)(e.error))?;
    Ok(())
}

/// Checks the credentials, then stores them for `registry` in podman's `auth.json`
/// ([`auth_file_for_write`]), keeping its other entries; returns the file. `verify` is the
/// registry's answer to the credentials (the CLI passes the registry client's check).
pub fn login(
    registry: &str,
    username: &str,
    password: Secret,
    path_override: Option<&Path>,
    sources: &CredSources,
    verify: impl FnOnce(&Credential) -> Result<(), BoxError>,
) -> Result<PathBuf> {
    let key = normalize_key(registry)?;
    if username.contains(':') {
        return Err(CredError::ColonInUser);
    }
    if username.is_empty() {
        return Err(CredError::EmptyUser);
    }
    if password.is_empty() {
        return Err(CredError::EmptyPassword);
    }
    let cred = Credential::basic(username, password);
    verify(&cred).map_err(|err| CredError::Verify {
        registry: key.clone(),
        err,
    })?;
    let path = auth_file_for_write(path_override, sources)?;
    let mut m = read_object(&path)?.unwrap_or_default();
    if let Some(helper) = m
        .get("credHelpers")
        .and_then(|h| h.get(&key))
        .and_then(|h| h.as_str())
    {
        return Err(CredError::HelperManaged {
            key,
            helper: helper.to_string(),
            path,
        });
    }
    let auths = auths_of(&mut m, &path)?;
    let mut entry = Map::new();
    entry.insert(
        "auth".into(),
        Value::String(cred.basic_auth().expose().to_string()),
    );
    auths.insert(key, Value::Object(entry));
    write_object(&path, &m)?;
    Ok(path)
}

/// Removes the credentials of `registry` (every key naming it) from the auth file `login`
/// writes; returns the file.
pub fn logout(
    registry: &str,
    path_override: Option<&Path>,
    sources: &CredSources,
) -> Result<PathBuf> {
    let key = normalize_key(registry)?;
    let path = auth_file_for_write(path_override, sources)?;
    let mut removed = false;
    if let Some(mut m) = read_object(&path)? {
        let auths = auths_of(&mut m, &path)?;
        let before = auths.len();
        auths.retain(|k, _| {
            let same = if key.contains('/') {
                k == &key
            } else {
                normalize_auth_key(k) == key
            };
            !same
        });
        removed = auths.len() != before;
        if removed {
            write_object(&path, &m)?;
        }
    }
    if removed {
        return Ok(path);
    }
    // podman's hint: the user may be thinking of a docker login.
    if path_override.is_none() && sources.registry_auth_file.is_none() {
        if let Some(docker) = sources.docker_config_file() {
            let in_docker = read_auth_file(&docker).ok().flatten().is_some_and(|f| {
                f.auths
                    .unwrap_or_default()
                    .keys()
                    .any(|k| normalize_auth_key(k) == key)
            });
            if in_docker {
                return Err(CredError::DockerLogin { key, path, docker });
            }
        }
    }
    Err(CredError::NotLoggedIn { key, path })
}

/// Removes every `auths` entry from the auth file `login` writes (other fields, such as
/// `credHelpers`, stay); returns the file.
pub fn logout_all(path_override: Option<&Path>, sources: &CredSources) -> Result<PathBuf> {
    let path = auth_file_for_write(path_override, sources)?;
    if let Some(mut m) = read_object(&path)? {
        auths_of(&mut m, &path)?.clear();
        write_object(&path, &m)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests;
