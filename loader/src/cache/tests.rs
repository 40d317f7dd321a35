//! Cache specs: real layer files, real directories, real locks, threads and processes.

use super::*;
use crate::extract::tests::{compress, layer_file, names};
use crate::format::{Compression, LayerRef};
use crate::stack::Found;
use crate::tar::testutil::TarBuilder;
use std::collections::BTreeSet;
use std::io::{BufRead, Read};
use std::process::Command;
use std::sync::{Arc, Barrier};

struct Env {
    tmp: tempfile::TempDir,
    /// Stacked entries ([`Locations::layers`]); most specs here are of merged ones.
    layers: bool,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("private")).unwrap();
        Env { tmp, layers: false }
    }
    fn layered() -> Env {
        Env {
            layers: true,
            ..Env::new()
        }
    }
    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache/oci2bin")
    }
    fn loc(&self) -> Locations {
        Locations {
            cache: Some(self.cache()),
            tmp: self.tmp.path().join("private"),
            layers: self.layers,
        }
    }
    /// An image of `files` files in one gzip layer, written to `name`.
    fn image(&self, name: &str, files: usize) -> (File, Runtime) {
        let mut b = TarBuilder::new();
        b.dir("etc", 0o555);
        for i in 0..files {
            b.file(
                &format!("usr/share/f{i}"),
                0o644,
                format!("file {i}").as_bytes(),
            );
        }
        b.file("etc/hostname", 0o644, b"cached\n");
        let blob = compress(Compression::Gzip, &b.finish());
        let (file, layers) = layer_file(&self.tmp.path().join(name), &[(Compression::Gzip, blob)]);
        (file, runtime(layers))
    }

    /// An image of one gzip layer per entry of `layers` (the names of their files, each in
    /// its own directory under usr/share, all described), written to `name`.
    fn stacked_image(&self, name: &str, layers: &[(&str, usize)]) -> (File, Runtime) {
        let blobs: Vec<_> = layers
            .iter()
            .map(|(dir, files)| {
                let mut b = TarBuilder::new();
                b.dir("etc", 0o755)
                    .dir("usr", 0o755)
                    .dir("usr/share", 0o755);
                b.dir(&format!("usr/share/{dir}"), 0o755);
                for i in 0..*files {
                    b.file(&format!("usr/share/{dir}/f{i}"), 0o644, b"x");
                }
                b.file("etc/hostname", 0o644, format!("{dir}\n").as_bytes());
                (Compression::Gzip, compress(Compression::Gzip, &b.finish()))
            })
            .collect();
        let (file, layers) = layer_file(&self.tmp.path().join(name), &blobs);
        (file, runtime(layers))
    }
}

fn runtime(layers: Vec<LayerRef>) -> Runtime {
    Runtime {
        image_id: format!("sha256:{}", "ab".repeat(32)),
        layers,
        ..Runtime::default()
    }
}

fn entry_names(env: &Env) -> BTreeSet<String> {
    names(&env.cache().join("rootfs"))
}

/// Where the cache entry of `rt` lives.
fn entry_of(env: &Env, rt: &Runtime) -> PathBuf {
    env.cache()
        .join("rootfs")
        .join(cachedir::entry_name(&cachedir::key(&rt.layers)))
}

fn same(a: &Prepared, b: &Prepared) -> bool {
    (&a.rootfs, &a.scratch, &a.cleanup) == (&b.rootfs, &b.scratch, &b.cleanup)
}

#[test]
fn first_prepare_extracts_and_publishes_later_ones_reuse_the_entry() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 3);
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    let want = entry_of(&env, &rt);
    assert!(want.to_str().unwrap().ends_with("-x2"), "{want:?}");
    assert_eq!(p.rootfs.top(), want);
    assert_eq!(p.scratch, env.cache().join("mnt"));
    assert_eq!(p.cleanup, None);
    assert_eq!(
        std::fs::read(p.rootfs.top().join("etc/hostname")).unwrap(),
        b"cached\n"
    );
    assert!(names(&p.scratch).is_empty());
    assert!(names(&env.cache().join("tmp")).is_empty());
    // The warm path does not extract again: a marker left in the entry is still there.
    std::fs::write(p.rootfs.top().join("marker"), b"").unwrap();
    let again = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert!(same(&again, &p));
    assert!(p.rootfs.top().join("marker").exists());
}

