//! The client against an in-process fake registry (tiny_http): auth flows, retries, resumes,
//! redirects, digests and the errors users see. The real registry runs in the e2e suite.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::registry::auth::Credential;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Seen {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    fn path(&self) -> &str {
        self.url.split('?').next().unwrap()
    }
}

/// What the fake answers.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes (after a full Content-Length), then drop the connection.
    cut_after: Option<usize>,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            cut_after: None,
        }
    }
    fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A body reader that fails after `left` bytes, so the client sees a cut connection.
struct CutReader {
    data: io::Cursor<Vec<u8>>,
    left: usize,
}

impl Read for CutReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"));
        }
        let n = buf.len().min(self.left);
        let n = self.data.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

type Handler = dyn Fn(&Seen, &str) -> Reply + Send + Sync;

struct Fake {
    base: String,
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// Serves `handler(request, base_url)` on a loopback port until the test process ends.
    fn start(handler: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static) -> Fake {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", server.server_addr().to_ip().unwrap().port());
        let base = format!("http://{host}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (b, s) = (base.clone(), seen.clone());
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for mut rq in server.incoming_requests() {
                let mut body = String::new();
                let _ = rq.as_reader().read_to_string(&mut body);
                let req = Seen {
                    method: rq.method().to_string(),
                    url: rq.url().to_string(),
                    headers: rq
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_ascii_lowercase(),
                                h.value.to_string(),
                            )
                        })
                        .collect(),
                    body,
                };
                s.lock().unwrap().push(req.clone());
                let r = handler(&req, &b);
                let headers: Vec<tiny_http::Header> = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
                    })
                    .collect();
                let len = r.body.len();
                let reader = CutReader {
                    left: r.cut_after.unwrap_or(len),
                    data: io::Cursor::new(r.body),
                };
                let resp = tiny_http::Response::new(
                    tiny_http::StatusCode(r.status),
                    headers,
                    reader,
                    Some(len),
                    None,
                );
                let _ = rq.respond(resp);
            }
        });
        Fake { base, host, seen }
    }

    fn endpoint(&self, credential: Option<Credential>) -> Endpoint {
        Endpoint {
            host: format!("http://{}", self.host),
            repository: "lib/app".into(),
            insecure: false,
            credential,
        }
    }

    fn client(&self, credential: Option<Credential>) -> Result<Client> {
        Client::connect(
            &self.endpoint(credential),
            &TlsOptions::default(),
            Timeouts {
                connect: Duration::from_secs(5),
                read: Duration::from_secs(5),
            },
            fast_retry(),
        )
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn seen_path(&self, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path() == path)
            .collect()
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    }
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

fn blob_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn blob_desc() -> Descriptor {
    let b = blob_bytes();
    Descriptor::new(model::MEDIA_OCI_LAYER_GZIP, Digest::of(&b), b.len() as u64)
}

fn blob_path() -> String {
    format!("/v2/lib/app/blobs/{}", blob_desc().digest)
}

fn pull_blob(c: &Client) -> (Result<PathBuf>, tempfile::TempDir, BlobCache) {
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(t.path());
    cache.prepare().unwrap();
    let r = c.blob(
        &blob_desc(),
        "layer",
        &cache,
        &AtomicBool::new(false),
        &|_| {},
    );
    (r, t, cache)
}

