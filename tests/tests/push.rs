//! `oci2bin push FILE REF` against a real registry (the harness of `e2e::registry`): a built file
//! goes up as the image it holds, skopeo and our own pull read it back with the same digest,
//! token auth wants credentials for a push, big layers go up in chunks, and a second push of the
//! same image uploads no blob. Each test runs oci2bin with a HOME of its own, so no credentials or
//! certs.d of this machine leak in.

use std::path::Path;
use std::process::{Command, Output};

use e2e::registry::{skopeo, Auth, Registry};
use e2e::{assert_one_line_error, fixtures, have, require, text, Runner};

fn tools() -> bool {
    require(
        have("docker-registry") && have("skopeo") && have("openssl") && have("htpasswd"),
        "docker-registry, skopeo, openssl and htpasswd (make deps)",
    )
}

/// `oci2bin ARGS…` with an empty HOME.
fn oci2bin(home: &Path, args: &[&str]) -> Output {
    Command::new(e2e::oci2bin())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// `oci2bin push [EXTRA…] FILE HOST/REPO_TAG`, asserting success; returns the digest it printed
/// after checking the line is `HOST/REPO_TAG@sha256:…`.
fn push_ok(home: &Path, reg: &Registry, file: &Path, repo_tag: &str, extra: &[&str]) -> String {
    let dest = format!("{}/{repo_tag}", reg.host());
    let mut args = vec!["push"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    args.push(&dest);
    let o = oci2bin(home, &args);
    assert!(
        o.status.success(),
        "oci2bin {args:?} failed:\n{}\nregistry log:\n{}",
        text(&o.stderr),
        reg.log()
    );
    let out = text(&o.stdout);
    let line = out.trim();
    assert_eq!(out.lines().count(), 1, "stdout: {out}");
    let digest = line
        .strip_prefix(&format!("{dest}@"))
        .unwrap_or_else(|| panic!("`{line}` is not {dest}@DIGEST"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest.to_string()
}

/// The digest `skopeo inspect` reports for `repo_tag`.
fn skopeo_digest(reg: &Registry, repo_tag: &str) -> String {
    let o = skopeo()
        .arg("inspect")
        .args(reg.skopeo_flags("", true))
        .arg(reg.docker_ref(repo_tag))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo inspect: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// Blob uploads the registry saw: upload starts, chunks and blob PUTs.
fn uploads(reg: &Registry) -> usize {
    reg.requests("POST", "/blobs/uploads/")
        + reg.requests("PATCH", "/blobs/uploads/")
        + reg.requests("PUT", "/blobs/uploads/")
}

#[test]
fn a_built_file_pushes_as_the_image_it_holds_and_a_second_push_uploads_no_blob() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::Plain);
    let file = fixtures::busybox_bin();
    let digest = push_ok(
        home.path(),
        &reg,
        file,
        "o2b/busybox:pushed",
        &["--tls-verify=false"],
    );
    assert!(uploads(&reg) > 0);
    assert_eq!(skopeo_digest(&reg, "o2b/busybox:pushed"), digest);

    // skopeo copies it back byte for byte: same manifest digest in the layout it writes.
    let back = tempfile::tempdir().unwrap();
    let o = skopeo()
        .args(["copy", "--quiet"])
        .args(reg.skopeo_flags("src", true))
        .arg(reg.docker_ref("o2b/busybox:pushed"))
        .arg(format!("oci:{}:back", back.path().display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy: {}", text(&o.stderr));
    assert_eq!(
        fixtures::tagged(back.path(), "back")["digest"].as_str(),
        Some(digest.as_str())
    );

    // Again, to another tag: every blob is there, only the manifest goes up.
    let before = uploads(&reg);
    let manifests = reg.requests("PUT", "/manifests/");
    let again = push_ok(
        home.path(),
        &reg,
        file,
        "o2b/busybox:again",
        &["--tls-verify=false"],
    );
    assert_eq!(again, digest);
    assert_eq!(uploads(&reg), before, "the second push uploaded blobs");
    assert_eq!(reg.requests("PUT", "/manifests/"), manifests + 1);
    assert_eq!(skopeo_digest(&reg, "o2b/busybox:again"), digest);
}

#[test]
fn a_token_registry_takes_a_push_with_creds_and_refuses_an_anonymous_one() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let pass = "s3cret-push-pw";
    let reg = Registry::start(Auth::token("pusher", pass));
    let file = fixtures::busybox_bin().to_str().unwrap();
    let dest = format!("{}/o2b/busybox:tok", reg.host());

    let o = oci2bin(
        home.path(),
        &["push", "--tls-verify=false", file, dest.as_str()],
    );
    assert_one_line_error(&o, reg.host());
    let err = text(&o.stderr);
    assert!(err.contains("o2b/busybox"), "{err}");
    assert!(err.contains("oci2bin login"), "{err}");
    assert!(!err.contains(pass), "{err}");

    let creds = format!("--creds=pusher:{pass}");
    let digest = push_ok(
        home.path(),
        &reg,
        Path::new(file),
        "o2b/busybox:tok",
        &["--tls-verify=false", &creds],
    );
    assert_eq!(skopeo_digest(&reg, "o2b/busybox:tok"), digest);

    // Wrong credentials: one line, no password.
    let o = oci2bin(
        home.path(),
        &[
            "push",
            "--tls-verify=false",
            "--creds=pusher:not-the-pw",
            file,
            dest.as_str(),
        ],
    );
    assert_one_line_error(&o, reg.host());
    assert!(!text(&o.stderr).contains("not-the-pw"));
}

#[test]
fn debian_goes_up_in_chunks_and_comes_back_through_our_pull_once() {
    if !tools() {
        return;
    }
    let biggest = fixtures::layers(fixtures::debian(), "latest")
        .iter()
        .map(|(_, s)| *s)
        .max()
        .unwrap();
    assert!(
        biggest > 8 << 20,
        "the Debian fixture has no layer over 8 MiB ({biggest} bytes): chunks go untested"
    );
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::Plain);
    let digest = push_ok(
        home.path(),
        &reg,
        fixtures::debian_bin(),
        "o2b/debian:12",
        &["--tls-verify=false"],
    );
    assert!(
        reg.requests("PATCH", "/blobs/uploads/") >= 2,
        "no chunked upload:\n{}",
        reg.access_log()
    );
    assert_eq!(skopeo_digest(&reg, "o2b/debian:12"), digest);

    let out_dir = e2e::world_tempdir();
    let out = out_dir.path().join("debian-back");
    let o = oci2bin(
        home.path(),
        &[
            "--tls-verify=false",
            "-q",
            &format!("docker://{}/o2b/debian:12", reg.host()),
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "pull back: {}", text(&o.stderr));
    assert!(Runner::new()
        .ok(&out, &["cat", "/etc/os-release"])
        .contains("bookworm"));

    // A second pull of the four-layer image fetches no blob: only the manifest is asked for.
    let (gets, manifests) = (reg.blob_gets(), reg.requests("GET", "/manifests/"));
    let again = out_dir.path().join("debian-again");
    let o = oci2bin(
        home.path(),
        &[
            "--tls-verify=false",
            "-q",
            &format!("docker://{}/o2b/debian:12", reg.host()),
            again.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "second pull: {}", text(&o.stderr));
    assert_eq!(reg.blob_gets(), gets, "the second pull fetched blobs");
    assert_eq!(reg.requests("GET", "/manifests/"), manifests + 1);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn an_oci_layout_source_pushes_too() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::Plain);
    let layout = format!("oci:{}:latest", fixtures::busybox().display());
    let digest = push_ok(
        home.path(),
        &reg,
        Path::new(&layout),
        "o2b/layout:1",
        &["--tls-verify=false"],
    );
    // Byte for byte: the layout's own manifest.
    assert_eq!(
        fixtures::tagged(fixtures::busybox(), "latest")["digest"].as_str(),
        Some(digest.as_str())
    );
    assert_eq!(skopeo_digest(&reg, "o2b/layout:1"), digest);
}

/// The engine here allows 127.0.0.0/8 as an insecure registry: what we push, `docker pull` takes
/// and `docker run` runs, with the digest we printed.
#[test]
fn docker_pulls_and_runs_what_we_pushed() {
    if !tools() || !e2e::docker::required() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    let home = tempfile::tempdir().unwrap();
    let digest = push_ok(
        home.path(),
        &reg,
        fixtures::busybox_bin(),
        "o2b/docker-pull:1",
        &["--tls-verify=false"],
    );
    let image = format!("{}/o2b/docker-pull:1", reg.host());
    let o = Command::new("docker")
        .args(["pull", &image])
        .output()
        .unwrap();
    assert!(o.status.success(), "docker pull: {}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&digest), "{}", text(&o.stdout));
    let o = Command::new("docker")
        .args(["run", "--rm", "--net", "none", &image, "cat", "/etc/issue"])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    assert!(o.status.success(), "docker run: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "busybox fixture\n");
}

/// `skopeo inspect --raw` bytes of `repo_tag` and their sha256.
fn raw_and_digest(reg: &Registry, repo_tag: &str) -> (Vec<u8>, String) {
    use sha2::Digest;
    let o = skopeo()
        .args(["inspect", "--raw"])
        .args(reg.skopeo_flags("", true))
        .arg(reg.docker_ref(repo_tag))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect --raw: {}",
        text(&o.stderr)
    );
    let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&o.stdout)));
    (o.stdout, d)
}

/// Mount requests (`POST …/blobs/uploads/?mount=…`) the registry answered 201 Created.
fn mounted(reg: &Registry) -> usize {
    reg.requests("POST", "?mount="); // waits for the log to settle
    reg.access_log()
        .lines()
        .filter(|l| l.contains("\"POST /v2/") && l.contains("?mount=") && l.contains("\" 201 "))
        .count()
}

/// Issue 13: a file built from `docker://REG/base/busybox` and pushed to `REG/team/app` has its
/// blobs mounted from `base/busybox` (cross-repository mount) instead of uploaded again.
#[test]
fn a_file_built_from_a_registry_mounts_its_blobs_from_that_repository() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "base/busybox:1");
    let file = home.path().join("busybox_1");
    let src = format!("docker://{}/base/busybox:1", reg.host());
    let o = oci2bin(
        home.path(),
        &["-q", "--tls-verify=false", &src, file.to_str().unwrap()],
    );
    assert!(o.status.success(), "build: {}", text(&o.stderr));
    let blobs = 1 + fixtures::layers(fixtures::busybox(), "latest").len();
    let digest = push_ok(
        home.path(),
        &reg,
        &file,
        "team/app:1",
        &["--tls-verify=false"],
    );
    assert_eq!(mounted(&reg), blobs, "{}", reg.access_log());
    assert_eq!(
        reg.requests("PATCH", "team/app/blobs/uploads/")
            + reg.requests("PUT", "team/app/blobs/uploads/"),
        0,
        "blobs were uploaded, not mounted"
    );
    assert_eq!(skopeo_digest(&reg, "team/app:1"), digest);
}

