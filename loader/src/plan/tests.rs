//! The plan's specs: every decision, step by step, with no I/O.

use super::*;
use crate::sys::ns;
use std::path::Path;
use std::time::Duration;

fn image() -> Runtime {
    Runtime {
        image_id: format!("sha256:{}", "0".repeat(64)),
        name: "test:latest".into(),
        entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
        cmd: Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]),
        env: vec![
            "PATH=/opt/bin:/bin".into(),
            "LANG=C.UTF-8".into(),
            "EMPTY=".into(),
        ],
        workdir: "/srv".into(),
        ..Runtime::default()
    }
}

fn facts() -> HostFacts {
    HostFacts {
        uid: 1000,
        gid: 1000,
        env: vec![
            ("TERM".into(), "xterm".into()),
            ("USER".into(), "alice".into()),
        ],
        rootfs: "/cache/rootfs".into(),
        scratch: "/run/o2b".into(),
        hostname: "0123456789ab".into(),
        passwd: Some("root:x:0:0:root:/root:/bin/sh\napp:x:100:101::/home/app:/bin/sh\n".into()),
        group: Some("root:x:0:\napp:x:101:\n".into()),
        resolv_conf: Some(b"nameserver 10.0.0.1\n".to_vec()),
        ..HostFacts::default()
    }
}

fn shim(path: &str, link: bool) -> crate::patch::Shim {
    crate::patch::Shim {
        path: path.into(),
        link,
    }
}

fn flags(args: &[&str]) -> Flags {
    match crate::args::parse(args.iter().map(|s| s.to_string())).unwrap() {
        crate::args::Parsed::Run(f) => f,
        p => panic!("{p:?}"),
    }
}

/// The plan without the capability, no_new_privs and seccomp steps (tested in
/// `security_tests`), for the specs of the steps around them.
fn without_security(steps: Vec<Step>) -> Vec<Step> {
    steps
        .into_iter()
        .filter(|s| {
            !matches!(
                s,
                Step::LimitBoundingSet(_)
                    | Step::KeepCaps
                    | Step::SetCaps { .. }
                    | Step::NoNewPrivs
                    | Step::Seccomp(_)
                    | Step::ExecLabel { .. }
            ) && !matches!(s, Step::Warn(w) if w.contains("seccomp"))
        })
        .collect()
}

fn raw_exec_of(steps: &[Step]) -> (&[OsString], &[OsString], bool) {
    match steps.last() {
        Some(Step::Exec {
            argv, env, init, ..
        }) => (argv, env, *init),
        other => panic!("plan does not end in exec: {other:?}"),
    }
}

/// The exec step with its strings as text (the tests' values are UTF-8).
fn exec_of(steps: &[Step]) -> (Vec<String>, Vec<String>, bool) {
    let (argv, env, init) = raw_exec_of(steps);
    let text = |v: &[OsString]| v.iter().map(|s| s.to_str().unwrap().to_string()).collect();
    (text(argv), text(env), init)
}

fn env_of(args: &[&str], f: &HostFacts) -> Vec<String> {
    exec_of(&plan(&image(), &flags(args), f).unwrap())
        .1
        .to_vec()
}

#[test]
fn command_is_entrypoint_then_cmd() {
    assert_eq!(
        command(&image(), &flags(&[])).unwrap(),
        ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
    );
}

#[test]
fn trailing_args_replace_cmd_but_keep_entrypoint() {
    assert_eq!(
        command(&image(), &flags(&["sh", "-c", "x"])).unwrap(),
        ["/docker-entrypoint.sh", "sh", "-c", "x"]
    );
}

#[test]
fn entrypoint_flag_replaces_entrypoint_and_drops_image_cmd() {
    assert_eq!(
        command(&image(), &flags(&["--entrypoint", "/bin/sh"])).unwrap(),
        ["/bin/sh"]
    );
    assert_eq!(
        command(
            &image(),
            &flags(&["--entrypoint", "/bin/sh", "--", "-c", "id"])
        )
        .unwrap(),
        ["/bin/sh", "-c", "id"]
    );
}

#[test]
fn empty_entrypoint_flag_runs_the_arguments_alone() {
    assert_eq!(
        command(&image(), &flags(&["--entrypoint=", "ls", "/"])).unwrap(),
        ["ls", "/"]
    );
    assert_eq!(
        command(&image(), &flags(&["--entrypoint="])),
        Err(PlanError::NoCommand)
    );
}

#[test]
fn an_image_without_entrypoint_or_cmd_needs_a_command() {
    let rt = Runtime {
        entrypoint: None,
        cmd: None,
        ..image()
    };
    let e = plan(&rt, &flags(&[]), &facts()).unwrap_err();
    assert_eq!(e.to_string(), "no command specified");
    assert_eq!(command(&rt, &flags(&["true"])).unwrap(), ["true"]);
}

#[test]
fn env_precedence_is_image_then_files_then_dash_e() {
    let mut f = facts();
    f.env_files = vec![
        (
            "a.env".into(),
            "# comment\n\nLANG=de_DE\nA=file-a\n  B=file-b\nTERM\nUNSET\n".into(),
        ),
        ("b.env".into(), "A=file-b-wins\n".into()),
    ];
    let env = env_of(
        &["-e", "B=flag", "--env-file", "ignored-here", "-e", "C=flag"],
        &f,
    );
    assert_eq!(
        env,
        [
            "PATH=/opt/bin:/bin",
            "HOSTNAME=0123456789ab",
            "LANG=de_DE",
            "EMPTY=",
            "A=file-b-wins",
            "B=flag",
            "TERM=xterm",
            "C=flag",
            "HOME=/root",
        ]
    );
}

#[test]
fn dash_e_without_value_copies_from_the_host_or_warns() {
    let steps = plan(&image(), &flags(&["-e", "TERM", "-e", "NOPE"]), &facts()).unwrap();
    assert!(exec_of(&steps).1.contains(&"TERM=xterm".to_string()));
    assert!(!exec_of(&steps).1.iter().any(|e| e.starts_with("NOPE")));
    assert!(steps.contains(&Step::Warn(
        "environment variable NOPE is not set on the host; not passed".into()
    )));
}

#[test]
fn path_hostname_and_home_are_added_when_missing() {
    let rt = Runtime {
        env: vec![],
        ..image()
    };
    let env = exec_of(&plan(&rt, &flags(&[]), &facts()).unwrap())
        .1
        .to_vec();
    assert_eq!(
        env,
        [
            format!("PATH={DEFAULT_PATH}"),
            "HOSTNAME=0123456789ab".into(),
            "HOME=/root".into()
        ]
    );
}

#[test]
fn explicit_home_and_hostname_win() {
    let env = env_of(&["-e", "HOME=/x", "-e", "HOSTNAME=box"], &facts());
    assert!(env.contains(&"HOME=/x".to_string()));
    assert!(env.contains(&"HOSTNAME=box".to_string()));
    assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
}

#[test]
fn bad_variable_names_are_rejected() {
    let mut f = facts();
    f.env_files = vec![("a.env".into(), "BAD NAME=1\n".into())];
    assert_eq!(
        plan(&image(), &flags(&[]), &f).unwrap_err().to_string(),
        "invalid environment variable 'BAD NAME=1' in a.env: the name contains whitespace"
    );
    assert!(plan(&image(), &flags(&["-e", "=x"]), &facts()).is_err());
}

#[test]
fn user_flag_sets_ids_home_and_the_uid_map() {
    let steps = plan(&image(), &flags(&["-u", "app"]), &facts()).unwrap();
    assert!(steps.contains(&Step::MapIds {
        uid: 100,
        host_uid: 1000,
        gid: 101,
        host_gid: 1000
    }));
    assert!(exec_of(&steps).1.contains(&"HOME=/home/app".to_string()));
    // Known user and group: nothing to patch.
    assert!(!steps.iter().any(|s| matches!(s, Step::AppendFile { .. })));
}

#[test]
fn image_user_applies_unless_overridden() {
    let rt = Runtime {
        user: "app".into(),
        ..image()
    };
    let steps = plan(&rt, &flags(&[]), &facts()).unwrap();
    assert!(steps.contains(&Step::MapIds {
        uid: 100,
        host_uid: 1000,
        gid: 101,
        host_gid: 1000
    }));
    let steps = plan(&rt, &flags(&["--user", "0"]), &facts()).unwrap();
    assert!(steps.contains(&Step::MapIds {
        uid: 0,
        host_uid: 1000,
        gid: 0,
        host_gid: 1000
    }));
}

#[test]
fn default_is_root_in_the_container_whoever_runs_it() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    assert!(steps.contains(&Step::MapIds {
        uid: 0,
        host_uid: 1000,
        gid: 0,
        host_gid: 1000
    }));
}

#[test]
fn unknown_user_name_fails_the_plan() {
    assert!(matches!(
        plan(&image(), &flags(&["-u", "ghost"]), &facts()),
        Err(PlanError::User(UserError::NoSuchUser(_)))
    ));
}

