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

    /// A stacked entry naming `layers` (bottom first), with a meta file.
    fn stacked(&self, key: &str, images: &[&str], layers: &[&str]) -> PathBuf {
        let e = self.entry(key, cachedir::STACK_SUFFIX, images);
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o755)).unwrap();
        let list: String = layers.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(e.join(cachedir::STACK_LIST), list).unwrap();
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o555)).unwrap();
        e
    }

    /// A layer in the store, as the loader publishes it: `tree/` (here with a read-only
    /// directory) and `info`. Returns its name.
    fn layer(&self, key: &str, kb: usize) -> String {
        let name = cachedir::layer_name(key);
        let d = self.root().join(cachedir::LAYERS).join(&name);
        std::fs::create_dir_all(d.join("tree/usr")).unwrap();
        std::fs::write(d.join("tree/usr/data"), vec![1u8; kb * 1024]).unwrap();
        std::fs::set_permissions(d.join("tree/usr"), std::fs::Permissions::from_mode(0o555))
            .unwrap();
        std::fs::write(d.join("info"), b"info").unwrap();
        name
    }

    fn layer_dir(&self, name: &str) -> PathBuf {
        self.root().join(cachedir::LAYERS).join(name)
    }

    /// The lock file of `key`, held as a start holds it (shared or exclusive).
    fn hold_lock(&self, key: &str, exclusive: bool) -> File {
        let f = File::create(self.root().join(LOCKS).join(cachedir::lock_name(key))).unwrap();
        let op = match exclusive {
            true => FlockOperation::LockExclusive,
            false => FlockOperation::LockShared,
        };
        rustix::fs::flock(&f, op).unwrap();
        f
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
    let name = fx.layer(&key(8), 4);
    let layer = fx.layer_dir(&name);
    let e = fx.stacked(&key(7), &["debian:12"], &[&name]);
    let meta = fx.root().join(META).join(cachedir::stack_name(&key(7)));
    let run = hold(&meta);
    let rows = fx.cache.list().unwrap();
    // The entry, and its layer.
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].kind, rows[0].state, &rows[0].images[..]),
        (Kind::Entry, State::InUse, &["debian:12".to_string()][..])
    );
    assert_eq!((rows[1].kind, rows[1].state), (Kind::Layer, State::InUse));
    let (out, _) = fx.cache.prune(&Prune::default()).unwrap();
    assert!(
        out.is_empty(),
        "a current entry is no old format, its layer is named: {out:?}"
    );
    assert!(matches!(
        fx.cache.rm(&[key(7)]).unwrap()[..],
        [Outcome::Failed(..)]
    ));
    assert!(layer.exists(), "the layer of an entry in use stays");
    drop(run);
    let out = fx.cache.rm(&[key(7)]).unwrap();
    assert!(
        matches!(&out[..], [Outcome::Removed(e), Outcome::Removed(l)]
            if e.kind == Kind::Entry && l.kind == Kind::Layer),
        "{out:?}"
    );
    assert!(!e.exists() && !meta.exists());
    assert!(!layer.exists(), "no other entry names its layer");
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
        "ENTRY  IMAGE  SIZE  SHARED  LAST USED  STATE\n",
        "no layers: no layer table"
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

/// The removed rows of kind `kind`, by short key.
fn removed(out: &[Outcome], kind: Kind) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Outcome::Removed(r) if r.kind == kind => Some(r.short_key().to_string()),
            _ => None,
        })
        .collect()
}

