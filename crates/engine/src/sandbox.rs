//! Network namespaces weft did not create (an `ip netns` one, a process started with
//! `unshare -n`, another runtime's container): attached to a network with the same endpoint path
//! as a container's `eth0` (IPAM, a veth with its peer born in the namespace, addresses, routes,
//! one store commit), named in the embedded DNS, and detached again by `network disconnect`, or
//! on their own when the process (`--pid`) exits. The attach benchmark measures this path.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_model::{ConnectSpec, ConnectTarget, EndpointRecord, SandboxRecord};
use weft_store::{Op, Txn};

use crate::undo::Undo;
use crate::{blocking, Engine, EngineError, Result};

/// What to attach, resolved.
pub struct SandboxAttach<'a> {
    pub key: &'a str,
    pub netns: &'a Path,
    pub network: &'a str,
    pub ifname: &'a str,
    pub ip: Option<std::net::Ipv4Addr>,
    pub aliases: Vec<String>,
    pub pid: Option<(u32, u64)>,
    pub netns_id: Option<(u64, u64)>,
    pub mac: Option<String>,
    pub ports: Vec<weft_model::PortSpec>,
    pub runtime: Option<weft_model::RuntimeRef>,
    /// See [`weft_model::AttachSpec::host_end_only`].
    pub host_end_only: bool,
}

/// The key of a sandbox among containers' ids (in the DNS index, among published ports).
pub(crate) fn owner_key(key: &str) -> String {
    format!("sandbox/{key}")
}

impl Engine {
    /// Attaches the namespace at `netns` to `network` as interface `ifname`, under `key`.
    pub async fn attach_sandbox(self: &Arc<Self>, key: &str, netns: &Path, network: &str, ifname: &str) -> Result<EndpointRecord> {
        self.attach_namespace(SandboxAttach { key, netns, network, ifname, ip: None, aliases: Vec::new(), pid: None, netns_id: None, mac: None, ports: Vec::new(), runtime: None, host_end_only: false }).await
    }

    /// `weft network connect NET --netns PATH | --pid PID`.
    pub(crate) async fn connect_foreign(self: &Arc<Self>, network: &str, spec: &ConnectSpec) -> Result<()> {
        let (path, pid) = match spec.target()? {
            ConnectTarget::Netns(p) => (PathBuf::from(p), None),
            ConnectTarget::Pid(pid) => {
                let start = weft_runtime::pid_start_time(pid).ok_or_else(|| EngineError::Namespace(format!("no process {pid}")))?;
                (PathBuf::from(format!("/proc/{pid}/ns/net")), Some((pid, start)))
            }
            ConnectTarget::Container(_) => return Err(EngineError::Internal("a container connects as a container".into())),
        };
        let key = match (&spec.name, pid) {
            (Some(n), _) => n.clone(),
            (None, Some((pid, _))) => format!("pid{pid}"),
            (None, None) => path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
        };
        let attach = weft_model::AttachSpec {
            network: network.to_string(),
            runtime: None,
            name: Some(key),
            netns: path.display().to_string(),
            pid: pid.map(|(p, _)| p),
            ifname: spec.ifname.clone().unwrap_or_default(),
            ip_address: spec.ip_address,
            mac_address: spec.mac_address.clone(),
            aliases: spec.aliases.clone(),
            publish: spec.publish.clone(),
            host_end_only: false,
        };
        self.attach_netns(&attach).await.map(|_| ())
    }

    /// Refuses a second attachment of one namespace to `network`, and a sandbox name a
    /// container holds.
    pub(crate) fn check_unattached(&self, netns_id: (u64, u64), path: &Path, network: &str, key: &str) -> Result<()> {
        let net = self.network(network)?;
        let st = self.lock();
        if let Some(s) = st.sandboxes.values().find(|s| s.netns_id == Some(netns_id) && s.sandbox.endpoints.iter().any(|e| e.network_id == net.id)) {
            return Err(EngineError::Namespace(format!("namespace {} is already attached to network {} (as {})", path.display(), net.name, s.key)));
        }
        if st.names.contains_key(key) {
            return Err(EngineError::NameInUse(key.to_string()));
        }
        Ok(())
    }

