//! The guest's init: this runtime again, as `/init` of the initramfs (PID 1 of the VM). It
//! mounts the container's tree (9p) as the root, reads what to run from the control port, runs
//! it as the image's user with the stdio ports (or the console, with `-t`), forwards the signals
//! the host sends, reaps everything, reports the command's exit code and restarts the machine,
//! which ends the monitor.

use super::qemu::{CONTROL, ROOT_TAG, STDERR, STDIN, STDOUT};
use super::wire::{self, Message};
use crate::exec;
use crate::plan::vm::GuestConfig;
use crate::sys::{ns, tty};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const NEW_ROOT: &str = "/newroot";

/// Whether this process is the guest's init.
pub fn is_guest_init() -> bool {
    std::process::id() == 1
}

/// Runs the guest; never returns (the machine restarts).
pub fn main() -> ! {
    if let Err(e) = run() {
        // The console (the kernel's log, or the caller's terminal); the host names its file.
        let _ = writeln!(io::stderr(), "oci2bin: vm init: {e}");
    }
    ns::sync_and_restart()
}

fn fail(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: u64,
    data: Option<&str>,
) -> Result<(), String> {
    let _ = fs::create_dir_all(target);
    ns::mount(
        Some(Path::new(src)),
        Path::new(target),
        Some(fstype),
        flags,
        data,
    )
    .map_err(fail(format_args!("mount {fstype} on {target}")))
}

/// The virtio-serial ports by name: (name, /dev node).
fn ports() -> Vec<(String, PathBuf)> {
    let Ok(dir) = fs::read_dir("/sys/class/virtio-ports") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = fs::read_to_string(e.path().join("name")).ok()?;
            Some((
                name.trim().to_string(),
                Path::new("/dev").join(e.file_name()),
            ))
        })
        .collect()
}

/// Opens the port `name` for reading, writing, or both.
fn open_port(
    ports: &[(String, PathBuf)],
    name: &str,
    read: bool,
    write: bool,
) -> Result<File, String> {
    let (_, dev) = ports
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| format!("no virtio port {name}"))?;
    OpenOptions::new()
        .read(read)
        .write(write)
        .open(dev)
        .map_err(fail(format_args!("open {}", dev.display())))
}

