//! The one way a cache follows keys of the store ([`follow`]): a read of the prefix, then its
//! watch from that read's revision; after a lost connection, the watch again from the last
//! revision seen; after lost events (compaction, a watcher left behind), the read again. The
//! caches of shared state (global networks, nodes, other hosts' claims, routed blocks) and the
//! event stream are fed this way and no other.

use std::sync::Arc;
use std::time::Duration;

use weft_store::{Event, KeyValue, Store, StoreError};

use crate::Result;

/// What a follower of a prefix is told.
pub(crate) enum Followed {
    /// Every key under the prefix as read at one revision (`.1`): the cache is rebuilt from it.
    Reset(Vec<KeyValue>, u64),
    /// One change after that revision.
    Change(Event),
}

/// Follows the keys under `prefix` into `sink`: returns once the first [`Followed::Reset`] is
/// applied, then a task goes on with the changes until the store closes.
pub(crate) async fn follow(store: Arc<dyn Store>, prefix: String, mut sink: impl FnMut(Followed) + Send + 'static) -> Result<()> {
    let (kvs, mut from) = store.range(&prefix).await?;
    sink(Followed::Reset(kvs, from));
    tokio::spawn(async move {
        loop {
            let mut w = store.watch(&prefix, Some(from));
            // Events lost for good (compacted, or a watcher left behind): read again. A lost
            // connection: watch again from the last revision seen, once the store answers.
            let reread = loop {
                match w.next().await {
                    None => return, // the store is closed
                    Some(Ok(ev)) => {
                        from = ev.revision();
                        sink(Followed::Change(ev));
                    }
                    Some(Err(e @ (StoreError::Compacted { .. } | StoreError::Lagged(_)))) => {
                        tracing::warn!(error = %e, prefix, "watch lost events; reading again");
                        break true;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, prefix, "watch ended; watching again");
                        break false;
                    }
                }
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            if reread {
                loop {
                    match store.range(&prefix).await {
                        Ok((kvs, rev)) => {
                            from = rev;
                            sink(Followed::Reset(kvs, rev));
                            break;
                        }
                        Err(e) => tracing::debug!(error = %e, prefix, "reading again"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(())
}
