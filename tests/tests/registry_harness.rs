//! The registry harness itself, checked against real consumers: every registry variant takes a
//! skopeo push and serves it back, refuses what it must refuse, and the fault proxy's knobs do to
//! skopeo what the resume / retry / corruption tests will expect them to do to our pull client.

use e2e::fixtures;
use e2e::registry::{self, skopeo, Auth, FaultProxy, Registry};
use e2e::{have, require, text};
use std::process::Output;

fn tools() -> bool {
    require(
        have("docker-registry") && have("skopeo") && have("openssl") && have("htpasswd"),
        "docker-registry, skopeo, openssl and htpasswd (make deps)",
    )
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed:\n{}", text(&o.stderr));
}

fn failed(o: &Output, what: &str) -> String {
    assert!(!o.status.success(), "{what} unexpectedly succeeded");
    text(&o.stderr)
}

/// `skopeo inspect` of `reference` with `flags`: the digest of what the registry serves.
fn inspect(reference: &str, flags: &[String]) -> Output {
    skopeo()
        .args(["inspect", "--format", "{{.Digest}}"])
        .args(flags)
        .arg(reference)
        .output()
        .unwrap()
}

fn busybox_digest() -> String {
    fixtures::tagged(fixtures::busybox(), "latest")["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Copies `reference` into a fresh OCI layout, as a pull client would fetch it.
fn pull(reference: &str, flags: &[&str]) -> Output {
    let dst = tempfile::tempdir().unwrap();
    skopeo()
        .args(["copy", "--quiet"])
        .args(flags)
        .arg(reference)
        .arg(format!("oci:{}:t", dst.path().display()))
        .output()
        .unwrap()
}

#[test]
fn a_plain_registry_serves_back_what_skopeo_pushed_and_counts_blob_gets() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    assert!(reg.host().starts_with("127.0.0.1:") && !reg.host().ends_with(":0"));
    reg.push_layout(fixtures::busybox(), "latest", "library/busybox:1");
    let o = inspect(
        &reg.docker_ref("library/busybox:1"),
        &reg.skopeo_flags("", false),
    );
    ok(&o, "skopeo inspect");
    assert_eq!(text(&o.stdout).trim(), busybox_digest(), "pushed as is");

    // A pull fetches the config and both layers: three blob GETs in the access log.
    let before = reg.blob_gets();
    ok(
        &pull(
            &reg.docker_ref("library/busybox:1"),
            &["--src-tls-verify=false"],
        ),
        "skopeo copy from the registry",
    );
    assert_eq!(reg.blob_gets() - before, 3, "{}", reg.access_log());
}

#[test]
fn a_blob_damaged_at_rest_is_served_as_is() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let (digest, _) = big_layer();
    let path = reg.blob_data_path(&digest);
    let mut b = std::fs::read(&path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&path, b).unwrap();
    let err = failed(
        &pull(
            &reg.docker_ref("busybox:latest"),
            &["--src-tls-verify=false"],
        ),
        "pull of a blob damaged at rest",
    );
    assert!(err.to_lowercase().contains("digest did not match"), "{err}");
}

#[test]
fn a_registry_is_gone_with_its_storage_once_dropped() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    let (host, dir) = (reg.host().to_owned(), reg.dir().to_owned());
    assert!(dir.join("storage").exists() || dir.join("config.yml").exists());
    drop(reg);
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(&host).is_err(),
        "{host} still answers"
    );
}

#[test]
fn a_four_layer_debian_image_goes_in_and_reads_back() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::debian(), "latest", "debian:bookworm");
    let m = reg.raw_manifest("debian:bookworm");
    assert_eq!(m, fixtures::image_manifest(fixtures::debian(), "latest"));
    assert_eq!(m["layers"].as_array().unwrap().len(), 4);
}

#[test]
fn basic_auth_refuses_no_or_wrong_credentials_and_takes_the_right_ones() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::basic("alice", "s3cret"));
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let r = reg.docker_ref("busybox:latest");
    let anonymous = inspect(&r, &reg.skopeo_flags("", false));
    let err = failed(&anonymous, "anonymous inspect");
    assert!(err.contains("401") || err.contains("unauthorized"), "{err}");
    let wrong = inspect(
        &r,
        &["--tls-verify=false".into(), "--creds=alice:wrong".into()],
    );
    failed(&wrong, "inspect with a wrong password");
    let right = inspect(&r, &reg.skopeo_flags("", true));
    ok(&right, "inspect with the right password");
    assert_eq!(text(&right.stdout).trim(), busybox_digest());
}

