//! containers-registries.conf(5), the file podman, skopeo and buildah read: which registries to
//! talk to for an image name, and how.
//!
//! Read: `unqualified-search-registries`, `short-name-mode`, `[aliases]`, and `[[registry]]`
//! tables (`prefix`, `location`, `insecure`, `blocked`, `mirror-by-digest-only`) with their
//! `[[registry.mirror]]` tables (`location`, `insecure`, `pull-from-mirror`). The deprecated v1
//! format (`[registries.search|insecure|block]`) is converted as podman does. Other keys
//! (`credential-helpers`, …) are ignored.
//!
//! Files ([`load`]): `$CONTAINERS_REGISTRIES_CONF` when set, and then only that file (it must
//! exist; unlike podman, no drop-ins are added to it, so a test or a user can make the
//! configuration exactly one file). Otherwise `~/.config/containers/registries.conf` if it
//! exists, with the drop-ins of `~/.config/containers/registries.conf.d`; else
//! `/etc/containers/registries.conf` (if it exists) with the drop-ins of
//! `/etc/containers/registries.conf.d` and then `~/.config/containers/registries.conf.d`.
//! Drop-ins (`*.conf`, in name order) replace `[[registry]]` tables of the same prefix and the
//! top-level settings they set, and add or erase (`name = ""`) aliases. No file at all is an
//! empty configuration: every name goes to its own registry.
//!
//! Resolution ([`resolve`]): the `[[registry]]` with the longest prefix matching the full name
//! (`docker.io/library/alpine:latest`; a prefix must end at a `/`, `:` or `@` of the name, and
//! `*.example.com` matches any subdomain) decides. `blocked` refuses the name. Otherwise its
//! mirrors are tried first, in order, then its `location` (the name itself when empty), each
//! with the name rewritten as podman does: the matched prefix is replaced by the location, so
//! prefix `docker.io/library` with location `mirror.example/lib` sends
//! `docker.io/library/alpine` to `mirror.example/lib/alpine`. An endpoint is insecure when its
//! own table says so or when the `[[registry]]` matching the rewritten name does; an endpoint
//! whose rewritten name is blocked is left out (all of them: the name is blocked).
//!
//! Short names (`alpine`, `me/app`): by default they mean Docker Hub, as in Docker, whatever
//! registries.conf says ([`ShortNames::DockerHub`]); when registries.conf would have sent the
//! name elsewhere (search registries or an alias), [`Resolved::notes`] says so, so nothing is
//! guessed silently. Search registries and aliases are used only when the user opts in with
//! `--search-registries` ([`ShortNames::Search`]): then an alias wins; else the
//! `unqualified-search-registries` are tried in order, except with `short-name-mode =
//! "enforcing"` and more than one of them, which is an error (podman would prompt: we do not,
//! a build should not wait on a question). The notes name the candidates and where they come
//! from; the caller prints them and then which candidate answered ([`Endpoint::logical`]).
//! `short-name-mode` alone is not an opt-in: podman defaults it to `permissive` and
//! distributions ship search lists, so it would turn short names into guesses on any machine.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::Reference;
use crate::registry_name::{api_host, Canonical, DOCKER_HUB};

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    // The cause is in the message and not a `source()`, so `{:#}` chains print it once.
    #[error("cannot read {}: {err}", path.display())]
    Read { path: PathBuf, err: io::Error },
    /// A file that is not valid TOML or not a valid configuration; `place` is `FILE:LINE` when
    /// the line is known, else `FILE`.
    #[error("{place}: {message}")]
    Malformed { place: String, message: String },
    #[error("registry {prefix} is blocked by {}", path.display())]
    Blocked { prefix: String, path: PathBuf },
    #[error("{}: [[registry]] {prefix} turns {name} into `{rewritten}`, which is not an image reference with a registry host", path.display())]
    BadRewrite {
        path: PathBuf,
        prefix: String,
        name: String,
        rewritten: String,
    },
    #[error("short name `{name}`: {why}")]
    ShortName { name: String, why: String },
}

pub type Result<T, E = ConfError> = std::result::Result<T, E>;

