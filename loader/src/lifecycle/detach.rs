//! `-d/--detach`: the run goes to the background and the caller gets the container's ID.
//!
//! Processes: the caller forks; that child starts a new session (no controlling terminal) and
//! forks the **monitor**, then exits, so the monitor belongs to no one's shell. The monitor
//! holds the name's lock, starts the **logger** (the container's stdout and stderr, through two
//! pipes, into `container.log` as Docker's json-file lines) and, for each start, a **run**
//! process that applies the plan (it is the supervisor of the container, as in a foreground
//! run, and dies with the monitor). The run reports the container's PID 1 back; the monitor
//! records it, tells the caller (first start only), waits, records the exit, and restarts it as
//! `--restart` says, unless `oci2bin stop|kill` asked for the end (`stop-requested`).

use super::{now, ours, start_of, write_state, Claim};
use crate::containers::{self, log_line, Restart, State};
use crate::exec::{self, ExecError, EXIT_OURS};
use crate::init::{self, Role};
use crate::plan::Step;
use crate::sys::{ns, proc};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// In the caller: `Ok` never returns (it prints the ID and exits 0); `Err` when the container did
/// not start. In the monitor: `Ok(code)` when the run is over for good.
pub(super) fn detach(
    steps: &[Step],
    claim: Claim,
    state: State,
    restart: Restart,
) -> Result<i32, ExecError> {
    let (report_r, report_w) = ns::pipe().map_err(|e| exec::fail("pipe", e))?;
    match ns::fork().map_err(|e| exec::fail("fork", e))? {
        ns::Forked::Parent(child) => {
            drop(report_w);
            let _ = ns::wait_for(child);
            let line = read_line(report_r);
            match line.trim_end().strip_prefix("ok ") {
                Some(id) => {
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "{id}").and_then(|()| out.flush());
                    // Nothing of ours to clean: the monitor owns the run from here.
                    ns::exit_now(0)
                }
                None if line.trim().is_empty() => Err(ours(format!(
                    "the detached container {} did not start",
                    state.name
                ))),
                None => Err(ours(line.trim_end().to_string())),
            }
        }
        ns::Forked::Child => {
            drop(report_r);
            let mut report = Some(fs::File::from(report_w));
            let r = proc::setsid().and_then(|()| ns::fork());
            match r {
                Ok(ns::Forked::Parent(_)) => ns::exit_now(0),
                Ok(ns::Forked::Child) => Ok(monitor(steps, claim, state, restart, &mut report)),
                Err(e) => {
                    tell(&mut report, &format!("detach: {e}"));
                    ns::exit_now(EXIT_OURS)
                }
            }
        }
    }
}

/// One line from a pipe whose writers may keep it open (no EOF to wait for).
fn read_line(fd: OwnedFd) -> String {
    let mut f = fs::File::from(fd);
    let mut line = Vec::new();
    let mut b = [0u8];
    while f.read(&mut b).is_ok_and(|n| n == 1) && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Sends the caller its one line (once).
fn tell(report: &mut Option<fs::File>, line: &str) {
    if let Some(mut f) = report.take() {
        let _ = writeln!(f, "{}", line.replace('\n', " "));
    }
}

fn monitor(
    steps: &[Step],
    claim: Claim,
    mut state: State,
    restart: Restart,
    report: &mut Option<fs::File>,
) -> i32 {
    let dir = claim.dir.clone();
    let signals = init::supervised_signals();
    let fail_start = |report: &mut Option<fs::File>, msg: String| {
        let _ = crate::extract::remove_tree(&dir);
        tell(report, &msg);
        EXIT_OURS
    };
    // Blocked before any fork: the logger ignores them, each run takes them as a supervisor.
    if let Err(e) = ns::block_signals(&signals) {
        return fail_start(report, format!("block signals: {e}"));
    }
    let logger = match start_logger(&dir, report) {
        Ok(pid) => pid,
        Err(e) => return fail_start(report, format!("start the logger: {e}")),
    };
    state.supervisor_pid = std::process::id() as i32;
    state.supervisor_start = start_of(state.supervisor_pid);
    let mut code;
    loop {
        match start_run(steps, report) {
            Err(msg) if report.is_some() => return fail_start(report, msg),
            Err(msg) => {
                eprintln!("oci2bin: {msg}");
                code = EXIT_OURS;
            }
            Ok((run, pid)) => {
                state.pid = pid;
                state.pid_start = start_of(pid);
                state.status = "running".into();
                state.started = now();
                state.finished.clear();
                state.exit_code = None;
                write_state(&dir, &state);
                tell(report, &format!("ok {}", state.id));
                code = match init::supervise(run, Role::Init) {
                    Ok(exit) => exit.code(),
                    Err(e) => {
                        eprintln!("oci2bin: wait for the container: {e}");
                        EXIT_OURS
                    }
                };
            }
        }
        state.exit_code = Some(code);
        state.finished = now();
        let stopped = dir.join(containers::STOP_REQUESTED).exists();
        if !restart.again(code, state.restart_count, stopped) {
            break;
        }
        state.status = "restarting".into();
        write_state(&dir, &state);
        if !back_off(&signals, containers::restart_delay(state.restart_count)) {
            break;
        }
        if dir.join(containers::STOP_REQUESTED).exists() {
            break;
        }
        state.restart_count += 1;
    }
    // The logger ends once our copies of its pipes are gone; wait, so the log is whole before
    // the state says the run is over.
    if let Ok(null) = fs::File::open("/dev/null") {
        let _ = ns::dup_to(null.as_fd(), 1);
        let _ = ns::dup_to(null.as_fd(), 2);
    }
    let _ = ns::wait_for(logger);
    super::ended(&dir, &mut state, Some(code), true);
    code
}

/// Waits out the restart delay; `false` when a stop request (SIGTERM, SIGINT, SIGHUP to the
/// monitor) came meanwhile.
fn back_off(signals: &ns::SigSet, delay: std::time::Duration) -> bool {
    let end = Instant::now() + delay;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match ns::wait_signal(signals, Some(left)) {
            Ok(Some(got)) if [ns::SIGTERM, ns::SIGINT, ns::SIGHUP].contains(&got.signo) => {
                return false
            }
            Ok(_) => {}
            Err(_) => return true,
        }
    }
}