/// Serves a manifest and the blob to anyone.
fn open_registry(seen: &Seen, _base: &str) -> Reply {
    match seen.path() {
        "/v2/" => Reply::new(200, "{}"),
        "/v2/lib/app/manifests/1.0" => Reply::new(200, MANIFEST)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        "/v2/lib/app/tags/list" => Reply::new(200, r#"{"name":"lib/app","tags":["1.0"]}"#),
        p if p == blob_path() => Reply::new(200, blob_bytes()),
        _ => Reply::new(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
        ),
    }
}

#[test]
fn manifests_are_asked_for_with_all_four_types_and_hashed() {
    let f = Fake::start(open_registry);
    let c = f.client(None).unwrap();
    let m = c.manifest("1.0").unwrap();
    assert_eq!(m.digest, Digest::of(MANIFEST));
    assert_eq!(m.media_type, model::MEDIA_OCI_MANIFEST);
    let accept = f.seen_path("/v2/lib/app/manifests/1.0")[0]
        .h("accept")
        .unwrap()
        .to_string();
    for t in [
        model::MEDIA_OCI_MANIFEST,
        model::MEDIA_OCI_INDEX,
        model::MEDIA_DOCKER_MANIFEST,
        model::MEDIA_DOCKER_LIST,
    ] {
        assert!(accept.contains(t), "{accept}");
    }
}

#[test]
fn unknown_repositories_and_tags_are_named() {
    let f = Fake::start(|s, b| match s.path() {
        "/v2/lib/app/manifests/nope" => Reply::new(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        ),
        _ => open_registry(s, b),
    });
    let c = f.client(None).unwrap();
    let e = c.manifest("nope").unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "tag `nope` not found in lib/app on {} (it has: 1.0)",
            f.host
        )),
        "{e}"
    );
    let ep = Endpoint {
        repository: "lib/missing".into(),
        ..f.endpoint(None)
    };
    let c = Client::connect(
        &ep,
        &TlsOptions::default(),
        Timeouts::default(),
        fast_retry(),
    )
    .unwrap();
    let e = c.manifest("1.0").unwrap_err().to_string();
    assert!(
        e.contains("repository lib/missing not found on 127.0.0.1"),
        "{e}"
    );
}

