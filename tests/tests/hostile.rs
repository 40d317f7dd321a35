//! Hostile input: every malicious or broken layer, and every damaged file, gives a one-line
//! error and a non-zero exit, and writes nothing outside the loader's own cache and temp dirs —
//! checked from outside, as the unprivileged user an attack would run as.

use e2e::hostile::{layout, RawTar};
use e2e::{assert_one_line_error, fixtures, world_tempdir, Runner};
use loader::format::TRAILER_LEN;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A world-writable directory outside every root: any escape would land here.
struct Trap {
    dir: tempfile::TempDir,
}

impl Trap {
    fn new() -> Trap {
        let dir = tempfile::Builder::new()
            .prefix("o2b-trap-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Trap { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Relative form that climbs from any depth up to `/` and down into the trap.
    fn climb(&self) -> String {
        format!(
            "{}{}",
            "../".repeat(30),
            self.path().strip_prefix("/").unwrap().display()
        )
    }
    fn assert_untouched(&self) {
        let left: Vec<PathBuf> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "bytes written outside the root: {left:?}");
    }
}

/// Packages a layout whose top layer is `tar`, runs it as the test user with an empty cache, and
/// checks: exit 125, one-line error mentioning `needle`, the trap untouched, no cache entry and no
/// staging left behind.
fn refused(tar: Vec<u8>, gz: bool, needle: &str, trap: &Trap) {
    let work = world_tempdir();
    layout(&work.path().join("layout"), &[(tar, gz)]);
    let bin = work.path().join("hostile");
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &bin,
        &[],
    );
    let r = Runner::new();
    let o = r.run(&bin, &[]);
    assert_eq!(
        o.status.code(),
        Some(125),
        "stderr: {}",
        e2e::text(&o.stderr)
    );
    assert_one_line_error(&o, needle);
    trap.assert_untouched();
    assert!(
        r.files_under_cache("rootfs").is_empty(),
        "no cache entry for a failed extraction"
    );
    assert!(
        r.files_under_cache("tmp").is_empty(),
        "no half-written staging left"
    );
}

#[test]
fn dotdot_entry() {
    let t = Trap::new();
    refused(
        RawTar::default()
            .file(&format!("{}/pwned", t.climb()), b"x")
            .finish(),
        true,
        "..",
        &t,
    );
}

#[test]
fn absolute_entry() {
    let t = Trap::new();
    let name = format!("{}/pwned", t.path().display());
    refused(
        RawTar::default().file(&name, b"x").finish(),
        false,
        "absolute",
        &t,
    );
}

#[test]
fn symlink_then_write_through_it() {
    let t = Trap::new();
    let tar = RawTar::default()
        .symlink("evil", &t.climb())
        .file("evil/pwned", b"x")
        .finish();
    refused(tar, true, "evil", &t);
}

#[test]
fn hardlink_to_a_path_outside() {
    let t = Trap::new();
    std::fs::write(t.path().join("target"), b"secret").unwrap();
    std::fs::set_permissions(
        t.path().join("target"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let tar = RawTar::default()
        .hardlink("link", &format!("{}/target", t.climb()))
        .finish();
    let work = world_tempdir();
    layout(&work.path().join("layout"), &[(tar, true)]);
    let bin = work.path().join("hostile");
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &bin,
        &[],
    );
    let r = Runner::new();
    let o = r.run(&bin, &[]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "link");
    assert_eq!(std::fs::read(t.path().join("target")).unwrap(), b"secret");
    assert_eq!(std::fs::metadata(t.path().join("target")).unwrap().len(), 6);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(t.path().join("target")).unwrap().nlink(),
        1,
        "no link made"
    );
}

#[test]
fn hardlink_to_an_absolute_path() {
    let t = Trap::new();
    let tar = RawTar::default().hardlink("link", "/etc/passwd").finish();
    refused(tar, false, "link", &t);
}

#[test]
fn symlink_chain_that_climbs_out() {
    let t = Trap::new();
    let tar = RawTar::default()
        .symlink("a", "b")
        .symlink("b", "c")
        .symlink("c", &t.climb())
        .file("a/pwned", b"x")
        .finish();
    refused(tar, true, "a/pwned", &t);
}

#[test]
fn symlink_loop() {
    let t = Trap::new();
    let tar = RawTar::default()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"x")
        .finish();
    refused(tar, true, "a/x", &t);
}

#[test]
fn device_node() {
    let t = Trap::new();
    refused(
        RawTar::default().device("dev/evil").finish(),
        true,
        "device",
        &t,
    );
}

#[test]
fn oversized_pax_header() {
    let t = Trap::new();
    refused(
        RawTar::default().huge_pax(1 << 30).finish(),
        true,
        "too large",
        &t,
    );
}

#[test]
fn oversized_long_name() {
    let t = Trap::new();
    refused(
        RawTar::default().huge_longname(64 << 20).finish(),
        true,
        "too large",
        &t,
    );
}

#[test]
fn truncated_layer_tar() {
    let t = Trap::new();
    let mut tar = RawTar::default().file("big", &[7u8; 5000]).finish();
    tar.truncate(2048);
    refused(tar, true, "truncated", &t);
}

