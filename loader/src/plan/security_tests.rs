//! Specs of the security steps: capabilities, no_new_privs, seccomp, labels.

use super::security::SecurityFacts;
use super::*;
use crate::caps::{self, DOCKER_DEFAULT as DEFAULT_CAPS};
use crate::format::SeccompRecord;
use crate::seccomp;

/// An image whose record carries the default filter, as the packager writes it.
fn image() -> Runtime {
    let profile = seccomp::DOCKER_DEFAULT.as_bytes();
    let newest = seccomp::Target {
        caps: DEFAULT_CAPS,
        kernel: (u32::MAX, u32::MAX),
    };
    let c = seccomp::compile(profile, newest).unwrap();
    Runtime {
        image_id: format!("sha256:{}", "0".repeat(64)),
        name: "test:latest".into(),
        cmd: Some(vec!["sh".into()]),
        seccomp: Some(SeccompRecord {
            caps: DEFAULT_CAPS,
            caps_named: c.caps_named,
            min_kernel: (4, 8),
            bpf: seccomp::to_bytes(&c.insns),
            profile: profile.to_vec(),
        }),
        ..Runtime::default()
    }
}

fn facts() -> HostFacts {
    HostFacts {
        uid: 1000,
        gid: 1000,
        rootfs: "/cache/rootfs".into(),
        scratch: "/run/o2b".into(),
        passwd: Some("root:x:0:0:root:/root:/bin/sh\napp:x:100:101::/home/app:/bin/sh\n".into()),
        group: Some("root:x:0:\napp:x:101:\n".into()),
        security: SecurityFacts {
            kernel: (6, 1),
            ..SecurityFacts::default()
        },
        ..HostFacts::default()
    }
}

fn flags(args: &[&str]) -> Flags {
    match crate::args::parse(args.iter().map(|s| s.to_string())).unwrap() {
        crate::args::Parsed::Run(f) => f,
        p => panic!("{p:?}"),
    }
}

fn plan_of(args: &[&str], f: &HostFacts) -> Vec<Step> {
    plan(&image(), &flags(args), f).unwrap()
}

fn set_caps(steps: &[Step]) -> (u64, u64, u64, u64) {
    steps
        .iter()
        .find_map(|s| match s {
            Step::SetCaps {
                effective,
                permitted,
                inheritable,
                ambient,
            } => Some((*effective, *permitted, *inheritable, *ambient)),
            _ => None,
        })
        .expect("a SetCaps step")
}

fn filter(steps: &[Step]) -> Option<&Vec<u8>> {
    steps.iter().find_map(|s| match s {
        Step::Seccomp(b) => Some(b),
        _ => None,
    })
}

fn pos(steps: &[Step], p: impl Fn(&Step) -> bool) -> usize {
    steps.iter().position(p).expect("step present")
}

fn decides(bpf: &[u8], name: &str, args: [u64; 6]) -> u32 {
    let p = seccomp::from_bytes(bpf).unwrap();
    seccomp::evaluate(
        &p,
        seccomp::AUDIT_ARCH_X86_64,
        seccomp::syscall_number(name).unwrap(),
        args,
    )
}

const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0001;

#[test]
fn by_default_root_gets_dockers_capabilities_and_the_filter_from_the_file_without_no_new_privs() {
    let s = plan_of(&[], &facts());
    assert!(matches!(s[s.len() - 1], Step::Exec { .. }));
    assert!(!s.contains(&Step::NoNewPrivs));
    // Without no_new_privs the filter needs CAP_SYS_ADMIN: in before the sets are lowered.
    let sec = pos(&s, |x| {
        *x == Step::Seccomp(image().seccomp.clone().unwrap().bpf)
    });
    assert!(sec < pos(&s, |x| matches!(x, Step::SetCaps { .. })));
    let s = plan_of(&["--security-opt", "no-new-privileges"], &facts());
    let n = s.len();
    assert_eq!(s[n - 2], Step::Seccomp(image().seccomp.unwrap().bpf));
    assert_eq!(s[n - 3], Step::NoNewPrivs);
    let s = plan_of(&[], &facts());
    assert_eq!(set_caps(&s), (DEFAULT_CAPS, DEFAULT_CAPS, 0, 0));
    let bounding = pos(&s, |x| *x == Step::LimitBoundingSet(DEFAULT_CAPS));
    assert!(bounding > pos(&s, |x| matches!(x, Step::PivotRoot { .. })));
    assert!(bounding < pos(&s, |x| matches!(x, Step::SetCaps { .. })));
    assert!(!s.iter().any(|x| matches!(x, Step::Warn(_))));
}

