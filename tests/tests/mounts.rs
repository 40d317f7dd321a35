//! Mounts (issue 14, R3/R4), from inside the container as the unprivileged test user: `-v` rw and
//! ro, a file onto a file, missing targets created, missing host paths refused, a hostile image's
//! symlinks not redirecting a mount out of the root, `--tmpfs`, `--mount`, `--read-only`,
//! `--secret`, and host files under a bind untouched when the loader is killed with SIGKILL.
//! Docker is the oracle where an engine answers.

use e2e::hostile::{layout, RawTar};
use e2e::{assert_one_line_error, fixtures, have, require, text, world_tempdir, Runner};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// One runner (warm cache) shared by the tests.
fn shared() -> &'static Runner {
    static R: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();
    R.get_or_init(Runner::new)
}

/// A host directory owned by the test user, holding `f` ("hello\n") and `sub/g`.
fn host_dir(r: &Runner) -> tempfile::TempDir {
    let d = world_tempdir();
    std::fs::write(d.path().join("f"), "hello\n").unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/g"), "g\n").unwrap();
    chown_r(d.path(), r.uid());
    d
}

fn chown_r(p: &Path, uid: u32) {
    if is_root() {
        let o = Command::new("chown")
            .args(["-R", &uid.to_string()])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success());
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The per-mount options (field 6 of mountinfo) of the mount at `target`, from inside.
fn opts_probe(target: &str) -> String {
    format!("awk '$5 == \"{target}\" {{ print $6 }}' /proc/self/mountinfo")
}

/// Every file under `d` with its contents, sorted.
fn snapshot(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bind_rw_a_write_inside_appears_on_the_host() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    // With the subordinate range (the default here) and with one uid.
    for userns in ["auto", "single"] {
        let h = host_dir(r);
        let v = format!("{}:/data", s(h.path()));
        let probe = format!(
            "cat /data/f /data/sub/g; echo new > /data/new; {}",
            opts_probe("/data")
        );
        let out = r.ok(bb(), &["--userns", userns, "-v", &v, "sh", "-c", &probe]);
        assert!(out.starts_with("hello\ng\n"), "{out}");
        assert!(out.lines().nth(2).unwrap().starts_with("rw"), "{out}");
        let new = h.path().join("new");
        assert_eq!(std::fs::read_to_string(&new).unwrap(), "new\n");
        // Owned by the caller on the host, as a rootless container's root is.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&new).unwrap().uid(), r.uid());
    }
}

#[test]
fn bind_ro_a_write_fails_with_a_read_only_file_system() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let h = host_dir(r);
    for flags in [
        vec!["-v".to_string(), format!("{}:/data:ro", s(h.path()))],
        vec![
            "--mount".to_string(),
            format!("type=bind,source={},target=/data,readonly", s(h.path())),
        ],
    ] {
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let probe = format!(
            "cat /data/f; echo x > /data/x; echo y > /data/sub/y; {}",
            opts_probe("/data")
        );
        args.extend(["sh", "-c", &probe]);
        let o = r.run(bb(), &args);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(out.starts_with("hello\nro,"), "{out}\n{err}");
        assert_eq!(err.matches("Read-only file system").count(), 2, "{err}");
        assert!(!h.path().join("x").exists() && !h.path().join("sub/y").exists());
    }
}

#[test]
fn a_file_onto_a_file_and_missing_targets_are_created_in_the_container() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let h = host_dir(r);
    let file = format!("{}:/etc/passwd:ro", s(&h.path().join("f")));
    let deep = format!("{}:/no/such/dir", s(h.path()));
    let newfile = format!("{}:/opt/new/file", s(&h.path().join("sub/g")));
    let out = r.ok(
        bb(),
        &[
            "-v",
            &file,
            "-v",
            &deep,
            "-v",
            &newfile,
            "sh",
            "-c",
            "cat /etc/passwd /no/such/dir/f /opt/new/file; test -f /opt/new/file && echo file",
        ],
    );
    assert_eq!(out, "hello\nhello\ng\nfile\n");
    // Our own /dev is a file system of the container too: a device bound into it.
    let out = r.ok(
        bb(),
        &[
            "-v",
            "/dev/null:/dev/extra-null",
            "sh",
            "-c",
            "echo x > /dev/extra-null && echo ok",
        ],
    );
    assert_eq!(out, "ok\n");
    // The host side is as it was: nothing created there.
    assert_eq!(snapshot(h.path()).len(), 2);
}

