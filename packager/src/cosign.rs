//! B12: checking a registry source's cosign signature at build time, with the `cosign` binary.
//!
//! `--cosign-key PUB.pem` (alone, or with `--verify-cosign`) runs
//! `cosign verify --key PUB.pem [flags] HOST/REPO@DIGEST` right after the pull: a signature that
//! does not verify fails the build; a machine without cosign gets a warning that the signature
//! was NOT checked, and the build goes on. `--require-cosign` makes a missing cosign (or a source
//! that cannot carry a cosign signature) an error too. Everything happens before the output is
//! written.
//!
//! What is checked is exactly what was pulled: the image by digest, never by tag, so a tag moved
//! between our pull and cosign's look-up cannot pass off another image. The digest is the one
//! SOURCE pins (`REPO@sha256:…`, possibly an index: cosign signs what it was given, and the pull
//! checked the index and the manifest chosen from it against it), else the manifest the pull
//! chose. So a multi-arch image named by tag needs signatures on its platform manifests
//! (`cosign sign --recursive`), or a SOURCE that pins the signed index digest.
//!
//! The name cosign is given is the logical one (`alpine` is `docker.io/library/alpine`):
//! registries.conf mirrors are not consulted, signatures are looked up where the name lives.
//! Credentials are left to cosign, which reads `~/.docker/config.json` (and its credential
//! helpers) itself; `--creds` would have to go on cosign's command line, visible to every user
//! in `ps`, so it is not passed.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cli::RegistryArgs;
use crate::model::{Digest, Image};
use crate::reference::Reference;
use crate::registry_name::Canonical;
use crate::source::SourceRef;

/// Where to get cosign, for messages.
pub const INSTALL_HINT: &str = "install cosign: https://docs.sigstore.dev/cosign/system_config/installation/ or `go install github.com/sigstore/cosign/v2/cmd/cosign@latest`";

/// The environment variable naming the cosign binary to run (instead of `cosign` on PATH).
pub const COSIGN_ENV: &str = "OCI2BIN_COSIGN";

#[derive(Debug, Args, Default)]
pub struct CosignArgs {
    /// Check SOURCE's cosign signature with --cosign-key before building, by running `cosign
    /// verify` (cosign on PATH, or $OCI2BIN_COSIGN) on the pulled digest: a bad or missing
    /// signature fails the build; without cosign, or for a source that is not a registry, a
    /// warning says the signature was NOT checked and the build goes on. Needs --cosign-key
    /// (keyless verification needs identity flags and internet access)
    #[arg(long, requires = "cosign_key")]
    pub verify_cosign: bool,
    /// As --verify-cosign, but no cosign binary, or a SOURCE that is not a registry reference,
    /// is an error: nothing is written unless the signature verified. Needs --cosign-key
    #[arg(long, requires = "cosign_key")]
    pub require_cosign: bool,
    /// Cosign public key (PEM, as `cosign generate-key-pair` writes cosign.pub; a KMS URI such
    /// as awskms://… is passed to cosign as is) to verify SOURCE with; alone it means
    /// --verify-cosign
    #[arg(long, value_name = "PUB.pem")]
    pub cosign_key: Option<PathBuf>,
    /// With --verify-cosign/--require-cosign: no Rekor transparency-log look-up
    /// (`--insecure-ignore-tlog=true`), for keys that sign with `cosign sign --tlog-upload=false`
    /// and for air-gapped machines; the signature itself is still checked
    #[arg(long, requires = "cosign_key")]
    pub cosign_offline: bool,
}

/// How hard the flags insist on a verified signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--verify-cosign` or `--cosign-key` alone: what cannot be checked is a warning.
    Verify,
    /// `--require-cosign`: what cannot be checked is an error.
    Require,
}

impl CosignArgs {
    /// `None` when no signature is to be checked.
    fn mode(&self) -> Option<(Mode, &Path)> {
        // clap's `requires` makes --verify-cosign and --require-cosign come with a key.
        let key = self.cosign_key.as_deref()?;
        let mode = match self.require_cosign {
            true => Mode::Require,
            false => Mode::Verify,
        };
        Some((mode, key))
    }
}

