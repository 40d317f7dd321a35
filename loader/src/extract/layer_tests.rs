//! Layers extracted alone ([`Extractor::for_layer`]): their markers, what [`LayerInfo`] says,
//! and the property the layer store rests on: where [`crate::cache::stackable`] says so, the
//! layers' stack (merged as overlayfs merges it) is the tree the merged extraction makes.

use super::tests::names;
use super::*;
use crate::stack::{self, Found, Stack};
use crate::tar::testutil::TarBuilder;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

const FORMS: [Whiteouts; 2] = [Whiteouts::CharDev, Whiteouts::Xattr];

/// Extracts `tar` alone into `dir` (made here).
fn layer(dir: &Path, tar: &[u8], form: Whiteouts) -> Result<LayerInfo, ExtractError> {
    std::fs::create_dir_all(dir).unwrap();
    let mut x = Extractor::for_layer(dir, form).unwrap();
    x.apply_tar("layer", tar)?;
    x.finish_layer()
}

/// What a tree shows, merged as overlayfs merges `dirs`: path → type, mode and contents.
fn describe(s: &Stack) -> BTreeMap<String, String> {
    fn walk(dirs: &[PathBuf], rel: &str, out: &mut BTreeMap<String, String>) {
        let mut all = std::collections::BTreeSet::new();
        for d in dirs {
            for e in std::fs::read_dir(d).unwrap() {
                all.insert(e.unwrap().file_name());
            }
        }
        for n in all {
            let path = format!("{rel}/{}", n.to_string_lossy());
            let (what, m) = match stack::child(dirs, &n).unwrap() {
                Found::Missing => continue,
                Found::Dir(below, m) => {
                    walk(&below, &path, out);
                    ("dir".to_string(), m)
                }
                Found::NonDir(p, m) if m.is_file() => {
                    // Not the link count: a whiteout of one name of a hard-linked file leaves the
                    // other's count as it was in its layer (as with Docker's overlay2).
                    let data = std::fs::read(&p).unwrap();
                    (format!("file {:?}", String::from_utf8_lossy(&data)), m)
                }
                Found::NonDir(p, m) if m.file_type().is_symlink() => (
                    format!("link {}", std::fs::read_link(&p).unwrap().display()),
                    m,
                ),
                Found::NonDir(_, m) if m.file_type().is_fifo() => ("fifo".into(), m),
                Found::NonDir(_, m) => (format!("other {:o}", m.mode()), m),
            };
            out.insert(
                path,
                format!("{what} {:o}", m.permissions().mode() & 0o7777),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(s.dirs(), "", &mut out);
    out
}

/// Extracts `tars` merged and each alone; returns the merged tree's description, the stack's
/// (when [`crate::cache::stackable`] accepts it) or why it is not stackable.
fn both(
    tars: &[Vec<u8>],
    form: Whiteouts,
) -> (
    BTreeMap<String, String>,
    Result<BTreeMap<String, String>, String>,
) {
    let t = tempfile::tempdir().unwrap();
    let merged = t.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let mut x = Extractor::new(&merged).unwrap();
    for (i, tar) in tars.iter().enumerate() {
        x.apply_tar(&format!("l{i}"), &tar[..]).unwrap();
    }
    x.finish().unwrap();
    // Topmost first, each layer once (its topmost copy), as the cache stacks them.
    let mut dirs = Vec::new();
    let mut infos = Vec::new();
    let mut seen = Vec::new();
    for (i, tar) in tars.iter().enumerate().rev() {
        if seen.contains(&tar) {
            continue;
        }
        seen.push(tar);
        let d = t.path().join(format!("l{i}"));
        infos.push(Some(layer(&d, tar, form).unwrap()));
        dirs.push(d);
    }
    let s = Stack(dirs);
    let stacked = crate::cache::stackable(&s, &infos, form, false).map(|fixes| {
        let mut dirs = s.dirs().to_vec();
        if !fixes.is_empty() {
            let fix = t.path().join("fix");
            crate::cache::make_fix(&fix, &fixes).unwrap();
            dirs.insert(0, fix);
        }
        describe(&Stack(dirs))
    });
    (
        describe(&Stack::from(merged)),
        stacked.map_err(String::from),
    )
}

#[track_caller]
fn same_tree(tars: &[Vec<u8>]) {
    for form in FORMS {
        let (merged, stacked) = both(tars, form);
        let stacked = stacked.unwrap_or_else(|why| panic!("{form:?}: not stackable: {why}"));
        assert_eq!(stacked, merged, "{form:?}");
    }
}

#[track_caller]
fn not_stackable(tars: &[Vec<u8>], why: &str) {
    for form in FORMS {
        let e = both(tars, form).1.unwrap_err();
        assert!(e.contains(why), "{form:?}: {e}");
    }
}

#[test]
fn whiteouts_become_markers_and_opaque_dirs_get_the_xattr() {
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/.wh.gone", 0o644, b"")
        .file("etc/kept", 0o644, b"k")
        .dir("doc", 0o755)
        .file("doc/.wh..wh..opq", 0o644, b"")
        .file("doc/README", 0o644, b"r")
        .file(".wh..wh.plnk", 0o644, b"")
        .finish();
    for form in FORMS {
        let t = tempfile::tempdir().unwrap();
        let info = layer(t.path(), &tar, form).unwrap();
        assert_eq!(
            info,
            LayerInfo {
                whiteout_dirs: vec![b"etc".to_vec()],
                ..LayerInfo::default()
            }
        );
        assert!(info.implicit_dirs.is_empty());
        assert_eq!(names(&t.path().join("etc")).len(), 2, "{form:?}");
        assert_eq!(names(t.path()), ["doc", "etc"].map(String::from).into());
        let gone = t.path().join("etc/gone");
        let m = std::fs::symlink_metadata(&gone).unwrap();
        assert!(stack::is_whiteout(&gone, &m), "{form:?}");
        assert_eq!(m.file_type().is_char_device(), form == Whiteouts::CharDev);
        assert!(stack::is_opaque(&t.path().join("doc")));
        assert!(!stack::is_opaque(&t.path().join("etc")));
        assert_eq!(names(&t.path().join("doc")), ["README".to_string()].into());
        assert_eq!(mode(&t.path().join("etc")), 0o755);
        let b = info.to_bytes();
        assert_eq!(LayerInfo::parse(&b), Some(info));
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn layer_info_round_trips_and_refuses_what_it_does_not_know() {
    let info = LayerInfo {
        outside_link: true,
        opaque_root: true,
        implicit_dirs: vec![(b"a".to_vec(), false), (b"a/b".to_vec(), true)],
        whiteout_dirs: vec![b"".to_vec(), b"a/b\nc".to_vec()],
    };
    assert_eq!(LayerInfo::parse(&info.to_bytes()), Some(info));
    assert_eq!(
        LayerInfo::parse(&LayerInfo::default().to_bytes()),
        Some(LayerInfo::default())
    );
    assert_eq!(
        LayerInfo::parse(b"oci2bin layer info v1\nflags later\n"),
        None
    );
    assert_eq!(LayerInfo::parse(b"oci2bin layer info v0\nflags\n"), None);
    assert_eq!(
        LayerInfo::parse(b"oci2bin layer info v1\nflags\nno-nul"),
        None
    );
}

#[test]
fn whiteouts_an_opaque_dir_makes_useless_are_dropped() {
    let tar = TarBuilder::new()
        .dir("a", 0o755)
        .file("a/.wh.x", 0o644, b"")
        .file("a/.wh..wh..opq", 0o644, b"")
        .file("a/.wh.y", 0o644, b"")
        .file("a/z", 0o644, b"z")
        .finish();
    for form in FORMS {
        let t = tempfile::tempdir().unwrap();
        let info = layer(t.path(), &tar, form).unwrap();
        assert!(info.whiteout_dirs.is_empty(), "{info:?}");
        assert_eq!(names(&t.path().join("a")), ["z".to_string()].into());
        assert!(stack::is_opaque(&t.path().join("a")));
    }
}

#[test]
fn what_a_layer_alone_cannot_know_is_reported_not_guessed() {
    for form in FORMS {
        let t = tempfile::tempdir().unwrap();
        // Parents without entries; a link to a file the layer lacks; an opaque root.
        let tar = TarBuilder::new()
            .file("usr/lib/x", 0o644, b"x")
            .hardlink("usr/lib/y", "usr/lib/elsewhere")
            .hardlink("usr/lib/z", "no/such/dir/f")
            .finish();
        let mut info = layer(&t.path().join("1"), &tar, form).unwrap();
        assert!(info.outside_link, "{info:?}");
        info.implicit_dirs.sort();
        let implicit = [(b"usr".to_vec(), false), (b"usr/lib".to_vec(), false)];
        assert_eq!(info.implicit_dirs, implicit);
        assert!(!t.path().join("1/usr/lib/y").exists());
        let tar = TarBuilder::new()
            .dir("usr", 0o755)
            .file("usr/x", 0o644, b"x")
            .hardlink("usr/y", "usr/x")
            .finish();
        let info = layer(&t.path().join("2"), &tar, form).unwrap();
        assert_eq!(info, LayerInfo::default());
        assert_eq!(
            std::fs::metadata(t.path().join("2/usr/y")).unwrap().nlink(),
            2
        );
        let tar = TarBuilder::new().file(".wh..wh..opq", 0o644, b"").finish();
        assert!(layer(&t.path().join("3"), &tar, form).unwrap().opaque_root);
        // A directory described after its children were made.
        let tar = TarBuilder::new()
            .file("a/b", 0o644, b"")
            .dir("a", 0o700)
            .finish();
        let info = layer(&t.path().join("5"), &tar, form).unwrap();
        assert_eq!(info.implicit_dirs, [(b"a".to_vec(), true)]);
        // A link to a whited-out name is a link to nothing.
        let tar = TarBuilder::new()
            .dir("d", 0o755)
            .file("d/.wh.f", 0o644, b"")
            .hardlink("d/g", "d/f")
            .finish();
        assert!(layer(&t.path().join("4"), &tar, form).unwrap().outside_link);
    }
}

#[test]
fn an_images_own_overlay_xattrs_are_never_set() {
    if crate::sys::fs::geteuid() != 0 {
        eprintln!("skipped: extracting with owners needs root (or a mapped namespace)");
        return;
    }
    let tar = TarBuilder::new()
        .pax(&[
            ("SCHILY.xattr.user.overlay.opaque", "y"),
            ("SCHILY.xattr.user.note", "kept"),
        ])
        .dir("d", 0o755)
        .finish();
    let t = tempfile::tempdir().unwrap();
    let mut x = Extractor::new(t.path()).unwrap().with_owners(true);
    x.apply_tar("l", &tar[..]).unwrap();
    x.finish().unwrap();
    assert!(!stack::is_opaque(&t.path().join("d")));
}

#[test]
fn stacked_layers_show_the_merged_tree() {
    let base = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/a", 0o644, b"a")
        .file("etc/b", 0o600, b"b")
        .dir("var/cache", 0o555)
        .file("var/cache/x/y", 0o444, b"y")
        .dir("app", 0o755)
        .file("app/old", 0o644, b"old")
        .file("app/sub/lower", 0o644, b"lower")
        .file("app/keepdir/lower", 0o644, b"lower")
        .file("was-dir/child", 0o644, b"c")
        .file("was-file", 0o644, b"f")
        .symlink("lib", "usr/lib")
        .file("usr/lib/libc", 0o755, b"libc")
        .file("d/f", 0o644, b"1")
        .file("big/one", 0o644, b"1")
        .hardlink("big/two", "big/one")
        .finish();
    // Whiteouts of files, dirs, links and of nothing; an opaque dir with entries on both sides
    // of its marker; types replaced both ways; whiteout then recreate in the same layer.
    let l2 = TarBuilder::new()
        .dir("etc", 0o750)
        .file("etc/.wh.a", 0o644, b"")
        .file("etc/.wh.never-was", 0o644, b"")
        .dir("var", 0o755)
        .file("var/.wh.cache", 0o644, b"")
        .file(".wh.lib", 0o644, b"")
        .dir("app", 0o755)
        .file("app/before", 0o644, b"before")
        .dir("app/keepdir", 0o700)
        .file("app/keepdir/mine", 0o644, b"mine")
        .file("app/.wh..wh..opq", 0o644, b"")
        .file("app/after", 0o644, b"after")
        .file("was-dir", 0o644, b"now a file")
        .dir("was-file", 0o750)
        .file("was-file/inner", 0o644, b"i")
        .file(".wh.d", 0o644, b"")
        .dir("d", 0o711)
        .file("d/new", 0o644, b"2")
        .dir("big", 0o755)
        .file("big/.wh.one", 0o644, b"")
        .finish();
    // A file replacing a whiteout, links inside one layer, a dir whited out and made again
    // with other content, a directory over a link.
    let l3 = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/a", 0o640, b"again")
        .dir("lib", 0o755)
        .file("lib/own", 0o644, b"own")
        .hardlink("lib/own2", "lib/own")
        .dir("var", 0o755)
        .dir("var/cache", 0o755)
        .file("var/cache/fresh", 0o644, b"fresh")
        .finish();
    same_tree(&[base.clone(), l2.clone(), l3.clone()]);
    same_tree(&[base.clone(), l3.clone()]);
    same_tree(std::slice::from_ref(&base));
    // The same layer twice: the upper copy is the one that counts.
    same_tree(&[base.clone(), l3.clone(), l2.clone(), l3.clone()]);
    same_tree(&[base, l2, l3.clone(), l3]);
}

#[test]
fn layers_that_would_stack_differently_are_refused() {
    let base = TarBuilder::new()
        .symlink("lib", "usr/lib")
        .dir("usr/lib", 0o700)
        .file("usr/lib/x", 0o644, b"x")
        .file("etc", 0o644, b"a file")
        .finish();
    // A parent without an entry goes through the base's symlink in the merged tree.
    let through = TarBuilder::new().file("lib/y", 0o644, b"y").finish();
    not_stackable(&[base.clone(), through], "made over a non-directory");
    // Even when the layer describes it afterwards.
    let late = TarBuilder::new()
        .file("lib/y", 0o644, b"y")
        .dir("lib", 0o755)
        .finish();
    not_stackable(&[base.clone(), late], "made over a non-directory");
    // A link to a file of the base.
    let link = TarBuilder::new()
        .dir("usr", 0o755)
        .dir("usr/lib", 0o700)
        .hardlink("usr/lib/z", "usr/lib/x")
        .finish();
    not_stackable(&[base.clone(), link], "hard link");
    // An opaque root above another layer.
    let opaque = TarBuilder::new().file(".wh..wh..opq", 0o644, b"").finish();
    not_stackable(&[base.clone(), opaque.clone()], "opaque root");
    same_tree(&[opaque]);
}

#[test]
fn a_fix_layer_gives_undescribed_directories_the_merged_trees_attributes() {
    let base = TarBuilder::new()
        .dir("usr", 0o711)
        .dir("usr/share", 0o750)
        .dir("usr/share/doc", 0o700)
        .file("usr/share/doc/old", 0o644, b"old")
        .dir("etc", 0o755)
        .finish();
    // umoci's layers describe no unchanged parent: usr, usr/share and usr/share/doc keep the
    // base's modes in the merged tree.
    let l2 = TarBuilder::new()
        .file("usr/share/doc/new", 0o644, b"new")
        .file("etc/.wh.motd", 0o644, b"")
        .file("opt/app/bin", 0o755, b"app")
        .finish();
    let l3 = TarBuilder::new()
        .dir("usr", 0o755)
        .file("usr/share/doc/newer", 0o644, b"newer")
        .finish();
    same_tree(&[base.clone(), l2.clone()]);
    same_tree(&[base.clone(), l2.clone(), l3.clone()]);
    same_tree(&[base.clone(), l3]);
    // A whiteout in a directory no other layer has: the fix layer merges with it.
    let stray = TarBuilder::new()
        .dir("new", 0o755)
        .file("new/.wh.x", 0o644, b"")
        .file("new/f", 0o644, b"f")
        .finish();
    let (merged, stacked) = both(&[base.clone(), stray.clone()], Whiteouts::CharDev);
    assert_eq!(stacked.unwrap(), merged);
    let (merged, stacked) = both(std::slice::from_ref(&stray), Whiteouts::CharDev);
    assert_eq!(stacked.unwrap(), merged);
    // Overlayfs would list an xattr whiteout even there: no stack.
    let e = both(&[base.clone(), stray], Whiteouts::Xattr)
        .1
        .unwrap_err();
    assert!(e.contains("merged with no layer"), "{e}");
    // Which directories the fix layer holds, and from where.
    let t = tempfile::tempdir().unwrap();
    let (b, u) = (t.path().join("b"), t.path().join("u"));
    let infos = vec![
        Some(layer(&u, &l2, Whiteouts::CharDev).unwrap()),
        Some(layer(&b, &base, Whiteouts::CharDev).unwrap()),
    ];
    let fixes = crate::cache::stackable(
        &Stack(vec![u, b.clone()]),
        &infos,
        Whiteouts::CharDev,
        false,
    )
    .unwrap();
    let mut got: Vec<(String, PathBuf)> = fixes
        .into_iter()
        .map(|f| (f.rel.display().to_string(), f.from))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("etc".to_string(), b.join("etc")),
            ("usr".to_string(), b.join("usr")),
            ("usr/share".to_string(), b.join("usr/share")),
            ("usr/share/doc".to_string(), b.join("usr/share/doc")),
        ]
    );
}

#[test]
fn more_layers_than_one_mount_option_page_takes_are_stacked_only_with_lowerdir_plus() {
    let t = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new().file("f", 0o644, b"f").finish();
    let mut dirs = Vec::new();
    let mut infos = Vec::new();
    for i in 0..40 {
        let d = t.path().join(format!("{}{i:02}", "l".repeat(90)));
        infos.push(Some(layer(&d, &tar, Whiteouts::CharDev).unwrap()));
        dirs.push(d);
    }
    let stack = |n: usize, plus: bool| {
        let dirs = Stack(dirs.iter().cycle().take(n).cloned().collect());
        let infos: Vec<_> = infos.iter().cycle().take(n).cloned().collect();
        crate::cache::stackable(&dirs, &infos, Whiteouts::CharDev, plus)
    };
    assert_eq!(
        stack(40, false).unwrap_err(),
        "too many layers for one mount"
    );
    assert!(stack(10, false).is_ok());
    // One by one, up to overlayfs's own limit (500 lowers, the fix layer one of them).
    assert!(stack(40, true).is_ok());
    assert!(stack(499, true).is_ok());
    assert_eq!(
        stack(500, true).unwrap_err(),
        "too many layers for one mount"
    );
}
