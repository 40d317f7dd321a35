//! Registry pulls against a real registry (Debian's docker-registry, through the harness of
//! `e2e::registry`): transports, auth, platforms, references, the blob cache, faults, and the
//! errors users see. Each test runs oci2bin with a HOME of its own, so the blob cache starts
//! empty and no certs.d or credentials of this machine leak in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::registry::{Auth, FaultProxy, ProxiedRequest, Registry};
use e2e::{assert_one_line_error, fixtures, have, require, text, Runner};

fn tools() -> bool {
    require(
        have("docker-registry") && have("skopeo") && have("openssl") && have("htpasswd"),
        "docker-registry, skopeo, openssl and htpasswd (make deps)",
    )
}

/// A HOME (blob cache, certs.d) and an output directory of one test.
struct Puller {
    home: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Puller {
    fn new() -> Puller {
        Puller {
            home: tempfile::tempdir().unwrap(),
            out: e2e::world_tempdir(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(e2e::oci2bin());
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .current_dir(self.out.path());
        c
    }

    /// `oci2bin ARGS… SOURCE OUT` with OUT in the output dir.
    fn pull(&self, source: &str, out: &str, args: &[&str]) -> Output {
        let out = self.out.path().join(out);
        let mut all = args.to_vec();
        all.push(source);
        all.push(out.to_str().unwrap());
        self.command(&all).output().unwrap()
    }

    fn pull_ok(&self, source: &str, out: &str, args: &[&str]) -> PathBuf {
        let o = self.pull(source, out, args);
        assert!(
            o.status.success(),
            "oci2bin {args:?} {source} failed:\n{}",
            text(&o.stderr)
        );
        self.out.path().join(out)
    }

    fn blobs(&self) -> PathBuf {
        self.home.path().join(".cache/oci2bin/blobs")
    }

    fn cached(&self, digest: &str) -> bool {
        self.blobs()
            .join("sha256")
            .join(digest.trim_start_matches("sha256:"))
            .exists()
    }

    fn partial_blobs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.blobs().join("tmp")) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Every file in the output dir (a failed pull must leave none, temporary ones included).
    fn outputs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

/// What the busybox fixture says when run: its FIXTURE variable.
fn fixture_of(file: &Path) -> String {
    Runner::new().ok(file, &["sh", "-c", "echo $FIXTURE"])
}

fn inspect_json(file: &Path) -> serde_json::Value {
    let o = e2e::oci2bin_cmd(&["inspect", "--json", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn busybox_layers() -> Vec<(String, u64)> {
    fixtures::layers(fixtures::busybox(), "latest")
}

fn busybox_digest() -> String {
    fixtures::tagged(fixtures::busybox(), "latest")["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn plain_busybox() -> Registry {
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "library/busybox:latest");
    reg
}

#[test]
fn a_plain_registry_pull_runs_as_the_test_user() {
    if !tools() || !e2e::runner::userns() {
        return;
    }
    let reg = plain_busybox();
    let p = Puller::new();
    let f = p.pull_ok(
        &format!("docker://{}/library/busybox:latest", reg.host()),
        "bb",
        &["--tls-verify=false"],
    );
    assert_eq!(fixture_of(&f), "busybox\n");
    let meta = inspect_json(&f);
    assert_eq!(meta["manifest_digest"], busybox_digest());
    assert_eq!(
        meta["source"],
        format!("docker://{}/library/busybox:latest", reg.host())
    );

    // A bare reference, and the default output name from it.
    let o = p
        .command(&[
            "--tls-verify",
            "false",
            &format!("{}/library/busybox:latest", reg.host()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(p.out.path().join("busybox_latest").is_file());
    // Download bars are for terminals: a pipe gets nothing on stderr.
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
}

#[test]
fn https_is_required_unless_tls_verify_is_false() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let p = Puller::new();
    let o = p.pull(
        &format!("docker://{}/library/busybox:latest", reg.host()),
        "bb",
        &[],
    );
    assert_one_line_error(&o, reg.host());
    let err = text(&o.stderr);
    assert!(
        err.contains("TLS") && err.contains("--tls-verify=false") && err.contains("--cert-dir"),
        "{err}"
    );
    assert!(p.outputs().is_empty(), "{:?}", p.outputs());
}

#[test]
fn basic_auth_takes_creds_and_a_wrong_password_is_one_line_naming_the_registry() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::basic("alice", "s3cret-pw"));
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let src = format!("docker://{}/busybox:latest", reg.host());
    let p = Puller::new();
    let f = p.pull_ok(
        &src,
        "bb",
        &["--tls-verify=false", "--creds", "alice:s3cret-pw"],
    );
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());

    let p = Puller::new();
    let o = p.pull(
        &src,
        "bb",
        &["--tls-verify=false", "--creds", "alice:wrong-pw-123"],
    );
    assert_one_line_error(&o, reg.host());
    let err = text(&o.stderr);
    assert!(
        err.contains("401") && err.contains("oci2bin login"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw-123"), "{err}");
    assert!(p.outputs().is_empty(), "{:?}", p.outputs());
    assert!(p.partial_blobs().is_empty());

    let o = p.pull(&src, "bb", &["--tls-verify=false"]);
    assert_one_line_error(&o, "--creds");
    assert!(p.outputs().is_empty());
}

#[test]
fn tls_with_the_registry_ca_in_cert_dir_and_refused_without() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Tls);
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let src = format!("docker://{}/busybox:latest", reg.host());
    let p = Puller::new();
    let cert_dir = reg.cert_dir();
    let f = p.pull_ok(&src, "bb", &["--cert-dir", cert_dir.to_str().unwrap()]);
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());

    let p = Puller::new();
    let o = p.pull(&src, "bb", &[]);
    assert_one_line_error(&o, reg.host());
    let err = text(&o.stderr);
    assert!(
        err.contains("--tls-verify=false") && err.contains("--cert-dir"),
        "{err}"
    );
    assert!(p.outputs().is_empty());

    // The per-host directory of certs.d works as --cert-dir does.
    let certs_d = p
        .home
        .path()
        .join(".config/containers/certs.d")
        .join(reg.host());
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(reg.ca_cert_path(), certs_d.join("ca.crt")).unwrap();
    p.pull_ok(&src, "bb", &[]);

    // Unverified TLS needs no CA.
    Puller::new().pull_ok(&src, "bb", &["--tls-verify=false"]);
}

/// Mutual TLS: a registry that requires a client certificate takes the pair from `--cert-dir`
/// (`*.cert` + `*.key`, skopeo's layout) and refuses a client without one, in one line that
/// names the host.
#[test]
fn mutual_tls_presents_the_client_pair_from_cert_dir() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::MutualTls);
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let src = format!("docker://{}/busybox:latest", reg.host());
    let p = Puller::new();
    let f = p.pull_ok(
        &src,
        "bb",
        &["--cert-dir", reg.cert_dir().to_str().unwrap()],
    );
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());

    let ca_only = tempfile::tempdir().unwrap();
    std::fs::copy(reg.ca_cert_path(), ca_only.path().join("ca.crt")).unwrap();
    let p = Puller::new();
    let o = p.pull(
        &src,
        "bb",
        &["--cert-dir", ca_only.path().to_str().unwrap()],
    );
    assert_one_line_error(&o, reg.host());
    assert!(p.outputs().is_empty());
}

#[test]
fn token_auth_pulls_anonymously_and_with_creds() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::token("bob", "tok-pw"));
    reg.push_layout(fixtures::busybox(), "latest", "team/busybox:latest");
    let src = format!("docker://{}/team/busybox:latest", reg.host());
    let before = reg.token_server().requests();
    let p = Puller::new();
    let f = p.pull_ok(&src, "bb", &["--tls-verify=false"]);
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());
    let asked = reg.token_server().requests() - before;
    // One token for the repository's pull scope serves the manifest, config and layers.
    assert!((1..=2).contains(&asked), "{asked} token requests");

    Puller::new().pull_ok(&src, "bb", &["--tls-verify=false", "--creds", "bob:tok-pw"]);

    reg.token_server().set_anonymous_pull(false);
    let p = Puller::new();
    let o = p.pull(&src, "bb", &["--tls-verify=false"]);
    assert_one_line_error(&o, "oci2bin login");
    assert!(p.outputs().is_empty());
    let o = p.pull(
        &src,
        "bb",
        &["--tls-verify=false", "--creds", "bob:not-the-pw"],
    );
    assert_one_line_error(&o, reg.host());
    assert!(!text(&o.stderr).contains("not-the-pw"));
}