    /// The first `ethN` free in the namespace at `path`.
    pub(crate) async fn free_ifname(&self, path: &Path) -> Result<String> {
        let p = path.to_path_buf();
        let names: Vec<String> = blocking(move || Ok(weft_kernel::netns::open_in(&p, &[])?.links()?.into_iter().map(|l| l.name).collect())).await?;
        // An interface of an attachment just detached, still queued for deletion, does not
        // hold its name: it is retired when the new one needs it.
        let ns = path.display().to_string();
        let st = self.lock();
        let taken = |n: &String| names.contains(n) && !st.detached.contains_key(&(ns.clone(), n.clone()));
        Ok((0..).map(|i| format!("eth{i}")).find(|n| !taken(n)).unwrap_or_default())
    }

    /// Gives the namespace an endpoint on `a.network`: a new sandbox, or one more endpoint of the
    /// sandbox of that name (the same namespace), as `network connect` adds `eth1` to a container.
    pub(crate) async fn attach_namespace(self: &Arc<Self>, a: SandboxAttach<'_>) -> Result<EndpointRecord> {
        weft_model::validate_ifname(a.ifname)?;
        let t0 = std::time::Instant::now();
        let owner = owner_key(a.key);
        // One change at a time to a sandbox's record (its endpoints).
        let _serial = self.lock_container(&owner).await;
        self.settle_bridges(&[a.network]).await;
        let t_settled = t0.elapsed();
        // What is made is unmade, in reverse, unless the record commits.
        let mut undo = Undo::new();
        let reserve = |u: &mut Undo| {
            let mut st = self.lock();
            if let Some(s) = st.sandboxes.get(a.key) {
                if s.netns_id != a.netns_id || s.pid != a.pid.map(|(p, _)| p) || s.runtime != a.runtime {
                    return Err(EngineError::Namespace(format!("sandbox {} is another namespace: give another --name", a.key)));
                }
                if !a.ports.is_empty() {
                    return Err(EngineError::Refused(format!("sandbox {} is attached already: ports are published at its first attachment", a.key)));
                }
            }
            if let (true, Some(ip)) = (a.host_end_only, a.ip) {
                st.redeem(a.network, ip);
            }
            let mut plan = st.plan_endpoint(&owner, a.network, a.ifname, a.ip, None)?;
            plan.host_end_only = a.host_end_only;
            let (eng, e) = (self.clone(), plan.endpoint.clone());
            u.push("release the address", move || eng.lock().release_addresses(&e));
            plan.publishes(a.ports.len())?;
            plan.endpoint.aliases = a.aliases.clone();
            if let Some(mac) = &a.mac {
                st.check_mac(&plan.endpoint.network_id, a.network, mac)?;
                plan.endpoint.mac = mac.clone();
            }
            let pending = crate::Pending::new(self, &mut st, vec![plan.endpoint.network_id.clone()]);
            Ok((plan, pending))
        };
        let ((plan, _pending), claims) = self.reserve_claimed(&owner, &mut undo, reserve, |r| vec![r.0.endpoint.clone()]).await?;
        let t_reserved = t0.elapsed();
        let existing = self.lock().sandboxes.get(a.key).cloned();
        let first = existing.is_none();
        let (endpoint, host_binding) = (plan.endpoint.clone(), plan.host_binding);
        // Published ports, as a container's eth0 has them (on the network's host binding): their
        // rules may exist before the interface does.
        let runtime_holds = a.runtime.as_ref().is_some_and(|r| r.kind == CNI);
        let ports = self.publish(&owner, endpoint.ip, &a.ports, host_binding.map(std::net::IpAddr::V4).unwrap_or(self.cfg.ip), runtime_holds)?;
        {
            let (eng, o, ip, p) = (self.clone(), owner.clone(), endpoint.ip, ports.clone());
            undo.push("unpublish ports", move || {
                let _ = eng.withdraw(&o, ip, &p);
            });
        }
        let rec = match existing {
            Some(mut rec) => {
                rec.sandbox.endpoints.push(endpoint.clone());
                rec
            }
            None => SandboxRecord {
                key: a.key.to_string(),
                sandbox: weft_model::Sandbox { netns: Some(a.netns.display().to_string()), endpoints: vec![endpoint.clone()], ports },
                pid: a.pid.map(|(p, _)| p),
                pid_start: a.pid.map(|(_, s)| s),
                netns_id: a.netns_id,
                runtime: a.runtime.clone(),
            },
        };
        // The record's commit (its fsync) runs while the kernel work does: it is sent now and
        // awaited after. A crash in between leaves a record without its veth, which the start-up
        // reconcile drops (see `reconcile`); a rollback deletes it (ordered after the put).
        let key = self.keys.sandbox(a.key);
        let committing = self.commit(claims.txn(vec![Op::Put(key.clone(), serde_json::to_vec(&rec)?)]));
        if first {
            let eng = self.clone();
            undo.push("delete the record", move || eng.commit_undo(vec![Op::Delete(key)]));
        } else if let Some(before) = self.lock().sandboxes.get(a.key).cloned() {
            let (eng, value) = (self.clone(), serde_json::to_vec(&before)?);
            undo.push("restore the record", move || eng.commit_undo(vec![Op::Put(key, value)]));
        }
        // The first endpoint carries the default route, as a container's eth0.
        let made_in = if a.host_end_only { Path::new("/proc/self/ns/net") } else { a.netns };
        self.join(&mut undo, &plan, made_in, first).await?;
        let t_kernel = t0.elapsed();
        if !committing.await?.succeeded {
            return Err(self.claims_lost(&claims).await);
        }
        let t_committed = t0.elapsed();
        undo.commit();
        self.dns_update_sandbox(a.key);
        tracing::debug!(
            settled_us = t_settled.as_micros() as u64,
            reserved_us = t_reserved.as_micros() as u64,
            kernel_us = t_kernel.as_micros() as u64,
            committed_us = t_committed.as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            "attach phases (cumulative)"
        );
        Ok(endpoint)
    }

