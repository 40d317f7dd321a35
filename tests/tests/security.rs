//! R6 security (issue 14): capabilities, no_new_privs, the default seccomp filter and custom
//! profiles, seen from inside the container as the unprivileged test user, and compared with
//! `docker run` given the same flags (the same probe, the same busybox).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use e2e::{fixtures, Runner};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// What the container holds (capability sets, no_new_privs, seccomp mode and filter count)
/// and what it may do: a user namespace (refused by Docker's profile without CAP_SYS_ADMIN),
/// chroot (needs CAP_SYS_CHROOT in the profile and the caps), mkdir (a custom profile refuses it).
const PROBE: &str = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
    (busybox unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-refused); \
    (busybox chroot / true 2>/dev/null && echo chroot-ok || echo chroot-refused); \
    busybox mkdir /probe-dir 2>&1 && echo mkdir-ok; true";

fn supported() -> bool {
    e2e::runner::userns()
        && e2e::require(
            std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("\nSeccomp:")),
            "the kernel has no seccomp filters",
        )
}

fn ours(args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["sh", "-c", PROBE]);
    Runner::new().ok(bb(), &all)
}

/// A profile file the test user can read: Docker's default with mkdir refused (EDQUOT).
fn mkdir_profile() -> (tempfile::TempDir, PathBuf) {
    let dir = e2e::world_tempdir();
    let p = dir.path().join("no-mkdir.json");
    std::fs::write(
        &p,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122}]}"#,
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    (dir, p)
}

