//! The host side of a VM run: the container's tree (as a namespace run builds it, see
//! [`crate::plan::vm`]), the monitor, and the streams between them. Stdout and stderr stay
//! apart and stdin ends when the caller's does (each is a virtio-serial port); signals the
//! caller gets are forwarded to the command; the command's exit code is ours.

use super::cpio;
use super::parts::{self, write_once};
use super::qemu::{self, CONSOLE_LOG, CONTROL, STDERR, STDIN, STDOUT, TERMINAL};
use super::wire::{self, Message};
use super::Machine;
use crate::args::{self, Flags, VmAccel, Vmm};
use crate::format::VmPartKind;
use crate::plan::{self, IdMode};
use crate::selfexe::SelfExe;
use crate::sys::{ns, tty};
use crate::{cache, exec, host, storage, verify};
use std::error::Error;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

/// How a boot failed: before the guest's init started (worth a retry without KVM), or after.
enum Failed {
    NotStarted(String),
    Other(Box<dyn Error>),
}

impl<E: Into<Box<dyn Error>>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Other(e.into())
    }
}

/// How long a guest may take from the monitor's start to its init reading the config.
fn boot_timeout(kvm: bool) -> Duration {
    Duration::from_secs(if kvm { 20 } else { 120 })
}

/// Runs the file `me` in a VM with the caller's arguments; returns the command's exit code.
pub fn run(me: &SelfExe, user_args: Vec<OsString>) -> Res<i32> {
    let rt = &me.runtime;
    let all = rt.default_args.iter().map(OsString::from).chain(user_args);
    let mut flags = match args::parse(all)? {
        args::Parsed::Run(f) => f,
        // The file's own loader answers these before it starts the runtime.
        _ => return Ok(0),
    };
    verify::check_required(me)?;
    plan::vm::check(&flags)?;
    let env_files = args::read_env_files(&flags)?;
    host::free_ports(&mut flags)?;
    let vmm = match flags.vmm {
        Vmm::Qemu => Backend::Qemu(find_qemu()?),
        Vmm::Libkrun => {
            // libkrun is a KVM monitor: no emulation to fall back to.
            if flags.vm_accel == VmAccel::Tcg {
                return Err(
                    "--vmm libkrun runs guests under KVM only: use --vmm qemu for emulation".into(),
                );
            }
            if let Err(why) = kvm_access() {
                return Err(format!("--vmm libkrun needs KVM: {why}").into());
            }
            Backend::Krun
        }
    };
    let kvm = match vmm {
        Backend::Krun => true,
        Backend::Qemu(_) => accel(flags.vm_accel)?,
    };
    let kernel = parts::get(&me.file, &rt.vm_parts, VmPartKind::Kernel)?;
    let initrd = initrd()?;
    let mut prepared = match cache::prepare(&me.file, rt, None) {
        Err(cache::CacheError::Interrupted(sig)) => crate::sys::sig::die_of(sig),
        r => r?,
    };
    let storage = storage::setup(&mut flags, prepared.cleanup.as_deref(), &mut prepared.hold)?;
    let mut facts = host::gather(
        prepared.rootfs.clone(),
        prepared.scratch.clone(),
        env_files,
        IdMode::Single,
        (ns::euid(), ns::egid()),
        flags.hostname.clone(),
        &flags.mounts,
    )
    .map_err(|e| format!("gather host facts: {e}"))?;
    facts.upper = storage.upper.clone();
    let mut vp = plan::vm::plan(rt, &flags, &facts)?;
    if vp.guest.tty {
        if let Some(ws) = tty::window_size(0) {
            vp.guest.winsize = (ws.ws_row, ws.ws_col);
        }
    }
    exec::run(&vp.host)?;
    let boot = |kvm| boot(&flags, &vp, &vmm, &kernel, &initrd, kvm, &facts.scratch);
    let code = match boot(kvm) {
        // KVM that kills the guest before its init runs (a VM without nested virtualisation):
        // `auto` means the caller wants a run, so emulation it is.
        Err(Failed::NotStarted(why))
            if kvm && flags.vm_accel == VmAccel::Auto && matches!(vmm, Backend::Qemu(_)) =>
        {
            eprintln!(
                "oci2bin: warning: the guest did not start under KVM ({}); emulating it \
                 (slow; --vm-accel tcg skips the attempt)",
                why.lines().next().unwrap_or_default()
            );
            boot(false)
        }
        r => r,
    }
    .map_err(|e| match e {
        Failed::NotStarted(why) => why.into(),
        Failed::Other(e) => e,
    });
    storage.finish();
    drop(prepared);
    code
}