    /// Detaches sandbox `key` when its process exits.
    pub(crate) fn watch_sandbox(self: &Arc<Self>, key: String, pid: u32) {
        let eng = self.clone();
        tokio::spawn(async move {
            if let Err(e) = weft_runtime::wait_exit(pid).await {
                tracing::error!(sandbox = %key, error = %e, "cannot watch its process");
                return;
            }
            // Only the attachment of that process (not one made again under the same name).
            let still = eng.lock().sandboxes.get(&key).is_some_and(|s| s.pid == Some(pid));
            if still {
                tracing::info!(sandbox = %key, pid, "process exited: detaching its namespace");
                if let Err(e) = eng.detach_sandbox(&key).await {
                    tracing::error!(sandbox = %key, error = %e, "detaching failed");
                }
            }
        });
    }

    /// Watches the daemon's namespace for deleted links: a sandbox whose host veth went (its
    /// namespace was destroyed, which takes its end of the pair and so ours) is detached. Events
    /// lost to an overflow are made up for by looking at which host veths still exist.
    pub(crate) fn watch_sandbox_links(self: &Arc<Self>) -> Result<()> {
        let eng = Arc::downgrade(self);
        let rt = tokio::runtime::Handle::current();
        let mut monitor = weft_kernel::LinkMonitor::open()?;
        let spawned = std::thread::Builder::new().name("link-monitor".into()).spawn(move || loop {
            let deleted = monitor.deleted();
            let Some(eng) = eng.upgrade() else { return };
            // Most deletions are the reaper's, of links no sandbox holds any more.
            let gone: Vec<String> = match deleted {
                Ok(names) => {
                    // A deleted port's guard goes with it.
                    if let Err(e) = eng.fw.unguard(&names) {
                        tracing::warn!(error = %e, "forgetting the guards of deleted ports");
                    }
                    let st = eng.lock();
                    let mut keys: Vec<String> = names.iter().filter_map(|n| st.sandboxes.by_host_end(n)).map(str::to_string).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    keys
                }
                Err(e) => {
                    tracing::warn!(error = %e, "link events lost: looking at which sandbox links and guarded ports exist");
                    let gone: Vec<String> = eng.fw.guarded_ports().into_iter().filter(|p| matches!(crate::network::with_host(|nl| nl.link(p)), Ok(None))).collect();
                    if let Err(e) = eng.fw.unguard(&gone) {
                        tracing::warn!(error = %e, "forgetting the guards of deleted ports");
                    }
                    let ours: Vec<(String, String)> = eng.lock().sandboxes.values().flat_map(|s| s.sandbox.endpoints.iter().filter_map(|e| Some((s.key.clone(), e.host_end()?.to_string())))).collect();
                    ours.into_iter().filter(|(_, i)| matches!(crate::network::with_host(|nl| nl.link(i)), Ok(None))).map(|(k, _)| k).collect()
                }
            };
            for key in gone {
                let eng = eng.clone();
                rt.spawn(async move {
                    tracing::info!(sandbox = %key, "its namespace is gone: detaching");
                    match eng.detach_sandbox(&key).await {
                        Ok(()) => eng.metrics.repaired(crate::metrics::repair::NAMESPACE_GONE, 1),
                        Err(e) => tracing::warn!(sandbox = %key, error = %e, "detaching failed"),
                    }
                });
            }
        });
        spawned.map(|_| ()).map_err(|source| EngineError::Io { op: "start", path: "link monitor".into(), source })
    }

