//! Extraction specs: real tar bytes (gzip/zstd/none) in a real file, read by offset, unpacked into
//! a temporary root with a sentinel directory beside it that must never change.

use super::resolve::{split_entry, BadPath};
use super::*;
use crate::format::Compression;
use crate::tar::testutil::TarBuilder;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// A temporary directory holding `outer/root` (the extraction root), `outer/sentinel` (must stay
/// untouched) and `layers.bin` (the blobs, read by offset like the real oci2bin file).
pub(crate) struct Fixture {
    pub tmp: tempfile::TempDir,
    pub outer: PathBuf,
    pub root: PathBuf,
    pub sentinel: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("outer");
        let root = outer.join("root");
        let sentinel = outer.join("sentinel");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&sentinel).unwrap();
        std::fs::write(sentinel.join("keep"), b"sentinel").unwrap();
        Fixture {
            tmp,
            outer,
            root,
            sentinel,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    /// Nothing was written outside the root: the sentinel is as it was, and no new names
    /// appeared beside the root or in the temporary directory.
    pub fn assert_contained(&self) {
        assert_eq!(names(&self.outer), set(&["root", "sentinel"]));
        assert_eq!(names(&self.sentinel), set(&["keep"]));
        assert_eq!(
            std::fs::read(self.sentinel.join("keep")).unwrap(),
            b"sentinel"
        );
        let top = names(self.tmp.path());
        assert!(top.is_subset(&set(&["outer", "layers.bin"])), "{top:?}");
    }
}

pub(crate) fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn compress(c: Compression, tar: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

/// Writes the blobs into one file at odd offsets, as the packager lays them out after other data,
/// and describes them as `LayerRef`s.
pub(crate) fn layer_file(path: &Path, blobs: &[(Compression, Vec<u8>)]) -> (File, Vec<LayerRef>) {
    let mut bytes = b"leading bytes that are not a layer".to_vec();
    let mut refs = Vec::new();
    for (c, blob) in blobs {
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(blob);
        bytes.extend_from_slice(b"gap");
        refs.push(LayerRef {
            offset,
            size: blob.len() as u64,
            sha256: Sha256::digest(blob).into(),
            compression: *c,
        });
    }
    std::fs::write(path, &bytes).unwrap();
    (File::open(path).unwrap(), refs)
}

/// Extracts uncompressed tar layers.
fn run(fx: &Fixture, tars: &[Vec<u8>]) -> Result<(), ExtractError> {
    let blobs: Vec<_> = tars
        .iter()
        .map(|t| (Compression::None, t.clone()))
        .collect();
    run_blobs(fx, &blobs)
}

fn run_blobs(fx: &Fixture, blobs: &[(Compression, Vec<u8>)]) -> Result<(), ExtractError> {
    let (file, refs) = layer_file(&fx.tmp.path().join("layers.bin"), blobs);
    extract_layers(&file, &refs, &fx.root)
}

/// Runs hostile layers: the error must be one line, match `want`, and nothing may leave the root.
#[track_caller]
fn refused(fx: &Fixture, tars: &[Vec<u8>], want: &str) -> String {
    let e = run(fx, tars)
        .expect_err("hostile layer was accepted")
        .to_string();
    assert!(!e.contains('\n'), "multi-line error: {e}");
    assert!(e.contains(want), "error {e:?} does not say {want:?}");
    fx.assert_contained();
    e
}

fn read(p: PathBuf) -> String {
    String::from_utf8(std::fs::read(p).unwrap()).unwrap()
}

fn exists(p: PathBuf) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn mode(p: PathBuf) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A file name no test run has used, for checks that nothing appeared in /tmp.
fn unique(tag: &str) -> String {
    let mut b = [0u8; 6];
    sys::getrandom(&mut b).unwrap();
    format!(
        "oci2bin-escape-{tag}-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn layer_name(tars: &[Vec<u8>], i: usize) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(&tars[i])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

// ---------------------------------------------------------------------------------------------
// Layer semantics

#[test]
fn layers_apply_in_order_files_dirs_and_contents() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/os-release", 0o644, b"one\n")
        .file("usr/bin/tool", 0o755, b"#!/bin/sh\n")
        .finish();
    let l2 = TarBuilder::new()
        .file("etc/os-release", 0o600, b"two\n")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(read(fx.path("etc/os-release")), "two\n");
    assert_eq!(mode(fx.path("etc/os-release")), 0o600);
    assert_eq!(mode(fx.path("usr/bin/tool")), 0o755);
    // Implicit parents get 0755; the root keeps the mode the layer gave it.
    assert_eq!(mode(fx.path("usr")), 0o755);
    assert_eq!(mode(fx.root.clone()), 0o755);
    fx.assert_contained();
}

#[test]
fn whiteouts_remove_lower_files_and_whole_dirs_and_never_appear() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .file("etc/a", 0o644, b"a")
        .file("etc/b", 0o644, b"b")
        .dir("var/cache", 0o555)
        .file("var/cache/x/y", 0o444, b"y")
        .finish();
    let l2 = TarBuilder::new()
        .file("etc/.wh.a", 0o644, b"")
        .file("var/.wh.cache", 0o644, b"")
        .file(".wh.not-there", 0o644, b"")
        .file("new/.wh.missing", 0o644, b"")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert!(!exists(fx.path("etc/a")));
    assert_eq!(read(fx.path("etc/b")), "b");
    assert!(!exists(fx.path("var/cache")));
    assert_eq!(names(&fx.path("var")), set(&[]));
    assert_eq!(names(&fx.path("etc")), set(&["b"]));
    assert!(!exists(fx.path(".wh.not-there")));
    assert_eq!(names(&fx.path("new")), set(&[]));
    fx.assert_contained();
}

#[test]
fn whiteout_then_recreate_in_a_later_layer() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new().file("d/f", 0o644, b"1").finish();
    let l2 = TarBuilder::new().file(".wh.d", 0o644, b"").finish();
    let l3 = TarBuilder::new().file("d", 0o644, b"now a file").finish();
    run(&fx, &[l1, l2, l3]).unwrap();
    assert_eq!(read(fx.path("d")), "now a file");
}

