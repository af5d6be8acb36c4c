//! Network namespaces weft did not create (a process's, an `ip netns` one): attached to a network
//! and detached again, with the same endpoint path as a container's `eth0`. The attach benchmark
//! measures exactly this path (IPAM, veth with the peer born in the namespace, addresses, routes,
//! one store commit).

use std::path::Path;
use std::sync::Arc;

use weft_model::{EndpointRecord, SandboxRecord};
use weft_store::{Op, Txn};

use crate::network::detach_bridge;
use crate::{blocking, Engine, EngineError, Result, SANDBOXES};

impl Engine {
    /// Attaches the namespace at `netns` to `network` as interface `ifname`, under `key`.
    pub async fn attach_sandbox(self: &Arc<Self>, key: &str, netns: &Path, network: &str, ifname: &str) -> Result<EndpointRecord> {
        weft_model::validate_ifname(ifname)?;
        self.settle_bridges(&[network]).await;
        let (plan, _pending) = {
            let mut st = self.lock();
            if st.sandboxes.contains_key(key) {
                return Err(EngineError::Config(format!("sandbox {key} is already attached")));
            }
            let plan = st.plan_endpoint(network, ifname, None, None)?;
            let pending = crate::Pending::new(self, &mut st, vec![plan.endpoint.network_id.clone()]);
            (plan, pending)
        };
        let endpoint = plan.endpoint.clone();
        let (p, eng) = (netns.to_path_buf(), self.clone());
        let attached = blocking(move || {
            match plan.attach(&p, true) {
                // The namespace's previous interface of that name may still be in the reaper's
                // queue (a detach just before): wait for it once.
                Err(EngineError::Kernel(k)) if k.is_exists() => {
                    eng.reaper.flush();
                    plan.attach(&p, true)
                }
                r => r,
            }
        })
        .await;
        let rec = SandboxRecord { key: key.to_string(), netns: netns.display().to_string(), endpoint: endpoint.clone() };
        let committed = match attached {
            Ok(()) => match serde_json::to_vec(&rec) {
                Ok(v) => self.store.txn(Txn::ops(vec![Op::Put(format!("{SANDBOXES}{key}"), v)])).await.map_err(EngineError::from),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        let mut st = self.lock();
        match committed {
            Ok(_) => {
                st.sandboxes.insert(key.to_string(), rec);
                Ok(endpoint)
            }
            Err(e) => {
                drop(st);
                let h = endpoint.host_ifname.clone();
                let _ = blocking(move || detach_bridge(&h)).await;
                self.lock().release_addresses(&endpoint);
                Err(e)
            }
        }
    }

    /// Removes the endpoint of `key` and releases its address.
    pub async fn detach_sandbox(self: &Arc<Self>, key: &str) -> Result<()> {
        let rec = self
            .lock()
            .sandboxes
            .get(key)
            .cloned()
            .ok_or_else(|| EngineError::Config(format!("no sandbox {key} is attached")))?;
        self.store.txn(Txn::ops(vec![Op::Delete(format!("{SANDBOXES}{key}"))])).await?;
        self.lock().sandboxes.remove(key);
        self.release_endpoint(&rec.endpoint);
        Ok(())
    }
}
