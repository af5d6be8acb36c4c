//! User-defined networks: `weft network create / rm / prune`. A network is a bridge (`br-` + 12
//! hex of its id, or `com.docker.network.bridge.name`) with the gateway address, its firewall
//! chains and map elements, an address pool, and one store record. Creation rolls back whole.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use weft_firewall::NetworkFw;
use weft_model::{new_id, NetworkRecord, NetworkSpec, Scope, Status, DEFAULT_NETWORK};
use weft_store::{Compare, Op, Txn};

use crate::network::with_host;
use crate::undo::Undo;
use crate::{blocking, now, Engine, EngineError, NetState, Result};

/// The firewall's view of a network, if its driver's traffic crosses the host.
pub(crate) fn fw_of(n: &NetworkRecord) -> Option<NetworkFw> {
    weft_drivers::driver(n.driver).forwards_through_host().then(|| NetworkFw {
        bridge: n.bridge.clone(),
        subnet: n.subnet,
        subnet6: n.subnet6,
        masquerade: n.masquerade,
        icc: n.icc,
        internal: n.internal,
        routed_range: n.routed_range,
    })
}

/// The bytes a VXLAN tunnel adds to a frame: outer Ethernet (14), IPv4 (20), UDP (8), VXLAN (8).
const VXLAN_OVERHEAD: u32 = 50;

/// Where automatic VXLAN ids start (below: left to the user's `-o vxlan.id`).
const FIRST_VNI: u32 = 4096;

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Makes (or adopts) network `rec`'s own objects through its driver. Blocking.
/// A network as made (or adopted) on this host: what its endpoints are made against, and its
/// link's own MAC, which no endpoint may take (a bridge's: a container with it takes the
/// gateway's traffic).
pub(crate) struct Made {
    pub host: std::sync::Arc<dyn weft_drivers::HostNetwork>,
    pub own_mac: Option<[u8; 6]>,
}

pub(crate) fn make_network(rec: &NetworkRecord, o: &weft_drivers::HostOptions) -> Result<Made> {
    with_host(|nl| {
        let host = weft_drivers::driver(rec.driver).create_network(nl, rec, o)?;
        let own_mac = nl.link(&rec.bridge)?.and_then(|l| l.mac);
        Ok(Made { host, own_mac })
    })
}