#[test]
fn a_multi_arch_index_resolves_to_the_host_or_platform_and_lists_what_exists() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    reg.push_layout_all(fixtures::busybox_multiarch(), "latest", "multi:latest");
    let src = format!("docker://{}/multi:latest", reg.host());
    let p = Puller::new();
    let host = p.pull_ok(&src, "host", &["--tls-verify=false"]);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(inspect_json(&host)["architecture"], arch);
    let arm = p.pull_ok(
        &src,
        "arm",
        &["--tls-verify=false", "--platform", "linux/arm64"],
    );
    assert_eq!(inspect_json(&arm)["architecture"], "arm64");
    let v8 = p.pull_ok(
        &src,
        "v8",
        &["--tls-verify=false", "--platform", "linux/arm64/v8"],
    );
    assert_eq!(inspect_json(&v8)["architecture"], "arm64");

    let o = p.pull(
        &src,
        "s390x",
        &["--tls-verify=false", "--platform", "linux/s390x"],
    );
    assert_one_line_error(&o, "linux/s390x");
    let err = text(&o.stderr);
    assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
    assert!(!p.out.path().join("s390x").exists());
}

#[test]
fn a_digest_reference_pulls_that_manifest_and_names_the_output_after_it() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let d = busybox_digest();
    let p = Puller::new();
    let f = p.pull_ok(
        &format!("{}/library/busybox@{d}", reg.host()),
        "bb",
        &["--tls-verify=false"],
    );
    let meta = inspect_json(&f);
    assert_eq!(meta["manifest_digest"], d);
    assert_eq!(
        meta["image"],
        format!("{}/library/busybox:sha256-{}", reg.host(), &d[7..19])
    );

    let other = format!("sha256:{}", "0".repeat(64));
    let o = p.pull(
        &format!("{}/library/busybox@{other}", reg.host()),
        "none",
        &["--tls-verify=false"],
    );
    assert_one_line_error(&o, &other);
}

