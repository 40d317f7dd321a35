//! The resource flags' specs: parsing Docker's syntax, and the cgroup and rlimit steps planned
//! for each kind of host.

use super::*;
use crate::args::{parse, Parsed};
use crate::format::Runtime;
use crate::plan::{plan, HostFacts};

fn flags(args: &[&str]) -> crate::args::Flags {
    match parse(args.iter().map(|s| s.to_string())).unwrap() {
        Parsed::Run(f) => f,
        p => panic!("{p:?}"),
    }
}

fn res(args: &[&str]) -> Resources {
    flags(args).resources
}

fn err(args: &[&str]) -> String {
    parse(args.iter().map(|s| s.to_string()))
        .unwrap_err()
        .to_string()
}

/// This machine's shape: v1 controllers, our memory group under /process_api/x, an unified
/// hierarchy without controllers.
fn v1_host(writable: bool) -> CgroupFacts {
    let c = |name: &str, dir: &str| V1Controller {
        name: name.into(),
        dir: dir.into(),
        writable,
        memsw: name == "memory",
        mems: (name == "cpuset").then(|| "0".into()),
    };
    CgroupFacts {
        pid: 42,
        cpus: 2,
        v1: vec![
            c("memory", "/sys/fs/cgroup/memory/process_api/x"),
            c("cpu", "/sys/fs/cgroup/cpu"),
            c("cpuset", "/sys/fs/cgroup/cpuset"),
            c("pids", "/sys/fs/cgroup/pids"),
        ],
        v2: Some(V2Group {
            dir: "/sys/fs/cgroup/unified".into(),
            writable,
            controllers: vec![],
        }),
    }
}

fn v2_host() -> CgroupFacts {
    CgroupFacts {
        pid: 42,
        cpus: 4,
        v1: vec![],
        v2: Some(V2Group {
            dir: "/sys/fs/cgroup/user.slice/me".into(),
            writable: true,
            controllers: ["cpuset", "cpu", "io", "memory", "pids"]
                .map(String::from)
                .to_vec(),
        }),
    }
}

fn files(v: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    v.iter().map(|(a, b)| (*a, b.to_string())).collect()
}

#[test]
fn ulimit_takes_dockers_names_and_soft_hard_values() {
    let r = res(&[
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit=core=0",
        "--ulimit",
        "stack=-1:unlimited",
    ]);
    let got: Vec<_> = r.ulimits.iter().map(|u| (u.name, u.soft, u.hard)).collect();
    assert_eq!(
        got,
        [
            ("nofile", 1024, 2048),
            ("core", 0, 0),
            ("stack", UNLIMITED, UNLIMITED)
        ]
    );
    assert_eq!(r.ulimits[0].resource, libc::RLIMIT_NOFILE as i32);
    for (name, _) in ULIMITS {
        assert!(ulimit(&format!("{name}=1")).is_ok(), "{name}");
    }
}

#[test]
fn a_later_ulimit_of_the_same_type_replaces_the_earlier() {
    let r = res(&["--ulimit", "nproc=10", "--ulimit", "nproc=20:30"]);
    assert_eq!(r.ulimits.len(), 1);
    assert_eq!((r.ulimits[0].soft, r.ulimits[0].hard), (20, 30));
}

#[test]
fn bad_ulimits_are_refused_with_the_reason() {
    assert!(err(&["--ulimit", "nofile=2:1"]).contains("soft limit 2 is above the hard limit 1"));
    let e = err(&["--ulimit", "files=10"]);
    assert!(
        e.contains("unknown ulimit type 'files'") && e.contains("nofile"),
        "{e}"
    );
    assert!(err(&["--ulimit", "nofile"]).contains("TYPE=SOFT[:HARD]"));
    assert!(err(&["--ulimit", "nofile=lots"]).contains("'lots' is not a limit"));
    assert!(err(&["--ulimit", "nofile=unlimited:10"]).contains("unlimited is above"));
}

