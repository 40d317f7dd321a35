//! Cache specs: real layer files, real directories, real locks, threads and processes.

use super::*;
use crate::extract::tests::{compress, layer_file, names};
use crate::format::{Compression, LayerRef};
use crate::tar::testutil::TarBuilder;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Barrier};

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("private")).unwrap();
        Env { tmp }
    }
    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache/oci2bin")
    }
    fn loc(&self) -> Locations {
        Locations {
            cache: Some(self.cache()),
            tmp: self.tmp.path().join("private"),
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

#[test]
fn first_prepare_extracts_and_publishes_later_ones_reuse_the_entry() {
    let env = Env::new();
    let (exe, rt) = env.image("img", 3);
    let p = prepare_at(&env.loc(), &exe, &rt).unwrap();
    let want = env
        .cache()
        .join("rootfs")
        .join(format!("{}-x1", "ab".repeat(32)));
    assert_eq!(p.rootfs, want);
    assert_eq!(p.scratch, env.cache().join("mnt"));
    assert_eq!(p.cleanup, None);
    assert_eq!(
        std::fs::read(p.rootfs.join("etc/hostname")).unwrap(),
        b"cached\n"
    );
    assert!(names(&p.scratch).is_empty());
    assert!(names(&env.cache().join("tmp")).is_empty());
    // The warm path does not extract again: a marker left in the entry is still there.
    std::fs::write(p.rootfs.join("marker"), b"").unwrap();
    let again = prepare_at(&env.loc(), &exe, &rt).unwrap();
    assert_eq!(again, p);
    assert!(p.rootfs.join("marker").exists());
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
        std::fs::read(p.rootfs.join("etc/hostname")).unwrap(),
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
    assert!(results.iter().all(|p| *p == results[0]));
    assert_eq!(entry_names(&env).len(), 1);
    assert!(names(&env.cache().join("tmp")).is_empty());
    assert_eq!(names(&results[0].rootfs.join("usr/share")).len(), 400);
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
    };
    let exe = File::open(dir.join("img")).unwrap();
    let bytes = std::fs::read(dir.join("rt")).unwrap();
    let rt = Runtime::decode(&bytes).unwrap();
    let p = prepare_at(&loc, &exe, &rt).unwrap();
    assert!(p.rootfs.join("etc/hostname").exists());
    println!("PREPARED {}", p.rootfs.display());
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
    let hex = "ab".repeat(32);
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
    let entry = env.cache().join("rootfs").join(format!("{hex}-x1"));
    let staged = env.cache().join("tmp").join(format!("{hex}-holder"));
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("from-holder"), b"").unwrap();
    std::fs::rename(&staged, &entry).unwrap();
    drop(lock);
    let p = waiter.join().unwrap();
    assert_eq!(p.rootfs, entry);
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
    let mine = tmp.join(format!("{}-crashed", "ab".repeat(32)));
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
    assert_eq!(p.rootfs, dir.join("rootfs"));
    assert_eq!(p.scratch, dir.join("mnt"));
    assert_eq!(
        std::fs::read(p.rootfs.join("etc/hostname")).unwrap(),
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
    assert_eq!(l.cache, Some(PathBuf::from("/x/oci2bin")));
    assert_eq!(l.tmp, PathBuf::from("/tmp"));
    let l = vars(Some("relative"), Some("/h"), Some("/t"));
    assert_eq!(l.cache, Some(PathBuf::from("/h/.cache/oci2bin")));
    assert_eq!(l.tmp, PathBuf::from("/t"));
    assert_eq!(vars(None, None, None).cache, None);
}

use std::os::unix::fs::PermissionsExt;
