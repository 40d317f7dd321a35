//! Applies image layers, in order, to one directory tree (the staging root).
//!
//! Every layer blob is read by offset from the oci2bin file, hashed (sha256 of the stored,
//! compressed bytes) while it is decompressed and unpacked, and refused if the digest differs.
//!
//! Path safety: entry names are split into components; absolute names and `..` are refused.
//! Parent directories are resolved inside the root, one component at a time relative to
//! directory fds opened with `O_NOFOLLOW`; a symlink met on the way is followed with chroot
//! semantics (an absolute target restarts at the root), but a `..` that would climb above the root
//! is an error, as are more than [`MAX_SYMLINK_HOPS`] hops. The last component is never followed:
//! every object is created with `*at` calls on the parent's fd (`O_CREAT|O_EXCL`, `mkdirat`,
//! `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`), after removing what was there. When the
//! kernel has `openat2`, a parent path is first opened in one call with
//! `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS` (the kernel's guarantee that the directory lies inside the
//! root), and the walk only runs for paths that meet a symlink or a missing directory.
//!
//! Rootless: uid/gid and xattrs are ignored, device nodes are refused. With owners (an
//! extraction inside a user namespace that maps the image's ids, see [`crate::subid`]), each
//! object gets the layer's uid/gid, and files and directories its `user.*` and
//! `security.capability` xattrs; setuid/setgid bits are set after the owner. Directories stay `0700`
//! while layers are applied and get their modes and mtimes at the very end, so a `0555`
//! directory can still be filled by a later layer.

use crate::format::{Compression, LayerRef};
use crate::gzip::GzipMembers;
use crate::sys::fs as sys;
use crate::sys::sig;
use crate::tar::{self, Kind, TarError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

/// Symlinks followed while resolving one path before it counts as a loop (Linux's own limit).
pub const MAX_SYMLINK_HOPS: u32 = 40;
/// Deepest directory nesting accepted; it bounds recursion and open fds while removing trees.
pub const MAX_DEPTH: usize = 512;
/// Size of the reads from the oci2bin file.
const READ_CHUNK: usize = 256 << 10;

/// An extraction error: what went wrong, and in which layer (`None` outside any layer).
#[derive(Debug)]
pub struct ExtractError {
    pub layer: Option<String>,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("entry {0} has an absolute path")]
    Absolute(String),
    #[error("entry {0} climbs out of the root with ..")]
    DotDot(String),
    #[error("entry {entry} escapes the root through symlink {link}")]
    Escapes { entry: String, link: String },
    #[error("entry {0}: too many levels of symbolic links (more than {MAX_SYMLINK_HOPS})")]
    SymlinkLoop(String),
    #[error("entry {entry}: {parent} is not a directory")]
    NotDir { entry: String, parent: String },
    #[error("entry {0} is nested deeper than {MAX_DEPTH} directories")]
    TooDeep(String),
    #[error("entry {0} is the root itself but not a directory")]
    RootNotDir(String),
    #[error("device node {0} not allowed (rootless extraction)")]
    Device(String),
    #[error("hardlink {entry} -> {target}: {why}")]
    Hardlink {
        entry: String,
        target: String,
        why: String,
    },
    #[error("entry {0} is not a valid whiteout")]
    BadWhiteout(String),
    #[error("entry {entry}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("{0}")]
    Tar(TarError),
    #[error("reading layer: {0}")]
    Read(io::Error),
    #[error("digest mismatch: file corrupt or tampered")]
    Digest,
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.layer, &self.kind) {
            (Some(l), ErrorKind::Digest) => write!(f, "layer {l} {}", self.kind),
            (Some(l), k) => write!(f, "layer {l}: {k}"),
            (None, k) => write!(f, "{k}"),
        }
    }
}

