//! A bearer-token server for the registry's `auth: token` mode, the flow of Docker Hub and GHCR:
//! the registry answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, the client
//! asks the realm for a token and retries with `Authorization: Bearer JWT`.
//!
//! It speaks both forms of Docker's token spec: `GET realm?service=S&scope=…` (HTTP Basic
//! credentials optional) answering `{"token", "access_token", "expires_in"}`, and the OAuth2
//! `POST realm` form (`grant_type=password` or `refresh_token`) answering `{"access_token", …}`.
//! Anonymous clients get `pull` only (or nothing, see [`TokenServer::set_anonymous_pull`]); the
//! configured user gets what they ask for; wrong credentials get 401.
//!
//! The JWT is RS256 with an `x5c` header holding the DER of the signing certificate, which is the
//! registry's `rootcertbundle`. Tried against Debian's docker-registry 2.8.2 with hand-made
//! tokens: distribution takes the signing key from `x5c` (verified as a chain to the bundle), else
//! from a `jwk` header, else looks `kid` up among the bundle's keys *by libtrust fingerprint*
//! (base32 of the SPKI's SHA-256, `ABCD:EFGH:…`): an `x5c` token and a libtrust `kid` token were
//! accepted, an RFC 7638 thumbprint `kid` (what JWKS tooling writes) and a bare header were
//! refused. `x5c` needs nothing libtrust-specific, so that is what we send. `aud` must be a
//! single string equal to the registry's `service` (an array `["svc"]` was refused), `iss` its
//! `issuer`.

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{TOKEN_ISSUER, TOKEN_SERVICE};

/// One request the token server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The user whose credentials were accepted; `None` for an anonymous request (and for a
    /// rejected one).
    pub user: Option<String>,
    /// The scopes asked for, e.g. `repository:library/busybox:pull,push`.
    pub scopes: Vec<String>,
    /// The access granted, in the same form; a resource with no granted action is left out.
    pub granted: Vec<String>,
    /// The HTTP status of the answer.
    pub status: u16,
}

struct State {
    user: String,
    pass: String,
    refresh_token: String,
    key: jsonwebtoken::EncodingKey,
    x5c: String,
    anonymous_pull: AtomicBool,
    expires_in: AtomicU64,
    issued: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
}

