//! `oci2bin volume create|ls|inspect|rm|prune`: the named volumes that runs mount
//! (`-v NAME:/path`, `--mount type=volume,src=NAME`), each a directory `volumes/NAME` under the
//! cache root (see `loader::cachedir`), in Docker's spelling.
//!
//! In use: every run that mounts a volume holds flock(LOCK_SH) on `volumes/.NAME.lock` while it
//! lives, so `rm` and `prune` take it LOCK_EX without waiting and refuse (rm) or keep (prune) a
//! volume in use, whatever started the run (named or not, detached or not). The states of
//! running containers (their `volumes`) name the users in the refusal. A removed volume's lock
//! file goes under the lock: a run waiting on it then locks a new one and gets a new volume.
//!
//! A run with a subordinate id range (`--userns map`) leaves files owned by those ids, which the
//! host user cannot remove: such a volume is removed as `oci2bin cache rm` removes such entries,
//! by a copy of this program in a user namespace that maps the range again
//! ([`cache::remove_mapped`]).

use std::io::{BufRead, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use loader::cachedir::{self, VOLUMES};

use crate::cache;

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given) and print its name
    Create {
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// List volumes
    #[command(visible_alias = "list")]
    Ls {
        /// Only the names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON, as docker volume inspect does
    Inspect {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one)
    #[command(visible_alias = "remove")]
    Rm {
        /// A volume that does not exist is no error
        #[arg(short, long)]
        force: bool,
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no running container uses
    Prune {
        /// Do not ask for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

/// `volumes/` under the cache root the files use.
pub fn root() -> Result<PathBuf> {
    cachedir::root_from_vars(|k| std::env::var_os(k))
        .map(|r| r.join(VOLUMES))
        .context("no cache directory: set HOME or XDG_CACHE_HOME")
}

pub fn run(a: VolumeArgs) -> Result<()> {
    let root = root()?;
    match a.command {
        VolumeCommand::Create { name } => create(&root, name),
        VolumeCommand::Ls { quiet } => {
            let names = names(&root)?;
            if !quiet {
                println!("{:<10}VOLUME NAME", "DRIVER");
            }
            for n in names {
                if quiet {
                    println!("{n}");
                } else {
                    println!("{:<10}{n}", "local");
                }
            }
            Ok(())
        }
        VolumeCommand::Inspect { names } => inspect(&root, &names),
        VolumeCommand::Rm { force, names } => rm(&root, &names, force),
        VolumeCommand::Prune { force } => prune(&root, force),
    }
}

fn check_name(name: &str) -> Result<()> {
    if !cachedir::valid_volume_name(name.as_bytes()) {
        bail!("invalid volume name '{name}': want [a-zA-Z0-9][a-zA-Z0-9_.-]+");
    }
    Ok(())
}

/// The volumes: directories with a volume's name (not the hidden lock files and leftovers).
fn names(root: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.with_context(|| format!("read {}", root.display()))?,
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| cachedir::valid_volume_name(n.as_bytes()))
        .collect();
    names.sort();
    Ok(names)
}

/// The volume's directory, if there is one.
fn existing(root: &Path, name: &str) -> Option<PathBuf> {
    let dir = root.join(name);
    let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    (cachedir::valid_volume_name(name.as_bytes()) && is_dir).then_some(dir)
}

/// `create [NAME]`: as a run makes it on first use (its parents private to us); an existing one
/// is fine, as with Docker.
fn create(root: &Path, name: Option<String>) -> Result<()> {
    let name = match name {
        Some(n) => n,
        None => {
            let mut b = [0u8; 32];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)
                .context("read /dev/urandom")?;
            hex::encode(b)
        }
    };
    check_name(&name)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("create {}", root.display()))?;
    let dir = root.join(&name);
    match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("create {}", dir.display()))
        }
        _ => {}
    }
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        bail!("{} is not a directory", dir.display());
    }
    println!("{name}");
    Ok(())
}

/// Docker's fields of `docker volume inspect`, in its order.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    created_at: String,
    driver: &'static str,
    labels: Option<()>,
    mountpoint: String,
    name: String,
    options: Option<()>,
    scope: &'static str,
}

fn inspect(root: &Path, names: &[String]) -> Result<()> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        let Some(dir) = existing(root, n) else {
            missing.push(n.as_str());
            continue;
        };
        let m = std::fs::metadata(&dir).with_context(|| format!("stat {}", dir.display()))?;
        let t = m
            .created()
            .or_else(|_| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Docker's form: whole seconds.
        let created_at = loader::containers::rfc3339(std::time::Duration::from_secs(secs))
            .replace(".000000000", "");
        found.push(Inspected {
            created_at,
            driver: "local",
            labels: None,
            mountpoint: dir.display().to_string(),
            name: n.clone(),
            options: None,
            scope: "local",
        });
    }
    // Docker's layout: four spaces a level.
    let mut out = Vec::new();
    let indent = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    serde::Serialize::serialize(
        &found,
        &mut serde_json::Serializer::with_formatter(&mut out, indent),
    )?;
    println!("{}", String::from_utf8_lossy(&out));
    match missing[..] {
        [] => Ok(()),
        _ => bail!("no such volume: {}", missing.join(", ")),
    }
}

