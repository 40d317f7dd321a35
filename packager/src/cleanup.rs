//! Temporary files that must not outlive the process, even when ^C (SIGINT), SIGTERM or SIGHUP
//! ends it: the output being written and blobs being downloaded. Drop handlers do not run on a
//! signal, so a watcher thread removes every registered path and then dies of the same signal
//! (the shell sees the usual exit status).
//!
//! Renaming a finished file into place happens under the same lock as the removal, so a signal
//! either removes the temporary file or finds it already renamed, never half of each.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

static PATHS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn paths() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    // A panic while holding the lock leaves the set usable.
    PATHS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the watcher once per process (the command line does, before any temporary file).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // Held until the process is gone, so nothing is renamed into place after this.
                let held = paths();
                for p in held.iter() {
                    let _ = std::fs::remove_file(p);
                }
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        });
    });
}

/// A path removed if a signal ends the process while this guard lives.
#[derive(Debug)]
pub struct Registered(PathBuf);

impl Registered {
    pub fn new(path: &Path) -> Registered {
        paths().insert(path.to_path_buf());
        Registered(path.to_path_buf())
    }

    /// Runs `rename` (which moves the file away from this path) with signals' removal held off,
    /// and forgets the path.
    pub fn finish<T>(self, rename: impl FnOnce() -> T) -> T {
        let mut held = paths();
        let out = rename();
        held.remove(&self.0);
        drop(held);
        std::mem::forget(self);
        out
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        paths().remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_register_until_dropped_or_finished() {
        let a = Path::new("/nonexistent/oci2bin-cleanup-a");
        let b = Path::new("/nonexistent/oci2bin-cleanup-b");
        let ga = Registered::new(a);
        let gb = Registered::new(b);
        assert!(paths().contains(a) && paths().contains(b));
        drop(ga);
        assert!(!paths().contains(a));
        assert_eq!(gb.finish(|| 7), 7);
        assert!(!paths().contains(b));
    }
}