impl Engine {
    #[tracing::instrument(name = "network create", skip_all, fields(network = %spec.name))]
    pub(crate) async fn create_network(self: &Arc<Self>, spec: NetworkSpec) -> Result<NetworkRecord> {
        let mut opts = spec.validate()?;
        let driver = weft_model::DriverKind::parse(&spec.driver)?;
        let overlay = driver == weft_model::DriverKind::Overlay;
        // An overlay spans hosts: global, and its tunnels need this host's address.
        let scope = if overlay { Scope::Global } else { Scope::parse(&spec.scope)? };
        let mut options = spec.options.clone();
        if overlay {
            let Some(local) = self.cfg.advertise_addr else {
                return Err(EngineError::Refused("an overlay network needs weftd --advertise-addr (where the other hosts reach this one)".into()));
            };
            let vni = match opts.vni {
                Some(v) => v,
                None => self.free_vni().await?,
            };
            options.insert(weft_model::OPT_VXLAN_ID.into(), vni.to_string());
            opts.vni = Some(vni);
            // The tunnel's 50 bytes (outer Ethernet, IPv4, UDP, VXLAN) come off the underlay's MTU.
            if opts.mtu.is_none() {
                let underlay = blocking(move || {
                    with_host(|nl| {
                        let Some(index) = nl.addrs()?.into_iter().find(|a| a.addr == IpAddr::V4(local)).map(|a| a.index) else { return Ok(None) };
                        Ok(nl.links()?.into_iter().find(|l| l.index == index).map(|l| l.mtu))
                    })
                })
                .await?;
                opts.mtu = Some(underlay.unwrap_or(self.cfg.mtu).saturating_sub(VXLAN_OVERHEAD).max(68));
            }
        }
        let id = new_id();
        let link = weft_drivers::driver(driver).network_link(&id, &opts, spec.internal);
        let bridge = link.name.clone();
        let host_nets = host_nets().await?;
        let link_exists = {
            let b = bridge.clone();
            blocking(move || with_host(|nl| nl.link(&b))).await?.is_some()
        };
        let mut undo = Undo::new();
        let rec = {
            let mut st = self.lock();
            if st.networks.values().any(|n| n.rec.name == spec.name) || st.creating.contains_key(&spec.name) {
                return Err(EngineError::NetworkExists(spec.name));
            }
            // weft's own link must be new, anyone else's (a parent) must be there; one network each.
            match (link.made, link_exists) {
                (true, true) => return Err(EngineError::Overlap(format!("{} {bridge} already exists", link.what))),
                (false, false) => return Err(EngineError::Refused(format!("{} {bridge} does not exist on this host", link.what))),
                _ => {}
            }
            let user = st.networks.values().find(|n| n.rec.bridge == bridge).map(|n| n.rec.name.clone());
            if let Some(other) = user.or_else(|| st.creating.iter().find(|c| c.1 .2 == bridge).map(|c| c.0.clone())) {
                return Err(EngineError::Overlap(format!("{} {bridge} is already used by network {other}", link.what)));
            }
            let subnet = match spec.subnet {
                Some(s) => {
                    let s = s.trunc();
                    if let Some(other) = st.networks.values().find(|n| overlaps(&n.rec.subnet, &s)) {
                        return Err(EngineError::Overlap(format!("subnet {s} overlaps with network {} ({})", other.rec.name, other.rec.subnet)));
                    }
                    if let Some((other, _)) = st.creating.iter().find(|(_, c)| overlaps(&c.0, &s)) {
                        return Err(EngineError::Overlap(format!("subnet {s} overlaps with network {other}")));
                    }
                    // A point-to-point link's addresses: the network would hand them out again.
                    if let Some((l, e)) = st.p2p.values().find_map(|l| l.ends().into_iter().find(|e| s.contains(&e.addr)).map(|e| (l, e))) {
                        return Err(EngineError::Overlap(format!(
                            "subnet {s} holds {}, {}'s end of point-to-point link {}:{}",
                            e.addr, e.name, l.a.name, l.b.name
                        )));
                    }
                    // The host's own addresses and routes (its uplink): the gateway would collide or
                    // the host lose a route. An explicit --gateway says the user means it (as -b does).
                    if let Some(h) = host_nets.iter().find(|h| overlaps(h, &s)).filter(|_| spec.gateway.is_none()) {
                        return Err(EngineError::Overlap(format!("subnet {s} overlaps with the host's {h}: give --gateway to use it anyway")));
                    }
                    s
                }
                None => self.pick_subnet(&st, &host_nets)?,
            };
            let gateway = spec.gateway.unwrap_or_else(|| subnet.hosts().next().expect("a /30 or larger has hosts"));
            let subnet6 = spec.subnet6.map(|s| s.trunc()).or_else(|| spec.enable_ipv6.then(|| weft_ipam::ula_subnet(&id)));
            if let Some(s6) = subnet6 {
                let clash = |o: &ipnet::Ipv6Net| o.contains(&s6.network()) || s6.contains(&o.network());
                if let Some(other) = st.networks.values().find(|n| n.rec.subnet6.as_ref().is_some_and(clash)) {
                    return Err(EngineError::Overlap(format!("subnet {s6} overlaps with network {}", other.rec.name)));
                }
                if let Some((other, _)) = st.creating.iter().find(|(_, c)| c.1.as_ref().is_some_and(clash)) {
                    return Err(EngineError::Overlap(format!("subnet {s6} overlaps with network {other}")));
                }
            }
            let gateway6 = subnet6.map(|s6| spec.gateway6.unwrap_or_else(|| std::net::Ipv6Addr::from(u128::from(s6.network()) + 1)));
            let rec = NetworkRecord {
                id: id.clone(),
                name: spec.name.clone(),
                driver,
                bridge: bridge.clone(),
                subnet,
                gateway,
                ip_range: spec.ip_range,
                mtu: opts.mtu.unwrap_or(self.cfg.mtu),
                managed_bridge: link.made,
                icc: opts.icc.unwrap_or(true),
                masquerade: !spec.internal && opts.masquerade.unwrap_or(true) && weft_drivers::driver(driver).forwards_through_host(),
                internal: spec.internal,
                created: now(),
                options,
                aux_addresses: spec.aux_addresses.clone(),
                labels: spec.labels.clone(),
                host_binding_ipv4: opts.host_binding_ipv4,
                proxy_arp_option: Some(opts.proxy_arp.unwrap_or(true)),
                routed_range: None,
                subnet6,
                gateway6,
                scope,
            };
            st.creating.insert(spec.name.clone(), (rec.subnet, rec.subnet6, rec.bridge.clone()));
            rec
        };
        {
            let (eng, name) = (self.clone(), spec.name.clone());
            undo.push("release name", move || {
                eng.lock().creating.remove(&name);
            });
        }
        // The record first, with its claims: a crash before the bridge exists is repaired at
        // start, where `load_user_networks` makes the bridges of recorded networks.
        let txn = self.network_txn(&rec)?;
        let keys = written(&txn);
        let committed = self.commit(txn).await?;
        if !committed.succeeded {
            return Err(self.network_refused(&rec).await?);
        }
        // A global network is made here as on every host: by the watch (`globals`).
        if rec.scope == Scope::Global {
            undo.commit();
            self.lock().creating.remove(&rec.name);
            crate::mirror::network(&self.cfg.data_root, &rec);
            self.await_globals(committed.revision).await?;
            tracing::info!(network = %rec.name, subnet = %rec.subnet, "global network created");
            return Ok(rec);
        }
        let eng = self.clone();
        undo.push("delete the record", move || eng.commit_undo(keys.into_iter().map(Op::Delete).collect()));
        let (made, pool, pool6) = self.bring_up(&rec).await?;
        let (r, o) = (rec.clone(), self.host_options());
        undo.push("delete the network's objects", move || {
            let _ = with_host(|nl| weft_drivers::driver(r.driver).remove_network(nl, &r, &o));
        });
        if let Some(fw) = fw_of(&rec) {
            self.fw.add_network(&fw)?;
        }
        undo.commit();
        crate::mirror::network(&self.cfg.data_root, &rec);
        let mut st = self.lock();
        st.creating.remove(&rec.name);
        st.ipam.add(&id, pool, pool6);
        st.networks.insert(id, NetState::new(rec.clone(), made));
        drop(st);
        self.sync_peers();
        tracing::info!(network = %rec.name, bridge = %rec.bridge, subnet = %rec.subnet, "network created");
        Ok(rec)
    }