#[test]
fn sizes_are_dockers_binary_units() {
    for (v, n) in [
        ("64m", 64 << 20),
        ("64M", 64 << 20),
        ("64mb", 64 << 20),
        ("64MiB", 64 << 20),
        ("1g", 1 << 30),
        ("0.5g", 512 << 20),
        ("100", 100),
        ("100b", 100),
        ("2k", 2048),
    ] {
        assert_eq!(bytes(v), Ok(n), "{v}");
    }
    for v in [
        "abc",
        "64x",
        "",
        "m",
        "1.2.3m",
        "-1",
        "99999999999999999999p",
    ] {
        assert!(bytes(v).is_err(), "{v}");
    }
    assert!(err(&["--memory", "abc"]).contains("'abc' is not a size"));
    assert_eq!(res(&["-m", "1g"]).memory, Some(1 << 30));
}

#[test]
fn cpus_pids_and_shares_take_dockers_numbers() {
    assert_eq!(res(&["--cpus", "0.5"]).nano_cpus, Some(500_000_000));
    assert_eq!(res(&["--cpus", "2"]).nano_cpus, Some(2_000_000_000));
    assert_eq!(res(&["--cpus", ".25"]).nano_cpus, Some(250_000_000));
    for v in ["abc", "-1", ".", "1.2.3"] {
        assert!(cpus(v).is_err(), "{v}");
    }
    assert_eq!(res(&["--pids-limit", "10"]).pids_limit, Some(Some(10)));
    assert_eq!(res(&["--pids-limit", "-1"]).pids_limit, Some(None));
    assert_eq!(res(&["--pids-limit", "0"]).pids_limit, Some(None));
    assert!(err(&["--pids-limit", "ten"]).contains("--pids-limit"));
    assert_eq!(res(&["--cpu-shares", "512"]).cpu_shares, Some(512));
    assert_eq!(
        res(&["--cpuset-cpus", "0-1,3"]).cpuset_cpus.as_deref(),
        Some("0-1,3")
    );
    assert!(err(&["--cpuset-cpus", "a-b"]).contains("CPU numbers"));
    assert_eq!(res(&["--memory-swap", "-1"]).memory_swap, Some(None));
    assert!(res(&["--require-limits"]).require);
}

#[test]
fn no_cgroup_flag_means_no_cgroup_step() {
    let (before, join) = cgroups(&res(&["--ulimit", "core=0"]), &v1_host(true)).unwrap();
    assert!(before.is_empty() && join.is_empty());
    assert!(controllers(&res(&[])).is_empty());
    assert_eq!(
        controllers(&res(&["-m", "64m", "--cpus", "1", "--pids-limit", "5"])),
        ["memory", "cpu", "pids"]
    );
}

