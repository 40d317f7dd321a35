//! The fallback when overlayfs cannot be mounted: a private copy of the rootfs (on the run's
//! tmpfs), so writes still never reach the cache. Also fills an empty volume from the image.

use crate::stack::{self, Found, Stack};
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Copies the tree under `src` into the existing directory `dst`: directories, regular files
/// (with their permission bits) and symlinks (as they are, never followed). Device nodes, fifos
/// and sockets are skipped; hard links become separate copies.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    copy_merged(&[src.to_path_buf()], dst)
}

/// [`copy_tree`] of the tree a stack shows: its layers merged as overlayfs merges them
/// ([`stack::child`]), whiteouts and what they hide left out.
pub fn copy_stack(src: &Stack, dst: &Path) -> io::Result<()> {
    copy_merged(src.dirs(), dst)
}

fn ctx(what: &str, p: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}

/// Copies the directory merged from `dirs` (topmost first) into `dst`.
fn copy_merged(dirs: &[PathBuf], dst: &Path) -> io::Result<()> {
    let (mut names, mut seen) = (Vec::new(), HashSet::new());
    for d in dirs {
        for entry in fs::read_dir(d).map_err(|e| ctx("read dir", d, e))? {
            let name = entry.map_err(|e| ctx("read dir", d, e))?.file_name();
            if seen.insert(name.as_bytes().to_vec()) {
                names.push(name);
            }
        }
    }
    for name in names {
        let to = dst.join(&name);
        let found = stack::child(dirs, &name).map_err(|e| ctx("stat", &dirs[0].join(&name), e))?;
        let meta = match &found {
            Found::Missing => continue,
            Found::NonDir(_, m) | Found::Dir(_, m) => m.clone(),
        };
        let ft = meta.file_type();
        match found {
            Found::Missing => {}
            Found::Dir(below, _) => {
                fs::create_dir(&to).map_err(|e| ctx("create dir", &to, e))?;
                copy_merged(&below, &to)?;
                owner(&to, &meta);
                // Last, so a read-only directory can still be filled.
                fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode()))
                    .map_err(|e| ctx("chmod", &to, e))?;
            }
            Found::NonDir(from, _) if ft.is_file() => {
                fs::copy(&from, &to).map_err(|e| ctx("copy", &from, e))?;
                owner(&to, &meta);
                // chown cleared setuid/setgid bits: the mode again.
                fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode()))
                    .map_err(|e| ctx("chmod", &to, e))?;
            }
            Found::NonDir(from, _) if ft.is_symlink() => {
                let target = fs::read_link(&from).map_err(|e| ctx("read link", &from, e))?;
                symlink(&target, &to).map_err(|e| ctx("symlink", &to, e))?;
                owner(&to, &meta);
            }
            Found::NonDir(..) => {}
        }
    }
    Ok(())
}

/// The source's owner, where we may give it (a mapped namespace); else the copy stays ours.
fn owner(to: &Path, meta: &fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let _ = std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_dirs_files_modes_and_symlinks_without_following_them() {
        let s = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(s.path().join("a/b")).unwrap();
        fs::write(s.path().join("a/b/f"), b"data").unwrap();
        fs::set_permissions(s.path().join("a/b/f"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("/etc/passwd", s.path().join("a/abs")).unwrap();
        fs::set_permissions(s.path().join("a/b"), fs::Permissions::from_mode(0o555)).unwrap();
        copy_tree(s.path(), d.path()).unwrap();
        assert_eq!(fs::read(d.path().join("a/b/f")).unwrap(), b"data");
        let mode = |p: &str| fs::metadata(d.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("a/b/f"), 0o751);
        assert_eq!(mode("a/b"), 0o555);
        assert_eq!(
            fs::read_link(d.path().join("a/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        fs::set_permissions(s.path().join("a/b"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(d.path().join("a/b"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_stack_is_copied_as_overlayfs_merges_it() {
        use std::os::fd::AsFd;
        let s = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let (top, bottom) = (s.path().join("top"), s.path().join("bottom"));
        fs::create_dir_all(bottom.join("etc/old")).unwrap();
        fs::write(bottom.join("etc/gone"), b"x").unwrap();
        fs::write(bottom.join("etc/kept"), b"base").unwrap();
        fs::create_dir_all(bottom.join("doc/deep")).unwrap();
        fs::write(bottom.join("doc/base"), b"x").unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::set_permissions(top.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        let etc = fs::File::open(top.join("etc")).unwrap();
        crate::sys::fs::mkwhiteoutat(etc.as_fd(), c"gone").unwrap();
        crate::sys::fs::mkwhiteoutat(etc.as_fd(), c"old").unwrap();
        fs::write(top.join("etc/new"), b"top").unwrap();
        fs::create_dir_all(top.join("doc")).unwrap();
        let doc = fs::File::open(top.join("doc")).unwrap();
        crate::sys::fs::fsetxattr(doc.as_fd(), stack::OPAQUE_XATTR, b"y").unwrap();
        fs::write(top.join("doc/only"), b"x").unwrap();
        copy_stack(&Stack(vec![top, bottom]), d.path()).unwrap();
        let ls = |p: &str| {
            let mut v: Vec<String> = fs::read_dir(d.path().join(p))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(ls("etc"), ["kept", "new"]);
        assert_eq!(ls("doc"), ["only"]);
        assert_eq!(fs::read(d.path().join("etc/kept")).unwrap(), b"base");
        let mode = fs::metadata(d.path().join("etc"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o750, "the topmost directory's mode");
    }
}
