//! Seeding a fresh writable layer: the per-run files (hostname, hosts, resolv.conf, apt's
//! sandbox note, the placeholders the user-switching shims are bound onto) written straight
//! into the overlay's empty upper directory before it is mounted.
//!
//! Written through the mounted overlay instead, each one costs a copy-up of its directory
//! (a temporary in the work directory, its attributes copied, a rename) and, for a file that
//! replaces a symlink, a whiteout and a create over it: together ~0.5 ms of every start. Here a
//! directory the image has is made in the upper with the image's mode, owner and times (what a
//! copy-up keeps, but the directory's extended attributes), and a file the image has keeps the
//! image's mode and owner, as a write through the overlay would.
//!
//! The plan seeds only under directories the image has as real directories or not at all
//! ([`crate::plan::HostFacts::plain_dirs`]), so no symlink is ever followed here.

use crate::plan::Seed;
use crate::stack::{self, Found, Stack};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `seeds` into `upper` (empty, or the lower tree itself for the copy fallback), with
/// attributes from what `lower` shows.
pub fn seed(lower: &Stack, upper: &Path, seeds: &[Seed]) -> io::Result<()> {
    let mut made: Vec<(std::path::PathBuf, fs::Metadata)> = Vec::new();
    for s in seeds {
        let rel = s.path.strip_prefix("/").unwrap_or(&s.path);
        // What the image has at the path so far: the directories merged into it, if any.
        let mut l: Option<Vec<std::path::PathBuf>> = Some(lower.dirs().to_vec());
        let mut u = upper.to_path_buf();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            u.push(part);
            let found = match &l {
                Some(dirs) => stack::child(dirs, part.as_os_str())?,
                None => Found::Missing,
            };
            l = None;
            match fs::symlink_metadata(&u) {
                Ok(m) if m.is_dir() => {
                    if let Found::Dir(d, _) = found {
                        l = Some(d);
                    }
                    continue;
                }
                Ok(_) => return Err(not_a_dir(&u)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            match found {
                Found::Dir(d, m) => {
                    fs::DirBuilder::new().mode(0o700).create(&u)?;
                    made.push((u.clone(), m));
                    l = Some(d);
                }
                Found::NonDir(p, _) => return Err(not_a_dir(&p)),
                Found::Missing => {
                    fs::DirBuilder::new().mode(0o755).create(&u)?;
                }
            }
        }
        let name = rel.file_name().unwrap_or_default();
        u.push(name);
        let image = match &l {
            Some(dirs) => match stack::child(dirs, name)? {
                Found::NonDir(_, m) if m.is_file() => Some(m),
                _ => None,
            },
            None => None,
        };
        match fs::symlink_metadata(&u) {
            // The copy fallback: the image's own file or link, replaced rather than followed.
            Ok(m) if !m.is_dir() => fs::remove_file(&u)?,
            _ => {}
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&u)?;
        f.write_all(&s.contents)?;
        match &image {
            Some(m) => {
                own(&f, m)?;
                f.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777))?;
            }
            None => f.set_permissions(fs::Permissions::from_mode(0o644))?,
        }
    }
    // Deepest first, after their files: creating those changed the times just set otherwise.
    for (dir, m) in made.iter().rev() {
        let d = fs::File::open(dir)?;
        own(&d, m)?;
        d.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777))?;
        d.set_times(
            fs::FileTimes::new()
                .set_accessed(m.accessed()?)
                .set_modified(m.modified()?),
        )?;
    }
    Ok(())
}