/// `qemu-system-x86_64` from `$OCI2BIN_QEMU` or the PATH.
fn find_qemu() -> Res<PathBuf> {
    if let Some(q) = std::env::var_os("OCI2BIN_QEMU") {
        return Ok(q.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "--vmm qemu needs qemu-system-x86_64, which is not on the PATH: install it \
             (apt-get install qemu-system-x86) or set OCI2BIN_QEMU"
                .into()
        })
}

/// Whether the guest runs under KVM: `--vm-accel kvm` must have it; `auto` falls back to
/// emulation with a warning that says how to get it.
fn accel(want: VmAccel) -> Res<bool> {
    if want == VmAccel::Tcg {
        return Ok(false);
    }
    let Err(why) = kvm_access() else {
        return Ok(true);
    };
    match want {
        VmAccel::Kvm => Err(format!("--vm-accel kvm: {why}").into()),
        _ => {
            eprintln!(
                "oci2bin: warning: {why}; emulating the guest (slow; --vm-accel tcg says so quietly)"
            );
            Ok(false)
        }
    }
}

/// Whether /dev/kvm opens for reading and writing; if not, why, and how to fix it.
fn kvm_access() -> Result<(), String> {
    let kvm = Path::new("/dev/kvm");
    let e = match fs::OpenOptions::new().read(true).write(true).open(kvm) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    Err(match fs::metadata(kvm) {
        Err(_) => "there is no /dev/kvm (no KVM on this host, or a VM without nested \
                   virtualisation)"
            .to_string(),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            let fix = if mode & 0o060 == 0o060 {
                let g = group_name(m.gid());
                format!("join group {g} (usermod -aG {g} $USER, then log in again)")
            } else {
                "only its owner may open it: make it group read-write for a group such as \
                 kvm (a udev rule, or chgrp kvm /dev/kvm; chmod 660 /dev/kvm) and join it"
                    .to_string()
            };
            format!(
                "cannot open /dev/kvm ({e}; mode {mode:o}, owner {}): {fix}",
                m.uid()
            )
        }
    })
}

