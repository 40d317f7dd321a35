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

    /// Whether a descriptor's platform fits: os and arch equal, variant equal when we ask for one.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == go_arch(arch)
            && match self.variant.as_deref() {
                None => true,
                v => v == variant,
            }
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
    fn parses_and_matches_platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", Some("v7")));
        assert!(Platform::parse("linux/x86_64")
            .unwrap()
            .matches("linux", "amd64", None));
        assert!(Platform::parse("linux").is_err());
        assert_eq!(
            Platform::host().to_string(),
            format!("linux/{}", go_arch(std::env::consts::ARCH))
        );
    }
}
