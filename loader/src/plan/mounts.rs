//! Mounts the user asks for (R3, R4): `-v`, `--mount`, `--tmpfs`, `--secret` and `--read-only`.
//!
//! The flag values are parsed here (pure, called by [`crate::args`]) into [`MountSpec`]s; the
//! plan turns them into [`Step::Mount`]s before `pivot_root` (targets are resolved inside the new
//! root by the executor, never leaving it) and [`Step::ReadOnlyRoot`] after the per-run files.
//! Host paths are never created or changed: a missing one stops the start, as podman does.

use super::{HostFacts, PlanError, Step};
use crate::sys::ns;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A recursive bind of a host path (absolute).
    Bind(PathBuf),
    /// A tmpfs with these data options (`size=…,mode=…`), possibly empty.
    Tmpfs(String),
    /// A volume: named (`-v NAME:/p`, `type=volume,src=NAME`) or anonymous (`None`: `-v /p`,
    /// `type=volume` without a source). [`crate::storage`] turns it into a [`Source::VolumeDir`].
    Volume(Option<String>),
    /// A volume's directory on the host, populated from the image when empty.
    VolumeDir(PathBuf),
    /// `--device`: a host device node, bound (a rootless run cannot mknod).
    Device(PathBuf),
}

/// One parsed mount flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: Source,
    /// Absolute, lexically cleaned container path (never `/`).
    pub target: PathBuf,
    /// `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`.
    pub flags: u64,
}

/// What a step mounts at its target, as the executor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Bind a host directory (the target is made a directory if missing).
    BindDir(PathBuf),
    /// Bind a host file or other non-directory (the target is made an empty file if missing).
    BindFile(PathBuf),
    Tmpfs(String),
    /// Bind a volume's directory, first copying the image's content at the target into it when
    /// the volume is empty (as Docker does).
    Volume(PathBuf),
}

/// Docker's flags for `--tmpfs` and `--mount type=tmpfs`.
const TMPFS_DEFAULT: u64 = ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC;
/// `--secret`: read-only, nothing executable, no devices, no setuid.
const SECRET: u64 = ns::MS_RDONLY | ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC;

fn split(v: &[u8], sep: u8) -> Vec<&[u8]> {
    v.split(|&b| b == sep).collect()
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "options must be text".to_string())
}

