//! Links by kind, as `ip link add` makes them: one builder per kind the drivers use (bridge,
//! macvlan, vxlan; veths have [`crate::VethSpec`], born with their peer in a namespace), each
//! naming the command it matches, and [`Netlink::create_link`] to make one in one request.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{InfoBridge, InfoData, InfoKind, InfoMacVlan, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, MacVlanMode};
use netlink_packet_route::RouteNetlinkMessage;

use crate::{Netlink, Result};

/// macvlan modes, as `ip link add … type macvlan mode MODE` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl MacvlanMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bridge" => Self::Bridge,
            "private" => Self::Private,
            "vepa" => Self::Vepa,
            "passthru" => Self::Passthru,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Private => "private",
            Self::Vepa => "vepa",
            Self::Passthru => "passthru",
        }
    }
}

/// What kind of link, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// `type bridge`
    Bridge,
    /// `link PARENT type macvlan mode MODE` (PARENT by index, shown by name).
    Macvlan { parent: u32, parent_name: String, mode: MacvlanMode },
    /// `type vxlan id VNI dstport PORT [local IP] [dev DEV] [nolearning] [proxy]` (`proxy`: the
    /// device answers ARP requests from its own neighbour table).
    Vxlan { vni: u32, port: u16, local: Option<Ipv4Addr>, dev: Option<(u32, String)>, learning: bool, proxy: bool },
}

/// A link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub name: String,
    pub kind: LinkKind,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// Born in this namespace (a descriptor of it), as a container's interface: `netns NS`.
    pub netns: Option<std::os::fd::RawFd>,
    /// A chosen interface index (0: the kernel picks): `index N`.
    pub index: u32,
    /// Born a port of this bridge: `master BR` (by index).
    pub master: Option<u32>,
}

impl LinkSpec {
    pub fn new(name: &str, kind: LinkKind) -> Self {
        Self { name: name.to_string(), kind, mtu: None, mac: None, up: false, netns: None, index: 0, master: None }
    }

    pub fn netns(mut self, fd: std::os::fd::RawFd) -> Self {
        self.netns = Some(fd);
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }

    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }

    pub fn index(mut self, index: u32) -> Self {
        self.index = index;
        self
    }

    pub fn master(mut self, bridge: u32) -> Self {
        self.master = Some(bridge);
        self
    }

    /// The `ip` command this spec does.
    pub fn ip_command(&self) -> String {
        let mut c = format!("ip link add {}", self.name);
        if let LinkKind::Macvlan { parent_name, .. } = &self.kind {
            c.push_str(&format!(" link {parent_name}"));
        }
        if let Some(m) = self.mtu {
            c.push_str(&format!(" mtu {m}"));
        }
        if let Some(mac) = self.mac {
            let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            c.push_str(&format!(" address {}", hex.join(":")));
        }
        if self.netns.is_some() {
            c.push_str(" netns NS");
        }
        if self.index != 0 {
            c.push_str(&format!(" index {}", self.index));
        }
        match &self.kind {
            LinkKind::Bridge => c.push_str(" type bridge mcast_snooping 0"),
            LinkKind::Macvlan { mode, .. } => c.push_str(&format!(" type macvlan mode {}", mode.name())),
            LinkKind::Vxlan { vni, port, local, dev, learning, proxy } => {
                c.push_str(&format!(" type vxlan id {vni} dstport {port}"));
                if let Some(ip) = local {
                    c.push_str(&format!(" local {ip}"));
                }
                if let Some((_, name)) = dev {
                    c.push_str(&format!(" dev {name}"));
                }
                if !learning {
                    c.push_str(" nolearning");
                }
                if *proxy {
                    c.push_str(" proxy");
                }
            }
        }
        if let Some(m) = self.master {
            c.push_str(&format!(" master {m}"));
        }
        if self.up {
            c.push_str(&format!("; ip link set {} up", self.name));
        }
        c
    }

    fn message(&self) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = self.index;
        if self.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes.push(LinkAttribute::IfName(self.name.clone()));
        if let Some(m) = self.mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        if let Some(mac) = self.mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(fd) = self.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        if let Some(m) = self.master {
            msg.attributes.push(LinkAttribute::Controller(m));
        }
        let info = match &self.kind {
            // No multicast snooping: a bridge that snoops re-arms every port's multicast timers
            // whenever any port comes or goes (`br_port_state_selection`), O(ports) with a lock
            // per port, measured at a third of a port's setup with 1,000 ports. Multicast is
            // then flooded, as on a switch without IGMP snooping: every member still gets it.
            LinkKind::Bridge => vec![NlLinkInfo::Kind(InfoKind::Bridge), NlLinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)]))],
            LinkKind::Macvlan { parent, mode, .. } => {
                msg.attributes.push(LinkAttribute::Link(*parent));
                let mode = match mode {
                    MacvlanMode::Bridge => MacVlanMode::Bridge,
                    MacvlanMode::Private => MacVlanMode::Private,
                    MacvlanMode::Vepa => MacVlanMode::Vepa,
                    MacvlanMode::Passthru => MacVlanMode::Passthrough,
                };
                vec![NlLinkInfo::Kind(InfoKind::MacVlan), NlLinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)]))]
            }
            LinkKind::Vxlan { vni, port, local, dev, learning, proxy } => {
                let mut data = vec![InfoVxlan::Id(*vni), InfoVxlan::Port(*port), InfoVxlan::Learning(*learning), InfoVxlan::Proxy(*proxy)];
                if let Some(ip) = local {
                    data.push(InfoVxlan::Local(*ip));
                }
                if let Some((index, _)) = dev {
                    data.push(InfoVxlan::Link(*index));
                }
                vec![NlLinkInfo::Kind(InfoKind::Vxlan), NlLinkInfo::Data(InfoData::Vxlan(data))]
            }
        };
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        msg
    }
}