#[test]
fn by_default_the_container_has_dockers_capabilities_and_filter_and_no_new_privs_off() {
    if !supported() {
        return;
    }
    let out = ours(&[]);
    for want in [
        "CapInh:\t0000000000000000\n",
        "CapPrm:\t00000000a80425fb\n",
        "CapEff:\t00000000a80425fb\n",
        "CapBnd:\t00000000a80425fb\n",
        "CapAmb:\t0000000000000000\n",
        "NoNewPrivs:\t0\n",
        "Seccomp:\t2\n",
        "Seccomp_filters:\t1\n",
        "unshare-refused\n",
        "chroot-ok\n",
        "mkdir-ok\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
}

#[test]
fn docker_agrees_on_capabilities_and_seccomp_flag_by_flag() {
    if !supported() || !e2e::docker::required() {
        return;
    }
    let (_dir, profile) = mkdir_profile();
    let profile = profile.to_str().unwrap();
    let seccomp_file = format!("seccomp={profile}");
    let nnp = ["--security-opt", "no-new-privileges"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec![]),
        (nnp.to_vec(), nnp.to_vec()),
        (vec!["--cap-drop", "ALL"], vec!["--cap-drop", "ALL"]),
        (
            vec!["--cap-drop", "sys_chroot"],
            vec!["--cap-drop", "sys_chroot"],
        ),
        (
            vec!["--cap-add", "CAP_SYS_ADMIN"],
            vec!["--cap-add", "CAP_SYS_ADMIN"],
        ),
        (
            vec!["--cap-add", "net_admin"],
            vec!["--cap-add", "net_admin"],
        ),
        (
            vec!["--security-opt", "seccomp=unconfined"],
            vec!["--security-opt", "seccomp=unconfined"],
        ),
        (
            vec!["--no-seccomp"],
            vec!["--security-opt", "seccomp=unconfined"],
        ),
        (
            vec!["--seccomp-profile", profile],
            vec!["--security-opt", &seccomp_file],
        ),
        (
            vec!["--security-opt", &seccomp_file],
            vec!["--security-opt", &seccomp_file],
        ),
        (vec!["--user", "1000"], vec!["--user", "1000"]),
    ];
    let tag = e2e::docker::load(bb());
    let mut diffs = Vec::new();
    for (our_flags, docker_flags) in &cases {
        let docker = e2e::docker::run_sh(&tag, docker_flags, PROBE);
        let ours = ours(our_flags);
        if ours != docker {
            diffs.push(format!("{our_flags:?}:\nours:\n{ours}docker:\n{docker}"));
        }
    }
    e2e::docker::remove(&tag);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn no_new_privileges_is_off_unless_asked_and_the_filter_stays_either_way() {
    if !supported() {
        return;
    }
    let out = ours(&["--security-opt", "no-new-privileges=false"]);
    assert!(
        out.contains("NoNewPrivs:\t0\n") && out.contains("Seccomp:\t2\n"),
        "{out}"
    );
    let on = ours(&["--security-opt", "no-new-privileges"]);
    assert!(
        on.contains("NoNewPrivs:\t1\n") && on.contains("Seccomp:\t2\n"),
        "{on}"
    );
    assert!(out.contains("unshare-refused\n"), "{out}");
}

#[test]
fn a_custom_profile_refuses_mkdir_with_its_errno() {
    if !supported() {
        return;
    }
    let (_dir, profile) = mkdir_profile();
    let out = ours(&["--seccomp-profile", profile.to_str().unwrap()]);
    assert!(
        out.contains("mkdir: can't create directory '/probe-dir': Disk quota exceeded\n"),
        "{out}"
    );
    // Everything else is allowed by that profile, unshare included.
    assert!(out.contains("unshare-ok\n"), "{out}");
}

#[test]
fn a_non_root_user_gets_added_capabilities_as_ambient_ones() {
    if !supported() {
        return;
    }
    // Docker leaves a non-root user without effective capabilities even with --cap-add; we
    // raise the added ones as ambient capabilities, as podman does.
    let out = ours(&["--user", "1000", "--cap-add", "NET_ADMIN"]);
    for want in [
        "CapInh:\t0000000000001000\n",
        "CapPrm:\t0000000000001000\n",
        "CapEff:\t0000000000001000\n",
        "CapBnd:\t00000000a80435fb\n",
        "CapAmb:\t0000000000001000\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
}

#[test]
fn privileged_has_every_capability_no_filter_and_no_masked_paths() {
    if !supported() {
        return;
    }
    // Docker's --privileged cannot start on this host (its runc lacks capabilities to apply),
    // so no oracle here.
    let out = Runner::new().ok(
        bb(),
        &[
            "--privileged",
            "sh",
            "-c",
            "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; \
             head -c 4 /proc/keys >/dev/null 2>&1; wc -c < /proc/timer_list | tr -d ' '",
        ],
    );
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
    let all = (1u64 << (last.trim().parse::<u32>().unwrap() + 1)) - 1;
    assert!(out.contains(&format!("CapEff:\t{all:016x}\n")), "{out}");
    assert!(out.contains(&format!("CapBnd:\t{all:016x}\n")), "{out}");
    assert!(out.contains("Seccomp:\t0\n"), "{out}");
    assert!(!out.ends_with("\n0\n"), "/proc/timer_list is masked: {out}");
}

#[test]
fn bad_security_input_is_a_one_line_error_with_exit_125() {
    if !supported() {
        return;
    }
    let r = Runner::new();
    let dir = e2e::world_tempdir();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [",
    )
    .unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let notify = dir.path().join("notify.json");
    std::fs::write(&notify, r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).unwrap();
    std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let missing = dir.path().join("missing.json");
    for (args, needle) in [
        (
            vec!["--cap-add", "CAP_BOGUS"],
            "unknown capability 'CAP_BOGUS'",
        ),
        (vec!["--cap-drop", "flying"], "unknown capability 'flying'"),
        (
            vec!["--security-opt", "seccomp"],
            "invalid value 'seccomp' for '--security-opt'",
        ),
        (
            vec!["--seccomp-profile", bad.to_str().unwrap()],
            "unexpected end at byte",
        ),
        (
            vec!["--security-opt", &format!("seccomp={}", notify.display())],
            "SCMP_ACT_NOTIFY needs a listener process",
        ),
        (
            vec!["--seccomp-profile", missing.to_str().unwrap()],
            "No such file or directory",
        ),
    ] {
        let mut all = args.clone();
        all.push("true");
        let o = r.run(bb(), &all);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        e2e::assert_one_line_error(&o, needle);
    }
}

#[test]
fn lsm_options_this_host_lacks_are_a_warning_and_the_run_goes_on() {
    if !supported() {
        return;
    }
    let apparmor =
        std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|b| b.starts_with(b"Y"));
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    if apparmor || selinux {
        eprintln!("SKIP: this host has AppArmor or SELinux: the warning path does not apply");
        return;
    }
    let o = Runner::new().run(
        bb(),
        &[
            "--security-opt",
            "apparmor=docker-default",
            "--security-opt",
            "label=type:container_t",
            "echo",
            "ran",
        ],
    );
    assert!(o.status.success());
    assert_eq!(e2e::text(&o.stdout), "ran\n");
    assert_eq!(
        e2e::text(&o.stderr),
        "oci2bin: warning: AppArmor is not enabled on this host: apparmor=docker-default is not applied\n\
         oci2bin: warning: SELinux is not enabled on this host: label=type:container_t is not applied\n"
    );
}

/// A file whose image holds busybox and `tests/fixtures/sysprobe.c` built static with musl-gcc
/// (musl-tools): the calls busybox has no applet for (keyctl, bpf, kexec, clone3, …).
fn probe_file() -> Option<&'static Path> {
    static P: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    P.get_or_init(|| {
        if !e2e::require(e2e::have("musl-gcc"), "musl-gcc (musl-tools) is missing") {
            return None;
        }
        let dir = e2e::world_tempdir();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let src = e2e::workspace().join("tests/fixtures/sysprobe.c");
        let o = Command::new("musl-gcc")
            .args(["-static", "-O2", "-o"])
            .arg(root.join("bin/sysprobe"))
            .arg(&src)
            .output()
            .unwrap();
        assert!(o.status.success(), "musl-gcc: {}", e2e::text(&o.stderr));
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let out = dir.path().join("sysprobe");
        e2e::build(
            &format!("dir:{}", root.display()),
            &out,
            &["--tag", "o2b-test/sysprobe:latest"],
        );
        Some((dir, out))
    })
    .as_ref()
    .map(|(_, p)| p.as_path())
}