    /// `weft network rm`: refused while endpoints exist; the default network stays.
    #[tracing::instrument(name = "network rm", skip(self))]
    pub(crate) async fn remove_network(self: &Arc<Self>, key: &str) -> Result<()> {
        let rec = self.network(key)?;
        if rec.name == DEFAULT_NETWORK {
            return Err(EngineError::Refused(format!("{DEFAULT_NETWORK} is a pre-defined network and cannot be removed")));
        }
        {
            let mut st = self.lock();
            let users: Vec<&str> = st
                .containers
                .values()
                .filter(|c| c.state.status == Status::Running && c.sandbox.endpoints.iter().any(|e| e.network_id == rec.id))
                .map(|c| c.name.as_str())
                .chain(st.sandboxes.values().filter(|s| s.sandbox.endpoints.iter().any(|e| e.network_id == rec.id)).map(|s| s.key.as_str()))
                .collect();
            if !users.is_empty() {
                return Err(EngineError::NetworkInUse(rec.name.clone(), users.join(", ")));
            }
            // Endpoints being set up (planned, not yet committed or rolled back).
            if st.networks.get(&rec.id).is_some_and(|n| n.pending > 0) {
                return Err(EngineError::NetworkInUse(rec.name.clone(), "endpoints being set up".into()));
            }
            st.removing.insert(rec.id.clone());
        }
        // Other hosts' endpoints on a global network: their claims.
        if rec.scope == Scope::Global {
            let holders = self.claim_holders(&rec).await;
            if !holders.as_ref().is_ok_and(Vec::is_empty) {
                self.lock().removing.remove(&rec.id);
                return Err(match holders {
                    Ok(h) => EngineError::NetworkInUse(rec.name.clone(), format!("endpoints on hosts {}", h.join(", "))),
                    Err(e) => e,
                });
            }
        }
        let result = self.remove_network_objects(&rec, true).await;
        self.lock().removing.remove(&rec.id);
        result
    }

