//! The loader's exec mode (`OCI2BIN_EXEC_INTO=PID`, set by `oci2bin exec`): gather what the
//! exec plan needs about the container (its seccomp filter from `OCI2BIN_EXEC_SECCOMP`), plan,
//! and apply the plan's [`crate::plan::Step::JoinContainer`].

use crate::args::{self, Parsed};
use crate::exec::{self, ExecError};
use crate::plan::exec_into::{self, ExecFacts, NAMESPACES};
use crate::sys::proc;
use std::error::Error;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Runs `argv` (`[FLAGS] CMD…`, as `oci2bin exec` passes them) in the container whose PID 1 is
/// host pid `pid`; returns the command's exit status.
pub fn exec_into(pid: &OsStr, argv: Vec<OsString>) -> Result<i32, Box<dyn Error>> {
    let pid: i32 = pid
        .to_str()
        .and_then(|p| p.parse().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("{}: not a pid", crate::containers::EXEC_INTO))?;
    let flags = match args::parse(argv)? {
        Parsed::Run(f) => f,
        _ => return Err("exec: --help and --version are not for exec".into()),
    };
    let facts = gather(pid)?;
    let steps = exec_into::plan(&flags, &facts)?;
    Ok(exec::run(&steps)?)
}

fn gather(pid: i32) -> Result<ExecFacts, String> {
    let mut differ = Vec::new();
    for &kind in NAMESPACES {
        let theirs = match fs::metadata(format!("/proc/{pid}/ns/{kind}")) {
            Ok(m) => m,
            Err(e) if kind != "user" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("container process {pid}: {e}")),
        };
        let ours = fs::metadata(format!("/proc/self/ns/{kind}")).ok();
        if ours.is_none_or(|o| (o.dev(), o.ino()) != (theirs.dev(), theirs.ino())) {
            differ.push(kind);
        }
    }
    if !differ.contains(&"user") {
        return Err(format!(
            "process {pid} is not in a container of ours (it shares our user namespace)"
        ));
    }
    let read = |f: &str| fs::read_to_string(format!("/proc/{pid}/{f}")).ok();
    // One line mapping one id: a single-uid container.
    let single_id = |map: Option<String>| -> Option<u32> {
        let map = map?;
        let mut lines = map.lines();
        let f: Vec<u32> = lines
            .next()?
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        (lines.next().is_none() && f.len() == 3 && f[2] == 1).then_some(f[0])
    };
    let single = single_id(read("uid_map")).zip(single_id(read("gid_map")));
    // The run's filter as it compiled it: exact, whatever became of its profile file since.
    let seccomp = match std::env::var_os(crate::containers::EXEC_SECCOMP) {
        Some(p) => Some(fs::read(&p).map_err(|e| {
            format!(
                "read the container's seccomp filter {}: {e}",
                p.to_string_lossy()
            )
        })?),
        None => None,
    };
    Ok(ExecFacts {
        pid,
        differ,
        passwd: read("root/etc/passwd"),
        group: read("root/etc/group"),
        single,
        env: std::env::vars_os().collect(),
        seccomp,
        stdin_tty: crate::sys::tty::is_tty(0),
    })
}

/// [`crate::plan::Step::JoinContainer`]: every descriptor is opened before the first join (the paths name
/// the host's /proc, which the container's mount namespace hides), the user namespace joined
/// first, the root taken last.
pub fn join(pid: i32, namespaces: &[String]) -> Result<(), ExecError> {
    let open = |p: String| fs::File::open(&p).map_err(|e| exec::fail(format_args!("open {p}"), e));
    let root = open(format!("/proc/{pid}/root"))?;
    let fds = namespaces
        .iter()
        .map(|k| Ok((k, open(format!("/proc/{pid}/ns/{k}"))?)))
        .collect::<Result<Vec<_>, ExecError>>()?;
    for (kind, fd) in &fds {
        proc::setns(fd.as_fd(), 0).map_err(|e| {
            exec::fail(
                format_args!("join the {kind} namespace of process {pid}"),
                e,
            )
        })?;
    }
    proc::chroot_to(root.as_fd())
        .map_err(|e| exec::fail(format_args!("enter the root of process {pid}"), e))
}
