//! The records the engine keeps in its store and the request types of the API. Field names follow
//! Docker's API where Docker has the same concept (PascalCase on the wire).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{validate_container_name, validate_network_name, ModelError};

/// The name of the default network, as in Docker.
pub const DEFAULT_NETWORK: &str = "bridge";

/// `--net` / `HostConfig.NetworkMode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A network by name; `bridge` is the default network.
    Network(String),
    /// The host's network namespace.
    Host,
    /// A new namespace with only `lo`.
    None,
    /// Share the network namespace of another container.
    Container(String),
}

impl FromStr for NetworkMode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "" | "default" | DEFAULT_NETWORK => Ok(Self::Network(DEFAULT_NETWORK.into())),
            "host" => Ok(Self::Host),
            "none" => Ok(Self::None),
            _ => {
                if let Some(target) = s.strip_prefix("container:") {
                    validate_container_name(target)
                        .map_err(|_| ModelError::NetworkMode(s.to_string()))?;
                    return Ok(Self::Container(target.to_string()));
                }
                validate_network_name(s).map_err(|_| ModelError::NetworkMode(s.to_string()))?;
                Ok(Self::Network(s.to_string()))
            }
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(n) => f.write_str(n),
            Self::Host => f.write_str("host"),
            Self::None => f.write_str("none"),
            Self::Container(c) => write!(f, "container:{c}"),
        }
    }
}

/// An `--add-host NAME:IP` entry.
pub fn parse_add_host(s: &str) -> Result<(String, IpAddr), ModelError> {
    let err = || ModelError::AddHost(s.to_string());
    let (name, ip) = s.split_once(':').ok_or_else(err)?;
    crate::validate_hostname(name).map_err(|_| err())?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Ok((name.to_string(), ip.parse().map_err(|_| err())?))
}

/// A `--link NAME[:ALIAS]` (the alias defaults to the name).
pub fn parse_link(s: &str) -> Result<(String, String), ModelError> {
    let (name, alias) = s.split_once(':').unwrap_or((s, s));
    validate_container_name(name).map_err(|_| ModelError::Link(s.to_string()))?;
    crate::validate_hostname(alias).map_err(|_| ModelError::Link(s.to_string()))?;
    Ok((name.trim_start_matches('/').to_string(), alias.to_string()))
}

/// A resolved `--link`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkRecord {
    pub target: String,
    pub name: String,
    pub alias: String,
    pub ip: Ipv4Addr,
    pub ports: Vec<(u16, crate::Proto)>,
}

/// Docker's link environment variables of one link, seen from container `me`.
pub fn link_env(me: &str, l: &LinkRecord, target_env: &[String]) -> Vec<String> {
    let a = l.alias.to_ascii_uppercase().replace(['-', '.'], "_");
    let mut env = vec![format!("{a}_NAME=/{me}/{}", l.alias)];
    let mut ports = l.ports.clone();
    ports.sort();
    if let Some((p, proto)) = ports.first() {
        env.push(format!("{a}_PORT={proto}://{}:{p}", l.ip));
    }
    for (p, proto) in &ports {
        let k = format!("{a}_PORT_{p}_{}", proto.to_string().to_ascii_uppercase());
        env.push(format!("{k}={proto}://{}:{p}", l.ip));
        env.push(format!("{k}_ADDR={}", l.ip));
        env.push(format!("{k}_PORT={p}"));
        env.push(format!("{k}_PROTO={proto}"));
    }
    for kv in target_env {
        if let Some((k, v)) = kv.split_once('=') {
            if !matches!(k, "HOME" | "PATH" | "HOSTNAME") {
                env.push(format!("{a}_ENV_{k}={v}"));
            }
        }
    }
    env
}

