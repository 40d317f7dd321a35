//! The network: which namespace (`--net`), its loopback, and the files that name hosts and
//! servers (`--hostname`, `--dns*`, `--add-host`). `--ip` and `--mac-address` are refused with
//! the mode's reason, as Docker refuses them where the network has no address of its own.

use super::{PlanError, Step};
use crate::args::{Flags, HostAddr, NetMode};
use crate::sys::ns;

/// Namespace flags the network mode adds to the first `unshare`.
pub(super) fn namespace_flags(flags: &Flags) -> i32 {
    match flags.net {
        NetMode::Host => 0,
        NetMode::None => ns::NEW_NET,
    }
}

/// Refuses flags the mode cannot honour.
pub(super) fn check(flags: &Flags) -> Result<(), PlanError> {
    let refuse = |option: &'static str| PlanError::Network {
        option,
        mode: flags.net.name(),
        why: "the container has no network interface of its own to configure",
    };
    if flags.ip.is_some() {
        return Err(refuse("--ip"));
    }
    if flags.mac_address.is_some() {
        return Err(refuse("--mac-address"));
    }
    if flags.net == NetMode::None && flags.add_hosts.iter().any(|h| h.addr == HostAddr::Gateway) {
        return Err(PlanError::Network {
            option: "--add-host NAME:host-gateway",
            mode: "none",
            why: "the container cannot reach the host",
        });
    }
    Ok(())
}

/// Steps right after the user namespace exists (we hold CAP_NET_ADMIN over a new network
/// namespace only there): `lo` up, as Docker's `--net none` leaves it, and unprivileged ICMP
/// sockets for every group, as Docker sets `net.ipv4.ping_group_range` in its networks.
pub(super) fn after_unshare(flags: &Flags, steps: &mut Vec<Step>) {
    if flags.net == NetMode::None {
        steps.push(Step::LoopbackUp);
        steps.push(Step::PingGroupRange);
    }
}

/// `/etc/resolv.conf`: the host's, with `--dns` replacing its name servers and `--dns-search`
/// / `--dns-option` its search and options lines, as Docker merges them.
pub(super) fn resolv_conf(host: Option<&[u8]>, flags: &Flags) -> Option<Vec<u8>> {
    if flags.dns.is_empty() && flags.dns_search.is_empty() && flags.dns_options.is_empty() {
        return host.map(<[u8]>::to_vec);
    }
    let host = String::from_utf8_lossy(host.unwrap_or_default());
    let keep = |key: &str| {
        host.lines()
            .filter(move |l| l.split_whitespace().next() == Some(key))
            .map(|l| format!("{}\n", l.trim()))
            .collect::<String>()
    };
    // Docker's order: search, name servers, options.
    let mut out = String::new();
    // `--dns-search .` means no search domains at all.
    let search: Vec<&str> = flags
        .dns_search
        .iter()
        .map(String::as_str)
        .filter(|s| *s != ".")
        .collect();
    if flags.dns_search.is_empty() {
        out += &keep("search");
        out += &keep("domain");
    } else if !search.is_empty() {
        out += &format!("search {}\n", search.join(" "));
    }
    if flags.dns.is_empty() {
        out += &keep("nameserver");
    } else {
        for d in &flags.dns {
            out += &format!("nameserver {d}\n");
        }
    }
    if flags.dns_options.is_empty() {
        out += &keep("options");
    } else {
        out += &format!("options {}\n", flags.dns_options.join(" "));
    }
    Some(out.into_bytes())
}

/// `/etc/hosts`: localhost, the container's own name, then each `--add-host`.
pub(super) fn hosts_file(hostname: &str, flags: &Flags) -> Vec<u8> {
    let mut s = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.0.1\t{hostname}\n"
    );
    for h in &flags.add_hosts {
        // With the host's own network, the host is this machine: loopback.
        let ip = match &h.addr {
            HostAddr::Ip(ip) => ip,
            HostAddr::Gateway => "127.0.0.1",
        };
        s += &format!("{ip}\t{}\n", h.name);
    }
    s.into_bytes()
}
