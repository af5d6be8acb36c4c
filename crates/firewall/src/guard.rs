//! Anti-spoofing on weft's bridge ports: table `bridge weft`, in the bridge's own netfilter family,
//! so it sees every frame a container's port sends, to a neighbour or to the host, before the
//! bridge forwards or delivers it. A guarded port may send only from its own MAC, and IPv4, ARP
//! and IPv6 only from its own addresses (its IPv6 link-local one included, and `::` for duplicate
//! address detection); anything else from it is dropped and counted.
//!
//! One set lookup per packet in the common case: an IPv4 packet from a container matches
//! `iifname . ether saddr . ip saddr @v4` and is accepted. Frames of ports that are not guarded
//! (uplinks, ports a user wired by hand as the seeds do) pass at the second lookup. Guarding a
//! port is an element operation (`add element`), so the 1,000th costs what the first did.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The table, rewritten whole at start.
pub const TABLE: &str = "bridge weft";

/// One guarded port: a container's bridge port (its host-side veth) and what it may send from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortGuard {
    pub port: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub ip6: Option<Ipv6Addr>,
}

impl PortGuard {
    /// The IPv6 link-local address the kernel gives an interface with this MAC (EUI-64).
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.mac;
        Ipv6Addr::new(0xfe80, 0, 0, 0, u16::from_be_bytes([m[0] ^ 2, m[1]]), u16::from_be_bytes([m[2], 0xff]), u16::from_be_bytes([0xfe, m[3]]), u16::from_be_bytes([m[4], m[5]]))
    }

    fn mac(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

/// Deletes the table if it exists.
pub fn remove() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// The whole table with `guards`, replacing whatever it held, in one transaction.
pub fn full(guards: &[PortGuard]) -> String {
    let mut s = remove();
    s.push_str(&format!(
        "table {TABLE} {{\n\
         \tset guarded {{ type ifname; }}\n\
         \tset macs {{ type ifname . ether_addr; }}\n\
         \tset v4 {{ type ifname . ether_addr . ipv4_addr; }}\n\
         \tset v6 {{ type ifname . ether_addr . ipv6_addr; }}\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tiifname . ether saddr . ip saddr @v4 accept\n\
         \t\tiifname != @guarded accept\n\
         \t\tiifname . ether saddr @macs iifname . arp saddr ether . arp saddr ip @v4 accept\n\
         \t\tiifname . ether saddr . ip6 saddr @v6 accept\n\
         \t\tip6 saddr :: iifname . ether saddr @macs accept\n\
         \t\tcounter drop\n\
         \t}}\n\
         }}\n"
    ));
    if !guards.is_empty() {
        s.push_str(&elements("add", guards));
    }
    s
}

/// The elements of `guards`, per set, as the kernel keys them (what [`elements`] says in text).
pub fn set_elems(guards: &[PortGuard]) -> Vec<weft_kernel::nfset::SetElems> {
    use weft_kernel::nfset::{ifname, key, SetElems};
    let mut sets: Vec<SetElems> = ["guarded", "macs", "v4", "v6"].iter().map(|s| SetElems { set: s.to_string(), keys: Vec::new() }).collect();
    for g in guards {
        let port = ifname(&g.port);
        sets[0].keys.push(key(&[&port]));
        sets[1].keys.push(key(&[&port, &g.mac]));
        sets[2].keys.push(key(&[&port, &g.mac, &g.ip.octets()]));
        for a in std::iter::once(g.link_local()).chain(g.ip6) {
            sets[3].keys.push(key(&[&port, &g.mac, &a.octets()]));
        }
    }
    sets
}

/// `add`/`delete` of the elements of `guards`, in one statement per set.
pub fn elements(verb: &str, guards: &[PortGuard]) -> String {
    let q = |g: &PortGuard| format!("\"{}\"", g.port);
    let guarded: Vec<String> = guards.iter().map(q).collect();
    let macs: Vec<String> = guards.iter().map(|g| format!("{} . {}", q(g), g.mac())).collect();
    let v4: Vec<String> = guards.iter().map(|g| format!("{} . {} . {}", q(g), g.mac(), g.ip)).collect();
    let v6: Vec<String> = guards
        .iter()
        .flat_map(|g| std::iter::once(g.link_local()).chain(g.ip6).map(move |a| format!("{} . {} . {a}", q(g), g.mac())))
        .collect();
    let mut s = String::new();
    for (set, items) in [("guarded", guarded), ("macs", macs), ("v4", v4), ("v6", v6)] {
        if !items.is_empty() {
            s.push_str(&format!("{verb} element {TABLE} {set} {{ {} }}\n", items.join(", ")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> PortGuard {
        PortGuard { port: "veth1234567".into(), mac: [0x02, 0x42, 0xac, 0x11, 0x00, 0x02], ip: Ipv4Addr::new(172, 17, 0, 2), ip6: Some("fd00::2".parse().expect("ip6")) }
    }

    #[test]
    fn the_link_local_address_is_the_kernels_eui64() {
        assert_eq!(guard().link_local(), "fe80::42:acff:fe11:2".parse::<Ipv6Addr>().expect("ll"));
    }

    #[test]
    fn elements_name_the_port_its_mac_and_each_address() {
        assert_eq!(
            elements("add", &[guard()]),
            "add element bridge weft guarded { \"veth1234567\" }\n\
             add element bridge weft macs { \"veth1234567\" . 02:42:ac:11:00:02 }\n\
             add element bridge weft v4 { \"veth1234567\" . 02:42:ac:11:00:02 . 172.17.0.2 }\n\
             add element bridge weft v6 { \"veth1234567\" . 02:42:ac:11:00:02 . fe80::42:acff:fe11:2, \"veth1234567\" . 02:42:ac:11:00:02 . fd00::2 }\n"
        );
        assert!(elements("delete", &[]).is_empty());
        let sets = set_elems(&[guard()]);
        let lens: Vec<(String, usize, usize)> = sets.iter().map(|s| (s.set.clone(), s.keys.len(), s.keys[0].len())).collect();
        assert_eq!(lens, [("guarded".into(), 1, 16), ("macs".into(), 1, 24), ("v4".into(), 1, 28), ("v6".into(), 2, 40)]);
        assert!(full(&[]).starts_with(&remove()) && !full(&[]).contains("element"));
    }
}
