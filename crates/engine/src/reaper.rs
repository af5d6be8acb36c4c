//! The reaper: deletes host-side veths off the critical path, in batches. Deleting a link returns
//! only after the kernel's `netdev_run_todo` has waited for an RCU barrier (15–25 ms here, mostly
//! idle time outside RTNL); one deletion per barrier would cap teardown at ~50 links/s and make
//! every teardown cost that much. Instead the engine queues the link, the reaper moves everything
//! queued into weft's link group (a fast `ip link set … group`) and deletes the group in one request
//! (`ip link delete group`), one barrier for the whole batch.
//!
//! Deleting links holds the kernel's RTNL lock (and keeps a core busy) for milliseconds, which a
//! setup running at the same time waits for: the reaper yields to setups. It deletes when no
//! endpoint has been set up for `QUIET`, when the oldest queued link has waited `MAX_DELAY`, or at
//! once when someone waits for it (`flush`, `hurry`); under a steady stream of setups that makes
//! one batch per `MAX_DELAY` instead of one deletion per teardown (measured: setup p99 at 1 and
//! 100 endpoints 9–11 ms with immediate deletion, see `docs/architecture.md`).
//!
//! Endpoints without a host end (macvlan) in a namespace that lives on are deleted inside it by
//! the same thread, in the same batches (`reap_inside`).
//!
//! A link's address goes back to its pool only after the link is gone, so an address is never live
//! twice. A daemon killed with deletions pending leaves veths no record owns, which reconcile
//! removes before the API is served.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::network::with_host;

/// The link group doomed veths are moved to (`ip link … group 0x77656674`, "weft").
pub const REAP_GROUP: u32 = 0x7765_6674;

/// How long without a setup before queued links are deleted (longer than the hiccups of a steady
/// stream of setups, so that one slow setup does not start a deletion under the next).
const QUIET: Duration = Duration::from_millis(50);
/// The longest a queued link waits for a quiet moment. A batch's deletion stalls the setups that
/// run into it (tens of milliseconds at 1,000 bridge ports): at most one stall a second keeps it
/// under 1% of a steady stream of setups (measured at 1,000 ports: setup p99 92 ms with 500 ms).
/// Whoever needs the links gone sooner (a bridge at its port limit, a pool whose last addresses
/// wait here) hurries the reaper.
const MAX_DELAY: Duration = Duration::from_millis(1000);

/// What to do once a link is gone.
type Then = Box<dyn FnOnce() + Send>;

/// A queued link and what to do once it is gone; `Now` deletes everything queued at once.
enum Job {
    Link(String, Then),
    /// A link inside a namespace (an endpoint without a host end): (namespace, name).
    Inside(String, String, Then),
    Now(Option<Then>),
}

/// Setups in flight, and when the last one started (µs since `epoch`); and the reaper's own
/// backlog, for the metrics.
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    last_start: AtomicU64,
    /// Links queued and not yet deleted (host ends and links inside namespaces).
    queued: AtomicUsize,
    /// Links deleted, and the deletions (batches) that took them.
    deleted: AtomicU64,
    batches: AtomicU64,
}

impl Activity {
    fn done(&self, links: usize, batches: u64) {
        self.queued.fetch_sub(links, Ordering::Relaxed);
        self.deleted.fetch_add(links as u64, Ordering::Relaxed);
        self.batches.fetch_add(batches, Ordering::Relaxed);
    }

    fn quiet(&self) -> bool {
        let last = Duration::from_micros(self.last_start.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Relaxed) == 0 && self.epoch.elapsed().saturating_sub(last) >= QUIET
    }
}