/// `short-name-mode`: how podman resolves a short name through the search registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortNameMode {
    /// One search registry is used as is; with several, podman prompts (we refuse).
    Enforcing,
    /// podman's default: prompt on a terminal, else try them all (we try them all).
    #[default]
    Permissive,
    /// Try them all.
    Disabled,
}

impl ShortNameMode {
    fn parse(s: &str) -> Option<ShortNameMode> {
        match s {
            "enforcing" => Some(ShortNameMode::Enforcing),
            "permissive" => Some(ShortNameMode::Permissive),
            "disabled" => Some(ShortNameMode::Disabled),
            _ => None,
        }
    }
}

/// `pull-from-mirror` of a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFrom {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFrom,
}

/// One `[[registry]]` table, validated (prefix defaulted to location, trailing `/` removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub prefix: String,
    /// Empty only with a `*.domain` prefix: the name is used as is.
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
    /// The file this table came from, for messages.
    pub origin: PathBuf,
}

/// A short-name alias: `alpine = "docker.io/library/alpine"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// Fully qualified, without tag or digest; empty in a drop-in means "erase".
    pub target: String,
    pub origin: PathBuf,
}

/// The merged configuration of all files read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub unqualified_search_registries: Vec<String>,
    /// The file that set `unqualified-search-registries`, when one did.
    pub search_registries_origin: Option<PathBuf>,
    /// As set by a file; [`RegistriesConf::short_name_mode`] applies the default.
    pub short_name_mode_set: Option<ShortNameMode>,
    pub aliases: BTreeMap<String, Alias>,
    pub registries: Vec<Registry>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

// What a file holds, as serde sees it; validated into `RegistriesConf` by `from_raw`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawConf {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<String>,
    #[serde(default)]
    registry: Vec<toml::Spanned<RawRegistry>>,
    aliases: Option<BTreeMap<String, String>>,
    // The v1 format: `[registries.search] registries = [...]` and so on.
    registries: Option<RawV1>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
    pull_from_mirror: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawV1 {
    #[serde(default)]
    search: V1List,
    #[serde(default)]
    insecure: V1List,
    #[serde(default)]
    block: V1List,
}

#[derive(Debug, Deserialize, Default)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A registry host as the grammar has it: `host[:port]` (`localhost`, a dotted name, an IP).
fn is_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        && !matches!(port, Some(p) if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
}

/// Whether a location's first component names a registry (rather than a Docker Hub path).
fn starts_with_host(location: &str) -> bool {
    let first = location.split('/').next().unwrap_or("");
    is_host(first) && (first.contains('.') || first.contains(':') || first == "localhost")
}

