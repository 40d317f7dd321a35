//! `oci2bin cache` specs on real directories and real locks, laid out as the loader lays them.

use super::*;
use std::os::unix::fs::symlink;

struct Fixture {
    _tmp: tempfile::TempDir,
    cache: Cache,
}

fn key(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("oci2bin");
        for d in cachedir::SUBDIRS {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Fixture {
            _tmp: tmp,
            cache: Cache::new(root),
        }
    }

    fn root(&self) -> &Path {
        &self.cache.root
    }

    /// A published entry with a read-only tree (as images have) and a meta file.
    fn entry(&self, key: &str, suffix: &str, images: &[&str]) -> PathBuf {
        let name = format!("{key}{suffix}");
        let e = self.root().join(ROOTFS).join(&name);
        std::fs::create_dir_all(e.join("usr/lib")).unwrap();
        std::fs::write(e.join("usr/lib/data"), vec![7u8; 10_000]).unwrap();
        std::fs::hard_link(e.join("usr/lib/data"), e.join("usr/lib/link")).unwrap();
        symlink("/etc/passwd", e.join("usr/passwd")).unwrap();
        for d in ["usr/lib", "usr", ""] {
            let p = e.join(d);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        if !images.is_empty() {
            let text: String = images
                .iter()
                .enumerate()
                .map(|(i, n)| cachedir::meta_line(&format!("sha256:{i}"), n))
                .collect();
            std::fs::write(self.root().join(META).join(&name), text).unwrap();
        }
        e
    }

    fn meta(&self, key: &str) -> PathBuf {
        self.root().join(META).join(cachedir::entry_name(key))
    }

    fn names(&self, sub: &str) -> Vec<String> {
        dir_names(&self.root().join(sub)).unwrap()
    }
}

/// A run's hold on an entry, as the loader takes it.
fn hold(meta: &Path) -> File {
    let f = File::open(meta).unwrap();
    rustix::fs::flock(&f, FlockOperation::LockShared).unwrap();
    f
}

#[test]
fn stacked_entries_are_current_listed_held_and_removed_like_merged_ones() {
    let fx = Fixture::new();
    let e = fx.entry(&key(7), cachedir::STACK_SUFFIX, &["debian:12"]);
    let layer = fx
        .root()
        .join(cachedir::LAYERS)
        .join(cachedir::layer_name(&key(8)));
    std::fs::create_dir_all(layer.join("tree")).unwrap();
    let meta = fx.root().join(META).join(cachedir::stack_name(&key(7)));
    let run = hold(&meta);
    let rows = fx.cache.list().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].state, &rows[0].images[..]),
        (State::InUse, &["debian:12".to_string()][..])
    );
    let (out, _) = fx.cache.prune(&Prune::default()).unwrap();
    assert!(out.is_empty(), "a current entry is no old format: {out:?}");
    assert!(matches!(
        fx.cache.rm(&[key(7)]).unwrap()[..],
        [Outcome::Failed(..)]
    ));
    drop(run);
    assert!(matches!(
        fx.cache.rm(&[key(7)]).unwrap()[..],
        [Outcome::Removed(..)]
    ));
    assert!(!e.exists() && !meta.exists());
    assert!(layer.join("tree").is_dir(), "layers stay");
}

#[test]
fn ls_reports_images_size_last_use_and_state() {
    let fx = Fixture::new();
    fx.entry(
        &key(1),
        "-x2",
        &["busybox:latest", "other:1", "busybox:latest"],
    );
    fx.entry(&key(2), "-x1", &[]);
    symlink(
        "/nowhere",
        fx.root().join(ROOTFS).join(cachedir::entry_name(&key(3))),
    )
    .unwrap();
    std::fs::create_dir(fx.root().join(TMP).join(format!("{}-dead", key(4)))).unwrap();
    std::fs::write(fx.root().join(ROOTFS).join("not-an-entry"), b"").unwrap();
    let _run = hold(&fx.meta(&key(1)));
    let rows = fx.cache.list().unwrap();
    let got: Vec<(&str, String)> = rows
        .iter()
        .map(|r| (r.short_key(), r.state.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("010101010101", "in use".to_string()),
            ("020202020202", "old format".into()),
            ("030303030303", "symlink".into()),
            ("040404040404", "incomplete".into()),
        ]
    );
    assert_eq!(rows[0].images, ["busybox:latest", "other:1"]);
    assert!(rows[0].last_used.is_some());
    // 10 kB of data linked twice counts once, plus the directories.
    assert!(
        (12_288..40_000).contains(&rows[0].size),
        "size {}",
        rows[0].size
    );
    let table = render_table(&rows, SystemTime::now());
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ENTRY         IMAGE"), "{table}");
    assert!(
        lines[1].contains("busybox:latest,other:1") && lines[1].contains("just now"),
        "{table}"
    );
    let col = lines[0].find("STATE").unwrap();
    assert!(lines.iter().skip(1).all(|l| l.len() > col), "{table}");
    assert_eq!(&lines[1][col..], "in use");
    let json = to_json(&rows);
    assert_eq!(json[0]["key"], key(1));
    assert_eq!(json[0]["state"], "in use");
}

