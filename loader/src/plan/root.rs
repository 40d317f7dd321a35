//! The namespaces and the root filesystem, up to `pivot_root`: a private overlay on the cached
//! tree, a minimal `/dev`, a fresh `/proc`, a read-only `/sys`, the user-switcher stand-ins.

use super::{masks, mounts, net, HostFacts, IdMode, PlanError, Seed, Step};
use crate::args::Flags;
use crate::init::StopPolicy;
use crate::sys::ns;
use crate::users::User;
use std::path::PathBuf;

/// Where a run's writes go: the overlay's upper and work directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Upper {
    /// On the run's tmpfs (`--tmpfs-upper`; also the fallback when there is no disk place).
    #[default]
    Ram,
    /// `DIR/upper` and `DIR/work` on disk, a per-run directory removed when the run ends; a
    /// file system overlayfs refuses as an upper falls back to RAM with a warning.
    Disk(PathBuf),
    /// `--overlay-persist DIR`: as `Disk`, but kept, and no fallback (the writes must persist).
    Persist(PathBuf),
}

/// Host devices bind-mounted into the container's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The user namespace and the fork into the new pid namespace, whose PID 1 carries on.
pub(super) fn namespaces(
    user: &User,
    facts: &HostFacts,
    flags: &Flags,
    stop: StopPolicy,
    steps: &mut Vec<Step>,
) {
    // Namespaces: the supervisor creates them and stays outside the mount namespace (so it can
    // clean up on the host); its first child is PID 1.
    // A mapped run is in its user namespace already (it was entered to extract the rootfs).
    net::before_unshare(flags, facts, steps);
    // A run that joins another container's namespaces is in that one's user namespace now.
    if facts.ids != IdMode::Single || net::joins(flags) {
        steps.push(Step::Unshare(
            ns::NEW_PID | ns::NEW_UTS | net::ipc_flag(flags) | net::namespace_flags(flags),
        ));
        net::after_unshare(flags, facts, steps);
        steps.push(Step::Fork(stop));
        steps.push(Step::DieWithParent);
        return;
    }
    steps.push(Step::Unshare(
        ns::NEW_USER | ns::NEW_PID | ns::NEW_UTS | ns::NEW_IPC | net::namespace_flags(flags),
    ));
    steps.push(Step::MapIds {
        uid: user.uid,
        host_uid: facts.uid,
        gid: user.gid,
        host_gid: facts.gid,
    });
    net::after_unshare(flags, facts, steps);
    steps.push(Step::Fork(stop));
    steps.push(Step::DieWithParent);
}

/// The root filesystem, built in the child's own mount namespace and pivoted into.
pub(super) fn filesystem(
    facts: &HostFacts,
    flags: &Flags,
    mut seed: Vec<Seed>,
    steps: &mut Vec<Step>,
) -> Result<(), PlanError> {
    // Only a single-uid run needs the stand-ins: with a range, the real programs switch users.
    let shims = match facts.ids {
        IdMode::Single => &facts.shims[..],
        IdMode::Mapped { .. } => &[],
    };
    // A stand-in for a link needs a file of its own to be bound onto: a placeholder in a fresh
    // upper (its directory is a real one: find_shims looks in no other).
    if !matches!(facts.upper, Upper::Persist(_)) {
        seed.extend(shims.iter().filter(|s| s.link).map(|s| Seed {
            path: s.path.clone().into(),
            contents: Vec::new(),
        }));
    }
    steps.push(Step::Unshare(ns::NEW_NS));
    steps.push(Step::MakeRootPrivate);

    let root = overlay_root(facts, flags, seed, steps);
    for d in ["dev", "proc", "sys"] {
        steps.push(Step::RealDir { path: root.join(d) });
    }

    // /dev: a tmpfs with a few host devices, a private devpts and the usual links.
    let dev = root.join("dev");
    steps.push(Step::Tmpfs {
        target: dev.clone(),
        flags: ns::MS_NOSUID | ns::MS_STRICTATIME,
        options: "mode=755,size=65536k".into(),
    });
    steps.push(Step::Mkdir {
        path: dev.join("pts"),
        mode: 0o755,
    });
    steps.push(Step::Mkdir {
        path: dev.join("shm"),
        mode: 0o755,
    });
    for d in DEVICES {
        steps.push(Step::BindFile {
            source: PathBuf::from("/dev").join(d),
            target: dev.join(d),
        });
    }
    steps.push(Step::Devpts {
        target: dev.join("pts"),
    });
    steps.push(Step::Symlink {
        target: "pts/ptmx".into(),
        link: dev.join("ptmx"),
    });
    steps.push(Step::Tmpfs {
        target: dev.join("shm"),
        flags: ns::MS_NOSUID | ns::MS_NODEV | ns::MS_NOEXEC,
        options: "mode=1777,size=65536k".into(),
    });
    // POSIX message queues of the container's own ipc namespace, where Docker mounts them.
    steps.push(Step::Mkdir {
        path: dev.join("mqueue"),
        mode: 0o755,
    });
    steps.push(Step::Mqueue {
        target: dev.join("mqueue"),
    });
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: target.into(),
            link: dev.join(link),
        });
    }
    steps.push(Step::Proc {
        target: root.join("proc"),
    });
    steps.push(Step::SysReadOnly {
        target: root.join("sys"),
    });
    if flags.security.masks() {
        masks::proc_and_sys(&root, steps);
    }
    // Before the pivot: the loader's own file is reachable (and bindable) only from here.
    for s in shims {
        steps.push(Step::BindSelf {
            root: root.clone(),
            path: s.path.clone(),
        });
    }
    // The user's mounts last, so they may cover anything above (as Docker's do).
    mounts::user_mounts(&root, &flags.mounts, facts, steps)?;
    steps.push(Step::Hostname(facts.hostname.clone()));
    steps.push(Step::PivotRoot { new_root: root });
    Ok(())
}

/// The root: an overlay of the cached tree whose upper and work dirs are on disk (as Docker's
/// writable layer), or on a private tmpfs at the scratch dir that also holds the mount point.
/// Returns the mount point. VM mode builds its exported tree the same way.
pub(super) fn overlay_root(
    facts: &HostFacts,
    flags: &Flags,
    seed: Vec<Seed>,
    steps: &mut Vec<Step>,
) -> PathBuf {
    let scratch = &facts.scratch;
    let root = scratch.join("root");
    let mut options = String::from("mode=755");
    if let Some(size) = flags.tmpfs_upper.as_deref().filter(|s| !s.is_empty()) {
        options = format!("{options},{size}");
    }
    steps.push(Step::Tmpfs {
        target: scratch.clone(),
        flags: 0,
        options,
    });
    let ram = (scratch.join("upper"), scratch.join("work"));
    let (upper, work, ram) = match &facts.upper {
        Upper::Ram => {
            for d in [&ram.0, &ram.1] {
                steps.push(Step::Mkdir {
                    path: d.clone(),
                    mode: 0o755,
                });
            }
            (ram.0, ram.1, None)
        }
        Upper::Disk(d) => (d.join("upper"), d.join("work"), Some(ram)),
        Upper::Persist(d) => (d.join("upper"), d.join("work"), None),
    };
    steps.push(Step::Mkdir {
        path: root.clone(),
        mode: 0o755,
    });
    steps.push(Step::Overlay {
        lower: facts.rootfs.clone(),
        upper,
        work,
        target: root.clone(),
        ram,
        seed,
    });
    root
}
