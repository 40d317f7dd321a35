//! Syscalls of the container lifecycle: joining a running container's namespaces (`oci2bin
//! exec`) and detaching from the caller's session (`-d`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Joins the namespace `fd` (an open `/proc/PID/ns/*`) refers to; `nstype` 0 accepts any kind.
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag; fd is open for the borrow.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) })
}

/// Makes the directory `dir` our root and working directory (fchdir, then chroot(".")).
pub fn chroot_to(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fchdir takes a descriptor, open for the borrow.
    check(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    // SAFETY: "." is a NUL-terminated string literal.
    check(unsafe { libc::chroot(c".".as_ptr()) })
}

/// Starts a new session (and process group) with us as its leader: no controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until one of `fds` is readable or hung up (or `timeout_ms` passes; -1 waits for
/// ever); returns, for each, whether it has something to read or has hung up.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: the pointer and length describe `p`, a live array of pollfd.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(p.iter().map(|x| x.revents != 0).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Marks us dumpable again (setuid cleared it), as an execve would: our init is the loader, not
/// an exec'd program, and `oci2bin exec` needs to open its `/proc/PID/ns/*`.
pub fn set_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer flag and no pointers.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1 as libc::c_ulong, 0, 0, 0) })
}
