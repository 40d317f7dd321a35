//! The content-addressed root filesystem cache, and [`prepare`], what the runtime calls to get a
//! root filesystem for an image.
//!
//! Layout and names: [`crate::cachedir`]. An entry is keyed by the image's layer digests, so a
//! config-only change of an image reuses the tree. A published entry is complete by construction,
//! so the warm path is a few `lstat`s, the entry's meta file opened and share-locked for the run
//! (so `oci2bin cache rm|prune` leave it alone), and its last-use time set.
//!
//! Ownership: the cache is only written when it belongs to us (or would be created in a
//! directory of ours, or a sticky root-owned one like /tmp), so `sudo ./image` with a user's
//! `XDG_CACHE_HOME` creates nothing there. An entry that is a symlink, not a directory or owned
//! by someone else is reported in one line and not used; the run then extracts privately.
//!
//! Private extractions live in `$TMPDIR/oci2bin-<key12>-<rand>/`, whose `.lock` the run holds;
//! cold starts remove those whose owner is gone. SIGINT/SIGTERM/SIGHUP/SIGQUIT during an
//! extraction stop it, remove the partial tree and return [`CacheError::Interrupted`].

use crate::cachedir::{self, LOCKS, META, MNT, PRIVATE_LOCK, PRIVATE_PREFIX, ROOTFS, SUBDIRS, TMP};
use crate::extract::{self, ErrorKind, ExtractError};
use crate::format::{LayerRef, Runtime};
use crate::sys::fs as sys;
use crate::sys::sig;
use std::ffi::CString;
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use crate::cachedir::ENTRY_SUFFIX;

/// A staging tree or private dir whose owner cannot be asked (no lock file) counts as abandoned
/// after this.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(3600);
/// Waiting this long for another extractor, a start says what it waits for.
const SAY_WAIT_AFTER: Duration = Duration::from_secs(2);

/// A root filesystem ready for a run.
#[derive(Debug)]
pub struct Prepared {
    /// the extracted root filesystem (read-only use: the runtime puts a private overlay on it)
    pub rootfs: PathBuf,
    /// an empty directory the runtime mounts its per-run tmpfs on (inside its own mount ns)
    pub scratch: PathBuf,
    /// Some(dir) when the rootfs is a private extraction the caller must delete after the run
    /// (with [`extract::remove_tree`], which copes with read-only directories)
    pub cleanup: Option<PathBuf>,
    /// Locks that must be held until the run ends (keep `Prepared` alive until then): the
    /// entry's meta file (LOCK_SH: in use, not to be removed) or the private dir's `.lock`
    /// (LOCK_EX: its owner is alive, not to be swept). All are close-on-exec.
    pub hold: Vec<File>,
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
    /// A stop signal arrived while extracting; the partial tree is gone. The caller should die
    /// of the same signal ([`sig::die_of`]).
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An extraction result, with a stop signal told apart from a broken image.
fn extracted(r: Result<(), ExtractError>) -> Result<(), CacheError> {
    match r {
        Err(ExtractError {
            kind: ErrorKind::Interrupted(s),
            ..
        }) => Err(CacheError::Interrupted(s)),
        r => r.map_err(CacheError::from),
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
        let tmp = var("TMPDIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        Locations {
            cache: cachedir::root_from_vars(var),
            tmp,
        }
    }
}

/// Returns the image's root filesystem, extracting it into the cache first if needed. With
/// `map` (the id maps as [`crate::subid::map_text`] names them; the caller is then inside that
/// mapped user namespace), the entry is one of its own and keeps the layers' owners and xattrs.
pub fn prepare(exe: &File, rt: &Runtime, map: Option<&str>) -> Result<Prepared, CacheError> {
    prepare_in(&Locations::from_env(), exe, rt, map)
}

/// [`prepare`] with explicit locations, single-uid.
pub fn prepare_at(loc: &Locations, exe: &File, rt: &Runtime) -> Result<Prepared, CacheError> {
    prepare_in(loc, exe, rt, None)
}

/// [`prepare`] with explicit locations.
pub fn prepare_in(
    loc: &Locations,
    exe: &File,
    rt: &Runtime,
    map: Option<&str>,
) -> Result<Prepared, CacheError> {
    // Checked although the key no longer uses it: it is written into the meta file.
    image_hex(&rt.image_id)?;
    let key = cachedir::key_mapped(&rt.layers, map);
    let owners = map.is_some();
    let Some(root) = &loc.cache else {
        let why = "cache not usable (neither XDG_CACHE_HOME nor HOME is set)";
        return private(loc, exe, &rt.layers, &key, why, owners);
    };
    let mut c = Cache::new(root, &key);
    c.owners = owners;
    if let Some(p) = c.warm(rt) {
        return Ok(p);
    }
    match c.cold(loc, exe, rt) {
        Ok(p) => Ok(p),
        Err(Cold::Fallback(why)) => private(loc, exe, &rt.layers, &key, &why, owners),
        Err(Cold::Failed(e)) => Err(e),
    }
}

/// The lowercase hex of a `sha256:` image id (the only form the format allows).
fn image_hex(id: &str) -> Result<&str, CacheError> {
    match id.strip_prefix("sha256:") {
        Some(h) if cachedir::is_key(h) => Ok(h),
        _ => Err(CacheError::BadImageId(id.to_string())),
    }
}

enum Cold {
    /// The cache (or this entry) cannot be used: say why, then extract privately.
    Fallback(String),
    /// The image could not be extracted: report it.
    Failed(CacheError),
}

fn fallback<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(io::Error) -> Cold + 'a {
    move |e| Cold::Fallback(format!("cache not usable ({op} {}: {e})", p.display()))
}