#[test]
fn failed_extraction_publishes_nothing_and_leaves_no_staging_tree() {
    let env = Env::new();
    let (exe, mut rt) = env.image("img", 50);
    rt.layers[0].sha256[0] ^= 1;
    let e = prepare_at(&env.loc(), &exe, &rt).unwrap_err().to_string();
    assert!(
        e.ends_with("digest mismatch: file corrupt or tampered"),
        "{e}"
    );
    assert!(entry_names(&env).is_empty());
    assert!(names(&env.cache().join("tmp")).is_empty());
    // A later run with a good file extracts afresh.
    rt.layers[0].sha256[0] ^= 1;
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert_eq!(
        std::fs::read(p.rootfs.top().join("etc/hostname")).unwrap(),
        b"cached\n"
    );
}

#[test]
fn hostile_layer_in_the_cache_path_leaves_nothing_behind() {
    let env = Env::new();
    let tar = TarBuilder::new()
        .dir("ro", 0o555)
        .file("ro/f", 0o444, b"")
        .file("../x", 0o644, b"")
        .finish();
    let (exe, layers) = layer_file(&env.tmp.path().join("img"), &[(Compression::None, tar)]);
    let e = prepare_at(&env.loc(), &exe, &runtime(layers))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("entry ../x climbs out of the root with .."),
        "{e}"
    );
    assert!(entry_names(&env).is_empty());
    assert!(names(&env.cache().join("tmp")).is_empty());
    assert!(!env.cache().join("x").exists());
}

#[test]
fn parallel_first_starts_in_threads_make_one_entry_and_all_succeed() {
    let env = Arc::new(Env::new());
    let (_, rt) = env.image("img", 400);
    let rt = Arc::new(rt);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (env, rt, barrier) = (env.clone(), rt.clone(), barrier.clone());
            std::thread::spawn(move || {
                let exe = File::open(env.tmp.path().join("img")).unwrap();
                barrier.wait();
                prepare_at(&env.loc(), &exe, &rt).unwrap()
            })
        })
        .collect();
    let results: Vec<Prepared> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|p| same(p, &results[0])));
    assert_eq!(entry_names(&env).len(), 1);
    assert!(names(&env.cache().join("tmp")).is_empty());
    assert_eq!(names(&results[0].rootfs.top().join("usr/share")).len(), 400);
}

/// Not a spec by itself: the body of one process in the multi-process test below.
#[test]
fn child_process_prepare() {
    let Some(dir) = std::env::var_os("OCI2BIN_TEST_CACHE_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let loc = Locations {
        cache: Some(dir.join("cache/oci2bin")),
        tmp: dir.join("private"),
        layers: false,
    };
    let exe = File::open(dir.join("img")).unwrap();
    let bytes = std::fs::read(dir.join("rt")).unwrap();
    let rt = Runtime::decode(&bytes).unwrap();
    let p = prepare_at(&loc, &exe, &rt).unwrap();
    assert!(p.rootfs.top().join("etc/hostname").exists());
    println!("PREPARED {}", p.rootfs.top().display());
}

#[test]
fn parallel_first_starts_in_processes_make_one_entry_and_all_succeed() {
    let env = Env::new();
    let (_, rt) = env.image("img", 400);
    std::fs::write(env.tmp.path().join("rt"), rt.encode()).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "cache::tests::child_process_prepare",
                    "--nocapture",
                ])
                .env("OCI2BIN_TEST_CACHE_CHILD", env.tmp.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let prepared: Vec<&str> = outs
        .iter()
        .filter_map(|o| o.lines().find_map(|l| l.strip_prefix("PREPARED ")))
        .collect();
    assert_eq!(prepared.len(), 3, "{outs:?}");
    assert!(prepared.iter().all(|p| *p == prepared[0]));
    assert_eq!(entry_names(&env).len(), 1);
    assert!(names(&env.cache().join("tmp")).is_empty());
}

#[test]
fn a_waiting_start_uses_the_entry_the_lock_holder_published() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 1);
    let hex = cachedir::key(&rt.layers);
    for d in ["rootfs", "tmp", "locks", "mnt"] {
        std::fs::create_dir_all(env.cache().join(d)).unwrap();
    }
    let lock = File::create(env.cache().join("locks").join(format!("{hex}.lock"))).unwrap();
    assert!(sys::flock(lock.as_fd(), true, false).unwrap());
    let loc = env.loc();
    let rt2 = rt.clone();
    let waiter = std::thread::spawn(move || prepare_at(&loc, &exe, &rt2).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "prepare did not wait for the lock");
    // Publish an entry as the holder would, then let go.
    let entry = entry_of(&env, &rt);
    let staged = env.cache().join("tmp").join(format!("{hex}-holder"));
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("from-holder"), b"").unwrap();
    std::fs::rename(&staged, &entry).unwrap();
    drop(lock);
    let p = waiter.join().unwrap();
    assert_eq!(p.rootfs.top(), entry);
    assert!(
        entry.join("from-holder").exists(),
        "the waiter extracted again"
    );
}

