//! Resource limits: rlimits and the access checks the cgroup facts need.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets the soft and hard limits of `resource`.
pub fn set_rlimit(resource: i32, soft: u64, hard: u64) -> io::Result<()> {
    let l = libc::rlimit {
        rlim_cur: soft as _,
        rlim_max: hard as _,
    };
    // SAFETY: setrlimit only reads `l`, which lives on our stack for the call.
    check(unsafe { libc::setrlimit(resource as _, &l) })
}

/// Whether this process may write to `path` (access(2) checks the real ids: the loader is
/// never setuid, so they are the effective ones).
pub fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; access only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}
