//! S4: the packages an image holds, as SPDX 2.3 or CycloneDX 1.5 JSON.
//!
//! The layers are streamed in order, keeping only package databases, Debian copyright files and
//! os-release ([`layers`]); whiteouts apply as in the container, so a package a later layer
//! removed is not listed. Each package is attributed to the layer since which it has been
//! installed at its current version (not merely the last layer that rewrote the database).

pub mod apk;
pub mod control;
pub mod cyclonedx;
pub mod dpkg;
pub mod ids;
pub mod layers;
pub mod license;
pub mod rpm;
pub mod spdx;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::cli::RegistryArgs;
use crate::model::{Digest, HashingReader, Image};
use crate::registry::pull::Quiet;
use crate::source::{self, SourceOptions};

pub use ids::{image_purl, package_key, purl, uuid_from};
use layers::View;

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// A file built by oci2bin, or any SOURCE the build takes (oci:DIR, docker-archive:FILE,
    /// a registry reference, ...)
    #[arg(value_name = "FILE|SOURCE")]
    pub source: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Spdx)]
    pub format: Format,
    /// Write the document here instead of stdout
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Platform to pick from a multi-arch index (default: this host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print nothing on stderr on success
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// SPDX 2.3 JSON
    Spdx,
    /// CycloneDX 1.5 JSON
    Cyclonedx,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer {digest}: {source}")]
    Layer { digest: String, source: io::Error },
    #[error("layer {digest}: its bytes do not match the digest ({got} read)")]
    Digest { digest: String, got: String },
    #[error("{path} is {size} bytes, more than the {limit} an sbom reads")]
    TooBig { path: String, size: u64, limit: u64 },
    #[error("rpm database {db}: {reason}")]
    Rpm { db: String, reason: String },
    #[error(
        "rpm database {db} found but `{rpm}` is not installed to read it: install rpm \
         (apt-get install rpm, dnf install rpm)"
    )]
    RpmMissing { db: String, rpm: String },
}

/// Which package manager's database listed a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deb,
    Apk,
    Rpm,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Deb, Kind::Apk, Kind::Rpm];

    /// The purl type.
    pub fn purl_type(self) -> &'static str {
        match self {
            Kind::Deb => "deb",
            Kind::Apk => "apk",
            Kind::Rpm => "rpm",
        }
    }

    fn touches(self, path: &str) -> bool {
        match self {
            Kind::Deb => dpkg::touches(path),
            Kind::Apk => apk::touches(path),
            Kind::Rpm => rpm::touches(path),
        }
    }

    fn packages(self, view: &View) -> Result<Vec<Package>, Error> {
        Ok(match self {
            Kind::Deb => dpkg::packages(view),
            Kind::Apk => apk::packages(view),
            Kind::Rpm => rpm::packages(view)?,
        })
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub kind: Kind,
    pub name: String,
    /// As the database writes it (dpkg's and rpm's with their epoch, `E:V-R`).
    pub version: String,
    pub arch: Option<String>,
    /// The source package (dpkg's `Source`, apk's origin, rpm's source rpm).
    pub source_name: Option<String>,
    pub source_version: Option<String>,
    /// Licenses as stated (DEP-5 short names, apk's and rpm's expressions); all apply.
    pub licenses: Vec<String>,
    /// Texts of licenses the copyright file spells out, by stated name.
    pub license_texts: BTreeMap<String, String>,
    pub supplier: Option<String>,
    /// The database that lists it, e.g. `/var/lib/dpkg/status`.
    pub db: String,
    /// Index of the layer since which it has been installed at this version.
    pub layer: usize,
}

/// The fields of os-release that name the distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            match k.trim() {
                "ID" => os.id = Some(v),
                "VERSION_ID" => os.version_id = Some(v),
                "PRETTY_NAME" => os.pretty_name = Some(v),
                _ => {}
            }
        }
        os
    }

    /// purl's `distro` qualifier, as syft writes it: `debian-12`, `alpine-3.19.1`.
    pub fn distro(&self) -> Option<String> {
        Some(format!(
            "{}-{}",
            self.id.as_ref()?,
            self.version_id.as_ref()?
        ))
    }
}

/// What an SBOM describes.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The image's name (`familiar` form) and manifest digest.
    pub name: String,
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    pub layers: Vec<Digest>,
    pub os: OsRelease,
    /// Sorted by kind, name, architecture.
    pub packages: Vec<Package>,
}

/// Whether a change at `changed` (a write at it, or the removal of it and all below) can touch
/// `path`.
pub fn related(changed: &str, path: &str) -> bool {
    changed.is_empty()
        || changed == path
        || path
            .strip_prefix(changed)
            .is_some_and(|r| r.starts_with('/'))
        || changed
            .strip_prefix(path)
            .is_some_and(|r| r.starts_with('/'))
}

