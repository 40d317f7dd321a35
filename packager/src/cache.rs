//! `oci2bin cache ls|rm|prune`: housekeeping of the root filesystem cache the loader fills, by
//! the naming rules of [`loader::cachedir`].
//!
//! Entries are merged trees (`-x2`) or stacked ones (`-s1`, a list of layers in `layers/` and
//! maybe a small fix layer): both are listed, held and removed alike. The layers are shared
//! between entries (as Docker's are between images): `ls` lists them with the entries that name
//! them, and a layer goes when no entry names it any more (`rm` of its last entry, or `prune`).
//!
//! Safety with running containers: every run holds `flock(LOCK_SH)` on its entry's meta file, so
//! removal takes `LOCK_EX` without blocking and refuses (rm) or skips (prune) an entry in use. An
//! entry is first renamed into `tmp/`, so it disappears at once and a half-removed tree is never
//! used (the loader sweeps such leftovers too), then its directories are made writable (images
//! have `0555` ones) and the tree is removed without following symlinks.
//!
//! A layer is used by a run through its entry, whose meta file the run holds; a start building an
//! entry holds the lock file of each of its layers (`locks/<lkey>.lock`) until the entry is
//! published. So a layer is removed only under `LOCK_EX` on its lock file, taken without waiting,
//! and only if, under that lock, no entry in `rootfs/` names it.
//!
//! Entries a run extracted with a subordinate id range (`--userns auto|map|keep-id`) hold files
//! owned by those ids, which the host user cannot touch: such a tree is removed by a copy of this
//! program in a user namespace that maps the range again ([`remove_mapped`]), as root there. So
//! are layers extracted that way (their keys include the id map).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use loader::cachedir::{self, LAYERS, LOCKS, META, ROOTFS, STACK_LIST, TMP};
use rustix::fs::FlockOperation;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no cache entry matches {0}")]
    NoMatch(String),
    #[error("{sel} is ambiguous: it matches {}", .candidates.join(", "))]
    Ambiguous {
        sel: String,
        candidates: Vec<String>,
    },
    #[error("{0} is not a cache entry (give a key, a key prefix of at least 4 hex digits, or the entry's path)")]
    BadSelector(String),
    #[error("entry {0} is in use by a running container")]
    InUse(String),
    #[error("entry {key} is owned by uid {uid}, not you: remove it as root (`sudo oci2bin cache --cache-dir {} rm {key}`)", root.display())]
    Foreign {
        key: String,
        uid: u32,
        root: PathBuf,
    },
    #[error("layer {key} is owned by uid {uid}, not you: remove it as root (`sudo oci2bin cache --cache-dir {} prune`)", root.display())]
    ForeignLayer {
        key: String,
        uid: u32,
        root: PathBuf,
    },
    /// Its lock is held: it is being extracted, or an entry naming it is being made.
    #[error("layer {0} is being extracted")]
    LayerBusy(String),
    /// An entry names it (published since the layer was listed).
    #[error("layer {key} is used by entry {entry}")]
    LayerNamed { key: String, entry: String },
}

pub type Result<T> = std::result::Result<T, CacheError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `$XDG_CACHE_HOME/oci2bin`, else `$HOME/.cache/oci2bin`: where the loader puts it.
pub fn default_root() -> Option<PathBuf> {
    cachedir::root_from_vars(|k| std::env::var_os(k))
}

/// What a listed directory is, and whether it can be removed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    /// A run holds its meta file.
    InUse,
    /// Made by an older loader (another suffix): never used again.
    OldFormat,
    /// Owned by another uid: the loader does not use it.
    Foreign(u32),
    /// A symlink where an entry should be: the loader does not use it.
    Symlink,
    /// Neither a directory nor a symlink.
    NotDir,
    /// A staging tree whose extraction is gone (crashed or killed).
    Incomplete,
    /// A staging tree being extracted right now; a layer whose lock is held (being extracted,
    /// or an entry naming it is being made).
    Extracting,
    /// A layer some entry names.
    Used,
    /// A layer no entry names: `prune` removes it.
    Unused,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Ready => f.write_str("ready"),
            State::InUse => f.write_str("in use"),
            State::OldFormat => f.write_str("old format"),
            State::Foreign(uid) => write!(f, "foreign owner uid {uid}"),
            State::Symlink => f.write_str("symlink"),
            State::NotDir => f.write_str("not a directory"),
            State::Incomplete => f.write_str("incomplete"),
            State::Extracting => f.write_str("extracting"),
            State::Used => f.write_str("used"),
            State::Unused => f.write_str("unused"),
        }
    }
}

