//! The plan: image config + runtime flags + host facts → an ordered list of [`Step`]s, in the
//! style of bubblewrap's setup ops. Pure (no I/O), so every decision is unit-tested here, and
//! the executor ([`crate::exec`]) stays a dumb loop over the steps.

use crate::args::Flags;
use crate::format::Runtime;
use crate::init::StopPolicy;
use crate::patch;
use crate::sys::ns;
use crate::users::{self, User, UserError};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host devices bind-mounted into the container's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// What the plan needs to know about the host and the prepared rootfs (gathered by
/// [`crate::host::gather`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Effective uid/gid on the host: the one id each that the user namespace maps.
    pub uid: u32,
    pub gid: u32,
    /// The host environment, for `-e K` and env-file lines without a value.
    pub env: Vec<(OsString, OsString)>,
    /// Contents of each `--env-file`, in flag order: `(path, bytes)`.
    pub env_files: Vec<(OsString, Vec<u8>)>,
    /// The extracted image (overlay lower, read-only).
    pub rootfs: PathBuf,
    /// An empty directory for the per-run tmpfs.
    pub scratch: PathBuf,
    pub hostname: String,
    /// The image's `/etc/passwd` and `/etc/group`, if they are regular files.
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// The host's `/etc/resolv.conf`.
    pub resolv_conf: Option<Vec<u8>>,
    /// Whether the image has `/etc/apt`.
    pub has_apt: bool,
    /// Container paths of gosu/su-exec/setpriv in the image.
    pub shims: Vec<String>,
}

/// One setup operation. Paths before [`Step::PivotRoot`] are host paths (in our mount
/// namespace); paths after it are container paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Print a warning (`oci2bin: warning: …`) and go on.
    Warn(String),
    /// Enter new namespaces (`sys::ns::NEW_*` flags).
    Unshare(i32),
    /// Map the single host uid/gid to the container's (after `setgroups` = deny).
    MapIds {
        uid: u32,
        host_uid: u32,
        gid: u32,
        host_gid: u32,
    },
    /// Fork. The parent forwards signals to the child, stops it as the policy says, reaps it and
    /// returns its exit status; the child (PID 1 of the new pid namespace) carries on with the
    /// next step.
    Fork(StopPolicy),
    /// The child gets SIGKILL if the supervisor dies.
    DieWithParent,
    /// Make every mount private, so nothing we mount propagates anywhere.
    MakeRootPrivate,
    Tmpfs {
        target: PathBuf,
        flags: u64,
        options: String,
    },
    /// Create a directory (an existing one is fine).
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    /// Mount an overlay of `lower` with a writable `upper`; if overlayfs is unavailable, copy
    /// `lower` into `target` (which must then be on a tmpfs) and bind it onto itself.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// Make `path` a real directory: a symlink or file the image put there is replaced, so a
    /// hostile image cannot redirect the mounts that follow.
    RealDir {
        path: PathBuf,
    },
    /// Bind a host file (a device node) onto a new empty file at `target`.
    BindFile {
        source: PathBuf,
        target: PathBuf,
    },
    Devpts {
        target: PathBuf,
    },
    Symlink {
        target: String,
        link: PathBuf,
    },
    Proc {
        target: PathBuf,
    },
    /// Recursive bind of the host's /sys, made read-only (left out with a warning if impossible).
    SysReadOnly {
        target: PathBuf,
    },
    Hostname(String),
    /// pivot_root into `new_root` and detach the old root.
    PivotRoot {
        new_root: PathBuf,
    },
    /// Write a file, replacing a symlink at `path` rather than following it.
    WriteFile {
        path: PathBuf,
        contents: Vec<u8>,
    },
    AppendFile {
        path: PathBuf,
        contents: String,
    },
    /// Bind the loader itself over a user-switching program at container path `path` under
    /// `root` (see [`crate::shim`]); skipped with a warning if a directory on the way is a
    /// symlink, so the bind cannot land outside the root.
    BindSelf {
        root: PathBuf,
        path: String,
    },
    /// chdir, creating the directory if missing (as Docker does for WORKDIR).
    Chdir(PathBuf),
    /// Exec the command, resolved with the container's `PATH`, with every descriptor above
    /// `2 + keep_fds` closed; with `init`, fork it under our init instead.
    Exec {
        argv: Vec<OsString>,
        env: Vec<OsString>,
        init: bool,
        keep_fds: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    NoCommand,
    User(UserError),
    RelativeWorkdir(OsString),
    BadEnv {
        source: OsString,
        entry: OsString,
        why: &'static str,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoCommand => write!(f, "no command specified"),
            PlanError::User(e) => e.fmt(f),
            PlanError::RelativeWorkdir(w) => write!(
                f,
                "the working directory '{}' is invalid, it needs to be an absolute path",
                w.to_string_lossy()
            ),
            PlanError::BadEnv { source, entry, why } => {
                write!(
                    f,
                    "invalid environment variable '{}' in {}: {why}",
                    entry.to_string_lossy(),
                    source.to_string_lossy()
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

impl From<UserError> for PlanError {
    fn from(e: UserError) -> Self {
        PlanError::User(e)
    }
}

/// Docker's rules: Entrypoint + Cmd; trailing args replace Cmd; `--entrypoint` replaces the
/// Entrypoint and drops the image's Cmd; `--entrypoint ''` clears it.
pub fn command(rt: &Runtime, flags: &Flags) -> Result<Vec<OsString>, PlanError> {
    let owned = |v: &Vec<String>| v.iter().map(OsString::from).collect::<Vec<_>>();
    let (entrypoint, image_cmd) = match &flags.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), None),
        Some(e) => (vec![e.clone()], None),
        None => (
            rt.entrypoint.as_ref().map(owned).unwrap_or_default(),
            rt.cmd.as_ref(),
        ),
    };
    let cmd = if flags.command.is_empty() {
        image_cmd.map(owned).unwrap_or_default()
    } else {
        flags.command.clone()
    };
    let argv: Vec<OsString> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(PlanError::NoCommand);
    }
    Ok(argv)
}

