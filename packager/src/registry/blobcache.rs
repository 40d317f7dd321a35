//! The blob cache: `$XDG_CACHE_HOME/oci2bin/blobs/sha256/HEX` (else `$HOME/.cache/…`), shared by
//! every pull. A blob is streamed into `blobs/tmp/`, hashed and counted on the way, and renamed
//! into place only when its size and digest are right, so a file under `sha256/` is always whole.
//! A mismatch, an error or a signal removes the partial file.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{RegistryError, Result};
use crate::cleanup::Registered;
use crate::model::{BlobSource, Descriptor, Digest};

#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

/// Partial downloads older than this were left by a process that died without its signal handler
/// (SIGKILL, a crash): nobody will finish them.
const STALE: Duration = Duration::from_secs(24 * 3600);

impl BlobCache {
    /// The blob cache under a cache root (`…/oci2bin`).
    pub fn new(root: impl Into<PathBuf>) -> BlobCache {
        BlobCache { root: root.into() }
    }

    /// `blobs/` under the cache the files use (`$XDG_CACHE_HOME/oci2bin`, else
    /// `$HOME/.cache/oci2bin`).
    pub fn default_location() -> Option<BlobCache> {
        crate::cache::default_root().map(|r| BlobCache::new(r.join("blobs")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The cached file of a blob, when one of the right size is there. Its digest was checked
    /// when it was stored; [`CachedBlobs`] says who trusts it and who checks it again.
    pub fn lookup(&self, desc: &Descriptor) -> Option<PathBuf> {
        let p = self.path(&desc.digest);
        match fs::metadata(&p) {
            Ok(m) if m.is_file() && m.len() == desc.size => Some(p),
            _ => None,
        }
    }

    /// Creates the directories (private: blobs may come from private repositories) and removes
    /// stale partial downloads.
    pub fn prepare(&self) -> Result<()> {
        for d in [self.root.join("sha256"), self.tmp()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(|source| RegistryError::Io {
                    what: format!("cannot create the blob cache {}", d.display()),
                    source,
                })?;
        }
        if let Ok(rd) = fs::read_dir(self.tmp()) {
            let now = SystemTime::now();
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
                if old {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Starts storing a blob.
    pub fn begin(&self, desc: &Descriptor) -> Result<Partial> {
        let io_err = |source| RegistryError::Io {
            what: format!("cannot create a file in {}", self.tmp().display()),
            source,
        };
        let file = tempfile::Builder::new()
            .prefix(&format!("{}-", &desc.digest.hex()[..16]))
            .tempfile_in(self.tmp())
            .map_err(io_err)?;
        let guard = Registered::new(file.path());
        Ok(Partial {
            file,
            guard,
            hasher: Sha256::new(),
            len: 0,
            desc: desc.clone(),
            dest: self.path(&desc.digest),
        })
    }
}

/// A blob being downloaded.
pub struct Partial {
    file: tempfile::NamedTempFile,
    guard: Registered,
    hasher: Sha256,
    len: u64,
    desc: Descriptor,
    dest: PathBuf,
}

/// Why bytes could not be taken.
#[derive(Debug)]
pub enum WriteError {
    /// More bytes than the descriptor's size.
    TooLong(u64),
    Io(io::Error),
}

impl Partial {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_complete(&self) -> bool {
        self.len == self.desc.size
    }

    pub fn write(&mut self, buf: &[u8]) -> Result<(), WriteError> {
        let total = self.len + buf.len() as u64;
        if total > self.desc.size {
            return Err(WriteError::TooLong(total));
        }
        self.file.write_all(buf).map_err(WriteError::Io)?;
        self.hasher.update(buf);
        self.len = total;
        Ok(())
    }

    /// Throws away what was received (a server that ignored `Range` sends the whole blob again).
    pub fn restart(&mut self) -> io::Result<()> {
        self.file.as_file_mut().set_len(0)?;
        self.file.rewind()?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Checks size and digest, then renames the file into the cache. On a mismatch the partial
    /// file is removed (dropped) and the error names `what` from `host`.
    pub fn finish(self, host: &str, what: &str) -> Result<PathBuf> {
        let Partial {
            file,
            guard,
            hasher,
            len,
            desc,
            dest,
        } = self;
        if len != desc.size {
            return Err(RegistryError::SizeMismatch {
                host: host.into(),
                what: what.into(),
                expected: desc.size,
                actual: len,
            });
        }
        let actual = Digest(hasher.finalize().into());
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                host: host.into(),
                what: what.into(),
                digest: desc.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let io_err = |source| RegistryError::Io {
            what: format!("cannot store {}", dest.display()),
            source,
        };
        // Durable before it is visible: a crash must not leave a named blob of zeros.
        file.as_file().sync_all().map_err(io_err)?;
        guard
            .finish(|| file.persist(&dest))
            .map_err(|e| io_err(e.error))?;
        Ok(dest)
    }
}

/// Layers of a pulled image, read from the blob cache.
///
/// A cache file is trusted at rest, as containerd trusts its content store: it was hashed while
/// it arrived, fsynced, and renamed into a private directory only when its digest was right, so
/// the sink copies it whole in the kernel ([`BlobSource::trusted_file`]) and a warm pull reads
/// no layer byte. Rot on disk is still caught: the loader hashes every layer it extracts, and
/// `docker load` does too. Readers that stream ([`BlobSource::open`], e.g. `push`) hash as they
/// read, and remove a damaged file so the next pull downloads it again.
pub struct CachedBlobs(pub BlobCache);

impl BlobSource for CachedBlobs {
    fn open(&self, desc: &Descriptor) -> crate::Result<Box<dyn Read + '_>> {
        let path = self.0.path(&desc.digest);
        let file = File::open(&path).map_err(crate::Error::io("cannot open cached blob", &path))?;
        Ok(Box::new(Verifying {
            inner: file,
            hasher: Sha256::new(),
            want: desc.digest,
            path,
            checked: false,
        }))
    }

    fn verifies_digests(&self) -> bool {
        true
    }

    fn trusted_file(&self, desc: &Descriptor) -> Option<File> {
        let f = File::open(self.0.path(&desc.digest)).ok()?;
        let m = f.metadata().ok()?;
        (m.is_file() && m.len() == desc.size).then_some(f)
    }
}

struct Verifying {
    inner: File,
    hasher: Sha256,
    want: Digest,
    path: PathBuf,
    /// The end was reached and the digest held: reading on gives EOF again (a reader may ask
    /// twice), not a digest of nothing.
    checked: bool,
}

impl Read for Verifying {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.checked {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let got = Digest(std::mem::take(&mut self.hasher).finalize().into());
            if got != self.want {
                let _ = fs::remove_file(&self.path);
                return Err(io::Error::other(format!(
                    "cached blob {} was damaged on disk and has been removed: run the pull again",
                    self.path.display()
                )));
            }
            self.checked = true;
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bytes: &[u8]) -> Descriptor {
        Descriptor::new("x", Digest::of(bytes), bytes.len() as u64)
    }

    #[test]
    fn a_verified_blob_is_renamed_into_place_and_found_again() {
        let t = tempfile::tempdir().unwrap();
        let c = BlobCache::new(t.path());
        c.prepare().unwrap();
        let d = desc(b"hello blob");
        assert!(c.lookup(&d).is_none());
        let mut p = c.begin(&d).unwrap();
        p.write(b"hello ").unwrap();
        p.write(b"blob").unwrap();
        let path = p.finish("h", "blob").unwrap();
        assert_eq!(path, c.path(&d.digest));
        assert_eq!(c.lookup(&d), Some(path));
        assert_eq!(fs::read_dir(c.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn a_wrong_digest_or_size_keeps_nothing() {
        let t = tempfile::tempdir().unwrap();
        let c = BlobCache::new(t.path());
        c.prepare().unwrap();
        let d = desc(b"good");
        let mut p = c.begin(&d).unwrap();
        p.write(b"evil").unwrap();
        let e = p.finish("reg.example", "layer x").unwrap_err().to_string();
        assert!(
            e.contains("reg.example") && e.contains(&d.digest.to_string()),
            "{e}"
        );
        let mut p = c.begin(&d).unwrap();
        assert!(matches!(p.write(b"too long"), Err(WriteError::TooLong(8))));
        p.write(b"go").unwrap();
        assert!(matches!(
            p.finish("h", "x"),
            Err(RegistryError::SizeMismatch { actual: 2, .. })
        ));
        assert!(c.lookup(&d).is_none());
        assert_eq!(fs::read_dir(c.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn restart_discards_what_was_received() {
        let t = tempfile::tempdir().unwrap();
        let c = BlobCache::new(t.path());
        c.prepare().unwrap();
        let d = desc(b"abcdef");
        let mut p = c.begin(&d).unwrap();
        p.write(b"xyz").unwrap();
        p.restart().unwrap();
        p.write(b"abcdef").unwrap();
        let path = p.finish("h", "x").unwrap();
        assert_eq!(fs::read(path).unwrap(), b"abcdef");
    }

    #[test]
    fn a_damaged_cached_blob_fails_its_reader_and_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let c = BlobCache::new(t.path());
        c.prepare().unwrap();
        let d = desc(b"original");
        let mut p = c.begin(&d).unwrap();
        p.write(b"original").unwrap();
        let path = p.finish("h", "x").unwrap();
        let blobs = CachedBlobs(c.clone());
        let mut ok = Vec::new();
        let mut r = blobs.open(&d).unwrap();
        r.read_to_end(&mut ok).unwrap();
        assert_eq!(ok, b"original");
        // Asking again at the end is EOF again, and the good blob stays.
        assert_eq!(r.read(&mut [0u8; 16]).unwrap(), 0);
        assert!(path.exists());
        fs::write(&path, b"0riginal").unwrap();
        let e = blobs
            .open(&d)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(!path.exists());
    }
}
