//! Resources (R8): `--ulimit` as rlimits of the container, and `--memory`, `--memory-swap`,
//! `--memory-reservation`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit` as a cgroup
//! of its own, as Docker's flags set them.
//!
//! Cgroups: a delegated cgroup v2 subtree of ours when the unified hierarchy offers every
//! controller the flags need and we may write there (one group), else the v1 hierarchy of each
//! controller (what a root caller gets on a v1 or hybrid host). Before any namespace, the
//! supervisor creates `oci2bin-<pid>` under our own cgroup in each hierarchy and writes the
//! limits; PID 1 joins it before anything else runs; the supervisor removes it once the
//! container is reaped. A group left by a killed loader (its pid gone) is removed by the
//! next run that makes one in the same place. When no cgroup is writable: one warning naming
//! what is missing, and the run goes on, unless `--require-limits`.
//!
//! No transient systemd scope: asking a user manager for one needs a D-Bus client (or
//! `systemd-run`) in the loader, and the subtree systemd delegates to a user's session
//! (`user@.service` has `Delegate=yes`) is the v2 case above already.

use super::{PlanError, Step};
use std::path::PathBuf;

/// The resource flags, as parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `--ulimit` values, one per name (a later flag replaces an earlier one).
    pub ulimits: Vec<Ulimit>,
    /// `--memory` in bytes.
    pub memory: Option<u64>,
    /// `--memory-swap` in bytes (memory plus swap); `Some(None)` for -1 (unlimited swap).
    pub memory_swap: Option<Option<u64>>,
    /// `--memory-reservation` in bytes.
    pub memory_reservation: Option<u64>,
    /// `--cpus` in billionths of a CPU (Docker's NanoCPUs).
    pub nano_cpus: Option<u64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`, e.g. `0-1,3`.
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`; `Some(None)` for 0 or -1 (unlimited).
    pub pids_limit: Option<Option<u64>>,
    /// `--require-limits`: a cgroup limit that cannot be applied fails the start.
    pub require: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: &'static str,
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// Docker's `--ulimit` names (go-units), with their resources.
const ULIMITS: &[(&str, i32)] = &[
    ("core", libc::RLIMIT_CORE as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("locks", libc::RLIMIT_LOCKS as i32),
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("rss", libc::RLIMIT_RSS as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("rttime", libc::RLIMIT_RTTIME as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
    ("stack", libc::RLIMIT_STACK as i32),
];

/// [`ULIMITS`]' names, for the error that lists them.
const NAMES: &str = "core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, \
                     rss, rtprio, rttime, sigpending, stack";

/// `RLIM_INFINITY`.
pub const UNLIMITED: u64 = u64::MAX;

/// Stores the value of one resource option (`option` as the user wrote it); `Err` says why
/// the value is refused.
pub fn set(r: &mut Resources, option: &str, v: &str) -> Result<(), String> {
    match option {
        "--ulimit" => {
            let u = ulimit(v)?;
            r.ulimits.retain(|o| o.name != u.name);
            r.ulimits.push(u);
        }
        "--memory" | "-m" => r.memory = Some(bytes(v)?),
        "--memory-swap" => r.memory_swap = Some(if v == "-1" { None } else { Some(bytes(v)?) }),
        "--memory-reservation" => r.memory_reservation = Some(bytes(v)?),
        // 0 is no limit, as for Docker.
        "--cpus" => r.nano_cpus = Some(cpus(v)?).filter(|&n| n > 0),
        "--cpu-shares" | "-c" => {
            r.cpu_shares = Some(v.parse().map_err(|_| "want a whole number, e.g. 512")?)
        }
        "--cpuset-cpus" => {
            // The kernel checks the list itself when it is written.
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
            {
                return Err("want CPU numbers and ranges, e.g. 0-2,4".into());
            }
            r.cpuset_cpus = Some(v.into());
        }
        "--pids-limit" => {
            // 0 and -1: no limit.
            let n: u64 = match v {
                "-1" => 0,
                v => v
                    .parse()
                    .map_err(|_| "want a whole number, or -1 for no limit")?,
            };
            r.pids_limit = Some((n > 0).then_some(n));
        }
        _ => return Err(format!("{option} is not a resource option")),
    }
    Ok(())
}

/// `TYPE=SOFT[:HARD]` (Docker's syntax; a missing HARD is SOFT; `-1` or `unlimited` is no limit).
fn ulimit(v: &str) -> Result<Ulimit, String> {
    let (name, values) = v
        .split_once('=')
        .ok_or("want TYPE=SOFT[:HARD], e.g. nofile=1024:2048")?;
    let &(name, resource) = ULIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("unknown ulimit type '{name}' (want one of {NAMES})"))?;
    let one = |s: &str| match s {
        "-1" | "unlimited" => Ok(UNLIMITED),
        s => s
            .parse::<u64>()
            .map_err(|_| format!("'{s}' is not a limit: want a number, -1 or unlimited")),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (one(s)?, one(h)?),
        None => (one(values)?, one(values)?),
    };
    if soft > hard {
        return Err(format!(
            "the soft limit {} is above the hard limit {}",
            shown(soft),
            shown(hard)
        ));
    }
    Ok(Ulimit {
        name,
        resource,
        soft,
        hard,
    })
}

/// A limit as `ulimit` prints it.
pub fn shown(n: u64) -> String {
    match n {
        UNLIMITED => "unlimited".into(),
        n => n.to_string(),
    }
}

/// Docker's memory sizes (go-units RAMInBytes): a number, optionally with a fraction, then an
/// optional unit b, k, m, g, t or p (powers of 1024; `kb`, `KiB`, `MB` … are the same).
pub fn bytes(v: &str) -> Result<u64, String> {
    let digits = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let shift = match unit.strip_suffix('i').unwrap_or(unit) {
        "" => Some(0),
        "k" => Some(10),
        "m" => Some(20),
        "g" => Some(30),
        "t" => Some(40),
        "p" => Some(50),
        _ => None,
    };
    shift.and_then(|s| fixed(num, 1 << s)).ok_or_else(|| {
        format!("'{v}' is not a size: want a number with an optional unit (b, k, m, g), e.g. 64m")
    })
}

/// `--cpus` as billionths of a CPU (`0.5` → 500000000).
fn cpus(v: &str) -> Result<u64, String> {
    fixed(v, 1_000_000_000).ok_or_else(|| format!("'{v}' is not a number of CPUs, e.g. 0.5 or 2"))
}

/// A decimal `W[.F]` times `scale`, rounded down (as Docker's floats are); `None` when it is not
/// such a number or too big.
fn fixed(s: &str, scale: u64) -> Option<u64> {
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    if w.len() + f.len() == 0 {
        return None;
    }
    let (mut n, mut div) = (0u64, 1u64);
    for (i, b) in w.bytes().chain(f.bytes()).enumerate() {
        if !b.is_ascii_digit() || i > 18 {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
        if i >= w.len() {
            div *= 10;
        }
    }
    Some(n.checked_mul(scale)? / div)
}

/// The cgroup hierarchies we are in, as far as the plan needs them (read by [`crate::host`]
/// only when a cgroup flag is given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupFacts {
    /// Our pid: the container's group is `oci2bin-<pid>`.
    pub pid: u32,
    /// Online CPUs (for the range of `--cpus`).
    pub cpus: u32,
    /// Each mounted v1 controller this run may need: its name and our cgroup's directory in it.
    pub v1: Vec<V1Controller>,
    /// Our cgroup in the unified (v2) hierarchy, if one is mounted.
    pub v2: Option<V2Group>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Controller {
    pub name: String,
    /// Our own cgroup's directory in this controller's hierarchy.
    pub dir: PathBuf,
    pub writable: bool,
    /// memory: whether `memory.memsw.*` exists (swap accounting on).
    pub memsw: bool,
    /// cpuset: our cgroup's `cpuset.mems` (a new v1 cpuset starts empty and takes no task).
    pub mems: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Group {
    pub dir: PathBuf,
    /// We may create a child and enable controllers for it (the directory and its
    /// `cgroup.subtree_control` are writable).
    pub writable: bool,
    /// `cgroup.controllers`: what the subtree can be given.
    pub controllers: Vec<String>,
}

/// Each cgroup flag: its controller, its name, and whether it was given.
fn cgroup_flags(r: &Resources) -> [(&'static str, &'static str, bool); 7] {
    [
        ("memory", "--memory", r.memory.is_some()),
        ("memory", "--memory-swap", r.memory_swap.is_some()),
        (
            "memory",
            "--memory-reservation",
            r.memory_reservation.is_some(),
        ),
        ("cpu", "--cpus", r.nano_cpus.is_some()),
        ("cpu", "--cpu-shares", r.cpu_shares.is_some()),
        ("cpuset", "--cpuset-cpus", r.cpuset_cpus.is_some()),
        ("pids", "--pids-limit", r.pids_limit.is_some()),
    ]
}

/// The controllers the given cgroup flags need, in a fixed order (none: the facts need not
/// be read).
pub fn controllers(r: &Resources) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = Vec::new();
    for (controller, _, set) in cgroup_flags(r) {
        if set && !c.contains(&controller) {
            c.push(controller);
        }
    }
    c
}

/// The given flags of these controllers, as the user would list them.
fn flags_of(r: &Resources, controllers: &[&str]) -> String {
    let v: Vec<&str> = cgroup_flags(r)
        .into_iter()
        .filter(|(c, _, set)| *set && controllers.contains(c))
        .map(|(_, f, _)| f)
        .collect();
    v.join(", ")
}

/// Refuses what Docker refuses: values that cannot work, or flags that do not fit together.
fn check(r: &Resources, facts: &CgroupFacts) -> Result<(), PlanError> {
    let max = facts.cpus.max(1) as u64;
    let m = r.memory.unwrap_or(u64::MAX);
    let why = if m < 6 << 20 {
        "--memory: the minimum memory limit is 6MB"
    } else if r.memory.is_none() && r.memory_swap.is_some() {
        "--memory-swap needs --memory: it limits memory plus swap"
    } else if r.memory_swap.flatten().is_some_and(|s| s < m) {
        "--memory-swap is below --memory: it counts memory plus swap"
    } else if r.memory_reservation.is_some_and(|v| v > m) {
        "--memory-reservation is above --memory: the reservation must be lower"
    } else if r
        .nano_cpus
        .is_some_and(|n| n < 10_000_000 || n > max * 1_000_000_000)
    {
        return Err(PlanError::Resources(format!(
            "--cpus: the range of CPUs is from 0.01 to {max}.00, as there are only {max} CPUs \
             available"
        )));
    } else {
        return Ok(());
    };
    Err(PlanError::Resources(why.into()))
}

/// The files of `controller` and their values, for a v1 group (`v1` is its facts) or a v2 one.
fn files(
    r: &Resources,
    controller: &str,
    v1: Option<&V1Controller>,
) -> Vec<(&'static str, String)> {
    let pick = |a, b| if v1.is_some() { a } else { b };
    let mut f = Vec::new();
    match controller {
        "memory" => {
            if let Some(m) = r.memory {
                f.push((pick("memory.limit_in_bytes", "memory.max"), m.to_string()));
                // Docker's default: as much swap as memory (memory plus swap = twice the memory).
                let swap = r.memory_swap.unwrap_or(Some(m.saturating_mul(2)));
                match v1 {
                    Some(c) if c.memsw => f.push((
                        "memory.memsw.limit_in_bytes",
                        swap.map_or("-1".into(), |s| s.to_string()),
                    )),
                    // v2 counts swap alone.
                    None => f.push((
                        "memory.swap.max",
                        swap.map_or("max".into(), |s| (s - m).to_string()),
                    )),
                    _ => {}
                }
            }
            if let Some(m) = r.memory_reservation {
                f.push((
                    pick("memory.soft_limit_in_bytes", "memory.low"),
                    m.to_string(),
                ));
            }
        }
        "cpu" => {
            if let Some(n) = r.nano_cpus {
                // Docker's period (100 ms) and the quota that gives this share of one CPU.
                let quota = n / 10_000;
                if v1.is_some() {
                    f.push(("cpu.cfs_period_us", "100000".into()));
                    f.push(("cpu.cfs_quota_us", quota.to_string()));
                } else {
                    f.push(("cpu.max", format!("{quota} 100000")));
                }
            }
            if let Some(s) = r.cpu_shares {
                // The kernel's range; runc's conversion to a v2 weight.
                let s = s.clamp(2, 262144);
                let weight = 1 + ((s - 2) * 9999) / 262142;
                f.push((
                    pick("cpu.shares", "cpu.weight"),
                    if v1.is_some() { s } else { weight }.to_string(),
                ));
            }
        }
        "cpuset" => {
            // v1 needs memory nodes before it takes a task; v2 inherits them.
            if let Some(c) = v1 {
                f.push(("cpuset.mems", c.mems.clone().unwrap_or_else(|| "0".into())));
            }
            f.push(("cpuset.cpus", r.cpuset_cpus.clone().unwrap_or_default()));
        }
        _ => f.push((
            "pids.max",
            r.pids_limit
                .flatten()
                .map_or("max".into(), |n| n.to_string()),
        )),
    }
    f
}

/// The name of the container's cgroup.
pub fn group_name(pid: u32) -> String {
    format!("oci2bin-{pid}")
}

/// The cgroup steps: the ones the supervisor takes before any namespace (returned first:
/// creating groups and writing limits), and the ones PID 1 takes first thing (joining them).
/// Rlimits are [`ulimits`]' business.
pub fn cgroups(r: &Resources, facts: &CgroupFacts) -> Result<(Vec<Step>, Vec<Step>), PlanError> {
    let need = controllers(r);
    let (mut before, mut dirs) = (Vec::new(), Vec::<PathBuf>::new());
    if need.is_empty() {
        return Ok((before, Vec::new()));
    }
    check(r, facts)?;
    let name = group_name(facts.pid);
    let v2 = facts.v2.as_ref();
    // v2 when it can give every controller wanted (one group for all); else v1 per controller.
    let v2_all =
        v2.filter(|g| g.writable && need.iter().all(|c| g.controllers.iter().any(|x| x == c)));
    if let Some(g) = v2_all {
        let flags = flags_of(r, &need);
        let controllers: Vec<String> = need.iter().map(|c| format!("+{c}")).collect();
        let dir = g.dir.join(&name);
        before.push(Step::CgroupCreate {
            dir: dir.clone(),
            files: need.iter().flat_map(|c| files(r, c, None)).collect(),
            flags,
            required: r.require,
            delegate: Some(controllers.join(" ")),
        });
        return Ok((before, vec![Step::CgroupJoin(vec![dir])]));
    }
    let (mut lacking, mut why) = (Vec::new(), Vec::new());
    for c in need {
        match facts.v1.iter().find(|x| x.name == c) {
            Some(x) if x.writable => {
                let dir = x.dir.join(&name);
                before.push(Step::CgroupCreate {
                    dir: dir.clone(),
                    files: files(r, c, Some(x)),
                    flags: flags_of(r, &[c]),
                    required: r.require,
                    delegate: None,
                });
                dirs.push(dir);
            }
            found => {
                lacking.push(c);
                why.push(match found {
                    Some(x) => format!(
                        "v1 {c} controller at {} is not writable by us",
                        x.dir.display()
                    ),
                    None => format!("no v1 {c} controller is mounted"),
                });
            }
        }
    }
    if !lacking.is_empty() {
        why.push(match v2 {
            None => "no cgroup v2 is mounted".to_string(),
            Some(g) if g.writable => format!(
                "cgroup v2 at {} offers no {} controller",
                g.dir.display(),
                lacking.join(", ")
            ),
            Some(g) => format!("cgroup v2 at {} is not writable by us", g.dir.display()),
        });
        let (flags, why) = (flags_of(r, &lacking), why.join("; "));
        if r.require {
            return Err(PlanError::Resources(format!(
                "{flags} cannot be applied (--require-limits): no writable cgroup ({why})"
            )));
        }
        before.push(Step::Warn(format!(
            "{flags} ignored: no writable cgroup ({why})"
        )));
    }
    let join = if dirs.is_empty() {
        Vec::new()
    } else {
        vec![Step::CgroupJoin(dirs)]
    };
    Ok((before, join))
}

/// The `--ulimit` steps, after our own raised defaults.
pub fn ulimits(r: &Resources, steps: &mut Vec<Step>) {
    for u in &r.ulimits {
        steps.push(Step::Rlimit {
            name: u.name,
            resource: u.resource,
            soft: u.soft,
            hard: u.hard,
        });
    }
}

/// Whether `name` is a group of ours left by a loader that is gone (`oci2bin-<pid>` or
/// `oci2bin-<pid>-loader` where `alive(pid)` is false).
pub fn is_stale(name: &str, alive: impl Fn(u32) -> bool) -> bool {
    let Some(rest) = name.strip_prefix("oci2bin-") else {
        return false;
    };
    let pid = rest.strip_suffix("-loader").unwrap_or(rest);
    pid.parse::<u32>().is_ok_and(|p| !alive(p))
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