/// The name part of a `K=V` entry (all of it when there is no `=`).
fn key(entry: &[u8]) -> &[u8] {
    entry.split(|&b| b == b'=').next().unwrap_or(entry)
}

fn set_env(env: &mut Vec<OsString>, entry: OsString) {
    match env
        .iter_mut()
        .find(|e| key(e.as_bytes()) == key(entry.as_bytes()))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

fn check_name(name: &[u8], source: &OsStr, entry: &[u8]) -> Result<(), PlanError> {
    let why = if name.is_empty() {
        "no variable name"
    } else if name.iter().any(u8::is_ascii_whitespace) {
        "the name contains whitespace"
    } else {
        return Ok(());
    };
    Err(PlanError::BadEnv {
        source: source.to_owned(),
        entry: OsStr::from_bytes(entry).to_owned(),
        why,
    })
}

fn os(b: &[u8]) -> OsString {
    OsStr::from_bytes(b).to_owned()
}

/// `K=V` from a name and the host's value.
fn joined(k: &[u8], v: &OsStr) -> OsString {
    let mut e = k.to_vec();
    e.push(b'=');
    e.extend_from_slice(v.as_bytes());
    os(&e)
}

/// The container environment: image env, then env files, then `-e`; then PATH, HOSTNAME and
/// HOME where missing (as Docker adds them). Warnings go to `warn`. Values are bytes: whatever
/// the host or a file holds passes through untouched.
pub fn environment(
    rt: &Runtime,
    flags: &Flags,
    facts: &HostFacts,
    home: &str,
    warn: &mut Vec<Step>,
) -> Result<Vec<OsString>, PlanError> {
    let host = |k: &[u8]| {
        facts
            .env
            .iter()
            .find(|(hk, _)| hk.as_bytes() == k)
            .map(|(_, v)| v.as_os_str())
    };
    let mut env: Vec<OsString> = Vec::with_capacity(rt.env.len() + flags.env.len() + 3);
    for e in rt.env.iter().filter(|e| e.contains('=')) {
        set_env(&mut env, e.into());
    }
    for (path, text) in &facts.env_files {
        for line in text.split(|&b| b == b'\n') {
            let line = line.trim_ascii_start();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            if line.contains(&b'=') {
                check_name(key(line), path, line)?;
                set_env(&mut env, os(line));
            } else {
                let k = line.trim_ascii_end();
                check_name(k, path, line)?;
                if let Some(v) = host(k) {
                    set_env(&mut env, joined(k, v));
                }
            }
        }
    }
    for e in &flags.env {
        let b = e.as_bytes();
        check_name(key(b), OsStr::new("-e"), b)?;
        if b.contains(&b'=') {
            set_env(&mut env, e.clone());
        } else {
            match host(b) {
                Some(v) => set_env(&mut env, joined(b, v)),
                None => warn.push(Step::Warn(format!(
                    "environment variable {} is not set on the host; not passed",
                    e.to_string_lossy()
                ))),
            }
        }
    }
    let has = |env: &[OsString], k: &str| env.iter().any(|e| key(e.as_bytes()) == k.as_bytes());
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}").into());
    }
    if !has(&env, "HOSTNAME") {
        env.insert(1, format!("HOSTNAME={}", facts.hostname).into());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}").into());
    }
    Ok(env)
}

