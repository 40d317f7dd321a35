//! The root filesystem cache from the outside, with real files run as the unprivileged test
//! user: a root run never touches the user's cache, foreign or broken entries are reported and
//! not used, signals during extraction leave nothing behind, `oci2bin cache ls|rm|prune` on real
//! entries, stacked and merged (also while a container runs from them), and on the layers of
//! stacked ones (listed with the images sharing them, removed when no entry names them, never
//! while a container runs from them or a start holds them), config-only rebuilds share a tree,
//! and a start waiting for another extractor says so. The layer store itself: `tests/layers.rs`;
//! mapped layers: `tests/userns.rs`.

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

/// `cache ls --json`.
fn ls_json(r: &Runner) -> serde_json::Value {
    serde_json::from_str(&cache_ok(r, &["cache", "ls", "--json"])).unwrap()
}

/// The rows of `cache ls --json` of one kind (`entry`, `staging`, `layer`).
fn kind<'a>(json: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    let rows = json.as_array().unwrap().iter();
    rows.filter(|v| v["kind"] == kind).collect()
}

/// The entries table of `cache ls` (the layers table follows a blank line).
fn entries_table(ls: &str) -> &str {
    ls.split("\n\n").next().unwrap()
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
    assert_eq!(entries_table(&ls).lines().count(), 2, "one entry:\n{ls}");
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
    let json = ls_json(&r);
    let rows = kind(&json, "entry");
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
fn cache_rm_and_prune_remove_a_stacked_entry_and_its_layers_but_not_one_in_use() {
    if !e2e::runner::userns() {
        return;
    }
    let r = runner();
    r.ok(bb(), &["true"]);
    let key = key_of(bb());
    let entry = entry_of(&r, bb());
    assert!(entry.is_dir());
    let n = e2e::layer_refs(bb()).len();
    let mut running = r.command(bb(), &["sleep", "60"]).spawn().unwrap();
    wait_in_use(&r, &mut running);
    let ls = cache_ok(&r, &["cache", "ls"]);
    let (_, layers) = ls.split_once("\n\n").expect(&ls);
    assert_eq!(
        layers.lines().filter(|l| l.ends_with("in use")).count(),
        n,
        "{ls}"
    );
    let o = cache_cmd(&r, &["cache", "rm", &key[..8]]);
    e2e::assert_one_line_error(&o, &format!("entry {key} is in use by a running container"));
    let out = cache_ok(&r, &["cache", "prune", "--all"]);
    assert!(
        out.contains(&format!("skipped {}: in use", &key[..12])),
        "{out}"
    );
    assert!(!out.contains("removed layer"), "{out}");
    assert_eq!(r.files_under_cache("layers").len(), n);
    running.kill().unwrap();
    running.wait().unwrap();
    let out = cache_ok(&r, &["cache", "rm", &key[..8]]);
    assert!(out.starts_with(&format!("removed {}", &key[..12])), "{out}");
    // Its layers go with it: no other entry names them.
    for i in 0..n {
        let (dir, lkey) = layer_of(&r, bb(), i);
        assert!(
            out.contains(&format!("removed layer {} ", &lkey[..12])),
            "{out}"
        );
        assert!(!dir.exists());
    }
    assert!(!entry.exists());
    for sub in ["rootfs", "meta", "tmp", "layers"] {
        assert!(r.files_under_cache(sub).is_empty(), "{sub} not empty");
    }
    // The next start extracts them again.
    assert_eq!(r.ok(bb(), &["cat", "/etc/issue"]), "busybox fixture\n");
    assert!(entry.is_dir());
    assert_eq!(r.files_under_cache("layers").len(), n);
}

#[test]
fn images_sharing_base_layers_share_them_in_the_cache_until_the_last_one_goes() {
    if !e2e::runner::userns() {
        return;
    }
    let r = runner();
    let plus = fixtures::busybox_plus_layer_bin();
    r.ok(bb(), &["true"]);
    assert_eq!(
        r.ok(plus, &["cat", "/opt/second/hello"]),
        "the second image\n"
    );
    let (bkey, pkey) = (key_of(bb()), key_of(plus));
    let n = e2e::layer_refs(bb()).len();
    let top = layer_of(&r, plus, n);

    // ls --json: the busybox layers are named by both entries, the top one by its own.
    let json = ls_json(&r);
    let entries = kind(&json, "entry");
    let layers = kind(&json, "layer");
    assert_eq!((entries.len(), layers.len()), (2, n + 1), "{json}");
    let entry = |k: &str| *entries.iter().find(|e| e["key"] == k).unwrap();
    let layer = |k: &str| *layers.iter().find(|l| l["key"] == k).unwrap();
    let bb_name = entry(&bkey)["images"][0].as_str().unwrap().to_string();
    assert_eq!(
        entry(&pkey)["images"],
        serde_json::json!(["busybox-plus:1"])
    );
    assert_eq!(entry(&pkey)["layers"].as_array().unwrap().len(), n + 1);
    let mut shared = 0;
    for i in 0..n {
        let (dir, lkey) = layer_of(&r, bb(), i);
        let l = layer(&lkey);
        assert_eq!(l["entries"].as_array().unwrap().len(), 2, "{l}");
        let images = l["images"].as_array().unwrap();
        assert!(
            images.contains(&bb_name.as_str().into()) && images.contains(&"busybox-plus:1".into()),
            "{l}"
        );
        assert_eq!(l["path"], dir.to_str().unwrap());
        assert_eq!(l["state"], "used");
        shared += l["size"].as_u64().unwrap();
    }
    let own = layer(&top.1);
    assert_eq!(own["entries"], serde_json::json!([entry(&pkey)["entry"]]));
    assert_eq!(own["images"], serde_json::json!(["busybox-plus:1"]));
    let p = entry(&pkey);
    assert_eq!(p["shared_size"].as_u64(), Some(shared));
    assert_eq!(
        p["size"].as_u64().unwrap(),
        p["own_size"].as_u64().unwrap() + shared + own["size"].as_u64().unwrap()
    );
    // The table says the same.
    let ls = cache_ok(&r, &["cache", "ls"]);
    let base = ls
        .lines()
        .find(|l| l.starts_with(&layer_of(&r, bb(), 0).1[..12]))
        .expect(&ls);
    assert!(
        base.contains(&bb_name) && base.contains("busybox-plus:1") && base.ends_with("used"),
        "{ls}"
    );
    assert!(ls.contains(&format!("\nlayers: {}, ", n + 1)), "{ls}");
    assert!(ls.trim_end().ends_with("used by 2 entries"), "{ls}");

    // rm of the derived image, while a start of it holds its own layer (as a start does until
    // its entry is published): the shared layers stay, its own is skipped, not taken.
    let locks = r.cache().join("locks");
    let held = File::open(locks.join(format!("{}.lock", top.1))).unwrap();
    // SAFETY: flock on a file we opened; released when `held` is dropped.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_SH) }, 0);
    let out = cache_ok(&r, &["cache", "rm", &pkey[..8]]);
    assert!(
        out.starts_with(&format!("removed {}", &pkey[..12])),
        "{out}"
    );
    assert!(
        out.contains(&format!("skipped layer {}: being extracted", &top.1[..12])),
        "{out}"
    );
    assert!(!out.contains("removed layer"), "{out}");
    assert!(top.0.exists());
    for i in 0..n {
        assert!(layer_of(&r, bb(), i).0.exists());
    }
    drop(held);
    // Nothing names it now: prune removes it (a dry run first says so).
    let ls = cache_ok(&r, &["cache", "ls"]);
    assert!(ls.contains("1 unused"), "{ls}");
    let out = cache_ok(&r, &["cache", "prune", "--dry-run"]);
    assert!(
        out.contains(&format!("would remove layer {}", &top.1[..12])),
        "{out}"
    );
    assert!(top.0.exists());
    let out = cache_ok(&r, &["cache", "prune"]);
    assert!(
        out.contains(&format!("removed layer {}", &top.1[..12])),
        "{out}"
    );
    assert!(!out.contains("freed 0 B"), "{out}");
    assert!(!top.0.exists());
    assert_eq!(r.files_under_cache("layers").len(), n);
    assert_eq!(r.ok(bb(), &["cat", "/etc/issue"]), "busybox fixture\n");

    // The layers of a running container's entry are never removed.
    let mut running = r.command(bb(), &["sleep", "60"]).spawn().unwrap();
    wait_in_use(&r, &mut running);
    let out = cache_ok(&r, &["cache", "prune", "--all"]);
    assert!(
        out.contains(&format!("skipped {}: in use", &bkey[..12])),
        "{out}"
    );
    assert!(!out.contains("removed"), "{out}");
    assert_eq!(r.files_under_cache("layers").len(), n);
    running.kill().unwrap();
    running.wait().unwrap();
    // Then prune --all removes the entry, then its layers: the cache is empty. The container's
    // own processes die of their parent's death a moment after it (PR_SET_PDEATHSIG) and hold
    // the entry until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = cache_ok(&r, &["cache", "prune", "--all"]);
        if !out.contains("in use") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.contains(&format!("removed {}", &bkey[..12])), "{out}");
    assert_eq!(out.matches("removed layer ").count(), n, "{out}");
    for sub in ["rootfs", "meta", "tmp", "layers"] {
        assert!(r.files_under_cache(sub).is_empty(), "{sub} not empty");
    }
    let ls = cache_ok(&r, &["cache", "ls"]);
    assert_eq!(ls.lines().count(), 1, "header only:\n{ls}");
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
