//! The packager library's error type: every variant names what it was working on.

use std::io;
use std::path::PathBuf;

use loader::format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("{what}: {source}")]
    IoOther { what: String, source: io::Error },

    #[error("invalid JSON in {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },

    #[error("{0}")]
    Invalid(String),

    #[error("unknown transport `{transport}` in `{reference}` (known: oci:, oci-archive:, docker-archive:, dir:)")]
    UnknownTransport {
        transport: String,
        reference: String,
    },

    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),

    #[error("`{reference}` is not a valid image reference: {why}")]
    BadReference { reference: String, why: String },

    #[error("{what} not found: {name}")]
    NotFound { what: &'static str, name: String },

    #[error("blob {digest} does not match its digest (content hashes to {actual})")]
    DigestMismatch { digest: String, actual: String },

    #[error("blob {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("unsupported digest `{0}` (only sha256 is supported)")]
    UnsupportedDigest(String),

    #[error("no loader embedded; build with `make` or pass --loader")]
    NoLoader,

    #[error(transparent)]
    Daemon(#[from] crate::source::daemon::DaemonError),

    #[error(transparent)]
    RegistriesConf(#[from] crate::registries_conf::ConfError),

    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredError),

    #[error("loader {}: {source}", path.display())]
    BadLoader { path: PathBuf, source: FormatError },

    #[error("{0}")]
    Format(#[from] FormatError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    pub fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
        let what = what.into();
        move |source| Error::Json { what, source }
    }
}

/// An error and its causes on one line, joined by ": ". A cause whose text the message already
/// ends with is left out: our `Io` variants, like many library errors, print their source
/// themselves and also return it from `source()`, so anyhow's `{:#}` would say it twice.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_says_each_cause_once() {
        let io = || io::Error::from(io::ErrorKind::PermissionDenied);
        let e = anyhow::Error::new(Error::Io {
            what: "cannot open",
            path: "/x/index.json".into(),
            source: io(),
        })
        .context("cannot read oci:/x");
        assert_eq!(
            one_line(&e),
            format!("cannot read oci:/x: cannot open /x/index.json: {}", io())
        );
        let plain = anyhow::Error::new(io()).context("a").context("b");
        assert_eq!(one_line(&plain), format!("b: a: {}", io()));
    }
}
