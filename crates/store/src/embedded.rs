//! The embedded backend: one redb file and a committer thread doing group commit.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::{
    BoxFuture, Compare, Event, KeyValue, Op, Result, Store, StoreError, Txn, TxnResponse, Watcher,
};

/// key -> create_revision (8 bytes LE) ++ mod_revision (8 bytes LE) ++ value
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// key -> the lease it was put with (see `Store::grant`).
const LEASED: TableDefinition<&str, i64> = TableDefinition::new("leased");
const REVISION: &str = "revision";
/// How many transactions one fsync may cover.
const MAX_BATCH: usize = 256;
/// How many committed batches of events a watch may start from (older: compacted).
const HISTORY: usize = 4096;

type Request = (Txn, oneshot::Sender<Result<TxnResponse>>);

/// The embedded store (see the crate docs).
pub struct Embedded {
    db: Arc<Database>,
    tx: Option<mpsc::Sender<Request>>,
    committer: Option<std::thread::JoinHandle<()>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    history: Arc<Mutex<History>>,
    /// The leases granted by this process (they end with it).
    leases: Mutex<std::collections::HashSet<i64>>,
}

/// The last committed batches of events, for watches that start at a revision.
struct History {
    batches: VecDeque<Arc<Vec<Event>>>,
    /// The first revision kept (everything before it is compacted).
    oldest: u64,
}

impl History {
    /// Records a committed batch and sends it to the live watchers, under the lock a new
    /// watcher subscribes under: nothing is missed or seen twice.
    fn publish(&mut self, events: &broadcast::Sender<Arc<Vec<Event>>>, evs: Vec<Event>) {
        let batch = Arc::new(evs);
        self.batches.push_back(batch.clone());
        while self.batches.len() > HISTORY {
            if let Some(old) = self.batches.pop_front() {
                self.oldest = old.iter().map(|e| e.revision() + 1).max().unwrap_or(self.oldest).max(self.oldest);
            }
        }
        let _ = events.send(batch);
    }
}

impl Drop for Embedded {
    /// Closing the channel ends the committer after its last batch; joining it releases the file.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
    }
}

fn encode(create: u64, modr: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + value.len());
    v.extend_from_slice(&create.to_le_bytes());
    v.extend_from_slice(&modr.to_le_bytes());
    v.extend_from_slice(value);
    v
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue> {
    let rev = |r: &[u8]| -> Result<u64> {
        Ok(u64::from_le_bytes(r.try_into().map_err(|_| StoreError::Corrupt(key.to_string()))?))
    };
    if raw.len() < 16 {
        return Err(StoreError::Corrupt(key.to_string()));
    }
    Ok(KeyValue {
        key: key.to_string(),
        create_revision: rev(&raw[..8])?,
        mod_revision: rev(&raw[8..16])?,
        value: raw[16..].to_vec(),
    })
}

fn rd<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Read(Box::new(e.into()))
}
fn cm<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Commit(Box::new(e.into()))
}

fn current_revision(db: &Database) -> Result<u64> {
    let r = db.begin_read().map_err(rd)?;
    Ok(r.open_table(META).map_err(rd)?.get(REVISION).map_err(rd)?.map(|v| v.value()).unwrap_or(0))
}

