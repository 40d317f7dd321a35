//! The plan: image config + runtime flags + host facts → an ordered list of [`Step`]s, in the
//! style of bubblewrap's setup ops. Pure (no I/O), so every decision is unit-tested here, and
//! the executor ([`crate::exec`]) stays a dumb loop over the steps.
//!
//! By concern: [`process`] decides what runs (command, environment, working directory, how it
//! is stopped), [`root`] the namespaces and the root filesystem up to `pivot_root`, [`files`]
//! the per-run files written after it. [`plan`] strings them together; a new flag is a few steps
//! in the module it concerns.

pub mod exec_into;
mod files;
mod masks;
pub mod mounts;
pub mod net;
mod process;
pub mod resources;
mod root;
pub mod security;
#[cfg(test)]
mod security_tests;
mod terminal;
#[cfg(test)]
mod tests;
mod userns;
pub mod vm;

pub use process::{command, environment};
pub use root::{Upper, DEVICES};
pub use userns::{userns, IdFacts, Mapping};

use crate::args::Flags;
use crate::format::Runtime;
use crate::init::StopPolicy;
use crate::sys::ns;
use crate::users::{self, UserError};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    /// The extracted image (overlay lowers, read-only): a merged tree or its layers.
    pub rootfs: crate::stack::Stack,
    /// An empty directory for the per-run tmpfs.
    pub scratch: PathBuf,
    /// The container's host name: `--hostname`, else a random one.
    pub hostname: String,
    /// The image's `/etc/passwd` and `/etc/group`, if they are regular files.
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// The host's `/etc/resolv.conf`.
    pub resolv_conf: Option<Vec<u8>>,
    /// Whether the image has `/etc/apt`.
    pub has_apt: bool,
    /// gosu/su-exec/setpriv in the image.
    pub shims: Vec<crate::patch::Shim>,
    /// Which of [`crate::patch::SEEDED_DIRS`] hold no symlink on the way ([`crate::patch::plain_dirs`]).
    pub plain_dirs: Vec<String>,
    /// The user namespace the run is in when the plan is made.
    pub ids: IdMode,
    /// For each of `flags.mounts`, in order: whether its host source is a directory, or why it
    /// cannot be bound (a tmpfs has no source: `Ok(true)`).
    pub mount_sources: Vec<Result<bool, String>>,
    /// The host's IPv4 default gateway (`host-gateway` under `--net pasta`).
    pub gateway: Option<String>,
    /// Kernel, LSMs and the seccomp profile file ([`security`]).
    pub security: security::SecurityFacts,
    /// The host has only the unified cgroup hierarchy (v2): containers get a private cgroup
    /// namespace by default there, as under Docker.
    pub cgroup_v2_only: bool,
    /// Whether the loader's stdin is a terminal (`-it` needs one).
    pub stdin_tty: bool,
    /// Our cgroups, read only when a cgroup flag is given ([`resources`]).
    pub cgroups: resources::CgroupFacts,
    /// Where the container's writes go (the overlay's upper and work directories).
    pub upper: Upper,
    /// The processes whose namespaces `--net container:X` / `--ipc container:X` join.
    pub peers: net::Peers,
}

/// A per-run file written straight into a fresh upper layer rather than through the mounted
/// overlay (see `exec/seed.rs`): container path and contents (empty: a placeholder to bind onto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// The user namespace of a run, as far as the plan is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdMode {
    /// Not entered yet: the plan unshares it, maps the one host uid/gid to the container user
    /// and patches the root filesystem for a namespace with a single id.
    #[default]
    Single,
    /// Already entered, with the subordinate range mapped ([`userns`]): the container user is
    /// set with setgroups/setgid/setuid, no patches, no stand-ins. With `keep_id` the caller's
    /// own ids are themselves inside and the default user.
    Mapped { keep_id: bool },
}

