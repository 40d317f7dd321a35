use super::*;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::symlink;

/// Layer helpers: whiteouts and opaque markers as the extractor writes them.
fn whiteout(dir: &Path, name: &str) {
    let d = File::open(dir).unwrap();
    sys::mkwhiteoutat(d.as_fd(), &CString::new(name).unwrap()).unwrap();
}

fn xattr_whiteout(dir: &Path, name: &str) {
    let f = File::create(dir.join(name)).unwrap();
    sys::fsetxattr(f.as_fd(), WHITEOUT_XATTR, b"").unwrap();
}

fn opaque(dir: &Path) {
    let d = File::open(dir).unwrap();
    sys::fsetxattr(d.as_fd(), OPAQUE_XATTR, b"y").unwrap();
}

fn layers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let t = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..n).map(|i| t.path().join(format!("l{i}"))).collect();
    for d in &dirs {
        fs::create_dir(d).unwrap();
    }
    (t, dirs)
}

fn kind(f: &Found) -> String {
    match f {
        Found::Missing => "missing".into(),
        Found::NonDir(p, m) if m.file_type().is_symlink() => {
            format!("link {}", fs::read_link(p).unwrap().display())
        }
        Found::NonDir(p, _) => format!("file {}", fs::read_to_string(p).unwrap()),
        Found::Dir(d, _) => format!("dir x{}", d.len()),
    }
}

#[test]
fn the_topmost_layer_decides_and_directories_merge() {
    // l0 is the top.
    let (_t, l) = layers(3);
    fs::create_dir_all(l[2].join("etc/apt")).unwrap();
    fs::write(l[2].join("etc/passwd"), "base").unwrap();
    fs::write(l[2].join("etc/group"), "base").unwrap();
    fs::create_dir_all(l[1].join("etc")).unwrap();
    fs::write(l[1].join("etc/passwd"), "middle").unwrap();
    fs::create_dir_all(l[0].join("etc")).unwrap();
    let s = Stack(l.clone());
    assert_eq!(kind(&s.lookup("/etc/passwd")), "file middle");
    assert_eq!(kind(&s.lookup("etc/group")), "file base");
    assert_eq!(kind(&s.lookup("etc")), "dir x3");
    assert_eq!(kind(&s.lookup("etc/apt")), "dir x1");
    assert_eq!(kind(&s.lookup("etc/nothing")), "missing");
    assert_eq!(kind(&s.lookup("etc/passwd/below")), "missing");
    assert_eq!(kind(&s.lookup("/")), "dir x3");
    assert_eq!(kind(&s.lookup("../etc")), "missing");
    // The directory's attributes are the topmost one's.
    let m = s.lookup("etc").metadata().unwrap().ino();
    assert_eq!(m, fs::metadata(l[0].join("etc")).unwrap().ino());
}

#[test]
fn whiteouts_hide_what_is_below_them_in_both_forms() {
    let (_t, l) = layers(3);
    for d in &l {
        fs::create_dir(d.join("etc")).unwrap();
    }
    fs::write(l[2].join("etc/a"), "base").unwrap();
    fs::write(l[2].join("etc/b"), "base").unwrap();
    fs::create_dir_all(l[2].join("usr/lib")).unwrap();
    whiteout(&l[1].join("etc"), "a");
    xattr_whiteout(&l[1].join("etc"), "b");
    whiteout(&l[1], "usr");
    // Above a whiteout, a new object shows.
    fs::write(l[0].join("etc/a"), "top").unwrap();
    let s = Stack(l.clone());
    assert_eq!(kind(&s.lookup("etc/a")), "file top");
    assert_eq!(kind(&s.lookup("etc/b")), "missing");
    assert_eq!(kind(&s.lookup("usr")), "missing");
    assert_eq!(kind(&s.lookup("usr/lib")), "missing");
    // A zero-size file without the xattr is a file like any other.
    fs::write(l[0].join("etc/empty"), "").unwrap();
    assert_eq!(kind(&s.lookup("etc/empty")), "file ");
}

#[test]
fn an_opaque_directory_hides_the_layers_below_it_and_a_file_hides_a_directory() {
    let (_t, l) = layers(3);
    fs::create_dir_all(l[2].join("doc/old")).unwrap();
    fs::create_dir_all(l[1].join("doc")).unwrap();
    opaque(&l[1].join("doc"));
    fs::write(l[1].join("doc/README"), "new").unwrap();
    fs::create_dir_all(l[0].join("doc")).unwrap();
    fs::create_dir_all(l[2].join("opt/x")).unwrap();
    fs::write(l[1].join("opt"), "file").unwrap();
    fs::create_dir_all(l[0].join("opt/y")).unwrap();
    let s = Stack(l.clone());
    assert_eq!(kind(&s.lookup("doc")), "dir x2");
    assert_eq!(kind(&s.lookup("doc/old")), "missing");
    assert_eq!(kind(&s.lookup("doc/README")), "file new");
    // A directory above a file stands alone.
    assert_eq!(kind(&s.lookup("opt")), "dir x1");
    assert_eq!(kind(&s.lookup("opt/x")), "missing");
    assert_eq!(kind(&s.lookup("opt/y")), "dir x1");
    // The opaque marker means nothing on the bottom layer.
    let bottom = Stack(vec![l[1].clone()]);
    assert_eq!(kind(&bottom.lookup("doc")), "dir x1");
}

#[test]
fn symlinks_are_found_but_never_followed() {
    let (_t, l) = layers(2);
    fs::create_dir_all(l[1].join("usr/lib")).unwrap();
    fs::write(l[1].join("usr/lib/os-release"), "x").unwrap();
    symlink("usr/lib", l[0].join("lib")).unwrap();
    symlink("/", l[0].join("up")).unwrap();
    let s = Stack(l);
    assert_eq!(kind(&s.lookup("lib")), "link usr/lib");
    assert_eq!(kind(&s.lookup("lib/os-release")), "missing");
    assert_eq!(kind(&s.lookup("up/etc/passwd")), "missing");
}

#[test]
fn lowerdir_lists_the_layers_topmost_first_escaped() {
    let s = Stack(vec!["/c/l,2".into(), "/c/l:1".into(), "/c/b\\0".into()]);
    assert_eq!(s.lowerdir(), "/c/l\\,2:/c/l\\:1:/c/b\\\\0");
    assert_eq!(Stack::from("/x").lowerdir(), "/x");
    assert_eq!(escape(Path::new("/plain/path")), "/plain/path");
}
