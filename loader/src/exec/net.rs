//! The network steps of the executor: the helper (slirp4netns, pasta) that connects the
//! container's network namespace, its published ports, and joined namespaces.
//!
//! The helper needs the namespace it connects, which the supervisor creates with `unshare`; the
//! helper itself must stay in the host's namespaces. So [`start`] forks it before the `unshare`
//! and it waits on a pipe; [`ready`] lets it go on the supervisor's PID (its parent's, which is
//! in the new namespaces by then) and waits until the namespace is configured. The helper is
//! our child with PR_SET_PDEATHSIG: it dies with the supervisor on every exit path (kill -9
//! included), and the supervisor ends right after the container.

use super::{exec_command, fail, ExecError, EXIT_OURS};
use crate::plan::net::{Helper, Publish, Ready};
use crate::sys::net as snet;
use crate::sys::ns;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A started helper, between [`start`] and [`ready`].
struct Started {
    name: String,
    pid: ns::pid_t,
    go: OwnedFd,
    ready_fd: OwnedFd,
    ready: Ready,
    /// Its standard error, read when it fails.
    log: fs::File,
}

// The executor is one single-threaded loop; this only carries the helper from one step to the
// next.
static STARTED: Mutex<Option<Started>> = Mutex::new(None);

/// `{pid}` in a helper argument is the supervisor's PID.
fn with_pid(a: &str, pid: ns::pid_t) -> String {
    a.replace("{pid}", &pid.to_string())
}

/// [`crate::plan::Step::NetHelper`].
pub(super) fn start(h: &Helper) -> Result<(), ExecError> {
    let name = h.argv.first().cloned().unwrap_or_default();
    let log = snet::memfd(c"oci2bin-net").map_err(|e| fail("memfd_create", e))?;
    let (go_r, go_w) = ns::pipe().map_err(|e| fail("pipe", e))?;
    let (ready_r, ready_w) = ns::pipe().map_err(|e| fail("pipe", e))?;
    let pid = match ns::fork().map_err(|e| fail("fork", e))? {
        ns::Forked::Child => {
            drop((go_w, ready_r));
            let code = launch(h, go_r, ready_w, log);
            ns::exit_now(code)
        }
        ns::Forked::Parent(pid) => pid,
    };
    *STARTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Started {
        name,
        pid,
        go: go_w,
        ready_fd: ready_r,
        ready: h.ready,
        log: fs::File::from(log),
    });
    Ok(())
}

