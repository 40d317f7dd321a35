//! The content-addressed root filesystem cache, and [`prepare`], what the runtime calls to get a
//! root filesystem for an image.
//!
//! Layout and names: [`crate::cachedir`]. An entry is keyed by the image's layer digests, so a
//! config-only change of an image reuses the tree. A published entry is complete by construction,
//! so the warm path is a few `lstat`s, the entry's meta file opened and share-locked for the run
//! (so `oci2bin cache rm|prune` leave it alone), and its last-use time set.
//!
//! Two kinds of entry: a stacked one, the default, whose root is the overlay of the image's
//! layers, each extracted alone (in parallel, bounded by the CPUs) into the layer store once for
//! every image that has it; and a merged one, every layer applied in order into one tree, used
//! where stacking cannot show exactly that tree (see [`stackable`]), where the kernel's overlayfs
//! does not read our whiteouts ([`probe`]), and with `OCI2BIN_ROOTFS=merged`. Layers are
//! extracted and published under a lock of their own exactly as merged entries are.
//!
//! Ownership: the cache is only written when it belongs to us (or would be created in a
//! directory of ours, or a sticky root-owned one like /tmp), so `sudo ./image` with a user's
//! `XDG_CACHE_HOME` creates nothing there. An entry that is a symlink, not a directory or owned
//! by someone else is reported in one line and not used; the run then extracts privately.
//!
//! Private extractions live in `$TMPDIR/oci2bin-<key12>-<rand>/`, whose `.lock` the run holds;
//! cold starts remove those whose owner is gone. SIGINT/SIGTERM/SIGHUP/SIGQUIT during an
//! extraction stop it, remove the partial tree and return [`CacheError::Interrupted`].

use crate::cachedir::{
    self, LAYERS, LAYER_INFO, LAYER_TREE, LOCKS, META, MNT, PRIVATE_LOCK, PRIVATE_PREFIX, ROOTFS,
    STACK_FIX, STACK_LIST, SUBDIRS, TMP,
};
use crate::extract::{self, ErrorKind, ExtractError, Extractor, LayerInfo, Whiteouts};
use crate::format::{LayerRef, Runtime};
use crate::stack::{Found, Stack};
use crate::sys::fs as sys;
use crate::sys::{ns, sig};
use std::cell::RefCell;
use std::ffi::{CString, OsStr};
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

/// The longest `lowerdir=` value a stacked entry may need where the kernel lacks `lowerdir+`:
/// legacy mount(2) takes one page of options, which also hold the upper and work directories.
const MAX_LOWERDIR: usize = 3000;
/// Most lower layers one overlay takes (overlayfs's `OVL_MAX_STACK`), through `lowerdir+`.
const MAX_LOWERS: usize = 500;

/// Whether the kernel takes overlay lowers one by one (`lowerdir+`, Linux 6.8), so an entry's
/// layers are bounded by [`MAX_LOWERS`] rather than by one page of mount options.
pub(crate) fn lowerdir_plus() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    crate::seccomp::kernel_version(release.trim()).is_some_and(|v| v >= (6, 8))
}

/// A root filesystem ready for a run.
#[derive(Debug)]
pub struct Prepared {
    /// the image's tree: one merged directory or its layers, topmost first (read-only use: the
    /// runtime puts a private overlay on it)
    pub rootfs: Stack,
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
    /// What a layer extraction in a child process said (the text of its error).
    #[error("{0}")]
    Layer(String),
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
fn extracted<T>(r: Result<T, ExtractError>) -> Result<T, CacheError> {
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
    /// Stack the image's layers from the layer store where that shows the merged tree; false
    /// (`OCI2BIN_ROOTFS=merged`) always extracts merged trees.
    pub layers: bool,
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
            layers: var("OCI2BIN_ROOTFS").is_none_or(|v| v != "merged"),
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
    c.map = map;
    c.layers = loc.layers;
    if let Some(p) = c.warm(rt) {
        return Ok(p);
    }
    let cold = c.cold(loc, exe, rt);
    durable::flush_later(c.unsynced.take());
    match cold {
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
    /// Published by an earlier boot and maybe not all on disk ([`durable`]): under its lock, move
    /// it aside and make it again.
    Stale,
    /// Something else is there: the warning saying what, and how to fix it.
    Bad(String),
}

/// One layer of a stacked entry: its directory in the layer store.
struct LayerDir<'l> {
    layer: &'l LayerRef,
    key: String,
    dir: PathBuf,
}

impl LayerDir<'_> {
    fn tree(&self) -> PathBuf {
        self.dir.join(LAYER_TREE)
    }
}

