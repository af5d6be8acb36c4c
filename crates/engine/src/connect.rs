//! `weft network connect / disconnect`: a running container gains or loses an interface live
//! (`eth1`, `eth2`, …), with the same endpoint path as at `run`; the record is updated in one
//! store transaction.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use weft_model::{ContainerRecord, Status};
use weft_store::Op;

use crate::claims::Claims;
use crate::undo::Undo;
use crate::{Engine, EngineError, Result};

impl Engine {
    /// Writes `rec` with `more` (the deletion of a dropped endpoint's claims) and `claims` (the
    /// new endpoint's) in one transaction.
    async fn save(&self, rec: &ContainerRecord, more: Vec<Op>, claims: &Claims) -> Result<()> {
        let bytes = serde_json::to_vec(rec)?;
        let txn = claims.txn([vec![Op::Put(self.keys.container(&rec.id), bytes.clone())], more].concat());
        if !self.commit(txn).await?.succeeded {
            return Err(self.claims_lost(claims).await);
        }
        crate::mirror::container(&self.data_dir(&rec.id), &bytes);
        Ok(())
    }

    #[tracing::instrument(name = "network connect", skip(self, ip, aliases))]
    pub(crate) async fn connect(self: &Arc<Self>, network: &str, container: &str, ip: Option<Ipv4Addr>, aliases: &[String]) -> Result<()> {
        for a in aliases {
            weft_model::validate_alias(a)?;
        }
        let id = self.container(container)?.id;
        let _serial = self.lock_container(&id).await;
        self.settle_bridges(&[network]).await;
        // What is made is unmade, in reverse, unless the record commits.
        let mut undo = Undo::new();
        let reserve = |u: &mut Undo| {
            let mut st = self.lock();
            let c = st.containers.get(&id).cloned().ok_or_else(|| EngineError::NoSuchContainer(container.to_string()))?;
            if c.state.status != Status::Running {
                return Err(EngineError::NotRunning(container.to_string()));
            }
            let own = self.netns_path(&c.id);
            if c.sandbox.netns.as_deref() != Some(own.to_string_lossy().as_ref()) {
                return Err(EngineError::Refused(format!(
                    "container {container} has no network namespace of its own (--net {}): connect the container it shares",
                    c.network_mode()
                )));
            }
            let netns = own;
            let net = st
                .networks
                .values()
                .find(|n| n.rec.name == network || n.rec.id == network)
                .ok_or_else(|| EngineError::NoSuchNetwork(network.to_string()))?
                .rec
                .clone();
            if c.sandbox.endpoints.iter().any(|e| e.network_id == net.id) {
                return Err(EngineError::Refused(format!("container {container} is already connected to network {}", net.name)));
            }
            let n = (0..).find(|i| !c.sandbox.endpoints.iter().any(|e| e.ifname == format!("eth{i}"))).expect("a free index");
            let mut plan = st.plan_endpoint(&c.id, &net.id, &format!("eth{n}"), ip, None)?;
            plan.endpoint.aliases = aliases.to_vec();
            let pending = crate::Pending::new(self, &mut st, vec![net.id.clone()]);
            let (eng, e) = (self.clone(), plan.endpoint.clone());
            u.push("release the address", move || eng.lock().release_addresses(&e));
            Ok((c, netns, plan, pending))
        };
        let ((rec, netns, plan, _pending), claims) = self.reserve_claimed(&id, &mut undo, reserve, |r| vec![r.2.endpoint.clone()]).await?;
        self.join(&mut undo, &plan, &netns, rec.sandbox.endpoints.is_empty()).await?;
        let mut updated = rec;
        updated.sandbox.endpoints.push(plan.endpoint.clone());
        self.save(&updated, Vec::new(), &claims).await?;
        undo.commit();
        let was_client = crate::dns_client(&rec_networks(&updated, 1));
        let netns_path = PathBuf::from(updated.sandbox.netns.clone().unwrap_or_default());
        let id = updated.id.clone();
        // Joining its first user-defined network switches the container to the embedded DNS.
        if !was_client && crate::dns_client(&rec_networks(&updated, 0)) {
            self.start_dns(&id, netns_path).await?;
            let resolv = weft_dns::container_resolv(&self.host_resolv, &updated.spec.dns_search, &updated.spec.dns_options);
            let path = self.run_dir(&id).join("resolv.conf");
            std::fs::write(&path, resolv).map_err(|source| EngineError::Io { op: "write", path: path.display().to_string(), source })?;
        }
        self.dns_update(&id);
        Ok(())
    }

    #[tracing::instrument(name = "network disconnect", skip(self, _force))]
    pub(crate) async fn disconnect(self: &Arc<Self>, network: &str, container: &str, _force: bool) -> Result<()> {
        let net = self.network(network)?;
        let id = match self.container(container) {
            Ok(c) => c.id,
            Err(EngineError::NoSuchContainer(_)) => {
                // An attached namespace (`network connect --netns/--pid`) of that name.
                let on_net = self.lock().sandboxes.get(container).map(|s| s.sandbox.endpoints.iter().any(|e| e.network_id == net.id));
                return match on_net {
                    Some(true) => self.detach_sandbox_network(container, &net.id).await,
                    Some(false) => Err(EngineError::Refused(format!("{container} is not connected to network {}", net.name))),
                    None => Err(EngineError::NoSuchContainer(container.to_string())),
                };
            }
            Err(e) => return Err(e),
        };
        let _serial = self.lock_container(&id).await;
        let rec = self.container(&id)?;
        let Some(pos) = rec.sandbox.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(EngineError::Refused(format!("container {container} is not connected to network {}", net.name)));
        };
        let mut updated = rec;
        let (endpoint, ports) = self.take_endpoint(&mut updated.sandbox, pos).await?;
        self.save(&updated, self.unclaim(std::slice::from_ref(&endpoint)), &Claims::default()).await?;
        let netns = updated.sandbox.netns.clone();
        self.dns_update(&id);
        self.release_taken(&id, &endpoint, &ports, netns).await
    }
}

/// The network names of a container, leaving out the last `skip_last` endpoints.
fn rec_networks(rec: &ContainerRecord, skip_last: usize) -> Vec<String> {
    let n = rec.sandbox.endpoints.len().saturating_sub(skip_last);
    rec.sandbox.endpoints[..n].iter().map(|e| e.network_name.clone()).collect()
}
