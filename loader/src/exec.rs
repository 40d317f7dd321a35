//! The executor: applies a plan's [`Step`]s in order. It decides nothing; every choice was made
//! by [`crate::plan`].
//!
//! Process shape: the calling process (the supervisor) enters the user/pid/uts/ipc namespaces,
//! maps its ids and forks at [`Step::Fork`]; it then only forwards signals and waits, and
//! [`run`] returns the container's exit status there. The child is PID 1 of the new pid
//! namespace: it builds the root in its own mount namespace and execs the command (or, with
//! `--init`, becomes its reaper). It never returns from [`run`]: on error it prints
//! `oci2bin: …` and exits 125, 126 or 127.
//!
//! [`run`] must be called from a single-threaded process (unshare of a user namespace demands
//! it); tests fork first.

mod net;
mod seed;

pub(crate) mod tty;

use crate::cgroup;
use crate::copy;
use crate::init::{self, Role, StopPolicy};
use crate::plan::mounts::What;
use crate::plan::{resources, Mapping, Step};
use crate::subid;
use crate::sys::fs as sfs;
use crate::sys::ns;
use crate::sys::sec;
use std::ffi::{CString, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Exit code for a failure of the loader itself (Docker's 125).
pub const EXIT_OURS: i32 = 125;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// A failed step, with the exit code it maps to.
#[derive(Debug)]
pub struct ExecError {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecError {}

pub(crate) fn fail(what: impl fmt::Display, e: io::Error) -> ExecError {
    ExecError {
        code: EXIT_OURS,
        message: format!("{what}: {e}"),
    }
}

fn warn(msg: impl fmt::Display) {
    let _ = writeln!(io::stderr(), "oci2bin: warning: {msg}");
}

/// Applies `steps`. Returns (in the supervisor) how the container ended as an exit code:
/// its own code, or 128 + N when a signal killed it.
pub fn run(steps: &[Step]) -> Result<i32, ExecError> {
    run_steps(steps, None)
}

/// [`run`], calling `started` in the supervisor with the host pid of the container's PID 1 once
/// the container is set up: its command was executed (or its setup failed). A named or detached
/// run records it then ([`crate::lifecycle`]), so `oci2bin exec` never joins a half-built root.
pub fn run_with(steps: &[Step], started: &mut dyn FnMut(ns::pid_t)) -> Result<i32, ExecError> {
    run_steps(steps, Some(started))
}

fn run_steps(
    steps: &[Step],
    mut started: Option<&mut dyn FnMut(ns::pid_t)>,
) -> Result<i32, ExecError> {
    let mut in_child = false;
    let mut tty = tty::Channel::default();
    // The container's cgroups: the supervisor removes them once it has ended.
    let mut cgroups = cgroup::Created::default();
    // A supervised run blocks the signals it forwards before it creates anything to clean up:
    // a SIGTERM between the cgroups' creation and the fork would otherwise kill us with them
    // left behind. Pending, it reaches the supervisor, which forwards it.
    if steps.iter().any(|s| matches!(s, Step::Fork(_))) {
        ns::block_signals(&init::supervised_signals()).map_err(|e| fail("block signals", e))?;
    }
    for step in steps {
        if let Step::Fork(stop) = step {
            match fork_supervised(*stop, &mut tty, started.take()) {
                Ok(None) => in_child = true,
                r => {
                    cgroups.remove_all();
                    return r.map(|code| code.unwrap_or(0));
                }
            }
            continue;
        }
        if let Step::CgroupCreate { dir, .. } = step {
            match cgroup_step(step) {
                Ok(()) => cgroups.0.push(dir.clone()),
                Err(e) => {
                    cgroups.remove_all();
                    return Err(e);
                }
            }
            continue;
        }
        let r = match step {
            Step::TtyChannel { input } => tty.open(*input),
            Step::Console {
                uid,
                gid,
                dev_console,
            } => tty.console(*uid, *gid, *dev_console),
            _ => apply(step),
        };
        if let Err(e) = r {
            if !in_child {
                cgroups.remove_all();
                return Err(e);
            }
            die(&e);
        }
    }
    if in_child {
        // A plan always ends in exec; reaching here means it did not.
        die(&ExecError {
            code: EXIT_OURS,
            message: "plan ended without a command".into(),
        });
    }
    Ok(0)
}

/// The child reports and exits; it must not unwind into the caller's frames.
fn die(e: &ExecError) -> ! {
    let _ = writeln!(io::stderr(), "oci2bin: {e}");
    ns::exit_now(e.code)
}

/// Blocks the supervised signals and forks. `Some(code)` in the parent once the child has ended;
/// `None` in the child.
fn fork_supervised(
    stop: StopPolicy,
    tty: &mut tty::Channel,
    started: Option<&mut dyn FnMut(ns::pid_t)>,
) -> Result<Option<i32>, ExecError> {
    ns::block_signals(&init::supervised_signals()).map_err(|e| fail("block signals", e))?;
    // When someone waits for the start: the child holds the write end (close-on-exec) until it
    // executes the command (the init closes it too), or dies.
    let set_up = match started {
        Some(_) => Some(ns::pipe().map_err(|e| fail("pipe", e))?),
        None => None,
    };
    match ns::fork().map_err(|e| fail("fork", e))? {
        ns::Forked::Child => {
            tty.in_child();
            if let Some((r, w)) = set_up {
                drop(r);
                // Left open on purpose: the exec closes it.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(w);
            }
            Ok(None)
        }
        ns::Forked::Parent(pid) => {
            if let (Some((r, w)), Some(started)) = (set_up, started) {
                drop(w);
                let _ = fs::File::from(r).read(&mut [0u8]);
                started(pid);
            }
            let exit = tty
                .supervise(pid, stop)
                .map_err(|e| fail("wait for the container", e))?;
            Ok(Some(exit.code()))
        }
    }
}

fn apply(step: &Step) -> Result<(), ExecError> {
    match step {
        Step::Warn(msg) => warn(msg),
        Step::Unshare(flags) => ns::unshare(*flags).map_err(|e| fail("unshare", e))?,
        Step::MapIds {
            uid,
            host_uid,
            gid,
            host_gid,
        } => {
            write_proc("/proc/self/setgroups", "deny")?;
            write_proc("/proc/self/uid_map", &format!("{uid} {host_uid} 1\n"))?;
            write_proc("/proc/self/gid_map", &format!("{gid} {host_gid} 1\n"))?;
        }
        Step::SetIds { uid, gid, groups } => {
            ns::set_ids(*uid, *gid, groups)
                .map_err(|e| fail(format_args!("switch to uid {uid}, gid {gid}"), e))?;
            // The switch made us undumpable; an exec would undo that, our init execs nothing.
            let _ = crate::sys::proc::set_dumpable();
        }
        Step::Fork(_) | Step::TtyChannel { .. } | Step::Console { .. } => {
            unreachable!("handled by run")
        }
        Step::NewSession => crate::sys::tty::setsid().map_err(|e| fail("setsid", e))?,
        Step::Mqueue { target } => {
            let flags = ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC;
            let fs = Some(Path::new("mqueue"));
            if let Err(e) = ns::mount(fs, target, Some("mqueue"), flags, None) {
                warn(format_args!("/dev/mqueue left out: {e}"));
            }
        }
        Step::DieWithParent => ns::kill_with_parent().map_err(|e| fail("prctl", e))?,
        Step::MakeRootPrivate => ns::mount(
            None,
            Path::new("/"),
            None,
            ns::MS_REC | ns::MS_PRIVATE,
            None,
        )
        .map_err(|e| fail("make / private", e))?,
        Step::Tmpfs {
            target,
            flags,
            options,
        } => ns::mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            *flags,
            Some(options),
        )
        .map_err(|e| fail(format_args!("mount tmpfs on {}", target.display()), e))?,
        Step::Mkdir { path, mode } => mkdir(path, *mode)?,
        Step::Overlay {
            lower,
            upper,
            work,
            target,
            ram,
            seed,
        } => overlay(lower, upper, work, target, ram.as_ref(), seed)?,
        Step::RealDir { path } => real_dir(path)?,
        Step::BindFile { source, target } => {
            ns::create_file(target, 0o666)
                .map_err(|e| fail(format_args!("create {}", target.display()), e))?;
            ns::mount(Some(source), target, None, ns::MS_BIND, None)
                .map_err(|e| fail(format_args!("bind {}", source.display()), e))?;
        }
        Step::Devpts { target } => ns::mount(
            Some(Path::new("devpts")),
            target,
            Some("devpts"),
            ns::MS_NOSUID | ns::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
        .map_err(|e| fail("mount devpts", e))?,
        Step::Symlink { target, link } => symlink(target, link)
            .map_err(|e| fail(format_args!("symlink {}", link.display()), e))?,
        Step::Proc { target } => ns::mount(
            Some(Path::new("proc")),
            target,
            Some("proc"),
            ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
            None,
        )
        .map_err(|e| fail("mount /proc", e))?,
        Step::SysReadOnly { target } => sys_read_only(target),
        Step::MaskPath { path } => mask(path),
        Step::ReadOnlyPath { path } => {
            if path.exists() {
                if let Err(e) = bind_read_only(path, path) {
                    warn(format_args!("{} left writable: {e}", shown(path)));
                }
            }
        }
        Step::Hostname(name) => ns::sethostname(name).map_err(|e| fail("sethostname", e))?,
        Step::LoopbackUp => ns::loopback_up().map_err(|e| fail("bringing up lo", e))?,
        Step::PingGroupRange => {
            if let Err(e) = ping_group_range() {
                warn(format_args!(
                    "ping needs CAP_NET_RAW in this container: {e}"
                ));
            }
        }
        Step::PivotRoot { new_root } => pivot(new_root)?,
        Step::WriteFile { path, contents } => write_file(path, contents)
            .map_err(|e| fail(format_args!("write {}", path.display()), e))?,
        Step::AppendFile { path, contents } => fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(|e| fail(format_args!("append to {}", path.display()), e))?,
        Step::Mount {
            root,
            target,
            what,
            flags,
        } => user_mount(root, target, what, *flags).map_err(|e| {
            let src = match what {
                What::BindDir(s) | What::BindFile(s) | What::Volume(s) => s.display().to_string(),
                What::Tmpfs(_) => "tmpfs".into(),
            };
            fail(
                format_args!("cannot mount {src} at {}", target.display()),
                e,
            )
        })?,
        Step::ReadOnlyRoot => ns::mount_flags(Path::new("/"))
            .and_then(|locked| {
                let f = ns::MS_REMOUNT | ns::MS_BIND | ns::MS_RDONLY | locked;
                ns::mount(None, Path::new("/"), None, f, None)
            })
            .map_err(|e| fail("make the root read-only", e))?,
        Step::BindSelf { root, path } => {
            if let Err(e) = bind_self(root, path) {
                warn(format_args!("cannot stand in for {path}: {e}"));
            }
        }
        Step::SoftLimitsToHard(resources) => {
            for &r in resources {
                if let Err(e) = ns::soft_limit_to_hard(r) {
                    warn(format_args!("cannot raise resource limit {r}: {e}"));
                }
            }
        }
        Step::Rlimit { .. } | Step::CgroupCreate { .. } | Step::CgroupJoin(_) => cgroup_step(step)?,
        Step::Chdir(dir) => chdir(dir)?,
        Step::ChdirExisting(dir) => std::env::set_current_dir(dir).map_err(|e| {
            fail(
                format_args!("chdir {} (not created in a mount)", dir.display()),
                e,
            )
        })?,
        Step::JoinContainer { pid, namespaces } => crate::lifecycle::join(*pid, namespaces)?,
        Step::LimitBoundingSet(keep) => sec::limit_bounding_set(*keep)
            .map_err(|e| fail("drop capabilities from the bounding set", e))?,
        Step::KeepCaps => sec::keep_caps().map_err(|e| fail("prctl PR_SET_KEEPCAPS", e))?,
        Step::SetCaps {
            effective,
            permitted,
            inheritable,
            ambient,
        } => {
            // What the kernel knows and the namespace gave us: never more.
            let held = sec::permitted().map_err(|e| fail("capget", e))?;
            sec::set_caps(
                effective & held,
                permitted & held,
                inheritable & held,
                ambient & held,
            )
            .map_err(|e| fail("capset", e))?
        }
        Step::NoNewPrivs => {
            sec::no_new_privs().map_err(|e| fail("prctl PR_SET_NO_NEW_PRIVS", e))?
        }
        Step::Seccomp(bpf) => {
            sec::install_filter(bpf).map_err(|e| fail("install the seccomp filter", e))?
        }
        Step::ExecLabel { path, value } => fs::write(path, value)
            .map_err(|e| fail(format_args!("write {} to {}", value, path.display()), e))?,
        Step::NetHelper(h) => net::start(h)?,
        Step::NetHelperReady => net::ready()?,
        Step::SlirpForward { api, ports } => net::forward(api, ports)?,
        Step::JoinNs { net: n, ipc } => net::join(*n, *ipc)?,
        Step::Exec {
            argv,
            env,
            init,
            keep_fds,
        } => {
            let argv = cstrings(argv)?;
            let env = cstrings(env)?;
            let path = env
                .iter()
                .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
                .unwrap_or(b"")
                .to_vec();
            // Descriptors the caller left open without CLOEXEC must not reach the container.
            let first_closed = 3 + keep_fds;
            if *init {
                ns::exit_now(init_run(&argv, &env, &path, first_closed));
            }
            ns::close_fds_from(first_closed);
            let e = exec_command(&argv, &env, &path);
            die(&e);
        }
    }
    Ok(())
}

/// The resource steps ([`crate::plan::resources`]).
fn cgroup_step(step: &Step) -> Result<(), ExecError> {
    let optional = |r: io::Result<()>, flags: &str, required: bool| match r {
        Err(e) if required => Err(fail(format_args!("{flags} (--require-limits)"), e)),
        Err(e) => {
            warn(format_args!("{flags} ignored: {e}"));
            Ok(())
        }
        Ok(()) => Ok(()),
    };
    match step {
        Step::Rlimit {
            name,
            resource,
            soft,
            hard,
        } => crate::sys::res::set_rlimit(*resource, *soft, *hard).map_err(|e| {
            let (s, h) = (resources::shown(*soft), resources::shown(*hard));
            fail(format_args!("--ulimit {name}={s}:{h}: setrlimit"), e)
        }),
        Step::CgroupCreate {
            dir,
            files,
            flags,
            required,
            delegate,
        } => {
            let made = match delegate {
                Some(controllers) => cgroup::delegate(dir, controllers),
                None => Ok(()),
            };
            optional(
                made.and_then(|()| cgroup::create(dir, files)),
                flags,
                *required,
            )
        }
        Step::CgroupJoin(dirs) => {
            for d in dirs {
                cgroup::join(d).map_err(|e| fail("cgroup", e))?;
            }
            Ok(())
        }
        _ => unreachable!("not a resource step"),
    }
}

/// Enters a user namespace with `m`'s maps, as rootless podman does: a child unshares it and
/// waits; we (still outside, so the setuid helpers work for us) run `newuidmap`/`newgidmap` on
/// the child, then join its namespace with setns(2) and let it exit. On failure nothing about
/// this process has changed, so the caller can still run with a single uid. Must be called
/// single-threaded (setns into a user namespace demands it).
pub fn enter_mapped(m: &Mapping) -> Result<(), ExecError> {
    let (ready_r, ready_w) = ns::pipe().map_err(|e| fail("pipe", e))?;
    let (go_r, go_w) = ns::pipe().map_err(|e| fail("pipe", e))?;
    let child = match ns::fork().map_err(|e| fail("fork", e))? {
        ns::Forked::Child => {
            drop((ready_r, go_w));
            let ok = ns::unshare(ns::NEW_USER).is_ok();
            let _ = fs::File::from(ready_w).write_all(&[ok as u8]);
            // Hold the namespace until the parent has joined it (it closes its end).
            let _ = fs::File::from(go_r).read(&mut [0u8]);
            ns::exit_now(0)
        }
        ns::Forked::Parent(pid) => pid,
    };
    drop((ready_w, go_r));
    let mut ok = [0u8];
    let r = match fs::File::from(ready_r).read_exact(&mut ok) {
        Err(e) => Err(fail("wait for the user namespace", e)),
        Ok(()) if ok[0] != 1 => Err(ExecError {
            code: EXIT_OURS,
            message: "unshare a user namespace: operation not permitted".into(),
        }),
        Ok(()) => map_ids(child, m).and_then(|()| {
            let path = format!("/proc/{child}/ns/user");
            let ns_fd = fs::File::open(&path).map_err(|e| fail(format_args!("open {path}"), e))?;
            ns::setns_user(std::os::fd::AsFd::as_fd(&ns_fd))
                .map_err(|e| fail("join the mapped user namespace", e))
        }),
    };
    drop(go_w);
    let _ = ns::wait_for(child);
    r
}

/// Runs `newuidmap PID MAP…` and `newgidmap PID MAP…` side by side (each is a setuid exec of a
/// few milliseconds, and they touch different maps); an error names the command and its stderr,
/// on one line.
fn map_ids(pid: ns::pid_t, m: &Mapping) -> Result<(), ExecError> {
    let mut running = Vec::with_capacity(2);
    for (helper, map) in [(&m.newuidmap, &m.uid_map), (&m.newgidmap, &m.gid_map)] {
        let args = subid::map_args(map);
        let shown = format!("{} {pid} {}", helper.display(), args.join(" "));
        running.push((shown, spawn_helper(helper, pid, &args)));
    }
    // Both are waited for, even when one failed to start.
    let mut first_err = None;
    for (shown, spawned) in running {
        if let Err(why) = spawned.and_then(finish_helper) {
            first_err.get_or_insert(ExecError {
                code: EXIT_OURS,
                message: format!("{shown}: {why}"),
            });
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Starts `helper PID ARGS…` with an empty environment, its stderr into a pipe. fork+execve
/// rather than std's Command, which would add tens of KiB to the loader.
fn spawn_helper(
    helper: &Path,
    pid: ns::pid_t,
    args: &[String],
) -> Result<(ns::pid_t, fs::File), String> {
    let c = |b: &[u8]| CString::new(b).map_err(|_| "argument contains a NUL byte".to_string());
    let path = c(helper.as_os_str().as_bytes())?;
    let mut argv = vec![path.clone(), c(pid.to_string().as_bytes())?];
    for a in args {
        argv.push(c(a.as_bytes())?);
    }
    let (r, w) = ns::pipe().map_err(|e| e.to_string())?;
    let child = match ns::fork().map_err(|e| e.to_string())? {
        ns::Forked::Child => {
            drop(r);
            if ns::dup_to(std::os::fd::AsFd::as_fd(&w), 2).is_ok() {
                let e = ns::execve(&path, &argv, &[]);
                let _ = writeln!(io::stderr(), "exec: {e}");
            }
            ns::exit_now(127)
        }
        ns::Forked::Parent(pid) => pid,
    };
    drop(w);
    Ok((child, fs::File::from(r)))
}

/// Waits for a helper; `Err` holds its stderr (or status) as one line.
fn finish_helper((child, mut stderr): (ns::pid_t, fs::File)) -> Result<(), String> {
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    let status = ns::wait_for(child).map_err(|e| e.to_string())?;
    if status == ns::Exit::Code(0) {
        return Ok(());
    }
    let lines: Vec<&str> = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Err(match (lines.is_empty(), status) {
        (false, _) => lines.join("; "),
        (true, ns::Exit::Code(c)) => format!("exited with {c}"),
        (true, ns::Exit::Signal(s)) => format!("killed by signal {s}"),
    })
}

fn cstrings(v: &[OsString]) -> Result<Vec<CString>, ExecError> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| ExecError {
                code: EXIT_OURS,
                message: format!("argument or variable contains a NUL byte: {s:?}"),
            })
        })
        .collect()
}

fn write_proc(path: &str, text: &str) -> Result<(), ExecError> {
    // One write(2): the kernel takes id maps in a single write only.
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write(text.as_bytes()).map(drop))
        .map_err(|e| fail(format_args!("write {path}"), e))
}

fn mkdir(path: &Path, mode: u32) -> Result<(), ExecError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(format_args!("create directory {}", path.display()), e)),
    }
}

