//! Patches a run applies to its private copy of the rootfs so images work in a user namespace
//! with a single uid (FEATURES R7). Everything here decides *what* to write; the executor writes
//! it into the per-run overlay, never into the cache.

use crate::stack::{self, Found, Stack};
use crate::users::{group_entries, passwd_entries, User};

/// Programs that switch users; in a one-uid namespace the only switch possible is none, so the
/// loader stands in for them (see [`crate::shim`]).
pub const SHIM_NAMES: &[&str] = &["gosu", "su-exec", "setpriv"];
/// Where images keep them.
pub const SHIM_DIRS: &[&str] = &[
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
];

/// apt drops to the `_apt` user to download, which a one-uid namespace cannot do.
pub const APT_SANDBOX_CONF: &str = "/etc/apt/apt.conf.d/00oci2bin-sandbox";
pub const APT_SANDBOX_TEXT: &str = "APT::Sandbox::User \"root\";\n";

fn valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        && n.len() <= 32
}

/// A name for an added entry: `root` for 0, else the host user's login name when it is free,
/// else `user`, else `user<id>`.
fn pick_name(id: u32, hint: Option<&str>, taken: &dyn Fn(&str) -> bool) -> String {
    if id == 0 && !taken("root") {
        return "root".into();
    }
    let numbered = format!("user{id}");
    let name = [
        hint.filter(|h| valid_name(h)),
        Some("user"),
        Some(numbered.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|n| !taken(n))
    .unwrap_or(numbered.as_str())
    .to_string();
    name
}

fn appended(existing: Option<&str>, line: String) -> String {
    match existing {
        Some(t) if !t.is_empty() && !t.ends_with('\n') => format!("\n{line}\n"),
        _ => format!("{line}\n"),
    }
}

/// The text to append to `/etc/passwd` so the running uid has an entry (`None` if it has one).
pub fn passwd_addition(
    passwd: Option<&str>,
    user: &User,
    name_hint: Option<&str>,
) -> Option<String> {
    let text = passwd.unwrap_or("");
    if passwd_entries(text).any(|e| e.uid == user.uid) {
        return None;
    }
    let name = pick_name(user.uid, name_hint, &|n| {
        passwd_entries(text).any(|e| e.name == n)
    });
    let gecos = if user.uid == 0 { "root" } else { "" };
    let shell = "/bin/sh";
    let line = format!(
        "{name}:x:{}:{}:{gecos}:{}:{shell}",
        user.uid, user.gid, user.home
    );
    Some(appended(passwd, line))
}

/// The text to append to `/etc/group` so the running gid has an entry (`None` if it has one).
pub fn group_addition(group: Option<&str>, gid: u32, name_hint: Option<&str>) -> Option<String> {
    let text = group.unwrap_or("");
    if group_entries(text).any(|(_, g)| g == gid) {
        return None;
    }
    let name = pick_name(gid, name_hint, &|n| {
        group_entries(text).any(|(name, _)| name == n)
    });
    Some(appended(group, format!("{name}:x:{gid}:")))
}

/// A user-switching program the image ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    /// Its container path: `(dir, name)` joined.
    pub path: String,
    /// It is a symlink (busybox's applets): the stand-in needs a file of its own to bind onto.
    pub link: bool,
}

/// The user-switching programs the image ships. Only real directories are searched, so `/bin`
/// → `usr/bin` symlinks do not count twice, and a symlinked directory cannot point the search
/// outside the rootfs.
pub fn find_shims(rootfs: &Stack) -> Vec<Shim> {
    let mut found = Vec::new();
    for dir in SHIM_DIRS {
        let Found::Dir(dirs, _) = rootfs.lookup(dir) else {
            continue;
        };
        for name in SHIM_NAMES {
            match stack::child(&dirs, name.as_ref()) {
                Ok(Found::Missing) | Err(_) => {}
                Ok(f) => found.push(Shim {
                    path: format!("{dir}/{name}"),
                    link: f.metadata().is_some_and(|m| m.file_type().is_symlink()),
                }),
            }
        }
    }
    found
}

/// The directories per-run files go into.
pub const SEEDED_DIRS: &[&str] = &["/etc", "/etc/apt", "/etc/apt/apt.conf.d"];

/// Those of [`SEEDED_DIRS`] that the image has as real directories all the way down, or lacks
/// (from a missing part on, nothing can be a link): files can be written into them in the
/// upper layer without following anything.
pub fn plain_dirs(rootfs: &Stack) -> Vec<String> {
    SEEDED_DIRS
        .iter()
        .filter(|d| {
            let mut dirs = rootfs.dirs().to_vec();
            for part in d[1..].split('/') {
                match stack::child(&dirs, part.as_ref()) {
                    Ok(Found::Dir(below, _)) => dirs = below,
                    Ok(Found::NonDir(..)) => return false,
                    Ok(Found::Missing) | Err(_) => return true,
                }
            }
            true
        })
        .map(|d| d.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32, home: &str) -> User {
        User {
            uid,
            gid,
            home: home.into(),
            in_passwd: false,
        }
    }

    #[test]
    fn passwd_is_left_alone_when_the_uid_has_an_entry() {
        let p = "root:x:0:0:root:/root:/bin/sh\n";
        assert_eq!(passwd_addition(Some(p), &user(0, 0, "/root"), None), None);
    }

    #[test]
    fn a_missing_uid_gets_an_entry_named_after_the_host_user() {
        let p = "root:x:0:0:root:/root:/bin/sh\n";
        assert_eq!(
            passwd_addition(Some(p), &user(1000, 1000, "/"), Some("alice")).as_deref(),
            Some("alice:x:1000:1000::/:/bin/sh\n")
        );
    }

    #[test]
    fn a_taken_or_odd_host_name_falls_back_to_user() {
        let p = "alice:x:5:5::/:/bin/sh";
        // No trailing newline in the file: the addition starts a new line.
        assert_eq!(
            passwd_addition(Some(p), &user(1000, 0, "/"), Some("alice")).as_deref(),
            Some("\nuser:x:1000:0::/:/bin/sh\n")
        );
        assert!(passwd_addition(None, &user(7, 0, "/"), Some("Bad Name"))
            .unwrap()
            .starts_with("user:x:7:"));
    }

    #[test]
    fn an_image_without_passwd_gets_root() {
        assert_eq!(
            passwd_addition(None, &user(0, 0, "/root"), Some("alice")).as_deref(),
            Some("root:x:0:0:root:/root:/bin/sh\n")
        );
    }

    #[test]
    fn group_gets_the_gid_when_missing() {
        assert_eq!(group_addition(Some("root:x:0:\n"), 0, None), None);
        assert_eq!(
            group_addition(Some("root:x:0:\n"), 1000, Some("alice")).as_deref(),
            Some("alice:x:1000:\n")
        );
        assert_eq!(
            group_addition(None, 0, None).as_deref(),
            Some("root:x:0:\n")
        );
    }

    #[test]
    fn shims_are_found_only_in_real_directories() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
        std::fs::write(r.join("usr/bin/setpriv"), b"").unwrap();
        std::os::unix::fs::symlink("/usr/bin/setpriv", r.join("usr/local/bin/gosu")).unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        let found: Vec<_> = find_shims(&Stack::from(r.to_path_buf()))
            .into_iter()
            .map(|s| (s.path, s.link))
            .collect();
        assert_eq!(
            found,
            [
                ("/usr/local/bin/gosu".to_string(), true),
                ("/usr/bin/setpriv".to_string(), false)
            ]
        );
    }
}