#[test]
fn stale_staging_trees_are_cleaned_but_live_ones_kept() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 1);
    let tmp = env.cache().join("tmp");
    let locks = env.cache().join("locks");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&locks).unwrap();
    let mine = tmp.join(format!("{}-crashed", cachedir::key(&rt.layers)));
    std::fs::create_dir_all(mine.join("ro/deep")).unwrap();
    std::fs::set_permissions(mine.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let (dead, live) = ("cd".repeat(32), "ef".repeat(32));
    std::fs::create_dir(tmp.join(format!("{dead}-x"))).unwrap();
    File::create(locks.join(format!("{dead}.lock"))).unwrap();
    std::fs::create_dir(tmp.join(format!("{live}-x"))).unwrap();
    let held = File::create(locks.join(format!("{live}.lock"))).unwrap();
    assert!(sys::flock(held.as_fd(), true, false).unwrap());
    std::fs::create_dir(tmp.join("unknown-fresh")).unwrap();
    prepare_at(&env.loc(), &exe, &rt).unwrap();
    let left = names(&tmp);
    let want: BTreeSet<String> = [format!("{live}-x"), "unknown-fresh".to_string()].into();
    assert_eq!(left, want);
}

#[test]
fn unusable_cache_root_falls_back_to_a_private_extraction() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 2);
    // The cache path lies under a regular file: nothing can be created there, even by root.
    std::fs::write(env.tmp.path().join("cache"), b"not a directory").unwrap();
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    let dir = p.cleanup.clone().expect("a private extraction to clean up");
    assert_eq!(dir.parent().unwrap(), env.tmp.path().join("private"));
    assert_eq!(p.rootfs.top(), dir.join("rootfs"));
    assert_eq!(p.scratch, dir.join("mnt"));
    assert_eq!(
        std::fs::read(p.rootfs.top().join("etc/hostname")).unwrap(),
        b"cached\n"
    );
    extract::remove_tree(&dir).unwrap();
    assert!(names(&env.tmp.path().join("private")).is_empty());
}

#[test]
fn no_cache_location_falls_back_and_a_failed_private_extraction_is_removed() {
    let env = Env::new();
    let (exe, mut rt) = env.image("img", 2);
    let loc = Locations {
        cache: None,
        tmp: env.tmp.path().join("private"),
        layers: false,
    };
    let p = prepare_at(&loc, &exe, &rt).unwrap();
    assert!(p.cleanup.is_some());
    extract::remove_tree(p.cleanup.as_ref().unwrap()).unwrap();
    rt.layers[0].sha256[5] ^= 1;
    assert!(prepare_at(&loc, &exe, &rt).is_err());
    assert!(names(&env.tmp.path().join("private")).is_empty());
}

#[test]
fn image_ids_must_be_sha256_hex() {
    let env = Env::new();
    let (exe, mut rt) = env.image("img", 0);
    rt.image_id = "sha256:../../etc".into();
    let e = prepare_at(&env.loc(), &exe, &rt).unwrap_err().to_string();
    assert_eq!(e, "image id \"sha256:../../etc\" is not a sha256 digest");
}

#[test]
fn locations_follow_xdg_then_home_then_tmpdir() {
    let vars = |xdg: Option<&str>, home: Option<&str>, tmp: Option<&str>| {
        Locations::from_vars(|k| match k {
            "XDG_CACHE_HOME" => xdg.map(Into::into),
            "HOME" => home.map(Into::into),
            "TMPDIR" => tmp.map(Into::into),
            _ => None,
        })
    };
    let l = vars(Some("/x"), Some("/h"), None);
    assert!(l.layers, "stacked entries unless OCI2BIN_ROOTFS=merged");
    assert_eq!(l.cache, Some(PathBuf::from("/x/oci2bin")));
    assert_eq!(l.tmp, PathBuf::from("/tmp"));
    let l = vars(Some("relative"), Some("/h"), Some("/t"));
    assert_eq!(l.cache, Some(PathBuf::from("/h/.cache/oci2bin")));
    assert_eq!(l.tmp, PathBuf::from("/t"));
    assert_eq!(vars(None, None, None).cache, None);
    let merged = Locations::from_vars(|k| (k == "OCI2BIN_ROOTFS").then(|| "merged".into()));
    assert!(!merged.layers);
}

use std::os::unix::fs::PermissionsExt;

/// Tests that need another owner than ours: chown works only as root (the tests run as root in
/// CI); elsewhere they skip with the reason.
fn as_root(what: &str) -> bool {
    if sys::geteuid() == 0 {
        return true;
    }
    eprintln!("SKIP: {what}: needs root to chown to another uid");
    false
}

const OTHER_UID: u32 = 4242;

