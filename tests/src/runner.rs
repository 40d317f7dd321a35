//! Starts our executables the way a user would: as an unprivileged user (when the tests run as
//! root, through `setpriv` as the test user that `tests/setup-test-user.sh` creates), with a clean
//! environment and a cache directory of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Runner {
    /// (uid, gid) to switch to, when running as root.
    ids: Option<(u32, u32)>,
    home: tempfile::TempDir,
    /// Variables every command of this runner gets ([`Runner::with_env`]).
    env: Vec<(String, String)>,
}

fn test_user_ids() -> (u32, u32) {
    let user = std::env::var("OCI2BIN_TEST_USER").unwrap_or_else(|_| "o2btest".into());
    user_ids(&user)
}

fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, user]).output().unwrap();
        assert!(
            o.status.success(),
            "test user {user} missing: run tests/setup-test-user.sh (make test does)"
        );
        crate::text(&o.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    /// A runner with an empty cache of its own.
    pub fn new() -> Runner {
        // SAFETY: geteuid has no preconditions.
        let ids = (unsafe { libc::geteuid() } == 0).then(test_user_ids);
        let home = crate::world_tempdir();
        if let Some((u, g)) = ids {
            std::os::unix::fs::chown(home.path(), Some(u), Some(g)).unwrap();
        }
        Runner {
            ids,
            home,
            env: Vec::new(),
        }
    }

    /// This runner, with `key=value` in the environment of every command it starts.
    pub fn with_env(mut self, key: &str, value: &str) -> Runner {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A runner for the user `name` (root only: `None` when we are not root or `name` does not
    /// exist), e.g. the range-less `o2btest-norange` of `tests/setup-test-user.sh`.
    pub fn for_user(name: &str) -> Option<Runner> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || !Command::new("id").arg(name).output().ok()?.status.success() {
            return None;
        }
        let (u, g) = user_ids(name);
        let home = crate::world_tempdir();
        std::os::unix::fs::chown(home.path(), Some(u), Some(g)).unwrap();
        Some(Runner {
            ids: Some((u, g)),
            home,
            env: Vec::new(),
        })
    }

    pub fn uid(&self) -> u32 {
        // SAFETY: geteuid has no preconditions.
        self.ids
            .map(|(u, _)| u)
            .unwrap_or_else(|| unsafe { libc::geteuid() })
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `$XDG_CACHE_HOME/oci2bin` of this runner.
    pub fn cache(&self) -> PathBuf {
        self.home.path().join(".cache/oci2bin")
    }

    /// The command that runs `file ARGS…` as the test user; the caller may add env or stdio.
    pub fn command(&self, file: &Path, args: &[&str]) -> Command {
        let mut c = self.as_user(file.as_os_str());
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env("USER", "o2btest")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.path());
        c
    }

    /// `program`, started as the test user when we are root.
    fn as_user(&self, program: &std::ffi::OsStr) -> Command {
        match self.ids {
            Some((u, g)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={u}"),
                    &format!("--regid={g}"),
                    "--clear-groups",
                    "--",
                ]);
                c.arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Runs `file ARGS…` with `env` added and `stdin` on its standard input. A command that
    /// fails before reading closes the pipe: that is its answer, not an error here.
    pub fn run_with_stdin(
        &self,
        file: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
        stdin: &str,
    ) -> Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut c = self.command(file, args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    pub fn run(&self, file: &Path, args: &[&str]) -> Output {
        self.command(file, args).output().unwrap()
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, file: &Path, args: &[&str]) -> String {
        let o = self.run(file, args);
        assert!(
            o.status.success(),
            "{} {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            file.display(),
            o.status.code(),
            crate::text(&o.stdout),
            crate::text(&o.stderr)
        );
        crate::text(&o.stdout)
    }

    /// `oci2bin ARGS…` as this runner's user, with its cache (where the containers' states
    /// live).
    pub fn oci(&self, args: &[&str]) -> Output {
        self.command(&crate::oci2bin(), args).output().unwrap()
    }

    /// Starts `file -d --name NAME ARGS…` (asserting it started); the container is removed
    /// (`oci2bin rm -f`) when the returned guard goes, whatever happened.
    pub fn detached<'a>(&'a self, file: &Path, name: &'a str, args: &[&str]) -> Detached<'a> {
        let mut all = vec!["-d", "--name", name];
        all.extend(args);
        self.ok(file, &all);
        Detached { runner: self, name }
    }

    /// Entries of a subdirectory of this runner's cache (`rootfs`, `tmp`, …).
    pub fn files_under_cache(&self, sub: &str) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache().join(sub)) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A detached container of a test, removed when dropped ([`Runner::detached`]).
pub struct Detached<'a> {
    runner: &'a Runner,
    pub name: &'a str,
}

impl Detached<'_> {
    /// `oci2bin exec ARGS… NAME CMD…` (`args` are exec's own flags).
    pub fn exec(&self, args: &[&str], cmd: &[&str]) -> Output {
        let mut all = vec!["exec"];
        all.extend(args);
        all.push(self.name);
        all.extend(cmd);
        self.runner.oci(&all)
    }

    /// [`Detached::exec`] that must exit 0; its stdout.
    pub fn exec_ok(&self, args: &[&str], cmd: &[&str]) -> String {
        let o = self.exec(args, cmd);
        assert!(
            o.status.success(),
            "exec {args:?} {cmd:?} exited {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            crate::text(&o.stdout),
            crate::text(&o.stderr)
        );
        crate::text(&o.stdout)
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.runner.oci(&["rm", "-f", self.name]);
    }
}

// Extracted trees may hold 0555 dirs: make them removable for the tempdir cleanup.
impl Drop for Runner {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(self.home.path())
            .status();
    }
}

/// Whether the test user can create a user namespace (and mount inside it); a runtime test
/// without it skips with the reason, or fails under `OCI2BIN_E2E_MUST_WORK=1`.
pub fn userns() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *OK.get_or_init(|| {
        let r = Runner::new();
        let mut c = r.as_user("unshare".as_ref());
        c.args(["-Urm", "--", "true"])
            .status()
            .is_ok_and(|s| s.success())
    });
    crate::require(
        ok,
        "unprivileged user namespaces are not available to the test user",
    )
}
