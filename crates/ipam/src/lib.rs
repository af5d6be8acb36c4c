//! Address management. [`pick_subnet`] chooses a network's subnet from the default address pools
//! (Docker's: 172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/20 slices) avoiding every subnet the
//! host or another network already uses. [`Pool`] hands out the addresses of one network: from the
//! allocation range (`--fixed-cidr`), never the network, broadcast or gateway address, sequentially
//! after the last one handed out (as Docker does, so a freed address is not reused at once and
//! stale ARP entries of a dead container do not catch a new one).
//!
//! The pools are in memory, a cache over the store's claims: [`Ipam`] holds them for one host,
//! by network id, with its point-to-point links' pool.

mod service;

pub use service::Ipam;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
    #[error("address {addr} is outside the allocation range {range}")]
    OutOfRange { addr: Ipv4Addr, range: Ipv4Net },
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error("allocation range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet { range: Ipv4Net, subnet: Ipv4Net },
    #[error("subnet {0} is too small for containers")]
    TooSmall(Ipv4Net),
    #[error("no free address left in {0}")]
    Exhausted6(ipnet::Ipv6Net),
    #[error("address {0} is already in use")]
    InUse6(std::net::Ipv6Addr),
    #[error("address {0} is outside {1}")]
    OutOfRange6(std::net::Ipv6Addr, ipnet::Ipv6Net),
    #[error("network {0} has no address pool on this host")]
    NoPool(String),
    #[error("network {0} has no IPv6 subnet")]
    NoIpv6(String),
}

/// A pool of subnets to carve networks from (`--default-address-pool base=CIDR,size=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Ipv4Net,
    pub size: u8,
}

