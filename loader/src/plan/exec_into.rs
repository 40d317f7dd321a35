//! `oci2bin exec`: a small plan that runs a command in a running container, as `docker exec`.
//! The joiner enters the namespaces of the container's PID 1 (the user namespace first, so it
//! holds the capabilities the others need), takes its root, gets the container's security (the
//! run's capability sets as its rules give them to this user, its no_new_privs and its seccomp
//! filter, in the order a run applies them: [`security::around_user_switch`]), becomes the user,
//! forks the command (a child of the joiner is in the joined pid namespace) and returns its exit
//! status. The joiner is confined as the command is before it forks: it holds nothing the
//! command could take from it. With `-t` the command gets a pty of the container's devpts, as a
//! run's command does ([`terminal`]).

use super::{security, terminal, PlanError, Step, DEFAULT_PATH};
use crate::args::Flags;
use crate::init::StopPolicy;
use crate::users;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The namespace kinds of `/proc/PID/ns`, in the order they are joined: the user namespace
/// first (it gives the capabilities the others need), then the rest.
pub const NAMESPACES: &[&str] = &["user", "mnt", "pid", "uts", "ipc", "net", "cgroup"];

/// What the exec plan needs to know about the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecFacts {
    /// The host pid of the container's PID 1.
    pub pid: i32,
    /// The kinds of [`NAMESPACES`] in which the container differs from us (the same one cannot
    /// and need not be joined).
    pub differ: Vec<&'static str>,
    /// The container's `/etc/passwd` and `/etc/group`.
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// A single-uid container: the one uid and gid its namespace maps (`None`: a range).
    pub single: Option<(u32, u32)>,
    /// The host environment, for a bare `-e K`.
    pub env: Vec<(OsString, OsString)>,
    /// The seccomp filter the run installed, as it compiled it (`struct sock_filter` bytes;
    /// `None`: the run had none).
    pub seccomp: Option<Vec<u8>>,
    /// Whether our stdin is a terminal (`-it` needs one).
    pub stdin_tty: bool,
}

/// Plans `exec`: `flags` holds `-e`, `-u`, `-w`, `-t`, `-i` and the command, and the run's
/// security flags (`--cap-add`, `--cap-drop`, `--privileged`, `no-new-privileges`); the
/// packager passes the container's own environment, user, working directory and security as
/// those flags. `--privileged` (the run's or the exec's) means every capability of the
/// namespace and no filter.
pub fn plan(flags: &Flags, facts: &ExecFacts) -> Result<Vec<Step>, PlanError> {
    if flags.command.is_empty() {
        return Err(PlanError::NoCommand);
    }
    terminal::check(flags, facts.stdin_tty)?;
    let spec = flags.user.as_deref().unwrap_or("0");
    let user = users::resolve(spec, facts.passwd.as_deref(), facts.group.as_deref())?;
    let mut steps = vec![Step::JoinContainer {
        pid: facts.pid,
        namespaces: facts.differ.iter().map(|s| s.to_string()).collect(),
    }];
    let set_ids = match facts.single {
        // One uid is mapped: we are it once joined, and can be no other.
        Some((uid, gid)) if (uid, gid) != (user.uid, user.gid) => {
            return Err(PlanError::Exec(format!(
                "user {spec} is not mapped in this container: it runs with a single uid \
                 ({uid}:{gid}) and only that user can exec in it"
            )))
        }
        Some(_) => None,
        None => Some(Step::SetIds {
            uid: user.uid,
            gid: user.gid,
            groups: users::supplementary_groups(
                facts.passwd.as_deref(),
                facts.group.as_deref(),
                user.uid,
            ),
        }),
    };
    let f = &flags.security;
    let caps = security::capabilities(f, user.uid)?;
    let filter = facts.seccomp.clone().filter(|_| !f.privileged);
    let nnp = f.no_new_privs.unwrap_or(false);
    let (before, after) = security::around_user_switch(caps, filter, nnp, set_ids.is_some());
    steps.extend(before);
    steps.extend(set_ids);
    steps.extend(after);
    match &flags.workdir {
        Some(w) if w.as_bytes().starts_with(b"/") => steps.push(Step::ChdirExisting(w.into())),
        Some(w) => return Err(PlanError::RelativeWorkdir(w.clone())),
        None => steps.push(Step::ChdirExisting("/".into())),
    }
    steps.push(Step::Fork(StopPolicy::default()));
    // The command leads a session of its own, as a run's does; with -t on the container's pty
    // (its /dev/console stays the run's).
    terminal::session(flags, facts.stdin_tty, &mut steps);
    terminal::console(flags, &user, false, &mut steps);
    steps.push(Step::Exec {
        argv: flags.command.clone(),
        env: environment(flags, facts, &user.home),
        init: false,
        keep_fds: 0,
    });
    Ok(steps)
}