#[test]
fn opaque_dir_hides_lower_children_but_keeps_this_layers_entries() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .file("app/old", 0o644, b"old")
        .file("app/sub/lower", 0o644, b"lower")
        .file("app/keepdir/lower", 0o644, b"lower")
        .file("other/file", 0o644, b"untouched")
        .finish();
    // Entries of the same layer survive whether they come before or after the marker, and a
    // directory the layer writes keeps only what the layer put in it.
    let l2 = TarBuilder::new()
        .file("app/before", 0o644, b"before")
        .dir("app/keepdir", 0o755)
        .file("app/keepdir/mine", 0o644, b"mine")
        .file("app/.wh..wh..opq", 0o644, b"")
        .file("app/after", 0o644, b"after")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(names(&fx.path("app")), set(&["after", "before", "keepdir"]));
    assert_eq!(names(&fx.path("app/keepdir")), set(&["mine"]));
    assert_eq!(read(fx.path("other/file")), "untouched");
    fx.assert_contained();
}

#[test]
fn opaque_marker_in_the_first_layer_and_nested_opaques() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .file("a/.wh..wh..opq", 0o644, b"")
        .file("a/x", 0o644, b"x")
        .finish();
    let l2 = TarBuilder::new()
        .file("a/b/.wh..wh..opq", 0o644, b"")
        .file("a/.wh..wh..opq", 0o644, b"")
        .file("a/b/c", 0o644, b"c")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(names(&fx.path("a")), set(&["b"]));
    assert_eq!(names(&fx.path("a/b")), set(&["c"]));
}

#[test]
fn file_replaces_dir_and_dir_replaces_file() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .file("was-dir/child", 0o644, b"c")
        .file("was-file", 0o644, b"f")
        .finish();
    let l2 = TarBuilder::new()
        .file("was-dir", 0o644, b"now a file")
        .dir("was-file", 0o750)
        .file("was-file/inner", 0o644, b"i")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(read(fx.path("was-dir")), "now a file");
    assert_eq!(read(fx.path("was-file/inner")), "i");
    assert_eq!(mode(fx.path("was-file")), 0o750);
}

#[test]
fn dir_over_dir_keeps_children_and_takes_the_new_mode() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .dir("d", 0o700)
        .file("d/kept", 0o644, b"k")
        .finish();
    let l2 = TarBuilder::new().dir("d", 0o751).finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(read(fx.path("d/kept")), "k");
    assert_eq!(mode(fx.path("d")), 0o751);
}

