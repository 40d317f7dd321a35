//! Syscalls of the network helpers and joined namespaces: setns of any kind, an anonymous
//! file for a helper's messages.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Joins the namespace `fd` refers to; `kind` is a `CLONE_NEW*` flag that it must be.
pub fn setns(fd: BorrowedFd<'_>, kind: i32) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag; fd is open for the borrow.
    if unsafe { libc::setns(fd.as_raw_fd(), kind) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An anonymous in-memory file (close-on-exec), shared with children that inherit it.
pub fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create succeeded, so fd is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