    /// The bridge first, the record last: a crash in between leaves a network whose removal is
    /// simply done again, never an orphan bridge.
    /// `records`: delete its store keys too (not when another host removed a global network:
    /// its keys are gone, and its name may be taken again already).
    async fn remove_network_objects(self: &Arc<Self>, rec: &NetworkRecord, records: bool) -> Result<()> {
        if let Some(Err(e)) = fw_of(rec).map(|fw| self.fw.remove_network(&fw)) {
            tracing::warn!(network = %rec.name, error = %e, "removing firewall chains");
        }
        // Pending deletions of its endpoints first, then its own objects.
        let (eng, r, o) = (self.clone(), rec.clone(), self.host_options());
        blocking(move || {
            eng.reaper.flush();
            with_host(|nl| weft_drivers::driver(r.driver).remove_network(nl, &r, &o))
        })
        .await?;
        if records {
            // The keys its creation wrote: of the shared record (a routed network's range).
            let shared = NetworkRecord { subnet: rec.routed_range.unwrap_or(rec.subnet), ..rec.clone() };
            let mut ops: Vec<Op> = written(&self.network_txn(&shared)?).into_iter().map(Op::Delete).collect();
            if rec.routed_range.is_some() {
                ops.extend(self.unclaim_blocks(&rec.id).await?);
            }
            self.commit(Txn::ops(ops)).await?;
            crate::mirror::forget_network(&self.cfg.data_root, &rec.id);
        }
        {
            let mut st = self.lock();
            st.networks.remove(&rec.id);
            st.ipam.remove(&rec.id);
        }
        self.resolver.update(|idx| idx.remove_network(&rec.id));
        self.sync_peers();
        tracing::info!(network = %rec.name, "network removed");
        Ok(())
    }

    /// The transaction that commits network `rec` (its shared record, for a routed network) with
    /// what it holds, each created only if free: its name and its subnets in its scope (a local
    /// network's also clear of the global ones, see `keys`), an overlay's VXLAN id. Its removal
    /// deletes the same keys.
    pub(crate) fn network_txn(&self, rec: &NetworkRecord) -> Result<Txn> {
        let mut txn = Txn::ops(vec![Op::Put(self.keys.network(rec), serde_json::to_vec(rec)?)]);
        let id = rec.id.as_bytes().to_vec();
        let mut claim = |key: String| {
            txn.compare.push(Compare::Missing(key.clone()));
            txn.success.push(Op::Put(key, id.clone()));
        };
        claim(self.keys.network_name(rec.scope, &rec.name));
        if let Some(vni) = rec.vni() {
            claim(self.keys.vni(vni));
        }
        if rec.scope == Scope::Local {
            txn.compare.push(Compare::Missing(self.keys.network_name(Scope::Global, &rec.name)));
            txn.compare.extend(self.keys.subnet_free(Scope::Global, rec.subnet.into()));
        }
        self.keys.take_subnet(&mut txn, rec.scope, rec.subnet.into(), &rec.id);
        if let Some(s6) = rec.subnet6 {
            self.keys.take_subnet(&mut txn, rec.scope, s6.into(), &rec.id);
        }
        Ok(txn)
    }

    /// At start: takes the claims network `rec` lacks (a store from before they existed, or the
    /// default network remade). A claim another network holds is left to it, and said.
    pub(crate) async fn ensure_claims(&self, rec: &NetworkRecord) -> Result<()> {
        self.ensure_taken(&rec.name, self.network_txn(rec)?).await
    }