impl std::error::Error for ExtractError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// `sha256:<hex>` of a layer, as messages name it.
pub fn layer_id(layer: &LayerRef) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in layer.sha256 {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Extracts `layers` of the oci2bin file `exe`, in order, into the existing empty directory `dest`.
pub fn extract_layers(exe: &File, layers: &[LayerRef], dest: &Path) -> Result<(), ExtractError> {
    extract_layers_owned(exe, layers, dest, false)
}

/// Sets the xattrs of `e` a user namespace may set: `user.*` and `security.capability` (file
/// capabilities, which the kernel ties to the namespace's root). Others (`trusted.*`, other
/// `security.*`) need the host's root and are left out, as rootless podman leaves them.
fn set_xattrs(fd: BorrowedFd<'_>, e: &tar::Entry) -> io::Result<()> {
    for (name, value) in &e.xattrs {
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let Ok(name) = CString::new(name.clone()) else {
            continue;
        };
        sys::fsetxattr(fd, &name, value)?;
    }
    Ok(())
}

/// [`extract_layers`] with the layers' owners and xattrs (see [`Extractor::with_owners`]).
pub fn extract_layers_owned(
    exe: &File,
    layers: &[LayerRef],
    dest: &Path,
    owners: bool,
) -> Result<(), ExtractError> {
    let mut x = Extractor::new(dest)
        .map_err(|e| ExtractError {
            layer: None,
            kind: io_err(dest, "open", e),
        })?
        .with_owners(owners);
    for layer in layers {
        x.apply_layer(exe, layer)?;
    }
    x.finish()
}

/// Stops the extraction when a stop signal arrived (see [`crate::sys::sig`]); the caller removes
/// the partial tree.
fn stop_if_signalled() -> Result<(), ErrorKind> {
    match sig::pending() {
        Some(s) => Err(ErrorKind::Interrupted(s)),
        None => Ok(()),
    }
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> ErrorKind {
    ErrorKind::Io {
        entry: path.display().to_string(),
        op,
        source,
    }
}

/// Removes the tree at `path` (not following a symlink there), first giving its owner `rwx` on
/// every directory so `0555` or `0000` directories do not stop it. A missing path is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(sys::EINVAL))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pfd = open_dir_path(parent, sys::O_PATH)?;
    let name =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(sys::EINVAL))?;
    remove_all(pfd.as_fd(), &name, 0).map(drop)
}

fn open_dir_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(sys::EINVAL))?;
    let cwd = sys::cwd();
    sys::openat(cwd, &c, flags | sys::O_DIRECTORY, 0)
}

/// Removes `name` in `dir`: unlinks a non-directory, or empties and removes a directory. Returns
/// whether a directory was removed.
fn remove_all(dir: BorrowedFd<'_>, name: &CStr, depth: usize) -> io::Result<bool> {
    match sys::unlinkat(dir, name, false) {
        Ok(()) => return Ok(false),
        Err(e) if sys::errno(&e) == sys::ENOENT => return Ok(false),
        Err(e) if sys::errno(&e) == sys::EISDIR => {}
        Err(e) => return Err(e),
    }
    if depth > MAX_DEPTH + 8 {
        return Err(io::Error::from_raw_os_error(sys::ELOOP));
    }
    let flags = sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW;
    let child = match sys::openat(dir, name, flags, 0) {
        Err(e) if sys::errno(&e) == sys::EACCES => {
            // No read permission on a directory we own: grant it, then retry.
            sys::fchmodat(dir, name, 0o700)?;
            sys::openat(dir, name, flags, 0)?
        }
        r => r?,
    };
    // Write and search permission are needed to unlink the children.
    sys::fchmod(child.as_fd(), 0o700)?;
    for n in sys::read_dir(child.as_fd())? {
        remove_all(child.as_fd(), &n, depth + 1)?;
    }
    sys::unlinkat(dir, name, true)?;
    Ok(true)
}

/// A directory's final mode and mtime, applied by [`Extractor::finish`].
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: Option<(i64, u32)>,
    /// uid/gid to set when extracting with owners.
    owner: Option<(u32, u32)>,
}

/// The last resolved parent directory: tar members come grouped by directory, so most entries
/// hit it and cost no path resolution at all.
struct Cached {
    raw: Vec<u8>,
    fd: Rc<OwnedFd>,
    canon: Vec<u8>,
}

