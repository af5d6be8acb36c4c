//! The text of weft's ruleset. Pure functions: what they return is what `nft list table inet weft`
//! shows after it is applied (see `docs/firewall.md`).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_model::Proto;

/// weft's table, rewritten whole at start.
pub const TABLE: &str = "inet weft";
/// The user's table: weft creates it once (with `add`, which never flushes) and never edits it.
pub const USER_TABLE: &str = "inet weft-user";

/// What the firewall needs to know of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFw {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// Dual-stack networks: their IPv6 subnet (masqueraded the same way).
    pub subnet6: Option<ipnet::Ipv6Net>,
    /// `--ip-masq` / `enable_ip_masquerade`.
    pub masquerade: bool,
    /// `--icc` / `enable_icc`: containers of this network may talk to each other directly.
    pub icc: bool,
    /// `--internal`: nothing is forwarded out of or into the bridge.
    pub internal: bool,
    /// A routed network's whole range: traffic to the other hosts' blocks keeps its source.
    pub routed_range: Option<Ipv4Net>,
}

/// One published port in the kernel: `host_ip` `None` is every local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortFw {
    pub host_ip: Option<Ipv4Addr>,
    pub proto: Proto,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// A `--link` under `--icc=false`: `src` may open `proto`/`port` on `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkFw {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Proto,
    pub port: u16,
}

/// `add`/`create`/`delete` of link elements, in one statement.
pub fn link_elements(verb: &str, links: &[LinkFw]) -> String {
    let items: Vec<String> = links.iter().map(|l| format!("{} . {} . {} . {}", l.src, l.dst, l.proto, l.port)).collect();
    format!("{verb} element {TABLE} links {{ {} }}\n", items.join(", "))
}

/// Options of the whole ruleset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `--userland-proxy`: traffic to 127.0.0.0/8 goes to the in-process proxy, not DNAT.
    pub userland_proxy: bool,
}

/// Deletes weft's table if it exists (`--iptables=false`).
pub fn remove() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// The user chain: evaluated before weft's forward rules; a rule there can drop anything,
/// published ports included. Idempotent, and never flushes what the user put there.
pub fn user_chain() -> String {
    format!(
        "add table {USER_TABLE}\n\
         add chain {USER_TABLE} forward {{ type filter hook forward priority filter - 10; policy accept; }}\n"
    )
}

/// A network's chains, as (name, rules).
fn chains(n: &NetworkFw) -> [(String, String); 2] {
    let br = &n.bridge;
    let keep = n.routed_range.map(|r| format!("ip daddr {} return; ", r.trunc())).unwrap_or_default();
    let masq = if n.masquerade { format!("{keep}oifname != \"{br}\" masquerade; ") } else { String::new() };
    // Hairpin: a container reaching a published port of its own bridge comes back out of it; the
    // source is rewritten so that the answer returns through the host's NAT.
    let nat = format!("{masq}ct status dnat oifname \"{br}\" masquerade;");
    // Forwarded from the bridge: to itself (icc), to another weft bridge (never), elsewhere (yes).
    let own = if n.icc {
        format!("oifname \"{br}\" accept;")
    } else {
        format!("oifname \"{br}\" ip saddr . ip daddr . meta l4proto . th dport @links accept; oifname \"{br}\" ct status dnat accept; oifname \"{br}\" drop;")
    };
    let from = if n.internal { format!("{own} drop;") } else { format!("{own} oifname @bridges drop; accept;") };
    [(format!("nat-{br}"), nat), (format!("from-{br}"), from)]
}

fn elements(verb: &str, n: &NetworkFw) -> String {
    let (net, br) = (n.subnet.trunc(), &n.bridge);
    let internal = |v: &str| if n.internal { format!("{v} element {TABLE} internal {{ \"{br}\" }}\n") } else { String::new() };
    if verb == "delete" {
        let v6 = n.subnet6.map(|s6| format!("delete element {TABLE} masq6 {{ {} }}\n", s6.trunc())).unwrap_or_default();
        return format!(
            "delete element {TABLE} masq {{ {net} }}\n{v6}delete element {TABLE} from_bridge {{ \"{br}\" }}\n\
             delete element {TABLE} bridges {{ \"{br}\" }}\n{}",
            internal("delete")
        );
    }
    let v6 = n.subnet6.map(|s6| format!("{verb} element {TABLE} masq6 {{ {} : jump nat-{br} }}\n", s6.trunc())).unwrap_or_default();
    format!(
        "{verb} element {TABLE} masq {{ {net} : jump nat-{br} }}\n{v6}{verb} element {TABLE} from_bridge {{ \"{br}\" : jump from-{br} }}\n\
         {verb} element {TABLE} bridges {{ \"{br}\" }}\n{}",
        internal(verb)
    )
}

