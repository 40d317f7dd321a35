//! Where a run's writes live (R3, R4), set up on the host before the plan: the writable layer
//! on disk in a per-run directory of the cache (`runs/<rand>/{upper,work}`, as Docker's writable
//! layer), or `--overlay-persist DIR`, or RAM with `--tmpfs-upper`; named volumes
//! (`volumes/NAME`) and anonymous ones (inside the run directory, so they go with it); the
//! `--ssh-agent` socket.
//!
//! A run holds flock(LOCK_SH) on `volumes/.NAME.lock` for each named volume it mounts (no volume
//! name starts with a dot): `oci2bin volume rm` takes it LOCK_EX, so a volume in use is never
//! removed, whatever started the run.
//!
//! A run directory holds a `.lock` that the run keeps flock(LOCK_EX) on until it ends (the
//! supervisor, and PID 1 through fork); the supervisor removes the directory at exit. One left
//! by a run killed with SIGKILL has a free lock, and the next run removes it; a lock held means
//! a live run, never touched.

use crate::args::Flags;
use crate::cache;
use crate::extract;
use crate::plan::mounts::{MountSpec, Source};
use crate::plan::Upper;
use crate::sys::fs as sys;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Per-run directories, under the cache root.
pub const RUNS: &str = "runs";
pub use crate::cachedir::VOLUMES;
/// The lock file of a run directory and of an `--overlay-persist` directory.
pub const LOCK: &str = ".lock";
/// Where `--ssh-agent` puts the agent's socket inside.
pub const SSH_AGENT_SOCK: &str = "/run/ssh-agent.sock";

/// What [`setup`] made; keep it alive until the run ends, then call [`Storage::finish`].
#[derive(Debug, Default)]
pub struct Storage {
    pub upper: Upper,
    /// A run directory to remove at the end.
    remove: Option<PathBuf>,
    /// Locks held for the run (close-on-exec).
    hold: Vec<File>,
}

impl Storage {
    /// The run has ended: lets go of the locks and of the cleaner's pipe (see [`Storage::cleaner`]),
    /// which then removes the run directory.
    pub fn finish(self) {
        drop(self);
    }

    /// Forks the process that removes the run directory once the run is over: it waits for
    /// the end of a pipe whose write end the run holds (the supervisor, and PID 1 through
    /// fork; close-on-exec keeps it from the command), so it also cleans up after a `kill -9`
    /// of the file, and the caller gets the exit status without waiting for the file system
    /// (deleting even a few inodes can wait tens of ms on a busy journal). Forked before the
    /// namespaces: a process cannot fork into a pid namespace whose PID 1 has ended. It holds
    /// the lock until the directory is gone; if it is killed too, the next run sweeps it.
    fn cleaner(&mut self, inherited: &mut Vec<File>) -> io::Result<()> {
        use crate::sys::ns;
        let (rd, wr) = ns::pipe()?;
        match ns::fork()? {
            ns::Forked::Parent(_) => {
                self.hold.push(File::from(wr));
                Ok(())
            }
            ns::Forked::Child => {
                drop(wr);
                // Our copies only: the run's own descriptors keep their locks.
                inherited.clear();
                // Nothing of the caller's: a reader of our output sees its end with the run's,
                // and ^C in the terminal does not cut the removal short.
                if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                    for fd in 0..3 {
                        let _ = ns::dup_to(null.as_fd(), fd);
                    }
                }
                let _ = ns::block_signals(&crate::init::supervised_signals());
                let _ = ns::set_cmdline("oci2bin-cleanup");
                let (mut rd, mut end) = (File::from(rd), [0u8; 1]);
                loop {
                    match rd.read(&mut end) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                self.finish_here();
                ns::exit_now(0)
            }
        }
    }

    /// Removes the run directory in this process, then lets its lock go, then sweeps the dead
    /// runs' directories (here, off the start's path: a run killed with its cleaner left one).
    fn finish_here(&mut self) {
        let d = self.remove.take();
        if let Some(d) = &d {
            if let Err(e) = extract::remove_tree(d) {
                eprintln!("oci2bin: warning: remove {}: {e}", d.display());
            }
        }
        self.hold.clear();
        if let Some(runs) = d.as_deref().and_then(Path::parent) {
            sweep(runs);
        }
    }
}

