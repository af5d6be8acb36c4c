//! The store's keys. A daemon owns the keys under its host id; a global network's keys are
//! everyone's:
//!
//! ```text
//! /weft/hosts/<host-id>/containers/<id>            ContainerRecord
//! /weft/hosts/<host-id>/sandboxes/<name>           SandboxRecord (a namespace weft did not start)
//! /weft/hosts/<host-id>/networks/<id>              NetworkRecord, scope local
//! /weft/hosts/<host-id>/addresses/<net-id>/<ip>    Claim of a local network's address
//! /weft/hosts/<host-id>/p2p/<id>                   P2pRecord (a point-to-point link)
//! /weft/networks/<id>                              NetworkRecord, scope global
//! /weft/network-names/<name>                       its id (a global name is taken once)
//! /weft/addresses/<net-id>/<ip>                    Claim of a global network's address
//! /weft/nodes/<host-id>                            NodeRecord, under the daemon's lease
//! /weft/vnis/<vni>                                 the overlay network holding that VXLAN id
//! /weft/subnets/<net-id>/<a.b.c.d_len>             the host holding that block of a routed network
//! ```
//!
//! Reconcile reads and repairs only its own host's keys and its own claims; an address is taken
//! by creating its claim key (create-if-absent), so two daemons sharing a store never hand out
//! one address of a global network.

use std::net::IpAddr;

use weft_model::{NetworkRecord, Scope};
use weft_store::{Op, Store, Txn};

use crate::{Engine, Result};

/// The shared keys' root.
const SHARED: &str = "/weft/";

pub(crate) struct Keys {
    host: String,
    /// `/weft/hosts/<host-id>/`
    own: String,
}

