//! Reconcile at start: the store and the kernel are compared and repaired both ways.
//!
//! - A container recorded as running whose pid 1 is alive (same pid *and* start time) is adopted:
//!   its address is reserved again and its exit is watched. One whose pid 1 is gone is processed as
//!   exited (endpoint, namespace and address released).
//! - Kernel objects no live record owns are removed: `vethXXXXXXX` links on weft's bridges, bind
//!   mounts under `<exec-root>/netns`, container directories, and cgroups under the
//!   `--cgroup-parent` (their processes killed first). A `kill -9` of the daemon at any
//!   point leaves only such objects (a pid 1 that never got the go-ahead exits by itself when the
//!   daemon's end of its pipe closes; one recorded as running without its `started` mark is killed
//!   at once), so nothing leaks and no address is handed out twice.
//! - The firewall table is rewritten whole from the networks.
//! - An empty store is not taken for a fresh start while the exec-root and data-root hold an
//!   earlier run's containers (a deleted or emptied store file would otherwise forget them and
//!   leave their processes unmanaged): the start is refused; with `--adopt-state` the records of
//!   what still runs are rebuilt from their copies (`mirror`), and with it or `--reset-state` the
//!   processes of the rest are stopped and the sweep removes what they leave.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use weft_model::{ContainerRecord, SandboxRecord, Status};
use weft_store::{Op, Txn};

use crate::network::with_host;
use crate::config::EmptyStore;
use crate::metrics::repair;
use crate::{blocking, Engine, EngineError, Result};

/// The containers an earlier run left in the exec-root and data-root (their namespace files and
/// directories), by id.
fn earlier_containers(exec_root: &Path, data_root: &Path) -> BTreeSet<String> {
    [exec_root.join("netns"), exec_root.join("containers"), data_root.join("containers")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

/// The processes whose network namespace is the one bound at `netns` (a container's and those
/// that joined it); none if nothing is bound there.
fn processes_in(netns: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(netns) else { return Vec::new() };
    let want = (ns.dev(), ns.ino());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| (m.dev(), m.ino()) == want))
        .collect()
}

impl Engine {
    /// Refuses to take an empty store for a fresh start beside an earlier run's containers. With
    /// `--adopt-state`, rebuilds the records of the networks and of the containers still running
    /// from their copies (`mirror`); with it or `--reset-state`, stops the processes of the
    /// containers it does not adopt (the sweep then removes what they leave).
    pub(crate) async fn check_empty_store(&self) -> Result<()> {
        let (containers, _) = self.store.range(&self.keys.containers()).await?;
        let (networks, _) = self.store.range(&self.keys.networks(weft_model::Scope::Local)).await?;
        if !containers.is_empty() || !networks.is_empty() {
            return Ok(());
        }
        let (exec_root, data_root) = (self.cfg.exec_root.clone(), self.cfg.data_root.clone());
        let earlier = earlier_containers(&exec_root, &data_root);
        if earlier.is_empty() {
            return Ok(());
        }
        let adopted = match self.cfg.empty_store {
            EmptyStore::Refuse => {
                let running = earlier.iter().filter(|id| !processes_in(&exec_root.join("netns").join(id)).is_empty()).count();
                return Err(EngineError::Config(format!(
                    "the store is empty but {} and {} hold {} containers of an earlier run ({running} running): restore the store, or start with --adopt-state to rebuild their records or --reset-state to stop and remove them",
                    exec_root.display(),
                    data_root.display(),
                    earlier.len(),
                )));
            }
            EmptyStore::Adopt => self.adopt_copies().await?,
            EmptyStore::Reset => HashSet::new(),
        };
        let reset = self.cfg.empty_store == EmptyStore::Reset;
        let o = self.host_options();
        blocking(move || {
            // Reset: the earlier run's user networks go too (their links, by their copies).
            for n in crate::mirror::read(&data_root).0.into_iter().filter(|_| reset) {
                if n.name != weft_model::DEFAULT_NETWORK {
                    if let Err(e) = with_host(|nl| weft_drivers::driver(n.driver).remove_network(nl, &n, &o)) {
                        tracing::warn!(network = %n.name, error = %e, "removing an earlier run's network");
                    }
                }
                crate::mirror::forget_network(&data_root, &n.id);
            }
            let rest: Vec<u32> = earlier.iter().filter(|id| !adopted.contains(*id)).flat_map(|id| processes_in(&exec_root.join("netns").join(id))).collect();
            tracing::warn!(containers = earlier.len() - adopted.len(), processes = rest.len(), "the store was empty: stopping and removing an earlier run's containers");
            for pid in &rest {
                weft_runtime::kill(*pid, nix::sys::signal::Signal::SIGKILL)?;
            }
            let t0 = std::time::Instant::now();
            while rest.iter().any(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) && t0.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(())
        })
        .await
    }

