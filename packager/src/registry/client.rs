//! A client for one repository on one endpoint: the `/v2/` ping that picks the scheme and learns
//! the auth challenge, authenticated requests with retries, manifests, and blobs streamed into the
//! blob cache (resumed with `Range` when a connection drops); for pushes, blob checks (`HEAD`),
//! uploads (monolithic or chunked) and manifest puts.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Deserialize;
use ureq::http::{Method, Response};
use ureq::{Agent, Body};

use super::auth::{self, Action, Authenticator, Authorization, Challenge, Token, TokenRequest};
use super::blobcache::{BlobCache, WriteError};
use super::transport::{self, Failure, RetryPolicy, Timeouts, TlsOptions};
use super::{Endpoint, RegistryError, Result};
use crate::model::{self, Descriptor, Digest, JSON_LIMIT};

/// The manifest types we read, all of them in every manifest request: a registry answers 404 for
/// an OCI manifest not in `Accept`, and turns a Docker v2 one into schema 1.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

const SCHEMA1_TYPES: [&str; 3] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
];

/// How many times a blob download is resumed after its connection drops without progress
/// before giving up (progress resets the count).
const RESUMES: u32 = 5;

pub struct Client {
    agent: Agent,
    /// `https://HOST[:PORT]` or `http://…`.
    base: String,
    host: String,
    repository: String,
    scope: String,
    auth: Authenticator,
    retry: RetryPolicy,
}

/// A fetched manifest or index.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub raw: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Fetched {
    pub fn is_index(&self) -> bool {
        self.media_type == model::MEDIA_OCI_INDEX || self.media_type == model::MEDIA_DOCKER_LIST
    }
}

#[derive(Deserialize)]
struct ErrorsDoc {
    #[serde(default)]
    errors: Vec<ErrorDoc>,
}

