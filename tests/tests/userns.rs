//! R7, full uid ranges: as an unprivileged user with a subordinate range (o2btest gets
//! 100000-165535 from `tests/setup-test-user.sh`) and Debian's setuid newuidmap/newgidmap, a run
//! maps root to the user and 1..65536 to the range, as rootless podman does; files keep their
//! image owners, chown/setpriv/su work for real. Without a range (o2btest-norange), or with
//! `--userns single`, it is the single-uid mode; `oci2bin cache rm|prune` remove mapped entries.

use e2e::{fixtures, text, Runner};
use std::path::Path;

/// The test user's first range in /etc/subuid, if any.
fn subuid_of(r: &Runner) -> Option<(u32, u32)> {
    let name = text(
        &std::process::Command::new("id")
            .args(["-nu", &r.uid().to_string()])
            .output()
            .ok()?
            .stdout,
    );
    let subuid = std::fs::read_to_string("/etc/subuid").ok()?;
    let (name, uid) = (name.trim().to_string(), r.uid().to_string());
    subuid.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() == 3 && (f[0] == name || f[0] == uid))
            .then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?)))
            .flatten()
    })
}

/// Whether the machine can run mapped: user namespaces, newuidmap, and a range for the test
/// user (skip with the reason otherwise, or fail under `OCI2BIN_E2E_MUST_WORK=1`).
fn mapped_ready(r: &Runner) -> Option<(u32, u32)> {
    if !e2e::runner::userns() {
        return None;
    }
    let helpers = e2e::have("newuidmap") && e2e::have("newgidmap");
    if !e2e::require(
        helpers,
        "newuidmap/newgidmap missing (Debian package uidmap)",
    ) {
        return None;
    }
    let range = subuid_of(r);
    if !e2e::require(
        range.is_some(),
        "the test user has no /etc/subuid range (tests/setup-test-user.sh gives one as root)",
    ) {
        return None;
    }
    range
}

