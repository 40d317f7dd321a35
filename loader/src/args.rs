//! Runtime flags: `./file [OPTIONS] [--] [COMMAND [ARG...]]`.
//!
//! A small table-driven parser (no clap: the loader must stay small). Every option is one row of
//! [`OPTIONS`]; adding a flag is adding a row and a field. Docker/pflag conventions: `--flag VALUE`
//! and `--flag=VALUE`, `-e VALUE`, `-eVALUE`, clustered short flags, `--` ends options, and the
//! first non-option argument starts the command.
//!
//! Arguments are bytes, as Linux has them: commands, variables and paths pass through as
//! `OsString` untouched; only option names and values that must be read as text (a user, a
//! number, a signal) need UTF-8.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// What an option sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    Entrypoint,
    Workdir,
    VerifyKey,
    Env,
    EnvFile,
    User,
    Init,
    NoInit,
    StopSignal,
    StopTimeout,
    PreserveFds,
    Net,
    Hostname,
    Dns,
    DnsSearch,
    DnsOption,
    AddHost,
    Ip,
    MacAddress,
    Userns,
    Config,
    Volume,
    Mount,
    Tmpfs,
    Secret,
    ReadOnly,
    Publish,
    Ipc,
    Cgroupns,
    Resource,
    RequireLimits,
    TmpfsUpper,
    OverlayPersist,
    SshAgent,
    Device,
    CapAdd,
    CapDrop,
    Privileged,
    SecurityOpt,
    SeccompProfile,
    NoSeccomp,
    Help,
    Version,
    Tty,
    Interactive,
    Detach,
    Name,
    Rm,
    Restart,
    Vm,
    Vmm,
    VmAccel,
}

struct Opt {
    long: &'static str,
    short: Option<char>,
    /// The value's name in the help text; `None` for a boolean flag.
    value: Option<&'static str>,
    id: Id,
    help: &'static str,
}