#[test]
fn a_config_only_edit_reuses_the_tree_and_the_meta_file_names_both_images() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 3);
    let first = prepare_at(&env.loc(), &exe, &rt).unwrap();
    std::fs::write(first.rootfs.top().join("marker"), b"").unwrap();
    let edited = Runtime {
        image_id: format!("sha256:{}", "cd".repeat(32)),
        name: "edited:1".into(),
        env: vec!["X=1".into()],
        ..rt.clone()
    };
    let second = prepare_at(&env.loc(), &exe, &edited).unwrap();
    assert_eq!(second.rootfs, first.rootfs);
    assert!(
        second.rootfs.top().join("marker").exists(),
        "extracted again"
    );
    assert_eq!(entry_names(&env).len(), 1);
    // A third run of the first image adds no line.
    drop(prepare_at(&env.loc(), &exe, &rt).unwrap());
    let meta = env
        .cache()
        .join("meta")
        .join(cachedir::entry_name(&cachedir::key(&rt.layers)));
    let text = std::fs::read_to_string(meta).unwrap();
    assert_eq!(
        text,
        format!("{} \n{} edited:1\n", rt.image_id, edited.image_id)
    );
}

#[test]
fn a_run_holds_the_meta_lock_shared_until_prepared_is_dropped() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 1);
    drop(prepare_at(&env.loc(), &exe, &rt).unwrap());
    let meta_path = env
        .cache()
        .join("meta")
        .join(cachedir::entry_name(&cachedir::key(&rt.layers)));
    // The last use is the meta file's mtime: make it old, then a warm run renews it.
    let old = File::options().write(true).open(&meta_path).unwrap();
    sys::futimens(old.as_fd(), 1_000_000, 0).unwrap();
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    let mtime = std::fs::metadata(&meta_path).unwrap().mtime();
    assert!(mtime > 1_700_000_000, "last use not renewed: {mtime}");
    let probe = File::open(&meta_path).unwrap();
    assert!(
        !sys::flock(probe.as_fd(), true, true).unwrap(),
        "`cache rm` could take the entry of a running container"
    );
    assert!(
        sys::flock(probe.as_fd(), false, true).unwrap(),
        "runs share it"
    );
    sys::flock(probe.as_fd(), false, false).unwrap();
    drop(probe);
    drop(p);
    let probe = File::open(&meta_path).unwrap();
    assert!(sys::flock(probe.as_fd(), true, true).unwrap());
}

#[test]
fn a_symlinked_entry_is_reported_and_never_followed() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 2);
    let target = env.tmp.path().join("elsewhere");
    std::fs::create_dir_all(target.join("etc")).unwrap();
    std::fs::write(target.join("etc/hostname"), b"planted\n").unwrap();
    let entry = entry_of(&env, &rt);
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, &entry).unwrap();
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    let dir = p.cleanup.clone().expect("a private extraction");
    assert_eq!(
        std::fs::read(p.rootfs.top().join("etc/hostname")).unwrap(),
        b"cached\n"
    );
    assert!(std::fs::symlink_metadata(&entry).unwrap().is_symlink());
    assert_eq!(names(&target), ["etc".to_string()].into());
    assert_eq!(
        std::fs::read(target.join("etc/hostname")).unwrap(),
        b"planted\n"
    );
    // The warning names the entry, what is wrong and the fix.
    let key = cachedir::key(&rt.layers);
    match Cache::new(&env.cache(), &key).entry_state() {
        EntryState::Bad(why) => {
            assert!(why.contains(entry.to_str().unwrap()), "{why}");
            assert!(why.contains("is a symlink; not used"), "{why}");
            assert!(why.contains(&format!("oci2bin cache rm {key}")), "{why}");
        }
        _ => panic!("a symlink entry counts as usable"),
    }
    drop(p);
    extract::remove_tree(&dir).unwrap();
}