/// A token server on `127.0.0.1:0` in a thread of the test process; stops on drop.
pub struct TokenServer {
    server: Arc<tiny_http::Server>,
    port: u16,
    cert: PathBuf,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Makes a signing key and certificate in `dir` (`token.key`, `token.crt`) and starts serving
    /// tokens for `user`/`pass`.
    pub fn start(dir: &Path, user: &str, pass: &str) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        super::openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=oci2bin test token signer",
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
        ]);
        let pem = std::fs::read_to_string(&cert).unwrap();
        // The DER is the PEM body: x5c wants it in standard (not URL-safe) base64, which the PEM
        // body already is once its line breaks are gone.
        let x5c: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        base64::engine::general_purpose::STANDARD
            .decode(&x5c)
            .expect("certificate PEM body is base64");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&key).unwrap())
            .expect("openssl wrote an RSA key");
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(State {
            user: user.into(),
            pass: pass.into(),
            refresh_token: format!("oci2bin-test-refresh-{port}"),
            key,
            x5c,
            anonymous_pull: AtomicBool::new(true),
            expires_in: AtomicU64::new(300),
            issued: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let thread = {
            let (server, state) = (server.clone(), state.clone());
            std::thread::spawn(move || {
                for mut rq in server.incoming_requests() {
                    let (status, body, entry) = state.answer(&mut rq);
                    state.log.lock().unwrap().push(entry);
                    let mut resp = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header("Content-Type", "application/json"));
                    if status == 401 {
                        resp.add_header(header("WWW-Authenticate", "Basic realm=\"oci2bin-test\""));
                    }
                    let _ = rq.respond(resp);
                }
            })
        };
        TokenServer {
            server,
            port,
            cert,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The signing certificate (PEM), the registry's `rootcertbundle`.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The refresh token (an "identity token" in Docker's `auth.json`) the POST form accepts with
    /// `grant_type=refresh_token` in place of the user's password.
    pub fn refresh_token(&self) -> &str {
        &self.state.refresh_token
    }

    /// Whether anonymous clients get `pull` (true, the default, like a public repository) or
    /// nothing at all (a private one).
    pub fn set_anonymous_pull(&self, allowed: bool) {
        self.state.anonymous_pull.store(allowed, Ordering::SeqCst);
    }

    /// Lifetime of the tokens issued from now on (default 300 s); the registry rejects a token
    /// after its `exp`, so a short one makes clients fetch a new token.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Requests answered so far, whatever their outcome.
    pub fn requests(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Tokens issued so far (requests answered 200).
    pub fn tokens_issued(&self) -> u64 {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every request answered so far, oldest first.
    pub fn log(&self) -> Vec<TokenRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// A token for `user` (`None`: anonymous) granting `scopes` as asked, without a request: for
    /// tests that talk to the registry by hand. Returns the JWT.
    pub fn issue(&self, user: Option<&str>, scopes: &[&str]) -> String {
        let granted: Vec<Access> = scopes.iter().filter_map(|s| parse_scope(s)).collect();
        self.state.sign(user.unwrap_or(""), &granted)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name, value).unwrap()
}

/// One `access` claim entry.
struct Access {
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl Access {
    fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// `TYPE:NAME:ACTION[,ACTION…]`; the name may itself hold a colon (`host:port/repo`), so type is
/// the first field and actions the last.
fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(Access {
        kind: kind.into(),
        name: name.into(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
    })
}

fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (status, body.to_string())
}

impl State {
    /// Answers one request: (status, JSON body, log entry).
    fn answer(&self, rq: &mut tiny_http::Request) -> (u16, String, TokenRequest) {
        let method = rq.method().as_str().to_owned();
        let (path, query) = rq.url().split_once('?').unwrap_or((rq.url(), ""));
        let mut entry = TokenRequest {
            method: method.clone(),
            user: None,
            scopes: Vec::new(),
            granted: Vec::new(),
            status: 0,
        };
        let (status, body) = if path != "/token" {
            error(404, "NOT_FOUND", "the realm is /token")
        } else {
            match method.as_str() {
                "GET" => self.answer_get(rq, query, &mut entry),
                "POST" => self.answer_post(rq, &mut entry),
                _ => error(405, "UNSUPPORTED", "GET or POST"),
            }
        };
        entry.status = status;
        (status, body, entry)
    }

    /// `GET realm?service=S&scope=S1&scope=S2[&offline_token=true]`, credentials (if any) as
    /// HTTP Basic.
    fn answer_get(
        &self,
        rq: &tiny_http::Request,
        query: &str,
        entry: &mut TokenRequest,
    ) -> (u16, String) {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        entry.scopes = all(&params, "scope");
        let basic = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| h.value.as_str().strip_prefix("Basic ").map(String::from));
        let user = match basic {
            None => None,
            Some(b) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok());
                match decoded.as_deref().and_then(|d| d.split_once(':')) {
                    Some((u, p)) if u == self.user && p == self.pass => Some(u.to_owned()),
                    _ => return error(401, "UNAUTHORIZED", "wrong user name or password"),
                }
            }
        };
        if let Some(e) = self.wrong_service(&params) {
            return e;
        }
        entry.user = user.clone();
        let (jwt, expires_in) = self.grant(user.as_deref(), entry);
        let mut body = serde_json::json!({
            "token": jwt,
            "access_token": jwt,
            "expires_in": expires_in,
        });
        if user.is_some() && first(&params, "offline_token") == Some("true") {
            body["refresh_token"] = self.refresh_token.clone().into();
        }
        (200, body.to_string())
    }

    /// The OAuth2 form: `grant_type=password&username=U&password=P` or
    /// `grant_type=refresh_token&refresh_token=R`, plus `service`, `client_id`, `scope`
    /// (space-separated) and `access_type=offline` for a refresh token in the answer.
    fn answer_post(&self, rq: &mut tiny_http::Request, entry: &mut TokenRequest) -> (u16, String) {
        let mut form = Vec::new();
        if rq.as_reader().read_to_end(&mut form).is_err() {
            return error(400, "BAD_REQUEST", "unreadable body");
        }
        let params: Vec<(String, String)> = form_urlencoded::parse(&form).into_owned().collect();
        entry.scopes = all(&params, "scope")
            .iter()
            .flat_map(|s| s.split(' ').filter(|s| !s.is_empty()).map(String::from))
            .collect();
        let user = match first(&params, "grant_type") {
            Some("password") => match (first(&params, "username"), first(&params, "password")) {
                (Some(u), Some(p)) if u == self.user && p == self.pass => u.to_owned(),
                _ => return error(401, "UNAUTHORIZED", "wrong user name or password"),
            },
            Some("refresh_token") => match first(&params, "refresh_token") {
                Some(t) if t == self.refresh_token => self.user.clone(),
                _ => return error(401, "UNAUTHORIZED", "unknown refresh token"),
            },
            _ => return error(400, "UNSUPPORTED_GRANT_TYPE", "password or refresh_token"),
        };
        if first(&params, "service").is_none() {
            return error(400, "BAD_REQUEST", "service is required");
        }
        if let Some(e) = self.wrong_service(&params) {
            return e;
        }
        entry.user = Some(user.clone());
        let (jwt, expires_in) = self.grant(Some(&user), entry);
        let mut body = serde_json::json!({
            "access_token": jwt,
            "expires_in": expires_in,
            "scope": entry.granted.join(" "),
        });
        if first(&params, "access_type") == Some("offline") {
            body["refresh_token"] = self.refresh_token.clone().into();
        }
        (200, body.to_string())
    }

    /// A client must echo the registry's `service`: any other is an error, not a token that the
    /// registry would reject later with a less helpful message.
    fn wrong_service(&self, params: &[(String, String)]) -> Option<(u16, String)> {
        match first(params, "service") {
            Some(s) if s != TOKEN_SERVICE => Some(error(
                400,
                "BAD_REQUEST",
                &format!("unknown service {s:?}, expected {TOKEN_SERVICE:?}"),
            )),
            _ => None,
        }
    }

    /// Decides the access to `entry.scopes` for `user` (`None`: anonymous), records it in `entry`,
    /// signs it.
    fn grant(&self, user: Option<&str>, entry: &mut TokenRequest) -> (String, u64) {
        let anonymous_pull = self.anonymous_pull.load(Ordering::SeqCst);
        let granted: Vec<Access> = entry
            .scopes
            .iter()
            .filter_map(|s| parse_scope(s))
            .map(|mut a| {
                if user.is_none() {
                    a.actions.retain(|x| anonymous_pull && x == "pull");
                }
                a
            })
            .filter(|a| !a.actions.is_empty())
            .collect();
        entry.granted = granted.iter().map(Access::scope).collect();
        self.issued.fetch_add(1, Ordering::SeqCst);
        (
            self.sign(user.unwrap_or(""), &granted),
            self.expires_in.load(Ordering::SeqCst),
        )
    }

    fn sign(&self, subject: &str, access: &[Access]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let jti = format!(
            "{}-{}",
            self.refresh_token,
            self.issued.load(Ordering::SeqCst)
        );
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + self.expires_in.load(Ordering::SeqCst),
            "nbf": now,
            "iat": now,
            "jti": jti,
            "access": access.iter().map(|a| serde_json::json!({
                "type": a.kind, "name": a.name, "actions": a.actions,
            })).collect::<Vec<_>>(),
        });
        let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        head.x5c = Some(vec![self.x5c.clone()]);
        jsonwebtoken::encode(&head, &claims, &self.key).unwrap()
    }
}

fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn all(params: &[(String, String)], name: &str) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}