/// The state of an entry path.
enum EntryState {
    /// A directory of ours: use it.
    Ready,
    Missing,
    /// Something else is there: the warning saying what, and how to fix it.
    Bad(String),
}

/// The paths of one entry.
struct Cache<'a> {
    root: &'a Path,
    key: &'a str,
    entry: PathBuf,
    meta: PathBuf,
    mnt: PathBuf,
    euid: u32,
    /// Extract with the layers' owners (a mapped entry).
    owners: bool,
}

impl<'a> Cache<'a> {
    fn new(root: &'a Path, key: &'a str) -> Cache<'a> {
        let name = cachedir::entry_name(key);
        Cache {
            root,
            key,
            entry: root.join(ROOTFS).join(&name),
            meta: root.join(META).join(&name),
            mnt: root.join(MNT),
            euid: sys::geteuid(),
            owners: false,
        }
    }

    fn ours(&self, m: &Metadata) -> bool {
        m.is_dir() && m.uid() == self.euid
    }

    fn prepared(&self, meta: File) -> Prepared {
        Prepared {
            rootfs: self.entry.clone(),
            scratch: self.mnt.clone(),
            cleanup: None,
            hold: vec![meta],
        }
    }

    /// The warm path: every directory involved exists and is ours, the entry is published.
    /// `None` sends the caller down the cold path, which creates or reports what is missing.
    fn warm(&self, rt: &Runtime) -> Option<Prepared> {
        let ours = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| self.ours(&m));
        // Checking meta/ rejects a cache of another user (e.g. ours run by root) before anything
        // is created in it.
        if !ours(&self.root.join(META)) || !ours(&self.mnt) {
            return None;
        }
        let meta = open_meta(&self.meta, self.euid).ok()?;
        if !matches!(self.entry_state(), EntryState::Ready) {
            return None;
        }
        record(&meta, rt);
        Some(self.prepared(meta))
    }

    fn entry_state(&self) -> EntryState {
        let m = match std::fs::symlink_metadata(&self.entry) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return EntryState::Missing,
            Err(e) => {
                let p = self.entry.display();
                return EntryState::Bad(format!("cache entry {p} cannot be read ({e}); not used"));
            }
        };
        let (p, key) = (self.entry.display(), self.key);
        let rm = format!("remove it with `oci2bin cache rm {key}`");
        if m.file_type().is_symlink() {
            EntryState::Bad(format!("cache entry {p} is a symlink; not used ({rm})"))
        } else if !m.is_dir() {
            EntryState::Bad(format!(
                "cache entry {p} is not a directory; not used ({rm})"
            ))
        } else if m.uid() != self.euid {
            let root = self.root.display();
            EntryState::Bad(format!(
                "cache entry {p} is owned by uid {}, not you; not used (remove it with `sudo \
                 oci2bin cache --cache-dir {root} rm {key}`)",
                m.uid()
            ))
        } else {
            EntryState::Ready
        }
    }

    /// The cold path: makes the cache's directories (refusing a cache that is not ours), then
    /// extracts and publishes the entry under its lock unless someone else did meanwhile.
    fn cold(&self, loc: &Locations, exe: &File, rt: &Runtime) -> Result<Prepared, Cold> {
        check_root(self.root, self.euid).map_err(Cold::Fallback)?;
        for sub in SUBDIRS {
            let d = self.root.join(sub);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(fallback("mkdir", &d))?;
            let m = std::fs::symlink_metadata(&d).map_err(fallback("stat", &d))?;
            if !self.ours(&m) {
                return Err(Cold::Fallback(format!(
                    "cache dir {} is not a directory owned by you (uid {}); not writing into \
                     another user's cache",
                    d.display(),
                    m.uid()
                )));
            }
        }
        let meta = open_meta(&self.meta, self.euid).map_err(fallback("open", &self.meta))?;
        match self.entry_state() {
            EntryState::Ready => return Ok(self.used(meta, rt)),
            EntryState::Bad(why) => return Err(Cold::Fallback(why)),
            EntryState::Missing => {}
        }
        // From here on a stop signal removes what we wrote, then kills us as it would have.
        let catch = sig::catch().ok();
        let lock = self.lock(rt)?;
        match self.entry_state() {
            // Published by the process we waited for.
            EntryState::Ready => return Ok(self.used(meta, rt)),
            EntryState::Bad(why) => return Err(Cold::Fallback(why)),
            EntryState::Missing => {}
        }
        clean_stale(self.root, self.key);
        sweep_private(&loc.tmp);
        let staging = self
            .root
            .join(TMP)
            .join(format!("{}-{}", self.key, random_suffix()));
        DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(fallback("mkdir", &staging))?;
        let published = extracted(extract::extract_layers_owned(
            exe,
            &rt.layers,
            &staging,
            self.owners,
        ))
        .and_then(|()| publish(&staging, &self.entry));
        if published.is_err() {
            let _ = extract::remove_tree(&staging);
        }
        drop(lock);
        drop(catch);
        published.map_err(Cold::Failed)?;
        // A signal after the last entry: the entry is complete and kept, but we stop as asked.
        if let Some(s) = sig::pending() {
            return Err(Cold::Failed(CacheError::Interrupted(s)));
        }
        match self.entry_state() {
            EntryState::Ready => Ok(self.used(meta, rt)),
            EntryState::Bad(why) => Err(Cold::Fallback(why)),
            EntryState::Missing => Err(Cold::Fallback(format!(
                "cache entry {} vanished after publishing; not used",
                self.entry.display()
            ))),
        }
    }

    fn used(&self, meta: File, rt: &Runtime) -> Prepared {
        record(&meta, rt);
        self.prepared(meta)
    }

    /// Takes the entry's extraction lock, saying after [`SAY_WAIT_AFTER`] what it waits for.
    /// Polls rather than blocks, so a stop signal ends the wait.
    fn lock(&self, rt: &Runtime) -> Result<File, Cold> {
        let path = self.root.join(LOCKS).join(cachedir::lock_name(self.key));
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(fallback("open", &path))?;
        let start = Instant::now();
        let (mut nap, mut said) = (Duration::from_millis(10), false);
        while !sys::flock(lock.as_fd(), true, true).map_err(fallback("flock", &path))? {
            if let Some(s) = sig::pending() {
                return Err(Cold::Failed(CacheError::Interrupted(s)));
            }
            if !said && start.elapsed() >= SAY_WAIT_AFTER {
                let name = if rt.name.is_empty() {
                    &rt.image_id
                } else {
                    &rt.name
                };
                eprintln!(
                    "oci2bin: waiting for another process extracting {name} into {} (lock {})",
                    self.entry.display(),
                    path.display()
                );
                said = true;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(100));
        }
        Ok(lock)
    }
}

