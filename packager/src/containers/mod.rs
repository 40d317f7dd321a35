//! Containers of named and detached runs (`./file --name NAME`, `./file -d`): `oci2bin ps`,
//! `stop`, `kill`, `logs`, `rm`, `inspect NAME` and `exec`. The loader writes each one's state
//! under the cache (`loader::containers` is the contract); here it is read with serde.
//!
//! A state never makes us signal a stranger: a pid counts as the container's only while
//! `/proc/PID/stat` shows the start time the loader recorded for it. A state that says running
//! whose process is gone (its supervisor was killed, the machine rebooted) shows as exited.

pub mod commands;
mod signals;
mod time;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use loader::containers::{self as contract, CONTAINERS, STATE};

pub use signals::signal_number;

/// `state.json`, as the loader writes it: one type, the loader's.
pub use contract::State;

/// One container: its directory and its state, read once.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub state: State,
}

/// Whether host pid `pid` is alive and is the process that started at `start`.
pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| contract::start_time(&s))
            == Some(start)
}

impl Container {
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The container's PID 1 is alive (and is still ours).
    pub fn running(&self) -> bool {
        self.state.status == "running" && alive(self.state.pid, self.state.pid_start)
    }

    /// The supervisor of the run is alive: the state may still change.
    pub fn supervised(&self) -> bool {
        alive(self.state.supervisor_pid, self.state.supervisor_start)
    }

    /// The state as it is now: a run whose processes are gone is exited, whatever the file says.
    pub fn current(&self) -> State {
        let mut s = self.state.clone();
        let live = match s.status.as_str() {
            // PID 1 just ended and its live supervisor has not written the outcome yet (exited,
            // or restarting): the file is about to change, so it is not stale yet.
            "running" => self.running() || self.supervised(),
            "restarting" => self.supervised(),
            _ => true,
        };
        if !live {
            s.status = "exited".into();
        }
        s
    }

    /// Reads the state again (after a stop, say).
    pub fn reload(&self) -> Result<Container> {
        read(&self.dir)
    }
}

/// Where the states live: `$XDG_CACHE_HOME/oci2bin/containers` (else under `$HOME/.cache`).
pub fn root() -> Result<PathBuf> {
    loader::cachedir::root_from_vars(|k| std::env::var_os(k))
        .map(|r| r.join(CONTAINERS))
        .context("no cache directory: set HOME or XDG_CACHE_HOME")
}

fn read(dir: &Path) -> Result<Container> {
    let path = dir.join(STATE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let state = serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    Ok(Container {
        dir: dir.to_path_buf(),
        state,
    })
}

/// Every container with a readable state, the newest first.
pub fn list() -> Result<Vec<Container>> {
    let root = root()?;
    let entries = match std::fs::read_dir(&root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.with_context(|| format!("read {}", root.display()))?,
    };
    let mut all: Vec<Container> = entries.filter_map(|e| read(&e.ok()?.path()).ok()).collect();
    all.sort_by(|a, b| b.state.created.cmp(&a.state.created));
    Ok(all)
}

/// The container a user means by `query`: a name, an ID or a unique prefix of one, or the host
/// pid of a live container's PID 1 or supervisor.
pub fn find(query: &str) -> Result<Container> {
    let all = list()?;
    if let Some(c) = all
        .iter()
        .find(|c| c.state.name == query || c.state.id == query)
    {
        return Ok(c.clone());
    }
    if let Ok(pid) = query.parse::<i32>() {
        let by_pid = all.iter().find(|c| {
            (c.state.pid == pid && c.running()) || (c.state.supervisor_pid == pid && c.supervised())
        });
        if let Some(c) = by_pid {
            return Ok(c.clone());
        }
    }
    let prefixed: Vec<&Container> = all
        .iter()
        .filter(|c| !query.is_empty() && c.state.id.starts_with(query))
        .collect();
    match prefixed[..] {
        [c] => Ok(c.clone()),
        [] => bail!("no such container: {query}"),
        _ => bail!("{query} is a prefix of more than one container ID: give more of it"),
    }
}