#[test]
fn schema_1_manifests_are_refused_clearly() {
    let f = Fake::start(|s, b| match s.path() {
        "/v2/lib/app/manifests/old" => {
            Reply::new(200, r#"{"schemaVersion":1,"name":"lib/app","fsLayers":[]}"#).header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
        }
        _ => open_registry(s, b),
    });
    let e = f
        .client(None)
        .unwrap()
        .manifest("old")
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema 1") && e.contains("lib/app:old"), "{e}");
}

/// A registry with token auth: the token endpoint hands `tok-N` to anyone (or only to u:p when
/// `need_password`), and the registry takes only the newest token.
fn token_registry(need_password: bool, get_allowed: bool) -> Fake {
    let issued = Arc::new(Mutex::new(0u32));
    Fake::start(move |s, base| {
        let current = format!("Bearer tok-{}", *issued.lock().unwrap());
        let challenge = format!(r#"Bearer realm="{base}/token",service="fake""#);
        match s.path() {
            "/token" => {
                if s.method == "GET" && !get_allowed {
                    return Reply::new(405, "");
                }
                let ok = !need_password
                    || s.h("authorization") == Some("Basic dTpw")
                    || s.body.contains("password=p");
                if !ok {
                    return Reply::new(401, r#"{"details":"bad password"}"#);
                }
                let mut n = issued.lock().unwrap();
                *n += 1;
                Reply::new(200, format!(r#"{{"token":"tok-{n}","expires_in":300}}"#))
            }
            "/v2/" if s.h("authorization").is_none() => {
                Reply::new(401, "").header("WWW-Authenticate", &challenge)
            }
            _ if s.h("authorization") != Some(&current) => {
                Reply::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                    .header("WWW-Authenticate", &challenge)
            }
            _ => open_registry(s, base),
        }
    })
}

#[test]
fn anonymous_bearer_tokens_are_fetched_once_per_scope() {
    let f = token_registry(false, true);
    let c = f.client(None).unwrap();
    c.manifest("1.0").unwrap();
    let (r, _t, _) = pull_blob(&c);
    r.unwrap();
    let tokens = f.seen_path("/token");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(
        tokens[0]
            .url
            .contains("scope=repository%3Alib%2Fapp%3Apull"),
        "{}",
        tokens[0].url
    );
    assert!(tokens[0].url.contains("service=fake"));
    assert!(tokens[0].h("authorization").is_none());
}

#[test]
fn a_revoked_token_is_replaced_on_401() {
    let f = token_registry(false, true);
    let c = f.client(None).unwrap();
    c.manifest("1.0").unwrap();
    // Someone else's token fetch makes ours stale.
    ureq::get(&format!("{}/token", f.base)).call().unwrap();
    c.manifest("1.0").unwrap();
    assert_eq!(f.seen_path("/token").len(), 3);
}

#[test]
fn passwords_go_to_the_token_endpoint_by_get_or_the_oauth2_form() {
    let f = token_registry(true, true);
    f.client(Some(Credential::basic("u", "p")))
        .unwrap()
        .manifest("1.0")
        .unwrap();
    let f = token_registry(true, false);
    f.client(Some(Credential::basic("u", "p")))
        .unwrap()
        .manifest("1.0")
        .unwrap();
    let posts: Vec<_> = f
        .seen_path("/token")
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0].body.contains("grant_type=password")
            && posts[0]
                .body
                .contains("scope=repository%3Alib%2Fapp%3Apull")
    );
}

#[test]
fn a_refused_password_is_one_line_naming_the_registry_and_never_the_password() {
    let f = token_registry(true, true);
    let e = f
        .client(Some(Credential::basic("u", "s3cret-pw")))
        .unwrap()
        .manifest("1.0")
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(matches!(e, RegistryError::BadCredentials { .. }), "{shown}");
    assert!(
        shown.contains(&f.host) && shown.contains("oci2bin login"),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret") && !shown.contains('\n'),
        "{shown}"
    );
}

#[test]
fn anonymous_pulls_of_private_repositories_say_how_to_log_in() {
    let f = token_registry(true, true);
    let e = f
        .client(None)
        .unwrap()
        .manifest("1.0")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--creds") && e.contains(&format!("oci2bin login {}", f.host)),
        "{e}"
    );
}

#[test]
fn basic_auth_sends_the_credential_after_the_challenge() {
    let f = Fake::start(|s, b| {
        if s.h("authorization") != Some("Basic dTpw") {
            return Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="r""#);
        }
        open_registry(s, b)
    });
    f.client(Some(Credential::basic("u", "p")))
        .unwrap()
        .manifest("1.0")
        .unwrap();
    let e = f
        .client(Some(Credential::basic("u", "wrong")))
        .unwrap()
        .manifest("1.0")
        .unwrap_err();
    assert!(matches!(e, RegistryError::BadCredentials { .. }), "{e}");
}

#[test]
fn busy_answers_are_retried_with_retry_after_then_given_up() {
    let n = Arc::new(Mutex::new(0));
    let m = n.clone();
    let f = Fake::start(move |s, b| {
        if s.path().contains("/manifests/") {
            let mut k = m.lock().unwrap();
            *k += 1;
            if *k <= 2 {
                return Reply::new(503, "").header("Retry-After", "0");
            }
        }
        open_registry(s, b)
    });
    f.client(None).unwrap().manifest("1.0").unwrap();
    assert_eq!(f.seen_path("/v2/lib/app/manifests/1.0").len(), 3);

    let f = Fake::start(|s, b| match s.path() {
        "/v2/" => open_registry(s, b),
        _ => Reply::new(503, ""),
    });
    let e = f
        .client(None)
        .unwrap()
        .manifest("1.0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("503") && e.contains("after 4 attempts"), "{e}");
}

#[test]
fn a_cut_blob_transfer_resumes_with_range() {
    let f = Fake::start(|s, b| {
        if s.path() == blob_path() {
            let all = blob_bytes();
            return match s.h("range") {
                None => Reply {
                    cut_after: Some(100_000),
                    ..Reply::new(200, all)
                },
                Some(r) => {
                    let from: usize = r
                        .trim_start_matches("bytes=")
                        .trim_end_matches('-')
                        .parse()
                        .unwrap();
                    let len = all.len();
                    Reply::new(206, all[from..].to_vec())
                        .header("Content-Range", &format!("bytes {from}-{}/{len}", len - 1))
                }
            };
        }
        open_registry(s, b)
    });
    let c = f.client(None).unwrap();
    let (r, _t, _) = pull_blob(&c);
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), blob_bytes());
    let gets = f.seen_path(&blob_path());
    assert_eq!(gets.len(), 2, "{gets:?}");
    let range = gets[1].h("range").unwrap();
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 100_000, "{range}");
}