impl RegistriesConf {
    /// Parses one file's text; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConf> {
        let mut c = Self::parse_file(text, path, false)?;
        c.aliases.retain(|_, a| !a.target.is_empty());
        Ok(c)
    }

    fn parse_file(text: &str, path: &Path, drop_in: bool) -> Result<RegistriesConf> {
        let at = |line: Option<usize>, message: String| ConfError::Malformed {
            place: match line {
                Some(l) => format!("{}:{l}", path.display()),
                None => path.display().to_string(),
            },
            message,
        };
        let raw: RawConf = toml::from_str(text).map_err(|e| {
            at(
                e.span().map(|s| line_of(text, s.start)),
                e.message().trim().replace('\n', " "),
            )
        })?;
        let mut raw = raw;
        let v1 = raw.registries.take().unwrap_or_default();
        let has_v1 = !(v1.search.registries.is_empty()
            && v1.insecure.registries.is_empty()
            && v1.block.registries.is_empty());
        if has_v1 {
            if drop_in {
                return Err(at(
                    None,
                    "a drop-in must use the v2 format ([[registry]] tables)".into(),
                ));
            }
            if !raw.registry.is_empty() || raw.unqualified_search_registries.is_some() {
                return Err(at(
                    None,
                    "mixes the v1 [registries.*] tables with v2 settings".into(),
                ));
            }
            raw = convert_v1(v1);
        }

        let mut conf = RegistriesConf {
            files: vec![path.to_path_buf()],
            ..Default::default()
        };
        if let Some(list) = raw.unqualified_search_registries {
            let mut clean = Vec::new();
            for r in list {
                let r = r.trim_end_matches('/').to_string();
                if !is_host(&r) {
                    return Err(at(
                        None,
                        format!("unqualified-search-registries entry `{r}` is not a host[:port]"),
                    ));
                }
                clean.push(r);
            }
            conf.unqualified_search_registries = clean;
            conf.search_registries_origin = Some(path.to_path_buf());
        }
        if let Some(m) = raw.short_name_mode.filter(|m| !m.is_empty()) {
            conf.short_name_mode_set = Some(ShortNameMode::parse(&m).ok_or_else(|| {
                at(
                    None,
                    format!("unknown short-name-mode `{m}` (enforcing, permissive or disabled)"),
                )
            })?);
        }
        for (name, target) in raw.aliases.unwrap_or_default() {
            validate_alias(&name, &target).map_err(|why| at(None, why))?;
            conf.aliases.insert(
                name,
                Alias {
                    target,
                    origin: path.to_path_buf(),
                },
            );
        }
        for spanned in raw.registry {
            let line = Some(line_of(text, spanned.span().start));
            let reg = validate_registry(spanned.into_inner(), path).map_err(|m| at(line, m))?;
            // The first table of a prefix wins, as in podman: later ones could never match.
            if !conf.registries.iter().any(|r| r.prefix == reg.prefix) {
                conf.registries.push(reg);
            }
        }
        Ok(conf)
    }

    /// Applies a drop-in over this configuration.
    fn merge(&mut self, d: RegistriesConf) {
        for reg in d.registries {
            match self.registries.iter_mut().find(|r| r.prefix == reg.prefix) {
                Some(r) => *r = reg,
                None => self.registries.push(reg),
            }
        }
        if d.search_registries_origin.is_some() {
            self.unqualified_search_registries = d.unqualified_search_registries;
            self.search_registries_origin = d.search_registries_origin;
        }
        if d.short_name_mode_set.is_some() {
            self.short_name_mode_set = d.short_name_mode_set;
        }
        for (name, alias) in d.aliases {
            if alias.target.is_empty() {
                self.aliases.remove(&name);
            } else {
                self.aliases.insert(name, alias);
            }
        }
        self.files.extend(d.files);
    }

    pub fn short_name_mode(&self) -> ShortNameMode {
        self.short_name_mode_set.unwrap_or_default()
    }

    /// The `[[registry]]` whose prefix is the longest match for `name` (a full reference string
    /// such as `docker.io/library/alpine:latest`).
    pub fn find_registry(&self, name: &str) -> Option<&Registry> {
        self.registries
            .iter()
            .filter(|r| match_len(&r.prefix, name).is_some())
            .max_by_key(|r| r.prefix.len())
    }

    /// The files read, for messages: `a, b`, or `no registries.conf`.
    pub fn describe_files(&self) -> String {
        if self.files.is_empty() {
            "no registries.conf".to_string()
        } else {
            let v: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
            v.join(", ")
        }
    }
}

fn convert_v1(v1: RawV1) -> RawConf {
    let mut regs: Vec<RawRegistry> = Vec::new();
    let mut get = |loc: &str| -> usize {
        match regs.iter().position(|r| r.location == loc) {
            Some(i) => i,
            None => {
                regs.push(RawRegistry {
                    location: loc.to_string(),
                    ..Default::default()
                });
                regs.len() - 1
            }
        }
    };
    let mut marks = Vec::new();
    for b in &v1.block.registries {
        marks.push((get(b), true));
    }
    for i in &v1.insecure.registries {
        marks.push((get(i), false));
    }
    for (i, blocked) in marks {
        if blocked {
            regs[i].blocked = true;
        } else {
            regs[i].insecure = true;
        }
    }
    RawConf {
        unqualified_search_registries: (!v1.search.registries.is_empty())
            .then_some(v1.search.registries),
        registry: regs
            .into_iter()
            .map(|r| toml::Spanned::new(0..0, r))
            .collect(),
        ..Default::default()
    }
}

fn clean_location(s: &str, what: &str) -> Result<String, String> {
    let s = s.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        return Err(format!(
            "{what} `{s}` has a URL scheme: write host[:port][/path] (insecure = true allows http)"
        ));
    }
    Ok(s.to_string())
}

