//! Point-to-point links (seed 000): `weft link create A B` joins two sandboxes (running
//! containers, attached namespaces) by a veth pair, one end in each namespace, with a /32
//! address on each and a host route to the other, beside their networks. The addresses come
//! from the link pool (`weftd --link-pool`, 10.1.1.0/24 as in the seed) unless given, and never
//! from a network's subnet. A link is one store record; it goes with either end (the pair dies
//! with a namespace: the record and addresses follow), and `weft link rm` undoes it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use weft_kernel::{netns, VethSpec};
use weft_model::{new_id, P2pEnd, P2pRecord, P2pSpec, Scope, Status};
use weft_store::{Op, Txn};

use crate::sandbox::owner_key;
use crate::undo::Undo;
use crate::{blocking, find_container, now, Engine, EngineError, Result, State};

/// A sandbox a link can join: who owns it, its namespace, and the interface names in use there.
struct End {
    owner: String,
    name: String,
    netns: String,
    ifnames: Vec<String>,
}

fn end_of(eng: &Engine, st: &State, name: &str) -> Result<End> {
    let in_use = |owner: &str, endpoints: &[weft_model::EndpointRecord]| -> Vec<String> {
        let linked = st.p2p.values().flat_map(|l| l.ends()).filter(|e| e.owner == owner).map(|e| e.ifname.clone());
        endpoints.iter().map(|e| e.ifname.clone()).chain(linked).collect()
    };
    if let Some(s) = st.sandboxes.get(name) {
        let owner = owner_key(name);
        return Ok(End { ifnames: in_use(&owner, &s.sandbox.endpoints), owner, name: name.to_string(), netns: s.netns().to_string() });
    }
    let c = find_container(st, name)?;
    if c.state.status != Status::Running {
        return Err(EngineError::Refused(format!("container {name} is not running")));
    }
    let own = eng.netns_path(&c.id).display().to_string();
    match c.sandbox.netns.as_deref() {
        Some(ns) if ns == own => Ok(End { ifnames: in_use(&c.id, &c.sandbox.endpoints), owner: c.id.clone(), name: c.name.clone(), netns: own }),
        Some(_) => Err(EngineError::Refused(format!("container {name} uses another container's network namespace (--net container:…): link that one"))),
        None => Err(EngineError::Refused(format!("container {name} has no network namespace of its own (--net host)"))),
    }
}

/// The interface name for an end: the one asked for (free there), or the first free `p2pN`.
fn ifname_for(end: &End, asked: Option<&String>) -> Result<String> {
    match asked {
        Some(i) if end.ifnames.contains(i) => Err(EngineError::Refused(format!("{} already has an interface {i}", end.name))),
        Some(i) => Ok(i.clone()),
        None => Ok((0..).map(|n| format!("p2p{n}")).find(|i| !end.ifnames.contains(i)).expect("a free name")),
    }
}

impl State {
    /// Takes `asked` (checked against networks and other links) or a free pool address.
    fn p2p_address(&mut self, pool: ipnet::Ipv4Net, asked: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        let Some(ip) = asked else { return Ok(self.ipam.take_link(pool, None)?) };
        if let Some(n) = self.networks.values().find(|n| n.rec.subnet.contains(&ip)) {
            return Err(EngineError::Refused(format!("--addr {ip} is in network {}'s subnet {}: its IPAM hands it out", n.rec.name, n.rec.subnet)));
        }
        if self.p2p.values().flat_map(|l| l.ends()).any(|e| e.addr == ip) {
            return Err(EngineError::Refused(format!("--addr {ip} is already an end of another link")));
        }
        Ok(self.ipam.take_link(pool, Some(ip))?)
    }

    fn release_p2p_address(&mut self, pool: ipnet::Ipv4Net, ip: Ipv4Addr) {
        self.ipam.give_back_link(pool, ip);
    }
}

