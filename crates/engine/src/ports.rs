//! Host ports: allocation and reservation. A published port is reserved by binding it (TCP bound
//! but not listening, UDP bound), as Docker does: a conflict with weft's own mappings or with any
//! socket of the host is detected atomically by `bind`, and nothing else can take the port while
//! the mapping exists. (SCTP cannot be bound on kernels without SCTP sockets; those mappings are
//! checked against weft's own table only.) Ephemeral ports come from `ip_local_port_range` minus
//! `ip_local_reserved_ports`, minus what is taken.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use weft_model::{PortMapping, PortSpec, Proto};

use crate::{EngineError, Result};

/// The socket holding a published port.
pub(crate) enum Hold {
    Socket(Socket),
    /// No socket (SCTP).
    Table,
}

impl Hold {
    pub fn socket(self) -> Option<Socket> {
        match self {
            Hold::Socket(s) => Some(s),
            Hold::Table => None,
        }
    }
}

pub(crate) struct PortTable {
    /// (proto, host port) -> host addresses holding it.
    used: HashMap<(Proto, u16), Vec<IpAddr>>,
    range: (u16, u16),
    reserved: HashSet<u16>,
    next: u16,
}

fn read_range() -> (u16, u16) {
    weft_kernel::sysctl::read("net.ipv4.ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// `ip_local_reserved_ports`: "8080,9000-9010".
pub(crate) fn parse_reserved(s: &str) -> HashSet<u16> {
    let mut out = HashSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
            out.extend(a..=b);
        }
    }
    out
}

fn overlaps(a: &IpAddr, b: &IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Binds `ip:port` for `proto` (the reservation).
fn hold(proto: Proto, ip: IpAddr, port: u16) -> std::io::Result<Hold> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
        Proto::Sctp => return Ok(Hold::Table),
    };
    let s = Socket::new(Domain::for_address(SocketAddr::new(ip, port)), ty, Some(p))?;
    if ip.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_cloexec(true)?;
    s.bind(&SocketAddr::new(ip, port).into())?;
    Ok(Hold::Socket(s))
}

impl PortTable {
    pub fn new() -> Self {
        let range = read_range();
        let reserved = parse_reserved(&weft_kernel::sysctl::read("net.ipv4.ip_local_reserved_ports").unwrap_or_default());
        Self { used: HashMap::new(), range, reserved, next: range.0 }
    }

    fn taken(&self, proto: Proto, port: u16, ip: &IpAddr) -> bool {
        self.used.get(&(proto, port)).is_some_and(|ips| ips.iter().any(|u| overlaps(u, ip)))
    }

    /// Takes `m` (a restart re-reserving a live container's port, or an explicit `-p`).
    pub fn reserve(&mut self, m: &PortMapping) -> Result<Hold> {
        let busy = || EngineError::PortInUse(format!("{}:{}/{}", fmt_ip(&m.host_ip), m.host_port, m.proto));
        if self.taken(m.proto, m.host_port, &m.host_ip) {
            return Err(busy());
        }
        let h = hold(m.proto, m.host_ip, m.host_port).map_err(|e| match e.raw_os_error() {
            Some(nix::libc::EADDRINUSE) => busy(),
            Some(nix::libc::EADDRNOTAVAIL) => EngineError::Refused(format!("host address {} of -p {}:{} is not an address of this host", fmt_ip(&m.host_ip), fmt_ip(&m.host_ip), m.host_port)),
            Some(nix::libc::EMFILE | nix::libc::ENFILE) => EngineError::Contention(format!("no descriptor left to hold host port {}:{}: publish fewer ports", fmt_ip(&m.host_ip), m.host_port)),
            _ => EngineError::Io { op: "bind", path: format!("{}:{}", fmt_ip(&m.host_ip), m.host_port), source: e },
        })?;
        self.used.entry((m.proto, m.host_port)).or_default().push(m.host_ip);
        Ok(h)
    }

    /// Counts `m` as taken without holding its port (its holder is another process).
    pub fn count(&mut self, m: &PortMapping) {
        self.used.entry((m.proto, m.host_port)).or_default().push(m.host_ip);
    }