#[test]
fn ls_of_a_missing_cache_is_empty() {
    let c = Cache::new("/nonexistent/oci2bin".into());
    assert!(!c.exists());
    assert!(c.list().unwrap().is_empty());
    assert_eq!(
        render_table(&[], SystemTime::now()),
        "ENTRY  IMAGE  SIZE  LAST USED  STATE\n"
    );
}

#[test]
fn rm_takes_keys_prefixes_and_paths_and_removes_read_only_trees() {
    let fx = Fixture::new();
    let a = fx.entry(&key(0xab), "-x2", &["a:1"]);
    let b = fx.entry(&format!("abcd{}", &key(1)[4..]), "-x2", &["b:1"]);
    let c = fx.entry(&key(0xcd), "-x2", &["c:1"]);
    let rows = fx.cache.list().unwrap();
    // Too short, not hex, or matching nothing.
    let e = fx.cache.resolve(&rows, &["ab".into()]).unwrap_err();
    assert!(e.to_string().contains("is not a cache entry"), "{e}");
    let e = fx.cache.resolve(&rows, &["abzz".into()]).unwrap_err();
    assert!(e.to_string().contains("is not a cache entry"), "{e}");
    let e = fx.cache.resolve(&rows, &["eeee".into()]).unwrap_err();
    assert_eq!(e.to_string(), "no cache entry matches eeee");
    // "abab" is a unique prefix of a's key (b's begins "abcd").
    assert_eq!(
        fx.cache.resolve(&rows, &["abab".into()]).unwrap()[0].key,
        key(0xab)
    );
    let out = fx
        .cache
        .rm(&["abab".into(), format!("{}/", b.display())])
        .unwrap();
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Removed(_))),
        "{out:?}"
    );
    assert!(!a.exists() && !b.exists() && c.exists());
    assert_eq!(fx.names(ROOTFS), [cachedir::entry_name(&key(0xcd))]);
    assert_eq!(fx.names(META), [cachedir::entry_name(&key(0xcd))]);
    assert!(fx.names(TMP).is_empty(), "{:?}", fx.names(TMP));
    // The symlink inside pointed out of the tree: its target is untouched.
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let fx = Fixture::new();
    fx.entry(&format!("abcd{}", &key(1)[4..]), "-x2", &[]);
    fx.entry(&format!("abcd{}", &key(2)[4..]), "-x2", &[]);
    let e = fx.cache.rm(&["abcd".into()]).unwrap_err().to_string();
    assert!(
        e.starts_with("abcd is ambiguous: it matches abcd0101"),
        "{e}"
    );
    assert!(e.contains(", abcd0202"), "{e}");
    assert_eq!(fx.names(ROOTFS).len(), 2);
}

#[test]
fn rm_refuses_an_entry_in_use_and_a_symlink_entry_loses_only_the_link() {
    let fx = Fixture::new();
    let e = fx.entry(&key(1), "-x2", &["a:1"]);
    let run = hold(&fx.meta(&key(1)));
    let out = fx.cache.rm(&[key(1)]).unwrap();
    match &out[..] {
        [Outcome::Failed(_, why)] => assert_eq!(
            why,
            &format!("entry {} is in use by a running container", key(1))
        ),
        o => panic!("{o:?}"),
    }
    assert!(e.join("usr/lib/data").exists() && fx.meta(&key(1)).exists());
    drop(run);
    fx.cache.rm(&[key(1)]).unwrap();
    assert!(!e.exists());

    let target = fx.root().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"").unwrap();
    let link = fx.root().join(ROOTFS).join(cachedir::entry_name(&key(2)));
    symlink(&target, &link).unwrap();
    fx.cache.rm(&[key(2)[..8].to_string()]).unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(target.join("keep").exists());
}

