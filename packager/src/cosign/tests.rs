use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;

use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn digest() -> Digest {
    Digest::parse(&format!("sha256:{HEX}")).unwrap()
}

fn target(reference: &str) -> Target {
    Target::new(reference, &digest()).unwrap()
}

fn strings(v: &[OsString]) -> Vec<String> {
    v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

/// `cosign verify` arguments for `reference` with default options and `key.pub`.
fn args_for(reference: &str, offline: bool, tls_verify: bool) -> Vec<String> {
    strings(&verify_args(
        OsStr::new("key.pub"),
        &target(reference),
        offline,
        tls_verify,
        None,
        None,
    ))
}

/// A temp dir holding `cosign.pub` (any PEM-looking text: cosign, not us, parses it).
fn key_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let k = d.path().join("cosign.pub");
    std::fs::write(&k, "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n").unwrap();
    (d, k)
}

fn verify_with(key: &Path) -> CosignArgs {
    CosignArgs {
        verify_cosign: true,
        cosign_key: Some(key.to_path_buf()),
        ..Default::default()
    }
}

fn require_with(key: &Path) -> CosignArgs {
    CosignArgs {
        require_cosign: true,
        cosign_key: Some(key.to_path_buf()),
        ..Default::default()
    }
}

/// An environment with no cosign anywhere: $OCI2BIN_COSIGN names a path that does not exist.
fn no_cosign() -> Env {
    Env {
        cosign: Some("/nonexistent/oci2bin-test/cosign".into()),
        path: Some("/nonexistent/oci2bin-test/bin".into()),
    }
}

/// Runs [`check_with`], returning its result and the warnings it gave.
fn check(
    args: &CosignArgs,
    reference: &str,
    registry: &RegistryArgs,
    env: &Env,
) -> (Result<Option<String>>, Vec<String>) {
    let warnings = RefCell::new(Vec::new());
    let r = check_with(
        args,
        reference,
        &digest(),
        registry,
        &|m| warnings.borrow_mut().push(m.to_string()),
        env,
    );
    (r, warnings.into_inner())
}

/// A stand-in for cosign (the real one cannot be installed here): a shell script that writes
/// its arguments, one a line, to `argv` next to it, then says `stderr` and exits `code`.
fn fake_cosign(dir: &Path, code: i32, stderr: &str) -> PathBuf {
    let p = dir.join("cosign");
    let argv = dir.join("argv");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nprintf '%s' '{stderr}' >&2\nexit {code}\n",
            argv.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn no_flags_check_nothing() {
    let (r, w) = check(
        &CosignArgs::default(),
        "oci:/nowhere",
        &RegistryArgs::default(),
        &no_cosign(),
    );
    assert_eq!(r.unwrap(), None);
    assert!(w.is_empty());
}

#[test]
fn a_key_alone_means_verify() {
    let a = CosignArgs {
        cosign_key: Some("k.pub".into()),
        ..Default::default()
    };
    assert_eq!(a.mode(), Some((Mode::Verify, Path::new("k.pub"))));
    let a = CosignArgs {
        require_cosign: true,
        verify_cosign: true,
        cosign_key: Some("k.pub".into()),
        ..Default::default()
    };
    assert_eq!(a.mode().unwrap().0, Mode::Require);
}

#[test]
fn clap_wants_a_key_with_the_flags() {
    use clap::Parser;
    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        c: CosignArgs,
    }
    for flag in ["--verify-cosign", "--require-cosign", "--cosign-offline"] {
        let e = T::try_parse_from(["t", flag]).unwrap_err();
        assert_eq!(
            e.kind(),
            clap::error::ErrorKind::MissingRequiredArgument,
            "{flag}"
        );
        assert!(T::try_parse_from(["t", flag, "--cosign-key", "k.pub"]).is_ok());
    }
}

