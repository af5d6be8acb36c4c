//! A synchronous rtnetlink socket. Requests are built with `netlink-packet-route` and several can go
//! in one `sendmsg` (the kernel applies them in order and acknowledges each), which is how a
//! container's interface is configured in a single round trip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, InfoData, InfoKind, InfoPortData,
    InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{KernelError, Result};

/// A link as listed by `ip -d link show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    /// Index of the bridge this link is enslaved to.
    pub master: Option<u32>,
    pub mtu: u32,
    pub up: bool,
    /// Its hardware address (an Ethernet link's).
    pub mac: Option<[u8; 6]>,
}

/// An address as listed by `ip addr show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// An IPv4 route of the main table as listed by `ip route show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: Ipv4Net,
    pub oif: Option<u32>,
    /// Installed by weft (`replace_route`: a route to another host's block), not the host's own.
    pub weft: bool,
}

/// The routing protocol number weft's routes to other hosts' blocks carry (`ip route` shows
/// `proto 247`), so that weft tells them from the host's own routes.
pub const WEFT_ROUTE_PROTO: u8 = 247;

/// `ip link add HOST [master BR] mtu M up type veth peer name PEER [address MAC] [netns FD]`.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub master: Option<u32>,
    pub mtu: u32,
    pub peer_name: &'a str,
    pub peer_mac: Option<[u8; 6]>,
    /// Namespace the peer is born in (a file descriptor of `/proc/PID/ns/net` or a bind mount).
    pub peer_netns: Option<RawFd>,
    /// Bring the host end up in the same request (`false` leaves it down, to be configured first).
    pub up: bool,
    /// Right after the creation, IPv6 off on the host end (`sysctl -w
    /// net.ipv6.conf.NAME.disable_ipv6=1`), then in one datagram: the host end up as a bridge
    /// port with hairpin on and IPv6 addrgenmode none (should the sysctl fail: no link-local
    /// address, hence none of the DAD/RS/MLD multicast a bridge floods to every port), and the
    /// pin (`pin`). Needs `master`.
    pub port_setup: bool,
    /// With `port_setup`: `proxy_arp on` (see [`Netlink::pin_neighbour`]).
    pub proxy_arp: bool,
    /// The interface indexes to give the two ends (`ip link add … index N`; 0: the kernel picks).
    /// Known indexes save the lookups by name that would otherwise precede the next steps.
    pub index: u32,
    pub peer_index: u32,
    /// With `master`, `peer_mac` and `index`: pin `IP` to the peer's MAC in the same datagram
    /// (see [`Netlink::pin_neighbour`]).
    pub pin: Option<Ipv4Addr>,
}

impl Default for VethSpec<'_> {
    fn default() -> Self {
        Self { host_name: "", master: None, mtu: 1500, peer_name: "", peer_mac: None, peer_netns: None, up: false, port_setup: false, proxy_arp: false, index: 0, peer_index: 0, pin: None }
    }
}

pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub(crate) fn socket(&self) -> &Socket {
        &self.sock
    }
}

