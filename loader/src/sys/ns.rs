//! Process, namespace, mount and signal syscalls.
//!
//! Thin wrappers: each turns one raw call into an `io::Result`, so the runtime above stays free
//! of `unsafe`. Paths are converted to C strings here; callers pass `&Path`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

pub use libc::pid_t;

/// Namespace flags for [`unshare`].
pub const NEW_USER: i32 = libc::CLONE_NEWUSER;
pub const NEW_NS: i32 = libc::CLONE_NEWNS;
pub const NEW_PID: i32 = libc::CLONE_NEWPID;
pub const NEW_UTS: i32 = libc::CLONE_NEWUTS;
pub const NEW_IPC: i32 = libc::CLONE_NEWIPC;
pub const NEW_NET: i32 = libc::CLONE_NEWNET;
pub const NEW_CGROUP: i32 = libc::CLONE_NEWCGROUP;

/// Mount flags, re-exported so callers need no libc.
pub const MS_RDONLY: u64 = libc::MS_RDONLY;
pub const MS_NOSUID: u64 = libc::MS_NOSUID;
pub const MS_NODEV: u64 = libc::MS_NODEV;
pub const MS_NOEXEC: u64 = libc::MS_NOEXEC;
pub const MS_BIND: u64 = libc::MS_BIND;
pub const MS_REC: u64 = libc::MS_REC;
pub const MS_PRIVATE: u64 = libc::MS_PRIVATE;
pub const MS_REMOUNT: u64 = libc::MS_REMOUNT;
pub const MS_STRICTATIME: u64 = libc::MS_STRICTATIME;
pub const MS_MOVE: u64 = libc::MS_MOVE;
pub const MNT_DETACH: i32 = libc::MNT_DETACH;

/// `si_code` of a signal the kernel raised itself, e.g. a terminal's ^C to its foreground group.
pub const SI_KERNEL: i32 = 0x80;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains a NUL byte"))
}

pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: unshare takes a plain integer and touches no memory of ours.
    check(unsafe { libc::unshare(flags) })
}

/// Which side of a [`fork`] we are on.
pub enum Forked {
    Child,
    Parent(pid_t),
}

/// Forks. The caller must make sure the child only does what is safe after a fork (this crate
/// forks only from a single-threaded loader, or from tests that immediately exec or exit).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory arguments; libc's fork keeps its own state (malloc, tid) usable
    // in the child.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the process at once: no destructors, no atexit handlers (right for a forked child).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cpath).transpose()?;
    let target = cpath(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null (allowed by mount(2) for these arguments) or points to
    // a NUL-terminated string that lives until the call returns.
    check(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags as libc::c_ulong,
            ptr(&data) as *const libc::c_void,
        )
    })
}

/// Creates an empty regular file (one mknod, where open+close would take three syscalls).
pub fn create_file(path: &Path, mode: u32) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: path is a valid C string; S_IFREG with dev 0 creates a plain file.
    check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFREG | mode as libc::mode_t, 0) })
}

pub fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: target is a valid C string for the duration of the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cpath(new_root)?;
    let put_old = cpath(put_old)?;
    // SAFETY: both arguments are valid C strings; pivot_root has no libc wrapper, so syscall.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check(ret as libc::c_int)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Makes the mount at `path` and every mount below it read-only (mount_setattr, Linux 5.12+).