#[test]
fn a_server_ignoring_range_restarts_the_blob() {
    let n = Arc::new(Mutex::new(0));
    let m = n.clone();
    let f = Fake::start(move |s, b| {
        if s.path() == blob_path() {
            let mut k = m.lock().unwrap();
            *k += 1;
            return Reply {
                cut_after: (*k == 1).then_some(50_000),
                ..Reply::new(200, blob_bytes())
            };
        }
        open_registry(s, b)
    });
    let (r, _t, _) = pull_blob(&f.client(None).unwrap());
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), blob_bytes());
}

#[test]
fn redirects_to_storage_carry_no_authorization() {
    let f = Fake::start(|s, b| {
        if s.path().starts_with("/storage/") {
            return Reply::new(200, blob_bytes());
        }
        if s.h("authorization") != Some("Basic dTpw") {
            return Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="r""#);
        }
        if s.path() == blob_path() {
            return Reply::new(307, "").header("Location", &format!("{b}/storage/blob?sig=x"));
        }
        open_registry(s, b)
    });
    let (r, _t, _) = pull_blob(&f.client(Some(Credential::basic("u", "p"))).unwrap());
    r.unwrap();
    let storage = f.seen_path("/storage/blob");
    assert_eq!(storage.len(), 1);
    assert!(storage[0].h("authorization").is_none(), "{storage:?}");
}

