//! The store: a key-value map with the etcd v3 model, so that one engine runs on one machine with
//! the embedded backend and across hosts with etcd. Every write is a transaction (compares, then the
//! success or failure operations) that gets one revision; reads are by key or by prefix; a watch
//! streams the events under a prefix.
//!
//! The embedded backend (`Embedded`) keeps the map in a redb file, which is copy-on-write with
//! checksummed commits and so survives `kill -9` at any instant. A durable commit costs an fsync,
//! so one committer thread gathers the transactions that arrive while the previous fsync runs and
//! commits them together (group commit): concurrent operations share one fsync.
//!
//! The etcd backend (`Etcd`) is an etcd v3 cluster: several daemons on several hosts share it.
//! It is the same model, so the engine cannot tell the backends apart; the conformance suite
//! (`crates/itest/tests/store.rs`) runs the same tests against both.

mod embedded;
mod etcd;

use std::future::Future;
use std::pin::Pin;

pub use embedded::Embedded;
pub use etcd::{Etcd, Timeouts, Tls};

use serde::{Deserialize, Serialize};

/// A stored key, with the revisions of its creation and its last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// The key does not exist (etcd: `create_revision(key) == 0`).
    Missing(String),
    /// The key was last changed at exactly this revision.
    ModRevision(String, u64),
    /// No key starts with this prefix (etcd: `create_revision == 0` over the prefix's range,
    /// which holds for an empty range only).
    NoneUnder(String),
}

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put(String, Vec<u8>),
    /// A put whose key goes when lease `.2` ends (expires unrenewed, or is revoked).
    PutLeased(String, Vec<u8>, i64),
    Delete(String),
}

/// `if all(compare) then success else failure`, applied atomically at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
    /// Durable with the next durable commit rather than at once: for a change that a crash may
    /// lose because the start-up reconcile redoes it (the exit of a container whose pid 1 is
    /// gone). Commits stay in order: nothing committed after it is durable without it.
    #[serde(default)]
    pub relaxed: bool,
}

impl Txn {
    /// An unconditional transaction.
    pub fn ops(success: Vec<Op>) -> Self {
        Self { success, ..Self::default() }
    }

    /// An unconditional transaction that may wait for the next durable commit (see `relaxed`).
    pub fn relaxed(success: Vec<Op>) -> Self {
        Self { success, relaxed: true, ..Self::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: u64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Put(KeyValue),
    Delete { key: String, mod_revision: u64 },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

/// A backend's own error, kept as the cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What goes wrong with a store, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open store {path}")]
    Open { path: String, source: BoxError },
    #[error("read store")]
    Read(#[source] BoxError),
    #[error("commit store transaction")]
    Commit(#[source] BoxError),
    #[error("store is closed")]
    Closed,
    /// The store did not answer (etcd: no member reachable, no leader, a lost connection).
    #[error("the store is unreachable")]
    Unavailable(#[source] BoxError),
    #[error("corrupt record under {0}")]
    Corrupt(String),
    /// A watch from a revision the store no longer keeps: read by prefix, watch from that
    /// read's revision.
    #[error("revision {requested} is compacted: the oldest kept is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    /// A watcher that fell too far behind lost events: read by prefix again.
    #[error("watch fell {0} batches behind")]
    Lagged(u64),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The receiving end of a watch: events under its prefix, in revision order.
pub struct Watcher {
    prefix: String,
    source: Source,
    pending: std::collections::VecDeque<Result<Event>>,
}

/// Where a watch's events come from: the embedded store's committed batches, or an etcd watch
/// stream's task.
enum Source {
    Batches(tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Event>>>),
    Stream(tokio::sync::mpsc::UnboundedReceiver<Result<Event>>),
}

impl Watcher {
    /// `backlog`: what happened since the revision asked for (or the compaction error), then live.
    pub(crate) fn batches(prefix: &str, rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Event>>>, backlog: Vec<Result<Event>>) -> Self {
        let pending = backlog.into_iter().filter(|e| e.as_ref().map_or(true, |e| e.key().starts_with(prefix))).collect();
        Self { prefix: prefix.to_string(), source: Source::Batches(rx), pending }
    }

    /// Events (already under the prefix) as they arrive from elsewhere.
    pub(crate) fn stream(prefix: &str, rx: tokio::sync::mpsc::UnboundedReceiver<Result<Event>>) -> Self {
        Self { prefix: prefix.to_string(), source: Source::Stream(rx), pending: Default::default() }
    }

    /// The next event under the prefix; `None` when the store is closed. `Compacted` or
    /// `Lagged`: events were lost; read by prefix and watch again from that revision.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            match &mut self.source {
                Source::Stream(rx) => return rx.recv().await,
                Source::Batches(rx) => match rx.recv().await {
                    Ok(batch) => self.pending.extend(batch.iter().filter(|e| e.key().starts_with(&self.prefix)).cloned().map(Ok)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => return Some(Err(StoreError::Lagged(n))),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// The etcd v3 model, the same for every backend: reads, transactions and watches are async
/// (a remote backend waits on the network; the embedded one on its committer's fsync). Every
/// request is sent when the method is called, and its future owns what it needs (it can be
/// awaited anywhere, or dropped: the request stands).
pub trait Store: Send + Sync {
    fn get(&self, key: &str) -> BoxFuture<Result<Option<KeyValue>>>;
    /// All keys starting with `prefix`, in key order, and the revision they were read at.
    fn range(&self, prefix: &str) -> BoxFuture<Result<(Vec<KeyValue>, u64)>>;
    /// Commits `txn`. It is ordered when this is called, before the future is polled: a
    /// transaction submitted later by anyone commits after it.
    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResponse>>;
    /// The events under `prefix` after revision `after` (`None`: from now on), in order. Events
    /// older than the backend keeps come as `Err(Compacted)` first.
    fn watch(&self, prefix: &str, after: Option<u64>) -> Watcher;
    /// Forgets the history before `revision`: a watch from an older one gets `Compacted`.
    fn compact(&self, revision: u64) -> BoxFuture<Result<()>>;
    /// A lease of `ttl` (whole seconds, at least 1): keys put with it ([`Op::PutLeased`]) are
    /// deleted when it is not renewed within that time. The embedded store's leases last as long
    /// as its process: the keys of an earlier process's leases are gone at open.
    fn grant(&self, ttl: std::time::Duration) -> BoxFuture<Result<i64>>;
    /// Renews `lease`; `Ok(false)`: it has already ended, and its keys are gone.
    fn keep_alive(&self, lease: i64) -> BoxFuture<Result<bool>>;
    /// Ends `lease` now: its keys are deleted.
    fn revoke(&self, lease: i64) -> BoxFuture<Result<()>>;
}