/// Overlay options escape `\`, `,` and `:` in paths with a backslash.
pub fn overlay_escape(p: &Path) -> String {
    crate::stack::escape(p)
}

fn overlay(
    lower: &crate::stack::Stack,
    upper: &Path,
    work: &Path,
    target: &Path,
    ram: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    seeds: &[crate::plan::Seed],
) -> Result<(), ExecError> {
    // Into this upper; again into the one a fallback below mounts instead.
    seed::seed(lower, upper, seeds).map_err(|e| fail("write the per-run files", e))?;
    // A per-run upper on disk is thrown away at exit: `volatile` spares it the sync of the
    // whole disk that unmounting an overlay otherwise does (tens of ms on a start).
    let volatile = if ram.is_some() { ",volatile" } else { "" };
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr{volatile}",
        lower.lowerdir(),
        overlay_escape(upper),
        overlay_escape(work)
    );
    // Past one page of options (~30 layers), the lowers go one by one (see ns::mount_overlay).
    let mounted = if opts.len() < 4096 {
        ns::mount(
            Some(Path::new("overlay")),
            target,
            Some("overlay"),
            0,
            Some(&opts),
        )
    } else {
        let flags: &[&std::ffi::CStr] = match ram {
            Some(_) => &[c"userxattr", c"volatile"],
            None => &[c"userxattr"],
        };
        ns::mount_overlay(&lower.0, upper, work, flags, target)
    };
    let Err(e) = mounted else {
        return Ok(());
    };
    if let Some((u, w)) = ram {
        warn(format_args!(
            "overlayfs refuses {} as the container's writable layer ({e}); keeping its writes \
             in memory",
            upper.display()
        ));
        mkdir(u, 0o755)?;
        mkdir(w, 0o755)?;
        return overlay(lower, u, w, target, None, seeds);
    }
    if upper.parent() != target.parent() {
        // A persistent upper on disk: a copy in memory would drop the writes it must keep.
        return Err(fail(
            format_args!("overlayfs with upper {}", upper.display()),
            e,
        ));
    }
    warn(format_args!(
        "overlayfs is not available here ({e}); copying the image into memory for this run"
    ));
    copy::copy_stack(lower, target).map_err(|e| fail("copy the rootfs", e))?;
    let copied = crate::stack::Stack::from(target.to_path_buf());
    seed::seed(&copied, target, seeds).map_err(|e| fail("write the per-run files", e))?;
    // pivot_root needs a mount point.
    ns::mount(Some(target), target, None, ns::MS_BIND | ns::MS_REC, None)
        .map_err(|e| fail("bind the rootfs copy", e))
}