impl Keys {
    pub fn new(host: &str) -> Self {
        Self { host: host.to_string(), own: format!("/weft/hosts/{host}/") }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `/weft/hosts/<host-id>/`: every key of this host's.
    pub fn own(&self) -> &str {
        &self.own
    }

    fn root(&self, scope: Scope) -> &str {
        match scope {
            Scope::Local => &self.own,
            Scope::Global => SHARED,
        }
    }

    pub fn containers(&self) -> String {
        format!("{}containers/", self.own)
    }
    pub fn container(&self, id: &str) -> String {
        format!("{}containers/{id}", self.own)
    }
    pub fn sandboxes(&self) -> String {
        format!("{}sandboxes/", self.own)
    }
    pub fn sandbox(&self, name: &str) -> String {
        format!("{}sandboxes/{name}", self.own)
    }
    pub fn p2p(&self) -> String {
        format!("{}p2p/", self.own)
    }
    pub fn p2p_link(&self, id: &str) -> String {
        format!("{}p2p/{id}", self.own)
    }
    pub fn networks(&self, scope: Scope) -> String {
        format!("{}networks/", self.root(scope))
    }
    pub fn network(&self, rec: &NetworkRecord) -> String {
        format!("{}{}", self.networks(rec.scope), rec.id)
    }
    /// A global network's name, claimed with its record (local names are checked in memory).
    pub fn network_name(&self, name: &str) -> String {
        format!("{SHARED}network-names/{name}")
    }
    /// The overlays' VXLAN ids (each holds its network's id).
    pub fn vnis(&self) -> String {
        format!("{SHARED}vnis/")
    }
    pub fn vni(&self, vni: u32) -> String {
        format!("{SHARED}vnis/{vni}")
    }
    /// The hosts' blocks of routed networks (`net_id` empty: of every network).
    pub fn subnets(&self, net_id: &str) -> String {
        match net_id {
            "" => format!("{SHARED}subnets/"),
            id => format!("{SHARED}subnets/{id}/"),
        }
    }
    /// The registered daemons.
    pub fn nodes(&self) -> String {
        format!("{SHARED}nodes/")
    }
    pub fn node(&self, id: &str) -> String {
        format!("{SHARED}nodes/{id}")
    }
    /// The claims of one network (`network_id` empty: of every network of that scope).
    pub fn addresses(&self, scope: Scope, network_id: &str) -> String {
        match network_id {
            "" => format!("{}addresses/", self.root(scope)),
            id => format!("{}addresses/{id}/", self.root(scope)),
        }
    }
    pub fn address(&self, scope: Scope, network_id: &str, ip: IpAddr) -> String {
        format!("{}{ip}", self.addresses(scope, network_id))
    }
}

/// A claim key's network id and address.
pub(crate) fn parse_address(prefix: &str, key: &str) -> Option<(String, IpAddr)> {
    let (net, ip) = key.strip_prefix(prefix)?.split_once('/')?;
    Some((net.to_string(), ip.parse().ok()?))
}

/// Moves the records of the layout before host ids (`/weft/containers/…`, `/weft/sandboxes/…`,
/// local networks at `/weft/networks/…`) under `keys`' host, in one transaction; returns how many.
pub(crate) async fn migrate(store: &dyn Store, keys: &Keys) -> Result<usize> {
    let mut ops = Vec::new();
    for (old, new) in [("/weft/containers/", keys.containers()), ("/weft/sandboxes/", keys.sandboxes())] {
        for kv in store.range(old).await?.0 {
            let rest = &kv.key[old.len()..];
            ops.push(Op::Put(format!("{new}{rest}"), kv.value));
            ops.push(Op::Delete(kv.key));
        }
    }
    for kv in store.range(&keys.networks(Scope::Global)).await?.0 {
        match serde_json::from_slice::<NetworkRecord>(&kv.value) {
            Ok(rec) if rec.scope == Scope::Local => {
                ops.push(Op::Put(keys.network(&rec), kv.value));
                ops.push(Op::Delete(kv.key));
            }
            _ => {}
        }
    }
    let moved = ops.len() / 2;
    if moved > 0 {
        store.txn(Txn::ops(ops)).await?;
    }
    Ok(moved)
}

impl Engine {
    /// See [`migrate`].
    pub(crate) async fn migrate_keys(&self) -> Result<()> {
        let moved = migrate(self.store.as_ref(), &self.keys).await?;
        if moved > 0 {
            tracing::info!(records = moved, host = self.keys.host(), "moved records under this host's keys");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_old_layout_moves_under_the_host() {
        let dir = std::env::temp_dir().join(format!("weft-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let store = weft_store::Embedded::open(&dir.join("db")).expect("open");
        let net = |id: &str, scope: &str| format!(r#"{{"id":"{id}","name":"n{id}","driver":"bridge","bridge":"br-{id}","subnet":"10.1.0.0/24","gateway":"10.1.0.1","ip_range":null,"mtu":1500,"managed_bridge":true,"icc":true,"masquerade":true,"internal":false,"created":0,"options":{{}},"scope":"{scope}"}}"#);
        let old = vec![
            Op::Put("/weft/containers/c1".into(), b"{}".to_vec()),
            Op::Put("/weft/sandboxes/s1".into(), b"{}".to_vec()),
            // A record from before scopes (no field: local), and a global one, which stays.
            Op::Put("/weft/networks/a".into(), net("a", "local").replace(r#","scope":"local""#, "").into_bytes()),
            Op::Put("/weft/networks/g".into(), net("g", "global").into_bytes()),
        ];
        store.txn(Txn::ops(old)).await.expect("write the old layout");
        let keys = Keys::new("h1");
        assert_eq!(migrate(&store, &keys).await.expect("migrate"), 3);
        let (all, _) = store.range("/weft/").await.expect("range");
        let names: Vec<&str> = all.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(names, ["/weft/hosts/h1/containers/c1", "/weft/hosts/h1/networks/a", "/weft/hosts/h1/sandboxes/s1", "/weft/networks/g"]);
        assert_eq!(migrate(&store, &keys).await.expect("again"), 0, "nothing left to move");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