#[test]
fn a_uid_missing_from_passwd_stays_nameless_with_one_uid_as_under_docker() {
    let steps = plan(&image(), &flags(&["-u", "4242:4343"]), &facts()).unwrap();
    assert!(!steps.iter().any(|s| matches!(s, Step::AppendFile { .. })));
    assert!(exec_of(&steps).1.contains(&"HOME=/".to_string()));
    // Root without an entry (a scratch image) still gets one.
    let mut f = facts();
    f.passwd = Some("app:x:100:101::/home/app:/bin/sh\n".into());
    let steps = plan(&image(), &flags(&[]), &f).unwrap();
    assert!(steps
        .iter()
        .any(|s| matches!(s, Step::AppendFile { path, contents }
        if path == Path::new("/etc/passwd") && contents.starts_with("root:x:0:0:"))));
}

#[test]
fn apt_images_get_the_sandbox_override() {
    let mut f = facts();
    assert!(!plan(&image(), &flags(&[]), &f)
        .unwrap()
        .iter()
        .any(|s| matches!(s, Step::WriteFile { path, .. } if path.starts_with("/etc/apt"))));
    f.has_apt = true;
    let steps = plan(&image(), &flags(&[]), &f).unwrap();
    assert!(steps.contains(&Step::WriteFile {
        path: "/etc/apt/apt.conf.d/00oci2bin-sandbox".into(),
        contents: b"APT::Sandbox::User \"root\";\n".to_vec()
    }));
}

#[test]
fn user_switchers_are_shadowed_by_the_loader() {
    let mut f = facts();
    f.shims = vec![
        shim("/usr/sbin/gosu", false),
        shim("/usr/bin/setpriv", false),
    ];
    let steps = plan(&image(), &flags(&[]), &f).unwrap();
    let binds: Vec<_> = steps
        .iter()
        .filter(|s| matches!(s, Step::BindSelf { .. }))
        .cloned()
        .collect();
    assert_eq!(
        binds,
        [
            Step::BindSelf {
                root: "/run/o2b/root".into(),
                path: "/usr/sbin/gosu".into()
            },
            Step::BindSelf {
                root: "/run/o2b/root".into(),
                path: "/usr/bin/setpriv".into()
            }
        ]
    );
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }))
        .unwrap();
    assert!(
        steps
            .iter()
            .rposition(|s| matches!(s, Step::BindSelf { .. }))
            .unwrap()
            < pivot
    );
}

#[test]
fn workdir_comes_from_flag_then_image_then_root() {
    let chdir = |rt: &Runtime, a: &[&str]| {
        plan(rt, &flags(a), &facts())
            .unwrap()
            .into_iter()
            .find_map(|s| match s {
                Step::Chdir(d) => Some(d),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(chdir(&image(), &["-w", "/tmp"]), Path::new("/tmp"));
    assert_eq!(chdir(&image(), &[]), Path::new("/srv"));
    assert_eq!(
        chdir(
            &Runtime {
                workdir: String::new(),
                ..image()
            },
            &[]
        ),
        Path::new("/")
    );
    assert_eq!(
        chdir(
            &Runtime {
                workdir: "app".into(),
                ..image()
            },
            &[]
        ),
        Path::new("/app")
    );
    assert_eq!(
        plan(&image(), &flags(&["-w", "rel"]), &facts())
            .unwrap_err()
            .to_string(),
        "the working directory 'rel' is invalid, it needs to be an absolute path"
    );
}

#[test]
fn the_init_is_pid_1_unless_no_init_is_asked_for() {
    assert!(exec_of(&plan(&image(), &flags(&[]), &facts()).unwrap()).2);
    assert!(exec_of(&plan(&image(), &flags(&["--init"]), &facts()).unwrap()).2);
    assert!(!exec_of(&plan(&image(), &flags(&["--no-init"]), &facts()).unwrap()).2);
}

fn stop_of(rt: &Runtime, args: &[&str]) -> StopPolicy {
    plan(rt, &flags(args), &facts())
        .unwrap()
        .into_iter()
        .find_map(|s| match s {
            Step::Fork(p) => Some(p),
            _ => None,
        })
        .unwrap()
}

#[test]
fn stop_is_sigterm_then_kill_after_ten_seconds_by_default() {
    assert_eq!(
        stop_of(&image(), &[]),
        StopPolicy {
            signal: libc::SIGTERM,
            timeout: Some(Duration::from_secs(10))
        }
    );
}

#[test]
fn stop_signal_comes_from_the_flag_then_the_image() {
    let rt = Runtime {
        stop_signal: "SIGQUIT".into(),
        ..image()
    };
    assert_eq!(stop_of(&rt, &[]).signal, libc::SIGQUIT);
    assert_eq!(
        stop_of(&rt, &["--stop-signal", "USR1"]).signal,
        libc::SIGUSR1
    );
    let odd = Runtime {
        stop_signal: "SIGNOPE".into(),
        ..image()
    };
    let steps = plan(&odd, &flags(&[]), &facts()).unwrap();
    assert!(steps.contains(&Step::Warn(
        "the image's stop signal \"SIGNOPE\" is not a signal; using SIGTERM".into()
    )));
}

#[test]
fn stop_timeout_flag_sets_or_removes_the_deadline() {
    assert_eq!(
        stop_of(&image(), &["--stop-timeout", "2"]).timeout,
        Some(Duration::from_secs(2))
    );
    assert_eq!(stop_of(&image(), &["--stop-timeout=-1"]).timeout, None);
}

#[test]
fn preserve_fds_reaches_exec() {
    let keep = |args: &[&str]| match plan(&image(), &flags(args), &facts()).unwrap().pop() {
        Some(Step::Exec { keep_fds, .. }) => keep_fds,
        other => panic!("{other:?}"),
    };
    assert_eq!(keep(&[]), 0);
    assert_eq!(keep(&["--preserve-fds", "2"]), 2);
}

#[test]
fn non_utf8_arguments_and_environment_reach_exec_untouched() {
    use std::os::unix::ffi::OsStringExt;
    let raw = |b: &[u8]| OsString::from_vec(b.to_vec());
    let mut f = facts();
    f.env.push((raw(b"LANG_\xff"), raw(b"v\xfe")));
    f.env_files = vec![(
        raw(b"/e\xff.env"),
        b"FILE=\xe9t\xe9\r\nLANG_\xff\n".to_vec(),
    )];
    let args = vec![raw(b"-e"), raw(b"K=\xff"), raw(b"echo"), raw(b"caf\xe9")];
    let crate::args::Parsed::Run(fl) = crate::args::parse(args).unwrap() else {
        panic!()
    };
    let steps = plan(&image(), &fl, &f).unwrap();
    let (argv, env, _) = raw_exec_of(&steps);
    assert_eq!(
        argv,
        [raw(b"/docker-entrypoint.sh"), raw(b"echo"), raw(b"caf\xe9")]
    );
    for want in [
        raw(b"K=\xff"),
        raw(b"FILE=\xe9t\xe9"),
        raw(b"LANG_\xff=v\xfe"),
    ] {
        assert!(env.contains(&want), "{want:?} not in {env:?}");
    }
}

#[test]
fn namespaces_come_first_and_the_mount_namespace_only_in_the_child() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    assert_eq!(
        steps[0],
        Step::Unshare(ns::NEW_USER | ns::NEW_PID | ns::NEW_UTS | ns::NEW_IPC)
    );
    assert!(matches!(steps[1], Step::MapIds { .. }));
    assert_eq!(steps[2], Step::Fork(StopPolicy::default()));
    let fork = steps
        .iter()
        .position(|s| matches!(s, Step::Fork(_)))
        .unwrap();
    let mount_ns = steps
        .iter()
        .position(|s| *s == Step::Unshare(ns::NEW_NS))
        .unwrap();
    assert!(mount_ns > fork);
}

#[test]
fn the_root_is_an_overlay_on_a_private_tmpfs_then_pivoted_into() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    let at = |want: &Step| steps.iter().position(|s| s == want).unwrap();
    let tmpfs = at(&Step::Tmpfs {
        target: "/run/o2b".into(),
        flags: 0,
        options: "mode=755".into(),
    });
    let overlay = at(&Step::Overlay {
        lower: "/cache/rootfs".into(),
        upper: "/run/o2b/upper".into(),
        work: "/run/o2b/work".into(),
        target: "/run/o2b/root".into(),
        ram: None,
        seed: vec![],
    });
    let pivot = at(&Step::PivotRoot {
        new_root: "/run/o2b/root".into(),
    });
    assert!(tmpfs < overlay && overlay < pivot);
    // Mount targets are made real directories before anything is mounted on them.
    for d in ["dev", "proc", "sys"] {
        let real = at(&Step::RealDir {
            path: format!("/run/o2b/root/{d}").into(),
        });
        assert!(overlay < real && real < pivot);
    }
    assert!(
        at(&Step::Proc {
            target: "/run/o2b/root/proc".into()
        }) < pivot
    );
    assert!(
        at(&Step::SysReadOnly {
            target: "/run/o2b/root/sys".into()
        }) < pivot
    );
}

#[test]
fn dev_has_the_standard_nodes_and_links() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    for d in DEVICES {
        assert!(steps.contains(&Step::BindFile {
            source: format!("/dev/{d}").into(),
            target: format!("/run/o2b/root/dev/{d}").into()
        }));
    }
    assert!(steps.contains(&Step::Devpts {
        target: "/run/o2b/root/dev/pts".into()
    }));
    assert!(steps.contains(&Step::Symlink {
        target: "pts/ptmx".into(),
        link: "/run/o2b/root/dev/ptmx".into()
    }));
    assert!(steps.contains(&Step::Symlink {
        target: "/proc/self/fd".into(),
        link: "/run/o2b/root/dev/fd".into()
    }));
}

