//! Capabilities, no_new_privs, seccomp and LSM labels (`--cap-add`, `--cap-drop`,
//! `--privileged`, `--security-opt`, `--seccomp-profile`, `--no-seccomp`).
//!
//! As Docker: the container gets Docker's default capability set (bounding, effective,
//! permitted; inheritable empty) adjusted by `--cap-add`/`--cap-drop`, and Docker's default
//! seccomp profile resolved against that set. A non-root `--user` keeps the bounding set but
//! no effective capabilities, as under Docker; unlike Docker, capabilities it names in
//! `--cap-add` are raised as ambient ones (podman's rule), so `--user 1000 --cap-add NET_ADMIN`
//! works. As under Docker, no_new_privs is off by default (`--security-opt no-new-privileges`
//! turns it on): file capabilities (`ping`'s cap_net_raw) and setuid programs (`sudo`) must
//! keep working for a non-root user in the mapped mode.
//!
//! Order of the steps (all after the root is built, the init included, as Docker filters its
//! init too): bounding set, keep-caps, the user switch ([`Step::SetIds`], the caller's), the
//! capability sets, no_new_privs, the filter, exec. Without no_new_privs the filter needs
//! CAP_SYS_ADMIN in the namespace, so it goes in before the capabilities are lowered.

use super::{HostFacts, PlanError, Step};
use crate::args::Flags;
use crate::caps::{self, CapSet};
use crate::format::Runtime;
use crate::seccomp;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Which seccomp filter a run asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile (compiled into the file).
    #[default]
    Default,
    /// `--security-opt seccomp=unconfined`, `--no-seccomp`.
    Unconfined,
    /// `--seccomp-profile FILE`, `--security-opt seccomp=FILE`.
    File(OsString),
}

/// The security flags as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityFlags {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `no-new-privileges`; `None` is the default (on).
    pub no_new_privs: Option<bool>,
    pub seccomp: SeccompChoice,
    /// `apparmor=PROFILE`.
    pub apparmor: Option<String>,
    /// `label=…` options in order (`disable`, `user:U`, `role:R`, `type:T`, `level:L`).
    pub labels: Vec<String>,
    /// `systempaths=unconfined`: no masked or read-only paths under /proc and /sys.
    pub systempaths_unconfined: bool,
}

impl SecurityFlags {
    /// Whether Docker's masked and read-only paths apply.
    pub fn masks(&self) -> bool {
        !self.privileged && !self.systempaths_unconfined
    }
}

/// Checks a `--cap-add`/`--cap-drop` value.
pub fn cap_value(v: &str) -> Result<String, String> {
    if v.eq_ignore_ascii_case("ALL") || caps::number(v).is_some() {
        Ok(v.to_string())
    } else {
        Err(format!("unknown capability '{v}'"))
    }
}

/// Applies one `--security-opt` value (Docker's `=` and its older `:` both separate the key).
pub fn security_opt(f: &mut SecurityFlags, v: &OsString) -> Result<(), String> {
    let bytes = v.as_bytes();
    let sep = bytes.iter().position(|&b| b == b'=' || b == b':');
    let (key, value) = match sep {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    };
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| "the value is not UTF-8".to_string())
    };
    match (key, value) {
        (b"no-new-privileges", None) => f.no_new_privs = Some(true),
        (b"no-new-privileges", Some(b"true")) => f.no_new_privs = Some(true),
        (b"no-new-privileges", Some(b"false")) => f.no_new_privs = Some(false),
        (b"seccomp", Some(b"unconfined")) => f.seccomp = SeccompChoice::Unconfined,
        (b"seccomp", Some(p)) if !p.is_empty() => {
            f.seccomp = SeccompChoice::File(OsStr::from_bytes(p).to_os_string())
        }
        (b"apparmor", Some(p)) if !p.is_empty() => f.apparmor = Some(text(p)?),
        (b"label", Some(l)) => {
            let l = text(l)?;
            let ok = l == "disable"
                || l == "nested"
                || ["user:", "role:", "type:", "level:", "filetype:"]
                    .iter()
                    .any(|p| l.strip_prefix(p).is_some_and(|r| !r.is_empty()));
            if !ok {
                return Err("label takes disable, user:U, role:R, type:T or level:L".into());
            }
            f.labels.push(l);
        }
        (b"systempaths", Some(b"unconfined")) => f.systempaths_unconfined = true,
        _ => {
            return Err(
                "want no-new-privileges[=true|false], seccomp=unconfined|FILE, \
                 apparmor=PROFILE, label=OPTION or systempaths=unconfined"
                    .into(),
            )
        }
    }
    Ok(())
}

/// What the plan needs from the host for these steps (gathered by
/// [`crate::host::security_facts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityFacts {
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
    /// Whether AppArmor is enabled, and whether SELinux is.
    pub apparmor: bool,
    pub selinux: bool,
    /// The caller's SELinux context (`/proc/self/attr/current`), the base of a `label=`.
    pub selinux_context: Option<String>,
    /// The bytes of the `--seccomp-profile` file, or why it cannot be read.
    pub profile: Option<Result<Vec<u8>, String>>,
}

/// The capability sets of the container process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

/// The sets for a run as user `uid`: Docker's (moby `TweakCapabilities`), plus ambient
/// capabilities for a non-root user's `--cap-add`.
pub fn capabilities(f: &SecurityFlags, uid: u32) -> Result<Caps, PlanError> {
    let set = if f.privileged {
        caps::ALL
    } else {
        caps::tweak(caps::DOCKER_DEFAULT, &f.cap_add, &f.cap_drop).map_err(PlanError::Security)?
    };
    let ambient = if uid == 0 {
        0
    } else {
        // Only what the user named: the defaults stay out of reach of a non-root user.
        caps::tweak(0, &f.cap_add, &[]).unwrap_or(0) & set
    };
    Ok(Caps {
        bounding: set,
        effective: set,
        permitted: set,
        inheritable: ambient,
        ambient,
    })
}

