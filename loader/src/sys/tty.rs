//! Terminal, session and descriptor-passing syscalls for `-t`: the pty pair, raw mode, window
//! size, a socketpair that carries the pty master out of the container (SCM_RIGHTS), and the
//! poll loop's plain reads and writes.

use super::ns::Received;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The calling process leads a new session (and process group), with no controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() }).map(drop)
}

pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// A connected pair of Unix stream sockets, close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints, as socketpair(2) wants.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded: both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

const CMSG_SPACE: usize = 32; // >= CMSG_SPACE(sizeof(int)) on every Linux ABI

/// A one-byte message with room for one SCM_RIGHTS descriptor: what [`send_fd`] and
/// [`recv_fd`] both build. The pointers point into `byte` and `cbuf`, which must outlive it.
fn fd_message(
    byte: &mut [u8; 1],
    iov: &mut libc::iovec,
    cbuf: &mut [u64; CMSG_SPACE / 8],
) -> libc::msghdr {
    iov.iov_base = byte.as_mut_ptr().cast();
    iov.iov_len = 1;
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE as _;
    msg
}

/// Sends `fd` over the Unix socket `sock` (one byte of data, the descriptor as SCM_RIGHTS).
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let (mut byte, mut cbuf) = ([0u8; 1], [0u64; CMSG_SPACE / 8]);
    // SAFETY: an all-zero iovec is valid; fd_message fills it in.
    let mut iov: libc::iovec = unsafe { std::mem::zeroed() };
    let mut msg = fd_message(&mut byte, &mut iov, &mut cbuf);
    // SAFETY: msg points into live locals of the sizes given, and CMSG_FIRSTHDR/CMSG_DATA stay
    // within cbuf (CMSG_SPACE(4) <= 32).
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd.as_raw_fd());
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives a descriptor sent with [`send_fd`]; `None` when the peer closed without sending.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let (mut byte, mut cbuf) = ([0u8; 1], [0u64; CMSG_SPACE / 8]);
    // SAFETY: an all-zero iovec is valid; fd_message fills it in.
    let mut iov: libc::iovec = unsafe { std::mem::zeroed() };
    let mut msg = fd_message(&mut byte, &mut iov, &mut cbuf);
    // SAFETY: as in send_fd; the kernel writes at most msg_controllen bytes into cbuf, and a
    // descriptor it passed is ours alone.
    unsafe {
        loop {
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            break;
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

/// Opens a new pty master from `ptmx` (the container's own devpts), unlocked; returns it and
/// the number N of its slave `/dev/pts/N`.
pub fn open_master(ptmx: &std::ffi::CStr) -> io::Result<(OwnedFd, u32)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: ptmx is a C string alive across the call.
    let fd = check(unsafe { libc::open(ptmx.as_ptr(), flags) })?;
    // SAFETY: open succeeded, so the descriptor is new and ours.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let (mut unlock, mut n): (libc::c_int, libc::c_uint) = (0, 0);
    // SAFETY: TIOCSPTLCK reads an int and TIOCGPTN writes an unsigned int, both live locals.
    unsafe {
        check(libc::ioctl(fd, libc::TIOCSPTLCK, &mut unlock))?;
        check(libc::ioctl(fd, libc::TIOCGPTN, &mut n))?;
    }
    Ok((master, n))
}

/// Makes the terminal `fd` the controlling terminal of our session (we must lead it).
pub fn set_controlling(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it from another session).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

pub type WinSize = libc::winsize;

pub fn window_size(fd: RawFd) -> Option<WinSize> {
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ fills it.
    let mut ws: WinSize = unsafe { std::mem::zeroed() };
    // SAFETY: ws is a live winsize the ioctl writes into.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

pub fn set_window_size(fd: RawFd, ws: &WinSize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads a winsize from a live reference.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws as *const WinSize) }).map(drop)
}

pub type Termios = libc::termios;

pub fn get_termios(fd: RawFd) -> io::Result<Termios> {
    // SAFETY: an all-zero termios is valid; tcgetattr fills it.
    let mut t: Termios = unsafe { std::mem::zeroed() };
    // SAFETY: t is a live termios tcgetattr writes into.
    check(unsafe { libc::tcgetattr(fd, &mut t) })?;
    Ok(t)
}

pub fn set_termios(fd: RawFd, t: &Termios) -> io::Result<()> {
    // SAFETY: tcsetattr reads a termios from a live reference.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) }).map(drop)
}

/// `t` in raw mode, as cfmakeraw (and Docker's MakeRaw) set it.
pub fn raw(mut t: Termios) -> Termios {
    // SAFETY: cfmakeraw only edits the termios it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    t
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL takes and returns plain integers.
    unsafe {
        let fl = check(libc::fcntl(fd, libc::F_GETFL))?;
        check(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)).map(drop)
    }
}

/// One read(2); `EINTR` is retried.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is writable for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One write(2); `EINTR` is retried.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is readable for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Writes all of `buf` (blocking descriptors only).
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

pub type PollFd = libc::pollfd;

pub fn poll_fd(fd: RawFd, events: i16) -> PollFd {
    PollFd {
        fd,
        events,
        revents: 0,
    }
}

pub const POLLIN: i16 = libc::POLLIN;
pub const POLLOUT: i16 = libc::POLLOUT;

/// poll(2) with a timeout in milliseconds (-1: none); `EINTR` counts as nothing ready.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a live, writable slice of pollfd of the length given.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, timeout_ms) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
}

/// Reads one signal from a signalfd; `None` when none is pending (it is non-blocking).
pub fn read_signal(fd: RawFd) -> io::Result<Option<Received>> {
    // SAFETY: an all-zero signalfd_siginfo is valid.
    let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: si is a live, writable signalfd_siginfo of `size` bytes.
    let n = unsafe { libc::read(fd, (&mut si as *mut libc::signalfd_siginfo).cast(), size) };
    if n == -1 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(Received {
        signo: si.ssi_signo as i32,
        code: si.ssi_code,
    }))
}
