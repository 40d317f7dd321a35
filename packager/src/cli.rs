//! The command line: `oci2bin [OPTIONS] SOURCE [OUTPUT]`, `oci2bin inspect FILE [--json]`,
//! `oci2bin cache ls|rm|prune`, `oci2bin login|logout`, `oci2bin push FILE REF`, the
//! container commands `ps`, `stop`, `kill`, `logs`, `rm`, `port`, `exec` (`inspect NAME` too) and
//! `oci2bin volume create|ls|inspect|rm|prune`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::cache::{self, Cache, Outcome, Prune};
use crate::credentials::{self, CredOptions, CredSources, Credential, Secret};
use crate::mutate::{self, ConfigEdits};
use crate::platform::Platform;
use crate::reference::ImageName;
use crate::registry::bars::Bars;
use crate::registry::pull::{Progress, Quiet};
use crate::registry::transport::TlsOptions;
use crate::sink::polyglot::{self, WriteOptions};
use crate::source::registry::RegistryOptions;
use crate::source::{self, SourceOptions};
use crate::{cleanup, containers, inspect, loader_bin, trust, volumes};

#[derive(Debug, Parser)]
#[command(
    name = "oci2bin",
    version,
    about = "Turn an OCI/Docker image into one executable file that is also an image archive",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a built file holds: image, platform, layers, run config, build metadata; or,
    /// for a container's name or ID, its state as JSON
    Inspect {
        /// A file written by oci2bin, or a container (a path that exists is a file)
        #[arg(value_name = "FILE|NAME")]
        file: PathBuf,
        /// Print the metadata as JSON
        #[arg(long)]
        json: bool,
        /// What FILE|NAME is, when both could be meant: file or container
        #[arg(long = "type", value_name = "TYPE", value_parser = ["file", "container"])]
        kind: Option<String>,
    },
    /// Look after the cache of extracted root filesystems the files run from
    Cache(CacheArgs),
    /// Store credentials for a registry in podman's auth.json (mode 0600)
    Login(LoginArgs),
    /// Remove credentials that login stored
    Logout(LogoutArgs),
    /// Upload the image a built file holds (or any SOURCE) to a registry; prints REF@DIGEST
    Push(PushArgs),
    /// List containers (named and detached runs): running ones, or all with -a
    Ps(containers::commands::PsArgs),
    /// Stop containers: their stop signal, then SIGKILL after the timeout
    Stop(containers::commands::StopArgs),
    /// Send a signal to containers (SIGKILL by default)
    Kill(containers::commands::KillArgs),
    /// Print a detached container's output
    Logs(containers::commands::LogsArgs),
    /// Remove containers' state and log
    Rm(containers::commands::RmArgs),
    /// Run a command in a running container
    Exec(containers::commands::ExecArgs),
    /// List a container's published ports, or the host side of one (CTRPORT[/PROTO])
    Port(containers::commands::PortArgs),
    /// Manage named volumes (-v NAME:/path): create, ls, inspect, rm, prune
    Volume(volumes::VolumeArgs),
    /// Create an ECDSA P-256 key pair for `sign`: PREFIX.key (private, mode 0600) and PREFIX.pub
    Keygen {
        /// Where the keys go: PREFIX.key and PREFIX.pub
        #[arg(value_name = "PREFIX", default_value = "oci2bin")]
        prefix: PathBuf,
    },
    /// Sign a built file (ECDSA P-256 over every byte before the signature): replaces any
    /// signature it has; `tar`, `docker load` and skopeo read it as before
    Sign(SignArgs),
    /// Check a file's signature: exit 0 valid, 1 not signed, 2 invalid (with the reason)
    Verify(VerifyArgs),
    /// List the packages an image holds (dpkg, apk, rpm databases) as SPDX 2.3 or CycloneDX 1.5
    /// JSON, read straight from its layers
    Sbom(crate::sbom::SbomArgs),
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key: PEM, PKCS#8 (also encrypted: the passphrase is asked for, or taken from
    /// $OCI2BIN_KEY_PASSPHRASE) or SEC1 (`openssl ecparam -genkey`)
    #[arg(long, value_name = "PRIV.pem")]
    pub key: PathBuf,
    /// The file to sign
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Write the signed file here (default: replace FILE)
    #[arg(long, value_name = "F")]
    pub out: Option<PathBuf>,
    /// Read the passphrase of an encrypted key from this file
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signer's public key (PEM, `BEGIN PUBLIC KEY`)
    #[arg(long, value_name = "PUB.pem")]
    pub key: PathBuf,
    /// The file to check
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Print the verdict as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A file oci2bin wrote, or any SOURCE a build takes (oci:DIR[:TAG], oci-archive:FILE,
    /// docker-archive:FILE, docker://REF)
    #[arg(value_name = "FILE|SOURCE")]
    pub source: String,
    /// Where to push: [docker://]HOST[:PORT]/REPO[:TAG] (tag `latest` when left out;
    /// http://HOST[:PORT]/REPO[:TAG] for plain HTTP)
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// When the source names a multi-platform index (docker://REF, oci:DIR:TAG,
    /// oci-archive:FILE:TAG), push every image it lists and then the index itself, byte for
    /// byte; without it, only the host's image is pushed
    #[arg(long)]
    pub all: bool,
    /// Print only REF@DIGEST (no progress notes on stderr)
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: host[:port], optionally /namespace (docker.io for Docker Hub)
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    /// User name (asked for when left out and stdin is a terminal)
    #[arg(short, long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password from stdin (one trailing newline is dropped); without it, the password
    /// is asked for on the terminal, without echo
    #[arg(long)]
    pub password_stdin: bool,
    /// The auth file to write (default: $REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, else ~/.config/containers/auth.json)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Check the credentials with the registry before storing them; --verify=false stores them
    /// unchecked
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry whose credentials to remove
    #[arg(
        value_name = "REGISTRY",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub registry: Option<String>,
    /// Remove the credentials of every registry from the auth file
    #[arg(long)]
    pub all: bool,
    /// The auth file to edit (default: as for login)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

/// How to talk to registries (TLS, credentials, short names), flattened into the build and
/// push commands.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Registries: require HTTPS with verified certificates (=false: skip verification and fall
    /// back to plain HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Registries: CA certificates (*.crt) and a client pair (NAME.cert + NAME.key), instead of
    /// /etc/containers/certs.d/HOST:PORT/
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Credentials for the registry, USER[:PASSWORD] (the password is asked for, without echo,
    /// when left out and stdin is a terminal)
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub creds: Option<String>,
    /// Read credentials from this auth file alone (default: $REGISTRY_AUTH_FILE, else podman's
    /// auth.json files, then Docker's config.json)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Resolve a short name (`alpine`) through registries.conf's aliases and
    /// unqualified-search-registries instead of Docker Hub
    #[arg(long)]
    pub search_registries: bool,
    /// Registries: a connection that sends nothing for SECS seconds is dropped and the request
    /// retried (a blob resumes where it stopped)
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_timeout: u64,
}

impl Default for RegistryArgs {
    /// As with no flags: TLS verified.
    fn default() -> Self {
        RegistryArgs {
            tls_verify: true,
            cert_dir: None,
            creds: None,
            authfile: None,
            search_registries: false,
            registry_timeout: 60,
        }
    }
}

impl RegistryArgs {
    /// `--tls-verify` and `--cert-dir`.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
        }
    }

    /// Credential options; asks for the password of `--creds USER` now, once.
    pub fn cred_options(&self) -> Result<CredOptions> {
        Ok(CredOptions::from_env(
            self.creds.as_deref(),
            self.authfile.clone(),
        )?)
    }

    /// `--registry-timeout` for reads; connecting gets half of it (at least 1 s).
    pub fn timeouts(&self) -> crate::registry::transport::Timeouts {
        crate::registry::transport::Timeouts {
            connect: std::time::Duration::from_secs((self.registry_timeout / 2).max(1)),
            read: std::time::Duration::from_secs(self.registry_timeout),
        }
    }

    pub fn short_names(&self) -> crate::registries_conf::ShortNames {
        match self.search_registries {
            true => crate::registries_conf::ShortNames::Search,
            false => crate::registries_conf::ShortNames::DockerHub,
        }
    }

    /// Everything a registry pull takes from these flags (asks for a `--creds` password now).
    pub fn pull_options(&self) -> Result<RegistryOptions> {
        Ok(RegistryOptions {
            tls: self.tls(),
            credentials: self.cred_options()?,
            short_names: self.short_names(),
            timeouts: self.timeouts(),
            ..Default::default()
        })
    }
}

