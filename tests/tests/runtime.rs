//! The runtime, as an unprivileged user: command and arguments (R1), environment and working
//! directory (R2), exit codes and signals, the namespaces, whiteouts honoured, writes staying in
//! the run, and the cache shared safely by parallel first starts.

use e2e::{assert_one_line_error, fixtures, text, Runner};
use std::path::Path;
use std::time::{Duration, Instant};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// One runner (warm cache) shared by the tests that only read.
fn shared() -> &'static Runner {
    static R: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();
    R.get_or_init(Runner::new)
}

#[test]
fn runs_the_image_cmd_and_args_replace_it() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    // Default Cmd is `sh`: with no tty and empty stdin it exits 0 at once.
    let o = r
        .command(bb(), &[])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "default cmd: {}", text(&o.stderr));
    assert_eq!(r.ok(bb(), &["echo", "hello", "world"]), "hello world\n");
    assert_eq!(
        r.ok(bb(), &["--", "echo", "--not-a-flag"]),
        "--not-a-flag\n"
    );
}

#[test]
fn entrypoint_and_cmd_follow_docker_rules() {
    if !e2e::runner::userns() {
        return;
    }
    let (_d, f) = fixtures::package(
        fixtures::busybox(),
        "ep",
        &[
            "--entrypoint",
            r#"["echo","ep"]"#,
            "--cmd",
            r#"["default"]"#,
        ],
    );
    let r = shared();
    assert_eq!(r.ok(&f, &[]), "ep default\n");
    assert_eq!(r.ok(&f, &["x", "y"]), "ep x y\n");
    assert_eq!(r.ok(&f, &["--", "--weird"]), "ep --weird\n");
    // --entrypoint replaces the entrypoint and drops the image's Cmd.
    assert_eq!(r.ok(&f, &["--entrypoint", "echo"]), "\n");
    assert_eq!(r.ok(&f, &["--entrypoint=echo", "z"]), "z\n");
}

#[test]
fn environment_flags_files_and_precedence() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    assert_eq!(r.ok(bb(), &["sh", "-c", "echo $FIXTURE"]), "busybox\n");
    assert_eq!(r.ok(bb(), &["-e", "A=1", "sh", "-c", "echo $A"]), "1\n");
    assert_eq!(
        r.ok(bb(), &["--env=FIXTURE=over", "sh", "-c", "echo $FIXTURE"]),
        "over\n"
    );
    // `-e K` takes the host's value.
    let o = r
        .command(bb(), &["-e", "FROMHOST", "sh", "-c", "echo $FROMHOST"])
        .env("FROMHOST", "h")
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), "h\n");
    // Env files apply first; -e wins whatever the order on the command line.
    let envf = r.home().join("env.list");
    std::fs::write(&envf, "# comment\n\nA=file\nB=file\n").unwrap();
    let e = envf.to_str().unwrap();
    assert_eq!(
        r.ok(
            bb(),
            &["-e", "A=flag", "--env-file", e, "sh", "-c", "echo $A $B"]
        ),
        "flag file\n"
    );
    // Docker's defaults are present.
    let env = r.ok(bb(), &["env"]);
    for k in ["PATH=/bin", "HOME=/root", "HOSTNAME="] {
        assert!(env.contains(k), "env lacks {k}:\n{env}");
    }
}

#[test]
fn workdir_is_set_and_created() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    assert_eq!(r.ok(bb(), &["pwd"]), "/\n");
    assert_eq!(r.ok(bb(), &["-w", "/tmp", "pwd"]), "/tmp\n");
    assert_eq!(r.ok(bb(), &["--workdir=/new/dir", "pwd"]), "/new/dir\n");
}

