//! `oci2bin exec`: a small plan that runs a command in a running container, as `docker exec`.
//! The joiner enters the namespaces of the container's PID 1 (the user namespace first, so it
//! holds the capabilities the others need), takes its root, becomes the user, forks the command
//! (a child of the joiner is in the joined pid namespace) and returns its exit status.

use super::{PlanError, Step, DEFAULT_PATH};
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
}

/// Plans `exec`: `flags` holds `-e`, `-u`, `-w` and the command (the packager passes the
/// container's own environment, user and working directory as those flags).
pub fn plan(flags: &Flags, facts: &ExecFacts) -> Result<Vec<Step>, PlanError> {
    if flags.command.is_empty() {
        return Err(PlanError::NoCommand);
    }
    let spec = flags.user.as_deref().unwrap_or("0");
    let user = users::resolve(spec, facts.passwd.as_deref(), facts.group.as_deref())?;
    let mut steps = vec![Step::JoinContainer {
        pid: facts.pid,
        namespaces: facts.differ.iter().map(|s| s.to_string()).collect(),
    }];
    match facts.single {
        // One uid is mapped: we are it once joined, and can be no other.
        Some((uid, gid)) if (uid, gid) != (user.uid, user.gid) => {
            return Err(PlanError::Exec(format!(
                "user {spec} is not mapped in this container: it runs with a single uid \
                 ({uid}:{gid}) and only that user can exec in it"
            )))
        }
        Some(_) => {}
        None => steps.push(Step::SetIds {
            uid: user.uid,
            gid: user.gid,
            groups: users::supplementary_groups(
                facts.passwd.as_deref(),
                facts.group.as_deref(),
                user.uid,
            ),
        }),
    }
    // Hook: the security steps of a run (no_new_privs, capabilities, seccomp: plan/security.rs)
    // belong here too, after the ids and before the fork, so exec gets the container's.
    match &flags.workdir {
        Some(w) if w.as_bytes().starts_with(b"/") => steps.push(Step::ChdirExisting(w.into())),
        Some(w) => return Err(PlanError::RelativeWorkdir(w.clone())),
        None => steps.push(Step::ChdirExisting("/".into())),
    }
    steps.push(Step::Fork(StopPolicy::default()));
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
        }
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
        assert_eq!(
            steps[1],
            Step::SetIds {
                uid: 33,
                gid: 33,
                groups: vec![7]
            }
        );
        assert_eq!(steps[2], Step::ChdirExisting("/srv".into()));
        assert!(
            matches!(steps[3], Step::Fork(_)),
            "a child of the joiner is in the pid ns"
        );
        let Step::Exec {
            argv, env, init, ..
        } = &steps[4]
        else {
            panic!("{:?}", steps[4])
        };
        assert_eq!((argv, *init), (&vec![OsString::from("id")], false));
        assert!(env.contains(&"HOME=/srv".into()), "{env:?}");
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
