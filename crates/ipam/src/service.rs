//! [`Ipam`]: the addresses of every network of one host, by network id, and of its
//! point-to-point links, as a cache over the store's claims.
//!
//! The store decides who holds an address (its claim key is created only if missing, see the
//! engine's `claims`); this cache says what to ask for. An address is taken here when an endpoint
//! is planned (`take`) or adopted (`hold`) and given back when it goes (`give_back`), and it is
//! marked when a claim no endpoint of this host makes holds it: another host's on a global
//! network, or one the cache did not know (`claimed`). A marked address is given back only when
//! its claim goes (`unclaimed`), never by an endpoint's release, so a reservation that lost an
//! address to a claim cannot free it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use crate::{IpamError, Pool, Pool6};

/// One network's addresses.
#[derive(Debug)]
struct Net {
    v4: Pool,
    v6: Option<Pool6>,
    /// Held by claims no endpoint of this host makes.
    claimed: HashSet<IpAddr>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Ipam {
    nets: HashMap<String, Net>,
    /// The point-to-point links' pool, made at its first use.
    links: Option<Pool>,
}

impl Ipam {
    /// Network `id`'s pools (replacing any it had).
    pub fn add(&mut self, id: &str, v4: Pool, v6: Option<Pool6>) {
        self.nets.insert(id.to_string(), Net { v4, v6, claimed: HashSet::new() });
    }

    pub fn remove(&mut self, id: &str) {
        self.nets.remove(id);
    }

    fn net(&mut self, id: &str) -> Result<&mut Net, IpamError> {
        self.nets.get_mut(id).ok_or_else(|| IpamError::NoPool(id.to_string()))
    }

    /// Whether network `id` hands out IPv6 addresses.
    pub fn has_v6(&self, id: &str) -> bool {
        self.nets.get(id).is_some_and(|n| n.v6.is_some())
    }

    /// Network `id`'s IPv4 addresses in use (endpoints, the gateway, claims) and in all.
    pub fn usage(&self, id: &str) -> Option<(usize, u64)> {
        self.nets.get(id).map(|n| (n.v4.in_use(), u64::from(n.v4.size())))
    }

    /// Whether network `id` has no IPv4 address left.
    pub fn is_full(&self, id: &str) -> bool {
        self.nets.get(id).is_some_and(|n| n.v4.is_full())
    }

    /// Takes an endpoint's addresses on network `id`: `ip` and `ip6` if asked (and free), else
    /// the next free ones (IPv6 on a dual-stack network only); both or neither.
    pub fn take(&mut self, id: &str, ip: Option<Ipv4Addr>, ip6: Option<Ipv6Addr>) -> Result<(Ipv4Addr, Option<Ipv6Addr>), IpamError> {
        let n = self.net(id)?;
        let ip = match ip {
            Some(ip) => n.v4.reserve(ip).map(|()| ip)?,
            None => n.v4.allocate()?,
        };
        let v6 = match (n.v6.as_mut(), ip6) {
            (None, Some(_)) => Err(IpamError::NoIpv6(id.to_string())),
            (None, None) => Ok(None),
            (Some(p6), Some(a)) => p6.reserve(a).map(|()| Some(a)),
            (Some(p6), None) => p6.allocate().map(Some),
        };
        match v6 {
            Ok(v6) => Ok((ip, v6)),
            Err(e) => {
                n.v4.release(ip);
                Err(e)
            }
        }
    }

    /// Holds the addresses an endpoint already has (one adopted at start).
    pub fn hold(&mut self, id: &str, ip: Ipv4Addr, ip6: Option<Ipv6Addr>) -> Result<(), IpamError> {
        let n = self.net(id)?;
        if let (Some(p6), Some(a)) = (n.v6.as_mut(), ip6) {
            let _ = p6.reserve(a);
        }
        n.v4.reserve(ip)
    }

    /// Gives an endpoint's addresses back, but for those a claim holds (see the module docs).
    pub fn give_back(&mut self, id: &str, ip: Ipv4Addr, ip6: Option<Ipv6Addr>) {
        let Some(n) = self.nets.get_mut(id) else { return };
        if !n.claimed.contains(&IpAddr::V4(ip)) {
            n.v4.release(ip);
        }
        if let (Some(p6), Some(a)) = (n.v6.as_mut(), ip6.filter(|a| !n.claimed.contains(&IpAddr::V6(*a)))) {
            p6.release(a);
        }
    }

    /// A claim no endpoint of this host makes holds `ip` of network `id`.
    pub fn claimed(&mut self, id: &str, ip: IpAddr) {
        let Some(n) = self.nets.get_mut(id) else { return };
        match ip {
            IpAddr::V4(a) => drop(n.v4.reserve(a)),
            IpAddr::V6(a) => drop(n.v6.as_mut().map(|p| p.reserve(a))),
        }
        n.claimed.insert(ip);
    }

