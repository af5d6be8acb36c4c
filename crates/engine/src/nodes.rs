//! This daemon among the others sharing the store: its registration (`/weft/nodes/<host-id>`)
//! under a lease that it renews while it lives, and every registered daemon as the store's watch
//! shows them, this one's own record included (nothing is put in the cache by hand). When a
//! daemon dies or is cut off from etcd, its lease expires and its record goes from every cache.

use std::sync::Arc;

use weft_model::NodeRecord;
use weft_store::{Event, Op, Txn};

use crate::follow::{follow, Followed};

use crate::{Engine, Result};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Engine {
    /// This daemon's `--host-id`.
    pub fn host_id(&self) -> &str {
        self.keys.host()
    }

    /// The registered daemons, by id, as last seen through the watch.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        let mut v: Vec<NodeRecord> = self.lock().nodes.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Registers this daemon under a new lease and follows every daemon's registration; a task
    /// renews the lease every third of `--node-ttl`, and registers again under a new lease if it
    /// ended (etcd was out of reach for longer than that).
    pub(crate) async fn register_node(self: &Arc<Self>) -> Result<()> {
        let mut lease = self.put_node().await?;
        let eng = self.clone();
        follow(self.store.clone(), self.keys.nodes(), move |f| {
            let mut st = eng.lock();
            // (The hosts' endpoints come and go with them: `peers`.)
            match f {
                Followed::Reset(kvs, _) => st.nodes = kvs.iter().filter_map(|kv| serde_json::from_slice::<NodeRecord>(&kv.value).ok()).map(|n| (n.id.clone(), n)).collect(),
                Followed::Change(Event::Put(kv)) => {
                    if let Ok(n) = serde_json::from_slice::<NodeRecord>(&kv.value) {
                        st.nodes.insert(n.id.clone(), n);
                    }
                }
                Followed::Change(Event::Delete { key, .. }) => {
                    st.nodes.remove(key.rsplit('/').next().unwrap_or_default());
                }
            }
            drop(st);
            eng.sync_peers();
        })
        .await?;
        let eng = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(eng.cfg.node_ttl / 3).await;
                match eng.store.keep_alive(lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease, "this daemon's registration had expired: registering again");
                        match eng.put_node().await {
                            Ok(l) => lease = l,
                            Err(e) => tracing::warn!(error = %e, "registering again"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing this daemon's registration"),
                }
            }
        });
        Ok(())
    }

    /// Puts this daemon's record under a new lease; returns the lease.
    async fn put_node(&self) -> Result<i64> {
        let lease = self.store.grant(self.cfg.node_ttl).await?;
        let rec = NodeRecord { id: self.keys.host().to_string(), addr: self.cfg.advertise_addr, lease, ttl: self.cfg.node_ttl.as_secs().max(1), started: now() };
        self.store.txn(Txn::ops(vec![Op::PutLeased(self.keys.node(&rec.id), serde_json::to_vec(&rec)?, lease)])).await?;
        Ok(lease)
    }
}