#[test]
fn hostname_hosts_and_resolv_conf_are_written_after_the_pivot() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }))
        .unwrap();
    assert!(steps.contains(&Step::Hostname("0123456789ab".into())));
    for (path, needle) in [
        ("/etc/hostname", "0123456789ab\n"),
        ("/etc/hosts", "127.0.0.1\t0123456789ab\n"),
        ("/etc/resolv.conf", "nameserver 10.0.0.1\n"),
    ] {
        let i = steps
            .iter()
            .position(|s| {
                matches!(s, Step::WriteFile { path: p, contents }
                if p.to_str() == Some(path)
                    && String::from_utf8_lossy(contents).contains(needle))
            })
            .unwrap_or_else(|| panic!("no write of {path}"));
        assert!(i > pivot);
    }
    let mut f = facts();
    f.resolv_conf = None;
    assert!(!plan(&image(), &flags(&[]), &f)
        .unwrap()
        .iter()
        .any(|s| matches!(s, Step::WriteFile { path, .. } if path.ends_with("resolv.conf"))));
}

// R7: full uid ranges.

fn id_facts(subuid: &[(u32, u32)], helpers: bool) -> IdFacts {
    IdFacts {
        uid: 1000,
        gid: 1000,
        user: Some("alice".into()),
        subuid: subuid.to_vec(),
        subgid: subuid.to_vec(),
        newuidmap: helpers.then(|| "/usr/bin/newuidmap".into()),
        newgidmap: helpers.then(|| "/usr/bin/newgidmap".into()),
    }
}

#[test]
fn auto_maps_the_range_when_the_host_has_one_and_falls_back_otherwise() {
    use crate::args::Userns;
    use crate::subid::IdMap;
    let range = [(100000, 65536)];
    let m = userns(Userns::Auto, &id_facts(&range, true))
        .unwrap()
        .unwrap();
    let podman = vec![
        IdMap {
            inside: 0,
            outside: 1000,
            count: 1,
        },
        IdMap {
            inside: 1,
            outside: 100000,
            count: 65536,
        },
    ];
    assert_eq!(
        (m.uid_map.clone(), m.gid_map.clone()),
        (podman.clone(), podman)
    );
    assert!(m.fallback && !m.keep_id);
    assert_eq!(
        m.key_text(),
        "u0:1000:1,1:100000:65536;g0:1000:1,1:100000:65536"
    );
    // No range, or no helpers: auto is today's single-uid mode, silently.
    assert_eq!(userns(Userns::Auto, &id_facts(&[], true)), Ok(None));
    assert_eq!(userns(Userns::Auto, &id_facts(&range, false)), Ok(None));
    assert_eq!(userns(Userns::Single, &id_facts(&range, true)), Ok(None));
    // map and keep-id insist, in one line naming what is missing.
    let e = userns(Userns::Map, &id_facts(&[], true)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--userns map needs a subordinate id range: /etc/subuid has no range for alice"
    );
    let e = userns(Userns::KeepId, &id_facts(&range, false)).unwrap_err();
    assert!(
        e.to_string().contains("newuidmap/newgidmap not found"),
        "{e}"
    );
    let m = userns(Userns::Map, &id_facts(&range, true))
        .unwrap()
        .unwrap();
    assert!(!m.fallback);
    // keep-id: the caller is itself inside.
    let k = userns(Userns::KeepId, &id_facts(&range, true))
        .unwrap()
        .unwrap();
    assert!(k.keep_id);
    assert!(k.uid_map.contains(&IdMap {
        inside: 1000,
        outside: 1000,
        count: 1
    }));
}

fn mapped(keep_id: bool) -> HostFacts {
    HostFacts {
        ids: IdMode::Mapped { keep_id },
        has_apt: true,
        shims: vec![shim("/usr/sbin/gosu", false)],
        ..facts()
    }
}

#[test]
fn a_mapped_run_is_in_its_namespace_already_and_patches_nothing() {
    let single = HostFacts {
        has_apt: true,
        shims: vec![shim("/usr/sbin/gosu", false)],
        ..facts()
    };
    let s = plan(&image(), &flags(&["-u", "app"]), &single).unwrap();
    let m = without_security(plan(&image(), &flags(&["-u", "app"]), &mapped(false)).unwrap());
    // Single-uid: unshare the user namespace too, map one id, patch, stand in.
    assert_eq!(
        s[0],
        Step::Unshare(ns::NEW_USER | ns::NEW_PID | ns::NEW_UTS | ns::NEW_IPC)
    );
    assert!(matches!(
        s[1],
        Step::MapIds {
            uid: 100,
            host_uid: 1000,
            ..
        }
    ));
    assert!(s.iter().any(|x| matches!(x, Step::BindSelf { .. })));
    assert!(s.iter().any(|x| matches!(x, Step::WriteFile { path, .. }
        if path == Path::new(crate::patch::APT_SANDBOX_CONF))));
    assert!(!s.iter().any(|x| matches!(x, Step::SetIds { .. })));
    // Mapped: no new user namespace, no map, no patches, no stand-ins; the ids are set last.
    assert_eq!(m[0], Step::Unshare(ns::NEW_PID | ns::NEW_UTS | ns::NEW_IPC));
    assert!(matches!(m[1], Step::Fork(_)));
    assert!(!m.iter().any(|x| matches!(
        x,
        Step::MapIds { .. } | Step::BindSelf { .. } | Step::AppendFile { .. }
    )));
    assert!(!m.iter().any(|x| matches!(x, Step::WriteFile { path, .. }
        if path.starts_with("/etc/apt"))));
    let n = m.len();
    assert!(matches!(m[n - 3], Step::Chdir(_)));
    assert_eq!(
        m[n - 2],
        Step::SetIds {
            uid: 100,
            gid: 101,
            groups: vec![]
        }
    );
    assert!(matches!(m[n - 1], Step::Exec { .. }));
    // The rest is the same run.
    assert_eq!(exec_of(&s), exec_of(&m));
}

#[test]
fn mapped_runs_get_supplementary_groups_and_keep_id_defaults_to_the_caller() {
    let f = HostFacts {
        group: Some("root:x:0:\napp:x:101:\naudio:x:29:app,bob\nstaff:x:50:bob\n".into()),
        ..mapped(false)
    };
    let steps = plan(&image(), &flags(&["-u", "app"]), &f).unwrap();
    assert!(steps.contains(&Step::SetIds {
        uid: 100,
        gid: 101,
        groups: vec![29]
    }));
    // keep-id: the caller's own ids unless --user says otherwise, with a passwd entry added.
    let k = plan(&image(), &flags(&[]), &mapped(true)).unwrap();
    assert!(k.contains(&Step::SetIds {
        uid: 1000,
        gid: 1000,
        groups: vec![]
    }));
    assert!(k
        .iter()
        .any(|x| matches!(x, Step::AppendFile { path, contents }
        if path == Path::new("/etc/passwd") && contents.starts_with("alice:x:1000:1000:"))));
    let k = plan(&image(), &flags(&["-u", "0"]), &mapped(true)).unwrap();
    assert!(k.contains(&Step::SetIds {
        uid: 0,
        gid: 0,
        groups: vec![]
    }));
}

fn written(steps: &[Step], path: &str) -> Option<String> {
    steps.iter().rev().find_map(|s| match s {
        Step::WriteFile { path: p, contents } if p == Path::new(path) => {
            Some(String::from_utf8(contents.clone()).unwrap())
        }
        _ => None,
    })
}

#[test]
fn net_none_adds_a_network_namespace_with_lo_up_and_host_keeps_the_hosts() {
    // Mapped (entered before the plan) or single-uid: the same network steps.
    let mut mapped_facts = facts();
    mapped_facts.ids = IdMode::Mapped { keep_id: false };
    let mapped = plan(&image(), &flags(&["--net=none"]), &mapped_facts).unwrap();
    assert!(matches!(mapped[0], Step::Unshare(f) if f & ns::NEW_NET != 0 && f & ns::NEW_USER == 0));
    assert_eq!(mapped[1], Step::LoopbackUp);
    assert_eq!(mapped[2], Step::PingGroupRange);
    let host = plan(&image(), &flags(&[]), &facts()).unwrap();
    assert!(matches!(host[0], Step::Unshare(f) if f & ns::NEW_NET == 0));
    assert!(!host.contains(&Step::LoopbackUp));
    for args in [&["--net", "none"][..], &["--network=none"]] {
        let none = plan(&image(), &flags(args), &facts()).unwrap();
        assert!(matches!(none[0], Step::Unshare(f) if f & ns::NEW_NET != 0));
        let up = none.iter().position(|s| *s == Step::LoopbackUp).unwrap();
        let fork = none
            .iter()
            .position(|s| matches!(s, Step::Fork(_)))
            .unwrap();
        assert!(
            up < fork,
            "lo comes up in the supervisor, right after the unshare"
        );
    }
}