/// With bearer tokens, the push asks for `pull` on the repository it mounts from as well as
/// `pull,push` on its own (two scopes in one token request), so the mount is allowed.
#[test]
fn a_token_registry_mounts_with_a_token_scoped_to_both_repositories() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let pass = "s3cret-mount-pw";
    let reg = Registry::start(Auth::token("pusher", pass));
    reg.push_layout(fixtures::busybox(), "latest", "base/busybox:1");
    let src = format!("docker://{}/base/busybox:1", reg.host());
    let creds = format!("--creds=pusher:{pass}");
    let digest = push_ok(
        home.path(),
        &reg,
        Path::new(&src),
        "team/app:1",
        &["--tls-verify=false", &creds],
    );
    let blobs = 1 + fixtures::layers(fixtures::busybox(), "latest").len();
    assert_eq!(mounted(&reg), blobs, "{}", reg.access_log());
    let asked = reg.token_server().log();
    assert!(
        asked.iter().any(|r| r
            .scopes
            .contains(&"repository:team/app:pull,push".to_string())
            && r.scopes
                .contains(&"repository:base/busybox:pull".to_string())),
        "no token request named both scopes: {:?}",
        asked.iter().map(|r| &r.scopes).collect::<Vec<_>>()
    );
    assert_eq!(skopeo_digest(&reg, "team/app:1"), digest);
}