    /// Takes the claims of `txn` (all but its first write, the record) that are missing.
    pub(crate) async fn ensure_taken(&self, what: &str, txn: Txn) -> Result<()> {
        let mut missing = Txn::default();
        for op in txn.success.into_iter().skip(1) {
            let Op::Put(key, value) = op else { continue };
            match self.store.get(&key).await? {
                Some(kv) if kv.value != value => tracing::warn!(of = %what, claim = %key, holder = %self.holder_name(&kv.value), "a claim is another's"),
                Some(_) => {}
                None => {
                    missing.compare.push(Compare::Missing(key.clone()));
                    missing.success.push(Op::Put(key, value));
                }
            }
        }
        if !missing.success.is_empty() && !self.store.txn(missing).await?.succeeded {
            tracing::warn!(of = %what, "its claims were taken meanwhile");
        }
        Ok(())
    }

    /// Why the store refused network `rec`'s transaction: the first of its claims another holds.
    async fn network_refused(&self, rec: &NetworkRecord) -> Result<EngineError> {
        if let Some(vni) = rec.vni() {
            if let Some(kv) = self.store.get(&self.keys.vni(vni)).await? {
                return Ok(EngineError::Overlap(format!("VXLAN id {vni} is already used by network {}", self.holder_name(&kv.value))));
            }
        }
        for scope in [Scope::Local, Scope::Global] {
            if self.store.get(&self.keys.network_name(scope, &rec.name)).await?.is_some() {
                return Ok(EngineError::NetworkExists(rec.name.clone()));
            }
        }
        for net in std::iter::once(IpNet::from(rec.subnet)).chain(rec.subnet6.map(IpNet::from)) {
            if let Some(held) = self.subnet_held(rec.scope, net).await? {
                return Ok(EngineError::Overlap(format!("subnet {net} overlaps with {held}")));
            }
        }
        Ok(EngineError::Stale(format!("network {}: what it claims changed in the store meanwhile: try again", rec.name)))
    }

    /// What holds a subnet overlapping `net` (a local one's are checked in both scopes), for a
    /// message: `network NAME (SUBNET)`.
    pub(crate) async fn subnet_held(&self, scope: Scope, net: IpNet) -> Result<Option<String>> {
        let scopes: &[Scope] = if scope == Scope::Local { &[Scope::Local, Scope::Global] } else { &[Scope::Global] };
        for scope in scopes {
            let (kvs, _) = self.store.range(&self.keys.subnet_claims(*scope, if net.addr().is_ipv4() { 4 } else { 6 })).await?;
            let held = kvs.iter().filter_map(|kv| Some((self.keys.claimed_subnet(*scope, &kv.key)?, &kv.value))).find(|(c, _)| c.contains(&net.network()) || net.contains(&c.network()));
            if let Some((c, holder)) = held {
                return Ok(Some(format!("{} ({c})", self.holder_name(holder))));
            }
        }
        Ok(None)
    }

    /// What holds a claim, for a message: `network NAME`, `point-to-point link ID`, or its id.
    fn holder_name(&self, value: &[u8]) -> String {
        let holder = String::from_utf8_lossy(value).to_string();
        match holder.strip_prefix("link/") {
            Some(link) => format!("point-to-point link {}", weft_model::short_id(link)),
            None => format!("network {}", self.network(&holder).map(|n| n.name).unwrap_or(holder)),
        }
    }

    /// The lowest VXLAN id from [`FIRST_VNI`] that no overlay holds (the claim with the record
    /// decides a race).
    async fn free_vni(&self) -> Result<u32> {
        let prefix = self.keys.vnis();
        let taken: std::collections::HashSet<u32> = self.store.range(&prefix).await?.0.iter().filter_map(|kv| kv.key.strip_prefix(&prefix)?.parse().ok()).collect();
        (FIRST_VNI..=16_777_215).find(|v| !taken.contains(v)).ok_or_else(|| EngineError::Refused("every VXLAN id is taken".into()))
    }