fn skipped(out: &[Outcome]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o {
            Outcome::Skipped(r, why) => Some((r.short_key().to_string(), why.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn ls_shows_each_layer_with_the_images_and_entries_naming_it_and_counts_them_in_stacked_sizes() {
    let fx = Fixture::new();
    let (base, mid, top, loose) = (
        fx.layer(&key(0xa1), 64),
        fx.layer(&key(0xa2), 8),
        fx.layer(&key(0xa3), 16),
        fx.layer(&key(0xa4), 4),
    );
    let busy = fx.layer(&key(0xa5), 4);
    let _extracting = fx.hold_lock(&key(0xa5), true);
    let old = format!("{}-l0", key(0xa6));
    std::fs::create_dir(fx.root().join(cachedir::LAYERS).join(&old)).unwrap();
    fx.stacked(&key(1), &["app:1", "app:2"], &[&base, &mid]);
    fx.stacked(&key(2), &["other:1", "app:1"], &[&base, &top]);
    fx.entry(&key(3), "-x2", &["merged:1"]);
    let _run = hold(&fx.root().join(META).join(cachedir::stack_name(&key(1))));

    let rows = fx.cache.list().unwrap();
    let layers: Vec<(&str, State, usize)> = rows
        .iter()
        .filter(|r| r.kind == Kind::Layer)
        .map(|r| (r.short_key(), r.state, r.entries.len()))
        .collect();
    assert_eq!(
        layers,
        [
            (&key(0xa1)[..12], State::InUse, 2),
            (&key(0xa2)[..12], State::InUse, 1),
            (&key(0xa3)[..12], State::Used, 1),
            (&key(0xa4)[..12], State::Unused, 0),
            (&key(0xa5)[..12], State::Extracting, 0),
            (&key(0xa6)[..12], State::OldFormat, 0),
        ]
    );
    let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
    assert_eq!(row(&base).images, ["app:1", "app:2", "other:1"]);
    assert_eq!(
        row(&base).entries,
        [cachedir::stack_name(&key(1)), cachedir::stack_name(&key(2))]
    );
    assert!(row(&base).size >= 64 * 1024, "{}", row(&base).size);
    assert!(row(&loose).images.is_empty());
    // A stacked entry counts its layers; the base is shared.
    let a = row(&cachedir::stack_name(&key(1)));
    assert_eq!(a.layers, [base.clone(), mid.clone()]);
    assert_eq!(a.layers_size, row(&base).size + row(&mid).size);
    assert_eq!(a.shared_size, row(&base).size);
    assert_eq!(a.total_size(), a.size + a.layers_size);
    let merged = row(&cachedir::entry_name(&key(3)));
    assert_eq!((merged.layers_size, merged.shared_size), (0, 0));
    assert_eq!(row(&busy).state.to_string(), "extracting");

    let table = render_table(&rows, SystemTime::now());
    let (entries, layers) = table.split_once("\n\n").unwrap();
    let lines: Vec<&str> = entries.lines().collect();
    assert!(lines[0].starts_with("ENTRY         IMAGE"), "{table}");
    assert!(lines[0].contains("  SIZE  ") && lines[0].contains("  SHARED  "));
    let shared_col = lines[0].find("SHARED").unwrap();
    assert!(
        lines[1][shared_col..].starts_with(&human_size(a.shared_size)),
        "{table}"
    );
    assert!(lines[3][shared_col..].starts_with("- "), "merged: {table}");
    let lines: Vec<&str> = layers.lines().collect();
    assert!(
        lines[0].starts_with("LAYER         IMAGES") && lines[0].contains("  ENTRIES  SIZE  "),
        "{table}"
    );
    let state_col = lines[0].find("STATE").unwrap();
    assert!(lines[1].contains("app:1,app:2,other:1"), "{table}");
    assert_eq!(&lines[1][state_col..], "in use");
    assert_eq!(&lines[3][state_col..], "used");
    assert_eq!(&lines[4][state_col..], "unused");
    assert_eq!(&lines[6][state_col..], "old format");
    let total: u64 = rows
        .iter()
        .filter(|r| r.kind == Kind::Layer)
        .map(|r| r.size)
        .sum();
    // The one being extracted is not for prune.
    let loose_size = [&loose, &old].map(|n| row(n).size).iter().sum();
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "layers: 6, {}, used by 2 entries; 2 unused, {} (`oci2bin cache prune` removes them)",
            human_size(total),
            human_size(loose_size)
        )
    );

    let json = to_json(&rows);
    let json = json.as_array().unwrap();
    assert_eq!(json[0]["kind"], "entry");
    assert_eq!(json[0]["layers"], serde_json::json!([base, mid]));
    assert_eq!(json[0]["size"], a.total_size());
    assert_eq!(json[0]["own_size"], a.size);
    assert!(
        json[2].get("layers").is_none(),
        "a merged entry: {}",
        json[2]
    );
    let l = &json[3];
    assert_eq!(l["kind"], "layer");
    assert_eq!(l["layer"], base);
    assert_eq!(l["key"], key(0xa1));
    assert_eq!(l["entries"].as_array().unwrap().len(), 2);
    assert_eq!(
        l["images"],
        serde_json::json!(["app:1", "app:2", "other:1"])
    );
    assert_eq!(l["state"], "in use");
    assert_eq!(l["size"], row(&base).size);
}

#[test]
fn prune_removes_layers_no_entry_names_but_skips_those_whose_lock_is_held() {
    let fx = Fixture::new();
    let named = fx.layer(&key(0xb1), 4);
    let loose = fx.layer(&key(0xb2), 32);
    let shared_held = fx.layer(&key(0xb3), 4);
    let excl_held = fx.layer(&key(0xb4), 4);
    let old = format!("{}-l0", key(0xb5));
    std::fs::create_dir(fx.layer_dir(&old)).unwrap();
    fx.stacked(&key(1), &["a:1"], &[&named]);
    let (sh, ex) = (
        fx.hold_lock(&key(0xb3), false),
        fx.hold_lock(&key(0xb4), true),
    );

    let (dry, _) = fx
        .cache
        .prune(&Prune {
            dry_run: true,
            ..Prune::default()
        })
        .unwrap();
    assert_eq!(
        removed(&dry, Kind::Layer),
        [&key(0xb2)[..12], &key(0xb5)[..12]]
    );
    assert!(fx.layer_dir(&loose).exists() && fx.layer_dir(&old).exists());

    let (out, _) = fx.cache.prune(&Prune::default()).unwrap();
    assert_eq!(
        removed(&out, Kind::Layer),
        [&key(0xb2)[..12], &key(0xb5)[..12]]
    );
    let loose_size = out
        .iter()
        .find_map(|o| match o {
            Outcome::Removed(r) if r.name == loose => Some(r.size),
            _ => None,
        })
        .unwrap();
    assert!(loose_size >= 32 * 1024, "its bytes count as freed");
    assert_eq!(
        skipped(&out),
        [
            (key(0xb3)[..12].to_string(), "being extracted".to_string()),
            (key(0xb4)[..12].to_string(), "being extracted".to_string()),
        ]
    );
    assert!(!fx.layer_dir(&loose).exists() && !fx.layer_dir(&old).exists());
    assert!(fx.layer_dir(&named).join("tree/usr/data").exists());
    assert!(fx.layer_dir(&shared_held).exists() && fx.layer_dir(&excl_held).exists());
    assert!(fx.names(TMP).is_empty(), "{:?}", fx.names(TMP));

    // Once the starts holding them are gone, they go too; and with --all the entry, then its
    // layer.
    drop((sh, ex));
    let (out, _) = fx
        .cache
        .prune(&Prune {
            all: true,
            ..Prune::default()
        })
        .unwrap();
    assert_eq!(removed(&out, Kind::Entry), [&key(1)[..12]]);
    assert_eq!(removed(&out, Kind::Layer).len(), 3, "{out:?}");
    assert!(fx.names(cachedir::LAYERS).is_empty());
    assert!(fx.names(ROOTFS).is_empty() && fx.names(TMP).is_empty());
}

#[test]
fn a_layer_an_entry_names_by_the_time_its_lock_is_taken_stays() {
    let fx = Fixture::new();
    let l = fx.layer(&key(0xc1), 4);
    let rows = fx.cache.list().unwrap();
    let row = rows.iter().find(|r| r.name == l).unwrap();
    assert_eq!(row.state, State::Unused);
    // Published after the listing, by a start that has since let go of the layer's lock.
    fx.stacked(&key(1), &["late:1"], &[&l]);
    match fx.cache.remove(row) {
        Err(CacheError::LayerNamed { entry, .. }) => {
            assert_eq!(entry, cachedir::stack_name(&key(1)))
        }
        r => panic!("{r:?}"),
    }
    assert!(fx.layer_dir(&l).join("tree/usr/data").exists());
}

#[test]
fn rm_of_a_stacked_entry_removes_the_layers_no_other_entry_names() {
    let fx = Fixture::new();
    let (base, own, held) = (
        fx.layer(&key(0xd1), 4),
        fx.layer(&key(0xd2), 16),
        fx.layer(&key(0xd3), 4),
    );
    let other = fx.layer(&key(0xd4), 4);
    fx.stacked(&key(1), &["a:1"], &[&base, &own, &held]);
    fx.stacked(&key(2), &["b:1"], &[&base]);
    // A start of another image is about to name `held`.
    let start = fx.hold_lock(&key(0xd3), false);

    let out = fx.cache.rm(&[key(1)[..8].to_string()]).unwrap();
    assert_eq!(removed(&out, Kind::Entry), [&key(1)[..12]]);
    assert_eq!(removed(&out, Kind::Layer), [&key(0xd2)[..12]]);
    assert_eq!(
        skipped(&out),
        [(key(0xd3)[..12].to_string(), "being extracted".into())]
    );
    assert!(fx.layer_dir(&base).exists(), "named by the other entry");
    assert!(!fx.layer_dir(&own).exists());
    assert!(fx.layer_dir(&held).exists());
    assert!(fx.layer_dir(&other).exists(), "not the removed entry's");
    drop(start);

    let out = fx.cache.rm(&[key(2)[..8].to_string()]).unwrap();
    assert_eq!(removed(&out, Kind::Layer), [&key(0xd1)[..12]]);
    let (out, _) = fx.cache.prune(&Prune::default()).unwrap();
    assert_eq!(
        removed(&out, Kind::Layer),
        [&key(0xd3)[..12], &key(0xd4)[..12]]
    );
    assert!(fx.names(cachedir::LAYERS).is_empty());
}

/// What a cold start of a stacked entry does (`extract_layers` and `cold_stack` in the loader):
/// holds the layer's lock (shared on one found ready, exclusive to extract one) until the entry
/// naming it is published (`None`: it finds the layers do not stack and publishes none).
fn start(root: &Path, entry_key: Option<&str>, layer_key: &str) {
    let lock_of = |k: &str| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join(LOCKS).join(cachedir::lock_name(k)))
            .unwrap()
    };
    let name = cachedir::layer_name(layer_key);
    let dir = root.join(cachedir::LAYERS).join(&name);
    let lock = lock_of(layer_key);
    let ready =
        rustix::fs::flock(&lock, FlockOperation::NonBlockingLockShared).is_ok() && dir.is_dir();
    if !ready {
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).unwrap();
        if !dir.is_dir() {
            let staging = root.join(TMP).join(format!("{layer_key}-{}", unique()));
            std::fs::create_dir_all(staging.join("tree/bin")).unwrap();
            std::fs::write(staging.join("tree/bin/sh"), b"sh").unwrap();
            std::fs::rename(&staging, &dir).unwrap();
        }
    }
    // The loader checks the layers stack (reading them) before it makes the entry: a window in
    // which the layer is in the store and no entry names it.
    std::thread::sleep(Duration::from_millis(3));
    let Some(entry_key) = entry_key else {
        return;
    };
    let entry_lock = lock_of(entry_key);
    rustix::fs::flock(&entry_lock, FlockOperation::LockExclusive).unwrap();
    let entry = root.join(ROOTFS).join(cachedir::stack_name(entry_key));
    if !entry.exists() {
        let staging = root.join(TMP).join(format!("{entry_key}-{}", unique()));
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join(cachedir::STACK_LIST), format!("{name}\n")).unwrap();
        std::fs::rename(&staging, entry).unwrap();
    }
    drop(entry_lock);
    drop(lock);
}

