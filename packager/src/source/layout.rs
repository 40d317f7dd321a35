//! `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]`: an OCI image layout in a directory or in a tar.
//! The manifest is chosen by the tag annotation `org.opencontainers.image.ref.name` (or is the
//! only one); a nested index resolves to the requested platform (the host's by default).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::tarindex::TarIndex;
use super::SourceOptions;
use crate::error::{Error, Result};
use crate::model::{self, BlobSource, Descriptor, Digest, Image, JSON_LIMIT};
use crate::platform::Platform;
use crate::reference::ImageName;
use crate::registry::push::IndexBytes;

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Files of an image layout, wherever they are kept.
trait Store: Send + Sync {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>>;
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>>;
}

struct DirStore(PathBuf);

impl Store for DirStore {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let p = self.0.join(path);
        Ok(Box::new(
            File::open(&p).map_err(Error::io("cannot open", p))?,
        ))
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let p = self.0.join(path);
        self.open(path)?
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(Error::io("cannot read", p))?;
        Ok(buf)
    }
}

impl Store for TarIndex {
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.open_entry(path)?))
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        self.read_entry(path, limit)
    }
}

/// Layer blobs of a layout: `blobs/sha256/<hex>`.
struct LayoutBlobs<S>(S);

impl<S: Store> BlobSource for LayoutBlobs<S> {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>> {
        self.0.open(&blob_path(&desc.digest))
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<DescDoc>,
}

#[derive(Debug, Clone, Deserialize)]
struct DescDoc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<PlatformDoc>,
}

#[derive(Debug, Clone, Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    variant: Option<String>,
}

impl DescDoc {
    fn tag_matches(&self, tag: &str) -> bool {
        [ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_NAME]
            .iter()
            .any(|k| {
                self.annotations
                    .get(*k)
                    .is_some_and(|v| v == tag || v.ends_with(&format!(":{tag}")))
            })
    }
    fn fits(&self, p: &Platform) -> bool {
        self.platform
            .as_ref()
            .is_some_and(|q| p.matches(&q.os, &q.architecture, q.variant.as_deref()))
    }
    fn is_index(&self) -> bool {
        self.media_type == model::MEDIA_OCI_INDEX || self.media_type == model::MEDIA_DOCKER_LIST
    }
    fn label(&self) -> String {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .cloned()
            .or_else(|| {
                self.platform
                    .as_ref()
                    .map(|p| format!("{}/{}", p.os, p.architecture))
            })
            .unwrap_or_else(|| self.digest.clone())
    }
}

pub fn open_dir(
    path: &Path,
    tag: Option<&str>,
    source: &str,
    opts: &SourceOptions,
) -> Result<Image> {
    let (blobs, where_, hint) = dir_store(path)?;
    open_store(blobs, &where_, &hint, tag, source, opts)
}

pub fn open_archive(
    path: &Path,
    tag: Option<&str>,
    source: &str,
    opts: &SourceOptions,
) -> Result<Image> {
    let (blobs, where_, hint) = archive_store(path)?;
    open_store(blobs, &where_, &hint, tag, source, opts)
}

/// As [`open_dir`] for `push --all`: the index the tag names with an image per manifest, or
/// `None` for a single manifest.
pub fn open_dir_all(
    path: &Path,
    tag: Option<&str>,
    source: &str,
    opts: &SourceOptions,
) -> Result<Option<(IndexBytes, Vec<Image>)>> {
    let (blobs, where_, hint) = dir_store(path)?;
    open_store_all(blobs, &where_, &hint, tag, source, opts)
}

/// As [`open_dir_all`] for an `oci-archive:`.
pub fn open_archive_all(
    path: &Path,
    tag: Option<&str>,
    source: &str,
    opts: &SourceOptions,
) -> Result<Option<(IndexBytes, Vec<Image>)>> {
    let (blobs, where_, hint) = archive_store(path)?;
    open_store_all(blobs, &where_, &hint, tag, source, opts)
}

type Opened<S> = (Arc<LayoutBlobs<S>>, String, String);

fn dir_store(path: &Path) -> Result<Opened<DirStore>> {
    if !path.join("index.json").is_file() {
        return Err(Error::Invalid(format!(
            "{} is not an OCI image layout (no index.json)",
            path.display()
        )));
    }
    Ok((
        Arc::new(LayoutBlobs(DirStore(path.to_path_buf()))),
        path.display().to_string(),
        super::base_name(path),
    ))
}