#[derive(Deserialize)]
struct ErrorDoc {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The registry's error codes and messages from an error body (the spec's `{"errors": […]}`).
fn error_codes(body: &[u8]) -> (Vec<String>, String) {
    match serde_json::from_slice::<ErrorsDoc>(body) {
        Ok(d) => (
            d.errors.iter().map(|e| e.code.clone()).collect(),
            d.errors
                .iter()
                .map(|e| e.message.trim())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(_) => (Vec::new(), String::new()),
    }
}

/// Reads a small body (errors, JSON documents), at most `limit` bytes.
fn read_small(resp: &mut Response<Body>, limit: u64) -> std::result::Result<Vec<u8>, ureq::Error> {
    resp.body_mut().with_config().limit(limit).read_to_vec()
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn challenge_of(resp: &Response<Body>) -> Option<Challenge> {
    auth::parse_challenges(
        resp.headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Sends with retries: transport failures worth retrying and 408/429/5xx answers are tried again
/// after a back-off (the server's `Retry-After` when it gives one).
pub fn with_retries(
    host: &str,
    what: &str,
    policy: RetryPolicy,
    mut call: impl FnMut() -> std::result::Result<Response<Body>, ureq::Error>,
) -> Result<Response<Body>> {
    let mut attempt = 1;
    loop {
        match call() {
            Ok(resp) if transport::retryable_status(resp.status().as_u16()) => {
                let status = resp.status().as_u16();
                if attempt >= policy.attempts {
                    return Err(RegistryError::GaveUp {
                        host: host.into(),
                        what: what.into(),
                        status,
                        attempts: attempt,
                    });
                }
                let after = transport::retry_after(header(&resp, "retry-after"));
                std::thread::sleep(policy.delay(attempt, after));
            }
            Ok(resp) => return Ok(resp),
            Err(e) if transport::classify(&e).retryable() && attempt < policy.attempts => {
                std::thread::sleep(policy.delay(attempt, None));
            }
            Err(e) => return Err(transport::to_error(host, &e)),
        }
        attempt += 1;
    }
}

/// A request the builder could make (a bad URL or header is ureq's `BadUri`).
fn built<B>(
    r: std::result::Result<ureq::http::Request<B>, ureq::http::Error>,
) -> std::result::Result<ureq::http::Request<B>, ureq::Error> {
    r.map_err(|e| ureq::Error::BadUri(e.to_string()))
}

/// `HOST[:PORT]` of a URL, for messages.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// The answer to a cross-repository mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The registry linked the blob into this repository: nothing to upload.
    Mounted,
    /// It would not; this upload session is open for the bytes instead.
    Upload(String),
}

impl Client {
    /// Connects to an endpoint: `GET /v2/` over HTTPS (verified unless the endpoint is insecure
    /// or `--tls-verify=false`), then over plain HTTP when an insecure endpoint's TLS fails, as
    /// containers/image does. The ping's 401 tells how to authenticate.
    pub fn connect(
        ep: &Endpoint,
        tls: &TlsOptions,
        timeouts: Timeouts,
        retry: RetryPolicy,
    ) -> Result<Client> {
        let host = ep.host_name().to_string();
        let insecure = ep.insecure || !tls.verify;
        let schemes: &[&str] = if ep.plain_http() {
            &["http"]
        } else if insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        let agent = transport::agent(&host, !insecure, tls, timeouts)?;
        let mut first_err = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let base = format!("{scheme}://{host}");
            // With plain HTTP to fall back on, one try at TLS is enough: a server that does not
            // speak it fails the same way every time.
            let policy = if i + 1 < schemes.len() {
                RetryPolicy {
                    attempts: 1,
                    ..retry
                }
            } else {
                retry
            };
            match Self::ping(&agent, &base, &host, policy) {
                Ok(challenge) => {
                    let auth = Authenticator::new(ep.credential.clone());
                    auth.on_unauthorized(challenge, None);
                    return Ok(Client {
                        agent,
                        base,
                        host,
                        repository: ep.repository.clone(),
                        scope: auth::scope(&ep.repository, Action::Pull),
                        auth,
                        retry,
                    });
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // The HTTPS error says more than "plain HTTP did not work either".
        Err(first_err.expect("at least one scheme"))
    }

    fn ping(
        agent: &Agent,
        base: &str,
        host: &str,
        retry: RetryPolicy,
    ) -> Result<Option<Challenge>> {
        let url = format!("{base}/v2/");
        let mut resp = with_retries(host, "GET /v2/", retry, || agent.get(&url).call())?;
        // A body read to its end hands the connection back to the pool for the next request.
        let drain = |resp: &mut Response<Body>| {
            let _ = read_small(resp, 64 << 10);
        };
        match resp.status().as_u16() {
            200..=299 => {
                drain(&mut resp);
                Ok(None)
            }
            401 => {
                let challenge = challenge_of(&resp);
                drain(&mut resp);
                Ok(challenge)
            }
            status => {
                let body = read_small(&mut resp, 64 << 10).unwrap_or_default();
                let (_, message) = error_codes(&body);
                Err(RegistryError::Status {
                    host: host.into(),
                    what: "GET /v2/ (is this a registry?)".into(),
                    status,
                    message,
                })
            }
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks the endpoint's credential as `podman login` does: with Basic auth, `GET /v2/`
    /// must answer 2xx with it; with bearer tokens, the realm must hand out a token for it (no
    /// repository scope: logging in is about the account). A registry that asks for nothing
    /// accepts anyone.
    pub fn check_login(&self) -> Result<()> {
        match self.auth.challenge() {
            None => Ok(()),
            Some(c @ Challenge::Bearer { .. }) => self.fetch_token(&c, "").map(drop),
            Some(Challenge::Basic) => {
                let url = format!("{}/v2/", self.base);
                let authz = self
                    .auth
                    .authorization("", |_, _| unreachable!("Basic challenges need no token"))?;
                let resp = with_retries(&self.host, "GET /v2/", self.retry, || {
                    let mut r = self.agent.get(&url);
                    if let Some(Authorization { header, .. }) = &authz {
                        r = r.header("Authorization", header.expose());
                    }
                    r.call()
                })?;
                match resp.status().as_u16() {
                    200..=299 => Ok(()),
                    _ => Err(auth::token_refused(
                        &self.host,
                        &self.repository,
                        self.auth.credential(),
                    )),
                }
            }
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// A bearer token for the challenge, from its realm.
    fn fetch_token(&self, challenge: &Challenge, scope: &str) -> Result<Token> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            unreachable!("tokens are fetched for bearer challenges only")
        };
        let realm_host = url_host(realm);
        let credential = self.auth.credential();
        let requests = auth::token_requests(credential, service.as_deref(), scope);
        for (i, req) in requests.iter().enumerate() {
            let mut resp =
                with_retries(realm_host, "the token request", self.retry, || match req {
                    TokenRequest::Get { basic } => {
                        // Several scopes (a push that mounts from another repository) are
                        // several `scope` parameters in the GET form, space-separated in POST's.
                        let mut r = self.agent.get(realm);
                        for s in scope.split(' ') {
                            r = r.query("scope", s);
                        }
                        if let Some(s) = service {
                            r = r.query("service", s);
                        }
                        if let Some(b) = basic {
                            r = r.header("Authorization", b.expose());
                        }
                        r.call()
                    }
                    TokenRequest::Post { form } => self
                        .agent
                        .post(realm)
                        .send_form(form.iter().map(|(k, v)| (k.as_str(), v.expose()))),
                })?;
            match resp.status().as_u16() {
                200..=299 => {
                    let body = read_small(&mut resp, 1 << 20)
                        .map_err(|e| transport::to_error(realm_host, &e))?;
                    return auth::parse_token(&body, Instant::now()).ok_or_else(|| {
                        RegistryError::Protocol {
                            host: realm_host.into(),
                            what: "token request".into(),
                            detail: "the answer holds no token".into(),
                        }
                    });
                }
                // This realm has no OAuth2 form, or only it: try the other way.
                404 | 405 if i + 1 < requests.len() => continue,
                401 | 403 => {
                    return Err(auth::token_refused(
                        &self.host,
                        &self.repository,
                        credential,
                    ))
                }
                status => {
                    let body = read_small(&mut resp, 64 << 10).unwrap_or_default();
                    return Err(RegistryError::Status {
                        host: realm_host.into(),
                        what: "the token request".into(),
                        status,
                        message: error_codes(&body).1,
                    });
                }
            }
        }
        unreachable!("token_requests gives at least one request")
    }

    /// A GET under `/v2/NAME/`, authenticated: a 401 takes the new challenge (or drops a stale
    /// token) and tries once more with a fresh header.
    fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        from: u64,
        what: &str,
    ) -> Result<Response<Body>> {
        let mut headers = Vec::new();
        if let Some(a) = accept {
            headers.push(("Accept", a.to_string()));
        }
        if from > 0 {
            headers.push(("Range", format!("bytes={from}-")));
        }
        self.send(Method::GET, &self.url(path), &headers, None, what)
    }

    /// `BASE/v2/NAME/PATH`.
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Any request to `url` (under this registry), authenticated: a 401 takes the new challenge
    /// (or drops a stale token) and tries once more with a fresh header. Transport failures and
    /// 408/429/5xx are retried ([`with_retries`]); `body` is sent again on each try.
    pub(super) fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<Response<Body>> {
        let mut tries = 0;
        loop {
            let authz = self
                .auth
                .authorization(&self.scope, |c, s| self.fetch_token(c, s))?;
            let resp = with_retries(&self.host, what, self.retry, || {
                let mut r = ureq::http::Request::builder()
                    .method(method.clone())
                    .uri(url);
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                if let Some(Authorization { header, .. }) = &authz {
                    r = r.header("Authorization", header.expose());
                }
                match body {
                    Some(b) => self.agent.run(built(r.body(b))?),
                    None => self.agent.run(built(r.body(()))?),
                }
            })?;
            if resp.status() == 401 && tries < 2 {
                tries += 1;
                if self
                    .auth
                    .on_unauthorized(challenge_of(&resp), authz.as_ref())
                {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// The error for an unsuccessful answer to a manifest or blob request.
    fn refused(
        &self,
        mut resp: Response<Body>,
        what: &str,
        reference: &str,
        is_blob: bool,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let body = read_small(&mut resp, 64 << 10).unwrap_or_default();
        let (codes, message) = error_codes(&body);
        let host = self.host.clone();
        let repository = self.repository.clone();
        match status {
            401 => auth::token_refused(&host, &repository, self.auth.credential()),
            403 => RegistryError::Denied {
                host,
                repository,
                message,
            },
            404 if codes.iter().any(|c| c == "NAME_UNKNOWN") => {
                RegistryError::UnknownRepository { host, repository }
            }
            404 if is_blob => RegistryError::UnknownBlob {
                host,
                repository,
                digest: reference.into(),
            },
            404 => RegistryError::UnknownManifest {
                host,
                repository,
                what: if reference.contains(':') {
                    "manifest"
                } else {
                    "tag"
                },
                reference: reference.into(),
                known: String::new(),
            },
            _ => RegistryError::Status {
                host,
                what: what.into(),
                status,
                message,
            },
        }
    }

    /// Fetches a manifest or index by tag or digest, computing its digest. Schema 1 is refused.
    pub fn manifest(&self, reference: &str) -> Result<Fetched> {
        let what = format!("the manifest {reference}");
        let mut resp = self.get(
            &format!("manifests/{reference}"),
            Some(MANIFEST_ACCEPT),
            0,
            &what,
        )?;
        if !resp.status().is_success() {
            return Err(match self.refused(resp, &what, reference, false) {
                RegistryError::UnknownManifest { what: "tag", .. } => self.unknown_tag(reference),
                e => e,
            });
        }
        let header_type = header(&resp, "content-type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let raw = read_small(&mut resp, JSON_LIMIT).map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => RegistryError::Protocol {
                host: self.host.clone(),
                what: what.clone(),
                detail: format!("larger than {JSON_LIMIT} bytes"),
            },
            e => transport::to_error(&self.host, &e),
        })?;
        let body_type = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .map(|v| {
                (
                    v.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                    v.get("schemaVersion").and_then(|s| s.as_u64()),
                    v.get("manifests").is_some(),
                )
            })
            .ok_or_else(|| RegistryError::Protocol {
                host: self.host.clone(),
                what: what.clone(),
                detail: "not JSON".into(),
            })?;
        let (media, schema, has_manifests) = body_type;
        if schema == Some(1) || SCHEMA1_TYPES[..2].contains(&header_type.as_str()) {
            return Err(RegistryError::Schema1 {
                host: self.host.clone(),
                reference: format!("{}:{reference}", self.repository),
            });
        }
        // The document's own mediaType wins; a registry may answer a generic Content-Type.
        let media_type = media
            .or_else(|| {
                (!header_type.is_empty() && !SCHEMA1_TYPES.contains(&header_type.as_str()))
                    .then_some(header_type)
            })
            .unwrap_or_else(|| {
                if has_manifests {
                    model::MEDIA_OCI_INDEX.into()
                } else {
                    model::MEDIA_OCI_MANIFEST.into()
                }
            });
        Ok(Fetched {
            digest: Digest::of(&raw),
            raw,
            media_type,
        })
    }

    /// The error for a tag the registry does not have: the tag list tells an unknown repository
    /// from an unknown tag (distribution answers MANIFEST_UNKNOWN for both) and shows what exists.
    fn unknown_tag(&self, tag: &str) -> RegistryError {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        const SHOWN: usize = 10;
        let mut known = String::new();
        let path = format!("tags/list?n={}", SHOWN + 1);
        if let Ok(mut resp) = self.get(&path, None, 0, "the tag list") {
            let status = resp.status().as_u16();
            let body = read_small(&mut resp, 1 << 20).unwrap_or_default();
            if status == 404 && error_codes(&body).0.iter().any(|c| c == "NAME_UNKNOWN") {
                return RegistryError::UnknownRepository {
                    host: self.host.clone(),
                    repository: self.repository.clone(),
                };
            }
            if let (200, Ok(Tags { tags: Some(t) })) = (status, serde_json::from_slice(&body)) {
                let more = if t.len() > SHOWN { ", …" } else { "" };
                known = match t.len() {
                    0 => " (it has no tags)".into(),
                    n => format!(" (it has: {}{more})", t[..n.min(SHOWN)].join(", ")),
                };
            }
        }
        RegistryError::UnknownManifest {
            host: self.host.clone(),
            repository: self.repository.clone(),
            what: "tag",
            reference: tag.into(),
            known,
        }
    }

    /// The same client with a `pull,push` scope for its repository, for uploads, and `pull` on
    /// `mount_from` (a repository of the same registry blobs may be mounted from).
    pub fn for_push(mut self, mount_from: Option<&str>) -> Client {
        self.scope = auth::scope(&self.repository, Action::PullPush);
        if let Some(from) = mount_from {
            self.scope = format!("{} {}", self.scope, auth::scope(from, Action::Pull));
        }
        self
    }

    /// Whether the repository has the blob: `HEAD /v2/NAME/blobs/DIGEST`.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let d = digest.to_string();
        let what = format!("HEAD of blob {d}");
        let resp = self.send(
            Method::HEAD,
            &self.url(&format!("blobs/{d}")),
            &[],
            None,
            &what,
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.refused(resp, &what, &d, true)),
        }
    }

    /// An upload location (`Location` of a 202) as a URL: absolute, or a path on this registry.
    fn location(&self, resp: &Response<Body>, what: &str) -> Result<String> {
        let loc = header(resp, "location").ok_or_else(|| RegistryError::Protocol {
            host: self.host.clone(),
            what: what.into(),
            detail: "the answer has no Location".into(),
        })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_string()
            } else if loc.starts_with('/') {
                format!("{}{loc}", self.base)
            } else {
                format!("{}/{loc}", self.base)
            },
        )
    }

    /// Asks the registry to mount a blob from another of its repositories (`POST
    /// /v2/NAME/blobs/uploads/?mount=DIGEST&from=REPO`): `Mounted` on 201; on 202 (the registry
    /// would not: no access to `from`, or it lacks the blob) the upload session it opened instead.
    pub fn mount_blob(&self, digest: &Digest, from: &str) -> Result<Mount> {
        let d = digest.to_string();
        let what = format!("the mount of blob {d} from {from}");
        // A digest and a repository name hold no character a query must escape.
        let url = format!("{}?mount={d}&from={from}", self.url("blobs/uploads/"));
        let resp = self.send(Method::POST, &url, &[], Some(&[]), &what)?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.location(&resp, &what)?)),
            _ => Err(self.refused(resp, &what, &d, true)),
        }
    }

    /// Uploads a blob of `desc.size` bytes read from `data`: `POST /v2/NAME/blobs/uploads/`
    /// (unless `session` is an upload location already opened, e.g. by a refused mount), then
    /// one `PUT ?digest=` with the bytes when they fit in `chunk`, else `PATCH`es of `chunk`
    /// bytes (`Content-Range`, each to the `Location` the last answer gave) and an empty
    /// `PUT ?digest=`. The registry checks the digest. `progress` is told of each part sent.
    pub fn upload_blob(
        &self,
        desc: &Descriptor,
        data: &mut dyn Read,
        chunk: usize,
        session: Option<String>,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let d = desc.digest.to_string();
        let what = format!("the upload of blob {d}");
        let mut location = match session {
            Some(l) => l,
            None => {
                let resp = self.send(
                    Method::POST,
                    &self.url("blobs/uploads/"),
                    &[],
                    Some(&[]),
                    &what,
                )?;
                if resp.status() != 202 {
                    return Err(self.refused(resp, &what, &d, true));
                }
                self.location(&resp, &what)?
            }
        };
        let read_err = |source| RegistryError::Io {
            what: format!("cannot read blob {d}"),
            source,
        };
        let mut buf = Vec::with_capacity(chunk.min(desc.size as usize));
        let mut sent = 0u64;
        let last = loop {
            buf.clear();
            (&mut *data)
                .take(chunk as u64)
                .read_to_end(&mut buf)
                .map_err(read_err)?;
            let done = buf.len() < chunk || sent + buf.len() as u64 >= desc.size;
            if sent == 0 && done {
                // Small enough for one monolithic PUT.
                break Some(std::mem::take(&mut buf));
            }
            if buf.is_empty() {
                break None;
            }
            let end = sent + buf.len() as u64 - 1;
            let resp = self.send(
                Method::PATCH,
                &location,
                &[
                    ("Content-Type", "application/octet-stream".into()),
                    ("Content-Range", format!("{sent}-{end}")),
                ],
                Some(&buf),
                &what,
            )?;
            if resp.status() != 202 {
                return Err(self.refused(resp, &what, &d, true));
            }
            location = self.location(&resp, &what)?;
            sent += buf.len() as u64;
            progress(buf.len() as u64);
            if done {
                break None;
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={d}");
        let body = last.unwrap_or_default();
        let resp = self.send(
            Method::PUT,
            &url,
            &[("Content-Type", "application/octet-stream".into())],
            Some(&body),
            &what,
        )?;
        match resp.status().as_u16() {
            201 | 204 | 200 => {
                progress(body.len() as u64);
                Ok(())
            }
            _ => Err(self.refused(resp, &what, &d, true)),
        }
    }

    /// `PUT /v2/NAME/manifests/REFERENCE` with the manifest's bytes as they are.
    pub fn put_manifest(&self, reference: &str, raw: &[u8], media_type: &str) -> Result<()> {
        let what = format!("the manifest upload of {reference}");
        let resp = self.send(
            Method::PUT,
            &self.url(&format!("manifests/{reference}")),
            &[("Content-Type", media_type.into())],
            Some(raw),
            &what,
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(self.refused(resp, &what, reference, false)),
        }
    }

    /// Downloads a blob into the cache unless it is there; returns its path. `progress` is told
    /// how many bytes arrived (negative when a restart throws some away); `cancel` stops the
    /// transfer when another one failed.
    pub fn blob(
        &self,
        desc: &Descriptor,
        what: &str,
        cache: &BlobCache,
        cancel: &AtomicBool,
        progress: &dyn Fn(i64),
    ) -> Result<PathBuf> {
        if let Some(p) = cache.lookup(desc) {
            return Ok(p);
        }
        let digest = desc.digest.to_string();
        let mut part = cache.begin(desc)?;
        let io_err = |source| RegistryError::Io {
            what: format!("cannot write {what} into the blob cache"),
            source,
        };
        let mut stalls = 0;
        let mut buf = vec![0u8; 256 << 10];
        while !part.is_complete() {
            if cancel.load(Ordering::Relaxed) {
                return Err(RegistryError::Cancelled);
            }
            let from = part.len();
            let mut resp = match self.get(&format!("blobs/{digest}"), None, from, what) {
                Ok(r) => r,
                // Retries are spent inside `get`; a resumed transfer gets its own budget.
                Err(RegistryError::Timeout { .. } | RegistryError::Protocol { .. })
                    if from > 0 && stalls < RESUMES =>
                {
                    stalls += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match resp.status().as_u16() {
                206 if from > 0 => {}
                // The whole blob (a server that ignores Range, or the first request).
                200 => {
                    if from > 0 {
                        progress(-(from as i64));
                        part.restart().map_err(io_err)?;
                    }
                }
                // Our range starts at the end or beyond: begin again.
                416 => {
                    progress(-(from as i64));
                    part.restart().map_err(io_err)?;
                    stalls += 1;
                    if stalls > RESUMES {
                        return Err(RegistryError::Status {
                            host: self.host.clone(),
                            what: what.into(),
                            status: 416,
                            message: String::new(),
                        });
                    }
                    continue;
                }
                _ => return Err(self.refused(resp, what, &digest, true)),
            }
            let before = part.len();
            let mut reader = resp.body_mut().as_reader();
            let broke = loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(RegistryError::Cancelled);
                }
                match reader.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => {
                        match part.write(&buf[..n]) {
                            Ok(()) => {}
                            Err(WriteError::TooLong(actual)) => {
                                return Err(RegistryError::SizeMismatch {
                                    host: self.host.clone(),
                                    what: what.into(),
                                    expected: desc.size,
                                    actual,
                                })
                            }
                            Err(WriteError::Io(e)) => return Err(io_err(e)),
                        }
                        progress(n as i64);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => match transport::classify_io(&e) {
                        Failure::Broken | Failure::Timeout | Failure::Other => break Some(e),
                        Failure::Unreachable | Failure::Tls => {
                            return Err(RegistryError::Protocol {
                                host: self.host.clone(),
                                what: what.into(),
                                detail: e.to_string(),
                            })
                        }
                    },
                }
            };
            if part.is_complete() {
                break;
            }
            // Cut short (an error, or an early end): resume from here. Only transfers that stop
            // moving count against the budget.
            if part.len() > before {
                stalls = 0;
            } else {
                stalls += 1;
            }
            if stalls > RESUMES {
                let detail = match broke {
                    Some(e) => e.to_string(),
                    None => format!(
                        "the connection ended after {} of {} bytes",
                        part.len(),
                        desc.size
                    ),
                };
                return Err(RegistryError::Protocol {
                    host: self.host.clone(),
                    what: what.into(),
                    detail,
                });
            }
        }
        part.finish(&self.host, what)
    }
}

#[cfg(test)]
mod tests;
