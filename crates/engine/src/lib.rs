//! The engine: every action a user can ask for (one typed enum, [`Action`]), orchestrated over the
//! store, IPAM, the kernel, the firewall and the runtime. Each action either commits whole or
//! leaves the machine as it was: every kernel object it creates is registered with an [`undo::Undo`]
//! guard that removes it unless the action commits. State lives in memory for speed and in the store
//! for durability; the store is written once per action. On start, [`Engine::open`] reconciles the
//! store and the kernel both ways (see `reconcile`).
//!
//! Concurrency: the state lock is held only to read and reserve (a name, an address), never across
//! kernel work or a store commit, so concurrent actions only meet in the kernel's own locks and in
//! the store's group commit.

pub mod actions;
pub mod config;
mod attach;
mod claims;
mod commit;
mod connect;
mod container;
mod endpoints;
pub mod events;
pub mod files;
mod follow;
mod globals;
mod keys;
mod limits;
mod metrics;
mod mirror;
mod network;
mod networks;
mod nodes;
mod p2p;
mod peers;
mod ports;
mod proxy;
mod publish;
mod reaper;
mod reconcile;
mod routed;
mod registry;
mod sandbox;
pub mod stdio;
mod undo;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use weft_firewall::Firewall;
use registry::Registry;
use weft_model::{ContainerRecord, NetworkRecord};
use weft_store::Store;

