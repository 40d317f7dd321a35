//! Gathering [`HostFacts`]: the few host and image facts the plan needs, read once, up front.
//! Kept small for warm-start speed: a handful of small reads and stats.

use crate::patch;
use crate::plan::HostFacts;
use crate::sys::ns;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
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

/// Collects the facts for a run on `rootfs` with per-run tmpfs at `scratch`.
pub fn gather(
    rootfs: PathBuf,
    scratch: PathBuf,
    env_files: Vec<(OsString, Vec<u8>)>,
    hostname: Option<String>,
) -> io::Result<HostFacts> {
    let env = std::env::vars_os().collect();
    let etc = rootfs.join("etc");
    Ok(HostFacts {
        uid: ns::euid(),
        gid: ns::egid(),
        env,
        env_files,
        // `--hostname`, else a random one.
        hostname: match hostname {
            Some(h) => h,
            None => random_hostname()?,
        },
        passwd: read_image_file(&etc.join("passwd")),
        group: read_image_file(&etc.join("group")),
        resolv_conf: fs::read("/etc/resolv.conf").ok(),
        has_apt: fs::symlink_metadata(etc.join("apt")).is_ok_and(|m| m.is_dir()),
        shims: patch::find_shims(&rootfs),
        rootfs,
        scratch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_image_users_but_not_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("rootfs");
        fs::create_dir_all(r.join("etc/apt")).unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc/group", r.join("etc/group")).unwrap();
        let f = gather(r.clone(), d.path().join("s"), vec![], None).unwrap();
        assert_eq!(f.passwd.as_deref(), Some("root:x:0:0::/root:/bin/sh\n"));
        assert_eq!(f.group, None);
        assert!(f.has_apt);
        assert_eq!(f.hostname.len(), 12);
        assert!(f.hostname.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(f.uid, ns::euid());
    }
}