#[test]
fn symlinks_are_created_verbatim_and_never_followed() {
    let fx = Fixture::new();
    let outside = unique("symlink");
    let l1 = TarBuilder::new()
        .symlink("abs", "/etc/passwd")
        .symlink("climb", "../../../../sentinel/keep")
        .symlink("dangling", "no/such/thing")
        .symlink(&outside, &format!("/tmp/{outside}"))
        .finish();
    // Writing a file over a symlink replaces the link; it never writes through it.
    let l2 = TarBuilder::new()
        .file("climb", 0o644, b"replaced")
        .file(&outside, 0o644, b"replaced")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(
        std::fs::read_link(fx.path("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(fx.path("dangling")).unwrap(),
        Path::new("no/such/thing")
    );
    assert_eq!(read(fx.path("climb")), "replaced");
    assert_eq!(read(fx.path(&outside)), "replaced");
    assert!(!exists(Path::new("/tmp").join(&outside)));
    fx.assert_contained();
}

#[test]
fn hardlinks_share_the_inode_and_can_link_a_symlink_itself() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .file("bin/busybox", 0o755, b"ELF")
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("./bin/ls", "./bin/busybox")
        .symlink("out", "../../sentinel/keep")
        .hardlink("out-hard", "out")
        .finish();
    run(&fx, &[l1]).unwrap();
    let ino = |p| std::fs::symlink_metadata(fx.path(p)).unwrap().ino();
    assert_eq!(ino("bin/sh"), ino("bin/busybox"));
    assert_eq!(ino("bin/ls"), ino("bin/busybox"));
    assert_eq!(
        std::fs::symlink_metadata(fx.path("bin/busybox"))
            .unwrap()
            .nlink(),
        3
    );
    // linkat without AT_SYMLINK_FOLLOW: the hardlink is to the symlink, not to what it names.
    assert_eq!(ino("out-hard"), ino("out"));
    assert!(std::fs::symlink_metadata(fx.path("out-hard"))
        .unwrap()
        .file_type()
        .is_symlink());
    fx.assert_contained();
}

#[test]
fn hardlink_over_an_existing_file_replaces_it() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .file("a", 0o644, b"a")
        .file("b", 0o644, b"b")
        .finish();
    let l2 = TarBuilder::new()
        .hardlink("b", "a")
        .hardlink("a", "a")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(read(fx.path("b")), "a");
    assert_eq!(read(fx.path("a")), "a");
}

#[test]
fn fifos_are_made_with_their_mode() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .raw("run/pipe", b'6', 0o620, "", b"")
        .finish();
    run(&fx, &[l1]).unwrap();
    let m = std::fs::symlink_metadata(fx.path("run/pipe")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(m.file_type().is_fifo());
    assert_eq!(m.permissions().mode() & 0o7777, 0o620);
}

#[test]
fn files_get_their_exact_modes_whether_or_not_the_umask_would_cut_them() {
    let fx = Fixture::new();
    let modes = [
        0o644, 0o755, 0o666, 0o777, 0o664, 0o000, 0o444, 0o2755, 0o1755, 0o6711,
    ];
    let mut b = TarBuilder::new();
    for m in modes {
        b.file(&format!("f{m:o}"), m, b"x");
    }
    run(&fx, &[b.finish()]).unwrap();
    for m in modes {
        assert_eq!(mode(fx.path(&format!("f{m:o}"))), m, "{m:o}");
    }
    remove_tree(&fx.root).unwrap();
}

#[test]
fn modes_keep_setuid_sticky_and_readonly_dirs_are_filled_before_their_mode_applies() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new()
        .dir("ro", 0o555)
        .dir("locked", 0o000)
        .dir("tmp", 0o1777)
        .file("bin/su", 0o4755, b"su")
        .file("secret", 0o000, b"s")
        .finish();
    // A later layer writes into the 0555 and 0000 dirs and replaces the 0000 file.
    let l2 = TarBuilder::new()
        .file("ro/later", 0o644, b"later")
        .file("locked/inner", 0o600, b"in")
        .file("secret", 0o400, b"new")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(mode(fx.path("ro")), 0o555);
    assert_eq!(mode(fx.path("locked")), 0o000);
    assert_eq!(mode(fx.path("tmp")), 0o1777);
    assert_eq!(mode(fx.path("bin/su")), 0o4755);
    assert_eq!(mode(fx.path("secret")), 0o400);
    assert_eq!(read(fx.path("ro/later")), "later");
    assert_eq!(read(fx.path("secret")), "new");
    remove_tree(&fx.root).unwrap();
    assert!(!exists(fx.root.clone()));
}