fn workdir(rt: &Runtime, flags: &Flags) -> Result<PathBuf, PlanError> {
    match &flags.workdir {
        Some(w) if w.as_bytes().starts_with(b"/") => Ok(w.into()),
        Some(w) => Err(PlanError::RelativeWorkdir(w.clone())),
        // An image's relative WORKDIR is taken from the root, as Docker does.
        None if rt.workdir.is_empty() => Ok("/".into()),
        None if rt.workdir.starts_with('/') => Ok(rt.workdir.clone().into()),
        None => Ok(format!("/{}", rt.workdir).into()),
    }
}

/// How a stop request ends the run: `--stop-signal`, else the image's StopSignal, else SIGTERM;
/// `--stop-timeout`, else Docker's 10 s.
fn stop_policy(rt: &Runtime, flags: &Flags, warn: &mut Vec<Step>) -> StopPolicy {
    let image_signal = match rt.stop_signal.as_str() {
        "" => None,
        s => {
            let n = ns::signal_number(s).filter(|&n| n != ns::SIGKILL);
            if n.is_none() {
                warn.push(Step::Warn(format!(
                    "the image's stop signal {s:?} is not a signal; using SIGTERM"
                )));
            }
            n
        }
    };
    let default = StopPolicy::default();
    StopPolicy {
        signal: flags.stop_signal.or(image_signal).unwrap_or(default.signal),
        timeout: match flags.stop_timeout {
            None => default.timeout,
            Some(t) => t.map(|s| Duration::from_secs(s.into())),
        },
    }
}

fn hosts_file(hostname: &str) -> Vec<u8> {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.0.1\t{hostname}\n"
    )
    .into_bytes()
}

