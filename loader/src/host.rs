//! Gathering [`HostFacts`]: the few host and image facts the plan needs, read once, up front.
//! Kept small for warm-start speed: a handful of small reads and stats.

use crate::patch;
use crate::plan::mounts::{MountSpec, Source};
use crate::plan::{HostFacts, IdFacts, IdMode};
use crate::stack::{Found, Stack};
use crate::subid;
use crate::sys::ns;
use crate::users;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Reads a regular file of the image without following a symlink at its last component (a link
/// there could point at the host's own file); anything unreadable counts as absent.
fn read_image_file(path: &Path) -> Option<String> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    Some(s)
}

/// A random 12-hex-digit hostname, like Docker's short container id.
pub fn random_hostname() -> io::Result<String> {
    let mut b = [0u8; 6];
    ns::fill_random(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Where `newuidmap`/`newgidmap` may live: `$PATH`, then the usual system directories.
fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What the host offers for a user namespace with a subordinate range: the caller's ids and
/// login name, its /etc/subuid and /etc/subgid ranges, and the setuid helpers. Read before the
/// rootfs is prepared; only called when the run may use a range (not with `--userns single`).
pub fn id_facts() -> IdFacts {
    let (uid, gid) = (ns::euid(), ns::egid());
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = users::passwd_entries(&passwd)
        .find(|e| e.uid == uid)
        .map(|e| e.name.to_string());
    let ranges = |file: &str, id: u32| {
        let text = fs::read_to_string(file).unwrap_or_default();
        subid::ranges(&text, user.as_deref(), id)
    };
    IdFacts {
        subuid: ranges("/etc/subuid", uid),
        // Like shadow's newgidmap: ranges are listed under the user's name (or uid).
        subgid: ranges("/etc/subgid", uid),
        newuidmap: find_helper("newuidmap"),
        newgidmap: find_helper("newgidmap"),
        uid,
        gid,
        user,
    }
}

/// Collects the facts for a run on `rootfs` with per-run tmpfs at `scratch`, in the user
/// namespace `ids` says.
pub fn gather(
    rootfs: Stack,
    scratch: PathBuf,
    env_files: Vec<(OsString, Vec<u8>)>,
    ids: IdMode,
    host_ids: (u32, u32),
    hostname: Option<String>,
    mounts: &[MountSpec],
) -> io::Result<HostFacts> {
    let env = std::env::vars_os().collect();
    // A regular file of the image (through the layers, as the overlay will show it).
    let image_file = |p: &str| match rootfs.lookup(p) {
        Found::NonDir(path, m) if m.is_file() => read_image_file(&path),
        _ => None,
    };
    Ok(HostFacts {
        uid: host_ids.0,
        gid: host_ids.1,
        env,
        env_files,
        // `--hostname`, else a random one.
        hostname: match hostname {
            Some(h) => h,
            None => random_hostname()?,
        },
        passwd: image_file("etc/passwd"),
        group: image_file("etc/group"),
        resolv_conf: fs::read("/etc/resolv.conf").ok(),
        has_apt: rootfs.lookup("etc/apt").is_dir(),
        shims: patch::find_shims(&rootfs),
        plain_dirs: patch::plain_dirs(&rootfs),
        ids,
        rootfs,
        scratch,
        mount_sources: mounts.iter().map(mount_source).collect(),
        security: Default::default(),
        stdin_tty: crate::sys::tty::is_tty(0),
        cgroup_v2_only: fs::read_to_string("/proc/self/cgroup")
            .is_ok_and(|c| c.lines().all(|l| l.starts_with("0::"))),
        upper: Default::default(),
        cgroups: Default::default(),
        peers: Default::default(),
        gateway: fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|r| crate::plan::net::default_gateway(&r)),
    })
}

/// `-p CTR` and `-p IP::CTR`: a free host port for each, the kernel's pick for a socket bound to
/// port 0 of the wildcard address of the family (free there, it is free on every address of
/// it). All are held until every port is chosen, then closed: the helper binds them a moment
/// later, as podman picks its random ports.
pub fn free_ports(flags: &mut crate::args::Flags) -> Result<(), String> {
    if crate::plan::net::published(flags).is_empty() {
        return Ok(());
    }
    let mut held = Vec::new();
    for p in flags.publish.iter_mut().filter(|p| p.host == 0) {
        let v6 = p.ip.as_deref().is_some_and(|ip| ip.contains(':'));
        let (fd, port) = crate::sys::net::bind_any(v6, p.udp)
            .map_err(|e| format!("-p {}: no free host port: {e}", p.ctr))?;
        p.host = port;
        held.push(fd);
    }
    Ok(())
}

/// Whether a mount's host source is a directory, or why it cannot be bound. Only looked at:
/// a missing path is refused, never created (as podman does; Docker would create it).
fn mount_source(m: &MountSpec) -> Result<bool, String> {
    let p = match &m.source {
        Source::Bind(p) => p,
        Source::Device(p) => return device_source(p),
        _ => return Ok(true),
    };
    match fs::metadata(p) {
        Ok(md) => Ok(md.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err("the host path does not exist (it is never created)".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The kernel version, the LSMs and the `--seccomp-profile` file, for [`crate::plan::security`].
pub fn security_facts(
    f: &crate::plan::security::SecurityFlags,
) -> crate::plan::security::SecurityFacts {
    use crate::plan::security::SeccompChoice;
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let selinux = fs::metadata("/sys/fs/selinux/enforce").is_ok();
    crate::plan::security::SecurityFacts {
        kernel: crate::seccomp::kernel_version(release.trim()).unwrap_or((0, 0)),
        apparmor: fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.starts_with(b"Y")),
        selinux,
        selinux_context: selinux
            .then(|| fs::read_to_string("/proc/self/attr/current").ok())
            .flatten()
            .map(|s| s.trim_end_matches(['\0', '\n']).to_string()),
        profile: match &f.seccomp {
            SeccompChoice::File(p) => Some(fs::read(p).map_err(|e| e.to_string())),
            _ => None,
        },
    }
}

/// `--device`: the host path must be a character or block device (`Ok(false)`: bound as a file).
fn device_source(p: &Path) -> Result<bool, String> {
    use std::os::unix::fs::FileTypeExt;
    match fs::metadata(p) {
        Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => Ok(false),
        Ok(_) => Err("not a device node".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("no such device".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_flags(a: &[&str]) -> crate::args::Flags {
        match crate::args::parse(a.iter().copied()).unwrap() {
            crate::args::Parsed::Run(f) => f,
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn free_ports_fill_in_the_ports_left_out_and_keep_the_given_ones() {
        let mut f = run_flags(&[
            "--net=pasta",
            "-p",
            "127.0.0.1::80",
            "-p",
            "81-82/udp",
            "-p",
            "9000:90",
            "sh",
        ]);
        free_ports(&mut f).unwrap();
        let hosts: Vec<u16> = f.publish.iter().map(|p| p.host).collect();
        assert!(hosts[..3].iter().all(|&h| h > 0), "{hosts:?}");
        assert_ne!(hosts[1], hosts[2]);
        assert_eq!(hosts[3], 9000);
        // The port is free: it can be bound on its address.
        std::net::TcpListener::bind(("127.0.0.1", hosts[0])).unwrap();
        // No helper, no forwarding: nothing is chosen.
        let mut f = run_flags(&["--net=host", "-p", "80", "sh"]);
        free_ports(&mut f).unwrap();
        assert_eq!(f.publish[0].host, 0);
    }

    #[test]
    fn reads_image_users_but_not_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("rootfs");
        fs::create_dir_all(r.join("etc/apt")).unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc/group", r.join("etc/group")).unwrap();
        let own = (ns::euid(), ns::egid());
        let f = gather(
            r.clone().into(),
            d.path().join("s"),
            vec![],
            IdMode::Single,
            own,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(f.passwd.as_deref(), Some("root:x:0:0::/root:/bin/sh\n"));
        assert_eq!(f.group, None);
        assert!(f.has_apt);
        assert_eq!(f.hostname.len(), 12);
        assert!(f.hostname.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(f.uid, ns::euid());
    }
}
