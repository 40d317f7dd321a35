//! The polyglot sink: writes an image as one file that is a static ELF (the loader) and a tar
//! holding both an OCI image layout and a docker-archive, followed by metadata, the runtime record
//! and the trailer, exactly as `loader::format` draws it.
//!
//! Layers are copied byte for byte and every blob is checked against its digest on the way (a
//! blob the source verified at rest, the blob cache's, is copied in the kernel instead); a
//! mismatch fails the build and leaves no output. The file is written to a temporary name in the
//! output's directory, made executable and renamed into place; an error drops the temporary
//! file, and a signal's watcher ([`crate::cleanup`]) removes it.
//!
//! The output is not fsynced, as `cc`, `cp` and `docker save -o` do not: it is an artifact that
//! can be made again, and a file cut short by a power loss is refused by its trailer check. The
//! fsync would be the biggest cost of a warm pull (about 40 ms for a 63 MB image). What later
//! runs trust without checking, the blob cache and the loader's extraction cache, is synced.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use loader::format::{
    self, build_head, head_layout, pad_to_block, tar_header, Compression, LayerRef, Runtime, Span,
    Trailer, VmPart, VmPartKind, BLOCK, FORMAT_MAJOR, FORMAT_MINOR, VM_DIR,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::metadata::{self, LayerMeta, LoaderMeta, Metadata};
use crate::model::{Digest, Image};
use crate::source::layout::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};

/// How to write the file.
pub struct WriteOptions<'a> {
    /// The static loader ELF that heads the file.
    pub loader: &'a [u8],
    /// SOURCE_DATE_EPOCH: tar entry mtimes and the recorded build time. Without it, entries get
    /// mtime 0 and the build time is the clock's.
    pub source_date_epoch: Option<u64>,
    /// `--require-signature`: public keys (SEC1 points), one of which must sign the file.
    pub trusted_keys: Vec<Vec<u8>>,
    /// `--vm`/`--vm-default`: VM mode's parts to carry.
    pub vm: Option<&'a crate::vm::Bundle>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub size: u64,
    pub manifest_digest: Digest,
    pub trailer: Trailer,
    pub metadata: Metadata,
    pub runtime: Runtime,
}

/// Writes the polyglot to `path` atomically (temporary file in the same directory, chmod 0755,
/// rename).
pub fn write_file(image: &Image, opts: &WriteOptions, path: &Path) -> Result<Written> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".oci2bin-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(Error::io("cannot create a temporary file in", dir))?;
    // Removed by the signal watcher if ^C ends the build before the rename.
    let guard = crate::cleanup::Registered::new(tmp.path());
    // An owned `File` (not `&mut File`), so `io::copy` of a trusted blob becomes copy_file_range.
    let out = tmp
        .as_file()
        .try_clone()
        .map_err(Error::io("cannot reopen", tmp.path()))?;
    let written = write_to(image, opts, BufWriter::with_capacity(1 << 20, out))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(Error::io("cannot chmod", tmp.path()))?;
    guard.finish(|| tmp.persist(path)).map_err(|e| Error::Io {
        what: "cannot rename into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(written)
}

/// Counts bytes written, so entries know their offsets.
struct Counter<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counter<W> {
    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.inner.write_all(b).map_err(write_err)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (pad_to_block(self.pos) - self.pos) as usize;
        self.put(&[0u8; BLOCK][..n])
    }

    /// A whole file entry: header, data, padding. Returns the data offset.
    fn entry(&mut self, name: &str, data: &[u8], mtime: u64) -> Result<u64> {
        self.put(&tar_header(name, data.len() as u64, 0o644, mtime, b'0'))?;
        let at = self.pos;
        self.put(data)?;
        self.pad()?;
        Ok(at)
    }
}

