//! The store's keys. A daemon owns the keys under its host id; a global network's keys are
//! everyone's:
//!
//! ```text
//! /weft/hosts/<host-id>/containers/<id>            ContainerRecord
//! /weft/hosts/<host-id>/sandboxes/<name>           SandboxRecord (a namespace weft did not start)
//! /weft/hosts/<host-id>/networks/<id>              NetworkRecord, scope local
//! /weft/hosts/<host-id>/addresses/<net-id>/<ip>    Claim of a local network's address
//! /weft/networks/<id>                              NetworkRecord, scope global
//! /weft/addresses/<net-id>/<ip>                    Claim of a global network's address
//! ```
//!
//! Reconcile reads and repairs only its own host's keys and its own claims; an address is taken
//! by creating its claim key (create-if-absent), so two daemons sharing a store never hand out
//! one address of a global network.

use std::net::IpAddr;

use weft_model::{NetworkRecord, Scope};
use weft_store::{Op, Txn};

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
    pub fn networks(&self, scope: Scope) -> String {
        format!("{}networks/", self.root(scope))
    }
    pub fn network(&self, rec: &NetworkRecord) -> String {
        format!("{}{}", self.networks(rec.scope), rec.id)
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

impl Engine {
    /// Moves the records of the layout before host ids (`/weft/containers/…`, `/weft/sandboxes/…`,
    /// local networks at `/weft/networks/…`) under this host's keys, in one transaction.
    pub(crate) async fn migrate_keys(&self) -> Result<()> {
        let mut ops = Vec::new();
        for (old, new) in [("/weft/containers/", self.keys.containers()), ("/weft/sandboxes/", self.keys.sandboxes())] {
            for kv in self.store.range(old).await?.0 {
                let rest = &kv.key[old.len()..];
                ops.push(Op::Put(format!("{new}{rest}"), kv.value));
                ops.push(Op::Delete(kv.key));
            }
        }
        for kv in self.store.range(&self.keys.networks(Scope::Global)).await?.0 {
            match serde_json::from_slice::<NetworkRecord>(&kv.value) {
                Ok(rec) if rec.scope == Scope::Local => {
                    ops.push(Op::Put(self.keys.network(&rec), kv.value));
                    ops.push(Op::Delete(kv.key));
                }
                _ => {}
            }
        }
        if !ops.is_empty() {
            tracing::info!(records = ops.len() / 2, host = self.keys.host(), "moved records under this host's keys");
            self.store.txn(Txn::ops(ops)).await?;
        }
        Ok(())
    }
}
