//! The content-addressed root filesystem cache, and [`prepare`], what the runtime calls to get a
//! root filesystem for an image.
//!
//! Layout under the cache root (`$XDG_CACHE_HOME/oci2bin`, else `$HOME/.cache/oci2bin`):
//! ```text
//! rootfs/<image hex>-x1   extracted root filesystems, published whole by rename(2)
//! tmp/<image hex>-<rand>  staging trees being extracted (removed on any error)
//! locks/<image hex>.lock  flock(2): one extractor per image at a time
//! mnt/                    empty; the runtime mounts its per-run tmpfs here in its own namespace
//! ```
//! A published entry is complete by construction, so the warm path is a `stat` and a `mkdir`.

use crate::extract::{self, ExtractError};
use crate::format::Runtime;
use crate::sys::fs as sys;
use std::ffi::CString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Suffix of cache entries: bump it whenever extraction semantics change, so old trees are not
/// reused (old entries are left for `oci2bin cache prune`).
pub const ENTRY_SUFFIX: &str = "-x1";
/// A staging tree whose owner cannot be asked (no lock file) counts as abandoned after this.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// A root filesystem ready for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// the extracted root filesystem (read-only use: the runtime puts a private overlay on it)
    pub rootfs: PathBuf,
    /// an empty directory the runtime mounts its per-run tmpfs on (inside its own mount ns)
    pub scratch: PathBuf,
    /// Some(dir) when the rootfs is a private extraction the caller must delete after the run
    /// (with [`extract::remove_tree`], which copes with read-only directories)
    pub cleanup: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("image id {0:?} is not a sha256 digest")]
    BadImageId(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the cache and the private fallback live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The cache root, `None` when neither `XDG_CACHE_HOME` nor `HOME` names one.
    pub cache: Option<PathBuf>,
    /// Parent of private extractions when the cache cannot be used.
    pub tmp: PathBuf,
}

impl Locations {
    /// `$XDG_CACHE_HOME/oci2bin`, else `$HOME/.cache/oci2bin`; `$TMPDIR`, else `/tmp`.
    pub fn from_env() -> Locations {
        Locations::from_vars(|k| std::env::var_os(k))
    }

    fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Locations {
        let abs = |k: &str| var(k).map(PathBuf::from).filter(|p| p.is_absolute());
        let cache = abs("XDG_CACHE_HOME")
            .map(|p| p.join("oci2bin"))
            .or_else(|| abs("HOME").map(|h| h.join(".cache/oci2bin")));
        let tmp = abs("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
        Locations { cache, tmp }
    }
}

/// Returns the image's root filesystem, extracting it into the cache first if needed.
pub fn prepare(exe: &File, rt: &Runtime) -> Result<Prepared, CacheError> {
    prepare_at(&Locations::from_env(), exe, rt)
}

/// [`prepare`] with explicit locations.
pub fn prepare_at(loc: &Locations, exe: &File, rt: &Runtime) -> Result<Prepared, CacheError> {
    let hex = image_hex(&rt.image_id)?;
    let Some(root) = &loc.cache else {
        return private(loc, exe, rt, hex, &"neither XDG_CACHE_HOME nor HOME is set");
    };
    let entry = root.join("rootfs").join(format!("{hex}{ENTRY_SUFFIX}"));
    let scratch = root.join("mnt");
    // Warm path: a published entry is complete, so one stat and one mkdir decide.
    if std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_dir()) && ensure_dir(&scratch).is_ok() {
        return Ok(Prepared {
            rootfs: entry,
            scratch,
            cleanup: None,
        });
    }
    match fill(root, exe, rt, hex, &entry) {
        Ok(()) => Ok(Prepared {
            rootfs: entry,
            scratch,
            cleanup: None,
        }),
        Err(Fill::Unusable(e)) => private(loc, exe, rt, hex, &e),
        Err(Fill::Failed(e)) => Err(e),
    }
}

/// The lowercase hex of a `sha256:` image id (the only form the format allows).
fn image_hex(id: &str) -> Result<&str, CacheError> {
    match id.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(CacheError::BadImageId(id.to_string())),
    }
}

