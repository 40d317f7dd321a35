//! Resources (R8, issue 14): `--ulimit` seen in `/proc/self/limits` as `docker run --ulimit`
//! sets it; `--memory`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--pids-limit` as a cgroup of
//! the container's own. On this host the cgroup controllers are v1 and only root may write
//! them, so the limits themselves are checked as root (values compared with what Docker
//! writes, an allocation past the limit OOM-killed, a fork loop stopped, the group gone after
//! the run); as the unprivileged test user a run warns once and goes on, or with
//! `--require-limits` stops with 125.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{assert_one_line_error, docker, fixtures, text, Runner};

fn bb() -> &'static Path {
    fixtures::busybox_bin()
}

/// The rlimits the probes set, all below any hard limit of this host or Docker's daemon.
const ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=512:1024",
    "--ulimit",
    "core=0",
    "--ulimit",
    "nproc=100:200",
    "--ulimit",
    "stack=4194304:8388608",
    "--ulimit",
    "memlock=65536",
    "--ulimit",
    "rttime=-1",
];

const LIMITS_PROBE: &str = "grep -E '^Max (open files|core file size|processes|stack size|\
     locked memory|realtime timeout)' /proc/self/limits";

#[test]
fn ulimits_are_the_containers_rlimits_as_docker_sets_them() {
    if !e2e::runner::userns() {
        return;
    }
    let mut args = ULIMITS.to_vec();
    args.extend(["sh", "-c", LIMITS_PROBE]);
    let ours = Runner::new().ok(bb(), &args);
    assert!(
        ours.contains("Max open files            512                  1024"),
        "{ours}"
    );
    assert_eq!(ours.lines().count(), 6, "{ours}");
    if !docker::required() {
        return;
    }
    let tag = docker::load(bb());
    let theirs = docker::run_sh(&tag, ULIMITS, LIMITS_PROBE);
    docker::remove(&tag);
    assert_eq!(ours, theirs);
}

