//! The registry client (distribution API v2): transport and TLS ([`transport`]), the auth
//! flow ([`auth`]), manifests and blobs ([`client`]), the verified blob cache ([`blobcache`]) and
//! the pull itself ([`pull`]), which turns an ordered list of [`Endpoint`]s into an
//! [`Image`](crate::model::Image), and the push ([`push`]) of one image to a repository.
//!
//! Secrets (passwords, identity tokens, bearer tokens) never reach a message, an error or a
//! `Debug` line: they are [`crate::credentials::Secret`]s (`***`), and the types holding them
//! print `<redacted>` in their place.

pub mod auth;
pub mod bars;
pub mod blobcache;
pub mod client;
pub mod pull;
pub mod push;
pub mod transport;

use std::io;
use std::path::PathBuf;

pub use auth::Credential;

/// One place to pull from: a registry host (`HOST[:PORT]`, or `http://HOST[:PORT]` for plain
/// HTTP only), the repository there, and whether TLS may be skipped. A reference resolves to an
/// ordered list of these (mirrors first, the registry itself last); the pull tries them in turn.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub repository: String,
    /// Unverified TLS, then plain HTTP when TLS fails (registries.conf `insecure = true`).
    pub insecure: bool,
    /// Credential for this host, if any.
    pub credential: Option<Credential>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("repository", &self.repository)
            .field("insecure", &self.insecure)
            .field("credential", &self.credential)
            .finish()
    }
}

impl Endpoint {
    /// The host without an `http://` prefix, as messages and certs.d name it.
    pub fn host_name(&self) -> &str {
        self.host.strip_prefix("http://").unwrap_or(&self.host)
    }

    /// Whether only plain HTTP was asked for.
    pub fn plain_http(&self) -> bool {
        self.host.starts_with("http://")
    }
}

/// What went wrong talking to a registry; every variant names the host (and the repository,
/// digest or tag when there is one) and, where one exists, what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach {host}: {detail}")]
    Unreachable { host: String, detail: String },

    #[error("TLS with {host} failed: {detail} (for a private CA pass --cert-dir DIR holding its .crt, or put it in /etc/containers/certs.d/{host}/; --tls-verify=false skips verification)")]
    Tls { host: String, detail: String },

    #[error("{host} timed out ({detail})")]
    Timeout { host: String, detail: String },

    #[error("{host} refused the credentials for {repository} (401 unauthorized): check them, or log in again with `oci2bin login {host}`")]
    BadCredentials { host: String, repository: String },

    #[error("pull access to {repository} on {host} denied (401 unauthorized): the repository does not exist or needs a login (`oci2bin login {host}` or --creds USER:PASS)")]
    Unauthorized { host: String, repository: String },

    #[error("{host} denied access to {repository} (403 forbidden){}: log in with an account that may pull it (`oci2bin login {host}` or --creds USER:PASS)", server_says(.message))]
    Denied {
        host: String,
        repository: String,
        message: String,
    },

    #[error("push access to {repository} on {host} denied ({status}){}: log in with an account that may push there (`oci2bin login {host}` or --creds USER:PASS)", server_says(.message))]
    PushDenied {
        host: String,
        repository: String,
        status: &'static str,
        message: String,
    },

    #[error("repository {repository} not found on {host}")]
    UnknownRepository { host: String, repository: String },

    #[error("{what} `{reference}` not found in {repository} on {host}{known}")]
    UnknownManifest {
        host: String,
        repository: String,
        /// "tag" or "manifest" (a digest).
        what: &'static str,
        reference: String,
        /// ` (it has: …)`, the repository's tags, when they could be listed.
        known: String,
    },

    #[error("blob {digest} not found in {repository} on {host}")]
    UnknownBlob {
        host: String,
        repository: String,
        digest: String,
    },

    #[error("{host} answered {status} to {what}{}", server_says(.message))]
    Status {
        host: String,
        what: String,
        status: u16,
        message: String,
    },

    #[error("{host} still answered {status} to {what} after {attempts} attempts")]
    GaveUp {
        host: String,
        what: String,
        status: u16,
        attempts: u32,
    },

    #[error("{host}: {what}: {detail}")]
    Protocol {
        host: String,
        what: String,
        detail: String,
    },

    #[error("{what} from {host} does not match its digest {digest} (content hashes to {actual}); nothing was kept")]
    DigestMismatch {
        host: String,
        what: String,
        digest: String,
        actual: String,
    },

    #[error(
        "{what} from {host} has {actual} bytes, its descriptor says {expected}; nothing was kept"
    )]
    SizeMismatch {
        host: String,
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{reference} on {host} is a Docker schema 1 manifest, which oci2bin does not read (deprecated since 2019): push the image again with a current client")]
    Schema1 { host: String, reference: String },

    #[error(
        "{reference} has no image for {wanted} (it has: {available}); pick one with --platform"
    )]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },

    #[error("{what} {}: {detail}", path.display())]
    CertDir {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },

    #[error("pull cancelled")]
    Cancelled,
}

fn server_says(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl RegistryError {
    /// Whether another endpoint (the next mirror, or the registry itself) could do better.
    /// Local trouble and a reference that fits no platform would fail the same way everywhere.
    pub fn falls_through(&self) -> bool {
        !matches!(
            self,
            RegistryError::NoPlatform { .. }
                | RegistryError::CertDir { .. }
                | RegistryError::Io { .. }
                | RegistryError::Cancelled
        )
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
