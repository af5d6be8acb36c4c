//! The one way a record is written, and the one way the cache of this host's records changes
//! after a write (`docs/state.md`). A record is any of this host's containers, sandboxes,
//! point-to-point links and networks, or a global network.
//!
//! - Each write of a record is compared, in the same transaction, with the revision this daemon
//!   last committed or read of it: a record that changed in the store behind the cache's back
//!   refuses the write instead of being overwritten. The refusal reads the record again (its
//!   revision, and its value into the cache) and answers `Stale` (409: "try again"), so the next
//!   attempt starts from what the store holds. A record the cache knows no revision of is
//!   written without a compare.
//! - What committed is applied to the cache (containers with their names, sandboxes, links)
//!   from the transaction itself, in revision order: a commit that is answered after a later one
//!   of the same key (an exit's, awaited last, and the removal that followed it) changes
//!   nothing. A deletion leaves its revision behind (`tombstones`) while older commits may still
//!   be answered, i.e. until no commit is in flight. Networks are not applied here: a local one
//!   is made by its action, a global one by the watch (`globals`).
//!
//! An undo's write ([`Engine::commit_undo`]) puts back what this daemon wrote a moment ago; it
//! carries no compare and nobody awaits it, so the revisions of its keys are forgotten (the next
//! write of them is not compared) rather than left wrong.

use std::future::Future;

use weft_model::{ContainerRecord, P2pRecord, SandboxRecord};
use weft_store::{Compare, Op, Txn, TxnResponse};

use crate::{Engine, EngineError, Result, State};

/// The kinds of record under revision control.
#[derive(Clone, Copy)]
enum Kind {
    Container,
    Sandbox,
    Link,
    Network,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Sandbox => "sandbox",
            Kind::Link => "link",
            Kind::Network => "network",
        }
    }
}

/// A record written by a transaction: its key, kind, and value (`None`: deleted).
struct Write {
    key: String,
    kind: Kind,
    value: Option<Vec<u8>>,
}

/// A commit not yet answered; the last one to go clears the tombstones.
struct InFlight<'a>(&'a Engine);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight -= 1;
        if st.in_flight == 0 {
            st.tombstones.clear();
        }
    }
}

impl Engine {
    /// The kind of record `key` is, if it is one.
    fn kind(&self, key: &str) -> Option<Kind> {
        let k = &self.keys;
        [(k.containers(), Kind::Container), (k.sandboxes(), Kind::Sandbox), (k.p2p(), Kind::Link), (k.networks(weft_model::Scope::Local), Kind::Network), (k.networks(weft_model::Scope::Global), Kind::Network)]
            .into_iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map(|(_, kind)| kind)
    }

    fn writes(&self, txn: &Txn) -> Vec<Write> {
        txn.success
            .iter()
            .map(|op| match op {
                Op::Put(k, v) | Op::PutLeased(k, v, _) => (k, Some(v)),
                Op::Delete(k) => (k, None),
            })
            .filter_map(|(key, value)| Some(Write { key: key.clone(), kind: self.kind(key)?, value: value.cloned() }))
            .collect()
    }

    /// Submits `txn` now (in submission order, as `Store::txn`), with a revision compare for each
    /// record it writes; the future answers once it is decided (see the module docs). A refusal
    /// by `txn`'s own compares (a claim) comes back as `succeeded: false`, as before.
    pub(crate) fn commit(&self, mut txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send + '_ {
        let writes = self.writes(&txn);
        let expected: Vec<(String, Kind, u64)> = {
            let mut st = self.lock();
            st.in_flight += 1;
            writes.iter().filter_map(|w| Some((w.key.clone(), w.kind, *st.revisions.get(&w.key)?))).collect()
        };
        let in_flight = InFlight(self);
        txn.compare.extend(expected.iter().map(|(k, _, r)| Compare::ModRevision(k.clone(), *r)));
        let submitted = self.store.txn(txn);
        async move {
            let _in_flight = in_flight;
            let resp = submitted.await?;
            if resp.succeeded {
                let mut st = self.lock();
                for w in writes {
                    st.apply(w, resp.revision);
                }
                return Ok(resp);
            }
            for (key, kind, r) in &expected {
                let now = self.store.get(key).await?;
                if now.as_ref().map(|kv| kv.mod_revision) == Some(*r) {
                    continue;
                }
                // Changed behind the cache's back: the cache takes the store's version.
                let found = match &now {
                    Some(kv) => {
                        self.lock().reread(key, *kind, kv);
                        format!("now at revision {}", kv.mod_revision)
                    }
                    None => {
                        self.lock().revisions.remove(key);
                        "now gone".to_string()
                    }
                };
                let id = key.rsplit('/').next().unwrap_or_default();
                return Err(EngineError::Stale(format!("{} {} changed in the store meanwhile (revision {r}, {found}): read again; try again", kind.name(), weft_model::short_id(id))));
            }
            Ok(resp)
        }
    }

    /// An undo's write (see the module docs): submitted now, in order, and not awaited.
    pub(crate) fn commit_undo(&self, ops: Vec<Op>) {
        let txn = Txn::ops(ops);
        let writes = self.writes(&txn);
        let mut st = self.lock();
        drop(self.store.txn(txn));
        for w in writes {
            st.revisions.remove(&w.key);
        }
    }
}

impl State {
    /// Applies a committed write at `revision` to the cache, unless a later one of its key was
    /// applied already (see the module docs).
    fn apply(&mut self, w: Write, revision: u64) {
        let later = |r: Option<&u64>| r.is_some_and(|r| *r > revision);
        if later(self.revisions.get(&w.key)) || later(self.tombstones.get(&w.key)) {
            return;
        }
        let id = w.key.rsplit('/').next().unwrap_or_default().to_string();
        match w.value {
            Some(value) => {
                self.tombstones.remove(&w.key);
                self.revisions.insert(w.key.clone(), revision);
                let kv = weft_store::KeyValue { key: w.key, value, create_revision: 0, mod_revision: revision };
                self.reread(&kv.key, w.kind, &kv);
            }
            None => {
                self.revisions.remove(&w.key);
                self.tombstones.insert(w.key, revision);
                match w.kind {
                    Kind::Container => {
                        if let Some(c) = self.containers.remove(&id) {
                            if self.names.get(&c.name) == Some(&c.id) {
                                self.names.remove(&c.name);
                            }
                        }
                    }
                    Kind::Sandbox => drop(self.sandboxes.remove(&id)),
                    Kind::Link => drop(self.p2p.remove(&id)),
                    Kind::Network => {}
                }
            }
        }
    }

    /// Takes the store's version `kv` of record `key` into the cache.
    fn reread(&mut self, key: &str, kind: Kind, kv: &weft_store::KeyValue) {
        self.revisions.insert(key.to_string(), kv.mod_revision);
        match kind {
            Kind::Container => {
                if let Ok(rec) = serde_json::from_slice::<ContainerRecord>(&kv.value) {
                    self.names.insert(rec.name.clone(), rec.id.clone());
                    self.containers.insert(rec.id.clone(), rec);
                }
            }
            Kind::Sandbox => {
                if let Ok(rec) = serde_json::from_slice::<SandboxRecord>(&kv.value) {
                    self.sandboxes.insert(rec.key.clone(), rec);
                }
            }
            Kind::Link => {
                if let Ok(rec) = serde_json::from_slice::<P2pRecord>(&kv.value) {
                    self.p2p.insert(rec.id.clone(), rec);
                }
            }
            // A network's record never changes after its creation (only its revision is taken):
            // its objects are remade only by adoption.
            Kind::Network => {}
        }
    }
}
