//! Resolving paths inside the extraction root without ever leaving it: `openat2` with
//! `RESOLVE_BENEATH` when the kernel has it, else a walk one component at a time with chroot
//! semantics for symlinks.

use super::{DirMeta, ErrorKind, Extractor, MAX_DEPTH, MAX_SYMLINK_HOPS};
use crate::sys::fs as sys;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

/// The last resolved parent directory: tar members come grouped by directory, so most entries
/// hit it and cost no path resolution at all.
pub(super) struct Cached {
    pub(super) raw: Vec<u8>,
    pub(super) fd: Rc<OwnedFd>,
    pub(super) canon: Vec<u8>,
}

/// Why a path could not be resolved inside the root.
#[derive(Debug)]
pub(super) enum Resolve {
    Escapes { link: Vec<u8> },
    Loop,
    NotDir(Vec<u8>),
    NotFound,
    TooDeep,
    Io(&'static str, io::Error),
}

impl Resolve {
    pub(super) fn into_kind(self, entry: &str) -> ErrorKind {
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
    pub(super) fn why_target(self) -> String {
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

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if !parent.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

pub(super) fn cstring(b: &[u8]) -> CString {
    // Tar names and symlink targets never hold NUL: the reader refuses them.
    CString::new(b).expect("path without NUL")
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadPath {
    Absolute,
    DotDot,
}

/// Splits an entry name into components, dropping empty and `.` ones (so `./a//b/` is `a`, `b`).
pub(super) fn split_entry(path: &[u8]) -> Result<Vec<&[u8]>, BadPath> {
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

impl Extractor {
    /// The directory that holds an entry, by its parent components: resolved inside the root
    /// (created as needed when `create`), with its canonical path.
    pub(super) fn parent(
        &mut self,
        comps: &[&[u8]],
        create: bool,
    ) -> Result<(Rc<OwnedFd>, Vec<u8>), Resolve> {
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
    pub(super) fn walk(
        &mut self,
        comps: &[&[u8]],
        create: bool,
    ) -> Result<(Rc<OwnedFd>, Vec<u8>), Resolve> {
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
                            if let Some(l) = &mut self.layer {
                                l.implicit_dirs.insert(join(&canon, &c));
                            }
                        }
                        Err(e) if sys::errno(&e) == sys::EEXIST => {}
                        Err(e) => return Err(Resolve::Io("mkdirat", e)),
                    }
                    sys::openat(cur, &cc, flags, 0).map_err(|e| Resolve::Io("openat", e))?
                }
                Err(e) if sys::errno(&e) == sys::ENOENT => return Err(Resolve::NotFound),
                Err(e) if matches!(sys::errno(&e), sys::ENOTDIR | sys::ELOOP) => {
                    let st = sys::lstatat(cur, &cc).map_err(|e| Resolve::Io("fstatat", e))?;
                    let marker = self
                        .layer
                        .as_ref()
                        .is_some_and(|l| super::whiteout::is_marker(l.form, cur, &cc, &st));
                    if marker && create {
                        // The layer whited the name out, then puts something beneath it: in
                        // the merged tree, a new directory (made implicitly, as above) without
                        // what was there before, so an opaque one here.
                        let io = |op| move |e| Resolve::Io(op, e);
                        sys::unlinkat(cur, &cc, false).map_err(io("unlinkat"))?;
                        sys::mkdirat(cur, &cc, 0o700).map_err(io("mkdirat"))?;
                        let d = sys::openat(cur, &cc, flags, 0).map_err(io("openat"))?;
                        super::whiteout::make_opaque(d.as_fd()).map_err(io("opaque"))?;
                        let path = join(&canon, &c);
                        let meta = DirMeta {
                            mode: 0o755,
                            mtime: None,
                            owner: None,
                        };
                        self.dirs.insert(path.clone(), meta);
                        if let Some(l) = &mut self.layer {
                            l.implicit_dirs.insert(path.clone());
                            l.opaque_dirs.insert(path);
                        }
                        pending.push(c);
                        continue;
                    }
                    if marker {
                        return Err(Resolve::NotFound);
                    }
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
    pub(super) fn open_canonical(&mut self, canon: &[u8]) -> io::Result<OwnedFd> {
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
}