/// What a listed directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In `rootfs/`.
    Entry,
    /// In `tmp/`: an entry or a layer being extracted, or a tree being removed.
    Staging,
    /// In `layers/`.
    Layer,
}

/// One entry (in `rootfs/`), staging tree (in `tmp/`) or layer (in `layers/`).
#[derive(Debug, Clone)]
pub struct Row {
    pub kind: Kind,
    /// The directory name (`<key>-x2`, `<key>-<rand>` for staging trees, `<key>-l1` for layers).
    pub name: String,
    pub key: String,
    pub path: PathBuf,
    /// Image names from the meta file (a layer's: from those of the entries naming it), first
    /// use first, without repeats.
    pub images: Vec<String>,
    pub image_ids: Vec<String>,
    /// Disk usage of this directory alone, hard links counted once.
    pub size: u64,
    /// The meta file's mtime, set by every run (a layer's: the latest of its entries').
    pub last_used: Option<SystemTime>,
    pub state: State,
    /// A stacked entry's layers (names in `layers/`), bottom first.
    pub layers: Vec<String>,
    /// A stacked entry: the disk usage of its layers, and of those another entry names too.
    pub layers_size: u64,
    pub shared_size: u64,
    /// A layer: the entries naming it.
    pub entries: Vec<String>,
}

impl Row {
    pub fn short_key(&self) -> &str {
        &self.key[..12]
    }

    pub fn is_staging(&self) -> bool {
        self.kind == Kind::Staging
    }

    /// What the image takes on disk: the entry and its layers, shared ones too.
    pub fn total_size(&self) -> u64 {
        self.size + self.layers_size
    }
}

/// What `rm` and `prune` did with one directory.
#[derive(Debug, Clone)]
pub enum Outcome {
    Removed(Row),
    Skipped(Row, String),
    Failed(Row, String),
}

/// A cache root and the uid looking at it.
pub struct Cache {
    pub root: PathBuf,
    euid: u32,
}

impl Cache {
    pub fn new(root: PathBuf) -> Cache {
        Cache {
            root,
            euid: rustix::process::geteuid().as_raw(),
        }
    }

    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    fn sub(&self, s: &str) -> PathBuf {
        self.root.join(s)
    }

    /// Why the loader would not use an entry or layer directory with metadata `m`, if it would
    /// not: a symlink, not a directory, or another user's.
    fn unusable(&self, m: &Metadata) -> Option<State> {
        if m.file_type().is_symlink() {
            Some(State::Symlink)
        } else if !m.is_dir() {
            Some(State::NotDir)
        } else if m.uid() != self.euid {
            Some(State::Foreign(m.uid()))
        } else {
            None
        }
    }

