//! Users and groups of the image: `/etc/passwd` and `/etc/group` parsing, and resolving a
//! `--user` / image `User` spec the way Docker (runc) does.

use std::fmt;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'a str,
}

/// The well-formed entries of a passwd file (malformed lines are skipped, as libc does).
pub fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// `(name, gid)` of each well-formed `/etc/group` line.
pub fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?))
    })
}

/// The supplementary groups of `uid` as Docker gives them: every group of the image's
/// `/etc/group` that lists the user's name (from `passwd`) as a member. Sorted, no repeats.
pub fn supplementary_groups(passwd: Option<&str>, group: Option<&str>, uid: u32) -> Vec<u32> {
    let Some(name) = passwd_entries(passwd.unwrap_or("")).find(|e| e.uid == uid) else {
        return Vec::new();
    };
    let mut gids: Vec<u32> = group
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].starts_with('#') {
                return None;
            }
            let gid = f[2].parse().ok()?;
            f[3].split(',')
                .any(|m| m.trim() == name.name)
                .then_some(gid)
        })
        .collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

/// Who the container runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// `$HOME`: from passwd, else `/root` for root and `/` for anyone else.
    pub home: String,
    /// Whether passwd has an entry for `uid` (if not, the run adds one).
    pub in_passwd: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    NoSuchUser(String),
    NoSuchGroup(String),
    Invalid(String),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NoSuchUser(u) => {
                write!(
                    f,
                    "unable to find user {u}: no matching entries in passwd file"
                )
            }
            UserError::NoSuchGroup(g) => {
                write!(
                    f,
                    "unable to find group {g}: no matching entries in group file"
                )
            }
            UserError::Invalid(s) => {
                write!(f, "invalid user '{s}': want UID[:GID] or NAME[:GROUP]")
            }
        }
    }
}

impl std::error::Error for UserError {}

fn numeric(s: &str) -> Option<u32> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Resolves `USER[:GROUP]` (each a number or a name) against the image's passwd and group files.
/// An empty spec is root. A number need not exist in passwd; a name must.
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User, UserError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let passwd = passwd.unwrap_or("");
    let entry = if u.is_empty() {
        passwd_entries(passwd).find(|e| e.uid == 0)
    } else if let Some(uid) = numeric(u) {
        passwd_entries(passwd).find(|e| e.uid == uid)
    } else if u.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(UserError::Invalid(spec.to_string()));
    } else {
        Some(
            passwd_entries(passwd)
                .find(|e| e.name == u)
                .ok_or_else(|| UserError::NoSuchUser(u.to_string()))?,
        )
    };
    let uid = match (&entry, numeric(u)) {
        (Some(e), _) => e.uid,
        (None, Some(uid)) => uid,
        (None, None) if u.is_empty() => 0,
        (None, None) => return Err(UserError::Invalid(spec.to_string())),
    };
    let gid = match g {
        None => entry.as_ref().map_or(0, |e| e.gid),
        Some(g) => match numeric(g) {
            Some(gid) => gid,
            None => group_entries(group.unwrap_or(""))
                .find(|(name, _)| *name == g)
                .map(|(_, gid)| gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.to_string()))?,
        },
    };
    let home = match &entry {
        Some(e) if !e.home.is_empty() => e.home.to_string(),
        _ if uid == 0 => "/root".to_string(),
        _ => "/".to_string(),
    };
    Ok(User {
        uid,
        gid,
        home,
        in_passwd: entry.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          # a comment\n\
                          broken line\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          app:x:1000:2000:App:/home/app:/bin/sh\n\
                          nohome:x:1001:1001:::/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:2000:\n";

    fn r(spec: &str) -> Result<User, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_spec_is_root_with_its_passwd_home() {
        assert_eq!(
            r("").unwrap(),
            User {
                uid: 0,
                gid: 0,
                home: "/root".into(),
                in_passwd: true
            }
        );
    }

    #[test]
    fn a_name_takes_uid_gid_and_home_from_passwd() {
        assert_eq!(
            r("app").unwrap(),
            User {
                uid: 1000,
                gid: 2000,
                home: "/home/app".into(),
                in_passwd: true
            }
        );
    }

    #[test]
    fn a_known_number_takes_its_primary_group() {
        assert_eq!(r("1000").unwrap().gid, 2000);
    }

    #[test]
    fn an_unknown_number_runs_with_gid_0_and_home_slash() {
        assert_eq!(
            r("4242").unwrap(),
            User {
                uid: 4242,
                gid: 0,
                home: "/".into(),
                in_passwd: false
            }
        );
    }

    #[test]
    fn the_group_part_overrides_by_number_or_name() {
        assert_eq!(r("app:50").unwrap().gid, 50);
        assert_eq!(r("1000:staff").unwrap().gid, 50);
        assert_eq!(r("4242:app").unwrap().gid, 2000);
        assert_eq!(r("app:").unwrap().gid, 2000);
    }

    #[test]
    fn unknown_names_are_errors_with_dockers_wording() {
        assert_eq!(
            r("nosuch").unwrap_err().to_string(),
            "unable to find user nosuch: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:nosuch").unwrap_err().to_string(),
            "unable to find group nosuch: no matching entries in group file"
        );
    }

    #[test]
    fn no_passwd_file_still_allows_numbers_and_root() {
        assert_eq!(resolve("", None, None).unwrap().home, "/root");
        assert_eq!(
            resolve("7:8", None, None).unwrap(),
            User {
                uid: 7,
                gid: 8,
                home: "/".into(),
                in_passwd: false
            }
        );
        assert!(matches!(
            resolve("app", None, None),
            Err(UserError::NoSuchUser(_))
        ));
    }

    #[test]
    fn an_entry_without_home_gets_the_default() {
        assert_eq!(r("nohome").unwrap().home, "/");
    }
}
