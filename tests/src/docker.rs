//! The Docker engine as a consumer and an oracle: whether one answers, and loading a file of
//! ours into it (what `docker load < FILE` prints as the loaded tag).

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use crate::{have, require, text};

/// Whether a Docker engine answers `docker info`.
pub fn answers() -> bool {
    have("docker")
        && Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// [`answers`], or skip with a printed reason (a failure under `OCI2BIN_E2E_MUST_WORK=1`).
pub fn required() -> bool {
    require(answers(), "no Docker engine answers `docker info`")
}

/// `docker load < file`; returns a tag of this call's own for the loaded image (the tag the file
/// carries is dropped again), so tests that load the same file at once never take each other's
/// image away: [`remove`] drops only this call's tag. Panics with docker's error otherwise.
pub fn load(file: &Path) -> String {
    static CALLS: Mutex<u32> = Mutex::new(0);
    // One load at a time in this process: another must not untag ours before we tag it anew.
    let mut n = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("docker load < '{}'", file.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker load < {}: {}",
        file.display(),
        text(&o.stderr)
    );
    let loaded = text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("docker load printed no tag: {}", text(&o.stdout)))
        .trim()
        .to_string();
    let own = format!("o2b-e2e-{}-{}:latest", std::process::id(), *n);
    let t = Command::new("docker")
        .args(["tag", &loaded, &own])
        .output()
        .unwrap();
    assert!(t.status.success(), "docker tag: {}", text(&t.stderr));
    remove(&loaded);
    own
}

/// `docker run --rm FLAGS… TAG sh -c SCRIPT`; returns its stdout. Panics with docker's error
/// otherwise.
pub fn run_sh(tag: &str, flags: &[&str], script: &str) -> String {
    let o = Command::new("docker")
        .args(["run", "--rm"])
        .args(flags)
        .args([tag, "sh", "-c", script])
        .output()
        .unwrap();
    assert!(o.status.success(), "docker run: {}", text(&o.stderr));
    text(&o.stdout)
}

/// Removes an image loaded by a test (errors ignored: it may be gone already).
pub fn remove(tag: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
}
