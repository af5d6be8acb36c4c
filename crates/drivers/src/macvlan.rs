//! The macvlan driver: each endpoint is a macvlan link of the network's parent, born in the
//! endpoint's namespace with its own MAC, so containers sit on the parent's L2 directly (no
//! bridge, no NAT: the host's forwarding path is not crossed, and the host itself cannot reach
//! them through the parent, as the kernel's macvlan works). A network without a parent, or an
//! `--internal` one, hangs off a link of weft's with no way out (`dm-` + 12 hex of its id), as
//! Docker's does: its containers reach each other only. Docker makes a dummy link; this kernel
//! (like others built without `CONFIG_DUMMY`) has none, so the stand-in is a veth pair, `dm-…`
//! and its peer `dp-…`, both up (a macvlan needs its parent's carrier) and nothing beyond.

use std::sync::Arc;

use weft_kernel::links::{LinkKind, LinkSpec, MacvlanMode};
use weft_kernel::ops::LinkOps;
use weft_model::{NetworkOptions, NetworkRecord, OPT_MACVLAN_MODE, OPT_MTU};

use crate::{missing, Driver, HostNetwork, HostOptions, Join, NetworkLink};

pub struct Macvlan;

/// A macvlan network on this host: its parent and what its endpoints take from the record.
#[derive(Debug)]
pub struct MacvlanNet {
    pub parent: u32,
    pub parent_name: String,
    pub mode: MacvlanMode,
    /// `com.docker.network.driver.mtu` if given; otherwise the parent's.
    pub mtu: Option<u32>,
}

impl Driver for Macvlan {
    fn network_link(&self, id: &str, o: &NetworkOptions, internal: bool) -> NetworkLink {
        match o.parent.as_ref().filter(|_| !internal) {
            Some(parent) => NetworkLink { what: "parent interface", name: parent.clone(), made: false },
            None => NetworkLink { what: "dummy link", name: format!("dm-{}", weft_model::short_id(id)), made: true },
        }
    }

    /// The parent must exist; weft's stand-in is made or adopted (see the module's note).
    fn create_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, _o: &HostOptions) -> weft_kernel::Result<Arc<dyn HostNetwork>> {
        let parent = match host.link_index(&rec.bridge)? {
            Some(i) => i,
            None if rec.managed_bridge => stand_in(host, &rec.bridge)?,
            None => return Err(missing("find the parent interface", &rec.bridge)),
        };
        Ok(Arc::new(MacvlanNet {
            parent,
            parent_name: rec.bridge.clone(),
            mode: rec.options.get(OPT_MACVLAN_MODE).and_then(|m| MacvlanMode::parse(m)).unwrap_or(MacvlanMode::Bridge),
            mtu: rec.options.contains_key(OPT_MTU).then_some(rec.mtu),
        }))
    }

    /// Weft's stand-in goes (its peer with it); a parent stays.
    fn remove_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, _o: &HostOptions) -> weft_kernel::Result<()> {
        if rec.managed_bridge {
            host.delete_link(&rec.bridge)?;
        }
        Ok(())
    }

    fn forwards_through_host(&self) -> bool {
        false
    }
}

/// `ip link add NAME up type veth peer name dp-…; ip link set dp-… up`; returns NAME's index.
/// Rolled back whole.
fn stand_in(host: &mut dyn LinkOps, name: &str) -> weft_kernel::Result<u32> {
    let peer = format!("dp-{}", name.trim_start_matches("dm-"));
    host.create_veth(&weft_kernel::VethSpec {
        host_name: name,
        master: None,
        mtu: 1500,
        peer_name: &peer,
        peer_mac: None,
        peer_netns: None,
        up: true,
        port_setup: false,
        proxy_arp: false,
        index: 0,
        peer_index: 0,
        pin: None,
    })?;
    let made = (|| {
        let p = host.link_index(&peer)?.ok_or_else(|| missing("find the stand-in's peer", &peer))?;
        host.set_up(p)?;
        host.link_index(name)?.ok_or_else(|| missing("find the stand-in", name))
    })();
    if made.is_err() {
        let _ = host.delete_link(name);
    }
    made
}

impl HostNetwork for MacvlanNet {
    fn link(&self) -> u32 {
        self.parent
    }

    fn endpoint_name(&self) -> Option<String> {
        None
    }

    fn is_endpoint(&self, _name: &str, _master: Option<u32>) -> bool {
        false
    }

    /// `ip link add IF link PARENT netns NS address MAC index N type macvlan mode MODE` (one
    /// request from the daemon's namespace: the parent is found there, the link is born inside),
    /// then the interface's configuration inside; a failure there deletes the link.
    fn join(&self, host: &mut dyn LinkOps, inside: &mut dyn LinkOps, j: &Join<'_>) -> weft_kernel::Result<()> {
        let mut spec = LinkSpec::new(j.ifname, LinkKind::Macvlan { parent: self.parent, parent_name: self.parent_name.clone(), mode: self.mode })
            .netns(j.netns_fd)
            .mac(j.mac)
            .index(j.index);
        if let Some(m) = self.mtu {
            spec = spec.mtu(m);
        }
        host.create_link(&spec)?;
        let configured = if j.configure_inside { inside.configure_interface(j.ifname, j.index, j.addr, j.gateway, j.v6) } else { Ok(()) };
        if configured.is_err() {
            let _ = inside.delete_link(j.ifname);
        }
        configured
    }
}

