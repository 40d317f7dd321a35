//! `-t`: the container's pty and the supervisor's pump.
//!
//! The pty pair is allocated inside the container, from its own `newinstance` devpts (so the
//! slave is `/dev/pts/N` there and nowhere else), by PID 1 after the pivot; the master is sent
//! to the supervisor outside over a socketpair (SCM_RIGHTS). The supervisor puts the caller's
//! terminal in raw mode, copies its window size on SIGWINCH, and pumps bytes both ways in one
//! poll loop that also takes the signals (a signalfd) and reaps the container.
//!
//! The caller's terminal settings are restored on every way out of the loop (the container
//! ended or was killed, a signal stopped it, an error); only a SIGKILL of the loader itself
//! leaves the terminal raw (`stty sane` or `reset` repairs it).

use super::{fail, ExecError};
use crate::init::{self, Role, StopPolicy};
use crate::sys::ns::{self, pid_t, Exit};
use crate::sys::tty as t;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

/// The socketpair of a `-t` run, between [`crate::plan::Step::TtyChannel`] and the fork (both
/// ends), and after it (the supervisor's end outside, the child's inside).
#[derive(Default)]
pub(super) struct Channel {
    parent: Option<OwnedFd>,
    child: Option<OwnedFd>,
    input: bool,
}

impl Channel {
    pub(super) fn open(&mut self, input: bool) -> Result<(), ExecError> {
        let (p, c) = t::socketpair().map_err(|e| fail("socketpair for the terminal", e))?;
        *self = Channel {
            parent: Some(p),
            child: Some(c),
            input,
        };
        Ok(())
    }

    /// After the fork, in the child: the supervisor's end is not ours.
    pub(super) fn in_child(&mut self) {
        self.parent = None;
    }

    /// After the fork, in the supervisor: the pty master, once the child sends it. `None`
    /// without `-t`, or when the child ended before it got that far (its error is on stderr).
    fn master(&mut self) -> Option<OwnedFd> {
        self.child = None;
        let sock = self.parent.take()?;
        t::recv_fd(sock.as_fd()).ok().flatten()
    }

    /// [`crate::plan::Step::Console`], in PID 1 after the pivot (or in the command's process
    /// of an exec, after the join).
    pub(super) fn console(
        &mut self,
        uid: u32,
        gid: u32,
        dev_console: bool,
    ) -> Result<(), ExecError> {
        let sock = self.child.take().ok_or_else(|| ExecError {
            code: super::EXIT_OURS,
            message: "terminal: no channel to the supervisor".into(),
        })?;
        let (master, n) = t::open_master(c"/dev/ptmx").map_err(|e| fail("open /dev/ptmx", e))?;
        let path = format!("/dev/pts/{n}");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| fail(format_args!("open {path}"), e))?;
        // Sized as the caller's terminal before the command can ask (stdio is still the
        // caller's here).
        if let Some(ws) = t::window_size(0).or_else(|| t::window_size(1)) {
            let _ = t::set_window_size(slave.as_raw_fd(), &ws);
        }
        t::set_controlling(slave.as_fd()).map_err(|e| fail("TIOCSCTTY", e))?;
        // The user owns its terminal, as under runc (a failure leaves it root's: still usable).
        let _ = crate::sys::fs::fchown(slave.as_fd(), uid, gid);
        if dev_console {
            let console = Path::new("/dev/console");
            ns::create_file(console, 0o600)
                .and_then(|()| ns::mount(Some(Path::new(&path)), console, None, ns::MS_BIND, None))
                .map_err(|e| fail("bind the terminal to /dev/console", e))?;
        }
        t::send_fd(sock.as_fd(), master.as_fd())
            .map_err(|e| fail("send the terminal to the supervisor", e))?;
        for fd in 0..3 {
            ns::dup_to(slave.as_fd(), fd).map_err(|e| fail("dup2 the terminal", e))?;
        }
        Ok(())
    }

    /// In the supervisor after the fork: pumps the pty until `child` ends, or, when no pty came
    /// back, supervises as without `-t`.
    pub(super) fn supervise(&mut self, child: pid_t, stop: StopPolicy) -> io::Result<Exit> {
        match self.master() {
            Some(master) => Pump::new(master, self.input)?.run(child, stop),
            None => init::supervise(child, Role::Outside(stop)),
        }
    }
}

/// The caller's terminal in raw mode; dropping it restores the settings it had.
pub(crate) struct RawMode {
    fd: RawFd,
    saved: t::Termios,
}

impl RawMode {
    pub(crate) fn enter(fd: RawFd) -> Option<RawMode> {
        let saved = t::get_termios(fd).ok()?;
        t::set_termios(fd, &t::raw(saved)).ok()?;
        Some(RawMode { fd, saved })
    }

    fn restore(&self) {
        let _ = t::set_termios(self.fd, &self.saved);
    }