#[test]
fn the_filter_compiled_in_the_file_is_reused_unless_the_capabilities_or_kernel_matter() {
    let built = image().seccomp.unwrap().bpf;
    // NET_ADMIN is named by no include or exclude of the profile: same filter.
    let s = plan_of(&["--cap-add", "net_admin"], &facts());
    assert_eq!(filter(&s), Some(&built));
    // SYS_ADMIN is: recompiled, and mount, unshare and clone with namespaces are allowed.
    let s = plan_of(&["--cap-add", "CAP_SYS_ADMIN"], &facts());
    let bpf = filter(&s).unwrap();
    assert_ne!(bpf, &built);
    assert_eq!(decides(bpf, "mount", [0; 6]), ALLOW);
    assert_eq!(decides(&built, "mount", [0; 6]), EPERM);
    // Dropping SYS_CHROOT takes chroot away.
    let s = plan_of(&["--cap-drop", "sys_chroot"], &facts());
    assert_eq!(decides(filter(&s).unwrap(), "chroot", [0; 6]), EPERM);
    assert_eq!(decides(&built, "chroot", [0; 6]), ALLOW);
    // A kernel older than a minKernel of the profile: recompiled without ptrace.
    let mut old = facts();
    old.security.kernel = (4, 4);
    let s = plan_of(&[], &old);
    assert_eq!(decides(filter(&s).unwrap(), "ptrace", [0; 6]), EPERM);
    assert_eq!(decides(&built, "ptrace", [0; 6]), ALLOW);
}

#[test]
fn cap_drop_all_empties_every_set_and_cap_add_extends_dockers() {
    let s = plan_of(&["--cap-drop", "ALL"], &facts());
    assert!(s.contains(&Step::LimitBoundingSet(0)));
    assert_eq!(set_caps(&s), (0, 0, 0, 0));
    let s = plan_of(&["--cap-drop=ALL", "--cap-add=CHOWN"], &facts());
    assert!(s.contains(&Step::LimitBoundingSet(1)));
    let s = plan_of(&["--cap-add", "SYS_PTRACE"], &facts());
    let ptrace = 1 << caps::number("SYS_PTRACE").unwrap();
    assert_eq!(set_caps(&s).0, DEFAULT_CAPS | ptrace);
}

#[test]
fn a_non_root_user_gets_only_the_capabilities_it_adds_as_ambient_ones() {
    // As Docker: the bounding set is the container's, nothing effective after exec.
    let s = plan_of(&["-u", "app"], &facts());
    assert!(s.contains(&Step::LimitBoundingSet(DEFAULT_CAPS)));
    assert_eq!(set_caps(&s), (DEFAULT_CAPS, DEFAULT_CAPS, 0, 0));
    // As podman: what --cap-add names is inheritable and ambient, so it survives the exec.
    let s = plan_of(&["-u", "100", "--cap-add", "NET_BIND_SERVICE"], &facts());
    let bind = 1 << 10;
    assert_eq!(set_caps(&s), (DEFAULT_CAPS, DEFAULT_CAPS, bind, bind));
    // An added capability that is also dropped is not.
    let s = plan_of(
        &["-u", "100", "--cap-drop", "ALL", "--cap-add", "NET_RAW"],
        &facts(),
    );
    assert_eq!(set_caps(&s), (1 << 13, 1 << 13, 1 << 13, 1 << 13));
}

#[test]
fn a_mapped_user_switch_keeps_capabilities_until_they_are_set() {
    let mapped = HostFacts {
        ids: IdMode::Mapped { keep_id: false },
        ..facts()
    };
    let s = plan_of(
        &[
            "-u",
            "app",
            "--cap-add",
            "NET_RAW",
            "--security-opt",
            "no-new-privileges",
        ],
        &mapped,
    );
    let keep = pos(&s, |x| *x == Step::KeepCaps);
    let ids = pos(&s, |x| matches!(x, Step::SetIds { .. }));
    let caps = pos(&s, |x| matches!(x, Step::SetCaps { .. }));
    let nnp = pos(&s, |x| *x == Step::NoNewPrivs);
    let sec = pos(&s, |x| matches!(x, Step::Seccomp(_)));
    assert!(keep < ids && ids < caps && caps < nnp && nnp < sec);
    // A single-uid run has no user switch, so nothing to keep.
    assert!(!plan_of(&[], &facts()).contains(&Step::KeepCaps));
}

#[test]
fn privileged_means_every_capability_no_filter_and_no_masked_paths() {
    let s = plan_of(&["--privileged"], &facts());
    assert_eq!(set_caps(&s), (caps::ALL, caps::ALL, 0, 0));
    assert!(!s.iter().any(|x| matches!(
        x,
        Step::LimitBoundingSet(_)
            | Step::Seccomp(_)
            | Step::MaskPath { .. }
            | Step::ReadOnlyPath { .. }
    )));
    assert!(!s.contains(&Step::NoNewPrivs));
    // systempaths=unconfined unmasks without the rest.
    let s = plan_of(&["--security-opt", "systempaths=unconfined"], &facts());
    assert!(!s.iter().any(|x| matches!(x, Step::MaskPath { .. })));
    assert!(filter(&s).is_some());
}

#[test]
fn unconfined_and_no_seccomp_install_no_filter() {
    for args in [
        &["--security-opt", "seccomp=unconfined"][..],
        &["--security-opt", "seccomp:unconfined"],
        &["--no-seccomp"],
    ] {
        let s = plan_of(args, &facts());
        assert_eq!(filter(&s), None, "{args:?}");
        assert!(!s.contains(&Step::NoNewPrivs));
    }
    assert!(filter(&plan_of(&["--no-seccomp", "--no-seccomp=false"], &facts())).is_some());
}