fn io_err<'a>(op: &'static str, subject: &'a str) -> impl Fn(std::io::Error) -> KernelError + 'a {
    move |source| KernelError::Netlink { op, subject: subject.to_string(), source }
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err("open netlink socket", "route"))?;
        sock.bind_auto().map_err(io_err("bind netlink socket", "route"))?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(io_err("connect netlink socket", "route"))?;
        // Without strict checking, filtered dumps fall back to full dumps; with it, errors name the
        // bad attribute. Older kernels lack it, which is harmless.
        let _ = sock.set_netlink_get_strict_chk(true);
        Ok(Self { sock, seq: 0, buf: vec![0; 64 * 1024] })
    }

    /// Sends `reqs` in one datagram, each with NLM_F_ACK, and waits for every acknowledgement.
    /// Returns the first error; the kernel still applies the requests that follow a failed one.
    pub(crate) fn batch(&mut self, op: &'static str, subject: &str, reqs: Vec<(RouteNetlinkMessage, u16)>) -> Result<()> {
        let first = self.seq.wrapping_add(1);
        let mut out = Vec::new();
        for (msg, flags) in reqs {
            self.seq = self.seq.wrapping_add(1);
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            header.sequence_number = self.seq;
            let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
            m.finalize();
            let at = out.len();
            out.resize(at + m.buffer_len(), 0);
            m.serialize(&mut out[at..]);
        }
        let expected = self.seq.wrapping_sub(first).wrapping_add(1);
        self.sock.send(&out, 0).map_err(io_err(op, subject))?;
        let mut acked = 0;
        let mut result = Ok(());
        while acked < expected {
            for msg in self.recv(op)? {
                if let NetlinkPayload::Error(e) = msg.payload {
                    if msg.header.sequence_number.wrapping_sub(first) < expected {
                        acked += 1;
                        if e.code.is_some() && result.is_ok() {
                            result = Err(io_err(op, subject)(e.to_io()));
                        }
                    }
                }
            }
        }
        result
    }

    fn recv(&mut self, op: &'static str) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(io_err(op, "recv"))?;
        parse_datagram(&self.buf[..n], op)
    }

    /// A dump request (`NLM_F_DUMP`): every answer until NLMSG_DONE.
    pub(crate) fn dump(&mut self, op: &'static str, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut out = vec![0; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0).map_err(io_err(op, "dump"))?;
        let mut items = Vec::new();
        loop {
            for msg in self.recv(op)? {
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(i) => items.push(i),
                    NetlinkPayload::Done(_) => return Ok(items),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(io_err(op, "dump")(e.to_io()))
                    }
                    _ => {}
                }
            }
        }
    }

    /// `ip -d link show`.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        let msgs = self.dump("list links", RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_info(&l)),
                _ => None,
            })
            .collect())
    }

    /// `ip link show NAME`; `None` if there is no such link.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(RouteNetlinkMessage::GetLink(msg)));
        m.finalize();
        let mut out = vec![0; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0).map_err(io_err("get link", name))?;
        loop {
            for msg in self.recv("get link")? {
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                        return Ok(Some(link_info(&l)))
                    }
                    NetlinkPayload::Error(e) => {
                        let err = e.to_io();
                        return match err.raw_os_error() {
                            Some(libc::ENODEV) => Ok(None),
                            _ => Err(io_err("get link", name)(err)),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    pub(crate) fn index_of(&mut self, name: &str) -> Result<u32> {
        self.link(name)?.map(|l| l.index).ok_or_else(|| {
            io_err("find link", name)(std::io::Error::from_raw_os_error(libc::ENODEV))
        })
    }

    /// `ip addr show`.
    pub fn addrs(&mut self) -> Result<Vec<AddrInfo>> {
        let msgs = self.dump("list addresses", RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let addr = a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let addr = addr.or_else(|| {
                        a.attributes.iter().find_map(|x| match x {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some(AddrInfo { index: a.header.index, addr, prefix_len: a.header.prefix_len })
                }
                _ => None,
            })
            .collect())
    }

    /// `ip -4 route show table all` (unicast routes only).
    pub fn routes_v4(&mut self) -> Result<Vec<RouteInfo>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let msgs = self.dump("list routes", RouteNetlinkMessage::GetRoute(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) if r.header.kind == RouteType::Unicast => {
                    let dst = r
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                            _ => None,
                        })
                        .unwrap_or(Ipv4Addr::UNSPECIFIED);
                    let oif = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    });
                    let dst = Ipv4Net::new(dst, r.header.destination_prefix_length).ok()?;
                    Some(RouteInfo { dst, oif, weft: r.header.protocol == RouteProtocol::Other(WEFT_ROUTE_PROTO) })
                }
                _ => None,
            })
            .collect())
    }

    /// `ip link add NAME address MAC mtu MTU type bridge mcast_snooping 0 && ip link set NAME up`; returns its
    /// index. A fixed MAC: a bridge without one takes its lowest port's, and every change of it
    /// flushes the bridge's neighbour table, permanent entries included.
    pub fn create_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> Result<u32> {
        self.create_link(&crate::links::LinkSpec::new(name, crate::links::LinkKind::Bridge).mtu(mtu).mac(mac).up())
    }

    /// `ip link set dev INDEX up`.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.batch("set link up", &index.to_string(), vec![(link_up(index), 0)])
    }



    /// `ip link set dev NAME down name NEW`: takes an interface out of use and frees its name at
    /// once (deleting it waits for an RCU barrier; the caller deletes it later). A link that is
    /// already gone is fine.
    pub fn retire(&mut self, name: &str, new_name: &str) -> Result<()> {
        let index = match self.link(name)? {
            Some(l) => l.index,
            None => return Ok(()),
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(new_name.to_string()));
        match self.batch("retire link", name, vec![(RouteNetlinkMessage::SetLink(msg), 0)]) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `ip neigh replace IP lladdr MAC dev BRIDGE nud permanent; bridge fdb replace MAC dev PORT
    /// master static`: the bridge knows where `ip` is, so with `proxy_arp` on its ports it answers
    /// ARP requests itself instead of flooding them to every port (a broadcast cloned to 1,022
    /// ports overruns the kernel's backlog and gets lost).
    pub fn pin_neighbour(&mut self, bridge: u32, port: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        let port_index = self.index_of(port)?;
        self.batch("pin neighbour", &ip.to_string(), pin_messages(bridge, port_index, ip, mac).into())
    }

    /// `bridge fdb replace MAC dev BRIDGE self local`.
    pub fn own_fdb_entry(&mut self, bridge: u32, mac: [u8; 6]) -> Result<()> {
        self.batch("restore the bridge's own entry on", &bridge.to_string(), vec![(RouteNetlinkMessage::NewNeighbour(self_fdb_entry(bridge, mac, None)), NLM_F_CREATE | NLM_F_REPLACE)])
    }

    /// A remote endpoint on a VXLAN device `vx` that is a port of a bridge: `ip neigh replace IP
    /// lladdr MAC dev VX nud permanent` (the device answers ARP for it: `proxy`), `bridge fdb
    /// replace MAC dev VX dst VTEP self permanent` (the device sends its frames to that host) and
    /// `bridge fdb replace MAC dev VX master static` (the bridge sends them to the device), in one
    /// round trip. Nothing is learnt or flooded.
    pub fn add_remote_endpoint(&mut self, vx: u32, ip: Ipv4Addr, mac: [u8; 6], vtep: Ipv4Addr) -> Result<()> {
        let msgs = remote_endpoint_messages(vx, ip, mac, Some(vtep)).into_iter().map(|m| (RouteNetlinkMessage::NewNeighbour(m), NLM_F_CREATE | NLM_F_REPLACE)).collect();
        self.batch("add remote endpoint", &ip.to_string(), msgs)
    }

    /// `ip route replace DST via GATEWAY` (another host's subnet behind its address).
    pub fn replace_route(&mut self, dst: Ipv4Net, gateway: Ipv4Addr) -> Result<()> {
        self.batch("replace route", &dst.to_string(), vec![(RouteNetlinkMessage::NewRoute(via_route(dst, gateway, RouteProtocol::Other(WEFT_ROUTE_PROTO))), NLM_F_CREATE | NLM_F_REPLACE)])
    }

    /// `ip route del DST via GATEWAY` (whatever its protocol: also one an earlier weft made);
    /// a route already gone is fine.
    pub fn delete_route(&mut self, dst: Ipv4Net, gateway: Ipv4Addr) -> Result<()> {
        match self.batch("delete route", &dst.to_string(), vec![(RouteNetlinkMessage::DelRoute(via_route(dst, gateway, RouteProtocol::Unspec)), 0)]) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// Undoes [`Netlink::add_remote_endpoint`]; entries already gone are fine.
    pub fn remove_remote_endpoint(&mut self, vx: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        for m in remote_endpoint_messages(vx, ip, mac, None) {
            match self.batch("remove remote endpoint", &ip.to_string(), vec![(RouteNetlinkMessage::DelNeighbour(m), 0)]) {
                Err(e) if e.is_not_found() => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// `ip neigh del IP dev BRIDGE`; an entry that is already gone is fine.
    pub fn unpin_neighbour(&mut self, bridge: u32, ip: Ipv4Addr) -> Result<()> {
        let mut neigh = NeighbourMessage::default();
        neigh.header.family = AddressFamily::Inet;
        neigh.header.ifindex = bridge;
        neigh.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.batch("unpin neighbour", &ip.to_string(), vec![(RouteNetlinkMessage::DelNeighbour(neigh), 0)]) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `ip link del dev NAME`; a link that is already gone is fine.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.batch("delete link", name, vec![(RouteNetlinkMessage::DelLink(msg), 0)]) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `ip link set dev NAME down nomaster`: no longer a bridge port, so the bridge forgets it at
    /// once (an interface already gone is fine).
    pub fn release_port(&mut self, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Controller(0));
        match self.batch("release port", name, vec![(RouteNetlinkMessage::SetLink(msg), 0)]) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `ip link set dev NAME group GROUP` for each name; names of links already gone are skipped.
    pub fn set_group(&mut self, names: &[String], group: u32) -> Result<()> {
        for name in names {
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(name.clone()));
            msg.attributes.push(LinkAttribute::Group(group));
            match self.batch("set link group", name, vec![(RouteNetlinkMessage::SetLink(msg), 0)]) {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// `ip link delete group GROUP`: every link of the group goes in one kernel transaction, which
    /// waits for one RCU barrier instead of one per link.
    pub fn delete_group(&mut self, group: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        match self.batch("delete link group", &group.to_string(), vec![(RouteNetlinkMessage::DelLink(msg), 0)]) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `ip addr add ADDR/PREFIX brd + dev INDEX`; an address that is already there is fine.
    pub fn add_addr(&mut self, index: u32, net: Ipv4Net) -> Result<()> {
        match self.batch("add address", &net.to_string(), vec![(addr_msg(index, net), NLM_F_CREATE | NLM_F_EXCL)]) {
            Err(e) if e.is_exists() => Ok(()),
            r => r,
        }
    }

    /// `ip link add … type veth peer …` with the peer born directly in its namespace, the host end
    /// enslaved and up in the same request.
    pub fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.header.index = spec.peer_index;
        peer.attributes.push(LinkAttribute::IfName(spec.peer_name.to_string()));
        peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
        peer.attributes.extend(one_queue());
        if let Some(mac) = spec.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(fd) = spec.peer_netns {
            peer.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        let mut msg = LinkMessage::default();
        msg.header.index = spec.index;
        if spec.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes.push(LinkAttribute::IfName(spec.host_name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
        msg.attributes.extend(one_queue());
        if let Some(master) = spec.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        // EEXIST may be either end: name both.
        let what = format!("{} (peer {})", spec.host_name, spec.peer_name);
        let mut reqs = vec![(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)];
        if spec.port_setup {
            // A bridge port's own IPv6 is never used (what it receives goes to the bridge), yet
            // with it every port adds a route to the host's IPv6 table when it comes up, and then
            // every port's up and down walks that table: IPv6 goes before the port comes up.
            // Only a sysctl turns it off, hence the creation in a request of its own.
            self.batch("create veth", &what, std::mem::take(&mut reqs))?;
            if let Err(e) = crate::sysctl::write(&format!("net.ipv6.conf.{}.disable_ipv6", spec.host_name), "1") {
                tracing::debug!(link = spec.host_name, error = %e, "IPv6 stays on");
            }
            reqs.push((bridge_port_up(spec.host_name, spec.proxy_arp), 0));
        }
        if let (Some(ip), Some(bridge), Some(mac), true) = (spec.pin, spec.master, spec.peer_mac, spec.index != 0) {
            reqs.extend(pin_messages(bridge, spec.index, ip, mac));
        }
        self.batch("create veth", &what, reqs)
    }

    /// One end of a point-to-point link, in its namespace: `ip link set lo up; ip addr add
    /// LOCAL/32 dev IF; ip link set IF up; ip route add PEER/32 dev IF`, in one datagram (no
    /// subnet: the peer is reached by its host route). `index`: the interface's.
    pub fn configure_p2p(&mut self, ifname: &str, index: u32, local: Ipv4Addr, peer: Ipv4Addr) -> Result<()> {
        let mut conf = LinkMessage::default();
        conf.header.index = index;
        conf.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)])]));
        let reqs = vec![
            (link_up(1), 0),
            (RouteNetlinkMessage::SetLink(conf), 0),
            (addr_msg(index, Ipv4Net::new(local, 32).expect("a /32")), NLM_F_CREATE | NLM_F_EXCL),
            (link_up(index), 0),
            (host_route(index, peer), NLM_F_CREATE | NLM_F_EXCL),
        ];
        self.batch("configure point-to-point", ifname, reqs)
    }

    /// Inside a container: `ip link set lo up; ip addr add ADDR dev IF; [ip -6 addr add ADDR6 dev
    /// IF nodad;] ip link set IF up; ip route add default via GW; [ip -6 route add default via
    /// GW6]`, in one datagram. Without IPv6 on the interface's network, no link-local
    /// address either (`addrgenmode none`).
    /// `index`: the interface's, if known (0: looked up by name first).
    pub fn configure_interface(&mut self, ifname: &str, index: u32, addr: Ipv4Net, gateway: Option<Ipv4Addr>, v6: Option<(Ipv6Net, Option<Ipv6Addr>)>) -> Result<()> {
        let index = if index != 0 { index } else { self.index_of(ifname)? };
        let mut reqs = vec![(link_up(1), 0)];
        if v6.is_none() {
            let mut conf = LinkMessage::default();
            conf.header.index = index;
            conf.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)])]));
            reqs.push((RouteNetlinkMessage::SetLink(conf), 0));
        }
        reqs.push((addr_msg(index, addr), NLM_F_CREATE | NLM_F_EXCL));
        if let Some((a6, _)) = v6 {
            reqs.push((addr6_msg(index, a6), NLM_F_CREATE | NLM_F_EXCL));
        }
        reqs.push((link_up(index), 0));
        if let Some(gw) = gateway {
            reqs.push((default_route(index, RouteAddress::Inet(gw), AddressFamily::Inet), NLM_F_CREATE | NLM_F_EXCL));
        }
        if let Some((_, Some(gw6))) = v6 {
            reqs.push((default_route(index, RouteAddress::Inet6(gw6), AddressFamily::Inet6), NLM_F_CREATE | NLM_F_EXCL));
        }
        self.batch("configure interface", ifname, reqs)
    }

    /// `ip -6 addr add ADDR/PREFIX dev INDEX nodad`; an address already there is fine.
    pub fn add_addr6(&mut self, index: u32, net: Ipv6Net) -> Result<()> {
        match self.batch("add address", &net.to_string(), vec![(addr6_msg(index, net), NLM_F_CREATE | NLM_F_EXCL)]) {
            Err(e) if e.is_exists() => Ok(()),
            r => r,
        }
    }

    /// `ip link set lo up` (the whole network of a `--net none` container).
    pub fn loopback_up(&mut self) -> Result<()> {
        self.batch("set link up", "lo", vec![(link_up(1), 0)])
    }
}

