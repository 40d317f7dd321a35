//! The in-memory image every source yields and every sink consumes: manifest and config (raw bytes
//! kept, so digests survive untouched), layer descriptors, and a [`BlobSource`] that opens layer
//! blobs lazily.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::reference::ImageName;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A sha256 content digest (`sha256:<64 lower-case hex>`), the only algorithm supported.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::UnsupportedDigest(s.into()))?;
        if hex.len() != 64 || hex.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(Error::UnsupportedDigest(s.into()));
        }
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex, &mut b).map_err(|_| Error::UnsupportedDigest(s.into()))?;
        Ok(Digest(b))
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A content descriptor: what a manifest says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: BTreeMap::new(),
        }
    }
}

/// Where layer blobs come from. Blobs are opened only when a sink copies them; the sink verifies
/// size and digest, so a source may hand out unverified bytes.
pub trait BlobSource: Send + Sync {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>>;

    /// Whether every reader [`open`](BlobSource::open) returns checks the sha256 itself and
    /// fails at its end on a mismatch, so a consumer need not hash the bytes a second time.
    fn verifies_digests(&self) -> bool {
        false
    }

    /// A file holding exactly this blob's bytes, verified when it was stored, so a sink may copy
    /// it in the kernel (`copy_file_range`) without reading or hashing it. `None`: use
    /// [`open`](BlobSource::open).
    fn trusted_file(&self, _desc: &Descriptor) -> Option<std::fs::File> {
        None
    }
}

/// Blobs held in memory, keyed by digest (tests and small synthesized layers).
#[derive(Default)]
pub struct MemoryBlobs(pub BTreeMap<Digest, Vec<u8>>);

impl MemoryBlobs {
    pub fn insert(&mut self, bytes: Vec<u8>) -> Digest {
        let d = Digest::of(&bytes);
        self.0.insert(d, bytes);
        d
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>> {
        let b = self.0.get(&desc.digest).ok_or_else(|| Error::NotFound {
            what: "blob",
            name: desc.digest.to_string(),
        })?;
        Ok(Box::new(&b[..]))
    }
}

/// The image manifest: raw bytes (their hash is the image digest) and the parsed form.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub raw: Vec<u8>,
    pub parsed: ImageManifest,
    pub digest: Digest,
    pub media_type: String,
}

/// The image configuration: raw bytes (their hash is the image ID) and the parsed form.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: Vec<u8>,
    pub parsed: ImageConfiguration,
    pub digest: Digest,
}

impl Config {
    pub fn parse(raw: Vec<u8>) -> Result<Config> {
        let parsed = serde_json::from_slice(&raw).map_err(Error::json("image config"))?;
        Ok(Config {
            digest: Digest::of(&raw),
            raw,
            parsed,
        })
    }
}

/// One image, as every source yields it.
#[derive(Clone)]
pub struct Image {
    pub manifest: Manifest,
    pub config: Config,
    pub layers: Vec<Descriptor>,
    pub blobs: Arc<dyn BlobSource>,
    /// The name written into the output (`RepoTags`, index annotations).
    pub name: ImageName,
    /// The source reference as the user gave it.
    pub source: String,
    /// The manifest digest as the source had it, before any mutation.
    pub source_digest: Digest,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("name", &self.name)
            .field("digest", &self.manifest.digest)
            .field("config", &self.config.digest)
            .field("layers", &self.layers)
            .finish()
    }
}

