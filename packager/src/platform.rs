//! Platforms (`os/arch[/variant]`) for choosing a manifest out of a multi-arch index.

use std::fmt;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this packager runs on, in GOOS/GOARCH terms.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: go_arch(std::env::consts::ARCH).into(),
            variant: None,
        }
    }

    /// Parses `--platform os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Invalid(format!(
                "platform `{s}` is not os/arch[/variant]"
            )));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: go_arch(parts[1]).to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// Whether a descriptor's platform fits: os and arch equal, and the variant equal after
    /// containerd's normalisation (`arm64` is `arm64/v8`, `arm` is `arm/v7`, `amd64/v1` is
    /// `amd64`) when we ask for one; without one, any variant fits.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == go_arch(arch)
            && (self.variant.is_none()
                || normal_variant(&self.architecture, self.variant.as_deref())
                    == normal_variant(go_arch(arch), variant))
    }

    /// The best fit among candidates `(os, arch, variant)`: the first whose normalised variant is
    /// the one asked for (or the architecture's default when none is asked), else the first that
    /// fits at all. An index listing `linux/arm/v6` and `linux/arm/v7` thus gives v7 for
    /// `linux/arm`, as containerd does.
    pub fn best<'a>(
        &self,
        candidates: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>)>,
    ) -> Option<usize> {
        let want = normal_variant(&self.architecture, self.variant.as_deref());
        let mut fallback = None;
        for (i, (os, arch, variant)) in candidates.into_iter().enumerate() {
            if !self.matches(os, arch, variant) {
                continue;
            }
            if normal_variant(go_arch(arch), variant) == want {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }
}

/// containerd's variant normalisation: `8`/`v8`/none on arm64 → `v8`, none on arm → `v7`,
/// `v1` on amd64 → none, a bare number → `vN`.
fn normal_variant(arch: &str, variant: Option<&str>) -> Option<String> {
    let v = variant.filter(|v| !v.is_empty()).map(|v| {
        if v.bytes().all(|c| c.is_ascii_digit()) {
            format!("v{v}")
        } else {
            v.to_string()
        }
    });
    match arch {
        "arm64" => Some(v.unwrap_or_else(|| "v8".into())),
        "arm" => Some(v.unwrap_or_else(|| "v7".into())),
        "amd64" => v.filter(|v| v != "v1"),
        _ => v,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Maps uname/Rust architecture names to Go's, which image configs use.
pub fn go_arch(a: &str) -> &str {
    match a {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64" | "powerpc64le" => "ppc64le",
        "riscv64gc" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_fit_prefers_the_default_variant() {
        let idx = [
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
        ];
        let best = |p: &str| Platform::parse(p).unwrap().best(idx);
        assert_eq!(best("linux/arm"), Some(2));
        assert_eq!(best("linux/arm/v6"), Some(1));
        assert_eq!(best("linux/arm64"), Some(3));
        assert_eq!(best("linux/amd64"), Some(0));
        assert_eq!(best("linux/s390x"), None);
    }

    #[test]
    fn parses_and_matches_platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", Some("v7")));
        assert!(Platform::parse("linux/x86_64")
            .unwrap()
            .matches("linux", "amd64", None));
        assert!(Platform::parse("linux").is_err());
        // containerd: arm64 means arm64/v8, either way round.
        assert!(Platform::parse("linux/arm64/v8")
            .unwrap()
            .matches("linux", "arm64", None));
        assert!(Platform::parse("linux/aarch64/8")
            .unwrap()
            .matches("linux", "arm64", Some("v8")));
        assert!(Platform::parse("linux/amd64/v1")
            .unwrap()
            .matches("linux", "amd64", None));
        assert!(!Platform::parse("linux/arm/v6")
            .unwrap()
            .matches("linux", "arm", None));
        assert_eq!(
            Platform::host().to_string(),
            format!("linux/{}", go_arch(std::env::consts::ARCH))
        );
    }
}
