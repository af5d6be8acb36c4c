//! The bridge driver: a veth pair per endpoint, its host end a port of the network's Linux
//! bridge, its peer born in the endpoint's namespace.

use std::sync::Arc;

use weft_kernel::ops::LinkOps;
use weft_kernel::VethSpec;
use weft_model::{NetworkOptions, NetworkRecord};

use crate::{Driver, HostNetwork, HostOptions, Join, NetworkLink};

pub struct Bridge;

/// A bridge network on this host: its bridge, and what its endpoints take from the record.
#[derive(Debug)]
pub struct BridgeNet {
    pub index: u32,
    pub mtu: u32,
    /// The bridge answers ARP for its endpoints (see `NetworkRecord::proxy_arp`): each endpoint's
    /// neighbour entry is pinned on it.
    pub proxy_arp: bool,
}

impl Driver for Bridge {
    /// `br-` + 12 hex of the id, or `com.docker.network.bridge.name`; weft makes it.
    fn network_link(&self, id: &str, o: &NetworkOptions, _internal: bool) -> NetworkLink {
        NetworkLink { what: "bridge", name: o.bridge_name.clone().unwrap_or_else(|| format!("br-{}", weft_model::short_id(id))), made: true }
    }

    /// `ip link add BR mtu M address MAC type bridge mcast_snooping 0; ip addr add GW/P dev BR; ip link set BR up`
    /// (and the IPv6 gateway), with `route_localnet` on it when the firewall publishes ports. A
    /// bridge that exists is adopted; one weft does not manage (`-b`) is used as it is.
    fn create_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<Arc<dyn HostNetwork>> {
        let (index, created) = match host.link_index(&rec.bridge)? {
            Some(i) => (i, false),
            None => (host.create_bridge(&rec.bridge, rec.mtu, weft_model::mac_for(rec.gateway))?, true),
        };
        let configured = (|| {
            // An uplinked bridge takes the uplink's addresses, not the gateway's (the LAN's).
            if rec.managed_bridge && rec.uplink().is_none() {
                host.add_addr(index, ipnet::Ipv4Net::new(rec.gateway, rec.subnet.prefix_len()).expect("prefix of a subnet").into())?;
                if let (Some(s6), Some(g6)) = (rec.subnet6, rec.gateway6) {
                    host.add_addr(index, ipnet::Ipv6Net::new(g6, s6.prefix_len()).expect("prefix of a subnet").into())?;
                }
            }
            if rec.managed_bridge {
                host.set_up(index)?;
                // Restored at every adoption: a static entry for the bridge's address on a port
                // (a container with the bridge's MAC, before weft refused those) took it away
                // with the port, and every container lost the host.
                if rec.uplink().is_none() {
                    host.own_fdb_entry(index, weft_model::mac_for(rec.gateway))?;
                }
            }
            if rec.subnet6.is_some() && o.ip_forward {
                host.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            }
            if o.firewall {
                host.sysctl(&format!("net.ipv4.conf.{}.route_localnet", rec.bridge), "1")?;
            }
            // Last: nothing after it can fail and delete the bridge with the host's addresses.
            if let Some(uplink) = rec.uplink() {
                host.attach_uplink(index, uplink)?;
            }
            Ok(())
        })();
        if let Err(e) = configured {
            if created {
                let _ = host.delete_link(&rec.bridge); // nothing half-made stays
            }
            return Err(e);
        }
        Ok(Arc::new(BridgeNet { index, mtu: rec.mtu, proxy_arp: rec.proxy_arp() }))
    }

    /// The uplink goes back first (its addresses would go with the bridge).
    fn remove_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, _o: &HostOptions) -> weft_kernel::Result<()> {
        if let Some(uplink) = rec.uplink() {
            if let Some(index) = host.link_index(&rec.bridge)? {
                host.detach_uplink(index, uplink)?;
            }
        }
        if rec.managed_bridge {
            host.delete_link(&rec.bridge)?;
        }
        Ok(())
    }

    fn forwards_through_host(&self) -> bool {
        true
    }
}

impl HostNetwork for BridgeNet {
    fn link(&self) -> u32 {
        self.index
    }

    fn endpoint_name(&self) -> Option<String> {
        Some(crate::new_veth_name())
    }

