//! Resources (R8): `--ulimit` as rlimits of the container, and `--memory`, `--memory-swap`,
//! `--memory-reservation`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit` as a cgroup
//! of its own, as Docker's flags set them.
//!
//! Cgroups: for each controller a flag needs, a delegated cgroup v2 subtree of ours when the
//! unified hierarchy offers the controller and we may write there, else the v1 hierarchy of that
//! controller (this is what a root caller gets on a v1 or hybrid host). The supervisor creates
//! `oci2bin-<pid>` beside nothing else: under our own cgroup in each hierarchy, before any
//! namespace, writes the limits, and removes it after the container is reaped; PID 1 joins it
//! before anything else runs. A group left by a killed loader (its pid gone) is removed by the
//! next run that makes one in the same place. When no cgroup is writable: one warning naming
//! what is missing, and the run goes on, unless `--require-limits`.

use super::{PlanError, Step};
use std::path::{Path, PathBuf};

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
            let ok = !v.is_empty()
                && v.split(',').all(|part| {
                    let mut ends = part.splitn(2, '-');
                    ends.all(|n| !n.is_empty() && n.parse::<u16>().is_ok())
                });
            if !ok {
                return Err("want CPU numbers and ranges, e.g. 0-2,4".into());
            }
            r.cpuset_cpus = Some(v.into());
        }
        "--pids-limit" => {
            let n: i64 = v
                .parse()
                .map_err(|_| "want a whole number, or -1 for no limit")?;
            r.pids_limit = Some((n > 0).then_some(n as u64));
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
        .ok_or_else(|| format!("unknown ulimit type '{name}' (want one of {})", names()))?;
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

fn names() -> String {
    let v: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
    v.join(", ")
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
    let bad = || {
        format!("'{v}' is not a size: want a number with an optional unit (b, k, m, g), e.g. 64m")
    };
    let digits = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut n = whole
        .checked_shl(shift)
        .filter(|&n| n >> shift == whole)
        .ok_or_else(bad)?;
    if !frac.is_empty() {
        // The fraction of the unit, truncated to whole bytes, as Docker's float does.
        let f: u64 = frac
            .get(..frac.len().min(12))
            .unwrap_or("0")
            .parse()
            .map_err(|_| bad())?;
        let scale = 10u64.pow(frac.len().min(12) as u32);
        n += ((f as u128) << shift) as u64 / scale;
    }
    Ok(n)
}

/// `--cpus` as billionths of a CPU (`0.5` → 500000000), at most 9 decimals.
fn cpus(v: &str) -> Result<u64, String> {
    let bad = || format!("'{v}' is not a number of CPUs, e.g. 0.5 or 2");
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.len() > 9 {
        return Err(bad());
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    let w: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let f: u64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    w.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(f))
        .ok_or_else(bad)
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

/// One controller's share of the limits.
struct Want {
    controller: &'static str,
    flags: Vec<&'static str>,
    /// (v1 file, v1 value, v2 file, v2 value); an empty file name is not written there.
    files: Vec<(&'static str, String, &'static str, String)>,
}

/// What each controller must be given, for the flags that were set.
fn wanted(r: &Resources, facts: &CgroupFacts) -> Result<Vec<Want>, PlanError> {
    let bad = |s: String| Err(PlanError::Resources(s));
    let mut out = Vec::new();
    let mut mem = Want {
        controller: "memory",
        flags: Vec::new(),
        files: Vec::new(),
    };
    if let Some(m) = r.memory {
        // Docker's minimum.
        if m < 6 << 20 {
            return bad(format!("--memory {m}: the minimum memory limit is 6MB"));
        }
        mem.flags.push("--memory");
        mem.files.push((
            "memory.limit_in_bytes",
            m.to_string(),
            "memory.max",
            m.to_string(),
        ));
        let memsw = facts.v1.iter().any(|c| c.name == "memory" && c.memsw);
        // Docker's default: as much swap as memory (memory plus swap = twice the memory).
        let swap = match r.memory_swap {
            Some(Some(s)) if s < m => {
                return bad(format!(
                    "--memory-swap {s} is below --memory {m}: it counts memory plus swap"
                ))
            }
            Some(Some(s)) => Some(s),
            Some(None) => None,
            None => Some(m.saturating_mul(2)),
        };
        if r.memory_swap.is_some() {
            mem.flags.push("--memory-swap");
        }
        let (v1, v2) = match swap {
            Some(s) => (s.to_string(), (s - m).to_string()),
            None => ("-1".to_string(), "max".to_string()),
        };
        mem.files.push((
            if memsw {
                "memory.memsw.limit_in_bytes"
            } else {
                ""
            },
            v1,
            "memory.swap.max",
            v2,
        ));
    } else if r.memory_swap.is_some() {
        return bad("--memory-swap needs --memory: it limits memory plus swap".into());
    }
    if let Some(m) = r.memory_reservation {
        if r.memory.is_some_and(|limit| m > limit) {
            return bad(
                "--memory-reservation is above --memory: the reservation must be lower".into(),
            );
        }
        mem.flags.push("--memory-reservation");
        mem.files.push((
            "memory.soft_limit_in_bytes",
            m.to_string(),
            "memory.low",
            m.to_string(),
        ));
    }
    if !mem.flags.is_empty() {
        out.push(mem);
    }
    let mut cpu = Want {
        controller: "cpu",
        flags: Vec::new(),
        files: Vec::new(),
    };
    if let Some(n) = r.nano_cpus {
        let max = facts.cpus.max(1) as u64;
        if n < 10_000_000 || n > max * 1_000_000_000 {
            return bad(format!(
                "--cpus: the range of CPUs is from 0.01 to {max}.00, as there are only {max} CPUs available"
            ));
        }
        // Docker's period (100 ms) and the quota that gives this share of one CPU.
        let quota = n / 10_000;
        cpu.flags.push("--cpus");
        cpu.files
            .push(("cpu.cfs_period_us", "100000".into(), "", String::new()));
        cpu.files.push((
            "cpu.cfs_quota_us",
            quota.to_string(),
            "cpu.max",
            format!("{quota} 100000"),
        ));
    }
    if let Some(s) = r.cpu_shares {
        // The kernel's range; runc's conversion to a v2 weight.
        let s = s.clamp(2, 262144);
        let weight = 1 + ((s - 2) * 9999) / 262142;
        cpu.flags.push("--cpu-shares");
        cpu.files.push((
            "cpu.shares",
            s.to_string(),
            "cpu.weight",
            weight.to_string(),
        ));
    }
    if !cpu.flags.is_empty() {
        out.push(cpu);
    }
    if let Some(c) = &r.cpuset_cpus {
        let mems = facts
            .v1
            .iter()
            .find(|c| c.name == "cpuset")
            .and_then(|c| c.mems.clone())
            .unwrap_or_else(|| "0".into());
        out.push(Want {
            controller: "cpuset",
            flags: vec!["--cpuset-cpus"],
            // v1 needs memory nodes before it takes a task; v2 inherits them.
            files: vec![
                ("cpuset.mems", mems, "", String::new()),
                ("cpuset.cpus", c.clone(), "cpuset.cpus", c.clone()),
            ],
        });
    }
    if let Some(p) = r.pids_limit {
        let v = p.map_or("max".to_string(), |n| n.to_string());
        out.push(Want {
            controller: "pids",
            flags: vec!["--pids-limit"],
            files: vec![("pids.max", v.clone(), "pids.max", v)],
        });
    }
    Ok(out)
}

/// The name of the container's cgroup.
pub fn group_name(pid: u32) -> String {
    format!("oci2bin-{pid}")
}

/// The cgroup steps: the ones the supervisor takes before any namespace (returned first:
/// creating groups and writing limits), and the ones PID 1 takes first thing (joining them).
/// Rlimits are [`ulimits`]' business.
pub fn cgroups(r: &Resources, facts: &CgroupFacts) -> Result<(Vec<Step>, Vec<Step>), PlanError> {
    let wants = wanted(r, facts)?;
    let (mut before, mut join) = (Vec::new(), Vec::new());
    if wants.is_empty() {
        return Ok((before, join));
    }
    let name = group_name(facts.pid);
    let v2 = facts.v2.as_ref();
    let v2_has = |c: &str| v2.is_some_and(|g| g.writable && g.controllers.iter().any(|x| x == c));
    // v2 when it can give every controller wanted (one group for all); else v1 per controller.
    if wants.iter().all(|w| v2_has(w.controller)) {
        let g = v2.expect("checked above");
        let controllers: Vec<String> = wants.iter().map(|w| format!("+{}", w.controller)).collect();
        let flags = wants
            .iter()
            .flat_map(|w| w.flags.clone())
            .collect::<Vec<_>>()
            .join(", ");
        before.push(Step::CgroupDelegate {
            dir: g.dir.clone(),
            own: g.dir.join(format!("{name}-loader")),
            controllers: controllers.join(" "),
            flags: flags.clone(),
            required: r.require,
        });
        let files = wants
            .iter()
            .flat_map(|w| &w.files)
            .filter(|f| !f.2.is_empty())
            .map(|f| (f.2.to_string(), f.3.clone()))
            .collect();
        let dir = g.dir.join(&name);
        before.push(Step::CgroupCreate {
            dir: dir.clone(),
            files,
            flags,
            required: r.require,
        });
        join.push(Step::CgroupJoin(vec![dir]));
        return Ok((before, join));
    }
    let mut dirs = Vec::new();
    let mut missing: Vec<(&Want, String)> = Vec::new();
    for w in &wants {
        match facts.v1.iter().find(|c| c.name == w.controller) {
            Some(c) if c.writable => {
                let dir = c.dir.join(&name);
                let files = w
                    .files
                    .iter()
                    .filter(|f| !f.0.is_empty())
                    .map(|f| (f.0.to_string(), f.1.clone()))
                    .collect();
                before.push(Step::CgroupCreate {
                    dir: dir.clone(),
                    files,
                    flags: w.flags.join(", "),
                    required: r.require,
                });
                dirs.push(dir);
            }
            found => {
                let v1 = match found {
                    Some(c) => format!(
                        "v1 {} controller at {} is not writable by us",
                        w.controller,
                        c.dir.display()
                    ),
                    None => format!("no v1 {} controller is mounted", w.controller),
                };
                let v2 = match v2 {
                    None => "no cgroup v2 is mounted".to_string(),
                    Some(g) if !g.controllers.iter().any(|c| c == w.controller) => format!(
                        "cgroup v2 at {} offers no {} controller",
                        g.dir.display(),
                        w.controller
                    ),
                    Some(g) => format!("cgroup v2 at {} is not writable by us", g.dir.display()),
                };
                missing.push((w, format!("{v1}; {v2}")));
            }
        }
    }
    if !missing.is_empty() {
        let flags: Vec<&str> = missing.iter().flat_map(|(w, _)| w.flags.clone()).collect();
        let why: Vec<&str> = missing.iter().map(|(_, why)| why.as_str()).collect();
        let (flags, why) = (flags.join(", "), why.join("; "));
        if r.require {
            return Err(PlanError::Resources(format!(
                "{flags} cannot be applied (--require-limits): no writable cgroup ({why})"
            )));
        }
        before.push(Step::Warn(format!(
            "{flags} ignored: no writable cgroup ({why})"
        )));
    }
    if !dirs.is_empty() {
        join.push(Step::CgroupJoin(dirs));
    }
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

/// The controllers a cgroup flag needs (none: the facts need not be read).
pub fn controllers(r: &Resources) -> Vec<&'static str> {
    let mut c = Vec::new();
    if r.memory.is_some() || r.memory_swap.is_some() || r.memory_reservation.is_some() {
        c.push("memory");
    }
    if r.nano_cpus.is_some() || r.cpu_shares.is_some() {
        c.push("cpu");
    }
    if r.cpuset_cpus.is_some() {
        c.push("cpuset");
    }
    if r.pids_limit.is_some() {
        c.push("pids");
    }
    c
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

/// Our directory in a v1 hierarchy: the mount point plus our path in `/proc/self/cgroup`,
/// unless the mount's root is a subtree (then the part of our path under it).
pub fn v1_dir(mount: &Path, mount_root: &str, own: &str) -> PathBuf {
    let rel = own
        .strip_prefix(mount_root.trim_end_matches('/'))
        .unwrap_or(own)
        .trim_start_matches('/');
    if rel.is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(rel)
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
