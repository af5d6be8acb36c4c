//! The driver boundary: what a kind of network does to the kernel. The engine decides (IPAM,
//! names, the store, the firewall, the DNS); a driver makes and unmakes links through
//! [`LinkOps`], on the daemon's namespace (`host`) and the endpoint's (`inside`), so its steps and
//! their rollback are unit-tested against a recording fake.
//!
//! A [`Driver`] names a network's own link on a host (a bridge weft makes, a macvlan network's
//! parent), makes or adopts it ([`Driver::create_network`]) and removes it, and says whether the
//! network's traffic crosses the host's forwarding path (so the firewall gives it chains). What
//! it makes is a [`HostNetwork`]: the network on this host, which makes and unmakes endpoints
//! and recognises its own (so reconcile sweeps those no record owns). An endpoint either has a
//! host end (a bridge's veth: the engine's reaper deletes it by name, in batches) or is only its
//! interface inside the sandbox (a macvlan link: it goes with the namespace, or the engine
//! deletes it there).
//!
//! A new kind is a module here and a line in [`driver`].

pub mod bridge;
pub mod macvlan;
pub mod overlay;
pub mod ovs;
pub mod ovsdb;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use weft_kernel::ops::LinkOps;
use weft_model::{DriverKind, NetworkOptions, NetworkRecord};

/// The daemon's settings that a network's objects depend on.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// `--iptables`: published ports answer on 127.0.0.1 too (`route_localnet` on the link).
    pub firewall: bool,
    /// `--ip-forward`: dual-stack networks turn IPv6 forwarding on.
    pub ip_forward: bool,
    /// `--ovsdb`: ovsdb-server's socket, for Open vSwitch networks.
    pub ovsdb: std::path::PathBuf,
    /// `--advertise-addr`: the source of overlay tunnels.
    pub advertise_addr: Option<Ipv4Addr>,
}

/// The network's own link on a host, as `network create` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkLink {
    pub name: String,
    /// What it is, in messages: "bridge", "parent interface".
    pub what: &'static str,
    /// weft makes it (and so the name must be free); otherwise it must exist.
    pub made: bool,
}

/// One endpoint to make: an interface `ifname` inside the namespace `netns_fd`, whose host side
/// (if the kind has one) is `host_ifname`.
#[derive(Debug, Clone)]
pub struct Join<'a> {
    /// The sandbox's owner (a container's id) and the endpoint's id, for drivers that label
    /// their ports with them.
    pub owner: &'a str,
    pub endpoint_id: &'a str,
    pub netns_fd: RawFd,
    pub host_ifname: &'a str,
    pub ifname: &'a str,
    pub addr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// Dual-stack: the IPv6 address and, for the default route, the IPv6 gateway.
    pub v6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
    pub mac: [u8; 6],
    /// Configure the inside end (addresses, routes, up). Without: it is left down and bare in
    /// the namespace it was made in, for a runtime that moves and configures it itself (Docker's
    /// `Join` answers with its name).
    pub configure_inside: bool,
    /// Interface indexes for the host end and the inside one (0: the kernel picks; see
    /// `VethSpec::index`): with them an endpoint is two datagrams, one per namespace.
    pub host_index: u32,
    pub index: u32,
}

/// What every kind of network does on a host.
pub trait Driver: Send + Sync {
    /// The network's own link for network `id` with options `o`.
    fn network_link(&self, id: &str, o: &NetworkOptions, internal: bool) -> NetworkLink;
    /// Makes (or adopts) network `rec`'s own link on this host; on failure, nothing it made
    /// stays.
    fn create_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<Arc<dyn HostNetwork>>;
    /// Removes what `create_network` made (a link weft did not make stays).
    fn remove_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<()>;
    /// Whether the network's traffic crosses the host's forwarding path, where the firewall
    /// filters, isolates and masquerades it (and publishes ports).
    fn forwards_through_host(&self) -> bool;
}