/// Replaces whatever is at `path` (a symlink, a file) with a real directory.
fn real_dir(path: &Path) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(path)
            .map_err(|e| fail(format_args!("replace {}", path.display()), e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format_args!("stat {}", path.display()), e)),
    }
    mkdir(path, 0o755)
}

/// /sys: a recursive bind of the host's, read-only. Failing that, a plain read-only remount that
/// keeps the flags the kernel locked; failing that, no /sys at all.
/// Sets `net.ipv4.ping_group_range` to the groups mapped into our user namespace (the kernel
/// takes only mapped ends; Docker, as real root, writes 0 to 2147483647).
fn ping_group_range() -> io::Result<()> {
    let map = fs::read_to_string("/proc/self/gid_map")?;
    // Each line: inside, outside, count. The mapped gids span min(inside) to max(inside+count-1).
    let (low, high) = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
            let inside = f.next()??;
            Some((inside, inside + f.nth(1)??.checked_sub(1)?))
        })
        .reduce(|(l1, h1), (l2, h2)| (l1.min(l2), h1.max(h2)))
        .ok_or_else(|| io::Error::other("no gid is mapped"))?;
    fs::write(
        "/proc/sys/net/ipv4/ping_group_range",
        format!("{low} {}", high.min(u32::MAX as u64 - 1)),
    )
}