    /// `--adopt-state`: puts back the records of the local networks and of the containers whose
    /// pid 1 still runs (same pid, same start time) and whose networks all came back, from their
    /// copies; returns the containers' ids. The reconcile that follows adopts them as after any
    /// restart (addresses, claims, ports, firewall, DNS). Not rebuilt: attached namespaces and
    /// point-to-point links (their namespaces live on, unattached).
    async fn adopt_copies(&self) -> Result<HashSet<String>> {
        let data_root = self.cfg.data_root.clone();
        let (networks, containers) = blocking(move || Ok(crate::mirror::read(&data_root))).await?;
        let nets: HashSet<&str> = networks.iter().map(|n| n.id.as_str()).collect();
        let live: Vec<&ContainerRecord> = containers
            .iter()
            .filter(|c| c.state.status == Status::Running && c.state.pid != 0 && weft_runtime::pid_running(c.state.pid, c.state.pid_start))
            .filter(|c| c.sandbox.endpoints.iter().all(|e| nets.contains(e.network_id.as_str())))
            .collect();
        let mut ops = Vec::new();
        for n in &networks {
            ops.push(Op::Put(self.keys.network(n), serde_json::to_vec(n)?));
        }
        for c in &live {
            ops.push(Op::Put(self.keys.container(&c.id), serde_json::to_vec(c)?));
        }
        self.store.txn(Txn::ops(ops)).await?;
        tracing::warn!(networks = networks.len(), containers = live.len(), "--adopt-state: records rebuilt from their copies");
        Ok(live.into_iter().map(|c| c.id.clone()).collect())
    }

