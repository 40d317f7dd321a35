//! Creating one tar entry's object (directory, file, symlink, fifo, hardlink) inside the root,
//! replacing what was there, with its mode, times and (with owners) uid/gid and xattrs.

use super::resolve::Resolve;
use super::resolve::{cstring, join, lossy, split_entry, BadPath};
use super::whiteout::{is_marker, make_opaque};
use super::{stop_if_signalled, DirMeta, ErrorKind, Extractor, MAX_DEPTH};
use crate::stack::OVERLAY_XATTR_PREFIX;
use crate::sys::fs as sys;
use crate::tar::{self, Kind};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

/// Sets the xattrs of `e` a user namespace may set: `user.*` and `security.capability` (file
/// capabilities, which the kernel ties to the namespace's root). Others (`trusted.*`, other
/// `security.*`) need the host's root and are left out, as rootless podman leaves them; so are
/// `user.overlay.*`, which the overlay of the tree would read as its own markers (and never
/// shows a container).
pub(super) fn set_xattrs(fd: BorrowedFd<'_>, e: &tar::Entry) -> io::Result<()> {
    for (name, value) in &e.xattrs {
        if !(name.starts_with(b"user.") || name == b"security.capability")
            || name.starts_with(OVERLAY_XATTR_PREFIX)
        {
            continue;
        }
        let Ok(name) = CString::new(name.clone()) else {
            continue;
        };
        sys::fsetxattr(fd, &name, value)?;
    }
    Ok(())
}

impl Extractor {
    pub(super) fn apply_entry(
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

        if name.starts_with(b".wh.") {
            return self.whiteout(name, pfd, &pcanon, &shown);
        }

        let cname = cstring(name);
        match e.kind {
            Kind::Dir => {
                match sys::mkdirat(pfd, &cname, 0o700) {
                    Ok(()) => {}
                    Err(err) if sys::errno(&err) == sys::EEXIST => {
                        let st = sys::lstatat(pfd, &cname).map_err(io("fstatat"))?;
                        if !sys::is_dir(&st) {
                            let over_whiteout = self
                                .layer
                                .as_ref()
                                .is_some_and(|l| is_marker(l.form, pfd, &cname, &st));
                            self.remove(pfd, &cname, &canon).map_err(io("unlinkat"))?;
                            sys::mkdirat(pfd, &cname, 0o700).map_err(io("mkdirat"))?;
                            if over_whiteout {
                                // What the whiteout removed must stay hidden below the new
                                // directory, as it is gone in the merged tree.
                                let flags = sys::O_PATH | sys::O_DIRECTORY | sys::O_NOFOLLOW;
                                let d = sys::openat(pfd, &cname, flags, 0).map_err(io("openat"))?;
                                make_opaque(d.as_fd()).map_err(io("opaque"))?;
                                if let Some(l) = &mut self.layer {
                                    l.opaque_dirs.insert(canon.clone());
                                }
                            }
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
                // Most files (0644, 0755 under umask 022) are created with their mode, one call
                // less each (~10k in a Debian base). Not those whose mode the umask cuts, nor
                // setuid/setgid ones (writing clears them), nor those chowned (likewise).
                let owner = self.owner(e);
                let exact = owner.is_none() && e.mode & (0o7000 | self.umask) == 0;
                let create = if exact { e.mode } else { 0o600 };
                let fd = self
                    .replace(pfd, &cname, &canon, || {
                        sys::openat(pfd, &cname, flags, create)
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
                if let Some((uid, gid)) = owner {
                    sys::fchown(f.as_fd(), uid, gid).map_err(io("chown"))?;
                    // After the owner: chown clears security.capability.
                    set_xattrs(f.as_fd(), e).map_err(io("fsetxattr"))?;
                }
                // After the data and the owner: both clear setuid/setgid.
                if !exact {
                    sys::fchmod(f.as_fd(), e.mode).map_err(io("fchmod"))?;
                }
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

    pub(super) fn hardlink(
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
        let (tfd, tcanon) = match self.parent(tparents, false) {
            Ok(t) => t,
            // Alone, a layer cannot tell whether a layer below has the target: the merged
            // extraction will.
            Err(Resolve::NotFound | Resolve::NotDir(_)) if self.layer.is_some() => {
                return self.outside_link()
            }
            Err(r) => return Err(fail(r.why_target())),
        };
        if join(&tcanon, tname) == canon {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let tname = cstring(tname);
        if let Some(l) = &self.layer {
            match sys::lstatat(tfd.as_fd(), &tname) {
                Ok(st) if !is_marker(l.form, tfd.as_fd(), &tname, &st) => {}
                _ => return self.outside_link(),
            }
        }
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

    /// Notes a link whose target the layer lacks (extracting a layer alone), and goes on.
    fn outside_link(&mut self) -> Result<(), ErrorKind> {
        if let Some(l) = &mut self.layer {
            l.info.outside_link = true;
        }
        Ok(())
    }

    /// Runs `create`; if the name exists, removes what is there (recursively) and runs it again.
    pub(super) fn replace<T>(
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
}