#[test]
fn unknown_tags_and_repositories_are_named() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let p = Puller::new();
    let o = p.pull(
        &format!("{}/library/busybox:nope", reg.host()),
        "x",
        &["--tls-verify=false"],
    );
    assert_one_line_error(
        &o,
        &format!(
            "tag `nope` not found in library/busybox on {} (it has: latest)",
            reg.host()
        ),
    );
    let o = p.pull(
        &format!("{}/nobody/here:1", reg.host()),
        "x",
        &["--tls-verify=false"],
    );
    assert_one_line_error(&o, "repository nobody/here not found");
    assert!(p.outputs().is_empty());
}

#[test]
fn nothing_listening_is_one_line_naming_the_host() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Puller::new();
    let host = format!("127.0.0.1:{port}");
    let o = p.pull(&format!("{host}/x:1"), "x", &["--tls-verify=false"]);
    assert_one_line_error(&o, &format!("cannot reach {host}"));
    assert!(p.outputs().is_empty());
}

#[test]
fn a_second_pull_downloads_no_blob() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let src = format!("{}/library/busybox:latest", reg.host());
    let p = Puller::new();
    p.pull_ok(&src, "one", &["--tls-verify=false"]);
    let gets = reg.blob_gets();
    assert_eq!(gets, 1 + busybox_layers().len(), "{}", reg.access_log());
    for (d, _) in busybox_layers() {
        assert!(p.cached(&d), "{d} not cached");
    }
    let second = p.pull_ok(&src, "two", &["--tls-verify=false"]);
    assert_eq!(reg.blob_gets(), gets, "{}", reg.access_log());
    assert_eq!(inspect_json(&second)["manifest_digest"], busybox_digest());
}

#[test]
fn a_corrupted_blob_fails_with_its_digest_and_leaves_nothing() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let proxy = FaultProxy::start(reg.host());
    let (layer, _) = busybox_layers().pop().unwrap();
    proxy.corrupt_blob(&layer);
    let p = Puller::new();
    let o = p.pull(
        &format!("http://{}/library/busybox:latest", proxy.host()),
        "bb",
        &["--tls-verify=false"],
    );
    assert_one_line_error(&o, &format!("does not match its digest {layer}"));
    assert!(p.outputs().is_empty(), "{:?}", p.outputs());
    assert!(!p.cached(&layer));
    assert!(p.partial_blobs().is_empty(), "{:?}", p.partial_blobs());
}

#[test]
fn busy_blob_answers_are_retried() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let proxy = FaultProxy::start(reg.host());
    proxy.fail_blob_gets(2);
    let p = Puller::new();
    let f = p.pull_ok(
        &format!("http://{}/library/busybox:latest", proxy.host()),
        "bb",
        &["--tls-verify=false"],
    );
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());
    let statuses: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|r| r.digest.is_some())
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        2,
        "{statuses:?}"
    );
}

