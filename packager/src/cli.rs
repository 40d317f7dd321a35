//! The command line: `oci2bin [OPTIONS] SOURCE [OUTPUT]` and `oci2bin inspect FILE [--json]`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::mutate::{self, ConfigEdits};
use crate::platform::Platform;
use crate::reference::ImageName;
use crate::sink::polyglot::{self, WriteOptions};
use crate::source::{self, SourceOptions};
use crate::{inspect, loader_bin};

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
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Image to package: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG],
    /// dir:ROOTFS
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
        None => build(cli.build),
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

    let warn = |m: &str| eprintln!("oci2bin: warning: {m}");
    let opts = SourceOptions {
        platform,
        source_date_epoch: epoch,
        warn: &warn,
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