#[test]
fn exit_codes_are_forwarded() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    assert_eq!(r.run(bb(), &["sh", "-c", "exit 3"]).status.code(), Some(3));
    // Under the init (explicit or not) the command is not PID 1: it can die of its own signal.
    assert_eq!(
        r.run(bb(), &["--init", "sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(137)
    );
    assert_eq!(
        r.run(bb(), &["--init", "sh", "-c", "kill -15 $$"])
            .status
            .code(),
        Some(143)
    );
    // With --no-init the command is PID 1; killed from the host it reports 128+9 too.
    let mut c = r
        .command(bb(), &["--no-init", "sleep", "30"])
        .spawn()
        .unwrap();
    let children = format!("/proc/{0}/task/{0}/children", c.id());
    let mut pid1 = String::new();
    for _ in 0..100 {
        // The loader's children: the container's PID 1 and its oci2bin-cleanup process.
        let all = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(p) = all.split_whitespace().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        }) {
            pid1 = p.to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill on the container's init, a descendant of our child.
    unsafe { libc::kill(pid1.parse().unwrap(), libc::SIGKILL) };
    assert_eq!(c.wait().unwrap().code(), Some(137));
    let o = r.run(bb(), &["no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no-such-command"));
    let o = r.run(bb(), &["/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", text(&o.stderr));
}

#[test]
fn runtime_flag_typos_are_clear_errors() {
    if !e2e::runner::userns() {
        return;
    }
    let o = shared().run(bb(), &["--wrokdir", "/tmp", "pwd"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "--wrokdir");
    let o = shared().run(bb(), &["-e"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "-e");
}

#[test]
fn help_lists_the_runtime_flags() {
    if !e2e::runner::userns() {
        return;
    }
    let o = shared().run(bb(), &["--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for flag in [
        "--entrypoint",
        "--workdir",
        "--env",
        "--env-file",
        "--init",
        "--user",
        "--",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

fn term(child: &std::process::Child) {
    // SAFETY: kill on a child pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

#[test]
fn signals_reach_the_container() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    // With --no-init the command is PID 1: it gets the signals it handles.
    let mut c = r
        .command(
            bb(),
            &[
                "--no-init",
                "sh",
                "-c",
                "trap 'exit 42' TERM; while :; do sleep 0.1; done",
            ],
        )
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    term(&c);
    assert_eq!(c.wait().unwrap().code(), Some(42));
    // By default our init forwards the signal to a command that does not handle it.
    let mut c = r.command(bb(), &["sleep", "30"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    term(&c);
    assert_eq!(c.wait().unwrap().code(), Some(143));
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn namespaces_pid1_root_hostname_proc_dev_sys() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    // The command runs under our init (PID 1), or is PID 1 itself with --no-init.
    assert_eq!(r.ok(bb(), &["sh", "-c", "echo $$"]), "2\n");
    assert_eq!(r.ok(bb(), &["--no-init", "sh", "-c", "echo $$"]), "1\n");
    assert_eq!(r.ok(bb(), &["id", "-u"]), "0\n");
    assert_eq!(r.ok(bb(), &["--user", "1000", "id", "-u"]), "1000\n");
    assert_eq!(r.ok(bb(), &["-u", "app", "id", "-un"]), "app\n");
    let ps = r.ok(bb(), &["ps", "-o", "pid"]);
    assert!(
        ps.lines().count() <= 4,
        "only our processes are visible:\n{ps}"
    );
    let host = r.ok(bb(), &["hostname"]);
    assert_eq!(host.trim().len(), 12, "docker-like hostname: {host}");
    r.ok(
        bb(),
        &[
            "sh",
            "-c",
            "echo x > /dev/null && head -c 4 /dev/urandom | wc -c",
        ],
    );
    let sys = r.ok(
        bb(),
        &["awk", "$2 == \"/sys\" { print $4 }", "/proc/mounts"],
    );
    assert!(
        sys.starts_with("ro"),
        "/sys must be mounted read-only: {sys:?}"
    );
    assert!(r
        .ok(bb(), &["--no-init", "cat", "/proc/1/cmdline"])
        .starts_with("cat"));
}

#[test]
fn whiteouts_are_honoured_busybox() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let o = r.run(bb(), &["test", "-e", "/etc/motd"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "/etc/motd was whited out in layer 2"
    );
    assert_eq!(r.ok(bb(), &["cat", "/etc/issue"]), "busybox fixture\n");
}

#[test]
fn debian_multilayer_whiteouts_opaque_dirs_and_all_compressions() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let d = fixtures::debian_bin();
    // gzip base + umoci whiteout + zstd opaque dir + uncompressed layer.
    assert_eq!(r.ok(d, &["/opt/fixture/hello.sh"]), "hello from layer2\n");
    assert_eq!(
        r.run(d, &["test", "-e", "/etc/debian_version"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(r.ok(d, &["ls", "/usr/share/doc"]), "README.fixture\n");
    assert!(r.ok(d, &["cat", "/etc/os-release"]).contains("bookworm"));
    // apt works in a one-uid namespace thanks to the sandbox patch.
    let o = r.run(
        d,
        &[
            "--userns=single",
            "apt-get",
            "-s",
            "-o",
            "Debug::NoLocking=1",
            "install",
            "nothing-at-all",
        ],
    );
    assert!(
        !text(&o.stderr).contains("setgroups"),
        "{}",
        text(&o.stderr)
    );
    // The setpriv shim: a "switch" to who we already are runs the command.
    assert_eq!(
        r.ok(
            d,
            &[
                "--userns=single",
                "setpriv",
                "--reuid=0",
                "--regid=0",
                "--clear-groups",
                "echo",
                "shim"
            ]
        ),
        "shim\n"
    );
}

#[test]
fn writes_do_not_leak_into_the_cache_or_the_next_run() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    r.ok(
        bb(),
        &[
            "sh",
            "-c",
            "echo leak > /etc/leak && rm /bin/ls && mkdir /newdir",
        ],
    );
    assert_eq!(
        r.run(bb(), &["test", "-e", "/etc/leak"]).status.code(),
        Some(1)
    );
    assert_eq!(
        r.run(bb(), &["test", "-e", "/newdir"]).status.code(),
        Some(1)
    );
    r.ok(bb(), &["ls", "/"]);
    let entries = r.files_under_cache("rootfs");
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    // The image's trees: its layers in the store (or a merged entry).
    let trees: Vec<_> = r
        .files_under_cache("layers")
        .into_iter()
        .map(|l| l.join("tree"))
        .chain(entries)
        .collect();
    assert!(trees.iter().all(|t| !t.join("etc/leak").exists()));
    assert!(trees.iter().any(|t| t.join("bin/ls").exists()));
}

#[test]
fn two_parallel_first_starts_share_one_cache_entry() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let d = fixtures::debian_bin();
    let a = r.command(d, &["true"]).spawn().unwrap();
    let b = r.command(d, &["true"]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "first: {}", text(&a.stderr));
    assert!(b.status.success(), "second: {}", text(&b.stderr));
    assert_eq!(r.files_under_cache("rootfs").len(), 1);
    let leftovers: Vec<_> = r.files_under_cache("tmp");
    assert!(leftovers.is_empty(), "no staging left: {leftovers:?}");
}

/// PID 1 (our init) shows itself as `oci2bin-init`, not the host path of the file and the
/// options it was started with; the command keeps its own argv.
#[test]
fn pid_1_shows_the_init_and_not_the_host_path() {
    if !e2e::runner::userns() {
        return;
    }
    let out = shared().ok(
        bb(),
        &["--hostname", "h", "sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; cat /proc/1/comm; tr '\\0' ' ' </proc/self/cmdline"],
    );
    let host = bb().display().to_string();
    assert!(!out.contains(&host) && !out.contains("--hostname"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim_end(), "oci2bin-init", "{out}");
    assert_eq!(lines[1], "oci2bin-init", "{out}");
    assert!(lines[2].starts_with("tr "), "{out}");
}
