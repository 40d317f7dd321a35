//! The subcommands that manage containers: `ps`, `stop`, `kill`, `logs`, `rm`, `inspect NAME`,
//! `port` and `exec`, in Docker's spelling.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use loader::containers::{EXEC_INTO, EXEC_SECCOMP, LOG, SECCOMP, STOP_REQUESTED};
use rustix::process::{kill_process, Pid, Signal};

use super::time::{human, since};
use super::{find, list, signal_number, Container, State};
use loader::containers::Port;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container (by default only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Print the states as a JSON array
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's
    /// --stop-timeout, else 10)
    #[arg(
        short = 't',
        long = "time",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub time: Option<i64>,
    /// Container names, IDs (or unique prefixes) or PIDs
    #[arg(required = true, value_name = "NAME|ID|PID")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (a name such as TERM or SIGUSR1, or a number)
    #[arg(short, long, value_name = "SIG", default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "NAME|ID|PID")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all": every line)
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Show each line's time (RFC 3339)
    #[arg(short, long)]
    pub timestamps: bool,
    #[arg(value_name = "NAME|ID|PID")]
    pub container: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove a running container too (it is killed first)
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "NAME|ID|PID")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[arg(value_name = "NAME|ID|PID")]
    pub container: String,
    /// Only this container port (tcp unless /udp is given)
    #[arg(value_name = "CTRPORT[/PROTO]")]
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open (it always is); with -t, stdin must be a terminal
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal (from the container's own devpts)
    #[arg(short, long)]
    pub tty: bool,
    /// Every capability of the container's namespace and no seccomp filter for the command
    #[arg(long)]
    pub privileged: bool,
    /// Set an environment variable (K=V; a bare K takes ours)
    #[arg(short, long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the container's)
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (UID[:GID] or NAME[:GROUP]; default: the container's)
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    #[arg(value_name = "NAME|ID|PID")]
    pub container: String,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// The host side of a published port as Docker shows it: `0.0.0.0:32768`, `[::1]:32768`.
fn host_side(p: &Port) -> String {
    match p.host_ip.contains(':') {
        true => format!("[{}]:{}", p.host_ip, p.host_port),
        false => format!("{}:{}", p.host_ip, p.host_port),
    }
}

/// The ports a container publishes now: those of its state while it runs (Docker shows none
/// for a stopped one), by container port.
fn live_ports(s: &State) -> Vec<&Port> {
    let mut ports: Vec<&Port> = match s.status.as_str() {
        "running" => s.ports.iter().collect(),
        _ => Vec::new(),
    };
    ports.sort_by_key(|p| (p.container_port, p.protocol.clone(), p.host_port));
    ports
}

/// Docker's PORTS column: `0.0.0.0:32768->6379/tcp, …`.
fn ports_column(s: &State) -> String {
    let all: Vec<String> = live_ports(s)
        .iter()
        .map(|p| format!("{}->{}/{}", host_side(p), p.container_port, p.protocol))
        .collect();
    all.join(", ")
}

/// A line of `ps`: Docker's columns, plus the host PID of the container's PID 1.
fn ps_row(s: &State) -> [String; 8] {
    let mut cmd = s.command.join(" ");
    if cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let ago = |t: &str| since(t).map(human).unwrap_or_else(|| "?".into());
    let status = match s.status.as_str() {
        "running" => format!("Up {}", ago(&s.started)),
        "restarting" => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            ago(&s.finished)
        ),
        _ => match (s.exit_code, s.finished.is_empty()) {
            (Some(c), false) => format!("Exited ({c}) {} ago", ago(&s.finished)),
            _ => "Exited (unknown)".into(),
        },
    };
    let pid = if s.status == "running" {
        s.pid.to_string()
    } else {
        "-".into()
    };
    [
        s.id.chars().take(12).collect(),
        s.image.clone(),
        format!("\"{cmd}\""),
        format!("{} ago", ago(&s.created)),
        status,
        ports_column(s),
        pid,
        s.name.clone(),
    ]
}

pub fn ps(a: PsArgs) -> Result<()> {
    let states: Vec<State> = list()?
        .iter()
        .map(Container::current)
        .filter(|s| a.all || s.status != "exited")
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&states)?);
        return Ok(());
    }
    let head = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "PID",
        "NAMES",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = std::iter::once(head)
        .chain(states.iter().map(ps_row))
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..8).map(width).collect();
    let mut out = std::io::stdout().lock();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i < 7 {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn signal(pid: i32, sig: i32) -> Result<()> {
    let p = Pid::from_raw(pid).context("pid 0")?;
    let s = Signal::from_named_raw(sig).with_context(|| format!("signal {sig}"))?;
    kill_process(p, s).with_context(|| format!("kill process {pid} with signal {sig}"))
}

/// Waits until `done` holds or `limit` passes (`None`: for ever); whether it held.
fn wait_until(limit: Option<Duration>, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if limit.is_some_and(|l| start.elapsed() >= l) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Marks the end as the user's: no restart policy starts it again.
fn request_stop(c: &Container) -> Result<()> {
    let p = c.dir.join(STOP_REQUESTED);
    std::fs::write(&p, b"").with_context(|| format!("write {}", p.display()))
}

/// Waits (a while) for the supervisor to record the end, so `ps` and `logs` right after see it.
fn settle(c: &Container) {
    wait_until(Some(Duration::from_secs(10)), || !c.supervised());
}

/// Docker's stop: the stop signal, then SIGKILL after the timeout.
pub fn stop(a: StopArgs) -> Result<()> {
    for q in &a.containers {
        let c = find(q)?;
        if c.running() {
            request_stop(&c)?;
            let limit = match a.time {
                Some(t) if t < 0 => None,
                Some(t) => Some(Duration::from_secs(t as u64)),
                None => match c.state.stop_timeout {
                    Some(t) => Some(Duration::from_secs(t.into())),
                    None if c.state.stop_signal == 0 => Some(Duration::from_secs(10)),
                    None => None,
                },
            };
            let sig = if c.state.stop_signal > 0 {
                c.state.stop_signal
            } else {
                15
            };
            let _ = signal(c.state.pid, sig);
            if !wait_until(limit, || !c.running()) {
                let _ = signal(c.state.pid, 9);
                wait_until(Some(Duration::from_secs(10)), || !c.running());
            }
        } else if c.supervised() {
            // Between two starts of a restart policy: the supervisor ends the policy.
            request_stop(&c)?;
            let _ = signal(c.state.supervisor_pid, 15);
        }
        settle(&c);
        println!("{}", c.name());
    }
    Ok(())
}

pub fn kill(a: KillArgs) -> Result<()> {
    let sig = signal_number(&a.signal).with_context(|| format!("invalid signal: {}", a.signal))?;
    for q in &a.containers {
        let c = find(q)?;
        if !c.running() {
            bail!("cannot kill container {}: it is not running", c.name());
        }
        // A kill that ends the container ends its restart policy too.
        if sig == 9 || sig == c.state.stop_signal {
            request_stop(&c)?;
        }
        signal(c.state.pid, sig)?;
        println!("{}", c.name());
    }
    Ok(())
}

/// One entry of a json-file log.
#[derive(serde::Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

fn print_entry(e: &Entry, timestamps: bool) -> Result<()> {
    let text = if timestamps {
        format!("{} {}", e.time, e.log)
    } else {
        e.log.clone()
    };
    // A closed pipe (`| head`) ends us quietly.
    let r = if e.stream == "stderr" {
        let mut err = std::io::stderr().lock();
        err.write_all(text.as_bytes()).and_then(|()| err.flush())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        return Err(e.into());
    }
    Ok(())
}

pub fn logs(a: LogsArgs) -> Result<()> {
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse()
                .with_context(|| format!("invalid --tail {n}: want a number of lines or all"))?,
        ),
    };
    let c = find(&a.container)?;
    let path = c.dir.join(LOG);
    let file = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "container {} has no log: only a detached run (-d) keeps one",
                c.name()
            )
        } else {
            anyhow::Error::new(e).context(format!("open {}", path.display()))
        }
    })?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut pending = String::new();
    read_complete(&mut reader, &mut pending, &mut |e| entries.push(e))?;
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print_entry(e, a.timestamps)?;
    }
    if !a.follow {
        return Ok(());
    }
    loop {
        // Whether the run was over before this read: then nothing more can come after it.
        let over = !c.reload().is_ok_and(|c| c.supervised());
        read_complete(&mut reader, &mut pending, &mut |e| {
            let _ = print_entry(&e, a.timestamps);
        })?;
        if over {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the whole lines that are there; a partial last line waits in `pending`.
fn read_complete(
    reader: &mut BufReader<std::fs::File>,
    pending: &mut String,
    each: &mut dyn FnMut(Entry),
) -> Result<()> {
    loop {
        let n = reader.read_line(pending)?;
        if n == 0 || !pending.ends_with('\n') {
            // At the end: keep a partial line for the next read.
            let len = pending.len() as i64;
            if n > 0 && len > 0 {
                reader.seek(SeekFrom::Current(-len))?;
                pending.clear();
            }
            return Ok(());
        }
        if let Ok(e) = serde_json::from_str::<Entry>(pending.trim_end()) {
            each(e);
        }
        pending.clear();
    }
}

pub fn rm(a: RmArgs) -> Result<()> {
    for q in &a.containers {
        let c = find(q)?;
        if c.running() || c.supervised() {
            if !a.force {
                bail!(
                    "cannot remove container {}: it is running (stop it first, or rm -f)",
                    c.name()
                );
            }
            request_stop(&c)?;
            if c.running() {
                let _ = signal(c.state.pid, 9);
            } else {
                let _ = signal(c.state.supervisor_pid, 15);
            }
            settle(&c);
        }
        std::fs::remove_dir_all(&c.dir).with_context(|| format!("remove {}", c.dir.display()))?;
        println!("{}", c.name());
    }
    Ok(())
}

/// `port NAME [CTRPORT[/PROTO]]`, as `docker port` prints: every mapping as
/// `6379/tcp -> 0.0.0.0:32768`, or the host side of one container port.
pub fn port(a: PortArgs) -> Result<()> {
    let c = find(&a.container)?;
    let s = c.current();
    let ports = live_ports(&s);
    let Some(want) = a.port else {
        for p in ports {
            println!("{}/{} -> {}", p.container_port, p.protocol, host_side(p));
        }
        return Ok(());
    };
    let (num, proto) = want.split_once('/').unwrap_or((&want, "tcp"));
    let num: u16 = num
        .parse()
        .with_context(|| format!("invalid port {want}: want CTRPORT[/tcp|udp]"))?;
    let hits: Vec<&&Port> = ports
        .iter()
        .filter(|p| p.container_port == num && p.protocol == proto)
        .collect();
    if hits.is_empty() {
        bail!("no public port '{num}/{proto}' published for {}", c.name());
    }
    for p in hits {
        println!("{}", host_side(p));
    }
    Ok(())
}

/// `inspect NAME`: the container's state as JSON, as it is now.
pub fn inspect(query: &str) -> Result<()> {
    let c = find(query)?;
    println!("{}", serde_json::to_string_pretty(&c.current())?);
    Ok(())
}

/// Whether `inspect X` means a container: X is not a path to a file and names one.
pub fn is_container(x: &Path) -> bool {
    !x.exists() && x.to_str().is_some_and(|s| find(s).is_ok())
}

/// `exec`: runs the container's own file in its exec mode; returns the command's exit status.
/// The command gets the container's environment, user, working directory and security (the
/// run's capabilities, no_new_privs and seccomp filter), each as the run recorded it.
pub fn exec(a: ExecArgs) -> Result<i32> {
    let c = find(&a.container)?;
    if !c.running() {
        bail!("container {} is not running", c.name());
    }
    let s = &c.state;
    let mut cmd = std::process::Command::new(&s.file);
    cmd.env(EXEC_INTO, s.pid.to_string())
        .env_remove(EXEC_SECCOMP);
    cmd.args(exec_flags(&a, s));
    if s.seccomp && !(a.privileged || s.privileged) {
        cmd.env(EXEC_SECCOMP, c.dir.join(SECCOMP));
    }
    let status = cmd
        .status()
        .with_context(|| format!("run {} (the container's file)", s.file))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125))
}