/// Docker's default local address pools.
pub fn default_pools() -> Vec<AddressPool> {
    let net = |s: &str| s.parse::<Ipv4Net>().expect("constant CIDR");
    vec![
        AddressPool { base: net("172.17.0.0/16"), size: 16 },
        AddressPool { base: net("172.18.0.0/15"), size: 16 },
        AddressPool { base: net("172.20.0.0/14"), size: 16 },
        AddressPool { base: net("172.24.0.0/14"), size: 16 },
        AddressPool { base: net("172.28.0.0/14"), size: 16 },
        AddressPool { base: net("192.168.0.0/16"), size: 20 },
    ]
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of the pools that overlaps none of `in_use` (host addresses, routes, other
/// networks). Default routes (prefix 0) are ignored, as Docker does.
pub fn pick_subnet(pools: &[AddressPool], in_use: &[Ipv4Net]) -> Option<Ipv4Net> {
    pools.iter().find_map(|p| {
        p.base
            .subnets(p.size.max(p.base.prefix_len()))
            .ok()?
            .find(|s| !in_use.iter().any(|u| u.prefix_len() > 0 && overlaps(s, u)))
    })
}

/// The addresses of one network.
#[derive(Debug, Clone)]
pub struct Pool {
    subnet: Ipv4Net,
    range: Ipv4Net,
    /// One bit per address of `range`.
    used: Vec<u64>,
    /// Offset in `range` where the next search starts.
    next: u32,
}

impl Pool {
    /// A pool of `subnet`, allocating only inside `range` (all of `subnet` if `None`), with the
    /// gateway (and any other `reserved` address) never handed out.
    pub fn new(subnet: Ipv4Net, range: Option<Ipv4Net>, reserved: &[Ipv4Addr]) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(IpamError::TooSmall(subnet));
        }
        let range = range.map(|r| r.trunc()).unwrap_or(subnet);
        if !subnet.contains(&range) {
            return Err(IpamError::RangeOutsideSubnet { range, subnet });
        }
        let size = 1u64 << (32 - range.prefix_len());
        let mut p = Pool { subnet, range, used: vec![0; size.div_ceil(64) as usize], next: 0 };
        for a in [subnet.network(), subnet.broadcast()].iter().chain(reserved) {
            if let Some(off) = p.offset(*a) {
                p.set(off, true);
            }
        }
        Ok(p)
    }

    fn offset(&self, a: Ipv4Addr) -> Option<u32> {
        self.range.contains(&a).then(|| u32::from(a) - u32::from(self.range.network()))
    }
    pub fn size(&self) -> u32 {
        (1u64 << (32 - self.range.prefix_len())).min(u64::from(u32::MAX)) as u32
    }
    fn get(&self, off: u32) -> bool {
        self.used[(off / 64) as usize] & (1 << (off % 64)) != 0
    }
    fn set(&mut self, off: u32, v: bool) {
        let w = &mut self.used[(off / 64) as usize];
        if v {
            *w |= 1 << (off % 64);
        } else {
            *w &= !(1 << (off % 64));
        }
    }

    /// Starts the next search at offset `seed` (modulo the range): hosts sharing a network start
    /// at different places, so they seldom offer one address at once.
    pub fn start_at(&mut self, seed: u32) {
        self.next = seed % self.size();
    }

    /// The next free address after the last one handed out, wrapping around.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let size = self.size();
        let mut off = self.next % size;
        let mut scanned = 0u64;
        while scanned < u64::from(size) {
            if off.is_multiple_of(64) && size >= 64 && self.used[(off / 64) as usize] == u64::MAX {
                off = (off + 64) % size; // a full word: skip 64 addresses at once
                scanned += 64;
                continue;
            }
            if !self.get(off) {
                self.set(off, true);
                self.next = (off + 1) % size;
                return Ok(Ipv4Addr::from(u32::from(self.range.network()) + off));
            }
            off = (off + 1) % size;
            scanned += 1;
        }
        Err(IpamError::Exhausted(self.range))
    }

    /// Takes a specific address (`--ip`, or a record being reloaded).
    pub fn reserve(&mut self, addr: Ipv4Addr) -> Result<(), IpamError> {
        let off = self
            .offset(addr)
            .filter(|_| self.subnet.contains(&addr))
            .ok_or(IpamError::OutOfRange { addr, range: self.range })?;
        if self.get(off) {
            return Err(IpamError::InUse(addr));
        }
        self.set(off, true);
        Ok(())
    }

    /// Gives an address back; unknown addresses are ignored.
    pub fn release(&mut self, addr: Ipv4Addr) {
        if addr == self.subnet.network() || addr == self.subnet.broadcast() {
            return;
        }
        if let Some(off) = self.offset(addr) {
            self.set(off, false);
        }
    }

    /// No address left to hand out.
    pub fn is_full(&self) -> bool {
        self.in_use() >= self.size() as usize
    }

    pub fn in_use(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn picks_first_free_default_pool() {
        assert_eq!(pick_subnet(&default_pools(), &[]), Some(n("172.17.0.0/16")));
        let used = [n("172.17.5.0/24"), n("0.0.0.0/0"), n("172.18.0.1/32")];
        assert_eq!(pick_subnet(&default_pools(), &used), Some(n("172.19.0.0/16")));
        let all = [n("172.16.0.0/12"), n("192.168.0.0/16")];
        assert_eq!(pick_subnet(&default_pools(), &all), None);
    }

    #[test]
    fn sequential_skips_gateway_and_wraps() {
        let mut p = Pool::new(n("10.0.0.0/29"), None, &[ip("10.0.0.1")]).expect("pool");
        let got: Vec<_> = (0..5).map(|_| p.allocate().expect("addr")).collect();
        assert_eq!(got, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip));
        assert_eq!(p.allocate(), Err(IpamError::Exhausted(n("10.0.0.0/29"))));
        p.release(ip("10.0.0.3"));
        assert_eq!(p.allocate(), Ok(ip("10.0.0.3")));
    }

    #[test]
    fn fixed_cidr_range() {
        let mut p = Pool::new(n("10.211.55.0/24"), Some(n("10.211.55.64/26")), &[ip("10.211.55.10")]).expect("pool");
        assert_eq!(p.allocate(), Ok(ip("10.211.55.64")));
        assert!(matches!(p.reserve(ip("10.211.55.5")), Err(IpamError::OutOfRange { .. })));
        assert!(Pool::new(n("10.0.0.0/24"), Some(n("10.0.1.0/26")), &[]).is_err());
        assert_eq!(p.reserve(ip("10.211.55.64")), Err(IpamError::InUse(ip("10.211.55.64"))));
    }

    proptest! {
        #[test]
        fn never_hands_out_twice_or_reserved(prefix in 20u8..=30, ops in proptest::collection::vec(any::<(bool, u16)>(), 1..400)) {
            let subnet = Ipv4Net::new(ip("10.1.0.0"), prefix).expect("net");
            let gw = ip("10.1.0.1");
            let mut p = Pool::new(subnet, None, &[gw]).expect("pool");
            let mut live = std::collections::BTreeSet::new();
            for (alloc, pick) in ops {
                if alloc || live.is_empty() {
                    match p.allocate() {
                        Ok(a) => {
                            prop_assert!(subnet.contains(&a));
                            prop_assert!(a != gw && a != subnet.network() && a != subnet.broadcast());
                            prop_assert!(live.insert(a), "duplicate {}", a);
                        }
                        Err(IpamError::Exhausted(_)) => prop_assert_eq!(live.len() as u64, subnet.hosts().count() as u64 - 1),
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                } else {
                    let a = *live.iter().nth(pick as usize % live.len()).expect("nonempty");
                    live.remove(&a);
                    p.release(a);
                }
                prop_assert_eq!(p.in_use(), live.len() + 3);
            }
        }
    }
}

