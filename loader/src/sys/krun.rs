//! libkrun (the `libkrun` crate, linked statically into the VM runtime with the `krun` feature):
//! its C API, wrapped. libkrun runs the VMM in the calling process; [`Ctx::enter`] hands the
//! process over and returns only if the machine could not start.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

// The crate's `#[no_mangle]` functions: named so the linker keeps the library.
use krun as _;

extern "C" {
    fn krun_create_ctx() -> i32;
    fn krun_set_vm_config(ctx: u32, vcpus: u8, ram_mib: u32) -> i32;
    fn krun_set_kernel(
        ctx: u32,
        path: *const libc::c_char,
        format: u32,
        initramfs: *const libc::c_char,
        cmdline: *const libc::c_char,
    ) -> i32;
    fn krun_add_virtiofs(ctx: u32, tag: *const libc::c_char, path: *const libc::c_char) -> i32;
    fn krun_disable_implicit_console(ctx: u32) -> i32;
    fn krun_disable_implicit_vsock(ctx: u32) -> i32;
    fn krun_add_virtio_console_multiport(ctx: u32) -> i32;
    fn krun_add_console_port_inout(
        ctx: u32,
        console: u32,
        name: *const libc::c_char,
        input: libc::c_int,
        output: libc::c_int,
    ) -> i32;
    fn krun_add_console_port_tty(
        ctx: u32,
        console: u32,
        name: *const libc::c_char,
        tty: libc::c_int,
    ) -> i32;
    fn krun_add_net_unixstream(
        ctx: u32,
        path: *const libc::c_char,
        fd: libc::c_int,
        mac: *const u8,
        features: u32,
        flags: u32,
    ) -> i32;
    fn krun_start_enter(ctx: u32) -> i32;
}

/// libkrun's ELF kernel format (`krun_set_kernel`).
const KERNEL_ELF: u32 = 1;

fn check(what: &'static str, r: i32) -> io::Result<i32> {
    if r < 0 {
        let e = io::Error::from_raw_os_error(-r);
        Err(io::Error::new(e.kind(), format!("libkrun {what}: {e}")))
    } else {
        Ok(r)
    }
}

/// One machine being configured.
pub struct Ctx(u32);

impl Ctx {
    pub fn new() -> io::Result<Ctx> {
        // SAFETY: no arguments; returns an id or a negative errno.
        let id = check("create a context", unsafe { krun_create_ctx() })?;
        let ctx = Ctx(id as u32);
        // Only what we add: no implicit console on our stdio, no TSI vsock.
        // SAFETY: ctx is a live context id.
        check("configure the console", unsafe {
            krun_disable_implicit_console(ctx.0)
        })?;
        // SAFETY: as above.
        check("configure vsock", unsafe {
            krun_disable_implicit_vsock(ctx.0)
        })?;
        Ok(ctx)
    }

    pub fn machine(&self, vcpus: u8, ram_mib: u32) -> io::Result<()> {
        // SAFETY: integers only.
        check("set the machine size", unsafe {
            krun_set_vm_config(self.0, vcpus, ram_mib)
        })
        .map(drop)
    }

    pub fn kernel(&self, vmlinux: &CStr, initrd: &CStr, cmdline: &CStr) -> io::Result<()> {
        // SAFETY: three valid C strings, read during the call only.
        check("set the kernel", unsafe {
            krun_set_kernel(
                self.0,
                vmlinux.as_ptr(),
                KERNEL_ELF,
                initrd.as_ptr(),
                cmdline.as_ptr(),
            )
        })
        .map(drop)
    }

    pub fn virtiofs(&self, tag: &CStr, dir: &CStr) -> io::Result<()> {
        // SAFETY: two valid C strings, copied by libkrun.
        check("share a directory", unsafe {
            krun_add_virtiofs(self.0, tag.as_ptr(), dir.as_ptr())
        })
        .map(drop)
    }

    /// A multiport virtio console; returns its id for [`Ctx::port`] and [`Ctx::tty_port`].
    pub fn console(&self) -> io::Result<u32> {
        // SAFETY: integers only.
        check("add a console", unsafe {
            krun_add_virtio_console_multiport(self.0)
        })
        .map(|id| id as u32)
    }

    /// A named port reading `input` (or nothing, -1) and writing `output` (or nothing, -1).
    pub fn port(&self, console: u32, name: &CStr, input: RawFd, output: RawFd) -> io::Result<()> {
        // SAFETY: a valid C string; the descriptors stay open (libkrun uses them until exit).
        check("add a port", unsafe {
            krun_add_console_port_inout(self.0, console, name.as_ptr(), input, output)
        })
        .map(drop)
    }

    /// A terminal port on the caller's terminal `tty`.
    pub fn tty_port(&self, console: u32, name: &CStr, tty: RawFd) -> io::Result<()> {
        // SAFETY: as for `port`.
        check("add a terminal", unsafe {
            krun_add_console_port_tty(self.0, console, name.as_ptr(), tty)
        })
        .map(drop)
    }

    /// A virtio-net device on passt's stream socket at `path`.
    pub fn net_passt(&self, path: &CStr) -> io::Result<()> {
        let mac: [u8; 6] = [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee];
        // SAFETY: a valid C string and a 6-byte MAC, read during the call only.
        check("add a network device", unsafe {
            krun_add_net_unixstream(self.0, path.as_ptr(), -1, mac.as_ptr(), 0, 0)
        })
        .map(drop)
    }

    /// Starts the machine in this process; returns only if it could not start.
    pub fn enter(self) -> io::Error {
        // SAFETY: a configured context; libkrun owns the process from here on success.
        let r = unsafe { krun_start_enter(self.0) };
        check("start the machine", r)
            .err()
            .unwrap_or_else(|| io::Error::other("libkrun start returned without an error"))
    }
}