#[test]
fn the_hostname_names_the_uts_namespace_the_files_and_the_environment() {
    let mut f = facts();
    f.hostname = "web-1.test".into(); // `--hostname`, which host::gather puts here
    let steps = plan(&image(), &flags(&[]), &f).unwrap();
    assert!(steps.contains(&Step::Hostname("web-1.test".into())));
    assert_eq!(written(&steps, "/etc/hostname").unwrap(), "web-1.test\n");
    assert!(written(&steps, "/etc/hosts")
        .unwrap()
        .contains("127.0.0.1\tweb-1.test\n"));
    assert!(exec_of(&steps)
        .1
        .contains(&"HOSTNAME=web-1.test".to_string()));
}

#[test]
fn dns_flags_replace_the_matching_lines_of_the_hosts_resolv_conf() {
    let mut f = facts();
    f.resolv_conf =
        Some(b"# host\nnameserver 10.0.0.1\nsearch corp.example\noptions edns0\n".to_vec());
    let resolv = |args: &[&str]| {
        written(
            &plan(&image(), &flags(args), &f).unwrap(),
            "/etc/resolv.conf",
        )
        .unwrap()
    };
    assert_eq!(
        resolv(&[]),
        "# host\nnameserver 10.0.0.1\nsearch corp.example\noptions edns0\n",
        "untouched without flags"
    );
    assert_eq!(
        resolv(&["--dns", "1.1.1.1", "--dns=2001:db8::1"]),
        "search corp.example\nnameserver 1.1.1.1\nnameserver 2001:db8::1\noptions edns0\n"
    );
    assert_eq!(
        resolv(&[
            "--dns-search",
            "a.test",
            "--dns-search",
            "b.test",
            "--dns-option",
            "ndots:2"
        ]),
        "search a.test b.test\nnameserver 10.0.0.1\noptions ndots:2\n"
    );
    assert_eq!(
        resolv(&["--dns-search", "."]),
        "nameserver 10.0.0.1\noptions edns0\n"
    );
}

#[test]
fn add_host_appends_lines_and_host_gateway_is_loopback_on_the_host_network() {
    let steps = plan(
        &image(),
        &flags(&[
            "--add-host",
            "db:10.0.0.5",
            "--add-host=v6:::1",
            "--add-host",
            "h=host-gateway",
        ]),
        &facts(),
    )
    .unwrap();
    let hosts = written(&steps, "/etc/hosts").unwrap();
    assert!(
        hosts.ends_with("10.0.0.5\tdb\n::1\tv6\n127.0.0.1\th\n"),
        "{hosts}"
    );
    let e = plan(
        &image(),
        &flags(&["--net=none", "--add-host", "h:host-gateway"]),
        &facts(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "--add-host NAME:host-gateway cannot be used with --net none: the container cannot reach the host"
    );
}

#[test]
fn ip_and_mac_address_are_refused_with_the_modes_reason() {
    for (args, option, mode) in [
        (&["--ip", "10.0.0.9"][..], "--ip", "host"),
        (
            &["--net", "none", "--mac-address", "02:42:ac:11:00:02"],
            "--mac-address",
            "none",
        ),
    ] {
        let e = plan(&image(), &flags(args), &facts())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{option} cannot be used with --net {mode}: ")),
            "{e}"
        );
    }
}

// ---- mounts (R3, R4) ----

fn spec(f: fn(&[u8]) -> Result<mounts::MountSpec, String>, v: &str) -> mounts::MountSpec {
    f(v.as_bytes()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn refused(f: fn(&[u8]) -> Result<mounts::MountSpec, String>, v: &str) -> String {
    f(v.as_bytes()).expect_err(v)
}

fn mount_steps(steps: &[Step]) -> Vec<&Step> {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Mount { .. }))
        .collect()
}

#[test]
fn volume_specs_parse_as_docker_reads_them() {
    use mounts::{volume, Source};
    let s = spec(volume, "/srv/data:/data");
    assert_eq!(s.source, Source::Bind("/srv/data".into()));
    assert_eq!((s.target.as_path(), s.flags), (Path::new("/data"), 0));
    assert_eq!(spec(volume, "/a:/b:ro").flags, ns::MS_RDONLY);
    assert_eq!(spec(volume, "/a:/b:rw,z").flags, 0);
    assert_eq!(spec(volume, "/a:/b:Z,ro").flags, ns::MS_RDONLY);
    // The container path is cleaned; `..` cannot climb above `/`.
    assert_eq!(spec(volume, "/a:/x/../../y/./z/").target, Path::new("/y/z"));
    assert_eq!(
        spec(volume, "data:/x").source,
        Source::Volume(Some("data".into()))
    );
    assert_eq!(spec(volume, "/data").source, Source::Volume(None));
    assert!(refused(volume, "d:/x").contains("invalid volume name 'd'"));
    assert!(refused(volume, "_d:/x").contains("invalid volume name"));
    assert!(refused(volume, "./data:/x").contains("must be absolute"));
    assert!(refused(volume, "/a:x").contains("must be absolute"));
    assert!(refused(volume, "/a:/").contains("cannot be '/'"));
    assert!(refused(volume, "/a:/..").contains("cannot be '/'"));
    assert!(refused(volume, "/a:/b:ro,rw").contains("conflict"));
    assert!(refused(volume, "/a:/b:rshared").contains("unknown option 'rshared'"));
    assert!(refused(volume, "/a:/b:ro:x").contains("HOST:CTR"));
    assert!(refused(volume, ":/b").contains("empty"));
}

#[test]
fn mount_specs_take_dockers_keys() {
    use mounts::{mount, Source};
    let s = spec(mount, "type=bind,source=/h,target=/c,readonly");
    assert_eq!(s.source, Source::Bind("/h".into()));
    assert_eq!(
        (s.target.as_path(), s.flags),
        (Path::new("/c"), ns::MS_RDONLY)
    );
    let s = spec(mount, "type=bind,src=/h,dst=/c,ro=false");
    assert_eq!(s.flags, 0);
    assert_eq!(
        spec(mount, "type=bind,src=/h,destination=/c,readonly=true").flags,
        ns::MS_RDONLY
    );
    let t = spec(mount, "type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770");
    assert_eq!(t.source, Source::Tmpfs("size=67108864,mode=1770".into()));
    assert_eq!(t.flags, ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC);
    let v = spec(mount, "type=volume,src=vol-1,dst=/c,ro");
    assert_eq!(
        (v.source, v.flags),
        (Source::Volume(Some("vol-1".into())), ns::MS_RDONLY)
    );
    assert_eq!(spec(mount, "dst=/c").source, Source::Volume(None));
    assert!(refused(mount, "src=/h,dst=/c").contains("invalid volume name '/h'"));
    assert!(refused(mount, "type=volume,dst=/c,tmpfs-size=1m").contains("type=tmpfs"));
    assert!(refused(mount, "type=bind,src=/h").contains("target is required"));
    assert!(refused(mount, "type=bind,dst=/c").contains("source is required"));
    assert!(refused(mount, "type=bind,src=h/x,dst=/c").contains("must be absolute"));
    assert!(refused(mount, "type=tmpfs,src=/h,dst=/c").contains("source is not supported"));
    assert!(refused(mount, "type=tmpfs,dst=/c,tmpfs-size=lots").contains("tmpfs-size"));
    assert!(refused(mount, "type=tmpfs,dst=/c,tmpfs-mode=999").contains("tmpfs-mode"));
    assert!(refused(mount, "type=bind,src=/h,dst=/c,tmpfs-size=1").contains("type=tmpfs"));
    assert!(refused(mount, "type=nfs,dst=/c").contains("unknown mount type"));
    assert!(refused(mount, "type=bind,src=/h,dst=/c,colour=red").contains("unknown key"));
}

#[test]
fn tmpfs_specs_start_from_dockers_defaults() {
    use mounts::{tmpfs, Source};
    let d = ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC;
    let s = spec(tmpfs, "/run/x");
    assert_eq!((s.source, s.flags), (Source::Tmpfs(String::new()), d));
    let s = spec(tmpfs, "/t:size=10m,mode=1777,exec,size=20m");
    assert_eq!(s.source, Source::Tmpfs("mode=1777,size=20m".into()));
    assert_eq!(s.flags, ns::MS_NOSUID | ns::MS_NODEV);
    assert_eq!(spec(tmpfs, "/t:ro").flags, d | ns::MS_RDONLY);
    assert_eq!(spec(tmpfs, "/t:ro,rw,suid,dev").flags, ns::MS_NOEXEC);
    assert!(refused(tmpfs, "/t:size=big").contains("invalid tmpfs option 'size=big'"));
    assert!(refused(tmpfs, "/t:mode=8").contains("invalid tmpfs option"));
    assert!(refused(tmpfs, "/t:huge=always").contains("unknown tmpfs option"));
    assert!(refused(tmpfs, "t").contains("must be absolute"));
}

