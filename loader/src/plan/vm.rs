//! VM mode (`--vm`, R11): what the host does before it starts the monitor, and what the guest's
//! init is told. Pure, like the rest of the plan.
//!
//! The host builds the container's tree as a namespace run does (a private overlay of the cached
//! layers with the run's writable layer, then the user's `-v`/`--mount`s), but in a user and
//! mount namespace of its own with no pivot: the monitor runs there and exports that tree to the
//! guest (9p), so `--overlay-persist` and volumes mean what they mean without `--vm`. The guest
//! kernel then isolates the command; the guest's init ([`GuestConfig`]) mounts the tree as its
//! root and runs the command as the image's user.

use super::{mounts, process, root, HostFacts, PlanError, Step};
use crate::args::{Flags, NetMode};
use crate::format::Runtime;
use crate::sys::ns;
use crate::users;
use std::ffi::OsString;
use std::path::PathBuf;

/// What the guest's init runs, sent to it over the control port ([`crate::vm::wire`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig {
    pub argv: Vec<OsString>,
    pub env: Vec<OsString>,
    pub workdir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub hostname: String,
    /// `-t`: the command gets the guest's console as its terminal.
    pub tty: bool,
    /// The caller's terminal size (rows, columns) with `-t`; the host fills it in.
    pub winsize: (u16, u16),
    /// `--read-only`: the root is mounted read-only in the guest.
    pub read_only: bool,
    /// `--net passt`: the guest's virtio-net interface, configured by its init.
    pub net: Option<GuestNet>,
}

/// The guest's side of `--net passt`: slirp's addresses, which passt is told to use too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestNet {
    pub addr: [u8; 4],
    pub prefix: u8,
    pub gateway: [u8; 4],
    pub dns: [u8; 4],
    pub mtu: u32,
}

/// 10.0.2.15/24, gateway (the host) 10.0.2.2, DNS 10.0.2.3, passt's MTU.
pub const GUEST_NET: GuestNet = GuestNet {
    addr: [10, 0, 2, 15],
    prefix: 24,
    gateway: [10, 0, 2, 2],
    dns: [10, 0, 2, 3],
    mtu: 65520,
};

/// passt's socket, in the run directory (the monitor's working directory).
pub const PASST_SOCKET: &str = "passt.sock";

/// The VM run: host steps (namespaces, overlay, user mounts), the tree to export, the guest's
/// command, and the machine's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    pub host: Vec<Step>,
    /// The container's tree as the monitor exports it.
    pub root: PathBuf,
    pub guest: GuestConfig,
    /// Guest memory in MiB (`--memory`, default 512).
    pub memory_mib: u64,
    /// Virtual CPUs (`--cpus`, rounded up; default 1).
    pub cpus: u32,
    /// `--net passt` (or `-p`): passt's arguments; it serves the guest's virtio-net.
    pub passt: Option<Vec<String>>,
}

pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// Below this the kernel and a shell barely start.
pub const MIN_MEMORY_MIB: u64 = 64;

/// Flags that mean nothing in a VM (or that VM mode does not do yet), refused with a reason
/// rather than silently ignored.
pub fn check(flags: &Flags) -> Result<(), PlanError> {
    let refuse = |what: &str, why: &str| {
        Err(PlanError::Vm(format!(
            "{what} is not supported with --vm: {why}"
        )))
    };
    if flags.detach || flags.name.is_some() {
        return refuse("-d/--name", "VM runs are foreground runs");
    }
    // -p without --net means passt, as it means slirp without --vm.
    match flags.net {
        _ if !flags.net_given => {}
        NetMode::None | NetMode::Pasta => {}
        _ => {
            return refuse(
                &format!("--net {}", flags.net.name()),
                "the guest's network is none or passt",
            )
        }
    }
    if !flags.publish.is_empty() && flags.net == NetMode::None && flags.net_given {
        return refuse("-p", "--net none has no network to publish from");
    }
    if flags.ipc_container.is_some() {
        return refuse("--ipc", "a guest shares nothing with host processes");
    }
    if flags.security != Default::default() {
        return refuse(
            "--cap-add/--cap-drop/--privileged/--security-opt/--seccomp-profile",
            "the guest kernel is the boundary; the command runs as the image's user in it",
        );
    }
    if flags.ssh_agent {
        return refuse("--ssh-agent", "a host socket cannot cross into the guest");
    }
    if flags.userns != Default::default() {
        return refuse(
            "--userns",
            "the guest has its own ids; files show as the caller's",
        );
    }
    for m in &flags.mounts {
        if let mounts::Source::Device(p) = &m.source {
            return refuse(
                &format!("--device {}", p.display()),
                "host devices do not pass into the guest",
            );
        }
    }
    Ok(())
}