#[test]
fn absolute_symlink_then_write_lands_inside_the_root() {
    if !e2e::runner::userns() {
        return;
    }
    // Docker/containerd semantics: an absolute target means the container's own path.
    let t = Trap::new();
    let tar = RawTar::default()
        .symlink("abs", &t.path().display().to_string())
        .file("abs/inside", b"x")
        .finish();
    let work = world_tempdir();
    layout(&work.path().join("layout"), &[(tar, true)]);
    let bin = work.path().join("ok");
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &bin,
        &[],
    );
    let r = Runner::new();
    let inside = format!("{}/inside", t.path().display());
    assert_eq!(r.ok(&bin, &["/bin/busybox", "cat", &inside]), "x");
    t.assert_untouched();
}

#[test]
fn truncated_file() {
    let work = world_tempdir();
    let f = work.path().join("cut");
    let bytes = std::fs::read(fixtures::busybox_bin()).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 1000]).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = Runner::new();
    let o = r.run(&f, &["true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "trailer");
    assert!(r.files_under_cache("rootfs").is_empty());
}

#[test]
fn flipped_byte_in_a_layer_is_a_digest_mismatch() {
    let work = world_tempdir();
    let f = work.path().join("flipped");
    let mut bytes = std::fs::read(fixtures::busybox_bin()).unwrap();
    let layer = &e2e::layer_refs(fixtures::busybox_bin())[0];
    let at = (layer.offset + layer.size / 2) as usize;
    bytes[at] ^= 0x55;
    std::fs::write(&f, &bytes).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = Runner::new();
    let o = r.run(&f, &["true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "digest");
    assert!(
        r.files_under_cache("rootfs").is_empty(),
        "a tampered layer is never cached"
    );
    assert!(r.files_under_cache("tmp").is_empty());
}

/// A copy of the busybox file with its trailer edited in place by `edit` (given the trailer's
/// 128 bytes and the file length). No hash covers the trailer, so the edit alone is what the
/// loader sees.
fn with_trailer(work: &Path, name: &str, edit: impl FnOnce(&mut [u8], u64)) -> PathBuf {
    let f = work.join(name);
    let mut bytes = std::fs::read(fixtures::busybox_bin()).unwrap();
    let len = bytes.len();
    edit(&mut bytes[len - TRAILER_LEN..], len as u64);
    std::fs::write(&f, &bytes).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Runs a damaged file: exit 125, a one-line error mentioning `needle`, nothing extracted.
fn refused_file(f: &Path, needle: &str) {
    let r = Runner::new();
    let o = r.run(f, &["true"]);
    assert_eq!(
        o.status.code(),
        Some(125),
        "stderr: {}",
        e2e::text(&o.stderr)
    );
    assert_one_line_error(&o, needle);
    assert!(
        r.files_under_cache("rootfs").is_empty(),
        "nothing extracted"
    );
    assert!(r.files_under_cache("tmp").is_empty(), "no staging left");
}

#[test]
fn trailer_with_an_unknown_flag_is_refused() {
    let work = world_tempdir();
    let f = with_trailer(work.path(), "flag", |t, _| t[12] = 4);
    refused_file(
        &f,
        "unknown trailer flags 0x00000004: this file needs a newer oci2bin loader",
    );
}

#[test]
fn trailer_with_nonzero_reserved_bytes_is_refused() {
    let work = world_tempdir();
    let f = with_trailer(work.path(), "reserved", |t, _| t[115] = 0x5a);
    refused_file(&f, "reserved trailer bytes are not zero");
}

#[test]
fn trailer_regions_that_overlap_are_refused_as_such() {
    let work = world_tempdir();
    // The tar archive claims one more block: it now runs into the metadata.
    let f = with_trailer(work.path(), "overlap", |t, _| {
        put_u64(t, 24, get_u64(t, 24) + 512)
    });
    refused_file(&f, "trailer regions overlap: the metadata (offset");
}

#[test]
fn trailer_span_past_the_end_is_outside_the_file() {
    let work = world_tempdir();
    let f = with_trailer(work.path(), "outside", |t, len| {
        put_u64(t, 64, len - 64);
        put_u64(t, 72, 4096);
    });
    refused_file(&f, "trailer points the signature outside the file");
}

#[test]
fn trailer_of_a_newer_minor_still_runs() {
    if !e2e::runner::userns() {
        return;
    }
    let work = world_tempdir();
    let f = with_trailer(work.path(), "minor", |t, _| t[10] = 7);
    let r = Runner::new();
    assert_eq!(r.ok(&f, &["echo", "still runs"]), "still runs\n");
}

#[test]
fn packager_refuses_a_tampered_source_blob_and_writes_nothing() {
    let work = world_tempdir();
    let l = work.path().join("layout");
    layout(
        &l,
        &[(RawTar::default().file("ok", b"fine").finish(), true)],
    );
    // Corrupt the biggest blob (the busybox layer) in place.
    let biggest = std::fs::read_dir(l.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = std::fs::read(&biggest).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&biggest, b).unwrap();
    let out = work.path().join("out");
    let o = e2e::oci2bin_cmd(&[&format!("oci:{}", l.display()), out.to_str().unwrap()]);
    assert_one_line_error(&o, "digest");
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("layout")],
        "no output or temp file left"
    );
}