/// Reads the image's layers and lists its packages.
pub fn scan(image: &Image) -> Result<Inventory, Error> {
    let mut view = View::default();
    // (kind, name, arch) → (version, layer since which it has been installed at it).
    // What each database lists after the layers read so far, every package with the layer
    // since which it has been installed at its version.
    let mut listed: BTreeMap<Kind, Vec<Package>> = BTreeMap::new();
    for (i, desc) in image.layers.iter().enumerate() {
        let digest = desc.digest.to_string();
        let layer_err = |e: io::Error| Error::Layer {
            digest: digest.clone(),
            source: e,
        };
        let blob = image.blobs.open(desc).map_err(|e| Error::Layer {
            digest: digest.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        // Hashed as read, to check the layer's digest once it is read through.
        let mut raw = HashingReader::new(blob);
        let changed = {
            let mut tar = layers::decompress(BufReader::with_capacity(1 << 16, &mut raw))
                .map_err(layer_err)?;
            let changed = layers::apply(&mut view, i, &mut tar, &digest)?;
            // Read to the end, so every byte is hashed.
            io::copy(&mut tar, &mut io::sink()).map_err(layer_err)?;
            changed
        };
        io::copy(&mut raw, &mut io::sink()).map_err(layer_err)?;
        let (got, _) = raw.finish();
        if got != desc.digest {
            return Err(Error::Digest {
                digest,
                got: got.to_string(),
            });
        }
        for kind in Kind::ALL {
            if !changed.iter().any(|c| kind.touches(c)) {
                continue;
            }
            let before = listed.remove(&kind).unwrap_or_default();
            let installed: HashMap<_, _> = before
                .iter()
                .map(|q| ((&q.name, &q.arch), (&q.version, q.layer)))
                .collect();
            let mut now = kind.packages(&view)?;
            for p in &mut now {
                // A package still at the same version keeps the layer that installed it.
                p.layer = match installed.get(&(&p.name, &p.arch)) {
                    Some((v, l)) if **v == p.version => *l,
                    _ => i,
                };
            }
            listed.insert(kind, now);
        }
    }
    let os = view
        .file("etc/os-release")
        .or_else(|| view.file("usr/lib/os-release"))
        .map(|d| OsRelease::parse(&String::from_utf8_lossy(d)))
        .unwrap_or_default();
    // The last layer that touched a database left its list final: read no database again.
    let mut packages: Vec<Package> = listed.into_values().flatten().collect();
    for p in packages.iter_mut().filter(|p| p.kind == Kind::Deb) {
        (p.licenses, p.license_texts) = dpkg::licenses(&view, &p.name);
    }
    packages.sort_by(|a, b| (a.kind, &a.name, &a.arch).cmp(&(b.kind, &b.name, &b.arch)));
    Ok(Inventory {
        name: image.name.familiar(),
        repository: image.name.repository.clone(),
        tag: image.name.tag.clone(),
        digest: image.manifest.digest,
        layers: image.layers.iter().map(|l| l.digest).collect(),
        os,
        packages,
    })
}

/// The document's time: SOURCE_DATE_EPOCH when set (reproducible documents), else now.
fn created() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(crate::metadata::now);
    crate::metadata::rfc3339(secs)
}

/// `oci2bin sbom`.
pub fn command(a: SbomArgs) -> Result<()> {
    let platform = a
        .platform
        .as_deref()
        .map(crate::platform::Platform::parse)
        .transpose()
        .context("--platform")?;
    let reference = crate::cli::file_or_source(&a.source);
    let warn = |m: &str| eprintln!("oci2bin: warning: {m}");
    let opts = SourceOptions {
        platform,
        source_date_epoch: None,
        warn: &warn,
        registry: a.registry.pull_options()?,
        progress: &Quiet,
    };
    let opened =
        source::open(&reference, &opts).with_context(|| format!("cannot read {}", a.source))?;
    let inv = scan(&opened.image).with_context(|| format!("cannot read {}", a.source))?;
    let when = created();
    let doc = match a.format {
        Format::Spdx => serde_json::to_vec_pretty(&spdx::document(&inv, &when))?,
        Format::Cyclonedx => serde_json::to_vec_pretty(&cyclonedx::document(&inv, &when))?,
    };
    match &a.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tmp.write_all(&doc)?;
            tmp.write_all(b"\n")?;
            // A temporary file is 0600; a document is for sharing, as any file the shell makes.
            use std::os::unix::fs::PermissionsExt;
            let old = rustix::process::umask(rustix::fs::Mode::empty());
            rustix::process::umask(old);
            let mode = 0o666 & !old.bits();
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let mut out = io::stdout().lock();
            out.write_all(&doc)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
    }
    if !a.quiet {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &inv.packages {
            *counts.entry(p.kind.purl_type()).or_default() += 1;
        }
        let by: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let to = a
            .output
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default();
        eprintln!(
            "oci2bin: sbom: {} packages ({}) in {}@{}{to}",
            inv.packages.len(),
            if by.is_empty() {
                "none found".to_string()
            } else {
                by.join(", ")
            },
            inv.name,
            inv.digest
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