#[test]
fn mtimes_are_kept_for_files_dirs_and_symlinks() {
    let fx = Fixture::new();
    let mut b = TarBuilder::new();
    b.raw_mtime("d", b'5', 0o755, "", b"", 1_000_000_000);
    b.raw_mtime("d/f", b'0', 0o644, "", b"x", 1_100_000_000);
    b.raw_mtime("d/l", b'2', 0o777, "f", b"", 1_200_000_000);
    b.pax(&[("mtime", "1300000000.5")]);
    b.raw_mtime("d/p", b'0', 0o644, "", b"", 0);
    run(&fx, &[b.finish()]).unwrap();
    let m = |p| std::fs::symlink_metadata(fx.path(p)).unwrap();
    // The directory's own mtime survives the files created in it afterwards.
    assert_eq!(m("d").mtime(), 1_000_000_000);
    assert_eq!(m("d/f").mtime(), 1_100_000_000);
    assert_eq!(m("d/l").mtime(), 1_200_000_000);
    assert_eq!(
        (m("d/p").mtime(), m("d/p").mtime_nsec()),
        (1_300_000_000, 500_000_000)
    );
}

#[test]
fn pax_and_gnu_long_names_extract() {
    let fx = Fixture::new();
    let pax_name = format!("{}/pax-file", "p".repeat(120));
    let gnu_name = format!("{}/gnu-file", "g".repeat(130));
    let gnu_link = format!("{}/gnu-link", "g".repeat(130));
    let l1 = TarBuilder::new()
        .pax(&[("path", &pax_name)])
        .file("ignored-short-name", 0o644, b"pax")
        .gnu_long(b'L', &gnu_name)
        .file("ignored", 0o644, b"gnu")
        .gnu_long(b'L', &gnu_link)
        .gnu_long(b'K', &gnu_name)
        .hardlink("ignored2", "ignored")
        .finish();
    run(&fx, &[l1]).unwrap();
    assert_eq!(read(fx.path(&pax_name)), "pax");
    assert_eq!(read(fx.path(&gnu_name)), "gnu");
    assert_eq!(read(fx.path(&gnu_link)), "gnu");
    assert!(!exists(fx.path("ignored-short-name")));
}

#[test]
fn gzip_zstd_and_plain_layers_with_digests() {
    let fx = Fixture::new();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let l1 = TarBuilder::new().file("gz/big", 0o644, &big).finish();
    let l2 = TarBuilder::new()
        .file("zst/big", 0o644, &big)
        .file("zst/small", 0o644, b"z")
        .finish();
    let l3 = TarBuilder::new().file("plain", 0o644, b"p").finish();
    // A multi-member gzip stream (pigz/`cat a.gz b.gz` style) and a multi-frame zstd stream
    // with a skippable frame.
    let l4 = TarBuilder::new()
        .file("multi/a", 0o644, b"a")
        .file("multi/b", 0o644, b"b")
        .finish();
    let (h, t) = l4.split_at(1024);
    let mut gz2 = compress(Compression::Gzip, h);
    gz2.extend(compress(Compression::Gzip, t));
    let mut zst2 = compress(Compression::Zstd, h);
    zst2.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
    zst2.extend(compress(Compression::Zstd, t));
    let blobs = vec![
        (Compression::Gzip, compress(Compression::Gzip, &l1)),
        (Compression::Zstd, compress(Compression::Zstd, &l2)),
        (Compression::None, l3),
        (Compression::Gzip, gz2),
        (Compression::Zstd, zst2),
    ];
    run_blobs(&fx, &blobs).unwrap();
    assert_eq!(std::fs::read(fx.path("gz/big")).unwrap(), big);
    assert_eq!(std::fs::read(fx.path("zst/big")).unwrap(), big);
    assert_eq!(read(fx.path("zst/small")), "z");
    assert_eq!(read(fx.path("plain")), "p");
    assert_eq!(read(fx.path("multi/b")), "b");
    fx.assert_contained();
}