#[test]
fn a_hard_limit_above_ours_stops_the_start_with_one_line() {
    if !e2e::runner::userns() {
        return;
    }
    // Above fs.nr_open: no process may have it, root or not.
    let o = Runner::new().run(bb(), &["--ulimit", "nofile=1024:2147483584", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert_one_line_error(&o, "--ulimit nofile=1024:2147483584: setrlimit");
}

#[test]
fn bad_resource_values_are_one_line_errors() {
    let r = Runner::new();
    for (args, needle) in [
        (&["--memory", "abc"][..], "'abc' is not a size"),
        (
            &["--ulimit", "nofile=2:1"],
            "soft limit 2 is above the hard limit 1",
        ),
        (&["--ulimit", "files=1"], "unknown ulimit type 'files'"),
        (&["--ulimit", "nofile"], "TYPE=SOFT[:HARD]"),
        (&["--cpus", "half"], "not a number of CPUs"),
        (&["--cpus", "4096"], "range of CPUs is from 0.01"),
        (&["--pids-limit", "ten"], "--pids-limit"),
        (&["--memory-swap", "1g"], "--memory-swap needs --memory"),
        (&["--memory", "1m"], "minimum memory limit is 6MB"),
    ] {
        let mut a = args.to_vec();
        a.push("true");
        let o = r.run(bb(), &a);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", text(&o.stderr));
        assert_one_line_error(&o, needle);
    }
}

#[test]
fn without_a_writable_cgroup_the_run_warns_once_and_goes_on() {
    if !e2e::runner::userns() || !unprivileged_cannot_write_cgroups() {
        return;
    }
    let o = Runner::new().run(
        bb(),
        &["--memory", "64m", "--pids-limit", "10", "echo", "ran"],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(text(&o.stdout), "ran\n");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(
            "oci2bin: warning: --memory, --pids-limit ignored: no writable cgroup (v1 memory \
             controller at /sys/fs/cgroup/memory"
        ),
        "{err}"
    );
    assert!(lines[0].contains("is not writable by us"), "{err}");
}

#[test]
fn require_limits_stops_the_start_when_no_cgroup_is_writable() {
    if !e2e::runner::userns() || !unprivileged_cannot_write_cgroups() {
        return;
    }
    let o = Runner::new().run(
        bb(),
        &["--memory", "64m", "--require-limits", "echo", "ran"],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(o.stdout.is_empty());
    assert_one_line_error(&o, "--memory cannot be applied (--require-limits)");
}

/// The test user's view of this host: v1 controllers owned by root.
fn unprivileged_cannot_write_cgroups() -> bool {
    e2e::require(
        Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists(),
        "no cgroup v1 memory controller on this host",
    )
}

/// Root with writable v1 controllers: the only way this host allows cgroup limits.
fn root_with_v1() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    e2e::require(
        root,
        "cgroup v1 limits need root on this host (tests run as a user)",
    ) && e2e::require(
        ["memory", "pids", "cpu"]
            .iter()
            .all(|c| Path::new(&format!("/sys/fs/cgroup/{c}/cgroup.procs")).exists()),
        "no cgroup v1 memory, pids and cpu controllers on this host",
    )
}

/// Runs `file ARGS…` as root (this test process), with a cache of its own.
fn as_root(cache: &Path, args: &[&str]) -> Output {
    Command::new(bb())
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap()
}

/// The container's v1 cgroup values, found from inside through /proc/self/cgroup (our runs
/// share the host's cgroup namespace and see the hierarchy under /sys/fs/cgroup) or, under
/// Docker, at the root of its cgroup mounts. First line: our memory group's path.
const CGROUP_PROBE: &str = "dir() { p=$(grep -E \"^[0-9]+:$1:\" /proc/self/cgroup | cut -d: -f3); \
     if [ -d /sys/fs/cgroup/$1$p ]; then echo /sys/fs/cgroup/$1$p; else echo /sys/fs/cgroup/$1; fi; }; \
     m=$(dir memory); p=$(dir pids); c=$(dir cpu); \
     echo \"memory $(cat $m/memory.limit_in_bytes)\"; \
     echo \"memsw $(cat $m/memory.memsw.limit_in_bytes)\"; \
     echo \"pids $(cat $p/pids.max)\"; \
     echo \"quota $(cat $c/cpu.cfs_quota_us) period $(cat $c/cpu.cfs_period_us)\"; \
     echo \"shares $(cat $c/cpu.shares)\"";

const CGROUP_FLAGS: &[&str] = &["--memory", "64m", "--pids-limit", "10", "--cpus", "0.5"];

#[test]
fn cgroup_limits_are_the_values_docker_writes_and_the_group_goes_with_the_run() {
    if !root_with_v1() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut args = CGROUP_FLAGS.to_vec();
    let script = format!("grep :memory: /proc/self/cgroup | cut -d: -f3; {CGROUP_PROBE}");
    args.extend(["sh", "-c", &script]);
    let o = as_root(cache.path(), &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let (group, values) = out.split_once('\n').unwrap();
    assert!(group.contains("/oci2bin-"), "{out}");
    assert_eq!(
        values,
        "memory 67108864\nmemsw 134217728\npids 10\nquota 50000 period 100000\nshares 1024\n"
    );
    let host_dir = PathBuf::from(format!("/sys/fs/cgroup/memory{group}"));
    assert!(!host_dir.exists(), "{} left behind", host_dir.display());
    let pids_dir = format!("/sys/fs/cgroup/pids/{}", group.rsplit('/').next().unwrap());
    assert!(!Path::new(&pids_dir).exists(), "{pids_dir} left behind");
    if !docker::required() {
        return;
    }
    let tag = docker::load(bb());
    let theirs = docker::run_sh(&tag, CGROUP_FLAGS, CGROUP_PROBE);
    docker::remove(&tag);
    assert_eq!(values, theirs);
}

/// Allocates (and touches) 100 MiB: dd's buffer, filled from /dev/zero.
const ALLOCATE_100M: &[&str] = &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"];

#[test]
fn a_process_past_the_memory_limit_is_oom_killed_as_under_docker() {
    if !root_with_v1() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut args = vec!["--memory", "64m"];
    args.extend(ALLOCATE_100M);
    let o = as_root(cache.path(), &args);
    assert_eq!(o.status.code(), Some(137), "{}", text(&o.stderr));
    // The same allocation without the limit is fine.
    let o = as_root(cache.path(), ALLOCATE_100M);
    assert!(o.status.success(), "{}", text(&o.stderr));
    if !docker::required() {
        return;
    }
    let tag = docker::load(bb());
    let d = Command::new("docker")
        .args(["run", "--rm", "--memory", "64m", &tag])
        .args(ALLOCATE_100M)
        .output()
        .unwrap();
    docker::remove(&tag);
    assert_eq!(d.status.code(), Some(137), "{}", text(&d.stderr));
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !root_with_v1() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let script = "i=0; while [ $i -lt 30 ]; do sleep 10 & i=$((i+1)); done; echo all-started";
    let started = std::time::Instant::now();
    let o = as_root(cache.path(), &["--pids-limit", "10", "sh", "-c", script]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!text(&o.stdout).contains("all-started"), "{err}");
    assert!(err.contains("can't fork"), "{err}");
    // The sleeps that did start went with the container.
    assert!(started.elapsed().as_secs() < 9);
    // Without the limit all 30 start.
    let o = as_root(
        cache.path(),
        &["sh", "-c", &script.replace("sleep 10", "sleep 0")],
    );
    assert_eq!(text(&o.stdout), "all-started\n", "{}", text(&o.stderr));
}

#[test]
fn a_group_left_by_a_killed_loader_is_removed_by_the_next_run() {
    if !root_with_v1() {
        return;
    }
    // A pid that is gone: a child that has been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = PathBuf::from(format!("/sys/fs/cgroup/pids/oci2bin-{dead}"));
    let _ = std::fs::create_dir(&stale);
    assert!(stale.exists());
    let cache = tempfile::tempdir().unwrap();
    let o = as_root(cache.path(), &["--pids-limit", "10", "true"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let left = stale.exists();
    let _ = std::fs::remove_dir(&stale);
    assert!(!left, "{} was not removed", stale.display());
}

#[test]
fn ulimits_apply_as_root_too() {
    if !root_with_v1() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let o = as_root(
        cache.path(),
        &[
            "--ulimit",
            "nofile=100:200",
            "sh",
            "-c",
            "ulimit -Sn; ulimit -Hn",
        ],
    );
    assert_eq!(text(&o.stdout), "100\n200\n", "{}", text(&o.stderr));
}

/// The other cgroup flags, each read back from the container's own groups.
const MORE_PROBE: &str = "dir() { p=$(grep -E \"^[0-9]+:$1:\" /proc/self/cgroup | cut -d: -f3); \
     if [ -d /sys/fs/cgroup/$1$p ]; then echo /sys/fs/cgroup/$1$p; else echo /sys/fs/cgroup/$1; fi; }; \
     m=$(dir memory); c=$(dir cpu); s=$(dir cpuset); \
     echo \"memsw $(cat $m/memory.memsw.limit_in_bytes)\"; \
     echo \"soft $(cat $m/memory.soft_limit_in_bytes)\"; \
     echo \"shares $(cat $c/cpu.shares)\"; \
     echo \"cpuset $(cat $s/cpuset.cpus)\"; \
     grep Cpus_allowed_list /proc/self/status";

const MORE_FLAGS: &[&str] = &[
    "--memory",
    "64m",
    "--memory-swap",
    "100m",
    "--memory-reservation",
    "32m",
    "--cpu-shares",
    "512",
    "--cpuset-cpus",
    "0",
];

#[test]
fn swap_reservation_shares_and_cpuset_are_the_values_docker_writes() {
    if !root_with_v1()
        || !e2e::require(
            Path::new("/sys/fs/cgroup/cpuset/cgroup.procs").exists(),
            "no cgroup v1 cpuset controller on this host",
        )
    {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut args = MORE_FLAGS.to_vec();
    args.extend(["sh", "-c", MORE_PROBE]);
    let o = as_root(cache.path(), &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ours = text(&o.stdout);
    assert_eq!(
        ours,
        "memsw 104857600\nsoft 33554432\nshares 512\ncpuset 0\nCpus_allowed_list:\t0\n"
    );
    if !docker::required() {
        return;
    }
    let tag = docker::load(bb());
    let theirs = docker::run_sh(&tag, MORE_FLAGS, MORE_PROBE);
    docker::remove(&tag);
    assert_eq!(ours, theirs);
}

#[test]
fn a_stopped_container_leaves_no_group_behind() {
    if !root_with_v1() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(bb())
        .args(["--pids-limit", "10", "--memory", "64m", "sleep", "30"])
        .env("XDG_CACHE_HOME", cache.path())
        .spawn()
        .unwrap();
    let group = format!("/sys/fs/cgroup/pids/oci2bin-{}", child.id());
    let started = std::time::Instant::now();
    while !Path::new(&group).exists() && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Path::new(&group).exists(), "{group} never appeared");
    // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(!Path::new(&group).exists(), "{group} left behind");
}

#[test]
fn cgroupns_private_shows_the_container_its_own_cgroup_as_the_root() {
    if !e2e::runner::userns() {
        return;
    }
    let r = Runner::new();
    let own = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["cat", "/proc/self/cgroup"]);
        r.ok(bb(), &a)
    };
    let host = text(&std::fs::read("/proc/self/cgroup").unwrap());
    let private = own(&["--cgroupns", "private"]);
    assert!(
        private.lines().all(|l| l.ends_with(":/")),
        "every hierarchy's path is the namespace root: {private}"
    );
    // This host has v1 controllers: Docker's default there is the host's namespace.
    let default = own(&[]);
    let explicit = own(&["--cgroupns=host"]);
    assert_eq!(default, explicit);
    if host.lines().any(|l| !l.ends_with(":/")) {
        assert!(default.lines().any(|l| !l.ends_with(":/")), "{default}");
    }
}