/// One setup operation. Paths before [`Step::PivotRoot`] are host paths (in our mount
/// namespace); paths after it are container paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Print a warning (`oci2bin: warning: …`) and go on.
    Warn(String),
    /// Enter new namespaces (`sys::ns::NEW_*` flags).
    Unshare(i32),
    /// Become the container user in a mapped namespace: supplementary groups, gid, uid.
    SetIds {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
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
    /// Mount an overlay of `lower` (one tree or the image's layers) with a writable `upper`; if
    /// overlayfs is unavailable, copy the tree `lower` shows into `target` (which must then be on
    /// a tmpfs) and bind it onto itself. With
    /// `ram` (upper and work on the tmpfs), an `upper` on disk that overlayfs refuses is
    /// replaced by those, with a warning; without it, that refusal stops the start. A `ram`
    /// fallback also marks `upper` as thrown away at exit: it is mounted `volatile`.
    Overlay {
        lower: crate::stack::Stack,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
        ram: Option<(PathBuf, PathBuf)>,
        /// Per-run files written into the fresh upper before it is mounted ([`Seed`]).
        seed: Vec<Seed>,
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
    /// Hide a path (Docker's masked paths): a file under `/dev/null`, a directory under an
    /// empty read-only tmpfs; a path the kernel does not have is skipped.
    MaskPath {
        path: PathBuf,
    },
    /// Bind a path onto itself read-only (Docker's read-only paths); skipped when missing.
    ReadOnlyPath {
        path: PathBuf,
    },
    /// Bring the loopback interface of our network namespace up.
    LoopbackUp,
    /// Let every group mapped into the namespace open ICMP echo sockets (`ping` without
    /// CAP_NET_RAW): `net.ipv4.ping_group_range` of our network namespace.
    PingGroupRange,
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
    /// A user mount (`-v`, `--mount`, `--tmpfs`, `--secret`) at container path `target`,
    /// resolved inside `root` without ever leaving it (symlinks followed as if `root` were `/`;
    /// missing parts created in the private overlay), then `flags` (`MS_RDONLY`, …) applied to
    /// the whole mounted tree. Any failure stops the start.
    Mount {
        root: PathBuf,
        target: PathBuf,
        what: mounts::What,
        flags: u64,
    },
    /// `--read-only`: remount the container's root read-only (after the per-run files).
    ReadOnlyRoot,
    /// Bind the loader itself over a user-switching program at container path `path` under
    /// `root` (see [`crate::shim`]); skipped with a warning if a directory on the way is a
    /// symlink, so the bind cannot land outside the root.
    BindSelf {
        root: PathBuf,
        path: String,
    },
    /// Raise these resources' soft limits to their hard ones (`sys::ns::RLIMIT_*`), as rootless
    /// podman does: a login's soft 1024 open files is too few for many servers, and Docker's
    /// containers get the daemon's (usually 1048576).
    SoftLimitsToHard(Vec<i32>),
    /// `--ulimit`: set the soft and hard limits of a resource (`sys::res`); failing stops the
    /// start (a hard limit above ours cannot be set).
    Rlimit {
        name: &'static str,
        resource: i32,
        soft: u64,
        hard: u64,
    },
    /// Create the container's cgroup `dir` (removing ones left by killed runs beside it) and
    /// write each `(file, value)`; the supervisor removes it after the container ends. With
    /// `delegate` (cgroup v2), first enable those controllers (`+memory +pids`) in the parent,
    /// moving ourselves into the leaf `DIR-loader` if the parent has processes. On failure:
    /// with `required`, stop the start; else warn that `flags` are ignored and go on.
    CgroupCreate {
        dir: PathBuf,
        files: Vec<(&'static str, String)>,
        flags: String,
        required: bool,
        delegate: Option<String>,
    },
    /// Move this process (PID 1, before anything else runs) into each cgroup.
    CgroupJoin(Vec<PathBuf>),
    /// chdir, creating the directory if missing (as Docker does for WORKDIR).
    Chdir(PathBuf),
    /// chdir without creating the directory: it lies in a user mount (a host bind), where we
    /// create nothing.
    ChdirExisting(PathBuf),
    /// Start the network helper (slirp4netns, pasta) in a child that stays in the host's
    /// namespaces and waits: the namespace it connects does not exist yet. It dies with us.
    NetHelper(net::Helper),
    /// Let the helper connect the namespaces we are in now, and wait until it has.
    NetHelperReady,
    /// Publish ports through slirp4netns's API socket (then remove the socket).
    SlirpForward {
        api: PathBuf,
        ports: Vec<net::Publish>,
    },
    /// Join another process's namespaces (`container:X`, resolved to a host pid): its user
    /// namespace first (unless it is ours), then its network and/or IPC namespace.
    JoinNs {
        net: Option<u32>,
        ipc: Option<u32>,
    },
    /// Drop every capability not in the set from the bounding set.
    LimitBoundingSet(u64),
    /// Keep the permitted capabilities across the user switch that follows.
    KeepCaps,
    /// Set the effective, permitted and inheritable capabilities (each limited to what the
    /// process holds), then raise the ambient ones.
    SetCaps {
        effective: u64,
        permitted: u64,
        inheritable: u64,
        ambient: u64,
    },
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Install this seccomp filter (`struct sock_filter` bytes).
    Seccomp(Vec<u8>),
    /// Write an LSM label for the next exec (`/proc/self/attr/…/exec`).
    ExecLabel {
        path: PathBuf,
        value: String,
    },
    /// Exec the command, resolved with the container's `PATH`, with every descriptor above
    /// `2 + keep_fds` closed; with `init`, fork it under our init instead.
    Exec {
        argv: Vec<OsString>,
        env: Vec<OsString>,
        init: bool,
        keep_fds: u32,
    },
    /// `-t`, before the fork: a socketpair the child sends the pty master back through; the
    /// supervisor then pumps it to stdout and, when `input`, stdin into it.
    TtyChannel {
        input: bool,
    },
    /// In the child: lead a new session (no controlling terminal), as Docker's containers do.
    NewSession,
    /// `-t`, after the pivot: a pty from the container's `/dev/ptmx`; the slave becomes the
    /// controlling terminal, stdio and, with `dev_console`, `/dev/console` (owned by
    /// `uid`:`gid`), sized as the caller's terminal; the master goes to the supervisor over the
    /// [`Step::TtyChannel`].
    Console {
        uid: u32,
        gid: u32,
        dev_console: bool,
    },
    /// Mount a POSIX message queue file system (of our ipc namespace) at `target`.
    Mqueue {
        target: PathBuf,
    },
    /// `oci2bin exec`: join the namespaces of kinds `namespaces` (`/proc/PID/ns/KIND`, the user
    /// namespace first) of the container whose PID 1 is host pid `pid`, then chroot into its
    /// root (`/proc/PID/root`, opened before any join).
    JoinContainer {
        pid: i32,
        namespaces: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    NoCommand,
    User(UserError),
    RelativeWorkdir(OsString),
    /// `--userns map|keep-id` on a host that cannot map a range.
    NoRange {
        mode: &'static str,
        why: String,
    },
    BadEnv {
        source: OsString,
        entry: OsString,
        why: &'static str,
    },
    /// A network flag the mode cannot honour.
    Network {
        option: &'static str,
        mode: &'static str,
        why: &'static str,
    },
    /// A mount that cannot be made as asked.
    Mount(String),
    /// A capability, seccomp profile or label that cannot be applied as asked.
    Security(String),
    /// `-it` with stdin not a terminal.
    NotATty,
    /// Resource flags that do not fit together, or limits that cannot be applied.
    Resources(String),
    /// `oci2bin exec` cannot be done as asked.
    Exec(String),
    /// A flag VM mode cannot honour.
    Vm(String),
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
            PlanError::Network { option, mode, why } => {
                write!(f, "{option} cannot be used with --net {mode}: {why}")
            }
            PlanError::Mount(why) | PlanError::Resources(why) => f.write_str(why),
            PlanError::Security(why) => f.write_str(why),
            PlanError::NotATty => f.write_str("the input device is not a TTY"),
            PlanError::Exec(why) | PlanError::Vm(why) => f.write_str(why),
            PlanError::NoRange { mode, why } => {
                write!(f, "--userns {mode} needs a subordinate id range: {why}")
            }
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

/// Plans a run: every namespace, mount, file and the final exec, in order.
pub fn plan(rt: &Runtime, flags: &Flags, facts: &HostFacts) -> Result<Vec<Step>, PlanError> {
    net::check(flags, facts)?;
    terminal::check(flags, facts.stdin_tty)?;
    let argv = process::command(rt, flags)?;
    // keep-id: the caller's own ids are the default user, as with podman.
    let own = format!("{}:{}", facts.uid, facts.gid);
    let default_user = match facts.ids {
        IdMode::Mapped { keep_id: true } => &own,
        _ => &rt.user,
    };
    let user_spec = flags.user.as_deref().unwrap_or(default_user);
    let user = users::resolve(user_spec, facts.passwd.as_deref(), facts.group.as_deref())?;
    let mut steps = Vec::with_capacity(48);
    let env = process::environment(rt, flags, facts, &user.home, &mut steps)?;
    let workdir = process::workdir(rt, flags)?;
    let stop = process::stop_policy(rt, flags, &mut steps);
    // Cgroups are made by the supervisor before any namespace, and joined by PID 1 first.
    let (cgroups, join) = resources::cgroups(&flags.resources, &facts.cgroups)?;
    steps.extend(cgroups);
    root::namespaces(&user, facts, flags, stop, &mut steps);
    steps.extend(join);
    // After joining its cgroup, so that is the namespace's root.
    if flags.cgroupns_private.unwrap_or(facts.cgroup_v2_only) {
        steps.push(Step::Unshare(ns::NEW_CGROUP));
    }
    terminal::session(flags, facts.stdin_tty, &mut steps);
    let mut files = Vec::new();
    files::per_run(facts, flags, &user, &mut files);
    // A user mount wins over our per-run files (as Docker's do): nothing is written through a
    // bind into a host file.
    files.retain(|s| match s {
        Step::Mkdir { path, .. } | Step::WriteFile { path, .. } | Step::AppendFile { path, .. } => {
            !flags.mounts.iter().any(|m| path.starts_with(&m.target))
        }
        _ => true,
    });
    let seed = files::seeds(facts, &mut files);
    root::filesystem(facts, flags, seed, &mut steps)?;
    steps.extend(files);
    terminal::console(flags, &user, true, &mut steps);
    steps.push(Step::SoftLimitsToHard(process::RAISED_LIMITS.to_vec()));
    resources::ulimits(&flags.resources, &mut steps);
    if flags.mounts.iter().any(|m| workdir.starts_with(&m.target)) {
        steps.push(Step::ChdirExisting(workdir));
    } else {
        steps.push(Step::Chdir(workdir));
    }
    if flags.read_only {
        // After the per-run files and the working directory (Docker creates it too), before
        // the ids change: the remount needs our capabilities in the namespace.
        steps.push(Step::ReadOnlyRoot);
    }
    let switches_user = matches!(facts.ids, IdMode::Mapped { .. });
    let (before, after) = security::steps(rt, flags, facts, user.uid, switches_user)?;
    steps.extend(before);
    if let IdMode::Mapped { .. } = facts.ids {
        let groups =
            users::supplementary_groups(facts.passwd.as_deref(), facts.group.as_deref(), user.uid);
        steps.push(Step::SetIds {
            uid: user.uid,
            gid: user.gid,
            groups,
        });
    }
    steps.extend(after);
    steps.push(Step::Exec {
        argv,
        env,
        init: !flags.no_init,
        keep_fds: flags.preserve_fds,
    });
    Ok(steps)
}
