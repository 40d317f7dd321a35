//! The registry auth flow, as Docker and containers/image do it: a request (or the `/v2/` ping)
//! answered 401 carries a `WWW-Authenticate` challenge. `Basic` means sending the credential with
//! every request; `Bearer` means asking the challenge's realm for a token for a scope
//! (`repository:NAME:pull`), anonymously or with the credential, and sending that token. Tokens
//! are cached per scope and fetched again when they expire or a request is answered 401.
//!
//! Token endpoints are asked with `GET` (Basic auth for a password); an identity token (the
//! refresh token `docker login` stores for some registries) goes through the OAuth2 `POST` form,
//! which is also tried with a password when a realm refuses `GET` (404/405).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{RegistryError, Result};

/// Passwords and tokens: the one secret type of the crate, which prints as `***`.
pub use crate::credentials::Secret;

/// What the caller knows to log in with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken` in auth.json).
    IdentityToken(Secret),
}

impl Credential {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => {
                write!(f, "Basic({username}:<redacted>)")
            }
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// What a repository is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    PullPush,
}

/// A token scope: `repository:NAME:pull` or `repository:NAME:pull,push`.
pub fn scope(repository: &str, action: Action) -> String {
    let actions = match action {
        Action::Pull => "pull",
        Action::PullPush => "pull,push",
    };
    format!("repository:{repository}:{actions}")
}

/// A challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the server asked for, if it said.
        scope: Option<String>,
    },
}

/// The first challenge we can answer among `WWW-Authenticate` values (Bearer preferred, as a
/// registry offering both wants tokens).
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for v in values {
        let Ok(list) = http_auth::parse_challenges(v) else {
            continue;
        };
        for c in list {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if c.scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: param("service"),
                        scope: param("scope"),
                    });
                }
            } else if c.scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// A token endpoint's answer (`token`, or OAuth2's `access_token`).
#[derive(Deserialize)]
struct TokenDoc {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub secret: Secret,
    pub expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The lifetime a token has when its endpoint does not say (the distribution spec's default).
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Tokens are replaced this long before they expire, so none runs out in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// Parses a token endpoint's JSON.
pub fn parse_token(body: &[u8], now: Instant) -> Option<Token> {
    let doc: TokenDoc = serde_json::from_slice(body).ok()?;
    let secret = doc
        .token
        .filter(|t| !t.is_empty())
        .or(doc.access_token.filter(|t| !t.is_empty()))?;
    let life = doc
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFE)
        .max(TOKEN_MARGIN * 2);
    Some(Token {
        secret: Secret::new(secret),
        expires: now + life - TOKEN_MARGIN,
    })
}

/// How a token request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// `GET realm?service=S&scope=…`, with this `Authorization` (Basic) when there is a password.
    Get { basic: Option<Secret> },
    /// The OAuth2 form: `POST realm` with `grant_type` and the rest.
    Post { form: Vec<(String, Secret)> },
}

/// The request to send for a token, and the one to try if the realm refuses `GET`.
pub fn token_requests(
    credential: Option<&Credential>,
    service: Option<&str>,
    scope: &str,
) -> Vec<TokenRequest> {
    let form = |grant: &str, extra: Vec<(&str, &Secret)>| {
        let mut f = vec![
            ("grant_type".to_string(), Secret::new(grant)),
            ("client_id".to_string(), Secret::new("oci2bin")),
            ("scope".to_string(), Secret::new(scope)),
        ];
        if let Some(s) = service {
            f.push(("service".to_string(), Secret::new(s)));
        }
        f.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v.clone())));
        TokenRequest::Post { form: f }
    };
    match credential {
        None => vec![TokenRequest::Get { basic: None }],
        Some(Credential::IdentityToken(t)) => {
            vec![form("refresh_token", vec![("refresh_token", t)])]
        }
        Some(Credential::Basic { username, password }) => {
            let user = Secret::new(username.clone());
            vec![
                TokenRequest::Get {
                    basic: Some(Secret::new(http_auth::basic::encode_credentials(
                        username,
                        password.expose(),
                    ))),
                },
                form(
                    "password",
                    vec![("username", &user), ("password", password)],
                ),
            ]
        }
    }
}