impl Embedded {
    /// Opens (or creates) the store file at `path` and starts its committer thread.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |e: redb::Error| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let db = Database::create(path).map_err(|e| open_err(e.into()))?;
        {
            let w = db.begin_write().map_err(|e| open_err(e.into()))?;
            w.open_table(KV).map_err(|e| open_err(e.into()))?;
            w.open_table(META).map_err(|e| open_err(e.into()))?;
            w.open_table(LEASED).map_err(|e| open_err(e.into()))?;
            w.commit().map_err(|e| open_err(e.into()))?;
        }
        // An earlier process's leases ended with it: their keys go (before any watcher exists).
        let leased = leased_keys(&db, None).map_err(|e| StoreError::Open { path: path.display().to_string(), source: Box::new(e) })?;
        if !leased.is_empty() {
            let expire = Txn::ops(leased.into_iter().map(Op::Delete).collect());
            apply_batch(&db, true, std::iter::once(&expire)).map_err(|e| StoreError::Open { path: path.display().to_string(), source: Box::new(e) })?;
        }
        let db = Arc::new(db);
        let oldest = current_revision(&db).map_err(|e| StoreError::Open { path: path.display().to_string(), source: Box::new(e) })? + 1;
        let history = Arc::new(Mutex::new(History { batches: VecDeque::new(), oldest }));
        let (tx, rx) = mpsc::channel::<Request>();
        let (events, _) = broadcast::channel(4096);
        let (db2, ev2, h2, reserve) = (db.clone(), events.clone(), history.clone(), Reserve::new(path));
        let committer = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || committer(&db2, &rx, &ev2, &h2, reserve))
            .map_err(|e| open_err(redb::Error::Io(e)))?;
        Ok(Self { db, tx: Some(tx), committer: Some(committer), events, history, leases: Mutex::default() })
    }
}

/// Room kept for the store on a full disk: `<store>.reserve`, [`Reserve::SIZE`] bytes of
/// allocated blocks beside the database. Before each commit, if its filesystem has less than
/// that free, the reserve is given back, so that the commit (a removal above all: `rm -f` of what
/// filled the disk) finds room instead of failing; it is made again once there is room for it
/// twice over. (redb cannot be trusted to go on after a write it could not finish.)
struct Reserve {
    path: std::path::PathBuf,
    made: bool,
}

impl Reserve {
    const SIZE: u64 = 16 << 20;

    fn new(store: &Path) -> Self {
        let mut name = store.as_os_str().to_owned();
        name.push(".reserve");
        let path = std::path::PathBuf::from(name);
        let made = std::fs::metadata(&path).is_ok_and(|m| m.len() == Self::SIZE);
        let mut r = Self { path, made };
        r.check();
        r
    }

    /// Free bytes of the filesystem the store is on.
    fn free(&self) -> Option<u64> {
        let dir = std::ffi::CString::new(self.path.parent()?.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: statvfs writes one struct statvfs into the zeroed local it is given; the path
        // is a NUL-terminated string that outlives the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::statvfs(dir.as_ptr(), &mut st) } != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }

    fn check(&mut self) {
        let Some(free) = self.free() else { return };
        if self.made && free < Self::SIZE {
            if std::fs::remove_file(&self.path).is_ok() {
                tracing::warn!(path = %self.path.display(), free, "the disk is nearly full: the store's reserve is given back so that commits (removals) go on");
            }
            self.made = false;
        } else if !self.made && free > 2 * Self::SIZE {
            let made = std::fs::File::create(&self.path).and_then(|f| {
                use std::os::fd::AsRawFd;
                // SAFETY: fallocate on the descriptor of the file just made, integer arguments.
                match unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, Self::SIZE as libc::off_t) } {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
            match made {
                Ok(()) => self.made = true,
                Err(e) => {
                    let _ = std::fs::remove_file(&self.path);
                    tracing::warn!(path = %self.path.display(), error = %e, "no reserve for the store");
                }
            }
        }
    }
}

fn committer(db: &Database, rx: &mpsc::Receiver<Request>, events: &broadcast::Sender<Arc<Vec<Event>>>, history: &Mutex<History>, mut reserve: Reserve) {
    while let Ok(first) = rx.recv() {
        reserve.check();
        let mut batch = VecDeque::from([first]);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push_back(r),
                Err(_) => break,
            }
        }
        // One fsync for the batch, unless every transaction in it may wait for the next one.
        let durable = batch.iter().any(|(t, _)| !t.relaxed);
        match apply_batch(db, durable, batch.iter().map(|(t, _)| t)) {
            Ok((responses, evs)) => {
                if !evs.is_empty() {
                    history.lock().unwrap_or_else(|p| p.into_inner()).publish(events, evs);
                }
                for ((_, reply), resp) in batch.into_iter().zip(responses) {
                    let _ = reply.send(Ok(resp));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                let msg = e.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Commit(Box::new(std::io::Error::other(msg.clone())))));
                }
            }
        }
    }
}

