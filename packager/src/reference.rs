//! Image references (`[domain/]path[:tag][@digest]`, the grammar of distribution/reference) and
//! the image name written into the output (`RepoTags`, index annotations).

use std::fmt;

use crate::error::{Error, Result};

/// A parsed image reference such as `alpine:latest` or `localhost:5000/ns/app@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (with port), when the first path component names one.
    pub domain: Option<String>,
    /// Repository path below the domain, e.g. `library/alpine` or `alpine`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| Error::BadReference {
            reference: s.to_string(),
            why: why.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let (algo, hex) = d
                    .split_once(':')
                    .ok_or_else(|| bad("digest without `algo:`"))?;
                if algo.is_empty()
                    || !algo
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"+._-".contains(&c))
                    || hex.len() < 32
                    || !hex.bytes().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(bad("malformed digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                if !valid_tag(tag) {
                    return Err(bad("malformed tag"));
                }
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let mut parts: Vec<&str> = name.split('/').collect();
        let domain = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            let d = parts.remove(0);
            let (host, port) = match d.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (d, None),
            };
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
                || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
            {
                return Err(bad("malformed registry host"));
            }
            Some(d.to_string())
        } else {
            None
        };
        if parts.iter().any(|p| !valid_component(p)) {
            return Err(bad(
                "repository names use lower-case letters, digits and separators",
            ));
        }
        Ok(Reference {
            domain,
            path: parts.join("/"),
            tag,
            digest,
        })
    }

    /// The repository as written (domain included when given).
    pub fn repository(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

fn valid_component(p: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = p.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// The name an output image carries: repository and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub repository: String,
    pub tag: String,
}

impl ImageName {
    /// Parses `NAME[:TAG]` as given to `--tag` (tag defaults to `latest`; no digest).
    pub fn parse(s: &str) -> Result<ImageName> {
        let r = Reference::parse(s)?;
        if r.digest.is_some() {
            return Err(Error::BadReference {
                reference: s.to_string(),
                why: "a name cannot carry a digest".into(),
            });
        }
        let repo = r.repository();
        // Docker's familiar form: `docker.io/library/x` is `x`, `docker.io/me/x` is `me/x`.
        let repo = match repo.strip_prefix("docker.io/") {
            Some(rest) => match rest.strip_prefix("library/") {
                Some(x) if !x.contains('/') => x.to_string(),
                _ => rest.to_string(),
            },
            None => repo,
        };
        Ok(ImageName {
            repository: repo,
            tag: r.tag.unwrap_or_else(|| "latest".into()),
        })
    }

    /// A name derived from something that is not a reference (a directory or file name):
    /// lower-cased, other characters turned into `-`, so Docker accepts it.
    pub fn from_hint(hint: &str, tag: Option<&str>) -> ImageName {
        let mut repo: String = hint
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        // Collapse what the grammar forbids: separators at the ends, `..`, `._` and the like.
        while repo.contains("..")
            || repo.contains("___")
            || repo.contains("._")
            || repo.contains("_.")
        {
            repo = repo
                .replace("..", ".")
                .replace("___", "__")
                .replace("._", ".")
                .replace("_.", ".");
        }
        for pair in [".-", "-.", "_-", "-_"] {
            repo = repo.replace(pair, "-");
        }
        let repo = repo
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string();
        let repo = if repo.is_empty() || !valid_component(&repo) {
            "image".to_string()
        } else {
            repo
        };
        let tag = tag
            .map(|t| {
                let t: String = t
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .take(128)
                    .collect();
                if valid_tag(&t) {
                    t
                } else {
                    format!("_{}", &t[..t.len().min(127)])
                }
            })
            .unwrap_or_else(|| "latest".to_string());
        ImageName {
            repository: repo,
            tag,
        }
    }

    /// `busybox:latest`: what `RepoTags` and `docker images` show.
    pub fn familiar(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// `docker.io/library/busybox:latest`: the fully qualified name containerd and Docker ≥25
    /// write into `io.containerd.image.name`.
    pub fn full(&self) -> String {
        let first = self.repository.split('/').next().unwrap_or("");
        let has_domain = self.repository.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let repo = if has_domain {
            self.repository.clone()
        } else if self.repository.contains('/') {
            format!("docker.io/{}", self.repository)
        } else {
            format!("docker.io/library/{}", self.repository)
        };
        format!("{repo}:{}", self.tag)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_forms_docker_accepts() {
        let r = Reference::parse("alpine:latest").unwrap();
        assert_eq!(
            (r.domain, r.path.as_str(), r.tag.as_deref()),
            (None, "alpine", Some("latest"))
        );
        let r = Reference::parse("localhost:5000/ns/app").unwrap();
        assert_eq!(r.domain.as_deref(), Some("localhost:5000"));
        assert_eq!((r.path.as_str(), r.tag), ("ns/app", None));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("ghcr.io/o/i:1.2@{d}")).unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (Some("1.2"), Some(d.as_str()))
        );
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "Alpine",
            "foo:/path",
            "a//b",
            "-a",
            "a:b:c",
            "x@sha256:12",
            "a:-tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names_from_hints_are_valid_references() {
        assert_eq!(
            ImageName::from_hint("My Rootfs", None).familiar(),
            "my-rootfs:latest"
        );
        assert_eq!(
            ImageName::from_hint("__", Some("1.0")).familiar(),
            "image:1.0"
        );
        for hint in ["a..b", "x._y", "Ünïcode", "rootfs", "a-_-b"] {
            let n = ImageName::from_hint(hint, Some("t"));
            assert!(Reference::parse(&n.familiar()).is_ok(), "{hint} → {n}");
        }
    }

    #[test]
    fn full_names_follow_docker_normalisation() {
        let n = |s| ImageName::parse(s).unwrap().full();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("me/app:1"), "docker.io/me/app:1");
        assert_eq!(n("localhost:5000/app:2"), "localhost:5000/app:2");
        assert_eq!(
            ImageName::parse("docker.io/library/busybox:1")
                .unwrap()
                .familiar(),
            "busybox:1"
        );
        assert_eq!(
            ImageName::parse("docker.io/me/app").unwrap().familiar(),
            "me/app:latest"
        );
    }
}
