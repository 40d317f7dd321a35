//! Whether this kernel's overlayfs, mounted in a user namespace with `userxattr`, reads the
//! whiteouts and opaque directories of our layer trees, and in which form: tried once per
//! kernel release and cache, and recorded in the cache's `overlay-probe` file.
//!
//! The probe builds two small layers with the extractor's own markers (a 0/0 character device,
//! else a `user.overlay.whiteout` file; an opaque directory), mounts their overlay in a child in
//! new user and mount namespaces, and checks what the child sees: the whited-out file gone from
//! lookups and listings, the opaque directory's lower content hidden, the rest there; and for
//! character devices, one in the lowest layer of a merged directory not listed (what a fix
//! layer relies on: [`super::stackable`]; overlayfs does not look for xattr whiteouts there).

use super::random_suffix;
use crate::cachedir::{PROBE, TMP};
use crate::extract::{self, make_opaque, make_whiteout, Whiteouts};
use crate::stack::escape;
use crate::sys::fs as sys;
use crate::sys::ns;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

/// Version of the probe: bump it when what it checks changes.
const VERSION: &str = "v1";

fn word(r: Option<Whiteouts>) -> &'static str {
    match r {
        Some(Whiteouts::CharDev) => "chardev",
        Some(Whiteouts::Xattr) => "xattr",
        None => "none",
    }
}

/// The recorded result for `release`, if the record is of this version and release.
fn parse(text: &str, release: &str) -> Option<Option<Whiteouts>> {
    let mut f = text.split_whitespace();
    if f.next()? != VERSION || f.next()? != release {
        return None;
    }
    match f.next()? {
        "chardev" => Some(Some(Whiteouts::CharDev)),
        "xattr" => Some(Some(Whiteouts::Xattr)),
        "none" => Some(None),
        _ => None,
    }
}

