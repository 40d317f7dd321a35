//! Standing in for user-switching programs. In a namespace that maps one uid, `gosu`, `su-exec`
//! and `setpriv` cannot change identity (setgroups is denied, no other uid exists), so images
//! that call them in their entrypoints would fail obscurely. The run bind-mounts the loader over
//! them ([`crate::plan::Step::BindSelf`]); invoked under such a name *from such a mount*, the
//! loader execs the command when the target is who we already are, and otherwise says in one
//! line that it cannot switch (never silently staying root).
//!
//! The mount is the marker: only the loader's own setup creates it, in the container's mount
//! namespace. An image file merely saved as `setpriv` on the host is not a mount point, so it
//! runs its image as any other name would, never a host command.

use crate::users;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The shim `argv0` names, if it names one.
pub fn shim_name(argv0: &OsStr) -> Option<&'static str> {
    let base = Path::new(argv0).file_name()?;
    crate::patch::SHIM_NAMES
        .iter()
        .copied()
        .find(|n| OsStr::new(n) == base)
}

/// Whether we run from a bind mount of the loader, i.e. inside a container we set up: the file
/// we were executed from is itself a mount point.
pub fn bound_by_loader() -> bool {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return false;
    };
    std::fs::read("/proc/self/mountinfo")
        .is_ok_and(|info| is_mount_point(&info, exe.as_os_str().as_bytes()))
}

/// Whether `mountinfo` (proc(5) format) lists a mount at `path`. Mount points there escape
/// space, tab, newline and backslash as octal (`\040`).
pub fn is_mount_point(mountinfo: &[u8], path: &[u8]) -> bool {
    mountinfo.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|field| unescape(field) == path)
    })
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let oct = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// setpriv options that take a value (as `--opt VALUE` or `--opt=VALUE`).
const SETPRIV_VALUE_OPTS: &[&str] = &[
    "--ruid",
    "--euid",
    "--rgid",
    "--egid",
    "--reuid",
    "--regid",
    "--groups",
    "--inh-caps",
    "--ambient-caps",
    "--bounding-set",
    "--securebits",
    "--pdeathsig",
    "--selinux-label",
    "--apparmor-profile",
    "--landlock-access",
    "--landlock-rule",
    "--seccomp-filter",
];

/// A parsed shim invocation: who it asks to become and what to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The user asked for (a name or a number); `None` keeps ours.
    pub user: Option<String>,
    /// The group asked for; `None` takes the user's primary group (or keeps ours).
    pub group: Option<String>,
    pub command: Vec<OsString>,
}

/// Parses a shim's arguments (those after argv[0]).
pub fn parse(shim: &str, args: &[OsString]) -> Result<Invocation, String> {
    let mut inv = Invocation {
        user: None,
        group: None,
        command: Vec::new(),
    };
    match shim {
        // gosu USER[:GROUP] COMMAND [ARGS…], su-exec USER[:GROUP] COMMAND [ARGS…]
        "gosu" | "su-exec" => {
            if let Some(spec) = args.first() {
                let spec = spec.to_string_lossy();
                let (u, g) = match spec.split_once(':') {
                    Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
                    None => (spec.as_ref(), None),
                };
                inv.user = Some(u.to_string()).filter(|u| !u.is_empty());
                inv.group = g.map(str::to_string);
            }
            inv.command = args.iter().skip(1).cloned().collect();
        }
        _ => {
            let mut i = 0;
            while i < args.len() {
                let a = args[i].to_string_lossy();
                if a == "--" {
                    i += 1;
                    break;
                }
                if !a.starts_with('-') {
                    break;
                }
                let (name, inline) = match a.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (a.as_ref(), None),
                };
                let mut value = inline;
                if value.is_none() && SETPRIV_VALUE_OPTS.contains(&name) {
                    i += 1;
                    value = args.get(i).map(|v| v.to_string_lossy().into_owned());
                }
                match name {
                    "--reuid" | "--ruid" | "--euid" => inv.user = value,
                    "--regid" | "--rgid" | "--egid" => inv.group = value,
                    _ => {}
                }
                i += 1;
            }
            inv.command = args.get(i..).unwrap_or_default().to_vec();
        }
    }
    if inv.command.is_empty() {
        return Err(match shim {
            "setpriv" => "setpriv (oci2bin stand-in): no command given".into(),
            _ => format!("usage: {shim} USER COMMAND [ARG...] (oci2bin stand-in)"),
        });
    }
    Ok(inv)
}

