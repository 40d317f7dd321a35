//! Image sources: each turns a SOURCE string into the same [`Image`](crate::model::Image).
//!
//! Transports, skopeo-style: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:NAME:TAG]`, `dir:ROOTFS`. A bare reference (`alpine:latest`) or
//! `docker://REF` means a registry pull ([`registry`]); `http://HOST[:PORT]/REPO[:TAG]` is a pull
//! over plain HTTP only.

pub mod daemon;
pub mod docker_archive;
pub mod layout;
pub mod registry;
pub mod rootfs;
pub mod tarindex;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::Image;
use crate::platform::Platform;
use crate::reference::Reference;

/// A parsed SOURCE argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// An OCI image layout directory, optionally naming a tag.
    OciDir { path: PathBuf, tag: Option<String> },
    /// A tar file holding an OCI image layout.
    OciArchive { path: PathBuf, tag: Option<String> },
    /// A `docker save` archive, optionally naming one of its `RepoTags`.
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    /// A root filesystem directory, packed into one layer.
    Rootfs { path: PathBuf },
    /// An image in a running Docker Engine (`docker-daemon:NAME[:TAG]`).
    DockerDaemon { reference: String },
    /// A registry reference (bare, or after `docker://`; `http://` kept for plain HTTP).
    Registry { reference: String },
}

const TRANSPORTS: &[&str] = &[
    "oci",
    "oci-archive",
    "docker-archive",
    "dir",
    "docker",
    "docker-daemon",
];

impl SourceRef {
    pub fn parse(s: &str) -> Result<SourceRef> {
        if let Some(r) = s.strip_prefix("docker://") {
            return Ok(SourceRef::Registry {
                reference: r.to_string(),
            });
        }
        // A registry spoken to over plain HTTP only: the reference keeps its scheme.
        if s.starts_with("http://") {
            return Ok(SourceRef::Registry {
                reference: s.to_string(),
            });
        }
        let need = |p: &str| {
            if p.is_empty() {
                Err(Error::Invalid(format!("`{s}` names no path")))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        // skopeo splits `transport:path:reference` at the first colon after the transport.
        let split = |rest: &str| match rest.split_once(':') {
            Some((p, t)) if !t.is_empty() => (p.to_string(), Some(t.to_string())),
            Some((p, _)) => (p.to_string(), None),
            None => (rest.to_string(), None),
        };
        if let Some((transport, rest)) = s.split_once(':') {
            match transport {
                "oci" | "oci-archive" => {
                    let (p, tag) = split(rest);
                    let path = need(&p)?;
                    return Ok(if transport == "oci" {
                        SourceRef::OciDir { path, tag }
                    } else {
                        SourceRef::OciArchive { path, tag }
                    });
                }
                "docker-archive" => {
                    let (p, reference) = split(rest);
                    return Ok(SourceRef::DockerArchive {
                        path: need(&p)?,
                        reference,
                    });
                }
                "dir" => return Ok(SourceRef::Rootfs { path: need(rest)? }),
                "docker-daemon" => {
                    if rest.is_empty() {
                        return Err(Error::Invalid(format!("`{s}` names no image")));
                    }
                    return Ok(SourceRef::DockerDaemon {
                        reference: rest.to_string(),
                    });
                }
                _ => {}
            }
        }
        match Reference::parse(s) {
            Ok(_) => Ok(SourceRef::Registry {
                reference: s.to_string(),
            }),
            Err(e) => match s.split_once(':') {
                Some((t, _))
                    if !t.is_empty()
                        && !TRANSPORTS.contains(&t)
                        && t.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"-+.".contains(&c)) =>
                {
                    Err(Error::UnknownTransport {
                        transport: t.to_string(),
                        reference: s.to_string(),
                    })
                }
                _ => Err(e),
            },
        }
    }

    /// The default output file name (B1): the reference's last path component plus its tag, with
    /// `/`, `:` and `@` turned into `_`. `repo_tag` is a docker-archive's first `RepoTags` entry.
    pub fn output_name(&self, repo_tag: Option<&str>) -> PathBuf {
        let with_tag = |p: &Path, tag: &Option<String>| {
            let base = base_name(p);
            match tag {
                Some(t) => format!("{base}:{t}"),
                None => base,
            }
        };
        let hint = match self {
            SourceRef::OciDir { path, tag } | SourceRef::OciArchive { path, tag } => {
                let stemmed = if matches!(self, SourceRef::OciArchive { .. }) {
                    path.with_extension("")
                } else {
                    path.clone()
                };
                with_tag(&stemmed, tag)
            }
            SourceRef::DockerArchive { path, reference } => match reference.as_deref().or(repo_tag)
            {
                Some(r) => r.to_string(),
                None => base_name(&path.with_extension("")),
            },
            SourceRef::Rootfs { path } => base_name(path),
            SourceRef::DockerDaemon { reference } => {
                repo_tag.map_or_else(|| daemon::with_default_tag(reference), str::to_string)
            }
            SourceRef::Registry { reference } => reference.clone(),
        };
        PathBuf::from(file_name_from(&hint))
    }
}

/// The last component of a path, resolving `.`/`..` against the current directory.
fn base_name(p: &Path) -> String {
    if let Some(n) = p.file_name() {
        return n.to_string_lossy().into_owned();
    }
    std::path::absolute(p)
        .ok()
        .and_then(|a| a.canonicalize().ok())
        .and_then(|a| a.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "image".to_string())
}

/// `ghcr.io/o/app:1@sha256:…` → `app_1_sha256_…`.
pub fn file_name_from(reference: &str) -> String {
    // The last path component; a `/` inside the digest part cannot occur.
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let name: String = last
        .chars()
        .map(|c| if matches!(c, ':' | '@' | '/') { '_' } else { c })
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        "image".to_string()
    } else {
        name
    }
}

