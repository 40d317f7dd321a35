//! The libkrun backend (`--vmm libkrun`, the `krun` feature): the same guest (our kernel, our
//! init, the same ports and control protocol) under libkrun's KVM monitor, linked into this
//! program. The tree goes over virtio-fs instead of 9p; the ports are a multiport virtio
//! console on socket pairs. libkrun needs KVM: there is no emulation to fall back to.

use super::qemu::{CONTROL, STDERR, STDIN, STDOUT};
#[cfg(feature = "krun")]
use {
    super::qemu::ROOT_TAG, super::Machine, crate::sys::krun::Ctx, std::ffi::CString, std::io,
    std::os::unix::ffi::OsStrExt,
};

/// The kernel command line: virtio-fs for the root (the init reads `oci2bin.root`); with -t
/// the first port is the terminal and the kernel says nothing on it.
pub fn cmdline(tty: bool) -> String {
    let log = if tty { "loglevel=0" } else { "loglevel=1" };
    format!("console=hvc0 quiet {log} panic=-1 reboot=t rdinit=/init oci2bin.root=virtiofs")
}

/// Where one end of a port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Nothing,
    /// The guest's end of socket pair `i` (0: control; 1-3: stdin, stdout, stderr).
    Pair(usize),
    /// The kernel's log file.
    Log,
    /// The caller's terminal (fd 0), as a console port.
    Terminal,
}

/// The multiport console's ports in order, by name: port 0 (the guest's hvc0) is the caller's
/// terminal with -t, else the kernel's log; then ours, found by name by the guest's init.
pub fn ports(tty: bool) -> Vec<(&'static str, End, End)> {
    let mut p = vec![match tty {
        true => ("oci2bin.term", End::Terminal, End::Terminal),
        false => ("oci2bin.console", End::Nothing, End::Log),
    }];
    p.push((CONTROL.0, End::Pair(0), End::Pair(0)));
    if !tty {
        p.push((STDIN.0, End::Pair(1), End::Nothing));
        p.push((STDOUT.0, End::Nothing, End::Pair(2)));
        p.push((STDERR.0, End::Nothing, End::Pair(3)));
    }
    p
}

#[cfg(feature = "krun")]
fn c(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

/// Configures the machine and runs it in this process. `fds`: the guest's ends of the control
/// port and (without -t) of stdin, stdout and stderr; `log`: where the kernel's console goes.
/// Returns only if the machine could not start.
#[cfg(feature = "krun")]
pub fn enter(cfg: &Machine, fds: &[i32], log: i32) -> io::Error {
    match configure(cfg, fds, log) {
        Ok(ctx) => ctx.enter(),
        Err(e) => e,
    }
}

#[cfg(feature = "krun")]
fn configure(cfg: &Machine, fds: &[i32], log: i32) -> io::Result<Ctx> {
    let ctx = Ctx::new()?;
    ctx.machine(
        cfg.cpus.min(255) as u8,
        cfg.memory_mib.min(u32::MAX as u64) as u32,
    )?;
    ctx.kernel(
        &c(cfg.kernel.as_os_str().as_bytes())?,
        &c(cfg.initrd.as_os_str().as_bytes())?,
        &c(cmdline(cfg.tty).as_bytes())?,
    )?;
    ctx.virtiofs(
        &c(ROOT_TAG.as_bytes())?,
        &c(cfg.root.as_os_str().as_bytes())?,
    )?;
    let console = ctx.console()?;
    let fd = |e: End| match e {
        End::Nothing => -1,
        End::Pair(i) => fds[i],
        End::Log => log,
        End::Terminal => 0,
    };
    for (name, input, output) in ports(cfg.tty) {
        let name = c(name.as_bytes())?;
        match input {
            End::Terminal => ctx.tty_port(console, &name, 0)?,
            _ => ctx.port(console, &name, fd(input), fd(output))?,
        }
    }
    if cfg.net {
        ctx.net_passt(&c(crate::plan::vm::PASST_SOCKET.as_bytes())?)?;
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_is_told_to_mount_its_root_over_virtio_fs() {
        assert!(cmdline(false).contains("oci2bin.root=virtiofs"));
        assert!(cmdline(true).contains("loglevel=0"));
        assert!(cmdline(false).contains("rdinit=/init"));
    }

    #[test]
    fn port_zero_is_the_console_and_ours_follow_with_the_right_directions() {
        let p = ports(false);
        assert_eq!(p[0], ("oci2bin.console", End::Nothing, End::Log));
        assert_eq!(p[1], (CONTROL.0, End::Pair(0), End::Pair(0)));
        assert_eq!(p[2], (STDIN.0, End::Pair(1), End::Nothing));
        assert_eq!(p[3], (STDOUT.0, End::Nothing, End::Pair(2)));
        assert_eq!(p[4], (STDERR.0, End::Nothing, End::Pair(3)));
        let t = ports(true);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].1, End::Terminal);
    }
}