pub use actions::Action;
pub use config::Config;
pub use peers::RemoteMember;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such network: {0}")]
    NoSuchNetwork(String),
    #[error("no such sandbox: {0}")]
    NoSuchSandbox(String),
    #[error("no such exec: {0}")]
    NoSuchExec(String),
    #[error("no such link: {0}")]
    NoSuchLink(String),
    /// A request the rules refuse as asked (`--link` off the default bridge, a network given
    /// twice, the predefined network's removal, a container already on a network or not on it).
    #[error("{0}")]
    Refused(String),
    /// A subnet or bridge that collides with another network's or the host's.
    #[error("{0}")]
    Overlap(String),
    /// A namespace weft did not start that cannot be attached (no such process or namespace,
    /// the daemon's own, already attached).
    #[error("{0}")]
    Namespace(String),
    /// Other daemons sharing the store kept claiming the addresses offered.
    #[error("{0}")]
    Contention(String),
    /// A terminal that would not take a window size.
    #[error("{0}")]
    Terminal(String),
    /// A broken invariant of weft's own (a worker panicked, …).
    #[error("{0}")]
    Internal(String),
    /// A record changed in the store behind the cache's back (`commit`): read again; try again.
    #[error("{0}")]
    Stale(String),
    #[error("container name \"/{0}\" is already in use")]
    NameInUse(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first or use -f")]
    Running(String),
    #[error("rootfs {0} is neither a directory nor a tar archive")]
    MissingRootfs(String),
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    #[error("network {0} has active endpoints ({1})")]
    NetworkInUse(String, String),
    #[error("all default address pools are fully subnetted: add one with weftd --default-address-pool base=CIDR,size=N, or give --subnet")]
    PoolsExhausted,
    #[error("host port {0} is already allocated")]
    PortInUse(String),
    #[error("network bridge is full: a Linux bridge holds at most 1,023 ports ({0}); use another network")]
    BridgeFull(String),
    #[error("bridge {0} is at 1,023 ports while removed endpoints are being deleted: try again")]
    BridgeBusy(String),
    #[error("MAC address {mac} is already used by {owner} on network {network}")]
    MacInUse { mac: String, owner: String, network: String },
    #[error("invalid signal {0}")]
    Signal(String),
    #[error("no command given")]
    NoCommand,
    /// A `weft exec` command that could not start (not found, not executable).
    #[error("{0}")]
    Exec(String),
    #[error(transparent)]
    Input(#[from] weft_model::ModelError),
    /// The daemon's configuration (flags, the default bridge) cannot work.
    #[error("{0}")]
    Config(String),
    #[error("{op} {path}")]
    Io { op: &'static str, path: String, source: std::io::Error },
    #[error(transparent)]
    Kernel(#[from] weft_kernel::KernelError),
    #[error(transparent)]
    Firewall(#[from] weft_firewall::FirewallError),
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] weft_runtime::RuntimeError),
    #[error(transparent)]
    Ipam(#[from] weft_ipam::IpamError),
    #[error("encode record")]
    Encode(#[from] serde_json::Error),
}

impl EngineError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NoSuchContainer(_) | Self::NoSuchNetwork(_) | Self::NoSuchSandbox(_) | Self::NoSuchExec(_) | Self::NoSuchLink(_) => 404,
            Self::NameInUse(_) | Self::Stale(_) | Self::NotRunning(_) | Self::Running(_) | Self::PortInUse(_) | Self::BridgeFull(_) | Self::BridgeBusy(_) | Self::MacInUse { .. } | Self::NetworkExists(_) | Self::NetworkInUse(..) => 409,
            Self::PoolsExhausted | Self::Contention(_) | Self::Store(weft_store::StoreError::Unavailable(_)) => 503,
            Self::Refused(_) | Self::Overlap(_) | Self::Namespace(_) | Self::Terminal(_) => 400,
            Self::MissingRootfs(_) | Self::Signal(_) | Self::NoCommand | Self::Exec(_) | Self::Input(_) | Self::Config(_) => 400,
            Self::Ipam(weft_ipam::IpamError::Exhausted(_) | weft_ipam::IpamError::Exhausted6(_)) => 503,
            Self::Ipam(weft_ipam::IpamError::InUse(_) | weft_ipam::IpamError::InUse6(_)) => 409,
            Self::Ipam(_) => 400,
            Self::Runtime(weft_runtime::RuntimeError::Rootfs(_)) => 400,
            _ => 500,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A network as the engine holds it.
pub(crate) struct NetState {
    pub rec: NetworkRecord,
    /// The network on this host, as its driver made or adopted it.
    pub host: Arc<dyn weft_drivers::HostNetwork>,
    /// Endpoints planned on this network and not yet committed or rolled back (see `Pending`).
    pub pending: usize,
    /// Endpoints removed whose veth the reaper has not deleted yet (their addresses are held).
    pub reaping: usize,
    /// Those of them still bridge ports (a container's: its namespace goes with it).
    pub reaping_ports: usize,
    /// The MAC of the network's own link (its bridge, its parent), as made or adopted.
    pub own_mac: Option<[u8; 6]>,
}

impl NetState {
    pub(crate) fn new(rec: NetworkRecord, made: networks::Made) -> Self {
        Self { rec, host: made.host, pending: 0, reaping: 0, reaping_ports: 0, own_mac: made.own_mac }
    }
}

/// Marks networks as having an endpoint being set up, from planning until the action ends
/// (commit or rollback): `network rm` refuses them meanwhile.
pub(crate) struct Pending {
    eng: Arc<Engine>,
    networks: Vec<String>,
}

impl Pending {
    /// Taken under the state lock, in the same critical section as the planning.
    pub(crate) fn new(eng: &Arc<Engine>, st: &mut State, networks: Vec<String>) -> Self {
        for id in &networks {
            if let Some(n) = st.networks.get_mut(id) {
                n.pending += 1;
            }
        }
        Self { eng: eng.clone(), networks }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut st = self.eng.lock();
        for id in &self.networks {
            if let Some(n) = st.networks.get_mut(id) {
                n.pending = n.pending.saturating_sub(1);
            }
        }
    }
}

impl State {
    /// The container or sandbox whose endpoint on network `network_id` has `mac`.
    pub(crate) fn mac_owner(&self, network_id: &str, mac: &str) -> Option<String> {
        self.containers.mac_owner(network_id, mac).or_else(|| self.sandboxes.mac_owner(network_id, mac)).map(str::to_string)
    }

    /// Refuses MAC `mac` (lowercase) for a new endpoint on network `name`: another endpoint's,
    /// or the network's own link's or gateway's (taking those would take the gateway's traffic,
    /// and break the bridge's forwarding entry for every container).
    pub(crate) fn check_mac(&self, network_id: &str, name: &str, mac: &str) -> Result<()> {
        let in_use = |owner: String| Err(EngineError::MacInUse { mac: mac.to_string(), owner, network: name.to_string() });
        if let Some(n) = self.networks.get(network_id) {
            let parsed = weft_model::parse_mac(mac).ok();
            if parsed.is_some() && n.own_mac == parsed {
                return in_use(format!("the network's own link {}", n.rec.bridge));
            }
            if parsed == Some(network::mac_for(n.rec.gateway)) {
                return in_use(format!("the gateway {}", n.rec.gateway));
            }
        }
        match self.mac_owner(network_id, mac) {
            Some(owner) => in_use(owner),
            None => Ok(()),
        }
    }

    /// Ports network `net`'s bridge has or is about to have: committed endpoints and those being
    /// set up (not those the reaper is deleting).
    fn ports_on(&self, net: &NetState) -> usize {
        ports_on(&self.containers, &self.sandboxes, net)
    }
}

/// Whether a container uses the embedded resolver: it is on a user-defined network.
pub(crate) fn dns_client(endpoint_networks: &[String]) -> bool {
    endpoint_networks.iter().any(|n| n != weft_model::DEFAULT_NETWORK)
}

/// A running container as the embedded DNS sees it: its names and addresses on each network and,
/// if it resolves through weft, what it may resolve and where the rest goes.
fn dns_entry(st: &State, c: &ContainerRecord, daemon_dns: &[std::net::IpAddr], host: &weft_dns::Resolv) -> (Vec<weft_dns::Endpoint>, Option<weft_dns::ClientView>) {
    let endpoints = dns_names(&c.name, &[weft_model::short_id(&c.id)], &c.sandbox);
    let nets: Vec<String> = c.sandbox.endpoints.iter().map(|e| e.network_name.clone()).collect();
    let client = dns_client(&nets).then(|| weft_dns::ClientView {
        networks: c.sandbox.endpoints.iter().map(|e| e.network_id.clone()).collect(),
        internal_only: c.sandbox.endpoints.iter().all(|e| st.networks.get(&e.network_id).is_some_and(|n| n.rec.internal)),
        upstream: weft_dns::upstreams(&c.spec.dns, daemon_dns, host),
    });
    (endpoints, client)
}

/// What the embedded DNS answers for a sandbox's endpoints: on each network, `name`, `more` and
/// the endpoint's aliases, the PTR naming `name.network`.
pub(crate) fn dns_names(name: &str, more: &[&str], sb: &weft_model::Sandbox) -> Vec<weft_dns::Endpoint> {
    sb.endpoints
        .iter()
        .map(|e| weft_dns::Endpoint {
            network_id: e.network_id.clone(),
            network_name: e.network_name.clone(),
            names: std::iter::once(name.to_string()).chain(more.iter().map(|m| m.to_string())).chain(e.aliases.iter().cloned()).collect(),
            ips: std::iter::once(std::net::IpAddr::V4(e.ip)).chain(e.ip6.map(std::net::IpAddr::V6)).collect(),
            ptr: format!("{name}.{}.", e.network_name),
        })
        .collect()
}

fn ports_on(containers: &Registry<ContainerRecord>, sandboxes: &Registry<weft_model::SandboxRecord>, net: &NetState) -> usize {
    containers.endpoints_on(&net.rec.id) + sandboxes.endpoints_on(&net.rec.id) + net.pending
}

/// The MAC of a new endpoint with address `ip`: derived from it (see `network::mac_for`) unless
/// someone on the network chose that one with `--mac-address`; then a random local one.
fn free_mac(containers: &Registry<ContainerRecord>, sandboxes: &Registry<weft_model::SandboxRecord>, network_id: &str, ip: std::net::Ipv4Addr) -> String {
    let derived = network::mac_string(network::mac_for(ip));
    if containers.mac_owner(network_id, &derived).is_none() && sandboxes.mac_owner(network_id, &derived).is_none() {
        return derived;
    }
    // 02 (locally administered, unicast) and five bytes of a fresh random id.
    let id = weft_model::new_id();
    format!("02:{}:{}:{}:{}:{}", &id[0..2], &id[2..4], &id[4..6], &id[6..8], &id[8..10])
}

#[derive(Default)]
pub(crate) struct State {
    /// Addresses Docker's IPAM asked for and its endpoints have not taken yet (network id, ip).
    pub promised: std::collections::HashSet<(String, std::net::Ipv4Addr)>,
    /// Names of networks being created.
    /// Networks being created (name -> their subnets and bridge), so that concurrent creations
    /// never pick the same subnet or bridge.
    pub creating: HashMap<String, (ipnet::Ipv4Net, Option<ipnet::Ipv6Net>, String)>,
    /// Networks being removed: no new endpoint may join them.
    pub removing: std::collections::HashSet<String>,
    /// Namespaces weft did not create, by the caller's key.
    pub sandboxes: Registry<weft_model::SandboxRecord>,
    pub networks: HashMap<String, NetState>,
    pub containers: Registry<ContainerRecord>,
    /// name -> id, including containers still being created.
    pub names: HashMap<String, String>,
    /// Exit notifications of running containers: `Some(code)` once the exit is processed.
    pub exits: HashMap<String, watch::Sender<Option<i32>>>,
    /// Host ports taken by published ports.
    pub ports: Option<ports::PortTable>,
    /// The sockets and proxies holding each container's published ports.
    pub published: HashMap<String, publish::Published>,
    /// The embedded resolver's tasks serving each container.
    pub dns_tasks: HashMap<String, Vec<tokio::task::JoinHandle<()>>>,
    /// The input side (and terminal) of running containers started with `-i` or `-t`.
    pub consoles: HashMap<String, stdio::Console>,
    /// The terminals of running `weft exec -t` processes, by exec id (for resizes).
    pub execs: HashMap<String, stdio::AsyncPipe>,
    /// Interfaces of detached namespaces that live on, by (namespace, name), until the reaper
    /// deletes their pair: a new attachment that needs the name retires the old one.
    pub detached: HashMap<(String, String), weft_model::EndpointRecord>,
    /// Point-to-point links, by id.
    pub p2p: HashMap<String, weft_model::P2pRecord>,
    /// The addresses of every network, by id, and of the links: a cache over the claims.
    pub ipam: weft_ipam::Ipam,
    /// The daemons registered in the store, by host id (fed only by its watch: `nodes`).
    pub nodes: HashMap<String, weft_model::NodeRecord>,
    /// Other hosts' endpoints and what this host made of them (`peers`).
    pub peers: peers::Peers,
    /// Routed networks' blocks: (network id, block) -> the host holding it (`routed`).
    pub blocks: HashMap<(String, ipnet::Ipv4Net), String>,
    /// The store revision of each record as this daemon last committed or read it, and of the
    /// records it deleted while commits are in flight (`commit`).
    pub revisions: HashMap<String, u64>,
    pub tombstones: HashMap<String, u64>,
    pub in_flight: usize,
}

/// Holds a container's (or a sandbox's) lock. Its entry in `ctr_locks` goes with the last holder
/// or waiter, so the map keeps only the keys in use (not every name ever attached).
pub(crate) struct Serial<'a> {
    locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Serial<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Released under the map's lock: nobody can take a new handle on it meanwhile, and a
        // waiter holds one (the map's is then not the last).
        drop(self.guard.take());
        if locks.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            locks.remove(&self.id);
        }
    }
}

pub struct Engine {
    pub(crate) cfg: Config,
    pub(crate) store: Arc<dyn Store>,
    /// Where this host's records and claims live in the store.
    pub(crate) keys: keys::Keys,
    pub(crate) fw: Arc<Firewall>,
    pub(crate) state: Mutex<State>,
    pub(crate) reaper: reaper::Reaper,
    pub(crate) resolver: Arc<weft_dns::Resolver>,
    /// The embedded DNS's upstream side: answer checks and the bounds of what is in flight.
    pub(crate) forwarder: Arc<weft_dns::Forwarder>,
    /// One async lock per container: the actions that change a running container's record
    /// (exit processing, connect, disconnect, rm) take it and re-read the record under it.
    pub(crate) ctr_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The host's resolvers, read at start (the default upstreams of the embedded DNS).
    pub(crate) host_resolv: files::Resolv,
    /// What `GET /metrics` reports of the actions.
    pub(crate) metrics: metrics::Metrics,
    /// The daemon's DNS servers (`--dns`): `cfg.dns` until a reload changes them.
    daemon_dns: std::sync::RwLock<Vec<std::net::IpAddr>>,
    /// Wakes the followers of container logs.
    pub(crate) logs: stdio::LogWatch,
    /// Where containers' cgroups are (`--cgroup-parent` in this machine's hierarchies).
    pub(crate) cgroups: weft_runtime::cgroup::Hierarchy,
    /// The event stream, read from the store's watch (`events`).
    pub(crate) events: events::Events,
    /// The store revision up to which the global networks' watch is applied (`globals`).
    pub(crate) globals: tokio::sync::watch::Sender<u64>,
    /// Archives being unpacked for `--rootfs`: bytes read and size, by path.
    pub(crate) unpacks: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    /// The `--cgroup-parent` directories (and their ancestors) that did not exist when the
    /// daemon started, deepest first: removed at its stop when no container's cgroup is left
    /// in them.
    made_cgroup_parents: Vec<PathBuf>,
}

impl Engine {
    /// Opens the store, sets up the default network and reconciles state and kernel.
    pub async fn open(cfg: Config, store: Arc<dyn Store>) -> Result<Arc<Self>> {
        let daemon_dns = cfg.dns.clone();
        cfg.validate()?;
        for dir in [cfg.exec_root.join("netns"), cfg.exec_root.join("containers"), cfg.data_root.join("containers")] {
            std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io { op: "create directory", path: dir.display().to_string(), source })?;
        }
        let cgroups = weft_runtime::cgroup::Hierarchy::detect(&cfg.cgroup_parent).map_err(|e| EngineError::Config(limits::chain(&e)))?;
        // Each parent directory missing now, and its missing ancestors (`a/b`), deepest first.
        let made_cgroup_parents = cgroups.parent_dirs().iter().flat_map(|d| d.ancestors().take_while(|a| !a.exists()).map(std::path::Path::to_path_buf).collect::<Vec<_>>()).collect();
        let fw = Arc::new(Firewall::new(cfg.iptables)?);
        let reaper = reaper::Reaper::start().map_err(|source| EngineError::Io { op: "start", path: "veth reaper".into(), source })?;
        let state = State { ports: Some(ports::PortTable::new()), ..State::default() };
        let forwarder = Arc::new(weft_dns::Forwarder::new(cfg.dns_limits, cfg.dns_checks));
        let engine = Arc::new(Self {
            keys: keys::Keys::new(&cfg.host_id),
            cfg,
            store,
            fw,
            state: Mutex::new(state),
            reaper,
            resolver: Arc::default(),
            forwarder,
            ctr_locks: Mutex::default(),
            host_resolv: weft_dns::host_resolv(),
            metrics: metrics::Metrics::default(),
            daemon_dns: std::sync::RwLock::new(daemon_dns),
            logs: stdio::LogWatch::start().map_err(|source| EngineError::Io { op: "start", path: "inotify log watch".into(), source })?,
            cgroups,
            events: events::Events::default(),
            globals: tokio::sync::watch::channel(0).0,
            unpacks: Arc::default(),
            made_cgroup_parents,
        });
        engine.migrate_keys().await?;
        // First: what start-up repairs is part of the stream too.
        engine.follow_events().await?;
        engine.check_empty_store().await?;
        engine.setup_default_network().await?;
        engine.load_user_networks().await?;
        engine.reconcile().await?;
        engine.follow_shared_claims().await?;
        engine.follow_global_networks().await?;
        engine.register_node().await?;
        engine.follow_blocks().await?;
        engine.watch_sandbox_links()?;
        Ok(engine)
    }

    /// Finishes background kernel work (pending veth deletions) and, with `--keep-uplink=false`,
    /// gives uplinks back to the host; call before the process exits.
    pub fn shutdown(&self) {
        self.reaper.shutdown();
        for dir in &self.made_cgroup_parents {
            // Fails, as it should, while a container's cgroup is in it (`--live-restore`).
            if std::fs::remove_dir(dir).is_ok() {
                tracing::debug!(dir = %dir.display(), "cgroup parent removed");
            }
        }
        if self.cfg.keep_uplink {
            return;
        }
        let uplinked: Vec<(String, String)> = self.lock().networks.values().filter_map(|n| Some((n.rec.bridge.clone(), n.rec.uplink()?.to_string()))).collect();
        for (bridge, uplink) in uplinked {
            let given_back = network::with_host(|nl| match nl.link(&bridge)? {
                Some(b) => weft_kernel::ops::LinkOps::detach_uplink(nl, b.index, &uplink),
                None => Ok(()),
            });
            if let Err(e) = given_back {
                tracing::error!(error = %e, uplink, bridge, "the uplink was not given back");
            }
        }
    }

    /// Serialises the record-changing actions on container (or sandbox) `id` (see `ctr_locks`).
    pub(crate) async fn lock_container(&self, id: &str) -> Serial<'_> {
        let m = self.ctr_locks.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default().clone();
        Serial { locks: &self.ctr_locks, id: id.to_string(), guard: Some(m.lock_owned().await) }
    }

    /// Puts container `id`'s names into the embedded DNS as the state has them now (or takes
    /// them out: not running, or gone). Only its entries change.
    pub(crate) fn dns_update(&self, id: &str) {
        let entry = {
            let st = self.lock();
            st.containers.get(id).filter(|c| c.state.status == weft_model::Status::Running).map(|c| dns_entry(&st, c, &self.daemon_dns(), &self.host_resolv))
        };
        self.resolver.update(|idx| match entry {
            Some((endpoints, client)) => idx.set_container(id, endpoints, client),
            None => idx.remove_container(id),
        });
    }

    /// The daemon's DNS servers now.
    pub(crate) fn daemon_dns(&self) -> Vec<std::net::IpAddr> {
        self.daemon_dns.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the daemon's DNS servers (a reload): containers started from now on get them in
    /// their resolv.conf, and the embedded DNS forwards every running container's questions to
    /// them at once (those with their own `--dns` keep theirs).
    pub fn set_daemon_dns(&self, dns: Vec<std::net::IpAddr>) {
        *self.daemon_dns.write().unwrap_or_else(|p| p.into_inner()) = dns;
        let (containers, sandboxes): (Vec<String>, Vec<String>) = {
            let st = self.lock();
            (st.containers.keys().cloned().collect(), st.sandboxes.keys().cloned().collect())
        };
        containers.iter().for_each(|id| self.dns_update(id));
        sandboxes.iter().for_each(|k| self.dns_update_sandbox(k));
    }

    /// Starts serving the embedded DNS inside container `id`'s namespace (idempotent).
    pub(crate) async fn start_dns(self: &Arc<Self>, id: &str, netns: std::path::PathBuf) -> Result<()> {
        if self.lock().dns_tasks.contains_key(id) {
            return Ok(());
        }
        let (udp, tcp) = blocking(move || Ok(weft_dns::open_sockets(&netns)?)).await?;
        let tasks = weft_dns::serve(self.resolver.clone(), &self.forwarder, id.to_string(), udp, tcp)
            .map_err(|source| EngineError::Io { op: "serve resolver for", path: id.to_string(), source })?;
        self.lock().dns_tasks.insert(id.to_string(), tasks);
        Ok(())
    }

    pub(crate) fn stop_dns(&self, id: &str) {
        for t in self.lock().dns_tasks.remove(id).into_iter().flatten() {
            t.abort();
        }
    }

    /// Takes the endpoint at `pos` out of sandbox `sb` (a container's or an attached namespace's
    /// that lives on): its interface inside is retired now (down and renamed, so its name is free
    /// at once for the next connect; the reaper deletes the pair through its host end); one
    /// without a host end is deleted (a macvlan cannot be renamed up, and taking it down holds
    /// RTNL for an RCU grace period: its deletion waits for one outside RTNL). Returns the
    /// endpoint and the ports that go with it (the first endpoint's address carries them).
    pub(crate) async fn take_endpoint(&self, sb: &mut weft_model::Sandbox, pos: usize) -> Result<(weft_model::EndpointRecord, Vec<weft_model::PortMapping>)> {
        let endpoint = sb.endpoints.remove(pos);
        let ports = if pos == 0 { std::mem::take(&mut sb.ports) } else { Vec::new() };
        if let Some(ns) = sb.netns.clone() {
            let e = endpoint.clone();
            blocking(move || match e.host_end() {
                Some(_) => retire_inside(std::path::Path::new(&ns), std::slice::from_ref(&e)),
                None => Ok(weft_kernel::netns::delete_link_in(std::path::Path::new(&ns), &e.ifname)?),
            })
            .await?;
        }
        Ok((endpoint, ports))
    }

    /// After `take_endpoint` is recorded: withdraws the ports of `owner` that went with it, takes
    /// the host end off its network and hands it to the reaper.
    /// `netns`: the sandbox's namespace, which lives on.
    pub(crate) async fn release_taken(self: &Arc<Self>, owner: &str, endpoint: &weft_model::EndpointRecord, ports: &[weft_model::PortMapping], netns: Option<String>) -> Result<()> {
        let unpublished = self.unpublish(owner, endpoint.ip, ports).await;
        let released = self.unplug(endpoint).await;
        // (An endpoint without a host end was deleted by `take_endpoint`.)
        self.release_endpoint(endpoint, released, netns.filter(|_| endpoint.host_end().is_some()));
        unpublished
    }

    /// Takes an endpoint whose namespace lives on off its network now (`HostNetwork::unplug`),
    /// so that the reaper's later deletion is cheap: a bridge of many ports makes a port's
    /// removal slow, and a batch of them stalls setups (see `reaper`). Returns whether it is done.
    pub(crate) async fn unplug(&self, e: &weft_model::EndpointRecord) -> bool {
        let (Some(host), Some(h)) = (self.host_network(&e.network_id), e.host_end().map(String::from)) else { return true };
        match blocking(move || network::with_host(|nl| host.unplug(nl, &h))).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, link = %e.host_ifname, "leaving the port to the reaper");
                false
            }
        }
    }

    /// The network `id` on this host, if it is known.
    pub(crate) fn host_network(&self, id: &str) -> Option<Arc<dyn weft_drivers::HostNetwork>> {
        self.lock().networks.get(id).map(|n| n.host.clone())
    }

    /// Deletes an endpoint in the background, then has its network forget it and returns its
    /// address to the pool: one with a host end through the reaper (`unplugged`: no longer a
    /// port of the network, see `unplug`); one without, inside `netns` if that namespace lives on
    /// (by the reaper too: the deletion waits ~20 ms for an RCU grace period, outside RTNL;
    /// taking the link down first would hold RTNL for as long, as macvlan's `ndo_stop` waits for
    /// one), at once otherwise (it goes with its namespace).
    pub(crate) fn release_endpoint(self: &Arc<Self>, e: &weft_model::EndpointRecord, unplugged: bool, netns: Option<String>) {
        let (eng, e2, ns2) = (self.clone(), e.clone(), netns.clone());
        let host = self.lock().networks.get_mut(&e.network_id).map(|n| {
            n.reaping += 1;
            n.reaping_ports += usize::from(!unplugged);
            n.host.clone()
        });
        let release = move || {
            // What the network held for the address goes before it can be handed out again.
            if let Some(h) = host {
                if let Err(err) = network::with_host(|nl| h.forget(nl, e2.host_end(), e2.ip)) {
                    tracing::warn!(error = %err, ip = %e2.ip, "the network did not forget the endpoint");
                }
            }
            let mut st = eng.lock();
            let key = ns2.map(|ns| (ns, e2.ifname.clone()));
            if let Some(k) = key.filter(|k| st.detached.get(k).is_some_and(|d| d.endpoint_id == e2.endpoint_id)) {
                st.detached.remove(&k);
            }
            if let Some(n) = st.networks.get_mut(&e2.network_id) {
                n.reaping = n.reaping.saturating_sub(1);
                n.reaping_ports = n.reaping_ports.saturating_sub(usize::from(!unplugged));
            }
            st.release_addresses(&e2)
        };
        match (e.host_end(), netns) {
            (Some(link), _) => self.reaper.reap(link.to_string(), release),
            (None, Some(ns)) => self.reaper.reap_inside(ns, e.ifname.clone(), release),
            (None, None) => release(),
        }
    }

    /// Waits (up to 2 s), hurrying the reaper, while one of `networks` is at its bridge's port
    /// limit or out of addresses only because removed endpoints are still being deleted:
    /// refusing as "full" would be wrong. Call before planning endpoints.
    pub(crate) async fn settle_bridges(&self, networks: &[&str]) {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(2) {
            let busy = {
                let st = self.lock();
                networks.iter().any(|name| {
                    st.networks.values().find(|n| n.rec.name == *name || n.rec.id == *name).is_some_and(|n| {
                        let ports_wait = || {
                            let live = st.ports_on(n);
                            live < weft_model::BRIDGE_MAX_PORTS && live + n.reaping_ports >= weft_model::BRIDGE_MAX_PORTS
                        };
                        n.reaping > 0 && (st.ipam.is_full(&n.rec.id) || ports_wait())
                    })
                })
            };
            if !busy {
                return;
            }
            self.reaper.hurry();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn host_options(&self) -> weft_drivers::HostOptions {
        weft_drivers::HostOptions { firewall: self.cfg.iptables, ip_forward: self.cfg.ip_forward, ovsdb: self.cfg.ovsdb.clone(), advertise_addr: self.cfg.advertise_addr }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("netns").join(id)
    }
    pub(crate) fn run_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("containers").join(id)
    }
    pub(crate) fn data_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    /// A container by name, full id or unique id prefix.
    pub(crate) fn container(&self, key: &str) -> Result<ContainerRecord> {
        let st = self.lock();
        find_container(&st, key).cloned()
    }

    pub(crate) fn containers(&self) -> Vec<ContainerRecord> {
        let mut v: Vec<_> = self.lock().containers.values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        v
    }

    pub(crate) fn network(&self, key: &str) -> Result<NetworkRecord> {
        let st = self.lock();
        st.networks
            .values()
            .find(|n| n.rec.name == key || n.rec.id == key || (key.len() >= 3 && n.rec.id.starts_with(key)))
            .map(|n| n.rec.clone())
            .ok_or_else(|| EngineError::NoSuchNetwork(key.to_string()))
    }

    pub(crate) fn networks(&self) -> Vec<NetworkRecord> {
        let mut v: Vec<_> = self.lock().networks.values().map(|n| n.rec.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

impl State {
    /// Reserves an address on network `name` (`ip`, or the next free one) and describes the
    /// endpoint `ifname` that will carry it. No kernel work.
    pub(crate) fn plan_endpoint(&mut self, owner: &str, name: &str, ifname: &str, ip: Option<std::net::Ipv4Addr>, ip6: Option<std::net::Ipv6Addr>) -> Result<EndpointPlan> {
        let net = self
            .networks
            .values_mut()
            .find(|x| x.rec.name == name || x.rec.id == name)
            .ok_or_else(|| EngineError::NoSuchNetwork(name.to_string()))?;
        if self.removing.contains(&net.rec.id) {
            return Err(EngineError::NoSuchNetwork(name.to_string()));
        }
        // Before any kernel work: the bridge's port limit, counting what is being set up.
        let ports = ports_on(&self.containers, &self.sandboxes, net);
        if ports >= weft_model::BRIDGE_MAX_PORTS {
            return Err(EngineError::BridgeFull(net.rec.bridge.clone()));
        }
        if ports + net.reaping_ports >= weft_model::BRIDGE_MAX_PORTS {
            // Not full, but ports being deleted still count for the kernel (see `settle_bridges`).
            return Err(EngineError::BridgeBusy(net.rec.bridge.clone()));
        }
        if let Some(a) = ip6.filter(|_| !self.ipam.has_v6(&net.rec.id)) {
            return Err(EngineError::Refused(format!("--ip6 {a}: network {} has no IPv6 subnet", net.rec.name)));
        }
        let (ip, ip6) = self.ipam.take(&net.rec.id, ip, ip6)?;
        let endpoint = weft_model::EndpointRecord {
            endpoint_id: weft_model::new_id(),
            network_id: net.rec.id.clone(),
            network_name: net.rec.name.clone(),
            ifname: ifname.into(),
            host_ifname: net.host.endpoint_name().unwrap_or_default(),
            ip,
            prefix_len: net.rec.subnet.prefix_len(),
            gateway: Some(net.rec.gateway),
            mac: free_mac(&self.containers, &self.sandboxes, &net.rec.id, ip),
            aliases: Vec::new(),
            ip6,
            prefix6: net.rec.subnet6.map(|s| s.prefix_len()).unwrap_or(0),
            gateway6: ip6.and(net.rec.gateway6),
        };
        Ok(EndpointPlan {
            endpoint,
            net: net.host.clone(),
            owner: owner.to_string(),
            forwarded: weft_drivers::driver(net.rec.driver).forwards_through_host(),
            internal: net.rec.internal,
            host_binding: net.rec.host_binding_ipv4,
            anti_spoof: net.rec.anti_spoof(),
            host_end_only: false,
        })
    }

    /// Takes the addresses of a live sandbox's endpoints in the pools (one adopted at start);
    /// `owner` names it in the log if one is taken already.
    pub(crate) fn hold_addresses(&mut self, owner: &str, sb: &weft_model::Sandbox) {
        for e in &sb.endpoints {
            match self.ipam.hold(&e.network_id, e.ip, e.ip6) {
                Ok(()) | Err(weft_ipam::IpamError::NoPool(_)) => {}
                Err(err) => tracing::error!(owner, error = %err, "address of a live sandbox"),
            }
        }
    }

    pub(crate) fn port_table(&mut self) -> &mut ports::PortTable {
        self.ports.get_or_insert_with(ports::PortTable::new)
    }

    /// Gives an endpoint's addresses (IPv4, and IPv6 on dual-stack networks) back to the pools,
    /// but for those a claim of the store's holds (given back when that claim goes).
    pub(crate) fn release_addresses(&mut self, e: &weft_model::EndpointRecord) {
        self.ipam.give_back(&e.network_id, e.ip, e.ip6);
    }
}

/// Takes the interfaces of `endpoints` with a host end out of use inside namespace `ns`, which
/// lives on: each is retired (down, and renamed so that its name is free at once); the reaper
/// deletes the pair through its host end. (Those without a host end: see `release_endpoint`.)
/// Blocking.
pub(crate) fn retire_inside(ns: &std::path::Path, endpoints: &[weft_model::EndpointRecord]) -> Result<()> {
    let hosted: Vec<&weft_model::EndpointRecord> = endpoints.iter().filter(|e| e.host_end().is_some()).collect();
    if hosted.is_empty() {
        return Ok(());
    }
    let mut inside = weft_kernel::netns::open_in(ns, &[])?;
    for e in hosted {
        inside.retire(&e.ifname, &format!("gone{}", &e.endpoint_id[..8]))?;
    }
    Ok(())
}

/// What endpoint `e`'s bridge port may send from (none without a host end).
pub(crate) fn endpoint_guard(e: &weft_model::EndpointRecord) -> Option<weft_firewall::PortGuard> {
    Some(weft_firewall::PortGuard {
        port: e.host_end()?.to_string(),
        mac: weft_model::parse_mac(&e.mac).unwrap_or_else(|_| network::mac_for(e.ip)),
        ip: e.ip,
        ip6: e.ip6,
    })
}

/// An endpoint decided under the state lock, before any kernel work.
#[derive(Debug, Clone)]
pub(crate) struct EndpointPlan {
    pub endpoint: weft_model::EndpointRecord,
    /// Its network on this host, whose driver makes it.
    pub net: Arc<dyn weft_drivers::HostNetwork>,
    /// Whose sandbox it is (a container's id, `sandbox/NAME`).
    pub owner: String,
    /// Its traffic crosses the host's forwarding path (where ports are published).
    pub forwarded: bool,
    /// No way out: no default route through it.
    pub internal: bool,
    /// The network's default host address for published ports.
    pub host_binding: Option<std::net::Ipv4Addr>,
    /// Its port may send only from its own MAC and addresses (see `weft_firewall::guard`).
    pub anti_spoof: bool,
    /// Its inside end is made, bare, in the namespace given to `attach` (weftd's own, for
    /// Docker's driver: dockerd moves and configures it).
    pub host_end_only: bool,
}

impl EndpointPlan {
    /// Refuses `ports` published on this endpoint's address if its network cannot publish them.
    pub(crate) fn publishes(&self, ports: usize) -> Result<()> {
        if ports > 0 && !self.forwarded {
            return Err(EngineError::Refused(format!(
                "network {} does not publish ports: its traffic does not cross the host; its endpoints are reached at their own addresses",
                self.endpoint.network_name
            )));
        }
        Ok(())
    }

    /// What its bridge port may send from, if the network guards its ports and it has one.
    pub(crate) fn guard(&self) -> Option<weft_firewall::PortGuard> {
        endpoint_guard(&self.endpoint).filter(|_| self.anti_spoof)
    }

    /// Undoes `attach` in namespace `netns` (for an action's rollback). Blocking.
    pub(crate) fn detach(&self, netns: &std::path::Path) {
        if let Err(e) = network::detach_endpoint(&*self.net, &self.endpoint, netns) {
            tracing::warn!(error = %e, link = %self.endpoint.host_ifname, "rollback: endpoint not removed; reconcile will");
        }
    }

    /// The kernel work, blocking: the endpoint, addresses, and a default route if `default_route`.
    /// A guarded port is guarded before it exists (its elements are names and addresses), so it
    /// never sends unguarded; the link monitor forgets the guard when the port is deleted.
    pub(crate) fn attach(&self, netns: &std::path::Path, default_route: bool, fw: &Firewall) -> Result<()> {
        let guard = self.guard();
        if let Some(g) = &guard {
            fw.guard(std::slice::from_ref(g))?;
        }
        let made = self.make(netns, default_route);
        if let (Err(_), Some(g)) = (&made, guard) {
            let _ = fw.unguard(&[g.port]);
        }
        made
    }

    fn make(&self, netns: &std::path::Path, default_route: bool) -> Result<()> {
        let e = &self.endpoint;
        network::attach_endpoint(&network::EndpointAttach {
            net: &*self.net,
            owner: &self.owner,
            endpoint_id: &e.endpoint_id,
            netns,
            host_ifname: &e.host_ifname,
            ifname: &e.ifname,
            addr: ipnet::Ipv4Net::new(e.ip, e.prefix_len).expect("prefix of a subnet"),
            gateway: if default_route && !self.internal { e.gateway } else { None },
            v6: e.ip6.map(|a| {
                let net = ipnet::Ipv6Net::new(a, e.prefix6).expect("prefix of a subnet");
                (net, if default_route && !self.internal { e.gateway6 } else { None })
            }),
            mac: weft_model::parse_mac(&e.mac).unwrap_or_else(|_| network::mac_for(e.ip)),
            configure_inside: !self.host_end_only,
        })
    }
}

pub(crate) fn find_container<'a>(st: &'a State, key: &str) -> Result<&'a ContainerRecord> {
    let key = key.strip_prefix('/').unwrap_or(key);
    if let Some(c) = st.names.get(key).and_then(|id| st.containers.get(id)) {
        return Ok(c);
    }
    if let Some(c) = st.containers.get(key) {
        return Ok(c);
    }
    let mut matches = st.containers.values().filter(|c| !key.is_empty() && c.id.starts_with(key));
    match (matches.next(), matches.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(EngineError::NoSuchContainer(key.to_string())),
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Runs blocking kernel work off the async workers, inside the caller's span.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .unwrap_or_else(|e| Err(EngineError::Internal(format!("worker panicked: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn take<'a>(locks: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>, id: &str) -> Serial<'a> {
        let m = locks.lock().expect("map").entry(id.to_string()).or_default().clone();
        Serial { locks, id: id.to_string(), guard: Some(m.lock_owned().await) }
    }

    #[tokio::test]
    async fn a_lock_entry_lives_while_held_or_awaited_and_goes_after() {
        let locks = Mutex::new(HashMap::new());
        let first = take(&locks, "a").await;
        let waiting = {
            let m = locks.lock().expect("map").get("a").expect("held").clone();
            tokio::spawn(async move { drop(m.lock_owned().await) })
        };
        tokio::task::yield_now().await;
        drop(first);
        assert!(locks.lock().expect("map").contains_key("a"), "a waiter still holds a handle");
        waiting.await.expect("waiter");
        let again = take(&locks, "a").await;
        drop(again);
        assert!(locks.lock().expect("map").is_empty(), "the last holder takes the entry along");
    }
}
