//! Storage (issue 14, R3/R4), from inside the container as the unprivileged test user: the
//! writable layer on disk in a per-run directory (not RAM), removed at exit and after a kill -9
//! by the next run's cleaner, `--tmpfs-upper`, `--overlay-persist`, named and anonymous volumes,
//! `--device`, `--ssh-agent`, `-u UID` without a passwd entry, and `security.capability` from a
//! layer's PAX record. Docker is the oracle where it has the same flag.

use e2e::hostile::{layout, RawTar};
use e2e::subcommand::{oci, oci_ok, remove_on_drop};
use e2e::{assert_one_line_error, fixtures, have, require, text, world_tempdir, Runner};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The entries of the runner's `runs/` (per-run directories).
fn runs(r: &Runner) -> Vec<PathBuf> {
    r.files_under_cache("runs")
}

/// Waits up to 5 s for `runs/` to hold `n` entries (the removal at exit runs in the background).
fn wait_runs(r: &Runner, n: usize) -> Vec<PathBuf> {
    let start = Instant::now();
    loop {
        let now = runs(r);
        if now.len() == n || start.elapsed() > Duration::from_secs(5) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `bin ARGS` (ending in a `sleep`) and waits until its sleep runs.
fn start_sleeping(r: &Runner, args: &[&str]) -> Child {
    let mut child = r
        .command(bb(), args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        let o = Command::new("pgrep")
            .args(["-u", &r.uid().to_string(), "-x", "sleep"])
            .output()
            .unwrap();
        if !text(&o.stdout).trim().is_empty() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    kill9(&mut child);
    panic!("the container did not start");
}

fn kill9(child: &mut Child) {
    // SAFETY: kill on a child pid we own (setpriv has exec'd the loader under this pid).
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

fn shmem_kb() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `df -k PATH`'s total (1K blocks) on the host.
fn host_df_total(p: &Path) -> String {
    let o = Command::new("df").arg("-k").arg(p).output().unwrap();
    let t = text(&o.stdout);
    t.lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn writes_go_to_disk_in_the_cache_not_to_ram() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    r.ok(bb(), &["true"]);
    // The root's size is the cache's file system (an overlay reports its upper's).
    let df = r.ok(bb(), &["sh", "-c", "df -k / | awk 'NR==2 {print $2}'"]);
    assert_eq!(df.trim(), host_df_total(&r.cache()));
    // 200 MB written inside leave shared memory (tmpfs pages) where it was.
    let before = shmem_kb();
    let out = r.ok(
        bb(),
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=200 2>/dev/null && grep Shmem: /proc/meminfo",
        ],
    );
    let during: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        during < before + 100 * 1024,
        "Shmem rose from {before} kB to {during} kB"
    );
    // --tmpfs-upper=SIZE: the old RAM layer, capped.
    let df = r.ok(
        bb(),
        &[
            "--tmpfs-upper=64m",
            "sh",
            "-c",
            "df -k / | awk 'NR==2 {print $2}'",
        ],
    );
    assert_eq!(df, "65536\n");
    assert!(wait_runs(&r, 0).is_empty(), "{:?}", runs(&r));
}

/// The pid of the cleanup process a run forked (`oci2bin-cleanup`, a child of the loader).
fn cleaner_of(loader: &Child) -> i32 {
    let o = Command::new("pgrep")
        .args(["-P", &loader.id().to_string(), "-x", "oci2bin-cleanup"])
        .output()
        .unwrap();
    text(&o.stdout)
        .trim()
        .parse()
        .expect("no oci2bin-cleanup child")
}

#[test]
fn the_run_dir_is_removed_at_exit_and_after_kill_9_by_the_next_run() {
    if !e2e::runner::userns() || !require(have("pgrep"), "pgrep (procps) missing") {
        return;
    }
    let r = Runner::new();
    // Files the container made hard to remove (a read-only dir, another owner).
    let hard = "mkdir -p /a/b && echo x > /a/b/c && chown 33 /a/b/c 2>/dev/null; \
                chmod 500 /a/b; sleep 60";
    for userns in ["auto", "single"] {
        r.ok(bb(), &["--userns", userns, "sh", "-c", "echo x > /x"]);
        assert!(wait_runs(&r, 0).is_empty(), "{userns}: {:?}", runs(&r));
        // kill -9 of the file: its cleanup process still removes the directory.
        let mut child = start_sleeping(&r, &["--userns", userns, "sh", "-c", hard]);
        let live = runs(&r);
        assert_eq!(live.len(), 1, "{live:?}");
        // A run meanwhile leaves the live one alone.
        r.ok(bb(), &["--userns", userns, "true"]);
        assert_eq!(wait_runs(&r, 1), live);
        kill9(&mut child);
        assert!(wait_runs(&r, 0).is_empty(), "{userns}: {:?}", runs(&r));
        // The cleanup killed too: the directory stays until the next run's cleaner sweeps it.
        let mut child = start_sleeping(&r, &["--userns", userns, "sh", "-c", hard]);
        let live = runs(&r);
        // SAFETY: kill on a process of the test user that this run started.
        unsafe { libc::kill(cleaner_of(&child), libc::SIGKILL) };
        kill9(&mut child);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(runs(&r), live, "{userns}: a killed run leaves its dir");
        r.ok(bb(), &["--userns", userns, "true"]);
        assert!(wait_runs(&r, 0).is_empty(), "{userns}: {:?}", runs(&r));
    }
}

#[test]
fn overlay_persist_keeps_writes_for_the_next_run_and_leaves_the_base_alone() {
    if !e2e::runner::userns() || !require(have("pgrep"), "pgrep (procps) missing") {
        return;
    }
    let r = Runner::new();
    for userns in ["auto", "single"] {
        let d = r.home().join(format!("persist-{userns}"));
        let p = s(&d);
        let flags = ["--userns", userns, "--overlay-persist", &p];
        let run = |script: &str| {
            let mut a = flags.to_vec();
            a.extend(["sh", "-c", script]);
            r.ok(bb(), &a)
        };
        assert_eq!(
            run("cat /x 2>&1; echo one > /x; rm /etc/issue; echo ok"),
            "cat: can't open '/x': No such file or directory\nok\n"
        );
        assert_eq!(
            run("cat /x; ls /etc/issue 2>&1; true"),
            "one\nls: /etc/issue: No such file or directory\n"
        );
        // The cached base is as it was: a run without the dir sees the image.
        assert_eq!(
            r.ok(
                bb(),
                &[
                    "--userns",
                    userns,
                    "sh",
                    "-c",
                    "cat /etc/issue; ls /x 2>&1; true"
                ]
            ),
            "busybox fixture\nls: /x: No such file or directory\n"
        );
        // A second run at once on the same DIR is refused.
        let mut a = flags.to_vec();
        a.extend(["sleep", "60"]);
        let mut first = start_sleeping(&r, &a);
        let o = r.run(bb(), &[&flags[..], &["true"]].concat());
        kill9(&mut first);
        assert_eq!(o.status.code(), Some(125));
        assert_one_line_error(&o, &format!("--overlay-persist {p}: in use by another run"));
    }
    // DIR must be a directory.
    let f = r.home().join("file");
    std::fs::write(&f, "").unwrap();
    let o = r.run(bb(), &["--overlay-persist", &s(&f), "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "not a directory");
}

/// An image with `/data/seed` and `/data/sub/f` (mode 0750 on sub), for volume population.
fn data_image(work: &Path) -> PathBuf {
    let tar = RawTar::default()
        .dir("data/")
        .file("data/seed", b"from the image\n")
        .dir("data/sub/")
        .file("data/sub/f", b"f\n")
        .finish();
    layout(&work.join("layout"), &[(tar, true)]);
    let bin = work.join("data-image");
    e2e::build(&format!("oci:{}", s(&work.join("layout"))), &bin, &[]);
    bin
}

/// The probe for volumes: what the volume holds (modes and names), then a write.
const VOLUME_PROBE: &str = "ls -la /data /data/sub | awk 'NF > 2 { print $1, $NF }'; \
                            cat /data/seed; cat /data/new 2>/dev/null; echo new > /data/new";

#[test]
fn a_named_volume_is_filled_from_the_image_once_and_kept_as_docker_does() {
    if !e2e::runner::userns() {
        return;
    }
    let work = world_tempdir();
    let bin = data_image(work.path());
    let r = Runner::new();
    let ours: Vec<String> = (0..2)
        .map(|_| r.ok(&bin, &["-v", "o2b-data:/data", "sh", "-c", VOLUME_PROBE]))
        .collect();
    assert!(ours[0].contains("from the image\n"), "{}", ours[0]);
    assert!(ours[1].ends_with("from the image\nnew\n"), "{}", ours[1]);
    let vol = r.cache().join("volumes/o2b-data");
    assert_eq!(std::fs::read_to_string(vol.join("new")).unwrap(), "new\n");
    // --mount type=volume names the same volume; ro is read-only.
    let o = r.run(
        &bin,
        &[
            "--mount",
            "type=volume,src=o2b-data,dst=/v,ro",
            "sh",
            "-c",
            "cat /v/new; touch /v/x",
        ],
    );
    assert_eq!(text(&o.stdout), "new\n");
    assert!(text(&o.stderr).contains("Read-only file system"));
    // Anonymous: filled, then gone with the run.
    let anon = r.ok(
        &bin,
        &["--mount", "type=volume,dst=/data", "sh", "-c", VOLUME_PROBE],
    );
    assert_eq!(anon, ours[0]);
    let anon = r.ok(&bin, &["-v", "/data", "sh", "-c", VOLUME_PROBE]);
    assert_eq!(anon, ours[0]);
    assert!(wait_runs(&r, 0).is_empty());
    // Docker: the same two runs on a fresh named volume.
    if !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(&bin);
    let name = format!("o2b-store-{}", std::process::id());
    let v = format!("{name}:/data");
    let docker: Vec<String> = (0..2)
        .map(|_| e2e::docker::run_sh(&tag, &["-v", &v], VOLUME_PROBE))
        .collect();
    let _ = Command::new("docker")
        .args(["volume", "rm", &name])
        .output();
    e2e::docker::remove(&tag);
    assert_eq!(ours, docker);
}

#[test]
fn bad_volume_names_are_refused() {
    let r = Runner::new();
    for (v, needle) in [
        ("x:/data", "invalid volume name 'x'"),
        ("-x:/data", "invalid volume name"),
    ] {
        let o = r.run(bb(), &["-v", v, "true"]);
        assert_eq!(o.status.code(), Some(125), "{v}");
        assert_one_line_error(&o, needle);
    }
}

#[test]
fn device_binds_the_host_node_as_docker_does() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let probe = "stat -c '%t:%T %F %a' /dev/mynull; echo x > /dev/mynull && cat /dev/mynull && echo written";
    let ours = r.ok(
        bb(),
        &["--device", "/dev/null:/dev/mynull", "sh", "-c", probe],
    );
    assert_eq!(ours, "1:3 character special file 666\nwritten\n");
    // A regular file or a missing path is refused.
    for (dev, needle) in [
        ("/etc/passwd:/dev/x", "not a device node"),
        ("/dev/no-such-device", "no such device"),
    ] {
        let o = r.run(bb(), &["--device", dev, "true"]);
        assert_eq!(o.status.code(), Some(125), "{dev}");
        assert_one_line_error(&o, needle);
    }
    if !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let docker = e2e::docker::run_sh(&tag, &["--device", "/dev/null:/dev/mynull"], probe);
    e2e::docker::remove(&tag);
    assert_eq!(ours, docker);
}

#[test]
fn ssh_agent_answers_ssh_add_inside() {
    if !e2e::runner::userns()
        || !require(
            have("ssh-agent") && have("ssh-add") && have("ssh-keygen"),
            "ssh-agent/ssh-add missing (Debian package openssh-client)",
        )
    {
        return;
    }
    let r = Runner::new();
    // An agent of the test user with one key, its socket in the runner's home.
    let sock = r.home().join("agent.sock");
    let key = r.home().join("id");
    let as_user = |cmd: &str| {
        let mut c = r.command(Path::new("/bin/sh"), &["-c", cmd]);
        c.env("SSH_AUTH_SOCK", &sock);
        c
    };
    let mut agent = as_user("exec ssh-agent -D -a \"$SSH_AUTH_SOCK\"")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !sock.exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = as_user(&format!(
        "ssh-keygen -q -t ed25519 -N '' -C o2b-test-key -f {k} && ssh-add -q {k}",
        k = s(&key)
    ))
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let want = as_user("ssh-add -l").output().unwrap();
    // The host's ssh-add and its libraries, bound read-only into the busybox image.
    let mut args = vec!["--ssh-agent".to_string()];
    for d in ["/usr/lib", "/lib", "/lib64"] {
        args.extend(["-v".into(), format!("{d}:{d}:ro")]);
    }
    args.extend([
        "-v".into(),
        "/usr/bin/ssh-add:/bin/ssh-add:ro".into(),
        "sh".into(),
        "-c".into(),
        "echo $SSH_AUTH_SOCK; ssh-add -l".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = r.command(bb(), &a);
    c.env("SSH_AUTH_SOCK", &sock);
    let o = c.output().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(
        text(&o.stdout),
        format!("/run/ssh-agent.sock\n{}", text(&want.stdout)),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("o2b-test-key"));
    // No agent on the host: one line, 125.
    let o = r.run(bb(), &["--ssh-agent", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_one_line_error(&o, "--ssh-agent: SSH_AUTH_SOCK is not set");
}

#[test]
fn a_uid_without_a_passwd_entry_has_no_name_in_single_uid_mode_as_under_docker() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let probe = "id -u; id -g; id -gn; whoami 2>&1; echo $?";
    let ours = r.ok(
        bb(),
        &["--userns", "single", "-u", "1234", "sh", "-c", probe],
    );
    assert_eq!(ours, "1234\n0\nroot\nwhoami: unknown uid 1234\n1\n");
    if !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let docker = e2e::docker::run_sh(&tag, &["-u", "1234"], probe);
    e2e::docker::remove(&tag);
    assert_eq!(ours, docker);
}

/// A PAX extended header record `LEN KEY=VALUE\n` (LEN counts the whole record).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A layer with `bin/capbb` (busybox) whose PAX header gives it `cap_net_raw+ep`, and
/// `cap/cat` linking to it (busybox runs the applet its name says).
fn cap_layer() -> Vec<u8> {
    // vfs_cap_data revision 2, effective: permitted = CAP_NET_RAW (13).
    let mut cap = Vec::new();
    for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&w.to_le_bytes());
    }
    let pax = pax_record("SCHILY.xattr.security.capability", &cap);
    let bin = std::fs::read("/bin/busybox").unwrap();
    let mut t = RawTar::default();
    let pad = |t: &mut RawTar, n: usize| {
        t.bytes
            .extend(std::iter::repeat_n(0, (512 - n % 512) % 512))
    };
    t.header("bin/PaxHeaders/capbb", b'x', pax.len() as u64, "", 0o644);
    t.bytes.extend_from_slice(&pax);
    pad(&mut t, pax.len());
    t.header("bin/capbb", b'0', bin.len() as u64, "", 0o755);
    t.bytes.extend_from_slice(&bin);
    pad(&mut t, bin.len());
    t.dir("cap/").symlink("cap/cat", "/bin/capbb").finish()
}

#[test]
fn security_capability_from_a_layer_works_inside_with_a_range_and_is_dropped_with_one_uid() {
    let r = Runner::new();
    if !e2e::runner::userns() || !require(r.uid() != 0, "needs an unprivileged runner") {
        return;
    }
    let range = have("newuidmap")
        && std::fs::read_to_string("/etc/subuid")
            .is_ok_and(|t| t.lines().any(|l| l.starts_with("o2btest:")));
    if !require(
        range,
        "the test user has no /etc/subuid range (tests/setup-test-user.sh)",
    ) {
        return;
    }
    let work = world_tempdir();
    layout(&work.path().join("layout"), &[(cap_layer(), true)]);
    let bin = work.path().join("cap-image");
    e2e::build(
        &format!("oci:{}", s(&work.path().join("layout"))),
        &bin,
        &[],
    );
    // Run as a non-root user: only the file's capability can raise CapEff.
    let probe = [
        "-u",
        "1000",
        "sh",
        "-c",
        "/cap/cat /proc/self/status | grep CapEff",
    ];
    let mapped = r.ok(&bin, &[&["--userns", "map"], &probe[..]].concat());
    assert_eq!(mapped, "CapEff:\t0000000000002000\n");
    // One uid: the xattr cannot be set by the unprivileged extraction, the file runs without it.
    let single = r.ok(&bin, &[&["--userns", "single"], &probe[..]].concat());
    assert_eq!(single, "CapEff:\t0000000000000000\n");
}

/// A cache on a file system overlayfs refuses as an upper (here another overlay, which needs
/// root to mount on the host): the run says so once and keeps its writes in RAM; an
/// `--overlay-persist` DIR there cannot fall back and stops the start.
#[test]
fn an_upper_overlayfs_refuses_falls_back_to_ram_with_a_warning() {
    let root = unsafe { libc::geteuid() } == 0; // SAFETY: geteuid has no preconditions.
    if !e2e::runner::userns() || !require(root, "mounting an overlay on the host needs root") {
        return;
    }
    let r = Runner::new();
    let d = world_tempdir();
    let p = |x: &str| d.path().join(x);
    for x in ["l", "u", "w", "m"] {
        std::fs::create_dir(p(x)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        s(&p("l")),
        s(&p("u")),
        s(&p("w"))
    );
    let mount = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(p("m"))
        .status()
        .unwrap();
    assert!(mount.success());
    std::os::unix::fs::chown(p("m"), Some(r.uid()), None).unwrap();
    let cache = p("m").join("cache");
    let mut c = r.command(bb(), &["sh", "-c", "echo x > /x && cat /x"]);
    c.env("XDG_CACHE_HOME", &cache);
    let o = c.output().unwrap();
    let persist = s(&p("m").join("keep"));
    let mut c = r.command(bb(), &["--overlay-persist", &persist, "true"]);
    c.env("XDG_CACHE_HOME", &cache);
    let refused = c.output().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let left = std::fs::read_dir(cache.join("oci2bin/runs")).map(|d| d.count());
    let _ = Command::new("umount").arg(p("m")).status();
    assert_eq!(text(&o.stdout), "x\n", "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("overlayfs refuses")
            && text(&o.stderr).contains("keeping its writes in memory"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(left.unwrap(), 0);
    assert_eq!(refused.status.code(), Some(125));
    assert_one_line_error(&refused, "overlayfs with upper");
}

// ---- oci2bin volume create|ls|inspect|rm|prune ----

#[test]
fn volume_create_ls_inspect_rm_and_prune_round_trip() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    assert_eq!(oci_ok(&r, &["volume", "create", "o2b-v1"]), "o2b-v1\n");
    // Again: it exists, which is fine (as Docker's).
    assert_eq!(oci_ok(&r, &["volume", "create", "o2b-v1"]), "o2b-v1\n");
    let random = oci_ok(&r, &["volume", "create"]);
    let random = random.trim();
    assert!(
        random.len() == 64 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "{random}"
    );
    assert_one_line_error(
        &oci(&r, &["volume", "create", "a/b"]),
        "invalid volume name 'a/b'",
    );
    // A run uses the volume that create made; a -v of a new name makes one too.
    r.ok(
        bb(),
        &["-v", "o2b-v1:/data", "sh", "-c", "echo kept > /data/f"],
    );
    r.ok(bb(), &["-v", "o2b-v2:/data", "true"]);
    assert_eq!(
        r.ok(bb(), &["-v", "o2b-v1:/data", "cat", "/data/f"]),
        "kept\n"
    );
    let mut names = ["o2b-v1", "o2b-v2", random];
    names.sort();
    let ls = oci_ok(&r, &["volume", "ls"]);
    let mut want = "DRIVER    VOLUME NAME\n".to_string();
    for n in &names {
        want += &format!("local     {n}\n");
    }
    assert_eq!(ls, want);
    assert_eq!(oci_ok(&r, &["volume", "ls", "-q"]), names.join("\n") + "\n");
    let inspected: serde_json::Value =
        serde_json::from_str(&oci_ok(&r, &["volume", "inspect", "o2b-v1"])).unwrap();
    let v = &inspected[0];
    assert_eq!(
        (
            v["Name"].as_str(),
            v["Driver"].as_str(),
            v["Scope"].as_str()
        ),
        (Some("o2b-v1"), Some("local"), Some("local"))
    );
    let mountpoint = std::path::PathBuf::from(v["Mountpoint"].as_str().unwrap());
    assert_eq!(mountpoint, r.cache().join("volumes/o2b-v1"));
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).unwrap(),
        "kept\n"
    );
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");
    assert_one_line_error(
        &oci(&r, &["volume", "inspect", "o2b-none"]),
        "no such volume: o2b-none",
    );

    assert_eq!(oci_ok(&r, &["volume", "rm", "o2b-v1"]), "o2b-v1\n");
    assert!(!mountpoint.exists());
    assert_one_line_error(
        &oci(&r, &["volume", "rm", "o2b-v1"]),
        "no such volume: o2b-v1",
    );
    assert_eq!(oci_ok(&r, &["volume", "rm", "-f", "o2b-v1"]), "");
    // The next run of that name starts from an empty volume.
    assert_eq!(r.ok(bb(), &["-v", "o2b-v1:/data", "ls", "-A", "/data"]), "");

    // prune: asks first (no answer, nothing removed); with -f, every volume not in use goes.
    let _c = remove_on_drop(&r, &["o2b-user"]);
    r.ok(
        bb(),
        &[
            "-d",
            "--name",
            "o2b-user",
            "-v",
            "o2b-v2:/data",
            "sleep",
            "60",
        ],
    );
    let asked = r.run_with_stdin(&e2e::oci2bin(), &["volume", "prune"], &[], "n\n");
    assert!(text(&asked.stdout).contains("Are you sure you want to continue? [y/N]"));
    assert_eq!(oci_ok(&r, &["volume", "ls", "-q"]).lines().count(), 3);
    let pruned = oci_ok(&r, &["volume", "prune", "-f"]);
    let mut gone = ["o2b-v1", random];
    gone.sort();
    assert!(
        pruned.starts_with(&format!("Deleted Volumes:\n{}\n\n", gone.join("\n"))),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    assert_eq!(oci_ok(&r, &["volume", "ls", "-q"]), "o2b-v2\n");
    oci_ok(&r, &["stop", "-t", "1", "o2b-user"]);
    assert_eq!(oci_ok(&r, &["volume", "rm", "o2b-v2"]), "o2b-v2\n");
    assert_eq!(oci_ok(&r, &["volume", "ls", "-q"]), "");
}

#[test]
fn volume_rm_refuses_a_volume_a_running_container_uses() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let _c = remove_on_drop(&r, &["o2b-busy"]);
    r.ok(
        bb(),
        &[
            "-d",
            "--name",
            "o2b-busy",
            "-v",
            "o2b-inuse:/data",
            "sleep",
            "60",
        ],
    );
    let o = oci(&r, &["volume", "rm", "o2b-inuse"]);
    assert_one_line_error(&o, "remove o2b-inuse: volume is in use - [o2b-busy]");
    assert!(r.cache().join("volumes/o2b-inuse").is_dir());
    // -f does not override it (as Docker's).
    assert_one_line_error(
        &oci(&r, &["volume", "rm", "-f", "o2b-inuse"]),
        "volume is in use",
    );
    // A foreground run without a name keeps no state, but holds the volume all the same.
    let mut anon = r
        .command(bb(), &["-v", "o2b-anon:/data", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its volume is listed once the run holds it (it locks before it makes the directory).
    let start = Instant::now();
    while !oci_ok(&r, &["volume", "ls", "-q"])
        .lines()
        .any(|l| l == "o2b-anon")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no volume o2b-anon"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = oci(&r, &["volume", "rm", "o2b-anon"]);
    assert_one_line_error(
        &o,
        "remove o2b-anon: volume is in use (by a run without a name)",
    );
    kill9(&mut anon);
    oci_ok(&r, &["stop", "-t", "1", "o2b-busy"]);
    assert_eq!(
        oci_ok(&r, &["volume", "rm", "o2b-inuse", "o2b-anon"]),
        "o2b-inuse\no2b-anon\n"
    );
}

#[test]
fn volume_rm_removes_files_of_subordinate_ids_by_entering_the_namespace() {
    let r = Runner::new();
    if !e2e::runner::userns() || !require(r.uid() != 0, "needs an unprivileged runner") {
        return;
    }
    let ranged = r.run(bb(), &["--userns", "map", "true"]).status.success();
    if !require(ranged, "the test user has no subordinate id range to map") {
        return;
    }
    // A directory of container uid 1000 (a subordinate id on the host) that only it may enter.
    r.ok(
        bb(),
        &[
            "--userns",
            "map",
            "-v",
            "o2b-sub:/data",
            "sh",
            "-c",
            "mkdir -p /data/d/e && echo x > /data/d/e/f && chown -R 1000:1000 /data/d && \
             chmod -R go-rwx /data/d",
        ],
    );
    let d = r.cache().join("volumes/o2b-sub/d");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&d).unwrap().uid();
    assert_ne!(owner, r.uid(), "a subordinate id owns {}", d.display());
    // Not the host user's to remove as it is…
    let o = r
        .command(Path::new("/bin/rm"), &["-rf", &s(&d)])
        .output()
        .unwrap();
    assert!(!o.status.success(), "rm -rf removed {}", d.display());
    // …but volume rm does it in the namespace.
    assert_eq!(oci_ok(&r, &["volume", "rm", "o2b-sub"]), "o2b-sub\n");
    assert!(!r.cache().join("volumes/o2b-sub").exists());
    assert_eq!(oci_ok(&r, &["volume", "ls", "-q"]), "");
}

/// Docker as the oracle for the volume commands' output: `volume ls`'s header and an entry's
/// line, `volume inspect`'s JSON (keys, order, layout; the time and the path are each one's
/// own), `volume rm`'s echo.
#[test]
fn volume_ls_inspect_and_rm_print_as_docker_does() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let name = format!("o2b-oracle-vol-{}", std::process::id());
    let docker = |args: &[&str]| {
        let o = Command::new("docker").args(args).output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let r = Runner::new();
    // The time and the path differ by nature: each line of theirs becomes its key.
    let own_values = |json: String| -> String {
        json.lines()
            .map(|l| match l.trim_start().split_once(':') {
                Some((k, _)) if k == "\"CreatedAt\"" || k == "\"Mountpoint\"" => {
                    format!("{}{k}", &l[..l.len() - l.trim_start().len()])
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        oci_ok(&r, &["volume", "create", &name]),
        docker(&["volume", "create", &name])
    );
    let ours = oci_ok(&r, &["volume", "ls"]);
    let theirs = docker(&["volume", "ls"]);
    let line = |ls: &str| ls.lines().find(|l| l.ends_with(&name)).map(str::to_string);
    let ours_inspect = oci_ok(&r, &["volume", "inspect", &name]);
    let theirs_inspect = docker(&["volume", "inspect", &name]);
    let (ours_rm, theirs_rm) = (
        oci_ok(&r, &["volume", "rm", &name]),
        docker(&["volume", "rm", &name]),
    );
    assert_eq!(ours.lines().next(), theirs.lines().next());
    assert_eq!(line(&ours), line(&theirs));
    assert_eq!(own_values(ours_inspect), own_values(theirs_inspect));
    assert_eq!(ours_rm, theirs_rm);
}