impl Engine {
    #[tracing::instrument(name = "link create", skip_all, fields(a = %spec.a, b = %spec.b))]
    pub(crate) async fn create_p2p(self: &Arc<Self>, spec: P2pSpec) -> Result<P2pRecord> {
        let (addr_a, addr_b) = spec.validate()?;
        let pool = self.cfg.link_pool;
        // Both sandboxes stay as they are meanwhile (in one order, so two links never deadlock).
        let (oa, ob) = {
            let st = self.lock();
            (end_of(self, &st, &spec.a)?.owner, end_of(self, &st, &spec.b)?.owner)
        };
        if oa == ob {
            return Err(EngineError::Refused(format!("{} and {} are one sandbox", spec.a, spec.b)));
        }
        let (first, second) = if oa < ob { (&oa, &ob) } else { (&ob, &oa) };
        let _l1 = self.lock_container(first).await;
        let _l2 = self.lock_container(second).await;
        let mut undo = Undo::new();
        let rec = {
            let mut st = self.lock();
            let (a, b) = (end_of(self, &st, &spec.a)?, end_of(self, &st, &spec.b)?);
            let (if_a, if_b) = (ifname_for(&a, spec.ifname_a.as_ref())?, ifname_for(&b, spec.ifname_b.as_ref())?);
            let ip_a = st.p2p_address(pool, addr_a)?;
            let (eng, ip) = (self.clone(), ip_a);
            undo.push("release A's address", move || eng.lock().release_p2p_address(pool, ip));
            let ip_b = st.p2p_address(pool, addr_b)?;
            if ip_b == ip_a {
                return Err(EngineError::Refused(format!("--addr {ip_a} is A's already")));
            }
            let (eng, ip) = (self.clone(), ip_b);
            undo.push("release B's address", move || eng.lock().release_p2p_address(pool, ip));
            let rec = P2pRecord {
                id: new_id(),
                a: P2pEnd { owner: a.owner, name: a.name, ifname: if_a, addr: ip_a },
                b: P2pEnd { owner: b.owner, name: b.name, ifname: if_b, addr: ip_b },
                created: now(),
            };
            (rec, a.netns, b.netns)
        };
        let (rec, ns_a, ns_b) = rec;
        let r = rec.clone();
        let (na, nb) = (ns_a.clone(), ns_b.clone());
        blocking(move || make_pair(&r, &na, &nb)).await?;
        let (na, ifa) = (ns_a.clone(), rec.a.ifname.clone());
        undo.push("delete the pair", move || drop(delete_end(&na, &ifa)));
        if !self.commit(self.p2p_txn(&rec)?).await?.succeeded {
            for e in rec.ends() {
                if let Some(held) = self.subnet_held(Scope::Local, ipnet::IpNet::from(std::net::IpAddr::V4(e.addr))).await? {
                    return Err(EngineError::Overlap(format!("{}'s address {} is held by {held}", e.name, e.addr)));
                }
            }
            return Err(EngineError::Stale(format!("link {}:{}: what it claims changed in the store meanwhile: try again", rec.a.name, rec.b.name)));
        }
        undo.commit();
        tracing::info!(id = %weft_model::short_id(&rec.id), a = %rec.a.addr, b = %rec.b.addr, "link created");
        Ok(rec)
    }

    pub(crate) fn p2p_links(&self) -> Vec<P2pRecord> {
        let mut v: Vec<P2pRecord> = self.lock().p2p.values().cloned().collect();
        v.sort_by(|x, y| (x.created, &x.id).cmp(&(y.created, &y.id)));
        v
    }

    /// The link `key` names: its id, an unambiguous id prefix, or `A:B` by the ends' names.
    pub(crate) fn p2p_link(&self, key: &str) -> Result<P2pRecord> {
        let st = self.lock();
        let by_ends = key.split_once(':').and_then(|(a, b)| st.p2p.values().find(|l| (l.a.name == a && l.b.name == b) || (l.a.name == b && l.b.name == a)));
        let mut by_id = st.p2p.values().filter(|l| !key.is_empty() && l.id.starts_with(key));
        match (by_ends, by_id.next(), by_id.next()) {
            (Some(l), _, _) | (None, Some(l), None) => Ok(l.clone()),
            _ => Err(EngineError::NoSuchLink(key.to_string())),
        }
    }