fn validate_registry(raw: RawRegistry, path: &Path) -> Result<Registry, String> {
    let location = clean_location(&raw.location, "location")?;
    let prefix = if raw.prefix.is_empty() {
        if location.is_empty() {
            return Err("a [[registry]] needs a location or a prefix".into());
        }
        location.clone()
    } else {
        clean_location(&raw.prefix, "prefix")?
    };
    let wildcard = prefix.starts_with("*.");
    if wildcard && prefix.contains(['/', ':', '@']) {
        return Err(format!(
            "wildcard prefix `{prefix}` must be a bare *.domain (no port, path, tag or digest)"
        ));
    }
    if prefix.contains('*') && !wildcard {
        return Err(format!(
            "prefix `{prefix}`: a wildcard is only allowed at the start, as *.domain"
        ));
    }
    if location.is_empty() && !wildcard {
        return Err(format!(
            "[[registry]] prefix `{prefix}` has no location (only *.domain prefixes may leave it out)"
        ));
    }
    if !location.is_empty() && !starts_with_host(&location) {
        return Err(format!(
            "location `{location}` does not start with a registry host (a dotted name, host:port or localhost)"
        ));
    }
    if raw.pull_from_mirror.is_some() {
        return Err(format!(
            "pull-from-mirror belongs in a [[registry.mirror]], not in [[registry]] `{prefix}`"
        ));
    }
    let mut mirrors = Vec::new();
    for m in raw.mirror {
        let loc = clean_location(&m.location, "mirror location")?;
        if loc.is_empty() {
            return Err(format!("a mirror of `{prefix}` has no location"));
        }
        if !starts_with_host(&loc) {
            return Err(format!(
                "mirror location `{loc}` does not start with a registry host (a dotted name, host:port or localhost)"
            ));
        }
        let pull_from = match m.pull_from_mirror.as_deref() {
            None | Some("") | Some("all") => PullFrom::All,
            Some("digest-only") => PullFrom::DigestOnly,
            Some("tag-only") => PullFrom::TagOnly,
            Some(other) => {
                return Err(format!(
                    "unknown pull-from-mirror `{other}` for mirror `{loc}` (all, digest-only or tag-only)"
                ))
            }
        };
        if raw.mirror_by_digest_only && m.pull_from_mirror.is_some() {
            return Err(format!(
                "`{prefix}` sets mirror-by-digest-only, so its mirror `{loc}` cannot set pull-from-mirror"
            ));
        }
        mirrors.push(Mirror {
            location: loc,
            insecure: m.insecure,
            pull_from,
        });
    }
    Ok(Registry {
        prefix,
        location,
        insecure: raw.insecure,
        blocked: raw.blocked,
        mirror_by_digest_only: raw.mirror_by_digest_only,
        mirrors,
        origin: path.to_path_buf(),
    })
}

fn validate_alias(name: &str, target: &str) -> Result<(), String> {
    let n =
        Reference::parse(name).map_err(|_| format!("alias `{name}` is not a valid short name"))?;
    if n.domain.is_some() || n.tag.is_some() || n.digest.is_some() {
        return Err(format!(
            "alias `{name}` must be a short name without registry, tag or digest"
        ));
    }
    if target.is_empty() {
        return Ok(()); // erases the alias in a drop-in
    }
    let t = Reference::parse(target)
        .map_err(|_| format!("alias `{name}` points to `{target}`, not an image name"))?;
    if t.domain.is_none() || t.tag.is_some() || t.digest.is_some() {
        return Err(format!(
            "alias `{name}` must point to a full name with a registry and without tag or digest, not `{target}`"
        ));
    }
    Ok(())
}

/// The length of `name` that `prefix` matches, if it does. A plain prefix must be followed in
/// the name by `/`, or by `:` or `@` once it names a repository (a host-only prefix does not
/// match another port of the same host, unlike podman's documented quirk). `*.domain` matches
/// the whole host of any subdomain, port included.
fn match_len(prefix: &str, name: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host_end = name.find('/').unwrap_or(name.len());
        let hostname = name[..host_end].split(':').next().unwrap_or("");
        let sub = hostname.strip_suffix(domain)?;
        return (sub.len() > 1 && sub.ends_with('.')).then_some(host_end);
    }
    let rest = name.strip_prefix(prefix)?;
    match rest.chars().next() {
        None | Some('/') | Some('@') => Some(prefix.len()),
        Some(':') if prefix.contains('/') => Some(prefix.len()),
        _ => None,
    }
}

