//! Point-to-point links between two sandboxes (seed 000): `weft link create A B`, a veth pair
//! with one end in each namespace, a /32 address on each and a host route to the other.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// `weft link create` (the body of `POST /links/create`); unknown fields are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct P2pSpec {
    /// The ends: containers (name or id) or attached namespaces (their sandbox names).
    pub a: String,
    pub b: String,
    /// `--addr`, for A then for B: `IP` or `IP/32` (the others from the link pool).
    pub addr: Vec<String>,
    /// `--ifname-a`, `--ifname-b` (default: the first free `p2pN` on each side).
    pub ifname_a: Option<String>,
    pub ifname_b: Option<String>,
}

impl P2pSpec {
    /// The addresses asked for A and B; everything checked that needs no engine state.
    pub fn validate(&self) -> Result<(Option<Ipv4Addr>, Option<Ipv4Addr>), ModelError> {
        let bad = |m: String| Err(ModelError::P2p(m));
        if self.a.is_empty() || self.b.is_empty() {
            return bad("give two ends: containers or attached namespaces".into());
        }
        if self.a == self.b {
            return bad(format!("both ends are {}: a link joins two sandboxes", self.a));
        }
        for i in [&self.ifname_a, &self.ifname_b].into_iter().flatten() {
            crate::validate_ifname(i)?;
            if i == "lo" {
                return bad("lo is the loopback interface".into());
            }
        }
        if self.addr.len() > 2 {
            return bad("at most two --addr: A's, then B's".into());
        }
        let mut addrs = Vec::new();
        for a in &self.addr {
            let ip = a.strip_suffix("/32").unwrap_or(a);
            let ip: Ipv4Addr = match ip.parse() {
                Ok(ip) if !a.contains('/') || a.ends_with("/32") => ip,
                _ => return bad(format!("--addr {a}: expected an IPv4 address or ADDRESS/32 (a point-to-point link has no subnet)")),
            };
            if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() || ip.is_link_local() {
                return bad(format!("--addr {a}: not a unicast host address"));
            }
            addrs.push(ip);
        }
        if addrs.len() == 2 && addrs[0] == addrs[1] {
            return bad(format!("--addr {} twice: each end has its own address", addrs[0]));
        }
        Ok((addrs.first().copied(), addrs.get(1).copied()))
    }
}

/// One end of a link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct P2pEnd {
    /// The sandbox's owner key: a container's id, or an attached namespace's key.
    pub owner: String,
    /// As the user named it (a container's name, a sandbox's).
    pub name: String,
    pub ifname: String,
    pub addr: Ipv4Addr,
}

/// A point-to-point link, as the store holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct P2pRecord {
    pub id: String,
    pub a: P2pEnd,
    pub b: P2pEnd,
    pub created: u64,
}

impl P2pRecord {
    pub fn ends(&self) -> [&P2pEnd; 2] {
        [&self.a, &self.b]
    }
    /// `weft link inspect` / `GET /links`.
    pub fn to_json(&self) -> serde_json::Value {
        let end = |e: &P2pEnd| serde_json::json!({"Name": e.name, "Owner": e.owner, "Interface": e.ifname, "Address": format!("{}/32", e.addr)});
        serde_json::json!({"Id": self.id, "A": end(&self.a), "B": end(&self.b), "Created": crate::inspect::rfc3339(self.created)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &[&str]) -> P2pSpec {
        P2pSpec { a: "c1".into(), b: "c2".into(), addr: addr.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn addresses_are_hosts_without_a_subnet() {
        assert_eq!(spec(&["10.1.1.1/32", "10.1.1.2"]).validate(), Ok((Some("10.1.1.1".parse().expect("ip")), Some("10.1.1.2".parse().expect("ip")))));
        assert_eq!(spec(&[]).validate(), Ok((None, None)));
        for bad in [&["10.1.1.1/24"][..], &["10.1.1.1", "10.1.1.1"], &["a", "b", "c"], &["127.0.0.1"], &["nonsense"]] {
            assert!(spec(bad).validate().is_err(), "{bad:?}");
        }
        assert!(P2pSpec { b: "c1".into(), ..spec(&[]) }.validate().is_err(), "one sandbox twice");
        assert!(P2pSpec { ifname_a: Some("bad name".into()), ..spec(&[]) }.validate().is_err());
    }
}
