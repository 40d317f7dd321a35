use std::path::Path;

use super::*;

const FILE: &str = "/t/registries.conf";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn conf(text: &str) -> RegistriesConf {
    RegistriesConf::parse(text, Path::new(FILE)).unwrap()
}

fn conf_err(text: &str) -> String {
    RegistriesConf::parse(text, Path::new(FILE))
        .unwrap_err()
        .to_string()
}

/// (host, repository, reference, insecure, mirror) of each endpoint.
fn eps(c: &RegistriesConf, name: &str) -> Vec<(String, String, String, bool, bool)> {
    let r = Reference::parse(name).unwrap();
    resolve_reference(c, &r, ShortNames::DockerHub)
        .unwrap()
        .endpoints
        .into_iter()
        .map(|e| (e.host, e.repository, e.reference, e.insecure, e.mirror))
        .collect()
}

fn ep(
    host: &str,
    repo: &str,
    reference: &str,
    insecure: bool,
    mirror: bool,
) -> (String, String, String, bool, bool) {
    (host.into(), repo.into(), reference.into(), insecure, mirror)
}

fn resolve_err(c: &RegistriesConf, name: &str, short: ShortNames) -> String {
    let r = Reference::parse(name).unwrap();
    resolve_reference(c, &r, short).unwrap_err().to_string()
}

#[test]
fn without_configuration_every_name_goes_to_its_own_registry() {
    let c = RegistriesConf::default();
    assert_eq!(
        eps(&c, "alpine"),
        [ep(
            "registry-1.docker.io",
            "library/alpine",
            "latest",
            false,
            false
        )]
    );
    assert_eq!(
        eps(&c, "localhost:5000/app:1"),
        [ep("localhost:5000", "app", "1", false, false)]
    );
}

#[test]
fn a_docker_io_mirror_on_localhost_is_tried_before_docker_hub() {
    let c = conf(
        r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true
"#,
    );
    let r = Reference::parse("alpine:latest").unwrap();
    let res = resolve_reference(&c, &r, ShortNames::DockerHub).unwrap();
    let got: Vec<_> = res
        .endpoints
        .iter()
        .map(|e| {
            (
                e.host.as_str(),
                e.registry.as_str(),
                e.repository.as_str(),
                e.insecure,
                e.mirror,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                "library/alpine",
                true,
                true
            ),
            (
                "registry-1.docker.io",
                "docker.io",
                "library/alpine",
                false,
                false
            ),
        ]
    );
    // Whichever endpoint serves it, the image keeps the name the user asked for.
    for e in &res.endpoints {
        assert_eq!(e.logical.to_string(), "docker.io/library/alpine:latest");
    }
    assert_eq!(res.endpoints[0].auth_key(), "127.0.0.1:5000/library/alpine");
    assert!(res.notes.is_empty(), "{:?}", res.notes);
}

#[test]
fn mirrors_are_tried_in_order_then_the_rewritten_location() {
    // The man page's example.
    let c = conf(
        r#"
unqualified-search-registries = ["example.com"]

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true
"#,
    );
    assert_eq!(
        eps(&c, "example.com/foo/image:latest"),
        [
            ep(
                "example-mirror-0.local",
                "mirror-for-foo/image",
                "latest",
                false,
                true
            ),
            ep(
                "example-mirror-1.local",
                "mirrors/foo/image",
                "latest",
                true,
                true
            ),
            ep(
                "internal-registry-for-example.com",
                "bar/image",
                "latest",
                false,
                false
            ),
        ]
    );
}

#[test]
fn a_prefix_location_pair_rewrites_the_namespace() {
    let c = conf(
        r#"
[[registry]]
prefix = "docker.io/library"
location = "mirror.example/lib"
"#,
    );
    assert_eq!(
        eps(&c, "alpine:3.20"),
        [ep("mirror.example", "lib/alpine", "3.20", false, false)]
    );
    // Outside the prefix: untouched.
    assert_eq!(
        eps(&c, "me/app"),
        [ep("registry-1.docker.io", "me/app", "latest", false, false)]
    );
}