const OPTIONS: &[Opt] = &[
    Opt {
        long: "entrypoint",
        short: None,
        value: Some("CMD"),
        id: Id::Entrypoint,
        help:
            "run CMD instead of the image's entrypoint (and drop the image's command); '' clears it",
    },
    Opt {
        long: "workdir",
        short: Some('w'),
        value: Some("DIR"),
        id: Id::Workdir,
        help: "working directory inside the container (created if missing)",
    },
    Opt {
        long: "env",
        short: Some('e'),
        value: Some("K=V"),
        id: Id::Env,
        help: "set an environment variable; a bare K copies it from the host",
    },
    Opt {
        long: "env-file",
        short: None,
        value: Some("FILE"),
        id: Id::EnvFile,
        help: "read K=V lines from FILE (repeatable; -e wins over files)",
    },
    Opt {
        long: "user",
        short: Some('u'),
        value: Some("UID[:GID]"),
        id: Id::User,
        help: "run as this user (number, or a name from the image's /etc/passwd)",
    },
    Opt {
        long: "init",
        short: None,
        value: None,
        id: Id::Init,
        help: "PID 1 is a tiny init that forwards signals and reaps zombies (the default)",
    },
    Opt {
        long: "no-init",
        short: None,
        value: None,
        id: Id::NoInit,
        help: "run the command itself as PID 1 (it then ignores signals it has no handler for)",
    },
    Opt {
        long: "stop-signal",
        short: None,
        value: Some("SIG"),
        id: Id::StopSignal,
        help: "signal that SIGTERM to this process becomes (default: the image's, else SIGTERM)",
    },
    Opt {
        long: "stop-timeout",
        short: None,
        value: Some("SECS"),
        id: Id::StopTimeout,
        help: "after a stop request, kill the container if still running after SECS (10; -1 waits)",
    },
    Opt {
        long: "preserve-fds",
        short: None,
        value: Some("N"),
        id: Id::PreserveFds,
        help: "pass N descriptors after stderr (3 to N+2) to the command; others are closed",
    },
    Opt {
        long: "net",
        short: None,
        value: Some("MODE"),
        id: Id::Net,
        help: "network: host (the default: the host's network), none (only lo, up), slirp \
               (slirp4netns; slirp:allow_host_loopback=true), pasta or container:NAME|ID|PID",
    },
    Opt {
        long: "network",
        short: None,
        value: Some("MODE"),
        id: Id::Net,
        help: "same as --net",
    },
    Opt {
        long: "verify-key",
        short: None,
        value: Some("PUB.pem"),
        id: Id::VerifyKey,
        help: "check the file's signature with this public key before anything else; refuse \
               to run (exit 125) an unsigned, changed or otherwise signed file",
    },
    Opt {
        long: "hostname",
        short: None,
        value: Some("NAME"),
        id: Id::Hostname,
        help: "the container's host name (default: a random 12-hex-digit one)",
    },
    Opt {
        long: "dns",
        short: None,
        value: Some("IP"),
        id: Id::Dns,
        help: "name server for /etc/resolv.conf (repeatable; replaces the host's)",
    },
    Opt {
        long: "dns-search",
        short: None,
        value: Some("DOMAIN"),
        id: Id::DnsSearch,
        help: "search domain for /etc/resolv.conf (repeatable; '.' for none)",
    },
    Opt {
        long: "dns-option",
        short: None,
        value: Some("OPT"),
        id: Id::DnsOption,
        help: "resolver option for /etc/resolv.conf, e.g. ndots:2 (repeatable)",
    },
    Opt {
        long: "add-host",
        short: None,
        value: Some("NAME:IP"),
        id: Id::AddHost,
        help: "add a line to /etc/hosts (IP may be host-gateway: the host)",
    },
    Opt {
        long: "ip",
        short: None,
        value: Some("IP"),
        id: Id::Ip,
        help: "the container's IPv4 address (--net pasta only)",
    },
    Opt {
        long: "mac-address",
        short: None,
        value: Some("MAC"),
        id: Id::MacAddress,
        help: "the container's MAC address (--net slirp or pasta)",
    },
    Opt {
        long: "userns",
        short: None,
        value: Some("MODE"),
        id: Id::Userns,
        help:
            "auto (default: your /etc/subuid range when newuidmap can map it, else one uid), \
               map (the range or fail), keep-id (the range, your uid as itself) or single (one uid)",
    },
    Opt {
        long: "config",
        short: None,
        value: Some("FILE"),
        id: Id::Config,
        help: "read options from FILE: one KEY=VALUE (or KEY) per line, '#' comments, quotes",
    },
    Opt {
        long: "volume",
        short: Some('v'),
        value: Some("HOST:CTR[:OPTS]"),
        id: Id::Volume,
        help:
            "bind HOST (an absolute path that must exist) or the volume NAME at CTR; OPTS: ro, rw",
    },
    Opt {
        long: "mount",
        short: None,
        value: Some("SPEC"),
        id: Id::Mount,
        help: "type=bind,source=HOST,target=CTR[,readonly], type=volume[,source=NAME],target=CTR \
               or type=tmpfs,target=CTR[,tmpfs-size=N][,tmpfs-mode=OCTAL]",
    },
    Opt {
        long: "tmpfs",
        short: None,
        value: Some("CTR[:OPTS]"),
        id: Id::Tmpfs,
        help: "mount a tmpfs at CTR (rw,noexec,nosuid,nodev; OPTS add size=, mode=, exec, ro, …)",
    },
    Opt {
        long: "secret",
        short: None,
        value: Some("HOST[:CTR]"),
        id: Id::Secret,
        help: "bind file HOST read-only, nosuid, nodev, noexec at CTR (default /run/secrets/NAME)",
    },
    Opt {
        long: "read-only",
        short: None,
        value: None,
        id: Id::ReadOnly,
        help: "mount the root read-only, as Docker does (/tmp, /run too: add --tmpfs for them)",
    },
    Opt {
        long: "publish",
        short: Some('p'),
        value: Some("[IP:][HOST:]CTR[/PROTO]"),
        id: Id::Publish,
        help: "forward host port HOST (a free one when left out) to container port CTR (tcp or \
               udp; ranges A-B); implies --net slirp unless --net pasta",
    },
    Opt {
        long: "ipc",
        short: None,
        value: Some("MODE"),
        id: Id::Ipc,
        help: "private (the default) or container:NAME|ID|PID (share that container's SysV IPC \
               and mqueues)",
    },
    Opt {
        long: "cgroupns",
        short: None,
        value: Some("MODE"),
        id: Id::Cgroupns,
        help: "host or private cgroup namespace (default: private on a cgroup v2 host, as Docker)",
    },
    Opt {
        long: "tmpfs-upper",
        short: None,
        value: None,
        id: Id::TmpfsUpper,
        help: "keep the container's writes in RAM (a tmpfs; =SIZE caps it) instead of on disk",
    },
    Opt {
        long: "overlay-persist",
        short: None,
        value: Some("DIR"),
        id: Id::OverlayPersist,
        help: "keep the container's writes in DIR (created if missing) for the next run",
    },
    Opt {
        long: "ssh-agent",
        short: None,
        value: None,
        id: Id::SshAgent,
        help: "bind $SSH_AUTH_SOCK at /run/ssh-agent.sock and set SSH_AUTH_SOCK to it",
    },
    Opt {
        long: "device",
        short: None,
        value: Some("HOST[:CTR[:rwm]]"),
        id: Id::Device,
        help: "bind the host device node HOST at CTR (default HOST)",
    },
    Opt {
        long: "cap-add",
        short: None,
        value: Some("CAP"),
        id: Id::CapAdd,
        help:
            "add a capability to Docker's default set (NET_ADMIN, CAP_SYS_PTRACE, ALL; repeatable; \
               ambient for a non-root --user)",
    },
    Opt {
        long: "cap-drop",
        short: None,
        value: Some("CAP"),
        id: Id::CapDrop,
        help: "drop a capability from the set (ALL drops every one; repeatable)",
    },
    Opt {
        long: "privileged",
        short: None,
        value: None,
        id: Id::Privileged,
        help: "every capability the user namespace has, no seccomp filter, no masked /proc paths",
    },
    Opt {
        long: "security-opt",
        short: None,
        value: Some("OPT"),
        id: Id::SecurityOpt,
        help:
            "no-new-privileges[=true|false] (true is the default here), seccomp=unconfined|FILE, \
               apparmor=PROFILE, label=…, systempaths=unconfined",
    },
    Opt {
        long: "seccomp-profile",
        short: None,
        value: Some("FILE"),
        id: Id::SeccompProfile,
        help: "a seccomp profile in Docker's JSON instead of Docker's default one",
    },
    Opt {
        long: "no-seccomp",
        short: None,
        value: None,
        id: Id::NoSeccomp,
        help: "no seccomp filter (as --security-opt seccomp=unconfined)",
    },
    Opt {
        long: "tty",
        short: Some('t'),
        value: None,
        id: Id::Tty,
        help: "give the command a terminal of its own (a pty; yours is put in raw mode meanwhile)",
    },
    Opt {
        long: "interactive",
        short: Some('i'),
        value: None,
        id: Id::Interactive,
        help: "keep stdin open (always so here: stdin is passed unless -t has no terminal for it)",
    },
    Opt {
        long: "ulimit",
        short: None,
        value: Some("TYPE=SOFT[:HARD]"),
        id: Id::Resource,
        help: "set an rlimit as Docker does, e.g. nofile=1024:4096 (repeatable)",
    },
    Opt {
        long: "memory",
        short: Some('m'),
        value: Some("BYTES"),
        id: Id::Resource,
        help: "memory limit, e.g. 64m (a cgroup)",
    },
    Opt {
        long: "memory-swap",
        short: None,
        value: Some("BYTES"),
        id: Id::Resource,
        help: "memory plus swap (default twice --memory; -1 unlimited)",
    },
    Opt {
        long: "memory-reservation",
        short: None,
        value: Some("BYTES"),
        id: Id::Resource,
        help: "memory soft limit",
    },
    Opt {
        long: "cpus",
        short: None,
        value: Some("N"),
        id: Id::Resource,
        help: "CPU quota, e.g. 0.5",
    },
    Opt {
        long: "cpu-shares",
        short: Some('c'),
        value: Some("N"),
        id: Id::Resource,
        help: "relative CPU weight (1024)",
    },
    Opt {
        long: "cpuset-cpus",
        short: None,
        value: Some("LIST"),
        id: Id::Resource,
        help: "CPUs allowed, e.g. 0-1,3",
    },
    Opt {
        long: "pids-limit",
        short: None,
        value: Some("N"),
        id: Id::Resource,
        help: "most tasks at once (-1: no limit)",
    },
    Opt {
        long: "require-limits",
        short: None,
        value: None,
        id: Id::RequireLimits,
        help: "fail when a cgroup limit cannot be applied (else warn)",
    },
    Opt {
        long: "help",
        short: Some('h'),
        value: None,
        id: Id::Help,
        help: "print this help",
    },
    Opt {
        long: "version",
        short: None,
        value: None,
        id: Id::Version,
        help: "print the version",
    },
    Opt {
        long: "detach",
        short: Some('d'),
        value: None,
        id: Id::Detach,
        help: "run in the background; print the container ID (see oci2bin logs)",
    },
    Opt {
        long: "name",
        short: None,
        value: Some("NAME"),
        id: Id::Name,
        help: "name the container; its state is kept until oci2bin rm",
    },
    Opt {
        long: "rm",
        short: None,
        value: None,
        id: Id::Rm,
        help: "remove the state when it ends (unnamed foreground runs keep none)",
    },
    Opt {
        long: "vm",
        short: None,
        value: None,
        id: Id::Vm,
        help:
            "run in a microVM (its own kernel) instead of namespaces; the file must carry VM parts",
    },
    Opt {
        long: "vmm",
        short: None,
        value: Some("NAME"),
        id: Id::Vmm,
        help: "with --vm: qemu (qemu-system-x86_64 -M microvm, the default) or libkrun (KVM)",
    },
    Opt {
        long: "vm-accel",
        short: None,
        value: Some("MODE"),
        id: Id::VmAccel,
        help: "with --vm: kvm, tcg (emulation) or auto (kvm when /dev/kvm opens)",
    },
    Opt {
        long: "restart",
        short: None,
        value: Some("POLICY"),
        id: Id::Restart,
        help: "with -d: no, on-failure[:N], always or unless-stopped",
    },
];

