//! The Open vSwitch driver (seeds 000 and 003): an endpoint is a veth pair whose host end is a
//! port of an OVS bridge, added as `ovs-docker add-port` does, its interface labelled with
//! nova-docker's `external_ids` (`iface-id` = the endpoint, `attached-mac`, `iface-status`,
//! `vm-uuid` = the container) so an SDN controller can find it. The bridge is the user's
//! (`-o ovs.bridge=br-int`, which must exist) or weft's (`ob-` + 12 hex of the id, made with its
//! internal interface, which carries the gateway address as a Linux bridge would). Every change
//! is one transaction with ovsdb-server (see [`crate::ovsdb`]); ovs-vswitchd applies it.
//!
//! Across hosts (seed 004's second method): `-o ovs.tunnel=vxlan|gre|geneve -o
//! ovs.remote=IP[,IP…]` gives the bridge a tunnel port to each other host (`tun-` + the remote's
//! address in hex). On the userspace datapath the tunnels are ovs-vswitchd's own (the kernel's
//! GRE is not needed), and it sends their packets only through an OVS bridge that holds the
//! host's underlay address (Open vSwitch's "userspace tunneling" set-up: the NIC a port of a
//! bridge such as `br-phy`, the address on that bridge).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_kernel::ops::LinkOps;
use weft_kernel::VethSpec;
use weft_model::{NetworkOptions, NetworkRecord, OPT_OVS_DATAPATH};

use crate::ovsdb::Ovsdb;
use crate::{missing, Driver, HostNetwork, HostOptions, Join, NetworkLink};

pub struct Ovs;

/// An OVS network on this host.
#[derive(Debug)]
pub struct OvsNet {
    pub db: Ovsdb,
    pub bridge: String,
    /// The bridge's internal interface.
    pub index: u32,
    pub mtu: u32,
    /// The bridge's datapath is ovs-vswitchd's own (`netdev`).
    pub userspace: bool,
    /// The bridge's port names, as last read (reconcile asks once per link).
    ports: Mutex<Option<(Instant, HashSet<String>)>>,
}

/// A tunnel port's name: `tun-` and the remote's address in hex.
fn tunnel_name(remote: std::net::Ipv4Addr) -> String {
    format!("tun-{:08x}", u32::from(remote))
}

/// The datapath a new bridge gets: the record's, else the kernel module's if it is loaded.
fn datapath(rec: &NetworkRecord) -> &str {
    match rec.options.get(OPT_OVS_DATAPATH) {
        Some(d) => d,
        None if std::path::Path::new("/sys/module/openvswitch").exists() => "system",
        None => "netdev",
    }
}

