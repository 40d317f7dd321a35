//! Issue 13 as a user meets it with no internet: `oci2bin alpine:latest`, literally, resolved
//! through registries.conf's mirror for docker.io on loopback, run as an unprivileged user; and
//! credentials stored by `oci2bin login` used by the next pull, with no `--creds`.

use std::path::Path;
use std::process::Output;

use e2e::registry::{write_registries_conf, Auth, Registry};
use e2e::{assert_one_line_error, fixtures, have, require, text, Runner};

fn tools() -> bool {
    require(
        have("docker-registry") && have("skopeo") && have("htpasswd"),
        "docker-registry, skopeo and htpasswd (make deps)",
    )
}

/// `oci2bin ARGS` as the test user, in its home, with `env` added and `stdin` fed.
fn oci2bin_as_user(r: &Runner, env: &[(&str, &Path)], args: &[&str], stdin: &str) -> Output {
    r.run_with_stdin(&e2e::oci2bin(), args, env, stdin)
}

#[test]
fn oci2bin_alpine_latest_pulls_through_a_docker_io_mirror_and_runs() {
    if !tools() || !e2e::runner::userns() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "library/alpine:latest");
    let confdir = e2e::world_tempdir();
    let conf = write_registries_conf(confdir.path(), &[("docker.io", reg.host(), true)]);
    let r = Runner::new();
    let o = oci2bin_as_user(
        &r,
        &[("CONTAINERS_REGISTRIES_CONF", &conf)],
        &["alpine:latest"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("image digest: alpine:latest@sha256:"),
        "{}",
        text(&o.stdout)
    );
    let out = r.home().join("alpine_latest");
    assert!(out.exists(), "the output is named alpine_latest");
    assert_eq!(r.ok(&out, &["cat", "/etc/issue"]), "busybox fixture\n");
}

#[test]
fn a_blocked_registry_is_a_one_line_error_naming_the_file() {
    if !tools() {
        return;
    }
    let confdir = e2e::world_tempdir();
    let conf = confdir.path().join("registries.conf");
    std::fs::write(
        &conf,
        "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\nblocked = true\n",
    )
    .unwrap();
    let r = Runner::new();
    let o = oci2bin_as_user(
        &r,
        &[("CONTAINERS_REGISTRIES_CONF", &conf)],
        &["alpine:latest"],
        "",
    );
    assert_one_line_error(&o, "blocked");
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(conf.to_str().unwrap()));
    assert!(!r.home().join("alpine_latest").exists());
}

#[test]
fn credentials_stored_by_login_are_used_by_the_next_pull() {
    if !tools() {
        return;
    }
    const PASSWORD: &str = "stored-pa55-never-printed";
    let reg = Registry::start(Auth::basic("me", PASSWORD));
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let r = Runner::new();
    let source = format!("docker://{}/busybox:latest", reg.host());
    let pull = ["--tls-verify=false", source.as_str(), "bb"];
    let o = oci2bin_as_user(&r, &[], &pull, "");
    assert_one_line_error(&o, reg.host());
    let login = ["login", "-u", "me", "--password-stdin", reg.host()];
    let o = oci2bin_as_user(&r, &[], &login, PASSWORD);
    assert!(o.status.success(), "login: {}", text(&o.stderr));
    let o = oci2bin_as_user(&r, &[], &pull, "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    for out in [&o.stdout, &o.stderr] {
        assert!(!text(out).contains(PASSWORD));
    }
    assert!(r.home().join("bb").exists());
}