/// The auth state of one endpoint, shared by the threads that pull its blobs.
pub struct Authenticator {
    credential: Option<Credential>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, (Token, u64)>>,
    next_id: Mutex<u64>,
}

/// A header to send, and which token it came from (to drop exactly that one on a 401).
#[derive(Debug, Clone)]
pub struct Authorization {
    pub header: Secret,
    pub token_id: Option<u64>,
}

impl Authenticator {
    pub fn new(credential: Option<Credential>) -> Authenticator {
        Authenticator {
            credential,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
        }
    }

    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    pub fn challenge(&self) -> Option<Challenge> {
        self.challenge.lock().unwrap().clone()
    }

    /// Takes the challenge of a 401; returns whether trying again could help (a challenge we can
    /// answer, and something to answer it with that was not just refused).
    pub fn on_unauthorized(
        &self,
        challenge: Option<Challenge>,
        sent: Option<&Authorization>,
    ) -> bool {
        let Some(c) = challenge else {
            return false;
        };
        let had = self.challenge.lock().unwrap().replace(c.clone());
        match c {
            Challenge::Basic => {
                // A refused Basic header would be refused again.
                sent.is_none() && self.credential.is_some()
            }
            Challenge::Bearer { .. } => {
                if let Some(id) = sent.and_then(|a| a.token_id) {
                    self.tokens.lock().unwrap().retain(|_, (_, i)| *i != id);
                    // A fresh token may help once (the old one expired or was revoked); another
                    // 401 after that is final.
                    return true;
                }
                had.as_ref() != Some(&c) || sent.is_none()
            }
        }
    }

    /// The `Authorization` header for a request in `scope`, fetching a token with `fetch` when
    /// the challenge is Bearer and none is cached.
    pub fn authorization(
        &self,
        scope: &str,
        fetch: impl FnOnce(&Challenge, &str) -> Result<Token>,
    ) -> Result<Option<Authorization>> {
        let challenge = self.challenge.lock().unwrap().clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match &self.credential {
                Some(Credential::Basic { username, password }) => Some(Authorization {
                    header: Secret::new(http_auth::basic::encode_credentials(
                        username,
                        password.expose(),
                    )),
                    token_id: None,
                }),
                _ => None,
            }),
            Some(c @ Challenge::Bearer { .. }) => {
                // Held while fetching: parallel layer pulls wait for one token, not ask for four.
                let mut tokens = self.tokens.lock().unwrap();
                let now = Instant::now();
                if let Some((t, id)) = tokens.get(scope).filter(|(t, _)| t.expires > now) {
                    return Ok(Some(bearer(t, *id)));
                }
                let token = fetch(&c, scope)?;
                let id = {
                    let mut n = self.next_id.lock().unwrap();
                    *n += 1;
                    *n
                };
                let out = bearer(&token, id);
                tokens.insert(scope.to_string(), (token, id));
                Ok(Some(out))
            }
        }
    }
}

fn bearer(t: &Token, id: u64) -> Authorization {
    Authorization {
        header: Secret::new(format!("Bearer {}", t.secret.expose())),
        token_id: Some(id),
    }
}