impl Netlink {
    /// Creates the link `spec` describes (`spec.ip_command()`); returns its index, or 0 for a
    /// link born in another namespace.
    pub fn create_link(&mut self, spec: &LinkSpec) -> Result<u32> {
        self.batch("create link", &spec.name, vec![(RouteNetlinkMessage::NewLink(spec.message()), NLM_F_CREATE | NLM_F_EXCL)])?;
        if spec.netns.is_some() {
            return Ok(0);
        }
        self.index_of(&spec.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_names_its_ip_command() {
        let br = LinkSpec::new("br0", LinkKind::Bridge).mtu(1400).mac([2, 0x42, 0, 0, 0, 1]).up();
        assert_eq!(br.ip_command(), "ip link add br0 mtu 1400 address 02:42:00:00:00:01 type bridge mcast_snooping 0; ip link set br0 up");
        let mv = LinkSpec::new("mv0", LinkKind::Macvlan { parent: 3, parent_name: "eth0".into(), mode: MacvlanMode::Bridge });
        assert_eq!(mv.ip_command(), "ip link add mv0 link eth0 type macvlan mode bridge");
        let mv = LinkSpec::new("eth1", LinkKind::Macvlan { parent: 3, parent_name: "eth0".into(), mode: MacvlanMode::Private }).netns(5).index(77).up();
        assert_eq!(mv.ip_command(), "ip link add eth1 link eth0 netns NS index 77 type macvlan mode private; ip link set eth1 up");
        let vx = LinkSpec::new("vx0", LinkKind::Vxlan { vni: 42, port: 4789, local: Some("10.0.0.1".parse().expect("ip")), dev: Some((2, "eth0".into())), learning: false, proxy: false });
        assert_eq!(vx.ip_command(), "ip link add vx0 type vxlan id 42 dstport 4789 local 10.0.0.1 dev eth0 nolearning");
        assert_eq!(MacvlanMode::parse("vepa"), Some(MacvlanMode::Vepa));
        assert_eq!(MacvlanMode::parse("source"), None);
    }

    #[test]
    fn messages_carry_the_kind_and_its_data() {
        let mv = LinkSpec::new("mv0", LinkKind::Macvlan { parent: 3, parent_name: "eth0".into(), mode: MacvlanMode::Private }).message();
        assert!(mv.attributes.contains(&LinkAttribute::Link(3)));
        assert!(mv.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkInfo(i) if i.contains(&NlLinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(MacVlanMode::Private)]))))));
        let vx = LinkSpec::new("vx0", LinkKind::Vxlan { vni: 7, port: 8472, local: None, dev: None, learning: true, proxy: false }).message();
        assert!(vx.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkInfo(i) if i.contains(&NlLinkInfo::Kind(InfoKind::Vxlan)))));
    }
}