pub fn make_readonly_recursive(path: &Path) -> io::Result<()> {
    let path = cpath(path)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a valid C string and attr a properly laid out struct mount_attr whose size
    // we pass; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret as libc::c_int)
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC` as `MOUNT_ATTR_*` bits (the same order, 1..8).
fn mount_attrs(ms: u64) -> u64 {
    [
        libc::MS_RDONLY,
        libc::MS_NOSUID,
        libc::MS_NODEV,
        libc::MS_NOEXEC,
    ]
    .iter()
    .enumerate()
    .filter(|(_, &f)| ms & f != 0)
    .map(|(i, _)| 1 << i)
    .sum()
}

/// Binds `source` (recursively) onto the object `target` refers to (an `O_PATH` descriptor),
/// with `flags` (`MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`) set on every mount of the
/// copy before it is attached: open_tree + mount_setattr(AT_RECURSIVE) + move_mount (Linux
/// 5.12+). `ENOSYS` on older kernels.
pub fn bind_tree(source: &Path, target: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    let source = cpath(source)?;
    // SAFETY: source is a valid C string; open_tree takes no other pointer.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    check(tree as libc::c_int)?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    let empty = c"";
    if flags != 0 {
        let attr = MountAttr {
            attr_set: mount_attrs(flags),
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: tree is open, the path is an empty C string (AT_EMPTY_PATH), attr a properly
        // laid out struct mount_attr whose size we pass; the kernel only reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                AT_EMPTY_PATH | AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        check(r as libc::c_int)?;
    }
    // SAFETY: both descriptors are open for the call; both paths are empty C strings, which
    // the *_EMPTY_PATH flags make the kernel use the descriptors themselves.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check(r as libc::c_int)
}

/// Mounts an overlay of `lowers` (topmost first) with `upper` and `work` on `target` through the
/// mount API, one `lowerdir+` per layer (Linux 6.8+): legacy mount(2) takes one page of options,
/// which holds ~30 layer paths; this takes overlayfs's own limit (500). `flags`: overlay flag
/// options such as `userxattr`, `volatile`.
pub fn mount_overlay(
    lowers: &[std::path::PathBuf],
    upper: &Path,
    work: &Path,
    flags: &[&CStr],
    target: &Path,
) -> io::Result<()> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: the name is a valid C string; fsopen takes no other pointer.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    check(fs as libc::c_int)?;
    // SAFETY: fsopen returned a new descriptor that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as libc::c_int) };
    let config = |cmd: libc::c_uint, key: Option<&CStr>, value: Option<&CStr>| {
        let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: fs is open; key and value are valid C strings or null, as cmd requires; the
        // kernel only reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                ptr(key),
                ptr(value),
                0,
            )
        };
        check(r as libc::c_int).map(drop)
    };
    for l in lowers {
        config(FSCONFIG_SET_STRING, Some(c"lowerdir+"), Some(&cpath(l)?))?;
    }
    config(FSCONFIG_SET_STRING, Some(c"upperdir"), Some(&cpath(upper)?))?;
    config(FSCONFIG_SET_STRING, Some(c"workdir"), Some(&cpath(work)?))?;
    for f in flags {
        config(FSCONFIG_SET_FLAG, Some(f), None)?;
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: fs is an open, created filesystem context; fsmount takes no pointer.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    check(m as libc::c_int)?;
    // SAFETY: fsmount returned a new descriptor that nothing else owns.
    let m = unsafe { OwnedFd::from_raw_fd(m as libc::c_int) };
    let target = cpath(target)?;
    // SAFETY: m is open, the from path is an empty C string (MOVE_MOUNT_F_EMPTY_PATH), target a
    // valid C string relative to the cwd or absolute.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            m.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(r as libc::c_int).map(drop)
}

/// The `MS_*` flags a mount carries now (from statvfs), to keep locked flags on a remount.
pub fn mount_flags(path: &Path) -> io::Result<u64> {
    let path = cpath(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: path is a valid C string and st points to writable memory of the right type.
    check(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so it filled st.
    let f = unsafe { st.assume_init() }.f_flag;
    let mut out = 0;
    // The kernel's ST_* values (musl's libc crate lacks some of the names).
    for (st_flag, ms_flag) in [
        (0x1, libc::MS_RDONLY),
        (0x2, libc::MS_NOSUID),
        (0x4, libc::MS_NODEV),
        (0x8, libc::MS_NOEXEC),
        (0x400, libc::MS_NOATIME),
        (0x800, libc::MS_NODIRATIME),
        (0x1000, libc::MS_RELATIME),
    ] {
        if f & st_flag != 0 {
            out |= ms_flag;
        }
    }
    Ok(out)
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe the bytes of `name`, which outlive the call.
    check(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })
}

/// Sets IFF_UP on `lo` in our network namespace (what `ip link set lo up` does, by ioctl: no
/// netlink code for one flag).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() takes integers only; the descriptor is owned (and closed) below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which lives on
    // our stack for the whole call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) })?;
    // SAFETY: the kernel filled ifru_flags (the union's flags member) just above.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as for SIOCGIFFLAGS; the kernel only reads `req`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) })
}

pub const RLIMIT_NOFILE: i32 = libc::RLIMIT_NOFILE as i32;
pub const RLIMIT_NPROC: i32 = libc::RLIMIT_NPROC as i32;

/// Raises the soft limit of `resource` to its hard limit.
pub fn soft_limit_to_hard(resource: i32) -> io::Result<()> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `l`, which lives on our stack for the call.
    check(unsafe { libc::getrlimit(resource as _, &mut l) })?;
    if l.rlim_cur == l.rlim_max {
        return Ok(());
    }
    l.rlim_cur = l.rlim_max;
    // SAFETY: setrlimit only reads `l`.
    check(unsafe { libc::setrlimit(resource as _, &l) })
}

/// Rewrites what `/proc/self/cmdline` shows (our argv memory) to `title`, truncated to fit and
/// padded with NULs, and the task name (`/proc/self/comm`) too: PID 1 of a container then shows `oci2bin-init`, not the host path of the
/// file and its options. What the process itself holds is unchanged (std copied its arguments).
pub fn set_cmdline(title: &str) -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name's closing parenthesis start at field 3 (state); arg_start
    // and arg_end are fields 48 and 49 (proc(5)).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let field = |n: usize| rest.split_whitespace().nth(n - 3)?.parse::<usize>().ok();
    let (start, end) = match (field(48), field(49)) {
        (Some(s), Some(e)) if e > s => (s, e),
        _ => return Err(io::Error::other("no argument area in /proc/self/stat")),
    };
    let n = title.len().min(end - start - 1);
    // SAFETY: the kernel reports [arg_start, arg_end) as this process's argument strings, on
    // its own writable stack; no Rust reference points into them (std copied the arguments),
    // and the bytes written stay inside that range.
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, end - start);
        std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, n);
    }
    // The task name (`comm`, what `ps` shows in braces), at most 15 bytes and a NUL.
    let mut comm = [0u8; 16];
    let k = title.len().min(15);
    comm[..k].copy_from_slice(&title.as_bytes()[..k]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `comm`.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr() as libc::c_ulong, 0, 0, 0) })
}

/// Asks the kernel to SIGKILL us when our parent dies, so a container never outlives its loader.
pub fn kill_with_parent() -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes an integer signal number and no pointers.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
}

pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe {
            libc::getrandom(
                buf[done..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - done,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            done += n as usize;
        }
    }
    Ok(())
}

pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}

pub fn egid() -> u32 {
    // SAFETY: getegid cannot fail and takes no arguments.
    unsafe { libc::getegid() }
}

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints, as pipe2 requires.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Grows a pipe's buffer to `bytes` (at most `/proc/sys/fs/pipe-max-size` unprivileged), so a
/// producer can run further ahead of its consumer; best effort.
pub fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    // SAFETY: F_SETPIPE_SZ takes an integer and no pointer.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) };
}

/// Makes descriptor `to` a copy of `fd` (dup2), without close-on-exec.
pub fn dup_to(fd: std::os::fd::BorrowedFd<'_>, to: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 takes plain descriptor numbers; fd is open for the borrow.
    check(unsafe { libc::dup2(fd.as_raw_fd(), to) })
}

/// Joins the user namespace `fd` refers to (the caller must be single-threaded).
pub fn setns_user(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns takes a descriptor and a flag; fd is open for the borrow.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWUSER) })
}

/// Sets real, effective and saved uid and gid and the supplementary groups, groups first (as
/// that needs the capability a non-root uid drops).
pub fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `groups`, alive across the call.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresuid(uid, uid, uid) })
}

/// `getppid()`.
pub fn parent_pid() -> pid_t {
    // SAFETY: getppid cannot fail and takes no arguments.
    unsafe { libc::getppid() }
}

/// Replaces the process image. Returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut av: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    av.push(std::ptr::null());
    let mut ev: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    ev.push(std::ptr::null());
    // SAFETY: path is a C string; av and ev are NULL-terminated arrays of pointers to C strings
    // owned by argv/envp, all alive across the call.
    unsafe { libc::execve(path.as_ptr(), av.as_ptr(), ev.as_ptr()) };
    io::Error::last_os_error()
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    pub fn empty() -> SigSet {
        let mut s = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given.
        unsafe {
            libc::sigemptyset(s.as_mut_ptr());
            SigSet(s.assume_init())
        }
    }

    pub fn with(mut self, signals: &[i32]) -> SigSet {
        for &sig in signals {
            // SAFETY: self.0 is an initialised sigset; an invalid number only makes it fail.
            unsafe { libc::sigaddset(&mut self.0, sig) };
        }
        self
    }

    pub fn contains(&self, sig: i32) -> bool {
        // SAFETY: self.0 is an initialised sigset.
        unsafe { libc::sigismember(&self.0, sig) == 1 }
    }
}

/// Sets the signal mask of the calling thread; returns the old one.
pub fn set_signal_mask(set: &SigSet) -> io::Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: both pointers point to initialised sigsets.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set.0, &mut old.0) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(old)
}

/// Blocks `set` in addition to what is blocked already.
pub fn block_signals(set: &SigSet) -> io::Result<()> {
    // SAFETY: set points to an initialised sigset; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Restores default dispositions a program expects after exec: Rust's runtime ignores SIGPIPE,
/// and ignored dispositions survive exec.
pub fn reset_signal_dispositions() {
    // SAFETY: setting SIG_DFL for SIGPIPE installs no handler of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// A signal taken by [`wait_signal`].
pub struct Received {
    pub signo: i32,
    pub code: i32,
}

/// Waits for one of the (blocked) signals in `set`, at most `timeout` (forever when `None`);
/// `Ok(None)` when the time ran out.
pub fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> io::Result<Option<Received>> {
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::uninit();
        let signo = match timeout {
            // SAFETY: set is an initialised sigset and info writable memory for a siginfo_t.
            None => unsafe { libc::sigwaitinfo(&set.0, info.as_mut_ptr()) },
            Some(t) => {
                let ts = libc::timespec {
                    tv_sec: t.as_secs().min(i32::MAX as u64) as _,
                    tv_nsec: t.subsec_nanos() as _,
                };
                // SAFETY: as above, and ts is a valid timespec that outlives the call.
                unsafe { libc::sigtimedwait(&set.0, info.as_mut_ptr(), &ts) }
            }
        };
        if signo == -1 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(e),
            }
        }
        // SAFETY: the wait succeeded, so it filled info.
        let code = unsafe { info.assume_init() }.si_code;
        return Ok(Some(Received { signo, code }));
    }
}

/// Stops the calling process (as a terminal's ^Z stops a job) until a SIGCONT.
pub fn stop_self() {
    // SAFETY: raise takes a plain signal number; SIGSTOP cannot be caught or blocked.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// Closes every descriptor from `first` up. close_range(2) where the kernel has it (5.9+), else
/// each descriptor /proc/self/fd lists.
pub fn close_fds_from(first: u32) {
    // SAFETY: close_range takes plain integers and only closes descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    if r == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collected first: closing while reading would close the listing's own descriptor.
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| fd >= first as i32)
        .collect();
    for fd in fds {
        // SAFETY: closing a descriptor number; nothing in this process uses it afterwards.
        unsafe { libc::close(fd) };
    }
}

pub fn kill(pid: pid_t, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) })
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Reaps one child that has ended (`pid` -1 for any), without blocking. `Ok(None)` when none
/// has (or there are no children left).
pub fn reap(pid: pid_t) -> io::Result<Option<(pid_t, Exit)>> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == -1 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(e),
            }
        }
        if r == 0 {
            return Ok(None);
        }
        let exit = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        };
        return Ok(Some((r, exit)));
    }
}

/// Blocks until `pid` ends (for tests and short helpers; the runtime uses [`wait_signal`]).
pub fn wait_for(pid: pid_t) -> io::Result<Exit> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        });
    }
}

/// The signal numbers a supervisor forwards to the container: everything a user or a terminal
/// may send that a program could handle, but not SIGCHLD (ours), SIGKILL/SIGSTOP (uncatchable)
/// nor faults (SEGV, BUS, …) that are about the supervisor itself.
pub const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
];

pub const SIGCHLD: i32 = libc::SIGCHLD;
pub const SIGHUP: i32 = libc::SIGHUP;
pub const SIGINT: i32 = libc::SIGINT;
pub const SIGKILL: i32 = libc::SIGKILL;
pub const SIGTERM: i32 = libc::SIGTERM;

/// Signals by name, for `--stop-signal` and the image's StopSignal (`SIGTERM`, `TERM` or `15`).
const SIGNAL_NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses `SIGTERM`, `term`, `TERM`, `15` or `SIGRTMIN+3`; `None` for anything else.
pub fn signal_number(s: &str) -> Option<i32> {
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(n) = name.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off = match rt.strip_prefix('+') {
            Some(n) => n.parse::<i32>().ok()?,
            None if rt.is_empty() => 0,
            None => return None,
        };
        let n = libc::SIGRTMIN() + off;
        return (n <= libc::SIGRTMAX()).then_some(n);
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        let off = match rt.strip_prefix('-') {
            Some(n) => n.parse::<i32>().ok()?,
            None if rt.is_empty() => 0,
            None => return None,
        };
        let n = libc::SIGRTMAX() - off;
        return (n >= libc::SIGRTMIN()).then_some(n);
    }
    SIGNAL_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v)
}

/// A non-blocking, close-on-exec signalfd for `set` (which must be blocked already).
pub fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: set.0 is an initialised sigset; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    check(fd)?;
    // SAFETY: signalfd succeeded: the descriptor is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `chroot(path)`.
pub fn chroot(path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p is a valid C string the kernel only reads.
    check(unsafe { libc::chroot(p.as_ptr()) }).map(drop)
}

/// Flushes every file system, then restarts the machine: the end of a VM guest's init (the
/// monitor runs with -no-reboot, so a restart ends it).
pub fn sync_and_restart() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot does not return on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    exit_now(125)
}

/// Lets `fd` survive an exec (clears `FD_CLOEXEC`).
pub fn keep_on_exec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer flag; fd is open (borrowed).
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) }).map(drop)
}