/// Checks credentials with a registry before `login` stores them: given the registry
/// (`docker.io`, `host:port`) and the credentials, an error says why they were not accepted.
/// Its error text must not hold the password.
pub type LoginVerifier = fn(registry: &str, cred: &Credential) -> Result<()>;

/// The check `oci2bin login` runs: the registry client's `GET /v2/` (and, for token auth, a
/// token request) with the credentials, as `podman login` does.
pub const LOGIN_VERIFIER: Option<LoginVerifier> = Some(verify_login);

/// Logs in to `registry` once, with the default TLS options and certs.d, without storing anything.
fn verify_login(registry: &str, cred: &Credential) -> Result<()> {
    let host = crate::registry_name::api_host(registry).to_string();
    // Docker's default: registries on loopback may answer over plain HTTP.
    let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let loopback = name == "localhost" || name == "[::1]" || name.starts_with("127.");
    let ep = crate::registry::Endpoint {
        host,
        repository: String::new(),
        insecure: loopback,
        credential: Some(crate::source::registry::to_client_credential(cred)),
    };
    let client = crate::registry::client::Client::connect(
        &ep,
        &TlsOptions::default(),
        crate::registry::transport::Timeouts::default(),
        crate::registry::transport::RetryPolicy::default(),
    )?;
    client.check_login()?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The cache (default: $XDG_CACHE_HOME/oci2bin, else ~/.cache/oci2bin, as the files use)
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List entries (key, images that used them, size, last use, state), then the layers
    /// stacked entries share (images and entries using each, size, state). A stacked entry's
    /// SIZE counts its layers; SHARED is the part of them other entries use too
    #[command(visible_alias = "list")]
    Ls {
        /// Print JSON (full keys, sizes in bytes, last use in seconds since the epoch)
        #[arg(long)]
        json: bool,
    },
    /// Remove entries (refused while a container runs from them), and the layers of theirs no
    /// other entry uses
    Rm {
        /// A key, a unique key prefix (4+ hex digits), or the entry's path
        #[arg(value_name = "ENTRY", required = true)]
        entries: Vec<String>,
    },
    /// Remove what no run will use: dead staging trees, old-format and broken entries, layers
    /// no entry uses, meta files without an entry; more with --older-than or --all (entries in
    /// use, and layers being extracted, are skipped)
    Prune {
        /// Also every entry not in use
        #[arg(long)]
        all: bool,
        /// Also entries last used longer ago than D (30s, 15m, 12h, 7d, 2w)
        #[arg(long, value_name = "D", value_parser = cache::parse_age)]
        older_than: Option<std::time::Duration>,
        /// Say what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Image to package: a registry reference (alpine:3.19, docker://ghcr.io/o/app:1,
    /// http://HOST:PORT/app:1 for plain HTTP), oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], dir:ROOTFS
    #[arg(value_name = "SOURCE", required = true)]
    pub source: Option<String>,
    /// Output file (default: from the source name, e.g. ./busybox_1.36)
    #[arg(value_name = "OUTPUT")]
    pub output: Option<PathBuf>,
    /// Entrypoint: a JSON array, or a plain string taken as one argument; clears the image's Cmd
    /// unless --cmd is given
    #[arg(long, value_name = "JSON|STRING", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Cmd: a JSON array, or a plain string taken as one argument
    #[arg(long, value_name = "JSON|STRING", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// Set an environment variable in the image config (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the image config
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User of the image config (USER[:GROUP] or UID[:GID])
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Name the image in the output (RepoTags, index annotations)
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Platform to pick from a multi-arch index (default: this host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Static loader ELF to put at the head of the file (default: the embedded one)
    #[arg(long, value_name = "PATH", env = "OCI2BIN_LOADER")]
    pub loader: Option<PathBuf>,
    /// Build in this public key (PEM; repeatable: any of them will do): the file then runs only
    /// once signed by it (`oci2bin sign`), with no flag; a changed or unsigned file exits 125
    #[arg(long, value_name = "PUB.pem")]
    pub require_signature: Vec<PathBuf>,
    #[command(flatten)]
    pub cosign: crate::cosign::CosignArgs,
    #[command(flatten)]
    pub vm: crate::vm::VmArgs,
    /// Print nothing on success
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    run_with(cli, LOGIN_VERIFIER)
}

/// [`run`] with the given check for `login` (`None`: credentials are stored unchecked).
pub fn run_with(cli: Cli, verifier: Option<LoginVerifier>) -> Result<()> {
    match cli.command {
        Some(Command::Inspect { file, json, kind }) => {
            let container = match kind.as_deref() {
                Some(k) => k == "container",
                None => containers::commands::is_container(&file),
            };
            if container {
                return containers::commands::inspect(&file.to_string_lossy());
            }
            let i = inspect::inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&i.metadata)?);
            } else {
                print!("{}", inspect::render(&i));
            }
            Ok(())
        }
        Some(Command::Cache(c)) => cache_command(c),
        Some(Command::Login(a)) => login_command(a, verifier),
        Some(Command::Logout(a)) => logout_command(a),
        Some(Command::Push(a)) => push_command(a),
        Some(Command::Ps(a)) => containers::commands::ps(a),
        Some(Command::Stop(a)) => containers::commands::stop(a),
        Some(Command::Kill(a)) => containers::commands::kill(a),
        Some(Command::Logs(a)) => containers::commands::logs(a),
        Some(Command::Rm(a)) => containers::commands::rm(a),
        Some(Command::Port(a)) => containers::commands::port(a),
        Some(Command::Volume(a)) => volumes::run(a),
        Some(Command::Keygen { prefix }) => {
            let with = |ext: &str| {
                let mut p = prefix.clone().into_os_string();
                p.push(ext);
                PathBuf::from(p)
            };
            let (private, public) = (with(".key"), with(".pub"));
            let id = trust::keygen(&private, &public)?;
            eprintln!(
                "wrote {} (private, mode 0600) and {} (public); key id {}",
                private.display(),
                public.display(),
                hex::encode(id)
            );
            Ok(())
        }
        Some(Command::Sign(a)) => {
            let pass = match a.passphrase_file {
                Some(p) => trust::Passphrase::File(p),
                None => trust::Passphrase::Ask,
            };
            let key = trust::load_private_key(&a.key, &pass)?;
            let out = a.out.unwrap_or_else(|| a.input.clone());
            let id = trust::sign(&a.input, &out, &key)
                .with_context(|| format!("sign {}", a.input.display()))?;
            eprintln!("signed {} with key id {}", out.display(), hex::encode(id));
            Ok(())
        }
        Some(Command::Sbom(a)) => crate::sbom::command(a),
        Some(Command::Verify(a)) => {
            let key = trust::load_public_key(&a.key, &trust::Passphrase::Ask);
            let verdict = match key {
                Ok(k) => trust::verify(&a.input, &k),
                Err(e) => trust::Verdict::Invalid(format!("cannot use the key: {e}")),
            };
            let file = a.input.display();
            let (status, line) = match &verdict {
                trust::Verdict::Valid { key_id } => (
                    "valid",
                    format!("{file}: signature valid (key id {})", hex::encode(key_id)),
                ),
                trust::Verdict::NotSigned => ("unsigned", format!("{file}: not signed")),
                trust::Verdict::Invalid(why) => {
                    ("invalid", format!("{file}: signature invalid: {why}"))
                }
            };
            if a.json {
                let mut v = serde_json::json!({ "file": a.input, "status": status });
                match &verdict {
                    trust::Verdict::Valid { key_id } => v["key_id"] = hex::encode(key_id).into(),
                    trust::Verdict::Invalid(why) => v["reason"] = why.clone().into(),
                    trust::Verdict::NotSigned => {}
                }
                println!("{v}");
            } else if verdict.code() == 0 {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
            std::process::exit(verdict.code())
        }
        Some(Command::Exec(a)) => {
            let code = containers::commands::exec(a)?;
            std::process::exit(code)
        }
        None => build(cli.build),
    }
}