/// Gives `f` the image's owner where it differs from ours (a range-mapped image's own ids).
fn own(f: &fs::File, image: &fs::Metadata) -> io::Result<()> {
    let ours = f.metadata()?;
    if (ours.uid(), ours.gid()) == (image.uid(), image.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(f, Some(image.uid()), Some(image.gid()))
}

fn not_a_dir(p: &Path) -> io::Error {
    io::Error::other(format!("{} is not a directory", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn seed_of(path: &str, contents: &[u8]) -> Seed {
        Seed {
            path: path.into(),
            contents: contents.to_vec(),
        }
    }

    #[test]
    fn seeds_land_in_the_upper_with_the_image_directories_mode_and_times() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("bin")).unwrap();
        fs::write(lower.join("etc/hosts"), "old").unwrap();
        fs::set_permissions(lower.join("etc/hosts"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(lower.join("etc"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("busybox", lower.join("bin/setpriv")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(lower.join("etc"))
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
        fs::create_dir(&upper).unwrap();
        seed(
            &Stack::from(lower.clone()),
            &upper,
            &[
                seed_of("/etc/hosts", b"127.0.0.1 localhost\n"),
                seed_of("/etc/hostname", b"box\n"),
                seed_of("/etc/apt/apt.conf.d/00x", b"x"),
                seed_of("/bin/setpriv", b""),
            ],
        )
        .unwrap();
        let md = |p: &str| fs::symlink_metadata(upper.join(p)).unwrap();
        assert_eq!(
            fs::read(upper.join("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(
            md("etc/hosts").mode() & 0o7777,
            0o640,
            "the image's mode kept"
        );
        assert_eq!(md("etc/hostname").mode() & 0o7777, 0o644);
        assert_eq!(md("etc").mode() & 0o7777, 0o751);
        assert_eq!(md("etc").modified().unwrap(), old, "the image's times kept");
        assert_eq!(
            md("etc/apt").mode() & 0o7777,
            0o755,
            "new directories are 0755"
        );
        assert!(md("bin/setpriv").is_file(), "a placeholder, not the link");
        assert_eq!(fs::read_to_string(lower.join("etc/hosts")).unwrap(), "old");
    }

    #[test]
    fn a_seed_under_an_image_symlink_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(t.path().join("outside")).unwrap();
        symlink(t.path().join("outside"), lower.join("etc")).unwrap();
        fs::create_dir(&upper).unwrap();
        let lower = Stack::from(lower);
        assert!(seed(&lower, &upper, &[seed_of("/etc/hosts", b"x")]).is_err());
        assert!(!t.path().join("outside/hosts").exists());
        assert!(!upper.join("etc").exists());
    }

    #[test]
    fn the_copy_fallback_replaces_a_link_in_place_rather_than_writing_through_it() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(t.path().join("host-file"), "host").unwrap();
        symlink(t.path().join("host-file"), root.join("etc/resolv.conf")).unwrap();
        seed(
            &Stack::from(root.clone()),
            &root,
            &[seed_of("/etc/resolv.conf", b"nameserver 1.1.1.1\n")],
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("host-file")).unwrap(),
            "host"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn seeds_over_layers_take_the_attributes_the_overlay_shows() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom, upper) = (
            t.path().join("top"),
            t.path().join("bottom"),
            t.path().join("upper"),
        );
        fs::create_dir_all(bottom.join("etc")).unwrap();
        fs::write(bottom.join("etc/hosts"), "old").unwrap();
        fs::set_permissions(bottom.join("etc/hosts"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::set_permissions(top.join("etc"), fs::Permissions::from_mode(0o711)).unwrap();
        fs::create_dir(&upper).unwrap();
        let lower = Stack(vec![top.clone(), bottom.clone()]);
        seed(&lower, &upper, &[seed_of("/etc/hosts", b"new")]).unwrap();
        let md = |p: &str| fs::symlink_metadata(upper.join(p)).unwrap();
        assert_eq!(
            md("etc").mode() & 0o7777,
            0o711,
            "the topmost layer's directory"
        );
        assert_eq!(
            md("etc/hosts").mode() & 0o7777,
            0o600,
            "the file from the layer below"
        );
        assert_eq!(fs::read(upper.join("etc/hosts")).unwrap(), b"new");
    }
}