#[test]
fn without_no_new_privs_the_filter_goes_in_while_sys_admin_is_still_held() {
    for off in ["no-new-privileges=false", "no-new-privileges:false"] {
        let s = plan_of(&["--security-opt", off], &facts());
        assert!(!s.contains(&Step::NoNewPrivs));
        assert!(
            pos(&s, |x| matches!(x, Step::Seccomp(_)))
                < pos(&s, |x| matches!(x, Step::SetCaps { .. }))
        );
    }
    for on in ["no-new-privileges", "no-new-privileges=true"] {
        assert!(plan_of(&["--security-opt", on], &facts()).contains(&Step::NoNewPrivs));
    }
}

#[test]
fn a_profile_file_is_compiled_for_the_run_and_a_bad_one_is_one_line() {
    let mut f = facts();
    f.security.profile = Some(Ok(br#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122}]}"#
        .to_vec()));
    for args in [
        &["--seccomp-profile", "/p.json"][..],
        &["--security-opt", "seccomp=/p.json"],
    ] {
        let s = plan_of(args, &f);
        assert_eq!(
            decides(filter(&s).unwrap(), "mkdir", [0; 6]),
            0x0005_0000 | 122
        );
        assert_eq!(decides(filter(&s).unwrap(), "mount", [0; 6]), ALLOW);
    }
    f.security.profile = Some(Ok(
        b"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [".to_vec(),
    ));
    let e = plan(&image(), &flags(&["--seccomp-profile", "/p.json"]), &f).unwrap_err();
    assert_eq!(
        e.to_string(),
        "seccomp profile /p.json: unexpected end at byte 49"
    );
    f.security.profile = Some(Err("No such file or directory (os error 2)".into()));
    let e = plan(&image(), &flags(&["--seccomp-profile", "/p.json"]), &f).unwrap_err();
    assert_eq!(
        e.to_string(),
        "seccomp profile /p.json: No such file or directory (os error 2)"
    );
}

#[test]
fn a_file_without_a_compiled_filter_runs_unfiltered_with_a_warning() {
    let rt = Runtime {
        seccomp: None,
        ..image()
    };
    let s = plan(&rt, &flags(&[]), &facts()).unwrap();
    assert_eq!(filter(&s), None);
    assert!(s
        .iter()
        .any(|x| matches!(x, Step::Warn(w) if w.contains("no seccomp filter"))));
}

#[test]
fn bad_security_flags_are_one_line_errors() {
    let err = |args: &[&str]| match crate::args::parse(args.iter().map(|s| s.to_string())) {
        Err(e) => e.to_string(),
        Ok(p) => panic!("{p:?}"),
    };
    assert_eq!(
        err(&["--cap-add", "CAP_BOGUS"]),
        "invalid value 'CAP_BOGUS' for '--cap-add': unknown capability 'CAP_BOGUS'"
    );
    assert_eq!(
        err(&["--cap-drop=fly"]),
        "invalid value 'fly' for '--cap-drop': unknown capability 'fly'"
    );
    assert!(err(&["--security-opt", "bogus"])
        .starts_with("invalid value 'bogus' for '--security-opt': want no-new-privileges"));
    assert!(err(&["--security-opt", "no-new-privileges=maybe"]).starts_with("invalid value"));
    assert!(err(&["--security-opt", "label=foo"]).contains("label takes disable"));
    assert_eq!(
        err(&["--seccomp-profile"]),
        "option '--seccomp-profile' needs a value"
    );
}

#[test]
fn lsm_labels_apply_where_the_host_has_the_lsm_else_warn() {
    let s = plan_of(
        &[
            "--security-opt",
            "apparmor=docker-default",
            "--security-opt",
            "label=type:container_t",
        ],
        &facts(),
    );
    let warns: Vec<&String> = s
        .iter()
        .filter_map(|x| match x {
            Step::Warn(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(
        warns,
        [
            "AppArmor is not enabled on this host: apparmor=docker-default is not applied",
            "SELinux is not enabled on this host: label=type:container_t is not applied"
        ]
    );
    let mut f = facts();
    f.security.apparmor = true;
    f.security.selinux = true;
    f.security.selinux_context = Some("unconfined_u:unconfined_r:unconfined_t:s0".into());
    let s = plan_of(
        &[
            "--security-opt",
            "apparmor=docker-default",
            "--security-opt",
            "label=type:container_t",
            "--security-opt",
            "label=level:s0:c1,c2",
        ],
        &f,
    );
    assert!(s.contains(&Step::ExecLabel {
        path: "/proc/self/attr/apparmor/exec".into(),
        value: "exec docker-default".into()
    }));
    assert!(s.contains(&Step::ExecLabel {
        path: "/proc/self/attr/exec".into(),
        value: "unconfined_u:unconfined_r:container_t:s0:c1,c2".into()
    }));
    // Nothing to do, nothing said.
    let s = plan_of(
        &[
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "label=disable",
        ],
        &facts(),
    );
    assert!(!s
        .iter()
        .any(|x| matches!(x, Step::Warn(_) | Step::ExecLabel { .. })));
}