#[test]
fn a_rewrite_keeps_tag_and_digest_and_fetches_the_digest() {
    let c = conf(
        r#"
[[registry]]
prefix = "quay.io/org"
location = "mirror.local:5000/quay/org"
"#,
    );
    let got = eps(&c, &format!("quay.io/org/app:1@{DIGEST}"));
    assert_eq!(
        got,
        [ep(
            "mirror.local:5000",
            "quay/org/app",
            DIGEST,
            false,
            false
        )]
    );
}

#[test]
fn the_longest_matching_prefix_wins() {
    let c = conf(
        r#"
[[registry]]
location = "example.com"
insecure = true

[[registry]]
prefix = "example.com/team"
location = "team.example.net"

[[registry]]
prefix = "example.com/team/special"
location = "special.example.net/x"
"#,
    );
    assert_eq!(
        eps(&c, "example.com/other/a"),
        [ep("example.com", "other/a", "latest", true, false)]
    );
    assert_eq!(
        eps(&c, "example.com/team/a"),
        [ep("team.example.net", "a", "latest", false, false)]
    );
    assert_eq!(
        eps(&c, "example.com/team/special:2"),
        [ep("special.example.net", "x", "2", false, false)]
    );
}

#[test]
fn a_prefix_matches_only_up_to_a_separator() {
    let c = conf(
        r#"
[[registry]]
prefix = "example.com/foo"
location = "elsewhere.net/foo"

[[registry]]
location = "plain.example"
blocked = true
"#,
    );
    // `example.com/foobar` is not under `example.com/foo`.
    assert_eq!(
        eps(&c, "example.com/foobar/x"),
        [ep("example.com", "foobar/x", "latest", false, false)]
    );
    // The repository itself matches, tag after `:`.
    assert_eq!(
        eps(&c, "example.com/foo:1"),
        [ep("elsewhere.net", "foo", "1", false, false)]
    );
    // A host-only prefix does not cover another port of that host.
    assert_eq!(
        eps(&c, "plain.example:5000/x"),
        [ep("plain.example:5000", "x", "latest", false, false)]
    );
}

#[test]
fn wildcard_prefixes_match_subdomains_only() {
    let c = conf(
        r#"
[[registry]]
prefix = "*.example.com"
insecure = true
[[registry.mirror]]
location = "cache.local/ex"
"#,
    );
    assert_eq!(
        eps(&c, "a.example.com/app"),
        [
            ep("cache.local", "ex/app", "latest", false, true),
            ep("a.example.com", "app", "latest", true, false),
        ]
    );
    assert_eq!(
        eps(&c, "b.a.example.com:5000/app"),
        [
            ep("cache.local", "ex/app", "latest", false, true),
            ep("b.a.example.com:5000", "app", "latest", true, false),
        ]
    );
    for outside in ["example.com/app", "badexample.com/app"] {
        assert_eq!(eps(&c, outside).len(), 1, "{outside}");
        assert!(
            !eps(&c, outside)[0].3,
            "{outside} got the wildcard's settings"
        );
    }
}

#[test]
fn a_wildcard_prefix_with_a_location_rewrites_the_host() {
    let c = conf(
        r#"
[[registry]]
prefix = "*.internal"
location = "proxy.example/internal"
"#,
    );
    assert_eq!(
        eps(&c, "git.corp.internal/team/app:2"),
        [ep("proxy.example", "internal/team/app", "2", false, false)]
    );
}