/// The paths of one entry.
struct Cache<'a> {
    root: &'a Path,
    key: &'a str,
    entry: PathBuf,
    meta: PathBuf,
    /// The stacked entry and its meta file.
    stack: PathBuf,
    stack_meta: PathBuf,
    mnt: PathBuf,
    euid: u32,
    /// Extract with the layers' owners (a mapped entry).
    owners: bool,
    /// The id map of a mapped entry (part of its layers' keys).
    map: Option<&'a str>,
    /// Try a stacked entry first ([`Locations::layers`]).
    layers: bool,
    /// Directories this start published marked as not flushed yet: flushed when it is done.
    unsynced: RefCell<Vec<PathBuf>>,
}

impl<'a> Cache<'a> {
    fn new(root: &'a Path, key: &'a str) -> Cache<'a> {
        let name = cachedir::entry_name(key);
        let stack = cachedir::stack_name(key);
        Cache {
            root,
            key,
            entry: root.join(ROOTFS).join(&name),
            meta: root.join(META).join(&name),
            stack: root.join(ROOTFS).join(&stack),
            stack_meta: root.join(META).join(&stack),
            mnt: root.join(MNT),
            euid: sys::geteuid(),
            owners: false,
            map: None,
            layers: false,
            unsynced: RefCell::default(),
        }
    }

    fn ours(&self, m: &Metadata) -> bool {
        m.is_dir() && m.uid() == self.euid
    }

    fn prepared(&self, rootfs: Stack, meta: File) -> Prepared {
        Prepared {
            rootfs,
            scratch: self.mnt.clone(),
            cleanup: None,
            hold: vec![meta],
        }
    }

    /// The image's layers in the layer store, topmost first, each once: a layer that comes again
    /// higher up re-applies all it has, so its lower copy changes nothing (and overlayfs takes a
    /// directory only once).
    fn layer_dirs<'l>(&self, rt: &'l Runtime) -> Vec<LayerDir<'l>> {
        let mut out: Vec<LayerDir<'l>> = Vec::new();
        for layer in rt.layers.iter().rev() {
            let key = cachedir::layer_key(layer, self.map);
            if !out.iter().any(|l| l.key == key) {
                let dir = self.root.join(LAYERS).join(cachedir::layer_name(&key));
                out.push(LayerDir { layer, key, dir });
            }
        }
        out
    }

    /// The warm path: every directory involved exists and is ours, the entry (stacked, else
    /// merged) is published. `None` sends the caller down the cold path, which creates or
    /// reports what is missing.
    fn warm(&self, rt: &Runtime) -> Option<Prepared> {
        let ours = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| self.ours(&m));
        // Checking meta/ rejects a cache of another user (e.g. ours run by root) before anything
        // is created in it.
        if !ours(&self.root.join(META)) || !ours(&self.mnt) {
            return None;
        }
        if self.layers {
            if let Some(p) = self.warm_stack(rt) {
                return Some(p);
            }
        }
        // A missing entry goes cold without a meta file made for it (the cold path makes one).
        if matches!(self.entry_state(), EntryState::Missing) {
            return None;
        }
        let meta = open_meta(&self.meta, self.euid).ok()?;
        if !matches!(self.entry_state(), EntryState::Ready) {
            return None;
        }
        record(&meta, rt);
        Some(self.prepared(Stack::from(self.entry.clone()), meta))
    }

    /// The warm path of a stacked entry: the entry and every layer directory are ours.
    fn warm_stack(&self, rt: &Runtime) -> Option<Prepared> {
        if !matches!(self.state(&self.stack, "entry"), EntryState::Ready) {
            return None;
        }
        let meta = open_meta(&self.stack_meta, self.euid).ok()?;
        let trees = self.stacked_trees(rt)?;
        record(&meta, rt);
        Some(self.prepared(trees, meta))
    }

    /// The layer trees of a published stacked entry, `None` unless it and all of them are there
    /// (checked after its meta file is held: `cache rm` removes it under that lock).
    fn stacked_trees(&self, rt: &Runtime) -> Option<Stack> {
        if !matches!(self.state(&self.stack, "entry"), EntryState::Ready) {
            return None;
        }
        let mut trees = Vec::with_capacity(rt.layers.len() + 1);
        let fix = self.stack.join(STACK_FIX);
        if std::fs::symlink_metadata(&fix).is_ok() {
            trees.push(fix);
        }
        for l in self.layer_dirs(rt) {
            let tree = l.tree();
            if !std::fs::symlink_metadata(&tree).is_ok_and(|m| self.ours(&m))
                || durable::stale(&l.dir)
            {
                return None;
            }
            trees.push(tree);
        }
        Some(Stack(trees))
    }

    fn entry_state(&self) -> EntryState {
        self.state(&self.entry, "entry")
    }

    /// The state of an entry or a layer directory (`what` names it in messages).
    fn state(&self, path: &Path, what: &str) -> EntryState {
        let m = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return EntryState::Missing,
            Err(e) => {
                let p = path.display();
                return EntryState::Bad(format!("cache {what} {p} cannot be read ({e}); not used"));
            }
        };
        let (p, key) = (path.display(), self.key);
        let rm = match what {
            "entry" => format!("remove it with `oci2bin cache rm {key}`"),
            _ => format!("remove it with `rm -r {p}`"),
        };
        if m.file_type().is_symlink() {
            EntryState::Bad(format!("cache {what} {p} is a symlink; not used ({rm})"))
        } else if !m.is_dir() {
            EntryState::Bad(format!(
                "cache {what} {p} is not a directory; not used ({rm})"
            ))
        } else if m.uid() != self.euid {
            let root = self.root.display();
            EntryState::Bad(format!(
                "cache {what} {p} is owned by uid {}, not you; not used (remove it with `sudo \
                 oci2bin cache --cache-dir {root} rm {key}`)",
                m.uid()
            ))
        } else if path != self.entry && durable::stale(path) {
            // A merged entry is a root file system: it carries no mark, it was flushed.
            EntryState::Stale
        } else {
            EntryState::Ready
        }
    }

    /// Publishes a stacked entry's staging tree marked as not flushed yet ([`durable`]), or
    /// flushed first where the boot is unknown.
    fn publish_marked(&self, staging: &Path, entry: &Path) -> Result<(), CacheError> {
        if !durable::mark(staging).map_err(io_err("write", staging))? {
            return publish(staging, entry);
        }
        rename_into(staging, entry)?;
        self.unsynced.borrow_mut().push(entry.to_path_buf());
        Ok(())
    }

    /// Moves a stale directory (see [`EntryState::Stale`]) aside, under its lock, where
    /// [`clean_stale`] removes it as a crashed staging tree of `key`.
    fn discard(&self, dir: &Path, key: &str) -> Result<(), Cold> {
        let aside = self
            .root
            .join(TMP)
            .join(format!("{key}-{}", random_suffix()));
        std::fs::rename(dir, &aside).map_err(fallback("rename", dir))?;
        clean_stale(self.root, &[key]);
        Ok(())
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
        if self.layers {
            if let Some(p) = self.cold_stack(rt, exe)? {
                return Ok(p);
            }
        }
        let meta = open_meta(&self.meta, self.euid).map_err(fallback("open", &self.meta))?;
        match self.entry_state() {
            EntryState::Ready => return Ok(self.used(meta, rt)),
            EntryState::Bad(why) => return Err(Cold::Fallback(why)),
            EntryState::Missing | EntryState::Stale => {}
        }
        // From here on a stop signal removes what we wrote, then kills us as it would have.
        let catch = sig::catch().ok();
        let lock = self.lock(rt)?;
        match self.entry_state() {
            // Published by the process we waited for.
            EntryState::Ready => return Ok(self.used(meta, rt)),
            EntryState::Bad(why) => return Err(Cold::Fallback(why)),
            EntryState::Missing | EntryState::Stale => {}
        }
        clean_stale(self.root, &[self.key]);
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
            EntryState::Missing | EntryState::Stale => Err(Cold::Fallback(format!(
                "cache entry {} vanished after publishing; not used",
                self.entry.display()
            ))),
        }
    }

    fn used(&self, meta: File, rt: &Runtime) -> Prepared {
        record(&meta, rt);
        self.prepared(Stack::from(self.entry.clone()), meta)
    }

    /// The cold path of a stacked entry: the layers the store lacks are extracted (in
    /// parallel), then, if they stack exactly as the merged tree, the entry is published.
    /// `Ok(None)`: they do not (or the kernel cannot stack them), make a merged entry.
    fn cold_stack(&self, rt: &Runtime, exe: &File) -> Result<Option<Prepared>, Cold> {
        let Some(form) = probe::whiteouts(self.root, self.map.is_some()) else {
            return Ok(None);
        };
        // Looked at before anything is written for it.
        match self.state(&self.stack, "entry") {
            EntryState::Bad(why) => return Err(Cold::Fallback(why)),
            EntryState::Ready | EntryState::Missing | EntryState::Stale => {}
        }
        let meta =
            open_meta(&self.stack_meta, self.euid).map_err(fallback("open", &self.stack_meta))?;
        if let Some(trees) = self.stacked_trees(rt) {
            record(&meta, rt);
            return Ok(Some(self.prepared(trees, meta)));
        }
        let catch = sig::catch().ok();
        let layers = self.layer_dirs(rt);
        let mut tries = 0;
        let layer_locks = loop {
            self.extract_layers(exe, rt, &layers, form)?;
            if let Some(held) = self.hold_layers(rt, &layers)? {
                break held;
            }
            tries += 1;
            if tries == 3 {
                return Err(Cold::Fallback(
                    "the image's layers keep being removed from the cache; not used".into(),
                ));
            }
        };
        let infos: Vec<Option<LayerInfo>> = layers
            .iter()
            .map(|l| {
                let b = std::fs::read(l.dir.join(LAYER_INFO)).ok()?;
                LayerInfo::parse(&b)
            })
            .collect();
        let trees = Stack(layers.iter().map(LayerDir::tree).collect());
        let Ok(fixes) = stackable(&trees, &infos, form, lowerdir_plus()) else {
            return Ok(None);
        };
        // The entry: the names of its layers, bottom first, under the entry's lock (so no
        // cleaner takes its staging directory for a crashed one's).
        let lock = self.lock(rt)?;
        let state = self.state(&self.stack, "entry");
        if matches!(state, EntryState::Stale) {
            self.discard(&self.stack, self.key)?;
        }
        if !matches!(state, EntryState::Ready) {
            let staging = self
                .root
                .join(TMP)
                .join(format!("{}-{}", self.key, random_suffix()));
            let list: String = layers
                .iter()
                .rev()
                .map(|l| cachedir::layer_name(&l.key) + "\n")
                .collect();
            let made = DirBuilder::new()
                .mode(0o700)
                .create(&staging)
                .and_then(|()| std::fs::write(staging.join(STACK_LIST), list))
                .and_then(|()| match fixes.is_empty() {
                    true => Ok(()),
                    false => make_fix(&staging.join(STACK_FIX), &fixes),
                })
                .map_err(io_err("write", &staging))
                .and_then(|()| self.publish_marked(&staging, &self.stack));
            if made.is_err() {
                let _ = extract::remove_tree(&staging);
            }
            made.map_err(Cold::Failed)?;
        }
        drop(lock);
        drop(layer_locks);
        drop(catch);
        if let Some(s) = sig::pending() {
            return Err(Cold::Failed(CacheError::Interrupted(s)));
        }
        match self.stacked_trees(rt) {
            Some(trees) => {
                record(&meta, rt);
                Ok(Some(self.prepared(trees, meta)))
            }
            None => Err(Cold::Fallback(format!(
                "cache entry {} or its layers vanished after publishing; not used",
                self.stack.display()
            ))),
        }
    }

    /// Extracts the layers the store lacks: those no one else is extracting at once, in parallel,
    /// then those another process was extracting, once it is done, if it did not finish them.
    fn extract_layers(
        &self,
        exe: &File,
        rt: &Runtime,
        layers: &[LayerDir<'_>],
        form: Whiteouts,
    ) -> Result<(), Cold> {
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for l in layers {
            match self.state(&l.dir, "layer") {
                EntryState::Ready => continue,
                EntryState::Bad(why) => return Err(Cold::Fallback(why)),
                EntryState::Missing | EntryState::Stale => {}
            }
            let (lock, path) = self.open_lock(&l.key)?;
            if !sys::flock(lock.as_fd(), true, true).map_err(fallback("flock", &path))? {
                theirs.push((l, lock, path));
                continue;
            }
            match self.state(&l.dir, "layer") {
                EntryState::Ready => {}
                EntryState::Bad(why) => return Err(Cold::Fallback(why)),
                EntryState::Stale => {
                    self.discard(&l.dir, &l.key)?;
                    mine.push((l, lock))
                }
                EntryState::Missing => mine.push((l, lock)),
            }
        }
        self.extract_locked(exe, mine, form)?;
        for (l, lock, path) in theirs {
            self.wait(&lock, true, &path, &l.dir, rt)?;
            match self.state(&l.dir, "layer") {
                EntryState::Ready => {}
                EntryState::Bad(why) => return Err(Cold::Fallback(why)),
                EntryState::Stale => {
                    self.discard(&l.dir, &l.key)?;
                    self.extract_locked(exe, vec![(l, lock)], form)?
                }
                EntryState::Missing => self.extract_locked(exe, vec![(l, lock)], form)?,
            }
        }
        Ok(())
    }

    /// Takes a shared lock on every layer of the entry, to hold until the entry that names them
    /// is published: `oci2bin cache prune` removes a layer no entry names only under its
    /// exclusive lock. `None` when one was removed meanwhile (extract again). Waits only for
    /// exclusive holders, which never wait for a lock themselves (an extractor, a prune), so
    /// starts sharing layers cannot deadlock.
    fn hold_layers(
        &self,
        rt: &Runtime,
        layers: &[LayerDir<'_>],
    ) -> Result<Option<Vec<File>>, Cold> {
        let mut held = Vec::with_capacity(layers.len());
        for l in layers {
            let (lock, path) = self.open_lock(&l.key)?;
            self.wait(&lock, false, &path, &l.dir, rt)?;
            match self.state(&l.dir, "layer") {
                EntryState::Ready => held.push(lock),
                EntryState::Bad(why) => return Err(Cold::Fallback(why)),
                EntryState::Missing | EntryState::Stale => return Ok(None),
            }
        }
        Ok(Some(held))
    }

    /// Extracts layers whose locks we hold, each alone into a staging directory, up to one at a
    /// time per CPU; then flushes them to disk (one syncfs for all) and publishes them. On any
    /// failure, none is published.
    fn extract_locked(
        &self,
        exe: &File,
        jobs: Vec<(&LayerDir<'_>, File)>,
        form: Whiteouts,
    ) -> Result<(), Cold> {
        if jobs.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = jobs.iter().map(|(l, _)| l.key.as_str()).collect();
        clean_stale(self.root, &keys);
        let tmp = self.root.join(TMP);
        let stagings: Vec<PathBuf> = jobs
            .iter()
            .map(|(l, _)| tmp.join(format!("{}-{}", l.key, random_suffix())))
            .collect();
        let workers = sys::cpus().min(jobs.len());
        let mut marked = false;
        let mut result = if workers > 1 {
            self.extract_forked(exe, &jobs, &stagings, form, workers)
        } else {
            let mut each = jobs.iter().zip(&stagings);
            each.try_for_each(|((l, _), s)| self.extract_one(exe, l, form, s))
        };
        if result.is_ok() {
            result = match sig::pending() {
                Some(s) => Err(CacheError::Interrupted(s)),
                None => mark_or_flush(&stagings, &tmp).map(|m| marked = m),
            };
        }
        for ((l, _), staging) in jobs.iter().zip(&stagings) {
            if result.is_ok() {
                result = rename_into(staging, &l.dir);
                if result.is_ok() && marked {
                    self.unsynced.borrow_mut().push(l.dir.clone());
                }
            }
            if result.is_err() {
                let _ = extract::remove_tree(staging);
            }
        }
        // The locks go with `jobs`, after the layers are published.
        drop(jobs);
        result.map_err(Cold::Failed)
    }

    /// Runs [`Cache::extract_one`] for each job in a child process of its own, `workers` at a
    /// time (processes rather than threads: they cost the loader no thread runtime, and leave it
    /// single-threaded for the user namespace it enters next). A child says why it failed on a
    /// pipe; the first failure stops the others, as does a stop signal (passed on to them).
    fn extract_forked(
        &self,
        exe: &File,
        jobs: &[(&LayerDir<'_>, File)],
        stagings: &[PathBuf],
        form: Whiteouts,
        workers: usize,
    ) -> Result<(), CacheError> {
        let mut running: Vec<(ns::pid_t, File)> = Vec::new();
        let (mut next, mut failed, mut stopping) = (0, None, false);
        loop {
            while failed.is_none() && !stopping && running.len() < workers && next < jobs.len() {
                let (r, w) = ns::pipe().map_err(io_err("pipe", &stagings[next]))?;
                match ns::fork() {
                    Ok(ns::Forked::Child) => {
                        drop(r);
                        // Never outlive a loader killed with -9: its staging is swept later.
                        let _ = ns::kill_with_parent();
                        let code = match self.extract_one(exe, jobs[next].0, form, &stagings[next])
                        {
                            Ok(()) => 0,
                            Err(e) => {
                                let _ = File::from(w).write_all(e.to_string().as_bytes());
                                1
                            }
                        };
                        ns::exit_now(code)
                    }
                    Ok(ns::Forked::Parent(pid)) => running.push((pid, File::from(r))),
                    Err(e) => failed = Some(io_err("fork", &stagings[next])(e)),
                }
                next += 1;
            }
            if running.is_empty() {
                break;
            }
            let mut ended = None;
            for (i, (pid, _)) in running.iter().enumerate() {
                if let Some((_, exit)) = ns::reap(*pid).map_err(io_err("wait", &stagings[0]))? {
                    ended = Some((i, exit));
                    break;
                }
            }
            let Some((i, exit)) = ended else {
                if !stopping && (sig::pending().is_some() || failed.is_some()) {
                    stopping = true;
                    for (pid, _) in &running {
                        let _ = ns::kill(*pid, libc::SIGTERM);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let (_, mut pipe) = running.swap_remove(i);
            if exit != ns::Exit::Code(0) && failed.is_none() {
                let mut why = String::new();
                let _ = pipe.read_to_string(&mut why);
                if why.is_empty() {
                    why = format!("layer extraction ended with status {}", exit.code());
                }
                failed = Some(CacheError::Layer(why));
            }
        }
        match (sig::pending(), failed) {
            (Some(s), _) => Err(CacheError::Interrupted(s)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    }

    /// Extracts one layer alone into the new staging directory `staging` (`tree` and `info`);
    /// removes it on failure.
    fn extract_one(
        &self,
        exe: &File,
        l: &LayerDir<'_>,
        form: Whiteouts,
        staging: &Path,
    ) -> Result<(), CacheError> {
        let tree = staging.join(LAYER_TREE);
        let r = (|| {
            for d in [staging, &tree] {
                DirBuilder::new()
                    .mode(0o700)
                    .create(d)
                    .map_err(io_err("mkdir", d))?;
            }
            let mut x = Extractor::for_layer(&tree, form)
                .map_err(io_err("open", &tree))?
                .with_owners(self.owners);
            extracted(x.apply_layer(exe, l.layer))?;
            let info = extracted(x.finish_layer())?;
            let path = staging.join(LAYER_INFO);
            std::fs::write(&path, info.to_bytes()).map_err(io_err("write", &path))
        })();
        if r.is_err() {
            let _ = extract::remove_tree(staging);
        }
        r
    }

    /// Opens (creating) the extraction lock of `key`.
    fn open_lock(&self, key: &str) -> Result<(File, PathBuf), Cold> {
        let path = self.root.join(LOCKS).join(cachedir::lock_name(key));
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(fallback("open", &path))?;
        Ok((lock, path))
    }

    /// Takes the entry's extraction lock, saying after [`SAY_WAIT_AFTER`] what it waits for.
    fn lock(&self, rt: &Runtime) -> Result<File, Cold> {
        let (lock, path) = self.open_lock(self.key)?;
        self.wait(&lock, true, &path, &self.entry, rt)?;
        Ok(lock)
    }

    /// Takes `lock`, exclusive or shared (at `path`, guarding the extraction into `into`), saying after
    /// [`SAY_WAIT_AFTER`] what it waits for. Polls rather than blocks, so a stop signal ends the
    /// wait.
    fn wait(
        &self,
        lock: &File,
        exclusive: bool,
        path: &Path,
        into: &Path,
        rt: &Runtime,
    ) -> Result<(), Cold> {
        let start = Instant::now();
        let (mut nap, mut said) = (Duration::from_millis(10), false);
        while !sys::flock(lock.as_fd(), exclusive, true).map_err(fallback("flock", path))? {
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
                    into.display(),
                    path.display()
                );
                said = true;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(100));
        }
        Ok(())
    }
}

/// A directory of an entry's fix layer (the topmost lower): where, and the layer directory
/// whose attributes it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    pub rel: PathBuf,
    pub from: PathBuf,
}

/// Whether the overlay of `trees` (an image's layers, topmost first, with what their
/// extraction found) can show exactly the tree applying the layers in order gives, and the
/// directories a fix layer on top needs for it (`Err` says why it cannot, for specs: the
/// caller makes a merged entry whatever the reason).
///
/// It cannot when a layer links to a file it lacks, makes an opaque root above another layer,
/// or made a directory without an entry where the layers below have a non-directory (the
/// merged extraction would go through a symlink there, or fail), or when the layers are too
/// many for one mount (`lowerdir_plus`: the kernel takes them one by one). The fix layer gives the right attributes to directories whose topmost
/// copy a layer made without an entry (the merged tree keeps those of the layer below that
/// described it), and merges with directories holding whiteouts that no other layer has
/// (overlayfs would list the whiteouts there; with xattr whiteouts, which it lists in the lowest
/// layer of a merged directory too, such a directory cannot be stacked).
pub fn stackable(
    trees: &Stack,
    infos: &[Option<LayerInfo>],
    form: Whiteouts,
    lowerdir_plus: bool,
) -> Result<Vec<Fix>, &'static str> {
    let dirs = trees.dirs();
    let Some(infos) = infos.iter().map(Option::as_ref).collect::<Option<Vec<_>>>() else {
        return Err("a layer without info");
    };
    let last = infos.len().saturating_sub(1);
    let rel = |d: &[u8]| PathBuf::from(OsStr::from_bytes(d));
    for (i, info) in infos.iter().enumerate() {
        if info.outside_link {
            return Err("a hard link to a lower layer");
        }
        if info.opaque_root && i != last {
            return Err("an opaque root above another layer");
        }
        let below = Stack(dirs[i + 1..].to_vec());
        for (d, _) in &info.implicit_dirs {
            if let Found::NonDir(..) = below.lookup(rel(d)) {
                return Err("a directory without an entry made over a non-directory");
            }
        }
    }
    // Fixing attributes needs a fix layer: one more lower.
    let fits = match lowerdir_plus {
        true => trees.0.len() < MAX_LOWERS,
        false => trees.lowerdir().len() + 128 <= MAX_LOWERDIR,
    };
    if !fits {
        return Err("too many layers for one mount");
    }
    // Directories each layer made without describing them.
    let undescribed: Vec<Vec<&[u8]>> = infos
        .iter()
        .map(|i| {
            let d = i.implicit_dirs.iter().filter(|(_, described)| !described);
            d.map(|(d, _)| d.as_slice()).collect()
        })
        .collect();
    // For a directory of the stack: its topmost copy, and the copy the merged tree takes its
    // attributes from (the topmost one a layer described, else the bottom one).
    let copies = |d: &Path| -> Option<(PathBuf, PathBuf)> {
        let Found::Dir(list, _) = trees.lookup(d) else {
            return None;
        };
        let bytes = d.as_os_str().as_bytes();
        let described = |p: &&PathBuf| {
            let k = dirs.iter().position(|t| t.join(d) == **p);
            k.is_none_or(|k| !undescribed[k].contains(&bytes))
        };
        let right = list.iter().find(described).or(list.last())?.clone();
        Some((list[0].clone(), right))
    };
    let mut fixes: Vec<Fix> = Vec::new();
    let need = |d: &Path, fixes: &mut Vec<Fix>| {
        for a in d.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            match copies(a) {
                Some((_, from)) if !fixes.iter().any(|f| f.rel == a) => fixes.push(Fix {
                    rel: a.to_path_buf(),
                    from,
                }),
                _ => {}
            }
        }
    };
    for info in &infos {
        for (d, _) in info
            .implicit_dirs
            .iter()
            .filter(|(_, described)| !described)
        {
            let d = rel(d);
            if copies(&d).is_some_and(|(top, right)| top != right) {
                need(&d, &mut fixes);
            }
        }
        for d in info.whiteout_dirs.iter().filter(|d| !d.is_empty()) {
            let d = rel(d);
            if let Found::Dir(list, _) = trees.lookup(&d) {
                if list.len() > 1 {
                    continue;
                }
                if form != Whiteouts::CharDev {
                    // Overlayfs lists xattr whiteouts in the lowest layer of a merged directory.
                    return Err("a whiteout in a directory merged with no layer");
                }
                need(&d, &mut fixes);
            }
        }
    }
    for f in &fixes {
        // Attributes a fix does not copy.
        let names = CString::new(f.from.as_os_str().as_bytes())
            .ok()
            .and_then(|p| sys::llistxattr(&p).ok())
            .unwrap_or_default();
        let own = |n: &&[u8]| n.is_empty() || n.starts_with(crate::stack::OVERLAY_XATTR_PREFIX);
        if !names.split(|&c| c == 0).all(|n| own(&n)) {
            return Err("a directory with extended attributes to fix");
        }
    }
    Ok(fixes)
}

/// Makes the fix layer `dir` (which must not exist): `fixes`' directories with the owners,
/// modes and times of the layer directories they stand for.
pub(crate) fn make_fix(dir: &Path, fixes: &[Fix]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    DirBuilder::new().mode(0o700).create(dir)?;
    for f in fixes {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(&f.rel))?;
    }
    // Deepest first: a parent's mode may forbid reaching its children once set.
    let depth = |f: &Fix| f.rel.components().count();
    let deepest = fixes.iter().map(depth).max().unwrap_or(0);
    let by_depth = (1..=deepest)
        .rev()
        .flat_map(|n| fixes.iter().filter(move |f| depth(f) == n));
    for f in by_depth {
        let m = std::fs::symlink_metadata(&f.from)?;
        let p = dir.join(&f.rel);
        let made = std::fs::symlink_metadata(&p)?;
        if (made.uid(), made.gid()) != (m.uid(), m.gid()) {
            std::os::unix::fs::lchown(&p, Some(m.uid()), Some(m.gid()))?;
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        File::open(&p)?.set_times(
            std::fs::FileTimes::new()
                .set_accessed(m.accessed()?)
                .set_modified(m.modified()?),
        )?;
    }
    Ok(())
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
    rename_into(staging, entry)
}

/// Marks the layers' staging trees as not flushed yet ([`durable`]); where the boot is unknown,
/// flushes them now instead (one syncfs for all) and says so with `false`.
fn mark_or_flush(stagings: &[PathBuf], tmp: &Path) -> Result<bool, CacheError> {
    let mut marked = true;
    for s in stagings {
        marked &= durable::mark(s).map_err(io_err("write", s))?;
    }
    if !marked {
        File::open(tmp)
            .and_then(|d| sys::syncfs(d.as_fd()))
            .map_err(io_err("sync", tmp))?;
    }
    Ok(marked)
}

/// The rename of [`publish`], for a tree already flushed to disk (or marked, see [`durable`]).
fn rename_into(staging: &Path, entry: &Path) -> Result<(), CacheError> {
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

/// Removes staging trees left by crashed runs: those of `keys` (we hold their locks, so nobody
/// else is extracting them), those whose entry lock nobody holds, and lockless ones older than an
/// hour. Best effort: errors are ignored.
fn clean_stale(root: &Path, keys: &[&str]) {
    let Ok(dir) = std::fs::read_dir(root.join(TMP)) else {
        return;
    };
    for ent in dir.flatten() {
        let name = ent.file_name();
        let name = name.to_string_lossy();
        let path = ent.path();
        let owner = cachedir::staging_key(&name);
        if owner.is_some_and(|o| keys.contains(&o)) {
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
        rootfs: Stack::from(rootfs),
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

mod durable;
mod probe;

#[cfg(test)]
mod tests;