#[test]
fn tls_is_trusted_through_the_registry_ca_and_refused_without_it() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Tls);
    assert_eq!(reg.url(), format!("https://{}", reg.host()));
    assert!(reg.ca_cert_path().exists());
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let r = reg.docker_ref("busybox:latest");
    let o = pull(&r, &["--src-cert-dir", reg.cert_dir().to_str().unwrap()]);
    ok(&o, "pull verified with the CA");
    // No CA: the system roots do not know ours, so the handshake fails.
    let err = failed(&pull(&r, &[]), "pull without the CA");
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn tls_with_basic_auth_needs_both_the_ca_and_the_password() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::tls_basic("bob", "pw"));
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let r = reg.docker_ref("busybox:latest");
    ok(
        &inspect(&r, &reg.skopeo_flags("", true)),
        "inspect with CA + creds",
    );
    failed(
        &inspect(&r, &reg.skopeo_flags("", false)),
        "inspect without creds",
    );
}

#[test]
fn token_auth_pulls_anonymously_and_pushes_only_with_credentials() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::token("carol", "hunter2"));
    let tokens = reg.token_server();
    let layout = format!("oci:{}:latest", fixtures::busybox().display());
    let push = |flags: &[String]| {
        skopeo()
            .args(["copy", "--quiet"])
            .args(flags)
            .arg(&layout)
            .arg(reg.docker_ref("team/busybox:latest"))
            .output()
            .unwrap()
    };
    let err = failed(&push(&reg.skopeo_flags("dest", false)), "anonymous push");
    assert!(
        err.contains("denied") || err.contains("unauthorized"),
        "{err}"
    );
    let asked = tokens.log();
    assert!(
        asked.iter().any(|t| t.user.is_none()
            && t.scopes.iter().any(|s| s.contains("push"))
            && t.granted.iter().all(|g| !g.contains("push"))),
        "anonymous push scope should be asked and not granted: {asked:?}"
    );

    ok(&push(&reg.skopeo_flags("dest", true)), "authenticated push");
    assert!(tokens
        .log()
        .iter()
        .any(|t| t.user.as_deref() == Some("carol")
            && t.granted == ["repository:team/busybox:pull,push"]));

    let before = tokens.requests();
    let o = inspect(
        &reg.docker_ref("team/busybox:latest"),
        &reg.skopeo_flags("", false),
    );
    ok(&o, "anonymous inspect");
    assert_eq!(text(&o.stdout).trim(), busybox_digest());
    assert!(
        tokens.requests() > before,
        "the pull went through the token server"
    );

    let wrong = inspect(
        &reg.docker_ref("team/busybox:latest"),
        &["--tls-verify=false".into(), "--creds=carol:wrong".into()],
    );
    failed(&wrong, "inspect with a wrong password");
    assert_eq!(tokens.log().last().unwrap().status, 401);

    // A private repository: anonymous clients get no access at all.
    tokens.set_anonymous_pull(false);
    failed(
        &inspect(
            &reg.docker_ref("team/busybox:latest"),
            &reg.skopeo_flags("", false),
        ),
        "anonymous inspect of a private repository",
    );
    ok(
        &inspect(
            &reg.docker_ref("team/busybox:latest"),
            &reg.skopeo_flags("", true),
        ),
        "authenticated inspect of a private repository",
    );
}

