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

/// A socket (TCP, or UDP with `udp`) bound to port 0 of the wildcard address of IPv4, or of
/// IPv6 with `v6`: the kernel picks a free port, which the returned socket holds.
pub fn bind_any(v6: bool, udp: bool) -> io::Result<(OwnedFd, u16)> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let kind = if udp {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: socket(2) with constant arguments; no memory is passed.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket succeeded, so fd is open and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_in6 is plain old data; all-zero is the wildcard address, port 0.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = family as libc::sa_family_t;
    let size = |t: usize| t as libc::socklen_t;
    let mut len = if v6 {
        size(std::mem::size_of::<libc::sockaddr_in6>())
    } else {
        size(std::mem::size_of::<libc::sockaddr_in>())
    };
    let at = &mut sa as *mut libc::sockaddr_in6 as *mut libc::sockaddr;
    // SAFETY: `at` points to `len` valid bytes of a sockaddr of that family (sockaddr_in's
    // family and port lie where sockaddr_in6's do, and the rest of it is zero).
    if unsafe { libc::bind(fd.as_raw_fd(), at, len) } == -1 {
        return Err(io::Error::last_os_error());
    }
    len = size(std::mem::size_of::<libc::sockaddr_in6>());
    // SAFETY: `at` has room for `len` bytes; the kernel writes at most that many.
    if unsafe { libc::getsockname(fd.as_raw_fd(), at, &mut len) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, u16::from_be(sa.sin6_port)))
}
