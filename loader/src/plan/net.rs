//! The network: which namespace (`--net`), its loopback, the helper that connects it (slirp4netns
//! or passt's `pasta`, run as they are), published ports (`-p`), joined namespaces
//! (`--net container:NAME`, `--ipc container:NAME`), and the files that name hosts and servers
//! (`--hostname`, `--dns*`, `--add-host`). `--ip` and `--mac-address` are honoured where the
//! helper can set them, and refused with the mode's reason elsewhere.

use super::{HostFacts, IdMode, PlanError, Step};
use crate::args::{Flags, HostAddr, NetMode, Userns};
use crate::sys::ns;
use std::path::PathBuf;

/// slirp4netns's network as rootless podman sets it up: the container is 10.0.2.100/24, the
/// gateway (the host) 10.0.2.2, the DNS forwarder 10.0.2.3.
pub const SLIRP_GATEWAY: &str = "10.0.2.2";
pub const SLIRP_DNS: &str = "10.0.2.3";
const SLIRP_MTU: &str = "65520";
/// The address pasta answers DNS on (`--dns-forward`), as podman picks it.
pub const PASTA_DNS: &str = "169.254.1.1";

/// One published port (`-p`): host `ip:host` forwards to the container's `ctr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The host address to bind; `None` for every address (Docker's 0.0.0.0).
    pub ip: Option<String>,
    /// 0 until a free port is chosen (`-p CTR`, `-p IP::CTR`: see [`crate::host::free_ports`]).
    pub host: u16,
    pub ctr: u16,
    pub udp: bool,
}

/// A network helper to start (see [`Step::NetHelper`]). `{pid}` in `argv` stands for the
/// supervisor's PID, which is in the container's namespaces once they exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    pub argv: Vec<String>,
    pub ready: Ready,
}

/// How we know the helper has configured the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It writes to descriptor 3 (slirp4netns `--ready-fd=3`).
    Fd3,
    /// A default route appears in the namespace (pasta `--config-net` adds it last).
    /// Descriptor 3 of the helper is the namespace (`--netns /proc/self/fd/3`): pasta sandboxes
    /// itself before it opens the path, and `/proc/PID/ns/net` is then out of its reach.
    Route,
}

/// `--net VALUE`. `Err(None)`: not a mode at all; `Err(Some(why))`: a mode with a bad option.
pub fn mode(v: &str) -> Result<NetMode, Option<String>> {
    Ok(match v {
        "host" => NetMode::Host,
        "none" => NetMode::None,
        "slirp" | "slirp4netns" => NetMode::Slirp {
            host_loopback: false,
        },
        "pasta" | "passt" => NetMode::Pasta,
        _ => {
            if let Some(pid) = v.strip_prefix("container:") {
                return container(pid).map(NetMode::Container);
            }
            // podman's spelling of the one slirp option we take.
            let opts = v
                .strip_prefix("slirp4netns:")
                .or_else(|| v.strip_prefix("slirp:"))
                .ok_or(None)?;
            match opts {
                "allow_host_loopback=true" => NetMode::Slirp {
                    host_loopback: true,
                },
                "allow_host_loopback=false" => NetMode::Slirp {
                    host_loopback: false,
                },
                _ => {
                    return Err(Some(
                        "slirp takes only allow_host_loopback=true|false".into(),
                    ))
                }
            }
        }
    })
}

/// `container:X`: a container's name, ID or unique ID prefix, or a PID (any process of yours),
/// kept as given: [`crate::lifecycle::peers`] resolves it before the plan ([`Peers`]).
pub fn container(v: &str) -> Result<String, Option<String>> {
    if crate::containers::valid_name(v) {
        return Ok(v.to_string());
    }
    Err(Some(format!(
        "container:{v}: want container:NAME (a container's name or ID) or container:PID"
    )))
}

/// The host pids whose namespaces `--net container:X` and `--ipc container:X` join: X's PID 1
/// for a running container X, else the process X.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peers {
    pub net: Option<u32>,
    pub ipc: Option<u32>,
}