    /// Puts sandbox `key`'s name and aliases into the embedded DNS (or takes them out). A
    /// runtime's container on a user network also resolves through it (see `serve_dns_in`).
    pub(crate) fn dns_update_sandbox(&self, key: &str) {
        let entry = {
            let st = self.lock();
            st.sandboxes.get(key).map(|s| {
                let client = resolves_through_weft(s).then(|| weft_dns::ClientView {
                    networks: s.sandbox.endpoints.iter().map(|e| e.network_id.clone()).collect(),
                    internal_only: s.sandbox.endpoints.iter().all(|e| st.networks.get(&e.network_id).is_some_and(|n| n.rec.internal)),
                    upstream: weft_dns::upstreams(&[], &self.daemon_dns(), &self.host_resolv),
                });
                (crate::dns_names(&s.key, &[], &s.sandbox), client)
            })
        };
        let id = owner_key(key);
        self.resolver.update(|idx| match entry {
            Some((endpoints, client)) => idx.set_container(&id, endpoints, client),
            None => idx.remove_container(&id),
        });
    }

    /// Serves the embedded DNS inside sandbox `key`'s namespace if it resolves through weft;
    /// the nameservers it should use.
    pub(crate) async fn serve_dns_in(self: &Arc<Self>, key: &str) -> Result<Vec<std::net::IpAddr>> {
        let Some(s) = self.lock().sandboxes.get(key).cloned().filter(resolves_through_weft) else { return Ok(Vec::new()) };
        self.start_dns(&owner_key(key), PathBuf::from(s.netns())).await?;
        Ok(vec![weft_dns::RESOLVER.into()])
    }

    /// The attached namespaces, by name.
    pub(crate) fn sandboxes(&self) -> Vec<SandboxRecord> {
        let mut v: Vec<_> = self.lock().sandboxes.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Removes sandbox `key`'s endpoint on network `network_id`; the sandbox goes with its last
    /// endpoint. Ports published on the first endpoint's address go with that endpoint.
    pub(crate) async fn detach_sandbox_network(self: &Arc<Self>, key: &str, network_id: &str) -> Result<()> {
        let serial = self.lock_container(&owner_key(key)).await;
        let rec = self.lock().sandboxes.get(key).cloned().ok_or_else(|| EngineError::NoSuchSandbox(key.to_string()))?;
        let Some(pos) = rec.sandbox.endpoints.iter().position(|e| e.network_id == network_id) else {
            return Err(EngineError::Refused(format!("{key} is not connected to network {network_id}")));
        };
        if rec.sandbox.endpoints.len() == 1 {
            drop(serial);
            return self.detach_sandbox(key).await;
        }
        let mut updated = rec;
        let (endpoint, ports) = self.take_endpoint(&mut updated.sandbox, pos).await?;
        let unclaim = self.unclaim(std::slice::from_ref(&endpoint));
        self.commit(Txn::ops([vec![Op::Put(self.keys.sandbox(key), serde_json::to_vec(&updated)?)], unclaim].concat())).await?;
        let netns = updated.netns().to_string();
        self.dns_update_sandbox(key);
        self.release_taken(&owner_key(key), &endpoint, &ports, Some(netns)).await
    }

    /// Removes the endpoints of `key` and releases their addresses.
    pub async fn detach_sandbox(self: &Arc<Self>, key: &str) -> Result<()> {
        let _serial = self.lock_container(&owner_key(key)).await;
        let rec = self
            .lock()
            .sandboxes
            .get(key)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchSandbox(key.to_string()))?;
        let unclaim = self.unclaim(&rec.sandbox.endpoints);
        self.commit(Txn::ops([vec![Op::Delete(self.keys.sandbox(key))], unclaim].concat())).await?;
        self.dns_update_sandbox(key);
        self.stop_dns(&owner_key(key));
        let mut unpublished = Ok(());
        if let Some(e) = rec.sandbox.endpoints.first() {
            unpublished = self.unpublish(&owner_key(key), e.ip, &rec.sandbox.ports).await;
        }
        // A namespace that lives on keeps the peers of the host ends until the reaper deletes
        // them; a new attachment that needs one's name retires it (see `attach_namespace`).
        for e in &rec.sandbox.endpoints {
            let unplugged = self.unplug(e).await;
            if e.host_end().is_some() {
                self.lock().detached.insert((rec.netns().to_string(), e.ifname.clone()), e.clone());
            }
            self.release_endpoint(e, unplugged, Some(rec.netns().to_string()));
        }
        self.drop_p2p_of(&owner_key(key), Some(rec.netns().to_string())).await;
        unpublished
    }
}

