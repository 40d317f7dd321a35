//! The layer store from the outside (issue 15), with real files run as the unprivileged test
//! user: an image's root is the overlay of its layers, each extracted once into the store, and
//! what a container sees is exactly the tree the merged extraction gives (paths, types, modes,
//! owners, sizes, times of files, symlink targets, xattrs, contents) on the busybox and Debian
//! fixtures, single-uid and mapped; a second image on the same base extracts only its own layer;
//! two first starts sharing a base extract it once; kill -9 during extraction publishes nothing
//! that is used later; layers that would stack differently get the merged tree instead.

use e2e::hostile::{layout, RawTar};
use e2e::{fixtures, text, Runner};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The runner for single-uid runs (the range-less test user when there is one).
fn single() -> Runner {
    Runner::for_user("o2btest-norange").unwrap_or_default()
}

/// The store directory of a file's layer `i` (0: the bottom one), single-uid.
fn layer_dir(r: &Runner, file: &Path, i: usize) -> PathBuf {
    let k = loader::cachedir::layer_key(&e2e::layer_refs(file)[i], None);
    r.cache()
        .join("layers")
        .join(loader::cachedir::layer_name(&k))
}

fn key_of(file: &Path) -> String {
    loader::cachedir::key(&e2e::layer_refs(file))
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `tests/fixtures/treelist.c`, built static with musl-gcc, in a world-readable directory.
fn treelist() -> Option<&'static Path> {
    static P: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    P.get_or_init(|| {
        if !e2e::require(e2e::have("musl-gcc"), "musl-gcc (musl-tools) is missing") {
            return None;
        }
        let dir = e2e::world_tempdir();
        let out = dir.path().join("treelist");
        let o = Command::new("musl-gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(e2e::workspace().join("tests/fixtures/treelist.c"))
            .output()
            .unwrap();
        assert!(o.status.success(), "musl-gcc: {}", text(&o.stderr));
        Some((dir, out))
    })
    .as_ref()
    .map(|(_, p)| p.as_path())
}

/// The tree a container of `file` sees, one sorted line per object: run by `r` with `args`
/// (and `OCI2BIN_ROOTFS=merged` when `merged`), the per-run files left out.
fn tree_seen(r: &Runner, file: &Path, args: &[&str], merged: bool, lister: &Path) -> Vec<String> {
    let bind = format!("{}:/treelist:ro", lister.display());
    let mut a = args.to_vec();
    a.extend(["-v", &bind, "/treelist", "/treelist"]);
    // Written for this run alone (their contents and times differ from run to run).
    a.extend([
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/apt/apt.conf.d/00oci2bin-sandbox",
    ]);
    let mut c = r.command(file, &a);
    if merged {
        c.env("OCI2BIN_ROOTFS", "merged");
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{a:?}: {}", text(&o.stderr));
    let mut lines: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn stacked_and_merged_roots_are_the_same_tree_as_the_container_sees_it() {
    if !e2e::runner::userns() {
        return;
    }
    let Some(lister) = treelist() else {
        return;
    };
    let mapped = e2e::require(
        std::fs::read_to_string("/etc/subuid").is_ok_and(|s| s.contains("o2btest:"))
            && e2e::have("newuidmap"),
        "no subordinate range for o2btest: the mapped half is skipped",
    );
    for (file, name) in [
        (fixtures::busybox_bin(), "busybox"),
        (fixtures::debian_bin(), "debian"),
    ] {
        let mut modes = vec![(single(), "--userns=single")];
        if mapped {
            modes.push((Runner::new(), "--userns=auto"));
        }
        for (r, mode) in modes {
            let stacked = tree_seen(&r, file, &[mode], false, lister);
            // The default made a stacked entry (mapped ones have keys of their own); the merged
            // run has a cache of its own.
            let kind = |r: &Runner| -> Vec<String> {
                let e = names(&r.cache().join("rootfs"));
                e.iter().map(|n| n[64..].to_string()).collect()
            };
            assert_eq!(kind(&r), ["-s1"], "{name} {mode}: not stacked");
            let m = Runner::for_user("o2btest-norange")
                .filter(|_| mode == "--userns=single")
                .unwrap_or_default();
            let merged = tree_seen(&m, file, &[mode], true, lister);
            assert_eq!(kind(&m), ["-x2"], "{name} {mode}");
            assert!(stacked.len() > 50, "{name} {mode}: {stacked:?}");
            if stacked != merged {
                let s: BTreeSet<_> = stacked.iter().collect();
                let m: BTreeSet<_> = merged.iter().collect();
                panic!(
                    "{name} {mode}: the trees differ\nonly stacked: {:#?}\nonly merged: {:#?}",
                    s.difference(&m).take(20).collect::<Vec<_>>(),
                    m.difference(&s).take(20).collect::<Vec<_>>()
                );
            }
        }
    }
}

/// Where the kernel reads xattr whiteouts (6.7 and later), that form stacks the same tree too
/// (the probe prefers character devices; a cache whose record says `xattr` gets this form).
#[test]
fn the_xattr_whiteout_form_stacks_the_same_tree_where_the_kernel_has_it() {
    if !e2e::runner::userns() {
        return;
    }
    let Some(lister) = treelist() else {
        return;
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 7) {
        eprintln!(
            "skipped: xattr whiteouts need Linux 6.7 (this is {})",
            release.trim()
        );
        return;
    }
    for file in [fixtures::busybox_bin(), fixtures::debian_bin()] {
        let r = single();
        let cache = r.cache();
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(
            cache.join("overlay-probe"),
            format!("v1 {} xattr\n", release.trim()),
        )
        .unwrap();
        for p in [
            r.home().join(".cache"),
            cache.clone(),
            cache.join("overlay-probe"),
        ] {
            std::os::unix::fs::chown(&p, Some(r.uid()), None).unwrap();
        }
        let stacked = tree_seen(&r, file, &["--userns=single"], false, lister);
        let entries = names(&cache.join("rootfs"));
        assert!(entries.iter().all(|e| e.ends_with("-s1")), "{entries:?}");
        let merged = tree_seen(&single(), file, &["--userns=single"], true, lister);
        assert_eq!(stacked, merged);
    }
}

#[test]
fn the_whiteouts_and_the_opaque_dir_of_the_debian_fixture_hold_in_the_stack() {
    if !e2e::runner::userns() {
        return;
    }
    let r = single();
    let deb = fixtures::debian_bin();
    let out = r.ok(
        deb,
        &[
            "sh",
            "-c",
            "test -e /etc/debian_version || echo whited-out; ls /usr/share/doc; /opt/fixture/hello.sh",
        ],
    );
    assert_eq!(
        out, "whited-out\nREADME.fixture\nhello from layer2\n",
        "{out}"
    );
    assert_eq!(
        names(&r.cache().join("layers")).len(),
        e2e::layer_refs(deb).len()
    );
    // The kernel's answer was recorded once.
    let probe = std::fs::read_to_string(r.cache().join("overlay-probe")).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(probe, format!("v1 {} chardev\n", release.trim()));
}

/// The disk use of the store under `p`, without the marks of layers not flushed yet (a start's
/// background flush takes them away at any moment).
fn du(p: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut BTreeSet<u64>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if p.file_name().is_some_and(|n| n == "unsynced") {
            return 0;
        }
        if !seen.insert(m.ino()) {
            return 0;
        }
        let mut n = m.blocks() * 512;
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                n += walk(&e.path(), seen);
            }
        }
        n
    }
    walk(p, &mut BTreeSet::new())
}

