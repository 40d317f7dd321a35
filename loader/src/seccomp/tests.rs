use super::*;
use crate::caps::{self, DOCKER_DEFAULT as DEFAULT_CAPS};

const X86: u32 = 0x4000_0003; // AUDIT_ARCH_I386
const ALLOW: u32 = RET_ALLOW;
const EPERM_RET: u32 = RET_ERRNO | 1;
const NEW_KERNEL: (u32, u32) = (6, 1);

fn docker(caps: u64, kernel: (u32, u32)) -> Compiled {
    compile(DOCKER_DEFAULT.as_bytes(), Target { caps, kernel }).unwrap()
}

fn nr(name: &str) -> u32 {
    syscall_number(name).unwrap_or_else(|| panic!("{name} not in the table"))
}

fn call(p: &[Insn], name: &str, args: [u64; 6]) -> u32 {
    evaluate(p, AUDIT_ARCH_X86_64, nr(name), args)
}

fn cap(name: &str) -> u64 {
    1 << caps::number(name).unwrap()
}

#[test]
fn table_is_sorted_and_knows_the_calls_by_their_x86_64_numbers() {
    let t = table_x86_64::X86_64;
    assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
    for (name, n) in [
        ("read", 0),
        ("mkdir", 83),
        ("unshare", 272),
        ("clone3", 435),
        ("mseal", 462),
    ] {
        assert_eq!(syscall_number(name), Some(n), "{name}");
    }
    assert_eq!(
        syscall_number("chown32"),
        None,
        "an i386-only call is unknown here"
    );
}

#[test]
fn dockers_default_profile_compiles_unchanged() {
    let c = docker(DEFAULT_CAPS, NEW_KERNEL);
    assert!(c.insns.len() < MAX_INSNS, "{} instructions", c.insns.len());
    // A search over ranges of numbers: neighbouring allowed calls share one range.
    assert!(c.insns.len() < 300, "{} instructions", c.insns.len());
    assert_eq!(
        c.caps_named,
        [
            "DAC_READ_SEARCH",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_CHROOT",
            "SYS_MODULE",
            "SYS_PACCT",
            "SYS_PTRACE",
            "SYS_RAWIO",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "SYS_NICE",
            "SYSLOG"
        ]
        .iter()
        .map(|c| cap(c))
        .sum::<u64>()
    );
    assert_eq!(c.newest_min_kernel, (4, 8));
    // Compiling is deterministic: the packager's filter is the one the loader would make.
    assert_eq!(c, docker(DEFAULT_CAPS, NEW_KERNEL));
}

#[test]
fn default_filter_allows_ordinary_calls_and_refuses_the_dangerous_ones_with_eperm() {
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    for ok in [
        "read",
        "write",
        "openat",
        "execve",
        "mkdir",
        "chroot",
        "setuid",
        "capset",
        "prctl",
        "seccomp",
        "arch_prctl",
        "socket",
        "ptrace",
    ] {
        assert_eq!(call(&p, ok, [0; 6]), ALLOW, "{ok}");
    }
    for refused in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "kexec_file_load",
        "reboot",
        "bpf",
        "userfaultfd",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "pivot_root",
        "swapon",
        "acct",
        "settimeofday",
        "perf_event_open",
        "iopl",
        "syslog",
        "fsopen",
        "move_mount",
        "clock_settime",
    ] {
        assert_eq!(call(&p, refused, [0; 6]), EPERM_RET, "{refused}");
    }
    // Calls newer than the profile (20.10.24 names up to futex_waitv) answer ENOSYS, as
    // under runc, so libc falls back; an older unnamed one gets the default.
    assert_eq!(c_newest(), nr("futex_waitv"));
    for newer in ["set_mempolicy_home_node", "fchmodat2", "mseal"] {
        assert_eq!(call(&p, newer, [0; 6]), RET_ERRNO | 38, "{newer}");
    }
    assert_eq!(evaluate(&p, AUDIT_ARCH_X86_64, 999, [0; 6]), RET_ERRNO | 38);
    assert_eq!(call(&p, "nfsservctl", [0; 6]), EPERM_RET);
}

/// The highest call number Docker's profile names.
fn c_newest() -> u32 {
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    let enosys = |nr| evaluate(&p, AUDIT_ARCH_X86_64, nr, [0; 6]) == RET_ERRNO | 38;
    (0..1000).rev().find(|&nr| !enosys(nr)).unwrap()
}

#[test]
fn every_call_number_is_decided_in_a_few_comparisons() {
    // The kernel emulates the filter for each number when it installs it (the action cache),
    // and runs it on calls the cache cannot answer: both cost the path's length.
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    let longest = (0..600)
        .map(|nr| run(&p, AUDIT_ARCH_X86_64, nr, [0; 6]).1)
        .max()
        .unwrap();
    assert!(longest <= 20, "{longest} instructions on the longest path");
}

