//! A host interface moved into a bridge and back (seed 004's first method: `brctl addif br0
//! eth0` with the host's address moved to `br0`): its IPv4 addresses and the main table's
//! routes through it go to the bridge in the same datagram as the enslaving, and the bridge
//! takes its MAC (so the host's address keeps its MAC on the LAN, and two hosts' bridges,
//! whose MACs weft derives from the shared gateway, do not collide), and a failure
//! undoes every step (the kernel applies a datagram's requests one by one, so the undo is sent
//! whole and answers for steps that never happened are ignored). Done wrong, this cuts a host
//! off its network: nothing here runs outside a test's namespace in the tests.

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::{addr_message, addr_msg};
use crate::{Netlink, Result};

/// What a link carries that moves with it: its IPv4 addresses and the routes through it that
/// are not the kernel's own (those follow the addresses).
#[derive(Debug, Clone, Default)]
pub struct Carried {
    pub addrs: Vec<Ipv4Net>,
    routes: Vec<RouteMessage>,
}

impl Carried {
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }
}

fn set_master(index: u32, master: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Controller(master));
    RouteNetlinkMessage::SetLink(msg)
}

fn del_addr(index: u32, net: Ipv4Net) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelAddress(addr_message(index, net))
}

fn via(r: &RouteMessage, oif: u32) -> RouteMessage {
    let mut r = r.clone();
    for a in r.attributes.iter_mut() {
        if let RouteAttribute::Oif(i) = a {
            *i = oif;
        }
    }
    r
}

fn set_mac(index: u32, mac: [u8; 6]) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    RouteNetlinkMessage::SetLink(msg)
}

/// Moves `c` from link `from` to link `to`; `master` is then `from`'s master (0: none).
fn moving(from: u32, to: u32, master: (u32, u32), c: &Carried) -> Vec<(RouteNetlinkMessage, u16)> {
    let mut reqs: Vec<(RouteNetlinkMessage, u16)> = c.addrs.iter().map(|a| (addr_msg(to, *a), NLM_F_CREATE | NLM_F_EXCL)).collect();
    reqs.push((set_master(master.0, master.1), 0));
    reqs.extend(c.routes.iter().map(|r| (RouteNetlinkMessage::DelRoute(via(r, from)), 0)));
    reqs.extend(c.routes.iter().map(|r| (RouteNetlinkMessage::NewRoute(via(r, to)), NLM_F_CREATE | NLM_F_EXCL)));
    reqs.extend(c.addrs.iter().map(|a| (del_addr(from, *a), 0)));
    reqs
}

impl Netlink {
    /// What link `index` carries now.
    pub fn carried(&mut self, index: u32) -> Result<Carried> {
        let addrs = self
            .addrs()?
            .into_iter()
            .filter(|a| a.index == index)
            .filter_map(|a| match a.addr {
                std::net::IpAddr::V4(ip) => Ipv4Net::new(ip, a.prefix_len).ok(),
                _ => None,
            })
            .collect();
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let routes = self
            .dump("list routes", RouteNetlinkMessage::GetRoute(req))?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .filter(|r| r.header.table == netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN && r.header.kind == RouteType::Unicast)
            .filter(|r| r.header.protocol != RouteProtocol::Kernel)
            .filter(|r| r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index)))
            .map(|mut r| {
                // The table is in the header; the dump's attribute would clash on re-adding.
                r.attributes.retain(|a| !matches!(a, RouteAttribute::Table(_)));
                r
            })
            .collect();
        Ok(Carried { addrs, routes })
    }

    /// `ip link set UPLINK master BRIDGE`, with what it carries moved to the bridge in the same
    /// datagram; undone whole on failure. Returns what moved.
    pub fn enslave_uplink(&mut self, bridge: u32, uplink: u32, uplink_mac: Option<[u8; 6]>) -> Result<Carried> {
        let c = self.carried(uplink)?;
        let mut reqs = moving(uplink, bridge, (uplink, bridge), &c);
        if let Some(mac) = uplink_mac {
            reqs.insert(0, (set_mac(bridge, mac), 0));
        }
        if let Err(e) = self.batch("move the uplink into the bridge", &uplink.to_string(), reqs) {
            let _ = self.batch("undo the uplink's move", &uplink.to_string(), moving(bridge, uplink, (uplink, 0), &c));
            return Err(e);
        }
        Ok(c)
    }

    /// The reverse: `ip link set UPLINK nomaster`, and what the bridge carries moved back.
    pub fn release_uplink(&mut self, bridge: u32, uplink: u32) -> Result<Carried> {
        let c = self.carried(bridge)?;
        if let Err(e) = self.batch("move the uplink out of the bridge", &uplink.to_string(), moving(bridge, uplink, (uplink, 0), &c)) {
            let _ = self.batch("undo the uplink's release", &uplink.to_string(), moving(uplink, bridge, (uplink, bridge), &c));
            return Err(e);
        }
        Ok(c)
    }
}