fn group_name(gid: u32) -> String {
    fs::read_to_string("/etc/group")
        .ok()
        .and_then(|g| {
            g.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == gid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

/// The initramfs: the mount points and this runtime as `/init`, made once per runtime build
/// next to it in the cache.
fn initrd() -> Res<PathBuf> {
    let me = fs::read_link("/proc/self/exe")?;
    let path = me.with_file_name("initrd.cpio");
    if !path.is_file() {
        let bytes = fs::read(&me)?;
        let archive = cpio::archive(&[
            cpio::Entry::Dir("dev"),
            cpio::Entry::Console("dev/console"),
            cpio::Entry::Dir("proc"),
            cpio::Entry::Dir("sys"),
            cpio::Entry::Dir("newroot"),
            cpio::Entry::File("init", &bytes, 0o755),
        ]);
        write_once(&path, &archive).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// Starts the monitor in the run directory and serves it until it ends.
/// Which monitor runs the guest.
enum Backend {
    Qemu(PathBuf),
    /// libkrun, linked into this program (the `krun` feature).
    Krun,
}

/// The monitor process: qemu, or our fork that became libkrun's VMM.
enum Monitor {
    Process(Child),
    #[cfg_attr(not(feature = "krun"), allow(dead_code))]
    Forked(ns::pid_t),
}

impl Monitor {
    /// Whether it has ended (reaped).
    fn ended(&mut self) -> bool {
        match self {
            Monitor::Process(c) => !matches!(c.try_wait(), Ok(None)),
            Monitor::Forked(pid) => !matches!(ns::reap(*pid), Ok(None)),
        }
    }

    fn kill(&mut self) {
        match self {
            Monitor::Process(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Monitor::Forked(pid) => {
                let _ = ns::kill(*pid, libc::SIGKILL);
                let _ = ns::wait_for(*pid);
            }
        }
    }
}

/// Our ends of the guest's streams: the terminal (-t) or stdin, stdout and stderr; the control.
struct Streams {
    term: Option<UnixStream>,
    ctl: UnixStream,
    stdio: Vec<UnixStream>,
}

/// Starts the monitor in the run directory and serves it until it ends.
fn boot(
    flags: &Flags,
    vp: &plan::vm::VmPlan,
    vmm: &Backend,
    kernel: &Path,
    initrd: &Path,
    kvm: bool,
    run_dir: &Path,
) -> Result<i32, Failed> {
    std::env::set_current_dir(run_dir)?;
    for sock in [
        CONTROL.1,
        STDIN.1,
        STDOUT.1,
        STDERR.1,
        TERMINAL,
        plan::vm::PASST_SOCKET,
    ] {
        // Left by a boot that did not start.
        let _ = fs::remove_file(sock);
    }
    let tty = vp.guest.tty;
    // passt first: the monitor connects to its socket as it starts.
    let _passt = match &vp.passt {
        Some(args) => Some(start_passt(args)?),
        None => None,
    };
    // Signals are ours to forward: blocked before the monitor exists (it starts unblocked).
    let signals = ns::SigSet::empty().with(&[
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGCHLD,
        libc::SIGWINCH,
    ]);
    ns::block_signals(&signals)?;
    let sigfd = ns::signalfd(&signals)?;
    let machine = Machine {
        kernel,
        initrd,
        root: &vp.root,
        memory_mib: vp.memory_mib,
        cpus: vp.cpus,
        kvm,
        tty,
        net: vp.passt.is_some(),
    };
    let (mut monitor, streams) = match vmm {
        Backend::Qemu(bin) => start_qemu(bin, &machine)?,
        Backend::Krun => start_krun(&machine)?,
    };
    let Streams {
        term,
        mut ctl,
        mut stdio,
    } = streams;
    wire::write_frame(&mut ctl, &wire::encode(&vp.guest))?;
    // The caller's terminal passes every byte (^C included) to the guest's, until the end.
    let _raw = term.as_ref().and_then(|_| exec::tty::RawMode::enter(0));
    // With -t the terminal's one socket carries both ways: the end of our input must not end
    // it (qemu takes a socket's end of input as a hang-up).
    let (input, ends) = match term {
        Some(t) => {
            stdio.push(t.try_clone()?);
            (Some(t), false)
        }
        None if stdio.is_empty() => (None, false),
        None => (Some(stdio.remove(0)), true),
    };
    // stdin on a thread of its own: the guest may never read it, and the loop below must not
    // wait for it.
    if let Some(mut input) = input {
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut input);
            if ends {
                let _ = input.shutdown(std::net::Shutdown::Write);
            }
            // Not closed: a closed socket is a hang-up, on which qemu drops what the guest has
            // not read yet; a shut-down one is an end of input after it.
            std::mem::forget(input);
        });
    }
    let stop = flags.stop_timeout.unwrap_or(Some(10)).map(u64::from);
    let (code, ready) = serve(
        &mut monitor,
        &mut ctl,
        &mut stdio,
        sigfd.as_raw_fd(),
        stop,
        kvm,
    )?;
    match (code, ready) {
        (Some(c), _) => Ok(c),
        (None, false) => Err(Failed::NotStarted(explain(
            "the guest did not start".into(),
            kvm,
            tty,
        ))),
        (None, true) => Err(explain(
            "the VM stopped without the command's exit code".into(),
            kvm,
            tty,
        )
        .into()),
    }
}

/// qemu, connecting to sockets we listen on in the run directory.
fn start_qemu(bin: &Path, machine: &Machine) -> Result<(Monitor, Streams), Failed> {
    let (tty, kvm) = (machine.tty, machine.kvm);
    // The terminal (a device before the ports), then the ports.
    let names: &[&str] = if tty {
        &[TERMINAL, CONTROL.1]
    } else {
        &[CONTROL.1, STDIN.1, STDOUT.1, STDERR.1]
    };
    let listeners = names
        .iter()
        .map(|sock| UnixListener::bind(sock).map_err(|e| format!("listen on {sock}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cmd = Command::new(bin);
    cmd.args(qemu::args(machine));
    // Out of the terminal's process group: ^C is the command's, forwarded by us (or, with -t,
    // a byte for the guest's terminal).
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let started = Instant::now();
    let mut streams = Vec::new();
    for l in &listeners {
        match accept(l, &mut child, started + boot_timeout(kvm)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failed::NotStarted(explain(e, kvm, tty)));
            }
        }
    }
    let term = tty.then(|| streams.remove(0));
    let ctl = streams.remove(0);
    Ok((
        Monitor::Process(child),
        Streams {
            term,
            ctl,
            stdio: streams,
        },
    ))
}

#[cfg(not(feature = "krun"))]
fn start_krun(_: &Machine) -> Result<(Monitor, Streams), Failed> {
    Err(Failed::Other(
        "this VM runtime was built without libkrun (the `krun` feature): use --vmm qemu".into(),
    ))
}

/// libkrun in a fork of ours, its ports on socket pairs whose other ends we keep.
#[cfg(feature = "krun")]
fn start_krun(machine: &Machine) -> Result<(Monitor, Streams), Failed> {
    use std::os::fd::OwnedFd;
    let tty = machine.tty;
    let pair = || -> Result<(UnixStream, OwnedFd), Failed> {
        let (a, b) = UnixStream::pair()?;
        Ok((a, b.into()))
    };
    let ctl = pair()?;
    let stdio = match tty {
        true => Vec::new(),
        false => vec![pair()?, pair()?, pair()?],
    };
    let log = fs::File::create(CONSOLE_LOG)?;
    match ns::fork()? {
        ns::Forked::Child => {
            let fds: Vec<i32> = std::iter::once(&ctl)
                .chain(stdio.iter())
                .map(|(_, theirs)| theirs.as_raw_fd())
                .collect();
            let e = super::krun::enter(machine, &fds, log.as_raw_fd());
            let _ =
                std::io::Write::write_all(&mut io::stderr(), format!("oci2bin: {e}\n").as_bytes());
            ns::exit_now(exec::EXIT_OURS)
        }
        ns::Forked::Parent(pid) => Ok((
            Monitor::Forked(pid),
            Streams {
                term: None,
                ctl: ctl.0,
                stdio: stdio.into_iter().map(|(ours, _)| ours).collect(),
            },
        )),
    }
}

/// passt, killed when dropped (it also quits on its own once qemu is gone: --one-off).
struct Passt(Child);

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_passt(args: &[String]) -> Res<Passt> {
    let bin = std::env::var_os("OCI2BIN_PASST").unwrap_or_else(|| "passt".into());
    // Its chatter (it also tries syslog) goes to a log in the run directory.
    let log = fs::File::create("passt.log")?;
    let child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            format!(
                "--net passt needs passt ({}: {e}): install it (apt-get install passt)",
                Path::new(&bin).display()
            )
        })?;
    let mut p = Passt(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(plan::vm::PASST_SOCKET).exists() {
        if let Ok(Some(st)) = p.0.try_wait() {
            return Err(format!("passt ended before it listened ({st})").into());
        }
        if Instant::now() > deadline {
            return Err("passt did not create its socket within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Listening follows the bind at once; give it that moment.
    std::thread::sleep(Duration::from_millis(5));
    Ok(p)
}

/// Accepts the monitor's connection on `l`, unless it ends first or the deadline passes.
fn accept(l: &UnixListener, child: &mut Child, deadline: Instant) -> Result<UnixStream, String> {
    loop {
        let mut fds = [tty::poll_fd(l.as_raw_fd(), libc::POLLIN)];
        tty::poll(&mut fds, 100).map_err(|e| e.to_string())?;
        if fds[0].revents != 0 {
            return l.accept().map(|(s, _)| s).map_err(|e| e.to_string());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("qemu ended before the guest started ({st})"));
        }
        if Instant::now() > deadline {
            return Err("qemu did not connect its ports".into());
        }
    }
}

/// Forwards output and signals until the monitor ends; the command's exit code, if the guest
/// sent one.
fn serve(
    child: &mut Monitor,
    ctl: &mut UnixStream,
    outputs: &mut [UnixStream],
    sigfd: i32,
    stop: Option<u64>,
    kvm: bool,
) -> Res<(Option<i32>, bool)> {
    let mut code = None;
    let mut ctl_buf = Vec::new();
    let mut open = vec![true; outputs.len()];
    let mut ctl_open = true;
    let started = Instant::now();
    let mut ready = false;
    let mut kill_at: Option<Instant> = None;
    loop {
        let mut fds = vec![tty::poll_fd(sigfd, libc::POLLIN)];
        let ctl_at = ctl_open.then(|| {
            fds.push(tty::poll_fd(ctl.as_raw_fd(), libc::POLLIN));
            fds.len() - 1
        });
        let mut out_at = Vec::new();
        for (i, s) in outputs.iter().enumerate() {
            if open[i] {
                fds.push(tty::poll_fd(s.as_raw_fd(), libc::POLLIN));
                out_at.push((i, fds.len() - 1));
            }
        }
        let _ = tty::poll(&mut fds, 200);
        if ctl_at.is_some_and(|at| fds[at].revents != 0) {
            let mut chunk = [0u8; 256];
            match ctl.read(&mut chunk) {
                Ok(0) | Err(_) => ctl_open = false,
                Ok(n) => ctl_buf.extend_from_slice(&chunk[..n]),
            }
            for f in wire::take_frames(&mut ctl_buf) {
                match Message::decode(&f) {
                    Some(Message::Ready) => ready = true,
                    Some(Message::Exit(c)) => code = Some(c),
                    _ => {}
                }
            }
        }
        for &(i, at) in &out_at {
            if fds[at].revents == 0 {
                continue;
            }
            let mut chunk = [0u8; 65536];
            match outputs[i].read(&mut chunk) {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => {
                    // stdout is outputs[0], stderr outputs[1].
                    let fd = if i == 0 { 1 } else { 2 };
                    let _ = tty::write_all(fd, &chunk[..n]);
                }
            }
        }
        if fds[0].revents != 0 {
            while let Ok(Some(sig)) = tty::read_signal(sigfd) {
                if sig.signo == libc::SIGCHLD {
                    continue;
                }
                if sig.signo == libc::SIGWINCH {
                    if let Some(ws) = tty::window_size(0) {
                        let m = Message::Resize(ws.ws_row, ws.ws_col);
                        let _ = wire::write_frame(ctl, &m.encode());
                    }
                    continue;
                }
                let _ = wire::write_frame(ctl, &Message::Signal(sig.signo as u8).encode());
                if kill_at.is_none() {
                    kill_at = stop.map(|s| Instant::now() + Duration::from_secs(s));
                }
            }
        }
        if child.ended() {
            // Its streams are closed now: take what is left in them.
            for (i, s) in outputs.iter_mut().enumerate() {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                let _ = tty::write_all(if i == 0 { 1 } else { 2 }, &rest);
            }
            if code.is_none() {
                let _ = ctl.read_to_end(&mut ctl_buf);
                for f in wire::take_frames(&mut ctl_buf) {
                    if let Some(Message::Exit(c)) = Message::decode(&f) {
                        code = Some(c);
                    }
                }
            }
            return Ok((code, ready));
        }
        if code.is_some() && kill_at.is_none() {
            // The guest restarts itself now; a monitor that hangs on is stopped.
            kill_at = Some(Instant::now() + Duration::from_secs(10));
        }
        let late = !ready && started.elapsed() > boot_timeout(kvm);
        if late || kill_at.is_some_and(|t| Instant::now() > t) {
            child.kill();
            if late {
                return Ok((None, false));
            }
            return Ok((code.or(Some(137)), true));
        }
    }
}

/// A failure of the guest, with what the kernel printed and, under KVM, the likely cause.
fn explain(what: String, kvm: bool, tty: bool) -> String {
    let mut msg = what;
    if !tty {
        if let Ok(log) = fs::read_to_string(CONSOLE_LOG) {
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            if !tail.is_empty() {
                msg.push_str("; the guest's console ended with:");
                for l in tail.iter().rev() {
                    msg.push_str("\n  ");
                    msg.push_str(l.trim_end_matches('\r'));
                }
            }
        }
    }
    if kvm {
        msg.push_str(
            "\n(under KVM: a host that is itself a VM without nested virtualisation kills \
             guests early; --vmm qemu --vm-accel tcg runs the guest in emulation)",
        );
    }
    msg
}