/// Why a path could not be resolved inside the root.
#[derive(Debug)]
enum Resolve {
    Escapes { link: Vec<u8> },
    Loop,
    NotDir(Vec<u8>),
    NotFound,
    TooDeep,
    Io(&'static str, io::Error),
}

impl Resolve {
    fn into_kind(self, entry: &str) -> ErrorKind {
        let entry = entry.to_string();
        match self {
            Resolve::Escapes { link } => ErrorKind::Escapes {
                entry,
                link: lossy(&link),
            },
            Resolve::Loop => ErrorKind::SymlinkLoop(entry),
            Resolve::NotDir(p) => ErrorKind::NotDir {
                entry,
                parent: lossy(&p),
            },
            Resolve::NotFound => ErrorKind::Io {
                entry,
                op: "resolve",
                source: io::Error::from_raw_os_error(sys::ENOENT),
            },
            Resolve::TooDeep => ErrorKind::TooDeep(entry),
            Resolve::Io(op, source) => ErrorKind::Io { entry, op, source },
        }
    }

    /// The same problem, phrased for a hardlink's target.
    fn why_target(self) -> String {
        match self {
            Resolve::Escapes { link } => {
                format!("target escapes the root through symlink {}", lossy(&link))
            }
            Resolve::Loop => {
                format!("too many levels of symbolic links (more than {MAX_SYMLINK_HOPS})")
            }
            Resolve::NotDir(p) => format!("{} is not a directory", lossy(&p)),
            Resolve::NotFound => "target does not exist".into(),
            Resolve::TooDeep => format!("target is nested deeper than {MAX_DEPTH} directories"),
            Resolve::Io(op, e) => format!("{op}: {e}"),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if !parent.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn cstring(b: &[u8]) -> CString {
    // Tar names and symlink targets never hold NUL: the reader refuses them.
    CString::new(b).expect("path without NUL")
}

#[derive(Debug, PartialEq, Eq)]
enum BadPath {
    Absolute,
    DotDot,
}

/// Splits an entry name into components, dropping empty and `.` ones (so `./a//b/` is `a`, `b`).
fn split_entry(path: &[u8]) -> Result<Vec<&[u8]>, BadPath> {
    if path.first() == Some(&b'/') {
        return Err(BadPath::Absolute);
    }
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.iter().any(|c| *c == b"..") {
        return Err(BadPath::DotDot);
    }
    Ok(comps)
}

/// Unpacks layers into one tree. [`Extractor::finish`] must run after the last layer.
pub struct Extractor {
    root: Rc<OwnedFd>,
    /// Directories created, by canonical path (`""` is the root): modes and mtimes for the end.
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    /// Canonical paths created by the current layer, with their ancestors: what an opaque
    /// marker keeps.
    layer_paths: HashSet<Vec<u8>>,
    parent_cache: Option<Cached>,
    use_openat2: bool,
    buf: Vec<u8>,
    owners: bool,
}

impl Extractor {
    /// Starts an extraction into the existing directory `dest` (normally empty).
    pub fn new(dest: &Path) -> io::Result<Extractor> {
        let root = open_dir_path(dest, sys::O_RDONLY | sys::O_NOFOLLOW)?;
        sys::fchmod(root.as_fd(), 0o700)?;
        let mut dirs = BTreeMap::new();
        // "/" of the image is world-readable unless the layers say otherwise.
        dirs.insert(
            Vec::new(),
            DirMeta {
                mode: 0o755,
                mtime: None,
                owner: None,
            },
        );
        Ok(Extractor {
            root: Rc::new(root),
            dirs,
            layer_paths: HashSet::new(),
            parent_cache: None,
            use_openat2: true,
            buf: Vec::new(),
            owners: false,
        })
    }

    /// Gives every object the owner and xattrs its layer says (needs a mapped namespace).
    pub fn with_owners(mut self, owners: bool) -> Extractor {
        self.owners = owners;
        self
    }

    /// The owner to set on `e`, when extracting with owners.
    fn owner(&self, e: &tar::Entry) -> Option<(u32, u32)> {
        self.owners.then_some((e.uid, e.gid))
    }

    /// Reads the layer blob from `exe` by offset, unpacks it and checks its sha256.
    pub fn apply_layer(&mut self, exe: &File, layer: &LayerRef) -> Result<(), ExtractError> {
        let id = layer_id(layer);
        let raw = LayerBytes {
            file: exe,
            pos: layer.offset,
            end: layer.offset.saturating_add(layer.size),
            hasher: Sha256::new(),
        };
        let mut src = BufReader::with_capacity(READ_CHUNK, raw);
        // One `dyn Read` boundary keeps a single copy of the tar and entry code in the binary.
        let result = match layer.compression {
            Compression::None => self.apply_stream(&mut src),
            Compression::Gzip => {
                let inner = GzipMembers::new(&mut src);
                self.apply_stream(&mut Named {
                    what: "gzip",
                    inner,
                })
            }
            Compression::Zstd => {
                let inner = ZstdFrames::new(&mut src);
                self.apply_stream(&mut Named {
                    what: "zstd",
                    inner,
                })
            }
        };
        if let Err(kind @ ErrorKind::Interrupted(_)) = result {
            // Stop at once: hashing the rest of a big layer would delay the exit.
            return Err(ExtractError {
                layer: Some(id),
                kind,
            });
        }
        // Hash whatever the decompressor left unread, so the digest covers the whole blob; a
        // corrupt blob is reported as such even when it first broke the tar or the decompressor.
        let drained = io::copy(&mut src, &mut io::sink());
        let raw = src.into_inner();
        let digest_ok = raw.pos == raw.end && raw.hasher.finalize()[..] == layer.sha256;
        let kind = match (result, drained) {
            (_, Err(e)) => ErrorKind::Read(e),
            _ if !digest_ok => ErrorKind::Digest,
            (Err(k), _) => k,
            (Ok(()), Ok(_)) => return Ok(()),
        };
        Err(ExtractError {
            layer: Some(id),
            kind,
        })
    }

    /// Unpacks one uncompressed tar stream as the next layer (no digest: for callers that
    /// verify elsewhere, and tests).
    pub fn apply_tar(&mut self, name: &str, mut r: impl Read) -> Result<(), ExtractError> {
        self.apply_stream(&mut r).map_err(|kind| ExtractError {
            layer: Some(name.to_string()),
            kind,
        })
    }

    fn apply_stream(&mut self, r: &mut dyn Read) -> Result<(), ErrorKind> {
        self.layer_paths.clear();
        let mut tr = tar::Reader::new(r);
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(READ_CHUNK, 0);
        let result = (|| {
            while let Some(e) = tr.next_entry().map_err(ErrorKind::Tar)? {
                stop_if_signalled()?;
                self.apply_entry(&e, &mut tr, &mut buf)?;
            }
            Ok(())
        })();
        self.buf = buf;
        result?;
        // Bytes after the end-of-archive marker are ignored but must decompress cleanly (this also
        // checks the gzip trailers' lengths).
        io::copy(&mut tr.into_inner(), &mut io::sink()).map_err(ErrorKind::Read)?;
        Ok(())
    }

    fn apply_entry(
        &mut self,
        e: &tar::Entry,
        data: &mut impl Read,
        buf: &mut [u8],
    ) -> Result<(), ErrorKind> {
        let shown = e.display_path();
        let comps = split_entry(&e.path).map_err(|b| match b {
            BadPath::Absolute => ErrorKind::Absolute(shown.clone()),
            BadPath::DotDot => ErrorKind::DotDot(shown.clone()),
        })?;
        if matches!(e.kind, Kind::CharDevice | Kind::BlockDevice) {
            return Err(ErrorKind::Device(shown));
        }
        if comps.len() > MAX_DEPTH {
            return Err(ErrorKind::TooDeep(shown));
        }
        let Some((&name, parents)) = comps.split_last() else {
            // "./": the root directory itself.
            if e.kind != Kind::Dir {
                return Err(ErrorKind::RootNotDir(shown));
            }
            self.dirs.insert(
                Vec::new(),
                DirMeta {
                    mode: e.mode,
                    mtime: Some((e.mtime, e.mtime_nsec)),
                    owner: self.owner(e),
                },
            );
            if self.owners {
                set_xattrs(self.root.as_fd(), e).map_err(|source| ErrorKind::Io {
                    entry: shown,
                    op: "fsetxattr",
                    source,
                })?;
            }
            return Ok(());
        };
        let io = |op: &'static str| {
            let entry = shown.clone();
            move |source: io::Error| ErrorKind::Io { entry, op, source }
        };
        let (pfd, pcanon) = self
            .parent(parents, true)
            .map_err(|r| r.into_kind(&shown))?;
        let pfd = pfd.as_fd();
        let canon = join(&pcanon, name);
        if canon.iter().filter(|&&b| b == b'/').count() >= MAX_DEPTH {
            return Err(ErrorKind::TooDeep(shown));
        }

        if let Some(target) = name.strip_prefix(b".wh.") {
            if name == b".wh..wh..opq" {
                let dir = sys::openat(pfd, c".", sys::O_RDONLY | sys::O_DIRECTORY, 0)
                    .map_err(io("openat"))?;
                self.prune(dir.as_fd(), &pcanon, 0)
                    .map_err(io("opaque whiteout"))?;
                self.mark(&pcanon);
                return Ok(());
            }
            if target.starts_with(b".wh.") {
                // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
                return Ok(());
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(ErrorKind::BadWhiteout(shown));
            }
            let removed = join(&pcanon, target);
            self.remove(pfd, &cstring(target), &removed)
                .map_err(io("whiteout"))?;
            return Ok(());
        }

        let cname = cstring(name);
        match e.kind {
            Kind::Dir => {
                match sys::mkdirat(pfd, &cname, 0o700) {
                    Ok(()) => {}
                    Err(err) if sys::errno(&err) == sys::EEXIST => {
                        let st = sys::lstatat(pfd, &cname).map_err(io("fstatat"))?;
                        if !sys::is_dir(&st) {
                            self.remove(pfd, &cname, &canon).map_err(io("unlinkat"))?;
                            sys::mkdirat(pfd, &cname, 0o700).map_err(io("mkdirat"))?;
                        }
                    }
                    Err(err) => return Err(io("mkdirat")(err)),
                }
                let meta = DirMeta {
                    mode: e.mode,
                    mtime: Some((e.mtime, e.mtime_nsec)),
                    owner: self.owner(e),
                };
                self.dirs.insert(canon.clone(), meta);
                if self.owners && !e.xattrs.is_empty() {
                    let flags = sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW;
                    let d = sys::openat(pfd, &cname, flags, 0).map_err(io("openat"))?;
                    set_xattrs(d.as_fd(), e).map_err(io("fsetxattr"))?;
                }
            }
            Kind::File => {
                let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_EXCL | sys::O_NOFOLLOW;
                let fd = self
                    .replace(pfd, &cname, &canon, || {
                        sys::openat(pfd, &cname, flags, 0o600)
                    })
                    .map_err(io("openat"))?;
                let mut f = File::from(fd);
                loop {
                    let n = match data.read(buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => return Err(ErrorKind::Read(err)),
                    };
                    f.write_all(&buf[..n]).map_err(io("write"))?;
                    // Big files take seconds: look for a stop signal every chunk (256 KiB).
                    stop_if_signalled()?;
                }
                if let Some((uid, gid)) = self.owner(e) {
                    sys::fchown(f.as_fd(), uid, gid).map_err(io("chown"))?;
                    // After the owner: chown clears security.capability.
                    set_xattrs(f.as_fd(), e).map_err(io("fsetxattr"))?;
                }
                // After the data and the owner: both clear setuid/setgid.
                sys::fchmod(f.as_fd(), e.mode).map_err(io("fchmod"))?;
                sys::futimens(f.as_fd(), e.mtime, e.mtime_nsec).map_err(io("futimens"))?;
            }
            Kind::Symlink => {
                let target = cstring(&e.link);
                self.replace(pfd, &cname, &canon, || sys::symlinkat(&target, pfd, &cname))
                    .map_err(io("symlinkat"))?;
                if let Some((uid, gid)) = self.owner(e) {
                    sys::lchownat(pfd, &cname, uid, gid).map_err(io("chown"))?;
                }
                sys::utimensat_nofollow(pfd, &cname, e.mtime, e.mtime_nsec)
                    .map_err(io("utimensat"))?;
            }
            Kind::Fifo => {
                self.replace(pfd, &cname, &canon, || sys::mkfifoat(pfd, &cname, 0o600))
                    .map_err(io("mknodat"))?;
                if let Some((uid, gid)) = self.owner(e) {
                    sys::lchownat(pfd, &cname, uid, gid).map_err(io("chown"))?;
                }
                sys::fchmodat(pfd, &cname, e.mode).map_err(io("fchmodat"))?;
                sys::utimensat_nofollow(pfd, &cname, e.mtime, e.mtime_nsec)
                    .map_err(io("utimensat"))?;
            }
            Kind::Hardlink => self.hardlink(e, &shown, pfd, &cname, &canon)?,
            Kind::CharDevice | Kind::BlockDevice => unreachable!("refused above"),
        }
        self.mark(&canon);
        Ok(())
    }

    fn hardlink(
        &mut self,
        e: &tar::Entry,
        shown: &str,
        pfd: BorrowedFd<'_>,
        cname: &CStr,
        canon: &[u8],
    ) -> Result<(), ErrorKind> {
        let fail = |why: String| ErrorKind::Hardlink {
            entry: shown.to_string(),
            target: lossy(&e.link),
            why,
        };
        let comps = split_entry(&e.link).map_err(|b| {
            fail(match b {
                BadPath::Absolute => "target has an absolute path".into(),
                BadPath::DotDot => "target climbs out of the root with ..".into(),
            })
        })?;
        let Some((&tname, tparents)) = comps.split_last() else {
            return Err(fail("target is the root directory".into()));
        };
        let (tfd, tcanon) = self
            .parent(tparents, false)
            .map_err(|r| fail(r.why_target()))?;
        if join(&tcanon, tname) == canon {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let tname = cstring(tname);
        self.replace(pfd, cname, canon, || {
            sys::linkat(tfd.as_fd(), &tname, pfd, cname)
        })
        .map_err(|err| {
            fail(match sys::errno(&err) {
                sys::ENOENT => "target does not exist".into(),
                sys::EPERM => "target is a directory".into(),
                _ => format!("linkat: {err}"),
            })
        })
    }

    /// Runs `create`; if the name exists, removes what is there (recursively) and runs it again.
    fn replace<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        canon: &[u8],
        mut create: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        match create() {
            Err(e) if sys::errno(&e) == sys::EEXIST => {
                self.remove(dir, name, canon)?;
                create()
            }
            r => r,
        }
    }

    /// Removes `name` (canonical path `canon`) and forgets the directories that went with it.
    fn remove(&mut self, dir: BorrowedFd<'_>, name: &CStr, canon: &[u8]) -> io::Result<()> {
        // Whatever goes (a directory, or a symlink a cached path went through), the cached parent
        // may be stale now.
        self.parent_cache = None;
        if remove_all(dir, name, canon.iter().filter(|&&b| b == b'/').count())? {
            let mut below = canon.to_vec();
            below.push(b'/');
            let mut after = canon.to_vec();
            after.push(b'/' + 1);
            let gone: Vec<Vec<u8>> = self
                .dirs
                .range(below..after)
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                self.dirs.remove(&k);
            }
            self.dirs.remove(canon);
        }
        Ok(())
    }

    /// Records `canon` and its ancestors as written by the current layer.
    fn mark(&mut self, canon: &[u8]) {
        let mut p = canon.to_vec();
        while !p.is_empty() && self.layer_paths.insert(p.clone()) {
            match p.iter().rposition(|&b| b == b'/') {
                Some(i) => p.truncate(i),
                None => break,
            }
        }
    }

    /// Opaque marker: removes every child of `dir` (canonical `canon`) that the current layer did
    /// not write, descending into directories the layer did write.
    fn prune(&mut self, dir: BorrowedFd<'_>, canon: &[u8], depth: usize) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(io::Error::from_raw_os_error(sys::ELOOP));
        }
        for n in sys::read_dir(dir)? {
            let key = join(canon, n.to_bytes());
            if !self.layer_paths.contains(&key) {
                self.remove(dir, &n, &key)?;
            } else if sys::is_dir(&sys::lstatat(dir, &n)?) {
                let flags = sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW;
                let child = sys::openat(dir, &n, flags, 0)?;
                self.prune(child.as_fd(), &key, depth + 1)?;
            }
        }
        Ok(())
    }

