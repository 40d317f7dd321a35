//! Fixture images, built by the scripts in `tests/fixtures/` from Debian packages, once per machine
//! (busybox is rebuilt per target dir in well under a second; the Debian one is cached in
//! `~/.cache/oci2bin-fixtures` because mmdebstrap takes ~30 s).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const VERSION: &str = "v3";

fn cache_root() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
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
        let dir = crate::workspace()
            .join("target/e2e-fixtures")
            .join(format!("busybox-{VERSION}"));
        build_once("busybox.sh", dir)
    })
}

/// OCI layout (tag `latest`) of a four-layer Debian bookworm image: gzip base, a umoci whiteout of
/// /etc/debian_version, a zstd layer making /usr/share/doc opaque, an uncompressed layer.
pub fn debian() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        build_once(
            "debian.sh",
            cache_root().join(format!("debian-layout-{VERSION}")),
        )
    })
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

/// The Debian image without its zstd layer, for consumers that cannot read zstd (Docker engines
/// before 23 fail `docker load` on such layers). Blobs are shared with the full layout.
pub fn debian_without_zstd_bin() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| {
        let src = debian();
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("layout");
        std::fs::create_dir_all(dst.join("blobs/sha256")).unwrap();
        for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            std::os::unix::fs::symlink(e.path(), dst.join("blobs/sha256").join(e.file_name()))
                .unwrap();
        }
        std::fs::copy(src.join("oci-layout"), dst.join("oci-layout")).unwrap();
        let blob = |d: &str| std::fs::read(src.join("blobs/sha256").join(&d[7..])).unwrap();
        let put = |b: &[u8]| {
            use sha2::Digest;
            let hex = hex::encode(sha2::Sha256::digest(b));
            let p = dst.join("blobs/sha256").join(&hex);
            let _ = std::fs::remove_file(&p);
            std::fs::write(p, b).unwrap();
            format!("sha256:{hex}")
        };
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
        let entry = &mut index["manifests"][0];
        let mut m: serde_json::Value =
            serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
        let mut c: serde_json::Value =
            serde_json::from_slice(&blob(m["config"]["digest"].as_str().unwrap())).unwrap();
        let layers = m["layers"].as_array().unwrap().clone();
        let diffs = c["rootfs"]["diff_ids"].as_array().unwrap().clone();
        let keep: Vec<usize> = (0..layers.len())
            .filter(|&i| !layers[i]["mediaType"].as_str().unwrap().ends_with("zstd"))
            .collect();
        m["layers"] = keep.iter().map(|&i| layers[i].clone()).collect();
        c["rootfs"]["diff_ids"] = keep.iter().map(|&i| diffs[i].clone()).collect();
        c.as_object_mut().unwrap().remove("history");
        let cb = serde_json::to_vec(&c).unwrap();
        m["config"]["digest"] = put(&cb).into();
        m["config"]["size"] = cb.len().into();
        let mb = serde_json::to_vec(&m).unwrap();
        entry["digest"] = put(&mb).into();
        entry["size"] = mb.len().into();
        std::fs::write(dst.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        let out = package(&dst, "debian-gz", &[]);
        drop(tmp);
        out
    })
    .1
}