#[test]
fn syscalls_busybox_cannot_make_end_as_under_docker() {
    if !supported() || !e2e::docker::required() {
        return;
    }
    let Some(file) = probe_file() else { return };
    let tag = e2e::docker::load(file);
    let mut diffs = Vec::new();
    let mut default_run = String::new();
    for flags in [
        vec![],
        vec!["--cap-add", "SYS_ADMIN"],
        vec!["--security-opt", "seccomp=unconfined"],
    ] {
        let docker = e2e::docker::run_sh(&tag, &flags, "/bin/sysprobe");
        let mut a = flags.clone();
        a.extend(["sh", "-c", "/bin/sysprobe"]);
        let ours = Runner::new().ok(file, &a);
        if flags.is_empty() {
            default_run = ours.clone();
        }
        if ours != docker {
            diffs.push(format!("{flags:?}:\nours:\n{ours}docker:\n{docker}"));
        }
    }
    e2e::docker::remove(&tag);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // What the default filter answers, spelled out.
    for want in [
        "keyctl EPERM\n",
        "add_key EPERM\n",
        "request_key EPERM\n",
        "userfaultfd EPERM\n",
        "bpf EPERM\n",
        "reboot EPERM\n",
        "kexec_load EPERM\n",
        "init_module EPERM\n",
        "mount EPERM\n",
        "unshare_user EPERM\n",
        "clone3 ENOSYS\n",
        "personality_query ok\n",
        "personality_exec EPERM\n",
        "fchmodat2 ENOSYS\n",
        "mseal ENOSYS\n",
    ] {
        assert!(default_run.contains(want), "{want:?} not in\n{default_run}");
    }
}

// `oci2bin exec` (issue 14, S6): the command gets the container's security, as `docker exec`'s
// does: the capability sets the run's rules give its user, no_new_privs, the very filter the
// run installed.

