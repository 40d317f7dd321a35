//! The VM parts a file carries ([`crate::format::VmPart`]), copied out once into the cache as
//! `<cache>/vm/<sha256>/<name>`: checked against their digest on the way, decompressed if they
//! were stored so, written under a temporary name and renamed into place, so a crash or a
//! tampered file never leaves a part a later run would trust.

use crate::format::{LayerRef, VmPart, VmPartKind};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
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

/// The path of `kind` from `parts` in the cache, copied out of `file` (and decompressed) first
/// if it is not there.
pub fn get(file: &File, parts: &[VmPart], kind: VmPartKind) -> Result<PathBuf, PartError> {
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
    let written = copy_out(file, part, &tmp).and_then(|ok| {
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

/// Copies a part's stored bytes into `to` (decompressed), hashing them; whether they matched.
fn copy_out(file: &File, part: &VmPart, to: &Path) -> io::Result<bool> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(to)?;
    let blob = LayerRef {
        offset: part.offset,
        size: part.size,
        sha256: part.sha256,
        compression: part.compression,
    };
    let ok = crate::extract::copy_blob(file, &blob, &mut out)?;
    out.sync_all()?;
    Ok(ok)
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
