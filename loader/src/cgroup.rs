//! Cgroups on the host, for [`crate::plan::resources`]: reading where we are (the facts), and
//! the few file operations its steps come down to (create, delegate, join, remove).

use crate::plan::resources::{self, CgroupFacts, V1Controller, V2Group};
use crate::sys::fs as sfs;
use crate::sys::res;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted, by convention (systemd, Docker, every distribution):
/// a v1 controller at `/sys/fs/cgroup/NAME` (a symlink for co-mounted ones), the unified
/// hierarchy at `/sys/fs/cgroup` itself (v2 only) or `/sys/fs/cgroup/unified` (hybrid).
const ROOT: &str = "/sys/fs/cgroup";

/// Reads our cgroups in each v1 hierarchy of `wanted` and in the unified one. Only called
/// when a cgroup flag is given.
pub fn facts(wanted: &[&str]) -> CgroupFacts {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let root = Path::new(ROOT);
    let v2 = [root, &root.join("unified")]
        .into_iter()
        .find(|m| m.join("cgroup.controllers").exists())
        .map(|mount| {
            let dir = our_dir(mount, own_path(&own, str::is_empty));
            V2Group {
                writable: res::writable(&dir) && res::writable(&dir.join("cgroup.subtree_control")),
                controllers: fs::read_to_string(dir.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                dir,
            }
        });
    let v1 = wanted
        .iter()
        .filter_map(|&name| {
            let path = own_path(&own, |list| list.split(',').any(|c| c == name))?;
            let dir = our_dir(&root.join(name), Some(path));
            Some(V1Controller {
                name: name.into(),
                writable: res::writable(&dir),
                memsw: dir.join("memory.memsw.limit_in_bytes").exists(),
                mems: fs::read_to_string(dir.join("cpuset.mems"))
                    .ok()
                    .map(|m| m.trim().to_string()),
                dir,
            })
        })
        .collect();
    CgroupFacts {
        pid: std::process::id(),
        cpus: online_cpus(),
        v1,
        v2,
    }
}

/// Our directory under a hierarchy's mount: the mount plus our path, or the mount itself when
/// that is not there (a mount of our own group only, as in a container without a cgroup
/// namespace).
fn our_dir(mount: &Path, path: Option<&str>) -> PathBuf {
    let dir = mount.join(path.unwrap_or("").trim_start_matches('/'));
    if dir.is_dir() {
        dir
    } else {
        mount.to_path_buf()
    }
}

/// Our path in the hierarchy whose controller list (the second field of `/proc/self/cgroup`)
/// satisfies `is`.
fn own_path(own: &str, is: impl Fn(&str) -> bool) -> Option<&str> {
    own.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, list, path) = (p.next()?, p.next()?, p.next()?);
        is(list).then_some(path)
    })
}

/// The number of online CPUs (`/sys/devices/system/cpu/online`: `0-3,6`).
fn online_cpus() -> u32 {
    let s = fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    s.trim()
        .split(',')
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some(b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1),
            None => r.parse::<u32>().ok().map(|_| 1),
        })
        .sum()
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    // One write(2) per value: cgroup files take a value per write.
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// Removes groups of ours beside `dir` that a killed loader left behind (empty, their pid gone).
fn sweep(dir: &Path) {
    let Some(parent) = dir
        .parent()
        .and_then(|p| CString::new(p.as_os_str().as_bytes()).ok())
    else {
        return;
    };
    let Ok(fd) = sfs::openat(sfs::cwd(), &parent, sfs::O_RDONLY | sfs::O_DIRECTORY, 0) else {
        return;
    };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    for name in sfs::read_dir(fd.as_fd()).unwrap_or_default() {
        if resources::is_stale(&name.to_string_lossy(), alive) {
            // rmdir refuses a group that still has tasks: only empty ones go.
            let _ = sfs::unlinkat(fd.as_fd(), &name, true);
        }
    }
}

/// Creates `dir` and writes `files` into it in order. On failure the half-made group is gone.
pub fn create(dir: &Path, files: &[(&str, String)]) -> io::Result<()> {
    sweep(dir);
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        r => r.map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", dir.display())))?,
    }
    for (file, value) in files {
        if let Err(e) = write(&dir.join(file), value) {
            let _ = fs::remove_dir(dir);
            return Err(io::Error::new(
                e.kind(),
                format!("write {value} to {}: {e}", dir.join(file).display()),
            ));
        }
    }
    Ok(())
}

/// cgroup v2: enables `controllers` (`+memory +pids`) for the children of `group`'s parent. A
/// cgroup with processes cannot delegate (no internal processes), so we first move into the
/// leaf `GROUP-loader` beside the container's group, as crun does.
pub fn delegate(group: &Path, controllers: &str) -> io::Result<()> {
    let dir = group.parent().unwrap_or(group);
    let mut own = group.as_os_str().to_owned();
    own.push("-loader");
    let own = Path::new(&own);
    let control = dir.join("cgroup.subtree_control");
    if write(&control, controllers).is_ok() {
        return Ok(());
    }
    sweep(own);
    match fs::create_dir(own) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        r => r?,
    }
    join(own)?;
    write(&control, controllers)
        .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", control.display())))
}

/// Moves this process into the group `dir`; a group that is not there was not made (that was
/// warned about) and is skipped.
pub fn join(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let procs = dir.join("cgroup.procs");
    write(&procs, "0").map_err(|e| io::Error::new(e.kind(), format!("join {}: {e}", dir.display())))
}

/// Removes the container's group once it is empty (its last tasks may take a moment to leave
/// after PID 1 is reaped).
pub fn remove(dir: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => return r,
        }
    }
}

/// The groups a run created, removed by the supervisor when the container has ended.
#[derive(Debug, Default)]
pub struct Created(pub Vec<PathBuf>);

impl Created {
    pub fn remove_all(&mut self) {
        for dir in self.0.drain(..) {
            if let Err(e) = remove(&dir) {
                let _ = writeln!(
                    io::stderr(),
                    "oci2bin: warning: remove cgroup {}: {e}",
                    dir.display()
                );
            }
        }
    }
}