/// The names of a test's containers: `PREFIX0`, `PREFIX1`, …
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn exec_gets_the_capabilities_filter_and_no_new_privs_its_run_got_flag_by_flag() {
    if !supported() {
        return;
    }
    let r = Runner::new();
    let nnp = ["--security-opt", "no-new-privileges"];
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--cap-drop", "ALL"],
        nnp.to_vec(),
        vec!["--privileged"],
        vec!["--cap-add", "SYS_ADMIN"],
        vec!["--no-seccomp"],
        vec!["--user", "1000", "--cap-add", "NET_ADMIN"],
    ];
    let names = names("sec", cases.len());
    let mut seen = Vec::new();
    for (flags, name) in cases.iter().zip(&names) {
        let mut detached = flags.clone();
        detached.extend(["sleep", "60"]);
        let c = r.detached(bb(), name, &detached);
        let exec = c.exec_ok(&[], &["sh", "-c", PROBE]);
        let mut run = flags.clone();
        run.extend(["sh", "-c", PROBE]);
        assert_eq!(
            exec,
            r.ok(bb(), &run),
            "exec and run differ under {flags:?}"
        );
        seen.push(exec);
    }
    for (i, want) in [
        (0, "CapEff:\t00000000a80425fb\n"),
        (0, "CapBnd:\t00000000a80425fb\n"),
        (0, "Seccomp:\t2\n"),
        (0, "NoNewPrivs:\t0\n"),
        (0, "unshare-refused\n"),
        (1, "CapEff:\t0000000000000000\n"),
        (1, "CapBnd:\t0000000000000000\n"),
        (1, "chroot-refused\n"),
        (2, "NoNewPrivs:\t1\n"),
        (2, "Seccomp:\t2\n"),
        (3, "Seccomp:\t0\n"),
        (5, "Seccomp:\t0\n"),
        (6, "CapAmb:\t0000000000001000\n"),
    ] {
        assert!(seen[i].contains(want), "{want:?} not in\n{}", seen[i]);
    }
}

#[test]
fn exec_privileged_has_every_capability_and_no_filter_and_u_follows_the_run_rules() {
    if !supported() {
        return;
    }
    let r = Runner::new();
    let c = r.detached(bb(), "priv", &["sleep", "60"]);
    // -u 1000 gets what `run --user 1000` gets: the bounding set, no effective capabilities.
    let as_1000 = c.exec_ok(&["-u", "1000"], &["sh", "-c", PROBE]);
    assert_eq!(as_1000, r.ok(bb(), &["--user", "1000", "sh", "-c", PROBE]));
    assert!(as_1000.contains("CapEff:\t0000000000000000\n"), "{as_1000}");
    let out = c.exec_ok(&["--privileged"], &["sh", "-c", PROBE]);
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
    let all = (1u64 << (last.trim().parse::<u32>().unwrap() + 1)) - 1;
    for want in [
        format!("CapEff:\t{all:016x}\n"),
        format!("CapBnd:\t{all:016x}\n"),
        "Seccomp:\t0\n".into(),
        "unshare-ok\n".into(),
    ] {
        assert!(out.contains(&want), "{want:?} not in\n{out}");
    }
    // The container itself is as it was: a plain exec is confined again.
    let plain = c.exec_ok(&[], &["grep", "Seccomp:", "/proc/self/status"]);
    assert_eq!(plain, "Seccomp:\t2\n");
}

#[test]
fn exec_gets_the_runs_profile_filter_after_the_profile_file_is_gone() {
    if !supported() {
        return;
    }
    let r = Runner::new();
    let (dir, profile) = mkdir_profile();
    let c = r.detached(
        bb(),
        "prof",
        &[
            "--seccomp-profile",
            profile.to_str().unwrap(),
            "sleep",
            "60",
        ],
    );
    drop(dir);
    assert!(!profile.exists());
    let out = c.exec_ok(&[], &["sh", "-c", PROBE]);
    assert!(
        out.contains("mkdir: can't create directory '/probe-dir': Disk quota exceeded\n"),
        "{out}"
    );
    assert!(out.contains("unshare-ok\n"), "{out}");
    // Without the filter the run kept, the exec refuses rather than run unconfined.
    std::fs::remove_file(r.cache().join("containers/prof/seccomp.bpf")).unwrap();
    let o = c.exec(&[], &["true"]);
    assert_eq!(o.status.code(), Some(125));
    e2e::assert_one_line_error(&o, "read the container's seccomp filter");
}

