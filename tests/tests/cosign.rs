//! Build-time cosign checks (FEATURES B12: `--verify-cosign`, `--require-cosign`,
//! `--cosign-key`), with the built oci2bin, a real registry (Debian's docker-registry, plain
//! HTTP) seeded with the busybox fixture, and a local OCI layout.
//!
//! cosign itself cannot be installed on this machine (not in Debian bookworm, not on PyPI, no Go
//! module proxy), so the first tests cover what happens without it: a warning with
//! --verify-cosign, an error with --require-cosign, and no output file unless the build may go
//! on. The last ones put a stand-in `cosign` script behind `$OCI2BIN_COSIGN`: it records its
//! arguments and exits 0 or 1. It stands in for the real binary and checks only our side of the
//! contract (we call `cosign verify --key KEY … HOST/REPO@sha256:…` with the digest pulled, and a
//! failing cosign fails the build); it verifies no signature.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::registry::{Auth, Registry};
use e2e::{assert_one_line_error, fixtures, have, require, text};

fn tools() -> bool {
    require(
        have("docker-registry") && have("skopeo"),
        "docker-registry and skopeo (make deps)",
    )
}

/// A HOME (blob cache), an empty PATH directory (so no cosign on it), a key and an output
/// directory of one test.
struct Build {
    home: tempfile::TempDir,
    empty_path: tempfile::TempDir,
    out: tempfile::TempDir,
    key: PathBuf,
    /// `$OCI2BIN_COSIGN`, when set.
    cosign: Option<PathBuf>,
}