/// What the check reads from the process environment, passed in so tests choose it.
#[derive(Debug, Clone, Default)]
struct Env {
    /// `$OCI2BIN_COSIGN`.
    cosign: Option<OsString>,
    /// `$PATH`.
    path: Option<OsString>,
}

impl Env {
    fn current() -> Env {
        Env {
            cosign: std::env::var_os(COSIGN_ENV),
            path: std::env::var_os("PATH"),
        }
    }
}

/// Checks `image`'s cosign signature as the flags ask (nothing without them).
pub fn check_source(
    args: &CosignArgs,
    reference: &str,
    image: &Image,
    registry: &RegistryArgs,
    warn: &dyn Fn(&str),
    quiet: bool,
) -> Result<()> {
    check_with(
        args,
        reference,
        &image.source_digest,
        registry,
        warn,
        &Env::current(),
    )
    .map(|verified| {
        if let (Some(v), false) = (verified, quiet) {
            eprintln!("oci2bin: cosign: {v}");
        }
    })
}

/// What can be refused before the source is opened: an unreadable key, and with
/// --require-cosign a SOURCE that is not a registry reference or a missing cosign binary. Called
/// before the pull, a build that cannot end well fails without downloading anything;
/// [`check_source`] checks all of it again (and gives --verify-cosign's warnings), so calling
/// this is optional.
pub fn preflight(args: &CosignArgs, reference: &str, registry: &RegistryArgs) -> Result<()> {
    preflight_with(args, reference, registry, &Env::current())
}

fn preflight_with(
    args: &CosignArgs,
    reference: &str,
    registry: &RegistryArgs,
    env: &Env,
) -> Result<()> {
    let Some((mode, key)) = args.mode() else {
        return Ok(());
    };
    check_key(key)?;
    if mode == Mode::Verify {
        return Ok(());
    }
    let registry_ref = match SourceRef::parse(reference) {
        Ok(SourceRef::Registry { reference }) => reference,
        // Opening the source will say what is wrong with it.
        Err(_) => return Ok(()),
        Ok(_) => bail!(
            "--require-cosign: cosign signatures live in a registry; {reference} is not a registry reference"
        ),
    };
    let short_name = Reference::parse(
        registry_ref
            .strip_prefix("http://")
            .unwrap_or(&registry_ref),
    )
    .is_ok_and(|r| r.domain.is_none());
    if registry.search_registries && short_name {
        bail!("--require-cosign: {}", search_registries_why(reference));
    }
    if let Err(why) = find_cosign(env) {
        bail!("--require-cosign: {why}, so the signature of {reference} cannot be checked; {INSTALL_HINT}");
    }
    Ok(())
}

fn search_registries_why(reference: &str) -> String {
    format!(
        "short name {reference} with --search-registries: which registry it came from is not known; write the full name (HOST/REPO) to check its cosign signature"
    )
}