#[test]
fn a_left_half_longer_than_a_jump_is_stepped_over() {
    // 300 calls that each refuse with a different errno: 300 ranges, halves far longer than
    // an 8-bit jump.
    let names: Vec<&str> = super::table_x86_64::X86_64
        .iter()
        .map(|(n, _)| *n)
        .take(300)
        .collect();
    let calls: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                r#"{{"names": ["{n}"], "action": "SCMP_ACT_ERRNO", "errnoRet": {}}}"#,
                i + 2
            )
        })
        .collect();
    let json = format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{}]}}"#,
        calls.join(",")
    );
    let p = custom(&json).unwrap();
    assert!(p.iter().any(|i| i.code == JA));
    for (i, n) in names.iter().enumerate() {
        assert_eq!(call(&p, n, [0; 6]), RET_ERRNO | (i as u32 + 2), "{n}");
    }
}

#[test]
fn a_permissive_default_gets_no_enosys_stub() {
    let p = custom(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#).unwrap();
    assert_eq!(call(&p, "mseal", [0; 6]), ALLOW);
    let p = custom(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["readv"], "action": "SCMP_ACT_ALLOW"}]}"#).unwrap();
    assert_eq!(call(&p, "readv", [0; 6]), ALLOW);
    assert_eq!(call(&p, "read", [0; 6]), EPERM_RET);
    assert_eq!(call(&p, "writev", [0; 6]), RET_ERRNO | 38);
}

#[test]
fn clone_may_not_make_namespaces_and_clone3_says_enosys_as_docker() {
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    let thread = 0x003d_0f00; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    assert_eq!(call(&p, "clone", [thread, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        call(&p, "clone", [17, 0, 0, 0, 0, 0]),
        ALLOW,
        "fork as glibc does it"
    );
    for ns in [
        0x1000_0000u64,
        0x2_0000,
        0x2000_0000,
        0x4000_0000,
        0x0400_0000,
        0x0800_0000,
    ] {
        assert_eq!(
            call(&p, "clone", [ns | 17, 0, 0, 0, 0, 0]),
            EPERM_RET,
            "flag {ns:#x}"
        );
    }
    assert_eq!(call(&p, "clone3", [0; 6]), RET_ERRNO | 38);
    // With CAP_SYS_ADMIN both are free, and so is mount.
    let admin = docker(DEFAULT_CAPS | cap("SYS_ADMIN"), NEW_KERNEL).insns;
    assert_eq!(call(&admin, "clone", [0x1000_0011, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&admin, "clone3", [0; 6]), ALLOW);
    assert_eq!(call(&admin, "mount", [0; 6]), ALLOW);
}

#[test]
fn personality_is_allowed_only_for_the_values_docker_lists() {
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            call(&p, "personality", [ok, 0, 0, 0, 0, 0]),
            ALLOW,
            "{ok:#x}"
        );
    }
    // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, and a value equal in its low word only.
    for no in [0x0400_0000u64, 0x0004_0000, 0x1_0000_0000] {
        assert_eq!(
            call(&p, "personality", [no, 0, 0, 0, 0, 0]),
            EPERM_RET,
            "{no:#x}"
        );
    }
}

#[test]
fn includes_and_excludes_follow_the_capability_set_and_the_kernel() {
    let none = docker(0, NEW_KERNEL).insns;
    assert_eq!(
        call(&none, "chroot", [0; 6]),
        EPERM_RET,
        "chroot needs CAP_SYS_CHROOT"
    );
    let ptrace = docker(DEFAULT_CAPS | cap("SYS_PTRACE"), NEW_KERNEL).insns;
    assert_eq!(call(&ptrace, "kcmp", [0; 6]), ALLOW);
    let old = docker(DEFAULT_CAPS, (4, 4)).insns;
    assert_eq!(
        call(&old, "ptrace", [0; 6]),
        EPERM_RET,
        "ptrace needs 4.8 without SYS_PTRACE"
    );
    assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
    assert_eq!(kernel_version("4.8"), Some((4, 8)));
}

#[test]
fn other_abis_get_the_default_action() {
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    assert_eq!(evaluate(&p, X86, 3, [0; 6]), EPERM_RET, "i386 read");
    assert_eq!(
        evaluate(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]),
        EPERM_RET,
        "x32 read"
    );
}

fn custom(json: &str) -> Result<Vec<Insn>, String> {
    compile(
        json.as_bytes(),
        Target {
            caps: DEFAULT_CAPS,
            kernel: NEW_KERNEL,
        },
    )
    .map(|c| c.insns)
}