fn run() -> Result<(), String> {
    mount("devtmpfs", "/dev", "devtmpfs", ns::MS_NOSUID, None)?;
    mount("proc", "/proc", "proc", 0, None)?;
    mount("sysfs", "/sys", "sysfs", 0, None)?;
    let ports = ports();
    let mut ctl = open_port(&ports, CONTROL.0, true, true)?;
    let cfg = wire::read_frame(&mut ctl)
        .and_then(|b| wire::decode(&b))
        .map_err(fail("read the run's config"))?;
    wire::write_frame(&mut ctl, &Message::Ready.encode()).map_err(fail("say ready"))?;
    let stdio = match cfg.tty {
        true => None,
        false => Some([
            open_port(&ports, STDIN.0, true, false)?,
            open_port(&ports, STDOUT.0, false, true)?,
            open_port(&ports, STDERR.0, false, true)?,
        ]),
    };
    // From here on our own errors reach the caller's stderr.
    if let Some([_, _, err]) = &stdio {
        let _ = ns::dup_to(err.as_fd(), 2);
    }
    let root_flags = if cfg.read_only { ns::MS_RDONLY } else { 0 };
    // 9p from qemu; virtio-fs from libkrun, which says so on the kernel command line.
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline
        .split_whitespace()
        .any(|w| w == "oci2bin.root=virtiofs")
    {
        mount(ROOT_TAG, NEW_ROOT, "virtiofs", root_flags, None)?;
    } else {
        mount(
            ROOT_TAG,
            NEW_ROOT,
            "9p",
            root_flags,
            Some("trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client"),
        )?;
    }
    let under = |p: &str| format!("{NEW_ROOT}{p}");
    mount(
        "proc",
        &under("/proc"),
        "proc",
        ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
        None,
    )?;
    mount(
        "sysfs",
        &under("/sys"),
        "sysfs",
        ns::MS_RDONLY | ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
        None,
    )?;
    mount("devtmpfs", &under("/dev"), "devtmpfs", ns::MS_NOSUID, None)?;
    mount(
        "devpts",
        &under("/dev/pts"),
        "devpts",
        ns::MS_NOSUID | ns::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    mount(
        "tmpfs",
        &under("/dev/shm"),
        "tmpfs",
        ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
        Some("mode=1777"),
    )?;
    let _ = ns::loopback_up();
    if let Some(n) = &cfg.net {
        network(n)?;
        let ip = n.dns;
        let resolv = format!("nameserver {}.{}.{}.{}\n", ip[0], ip[1], ip[2], ip[3]);
        // Into the run's writable layer, as a namespace run's per-run files are.
        let _ = fs::write(under("/etc/resolv.conf"), resolv);
    }
    if !cfg.hostname.is_empty() {
        ns::sethostname(&cfg.hostname).map_err(fail("sethostname"))?;
    }
    // switch_root: the tree moves over the initramfs, which stays (it is only a few files).
    std::env::set_current_dir(NEW_ROOT).map_err(fail("chdir"))?;
    ns::mount(
        Some(Path::new(".")),
        Path::new("/"),
        None,
        ns::MS_MOVE,
        None,
    )
    .map_err(fail("move the root"))?;
    ns::chroot(Path::new(".")).map_err(fail("chroot"))?;
    std::env::set_current_dir("/").map_err(fail("chdir /"))?;

    let code = supervise(&cfg, stdio, &mut ctl)?;
    wire::write_frame(&mut ctl, &Message::Exit(code).encode())
        .map_err(fail("report the exit code"))?;
    Ok(())
}

/// Configures the guest's Ethernet interface (the virtio-net passt serves).
fn network(n: &crate::plan::vm::GuestNet) -> Result<(), String> {
    let name = fs::read_dir("/sys/class/net")
        .map_err(fail("list the network interfaces"))?
        .flatten()
        // An Ethernet device (type 1): not lo, not the sit0 tunnel IPv6 brings.
        .filter(|e| fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "1"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or("no Ethernet interface in the guest")?;
    crate::sys::net::configure_ipv4(&name, n.mtu, n.addr, n.prefix, n.gateway)
        .map_err(fail(format_args!("configure {name}")))
}

/// Forks the command and waits for it, forwarding the host's signals; returns its exit code.
fn supervise(cfg: &GuestConfig, stdio: Option<[File; 3]>, ctl: &mut File) -> Result<i32, String> {
    let signals = ns::SigSet::empty().with(&[libc::SIGCHLD]);
    ns::block_signals(&signals).map_err(fail("block signals"))?;
    let sigfd = ns::signalfd(&signals).map_err(fail("signalfd"))?;
    let pid = match ns::fork().map_err(fail("fork"))? {
        ns::Forked::Child => {
            let e = child(cfg, stdio);
            let _ = writeln!(io::stderr(), "oci2bin: {}", e.message);
            ns::exit_now(e.code)
        }
        ns::Forked::Parent(pid) => pid,
    };
    drop(stdio);
    let mut buf = Vec::new();
    let mut ctl_open = true;
    loop {
        let mut fds = vec![tty::poll_fd(sigfd.as_raw_fd(), libc::POLLIN)];
        if ctl_open {
            fds.push(tty::poll_fd(ctl.as_raw_fd(), libc::POLLIN));
        }
        tty::poll(&mut fds, -1).map_err(fail("poll"))?;
        if fds.get(1).is_some_and(|f| f.revents != 0) {
            let mut chunk = [0u8; 64];
            match tty::read(ctl.as_raw_fd(), &mut chunk) {
                Ok(0) | Err(_) => ctl_open = false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            for f in wire::take_frames(&mut buf) {
                match Message::decode(&f) {
                    Some(Message::Signal(n)) => {
                        let _ = ns::kill(pid, n as i32);
                    }
                    // The terminal's size: its foreground process group gets SIGWINCH.
                    Some(Message::Resize(rows, cols)) => {
                        let t = OpenOptions::new()
                            .read(true)
                            .custom_flags(libc::O_NOCTTY)
                            .open("/dev/hvc0");
                        if let Ok(t) = t {
                            let ws = winsize(rows, cols);
                            let _ = tty::set_window_size(t.as_raw_fd(), &ws);
                        }
                    }
                    _ => {}
                }
            }
        }
        if fds[0].revents != 0 {
            let _ = tty::read_signal(sigfd.as_raw_fd());
            // PID 1 reaps every orphan; the command's end is the run's end.
            while let Ok(Some((who, exit))) = ns::reap(-1) {
                if who == pid {
                    return Ok(exit.code());
                }
            }
        }
    }
}

/// In the forked child: the session, stdio, ids and working directory, then the exec.
fn child(cfg: &GuestConfig, stdio: Option<[File; 3]>) -> exec::ExecError {
    let ours = |what: &str, e: io::Error| exec::ExecError {
        code: exec::EXIT_OURS,
        message: format!("{what}: {e}"),
    };
    let _ = tty::setsid();
    match stdio {
        Some(files) => {
            for (i, f) in files.iter().enumerate() {
                if let Err(e) = ns::dup_to(f.as_fd(), i as i32) {
                    return ours("stdio", e);
                }
            }
        }
        None => {
            let console: OwnedFd = match OpenOptions::new().read(true).write(true).open("/dev/hvc0")
            {
                Ok(f) => f.into(),
                Err(e) => return ours("open the console", e),
            };
            let _ = tty::set_controlling(console.as_fd());
            let ws = winsize(cfg.winsize.0, cfg.winsize.1);
            let _ = tty::set_window_size(console.as_raw_fd(), &ws);
            for i in 0..3 {
                if let Err(e) = ns::dup_to(console.as_fd(), i) {
                    return ours("stdio", e);
                }
            }
        }
    }
    ns::close_fds_from(3);
    if let Err(e) =
        fs::create_dir_all(&cfg.workdir).and_then(|()| std::env::set_current_dir(&cfg.workdir))
    {
        return ours(&format!("chdir {}", cfg.workdir.display()), e);
    }
    if let Err(e) = ns::set_ids(cfg.uid, cfg.gid, &cfg.groups) {
        return ours("set the user", e);
    }
    let cstr = |b: &[u8]| CString::new(b).unwrap_or_default();
    let argv: Vec<CString> = cfg.argv.iter().map(|a| cstr(a.as_bytes())).collect();
    let env: Vec<CString> = cfg.env.iter().map(|e| cstr(e.as_bytes())).collect();
    let path = cfg
        .env
        .iter()
        .rev()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(crate::plan::DEFAULT_PATH.as_bytes());
    exec::exec_command(&argv, &env, path)
}

fn winsize(rows: u16, cols: u16) -> tty::WinSize {
    tty::WinSize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}