#[test]
fn gzip_layer_of_two_members_split_inside_a_file_extracts_fully() {
    let fx = Fixture::new();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let tar = TarBuilder::new()
        .file("one", 0o644, &big)
        .file("two", 0o600, b"after the split")
        .finish();
    // The member boundary falls in the middle of the first file's data.
    let (h, t) = tar.split_at(100_001);
    let mut gz = compress(Compression::Gzip, h);
    gz.extend(compress(Compression::Gzip, t));
    run_blobs(&fx, &[(Compression::Gzip, gz)]).unwrap();
    assert_eq!(std::fs::read(fx.path("one")).unwrap(), big);
    assert_eq!(read(fx.path("two")), "after the split");
    assert_eq!(mode(fx.path("two")), 0o600);
    fx.assert_contained();
}

#[test]
fn bad_gzip_framing_is_a_one_line_error_naming_the_layer() {
    let tar = TarBuilder::new().file("a", 0o644, b"a").finish();
    let gz = compress(Compression::Gzip, &tar);
    let mut bad_size = gz.clone();
    let n = bad_size.len();
    bad_size[n - 1] ^= 1;
    let mut bad_method = gz.clone();
    bad_method[2] = 9;
    let mut garbage_after = gz;
    garbage_after.extend_from_slice(b"trailing junk bytes");
    for (blob, want) in [
        (bad_size, "gzip: gzip member size mismatch"),
        (bad_method, "gzip: unsupported gzip compression method 9"),
        (garbage_after, "gzip: not a gzip stream"),
    ] {
        // The digest matches the bad blob: the framing check itself must catch it.
        let fx = Fixture::new();
        let e = run_blobs(&fx, &[(Compression::Gzip, blob.clone())])
            .unwrap_err()
            .to_string();
        let id = format!(
            "sha256:{}",
            Sha256::digest(&blob)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert!(!e.contains('\n'), "multi-line error: {e}");
        assert!(e.starts_with(&format!("layer {id}: ")), "{e}");
        assert!(e.ends_with(want), "error {e:?} does not say {want:?}");
        fx.assert_contained();
    }
}

#[test]
fn symlinked_parents_resolve_inside_the_root() {
    let fx = Fixture::new();
    let outside = unique("abs");
    let l1 = TarBuilder::new()
        .dir("real", 0o755)
        .symlink("rel", "real")
        .symlink("abs", "/real")
        .symlink("up", "real/../real/./")
        .symlink("evil", "/tmp")
        .finish();
    let l2 = TarBuilder::new()
        .file("rel/one", 0o644, b"1")
        .file("abs/two", 0o644, b"2")
        .file("up/three", 0o644, b"3")
        // Absolute symlink then write: lands inside the root, at root/tmp/…, never in /tmp.
        .file(&format!("evil/{outside}/pwned"), 0o644, b"inside")
        .finish();
    run(&fx, &[l1, l2]).unwrap();
    assert_eq!(names(&fx.path("real")), set(&["one", "three", "two"]));
    // The absolute target was re-rooted: root/tmp/…, never the host's /tmp.
    assert_eq!(read(fx.path(&format!("tmp/{outside}/pwned"))), "inside");
    assert!(!exists(Path::new("/tmp").join(&outside)));
    fx.assert_contained();
}

#[test]
fn replacing_a_symlinked_parent_redirects_later_entries() {
    // The same raw parent path must follow the new link, not a cached directory fd.
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .dir("one", 0o755)
        .dir("two", 0o755)
        .symlink("link", "one")
        .file("link/a", 0o644, b"a")
        .symlink("link", "two")
        .file("link/b", 0o644, b"b")
        .finish();
    run(&fx, &[l]).unwrap();
    assert_eq!(names(&fx.path("one")), set(&["a"]));
    assert_eq!(names(&fx.path("two")), set(&["b"]));
}

#[test]
fn symlink_chains_up_to_the_limit_resolve() {
    let fx = Fixture::new();
    let mut b = TarBuilder::new();
    b.dir("end", 0o755);
    b.symlink("s0", "end");
    for i in 1..40 {
        b.symlink(&format!("s{i}"), &format!("s{}", i - 1));
    }
    b.file("s39/file", 0o644, b"deep");
    run(&fx, &[b.finish()]).unwrap();
    assert_eq!(read(fx.path("end/file")), "deep");
}

#[test]
fn remove_tree_copes_with_unwritable_dirs_and_missing_paths() {
    let fx = Fixture::new();
    let t = fx.path("t");
    std::fs::create_dir_all(t.join("a/b")).unwrap();
    std::fs::write(t.join("a/b/f"), b"x").unwrap();
    std::fs::set_permissions(t.join("a/b"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(t.join("a"), std::fs::Permissions::from_mode(0o555)).unwrap();
    remove_tree(&t).unwrap();
    assert!(!exists(t.clone()));
    remove_tree(&t).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Hostile layers: each must fail with a one-line error and leave everything outside the root as
// it was.

#[test]
fn dotdot_entry_is_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new().file("../escaped", 0o644, b"x").finish();
    let e = refused(
        &fx,
        std::slice::from_ref(&l),
        "entry ../escaped climbs out of the root with ..",
    );
    assert_eq!(
        e,
        format!(
            "layer {}: entry ../escaped climbs out of the root with ..",
            layer_name(&[l], 0)
        )
    );
    let l = TarBuilder::new()
        .file("a/../../escaped", 0o644, b"x")
        .finish();
    refused(&fx, &[l], "climbs out of the root with ..");
}

#[test]
fn absolute_entry_is_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new().file("/etc/x", 0o644, b"x").finish();
    refused(&fx, &[l], "entry /etc/x has an absolute path");
    let l = TarBuilder::new()
        .pax(&[("path", "/etc/y")])
        .file("harmless", 0o644, b"x")
        .finish();
    refused(&fx, &[l], "entry /etc/y has an absolute path");
}

#[test]
fn symlink_climbing_out_then_write_is_refused() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new().symlink("a", "../../..").finish();
    let l2 = TarBuilder::new()
        .file("a/sentinel/keep", 0o644, b"overwritten")
        .finish();
    refused(
        &fx,
        &[l1.clone(), l2],
        "entry a/sentinel/keep escapes the root through symlink a",
    );
    // Same layer, and nested: b/c -> ../../.. met below a real directory.
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .dir("b", 0o755)
        .symlink("b/c", "../../sentinel")
        .file("b/c/keep", 0o644, b"overwritten")
        .finish();
    refused(
        &fx,
        &[l],
        "entry b/c/keep escapes the root through symlink b/c",
    );
}

#[test]
fn absolute_symlink_with_dotdot_past_the_root_is_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .symlink("a", "/../sentinel")
        .file("a/keep", 0o644, b"x")
        .finish();
    refused(&fx, &[l], "escapes the root through symlink a");
}