fn archive_store(path: &Path) -> Result<Opened<TarIndex>> {
    let idx = TarIndex::open(path)?;
    if !idx.contains("index.json") {
        return Err(Error::Invalid(format!(
            "{} holds no OCI image layout (no index.json)",
            path.display()
        )));
    }
    Ok((
        Arc::new(LayoutBlobs(idx)),
        path.display().to_string(),
        super::base_name(&path.with_extension("")),
    ))
}

fn open_store<S: Store + 'static>(
    blobs: Arc<LayoutBlobs<S>>,
    where_: &str,
    hint: &str,
    tag: Option<&str>,
    source: &str,
    opts: &SourceOptions,
) -> Result<Image> {
    let store = &blobs.0;
    let index = read_index(store, where_)?;
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let (chosen, name) = select(&index, where_, hint, tag, &platform)?;

    // Resolve nested indexes down to a manifest for the platform.
    let mut desc = chosen.clone();
    for _ in 0..4 {
        let (digest, raw, is_index) = read_desc(store, &desc)?;
        if !is_index {
            let image = leaf(&blobs, &desc, raw, name, source)?;
            image.warn_unless_platform(opts.platform.as_ref(), "image", opts.warn);
            return Ok(image);
        }
        let nested: IndexDoc =
            serde_json::from_slice(&raw).map_err(Error::json(format!("index {digest}")))?;
        let have = nested
            .manifests
            .iter()
            .filter_map(|d| {
                d.platform
                    .as_ref()
                    .map(|p| format!("{}/{}", p.os, p.architecture))
            })
            .collect::<Vec<_>>()
            .join(", ");
        desc = nested
            .manifests
            .iter()
            .find(|d| d.fits(&platform))
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "manifest",
                name: format!("for {platform} in index {digest} (it has: {have})"),
            })?;
    }
    Err(Error::Invalid(format!(
        "indexes in {where_} nest too deeply"
    )))
}

/// The multi-platform index the tag (or the layout's one entry) names, as stored, with an image
/// for each manifest it lists; `None` when it names a single manifest. For `push --all`.
fn open_store_all<S: Store + 'static>(
    blobs: Arc<LayoutBlobs<S>>,
    where_: &str,
    hint: &str,
    tag: Option<&str>,
    source: &str,
    opts: &SourceOptions,
) -> Result<Option<(IndexBytes, Vec<Image>)>> {
    let store = &blobs.0;
    let index = read_index(store, where_)?;
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let (chosen, name) = select(&index, where_, hint, tag, &platform)?;
    let (digest, raw, is_index) = read_desc(store, chosen)?;
    if !is_index {
        return Ok(None);
    }
    let nested: IndexDoc =
        serde_json::from_slice(&raw).map_err(Error::json(format!("index {digest}")))?;
    let mut images = Vec::with_capacity(nested.manifests.len());
    for child in &nested.manifests {
        let (d, child_raw, child_is_index) = read_desc(store, child)?;
        if child_is_index {
            return Err(Error::Invalid(format!(
                "index {digest} in {where_} lists another index ({d}): only one level is copied"
            )));
        }
        images.push(leaf(&blobs, child, child_raw, name.clone(), source)?);
    }
    let media_type = if chosen.media_type.is_empty() {
        model::MEDIA_OCI_INDEX.to_string()
    } else {
        chosen.media_type.clone()
    };
    Ok(Some((IndexBytes { raw, media_type }, images)))
}

fn read_index(store: &dyn Store, where_: &str) -> Result<IndexDoc> {
    serde_json::from_slice(&store.read("index.json", JSON_LIMIT)?)
        .map_err(Error::json(format!("index.json of {where_}")))
}