/// The messages of one datagram. A message the netlink crate cannot decode (a link kind or an
/// attribute newer than it, as real hosts have) is skipped, and logged once per process: one odd
/// interface must never fail a dump, and so a start. Only broken framing is an error.
fn parse_datagram(buf: &[u8], op: &'static str) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    parse_datagram_of(buf, op, |_| true)
}

/// The messages of a datagram whose type (`nlmsg_type`, read from the header) `wanted` keeps;
/// the others are skipped without being decoded.
fn parse_datagram_of(buf: &[u8], op: &'static str, wanted: impl Fn(u16) -> bool) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let mut msgs = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(KernelError::Decode { op, reason: format!("netlink message of {len} bytes at offset {off} of {}", buf.len()) });
        }
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if !wanted(kind) {
            off += (len + 3) & !3;
            continue;
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len]) {
            Ok(m) => msgs.push(m),
            Err(e) => WARNED.call_once(|| {
                tracing::warn!(op, message_type = kind, reason = %e, "skipping a netlink message weft cannot decode (logged once)");
            }),
        }
        off += (len + 3) & !3;
    }
    Ok(msgs)
}

/// `numtxqueues 1 numrxqueues 1`: what a veth ends up with anyway. Without them the kernel gives
/// each end a queue per CPU and then cuts it to one, and each cut waits for an expedited RCU grace
/// period with RTNL held (`veth_init_queues`): two per pair, the only sleep in a pair's creation
/// (0.15 ms of 1.1 at 1 endpoint here).
fn one_queue() -> [LinkAttribute; 2] {
    [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)]
}