    /// `weft link rm`: the pair deleted (through A's namespace), then the record and addresses.
    #[tracing::instrument(name = "link rm", skip(self))]
    pub(crate) async fn remove_p2p(self: &Arc<Self>, key: &str) -> Result<()> {
        let rec = self.p2p_link(key)?;
        // Both ends retired now (their names free at once), the pair deleted in the background.
        for e in rec.ends() {
            if let Some(ns) = self.sandbox_netns(&e.owner) {
                let ifname = e.ifname.clone();
                blocking(move || delete_end(&ns, &ifname)).await?;
            }
        }
        self.forget_p2p(vec![rec]).await
    }

    /// A sandbox is going (a container exited, an attached namespace detached; `netns`: its
    /// namespace, which may live on): its links go too. Both ends are retired now (a namespace's
    /// destruction is asynchronous, and an attached one lives on) and the pairs deleted.
    pub(crate) async fn drop_p2p_of(self: &Arc<Self>, owner: &str, netns: Option<String>) {
        let gone: Vec<P2pRecord> = self.lock().p2p.values().filter(|l| l.ends().iter().any(|e| e.owner == owner)).cloned().collect();
        if gone.is_empty() {
            return;
        }
        for e in gone.iter().flat_map(|l| l.ends()) {
            let ns = if e.owner == owner { netns.clone() } else { self.sandbox_netns(&e.owner) };
            if let Some(ns) = ns {
                let ifname = e.ifname.clone();
                let _ = blocking(move || delete_end(&ns, &ifname)).await;
            }
        }
        if let Err(e) = self.forget_p2p(gone).await {
            tracing::error!(error = %e, "removing link records failed; the next start will");
        }
    }

    /// Drops links' records and gives their addresses back (once: whoever takes them out of the
    /// state does it).
    async fn forget_p2p(&self, links: Vec<P2pRecord>) -> Result<()> {
        let taken: Vec<P2pRecord> = {
            let mut st = self.lock();
            let taken: Vec<P2pRecord> = links.into_iter().filter_map(|l| st.p2p.remove(&l.id)).collect();
            for e in taken.iter().flat_map(|l| l.ends()) {
                st.release_p2p_address(self.cfg.link_pool, e.addr);
            }
            taken
        };
        if taken.is_empty() {
            return Ok(());
        }
        self.commit(self.p2p_deletion(&taken)?).await?;
        Ok(())
    }

    /// The transaction that commits link `rec` with its ends' addresses, each claimed as a /32
    /// of this host's (see `keys`): no network or other link holds them.
    fn p2p_txn(&self, rec: &P2pRecord) -> Result<Txn> {
        let mut txn = Txn::ops(vec![Op::Put(self.keys.p2p_link(&rec.id), serde_json::to_vec(rec)?)]);
        for e in rec.ends() {
            self.keys.take_subnet(&mut txn, Scope::Local, ipnet::IpNet::from(std::net::IpAddr::V4(e.addr)), &format!("link/{}", rec.id));
        }
        Ok(txn)
    }

    /// The deletion of `links`' records and claims.
    fn p2p_deletion(&self, links: &[P2pRecord]) -> Result<Txn> {
        let mut ops = Vec::new();
        for l in links {
            ops.extend(crate::networks::written(&self.p2p_txn(l)?).into_iter().map(Op::Delete));
        }
        Ok(Txn::ops(ops))
    }

    /// The namespace of a live sandbox by its owner key.
    fn sandbox_netns(&self, owner: &str) -> Option<String> {
        let st = self.lock();
        match owner.strip_prefix("sandbox/") {
            Some(key) => st.sandboxes.get(key).map(|s| s.netns().to_string()),
            None => st.containers.get(owner).filter(|c| c.state.status == Status::Running).and_then(|c| c.sandbox.netns.clone()),
        }
    }

