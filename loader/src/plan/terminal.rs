//! The command's session and terminal (`-t`, `-i`): as under Docker, the command leads a session
//! of its own. Without `-t` it has no controlling terminal; with `-t` it gets a pty from the
//! container's own devpts, made its controlling terminal and `/dev/console`, whose master the
//! supervisor outside pumps to and from the caller's terminal. `oci2bin exec -t` gets the same,
//! from the same devpts ([`super::exec_into`]).

use super::{PlanError, Step};
use crate::args::Flags;
use crate::users::User;

/// `-it` needs a terminal on stdin, as `docker run -it` does; `-t` alone does not, nor `-dit`
/// (its stdin is not ours).
pub(super) fn check(flags: &Flags, stdin_tty: bool) -> Result<(), PlanError> {
    if flags.tty && flags.interactive && !flags.detach && !stdin_tty {
        return Err(PlanError::NotATty);
    }
    Ok(())
}

/// Around the fork made by [`super::root::namespaces`]: with `-t`, the channel the pty master
/// comes back through is opened before it; the child then starts its session.
pub(super) fn session(flags: &Flags, stdin_tty: bool, steps: &mut Vec<Step>) {
    if flags.tty {
        let fork = steps
            .iter()
            .position(|s| matches!(s, Step::Fork(_)))
            .unwrap_or(steps.len());
        // Stdin is passed by default here (unlike `docker run` without -i), so a terminal on
        // stdin is pumped into the pty; with -t and stdin not a terminal, nothing is (as Docker's
        // `-t` without `-i`). Detached (`-dt`, `-dit`), nothing is either: the pty stays open
        // with no input, as Docker's does without an attach, and its output goes to the log.
        steps.insert(
            fork,
            Step::TtyChannel {
                input: stdin_tty && !flags.detach,
            },
        );
    }
    steps.push(Step::NewSession);
}

/// With `-t`: the pty, after the pivot (so it comes from the container's devpts) and, in a run,
/// before the ids change (binding `/dev/console` needs our capabilities). An exec leaves the
/// container's `/dev/console` as it is (`dev_console` false).
pub(super) fn console(flags: &Flags, user: &User, dev_console: bool, steps: &mut Vec<Step>) {
    if flags.tty {
        steps.push(Step::Console {
            uid: user.uid,
            gid: user.gid,
            dev_console,
        });
    }
}
