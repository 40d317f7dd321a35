//! Canonical registry names: Docker Hub's normalisation rules applied to a parsed
//! [`Reference`], so `alpine` means `docker.io/library/alpine:latest` as it does for Docker.
//!
//! - no domain → `docker.io` (the reference is a *short name*: see [`is_short_name`]);
//! - `index.docker.io` (Docker's legacy name) → `docker.io`;
//! - on `docker.io`, a one-component path gets the `library/` namespace;
//! - the tag defaults to `latest` only when there is no digest;
//! - `name:tag@digest` keeps both, but the digest is what is fetched, as in Docker.
//!
//! `docker.io` is the registry's *name* (credentials, registries.conf prefixes, image names);
//! the API lives on `registry-1.docker.io` ([`api_host`]).

use std::fmt;

use crate::error::Result;
use crate::reference::Reference;

/// Docker Hub's registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub serves the registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Docker's legacy name for Docker Hub, still found in references and in `config.json` keys.
pub const DOCKER_HUB_LEGACY: &str = "index.docker.io";

/// A fully qualified image name: `docker.io/library/alpine:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Canonical {
    /// `docker.io`, or `host[:port]`.
    pub registry: String,
    /// Repository path on the registry, e.g. `library/alpine`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Canonical {
    /// Applies Docker Hub's rules to a parsed reference.
    pub fn from_reference(r: &Reference) -> Canonical {
        let registry = match r.domain.as_deref() {
            None | Some(DOCKER_HUB_LEGACY) => DOCKER_HUB.to_string(),
            Some(d) => d.to_string(),
        };
        let repository = if registry == DOCKER_HUB && !r.path.contains('/') {
            format!("library/{}", r.path)
        } else {
            r.path.clone()
        };
        let tag = match (&r.tag, &r.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Canonical {
            registry,
            repository,
            tag,
            digest: r.digest.clone(),
        }
    }

    /// Parses `REF` or `docker://REF` and normalises it.
    pub fn parse(s: &str) -> Result<Canonical> {
        let r = Reference::parse(s.strip_prefix("docker://").unwrap_or(s))?;
        Ok(Canonical::from_reference(&r))
    }

    /// What to ask the registry for: the digest when there is one (it wins over a tag, as in
    /// Docker), else the tag.
    pub fn fetch_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `host[:port]` serving this name's registry API.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// `registry/repository`, without tag or digest: the key registries.conf prefixes and
    /// namespaced credentials match against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows: `alpine:latest` for `docker.io/library/alpine:latest`,
    /// `me/app:1` for `docker.io/me/app:1`, the full name elsewhere.
    pub fn familiar(&self) -> String {
        let repo = if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(r) if !r.contains('/') => r.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        format!("{repo}{}", self.suffix())
    }

    /// `:tag`, `@digest` or `:tag@digest`.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

/// The host serving a registry's API: Docker Hub's is `registry-1.docker.io`, any other
/// registry serves its own name.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// True when the user wrote no registry: `alpine`, `me/app:1`. Such a name is only
/// *implicitly* on Docker Hub; registries.conf may say otherwise when the user opts in
/// (see [`crate::registries_conf`]).
pub fn is_short_name(r: &Reference) -> bool {
    r.domain.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Canonical {
        Canonical::parse(s).unwrap()
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn bare_names_are_official_images_on_docker_hub() {
        let c = canon("alpine");
        assert_eq!(c.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(c.registry, "docker.io");
        assert_eq!(c.repository, "library/alpine");
        assert_eq!(c.fetch_reference(), "latest");
        assert_eq!(c.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn user_namespaces_on_docker_hub_get_no_library_prefix() {
        assert_eq!(canon("me/app:1").to_string(), "docker.io/me/app:1");
        assert_eq!(
            canon("docker.io/me/app").to_string(),
            "docker.io/me/app:latest"
        );
        assert_eq!(
            canon("docker.io/alpine").to_string(),
            "docker.io/library/alpine:latest"
        );
    }

    #[test]
    fn index_docker_io_is_docker_hub() {
        assert_eq!(
            canon("index.docker.io/alpine:3").to_string(),
            "docker.io/library/alpine:3"
        );
        assert_eq!(
            canon("index.docker.io/me/app").to_string(),
            "docker.io/me/app:latest"
        );
    }

    #[test]
    fn other_registries_keep_host_port_and_path() {
        let c = canon("localhost:5000/app");
        assert_eq!(
            (c.registry.as_str(), c.repository.as_str()),
            ("localhost:5000", "app")
        );
        assert_eq!(c.api_host(), "localhost:5000");
        assert_eq!(c.to_string(), "localhost:5000/app:latest");
        assert_eq!(
            canon("ghcr.io/o/team/img:v2").to_string(),
            "ghcr.io/o/team/img:v2"
        );
        assert_eq!(
            canon("docker://quay.io/a/b").to_string(),
            "quay.io/a/b:latest"
        );
    }

    #[test]
    fn a_digest_without_tag_gets_no_latest() {
        let c = canon(&format!("alpine@{DIGEST}"));
        assert_eq!(c.tag, None);
        assert_eq!(c.fetch_reference(), DIGEST);
        assert_eq!(c.to_string(), format!("docker.io/library/alpine@{DIGEST}"));
    }

    #[test]
    fn tag_and_digest_are_kept_but_the_digest_is_fetched() {
        let c = canon(&format!("alpine:3.20@{DIGEST}"));
        assert_eq!(c.tag.as_deref(), Some("3.20"));
        assert_eq!(c.fetch_reference(), DIGEST);
        assert_eq!(
            c.to_string(),
            format!("docker.io/library/alpine:3.20@{DIGEST}")
        );
    }

    #[test]
    fn short_names_are_the_ones_without_a_domain() {
        let short = |s| is_short_name(&Reference::parse(s).unwrap());
        assert!(short("alpine"));
        assert!(short("me/app:1"));
        assert!(!short("docker.io/alpine"));
        assert!(!short("localhost/app"));
        assert!(!short("localhost:5000/app"));
    }

    #[test]
    fn familiar_names_drop_what_docker_drops() {
        assert_eq!(canon("alpine").familiar(), "alpine:latest");
        assert_eq!(canon("docker.io/me/app:1").familiar(), "me/app:1");
        assert_eq!(canon("quay.io/a/b:2").familiar(), "quay.io/a/b:2");
    }

    #[test]
    fn api_host_maps_only_docker_hub() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(api_host("registry-1.docker.io"), "registry-1.docker.io");
    }
}
