//! `oci2bin login` and `logout` as a user runs them: podman's auth.json, private (0600 in 0700
//! directories, owned by the user), in podman's places, and no password in any output.
//!
//! `--verify=false` where a test talks to no registry; one test checks credentials against a
//! real one.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use e2e::{assert_one_line_error, text, Runner};

const PASSWORD: &str = "e2e-pa55-W0RD-never-print-me";

/// Runs `oci2bin ARGS` as the test user with `env` added and `stdin` on its standard input.
fn run(r: &Runner, env: &[(&str, &Path)], args: &[&str], stdin: &str) -> Output {
    let o = r.run_with_stdin(&e2e::oci2bin(), args, env, stdin);
    assert_no_secret(&o, args);
    o
}

fn assert_no_secret(o: &Output, args: &[&str]) {
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    for secret in [
        PASSWORD.to_string(),
        b64(&format!("me:{PASSWORD}")),
        b64(&format!("you:{PASSWORD}")),
    ] {
        assert!(!all.contains(&secret), "{args:?} printed a secret:\n{all}");
    }
}

/// `login -u USER --password-stdin --verify=false REGISTRY`.
fn login_args<'a>(user: &'a str, registry: &'a str) -> [&'a str; 6] {
    [
        "login",
        "-u",
        user,
        "--password-stdin",
        "--verify=false",
        registry,
    ]
}

fn ok(o: &Output, args: &str) -> String {
    assert!(
        o.status.success(),
        "{args} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn auths(file: &Path) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v["auths"].as_object().unwrap().clone()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Asserts `file` is the user's, 0600, in a 0700 directory.
fn assert_private(r: &Runner, file: &Path) {
    let m = std::fs::metadata(file).unwrap();
    assert_eq!(m.uid(), r.uid(), "{} not owned by the user", file.display());
    assert_eq!(mode(file), 0o600, "{}", file.display());
    assert_eq!(mode(file.parent().unwrap()), 0o700, "{}", file.display());
}

/// A directory of the test user's under its home.
fn user_dir(r: &Runner, name: &str) -> PathBuf {
    let d = r.home().join(name);
    ok(
        &r.run(
            Path::new("/bin/mkdir"),
            &["-m", "0700", d.to_str().unwrap()],
        ),
        "mkdir",
    );
    d
}

#[test]
fn login_writes_a_private_auth_json_and_logout_removes_entries() {
    let r = Runner::new();
    let file = r.home().join(".config/containers/auth.json");
    let login = |user: &str, registry: &str| {
        let args = login_args(user, registry);
        let out = ok(&run(&r, &[], &args, &format!("{PASSWORD}\n")), "login");
        assert!(out.contains(&file.display().to_string()), "{out}");
    };
    login("me", "127.0.0.1:5000");
    assert_private(&r, &file);
    assert_eq!(mode(&r.home().join(".config")), 0o700);
    login("you", "https://index.docker.io/v1/");
    assert_private(&r, &file);
    let a = auths(&file);
    // The newline that ends stdin is not part of the password.
    assert_eq!(a["127.0.0.1:5000"]["auth"], b64(&format!("me:{PASSWORD}")));
    assert_eq!(a["docker.io"]["auth"], b64(&format!("you:{PASSWORD}")));

    let out = ok(&run(&r, &[], &["logout", "docker.io"], ""), "logout");
    assert!(out.contains("docker.io"), "{out}");
    assert_eq!(auths(&file).keys().collect::<Vec<_>>(), ["127.0.0.1:5000"]);
    assert_private(&r, &file);
    let o = run(&r, &[], &["logout", "docker.io"], "");
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_error(&o, "not logged in to docker.io");

    ok(&run(&r, &[], &["logout", "--all"], ""), "logout --all");
    assert!(auths(&file).is_empty());
}

#[test]
fn login_writes_where_podman_does() {
    let r = Runner::new();
    let runtime = user_dir(&r, "run");
    let args = login_args("me", "quay.io");
    let stdin = format!("{PASSWORD}\n");

    run(&r, &[("XDG_RUNTIME_DIR", &runtime)], &args, &stdin);
    let in_runtime = runtime.join("containers/auth.json");
    assert_private(&r, &in_runtime);
    assert!(auths(&in_runtime).contains_key("quay.io"));

    let env_file = r.home().join("env-auth.json");
    run(
        &r,
        &[
            ("XDG_RUNTIME_DIR", &runtime),
            ("REGISTRY_AUTH_FILE", &env_file),
        ],
        &args,
        &stdin,
    );
    assert_eq!(mode(&env_file), 0o600);
    assert!(auths(&env_file).contains_key("quay.io"));

    let flag_file = r.home().join("sub/flag-auth.json");
    let mut with_flag = args.to_vec();
    with_flag.extend(["--authfile", flag_file.to_str().unwrap()]);
    run(&r, &[("REGISTRY_AUTH_FILE", &env_file)], &with_flag, &stdin);
    assert_private(&r, &flag_file);
    assert!(!r.home().join(".config/containers/auth.json").exists());
}

#[test]
fn login_checks_the_credentials_with_the_registry_before_storing_them() {
    use e2e::registry::{Auth, Registry};
    if !e2e::require(
        e2e::have("docker-registry") && e2e::have("htpasswd"),
        "docker-registry and htpasswd (make deps)",
    ) {
        return;
    }
    let reg = Registry::start(Auth::basic("me", PASSWORD));
    let r = Runner::new();
    let login = ["login", "-u", "me", "--password-stdin", reg.host()];
    let file = r.home().join(".config/containers/auth.json");
    let o = run(&r, &[], &login, "not-the-password");
    assert_one_line_error(&o, reg.host());
    assert!(!file.exists(), "a refused login stores nothing");
    ok(&run(&r, &[], &login, PASSWORD), "login");
    assert_eq!(
        auths(&file)[reg.host()]["auth"],
        b64(&format!("me:{PASSWORD}"))
    );
}

#[test]
fn login_errors_are_one_line_and_show_no_password() {
    let r = Runner::new();
    let stdin = format!("{PASSWORD}\n");
    let fail = |env: &[(&str, &Path)], args: &[&str], stdin: &str, needle: &str| {
        let o = run(&r, env, args, stdin);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        assert_one_line_error(&o, needle);
    };
    fail(
        &[],
        &["login", "--password-stdin", "--verify=false", "quay.io"],
        &stdin,
        "needs --username",
    );
    fail(
        &[],
        &["login", "-u", "me", "--verify=false", "quay.io"],
        &stdin,
        "no terminal",
    );
    fail(&[], &login_args("me", "quay.io"), "\n", "password is empty");
    fail(
        &[],
        &login_args("a:b", "quay.io"),
        &stdin,
        "must not contain",
    );
    fail(
        &[],
        &login_args("me", "no host"),
        &stdin,
        "is not a registry",
    );
    // A damaged auth file holding the password: reported by position, never quoted.
    let bad = r.home().join("bad.json");
    std::fs::write(
        &bad,
        format!("{{\"auths\": {{\"quay.io\": {{\"auth\": \"{PASSWORD}"),
    )
    .unwrap();
    std::os::unix::fs::chown(&bad, Some(r.uid()), None).unwrap_or(());
    for args in [
        &login_args("me", "quay.io")[..],
        &["logout", "quay.io"][..],
        &["logout", "--all"][..],
    ] {
        fail(
            &[("REGISTRY_AUTH_FILE", &bad)],
            args,
            &stdin,
            "is not valid JSON (line 1",
        );
    }
}