    /// The directory that holds an entry, by its parent components: resolved inside the root
    /// (created as needed when `create`), with its canonical path.
    fn parent(&mut self, comps: &[&[u8]], create: bool) -> Result<(Rc<OwnedFd>, Vec<u8>), Resolve> {
        if comps.is_empty() {
            return Ok((self.root.clone(), Vec::new()));
        }
        let raw = comps.join(&b'/');
        if let Some(c) = &self.parent_cache {
            if c.raw == raw {
                return Ok((c.fd.clone(), c.canon.clone()));
            }
        }
        let mut found = None;
        if self.use_openat2 {
            let resolve =
                sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS;
            match sys::openat2(
                self.root.as_fd(),
                &cstring(&raw),
                sys::O_PATH | sys::O_DIRECTORY,
                0,
                resolve,
            ) {
                // No symlink on the way: the raw path is the canonical one.
                Ok(fd) => found = Some((Rc::new(fd), raw.clone())),
                Err(e) if matches!(sys::errno(&e), sys::ENOSYS | sys::EPERM | sys::EINVAL) => {
                    self.use_openat2 = false
                }
                // A symlink, a missing directory or a non-directory on the way: walk it.
                Err(_) => {}
            }
        }
        let (fd, canon) = match found {
            Some(f) => f,
            None => self.walk(comps, create)?,
        };
        self.parent_cache = Some(Cached {
            raw,
            fd: fd.clone(),
            canon: canon.clone(),
        });
        Ok((fd, canon))
    }

