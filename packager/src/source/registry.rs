//! `docker://REF`, bare references and `http://HOST/REF` (plain HTTP only): a pull from a
//! registry into the blob cache, yielding an image whose layers are read from the cache files.

use std::path::PathBuf;

use super::SourceOptions;
use crate::error::{Error, Result};
use crate::model::{Digest, Image};
use crate::reference::{ImageName, Reference};
use crate::registry::blobcache::BlobCache;
use crate::registry::pull::{self, PullOptions, Wanted, DEFAULT_JOBS};
use crate::registry::transport::{RetryPolicy, Timeouts, TlsOptions};
use crate::registry::{Credential, Endpoint};

/// How registry pulls are made, from the command line.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub tls: TlsOptions,
    /// `--creds`: used for the registry the reference names.
    pub credential: Option<Credential>,
    /// Layers downloaded at once.
    pub jobs: usize,
    /// The blob cache (default: `blobs/` of the cache the files use).
    pub cache: Option<PathBuf>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls: TlsOptions::default(),
            credential: None,
            jobs: DEFAULT_JOBS,
            cache: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// Docker Hub's API host: `docker.io` names it but does not serve the API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where to pull a reference from, in order. A minimal resolution for now: the reference's domain
/// (or `docker.io`, served by `registry-1.docker.io`, where a one-component name lives under
/// `library/`). Registries.conf aliases, mirrors and per-host credentials replace this one
/// function; the pull already tries every endpoint in turn.
pub fn endpoints(r: &Reference, opts: &RegistryOptions) -> Vec<Endpoint> {
    let domain = r.domain.as_deref().unwrap_or("docker.io");
    let (host, repository) = match domain {
        "docker.io" | "index.docker.io" | DOCKER_HUB_API => {
            let repo = if r.path.contains('/') {
                r.path.clone()
            } else {
                format!("library/{}", r.path)
            };
            (DOCKER_HUB_API.to_string(), repo)
        }
        d => (d.to_string(), r.path.clone()),
    };
    vec![Endpoint {
        host,
        repository,
        insecure: false,
        credential: opts.credential.clone(),
    }]
}

/// The name the output carries: the reference's (familiar form), its tag, or for a digest-only
/// reference a tag made from the digest (`sha256-0123456789ab`), since Docker needs one.
pub fn image_name(r: &Reference, digest: Option<&Digest>) -> ImageName {
    let full = ImageName::parse(&r.repository()).expect("a parsed reference's repository is valid");
    let tag = match (&r.tag, digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => format!("sha256-{}", &d.hex()[..12]),
        (None, None) => "latest".into(),
    };
    ImageName {
        repository: full.repository,
        tag,
    }
}

/// Pulls `reference` (without `docker://`); `source` is what the user typed.
pub fn open(reference: &str, source: &str, opts: &SourceOptions) -> Result<Image> {
    let plain_http = reference.strip_prefix("http://");
    let r = Reference::parse(plain_http.unwrap_or(reference))?;
    if plain_http.is_some() && r.domain.is_none() {
        return Err(Error::Invalid(format!(
            "`{reference}` names no registry host (http://HOST[:PORT]/REPO[:TAG])"
        )));
    }
    let digest = r.digest.as_deref().map(Digest::parse).transpose()?;
    let ro = &opts.registry;
    let cache = match &ro.cache {
        Some(c) => BlobCache::new(c.clone()),
        None => BlobCache::default_location().ok_or_else(|| {
            Error::Invalid(
                "no blob cache location: neither XDG_CACHE_HOME nor HOME is an absolute path"
                    .into(),
            )
        })?,
    };
    let wanted = Wanted {
        tag: r.tag.clone(),
        digest,
    };
    let mut endpoints = endpoints(&r, ro);
    if plain_http.is_some() {
        for e in &mut endpoints {
            e.host = format!("http://{}", e.host_name());
        }
    }
    pull::pull(
        &endpoints,
        &wanted,
        image_name(&r, digest.as_ref()),
        source,
        &PullOptions {
            tls: ro.tls.clone(),
            platform: opts.platform.clone(),
            jobs: ro.jobs,
            cache,
            timeouts: ro.timeouts,
            retry: ro.retry,
            warn: opts.warn,
            progress: opts.progress,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> (String, String) {
        let e = endpoints(&Reference::parse(s).unwrap(), &RegistryOptions::default());
        assert_eq!(e.len(), 1);
        (e[0].host.clone(), e[0].repository.clone())
    }

    #[test]
    fn docker_hub_names_resolve_to_its_api_host_and_library() {
        let hub = |r: &str| (DOCKER_HUB_API.to_string(), r.to_string());
        assert_eq!(ep("alpine"), hub("library/alpine"));
        assert_eq!(ep("alpine:3.19"), hub("library/alpine"));
        assert_eq!(ep("me/app"), hub("me/app"));
        assert_eq!(ep("docker.io/busybox"), hub("library/busybox"));
        assert_eq!(ep("index.docker.io/me/app"), hub("me/app"));
        assert_eq!(
            ep("localhost:5000/busybox"),
            ("localhost:5000".into(), "busybox".into())
        );
        assert_eq!(ep("ghcr.io/o/i"), ("ghcr.io".into(), "o/i".into()));
    }

    #[test]
    fn output_names_keep_the_tag_or_make_one_from_the_digest() {
        let n = |s: &str| {
            let r = Reference::parse(s).unwrap();
            let d = r.digest.as_deref().map(|d| Digest::parse(d).unwrap());
            image_name(&r, d.as_ref()).familiar()
        };
        assert_eq!(n("alpine"), "alpine:latest");
        assert_eq!(n("docker.io/library/alpine:3"), "alpine:3");
        assert_eq!(
            n("127.0.0.1:5000/x/busybox:1"),
            "127.0.0.1:5000/x/busybox:1"
        );
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(n(&format!("r.io/app@{d}")), "r.io/app:sha256-abababababab");
        assert_eq!(n(&format!("r.io/app:v2@{d}")), "r.io/app:v2");
    }
}
