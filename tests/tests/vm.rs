//! R11/B13 VM mode, as the unprivileged test user: files built with `--vm` boot their image in
//! a microVM (`qemu-system-x86_64 -M microvm` with the kernel `make kernel` builds from Debian's
//! linux-source), print, take stdin, return exit codes, share volumes, keep an overlay, forward
//! signals and give a terminal; readers still see an image; bad input is refused. The guest's
//! own kernel is the oracle that we are in a VM: /proc/version names our build user.
//!
//! Emulation (`--vm-accel tcg`) everywhere: this machine's KVM cannot run a guest (nested
//! virtualisation), which the KVM test checks and reports.

use e2e::{assert_one_line_error, fixtures, have, require, text, Runner};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const TCG: &[&str] = &["--vm", "--vm-accel", "tcg"];

fn kernel() -> Option<PathBuf> {
    let k = e2e::workspace().join("target/kernel/vmlinux");
    let ok = k.is_file() && have("qemu-system-x86_64");
    require(
        ok,
        "VM mode needs target/kernel/vmlinux (make kernel) and qemu-system-x86_64",
    )
    .then_some(k)
}

/// The busybox fixture with VM parts.
fn bb() -> Option<&'static Path> {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let k = kernel()?;
    Some(
        &P.get_or_init(|| {
            fixtures::package(
                fixtures::busybox(),
                "busybox-vm",
                &["--vm", "--vm-kernel", k.to_str().unwrap()],
            )
        })
        .1,
    )
}

/// One runner with a warm cache (layers, kernel, runtime copied out once).
fn shared() -> &'static Runner {
    static R: OnceLock<Runner> = OnceLock::new();
    R.get_or_init(Runner::new)
}

fn vm_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [TCG, args].concat()
}

