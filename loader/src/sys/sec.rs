//! Security syscalls: capability sets (capset, the bounding and ambient sets), no_new_privs and
//! installing a seccomp filter.

use std::io;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: every prctl used here takes integer arguments only; no pointer is passed.
    check(unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// Drops every capability not in `keep` from the bounding set. Numbers past the kernel's last
/// capability (EINVAL) are skipped.
pub fn limit_bounding_set(keep: u64) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            r => r?,
        }
    }
    Ok(())
}

/// Keeps the permitted set across a change of uid from 0 (reset by the next execve).
pub fn keep_caps() -> io::Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, 1)
}

pub fn no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// Sets the effective, permitted and inheritable sets (capset, version 3: 64 bits), then raises
/// each capability of `ambient` (each must be permitted and inheritable).
pub fn set_caps(effective: u64, permitted: u64, inheritable: u64, ambient: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let half = |s: u64, hi: bool| if hi { (s >> 32) as u32 } else { s as u32 };
    let data = [false, true].map(|hi| Data {
        effective: half(effective, hi),
        permitted: half(permitted, hi),
        inheritable: half(inheritable, hi),
    });
    // SAFETY: capset reads one header and two data structs (version 3), both live and laid out
    // as the kernel's __user_cap_header_struct / __user_cap_data_struct.
    check(unsafe {
        libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) as libc::c_int
    })?;
    for cap in 0..64u32 {
        if ambient & (1 << cap) != 0 {
            // SAFETY: integer arguments only.
            check(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            })?;
        }
    }
    Ok(())
}

/// The permitted capability set of this process (capget, version 3).
pub fn permitted() -> io::Result<u64> {
    let mut hdr = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    // SAFETY: capget writes two __user_cap_data_struct (three u32 each) into `data`, which has
    // room for them, after reading the two-u32 header.
    check(unsafe {
        libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()) as libc::c_int
    })?;
    Ok(data[1] as u64 | (data[4] as u64) << 32)
}

/// Installs a seccomp filter: `prog` is `struct sock_filter` bytes ([`crate::seccomp::to_bytes`]).
/// Needs no_new_privs, or CAP_SYS_ADMIN in the current user namespace.
pub fn install_filter(prog: &[u8]) -> io::Result<()> {
    if prog.is_empty() || !prog.len().is_multiple_of(8) || prog.len() / 8 > u16::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "malformed filter",
        ));
    }
    // Copied to 8-byte-aligned storage: the record's bytes may lie anywhere.
    let mut insns: Vec<u64> = prog
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    let fprog = libc::sock_fprog {
        len: insns.len() as libc::c_ushort,
        filter: insns.as_mut_ptr().cast::<libc::sock_filter>(),
    };
    // SAFETY: `fprog` points at `len` live, aligned sock_filter structs (8 bytes each, the same
    // layout as the bytes we copied); the kernel copies the program before returning.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            0 as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        ) as libc::c_int
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp;
    use crate::sys::ns;

    /// Runs `f` in a forked child; its exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        match ns::fork().unwrap() {
            ns::Forked::Child => ns::exit_now(f()),
            ns::Forked::Parent(pid) => match ns::wait_for(pid).unwrap() {
                ns::Exit::Code(c) => c,
                ns::Exit::Signal(s) => 128 + s,
            },
        }
    }

    #[test]
    fn an_installed_filter_answers_with_the_profiles_errno_in_the_kernel() {
        let profile = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77}]}"#;
        let c = seccomp::compile(
            profile,
            seccomp::Target {
                caps: 0,
                kernel: (6, 1),
            },
        )
        .unwrap();
        let bytes = seccomp::to_bytes(&c.insns);
        let dir = tempfile::tempdir().unwrap();
        let code = in_child(|| {
            if no_new_privs().is_err() || install_filter(&bytes).is_err() {
                return 1;
            }
            match std::fs::create_dir(dir.path().join("x")) {
                Err(e) if e.raw_os_error() == Some(77) => {}
                _ => return 2,
            }
            // Everything else still works.
            if std::fs::read_dir(dir.path()).is_err() {
                return 3;
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn dockers_default_filter_loads_in_the_kernel_and_refuses_unshare() {
        let c = seccomp::compile(
            seccomp::DOCKER_DEFAULT.as_bytes(),
            seccomp::Target {
                caps: crate::caps::DOCKER_DEFAULT,
                kernel: (6, 1),
            },
        )
        .unwrap();
        let bytes = seccomp::to_bytes(&c.insns);
        let code = in_child(|| {
            if no_new_privs().is_err() || install_filter(&bytes).is_err() {
                return 1;
            }
            match ns::unshare(ns::NEW_USER) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => 0,
                _ => 2,
            }
        });
        assert_eq!(code, 0);
    }
}