/// The parsed runtime flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<OsString>,
    pub workdir: Option<OsString>,
    /// `--verify-key`: the public key the file's signature must verify with.
    pub verify_key: Option<OsString>,
    /// `-e` values in order: `K=V`, or a bare `K` to copy from the host.
    pub env: Vec<OsString>,
    /// `--env-file` paths in order.
    pub env_files: Vec<OsString>,
    pub user: Option<String>,
    /// `--no-init`: the command is PID 1 itself.
    pub no_init: bool,
    /// `--stop-signal`, as a number.
    pub stop_signal: Option<i32>,
    /// `--stop-timeout` in seconds; `Some(None)` for -1 (wait as long as it takes).
    pub stop_timeout: Option<Option<u32>>,
    /// `--preserve-fds N`.
    pub preserve_fds: u32,
    /// `--net`/`--network`.
    pub net: NetMode,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--dns`, `--dns-search`, `--dns-option` values in order.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP` pairs in order.
    pub add_hosts: Vec<AddHost>,
    /// `--ip`, `--mac-address`: kept to be refused by the plan with the network mode's reason.
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    /// `--userns MODE`.
    pub userns: Userns,
    /// `-v`, `--mount`, `--tmpfs` and `--secret`, in flag order.
    pub mounts: Vec<crate::plan::mounts::MountSpec>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--ulimit`, `--memory`, `--cpus`, `--pids-limit`, … and `--require-limits`.
    pub resources: crate::plan::resources::Resources,
    /// `--tmpfs-upper[=SIZE]`: the writable layer in RAM; the tmpfs size option, or empty.
    pub tmpfs_upper: Option<String>,
    /// `--overlay-persist DIR`.
    pub overlay_persist: Option<OsString>,
    /// `--ssh-agent`.
    pub ssh_agent: bool,
    /// `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`, `--seccomp-profile`,
    /// `--no-seccomp`.
    pub security: crate::plan::security::SecurityFlags,
    /// The command and its arguments (replaces the image's Cmd when not empty).
    pub command: Vec<OsString>,
    /// Whether `--net` was given (`-p` implies slirp only when it was not).
    pub net_given: bool,
    /// `-p/--publish`, one entry per port.
    pub publish: Vec<crate::plan::net::Publish>,
    /// `--ipc container:X`: the container (name, ID or unique ID prefix) or process (PID) whose
    /// IPC namespace is joined, as given ([`crate::lifecycle::peers`] resolves it).
    pub ipc_container: Option<String>,
    /// `--cgroupns private|host` (`Some(true)`: private); unset, the host decides.
    pub cgroupns_private: Option<bool>,
    /// `-t/--tty`: a pseudo-terminal for the command.
    pub tty: bool,
    /// `-i/--interactive`: stdin is passed anyway; with `-t` it asks for a terminal on stdin.
    pub interactive: bool,
    /// `-d`, `--name`, `--rm`, `--restart` (see [`crate::lifecycle`]).
    pub detach: bool,
    pub name: Option<String>,
    pub rm: bool,
    pub restart: crate::containers::Restart,
    /// `--vm`: run in a microVM ([`crate::plan::vm`]).
    pub vm: bool,
    /// `--vmm`: the virtual machine monitor.
    pub vmm: Vmm,
    /// `--vm-accel`: how the guest's CPU is run.
    pub vm_accel: VmAccel,
}

/// `--vmm`: which monitor runs the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Vmm {
    /// `qemu-system-x86_64 -M microvm` from the host.
    #[default]
    Qemu,
    /// libkrun, linked into the VM runtime (KVM only).
    Libkrun,
}

/// `--vm-accel`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VmAccel {
    /// KVM when /dev/kvm can be opened read-write, else emulation with a warning.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// The container's network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetMode {
    /// The host's network namespace (Docker's `--net host`).
    #[default]
    Host,
    /// A network namespace of its own with only `lo`, up.
    None,
    /// A network namespace of its own, connected by slirp4netns (rootless podman's default);
    /// `host_loopback`: 10.0.2.2 reaches the host's loopback.
    Slirp { host_loopback: bool },
    /// A network namespace of its own, connected by passt's `pasta`.
    Pasta,
    /// The network namespace of another container (a name, an ID or a unique ID prefix) or
    /// process (a PID), as given, user namespace first ([`crate::lifecycle::peers`] resolves it).
    Container(String),
}

impl NetMode {
    pub fn name(&self) -> &'static str {
        match self {
            NetMode::Host => "host",
            NetMode::None => "none",
            NetMode::Slirp { .. } => "slirp",
            NetMode::Pasta => "pasta",
            NetMode::Container(_) => "container:NAME",
        }
    }
}

/// One `--add-host` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHost {
    pub name: String,
    pub addr: HostAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// An address, as given (checked to be IPv4 or IPv6).
    Ip(String),
    /// `host-gateway`: the address the host is reached at from the container.
    Gateway,
}

/// How the user namespace maps ids (`--userns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Userns {
    /// The caller's subordinate range when the host can map it (as rootless podman), else one
    /// uid.
    #[default]
    Auto,
    /// Root is the caller, 1..N the subordinate range; fail if it cannot be mapped.
    Map,
    /// As `Map`, but the caller's own uid/gid is itself inside, and the default user (podman's
    /// `--userns=keep-id`).
    KeepId,
    /// Only the caller's uid/gid, mapped to the container user (the rootfs is patched for it).
    Single,
}

// Made once per run and moved out at once: boxing the flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Flags),
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Unknown {
        option: String,
        suggestion: Option<&'static str>,
    },
    MissingValue {
        option: String,
    },
    UnexpectedValue {
        option: String,
    },
    BadValue {
        option: String,
        value: String,
        want: &'static str,
    },
    /// `--config` in a config file.
    NestedConfig,
    /// A `--config` file that cannot be read or has a bad line.
    Config {
        path: String,
        line: usize,
        why: String,
    },
    /// A value that parses but is not acceptable, with the reason.
    Invalid {
        option: String,
        value: String,
        why: String,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Unknown {
                option,
                suggestion: Some(s),
            } => {
                write!(f, "unknown option '{option}' (did you mean '--{s}'?)")
            }
            ArgsError::Unknown {
                option,
                suggestion: None,
            } => {
                write!(f, "unknown option '{option}' (see --help)")
            }
            ArgsError::MissingValue { option } => write!(f, "option '{option}' needs a value"),
            ArgsError::UnexpectedValue { option } => {
                write!(f, "option '{option}' takes no value (use true or false)")
            }
            ArgsError::BadValue {
                option,
                value,
                want,
            } => write!(f, "invalid value '{value}' for '{option}': want {want}"),
            ArgsError::NestedConfig => {
                write!(f, "--config inside a config file: files do not nest")
            }
            ArgsError::Config { path, line: 0, why } => write!(f, "config {path}: {why}"),
            ArgsError::Config { path, line, why } => write!(f, "config {path} line {line}: {why}"),
            ArgsError::Invalid { option, value, why } => {
                write!(f, "invalid value '{value}' for '{option}': {why}")
            }
        }
    }
}