fn sys_read_only(target: &Path) {
    if let Err(e) = bind_read_only(Path::new("/sys"), target) {
        warn(format_args!("/sys left out: {e}"));
    }
}

/// Binds `source` (recursively) onto `target` and makes it read-only, keeping the flags the
/// kernel locked; on failure nothing stays mounted.
fn bind_read_only(source: &Path, target: &Path) -> io::Result<()> {
    ns::mount(Some(source), target, None, ns::MS_BIND | ns::MS_REC, None)?;
    if ns::make_readonly_recursive(target).is_ok() {
        return Ok(());
    }
    let remount = ns::mount_flags(target).and_then(|locked| {
        ns::mount(
            None,
            target,
            None,
            ns::MS_REMOUNT | ns::MS_BIND | ns::MS_RDONLY | locked,
            None,
        )
    });
    if remount.is_err() {
        let _ = ns::umount2(target, ns::MNT_DETACH);
    }
    remount
}

/// Hides `path` (a masked path): `/dev/null` over a file, an empty read-only tmpfs over a
/// directory. Masking is defence in depth: a failure is a warning, not a failed start.
fn mask(path: &Path) {
    let r = match fs::symlink_metadata(path) {
        Err(_) => return,
        Ok(m) if m.is_dir() => ns::mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            ns::MS_RDONLY | ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
            Some("size=0,mode=555"),
        ),
        Ok(_) => ns::mount(Some(Path::new("/dev/null")), path, None, ns::MS_BIND, None),
    };
    if let Err(e) = r {
        warn(format_args!("{} left visible: {e}", shown(path)));
    }
}

