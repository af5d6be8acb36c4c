//! The seam between the drivers and the kernel: the link operations a driver's endpoint
//! sequencing uses, over one namespace's rtnetlink socket. [`Netlink`] is the real one;
//! [`Recording`] writes each call down (and fails the one it is told to), so the order of the
//! steps and the rollback of a failed one are unit-tested without root. The integration tests
//! stay the proof that the real calls work.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::links::LinkSpec;
use crate::{KernelError, Netlink, Result, VethSpec};

pub trait LinkOps {
    /// The index of link `name`, if it exists (`ip link show NAME`).
    fn link_index(&mut self, name: &str) -> Result<Option<u32>>;
    /// `ip link add NAME mtu MTU address MAC type bridge mcast_snooping 0`; returns its index.
    fn create_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> Result<u32>;
    /// `ip addr add ADDR dev INDEX` (an address already there is fine), IPv4 or IPv6.
    fn add_addr(&mut self, index: u32, addr: ipnet::IpNet) -> Result<()>;
    /// `ip link set INDEX up`.
    fn set_up(&mut self, index: u32) -> Result<()>;
    /// `bridge fdb replace MAC dev BRIDGE self local`: the bridge's own forwarding entry (a
    /// static entry for its address on a port, once that port goes, takes it away).
    fn own_fdb_entry(&mut self, bridge: u32, mac: [u8; 6]) -> Result<()>;
    /// `sysctl -w KEY=VALUE` in this namespace.
    fn sysctl(&mut self, key: &str, value: &str) -> Result<()>;
    /// `ip link add HOST type veth peer name PEER [netns NS] [address MAC]`, `master BRIDGE`, up.
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()>;
    /// `bridge fdb replace MAC dev PORT master static` and `ip neigh replace IP lladdr MAC dev BRIDGE nud permanent`.
    fn pin_neighbour(&mut self, bridge: u32, port: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()>;
    /// `ip link del NAME`.
    fn delete_link(&mut self, name: &str) -> Result<()>;
    /// The link `spec` describes (`spec.ip_command()`); its index (0 if born in another namespace).
    fn create_link(&mut self, spec: &LinkSpec) -> Result<u32>;
    /// `ip link set NAME down nomaster`.
    fn release_port(&mut self, name: &str) -> Result<()>;
    /// `ip neigh del IP dev BRIDGE` (an entry already gone is fine).
    fn unpin_neighbour(&mut self, bridge: u32, ip: Ipv4Addr) -> Result<()>;
    /// `ip link set UPLINK master BRIDGE`, its addresses and routes moved to the bridge (see
    /// `uplink`); an uplink that is the bridge's port already is fine.
    fn attach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()>;
    /// The reverse (an uplink that is not the bridge's port is fine).
    fn detach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()>;
    /// `ethtool -K IFNAME tx off`.
    fn tx_checksum_off(&mut self, ifname: &str) -> Result<()>;
    /// `ip addr add ADDR dev IF; ip link set IF up; ip route add default via GW` (and IPv6);
    /// `index` is the interface's if known (0: looked up by name).
    fn configure_interface(&mut self, ifname: &str, index: u32, addr: Ipv4Net, gateway: Option<Ipv4Addr>, v6: Option<(Ipv6Net, Option<Ipv6Addr>)>) -> Result<()>;
}

impl LinkOps for Netlink {
    fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.link(name)?.map(|l| l.index))
    }
    fn create_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> Result<u32> {
        Netlink::create_bridge(self, name, mtu, mac)
    }
    fn add_addr(&mut self, index: u32, addr: ipnet::IpNet) -> Result<()> {
        match addr {
            ipnet::IpNet::V4(a) => Netlink::add_addr(self, index, a),
            ipnet::IpNet::V6(a) => Netlink::add_addr6(self, index, a),
        }
    }
    fn set_up(&mut self, index: u32) -> Result<()> {
        Netlink::set_up(self, index)
    }
    fn own_fdb_entry(&mut self, bridge: u32, mac: [u8; 6]) -> Result<()> {
        Netlink::own_fdb_entry(self, bridge, mac)
    }
    /// (The socket's namespace is the calling thread's, and so is `/proc/sys/net`'s.)
    fn sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        crate::sysctl::write(key, value)
    }
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        Netlink::create_veth(self, spec)
    }
    fn pin_neighbour(&mut self, bridge: u32, port: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        Netlink::pin_neighbour(self, bridge, port, ip, mac)
    }
    fn delete_link(&mut self, name: &str) -> Result<()> {
        Netlink::delete_link(self, name)
    }
    fn create_link(&mut self, spec: &LinkSpec) -> Result<u32> {
        Netlink::create_link(self, spec)
    }
    fn release_port(&mut self, name: &str) -> Result<()> {
        Netlink::release_port(self, name)
    }
    fn unpin_neighbour(&mut self, bridge: u32, ip: Ipv4Addr) -> Result<()> {
        Netlink::unpin_neighbour(self, bridge, ip)
    }
    fn attach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()> {
        let Some(l) = self.link(uplink)? else { return Err(errno("find the uplink", uplink, libc::ENODEV)) };
        match l.master {
            Some(m) if m == bridge => Ok(()),
            Some(_) => Err(errno("take the uplink (a port of another bridge)", uplink, libc::EBUSY)),
            None => self.enslave_uplink(bridge, l.index, l.mac).map(|c| tracing::info!(uplink, addresses = ?c.addrs, routes = c.route_count(), "uplink moved into the bridge")),
        }
    }
    fn tx_checksum_off(&mut self, ifname: &str) -> Result<()> {
        Netlink::tx_checksum_off(self, ifname)
    }
    fn detach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()> {
        match self.link(uplink)? {
            Some(l) if l.master == Some(bridge) => self.release_uplink(bridge, l.index).map(|c| tracing::info!(uplink, addresses = ?c.addrs, routes = c.route_count(), "uplink given back")),
            _ => Ok(()),
        }
    }
    fn configure_interface(&mut self, ifname: &str, index: u32, addr: Ipv4Net, gateway: Option<Ipv4Addr>, v6: Option<(Ipv6Net, Option<Ipv6Addr>)>) -> Result<()> {
        Netlink::configure_interface(self, ifname, index, addr, gateway, v6)
    }
}