impl std::error::Error for ArgsError {}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses the arguments after the program name (the image's default args, then the user's).
pub fn parse<I, S>(args: I) -> Result<Parsed, ArgsError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        let a = arg.as_bytes();
        if a == b"--" {
            break;
        }
        if let Some(body) = a.strip_prefix(b"--") {
            if let Some(done) = long_option(&mut flags, body, &mut args, false)? {
                return Ok(done);
            }
        } else if a.len() > 1 && a[0] == b'-' {
            // A cluster of short options: `-e K=V`, `-eK=V`, later also `-it`.
            let cluster = &a[1..];
            for (i, &c) in cluster.iter().enumerate() {
                let c = c as char;
                let opt = OPTIONS.iter().find(|o| o.short == Some(c)).ok_or_else(|| {
                    ArgsError::Unknown {
                        option: format!("-{}", lossy(&cluster[i..i + 1])),
                        suggestion: None,
                    }
                })?;
                let option = format!("-{c}");
                if opt.value.is_some() {
                    let rest = &cluster[i + 1..];
                    let value = if rest.is_empty() {
                        next_value(&mut args, &option)?
                    } else {
                        OsStr::from_bytes(rest).to_owned()
                    };
                    if let Some(done) = apply(&mut flags, opt.id, &option, Some(value))? {
                        return Ok(done);
                    }
                    break;
                }
                if let Some(done) = apply(&mut flags, opt.id, &option, None)? {
                    return Ok(done);
                }
            }
        } else {
            flags.command.push(arg);
            break;
        }
    }
    flags.command.extend(args);
    // `-p` needs a network of our own: slirp4netns, as podman's rootless default.
    if !flags.publish.is_empty() && !flags.net_given {
        flags.net = NetMode::Slirp {
            host_loopback: false,
        };
    }
    Ok(Parsed::Run(flags))
}

/// One `--NAME[=VALUE]` (its value from `args` when not inline). In a config file (`in_config`)
/// `--config` is refused: files do not nest.
fn long_option(
    flags: &mut Flags,
    body: &[u8],
    args: &mut impl Iterator<Item = OsString>,
    in_config: bool,
) -> Result<Option<Parsed>, ArgsError> {
    let (name, inline) = match body.iter().position(|&b| b == b'=') {
        Some(i) => (
            &body[..i],
            Some(OsStr::from_bytes(&body[i + 1..]).to_owned()),
        ),
        None => (body, None),
    };
    let name = lossy(name);
    let opt = OPTIONS
        .iter()
        .find(|o| o.long == name)
        .ok_or_else(|| ArgsError::Unknown {
            option: format!("--{name}"),
            suggestion: suggest(&name),
        })?;
    let option = format!("--{name}");
    let value = match (opt.value, inline) {
        (Some(_), Some(v)) => Some(v),
        (Some(_), None) => Some(next_value(args, &option)?),
        // The one boolean with an optional value: `--tmpfs-upper=SIZE`.
        (None, Some(v)) if opt.id == Id::TmpfsUpper => Some(v),
        (None, Some(v)) => Some(bool_value(&v, &option)?),
        (None, None) => None,
    };
    match (opt.id, value) {
        (Id::Config, _) if in_config => Err(ArgsError::NestedConfig),
        (Id::Config, Some(path)) => config_file(flags, &path).map(|()| None),
        (id, value) => apply(flags, id, &option, value),
    }
}

/// Applies a `--config` file: each line `KEY=VALUE` or `KEY` (a boolean) is `--KEY=VALUE` at
/// this point of the command line, so later flags win over it. Blank lines and lines starting
/// with `#` are skipped; a value in single or double quotes loses them (`\"` and `\\` inside
/// double quotes).
fn config_file(flags: &mut Flags, path: &OsStr) -> Result<(), ArgsError> {
    let shown = path.to_string_lossy().into_owned();
    let text = std::fs::read(path).map_err(|e| ArgsError::Config {
        path: shown.clone(),
        line: 0,
        why: e.to_string(),
    })?;
    for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let at = |why: String| ArgsError::Config {
            path: shown.clone(),
            line: n + 1,
            why,
        };
        let line = line.strip_prefix(b"--").unwrap_or(line);
        let body = match line.iter().position(|&b| b == b'=') {
            Some(i) => {
                let mut b = line[..i].trim_ascii().to_vec();
                b.push(b'=');
                b.extend(unquote(line[i + 1..].trim_ascii()).map_err(|w| at(w.into()))?);
                b
            }
            None => line.to_vec(),
        };
        match long_option(flags, &body, &mut std::iter::empty(), true) {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(at(
                    "--help and --version do not belong in a config file".into()
                ))
            }
            Err(e) => return Err(at(e.to_string())),
        }
    }
    Ok(())
}

/// A config value without its quotes.
fn unquote(v: &[u8]) -> Result<Vec<u8>, &'static str> {
    match v {
        [b'\'', inner @ .., b'\''] => Ok(inner.to_vec()),
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut it = inner.iter();
            while let Some(&c) = it.next() {
                match (c, it.clone().next()) {
                    (b'\\', Some(&e @ (b'"' | b'\\'))) => {
                        out.push(e);
                        it.next();
                    }
                    _ => out.push(c),
                }
            }
            Ok(out)
        }
        [b'"' | b'\'', ..] => Err("unterminated quote"),
        _ => Ok(v.to_vec()),
    }
}

fn next_value(
    args: &mut impl Iterator<Item = OsString>,
    option: &str,
) -> Result<OsString, ArgsError> {
    args.next().ok_or_else(|| ArgsError::MissingValue {
        option: option.to_string(),
    })
}

/// `--init=true` / `--init=false`, as pflag allows for booleans.
fn bool_value(v: &OsStr, option: &str) -> Result<OsString, ArgsError> {
    match v.as_bytes() {
        b"true" | b"1" => Ok("true".into()),
        b"false" | b"0" => Ok("false".into()),
        _ => Err(ArgsError::UnexpectedValue {
            option: option.to_string(),
        }),
    }
}

/// A value that must be read as text (it is compared or converted, not passed on).
fn text(option: &str, value: OsString, want: &'static str) -> Result<String, ArgsError> {
    value.into_string().map_err(|v| ArgsError::BadValue {
        option: option.to_string(),
        value: v.to_string_lossy().into_owned(),
        want,
    })
}

