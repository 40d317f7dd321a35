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

/// `RLIM_INFINITY`: what `-1` and `unlimited` mean to `--ulimit`.
pub const INFINITY: u64 = libc::RLIM_INFINITY as u64;

/// The (soft, hard) limits of `resource`.
pub fn get_rlimit(resource: i32) -> io::Result<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `l`, which lives on our stack for the call.
    check(unsafe { libc::getrlimit(resource as _, &mut l) })?;
    Ok((l.rlim_cur as u64, l.rlim_max as u64))
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

/// Whether this process (its effective ids) may write to `path`.
pub fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; faccessat only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}