/// A path under the new root as the container will see it (`…/root/proc/kcore` → `/proc/kcore`).
fn shown(path: &Path) -> String {
    let s = path.to_string_lossy();
    match s.find("/root/") {
        Some(i) => s[i + 5..].to_string(),
        None => s.into_owned(),
    }
}

fn pivot(new_root: &Path) -> Result<(), ExecError> {
    std::env::set_current_dir(new_root)
        .map_err(|e| fail(format_args!("chdir {}", new_root.display()), e))?;
    // With both arguments ".", the old root ends up stacked under the new one and is detached
    // right away: no directory for it is needed in the image.
    ns::pivot_root(Path::new("."), Path::new(".")).map_err(|e| fail("pivot_root", e))?;
    ns::umount2(Path::new("."), ns::MNT_DETACH).map_err(|e| fail("detach the old root", e))?;
    std::env::set_current_dir("/").map_err(|e| fail("chdir /", e))
}

fn write_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let mut f = match open() {
        // ELOOP: a symlink is there; replace it rather than write through it.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            fs::remove_file(path)?;
            open()?
        }
        r => r?,
    };
    f.write_all(contents)
}

fn bind_self(root: &Path, path: &str) -> io::Result<()> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut target = root.to_path_buf();
    for dir in rel.parent().into_iter().flat_map(Path::components) {
        target.push(dir);
        if !fs::symlink_metadata(&target)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                target.display()
            )));
        }
    }
    target.push(rel.file_name().unwrap_or_default());
    let target = target.as_path();
    if fs::symlink_metadata(target)?.file_type().is_symlink() {
        // A link would send the bind to its target (busybox, say); shadow the link itself.
        fs::remove_file(target)?;
        fs::File::create(target)?;
    }
    // /proc/self/exe itself cannot be the source: it names our file on a mount of the namespace
    // we were started in, and mount(2) only binds from our own. Its path is the same file here
    // (this namespace is a copy) unless it was replaced since; the inode check catches that.
    let exe = fs::read_link("/proc/self/exe")?;
    let (a, b) = (fs::metadata(&exe)?, fs::metadata("/proc/self/exe")?);
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err(io::Error::other(format!(
            "{} was replaced since it started",
            exe.display()
        )));
    }
    ns::mount(Some(&exe), target, None, ns::MS_BIND, None)
}