/// Plans a VM run from the image, the flags and the host facts.
pub fn plan(rt: &Runtime, flags: &Flags, facts: &HostFacts) -> Result<VmPlan, PlanError> {
    check(flags)?;
    super::terminal::check(flags, facts.stdin_tty)?;
    let argv = process::command(rt, flags)?;
    let user_spec = flags.user.as_deref().unwrap_or(&rt.user);
    let user = users::resolve(user_spec, facts.passwd.as_deref(), facts.group.as_deref())?;
    let groups =
        users::supplementary_groups(facts.passwd.as_deref(), facts.group.as_deref(), user.uid);
    let mut warn = Vec::new();
    let env = process::environment(rt, flags, facts, &user.home, &mut warn)?;
    let workdir = process::workdir(rt, flags)?;

    let mut host = warn;
    // Root of a user namespace of our own (one uid: the caller's), so the overlay and the binds
    // need no privilege; the monitor runs in it and sees the caller's files as root's.
    host.push(Step::Unshare(ns::NEW_USER | ns::NEW_NS));
    host.push(Step::MapIds {
        uid: 0,
        host_uid: facts.uid,
        gid: 0,
        host_gid: facts.gid,
    });
    host.push(Step::MakeRootPrivate);
    let root = root::overlay_root(facts, flags, Vec::new(), &mut host);
    // Where the guest mounts its own /proc, /sys and /dev (9p cannot carry those).
    for d in ["dev", "proc", "sys"] {
        host.push(Step::RealDir { path: root.join(d) });
    }
    mounts::user_mounts(&root, &flags.mounts, facts, &mut host)?;

    let memory_mib = match flags.resources.memory {
        None => DEFAULT_MEMORY_MIB,
        Some(b) if b >> 20 >= MIN_MEMORY_MIB => b >> 20,
        Some(_) => {
            return Err(PlanError::Vm(format!(
                "--memory: a VM needs at least {MIN_MEMORY_MIB}m"
            )))
        }
    };
    let cpus = match flags.resources.nano_cpus {
        None => 1,
        Some(n) => n.div_ceil(1_000_000_000).clamp(1, 64) as u32,
    };
    let net = match flags.net_given {
        true => flags.net == NetMode::Pasta,
        false => !flags.publish.is_empty(),
    };
    let passt = net.then(|| passt_args(flags));
    Ok(VmPlan {
        host,
        root,
        guest: GuestConfig {
            argv,
            env,
            workdir,
            uid: user.uid,
            gid: user.gid,
            groups,
            hostname: facts.hostname.clone(),
            tty: flags.tty,
            winsize: (0, 0),
            read_only: flags.read_only,
            net: net.then_some(GUEST_NET),
        },
        memory_mib,
        cpus,
        passt,
    })
}

/// passt in the foreground, for one guest, with the guest's addresses and the published ports.
fn passt_args(flags: &Flags) -> Vec<String> {
    let ip = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    let mut a: Vec<String> = [
        "--foreground",
        "--quiet",
        "--one-off",
        "--ipv4-only",
        "--socket",
        PASST_SOCKET,
    ]
    .map(String::from)
    .to_vec();
    a.extend([
        "--address".into(),
        ip(GUEST_NET.addr),
        "--netmask".into(),
        GUEST_NET.prefix.to_string(),
        "--gateway".into(),
        ip(GUEST_NET.gateway),
        "--dns-forward".into(),
        ip(GUEST_NET.dns),
        "--mtu".into(),
        GUEST_NET.mtu.to_string(),
    ]);
    for p in &flags.publish {
        let spec = match &p.ip {
            Some(addr) => format!("{addr}/{}:{}", p.host, p.ctr),
            None => format!("{}:{}", p.host, p.ctr),
        };
        a.push(if p.udp { "--udp-ports" } else { "--tcp-ports" }.into());
        a.push(spec);
    }
    a
}