fn login_command(a: LoginArgs, verifier: Option<LoginVerifier>) -> Result<()> {
    let key = credentials::normalize_key(&a.registry)?;
    let host = key.split('/').next().unwrap_or(&key).to_string();
    let tty = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if a.password_stdin => {
            anyhow::bail!("--password-stdin needs --username: stdin holds the password")
        }
        None if tty => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the user name")?;
            line.trim().to_string()
        }
        None => anyhow::bail!("no --username, and no terminal to ask for it"),
    };
    let password = if a.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from stdin")?;
        // `echo PASS | oci2bin login …` sends a newline that is not part of the password.
        let p = text.strip_suffix('\n').unwrap_or(&text);
        Secret::new(p.strip_suffix('\r').unwrap_or(p))
    } else {
        credentials::ask_on_terminal("Password: ")
            .context("no --password-stdin, and no terminal to ask for the password")?
            .context("cannot read the password")?
    };
    let mut unchecked = !a.verify;
    let path = credentials::login(
        &a.registry,
        &username,
        password,
        a.authfile.as_deref(),
        &CredSources::from_env(),
        |cred| match (a.verify, verifier) {
            (false, _) => Ok(()),
            // The whole chain, as a string: the box keeps no anyhow context otherwise.
            (true, Some(check)) => check(&host, cred).map_err(|e| format!("{e:#}").into()),
            (true, None) => {
                unchecked = true;
                Ok(())
            }
        },
    )
    .with_context(|| format!("cannot log in to {key}"))?;
    if unchecked && a.verify {
        eprintln!(
            "oci2bin: warning: credentials for {key} not checked: this build has no registry client yet"
        );
    }
    match unchecked {
        false => println!(
            "login succeeded: credentials for {key} stored in {}",
            path.display()
        ),
        true => println!(
            "stored credentials for {key} in {} (not checked)",
            path.display()
        ),
    }
    Ok(())
}