    pub fn release(&mut self, m: &PortMapping) {
        if let Some(ips) = self.used.get_mut(&(m.proto, m.host_port)) {
            if let Some(i) = ips.iter().position(|ip| *ip == m.host_ip) {
                ips.swap_remove(i);
            }
            if ips.is_empty() {
                self.used.remove(&(m.proto, m.host_port));
            }
        }
    }

    /// A free port of `candidates` (in order) that binds; `None` if none does.
    fn first_free(&mut self, proto: Proto, ip: IpAddr, cport: u16, candidates: impl Iterator<Item = u16>) -> Option<(PortMapping, Hold)> {
        for port in candidates {
            if self.reserved.contains(&port) || self.taken(proto, port, &ip) {
                continue;
            }
            let m = PortMapping { host_ip: ip, host_port: port, container_port: cport, proto };
            if let Ok(h) = self.reserve(&m) {
                return Some((m, h));
            }
        }
        None
    }

    /// Allocates every spec; on any failure gives back what it took and changes nothing.
    pub fn allocate(&mut self, specs: &[PortSpec], default_ip: IpAddr) -> Result<Vec<(PortMapping, Hold)>> {
        let mut got: Vec<(PortMapping, Hold)> = Vec::new();
        let r = self.allocate_into(specs, default_ip, &mut got);
        if r.is_err() {
            for (m, _) in &got {
                self.release(m);
            }
            got.clear();
        }
        r.map(|()| got)
    }

    fn allocate_into(&mut self, specs: &[PortSpec], default_ip: IpAddr, got: &mut Vec<(PortMapping, Hold)>) -> Result<()> {
        for s in specs {
            let ip = s.host_ip.unwrap_or(default_ip);
            match s.host {
                Some(h) if h.len() == s.container.len() => {
                    for (hp, cp) in h.iter().zip(s.container.iter()) {
                        let m = PortMapping { host_ip: ip, host_port: hp, container_port: cp, proto: s.proto };
                        let hold = self.reserve(&m)?;
                        got.push((m, hold));
                    }
                }
                Some(h) => {
                    // One container port, a host range: the first free port of the range.
                    let taken = self
                        .first_free(s.proto, ip, s.container.start, h.iter())
                        .ok_or_else(|| EngineError::PortInUse(format!("{}:{}-{}/{}", fmt_ip(&ip), h.start, h.end, s.proto)))?;
                    got.push(taken);
                }
                None => {
                    for cp in s.container.iter() {
                        let (lo, hi) = self.range;
                        let start = self.next.clamp(lo, hi);
                        let candidates = (start..=hi).chain(lo..start);
                        let taken = self
                            .first_free(s.proto, ip, cp, candidates)
                            .ok_or_else(|| EngineError::PortInUse(format!("no free host port in {lo}-{hi} for {cp}/{}", s.proto)))?;
                        self.next = taken.0.host_port.saturating_add(1);
                        got.push(taken);
                    }
                }
            }
        }
        Ok(())
    }
}

/// `0.0.0.0`, `127.0.0.1`, `[::1]`.
pub(crate) fn fmt_ip(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// The kernel part of a mapping: IPv4 host addresses are DNATed; IPv6 ones go through the proxy.
pub(crate) fn kernel_ip(ip: &IpAddr) -> Option<Option<Ipv4Addr>> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some(None),
        IpAddr::V4(v4) => Some(Some(*v4)),
        IpAddr::V6(_) => None,
    }
}

/// Whether the in-process proxy serves this mapping: with `--userland-proxy`, and always for an
/// IPv6 host address (the kernel cannot NAT IPv6 to an IPv4 container).
pub(crate) fn needs_proxy(ip: &IpAddr, userland_proxy: bool) -> bool {
    userland_proxy || ip.is_ipv6()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports() {
        let r = parse_reserved("8080, 9000-9002,");
        assert_eq!(r.len(), 4);
        assert!(r.contains(&9001) && r.contains(&8080));
    }
}
