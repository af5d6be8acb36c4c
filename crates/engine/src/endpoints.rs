//! The one way a planned endpoint joins a namespace (`docs/endpoints.md`): a container's at
//! `run` and at `network connect`, a namespace weft did not start (`network connect
//! --netns/--pid`), and a container another runtime started (the CNI plugin, the OCI hook), with
//! the plugin-shaped actions the latter call: attach, detach, check, collect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_model::{AttachReply, AttachSpec, AttachmentRef, CollectSpec, EndpointRecord, RuntimeRef, SandboxRecord};

use crate::sandbox::SandboxAttach;
use crate::undo::Undo;
use crate::{blocking, Engine, EndpointPlan, EngineError, Result};

impl Engine {
    /// Makes endpoint `plan` in namespace `netns` (with the default route if `first`), undone
    /// with `undo` unless the action commits. The namespace's previous interface of that name may
    /// still be in the reaper's queue (a detach just before): it is retired now if it is (~1 ms),
    /// else waited for.
    pub(crate) async fn join(self: &Arc<Self>, undo: &mut Undo, plan: &EndpointPlan, netns: &Path, first: bool) -> Result<()> {
        let (p, eng, pl, fw) = (netns.to_path_buf(), self.clone(), plan.clone(), self.fw.clone());
        let busy = self.reaper.busy();
        blocking(move || match pl.attach(&p, first, &fw) {
            Err(EngineError::Kernel(k)) if k.is_exists() => {
                // Taken out of the map as it is retired: the name may be taken again, by an
                // interface of another kind (a macvlan, deleted by the reaper inside), before
                // the reaper is done with this one.
                let detached = eng.lock().detached.remove(&(p.display().to_string(), pl.endpoint.ifname.clone()));
                match detached {
                    Some(old) => crate::retire_inside(&p, &[old])?,
                    None => eng.reaper.flush(),
                }
                pl.attach(&p, first, &fw)
            }
            r => r,
        })
        .await?;
        drop(busy);
        let (p, pl) = (netns.to_path_buf(), plan.clone());
        undo.push("remove the endpoint", move || pl.detach(&p));
        Ok(())
    }
}

/// The containers other runtimes start (a CNI call, an OCI hook): each is a sandbox found by its
/// runtime's reference, attached, checked, detached and collected through the same flow as a
/// namespace attached by `network connect --netns`.
impl Engine {
    /// Attaches a namespace: a runtime's container (CNI `ADD`, the OCI hook, Docker's `Join`),
    /// or one named by `network connect --netns/--pid` (no runtime).
    pub(crate) async fn attach_netns(self: &Arc<Self>, spec: &AttachSpec) -> Result<AttachReply> {
        let runtime = match &spec.runtime {
            Some(_) => Some(runtime_of(&spec.runtime)?),
            None => None,
        };
        if spec.netns.is_empty() {
            return Err(EngineError::Namespace("an attachment needs the container's network namespace".into()));
        }
        let path = PathBuf::from(&spec.netns);
        // A namespace the runtime moves the interface into itself may be out of weftd's sight
        // (Docker's, under dockerd's own mounts).
        let netns_id = if spec.host_end_only { None } else { Some(crate::sandbox::namespace_id(&path)?) };
        let pid = match spec.pid {
            Some(pid) => Some((pid, weft_runtime::pid_start_time(pid).ok_or_else(|| EngineError::Namespace(format!("no process {pid}")))?)),
            None => None,
        };
        let key = match (&spec.name, &runtime) {
            (Some(n), _) => n.clone(),
            (None, Some(r)) => r.id.chars().take(12).collect(),
            (None, None) => return Err(EngineError::Refused("an attachment needs a name".into())),
        };
        weft_model::validate_container_name(&key)?;
        let ifname = match spec.ifname.is_empty() {
            true if spec.host_end_only => return Err(EngineError::Refused("an attachment left for its runtime to move needs an interface name".into())),
            true => self.free_ifname(&path).await?,
            false => spec.ifname.clone(),
        };
        if let Some(r) = &runtime {
            if let Some((_, e)) = self.find_attachment(&AttachmentRef { network: String::new(), runtime: Some(r.clone()), ifname: ifname.clone() })? {
                return Err(EngineError::Refused(format!("{} container {} is already attached as {ifname} (to network {})", r.kind, r.id, e.network_name)));
            }
        }
        if let Some(id) = netns_id {
            self.check_unattached(id, &path, &spec.network, &key)?;
        } else if self.lock().names.contains_key(&key) {
            return Err(EngineError::NameInUse(key));
        }
        let ports = spec.publish.iter().map(|p| weft_model::parse_publish(p)).collect::<Result<Vec<_>, _>>()?;
        let mac = spec.mac_address.as_ref().map(|m| m.to_ascii_lowercase());
        let attach = SandboxAttach {
            key: &key,
            netns: &path,
            network: &spec.network,
            ifname: &ifname,
            ip: spec.ip_address,
            aliases: spec.aliases.clone(),
            pid,
            netns_id,
            mac,
            ports,
            runtime,
            host_end_only: spec.host_end_only,
        };
        let endpoint = self.attach_namespace(attach).await?;
        if let Some((pid, _)) = pid {
            self.watch_sandbox(key.clone(), pid);
        }
        let nameservers = self.serve_dns_in(&key).await?;
        Ok(AttachReply { sandbox: key, endpoint, nameservers })
    }