/// `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]`, ranges `A-B` on both sides of equal length.
pub fn publish(v: &str) -> Result<Vec<Publish>, String> {
    let (spec, udp) = match v.rsplit_once('/') {
        Some((s, "tcp")) => (s, false),
        Some((s, "udp")) => (s, true),
        Some((_, p)) => return Err(format!("unknown protocol '{p}': want tcp or udp")),
        None => (v, false),
    };
    // An IPv6 host address comes in brackets: [::1]:8080:80.
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(s) => {
            let (ip, rest) = s
                .split_once("]:")
                .ok_or("unclosed '[' around the address")?;
            (Some(ip), rest)
        }
        None => match spec.matches(':').count() {
            2 => {
                let (ip, rest) = spec.split_once(':').unwrap_or_default();
                (Some(ip), rest)
            }
            _ => (None, spec),
        },
    };
    if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
        if !crate::args::is_ip(ip) {
            return Err(format!("'{ip}' is not an IP address"));
        }
    }
    let ip = ip.filter(|ip| !ip.is_empty()).map(str::to_string);
    // `CTR` and `IP::CTR`: a free host port for each, chosen when the run starts.
    let (host, ctr) = rest.split_once(':').unwrap_or(("", rest));
    let range = |r: &str| -> Result<(u16, u16), String> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("'{p}' is not a port (1-65535)")),
        };
        let (a, b) = (port(a)?, port(b)?);
        if a > b {
            return Err(format!("range {r} ends before it starts"));
        }
        Ok((a, b))
    };
    let c = range(ctr)?;
    let h = if host.is_empty() {
        (0, 0)
    } else {
        range(host)?
    };
    if h.0 > 0 && h.1 - h.0 != c.1 - c.0 {
        return Err("the host and container ranges differ in length".into());
    }
    Ok((0..=c.1 - c.0)
        .map(|i| Publish {
            ip: ip.clone(),
            host: if h.0 > 0 { h.0 + i } else { 0 },
            ctr: c.0 + i,
            udp,
        })
        .collect())
}

/// The ports a run publishes: those of `-p` where a helper forwards them (`--net slirp|pasta`).
pub fn published(flags: &Flags) -> &[Publish] {
    match flags.net {
        NetMode::Slirp { .. } | NetMode::Pasta => &flags.publish,
        _ => &[],
    }
}

/// The host's IPv4 default gateway from `/proc/net/route` text (pasta copies the host's routes,
/// so `host-gateway` is that address there).
pub fn default_gateway(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" {
            return None;
        }
        // Little-endian hex, as the kernel prints it.
        let g = u32::from_str_radix(f[2], 16).ok()?.to_le_bytes();
        Some(format!("{}.{}.{}.{}", g[0], g[1], g[2], g[3]))
    })
}

/// Whether the run joins another process's namespaces.
pub fn joins(flags: &Flags) -> bool {
    matches!(flags.net, NetMode::Container(_)) || flags.ipc_container.is_some()
}

/// Namespace flags the network mode adds to the first `unshare`.
pub(super) fn namespace_flags(flags: &Flags) -> i32 {
    match flags.net {
        NetMode::Host | NetMode::Container(_) => 0,
        NetMode::None | NetMode::Slirp { .. } | NetMode::Pasta => ns::NEW_NET,
    }
}