fn link_up(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::SetLink(msg)
}

pub(crate) fn addr_msg(index: u32, net: Ipv4Net) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewAddress(addr_message(index, net))
}

/// `IP/PREFIX` on link `index` (the body of `ip addr add` and of `ip addr del`).
pub(crate) fn addr_message(index: u32, net: Ipv4Net) -> AddressMessage {
    let mut a = AddressMessage::default();
    a.header.family = AddressFamily::Inet;
    a.header.prefix_len = net.prefix_len();
    a.header.index = index;
    a.attributes.push(AddressAttribute::Local(IpAddr::V4(net.addr())));
    a.attributes.push(AddressAttribute::Address(IpAddr::V4(net.addr())));
    if net.prefix_len() < 31 {
        a.attributes.push(AddressAttribute::Broadcast(net.broadcast()));
    }
    a
}

/// `ip neigh … IP lladdr MAC dev IFINDEX nud permanent`.
fn neigh_entry(ifindex: u32, ip: Ipv4Addr, mac: [u8; 6]) -> NeighbourMessage {
    let mut neigh = NeighbourMessage::default();
    neigh.header.family = AddressFamily::Inet;
    neigh.header.ifindex = ifindex;
    neigh.header.state = NeighbourState::Permanent;
    neigh.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    neigh.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    neigh
}