    pub(crate) async fn reconcile(self: &Arc<Self>) -> Result<()> {
        let (items, _) = self.store.range(&self.keys.containers()).await?;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            for kv in items {
                let rec: ContainerRecord = match serde_json::from_slice(&kv.value) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(key = %kv.key, error = %e, "skipping unreadable container record");
                        continue;
                    }
                };
                if rec.state.status == Status::Running {
                    let alive = rec.state.pid != 0
                        && weft_runtime::pid_start_time(rec.state.pid) == Some(rec.state.pid_start);
                    // Committed, but the daemon died before the go-ahead: pid 1 is exiting on its
                    // own; make it certain before its resources are released.
                    let started = self.run_dir(&rec.id).join("started").exists();
                    if alive && !started {
                        let _ = weft_runtime::kill(rec.state.pid, nix::sys::signal::Signal::SIGKILL);
                    }
                    let alive = alive && started;
                    if alive {
                        st.hold_addresses(&rec.name, &rec.sandbox);
                        let (tx, _) = watch::channel(None);
                        st.exits.insert(rec.id.clone(), tx);
                        live.push((rec.id.clone(), rec.state.pid));
                    } else {
                        dead.push(rec.id.clone());
                    }
                }
                st.names.insert(rec.name.clone(), rec.id.clone());
                st.revisions.insert(kv.key.clone(), kv.mod_revision);
                st.containers.insert(rec.id.clone(), rec);
            }
        }
        // Attached foreign namespaces: kept while their namespace exists (for `--pid`: while
        // that very process lives).
        let (sbx, _) = self.store.range(&self.keys.sandboxes()).await?;
        // A record whose host veth is missing was committed while its kernel work was cut short
        // (the two run side by side): it never became an attachment.
        let host_links: HashSet<String> = blocking(|| with_host(|nl| nl.links())).await?.into_iter().map(|l| l.name).collect();
        for kv in sbx {
            let rec: SandboxRecord = match serde_json::from_slice(&kv.value) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let alive = match (rec.pid, rec.pid_start) {
                (Some(pid), Some(start)) => weft_runtime::pid_start_time(pid) == Some(start),
                // Docker's namespaces are dockerd's to see: its endpoints live while their veths do.
                _ if rec.runtime.as_ref().is_some_and(|r| r.kind == crate::sandbox::DOCKER) => true,
                _ => std::path::Path::new(rec.netns()).exists(),
            } && rec.sandbox.endpoints.iter().all(|e| e.host_end().is_none_or(|h| host_links.contains(h)));
            if alive {
                let mut st = self.lock();
                st.hold_addresses(&rec.key, &rec.sandbox);
                st.revisions.insert(kv.key, kv.mod_revision);
                st.sandboxes.insert(rec.key.clone(), rec);
            } else {
                self.commit(Txn::ops(vec![Op::Delete(kv.key)])).await?;
                self.metrics.repaired(repair::SANDBOX_GONE, 1);
            }
        }
        for id in &dead {
            tracing::info!(container = %id, "pid 1 gone while the daemon was away");
            self.on_exit(id).await?;
            self.metrics.repaired(repair::EXITED_WHILE_AWAY, 1);
        }
        // A namespace file whose bind mount died with an earlier daemon's mount namespace is
        // bound again from the living pid 1 (checked by start time above).
        // (Only a namespace of the container's own: not the host's, not another container's.)
        let rebind: Vec<(String, u32, std::path::PathBuf)> = {
            let st = self.lock();
            live.iter()
                .map(|(id, pid)| (id.clone(), *pid, self.netns_path(id)))
                .filter(|(id, _, path)| st.containers.get(id).and_then(|c| c.sandbox.netns.as_deref()).is_some_and(|n| std::path::Path::new(n) == path))
                .collect()
        };
        let rebound = blocking(move || {
            let mut rebound = 0;
            for (id, pid, path) in rebind {
                match weft_kernel::netns::rebind(pid, &path) {
                    Ok(true) => {
                        tracing::warn!(container = %id, pid, "network namespace bound again from pid 1 (its mount was gone)");
                        rebound += 1;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(container = %id, error = %e, "cannot bind the network namespace again"),
                }
            }
            Ok(rebound)
        })
        .await?;
        self.metrics.repaired(repair::NETNS_REBOUND, rebound);
        // The claims match the live endpoints now (dead sandboxes' went with nothing holding them).
        self.reconcile_claims().await?;
        self.load_p2p().await?;

        // Sweep the kernel and the exec-root of what no live container owns.
        let (keep_veths, keep_ids, all_ids, networks, netns_dir, run_dir, data_dir) = {
            let st = self.lock();
            let keep_veths: HashSet<String> = st
                .containers
                .values()
                .filter(|c| c.state.status == Status::Running)
                .flat_map(|c| c.sandbox.endpoints.iter().map(|e| e.host_ifname.clone()))
                .chain(st.sandboxes.values().flat_map(|s| s.sandbox.endpoints.iter().map(|e| e.host_ifname.clone())))
                .collect();
            let keep_ids: HashSet<String> =
                st.containers.values().filter(|c| c.state.status == Status::Running).map(|c| c.id.clone()).collect();
            let all_ids: HashSet<String> = st.containers.keys().cloned().collect();
            let networks: Vec<std::sync::Arc<dyn weft_drivers::HostNetwork>> = st.networks.values().map(|n| n.host.clone()).collect();

            (
                keep_veths,
                keep_ids,
                all_ids,
                networks,
                self.cfg.exec_root.join("netns"),
                self.cfg.exec_root.join("containers"),
                self.cfg.data_root.join("containers"),
            )
        };
        let swept = blocking(move || {
            let links = with_host(|nl| nl.links())?;
            let doomed: Vec<String> = links
                .iter()
                .filter(|l| !keep_veths.contains(&l.name) && networks.iter().any(|n| n.is_endpoint(&l.name, l.master)))
                .map(|l| l.name.clone())
                .collect();

            let mut swept = doomed.len();
            if !doomed.is_empty() {
                crate::reaper::delete_links(&doomed)?;
            }
            for (dir, keep) in [(&netns_dir, &keep_ids), (&run_dir, &all_ids), (&data_dir, &all_ids)] {
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if keep.contains(&name) {
                        continue;
                    }
                    if dir == &netns_dir {
                        weft_kernel::netns::unbind(&entry.path())?;
                    } else {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                    swept += 1;
                }
            }
            Ok(swept)
        })
        .await?;
        let keep_cgroups: HashSet<String> = self.containers().into_iter().filter(|c| c.state.status == Status::Running).map(|c| c.id).collect();
        let eng = self.clone();
        let swept = swept + blocking(move || Ok(eng.sweep_cgroups(&keep_cgroups))).await?;
        if swept > 0 {
            tracing::info!(objects = swept, "removed leftovers of an earlier run");
        }
        self.metrics.repaired(repair::LEFTOVERS, swept);

        let nets: Vec<weft_firewall::NetworkFw> = self.networks().iter().filter_map(crate::networks::fw_of).collect();
        let mut ports = Vec::new();
        let mut links = Vec::new();
        // Every live sandbox's published ports, a container's or an attached namespace's.
        let mut sandboxes: Vec<(String, weft_model::Sandbox, bool)> = Vec::new();
        for (id, _) in &live {
            let c = self.container(id)?;
            if let Some(e) = c.sandbox.endpoints.first() {
                links.extend(crate::publish::link_rules(e.ip, &c.links));
            }
            sandboxes.push((id.clone(), c.sandbox, false));
        }
        sandboxes.extend(self.sandboxes().into_iter().map(|s| (crate::sandbox::owner_key(&s.key), s.sandbox.clone(), crate::sandbox::runtime_holds_ports(&s))));
        for (owner, sb, runtime_holds) in &sandboxes {
            if let Some(e) = sb.endpoints.first() {
                self.readopt_ports(owner, e.ip, &sb.ports, *runtime_holds);
                ports.extend(crate::publish::kernel_ports(&sb.ports, e.ip));
            }
        }
        let guards: Vec<weft_firewall::PortGuard> = {
            let st = self.lock();
            let guarded = |net: &str| st.networks.get(net).is_some_and(|n| n.rec.anti_spoof());
            sandboxes.iter().flat_map(|(_, sb, _)| &sb.endpoints).filter(|e| guarded(&e.network_id)).filter_map(crate::endpoint_guard).collect()
        };
        self.fw.reset(&nets, &ports, &links, &guards, weft_firewall::Options { userland_proxy: self.cfg.userland_proxy })?;
        for (id, _) in &live {
            let c = self.container(id)?;
            let nets: Vec<String> = c.sandbox.endpoints.iter().map(|e| e.network_name.clone()).collect();
            if let (true, Some(ns)) = (crate::dns_client(&nets), c.sandbox.netns.as_deref()) {
                if let Err(e) = self.start_dns(id, ns.into()).await {
                    tracing::error!(container = %c.name, error = %e, "cannot serve the embedded DNS again");
                }
            }
        }
        for (id, _) in &live {
            self.dns_update(id);
        }
        for s in self.sandboxes() {
            self.dns_update_sandbox(&s.key);
            if let Err(e) = self.serve_dns_in(&s.key).await {
                tracing::warn!(sandbox = %s.key, error = %e, "its resolver is not served");
            }
            if let Some(pid) = s.pid {
                self.watch_sandbox(s.key.clone(), pid);
            }
        }
        for (id, pid) in live {
            if let Ok(c) = self.container(&id) {
                if let Ok(Some(cap)) = weft_model::parse_log_opts(&c.spec.log_opts) {
                    if let Err(e) = self.logs.cap(std::path::Path::new(&c.log_path), cap) {
                        tracing::warn!(container = %c.name, error = %e, "its log is not capped");
                    }
                }
            }
            self.watch_exit(id, pid);
        }
        Ok(())
    }
}
