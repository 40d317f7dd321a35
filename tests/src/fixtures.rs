//! Fixture images, built by the scripts in `tests/fixtures/` from Debian packages, once per machine
//! (busybox is rebuilt per target dir in well under a second; the Debian one is cached in
//! `~/.cache/oci2bin-fixtures` because mmdebstrap takes ~30 s).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const VERSION: &str = "v1";

fn cache_root() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/tmp".into());
    std::env::var_os("FIXTURE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/oci2bin-fixtures"))
}

/// Runs `script OUT` under an exclusive lock unless OUT exists; returns OUT.
fn build_once(script: &str, out: PathBuf) -> PathBuf {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(out.with_extension("lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file we own; the lock lives as long as `lock`.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if !out.join("index.json").exists() {
        let path = crate::workspace().join("tests/fixtures").join(script);
        let o = Command::new("bash")
            .arg(&path)
            .arg(&out)
            .env("FIXTURE_CACHE", cache_root())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "fixture {script} failed:\n{}{}",
            crate::text(&o.stdout),
            crate::text(&o.stderr)
        );
    }
    out
}

/// OCI layout (tag `latest`) of a two-layer busybox image; layer 2 whites out /etc/motd.
pub fn busybox() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = crate::workspace().join("target/e2e-fixtures").join(format!("busybox-{VERSION}"));
        build_once("busybox.sh", dir)
    })
}

/// OCI layout (tag `latest`) of a four-layer Debian bookworm image: gzip base, a umoci whiteout of
/// /etc/debian_version, a zstd layer making /usr/share/doc opaque, an uncompressed layer.
pub fn debian() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build_once("debian.sh", cache_root().join(format!("debian-layout-{VERSION}"))))
}

/// Our executable built from a fixture, once per test process.
pub fn busybox_bin() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| package(busybox(), "busybox", &[])).1
}

pub fn debian_bin() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| package(debian(), "debian", &[])).1
}

/// Packages an OCI layout into a fresh world-readable dir.
pub fn package(layout: &Path, name: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = crate::world_tempdir();
    let out = dir.path().join(name);
    crate::build(&format!("oci:{}:latest", layout.display()), &out, extra);
    (dir, out)
}
