//! Named and detached runs: `--name`, `-d/--detach`, `--rm`, `--restart`, and the joiner of
//! `oci2bin exec`. The on-disk contract is [`crate::containers`].
//!
//! Which runs keep a state: a named or detached one, until `oci2bin rm` (as Docker keeps stopped
//! containers), or until it ends with `--rm`. An unnamed foreground run keeps none (`--rm` by
//! default): it is not listed by `oci2bin ps`.

mod detach;
mod join;

pub use join::{exec_into, join};

use crate::args::{Flags, NetMode};
use crate::cachedir;
use crate::containers::{self, Restart, State};
use crate::exec::{self, ExecError, EXIT_OURS};
use crate::plan::Step;
use crate::sys::{fs as sfs, ns};
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

fn ours(message: String) -> ExecError {
    ExecError {
        code: EXIT_OURS,
        message,
    }
}

/// Flag combinations refused before anything starts.
pub fn check(flags: &Flags) -> Result<(), String> {
    if flags.restart != Restart::No && !flags.detach {
        return Err(format!(
            "--restart {} needs -d/--detach: only a detached run has a supervisor to restart it",
            flags.restart.name()
        ));
    }
    if flags.restart != Restart::No && flags.rm {
        return Err("conflicting options: --restart and --rm".into());
    }
    Ok(())
}

/// `--net container:X` and `--ipc container:X`: the host pid whose namespaces are joined, the
/// PID 1 of the running container X, else process X. X is looked up as the packager's `find`
/// does: a container's name, else a PID, else a unique prefix of a container's ID (the whole ID
/// included). A container that is not running is an error.
pub fn peers(flags: &Flags) -> Result<crate::plan::net::Peers, String> {
    peers_in(cachedir::root_from_vars(|k| std::env::var_os(k)), flags)
}

/// [`peers`] with the states under the cache root `root`.
fn peers_in(root: Option<PathBuf>, flags: &Flags) -> Result<crate::plan::net::Peers, String> {
    let dir = root.map(|r| r.join(containers::CONTAINERS));
    let pid = |option: &str, x: Option<&str>| {
        x.map(|x| peer(dir.as_deref(), x).map_err(|why| format!("{option} container:{x}: {why}")))
            .transpose()
    };
    let net = match &flags.net {
        NetMode::Container(x) => Some(x.as_str()),
        _ => None,
    };
    Ok(crate::plan::net::Peers {
        net: pid("--net", net)?,
        ipc: pid("--ipc", flags.ipc_container.as_deref())?,
    })
}

fn peer(dir: Option<&Path>, x: &str) -> Result<u32, String> {
    let read =
        |name: &std::ffi::OsStr| fs::read_to_string(dir?.join(name).join(containers::STATE)).ok();
    let state = match read(x.as_ref()) {
        Some(s) => s,
        None => {
            if let Some(pid) = x.parse().ok().filter(|&p: &u32| p > 0) {
                return Ok(pid);
            }
            let mut found = None;
            let all = dir.and_then(|d| fs::read_dir(d).ok());
            for e in all.into_iter().flatten().flatten() {
                let Some(s) = read(&e.file_name()) else {
                    continue;
                };
                if containers::field(&s, "id").is_some_and(|id| id.starts_with(x))
                    && found.replace(s).is_some()
                {
                    return Err("a prefix of more than one container ID: give more of it".into());
                }
            }
            found.ok_or("no such container")?
        }
    };
    let get = |k| containers::field(&state, k).unwrap_or_default();
    let pid: i32 = get("pid").parse().unwrap_or(0);
    let start: u64 = get("pid_start").parse().unwrap_or(0);
    // A pid whose start time differs is a stranger's now.
    if get("status") == "running" && pid > 0 && start != 0 && start == start_of(pid) {
        return Ok(pid as u32);
    }
    Err(format!("container {} is not running", get("name")))
}

/// The claim on a name: the container's directory and its lock, held while the run lives.
pub(crate) struct Claim {
    dir: PathBuf,
    _lock: fs::File,
}

/// Claims `name`: a second run of that name is refused while the first one lives; a stopped
/// one's state and log are replaced.
fn claim(name: &str) -> Result<Claim, ExecError> {
    let root = cachedir::root_from_vars(|k| std::env::var_os(k)).ok_or_else(|| {
        ours(
            "a named or detached run keeps its state in the cache: set HOME or XDG_CACHE_HOME"
                .into(),
        )
    })?;
    let dir = root.join(containers::CONTAINERS).join(name);
    let failed =
        |what: &str, p: &Path, e: std::io::Error| ours(format!("{what} {}: {e}", p.display()));
    // 0700: the state holds the container's environment.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| failed("create", &dir, e))?;
    let lock_path = dir.join(containers::LOCK);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| failed("open", &lock_path, e))?;
    if !sfs::flock(lock.as_fd(), true, true).map_err(|e| failed("lock", &lock_path, e))? {
        return Err(ours(format!(
            "the container name \"{name}\" is already in use by a running container: stop it, \
             or choose another --name"
        )));
    }
    for f in [
        containers::STATE,
        containers::LOG,
        containers::STOP_REQUESTED,
        containers::SECCOMP,
    ] {
        let _ = fs::remove_file(dir.join(f));
    }
    Ok(Claim { dir, _lock: lock })
}

