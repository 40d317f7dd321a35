//! `dir:ROOTFS`: a root filesystem directory becomes one gzip layer, written deterministically:
//! entries sorted by name, owner 0:0 with no names, mtimes clamped to SOURCE_DATE_EPOCH when it is
//! set, hard links kept (by inode), sockets skipped, device nodes skipped with a warning. The
//! config carries the platform (the host's, or `--platform`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::tarindex::Section;
use super::SourceOptions;
use crate::error::{Error, Result};
use crate::model::{self, BlobSource, Descriptor, Digest, Image};
use crate::platform::Platform;
use crate::reference::ImageName;

/// The one layer, in an anonymous temporary file.
struct LayerFile {
    file: Arc<File>,
    len: u64,
}

impl BlobSource for LayerFile {
    fn open(&self, _desc: &Descriptor) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(Section::new(self.file.clone(), 0, self.len)))
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

pub fn open(root: &Path, source: &str, opts: &SourceOptions) -> Result<Image> {
    let md = fs::metadata(root).map_err(Error::io("cannot read", root))?;
    if !md.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let tmp = tempfile::tempfile().map_err(|source| Error::IoOther {
        what: "creating a temporary layer file".into(),
        source,
    })?;
    let compressed = HashingWriter::new(tmp);
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
    let mut builder = tar::Builder::new(HashingWriter::new(gz));
    let mut walker = Walker {
        root,
        epoch: opts.source_date_epoch,
        links: HashMap::new(),
        warn: opts.warn,
    };
    walker.add_dir(&mut builder, Path::new(""))?;
    let write_err = |source| Error::IoOther {
        what: "writing the layer".into(),
        source,
    };
    let tar_hashed = builder.into_inner().map_err(write_err)?;
    let diff_id = Digest(tar_hashed.hasher.finalize().into());
    let compressed = tar_hashed.inner.finish().map_err(write_err)?;
    let (digest, len) = (
        Digest(compressed.hasher.finalize().into()),
        compressed.count,
    );
    let mut file = compressed.inner;
    file.flush().map_err(write_err)?;
    file.seek(SeekFrom::Start(0)).map_err(write_err)?;

    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let created =
        crate::metadata::rfc3339(opts.source_date_epoch.unwrap_or_else(crate::metadata::now));
    let mut config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "created_by": "oci2bin dir:"}],
    });
    if let Some(v) = &platform.variant {
        config["variant"] = v.clone().into();
    }
    let config = serde_json::to_vec(&config).expect("config serializes");
    let layer = Descriptor::new(model::MEDIA_OCI_LAYER_GZIP, digest, len);
    let config_desc = Descriptor::new(
        model::MEDIA_OCI_CONFIG,
        Digest::of(&config),
        config.len() as u64,
    );
    let manifest = model::oci_manifest_bytes(&config_desc, std::slice::from_ref(&layer));
    let name = ImageName::from_hint(&super::base_name(root), None);
    let blobs = Arc::new(LayerFile {
        file: Arc::new(file),
        len,
    });
    Image::new(
        manifest,
        Some(model::MEDIA_OCI_MANIFEST),
        config,
        blobs,
        name,
        source.to_string(),
    )
}

struct Walker<'a> {
    root: &'a Path,
    epoch: Option<u64>,
    /// First path seen for each (device, inode) of a multiply-linked file.
    links: HashMap<(u64, u64), PathBuf>,
    warn: &'a dyn Fn(&str),
}

impl Walker<'_> {
    fn add_dir<W: Write>(&mut self, b: &mut tar::Builder<W>, rel: &Path) -> Result<()> {
        let dir = self.root.join(rel);
        let mut names = fs::read_dir(&dir)
            .map_err(Error::io("cannot list", &dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(Error::io("cannot list", &dir))?;
        names.sort();
        for n in names {
            let rel = rel.join(&n);
            let full = self.root.join(&rel);
            let md = fs::symlink_metadata(&full).map_err(Error::io("cannot stat", &full))?;
            let ft = md.file_type();
            let mut h = tar::Header::new_gnu();
            h.set_mode(md.mode() & 0o7777);
            h.set_uid(0);
            h.set_gid(0);
            let mtime = md.mtime().max(0) as u64;
            h.set_mtime(self.epoch.map_or(mtime, |e| mtime.min(e)));
            h.set_size(0);
            let add_err = Error::io("cannot add to the layer", &full);
            if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, &rel, io::empty()).map_err(add_err)?;
                self.add_dir(b, &rel)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&full).map_err(Error::io("cannot read link", &full))?;
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, &rel, &target).map_err(add_err)?;
            } else if ft.is_file() {
                let key = (md.dev(), md.ino());
                if md.nlink() > 1 {
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        b.append_link(&mut h, &rel, first).map_err(add_err)?;
                        continue;
                    }
                    self.links.insert(key, rel.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len());
                let f = File::open(&full).map_err(Error::io("cannot open", &full))?;
                // A file that changes size while packed would corrupt the tar: insist on md.len().
                b.append_data(
                    &mut h,
                    &rel,
                    ExactLen {
                        inner: f.take(md.len()),
                        left: md.len(),
                        path: &full,
                    },
                )
                .map_err(add_err)?;
            } else if ft.is_fifo() {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, &rel, io::empty()).map_err(add_err)?;
            } else if ft.is_socket() {
                continue;
            } else if ft.is_block_device() || ft.is_char_device() {
                (self.warn)(&format!("skipping device node {}", full.display()));
            }
        }
        Ok(())
    }
}

