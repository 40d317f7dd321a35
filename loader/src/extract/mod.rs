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
//!
//! A layer can also be extracted alone into a directory of its own ([`Extractor::for_layer`]),
//! for the layer store: its whiteouts then become overlayfs whiteouts ([`Whiteouts`]) and its
//! opaque directories get `user.overlay.opaque=y`, so that an overlay of the layers (mounted with
//! `userxattr`) shows the tree applying them in order gives. Where that cannot be known from the
//! layer alone, [`LayerInfo`] says so, and the caller extracts the merged tree instead.
//!
//! By concern: [`resolve`] finds parent directories inside the root, [`entry`] creates each
//! object, [`whiteout`] removes what later layers hide, [`stream`] reads, hashes and decompresses
//! a blob, [`remove`] deletes trees.

use crate::format::{Compression, LayerRef};
use crate::gzip::GzipMembers;
use crate::sys::fs as sys;
use crate::sys::sig;
use crate::tar::{self, TarError};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

mod entry;
mod pipe;
mod remove;
mod resolve;
mod stream;
mod whiteout;

use remove::open_dir_path;
pub use remove::remove_tree;
use resolve::{lossy, Cached};
pub use stream::copy_blob;
use stream::{LayerBytes, Named, ZstdFrames};
pub use whiteout::{make_opaque, make_whiteout};

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

/// How a layer extracted alone records OCI whiteouts, in a form overlayfs reads with `userxattr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// 0/0 character devices (any process may make them since Linux 5.8).
    CharDev,
    /// Zero-size files with `user.overlay.whiteout`, in a directory marked
    /// `user.overlay.opaque=x` (Linux 6.7 and later).
    Xattr,
}

/// What extracting one layer alone found: whether an overlay of it on other layers shows the
/// tree that applying it to them would give ([`crate::cache::stackable`] decides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerInfo {
    /// A hard link whose target is not in the layer.
    pub outside_link: bool,
    /// The root was made opaque: overlayfs stacks the roots of its layers whatever they say.
    pub opaque_root: bool,
    /// Directories the layer made without an entry for them (canonical paths), each with
    /// whether an entry of the layer described it afterwards. On other layers such a path could
    /// be a symlink the entry goes through, or a directory keeping its own attributes.
    pub implicit_dirs: Vec<(Vec<u8>, bool)>,
    /// Directories (canonical paths, `""` the root) that hold whiteouts: one no other layer
    /// merges with would show them.
    pub whiteout_dirs: Vec<Vec<u8>>,
}

const INFO_MAGIC: &[u8] = b"oci2bin layer info v1\n";

impl LayerInfo {
    /// The `info` file: a header, the flags, then each directory NUL-terminated after a tag:
    /// `i` implicit, `e` implicit then described, `w` holding whiteouts.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = INFO_MAGIC.to_vec();
        b.extend_from_slice(b"flags");
        if self.outside_link {
            b.extend_from_slice(b" outside-link");
        }
        if self.opaque_root {
            b.extend_from_slice(b" opaque-root");
        }
        b.push(b'\n');
        let implicit = self
            .implicit_dirs
            .iter()
            .map(|(d, e)| (if *e { b'e' } else { b'i' }, d));
        for (tag, d) in implicit.chain(self.whiteout_dirs.iter().map(|d| (b'w', d))) {
            b.push(tag);
            b.extend_from_slice(d);
            b.push(0);
        }
        b
    }

    /// Reads an `info` file; `None` when it is not one of this version.
    pub fn parse(b: &[u8]) -> Option<LayerInfo> {
        let rest = b.strip_prefix(INFO_MAGIC)?;
        let nl = rest.iter().position(|&c| c == b'\n')?;
        let flags = std::str::from_utf8(&rest[..nl])
            .ok()?
            .strip_prefix("flags")?;
        let mut info = LayerInfo::default();
        for f in flags.split_whitespace() {
            match f {
                "outside-link" => info.outside_link = true,
                "opaque-root" => info.opaque_root = true,
                _ => return None,
            }
        }
        let dirs = &rest[nl + 1..];
        if dirs.is_empty() {
            return Some(info);
        }
        for d in dirs.strip_suffix(&[0])?.split(|&c| c == 0) {
            let (&tag, d) = d.split_first()?;
            match tag {
                b'i' | b'e' => info.implicit_dirs.push((d.to_vec(), tag == b'e')),
                b'w' => info.whiteout_dirs.push(d.to_vec()),
                _ => return None,
            }
        }
        Some(info)
    }
}