/// What every source may need besides its reference.
pub struct SourceOptions<'a> {
    /// `--platform`; the host's when absent.
    pub platform: Option<Platform>,
    /// SOURCE_DATE_EPOCH, for sources that create content (dir:).
    pub source_date_epoch: Option<u64>,
    /// Where non-fatal warnings go.
    pub warn: &'a dyn Fn(&str),
    /// Registry pulls: TLS, credentials, parallelism, blob cache.
    pub registry: registry::RegistryOptions,
    /// Shows layer downloads.
    pub progress: &'a dyn crate::registry::pull::Progress,
}

/// An opened source: the image and the default output name.
pub struct Opened {
    pub image: Image,
    pub default_output: PathBuf,
}

/// For `push --all`: the multi-platform index a source names, as stored, with an image for each
/// manifest it lists; `None` when the source holds one image (or cannot hold an index).
pub fn open_all(
    reference: &str,
    opts: &SourceOptions,
) -> Result<Option<(crate::registry::push::IndexBytes, Vec<Image>)>> {
    match SourceRef::parse(reference)? {
        SourceRef::OciDir { path, tag } => {
            layout::open_dir_all(&path, tag.as_deref(), reference, opts)
        }
        SourceRef::OciArchive { path, tag } => {
            layout::open_archive_all(&path, tag.as_deref(), reference, opts)
        }
        SourceRef::Registry { reference: r } => registry::open_all(&r, opts),
        _ => Ok(None),
    }
}

