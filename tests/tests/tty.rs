//! R9 terminals, as a user meets them on a real terminal: the loader runs as the session leader
//! of a pseudo-terminal the test opens (as a login shell's job would), as the unprivileged test
//! user. `-t` gives the command a pty of its own (the caller's in raw mode meanwhile, its size
//! followed), without `-t` the command leads a session with no controlling terminal, as under
//! Docker; Docker itself is the oracle for what the command sees.

use e2e::{fixtures, text, Runner};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// One runner with a warm cache, so the waits below are about terminals, not extraction.
fn warm() -> &'static Runner {
    static R: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let r = Runner::new();
        r.ok(bb(), &["true"]);
        r
    })
}

/// A pseudo-terminal of the test's own (the "user's terminal"): we hold the master and keep a
/// slave open, so its settings can be read before and after the run.
struct Term {
    master: File,
    slave: File,
    out: Arc<Mutex<Vec<u8>>>,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Term {
    fn new(rows: u16, cols: u16) -> Term {
        let (mut m, mut s) = (0, 0);
        let ws = winsize(rows, cols);
        // SAFETY: openpty fills two descriptors; name and termios may be null, ws is live.
        let rc =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0);
        for fd in [m, s] {
            // SAFETY: fcntl on descriptors we just opened: children get only what we hand them.
            assert_eq!(
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) },
                0
            );
        }
        // SAFETY: both descriptors were just opened and are owned here only.
        let (master, slave) = unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) };
        Term {
            master,
            slave,
            out: Arc::default(),
        }
    }

    /// Starts `cmd` as the session leader of this terminal (its stdio, its controlling tty),
    /// and collects what it writes.
    fn spawn(&self, cmd: Command) -> Child {
        let c = self.spawn_unwatched(cmd);
        let mut m = self.master.try_clone().unwrap();
        let out = self.out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        c
    }

    /// [`Term::spawn`] without the reader (which holds a copy of the master).
    fn spawn_unwatched(&self, mut cmd: Command) -> Child {
        cmd.stdin(self.slave.try_clone().unwrap())
            .stdout(self.slave.try_clone().unwrap())
            .stderr(self.slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe; they make the child a session leader
        // with the terminal (its stdin) as the controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn output(&self) -> String {
        text(&self.out.lock().unwrap())
    }

    /// Waits until the output has `needle`; panics with what came after `limit`.
    fn wait_for(&self, needle: &str, limit: Duration) {
        let t = Instant::now();
        while !self.output().contains(needle) {
            assert!(
                t.elapsed() < limit,
                "no {needle:?} within {limit:?}; the terminal shows:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_(&self, keys: &str) {
        (&self.master).write_all(keys.as_bytes()).unwrap();
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: an all-zero termios is valid and tcgetattr fills it from our open slave.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) },
            0
        );
        t
    }

    /// Resizes the terminal as a terminal emulator does: TIOCSWINSZ on the master (the kernel
    /// then sends SIGWINCH to the foreground job).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads a live winsize.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
            0
        );
    }
}

/// The settings a raw mode changes, comparable.
fn modes(t: &libc::termios) -> (u32, u32, u32, u32, Vec<u8>) {
    (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc.to_vec())
}