#[test]
fn secrets_are_read_only_files_under_run_secrets() {
    use mounts::{secret, Source};
    let all = ns::MS_RDONLY | ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC;
    let s = spec(secret, "/home/a/token.txt");
    assert_eq!(s.source, Source::Bind("/home/a/token.txt".into()));
    assert_eq!(
        (s.target.as_path(), s.flags),
        (Path::new("/run/secrets/token.txt"), all)
    );
    assert_eq!(
        spec(secret, "/h/t:api").target,
        Path::new("/run/secrets/api")
    );
    assert_eq!(spec(secret, "/h/t:/etc/t").target, Path::new("/etc/t"));
    assert!(refused(secret, "t").contains("must be absolute"));
    assert!(refused(secret, "/h/t:a/b").contains("CTR"));
}

#[test]
fn flags_collect_mounts_in_order_and_errors_name_the_flag() {
    let f = flags(&[
        "-v",
        "/a:/x",
        "--tmpfs=/t",
        "--secret",
        "/s",
        "--mount",
        "type=tmpfs,dst=/m",
    ]);
    let targets: Vec<&Path> = f.mounts.iter().map(|m| m.target.as_path()).collect();
    assert_eq!(targets, ["/x", "/t", "/run/secrets/s", "/m"].map(Path::new));
    let e = crate::args::parse(["-v", "v:/x"].map(String::from)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value 'v:/x' for '-v': invalid volume name 'v': want [a-zA-Z0-9][a-zA-Z0-9_.-]+"
    );
    assert!(flags(&["--read-only"]).read_only);
    assert!(!flags(&["--read-only=false"]).read_only);
}

#[test]
fn mounts_come_before_the_pivot_parents_first_with_their_source_kind() {
    let f = flags(&[
        "-v",
        "/h/deep:/a/b/c:ro",
        "-v",
        "/h/file:/a/f",
        "--tmpfs",
        "/a",
    ]);
    let mut h = facts();
    h.mount_sources = vec![Ok(true), Ok(false), Ok(true)];
    let steps = plan(&image(), &f, &h).unwrap();
    let root = PathBuf::from("/run/o2b/root");
    assert_eq!(
        mount_steps(&steps),
        [
            &Step::Mount {
                root: root.clone(),
                target: "/a".into(),
                what: mounts::What::Tmpfs(String::new()),
                flags: ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
            },
            &Step::Mount {
                root: root.clone(),
                target: "/a/f".into(),
                what: mounts::What::BindFile("/h/file".into()),
                flags: 0,
            },
            &Step::Mount {
                root,
                target: "/a/b/c".into(),
                what: mounts::What::BindDir("/h/deep".into()),
                flags: ns::MS_RDONLY,
            },
        ]
    );
    let at = |p: &dyn Fn(&Step) -> bool| steps.iter().position(p).unwrap();
    let first_mount = at(&|s| matches!(s, Step::Mount { .. }));
    assert!(at(&|s| matches!(s, Step::SysReadOnly { .. })) < first_mount);
    assert!(first_mount < at(&|s| matches!(s, Step::PivotRoot { .. })));
    assert!(!steps.contains(&Step::ReadOnlyRoot));
}

#[test]
fn a_missing_host_path_or_a_duplicate_target_stops_the_plan() {
    let mut h = facts();
    h.mount_sources = vec![Err(
        "the host path does not exist (it is never created)".into()
    )];
    let e = plan(&image(), &flags(&["-v", "/nope:/data"]), &h).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot bind /nope to /data: the host path does not exist (it is never created)"
    );
    h.mount_sources = vec![Ok(true), Ok(true)];
    let e = plan(&image(), &flags(&["-v", "/a:/d", "--tmpfs", "/d/../d"]), &h).unwrap_err();
    assert_eq!(e.to_string(), "duplicate mount point: /d");
}

#[test]
fn read_only_remounts_the_root_after_the_files_and_before_the_ids_change() {
    for h in [facts(), mapped(false)] {
        let steps = without_security(plan(&image(), &flags(&["--read-only"]), &h).unwrap());
        let at = |p: &dyn Fn(&Step) -> bool| steps.iter().position(p);
        let ro = at(&|s| s == &Step::ReadOnlyRoot).unwrap();
        assert!(at(&|s| matches!(s, Step::WriteFile { .. })).unwrap() < ro);
        assert!(at(&|s| matches!(s, Step::Chdir(_))).unwrap() < ro);
        if let Some(ids) = at(&|s| matches!(s, Step::SetIds { .. })) {
            assert!(ro < ids);
        }
        assert_eq!(
            ro + 1,
            steps.len() - 1 - usize::from(h.ids != IdMode::Single)
        );
    }
}

#[test]
fn per_run_files_are_not_written_through_a_user_mount() {
    let mut h = facts();
    h.mount_sources = vec![Ok(false), Ok(true)];
    let f = flags(&[
        "-v",
        "/etc/resolv.conf:/etc/resolv.conf:ro",
        "-v",
        "/h/etc:/etc/hosts",
    ]);
    let steps = plan(&image(), &f, &h).unwrap();
    let written: Vec<&Path> = steps
        .iter()
        .filter_map(|s| match s {
            Step::WriteFile { path, .. } | Step::AppendFile { path, .. } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    assert_eq!(written, [Path::new("/etc/hostname")]);
}

#[test]
fn a_workdir_inside_a_user_mount_is_not_created() {
    let mut h = facts();
    h.mount_sources = vec![Ok(true)];
    let steps = plan(&image(), &flags(&["-v", "/src:/src", "-w", "/src/sub"]), &h).unwrap();
    assert!(steps.contains(&Step::ChdirExisting("/src/sub".into())));
    let steps = plan(&image(), &flags(&["-v", "/src:/src", "-w", "/srcx"]), &h).unwrap();
    assert!(steps.contains(&Step::Chdir("/srcx".into())));
}

#[test]
fn dockers_masked_and_read_only_paths_follow_proc_and_sys_before_the_pivot() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    let at = |want: &Step| steps.iter().position(|s| s == want).unwrap();
    let root = Path::new("/run/o2b/root");
    let sys = at(&Step::SysReadOnly {
        target: root.join("sys"),
    });
    let kcore = at(&Step::MaskPath {
        path: root.join("proc/kcore"),
    });
    let proc_sys = at(&Step::ReadOnlyPath {
        path: root.join("proc/sys"),
    });
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }))
        .unwrap();
    assert!(sys < proc_sys && proc_sys < kcore && kcore < pivot);
    for p in ["proc/keys", "proc/timer_list", "sys/firmware"] {
        at(&Step::MaskPath { path: root.join(p) });
    }
}

#[test]
fn open_files_and_processes_get_their_hard_limit_before_the_command() {
    let steps = without_security(plan(&image(), &flags(&[]), &facts()).unwrap());
    let n = steps.len();
    assert_eq!(
        steps[n - 3],
        Step::SoftLimitsToHard(vec![ns::RLIMIT_NOFILE, ns::RLIMIT_NPROC])
    );
}

// R9: sessions and terminals.

fn position(steps: &[Step], f: impl Fn(&Step) -> bool) -> usize {
    steps.iter().position(f).unwrap()
}

#[test]
fn the_command_always_leads_a_session_of_its_own() {
    for (f, fl) in [
        (facts(), flags(&[])),
        (mapped(false), flags(&["-u", "app"])),
    ] {
        let steps = plan(&image(), &fl, &f).unwrap();
        let die = position(&steps, |s| *s == Step::DieWithParent);
        assert_eq!(steps[die + 1], Step::NewSession);
        // No terminal without -t.
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::TtyChannel { .. } | Step::Console { .. })));
    }
}

#[test]
fn t_opens_the_channel_before_the_fork_and_the_pty_after_the_pivot_as_root() {
    let f = HostFacts {
        stdin_tty: true,
        ..mapped(false)
    };
    let steps = plan(&image(), &flags(&["-t", "-u", "app"]), &f).unwrap();
    let chan = position(&steps, |s| *s == Step::TtyChannel { input: true });
    let fork = position(&steps, |s| matches!(s, Step::Fork(_)));
    let session = position(&steps, |s| *s == Step::NewSession);
    let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
    let console = position(&steps, |s| {
        *s == Step::Console {
            uid: 100,
            gid: 101,
            dev_console: true,
        }
    });
    let ids = position(&steps, |s| matches!(s, Step::SetIds { .. }));
    assert!(chan + 1 == fork && fork < session && session < pivot);
    assert!(
        pivot < console && console < ids,
        "the pty is the user's, made as root"
    );
}

