//! The command's session and terminal (`-t`, `-i`): as under Docker, the command leads a session
//! of its own. Without `-t` it has no controlling terminal; with `-t` it gets a pty from the
//! container's own devpts, made its controlling terminal and `/dev/console`, whose master the
//! supervisor outside pumps to and from the caller's terminal.

use super::{HostFacts, PlanError, Step};
use crate::args::Flags;
use crate::users::User;

/// `-it` needs a terminal on stdin, as `docker run -it` does; `-t` alone does not.
pub(super) fn check(flags: &Flags, facts: &HostFacts) -> Result<(), PlanError> {
    if flags.tty && flags.interactive && !facts.stdin_tty {
        return Err(PlanError::NotATty);
    }
    Ok(())
}

/// Around the fork made by [`super::root::namespaces`]: with `-t`, the channel the pty master
/// comes back through is opened before it; the child then starts its session.
pub(super) fn session(flags: &Flags, facts: &HostFacts, steps: &mut Vec<Step>) {
    if flags.tty {
        let fork = steps
            .iter()
            .position(|s| matches!(s, Step::Fork(_)))
            .unwrap_or(steps.len());
        // Stdin is passed by default here (unlike `docker run` without -i), so a terminal on
        // stdin is pumped into the pty; with -t and stdin not a terminal, nothing is (as Docker's
        // `-t` without `-i`).
        steps.insert(
            fork,
            Step::TtyChannel {
                input: facts.stdin_tty,
            },
        );
    }
    steps.push(Step::NewSession);
}

/// With `-t`: the pty, after the pivot (so it comes from the container's devpts) and before
/// the ids change (binding `/dev/console` needs our capabilities).
pub(super) fn console(flags: &Flags, user: &User, steps: &mut Vec<Step>) {
    if flags.tty {
        steps.push(Step::Console {
            uid: user.uid,
            gid: user.gid,
        });
    }
}