/// `bridge fdb … MAC dev PORT master static`: the bridge sends MAC's frames to that port.
fn master_fdb_entry(port: u32, mac: [u8; 6]) -> NeighbourMessage {
    let mut fdb = NeighbourMessage::default();
    fdb.header.family = AddressFamily::Bridge;
    fdb.header.ifindex = port;
    fdb.header.state = NeighbourState::Noarp;
    fdb.header.flags = NeighbourFlags::Controller;
    fdb.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    fdb
}

/// `bridge fdb … MAC dev IFINDEX [dst IP] self permanent`: the device's own entry (a bridge's
/// address; a VXLAN device's tunnel to `dst`).
fn self_fdb_entry(ifindex: u32, mac: [u8; 6], dst: Option<Ipv4Addr>) -> NeighbourMessage {
    let mut fdb = NeighbourMessage::default();
    fdb.header.family = AddressFamily::Bridge;
    fdb.header.ifindex = ifindex;
    fdb.header.state = NeighbourState::Permanent;
    fdb.header.flags = NeighbourFlags::Own;
    fdb.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(dst) = dst {
        fdb.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    }
    fdb
}

/// `ip neigh replace IP lladdr MAC dev BRIDGE nud permanent` and `bridge fdb replace MAC dev
/// PORT master static`.
fn pin_messages(bridge: u32, port_index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> [(RouteNetlinkMessage, u16); 2] {
    [neigh_entry(bridge, ip, mac), master_fdb_entry(port_index, mac)].map(|m| (RouteNetlinkMessage::NewNeighbour(m), NLM_F_CREATE | NLM_F_REPLACE))
}

/// The neighbour and forwarding entries of a remote endpoint (see `add_remote_endpoint`; for a
/// deletion the VTEP is not needed).
fn remote_endpoint_messages(vx: u32, ip: Ipv4Addr, mac: [u8; 6], vtep: Option<Ipv4Addr>) -> Vec<NeighbourMessage> {
    vec![neigh_entry(vx, ip, mac), self_fdb_entry(vx, mac, vtep), master_fdb_entry(vx, mac)]
}

/// `ip link set dev NAME up addrgenmode none type bridge_slave hairpin on` (see `VethSpec`).
fn bridge_port_up(name: &str, proxy_arp: bool) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        NlLinkInfo::PortKind(InfoPortKind::Bridge),
        NlLinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(true), InfoBridgePort::ProxyARP(proxy_arp)])),
    ]));
    msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)])]));
    RouteNetlinkMessage::NewLink(msg)
}

