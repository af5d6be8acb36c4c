//! The daemon's options that shape the engine (dockerd's network flags), and their validation.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::Ipv4Net;
use weft_ipam::AddressPool;

use crate::EngineError;

/// The default bridge device, as `docker0` is Docker's.
pub const DEFAULT_BRIDGE: &str = "weft0";

/// What an empty store beside an earlier run's containers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyStore {
    /// The start is refused (the default).
    Refuse,
    /// `--adopt-state`: the records of what still runs are rebuilt from their copies; the rest
    /// is stopped and removed.
    Adopt,
    /// `--reset-state`: all of it is stopped and removed.
    Reset,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// `-b/--bridge`: a bridge the user made; weft never creates, readdresses or deletes it.
    pub bridge: Option<String>,
    /// `--bip`: the bridge's address and the network's subnet.
    pub bip: Option<Ipv4Net>,
    /// `--fixed-cidr`: container addresses come only from here.
    pub fixed_cidr: Option<Ipv4Net>,
    pub mtu: u32,
    pub ip_masq: bool,
    pub ip_forward: bool,
    /// `--iptables`: whether weft installs firewall rules at all.
    pub iptables: bool,
    pub icc: bool,
    /// `--ip`: default host address of published ports.
    pub ip: IpAddr,
    /// `--userland-proxy`: published ports are also served by the in-process proxy (localhost).
    pub userland_proxy: bool,
    /// `--dns`: default nameservers of containers.
    pub dns: Vec<IpAddr>,
    pub default_pools: Vec<AddressPool>,
    /// `--link-pool`: the addresses of point-to-point links (`weft link create`).
    pub link_pool: Ipv4Net,
    /// `--keep-uplink=false`: uplinks go back to the host when the daemon stops.
    pub keep_uplink: bool,
    /// `--ovsdb`: ovsdb-server's socket, for Open vSwitch networks.
    pub ovsdb: PathBuf,
    /// The `weft-init` helper binary.
    pub init_path: PathBuf,
    /// This daemon's name among those sharing a store (its records live under it).
    pub host_id: String,
    /// `--dns-forward-max` and its kin: what the embedded DNS holds at once.
    pub dns_limits: weft_dns::Limits,
    /// How the embedded DNS checks upstream answers (only tests turn the checks off).
    pub dns_checks: weft_dns::Checks,
    /// What an empty store beside an earlier run's containers does (`--adopt-state`,
    /// `--reset-state`; without either, such a start is refused).
    pub empty_store: EmptyStore,
    /// `--cgroup-parent`: each container's cgroup is `<parent>/<id>` in every hierarchy;
    /// absolute with a leading `/`, else under weftd's own cgroup (dockerd's rule).
    pub cgroup_parent: String,
    /// `--default-pids-limit`: the pids limit of a container run without `--pids-limit`
    /// (`None`: no limit, Docker's default).
    pub default_pids_limit: Option<u64>,
    /// `--advertise-addr`: where other hosts reach this one (an address of one of its links).
    pub advertise_addr: Option<std::net::Ipv4Addr>,
    /// `--node-ttl`: the lease of this daemon's registration; once it expires unrenewed (the
    /// daemon is dead or cut off), the other hosts forget this one's endpoints.
    pub node_ttl: std::time::Duration,
}

/// The default of `--node-ttl`.
pub const DEFAULT_NODE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// weft's pids limit for a container run without `--pids-limit` (see `docs/security.md`).
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

impl Config {
    pub fn new(data_root: PathBuf, exec_root: PathBuf, init_path: PathBuf) -> Self {
        Self {
            data_root,
            exec_root,
            bridge: None,
            bip: None,
            fixed_cidr: None,
            mtu: 1500,
            ip_masq: true,
            ip_forward: true,
            iptables: true,
            icc: true,
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            userland_proxy: false,
            dns: Vec::new(),
            default_pools: weft_ipam::default_pools(),
            link_pool: "10.1.1.0/24".parse().expect("a constant CIDR"),
            keep_uplink: true,
            ovsdb: PathBuf::from("/run/openvswitch/db.sock"),
            init_path,
            host_id: "local".into(),
            dns_limits: weft_dns::Limits::default(),
            dns_checks: weft_dns::Checks::Strict,
            empty_store: EmptyStore::Refuse,
            cgroup_parent: "weft".into(),
            default_pids_limit: Some(DEFAULT_PIDS_LIMIT),
            advertise_addr: None,
            node_ttl: DEFAULT_NODE_TTL,
        }
    }

    /// Combinations dockerd refuses, refused before anything is touched.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Config(m));
        if self.bridge.is_some() && self.bip.is_some() {
            return bad("--bip cannot be used with -b/--bridge: the bridge's own address is used".into());
        }
        if let Some(b) = &self.bridge {
            weft_model::validate_ifname(b).map_err(|e| EngineError::Config(e.to_string()))?;
        }
        if !(68..=65535).contains(&self.mtu) {
            return bad(format!("invalid --mtu {}: must be between 68 and 65535", self.mtu));
        }
        if let (Some(bip), Some(fixed)) = (self.bip, self.fixed_cidr) {
            if !bip.trunc().contains(&fixed) {
                return bad(format!("--fixed-cidr {fixed} is not inside the bridge subnet {}", bip.trunc()));
            }
        }
        if self.host_id.is_empty() || self.host_id.len() > 64 || !self.host_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) || self.host_id.starts_with('.') {
            return bad(format!("invalid --host-id {:?}: 1 to 64 letters, digits, '-', '_' or '.'", self.host_id));
        }
        if let Some(bip) = self.bip {
            if bip.prefix_len() > 30 || bip.addr() == bip.network() || bip.addr() == bip.broadcast() {
                return bad(format!("invalid --bip {bip}: needs a host address in a subnet of at least 4 addresses"));
            }
        }
        let l = self.dns_limits;
        if l.forwards == 0 || l.forwards_per_container == 0 {
            return bad(format!("invalid --dns-forward-max {} / --dns-forward-max-per-container {}: at least 1 each", l.forwards, l.forwards_per_container));
        }
        Ok(())
    }
}