/// Opens container path `target` inside `root` as an `O_PATH` descriptor without ever leaving
/// `root`: symlinks are followed as if `root` were `/` (an absolute link restarts at `root`, `..`
/// stops there), as Docker's FollowSymlinkInScope does; every open is `O_NOFOLLOW` from a
/// directory already inside. Missing parts are created in the (private) root: directories, and
/// the last one a directory when `dir`, else an empty file.
fn resolve_in_root(root: &Path, target: &Path, dir: bool) -> io::Result<OwnedFd> {
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    let c = |b: &[u8]| CString::new(b).map_err(|_| invalid());
    let root = sfs::openat(
        sfs::cwd(),
        &c(root.as_os_str().as_bytes())?,
        sfs::O_PATH | sfs::O_DIRECTORY,
        0,
    )?;
    // Created only in the container's own file systems (the root, our /dev tmpfs): never
    // inside a host bind made before.
    let dev_of = |fd: &OwnedFd| sfs::fstat(fd.as_fd()).map(|st| st.st_dev);
    let dev = sfs::openat(root.as_fd(), c"dev", sfs::O_PATH | sfs::O_NOFOLLOW, 0);
    let own = [Some(dev_of(&root)?), dev.ok().and_then(|d| dev_of(&d).ok())];
    let mut stack = vec![root];
    // Components still to walk, the next one last.
    let mut pending: Vec<Vec<u8>> = target
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        match &name[..] {
            b"" | b"." => continue,
            b".." => {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        let last = pending.iter().all(|p| p.is_empty() || p == b".");
        let top = stack.last().ok_or_else(invalid)?.as_fd();
        let name = c(&name)?;
        match sfs::lstatat(top, &name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !own.contains(&Some(sfs::fstat(top)?.st_dev)) {
                    return Err(io::Error::other(format!(
                        "{} is missing and not in the container's own file system (it is not \
                         created inside another mount)",
                        name.to_string_lossy()
                    )));
                }
                if last && !dir {
                    let flags = sfs::O_CREAT | sfs::O_EXCL | sfs::O_WRONLY | sfs::O_NOFOLLOW;
                    sfs::openat(top, &name, flags, 0o644)?;
                } else {
                    sfs::mkdirat(top, &name, 0o755)?;
                }
            }
            Err(e) => return Err(e),
            Ok(st) if sfs::is_symlink(&st) => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let link = sfs::readlinkat(top, &name)?;
                if link.starts_with(b"/") {
                    stack.truncate(1);
                }
                pending.extend(link.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                continue;
            }
            Ok(st) if !last && !sfs::is_dir(&st) => {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR))
            }
            Ok(_) => {}
        }
        let flags = sfs::O_PATH | sfs::O_NOFOLLOW | if last { 0 } else { sfs::O_DIRECTORY };
        let fd = sfs::openat(top, &name, flags, 0)?;
        stack.push(fd);
    }
    // The root itself is never a target (the plan refuses `/`).
    match stack.len() {
        1 => Err(invalid()),
        _ => stack.pop().ok_or_else(invalid),
    }
}