    /// The sandbox and endpoint of attachment `r`, if it exists.
    fn find_attachment(&self, r: &AttachmentRef) -> Result<Option<(SandboxRecord, EndpointRecord)>> {
        let runtime = runtime_of(&r.runtime)?;
        let st = self.lock();
        let on = |e: &EndpointRecord| e.ifname == r.ifname && (r.network.is_empty() || e.network_name == r.network || e.network_id == r.network);
        Ok(st.sandboxes.values().filter(|s| s.runtime.as_ref() == Some(&runtime)).find_map(|s| Some((s.clone(), s.sandbox.endpoints.iter().find(|e| on(e))?.clone()))))
    }

    /// Detaches attachment `r` (CNI `DEL`): nothing attached is success, so a repeated call, a
    /// call after a restart, or one without the namespace all succeed.
    pub(crate) async fn detach_runtime(self: &Arc<Self>, r: &AttachmentRef) -> Result<()> {
        match self.find_attachment(r)? {
            Some((s, e)) => match self.detach_sandbox_network(&s.key, &e.network_id).await {
                Err(EngineError::NoSuchSandbox(_)) => Ok(()),
                other => other,
            },
            None => Ok(()),
        }
    }

    /// Checks attachment `r` against the kernel (CNI `CHECK`): its interface exists in its
    /// namespace, is up, and has its address.
    pub(crate) async fn check_runtime(self: &Arc<Self>, r: &AttachmentRef) -> Result<()> {
        let missing = || EngineError::NoSuchSandbox(format!("{} as {} on {}", r.runtime.as_ref().map(|r| r.id.as_str()).unwrap_or_default(), r.ifname, r.network));
        let (s, e) = self.find_attachment(r)?.ok_or_else(missing)?;
        let path = PathBuf::from(s.netns());
        let (links, addrs) = blocking(move || {
            let mut nl = weft_kernel::netns::open_in(&path, &[])?;
            Ok((nl.links()?, nl.addrs()?))
        })
        .await?;
        let link = links.iter().find(|l| l.name == e.ifname).ok_or_else(|| EngineError::Refused(format!("interface {} is missing from {}", e.ifname, s.netns())))?;
        if !link.up {
            return Err(EngineError::Refused(format!("interface {} in {} is down", e.ifname, s.netns())));
        }
        let ip = std::net::IpAddr::V4(e.ip);
        if !addrs.iter().any(|a| a.index == link.index && a.addr == ip && a.prefix_len == e.prefix_len) {
            return Err(EngineError::Refused(format!("interface {} in {} lacks its address {}/{}", e.ifname, s.netns(), e.ip, e.prefix_len)));
        }
        Ok(())
    }

    /// Detaches runtime `spec.kind`'s attachments on `spec.network` that are not in
    /// `spec.valid` (CNI `GC`); the sandboxes detached.
    pub(crate) async fn collect_runtime(self: &Arc<Self>, spec: &CollectSpec) -> Result<Vec<String>> {
        let stale: Vec<(String, String)> = {
            let st = self.lock();
            let valid = |id: &str, ifname: &str| spec.valid.iter().any(|(i, f)| i == id && f == ifname);
            st.sandboxes
                .values()
                .filter_map(|s| Some((s, s.runtime.as_ref().filter(|r| r.kind == spec.kind)?)))
                .flat_map(|(s, r)| s.sandbox.endpoints.iter().filter(|e| e.network_name == spec.network && !valid(&r.id, &e.ifname)).map(|e| (s.key.clone(), e.network_id.clone())))
                .collect()
        };
        let mut gone = Vec::new();
        for (key, network_id) in stale {
            match self.detach_sandbox_network(&key, &network_id).await {
                Ok(()) | Err(EngineError::NoSuchSandbox(_)) => gone.push(key),
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }
}

fn runtime_of(r: &Option<RuntimeRef>) -> Result<RuntimeRef> {
    match r {
        Some(r) if !r.kind.is_empty() && !r.id.is_empty() => Ok(r.clone()),
        _ => Err(EngineError::Refused("an attachment names its runtime and the runtime's container id".into())),
    }
}
