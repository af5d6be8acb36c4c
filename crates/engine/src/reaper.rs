//! The reaper: deletes host-side veths off the critical path. Deleting a link returns only after
//! the kernel's `netdev_run_todo` has waited for an RCU barrier (15–25 ms here, mostly idle time
//! outside RTNL), which would make every teardown cost that much. The engine hands the deletion
//! to this thread and gives the link's address back to its pool only after the link is gone, so
//! an address is never live twice. A daemon killed with deletions pending leaves veths no record
//! owns, which reconcile removes before the API is served.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::network::detach_bridge;

type Job = (String, Box<dyn FnOnce() + Send>);

pub(crate) struct Reaper {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reaper {
    /// Starts the thread; it lives in the namespace of the caller (the daemon's).
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new().name("veth-reaper".into()).spawn(move || {
            while let Ok((ifname, then)) = rx.recv() {
                if let Err(e) = detach_bridge(&ifname) {
                    tracing::error!(%ifname, error = %e, "deleting veth failed; reconcile will retry");
                    continue; // keep the address reserved: the link may still carry it
                }
                then();
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
                if detach_bridge(&ifname).is_ok() {
                    then();
                }
            }
        }
    }

    /// Finishes the pending deletions and stops the thread.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