/// A namespace's socket still being opened ([`crate::netns::open_in_background`]): every call
/// first waits for it.
impl LinkOps for crate::netns::Opening {
    fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        LinkOps::link_index(self.get()?, name)
    }
    fn create_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> Result<u32> {
        LinkOps::create_bridge(self.get()?, name, mtu, mac)
    }
    fn add_addr(&mut self, index: u32, addr: ipnet::IpNet) -> Result<()> {
        LinkOps::add_addr(self.get()?, index, addr)
    }
    fn set_up(&mut self, index: u32) -> Result<()> {
        LinkOps::set_up(self.get()?, index)
    }
    fn own_fdb_entry(&mut self, bridge: u32, mac: [u8; 6]) -> Result<()> {
        LinkOps::own_fdb_entry(self.get()?, bridge, mac)
    }
    fn sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        LinkOps::sysctl(self.get()?, key, value)
    }
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        LinkOps::create_veth(self.get()?, spec)
    }
    fn pin_neighbour(&mut self, bridge: u32, port: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        LinkOps::pin_neighbour(self.get()?, bridge, port, ip, mac)
    }
    fn delete_link(&mut self, name: &str) -> Result<()> {
        LinkOps::delete_link(self.get()?, name)
    }
    fn create_link(&mut self, spec: &LinkSpec) -> Result<u32> {
        LinkOps::create_link(self.get()?, spec)
    }
    fn release_port(&mut self, name: &str) -> Result<()> {
        LinkOps::release_port(self.get()?, name)
    }
    fn unpin_neighbour(&mut self, bridge: u32, ip: Ipv4Addr) -> Result<()> {
        LinkOps::unpin_neighbour(self.get()?, bridge, ip)
    }
    fn attach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()> {
        LinkOps::attach_uplink(self.get()?, bridge, uplink)
    }
    fn detach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()> {
        LinkOps::detach_uplink(self.get()?, bridge, uplink)
    }
    fn tx_checksum_off(&mut self, ifname: &str) -> Result<()> {
        LinkOps::tx_checksum_off(self.get()?, ifname)
    }
    fn configure_interface(&mut self, ifname: &str, index: u32, addr: Ipv4Net, gateway: Option<Ipv4Addr>, v6: Option<(Ipv6Net, Option<Ipv6Addr>)>) -> Result<()> {
        LinkOps::configure_interface(self.get()?, ifname, index, addr, gateway, v6)
    }
}