/// The claims of a JWT, read without checking its signature (the registry does that).
fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn token_server_speaks_docker_get_and_oauth2_post_and_the_registry_takes_its_tokens() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::token("dave", "pw"));
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let tokens = reg.token_server();
    let agent = registry::plain_agent();
    let scope = "repository:busybox:pull,push";
    let get = |auth: Option<&str>| {
        let mut rq = agent
            .get(tokens.realm())
            .query("service", registry::TOKEN_SERVICE)
            .query("scope", scope);
        if let Some(a) = auth {
            rq = rq.header("Authorization", a);
        }
        let mut r = rq.call().unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = if status == 200 {
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
        } else {
            serde_json::Value::Null
        };
        (status, body)
    };

    // The registry's challenge names our realm and service.
    let r = agent
        .get(format!("{}/v2/busybox/manifests/latest", reg.url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&tokens.realm())
            && challenge.contains(registry::TOKEN_SERVICE),
        "{challenge}"
    );

    let (status, anon) = get(None);
    assert_eq!(status, 200);
    assert_eq!(anon["token"], anon["access_token"]);
    assert_eq!(anon["expires_in"], 300);
    let c = claims(anon["token"].as_str().unwrap());
    assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull"]));
    assert_eq!(c["aud"], registry::TOKEN_SERVICE);
    assert_eq!(c["iss"], registry::TOKEN_ISSUER);

    // "dave:pw" and "dave:nope" in base64.
    let (status, dave) = get(Some("Basic ZGF2ZTpwdw=="));
    assert_eq!(status, 200);
    let c = claims(dave["token"].as_str().unwrap());
    assert_eq!(
        c["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert_eq!(c["sub"], "dave");
    assert_eq!(get(Some("Basic ZGF2ZTpub3Bl")).0, 401);

    let post = |form: &[(&str, &str)]| {
        let mut r = agent
            .post(tokens.realm())
            .send_form(form.iter().copied())
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = if status == 200 {
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
        } else {
            serde_json::Value::Null
        };
        (status, body)
    };
    let (status, oauth) = post(&[
        ("grant_type", "password"),
        ("username", "dave"),
        ("password", "pw"),
        ("service", registry::TOKEN_SERVICE),
        ("client_id", "oci2bin-tests"),
        ("scope", "repository:busybox:pull"),
        ("access_type", "offline"),
    ]);
    assert_eq!(status, 200);
    assert_eq!(oauth["refresh_token"], tokens.refresh_token());
    let (status, refreshed) = post(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh_token()),
        ("service", registry::TOKEN_SERVICE),
        ("scope", "repository:busybox:pull"),
    ]);
    assert_eq!(status, 200);
    assert_eq!(
        post(&[
            ("grant_type", "password"),
            ("username", "dave"),
            ("password", "nope"),
            ("service", registry::TOKEN_SERVICE),
        ])
        .0,
        401
    );

    // The registry verifies our RS256 + x5c JWTs: each of them opens the manifest.
    for jwt in [
        &anon["token"],
        &oauth["access_token"],
        &refreshed["access_token"],
    ] {
        let r = agent
            .get(format!("{}/v2/busybox/manifests/latest", reg.url()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .header(
                "Authorization",
                &format!("Bearer {}", jwt.as_str().unwrap()),
            )
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", reg.log());
    }
    // A token for another repository does not.
    let other = tokens.issue(Some("dave"), &["repository:other:pull"]);
    let r = agent
        .get(format!("{}/v2/busybox/manifests/latest", reg.url()))
        .header("Authorization", &format!("Bearer {other}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn a_multi_arch_index_goes_in_with_all_and_lists_both_platforms() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    reg.push_layout_all(fixtures::busybox_multiarch(), "latest", "multi:latest");
    let index = reg.raw_manifest("multi:latest");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    assert_eq!(index["manifests"][0]["digest"], busybox_digest().as_str());
    let o = skopeo()
        .args(["--override-arch", "arm64", "inspect", "--tls-verify=false"])
        .args(["--format", "{{.Architecture}} {{.Env}}"])
        .arg(reg.docker_ref("multi:latest"))
        .output()
        .unwrap();
    ok(&o, "inspect arm64");
    let out = text(&o.stdout);
    assert!(
        out.starts_with("arm64 ") && out.contains("FIXTURE=busybox-arm64"),
        "{out}"
    );
}

fn busybox_behind_a_proxy() -> (Registry, FaultProxy, String) {
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    let proxy = FaultProxy::start(reg.host());
    let r = format!("docker://{}/busybox:latest", proxy.host());
    (reg, proxy, r)
}

/// The biggest layer of busybox (the one with the binary, ~1 MB).
fn big_layer() -> (String, u64) {
    fixtures::layers(fixtures::busybox(), "latest")
        .into_iter()
        .max_by_key(|l| l.1)
        .unwrap()
}

#[test]
fn the_proxy_passes_a_pull_through_and_counts_blob_gets_and_bytes() {
    if !tools() {
        return;
    }
    let (reg, proxy, r) = busybox_behind_a_proxy();
    ok(
        &pull(&r, &["--src-tls-verify=false"]),
        "pull through the proxy",
    );
    assert_eq!(proxy.blob_gets(), 3);
    assert_eq!(reg.blob_gets(), 3, "every blob GET reached the registry");
    let layer_bytes: u64 = fixtures::layers(fixtures::busybox(), "latest")
        .iter()
        .map(|l| l.1)
        .sum();
    assert!(proxy.body_bytes() > layer_bytes);

    // Range requests go upstream and their 206 comes back.
    let (digest, _) = big_layer();
    let mut resp = registry::plain_agent()
        .get(format!("http://{}/v2/busybox/blobs/{digest}", proxy.host()))
        .header("Range", "bytes=10-19")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 206);
    let got = resp.body_mut().read_to_vec().unwrap();
    let blob = std::fs::read(fixtures::busybox().join("blobs/sha256").join(&digest[7..])).unwrap();
    assert_eq!(got, blob[10..20]);
    let last = proxy.requests().pop().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=10-19"));
    assert_eq!((last.status, last.body_bytes), (206, 10));
}

#[test]
fn the_proxy_forwards_credentials_to_a_token_registry() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::token("erin", "pw"));
    reg.push_layout(fixtures::busybox(), "latest", "busybox:latest");
    reg.token_server().set_anonymous_pull(false);
    let proxy = FaultProxy::start(reg.host());
    let r = format!("docker://{}/busybox:latest", proxy.host());
    // The registry's challenge names the token server itself; only registry traffic is proxied.
    failed(&pull(&r, &["--src-tls-verify=false"]), "anonymous pull");
    ok(
        &pull(&r, &["--src-tls-verify=false", "--src-creds=erin:pw"]),
        "pull with credentials",
    );
    assert_eq!(proxy.blob_gets(), 3);
}