/// The image to push: a file that exists is read as the OCI archive a built file is.
/// A built file given where a SOURCE may be: it is an OCI archive too.
pub(crate) fn file_or_source(s: &str) -> String {
    if Path::new(s).is_file() {
        format!("oci-archive:{s}")
    } else {
        s.to_string()
    }
}

fn push_command(a: PushArgs) -> Result<()> {
    use crate::reference::Reference;
    use crate::registry::client::Client;
    use crate::registry::push;
    use crate::registry::transport::RetryPolicy;

    let dest = a.reference.as_str();
    let bare = dest.strip_prefix("docker://").unwrap_or(dest);
    let plain_http = bare.strip_prefix("http://");
    let r = Reference::parse(plain_http.unwrap_or(bare))
        .with_context(|| format!("cannot push to {dest}"))?;
    if r.digest.is_some() {
        anyhow::bail!("cannot push to {dest}: give a tag, not a digest (the registry computes it)");
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let registry = a.registry.pull_options()?;
    cleanup::install();
    let warn = |m: &str| eprintln!("oci2bin: warning: {m}");
    // Notes only where a person watches: a terminal, and not -q.
    let quiet = a.quiet || !std::io::stderr().is_terminal();
    let note = |m: &str| {
        if !quiet {
            eprintln!("oci2bin: {m}")
        }
    };
    let tls = registry.tls.clone();
    // The destination: the registry itself (mirrors are for pulls), with its stored credentials.
    let dest_opts = RegistryOptions {
        short_names: crate::registries_conf::ShortNames::DockerHub,
        ..registry.clone()
    };
    let mut ep = source::registry::endpoints(&r, &dest_opts, &warn)
        .with_context(|| format!("cannot push to {dest}"))?
        .pop()
        .with_context(|| format!("cannot push to {dest}: no registry to push to"))?;
    if plain_http.is_some() {
        ep.host = format!("http://{}", ep.host_name());
    }

    let source_ref = file_or_source(&a.source);
    let opts = SourceOptions {
        platform: None,
        source_date_epoch: None,
        warn: &warn,
        registry,
        progress: &Quiet,
    };
    // Blobs may be mounted from the repository the image came from, when it is on the same
    // registry: the source itself, or for a built file the source it was built from.
    let origin = if source_ref.starts_with("oci-archive:") {
        polyglot::read_back(Path::new(&a.source))
            .ok()
            .map(|(_, meta, ..)| meta.source)
    } else {
        Some(a.source.clone())
    };
    let origin = origin.and_then(|o| registry_origin(&o, &opts.registry));
    let mount_from = push::mount_source(
        origin.as_ref().map(|(h, r)| (h.as_str(), r.as_str())),
        (ep.host_name(), &ep.repository),
    );
    let index = if a.all {
        source::open_all(&source_ref, &opts).with_context(|| format!("cannot read {}", a.source))?
    } else {
        None
    };
    let anonymous = ep.credential.is_none();
    let client = Client::connect(&ep, &tls, a.registry.timeouts(), RetryPolicy::default())
        .map(|c| c.for_push(mount_from.as_deref()))
        .with_context(|| format!("cannot push to {dest}"))?;
    let push_opts = push::PushOptions {
        anonymous,
        mount_from: mount_from.as_deref(),
        note: &note,
    };
    let pushed = match index {
        Some((index, images)) => push::push_index(&client, &index, &images, &tag, &push_opts),
        None => {
            let opened = source::open(&source_ref, &opts)
                .with_context(|| format!("cannot read {}", a.source))?;
            push::push(&client, &opened.image, &tag, &push_opts)
        }
    }
    .with_context(|| format!("cannot push to {dest}"))?;
    note(&format!(
        "pushed {} blob(s), {} mounted, {} already there",
        pushed.uploaded, pushed.mounted, pushed.skipped
    ));
    println!("{bare}@{}", pushed.digest);
    Ok(())
}

/// The registry host and repository a source names, when it is a registry reference.
fn registry_origin(source: &str, opts: &RegistryOptions) -> Option<(String, String)> {
    let source::SourceRef::Registry { reference } = source::SourceRef::parse(source).ok()? else {
        return None;
    };
    let r =
        crate::reference::Reference::parse(reference.strip_prefix("http://").unwrap_or(&reference))
            .ok()?;
    let ep = source::registry::endpoints(&r, opts, &|_| {}).ok()?.pop()?;
    Some((ep.host_name().to_string(), ep.repository))
}

fn logout_command(a: LogoutArgs) -> Result<()> {
    let sources = CredSources::from_env();
    if a.all {
        let path = credentials::logout_all(a.authfile.as_deref(), &sources)?;
        println!(
            "removed the credentials of every registry from {}",
            path.display()
        );
        return Ok(());
    }
    let registry = a.registry.context("no REGISTRY given")?;
    let key = credentials::normalize_key(&registry)?;
    let path = credentials::logout(&registry, a.authfile.as_deref(), &sources)?;
    println!("removed the credentials for {key} from {}", path.display());
    Ok(())
}

fn cache_command(a: CacheArgs) -> Result<()> {
    let root = match a.cache_dir {
        Some(d) => d,
        None => cache::default_root()
            .context("no cache location: neither XDG_CACHE_HOME nor HOME is an absolute path")?,
    };
    let c = Cache::new(root);
    let shown = c.root.display().to_string();
    match a.command {
        CacheCommand::Ls { json } => {
            let rows = c.list().with_context(|| format!("cannot list {shown}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cache::to_json(&rows))?);
            } else if !c.exists() {
                println!("no cache at {shown}");
            } else {
                print!(
                    "{}",
                    cache::render_table(&rows, std::time::SystemTime::now())
                );
            }
            Ok(())
        }
        CacheCommand::Rm { entries } => {
            let outcomes = c.rm(&entries).with_context(|| format!("cache {shown}"))?;
            report(&outcomes, false)
        }
        CacheCommand::Prune {
            all,
            older_than,
            dry_run,
        } => {
            let p = Prune {
                all,
                older_than,
                dry_run,
            };
            let (outcomes, orphans) = c.prune(&p).with_context(|| format!("cache {shown}"))?;
            if orphans > 0 {
                println!("removed {orphans} meta file(s) without an entry");
            }
            report(&outcomes, dry_run)
        }
    }
}

/// Prints one line per outcome and the space freed; fails if any removal failed.
fn report(outcomes: &[Outcome], dry_run: bool) -> Result<()> {
    let (mut freed, mut failed) = (0, Vec::new());
    for o in outcomes {
        match o {
            Outcome::Removed(r) => {
                freed += r.size;
                let what = if r.is_staging() { " (incomplete)" } else { "" };
                let verb = if dry_run { "would remove" } else { "removed" };
                println!(
                    "{verb} {}{}{what} {}",
                    layer_word(r),
                    r.short_key(),
                    cache::human_size(r.size)
                );
            }
            Outcome::Skipped(r, why) => {
                println!("skipped {}{}: {why}", layer_word(r), r.short_key())
            }
            Outcome::Failed(_, why) => failed.push(why.clone()),
        }
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!("{verb} {}", cache::human_size(freed));
    match failed.is_empty() {
        true => Ok(()),
        false => anyhow::bail!("{}", failed.join("; ")),
    }
}

/// `layer ` before a layer's key in `rm` and `prune` reports (entries go without a word).
fn layer_word(r: &cache::Row) -> &'static str {
    match r.kind {
        cache::Kind::Layer => "layer ",
        _ => "",
    }
}

/// SOURCE_DATE_EPOCH, if set.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => {
            Ok(Some(v.trim().parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH `{v}` is not a number of seconds")
            })?))
        }
        _ => Ok(None),
    }
}

