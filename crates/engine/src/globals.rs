//! Global networks reach this host's cache only through the store's watch, those this host
//! creates included: `network create --scope global` (and every overlay) commits the record with
//! its claims and waits until the watch has applied that revision ([`Engine::await_globals`]).
//! One task applies the changes in order: a network that appears is adopted (its bridge, its
//! firewall chains, a routed network's block here), one that goes has its objects here removed.
//! So every host, the creator too, makes a global network the same way, from the same record.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use weft_model::{NetworkRecord, Scope};
use weft_store::Event;

use crate::follow::{follow, Followed};
use crate::{Engine, EngineError, Result};

/// How long an action waits for its own commit to come back through the watch.
const WATCH_WAIT: Duration = Duration::from_secs(10);

impl Engine {
    /// Follows the global networks (see the module docs); returns once those that exist now are
    /// applied.
    pub(crate) async fn follow_global_networks(self: &Arc<Self>) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        follow(self.store.clone(), self.keys.networks(Scope::Global), move |f| drop(tx.send(f))).await?;
        if let Some(first) = rx.recv().await {
            self.apply_global(first).await;
        }
        let eng = self.clone();
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                eng.apply_global(f).await;
            }
        });
        Ok(())
    }

    async fn apply_global(self: &Arc<Self>, f: Followed) {
        let prefix = self.keys.networks(Scope::Global);
        let revision = match f {
            Followed::Reset(kvs, revision) => {
                let recs: Vec<NetworkRecord> = kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
                let ids: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
                let gone: Vec<String> = self.lock().networks.values().filter(|n| n.rec.scope == Scope::Global && !ids.contains(n.rec.id.as_str())).map(|n| n.rec.id.clone()).collect();
                for id in gone {
                    self.forget_global_network(&id).await;
                }
                for rec in recs {
                    self.adopt_global(rec).await;
                }
                revision
            }
            Followed::Change(Event::Put(kv)) => {
                if let Ok(rec) = serde_json::from_slice(&kv.value) {
                    self.adopt_global(rec).await;
                }
                kv.mod_revision
            }
            Followed::Change(Event::Delete { key, mod_revision }) => {
                self.forget_global_network(key.strip_prefix(&prefix).unwrap_or_default()).await;
                mod_revision
            }
        };
        self.globals.send_if_modified(|applied| {
            let newer = revision > *applied;
            *applied = (*applied).max(revision);
            newer
        });
    }

    async fn adopt_global(&self, rec: NetworkRecord) {
        let name = rec.name.clone();
        if let Err(e) = self.adopt_network(rec, true).await {
            tracing::error!(network = %name, error = %e, "adopting a global network");
        }
    }

    /// Waits until the global networks' watch has applied `revision` (a commit of this host's).
    pub(crate) async fn await_globals(&self, revision: u64) -> Result<()> {
        let mut applied = self.globals.subscribe();
        let reached = tokio::time::timeout(WATCH_WAIT, applied.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(EngineError::Contention(format!("the network is recorded (revision {revision}), but the store's watch has not brought it back within {WATCH_WAIT:?}: this host makes it when the watch resumes"))),
        }
    }
}
