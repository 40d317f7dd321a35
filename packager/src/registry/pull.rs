//! The pull: an ordered list of endpoints (mirrors first, the registry last) is tried in turn,
//! as podman does; from the first that works, the manifest (an index resolved to the platform),
//! the config and the layers (in parallel, into the blob cache) make an [`Image`] whose layers
//! are read lazily from the cache.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::blobcache::{BlobCache, CachedBlobs};
use super::client::{Client, Fetched};
use super::transport::{RetryPolicy, Timeouts, TlsOptions};
use super::{Endpoint, RegistryError};
use crate::error::{Error, Result};
use crate::model::{self, Descriptor, Digest, Image, JSON_LIMIT};
use crate::platform::Platform;
use crate::reference::ImageName;

/// Default number of layers downloaded at once.
pub const DEFAULT_JOBS: usize = 4;

/// What to pull from a repository: a tag, a digest (which wins, as with Docker), or `latest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Wanted {
    /// The manifest reference to ask for.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

/// Told about layer downloads (a terminal shows bars; elsewhere nothing happens).
pub trait Progress: Sync {
    /// The layers to download, with their sizes, before any starts.
    fn start(&self, _layers: &[Descriptor]) {}
    /// Bytes arrived for layer `index` of those (negative: a restart threw some away).
    fn advance(&self, _index: usize, _bytes: i64) {}
    /// Layer `index` is verified and cached.
    fn done(&self, _index: usize) {}
    /// All done (or failed): clear the display.
    fn finish(&self) {}
}

/// No display.
pub struct Quiet;
impl Progress for Quiet {}

pub struct PullOptions<'a> {
    pub tls: TlsOptions,
    pub platform: Option<Platform>,
    /// Layers downloaded at once (at least 1).
    pub jobs: usize,
    pub cache: BlobCache,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub warn: &'a dyn Fn(&str),
    pub progress: &'a dyn Progress,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    platform: Option<PlatformDoc>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
}