#[test]
fn prune_racing_starts_and_rm_never_takes_a_layer_a_published_entry_names() {
    let fx = Fixture::new();
    let root = fx.root().to_path_buf();
    let done = std::sync::atomic::AtomicBool::new(false);
    /// Stops the pruner however the starts end (a failed assertion too).
    struct Done<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let c = Cache::new(root.clone());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (out, _) = c.prune(&Prune::default()).unwrap();
                let failed: Vec<_> = out
                    .iter()
                    .filter(|o| matches!(o, Outcome::Failed(..)))
                    .collect();
                assert!(failed.is_empty(), "{failed:?}");
            }
        });
        let _done = Done(&done);
        let c = Cache::new(root.clone());
        let lk = key(0xe1);
        let layer = root
            .join(cachedir::LAYERS)
            .join(cachedir::layer_name(&lk))
            .join("tree/bin/sh");
        for i in 0..100u32 {
            // An unused layer (from a start whose layers did not stack, pruned at any time),
            // then an image on it: started (sharing the layer, or extracting it again), its
            // layer checked, removed with it.
            let ek = key(1 + (i % 2) as u8);
            start(&root, None, &lk);
            start(&root, Some(&ek), &lk);
            assert!(
                layer.exists(),
                "round {i}: the layer of a published entry is gone"
            );
            for o in c.rm(std::slice::from_ref(&ek)).unwrap() {
                assert!(!matches!(o, Outcome::Failed(..)), "{o:?}");
            }
        }
    });
    // Every entry left still has its layer.
    for r in fx.cache.list().unwrap() {
        for l in &r.layers {
            assert!(fx.layer_dir(l).is_dir(), "{} lost {l}", r.name);
        }
    }
}