fn now() -> String {
    containers::rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// The start time of host pid `pid` (0 when it cannot be read).
fn start_of(pid: ns::pid_t) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| containers::start_time(&s))
        .unwrap_or(0)
}

/// Replaces `state.json` whole (write, then rename), so a reader never sees half of it.
fn write_state(dir: &Path, state: &State) {
    let tmp = dir.join(format!(".{}.{}", containers::STATE, std::process::id()));
    let r = fs::write(&tmp, state.to_json())
        .and_then(|()| fs::rename(&tmp, dir.join(containers::STATE)));
    if let Err(e) = r {
        eprintln!("oci2bin: warning: write the state of {}: {e}", state.name);
    }
}

/// What the plan says about the run, for the state: command, environment, user, working
/// directory, host name, stop policy, no_new_privs and whether it has a seccomp filter.
fn state_from_plan(steps: &[Step]) -> State {
    let lossy = |v: &[std::ffi::OsString]| -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    };
    let mut s = State::default();
    for step in steps {
        match step {
            Step::Exec { argv, env, .. } => {
                s.command = lossy(argv);
                s.env = lossy(env);
            }
            Step::SetIds { uid, gid, .. } | Step::MapIds { uid, gid, .. } => {
                s.user = format!("{uid}:{gid}")
            }
            Step::Chdir(d) | Step::ChdirExisting(d) => s.workdir = d.to_string_lossy().into(),
            Step::Hostname(h) => s.hostname = h.clone(),
            Step::NoNewPrivs => s.no_new_privileges = true,
            Step::Seccomp(_) => s.seccomp = true,
            Step::Fork(stop) => {
                s.stop_signal = stop.signal;
                s.stop_timeout = stop.timeout.map(|t| t.as_secs() as u32);
            }
            _ => {}
        }
    }
    s
}

/// A new container ID: 64 random hex digits, as Docker's.
fn new_id() -> Result<String, ExecError> {
    let mut b = [0u8; 32];
    ns::fill_random(&mut b).map_err(|e| exec::fail("getrandom", e))?;
    Ok(cachedir::hex(&b))
}

/// Runs the plan: as [`exec::run`] for an unnamed foreground run; a named one records its
/// state; a detached one goes to the background ([`detach`]) and, in the caller, prints the
/// container's ID and exits 0.
pub fn run(steps: &[Step], flags: &Flags, file: &str, image: &str) -> Result<i32, ExecError> {
    if !flags.detach && flags.name.is_none() {
        return exec::run(steps);
    }
    let id = new_id()?;
    let name = flags.name.clone().unwrap_or_else(|| id[..12].to_string());
    let claim = claim(&name)?;
    // The filter as compiled for this run, for `oci2bin exec` (in the private directory).
    if let Some(bpf) = steps.iter().find_map(|s| match s {
        Step::Seccomp(b) => Some(b),
        _ => None,
    }) {
        let p = claim.dir.join(containers::SECCOMP);
        fs::write(&p, bpf).map_err(|e| ours(format!("write {}: {e}", p.display())))?;
    }
    let sec = &flags.security;
    let ports = crate::plan::net::published(flags)
        .iter()
        .map(|p| containers::Port {
            host_ip: p.ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
            host_port: p.host,
            container_port: p.ctr,
            protocol: if p.udp { "udp" } else { "tcp" }.into(),
        })
        .collect();
    let mut state = State {
        id,
        name,
        status: "created".into(),
        file: file.into(),
        image: image.into(),
        created: now(),
        restart_policy: flags.restart.name(),
        detached: flags.detach,
        auto_remove: flags.rm,
        cap_add: sec.cap_add.clone(),
        cap_drop: sec.cap_drop.clone(),
        privileged: sec.privileged,
        ports,
        volumes: crate::storage::named_volumes(&flags.mounts),
        ..state_from_plan(steps)
    };
    if flags.detach {
        return detach::detach(steps, claim, state, flags.restart);
    }
    state.supervisor_pid = std::process::id() as i32;
    state.supervisor_start = start_of(state.supervisor_pid);
    let dir = claim.dir.clone();
    let mut started = false;
    let r = {
        let mut hook = |pid| {
            started = true;
            state.pid = pid;
            state.pid_start = start_of(pid);
            state.status = "running".into();
            state.started = now();
            write_state(&dir, &state);
        };
        exec::run_with(steps, &mut hook)
    };
    ended(&dir, &mut state, r.as_ref().ok().copied(), started);
    r
}