/// Why a volume whose lock is held cannot go, naming the running containers whose state lists
/// it (a run without a name keeps no state).
fn in_use(name: &str) -> String {
    let users: Vec<String> = crate::containers::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.running() && c.state.volumes.iter().any(|v| v == name))
        .map(|c| c.state.name)
        .collect();
    match users.is_empty() {
        true => "volume is in use (by a run without a name)".into(),
        false => format!("volume is in use - [{}]", users.join(", ")),
    }
}

/// Removes volume `name` unless a run holds its lock: the bytes freed, or why it is in use.
fn remove(root: &Path, name: &str) -> Result<std::result::Result<u64, String>> {
    let lock_path = root.join(cachedir::volume_lock(name));
    let lock = cache::open_lock(&lock_path, true)
        .with_context(|| format!("open {}", lock_path.display()))?
        .context("lock file vanished")?;
    if !cache::try_lock(&lock).with_context(|| format!("lock {}", lock_path.display()))? {
        return Ok(Err(in_use(name)));
    }
    let dir = root.join(name);
    let size = cache::disk_usage(&dir);
    // Out of sight at once (a hidden name is no volume), then removed without the lock held.
    let trash = root.join(format!(".rm-{name}-{}", cache::unique()));
    std::fs::rename(&dir, &trash).with_context(|| format!("rename {}", dir.display()))?;
    std::fs::remove_file(&lock_path).with_context(|| format!("remove {}", lock_path.display()))?;
    drop(lock);
    remove_tree(&trash)?;
    Ok(Ok(size))
}

/// Removes a tree; one with files of our subordinate ids (a `--userns map` run wrote them) in a
/// user namespace that maps the range again.
fn remove_tree(p: &Path) -> Result<()> {
    match cache::remove_tree(p) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => cache::remove_mapped(p),
        r => r,
    }
    .with_context(|| format!("remove {}", p.display()))
}

fn rm(root: &Path, names: &[String], force: bool) -> Result<()> {
    let mut failed = Vec::new();
    for n in names {
        if existing(root, n).is_none() {
            if !force {
                failed.push(format!("no such volume: {n}"));
            }
            continue;
        }
        match remove(root, n) {
            Ok(Ok(_)) => println!("{n}"),
            Ok(Err(why)) => failed.push(format!("remove {n}: {why}")),
            Err(e) => failed.push(format!("remove {n}: {e:#}")),
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => bail!("{}", failed.join("; ")),
    }
}

fn prune(root: &Path, force: bool) -> Result<()> {
    if !force {
        print!(
            "WARNING! This will remove all volumes not used by a running container.\n\
             Are you sure you want to continue? [y/N] "
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
    }
    let (mut deleted, mut freed, mut failed) = (Vec::new(), 0, Vec::new());
    for n in names(root)? {
        match remove(root, &n) {
            Ok(Ok(size)) => {
                freed += size;
                deleted.push(n);
            }
            // In use: kept.
            Ok(Err(_)) => {}
            Err(e) => failed.push(format!("remove {n}: {e:#}")),
        }
    }
    // What an interrupted rm left, and the lock files of volumes that are gone.
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let (name, path) = (e.file_name().to_string_lossy().into_owned(), e.path());
        if name.starts_with(".rm-") {
            if let Err(e) = remove_tree(&path) {
                failed.push(format!("{e:#}"));
            }
        } else if let Some(vol) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(cachedir::LOCK_SUFFIX))
        {
            let orphan = existing(root, vol).is_none()
                && matches!(cache::open_lock(&path, false), Ok(Some(f)) if cache::try_lock(&f).unwrap_or(false));
            if orphan {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for n in &deleted {
            println!("{n}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", cache::human_size(freed));
    match failed.is_empty() {
        true => Ok(()),
        false => bail!("{}", failed.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_volume_directories_only() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["web-data", "db", ".rm-x-1", "x"] {
            std::fs::create_dir(r.join(dir)).unwrap();
        }
        std::fs::write(r.join(".db.lock"), "").unwrap();
        std::fs::write(r.join("file"), "").unwrap();
        assert_eq!(names(r).unwrap(), ["db", "web-data"]);
        assert_eq!(names(&r.join("none")).unwrap(), Vec::<String>::new());
        assert!(existing(r, "db").is_some());
        assert!(existing(r, ".rm-x-1").is_none() && existing(r, "file").is_none());
    }

    #[test]
    fn a_volume_whose_lock_is_held_stays_and_a_free_one_goes_with_its_lock() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("busy/sub")).unwrap();
        std::fs::create_dir_all(r.join("free/sub")).unwrap();
        std::fs::write(r.join("free/sub/f"), "x").unwrap();
        let held = cache::open_lock(&r.join(".busy.lock"), true)
            .unwrap()
            .unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockShared).unwrap();
        let why = remove(r, "busy").unwrap().unwrap_err();
        assert!(why.starts_with("volume is in use"), "{why}");
        assert!(r.join("busy/sub").is_dir());
        assert!(remove(r, "free").unwrap().unwrap() > 0);
        assert!(!r.join("free").exists() && !r.join(".free.lock").exists());
        assert_eq!(names(r).unwrap(), ["busy"]);
    }

    #[test]
    fn bad_names_are_refused_as_the_loader_refuses_them() {
        for bad in ["x", "-x", ".x", "a/b", "a b"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid volume name '{bad}'")),
                "{e}"
            );
        }
        check_name("web-data.1").unwrap();
    }
}