    /// Resolves directory components one at a time from the root with `O_NOFOLLOW` opens,
    /// following symlinks with chroot semantics.
    fn walk(&mut self, comps: &[&[u8]], create: bool) -> Result<(Rc<OwnedFd>, Vec<u8>), Resolve> {
        // Directories opened so far below the root, each with the canonical length before it.
        let mut stack: Vec<(OwnedFd, usize)> = Vec::new();
        let mut canon: Vec<u8> = Vec::new();
        let mut pending: Vec<Vec<u8>> = comps.iter().rev().map(|c| c.to_vec()).collect();
        let mut hops = 0;
        let mut last_link = Vec::new();
        let flags = sys::O_PATH | sys::O_DIRECTORY | sys::O_NOFOLLOW;
        while let Some(c) = pending.pop() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                match stack.pop() {
                    Some((_, len)) => canon.truncate(len),
                    None => return Err(Resolve::Escapes { link: last_link }),
                }
                continue;
            }
            if stack.len() >= MAX_DEPTH {
                return Err(Resolve::TooDeep);
            }
            let cur = match stack.last() {
                Some((fd, _)) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let cc = cstring(&c);
            let fd = match sys::openat(cur, &cc, flags, 0) {
                Ok(fd) => fd,
                Err(e) if sys::errno(&e) == sys::ENOENT && create => {
                    match sys::mkdirat(cur, &cc, 0o700) {
                        Ok(()) => {
                            // Implicit parent, as Docker makes it.
                            let meta = DirMeta {
                                mode: 0o755,
                                mtime: None,
                                owner: None,
                            };
                            self.dirs.insert(join(&canon, &c), meta);
                        }
                        Err(e) if sys::errno(&e) == sys::EEXIST => {}
                        Err(e) => return Err(Resolve::Io("mkdirat", e)),
                    }
                    sys::openat(cur, &cc, flags, 0).map_err(|e| Resolve::Io("openat", e))?
                }
                Err(e) if sys::errno(&e) == sys::ENOENT => return Err(Resolve::NotFound),
                Err(e) if matches!(sys::errno(&e), sys::ENOTDIR | sys::ELOOP) => {
                    let st = sys::lstatat(cur, &cc).map_err(|e| Resolve::Io("fstatat", e))?;
                    if !sys::is_symlink(&st) {
                        return Err(Resolve::NotDir(join(&canon, &c)));
                    }
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Resolve::Loop);
                    }
                    let target =
                        sys::readlinkat(cur, &cc).map_err(|e| Resolve::Io("readlinkat", e))?;
                    last_link = join(&canon, &c);
                    if target.first() == Some(&b'/') {
                        // Chroot semantics: an absolute target starts again at the root.
                        stack.clear();
                        canon.clear();
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(|t| t.to_vec()));
                    continue;
                }
                Err(e) => return Err(Resolve::Io("openat", e)),
            };
            let len = canon.len();
            if !canon.is_empty() {
                canon.push(b'/');
            }
            canon.extend_from_slice(&c);
            stack.push((fd, len));
        }
        match stack.pop() {
            Some((fd, _)) => Ok((Rc::new(fd), canon)),
            None => Ok((self.root.clone(), canon)),
        }
    }

    /// Opens a directory by canonical path (no symlinks on it by construction).
    fn open_canonical(&mut self, canon: &[u8]) -> io::Result<OwnedFd> {
        let flags = sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW;
        if canon.is_empty() {
            return sys::openat(self.root.as_fd(), c".", flags, 0);
        }
        let path = cstring(canon);
        if self.use_openat2 {
            let resolve =
                sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS;
            match sys::openat2(self.root.as_fd(), &path, flags, 0, resolve) {
                Err(e) if matches!(sys::errno(&e), sys::ENOSYS | sys::EPERM | sys::EINVAL) => {
                    self.use_openat2 = false
                }
                r => return r,
            }
        }
        let mut cur: Option<OwnedFd> = None;
        let comps: Vec<&[u8]> = canon.split(|&b| b == b'/').collect();
        for (i, c) in comps.iter().enumerate() {
            let dir = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
            let f = if i + 1 == comps.len() {
                flags
            } else {
                sys::O_PATH | sys::O_DIRECTORY | sys::O_NOFOLLOW
            };
            cur = Some(sys::openat(dir, &cstring(c), f, 0)?);
        }
        Ok(cur.expect("canonical path has a component"))
    }

    /// Applies directory modes and mtimes, deepest first (so a `0555` parent is set after its
    /// children were, and creating children no longer touches a directory's mtime).
    pub fn finish(mut self) -> Result<(), ExtractError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (canon, meta) in dirs.iter().rev() {
            let shown = if canon.is_empty() {
                "./".to_string()
            } else {
                lossy(canon)
            };
            let fail = |op: &'static str| {
                let entry = shown.clone();
                move |source| ExtractError {
                    layer: None,
                    kind: ErrorKind::Io { entry, op, source },
                }
            };
            let fd = self.open_canonical(canon).map_err(fail("openat"))?;
            if let Some((uid, gid)) = meta.owner {
                sys::fchown(fd.as_fd(), uid, gid).map_err(fail("chown"))?;
            }
            sys::fchmod(fd.as_fd(), meta.mode).map_err(fail("fchmod"))?;
            if let Some((s, ns)) = meta.mtime {
                sys::futimens(fd.as_fd(), s, ns).map_err(fail("futimens"))?;
            }
        }
        Ok(())
    }
}

