//! Supervision: forwarding signals to a child and reaping it. The loader's outer process uses it
//! for the container's PID 1, and `--init` uses it inside the container as a tiny reaper.
//!
//! Design: the forwardable signals and SIGCHLD stay blocked and are taken with sigwaitinfo, so
//! there are no handlers and no races between a signal and a wait.

use crate::sys::ns::{self, pid_t, Exit, SigSet};
use std::io;

/// The signals a supervisor takes: everything it forwards, plus SIGCHLD.
pub fn supervised_signals() -> SigSet {
    SigSet::empty().with(ns::FORWARDED).with(&[ns::SIGCHLD])
}

/// Forwards signals to `child` and reaps every child that ends (orphans too, when we are PID 1)
/// until `child` itself ends; returns how it ended. The signals of [`supervised_signals`] must
/// be blocked already.
///
/// A signal the kernel raised itself (`SI_KERNEL`: a terminal's ^C, ^\, SIGWINCH, hangup) has
/// been sent to the whole foreground process group, the child included, so it is not sent twice.
pub fn supervise(child: pid_t) -> io::Result<Exit> {
    let set = supervised_signals();
    loop {
        let got = ns::wait_signal(&set)?;
        if got.signo == ns::SIGCHLD {
            let mut ended = None;
            while let Some((pid, exit)) = ns::reap(-1)? {
                if pid == child {
                    ended = Some(exit);
                }
            }
            if let Some(exit) = ended {
                return Ok(exit);
            }
        } else if got.code != ns::SI_KERNEL {
            // The child may be gone already; its SIGCHLD is then on its way.
            let _ = ns::kill(child, got.signo);
        }
    }
}