#[test]
fn docker_transport_keeps_the_host_and_verifies_by_digest() {
    assert_eq!(
        args_for("127.0.0.1:5000/app:1", false, true),
        [
            "verify",
            "--key",
            "key.pub",
            &format!("127.0.0.1:5000/app@sha256:{HEX}")
        ]
    );
    // As SourceRef::parse hands it over for docker://: the tag goes, the digest pulled is used.
    let t = target("ghcr.io/o/app:v2");
    assert_eq!(t.name, format!("ghcr.io/o/app@sha256:{HEX}"));
    assert!(!t.plain_http && !t.short_name);
}

#[test]
fn plain_http_sources_allow_http() {
    let t = target("http://127.0.0.1:5000/ns/app:1");
    assert!(t.plain_http);
    assert_eq!(
        args_for("http://127.0.0.1:5000/ns/app:1", false, true),
        [
            "verify",
            "--key",
            "key.pub",
            "--allow-http-registry",
            &format!("127.0.0.1:5000/ns/app@sha256:{HEX}")
        ]
    );
}

#[test]
fn short_names_are_docker_hub_names() {
    let t = target("alpine:3.19");
    assert_eq!(t.name, format!("docker.io/library/alpine@sha256:{HEX}"));
    assert!(t.short_name);
    assert_eq!(
        target("me/app").name,
        format!("docker.io/me/app@sha256:{HEX}")
    );
    assert_eq!(
        target("index.docker.io/library/busybox:1").name,
        format!("docker.io/library/busybox@sha256:{HEX}")
    );
}

#[test]
fn a_pinned_digest_is_the_one_verified() {
    let pinned = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    assert_eq!(
        target(&format!("ghcr.io/o/app:1@sha256:{pinned}")).name,
        format!("ghcr.io/o/app@sha256:{pinned}")
    );
}

#[test]
fn tls_verify_false_and_offline_add_their_flags() {
    let a = args_for("r.example/app:1", true, false);
    assert_eq!(
        a,
        [
            "verify",
            "--key",
            "key.pub",
            "--allow-insecure-registry",
            "--insecure-ignore-tlog=true",
            &format!("r.example/app@sha256:{HEX}")
        ]
    );
}

#[test]
fn cert_dir_files_become_cosign_tls_flags() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.crt"), "A\n").unwrap();
    std::fs::write(d.path().join("client.cert"), "C").unwrap();
    std::fs::write(d.path().join("client.key"), "K").unwrap();
    let t = TlsFiles::load(d.path()).unwrap();
    let ca = t.ca_file().unwrap().unwrap();
    assert_eq!(ca.path(), d.path().join("a.crt"));
    let a = strings(&verify_args(
        OsStr::new("k"),
        &target("r.example/app"),
        false,
        true,
        Some(ca.path()),
        t.client.as_ref(),
    ));
    let s = a.join(" ");
    assert!(s.contains(&format!(
        "--registry-cacert {}",
        d.path().join("a.crt").display()
    )));
    assert!(s.contains(&format!(
        "--registry-client-cert {} --registry-client-key {}",
        d.path().join("client.cert").display(),
        d.path().join("client.key").display()
    )));
    assert!(a.last().unwrap().starts_with("r.example/app@sha256:"));
    // Several CAs: one bundle of all of them.
    std::fs::write(d.path().join("b.crt"), "B\n").unwrap();
    let t = TlsFiles::load(d.path()).unwrap();
    let ca = t.ca_file().unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(ca.path()).unwrap(), "A\n\nB\n\n");
}

#[test]
fn non_registry_sources_warn_or_fail() {
    let (_d, key) = key_dir();
    for source in [
        "oci:/x/layout:1",
        "oci-archive:/x/a.tar",
        "docker-archive:/x/a.tar:app:1",
        "dir:/x/rootfs",
        "docker-daemon:app:1",
    ] {
        let (r, w) = check(
            &require_with(&key),
            source,
            &RegistryArgs::default(),
            &no_cosign(),
        );
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains(&format!(
                "cosign signatures live in a registry; {source} is not a registry reference"
            )),
            "{e}"
        );
        assert!(w.is_empty());
        let (r, w) = check(
            &verify_with(&key),
            source,
            &RegistryArgs::default(),
            &no_cosign(),
        );
        assert_eq!(r.unwrap(), None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("not a registry reference") && w[0].contains("NOT checked"));
    }
}