impl Image {
    /// Assembles an image from a manifest and its config, checking that they belong together.
    pub fn new(
        manifest_raw: Vec<u8>,
        media_type: Option<&str>,
        config_raw: Vec<u8>,
        blobs: Arc<dyn BlobSource>,
        name: ImageName,
        source: String,
    ) -> Result<Image> {
        let manifest = parse_manifest(manifest_raw, media_type)?;
        let config = Config::parse(config_raw)?;
        let want = Digest::parse(manifest.parsed.config().digest().as_ref())?;
        if want != config.digest {
            return Err(Error::DigestMismatch {
                digest: want.to_string(),
                actual: config.digest.to_string(),
            });
        }
        let layers = manifest
            .parsed
            .layers()
            .iter()
            .map(|l| {
                Ok(Descriptor {
                    media_type: l.media_type().to_string(),
                    digest: Digest::parse(l.digest().as_ref())?,
                    size: l.size(),
                    annotations: l
                        .annotations()
                        .as_ref()
                        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let source_digest = manifest.digest;
        Ok(Image {
            manifest,
            config,
            layers,
            blobs,
            name,
            source,
            source_digest,
        })
    }

    /// Warns (through `warn`) when the image is not of the platform asked for: an image that is
    /// not an index cannot be resolved, only reported. `shown` names it in the message.
    pub fn warn_unless_platform(
        &self,
        platform: Option<&crate::platform::Platform>,
        shown: &str,
        warn: &dyn Fn(&str),
    ) {
        let Some(p) = platform else { return };
        let variant = self.config.parsed.variant();
        if !p.matches(&self.os(), &self.architecture(), variant.as_deref()) {
            warn(&format!(
                "{shown} is {}/{}, not the requested {p}",
                self.os(),
                self.architecture()
            ));
        }
    }

    pub fn architecture(&self) -> String {
        self.config.parsed.architecture().to_string()
    }

    pub fn os(&self) -> String {
        self.config.parsed.os().to_string()
    }

    /// Entrypoint, Cmd, Env, WorkingDir, User, StopSignal, Labels of the config.
    pub fn run_config(&self) -> RunConfig {
        let c = self.config.parsed.config().clone().unwrap_or_default();
        RunConfig {
            entrypoint: c.entrypoint().clone(),
            cmd: c.cmd().clone(),
            env: c.env().clone().unwrap_or_default(),
            workdir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            stop_signal: c.stop_signal().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        }
    }
}

/// The parts of the config that say how to run the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    #[serde(default)]
    pub stop_signal: String,
    pub labels: BTreeMap<String, String>,
}

/// Parses a manifest, accepting OCI and Docker v2 schema 2 media types.
pub fn parse_manifest(raw: Vec<u8>, media_type: Option<&str>) -> Result<Manifest> {
    let parsed: ImageManifest =
        serde_json::from_slice(&raw).map_err(Error::json("image manifest"))?;
    let media_type = parsed
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .or_else(|| media_type.map(str::to_string))
        .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_string());
    if media_type != MEDIA_OCI_MANIFEST && media_type != MEDIA_DOCKER_MANIFEST {
        return Err(Error::Invalid(format!(
            "unsupported manifest media type {media_type}"
        )));
    }
    Ok(Manifest {
        digest: Digest::of(&raw),
        raw,
        parsed,
        media_type,
    })
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// The bytes of an OCI manifest for a config and layers (sources that have no manifest of their
/// own, and mutations that change the config).
pub fn oci_manifest_bytes(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&ManifestOut {
        schema_version: 2,
        media_type: MEDIA_OCI_MANIFEST,
        config,
        layers,
    })
    .expect("manifest serializes")
}

/// The OCI layer media type for a compression.
pub fn layer_media_type(c: loader::format::Compression) -> &'static str {
    match c {
        loader::format::Compression::None => MEDIA_OCI_LAYER,
        loader::format::Compression::Gzip => MEDIA_OCI_LAYER_GZIP,
        loader::format::Compression::Zstd => MEDIA_OCI_LAYER_ZSTD,
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.hasher.finalize().into()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads a whole small blob (manifest, config, index) and checks its digest.
pub fn read_verified(mut r: impl Read, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut r)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| Error::IoOther {
            what: format!("reading blob {digest}"),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(Error::Invalid(format!(
            "blob {digest} is larger than {limit} bytes"
        )));
    }
    let actual = Digest::of(&buf);
    if actual != *digest {
        return Err(Error::DigestMismatch {
            digest: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(buf)
}

/// Limit for JSON blobs read into memory.
pub const JSON_LIMIT: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_lowercase_sha256() {
        let hex = "ab".repeat(32);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
        assert!(Digest::parse(&format!("sha256:{}", hex.to_uppercase())).is_err());
        assert!(Digest::parse(&format!("sha512:{hex}")).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
    }

    #[test]
    fn read_verified_names_the_digest_on_mismatch() {
        let d = Digest::of(b"good");
        let e = read_verified(&b"evil"[..], &d, 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&d.to_string()), "{e}");
    }
}

/// Small real images for unit tests.
#[cfg(test)]
pub mod tests_support {
    use super::*;
    use crate::reference::ImageName;

    /// A minimal static ELF (one PT_LOAD, no PT_INTERP): enough for `build_head`.
    pub fn fake_loader() -> Vec<u8> {
        let mut e = vec![0u8; 0x1800];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // 64-bit
        e[5] = 1; // little-endian
        e[6] = 1;
        e[16] = 2; // ET_EXEC
        e[18] = 0x3e; // x86-64
        e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        e[52] = 64;
        e[54] = 56;
        e[56] = 1;
        e[64] = 1; // PT_LOAD at offset 0
        e[64 + 32..64 + 40].copy_from_slice(&0x1800u64.to_le_bytes());
        e[64 + 48..64 + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        e
    }

    /// A gzip-compressed layer tar holding `files` (path, content).
    pub fn gzip_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    /// An image of two layers in memory, with a config that has Cmd, Env and a label.
    pub fn tiny_image() -> Image {
        let mut blobs = MemoryBlobs::default();
        let l1 = gzip_layer(&[("hello.txt", b"hello\n")]);
        let l2 = gzip_layer(&[("etc/motd", b"second layer\n")]);
        let layers: Vec<Descriptor> = [l1, l2]
            .into_iter()
            .map(|l| {
                let size = l.len() as u64;
                Descriptor::new(MEDIA_OCI_LAYER_GZIP, blobs.insert(l), size)
            })
            .collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Labels": {"keep": "me"}, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let cd = Descriptor::new(MEDIA_OCI_CONFIG, Digest::of(&config), config.len() as u64);
        let manifest = oci_manifest_bytes(&cd, &layers);
        Image::new(
            manifest,
            None,
            config,
            Arc::new(blobs),
            ImageName::parse("tiny:1").unwrap(),
            "oci:/tmp/tiny:1".into(),
        )
        .unwrap()
    }
}