/// The busybox fixture's biggest layer: `(digest, size)`.
fn biggest_busybox_layer() -> (String, u64) {
    busybox_layers()
        .into_iter()
        .max_by_key(|(_, s)| *s)
        .unwrap()
}

/// The proxy saw `layer` fetched twice, the second time with `Range` from `at`, and the whole
/// layer (`size` bytes) crossed the wire once. Returns the two requests.
fn assert_resumed(proxy: &FaultProxy, layer: &str, at: u64, size: u64) -> Vec<ProxiedRequest> {
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.digest.as_deref() == Some(layer))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={at}-").as_str())
    );
    assert_eq!(gets[0].body_bytes + gets[1].body_bytes, size);
    gets
}

#[test]
fn a_cut_connection_resumes_with_range() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let proxy = FaultProxy::start(reg.host());
    let (layer, size) = biggest_busybox_layer();
    let cut_at = size / 3;
    proxy.cut_blob_once(&layer, cut_at);
    let p = Puller::new();
    let f = p.pull_ok(
        &format!("http://{}/library/busybox:latest", proxy.host()),
        "bb",
        &["--tls-verify=false"],
    );
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());
    let gets = assert_resumed(&proxy, &layer, cut_at, size);
    assert!(gets[0].cut);
    assert_eq!(gets[1].status, 206);
}

/// A registry that goes silent in the middle of a layer: after `--registry-timeout` the pull
/// drops the connection and resumes with `Range` where the bytes stopped.
#[test]
fn a_stalled_layer_times_out_and_resumes_where_it_stopped() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let proxy = FaultProxy::start(reg.host());
    let (layer, size) = biggest_busybox_layer();
    let stall_at = size / 2;
    proxy.stall_blob_once(&layer, stall_at, Duration::from_secs(30));
    let p = Puller::new();
    let started = Instant::now();
    let f = p.pull_ok(
        &format!("http://{}/library/busybox:latest", proxy.host()),
        "bb",
        &["--tls-verify=false", "--registry-timeout=2"],
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: the stall was waited out"
    );
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());
    assert_resumed(&proxy, &layer, stall_at, size);
}

/// A registry that keeps blobs in object storage answers blob GETs with a redirect to a signed
/// URL on another host: the pull follows it without sending the registry's credentials there.
#[test]
fn blob_redirects_are_followed_without_the_registry_credentials() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::basic("alice", "redirect-pw-9"));
    reg.push_layout(fixtures::busybox(), "latest", "library/busybox:latest");
    let proxy = FaultProxy::start(reg.host());
    proxy.redirect_blobs(&reg.storage_dir());
    let p = Puller::new();
    let f = p.pull_ok(
        &format!("http://{}/library/busybox:latest", proxy.host()),
        "bb",
        &["--tls-verify=false", "--creds", "alice:redirect-pw-9"],
    );
    assert_eq!(inspect_json(&f)["manifest_digest"], busybox_digest());
    let log = proxy.requests();
    let storage: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with("/storage/"))
        .collect();
    assert!(
        !storage.is_empty(),
        "no blob was fetched from storage: {log:?}"
    );
    assert!(storage.iter().all(|r| r.status == 200), "{storage:?}");
    assert!(
        storage.iter().all(|r| !r.authorization),
        "credentials went to the storage host: {storage:?}"
    );
    assert!(
        log.iter().any(|r| r.status == 307 && r.authorization),
        "the registry itself got no credentials: {log:?}"
    );
}

#[test]
fn an_interrupted_pull_leaves_no_partial_blob_or_output() {
    if !tools() {
        return;
    }
    let reg = plain_busybox();
    let proxy = FaultProxy::start(reg.host());
    // The layer goes silent halfway, with its first half in a partial blob. (Busy answers
    // left too short a window: their `Retry-After: 0` is retried at once, and a poll missed the
    // partial blob now and then.)
    let (layer, size) = biggest_busybox_layer();
    proxy.stall_blob_once(&layer, size / 2, Duration::from_secs(30));
    let p = Puller::new();
    let mut child = p
        .command(&[
            "--tls-verify=false",
            &format!("http://{}/library/busybox:latest", proxy.host()),
            "bb",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.partial_blobs().is_empty() {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "no partial blob appeared; the pull {:?}: {}; requests: {:?}",
                o.status,
                text(&o.stderr),
                proxy.requests()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(p.partial_blobs().is_empty(), "{:?}", p.partial_blobs());
    assert!(p.outputs().is_empty(), "{:?}", p.outputs());
}