/// Forks a run of the plan; returns its pid and the container's PID 1, or why it did not start.
fn start_run(
    steps: &[Step],
    report: &mut Option<fs::File>,
) -> Result<(ns::pid_t, ns::pid_t), String> {
    let (r, w) = ns::pipe().map_err(|e| format!("pipe: {e}"))?;
    match ns::fork().map_err(|e| format!("fork: {e}"))? {
        ns::Forked::Child => {
            drop(r);
            report.take();
            let _ = ns::kill_with_parent();
            let mut w = Some(fs::File::from(w));
            let res = {
                let mut hook = |pid| {
                    if let Some(mut f) = w.take() {
                        let _ = writeln!(f, "P{pid}");
                    }
                };
                exec::run_with(steps, &mut hook)
            };
            match res {
                Ok(code) => ns::exit_now(code),
                Err(e) => {
                    match w.take() {
                        Some(mut f) => {
                            let _ = writeln!(f, "E{}", e.message.replace('\n', " "));
                        }
                        None => eprintln!("oci2bin: {e}"),
                    }
                    ns::exit_now(e.code)
                }
            }
        }
        ns::Forked::Parent(run) => {
            drop(w);
            // One line, not EOF: the run keeps its end open while it lives.
            let line = read_line(r);
            let line = line.trim_end();
            if let Some(pid) = line.strip_prefix('P').and_then(|p| p.parse().ok()) {
                return Ok((run, pid));
            }
            let _ = ns::wait_for(run);
            Err(match line.strip_prefix('E') {
                Some(msg) => msg.to_string(),
                None => "the container did not start".into(),
            })
        }
    }
}

/// Starts the logger; makes our stdout and stderr its pipes (every run inherits them) and our
/// stdin /dev/null.
fn start_logger(dir: &Path, report: &mut Option<fs::File>) -> std::io::Result<ns::pid_t> {
    let log = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(dir.join(containers::LOG))?;
    let (out_r, out_w) = ns::pipe()?;
    let (err_r, err_w) = ns::pipe()?;
    let pid = match ns::fork()? {
        ns::Forked::Child => {
            drop((out_w, err_w));
            report.take();
            // Nothing of the caller's stays open here (its `$(...)` would wait for us).
            if let Ok(null) = fs::File::open("/dev/null") {
                for fd in 0..3 {
                    let _ = ns::dup_to(null.as_fd(), fd);
                }
            }
            log_loop([out_r, err_r], log);
            ns::exit_now(0)
        }
        ns::Forked::Parent(pid) => pid,
    };
    let null = fs::File::open("/dev/null")?;
    ns::dup_to(null.as_fd(), 0)?;
    ns::dup_to(out_w.as_fd(), 1)?;
    ns::dup_to(err_w.as_fd(), 2)?;
    Ok(pid)
}

/// Longest line kept whole: a longer one is cut into entries of this size (Docker's 16 KiB).
const MAX_LINE: usize = 16 * 1024;

/// Copies both pipes into `log` as json-file lines until both are closed.
fn log_loop(pipes: [OwnedFd; 2], mut log: fs::File) {
    const STREAMS: [&str; 2] = ["stdout", "stderr"];
    let mut files = pipes.map(fs::File::from);
    let mut open = [true, true];
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 8192];
    let emit = |log: &mut fs::File, text: &[u8], stream: &str| {
        let t = containers::rfc3339(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let _ = log.write_all(log_line(text, stream, &t).as_bytes());
    };
    while open.iter().any(|&o| o) {
        let live: Vec<usize> = (0..2).filter(|&i| open[i]).collect();
        let fds: Vec<_> = live.iter().map(|&i| files[i].as_fd()).collect();
        let Ok(ready) = proc::poll_readable(&fds, -1) else {
            return;
        };
        for (k, &i) in live.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            let n = files[i].read(&mut buf).unwrap_or(0);
            if n == 0 {
                open[i] = false;
                if !pending[i].is_empty() {
                    emit(&mut log, &pending[i], STREAMS[i]);
                    pending[i].clear();
                }
                continue;
            }
            pending[i].extend_from_slice(&buf[..n]);
            while let Some(end) = pending[i]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + 1)
                .or((pending[i].len() >= MAX_LINE).then_some(MAX_LINE))
            {
                let line: Vec<u8> = pending[i].drain(..end).collect();
                emit(&mut log, &line, STREAMS[i]);
            }
        }
    }
}