#[test]
fn a_second_image_on_the_same_base_extracts_and_stores_only_its_own_layer() {
    if !e2e::runner::userns() {
        return;
    }
    let r = single();
    let (deb, plus) = (fixtures::debian_bin(), fixtures::debian_plus_layer_bin());
    let t = Instant::now();
    r.ok(deb, &["--userns=single", "true"]);
    let first = t.elapsed();
    let layers = r.cache().join("layers");
    let before = names(&layers);
    let size_before = du(&layers);
    let base_ino = std::fs::metadata(layer_dir(&r, deb, 0).join("tree"))
        .unwrap()
        .ino();
    let t = Instant::now();
    let out = r.ok(plus, &["--userns=single", "cat", "/opt/second/hello"]);
    let second = t.elapsed();
    assert_eq!(out, "the second image\n");
    let after = names(&layers);
    let new: Vec<_> = after.difference(&before).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let top = e2e::layer_refs(plus).len() - 1;
    assert_eq!(layers.join(new[0]), layer_dir(&r, plus, top));
    let base_again = std::fs::metadata(layer_dir(&r, deb, 0).join("tree"))
        .unwrap()
        .ino();
    assert_eq!(base_ino, base_again, "the base was extracted again");
    let growth = du(&layers) - size_before;
    assert_eq!(growth, du(&layer_dir(&r, plus, top)));
    eprintln!(
        "cold start: first image {:.0} ms, second on the same base {:.0} ms ({:.3}x); store \
         growth {} bytes",
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
        second.as_secs_f64() / first.as_secs_f64(),
        growth
    );
    assert!(second < first / 2, "{second:?} vs {first:?}");
}