fn mkdir(p: &Path, mode: u32) -> io::Result<()> {
    match DirBuilder::new().mode(mode).create(p) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

fn lock_file(p: &Path, create_new: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(!create_new)
        .create_new(create_new)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(p)
}

/// Sets up the run's storage: the `--ssh-agent` bind, the writable layer and the volumes
/// (their specs become [`Source::VolumeDir`]s). `private` is the run's private extraction
/// directory when the cache is not used (the run directory then goes inside it).
///
/// `inherited` are descriptors of the run (the cache entry's in-use lock) that the cleanup
/// process must not keep open after the run.
pub fn setup(
    flags: &mut Flags,
    private: Option<&Path>,
    inherited: &mut Vec<File>,
) -> Result<Storage, String> {
    if flags.ssh_agent {
        ssh_agent(flags, std::env::var_os("SSH_AUTH_SOCK"))?;
    }
    let mut st = Storage::default();
    if let Some(dir) = flags.overlay_persist.clone() {
        st.upper = Upper::Persist(persist(Path::new(&dir), &mut st.hold)?);
    }
    let anonymous = flags
        .mounts
        .iter()
        .any(|m| m.source == Source::Volume(None));
    let disk = st.upper == Upper::Ram && flags.tmpfs_upper.is_none() && !flags.read_only;
    let cache_root = cache::Locations::from_env().cache;
    let mut run = None;
    if disk || anonymous {
        let made = match (private, &cache_root) {
            (Some(p), _) => {
                let d = p.join("run");
                mkdir(&d, 0o700)
                    .map(|()| d)
                    .map_err(|e| (p.to_path_buf(), e))
            }
            (None, Some(root)) => run_dir(root, &mut st).inspect(|d| {
                if let Err(e) = st.cleaner(inherited) {
                    // Left to the next run's sweep.
                    eprintln!("oci2bin: warning: fork the cleanup of {}: {e}", d.display());
                }
            }),
            (None, None) => Err((PathBuf::from("$HOME"), io::ErrorKind::NotFound.into())),
        };
        match made {
            Ok(d) => run = Some(d),
            Err((p, e)) if !anonymous => eprintln!(
                "oci2bin: warning: no place on disk for the container's writes ({}: {e}); \
                 keeping them in memory",
                p.display()
            ),
            Err((p, e)) => return Err(format!("anonymous volume: {}: {e}", p.display())),
        }
    }
    if let (true, Some(d)) = (disk, &run) {
        for sub in ["upper", "work"] {
            let p = d.join(sub);
            mkdir(&p, 0o755).map_err(|e| format!("create {}: {e}", p.display()))?;
        }
        st.upper = Upper::Disk(d.clone());
    }
    for (i, m) in flags.mounts.iter_mut().enumerate() {
        let dir = match &m.source {
            Source::Volume(None) => match &run {
                Some(d) => d.join("volumes").join(i.to_string()),
                None => continue,
            },
            Source::Volume(Some(name)) => match &cache_root {
                Some(root) => {
                    let vols = root.join(VOLUMES);
                    st.hold.push(volume_lock(&vols, name)?);
                    vols.join(name)
                }
                None => {
                    return Err(format!(
                        "volume {name}: no cache dir for volumes (set HOME or XDG_CACHE_HOME)"
                    ))
                }
            },
            _ => continue,
        };
        volume_dir(&dir)?;
        m.source = Source::VolumeDir(dir);
    }
    Ok(st)
}

/// `--ssh-agent`: the host's agent socket bound at [`SSH_AGENT_SOCK`], `SSH_AUTH_SOCK` set
/// (before the user's `-e`, which wins).
fn ssh_agent(flags: &mut Flags, sock: Option<OsString>) -> Result<(), String> {
    let sock = match sock {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => return Err("--ssh-agent: SSH_AUTH_SOCK is not set (no ssh agent on the host)".into()),
    };
    let shown = sock.display();
    match fs::metadata(&sock) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => return Err(format!("--ssh-agent: {shown} is not a socket")),
        Err(e) => return Err(format!("--ssh-agent: {shown}: {e}")),
    }
    if !sock.is_absolute() {
        return Err(format!("--ssh-agent: {shown} is not an absolute path"));
    }
    flags.mounts.push(MountSpec {
        source: Source::Bind(sock),
        target: SSH_AGENT_SOCK.into(),
        flags: 0,
    });
    let env = format!("SSH_AUTH_SOCK={SSH_AGENT_SOCK}");
    flags.env.insert(0, env.into());
    Ok(())
}