/// The state of a layer extracted alone.
struct Layer {
    form: Whiteouts,
    info: LayerInfo,
    implicit_dirs: HashSet<Vec<u8>>,
    whiteout_dirs: HashSet<Vec<u8>>,
    opaque_dirs: HashSet<Vec<u8>>,
}

/// A directory's final mode and mtime, applied by [`Extractor::finish`].
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: Option<(i64, u32)>,
    /// uid/gid to set when extracting with owners.
    owner: Option<(u32, u32)>,
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
    /// The umask: a file whose mode it leaves whole is created with that mode (no fchmod).
    umask: u32,
    /// Set when extracting one layer alone ([`Extractor::for_layer`]).
    layer: Option<Layer>,
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
            umask: sys::umask(),
            layer: None,
        })
    }

    /// Starts extracting one layer alone into the existing empty directory `dest`, its whiteouts
    /// in the form `form`. Apply exactly one layer, then call [`Extractor::finish_layer`].
    pub fn for_layer(dest: &Path, form: Whiteouts) -> io::Result<Extractor> {
        let mut x = Extractor::new(dest)?;
        x.layer = Some(Layer {
            form,
            info: LayerInfo::default(),
            implicit_dirs: HashSet::new(),
            whiteout_dirs: HashSet::new(),
            opaque_dirs: HashSet::new(),
        });
        Ok(x)
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
        // A big compressed layer is decompressed by a child on another CPU (see [`pipe`]).
        if layer.compression != Compression::None && layer.size >= pipe::MIN_SIZE && sys::cpus() > 1
        {
            if let Ok(mut child) = pipe::spawn(exe, layer) {
                let r = self.apply_stream(&mut child.data);
                return child.finish(r).map_err(|kind| ExtractError {
                    layer: Some(id),
                    kind,
                });
            }
        }
        let mut src = LayerBytes::open(exe, layer);
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
        // A corrupt blob is reported as such even when it first broke the tar or the
        // decompressor.
        let (drained, digest_ok) = LayerBytes::drain(src, layer);
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

    /// Ends a layer extracted alone ([`Extractor::for_layer`]): drops the whiteouts an opaque
    /// directory made useless (overlayfs would list them there), applies directory modes and
    /// mtimes, and says what the layer needs of the layers below it.
    pub fn finish_layer(mut self) -> Result<LayerInfo, ExtractError> {
        let l = self.layer.take().expect("finish_layer after for_layer");
        let mut info = l.info;
        for d in l.implicit_dirs {
            // An entry for it sets its mtime; an implicit one has none.
            let described = self.dirs.get(&d).is_some_and(|m| m.mtime.is_some());
            info.implicit_dirs.push((d, described));
        }
        for d in &l.whiteout_dirs {
            if !l.opaque_dirs.contains(d) {
                info.whiteout_dirs.push(d.clone());
                continue;
            }
            let fail = |op: &'static str| {
                let entry = lossy(d);
                move |source| ExtractError {
                    layer: None,
                    kind: ErrorKind::Io { entry, op, source },
                }
            };
            let fd = match self.open_canonical(d) {
                Ok(fd) => fd,
                // Gone with a later entry of the layer.
                Err(_) => continue,
            };
            for n in sys::read_dir(fd.as_fd()).map_err(fail("readdir"))? {
                let st = sys::lstatat(fd.as_fd(), &n).map_err(fail("fstatat"))?;
                if whiteout::is_marker(l.form, fd.as_fd(), &n, &st) {
                    sys::unlinkat(fd.as_fd(), &n, false).map_err(fail("unlinkat"))?;
                }
            }
        }
        self.finish()?;
        Ok(info)
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

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
pub(crate) mod tests;