/// Stores one option; returns the final result for options that end parsing.
fn apply(
    flags: &mut Flags,
    id: Id,
    option: &str,
    value: Option<OsString>,
) -> Result<Option<Parsed>, ArgsError> {
    let on = value.as_ref().is_none_or(|v| v != "false");
    let bad = |value: &str, want| ArgsError::BadValue {
        option: option.to_string(),
        value: value.to_string(),
        want,
    };
    match (id, value) {
        (Id::Entrypoint, v) => flags.entrypoint = v,
        (Id::Workdir, v) => flags.workdir = v,
        (Id::VerifyKey, v) => flags.verify_key = v,
        (Id::Env, v) => flags.env.extend(v),
        (Id::EnvFile, v) => flags.env_files.extend(v),
        (Id::User, Some(v)) => flags.user = Some(text(option, v, "UID[:GID] or NAME[:GROUP]")?),
        (Id::Init, _) => flags.no_init = !on,
        (Id::NoInit, _) => flags.no_init = on,
        (Id::StopSignal, Some(v)) => {
            const WANT: &str = "a signal name or number, e.g. SIGTERM, QUIT or 15";
            let v = text(option, v, WANT)?;
            match crate::sys::ns::signal_number(&v) {
                Some(n) if n != libc::SIGKILL && n != libc::SIGSTOP => flags.stop_signal = Some(n),
                _ => return Err(bad(&v, WANT)),
            }
        }
        (Id::StopTimeout, Some(v)) => {
            const WANT: &str = "whole seconds, or -1 to wait as long as it takes";
            let v = text(option, v, WANT)?;
            flags.stop_timeout = Some(match v.as_str() {
                "-1" => None,
                s => Some(s.parse().map_err(|_| bad(s, WANT))?),
            });
        }
        (Id::PreserveFds, Some(v)) => {
            const WANT: &str = "a number of descriptors";
            let v = text(option, v, WANT)?;
            flags.preserve_fds = v
                .parse()
                .ok()
                .filter(|&n: &u32| n < 1 << 20)
                .ok_or_else(|| bad(&v, WANT))?;
        }
        (Id::Net, Some(v)) => {
            const WANT: &str = "host, none, slirp, pasta or container:NAME|ID|PID";
            let v = text(option, v, WANT)?;
            flags.net = crate::plan::net::mode(&v).map_err(|why| ArgsError::Invalid {
                option: option.to_string(),
                value: v.clone(),
                why: why.unwrap_or_else(|| format!("want {WANT}")),
            })?;
            flags.net_given = true;
        }
        (Id::Publish, Some(v)) => {
            let v = text(option, v, "[IP:][HOSTPORT:]CTRPORT[/tcp|udp]")?;
            let ports = crate::plan::net::publish(&v).map_err(|why| ArgsError::Invalid {
                option: option.to_string(),
                value: v.clone(),
                why,
            })?;
            flags.publish.extend(ports);
        }
        (Id::Cgroupns, Some(v)) => {
            flags.cgroupns_private = match text(option, v, "host or private")?.as_str() {
                "private" => Some(true),
                "host" => Some(false),
                other => {
                    return Err(ArgsError::Invalid {
                        option: option.to_string(),
                        value: other.to_string(),
                        why: "want host or private".into(),
                    })
                }
            }
        }
        (Id::Ipc, Some(v)) => {
            const WANT: &str = "private, shareable or container:NAME|ID|PID";
            let v = text(option, v, WANT)?;
            flags.ipc_container = match v.as_str() {
                "private" | "shareable" => None,
                _ => Some(
                    v.strip_prefix("container:")
                        .ok_or(None)
                        .and_then(crate::plan::net::container)
                        .map_err(|why| ArgsError::Invalid {
                            option: option.to_string(),
                            value: v.clone(),
                            why: why.unwrap_or_else(|| format!("want {WANT}")),
                        })?,
                ),
            };
        }
        (Id::Hostname, Some(v)) => {
            const WANT: &str = "a host name: letters, digits, '-' and '.', at most 64";
            let v = text(option, v, WANT)?;
            if !valid_hostname(&v) {
                return Err(bad(&v, WANT));
            }
            flags.hostname = Some(v);
        }
        (Id::Dns, Some(v)) => {
            const WANT: &str = "an IPv4 or IPv6 address";
            let v = text(option, v, WANT)?;
            if !is_ip(&v) {
                return Err(bad(&v, WANT));
            }
            flags.dns.push(v);
        }
        (Id::DnsSearch, Some(v)) => {
            const WANT: &str = "a domain without spaces";
            let v = text(option, v, WANT)?;
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(bad(&v, WANT));
            }
            flags.dns_search.push(v);
        }
        (Id::DnsOption, Some(v)) => {
            const WANT: &str = "a resolver option without spaces, e.g. ndots:2";
            let v = text(option, v, WANT)?;
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(bad(&v, WANT));
            }
            flags.dns_options.push(v);
        }
        (Id::AddHost, Some(v)) => {
            const WANT: &str = "NAME:IP (IP may be host-gateway)";
            let v = text(option, v, WANT)?;
            // Docker splits at the first ':' (an IPv6 address keeps its own), and takes `=` too.
            let (name, ip) = v.split_once(['=', ':']).ok_or_else(|| bad(&v, WANT))?;
            let addr = match ip {
                "host-gateway" => HostAddr::Gateway,
                ip => {
                    let ip = ip.trim_start_matches('[').trim_end_matches(']');
                    if !is_ip(ip) {
                        return Err(bad(&v, WANT));
                    }
                    HostAddr::Ip(ip.into())
                }
            };
            if !valid_hostname(name) {
                return Err(bad(&v, WANT));
            }
            flags.add_hosts.push(AddHost {
                name: name.into(),
                addr,
            });
        }
        (Id::Ip, Some(v)) => flags.ip = Some(v.to_string_lossy().into_owned()),
        (Id::MacAddress, Some(v)) => flags.mac_address = Some(v.to_string_lossy().into_owned()),
        (Id::Userns, Some(v)) => {
            const WANT: &str = "auto, map, keep-id or single";
            let v = text(option, v, WANT)?;
            flags.userns = match v.as_str() {
                "auto" => Userns::Auto,
                "map" => Userns::Map,
                "keep-id" => Userns::KeepId,
                "single" => Userns::Single,
                _ => return Err(bad(&v, WANT)),
            };
        }
        (Id::Config, _) => unreachable!("--config is read by long_option"),
        (Id::Volume | Id::Mount | Id::Tmpfs | Id::Secret, Some(v)) => {
            use crate::plan::mounts;
            let parse = match id {
                Id::Volume => mounts::volume,
                Id::Mount => mounts::mount,
                Id::Tmpfs => mounts::tmpfs,
                _ => mounts::secret,
            };
            let spec = parse(v.as_bytes()).map_err(|why| ArgsError::Invalid {
                option: option.to_string(),
                value: v.to_string_lossy().into_owned(),
                why,
            })?;
            flags.mounts.push(spec);
        }
        (Id::ReadOnly, _) => flags.read_only = on,
        (Id::TmpfsUpper, v) => {
            const WANT: &str = "a size such as 512m, 2g or 50%";
            flags.tmpfs_upper = match v.as_ref().map(|v| v.as_bytes()) {
                None | Some(b"true" | b"1") => Some(String::new()),
                Some(b"false" | b"0") => None,
                Some(_) => {
                    let v = text(option, v.unwrap_or_default(), WANT)?;
                    if !crate::plan::mounts::tmpfs_size(&v) {
                        return Err(bad(&v, WANT));
                    }
                    Some(format!("size={v}"))
                }
            };
        }
        (Id::OverlayPersist, Some(v)) => {
            if v.is_empty() {
                return Err(bad("", "a directory"));
            }
            flags.overlay_persist = Some(v);
        }
        (Id::SshAgent, _) => flags.ssh_agent = on,
        (Id::Device, Some(v)) => {
            let spec =
                crate::plan::mounts::device(v.as_bytes()).map_err(|why| ArgsError::Invalid {
                    option: option.to_string(),
                    value: v.to_string_lossy().into_owned(),
                    why,
                })?;
            flags.mounts.push(spec);
        }
        (Id::CapAdd | Id::CapDrop | Id::SecurityOpt | Id::SeccompProfile, Some(v)) => {
            security_flag(&mut flags.security, id, option, v)?
        }
        (Id::Privileged, _) => flags.security.privileged = on,
        (Id::NoSeccomp, _) => {
            use crate::plan::security::SeccompChoice;
            flags.security.seccomp = if on {
                SeccompChoice::Unconfined
            } else {
                SeccompChoice::Default
            }
        }
        (Id::Tty, _) => flags.tty = on,
        (Id::Interactive, _) => flags.interactive = on,
        (Id::Resource, Some(v)) => {
            let v = text(option, v, "a text value")?;
            crate::plan::resources::set(&mut flags.resources, option, &v).map_err(|why| {
                ArgsError::Invalid {
                    option: option.to_string(),
                    value: v,
                    why,
                }
            })?;
        }
        (Id::RequireLimits, _) => flags.resources.require = on,
        (Id::Help, _) => return Ok(on.then_some(Parsed::Help)),
        (Id::Version, _) => return Ok(on.then_some(Parsed::Version)),
        (Id::Detach, _) => flags.detach = on,
        (Id::Rm, _) => flags.rm = on,
        (Id::Vm, _) => flags.vm = on,
        (Id::Vmm, Some(v)) => {
            const WANT: &str = "qemu or libkrun";
            flags.vmm = match text(option, v, WANT)?.as_str() {
                "qemu" => Vmm::Qemu,
                "libkrun" | "krun" => Vmm::Libkrun,
                other => return Err(bad(other, WANT)),
            }
        }
        (Id::VmAccel, Some(v)) => {
            const WANT: &str = "kvm, tcg or auto";
            flags.vm_accel = match text(option, v, WANT)?.as_str() {
                "auto" => VmAccel::Auto,
                "kvm" => VmAccel::Kvm,
                "tcg" => VmAccel::Tcg,
                other => return Err(bad(other, WANT)),
            }
        }
        (Id::Name, Some(v)) => {
            const WANT: &str =
                "a name of letters, digits, '_', '.' and '-', starting with a letter or digit";
            let v = text(option, v, WANT)?;
            if !crate::containers::valid_name(&v) {
                return Err(bad(&v, WANT));
            }
            flags.name = Some(v);
        }
        (Id::Restart, Some(v)) => {
            const WANT: &str = "no, on-failure[:N], always or unless-stopped";
            let v = text(option, v, WANT)?;
            flags.restart = crate::containers::Restart::parse(&v).ok_or_else(|| bad(&v, WANT))?;
        }
        (_, None) => unreachable!("value options always carry a value"),
    }
    Ok(None)
}