/// Every staging directory of the layer `key` that appears under `tmp` until `done`.
fn watch_staging(
    tmp: PathBuf,
    key: String,
    done: &std::sync::atomic::AtomicBool,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        for n in names(&tmp) {
            if n.starts_with(&key) {
                seen.insert(n);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    seen
}

#[test]
fn two_first_starts_of_images_sharing_a_base_extract_it_once() {
    if !e2e::runner::userns() {
        return;
    }
    let r = single();
    let (deb, plus) = (fixtures::debian_bin(), fixtures::debian_plus_layer_bin());
    let base = loader::cachedir::layer_key(&e2e::layer_refs(deb)[0], None);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (seen, outs) = std::thread::scope(|s| {
        let w = s.spawn(|| watch_staging(r.cache().join("tmp"), base.clone(), &done));
        let starts: Vec<_> = [(deb, "/opt/fixture/hello.sh"), (plus, "/opt/second/hello")]
            .into_iter()
            .map(|(f, what)| {
                let c = if what.ends_with(".sh") {
                    r.command(f, &["--userns=single", what])
                } else {
                    r.command(f, &["--userns=single", "cat", what])
                };
                (c, f)
            })
            .map(|(mut c, _)| {
                c.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = starts
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (w.join().unwrap(), outs)
    });
    for o in &outs {
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert_eq!(text(&outs[0].stdout), "hello from layer2\n");
    assert_eq!(text(&outs[1].stdout), "the second image\n");
    assert_eq!(
        seen.len(),
        1,
        "the base was extracted {} times: {seen:?}",
        seen.len()
    );
    assert_eq!(
        names(&r.cache().join("layers")).len(),
        e2e::layer_refs(plus).len()
    );
    assert!(names(&r.cache().join("tmp")).is_empty());
}

#[test]
fn kill_9_during_layer_extraction_leaves_nothing_that_is_used_later() {
    if !e2e::runner::userns() {
        return;
    }
    let r = single();
    let deb = fixtures::debian_bin();
    let base = loader::cachedir::layer_key(&e2e::layer_refs(deb)[0], None);
    let tmp = r.cache().join("tmp");
    let mut c = r
        .command(deb, &["--userns=single", "true"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let staging = loop {
        let found = names(&tmp)
            .into_iter()
            .find(|n| n.starts_with(&base))
            .map(|n| tmp.join(n));
        if let Some(s) = found.filter(|s| s.join("tree/usr").exists()) {
            break s;
        }
        assert!(c.try_wait().unwrap().is_none(), "the loader ended first");
        assert!(t.elapsed() < Duration::from_secs(60), "no extraction seen");
        std::thread::sleep(Duration::from_millis(5));
    };
    c.kill().unwrap();
    c.wait().unwrap();
    // Its workers die with it.
    std::thread::sleep(Duration::from_millis(200));
    assert!(staging.exists(), "kill -9 cannot clean up");
    assert!(
        !layer_dir(&r, deb, 0).exists(),
        "a half layer was published"
    );
    assert!(names(&r.cache().join("rootfs")).is_empty());
    // The next start sweeps it and extracts afresh.
    let out = r.ok(deb, &["--userns=single", "/opt/fixture/hello.sh"]);
    assert_eq!(out, "hello from layer2\n");
    assert!(!staging.exists());
    assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
    assert!(layer_dir(&r, deb, 0).join("tree/usr/bin").is_dir());
}

#[test]
fn layers_that_would_stack_differently_get_the_merged_tree_without_a_word() {
    if !e2e::runner::userns() {
        return;
    }
    // A usrmerge-style symlink, then a layer that writes through it without describing the
    // directory: the merged extraction puts the file in /usr/lib.
    let base = RawTar::default()
        .dir("usr/")
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .finish();
    let top = RawTar::default()
        .file("lib/through", b"it went through\n")
        .finish();
    let work = e2e::world_tempdir();
    layout(&work.path().join("layout"), &[(base, true), (top, false)]);
    let bin = work.path().join("through");
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &bin,
        &[],
    );
    let r = single();
    let o = r.run(
        &bin,
        &["--userns=single", "busybox", "cat", "/usr/lib/through"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "it went through\n");
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    assert_eq!(
        names(&r.cache().join("rootfs")),
        [loader::cachedir::entry_name(&key_of(&bin))].into()
    );
    assert_eq!(
        r.ok(&bin, &["--userns=single", "busybox", "readlink", "/lib"]),
        "usr/lib\n"
    );
}

#[test]
fn sixty_layers_stack_past_one_page_of_mount_options_with_their_whiteouts() {
    if !e2e::runner::userns() {
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let v = loader::seccomp::kernel_version(release.trim()).unwrap_or((0, 0));
    if !e2e::require(
        v >= (6, 8),
        "overlayfs takes lowers one by one (lowerdir+) from Linux 6.8",
    ) {
        return;
    }
    // Each layer adds a file; the last ones delete two of the first ones' and make one
    // directory opaque, so the answer depends on every layer being in the stack, in order.
    let mut layers: Vec<(Vec<u8>, bool)> = (1..=57)
        .map(|i| {
            let t = RawTar::default()
                .dir("many/")
                .file(&format!("many/{i:02}"), format!("{i}\n").as_bytes());
            (t.finish(), i % 2 == 0)
        })
        .collect();
    layers.push((RawTar::default().file("many/.wh.01", b"").finish(), true));
    layers.push((RawTar::default().file("many/.wh.57", b"").finish(), false));
    layers.push((
        RawTar::default()
            .dir("many/")
            .file("many/.wh..wh..opq", b"")
            .file("many/only", b"the opaque top\n")
            .finish(),
        true,
    ));
    let work = e2e::world_tempdir();
    layout(&work.path().join("layout"), &layers);
    let bin = work.path().join("sixty");
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &bin,
        &[],
    );
    assert_eq!(e2e::layer_refs(&bin).len(), 61);
    let r = single();
    let ls = ["--userns=single", "busybox", "ls", "/many"];
    // Cold, then warm: both mount the overlay of all 61 layers.
    for _ in 0..2 {
        assert_eq!(r.ok(&bin, &ls), "only\n");
    }
    let entry = r
        .cache()
        .join("rootfs")
        .join(loader::cachedir::stack_name(&key_of(&bin)));
    let list = std::fs::read_to_string(entry.join("layers")).unwrap();
    assert_eq!(list.lines().count(), 61, "{list}");
    let lowerdir: usize = (0..61)
        .map(|i| layer_dir(&r, &bin, i).join("tree").as_os_str().len() + 1)
        .sum();
    assert!(
        lowerdir > 4096,
        "the test must pass one page of options ({lowerdir} bytes)"
    );
    // Without the opaque top: the whiteouts of two layers and the files of the other 55.
    let under = work.path().join("under");
    layers.pop();
    std::fs::remove_dir_all(work.path().join("layout")).unwrap();
    layout(&work.path().join("layout"), &layers);
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &under,
        &[],
    );
    let seen = r.ok(&under, &ls);
    let want: Vec<String> = (2..=56).map(|i| format!("{i:02}")).collect();
    assert_eq!(seen.lines().collect::<Vec<_>>(), want);
    assert!(names(&r.cache().join("rootfs"))
        .iter()
        .all(|n| n.ends_with("-s1")));
}