#[test]
fn whiteout_and_opaque_through_an_escaping_symlink_are_refused() {
    let fx = Fixture::new();
    let l1 = TarBuilder::new().symlink("esc", "../sentinel").finish();
    let l2 = TarBuilder::new().file("esc/.wh.keep", 0o644, b"").finish();
    refused(
        &fx,
        &[l1.clone(), l2],
        "entry esc/.wh.keep escapes the root through symlink esc",
    );
    let fx = Fixture::new();
    let l2 = TarBuilder::new()
        .file("esc/.wh..wh..opq", 0o644, b"")
        .finish();
    refused(&fx, &[l1, l2], "escapes the root through symlink esc");
    let fx = Fixture::new();
    let l = TarBuilder::new().file(".wh...", 0o644, b"").finish();
    refused(&fx, &[l], "entry .wh... is not a valid whiteout");
}

#[test]
fn hardlink_to_outside_is_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new().hardlink("h", "../sentinel/keep").finish();
    refused(
        &fx,
        &[l],
        "hardlink h -> ../sentinel/keep: target climbs out of the root with ..",
    );
    let l = TarBuilder::new().hardlink("h", "/etc/passwd").finish();
    refused(
        &fx,
        &[l],
        "hardlink h -> /etc/passwd: target has an absolute path",
    );
    let l = TarBuilder::new()
        .symlink("esc", "../sentinel")
        .hardlink("h", "esc/keep")
        .finish();
    refused(
        &fx,
        &[l],
        "hardlink h -> esc/keep: target escapes the root through symlink esc",
    );
    let l = TarBuilder::new().hardlink("h", "missing").finish();
    refused(&fx, &[l], "hardlink h -> missing: target does not exist");
    let l = TarBuilder::new()
        .dir("d", 0o755)
        .hardlink("h", "d")
        .finish();
    refused(&fx, &[l], "hardlink h -> d: target is a directory");
}

