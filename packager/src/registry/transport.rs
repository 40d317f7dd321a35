//! HTTP(S) transport: one ureq agent per endpoint, TLS roots (the system's plus a cert dir's),
//! client certificates, retry policy, and turning transport errors into messages a user can act on.
//!
//! Cert dirs follow skopeo's layout: `*.crt` files are CAs added to the system's roots, `NAME.cert`
//! with `NAME.key` is a client certificate. Without `--cert-dir`, the per-host directories
//! `~/.config/containers/certs.d/HOST[:PORT]/`, `/etc/containers/certs.d/HOST[:PORT]/` and
//! `/etc/docker/certs.d/HOST[:PORT]/` are read, as containers/image does.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::config::RedirectAuthHeaders;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use super::{RegistryError, Result};

/// How to reach registries, from the command line.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `--tls-verify` (default true). False: certificates go unchecked and plain HTTP is tried
    /// when TLS fails.
    pub verify: bool,
    /// `--cert-dir`: replaces the per-host certs.d directories.
    pub cert_dir: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            verify: true,
            cert_dir: None,
        }
    }
}

/// Retries of one request: attempts in all, and the first back-off (doubled each time, capped).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1); a server's `Retry-After`
    /// wins, up to a minute, so a rate limit is honoured but cannot stall a pull for hours.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(Duration::from_secs(60));
        }
        let d = self
            .first_delay
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        d.min(self.max_delay)
    }
}

/// Parses `Retry-After` in its seconds form (the HTTP-date form is rare from registries and
/// falls back to our own back-off).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a status is worth retrying: rate limits and server-side trouble.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The time limits of every request: connecting, and each read (a stalled transfer fails and is
/// resumed; a slow one that keeps moving never times out).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            read: Duration::from_secs(60),
        }
    }
}

/// An agent for one host. `verify` false skips certificate checks (client certificates are
/// still presented).
pub fn agent(host: &str, verify: bool, opts: &TlsOptions, timeouts: Timeouts) -> Result<Agent> {
    let dirs = match &opts.cert_dir {
        Some(d) => vec![d.clone()],
        None => default_cert_dirs(host),
    };
    let material = CertMaterial::load(&dirs)?;
    let mut tls = TlsConfig::builder()
        .client_cert(material.client)
        .disable_verification(!verify);
    if verify {
        let mut roots: Vec<Certificate<'static>> = system_roots().to_vec();
        roots.extend(material.cas);
        // With no system roots at all (a bare container) and no CA of our own, Mozilla's bundle
        // built into ureq is better than refusing every host.
        tls = tls.root_certs(if roots.is_empty() {
            RootCerts::WebPki
        } else {
            RootCerts::Specific(Arc::new(roots))
        });
    }
    let config = Agent::config_builder()
        .http_status_as_error(false)
        // Blob GETs are redirected to storage (S3, a CDN) that must not see our token.
        .redirect_auth_headers(RedirectAuthHeaders::Never)
        .max_redirects(10)
        .user_agent(format!("oci2bin/{}", env!("CARGO_PKG_VERSION")))
        // No Accept-Encoding: blobs must arrive byte for byte as their digests say.
        .accept_encoding("identity")
        .timeout_connect(Some(timeouts.connect))
        .timeout_per_read(Some(timeouts.read))
        .timeout_recv_response(Some(timeouts.read))
        .tls_config(tls.build())
        .build();
    Ok(config.new_agent())
}

/// The system's CA roots, loaded once per process (reading them takes a few milliseconds).
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        // Unreadable files among the roots are skipped, as every TLS client does.
        rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect()
    })
}

/// The certs.d directories containers/image reads for a host, in its order.
pub fn default_cert_dirs(host: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(
            Path::new(&home)
                .join(".config/containers/certs.d")
                .join(host),
        );
    }
    dirs.push(Path::new("/etc/containers/certs.d").join(host));
    dirs.push(Path::new("/etc/docker/certs.d").join(host));
    dirs
}

/// CAs and a client certificate found in cert directories.
#[derive(Default)]
pub struct CertMaterial {
    pub cas: Vec<Certificate<'static>>,
    pub client: Option<ClientCert>,
}

impl CertMaterial {
    /// Reads `*.crt` (CAs) and `NAME.cert` + `NAME.key` (a client pair) from each directory that
    /// exists; a missing directory is fine, a broken file is an error naming it.
    pub fn load(dirs: &[PathBuf]) -> Result<CertMaterial> {
        let mut m = CertMaterial::default();
        for dir in dirs {
            let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(RegistryError::CertDir {
                        what: "cannot read cert dir",
                        path: dir.clone(),
                        detail: e.to_string(),
                    })
                }
            };
            names.sort();
            for path in names {
                match path.extension().and_then(|e| e.to_str()) {
                    Some("crt") => m.cas.extend(read_certs(&path)?),
                    Some("cert") if m.client.is_none() => {
                        let key = path.with_extension("key");
                        if !key.exists() {
                            return Err(RegistryError::CertDir {
                                what: "client certificate without its key",
                                path: path.clone(),
                                detail: format!("{} is missing", key.display()),
                            });
                        }
                        m.client = Some(ClientCert::new_with_certs(
                            &read_certs(&path)?,
                            read_key(&key)?,
                        ));
                    }
                    Some("key") if !path.with_extension("cert").exists() => {
                        return Err(RegistryError::CertDir {
                            what: "client key without its certificate",
                            path: path.clone(),
                            detail: format!("{} is missing", path.with_extension("cert").display()),
                        })
                    }
                    _ => {}
                }
            }
        }
        Ok(m)
    }
}

