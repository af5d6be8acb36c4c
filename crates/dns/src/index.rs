//! The names the resolver answers, changed per container: the engine hands over a container's
//! endpoints (names and addresses per network) and its view (which networks it may resolve, its
//! upstreams) whenever they change; the index takes the old ones out and puts the new ones in.
//! Queries read it under a shared lock; a change writes only that container's entries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// One container's presence on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    /// Its name, short id and aliases there (any case).
    pub names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// The PTR answer for its addresses: `name.network.`.
    pub ptr: String,
}

/// What one container may resolve.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// Network ids.
    pub networks: Vec<String>,
    /// Only internal networks: no forwarding.
    pub internal_only: bool,
    pub upstream: Vec<SocketAddr>,
}

#[derive(Debug, Default)]
pub struct Index {
    /// network id -> lowercase name -> addresses
    names: HashMap<String, HashMap<String, Vec<IpAddr>>>,
    /// network name -> network id
    networks: HashMap<String, String>,
    /// (network id, address) -> "name.network."
    ptr: HashMap<(String, IpAddr), String>,
    /// container id -> its view
    pub(crate) clients: HashMap<String, ClientView>,
    /// container id -> what it put in (to take it out again)
    owned: HashMap<String, Vec<Endpoint>>,
}

impl Index {
    /// Container `id` is (now) at `endpoints`; with `client`, it also resolves through weft.
    pub fn set_container(&mut self, id: &str, endpoints: Vec<Endpoint>, client: Option<ClientView>) {
        self.remove_container(id);
        for e in &endpoints {
            self.networks.insert(e.network_name.to_ascii_lowercase(), e.network_id.clone());
            let names = self.names.entry(e.network_id.clone()).or_default();
            for n in &e.names {
                let v = names.entry(n.to_ascii_lowercase()).or_default();
                for ip in &e.ips {
                    if !v.contains(ip) {
                        v.push(*ip);
                    }
                }
            }
            for ip in &e.ips {
                self.ptr.insert((e.network_id.clone(), *ip), e.ptr.clone());
            }
        }
        if let Some(c) = client {
            self.clients.insert(id.to_string(), c);
        }
        self.owned.insert(id.to_string(), endpoints);
    }

    /// Container `id` is gone (or no longer running).
    pub fn remove_container(&mut self, id: &str) {
        self.clients.remove(id);
        for e in self.owned.remove(id).into_iter().flatten() {
            if let Some(names) = self.names.get_mut(&e.network_id) {
                for n in &e.names {
                    let key = n.to_ascii_lowercase();
                    if let Some(v) = names.get_mut(&key) {
                        v.retain(|ip| !e.ips.contains(ip));
                        if v.is_empty() {
                            names.remove(&key);
                        }
                    }
                }
            }
            for ip in &e.ips {
                let key = (e.network_id.clone(), *ip);
                if self.ptr.get(&key) == Some(&e.ptr) {
                    self.ptr.remove(&key);
                }
            }
        }
    }

    /// Network `id` was removed.
    pub fn remove_network(&mut self, id: &str) {
        self.networks.retain(|_, v| v != id);
        self.names.remove(id);
        self.ptr.retain(|(n, _), _| n != id);
    }

    /// Local addresses of `name` for `client`: `name` or `name.network` on one of its networks.
    pub(crate) fn lookup(&self, client: &ClientView, name: &str) -> Option<Vec<IpAddr>> {
        let mut found: Vec<IpAddr> = Vec::new();
        let mut any = false;
        for net in &client.networks {
            if let Some(ips) = self.names.get(net).and_then(|m| m.get(name)) {
                any = true;
                found.extend(ips);
            }
        }
        if !any {
            if let Some((host, netname)) = name.rsplit_once('.') {
                if let Some(net) = self.networks.get(netname).filter(|id| client.networks.contains(id)) {
                    if let Some(ips) = self.names.get(net).and_then(|m| m.get(host)) {
                        any = true;
                        found.extend(ips);
                    }
                }
            }
        }
        any.then_some(found)
    }

    pub(crate) fn reverse(&self, client: &ClientView, ip: IpAddr) -> Option<&str> {
        client.networks.iter().find_map(|n| self.ptr.get(&(n.clone(), ip)).map(String::as_str))
    }
}

/// The index shared by the serving tasks, and a generation that changes with every update (so a
/// task can keep its container's view until it changes).
#[derive(Default)]
pub struct Resolver {
    index: RwLock<Index>,
    generation: AtomicU64,
}

impl Resolver {
    /// Changes the index (the engine's updates: one container, or one network).
    pub fn update(&self, change: impl FnOnce(&mut Index)) {
        change(&mut self.index.write().unwrap_or_else(|p| p.into_inner()));
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(net: &str, name: &str, ip: &str) -> Endpoint {
        Endpoint { network_id: net.into(), network_name: format!("{net}-name"), names: vec![name.into()], ips: vec![ip.parse().expect("ip")], ptr: format!("{name}.{net}-name.") }
    }

    #[test]
    fn containers_come_and_go_without_touching_the_others() {
        let mut idx = Index::default();
        let view = ClientView { networks: vec!["n1".into()], ..ClientView::default() };
        idx.set_container("a", vec![ep("n1", "Web", "10.0.0.2")], Some(view.clone()));
        idx.set_container("b", vec![ep("n1", "db", "10.0.0.3"), ep("n2", "db", "10.1.0.3")], None);
        assert_eq!(idx.lookup(&view, "web"), Some(vec!["10.0.0.2".parse().expect("ip")]));
        assert_eq!(idx.lookup(&view, "db.n1-name"), Some(vec!["10.0.0.3".parse().expect("ip")]));
        assert_eq!(idx.lookup(&view, "db.n2-name"), None, "not one of the client's networks");
        assert_eq!(idx.reverse(&view, "10.0.0.3".parse().expect("ip")), Some("db.n1-name."));
        // b moves off n1: only its entries change.
        idx.set_container("b", vec![ep("n2", "db", "10.1.0.3")], None);
        assert_eq!(idx.lookup(&view, "db"), None);
        assert_eq!(idx.reverse(&view, "10.0.0.3".parse().expect("ip")), None);
        assert!(idx.lookup(&view, "web").is_some());
        idx.remove_container("a");
        assert!(idx.lookup(&view, "web").is_none() && !idx.clients.contains_key("a"));
        idx.remove_network("n2");
        assert!(!idx.names.contains_key("n2") && idx.ptr.is_empty());
    }
}