#[test]
fn missing_cosign_warns_with_verify_and_fails_with_require() {
    let (_d, key) = key_dir();
    let source = "docker://127.0.0.1:5000/app:1";
    let (r, w) = check(
        &verify_with(&key),
        source,
        &RegistryArgs::default(),
        &no_cosign(),
    );
    assert_eq!(r.unwrap(), None);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("NOT checked"), "{}", w[0]);
    assert!(w[0].contains("docs.sigstore.dev") && w[0].contains("go install"));
    assert!(w[0].contains("/nonexistent/oci2bin-test/cosign"));
    assert!(!w[0].contains('\n'));

    let (r, w) = check(
        &require_with(&key),
        source,
        &RegistryArgs::default(),
        &no_cosign(),
    );
    let e = crate::error::one_line(&r.unwrap_err());
    assert!(e.starts_with("--require-cosign: "), "{e}");
    assert!(
        e.contains(&format!("127.0.0.1:5000/app@sha256:{HEX}")),
        "{e}"
    );
    assert!(e.contains(INSTALL_HINT));
    assert!(w.is_empty());
}

#[test]
fn cosign_is_looked_up_on_path_unless_the_variable_names_it() {
    let d = tempfile::tempdir().unwrap();
    let fake = fake_cosign(d.path(), 0, "");
    let env = Env {
        cosign: None,
        path: Some(format!("/nonexistent:{}", d.path().display()).into()),
    };
    assert_eq!(find_cosign(&env).unwrap(), fake);
    let env = Env {
        cosign: Some("".into()),
        path: Some("/nonexistent".into()),
    };
    assert_eq!(find_cosign(&env).unwrap_err(), "cosign is not on PATH");
    // Not executable: not a cosign.
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = Env {
        cosign: Some(fake.clone().into()),
        path: None,
    };
    assert!(find_cosign(&env).unwrap_err().contains("not an executable"));
}

#[test]
fn a_missing_key_is_an_error_before_anything_else() {
    let args = verify_with(Path::new("/nonexistent/cosign.pub"));
    let (r, w) = check(
        &args,
        "docker://r.example/app:1",
        &RegistryArgs::default(),
        &no_cosign(),
    );
    let e = crate::error::one_line(&r.unwrap_err());
    assert!(
        e.starts_with("--cosign-key /nonexistent/cosign.pub: cannot read the key"),
        "{e}"
    );
    assert!(w.is_empty());
    let d = tempfile::tempdir().unwrap();
    let e = check_key(d.path()).unwrap_err().to_string();
    assert!(e.contains("is not a file"), "{e}");
    // A KMS URI is cosign's business.
    assert_eq!(
        check_key(Path::new("awskms:///alias/k")).unwrap(),
        "awskms:///alias/k"
    );
}

#[test]
fn cosign_is_run_on_the_pulled_digest_and_its_verdict_counts() {
    let (_k, key) = key_dir();
    let d = tempfile::tempdir().unwrap();
    let fake = fake_cosign(d.path(), 0, "Verification for ... ok\n");
    let env = Env {
        cosign: Some(fake.into()),
        path: None,
    };
    let mut args = require_with(&key);
    args.cosign_offline = true;
    let registry = RegistryArgs {
        tls_verify: false,
        ..Default::default()
    };
    let (r, w) = check(&args, "docker://127.0.0.1:5000/app:1", &registry, &env);
    let note = r.unwrap().unwrap();
    assert_eq!(
        note,
        format!(
            "signature of 127.0.0.1:5000/app@sha256:{HEX} verified with {}",
            key.display()
        )
    );
    assert!(w.is_empty());
    let argv = std::fs::read_to_string(d.path().join("argv")).unwrap();
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "verify",
            "--key",
            key.to_str().unwrap(),
            "--allow-insecure-registry",
            "--insecure-ignore-tlog=true",
            &format!("127.0.0.1:5000/app@sha256:{HEX}")
        ]
    );

    // cosign says no: the error names the image, the key and cosign's last line.
    let d = tempfile::tempdir().unwrap();
    let fake = fake_cosign(
        d.path(),
        10,
        "Error: no matching signatures\nmain.go:69: error during command execution: no matching signatures: invalid signature\n\n",
    );
    let env = Env {
        cosign: Some(fake.into()),
        path: None,
    };
    let (r, _) = check(&verify_with(&key), "alpine", &RegistryArgs::default(), &env);
    let e = crate::error::one_line(&r.unwrap_err());
    assert_eq!(
        e,
        format!(
            "cosign verify of docker.io/library/alpine@sha256:{HEX} with {} failed: main.go:69: error during command execution: no matching signatures: invalid signature",
            key.display()
        )
    );

    // Silent failure: the exit status.
    let d = tempfile::tempdir().unwrap();
    let fake = fake_cosign(d.path(), 3, "");
    let env = Env {
        cosign: Some(fake.into()),
        path: None,
    };
    let (r, _) = check(
        &verify_with(&key),
        "http://127.0.0.1:5000/app:1",
        &RegistryArgs::default(),
        &env,
    );
    let e = crate::error::one_line(&r.unwrap_err());
    assert!(e.ends_with("failed: exit status 3"), "{e}");
    let argv = std::fs::read_to_string(d.path().join("argv")).unwrap();
    assert!(argv.contains("--allow-http-registry\n"), "{argv}");
}