/// What `weft run` asks for (the body of `POST /containers/run`). Unknown fields are refused:
/// a field weft would silently ignore (`"Privileged": true` once did) is worse than an error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct RunSpec {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub network_mode: String,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub rootfs: Option<String>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub auto_remove: bool,
    /// `-p` specs, as typed.
    pub publish: Vec<String>,
    /// `-P`: publish every `--expose`d port on an ephemeral host port.
    pub publish_all: bool,
    /// `--expose` specs, as typed.
    pub expose: Vec<String>,
    /// More networks to join (a second `--network` and later), as `eth1`, `eth2`, …
    pub networks: Vec<String>,
    /// `--ip`: the address on the first network.
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias`: extra names on the first network.
    pub aliases: Vec<String>,
    /// `--link NAME[:ALIAS]` (default bridge).
    pub links: Vec<String>,
    /// `--mac-address` of the first network's interface.
    pub mac_address: Option<String>,
    /// `--ip6`: the IPv6 address on the first network.
    pub ip6: Option<Ipv6Addr>,
    /// `--privileged`: every capability, no seccomp filter, no masked or read-only paths.
    pub privileged: bool,
    /// `--cap-add`, `--cap-drop`, as typed (see [`crate::effective_caps`]).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `-t`: the command's stdin, stdout and stderr are a terminal (a pty of the container's own
    /// devpts) whose other side weftd holds and relays.
    pub tty: bool,
    /// `-i`: keep the command's stdin open for attached clients to write to.
    pub open_stdin: bool,
    /// Close the command's stdin when the first attached client ends its input (`run -i` in the
    /// foreground, as `echo hi | docker run -i … cat`).
    pub stdin_once: bool,
    /// `--memory`, bytes (0: no limit).
    pub memory: u64,
    /// `--cpus`, in billionths of a CPU (0: no limit).
    pub nano_cpus: u64,
    /// `--pids-limit`: not given (the daemon's default), 0 or -1 (none), or the limit.
    pub pids_limit: Option<i64>,
    /// `--device-cgroup-rule`s, added to Docker's default allowed devices.
    pub device_cgroup_rules: Vec<String>,
    /// `--log-opt KEY=VALUE`s (`max-size`, `max-file`; see [`crate::parse_log_opts`]).
    pub log_opts: Vec<String>,
}

/// What `weft exec` asks for (the body of `POST /containers/{id}/exec`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    /// KEY=VALUE, after the container's own environment.
    pub env: Vec<String>,
    pub tty: bool,
    /// Relay the client's input to the command's stdin (else it reads /dev/null).
    pub attach_stdin: bool,
}

impl ExecSpec {
    pub fn validate(&self) -> Result<(), ModelError> {
        match self.cmd.first() {
            None => Err(ModelError::Cmd("no command given".into())),
            Some(c) if c.is_empty() => Err(ModelError::Cmd("the command is an empty string".into())),
            Some(_) => check_exec_strings(self.cmd.iter().chain(&self.env), &self.env),
        }
    }
}

/// A unicast Ethernet address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], ModelError> {
    let bad = || ModelError::Mac(s.to_string());
    let parts: Vec<u8> = s.split(':').map(|p| if p.len() == 2 { u8::from_str_radix(p, 16).ok() } else { None }).collect::<Option<_>>().ok_or_else(bad)?;
    let mac: [u8; 6] = parts.try_into().map_err(|_| bad())?;
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

/// What execve takes: a non-empty program name, no NUL anywhere, each string under the
/// kernel's 128 KiB, all of them under 1 MiB; and `env` as KEY=VALUE.
fn check_exec_strings<'a>(strings: impl Iterator<Item = &'a String>, env: &[String]) -> Result<(), ModelError> {
    let mut total = 0;
    for s in strings {
        if s.contains('\0') {
            return Err(ModelError::Cmd(format!("NUL byte in {:?}", s.replace('\0', "\\0"))));
        }
        if s.len() >= 128 << 10 {
            return Err(ModelError::Cmd(format!("an argument or variable of {} bytes (at most 128 KiB)", s.len())));
        }
        total += s.len() + 1;
    }
    if total > 1 << 20 {
        return Err(ModelError::Cmd(format!("command and environment of {total} bytes (at most 1 MiB)")));
    }
    for e in env {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => return Err(ModelError::Env(e.clone())),
        }
    }
    Ok(())
}

impl RunSpec {
    /// Checks every field that can be checked without the engine's state.
    pub fn validate(&self) -> Result<NetworkMode, ModelError> {
        match self.cmd.first() {
            None => return Err(ModelError::Cmd("no command given".into())),
            Some(c) if c.is_empty() => return Err(ModelError::Cmd("the command is an empty string".into())),
            Some(_) => {}
        }
        check_exec_strings(self.cmd.iter().chain(&self.env).chain(&self.rootfs), &self.env)?;
        if let Some(n) = &self.name {
            validate_container_name(n)?;
        }
        if let Some(h) = &self.hostname {
            crate::validate_hostname(h)?;
        }
        for h in &self.extra_hosts {
            parse_add_host(h)?;
        }
        for d in &self.dns_search {
            crate::validate_hostname(d)?;
        }
        for o in &self.dns_options {
            crate::validate_dns_option(o)?;
        }
        for a in &self.aliases {
            crate::validate_alias(a)?;
        }
        crate::check_port_count(&self.port_specs()?)?;
        crate::parse_log_opts(&self.log_opts)?;
        let mode: NetworkMode = self.network_mode.parse()?;
        if let NetworkMode::None | NetworkMode::Host | NetworkMode::Container(_) = &mode {
            for (flag, given) in [("--ip", self.ip.is_some()), ("--mac-address", self.mac_address.is_some()), ("--network-alias", !self.aliases.is_empty())] {
                if given {
                    return Err(ModelError::NeedsNetwork { flag, mode: mode.to_string() });
                }
            }
        }
        if !self.publish.is_empty() || self.publish_all {
            match mode {
                NetworkMode::Network(_) => {}
                other => return Err(ModelError::PublishMode(other.to_string())),
            }
        }
        for n in &self.networks {
            validate_network_name(n)?;
        }
        for l in &self.links {
            parse_link(l)?;
        }
        if let Some(m) = &self.mac_address {
            parse_mac(m)?;
        }
        crate::effective_caps(self.privileged, &self.cap_add, &self.cap_drop)?;
        if self.memory != 0 && self.memory < crate::MIN_MEMORY {
            return Err(ModelError::MemoryTooSmall(self.memory));
        }
        if self.nano_cpus != 0 && self.nano_cpus < crate::MIN_NANO_CPUS {
            return Err(ModelError::CpusTooSmall(self.nano_cpus));
        }
        crate::check_pids_limit(self.pids_limit)?;
        self.device_rules()?;
        Ok(mode)
    }

    /// The `--device-cgroup-rule`s, parsed.
    pub fn device_rules(&self) -> Result<Vec<crate::DeviceRule>, ModelError> {
        self.device_cgroup_rules.iter().map(|r| r.parse()).collect()
    }

    /// The ports to publish: every `-p`, and with `-P` every `--expose`d port on an ephemeral port.
    pub fn port_specs(&self) -> Result<Vec<crate::PortSpec>, ModelError> {
        let mut specs = self.publish.iter().map(|p| crate::parse_publish(p)).collect::<Result<Vec<_>, _>>()?;
        let exposed = self.expose.iter().map(|e| crate::parse_expose(e)).collect::<Result<Vec<_>, _>>()?;
        if self.publish_all {
            for (range, proto) in exposed {
                for port in range.iter() {
                    let container = crate::PortRange { start: port, end: port };
                    if !specs.iter().any(|s| s.proto == proto && s.container.iter().any(|c| c == port)) {
                        specs.push(crate::PortSpec { host_ip: None, host: None, container, proto });
                    }
                }
            }
        }
        Ok(specs)
    }
}

/// The lifecycle state of a container.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Exited => "exited",
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerState {
    pub status: Status,
    /// Host pid of the container's init (its pid 1), 0 when not running.
    pub pid: u32,
    /// The init's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the
    /// pid it identifies the process across a daemon restart, immune to pid reuse.
    pub pid_start: u64,
    pub exit_code: i32,
    pub started_at: u64,
    pub finished_at: u64,
}

/// One interface of a container on one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    pub endpoint_id: String,
    pub network_id: String,
    pub network_name: String,
    /// Name inside the container (`eth0`, `eth1`, …).
    pub ifname: String,
    /// Its host end (a bridge endpoint's veth: `veth` + 7 hex); empty for an endpoint that is
    /// only its interface inside (macvlan).
    pub host_ifname: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// `--network-alias` / `connect --alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The IPv6 address on a dual-stack network.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
}