#[test]
fn symlink_loops_and_over_long_chains_are_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", 0o644, b"")
        .finish();
    refused(
        &fx,
        &[l],
        "entry a/x: too many levels of symbolic links (more than 40)",
    );
    let mut b = TarBuilder::new();
    b.dir("end", 0o755).symlink("s0", "end");
    for i in 1..=40 {
        b.symlink(&format!("s{i}"), &format!("s{}", i - 1));
    }
    b.file("s40/file", 0o644, b"");
    refused(&fx, &[b.finish()], "too many levels of symbolic links");
    let l = TarBuilder::new()
        .symlink("self", "self/x")
        .file("self/y", 0o644, b"")
        .finish();
    refused(&fx, &[l], "too many levels of symbolic links");
}

#[test]
fn device_nodes_are_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .raw("dev/null", b'3', 0o666, "", b"")
        .finish();
    let e = refused(
        &fx,
        &[l],
        "device node dev/null not allowed (rootless extraction)",
    );
    assert!(e.starts_with("layer sha256:"));
    let l = TarBuilder::new()
        .raw("dev/sda", b'4', 0o660, "", b"")
        .finish();
    refused(&fx, &[l], "device node dev/sda not allowed");
    assert!(!exists(fx.path("dev/null")));
}

#[test]
fn oversized_pax_header_and_long_name_are_refused() {
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .claim("PaxHeaders/x", b'x', 1 << 30)
        .finish();
    refused(
        &fx,
        &[l],
        "tar header for pax extended header PaxHeaders/x too large",
    );
    let l = TarBuilder::new()
        .claim("././@LongLink", b'L', 2 << 20)
        .finish();
    refused(
        &fx,
        &[l],
        "tar header for gnu long name ././@LongLink too large",
    );
}

#[test]
fn truncated_tar_gzip_and_zstd_are_refused() {
    let fx = Fixture::new();
    let tar = TarBuilder::new()
        .file("a", 0o644, &[5u8; 5000])
        .file("b", 0o644, b"b")
        .finish();
    refused(&fx, &[tar[..3000].to_vec()], "truncated tar");
    refused(&fx, &[tar[..tar.len() - 1024].to_vec()], "truncated tar");
    for c in [Compression::Gzip, Compression::Zstd] {
        let z = compress(c, &tar);
        // Cut inside the compressed data, and inside the gzip trailer / last zstd block.
        for cut in [z.len() / 2, z.len() - 6] {
            let fx = Fixture::new();
            let e = run_blobs(&fx, &[(c, z[..cut].to_vec())])
                .unwrap_err()
                .to_string();
            assert!(!e.contains('\n'));
            let name = if c == Compression::Gzip {
                "gzip"
            } else {
                "zstd"
            };
            let want = format!("{name}: stream ends early (truncated)");
            assert!(e.starts_with("layer sha256:") && e.ends_with(&want), "{e}");
            fx.assert_contained();
        }
    }
}

#[test]
fn digest_mismatch_is_refused() {
    let fx = Fixture::new();
    let tar = TarBuilder::new().file("a", 0o644, b"a").finish();
    let z = compress(Compression::Gzip, &tar);
    let (file, mut refs) = layer_file(
        &fx.tmp.path().join("layers.bin"),
        &[(Compression::Gzip, z.clone())],
    );
    // Flip one byte of the blob in the file: the stored digest no longer matches.
    drop(file);
    let mut bytes = std::fs::read(fx.tmp.path().join("layers.bin")).unwrap();
    bytes[refs[0].offset as usize + z.len() - 3] ^= 0x40;
    std::fs::write(fx.tmp.path().join("layers.bin"), &bytes).unwrap();
    let file = File::open(fx.tmp.path().join("layers.bin")).unwrap();
    let id = layer_id(&refs[0]);
    let e = extract_layers(&file, &refs, &fx.root)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("layer {id} digest mismatch: file corrupt or tampered")
    );
    // A wrong size (blob shorter than recorded) is a mismatch too.
    refs[0].size += 1;
    let e = extract_layers(&file, &refs, &fx.root)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("digest mismatch: file corrupt or tampered"),
        "{e}"
    );
    fx.assert_contained();
}

#[test]
fn parent_that_is_a_file_is_an_error() {
    let fx = Fixture::new();
    let l = TarBuilder::new()
        .file("f", 0o644, b"")
        .file("f/x", 0o644, b"")
        .finish();
    refused(&fx, &[l], "entry f/x: f is not a directory");
}