fn wait_within(c: &mut Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        if t.elapsed() > limit {
            let _ = c.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a probe line `M<n>=value` says in the output (the echo of the typed line shows the
/// unexpanded `$((…))`, so only the command's output matches).
fn marked(out: &str, mark: &str) -> String {
    out.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(mark))
        .unwrap_or_else(|| panic!("no {mark:?} line in:\n{out}"))
        .to_string()
}

/// `-it sh` on a 33x111 terminal: a prompt, its own pty, that size, a resize followed, ^C for
/// the foreground job only, `exit 7` as the exit code, and the caller's terminal as it was.
#[test]
fn an_interactive_shell_gets_its_own_terminal_and_gives_the_callers_back() {
    if !e2e::runner::userns() {
        return;
    }
    let term = Term::new(33, 111);
    let before = term.termios();
    let mut c = term.spawn(warm().command(bb(), &["-it", "sh"]));
    term.wait_for("# ", Duration::from_secs(10));
    // While it runs, the caller's terminal is raw: keys go to the container as typed.
    let during = term.termios();
    assert_eq!(during.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);

    term.type_("echo M$((1))=$(tty); echo M$((2))=$(stty size)\r");
    term.wait_for("M2=", Duration::from_secs(5));
    let out = term.output();
    let tty = marked(&out, "M1=");
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    assert_eq!(marked(&out, "M2="), "33 111");

    resize_interrupt_and_exit(&term, &mut c, &before);
}

/// The rest of a shell session through a pty: a resize reaches `stty size`, ^C interrupts the
/// job in the container's foreground (not the shell), `exit 7` is the exit code, and the
/// caller's terminal is given back as `before`.
fn resize_interrupt_and_exit(term: &Term, shell: &mut std::process::Child, before: &libc::termios) {
    term.resize(40, 100);
    std::thread::sleep(Duration::from_millis(300));
    term.type_("echo M$((3))=$(stty size)\r");
    term.wait_for("M3=", Duration::from_secs(5));
    assert_eq!(marked(&term.output(), "M3="), "40 100");

    term.type_("sleep 100\r");
    std::thread::sleep(Duration::from_millis(500));
    term.type_("\x03");
    term.type_("echo M$((4))=$?\r");
    term.wait_for("M4=", Duration::from_secs(5));
    assert_eq!(marked(&term.output(), "M4="), "130");

    term.type_("exit 7\r");
    assert_eq!(wait_within(shell, Duration::from_secs(10)), Some(7));
    assert_eq!(
        modes(&term.termios()),
        modes(before),
        "terminal not restored"
    );
}

/// A command that ends by itself, and one killed by a signal from outside, both leave the
/// caller's terminal as they found it; the exit code passes through.
#[test]
fn the_callers_terminal_is_restored_however_the_container_ends() {
    if !e2e::runner::userns() {
        return;
    }
    let term = Term::new(24, 80);
    let before = term.termios();
    let mut c = term.spawn(warm().command(bb(), &["-t", "sh", "-c", "exit 3"]));
    assert_eq!(wait_within(&mut c, Duration::from_secs(10)), Some(3));
    assert_eq!(modes(&term.termios()), modes(&before));

    let mut c = term.spawn(warm().command(bb(), &["-t", "sh", "-c", "echo ready; exec sleep 100"]));
    term.wait_for("ready", Duration::from_secs(10));
    assert_ne!(
        modes(&term.termios()),
        modes(&before),
        "not raw while running"
    );
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(
        wait_within(&mut c, Duration::from_secs(10)),
        Some(128 + libc::SIGTERM)
    );
    assert_eq!(modes(&term.termios()), modes(&before));
}

/// Without -t the command leads a session of its own with no controlling terminal, even when
/// the caller runs it from one (as Docker's do): /dev/tty cannot be opened; ^C typed on the
/// caller's terminal still reaches it through the loader.
#[test]
fn without_t_the_command_has_no_controlling_terminal() {
    if !e2e::runner::userns() {
        return;
    }
    let term = Term::new(24, 80);
    let probe = "if true </dev/tty; then echo ctty=yes; else echo ctty=no; fi 2>/dev/null; \
                 echo sid=$(cut -d' ' -f6 /proc/$$/stat); echo ready; exec sleep 100";
    let mut c = term.spawn(warm().command(bb(), &["sh", "-c", probe]));
    term.wait_for("ready", Duration::from_secs(10));
    let out = term.output();
    assert_eq!(marked(&out, "ctty="), "no");
    assert_eq!(
        marked(&out, "sid="),
        "1",
        "the session is the container's PID 1's"
    );
    term.type_("\x03");
    assert_eq!(
        wait_within(&mut c, Duration::from_secs(5)),
        Some(128 + libc::SIGINT)
    );
}

/// `-t` with stdin not a terminal runs (as `docker run -t`); `-it` refuses in one line, as
/// `docker run -it` does.
#[test]
fn t_without_a_terminal_runs_and_it_refuses() {
    if !e2e::runner::userns() {
        return;
    }
    let o = warm()
        .command(bb(), &["-t", "sh", "-c", "tty; exit 4"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "/dev/pts/0\r\n");

    let o = warm()
        .command(bb(), &["-it", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    e2e::assert_one_line_error(&o, "the input device is not a TTY");
    assert_eq!(o.status.code(), Some(125));
}

/// `/dev/mqueue` is the container's own message-queue file system, mounted as Docker mounts it.
#[test]
fn mqueue_is_mounted_at_dev_mqueue() {
    if !e2e::runner::userns() {
        return;
    }
    let out = warm().ok(bb(), &["grep", " /dev/mqueue ", "/proc/mounts"]);
    assert_eq!(
        out,
        "mqueue /dev/mqueue mqueue rw,nosuid,nodev,noexec,relatime 0 0\n"
    );
}

/// Docker as the oracle: the same probe under `docker run` (with and without -t, from a real
/// terminal for -it) prints what ours prints.
#[test]
fn terminals_sessions_and_mqueue_match_docker() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    // Without -t: no controlling terminal, the session is PID 1's; mqueue as Docker mounts it.
    let plain = "tty; echo sid=$(cut -d' ' -f6 /proc/$$/stat); grep ' /dev/mqueue ' /proc/mounts";
    let docker = e2e::docker::run_sh(&tag, &[], plain);
    let ours = warm().ok(bb(), &["sh", "-c", plain]);
    // -t from a terminal: the pty's name, size, /dev/console and the session. (Docker's CLI
    // sets the size just after the start: the probe waits for it.)
    let probe = "sleep 1; tty; stty size; ls -l /dev/console | cut -c1-10; \
                 echo sid=$(cut -d' ' -f6 /proc/$$/stat); exit 5";
    let on_term = |mut cmd: Command| {
        let term = Term::new(33, 111);
        cmd.env("TERM", "xterm");
        let mut c = term.spawn(cmd);
        let code = wait_within(&mut c, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
        (code, term.output())
    };
    let mut dcmd = Command::new("docker");
    dcmd.args(["run", "--rm", "-it", &tag, "sh", "-c", probe]);
    let docker_t = on_term(dcmd);
    let ours_t = on_term(warm().command(bb(), &["-it", "sh", "-c", probe]));
    e2e::docker::remove(&tag);
    assert_eq!(ours, docker);
    assert_eq!(ours_t, docker_t);
    assert_eq!(ours_t.0, Some(5));
}

/// ^Z on the caller's terminal (without -t) stops the whole container with the file, though
/// the container is in a session of its own, and `fg` (SIGCONT) resumes both.
#[test]
fn ctrl_z_suspends_the_container_and_sigcont_resumes_it() {
    if !e2e::runner::userns() {
        return;
    }
    let term = Term::new(24, 80);
    let mut c = term.spawn(warm().command(
        bb(),
        &[
            "sh",
            "-c",
            "echo ready; while :; do echo tick; sleep 0.1; done",
        ],
    ));
    term.wait_for("ready", Duration::from_secs(10));
    term.type_("\x1a");
    let pid = c.id() as i32;
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid out-pointer; WUNTRACED reports a stop.
    assert_eq!(
        unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) },
        pid
    );
    assert!(
        libc::WIFSTOPPED(status),
        "the file did not stop: {status:#x}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let ticks = |t: &Term| t.output().matches("tick").count();
    let stopped_at = ticks(&term);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        ticks(&term),
        stopped_at,
        "the container ran on while stopped"
    );
    // SAFETY: kill(2) on our own (stopped) child, as a shell's `fg` does.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let t = Instant::now();
    while ticks(&term) < stopped_at + 3 {
        assert!(t.elapsed() < Duration::from_secs(5), "not resumed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(
        wait_within(&mut c, Duration::from_secs(10)),
        Some(128 + libc::SIGTERM)
    );
}

/// With -t, the caller's terminal going away (an ssh disconnect) stops the container as
/// without it: the hangup reaches it (129), with or without a shell reading the pty.
#[test]
fn a_hangup_of_the_callers_terminal_stops_a_t_container() {
    if !e2e::runner::userns() {
        return;
    }
    for args in [
        &["-t", "sh", "-c", "echo ready; exec sleep 1000"][..],
        &["-it", "sh", "-c", "echo ready; exec sh"][..],
    ] {
        let term = Term::new(24, 80);
        let mut c = term.spawn_unwatched(warm().command(bb(), args));
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while !text(&out).contains("ready") {
            let n = (&term.master).read(&mut buf).unwrap();
            assert!(n > 0, "{}", text(&out));
            out.extend_from_slice(&buf[..n]);
        }
        drop(term); // the last master: the terminal hangs up
        assert_eq!(
            wait_within(&mut c, Duration::from_secs(5)),
            Some(128 + libc::SIGHUP),
            "{args:?}"
        );
    }
}

/// `oci2bin exec -it` into a detached container drives a shell through a pty of the container's
/// own devpts, as `docker exec -it`: that size, a resize followed, ^C for its foreground job,
/// its exit code, and the caller's terminal given back as it was.
#[test]
fn exec_it_drives_a_shell_through_a_pty_of_the_container() {
    if !e2e::runner::userns() {
        return;
    }
    let c = warm().detached(bb(), "tty-exec", &["sleep", "120"]);
    let term = Term::new(33, 111);
    let before = term.termios();
    let mut p = term.spawn(warm().command(&e2e::oci2bin(), &["exec", "-it", c.name, "sh"]));
    term.wait_for("# ", Duration::from_secs(10));
    let during = term.termios();
    assert_eq!(during.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);

    // The pty is the container's: its devpts has it, and PID 1's namespace sees our shell.
    term.type_("echo M$((1))=$(tty); echo M$((2))=$(stty size); echo M$((5))=$(ls /dev/pts)\r");
    term.wait_for("M5=", Duration::from_secs(5));
    let out = term.output();
    let tty = marked(&out, "M1=");
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    assert_eq!(marked(&out, "M2="), "33 111");
    let n = &tty["/dev/pts/".len()..];
    assert!(marked(&out, "M5=").split(' ').any(|e| e == n), "{out}");

    resize_interrupt_and_exit(&term, &mut p, &before);
    // The container lives on.
    assert_eq!(c.exec_ok(&[], &["echo", "up"]), "up\n");
}

/// `exec -t` with stdin not a terminal runs (as `docker exec -t`); `exec -it` refuses in one
/// line with our exit code, as a run's `-it` does.
#[test]
fn exec_t_without_a_terminal_runs_and_exec_it_refuses() {
    if !e2e::runner::userns() {
        return;
    }
    let c = warm().detached(bb(), "tty-exec-t", &["sleep", "60"]);
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend(args);
        warm()
            .command(&e2e::oci2bin(), &all)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = exec(&["-t", c.name, "sh", "-c", "tty; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "/dev/pts/0\r\n");
    let o = exec(&["-it", c.name, "true"]);
    e2e::assert_one_line_error(&o, "the input device is not a TTY");
    assert_eq!(o.status.code(), Some(125));
}

/// Docker as the oracle for `exec -it`: the same probe from a real terminal prints the same.
#[test]
fn exec_it_matches_docker_exec_it() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let name = "o2b-tty-exec-oracle";
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    let d = Command::new("docker")
        .args(["run", "-d", "--name", name, &tag, "sleep", "60"])
        .output()
        .unwrap();
    assert!(d.status.success(), "docker run -d: {}", text(&d.stderr));
    // Docker's CLI sets the size just after the start: the probe waits for it.
    let probe = "sleep 1; tty; stty size; id -u; exit 5";
    let on_term = |mut cmd: Command| {
        let term = Term::new(33, 111);
        cmd.env("TERM", "xterm");
        let mut c = term.spawn(cmd);
        let code = wait_within(&mut c, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
        (code, term.output())
    };
    let mut dcmd = Command::new("docker");
    dcmd.args(["exec", "-it", name, "sh", "-c", probe]);
    let docker = on_term(dcmd);
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    e2e::docker::remove(&tag);
    let c = warm().detached(bb(), "tty-exec-oracle", &["sleep", "60"]);
    let ours =
        on_term(warm().command(&e2e::oci2bin(), &["exec", "-it", c.name, "sh", "-c", probe]));
    assert_eq!(ours, docker);
    assert_eq!(ours.0, Some(5));
}