    /// Entries, sorted by name, then staging trees, then layers.
    pub fn list(&self) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for name in dir_names(&self.sub(ROOTFS))? {
            let Some((key, suffix)) = cachedir::split_entry_name(&name) else {
                continue;
            };
            let path = self.sub(ROOTFS).join(&name);
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let meta_path = self.sub(META).join(&name);
            let state = if let Some(bad) = self.unusable(&m) {
                bad
            } else if !cachedir::is_current_suffix(suffix) {
                State::OldFormat
            } else if busy(&meta_path) {
                State::InUse
            } else {
                State::Ready
            };
            let mut row = self.row(Kind::Entry, &name, key, path, &m, state);
            if m.is_dir() && may_stack(&name) {
                // For the listing only: removal reads the lists again, strictly.
                row.layers = stack_list(&row.path).ok().flatten().unwrap_or_default();
            }
            rows.push(row);
        }
        for name in dir_names(&self.sub(TMP))? {
            let Some(key) = cachedir::staging_key(&name) else {
                continue;
            };
            let path = self.sub(TMP).join(&name);
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let state = if busy(&self.lock_path(key)) {
                State::Extracting
            } else {
                State::Incomplete
            };
            let meta_name = cachedir::entry_name(key);
            let mut row = self.row(Kind::Staging, &meta_name, key, path, &m, state);
            row.name = name;
            row.last_used = None;
            rows.push(row);
        }
        let layers = self.layer_rows(&rows)?;
        // Each stacked entry's share of the layer store.
        let by_name: HashMap<&str, &Row> = layers.iter().map(|l| (l.name.as_str(), l)).collect();
        for r in &mut rows {
            for l in r.layers.iter().filter_map(|n| by_name.get(n.as_str())) {
                r.layers_size += l.size;
                if l.entries.len() > 1 {
                    r.shared_size += l.size;
                }
            }
        }
        rows.extend(layers);
        Ok(rows)
    }

    /// The layers in `layers/`, sorted by name, with the entries among `rows` that name them.
    fn layer_rows(&self, rows: &[Row]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        for name in dir_names(&self.sub(LAYERS))? {
            let Some((key, suffix)) = cachedir::split_entry_name(&name) else {
                continue;
            };
            let path = self.sub(LAYERS).join(&name);
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let users: Vec<&Row> = rows
                .iter()
                .filter(|r| r.kind == Kind::Entry && r.layers.contains(&name))
                .collect();
            let state = if let Some(bad) = self.unusable(&m) {
                bad
            } else if suffix != cachedir::LAYER_SUFFIX {
                State::OldFormat
            } else if users.iter().any(|r| r.state == State::InUse) {
                State::InUse
            } else if !users.is_empty() {
                State::Used
            } else if busy(&self.lock_path(key)) {
                State::Extracting
            } else {
                State::Unused
            };
            let mut row = Row {
                kind: Kind::Layer,
                name: name.clone(),
                key: key.to_string(),
                size: if m.is_dir() { disk_usage(&path) } else { 0 },
                path,
                images: Vec::new(),
                image_ids: Vec::new(),
                last_used: users.iter().filter_map(|r| r.last_used).max(),
                state,
                layers: Vec::new(),
                layers_size: 0,
                shared_size: 0,
                entries: users.iter().map(|r| r.name.clone()).collect(),
            };
            for u in users {
                push_new(&mut row.images, &u.images);
                push_new(&mut row.image_ids, &u.image_ids);
            }
            out.push(row);
        }
        Ok(out)
    }

    /// A row for `path`, with images and last use from the meta file of `meta_name`.
    fn row(
        &self,
        kind: Kind,
        meta_name: &str,
        key: &str,
        path: PathBuf,
        m: &Metadata,
        state: State,
    ) -> Row {
        let meta_path = self.sub(META).join(meta_name);
        let text = std::fs::read_to_string(&meta_path).unwrap_or_default();
        let (mut images, mut image_ids) = (Vec::new(), Vec::new());
        for (id, name) in cachedir::parse_meta(&text) {
            if !name.is_empty() && !images.iter().any(|n| n == name) {
                images.push(name.to_string());
            }
            if !image_ids.iter().any(|i| i == id) {
                image_ids.push(id.to_string());
            }
        }
        let last_used = std::fs::metadata(&meta_path)
            .and_then(|m| m.modified())
            .ok();
        Row {
            kind,
            name: meta_name.to_string(),
            key: key.to_string(),
            size: if m.is_dir() { disk_usage(&path) } else { 0 },
            path,
            images,
            image_ids,
            last_used,
            state,
            layers: Vec::new(),
            layers_size: 0,
            shared_size: 0,
            entries: Vec::new(),
        }
    }

    /// `locks/<key>.lock`: the extraction lock of an entry or a layer.
    fn lock_path(&self, key: &str) -> PathBuf {
        self.sub(LOCKS).join(cachedir::lock_name(key))
    }

    /// The entries `selectors` name: a key, a unique key prefix (at least 4 hex digits), an
    /// entry's directory name or its path.
    pub fn resolve(&self, rows: &[Row], selectors: &[String]) -> Result<Vec<Row>> {
        let mut out: Vec<Row> = Vec::new();
        for sel in selectors {
            let s = Path::new(sel.trim_end_matches('/'))
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let entries = rows.iter().filter(|r| r.kind == Kind::Entry);
            let found: Vec<&Row> = if cachedir::split_entry_name(s).is_some() {
                entries.filter(|r| r.name == s).collect()
            } else if s.len() >= 4 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
                let s = s.to_ascii_lowercase();
                entries.filter(|r| r.key.starts_with(&s)).collect()
            } else {
                return Err(CacheError::BadSelector(sel.clone()));
            };
            match found.as_slice() {
                [] => return Err(CacheError::NoMatch(sel.clone())),
                [r] => {
                    if !out.iter().any(|o| o.name == r.name) {
                        out.push((*r).clone());
                    }
                }
                many => {
                    return Err(CacheError::Ambiguous {
                        sel: sel.clone(),
                        candidates: many.iter().map(|r| r.name.clone()).collect(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Removes one entry (or staging tree), refusing one in use or owned by someone else.
    pub fn remove(&self, row: &Row) -> Result<()> {
        if row.kind == Kind::Layer {
            return self.remove_layer(row);
        }
        let m = match std::fs::symlink_metadata(&row.path) {
            // Removed by someone else meanwhile (another rm or prune, or a start's sweep).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(io_err("stat", &row.path))?,
        };
        if !m.is_dir() {
            // A symlink or file where an entry belongs: the link goes, never its target.
            std::fs::remove_file(&row.path).map_err(io_err("remove", &row.path))?;
            return self.remove_meta(row);
        }
        if m.uid() != self.euid && self.euid != 0 {
            return Err(CacheError::Foreign {
                key: row.key.clone(),
                uid: m.uid(),
                root: self.root.clone(),
            });
        }
        // Staging trees are guarded by the extraction lock, entries by the meta file.
        let guard_path = if row.is_staging() {
            self.lock_path(&row.key)
        } else {
            self.sub(META).join(&row.name)
        };
        let current = cachedir::split_entry_name(&row.name)
            .is_some_and(|(_, suffix)| cachedir::is_current_suffix(suffix));
        let guard = match open_lock(&guard_path, current) {
            Ok(g) => g,
            Err(e) => return Err(io_err("open", &guard_path)(e)),
        };
        if let Some(g) = &guard {
            if !try_lock_patiently(g).map_err(io_err("lock", &guard_path))? {
                return Err(CacheError::InUse(row.key.clone()));
            }
        }
        let Some(trash) = self.to_trash(&row.path, &row.key, &m)? else {
            return Ok(());
        };
        if !row.is_staging() {
            // Still under LOCK_EX: a start waiting for it sees the file unlinked and reopens.
            self.remove_meta(row)?;
        }
        drop(guard);
        remove_trash(&trash)
    }

    /// Moves the directory `path` (of `key`, with metadata `m`) into `tmp/`, so it vanishes at
    /// once and a half-removed tree is never used. Returns where it went; `None` if it vanished
    /// first (another remover's).
    fn to_trash(&self, path: &Path, key: &str, m: &Metadata) -> Result<Option<PathBuf>> {
        let tmp = self.sub(TMP);
        std::fs::create_dir_all(&tmp).map_err(io_err("mkdir", &tmp))?;
        let trash = tmp.join(format!("{key}-rm{}", unique()));
        // Moving a directory to another parent rewrites its `..`: it needs write permission.
        if m.mode() & 0o200 == 0 {
            let p = std::fs::Permissions::from_mode(m.mode() & 0o7777 | 0o700);
            match std::fs::set_permissions(path, p) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                r => r.map_err(io_err("chmod", path))?,
            }
        }
        match std::fs::rename(path, &trash) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            r => r.map(|()| Some(trash)).map_err(io_err("rename", path)),
        }
    }

    /// Removes a layer no entry names: under `LOCK_EX` on its lock file, taken without waiting
    /// (a start holds it from extraction until the entry naming the layer is published), and
    /// after seeing, under that lock, that no entry names it.
    fn remove_layer(&self, row: &Row) -> Result<()> {
        let lock_path = self.lock_path(&row.key);
        let lock = self.open_layer_lock(&lock_path)?;
        if !try_lock_patiently(&lock).map_err(io_err("lock", &lock_path))? {
            return Err(CacheError::LayerBusy(row.key.clone()));
        }
        if let Some(entry) = self.naming(&row.name)? {
            return Err(CacheError::LayerNamed {
                key: row.key.clone(),
                entry,
            });
        }
        let m = match std::fs::symlink_metadata(&row.path) {
            // Removed by someone else meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(io_err("stat", &row.path))?,
        };
        if !m.is_dir() {
            // A symlink or file where a layer belongs: the link goes, never its target.
            return std::fs::remove_file(&row.path).map_err(io_err("remove", &row.path));
        }
        if m.uid() != self.euid && self.euid != 0 {
            return Err(CacheError::ForeignLayer {
                key: row.key.clone(),
                uid: m.uid(),
                root: self.root.clone(),
            });
        }
        let Some(trash) = self.to_trash(&row.path, &row.key, &m)? else {
            return Ok(());
        };
        // Gone from `layers/`: a start taking the lock from now on extracts the layer anew.
        drop(lock);
        remove_trash(&trash)
    }

    /// Opens (creating: a start may create it at any time) a layer's lock file. Root removing
    /// from a user's cache gives a lock file it made to the cache's owner, whose runs open it
    /// for writing.
    fn open_layer_lock(&self, path: &Path) -> Result<File> {
        let existed = std::fs::symlink_metadata(path).is_ok();
        let f = open_lock(path, true)
            .map_err(io_err("open", path))?
            .ok_or_else(|| io_err("open", path)(io::ErrorKind::NotFound.into()))?;
        if self.euid == 0 && !existed {
            let locks = self.sub(LOCKS);
            let d = std::fs::metadata(&locks).map_err(io_err("stat", &locks))?;
            if d.uid() != 0 {
                std::os::unix::fs::fchown(&f, Some(d.uid()), Some(d.gid()))
                    .map_err(io_err("chown", path))?;
            }
        }
        Ok(f)
    }

    /// The first entry in `rootfs/` whose layer list names the layer `name`. An entry whose list
    /// cannot be read is an error: it might name it.
    fn naming(&self, name: &str) -> Result<Option<String>> {
        for entry in dir_names(&self.sub(ROOTFS))? {
            if !may_stack(&entry) {
                continue;
            }
            let path = self.sub(ROOTFS).join(&entry);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                // Symlinks and files are never used as entries; a vanished one names nothing.
                _ => continue,
            }
            let list = stack_list(&path).map_err(io_err("read", &path.join(STACK_LIST)))?;
            if list.is_some_and(|l| l.iter().any(|n| n == name)) {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Removes an entry's meta file.
    fn remove_meta(&self, row: &Row) -> Result<()> {
        let p = self.sub(META).join(&row.name);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &p)(e)),
            _ => Ok(()),
        }
    }

    /// `rm`: removes each named entry, in order; one that cannot go does not stop the others.
    /// Then the layers of the removed entries that no entry names any more, as `docker rmi`
    /// removes the layers no other image shares.
    pub fn rm(&self, selectors: &[String]) -> Result<Vec<Outcome>> {
        let rows = self.list()?;
        let chosen = self.resolve(&rows, selectors)?;
        let mut freed = HashSet::new();
        let mut out: Vec<Outcome> = chosen
            .into_iter()
            .map(|r| match self.remove(&r) {
                Ok(()) => {
                    freed.extend(r.layers.iter().cloned());
                    Outcome::Removed(r)
                }
                Err(e) => Outcome::Failed(r, e.to_string()),
            })
            .collect();
        if !freed.is_empty() {
            out.extend(self.prune_layers(Some(&freed), &HashSet::new(), false)?);
        }
        Ok(out)
    }

    /// `prune`: see [`Prune`]. Meta files whose entry is gone are removed too (returned as a
    /// count).
    pub fn prune(&self, p: &Prune) -> Result<(Vec<Outcome>, usize)> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for r in self.list()? {
            let stale = |r: &Row| match (p.older_than, r.last_used) {
                (Some(d), Some(t)) => now.duration_since(t).is_ok_and(|age| age > d),
                // Never used by a run we know of.
                (Some(_), None) => true,
                (None, _) => false,
            };
            if r.kind == Kind::Layer {
                continue;
            }
            let wanted = match r.state {
                State::Incomplete | State::OldFormat | State::Symlink | State::NotDir => true,
                State::Extracting => {
                    out.push(Outcome::Skipped(r, "being extracted".into()));
                    continue;
                }
                State::InUse if p.all || stale(&r) => {
                    out.push(Outcome::Skipped(r, "in use".into()));
                    continue;
                }
                State::Foreign(uid) if self.euid != 0 && (p.all || stale(&r)) => {
                    out.push(Outcome::Skipped(r, format!("owned by uid {uid}")));
                    continue;
                }
                _ => p.all || stale(&r),
            };
            if !wanted {
                continue;
            }
            if p.dry_run {
                out.push(Outcome::Removed(r));
                continue;
            }
            out.push(match self.remove(&r) {
                Ok(()) => Outcome::Removed(r),
                Err(CacheError::InUse(_)) => Outcome::Skipped(r, "in use".into()),
                Err(e) => Outcome::Failed(r, e.to_string()),
            });
        }
        // Then the layers no entry names, those of the entries just removed too (in a dry run:
        // that would be removed).
        let gone: HashSet<String> = match p.dry_run {
            true => out
                .iter()
                .filter_map(|o| match o {
                    Outcome::Removed(r) if r.kind == Kind::Entry => Some(r.name.clone()),
                    _ => None,
                })
                .collect(),
            false => HashSet::new(),
        };
        out.extend(self.prune_layers(None, &gone, p.dry_run)?);
        let orphans = if p.dry_run {
            0
        } else {
            self.remove_orphan_meta()?
        };
        Ok((out, orphans))
    }

    /// Removes the layers (of `only`, else all) that no entry names but those in `gone`; skips
    /// one being extracted or another user's.
    fn prune_layers(
        &self,
        only: Option<&HashSet<String>>,
        gone: &HashSet<String>,
        dry_run: bool,
    ) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for l in self.list()?.into_iter().filter(|r| r.kind == Kind::Layer) {
            if only.is_some_and(|o| !o.contains(&l.name))
                || l.entries.iter().any(|e| !gone.contains(e))
            {
                continue;
            }
            match l.state {
                State::Extracting => {
                    out.push(Outcome::Skipped(l, "being extracted".into()));
                    continue;
                }
                State::Foreign(uid) if self.euid != 0 => {
                    out.push(Outcome::Skipped(l, format!("owned by uid {uid}")));
                    continue;
                }
                _ => {}
            }
            if dry_run {
                out.push(Outcome::Removed(l));
                continue;
            }
            out.push(match self.remove_layer(&l) {
                Ok(()) => Outcome::Removed(l),
                Err(CacheError::LayerBusy(_)) => Outcome::Skipped(l, "being extracted".into()),
                Err(CacheError::LayerNamed { entry, .. }) => {
                    Outcome::Skipped(l, format!("now used by entry {}", &entry[..12]))
                }
                Err(e) => Outcome::Failed(l, e.to_string()),
            });
        }
        Ok(out)
    }

    /// Removes meta files whose entry is gone and that no start holds (a start holds it while it
    /// extracts the entry).
    fn remove_orphan_meta(&self) -> Result<usize> {
        let mut n = 0;
        for name in dir_names(&self.sub(META))? {
            let entry = self.sub(ROOTFS).join(&name);
            if std::fs::symlink_metadata(&entry).is_ok() {
                continue;
            }
            let p = self.sub(META).join(&name);
            let Ok(Some(f)) = open_lock(&p, false) else {
                continue;
            };
            if try_lock(&f).unwrap_or(false)
                && std::fs::symlink_metadata(&entry).is_err()
                && std::fs::remove_file(&p).is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Whether the entry `name` may have a layer list: all but merged ones (`-x…`, of any version),
/// whose trees are an image's root (where a file `/layers` is the image's own).
fn may_stack(name: &str) -> bool {
    cachedir::split_entry_name(name).is_some_and(|(_, suffix)| !suffix.starts_with("-x"))
}

/// The layers a stacked entry's list names (bottom first); `None` for an entry without one (a
/// merged entry).
fn stack_list(entry: &Path) -> io::Result<Option<Vec<String>>> {
    match std::fs::read_to_string(entry.join(STACK_LIST)) {
        Ok(text) => Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Appends to `to` the items of `from` it lacks, in order.
fn push_new(to: &mut Vec<String>, from: &[String]) {
    for f in from {
        if !to.contains(f) {
            to.push(f.clone());
        }
    }
}

/// Removes a tree moved into `tmp/`; one with files of subordinate ids (a `--userns
/// auto|map|keep-id` extraction) through [`remove_mapped`].
///
/// A tree that vanishes meanwhile is another remover's: a `prune` takes the trash of an `rm`
/// for a dead staging tree (nothing tells them apart), and a start sweeps what it finds there.
fn remove_trash(trash: &Path) -> Result<()> {
    match remove_tree(trash) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            remove_mapped(trash).map_err(io_err("remove", trash))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(io_err("remove", trash)),
    }
}

/// What `prune` removes beyond what is never used again (staging trees of dead extractions,
/// old-format entries, symlinks or files where entries belong, layers no entry names, meta
/// files without an entry).
#[derive(Debug, Clone, Default)]
pub struct Prune {
    /// Every entry not in use.
    pub all: bool,
    /// Entries last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Report only.
    pub dry_run: bool,
}

/// Names in `dir`, sorted; none when it does not exist.
fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Opens a lock file; `None` when it does not exist (and `create` is false).
pub(crate) fn open_lock(path: &Path, create: bool) -> io::Result<Option<File>> {
    let r = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    match r {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// LOCK_EX without waiting: false when someone holds the lock (shared or exclusive).
pub(crate) fn try_lock(f: &File) -> io::Result<bool> {
    match rustix::fs::flock(f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// [`try_lock`], tried a few times over some milliseconds: a listing (`ls`, or a `prune` at
/// once) probes locks by taking them for an instant, and that is no run holding one.
fn try_lock_patiently(f: &File) -> io::Result<bool> {
    for _ in 0..10 {
        if try_lock(f)? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    Ok(false)
}

/// Whether someone holds a lock on `path` (a run on a meta file, an extractor on a lock file).
fn busy(path: &Path) -> bool {
    match open_lock(path, false) {
        Ok(Some(f)) => !try_lock(&f).unwrap_or(true),
        _ => false,
    }
}

/// A name part unique to this call: pid and clock.
pub(crate) fn unique() -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", std::process::id(), t.as_nanos())
}

/// Disk usage of a tree as `du` counts it: allocated blocks, each hard-linked file once,
/// symlinks never followed. Unreadable parts count as empty.
pub fn disk_usage(path: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        let mut total = m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    total += walk(&e.path(), seen);
                }
            }
        }
        total
    }
    walk(path, &mut HashSet::new())
}

/// Removes a tree of ours, first giving every directory `u+rwx` (images have `0555` and even
/// `0000` ones); symlinks are removed, never followed.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    fn open_up(p: &Path) -> io::Result<()> {
        let m = std::fs::symlink_metadata(p)?;
        if !m.is_dir() {
            return Ok(());
        }
        if m.mode() & 0o700 != 0o700 {
            std::fs::set_permissions(
                p,
                std::fs::Permissions::from_mode(m.mode() & 0o7777 | 0o700),
            )?;
        }
        for e in std::fs::read_dir(p)? {
            // Gone meanwhile (a start's background flush takes its mark away): fine.
            match open_up(&e?.path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
        Ok(())
    }
    match open_up(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    }
    std::fs::remove_dir_all(path)
}

/// The hidden command of `oci2bin` that [`remove_mapped`] starts: `oci2bin __remove-mapped DIR`.
pub const REMOVE_MAPPED: &str = "__remove-mapped";

/// The caller's subordinate uid and gid maps (rootless podman's: root is the caller, 1..N the
/// ranges of /etc/subuid and /etc/subgid), or `None` without a range.
fn own_maps() -> Option<(Vec<String>, Vec<String>)> {
    use loader::subid;
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    });
    let ranges = |file: &str| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        subid::ranges(&text, name.as_deref(), uid)
    };
    let (su, sg) = (ranges("/etc/subuid"), ranges("/etc/subgid"));
    if su.is_empty() || sg.is_empty() {
        return None;
    }
    Some((
        subid::map_args(&subid::build_map(uid, 0, &su)),
        subid::map_args(&subid::build_map(gid, 0, &sg)),
    ))
}

/// Removes `path`, a tree with files of the caller's subordinate ids: starts `oci2bin
/// __remove-mapped PATH`, which enters a new user namespace and waits; maps the ranges onto it
/// with `newuidmap`/`newgidmap` (setuid, so they work for us from out here); then lets it remove
/// the tree as root of that namespace.
pub fn remove_mapped(path: &Path) -> io::Result<()> {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let denied = || {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it holds files of other users, and you have no subordinate id range (/etc/subuid, \
             /etc/subgid) to remove them with: remove it as root",
        )
    };
    let (uid_map, gid_map) = own_maps().ok_or_else(denied)?;
    let mut child = Command::new("/proc/self/exe")
        .arg(REMOVE_MAPPED)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    let stdout = child.stdout.take().expect("piped");
    io::BufReader::new(stdout).read_line(&mut ready)?;
    let pid = child.id().to_string();
    let mut mapped = Ok(());
    if ready.trim() == "ready" {
        for (helper, map) in [("newuidmap", &uid_map), ("newgidmap", &gid_map)] {
            let out = Command::new(helper).arg(&pid).args(map).output();
            let why = match out {
                Ok(o) if o.status.success() => continue,
                Ok(o) => String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .replace('\n', "; "),
                Err(e) => e.to_string(),
            };
            mapped = Err(io::Error::other(format!(
                "{helper} {pid} {}: {why}",
                map.join(" ")
            )));
            break;
        }
    }
    let mut stdin = child.stdin.take().expect("piped");
    if mapped.is_ok() {
        let _ = stdin.write_all(b"go\n");
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    mapped?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(match err.trim() {
        "" => format!("the remover exited with {}", out.status),
        e => e.replace('\n', "; "),
    }))
}