/// The error for a token endpoint that refused us.
pub fn token_refused(
    host: &str,
    repository: &str,
    credential: Option<&Credential>,
) -> RegistryError {
    match credential {
        Some(_) => RegistryError::BadCredentials {
            host: host.into(),
            repository: repository.into(),
        },
        None => RegistryError::Unauthorized {
            host: host.into(),
            repository: repository.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_give_realm_service_and_scope() {
        let c = parse_challenges([
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenges([r#"Basic realm="r""#]),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenges([r#"Basic realm="r", Bearer realm="https://t""#]),
            Some(Challenge::Bearer {
                realm: "https://t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenges(["Negotiate", "garbage=\""]), None);
    }

    #[test]
    fn scopes_name_the_repository_and_actions() {
        assert_eq!(
            scope("library/busybox", Action::Pull),
            "repository:library/busybox:pull"
        );
        assert_eq!(
            scope("o/app", Action::PullPush),
            "repository:o/app:pull,push"
        );
    }

    #[test]
    fn token_answers_take_token_or_access_token_and_expire_early() {
        let now = Instant::now();
        let t = parse_token(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.secret.expose(), "abc");
        assert_eq!(t.expires, now + Duration::from_secs(290));
        let t = parse_token(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.secret.expose(), "xyz");
        assert_eq!(t.expires, now + Duration::from_secs(50));
        assert!(parse_token(br#"{"token":""}"#, now).is_none());
        assert!(parse_token(b"<html>", now).is_none());
    }

    #[test]
    fn token_requests_follow_the_credential() {
        assert_eq!(
            token_requests(None, Some("s"), "sc"),
            [TokenRequest::Get { basic: None }]
        );
        let pw = token_requests(Some(&Credential::basic("u", "p")), Some("s"), "sc");
        assert!(
            matches!(&pw[0], TokenRequest::Get { basic: Some(b) } if b.expose() == "Basic dTpw")
        );
        let TokenRequest::Post { form } = &pw[1] else {
            panic!()
        };
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.expose().to_string())
        };
        assert_eq!(get("grant_type").as_deref(), Some("password"));
        assert_eq!(get("password").as_deref(), Some("p"));
        assert_eq!(get("service").as_deref(), Some("s"));
        let id = token_requests(
            Some(&Credential::IdentityToken(Secret::new("refresh"))),
            None,
            "sc",
        );
        let TokenRequest::Post { form } = &id[0] else {
            panic!()
        };
        assert!(form
            .iter()
            .any(|(k, v)| k == "refresh_token" && v.expose() == "refresh"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Credential::basic("alice", "hunter2");
        let shown = format!(
            "{c:?} {:?} {:?} {:?}",
            Credential::IdentityToken(Secret::new("idtok")),
            Token {
                secret: Secret::new("bearertok"),
                expires: Instant::now()
            },
            token_requests(Some(&c), None, "s"),
        );
        assert!(shown.contains("alice"), "{shown}");
        for secret in ["hunter2", "idtok", "bearertok", "YWxpY2U6aHVudGVyMg"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn tokens_are_cached_per_scope_and_dropped_on_401() {
        let a = Authenticator::new(None);
        let bearer = Challenge::Bearer {
            realm: "https://t".into(),
            service: None,
            scope: None,
        };
        assert!(a.on_unauthorized(Some(bearer.clone()), None));
        let fetches = std::cell::Cell::new(0);
        let fetch = |_: &Challenge, s: &str| {
            fetches.set(fetches.get() + 1);
            Ok(Token {
                secret: Secret::new(format!("tok-{s}-{}", fetches.get())),
                expires: Instant::now() + Duration::from_secs(60),
            })
        };
        let x1 = a.authorization("x", fetch).unwrap().unwrap();
        let x2 = a.authorization("x", fetch).unwrap().unwrap();
        assert_eq!(x1.header, x2.header);
        assert_eq!(x1.header.expose(), "Bearer tok-x-1");
        a.authorization("y", fetch).unwrap();
        assert_eq!(fetches.get(), 2);
        assert!(a.on_unauthorized(Some(bearer), Some(&x1)));
        let x3 = a.authorization("x", fetch).unwrap().unwrap();
        assert_eq!(x3.header.expose(), "Bearer tok-x-3");
    }

    #[test]
    fn basic_challenges_send_the_password_once() {
        let none = Authenticator::new(None);
        assert!(!none.on_unauthorized(Some(Challenge::Basic), None));
        let a = Authenticator::new(Some(Credential::basic("u", "p")));
        assert!(a.on_unauthorized(Some(Challenge::Basic), None));
        let h = a
            .authorization("s", |_, _| unreachable!())
            .unwrap()
            .unwrap();
        assert_eq!(h.header.expose(), "Basic dTpw");
        assert!(!a.on_unauthorized(Some(Challenge::Basic), Some(&h)));
    }
}