/// In the helper's process: wait for the go, then exec the helper with the ready pipe as
/// descriptor 3 and its output into the log. Returns only on failure.
fn launch(h: &Helper, go: OwnedFd, ready: OwnedFd, log: OwnedFd) -> i32 {
    let parent = ns::parent_pid();
    if ns::kill_with_parent().is_err() || ns::parent_pid() != parent {
        return 1;
    }
    let mut byte = [0u8];
    // EOF: the supervisor gave up before the namespaces existed.
    if !matches!(fs::File::from(go).read(&mut byte), Ok(1)) {
        return 0;
    }
    let null = fs::OpenOptions::new().write(true).open("/dev/null");
    let out = null.as_ref().map_or(log.as_fd(), |f| f.as_fd());
    let netns = match h.ready {
        Ready::Fd3 => None,
        Ready::Route => match fs::File::open(format!("/proc/{parent}/ns/net")) {
            Ok(f) => Some(f),
            Err(e) => {
                let _ = writeln!(fs::File::from(log), "open /proc/{parent}/ns/net: {e}");
                return 1;
            }
        },
    };
    let fd3 = netns.as_ref().map_or(ready.as_fd(), |f| f.as_fd());
    if ns::dup_to(fd3, 3).is_err()
        || ns::dup_to(out, 1).is_err()
        || ns::dup_to(log.as_fd(), 2).is_err()
    {
        return 1;
    }
    ns::close_fds_from(4);
    let argv: Vec<CString> = h
        .argv
        .iter()
        .filter_map(|a| CString::new(with_pid(a, parent)).ok())
        .collect();
    let mut path = crate::plan::DEFAULT_PATH.as_bytes().to_vec();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            if k == "PATH" {
                path = v.as_bytes().to_vec();
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let e = exec_command(&argv, &env, &path);
    let _ = writeln!(io::stderr(), "{e}");
    127
}

/// [`crate::plan::Step::NetHelperReady`].
pub(super) fn ready() -> Result<(), ExecError> {
    let Some(s) = STARTED.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Err(ExecError {
            code: EXIT_OURS,
            message: "network helper was not started".into(),
        });
    };
    let Started {
        name,
        pid,
        go,
        ready_fd,
        ready,
        mut log,
    } = s;
    fs::File::from(go)
        .write_all(b"1")
        .map_err(|e| fail(format_args!("start {name}"), e))?;
    let mut failed = |why: String| {
        let mut text = String::new();
        let _ = log.rewind();
        let _ = log.read_to_string(&mut text);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            // pasta tells about its syslog, which a user of ours does not need.
            .filter(|l| !l.is_empty() && !l.contains("to syslog"))
            .collect();
        let said = if lines.is_empty() {
            why
        } else {
            lines.join("; ")
        };
        ExecError {
            code: EXIT_OURS,
            message: format!("--net {name}: {said}"),
        }
    };
    match ready {
        Ready::Fd3 => {
            let mut byte = [0u8];
            match fs::File::from(ready_fd).read(&mut byte) {
                Ok(1) => Ok(()),
                _ => {
                    let status = ns::wait_for(pid);
                    Err(failed(format!("exited ({status:?}) before it was ready")))
                }
            }
        }
        Ready::Route => {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if fs::read_to_string("/proc/self/net/route")
                    .is_ok_and(|r| crate::plan::net::default_gateway(&r).is_some())
                {
                    return Ok(());
                }
                if let Ok(Some((_, status))) = ns::reap(pid) {
                    return Err(failed(format!("exited ({status:?}) before it was ready")));
                }
                if Instant::now() > deadline {
                    let _ = ns::kill(pid, ns::SIGKILL);
                    return Err(failed("no default route after 10 s".into()));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// [`crate::plan::Step::SlirpForward`]: one `add_hostfwd` request per port on slirp4netns's API
/// socket; a refused one (a host port in use) fails the start. The socket is removed after.
pub(super) fn forward(api: &Path, ports: &[Publish]) -> Result<(), ExecError> {
    let api = std::path::PathBuf::from(with_pid(&api.to_string_lossy(), std::process::id() as _));
    let r = ports.iter().try_for_each(|p| {
        let shown = format!(
            "-p {}{}:{}/{}",
            p.ip.as_deref().map_or(String::new(), |ip| format!("{ip}:")),
            p.host,
            p.ctr,
            if p.udp { "udp" } else { "tcp" }
        );
        let request = format!(
            "{{\"execute\":\"add_hostfwd\",\"arguments\":{{\"proto\":\"{}\",\"host_addr\":\"{}\",\
             \"host_port\":{},\"guest_port\":{}}}}}",
            if p.udp { "udp" } else { "tcp" },
            p.ip.as_deref().unwrap_or("0.0.0.0"),
            p.host,
            p.ctr
        );
        let mut reply = String::new();
        std::os::unix::net::UnixStream::connect(&api)
            .and_then(|mut c| {
                c.write_all(request.as_bytes())?;
                c.shutdown(std::net::Shutdown::Write)?;
                c.read_to_string(&mut reply)
            })
            .map_err(|e| {
                fail(
                    format_args!("{shown}: slirp4netns API {}", api.display()),
                    e,
                )
            })?;
        if reply.contains("\"error\"") {
            // {"error":{"desc":"…"}}: the description alone.
            let desc = reply
                .split_once("\"desc\":\"")
                .and_then(|(_, d)| d.split('"').next())
                .unwrap_or(reply.trim());
            return Err(ExecError {
                code: EXIT_OURS,
                message: format!(
                    "{shown}: host port {} cannot be bound (in use?): slirp4netns: {desc}",
                    p.host
                ),
            });
        }
        Ok(())
    });
    let _ = fs::remove_file(&api);
    r
}

/// [`crate::plan::Step::JoinNs`]: the user namespace of the process first (so we hold the
/// capabilities its other namespaces demand), unless it is ours already.
pub(super) fn join(net: Option<u32>, ipc: Option<u32>) -> Result<(), ExecError> {
    let open = |pid: u32, kind: &str| {
        let path = format!("/proc/{pid}/ns/{kind}");
        fs::File::open(&path).map_err(|e| ExecError {
            code: EXIT_OURS,
            message: match e.raw_os_error() {
                Some(libc::ENOENT) => format!("container:{pid}: no such process"),
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    format!("container:{pid}: process {pid} is not yours ({path}: {e})")
                }
                _ => format!("container:{pid}: {path}: {e}"),
            },
        })
    };
    let mut users = Vec::new();
    let mut joins = Vec::new();
    for (pid, kind, flag) in [(net, "net", ns::NEW_NET), (ipc, "ipc", ns::NEW_IPC)] {
        let Some(pid) = pid else { continue };
        users.push((pid, open(pid, "user")?));
        joins.push((pid, kind, flag, open(pid, kind)?));
    }
    use std::os::unix::fs::MetadataExt;
    let id = |f: &fs::File| f.metadata().map(|m| (m.dev(), m.ino())).ok();
    let ours = fs::File::open("/proc/self/ns/user").ok();
    let mut joined = ours.as_ref().and_then(id);
    for (pid, user) in &users {
        let other = id(user);
        if other.is_some() && other == joined {
            continue;
        }
        if joined != ours.as_ref().and_then(id) {
            return Err(ExecError {
                code: EXIT_OURS,
                message: format!(
                    "container:{pid}: --net and --ipc name containers in different user namespaces"
                ),
            });
        }
        snet::setns(user.as_fd(), ns::NEW_USER)
            .map_err(|e| fail(format_args!("container:{pid}: join its user namespace"), e))?;
        joined = other;
    }
    for (pid, kind, flag, f) in &joins {
        snet::setns(f.as_fd(), *flag).map_err(|e| {
            fail(
                format_args!("container:{pid}: join its {kind} namespace"),
                e,
            )
        })?;
    }
    Ok(())
}
