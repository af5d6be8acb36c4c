//! Address claims: the store decides who holds an address. An endpoint's addresses are taken
//! by creating their claim keys (create-if-absent, holding the endpoint's host, owner and id);
//! the pools in memory are a cache of the claims.
//!
//! - A local network's addresses are only ever claimed by this daemon, whose cache already
//!   excludes every claim: their claims ride in the transaction that commits the endpoint's
//!   record ([`Claims::txn`]), still create-if-absent, so a wrong cache fails the action instead
//!   of handing out an address twice.
//! - A global network's addresses may be claimed by another daemon at any moment: they are
//!   claimed first, in a transaction of their own, before any kernel work; an address another
//!   host took meanwhile is marked as theirs and the reservation made again.
//!
//! The claims go in the transactions that drop their endpoints (exit, disconnect, detach), or by
//! rollback.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_model::{EndpointRecord, Scope, Status};
use weft_store::{Compare, Event, Op, Txn};

use crate::keys::parse_address;
use crate::undo::Undo;
use crate::{Engine, EngineError, Result, State};

/// How many times a reservation is made again after losing addresses to other hosts.
const CLAIM_ATTEMPTS: usize = 32;

/// The value of a claim key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub host: String,
    /// A container id, or `sandbox/<name>`.
    pub owner: String,
    pub endpoint: String,
    /// A global network's endpoint: what the other hosts need of it (their overlay entries,
    /// their DNS answers): its MAC and its names there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Claim {
    /// The remote endpoint an other host's claim describes (`None`: no usable MAC).
    fn remote(&self) -> Option<crate::peers::RemoteEndpoint> {
        Some(crate::peers::RemoteEndpoint { host: self.host.clone(), endpoint: self.endpoint.clone(), mac: weft_model::parse_mac(&self.mac).ok()?, names: self.names.clone() })
    }
}

/// The DNS names of the owner of an endpoint: a sandbox's name, or a container's name and short
/// id (a container being created is found by its reserved name).
fn owner_names(st: &State, owner: &str) -> Vec<String> {
    if let Some(key) = owner.strip_prefix("sandbox/") {
        return vec![key.to_string()];
    }
    let name = st.containers.get(owner).map(|c| c.name.clone()).or_else(|| st.names.iter().find(|(_, id)| id.as_str() == owner).map(|(n, _)| n.clone()));
    name.into_iter().chain(std::iter::once(weft_model::short_id(owner).to_string())).collect()
}

/// The claims that commit with an endpoint's record (a local network's; see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Claims {
    keys: Vec<(String, Vec<u8>)>,
}

impl Claims {
    /// A durable transaction of `ops` (the record) that also creates these claims, and fails
    /// whole if one exists.
    pub fn txn(&self, ops: Vec<Op>) -> Txn {
        Txn {
            compare: self.keys.iter().map(|(k, _)| Compare::Missing(k.clone())).collect(),
            success: ops.into_iter().chain(self.keys.iter().map(|(k, v)| Op::Put(k.clone(), v.clone()))).collect(),
            failure: Vec::new(),
            relaxed: false,
        }
    }
}

fn addresses(e: &EndpointRecord) -> impl Iterator<Item = IpAddr> {
    std::iter::once(IpAddr::V4(e.ip)).chain(e.ip6.map(IpAddr::V6))
}

impl Engine {
    /// The claim of endpoint `e` of `owner`: a global network's carries its MAC and names.
    fn claim_of(&self, st: &State, owner: &str, e: &EndpointRecord) -> Claim {
        let global = st.networks.get(&e.network_id).is_some_and(|n| n.rec.scope == Scope::Global);
        let (mac, names) = match global {
            true => (e.mac.clone(), owner_names(st, owner).into_iter().chain(e.aliases.iter().cloned()).collect()),
            false => (String::new(), Vec::new()),
        };
        Claim { host: self.keys.host().to_string(), owner: owner.to_string(), endpoint: e.endpoint_id.clone(), mac, names }
    }

    /// The claim keys of endpoint `e` (its IPv4 and, dual-stack, IPv6 address).
    fn claim_keys(&self, st: &State, e: &EndpointRecord) -> Vec<String> {
        let scope = st.networks.get(&e.network_id).map(|n| n.rec.scope).unwrap_or_default();
        addresses(e).map(|ip| self.keys.address(scope, &e.network_id, ip)).collect()
    }

