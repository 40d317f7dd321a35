//! The executor for real: plans and runs containers on a busybox rootfs built under /tmp, in
//! user/mount/pid/uts/ipc namespaces, as whoever runs the tests (root, or an unprivileged user:
//! `setpriv --reuid=o2btest --regid=o2btest --init-groups -- <test binary>`).
//!
//! The executor needs a single-threaded process (unshare of a user namespace demands it) and the
//! container writes to our stdout, so each case re-runs this test binary as a child (one test,
//! selected by `--exact`) that forks a supervisor and reports the exit status.

use loader::args::{self, Parsed};
use loader::format::Runtime;
use loader::sys::ns;
use loader::{exec, host, plan};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "O2B_EXECUTOR_CASE";
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "id", "hostname", "ls", "env", "pwd", "sleep", "kill", "true", "false",
    "touch", "test", "grep", "wc", "stat", "readlink", "mkdir",
];

/// The child side: when this test binary runs as a case's child, run the case and exit.
#[test]
fn executor_child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('\x1f');
    let rootfs = PathBuf::from(parts.next().unwrap());
    let scratch = PathBuf::from(parts.next().unwrap());
    let flags = match args::parse(parts.map(String::from)).unwrap() {
        Parsed::Run(f) => f,
        p => panic!("{p:?}"),
    };
    let rt = Runtime {
        image_id: format!("sha256:{}", "0".repeat(64)),
        name: "busybox:test".into(),
        env: vec!["IMAGE_VAR=from-image".into()],
        ..Runtime::default()
    };
    let env_files = args::read_env_files(&flags).unwrap();
    let own = (loader::sys::ns::euid(), loader::sys::ns::egid());
    let facts = host::gather(
        rootfs.into(),
        scratch,
        env_files,
        plan::IdMode::Single,
        own,
        None,
        &[],
    )
    .unwrap();
    let steps = match plan::plan(&rt, &flags, &facts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oci2bin: {e}");
            std::process::exit(exec::EXIT_OURS);
        }
    };
    match ns::fork().unwrap() {
        ns::Forked::Child => {
            let code = exec::run(&steps).unwrap_or_else(|e| {
                eprintln!("oci2bin: {e}");
                e.code
            });
            ns::exit_now(code);
        }
        ns::Forked::Parent(pid) => {
            println!("SUPERVISOR={pid}");
            let exit = ns::wait_for(pid).unwrap();
            std::process::exit(exit.code());
        }
    }
}

struct Rootfs {
    dir: tempfile::TempDir,
    /// Where the tree is, below `dir`.
    rel: PathBuf,
}

impl Rootfs {
    fn path(&self) -> PathBuf {
        self.dir.path().join(&self.rel)
    }
}

/// A busybox image tree: /bin/busybox and applet links, /etc with passwd and group.
fn busybox_rootfs() -> Rootfs {
    busybox_rootfs_at("rootfs".into())
}