#[test]
fn a_blocked_registry_is_a_one_line_error_naming_the_file() {
    let c = conf(
        r#"
[[registry]]
location = "docker.io"
blocked = true
"#,
    );
    let e = resolve_err(&c, "alpine", ShortNames::DockerHub);
    assert_eq!(e, format!("registry docker.io is blocked by {FILE}"));
    assert!(!e.contains('\n'));
    // A namespace can be blocked too, and a longer prefix can unblock a part of it.
    let c = conf(
        r#"
[[registry]]
prefix = "quay.io/bad"
location = "quay.io/bad"
blocked = true
[[registry]]
prefix = "quay.io/bad/but-fine"
location = "quay.io/bad/but-fine"
"#,
    );
    assert!(
        resolve_err(&c, "quay.io/bad/x", ShortNames::DockerHub).contains("quay.io/bad is blocked")
    );
    assert_eq!(eps(&c, "quay.io/bad/but-fine").len(), 1);
    assert_eq!(eps(&c, "quay.io/good/x").len(), 1);
}

#[test]
fn a_mirror_on_a_blocked_host_is_left_out() {
    let c = conf(
        r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "evil.example"
[[registry.mirror]]
location = "good.example"

[[registry]]
location = "evil.example"
blocked = true
"#,
    );
    assert_eq!(
        eps(&c, "alpine"),
        [
            ep("good.example", "library/alpine", "latest", false, true),
            ep(
                "registry-1.docker.io",
                "library/alpine",
                "latest",
                false,
                false
            ),
        ]
    );
}

#[test]
fn a_name_whose_every_endpoint_is_blocked_is_blocked() {
    let c = conf(
        r#"
[[registry]]
prefix = "docker.io/library"
location = "internal.example/hub"

[[registry]]
location = "internal.example"
blocked = true
"#,
    );
    let e = resolve_err(&c, "alpine", ShortNames::DockerHub);
    assert_eq!(e, format!("registry internal.example is blocked by {FILE}"));
}

#[test]
fn a_rewrite_into_an_invalid_name_is_reported() {
    let c = conf("[[registry]]\nprefix = \"example.com/foo\"\nlocation = \"other.example/Bar\"\n");
    let e = resolve_err(&c, "example.com/foo/app", ShortNames::DockerHub);
    assert_eq!(
        e,
        format!("{FILE}: [[registry]] example.com/foo turns example.com/foo/app:latest into `other.example/Bar/app:latest`, which is not an image reference with a registry host")
    );
}

#[test]
fn insecure_belongs_to_each_endpoint_and_to_the_table_of_its_host() {
    let c = conf(
        r#"
[[registry]]
location = "registry.example"
insecure = true
[[registry.mirror]]
location = "secure-mirror.example"
[[registry.mirror]]
location = "lab.example:5000"

[[registry]]
location = "lab.example:5000"
insecure = true
"#,
    );
    assert_eq!(
        eps(&c, "registry.example/app"),
        [
            // The primary's insecure does not leak to its mirrors…
            ep("secure-mirror.example", "app", "latest", false, true),
            // …but a mirror whose own host is insecure is.
            ep("lab.example:5000", "app", "latest", true, true),
            ep("registry.example", "app", "latest", true, false),
        ]
    );
}

#[test]
fn mirror_by_digest_only_and_pull_from_mirror_choose_mirrors_by_reference_kind() {
    let c = conf(
        r#"
[[registry]]
location = "a.example"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example"

[[registry]]
location = "b.example"
[[registry.mirror]]
location = "digests.example"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "all.example"
pull-from-mirror = "all"
"#,
    );
    let hosts = |name: &str| -> Vec<String> { eps(&c, name).into_iter().map(|e| e.0).collect() };
    assert_eq!(hosts("a.example/x:1"), ["a.example"]);
    assert_eq!(
        hosts(&format!("a.example/x@{DIGEST}")),
        ["m.example", "a.example"]
    );
    assert_eq!(
        hosts("b.example/x:1"),
        ["tags.example", "all.example", "b.example"]
    );
    assert_eq!(
        hosts(&format!("b.example/x@{DIGEST}")),
        ["digests.example", "all.example", "b.example"]
    );
}

