//! `docker://REF`, bare references and `http://HOST/REF` (plain HTTP only): a pull from a
//! registry into the blob cache, yielding an image whose layers are read from the cache files.

use std::path::PathBuf;

use super::SourceOptions;
use crate::credentials::{self, CredOptions};
use crate::error::{Error, Result};
use crate::model::{Digest, Image};
use crate::reference::{ImageName, Reference};
use crate::registries_conf::{self, RegistriesConf, ShortNames};
use crate::registry::auth::Secret;
use crate::registry::blobcache::BlobCache;
use crate::registry::pull::{self, PullOptions, Wanted, DEFAULT_JOBS};
use crate::registry::push::IndexBytes;
use crate::registry::transport::{RetryPolicy, Timeouts, TlsOptions};
use crate::registry::{Credential, Endpoint};

/// How registry pulls are made, from the command line.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub tls: TlsOptions,
    /// `--creds`, `--authfile` and the credential files and helpers to look in.
    pub credentials: CredOptions,
    /// Whether a short name may go to registries.conf's search registries.
    pub short_names: ShortNames,
    /// registries.conf; `None` reads the user's files (`$CONTAINERS_REGISTRIES_CONF`, …).
    pub conf: Option<RegistriesConf>,
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
            credentials: CredOptions::default(),
            short_names: ShortNames::DockerHub,
            conf: None,
            jobs: DEFAULT_JOBS,
            cache: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// The pull client's form of a stored credential: an identity token (an OAuth2 refresh token)
/// when the file holds one, else user and password.
pub fn to_client_credential(c: &credentials::Credential) -> Credential {
    match &c.identity_token {
        Some(t) => Credential::IdentityToken(Secret::new(t.expose())),
        None => Credential::basic(c.username.clone(), c.password.expose()),
    }
}

/// Where to pull a reference from, in order: registries.conf's mirrors, then the registry (or
/// its `location`), each with the credentials stored for it. Notes (what a short name would
/// have meant elsewhere, which candidates are tried) go to `warn`.
pub fn endpoints(
    r: &Reference,
    opts: &RegistryOptions,
    warn: &dyn Fn(&str),
) -> Result<Vec<Endpoint>> {
    let loaded;
    let conf = match &opts.conf {
        Some(c) => c,
        None => {
            loaded = registries_conf::load_default()?;
            &loaded
        }
    };
    let resolved = registries_conf::resolve_reference(conf, r, opts.short_names)?;
    for n in &resolved.notes {
        warn(n);
    }
    resolved
        .endpoints
        .iter()
        .map(|e| {
            let credential = credentials::lookup(&e.auth_key(), &opts.credentials)?;
            Ok(Endpoint {
                host: e.host.clone(),
                repository: e.repository.clone(),
                insecure: e.insecure,
                credential: credential.as_ref().map(to_client_credential),
            })
        })
        .collect()
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

/// A reference made ready to pull: where from, what, and how.
struct Prepared {
    reference: Reference,
    digest: Option<Digest>,
    endpoints: Vec<Endpoint>,
    wanted: Wanted,
    cache: BlobCache,
}

/// Pulls `reference` (without `docker://`); `source` is what the user typed.
pub fn open(reference: &str, source: &str, opts: &SourceOptions) -> Result<Image> {
    let p = prepare(reference, opts)?;
    pull::pull(
        &p.endpoints,
        &p.wanted,
        image_name(&p.reference, p.digest.as_ref()),
        source,
        &pull_options(p.cache, opts),
    )
}

/// The index `reference` names, as stored, with each image it lists pulled (by digest), or
/// `None` when it names a single manifest: what `push --all` copies.
pub fn open_all(reference: &str, opts: &SourceOptions) -> Result<Option<(IndexBytes, Vec<Image>)>> {
    let p = prepare(reference, opts)?;
    let top = pull::fetch_top(&p.endpoints, &p.wanted, &pull_options(p.cache, opts))?;
    if !top.is_index() {
        return Ok(None);
    }
    let children = pull::index_children(&top.raw, &format!("the index of {reference}"))?;
    let mut images = Vec::with_capacity(children.len());
    for d in &children {
        let child = child_reference(reference, d)?;
        images.push(open(&child, &child, opts)?);
    }
    let index = IndexBytes {
        raw: top.raw,
        media_type: top.media_type,
    };
    Ok(Some((index, images)))
}

/// `reference` with a digest in place of its tag: one manifest of an index it names.
fn child_reference(reference: &str, digest: &Digest) -> Result<String> {
    let plain_http = reference.strip_prefix("http://");
    let r = Reference::parse(plain_http.unwrap_or(reference))?;
    let scheme = if plain_http.is_some() { "http://" } else { "" };
    Ok(format!("{scheme}{}@{digest}", r.repository()))
}

fn pull_options<'a>(cache: BlobCache, opts: &'a SourceOptions) -> PullOptions<'a> {
    let ro = &opts.registry;
    PullOptions {
        tls: ro.tls.clone(),
        platform: opts.platform.clone(),
        jobs: ro.jobs,
        cache,
        timeouts: ro.timeouts,
        retry: ro.retry,
        warn: opts.warn,
        progress: opts.progress,
    }
}

fn prepare(reference: &str, opts: &SourceOptions) -> Result<Prepared> {
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
    let mut endpoints = endpoints(&r, ro, opts.warn)?;
    if plain_http.is_some() {
        for e in &mut endpoints {
            e.host = format!("http://{}", e.host_name());
        }
    }
    Ok(Prepared {
        reference: r,
        digest,
        endpoints,
        wanted,
        cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> (String, String) {
        let opts = RegistryOptions {
            conf: Some(RegistriesConf::default()),
            credentials: CredOptions {
                sources: credentials::CredSources::default(),
                ..CredOptions::default()
            },
            ..RegistryOptions::default()
        };
        let e = endpoints(&Reference::parse(s).unwrap(), &opts, &|_| {}).unwrap();
        assert_eq!(e.len(), 1);
        (e[0].host.clone(), e[0].repository.clone())
    }

    #[test]
    fn docker_hub_names_resolve_to_its_api_host_and_library() {
        let hub = |r: &str| ("registry-1.docker.io".to_string(), r.to_string());
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