    fn again(&self) {
        let _ = t::set_termios(self.fd, &t::raw(self.saved));
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

struct Pump {
    master: OwnedFd,
    signals: OwnedFd,
    /// Stdin is read (and passed into the pty) until it ends.
    input: bool,
    /// Bytes read from stdin not yet taken by the pty.
    pending: Vec<u8>,
    /// Stdout took an error (a closed pipe): the pty's output is read and dropped.
    out_broken: bool,
    /// The terminal whose size the pty follows: stdin, else stdout.
    sized_by: Option<RawFd>,
    raw: Option<RawMode>,
}

const EOT: u8 = 0x04; // ^D: end of input for a program reading the pty in canonical mode

impl Pump {
    fn new(master: OwnedFd, input: bool) -> io::Result<Pump> {
        let signals = ns::signalfd(&init::supervised_signals())?;
        t::set_nonblocking(master.as_raw_fd())?;
        let sized_by = [0, 1].into_iter().find(|&fd| t::is_tty(fd));
        // Raw only when our stdin is a terminal we pass on: every key, ^C included, is then
        // the container's (its pty turns ^C into SIGINT for its foreground job).
        let raw = if input && t::is_tty(0) {
            RawMode::enter(0)
        } else {
            None
        };
        Ok(Pump {
            master,
            signals,
            input,
            pending: Vec::new(),
            out_broken: false,
            sized_by,
            raw,
        })
    }

    fn resize(&self) {
        if let Some(ws) = self.sized_by.and_then(t::window_size) {
            // The kernel sends SIGWINCH to the pty's foreground job.
            let _ = t::set_window_size(self.master.as_raw_fd(), &ws);
        }
    }

    /// Copies what the pty has to stdout: `Some(true)` when it had something, `Some(false)`
    /// when nothing is ready, `None` once no process holds the slave (EIO).
    fn output(&mut self, buf: &mut [u8]) -> Option<bool> {
        match t::read(self.master.as_raw_fd(), buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(false),
            Ok(0) | Err(_) => None,
            Ok(n) => {
                if !self.out_broken && t::write_all(1, &buf[..n]).is_err() {
                    self.out_broken = true;
                }
                Some(true)
            }
        }
    }

    fn run(mut self, child: pid_t, stop: StopPolicy) -> io::Result<Exit> {
        let role = Role::Outside(stop);
        let mut deadline: Option<Instant> = None;
        let mut buf = vec![0u8; 16 * 1024];
        let mut master_open = true;
        loop {
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            });
            let mut fds = [
                t::poll_fd(self.signals.as_raw_fd(), t::POLLIN),
                t::poll_fd(-1, 0),
                t::poll_fd(-1, 0),
            ];
            if master_open {
                let out = if self.pending.is_empty() {
                    0
                } else {
                    t::POLLOUT
                };
                fds[1] = t::poll_fd(self.master.as_raw_fd(), t::POLLIN | out);
            }
            if self.input && self.pending.is_empty() {
                fds[2] = t::poll_fd(0, t::POLLIN);
            }
            if t::poll(&mut fds, timeout)? == 0 {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    // The grace period is over: SIGKILL to PID 1 takes the namespace with it.
                    let _ = ns::kill(child, ns::SIGKILL);
                    deadline = None;
                }
                continue;
            }
            while let Some(got) = t::read_signal(self.signals.as_raw_fd())? {
                if got.signo == ns::SIGCHLD {
                    if let Some(exit) = init::reap_all(child)? {
                        // What the container wrote before it ended is still in the pty.
                        while master_open && self.output(&mut buf) == Some(true) {}
                        return Ok(exit);
                    }
                    continue;
                }
                if got.signo == libc::SIGWINCH {
                    self.resize();
                    continue;
                }
                let action = init::decide(role, got.signo, got.code);
                if let Some(sig) = action.forward {
                    let _ = ns::kill(child, sig);
                }
                if action.stop && deadline.is_none() {
                    deadline = stop.timeout.map(|d| Instant::now() + d);
                }
                if action.suspend {
                    // A sent SIGTSTP (a raw terminal sends ^Z to the container instead): give
                    // the caller's shell its terminal back while we are stopped.
                    if let Some(r) = &self.raw {
                        r.restore();
                    }
                    init::suspend_container(child);
                    if let Some(r) = &self.raw {
                        r.again();
                    }
                    self.resize();
                }
            }
            let ready =
                |i: usize, ev: i16| fds[i].revents & (ev | libc::POLLHUP | libc::POLLERR) != 0;
            if master_open && ready(1, t::POLLIN) && self.output(&mut buf).is_none() {
                // No process holds the slave any more: the container is ending.
                master_open = false;
            }
            if master_open && !self.pending.is_empty() && ready(1, t::POLLOUT) {
                match t::write(self.master.as_raw_fd(), &self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => self.pending.clear(),
                }
            }
            if self.input && fds[2].fd == 0 && ready(2, t::POLLIN) {
                match t::read(0, &mut buf) {
                    Ok(0) => {
                        // Stdin ended: end of input for the container too, as docker sends
                        // ^D into a terminal.
                        self.input = false;
                        self.pending.push(EOT);
                    }
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                    Err(_) => self.input = false,
                }
            }
        }
    }
}
