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

/// Configures the IPv4 interface `name` (a VM guest's virtio-net): MTU, address with its prefix,
/// up, and a default route through `gateway`. Plain ioctls: no netlink code for four settings.
pub fn configure_ipv4(
    name: &str,
    mtu: u32,
    addr: [u8; 4],
    prefix: u8,
    gateway: [u8; 4],
) -> io::Result<()> {
    // SAFETY: socket() takes integers only; the descriptor is owned (and closed) below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let ioctl = |req: libc::c_ulong, arg: *const libc::c_void| {
        // SAFETY: every caller passes a live, initialised ifreq or rtentry matching `req`,
        // which the kernel reads (or fills) during the call only.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), req as _, arg) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let ifreq = || {
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s as libc::c_char;
        }
        req
    };
    let sin = |a: [u8; 4]| {
        // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
        let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        s.sin_family = libc::AF_INET as libc::sa_family_t;
        s.sin_addr.s_addr = u32::from_ne_bytes(a);
        // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and sockaddr is plain
        // old data: the bytes are a valid sockaddr.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(s) }
    };
    let mut req = ifreq();
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl(libc::SIOCSIFMTU, (&req as *const libc::ifreq).cast())?;
    let mut req = ifreq();
    req.ifr_ifru.ifru_addr = sin(addr);
    ioctl(libc::SIOCSIFADDR, (&req as *const libc::ifreq).cast())?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    let mut req = ifreq();
    req.ifr_ifru.ifru_netmask = sin(mask.to_be_bytes());
    ioctl(libc::SIOCSIFNETMASK, (&req as *const libc::ifreq).cast())?;
    let mut req = ifreq();
    ioctl(libc::SIOCGIFFLAGS, (&mut req as *mut libc::ifreq).cast())?;
    // SAFETY: the kernel filled ifru_flags (the union's flags member) just above.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(libc::SIOCSIFFLAGS, (&req as *const libc::ifreq).cast())?;
    // SAFETY: rtentry is plain old data; all zeroes is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sin([0; 4]);
    rt.rt_genmask = sin([0; 4]);
    rt.rt_gateway = sin(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    ioctl(libc::SIOCADDRT, (&rt as *const libc::rtentry).cast())
}
