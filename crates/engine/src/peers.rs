//! Other hosts' endpoints, as the shared store shows them, made real on this host (and, for
//! routed networks, the routes to other hosts' blocks: `routed`): on an overlay network, each remote endpoint gets its entries on the network's VXLAN device (its MAC
//! behind its host's advertised address, its address answered by the device) and its names in
//! the embedded DNS. What is wanted follows from three caches, each fed only by the store's
//! watch: the claims of global addresses (which carry the endpoint's MAC and names), the
//! registered daemons, and the networks this host has. An endpoint whose host is not registered
//! (dead, or cut off for longer than its lease) is not programmed; its claim stays, so its
//! address is not handed out again while that host may still use it.
//!
//! [`Engine::sync_peers`] compares what is wanted with what was programmed and sends the
//! difference to one thread of its own, which applies the changes in order over its own netlink
//! socket (so an add and the removal after it never swap).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::mpsc;

use weft_model::DriverKind;

use crate::{Engine, State};

/// A remote endpoint as its claim shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteEndpoint {
    pub host: String,
    pub endpoint: String,
    pub mac: [u8; 6],
    pub names: Vec<String>,
}

/// Another host's endpoint on a global network, as `network inspect` and `network graph` show
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    pub host: String,
    /// The host's `--advertise-addr` (None: it is not registered now).
    pub host_addr: Option<Ipv4Addr>,
    /// Its first name (the container's or namespace's), and its endpoint's id.
    pub name: String,
    pub endpoint: String,
    pub ip: Ipv4Addr,
}

impl Engine {
    /// The other hosts' endpoints on network `network_id` (a global network's), by host then
    /// address.
    pub fn remote_members(&self, network_id: &str) -> Vec<RemoteMember> {
        let st = self.lock();
        let mut v: Vec<RemoteMember> = st
            .peers
            .remote
            .iter()
            .filter(|((n, _), _)| n == network_id)
            .map(|((_, ip), r)| RemoteMember { host: r.host.clone(), host_addr: st.nodes.get(&r.host).and_then(|n| n.addr), name: r.names.first().cloned().unwrap_or_default(), endpoint: r.endpoint.clone(), ip: *ip })
            .collect();
        v.sort_by(|a, b| (&a.host, a.ip).cmp(&(&b.host, b.ip)));
        v
    }
}

/// What one remote endpoint needs on this host: its network's VXLAN device, its MAC, its host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    vx: String,
    mac: [u8; 6],
    vtep: Ipv4Addr,
}

/// The kernel and DNS state of the remote endpoints, as last sent.
#[derive(Default)]
pub(crate) struct Peers {
    /// (network id, address) -> the endpoint there, from the claims of other hosts.
    pub remote: HashMap<(String, Ipv4Addr), RemoteEndpoint>,
    programmed: HashMap<(String, Ipv4Addr), Entry>,
    /// DNS entries made, by their key in the resolver (`remote/<endpoint id>`).
    named: HashMap<String, (String, Ipv4Addr)>,
    /// Routes to other hosts' blocks of routed networks (`routed`): block -> via.
    routes: HashMap<ipnet::Ipv4Net, Ipv4Addr>,
    programmer: Option<mpsc::Sender<Vec<Change>>>,
}

enum Change {
    Add(Ipv4Addr, Entry),
    Remove(Ipv4Addr, Entry),
    Route(ipnet::Ipv4Net, Ipv4Addr),
    Unroute(ipnet::Ipv4Net, Ipv4Addr),
}

/// Applies changes in order on a netlink socket of its own, in the daemon's namespace.
fn programmer() -> mpsc::Sender<Vec<Change>> {
    let (tx, rx) = mpsc::channel::<Vec<Change>>();
    std::thread::Builder::new()
        .name("overlay-entries".into())
        .spawn(move || {
            let mut nl = None;
            let mut index: HashMap<String, u32> = HashMap::new();
            while let Ok(batch) = rx.recv() {
                if nl.is_none() {
                    match weft_kernel::Netlink::open() {
                        Ok(n) => nl = Some(n),
                        Err(e) => {
                            tracing::error!(error = %e, "netlink for overlay entries");
                            continue;
                        }
                    }
                }
                let Some(nl) = nl.as_mut() else { continue };
                for change in batch {
                    let (ip, entry) = match &change {
                        Change::Add(ip, e) | Change::Remove(ip, e) => (*ip, e),
                        Change::Route(dst, via) | Change::Unroute(dst, via) => {
                            let done = match change {
                                Change::Route(..) => nl.replace_route(*dst, *via),
                                _ => nl.delete_route(*dst, *via),
                            };
                            if let Err(e) = done {
                                tracing::warn!(error = %e, %dst, %via, "route to another host's block");
                            }
                            continue;
                        }
                    };
                    let vx = match index.get(&entry.vx) {
                        Some(i) => *i,
                        None => match nl.link(&entry.vx) {
                            Ok(Some(l)) => *index.entry(entry.vx.clone()).or_insert(l.index),
                            // The device is gone (the network with it): nothing to do.
                            _ => continue,
                        },
                    };
                    let done = match change {
                        Change::Add(..) => nl.add_remote_endpoint(vx, ip, entry.mac, entry.vtep),
                        _ => nl.remove_remote_endpoint(vx, ip, entry.mac),
                    };
                    if let Err(e) = done {
                        // A device made again has a new index: look it up next time.
                        index.remove(&entry.vx);
                        tracing::warn!(error = %e, %ip, vx = %entry.vx, "overlay entry");
                    }
                }
            }
        })
        .expect("spawn the overlay entries thread");
    tx
}

