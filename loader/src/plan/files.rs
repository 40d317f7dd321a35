//! Per-run files, written into the private overlay after `pivot_root` (container paths): the
//! hostname, hosts and resolv.conf, and the single-uid patches (passwd/group entries, apt's
//! sandbox user). Never written into the cache.

use super::root::Upper;
use super::{net, HostFacts, IdMode, Seed, Step};
use crate::args::Flags;
use crate::patch;
use crate::users::User;

/// The files every run writes into its private copy.
pub(super) fn per_run(facts: &HostFacts, flags: &Flags, user: &User, steps: &mut Vec<Step>) {
    steps.push(Step::Mkdir {
        path: "/etc".into(),
        mode: 0o755,
    });
    steps.push(Step::WriteFile {
        path: "/etc/hostname".into(),
        contents: format!("{}\n", facts.hostname).into_bytes(),
    });
    steps.push(Step::WriteFile {
        path: "/etc/hosts".into(),
        contents: net::hosts_file(&facts.hostname, flags, facts.gateway.as_deref()),
    });
    if let Some(resolv) = net::resolv_conf(facts.resolv_conf.as_deref(), flags) {
        steps.push(Step::WriteFile {
            path: "/etc/resolv.conf".into(),
            contents: resolv,
        });
    }
    // With a range, the image's users are real: no entries invented, no apt sandbox patch.
    // keep-id adds the caller's entry as podman does (the default user then has one).
    // With one uid, only root gets an entry when it has none (scratch images): any other uid
    // without one stays nameless, as under Docker (`-u 1234`: `whoami` fails, `id` shows no
    // name).
    let add_user = match facts.ids {
        IdMode::Single => user.uid == 0,
        IdMode::Mapped { keep_id: true } => true,
        IdMode::Mapped { keep_id: false } => false,
    };
    let host_user = facts
        .env
        .iter()
        .find(|(k, _)| k == "USER")
        .and_then(|(_, v)| v.to_str());
    let passwd = patch::passwd_addition(facts.passwd.as_deref(), user, host_user);
    if let Some(add) = passwd.filter(|_| add_user) {
        steps.push(Step::AppendFile {
            path: "/etc/passwd".into(),
            contents: add,
        });
    }
    let group = patch::group_addition(facts.group.as_deref(), user.gid, host_user);
    if let Some(add) = group.filter(|_| add_user) {
        steps.push(Step::AppendFile {
            path: "/etc/group".into(),
            contents: add,
        });
    }
    if facts.has_apt && facts.ids == IdMode::Single {
        steps.push(Step::Mkdir {
            path: "/etc/apt/apt.conf.d".into(),
            mode: 0o755,
        });
        steps.push(Step::WriteFile {
            path: patch::APT_SANDBOX_CONF.into(),
            contents: patch::APT_SANDBOX_TEXT.into(),
        });
    }
}

/// Takes out of `files` the writes that can go straight into a fresh upper layer: those into a
/// directory with no symlink on the way ([`HostFacts::plain_dirs`]). A persistent upper is not
/// fresh (it may hold anything), so its files are written through the overlay as before.
pub(super) fn seeds(facts: &HostFacts, files: &mut Vec<Step>) -> Vec<Seed> {
    if matches!(facts.upper, Upper::Persist(_)) {
        return Vec::new();
    }
    let plain = |p: &std::path::Path| {
        p.parent()
            .and_then(|d| d.to_str())
            .is_some_and(|d| facts.plain_dirs.iter().any(|x| x == d))
    };
    let mut seeds = Vec::new();
    files.retain(|s| match s {
        Step::WriteFile { path, contents } if plain(path) => {
            seeds.push(Seed {
                path: path.clone(),
                contents: contents.clone(),
            });
            false
        }
        _ => true,
    });
    seeds
}
