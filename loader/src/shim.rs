//! Standing in for user-switching programs. In a namespace that maps one uid, `gosu`, `su-exec`
//! and `setpriv` cannot change identity (setgroups is denied, no other uid exists), so images
//! that call them in their entrypoints would fail. The run bind-mounts the loader over them
//! ([`crate::plan::Step::BindSelf`]); invoked under such a name, the loader drops the
//! identity arguments and execs the command as it is: the only change a one-uid namespace
//! allows is none.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The shim `argv0` names, if it names one.
pub fn shim_name(argv0: &OsStr) -> Option<&'static str> {
    let base = Path::new(argv0).file_name()?;
    crate::patch::SHIM_NAMES
        .iter()
        .copied()
        .find(|n| OsStr::new(n) == base)
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

/// The command a shim invocation runs: `args` are the arguments after argv[0].
pub fn command(shim: &str, args: &[OsString]) -> Result<Vec<OsString>, String> {
    let cmd: Vec<OsString> = match shim {
        // gosu USER COMMAND [ARGS…], su-exec USER COMMAND [ARGS…]
        "gosu" | "su-exec" => args.iter().skip(1).cloned().collect(),
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
                if SETPRIV_VALUE_OPTS.contains(&a.as_ref()) {
                    i += 1;
                }
                i += 1;
            }
            args.get(i..).unwrap_or_default().to_vec()
        }
    };
    if cmd.is_empty() {
        return Err(match shim {
            "setpriv" => "setpriv (oci2bin stand-in): no command given".into(),
            _ => format!("usage: {shim} USER COMMAND [ARG...] (oci2bin stand-in)"),
        });
    }
    Ok(cmd)
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
            command("gosu", &os(&["redis", "redis-server", "--port", "1"])).unwrap(),
            os(&["redis-server", "--port", "1"])
        );
        assert_eq!(
            command("su-exec", &os(&["1000:1000", "id"])).unwrap(),
            os(&["id"])
        );
        assert!(command("gosu", &os(&["redis"]))
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
            command("setpriv", &args).unwrap(),
            os(&["postgres", "-D", "/data"])
        );
    }

    #[test]
    fn setpriv_double_dash_ends_its_options() {
        assert_eq!(
            command("setpriv", &os(&["--reuid", "1", "--", "-weird", "x"])).unwrap(),
            os(&["-weird", "x"])
        );
        assert!(command("setpriv", &os(&["--reuid=1"])).is_err());
    }
}