impl Build {
    fn new() -> Build {
        let out = e2e::world_tempdir();
        // cosign parses the key, not us: any PEM-looking file will do for these tests.
        let key = out.path().join("cosign.pub");
        std::fs::write(
            &key,
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        Build {
            home: tempfile::tempdir().unwrap(),
            empty_path: tempfile::tempdir().unwrap(),
            out,
            key,
            cosign: None,
        }
    }

    fn out_file(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    /// `oci2bin ARGS… SOURCE OUT`, with PATH an empty directory: no cosign unless
    /// `$OCI2BIN_COSIGN` names one.
    fn run(&self, args: &[&str], source: &str, out: &str) -> Output {
        let mut c = Command::new(e2e::oci2bin());
        c.env_clear()
            .env("PATH", self.empty_path.path())
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .current_dir(self.out.path())
            .args(args)
            .arg(source)
            .arg(self.out_file(out));
        if let Some(p) = &self.cosign {
            c.env("OCI2BIN_COSIGN", p);
        }
        c.output().unwrap()
    }

    fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

/// A plain-HTTP registry holding the busybox fixture as `app:1`.
fn registry() -> Registry {
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "app:1");
    reg
}

fn busybox_digest() -> String {
    fixtures::tagged(fixtures::busybox(), "latest")["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn source_digest(file: &Path) -> String {
    let o = e2e::oci2bin_cmd(&["inspect", "--json", file.to_str().unwrap()]);
    assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["source_digest"].as_str().unwrap().to_owned()
}

/// The stderr lines that are warnings.
fn warnings(o: &Output) -> Vec<String> {
    text(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("oci2bin: warning:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn require_cosign_without_cosign_fails_and_writes_nothing() {
    if !tools() {
        return;
    }
    let reg = registry();
    let b = Build::new();
    let source = format!("http://{}/app:1", reg.host());
    let o = b.run(
        &["--require-cosign", "--cosign-key", b.key()],
        &source,
        "app",
    );
    assert_one_line_error(&o, "cosign is not on PATH");
    let err = text(&o.stderr);
    assert!(
        err.starts_with("oci2bin: error: --require-cosign: "),
        "{err}"
    );
    assert!(
        err.contains("https://docs.sigstore.dev/cosign/system_config/installation/")
            && err.contains("go install github.com/sigstore/cosign/v2/cmd/cosign@latest"),
        "{err}"
    );
    // Refused before the pull: the message names the source as given.
    assert!(err.contains(&source), "{err}");
    assert!(!b.out_file("app").exists(), "an output file was written");
    assert_eq!(
        std::fs::read_dir(b.out.path()).unwrap().count(),
        1,
        "only the key is in the output dir"
    );
}

#[test]
fn verify_cosign_without_cosign_warns_and_builds() {
    if !tools() {
        return;
    }
    let reg = registry();
    let b = Build::new();
    let source = format!("docker://{}/app:1", reg.host());
    let o = b.run(
        &[
            "--verify-cosign",
            "--cosign-key",
            b.key(),
            "--tls-verify=false",
        ],
        &source,
        "app",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("cosign is not on PATH"), "{}", w[0]);
    assert!(w[0].contains("was NOT checked"), "{}", w[0]);
    assert!(w[0].contains("docs.sigstore.dev") && w[0].contains("go install"));
    assert!(b.out_file("app").exists());

    // --cosign-key alone means --verify-cosign.
    let o = b.run(
        &["--cosign-key", b.key(), "--tls-verify=false"],
        &source,
        "app2",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(warnings(&o).len(), 1, "{}", text(&o.stderr));
    assert!(b.out_file("app2").exists());
}

#[test]
fn a_local_source_has_no_cosign_signature() {
    let b = Build::new();
    let source = format!("oci:{}:latest", fixtures::busybox().display());
    let o = b.run(
        &["--require-cosign", "--cosign-key", b.key()],
        &source,
        "bb",
    );
    assert_one_line_error(
        &o,
        &format!("cosign signatures live in a registry; {source} is not a registry reference"),
    );
    assert!(!b.out_file("bb").exists());

    let o = b.run(&["--verify-cosign", "--cosign-key", b.key()], &source, "bb");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not a registry reference") && w[0].contains("NOT checked"));
    assert!(b.out_file("bb").exists());
}

#[test]
fn a_missing_key_file_is_an_error() {
    let b = Build::new();
    let source = format!("oci:{}:latest", fixtures::busybox().display());
    let missing = b.out_file("nope.pub");
    for flag in ["--verify-cosign", "--require-cosign"] {
        let o = b.run(
            &[flag, "--cosign-key", missing.to_str().unwrap()],
            &source,
            "bb",
        );
        assert_one_line_error(
            &o,
            &format!("--cosign-key {}: cannot read the key", missing.display()),
        );
        assert!(!b.out_file("bb").exists());
    }
}

#[test]
fn the_flags_need_a_key() {
    let b = Build::new();
    let source = format!("oci:{}:latest", fixtures::busybox().display());
    for flag in ["--verify-cosign", "--require-cosign", "--cosign-offline"] {
        let o = b.run(&[flag], &source, "bb");
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("--cosign-key"), "{flag}");
        assert!(!b.out_file("bb").exists());
    }
}

/// A stand-in for the cosign binary (the real one cannot be installed here): records its
/// arguments, one a line, in `argv` beside it, prints `stderr` there and exits `code`. It checks
/// our side of the contract only.
fn stand_in_cosign(dir: &Path, code: i32, stderr: &str) -> PathBuf {
    let p = dir.join("cosign");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nprintf '%s\\n' '{stderr}' >&2\nexit {code}\n",
            dir.join("argv").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn argv(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("argv"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn cosign_is_asked_about_the_digest_pulled() {
    if !tools() {
        return;
    }
    let reg = registry();
    let fake = tempfile::tempdir().unwrap();
    let mut b = Build::new();
    b.cosign = Some(stand_in_cosign(fake.path(), 0, "Verification for ... ok"));
    let source = format!("http://{}/app:1", reg.host());
    let o = b.run(
        &[
            "--require-cosign",
            "--cosign-key",
            b.key(),
            "--cosign-offline",
        ],
        &source,
        "app",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let target = format!("{}/app@{}", reg.host(), busybox_digest());
    assert_eq!(
        argv(fake.path()),
        [
            "verify",
            "--key",
            b.key(),
            "--allow-http-registry",
            "--insecure-ignore-tlog=true",
            &target
        ]
    );
    assert!(
        text(&o.stderr).contains(&format!(
            "oci2bin: cosign: signature of {target} verified with {}",
            b.key()
        )),
        "{}",
        text(&o.stderr)
    );
    // The digest cosign was asked about is the one the file records as its source.
    assert_eq!(source_digest(&b.out_file("app")), busybox_digest());

    // docker:// with --tls-verify=false: cosign may skip certificate checks too.
    let o = b.run(
        &[
            "--verify-cosign",
            "--cosign-key",
            b.key(),
            "--tls-verify=false",
        ],
        &format!("docker://{}/app:1", reg.host()),
        "app2",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        argv(fake.path()),
        [
            "verify",
            "--key",
            b.key(),
            "--allow-insecure-registry",
            &target
        ]
    );
}

#[test]
fn a_pinned_index_digest_is_what_cosign_checks() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    let layout = fixtures::busybox_multiarch();
    reg.push_layout_all(layout, "latest", "multi:1");
    let index = fixtures::tagged(layout, "latest")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let fake = tempfile::tempdir().unwrap();
    let mut b = Build::new();
    b.cosign = Some(stand_in_cosign(fake.path(), 0, ""));
    // By index digest: the signed index is verified (the pull checked the manifest it chose
    // against it).
    let o = b.run(
        &[
            "--require-cosign",
            "--cosign-key",
            b.key(),
            "--platform=linux/amd64",
        ],
        &format!("http://{}/multi@{index}", reg.host()),
        "m",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        argv(fake.path()).last().unwrap(),
        &format!("{}/multi@{index}", reg.host())
    );
    // By tag: the platform manifest pulled (the index digest is not known to be the one tagged
    // when cosign looks).
    let o = b.run(
        &[
            "--require-cosign",
            "--cosign-key",
            b.key(),
            "--platform=linux/amd64",
        ],
        &format!("http://{}/multi:1", reg.host()),
        "m2",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        argv(fake.path()).last().unwrap(),
        &format!("{}/multi@{}", reg.host(), busybox_digest())
    );
}

#[test]
fn a_failing_cosign_fails_the_build() {
    if !tools() {
        return;
    }
    let reg = registry();
    let fake = tempfile::tempdir().unwrap();
    let mut b = Build::new();
    b.cosign = Some(stand_in_cosign(
        fake.path(),
        1,
        "Error: no signatures found\nmain.go:69: error during command execution: no signatures found",
    ));
    let source = format!("http://{}/app:1", reg.host());
    // --verify-cosign too: a signature that does not verify is an error, not a warning.
    for flag in ["--verify-cosign", "--require-cosign"] {
        let o = b.run(&[flag, "--cosign-key", b.key()], &source, "app");
        assert_one_line_error(
            &o,
            &format!(
                "cosign verify of {}/app@{} with {} failed: main.go:69: error during command execution: no signatures found",
                reg.host(),
                busybox_digest(),
                b.key()
            ),
        );
        assert!(!b.out_file("app").exists(), "{flag}: an output was written");
    }
}