/// `--overlay-persist DIR`: DIR (made if missing) with `upper` and `work`, locked for this run.
fn persist(dir: &Path, hold: &mut Vec<File>) -> Result<PathBuf, String> {
    let shown = dir.display();
    let err = |e: io::Error| format!("--overlay-persist {shown}: {e}");
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(format!("--overlay-persist {shown}: not a directory")),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    }
    // Overlay options take absolute paths; a symlinked DIR is its target.
    let dir = fs::canonicalize(dir).map_err(err)?;
    let lock = lock_file(&dir.join(LOCK), false).map_err(err)?;
    if !sys::flock(lock.as_fd(), true, true).map_err(err)? {
        return Err(format!(
            "--overlay-persist {shown}: in use by another run (lock {})",
            dir.join(LOCK).display()
        ));
    }
    for sub in ["upper", "work"] {
        mkdir(&dir.join(sub), 0o755).map_err(err)?;
    }
    hold.push(lock);
    Ok(dir)
}

/// A fresh locked directory `runs/<rand>` under the cache root (dead ones are swept by the
/// cleaner when the run is over).
fn run_dir(root: &Path, st: &mut Storage) -> Result<PathBuf, (PathBuf, io::Error)> {
    let runs = root.join(RUNS);
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    // The cache root exists and is ours (prepare checked it); `runs/` may be new.
    mkdir(&runs, 0o700).map_err(at(&runs))?;
    let m = fs::symlink_metadata(&runs).map_err(at(&runs))?;
    if !m.is_dir() || m.uid() != sys::geteuid() {
        return Err((runs, io::ErrorKind::PermissionDenied.into()));
    }
    loop {
        let d = runs.join(cache::random_suffix());
        DirBuilder::new().mode(0o700).create(&d).map_err(at(&d))?;
        let lock = lock_file(&d.join(LOCK), true).map_err(at(&d))?;
        // A sweeper may have taken the new dir for a dead one before we locked it.
        let mine = sys::flock(lock.as_fd(), true, true).unwrap_or(false)
            && sys::fstat(lock.as_fd()).is_ok_and(|s| s.st_nlink > 0);
        if mine {
            st.hold.push(lock);
            st.remove = Some(d.clone());
            return Ok(d);
        }
    }
}

/// Removes run directories whose run is gone: a free lock, or no lock and older than an hour
/// (a run that died between mkdir and lock). Best effort.
pub fn sweep(runs: &Path) {
    let Ok(dir) = fs::read_dir(runs) else {
        return;
    };
    for ent in dir.flatten() {
        let path = ent.path();
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.is_dir() {
            continue;
        }
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path.join(LOCK));
        // Held while removing, so the owner of a just-made dir sees it lost (see run_dir).
        let dead = match &lock {
            Ok(l) => sys::flock(l.as_fd(), true, true).unwrap_or(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                cache::older_than(&m, cache::STALE_AFTER)
            }
            Err(_) => false,
        };
        if dead {
            let _ = extract::remove_tree(&path);
        }
    }
}

/// Holds `.NAME.lock` in `vols` shared for the run (see the module's text), made if missing.
fn volume_lock(vols: &Path, name: &str) -> Result<File, String> {
    let err = |e: io::Error| format!("volume {name}: lock: {e}");
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(vols)
        .map_err(err)?;
    loop {
        let lock = lock_file(&vols.join(crate::cachedir::volume_lock(name)), false).map_err(err)?;
        sys::flock(lock.as_fd(), false, false).map_err(err)?;
        // `volume rm` removes the lock file under its lock: one unlinked meanwhile is dead.
        if sys::fstat(lock.as_fd()).map_err(err)?.st_nlink > 0 {
            return Ok(lock);
        }
    }
}

