//! The fallback when overlayfs cannot be mounted: a private copy of the rootfs (on the run's
//! tmpfs), so writes still never reach the cache. Also fills an empty volume from the image.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// Copies the tree under `src` into the existing directory `dst`: directories, regular files
/// (with their permission bits) and symlinks (as they are, never followed). Device nodes, fifos
/// and sockets are skipped; hard links become separate copies.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let ctx = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    for entry in fs::read_dir(src).map_err(|e| ctx("read dir", src, e))? {
        let entry = entry.map_err(|e| ctx("read dir", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(|e| ctx("stat", &from, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(|e| ctx("create dir", &to, e))?;
            copy_tree(&from, &to)?;
            owner(&to, &meta);
            // Last, so a read-only directory can still be filled.
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode()))
                .map_err(|e| ctx("chmod", &to, e))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| ctx("copy", &from, e))?;
            owner(&to, &meta);
            // chown cleared setuid/setgid bits: the mode again.
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.permissions().mode()))
                .map_err(|e| ctx("chmod", &to, e))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| ctx("read link", &from, e))?;
            symlink(&target, &to).map_err(|e| ctx("symlink", &to, e))?;
            owner(&to, &meta);
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
}