/// A [`LinkOps`] that records `"op name"` for every call and fails the call whose record is
/// `fail` (with EEXIST, as the kernel answers a name taken). `links` are the links that exist
/// in its namespace (index: position + 1): those given, and those made through it.
#[derive(Debug, Default)]
pub struct Recording {
    pub calls: Vec<String>,
    pub fail: Option<String>,
    pub links: Vec<String>,
}

impl Recording {
    pub fn failing(call: &str) -> Self {
        Self { calls: Vec::new(), fail: Some(call.to_string()), links: Vec::new() }
    }

    /// A link made here: it exists from now on; its index.
    fn made(&mut self, name: &str) -> u32 {
        self.links.push(name.to_string());
        self.links.len() as u32
    }

    fn record(&mut self, call: String) -> Result<()> {
        let failed = self.fail.as_deref() == Some(call.as_str());
        self.calls.push(call.clone());
        if failed {
            return Err(KernelError::Netlink { op: "recorded", subject: call, source: std::io::Error::from_raw_os_error(libc::EEXIST) });
        }
        Ok(())
    }
}

impl LinkOps for Recording {
    fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        self.record(format!("link_index {name}"))?;
        Ok(self.links.iter().position(|l| l == name).map(|i| i as u32 + 1))
    }
    fn create_bridge(&mut self, name: &str, mtu: u32, _mac: [u8; 6]) -> Result<u32> {
        self.record(format!("create_bridge {name} mtu {mtu}"))?;
        Ok(self.made(name))
    }
    fn add_addr(&mut self, index: u32, addr: ipnet::IpNet) -> Result<()> {
        self.record(format!("add_addr {index} {addr}"))
    }
    fn set_up(&mut self, index: u32) -> Result<()> {
        self.record(format!("set_up {index}"))
    }
    fn own_fdb_entry(&mut self, bridge: u32, _mac: [u8; 6]) -> Result<()> {
        self.record(format!("own_fdb_entry {bridge}"))
    }
    fn sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        self.record(format!("sysctl {key}={value}"))
    }
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        match spec.pin.filter(|_| spec.index != 0) {
            Some(ip) => self.record(format!("create_veth {} pinning {ip}", spec.host_name))?,
            None => self.record(format!("create_veth {}", spec.host_name))?,
        }
        self.made(spec.host_name);
        if spec.peer_netns.is_none() {
            self.made(spec.peer_name);
        }
        Ok(())
    }
    fn pin_neighbour(&mut self, _bridge: u32, port: &str, ip: Ipv4Addr, _mac: [u8; 6]) -> Result<()> {
        self.record(format!("pin_neighbour {port} {ip}"))
    }
    fn delete_link(&mut self, name: &str) -> Result<()> {
        self.record(format!("delete_link {name}"))
    }
    /// Records the `ip` command.
    fn create_link(&mut self, spec: &LinkSpec) -> Result<u32> {
        self.record(spec.ip_command())?;
        Ok(if spec.netns.is_some() { 0 } else { self.made(&spec.name) })
    }
    fn release_port(&mut self, name: &str) -> Result<()> {
        self.record(format!("release_port {name}"))
    }
    fn unpin_neighbour(&mut self, bridge: u32, ip: Ipv4Addr) -> Result<()> {
        self.record(format!("unpin_neighbour {bridge} {ip}"))
    }
    fn attach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()> {
        self.record(format!("attach_uplink {bridge} {uplink}"))
    }
    fn detach_uplink(&mut self, bridge: u32, uplink: &str) -> Result<()> {
        self.record(format!("detach_uplink {bridge} {uplink}"))
    }
    fn tx_checksum_off(&mut self, ifname: &str) -> Result<()> {
        self.record(format!("tx_checksum_off {ifname}"))
    }
    fn configure_interface(&mut self, ifname: &str, _index: u32, addr: Ipv4Net, _gateway: Option<Ipv4Addr>, _v6: Option<(Ipv6Net, Option<Ipv6Addr>)>) -> Result<()> {
        self.record(format!("configure_interface {ifname} {addr}"))
    }
}

fn errno(op: &'static str, subject: &str, code: i32) -> KernelError {
    KernelError::Netlink { op, subject: subject.to_string(), source: std::io::Error::from_raw_os_error(code) }
}
