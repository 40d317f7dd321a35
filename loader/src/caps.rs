//! Linux capabilities by name, and Docker's default set: shared by the seccomp compiler (a
//! profile's `includes.caps`), the runtime flags (`--cap-add`, `--cap-drop`) and the packager.

/// `capability.h` order: the index is the capability's number.
pub const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A set of capabilities, bit N for capability N.
pub type CapSet = u64;

/// Every capability this table names.
pub const ALL: CapSet = (1 << NAMES.len()) - 1;

/// Docker's default set (moby `caps.DefaultCapabilities`), as bits.
pub const DOCKER_DEFAULT: CapSet = bit(0) // CHOWN
    | bit(1) // DAC_OVERRIDE
    | bit(3) // FOWNER
    | bit(4) // FSETID
    | bit(5) // KILL
    | bit(6) // SETGID
    | bit(7) // SETUID
    | bit(8) // SETPCAP
    | bit(10) // NET_BIND_SERVICE
    | bit(13) // NET_RAW
    | bit(18) // SYS_CHROOT
    | bit(27) // MKNOD
    | bit(29) // AUDIT_WRITE
    | bit(31); // SETFCAP

const fn bit(n: u32) -> CapSet {
    1 << n
}

/// A capability's number from its name: with or without `CAP_`, any case (as Docker takes
/// them).
pub fn number(name: &str) -> Option<u32> {
    let up = name.to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// `CAP_NAME` of capability `n`.
pub fn name(n: u32) -> String {
    match NAMES.get(n as usize) {
        Some(s) => format!("CAP_{s}"),
        None => format!("CAP_{n}"),
    }
}

/// Applies Docker's `--cap-add`/`--cap-drop` rules to `base` (moby `caps.TweakCapabilities`):
/// `ALL` in the drops empties the set first, then additions apply (`ALL` adds everything), then
/// the other drops. An unknown name is an error naming it.
pub fn tweak(base: CapSet, add: &[String], drop: &[String]) -> Result<CapSet, String> {
    let set_of = |names: &[String]| -> Result<(CapSet, bool), String> {
        let mut set = 0;
        let mut all = false;
        for n in names {
            if n.eq_ignore_ascii_case("ALL") {
                all = true;
            } else {
                let c = number(n).ok_or_else(|| format!("unknown capability '{n}'"))?;
                set |= 1 << c;
            }
        }
        Ok((set, all))
    };
    let (added, add_all) = set_of(add)?;
    let (dropped, drop_all) = set_of(drop)?;
    let mut caps = if drop_all { 0 } else { base };
    caps |= if add_all { ALL } else { added };
    // A capability both added and dropped by name stays added, as with Docker.
    Ok(caps & !(dropped & !added))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_any_case_with_or_without_the_prefix() {
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("Cap_Net_Raw"), Some(13));
        assert_eq!(number("NOPE"), None);
        assert_eq!(name(21), "CAP_SYS_ADMIN");
        assert_eq!(NAMES.len(), 41);
    }

    #[test]
    fn docker_default_set_has_fourteen_capabilities() {
        assert_eq!(DOCKER_DEFAULT.count_ones(), 14);
        // Its /proc/self/status form, as `docker run busybox grep CapBnd /proc/self/status`.
        assert_eq!(format!("{DOCKER_DEFAULT:016x}"), "00000000a80425fb");
    }

    #[test]
    fn cap_add_and_drop_follow_docker() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = |a: &[&str], d: &[&str]| tweak(DOCKER_DEFAULT, &s(a), &s(d));
        assert_eq!(t(&[], &["ALL"]).unwrap(), 0);
        assert_eq!(t(&["NET_ADMIN"], &["all"]).unwrap(), 1 << 12);
        assert_eq!(t(&["ALL"], &[]).unwrap(), ALL);
        assert_eq!(t(&["ALL"], &["SYS_ADMIN"]).unwrap(), ALL & !(1 << 21));
        assert_eq!(t(&[], &["chown"]).unwrap(), DOCKER_DEFAULT & !1);
        assert_eq!(t(&["chown"], &["chown"]).unwrap(), DOCKER_DEFAULT);
        assert_eq!(
            t(&["CAP_BOGUS"], &[]).unwrap_err(),
            "unknown capability 'CAP_BOGUS'"
        );
    }
}