    /// At start, after the sandboxes: the links whose ends both live (their addresses held),
    /// the others' records dropped and their surviving ends deleted.
    pub(crate) async fn load_p2p(self: &Arc<Self>) -> Result<()> {
        let (items, _) = self.store.range(&self.keys.p2p()).await?;
        let mut dead = Vec::new();
        for kv in items {
            let Ok(rec) = serde_json::from_slice::<P2pRecord>(&kv.value) else { continue };
            let alive = rec.ends().iter().all(|e| self.sandbox_netns(&e.owner).is_some());
            self.lock().revisions.insert(kv.key, kv.mod_revision);
            if !alive {
                dead.push(rec);
                continue;
            }
            {
                let mut st = self.lock();
                for e in rec.ends() {
                    let _ = st.p2p_address(self.cfg.link_pool, Some(e.addr)).map_err(|err| tracing::error!(error = %err, "address of a live link"));
                }
                st.p2p.insert(rec.id.clone(), rec.clone());
            }
            self.ensure_taken(&format!("link {}", rec.id), self.p2p_txn(&rec)?).await?;
        }
        for l in &dead {
            for e in l.ends() {
                if let Some(ns) = self.sandbox_netns(&e.owner) {
                    let ifname = e.ifname.clone();
                    let _ = blocking(move || delete_end(&ns, &ifname)).await;
                }
            }
        }
        if !dead.is_empty() {
            tracing::info!(links = dead.len(), "links with an end gone while the daemon was away: removed");
            self.commit(self.p2p_deletion(&dead)?).await?;
        }
        Ok(())
    }
}

/// `ip link add IF_A netns A type veth peer name IF_B netns B`, then each end's /32 address,
/// `up` and host route to the other, from inside its namespace (chosen indexes: no lookups).
/// Nothing stays on failure. Blocking.
fn make_pair(rec: &P2pRecord, ns_a: &str, ns_b: &str) -> Result<()> {
    let index = crate::network::endpoint_indexes();
    let fd_b = std::fs::File::open(ns_b).map_err(|source| EngineError::Io { op: "open netns", path: ns_b.to_string(), source })?;
    let mut in_a = netns::open_in(std::path::Path::new(ns_a), &[])?;
    let mut in_b = netns::open_in(std::path::Path::new(ns_b), &[])?;
    use std::os::fd::AsRawFd;
    in_a.create_veth(&VethSpec {
        host_name: &rec.a.ifname,
        master: None,
        mtu: 1500,
        peer_name: &rec.b.ifname,
        peer_mac: None,
        peer_netns: Some(fd_b.as_raw_fd()),
        up: false,
        port_setup: false,
        proxy_arp: false,
        index,
        peer_index: index + 1,
        pin: None,
    })?;
    let configured = in_a
        .configure_p2p(&rec.a.ifname, index, rec.a.addr, rec.b.addr)
        .and_then(|()| in_b.configure_p2p(&rec.b.ifname, index + 1, rec.b.addr, rec.a.addr));
    if let Err(e) = configured {
        let _ = in_a.delete_link(&rec.a.ifname);
        return Err(e.into());
    }
    Ok(())
}

/// `ip link del IF` in namespace `ns` (the pair goes), after it is down and renamed (in the
/// background: see `retire_inside`); gone already is fine, a failure is logged (the pair still
/// goes with either namespace). Blocking.
fn delete_end(ns: &str, ifname: &str) -> Result<()> {
    let retired = format!("gone{}", &weft_model::new_id()[..8]);
    match netns::open_in(std::path::Path::new(ns), &[]).and_then(|mut nl| nl.retire(ifname, &retired).map(|()| nl)) {
        Ok(nl) => delete_later(nl, vec![retired]),
        Err(e) => tracing::warn!(error = %e, netns = ns, link = ifname, "link end not deleted"),
    }
    Ok(())
}

/// Deletes links `names` through `nl` (a namespace's socket) on a thread of their own.
fn delete_later(mut nl: weft_kernel::Netlink, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for n in names {
            if let Err(e) = nl.delete_link(&n) {
                tracing::debug!(link = %n, error = %e, "retired link not deleted (its namespace may be gone)");
            }
        }
    });
}
