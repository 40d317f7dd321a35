//! The root filesystem cache from the outside, with real files run as the unprivileged test
//! user: a root run never touches the user's cache, foreign or broken entries are reported and
//! not used, signals during extraction leave nothing behind, `oci2bin cache ls|rm|prune` on real
//! entries, stacked and merged (also while a container runs from them), config-only rebuilds
//! share a tree, and a start waiting for another extractor says so. The layer store itself:
//! `tests/layers.rs`.

use e2e::{fixtures, text, Runner};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// This suite checks the cache mechanics of the single-uid mode, so it runs as the range-less
/// test user when there is one (as root); mapped entries are covered by the userns suite.
fn runner() -> Runner {
    Runner::for_user("o2btest-norange").unwrap_or_default()
}

/// The cache key of a built file, by the loader's own rule.
fn key_of(file: &Path) -> String {
    loader::cachedir::key(&e2e::layer_refs(file))
}

/// The (stacked) entry of a built file, as a run makes it by default.
fn entry_of(r: &Runner, file: &Path) -> PathBuf {
    r.cache()
        .join("rootfs")
        .join(loader::cachedir::stack_name(&key_of(file)))
}

/// The merged entry of a built file (`OCI2BIN_ROOTFS=merged`).
fn merged_entry_of(r: &Runner, file: &Path) -> PathBuf {
    r.cache()
        .join("rootfs")
        .join(loader::cachedir::entry_name(&key_of(file)))
}

/// The store directory of a file's layer `i` (0: the bottom one), and its key.
fn layer_of(r: &Runner, file: &Path, i: usize) -> (PathBuf, String) {
    let k = loader::cachedir::layer_key(&e2e::layer_refs(file)[i], None);
    let dir = r
        .cache()
        .join("layers")
        .join(loader::cachedir::layer_name(&k));
    (dir, k)
}

/// `oci2bin ARGS…` as the test user, with the runner's cache.
fn cache_cmd(r: &Runner, args: &[&str]) -> Output {
    r.command(&e2e::oci2bin(), args).output().unwrap()
}