impl EndpointRecord {
    /// The endpoint's link in the daemon's namespace, if it has one.
    pub fn host_end(&self) -> Option<&str> {
        Some(self.host_ifname.as_str()).filter(|h| !h.is_empty())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub spec: RunSpec,
    pub state: ContainerState,
    /// Its network: a container is a process plus a sandbox (the same fields as before in the
    /// record's JSON: `sandbox_key`, `endpoints`, `ports`).
    #[serde(flatten)]
    pub sandbox: Sandbox,
    /// Where the container's output goes.
    pub log_path: String,
    /// `--link`s, as resolved at run.
    #[serde(default)]
    pub links: Vec<LinkRecord>,
    /// The hostname and the whole environment the command got (what `exec` uses too).
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub env: Vec<String>,
}

impl ContainerRecord {
    pub fn network_mode(&self) -> NetworkMode {
        self.spec
            .network_mode
            .parse()
            .unwrap_or(NetworkMode::Network(DEFAULT_NETWORK.into()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub driver: DriverKind,
    /// The network's link on the host: the Linux bridge carrying it, or a macvlan network's
    /// parent (a dummy link of weft's for an internal one). (`bridge` in the JSON of every record.)
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Container addresses come only from here (`--fixed-cidr`, `--ip-range`).
    pub ip_range: Option<Ipv4Net>,
    pub mtu: u32,
    /// weft created the network's link (false for `-b` and a macvlan parent): it may delete and
    /// readdress only its own.
    pub managed_bridge: bool,
    pub icc: bool,
    pub masquerade: bool,
    pub internal: bool,
    pub created: u64,
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `com.docker.network.bridge.host_binding_ipv4`: default host address of `-p` here.
    #[serde(default)]
    pub host_binding_ipv4: Option<Ipv4Addr>,
    /// Dual-stack networks: the IPv6 subnet and gateway.
    #[serde(default)]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// Who allocates from the network: this host alone, or every host sharing the store.
    #[serde(default)]
    pub scope: Scope,
    /// `com.weft.bridge.proxy_arp` as given (absent in records older than this field: read
    /// from `options` then).
    #[serde(default)]
    pub proxy_arp_option: Option<bool>,
    /// A routed network as one host has it: the whole range (`subnet` is then this host's block
    /// of it). Never in the shared record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_range: Option<Ipv4Net>,
}

/// A network's scope, as Docker's `--scope`: `local` networks are one host's (their records and
/// address claims live under the host's keys); a `global` one is known to every daemon sharing
/// the store, each with its own bridge, and its addresses are claimed in the shared keys, so no
/// two hosts hand out one address.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Local,
    Global,
}

impl Scope {
    /// `--scope` as typed (empty: local).
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s {
            "" | "local" => Ok(Self::Local),
            "global" => Ok(Self::Global),
            "swarm" => Err(ModelError::Network("scope \"swarm\" needs a swarm: use global, which every weftd sharing the store sees".into())),
            other => Err(ModelError::Network(format!("scope {other:?} is not one of local, global"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Global => "global",
        }
    }
}

/// A MAC derived from the IPv4 address (`02:42:` + the four bytes), as Docker did and the seeds
/// show: stable for an address, so a peer's ARP cache is never wrong about a reused address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Docker's bridge driver options that weft understands.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
pub const OPT_MASQ: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub const OPT_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
/// weft's own: `false` keeps Docker's flooding of ARP (and every broadcast) to all ports.
pub const OPT_PROXY_ARP: &str = "com.weft.bridge.proxy_arp";
/// weft's own: `false` lets a container's port send from any MAC and address (Docker's way).
pub const OPT_ANTI_SPOOF: &str = "com.weft.bridge.anti_spoof";
/// bridge: a host interface enslaved into the bridge, its addresses and routes moved onto it.
pub const OPT_UPLINK: &str = "com.weft.bridge.uplink";
/// macvlan: the host interface whose L2 the network's endpoints join (absent: a link of weft's).
pub const OPT_PARENT: &str = "parent";
/// macvlan: `bridge` (default), `private`, `vepa` or `passthru`.
pub const OPT_MACVLAN_MODE: &str = "macvlan_mode";
pub const MACVLAN_MODES: [&str; 4] = ["bridge", "private", "vepa", "passthru"];
/// ovs: an Open vSwitch bridge of the user's (absent: one of weft's, `ob-` + 12 hex of the id).
pub const OPT_OVS_BRIDGE: &str = "ovs.bridge";
/// ovs: `system` (the kernel module) or `netdev` (userspace); default: `system` if the module
/// is loaded, else `netdev`.
pub const OPT_OVS_DATAPATH: &str = "ovs.datapath_type";
/// ovs: `vxlan`, `gre` or `geneve` tunnel ports to the hosts of [`OPT_OVS_REMOTE`].
pub const OPT_OVS_TUNNEL: &str = "ovs.tunnel";
/// ovs: the other hosts' underlay addresses, `IP[,IP…]`.
pub const OPT_OVS_REMOTE: &str = "ovs.remote";
pub const OVS_TUNNELS: [&str; 3] = ["vxlan", "gre", "geneve"];
/// overlay: the VXLAN network identifier (1 to 16777215; default: the lowest free from 4096),
/// claimed in the shared store with the network.
pub const OPT_VXLAN_ID: &str = "vxlan.id";
/// bridge, global: each host takes a block of the subnet for its containers and routes to the
/// other hosts' blocks through their advertised addresses; no encapsulation.
pub const OPT_ROUTED: &str = "com.weft.routed";
/// routed: the prefix length of each host's block (default: 24, or 4 bits longer than the
/// subnet's if that is longer, at most 28).
pub const OPT_ROUTED_BLOCK: &str = "com.weft.routed.block";
/// The UDP port of every overlay's VXLAN traffic (IANA's).
pub const VXLAN_PORT: u16 = 4789;

/// The most ports a Linux bridge holds (`BR_MAX_PORTS` less port 0).
pub const BRIDGE_MAX_PORTS: usize = 1023;

impl NetworkRecord {
    /// An OVS network's tunnels: their type and the other hosts' addresses.
    pub fn ovs_tunnels(&self) -> Option<(&str, Vec<Ipv4Addr>)> {
        let kind = self.options.get(OPT_OVS_TUNNEL)?;
        let remotes = self.options.get(OPT_OVS_REMOTE)?.split(',').filter_map(|ip| ip.trim().parse().ok()).collect();
        Some((kind.as_str(), remotes))
    }

    /// Whether each host routes its own block of the subnet (`com.weft.routed=true`).
    pub fn routed(&self) -> bool {
        self.options.get(OPT_ROUTED).is_some_and(|v| v == "true")
    }

    /// A routed network's block size (see [`OPT_ROUTED_BLOCK`]).
    pub fn routed_block(&self) -> u8 {
        let range = self.routed_range.unwrap_or(self.subnet);
        self.options.get(OPT_ROUTED_BLOCK).and_then(|v| v.parse().ok()).unwrap_or_else(|| (range.prefix_len() + 4).clamp(24, 28))
    }

    /// An overlay network's VXLAN id (recorded in its options at creation).
    pub fn vni(&self) -> Option<u32> {
        self.options.get(OPT_VXLAN_ID)?.parse().ok()
    }

    /// An overlay network's VXLAN device on each host: `vx-` + 12 hex of the id.
    pub fn vxlan_name(&self) -> String {
        format!("vx-{}", crate::short_id(&self.id))
    }

    /// The host interface enslaved into the bridge (`com.weft.bridge.uplink`), if any.
    pub fn uplink(&self) -> Option<&str> {
        self.options.get(OPT_UPLINK).map(String::as_str)
    }

    /// Whether the bridge answers ARP for its containers (`proxy_arp` on their ports, their
    /// addresses pinned in its neighbour table) instead of flooding requests to every port: on
    /// bridges weft made, IPv4-only (proxy-ARP ports get no flooded multicast, which IPv6
    /// neighbour discovery needs), unless the network says `com.weft.bridge.proxy_arp=false`.
    pub fn proxy_arp(&self) -> bool {
        let wanted = self.proxy_arp_option.unwrap_or_else(|| self.options.get(OPT_PROXY_ARP).is_none_or(|v| v != "false"));
        self.driver == DriverKind::Bridge && self.managed_bridge && self.subnet6.is_none() && self.uplink().is_none() && wanted
    }

    /// Whether each container's bridge port may send only from its own MAC and addresses
    /// (IPv4, ARP, IPv6): on every bridge network unless it says `com.weft.bridge.anti_spoof=false`.
    pub fn anti_spoof(&self) -> bool {
        matches!(self.driver, DriverKind::Bridge | DriverKind::Overlay) && self.options.get(OPT_ANTI_SPOOF).is_none_or(|v| v != "false")
    }
}

/// The driver of a network, as records hold it (`"bridge"` in JSON, as Docker names it).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    #[default]
    Bridge,
    /// Endpoints are macvlan links of a host interface (`-o parent=IF`), on its L2 directly.
    Macvlan,
    /// Endpoints are veths whose host ends are ports of an Open vSwitch bridge.
    Ovs,
    /// A bridge on every host joined by a VXLAN device whose forwarding and neighbour entries
    /// come from the shared store (scope global; see `docs/multihost.md`).
    Overlay,
}

impl DriverKind {
    /// `-d NAME` as typed (empty: the default, bridge).
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s {
            "" | "bridge" => Ok(Self::Bridge),
            "macvlan" => Ok(Self::Macvlan),
            "ovs" | "openvswitch" => Ok(Self::Ovs),
            "overlay" => Ok(Self::Overlay),
            other => Err(ModelError::Network(format!("driver {other:?} is not supported (bridge, macvlan, ovs, overlay)"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Macvlan => "macvlan",
            Self::Ovs => "ovs",
            Self::Overlay => "overlay",
        }
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `weft network create` (the body of `POST /networks/create`); unknown fields are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: String,
    /// `--scope` (empty: local).
    pub scope: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    pub internal: bool,
    pub enable_ipv6: bool,
    /// With `enable_ipv6`: the IPv6 subnet (a ULA /64 derived from the network's id if absent).
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The driver options of a network spec (`-o`), parsed; each is refused on a driver it is not
/// an option of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkOptions {
    pub bridge_name: Option<String>,
    /// bridge: `-o com.weft.bridge.uplink=IF`.
    pub uplink: Option<String>,
    /// macvlan: `-o parent=IF`.
    pub parent: Option<String>,
    /// macvlan: `-o macvlan_mode=MODE` (one of [`MACVLAN_MODES`]).
    pub macvlan_mode: Option<String>,
    /// ovs: `-o ovs.bridge=NAME`.
    pub ovs_bridge: Option<String>,
    pub mtu: Option<u32>,
    pub icc: Option<bool>,
    pub masquerade: Option<bool>,
    pub host_binding_ipv4: Option<Ipv4Addr>,
    pub proxy_arp: Option<bool>,
    /// overlay: `-o vxlan.id=N`.
    pub vni: Option<u32>,
}

/// IPv4 ranges no network may use.
const V4_RESERVED: [(&str, &str); 5] = [
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
];

/// IPv6 ranges no network may use.
const V6_RESERVED: [(&str, &str); 5] = [
    ("::/127", "unspecified or loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("2001:db8::/32", "documentation"),
];

impl NetworkSpec {
    /// Checks everything that can be checked without the engine's state.
    pub fn validate(&self) -> Result<NetworkOptions, ModelError> {
        let bad = |m: String| Err(ModelError::Network(m));
        validate_network_name(&self.name)?;
        if matches!(self.name.as_str(), "bridge" | "host" | "none" | "default") {
            return bad(format!("{} is a pre-defined network name", self.name));
        }
        let driver = DriverKind::parse(&self.driver)?;
        // (An overlay's scope is global whatever was asked: it spans hosts by definition.)
        Scope::parse(&self.scope)?;
        if driver == DriverKind::Overlay && self.enable_ipv6 {
            return bad("overlay networks are IPv4 only".into());
        }
        if !self.enable_ipv6 && (self.subnet6.is_some() || self.gateway6.is_some()) {
            return bad("an IPv6 --subnet or --gateway needs --ipv6".into());
        }
        if let Some(s6) = self.subnet6 {
            let net = s6.trunc();
            if net != s6 {
                return bad(format!("invalid subnet {s6}: it should be {net}"));
            }
            for (reserved, what) in V6_RESERVED {
                let r: Ipv6Net = reserved.parse().expect("a constant CIDR");
                if r.contains(&net.network()) || net.contains(&r.network()) {
                    return bad(format!("subnet {s6} is {what} address space"));
                }
            }
            if net.prefix_len() > 124 {
                return bad(format!("subnet {s6} is too small: at most /124"));
            }
            if let Some(gw) = self.gateway6 {
                if !net.contains(&gw) || gw == net.network() {
                    return bad(format!("gateway {gw} is not a host address of subnet {net}"));
                }
            }
        } else if self.gateway6.is_some() {
            return bad("an IPv6 --gateway needs an IPv6 --subnet".into());
        }
        if self.subnet.is_none() && (self.gateway.is_some() || self.ip_range.is_some() || !self.aux_addresses.is_empty()) {
            return bad("--gateway, --ip-range and --aux-address need --subnet".into());
        }
        if let Some(subnet) = self.subnet {
            let net = subnet.trunc();
            if net != subnet {
                return bad(format!("invalid subnet {subnet}: it should be {net}"));
            }
            for (reserved, what) in V4_RESERVED {
                let r: Ipv4Net = reserved.parse().expect("a constant CIDR");
                if r.contains(&net.network()) || net.contains(&r.network()) {
                    return bad(format!("subnet {subnet} is {what} address space"));
                }
            }
            if net.prefix_len() > 30 {
                return bad(format!("subnet {subnet} is too small: at most /30"));
            }
            if let Some(gw) = self.gateway {
                if !net.contains(&gw) || gw == net.network() || gw == net.broadcast() {
                    return bad(format!("gateway {gw} is not a host address of subnet {net}"));
                }
            }
            if let Some(r) = self.ip_range {
                if !net.contains(&r) {
                    return bad(format!("ip range {r} is not inside subnet {net}"));
                }
            }
            for (name, ip) in &self.aux_addresses {
                if !net.contains(ip) {
                    return bad(format!("aux address {name}={ip} is not inside subnet {net}"));
                }
            }
        }
        let mut o = NetworkOptions::default();
        let flag = |k: &str, v: &str| -> Result<bool, ModelError> {
            v.parse::<bool>().map_err(|_| ModelError::Network(format!("option {k}={v}: expected true or false")))
        };
        for (k, v) in &self.options {
            let bridge_only = [OPT_BRIDGE_NAME, OPT_PROXY_ARP, OPT_UPLINK, OPT_ROUTED, OPT_ROUTED_BLOCK].contains(&k.as_str());
            // Options of a bridge that an overlay (a bridge on each host) has too.
            let bridged = [OPT_ICC, OPT_ANTI_SPOOF, OPT_MASQ, OPT_HOST_BINDING].contains(&k.as_str());
            let macvlan_only = [OPT_PARENT, OPT_MACVLAN_MODE].contains(&k.as_str());
            let ovs_only = [OPT_OVS_BRIDGE, OPT_OVS_DATAPATH, OPT_OVS_TUNNEL, OPT_OVS_REMOTE].contains(&k.as_str());
            let overlay_only = k == OPT_VXLAN_ID;
            if (bridge_only && driver != DriverKind::Bridge)
                || (bridged && !matches!(driver, DriverKind::Bridge | DriverKind::Overlay))
                || (macvlan_only && driver != DriverKind::Macvlan)
                || (ovs_only && driver != DriverKind::Ovs)
                || (overlay_only && driver != DriverKind::Overlay)
            {
                return bad(format!("option {k} is not an option of the {driver} driver"));
            }
            match k.as_str() {
                OPT_PARENT => {
                    crate::validate_ifname(v)?;
                    o.parent = Some(v.clone());
                }
                OPT_UPLINK => {
                    crate::validate_ifname(v)?;
                    if self.subnet.is_none() || self.gateway.is_none() || self.ip_range.is_none() {
                        return bad(format!("option {k}: an uplinked network shares its subnet with the uplink's LAN: give --subnet, --gateway and --ip-range (this host's slice)"));
                    }
                    if self.enable_ipv6 {
                        return bad(format!("option {k}: IPv4 only (the uplink's IPv6 addresses do not move)"));
                    }
                    o.uplink = Some(v.clone());
                }
                OPT_MACVLAN_MODE if MACVLAN_MODES.contains(&v.as_str()) => o.macvlan_mode = Some(v.clone()),
                OPT_MACVLAN_MODE => return bad(format!("option {k}={v}: one of {}", MACVLAN_MODES.join(", "))),
                OPT_OVS_BRIDGE => {
                    crate::validate_ifname(v)?;
                    o.ovs_bridge = Some(v.clone());
                }
                OPT_OVS_DATAPATH if v == "system" || v == "netdev" => {}
                OPT_OVS_DATAPATH => return bad(format!("option {k}={v}: system or netdev")),
                OPT_OVS_TUNNEL if OVS_TUNNELS.contains(&v.as_str()) && self.options.contains_key(OPT_OVS_REMOTE) => {}
                OPT_OVS_TUNNEL if OVS_TUNNELS.contains(&v.as_str()) => return bad(format!("option {k}: give the other hosts with -o {OPT_OVS_REMOTE}=IP[,IP…]")),
                OPT_OVS_TUNNEL => return bad(format!("option {k}={v}: one of {}", OVS_TUNNELS.join(", "))),
                OPT_OVS_REMOTE if !self.options.contains_key(OPT_OVS_TUNNEL) => return bad(format!("option {k}: give the tunnel type with -o {OPT_OVS_TUNNEL}=vxlan|gre|geneve")),
                OPT_OVS_REMOTE => {
                    for ip in v.split(',') {
                        match ip.trim().parse::<Ipv4Addr>() {
                            Ok(a) if !a.is_unspecified() && !a.is_loopback() && !a.is_multicast() && !a.is_broadcast() => {}
                            _ => return bad(format!("option {k}={v}: {ip:?} is not a host's IPv4 address")),
                        }
                    }
                }
                OPT_BRIDGE_NAME => {
                    crate::validate_ifname(v)?;
                    // Names of other kinds: weft's veth host ends (the reaper deletes those),
                    // interfaces inside containers, the loopback.
                    if v.starts_with("veth") || v.starts_with("eth") || v == "lo" {
                        return bad(format!("option {k}={v}: a bridge may not be named like a veth, an ethN interface or lo"));
                    }
                    o.bridge_name = Some(v.clone());
                }
                OPT_MTU => match v.parse::<u32>() {
                    Ok(m) if (68..=65535).contains(&m) => o.mtu = Some(m),
                    _ => return bad(format!("option {k}={v}: MTU between 68 and 65535")),
                },
                OPT_ROUTED if v == "true" || v == "false" => {
                    if v == "true" {
                        if Scope::parse(&self.scope)? != Scope::Global {
                            return bad(format!("option {k}: a routed network spans hosts: give --scope global"));
                        }
                        if self.subnet.is_none() || self.gateway.is_some() || self.ip_range.is_some() || self.enable_ipv6 || self.options.contains_key(OPT_UPLINK) {
                            return bad(format!("option {k}: give the whole range with --subnet (each host takes a block of it, its gateway the block's first address); no --gateway, --ip-range, --ipv6 or uplink"));
                        }
                    }
                }
                OPT_ROUTED => return bad(format!("option {k}={v}: expected true or false")),
                OPT_ROUTED_BLOCK => {
                    let range = self.subnet.map_or(0, |s| s.prefix_len());
                    match v.parse::<u8>() {
                        Ok(b) if b > range && b <= 29 && self.options.get(OPT_ROUTED).is_some_and(|r| r == "true") => {}
                        _ => return bad(format!("option {k}={v}: a prefix length longer than the subnet's /{range}, at most 29, with {OPT_ROUTED}=true")),
                    }
                }
                OPT_VXLAN_ID => match v.parse::<u32>() {
                    Ok(n) if (1..=16_777_215).contains(&n) => o.vni = Some(n),
                    _ => return bad(format!("option {k}={v}: a VXLAN id between 1 and 16777215")),
                },
                OPT_ICC => o.icc = Some(flag(k, v)?),
                OPT_PROXY_ARP => o.proxy_arp = Some(flag(k, v)?),
                OPT_ANTI_SPOOF => {
                    flag(k, v)?;
                }
                OPT_MASQ => o.masquerade = Some(flag(k, v)?),
                OPT_HOST_BINDING => {
                    o.host_binding_ipv4 = Some(v.parse().map_err(|_| ModelError::Network(format!("option {k}={v}: not an IPv4 address")))?)
                }
                _ => return bad(format!("unknown option {k}")),
            }
        }
        Ok(o)
    }
}

/// A network namespace with its endpoints and published ports: the network of a container, or
/// a namespace weft did not start, attached on its own (a [`SandboxRecord`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sandbox {
    /// The namespace: a bind mount (`<exec-root>/netns/<id>`), `/proc/PID/ns/net`, or a path the
    /// user gave; none once a container has exited (or with `--net host`).
    #[serde(rename = "sandbox_key")]
    pub netns: Option<String>,
    pub endpoints: Vec<EndpointRecord>,
    /// Published ports (on the first endpoint's address), as allocated.
    #[serde(default)]
    pub ports: Vec<crate::PortMapping>,
}

/// A namespace weft did not create, attached to a network (`weft network connect NET --netns
/// PATH | --pid PID`): a sandbox without a weft process, its name, and the process whose exit
/// releases it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "SandboxRecordJson")]
pub struct SandboxRecord {
    pub key: String,
    #[serde(flatten)]
    pub sandbox: Sandbox,
    /// `--pid`: the process (and its start time, against pid reuse) whose exit detaches it.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// The namespace's identity (device, inode): one namespace is attached once per network.
    #[serde(default)]
    pub netns_id: Option<(u64, u64)>,
    /// The runtime whose container this namespace is (a CNI call, an OCI hook), by which its
    /// plugin finds the attachment again; none for `network connect --netns/--pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeRef>,
}

/// A container as the runtime that started it names it: `cni` (the CNI container id) or `oci`
/// (the OCI state's id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeRef {
    pub kind: String,
    pub id: String,
}

impl SandboxRecord {
    /// Its endpoint (an attached namespace has one).
    pub fn endpoint(&self) -> Option<&EndpointRecord> {
        self.sandbox.endpoints.first()
    }
    /// Its namespace's path.
    pub fn netns(&self) -> &str {
        self.sandbox.netns.as_deref().unwrap_or_default()
    }
}

/// A `SandboxRecord` as stored now, or as stored before sandboxes were one type (`netns`, one
/// `endpoint`, `ports` at the top).
#[derive(Deserialize)]
struct SandboxRecordJson {
    key: String,
    #[serde(default)]
    sandbox_key: Option<String>,
    #[serde(default)]
    endpoints: Vec<EndpointRecord>,
    #[serde(default)]
    netns: Option<String>,
    #[serde(default)]
    endpoint: Option<EndpointRecord>,
    #[serde(default)]
    ports: Vec<crate::PortMapping>,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    pid_start: Option<u64>,
    #[serde(default)]
    netns_id: Option<(u64, u64)>,
    #[serde(default)]
    runtime: Option<RuntimeRef>,
}

impl From<SandboxRecordJson> for SandboxRecord {
    fn from(j: SandboxRecordJson) -> Self {
        Self {
            key: j.key,
            sandbox: Sandbox { netns: j.sandbox_key.or(j.netns), endpoints: if j.endpoints.is_empty() { j.endpoint.into_iter().collect() } else { j.endpoints }, ports: j.ports },
            pid: j.pid,
            pid_start: j.pid_start,
            netns_id: j.netns_id,
            runtime: j.runtime,
        }
    }
}

/// A row of `weft ps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub command: String,
    pub status: String,
    pub network_mode: String,
    pub ip_address: String,
}

/// The body of every error answer of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

#[cfg(test)]
mod tests {

    /// Records written before sandboxes were one type still read, as the same sandbox.
    #[test]
    fn sandbox_records_of_both_layouts_read_alike() {
        let endpoint = r#"{"endpoint_id":"e1","network_id":"n1","network_name":"bridge","ifname":"eth0","host_ifname":"veth0000001","ip":"172.17.0.9","prefix_len":16,"gateway":"172.17.0.1","mac":"02:42:ac:11:00:09"}"#;
        let old = format!(r#"{{"key":"lab","netns":"/run/netns/lab","endpoint":{endpoint},"pid":null,"ports":[]}}"#);
        let rec: SandboxRecord = serde_json::from_str(&old).expect("old layout");
        assert_eq!((rec.netns(), rec.endpoint().map(|e| e.ip.to_string())), ("/run/netns/lab", Some("172.17.0.9".into())));
        let new = serde_json::to_string(&rec).expect("encode");
        assert!(new.contains(r#""sandbox_key":"/run/netns/lab""#) && new.contains(r#""endpoints":["#), "{new}");
        assert_eq!(serde_json::from_str::<SandboxRecord>(&new).expect("new layout"), rec);
    }

    use super::*;

    #[test]
    fn network_modes() {
        assert_eq!("".parse::<NetworkMode>(), Ok(NetworkMode::Network("bridge".into())));
        assert_eq!("host".parse::<NetworkMode>(), Ok(NetworkMode::Host));
        assert_eq!("none".parse::<NetworkMode>(), Ok(NetworkMode::None));
        assert_eq!(
            "container:web".parse::<NetworkMode>(),
            Ok(NetworkMode::Container("web".into()))
        );
        assert!("container:".parse::<NetworkMode>().is_err());
        assert!("bad name".parse::<NetworkMode>().is_err());
        for m in ["bridge", "host", "none", "container:db", "mynet"] {
            assert_eq!(m.parse::<NetworkMode>().map(|m| m.to_string()).as_deref(), Ok(m));
        }
    }

    #[test]
    fn add_host() {
        assert_eq!(
            parse_add_host("db:10.0.0.5"),
            Ok(("db".to_string(), "10.0.0.5".parse().expect("ip")))
        );
        assert!(parse_add_host("db:[::1]").is_ok());
        assert!(parse_add_host("db").is_err());
        assert!(parse_add_host("db:300.1.1.1").is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:42:ac:11:00:09"), Ok([2, 0x42, 0xac, 0x11, 0, 9]));
        assert!(parse_mac("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:09").is_err());
    }

    #[test]
    fn links_and_their_environment() {
        assert_eq!(parse_link("web:www"), Ok(("web".into(), "www".into())));
        assert_eq!(parse_link("db"), Ok(("db".into(), "db".into())));
        assert!(parse_link("db:bad alias").is_err());
        let l = LinkRecord { target: "x".into(), name: "web".into(), alias: "my-web".into(), ip: "172.17.0.2".parse().expect("ip"), ports: vec![(80, crate::Proto::Tcp), (53, crate::Proto::Udp)] };
        let env = link_env("cli", &l, &["GREETING=hi".into(), "PATH=/bin".into()]);
        for want in ["MY_WEB_NAME=/cli/my-web", "MY_WEB_PORT=udp://172.17.0.2:53", "MY_WEB_PORT_80_TCP=tcp://172.17.0.2:80",
                     "MY_WEB_PORT_80_TCP_ADDR=172.17.0.2", "MY_WEB_PORT_80_TCP_PORT=80", "MY_WEB_PORT_80_TCP_PROTO=tcp", "MY_WEB_ENV_GREETING=hi"] {
            assert!(env.contains(&want.to_string()), "{want} missing in {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("MY_WEB_ENV_PATH")));
    }

    #[test]
    fn spec_validation() {
        let mut s = RunSpec { cmd: vec!["true".into()], ..Default::default() };
        assert!(s.validate().is_ok());
        s.env = vec!["=x".into()];
        assert_eq!(s.validate(), Err(ModelError::Env("=x".into())));
        s.env = vec!["A=1".into()];
        s.name = Some("x".into());
        assert!(s.validate().is_err());
    }
}

/// A daemon registered in the shared store (`/weft/nodes/<id>`), under a lease it renews: when
/// the daemon dies, the lease expires and the record goes (`weft node ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The daemon's `--host-id`.
    pub id: String,
    /// `--advertise-addr`: where other hosts reach this one (overlay tunnels, routes).
    #[serde(default)]
    pub addr: Option<std::net::Ipv4Addr>,
    /// The lease the record lives under, and its time to live in seconds.
    pub lease: i64,
    pub ttl: u64,
    /// When the daemon registered (seconds since the epoch).
    pub started: u64,
}

impl NodeRecord {
    /// The API's view (Docker-style field names); `this`: the answering daemon's own record.
    pub fn to_json(&self, this: bool) -> serde_json::Value {
        serde_json::json!({
            "ID": self.id,
            "Addr": self.addr.map(|a| a.to_string()).unwrap_or_default(),
            "Lease": format!("{:x}", self.lease),
            "TTL": self.ttl,
            "Started": self.started,
            "Self": this,
        })
    }
}
