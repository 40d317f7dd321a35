//! `docker-daemon:REF` (issue 13): an image straight from the running Docker Engine, with no
//! `docker save` by hand; clear one-line errors when the engine or the image is not there.

use e2e::{assert_one_line_error, fixtures, have, oci2bin_cmd, require, text, Runner};
use std::process::Command;

/// Loads the busybox fixture into the engine as `tag` (skopeo writes straight into the daemon).
fn load_busybox(tag: &str) {
    let o = Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:latest", fixtures::busybox().display()))
        .arg(format!("docker-daemon:{tag}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy: {}", text(&o.stderr));
}

fn rmi(tag: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
}

#[test]
fn an_image_from_the_docker_daemon_builds_and_runs() {
    if !e2e::docker::required()
        || !require(have("skopeo"), "skopeo is not installed")
        || !e2e::runner::userns()
    {
        return;
    }
    let tag = "o2b-e2e/daemon-busybox:v1";
    load_busybox(tag);
    let dir = e2e::world_tempdir();
    let out = dir.path().join("from-daemon");
    let o = oci2bin_cmd(&[&format!("docker-daemon:{tag}"), out.to_str().unwrap()]);
    rmi(tag);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("image digest: o2b-e2e/daemon-busybox:v1@sha256:"));
    assert_eq!(
        Runner::new().ok(&out, &["cat", "/etc/issue"]),
        "busybox fixture\n"
    );
    // Nothing spooled is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".oci2bin-daemon-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_default_output_name_and_tag_follow_the_daemon_reference() {
    if !e2e::docker::required() || !require(have("skopeo"), "skopeo is not installed") {
        return;
    }
    let tag = "o2b-e2e/daemon-named:latest";
    load_busybox(tag);
    let dir = e2e::world_tempdir();
    let o = Command::new(e2e::oci2bin())
        .arg("docker-daemon:o2b-e2e/daemon-named")
        .current_dir(dir.path())
        .output()
        .unwrap();
    rmi(tag);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(dir.path().join("daemon-named_latest").exists());
}

#[test]
fn a_missing_image_or_daemon_is_a_one_line_error_naming_it() {
    if !e2e::docker::required() {
        return;
    }
    let dir = e2e::world_tempdir();
    let out = dir.path().join("never");
    let o = oci2bin_cmd(&[
        "docker-daemon:o2b-e2e/no-such-image:1",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &o,
        "image o2b-e2e/no-such-image:1 not found in the docker daemon",
    );
    assert!(!out.exists());
    let o = Command::new(e2e::oci2bin())
        .args(["docker-daemon:busybox:latest", out.to_str().unwrap()])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_one_line_error(
        &o,
        "cannot reach the docker daemon at unix:///nonexistent/docker.sock",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
}
