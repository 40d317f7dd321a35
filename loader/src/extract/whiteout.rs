//! Whiteouts: OCI `.wh.NAME` entries and opaque directories (`.wh..wh..opq`) remove what
//! earlier layers put in the tree; in a layer extracted alone they become the markers overlayfs
//! reads (see [`Whiteouts`]).

use super::remove::remove_all;
use super::resolve::{cstring, join};
use super::{ErrorKind, Extractor, Whiteouts, MAX_DEPTH};
use crate::stack::{OPAQUE_XATTR, WHITEOUT_XATTR};
use crate::sys::fs as sys;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Whether `name` in `dir` (lstat `st`) is a whiteout marker of the form `form`. In a layer
/// tree every such object is ours: an image's own `user.overlay.*` xattrs are never set.
pub(super) fn is_marker(
    form: Whiteouts,
    dir: BorrowedFd<'_>,
    name: &CStr,
    st: &libc::stat,
) -> bool {
    match form {
        Whiteouts::CharDev => sys::is_whiteout_dev(st),
        Whiteouts::Xattr => {
            st.st_mode & libc::S_IFMT == libc::S_IFREG
                && st.st_size == 0
                && sys::openat(dir, name, sys::O_RDONLY | sys::O_NOFOLLOW, 0)
                    .and_then(|f| sys::fgetxattr(f.as_fd(), WHITEOUT_XATTR, &mut []))
                    .is_ok_and(|v| v.is_some())
        }
    }
}

/// Sets `user.overlay.opaque` of the directory `dir` (an `O_PATH` fd will do) to `value`.
pub(super) fn mark_dir(dir: BorrowedFd<'_>, value: &[u8]) -> io::Result<()> {
    let d = sys::openat(dir, c".", sys::O_RDONLY | sys::O_DIRECTORY, 0)?;
    sys::fsetxattr(d.as_fd(), OPAQUE_XATTR, value)
}

/// Makes the whiteout `name` in `dir`, in the form `form`.
pub fn make_whiteout(form: Whiteouts, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match form {
        Whiteouts::CharDev => sys::mkwhiteoutat(dir, name),
        Whiteouts::Xattr => {
            let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_EXCL | sys::O_NOFOLLOW;
            let f = sys::openat(dir, name, flags, 0o600)?;
            sys::fsetxattr(f.as_fd(), WHITEOUT_XATTR, b"")?;
            // Overlayfs looks for these only in directories marked so.
            mark_dir(dir, b"x")
        }
    }
}

/// Makes the directory `dir` opaque: the layers below it do not show through.
pub fn make_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    mark_dir(dir, b"y")
}

impl Extractor {
    /// An OCI whiteout entry `name` in the directory `pfd` (canonical `pcanon`): `.wh..wh..opq`
    /// empties the directory of what earlier layers put there, `.wh.NAME` removes `NAME`.
    pub(super) fn whiteout(
        &mut self,
        name: &[u8],
        pfd: BorrowedFd<'_>,
        pcanon: &[u8],
        shown: &str,
    ) -> Result<(), ErrorKind> {
        let io = |op: &'static str| {
            let entry = shown.to_string();
            move |source: io::Error| ErrorKind::Io { entry, op, source }
        };
        let target = &name[4..];
        if name == b".wh..wh..opq" && self.layer.is_some() {
            make_opaque(pfd).map_err(io("opaque whiteout"))?;
            if let Some(l) = &mut self.layer {
                // Overlayfs stacks the roots of its layers whatever their markers say.
                l.info.opaque_root |= pcanon.is_empty();
                l.opaque_dirs.insert(pcanon.to_vec());
            }
            self.mark(pcanon);
            return Ok(());
        }
        if name == b".wh..wh..opq" {
            let dir = sys::openat(pfd, c".", sys::O_RDONLY | sys::O_DIRECTORY, 0)
                .map_err(io("openat"))?;
            self.prune(dir.as_fd(), pcanon, 0)
                .map_err(io("opaque whiteout"))?;
            self.mark(pcanon);
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(ErrorKind::BadWhiteout(shown.to_string()));
        }
        let removed = join(pcanon, target);
        let ctarget = cstring(target);
        self.remove(pfd, &ctarget, &removed)
            .map_err(io("whiteout"))?;
        let Some(l) = &mut self.layer else {
            return Ok(());
        };
        // In an opaque directory nothing below shows anyway.
        if !l.opaque_dirs.contains(pcanon) {
            make_whiteout(l.form, pfd, &ctarget).map_err(io("whiteout"))?;
            l.whiteout_dirs.insert(pcanon.to_vec());
        }
        Ok(())
    }

    /// Removes `name` (canonical path `canon`) and forgets the directories that went with it.
    pub(super) fn remove(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        canon: &[u8],
    ) -> io::Result<()> {
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
    pub(super) fn mark(&mut self, canon: &[u8]) {
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
    pub(super) fn prune(
        &mut self,
        dir: BorrowedFd<'_>,
        canon: &[u8],
        depth: usize,
    ) -> io::Result<()> {
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
}
