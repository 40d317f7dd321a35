//! Publishing without waiting for the disk.
//!
//! Later runs trust a published layer or stacked entry without looking inside, so a power loss
//! must not leave one named but with its files empty. A cold start used to flush the file system
//! (syncfs) before each rename that publishes: ~0.4 s of a 2 s cold start of the Debian base.
//! Now the staging directory gets a mark, `unsynced`, holding the boot id (flushed with it, a
//! few bytes), and is published at once; a background process flushes the file system, then
//! takes the marks away. A directory still marked by another boot may have lost data in a crash:
//! it is not used, but moved aside and extracted again. One marked by this boot is whole (its
//! files are in the page cache, whatever the disk holds).
//!
//! Merged entries (a root file system themselves, where an image may well hold `/unsynced`) are
//! still flushed before publishing.

use crate::sys::fs as sys;
use crate::sys::ns;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The mark's name, beside a layer's `tree` and `info` or a stacked entry's `layers`.
const UNSYNCED_C: &CStr = c"unsynced";
pub const UNSYNCED: &str = match UNSYNCED_C.to_str() {
    Ok(s) => s,
    Err(_) => panic!("ASCII"),
};

/// This boot's id (`None` where /proc does not say: then directories are flushed before they
/// are published, as before).
fn boot_id() -> Option<&'static [u8]> {
    static ID: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    ID.get_or_init(|| {
        let id = std::fs::read("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim_ascii().to_vec();
        (id.len() >= 16).then_some(id)
    })
    .as_deref()
}

/// Marks `staging`, about to be published, as not flushed yet; `false` when the boot is unknown
/// (the caller flushes it now). The mark itself reaches the disk before the rename does.
pub fn mark(staging: &Path) -> io::Result<bool> {
    let Some(id) = boot_id() else {
        return Ok(false);
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(staging.join(UNSYNCED))?;
    f.write_all(id)?;
    sys::fsync(f.as_fd())?;
    Ok(true)
}

/// Whether published `dir` is marked by another boot (or its mark cannot be read): its files
/// may not all have reached the disk, so it must not be used.
pub fn stale(dir: &Path) -> bool {
    match std::fs::read(dir.join(UNSYNCED)) {
        Ok(b) => boot_id() != Some(&b[..]),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Flushes the file system of `dirs` (just published with [`mark`]) in the background, then
/// takes their marks away. Forked twice, so nothing of ours waits for it or reaps it by
/// mistake; it holds none of our descriptors (their locks would keep other starts waiting, a
/// pipe's reader would wait for its end). If it dies first, the marks stay: the directories are
/// used for the rest of this boot and extracted again after the next.
pub fn flush_later(dirs: Vec<PathBuf>) {
    if dirs.is_empty() {
        return;
    }
    match ns::fork() {
        Ok(ns::Forked::Parent(pid)) => {
            let _ = ns::wait_for(pid);
        }
        Ok(ns::Forked::Child) => {
            if let Ok(ns::Forked::Child) = ns::fork() {
                ns::close_fds_from(3);
                if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                    for fd in 0..3 {
                        let _ = ns::dup_to(null.as_fd(), fd);
                    }
                }
                let _ = ns::block_signals(&crate::init::supervised_signals());
                let _ = ns::set_cmdline("oci2bin-sync");
                // Opened before the flush: a directory replaced meanwhile keeps its mark.
                let opened: Vec<File> = dirs.iter().filter_map(|d| File::open(d).ok()).collect();
                if let Some(first) = opened.first() {
                    if sys::syncfs(first.as_fd()).is_ok() {
                        for d in &opened {
                            let _ = sys::unlinkat(d.as_fd(), UNSYNCED_C, false);
                        }
                    }
                }
            }
            ns::exit_now(0)
        }
        Err(_) => {}
    }
}

/// Waits (up to 5 s) for a background flush to take `dirs`' marks away.
#[cfg(test)]
pub(super) fn flushed(dirs: &[&Path]) -> bool {
    for _ in 0..500 {
        if dirs.iter().all(|d| !d.join(UNSYNCED).exists()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_of_this_boot_is_fresh_one_of_another_boot_or_unreadable_is_stale() {
        let d = tempfile::tempdir().unwrap();
        assert!(!stale(d.path()), "no mark: flushed");
        assert!(mark(d.path()).unwrap(), "this machine has a boot id");
        assert!(!stale(d.path()), "marked by this boot");
        std::fs::write(
            d.path().join(UNSYNCED),
            b"00000000-0000-0000-0000-000000000000",
        )
        .unwrap();
        assert!(stale(d.path()), "marked by another boot");
        std::fs::write(d.path().join(UNSYNCED), b"").unwrap();
        assert!(stale(d.path()), "a mark cut short by a crash");
    }

    #[test]
    fn the_background_flush_takes_the_marks_away() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for p in [&a, &b] {
            std::fs::create_dir(p).unwrap();
            assert!(mark(p).unwrap());
        }
        flush_later(vec![a.clone(), b.clone()]);
        assert!(flushed(&[&a, &b]), "marks left after 5 s");
    }
}
