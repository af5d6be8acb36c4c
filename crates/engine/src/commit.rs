//! The one way a container's record is written (step 1 of `docs/state.md`). Each write of a
//! record is compared, in the same transaction, with the revision this daemon last committed or
//! read of it: a record that changed in the store behind the cache's back refuses the write
//! instead of being overwritten. The refusal reads the record again (its revision, and its
//! value into the cache) and answers `Stale` (409: "try again"), so the next attempt starts from
//! what the store holds. A record the cache knows no revision of is written as before.

use std::future::Future;

use weft_model::ContainerRecord;
use weft_store::{Compare, Op, Txn, TxnResponse};

use crate::{Engine, EngineError, Result};

impl Engine {
    /// Submits `txn` now (in submission order, as `Store::txn`), with a revision compare for each
    /// container record it writes; the future answers once it is decided (see the module docs).
    /// A refusal by `txn`'s own compares (a claim) comes back as `succeeded: false`, as before.
    pub(crate) fn commit_records(&self, mut txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send + '_ {
        let prefix = self.keys.containers();
        let writes: Vec<(String, bool)> = txn
            .success
            .iter()
            .filter_map(|op| match op {
                Op::Put(k, _) | Op::PutLeased(k, _, _) if k.starts_with(&prefix) => Some((k.clone(), true)),
                Op::Delete(k) if k.starts_with(&prefix) => Some((k.clone(), false)),
                _ => None,
            })
            .collect();
        let expected: Vec<(String, u64)> = {
            let st = self.lock();
            writes.iter().filter_map(|(k, _)| Some((k.clone(), *st.revisions.get(k)?))).collect()
        };
        txn.compare.extend(expected.iter().map(|(k, r)| Compare::ModRevision(k.clone(), *r)));
        let submitted = self.store.txn(txn);
        async move {
            let resp = submitted.await?;
            if resp.succeeded {
                let mut st = self.lock();
                for (k, put) in &writes {
                    match put {
                        true => st.revisions.insert(k.clone(), resp.revision),
                        false => st.revisions.remove(k),
                    };
                }
                return Ok(resp);
            }
            for (k, r) in &expected {
                let now = self.store.get(k).await?;
                if now.as_ref().map(|kv| kv.mod_revision) == Some(*r) {
                    continue;
                }
                // Changed behind the cache's back: the cache takes the store's version.
                let mut st = self.lock();
                let found = match &now {
                    Some(kv) => {
                        st.revisions.insert(k.clone(), kv.mod_revision);
                        if let Ok(rec) = serde_json::from_slice::<ContainerRecord>(&kv.value) {
                            st.containers.insert(rec.id.clone(), rec);
                        }
                        format!("now at revision {}", kv.mod_revision)
                    }
                    None => {
                        st.revisions.remove(k);
                        "now gone".to_string()
                    }
                };
                let id = k.rsplit('/').next().unwrap_or_default();
                return Err(EngineError::Stale(format!("container {} changed in the store meanwhile (revision {r}, {found}): read again; try again", weft_model::short_id(id))));
            }
            Ok(resp)
        }
    }
}