/// The whiteout form layers in the cache at `root` get, `None` when overlayfs cannot stack them
/// here. `in_userns`: the caller is already in its (mapped) user namespace.
pub(super) fn whiteouts(root: &Path, in_userns: bool) -> Option<Whiteouts> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let record = root.join(PROBE);
    if let Some(r) = fs::read_to_string(&record)
        .ok()
        .and_then(|t| parse(&t, release))
    {
        return r;
    }
    let dir = root.join(TMP).join(format!("probe-{}", random_suffix()));
    let r = run(&dir, in_userns, &[Whiteouts::CharDev, Whiteouts::Xattr]);
    let _ = extract::remove_tree(&dir);
    // Best effort: without a record, the next cold start probes again.
    let tmp = root.join(TMP).join(format!("probe-{}", random_suffix()));
    if fs::write(&tmp, format!("{VERSION} {release} {}\n", word(r))).is_ok()
        && fs::rename(&tmp, &record).is_err()
    {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Tries each of `forms` in the scratch directory `dir` (made here, removed by the caller).
fn run(dir: &Path, in_userns: bool, forms: &[Whiteouts]) -> Option<Whiteouts> {
    let setup = || -> io::Result<()> {
        for d in ["", "l1/d", "l1/o", "l1/w", "l2/d", "l2/o", "l2/w", "mnt"] {
            fs::create_dir_all(dir.join(d))?;
        }
        fs::write(dir.join("l1/d/gone"), "x")?;
        fs::write(dir.join("l1/d/kept"), "x")?;
        fs::write(dir.join("l1/o/hidden"), "x")?;
        fs::write(dir.join("l2/o/new"), "x")?;
        fs::write(dir.join("l1/w/n"), "x")?;
        make_opaque(File::open(dir.join("l2/o"))?.as_fd())
    };
    setup().ok()?;
    let d = File::open(dir.join("l2/d")).ok()?;
    let w = File::open(dir.join("l1/w")).ok()?;
    for &form in forms {
        let _ = fs::remove_file(dir.join("l2/d/gone"));
        let _ = fs::remove_file(dir.join("l1/w/stray"));
        let lowest = form == Whiteouts::CharDev;
        if make_whiteout(form, d.as_fd(), c"gone").is_ok()
            && (!lowest || make_whiteout(form, w.as_fd(), c"stray").is_ok())
            && mounts(dir, in_userns)
        {
            return Some(form);
        }
    }
    None
}

/// Mounts the overlay of `dir/l2` on `dir/l1` in a child and checks what it shows.
fn mounts(dir: &Path, in_userns: bool) -> bool {
    let (uid, gid) = (ns::euid(), ns::egid());
    let pid = match ns::fork() {
        Ok(ns::Forked::Parent(pid)) => pid,
        Ok(ns::Forked::Child) => ns::exit_now(match child(dir, in_userns, uid, gid) {
            Ok(true) => 0,
            _ => 1,
        }),
        Err(_) => return false,
    };
    ns::wait_for(pid).is_ok_and(|e| e == ns::Exit::Code(0))
}

/// The child's side: its own namespaces, the mount, the checks.
fn child(dir: &Path, in_userns: bool, uid: u32, gid: u32) -> io::Result<bool> {
    if in_userns {
        ns::unshare(ns::NEW_NS)?;
    } else {
        ns::unshare(ns::NEW_USER | ns::NEW_NS)?;
        fs::write("/proc/self/setgroups", "deny")?;
        fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
        fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    }
    let mnt = dir.join("mnt");
    let opts = format!(
        "lowerdir={}:{},userxattr",
        escape(&dir.join("l2")),
        escape(&dir.join("l1"))
    );
    ns::mount(
        Some(Path::new("overlay")),
        &mnt,
        Some("overlay"),
        0,
        Some(&opts),
    )?;
    // The one name a directory lists.
    let only = |d: &str, name: &str| -> io::Result<bool> {
        let f = File::open(mnt.join(d))?;
        let n = sys::read_dir(f.as_fd())?;
        Ok(n.len() == 1 && n[0].to_bytes() == name.as_bytes())
    };
    Ok(only("d", "kept")?
        && only("o", "new")?
        && only("w", "n")?
        && fs::symlink_metadata(mnt.join("d/gone")).is_err()
        && fs::symlink_metadata(mnt.join("o/hidden")).is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_for_their_version_and_release_only() {
        assert_eq!(
            parse("v1 6.1.0 chardev\n", "6.1.0"),
            Some(Some(Whiteouts::CharDev))
        );
        assert_eq!(parse("v1 6.8 xattr", "6.8"), Some(Some(Whiteouts::Xattr)));
        assert_eq!(parse("v1 6.8 none", "6.8"), Some(None));
        assert_eq!(parse("v1 6.8 none", "6.9"), None);
        assert_eq!(parse("v0 6.8 chardev", "6.8"), None);
        assert_eq!(parse("v1 6.8 what", "6.8"), None);
        assert_eq!(parse("", "6.8"), None);
        for r in [Some(Whiteouts::CharDev), Some(Whiteouts::Xattr), None] {
            assert_eq!(parse(&format!("v1 k {}", word(r)), "k"), Some(r));
        }
    }

    /// On a kernel with overlayfs in user namespaces (Linux 5.11+) and unprivileged whiteouts
    /// (5.8+), the probe finds the character-device form, and records it.
    #[test]
    fn the_probe_finds_a_form_on_this_kernel_and_records_it() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join(TMP)).unwrap();
        let r = whiteouts(t.path(), false);
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let rec = fs::read_to_string(t.path().join(PROBE)).unwrap();
        assert_eq!(rec, format!("v1 {} {}\n", release.trim(), word(r)));
        assert_eq!(fs::read_dir(t.path().join(TMP)).unwrap().count(), 0);
        if r.is_none() {
            eprintln!("skipped: overlayfs does not stack our layers on this kernel");
            return;
        }
        assert_eq!(r, Some(Whiteouts::CharDev));
        // The xattr form works where the kernel has it (6.7+).
        let d = t.path().join("x");
        let xattr = run(&d, false, &[Whiteouts::Xattr]);
        extract::remove_tree(&d).unwrap();
        let v = crate::seccomp::kernel_version(release.trim()).unwrap_or((0, 0));
        assert_eq!(xattr.is_some(), v >= (6, 7), "kernel {v:?}");
        // Recorded: the second call reads the file.
        fs::write(
            t.path().join(PROBE),
            format!("v1 {} xattr\n", release.trim()),
        )
        .unwrap();
        assert_eq!(whiteouts(t.path(), false), Some(Whiteouts::Xattr));
    }
}
