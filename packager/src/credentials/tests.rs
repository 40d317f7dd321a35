use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

use super::*;

/// Every secret in these tests; no output may contain it.
const PASSWORD: &str = "pa55-W0RD-never-print-me";

/// `docker-credential-test`, on a PATH of its own. What it answers depends on the server URL
/// it is given: `*missing*` not found, `*broken*` a failure, `*garbage*` and `*wrongtype*`
/// output that holds the secret but is not the expected JSON, `*token*` an identity token,
/// anything else `user-for-SERVER` with the password.
fn helper_path() -> OsString {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let script = format!(
            r#"#!/bin/sh
[ "$1" = get ] || {{ echo "unsupported: $1"; exit 1; }}
server=$(cat)
case "$server" in
  *missing*) echo "credentials not found in native keychain"; exit 1 ;;
  *broken*) echo "the keychain is locked"; exit 3 ;;
  *garbage*) printf '{{"Username":"u","Secret":"{PASSWORD}"' ;;
  *wrongtype*) printf '{{"Username":5,"Secret":"{PASSWORD}"}}' ;;
  *token*) printf '{{"Username":"<token>","Secret":"{PASSWORD}"}}' ;;
  *) printf '{{"ServerURL":"%s","Username":"user-for-%s","Secret":"{PASSWORD}"}}' "$server" "$server" ;;
esac
"#
        );
        let p = d.path().join("docker-credential-test");
        fs::write(&p, script).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        d
    });
    dir.path().as_os_str().to_owned()
}

struct Env {
    dir: tempfile::TempDir,
    sources: CredSources,
}

impl Env {
    fn runtime_auth(&self) -> PathBuf {
        self.dir.path().join("run/containers/auth.json")
    }
    fn config_auth(&self) -> PathBuf {
        self.dir.path().join("home/.config/containers/auth.json")
    }
    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("home/.docker/config.json")
    }
    fn opts(&self) -> CredOptions {
        CredOptions {
            sources: self.sources.clone(),
            ..Default::default()
        }
    }
    fn lookup(&self, key: &str) -> Option<Credential> {
        lookup(key, &self.opts()).unwrap()
    }
    fn lookup_err(&self, key: &str) -> String {
        lookup(key, &self.opts()).unwrap_err().to_string()
    }
}

/// A home and an existing `$XDG_RUNTIME_DIR`, both empty, and the test helper on PATH.
fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("run")).unwrap();
    fs::create_dir_all(dir.path().join("home")).unwrap();
    let sources = CredSources {
        xdg_runtime_dir: Some(dir.path().join("run")),
        home: Some(dir.path().join("home")),
        path: Some(helper_path()),
        ..Default::default()
    };
    Env { dir, sources }
}