/// Applies the transactions in order inside one write transaction and commits it once.
fn apply_batch<'a>(
    db: &Database,
    durable: bool,
    txns: impl Iterator<Item = &'a Txn>,
) -> Result<(Vec<TxnResponse>, Vec<Event>)> {
    let mut w = db.begin_write().map_err(cm)?;
    w.set_durability(if durable { Durability::Immediate } else { Durability::None }).map_err(cm)?;
    let mut responses = Vec::new();
    let mut evs = Vec::new();
    {
        let mut kv = w.open_table(KV).map_err(cm)?;
        let mut meta = w.open_table(META).map_err(cm)?;
        let mut leased = w.open_table(LEASED).map_err(cm)?;
        let mut rev = meta.get(REVISION).map_err(cm)?.map(|v| v.value()).unwrap_or(0);
        for t in txns {
            let mut ok = true;
            for c in &t.compare {
                ok &= match c {
                    Compare::Missing(k) => kv.get(k.as_str()).map_err(cm)?.is_none(),
                    Compare::ModRevision(k, r) => match kv.get(k.as_str()).map_err(cm)? {
                        Some(v) => decode(k, v.value())?.mod_revision == *r,
                        None => false,
                    },
                    Compare::NoneUnder(p) => kv.range(p.as_str()..).map_err(cm)?.next().transpose().map_err(cm)?.is_none_or(|(k, _)| !k.value().starts_with(p.as_str())),
                };
            }
            let ops = if ok { &t.success } else { &t.failure };
            if !ops.is_empty() {
                rev += 1;
            }
            for op in ops {
                match op {
                    Op::Put(k, v) | Op::PutLeased(k, v, _) => {
                        match op {
                            Op::PutLeased(_, _, lease) => leased.insert(k.as_str(), *lease).map(drop).map_err(cm)?,
                            _ => leased.remove(k.as_str()).map(drop).map_err(cm)?,
                        }
                        let create = match kv.get(k.as_str()).map_err(cm)? {
                            Some(old) => decode(k, old.value())?.create_revision,
                            None => rev,
                        };
                        kv.insert(k.as_str(), encode(create, rev, v).as_slice()).map_err(cm)?;
                        evs.push(Event::Put(KeyValue {
                            key: k.clone(),
                            value: v.clone(),
                            create_revision: create,
                            mod_revision: rev,
                        }));
                    }
                    Op::Delete(k) => {
                        leased.remove(k.as_str()).map_err(cm)?;
                        if kv.remove(k.as_str()).map_err(cm)?.is_some() {
                            evs.push(Event::Delete { key: k.clone(), mod_revision: rev });
                        }
                    }
                }
            }
            responses.push(TxnResponse { succeeded: ok, revision: rev });
        }
        meta.insert(REVISION, rev).map_err(cm)?;
    }
    w.commit().map_err(cm)?;
    Ok((responses, evs))
}

/// The keys put with lease `lease` (`None`: with any lease).
fn leased_keys(db: &Database, lease: Option<i64>) -> Result<Vec<String>> {
    let r = db.begin_read().map_err(rd)?;
    let t = r.open_table(LEASED).map_err(rd)?;
    let mut keys = Vec::new();
    for item in t.iter().map_err(rd)? {
        let (k, l) = item.map_err(rd)?;
        if lease.is_none_or(|id| id == l.value()) {
            keys.push(k.value().to_string());
        }
    }
    Ok(keys)
}

impl Embedded {
    fn get_now(&self, key: &str) -> Result<Option<KeyValue>> {
        let r = self.db.begin_read().map_err(rd)?;
        let t = r.open_table(KV).map_err(rd)?;
        let v = t.get(key).map_err(rd)?;
        v.map(|v| decode(key, v.value())).transpose()
    }