/// Refuses flags the mode cannot honour.
pub(super) fn check(flags: &Flags, facts: &HostFacts) -> Result<(), PlanError> {
    let mode = flags.net.name();
    let refuse = |option: &'static str, why: &'static str| PlanError::Network { option, mode, why };
    let unresolved = "the container was not looked up before the plan";
    if matches!(flags.net, NetMode::Container(_)) && facts.peers.net.is_none() {
        return Err(refuse("--net", unresolved));
    }
    if flags.ipc_container.is_some() && facts.peers.ipc.is_none() {
        return Err(refuse("--ipc", unresolved));
    }
    if published(flags).iter().any(|p| p.host == 0) {
        return Err(refuse("-p", "no free host port was chosen before the plan"));
    }
    let own = "the container has no network interface of its own to configure";
    match flags.net {
        NetMode::Pasta => {}
        NetMode::Slirp { .. } if flags.ip.is_some() => {
            return Err(refuse(
                "--ip",
                "slirp4netns always gives the container 10.0.2.100 (--net pasta can set it)",
            ))
        }
        NetMode::Slirp { .. } => {}
        _ if flags.ip.is_some() => return Err(refuse("--ip", own)),
        _ if flags.mac_address.is_some() => return Err(refuse("--mac-address", own)),
        _ => {}
    }
    if let Some(ip) = &flags.ip {
        if ip.contains(':') || !crate::args::is_ip(ip) {
            return Err(PlanError::Network {
                option: "--ip",
                mode,
                why: "want an IPv4 address",
            });
        }
    }
    if let Some(mac) = &flags.mac_address {
        let ok = mac.split(':').count() == 6
            && mac
                .split(':')
                .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(refuse(
                "--mac-address",
                "want six hex bytes, e.g. 02:42:ac:11:00:02",
            ));
        }
    }
    if !flags.publish.is_empty() {
        match flags.net {
            NetMode::None => {
                return Err(refuse(
                    "-p",
                    "the container has no network to forward ports to",
                ))
            }
            NetMode::Container(_) => {
                return Err(refuse(
                    "-p",
                    "ports are published by the container that owns the network",
                ))
            }
            _ => {}
        }
    }
    let gateway = flags.add_hosts.iter().any(|h| h.addr == HostAddr::Gateway);
    match flags.net {
        NetMode::None if gateway => {
            return Err(refuse(
                "--add-host NAME:host-gateway",
                "the container cannot reach the host",
            ))
        }
        NetMode::Container(_) if gateway => {
            return Err(refuse(
                "--add-host NAME:host-gateway",
                "the gateway is the other container's",
            ))
        }
        _ => {}
    }
    if joins(flags) && matches!(flags.userns, Userns::Map | Userns::KeepId) {
        return Err(PlanError::Network {
            option: "--userns map|keep-id",
            mode,
            why: "a container that joins another one runs in that one's user namespace",
        });
    }
    Ok(())
}

/// Steps before the namespaces exist: the helper starts (and waits) in the host's namespaces,
/// or another process's namespaces are joined (its user namespace first). `-p` with the host's
/// network is ignored with a warning, as Docker does.
pub(super) fn before_unshare(flags: &Flags, facts: &HostFacts, steps: &mut Vec<Step>) {
    if flags.net == NetMode::Host && !flags.publish.is_empty() {
        steps.push(Step::Warn(
            "published ports are discarded when using host network mode".into(),
        ));
    }
    if let Some(h) = helper(flags, facts) {
        steps.push(Step::NetHelper(h));
    }
    if joins(flags) {
        steps.push(Step::JoinNs {
            net: facts.peers.net,
            ipc: facts.peers.ipc,
        });
    }
}

/// The IPC namespace flag for the first `unshare`: none when another one is joined.
pub(super) fn ipc_flag(flags: &Flags) -> i32 {
    match flags.ipc_container {
        Some(_) => 0,
        None => ns::NEW_IPC,
    }
}

/// The helper's command line, for the modes that have one.
fn helper(flags: &Flags, facts: &HostFacts) -> Option<Helper> {
    // In a mapped run we are already in the user namespace that will own the network
    // namespace; a single-uid run creates it, so the helper must join it.
    let mapped = facts.ids != IdMode::Single;
    let mut argv: Vec<String> = Vec::new();
    let mut arg = |a: &str| argv.push(a.to_string());
    let ready = match flags.net {
        NetMode::Slirp { host_loopback } => {
            for a in [
                "slirp4netns",
                "--configure",
                "--mtu",
                SLIRP_MTU,
                "--ready-fd=3",
            ] {
                arg(a);
            }
            if !host_loopback {
                arg("--disable-host-loopback");
            }
            if let Some(mac) = &flags.mac_address {
                arg(&format!("--macaddress={mac}"));
            }
            if !flags.publish.is_empty() {
                arg("--api-socket");
                arg(&api_socket(facts).to_string_lossy());
            }
            if !mapped {
                arg("--userns-path=/proc/{pid}/ns/user");
            }
            arg("{pid}");
            arg("tap0");
            Ready::Fd3
        }
        NetMode::Pasta => {
            for a in ["pasta", "--foreground", "--quiet", "--config-net"] {
                arg(a);
            }
            arg("--dns-forward");
            arg(PASTA_DNS);
            let ports = |udp: bool| -> String {
                let list: Vec<String> = flags
                    .publish
                    .iter()
                    .filter(|p| p.udp == udp)
                    .map(|p| match &p.ip {
                        Some(ip) => format!("{ip}/{}:{}", p.host, p.ctr),
                        None => format!("{}:{}", p.host, p.ctr),
                    })
                    .collect();
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(",")
                }
            };
            for (opt, spec) in [
                ("-t", ports(false)),
                ("-u", ports(true)),
                ("-T", "none".into()),
                ("-U", "none".into()),
            ] {
                arg(opt);
                arg(&spec);
            }
            if let Some(ip) = &flags.ip {
                arg("--address");
                arg(ip);
            }
            if let Some(mac) = &flags.mac_address {
                arg("--ns-mac-addr");
                arg(mac);
            }
            if mapped {
                // Joining the user namespace we are in already would fail.
                arg("--netns");
                arg("/proc/self/fd/3");
            } else {
                arg("{pid}");
            }
            Ready::Route
        }
        _ => return None,
    };
    Some(Helper { argv, ready })
}