fn write(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

fn auths(entries: &[(&str, &str)]) -> String {
    let m: Map<String, Value> = entries
        .iter()
        .map(|(k, up)| (k.to_string(), serde_json::json!({ "auth": b64(up) })))
        .collect();
    serde_json::json!({ "auths": m }).to_string()
}

fn user(c: Option<Credential>) -> Option<String> {
    c.map(|c| c.username)
}

#[test]
fn a_secret_prints_as_stars_whichever_way_it_is_formatted() {
    let s = Secret::new(PASSWORD);
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    let c = Credential {
        username: "me".into(),
        password: s.clone(),
        identity_token: Some(s.clone()),
    };
    let shown = format!("{c:?} {c:#?} {:?}", c.basic_auth());
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(!shown.contains(&b64(&format!("me:{PASSWORD}"))), "{shown}");
    assert_eq!(s.expose(), PASSWORD);
}

#[test]
fn basic_auth_is_base64_of_user_colon_password() {
    let c = Credential::basic("me", Secret::new("p:w"));
    assert_eq!(c.basic_auth().expose(), b64("me:p:w"));
}

#[test]
fn creds_split_at_the_first_colon() {
    let never = |_: &str| -> Option<io::Result<Secret>> { panic!("asked") };
    let c = parse_creds("me:pa:ss", never).unwrap();
    assert_eq!((c.username.as_str(), c.password.expose()), ("me", "pa:ss"));
}

#[test]
fn creds_without_password_ask_for_it_or_fail_without_a_terminal() {
    let mut asked = String::new();
    let c = parse_creds("me", |prompt: &str| {
        asked = prompt.to_string();
        Some(Ok(Secret::new(PASSWORD)))
    })
    .unwrap();
    assert_eq!(c.password.expose(), PASSWORD);
    assert_eq!(asked, "Password for me: ");
    // `me:` leaves the password out too.
    assert!(parse_creds("me:", |_: &str| Some(Ok(Secret::new("x")))).is_ok());
    let e = parse_creds("me", |_: &str| None).unwrap_err().to_string();
    assert!(e.contains("no terminal to ask for it"), "{e}");
    assert!(matches!(
        parse_creds(":x", |_: &str| None),
        Err(CredError::EmptyUser)
    ));
}

#[test]
fn creds_from_the_command_line_win_over_every_file() {
    let e = env();
    write(&e.runtime_auth(), &auths(&[("quay.io", "file:pw")]));
    let opts = CredOptions {
        creds: Some(Credential::basic("flag", Secret::new("pw"))),
        ..e.opts()
    };
    assert_eq!(
        user(lookup("quay.io", &opts).unwrap()).as_deref(),
        Some("flag")
    );
}

#[test]
fn no_file_means_no_credentials() {
    let e = env();
    assert_eq!(e.lookup("quay.io/a/b"), None);
    assert_eq!(lookup("quay.io", &CredOptions::default()).unwrap(), None);
}

#[test]
fn files_are_read_in_podman_order() {
    let e = env();
    write(
        &e.docker_config(),
        &auths(&[("quay.io", "docker:pw"), ("ghcr.io", "docker:pw")]),
    );
    write(
        &e.config_auth(),
        &auths(&[("quay.io", "config:pw"), ("gcr.io", "config:pw")]),
    );
    write(&e.runtime_auth(), &auths(&[("quay.io", "runtime:pw")]));
    assert_eq!(user(e.lookup("quay.io")).as_deref(), Some("runtime"));
    assert_eq!(user(e.lookup("gcr.io/p/i")).as_deref(), Some("config"));
    assert_eq!(user(e.lookup("ghcr.io")).as_deref(), Some("docker"));
}

#[test]
fn docker_config_env_moves_docker_config_json() {
    let mut e = env();
    let dc = e.dir.path().join("dockercfg");
    write(&dc.join("config.json"), &auths(&[("quay.io", "moved:pw")]));
    write(&e.docker_config(), &auths(&[("quay.io", "home:pw")]));
    e.sources.docker_config = Some(dc);
    assert_eq!(user(e.lookup("quay.io")).as_deref(), Some("moved"));
}

#[test]
fn registry_auth_file_is_the_only_file_read_and_authfile_overrides_it() {
    let mut e = env();
    let mine = e.dir.path().join("mine.json");
    let other = e.dir.path().join("other.json");
    write(&mine, &auths(&[("quay.io", "mine:pw")]));
    write(&other, &auths(&[("quay.io", "other:pw")]));
    write(
        &e.runtime_auth(),
        &auths(&[("quay.io", "runtime:pw"), ("ghcr.io", "runtime:pw")]),
    );
    e.sources.registry_auth_file = Some(mine);
    assert_eq!(user(e.lookup("quay.io")).as_deref(), Some("mine"));
    assert_eq!(e.lookup("ghcr.io"), None);
    let opts = CredOptions {
        auth_file: Some(other),
        ..e.opts()
    };
    assert_eq!(
        user(lookup("quay.io", &opts).unwrap()).as_deref(),
        Some("other")
    );
}

#[test]
fn docker_hub_keys_of_every_form_mean_docker_io() {
    for key in [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
    ] {
        let e = env();
        write(&e.docker_config(), &auths(&[(key, "hub:pw")]));
        for asked in [
            "docker.io",
            "docker.io/library/alpine",
            "registry-1.docker.io",
        ] {
            assert_eq!(
                user(e.lookup(asked)).as_deref(),
                Some("hub"),
                "{key} for {asked}"
            );
        }
        assert_eq!(e.lookup("quay.io"), None);
    }
}

#[test]
fn url_keys_match_their_host_and_port_only() {
    let e = env();
    write(
        &e.docker_config(),
        &auths(&[
            ("https://lab.example:5000/v1/", "lab:pw"),
            ("http://plain.example", "plain:pw"),
        ]),
    );
    assert_eq!(user(e.lookup("lab.example:5000/a")).as_deref(), Some("lab"));
    assert_eq!(user(e.lookup("plain.example")).as_deref(), Some("plain"));
    assert_eq!(e.lookup("lab.example"), None);
    assert_eq!(e.lookup("lab.example:5001"), None);
}

#[test]
fn namespaced_entries_win_over_the_registry_entry() {
    let e = env();
    write(
        &e.runtime_auth(),
        &auths(&[
            ("quay.io", "reg:pw"),
            ("quay.io/team", "team:pw"),
            ("quay.io/team/app", "app:pw"),
        ]),
    );
    assert_eq!(user(e.lookup("quay.io/team/app")).as_deref(), Some("app"));
    assert_eq!(
        user(e.lookup("quay.io/team/other")).as_deref(),
        Some("team")
    );
    assert_eq!(user(e.lookup("quay.io/else/x")).as_deref(), Some("reg"));
}

#[test]
fn identity_tokens_are_kept_as_refresh_tokens() {
    let e = env();
    write(
        &e.docker_config(),
        &serde_json::json!({"auths": {
            "tok.example": {"identitytoken": PASSWORD},
            "both.example": {"auth": b64("me:pw"), "identitytoken": PASSWORD},
        }})
        .to_string(),
    );
    let c = e.lookup("tok.example").unwrap();
    assert_eq!(
        c.identity_token.as_ref().map(Secret::expose),
        Some(PASSWORD)
    );
    assert!(c.password.is_empty());
    let c = e.lookup("both.example").unwrap();
    assert_eq!((c.username.as_str(), c.password.expose()), ("me", "pw"));
    assert!(c.identity_token.is_some());
}

#[test]
fn cred_helpers_run_with_the_server_url_on_stdin() {
    let e = env();
    write(
        &e.docker_config(),
        &serde_json::json!({
            "auths": {"gcr.example": {"auth": b64("ignored:pw")}},
            "credHelpers": {"gcr.example": "test", "https://index.docker.io/v1/": "test"},
        })
        .to_string(),
    );
    let c = e.lookup("gcr.example/p/i").unwrap();
    assert_eq!(c.username, "user-for-gcr.example");
    assert_eq!(c.password.expose(), PASSWORD);
    // Docker Hub's helper key is Docker's URL, and that URL is what the helper is given.
    let c = e.lookup("docker.io/library/alpine").unwrap();
    assert_eq!(c.username, "user-for-https://index.docker.io/v1/");
}

#[test]
fn a_helper_without_the_credentials_means_none_from_that_file() {
    let e = env();
    write(
        &e.runtime_auth(),
        &serde_json::json!({"credHelpers": {"missing.example": "test"}}).to_string(),
    );
    write(
        &e.docker_config(),
        &auths(&[("missing.example", "docker:pw")]),
    );
    // The next file answers.
    assert_eq!(user(e.lookup("missing.example")).as_deref(), Some("docker"));
}

#[test]
fn an_identity_token_from_a_helper_is_its_token_user() {
    let e = env();
    write(
        &e.runtime_auth(),
        &serde_json::json!({"credHelpers": {"token.example": "test"}}).to_string(),
    );
    let c = e.lookup("token.example").unwrap();
    assert_eq!(
        c.identity_token.as_ref().map(Secret::expose),
        Some(PASSWORD)
    );
    assert!(c.password.is_empty());
}

#[test]
fn creds_store_answers_for_docker_markers_and_only_in_docker_config() {
    let e = env();
    let cfg = serde_json::json!({
        "auths": {"https://index.docker.io/v1/": {}, "quay.io": {}},
        "credsStore": "test",
    })
    .to_string();
    write(&e.docker_config(), &cfg);
    assert_eq!(
        user(e.lookup("docker.io/library/alpine")).as_deref(),
        Some("user-for-https://index.docker.io/v1/")
    );
    assert_eq!(
        user(e.lookup("quay.io")).as_deref(),
        Some("user-for-quay.io")
    );
    // podman ignores credsStore in its own files.
    let e = env();
    write(&e.runtime_auth(), &cfg);
    assert_eq!(e.lookup("quay.io"), None);
}

#[test]
fn a_missing_cred_helper_is_an_error_but_a_missing_creds_store_is_not() {
    let e = env();
    write(
        &e.docker_config(),
        &serde_json::json!({"credsStore": "desktop", "auths": {"a.example": {}}}).to_string(),
    );
    assert_eq!(e.lookup("a.example"), None);
    write(
        &e.docker_config(),
        &serde_json::json!({"credHelpers": {"a.example": "nosuch"}}).to_string(),
    );
    let err = e.lookup_err("a.example");
    assert!(
        err.contains("docker-credential-nosuch is not in PATH"),
        "{err}"
    );
}

#[test]
fn a_failing_helper_is_reported_with_its_message() {
    let e = env();
    write(
        &e.docker_config(),
        &serde_json::json!({"credHelpers": {"broken.example": "test"}}).to_string(),
    );
    let err = e.lookup_err("broken.example");
    assert!(
        err.starts_with("credential helper docker-credential-test (from "),
        "{err}"
    );
    assert!(err.contains("the keychain is locked"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn helper_names_cannot_leave_the_path() {
    let e = env();
    write(
        &e.docker_config(),
        &serde_json::json!({"credHelpers": {"a.example": "../../bin/sh"}}).to_string(),
    );
    assert!(e
        .lookup_err("a.example")
        .contains("the credHelpers entry of a.example in "));
}

#[test]
fn login_writes_auth_json_0600_in_0700_directories_keeping_other_entries() {
    let e = env();
    let path = e.config_auth();
    let mut s = e.sources.clone();
    s.xdg_runtime_dir = None;
    assert!(!path.parent().unwrap().exists());
    let got = login("quay.io", "me", Secret::new(PASSWORD), None, &s, |_| Ok(())).unwrap();
    assert_eq!(got, path);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    // A second login keeps the first and unknown fields.
    let mut m: Map<String, Value> =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    m.insert("future".into(), Value::from(1));
    m.insert("credHelpers".into(), serde_json::json!({"x.example": "y"}));
    fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    login(
        "lab.example:5000",
        "you",
        Secret::new("pw2"),
        None,
        &s,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(mode(&path), 0o600);
    let v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        v["auths"]["quay.io"]["auth"],
        b64(&format!("me:{PASSWORD}"))
    );
    assert_eq!(v["auths"]["lab.example:5000"]["auth"], b64("you:pw2"));
    assert_eq!(v["future"], 1);
    assert_eq!(v["credHelpers"]["x.example"], "y");
    // No temporary file left behind.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    let opts = CredOptions {
        sources: s,
        ..Default::default()
    };
    let c = lookup("quay.io/any/repo", &opts).unwrap().unwrap();
    assert_eq!((c.username.as_str(), c.password.expose()), ("me", PASSWORD));
}

#[test]
fn login_writes_where_podman_does() {
    let e = env();
    let s = &e.sources;
    assert_eq!(auth_file_for_write(None, s).unwrap(), e.runtime_auth());
    let gone = CredSources {
        xdg_runtime_dir: Some(e.dir.path().join("no-such-run")),
        ..s.clone()
    };
    assert_eq!(auth_file_for_write(None, &gone).unwrap(), e.config_auth());
    let xdg = CredSources {
        xdg_runtime_dir: None,
        xdg_config_home: Some(e.dir.path().join("xdg")),
        ..s.clone()
    };
    assert_eq!(
        auth_file_for_write(None, &xdg).unwrap(),
        e.dir.path().join("xdg/containers/auth.json")
    );
    let env_file = CredSources {
        registry_auth_file: Some(e.dir.path().join("env.json")),
        ..s.clone()
    };
    assert_eq!(
        auth_file_for_write(None, &env_file).unwrap(),
        e.dir.path().join("env.json")
    );
    let flag = e.dir.path().join("flag.json");
    assert_eq!(auth_file_for_write(Some(&flag), &env_file).unwrap(), flag);
    assert!(matches!(
        auth_file_for_write(None, &CredSources::default()),
        Err(CredError::NoAuthFile)
    ));
}

#[test]
fn registries_are_normalised_for_login() {
    for (input, key) in [
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://lab.example:5000/v2/", "lab.example:5000"),
        ("quay.io/", "quay.io"),
        ("quay.io/team/app", "quay.io/team/app"),
        ("localhost:5000", "localhost:5000"),
    ] {
        assert_eq!(normalize_key(input).unwrap(), key, "{input}");
    }
    for bad in [
        "",
        "quay.io/app:1",
        "host:port",
        "a b",
        "quay.io/A",
        "ftp://x/y/z:1",
    ] {
        assert!(normalize_key(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn a_failed_verification_stores_nothing() {
    let e = env();
    let err = login(
        "quay.io",
        "me",
        Secret::new(PASSWORD),
        None,
        &e.sources,
        |c| {
            assert_eq!(c.password.expose(), PASSWORD);
            Err("unauthorized: incorrect username or password".into())
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "checking the credentials with quay.io: unauthorized: incorrect username or password"
    );
    assert!(!e.runtime_auth().exists());
}

#[test]
fn login_refuses_what_it_cannot_store() {
    let e = env();
    let l = |reg: &str, u: &str, p: &str| {
        login(reg, u, Secret::new(p), None, &e.sources, |_| Ok(()))
            .unwrap_err()
            .to_string()
    };
    assert!(l("quay.io", "a:b", PASSWORD).contains("must not contain `:`"));
    assert!(l("quay.io", "", PASSWORD).contains("user name is empty"));
    assert!(l("quay.io", "me", "").contains("password is empty"));
    assert!(l("not a host", "me", PASSWORD).contains("is not a registry"));
    write(
        &e.runtime_auth(),
        &serde_json::json!({"credHelpers": {"quay.io": "test"}}).to_string(),
    );
    assert!(
        l("quay.io", "me", PASSWORD).contains("uses the credential helper docker-credential-test")
    );
    write(&e.runtime_auth(), "{\"auths\": []}");
    assert!(l("quay.io", "me", PASSWORD).contains("`auths` is not a JSON object"));
}

#[test]
fn logout_removes_every_key_naming_the_registry() {
    let e = env();
    write(
        &e.runtime_auth(),
        &auths(&[
            ("docker.io", "a:pw"),
            ("https://index.docker.io/v1/", "b:pw"),
            ("docker.io/me", "c:pw"),
            ("quay.io", "d:pw"),
        ]),
    );
    let p = logout("https://index.docker.io/v1/", None, &e.sources).unwrap();
    assert_eq!(p, e.runtime_auth());
    let v: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    let keys: Vec<&String> = v["auths"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["docker.io/me", "quay.io"]);
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    logout("docker.io/me", None, &e.sources).unwrap();
    let err = logout("docker.io", None, &e.sources)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("not logged in to docker.io in {}", p.display())
    );
}

#[test]
fn logout_points_at_docker_logout_for_docker_credentials() {
    let e = env();
    write(
        &e.docker_config(),
        &auths(&[("https://index.docker.io/v1/", "a:pw")]),
    );
    let err = logout("docker.io", None, &e.sources)
        .unwrap_err()
        .to_string();
    assert!(err.contains("use docker logout"), "{err}");
    assert!(!e.runtime_auth().exists(), "logout created a file");
}

#[test]
fn logout_all_empties_auths_and_keeps_the_rest() {
    let e = env();
    write(
        &e.runtime_auth(),
        &serde_json::json!({"auths": {"a.example": {"auth": b64("a:pw")}}, "credHelpers": {"x.example": "y"}})
            .to_string(),
    );
    logout_all(None, &e.sources).unwrap();
    let v: Value = serde_json::from_str(&fs::read_to_string(e.runtime_auth()).unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"auths": {}, "credHelpers": {"x.example": "y"}})
    );
    // Nothing to do is not an error.
    let e = env();
    logout_all(None, &e.sources).unwrap();
}

/// Every error path, fed inputs that hold the password: no error text may show it, in any
/// format, nor its base64.
#[test]
fn no_error_shows_a_secret() {
    let forms = [
        PASSWORD.to_string(),
        b64(&format!("me:{PASSWORD}")),
        b64(PASSWORD),
    ];
    let mut seen = Vec::new();
    let mut check = |what: &str, e: CredError| {
        let texts = [
            e.to_string(),
            format!("{e:?}"),
            format!("{:#}", anyhow::Error::new(e).context("outer")),
        ];
        for t in &texts {
            for f in &forms {
                assert!(!t.contains(f.as_str()), "{what}: {t}");
            }
        }
        seen.push(what.to_string());
    };

    let e = env();
    let file_err = |text: &str| {
        write(&e.runtime_auth(), text);
        lookup("quay.io", &e.opts()).unwrap_err()
    };
    check(
        "truncated json",
        file_err(&format!(
            "{{\"auths\": {{\"quay.io\": {{\"auth\": \"{PASSWORD}"
        )),
    );
    check(
        "wrong type",
        file_err(&format!("{{\"auths\": \"{PASSWORD}\"}}")),
    );
    check(
        "wrong entry type",
        file_err(&format!(
            "{{\"auths\": {{\"quay.io\": {{\"auth\": [\"{PASSWORD}\"]}}}}}}"
        )),
    );
    check(
        "not base64",
        file_err(&format!(
            "{{\"auths\": {{\"quay.io\": {{\"auth\": \"{PASSWORD}!\"}}}}}}"
        )),
    );
    check("no colon", file_err(&auths(&[("quay.io", PASSWORD)])));
    check("not utf-8", file_err(&serde_json::json!({"auths": {"quay.io": {"auth": STANDARD.encode([0xff, 0xfe, b':'])}}}).to_string()));

    let helper_err = |server: &str| {
        write(
            &e.runtime_auth(),
            &serde_json::json!({"credHelpers": {server: "test"}}).to_string(),
        );
        lookup(server, &e.opts()).unwrap_err()
    };
    check("helper garbage", helper_err("garbage.example"));
    check("helper wrong type", helper_err("wrongtype.example"));
    check("helper failure", helper_err("broken.example"));
    let mut no_path = e.opts();
    no_path.sources.path = None;
    write(
        &e.runtime_auth(),
        &serde_json::json!({"credHelpers": {"quay.io": "test"}}).to_string(),
    );
    check("helper missing", lookup("quay.io", &no_path).unwrap_err());
    write(
        &e.runtime_auth(),
        &serde_json::json!({"credHelpers": {"quay.io": format!("x/{PASSWORD}")}}).to_string(),
    );
    check("helper name", lookup("quay.io", &e.opts()).unwrap_err());

    check(
        "creds empty user",
        parse_creds(&format!(":{PASSWORD}"), |_: &str| None).unwrap_err(),
    );
    check(
        "creds no terminal",
        parse_creds("me", |_: &str| None).unwrap_err(),
    );
    check(
        "creds prompt failure",
        parse_creds("me", |_: &str| Some(Err(io::Error::other("no tty")))).unwrap_err(),
    );

    let s = &e.sources;
    let login_err = |u: &str, reg: &str, p: Option<&Path>| {
        login(reg, u, Secret::new(PASSWORD), p, s, |_| Ok(())).unwrap_err()
    };
    check("login colon user", login_err("a:b", "quay.io", None));
    check("login empty user", login_err("", "quay.io", None));
    check("login bad registry", login_err("me", "no host", None));
    check(
        "login empty password",
        login("quay.io", "me", Secret::default(), None, s, |_| Ok(())).unwrap_err(),
    );
    check(
        "login verify",
        login("quay.io", "me", Secret::new(PASSWORD), None, s, |_| {
            Err("unauthorized".into())
        })
        .unwrap_err(),
    );
    check(
        "login no place",
        login(
            "quay.io",
            "me",
            Secret::new(PASSWORD),
            None,
            &CredSources::default(),
            |_| Ok(()),
        )
        .unwrap_err(),
    );
    let dir_as_file = e.dir.path().join("home");
    check(
        "login write",
        login_err("me", "quay.io", Some(&dir_as_file)),
    );
    write(&e.runtime_auth(), &format!("[\"{PASSWORD}\"]"));
    check("login shape", login_err("me", "quay.io", None));
    write(
        &e.runtime_auth(),
        &format!("{{\"auths\": {{\"quay.io\": \"{PASSWORD}\"}}"),
    );
    check("login bad json", login_err("me", "quay.io", None));
    write(
        &e.runtime_auth(),
        &serde_json::json!({"credHelpers": {"quay.io": "test"}}).to_string(),
    );
    check("login helper managed", login_err("me", "quay.io", None));

    write(
        &e.runtime_auth(),
        &auths(&[("quay.io", &format!("me:{PASSWORD}"))]),
    );
    check(
        "logout not logged in",
        logout("ghcr.io", None, s).unwrap_err(),
    );
    write(
        &e.docker_config(),
        &auths(&[("ghcr.io", &format!("me:{PASSWORD}"))]),
    );
    check("logout docker", logout("ghcr.io", None, s).unwrap_err());
    write(&e.runtime_auth(), &format!("{{\"auths\": \"{PASSWORD}\"}}"));
    check("logout shape", logout("quay.io", None, s).unwrap_err());
    check("logout all shape", logout_all(None, s).unwrap_err());

    // Credentials found are shown safely too.
    write(
        &e.runtime_auth(),
        &auths(&[("quay.io", &format!("me:{PASSWORD}"))]),
    );
    let found = format!("{:?} {:?}", lookup("quay.io", &e.opts()).unwrap(), e.opts());
    assert!(!found.contains(PASSWORD), "{found}");
    let with_creds = CredOptions {
        creds: Some(Credential::basic("me", Secret::new(PASSWORD))),
        ..e.opts()
    };
    assert!(!format!("{with_creds:?}").contains(PASSWORD));
    assert!(seen.len() >= 28, "{seen:?}");
}