/// Reads exactly `left` bytes, failing if the file shrank.
struct ExactLen<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactLen<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being packed", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn opts(epoch: Option<u64>) -> SourceOptions<'static> {
        SourceOptions {
            platform: None,
            source_date_epoch: epoch,
            warn: &|_| {},
            registry: Default::default(),
            progress: &crate::registry::pull::Quiet,
        }
    }

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("empty")).unwrap();
        fs::write(r.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        fs::set_permissions(
            r.join("bin/tool"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        fs::hard_link(r.join("bin/tool"), r.join("bin/tool-alias")).unwrap();
        symlink("tool", r.join("bin/link")).unwrap();
        fs::write(r.join("z-last"), b"z").unwrap();
        let long = "d".repeat(120);
        fs::write(r.join(&long), b"long name").unwrap();
        std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(r.join("fifo"))
            .status()
            .unwrap();
        assert!(st.success());
        t
    }

    fn entries(image: &Image) -> Vec<(String, tar::EntryType, u64, u32, String)> {
        let gz = image.blobs.open(&image.layers[0]).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn a_rootfs_becomes_one_sorted_root_owned_layer() {
        let t = rootfs();
        let image = open(t.path(), "dir:x", &opts(Some(1000))).unwrap();
        let es = entries(&image);
        let names: Vec<&str> = es.iter().map(|e| e.0.as_str()).collect();
        let long = "d".repeat(120);
        assert_eq!(
            names,
            [
                "bin",
                "bin/link",
                "bin/tool",
                "bin/tool-alias",
                &long,
                "empty",
                "fifo",
                "z-last"
            ]
        );
        let by = |n: &str| es.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(by("bin/link").1, tar::EntryType::Symlink);
        assert_eq!(by("bin/link").4, "tool");
        assert_eq!(by("bin/tool").3 & 0o7777, 0o4755);
        assert_eq!(by("bin/tool-alias").1, tar::EntryType::Link);
        assert_eq!(by("bin/tool-alias").4, "bin/tool");
        assert_eq!(by("fifo").1, tar::EntryType::Fifo);
        assert!(
            es.iter().all(|e| e.2 == 1000),
            "mtimes clamped to SOURCE_DATE_EPOCH"
        );
        assert_eq!(image.layers[0].media_type, model::MEDIA_OCI_LAYER_GZIP);
        assert_eq!(image.architecture(), Platform::host().architecture);
        assert_eq!(image.os(), "linux");
        assert_eq!(image.config.parsed.rootfs().diff_ids().len(), 1);
        assert_eq!(
            image.name.familiar(),
            format!(
                "{}:latest",
                ImageName::from_hint(&t.path().file_name().unwrap().to_string_lossy(), None)
                    .repository
            )
        );
    }

    #[test]
    fn the_same_rootfs_and_epoch_give_the_same_digest() {
        let t = rootfs();
        let a = open(t.path(), "dir:x", &opts(Some(7))).unwrap();
        let b = open(t.path(), "dir:x", &opts(Some(7))).unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.layers, b.layers);
    }

    #[test]
    fn device_nodes_are_skipped_with_a_warning() {
        let t = tempfile::tempdir().unwrap();
        // /dev/null's numbers; needs CAP_MKNOD (root here).
        let made = std::process::Command::new("mknod")
            .arg(t.path().join("null"))
            .args(["c", "1", "3"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("mknod needs root here; device-node skipping not exercised");
            return;
        }
        let warned = std::cell::RefCell::new(Vec::new());
        let warn = |m: &str| warned.borrow_mut().push(m.to_string());
        let o = SourceOptions {
            platform: None,
            source_date_epoch: None,
            warn: &warn,
            registry: Default::default(),
            progress: &crate::registry::pull::Quiet,
        };
        let image = open(t.path(), "dir:x", &o).unwrap();
        assert!(entries(&image).is_empty());
        assert!(
            warned.borrow()[0].contains("skipping device node"),
            "{:?}",
            warned.borrow()
        );
    }

    #[test]
    fn a_file_is_not_a_rootfs() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), b"x").unwrap();
        assert!(open(&t.path().join("f"), "dir:f", &opts(None))
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }
}
