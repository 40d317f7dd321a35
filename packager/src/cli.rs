//! The command line: `oci2bin [OPTIONS] SOURCE [OUTPUT]`, `oci2bin inspect FILE [--json]` and
//! `oci2bin cache ls|rm|prune`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::cache::{self, Cache, Outcome, Prune};
use crate::mutate::{self, ConfigEdits};
use crate::platform::Platform;
use crate::reference::ImageName;
use crate::registry::bars::Bars;
use crate::registry::pull::{Progress, Quiet};
use crate::registry::transport::TlsOptions;
use crate::registry::Credential;
use crate::sink::polyglot::{self, WriteOptions};
use crate::source::registry::RegistryOptions;
use crate::source::{self, SourceOptions};
use crate::{cleanup, inspect, loader_bin};

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
    /// Show what a built file holds: image, platform, layers, run config, build metadata
    Inspect {
        /// A file written by oci2bin
        file: PathBuf,
        /// Print the metadata as JSON
        #[arg(long)]
        json: bool,
    },
    /// Look after the cache of extracted root filesystems the files run from
    Cache(CacheArgs),
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
    /// List entries: key, images that used them, size, last use, state
    Ls {
        /// Print JSON (full keys, sizes in bytes, last use in seconds since the epoch)
        #[arg(long)]
        json: bool,
    },
    /// Remove entries (refused while a container runs from them)
    Rm {
        /// A key, a unique key prefix (4+ hex digits), or the entry's path
        #[arg(value_name = "ENTRY", required = true)]
        entries: Vec<String>,
    },
    /// Remove what no run will use: dead staging trees, old-format and broken entries, meta
    /// files without an entry; more with --older-than or --all (entries in use are skipped)
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
    /// Registry pulls: require HTTPS with verified certificates (=false: skip verification and
    /// fall back to plain HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Registry pulls: CA certificates (*.crt) and a client pair (NAME.cert + NAME.key), instead of
    /// /etc/containers/certs.d/HOST:PORT/
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Registry pulls: credentials for the registry; without :PASS the password is asked for on the
    /// terminal
    #[arg(long, value_name = "USER[:PASS]")]
    pub creds: Option<String>,
    /// Static loader ELF to put at the head of the file (default: the embedded one)
    #[arg(long, value_name = "PATH", env = "OCI2BIN_LOADER")]
    pub loader: Option<PathBuf>,
    /// Print nothing on success
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Inspect { file, json }) => {
            let i = inspect::inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&i.metadata)?);
            } else {
                print!("{}", inspect::render(&i));
            }
            Ok(())
        }
        Some(Command::Cache(c)) => cache_command(c),
        None => build(cli.build),
    }
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
                    "{verb} {}{what} {}",
                    r.short_key(),
                    cache::human_size(r.size)
                );
            }
            Outcome::Skipped(r, why) => println!("skipped {}: {why}", r.short_key()),
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

/// `--creds USER[:PASS]`; without `:PASS` the password is read from the terminal, unechoed.
fn parse_creds(s: &str) -> Result<Credential> {
    let (user, pass) = match s.split_once(':') {
        Some((u, p)) => (u, p.to_string()),
        None => (
            s,
            rpassword::prompt_password(format!("password for {s}: "))
                .context("--creds USER without :PASS needs a terminal to ask for the password")?,
        ),
    };
    if user.is_empty() {
        anyhow::bail!("--creds needs a user name (USER[:PASS])");
    }
    Ok(Credential::basic(user, pass))
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
    let credential = a.creds.as_deref().map(parse_creds).transpose()?;
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
        registry: RegistryOptions {
            tls: TlsOptions {
                verify: a.tls_verify,
                cert_dir: a.cert_dir,
            },
            credential,
            ..Default::default()
        },
        progress,
    };
    let opened =
        source::open(&reference, &opts).with_context(|| format!("cannot read {reference}"))?;
    let mut image = mutate::edit_config(opened.image, &edits)?;
    if let Some(n) = name {
        image = mutate::set_name(image, n);
    }

    let output = match a.output {
        Some(o) if o.is_dir() => o.join(&opened.default_output),
        Some(o) => o,
        None => Path::new(".").join(&opened.default_output),
    };
    let written = polyglot::write_file(
        &image,
        &WriteOptions {
            loader: &loader,
            source_date_epoch: epoch,
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
