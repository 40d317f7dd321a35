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
    build_once_with(out, |out| {
        let path = crate::workspace().join("tests/fixtures").join(script);
        let o = Command::new("bash")
            .arg(&path)
            .arg(out)
            .env("FIXTURE_CACHE", cache_root())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "fixture {script} failed:\n{}{}",
            crate::text(&o.stdout),
            crate::text(&o.stderr)
        );
    })
}

/// Runs `make(OUT)` under an exclusive lock unless OUT/index.json exists; returns OUT. `make`
/// must write index.json last (the scripts `mv` a finished layout into place).
fn build_once_with(out: PathBuf, make: impl FnOnce(&Path)) -> PathBuf {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(out.with_extension("lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file we own; the lock lives as long as `lock`.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if !out.join("index.json").exists() {
        make(&out);
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

/// OCI layout whose tag `latest` names an image index of two busybox manifests: the
/// [`busybox`] one (`linux/amd64`, same digest) and a copy whose config says `arm64` and
/// `FIXTURE=busybox-arm64` (same layers: the bytes are amd64, only the labels differ, so tests
/// can tell which manifest a client chose). Push it with `skopeo copy --all`.
pub fn busybox_multiarch() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let src = busybox();
        // Named after the busybox manifest it contains, so a rebuilt busybox means a new index.
        let amd64 = tagged(src, "latest")["digest"].as_str().unwrap()[7..19].to_owned();
        let dir = crate::workspace()
            .join("target/e2e-fixtures")
            .join(format!("busybox-multiarch-{VERSION}-{amd64}"));
        build_once_with(dir, |out| write_multiarch(src, out))
    })
}

fn write_multiarch(src: &Path, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    std::fs::copy(src.join("oci-layout"), out.join("oci-layout")).unwrap();
    let put = |v: &serde_json::Value| {
        use sha2::Digest;
        let b = serde_json::to_vec(v).unwrap();
        let hex = hex::encode(sha2::Sha256::digest(&b));
        std::fs::write(out.join("blobs/sha256").join(&hex), &b).unwrap();
        (format!("sha256:{hex}"), b.len())
    };
    let amd64 = tagged(src, "latest");
    let manifest = image_manifest(src, "latest");
    let mut config = blob_json(src, manifest["config"]["digest"].as_str().unwrap());
    config["architecture"] = "arm64".into();
    for e in config["config"]["Env"].as_array_mut().unwrap() {
        if e == "FIXTURE=busybox" {
            *e = "FIXTURE=busybox-arm64".into();
        }
    }
    let (config_digest, config_size) = put(&config);
    let mut arm64 = manifest.clone();
    arm64["config"]["digest"] = config_digest.into();
    arm64["config"]["size"] = config_size.into();
    let (arm64_digest, arm64_size) = put(&arm64);
    let entry = |digest: &serde_json::Value, size: &serde_json::Value, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(&amd64["digest"], &amd64["size"], "amd64"),
            entry(&arm64_digest.into(), &arm64_size.into(), "arm64"),
        ],
    });
    let (index_digest, index_size) = put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(out.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

/// The `index.json` entry of an OCI layout tagged `tag`.
pub fn tagged(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{} has no tag {tag}", layout.display()))
        .clone()
}

/// A JSON blob of an OCI layout by digest.
pub fn blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The image manifest an OCI layout tags `tag` (not an index).
pub fn image_manifest(layout: &Path, tag: &str) -> serde_json::Value {
    blob_json(layout, tagged(layout, tag)["digest"].as_str().unwrap())
}

/// (digest, size) of each layer of the image an OCI layout tags `tag`, base first.
pub fn layers(layout: &Path, tag: &str) -> Vec<(String, u64)> {
    image_manifest(layout, tag)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_owned(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
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

/// OCI layout (tag `latest`) of Debian bookworm with redis-server (and util-linux, iproute2):
/// its command serves redis on port 6379 of every address.
pub fn redis() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        build_once(
            "redis.sh",
            cache_root().join(format!("redis-layout-{VERSION}")),
        )
    })
}

pub fn redis_bin() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| package(redis(), "redis", &[])).1
}

/// The Debian image with one more small layer (gzip: `/opt/second/hello`, its parents
/// described): a second image on the same base, as a rebuild or a derived image is. Blobs are
/// shared with the full layout.
pub fn debian_plus_layer_bin() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| plus_layer(debian(), "debian-plus", &[])).1
}

/// The busybox image with the same one more layer as [`debian_plus_layer_bin`], tagged
/// `busybox-plus:1`: two images sharing both busybox layers.
pub fn busybox_plus_layer_bin() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| plus_layer(busybox(), "busybox-plus", &["--tag", "busybox-plus:1"]))
        .1
}

/// The image of `src` with one more small layer (`/opt/second/hello`), packaged as `name` with
/// `extra` packager flags.
fn plus_layer(src: &Path, name: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = crate::world_tempdir();
    let dst = tmp.path().join("layout");
    copy_layout(src, &dst);
    let l = tmp.path().join("l5");
    std::fs::create_dir_all(l.join("opt/second")).unwrap();
    std::fs::write(l.join("opt/second/hello"), "the second image\n").unwrap();
    append_layer(&dst, &l, "opt", &tmp.path().join("l5.tar"));
    let out = tmp.path().join(name);
    crate::build(&format!("oci:{}:latest", dst.display()), &out, extra);
    (tmp, out)
}

/// Copies the layout `src` to `dst`: blobs linked, `oci-layout` and `index.json` copied.
fn copy_layout(src: &Path, dst: &Path) {
    link_blobs(src, dst);
    for f in ["oci-layout", "index.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

/// Appends `entry` of `dir` (tarred by GNU tar as root-owned, into `tar`) to the layout's
/// `latest` image as a gzip layer.
fn append_layer(layout: &Path, dir: &Path, entry: &str, tar: &Path) {
    run(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(tar)
        .arg(entry));
    run(Command::new("python3")
        .arg(crate::workspace().join("tests/fixtures/add_layer.py"))
        .arg(layout)
        .arg("latest")
        .arg(tar)
        .arg("gzip"));
}

/// A copy of the layout `src` (tag `latest`, blobs linked) with one gzip layer appended per
/// directory in `layers`, each holding that directory's tree as it is (whiteout files included).
pub fn with_layers(src: &Path, layers: &[&Path]) -> (tempfile::TempDir, PathBuf) {
    let tmp = crate::world_tempdir();
    let dst = tmp.path().join("layout");
    copy_layout(src, &dst);
    for (i, l) in layers.iter().enumerate() {
        append_layer(&dst, l, ".", &tmp.path().join(format!("layer{i}.tar")));
    }
    (tmp, dst)
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
        link_blobs(src, &dst);
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

/// A new layout at `dst` whose blobs are symlinks to those of layout `src` (variants of a
/// fixture share its blobs rather than copy them).
fn link_blobs(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.join("blobs/sha256")).unwrap();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dst.join("blobs/sha256").join(e.file_name())).unwrap();
    }
}

/// Runs a fixture-building command; its failure fails the test with its stderr.
fn run(c: &mut Command) {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", crate::text(&o.stderr));
}