    /// `weft network prune`: removes every user network without endpoints; returns their names.
    /// `network prune`: the user networks no endpoint uses (of `only`, ids, when given).
    pub(crate) async fn prune_networks(self: &Arc<Self>, only: Option<&[String]>) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.networks() {
            if n.name == DEFAULT_NETWORK || only.is_some_and(|o| !o.contains(&n.id)) {
                continue;
            }
            match self.remove_network(&n.id).await {
                Ok(()) => removed.push(n.name),
                Err(EngineError::NetworkInUse(..)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The hosts holding claims on network `rec`.
    async fn claim_holders(&self, rec: &NetworkRecord) -> Result<Vec<String>> {
        let (claims, _) = self.store.range(&self.keys.addresses(rec.scope, &rec.id)).await?;
        let mut hosts: Vec<String> = claims.iter().filter_map(|kv| serde_json::from_slice::<crate::claims::Claim>(&kv.value).ok()).map(|c| c.host).collect();
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// A network's pools (gateway and aux addresses reserved) and its bridge, made or adopted.
    async fn bring_up(&self, rec: &NetworkRecord) -> Result<(Made, weft_ipam::Pool, Option<weft_ipam::Pool6>)> {
        let (pool, pool6) = self.pools(rec)?;
        let (r, o) = (rec.clone(), self.host_options());
        let made = blocking(move || make_network(&r, &o)).await?;
        Ok((made, pool, pool6))
    }

    /// A network's pools: the gateway and aux addresses reserved; a global network's search
    /// starts at a place of this host's.
    fn pools(&self, rec: &NetworkRecord) -> Result<(weft_ipam::Pool, Option<weft_ipam::Pool6>)> {
        let mut reserved = vec![rec.gateway];
        reserved.extend(rec.aux_addresses.values().copied());
        let mut pool = weft_ipam::Pool::new(rec.subnet, rec.ip_range, &reserved)?;
        if rec.scope == Scope::Global {
            pool.start_at(self.keys.host().bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619)));
        }
        let pool6 = rec.subnet6.map(|s6| weft_ipam::Pool6::new(s6, &rec.gateway6.into_iter().collect::<Vec<_>>()));
        Ok((pool, pool6))
    }

    /// At start: this host's user networks and the global ones, with their bridges (re)made.
    pub(crate) async fn load_user_networks(&self) -> Result<()> {
        for scope in [Scope::Local, Scope::Global] {
            let (items, _) = self.store.range(&self.keys.networks(scope)).await?;
            for kv in items {
                let Ok(rec) = serde_json::from_slice::<NetworkRecord>(&kv.value) else { continue };
                self.lock().revisions.insert(kv.key, kv.mod_revision);
                if rec.name != DEFAULT_NETWORK {
                    self.ensure_claims(&rec).await?;
                    self.adopt_network(rec, false).await?;
                }
            }
        }
        Ok(())
    }

    /// Makes network `rec`'s bridge here (and its firewall chains, with `firewall`: at start
    /// the reconcile writes the whole firewall), unless it is known already.
    pub(crate) async fn adopt_network(&self, rec: NetworkRecord, firewall: bool) -> Result<()> {
        if self.lock().networks.contains_key(&rec.id) {
            return Ok(());
        }
        let rec = self.local_view(rec).await?;
        // A network whose link cannot be made here now (a macvlan parent gone, ovsdb-server
        // down) stays known, listed and removable; its new endpoints are refused with the reason.
        let (pool, pool6) = self.pools(&rec)?;
        let (r, o) = (rec.clone(), self.host_options());
        let made = match blocking(move || make_network(&r, &o)).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(network = %rec.name, error = %e, "network unavailable on this host");
                Made { host: std::sync::Arc::new(weft_drivers::Unavailable { reason: e.to_string() }), own_mac: None }
            }
        };
        if let Some(fw) = fw_of(&rec).filter(|_| firewall) {
            self.fw.add_network(&fw)?;
            tracing::info!(network = %rec.name, bridge = %rec.bridge, subnet = %rec.subnet, "global network adopted");
        }
        let mut st = self.lock();
        if !st.networks.contains_key(&rec.id) {
            st.ipam.add(&rec.id, pool, pool6);
            st.networks.insert(rec.id.clone(), NetState::new(rec, made));
        }
        drop(st);
        self.sync_peers();
        Ok(())
    }

    /// Another host removed global network `id`: its bridge and firewall here go too.
    pub(crate) async fn forget_global_network(self: &Arc<Self>, id: &str) {
        let Some(rec) = self.lock().networks.get(id).map(|n| n.rec.clone()) else { return };
        if let Err(e) = self.remove_network_objects(&rec, false).await {
            tracing::error!(network = %rec.name, error = %e, "removing a global network's objects");
        }
    }
}

