//! The driver boundary: what a kind of network does to the kernel for one endpoint. The engine
//! decides (IPAM, names, the store, the firewall, the DNS); a driver makes and unmakes the
//! endpoint's links through [`LinkOps`], on the daemon's namespace (`host`) and the endpoint's
//! (`inside`), so its steps and their rollback are unit-tested against a recording fake.
//!
//! A driver also makes and removes a network's own objects on a host (a bridge, with its
//! gateway address), says which host links are its endpoints (so reconcile can sweep those no
//! record owns) and whether its traffic crosses the host's forwarding path (so the firewall gives
//! the network chains). The veth reaper stays in the engine: it deletes host links by name,
//! whatever made them.
//!
//! Today there is one driver, [`bridge::Bridge`]; a new kind is a module here and a line in
//! [`driver`].

pub mod bridge;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use ipnet::{Ipv4Net, Ipv6Net};
use weft_kernel::ops::LinkOps;
use weft_model::{DriverKind, NetworkRecord};

/// The daemon's settings that a network's objects depend on.
#[derive(Debug, Clone, Copy)]
pub struct HostOptions {
    /// `--iptables`: published ports answer on 127.0.0.1 too (`route_localnet` on the link).
    pub firewall: bool,
    /// `--ip-forward`: dual-stack networks turn IPv6 forwarding on.
    pub ip_forward: bool,
}

/// One endpoint to make: an interface `ifname` inside the namespace `netns_fd`, whose host side
/// (if the kind has one) is `host_ifname`.
#[derive(Debug, Clone)]
pub struct Join<'a> {
    /// The network's own link on the host (the bridge's index), if the kind has one.
    pub network_link: u32,
    pub netns_fd: RawFd,
    pub host_ifname: &'a str,
    pub ifname: &'a str,
    pub addr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// Dual-stack: the IPv6 address and, for the default route, the IPv6 gateway.
    pub v6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// The network answers ARP for this endpoint (see `NetworkRecord::proxy_arp`).
    pub proxy_arp: bool,
    /// Interface indexes for the host end and the inside one (0: the kernel picks; see
    /// `VethSpec::index`): with them an endpoint is two datagrams, one per namespace.
    pub host_index: u32,
    pub index: u32,
}

/// What every kind of network does on a host.
pub trait Driver: Send + Sync {
    fn kind(&self) -> DriverKind;
    /// Makes (or adopts) network `rec`'s own link on this host and returns its index; on
    /// failure, nothing it made stays.
    fn create_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: HostOptions) -> weft_kernel::Result<u32>;
    /// Removes what `create_network` made (a link weft did not make stays).
    fn remove_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord) -> weft_kernel::Result<()>;
    /// The host-side name of a new endpoint (unique; the engine records it).
    fn endpoint_name(&self) -> String;
    /// Whether host link `name` (a port of `master`) is one of this driver's endpoints on one of
    /// `network_links`: reconcile deletes those no record owns.
    fn is_endpoint(&self, name: &str, master: Option<u32>, network_links: &std::collections::HashSet<u32>) -> bool;
    /// Whether the network's traffic crosses the host's forwarding path, where the firewall
    /// filters, isolates and masquerades it.
    fn forwards_through_host(&self) -> bool;
    /// Makes the endpoint; on failure, leaves nothing of it behind.
    fn join(&self, host: &mut dyn LinkOps, inside: &mut dyn LinkOps, j: &Join<'_>) -> weft_kernel::Result<()>;
    /// Removes the endpoint by its host-side name (its inside goes with it).
    fn leave(&self, host: &mut dyn LinkOps, host_ifname: &str) -> weft_kernel::Result<()>;
}

/// The driver of a kind.
pub fn driver(kind: DriverKind) -> &'static dyn Driver {
    match kind {
        DriverKind::Bridge => &bridge::Bridge,
    }
}