#[test]
fn syscalls_the_default_filter_blocks_end_under_exec_as_under_its_run() {
    if !supported() {
        return;
    }
    let Some(file) = probe_file() else { return };
    let r = Runner::new();
    let c = r.detached(file, "sysprobe", &["busybox", "sleep", "60"]);
    let exec = c.exec_ok(&[], &["/bin/sysprobe"]);
    assert_eq!(exec, r.ok(file, &["/bin/sysprobe"]));
    for want in [
        "keyctl EPERM\n",
        "bpf EPERM\n",
        "mount EPERM\n",
        "unshare_user EPERM\n",
        "clone3 ENOSYS\n",
        "personality_exec EPERM\n",
    ] {
        assert!(exec.contains(want), "{want:?} not in\n{exec}");
    }
}

/// `docker run -d FLAGS TAG busybox sleep 60`, then `docker exec EXEC_FLAGS … sh -c SCRIPT`; its stdout.
fn docker_exec(tag: &str, name: &str, flags: &[&str], exec: &[&str], cmd: &[&str]) -> String {
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    let d = Command::new("docker")
        .args(["run", "-d", "--name", name])
        .args(flags)
        .args([tag, "busybox", "sleep", "60"])
        .output()
        .unwrap();
    assert!(
        d.status.success(),
        "docker run -d: {}",
        e2e::text(&d.stderr)
    );
    let o = Command::new("docker")
        .arg("exec")
        .args(exec)
        .arg(name)
        .args(cmd)
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    assert!(o.status.success(), "docker exec: {}", e2e::text(&o.stderr));
    e2e::text(&o.stdout)
}

#[test]
fn docker_exec_agrees_on_capabilities_and_seccomp_flag_by_flag() {
    if !supported() || !e2e::docker::required() {
        return;
    }
    let (_dir, profile) = mkdir_profile();
    let seccomp_file = format!("seccomp={}", profile.display());
    let nnp = ["--security-opt", "no-new-privileges"];
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    // (our run flags, docker's, exec flags)
    let cases: Vec<(Vec<&str>, Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec![], vec![]),
        (vec![], vec![], vec!["-u", "1000"]),
        (nnp.to_vec(), nnp.to_vec(), vec![]),
        (vec!["--cap-drop", "ALL"], vec!["--cap-drop", "ALL"], vec![]),
        (
            vec!["--cap-add", "SYS_ADMIN"],
            vec!["--cap-add", "SYS_ADMIN"],
            vec![],
        ),
        (vec!["--no-seccomp"], unconfined.to_vec(), vec![]),
        (
            vec!["--security-opt", &seccomp_file],
            vec!["--security-opt", &seccomp_file],
            vec![],
        ),
        (
            vec!["--user", "1000"],
            vec!["--user", "1000"],
            vec!["-u", "0"],
        ),
    ];
    let tag = e2e::docker::load(bb());
    let r = Runner::new();
    let names = names("dsec", cases.len());
    let mut diffs = Vec::new();
    for ((ours, theirs, exec), name) in cases.iter().zip(&names) {
        let docker = docker_exec(&tag, "o2b-exec-oracle", theirs, exec, &["sh", "-c", PROBE]);
        let mut detached = ours.clone();
        detached.extend(["sleep", "60"]);
        let c = r.detached(bb(), name, &detached);
        let got = c.exec_ok(exec, &["sh", "-c", PROBE]);
        if got != docker {
            diffs.push(format!(
                "{ours:?} exec {exec:?}:\nours:\n{got}docker:\n{docker}"
            ));
        }
    }
    e2e::docker::remove(&tag);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn syscalls_end_under_exec_as_under_docker_exec() {
    if !supported() || !e2e::docker::required() {
        return;
    }
    let Some(file) = probe_file() else { return };
    let tag = e2e::docker::load(file);
    let docker = docker_exec(&tag, "o2b-exec-sysprobe", &[], &[], &["/bin/sysprobe"]);
    e2e::docker::remove(&tag);
    let r = Runner::new();
    let c = r.detached(file, "sysprobe", &["busybox", "sleep", "60"]);
    assert_eq!(c.exec_ok(&[], &["/bin/sysprobe"]), docker);
}
