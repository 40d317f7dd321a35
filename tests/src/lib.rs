//! End-to-end test support: where the built binaries are, fixture images made from Debian
//! packages, a runner that starts our files as an unprivileged user, hostile tar builders, and a
//! real registry (with auth, TLS, bearer tokens and a fault-injecting proxy) to pull from.
//!
//! Tests that need something this machine may lack use [`require`]: they skip with a printed
//! reason, unless `OCI2BIN_E2E_MUST_WORK=1` says this machine has it, in which case they fail.

pub mod docker;
pub mod fixtures;
pub mod hostile;
pub mod registry;
pub mod runner;
pub mod subcommand;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use runner::Runner;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The packager under test, built by `make` (it embeds the static loader).
pub fn oci2bin() -> PathBuf {
    let p = std::env::var_os("OCI2BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/oci2bin"));
    assert!(
        p.exists(),
        "{} does not exist: run `make` first (or set OCI2BIN)",
        p.display()
    );
    p
}

pub fn must_work() -> bool {
    std::env::var("OCI2BIN_E2E_MUST_WORK").is_ok_and(|v| v == "1")
}

/// Returns false (and prints why) when `ok` is false and the machine is allowed to lack it.
pub fn require(ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        !must_work(),
        "required on this machine (OCI2BIN_E2E_MUST_WORK=1): {reason}"
    );
    eprintln!("SKIP: {reason}");
    false
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// A temp dir every user can read and enter (the unprivileged runner must reach files in it).
pub fn world_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("o2b-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Runs `oci2bin ARGS…`, returning its output.
pub fn oci2bin_cmd(args: &[&str]) -> Output {
    Command::new(oci2bin())
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// Builds `source` into `out` and asserts success.
pub fn build(source: &str, out: &Path, extra: &[&str]) {
    let mut args: Vec<&str> = extra.to_vec();
    args.push(source);
    args.push(out.to_str().unwrap());
    let o = oci2bin_cmd(&args);
    assert!(
        o.status.success(),
        "oci2bin {args:?} failed:\n{}",
        text(&o.stderr)
    );
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a command failed with a single-line message containing `needle` on stderr.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = text(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{err}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "error {:?} does not mention {needle:?}",
        lines[0]
    );
}

/// The layer spans of an oci2bin file, read with the format module (independent of the JSON).
pub fn layer_refs(file: &Path) -> Vec<loader::format::LayerRef> {
    use loader::format::{Runtime, Trailer, TRAILER_LEN};
    let bytes = std::fs::read(file).unwrap();
    let t = Trailer::decode(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).unwrap();
    let r = &bytes[t.runtime.offset as usize..t.runtime.end() as usize];
    Runtime::decode(r).unwrap().layers
}