/// slirp4netns's API socket for `-p` (`{pid}`: the supervisor's, so runs do not collide).
fn api_socket(facts: &HostFacts) -> PathBuf {
    facts.scratch.join("slirp-{pid}.sock")
}

/// Steps right after the user namespace exists (we hold CAP_NET_ADMIN over a new network
/// namespace only there): `lo` up, as Docker's `--net none` leaves it, and unprivileged ICMP
/// sockets for every group, as Docker sets `net.ipv4.ping_group_range` in its networks; then the
/// helper connects the namespace and the ports are published.
pub(super) fn after_unshare(flags: &Flags, facts: &HostFacts, steps: &mut Vec<Step>) {
    if namespace_flags(flags) & ns::NEW_NET == 0 {
        return;
    }
    steps.push(Step::LoopbackUp);
    steps.push(Step::PingGroupRange);
    if flags.net == NetMode::None {
        return;
    }
    steps.push(Step::NetHelperReady);
    if let NetMode::Slirp { .. } = flags.net {
        if !flags.publish.is_empty() {
            steps.push(Step::SlirpForward {
                api: api_socket(facts),
                ports: flags.publish.clone(),
            });
        }
    }
}

/// `/etc/resolv.conf`: the host's, with `--dns` replacing its name servers and `--dns-search`
/// / `--dns-option` its search and options lines, as Docker merges them.
pub(super) fn resolv_conf(host: Option<&[u8]>, flags: &Flags) -> Option<Vec<u8>> {
    // slirp4netns and pasta forward DNS to the host's servers from an address of their own
    // (the host's may be on its loopback, out of the container's reach).
    let forwarder = match flags.net {
        NetMode::Slirp { .. } => Some(SLIRP_DNS),
        NetMode::Pasta => Some(PASTA_DNS),
        _ => None,
    };
    if flags.dns.is_empty()
        && flags.dns_search.is_empty()
        && flags.dns_options.is_empty()
        && forwarder.is_none()
    {
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
    if let (true, Some(f)) = (flags.dns.is_empty(), forwarder) {
        out += &format!("nameserver {f}\n");
    } else if flags.dns.is_empty() {
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
pub(super) fn hosts_file(hostname: &str, flags: &Flags, gateway: Option<&str>) -> Vec<u8> {
    let mut s = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.0.1\t{hostname}\n"
    );
    for h in &flags.add_hosts {
        // With the host's own network, the host is this machine: loopback; slirp4netns's
        // gateway is the host, and pasta maps the host's gateway address to the host.
        let ip = match (&h.addr, &flags.net) {
            (HostAddr::Ip(ip), _) => ip,
            (HostAddr::Gateway, NetMode::Slirp { .. }) => SLIRP_GATEWAY,
            (HostAddr::Gateway, NetMode::Pasta) => gateway.unwrap_or("127.0.0.1"),
            (HostAddr::Gateway, _) => "127.0.0.1",
        };
        s += &format!("{ip}\t{}\n", h.name);
    }
    s.into_bytes()
}