fn addr6_msg(index: u32, net: Ipv6Net) -> RouteNetlinkMessage {
    let mut a = AddressMessage::default();
    a.header.family = AddressFamily::Inet6;
    a.header.prefix_len = net.prefix_len();
    a.header.index = index;
    a.header.flags = AddressHeaderFlags::Nodad;
    a.attributes.push(AddressAttribute::Address(IpAddr::V6(net.addr())));
    RouteNetlinkMessage::NewAddress(a)
}

/// `ip route add DST/32 dev OIF` (scope link).
fn host_route(oif: u32, dst: Ipv4Addr) -> RouteNetlinkMessage {
    let mut r = RouteMessage::default();
    r.header = RouteHeader {
        address_family: AddressFamily::Inet,
        destination_prefix_length: 32,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Link,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    r.attributes.push(RouteAttribute::Oif(oif));
    RouteNetlinkMessage::NewRoute(r)
}

/// `DST via GATEWAY` in the main table.
fn via_route(dst: Ipv4Net, gateway: Ipv4Addr, protocol: RouteProtocol) -> RouteMessage {
    let mut r = RouteMessage::default();
    r.header = RouteHeader {
        address_family: AddressFamily::Inet,
        destination_prefix_length: dst.prefix_len(),
        table: RouteHeader::RT_TABLE_MAIN,
        protocol,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(dst.network())));
    r.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    r
}

