//! The store: a key-value map with the etcd v3 model, so that one engine runs on one machine with
//! the embedded backend and across hosts with etcd. Every write is a transaction (compares, then the
//! success or failure operations) that gets one revision; reads are by key or by prefix; a watch
//! streams the events under a prefix.
//!
//! The embedded backend (`Embedded`) keeps the map in a redb file, which is copy-on-write with
//! checksummed commits and so survives `kill -9` at any instant. A durable commit costs an fsync,
//! so one committer thread gathers the transactions that arrive while the previous fsync runs and
//! commits them together (group commit): concurrent operations share one fsync.

mod embedded;

use std::future::Future;
use std::pin::Pin;

pub use embedded::Embedded;

/// A stored key, with the revisions of its creation and its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist (etcd: `create_revision(key) == 0`).
    Missing(String),
    /// The key was last changed at exactly this revision.
    ModRevision(String, u64),
}

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// `if all(compare) then success else failure`, applied atomically at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
    /// Durable with the next durable commit rather than at once: for a change that a crash may
    /// lose because the start-up reconcile redoes it (the exit of a container whose pid 1 is
    /// gone). Commits stay in order: nothing committed after it is durable without it.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: u64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open store {path}")]
    Open { path: String, source: Box<redb::Error> },
    #[error("read store")]
    Read(#[source] Box<redb::Error>),
    #[error("commit store transaction")]
    Commit(#[source] Box<redb::Error>),
    #[error("store is closed")]
    Closed,
    #[error("corrupt record under {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The receiving end of a watch: events under its prefix, in revision order.
pub struct Watcher {
    prefix: String,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Event>>>,
    pending: std::collections::VecDeque<Event>,
}

impl Watcher {
    /// The next event under the prefix; `None` when the store is closed. A watcher that falls more
    /// than the channel's capacity behind gets `Some(Err(lagged))` and must re-read by prefix.
    pub async fn next(&mut self) -> Option<Result<Event, u64>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            match self.rx.recv().await {
                Ok(batch) => self
                    .pending
                    .extend(batch.iter().filter(|e| e.key().starts_with(&self.prefix)).cloned()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => return Some(Err(n)),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The etcd v3 model. `txn` is async because a remote backend waits on the network; the embedded
/// backend waits on its committer's fsync.
pub trait Store: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// All keys starting with `prefix`, in key order, and the revision they were read at.
    fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)>;
    /// Commits `txn`. It is ordered when this is called, before the future is polled: a
    /// transaction submitted later by anyone commits after it.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>>;
    fn watch(&self, prefix: &str) -> Watcher;
}
