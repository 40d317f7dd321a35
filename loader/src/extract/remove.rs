//! Removing trees the extraction made, read-only directories included.

use super::MAX_DEPTH;
use crate::sys::fs as sys;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

pub(super) fn open_dir_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(sys::EINVAL))?;
    let cwd = sys::cwd();
    sys::openat(cwd, &c, flags | sys::O_DIRECTORY, 0)
}

/// Removes `name` in `dir`: unlinks a non-directory, or empties and removes a directory. Returns
/// whether a directory was removed.
pub(super) fn remove_all(dir: BorrowedFd<'_>, name: &CStr, depth: usize) -> io::Result<bool> {
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