/// The whole ruleset, replacing whatever weft's table held, in one transaction. The kernel
/// resolves a map element's `jump` only to a chain declared before the map in the same
/// transaction, so the networks' chains come first in the table block.
pub fn full(networks: &[NetworkFw], ports: &[PortFw], links: &[LinkFw], opts: Options) -> String {
    let mut s = remove();
    s.push_str(&format!("table {TABLE} {{\n"));
    for (name, rules) in networks.iter().flat_map(chains) {
        s.push_str(&format!("\tchain {name} {{ {rules} }}\n"));
    }
    let localhost = if opts.userland_proxy { "ip daddr 127.0.0.0/8 return; " } else { "" };
    s.push_str(&format!(
        "\tset bridges {{ type ifname; }}\n\
         \tset internal {{ type ifname; }}\n\
         \tset links {{ type ipv4_addr . ipv4_addr . inet_proto . inet_service; }}\n\
         \tmap masq {{ type ipv4_addr : verdict; flags interval; }}\n\
         \tmap masq6 {{ type ipv6_addr : verdict; flags interval; }}\n\
         \tmap from_bridge {{ type ifname : verdict; }}\n\
         \tmap ports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         \tmap ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         \tchain publish {{ dnat ip to ip daddr . meta l4proto . th dport map @ports; dnat ip to meta l4proto . th dport map @ports_any; }}\n\
         \tchain loopback {{ type filter hook prerouting priority raw; policy accept; iifname != \"lo\" ip daddr 127.0.0.0/8 drop; iifname != \"lo\" ip6 daddr ::1 drop; }}\n\
         \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept; fib daddr type local jump publish; }}\n\
         \tchain output {{ type nat hook output priority -100; policy accept; {localhost}fib daddr type local jump publish; }}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept; ip saddr 127.0.0.0/8 ct status dnat masquerade; ip saddr vmap @masq; ip6 saddr vmap @masq6; }}\n\
         \tchain forward {{ type filter hook forward priority filter; policy accept; ct state established,related accept; iifname vmap @from_bridge; oifname @internal drop; }}\n\
         }}\n"
    ));
    for n in networks {
        s.push_str(&elements("add", n));
    }
    if !ports.is_empty() {
        s.push_str(&port_elements("add", ports));
    }
    if !links.is_empty() {
        s.push_str(&link_elements("add", links));
    }
    s
}

/// A network's chains and elements (`create` refuses a duplicate).
pub fn add_network(n: &NetworkFw) -> String {
    let mut s: String = chains(n).iter().map(|(name, rules)| format!("add chain {TABLE} {name} {{ {rules} }}\n")).collect();
    s.push_str(&elements("create", n));
    s
}

pub fn remove_network(n: &NetworkFw) -> String {
    elements("delete", n) + &format!("delete chain {TABLE} nat-{br}\ndelete chain {TABLE} from-{br}\n", br = n.bridge)
}

/// The map a port lives in and its key there.
fn port_key(p: &PortFw) -> (&'static str, String) {
    match p.host_ip {
        Some(ip) => ("ports", format!("{ip} . {} . {}", p.proto, p.host_port)),
        None => ("ports_any", format!("{} . {}", p.proto, p.host_port)),
    }
}

