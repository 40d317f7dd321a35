//! `docker-archive:FILE[:NAME:TAG]`: a `docker save` tarball, read through its `manifest.json`.
//! Both forms are read in place: the legacy one (`<id>.json`, `<id>/layer.tar`) and Docker ≥25's
//! (an OCI layout whose `manifest.json` names `blobs/sha256/…`). An OCI manifest is synthesized;
//! layer compression comes from each blob's magic, and digests are hashed when the path does not
//! carry them.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use loader::format::Compression;
use serde::Deserialize;

use super::tarindex::TarIndex;
use crate::error::{Error, Result};
use crate::model::{self, BlobSource, Descriptor, Digest, HashingReader, Image, JSON_LIMIT};
use crate::reference::ImageName;

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Layer blobs of the archive, by digest.
struct ArchiveBlobs {
    index: TarIndex,
    paths: HashMap<Digest, String>,
}

impl BlobSource for ArchiveBlobs {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>> {
        let path = self
            .paths
            .get(&desc.digest)
            .ok_or_else(|| Error::NotFound {
                what: "layer",
                name: desc.digest.to_string(),
            })?;
        Ok(Box::new(self.index.open_entry(path)?))
    }
}

/// The digest a `blobs/sha256/<hex>` path promises, if it is one.
fn digest_from_path(p: &str) -> Option<Digest> {
    let hex = super::tarindex::normalize(p)
        .strip_prefix("blobs/sha256/")?
        .to_string();
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Opens the image named `reference` (a RepoTag, or `@N` for the N-th entry), or the only one.
/// Also returns the RepoTag the output is named after.
pub fn open(path: &Path, reference: Option<&str>, source: &str) -> Result<(Image, Option<String>)> {
    let index = TarIndex::open(path)?;
    let where_ = path.display().to_string();
    if !index.contains("manifest.json") {
        return Err(Error::Invalid(format!(
            "{where_} is not a docker archive (no manifest.json)"
        )));
    }
    let entries: Vec<Entry> =
        serde_json::from_slice(&index.read_entry("manifest.json", JSON_LIMIT)?)
            .map_err(Error::json(format!("manifest.json of {where_}")))?;
    let all_tags = || {
        entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let familiar = |s: &str| {
        ImageName::parse(s)
            .map(|n| n.familiar())
            .unwrap_or_else(|_| s.to_string())
    };

    let (entry, tag) = match reference {
        Some(r) if r.starts_with('@') => {
            let n: usize = r[1..].parse().map_err(|_| Error::Invalid(format!("`{r}` is not @INDEX")))?;
            let e = entries.get(n).ok_or_else(|| Error::NotFound {
                what: "image",
                name: format!("number {n} in {where_} (it holds {})", entries.len()),
            })?;
            (e, e.repo_tags.iter().flatten().next().cloned())
        }
        Some(r) => {
            let want = familiar(r);
            let e = entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|t| familiar(t) == want))
                .ok_or_else(|| Error::NotFound {
                    what: "image",
                    name: format!("`{r}` in {where_} (it has: {})", all_tags()),
                })?;
            (e, Some(r.to_string()))
        }
        None => match entries.as_slice() {
            [one] => (one, one.repo_tags.iter().flatten().next().cloned()),
            [] => return Err(Error::Invalid(format!("{where_} holds no image"))),
            many => {
                return Err(Error::Invalid(format!(
                    "{where_} holds {} images; name one as docker-archive:FILE:NAME:TAG or :@N (it has: {})",
                    many.len(),
                    all_tags()
                )))
            }
        },
    };

    let config = index.read_entry(&entry.config, JSON_LIMIT)?;
    let config_digest = Digest::of(&config);
    if let Some(d) = digest_from_path(&entry.config).filter(|d| *d != config_digest) {
        return Err(Error::DigestMismatch {
            digest: d.to_string(),
            actual: config_digest.to_string(),
        });
    }

    let mut layers = Vec::with_capacity(entry.layers.len());
    let mut paths = HashMap::new();
    for lp in &entry.layers {
        let read_err = |source: io::Error| Error::IoOther {
            what: format!("reading {lp} in {where_}"),
            source,
        };
        let mut head = [0u8; 4];
        let mut r = index.open_entry(lp)?;
        let n = read_full(&mut r, &mut head).map_err(read_err)?;
        let compression = Compression::sniff(&head[..n]);
        let (digest, size) = match digest_from_path(lp) {
            Some(d) => (d, index.locate(lp).map(|(_, s)| s).unwrap_or(0)),
            None => {
                let mut h = HashingReader::new(index.open_entry(lp)?);
                io::copy(&mut h, &mut io::sink()).map_err(read_err)?;
                h.finish()
            }
        };
        paths.insert(digest, lp.clone());
        layers.push(Descriptor::new(
            model::layer_media_type(compression),
            digest,
            size,
        ));
    }
    let config_desc = Descriptor::new(model::MEDIA_OCI_CONFIG, config_digest, config.len() as u64);
    let manifest = model::oci_manifest_bytes(&config_desc, &layers);

    let name = match &tag {
        Some(t) => ImageName::parse(t)?,
        None => ImageName::from_hint(&super::base_name(&path.with_extension("")), None),
    };
    let blobs = Arc::new(ArchiveBlobs { index, paths });
    let image = Image::new(
        manifest,
        Some(model::MEDIA_OCI_MANIFEST),
        config,
        blobs,
        name,
        source.to_string(),
    )?;
    Ok((image, tag))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::{fake_loader, gzip_layer};
    use crate::sink::polyglot::{write_to, WriteOptions};
    use std::fs::File;

    fn plain_layer(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    enum Item<'a> {
        File(&'a str, Vec<u8>),
        Symlink(&'a str, &'a str),
    }

    fn archive(dir: &Path, items: &[Item]) -> std::path::PathBuf {
        let path = dir.join("save.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for it in items {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            match it {
                Item::File(n, d) => {
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, n, &d[..]).unwrap();
                }
                Item::Symlink(n, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, n, t).unwrap();
                }
            }
        }
        b.into_inner().unwrap();
        path
    }

    fn config(diff_ids: &[&Digest]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "docker_version": "20.10.24",
            "config": {"Cmd": ["/bin/sh"], "Entrypoint": null, "ExposedPorts": {"80/tcp": {}}},
            "container_config": {"Hostname": "x"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        }))
        .unwrap()
    }

    #[test]
    fn reads_the_legacy_form_hashing_layers_and_following_layer_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let l1 = plain_layer("a", b"one");
        let d1 = Digest::of(&l1);
        let cfg = config(&[&d1, &d1]);
        let cid = Digest::of(&cfg).hex();
        let manifest = serde_json::json!([{
            "Config": format!("{cid}.json"),
            "RepoTags": ["docker.io/library/app:2"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]);
        let path = archive(
            dir.path(),
            &[
                Item::File("aaa/layer.tar", l1.clone()),
                Item::Symlink("bbb/layer.tar", "../aaa/layer.tar"),
                Item::File(&format!("{cid}.json"), cfg.clone()),
                Item::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
                Item::File("repositories", b"{}".to_vec()),
            ],
        );
        let (image, tag) = open(&path, None, "docker-archive:save.tar").unwrap();
        assert_eq!(tag.as_deref(), Some("docker.io/library/app:2"));
        assert_eq!(image.name.familiar(), "app:2");
        assert_eq!(
            image.config.raw, cfg,
            "the config is kept byte for byte (its digest is the image ID)"
        );
        assert_eq!(image.layers.len(), 2);
        for l in &image.layers {
            assert_eq!(
                (l.digest, l.size, l.media_type.as_str()),
                (d1, l1.len() as u64, model::MEDIA_OCI_LAYER)
            );
        }
        assert_eq!(image.run_config().cmd, Some(vec!["/bin/sh".to_string()]));
        let loader = fake_loader();
        let mut out = Vec::new();
        let w = write_to(
            &image,
            &WriteOptions {
                loader: &loader,
                source_date_epoch: Some(0),
                trusted_keys: Vec::new(),
                vm: None,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(w.runtime.layers[0].compression, Compression::None);
        let at = w.runtime.layers[1].offset as usize;
        assert_eq!(&out[at..at + l1.len()], &l1[..]);
    }

    #[test]
    fn reads_the_docker_25_blobs_form_and_sniffs_compression() {
        let dir = tempfile::tempdir().unwrap();
        let gz = gzip_layer(&[("b", b"two")]);
        let dg = Digest::of(&gz);
        let zst = [&[0x28u8, 0xb5, 0x2f, 0xfd][..], b"not really zstd"].concat();
        let dz = Digest::of(&zst);
        let cfg = config(&[&dg, &dz]);
        let dc = Digest::of(&cfg);
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let manifest = serde_json::json!([{"Config": blob(&dc), "RepoTags": null, "Layers": [blob(&dg), blob(&dz)]}]);
        let path = archive(
            dir.path(),
            &[
                Item::File(&blob(&dc), cfg),
                Item::File(&blob(&dg), gz.clone()),
                Item::File(&blob(&dz), zst.clone()),
                Item::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            ],
        );
        let (image, tag) = open(&path, None, "docker-archive:save.tar").unwrap();
        assert_eq!(tag, None);
        assert_eq!(image.name.familiar(), "save:latest");
        assert_eq!(image.layers[0].media_type, model::MEDIA_OCI_LAYER_GZIP);
        assert_eq!(image.layers[1].media_type, model::MEDIA_OCI_LAYER_ZSTD);
        assert_eq!(
            (image.layers[0].digest, image.layers[0].size),
            (dg, gz.len() as u64)
        );
        assert_eq!(image.manifest.media_type, model::MEDIA_OCI_MANIFEST);
    }

    #[test]
    fn a_blob_whose_path_lies_about_its_digest_fails_when_packaged() {
        let dir = tempfile::tempdir().unwrap();
        let layer = plain_layer("a", b"one");
        let claimed = Digest::of(b"something else");
        let cfg = config(&[&claimed]);
        let dc = Digest::of(&cfg);
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let manifest = serde_json::json!([{"Config": blob(&dc), "RepoTags": ["x:1"], "Layers": [blob(&claimed)]}]);
        let path = archive(
            dir.path(),
            &[
                Item::File(&blob(&dc), cfg),
                Item::File(&blob(&claimed), layer),
                Item::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            ],
        );
        let (image, _) = open(&path, None, "s").unwrap();
        let loader = fake_loader();
        let e = write_to(
            &image,
            &WriteOptions {
                loader: &loader,
                source_date_epoch: None,
                trusted_keys: Vec::new(),
                vm: None,
            },
            std::io::sink(),
        )
        .unwrap_err();
        assert!(e.to_string().contains(&claimed.to_string()), "{e}");
    }

    #[test]
    fn several_images_need_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[]);
        let manifest = serde_json::json!([
            {"Config": "c.json", "RepoTags": ["a:1"], "Layers": []},
            {"Config": "c.json", "RepoTags": ["b:2"], "Layers": []},
        ]);
        let path = archive(
            dir.path(),
            &[
                Item::File("c.json", cfg),
                Item::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            ],
        );
        let e = open(&path, None, "s").err().unwrap().to_string();
        assert!(
            e.contains("holds 2 images") && e.contains("a:1, b:2"),
            "{e}"
        );
        assert_eq!(
            open(&path, Some("b:2"), "s").unwrap().0.name.familiar(),
            "b:2"
        );
        assert_eq!(
            open(&path, Some("@0"), "s").unwrap().0.name.familiar(),
            "a:1"
        );
        assert!(open(&path, Some("c:3"), "s").is_err());
    }
}