#[test]
fn short_names_with_search_registries_are_not_guessed() {
    let (_k, key) = key_dir();
    let registry = RegistryArgs {
        search_registries: true,
        ..Default::default()
    };
    let (r, _) = check(&require_with(&key), "alpine:3.19", &registry, &no_cosign());
    let e = crate::error::one_line(&r.unwrap_err());
    assert!(e.contains("--search-registries"), "{e}");
    let (r, w) = check(&verify_with(&key), "alpine:3.19", &registry, &no_cosign());
    assert_eq!(r.unwrap(), None);
    assert!(w[0].contains("NOT checked"));
}

#[test]
fn last_line_skips_blank_lines_and_stays_short() {
    assert_eq!(last_line(b"a\nb\n \n"), Some("b".to_string()));
    assert_eq!(last_line(b"\n  \n"), None);
    let long = "x".repeat(1000);
    assert_eq!(last_line(long.as_bytes()).unwrap().chars().count(), 401);
}

#[test]
fn preflight_refuses_early_only_what_require_cannot_do() {
    let (_k, key) = key_dir();
    let reg = RegistryArgs::default();
    // --verify-cosign: only the key is checked before the pull.
    preflight_with(&verify_with(&key), "oci:/x", &reg, &no_cosign()).unwrap();
    preflight_with(&verify_with(&key), "r.example/app:1", &reg, &no_cosign()).unwrap();
    let e = preflight_with(
        &verify_with(Path::new("/nonexistent/k.pub")),
        "r.example/app:1",
        &reg,
        &no_cosign(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("cannot read the key"));
    // --require-cosign: a local source, or no cosign, fails before anything is pulled.
    let e = preflight_with(&require_with(&key), "oci:/x", &reg, &no_cosign()).unwrap_err();
    assert!(e.to_string().contains("not a registry reference"), "{e}");
    let e = preflight_with(
        &require_with(&key),
        "http://127.0.0.1:5000/app:1",
        &reg,
        &no_cosign(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("http://127.0.0.1:5000/app:1 cannot be checked") && e.contains(INSTALL_HINT),
        "{e}"
    );
    let search = RegistryArgs {
        search_registries: true,
        ..Default::default()
    };
    assert!(preflight_with(&require_with(&key), "alpine", &search, &no_cosign()).is_err());
    // With cosign there, and no flags at all: nothing to say.
    let d = tempfile::tempdir().unwrap();
    let env = Env {
        cosign: Some(fake_cosign(d.path(), 0, "").into()),
        path: None,
    };
    preflight_with(&require_with(&key), "r.example/app:1", &reg, &env).unwrap();
    preflight_with(&CosignArgs::default(), "oci:/x", &reg, &no_cosign()).unwrap();
    assert!(
        !d.path().join("argv").exists(),
        "preflight does not run cosign"
    );
}