/// The child side of [`remove_mapped`] (`oci2bin __remove-mapped DIR…`): enters a user
/// namespace, says `ready`, waits for `go` (its ids are mapped by then) and removes each DIR.
/// Returns the exit code.
pub fn remove_mapped_child(paths: &[std::ffi::OsString]) -> i32 {
    use rustix::thread::UnshareFlags;
    use std::io::{BufRead, Write};
    // SAFETY: called first thing in a fresh, single-threaded process (see main), so no other
    // thread shares the credentials or file table unshare changes.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) } {
        eprintln!("unshare a user namespace: {e}");
        return 1;
    }
    println!("ready");
    let _ = io::stdout().flush();
    let mut go = String::new();
    if io::stdin().lock().read_line(&mut go).is_err() || go.trim() != "go" {
        return 1;
    }
    for p in paths {
        if let Err(e) = remove_tree(Path::new(p)) {
            eprintln!("remove {}: {e}", Path::new(p).display());
            return 1;
        }
    }
    0
}

/// `1.1 MiB`, `532 B`: binary units, one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `3 minutes ago` for the last month, else the date (UTC).
pub fn human_age(t: SystemTime, now: SystemTime) -> String {
    let Ok(age) = now.duration_since(t) else {
        return "just now".into();
    };
    let s = age.as_secs();
    let ago = |n: u64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    match s {
        0..=1 => "just now".into(),
        2..=59 => ago(s, "second"),
        60..=3599 => ago(s / 60, "minute"),
        3600..=172_799 => ago(s / 3600, "hour"),
        172_800..=2_591_999 => ago(s / 86_400, "day"),
        _ => date(t),
    }
}

