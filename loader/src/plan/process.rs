//! What runs: the command (Docker's Entrypoint/Cmd rules), its environment and working
//! directory, and how a stop request ends it.

use super::{HostFacts, PlanError, Step, DEFAULT_PATH};
use crate::args::Flags;
use crate::format::Runtime;
use crate::init::StopPolicy;
use crate::sys::ns;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

/// Limits whose soft value is raised to the hard one for the container (open files, processes).
pub(super) const RAISED_LIMITS: &[i32] = &[ns::RLIMIT_NOFILE, ns::RLIMIT_NPROC];

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

pub(super) fn workdir(rt: &Runtime, flags: &Flags) -> Result<PathBuf, PlanError> {
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
pub(super) fn stop_policy(rt: &Runtime, flags: &Flags, warn: &mut Vec<Step>) -> StopPolicy {
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