fn ensure_dir(p: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(p) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

enum Fill {
    /// The cache itself cannot be used (not creatable, not writable): fall back.
    Unusable(CacheError),
    /// The image could not be extracted: report it.
    Failed(CacheError),
}

/// Extracts the image into a staging tree and publishes it as `entry`, under the image's lock.
fn fill(root: &Path, exe: &File, rt: &Runtime, hex: &str, entry: &Path) -> Result<(), Fill> {
    let unusable = |op, p: &Path| {
        let p = p.to_path_buf();
        move |e| {
            Fill::Unusable(CacheError::Io {
                op,
                path: p,
                source: e,
            })
        }
    };
    for sub in ["rootfs", "tmp", "locks", "mnt"] {
        let d = root.join(sub);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(unusable("mkdir", &d))?;
    }
    let lock_path = root.join("locks").join(format!("{hex}.lock"));
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(unusable("open", &lock_path))?;
    // Blocks while another process extracts the same image; it then finds the entry published.
    sys::flock(lock.as_fd(), true, false).map_err(unusable("flock", &lock_path))?;
    if std::fs::symlink_metadata(entry).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    clean_stale(root, hex);
    let staging = root.join("tmp").join(format!("{hex}-{}", random_suffix()));
    DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(unusable("mkdir", &staging))?;
    let published = extract::extract_layers(exe, &rt.layers, &staging)
        .map_err(CacheError::from)
        .and_then(|()| publish(&staging, entry));
    if published.is_err() {
        let _ = extract::remove_tree(&staging);
    }
    drop(lock);
    published.map_err(Fill::Failed)
}

/// Renames the staging tree to `entry`, never replacing an existing entry.
fn publish(staging: &Path, entry: &Path) -> Result<(), CacheError> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path without NUL");
    let (from, to) = (c(staging), c(entry));
    match sys::renameat2(sys::cwd(), &from, sys::cwd(), &to, sys::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // Published meanwhile by someone who did not take the lock: theirs is as good as ours.
        Err(e) if matches!(sys::errno(&e), sys::EEXIST | sys::ENOTEMPTY) => {
            let _ = extract::remove_tree(staging);
            Ok(())
        }
        // File systems without RENAME_NOREPLACE: a plain rename still refuses a non-empty target.
        Err(e) if sys::errno(&e) == sys::EINVAL => match std::fs::rename(staging, entry) {
            Err(e) if matches!(e.raw_os_error(), Some(sys::EEXIST) | Some(sys::ENOTEMPTY)) => {
                let _ = extract::remove_tree(staging);
                Ok(())
            }
            r => r.map_err(io_err("rename", staging)),
        },
        Err(e) => Err(io_err("rename", staging)(e)),
    }
}

/// Removes staging trees left by crashed runs: those of this image (we hold its lock, so nobody
/// else is extracting it), those whose image lock nobody holds, and lockless ones older than an
/// hour. Best effort: errors are ignored.
fn clean_stale(root: &Path, hex: &str) {
    let Ok(dir) = std::fs::read_dir(root.join("tmp")) else {
        return;
    };
    for ent in dir.flatten() {
        let name = ent.file_name();
        let name = name.to_string_lossy();
        let path = ent.path();
        let owner = name.split_once('-').map(|(h, _)| h).unwrap_or("");
        if owner == hex {
            let _ = extract::remove_tree(&path);
            continue;
        }
        let lock_path = root.join("locks").join(format!("{owner}.lock"));
        match File::open(&lock_path) {
            Ok(lock) if owner.len() == 64 => {
                if sys::flock(lock.as_fd(), true, true).unwrap_or(false) {
                    let _ = extract::remove_tree(&path);
                }
            }
            _ => {
                let old = ent
                    .metadata()
                    .ok()
                    .and_then(|m| {
                        SystemTime::UNIX_EPOCH
                            .checked_add(Duration::from_secs(m.mtime().max(0) as u64))
                    })
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_AFTER);
                if old {
                    let _ = extract::remove_tree(&path);
                }
            }
        }
    }
}

/// A private extraction under the temporary directory, for runs that cannot use the cache.
fn private(
    loc: &Locations,
    exe: &File,
    rt: &Runtime,
    hex: &str,
    why: &dyn std::fmt::Display,
) -> Result<Prepared, CacheError> {
    let dir = loc
        .tmp
        .join(format!("oci2bin-{}-{}", &hex[..12], random_suffix()));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("mkdir", &dir))?;
    eprintln!(
        "oci2bin: warning: cache not usable ({why}); extracting to {} for this run only",
        dir.display()
    );
    let rootfs = dir.join("rootfs");
    let scratch = dir.join("mnt");
    let made = (|| {
        for d in [&rootfs, &scratch] {
            DirBuilder::new()
                .mode(0o700)
                .create(d)
                .map_err(io_err("mkdir", d))?;
        }
        extract::extract_layers(exe, &rt.layers, &rootfs).map_err(CacheError::from)
    })();
    if let Err(e) = made {
        let _ = extract::remove_tree(&dir);
        return Err(e);
    }
    Ok(Prepared {
        rootfs,
        scratch,
        cleanup: Some(dir),
    })
}

/// 16 hex digits from the kernel's random source (pid and time if that fails).
fn random_suffix() -> String {
    let mut b = [0u8; 8];
    if sys::getrandom(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        b = ((std::process::id() as u64) << 32 ^ t.as_nanos() as u64).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests;
