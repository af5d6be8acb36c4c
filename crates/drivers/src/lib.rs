//! The driver boundary: what a kind of network does to the kernel for one endpoint. The engine
//! decides (IPAM, names, the store, the firewall, the DNS); a driver makes and unmakes the
//! endpoint's links through [`LinkOps`], on the daemon's namespace (`host`) and the endpoint's
//! (`inside`), so its steps and their rollback are unit-tested against a recording fake.
//!
//! Today there is one driver, [`bridge::Bridge`]; a new kind is a module here and a line in
//! [`driver`]. Still on the engine's side, to move here next: creating and removing a network's
//! own objects, what a network needs from the firewall, and the reconcile sweep of a driver's
//! leftovers.

pub mod bridge;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use ipnet::{Ipv4Net, Ipv6Net};
use weft_kernel::ops::LinkOps;
use weft_model::DriverKind;

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

/// What every kind of network does for an endpoint.
pub trait Driver: Send + Sync {
    fn kind(&self) -> DriverKind;
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