impl PlatformDoc {
    fn label(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// Pulls from the first endpoint that works ([`first_that_works`]).
pub fn pull(
    endpoints: &[Endpoint],
    wanted: &Wanted,
    name: ImageName,
    source: &str,
    opts: &PullOptions,
) -> Result<Image> {
    opts.cache.prepare()?;
    first_that_works(endpoints, opts, |ep| {
        pull_from(ep, wanted, &name, source, opts)
    })
}

/// The manifest or index a reference names, as the first endpoint that answers has it, with no
/// index resolved and no blob fetched (`push --all` copies an index as it is).
pub fn fetch_top(endpoints: &[Endpoint], wanted: &Wanted, opts: &PullOptions) -> Result<Fetched> {
    first_that_works(endpoints, opts, |ep| {
        let c = Client::connect(ep, &opts.tls, opts.timeouts, opts.retry)?;
        let m = c.manifest(&wanted.reference())?;
        if let Some(d) = &wanted.digest {
            check_digest(&c, &m, d, "the manifest")?;
        }
        Ok(m)
    })
}

/// `work` on each endpoint in turn, as podman tries mirrors: a failing endpoint falls through
/// to the next (reported as a warning) unless the error would be the same anywhere; the last
/// endpoint's error is the one returned.
fn first_that_works<T>(
    endpoints: &[Endpoint],
    opts: &PullOptions,
    mut work: impl FnMut(&Endpoint) -> Result<T>,
) -> Result<T> {
    let mut last = None;
    for (i, ep) in endpoints.iter().enumerate() {
        match work(ep) {
            Ok(v) => return Ok(v),
            Err(Error::Registry(e)) if e.falls_through() && i + 1 < endpoints.len() => {
                (opts.warn)(&format!(
                    "{} failed ({e}); trying {}",
                    ep.host_name(),
                    endpoints[i + 1].host_name()
                ));
                last = Some(Error::Registry(e));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Invalid("no registry to pull from".into())))
}

/// The manifests an index lists, in its order.
pub fn index_children(raw: &[u8], what: &str) -> Result<Vec<Digest>> {
    let index: IndexDoc = serde_json::from_slice(raw).map_err(Error::json(what.to_string()))?;
    index
        .manifests
        .iter()
        .map(|e| Digest::parse(&e.digest))
        .collect()
}

fn pull_from(
    ep: &Endpoint,
    wanted: &Wanted,
    name: &ImageName,
    source: &str,
    opts: &PullOptions,
) -> Result<Image> {
    let client = Client::connect(ep, &opts.tls, opts.timeouts, opts.retry)?;
    let reference = wanted.reference();
    let shown = match &wanted.digest {
        Some(d) => format!("{}/{}@{d}", ep.host_name(), ep.repository),
        None => format!("{}/{}:{reference}", ep.host_name(), ep.repository),
    };
    let mut m = client.manifest(&reference)?;
    if let Some(d) = &wanted.digest {
        check_digest(&client, &m, d, "the manifest")?;
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    for _ in 0..4 {
        if !m.is_index() {
            break;
        }
        let index: IndexDoc =
            serde_json::from_slice(&m.raw).map_err(Error::json(format!("the index of {shown}")))?;
        let platforms: Vec<Option<&PlatformDoc>> = index
            .manifests
            .iter()
            .map(|e| e.platform.as_ref())
            .collect();
        let chosen = platform
            .best(platforms.iter().map(|p| match p {
                Some(p) => (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
                None => ("", "", None),
            }))
            .ok_or_else(|| RegistryError::NoPlatform {
                reference: shown.clone(),
                wanted: platform.to_string(),
                available: available(&platforms),
            })?;
        let entry = &index.manifests[chosen];
        let digest = Digest::parse(&entry.digest)?;
        if entry.size > JSON_LIMIT {
            return Err(Error::Invalid(format!(
                "manifest {digest} in {shown} is larger than {JSON_LIMIT} bytes"
            )));
        }
        let mut child = client.manifest(&digest.to_string())?;
        check_digest(&client, &child, &digest, "a manifest of the index")?;
        if !entry.media_type.is_empty() {
            child.media_type = entry.media_type.clone();
        }
        m = child;
    }
    if m.is_index() {
        return Err(Error::Invalid(format!(
            "indexes in {shown} nest too deeply"
        )));
    }

    let manifest = model::parse_manifest(m.raw.clone(), Some(&m.media_type))?;
    let cfg = manifest.parsed.config();
    let cfg_desc = Descriptor::new(
        cfg.media_type().as_ref(),
        Digest::parse(cfg.digest().as_ref())?,
        cfg.size(),
    );
    if cfg_desc.size > JSON_LIMIT {
        return Err(Error::Invalid(format!(
            "the config of {shown} is larger than {JSON_LIMIT} bytes"
        )));
    }
    let never = AtomicBool::new(false);
    let cfg_path = client.blob(&cfg_desc, "the image config", &opts.cache, &never, &|_| {})?;
    let config_raw = std::fs::read(&cfg_path).map_err(Error::io("cannot read", &cfg_path))?;
    let image = Image::new(
        m.raw,
        Some(&m.media_type),
        config_raw,
        Arc::new(CachedBlobs(opts.cache.clone())),
        name.clone(),
        source.to_string(),
    )?;
    image.warn_unless_platform(opts.platform.as_ref(), &shown, opts.warn);
    download_layers(&client, &image.layers, opts)?;
    Ok(image)
}

fn check_digest(client: &Client, m: &Fetched, want: &Digest, what: &str) -> Result<()> {
    if m.digest != *want {
        return Err(RegistryError::DigestMismatch {
            host: client.host().into(),
            what: what.into(),
            digest: want.to_string(),
            actual: m.digest.to_string(),
        }
        .into());
    }
    Ok(())
}

/// `linux/amd64, linux/arm64/v8` (attestation entries, `unknown/unknown`, left out).
fn available(platforms: &[Option<&PlatformDoc>]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for p in platforms.iter().flatten() {
        let l = p.label();
        if p.os != "unknown" && !seen.contains(&l) {
            seen.push(l);
        }
    }
    if seen.is_empty() {
        "no platforms listed".into()
    } else {
        seen.join(", ")
    }
}

/// Downloads the layers the cache lacks, `opts.jobs` at a time. The first failure stops the
/// others and is the one reported.
fn download_layers(client: &Client, layers: &[Descriptor], opts: &PullOptions) -> Result<()> {
    let mut missing: Vec<Descriptor> = Vec::new();
    for l in layers {
        if opts.cache.lookup(l).is_none() && !missing.iter().any(|m| m.digest == l.digest) {
            missing.push(l.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    opts.progress.start(&missing);
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let failed: Mutex<Option<RegistryError>> = Mutex::new(None);
    let jobs = opts.jobs.clamp(1, 16).min(missing.len());
    let (cache, progress) = (&opts.cache, opts.progress);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= missing.len() || cancel.load(Ordering::Relaxed) {
                    break;
                }
                let d = &missing[i];
                let what = format!("layer {}", d.digest);
                match client.blob(d, &what, cache, &cancel, &|n| progress.advance(i, n)) {
                    Ok(_) => progress.done(i),
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        failed.lock().unwrap().get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    opts.progress.finish();
    match failed.into_inner().unwrap() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_wins_over_a_tag_and_latest_is_the_default() {
        let d = Digest::of(b"x");
        let w = |tag: Option<&str>, digest| Wanted {
            tag: tag.map(str::to_string),
            digest,
        };
        assert_eq!(w(Some("1"), Some(d)).reference(), d.to_string());
        assert_eq!(w(Some("1"), None).reference(), "1");
        assert_eq!(w(None, None).reference(), "latest");
    }

    #[test]
    fn available_platforms_leave_out_attestations() {
        let p = |os: &str, arch: &str, v: Option<&str>| PlatformDoc {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(str::to_string),
        };
        let a = p("linux", "amd64", None);
        let b = p("linux", "arm64", Some("v8"));
        let c = p("unknown", "unknown", None);
        assert_eq!(
            available(&[Some(&a), Some(&b), Some(&c), None, Some(&a)]),
            "linux/amd64, linux/arm64/v8"
        );
    }
}