/// The path that names what `fd` refers to (mount(2) follows it to that very object).
fn fd_path(fd: &OwnedFd) -> std::path::PathBuf {
    format!("/proc/self/fd/{}", fd.as_raw_fd()).into()
}

/// One user mount (see [`Step::Mount`]): the target resolved inside `root`, then the mount made
/// on that very object, never through a path a symlink could redirect.
fn user_mount(root: &Path, target: &Path, what: &What, flags: u64) -> io::Result<()> {
    let at = resolve_in_root(root, target, !matches!(what, What::BindFile(_)))?;
    let source = match what {
        What::Tmpfs(data) => {
            let fs = Some(Path::new("tmpfs"));
            return ns::mount(fs, &fd_path(&at), Some("tmpfs"), flags, Some(data));
        }
        What::BindDir(s) | What::BindFile(s) => s,
        What::Volume(s) => {
            crate::storage::populate(&fd_path(&at), s)?;
            s
        }
    };
    match ns::bind_tree(source, at.as_fd(), flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        r => return r,
    }
    // Before Linux 5.12: a recursive bind, then a remount of its top mount (keeping the flags
    // the kernel locked); mounts below it keep their own flags.
    ns::mount(
        Some(source),
        &fd_path(&at),
        None,
        ns::MS_BIND | ns::MS_REC,
        None,
    )?;
    if flags == 0 {
        return Ok(());
    }
    let top = fd_path(&resolve_in_root(root, target, true)?);
    let locked = ns::mount_flags(&top)?;
    let f = ns::MS_REMOUNT | ns::MS_BIND | flags | locked;
    ns::mount(None, &top, None, f, None)
}