/// Plans a run: every namespace, mount, file and the final exec, in order.
pub fn plan(rt: &Runtime, flags: &Flags, facts: &HostFacts) -> Result<Vec<Step>, PlanError> {
    let argv = command(rt, flags)?;
    let user_spec = flags.user.as_deref().unwrap_or(&rt.user);
    let user: User = users::resolve(user_spec, facts.passwd.as_deref(), facts.group.as_deref())?;
    let mut steps = Vec::with_capacity(48);
    let env = environment(rt, flags, facts, &user.home, &mut steps)?;
    let workdir = workdir(rt, flags)?;
    let stop = stop_policy(rt, flags, &mut steps);

    // Namespaces: the supervisor creates them and stays outside the mount namespace (so it can
    // clean up on the host); its first child is PID 1.
    steps.push(Step::Unshare(
        ns::NEW_USER | ns::NEW_PID | ns::NEW_UTS | ns::NEW_IPC,
    ));
    steps.push(Step::MapIds {
        uid: user.uid,
        host_uid: facts.uid,
        gid: user.gid,
        host_gid: facts.gid,
    });
    steps.push(Step::Fork(stop));
    steps.push(Step::DieWithParent);
    steps.push(Step::Unshare(ns::NEW_NS));
    steps.push(Step::MakeRootPrivate);

    // The root: a private tmpfs holds the overlay's upper and work dirs.
    let scratch = &facts.scratch;
    let root = scratch.join("root");
    steps.push(Step::Tmpfs {
        target: scratch.clone(),
        flags: 0,
        options: "mode=755".into(),
    });
    for d in ["upper", "work", "root"] {
        steps.push(Step::Mkdir {
            path: scratch.join(d),
            mode: 0o755,
        });
    }
    steps.push(Step::Overlay {
        lower: facts.rootfs.clone(),
        upper: scratch.join("upper"),
        work: scratch.join("work"),
        target: root.clone(),
    });
    for d in ["dev", "proc", "sys"] {
        steps.push(Step::RealDir { path: root.join(d) });
    }

    // /dev: a tmpfs with a few host devices, a private devpts and the usual links.
    let dev = root.join("dev");
    steps.push(Step::Tmpfs {
        target: dev.clone(),
        flags: ns::MS_NOSUID | ns::MS_STRICTATIME,
        options: "mode=755,size=65536k".into(),
    });
    steps.push(Step::Mkdir {
        path: dev.join("pts"),
        mode: 0o755,
    });
    steps.push(Step::Mkdir {
        path: dev.join("shm"),
        mode: 0o755,
    });
    for d in DEVICES {
        steps.push(Step::BindFile {
            source: PathBuf::from("/dev").join(d),
            target: dev.join(d),
        });
    }
    steps.push(Step::Devpts {
        target: dev.join("pts"),
    });
    steps.push(Step::Symlink {
        target: "pts/ptmx".into(),
        link: dev.join("ptmx"),
    });
    steps.push(Step::Tmpfs {
        target: dev.join("shm"),
        flags: ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
        options: "mode=1777,size=65536k".into(),
    });
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: target.into(),
            link: dev.join(link),
        });
    }
    steps.push(Step::Proc {
        target: root.join("proc"),
    });
    steps.push(Step::SysReadOnly {
        target: root.join("sys"),
    });
    // Before the pivot: the loader's own file is reachable (and bindable) only from here.
    for s in &facts.shims {
        steps.push(Step::BindSelf {
            root: root.clone(),
            path: s.clone(),
        });
    }
    steps.push(Step::Hostname(facts.hostname.clone()));
    steps.push(Step::PivotRoot { new_root: root });

    // Per-run files, written into the private overlay (container paths from here on).
    steps.push(Step::Mkdir {
        path: "/etc".into(),
        mode: 0o755,
    });
    steps.push(Step::WriteFile {
        path: "/etc/hostname".into(),
        contents: format!("{}\n", facts.hostname).into_bytes(),
    });
    steps.push(Step::WriteFile {
        path: "/etc/hosts".into(),
        contents: hosts_file(&facts.hostname),
    });
    if let Some(resolv) = &facts.resolv_conf {
        steps.push(Step::WriteFile {
            path: "/etc/resolv.conf".into(),
            contents: resolv.clone(),
        });
    }
    let host_user = facts
        .env
        .iter()
        .find(|(k, _)| k == "USER")
        .and_then(|(_, v)| v.to_str());
    if let Some(add) = patch::passwd_addition(facts.passwd.as_deref(), &user, host_user) {
        steps.push(Step::AppendFile {
            path: "/etc/passwd".into(),
            contents: add,
        });
    }
    if let Some(add) = patch::group_addition(facts.group.as_deref(), user.gid, host_user) {
        steps.push(Step::AppendFile {
            path: "/etc/group".into(),
            contents: add,
        });
    }
    if facts.has_apt {
        steps.push(Step::Mkdir {
            path: "/etc/apt/apt.conf.d".into(),
            mode: 0o755,
        });
        steps.push(Step::WriteFile {
            path: patch::APT_SANDBOX_CONF.into(),
            contents: patch::APT_SANDBOX_TEXT.into(),
        });
    }
    steps.push(Step::Chdir(workdir));
    steps.push(Step::Exec {
        argv,
        env,
        init: !flags.no_init,
        keep_fds: flags.preserve_fds,
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn image() -> Runtime {
        Runtime {
            image_id: format!("sha256:{}", "0".repeat(64)),
            name: "test:latest".into(),
            entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
            cmd: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
            env: vec![
                "PATH=/opt/bin:/bin".into(),
                "LANG=C.UTF-8".into(),
                "EMPTY=".into(),
            ],
            workdir: "/srv".into(),
            ..Runtime::default()
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            uid: 1000,
            gid: 1000,
            env: vec![
                ("TERM".into(), "xterm".into()),
                ("USER".into(), "alice".into()),
            ],
            rootfs: "/cache/rootfs".into(),
            scratch: "/run/o2b".into(),
            hostname: "0123456789ab".into(),
            passwd: Some(
                "root:x:0:0:root:/root:/bin/sh\napp:x:100:101::/home/app:/bin/sh\n".into(),
            ),
            group: Some("root:x:0:\napp:x:101:\n".into()),
            resolv_conf: Some(b"nameserver 10.0.0.1\n".to_vec()),
            ..HostFacts::default()
        }
    }

    fn flags(args: &[&str]) -> Flags {
        match crate::args::parse(args.iter().map(|s| s.to_string())).unwrap() {
            crate::args::Parsed::Run(f) => f,
            p => panic!("{p:?}"),
        }
    }

    fn raw_exec_of(steps: &[Step]) -> (&[OsString], &[OsString], bool) {
        match steps.last() {
            Some(Step::Exec {
                argv, env, init, ..
            }) => (argv, env, *init),
            other => panic!("plan does not end in exec: {other:?}"),
        }
    }

    /// The exec step with its strings as text (the tests' values are UTF-8).
    fn exec_of(steps: &[Step]) -> (Vec<String>, Vec<String>, bool) {
        let (argv, env, init) = raw_exec_of(steps);
        let text = |v: &[OsString]| v.iter().map(|s| s.to_str().unwrap().to_string()).collect();
        (text(argv), text(env), init)
    }

    fn env_of(args: &[&str], f: &HostFacts) -> Vec<String> {
        exec_of(&plan(&image(), &flags(args), f).unwrap())
            .1
            .to_vec()
    }

    #[test]
    fn command_is_entrypoint_then_cmd() {
        assert_eq!(
            command(&image(), &flags(&[])).unwrap(),
            ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
    }

    #[test]
    fn trailing_args_replace_cmd_but_keep_entrypoint() {
        assert_eq!(
            command(&image(), &flags(&["sh", "-c", "x"])).unwrap(),
            ["/docker-entrypoint.sh", "sh", "-c", "x"]
        );
    }

    #[test]
    fn entrypoint_flag_replaces_entrypoint_and_drops_image_cmd() {
        assert_eq!(
            command(&image(), &flags(&["--entrypoint", "/bin/sh"])).unwrap(),
            ["/bin/sh"]
        );
        assert_eq!(
            command(
                &image(),
                &flags(&["--entrypoint", "/bin/sh", "--", "-c", "id"])
            )
            .unwrap(),
            ["/bin/sh", "-c", "id"]
        );
    }

    #[test]
    fn empty_entrypoint_flag_runs_the_arguments_alone() {
        assert_eq!(
            command(&image(), &flags(&["--entrypoint=", "ls", "/"])).unwrap(),
            ["ls", "/"]
        );
        assert_eq!(
            command(&image(), &flags(&["--entrypoint="])),
            Err(PlanError::NoCommand)
        );
    }

    #[test]
    fn an_image_without_entrypoint_or_cmd_needs_a_command() {
        let rt = Runtime {
            entrypoint: None,
            cmd: None,
            ..image()
        };
        let e = plan(&rt, &flags(&[]), &facts()).unwrap_err();
        assert_eq!(e.to_string(), "no command specified");
        assert_eq!(command(&rt, &flags(&["true"])).unwrap(), ["true"]);
    }

    #[test]
    fn env_precedence_is_image_then_files_then_dash_e() {
        let mut f = facts();
        f.env_files = vec![
            (
                "a.env".into(),
                "# comment\n\nLANG=de_DE\nA=file-a\n  B=file-b\nTERM\nUNSET\n".into(),
            ),
            ("b.env".into(), "A=file-b-wins\n".into()),
        ];
        let env = env_of(
            &["-e", "B=flag", "--env-file", "ignored-here", "-e", "C=flag"],
            &f,
        );
        assert_eq!(
            env,
            [
                "PATH=/opt/bin:/bin",
                "HOSTNAME=0123456789ab",
                "LANG=de_DE",
                "EMPTY=",
                "A=file-b-wins",
                "B=flag",
                "TERM=xterm",
                "C=flag",
                "HOME=/root",
            ]
        );
    }

    #[test]
    fn dash_e_without_value_copies_from_the_host_or_warns() {
        let steps = plan(&image(), &flags(&["-e", "TERM", "-e", "NOPE"]), &facts()).unwrap();
        assert!(exec_of(&steps).1.contains(&"TERM=xterm".to_string()));
        assert!(!exec_of(&steps).1.iter().any(|e| e.starts_with("NOPE")));
        assert!(steps.contains(&Step::Warn(
            "environment variable NOPE is not set on the host; not passed".into()
        )));
    }

    #[test]
    fn path_hostname_and_home_are_added_when_missing() {
        let rt = Runtime {
            env: vec![],
            ..image()
        };
        let env = exec_of(&plan(&rt, &flags(&[]), &facts()).unwrap())
            .1
            .to_vec();
        assert_eq!(
            env,
            [
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=0123456789ab".into(),
                "HOME=/root".into()
            ]
        );
    }

    #[test]
    fn explicit_home_and_hostname_win() {
        let env = env_of(&["-e", "HOME=/x", "-e", "HOSTNAME=box"], &facts());
        assert!(env.contains(&"HOME=/x".to_string()));
        assert!(env.contains(&"HOSTNAME=box".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
    }

    #[test]
    fn bad_variable_names_are_rejected() {
        let mut f = facts();
        f.env_files = vec![("a.env".into(), "BAD NAME=1\n".into())];
        assert_eq!(
            plan(&image(), &flags(&[]), &f).unwrap_err().to_string(),
            "invalid environment variable 'BAD NAME=1' in a.env: the name contains whitespace"
        );
        assert!(plan(&image(), &flags(&["-e", "=x"]), &facts()).is_err());
    }

    #[test]
    fn user_flag_sets_ids_home_and_the_uid_map() {
        let steps = plan(&image(), &flags(&["-u", "app"]), &facts()).unwrap();
        assert!(steps.contains(&Step::MapIds {
            uid: 100,
            host_uid: 1000,
            gid: 101,
            host_gid: 1000
        }));
        assert!(exec_of(&steps).1.contains(&"HOME=/home/app".to_string()));
        // Known user and group: nothing to patch.
        assert!(!steps.iter().any(|s| matches!(s, Step::AppendFile { .. })));
    }

    #[test]
    fn image_user_applies_unless_overridden() {
        let rt = Runtime {
            user: "app".into(),
            ..image()
        };
        let steps = plan(&rt, &flags(&[]), &facts()).unwrap();
        assert!(steps.contains(&Step::MapIds {
            uid: 100,
            host_uid: 1000,
            gid: 101,
            host_gid: 1000
        }));
        let steps = plan(&rt, &flags(&["--user", "0"]), &facts()).unwrap();
        assert!(steps.contains(&Step::MapIds {
            uid: 0,
            host_uid: 1000,
            gid: 0,
            host_gid: 1000
        }));
    }

    #[test]
    fn default_is_root_in_the_container_whoever_runs_it() {
        let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
        assert!(steps.contains(&Step::MapIds {
            uid: 0,
            host_uid: 1000,
            gid: 0,
            host_gid: 1000
        }));
    }

    #[test]
    fn unknown_user_name_fails_the_plan() {
        assert!(matches!(
            plan(&image(), &flags(&["-u", "ghost"]), &facts()),
            Err(PlanError::User(UserError::NoSuchUser(_)))
        ));
    }

    #[test]
    fn a_uid_missing_from_passwd_is_added_to_the_private_copy() {
        let steps = plan(&image(), &flags(&["-u", "4242:4343"]), &facts()).unwrap();
        assert!(steps.contains(&Step::AppendFile {
            path: "/etc/passwd".into(),
            contents: "alice:x:4242:4343::/:/bin/sh\n".into()
        }));
        assert!(steps.contains(&Step::AppendFile {
            path: "/etc/group".into(),
            contents: "alice:x:4343:\n".into()
        }));
        assert!(exec_of(&steps).1.contains(&"HOME=/".to_string()));
    }

    #[test]
    fn apt_images_get_the_sandbox_override() {
        let mut f = facts();
        assert!(!plan(&image(), &flags(&[]), &f)
            .unwrap()
            .iter()
            .any(|s| matches!(s, Step::WriteFile { path, .. } if path.starts_with("/etc/apt"))));
        f.has_apt = true;
        let steps = plan(&image(), &flags(&[]), &f).unwrap();
        assert!(steps.contains(&Step::WriteFile {
            path: "/etc/apt/apt.conf.d/00oci2bin-sandbox".into(),
            contents: b"APT::Sandbox::User \"root\";\n".to_vec()
        }));
    }

    #[test]
    fn user_switchers_are_shadowed_by_the_loader() {
        let mut f = facts();
        f.shims = vec!["/usr/sbin/gosu".into(), "/usr/bin/setpriv".into()];
        let steps = plan(&image(), &flags(&[]), &f).unwrap();
        let binds: Vec<_> = steps
            .iter()
            .filter(|s| matches!(s, Step::BindSelf { .. }))
            .cloned()
            .collect();
        assert_eq!(
            binds,
            [
                Step::BindSelf {
                    root: "/run/o2b/root".into(),
                    path: "/usr/sbin/gosu".into()
                },
                Step::BindSelf {
                    root: "/run/o2b/root".into(),
                    path: "/usr/bin/setpriv".into()
                }
            ]
        );
        let pivot = steps
            .iter()
            .position(|s| matches!(s, Step::PivotRoot { .. }))
            .unwrap();
        assert!(
            steps
                .iter()
                .rposition(|s| matches!(s, Step::BindSelf { .. }))
                .unwrap()
                < pivot
        );
    }

    #[test]
    fn workdir_comes_from_flag_then_image_then_root() {
        let chdir = |rt: &Runtime, a: &[&str]| {
            plan(rt, &flags(a), &facts())
                .unwrap()
                .into_iter()
                .find_map(|s| match s {
                    Step::Chdir(d) => Some(d),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(chdir(&image(), &["-w", "/tmp"]), Path::new("/tmp"));
        assert_eq!(chdir(&image(), &[]), Path::new("/srv"));
        assert_eq!(
            chdir(
                &Runtime {
                    workdir: String::new(),
                    ..image()
                },
                &[]
            ),
            Path::new("/")
        );
        assert_eq!(
            chdir(
                &Runtime {
                    workdir: "app".into(),
                    ..image()
                },
                &[]
            ),
            Path::new("/app")
        );
        assert_eq!(
            plan(&image(), &flags(&["-w", "rel"]), &facts())
                .unwrap_err()
                .to_string(),
            "the working directory 'rel' is invalid, it needs to be an absolute path"
        );
    }

    #[test]
    fn the_init_is_pid_1_unless_no_init_is_asked_for() {
        assert!(exec_of(&plan(&image(), &flags(&[]), &facts()).unwrap()).2);
        assert!(exec_of(&plan(&image(), &flags(&["--init"]), &facts()).unwrap()).2);
        assert!(!exec_of(&plan(&image(), &flags(&["--no-init"]), &facts()).unwrap()).2);
    }

    fn stop_of(rt: &Runtime, args: &[&str]) -> StopPolicy {
        plan(rt, &flags(args), &facts())
            .unwrap()
            .into_iter()
            .find_map(|s| match s {
                Step::Fork(p) => Some(p),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn stop_is_sigterm_then_kill_after_ten_seconds_by_default() {
        assert_eq!(
            stop_of(&image(), &[]),
            StopPolicy {
                signal: libc::SIGTERM,
                timeout: Some(Duration::from_secs(10))
            }
        );
    }

    #[test]
    fn stop_signal_comes_from_the_flag_then_the_image() {
        let rt = Runtime {
            stop_signal: "SIGQUIT".into(),
            ..image()
        };
        assert_eq!(stop_of(&rt, &[]).signal, libc::SIGQUIT);
        assert_eq!(
            stop_of(&rt, &["--stop-signal", "USR1"]).signal,
            libc::SIGUSR1
        );
        let odd = Runtime {
            stop_signal: "SIGNOPE".into(),
            ..image()
        };
        let steps = plan(&odd, &flags(&[]), &facts()).unwrap();
        assert!(steps.contains(&Step::Warn(
            "the image's stop signal \"SIGNOPE\" is not a signal; using SIGTERM".into()
        )));
    }

    #[test]
    fn stop_timeout_flag_sets_or_removes_the_deadline() {
        assert_eq!(
            stop_of(&image(), &["--stop-timeout", "2"]).timeout,
            Some(Duration::from_secs(2))
        );
        assert_eq!(stop_of(&image(), &["--stop-timeout=-1"]).timeout, None);
    }

    #[test]
    fn preserve_fds_reaches_exec() {
        let keep = |args: &[&str]| match plan(&image(), &flags(args), &facts()).unwrap().pop() {
            Some(Step::Exec { keep_fds, .. }) => keep_fds,
            other => panic!("{other:?}"),
        };
        assert_eq!(keep(&[]), 0);
        assert_eq!(keep(&["--preserve-fds", "2"]), 2);
    }

    #[test]
    fn non_utf8_arguments_and_environment_reach_exec_untouched() {
        use std::os::unix::ffi::OsStringExt;
        let raw = |b: &[u8]| OsString::from_vec(b.to_vec());
        let mut f = facts();
        f.env.push((raw(b"LANG_\xff"), raw(b"v\xfe")));
        f.env_files = vec![(
            raw(b"/e\xff.env"),
            b"FILE=\xe9t\xe9\r\nLANG_\xff\n".to_vec(),
        )];
        let args = vec![raw(b"-e"), raw(b"K=\xff"), raw(b"echo"), raw(b"caf\xe9")];
        let crate::args::Parsed::Run(fl) = crate::args::parse(args).unwrap() else {
            panic!()
        };
        let steps = plan(&image(), &fl, &f).unwrap();
        let (argv, env, _) = raw_exec_of(&steps);
        assert_eq!(
            argv,
            [raw(b"/docker-entrypoint.sh"), raw(b"echo"), raw(b"caf\xe9")]
        );
        for want in [
            raw(b"K=\xff"),
            raw(b"FILE=\xe9t\xe9"),
            raw(b"LANG_\xff=v\xfe"),
        ] {
            assert!(env.contains(&want), "{want:?} not in {env:?}");
        }
    }

    #[test]
    fn namespaces_come_first_and_the_mount_namespace_only_in_the_child() {
        let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
        assert_eq!(
            steps[0],
            Step::Unshare(ns::NEW_USER | ns::NEW_PID | ns::NEW_UTS | ns::NEW_IPC)
        );
        assert!(matches!(steps[1], Step::MapIds { .. }));
        assert_eq!(steps[2], Step::Fork(StopPolicy::default()));
        let fork = steps
            .iter()
            .position(|s| matches!(s, Step::Fork(_)))
            .unwrap();
        let mount_ns = steps
            .iter()
            .position(|s| *s == Step::Unshare(ns::NEW_NS))
            .unwrap();
        assert!(mount_ns > fork);
    }

    #[test]
    fn the_root_is_an_overlay_on_a_private_tmpfs_then_pivoted_into() {
        let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
        let at = |want: &Step| steps.iter().position(|s| s == want).unwrap();
        let tmpfs = at(&Step::Tmpfs {
            target: "/run/o2b".into(),
            flags: 0,
            options: "mode=755".into(),
        });
        let overlay = at(&Step::Overlay {
            lower: "/cache/rootfs".into(),
            upper: "/run/o2b/upper".into(),
            work: "/run/o2b/work".into(),
            target: "/run/o2b/root".into(),
        });
        let pivot = at(&Step::PivotRoot {
            new_root: "/run/o2b/root".into(),
        });
        assert!(tmpfs < overlay && overlay < pivot);
        // Mount targets are made real directories before anything is mounted on them.
        for d in ["dev", "proc", "sys"] {
            let real = at(&Step::RealDir {
                path: format!("/run/o2b/root/{d}").into(),
            });
            assert!(overlay < real && real < pivot);
        }
        assert!(
            at(&Step::Proc {
                target: "/run/o2b/root/proc".into()
            }) < pivot
        );
        assert!(
            at(&Step::SysReadOnly {
                target: "/run/o2b/root/sys".into()
            }) < pivot
        );
    }

    #[test]
    fn dev_has_the_standard_nodes_and_links() {
        let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
        for d in DEVICES {
            assert!(steps.contains(&Step::BindFile {
                source: format!("/dev/{d}").into(),
                target: format!("/run/o2b/root/dev/{d}").into()
            }));
        }
        assert!(steps.contains(&Step::Devpts {
            target: "/run/o2b/root/dev/pts".into()
        }));
        assert!(steps.contains(&Step::Symlink {
            target: "pts/ptmx".into(),
            link: "/run/o2b/root/dev/ptmx".into()
        }));
        assert!(steps.contains(&Step::Symlink {
            target: "/proc/self/fd".into(),
            link: "/run/o2b/root/dev/fd".into()
        }));
    }

    #[test]
    fn hostname_hosts_and_resolv_conf_are_written_after_the_pivot() {
        let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
        let pivot = steps
            .iter()
            .position(|s| matches!(s, Step::PivotRoot { .. }))
            .unwrap();
        assert!(steps.contains(&Step::Hostname("0123456789ab".into())));
        for (path, needle) in [
            ("/etc/hostname", "0123456789ab\n"),
            ("/etc/hosts", "127.0.0.1\t0123456789ab\n"),
            ("/etc/resolv.conf", "nameserver 10.0.0.1\n"),
        ] {
            let i = steps
                .iter()
                .position(|s| {
                    matches!(s, Step::WriteFile { path: p, contents }
                    if p.to_str() == Some(path)
                        && String::from_utf8_lossy(contents).contains(needle))
                })
                .unwrap_or_else(|| panic!("no write of {path}"));
            assert!(i > pivot);
        }
        let mut f = facts();
        f.resolv_conf = None;
        assert!(!plan(&image(), &flags(&[]), &f)
            .unwrap()
            .iter()
            .any(|s| matches!(s, Step::WriteFile { path, .. } if path.ends_with("resolv.conf"))));
    }
}