#[test]
fn a_corrupted_blob_is_refused_and_not_cached() {
    let f = Fake::start(|s, b| {
        if s.path() == blob_path() {
            let mut all = blob_bytes();
            all[1234] ^= 1;
            return Reply::new(200, all);
        }
        open_registry(s, b)
    });
    let (r, t, cache) = pull_blob(&f.client(None).unwrap());
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("does not match its digest") && e.contains(&blob_desc().digest.to_string()),
        "{e}"
    );
    assert!(cache.lookup(&blob_desc()).is_none());
    assert_eq!(std::fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_cached_blob_is_not_downloaded_again() {
    let f = Fake::start(open_registry);
    let c = f.client(None).unwrap();
    let (r, t, cache) = pull_blob(&c);
    r.unwrap();
    c.blob(
        &blob_desc(),
        "layer",
        &cache,
        &AtomicBool::new(false),
        &|_| {},
    )
    .unwrap();
    assert_eq!(f.seen_path(&blob_path()).len(), 1);
    drop(t);
}

#[test]
fn nothing_listening_is_unreachable_naming_the_host() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = Endpoint {
        host: format!("127.0.0.1:{port}"),
        repository: "x".into(),
        insecure: false,
        credential: None,
    };
    let e = Client::connect(
        &ep,
        &TlsOptions::default(),
        Timeouts::default(),
        fast_retry(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// A registry holding one small image as `lib/app:1.0` (manifest, config, one layer); the
/// handler may override any answer first.
fn image_registry(
    over: impl Fn(&Seen, &str, &ImageFiles) -> Option<Reply> + Send + Sync + 'static,
) -> (Fake, ImageFiles) {
    let files = ImageFiles::new();
    let f = files.clone();
    let fake = Fake::start(move |s, b| {
        if let Some(r) = over(s, b, &f) {
            return r;
        }
        let blob = |d: &Digest| format!("/v2/lib/app/blobs/{d}");
        match s.path() {
            "/v2/" => Reply::new(200, "{}"),
            "/v2/lib/app/manifests/1.0" => Reply::new(200, f.manifest.clone()),
            p if p == format!("/v2/lib/app/manifests/{}", Digest::of(&f.manifest)) => {
                Reply::new(200, f.manifest.clone())
            }
            p if p == blob(&Digest::of(&f.config)) => Reply::new(200, f.config.clone()),
            p if p == blob(&Digest::of(&f.layer)) => Reply::new(200, f.layer.clone()),
            _ => Reply::new(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
        }
    });
    (fake, files)
}

#[derive(Clone)]
struct ImageFiles {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

impl ImageFiles {
    fn new() -> ImageFiles {
        let layer = crate::model::tests_support::gzip_layer(&[("hello", b"hi\n")]);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let manifest = model::oci_manifest_bytes(
            &Descriptor::new(
                model::MEDIA_OCI_CONFIG,
                Digest::of(&config),
                config.len() as u64,
            ),
            &[Descriptor::new(
                model::MEDIA_OCI_LAYER_GZIP,
                Digest::of(&layer),
                layer.len() as u64,
            )],
        );
        ImageFiles {
            manifest,
            config,
            layer,
        }
    }
}

fn pull_image(
    endpoints: &[Endpoint],
    wanted: &crate::registry::pull::Wanted,
    cache: &BlobCache,
    warnings: &Mutex<Vec<String>>,
) -> crate::Result<crate::model::Image> {
    let warn = |m: &str| warnings.lock().unwrap().push(m.to_string());
    crate::registry::pull::pull(
        endpoints,
        wanted,
        crate::reference::ImageName::parse("app:1.0").unwrap(),
        "app:1.0",
        &crate::registry::pull::PullOptions {
            tls: TlsOptions::default(),
            platform: None,
            jobs: 2,
            cache: cache.clone(),
            timeouts: Timeouts::default(),
            retry: fast_retry(),
            warn: &warn,
            progress: &crate::registry::pull::Quiet,
        },
    )
}

#[test]
fn a_failing_mirror_falls_through_to_the_next_endpoint() {
    let (good, files) = image_registry(|_, _, _| None);
    let (broken, _) =
        image_registry(|s, _, _| (s.path() != "/v2/").then(|| Reply::new(500, "mirror trouble")));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = Endpoint {
        host: format!("http://127.0.0.1:{port}"),
        ..good.endpoint(None)
    };
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(t.path());
    let warnings = Mutex::new(Vec::new());
    let wanted = crate::registry::pull::Wanted {
        tag: Some("1.0".into()),
        digest: None,
    };
    let image = pull_image(
        &[gone, broken.endpoint(None), good.endpoint(None)],
        &wanted,
        &cache,
        &warnings,
    )
    .unwrap();
    assert_eq!(image.manifest.digest, Digest::of(&files.manifest));
    assert!(cache.lookup(&image.layers[0]).is_some());
    let w = warnings.into_inner().unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains(&format!("127.0.0.1:{port} failed")), "{w:?}");
    assert!(
        w[1].contains(&broken.host) && w[1].contains(&good.host),
        "{w:?}"
    );
    // The working registry served every blob; the broken mirror none.
    assert_eq!(
        broken
            .seen()
            .iter()
            .filter(|s| s.path().contains("/blobs/"))
            .count(),
        0
    );
    let mut layer = Vec::new();
    image
        .blobs
        .open(&image.layers[0])
        .unwrap()
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(layer, files.layer);
}

#[test]
fn a_digest_reference_refuses_a_manifest_with_other_bytes() {
    let (f, files) = image_registry(|s, _, files| {
        s.path()
            .contains("/manifests/sha256:")
            .then(|| Reply::new(200, [files.manifest.clone(), b" ".to_vec()].concat()))
    });
    let t = tempfile::tempdir().unwrap();
    let cache = BlobCache::new(t.path());
    let want = Digest::of(&files.manifest);
    let e = pull_image(
        &[f.endpoint(None)],
        &crate::registry::pull::Wanted {
            tag: None,
            digest: Some(want),
        },
        &cache,
        &Mutex::new(Vec::new()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("the manifest")
            && e.contains("does not match its digest")
            && e.contains(&want.to_string()),
        "{e}"
    );
    assert!(std::fs::read_dir(t.path().join("sha256"))
        .unwrap()
        .next()
        .is_none());
}
