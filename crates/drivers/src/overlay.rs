//! The overlay driver: on every host, a bridge (as the bridge driver makes it, with the same
//! gateway) and a VXLAN device in it (`vx-` + 12 hex of the network's id; the network's VNI,
//! UDP 4789, this host's `--advertise-addr` as the tunnel's source). The device neither learns
//! nor floods: the engine writes a forwarding entry (MAC -> the remote host) and a neighbour
//! entry (IP -> MAC, answered by the device itself: `proxy`) for each remote endpoint it reads
//! from the shared store, and removes them when the endpoint or its host goes. A frame for an
//! unknown MAC is dropped, and ARP never crosses the tunnel.

use std::sync::Arc;

use weft_kernel::ops::LinkOps;
use weft_kernel::links::{LinkKind, LinkSpec};
use weft_model::{NetworkOptions, NetworkRecord, VXLAN_PORT};

use crate::bridge::Bridge;
use crate::{missing, Driver, HostNetwork, HostOptions, NetworkLink};

pub struct Overlay;

impl Driver for Overlay {
    /// The bridge, named as the bridge driver names it.
    fn network_link(&self, id: &str, o: &NetworkOptions, internal: bool) -> NetworkLink {
        Bridge.network_link(id, o, internal)
    }

    /// The bridge driver's bridge, then `ip link add vx-ID mtu M master BR type vxlan id VNI
    /// dstport 4789 local ADVERTISE nolearning proxy; ip link set vx-ID up` (an existing device
    /// is adopted).
    fn create_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<Arc<dyn HostNetwork>> {
        let Some(local) = o.advertise_addr else {
            return Err(missing("make the overlay's tunnel: this daemon has no --advertise-addr", &rec.vxlan_name()));
        };
        let Some(vni) = rec.vni() else {
            return Err(missing("make the overlay's tunnel: the network has no VXLAN id", &rec.vxlan_name()));
        };
        let bridged = Bridge.create_network(host, rec, o)?;
        let vx = rec.vxlan_name();
        if host.link_index(&vx)?.is_none() {
            let spec = LinkSpec::new(&vx, LinkKind::Vxlan { vni, port: VXLAN_PORT, local: Some(local), dev: None, learning: false, proxy: true }).mtu(rec.mtu).master(bridged.link()).up();
            if let Err(e) = host.create_link(&spec) {
                let _ = Bridge.remove_network(host, rec, o); // nothing half-made stays
                return Err(e);
            }
        }
        Ok(bridged)
    }

    fn remove_network(&self, host: &mut dyn LinkOps, rec: &NetworkRecord, o: &HostOptions) -> weft_kernel::Result<()> {
        host.delete_link(&rec.vxlan_name())?;
        Bridge.remove_network(host, rec, o)
    }

    fn forwards_through_host(&self) -> bool {
        true
    }
}