/// The stored bytes of one layer, read with `pread` from the oci2bin file and hashed on the way.
struct LayerBytes<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    hasher: Sha256,
}

impl Read for LayerBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// A decompressor whose errors say which format failed ("gzip: unexpected end of file").
struct Named<R> {
    what: &'static str,
    inner: R,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let short = if e.kind() == io::ErrorKind::UnexpectedEof {
                "stream ends early (truncated)".to_string()
            } else {
                e.to_string()
            };
            io::Error::new(e.kind(), format!("{}: {short}", self.what))
        })
    }
}

/// A zstd stream of one or more frames (skippable frames skipped), decoded with ruzstd.
struct ZstdFrames<R> {
    src: R,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    /// What a decoding error means: input that ran out is a truncated stream, anything else a
    /// corrupt one. (ruzstd's own error text is not kept: its formatting code is ~10 KiB of
    /// loader, and its messages are Debug dumps.)
    fn failure(&mut self) -> io::Error {
        match self.src.fill_buf() {
            Ok([]) => io::ErrorKind::UnexpectedEof.into(),
            Ok(_) => io::Error::new(io::ErrorKind::InvalidData, "corrupt or unsupported stream"),
            Err(e) => e,
        }
    }

    fn new(src: R) -> ZstdFrames<R> {
        ZstdFrames {
            src,
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.dec.reset(&mut self.src) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let skipped =
                            io::copy(&mut (&mut self.src).take(length as u64), &mut io::sink())?;
                        if skipped != length as u64 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        continue;
                    }
                    Err(_) => return Err(self.failure()),
                }
            }
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                if self
                    .dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(want))
                    .is_err()
                {
                    return Err(self.failure());
                }
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() {
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