/// An absolute container path, cleaned (`.`, `..` and doubled slashes resolved lexically).
fn container_path(p: &[u8]) -> Result<PathBuf, String> {
    if p.first() != Some(&b'/') {
        return Err(format!(
            "the container path '{}' must be absolute",
            String::from_utf8_lossy(p)
        ));
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(OsStr::from_bytes(p)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    if out == Path::new("/") {
        return Err("the container path cannot be '/'".into());
    }
    Ok(out)
}

/// The host side of a `-v`: an absolute path, else a volume name, else refused.
fn host_path(p: &[u8]) -> Result<Source, String> {
    match p {
        [] => Err("the host path is empty".into()),
        [b'/', ..] => Ok(Source::Bind(PathBuf::from(OsStr::from_bytes(p)))),
        _ if !p.contains(&b'/') => Ok(Source::Volume(Some(volume_name(p)?))),
        _ => Err(format!(
            "the host path '{}' must be absolute",
            String::from_utf8_lossy(p)
        )),
    }
}

/// A volume name as Docker allows them: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn volume_name(p: &[u8]) -> Result<String, String> {
    match std::str::from_utf8(p) {
        Ok(n) if crate::cachedir::valid_volume_name(p) => Ok(n.to_string()),
        _ => Err(format!(
            "invalid volume name '{}': want [a-zA-Z0-9][a-zA-Z0-9_.-]+",
            String::from_utf8_lossy(p)
        )),
    }
}

/// `-v HOST:CTR[:OPTS]`, OPTS a comma list of `ro`, `rw` (`z`/`Z` accepted and ignored).
pub fn volume(v: &[u8]) -> Result<MountSpec, String> {
    let parts = split(v, b':');
    let (host, ctr, opts) = match parts[..] {
        // `-v /p`: an anonymous volume, removed when the run ends.
        [c] => (&b""[..], c, &b""[..]),
        [h, c] => (h, c, &b""[..]),
        [h, c, o] => (h, c, o),
        _ => return Err("want HOST:CTR[:OPTIONS]".into()),
    };
    let source = match host {
        [] if parts.len() == 1 => Source::Volume(None),
        h => host_path(h)?,
    };
    let target = container_path(ctr)?;
    let mut flags = None;
    for o in utf8(opts)?.split(',').filter(|o| !o.is_empty()) {
        let f = match o {
            "ro" => ns::MS_RDONLY,
            "rw" => 0,
            "z" | "Z" => continue,
            _ => return Err(format!("unknown option '{o}' (want ro, rw, z or Z)")),
        };
        if flags.replace(f).is_some_and(|old| old != f) {
            return Err("ro and rw conflict".into());
        }
    }
    Ok(MountSpec {
        source,
        target,
        flags: flags.unwrap_or(0),
    })
}

/// `--device HOST[:CTR[:PERMS]]`: a host device node bound at CTR (default: HOST). PERMS
/// (`r`, `w`, `m`) are cgroup device rules a rootless run cannot set: checked, then left to the
/// node's own permissions.
pub fn device(v: &[u8]) -> Result<MountSpec, String> {
    let parts = split(v, b':');
    let (host, ctr, perms) = match parts[..] {
        [h] => (h, h, &b"rwm"[..]),
        [h, c] if !c.is_empty() && c.iter().all(|b| b"rwm".contains(b)) => (h, h, c),
        [h, c] => (h, c, &b"rwm"[..]),
        [h, c, p] => (h, c, p),
        _ => return Err("want HOST[:CTR[:PERMS]]".into()),
    };
    if host.first() != Some(&b'/') {
        return Err(format!(
            "the device path '{}' must be absolute",
            String::from_utf8_lossy(host)
        ));
    }
    if perms.is_empty() || !perms.iter().all(|b| b"rwm".contains(b)) {
        return Err(format!(
            "invalid permissions '{}' (want a combination of r, w and m)",
            String::from_utf8_lossy(perms)
        ));
    }
    Ok(MountSpec {
        source: Source::Device(PathBuf::from(OsStr::from_bytes(host))),
        target: container_path(ctr)?,
        flags: 0,
    })
}

/// `--secret HOST[:CTR]`: CTR absolute, or a name under `/run/secrets` (default: HOST's name).
pub fn secret(v: &[u8]) -> Result<MountSpec, String> {
    let (host, ctr) = match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    if host.first() != Some(&b'/') {
        return Err(format!(
            "the host path '{}' must be absolute",
            String::from_utf8_lossy(host)
        ));
    }
    let source = PathBuf::from(OsStr::from_bytes(host));
    let target = match ctr {
        Some(c) if c.first() == Some(&b'/') => container_path(c)?,
        Some(c) if !c.is_empty() && !c.contains(&b'/') && c != b".." && c != b"." => {
            Path::new("/run/secrets").join(OsStr::from_bytes(c))
        }
        Some(_) => return Err("want HOST[:CTR] with CTR an absolute path or a name".into()),
        None => match source.file_name() {
            Some(n) => Path::new("/run/secrets").join(n),
            None => return Err("the host path names no file".into()),
        },
    };
    Ok(MountSpec {
        source: Source::Bind(source),
        target,
        flags: SECRET,
    })
}

/// A tmpfs size: a number with an optional k, m, g or % suffix (the kernel's syntax).
pub fn tmpfs_size(s: &str) -> bool {
    let digits = match s.as_bytes().last() {
        Some(b'k' | b'K' | b'm' | b'M' | b'g' | b'G' | b'%') => &s[..s.len() - 1],
        _ => s,
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn octal_mode(s: &str) -> bool {
    (1..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// Folds one tmpfs option into `flags` and `data`, as Docker's MergeTmpfsOptions does.
fn tmpfs_option(o: &str, flags: &mut u64, data: &mut Vec<String>) -> Result<(), String> {
    let (set, clear) = match o {
        "ro" => (ns::MS_RDONLY, 0),
        "rw" => (0, ns::MS_RDONLY),
        "exec" => (0, ns::MS_NOEXEC),
        "noexec" => (ns::MS_NOEXEC, 0),
        "suid" => (0, ns::MS_NOSUID),
        "nosuid" => (ns::MS_NOSUID, 0),
        "dev" => (0, ns::MS_NODEV),
        "nodev" => (ns::MS_NODEV, 0),
        _ => {
            let (k, v) = o.split_once('=').unwrap_or((o, ""));
            let ok = match k {
                "size" | "nr_inodes" => tmpfs_size(v) && (k == "size" || !v.ends_with('%')),
                "mode" => octal_mode(v),
                "uid" | "gid" => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
                _ => {
                    return Err(format!(
                        "unknown tmpfs option '{o}' (want ro, rw, [no]exec, [no]suid, [no]dev, \
                         size=, mode=, uid=, gid= or nr_inodes=)"
                    ))
                }
            };
            if !ok {
                return Err(format!("invalid tmpfs option '{o}'"));
            }
            // A later value of the same key replaces the earlier one.
            data.retain(|d| d.split('=').next() != Some(k));
            data.push(o.to_string());
            return Ok(());
        }
    };
    *flags = (*flags | set) & !clear;
    Ok(())
}

/// `--tmpfs PATH[:OPTS]`: Docker's defaults (rw, noexec, nosuid, nodev), OPTS on top.
pub fn tmpfs(v: &[u8]) -> Result<MountSpec, String> {
    let (path, opts) = match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    let target = container_path(path)?;
    let (mut flags, mut data) = (TMPFS_DEFAULT, Vec::new());
    for o in utf8(opts)?.split(',').filter(|o| !o.is_empty()) {
        tmpfs_option(o, &mut flags, &mut data)?;
    }
    Ok(MountSpec {
        source: Source::Tmpfs(data.join(",")),
        target,
        flags,
    })
}

/// Bytes from Docker's `tmpfs-size` (a number with an optional b, k, m, g or t unit, 1024-based).
fn bytes(v: &str) -> Option<u64> {
    let l = v.to_ascii_lowercase();
    let l = l.strip_suffix('b').unwrap_or(&l);
    let (num, unit) = match l.char_indices().last()? {
        (i, c @ ('k' | 'm' | 'g' | 't')) => (&l[..i], c),
        _ => (l, ' '),
    };
    let shift = match unit {
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => 0,
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `--mount type=bind|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`
/// (Docker's keys; text only).
pub fn mount(v: &[u8]) -> Result<MountSpec, String> {
    let (mut kind, mut source, mut target, mut ro) = ("volume", None, None, false);
    let mut data = Vec::new();
    for field in utf8(v)?.split(',').filter(|f| !f.is_empty()) {
        let (k, val) = match field.split_once('=') {
            Some((k, x)) => (k, Some(x)),
            None => (field, None),
        };
        let key = k.to_ascii_lowercase();
        let key = key.as_str();
        if val.is_none() && !matches!(key, "readonly" | "ro") {
            return Err(format!("'{k}' needs a value"));
        }
        let x = val.unwrap_or("true");
        match key {
            "type" if matches!(x, "bind" | "tmpfs" | "volume") => kind = x,
            "type" => {
                return Err(format!(
                    "unknown mount type '{x}' (want bind, tmpfs or volume)"
                ))
            }
            "source" | "src" => source = Some(x),
            "target" | "destination" | "dst" => target = Some(x),
            "readonly" | "ro" => {
                ro = match x {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("invalid value '{x}' for '{k}'")),
                }
            }
            "tmpfs-size" => match bytes(x) {
                Some(n) => data.push(format!("size={n}")),
                None => return Err(format!("invalid tmpfs-size '{x}'")),
            },
            "tmpfs-mode" if octal_mode(x) => data.push(format!("mode={x}")),
            "tmpfs-mode" => return Err(format!("invalid tmpfs-mode '{x}' (want an octal mode)")),
            "consistency" | "bind-recursive" | "volume-nocopy" => {}
            _ => return Err(format!("unknown key '{k}'")),
        }
    }
    let target = container_path(target.ok_or("target is required")?.as_bytes())?;
    let flags = if ro { ns::MS_RDONLY } else { 0 };
    let source = match (kind, source) {
        ("volume", _) if !data.is_empty() => return Err("tmpfs options need type=tmpfs".into()),
        ("volume", s) => {
            let name = match s {
                Some(n) => Some(volume_name(n.as_bytes())?),
                None => None,
            };
            return Ok(MountSpec {
                source: Source::Volume(name),
                target,
                flags,
            });
        }
        ("tmpfs", Some(_)) => return Err("source is not supported for tmpfs mounts".into()),
        ("tmpfs", None) => {
            return Ok(MountSpec {
                source: Source::Tmpfs(data.join(",")),
                target,
                flags: TMPFS_DEFAULT | flags,
            })
        }
        _ if !data.is_empty() => return Err("tmpfs options need type=tmpfs".into()),
        (_, None) => return Err("source is required for a bind mount".into()),
        (_, Some(s)) if !s.starts_with('/') => {
            return Err(format!("the host path '{s}' must be absolute"))
        }
        (_, Some(s)) => s,
    };
    Ok(MountSpec {
        source: Source::Bind(source.into()),
        target,
        flags,
    })
}

/// The user's mounts as steps, before `pivot_root`: parents before children (Docker sorts by
/// depth), each bind checked against what the host has at its source.
pub(super) fn user_mounts(
    root: &Path,
    specs: &[MountSpec],
    facts: &HostFacts,
    steps: &mut Vec<Step>,
) -> Result<(), PlanError> {
    // By depth, flag order within one (a loop, not a sort: the loader stays small).
    let depth = |i: usize| specs[i].target.components().count();
    let deepest = (0..specs.len()).map(depth).max().unwrap_or(0);
    let order: Vec<usize> = (0..=deepest)
        .flat_map(|d| (0..specs.len()).filter(move |&i| depth(i) == d))
        .collect();
    for (n, &i) in order.iter().enumerate() {
        let s = &specs[i];
        if order[..n].iter().any(|&j| specs[j].target == s.target) {
            return Err(PlanError::Mount(format!(
                "duplicate mount point: {}",
                s.target.display()
            )));
        }
        let what = match &s.source {
            Source::Tmpfs(data) => What::Tmpfs(data.clone()),
            Source::VolumeDir(p) => What::Volume(p.clone()),
            Source::Volume(_) => {
                return Err(PlanError::Mount(format!(
                    "volume at {} has no directory",
                    s.target.display()
                )))
            }
            Source::Bind(p) | Source::Device(p) => match facts.mount_sources.get(i) {
                Some(Ok(true)) => What::BindDir(p.clone()),
                Some(Ok(false)) => What::BindFile(p.clone()),
                Some(Err(why)) => {
                    return Err(PlanError::Mount(format!(
                        "cannot bind {} to {}: {why}",
                        p.display(),
                        s.target.display()
                    )))
                }
                None => {
                    return Err(PlanError::Mount(format!(
                        "cannot bind {}: not looked up",
                        p.display()
                    )))
                }
            },
        };
        steps.push(Step::Mount {
            root: root.to_path_buf(),
            target: s.target.clone(),
            what,
            flags: s.flags,
        });
    }
    Ok(())
}