#[test]
fn an_entry_owned_by_another_uid_is_not_used() {
    if !as_root("foreign-owned entry") {
        return;
    }
    let env = Env::new();
    let (exe, rt) = env.image("img", 2);
    let entry = drop_rootfs(prepare_at(&env.loc(), &exe, &rt).unwrap());
    std::fs::write(entry.join("marker"), b"").unwrap();
    std::os::unix::fs::chown(&entry, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert!(
        p.cleanup.is_some(),
        "used an entry owned by uid {OTHER_UID}"
    );
    assert!(!p.rootfs.top().join("marker").exists());
    let key = cachedir::key(&rt.layers);
    match Cache::new(&env.cache(), &key).entry_state() {
        EntryState::Bad(why) => assert!(
            why.contains(&format!("is owned by uid {OTHER_UID}, not you; not used")),
            "{why}"
        ),
        _ => panic!("a foreign entry counts as usable"),
    }
    assert!(
        entry.join("marker").exists(),
        "the foreign entry was touched"
    );
    extract::remove_tree(p.cleanup.as_ref().unwrap()).unwrap();
}

fn drop_rootfs(p: Prepared) -> PathBuf {
    p.rootfs.top().to_path_buf()
}

#[test]
fn a_cache_of_another_user_gets_nothing_written_into_it() {
    if !as_root("cache of another user") {
        return;
    }
    let env = Env::new();
    let (exe, rt) = env.image("img", 2);
    // Not created yet, inside another user's home: nothing may be created there.
    let home = env.tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let loc = Locations {
        cache: Some(home.join(".cache/oci2bin")),
        tmp: env.tmp.path().join("private"),
        layers: false,
    };
    let p = prepare_at(&loc, &exe, &rt).unwrap();
    assert!(p.cleanup.is_some());
    assert!(names(&home).is_empty(), "{:?}", names(&home));
    extract::remove_tree(p.cleanup.as_ref().unwrap()).unwrap();
    // Existing and theirs (with a usable-looking entry in it): not used, not written.
    let theirs = env.cache();
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert!(p.cleanup.is_some());
    assert!(names(&theirs).is_empty(), "{:?}", names(&theirs));
    assert_eq!(
        check_root(&theirs, 0).unwrap_err(),
        format!(
            "cache {} belongs to uid {OTHER_UID}; not writing into another user's cache",
            theirs.display()
        )
    );
    extract::remove_tree(p.cleanup.as_ref().unwrap()).unwrap();
    // A meta/ dir of theirs inside a root of ours: the warm path does not trust it either.
    std::os::unix::fs::chown(&theirs, Some(0), Some(0)).unwrap();
    drop(prepare_at(&env.loc(), &exe, &rt).unwrap());
    std::os::unix::fs::chown(theirs.join("meta"), Some(OTHER_UID), None).unwrap();
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert!(p.cleanup.is_some());
    extract::remove_tree(p.cleanup.as_ref().unwrap()).unwrap();
}

#[test]
fn the_cache_root_rule_accepts_own_and_sticky_ancestors_only() {
    let env = Env::new();
    let me = sys::geteuid();
    let d = env.tmp.path().join("a");
    std::fs::create_dir(&d).unwrap();
    // Missing levels are skipped up to the nearest existing directory.
    assert_eq!(check_root(&d.join("b/c/oci2bin"), me), Ok(()));
    let err = check_root(&d.join("b/oci2bin"), me + 1).unwrap_err();
    assert!(
        err.ends_with(&format!(
            "which belongs to uid {me}; not writing into another user's cache"
        )),
        "{err}"
    );
}

/// Not a spec by itself: holds an exclusive flock on $OCI2BIN_TEST_HOLD_LOCK until stdin closes.
#[test]
fn child_hold_lock() {
    let Some(path) = std::env::var_os("OCI2BIN_TEST_HOLD_LOCK") else {
        return;
    };
    let f = File::open(path).unwrap();
    assert!(sys::flock(f.as_fd(), true, true).unwrap());
    println!("LOCKED");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A child process of this test binary that holds `path` locked until its stdin is closed.
struct LockHolder {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    // Kept open: the child's test harness writes after the lock line.
    _out: std::io::BufReader<std::process::ChildStdout>,
}

impl LockHolder {
    fn release(mut self) {
        drop(self.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

fn hold_lock_in_child(path: &Path) -> LockHolder {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cache::tests::child_hold_lock", "--nocapture"])
        .env("OCI2BIN_TEST_HOLD_LOCK", path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = c.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("LOCKED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child did not lock");
    }
    LockHolder {
        child: c,
        stdin: Some(stdin),
        _out: out,
    }
}

#[test]
fn stale_private_dirs_are_swept_but_live_and_foreign_ones_kept() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 1);
    let private_tmp = env.tmp.path().join("private");
    let mk = |name: &str, lock: bool| {
        let d = private_tmp.join(name);
        std::fs::create_dir_all(d.join("rootfs/ro")).unwrap();
        std::fs::set_permissions(d.join("rootfs/ro"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        if lock {
            File::create(d.join(".lock")).unwrap();
        }
        d
    };
    mk("oci2bin-dead-1", true);
    let live = mk("oci2bin-live-1", true);
    let holder = hold_lock_in_child(&live.join(".lock"));
    mk("oci2bin-young-nolock", false);
    let old = mk("oci2bin-old-nolock", false);
    let f = File::open(&old).unwrap();
    sys::futimens(f.as_fd(), 1_000_000, 0).unwrap();
    mk("unrelated-dir", true);
    let mut want: BTreeSet<String> = ["oci2bin-live-1", "oci2bin-young-nolock", "unrelated-dir"]
        .map(String::from)
        .into();
    if sys::geteuid() == 0 {
        let foreign = mk("oci2bin-foreign-1", true);
        std::os::unix::fs::chown(&foreign, Some(OTHER_UID), None).unwrap();
        want.insert("oci2bin-foreign-1".into());
    } else {
        eprintln!("SKIP (part): dirs of other users need root to make");
    }
    // The sweep runs on cold paths only: a private run here (no cache location).
    let loc = Locations {
        cache: None,
        tmp: private_tmp.clone(),
        layers: false,
    };
    let p = prepare_at(&loc, &exe, &rt).unwrap();
    let ours = p.cleanup.as_ref().unwrap().file_name().unwrap();
    let mut left = names(&private_tmp);
    assert!(left.remove(ours.to_str().unwrap()));
    assert_eq!(left, want);
    // A second cold start does not sweep the first one while it runs.
    let q = prepare_at(&loc, &exe, &rt).unwrap();
    assert!(p.rootfs.top().join("etc/hostname").exists());
    drop(q);
    holder.release();
    // Its lock released, the live one goes at the next cold start; so does the dropped `q`.
    drop(prepare_at(&loc, &exe, &rt).unwrap());
    assert!(!live.exists());
    assert!(p.rootfs.top().join("etc/hostname").exists());
}

/// Not a spec by itself: runs a prepare in $OCI2BIN_TEST_INTERRUPT_CHILD that gets SIGINT as
/// soon as extraction has begun, then checks what is left and raises SIGINT again.
#[test]
fn child_interrupted_prepare() {
    let Some(dir) = std::env::var_os("OCI2BIN_TEST_INTERRUPT_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let private_tmp = dir.join("private");
    let cache = dir.join("cache/oci2bin");
    let mode = std::env::var("OCI2BIN_TEST_MODE").unwrap();
    let loc = Locations {
        cache: (mode != "private").then(|| cache.clone()),
        tmp: private_tmp.clone(),
        layers: mode == "layers",
    };
    let exe = File::open(dir.join("img")).unwrap();
    let rt = Runtime::decode(&std::fs::read(dir.join("rt")).unwrap()).unwrap();
    // Watches for the first extracted file, then signals.
    let watch = [cache.join("tmp"), private_tmp.clone()];
    std::thread::spawn(move || loop {
        let started = watch.iter().any(|d| {
            std::fs::read_dir(d).is_ok_and(|mut rd| {
                rd.any(|e| {
                    let p = e.unwrap().path();
                    p.join("usr/share/f1").exists()
                        || p.join("rootfs/usr/share/f1").exists()
                        || p.join("tree/usr/share/a/f1").exists()
                })
            })
        });
        if started {
            sig::raise(libc::SIGINT).unwrap();
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    });
    match prepare_at(&loc, &exe, &rt) {
        Err(CacheError::Interrupted(s)) => println!("INTERRUPTED {s}"),
        Err(e) => println!("FAILED {e}"),
        Ok(_) => println!("COMPLETED"),
    }
    let left = |d: &Path| std::fs::read_dir(d).map_or(0, |rd| rd.count());
    println!(
        "LEFT staging={} entries={} private={} layers={}",
        left(&cache.join("tmp")),
        left(&cache.join("rootfs")),
        left(&private_tmp),
        left(&cache.join("layers"))
    );
    // The default disposition is back: this kills the process.
    sig::raise(libc::SIGINT).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    println!("SURVIVED");
}

#[test]
fn a_stop_signal_during_extraction_removes_the_partial_tree_and_reports_it() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    // Enough files that extraction is still running when the watcher's signal lands.
    let (_, rt) = env.image("img", 20_000);
    std::fs::write(env.tmp.path().join("rt"), rt.encode()).unwrap();
    let layered = Env::new();
    let (_, rt) = layered.stacked_image("img", &[("a", 20_000), ("b", 20_000), ("c", 5)]);
    std::fs::write(layered.tmp.path().join("rt"), rt.encode()).unwrap();
    for (env, mode) in [(&env, "cache"), (&env, "private"), (&layered, "layers")] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cache::tests::child_interrupted_prepare",
                "--nocapture",
            ])
            .env("OCI2BIN_TEST_INTERRUPT_CHILD", env.tmp.path())
            .env("OCI2BIN_TEST_MODE", mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("INTERRUPTED 2"), "{mode}: {stdout}");
        assert!(
            stdout.contains("LEFT staging=0 entries=0 private=0 layers=0"),
            "{mode}: {stdout}"
        );
        assert_eq!(out.status.signal(), Some(libc::SIGINT), "{mode}: {stdout}");
    }
}

/// The layers of a stacked entry, bottom first, as their directories' names.
fn layer_names(env: &Env) -> BTreeSet<String> {
    names(&env.cache().join("layers"))
}

#[test]
fn a_stacked_entry_shares_its_layers_with_every_image_that_has_them() {
    let env = Env::layered();
    let (a, rt_a) = env.stacked_image("a", &[("base", 50), ("a", 3)]);
    let (b, rt_b) = env.stacked_image("b", &[("base", 50), ("b", 3)]);
    assert_eq!(rt_a.layers[0].sha256, rt_b.layers[0].sha256);
    let p = prepare_at(&env.loc(), &a, &rt_a).unwrap();
    assert_eq!(p.rootfs.dirs().len(), 2, "{:?}", p.rootfs);
    assert!(p
        .rootfs
        .dirs()
        .iter()
        .all(|d| d.starts_with(env.cache().join("layers"))));
    let key = cachedir::key(&rt_a.layers);
    assert_eq!(entry_names(&env), [cachedir::stack_name(&key)].into());
    let listed = std::fs::read_to_string(
        entry_of(&env, &rt_a)
            .with_file_name(cachedir::stack_name(&key))
            .join("layers"),
    )
    .unwrap();
    let bottom_up: Vec<String> = rt_a
        .layers
        .iter()
        .map(|l| cachedir::layer_name(&cachedir::layer_key(l, None)) + "\n")
        .collect();
    assert_eq!(listed, bottom_up.concat());
    assert_eq!(layer_names(&env).len(), 2);
    assert!(names(&env.cache().join("tmp")).is_empty());
    let Found::NonDir(host, _) = p.rootfs.lookup("etc/hostname") else {
        panic!("no /etc/hostname");
    };
    assert_eq!(std::fs::read(host).unwrap(), b"a\n");
    assert!(p.rootfs.lookup("usr/share/base/f49").metadata().is_some());
    // The second image extracts its own layer only: the base is the first one's.
    let base = p.rootfs.dirs()[1].clone();
    std::fs::write(base.join("marker"), b"").unwrap();
    let q = prepare_at(&env.loc(), &b, &rt_b).unwrap();
    assert_eq!(q.rootfs.dirs()[1], base);
    assert!(base.join("marker").exists(), "the base was extracted again");
    assert_eq!(layer_names(&env).len(), 3);
    assert!(q.rootfs.lookup("usr/share/b").is_dir() && !q.rootfs.lookup("usr/share/a").is_dir());
    // Warm: the same layers, nothing extracted.
    let again = prepare_at(&env.loc(), &a, &rt_a).unwrap();
    assert!(same(&again, &p));
    assert_eq!(
        std::fs::read_to_string(env.cache().join("overlay-probe"))
            .unwrap()
            .split(' ')
            .next(),
        Some("v1")
    );
}

#[test]
fn a_layer_twice_in_an_image_is_stacked_once_at_its_topmost_place() {
    let env = Env::layered();
    let (exe, mut rt) = env.stacked_image("img", &[("base", 3), ("top", 3)]);
    rt.layers.push(rt.layers[0].clone());
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    let k = |l: &LayerRef| cachedir::layer_name(&cachedir::layer_key(l, None));
    let tops: Vec<String> = p
        .rootfs
        .dirs()
        .iter()
        .map(|d| {
            d.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(tops, [k(&rt.layers[0]), k(&rt.layers[1])]);
}

#[test]
fn a_mapped_entry_has_layers_of_its_own() {
    let env = Env::layered();
    let (exe, rt) = env.stacked_image("img", &[("base", 3)]);
    let k = cachedir::layer_key(&rt.layers[0], None);
    let m = cachedir::layer_key(&rt.layers[0], Some("0:1000:1"));
    assert_ne!(k, m);
    drop(prepare_at(&env.loc(), &exe, &rt).unwrap());
    assert_eq!(layer_names(&env), [cachedir::layer_name(&k)].into());
}

#[test]
fn layers_that_do_not_stack_as_the_merged_tree_get_a_merged_entry() {
    let env = Env::layered();
    let base = TarBuilder::new()
        .symlink("lib", "usr/lib")
        .dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .file("etc/hostname", 0o644, b"merged\n")
        .finish();
    // A parent without an entry, through the base's symlink in the merged tree.
    let top = TarBuilder::new().file("lib/y", 0o644, b"y").finish();
    let (exe, layers) = layer_file(
        &env.tmp.path().join("img"),
        &[(Compression::None, base), (Compression::None, top)],
    );
    let rt = runtime(layers);
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert_eq!(p.rootfs.dirs(), [entry_of(&env, &rt)]);
    assert_eq!(
        std::fs::read(p.rootfs.top().join("usr/lib/y")).unwrap(),
        b"y"
    );
    // Both layers were extracted alone first; the next start goes straight to the entry.
    assert_eq!(layer_names(&env).len(), 2);
    let again = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert!(same(&again, &p));
}

#[test]
fn a_failed_layer_publishes_no_layer_and_says_what_the_merged_extraction_says() {
    let env = Env::layered();
    let (exe, mut rt) = env.stacked_image("img", &[("a", 300), ("b", 300), ("c", 3)]);
    rt.layers[1].sha256[0] ^= 1;
    let e = prepare_at(&env.loc(), &exe, &rt).unwrap_err().to_string();
    let id = extract::layer_id(&rt.layers[1]);
    assert_eq!(
        e,
        format!("layer {id} digest mismatch: file corrupt or tampered")
    );
    assert!(layer_names(&env).is_empty());
    assert!(entry_names(&env).is_empty());
    assert!(names(&env.cache().join("tmp")).is_empty());
    rt.layers[1].sha256[0] ^= 1;
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert_eq!(p.rootfs.dirs().len(), 3);
}

#[test]
fn parallel_first_starts_of_images_sharing_a_base_extract_it_once() {
    let env = Arc::new(Env::layered());
    let (_, rt_a) = env.stacked_image("a", &[("base", 3000), ("a", 10)]);
    let (_, rt_b) = env.stacked_image("b", &[("base", 3000), ("b", 10)]);
    let base_key = cachedir::layer_key(&rt_a.layers[0], None);
    // Every staging directory of the base seen while the starts run.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (tmp, done, base_key) = (env.cache().join("tmp"), done.clone(), base_key.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for n in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
                    let n = n.file_name().to_string_lossy().into_owned();
                    if n.starts_with(&base_key) {
                        seen.insert(n);
                    }
                }
            }
            seen
        })
    };
    let barrier = Arc::new(Barrier::new(2));
    let starts: Vec<_> = [("a", rt_a), ("b", rt_b)]
        .into_iter()
        .map(|(name, rt)| {
            let (env, barrier) = (env.clone(), barrier.clone());
            std::thread::spawn(move || {
                let exe = File::open(env.tmp.path().join(name)).unwrap();
                barrier.wait();
                prepare_at(&env.loc(), &exe, &rt).unwrap()
            })
        })
        .collect();
    let prepared: Vec<Prepared> = starts.into_iter().map(|h| h.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert_eq!(
        seen.len(),
        1,
        "the base was extracted {} times: {seen:?}",
        seen.len()
    );
    assert_eq!(prepared[0].rootfs.dirs()[1], prepared[1].rootfs.dirs()[1]);
    assert_eq!(layer_names(&env).len(), 3);
    assert!(names(&env.cache().join("tmp")).is_empty());
}

use durable::flushed;

#[test]
fn a_cold_start_publishes_before_the_flush_and_what_a_crash_may_have_cut_short_is_made_again() {
    let env = Env::layered();
    let (a, rt) = env.stacked_image("a", &[("base", 20), ("a", 3)]);
    let p = prepare_at(&env.loc(), &a, &rt).unwrap();
    let base = p.rootfs.dirs()[1].parent().unwrap().to_path_buf();
    let top = p.rootfs.dirs()[0].parent().unwrap().to_path_buf();
    let stack =
        entry_of(&env, &rt).with_file_name(cachedir::stack_name(&cachedir::key(&rt.layers)));
    assert!(flushed(&[&base, &top, &stack]), "marks left by the flush");
    drop(p);
    // A mark of this boot: in use as it is (its files are in the page cache).
    std::fs::write(base.join("tree/kept"), b"").unwrap();
    assert!(durable::mark(&base).unwrap());
    let q = prepare_at(&env.loc(), &a, &rt).unwrap();
    assert!(base.join("tree/kept").exists());
    drop(q);
    // Marks of another boot: the base and the entry were published, then the machine went
    // down before they reached the disk.
    for d in [&base, &stack] {
        std::fs::write(
            d.join(durable::UNSYNCED),
            b"00000000-0000-0000-0000-000000000000",
        )
        .unwrap();
    }
    let r = prepare_at(&env.loc(), &a, &rt).unwrap();
    assert!(!base.join("tree/kept").exists(), "a stale layer was used");
    assert_eq!(r.rootfs.dirs()[1], base.join("tree"));
    assert!(r.rootfs.lookup("usr/share/base/f19").metadata().is_some());
    assert!(stack.join("layers").exists());
    assert_eq!(layer_names(&env).len(), 2);
    assert!(
        names(&env.cache().join("tmp")).is_empty(),
        "the stale trees were left"
    );
    assert!(flushed(&[&base, &top, &stack]));
}