/// A network on this host, as its driver made or adopted it: what its endpoints are made
/// against.
pub trait HostNetwork: Send + Sync + std::fmt::Debug {
    /// The network's own link (a bridge, a parent): its index.
    fn link(&self) -> u32;
    /// The host-side name of a new endpoint (unique; the engine records it); `None`: the
    /// endpoint is only its interface inside the sandbox.
    fn endpoint_name(&self) -> Option<String>;
    /// Whether host link `name` (a port of `master`) is one of this network's endpoints:
    /// reconcile deletes those no record owns.
    fn is_endpoint(&self, name: &str, master: Option<u32>) -> bool;
    /// Makes the endpoint; on failure, leaves nothing of it behind.
    fn join(&self, host: &mut dyn LinkOps, inside: &mut dyn LinkOps, j: &Join<'_>) -> weft_kernel::Result<()>;
    /// Removes an endpoint with a host end by that name (its inside goes with it).
    fn leave(&self, host: &mut dyn LinkOps, host_ifname: &str) -> weft_kernel::Result<()> {
        host.delete_link(host_ifname)
    }
    /// Takes the host end of an endpoint whose namespace lives on off the network at once, ahead
    /// of its (batched, later) deletion.
    fn unplug(&self, _host: &mut dyn LinkOps, _host_ifname: &str) -> weft_kernel::Result<()> {
        Ok(())
    }
    /// After an endpoint is gone and before its address is handed out again: what the network
    /// held for that address.
    fn forget(&self, _host: &mut dyn LinkOps, _host_ifname: Option<&str>, _ip: Ipv4Addr) -> weft_kernel::Result<()> {
        Ok(())
    }
}

/// The driver of a kind.
pub fn driver(kind: DriverKind) -> &'static dyn Driver {
    match kind {
        DriverKind::Bridge => &bridge::Bridge,
        DriverKind::Macvlan => &macvlan::Macvlan,
        DriverKind::Ovs => &ovs::Ovs,
        DriverKind::Overlay => &overlay::Overlay,
    }
}

/// A network whose link could not be made or found on this host when the daemon adopted it (a
/// macvlan parent gone, ovsdb-server down): known, listed and removable; new endpoints are
/// refused with the reason.
#[derive(Debug)]
pub struct Unavailable {
    pub reason: String,
}

impl HostNetwork for Unavailable {
    fn link(&self) -> u32 {
        0
    }
    fn endpoint_name(&self) -> Option<String> {
        None
    }
    fn is_endpoint(&self, _name: &str, _master: Option<u32>) -> bool {
        false
    }
    fn join(&self, _host: &mut dyn LinkOps, _inside: &mut dyn LinkOps, _j: &Join<'_>) -> weft_kernel::Result<()> {
        Err(weft_kernel::KernelError::Netlink {
            op: "use the network, unavailable on this host since weftd started",
            subject: format!("({})", self.reason),
            source: std::io::Error::from_raw_os_error(19),
        })
    }
}

/// A new endpoint's host end: `veth` + 7 hex digits.
pub(crate) fn new_veth_name() -> String {
    format!("veth{}", &weft_model::new_id()[..7])
}

/// Whether `name` is a host end [`new_veth_name`] made.
pub(crate) fn is_veth_name(name: &str) -> bool {
    name.len() == 11 && name.starts_with("veth") && name[4..].chars().all(|c| c.is_ascii_hexdigit())
}

/// A network record for the drivers' unit tests: `link` made by weft if `made`.
#[cfg(test)]
pub(crate) fn test_record(driver: DriverKind, id: &str, link: &str, made: bool, subnet: &str) -> NetworkRecord {
    let subnet: Ipv4Net = subnet.parse().expect("a subnet");
    NetworkRecord {
        id: id.into(),
        name: "test".into(),
        driver,
        bridge: link.into(),
        subnet,
        gateway: subnet.hosts().next().expect("hosts"),
        ip_range: None,
        mtu: 1400,
        managed_bridge: made,
        icc: true,
        masquerade: true,
        internal: false,
        created: 0,
        options: Default::default(),
        aux_addresses: Default::default(),
        labels: Default::default(),
        host_binding_ipv4: None,
        subnet6: None,
        gateway6: None,
        scope: Default::default(),
        proxy_arp_option: None,
        routed_range: None,
    }
}

/// A link that must exist and does not: ENODEV, naming it.
pub(crate) fn missing(what: &'static str, name: &str) -> weft_kernel::KernelError {
    weft_kernel::KernelError::Netlink { op: what, subject: name.to_string(), source: std::io::Error::from_raw_os_error(19) }
}