    fn range_now(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)> {
        let r = self.db.begin_read().map_err(rd)?;
        let t = r.open_table(KV).map_err(rd)?;
        let rev = r.open_table(META).map_err(rd)?.get(REVISION).map_err(rd)?.map(|v| v.value()).unwrap_or(0);
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(rd)? {
            let (k, v) = item.map_err(rd)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(decode(k.value(), v.value())?);
        }
        Ok((out, rev))
    }
}

impl Store for Embedded {
    /// (A read of redb's pages, served from the page cache: done in place.)
    fn get(&self, key: &str) -> BoxFuture<Result<Option<KeyValue>>> {
        Box::pin(std::future::ready(self.get_now(key)))
    }

    fn range(&self, prefix: &str) -> BoxFuture<Result<(Vec<KeyValue>, u64)>> {
        Box::pin(std::future::ready(self.range_now(prefix)))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResponse>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.as_ref().map(|tx| tx.send((txn, reply)));
        Box::pin(async move {
            sent.ok_or(StoreError::Closed)?.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn watch(&self, prefix: &str, after: Option<u64>) -> Watcher {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.events.subscribe();
        let backlog = match after {
            None => Vec::new(),
            Some(a) if a + 1 < h.oldest => vec![Err(StoreError::Compacted { requested: a + 1, oldest: h.oldest })],
            Some(a) => h.batches.iter().flat_map(|b| b.iter()).filter(|e| e.revision() > a).cloned().map(Ok).collect(),
        };
        Watcher::batches(prefix, rx, backlog)
    }

    fn grant(&self, _ttl: std::time::Duration) -> BoxFuture<Result<i64>> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let id = leases.iter().max().map_or(1, |m| m + 1);
        leases.insert(id);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn keep_alive(&self, lease: i64) -> BoxFuture<Result<bool>> {
        Box::pin(std::future::ready(Ok(self.leases.lock().unwrap_or_else(|p| p.into_inner()).contains(&lease))))
    }

    fn revoke(&self, lease: i64) -> BoxFuture<Result<()>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).remove(&lease);
        let keys = match leased_keys(&self.db, Some(lease)) {
            Ok(k) => k,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let done = self.txn(Txn::ops(keys.into_iter().map(Op::Delete).collect()));
        Box::pin(async move { done.await.map(drop) })
    }

    fn compact(&self, revision: u64) -> BoxFuture<Result<()>> {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        while h.batches.front().is_some_and(|b| b.iter().all(|e| e.revision() < revision)) {
            h.batches.pop_front();
        }
        h.oldest = h.oldest.max(revision);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (std::path::PathBuf, Embedded) {
        let dir = std::env::temp_dir().join(format!("weft-store-test-{}", crate_id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let s = Embedded::open(&dir.join("db")).expect("open");
        (dir, s)
    }
    fn crate_id() -> String {
        format!("{}-{:?}", std::process::id(), std::thread::current().id())
            .replace(['(', ')'], "")
    }

    #[tokio::test]
    async fn revisions_compare_and_prefix() {
        let (dir, s) = tmp();
        let put = |k: &str, v: &str| Op::Put(k.into(), v.as_bytes().to_vec());
        let r1 = s.txn(Txn::ops(vec![put("/a/1", "x"), put("/a/2", "y"), put("/b/1", "z")])).await;
        assert_eq!(r1.expect("txn").revision, 1);
        let kv = s.get("/a/1").await.expect("get").expect("present");
        assert_eq!((kv.create_revision, kv.mod_revision), (1, 1));
        // create-if-missing fails on an existing key and runs the failure branch
        let r2 = s
            .txn(Txn {
                compare: vec![Compare::Missing("/a/1".into())],
                success: vec![put("/a/1", "new")],
                failure: vec![put("/c", "lost")],
                relaxed: false,
            })
            .await
            .expect("txn");
        assert!(!r2.succeeded);
        assert_eq!(s.get("/a/1").await.expect("get").expect("present").value, b"x");
        assert!(s.get("/c").await.expect("get").is_some());
        // mod-revision CAS
        let ok = s
            .txn(Txn {
                compare: vec![Compare::ModRevision("/a/1".into(), 1)],
                success: vec![put("/a/1", "v2")],
                failure: vec![],
                relaxed: false,
            })
            .await
            .expect("txn");
        assert!(ok.succeeded);
        let kv = s.get("/a/1").await.expect("get").expect("present");
        assert_eq!((kv.create_revision, kv.mod_revision), (1, 3));
        let (items, rev) = s.range("/a/").await.expect("range");
        assert_eq!(items.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["/a/1", "/a/2"]);
        assert_eq!(rev, 3);
        drop(s);
        // reopen: everything durable
        let s = Embedded::open(&dir.join("db")).expect("reopen");
        assert_eq!(s.range("/").await.expect("range").1, 3);
        assert_eq!(s.get("/a/1").await.expect("get").expect("present").value, b"v2");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_are_exclusive_and_watched() {
        let (dir, s) = tmp();
        let s = Arc::new(s);
        let mut w = s.watch("/ip/", None);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.txn(Txn {
                    compare: vec![Compare::Missing("/ip/10.0.0.2".into())],
                    success: vec![Op::Put("/ip/10.0.0.2".into(), format!("{i}").into_bytes())],
                    failure: vec![],
                    relaxed: false,
                })
                .await
                .expect("txn")
                .succeeded
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.expect("join"));
        }
        assert_eq!(wins, 1, "exactly one create-if-missing wins");
        let ev = w.next().await.expect("open").expect("not lagged");
        assert!(matches!(ev, Event::Put(ref kv) if kv.key == "/ip/10.0.0.2"));
        s.txn(Txn::ops(vec![Op::Delete("/ip/10.0.0.2".into())])).await.expect("txn");
        assert!(matches!(w.next().await, Some(Ok(Event::Delete { .. }))));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn relaxed_commits_are_seen_at_once_and_kept_in_order() {
        let (dir, s) = tmp();
        let put = |k: &str| Op::Put(k.into(), b"v".to_vec());
        // Submitted, not yet awaited: what is submitted after it commits after it.
        let relaxed = s.txn(Txn::relaxed(vec![put("/exit/1"), Op::Delete("/gone".into())]));
        let durable = s.txn(Txn::ops(vec![put("/run/2")]));
        let (r, d) = (relaxed.await.expect("relaxed"), durable.await.expect("durable"));
        assert!(r.revision < d.revision, "{r:?} then {d:?}");
        assert!(s.get("/exit/1").await.expect("get").is_some(), "visible before any fsync");
        drop(s);
        // The durable commit carried the relaxed one to disk.
        let s = Embedded::open(&dir.join("db")).expect("reopen");
        assert!(s.get("/exit/1").await.expect("get").is_some() && s.get("/run/2").await.expect("get").is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn watches_start_at_a_revision_and_report_compaction() {
        let (dir, s) = tmp();
        let put = |k: &str| Txn::ops(vec![Op::Put(k.into(), b"v".to_vec())]);
        let r1 = s.txn(put("/w/1")).await.expect("txn").revision;
        s.txn(put("/other")).await.expect("txn");
        let r3 = s.txn(put("/w/3")).await.expect("txn").revision;
        // From after r1: the backlog under the prefix (r3), then what comes.
        let mut w = s.watch("/w/", Some(r1));
        assert_eq!(w.next().await.expect("open").expect("event").revision(), r3);
        let r4 = s.txn(put("/w/4")).await.expect("txn").revision;
        assert_eq!(w.next().await.expect("open").expect("event").revision(), r4);
        drop(s);
        // Reopened: what came before is not kept; a watch from before says so.
        let s = Embedded::open(&dir.join("db")).expect("reopen");
        let mut w = s.watch("/w/", Some(r1));
        assert!(matches!(w.next().await, Some(Err(StoreError::Compacted { oldest, .. })) if oldest == r4 + 1));
        let mut w = s.watch("/w/", Some(r4));
        let r5 = s.txn(put("/w/5")).await.expect("txn").revision;
        assert_eq!(w.next().await.expect("open").expect("event").revision(), r5, "from the current revision: nothing lost");
        let _ = std::fs::remove_dir_all(dir);
    }
}