/// The bridge's internal interface, which ovs-vswitchd makes after the transaction: waited for.
fn internal_interface(host: &mut dyn LinkOps, name: &str) -> weft_kernel::Result<u32> {
    let t0 = Instant::now();
    loop {
        if let Some(i) = host.link_index(name)? {
            return Ok(i);
        }
        if t0.elapsed() > Duration::from_secs(5) {
            return Err(missing("find the bridge's internal interface (is ovs-vswitchd running?)", name));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Driver for Ovs {
    fn network_link(&self, id: &str, o: &NetworkOptions, _internal: bool) -> NetworkLink {
        match &o.ovs_bridge {
            Some(b) => NetworkLink { what: "Open vSwitch bridge", name: b.clone(), made: false },
            None => NetworkLink { what: "Open vSwitch bridge", name: format!("ob-{}", weft_model::short_id(id)), made: true },
        }
    }

    /// `ovs-vsctl add-br NAME -- set bridge NAME datapath_type=DP` (unless it exists), then on
    /// its internal interface what a Linux bridge of weft's gets: the gateway address, up,
    /// `route_localnet`. Ports of endpoints whose veth is gone (a daemon killed between the
    /// two) are removed. A bridge made here goes again on failure.
    fn create_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<Arc<dyn HostNetwork>> {
        let db = Ovsdb::new(&o.ovsdb);
        let made = match db.has_bridge(&rec.bridge)? {
            true => false,
            false if rec.managed_bridge => db.add_bridge(&rec.bridge, datapath(rec)).map(|()| true)?,
            false => return Err(missing("find the Open vSwitch bridge", &rec.bridge)),
        };
        let configured = (|| {
            let index = internal_interface(host, &rec.bridge)?;
            if rec.managed_bridge {
                host.add_addr(index, ipnet::Ipv4Net::new(rec.gateway, rec.subnet.prefix_len()).expect("prefix of a subnet").into())?;
                if let (Some(s6), Some(g6)) = (rec.subnet6, rec.gateway6) {
                    host.add_addr(index, ipnet::Ipv6Net::new(g6, s6.prefix_len()).expect("prefix of a subnet").into())?;
                }
                host.set_up(index)?;
            }
            if rec.subnet6.is_some() && o.ip_forward {
                host.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            }
            if o.firewall {
                host.sysctl(&format!("net.ipv4.conf.{}.route_localnet", rec.bridge), "1")?;
            }
            let stale: Vec<String> = db.ports(&rec.bridge)?.into_iter().map(|(n, _)| n).collect();
            let mut gone = Vec::new();
            for n in stale.iter().filter(|n| crate::is_veth_name(n)) {
                if host.link_index(n)?.is_none() {
                    gone.push(n.as_str());
                }
            }
            if !gone.is_empty() {
                tracing::info!(bridge = %rec.bridge, ports = ?gone, "ports whose veth is gone: removed");
                db.del_ports(&rec.bridge, &gone)?;
            }
            if let Some((kind, remotes)) = rec.ovs_tunnels() {
                let missing: Vec<(String, &str, std::net::Ipv4Addr)> =
                    remotes.into_iter().map(|r| (tunnel_name(r), kind, r)).filter(|(n, _, _)| !stale.contains(n)).collect();
                if !missing.is_empty() {
                    db.add_tunnels(&rec.bridge, &missing)?;
                }
            }
            Ok(index)
        })();
        match configured {
            Ok(index) => {
                let userspace = db.datapath(&rec.bridge)? == "netdev";
                Ok(Arc::new(OvsNet { db, bridge: rec.bridge.clone(), index, mtu: rec.mtu, userspace, ports: Mutex::new(None) }))
            }
            Err(e) => {
                if made {
                    let _ = db.del_bridge(&rec.bridge);
                }
                Err(e)
            }
        }
    }

    /// `ovs-vsctl del-br` of weft's bridge; the user's stays, without weft's tunnel ports.
    fn remove_network(&self, _host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<()> {
        let db = Ovsdb::new(&o.ovsdb);
        if rec.managed_bridge {
            return db.del_bridge(&rec.bridge);
        }
        if let Some((_, remotes)) = rec.ovs_tunnels() {
            let names: Vec<String> = remotes.into_iter().map(tunnel_name).collect();
            db.del_ports(&rec.bridge, &names.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }

    fn forwards_through_host(&self) -> bool {
        true
    }
}

impl OvsNet {
    fn port_names(&self) -> HashSet<String> {
        let mut cached = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, names)) = cached.as_ref().filter(|(at, _)| at.elapsed() < Duration::from_secs(1)) {
            return names.clone();
        }
        let names: HashSet<String> = match self.db.ports(&self.bridge) {
            Ok(p) => p.into_iter().map(|(n, _)| n).collect(),
            Err(e) => {
                tracing::warn!(error = %e, bridge = %self.bridge, "ports of the bridge not read");
                HashSet::new()
            }
        };
        *cached = Some((Instant::now(), names.clone()));
        names
    }
}

impl HostNetwork for OvsNet {
    fn link(&self) -> u32 {
        self.index
    }

    fn endpoint_name(&self) -> Option<String> {
        Some(crate::new_veth_name())
    }

    /// Weft's veths that are ports of the bridge.
    fn is_endpoint(&self, name: &str, _master: Option<u32>) -> bool {
        crate::is_veth_name(name) && self.port_names().contains(name)
    }

    /// The veth, up, born with its peer inside; the port with its external ids (one
    /// transaction); the interface's configuration inside (on the userspace datapath, without
    /// checksum offload: see `weft_kernel::ethtool`). A failed step removes the port (if
    /// it was added) and the veth.
    fn join(&self, host: &mut dyn LinkOps, inside: &mut dyn LinkOps, j: &Join<'_>) -> weft_kernel::Result<()> {
        host.create_veth(&VethSpec {
            host_name: j.host_ifname,
            master: None,
            mtu: self.mtu,
            peer_name: j.ifname,
            peer_mac: Some(j.mac),
            peer_netns: Some(j.netns_fd),
            up: true,
            port_setup: false,
            proxy_arp: false,
            index: j.host_index,
            peer_index: j.index,
            pin: None,
        })
        .inspect_err(|_| {
            let _ = host.delete_link(j.host_ifname);
        })?;
        let mac = j.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let ids = [("iface-id", j.endpoint_id), ("attached-mac", mac.as_str()), ("iface-status", "active"), ("vm-uuid", j.owner)];
        let ported = self.db.add_port(&self.bridge, j.host_ifname, &ids);
        let made = ported
            .and_then(|()| if j.configure_inside { inside.configure_interface(j.ifname, j.index, j.addr, j.gateway, j.v6) } else { Ok(()) })
            .and_then(|()| if self.userspace { inside.tx_checksum_off(j.ifname) } else { Ok(()) });
        if made.is_err() {
            let _ = self.db.del_ports(&self.bridge, &[j.host_ifname]);
            let _ = host.delete_link(j.host_ifname);
        }
        made
    }

    /// An action's rollback: the port row and the veth.
    fn leave(&self, host: &mut dyn LinkOps, host_ifname: &str) -> weft_kernel::Result<()> {
        let unported = self.db.del_ports(&self.bridge, &[host_ifname]);
        host.delete_link(host_ifname)?;
        unported
    }

    /// `ovs-vsctl --if-exists del-port`: the port row goes with the veth.
    fn forget(&self, _host: &mut dyn LinkOps, host_ifname: Option<&str>, _ip: std::net::Ipv4Addr) -> weft_kernel::Result<()> {
        match host_ifname {
            Some(name) => self.db.del_ports(&self.bridge, &[name]),
            None => Ok(()),
        }
    }
}