#[test]
fn a_corrupted_layer_makes_skopeo_report_a_digest_mismatch() {
    if !tools() {
        return;
    }
    let (_reg, proxy, r) = busybox_behind_a_proxy();
    let (digest, _) = big_layer();
    proxy.corrupt_blob(&digest);
    let err = failed(
        &pull(&r, &["--src-tls-verify=false"]),
        "pull of a corrupt layer",
    );
    assert!(err.to_lowercase().contains("digest did not match"), "{err}");
}

#[test]
fn injected_503s_answer_blob_gets_until_used_up() {
    if !tools() {
        return;
    }
    let (reg, proxy, r) = busybox_behind_a_proxy();
    // skopeo 1.9 does not retry a blob GET answered 503 (not even with --retry-times): the pull
    // fails on the first one, and the registry never sees that GET.
    proxy.fail_blob_gets(1);
    let err = failed(&pull(&r, &["--src-tls-verify=false"]), "pull meeting a 503");
    assert!(err.contains("503"), "{err}");
    let answered_503 = |p: &FaultProxy| p.requests().iter().filter(|q| q.status == 503).count();
    assert_eq!(answered_503(&proxy), 1);
    assert_eq!(reg.blob_gets(), proxy.blob_gets() - 1);
    // The 503 is used up: the next pull goes through.
    ok(&pull(&r, &["--src-tls-verify=false"]), "pull after the 503");
    assert_eq!(answered_503(&proxy), 1);

    let q = proxy
        .requests()
        .into_iter()
        .find(|q| q.status == 503)
        .unwrap();
    assert!(q.digest.is_some() && q.method == "GET", "{q:?}");
}

#[test]
fn a_cut_mid_layer_fails_a_pull_once_and_a_retry_gets_the_whole_layer() {
    if !tools() {
        return;
    }
    let (_reg, proxy, r) = busybox_behind_a_proxy();
    let (digest, size) = big_layer();
    proxy.cut_blob_once(&digest, size / 2);
    let err = failed(&pull(&r, &["--src-tls-verify=false"]), "pull cut mid-layer");
    assert!(err.to_lowercase().contains("eof"), "{err}");
    let cut: Vec<_> = proxy.requests().into_iter().filter(|q| q.cut).collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].body_bytes, size / 2);
    // The cut was once: the next pull gets the whole layer.
    ok(&pull(&r, &["--src-tls-verify=false"]), "pull after the cut");
    assert_eq!(proxy.blob_gets_of(&digest), 2);
}

#[test]
fn registries_conf_sends_docker_io_pulls_to_the_mirror() {
    if !tools() {
        return;
    }
    let reg = Registry::start(Auth::Plain);
    reg.push_layout(fixtures::busybox(), "latest", "library/busybox:latest");
    let dir = tempfile::tempdir().unwrap();
    let conf = registry::write_registries_conf(dir.path(), &[("docker.io", reg.host(), true)]);
    let toml = std::fs::read_to_string(&conf).unwrap();
    assert!(toml.contains("[[registry.mirror]]"), "{toml}");
    // No internet here: the answer can only come from the mirror.
    let o = registry::skopeo_with_registries_conf(&conf)
        // Listing tags asks the primary location, never a mirror.
        .args(["inspect", "--no-tags", "--format", "{{.Digest}}"])
        .arg("docker://docker.io/library/busybox:latest")
        .output()
        .unwrap();
    ok(&o, "inspect docker.io through the mirror");
    assert_eq!(text(&o.stdout).trim(), busybox_digest());
    assert!(reg
        .access_log()
        .contains("/v2/library/busybox/manifests/latest"));
}