/// `-e` in order (a bare `K` takes the host's value), then PATH and HOME where missing.
fn environment(flags: &Flags, facts: &ExecFacts, home: &str) -> Vec<OsString> {
    let key = |e: &[u8]| e.split(|&b| b == b'=').next().unwrap_or(e).to_vec();
    let mut env: Vec<OsString> = Vec::with_capacity(flags.env.len() + 2);
    for e in &flags.env {
        let entry = if e.as_bytes().contains(&b'=') {
            e.clone()
        } else {
            match facts.env.iter().find(|(k, _)| k == e) {
                Some((k, v)) => {
                    let mut kv = k.clone();
                    kv.push("=");
                    kv.push(v);
                    kv
                }
                None => continue,
            }
        };
        let k = key(entry.as_bytes());
        env.retain(|x| key(x.as_bytes()) != k);
        env.push(entry);
    }
    if !env.iter().any(|e| key(e.as_bytes()) == b"PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}").into());
    }
    if !env.iter().any(|e| key(e.as_bytes()) == b"HOME") {
        env.push(format!("HOME={home}").into());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps;

    fn flags(args: &[&str]) -> Flags {
        match crate::args::parse(args.iter().copied()).unwrap() {
            crate::args::Parsed::Run(f) => f,
            _ => unreachable!(),
        }
    }

    fn facts(single: Option<(u32, u32)>) -> ExecFacts {
        ExecFacts {
            pid: 42,
            differ: vec!["user", "mnt", "pid"],
            passwd: Some("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/srv:/bin/sh\n".into()),
            group: Some("root:x:0:\nweb:x:33:\nextra:x:7:web\n".into()),
            single,
            env: vec![("HOSTVAR".into(), "h".into())],
            seccomp: Some(FILTER.to_vec()),
            stdin_tty: false,
        }
    }

    /// The run's filter, as the state keeps it (any bytes: the plan passes them on).
    const FILTER: &[u8] = b"\x06\0\0\0\0\0\xff\x7f";

    fn pos(steps: &[Step], p: impl Fn(&Step) -> bool) -> usize {
        steps
            .iter()
            .position(p)
            .unwrap_or_else(|| panic!("{steps:#?}"))
    }

    fn set_caps(steps: &[Step]) -> (u64, u64, u64, u64) {
        let i = pos(steps, |s| matches!(s, Step::SetCaps { .. }));
        let Step::SetCaps {
            effective,
            permitted,
            inheritable,
            ambient,
        } = steps[i]
        else {
            unreachable!()
        };
        (effective, permitted, inheritable, ambient)
    }

    #[test]
    fn exec_joins_first_then_becomes_the_user_then_forks_the_command() {
        let steps = plan(&flags(&["-u", "web", "-w", "/srv", "id"]), &facts(None)).unwrap();
        assert_eq!(
            steps[0],
            Step::JoinContainer {
                pid: 42,
                namespaces: vec!["user".into(), "mnt".into(), "pid".into()]
            }
        );
        let ids = pos(&steps, |s| {
            *s == Step::SetIds {
                uid: 33,
                gid: 33,
                groups: vec![7],
            }
        });
        let chdir = pos(&steps, |s| *s == Step::ChdirExisting("/srv".into()));
        let fork = pos(&steps, |s| matches!(s, Step::Fork(_)));
        assert!(
            ids < chdir && chdir < fork,
            "a child of the joiner is in the pid ns"
        );
        assert_eq!(steps[fork + 1], Step::NewSession, "as a run's command");
        let Some(Step::Exec {
            argv, env, init, ..
        }) = steps.last()
        else {
            panic!("{steps:?}")
        };
        assert_eq!((argv, *init), (&vec![OsString::from("id")], false));
        assert!(env.contains(&"HOME=/srv".into()), "{env:?}");
    }

    #[test]
    fn exec_gets_the_runs_capabilities_and_filter_in_a_runs_order_before_the_fork() {
        let steps = plan(&flags(&["id"]), &facts(None)).unwrap();
        let bound = pos(&steps, |s| {
            *s == Step::LimitBoundingSet(caps::DOCKER_DEFAULT)
        });
        let filter = pos(&steps, |s| *s == Step::Seccomp(FILTER.to_vec()));
        let keep = pos(&steps, |s| *s == Step::KeepCaps);
        let ids = pos(&steps, |s| matches!(s, Step::SetIds { .. }));
        let set = pos(&steps, |s| matches!(s, Step::SetCaps { .. }));
        let fork = pos(&steps, |s| matches!(s, Step::Fork(_)));
        assert!(0 < bound && bound < filter && filter < keep && keep < ids);
        assert!(
            ids < set && set < fork,
            "the joiner is confined before it forks"
        );
        let d = caps::DOCKER_DEFAULT;
        assert_eq!(set_caps(&steps), (d, d, 0, 0));
        assert!(!steps.contains(&Step::NoNewPrivs));
    }

    #[test]
    fn exec_takes_the_runs_cap_flags_and_a_non_root_user_gets_a_non_root_users_sets() {
        let f = flags(&["--cap-drop", "ALL", "id"]);
        let steps = plan(&f, &facts(None)).unwrap();
        assert!(steps.contains(&Step::LimitBoundingSet(0)));
        assert_eq!(set_caps(&steps), (0, 0, 0, 0));
        // As `run --user 33 --cap-add NET_ADMIN`: the added ones as ambient (the others the
        // kernel clears when a non-root user execs).
        let f = flags(&["--cap-add", "NET_ADMIN", "-u", "web", "id"]);
        let steps = plan(&f, &facts(None)).unwrap();
        let net_admin = 1 << 12;
        let bounding = caps::DOCKER_DEFAULT | net_admin;
        assert!(steps.contains(&Step::LimitBoundingSet(bounding)));
        let a = net_admin;
        assert_eq!(set_caps(&steps), (bounding, bounding, a, a));
    }

    #[test]
    fn with_no_new_privileges_the_filter_follows_it_after_the_user_switch() {
        let f = flags(&["--security-opt", "no-new-privileges", "id"]);
        let steps = plan(&f, &facts(None)).unwrap();
        let ids = pos(&steps, |s| matches!(s, Step::SetIds { .. }));
        let nnp = pos(&steps, |s| *s == Step::NoNewPrivs);
        let filter = pos(&steps, |s| *s == Step::Seccomp(FILTER.to_vec()));
        let fork = pos(&steps, |s| matches!(s, Step::Fork(_)));
        assert!(ids < nnp && nnp + 1 == filter && filter < fork);
    }

    #[test]
    fn privileged_or_a_run_without_a_filter_means_none_and_privileged_every_capability() {
        let no_filter = |steps: &[Step]| !steps.iter().any(|s| matches!(s, Step::Seccomp(_)));
        let steps = plan(&flags(&["--privileged", "id"]), &facts(None)).unwrap();
        assert!(no_filter(&steps));
        assert!(!steps.iter().any(|s| matches!(s, Step::LimitBoundingSet(_))));
        let all = caps::ALL;
        assert_eq!(set_caps(&steps), (all, all, 0, 0));
        let unfiltered = ExecFacts {
            seccomp: None,
            ..facts(None)
        };
        assert!(no_filter(&plan(&flags(&["id"]), &unfiltered).unwrap()));
    }

    #[test]
    fn exec_t_gets_a_pty_of_the_container_after_the_fork_and_leaves_its_console() {
        let tty = ExecFacts {
            stdin_tty: true,
            ..facts(None)
        };
        let steps = plan(&flags(&["-it", "-u", "web", "sh"]), &tty).unwrap();
        let chan = pos(&steps, |s| *s == Step::TtyChannel { input: true });
        let fork = pos(&steps, |s| matches!(s, Step::Fork(_)));
        let session = pos(&steps, |s| *s == Step::NewSession);
        let console = pos(&steps, |s| {
            *s == Step::Console {
                uid: 33,
                gid: 33,
                dev_console: false,
            }
        });
        assert!(chan + 1 == fork && fork < session && session < console);
        assert!(matches!(steps[console + 1], Step::Exec { .. }));
        // -t alone without a terminal: a pty with nothing pumped into it.
        let steps = plan(&flags(&["-t", "sh"]), &facts(None)).unwrap();
        assert!(steps.contains(&Step::TtyChannel { input: false }));
    }

    #[test]
    fn exec_it_needs_a_terminal_on_stdin() {
        let e = plan(&flags(&["-it", "sh"]), &facts(None)).unwrap_err();
        assert_eq!(e, PlanError::NotATty);
    }

    #[test]
    fn exec_env_is_the_containers_then_e_and_a_bare_name_takes_the_host_value() {
        let f = flags(&[
            "-e", "A=1", "-e", "A=2", "-e", "HOSTVAR", "-e", "MISSING", "true",
        ]);
        let steps = plan(&f, &facts(None)).unwrap();
        let Some(Step::Exec { env, .. }) = steps.last() else {
            panic!()
        };
        let env: Vec<_> = env.iter().map(|e| e.to_str().unwrap()).collect();
        assert_eq!(env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(&env[1..], ["A=2", "HOSTVAR=h", "HOME=/root"]);
    }

    #[test]
    fn a_single_uid_container_takes_only_its_own_user_and_sets_no_ids() {
        let steps = plan(&flags(&["-u", "0", "true"]), &facts(Some((0, 0)))).unwrap();
        assert!(!steps.iter().any(|s| matches!(s, Step::SetIds { .. })));
        let e = plan(&flags(&["-u", "web", "true"]), &facts(Some((0, 0)))).unwrap_err();
        assert!(e.to_string().contains("user web is not mapped"), "{e}");
    }

    #[test]
    fn exec_needs_a_command_and_an_absolute_workdir() {
        assert_eq!(plan(&flags(&[]), &facts(None)), Err(PlanError::NoCommand));
        assert!(matches!(
            plan(&flags(&["-w", "rel", "true"]), &facts(None)),
            Err(PlanError::RelativeWorkdir(_))
        ));
    }
}