fn busybox_rootfs_at(rel: PathBuf) -> Rootfs {
    let dir = tempfile::Builder::new()
        .prefix("o2b-exec-")
        .tempdir_in("/tmp")
        .unwrap();
    let r = dir.path().join(&rel);
    for d in ["bin", "etc", "tmp", "root", "usr/bin"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    for a in APPLETS {
        symlink("busybox", r.join("bin").join(a)).unwrap();
    }
    fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:100:101:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(r.join("etc/group"), "root:x:0:\napp:x:101:\n").unwrap();
    fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    Rootfs { dir, rel }
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn child_command(rootfs: &Rootfs, args: &[&str]) -> Command {
    let scratch = rootfs.dir.path().join(format!("scratch-{}", rand_suffix()));
    fs::create_dir(&scratch).unwrap();
    let mut spec = vec![
        rootfs.path().display().to_string(),
        scratch.display().to_string(),
    ];
    spec.extend(args.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "executor_child_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(CHILD_ENV, spec.join("\x1f"))
    .env("O2B_HOST_ONLY", "host-value")
    .stdin(Stdio::null());
    cmd
}

fn rand_suffix() -> String {
    host::random_hostname().unwrap()
}

fn run(rootfs: &Rootfs, args: &[&str]) -> Ran {
    let out = child_command(rootfs, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("SUPERVISOR=") && !l.starts_with("running ") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sh(rootfs: &Rootfs, script: &str) -> Ran {
    run(rootfs, &["sh", "-c", script])
}

#[test]
fn runs_a_command_and_returns_its_output_and_exit_code() {
    let r = busybox_rootfs();
    let ran = sh(&r, "echo hello; exit 7");
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (7, "hello"),
        "{}",
        ran.stderr
    );
}

#[test]
fn the_command_runs_as_root_under_our_init_by_default() {
    let r = busybox_rootfs();
    let ran = sh(
        &r,
        "echo $$ $(id -u) $(id -g); cat /proc/1/cmdline | tr '\\0' ' '",
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "2 0 0", "{}", ran.stderr);
    let ran = run(&r, &["--no-init", "sh", "-c", "echo $$"]);
    assert_eq!(ran.stdout, "1", "{}", ran.stderr);
}

#[test]
fn user_flag_maps_the_host_uid_to_that_user() {
    let r = busybox_rootfs();
    assert_eq!(run(&r, &["-u", "app", "id", "-u"]).stdout, "100");
    let ran = run(
        &r,
        &[
            "-u",
            "4242:4343",
            "sh",
            "-c",
            "id -u; id -g; echo $HOME; grep -c 4242 /etc/passwd; whoami || echo nameless",
        ],
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(&lines[..3], ["4242", "4343", "/"], "{}", ran.stderr);
    // As under Docker, a uid the image does not name stays nameless: no entry is invented.
    assert_eq!(&lines[3..], ["0", "nameless"], "{}", ran.stderr);
    assert!(!fs::read_to_string(r.path().join("etc/passwd"))
        .unwrap()
        .contains("4242"));
}

#[test]
fn a_missing_command_exits_127_with_dockers_message() {
    let r = busybox_rootfs();
    let ran = run(&r, &["nosuchcmd"]);
    assert_eq!(ran.code, 127);
    assert!(
        ran.stderr
            .contains("oci2bin: exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        ran.stderr
    );
    let ran = run(&r, &["/no/such/file"]);
    assert_eq!(ran.code, 127, "{}", ran.stderr);
}

#[test]
fn a_command_that_cannot_run_exits_126() {
    let r = busybox_rootfs();
    fs::write(r.path().join("bin/notexec"), "#!/bin/sh\necho no\n").unwrap();
    fs::set_permissions(
        r.path().join("bin/notexec"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let ran = run(&r, &["notexec"]);
    assert_eq!(ran.code, 126, "{}", ran.stderr);
    assert!(ran.stderr.contains("permission denied"), "{}", ran.stderr);
    fs::write(r.path().join("bin/garbage"), [0u8, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    fs::set_permissions(
        r.path().join("bin/garbage"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let ran = run(&r, &["/bin/garbage"]);
    assert_eq!(ran.code, 126, "{}", ran.stderr);
}

#[test]
fn the_command_is_resolved_with_the_containers_path() {
    let r = busybox_rootfs();
    fs::create_dir_all(r.path().join("opt/tools")).unwrap();
    fs::write(
        r.path().join("opt/tools/only-here"),
        "#!/bin/sh\necho found \"$@\"\n",
    )
    .unwrap();
    let exe = fs::Permissions::from_mode(0o755);
    fs::set_permissions(r.path().join("opt/tools/only-here"), exe).unwrap();
    assert_eq!(run(&r, &["only-here"]).code, 127);
    let ran = run(&r, &["-e", "PATH=/opt/tools:/bin", "only-here", "it"]);
    assert_eq!(ran.stdout, "found it", "{}", ran.stderr);
}

#[test]
fn environment_has_image_flags_and_docker_defaults() {
    let r = busybox_rootfs();
    let envf = r.dir.path().join("vars.env");
    fs::write(
        &envf,
        "# c\nFROM_FILE=1\nIMAGE_VAR=from-file\nO2B_HOST_ONLY\n",
    )
    .unwrap();
    let ran = run(
        &r,
        &[
            "--env-file",
            envf.to_str().unwrap(),
            "-e",
            "FLAG=2",
            "-e",
            "NOT_ON_HOST",
            "env",
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let env: Vec<&str> = ran.stdout.lines().collect();
    for want in [
        "IMAGE_VAR=from-file",
        "FROM_FILE=1",
        "FLAG=2",
        "O2B_HOST_ONLY=host-value",
        "HOME=/root",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    assert!(env.iter().any(|e| e.starts_with("HOSTNAME=")));
    assert!(
        ran.stderr.contains("NOT_ON_HOST is not set on the host"),
        "{}",
        ran.stderr
    );
}

#[test]
fn hostname_is_random_and_written_to_etc() {
    let r = busybox_rootfs();
    let ran = sh(
        &r,
        "hostname; cat /etc/hostname; grep -c \"$(hostname)\" /etc/hosts; echo $HOSTNAME",
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}: {}", ran.stdout, ran.stderr);
    assert_eq!(lines[0].len(), 12);
    assert_eq!(lines[1], lines[0]);
    assert_eq!(lines[2], "1");
    assert_eq!(lines[3], lines[0]);
}

#[test]
fn workdir_is_created_and_entered() {
    let r = busybox_rootfs();
    assert_eq!(run(&r, &["-w", "/srv/app", "pwd"]).stdout, "/srv/app");
    assert!(!r.path().join("srv").exists());
}

#[test]
fn writes_stay_in_the_run_and_never_reach_the_image() {
    let r = busybox_rootfs();
    let ran = sh(
        &r,
        "echo x > /etc/new && echo y >> /etc/passwd && rm /bin/true && cat /etc/new",
    );
    assert_eq!(ran.stdout, "x", "{}", ran.stderr);
    assert!(!r.path().join("etc/new").exists());
    assert!(r.path().join("bin/true").exists());
    assert!(!fs::read_to_string(r.path().join("etc/passwd"))
        .unwrap()
        .contains('y'));
}

#[test]
fn dev_proc_and_a_read_only_sys_are_there() {
    let r = busybox_rootfs();
    let ran = sh(
        &r,
        "ls /dev | sort | tr '\\n' ' '; echo; echo ok > /dev/null && echo devnull; \
         test -c /dev/pts/ptmx && echo pts; readlink /dev/ptmx; cat /proc/$$/comm; \
         touch /sys/x 2>/dev/null || echo sys-ro; grep ' /sys ' /proc/mounts | grep -c ro",
    );
    let lines: Vec<&str> = ran.stdout.lines().collect();
    for d in [
        "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
        "urandom", "zero", "fd",
    ] {
        assert!(
            lines[0].split(' ').any(|x| x == d),
            "/dev lacks {d}: {}",
            lines[0]
        );
    }
    assert_eq!(
        &lines[1..],
        ["devnull", "pts", "pts/ptmx", "sh", "sys-ro", "1"],
        "{}",
        ran.stderr
    );
}

#[test]
fn hostile_symlinks_in_the_image_do_not_redirect_mounts_or_writes() {
    let r = busybox_rootfs();
    let victim = r.dir.path().join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("hosts"), "precious\n").unwrap();
    symlink(&victim, r.path().join("proc")).unwrap();
    symlink(&victim, r.path().join("dev")).unwrap();
    symlink(victim.join("hosts"), r.path().join("etc/hosts")).unwrap();
    symlink(victim.join("resolv"), r.path().join("etc/resolv.conf")).unwrap();
    let ran = sh(
        &r,
        "cat /proc/$$/comm; grep -c ip6-localnet /etc/hosts; test -c /dev/null && echo dev",
    );
    assert_eq!(ran.stdout, "sh\n1\ndev", "{}", ran.stderr);
    assert_eq!(
        fs::read_to_string(victim.join("hosts")).unwrap(),
        "precious\n"
    );
    assert!(!victim.join("resolv").exists());
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
}

/// Starts a case whose command prints "ready" once set up; returns the child, the supervisor's
/// pid and the rest of its output lines.
fn start_ready(
    r: &Rootfs,
    args: &[&str],
) -> (
    std::process::Child,
    i32,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = child_command(r, args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut supervisor = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(pid) = line.strip_prefix("SUPERVISOR=") {
            supervisor = Some(pid.parse::<i32>().unwrap());
        }
        if line == "ready" {
            break;
        }
    }
    (child, supervisor.expect("no supervisor pid"), lines)
}

/// Issue 12: a command that ignores the stop signal is killed after the stop timeout, whether
/// it runs under our init or as PID 1; the status is 128+9 as Docker's.
#[test]
fn a_signal_ignoring_command_is_killed_after_the_stop_timeout() {
    let r = busybox_rootfs();
    for (extra, sig) in [
        (&["--stop-timeout", "1"][..], libc::SIGTERM),
        (&["--stop-timeout", "1"][..], libc::SIGINT),
        // As PID 1 it needs no trap: the kernel drops what it has no handler for.
        (&["--stop-timeout", "1", "--no-init"][..], libc::SIGTERM),
    ] {
        let script = if extra.contains(&"--no-init") {
            "echo ready; while :; do sleep 0.05; done"
        } else {
            "trap '' TERM INT; echo ready; while :; do sleep 0.05; done"
        };
        let mut args = extra.to_vec();
        args.extend(["sh", "-c", script]);
        let (mut child, supervisor, _lines) = start_ready(&r, &args);
        let t = std::time::Instant::now();
        ns::kill(supervisor, sig).unwrap();
        let status = child.wait().unwrap();
        let took = t.elapsed();
        assert_eq!(status.code(), Some(128 + 9), "{args:?}");
        assert!(
            took >= std::time::Duration::from_millis(900) && took.as_secs() < 5,
            "{args:?} took {took:?}"
        );
    }
}

/// Issue 12: SIGTERM and SIGINT to the loader end a command with default handlers at once.
#[test]
fn sigterm_and_sigint_to_the_loader_end_the_command_with_128_plus_signal() {
    let r = busybox_rootfs();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let (mut child, supervisor, _lines) =
            start_ready(&r, &["sh", "-c", "echo ready; exec sleep 1000"]);
        ns::kill(supervisor, sig).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(128 + sig));
    }
}

/// Issue 12: `--stop-signal` (or the image's StopSignal) is what SIGTERM to the loader becomes.
#[test]
fn sigterm_becomes_the_stop_signal() {
    let r = busybox_rootfs();
    let (mut child, supervisor, lines) = start_ready(
        &r,
        &[
            "--stop-signal",
            "USR1",
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 4' USR1; echo ready; while :; do sleep 0.05; done",
        ],
    );
    ns::kill(supervisor, libc::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(rest, ["got-usr1"]);
    assert_eq!(child.wait().unwrap().code(), Some(4));
}

/// Issue 12: `cmd | head -1` ends: the command dies of SIGPIPE (141) instead of looping as a
/// PID 1 that the kernel shields from it.
#[test]
fn a_closed_pipe_ends_the_command() {
    let r = busybox_rootfs();
    let mut child = child_command(&r, &["sh", "-c", "while :; do echo y; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref() {
        if l.unwrap() == "y" {
            break;
        }
    }
    let t = std::time::Instant::now();
    drop(lines);
    let status = child.wait().unwrap();
    assert!(t.elapsed().as_secs() < 2, "took {:?}", t.elapsed());
    assert_eq!(status.code(), Some(128 + libc::SIGPIPE));
}

/// Issue 12: descriptors the caller leaves open without CLOEXEC do not reach the container,
/// except the `--preserve-fds` ones.
#[test]
fn inherited_descriptors_are_closed_unless_preserved() {
    use std::os::unix::process::CommandExt;
    let r = busybox_rootfs();
    let listing = |args: &[&str]| {
        let mut cmd = child_command(&r, args);
        // SAFETY: dup2 and open are async-signal-safe; fds 3 and 251 stay open over exec.
        unsafe {
            cmd.pre_exec(|| {
                let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                libc::dup2(fd, 251);
                libc::dup2(fd, 3);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.is_empty() && !l.starts_with("SUPERVISOR=") && !l.starts_with("running ")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    // `test` is a shell builtin: it looks at the shell's own descriptors.
    let probe = "for fd in 3 4 251; do test -e /proc/self/fd/$fd && echo open-$fd; done; echo end";
    assert_eq!(listing(&["sh", "-c", probe]), "end");
    assert_eq!(listing(&["--no-init", "sh", "-c", probe]), "end");
    assert_eq!(
        listing(&["--preserve-fds", "1", "sh", "-c", probe]),
        "open-3 end"
    );
}

#[test]
fn init_reaps_and_returns_128_plus_signal() {
    let r = busybox_rootfs();
    let ran = run(&r, &["--init", "sh", "-c", "echo $$; kill -TERM $$"]);
    assert_eq!(ran.code, 128 + 15, "{}", ran.stderr);
    assert_eq!(ran.stdout, "2");
    let ran = run(&r, &["--init", "sh", "-c", "sleep 0.1 & exit 3"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
}

#[test]
fn signals_sent_to_the_loader_reach_the_container() {
    let r = busybox_rootfs();
    for init in [false, true] {
        let mut args = vec![
            "sh",
            "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.05; done",
        ];
        if !init {
            args.insert(0, "--no-init");
        }
        let (mut child, supervisor, lines) = start_ready(&r, &args);
        ns::kill(supervisor, 15).unwrap();
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        let status = child.wait().unwrap();
        assert_eq!(rest, ["got-term"], "init={init}");
        assert_eq!(status.code(), Some(9), "init={init}");
    }
}

#[test]
fn user_switchers_are_replaced_by_the_loader() {
    let r = busybox_rootfs();
    fs::write(r.path().join("usr/bin/gosu"), "not really gosu").unwrap();
    let me = fs::metadata(std::env::current_exe().unwrap())
        .unwrap()
        .len();
    let ran = sh(&r, "wc -c < /usr/bin/gosu");
    assert_eq!(ran.stdout.trim(), me.to_string(), "{}", ran.stderr);
    assert_eq!(
        fs::read_to_string(r.path().join("usr/bin/gosu")).unwrap(),
        "not really gosu"
    );
}

#[test]
fn apt_images_get_the_sandbox_override_in_the_run_only() {
    let r = busybox_rootfs();
    fs::create_dir_all(r.path().join("etc/apt")).unwrap();
    let ran = run(&r, &["cat", "/etc/apt/apt.conf.d/00oci2bin-sandbox"]);
    assert_eq!(ran.stdout, "APT::Sandbox::User \"root\";", "{}", ran.stderr);
    assert!(!r.path().join("etc/apt/apt.conf.d").exists());
}

#[test]
fn plan_errors_stop_before_anything_runs() {
    let r = busybox_rootfs();
    let ran = run(&r, &["-u", "ghost", "true"]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr.contains("unable to find user ghost"),
        "{}",
        ran.stderr
    );
}

#[test]
fn without_overlayfs_the_run_gets_a_private_copy() {
    // Overlay options are limited to one page: a lower path this long cannot be mounted.
    let rel: PathBuf = std::iter::repeat_n("d".repeat(250), 16).collect();
    let r = busybox_rootfs_at(rel);
    let ran = sh(
        &r,
        "echo x > /etc/new; cat /etc/new; grep -c ' / overlay' /proc/mounts",
    );
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(ran.stdout, "x\n0");
    assert!(
        ran.stderr.contains("copying the image into memory"),
        "{}",
        ran.stderr
    );
    assert!(!r.path().join("etc/new").exists());
}