#[test]
fn a_custom_profile_can_block_mkdir_with_its_own_errno_and_skips_unknown_names() {
    let p = custom(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122, "comment": "x"},
            {"name": "getpid", "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["uname"], "action": "SCMP_ACT_ALLOW"}
        ]}"#,
    )
    .unwrap();
    assert_eq!(call(&p, "mkdir", [0; 6]), RET_ERRNO | 122);
    assert_eq!(call(&p, "mkdirat", [0; 6]), RET_ERRNO | 122);
    assert_eq!(call(&p, "getpid", [0; 6]), RET_KILL_PROCESS);
    assert_eq!(call(&p, "read", [0; 6]), ALLOW);
    // Every action Docker's schema names.
    for (action, ret) in [
        ("SCMP_ACT_KILL", RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", RET_KILL_THREAD),
        ("SCMP_ACT_TRAP", RET_TRAP),
        ("SCMP_ACT_LOG", RET_LOG),
        ("SCMP_ACT_TRACE", RET_TRACE | 1),
        ("SCMP_ACT_ERRNO", RET_ERRNO | 1),
    ] {
        let p = custom(&format!(r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["kill"], "action": "{action}"}}]}}"#)).unwrap();
        assert_eq!(call(&p, "kill", [0; 6]), ret, "{action}");
    }
    let d = custom(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}"#).unwrap();
    assert_eq!(call(&d, "read", [0; 6]), RET_ERRNO | 38);
}

#[test]
fn argument_operators_compare_all_64_bits() {
    let values = [
        0u64,
        1,
        39,
        40,
        41,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0028,
        u64::MAX,
    ];
    for (op, f) in [
        ("SCMP_CMP_EQ", (|a, v| a == v) as fn(u64, u64) -> bool),
        ("SCMP_CMP_NE", |a, v| a != v),
        ("SCMP_CMP_LT", |a, v| a < v),
        ("SCMP_CMP_LE", |a, v| a <= v),
        ("SCMP_CMP_GT", |a, v| a > v),
        ("SCMP_CMP_GE", |a, v| a >= v),
    ] {
        for v in values {
            let p = custom(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{{"index": 2, "value": {v}, "op": "{op}"}}]}}]}}"#
            ))
            .unwrap();
            for a in values {
                let want = if f(a, v) { ALLOW } else { EPERM_RET };
                assert_eq!(
                    call(&p, "socket", [0, 0, a, 0, 0, 0]),
                    want,
                    "{a:#x} {op} {v:#x}"
                );
            }
        }
    }
    let m = custom(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 5, "value": 18446744069414584335, "valueTwo": 4294967297, "op": "SCMP_CMP_MASKED_EQ"}]}]}"#).unwrap();
    // mask 0xffffffff0000000f, value 0x100000001
    assert_eq!(call(&m, "socket", [0, 0, 0, 0, 0, 0x1_0000_fff1]), ALLOW);
    assert_eq!(
        call(&m, "socket", [0, 0, 0, 0, 0, 0x1_0000_fff2]),
        EPERM_RET
    );
    assert_eq!(
        call(&m, "socket", [0, 0, 0, 0, 0, 0x2_0000_0001]),
        EPERM_RET
    );
}

#[test]
fn conditions_on_different_arguments_and_and_on_one_argument_or() {
    let and = custom(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]}"#).unwrap();
    assert_eq!(call(&and, "socket", [1, 2, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&and, "socket", [1, 3, 0, 0, 0, 0]), EPERM_RET);
    let or = custom(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}"#).unwrap();
    assert_eq!(call(&or, "socket", [2, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&or, "socket", [3, 0, 0, 0, 0, 0]), EPERM_RET);
    // Newer Docker profiles refuse AF_VSOCK sockets this way.
    let vsock = custom(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]}]}"#).unwrap();
    assert_eq!(call(&vsock, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&vsock, "socket", [40, 1, 0, 0, 0, 0]), EPERM_RET);
}

#[test]
fn malformed_profiles_are_one_line_errors_naming_the_member() {
    for (json, want) in [
        ("[]", "the profile is not a JSON object"),
        ("{}", "the profile has no defaultAction"),
        (
            r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#,
            "defaultAction: unknown action 'SCMP_ACT_MAYBE'",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
            "defaultAction: SCMP_ACT_NOTIFY needs a listener process, which oci2bin does not run",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}"#,
            "syscalls[0].action is missing",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "syscalls[0].args[0].index is not a number up to 5",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}"#,
            "syscalls[0].args[0].op: unknown operator 'SCMP_CMP_SOMETIMES'",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ERRNO"}]}"#,
            "syscalls[0].has both name and names: use one",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_NOPE"]}}]}"#,
            "syscalls[0].includes.caps: unknown capability 'CAP_NOPE'",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
            "architectures: unknown architecture 'SCMP_ARCH_VAX'",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
            "the profile has both architectures and archMap: use one",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}"#,
            "defaultErrnoRet is not an errno number",
        ),
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\",",
            "expected a member name at byte 35",
        ),
    ] {
        let e = custom(json).unwrap_err();
        assert_eq!(e, want, "{json}");
        assert!(!e.contains('\n'));
    }
}

#[test]
fn filters_travel_as_sock_filter_bytes() {
    let p = docker(DEFAULT_CAPS, NEW_KERNEL).insns;
    let b = to_bytes(&p);
    assert_eq!(b.len(), p.len() * 8);
    assert_eq!(from_bytes(&b).unwrap(), p);
    assert_eq!(from_bytes(&b[..7]), None);
    assert_eq!(from_bytes(&[]), None);
}
