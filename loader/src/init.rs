//! Supervision: forwarding signals to a child and reaping it. The loader's outer process (the
//! supervisor, outside the container) uses it for the container's PID 1, and the init that is
//! PID 1 by default uses it inside for the command.
//!
//! Why an init by default: the kernel drops every signal a pid namespace's PID 1 has no handler
//! for, SIGKILL aside. A command that is PID 1 would survive Ctrl-C, `kill`, a closed pipe and a
//! terminal hangup. Under our init the command is PID 2 and those signals act as they do on any
//! process; `--no-init` keeps Docker's plain behaviour (the command as PID 1).
//!
//! Design: the forwardable signals and SIGCHLD stay blocked and are taken with sigwaitinfo (or
//! sigtimedwait while a stop is pending), so there are no handlers and no races between a signal
//! and a wait.

use crate::sys::ns::{self, pid_t, Exit, SigSet};
use std::io;
use std::time::{Duration, Instant};

/// The signals a supervisor takes: everything it forwards, plus SIGCHLD.
pub fn supervised_signals() -> SigSet {
    SigSet::empty().with(ns::FORWARDED).with(&[ns::SIGCHLD])
}

/// How the supervisor outside the container stops it, as `docker stop` does: SIGTERM to the
/// loader becomes `signal` to the container, and a container still running `timeout` after a
/// stop request is killed (SIGKILL to its PID 1 ends the whole pid namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPolicy {
    pub signal: i32,
    /// `None`: wait as long as it takes.
    pub timeout: Option<Duration>,
}

/// Docker's default grace period between the stop signal and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for StopPolicy {
    fn default() -> Self {
        StopPolicy {
            signal: ns::SIGTERM,
            timeout: Some(DEFAULT_STOP_TIMEOUT),
        }
    }
}

/// Where a supervisor runs, which decides what it does beyond forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The loader outside the container: stop requests, the stop timeout and job control.
    Outside(StopPolicy),
    /// The init inside the container: forward and reap.
    Init,
}

/// What a supervisor does with one signal it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Send this signal to the child.
    pub forward: Option<i32>,
    /// The signal asks the container to stop: start the stop timeout.
    pub stop: bool,
    /// Stop ourselves too (job control: the shell waits for us to stop).
    pub suspend: bool,
}

/// Decides what to do with signal `signo` of `si_code` `code`. Pure, so the rules are tested
/// as a table.
///
/// Inside, a signal the kernel raised itself (`SI_KERNEL`: a terminal's ^C, ^\, SIGWINCH) went
/// to the whole foreground process group, the command included, so the init does not send it
/// twice. A hangup is the exception: when the terminal goes away the kernel tells the session
/// leader only, which may be the init. Outside, the container leads a session of its own, so
/// what the caller's terminal raises reaches it only through us: everything is forwarded, but
/// job control, which stops the container as a whole ([`suspend_container`]).
pub fn decide(role: Role, signo: i32, code: i32) -> Action {
    let kernel = code == ns::SI_KERNEL;
    let job_control = matches!(signo, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU);
    let forward = match role {
        Role::Init => (!kernel || signo == ns::SIGHUP).then_some(signo),
        Role::Outside(_) => (!job_control).then_some(signo),
    };
    match role {
        Role::Init => Action {
            forward,
            stop: false,
            suspend: false,
        },
        Role::Outside(policy) => Action {
            // `docker stop` sends the image's StopSignal; so does SIGTERM to the loader.
            forward: forward.map(|s| if s == ns::SIGTERM { policy.signal } else { s }),
            // A terminal's ^C is for the program in the foreground to interpret (a shell
            // cancels a line); a sent SIGINT, SIGTERM or a lost terminal means "stop".
            stop: signo == ns::SIGTERM
                || (signo == ns::SIGINT && !kernel)
                || (signo == ns::SIGHUP && kernel),
            suspend: job_control,
        },
    }
}

/// Job control from outside (^Z on the caller's terminal): the container's session is not in
/// the terminal's foreground group, so its process group is stopped with us and continued when
/// we are.
pub fn suspend_container(child: pid_t) {
    // PID 1 leads the container's process group (it called setsid); before that, only it.
    if ns::kill(-child, libc::SIGSTOP).is_err() {
        let _ = ns::kill(child, libc::SIGSTOP);
    }
    ns::stop_self();
    if ns::kill(-child, libc::SIGCONT).is_err() {
        let _ = ns::kill(child, libc::SIGCONT);
    }
}

/// On SIGCHLD: reaps every ended child (an init adopts orphans), and says how `child` ended if
/// it was among them.
pub fn reap_all(child: pid_t) -> io::Result<Option<Exit>> {
    let mut ended = None;
    while let Some((pid, exit)) = ns::reap(-1)? {
        if pid == child {
            ended = Some(exit);
        }
    }
    Ok(ended)
}