/// `add`/`create`/`delete` of port map elements, one statement per map.
pub fn port_elements(verb: &str, ports: &[PortFw]) -> String {
    let mut by_map: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for p in ports {
        let (map, key) = port_key(p);
        let item = if verb == "delete" { key } else { format!("{key} : {} . {}", p.container_ip, p.container_port) };
        by_map.entry(map).or_default().push(item);
    }
    by_map.into_iter().map(|(map, items)| format!("{verb} element {TABLE} {map} {{ {} }}\n", items.join(", "))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(masq: bool, icc: bool) -> NetworkFw {
        NetworkFw { bridge: "weft0".into(), subnet: "172.17.0.1/16".parse().expect("cidr"), subnet6: None, masquerade: masq, icc, internal: false, routed_range: None }
    }
    fn port(ip: Option<&str>) -> PortFw {
        PortFw {
            host_ip: ip.map(|i| i.parse().expect("ip")),
            proto: Proto::Udp,
            host_port: 5353,
            container_ip: "172.17.0.2".parse().expect("ip"),
            container_port: 53,
        }
    }

    #[test]
    fn a_routed_network_keeps_its_source_towards_its_range() {
        let n = NetworkFw { subnet: "10.93.1.0/24".parse().expect("cidr"), routed_range: Some("10.93.0.0/16".parse().expect("cidr")), ..net(true, true) };
        let add = add_network(&n);
        assert!(add.contains("{ ip daddr 10.93.0.0/16 return; oifname != \"weft0\" masquerade;"), "{add}");
    }

    #[test]
    fn network_is_chains_and_map_elements() {
        let add = add_network(&net(true, true));
        assert!(add.contains("add chain inet weft nat-weft0 { oifname != \"weft0\" masquerade; ct status dnat oifname \"weft0\" masquerade; }"), "{add}");
        assert!(add.contains("create element inet weft masq { 172.17.0.0/16 : jump nat-weft0 }"));
        assert!(add.contains("create element inet weft from_bridge { \"weft0\" : jump from-weft0 }"));
        assert!(add_network(&net(false, true)).contains("nat-weft0 { ct status dnat oifname \"weft0\" masquerade; }"));
        assert!(remove_network(&net(true, true)).contains("delete element inet weft masq { 172.17.0.0/16 }"));
    }

    #[test]
    fn icc_false_only_lets_published_ports_through() {
        assert_eq!(chains(&net(true, true))[1].1, "oifname \"weft0\" accept; oifname @bridges drop; accept;");
        let c = &chains(&net(true, false))[1].1;
        assert!(c.contains("oifname \"weft0\" ct status dnat accept; oifname \"weft0\" drop; oifname @bridges drop; accept;"), "{c}");
        assert!(c.starts_with("oifname \"weft0\" ip saddr . ip daddr . meta l4proto . th dport @links accept;"), "{c}");
        let l = LinkFw { src: "172.17.0.3".parse().expect("ip"), dst: "172.17.0.2".parse().expect("ip"), proto: Proto::Tcp, port: 80 };
        assert_eq!(link_elements("create", &[l]), "create element inet weft links { 172.17.0.3 . 172.17.0.2 . tcp . 80 }\n");
    }

    #[test]
    fn dual_stack_networks_masquerade_both_families() {
        let n = NetworkFw { subnet6: Some("fd00:77::/64".parse().expect("net")), ..net(true, true) };
        assert!(add_network(&n).contains("create element inet weft masq6 { fd00:77::/64 : jump nat-weft0 }"));
        assert!(remove_network(&n).contains("delete element inet weft masq6 { fd00:77::/64 }"));
        assert!(full(&[n], &[], &[], Options::default()).contains("ip6 saddr vmap @masq6"));
    }

    #[test]
    fn internal_networks_keep_to_their_bridge() {
        let n = NetworkFw { internal: true, masquerade: false, ..net(false, true) };
        assert_eq!(chains(&n)[1].1, "oifname \"weft0\" accept; drop;");
        assert!(add_network(&n).contains("create element inet weft internal { \"weft0\" }"));
        assert!(full(&[n], &[], &[], Options::default()).contains("iifname vmap @from_bridge; oifname @internal drop;"));
    }

    #[test]
    fn ports_are_map_elements() {
        let add = port_elements("create", &[port(None), port(Some("127.0.0.1"))]);
        assert!(add.contains("create element inet weft ports_any { udp . 5353 : 172.17.0.2 . 53 }"), "{add}");
        assert!(add.contains("create element inet weft ports { 127.0.0.1 . udp . 5353 : 172.17.0.2 . 53 }"), "{add}");
        assert_eq!(port_elements("delete", &[port(None)]), "delete element inet weft ports_any { udp . 5353 }\n");
    }

    #[test]
    fn full_replaces_the_table_atomically() {
        let f = full(&[net(true, true)], &[port(None)], &[], Options::default());
        assert!(f.starts_with("table inet weft {}\ndelete table inet weft\ntable inet weft {\n\tchain nat-weft0"));
        assert!(f.contains("ip saddr vmap @masq") && f.contains("fib daddr type local jump publish"));
        assert!(f.contains("add element inet weft ports_any { udp . 5353 : 172.17.0.2 . 53 }"));
        assert!(!f.contains("127.0.0.0/8 return"));
        assert!(full(&[], &[], &[], Options { userland_proxy: true }).contains("ip daddr 127.0.0.0/8 return; fib daddr"));
    }
}