/// `push --all` copies a multi-arch index as it is (from a registry or an OCI layout): every
/// manifest by digest, then the index's exact bytes under the tag, so the tag names the source's
/// digest. Without `--all`, the host's image alone goes up.
#[test]
fn push_all_keeps_a_multi_arch_index_byte_for_byte() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::Plain);
    reg.push_layout_all(fixtures::busybox_multiarch(), "latest", "o2b/multi:1");
    let (src_raw, src_digest) = raw_and_digest(&reg, "o2b/multi:1");
    let src = format!("docker://{}/o2b/multi:1", reg.host());
    let digest = push_ok(
        home.path(),
        &reg,
        Path::new(&src),
        "copy/multi:1",
        &["--tls-verify=false", "--all"],
    );
    assert_eq!(digest, src_digest);
    let (raw, _) = raw_and_digest(&reg, "copy/multi:1");
    assert_eq!(raw, src_raw);
    // Both platforms' manifests are there, by digest, and their blobs came by mount.
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let (_, got) = raw_and_digest(&reg, &format!("copy/multi@{d}"));
        assert_eq!(got, d);
    }
    assert!(mounted(&reg) > 0, "{}", reg.access_log());

    // From an OCI layout holding the index, the same bytes go up.
    let layout = format!("oci:{}:latest", fixtures::busybox_multiarch().display());
    let from_layout = push_ok(
        home.path(),
        &reg,
        Path::new(&layout),
        "layout/multi:1",
        &["--tls-verify=false", "--all"],
    );
    assert_eq!(from_layout, src_digest);
    assert_eq!(raw_and_digest(&reg, "layout/multi:1").0, src_raw);

    let single = push_ok(
        home.path(),
        &reg,
        Path::new(&src),
        "copy/single:1",
        &["--tls-verify=false"],
    );
    assert_eq!(
        single,
        index["manifests"][0]["digest"].as_str().unwrap(),
        "without --all the host's (amd64) image is pushed"
    );
}