/// Which of registries.conf's ways short names may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortNames {
    /// Docker's rule: a short name is on Docker Hub (registries.conf only adds notes).
    #[default]
    DockerHub,
    /// The user opted in (`--search-registries`): aliases, then the search registries.
    Search,
}

/// One place to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to (Docker Hub's API host for `docker.io`).
    pub host: String,
    /// The repository on that host, after the prefix/location rewrite.
    pub repository: String,
    /// What to fetch: the digest when there is one, else the tag.
    pub reference: String,
    /// Plain HTTP and unverified TLS are allowed.
    pub insecure: bool,
    /// A `[[registry.mirror]]`, not the primary location.
    pub mirror: bool,
    /// The registry as credentials name it: `docker.io`, `mirror.example:5000`.
    pub registry: String,
    /// The name the user asked for, fully qualified: what the image is called, whichever
    /// endpoint serves it (for search registries, the candidate this endpoint belongs to).
    pub logical: Canonical,
}

impl Endpoint {
    /// `registry/repository`: the key for [`crate::credentials::lookup`] (podman looks up
    /// namespaced entries first, then the registry).
    pub fn auth_key(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.reference.contains(':') {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )?;
        if self.mirror {
            f.write_str(" (mirror)")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// Where to try, in order; the first that has the image wins.
    pub endpoints: Vec<Endpoint>,
    /// Lines for the user (stderr), so a short name never resolves silently: what
    /// registries.conf would have done instead, or which candidates are tried.
    pub notes: Vec<String>,
}

/// Endpoints for a name, Docker's rule for short names (see the module doc).
/// `user_wrote_domain` false adds a note when registries.conf would have resolved the short
/// name elsewhere.
pub fn resolve(
    conf: &RegistriesConf,
    name: &Canonical,
    user_wrote_domain: bool,
) -> Result<Resolved> {
    let mut notes = Vec::new();
    if !user_wrote_domain {
        let short = match name.repository.strip_prefix("library/") {
            Some(r) if name.registry == DOCKER_HUB && !r.contains('/') => r,
            _ => &name.repository,
        };
        notes.extend(docker_hub_note(conf, short, name));
    }
    Ok(Resolved {
        endpoints: endpoints_for(conf, name)?,
        notes,
    })
}

/// Endpoints for a reference as the user wrote it, with short names taken the way `short` says.
pub fn resolve_reference(
    conf: &RegistriesConf,
    r: &Reference,
    short: ShortNames,
) -> Result<Resolved> {
    if r.domain.is_some() || short == ShortNames::DockerHub {
        let name = Canonical::from_reference(r);
        // The note names what the user wrote (`library/x` stays `library/x`).
        let notes = match r.domain {
            None => docker_hub_note(conf, &r.path, &name).into_iter().collect(),
            Some(_) => Vec::new(),
        };
        return Ok(Resolved {
            endpoints: endpoints_for(conf, &name)?,
            notes,
        });
    }
    let short_name = r.path.clone();
    let with_domain = |domain: &str, path: &str| {
        Canonical::from_reference(&Reference {
            domain: Some(domain.to_string()),
            path: path.to_string(),
            tag: r.tag.clone(),
            digest: r.digest.clone(),
        })
    };
    if let Some(alias) = conf.aliases.get(&short_name) {
        // Validated at load: a full name without tag or digest.
        let t = Reference::parse(&alias.target).map_err(|e| ConfError::ShortName {
            name: short_name.clone(),
            why: e.to_string(),
        })?;
        let logical = with_domain(t.domain.as_deref().unwrap_or(DOCKER_HUB), &t.path);
        return Ok(Resolved {
            notes: vec![format!(
                "short name `{short_name}`: {logical} (alias in {})",
                alias.origin.display()
            )],
            endpoints: endpoints_for(conf, &logical)?,
        });
    }
    let list = &conf.unqualified_search_registries;
    let origin = conf
        .search_registries_origin
        .as_ref()
        .map_or_else(|| conf.describe_files(), |p| p.display().to_string());
    if list.is_empty() {
        return Err(ConfError::ShortName {
            name: short_name,
            why: format!(
                "--search-registries, but no alias and no unqualified-search-registries in {}",
                conf.describe_files()
            ),
        });
    }
    if conf.short_name_mode() == ShortNameMode::Enforcing && list.len() > 1 {
        return Err(ConfError::ShortName {
            name: short_name,
            why: format!(
                "it could be on any of {} (short-name-mode \"enforcing\" in {}): write the full name",
                list.join(", "),
                conf.describe_files()
            ),
        });
    }
    let mut res = Resolved {
        notes: vec![format!(
            "short name `{short_name}`: trying {} in order (unqualified-search-registries in {origin})",
            list.join(", ")
        )],
        endpoints: Vec::new(),
    };
    let mut first_blocked = None;
    for reg in list {
        let candidate = with_domain(reg, &short_name);
        match endpoints_for(conf, &candidate) {
            Ok(eps) => res.endpoints.extend(eps),
            Err(e @ ConfError::Blocked { .. }) => {
                res.notes.push(format!("skipping {candidate}: {e}"));
                first_blocked.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (res.endpoints.is_empty(), first_blocked) {
        (true, Some(e)) => Err(e),
        _ => Ok(res),
    }
}

/// What to tell a user whose short name goes to Docker Hub while registries.conf would have
/// sent it elsewhere.
fn docker_hub_note(conf: &RegistriesConf, short: &str, name: &Canonical) -> Option<String> {
    if let Some(a) = conf.aliases.get(short) {
        if Canonical::parse(&a.target).ok()?.name() != name.name() {
            return Some(format!(
                "short name `{short}` means {name}, as in Docker; registries.conf ({}) aliases it to {}: pass --search-registries to use that",
                a.origin.display(),
                a.target
            ));
        }
        return None;
    }
    let list = &conf.unqualified_search_registries;
    if list.is_empty() || list == &[DOCKER_HUB] {
        return None;
    }
    let origin = conf
        .search_registries_origin
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    Some(format!(
        "short name `{short}` means {name}, as in Docker; pass --search-registries to try the unqualified-search-registries of {origin} instead ({})",
        list.join(", ")
    ))
}

/// Mirrors (in order) then the primary location, for a fully qualified name.
fn endpoints_for(conf: &RegistriesConf, logical: &Canonical) -> Result<Vec<Endpoint>> {
    let full = logical.to_string();
    let Some(reg) = conf.find_registry(&full) else {
        return Ok(vec![endpoint(logical.clone(), false, false, logical)]);
    };
    if reg.blocked {
        return Err(ConfError::Blocked {
            prefix: reg.prefix.clone(),
            path: reg.origin.clone(),
        });
    }
    let digested = logical.digest.is_some();
    let mut eps = Vec::new();
    for m in &reg.mirrors {
        let usable = if reg.mirror_by_digest_only {
            digested
        } else {
            match m.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => digested,
                PullFrom::TagOnly => !digested,
            }
        };
        if usable {
            let name = rewrite(reg, &m.location, &full)?;
            eps.push((name, m.insecure, true));
        }
    }
    let origin = if reg.location.is_empty() {
        logical.clone()
    } else {
        rewrite(reg, &reg.location, &full)?
    };
    eps.push((origin, reg.insecure, false));

    let mut out = Vec::new();
    let mut blocked = None;
    for (name, insecure, mirror) in eps {
        // The endpoint's own name may fall under another table (an insecure mirror host, a
        // blocked one), as it does when podman connects to it.
        let own = conf.find_registry(&name.to_string());
        match own {
            Some(r) if r.blocked => {
                blocked.get_or_insert(r);
            }
            _ => out.push(endpoint(
                name,
                insecure || own.is_some_and(|r| r.insecure),
                mirror,
                logical,
            )),
        }
    }
    match (out.is_empty(), blocked) {
        (true, Some(r)) => Err(ConfError::Blocked {
            prefix: r.prefix.clone(),
            path: r.origin.clone(),
        }),
        _ => Ok(out),
    }
}

fn endpoint(name: Canonical, insecure: bool, mirror: bool, logical: &Canonical) -> Endpoint {
    Endpoint {
        host: api_host(&name.registry).to_string(),
        reference: name.fetch_reference().to_string(),
        repository: name.repository,
        insecure,
        mirror,
        registry: name.registry,
        logical: logical.clone(),
    }
}

/// podman's rewrite: the matched prefix of the full name replaced by `location`.
fn rewrite(reg: &Registry, location: &str, full: &str) -> Result<Canonical> {
    let n = match_len(&reg.prefix, full).unwrap_or(0);
    let rewritten = format!("{location}{}", &full[n..]);
    match Reference::parse(&rewritten) {
        Ok(r) if r.domain.is_some() => Ok(Canonical::from_reference(&r)),
        _ => Err(ConfError::BadRewrite {
            path: reg.origin.clone(),
            prefix: reg.prefix.clone(),
            name: full.to_string(),
            rewritten,
        }),
    }
}

/// Where registries.conf files are looked for; [`ConfPaths::from_env`] is the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfPaths {
    /// `$CONTAINERS_REGISTRIES_CONF`: when set, the only file read, and it must exist.
    pub env_file: Option<PathBuf>,
    /// `$HOME`, for `~/.config/containers/registries.conf{,.d}`.
    pub home: Option<PathBuf>,
    /// `/etc/containers`.
    pub system_dir: PathBuf,
}

impl ConfPaths {
    pub fn from_env() -> ConfPaths {
        let var = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        ConfPaths {
            env_file: var("CONTAINERS_REGISTRIES_CONF"),
            home: var("HOME").filter(|h| h.is_absolute()),
            system_dir: PathBuf::from("/etc/containers"),
        }
    }
}

/// Reads a file; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(ConfError::Read {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// `*.conf` files of a drop-in directory, in name order; none when it does not exist.
fn drop_ins(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(ConfError::Read {
                path: dir.to_path_buf(),
                err,
            })
        }
    };
    let mut files = Vec::new();
    for e in rd {
        let e = e.map_err(|err| ConfError::Read {
            path: dir.to_path_buf(),
            err,
        })?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "conf") && !p.is_dir() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the configuration as described in the module doc.
pub fn load(paths: &ConfPaths) -> Result<RegistriesConf> {
    if let Some(f) = &paths.env_file {
        let text = std::fs::read_to_string(f).map_err(|err| ConfError::Read {
            path: f.clone(),
            err,
        })?;
        return RegistriesConf::parse(&text, f);
    }
    let user_dir = paths.home.as_ref().map(|h| h.join(".config/containers"));
    let user_file = user_dir.as_ref().map(|d| d.join("registries.conf"));
    let user_text = match &user_file {
        Some(f) => read_optional(f)?,
        None => None,
    };
    let (mut conf, dirs) = match (user_text, user_file) {
        (Some(text), Some(f)) => (
            RegistriesConf::parse_file(&text, &f, false)?,
            vec![user_dir.clone().unwrap().join("registries.conf.d")],
        ),
        _ => {
            let f = paths.system_dir.join("registries.conf");
            let conf = match read_optional(&f)? {
                Some(text) => RegistriesConf::parse_file(&text, &f, false)?,
                None => RegistriesConf::default(),
            };
            let mut dirs = vec![paths.system_dir.join("registries.conf.d")];
            dirs.extend(user_dir.map(|d| d.join("registries.conf.d")));
            (conf, dirs)
        }
    };
    for dir in dirs {
        for f in drop_ins(&dir)? {
            if let Some(text) = read_optional(&f)? {
                conf.merge(RegistriesConf::parse_file(&text, &f, true)?);
            }
        }
    }
    conf.aliases.retain(|_, a| !a.target.is_empty());
    Ok(conf)
}

/// [`load`] with the paths of this process's environment.
pub fn load_default() -> Result<RegistriesConf> {
    load(&ConfPaths::from_env())
}

#[cfg(test)]
mod tests;