fn uid_map_of(r: &Runner, file: &Path, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.extend(["cat", "/proc/self/uid_map"]);
    let out = r.ok(file, &a);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn debian_with_a_range_keeps_owners_and_switches_users_for_real() {
    let r = Runner::new();
    let Some((start, count)) = mapped_ready(&r) else {
        return;
    };
    let d = fixtures::debian_bin();
    let uid = r.uid();
    assert_eq!(
        uid_map_of(&r, d, &[]),
        format!("0 {uid} 1\n1 {start} {count}")
    );
    // Owners and modes as the layer gave them: _apt (42) owns apt's partial dir, su is setuid.
    assert_eq!(
        r.ok(
            d,
            &["stat", "-c", "%u:%g", "/var/cache/apt/archives/partial"]
        ),
        "42:0\n"
    );
    assert_eq!(
        r.ok(d, &["stat", "-c", "%A", "/usr/bin/su"]),
        "-rwsr-xr-x\n"
    );
    // chown to any id of the range, a real setpriv switch, su through PAM and initgroups.
    assert_eq!(
        r.ok(
            d,
            &[
                "sh",
                "-c",
                "touch /tmp/x && chown 1234:1234 /tmp/x && stat -c %u:%g /tmp/x"
            ]
        ),
        "1234:1234\n"
    );
    assert_eq!(
        r.ok(
            d,
            &[
                "setpriv",
                "--reuid=1000",
                "--regid=1000",
                "--clear-groups",
                "id",
                "-u"
            ]
        ),
        "1000\n"
    );
    assert_eq!(
        r.ok(d, &["su", "-s", "/bin/sh", "-c", "id -u; id -G", "_apt"]),
        "42\n65534\n"
    );
    // No single-uid patches: apt's own sandbox config, the real setpriv, no invented users.
    assert_eq!(
        r.run(d, &["test", "-e", "/etc/apt/apt.conf.d/00oci2bin-sandbox"])
            .status
            .code(),
        Some(1)
    );
    let o = r.run(
        d,
        &[
            "apt-get",
            "-s",
            "-o",
            "Debug::NoLocking=1",
            "install",
            "nothing-at-all",
        ],
    );
    assert!(
        !text(&o.stderr).contains("setgroups"),
        "{}",
        text(&o.stderr)
    );
    // --user switches with setgroups/setgid/setuid: the image's groups of the user apply.
    assert_eq!(r.ok(d, &["-u", "_apt", "id", "-u"]), "42\n");
    assert_eq!(r.ok(d, &["-u", "1234:1234", "id", "-u"]), "1234\n");
    assert_eq!(
        r.run(d, &["-u", "1234", "whoami"]).status.code(),
        Some(1),
        "no passwd entry is invented for an unknown uid in a mapped run"
    );
}

#[test]
fn busybox_with_a_range_maps_it_and_chowns() {
    let r = Runner::new();
    let Some((start, count)) = mapped_ready(&r) else {
        return;
    };
    let b = fixtures::busybox_bin();
    let uid = r.uid();
    assert_eq!(
        uid_map_of(&r, b, &["--userns=map"]),
        format!("0 {uid} 1\n1 {start} {count}")
    );
    assert_eq!(
        r.ok(
            b,
            &[
                "sh",
                "-c",
                "touch /tmp/x && chown 1234:1234 /tmp/x && stat -c %u:%g /tmp/x"
            ]
        ),
        "1234:1234\n"
    );
    assert_eq!(r.ok(b, &["stat", "-c", "%u:%g", "/bin/busybox"]), "0:0\n");
}

#[test]
fn keep_id_maps_the_caller_to_itself_with_the_range_around() {
    let r = Runner::new();
    let Some((start, count)) = mapped_ready(&r) else {
        return;
    };
    let d = fixtures::debian_bin();
    let uid = r.uid();
    let map = uid_map_of(&r, d, &["--userns=keep-id"]);
    assert!(map.contains(&format!("{uid} {uid} 1")), "{map}");
    assert!(map.starts_with(&format!("0 {start} ")), "{map}");
    assert!(
        count > uid,
        "the range is bigger than the uid in these tests"
    );
    assert_eq!(
        r.ok(d, &["--userns=keep-id", "id", "-u"]),
        format!("{uid}\n")
    );
    assert_eq!(
        r.ok(
            d,
            &[
                "--userns=keep-id",
                "-u",
                "0",
                "stat",
                "-c",
                "%u",
                "/usr/bin/su"
            ]
        ),
        "0\n"
    );
}

#[test]
fn single_uid_mode_when_forced_or_without_a_range() {
    let r = Runner::new();
    if !e2e::runner::userns() {
        return;
    }
    let d = fixtures::debian_bin();
    let uid = r.uid();
    // Forced: one id, today's patches (apt's sandbox user is root).
    assert_eq!(
        uid_map_of(&r, d, &["--userns=single"]),
        format!("0 {uid} 1")
    );
    assert_eq!(
        r.ok(
            d,
            &[
                "--userns=single",
                "cat",
                "/etc/apt/apt.conf.d/00oci2bin-sandbox"
            ]
        ),
        "APT::Sandbox::User \"root\";\n"
    );
    // A user with no range: auto is the single-uid mode, without a word; map insists.
    let Some(n) = Runner::for_user("o2btest-norange") else {
        eprintln!("SKIP: the range-less part needs root and tests/setup-test-user.sh");
        return;
    };
    let nuid = n.uid();
    let o = n.run(d, &["cat", "/proc/self/uid_map"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stderr), "", "auto without a range says nothing");
    let map: Vec<String> = text(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(map, ["0", &nuid.to_string(), "1"]);
    let o = n.run(d, &["--userns=map", "true"]);
    assert_eq!(o.status.code(), Some(125));
    e2e::assert_one_line_error(
        &o,
        "--userns map needs a subordinate id range: /etc/subuid has no range for o2btest-norange",
    );
}

/// Entries of a mapped run hold files of subordinate ids (the test user cannot remove them
/// itself): `oci2bin cache rm` and `prune --all` do, as that user, leaving nothing behind.
#[test]
fn cache_rm_and_prune_remove_mapped_entries_as_the_user() {
    // Merged entries, whose trees hold the files (a stacked one's are in its layers).
    let r = Runner::new().with_env("OCI2BIN_ROOTFS", "merged");
    if mapped_ready(&r).is_none() {
        return;
    }
    let d = fixtures::debian_bin();
    let entries = |r: &Runner| r.files_under_cache("rootfs");
    let oci2bin = e2e::oci2bin();
    r.ok(d, &["true"]);
    let e = entries(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    // The mapped entry has files the host user does not own.
    let partial = e[0].join("var/cache/apt/archives/partial");
    use std::os::unix::fs::MetadataExt;
    assert_ne!(std::fs::metadata(&partial).unwrap().uid(), r.uid());
    let key = e[0].file_name().unwrap().to_string_lossy()[..12].to_string();
    let out = r.run(&oci2bin, &["cache", "rm", &key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(entries(&r), Vec::<std::path::PathBuf>::new());
    assert_eq!(r.files_under_cache("tmp"), Vec::<std::path::PathBuf>::new());
    // Again, with prune --all, next to a single-uid entry of the same image.
    r.ok(d, &["true"]);
    r.ok(d, &["--userns=single", "true"]);
    assert_eq!(entries(&r).len(), 2, "a mapped and a single-uid entry");
    let out = r.run(&oci2bin, &["cache", "prune", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(entries(&r), Vec::<std::path::PathBuf>::new());
    assert_eq!(r.files_under_cache("tmp"), Vec::<std::path::PathBuf>::new());
}

/// The layers of a mapped run's stacked entry hold the files of subordinate ids (their keys
/// include the map): `oci2bin cache rm` and `prune --all` remove them too, as the user, through
/// the mapped remover.
#[test]
fn cache_rm_and_prune_remove_mapped_layers_as_the_user() {
    let r = Runner::new();
    if mapped_ready(&r).is_none() {
        return;
    }
    let d = fixtures::debian_bin();
    let oci2bin = e2e::oci2bin();
    r.ok(d, &["true"]);
    let entries = r.files_under_cache("rootfs");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if !e2e::require(
        name.ends_with("-s1"),
        "the kernel cannot stack this mapped image: no layers to remove",
    ) {
        return;
    }
    // A layer holds a directory the host user does not own (`_apt`'s, mapped).
    use std::os::unix::fs::MetadataExt;
    let layers = || r.files_under_cache("layers");
    let foreign = layers().into_iter().any(|l| {
        std::fs::metadata(l.join("tree/var/cache/apt/archives/partial"))
            .is_ok_and(|m| m.uid() != r.uid())
    });
    assert!(foreign, "no layer with a subordinate owner: {:?}", layers());
    let n = layers().len();
    let out = r.run(&oci2bin, &["cache", "rm", &name[..12]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("removed layer ").count(), n);
    for sub in ["rootfs", "layers", "tmp"] {
        assert_eq!(r.files_under_cache(sub), Vec::<std::path::PathBuf>::new());
    }
    // Again, with prune --all.
    r.ok(d, &["true"]);
    assert_eq!(layers().len(), n);
    let out = r.run(&oci2bin, &["cache", "prune", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for sub in ["rootfs", "layers", "tmp"] {
        assert_eq!(r.files_under_cache(sub), Vec::<std::path::PathBuf>::new());
    }
}