#[test]
fn rm_of_an_entry_owned_by_someone_else_says_who_owns_it() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("SKIP: needs root to chown an entry to another uid");
        return;
    }
    let fx = Fixture::new();
    let e = fx.entry(&key(1), "-x2", &[]);
    std::os::unix::fs::chown(&e, Some(4242), None).unwrap();
    // As seen by uid 4243, who owns the cache but not the entry.
    let them = Cache {
        root: fx.root().to_path_buf(),
        euid: 4243,
    };
    let rows = them.list().unwrap();
    assert_eq!(rows[0].state, State::Foreign(4242));
    let out = them.rm(&[key(1)]).unwrap();
    match &out[..] {
        [Outcome::Failed(_, why)] => {
            assert!(why.contains("is owned by uid 4242, not you"), "{why}");
            assert!(why.contains("sudo oci2bin cache --cache-dir"), "{why}");
        }
        o => panic!("{o:?}"),
    }
    assert!(e.exists());
    // Root may.
    fx.cache.rm(&[key(1)]).unwrap();
    assert!(!e.exists());
}

#[test]
fn prune_removes_what_no_run_uses_and_more_only_when_asked() {
    let fx = Fixture::new();
    let used = fx.entry(&key(1), "-x2", &["a:1"]);
    let old_use = fx.entry(&key(2), "-x2", &["b:1"]);
    let f = File::options().write(true).open(fx.meta(&key(2))).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(10 * 86_400))
        .unwrap();
    let old_format = fx.entry(&key(3), "-x1", &[]);
    let dead = fx.root().join(TMP).join(format!("{}-0123", key(4)));
    std::fs::create_dir_all(dead.join("ro")).unwrap();
    std::fs::set_permissions(dead.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let live = fx.root().join(TMP).join(format!("{}-4567", key(5)));
    std::fs::create_dir(&live).unwrap();
    let lock = File::create(fx.root().join(LOCKS).join(cachedir::lock_name(&key(5)))).unwrap();
    rustix::fs::flock(&lock, FlockOperation::LockExclusive).unwrap();
    std::fs::write(fx.meta(&key(6)), b"sha256:x gone:1\n").unwrap();

    let dry = fx
        .cache
        .prune(&Prune {
            dry_run: true,
            ..Prune::default()
        })
        .unwrap();
    assert_eq!(dry.0.len(), 3, "{:?}", dry.0);
    assert!(old_format.exists() && dead.exists());

    let (out, orphans) = fx.cache.prune(&Prune::default()).unwrap();
    let removed: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Outcome::Removed(r) => Some(r.short_key().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [&key(3)[..12], &key(4)[..12]]);
    assert!(out.iter().any(
        |o| matches!(o, Outcome::Skipped(r, why) if r.key == key(5) && why == "being extracted")
    ));
    assert_eq!(orphans, 1);
    assert!(!old_format.exists() && !dead.exists() && live.exists());
    assert!(used.exists() && old_use.exists());
    assert!(!fx.meta(&key(6)).exists());

    let (out, _) = fx
        .cache
        .prune(&Prune {
            older_than: Some(parse_age("7d").unwrap()),
            ..Prune::default()
        })
        .unwrap();
    assert!(
        matches!(&out[..], [Outcome::Removed(r), _] if r.key == key(2)),
        "{out:?}"
    );
    assert!(!old_use.exists() && used.exists());

    let run = hold(&fx.meta(&key(1)));
    let (out, _) = fx
        .cache
        .prune(&Prune {
            all: true,
            ..Prune::default()
        })
        .unwrap();
    assert!(
        matches!(&out[..], [Outcome::Skipped(r, why), _] if r.key == key(1) && why == "in use"),
        "{out:?}"
    );
    assert!(used.exists());
    drop(run);
    fx.cache
        .prune(&Prune {
            all: true,
            ..Prune::default()
        })
        .unwrap();
    assert!(!used.exists());
    assert!(fx.names(META).is_empty());
}

#[test]
fn ages_parse_with_units_and_render_relative_or_as_dates() {
    assert_eq!(parse_age("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
    for bad in ["", "7", "d", "7y", "-1d", "1.5h"] {
        assert!(parse_age(bad).is_err(), "{bad}");
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ago = |s: u64| human_age(now - Duration::from_secs(s), now);
    assert_eq!(ago(0), "just now");
    assert_eq!(ago(61), "1 minute ago");
    assert_eq!(ago(3 * 60 + 5), "3 minutes ago");
    assert_eq!(ago(5 * 3600), "5 hours ago");
    assert_eq!(ago(3 * 86_400), "3 days ago");
    assert_eq!(ago(40 * 86_400), "2023-10-05");
    assert_eq!(date(SystemTime::UNIX_EPOCH), "1970-01-01");
    assert_eq!(human_size(512), "512 B");
    assert_eq!(human_size(1536), "1.5 KiB");
    assert_eq!(human_size(90 << 20), "90.0 MiB");
}
