//! The bridge driver: a veth pair per endpoint, its host end a port of the network's Linux
//! bridge, its peer born in the endpoint's namespace.

use weft_kernel::ops::LinkOps;
use weft_kernel::VethSpec;
use weft_model::DriverKind;

use crate::{Driver, Join};

pub struct Bridge;

impl Driver for Bridge {
    fn kind(&self) -> DriverKind {
        DriverKind::Bridge
    }

    /// The veth born with its peer inside (created and set up as a port in one datagram, with
    /// the pinned neighbour of proxy ARP when the indexes are chosen; in a request of its own
    /// otherwise), then the interface's configuration inside. A failed step
    /// deletes the veth (the creation may have succeeded and the port setup in the same datagram
    /// failed), which takes the peer and everything configured on it along.
    fn join(&self, host: &mut dyn LinkOps, inside: &mut dyn LinkOps, j: &Join<'_>) -> weft_kernel::Result<()> {
        let made = host
            .create_veth(&VethSpec {
                host_name: j.host_ifname,
                master: Some(j.network_link),
                mtu: j.mtu,
                peer_name: j.ifname,
                peer_mac: Some(j.mac),
                peer_netns: Some(j.netns_fd),
                up: false,
                port_setup: true,
                proxy_arp: j.proxy_arp,
                index: j.host_index,
                peer_index: j.index,
                pin: j.proxy_arp.then(|| j.addr.addr()),
            })
            .and_then(|()| if j.proxy_arp && j.host_index == 0 { host.pin_neighbour(j.network_link, j.host_ifname, j.addr.addr(), j.mac) } else { Ok(()) })
            .and_then(|()| inside.configure_interface(j.ifname, j.index, j.addr, j.gateway, j.v6));
        if made.is_err() {
            let _ = host.delete_link(j.host_ifname);
        }
        made
    }

    /// `ip link del HOST_IFNAME` (the peer goes with it).
    fn leave(&self, host: &mut dyn LinkOps, host_ifname: &str) -> weft_kernel::Result<()> {
        host.delete_link(host_ifname)
    }
}

#[cfg(test)]
mod tests {
    use weft_kernel::ops::Recording;

    use super::*;
    use crate::driver;

    fn endpoint(proxy_arp: bool) -> Join<'static> {
        Join {
            network_link: 7,
            netns_fd: -1,
            host_ifname: "vethtest1",
            ifname: "eth0",
            addr: "172.17.0.2/16".parse().expect("net"),
            gateway: Some("172.17.0.1".parse().expect("ip")),
            v6: None,
            mtu: 1500,
            mac: [2, 0x42, 172, 17, 0, 2],
            proxy_arp,
            host_index: 0,
            index: 0,
        }
    }

    fn run(j: &Join<'_>, host_fails: Option<&str>, inside_fails: Option<&str>) -> (bool, Vec<String>, Vec<String>) {
        let mut host = host_fails.map(Recording::failing).unwrap_or_default();
        let mut inside = inside_fails.map(Recording::failing).unwrap_or_default();
        let ok = driver(DriverKind::Bridge).join(&mut host, &mut inside, j).is_ok();
        (ok, host.calls, inside.calls)
    }

    #[test]
    fn bridge_endpoint_steps_in_order() {
        let (ok, host, inside) = run(&endpoint(true), None, None);
        assert!(ok);
        assert_eq!(host, ["create_veth vethtest1", "pin_neighbour vethtest1 172.17.0.2"]);
        assert_eq!(inside, ["configure_interface eth0 172.17.0.2/16"]);
        let (_, host, _) = run(&endpoint(false), None, None);
        assert_eq!(host, ["create_veth vethtest1"], "no pin without proxy ARP");
        let mut h = Recording::default();
        Bridge.leave(&mut h, "vethtest1").expect("leave");
        assert_eq!(h.calls, ["delete_link vethtest1"]);
    }

    #[test]
    fn with_chosen_indexes_the_pin_rides_on_the_creation() {
        let j = Join { host_index: 0x20_0001, index: 0x20_0002, ..endpoint(true) };
        let (ok, host, inside) = run(&j, None, None);
        assert!(ok);
        assert_eq!(host, ["create_veth vethtest1 pinning 172.17.0.2"]);
        assert_eq!(inside, ["configure_interface eth0 172.17.0.2/16"]);
        // A failed creation (name or index taken) still deletes what it may have made.
        let (ok, host, inside) = run(&j, Some("create_veth vethtest1 pinning 172.17.0.2"), None);
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1 pinning 172.17.0.2", "delete_link vethtest1"]);
        assert!(inside.is_empty());
    }

    #[test]
    fn a_failed_step_deletes_the_veth_and_stops() {
        // The creation itself (it may have half happened: the port setup shares its datagram).
        let (ok, host, inside) = run(&endpoint(true), Some("create_veth vethtest1"), None);
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1", "delete_link vethtest1"]);
        assert!(inside.is_empty(), "nothing configured inside");
        let (ok, host, inside) = run(&endpoint(true), Some("pin_neighbour vethtest1 172.17.0.2"), None);
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1", "pin_neighbour vethtest1 172.17.0.2", "delete_link vethtest1"]);
        assert!(inside.is_empty());
        // Inside: the veth goes, and its peer (configured or not) with it.
        let (ok, host, inside) = run(&endpoint(false), None, Some("configure_interface eth0 172.17.0.2/16"));
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1", "delete_link vethtest1"]);
        assert_eq!(inside, ["configure_interface eth0 172.17.0.2/16"]);
    }
}