/// Item 4 of the hardening: the cache root must be ours, or be created by us in a directory of
/// ours (or a sticky root-owned one). Err holds the one-line reason.
fn check_root(root: &Path, euid: u32) -> Result<(), String> {
    let other = |owner: u32, what: String| {
        format!("{what} belongs to uid {owner}; not writing into another user's cache")
    };
    // Following symlinks: a cache dir linked elsewhere is fine when the target is ours.
    match std::fs::metadata(root) {
        Ok(m) if m.uid() != euid => {
            return Err(other(m.uid(), format!("cache {}", root.display())))
        }
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cache not usable (stat {}: {e})", root.display())),
    }
    for a in root.ancestors().skip(1) {
        match std::fs::metadata(a) {
            Ok(m) if cachedir::may_create_in(m.uid(), m.mode(), euid) => return Ok(()),
            Ok(m) => {
                let what = format!(
                    "cache {} would be made in {}, which",
                    root.display(),
                    a.display()
                );
                return Err(other(m.uid(), what));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cache not usable (stat {}: {e})", a.display())),
        }
    }
    Ok(())
}

/// Opens (creating) an entry's meta file and takes LOCK_SH on it.
fn open_meta(path: &Path, euid: u32) -> io::Result<File> {
    loop {
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        sys::flock(f.as_fd(), false, false)?;
        let st = sys::fstat(f.as_fd())?;
        if st.st_uid != euid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("owned by uid {}", st.st_uid),
            ));
        }
        // `oci2bin cache rm` unlinks it under LOCK_EX: a lock on an unlinked file guards nothing.
        if st.st_nlink > 0 {
            return Ok(f);
        }
    }
}

