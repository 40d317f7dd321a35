//! The VM parts a file carries ([`crate::format::VmPart`]), copied out once into the cache as
//! `<cache>/vm/<sha256>/<name>`: checked against their digest on the way, decompressed if they
//! were stored so, written under a temporary name and renamed into place, so a crash or a
//! tampered file never leaves a part a later run would trust.

use crate::format::{Compression, VmPart, VmPartKind};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum PartError {
    Missing(&'static str),
    NoCache,
    Io(&'static str, PathBuf, io::Error),
    Digest(&'static str),
}

impl std::fmt::Display for PartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartError::Missing(name) => write!(
                f,
                "this file carries no VM {name}: build it with `oci2bin --vm` (or oci2vm) to run it with --vm"
            ),
            PartError::NoCache => f.write_str("--vm needs a cache directory: set HOME or XDG_CACHE_HOME"),
            PartError::Io(op, p, e) => write!(f, "{op} {}: {e}", p.display()),
            PartError::Digest(name) => write!(
                f,
                "the VM {name} in this file does not match its sha256: file corrupt or tampered"
            ),
        }
    }
}

impl std::error::Error for PartError {}

/// `<cache>/vm`.
pub fn dir() -> Result<PathBuf, PartError> {
    crate::cache::Locations::from_env()
        .cache
        .map(|c| c.join("vm"))
        .ok_or(PartError::NoCache)
}

/// The path of `kind` from `parts` in the cache, copied out of `file` first if it is not there.
/// Only parts stored as they are: the small loader uses this for the runtime (see [`get_gz`]).
pub fn get(file: &File, parts: &[VmPart], kind: VmPartKind) -> Result<PathBuf, PartError> {
    get_with::<false>(file, parts, kind)
}

/// [`get`] for a part that may be gzipped (the kernel).
pub fn get_gz(file: &File, parts: &[VmPart], kind: VmPartKind) -> Result<PathBuf, PartError> {
    get_with::<true>(file, parts, kind)
}

/// `GUNZIP` is a constant so that the small loader, which never decompresses a part, carries
/// no code for it.
fn get_with<const GUNZIP: bool>(
    file: &File,
    parts: &[VmPart],
    kind: VmPartKind,
) -> Result<PathBuf, PartError> {
    let part = parts
        .iter()
        .find(|p| p.kind == kind)
        .ok_or(PartError::Missing(kind.name()))?;
    let at = dir()?.join(crate::cachedir::hex(&part.sha256));
    let path = at.join(kind.name());
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(&at).map_err(|e| PartError::Io("create", at.clone(), e))?;
    let tmp = at.join(format!(".{}.{}", kind.name(), std::process::id()));
    let written = copy_out::<GUNZIP>(file, part, &tmp).and_then(|ok| {
        if !ok {
            return Ok(Err(PartError::Digest(kind.name())));
        }
        fs::rename(&tmp, &path).map(Ok)
    });
    match written {
        Ok(Ok(())) => Ok(path),
        Ok(Err(e)) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(PartError::Io("write", tmp, e))
        }
    }
}

/// Reads a part's stored bytes, hashing them, into `to` (decompressed); whether they matched.
fn copy_out<const GUNZIP: bool>(file: &File, part: &VmPart, to: &Path) -> io::Result<bool> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(to)?;
    let stored = Hashing {
        file,
        at: part.offset,
        left: part.size,
        hash: Sha256::new(),
    };
    let mut hashing = match part.compression {
        Compression::None => Box::new(stored) as Box<dyn ReadHash>,
        Compression::Gzip if GUNZIP => Box::new(Gunzip(crate::gzip::GzipMembers::new(
            BufReader::with_capacity(1 << 16, stored),
        ))),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a VM part compressed in a way this program does not read",
            ))
        }
    };
    io::copy(&mut hashing, &mut out)?;
    let digest = hashing.finish()?;
    out.sync_all()?;
    Ok(digest == part.sha256)
}

trait ReadHash: Read {
    /// Reads what is left of the stored bytes and returns their sha256.
    fn finish(self: Box<Self>) -> io::Result<[u8; 32]>;
}

struct Hashing<'a> {
    file: &'a File,
    at: u64,
    left: u64,
    hash: Sha256,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.hash.update(&buf[..n]);
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

impl ReadHash for Hashing<'_> {
    fn finish(mut self: Box<Self>) -> io::Result<[u8; 32]> {
        io::copy(&mut *self, &mut io::sink())?;
        Ok(self.hash.finalize().into())
    }
}

struct Gunzip<'a>(crate::gzip::GzipMembers<BufReader<Hashing<'a>>>);

impl Read for Gunzip<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl ReadHash for Gunzip<'_> {
    fn finish(mut self: Box<Self>) -> io::Result<[u8; 32]> {
        // Bytes the decoder left unread still count.
        let src = self.0.src();
        io::copy(src, &mut io::sink())?;
        let h = src.get_mut();
        Ok(std::mem::take(&mut h.hash).finalize().into())
    }
}

/// Writes `bytes` to `path` unless it exists, atomically (temporary name, rename).
pub fn write_once(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let r = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}