#[test]
fn it_needs_a_terminal_on_stdin_and_t_alone_does_not() {
    let no_tty = facts();
    assert_eq!(
        plan(&image(), &flags(&["-it"]), &no_tty)
            .unwrap_err()
            .to_string(),
        "the input device is not a TTY"
    );
    // -t alone: the pty, with nothing pumped into it (docker run -t).
    let steps = plan(&image(), &flags(&["-t"]), &no_tty).unwrap();
    assert!(steps.contains(&Step::TtyChannel { input: false }));
    // -i alone changes nothing: stdin is passed anyway.
    assert_eq!(
        plan(&image(), &flags(&["-i"]), &no_tty).unwrap(),
        plan(&image(), &flags(&[]), &no_tty).unwrap()
    );
}

#[test]
fn mqueue_is_mounted_in_dev_before_the_pivot() {
    let steps = plan(&image(), &flags(&[]), &facts()).unwrap();
    let mq = position(&steps, |s| {
        *s == Step::Mqueue {
            target: "/run/o2b/root/dev/mqueue".into(),
        }
    });
    let dev = position(
        &steps,
        |s| matches!(s, Step::Tmpfs { target, .. } if target == Path::new("/run/o2b/root/dev")),
    );
    let pivot = position(&steps, |s| matches!(s, Step::PivotRoot { .. }));
    assert!(dev < mq && mq < pivot);
}

#[test]
fn device_specs_default_the_container_path_and_check_permissions() {
    use mounts::{device, Source};
    let d = spec(device, "/dev/null");
    assert_eq!(
        (d.source, d.target),
        (Source::Device("/dev/null".into()), "/dev/null".into())
    );
    assert_eq!(
        spec(device, "/dev/null:/dev/mynull").target,
        Path::new("/dev/mynull")
    );
    assert_eq!(spec(device, "/dev/null:r").target, Path::new("/dev/null"));
    assert_eq!(
        spec(device, "/dev/null:/dev/n:rw").target,
        Path::new("/dev/n")
    );
    assert!(refused(device, "null").contains("must be absolute"));
    assert!(refused(device, "/dev/null:/dev/n:rx").contains("invalid permissions 'rx'"));
    assert!(refused(device, "/dev/null:/dev/n:r:x").contains("HOST[:CTR[:PERMS]]"));
    let e = crate::args::parse(["--device", "/dev/null:x"].map(String::from)).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("invalid value '/dev/null:x' for '--device'"));
}

#[test]
fn a_device_is_bound_as_a_file_and_a_non_device_stops_the_plan() {
    let mut h = facts();
    h.mount_sources = vec![Ok(false)];
    let steps = plan(&image(), &flags(&["--device", "/dev/null:/dev/mynull"]), &h).unwrap();
    assert_eq!(
        mount_steps(&steps),
        [&Step::Mount {
            root: "/run/o2b/root".into(),
            target: "/dev/mynull".into(),
            what: mounts::What::BindFile("/dev/null".into()),
            flags: 0,
        }]
    );
    h.mount_sources = vec![Err("not a device node".into())];
    let e = plan(&image(), &flags(&["--device", "/etc/passwd:/dev/x"]), &h).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot bind /etc/passwd to /dev/x: not a device node"
    );
}

#[test]
fn the_writable_layer_is_on_disk_in_the_run_dir_with_ram_as_the_fallback() {
    let mut h = facts();
    h.upper = Upper::Disk("/cache/runs/r1".into());
    let steps = plan(&image(), &flags(&[]), &h).unwrap();
    assert!(steps.contains(&Step::Overlay {
        lower: "/cache/rootfs".into(),
        upper: "/cache/runs/r1/upper".into(),
        work: "/cache/runs/r1/work".into(),
        target: "/run/o2b/root".into(),
        ram: Some(("/run/o2b/upper".into(), "/run/o2b/work".into())),
        seed: vec![],
    }));
    // Nothing is made on the tmpfs for an upper it does not hold.
    assert!(!steps.contains(&Step::Mkdir {
        path: "/run/o2b/upper".into(),
        mode: 0o755
    }));
    // --overlay-persist: no fallback, the writes must land in DIR.
    h.upper = Upper::Persist("/keep".into());
    let steps = plan(&image(), &flags(&["--overlay-persist", "/keep"]), &h).unwrap();
    assert!(steps
        .iter()
        .any(|s| matches!(s, Step::Overlay { upper, ram: None, .. }
        if upper == Path::new("/keep/upper"))));
}

#[test]
fn tmpfs_upper_keeps_writes_in_ram_with_an_optional_size() {
    assert_eq!(flags(&["--tmpfs-upper"]).tmpfs_upper.as_deref(), Some(""));
    assert_eq!(
        flags(&["--tmpfs-upper=2g"]).tmpfs_upper.as_deref(),
        Some("size=2g")
    );
    assert_eq!(flags(&["--tmpfs-upper=false"]).tmpfs_upper, None);
    let e = crate::args::parse(["--tmpfs-upper=lots"].map(String::from)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value 'lots' for '--tmpfs-upper': want a size such as 512m, 2g or 50%"
    );
    let steps = plan(&image(), &flags(&["--tmpfs-upper=2g"]), &facts()).unwrap();
    assert!(steps.contains(&Step::Tmpfs {
        target: "/run/o2b".into(),
        flags: 0,
        options: "mode=755,size=2g".into(),
    }));
    assert!(steps
        .iter()
        .any(|s| matches!(s, Step::Overlay { upper, ram: None, .. }
        if upper == Path::new("/run/o2b/upper"))));
}

#[test]
fn a_volume_dir_is_mounted_as_a_volume_and_an_unresolved_one_stops_the_plan() {
    let mut f = flags(&["-v", "data:/var/lib/data"]);
    let e = plan(&image(), &f, &facts()).unwrap_err();
    assert_eq!(e.to_string(), "volume at /var/lib/data has no directory");
    f.mounts[0].source = mounts::Source::VolumeDir("/cache/volumes/data".into());
    let steps = plan(&image(), &f, &facts()).unwrap();
    assert_eq!(
        mount_steps(&steps),
        [&Step::Mount {
            root: "/run/o2b/root".into(),
            target: "/var/lib/data".into(),
            what: mounts::What::Volume("/cache/volumes/data".into()),
            flags: 0,
        }]
    );
}

// ---- networking with a helper, published ports, joined namespaces (R5) ----

fn helper_of(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .find_map(|s| match s {
            Step::NetHelper(h) => Some(h.argv.clone()),
            _ => None,
        })
        .expect("a helper step")
}

#[test]
fn slirp_starts_before_the_namespaces_and_is_waited_for_before_the_fork() {
    let steps = plan(&image(), &flags(&["--net", "slirp"]), &facts()).unwrap();
    let start = position(&steps, |s| matches!(s, Step::NetHelper(_)));
    let unshare = position(
        &steps,
        |s| matches!(s, Step::Unshare(f) if f & ns::NEW_NET != 0),
    );
    let ready = position(&steps, |s| *s == Step::NetHelperReady);
    let fork = position(&steps, |s| matches!(s, Step::Fork(_)));
    assert!(start < unshare && unshare < ready && ready < fork);
    // Rootless podman's defaults; a single-uid run joins the namespace's user namespace.
    assert_eq!(
        helper_of(&steps),
        [
            "slirp4netns",
            "--configure",
            "--mtu",
            "65520",
            "--ready-fd=3",
            "--disable-host-loopback",
            "--userns-path=/proc/{pid}/ns/user",
            "{pid}",
            "tap0"
        ]
    );
    // A mapped run is in that user namespace already.
    let mapped = plan(&image(), &flags(&["--net=slirp"]), &mapped(false)).unwrap();
    assert!(!helper_of(&mapped).iter().any(|a| a.contains("userns")));
    let open = plan(
        &image(),
        &flags(&["--net=slirp4netns:allow_host_loopback=true"]),
        &facts(),
    )
    .unwrap();
    assert!(!helper_of(&open).contains(&"--disable-host-loopback".to_string()));
}