/// The entry of `index.json` a tag names (else its only one, else the one for the platform),
/// and the name the output carries.
fn select<'a>(
    index: &'a IndexDoc,
    where_: &str,
    hint: &str,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<(&'a DescDoc, ImageName)> {
    let tags = || {
        index
            .manifests
            .iter()
            .map(DescDoc::label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match tag {
        Some(t) => index
            .manifests
            .iter()
            .find(|d| d.tag_matches(t))
            .ok_or_else(|| Error::NotFound {
                what: "image",
                name: format!("tagged `{t}` in {where_} (it has: {})", tags()),
            })?,
        None => match index.manifests.as_slice() {
            [] => return Err(Error::Invalid(format!("{where_} holds no image"))),
            [one] => one,
            many => {
                let fit: Vec<_> = many.iter().filter(|d| d.fits(platform)).collect();
                match fit.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{where_} holds {} images; name one with a tag (it has: {})",
                            many.len(),
                            tags()
                        )))
                    }
                }
            }
        },
    };
    Ok((chosen, name_for(chosen, hint, tag)?))
}

/// A descriptor's blob, verified, and whether it is an index (by media type, or by shape when
/// the descriptor has none).
fn read_desc(store: &dyn Store, desc: &DescDoc) -> Result<(Digest, Vec<u8>, bool)> {
    let digest = Digest::parse(&desc.digest)?;
    let raw = model::read_verified(store.open(&blob_path(&digest))?, &digest, JSON_LIMIT)?;
    let is_index = desc.is_index()
        || (desc.media_type.is_empty()
            && serde_json::from_slice::<serde_json::Value>(&raw)
                .is_ok_and(|v| v.get("manifests").is_some()));
    Ok((digest, raw, is_index))
}

/// The image of one manifest (`raw`, already verified).
fn leaf<S: Store + 'static>(
    blobs: &Arc<LayoutBlobs<S>>,
    desc: &DescDoc,
    raw: Vec<u8>,
    name: ImageName,
    source: &str,
) -> Result<Image> {
    let store = &blobs.0;
    let manifest = model::parse_manifest(raw.clone(), Some(&desc.media_type))?;
    let cd = Digest::parse(manifest.parsed.config().digest().as_ref())?;
    let config = model::read_verified(store.open(&blob_path(&cd))?, &cd, JSON_LIMIT)?;
    Image::new(
        raw,
        Some(&desc.media_type),
        config,
        blobs.clone(),
        name,
        source.to_string(),
    )
}