/// Notes in the meta file that this image used the entry, and now. Best effort: a full disk
/// must not stop a run.
fn record(meta: &File, rt: &Runtime) {
    let line = cachedir::meta_line(&rt.image_id, &rt.name);
    let mut text = Vec::new();
    let mut f = meta;
    let _ = f.read_to_end(&mut text);
    let seen = text
        .split(|&b| b == b'\n')
        .any(|l| l == &line.as_bytes()[..line.len() - 1]);
    if !seen {
        let _ = f.write_all(line.as_bytes());
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = sys::futimens(meta.as_fd(), now.as_secs() as i64, now.subsec_nanos());
}

/// Renames the staging tree to `entry`, never replacing what is there (the caller looks at it).
/// The tree is flushed to disk first (syncfs: one call for all its files), and the rename after:
/// later runs trust a published entry without looking, so a power loss must not leave one named
/// but empty.
fn publish(staging: &Path, entry: &Path) -> Result<(), CacheError> {
    let dir = File::open(staging).map_err(io_err("open", staging))?;
    sys::syncfs(dir.as_fd()).map_err(io_err("sync", staging))?;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path without NUL");
    let (from, to) = (c(staging), c(entry));
    let sync_parent = || {
        if let Some(parent) = entry.parent().and_then(|p| File::open(p).ok()) {
            let _ = sys::fsync(parent.as_fd());
        }
    };
    match sys::renameat2(sys::cwd(), &from, sys::cwd(), &to, sys::RENAME_NOREPLACE) {
        Ok(()) => {
            sync_parent();
            Ok(())
        }
        // Published meanwhile by someone who did not take the lock.
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

pub(crate) fn older_than(m: &Metadata, age: Duration) -> bool {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(m.mtime().max(0) as u64))
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|a| a > age)
}

/// Removes staging trees left by crashed runs: those of this entry (we hold its lock, so nobody
/// else is extracting it), those whose entry lock nobody holds, and lockless ones older than an
/// hour. Best effort: errors are ignored.
fn clean_stale(root: &Path, key: &str) {
    let Ok(dir) = std::fs::read_dir(root.join(TMP)) else {
        return;
    };
    for ent in dir.flatten() {
        let name = ent.file_name();
        let name = name.to_string_lossy();
        let path = ent.path();
        let owner = cachedir::staging_key(&name);
        if owner == Some(key) {
            let _ = extract::remove_tree(&path);
            continue;
        }
        let lock =
            owner.and_then(|k| File::open(root.join(LOCKS).join(cachedir::lock_name(k))).ok());
        let dead = match lock {
            Some(lock) => sys::flock(lock.as_fd(), true, true).unwrap_or(false),
            None => ent.metadata().is_ok_and(|m| older_than(&m, STALE_AFTER)),
        };
        if dead {
            let _ = extract::remove_tree(&path);
        }
    }
}

/// Removes private extraction dirs of ours whose run is gone: their `.lock` is free, or they
/// have none and are older than an hour. Dirs of other users and live runs are left alone. Best
/// effort: errors are ignored.
fn sweep_private(tmp: &Path) {
    let Ok(dir) = std::fs::read_dir(tmp) else {
        return;
    };
    let euid = sys::geteuid();
    for ent in dir.flatten() {
        if !ent
            .file_name()
            .as_bytes()
            .starts_with(PRIVATE_PREFIX.as_bytes())
        {
            continue;
        }
        let path = ent.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.is_dir() || m.uid() != euid {
            continue;
        }
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path.join(PRIVATE_LOCK));
        // Held while removing: a run that just made the dir takes another name when it cannot
        // get its lock (see `private`).
        let dead = match &lock {
            Ok(l) => sys::flock(l.as_fd(), true, true).unwrap_or(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => older_than(&m, STALE_AFTER),
            Err(_) => false,
        };
        if dead {
            let _ = extract::remove_tree(&path);
        }
    }
}

/// A private extraction under the temporary directory, for runs that cannot use the cache.
/// `why` is the warning (one line) saying why the cache is not used.
fn private(
    loc: &Locations,
    exe: &File,
    layers: &[LayerRef],
    key: &str,
    why: &str,
    owners: bool,
) -> Result<Prepared, CacheError> {
    sweep_private(&loc.tmp);
    let (dir, lock) = loop {
        let dir = loc.tmp.join(cachedir::private_name(key, &random_suffix()));
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("mkdir", &dir))?;
        let lock_path = dir.join(PRIVATE_LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path));
        let lock = match lock {
            Ok(l) => l,
            Err(e) => {
                let _ = extract::remove_tree(&dir);
                return Err(e);
            }
        };
        // A sweeper may have found the dir before we locked it: then it removes it (or did).
        let mine = sys::flock(lock.as_fd(), true, true).unwrap_or(false)
            && sys::fstat(lock.as_fd()).is_ok_and(|st| st.st_nlink > 0);
        if mine {
            break (dir, lock);
        }
    };
    eprintln!(
        "oci2bin: warning: {why}; extracting to {} for this run only",
        dir.display()
    );
    let rootfs = dir.join(ROOTFS);
    let scratch = dir.join(MNT);
    let catch = sig::catch().ok();
    let mut made = (|| {
        for d in [&rootfs, &scratch] {
            DirBuilder::new()
                .mode(0o700)
                .create(d)
                .map_err(io_err("mkdir", d))?;
        }
        extracted(extract::extract_layers_owned(exe, layers, &rootfs, owners))
    })();
    drop(catch);
    if let (Ok(()), Some(s)) = (&made, sig::pending()) {
        made = Err(CacheError::Interrupted(s));
    }
    if let Err(e) = made {
        let _ = extract::remove_tree(&dir);
        return Err(e);
    }
    Ok(Prepared {
        rootfs,
        scratch,
        cleanup: Some(dir),
        hold: vec![lock],
    })
}

/// 16 hex digits from the kernel's random source (pid and time if that fails).
pub(crate) fn random_suffix() -> String {
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