#[cfg(test)]
mod tests {
    use weft_kernel::ops::Recording;
    use weft_model::DriverKind;

    use super::*;

    fn network(parent: Option<&str>, internal: bool) -> NetworkRecord {
        let id = "ab".repeat(32);
        let mut options = std::collections::BTreeMap::new();
        if let Some(p) = parent {
            options.insert(weft_model::OPT_PARENT.to_string(), p.to_string());
        }
        options.insert(OPT_MACVLAN_MODE.to_string(), "private".to_string());
        let link = Macvlan.network_link(&id, &NetworkOptions { parent: parent.map(String::from), ..Default::default() }, internal);
        NetworkRecord { internal, options, ..crate::test_record(DriverKind::Macvlan, &id, &link.name, link.made, "192.168.50.0/24") }
    }

    fn join() -> Join<'static> {
        Join {
            owner: "c1",
            endpoint_id: "e1",
            netns_fd: 9,
            host_ifname: "",
            ifname: "eth0",
            addr: "192.168.50.2/24".parse().expect("net"),
            gateway: Some("192.168.50.1".parse().expect("ip")),
            v6: None,
            mac: [2, 0x42, 192, 168, 50, 2],
            configure_inside: true,
            host_index: 0,
            index: 0x40_0001,
        }
    }

    #[test]
    fn the_parent_must_exist_and_stays() {
        let rec = network(Some("up0"), false);
        assert_eq!((rec.bridge.as_str(), rec.managed_bridge), ("up0", false));
        let mut h = Recording::default(); // no up0 in it
        let err = Macvlan.create_network(&mut h, &rec, &HostOptions::default()).expect_err("no parent");
        assert!(err.to_string().contains("up0"), "{err}");
        assert_eq!(h.calls, ["link_index up0"], "nothing made for a missing parent");
        Macvlan.remove_network(&mut h, &rec, &HostOptions::default()).expect("remove");
        assert_eq!(h.calls.len(), 1, "a parent is never deleted");
    }

    #[test]
    fn an_internal_network_or_one_without_parent_has_a_stand_in() {
        for rec in [network(None, false), network(Some("up0"), true)] {
            assert_eq!(rec.bridge, format!("dm-{}", "ab".repeat(6)));
            let mut h = Recording::default();
            let peer = format!("dp-{}", "ab".repeat(6));
            let net = Macvlan.create_network(&mut h, &rec, &HostOptions::default());
            assert_eq!(h.calls[..2], [format!("link_index {}", rec.bridge), format!("create_veth {}", rec.bridge)]);
            assert_eq!(h.calls[2..], [format!("link_index {peer}"), "set_up 2".to_string(), format!("link_index {}", rec.bridge)]);
            assert_eq!(net.expect("create").link(), 1);
            // A failure after the pair was made deletes it.
            let mut h = Recording::failing("set_up 2");
            assert!(Macvlan.create_network(&mut h, &rec, &HostOptions::default()).is_err());
            assert_eq!(h.calls.last(), Some(&format!("delete_link {}", rec.bridge)));
            Macvlan.remove_network(&mut h, &rec, &HostOptions::default()).expect("remove");
            assert_eq!(h.calls.last(), Some(&format!("delete_link {}", rec.bridge)));
        }
    }

    #[test]
    fn an_endpoint_is_born_inside_and_deleted_there_on_failure() {
        let net = MacvlanNet { parent: 3, parent_name: "up0".into(), mode: MacvlanMode::Private, mtu: None };
        assert_eq!(net.endpoint_name(), None, "no host end");
        let (mut host, mut inside) = (Recording::default(), Recording::default());
        net.join(&mut host, &mut inside, &join()).expect("join");
        assert_eq!(host.calls, ["ip link add eth0 link up0 address 02:42:c0:a8:32:02 netns NS index 4194305 type macvlan mode private"]);
        assert_eq!(inside.calls, ["configure_interface eth0 192.168.50.2/24"]);
        let (mut host, mut inside) = (Recording::default(), Recording::failing("configure_interface eth0 192.168.50.2/24"));
        assert!(net.join(&mut host, &mut inside, &join()).is_err());
        assert_eq!(inside.calls, ["configure_interface eth0 192.168.50.2/24", "delete_link eth0"]);
        let (mut host, mut inside) = (Recording::failing(&host.calls[0]), Recording::default());
        assert!(net.join(&mut host, &mut inside, &join()).is_err());
        assert!(inside.calls.is_empty(), "nothing configured when the link was not made");
    }
}