#[test]
fn a_writable_v1_host_gets_a_group_per_controller_with_dockers_values() {
    let r = res(&[
        "--memory",
        "64m",
        "--pids-limit",
        "10",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
    ]);
    let (before, join) = cgroups(&r, &v1_host(true)).unwrap();
    let create = |dir: &str, f: &[(&'static str, &str)], flags: &str| Step::CgroupCreate {
        dir: dir.into(),
        files: files(f),
        flags: flags.into(),
        required: false,
        delegate: None,
    };
    assert_eq!(
        before,
        [
            create(
                "/sys/fs/cgroup/memory/process_api/x/oci2bin-42",
                &[
                    ("memory.limit_in_bytes", "67108864"),
                    // Docker's default swap: as much again.
                    ("memory.memsw.limit_in_bytes", "134217728"),
                ],
                "--memory"
            ),
            create(
                "/sys/fs/cgroup/cpu/oci2bin-42",
                &[
                    ("cpu.cfs_period_us", "100000"),
                    ("cpu.cfs_quota_us", "50000"),
                    ("cpu.shares", "512"),
                ],
                "--cpus, --cpu-shares"
            ),
            create(
                "/sys/fs/cgroup/pids/oci2bin-42",
                &[("pids.max", "10")],
                "--pids-limit"
            ),
        ]
    );
    assert_eq!(
        join,
        [Step::CgroupJoin(vec![
            "/sys/fs/cgroup/memory/process_api/x/oci2bin-42".into(),
            "/sys/fs/cgroup/cpu/oci2bin-42".into(),
            "/sys/fs/cgroup/pids/oci2bin-42".into(),
        ])]
    );
}

#[test]
fn swap_reservation_and_cpuset_on_v1() {
    let r = res(&[
        "-m",
        "64m",
        "--memory-swap",
        "-1",
        "--memory-reservation",
        "32m",
        "--cpuset-cpus",
        "1",
    ]);
    let (before, _) = cgroups(&r, &v1_host(true)).unwrap();
    let Step::CgroupCreate { files: mem, .. } = &before[0] else {
        panic!("{before:?}")
    };
    assert_eq!(
        mem,
        &files(&[
            ("memory.limit_in_bytes", "67108864"),
            ("memory.memsw.limit_in_bytes", "-1"),
            ("memory.soft_limit_in_bytes", "33554432"),
        ])
    );
    let Step::CgroupCreate { files: set, .. } = &before[1] else {
        panic!("{before:?}")
    };
    // Memory nodes first: an empty v1 cpuset takes no task.
    assert_eq!(set, &files(&[("cpuset.mems", "0"), ("cpuset.cpus", "1")]));
}

#[test]
fn without_swap_accounting_memsw_is_not_written() {
    let mut host = v1_host(true);
    host.v1[0].memsw = false;
    let (before, _) = cgroups(&res(&["-m", "64m"]), &host).unwrap();
    let Step::CgroupCreate { files: f, .. } = &before[0] else {
        panic!()
    };
    assert_eq!(f, &files(&[("memory.limit_in_bytes", "67108864")]));
}

#[test]
fn no_writable_cgroup_is_one_warning_naming_what_is_missing() {
    let r = res(&["--memory", "64m", "--pids-limit", "10"]);
    let (before, join) = cgroups(&r, &v1_host(false)).unwrap();
    assert!(join.is_empty());
    let [Step::Warn(w)] = &before[..] else {
        panic!("{before:?}")
    };
    assert!(
        w.starts_with("--memory, --pids-limit ignored: no writable cgroup ("),
        "{w}"
    );
    assert!(
        w.contains(
            "v1 memory controller at /sys/fs/cgroup/memory/process_api/x is not writable by us"
        ),
        "{w}"
    );
    assert!(
        w.contains("v1 pids controller at /sys/fs/cgroup/pids is not writable by us"),
        "{w}"
    );
    assert!(
        w.ends_with("; cgroup v2 at /sys/fs/cgroup/unified is not writable by us)"),
        "{w}"
    );
    let mut readable_v2 = v1_host(false);
    readable_v2.v2.as_mut().unwrap().writable = true;
    let (again, _) = cgroups(&r, &readable_v2).unwrap();
    let [Step::Warn(w2)] = &again[..] else {
        panic!("{again:?}")
    };
    assert!(
        w2.ends_with("; cgroup v2 at /sys/fs/cgroup/unified offers no memory, pids controller)"),
        "{w2}"
    );
    assert!(!w.contains('\n'));
}

#[test]
fn require_limits_turns_the_warning_into_an_error() {
    let r = res(&["--memory", "64m", "--require-limits"]);
    let e = cgroups(&r, &v1_host(false)).unwrap_err().to_string();
    assert!(
        e.starts_with("--memory cannot be applied (--require-limits): no writable cgroup"),
        "{e}"
    );
    let (before, _) = cgroups(&r, &v1_host(true)).unwrap();
    assert!(matches!(
        before[0],
        Step::CgroupCreate { required: true, .. }
    ));
    let none = CgroupFacts::default();
    let e = cgroups(&r, &none).unwrap_err().to_string();
    assert!(
        e.contains("no v1 memory controller is mounted; no cgroup v2 is mounted"),
        "{e}"
    );
}

#[test]
fn a_delegated_v2_subtree_gets_one_group_for_every_controller() {
    let r = res(&[
        "--memory",
        "64m",
        "--memory-swap",
        "100m",
        "--cpus",
        "1.5",
        "--cpu-shares",
        "1024",
        "--pids-limit",
        "-1",
    ]);
    let (before, join) = cgroups(&r, &v2_host()).unwrap();
    let flags = "--memory, --memory-swap, --cpus, --cpu-shares, --pids-limit";
    assert_eq!(
        before,
        [Step::CgroupCreate {
            dir: "/sys/fs/cgroup/user.slice/me/oci2bin-42".into(),
            files: files(&[
                ("memory.max", "67108864"),
                // v2 counts swap alone.
                ("memory.swap.max", "37748736"),
                ("cpu.max", "150000 100000"),
                ("cpu.weight", "39"),
                ("pids.max", "max"),
            ]),
            flags: flags.into(),
            required: false,
            delegate: Some("+memory +cpu +pids".into()),
        },]
    );
    assert_eq!(
        join,
        [Step::CgroupJoin(vec![
            "/sys/fs/cgroup/user.slice/me/oci2bin-42".into()
        ])]
    );
}

#[test]
fn values_docker_refuses_are_refused() {
    let e = |args: &[&str]| cgroups(&res(args), &v1_host(true)).unwrap_err().to_string();
    assert!(e(&["--memory", "1m"]).contains("minimum memory limit is 6MB"));
    assert!(e(&["--memory-swap", "1g"]).contains("--memory-swap needs --memory"));
    assert!(e(&["-m", "64m", "--memory-swap", "32m"]).contains("below --memory"));
    assert!(e(&["-m", "64m", "--memory-reservation", "1g"]).contains("reservation"));
    assert_eq!(
        e(&["--cpus", "3"]),
        "--cpus: the range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
    );
}

fn image() -> Runtime {
    Runtime {
        cmd: Some(vec!["sh".into()]),
        ..Runtime::default()
    }
}

#[test]
fn the_supervisor_makes_the_groups_before_any_namespace_and_pid_1_joins_first() {
    let facts = HostFacts {
        cgroups: v1_host(true),
        ..HostFacts::default()
    };
    let steps = plan(&image(), &flags(&["--pids-limit", "10"]), &facts).unwrap();
    assert!(matches!(steps[0], Step::CgroupCreate { .. }), "{steps:?}");
    let at = |want: fn(&Step) -> bool| steps.iter().position(want).unwrap();
    let unshare = at(|s| matches!(s, Step::Unshare(_)));
    let die = at(|s| matches!(s, Step::DieWithParent));
    let join = at(|s| matches!(s, Step::CgroupJoin(_)));
    assert!(unshare > 0 && join == die + 1, "{steps:?}");
}

#[test]
fn ulimits_come_after_the_raised_defaults_and_before_the_command() {
    let steps = plan(
        &image(),
        &flags(&["--ulimit", "nofile=100:200"]),
        &HostFacts::default(),
    )
    .unwrap();
    let raised = steps
        .iter()
        .position(|s| matches!(s, Step::SoftLimitsToHard(_)))
        .expect("defaults raised");
    let exec = steps
        .iter()
        .position(|s| matches!(s, Step::Exec { .. }))
        .expect("exec");
    assert_eq!(
        steps[raised + 1],
        Step::Rlimit {
            name: "nofile",
            resource: libc::RLIMIT_NOFILE as i32,
            soft: 100,
            hard: 200
        },
        "{steps:?}"
    );
    assert!(raised + 1 < exec);
}

#[test]
fn leftovers_of_killed_runs_are_known_by_their_dead_pid() {
    let alive = |p: u32| p == 7;
    assert!(is_stale("oci2bin-8", alive));
    assert!(is_stale("oci2bin-8-loader", alive));
    assert!(!is_stale("oci2bin-7", alive));
    assert!(!is_stale("oci2bin-x", alive));
    assert!(!is_stale("docker", alive));
}

#[test]
fn the_listed_ulimit_names_are_the_table() {
    let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
    assert_eq!(NAMES, names.join(", "));
}