/// The runtime kind of CNI attachments: the runtime holds their host ports.
pub(crate) const CNI: &str = "cni";

/// The runtime kind of Docker's endpoints (weft as Docker's network driver): dockerd moves their
/// interfaces into namespaces weftd may not see, and serves their DNS itself.
pub(crate) const DOCKER: &str = "docker";

pub(crate) fn runtime_holds_ports(s: &SandboxRecord) -> bool {
    s.runtime.as_ref().is_some_and(|r| r.kind == CNI)
}

/// A runtime's container on a user network resolves through the embedded DNS, as a container
/// of weft's does; a namespace attached by hand keeps its own resolver.
fn resolves_through_weft(s: &SandboxRecord) -> bool {
    s.runtime.as_ref().is_some_and(|r| r.kind != DOCKER) && crate::dns_client(&s.sandbox.endpoints.iter().map(|e| e.network_name.clone()).collect::<Vec<_>>())
}

/// The identity (device, inode) of the network namespace at `path`, which must not be weftd's
/// own.
pub(crate) fn namespace_id(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| EngineError::Namespace(format!("no network namespace at {}: {e}", path.display())))?;
    let own = std::fs::metadata("/proc/self/ns/net").map_err(|source| EngineError::Io { op: "stat", path: "/proc/self/ns/net".into(), source })?;
    if (meta.dev(), meta.ino()) == (own.dev(), own.ino()) {
        return Err(EngineError::Namespace(format!("{} is weftd's own network namespace (the host's): use --net host", path.display())));
    }
    Ok((meta.dev(), meta.ino()))
}

impl Engine {
    /// Publishes `specs` on sandbox `key`'s first endpoint once it is attached (Docker's
    /// `ProgramExternalConnectivity`, which comes after `Join`). A sandbox publishes once: a
    /// repeated call changes nothing.
    pub(crate) async fn publish_sandbox(self: &Arc<Self>, key: &str, specs: &[weft_model::PortSpec]) -> Result<()> {
        let owner = owner_key(key);
        let _serial = self.lock_container(&owner).await;
        let rec = self.lock().sandboxes.get(key).cloned().ok_or_else(|| EngineError::NoSuchSandbox(key.to_string()))?;
        let Some(e) = rec.endpoint().cloned() else { return Ok(()) };
        if specs.is_empty() || !rec.sandbox.ports.is_empty() {
            return Ok(());
        }
        let binding = self.network(&e.network_id)?.host_binding_ipv4;
        let ports = self.publish(&owner, e.ip, specs, binding.map(std::net::IpAddr::V4).unwrap_or(self.cfg.ip), false)?;
        let mut updated = rec;
        updated.sandbox.ports = ports.clone();
        let committed = match serde_json::to_vec(&updated) {
            Ok(v) => self.commit(Txn::ops(vec![Op::Put(self.keys.sandbox(key), v)])).await,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = committed {
            let _ = self.withdraw(&owner, e.ip, &ports);
            return Err(err);
        }
        Ok(())
    }
}