/// `--cap-add`, `--cap-drop`, `--security-opt`, `--seccomp-profile`.
fn security_flag(
    f: &mut crate::plan::security::SecurityFlags,
    id: Id,
    option: &str,
    v: OsString,
) -> Result<(), ArgsError> {
    use crate::plan::security::{self, SeccompChoice};
    let invalid = |v: &OsString, why: String| ArgsError::Invalid {
        option: option.to_string(),
        value: v.to_string_lossy().into_owned(),
        why,
    };
    match id {
        Id::CapAdd | Id::CapDrop => {
            let name = text(option, v, "a capability name")?;
            let name =
                security::cap_value(&name).map_err(|why| invalid(&name.clone().into(), why))?;
            if id == Id::CapAdd {
                f.cap_add.push(name);
            } else {
                f.cap_drop.push(name);
            }
        }
        Id::SeccompProfile => f.seccomp = SeccompChoice::File(v),
        _ => security::security_opt(f, &v).map_err(|why| invalid(&v, why))?,
    }
    Ok(())
}

/// Whether `s` is an IPv4 address (dotted quad) or an IPv6 one (RFC 4291 text, `::` and a
/// dotted-quad tail included). Checked by hand: std's address parser costs the loader 10 KB.
pub(crate) fn is_ip(s: &str) -> bool {
    fn v4(s: &str) -> bool {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 4
            && parts.iter().all(|p| {
                (1..=3).contains(&p.len())
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u16>().is_ok_and(|n| n < 256)
            })
    }
    // Groups of 1-4 hex digits; the last may be a dotted quad (worth two groups).
    fn groups(s: &str) -> Option<usize> {
        if s.is_empty() {
            return Some(0);
        }
        let parts: Vec<&str> = s.split(':').collect();
        let mut n = 0;
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() && p.contains('.') {
                n += if v4(p) { 2 } else { return None };
            } else if (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()) {
                n += 1;
            } else {
                return None;
            }
        }
        Some(n)
    }
    if !s.contains(':') {
        return v4(s);
    }
    match s.split_once("::") {
        Some((a, b)) => {
            !b.contains("::") && matches!((groups(a), groups(b)), (Some(x), Some(y)) if x + y <= 7)
        }
        None => groups(s) == Some(8),
    }
}

/// RFC 1123 labels: letters, digits and '-' (not first or last), dot-separated, 64 bytes at
/// most (the kernel's HOST_NAME_MAX).
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The closest long option to a mistyped one, if it is close enough to be what was meant.
fn suggest(name: &str) -> Option<&'static str> {
    let (dist, best) = OPTIONS
        .iter()
        .map(|o| (edit_distance(name, o.long), o.long))
        .min()?;
    (dist <= 2.max(name.len() / 3) && dist < name.len()).then_some(best)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d: Vec<usize> = vec![0; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The `--help` text: every runtime option, generated from the table.
pub fn help_text(program: &str, image: &str) -> String {
    let mut s = format!(
        "Usage: {program} [OPTIONS] [--] [COMMAND [ARG...]]\n\n\
         Runs the image {image} in a rootless container.\n\
         The first argument that is not an option starts the command (it replaces the image's\n\
         Cmd); everything after it is passed to the command. '--' ends the options.\n\n\
         Options:\n"
    );
    for o in OPTIONS {
        let mut left = match o.short {
            Some(c) => format!("  -{c}, --{}", o.long),
            None => format!("      --{}", o.long),
        };
        if let Some(v) = o.value {
            left.push(' ');
            left.push_str(v);
        }
        s.push_str(&format!("{left:<30} {}\n", o.help));
    }
    s
}

/// Reads every `--env-file` in order: `(path, contents)`.
pub fn read_env_files(flags: &Flags) -> Result<Vec<(OsString, Vec<u8>)>, EnvFileError> {
    flags
        .env_files
        .iter()
        .map(|p| match std::fs::read(p) {
            Ok(s) => Ok((p.clone(), s)),
            Err(source) => Err(EnvFileError {
                path: p.clone(),
                source,
            }),
        })
        .collect()
}

#[derive(Debug)]
pub struct EnvFileError {
    pub path: OsString,
    pub source: std::io::Error,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read env file {}: {}",
            self.path.to_string_lossy(),
            self.source
        )
    }
}