/// `YYYY-MM-DD` (UTC) of a time.
fn date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::metadata::civil_date(secs)
}

/// `30s`, `15m`, `12h`, `7d`, `2w`.
pub fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration like 30s, 15m, 12h, 7d or 2w");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// Columns aligned, two spaces apart, no trailing blanks; the header even without rows.
fn table<const N: usize>(header: [&str; N], cells: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut width = header.clone().map(|h| h.len());
    for c in cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    let mut out = String::new();
    for c in std::iter::once(&header).chain(cells) {
        let line: Vec<String> = c
            .iter()
            .zip(width)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn names_or_dash(names: &[String]) -> String {
    match names.is_empty() {
        true => "-".into(),
        false => names.join(","),
    }
}

/// `1 entry`, `2 entries`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `ls` tables: the entries (a header even when there are none), then the layers, if any,
/// and their totals. A stacked entry's SIZE counts its layers; SHARED is the part of them other
/// entries name too (as `docker system df -v` shows images).
pub fn render_table(rows: &[Row], now: SystemTime) -> String {
    let entries: Vec<[String; 6]> = rows
        .iter()
        .filter(|r| r.kind != Kind::Layer)
        .map(|r| {
            [
                r.short_key().to_string(),
                names_or_dash(&r.images),
                human_size(r.total_size()),
                match r.layers.is_empty() {
                    true => "-".into(),
                    false => human_size(r.shared_size),
                },
                r.last_used.map_or("-".into(), |t| human_age(t, now)),
                r.state.to_string(),
            ]
        })
        .collect();
    let header = ["ENTRY", "IMAGE", "SIZE", "SHARED", "LAST USED", "STATE"];
    let mut out = table(header, &entries);
    let layers: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Layer).collect();
    if layers.is_empty() {
        return out;
    }
    let cells: Vec<[String; 5]> = layers
        .iter()
        .map(|l| {
            [
                l.short_key().to_string(),
                names_or_dash(&l.images),
                l.entries.len().to_string(),
                human_size(l.size),
                l.state.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        ["LAYER", "IMAGES", "ENTRIES", "SIZE", "STATE"],
        &cells,
    ));
    let users: HashSet<&String> = layers.iter().flat_map(|l| &l.entries).collect();
    let total: u64 = layers.iter().map(|l| l.size).sum();
    out.push_str(&format!(
        "\nlayers: {}, {}, used by {}",
        layers.len(),
        human_size(total),
        count(users.len(), "entry", "entries")
    ));
    // What `prune` would remove.
    let unused: Vec<&&Row> = layers
        .iter()
        .filter(|l| {
            l.entries.is_empty() && !matches!(l.state, State::Extracting | State::Foreign(_))
        })
        .collect();
    if !unused.is_empty() {
        let size: u64 = unused.iter().map(|l| l.size).sum();
        out.push_str(&format!(
            "; {} unused, {} (`oci2bin cache prune` removes {})",
            unused.len(),
            human_size(size),
            if unused.len() == 1 { "it" } else { "them" }
        ));
    }
    out.push('\n');
    out
}

/// The `ls --json` value: full keys, sizes in bytes, last use in seconds since the epoch. One
/// array: entries and staging trees (`"kind": "entry"|"staging"`; a stacked entry's `size`
/// counts its layers, `own_size` is its directory's, `shared_size` that of its layers other
/// entries name too), then layers (`"kind": "layer"`).
pub fn to_json(rows: &[Row]) -> serde_json::Value {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    };
    rows.iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "kind": match r.kind {
                    Kind::Entry => "entry",
                    Kind::Staging => "staging",
                    Kind::Layer => "layer",
                },
                "key": r.key,
                "path": r.path,
                "images": r.images,
                "image_ids": r.image_ids,
                "size": r.total_size(),
                "last_used": r.last_used.and_then(secs),
                "state": r.state.to_string(),
            });
            if r.kind == Kind::Layer {
                v["layer"] = r.name.clone().into();
                v["entries"] = r.entries.clone().into();
            } else {
                v["entry"] = r.name.clone().into();
            }
            if !r.layers.is_empty() {
                v["layers"] = r.layers.clone().into();
                v["own_size"] = r.size.into();
                v["shared_size"] = r.shared_size.into();
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests;