fn pem_items(path: &Path) -> Result<Vec<PemItem<'static>>> {
    let bad = |detail: String| RegistryError::CertDir {
        what: "cannot read",
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    ureq::tls::parse_pem(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM: {e}")))
}

fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let certs: Vec<_> = pem_items(path)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(RegistryError::CertDir {
            what: "no PEM certificate in",
            path: path.to_path_buf(),
            detail: "expected -----BEGIN CERTIFICATE-----".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKey<'static>> {
    pem_items(path)?
        .into_iter()
        .find_map(|i| match i {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| RegistryError::CertDir {
            what: "no PEM private key in",
            path: path.to_path_buf(),
            detail: "expected -----BEGIN PRIVATE KEY----- (or RSA/EC)".into(),
        })
}

/// What kind of transport failure this was, for retries and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nobody answers there (refused, no such host, no route): retrying only delays the error.
    Unreachable,
    /// The TLS handshake failed (certificate, protocol): the same every time.
    Tls,
    /// A timeout: worth retrying.
    Timeout,
    /// The connection broke mid-way (reset, cut): worth retrying, or resuming.
    Broken,
    /// Anything else ureq reports (bad URL, protocol error from the server).
    Other,
}

impl Failure {
    pub fn retryable(self) -> bool {
        matches!(self, Failure::Timeout | Failure::Broken)
    }
}

pub fn classify(e: &ureq::Error) -> Failure {
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => Failure::Unreachable,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => Failure::Tls,
        ureq::Error::Timeout(_) => Failure::Timeout,
        ureq::Error::Io(io) => classify_io(io),
        ureq::Error::Protocol(_) => Failure::Broken,
        _ => Failure::Other,
    }
}

/// Transport trouble while reading a body.
pub fn classify_io(e: &io::Error) -> Failure {
    use io::ErrorKind as K;
    // ureq wraps its own errors (a timeout while reading the body) into io::Error.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
        return classify(inner);
    }
    // rustls reports a failed handshake (unknown issuer, a plain-HTTP server) through io::Error.
    if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
        return Failure::Tls;
    }
    match e.kind() {
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
            Failure::Unreachable
        }
        K::TimedOut | K::WouldBlock => Failure::Timeout,
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected
        | K::Interrupted => Failure::Broken,
        _ => Failure::Other,
    }
}

/// A transport error as the user should read it.
pub fn to_error(host: &str, e: &ureq::Error) -> RegistryError {
    let detail = describe(e);
    match classify(e) {
        Failure::Unreachable => RegistryError::Unreachable {
            host: host.into(),
            detail,
        },
        Failure::Tls => RegistryError::Tls {
            host: host.into(),
            detail,
        },
        Failure::Timeout => RegistryError::Timeout {
            host: host.into(),
            detail,
        },
        Failure::Broken | Failure::Other => RegistryError::Protocol {
            host: host.into(),
            what: "connection".into(),
            detail,
        },
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::HostNotFound => "no such host".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => tls.to_string(),
            None => io.to_string(),
        },
        other => other.to_string(),
    }
    .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap_and_retry_after_wins() {
        let p = RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        let d: Vec<_> = (1..=4).map(|a| p.delay(a, None).as_millis()).collect();
        assert_eq!(d, [100, 200, 350, 350]);
        assert_eq!(p.delay(1, retry_after(Some(" 3 "))), Duration::from_secs(3));
        assert_eq!(
            p.delay(1, retry_after(Some("86400"))),
            Duration::from_secs(60)
        );
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    #[test]
    fn io_errors_sort_into_what_to_retry() {
        let k = |kind| classify_io(&io::Error::from(kind));
        assert_eq!(k(io::ErrorKind::ConnectionRefused), Failure::Unreachable);
        assert_eq!(k(io::ErrorKind::ConnectionReset), Failure::Broken);
        assert_eq!(k(io::ErrorKind::UnexpectedEof), Failure::Broken);
        assert_eq!(k(io::ErrorKind::TimedOut), Failure::Timeout);
        assert!(Failure::Broken.retryable() && !Failure::Tls.retryable());
    }

    fn self_signed(dir: &Path, stem: &str) {
        let o = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=test"])
            .arg("-keyout")
            .arg(dir.join(format!("{stem}.key")))
            .arg("-out")
            .arg(dir.join(format!("{stem}.cert")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    #[test]
    fn cert_dirs_give_cas_and_a_client_pair_and_name_broken_files() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("SKIP: no openssl");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        self_signed(t.path(), "client");
        std::fs::copy(t.path().join("client.cert"), t.path().join("ca.crt")).unwrap();
        let m = CertMaterial::load(&[t.path().into(), t.path().join("missing")]).unwrap();
        assert_eq!(m.cas.len(), 1);
        assert!(m.client.is_some());

        std::fs::write(t.path().join("broken.crt"), b"not a cert").unwrap();
        let e = CertMaterial::load(&[t.path().into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("broken.crt"), "{e}");
        std::fs::remove_file(t.path().join("broken.crt")).unwrap();

        std::fs::remove_file(t.path().join("client.key")).unwrap();
        let e = CertMaterial::load(&[t.path().into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("client.cert") && e.contains("client.key"), "{e}");
    }

    #[test]
    fn default_cert_dirs_are_per_host() {
        let d = default_cert_dirs("r.example:5000");
        assert!(d.contains(&PathBuf::from("/etc/containers/certs.d/r.example:5000")));
        assert!(d.contains(&PathBuf::from("/etc/docker/certs.d/r.example:5000")));
    }
}