impl std::error::Error for EnvFileError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Flags {
        match parse(args.iter().map(|s| s.to_string())) {
            Ok(Parsed::Run(f)) => f,
            other => panic!("{args:?} parsed to {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        parse(args.iter().map(|s| s.to_string()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn ip_addresses_are_checked_as_std_would() {
        for ok in [
            "1.2.3.4",
            "255.255.255.255",
            "::",
            "::1",
            "1::",
            "2001:db8::8:800:200c:417a",
            "1:2:3:4:5:6:7:8",
            "::ffff:10.0.0.1",
            "fe80::1:2:3:4:5:6",
        ] {
            assert!(is_ip(ok), "{ok}");
            assert!(ok.parse::<std::net::IpAddr>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.256",
            "1.2.3.4.5",
            "a.b.c.d",
            ":::",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "12345::",
            "1:2:3:4:5:6:7",
            "::1.2.3",
            "g::1",
            "1:2:3:4:5:6:7::8",
        ] {
            assert!(!is_ip(bad), "{bad}");
            assert!(bad.parse::<std::net::IpAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn config_files_are_flags_at_their_place_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.conf");
        std::fs::write(
            &file,
            "# a comment\n\n  workdir = /srv\nenv=A=1\n--env=\"B=two words \\\"q\\\"\"\nno-init\n\
             hostname='h1'\n",
        )
        .unwrap();
        let conf = format!("--config={}", file.display());
        let f = run(&[&conf, "-e", "C=3", "--hostname", "h2", "ls"]);
        assert_eq!(f.workdir, Some("/srv".into()));
        assert_eq!(f.env, ["A=1", "B=two words \"q\"", "C=3"]);
        assert!(f.no_init);
        assert_eq!(f.hostname.as_deref(), Some("h2"), "a later flag wins");
        assert_eq!(f.command, ["ls"]);

        let bad = |text: &str| {
            std::fs::write(&file, text).unwrap();
            err(&[&conf])
        };
        let shown = file.display();
        assert_eq!(
            bad("workdir=/a\nbogus=1\n"),
            format!("config {shown} line 2: unknown option '--bogus' (see --help)")
        );
        assert_eq!(
            bad(&format!("config={shown}\n")),
            format!("config {shown} line 1: --config inside a config file: files do not nest")
        );
        assert_eq!(
            bad("hostname=\"open\n"),
            format!("config {shown} line 1: unterminated quote")
        );
        assert_eq!(
            bad("workdir\n"),
            format!("config {shown} line 1: option '--workdir' needs a value")
        );
        assert!(err(&["--config", "/nonexistent/x.conf"])
            .starts_with("config /nonexistent/x.conf: No such file"));
    }

    #[test]
    fn network_flags_take_checked_values() {
        let f = run(&[
            "--net=none",
            "--hostname",
            "a-b.c",
            "--dns",
            "9.9.9.9",
            "--dns-search=x.test",
            "--dns-option",
            "ndots:1",
            "--add-host",
            "db:10.1.2.3",
        ]);
        assert_eq!(f.net, NetMode::None);
        assert_eq!(f.hostname.as_deref(), Some("a-b.c"));
        assert_eq!(
            (f.dns, f.dns_search, f.dns_options),
            (
                vec!["9.9.9.9".to_string()],
                vec!["x.test".to_string()],
                vec!["ndots:1".to_string()]
            )
        );
        assert_eq!(
            f.add_hosts,
            [AddHost {
                name: "db".into(),
                addr: HostAddr::Ip("10.1.2.3".into())
            }]
        );
        assert_eq!(run(&["--network", "host"]).net, NetMode::Host);
        assert_eq!(
            err(&["--net", "bridge"]),
            "invalid value 'bridge' for '--net': want host, none, slirp, pasta or container:NAME|ID|PID"
        );
        assert!(err(&["--dns", "one.one"]).starts_with("invalid value 'one.one' for '--dns'"));
        assert!(err(&["--hostname", "-x"]).starts_with("invalid value '-x'"));
        assert_eq!(
            err(&["--cgroupns", "shared"]),
            "invalid value 'shared' for '--cgroupns': want host or private"
        );
        assert!(err(&["--hostname", &"h".repeat(65)]).starts_with("invalid value"));
        assert!(err(&["--add-host", "nocolon"]).starts_with("invalid value 'nocolon'"));
        assert!(err(&["--add-host", "a:not-an-ip"]).starts_with("invalid value 'a:not-an-ip'"));
        assert!(err(&["--dns-option", "a b"]).starts_with("invalid value 'a b'"));
    }

    #[test]
    fn no_arguments_means_the_image_defaults() {
        assert_eq!(run(&[]), Flags::default());
    }

    #[test]
    fn every_value_flag_takes_both_forms() {
        for (form_a, form_b) in [
            (
                vec!["--entrypoint", "/bin/sh"],
                vec!["--entrypoint=/bin/sh"],
            ),
            (vec!["--workdir", "/srv"], vec!["--workdir=/srv"]),
            (vec!["-w", "/srv"], vec!["-w/srv"]),
            (vec!["--env", "A=1"], vec!["--env=A=1"]),
            (vec!["-e", "A=1"], vec!["-eA=1"]),
            (vec!["--env-file", "f"], vec!["--env-file=f"]),
            (vec!["--user", "1000:1000"], vec!["--user=1000:1000"]),
            (vec!["-u", "1000"], vec!["-u1000"]),
        ] {
            assert_eq!(run(&form_a), run(&form_b), "{form_a:?} vs {form_b:?}");
        }
    }

    #[test]
    fn flags_land_in_their_fields() {
        let f = run(&[
            "--entrypoint",
            "/bin/sh",
            "-w",
            "/srv",
            "-e",
            "A=1",
            "--env",
            "B",
            "--env-file",
            "x.env",
            "--env-file=y.env",
            "-u",
            "nobody",
            "--no-init",
        ]);
        assert_eq!(f.entrypoint.as_deref(), Some("/bin/sh".as_ref()));
        assert_eq!(f.workdir.as_deref(), Some("/srv".as_ref()));
        assert_eq!(f.env, ["A=1", "B"]);
        assert_eq!(f.env_files, ["x.env", "y.env"]);
        assert_eq!(f.user.as_deref(), Some("nobody"));
        assert!(f.no_init);
        assert!(f.command.is_empty());
    }

    #[test]
    fn empty_entrypoint_is_kept_as_a_request_to_clear() {
        assert_eq!(run(&["--entrypoint", ""]).entrypoint, Some("".into()));
        assert_eq!(run(&["--entrypoint="]).entrypoint, Some("".into()));
    }

    #[test]
    fn first_positional_starts_the_command_and_options_after_it_belong_to_it() {
        let f = run(&["-e", "A=1", "ls", "-l", "--no-init", "--", "x"]);
        assert_eq!(f.command, ["ls", "-l", "--no-init", "--", "x"]);
        assert!(!f.no_init);
    }

    #[test]
    fn double_dash_ends_options() {
        let f = run(&["--no-init", "--", "--version", "-e"]);
        assert!(f.no_init);
        assert_eq!(f.command, ["--version", "-e"]);
        assert!(run(&["--"]).command.is_empty());
    }

    #[test]
    fn a_lone_dash_is_a_command() {
        assert_eq!(run(&["-"]).command, ["-"]);
    }

    #[test]
    fn boolean_flags_accept_true_and_false() {
        assert!(!run(&["--init=true"]).no_init);
        assert!(run(&["--init", "--init=false"]).no_init);
        assert!(!run(&["--no-init", "--init"]).no_init);
        assert!(!run(&["--no-init=false"]).no_init);
        assert_eq!(
            err(&["--init=maybe"]),
            "option '--init' takes no value (use true or false)"
        );
    }

    #[test]
    fn help_and_version_end_parsing() {
        let p = |a: &[&str]| parse(a.iter().map(|s| s.to_string())).unwrap();
        assert_eq!(p(&["--help"]), Parsed::Help);
        assert_eq!(p(&["-h"]), Parsed::Help);
        assert_eq!(p(&["-e", "A=1", "--version", "--bogus"]), Parsed::Version);
        // After the command starts, --help is the command's.
        assert!(matches!(p(&["sh", "--help"]), Parsed::Run(_)));
    }

    #[test]
    fn a_typo_gets_a_suggestion() {
        assert_eq!(
            err(&["--wrokdir", "/x"]),
            "unknown option '--wrokdir' (did you mean '--workdir'?)"
        );
        assert_eq!(
            err(&["--env-fil=x"]),
            "unknown option '--env-fil' (did you mean '--env-file'?)"
        );
        assert!(err(&["--entrypiont", "x"]).contains("'--entrypoint'"));
        assert_eq!(
            err(&["--frobnicate"]),
            "unknown option '--frobnicate' (see --help)"
        );
        assert_eq!(err(&["-x"]), "unknown option '-x' (see --help)");
    }

    #[test]
    fn a_missing_value_is_an_error() {
        assert_eq!(err(&["--workdir"]), "option '--workdir' needs a value");
        assert_eq!(err(&["-e"]), "option '-e' needs a value");
        assert_eq!(err(&["--user"]), "option '--user' needs a value");
    }

    #[test]
    fn values_may_look_like_options() {
        assert_eq!(run(&["-e", "--weird"]).env, ["--weird"]);
        assert_eq!(run(&["--entrypoint", "-x"]).entrypoint, Some("-x".into()));
    }

    #[test]
    fn image_default_args_come_first_and_user_args_override() {
        let defaults = ["--workdir", "/a", "-e", "A=1"];
        let user = ["--workdir", "/b", "echo", "hi"];
        let f = run(&defaults
            .iter()
            .chain(user.iter())
            .copied()
            .collect::<Vec<_>>());
        assert_eq!(f.workdir, Some("/b".into()));
        assert_eq!(f.env, ["A=1"]);
        assert_eq!(f.command, ["echo", "hi"]);
    }

    #[test]
    fn help_lists_every_option_and_the_rules() {
        let h = help_text("./busybox", "busybox:latest");
        for o in OPTIONS {
            assert!(
                h.contains(&format!("--{}", o.long)),
                "help lacks --{}",
                o.long
            );
        }
        assert!(h.contains("'--' ends the options"));
        assert!(h.contains("first argument that is not an option starts the command"));
        assert!(h.contains("busybox:latest"));
    }

    #[test]
    fn env_files_are_read_in_order_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.env");
        std::fs::write(&a, "A=1\n").unwrap();
        let flags = Flags {
            env_files: vec![a.clone().into(), "/nonexistent/x.env".into()],
            ..Flags::default()
        };
        let e = read_env_files(&flags).unwrap_err().to_string();
        assert!(e.starts_with("read env file /nonexistent/x.env: "), "{e}");
        let flags = Flags {
            env_files: vec![a.into()],
            ..Flags::default()
        };
        assert_eq!(read_env_files(&flags).unwrap()[0].1, b"A=1\n");
    }

    #[test]
    fn non_utf8_arguments_pass_through_untouched() {
        let bytes = |b: &[u8]| OsString::from(OsStr::from_bytes(b));
        let args = vec![
            bytes(b"-e"),
            bytes(b"K=\xff\xfe"),
            bytes(b"--workdir=/d\xe9j\xe0"),
            bytes(b"--env-file"),
            bytes(b"/tmp/\xff.env"),
            bytes(b"echo"),
            bytes(b"caf\xe9"),
        ];
        let Parsed::Run(f) = parse(args).unwrap() else {
            panic!()
        };
        assert_eq!(f.env, [bytes(b"K=\xff\xfe")]);
        assert_eq!(f.workdir, Some(bytes(b"/d\xe9j\xe0")));
        assert_eq!(f.env_files, [bytes(b"/tmp/\xff.env")]);
        assert_eq!(f.command, [bytes(b"echo"), bytes(b"caf\xe9")]);
        // Values read as text say which option and what they want.
        let e = parse([bytes(b"-u"), bytes(b"\xff")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid value '\u{fffd}' for '-u'"), "{e}");
    }

    #[test]
    fn stop_flags_take_signals_and_seconds() {
        let f = run(&["--stop-signal", "SIGQUIT", "--stop-timeout", "3"]);
        assert_eq!(f.stop_signal, Some(libc::SIGQUIT));
        assert_eq!(f.stop_timeout, Some(Some(3)));
        assert_eq!(
            run(&["--stop-signal=usr1"]).stop_signal,
            Some(libc::SIGUSR1)
        );
        assert_eq!(run(&["--stop-signal=2"]).stop_signal, Some(libc::SIGINT));
        assert_eq!(run(&["--stop-timeout=-1"]).stop_timeout, Some(None));
        assert_eq!(run(&[]).stop_timeout, None);
        assert_eq!(
            err(&["--stop-signal", "NOPE"]),
            "invalid value 'NOPE' for '--stop-signal': want a signal name or number, e.g. SIGTERM, QUIT or 15"
        );
        assert!(err(&["--stop-signal", "KILL"]).starts_with("invalid value 'KILL'"));
        assert!(err(&["--stop-timeout", "soon"]).starts_with("invalid value 'soon'"));
        assert!(err(&["--stop-timeout", "-5"]).starts_with("invalid value '-5'"));
    }

    #[test]
    fn userns_takes_a_mode() {
        assert_eq!(run(&[]).userns, Userns::Auto);
        assert_eq!(run(&["--userns", "keep-id"]).userns, Userns::KeepId);
        assert_eq!(run(&["--userns=single"]).userns, Userns::Single);
        assert_eq!(run(&["--userns=map"]).userns, Userns::Map);
        assert_eq!(
            run(&["--userns=single", "--userns=auto"]).userns,
            Userns::Auto
        );
        assert!(err(&["--userns=host"]).contains("auto, map, keep-id or single"));
    }

    #[test]
    fn preserve_fds_takes_a_count() {
        assert_eq!(run(&["--preserve-fds", "2"]).preserve_fds, 2);
        assert_eq!(run(&[]).preserve_fds, 0);
        assert!(err(&["--preserve-fds=x"]).starts_with("invalid value 'x' for '--preserve-fds'"));
    }

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("wrokdir", "workdir"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("init", "init"), 0);
    }

    #[test]
    fn tty_and_interactive_cluster_as_in_docker() {
        let f = run(&["-it", "sh"]);
        assert!(f.tty && f.interactive);
        assert_eq!(f.command, ["sh"]);
        let f = run(&["-t", "--interactive=false", "sh"]);
        assert!(f.tty && !f.interactive);
        assert!(run(&["--tty", "-i"]).interactive);
        assert!(!run(&[]).tty);
        assert!(err(&["--tty=maybe"]).contains("takes no value"));
    }
}