/// The IPv6 addresses of one network: sparse (a /64 cannot be a bitmap), sequential from `::2`
/// (`::1` is the gateway by default), never the subnet-router anycast address `::0`.
#[derive(Debug, Clone)]
pub struct Pool6 {
    subnet: ipnet::Ipv6Net,
    used: std::collections::BTreeSet<u128>,
    next: u128,
}

fn size6(net: &ipnet::Ipv6Net) -> u128 {
    if net.prefix_len() == 0 {
        u128::MAX
    } else {
        1u128 << (128 - net.prefix_len())
    }
}

impl Pool6 {
    pub fn new(subnet: ipnet::Ipv6Net, reserved: &[std::net::Ipv6Addr]) -> Self {
        let subnet = subnet.trunc();
        let mut p = Pool6 { subnet, used: [0u128].into_iter().collect(), next: 1 };
        for r in reserved {
            let _ = p.reserve(*r);
        }
        p
    }

    fn offset(&self, a: std::net::Ipv6Addr) -> Option<u128> {
        self.subnet.contains(&a).then(|| u128::from(a) - u128::from(self.subnet.network()))
    }

    pub fn allocate(&mut self) -> Result<std::net::Ipv6Addr, IpamError> {
        let size = size6(&self.subnet);
        if self.used.len() as u128 >= size {
            return Err(IpamError::Exhausted6(self.subnet));
        }
        let mut off = self.next % size;
        while self.used.contains(&off) {
            off = (off + 1) % size;
        }
        self.used.insert(off);
        self.next = off.wrapping_add(1);
        Ok(std::net::Ipv6Addr::from(u128::from(self.subnet.network()) + off))
    }

    pub fn reserve(&mut self, a: std::net::Ipv6Addr) -> Result<(), IpamError> {
        let off = self.offset(a).ok_or(IpamError::OutOfRange6(a, self.subnet))?;
        if !self.used.insert(off) {
            return Err(IpamError::InUse6(a));
        }
        Ok(())
    }

    pub fn release(&mut self, a: std::net::Ipv6Addr) {
        if let Some(off) = self.offset(a).filter(|o| *o != 0) {
            self.used.remove(&off);
        }
    }
}

/// A unique-local /64 (RFC 4193: fd00::/8 + 40-bit global id + 16-bit subnet 0) from `seed`.
pub fn ula_subnet(seed: &str) -> ipnet::Ipv6Net {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let g = h.to_be_bytes();
    let addr = std::net::Ipv6Addr::from([0xfd, g[0], g[1], g[2], g[3], g[4], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ipnet::Ipv6Net::new(addr, 64).expect("constant prefix")
}

#[cfg(test)]
mod tests6 {
    use super::*;

    #[test]
    fn pool6_sequential_reserved_and_released() {
        let net: ipnet::Ipv6Net = "fd00:77::/64".parse().expect("net");
        let gw: std::net::Ipv6Addr = "fd00:77::1".parse().expect("ip");
        let mut p = Pool6::new(net, &[gw]);
        assert_eq!(p.allocate(), Ok("fd00:77::2".parse().expect("ip")));
        assert_eq!(p.allocate(), Ok("fd00:77::3".parse().expect("ip")));
        assert_eq!(p.reserve(gw), Err(IpamError::InUse6(gw)));
        p.release("fd00:77::2".parse().expect("ip"));
        assert!(p.reserve("fd00:78::5".parse().expect("ip")).is_err());
        let mut tiny = Pool6::new("fd00::/126".parse().expect("net"), &["fd00::1".parse().expect("ip")]);
        assert!(tiny.allocate().is_ok() && tiny.allocate().is_ok());
        assert!(matches!(tiny.allocate(), Err(IpamError::Exhausted6(_))));
    }

    #[test]
    fn ula_is_stable_and_local() {
        let a = ula_subnet("abc");
        assert_eq!(a, ula_subnet("abc"));
        assert_ne!(a, ula_subnet("abd"));
        assert_eq!(a.prefix_len(), 64);
        assert_eq!(a.network().octets()[0], 0xfd);
    }
}
