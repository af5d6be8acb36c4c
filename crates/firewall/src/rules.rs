//! The text of weft's ruleset. Pure functions: what they return is what `nft list table inet weft`
//! shows after it is applied (see `docs/firewall.md`).

use ipnet::Ipv4Net;

/// weft's only table.
pub const TABLE: &str = "inet weft";

/// What the firewall needs to know of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFw {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// `--ip-masq` / `enable_ip_masquerade`.
    pub masquerade: bool,
}

fn masq_chain(bridge: &str) -> String {
    format!("masq-{bridge}")
}

/// Deletes weft's table if it exists (`--iptables=false`).
pub fn remove() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// The whole ruleset for `networks`, replacing whatever weft's table held, in one transaction.
/// The kernel resolves a map element's jump only to a chain declared before the map in the same
/// transaction, so the networks' chains come first in the table block.
pub fn full(networks: &[NetworkFw]) -> String {
    let mut s = remove();
    s.push_str(&format!("table {TABLE} {{\n"));
    for n in networks.iter().filter(|n| n.masquerade) {
        s.push_str(&format!("\tchain {} {{ oifname != \"{}\" masquerade; }}\n", masq_chain(&n.bridge), n.bridge));
    }
    s.push_str(
        "\tmap masq { type ipv4_addr : verdict; flags interval; }\n\
         \tchain postrouting { type nat hook postrouting priority srcnat; policy accept; ip saddr vmap @masq; }\n\
         }\n",
    );
    for n in networks.iter().filter(|n| n.masquerade) {
        s.push_str(&masq_element("add", n));
    }
    s
}

fn masq_element(verb: &str, n: &NetworkFw) -> String {
    let net = n.subnet.trunc();
    match verb {
        // `create` refuses a duplicate; `add` is needed right after a table's deletion in the same
        // transaction, where the kernel still sees the old element.
        "add" | "create" => format!("{verb} element {TABLE} masq {{ {net} : jump {} }}\n", masq_chain(&n.bridge)),
        _ => format!("delete element {TABLE} masq {{ {net} }}\n"),
    }
}

/// `masq-BRIDGE`: masquerade what leaves by another interface; an element sends the subnet there.
pub fn add_network(n: &NetworkFw) -> String {
    if !n.masquerade {
        return String::new();
    }
    let c = masq_chain(&n.bridge);
    format!("add chain {TABLE} {c}\nadd rule {TABLE} {c} oifname != \"{br}\" masquerade\n", br = n.bridge)
        + &masq_element("create", n)
}

pub fn remove_network(n: &NetworkFw) -> String {
    if !n.masquerade {
        return String::new();
    }
    masq_element("delete", n) + &format!("delete chain {TABLE} {}\n", masq_chain(&n.bridge))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(masq: bool) -> NetworkFw {
        NetworkFw { bridge: "weft0".into(), subnet: "172.17.0.1/16".parse().expect("cidr"), masquerade: masq }
    }

    #[test]
    fn network_is_a_chain_and_a_map_element() {
        let add = add_network(&net(true));
        assert!(add.contains("add rule inet weft masq-weft0 oifname != \"weft0\" masquerade"));
        assert!(add.contains("create element inet weft masq { 172.17.0.0/16 : jump masq-weft0 }"));
        assert!(full(&[net(true)]).contains("add element inet weft masq { 172.17.0.0/16 : jump masq-weft0 }"));
        assert!(remove_network(&net(true)).contains("delete element inet weft masq { 172.17.0.0/16 }"));
        assert_eq!(add_network(&net(false)), "");
    }

    #[test]
    fn full_replaces_the_table_atomically() {
        let f = full(&[net(true)]);
        assert!(f.starts_with("table inet weft {}\ndelete table inet weft\ntable inet weft {\n\tchain masq-weft0"));
        assert!(f.contains("ip saddr vmap @masq"));
        assert!(f.ends_with("jump masq-weft0 }\n"));
    }
}