/// The seccomp filter for a run (`None`: unconfined), as `struct sock_filter` bytes.
pub fn filter(
    rt: &Runtime,
    f: &SecurityFlags,
    facts: &HostFacts,
    caps: CapSet,
    steps: &mut Vec<Step>,
) -> Result<Option<Vec<u8>>, PlanError> {
    let target = seccomp::Target {
        caps,
        kernel: facts.security.kernel,
    };
    let compile = |profile: &[u8], what: &str| {
        seccomp::compile(profile, target)
            .map(|c| Some(seccomp::to_bytes(&c.insns)))
            .map_err(|e| PlanError::Security(format!("seccomp profile {what}: {e}")))
    };
    if f.privileged {
        return Ok(None);
    }
    match &f.seccomp {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::File(path) => {
            let shown = path.to_string_lossy();
            match &facts.security.profile {
                Some(Ok(bytes)) => compile(bytes, &shown),
                Some(Err(why)) => Err(PlanError::Security(format!(
                    "seccomp profile {shown}: {why}"
                ))),
                None => Err(PlanError::Security(format!(
                    "seccomp profile {shown}: not read"
                ))),
            }
        }
        SeccompChoice::Default => {
            let Some(rec) = &rt.seccomp else {
                steps.push(Step::Warn(
                    "this file carries no seccomp filter (an older oci2bin built it): running \
                     without one"
                        .into(),
                ));
                return Ok(None);
            };
            let kernel = (rec.min_kernel.0 as u32, rec.min_kernel.1 as u32);
            // The filter compiled ahead holds when the profile cannot tell the difference.
            if (rec.caps ^ caps) & rec.caps_named == 0 && facts.security.kernel >= kernel {
                return Ok(Some(rec.bpf.clone()));
            }
            compile(&rec.profile, "(the default)")
        }
    }
}

/// LSM labels for the exec: AppArmor's profile, SELinux's context, where the host has them.
fn labels(f: &SecurityFlags, facts: &HostFacts, steps: &mut Vec<Step>) {
    let sf = &facts.security;
    if let Some(p) = &f.apparmor {
        if p == "unconfined" {
        } else if sf.apparmor {
            steps.push(Step::ExecLabel {
                path: PathBuf::from("/proc/self/attr/apparmor/exec"),
                value: format!("exec {p}"),
            });
        } else {
            steps.push(Step::Warn(format!(
                "AppArmor is not enabled on this host: apparmor={p} is not applied"
            )));
        }
    }
    let wanted: Vec<&String> = f
        .labels
        .iter()
        .filter(|l| *l != "disable" && *l != "nested")
        .collect();
    if wanted.is_empty() {
        return;
    }
    match (&sf.selinux_context, sf.selinux) {
        (Some(current), true) => {
            // user:role:type:level, each field replaced where a label= names it.
            let mut parts: Vec<String> = current.splitn(4, ':').map(str::to_string).collect();
            parts.resize(4, String::new());
            for l in wanted {
                let (k, v) = l.split_once(':').unwrap_or((l, ""));
                let i = match k {
                    "user" => 0,
                    "role" => 1,
                    "type" => 2,
                    "level" => 3,
                    _ => continue,
                };
                parts[i] = v.to_string();
            }
            steps.push(Step::ExecLabel {
                path: PathBuf::from("/proc/self/attr/exec"),
                value: parts.join(":"),
            });
        }
        _ => steps.push(Step::Warn(format!(
            "SELinux is not enabled on this host: label={} is not applied",
            wanted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",label=")
        ))),
    }
}

/// The steps before the user switch ([`Step::SetIds`]) and after it, up to the exec.
pub(super) fn steps(
    rt: &Runtime,
    flags: &Flags,
    facts: &HostFacts,
    uid: u32,
    switches_user: bool,
) -> Result<(Vec<Step>, Vec<Step>), PlanError> {
    let f = &flags.security;
    let c = capabilities(f, uid)?;
    let mut before = Vec::new();
    labels(f, facts, &mut before);
    let filter = filter(rt, f, facts, c.bounding, &mut before)?;
    let (b, after) = around_user_switch(c, filter, f.no_new_privs.unwrap_or(false), switches_user);
    before.extend(b);
    Ok((before, after))
}

/// The capability, no_new_privs and seccomp steps before the user switch and after it, for a
/// run and for `oci2bin exec` (which gets the run's filter, compiled then: [`super::exec_into`]).
pub(super) fn around_user_switch(
    c: Caps,
    filter: Option<Vec<u8>>,
    nnp: bool,
    switches_user: bool,
) -> (Vec<Step>, Vec<Step>) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    if c.bounding != caps::ALL {
        before.push(Step::LimitBoundingSet(c.bounding));
    }
    if let (Some(bpf), false) = (&filter, nnp) {
        before.push(Step::Seccomp(bpf.clone()));
    }
    if switches_user {
        before.push(Step::KeepCaps);
    }
    after.push(Step::SetCaps {
        effective: c.effective,
        permitted: c.permitted,
        inheritable: c.inheritable,
        ambient: c.ambient,
    });
    if nnp {
        after.push(Step::NoNewPrivs);
        if let Some(bpf) = filter {
            after.push(Step::Seccomp(bpf));
        }
    }
    (before, after)
}
