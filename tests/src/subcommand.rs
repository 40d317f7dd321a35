//! `oci2bin SUBCOMMAND …` as the test user, with the runner's cache (where container states,
//! volumes and cache entries live), and a guard that removes a test's containers.

use std::process::Output;

use crate::runner::Runner;
use crate::text;

/// `oci2bin ARGS…` as the test user.
pub fn oci(r: &Runner, args: &[&str]) -> Output {
    r.command(&crate::oci2bin(), args).output().unwrap()
}

/// `oci2bin ARGS…` that must succeed; its stdout.
pub fn oci_ok(r: &Runner, args: &[&str]) -> String {
    let o = oci(r, args);
    assert!(
        o.status.success(),
        "oci2bin {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Removes the named containers when dropped, whatever happened (a failed assert must not
/// leave them running).
pub struct RemoveOnDrop<'a>(&'a Runner, Vec<String>);

/// A guard for containers `names`.
pub fn remove_on_drop<'a, S: AsRef<str>>(r: &'a Runner, names: &[S]) -> RemoveOnDrop<'a> {
    RemoveOnDrop(r, names.iter().map(|n| n.as_ref().to_string()).collect())
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = oci(self.0, &["rm", "-f", n]);
        }
    }
}