/// An identity token stored in auth.json (`identitytoken`, what `docker login` keeps for an
/// OAuth2 registry) is traded for a push token with the OAuth2 `refresh_token` grant, and never
/// printed.
#[test]
fn an_identity_token_in_auth_json_pushes_through_the_oauth2_form() {
    if !tools() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::token("pusher", "unused-pw-1"));
    let refresh = reg.token_server().refresh_token().to_string();
    let auth = home.path().join("auth.json");
    std::fs::write(
        &auth,
        serde_json::json!({"auths": {reg.host(): {"identitytoken": refresh}}}).to_string(),
    )
    .unwrap();
    let file = fixtures::busybox_bin();
    let authfile = format!("--authfile={}", auth.display());
    let digest = push_ok(
        home.path(),
        &reg,
        file,
        "o2b/busybox:idtok",
        &["--tls-verify=false", &authfile],
    );
    assert_eq!(skopeo_digest(&reg, "o2b/busybox:idtok"), digest);
    let log = reg.token_server().log();
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.user.as_deref() == Some("pusher")),
        "no refresh-token grant in {:?}",
        log.iter().map(|r| (&r.method, &r.user)).collect::<Vec<_>>()
    );
    // Nothing printed holds the token, also when it is refused.
    let bad = home.path().join("bad.json");
    std::fs::write(
        &bad,
        serde_json::json!({"auths": {reg.host(): {"identitytoken": "wrong-refresh-token-77"}}})
            .to_string(),
    )
    .unwrap();
    let dest = format!("{}/o2b/busybox:bad", reg.host());
    let o = oci2bin(
        home.path(),
        &[
            "push",
            "--tls-verify=false",
            &format!("--authfile={}", bad.display()),
            file.to_str().unwrap(),
            &dest,
        ],
    );
    assert_one_line_error(&o, reg.host());
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        !all.contains("wrong-refresh-token-77") && !all.contains(&refresh),
        "{all}"
    );
}
