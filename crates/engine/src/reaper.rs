//! The reaper: deletes host-side veths off the critical path, in batches. Deleting a link returns
//! only after the kernel's `netdev_run_todo` has waited for an RCU barrier (15–25 ms here, mostly
//! idle time outside RTNL); one deletion per barrier would cap teardown at ~50 links/s and make
//! every teardown cost that much. Instead the engine queues the link, the reaper moves everything
//! queued into weft's link group (a fast `ip link set … group`) and deletes the group in one request
//! (`ip link delete group`), one barrier for the whole batch.
//!
//! A link's address goes back to its pool only after the link is gone, so an address is never live
//! twice. A daemon killed with deletions pending leaves veths no record owns, which reconcile
//! removes before the API is served.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::network::with_host;

/// The link group doomed veths are moved to (`ip link … group 0x77656674`, "weft").
pub const REAP_GROUP: u32 = 0x7765_6674;

type Job = (String, Box<dyn FnOnce() + Send>);

pub(crate) struct Reaper {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Deletes `names` (those still there) in one kernel transaction.
pub(crate) fn delete_links(names: &[String]) -> crate::Result<()> {
    with_host(|nl| {
        nl.set_group(names, REAP_GROUP)?;
        nl.delete_group(REAP_GROUP)
    })
}

impl Reaper {
    /// Starts the thread; it lives in the namespace of the caller (the daemon's).
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new().name("veth-reaper".into()).spawn(move || {
            let mut retry: Vec<Job> = Vec::new();
            loop {
                // Wait for work; with failed deletions pending, retry them within a second.
                let first = if retry.is_empty() {
                    match rx.recv() {
                        Ok(j) => Some(j),
                        Err(_) => return,
                    }
                } else {
                    match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                        Ok(j) => Some(j),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                };
                let mut batch: Vec<Job> = std::mem::take(&mut retry);
                batch.extend(first);
                while let Ok(j) = rx.try_recv() {
                    batch.push(j);
                }
                let names: Vec<String> = batch.iter().filter(|(n, _)| !n.is_empty()).map(|(n, _)| n.clone()).collect();
                if !names.is_empty() {
                    if let Err(e) = delete_links(&names) {
                        // Keep the addresses reserved (the links may still carry them) and retry.
                        tracing::error!(links = names.len(), error = %e, "deleting veths failed; retrying");
                        let (flushes, failed): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|(n, _)| n.is_empty());
                        retry = failed;
                        batch = flushes;
                    } else {
                        tracing::debug!(links = names.len(), "veths deleted");
                    }
                }
                // Completions after the deletions; flush markers (empty names) last.
                batch.sort_by_key(|(n, _)| n.is_empty());
                for (_, then) in batch {
                    then();
                }
            }
        })?;
        Ok(Self { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Deletes `ifname`, then runs `then` (which releases its address).
    pub fn reap(&self, ifname: String, then: impl FnOnce() + Send + 'static) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref() {
            Some(tx) => {
                let _ = tx.send((ifname, Box::new(then)));
            }
            None => {
                // Shutting down: do it inline.
                if ifname.is_empty() || delete_links(&[ifname]).is_ok() {
                    then();
                }
            }
        }
    }

    /// Returns once every deletion queued before the call is done.
    pub fn flush(&self) {
        let (done, wait) = channel::<()>();
        self.reap(String::new(), move || {
            let _ = done.send(());
        });
        let _ = wait.recv();
    }

    /// Finishes the pending deletions and stops the thread.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