/// The output name: a full name annotation when there is one, else the layout's file name with
/// the tag given or annotated.
fn name_for(desc: &DescDoc, hint: &str, tag: Option<&str>) -> Result<ImageName> {
    if let Some(full) = desc.annotations.get(ANNOTATION_CONTAINERD_NAME) {
        if let Ok(n) = ImageName::parse(full) {
            return Ok(n);
        }
    }
    let annotated = desc.annotations.get(ANNOTATION_REF_NAME);
    if let Some(r) = annotated.filter(|r| r.contains(':') || r.contains('/')) {
        if let Ok(n) = ImageName::parse(r) {
            return Ok(n);
        }
    }
    Ok(ImageName::from_hint(
        hint,
        tag.or(annotated.map(String::as_str)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::gzip_layer;
    use crate::model::{oci_manifest_bytes, MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER_GZIP};
    use serde_json::json;

    fn put(dir: &Path, bytes: &[u8]) -> Digest {
        let d = Digest::of(bytes);
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join(blob_path(&d)), bytes).unwrap();
        d
    }

    /// A manifest for `arch` in the layout; returns its descriptor JSON.
    fn image(dir: &Path, arch: &str) -> serde_json::Value {
        let layer = gzip_layer(&[("arch", arch.as_bytes())]);
        let ld = put(dir, &layer);
        let cfg = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
        let cd = put(dir, &cfg);
        let m = oci_manifest_bytes(
            &Descriptor::new(MEDIA_OCI_CONFIG, cd, cfg.len() as u64),
            &[Descriptor::new(
                MEDIA_OCI_LAYER_GZIP,
                ld,
                layer.len() as u64,
            )],
        );
        let md = put(dir, &m);
        json!({"mediaType": model::MEDIA_OCI_MANIFEST, "digest": md.to_string(), "size": m.len(),
               "platform": {"os": "linux", "architecture": arch}})
    }

    fn opts(platform: Option<&str>) -> SourceOptions<'static> {
        SourceOptions {
            platform: platform.map(|p| Platform::parse(p).unwrap()),
            source_date_epoch: None,
            warn: &|_| {},
            registry: Default::default(),
            progress: &crate::registry::pull::Quiet,
        }
    }

    /// A layout with a tagged multi-arch index (amd64 + arm64) and a tagged single manifest.
    fn layout() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        let amd = image(dir, "amd64");
        let arm = image(dir, "arm64");
        let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": model::MEDIA_OCI_INDEX, "manifests": [amd, arm]})).unwrap();
        let idd = put(dir, &idx);
        let mut single = image(dir, "riscv64");
        single["annotations"] = json!({ANNOTATION_REF_NAME: "single"});
        single.as_object_mut().unwrap().remove("platform");
        let top = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": model::MEDIA_OCI_INDEX, "digest": idd.to_string(), "size": idx.len(),
             "annotations": {ANNOTATION_REF_NAME: "multi"}},
            single,
        ]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        t
    }

    #[test]
    fn a_tag_picks_the_manifest_and_a_nested_index_resolves_to_the_platform() {
        let t = layout();
        let host = open_dir(
            t.path(),
            Some("multi"),
            "oci:x:multi",
            &opts(Some("linux/amd64")),
        )
        .unwrap();
        assert_eq!(host.architecture(), "amd64");
        let arm = open_dir(
            t.path(),
            Some("multi"),
            "oci:x:multi",
            &opts(Some("linux/arm64")),
        )
        .unwrap();
        assert_eq!(arm.architecture(), "arm64");
        assert_eq!(arm.name.tag, "multi");
        let e = open_dir(t.path(), Some("multi"), "s", &opts(Some("linux/s390x")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/amd64, linux/arm64"),
            "{e}"
        );
        let single = open_dir(t.path(), Some("single"), "s", &opts(None)).unwrap();
        assert_eq!(single.architecture(), "riscv64");
    }

    #[test]
    fn all_gives_the_index_as_stored_with_an_image_per_manifest() {
        let t = layout();
        let (index, images) = open_dir_all(t.path(), Some("multi"), "s", &opts(None))
            .unwrap()
            .unwrap();
        let top: serde_json::Value =
            serde_json::from_slice(&std::fs::read(t.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            Digest::of(&index.raw).to_string(),
            top["manifests"][0]["digest"].as_str().unwrap()
        );
        assert_eq!(index.media_type, model::MEDIA_OCI_INDEX);
        let archs: Vec<_> = images.iter().map(|i| i.architecture()).collect();
        assert_eq!(archs, ["amd64", "arm64"]);
        assert!(open_dir_all(t.path(), Some("single"), "s", &opts(None))
            .unwrap()
            .is_none());
    }

    #[test]
    fn several_images_without_a_tag_is_an_error_listing_tags() {
        let t = layout();
        let e = open_dir(t.path(), None, "s", &opts(None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds 2 images") && e.contains("multi, single"),
            "{e}"
        );
        let e = open_dir(t.path(), Some("nope"), "s", &opts(None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tagged `nope`"), "{e}");
    }

    #[test]
    fn a_tampered_manifest_blob_is_refused() {
        let t = layout();
        let top: serde_json::Value =
            serde_json::from_slice(&std::fs::read(t.path().join("index.json")).unwrap()).unwrap();
        let d = Digest::parse(top["manifests"][1]["digest"].as_str().unwrap()).unwrap();
        std::fs::write(t.path().join(blob_path(&d)), b"{}").unwrap();
        let e = open_dir(t.path(), Some("single"), "s", &opts(None)).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    }

    #[test]
    fn an_oci_archive_is_read_in_place() {
        let t = layout();
        let out = tempfile::tempdir().unwrap();
        let tarpath = out.path().join("layout-archive.tar");
        let mut b = tar::Builder::new(File::create(&tarpath).unwrap());
        b.append_dir_all(".", t.path()).unwrap();
        b.into_inner().unwrap();
        let img = open_archive(&tarpath, Some("single"), "oci-archive:x", &opts(None)).unwrap();
        assert_eq!(img.architecture(), "riscv64");
        let mut layer = Vec::new();
        img.blobs
            .open(&img.layers[0])
            .unwrap()
            .read_to_end(&mut layer)
            .unwrap();
        assert_eq!(Digest::of(&layer), img.layers[0].digest);
    }
}