#[test]
fn publish_implies_slirp_and_forwards_through_its_api_socket() {
    let steps = plan(
        &image(),
        &flags(&["-p", "8080:80", "--publish=127.0.0.1:5353:53/udp"]),
        &facts(),
    )
    .unwrap();
    let argv = helper_of(&steps);
    let api = &argv[argv.iter().position(|a| a == "--api-socket").unwrap() + 1];
    assert_eq!(api, "/run/o2b/slirp-{pid}.sock");
    let forward = steps
        .iter()
        .find_map(|s| match s {
            Step::SlirpForward { api, ports } => Some((api.clone(), ports.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(forward.0, Path::new(api));
    assert_eq!(
        forward.1,
        [
            net::Publish {
                ip: None,
                host: 8080,
                ctr: 80,
                udp: false
            },
            net::Publish {
                ip: Some("127.0.0.1".into()),
                host: 5353,
                ctr: 53,
                udp: true
            },
        ]
    );
    assert!(
        position(&steps, |s| *s == Step::NetHelperReady)
            < position(&steps, |s| matches!(s, Step::SlirpForward { .. }))
    );
}

#[test]
fn publish_specs_parse_as_docker_reads_them() {
    let p = |v: &str| net::publish(v).unwrap();
    assert_eq!(
        p("80:8080")[0],
        net::Publish {
            ip: None,
            host: 80,
            ctr: 8080,
            udp: false
        }
    );
    assert_eq!(p("[::1]:80:81/tcp")[0].ip.as_deref(), Some("::1"));
    let range = p("7000-7002:8000-8002/udp");
    assert_eq!(range.len(), 3);
    assert_eq!(
        (range[2].host, range[2].ctr, range[2].udp),
        (7002, 8002, true)
    );
    // No host port: a free one is chosen when the run starts (0 until then).
    let random = |ip: Option<&str>, ctr| net::Publish {
        ip: ip.map(str::to_string),
        host: 0,
        ctr,
        udp: false,
    };
    assert_eq!(p("6379"), [random(None, 6379)]);
    assert_eq!(p("127.0.0.1::6379"), [random(Some("127.0.0.1"), 6379)]);
    assert_eq!(p("[::1]::80")[0], random(Some("::1"), 80));
    assert_eq!(p("8000-8001"), [random(None, 8000), random(None, 8001)]);
    assert!(p("53/udp")[0].udp);
    for (bad, why) in [
        ("x:80", "'x' is not a port"),
        ("0:80", "'0' is not a port"),
        ("80:70000", "'70000' is not a port"),
        ("80:80/sctp", "unknown protocol 'sctp'"),
        ("1.2.3:80:80", "not an IP address"),
        ("7000-7001:80", "differ in length"),
        ("1.2.3.4::x", "'x' is not a port"),
        ("80:", "'' is not a port"),
        ("9-8:9-8", "ends before it starts"),
    ] {
        let e = net::publish(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn pasta_takes_the_ports_address_and_mac_on_its_command_line() {
    let steps = plan(
        &image(),
        &flags(&[
            "--net=pasta",
            "-p",
            "8080:80",
            "-p",
            "9000:9000/udp",
            "--ip",
            "10.9.0.5",
            "--mac-address",
            "02:42:ac:11:00:02",
        ]),
        &facts(),
    )
    .unwrap();
    let argv = helper_of(&steps).join(" ");
    assert_eq!(
        argv,
        "pasta --foreground --quiet --config-net --dns-forward 169.254.1.1 -t 8080:80 \
         -u 9000:9000 -T none -U none --address 10.9.0.5 --ns-mac-addr 02:42:ac:11:00:02 {pid}"
    );
    assert!(!steps.iter().any(|s| matches!(s, Step::SlirpForward { .. })));
    let mapped = plan(&image(), &flags(&["--net=pasta"]), &mapped(false)).unwrap();
    assert!(helper_of(&mapped)
        .join(" ")
        .ends_with("--netns /proc/self/fd/3"));
}

#[test]
fn helper_modes_point_resolv_conf_and_host_gateway_at_the_helper() {
    let mut f = facts();
    f.gateway = Some("192.0.2.1".into());
    let files = |args: &[&str]| {
        let steps = plan(&image(), &flags(args), &f).unwrap();
        (
            written(&steps, "/etc/resolv.conf").unwrap(),
            written(&steps, "/etc/hosts").unwrap(),
        )
    };
    let (resolv, hosts) = files(&["--net=slirp", "--add-host=h:host-gateway"]);
    assert_eq!(resolv, "nameserver 10.0.2.3\n");
    assert!(hosts.ends_with("10.0.2.2\th\n"), "{hosts}");
    let (resolv, hosts) = files(&["--net=pasta", "--add-host=h:host-gateway"]);
    assert_eq!(resolv, "nameserver 169.254.1.1\n");
    assert!(hosts.ends_with("192.0.2.1\th\n"), "{hosts}");
    // --dns still wins.
    assert_eq!(
        files(&["--net=slirp", "--dns=9.9.9.9"]).0,
        "nameserver 9.9.9.9\n"
    );
}

#[test]
fn the_default_gateway_is_read_from_proc_net_route() {
    let route = "Iface\tDestination\tGateway \tFlags\n\
                 eth0\t0002000A\t00000000\t0001\n\
                 eth0\t00000000\t010200C0\t0003\n";
    assert_eq!(net::default_gateway(route).as_deref(), Some("192.0.2.1"));
    assert_eq!(net::default_gateway("Iface\tDestination\n"), None);
}

/// Facts with the processes `container:X` names resolved (see `lifecycle::peers`).
fn joined(net: Option<u32>, ipc: Option<u32>) -> HostFacts {
    HostFacts {
        peers: net::Peers { net, ipc },
        ..facts()
    }
}

#[test]
fn publish_is_ignored_with_a_warning_on_the_host_network_and_refused_without_one() {
    let steps = plan(&image(), &flags(&["--net=host", "-p", "80"]), &facts()).unwrap();
    assert!(steps.contains(&Step::Warn(
        "published ports are discarded when using host network mode".into()
    )));
    assert!(!steps.iter().any(|s| matches!(s, Step::NetHelper(_))));
    for (args, needle) in [
        (
            &["--net=none", "-p", "80:80"][..],
            "-p cannot be used with --net none",
        ),
        (
            &["--net=container:web", "-p", "80:80"],
            "-p cannot be used with --net container:NAME",
        ),
        (
            &["--net=slirp", "-p", "80"],
            "-p cannot be used with --net slirp: no free host port was chosen",
        ),
        (
            &["--net=slirp", "--ip", "10.0.2.5"],
            "--ip cannot be used with --net slirp",
        ),
        (&["--net=pasta", "--ip", "fe80::1"], "want an IPv4 address"),
        (
            &["--net=slirp", "--mac-address", "zz"],
            "want six hex bytes",
        ),
        (
            &["--net=container:web", "--add-host", "h:host-gateway"],
            "the gateway is the other container's",
        ),
        (
            &["--net=container:web", "--userns=map"],
            "runs in that one's user namespace",
        ),
    ] {
        let e = plan(&image(), &flags(args), &joined(Some(42), None))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    // slirp can set the MAC.
    let steps = plan(
        &image(),
        &flags(&["--net=slirp", "--mac-address=02:00:00:00:00:01"]),
        &facts(),
    )
    .unwrap();
    assert!(helper_of(&steps).contains(&"--macaddress=02:00:00:00:00:01".to_string()));
}

#[test]
fn container_modes_join_the_other_namespaces_instead_of_mapping_ids() {
    let steps = plan(
        &image(),
        &flags(&["--net", "container:web", "--ipc=container:4243"]),
        &joined(Some(4242), Some(4243)),
    )
    .unwrap();
    assert_eq!(
        steps[0],
        Step::JoinNs {
            net: Some(4242),
            ipc: Some(4243)
        }
    );
    assert!(matches!(steps[1], Step::Unshare(f)
        if f & (ns::NEW_USER | ns::NEW_NET | ns::NEW_IPC) == 0 && f & ns::NEW_PID != 0));
    assert!(!steps.iter().any(|s| matches!(s, Step::MapIds { .. })));
    // --ipc alone keeps a network of the mode's own.
    let ipc = plan(
        &image(),
        &flags(&["--ipc=container:7", "--net=none"]),
        &joined(None, Some(7)),
    )
    .unwrap();
    assert!(matches!(ipc[1], Step::Unshare(f) if f & ns::NEW_NET != 0 && f & ns::NEW_IPC == 0));
    assert!(net::joins(&flags(&["--ipc=container:7"])));
    // A name the run did not resolve is never planned as a join of nothing.
    for args in [&["--net=container:web"][..], &["--ipc=container:web"]] {
        let e = plan(&image(), &flags(args), &facts()).unwrap_err();
        assert!(e.to_string().contains("was not looked up"), "{e}");
    }
}

#[test]
fn net_and_ipc_values_are_checked() {
    let err = |args: &[&str]| {
        crate::args::parse(args.iter().map(|s| s.to_string()))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        flags(&["--net=container:web.1"]).net,
        crate::args::NetMode::Container("web.1".into())
    );
    assert_eq!(
        flags(&["--ipc=container:4242"]).ipc_container.as_deref(),
        Some("4242")
    );
    for bad in [
        "--net=container:",
        "--net=container:a/b",
        "--ipc=container:-x",
    ] {
        assert!(
            err(&[bad]).contains("want container:NAME (a container's name or ID) or container:PID"),
            "{bad}"
        );
    }
    assert!(err(&["--ipc=host"]).contains("want private, shareable or container:NAME|ID|PID"));
    assert!(err(&["--net=slirp:mtu=1"]).contains("allow_host_loopback"));
    assert!(err(&["-p", "x"]).starts_with("invalid value 'x' for '-p': 'x' is not a port"));
    assert_eq!(flags(&["--ipc=private"]).ipc_container, None);
    // -p with an explicit network keeps it, whichever comes first.
    assert_eq!(
        flags(&["-p", "1:1", "--net=pasta"]).net,
        crate::args::NetMode::Pasta
    );
    assert_eq!(
        flags(&["--net=host", "-p", "1:1"]).net,
        crate::args::NetMode::Host
    );
}

/// The seed of the plan's overlay step.
fn seeds(steps: &[Step]) -> Vec<Seed> {
    steps
        .iter()
        .find_map(|s| match s {
            Step::Overlay { seed, .. } => Some(seed.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn per_run_files_in_plain_directories_seed_a_fresh_upper_instead_of_being_written_through_it() {
    let mut h = facts();
    h.plain_dirs = vec![
        "/etc".into(),
        "/etc/apt".into(),
        "/etc/apt/apt.conf.d".into(),
    ];
    h.has_apt = true;
    h.shims = vec![shim("/bin/setpriv", true), shim("/usr/sbin/gosu", false)];
    for upper in [Upper::Ram, Upper::Disk("/cache/runs/r1".into())] {
        h.upper = upper;
        let steps = plan(&image(), &flags(&[]), &h).unwrap();
        let paths: Vec<_> = seeds(&steps).into_iter().map(|s| s.path).collect();
        assert_eq!(
            paths,
            [
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/etc/apt/apt.conf.d/00oci2bin-sandbox",
                // The link gets a placeholder to bind onto; the real file needs none.
                "/bin/setpriv",
            ]
            .map(PathBuf::from)
        );
        assert!(!steps.iter().any(|s| matches!(s, Step::WriteFile { .. })));
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::BindSelf { .. }))
                .count(),
            2
        );
    }
    assert_eq!(
        seeds(&plan(&image(), &flags(&[]), &h).unwrap())[0].contents,
        b"0123456789ab\n"
    );
}

#[test]
fn a_persistent_upper_or_a_linked_etc_gets_its_files_written_through_the_overlay() {
    let mut h = facts();
    h.plain_dirs = vec!["/etc".into()];
    h.upper = Upper::Persist("/keep".into());
    let steps = plan(&image(), &flags(&[]), &h).unwrap();
    assert!(seeds(&steps).is_empty());
    assert!(steps
        .iter()
        .any(|s| matches!(s, Step::WriteFile { path, .. } if path == Path::new("/etc/hosts"))));
    // /etc a symlink in the image: not in plain_dirs.
    let mut h = facts();
    h.upper = Upper::Disk("/cache/runs/r1".into());
    let steps = plan(&image(), &flags(&[]), &h).unwrap();
    assert!(seeds(&steps).is_empty());
    assert!(steps
        .iter()
        .any(|s| matches!(s, Step::WriteFile { path, .. } if path == Path::new("/etc/hosts"))));
}

#[test]
fn a_user_mount_over_a_per_run_file_keeps_it_out_of_the_seed() {
    let mut h = facts();
    h.plain_dirs = vec!["/etc".into()];
    h.mount_sources = vec![Ok(false)];
    let steps = plan(&image(), &flags(&["-v", "/srv/hosts:/etc/hosts"]), &h).unwrap();
    let paths: Vec<_> = seeds(&steps).into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["/etc/hostname", "/etc/resolv.conf"].map(PathBuf::from)
    );
}

#[test]
fn cgroupns_is_private_on_request_or_on_a_v2_only_host_and_after_the_cgroup_is_joined() {
    let unshared = |steps: &[Step]| {
        steps
            .iter()
            .position(|s| *s == Step::Unshare(ns::NEW_CGROUP))
    };
    let mut h = facts();
    assert_eq!(unshared(&plan(&image(), &flags(&[]), &h).unwrap()), None);
    let steps = plan(&image(), &flags(&["--cgroupns", "private"]), &h).unwrap();
    let at = unshared(&steps).unwrap();
    // Inside the new user and pid namespaces, before the root is built.
    let fork = steps
        .iter()
        .position(|s| matches!(s, Step::Fork(_)))
        .unwrap();
    let overlay = steps
        .iter()
        .position(|s| matches!(s, Step::Overlay { .. }))
        .unwrap();
    assert!(fork < at && at < overlay);
    h.cgroup_v2_only = true;
    assert!(unshared(&plan(&image(), &flags(&[]), &h).unwrap()).is_some());
    assert_eq!(
        unshared(&plan(&image(), &flags(&["--cgroupns=host"]), &h).unwrap()),
        None
    );
}

#[test]
fn a_detached_tty_pumps_nothing_in_and_needs_no_terminal() {
    // -dit: the pty stays open with no input (as Docker's without an attach); its output goes
    // where the detached run's stdout goes, the log.
    let tty = HostFacts {
        stdin_tty: true,
        ..facts()
    };
    for f in [&tty, &facts()] {
        let steps = plan(&image(), &flags(&["-dit", "sh"]), f).unwrap();
        assert!(steps.contains(&Step::TtyChannel { input: false }));
    }
}

// ---------------------------------------------------------------------------------------------
// VM mode (`--vm`): the host builds the tree and stops there; the guest runs the command.

fn vm_plan(args: &[&str], f: &HostFacts) -> Result<vm::VmPlan, PlanError> {
    vm::plan(&image(), &flags(&[&["--vm"], args].concat()), f)
}

#[test]
fn vm_plan_builds_the_tree_in_a_user_namespace_of_its_own_and_never_pivots() {
    let p = vm_plan(&[], &facts()).unwrap();
    assert_eq!(p.host[0], Step::Unshare(ns::NEW_USER | ns::NEW_NS));
    assert_eq!(
        p.host[1],
        Step::MapIds {
            uid: 0,
            host_uid: 1000,
            gid: 0,
            host_gid: 1000
        }
    );
    assert!(p
        .host
        .iter()
        .any(|s| matches!(s, Step::Overlay { target, .. }
        if target == Path::new("/run/o2b/root"))));
    assert!(!p.host.iter().any(|s| matches!(
        s,
        Step::PivotRoot { .. } | Step::Exec { .. } | Step::Fork(_)
    )));
    assert_eq!(p.root, Path::new("/run/o2b/root"));
    let g = &p.guest;
    assert_eq!(
        g.argv,
        ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
    );
    assert_eq!(g.workdir, Path::new("/srv"));
    assert!(g.env.iter().any(|e| e == "PATH=/opt/bin:/bin"));
    assert_eq!((g.uid, g.gid, g.hostname.as_str()), (0, 0, "0123456789ab"));
    assert_eq!((p.memory_mib, p.cpus), (vm::DEFAULT_MEMORY_MIB, 1));
}

#[test]
fn vm_plan_sizes_the_machine_from_memory_and_cpus() {
    let p = vm_plan(&["--memory", "1g", "--cpus", "1.5"], &facts()).unwrap();
    assert_eq!((p.memory_mib, p.cpus), (1024, 2));
    assert!(matches!(
        vm_plan(&["--memory", "32m"], &facts()),
        Err(PlanError::Vm(m)) if m.contains("at least 64m")
    ));
}

#[test]
fn vm_plan_runs_the_image_user_and_binds_volumes_into_the_exported_tree() {
    let f = HostFacts {
        mount_sources: vec![Ok(true)],
        ..facts()
    };
    let p = vm_plan(&["-u", "app", "-v", "/host/data:/data:ro"], &f).unwrap();
    assert_eq!((p.guest.uid, p.guest.gid), (100, 101));
    assert!(p
        .host
        .iter()
        .any(|s| matches!(s, Step::Mount { root, target, flags, .. }
        if root == Path::new("/run/o2b/root") && target == Path::new("/data")
            && flags & ns::MS_RDONLY != 0)));
    let persist = HostFacts {
        upper: Upper::Persist("/keep".into()),
        ..facts()
    };
    let p = vm_plan(&[], &persist).unwrap();
    assert!(p
        .host
        .iter()
        .any(|s| matches!(s, Step::Overlay { upper, .. }
        if upper == Path::new("/keep/upper"))));
}

#[test]
fn vm_plan_refuses_what_a_vm_cannot_honour_by_name() {
    for (args, needle) in [
        (&["-d"][..], "-d/--name"),
        (&["--net", "slirp"][..], "--net"),
        (&["--net", "host"][..], "--net"),
        (&["--net", "none", "-p", "8080:80"][..], "-p"),
        (&["--cap-add", "NET_ADMIN"][..], "--cap-add"),
        (&["--userns", "map"][..], "--userns"),
        (&["--device", "/dev/fuse"][..], "--device"),
    ] {
        match vm_plan(args, &facts()) {
            Err(PlanError::Vm(m)) => assert!(m.contains(needle), "{args:?}: {m}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    let none = vm_plan(&["--net", "none"], &facts()).unwrap();
    assert!(none.passt.is_none() && none.guest.net.is_none());
}

#[test]
fn vm_plan_gives_the_guest_passt_for_net_passt_and_for_published_ports() {
    for args in [&["--net", "passt"][..], &["-p", "127.0.0.1:8080:80"][..]] {
        let p = vm_plan(args, &facts()).unwrap();
        assert_eq!(p.guest.net, Some(vm::GUEST_NET), "{args:?}");
        let passt = p.passt.unwrap();
        let after = |k: &str| passt[passt.iter().position(|a| a == k).unwrap() + 1].clone();
        assert_eq!(after("--address"), "10.0.2.15");
        assert_eq!(after("--gateway"), "10.0.2.2");
        assert!(passt.contains(&"--one-off".to_string()));
        if args[0] == "-p" {
            assert_eq!(after("--tcp-ports"), "127.0.0.1/8080:80");
        }
    }
}
