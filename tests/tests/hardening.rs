//! Issue 12, as a user meets it with a real file run as an unprivileged user: containers stop
//! the way Docker's do (Ctrl-C, SIGTERM, a closed pipe, a lost terminal, then KILL after the stop
//! timeout), a file named like a user switcher never runs a host command, descriptors do not
//! leak in, and arguments are bytes.

use e2e::{fixtures, text, Runner};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// One runner with a warm cache, so the timings below are about stopping, not extraction.
fn warm() -> &'static Runner {
    static R: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let r = Runner::new();
        r.ok(bb(), &["true"]);
        r
    })
}

/// Starts `args` with stdout piped and waits for the command's "ready" line.
fn start_ready(r: &Runner, args: &[&str]) -> Child {
    let mut c = r
        .command(bb(), args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "{args:?}");
    // Keep draining so the command never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    c
}

fn signal(c: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child: the loader (setpriv execs it in place).
    assert_eq!(unsafe { libc::kill(c.id() as i32, sig) }, 0);
}

/// Waits for `c` at most `limit`; its exit code and how long it took.
fn wait_within(c: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return (s.code(), t.elapsed());
        }
        if t.elapsed() > limit {
            let _ = c.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Item 1: `./image sh -c 'while :; do echo y; done' | head -1` ends at once: the command dies
/// of SIGPIPE (141) instead of writing "broken pipe" errors forever as an unkillable PID 1.
#[test]
fn a_pipe_closed_by_its_reader_ends_the_container_within_2s() {
    if !e2e::runner::userns() {
        return;
    }
    let mut c = warm()
        .command(bb(), &["sh", "-c", "while :; do echo y; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 2];
    c.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then `head` closes the pipe
    let (code, took) = wait_within(&mut c, Duration::from_secs(2));
    eprintln!("pipe case ended in {took:?}");
    assert_eq!(first, *b"y\n");
    assert_eq!(code, Some(128 + libc::SIGPIPE));
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        err.len() < 4096,
        "no flood of write errors: {} bytes",
        err.len()
    );
}

/// Item 1: SIGTERM or SIGINT to the loader (kill PID, `docker stop`'s first step) ends a
/// command that does not handle them at once, with 128+signal.
#[test]
fn sigterm_and_sigint_to_the_loader_end_the_container() {
    if !e2e::runner::userns() {
        return;
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut c = start_ready(warm(), &["sh", "-c", "echo ready; exec sleep 1000"]);
        signal(&c, sig);
        let (code, _) = wait_within(&mut c, Duration::from_secs(5));
        assert_eq!(code, Some(128 + sig));
    }
}

/// Item 1: a command that ignores SIGTERM and SIGINT is killed when the stop timeout runs out,
/// with Docker's 137; `--no-init` (the command as PID 1) gets the same end.
#[test]
fn a_signal_ignoring_entrypoint_is_killed_after_the_stop_timeout() {
    if !e2e::runner::userns() {
        return;
    }
    let ignoring = "trap '' TERM INT; echo ready; while :; do sleep 0.1; done";
    for (args, sig) in [
        (
            vec!["--stop-timeout", "2", "sh", "-c", ignoring],
            libc::SIGTERM,
        ),
        (vec!["--stop-timeout=2", "sh", "-c", ignoring], libc::SIGINT),
        (
            vec!["--no-init", "--stop-timeout", "2", "sh", "-c", ignoring],
            libc::SIGTERM,
        ),
    ] {
        let mut c = start_ready(warm(), &args);
        signal(&c, sig);
        let (code, took) = wait_within(&mut c, Duration::from_secs(8));
        assert_eq!(code, Some(137), "{args:?}");
        assert!(took >= Duration::from_millis(1900), "{args:?}: {took:?}");
    }
}

/// Item 1: with no flag, the grace period is Docker's 10 s.
#[test]
fn the_default_stop_timeout_is_ten_seconds() {
    if !e2e::runner::userns() {
        return;
    }
    let mut c = start_ready(
        warm(),
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    signal(&c, libc::SIGTERM);
    let (code, took) = wait_within(&mut c, Duration::from_secs(20));
    assert_eq!(code, Some(137));
    assert!(
        took >= Duration::from_millis(9900) && took < Duration::from_secs(13),
        "{took:?}"
    );
}

/// Starts `args` as the session leader of a new pseudo-terminal; returns the child and the
/// master side (closing it hangs the terminal up, as an ssh disconnect or tmux kill does).
fn start_on_a_terminal(r: &Runner, args: &[&str]) -> (Child, std::fs::File) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors; the name/termios/winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: fcntl on the master we just opened. The child must not inherit it, or closing
    // ours would not hang the terminal up.
    assert_eq!(
        unsafe { libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC) },
        0
    );
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave): (std::fs::File, std::fs::File) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let mut cmd = r.command(bb(), args);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
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
    let c = cmd.spawn().unwrap();
    drop(cmd); // our copies of the slave side
    let mut out = BufReader::new(master.try_clone().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    (c, master)
}

/// Item 2: when the terminal goes away the kernel sends SIGHUP to the session leader only,
/// which is the loader; it must reach the container (129), with or without our init, and a
/// command that ignores it is stopped after the timeout.
#[test]
fn a_terminal_hangup_stops_the_container() {
    if !e2e::runner::userns() {
        return;
    }
    for (args, want) in [
        (
            vec!["sh", "-c", "echo ready; exec sleep 1000"],
            128 + libc::SIGHUP,
        ),
        (
            vec![
                "--no-init",
                "sh",
                "-c",
                "trap 'exit 7' HUP; echo ready; while :; do sleep 0.1; done",
            ],
            7,
        ),
        (
            vec![
                "--stop-timeout",
                "1",
                "sh",
                "-c",
                "trap '' HUP; echo ready; while :; do sleep 0.1; done",
            ],
            137,
        ),
    ] {
        let (mut c, master) = start_on_a_terminal(warm(), &args);
        drop(master);
        let (code, _) = wait_within(&mut c, Duration::from_secs(5));
        assert_eq!(code, Some(want), "{args:?}");
    }
}

/// Item 1: ^C typed on the terminal reaches the command as for any foreground job (130), and
/// is not sent twice.
#[test]
fn ctrl_c_on_the_terminal_ends_the_command() {
    if !e2e::runner::userns() {
        return;
    }
    use std::io::Write;
    let (mut c, mut master) =
        start_on_a_terminal(warm(), &["sh", "-c", "echo ready; exec sleep 1000"]);
    master.write_all(b"\x03").unwrap();
    let (code, _) = wait_within(&mut c, Duration::from_secs(5));
    assert_eq!(code, Some(128 + libc::SIGINT));
}

/// Item 3: an image file saved as `setpriv`, `gosu` or `su-exec` runs its image (here: the
/// image's /etc/issue, not the host's), never a host command.
#[test]
fn a_file_named_like_a_user_switcher_runs_its_image() {
    if !e2e::runner::userns() {
        return;
    }
    let r = warm();
    let dir = e2e::world_tempdir();
    for name in ["setpriv", "gosu", "su-exec"] {
        let f = dir.path().join(name);
        std::fs::copy(bb(), &f).unwrap();
        let args: &[&str] = match name {
            "setpriv" => &["--reuid=0", "cat", "/etc/issue"],
            _ => &["root", "cat", "/etc/issue"],
        };
        // Parsed as runtime flags: `--reuid` is not one, so the file refuses it clearly.
        let o = r.run(&f, args);
        if name == "setpriv" {
            assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
            assert!(text(&o.stderr).contains("unknown option '--reuid"));
            assert_eq!(r.ok(&f, &["cat", "/etc/issue"]), "busybox fixture\n");
        } else {
            // `root` is taken as the command: the image has no such program.
            assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
        }
        assert_eq!(r.ok(&f, &["--", "cat", "/etc/issue"]), "busybox fixture\n");
    }
}

/// Item 3: inside the container the stand-in runs the command when the target is who we are,
/// and otherwise fails in one line instead of silently staying root.
#[test]
fn the_setpriv_stand_in_refuses_a_switch_it_cannot_make() {
    if !e2e::runner::userns() {
        return;
    }
    let r = warm();
    let d = fixtures::debian_bin();
    let o = r.run(
        d,
        &[
            "--userns=single",
            "setpriv",
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "id",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    e2e::assert_one_line_error(&o, "setpriv: cannot switch to uid 1000, gid 1000");
    assert_eq!(
        r.ok(
            d,
            &[
                "--userns=single",
                "-u",
                "1000:1000",
                "setpriv",
                "--reuid=1000",
                "--regid=1000",
                "id",
                "-u"
            ]
        ),
        "1000\n"
    );
    let o = r.run(d, &["--userns=single", "setpriv", "--reuid=nobody", "true"]);
    e2e::assert_one_line_error(&o, "run the file with --user nobody");
}

/// Item 5: a descriptor the caller left open without CLOEXEC (fd 251, as a shell's `exec 251>`
/// leaves it) does not reach the container; `--preserve-fds N` passes 3..N+2 on purpose.
#[test]
fn inherited_descriptors_do_not_reach_the_container() {
    if !e2e::runner::userns() {
        return;
    }
    let probe = "for fd in 3 4 251; do test -e /proc/self/fd/$fd && echo open-$fd; done; echo end";
    let run = |args: &[&str]| {
        let mut cmd = warm().command(bb(), args);
        // SAFETY: open and dup2 are async-signal-safe; dup2's copies are not CLOEXEC.
        unsafe {
            cmd.pre_exec(|| {
                let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                libc::dup2(fd, 3);
                libc::dup2(fd, 251);
                Ok(())
            });
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    assert_eq!(run(&["sh", "-c", probe]), "end\n");
    assert_eq!(run(&["--no-init", "sh", "-c", probe]), "end\n");
    assert_eq!(
        run(&["--preserve-fds", "1", "sh", "-c", probe]),
        "open-3\nend\n"
    );
}

/// Item 7: arguments, `-e` values, host variables and the working directory may be any bytes
/// but NUL; they pass through untouched.
#[test]
fn non_utf8_arguments_and_environment_pass_through() {
    if !e2e::runner::userns() {
        return;
    }
    let raw = |b: &'static [u8]| OsStr::from_bytes(b);
    let o = warm()
        .command(bb(), &[])
        .arg("-e")
        .arg(raw(b"FROMFLAG=\xe9t\xe9"))
        .args(["-e", "FROMHOST"])
        .arg(raw(b"--workdir=/tmp/d\xe9j\xe0"))
        .args([
            "sh",
            "-c",
            r#"printf '%s|%s|%s|%s' "$1" "$FROMFLAG" "$FROMHOST" "$(pwd)" | od -An -tx1 | tr -d ' \n'"#,
            "sh",
        ])
        .arg(raw(b"caf\xe9\xff"))
        .env("FROMHOST", raw(b"\xfe"))
        .env("UNRELATED", raw(b"\xff"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let want: Vec<u8> = b"caf\xe9\xff|\xe9t\xe9|\xfe|/tmp/d\xe9j\xe0".to_vec();
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(text(&o.stdout), hex);
}