#[test]
fn the_first_table_of_a_prefix_wins() {
    let c = conf(
        r#"
[[registry]]
location = "x.example"
insecure = true
[[registry]]
location = "x.example"
"#,
    );
    assert_eq!(c.registries.len(), 1);
    assert!(eps(&c, "x.example/a")[0].3);
}

#[test]
fn a_malformed_file_is_reported_with_file_and_line() {
    let e =
        conf_err("unqualified-search-registries = [\"a.example\"]\n\n[[registry]\nlocation = 1\n");
    assert!(e.starts_with(&format!("{FILE}:3: ")), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = conf_err("[[registry]]\nlocation = \"x.example\"\ninsecure = \"yes\"\n");
    assert!(e.starts_with(&format!("{FILE}:3: ")), "{e}");
}

#[test]
fn invalid_tables_are_reported_with_file_and_line() {
    let e = conf_err("short-name-mode = \"enforcing\"\n\n[[registry]]\ninsecure = true\n");
    // The line of the table's header.
    assert!(e.starts_with(&format!("{FILE}:3: ")), "{e}");
    assert!(e.contains("needs a location or a prefix"), "{e}");
    for (text, needle) in [
        ("[[registry]]\nprefix = \"a.example\"\n", "has no location"),
        ("[[registry]]\nlocation = \"https://a.example\"\n", "URL scheme"),
        ("[[registry]]\nprefix = \"*.a.example/ns\"\n", "bare *.domain"),
        ("[[registry]]\nprefix = \"a.*.example\"\nlocation = \"b.example\"\n", "only allowed at the start"),
        ("[[registry]]\nlocation = \"mirror\"\n", "does not start with a registry host"),
        ("[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\ninsecure = true\n", "has no location"),
        (
            "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"sometimes\"\n",
            "unknown pull-from-mirror",
        ),
        (
            "[[registry]]\nlocation = \"a.example\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"all\"\n",
            "cannot set pull-from-mirror",
        ),
        ("[[registry]]\nlocation = \"a.example\"\npull-from-mirror = \"all\"\n", "belongs in a [[registry.mirror]]"),
        ("short-name-mode = \"sometimes\"\n", "unknown short-name-mode"),
        ("unqualified-search-registries = [\"quay.io/ns\"]\n", "not a host[:port]"),
        ("[aliases]\n\"quay.io/x\" = \"quay.io/x\"\n", "must be a short name"),
        ("[aliases]\nx = \"x\"\n", "must point to a full name"),
        ("[aliases]\nx = \"quay.io/x:1\"\n", "must point to a full name"),
    ] {
        let e = conf_err(text);
        assert!(e.starts_with(FILE), "{text:?}: {e}");
        assert!(e.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn unknown_keys_are_ignored_as_podman_does() {
    let c = conf("credential-helpers = [\"containers-auth.json\"]\n[[registry]]\nlocation = \"a.example\"\nfuture-key = 1\n");
    assert_eq!(c.registries.len(), 1);
}

#[test]
fn the_v1_format_is_converted() {
    let c = conf(
        r#"
[registries.search]
registries = ["quay.io", "docker.io"]
[registries.insecure]
registries = ["lab.example:5000"]
[registries.block]
registries = ["bad.example"]
"#,
    );
    assert_eq!(c.unqualified_search_registries, ["quay.io", "docker.io"]);
    assert!(eps(&c, "lab.example:5000/a")[0].3);
    assert!(resolve_err(&c, "bad.example/a", ShortNames::DockerHub).contains("blocked"));
    let e = conf_err("unqualified-search-registries = [\"a.example\"]\n[registries.search]\nregistries = [\"b.example\"]\n");
    assert!(e.contains("mixes the v1"), "{e}");
}

#[test]
fn short_names_mean_docker_hub_unless_the_user_opts_in() {
    let c = conf("unqualified-search-registries = [\"quay.io\", \"docker.io\"]\n");
    let r = Reference::parse("alpine:3").unwrap();
    let res = resolve_reference(&c, &r, ShortNames::DockerHub).unwrap();
    assert_eq!(res.endpoints.len(), 1);
    assert_eq!(
        res.endpoints[0].logical.to_string(),
        "docker.io/library/alpine:3"
    );
    // Not silent: the user learns registries.conf would have searched.
    assert_eq!(res.notes.len(), 1);
    assert!(
        res.notes[0].contains("--search-registries"),
        "{:?}",
        res.notes
    );
    assert!(
        res.notes[0].contains("quay.io, docker.io"),
        "{:?}",
        res.notes
    );

    // No note when registries.conf agrees with Docker, or the name is qualified.
    let only_hub = conf("unqualified-search-registries = [\"docker.io\"]\n");
    assert!(resolve_reference(&only_hub, &r, ShortNames::DockerHub)
        .unwrap()
        .notes
        .is_empty());
    let q = Reference::parse("docker.io/library/alpine:3").unwrap();
    assert!(resolve_reference(&c, &q, ShortNames::DockerHub)
        .unwrap()
        .notes
        .is_empty());
    // `resolve` on the canonical name says the same.
    let res2 = resolve(&c, &Canonical::from_reference(&r), false).unwrap();
    assert_eq!(res2, res);
    assert!(resolve(&c, &Canonical::from_reference(&r), true)
        .unwrap()
        .notes
        .is_empty());
}

#[test]
fn opted_in_short_names_try_the_search_registries_in_order() {
    let c = conf(
        r#"
unqualified-search-registries = ["quay.io", "docker.io"]
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "quay-cache.local"
"#,
    );
    let r = Reference::parse("alpine:3").unwrap();
    let res = resolve_reference(&c, &r, ShortNames::Search).unwrap();
    let got: Vec<_> = res
        .endpoints
        .iter()
        .map(|e| {
            (
                e.host.as_str(),
                e.repository.as_str(),
                e.logical.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("quay-cache.local", "alpine", "quay.io/alpine:3".to_string()),
            ("quay.io", "alpine", "quay.io/alpine:3".to_string()),
            (
                "registry-1.docker.io",
                "library/alpine",
                "docker.io/library/alpine:3".to_string()
            ),
        ]
    );
    assert!(
        res.notes[0].contains("trying quay.io, docker.io in order"),
        "{:?}",
        res.notes
    );
    assert!(res.notes[0].contains(FILE), "{:?}", res.notes);
    // A qualified name is never searched.
    let q = Reference::parse("ghcr.io/o/app").unwrap();
    assert_eq!(
        resolve_reference(&c, &q, ShortNames::Search)
            .unwrap()
            .endpoints
            .len(),
        1
    );
}

#[test]
fn enforcing_mode_refuses_to_pick_among_several_search_registries() {
    let c = conf("short-name-mode = \"enforcing\"\nunqualified-search-registries = [\"quay.io\", \"docker.io\"]\n");
    let e = resolve_err(&c, "alpine", ShortNames::Search);
    assert!(
        e.starts_with("short name `alpine`: it could be on any of quay.io, docker.io"),
        "{e}"
    );
    let one =
        conf("short-name-mode = \"enforcing\"\nunqualified-search-registries = [\"quay.io\"]\n");
    let r = Reference::parse("alpine").unwrap();
    let res = resolve_reference(&one, &r, ShortNames::Search).unwrap();
    assert_eq!(
        res.endpoints[0].logical.to_string(),
        "quay.io/alpine:latest"
    );
}

#[test]
fn opting_in_without_search_registries_is_an_error() {
    let e = resolve_err(&RegistriesConf::default(), "alpine", ShortNames::Search);
    assert!(
        e.contains("no unqualified-search-registries in no registries.conf"),
        "{e}"
    );
}

#[test]
fn aliases_win_when_opted_in_and_are_mentioned_otherwise() {
    let c = conf(
        r#"
unqualified-search-registries = ["quay.io"]
[aliases]
fedora = "registry.fedoraproject.org/fedora"
alpine = "docker.io/library/alpine"
"#,
    );
    let r = Reference::parse("fedora:40").unwrap();
    let res = resolve_reference(&c, &r, ShortNames::Search).unwrap();
    assert_eq!(res.endpoints.len(), 1);
    assert_eq!(res.endpoints[0].host, "registry.fedoraproject.org");
    assert_eq!(res.endpoints[0].reference, "40");
    assert!(res.notes[0].contains("alias in"), "{:?}", res.notes);

    let res = resolve_reference(&c, &r, ShortNames::DockerHub).unwrap();
    assert_eq!(
        res.endpoints[0].logical.to_string(),
        "docker.io/library/fedora:40"
    );
    assert!(
        res.notes[0].contains("aliases it to registry.fedoraproject.org/fedora"),
        "{:?}",
        res.notes
    );
    // An alias that agrees with Docker needs no note.
    let a = Reference::parse("alpine").unwrap();
    assert!(resolve_reference(&c, &a, ShortNames::DockerHub)
        .unwrap()
        .notes
        .is_empty());
}

#[test]
fn a_blocked_search_candidate_is_skipped_with_a_note() {
    let c = conf(
        r#"
unqualified-search-registries = ["quay.io", "docker.io"]
[[registry]]
location = "quay.io"
blocked = true
"#,
    );
    let r = Reference::parse("alpine").unwrap();
    let res = resolve_reference(&c, &r, ShortNames::Search).unwrap();
    assert_eq!(res.endpoints.len(), 1);
    assert_eq!(res.endpoints[0].registry, "docker.io");
    assert!(res
        .notes
        .iter()
        .any(|n| n.contains("skipping quay.io/alpine:latest")));
    let all = conf("unqualified-search-registries = [\"quay.io\"]\n[[registry]]\nlocation = \"quay.io\"\nblocked = true\n");
    assert!(resolve_err(&all, "alpine", ShortNames::Search).contains("blocked"));
}

mod loading {
    use super::*;
    use std::fs;

    struct Tree {
        _dir: tempfile::TempDir,
        home: PathBuf,
        etc: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let etc = dir.path().join("etc/containers");
        fs::create_dir_all(home.join(".config/containers/registries.conf.d")).unwrap();
        fs::create_dir_all(etc.join("registries.conf.d")).unwrap();
        Tree {
            _dir: dir,
            home,
            etc,
        }
    }

    impl Tree {
        fn paths(&self, env_file: Option<PathBuf>) -> ConfPaths {
            ConfPaths {
                env_file,
                home: Some(self.home.clone()),
                system_dir: self.etc.clone(),
            }
        }
        fn user(&self, rel: &str) -> PathBuf {
            self.home.join(".config/containers").join(rel)
        }
        fn system(&self, rel: &str) -> PathBuf {
            self.etc.join(rel)
        }
    }

    fn write(p: &Path, text: &str) {
        fs::write(p, text).unwrap();
    }

    fn search(c: &RegistriesConf) -> Vec<&str> {
        c.unqualified_search_registries
            .iter()
            .map(|s| s.as_str())
            .collect()
    }

    #[test]
    fn no_file_at_all_is_an_empty_configuration() {
        let t = tree();
        let c = load(&t.paths(None)).unwrap();
        assert_eq!(c, RegistriesConf::default());
        let c = load(&ConfPaths {
            env_file: None,
            home: None,
            system_dir: t.etc.join("missing"),
        })
        .unwrap();
        assert!(c.registries.is_empty());
    }

    #[test]
    fn the_environment_variable_names_the_only_file_read() {
        let t = tree();
        let env = t.home.join("mine.conf");
        write(&env, "unqualified-search-registries = [\"env.example\"]\n");
        write(
            &t.user("registries.conf"),
            "unqualified-search-registries = [\"user.example\"]\n",
        );
        write(
            &t.system("registries.conf.d/a.conf"),
            "unqualified-search-registries = [\"dropin.example\"]\n",
        );
        let c = load(&t.paths(Some(env.clone()))).unwrap();
        assert_eq!(search(&c), ["env.example"]);
        assert_eq!(c.files, [env]);
    }

    #[test]
    fn a_missing_file_named_by_the_environment_is_an_error() {
        let t = tree();
        let env = t.home.join("nope.conf");
        let e = load(&t.paths(Some(env.clone()))).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read {}", env.display())),
            "{e}"
        );
    }

    #[test]
    fn the_user_file_hides_the_system_file_and_its_drop_ins() {
        let t = tree();
        write(
            &t.user("registries.conf"),
            "unqualified-search-registries = [\"user.example\"]\n",
        );
        write(
            &t.system("registries.conf"),
            "unqualified-search-registries = [\"system.example\"]\n",
        );
        write(
            &t.system("registries.conf.d/a.conf"),
            "short-name-mode = \"enforcing\"\n",
        );
        write(
            &t.user("registries.conf.d/b.conf"),
            "[[registry]]\nlocation = \"u.example\"\ninsecure = true\n",
        );
        let c = load(&t.paths(None)).unwrap();
        assert_eq!(search(&c), ["user.example"]);
        assert_eq!(c.short_name_mode(), ShortNameMode::Permissive);
        assert_eq!(c.registries.len(), 1);
        assert_eq!(c.registries[0].origin, t.user("registries.conf.d/b.conf"));
    }

    #[test]
    fn the_system_file_takes_system_then_user_drop_ins_in_name_order() {
        let t = tree();
        write(
            &t.system("registries.conf"),
            "unqualified-search-registries = [\"system.example\"]\n[[registry]]\nlocation = \"x.example\"\n[aliases]\nold = \"quay.io/old\"\n",
        );
        write(
            &t.system("registries.conf.d/20-b.conf"),
            "unqualified-search-registries = [\"b.example\"]\n",
        );
        write(
            &t.system("registries.conf.d/10-a.conf"),
            "unqualified-search-registries = [\"a.example\"]\nshort-name-mode = \"disabled\"\n",
        );
        write(&t.system("registries.conf.d/README"), "not toml at all [[[");
        write(
            &t.user("registries.conf.d/30-c.conf"),
            "[[registry]]\nlocation = \"x.example\"\nblocked = true\n[aliases]\nold = \"\"\nnew = \"quay.io/new\"\n",
        );
        let c = load(&t.paths(None)).unwrap();
        assert_eq!(search(&c), ["b.example"]);
        assert_eq!(
            c.search_registries_origin,
            Some(t.system("registries.conf.d/20-b.conf"))
        );
        assert_eq!(c.short_name_mode(), ShortNameMode::Disabled);
        // A drop-in's table replaces the one of the same prefix.
        assert_eq!(c.registries.len(), 1);
        assert!(c.registries[0].blocked);
        let e = resolve_err(&c, "x.example/a", ShortNames::DockerHub);
        assert!(
            e.ends_with(&t.user("registries.conf.d/30-c.conf").display().to_string()),
            "{e}"
        );
        // An empty alias erases; others add.
        assert_eq!(c.aliases.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(c.files.len(), 4);
    }

    #[test]
    fn a_drop_in_must_use_the_v2_format() {
        let t = tree();
        write(
            &t.system("registries.conf.d/a.conf"),
            "[registries.search]\nregistries = [\"a.example\"]\n",
        );
        let e = load(&t.paths(None)).unwrap_err().to_string();
        assert!(
            e.contains("a.conf: a drop-in must use the v2 format"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_drop_in_names_its_file_and_line() {
        let t = tree();
        write(
            &t.user("registries.conf.d/bad.conf"),
            "\n\nshort-name-mode = \n",
        );
        let e = load(&t.paths(None)).unwrap_err().to_string();
        let f = t.user("registries.conf.d/bad.conf");
        assert!(e.starts_with(&format!("{}:3: ", f.display())), "{e}");
    }
}