/// Opens any source.
pub fn open(reference: &str, opts: &SourceOptions) -> Result<Opened> {
    let src = SourceRef::parse(reference)?;
    match &src {
        SourceRef::OciDir { path, tag } => {
            let image = layout::open_dir(path, tag.as_deref(), reference, opts)?;
            Ok(Opened {
                image,
                default_output: src.output_name(None),
            })
        }
        SourceRef::OciArchive { path, tag } => {
            let image = layout::open_archive(path, tag.as_deref(), reference, opts)?;
            Ok(Opened {
                image,
                default_output: src.output_name(None),
            })
        }
        SourceRef::DockerArchive { path, reference: r } => {
            let (image, repo_tag) = docker_archive::open(path, r.as_deref(), reference)?;
            let default_output = src.output_name(repo_tag.as_deref());
            Ok(Opened {
                image,
                default_output,
            })
        }
        SourceRef::Rootfs { path } => {
            let image = rootfs::open(path, reference, opts)?;
            Ok(Opened {
                image,
                default_output: src.output_name(None),
            })
        }
        SourceRef::DockerDaemon { reference: name } => {
            let (image, repo_tag) = daemon::open(name, reference, &std::env::temp_dir())?;
            let default_output = src.output_name(repo_tag.as_deref());
            Ok(Opened {
                image,
                default_output,
            })
        }
        SourceRef::Registry { reference: r } => {
            let image = registry::open(r, reference, opts)?;
            Ok(Opened {
                image,
                default_output: src.output_name(None),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SourceRef {
        SourceRef::parse(s).unwrap()
    }

    #[test]
    fn parses_every_transport() {
        assert_eq!(
            p("oci:/x/busybox:1.36"),
            SourceRef::OciDir {
                path: "/x/busybox".into(),
                tag: Some("1.36".into())
            }
        );
        assert_eq!(
            p("oci:layout"),
            SourceRef::OciDir {
                path: "layout".into(),
                tag: None
            }
        );
        assert_eq!(
            p("oci-archive:/t/a.tar:v1"),
            SourceRef::OciArchive {
                path: "/t/a.tar".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            p("docker-archive:/t/s.tar:busybox:latest"),
            SourceRef::DockerArchive {
                path: "/t/s.tar".into(),
                reference: Some("busybox:latest".into())
            }
        );
        assert_eq!(
            p("dir:/tmp/root:fs"),
            SourceRef::Rootfs {
                path: "/tmp/root:fs".into()
            }
        );
        assert_eq!(
            p("alpine:latest"),
            SourceRef::Registry {
                reference: "alpine:latest".into()
            }
        );
        assert_eq!(
            p("http://127.0.0.1:5000/i:1"),
            SourceRef::Registry {
                reference: "http://127.0.0.1:5000/i:1".into()
            }
        );
        assert_eq!(
            p("docker://ghcr.io/o/i"),
            SourceRef::Registry {
                reference: "ghcr.io/o/i".into()
            }
        );
    }

    #[test]
    fn unknown_transports_and_bad_references_are_clear_errors() {
        let e = SourceRef::parse("ftp:/x").unwrap_err().to_string();
        assert!(e.contains("unknown transport `ftp`"), "{e}");
        let e = SourceRef::parse("oci:").unwrap_err().to_string();
        assert!(e.contains("names no path"), "{e}");
        let e = SourceRef::parse("Not A Ref").unwrap_err().to_string();
        assert!(e.contains("not a valid image reference"), "{e}");
        assert_eq!(
            p("docker-daemon:x:y"),
            SourceRef::DockerDaemon {
                reference: "x:y".into()
            }
        );
        assert!(SourceRef::parse("docker-daemon:")
            .unwrap_err()
            .to_string()
            .contains("names no image"));
    }

    #[test]
    fn output_names_follow_the_reference() {
        let n = |s: &str, tag: Option<&str>| p(s).output_name(tag).to_string_lossy().into_owned();
        assert_eq!(n("alpine:latest", None), "alpine_latest");
        assert_eq!(n("docker://ghcr.io/o/app:1.2", None), "app_1.2");
        assert_eq!(n("http://localhost:5000/o/app:3", None), "app_3");
        assert_eq!(n("oci:/x/busybox:1.36", None), "busybox_1.36");
        assert_eq!(n("oci:/x/busybox/", None), "busybox");
        assert_eq!(n("oci-archive:/x/img.tar:v2", None), "img_v2");
        assert_eq!(n("dir:/tmp/rootfs", None), "rootfs");
        assert_eq!(
            n(
                "docker-archive:/t/save.tar",
                Some("docker.io/library/nginx:1.25")
            ),
            "nginx_1.25"
        );
        assert_eq!(n("docker-archive:/t/save.tar", None), "save");
        assert_eq!(
            n("docker-archive:/t/save.tar:me/app:2", Some("other:1")),
            "app_2"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("ghcr.io/o/app@{d}"), None),
            format!("app_sha256_{}", "a".repeat(64))
        );
    }
}
