//! Cgroups on the host, for [`crate::plan::resources`]: reading where we are (the facts), and
//! the few file operations its steps come down to (create, delegate, join, remove).

use crate::plan::resources::{self, CgroupFacts, V1Controller, V2Group};
use crate::sys::res;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Reads our cgroups in each hierarchy that offers one of `wanted` (v1) and the unified one.
/// Only called when a cgroup flag is given.
pub fn facts(wanted: &[&str]) -> CgroupFacts {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut f = CgroupFacts {
        pid: std::process::id(),
        cpus: online_cpus(),
        ..Default::default()
    };
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype)) = (l.get(3), l.get(4), r.first()) else {
            continue;
        };
        let mount = Path::new(mount);
        match *fstype {
            "cgroup2" if f.v2.is_none() => {
                let path = own_path(&own, |c| c.is_empty()).unwrap_or("/");
                let dir = resources::v1_dir(mount, root, path);
                let controllers = fs::read_to_string(dir.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                f.v2 = Some(V2Group {
                    writable: res::writable(&dir)
                        && res::writable(&dir.join("cgroup.subtree_control")),
                    controllers,
                    dir,
                });
            }
            "cgroup" => {
                let opts = r.get(2).copied().unwrap_or("");
                for name in opts.split(',').filter(|o| wanted.contains(o)) {
                    if f.v1.iter().any(|c| c.name == name) {
                        continue;
                    }
                    let has = |list: &str| list.split(',').any(|c| c == name);
                    let Some(path) = own_path(&own, has) else {
                        continue;
                    };
                    let dir = resources::v1_dir(mount, root, path);
                    f.v1.push(V1Controller {
                        name: name.into(),
                        writable: res::writable(&dir),
                        memsw: name == "memory" && dir.join("memory.memsw.limit_in_bytes").exists(),
                        mems: (name == "cpuset")
                            .then(|| fs::read_to_string(dir.join("cpuset.mems")).ok())
                            .flatten()
                            .map(|m| m.trim().to_string()),
                        dir,
                    });
                }
            }
            _ => {}
        }
    }
    f
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
    let Some(parent) = dir.parent() else { return };
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        if resources::is_stale(&name.to_string_lossy(), alive) {
            // rmdir refuses a group that still has tasks: only empty ones go.
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// Creates `dir` and writes `files` into it in order. On failure the half-made group is gone.
pub fn create(dir: &Path, files: &[(String, String)]) -> io::Result<()> {
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

/// cgroup v2: enables `controllers` (`+memory +pids`) for the children of `dir`. A cgroup with
/// processes cannot delegate (no internal processes), so we first move into the leaf `own`
/// beside the container's group, as crun does.
pub fn delegate(dir: &Path, own: &Path, controllers: &str) -> io::Result<()> {
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