/// Checks that `inv` asks for no identity but ours (`uid`, `gid`), resolving names with the
/// container's passwd and group files. Err: the one line to print.
pub fn check_identity(
    shim: &str,
    inv: &Invocation,
    uid: u32,
    gid: u32,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(), String> {
    let (want_uid, user_gid, shown) = match &inv.user {
        None => (uid, gid, None),
        Some(u) => {
            let user = users::resolve(u, passwd, group).map_err(|e| format!("{shim}: {e}"))?;
            (user.uid, user.gid, Some(u.as_str()))
        }
    };
    let want_gid = match &inv.group {
        None => user_gid,
        Some(g) => {
            users::resolve(&format!("{want_uid}:{g}"), passwd, group)
                .map_err(|e| format!("{shim}: {e}"))?
                .gid
        }
    };
    if (want_uid, want_gid) == (uid, gid) {
        return Ok(());
    }
    let hint = match shown {
        Some(u) if want_uid != uid => format!("; run the file with --user {u} instead"),
        _ => String::new(),
    };
    Err(format!(
        "{shim}: cannot switch to uid {want_uid}, gid {want_gid}: this container maps only \
         uid {uid}, gid {gid} (no subordinate id range){hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn recognises_shims_by_basename_only() {
        assert_eq!(shim_name(OsStr::new("/usr/local/bin/gosu")), Some("gosu"));
        assert_eq!(shim_name(OsStr::new("su-exec")), Some("su-exec"));
        assert_eq!(shim_name(OsStr::new("/usr/bin/setpriv")), Some("setpriv"));
        assert_eq!(shim_name(OsStr::new("./my-image")), None);
        assert_eq!(shim_name(OsStr::new("/gosu/app")), None);
    }

    #[test]
    fn gosu_and_su_exec_drop_the_user() {
        assert_eq!(
            parse("gosu", &os(&["redis", "redis-server", "--port", "1"]))
                .unwrap()
                .command,
            os(&["redis-server", "--port", "1"])
        );
        assert_eq!(
            parse("su-exec", &os(&["1000:1000", "id"])).unwrap().command,
            os(&["id"])
        );
        assert!(parse("gosu", &os(&["redis"]))
            .unwrap_err()
            .starts_with("usage: gosu"));
    }

    #[test]
    fn setpriv_drops_its_options_in_both_forms() {
        let args = os(&[
            "--reuid=999",
            "--regid",
            "999",
            "--init-groups",
            "--clear-groups",
            "--keep-groups",
            "--groups=1,2",
            "--inh-caps=-all",
            "--bounding-set",
            "-all",
            "--reset-env",
            "--nnp",
            "postgres",
            "-D",
            "/data",
        ]);
        assert_eq!(
            parse("setpriv", &args).unwrap().command,
            os(&["postgres", "-D", "/data"])
        );
    }

    #[test]
    fn setpriv_double_dash_ends_its_options() {
        assert_eq!(
            parse("setpriv", &os(&["--reuid", "1", "--", "-weird", "x"]))
                .unwrap()
                .command,
            os(&["-weird", "x"])
        );
        assert!(parse("setpriv", &os(&["--reuid=1"])).is_err());
    }

    #[test]
    fn the_target_identity_is_read_from_every_form() {
        let gosu = parse("gosu", &os(&["postgres:staff", "id"])).unwrap();
        assert_eq!(
            (gosu.user.as_deref(), gosu.group.as_deref()),
            (Some("postgres"), Some("staff"))
        );
        let p = parse(
            "setpriv",
            &os(&["--reuid=999", "--regid", "998", "--clear-groups", "x"]),
        )
        .unwrap();
        assert_eq!(
            (p.user.as_deref(), p.group.as_deref()),
            (Some("999"), Some("998"))
        );
        let p = parse("setpriv", &os(&["--no-new-privs", "x"])).unwrap();
        assert_eq!((p.user, p.group), (None, None));
    }

    const PASSWD: &str =
        "root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n";
    const GROUP: &str = "root:x:0:\npostgres:x:999:\n";

    fn check(shim: &str, args: &[&str], uid: u32, gid: u32) -> Result<(), String> {
        let inv = parse(shim, &os(args)).unwrap();
        check_identity(shim, &inv, uid, gid, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn switching_to_who_we_are_already_is_allowed() {
        assert_eq!(check("gosu", &["root", "id"], 0, 0), Ok(()));
        assert_eq!(check("su-exec", &["0:0", "id"], 0, 0), Ok(()));
        assert_eq!(check("gosu", &["postgres", "id"], 999, 999), Ok(()));
        assert_eq!(check("setpriv", &["--nnp", "id"], 999, 999), Ok(()));
        assert_eq!(
            check(
                "setpriv",
                &[
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "id"
                ],
                999,
                999
            ),
            Ok(())
        );
    }

    #[test]
    fn a_switch_a_single_uid_cannot_make_is_refused_in_one_line() {
        let e = check("gosu", &["postgres", "initdb"], 0, 0).unwrap_err();
        assert_eq!(
            e,
            "gosu: cannot switch to uid 999, gid 999: this container maps only uid 0, gid 0 \
             (no subordinate id range); run the file with --user postgres instead"
        );
        assert!(!e.contains('\n'));
        assert!(check("setpriv", &["--reuid=1000", "id"], 0, 0).is_err());
        // Same user, other group: still a switch we cannot make.
        assert!(check("su-exec", &["postgres:root", "id"], 999, 999).is_err());
        let e = check("gosu", &["ghost", "id"], 0, 0).unwrap_err();
        assert!(e.starts_with("gosu: unable to find user ghost"), "{e}");
    }

    #[test]
    fn mount_points_are_read_from_mountinfo_with_escapes() {
        let info = b"22 1 0:21 / / rw - overlay overlay rw\n\
            40 22 8:1 /home/u/img /usr/sbin/gosu rw,relatime - ext4 /dev/sda1 rw\n\
            41 22 8:1 /x /opt/my\\040tools/setpriv rw - ext4 /dev/sda1 rw\n";
        assert!(is_mount_point(info, b"/usr/sbin/gosu"));
        assert!(is_mount_point(info, b"/opt/my tools/setpriv"));
        assert!(!is_mount_point(info, b"/home/u/img"));
        assert!(!is_mount_point(info, b"/usr/sbin"));
    }
}