/// The loader's flags for an exec: the container's environment, user, working directory and
/// security, then ours, then the command.
fn exec_flags(a: &ExecArgs, s: &State) -> Vec<String> {
    let mut f: Vec<String> = s
        .env
        .iter()
        .chain(&a.env)
        .map(|e| format!("--env={e}"))
        .collect();
    let user = a.user.as_deref().unwrap_or(&s.user);
    if !user.is_empty() {
        f.push(format!("--user={user}"));
    }
    let dir = a.workdir.as_deref().unwrap_or(&s.workdir);
    if !dir.is_empty() {
        f.push(format!("--workdir={dir}"));
    }
    f.extend(s.cap_add.iter().map(|c| format!("--cap-add={c}")));
    f.extend(s.cap_drop.iter().map(|c| format!("--cap-drop={c}")));
    if a.privileged || s.privileged {
        f.push("--privileged".into());
    }
    if s.no_new_privileges {
        f.push("--security-opt=no-new-privileges".into());
    }
    for (on, flag) in [(a.tty, "--tty"), (a.interactive, "--interactive")] {
        if on {
            f.push(flag.into());
        }
    }
    f.push("--".into());
    f.extend(a.command.iter().cloned());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        exec: ExecArgs,
    }

    fn exec_args(args: &[&str]) -> ExecArgs {
        Cli::parse_from(std::iter::once("exec").chain(args.iter().copied())).exec
    }

    #[test]
    fn exec_passes_the_runs_security_then_ours_then_the_command() {
        let s = State {
            env: vec!["A=1".into()],
            user: "0:0".into(),
            workdir: "/srv".into(),
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            no_new_privileges: true,
            seccomp: true,
            ..State::default()
        };
        let f = exec_flags(&exec_args(&["-it", "-u", "33", "web", "sh", "-x"]), &s);
        assert_eq!(
            f,
            [
                "--env=A=1",
                "--user=33",
                "--workdir=/srv",
                "--cap-add=NET_ADMIN",
                "--cap-drop=ALL",
                "--security-opt=no-new-privileges",
                "--tty",
                "--interactive",
                "--",
                "sh",
                "-x"
            ]
        );
        let privileged = State {
            privileged: true,
            ..State::default()
        };
        for (args, s) in [
            (&["--privileged", "web", "id"][..], &s),
            (&["web", "id"][..], &privileged),
        ] {
            let f = exec_flags(&exec_args(args), s);
            assert!(f.contains(&"--privileged".to_string()), "{f:?}");
        }
    }

    fn port(ip: &str, host: u16, ctr: u16, proto: &str) -> Port {
        Port {
            host_ip: ip.into(),
            host_port: host,
            container_port: ctr,
            protocol: proto.into(),
        }
    }

    #[test]
    fn the_state_the_loader_writes_reads_back_with_its_ports_and_volumes() {
        let s = State {
            id: "ab".into(),
            status: "running".into(),
            ports: vec![port("0.0.0.0", 32768, 6379, "tcp")],
            volumes: vec!["data".into()],
            ..State::default()
        };
        let back: State = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back, s);
        // A state written before the fields existed has none.
        let old: State = serde_json::from_str(r#"{"id":"ab","status":"running"}"#).unwrap();
        assert!(old.ports.is_empty() && old.volumes.is_empty());
    }

    #[test]
    fn ps_shows_published_ports_as_dockers_ports_column_while_running() {
        let mut s = State {
            status: "running".into(),
            ports: vec![
                port("::1", 8053, 53, "udp"),
                port("0.0.0.0", 32768, 6379, "tcp"),
            ],
            ..State::default()
        };
        assert_eq!(
            ports_column(&s),
            "[::1]:8053->53/udp, 0.0.0.0:32768->6379/tcp"
        );
        assert_eq!(ps_row(&s)[5], ports_column(&s));
        s.status = "exited".into();
        assert_eq!(ports_column(&s), "");
    }
}