fn in_guest(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

#[test]
fn busybox_boots_its_own_kernel_prints_and_returns_exit_codes() {
    let Some(f) = bb() else { return };
    let r = shared();
    let o = r.run(
        f,
        &vm_args(&[
            "sh",
            "-c",
            "cat /proc/version; echo to-stderr >&2; echo $FIXTURE",
        ]),
    );
    assert!(o.status.success(), "{}", in_guest(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains("(oci2bin@oci2bin)"),
        "not our guest kernel:\n{out}"
    );
    assert!(out.ends_with("busybox\n"), "the image's env: {out}");
    // stdout and stderr stay apart.
    assert!(!out.contains("to-stderr"));
    assert!(text(&o.stderr).contains("to-stderr"), "{}", in_guest(&o));
    for (script, code) in [("exit 0", 0), ("exit 42", 42), ("kill -INT $$", 130)] {
        let o = r.run(f, &vm_args(&["sh", "-c", script]));
        assert_eq!(o.status.code(), Some(code), "{script}: {}", in_guest(&o));
    }
    // The guest's clock is the host's (the microVM keeps its RTC).
    let guest: i64 = r.ok(f, &vm_args(&["date", "+%s"])).trim().parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((guest - host).abs() < 120, "guest {guest}, host {host}");
    let o = r.run(f, &vm_args(&["no-such-command"]));
    assert_eq!(o.status.code(), Some(127), "{}", in_guest(&o));
    assert!(text(&o.stderr).contains("no-such-command"));
}

#[test]
fn debian_boots_and_runs_as_the_image_user() {
    let Some(k) = kernel() else { return };
    let (_d, f) = fixtures::package(
        fixtures::debian(),
        "debian-vm",
        &["--vm", "--vm-kernel", k.to_str().unwrap()],
    );
    let r = Runner::new();
    let out = r.ok(
        &f,
        &vm_args(&[
            "sh",
            "-c",
            ". /etc/os-release; echo $VERSION_ID; id -un; cat /proc/1/comm; test -w /usr && echo writable",
        ]),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "12", "bookworm: {out}");
    assert_eq!(lines[1], "root");
    // PID 1 is our init (the runtime), not the command.
    assert_eq!(lines[2], "init");
    assert_eq!(lines[3], "writable");
    let nobody = r.ok(&f, &vm_args(&["-u", "nobody", "id", "-un"]));
    assert_eq!(nobody, "nobody\n");
}

#[test]
fn stdin_passes_byte_for_byte_and_its_end_reaches_the_command() {
    let Some(f) = bb() else { return };
    let r = shared();
    let data: String = (0..200_000).map(|i| format!("{i}\n")).collect();
    let o = r.run_with_stdin(f, &vm_args(&["wc", "-c"]), &[], &data);
    assert_eq!(
        text(&o.stdout).trim(),
        data.len().to_string(),
        "{}",
        in_guest(&o)
    );
    let o = r.run_with_stdin(f, &vm_args(&["cat"]), &[], "");
    assert!(
        o.status.success() && o.stdout.is_empty(),
        "{}",
        in_guest(&o)
    );
}

#[test]
fn volumes_round_trip_and_read_only_ones_refuse_writes() {
    let Some(f) = bb() else { return };
    let r = shared();
    let vol = r.home().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("from-host"), "host\n").unwrap();
    let v = format!("{}:/data", vol.display());
    let ro = format!("{}:/ro:ro", vol.display());
    std::os::unix::fs::chown(&vol, Some(r.uid()), None).unwrap();
    let out = r.ok(
        f,
        &vm_args(&[
            "-v",
            &v,
            "-v",
            &ro,
            "sh",
            "-c",
            "cat /data/from-host; echo guest > /data/from-guest; echo x > /ro/no || echo refused",
        ]),
    );
    assert_eq!(out, "host\nrefused\n");
    assert_eq!(
        std::fs::read_to_string(vol.join("from-guest")).unwrap(),
        "guest\n"
    );
    assert!(!vol.join("no").exists());
}

#[test]
fn overlay_persist_keeps_writes_across_runs_and_plain_runs_forget_them() {
    let Some(f) = bb() else { return };
    let r = shared();
    let keep = r.home().join("keep");
    let k = keep.to_str().unwrap();
    r.ok(
        f,
        &vm_args(&["--overlay-persist", k, "sh", "-c", "echo kept > /etc/kept"]),
    );
    assert_eq!(
        r.ok(f, &vm_args(&["--overlay-persist", k, "cat", "/etc/kept"])),
        "kept\n"
    );
    let o = r.run(f, &vm_args(&["cat", "/etc/kept"]));
    assert_eq!(o.status.code(), Some(1), "{}", in_guest(&o));
    // The same directory serves a namespace run: one format of writable layer.
    if e2e::runner::userns() {
        assert_eq!(
            r.ok(f, &["--overlay-persist", k, "cat", "/etc/kept"]),
            "kept\n"
        );
    }
}

#[test]
fn sigterm_reaches_the_command_in_the_guest() {
    let Some(f) = bb() else { return };
    let r = shared();
    let mut child = r
        .command(
            f,
            &vm_args(&[
                "sh",
                "-c",
                "trap 'echo got-term; exit 3' TERM; echo ready; sleep 60 & wait",
            ]),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the guest's "ready" before the signal.
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        use std::io::Read;
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the guest ended before it was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill on the pid of a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    use std::io::Read;
    out.read_to_string(&mut rest).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(3), "stdout: {rest}");
    assert!(rest.contains("got-term"), "{rest}");
}

#[test]
fn t_gives_the_command_a_terminal_of_the_callers_size() {
    let Some(f) = bb() else { return };
    if !require(have("script"), "script(1) from util-linux") {
        return;
    }
    let r = shared();
    let line = format!(
        "stty rows 33 cols 99; {} --vm --vm-accel tcg -t sh -c 'tty; stty size; exit 6'",
        f.display()
    );
    let o = r
        .command(Path::new("/usr/bin/script"), &["-eqc", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(6), "{out}{}", text(&o.stderr));
    assert!(out.contains("/dev/hvc0\r\n33 99\r\n"), "{out:?}");
}

#[test]
fn kvm_runs_the_guest_where_it_can() {
    let Some(f) = bb() else { return };
    if !kvm_usable() {
        eprintln!("SKIP: /dev/kvm cannot be opened here (VM runs use emulation)");
        return;
    }
    // As ourselves (root where /dev/kvm is root's): the runner's user has no access to it.
    let o = as_ourselves(f, &["--vm", "--vm-accel", "kvm", "cat", "/proc/version"]);
    if o.status.success() {
        assert!(text(&o.stdout).contains("(oci2bin@oci2bin)"));
        return;
    }
    // This machine kind is a VM without nested virtualisation: the guest dies under KVM. That
    // is the host's limit, said clearly, and `auto` falls back to emulation.
    let err = text(&o.stderr);
    assert!(err.contains("nested virtualisation"), "{err}");
    eprintln!(
        "SKIP: KVM cannot run a guest on this machine: {}",
        err.lines().next().unwrap_or("")
    );
    let auto = as_ourselves(f, &["--vm", "echo", "fell-back"]);
    assert_eq!(text(&auto.stdout), "fell-back\n", "{}", text(&auto.stderr));
    assert!(text(&auto.stderr).contains("emulating"));
}

#[test]
fn oci2vm_outputs_start_in_vm_mode_and_readers_still_see_an_image() {
    let Some(k) = kernel() else { return };
    let dir = e2e::world_tempdir();
    let link = dir.path().join("oci2vm");
    std::os::unix::fs::symlink(e2e::oci2bin(), &link).unwrap();
    let out = dir.path().join("bb");
    let o = Command::new(&link)
        .args(["--vm-kernel", k.to_str().unwrap()])
        .arg(format!("oci:{}:latest", fixtures::busybox().display()))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = shared();
    let v = r.ok(&out, &["--vm-accel", "tcg", "cat", "/proc/version"]);
    assert!(v.contains("(oci2bin@oci2bin)"), "{v}");
    if e2e::runner::userns() {
        let host = r.ok(&out, &["--vm=false", "cat", "/proc/version"]);
        assert!(!host.contains("(oci2bin@oci2bin)"), "--vm=false: {host}");
    }
    let list = text(
        &Command::new("tar")
            .arg("tf")
            .arg(&out)
            .output()
            .unwrap()
            .stdout,
    );
    assert!(list.contains("oci2bin/vm/vmlinux.gz") && list.contains("oci2bin/vm/runtime.gz"));
    let s = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", out.display()))
        .output()
        .unwrap();
    assert!(s.status.success(), "skopeo: {}", text(&s.stderr));
    if e2e::docker::required() {
        let tag = e2e::docker::load(&out);
        assert_eq!(
            e2e::docker::run_sh(&tag, &[], "echo from-docker"),
            "from-docker\n"
        );
        e2e::docker::remove(&tag);
    }
}

#[test]
fn files_without_vm_parts_or_with_tampered_ones_are_refused() {
    let Some(f) = bb() else { return };
    let r = Runner::new();
    let o = r.run(fixtures::busybox_bin(), &vm_args(&["true"]));
    assert_one_line_error(&o, "carries no VM runtime");
    // A byte of the kernel changed: its digest no longer matches, and nothing is kept.
    let dir = e2e::world_tempdir();
    let bad = dir.path().join("bad");
    std::fs::copy(f, &bad).unwrap();
    let parts = loader_parts(&bad);
    let kernel = parts
        .iter()
        .find(|p| p.kind == loader::format::VmPartKind::Kernel)
        .unwrap();
    flip(&bad, kernel.offset + kernel.size / 2);
    let o = r.run(&bad, &vm_args(&["true"]));
    assert_one_line_error(&o, "does not match its sha256");
    let left: Vec<_> = walk(&r.cache().join("vm"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == "vmlinux" || n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The runtime too: the small loader refuses to start it.
    std::fs::copy(f, &bad).unwrap();
    let rt = parts
        .iter()
        .find(|p| p.kind == loader::format::VmPartKind::Runtime)
        .unwrap();
    flip(&bad, rt.offset + 100);
    let o = Runner::new().run(&bad, &vm_args(&["true"]));
    assert_one_line_error(&o, "does not match its sha256");
}

#[test]
fn flags_vm_mode_cannot_honour_are_refused_by_name() {
    let Some(f) = bb() else { return };
    let r = shared();
    for (args, needle) in [
        (&["-d", "true"][..], "-d/--name"),
        (&["--net", "slirp", "true"][..], "--net"),
        (&["--cap-add", "NET_ADMIN", "true"][..], "--cap-add"),
        (&["--memory", "16m", "true"][..], "at least 64m"),
    ] {
        let o = r.run(f, &vm_args(args));
        assert_one_line_error(&o, needle);
        assert_eq!(o.status.code(), Some(125));
    }
    let o = r.run(f, &["--vm", "--vm-accel", "warp", "true"]);
    assert_one_line_error(&o, "--vm-accel");
    let o = r.run(f, &["--vm", "--vmm", "firecracker", "true"]);
    assert_one_line_error(&o, "--vmm");
    let o = r.run(
        f,
        &["--vm", "--vmm", "libkrun", "--vm-accel", "tcg", "true"],
    );
    assert_one_line_error(&o, "KVM only");
    // Without qemu the error says what to install.
    let o = r
        .command(f, &vm_args(&["true"]))
        .env("OCI2BIN_QEMU", "/nonexistent/qemu")
        .output()
        .unwrap();
    assert_one_line_error(&o, "/nonexistent/qemu");
}

#[test]
fn building_for_vm_mode_without_a_kernel_says_how_to_get_one() {
    let dir = e2e::world_tempdir();
    let o = Command::new(e2e::oci2bin())
        .args(["--vm", "--vm-kernel", "/nonexistent/vmlinux"])
        .arg(format!("oci:{}:latest", fixtures::busybox().display()))
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("/nonexistent/vmlinux"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.path().join("x").exists());
    // Not a kernel at all.
    let o = Command::new(e2e::oci2bin())
        .args(["--vm", "--vm-kernel", "/etc/hostname"])
        .arg(format!("oci:{}:latest", fixtures::busybox().display()))
        .arg(dir.path().join("y"))
        .output()
        .unwrap();
    assert!(
        text(&o.stderr).contains("not a usable guest kernel"),
        "{}",
        text(&o.stderr)
    );
}

/// Whether this process can open /dev/kvm (the runner's user cannot here).
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Runs `file ARGS…` as this process's own user (root in CI), with the shared runner's cache
/// and no stdin.
fn as_ourselves(file: &Path, args: &[&str]) -> std::process::Output {
    Command::new(file)
        .args(args)
        .env("HOME", shared().home())
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn loader_parts(file: &Path) -> Vec<loader::format::VmPart> {
    use loader::format::{Runtime, Trailer, TRAILER_LEN};
    let bytes = std::fs::read(file).unwrap();
    let t = Trailer::decode(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).unwrap();
    let r = &bytes[t.runtime.offset as usize..t.runtime.end() as usize];
    Runtime::decode(r).unwrap().vm_parts
}

fn flip(file: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn redis_answers_ping_through_passt_and_a_published_port() {
    let Some(k) = kernel() else { return };
    if !require(have("passt"), "passt (apt-get install passt)")
        || !require(have("redis-cli"), "redis-cli (redis-tools)")
    {
        return;
    }
    let (_d, f) = fixtures::package(
        fixtures::redis(),
        "redis-vm",
        &["--vm", "--vm-kernel", k.to_str().unwrap()],
    );
    let r = Runner::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("{port}:6379");
    let mut c = r
        .command(&f, &vm_args(&["--net", "passt", "-p", &publish]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let answer = loop {
        let o = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "PING"])
            .output()
            .unwrap();
        let out = text(&o.stdout);
        if out.trim() == "PONG" || std::time::Instant::now() > deadline {
            break out;
        }
        if let Ok(Some(st)) = c.try_wait() {
            panic!("the VM ended ({st}) before redis answered");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // SAFETY: kill on the pid of a child we spawned.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let out = c.wait_with_output().unwrap();
    assert_eq!(answer.trim(), "PONG", "{}", text(&out.stderr));
    // redis-server exits on SIGTERM, forwarded into the guest: the run ends as it did.
    assert!(out.status.code().is_some(), "{:?}", out.status);
}

#[test]
fn libkrun_needs_kvm_and_runs_the_same_guest_where_kvm_works() {
    let Some(f) = bb() else { return };
    // The runner's user cannot open /dev/kvm here: a one-line error that says how to fix it.
    let r = shared();
    let o = r.run(f, &["--vm", "--vmm", "libkrun", "true"]);
    let usable = kvm_usable();
    if o.status.success() {
        return;
    }
    if !usable || r.uid() != 0 {
        assert_one_line_error(&o, "--vmm libkrun needs KVM");
    }
    if !usable {
        eprintln!("SKIP: /dev/kvm cannot be opened here: libkrun cannot be run");
        return;
    }
    // As ourselves (root where /dev/kvm is root's).
    let o = as_ourselves(f, &["--vm", "--vmm", "libkrun", "cat", "/proc/version"]);
    if o.status.success() {
        assert!(
            text(&o.stdout).contains("(oci2bin@oci2bin)"),
            "{}",
            text(&o.stdout)
        );
        return;
    }
    let err = text(&o.stderr);
    assert!(
        err.contains("libkrun") || err.contains("nested virtualisation"),
        "an unexplained failure: {err}"
    );
    eprintln!(
        "SKIP: libkrun cannot run a guest on this machine (KVM, nested virtualisation): {}",
        err.lines().next().unwrap_or("")
    );
}