fn chdir(dir: &Path) -> Result<(), ExecError> {
    let shown = dir.display();
    match std::env::set_current_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| fail(format_args!("create workdir {shown}"), e))?;
            std::env::set_current_dir(dir)
        }
        r => r,
    }
    .map_err(|e| fail(format_args!("chdir {shown}"), e))
}

/// The init (PID 1, the default): fork the command, forward signals to it, reap everything,
/// return its status (128+N when a signal killed it).
fn init_run(argv: &[CString], env: &[CString], path: &[u8], first_closed: u32) -> i32 {
    // `ps` inside shows the init for what it is, not the host path of the file (as Docker's
    // `/sbin/docker-init`); the command (PID 2) shows its own argv.
    let _ = ns::set_cmdline("oci2bin-init");
    match ns::fork() {
        Err(e) => {
            die(&fail("fork", e));
        }
        Ok(ns::Forked::Child) => {
            ns::close_fds_from(first_closed);
            let e = exec_command(argv, env, path);
            die(&e);
        }
        Ok(ns::Forked::Parent(pid)) => {
            // The init needs none of what the caller passed; holding a pipe open would keep
            // its reader waiting after the command is gone.
            ns::close_fds_from(3);
            match init::supervise(pid, Role::Init) {
                Ok(exit) => exit.code(),
                Err(e) => die(&fail("init: wait", e)),
            }
        }
    }
}

/// Execs `argv` with `env`, looking the program up in `path` (the container's `PATH`) unless it
/// contains a `/`. Resets the signal mask and dispositions first. Returns only on failure, with
/// Docker's codes: 127 not found, 126 found but not executable.
pub fn exec_command(argv: &[CString], env: &[CString], path: &[u8]) -> ExecError {
    let Some(prog) = argv.first() else {
        return ExecError {
            code: EXIT_OURS,
            message: "no command specified".into(),
        };
    };
    let _ = ns::set_signal_mask(&ns::SigSet::empty());
    ns::reset_signal_dispositions();
    let name = String::from_utf8_lossy(prog.as_bytes()).into_owned();
    let failed = |code: i32, why: &str| ExecError {
        code,
        message: format!("exec: {name:?}: {why}"),
    };
    if prog.as_bytes().contains(&b'/') {
        let e = ns::execve(prog, argv, env);
        return explain(
            Path::new(std::ffi::OsStr::from_bytes(prog.as_bytes())),
            e,
            &failed,
        );
    }
    let mut denied = None;
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut full = dir.to_vec();
        full.push(b'/');
        full.extend_from_slice(prog.as_bytes());
        let Ok(full) = CString::new(full) else {
            continue;
        };
        let e = ns::execve(&full, argv, env);
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ESTALE) => {
                // A file that exists but "is not found" lacks its interpreter.
                let p = Path::new(std::ffi::OsStr::from_bytes(full.as_bytes()));
                if fs::metadata(p).is_ok_and(|m| m.is_file()) {
                    return explain(p, e, &failed);
                }
            }
            Some(libc::EACCES) => denied = Some(e),
            _ => {
                return explain(
                    Path::new(std::ffi::OsStr::from_bytes(full.as_bytes())),
                    e,
                    &failed,
                )
            }
        }
    }
    match denied {
        Some(_) => failed(EXIT_CANNOT_EXEC, "permission denied"),
        None => failed(EXIT_NOT_FOUND, "executable file not found in $PATH"),
    }
}

fn explain(path: &Path, e: io::Error, failed: &dyn Fn(i32, &str) -> ExecError) -> ExecError {
    match e.raw_os_error() {
        Some(libc::ENOENT) if path.is_file() => failed(
            EXIT_NOT_FOUND,
            "no such file or directory (is the interpreter on its #! line missing?)",
        ),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            failed(EXIT_NOT_FOUND, "no such file or directory")
        }
        Some(libc::EACCES) => failed(EXIT_CANNOT_EXEC, "permission denied"),
        Some(libc::ENOEXEC) => failed(EXIT_CANNOT_EXEC, "exec format error"),
        _ => failed(EXIT_CANNOT_EXEC, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_escape_separators() {
        assert_eq!(overlay_escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
        assert_eq!(overlay_escape(Path::new("/plain/path")), "/plain/path");
    }
}