fn write_err(source: io::Error) -> Error {
    Error::IoOther {
        what: "writing the output".into(),
        source,
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Writes the polyglot to any writer (flushing it at the end).
pub fn write_to<W: Write>(image: &Image, opts: &WriteOptions, out: W) -> Result<Written> {
    let mtime = opts.source_date_epoch.unwrap_or(0);
    let head = build_head(opts.loader, mtime)?;
    let (_, loader_offset) = head_layout(opts.loader)?;
    let mut w = Counter { inner: out, pos: 0 };
    w.put(&head)?;

    w.entry("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, mtime)?;
    w.entry(&blob_name(&image.config.digest), &image.config.raw, mtime)?;

    // Each distinct layer once; repeated layers point at the same bytes.
    let mut placed: HashMap<Digest, (u64, Compression)> = HashMap::new();
    for desc in &image.layers {
        if placed.contains_key(&desc.digest) {
            continue;
        }
        w.put(&tar_header(
            &blob_name(&desc.digest),
            desc.size,
            0o644,
            mtime,
            b'0',
        ))?;
        let at = w.pos;
        let compression = copy_verified(image, desc, &mut w)?;
        w.pad()?;
        placed.insert(desc.digest, (at, compression));
    }

    w.entry(
        &blob_name(&image.manifest.digest),
        &image.manifest.raw,
        mtime,
    )?;

    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::model::MEDIA_OCI_INDEX,
        "manifests": [{
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest.to_string(),
            "size": image.manifest.raw.len(),
            "annotations": {
                ANNOTATION_CONTAINERD_NAME: image.name.full(),
                ANNOTATION_REF_NAME: image.name.tag,
            },
        }],
    });
    w.entry(
        "index.json",
        &serde_json::to_vec(&index).expect("index serializes"),
        mtime,
    )?;

    let docker_manifest = json!([{
        "Config": blob_name(&image.config.digest),
        "RepoTags": [image.name.familiar()],
        "Layers": image.layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
    }]);
    w.entry(
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).expect("manifest.json serializes"),
        mtime,
    )?;

    let repositories = match image.layers.last() {
        Some(top) => {
            json!({ image.name.repository.clone(): { image.name.tag.clone(): top.digest.hex() } })
        }
        None => json!({}),
    };
    w.entry(
        "repositories",
        &serde_json::to_vec(&repositories).expect("repositories serializes"),
        mtime,
    )?;

    // VM mode's parts last: image readers skip entries they do not know.
    let mut vm_parts = Vec::new();
    if let Some(vm) = opts.vm {
        for (kind, name, data, compression) in [
            (
                VmPartKind::Kernel,
                "vmlinux.gz",
                &vm.kernel_gz[..],
                Compression::Gzip,
            ),
            (
                VmPartKind::Runtime,
                "runtime.gz",
                &vm.runtime_gz[..],
                Compression::Gzip,
            ),
        ] {
            let at = w.entry(&format!("{VM_DIR}/{name}"), data, mtime)?;
            vm_parts.push(VmPart {
                kind,
                offset: at,
                size: data.len() as u64,
                sha256: Sha256::digest(data).into(),
                compression,
            });
        }
    }

    w.put(&[0u8; 2 * BLOCK])?;
    let tar_end = w.pos;

    let rc = image.run_config();
    let runtime = Runtime {
        image_id: image.manifest.digest.to_string(),
        name: image.name.familiar(),
        layers: image
            .layers
            .iter()
            .map(|d| {
                let (offset, compression) = placed[&d.digest];
                LayerRef {
                    offset,
                    size: d.size,
                    sha256: d.digest.0,
                    compression,
                }
            })
            .collect(),
        entrypoint: rc.entrypoint.clone(),
        cmd: rc.cmd.clone(),
        env: rc.env.clone(),
        workdir: rc.workdir.clone(),
        user: rc.user.clone(),
        stop_signal: rc.stop_signal.clone(),
        default_args: match opts.vm {
            Some(vm) if vm.default => vec!["--vm".into()],
            _ => Vec::new(),
        },
        seccomp: Some(default_seccomp()),
        trusted_keys: opts.trusted_keys.clone(),
        vm_parts,
    };
    let meta = Metadata {
        format_version: format!("{FORMAT_MAJOR}.{FORMAT_MINOR}"),
        tool_version: format!("oci2bin {}", env!("CARGO_PKG_VERSION")),
        source: image.source.clone(),
        source_digest: image.source_digest.to_string(),
        image: image.name.familiar(),
        manifest_digest: image.manifest.digest.to_string(),
        config_digest: image.config.digest.to_string(),
        architecture: image.architecture(),
        os: image.os(),
        created: metadata::rfc3339(opts.source_date_epoch.unwrap_or_else(metadata::now)),
        layers: image
            .layers
            .iter()
            .map(|d| LayerMeta {
                digest: d.digest.to_string(),
                size: d.size,
                media_type: d.media_type.clone(),
                offset: placed[&d.digest].0,
            })
            .collect(),
        loader: LoaderMeta {
            size: opts.loader.len() as u64,
            sha256: hex::encode(Sha256::digest(opts.loader)),
            offset: loader_offset,
        },
        config: rc,
    };
    let meta_bytes = serde_json::to_vec(&meta).expect("metadata serializes");
    let record = runtime.encode();
    let meta_at = w.pos;
    w.put(&meta_bytes)?;
    w.put(&record)?;
    let mut hasher = Sha256::new();
    hasher.update(&meta_bytes);
    hasher.update(&record);
    let trailer = Trailer {
        major: FORMAT_MAJOR,
        minor: FORMAT_MINOR,
        flags: match opts.trusted_keys.is_empty() {
            true => 0,
            false => format::FLAG_SIGNATURE_REQUIRED,
        },
        tar: Span::new(0, tar_end),
        metadata: Span::new(meta_at, meta_bytes.len() as u64),
        runtime: Span::new(meta_at + meta_bytes.len() as u64, record.len() as u64),
        signature: Span::default(),
        metadata_sha256: hasher.finalize().into(),
    };
    w.put(&trailer.encode())?;
    w.inner.flush().map_err(write_err)?;
    Ok(Written {
        size: w.pos,
        manifest_digest: image.manifest.digest,
        trailer,
        metadata: meta,
        runtime,
    })
}