/// Forwards signals to `child` and reaps every child that ends (orphans too, when we are PID 1)
/// until `child` itself ends; returns how it ended. The signals of [`supervised_signals`] must
/// be blocked already.
pub fn supervise(child: pid_t, role: Role) -> io::Result<Exit> {
    let set = supervised_signals();
    let mut deadline: Option<Instant> = None;
    loop {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let Some(got) = ns::wait_signal(&set, timeout)? else {
            // The grace period is over: SIGKILL to PID 1 takes the whole namespace with it.
            let _ = ns::kill(child, ns::SIGKILL);
            deadline = None;
            continue;
        };
        if got.signo == ns::SIGCHLD {
            if let Some(exit) = reap_all(child)? {
                return Ok(exit);
            }
            continue;
        }
        let action = decide(role, got.signo, got.code);
        if let Some(sig) = action.forward {
            // The child may be gone already; its SIGCHLD is then on its way.
            let _ = ns::kill(child, sig);
        }
        if let (true, None, Role::Outside(policy)) = (action.stop, deadline, role) {
            deadline = policy.timeout.map(|t| Instant::now() + t);
        }
        if action.suspend {
            suspend_container(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: i32 = 0; // SI_USER: kill(2)
    const KERNEL: i32 = ns::SI_KERNEL;

    fn outside(signal: i32) -> Role {
        Role::Outside(StopPolicy {
            signal,
            timeout: Some(DEFAULT_STOP_TIMEOUT),
        })
    }

    #[test]
    fn sent_signals_are_forwarded_and_terminal_ones_are_not_sent_twice() {
        for role in [Role::Init, outside(ns::SIGTERM)] {
            assert_eq!(
                decide(role, libc::SIGUSR1, USER).forward,
                Some(libc::SIGUSR1)
            );
            assert_eq!(decide(role, ns::SIGINT, USER).forward, Some(ns::SIGINT));
        }
        // Inside, the terminal's own signals reached the command already.
        assert_eq!(decide(Role::Init, ns::SIGINT, KERNEL).forward, None);
        assert_eq!(decide(Role::Init, libc::SIGWINCH, KERNEL).forward, None);
    }

    #[test]
    fn the_callers_terminal_reaches_the_container_in_its_own_session_through_us() {
        let o = outside(ns::SIGTERM);
        assert_eq!(decide(o, ns::SIGINT, KERNEL).forward, Some(ns::SIGINT));
        assert_eq!(
            decide(o, libc::SIGQUIT, KERNEL).forward,
            Some(libc::SIGQUIT)
        );
        assert_eq!(
            decide(o, libc::SIGWINCH, KERNEL).forward,
            Some(libc::SIGWINCH)
        );
        // ^Z stops the container's whole group instead (suspend_container).
        assert_eq!(decide(o, libc::SIGTSTP, USER).forward, None);
    }

    #[test]
    fn a_terminal_hangup_is_forwarded_by_both_supervisors() {
        assert_eq!(
            decide(Role::Init, ns::SIGHUP, KERNEL).forward,
            Some(ns::SIGHUP)
        );
        let a = decide(outside(ns::SIGTERM), ns::SIGHUP, KERNEL);
        assert_eq!(a.forward, Some(ns::SIGHUP));
        assert!(a.stop, "a lost terminal stops the container");
        // A hangup someone sends (a daemon's "reload") is only forwarded.
        assert!(!decide(outside(ns::SIGTERM), ns::SIGHUP, USER).stop);
    }

    #[test]
    fn sigterm_becomes_the_stop_signal_and_starts_the_timeout() {
        let a = decide(outside(libc::SIGQUIT), ns::SIGTERM, USER);
        assert_eq!(a.forward, Some(libc::SIGQUIT));
        assert!(a.stop);
        assert_eq!(
            decide(Role::Init, ns::SIGTERM, USER).forward,
            Some(ns::SIGTERM)
        );
        assert!(!decide(Role::Init, ns::SIGTERM, USER).stop);
    }

    #[test]
    fn a_sent_sigint_stops_but_a_terminal_ctrl_c_is_left_to_the_program() {
        assert!(decide(outside(ns::SIGTERM), ns::SIGINT, USER).stop);
        assert!(!decide(outside(ns::SIGTERM), ns::SIGINT, KERNEL).stop);
        assert!(!decide(outside(ns::SIGTERM), libc::SIGUSR1, USER).stop);
    }

    #[test]
    fn job_control_suspends_the_supervisor_outside_only() {
        let z = decide(outside(ns::SIGTERM), libc::SIGTSTP, KERNEL);
        assert!(z.suspend);
        assert_eq!(z.forward, None);
        assert!(decide(outside(ns::SIGTERM), libc::SIGTSTP, USER).suspend);
        assert!(!decide(Role::Init, libc::SIGTSTP, USER).suspend);
        assert!(!decide(outside(ns::SIGTERM), libc::SIGCONT, USER).suspend);
    }
}