fn build(a: BuildArgs) -> Result<()> {
    let reference = a.source.context("no SOURCE given")?;
    let epoch = source_date_epoch()?;
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    let edits = ConfigEdits {
        entrypoint: a
            .entrypoint
            .as_deref()
            .map(mutate::parse_command)
            .transpose()
            .context("--entrypoint")?,
        cmd: a
            .cmd
            .as_deref()
            .map(mutate::parse_command)
            .transpose()
            .context("--cmd")?,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
    };
    let name = a
        .tag
        .as_deref()
        .map(ImageName::parse)
        .transpose()
        .context("--tag")?;
    let loader = loader_bin::resolve(a.loader.as_deref())?;
    // Before anything is read: a missing kernel fails the build at once.
    let vm = crate::vm::resolve(&a.vm)?;
    let registry = a.registry.pull_options()?;
    // Temporary files (the output, blobs being downloaded) go when ^C ends the build.
    cleanup::install();

    let warn = |m: &str| eprintln!("oci2bin: warning: {m}");
    // Bars only where a person watches: a terminal, and not -q.
    let bars = (!a.quiet && std::io::stderr().is_terminal()).then(Bars::default);
    let progress: &dyn Progress = match &bars {
        Some(b) => b,
        None => &Quiet,
    };
    let opts = SourceOptions {
        platform,
        source_date_epoch: epoch,
        warn: &warn,
        registry,
        progress,
    };
    // A build --require-cosign cannot satisfy fails before anything is downloaded.
    crate::cosign::preflight(&a.cosign, &reference, &a.registry)?;
    let opened =
        source::open(&reference, &opts).with_context(|| format!("cannot read {reference}"))?;
    crate::cosign::check_source(
        &a.cosign,
        &reference,
        &opened.image,
        &a.registry,
        &warn,
        a.quiet,
    )?;
    let mut image = mutate::edit_config(opened.image, &edits)?;
    if let Some(n) = name {
        image = mutate::set_name(image, n);
    }

    let output = match a.output {
        Some(o) if o.is_dir() => o.join(&opened.default_output),
        Some(o) => o,
        None => Path::new(".").join(&opened.default_output),
    };
    let trusted_keys = a
        .require_signature
        .iter()
        .map(|p| trust::load_public_key(p, &trust::Passphrase::Ask).map(|k| k.sec1().to_vec()))
        .collect::<crate::Result<Vec<_>>>()?;
    let written = polyglot::write_file(
        &image,
        &WriteOptions {
            loader: &loader,
            source_date_epoch: epoch,
            trusted_keys,
            vm: vm.as_ref(),
        },
        &output,
    )
    .with_context(|| format!("cannot write {}", output.display()))?;
    if !a.quiet {
        println!(
            "image digest: {}@{}",
            image.name.familiar(),
            written.manifest_digest
        );
        println!("wrote {} ({} bytes)", output.display(), written.size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from([&["oci2bin"], args].concat())
    }

    fn login(args: &[&str]) -> LoginArgs {
        match parse(args).unwrap().command {
            Some(Command::Login(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verify_is_on_unless_set_false_with_an_equals_sign() {
        assert!(login(&["login", "quay.io"]).verify);
        assert!(!login(&["login", "--verify=false", "quay.io"]).verify);
        // Bare `--verify` does not swallow the registry.
        let a = login(&["login", "--verify", "quay.io"]);
        assert!(a.verify);
        assert_eq!(a.registry, "quay.io");
        let a = login(&[
            "login",
            "-u",
            "me",
            "--password-stdin",
            "--authfile",
            "f",
            "h:5000",
        ]);
        assert_eq!(
            (a.username.as_deref(), a.password_stdin, a.authfile),
            (Some("me"), true, Some(PathBuf::from("f")))
        );
    }

    #[test]
    fn logout_takes_a_registry_or_all_but_not_both() {
        assert!(parse(&["logout"]).is_err());
        assert!(parse(&["logout", "--all", "quay.io"]).is_err());
        assert!(parse(&["logout", "--all"]).is_ok());
        assert!(parse(&["logout", "quay.io"]).is_ok());
    }

    #[test]
    fn push_takes_a_file_and_a_reference_with_the_registry_flags() {
        let a = match parse(&[
            "push",
            "--tls-verify=false",
            "--creds",
            "me:pw",
            "--cert-dir",
            "d",
            "./busybox",
            "localhost:5000/busybox:1",
        ])
        .unwrap()
        .command
        {
            Some(Command::Push(a)) => a,
            other => panic!("{other:?}"),
        };
        assert!(!a.registry.tls_verify);
        assert_eq!(a.registry.cert_dir, Some(PathBuf::from("d")));
        assert_eq!(a.registry.creds.as_deref(), Some("me:pw"));
        assert_eq!(
            (a.source.as_str(), a.reference.as_str()),
            ("./busybox", "localhost:5000/busybox:1")
        );
        assert!(parse(&["push", "./busybox"]).is_err());
    }

    #[test]
    fn push_reads_an_existing_file_as_an_oci_archive() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().to_str().unwrap();
        assert_eq!(file_or_source(p), format!("oci-archive:{p}"));
        assert_eq!(file_or_source("oci:/nowhere:1"), "oci:/nowhere:1");
        assert_eq!(file_or_source("docker://a/b:1"), "docker://a/b:1");
    }

    #[test]
    fn registry_args_choose_how_short_names_resolve() {
        use crate::registries_conf::ShortNames;
        let r = RegistryArgs::default();
        assert_eq!(r.short_names(), ShortNames::DockerHub);
        let r = RegistryArgs {
            search_registries: true,
            ..r
        };
        assert_eq!(r.short_names(), ShortNames::Search);
        let r = RegistryArgs {
            creds: Some("me:pw".into()),
            ..r
        };
        let c = r.cred_options().unwrap().creds.unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("me", "pw"));
    }
}