/// Records the end of a run (`code`: its exit status, if it had one); removes the state of an
/// `--rm` run or of one that never started.
fn ended(dir: &Path, state: &mut State, code: Option<i32>, started: bool) {
    if state.auto_remove || !started {
        let _ = crate::extract::remove_tree(dir);
        return;
    }
    state.status = "exited".into();
    state.exit_code = code;
    state.finished = now();
    write_state(dir, state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, Parsed};

    fn flags(a: &[&str]) -> Result<Flags, String> {
        match parse(a.iter().copied()).map_err(|e| e.to_string())? {
            Parsed::Run(f) => Ok(f),
            _ => unreachable!(),
        }
    }

    #[test]
    fn detach_name_rm_and_restart_parse_as_docker_spells_them() {
        let f = flags(&["-d", "--name", "web", "--restart=on-failure:2", "sh"]).unwrap();
        assert!(f.detach);
        assert_eq!(f.name.as_deref(), Some("web"));
        assert_eq!(f.restart, Restart::OnFailure(Some(2)));
        assert!(flags(&["--rm", "true"]).unwrap().rm);
        assert!(check(&f).is_ok());
    }

    #[test]
    fn a_bad_name_or_restart_policy_is_refused_with_the_rule() {
        let e = flags(&["--name", "-web", "sh"]).unwrap_err();
        assert!(
            e.contains("'-web'") && e.contains("starting with a letter or digit"),
            "{e}"
        );
        let e = flags(&["--name", "a/b", "sh"]).unwrap_err();
        assert!(e.contains("'a/b'"), "{e}");
        let e = flags(&["--restart", "sometimes", "sh"]).unwrap_err();
        assert!(e.contains("on-failure[:N]"), "{e}");
    }

    #[test]
    fn a_detached_tty_is_allowed_as_docker_run_dit() {
        assert!(check(&flags(&["-dit", "sh"]).unwrap()).is_ok());
    }

    #[test]
    fn restart_needs_detach_and_conflicts_with_rm() {
        let e = check(&flags(&["--restart", "always", "sh"]).unwrap()).unwrap_err();
        assert!(e.contains("needs -d/--detach"), "{e}");
        let e = check(&flags(&["-d", "--rm", "--restart", "always", "sh"]).unwrap()).unwrap_err();
        assert_eq!(e, "conflicting options: --restart and --rm");
        assert!(check(&flags(&["-d", "--rm", "--restart", "no", "sh"]).unwrap()).is_ok());
    }

    #[test]
    fn container_peers_are_running_containers_by_name_or_id_prefix_or_pids() {
        let d = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let state = |name: &str, id: &str, status: &str, start: u64| {
            let dir = d.path().join(containers::CONTAINERS).join(name);
            fs::create_dir_all(&dir).unwrap();
            let s = State {
                id: id.into(),
                name: name.into(),
                status: status.into(),
                pid: me,
                pid_start: start,
                ..State::default()
            };
            fs::write(dir.join(containers::STATE), s.to_json()).unwrap();
        };
        let start = start_of(me);
        state("web", "abc123", "running", start);
        state("old", "abd456", "exited", start);
        // Running says the file, but the pid is someone else's now.
        state("reused", "fff789", "running", start + 1);
        let peers = |a: &[&str]| peers_in(Some(d.path().into()), &flags(a).unwrap());
        let me = Some(me as u32);
        assert_eq!(
            peers(&["--net=container:web", "--ipc=container:abc1", "sh"]),
            Ok(crate::plan::net::Peers { net: me, ipc: me })
        );
        assert_eq!(peers(&["--ipc=container:77", "sh"]).unwrap().ipc, Some(77));
        assert_eq!(peers(&["sh"]), Ok(Default::default()));
        for (arg, want) in [
            (
                "--net=container:nope",
                "--net container:nope: no such container",
            ),
            (
                "--net=container:old",
                "--net container:old: container old is not running",
            ),
            (
                "--ipc=container:reused",
                "--ipc container:reused: container reused is not running",
            ),
            (
                "--net=container:ab",
                "--net container:ab: a prefix of more than one",
            ),
        ] {
            let e = peers(&[arg, "sh"]).unwrap_err();
            assert!(e.starts_with(want), "{arg}: {e}");
        }
        assert!(peers_in(None, &flags(&["--net=container:web", "sh"]).unwrap()).is_err());
    }

    #[test]
    fn the_state_takes_command_env_user_workdir_stop_policy_and_security_from_the_plan() {
        use crate::init::StopPolicy;
        let steps = vec![
            Step::MapIds {
                uid: 0,
                host_uid: 1000,
                gid: 0,
                host_gid: 1000,
            },
            Step::Fork(StopPolicy {
                signal: 3,
                timeout: None,
            }),
            Step::Hostname("h".into()),
            Step::Chdir("/srv".into()),
            Step::NoNewPrivs,
            Step::Seccomp(vec![0; 8]),
            Step::Exec {
                argv: vec!["sh".into()],
                env: vec!["A=1".into()],
                init: true,
                keep_fds: 0,
            },
        ];
        let s = state_from_plan(&steps);
        assert_eq!((s.user.as_str(), s.workdir.as_str()), ("0:0", "/srv"));
        assert_eq!((s.command, s.env), (vec!["sh".into()], vec!["A=1".into()]));
        assert_eq!((s.stop_signal, s.stop_timeout), (3, None));
        assert_eq!(s.hostname, "h");
        assert!(s.no_new_privileges && s.seccomp && !s.privileged);
    }
}