/// Copies one layer blob, checking its size and sha256; returns the compression its first bytes
/// show.
fn copy_verified<W: Write>(
    image: &Image,
    desc: &crate::model::Descriptor,
    w: &mut Counter<W>,
) -> Result<Compression> {
    let read_err = |source| Error::IoOther {
        what: format!("reading layer {}", desc.digest),
        source,
    };
    if let Some(f) = image.blobs.trusted_file(desc) {
        return copy_trusted(f, desc, w);
    }
    let mut r = image.blobs.open(desc)?.take(desc.size + 1);
    // A source that checks the digest itself (the blob cache) fails its read on a mismatch:
    // hashing here too would only double the work of a warm pull.
    let mut hasher = (!image.blobs.verifies_digests()).then(Sha256::new);
    let mut buf = vec![0u8; 256 << 10];
    let mut n_total = 0u64;
    let mut head = Vec::with_capacity(4);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if n_total + n as u64 > desc.size {
            return Err(Error::SizeMismatch {
                digest: desc.digest.to_string(),
                expected: desc.size,
                actual: n_total + n as u64,
            });
        }
        if head.len() < 4 {
            let k = (4 - head.len()).min(n);
            head.extend_from_slice(&buf[..k]);
        }
        if let Some(h) = &mut hasher {
            h.update(&buf[..n]);
        }
        w.put(&buf[..n])?;
        n_total += n as u64;
    }
    if n_total != desc.size {
        return Err(Error::SizeMismatch {
            digest: desc.digest.to_string(),
            expected: desc.size,
            actual: n_total,
        });
    }
    if let Some(h) = hasher {
        let actual = Digest(h.finalize().into());
        if actual != desc.digest {
            return Err(Error::DigestMismatch {
                digest: desc.digest.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(Compression::sniff(&head))
}

/// Copies a blob file the source vouches for (its size already matches): `io::copy` from a
/// `File` into a `BufWriter<File>` flushes the buffer and runs copy_file_range, so no layer byte
/// passes through this process.
fn copy_trusted<W: Write>(
    mut f: fs::File,
    desc: &crate::model::Descriptor,
    w: &mut Counter<W>,
) -> Result<Compression> {
    use std::os::unix::fs::FileExt;
    let read_err = |source| Error::IoOther {
        what: format!("reading layer {}", desc.digest),
        source,
    };
    let mut head = [0u8; 4];
    let k = (desc.size as usize).min(head.len());
    f.read_exact_at(&mut head[..k], 0).map_err(read_err)?;
    let n = io::copy(&mut (&mut f).take(desc.size), &mut w.inner).map_err(write_err)?;
    w.pos += n;
    if n != desc.size {
        return Err(Error::SizeMismatch {
            digest: desc.digest.to_string(),
            expected: desc.size,
            actual: n,
        });
    }
    Ok(Compression::sniff(&head[..k]))
}

/// Reads and checks the trailer, metadata and runtime record of a file.
pub fn read_back(path: &Path) -> Result<(Trailer, Metadata, Runtime, u64)> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).map_err(Error::io("cannot open", path))?;
    let len = f.metadata().map_err(Error::io("cannot stat", path))?.len();
    if len < format::TRAILER_LEN as u64 {
        return Err(Error::Invalid(format!(
            "{} is not an oci2bin file (only {len} bytes, no trailer)",
            path.display()
        )));
    }
    let mut tb = [0u8; format::TRAILER_LEN];
    f.read_exact_at(&mut tb, len - format::TRAILER_LEN as u64)
        .map_err(Error::io("cannot read", path))?;
    let trailer = Trailer::decode(&tb, len).map_err(|e| match e {
        format::FormatError::NoTrailer => Error::Invalid(format!(
            "{} is not an oci2bin file (no trailer at its end; truncated or another kind of file)",
            path.display()
        )),
        e => Error::Invalid(format!("{}: {e}", path.display())),
    })?;
    let hashed = trailer.hashed();
    let mut body = vec![0u8; hashed.len as usize];
    f.read_exact_at(&mut body, hashed.offset)
        .map_err(Error::io("cannot read", path))?;
    trailer
        .verify_hashed(&body)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let (meta, record) = body.split_at(trailer.metadata.len as usize);
    let metadata: Metadata = serde_json::from_slice(meta)
        .map_err(Error::json(format!("the metadata of {}", path.display())))?;
    let runtime =
        Runtime::decode(record).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    Ok((trailer, metadata, runtime, len))
}

/// Docker's default seccomp profile compiled for Docker's default capabilities on the newest
/// kernel its `minKernel`s name (the loader checks both before it installs the filter as it is),
/// with the profile itself for the runs that need a recompile.
fn default_seccomp() -> loader::format::SeccompRecord {
    use loader::seccomp;
    let profile = seccomp::DOCKER_DEFAULT.as_bytes();
    let caps = loader::caps::DOCKER_DEFAULT;
    let newest = seccomp::Target {
        caps,
        kernel: (u32::MAX, u32::MAX),
    };
    let c = seccomp::compile(profile, newest).expect("Docker's default profile compiles");
    let (major, minor) = c.newest_min_kernel;
    loader::format::SeccompRecord {
        caps,
        caps_named: c.caps_named,
        min_kernel: (major as u16, minor as u16),
        bpf: seccomp::to_bytes(&c.insns),
        profile: profile.to_vec(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::tests_support::{fake_loader, tiny_image};
    use crate::model::{Descriptor, MemoryBlobs};
    use std::sync::Arc;

    /// Layers from the blob cache are trusted at rest and copied whole: the file is the same as
    /// one built from the verified source. A cached file of the wrong size is not trusted: it is
    /// read through the hashing reader, fails the write, and is dropped from the cache.
    #[test]
    fn blob_cache_layers_are_copied_whole_and_a_wrong_sized_one_fails_the_write() {
        use crate::registry::blobcache::{BlobCache, CachedBlobs};
        let t = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(t.path().join("blobs"));
        cache.prepare().unwrap();
        let mut image = tiny_image();
        for d in &image.layers {
            let mut bytes = Vec::new();
            image
                .blobs
                .open(d)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            let mut p = cache.begin(d).unwrap();
            p.write(&bytes).unwrap();
            p.finish("test", "layer").unwrap();
        }
        let loader = fake_loader();
        let opts = WriteOptions {
            loader: &loader,
            source_date_epoch: Some(1),
            trusted_keys: Vec::new(),
            vm: None,
        };
        let (direct, cached) = (t.path().join("direct"), t.path().join("cached"));
        write_file(&image, &opts, &direct).unwrap();
        image.blobs = Arc::new(CachedBlobs(cache.clone()));
        write_file(&image, &opts, &cached).unwrap();
        assert_eq!(fs::read(&direct).unwrap(), fs::read(&cached).unwrap());

        let victim = cache.path(&image.layers[1].digest);
        let mut bytes = fs::read(&victim).unwrap();
        bytes.pop();
        fs::write(&victim, bytes).unwrap();
        let e = write_file(&image, &opts, &cached).unwrap_err();
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
        assert!(!victim.exists());
    }

    pub(crate) fn build(epoch: Option<u64>) -> (Vec<u8>, Written) {
        let loader = fake_loader();
        let mut out = Vec::new();
        let w = write_to(
            &tiny_image(),
            &WriteOptions {
                loader: &loader,
                source_date_epoch: epoch,
                trusted_keys: Vec::new(),
                vm: None,
            },
            &mut out,
        )
        .unwrap();
        (out, w)
    }

    fn tar_entries(file: &[u8]) -> Vec<(String, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(file);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, e.raw_file_position(), data)
            })
            .collect()
    }

    #[test]
    fn entries_form_an_oci_layout_and_a_docker_archive_in_order() {
        let image = tiny_image();
        let (file, _) = build(Some(1_700_000_000));
        let entries = tar_entries(&file);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        assert!(
            names[0].starts_with("\x7fELF"),
            "first entry is the loader: {:?}",
            names[0]
        );
        assert_eq!(
            names[1..],
            [
                "oci-layout".to_string(),
                blob(&image.config.digest),
                blob(&image.layers[0].digest),
                blob(&image.layers[1].digest),
                blob(&image.manifest.digest),
                "index.json".into(),
                "manifest.json".into(),
                "repositories".into(),
            ]
        );
        assert_eq!(&file[0..4], b"\x7fELF");
        let data = |n: &str| entries.iter().find(|e| e.0 == n).unwrap().2.clone();
        assert_eq!(data(&blob(&image.manifest.digest)), image.manifest.raw);
        let index: serde_json::Value = serde_json::from_slice(&data("index.json")).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], image.manifest.digest.to_string());
        assert_eq!(m["annotations"][ANNOTATION_REF_NAME], "1");
        assert_eq!(
            m["annotations"][ANNOTATION_CONTAINERD_NAME],
            "docker.io/library/tiny:1"
        );
        let dm: serde_json::Value = serde_json::from_slice(&data("manifest.json")).unwrap();
        assert_eq!(dm[0]["Config"], blob(&image.config.digest));
        assert_eq!(dm[0]["RepoTags"][0], "tiny:1");
        assert_eq!(dm[0]["Layers"][1], blob(&image.layers[1].digest));
        // Every entry carries the epoch as mtime and belongs to root.
        let mut a = tar::Archive::new(&file[..]);
        for e in a.entries().unwrap() {
            let h = e.unwrap().header().clone();
            assert_eq!(
                (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                (1_700_000_000, 0, 0)
            );
        }
    }

    #[test]
    fn trailer_record_and_metadata_point_at_the_exact_bytes() {
        let image = tiny_image();
        let (file, w) = build(None);
        let len = file.len() as u64;
        let t = Trailer::decode(&file[file.len() - format::TRAILER_LEN..], len).unwrap();
        assert_eq!(t, w.trailer);
        // The tar span ends with the two zero blocks of end-of-archive.
        assert_eq!(t.tar.offset, 0);
        assert!(file[(t.tar.end() - 1024) as usize..t.tar.end() as usize]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(t.metadata.offset, t.tar.end());
        let hashed = &file[t.hashed().offset as usize..t.hashed().end() as usize];
        t.verify_hashed(hashed).unwrap();
        let rt =
            Runtime::decode(&file[t.runtime.offset as usize..t.runtime.end() as usize]).unwrap();
        assert_eq!(rt.image_id, image.manifest.digest.to_string());
        assert_eq!(rt.name, "tiny:1");
        assert_eq!(rt.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(rt.entrypoint, None);
        assert_eq!(rt.env, ["PATH=/bin"]);
        assert_eq!(rt.layers.len(), 2);
        let meta: Metadata =
            serde_json::from_slice(&file[t.metadata.offset as usize..t.metadata.end() as usize])
                .unwrap();
        for ((l, d), m) in rt.layers.iter().zip(&image.layers).zip(&meta.layers) {
            let bytes = &file[l.offset as usize..(l.offset + l.size) as usize];
            assert_eq!(Digest::of(bytes), d.digest);
            assert_eq!(l.sha256, d.digest.0);
            assert_eq!(l.compression, Compression::Gzip);
            assert_eq!(m.offset, l.offset);
            assert_eq!(m.digest, d.digest.to_string());
        }
        assert_eq!(meta.manifest_digest, image.manifest.digest.to_string());
        assert_eq!(meta.format_version, "1.2");
        assert_eq!(meta.loader.size, fake_loader().len() as u64);
        assert_eq!(&file[meta.loader.offset as usize..][..4], b"\x7fELF");
        assert_eq!(
            meta.config.labels.get("keep").map(String::as_str),
            Some("me")
        );
        assert_eq!(meta.architecture, "amd64");
    }

    #[test]
    fn same_input_and_epoch_give_identical_bytes() {
        let (a, _) = build(Some(1_600_000_000));
        let (b, _) = build(Some(1_600_000_000));
        assert!(a == b, "two builds differ");
        let (c, _) = build(Some(1_600_000_001));
        assert!(a != c, "the epoch must show in the file");
    }

    #[test]
    fn repeated_layers_are_stored_once_and_referenced_twice() {
        let mut image = tiny_image();
        let first = image.layers[0].clone();
        image.layers.push(first.clone());
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
        assert_eq!(w.runtime.layers.len(), 3);
        assert_eq!(w.runtime.layers[0].offset, w.runtime.layers[2].offset);
        let names: Vec<_> = tar_entries(&out).into_iter().map(|e| e.0).collect();
        let blob = format!("blobs/sha256/{}", first.digest.hex());
        assert_eq!(names.iter().filter(|n| **n == blob).count(), 1);
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_fails_and_leaves_no_file() {
        let mut image = tiny_image();
        let mut blobs = MemoryBlobs::default();
        for (i, d) in image.layers.iter().enumerate() {
            let mut bytes = crate::model::tests_support::gzip_layer(&[("x", b"y")]);
            bytes.resize(d.size as usize, 0);
            if i == 0 {
                blobs.0.insert(d.digest, bytes);
            }
        }
        image.blobs = Arc::new(blobs);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img");
        let loader = fake_loader();
        let err = write_file(
            &image,
            &WriteOptions {
                loader: &loader,
                source_date_epoch: None,
                trusted_keys: Vec::new(),
                vm: None,
            },
            &out,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&image.layers[0].digest.to_string()),
            "{err}"
        );
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "output or temp file left behind"
        );
    }

    #[test]
    fn a_short_blob_is_a_size_mismatch() {
        let mut image = tiny_image();
        let d: Descriptor = image.layers[0].clone();
        let mut blobs = MemoryBlobs::default();
        blobs.0.insert(d.digest, vec![1, 2, 3]);
        image.blobs = Arc::new(blobs);
        let loader = fake_loader();
        let err = write_to(
            &image,
            &WriteOptions {
                loader: &loader,
                source_date_epoch: None,
                trusted_keys: Vec::new(),
                vm: None,
            },
            io::sink(),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::SizeMismatch { actual: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn written_files_are_executable_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img");
        let loader = fake_loader();
        let w = write_file(
            &tiny_image(),
            &WriteOptions {
                loader: &loader,
                source_date_epoch: Some(5),
                trusted_keys: Vec::new(),
                vm: None,
            },
            &out,
        )
        .unwrap();
        let md = std::fs::metadata(&out).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o755);
        assert_eq!(md.len(), w.size);
        let (t, meta, rt, _) = read_back(&out).unwrap();
        assert_eq!((t, meta, rt), (w.trailer, w.metadata, w.runtime));
    }

    #[test]
    fn read_back_refuses_other_and_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, vec![7u8; 4096]).unwrap();
        let e = read_back(&other).unwrap_err().to_string();
        assert!(e.contains("is not an oci2bin file"), "{e}");
        let (file, _) = build(Some(1));
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &file[..file.len() - 10]).unwrap();
        assert!(read_back(&cut)
            .unwrap_err()
            .to_string()
            .contains("not an oci2bin file"));
        // A flipped byte in the metadata breaks its hash.
        let mut bad = file.clone();
        let t = Trailer::decode(&file[file.len() - 128..], file.len() as u64).unwrap();
        bad[t.metadata.offset as usize + 3] ^= 1;
        let flipped = dir.path().join("flipped");
        std::fs::write(&flipped, &bad).unwrap();
        let e = read_back(&flipped).unwrap_err().to_string();
        assert!(e.contains("does not match its sha256"), "{e}");
        let tiny = dir.path().join("tiny");
        std::fs::write(&tiny, b"hi").unwrap();
        assert!(read_back(&tiny)
            .unwrap_err()
            .to_string()
            .contains("not an oci2bin file"));
    }
}