    /// What a refused [`Claims::txn`] means: an address the cache thought free is claimed in the
    /// store. The cache takes the store's word (the address is held in its pool from now on, so
    /// it is not handed out again) and the action is refused with "try again" (409).
    pub(crate) async fn claims_lost(&self, claims: &Claims) -> EngineError {
        let prefix = self.keys.addresses(Scope::Local, "");
        for (key, _) in &claims.keys {
            let holder = match self.store.get(key).await {
                Ok(Some(kv)) => serde_json::from_slice::<Claim>(&kv.value).map(|c| c.owner).unwrap_or_default(),
                Ok(None) => continue,
                Err(e) => return e.into(),
            };
            let Some((net, ip)) = parse_address(&prefix, key) else { continue };
            let mut st = self.lock();
            let name = st.networks.get(&net).map(|n| n.rec.name.clone()).unwrap_or_else(|| net.clone());
            st.ipam.claimed(&net, ip);
            tracing::warn!(network = %name, %ip, holder = %holder, "an address claim the cache did not know: taken into the cache");
            return EngineError::Stale(format!("address {ip} of network {name} is claimed in the store already (by {}): the cache has it now; try again", weft_model::short_id(&holder)));
        }
        EngineError::Stale("the address claims changed in the store meanwhile: try again".into())
    }

    /// The operations deleting the claims of `endpoints` (for the transaction that drops them).
    pub(crate) fn unclaim(&self, endpoints: &[EndpointRecord]) -> Vec<Op> {
        let st = self.lock();
        endpoints.iter().flat_map(|e| self.claim_keys(&st, e)).map(Op::Delete).collect()
    }

    /// Claims the addresses of `endpoints` for `owner`: those of global networks in one
    /// transaction now, those of local ones returned to commit with the record. `Ok(Err(taken))`:
    /// nothing claimed, and these addresses are another host's.
    async fn claim(&self, owner: &str, endpoints: &[EndpointRecord]) -> Result<Result<Claims, Vec<(String, IpAddr)>>> {
        let mut claims = Vec::new();
        let mut local = Claims::default();
        {
            let st = self.lock();
            for e in endpoints {
                let global = st.networks.get(&e.network_id).is_some_and(|n| n.rec.scope == weft_model::Scope::Global);
                let value = serde_json::to_vec(&self.claim_of(&st, owner, e))?;
                for (key, ip) in self.claim_keys(&st, e).into_iter().zip(addresses(e)) {
                    if global {
                        claims.push((key, value.clone(), e.network_id.clone(), ip));
                    } else {
                        local.keys.push((key, value.clone()));
                    }
                }
            }
        }
        if claims.is_empty() {
            return Ok(Ok(local));
        }
        // Relaxed: a crash before the endpoint's record commits loses the claim with the rest.
        let txn = Txn {
            compare: claims.iter().map(|(k, ..)| Compare::Missing(k.clone())).collect(),
            success: claims.iter().map(|(k, v, ..)| Op::Put(k.clone(), v.clone())).collect(),
            failure: Vec::new(),
            relaxed: true,
        };
        if self.store.txn(txn).await?.succeeded {
            return Ok(Ok(local));
        }
        let mut taken = Vec::new();
        for (key, _, net, ip) in claims {
            if self.store.get(&key).await?.is_some() {
                taken.push((net, ip));
            }
        }
        Ok(Err(taken))
    }

    /// Makes a reservation with `reserve` (names and addresses, in memory, its undo steps in
    /// the `Undo` it is given) and claims the addresses `endpoints` reads from it; addresses lost
    /// to another host are marked theirs and the reservation is made again. On success the
    /// reservation's undo steps, and the claims' release, join `undo`; the claims still to make
    /// go in the transaction that commits the record (`Claims::txn`).
    pub(crate) async fn reserve_claimed<R>(
        self: &Arc<Self>,
        owner: &str,
        undo: &mut Undo,
        mut reserve: impl FnMut(&mut Undo) -> Result<R>,
        endpoints: impl Fn(&R) -> Vec<EndpointRecord>,
    ) -> Result<(R, Claims)> {
        let mut flushed = false;
        for _ in 0..CLAIM_ATTEMPTS {
            let mut steps = Undo::new();
            let reserved = match reserve(&mut steps) {
                // A chosen address still held by a removed endpoint the reaper has not deleted
                // yet: hurry it, once.
                Err(EngineError::Ipam(weft_ipam::IpamError::InUse(_))) if !flushed && self.lock().networks.values().any(|n| n.reaping > 0) => {
                    flushed = true;
                    let eng = self.clone();
                    crate::blocking(move || {
                        eng.reaper.flush();
                        Ok(())
                    })
                    .await?;
                    continue;
                }
                r => r?,
            };
            let eps = endpoints(&reserved);
            if eps.is_empty() {
                undo.extend(steps);
                return Ok((reserved, Claims::default()));
            }
            match self.claim(owner, &eps).await? {
                Ok(local) => {
                    undo.extend(steps);
                    let (store, ops) = (self.store.clone(), self.unclaim(&eps));
                    undo.push("release the address claims", move || drop(store.txn(Txn::relaxed(ops))));
                    return Ok((reserved, local));
                }
                Err(taken) => {
                    drop(reserved);
                    drop(steps);
                    let mut st = self.lock();
                    for (net, ip) in &taken {
                        tracing::debug!(network = %net, %ip, "address claimed by another host");
                        st.ipam.claimed(net, *ip);
                    }
                }
            }
        }
        Err(EngineError::Contention(format!("could not claim addresses for {owner}: other hosts kept taking them; try again")))
    }