    fn is_endpoint(&self, name: &str, master: Option<u32>) -> bool {
        master == Some(self.index) && crate::is_veth_name(name)
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
                master: Some(self.index),
                mtu: self.mtu,
                peer_name: j.ifname,
                peer_mac: Some(j.mac),
                peer_netns: Some(j.netns_fd),
                up: false,
                port_setup: true,
                proxy_arp: self.proxy_arp,
                index: j.host_index,
                peer_index: j.index,
                pin: self.proxy_arp.then(|| j.addr.addr()),
            })
            .and_then(|()| if self.proxy_arp && j.host_index == 0 { host.pin_neighbour(self.index, j.host_ifname, j.addr.addr(), j.mac) } else { Ok(()) })
            .and_then(|()| if j.configure_inside { inside.configure_interface(j.ifname, j.index, j.addr, j.gateway, j.v6) } else { Ok(()) });
        if made.is_err() {
            let _ = host.delete_link(j.host_ifname);
        }
        made
    }

    /// `ip link set HOST_IFNAME down nomaster`: the bridge forgets the port now, so the later
    /// deletion is of a plain veth (a batch of port removals from a bridge of many ports is slow
    /// and stalls setups).
    fn unplug(&self, host: &mut dyn LinkOps, host_ifname: &str) -> weft_kernel::Result<()> {
        host.release_port(host_ifname)
    }

    /// The pinned neighbour entry of proxy ARP.
    fn forget(&self, host: &mut dyn LinkOps, _host_ifname: Option<&str>, ip: std::net::Ipv4Addr) -> weft_kernel::Result<()> {
        if self.proxy_arp {
            host.unpin_neighbour(self.index, ip)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weft_kernel::ops::Recording;
    use weft_model::DriverKind;

    use super::*;

    fn net(proxy_arp: bool) -> BridgeNet {
        BridgeNet { index: 7, mtu: 1500, proxy_arp }
    }

    fn endpoint() -> Join<'static> {
        Join {
            owner: "c1",
            endpoint_id: "e1",
            netns_fd: -1,
            host_ifname: "vethtest1",
            ifname: "eth0",
            addr: "172.17.0.2/16".parse().expect("net"),
            gateway: Some("172.17.0.1".parse().expect("ip")),
            v6: None,
            mac: [2, 0x42, 172, 17, 0, 2],
            configure_inside: true,
            host_index: 0,
            index: 0,
        }
    }

    fn run(n: &BridgeNet, j: &Join<'_>, host_fails: Option<&str>, inside_fails: Option<&str>) -> (bool, Vec<String>, Vec<String>) {
        let mut host = host_fails.map(Recording::failing).unwrap_or_default();
        let mut inside = inside_fails.map(Recording::failing).unwrap_or_default();
        let ok = n.join(&mut host, &mut inside, j).is_ok();
        (ok, host.calls, inside.calls)
    }

    #[test]
    fn bridge_endpoint_steps_in_order() {
        let (ok, host, inside) = run(&net(true), &endpoint(), None, None);
        assert!(ok);
        assert_eq!(host, ["create_veth vethtest1", "pin_neighbour vethtest1 172.17.0.2"]);
        assert_eq!(inside, ["configure_interface eth0 172.17.0.2/16"]);
        let (_, host, _) = run(&net(false), &endpoint(), None, None);
        assert_eq!(host, ["create_veth vethtest1"], "no pin without proxy ARP");
        // Leaving while the namespace lives: off the bridge now, deleted later, the pin forgotten.
        let mut h = Recording::default();
        let n = net(true);
        n.unplug(&mut h, "vethtest1").expect("unplug");
        n.leave(&mut h, "vethtest1").expect("leave");
        n.forget(&mut h, Some("vethtest1"), "172.17.0.2".parse().expect("ip")).expect("forget");
        assert_eq!(h.calls, ["release_port vethtest1", "delete_link vethtest1", "unpin_neighbour 7 172.17.0.2"]);
        let mut h = Recording::default();
        net(false).forget(&mut h, None, "172.17.0.2".parse().expect("ip")).expect("forget");
        assert!(h.calls.is_empty(), "nothing pinned without proxy ARP");
    }

    fn network(managed: bool) -> NetworkRecord {
        crate::test_record(DriverKind::Bridge, &"0".repeat(64), "br-test", managed, "10.9.0.0/24")
    }

    #[test]
    fn a_network_is_made_adopted_and_rolled_back() {
        let o = &HostOptions { firewall: true, ip_forward: true, ..Default::default() };
        let mut h = Recording::default();
        let index = Bridge.create_network(&mut h, &network(true), o).expect("create").link();
        assert_eq!(
            h.calls,
            ["link_index br-test", "create_bridge br-test mtu 1400", &format!("add_addr {index} 10.9.0.1/24"), &format!("set_up {index}"), &format!("own_fdb_entry {index}"), "sysctl net.ipv4.conf.br-test.route_localnet=1"]
        );
        // Failing after the bridge was made: the bridge goes.
        let mut h = Recording::failing(&format!("set_up {index}"));
        assert!(Bridge.create_network(&mut h, &network(true), o).is_err());
        assert_eq!(h.calls.last().map(String::as_str), Some("delete_link br-test"));
        // The user's bridge (-b): used as it is, never readdressed, never deleted.
        let mut h = Recording::default();
        h.links.push("br-test".into()); // it exists
        Bridge.create_network(&mut h, &network(false), &HostOptions::default()).expect("adopt");
        assert_eq!(h.calls, ["link_index br-test"]);
        Bridge.remove_network(&mut h, &network(false), &HostOptions::default()).expect("remove");
        assert_eq!(h.calls.len(), 1, "nothing deleted");
        Bridge.remove_network(&mut h, &network(true), &HostOptions::default()).expect("remove");
        assert_eq!(h.calls.last().map(String::as_str), Some("delete_link br-test"));
    }

    #[test]
    fn an_uplink_moves_in_last_and_out_first() {
        let mut rec = network(true);
        rec.options.insert(weft_model::OPT_UPLINK.into(), "lan0".into());
        let mut h = Recording::default();
        let index = Bridge.create_network(&mut h, &rec, &HostOptions::default()).expect("create").link();
        // No gateway address (the uplink's addresses come instead), and the move is the last step.
        assert_eq!(h.calls, ["link_index br-test", "create_bridge br-test mtu 1400", &format!("set_up {index}"), &format!("attach_uplink {index} lan0")]);
        // A failed move deletes the new bridge (the move undid itself).
        let mut h = Recording::failing(&format!("attach_uplink {index} lan0"));
        assert!(Bridge.create_network(&mut h, &rec, &HostOptions::default()).is_err());
        assert_eq!(h.calls.last().map(String::as_str), Some("delete_link br-test"));
        // Removal: the uplink back before the bridge goes; if that fails, the bridge stays.
        let mut h = Recording::default();
        h.links.push("br-test".into());
        Bridge.remove_network(&mut h, &rec, &HostOptions::default()).expect("remove");
        assert_eq!(h.calls, ["link_index br-test", "detach_uplink 1 lan0", "delete_link br-test"]);
        let mut h = Recording::failing("detach_uplink 1 lan0");
        h.links.push("br-test".into());
        assert!(Bridge.remove_network(&mut h, &rec, &HostOptions::default()).is_err());
        assert!(!h.calls.contains(&"delete_link br-test".to_string()), "the bridge keeps the host's addresses");
    }

    #[test]
    fn endpoints_are_its_veths_on_its_bridge() {
        let n = net(true);
        let name = n.endpoint_name().expect("a bridge endpoint has a host end");
        assert!(n.is_endpoint(&name, Some(7)));
        assert!(!n.is_endpoint(&name, Some(8)), "another bridge's");
        assert!(!n.is_endpoint(&name, None));
        assert!(!n.is_endpoint("veth0a1b2c3d", Some(7)), "not weft's pattern");
        assert!(!n.is_endpoint("vethxyz1234", Some(7)));
        assert!(!n.is_endpoint("eth0", Some(7)));
    }

    #[test]
    fn with_chosen_indexes_the_pin_rides_on_the_creation() {
        let j = Join { host_index: 0x20_0001, index: 0x20_0002, ..endpoint() };
        let (ok, host, inside) = run(&net(true), &j, None, None);
        assert!(ok);
        assert_eq!(host, ["create_veth vethtest1 pinning 172.17.0.2"]);
        assert_eq!(inside, ["configure_interface eth0 172.17.0.2/16"]);
        // A failed creation (name or index taken) still deletes what it may have made.
        let (ok, host, inside) = run(&net(true), &j, Some("create_veth vethtest1 pinning 172.17.0.2"), None);
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1 pinning 172.17.0.2", "delete_link vethtest1"]);
        assert!(inside.is_empty());
    }

    #[test]
    fn a_failed_step_deletes_the_veth_and_stops() {
        // The creation itself (it may have half happened: the port setup shares its datagram).
        let (ok, host, inside) = run(&net(true), &endpoint(), Some("create_veth vethtest1"), None);
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1", "delete_link vethtest1"]);
        assert!(inside.is_empty(), "nothing configured inside");
        let (ok, host, inside) = run(&net(true), &endpoint(), Some("pin_neighbour vethtest1 172.17.0.2"), None);
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1", "pin_neighbour vethtest1 172.17.0.2", "delete_link vethtest1"]);
        assert!(inside.is_empty());
        // Inside: the veth goes, and its peer (configured or not) with it.
        let (ok, host, inside) = run(&net(false), &endpoint(), None, Some("configure_interface eth0 172.17.0.2/16"));
        assert!(!ok);
        assert_eq!(host, ["create_veth vethtest1", "delete_link vethtest1"]);
        assert_eq!(inside, ["configure_interface eth0 172.17.0.2/16"]);
    }
}