/// The keys a transaction writes.
pub(crate) fn written(txn: &Txn) -> Vec<String> {
    txn.success
        .iter()
        .map(|op| match op {
            Op::Put(k, _) | Op::PutLeased(k, _, _) | Op::Delete(k) => k.clone(),
        })
        .collect()
}

/// Host routes and addresses, to keep a chosen subnet clear of them (not weft's own routes to
/// other hosts' blocks of routed networks: the store's claims keep those apart, and one may
/// outlive its network's removal by a watch delivery).
async fn host_nets() -> Result<Vec<Ipv4Net>> {
    blocking(|| {
        with_host(|nl| {
            let mut v: Vec<Ipv4Net> = nl.routes_v4()?.into_iter().filter(|r| !r.weft).map(|r| r.dst).filter(|d| d.prefix_len() > 0).collect();
            v.extend(nl.addrs()?.into_iter().filter_map(|a| match a.addr {
                IpAddr::V4(ip) if !ip.is_loopback() => Ipv4Net::new(ip, a.prefix_len).ok(),
                _ => None,
            }));
            Ok(v)
        })
    })
    .await
}

impl Engine {
    /// A subnet of the default pools that no network, link or host route uses.
    fn pick_subnet(&self, st: &crate::State, host_nets: &[Ipv4Net]) -> Result<Ipv4Net> {
        let mut in_use = host_nets.to_vec();
        in_use.extend(st.networks.values().map(|n| n.rec.subnet));
        in_use.extend(st.creating.values().map(|c| c.0));
        in_use.extend(st.p2p.values().flat_map(|l| l.ends().map(|e| Ipv4Net::from(e.addr))));
        weft_ipam::pick_subnet(&self.cfg.default_pools, &in_use).ok_or(EngineError::PoolsExhausted)
    }

    /// Docker's `IpamDriver.RequestPool` without a pool: a free subnet, as `network create`
    /// without `--subnet` would pick (it is claimed when the network is made).
    pub(crate) async fn free_subnet(&self) -> Result<Ipv4Net> {
        let host_nets = host_nets().await?;
        let st = self.lock();
        self.pick_subnet(&st, &host_nets)
    }

    /// Docker's `IpamDriver.RequestAddress` for an endpoint: an address of the network whose
    /// subnet is `subnet` (`ip`, or the next free one), promised until the endpoint joins with
    /// it (see `redeem`) or `release_promise` gives it back. Promises live in memory: Docker asks
    /// for the address right before it creates the endpoint.
    pub(crate) fn promise_address(&self, subnet: Ipv4Net, ip: Option<std::net::Ipv4Addr>) -> Result<std::net::Ipv4Addr> {
        let mut st = self.lock();
        let id = st.networks.values().find(|n| n.rec.subnet == subnet).map(|n| n.rec.id.clone()).ok_or_else(|| EngineError::NoSuchNetwork(format!("with subnet {subnet}")))?;
        let (ip, _) = st.ipam.take(&id, ip, None)?;
        st.promised.insert((id, ip));
        Ok(ip)
    }

    /// Docker's `IpamDriver.ReleaseAddress`: a promise not redeemed is given back; an address an
    /// endpoint holds goes with the endpoint, so there is nothing else to do.
    pub(crate) fn release_promise(&self, subnet: Ipv4Net, ip: std::net::Ipv4Addr) {
        let mut st = self.lock();
        let Some(id) = st.networks.values().find(|n| n.rec.subnet == subnet).map(|n| n.rec.id.clone()) else { return };
        if st.promised.remove(&(id.clone(), ip)) {
            st.ipam.give_back(&id, ip, None);
        }
    }
}

impl crate::State {
    /// Turns the promise of `ip` on network `name` (if there is one) back into a free address,
    /// for the endpoint being planned under the same lock to take.
    pub(crate) fn redeem(&mut self, name: &str, ip: std::net::Ipv4Addr) {
        let Some(id) = self.networks.values().find(|n| n.rec.name == name || n.rec.id == name).map(|n| n.rec.id.clone()) else { return };
        if self.promised.remove(&(id.clone(), ip)) {
            self.ipam.give_back(&id, ip, None);
        }
    }
}
