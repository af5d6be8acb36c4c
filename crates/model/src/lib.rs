//! The data model of weft: the records the engine keeps in its store (networks, containers,
//! endpoints), the request and response types of the API, and the validation of everything a user
//! types (names, CIDRs, `--net` modes, `inspect -f` templates). Nothing here touches the kernel, so
//! every parser is unit-tested without root.

mod api;
mod caps;
pub mod docker;
mod inspect;
mod limits;
mod logopts;
mod names;
mod p2p;
mod ports;
mod records;
pub mod stream;
mod template;

pub use api::{AttachReply, AttachSpec, AttachmentRef, CollectSpec, ConnectSpec, ConnectTarget, DisconnectSpec, IdReply, PruneReply, WaitReply};
pub use caps::{effective_caps, ALL_CAPS, DEFAULT_CAPS};
pub use inspect::{container_inspect, network_inspect, parse_rfc3339, rfc3339, sandbox_inspect};
pub use logopts::{parse_log_opts, LogCap, DEFAULT_LOG_MAX_FILE, DEFAULT_LOG_MAX_SIZE};
pub use limits::{
    check_pids_limit, default_device_rules, parse_cpus, parse_memory, ContainerStats, CpuStats, CpuUsage, DeviceRule, MemoryStats, PidsStats, Throttling,
    DEFAULT_DEVICE_RULES, MIN_MEMORY, MIN_NANO_CPUS,
};
pub use names::{
    new_id, short_id, validate_alias, validate_container_name, validate_dns_option, validate_hostname,
    validate_ifname, validate_network_name,
};
pub use p2p::{P2pEnd, P2pRecord, P2pSpec};
pub use ports::{check_port_count, parse_expose, parse_publish, PortMapping, PortRange, PortSpec, Proto, MAX_PUBLISHED_PORTS};
pub use records::*;
pub use template::render as render_template;

/// Errors in user input. Each message is one lowercase line naming the bad value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed")]
    ContainerName(String),
    #[error("invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* are allowed")]
    NetworkName(String),
    #[error("invalid hostname {0:?}")]
    Hostname(String),
    #[error("invalid network alias {0:?}: expected a DNS name")]
    Alias(String),
    #[error("invalid --dns-option {0:?}: expected one token such as ndots:2")]
    DnsOption(String),
    #[error("invalid interface name {0:?}: 1 to 15 of A-Z a-z 0-9 _ -")]
    IfName(String),
    #[error("invalid network mode {0:?}: expected bridge, host, none, container:NAME or a network name")]
    NetworkMode(String),
    #[error("invalid --add-host {0:?}: expected NAME:IP")]
    AddHost(String),
    #[error("invalid command: {0}")]
    Cmd(String),
    #[error("invalid connect: {0}")]
    Connect(String),
    #[error("invalid link: {0}")]
    P2p(String),
    #[error("invalid detach keys {0:?}: expected keys such as ctrl-p,ctrl-q (a letter, ctrl-a to ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_)")]
    DetachKeys(String),
    #[error("invalid environment variable {0:?}: expected KEY=VALUE")]
    Env(String),
    #[error("invalid port specification {spec:?}: {reason}")]
    Publish { spec: String, reason: String },
    #[error("port publishing needs a bridge network, not --net {0}")]
    PublishMode(String),
    #[error("too many published ports: {0} asked, at most {max} per container (each holds a host socket)", max = crate::MAX_PUBLISHED_PORTS)]
    TooManyPorts(usize),
    #[error("{flag} needs a network: not with --net {mode}")]
    NeedsNetwork { flag: &'static str, mode: String },
    #[error("{0}")]
    Network(String),
    #[error("invalid MAC address {0:?}: expected a unicast aa:bb:cc:dd:ee:ff")]
    Mac(String),
    #[error("invalid --link {0:?}: expected NAME[:ALIAS]")]
    Link(String),
    #[error("invalid capability {0:?}: expected a name such as NET_ADMIN, CAP_NET_ADMIN or ALL")]
    Capability(String),
    #[error("invalid --log-opt {opt:?}: {reason}")]
    LogOpt { opt: String, reason: String },
    #[error("invalid memory size {0:?}: expected bytes or a number with b, k, m or g, such as 512m")]
    Memory(String),
    #[error("minimum memory limit allowed is 6MB (--memory {0})")]
    MemoryTooSmall(u64),
    #[error("invalid --cpus {0:?}: expected a number of CPUs such as 1.5")]
    Cpus(String),
    #[error("invalid --cpus: the smallest limit is 0.01 CPU ({0} nano-CPUs given)")]
    CpusTooSmall(u64),
    #[error("invalid --pids-limit {0}: expected a number of processes, or 0 or -1 for no limit")]
    PidsLimit(i64),
    #[error("invalid --device-cgroup-rule {0:?}: expected TYPE MAJOR:MINOR ACCESS such as 'c 42:* rmw' (TYPE a, b or c; * for any number; ACCESS of r, w, m)")]
    DeviceRule(String),
    #[error("invalid template {template:?}: {reason}")]
    Template { template: String, reason: String },
}