/// Held while an endpoint's kernel work runs (see the module docs).
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct Reaper {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    activity: Arc<Activity>,
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
        let activity = Arc::new(Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_start: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            deleted: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let act = activity.clone();
        let thread = std::thread::Builder::new().name("veth-reaper".into()).spawn(move || {
            let mut links: Vec<(String, Box<dyn FnOnce() + Send>)> = Vec::new();
            let mut inside: Vec<(String, String, Then)> = Vec::new();
            let mut waiters: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
            let mut oldest: Option<Instant> = None;
            // After a failed deletion: not again before this (unless someone waits).
            let mut not_before: Option<Instant> = None;
            let mut now = false;
            let mut closed = false;
            loop {
                // Gather: block while idle; with links queued, poll for a quiet moment.
                let next = if links.is_empty() && inside.is_empty() && !now {
                    match rx.recv() {
                        Ok(j) => Some(j),
                        Err(_) => return,
                    }
                } else if closed {
                    None
                } else {
                    match rx.recv_timeout(Duration::from_millis(2)) {
                        Ok(j) => Some(j),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            closed = true; // shutting down: what is queued goes now
                            None
                        }
                    }
                };
                for j in next.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    match j {
                        Job::Link(name, then) => {
                            oldest.get_or_insert_with(Instant::now);
                            links.push((name, then));
                        }
                        Job::Inside(ns, name, then) => {
                            oldest.get_or_insert_with(Instant::now);
                            inside.push((ns, name, then));
                        }
                        Job::Now(waiter) => {
                            now = true;
                            waiters.extend(waiter);
                        }
                    }
                }
                let backing_off = not_before.is_some_and(|t| Instant::now() < t);
                let due = now || closed || (!backing_off && (act.quiet() || oldest.is_some_and(|t| t.elapsed() >= MAX_DELAY)));
                if !due {
                    continue;
                }
                let names: Vec<String> = links.iter().map(|(n, _)| n.clone()).collect();
                if !names.is_empty() {
                    match delete_links(&names) {
                        Ok(()) => {
                            tracing::debug!(links = names.len(), "veths deleted");
                            act.done(names.len(), 1);
                            for (_, then) in links.drain(..) {
                                then();
                            }
                            oldest = None;
                            not_before = None;
                        }
                        // Keep the addresses reserved (the links may still carry them); retry in
                        // a second.
                        Err(e) => {
                            tracing::error!(links = names.len(), error = %e, "deleting veths failed; retrying");
                            not_before = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
                // Links inside namespaces, one by one (a namespace already gone took its link).
                let n = inside.len();
                for (ns, name, then) in inside.drain(..) {
                    if let Err(e) = weft_kernel::netns::delete_link_in(std::path::Path::new(&ns), &name) {
                        tracing::debug!(link = %name, error = %e, "link not deleted inside (its namespace may be gone)");
                    }
                    then();
                }
                act.done(n, n as u64);
                if links.is_empty() {
                    oldest = None;
                }
                for w in waiters.drain(..) {
                    w();
                }
                now = false;
                if closed {
                    return; // (a deletion that failed now is the start-up reconcile's)
                }
            }
        })?;
        Ok(Self { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), activity })
    }

    /// Marks an endpoint's kernel work as running until the guard drops.
    pub fn busy(&self) -> Busy {
        let a = &self.activity;
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.last_start.store(a.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        Busy(a.clone())
    }

    /// Links waiting for deletion now; links deleted and the deletions that took them, since
    /// the start.
    pub fn backlog(&self) -> (usize, u64, u64) {
        let a = &self.activity;
        (a.queued.load(Ordering::Relaxed), a.deleted.load(Ordering::Relaxed), a.batches.load(Ordering::Relaxed))
    }

    fn send(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match (tx.as_ref(), job) {
            (Some(tx), job) => {
                let counted = matches!(job, Job::Link(..) | Job::Inside(..));
                if counted {
                    self.activity.queued.fetch_add(1, Ordering::Relaxed);
                }
                if tx.send(job).is_err() && counted {
                    self.activity.queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
            // Shutting down: do it inline.
            (None, Job::Link(ifname, then)) => {
                if delete_links(&[ifname]).is_ok() {
                    then();
                }
            }
            (None, Job::Inside(ns, ifname, then)) => {
                let _ = weft_kernel::netns::delete_link_in(std::path::Path::new(&ns), &ifname);
                then();
            }
            (None, Job::Now(waiter)) => {
                if let Some(w) = waiter {
                    w();
                }
            }
        }
    }

    /// Deletes `ifname` (within `MAX_DELAY`), then runs `then` (which releases its address).
    pub fn reap(&self, ifname: String, then: impl FnOnce() + Send + 'static) {
        self.send(Job::Link(ifname, Box::new(then)));
    }

    /// Deletes link `ifname` inside namespace `netns` (an endpoint without a host end), then
    /// runs `then`.
    pub fn reap_inside(&self, netns: String, ifname: String, then: impl FnOnce() + Send + 'static) {
        self.send(Job::Inside(netns, ifname, Box::new(then)));
    }

    /// Deletes what is queued now, without waiting for it.
    pub fn hurry(&self) {
        self.send(Job::Now(None));
    }

    /// Returns once every deletion queued before the call is done (or has failed).
    pub fn flush(&self) {
        let (done, wait) = channel::<()>();
        self.send(Job::Now(Some(Box::new(move || {
            let _ = done.send(());
        }))));
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