/// The names of the named volumes among `mounts` after [`setup`] (their directories are the
/// cache's `volumes/NAME`).
pub fn named_volumes(mounts: &[MountSpec]) -> Vec<String> {
    let Some(vols) = cache::Locations::from_env().cache.map(|r| r.join(VOLUMES)) else {
        return Vec::new();
    };
    mounts
        .iter()
        .filter_map(|m| match &m.source {
            Source::VolumeDir(d) if d.parent() == Some(vols.as_path()) => {
                d.file_name()?.to_str().map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

/// A volume's directory, made on first use (its parents private to us).
fn volume_dir(dir: &Path) -> Result<(), String> {
    let err = |e: io::Error| format!("volume {}: {e}", dir.display());
    if let Some(parent) = dir.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(err)?;
    }
    mkdir(dir, 0o755).map_err(err)?;
    let m = fs::symlink_metadata(dir).map_err(err)?;
    if !m.is_dir() {
        return Err(format!("volume {}: not a directory", dir.display()));
    }
    Ok(())
}

/// Fills an empty volume with what the image has at its mount point `at` (Docker's copy of
/// existing content: the entries, then the directory's own mode and owner). A volume with
/// anything in it, or no directory in the image, is left as it is.
pub fn populate(at: &Path, vol: &Path) -> io::Result<()> {
    if fs::read_dir(vol)?.next().is_some() {
        return Ok(());
    }
    let Ok(m) = fs::metadata(at) else {
        return Ok(());
    };
    if !m.is_dir() {
        return Ok(());
    }
    crate::copy::copy_tree(at, vol)?;
    let _ = std::os::unix::fs::chown(vol, Some(m.uid()), Some(m.gid()));
    fs::set_permissions(vol, fs::Permissions::from_mode(m.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_agent_needs_a_socket_and_sets_the_variable_first() {
        let mut f = Flags::default();
        let e = ssh_agent(&mut f, None).unwrap_err();
        assert_eq!(
            e,
            "--ssh-agent: SSH_AUTH_SOCK is not set (no ssh agent on the host)"
        );
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        fs::write(&file, "").unwrap();
        let e = ssh_agent(&mut f, Some(file.clone().into())).unwrap_err();
        assert!(e.ends_with("is not a socket"), "{e}");
        let sock = d.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        f.env.push("A=1".into());
        ssh_agent(&mut f, Some(sock.clone().into())).unwrap();
        assert_eq!(f.env[0], "SSH_AUTH_SOCK=/run/ssh-agent.sock");
        assert_eq!(f.mounts[0].source, Source::Bind(sock));
        assert_eq!(f.mounts[0].target, Path::new(SSH_AGENT_SOCK));
    }

    #[test]
    fn a_persist_dir_is_locked_against_a_second_run_and_must_be_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("p");
        let mut hold = Vec::new();
        assert_eq!(persist(&dir, &mut hold).unwrap(), dir);
        assert!(dir.join("upper").is_dir() && dir.join("work").is_dir());
        let e = persist(&dir, &mut Vec::new()).unwrap_err();
        assert!(e.contains("in use by another run"), "{e}");
        drop(hold);
        persist(&dir, &mut Vec::new()).unwrap();
        let file = d.path().join("file");
        fs::write(&file, "").unwrap();
        let e = persist(&file, &mut Vec::new()).unwrap_err();
        assert!(e.ends_with("not a directory"), "{e}");
    }

    #[test]
    fn sweep_removes_dead_run_dirs_and_keeps_live_ones() {
        let d = tempfile::tempdir().unwrap();
        let mut live = Storage::default();
        let a = run_dir(d.path(), &mut live).unwrap();
        let mut dead = Storage::default();
        let b = run_dir(d.path(), &mut dead).unwrap();
        fs::create_dir_all(b.join("upper/x")).unwrap();
        drop(dead.hold);
        sweep(&d.path().join(RUNS));
        assert!(a.is_dir());
        assert!(!b.exists());
        live.finish_here();
        assert!(!a.exists());
    }

    #[test]
    fn runs_share_a_volume_lock_and_one_waiting_on_a_removal_takes_a_new_one() {
        let d = tempfile::tempdir().unwrap();
        let vols = d.path().join(VOLUMES);
        let (a, b) = (
            volume_lock(&vols, "data").unwrap(),
            volume_lock(&vols, "data").unwrap(),
        );
        let path = vols.join(".data.lock");
        let rm = File::open(&path).unwrap();
        assert!(!sys::flock(rm.as_fd(), true, true).unwrap(), "in use");
        drop((a, b));
        assert!(sys::flock(rm.as_fd(), true, true).unwrap());
        // `volume rm` holds it and removes it; a run that waited meanwhile locks a new file.
        let waiting = std::thread::spawn({
            let vols = vols.clone();
            move || volume_lock(&vols, "data").unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        fs::remove_file(&path).unwrap();
        drop(rm);
        let got = waiting.join().unwrap();
        let now = File::open(&path).unwrap();
        assert_eq!(
            sys::fstat(got.as_fd()).unwrap().st_ino,
            sys::fstat(now.as_fd()).unwrap().st_ino
        );
        assert!(!sys::flock(now.as_fd(), true, true).unwrap());
    }

    #[test]
    fn populate_copies_into_an_empty_volume_only() {
        let d = tempfile::tempdir().unwrap();
        let (img, vol) = (d.path().join("img"), d.path().join("vol"));
        fs::create_dir_all(img.join("sub")).unwrap();
        fs::write(img.join("sub/f"), "x").unwrap();
        fs::create_dir(&vol).unwrap();
        populate(&img, &vol).unwrap();
        assert_eq!(fs::read_to_string(vol.join("sub/f")).unwrap(), "x");
        fs::write(img.join("g"), "y").unwrap();
        populate(&img, &vol).unwrap();
        assert!(
            !vol.join("g").exists(),
            "a volume in use is not filled again"
        );
    }
}