impl State {
    /// The entries wanted now: remote endpoints of registered hosts on overlays this host has.
    fn wanted_entries(&self) -> HashMap<(String, Ipv4Addr), Entry> {
        self.peers
            .remote
            .iter()
            .filter_map(|((net, ip), r)| {
                let n = self.networks.get(net).filter(|n| n.rec.driver == DriverKind::Overlay)?;
                let vtep = self.nodes.get(&r.host)?.addr?;
                Some(((net.clone(), *ip), Entry { vx: n.rec.vxlan_name(), mac: r.mac, vtep }))
            })
            .collect()
    }
}

impl Engine {
    /// Brings the overlay entries and the remote names in line with the caches (see the module
    /// docs); called after any change to them.
    pub(crate) fn sync_peers(&self) {
        let mut st = self.lock();
        let wanted = st.wanted_entries();
        let mut changes = Vec::new();
        for (k, e) in &st.peers.programmed {
            if wanted.get(k) != Some(e) {
                changes.push(Change::Remove(k.1, e.clone()));
            }
        }
        for (k, e) in &wanted {
            if st.peers.programmed.get(k) != Some(e) {
                changes.push(Change::Add(k.1, e.clone()));
            }
        }
        // Names: every reachable remote endpoint's (of a registered host, on an overlay or a
        // routed network this host has), on its network.
        let reachable = |(net, _): &(String, Ipv4Addr), r: &RemoteEndpoint| {
            st.nodes.contains_key(&r.host) && st.networks.get(net).is_some_and(|n| n.rec.driver == DriverKind::Overlay || n.rec.routed_range.is_some())
        };
        let named: HashMap<String, (String, Ipv4Addr)> = st.peers.remote.iter().filter(|(k, r)| reachable(k, r)).map(|(k, r)| (format!("remote/{}", r.endpoint), k.clone())).collect();
        let gone: Vec<String> = st.peers.named.keys().filter(|k| named.get(*k) != st.peers.named.get(*k)).cloned().collect();
        let added: Vec<(String, weft_dns::Endpoint)> = named
            .iter()
            .filter(|(k, v)| st.peers.named.get(*k) != Some(v))
            .filter_map(|(k, (net, ip))| {
                let r = st.peers.remote.get(&(net.clone(), *ip))?;
                let network_name = st.networks.get(net)?.rec.name.clone();
                let first = r.names.first().cloned().unwrap_or_default();
                Some((k.clone(), weft_dns::Endpoint { network_id: net.clone(), ptr: format!("{first}.{network_name}."), network_name, names: r.names.clone(), ips: vec![std::net::IpAddr::V4(*ip)] }))
            })
            .collect();
        let routes = st.wanted_routes(self.keys.host());
        for (dst, via) in &st.peers.routes {
            if routes.get(dst) != Some(via) {
                changes.push(Change::Unroute(*dst, *via));
            }
        }
        for (dst, via) in &routes {
            if st.peers.routes.get(dst) != Some(via) {
                changes.push(Change::Route(*dst, *via));
            }
        }
        st.peers.programmed = wanted;
        st.peers.named = named;
        st.peers.routes = routes;
        if !changes.is_empty() {
            let tx = st.peers.programmer.get_or_insert_with(programmer);
            if tx.send(changes).is_err() {
                tracing::error!("the overlay entries thread is gone");
            }
        }
        drop(st);
        if !gone.is_empty() || !added.is_empty() {
            self.resolver.update(|idx| {
                for k in &gone {
                    idx.remove_container(k);
                }
                for (k, e) in added {
                    idx.set_container(&k, vec![e], None);
                }
            });
        }
    }
}