    /// At start, after the records: makes this host's claims match its live endpoints (creating
    /// the missing, deleting those of endpoints that are gone), and marks the other hosts'
    /// claims on global networks as theirs.
    pub(crate) async fn reconcile_claims(&self) -> Result<()> {
        let me = self.keys.host().to_string();
        let wanted: HashMap<String, Claim> = {
            let st = self.lock();
            let claim = |owner: &str, e: &EndpointRecord| self.claim_of(&st, owner, e);
            let of_containers = st.containers.values().filter(|c| c.state.status == Status::Running).flat_map(|c| c.sandbox.endpoints.iter().map(move |e| (c.id.clone(), e)));
            let of_sandboxes = st.sandboxes.values().flat_map(|s| s.sandbox.endpoints.iter().map(move |e| (crate::sandbox::owner_key(&s.key), e)));
            of_containers.chain(of_sandboxes).flat_map(|(owner, e)| self.claim_keys(&st, e).into_iter().map(move |k| (k, claim(&owner, e)))).collect()
        };
        let (local, _) = self.store.range(&self.keys.addresses(Scope::Local, "")).await?;
        let shared_prefix = self.keys.addresses(Scope::Global, "");
        let (shared, _) = self.store.range(&shared_prefix).await?;
        let mut ops = Vec::new();
        let mut have = std::collections::HashSet::new();
        for kv in local.into_iter().chain(shared) {
            let claim: Option<Claim> = serde_json::from_slice(&kv.value).ok();
            match claim {
                Some(c) if c.host != me => {
                    if let Some((net, ip)) = parse_address(&shared_prefix, &kv.key) {
                        self.lock().ipam.claimed(&net, ip);
                    }
                }
                Some(c) if wanted.get(&kv.key) == Some(&c) => {
                    have.insert(kv.key);
                }
                _ => ops.push(Op::Delete(kv.key)),
            }
        }
        for (key, claim) in wanted {
            if !have.contains(&key) {
                ops.push(Op::Put(key, serde_json::to_vec(&claim)?));
            }
        }
        if !ops.is_empty() {
            let n = ops.len();
            tracing::info!(changes = n, "address claims repaired");
            self.store.txn(Txn::ops(ops)).await?;
            self.metrics.repaired(crate::metrics::repair::CLAIMS, n);
        }
        Ok(())
    }

    /// Follows the other hosts' claims on global networks: their addresses leave and rejoin
    /// this host's pools; their endpoints become this host's overlay entries and DNS names
    /// (`peers`).
    pub(crate) async fn follow_shared_claims(self: &Arc<Self>) -> Result<()> {
        let (eng, prefix) = (self.clone(), self.keys.addresses(Scope::Global, ""));
        crate::follow::follow(self.store.clone(), prefix.clone(), move |f| eng.follow_claims(&prefix, f)).await
    }

    /// One change of the other hosts' claims (see `follow_shared_claims`).
    fn follow_claims(&self, prefix: &str, f: crate::follow::Followed) {
        use crate::follow::Followed;
        let me = self.keys.host();
        let theirs = |kv: &weft_store::KeyValue| -> Option<(String, IpAddr, Claim)> {
            let c: Claim = serde_json::from_slice(&kv.value).ok().filter(|c: &Claim| c.host != me)?;
            let (net, ip) = parse_address(prefix, &kv.key)?;
            Some((net, ip, c))
        };
        {
            let mut st = self.lock();
            let mark = |st: &mut State, net: String, ip: IpAddr, c: Claim| {
                st.ipam.claimed(&net, ip);
                if let (IpAddr::V4(v4), Some(r)) = (ip, c.remote()) {
                    st.peers.remote.insert((net, v4), r);
                }
            };
            match f {
                Followed::Reset(kvs, _) => {
                    let marked: Vec<(String, IpAddr)> = st.networks.values().filter(|n| n.rec.scope == Scope::Global).flat_map(|n| st.ipam.claimed_on(&n.rec.id).into_iter().map(|ip| (n.rec.id.clone(), ip))).collect();
                    for (net, ip) in marked {
                        st.ipam.unclaimed(&net, ip);
                    }
                    st.peers.remote.clear();
                    for (net, ip, c) in kvs.iter().filter_map(theirs) {
                        mark(&mut st, net, ip, c);
                    }
                }
                Followed::Change(Event::Put(kv)) => {
                    if let Some((net, ip, c)) = theirs(&kv) {
                        mark(&mut st, net, ip, c);
                    }
                }
                Followed::Change(Event::Delete { key, .. }) => {
                    if let Some((net, ip)) = parse_address(prefix, &key) {
                        st.ipam.unclaimed(&net, ip);
                        if let IpAddr::V4(v4) = ip {
                            st.peers.remote.remove(&(net, v4));
                        }
                    }
                }
            }
        }
        self.sync_peers();
    }
}