/// [`check_source`] with the environment given; returns the success note when cosign verified.
fn check_with(
    args: &CosignArgs,
    reference: &str,
    digest: &Digest,
    registry: &RegistryArgs,
    warn: &dyn Fn(&str),
    env: &Env,
) -> Result<Option<String>> {
    let Some((mode, key)) = args.mode() else {
        return Ok(None);
    };
    let key_arg = check_key(key)?;
    // Says (or fails with) why the signature is not checked.
    let cannot = |why: String| -> Result<Option<String>> {
        match mode {
            Mode::Require => bail!("--require-cosign: {why}"),
            Mode::Verify => {
                warn(&format!(
                    "{why}: its cosign signature was NOT checked (--require-cosign makes this an error)"
                ));
                Ok(None)
            }
        }
    };
    let registry_ref = match SourceRef::parse(reference) {
        Ok(SourceRef::Registry { reference }) => reference,
        Ok(_) => {
            return cannot(format!(
                "cosign signatures live in a registry; {reference} is not a registry reference"
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {reference}")),
    };
    let target = Target::new(&registry_ref, digest)?;
    if registry.search_registries && target.short_name {
        // registries.conf may have sent the short name to any of its search registries, and
        // which one answered is not known here.
        return cannot(search_registries_why(reference));
    }
    let cosign = match find_cosign(env) {
        Ok(p) => p,
        Err(why) => {
            return match mode {
                Mode::Require => bail!(
                    "--require-cosign: {why}, so the signature of {} cannot be checked; {INSTALL_HINT}",
                    target.name
                ),
                Mode::Verify => {
                    warn(&format!(
                        "{why}: the cosign signature of {} was NOT checked; {INSTALL_HINT}",
                        target.name
                    ));
                    Ok(None)
                }
            };
        }
    };
    let tls = match (
        &registry.cert_dir,
        target.plain_http || !registry.tls_verify,
    ) {
        (Some(dir), false) => TlsFiles::load(dir)?,
        _ => TlsFiles::default(),
    };
    let ca_bundle = tls.ca_file()?;
    let argv = verify_args(
        &key_arg,
        &target,
        args.cosign_offline,
        registry.tls_verify,
        ca_bundle.as_ref().map(|c| c.path()),
        tls.client.as_ref(),
    );
    run_cosign(&cosign, &argv, &target.name, key)?;
    Ok(Some(format!(
        "signature of {} verified with {}",
        target.name,
        key.display()
    )))
}

/// Checks `--cosign-key` before cosign sees it: a file must exist and be readable (a KMS URI,
/// `scheme://…`, goes to cosign as is). Returns what to pass as `--key`.
fn check_key(key: &Path) -> Result<OsString> {
    if key.to_str().is_some_and(|k| k.contains("://")) {
        return Ok(key.as_os_str().to_owned());
    }
    let meta = std::fs::metadata(key)
        .with_context(|| format!("--cosign-key {}: cannot read the key", key.display()))?;
    if !meta.is_file() {
        bail!("--cosign-key {} is not a file", key.display());
    }
    std::fs::File::open(key)
        .with_context(|| format!("--cosign-key {}: cannot read the key", key.display()))?;
    Ok(key.as_os_str().to_owned())
}

/// The image cosign is to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `HOST/REPO@sha256:…`, the registry's name for it (`docker.io` for Docker Hub).
    name: String,
    /// SOURCE was `http://…`: the registry speaks plain HTTP.
    plain_http: bool,
    /// SOURCE named no registry host.
    short_name: bool,
}

impl Target {
    /// `reference` is a registry reference without `docker://` (`http://` kept); `pulled` the
    /// digest of the manifest the pull chose.
    fn new(reference: &str, pulled: &Digest) -> Result<Target> {
        let plain_http = reference.strip_prefix("http://");
        let r = Reference::parse(plain_http.unwrap_or(reference))
            .with_context(|| format!("cannot read {reference}"))?;
        let name = Canonical::from_reference(&r);
        // A digest SOURCE pins was checked by the pull (an index, and the manifest it led to):
        // it is what the signer signed. Without one, the manifest pulled.
        let digest = r
            .digest
            .as_deref()
            .and_then(|d| Digest::parse(d).ok())
            .unwrap_or(*pulled);
        Ok(Target {
            name: format!("{}/{}@{digest}", name.registry, name.repository),
            plain_http: plain_http.is_some(),
            short_name: r.domain.is_none(),
        })
    }
}

/// `cosign verify …` arguments.
fn verify_args(
    key: &OsStr,
    target: &Target,
    offline: bool,
    tls_verify: bool,
    ca_file: Option<&Path>,
    client: Option<&(PathBuf, PathBuf)>,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["verify".into(), "--key".into(), key.to_owned()];
    if target.plain_http {
        a.push("--allow-http-registry".into());
    }
    if !tls_verify {
        // As our --tls-verify=false: no certificate checks (cosign then also falls back to HTTP).
        a.push("--allow-insecure-registry".into());
    }
    if offline {
        a.push("--insecure-ignore-tlog=true".into());
    }
    if let Some(ca) = ca_file {
        a.push("--registry-cacert".into());
        a.push(ca.as_os_str().to_owned());
    }
    if let Some((cert, key)) = client {
        a.push("--registry-client-cert".into());
        a.push(cert.as_os_str().to_owned());
        a.push("--registry-client-key".into());
        a.push(key.as_os_str().to_owned());
    }
    a.push(target.name.clone().into());
    a
}

/// The cosign binary: `$OCI2BIN_COSIGN` when set, else `cosign` on PATH; `Err` says why there
/// is none.
fn find_cosign(env: &Env) -> std::result::Result<PathBuf, String> {
    if let Some(p) = env.cosign.as_ref().filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return match is_executable(&p) {
            true => Ok(p),
            false => Err(format!(
                "${COSIGN_ENV} ({}) is not an executable file",
                p.display()
            )),
        };
    }
    env.path
        .as_ref()
        .and_then(|path| {
            std::env::split_paths(path)
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| d.join("cosign"))
                .find(|p| is_executable(p))
        })
        .ok_or_else(|| "cosign is not on PATH".to_string())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// CA certificates and a client pair from `--cert-dir` (the layout the pull reads: `*.crt`,
/// `NAME.cert` + `NAME.key`), for cosign's `--registry-cacert` and `--registry-client-cert`/
/// `--registry-client-key` (flags of recent cosign releases). Only an explicit --cert-dir is
/// passed on: cosign does not read certs.d, and giving an older cosign those flags unasked would
/// break a registry its system roots already trust.
#[derive(Debug, Default)]
struct TlsFiles {
    cas: Vec<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    fn load(dir: &Path) -> Result<TlsFiles> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read cert dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        let mut t = TlsFiles::default();
        for p in names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => t.cas.push(p),
                Some("cert") if t.client.is_none() && p.with_extension("key").exists() => {
                    t.client = Some((p.clone(), p.with_extension("key")))
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// One PEM file of every CA: cosign takes a single `--registry-cacert`, so several `*.crt`
    /// are joined in a temporary file that lives as long as the returned value.
    fn ca_file(&self) -> Result<Option<CaFile>> {
        match self.cas.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(CaFile::Given(one.clone()))),
            many => {
                let mut f = tempfile::Builder::new()
                    .prefix("oci2bin-cosign-ca-")
                    .suffix(".crt")
                    .tempfile()
                    .context("cannot create a CA bundle for cosign")?;
                for ca in many {
                    let pem = std::fs::read(ca)
                        .with_context(|| format!("cannot read {}", ca.display()))?;
                    f.write_all(&pem)
                        .and_then(|()| f.write_all(b"\n"))
                        .context("cannot write a CA bundle for cosign")?;
                }
                Ok(Some(CaFile::Joined(f)))
            }
        }
    }
}

/// The CA file given to cosign.
enum CaFile {
    Given(PathBuf),
    Joined(tempfile::NamedTempFile),
}

impl CaFile {
    fn path(&self) -> &Path {
        match self {
            CaFile::Given(p) => p,
            CaFile::Joined(f) => f.path(),
        }
    }
}

/// Runs cosign with `argv`, its output captured; an error names the image, the key and the last
/// line cosign printed on stderr.
fn run_cosign(cosign: &Path, argv: &[OsString], image: &str, key: &Path) -> Result<()> {
    let out = Command::new(cosign)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", cosign.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let why = last_line(&out.stderr)
        .or_else(|| last_line(&out.stdout))
        .unwrap_or_else(|| match out.status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        });
    bail!(
        "cosign verify of {image} with {} failed: {why}",
        key.display()
    )
}

/// The last non-empty line of `bytes`, trimmed and kept short.
fn last_line(bytes: &[u8]) -> Option<String> {
    const MAX: usize = 400;
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    Some(match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    })
}

#[cfg(test)]
mod tests;