fn default_route(oif: u32, gateway: RouteAddress, family: AddressFamily) -> RouteNetlinkMessage {
    let mut r = RouteMessage::default();
    r.header = RouteHeader {
        address_family: family,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    r.attributes.push(RouteAttribute::Gateway(gateway));
    r.attributes.push(RouteAttribute::Oif(oif));
    RouteNetlinkMessage::NewRoute(r)
}

fn link_info(l: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: l.header.index,
        name: String::new(),
        kind: None,
        master: None,
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        mac: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Controller(m) => info.master = Some(*m),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::Address(a) => info.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// Deletions of links in the namespace it was opened in, as `ip monitor link` shows them (the
/// link multicast group of rtnetlink).
pub struct LinkMonitor {
    sock: Socket,
    buf: Vec<u8>,
}

/// rtnetlink's multicast group of link changes (`RTNLGRP_LINK`).
const RTNLGRP_LINK: u32 = 1;
/// The message type of a link's deletion.
const RTM_DELLINK: u16 = 17;

impl LinkMonitor {
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err("open netlink socket", "link monitor"))?;
        sock.bind_auto().map_err(io_err("bind netlink socket", "link monitor"))?;
        sock.add_membership(RTNLGRP_LINK).map_err(io_err("join the link group", "link monitor"))?;
        Ok(Self { sock, buf: vec![0; 256 * 1024] })
    }

    /// Blocks until links are deleted and returns their names. An error of `ENOBUFS` means
    /// events were lost (the caller looks at what exists instead).
    pub fn deleted(&mut self) -> Result<Vec<String>> {
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(io_err("read link events", "link monitor"))?;
            // Every change of every link is sent to the group: only deletions are decoded.
            let names: Vec<String> = parse_datagram_of(&self.buf[..n], "read link events", |kind| kind == RTM_DELLINK)?
                .into_iter()
                .filter_map(|m| match m.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => l.attributes.into_iter().find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name),
                        _ => None,
                    }),
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                return Ok(names);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message: header (length, type, flags, seq, pid), then `payload`.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn an_undecodable_message_is_skipped_not_fatal() {
        // RTM_NEWLINK (16): an ifinfomsg, then an attribute whose length (2) is shorter than an
        // attribute header: the crate cannot decode it.
        let mut bad = vec![0u8; 16];
        bad.extend_from_slice(&[2, 0, 3, 0]);
        let mut good_link = vec![0u8; 16];
        good_link.extend_from_slice(&[7, 0, 3, 0, b'l', b'o', 0, 0]); // IFLA_IFNAME "lo", padded
        let done = message(3, &0i32.to_ne_bytes()); // NLMSG_DONE
        let mut dgram = message(16, &bad);
        assert!(NetlinkMessage::<RouteNetlinkMessage>::deserialize(&dgram).is_err(), "the crafted message must be undecodable");
        dgram.extend(message(16, &good_link));
        dgram.extend(done);
        let msgs = parse_datagram(&dgram, "test").expect("a datagram with one bad message still parses");
        assert_eq!(msgs.len(), 2, "the good link and DONE");
        assert!(matches!(&msgs[0].payload, NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) if link_info(l).name == "lo"), "{:?}", msgs[0]);
        assert!(matches!(msgs[1].payload, NetlinkPayload::Done(_)));
        // Broken framing is still an error.
        assert!(parse_datagram(&dgram[..20], "test").is_err());
    }

    #[test]
    fn the_link_monitor_decodes_deletions_only() {
        let mut link = vec![0u8; 16];
        link.extend_from_slice(&[7, 0, 3, 0, b'l', b'o', 0, 0]); // IFLA_IFNAME "lo", padded
        let mut dgram = message(16, &link);
        dgram.extend(message(RTM_DELLINK, &link));
        dgram.extend(message(16, &link));
        let msgs = parse_datagram_of(&dgram, "test", |kind| kind == RTM_DELLINK).expect("parses");
        assert_eq!(msgs.len(), 1);
        assert!(matches!(&msgs[0].payload, NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) if link_info(l).name == "lo"), "{:?}", msgs[0]);
    }
}