fn cache_ok(r: &Runner, args: &[&str]) -> String {
    let o = cache_cmd(r, args);
    assert!(
        o.status.success(),
        "oci2bin {args:?}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A directory the test user owns.
fn user_dir(r: &Runner, name: &str) -> PathBuf {
    let d = r.home().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(r.uid()), None).unwrap();
    d
}

fn private_dirs(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("oci2bin-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The non-empty stderr lines of a run.
fn warnings(o: &Output) -> Vec<String> {
    text(&o.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn a_root_run_with_the_users_cache_writes_nothing_there_and_the_user_still_works() {
    if !e2e::runner::userns() {
        return;
    }
    if !e2e::require(is_root(), "the root-run test needs to run as root") {
        return;
    }
    let r = runner();
    let tmp = e2e::world_tempdir();
    // Root, but with the user's XDG_CACHE_HOME (what `sudo -E ./image` does).
    let o = Command::new(bb())
        .args(["echo", "as root"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/root")
        .env("XDG_CACHE_HOME", r.home().join(".cache"))
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "as root\n");
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("not writing into another user's cache")
            && w[0].ends_with("for this run only"),
        "{w:?}"
    );
    assert!(
        !r.home().join(".cache").exists(),
        "the root run created something in the user's cache"
    );
    assert!(private_dirs(tmp.path()).is_empty());
    // The user's own runs are unaffected.
    assert_eq!(r.ok(bb(), &["echo", "as user"]), "as user\n");
    let ls = cache_ok(&r, &["cache", "ls"]);
    assert_eq!(ls.lines().count(), 2, "one entry:\n{ls}");
    assert!(
        ls.contains(&key_of(bb())[..12]) && ls.contains("ready"),
        "{ls}"
    );
}

#[test]
fn a_root_owned_entry_in_the_users_cache_is_reported_and_not_used() {
    if !e2e::runner::userns() {
        return;
    }
    if !e2e::require(is_root(), "making a root-owned entry needs root") {
        return;
    }
    let r = runner();
    r.ok(bb(), &["true"]);
    let entry = entry_of(&r, bb());
    // What an older `sudo ./image` left: the same tree, owned by root.
    let sh = format!(
        "cp -a {e} {e}.root && chown -R 0:0 {e}.root && rm -rf {e} && mv {e}.root {e}",
        e = entry.display()
    );
    assert!(Command::new("sh")
        .args(["-c", &sh])
        .status()
        .unwrap()
        .success());
    let tmp = user_dir(&r, "tmp");
    let o = r
        .command(bb(), &["cat", "/etc/issue"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "busybox fixture\n");
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "oci2bin: warning: cache entry {} is owned by uid 0, not you; not used",
            entry.display()
        )),
        "{w:?}"
    );
    assert!(private_dirs(&tmp).is_empty());
    let ls = cache_ok(&r, &["cache", "ls"]);
    assert!(ls.contains("foreign owner uid 0"), "{ls}");
    // The user cannot remove it and is told so; root can.
    let key = key_of(bb());
    let o = cache_cmd(&r, &["cache", "rm", &key]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is owned by uid 0, not you"),
        "{}",
        text(&o.stderr)
    );
    let cache_dir = r.cache();
    let o = Command::new(e2e::oci2bin())
        .args([
            "cache",
            "--cache-dir",
            cache_dir.to_str().unwrap(),
            "rm",
            &key,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!entry.exists());
    // The next run extracts into the cache again, as the user.
    let o = r.run(bb(), &["true"]);
    assert!(
        o.status.success() && warnings(&o).is_empty(),
        "{}",
        text(&o.stderr)
    );
    assert!(entry.is_dir());
}

/// Waits until a private extraction under `tmp` has begun writing the root filesystem.
fn wait_for_private_extraction(tmp: &Path, child: &mut std::process::Child) -> PathBuf {
    let t = Instant::now();
    loop {
        if let Some(d) = private_dirs(tmp).first() {
            let d = tmp.join(d);
            if d.join("rootfs/usr").exists() {
                return d;
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the loader ended ({s}) before extraction was seen");
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no extraction seen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn signals_during_a_private_extraction_leave_nothing_behind() {
    if !e2e::runner::userns() {
        return;
    }
    let deb = fixtures::debian_bin();
    let r = runner();
    // A cache the user cannot write (root's, or read-only): every run extracts privately.
    let ro = r.home().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let tmp = user_dir(&r, "tmp");
    let start = |file: &Path| {
        r.command(file, &["true"])
            .env("XDG_CACHE_HOME", &ro)
            .env("TMPDIR", &tmp)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // ^C: the loader removes its tree and dies of SIGINT, as a shell expects.
    let mut c = start(deb);
    wait_for_private_extraction(&tmp, &mut c);
    // SAFETY: kill on our own child's pid (setpriv execs the loader in place).
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.signal() == Some(libc::SIGINT) || o.status.code() == Some(130),
        "{:?}: {}",
        o.status,
        text(&o.stderr)
    );
    assert!(private_dirs(&tmp).is_empty(), "{:?}", private_dirs(&tmp));

    // SIGTERM too.
    let mut c = start(deb);
    wait_for_private_extraction(&tmp, &mut c);
    // SAFETY: as above.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let o = c.wait_with_output().unwrap();
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        text(&o.stderr)
    );
    assert!(private_dirs(&tmp).is_empty(), "{:?}", private_dirs(&tmp));

    // kill -9 cannot be handled: the next start sweeps what it left.
    let mut c = start(deb);
    let left = wait_for_private_extraction(&tmp, &mut c);
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(left.exists());
    let o = start(bb()).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(private_dirs(&tmp).is_empty(), "{:?}", private_dirs(&tmp));
}

#[test]
fn a_config_only_rebuild_reuses_the_cached_tree() {
    if !e2e::runner::userns() {
        return;
    }
    let (_d, edited) = fixtures::package(
        fixtures::busybox(),
        "edited",
        &["--env", "EDITED=1", "--tag", "edited:1"],
    );
    assert_eq!(key_of(&edited), key_of(bb()));
    let r = runner();
    r.ok(bb(), &["true"]);
    let top = layer_of(&r, bb(), e2e::layer_refs(bb()).len() - 1).0;
    std::fs::write(top.join("tree/marker"), b"").unwrap();
    assert_eq!(r.ok(&edited, &["sh", "-c", "echo $EDITED"]), "1\n");
    assert_eq!(
        r.run(&edited, &["test", "-e", "/marker"]).status.code(),
        Some(0),
        "the edited image extracted its own tree"
    );
    assert_eq!(r.files_under_cache("rootfs").len(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&cache_ok(&r, &["cache", "ls", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    let images: Vec<&str> = rows[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(images.len(), 2, "{images:?}");
    assert!(images.contains(&"edited:1"), "{images:?}");
    let ls = cache_ok(&r, &["cache", "ls"]);
    assert!(ls.contains(&images.join(",")), "{ls}");
}

/// Waits until `cache ls` shows the entry in use (a container started from it).
fn wait_in_use(r: &Runner, child: &mut std::process::Child) {
    let t = Instant::now();
    while !cache_ok(r, &["cache", "ls"]).contains("in use") {
        assert!(child.try_wait().unwrap().is_none(), "the container ended");
        assert!(t.elapsed() < Duration::from_secs(20), "never in use");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cache_rm_and_prune_remove_real_trees_but_not_one_in_use() {
    if !e2e::runner::userns() {
        return;
    }
    // Merged entries: real trees, with read-only directories.
    let r = runner().with_env("OCI2BIN_ROOTFS", "merged");
    r.ok(bb(), &["true"]);
    let key = key_of(bb());
    let entry = merged_entry_of(&r, bb());
    // Read-only directories, as images have them (`rm -rf` fails on these).
    let chmod = Path::new("/bin/chmod");
    let e = entry.to_str().unwrap().to_string();
    r.ok(
        chmod,
        &["0555", &format!("{e}/etc"), &format!("{e}/bin"), &e],
    );

    let mut running = r.command(bb(), &["sleep", "60"]).spawn().unwrap();
    wait_in_use(&r, &mut running);
    let o = cache_cmd(&r, &["cache", "rm", &key[..8]]);
    assert!(!o.status.success());
    e2e::assert_one_line_error(&o, &format!("entry {key} is in use by a running container"));
    let out = cache_ok(&r, &["cache", "prune", "--all"]);
    assert!(
        out.contains(&format!("skipped {}: in use", &key[..12])),
        "{out}"
    );
    assert!(entry.join("bin/busybox").exists());
    running.kill().unwrap();
    running.wait().unwrap();

    let out = cache_ok(&r, &["cache", "rm", &key[..8]]);
    assert!(out.starts_with(&format!("removed {}", &key[..12])), "{out}");
    assert!(out.contains("freed "), "{out}");
    assert!(!entry.exists());
    for sub in ["rootfs", "meta", "tmp"] {
        assert!(r.files_under_cache(sub).is_empty(), "{sub} not empty");
    }

    // prune --all on a fresh entry; then the cache is empty and runs still work.
    r.ok(bb(), &["true"]);
    let out = cache_ok(&r, &["cache", "prune", "--all"]);
    assert!(out.contains(&format!("removed {}", &key[..12])), "{out}");
    assert!(r.files_under_cache("rootfs").is_empty());
    let ls = cache_ok(&r, &["cache", "ls"]);
    assert_eq!(ls.lines().count(), 1, "header only:\n{ls}");
    assert_eq!(r.ok(bb(), &["echo", "again"]), "again\n");
}

#[test]
fn cache_rm_and_prune_remove_a_stacked_entry_but_not_one_in_use_and_leave_its_layers() {
    if !e2e::runner::userns() {
        return;
    }
    let r = runner();
    r.ok(bb(), &["true"]);
    let key = key_of(bb());
    let entry = entry_of(&r, bb());
    assert!(entry.is_dir());
    let mut running = r.command(bb(), &["sleep", "60"]).spawn().unwrap();
    wait_in_use(&r, &mut running);
    let o = cache_cmd(&r, &["cache", "rm", &key[..8]]);
    e2e::assert_one_line_error(&o, &format!("entry {key} is in use by a running container"));
    let out = cache_ok(&r, &["cache", "prune", "--all"]);
    assert!(
        out.contains(&format!("skipped {}: in use", &key[..12])),
        "{out}"
    );
    running.kill().unwrap();
    running.wait().unwrap();
    let out = cache_ok(&r, &["cache", "rm", &key[..8]]);
    assert!(out.starts_with(&format!("removed {}", &key[..12])), "{out}");
    assert!(!entry.exists());
    for sub in ["rootfs", "meta", "tmp"] {
        assert!(r.files_under_cache(sub).is_empty(), "{sub} not empty");
    }
    // The layers stay (pruning them is for later): the next start extracts nothing.
    assert_eq!(
        r.files_under_cache("layers").len(),
        e2e::layer_refs(bb()).len()
    );
    assert_eq!(r.ok(bb(), &["cat", "/etc/issue"]), "busybox fixture\n");
    assert!(entry.is_dir());
}

#[test]
fn a_start_waiting_for_another_extractor_says_what_it_waits_for() {
    if !e2e::runner::userns() {
        return;
    }
    let r = runner();
    // Hold the base layer's extraction lock as another extractor would, in a cache the user
    // owns but that has nothing yet.
    let (base, lkey) = layer_of(&r, bb(), 0);
    let locks = r.cache().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock_path = locks.join(format!("{lkey}.lock"));
    let lock = File::create(&lock_path).unwrap();
    for p in [r.home().join(".cache"), r.cache(), locks, lock_path.clone()] {
        std::os::unix::fs::chown(&p, Some(r.uid()), None).unwrap();
    }
    // SAFETY: flock on a file we opened; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut c = r
        .command(bb(), &["echo", "done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = c.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    let t = Instant::now();
    let line = rx
        .recv_timeout(Duration::from_millis(3500))
        .expect("no waiting message within 3.5 s");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "said it too early"
    );
    assert_eq!(
        line,
        format!(
            "oci2bin: waiting for another process extracting {} into {} (lock {})",
            line.split_whitespace().nth(6).unwrap(),
            base.display(),
            lock_path.display()
        )
    );
    assert!(c.try_wait().unwrap().is_none());
    // The other layer did not wait.
    let (top, _) = layer_of(&r, bb(), 1);
    assert!(top.join("tree").is_dir() && !base.exists());
    drop(lock);
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(text(&o.stdout), "done\n");
    assert!(entry_of(&r, bb()).is_dir() && base.join("tree").is_dir());
}