#[test]
fn too_deep_entries_are_refused() {
    let fx = Fixture::new();
    let deep = "d/".repeat(MAX_DEPTH + 1) + "f";
    let l = TarBuilder::new()
        .pax(&[("path", &deep)])
        .file("x", 0o644, b"")
        .finish();
    refused(&fx, &[l], "is nested deeper than 512 directories");
}

#[test]
fn split_entry_normalises_and_refuses() {
    assert_eq!(
        split_entry(b"./a//b/./c/").unwrap(),
        vec![&b"a"[..], b"b", b"c"]
    );
    assert!(split_entry(b"./").unwrap().is_empty());
    assert_eq!(split_entry(b"/a"), Err(BadPath::Absolute));
    assert_eq!(split_entry(b"a/.."), Err(BadPath::DotDot));
    assert_eq!(split_entry(b"a/..b").unwrap(), vec![&b"a"[..], b"..b"]);
}

#[test]
fn walk_fallback_without_openat2_gives_the_same_results() {
    // The component walk must stand on its own where openat2 is missing (kernels < 5.6, seccomp).
    let fx = Fixture::new();
    let mut x = Extractor::new(&fx.root).unwrap();
    x.use_openat2 = false;
    let l = TarBuilder::new()
        .dir("real", 0o555)
        .symlink("abs", "/real")
        .file("abs/f", 0o644, b"f")
        .file("real/sub/g", 0o644, b"g")
        .finish();
    x.apply_tar("l1", &l[..]).unwrap();
    let bad = TarBuilder::new()
        .symlink("esc", "../..")
        .file("esc/x", 0o644, b"")
        .finish();
    let e = x.apply_tar("l2", &bad[..]).unwrap_err().to_string();
    assert_eq!(
        e,
        "layer l2: entry esc/x escapes the root through symlink esc"
    );
    x.finish().unwrap();
    assert_eq!(read(fx.path("real/f")), "f");
    assert_eq!(read(fx.path("real/sub/g")), "g");
    assert_eq!(mode(fx.path("real")), 0o555);
    fx.assert_contained();
}

/// R7: with owners (a mapped run extracts as root of its namespace), each object gets the
/// layer's uid/gid, a setuid bit survives the chown, and `user.*` xattrs land while `trusted.*`
/// ones are left out. Needs the right to chown: runs for real as root, else only the parse.
#[test]
fn with_owners_files_get_the_layers_uid_gid_setuid_and_user_xattrs() {
    let fx = Fixture::new();
    let mut t = TarBuilder::new();
    t.pax(&[("uid", "1234"), ("gid", "2345")]).dir("d", 0o750);
    t.pax(&[
        ("uid", "42"),
        ("gid", "0"),
        ("SCHILY.xattr.user.note", "hi"),
        ("SCHILY.xattr.trusted.x", "no"),
    ])
    .file("d/suid", 0o4755, b"x");
    t.symlink("link", "d/suid");
    let tar = t.finish();
    // The parse: owners and xattrs reach the entry.
    let mut r = crate::tar::Reader::new(&tar[..]);
    let d = r.next_entry().unwrap().unwrap();
    assert_eq!((d.uid, d.gid), (1234, 2345));
    let f = r.next_entry().unwrap().unwrap();
    assert_eq!((f.uid, f.gid, f.mode), (42, 0, 0o4755));
    assert_eq!(f.xattrs[0], (b"user.note".to_vec(), b"hi".to_vec()));
    if crate::sys::fs::geteuid() != 0 {
        eprintln!("skipped the extraction part: chown needs root (or a mapped namespace)");
        return;
    }
    let mut x = Extractor::new(&fx.root).unwrap().with_owners(true);
    x.apply_tar("owners", &tar[..]).unwrap();
    x.finish().unwrap();
    let m = std::fs::metadata(fx.root.join("d")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 2345, 0o750));
    let m = std::fs::metadata(fx.root.join("d/suid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (42, 0, 0o4755));
    let l = std::fs::symlink_metadata(fx.root.join("link")).unwrap();
    assert_eq!(l.uid(), 0);
    // xattrs: user.note set (where the file system supports user xattrs), trusted.x not.
    let out = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(fx.root.join("d/suid"))
        .output();
    if let Ok(o) = out {
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(!s.contains("trusted.x"), "{s}");
        if o.status.success() && !s.is_empty() {
            assert!(s.contains("user.note=\"hi\""), "{s}");
        }
    }
}