#[test]
fn a_missing_or_relative_host_path_is_refused_in_one_line_with_125() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let h = world_tempdir();
    let missing = h.path().join("missing");
    for (args, needle) in [
        (
            vec!["-v".to_string(), format!("{}:/data", s(&missing))],
            "the host path does not exist",
        ),
        (
            vec![
                "--mount".to_string(),
                format!("type=bind,src={},dst=/data", s(&missing)),
            ],
            "does not exist",
        ),
        (vec!["--secret".to_string(), s(&missing)], "does not exist"),
        (
            vec!["-v".into(), "rel/dir:/data".into()],
            "must be absolute",
        ),
        (
            vec!["-v".into(), "m:/data".into()],
            "invalid volume name 'm'",
        ),
        (
            vec!["--mount".into(), "type=volume,src=v/x,dst=/data".into()],
            "invalid volume name 'v/x'",
        ),
        (
            vec!["-v".into(), "/tmp:/data:shared".into()],
            "unknown option",
        ),
        (
            vec!["--tmpfs".into(), "/t:size=huge".into()],
            "invalid tmpfs option",
        ),
    ] {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.push("true");
        let o = r.run(bb(), &a);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", text(&o.stderr));
        assert_one_line_error(&o, needle);
    }
    assert!(!missing.exists(), "a missing host path was created");
    // A target inside another bind that would need creating there is refused, not created on
    // the host (Docker would create it).
    let h = host_dir(r);
    let (outer, inner) = (
        format!("{}:/data", s(h.path())),
        format!("{}:/data/newdir", s(h.path())),
    );
    let o = r.run(bb(), &["-v", &outer, "-v", &inner, "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert_one_line_error(&o, "not in the container's own file system");
    assert_eq!(snapshot(h.path()).len(), 2);
    assert!(!h.path().join("newdir").exists());
    // So is a missing working directory inside a bind; an existing one works.
    let o = r.run(bb(), &["-v", &outer, "-w", "/data/newdir", "pwd"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert_one_line_error(&o, "chdir /data/newdir (not created in a mount)");
    assert!(!h.path().join("newdir").exists());
    assert_eq!(
        r.ok(bb(), &["-v", &outer, "-w", "/data/sub", "pwd"]),
        "/data/sub\n"
    );
    // An existing target inside another bind is fine.
    let inner = format!("{}:/data/sub", s(h.path()));
    assert_eq!(
        r.ok(bb(), &["-v", &outer, "-v", &inner, "ls", "/data/sub"]),
        "f\nsub\n"
    );
}

#[test]
fn a_symlink_in_the_image_does_not_redirect_a_mount_out_of_the_root() {
    if !e2e::runner::userns() {
        return;
    }
    // A world-writable host dir the image's links point at: any escape would create files here.
    let trap = world_tempdir();
    std::fs::set_permissions(trap.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let t = s(trap.path());
    let climb = format!("{}{}", "../".repeat(20), t.trim_start_matches('/'));
    let tar = RawTar::default()
        .symlink("data", &format!("{t}/abs"))
        .dir("deep/")
        .symlink("deep/up", &format!("{climb}/rel"))
        .dir("etc/")
        .symlink("etc/motd", &format!("{t}/motd"))
        .finish();
    let work = world_tempdir();
    layout(&work.path().join("layout"), &[(tar, true)]);
    let bin = work.path().join("links");
    e2e::build(
        &format!("oci:{}", work.path().join("layout").display()),
        &bin,
        &[],
    );
    let r = shared();
    let h = host_dir(r);
    let (a, b, c) = (
        format!("{}:/data", s(h.path())),
        format!("{}:/deep/up/x", s(h.path())),
        format!("{}:/etc/motd", s(&h.path().join("f"))),
    );
    // Inside, the links are followed as if the root were `/`: the mounts land at the link
    // targets inside the container.
    let probe = format!("cat /data/f {t}/abs/f /deep/up/x/f {t}/rel/x/f /etc/motd {t}/motd");
    let out = r.ok(
        &bin,
        &[
            "-v",
            &a,
            "-v",
            &b,
            "-v",
            &c,
            "/bin/busybox",
            "sh",
            "-c",
            &probe,
        ],
    );
    assert_eq!(out, "hello\n".repeat(6));
    let left: Vec<_> = std::fs::read_dir(trap.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "a mount target was created on the host: {left:?}"
    );
    assert_eq!(snapshot(h.path()).len(), 2);
}

#[test]
fn tmpfs_takes_dockers_defaults_and_options() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let probe = format!(
        "{}; {}; grep ' /run/x ' /proc/self/mountinfo | grep -o 'size=[0-9]*k,mode=[0-7]*'; \
         echo ok > /run/x/f && cat /run/x/f",
        opts_probe("/run/x"),
        opts_probe("/m")
    );
    let out = r.ok(
        bb(),
        &[
            "--tmpfs",
            "/run/x:size=1m,mode=1770,exec",
            "--mount",
            "type=tmpfs,target=/m,tmpfs-size=2m,readonly",
            "sh",
            "-c",
            &probe,
        ],
    );
    assert_eq!(
        out,
        "rw,nosuid,nodev,relatime\nro,nosuid,nodev,noexec,relatime\nsize=1024k,mode=1770\nok\n"
    );
    let out = r.ok(bb(), &["--tmpfs", "/t", "sh", "-c", &opts_probe("/t")]);
    assert_eq!(out, "rw,nosuid,nodev,noexec,relatime\n");
}

#[test]
fn read_only_root_refuses_writes_but_mounts_and_dev_stay_writable() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let o = r.run(
        bb(),
        &[
            "--read-only",
            "--tmpfs",
            "/tmp",
            "sh",
            "-c",
            "touch /x; touch /etc/x; touch /tmp/x && echo tmp; echo > /dev/shm/x && echo shm; \
             cat /etc/hostname >/dev/null && echo files",
        ],
    );
    assert_eq!(text(&o.stdout), "tmp\nshm\nfiles\n", "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stderr),
        "touch: /x: Read-only file system\ntouch: /etc/x: Read-only file system\n"
    );
    // Without --tmpfs, /tmp is read-only too (Docker's --read-only).
    let o = r.run(bb(), &["--read-only", "touch", "/tmp/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o.stderr).contains("Read-only file system"));
}

#[test]
fn secret_is_read_only_nosuid_nodev_noexec_under_run_secrets() {
    if !e2e::runner::userns() {
        return;
    }
    let r = shared();
    let h = host_dir(r);
    let f = s(&h.path().join("f"));
    let named = format!("{f}:api");
    let o = r.run(
        bb(),
        &[
            "--secret",
            &f,
            "--secret",
            &named,
            "sh",
            "-c",
            &format!(
                "cat /run/secrets/f /run/secrets/api; {}; echo x > /run/secrets/f",
                opts_probe("/run/secrets/f")
            ),
        ],
    );
    assert_eq!(
        text(&o.stdout),
        "hello\nhello\nro,nosuid,nodev,noexec,relatime\n"
    );
    assert!(text(&o.stderr).contains("Read-only file system"));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hello\n");
}

/// Starts `bin ARGS` with `-v DIR:/data` running `sleep`, SIGKILLs the loader once the sleep
/// runs, and checks every host file under DIR is still there, unchanged.
fn killed_run_leaves_the_host_dir(r: &Runner, cmd: &mut Command, dir: &Path) {
    let before = snapshot(dir);
    let mut child = cmd.spawn().unwrap();
    // Wait for the container's sleep (a descendant of the loader).
    let mut up = false;
    for _ in 0..200 {
        let o = Command::new("pgrep")
            .args(["-u", &r.uid().to_string(), "-x", "sleep"])
            .output()
            .unwrap();
        if !text(&o.stdout).trim().is_empty() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(up, "the container did not start");
    // SAFETY: kill on a child pid we own (setpriv has exec'd the loader under this pid).
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(snapshot(dir), before, "host files under the bind changed");
}

#[test]
fn kill_9_of_the_loader_leaves_host_files_under_a_bind() {
    if !e2e::runner::userns() || !require(have("pgrep"), "pgrep (procps) missing") {
        return;
    }
    let r = Runner::new();
    let h = host_dir(&r);
    let v = format!("{}:/data", s(h.path()));
    // The cached root, then a private extraction (cache unusable) that the loader removes after
    // a run and a later start sweeps: neither may reach into the bind.
    let tmp = world_tempdir();
    chown_r(tmp.path(), r.uid());
    for private in [false, true] {
        let mut c = r.command(bb(), &["-v", &v, "sleep", "60"]);
        if private {
            c.env("XDG_CACHE_HOME", "/proc/no-cache-here")
                .env("TMPDIR", tmp.path());
        }
        killed_run_leaves_the_host_dir(&r, &mut c, h.path());
        // A second start (it sweeps what the killed one left), then a normal run and exit.
        let mut c = r.command(bb(), &["-v", &v, "ls", "/data"]);
        if private {
            c.env("XDG_CACHE_HOME", "/proc/no-cache-here")
                .env("TMPDIR", tmp.path());
        }
        let o = c.output().unwrap();
        assert_eq!(text(&o.stdout), "f\nsub\n", "{}", text(&o.stderr));
        assert_eq!(snapshot(h.path()).len(), 2);
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "private extractions left: {left:?}");
}

/// Docker as the oracle: the same `-v`, `--tmpfs`, `--read-only` and `--mount` flags under
/// `docker run` and under our file; the probe prints the mounts' options, the errors of writes
/// that must fail, and file contents.
#[test]
fn docker_agrees_on_bind_tmpfs_and_read_only() {
    if !e2e::runner::userns() || !e2e::docker::required() {
        return;
    }
    let tag = e2e::docker::load(bb());
    let r = shared();
    let h = host_dir(r);
    let (rw, ro, file) = (
        format!("{}:/data", s(&h.path().join("sub"))),
        format!("{}:/ro:ro", s(h.path())),
        format!("{}:/etc/motd:ro", s(&h.path().join("f"))),
    );
    let mnt = format!("type=bind,src={},dst=/m/n,readonly", s(h.path()));
    let flags = [
        "--read-only",
        "-v",
        &rw,
        "-v",
        &ro,
        "-v",
        &file,
        "--mount",
        &mnt,
        "--tmpfs",
        "/tmp:size=2m,mode=1777",
        "--mount",
        "type=tmpfs,dst=/scratch,tmpfs-size=1m,tmpfs-mode=700",
    ];
    let mut probe = String::new();
    // The root's atime flag is the storage driver's (noatime under fuse-overlayfs): only ro/rw.
    probe += "awk '$5 == \"/\" { split($6, o, \",\"); print \"/: \" o[1] }' /proc/self/mountinfo; ";
    for t in ["/data", "/ro", "/etc/motd", "/m/n", "/tmp", "/scratch"] {
        probe += &format!("echo {t}: $({}); ", opts_probe(t));
    }
    probe += "grep -E ' /(tmp|scratch) ' /proc/self/mountinfo | grep -o 'size=[0-9]*k'; \
              stat -c '%n %a' /tmp /scratch; \
              cat /data/g /ro/f /etc/motd /m/n/f; \
              for p in /x /ro/x /m/n/x /etc/motd; do touch $p 2>&1; done; \
              touch /tmp/x /scratch/x && echo writable";
    let docker = e2e::docker::run_sh(&tag, &flags, &probe);
    e2e::docker::remove(&tag);
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["sh", "-c", &probe]);
    let ours = r.ok(bb(), &args);
    assert_eq!(ours, docker);
    // A write through the rw bind lands on the host in both; ours left no other trace.
    assert_eq!(snapshot(h.path()).len(), 2);
}

/// `ro` reaches the mounts below the bound directory (mount_setattr with AT_RECURSIVE), and a
/// plain `-v` carries them in (a recursive bind). Needs root to mount on the host.
#[test]
fn ro_is_recursive_over_submounts_of_the_host_dir() {
    if !e2e::runner::userns() || !require(is_root(), "mounting on the host needs root") {
        return;
    }
    let r = shared();
    let h = host_dir(r);
    let sub = h.path().join("sub");
    let m = |args: &[&str]| Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(m(&["mount", "-t", "tmpfs", "-o", "mode=777", "tmpfs", &s(&sub)]).success());
    let ro = format!("{}:/data:ro", s(h.path()));
    let rw = format!("{}:/data", s(h.path()));
    let o = r.run(
        bb(),
        &[
            "-v",
            &ro,
            "sh",
            "-c",
            &format!("touch /data/sub/x; {}", opts_probe("/data/sub")),
        ],
    );
    let ok = r.run(
        bb(),
        &["-v", &rw, "sh", "-c", "touch /data/sub/y && echo ok"],
    );
    let left: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(m(&["umount", &s(&sub)]).success());
    assert!(text(&o.stdout).starts_with("ro,"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("Read-only file system"));
    assert_eq!(text(&ok.stdout), "ok\n", "{}", text(&ok.stderr));
    assert_eq!(left, ["y"]);
}