    /// That claim went: `ip` is free again.
    pub fn unclaimed(&mut self, id: &str, ip: IpAddr) {
        let Some(n) = self.nets.get_mut(id) else { return };
        if n.claimed.remove(&ip) {
            match ip {
                IpAddr::V4(a) => n.v4.release(a),
                IpAddr::V6(a) => {
                    if let Some(p) = n.v6.as_mut() {
                        p.release(a);
                    }
                }
            }
        }
    }

    /// The addresses of network `id` that claims hold (see [`Ipam::claimed`]).
    pub fn claimed_on(&self, id: &str) -> Vec<IpAddr> {
        self.nets.get(id).map(|n| n.claimed.iter().copied().collect()).unwrap_or_default()
    }

    fn links(&mut self, pool: Ipv4Net) -> Result<&mut Pool, IpamError> {
        if self.links.is_none() {
            self.links = Some(Pool::new(pool, None, &[])?);
        }
        Ok(self.links.as_mut().expect("made above"))
    }

    /// A point-to-point link end's address: `asked` (taken in the links' pool if it is inside
    /// it), or the pool's next free one.
    pub fn take_link(&mut self, pool: Ipv4Net, asked: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        match asked {
            None => self.links(pool)?.allocate(),
            Some(ip) if pool.contains(&ip) => self.links(pool)?.reserve(ip).map(|()| ip),
            Some(ip) => Ok(ip),
        }
    }

    pub fn give_back_link(&mut self, pool: Ipv4Net, ip: Ipv4Addr) {
        if let (true, Some(p)) = (pool.contains(&ip), self.links.as_mut()) {
            p.release(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam() -> Ipam {
        let mut i = Ipam::default();
        let v4 = Pool::new("10.1.0.0/29".parse().expect("net"), None, &["10.1.0.1".parse().expect("gw")]).expect("pool");
        i.add("n", v4, Some(Pool6::new("fd00:1::/64".parse().expect("net6"), &[])));
        i
    }

    #[test]
    fn both_families_or_neither() {
        let mut i = ipam();
        let (a, a6) = i.take("n", None, None).expect("take");
        assert_eq!((a, a6), ("10.1.0.2".parse().expect("ip"), Some("fd00:1::1".parse().expect("ip6"))));
        // The IPv6 address asked is taken: the IPv4 one is not kept either.
        assert_eq!(i.take("n", None, a6), Err(IpamError::InUse6(a6.expect("v6"))));
        assert_eq!(i.take("n", Some("10.1.0.3".parse().expect("ip")), None).expect("take").0, "10.1.0.3".parse::<Ipv4Addr>().expect("ip"), ".3 was given back");
        assert_eq!(i.take("nope", None, None), Err(IpamError::NoPool("nope".into())));
    }

    #[test]
    fn a_claimed_address_goes_back_only_with_its_claim() {
        let mut i = ipam();
        let ip: Ipv4Addr = "10.1.0.5".parse().expect("ip");
        // Planned here, then lost to a claim: the planner's release keeps it held.
        i.take("n", Some(ip), None).expect("take");
        i.claimed("n", IpAddr::V4(ip));
        i.give_back("n", ip, None);
        assert_eq!(i.take("n", Some(ip), None), Err(IpamError::InUse(ip)));
        assert_eq!(i.claimed_on("n"), vec![IpAddr::V4(ip)]);
        i.unclaimed("n", IpAddr::V4(ip));
        assert_eq!(i.take("n", Some(ip), None).map(|t| t.0), Ok(ip), "free once the claim went");
        // An address nobody claims is simply given back.
        i.give_back("n", ip, None);
        assert_eq!(i.take("n", Some(ip), None).map(|t| t.0), Ok(ip));
    }

    #[test]
    fn link_addresses_come_from_their_pool_or_as_asked() {
        let mut i = Ipam::default();
        let pool: Ipv4Net = "10.9.9.0/30".parse().expect("pool");
        let a = i.take_link(pool, None).expect("first");
        let b = i.take_link(pool, None).expect("second");
        assert_ne!(a, b);
        assert!(i.take_link(pool, None).is_err(), "a /30 has two");
        assert_eq!(i.take_link(pool, Some("192.0.2.7".parse().expect("ip"))), Ok("192.0.2.7".parse().expect("ip")), "outside the pool: as asked");
        i.give_back_link(pool, a);
        assert_eq!(i.take_link(pool, Some(a)), Ok(a));
    }
}
