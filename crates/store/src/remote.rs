//! A store shared by several daemons: one daemon serves its embedded store on a Unix socket
//! (`serve`), the others use it through `Remote`. The wire is one JSON object per line. On a
//! request connection the answers come in the order of the requests (so a transaction is ordered
//! when it is sent, as the trait asks); a `Watch` request turns its connection into a stream of
//! events. This is how two daemons share addresses before etcd: the same model, another
//! transport. A lost connection fails what is outstanding (`Closed`: the caller cannot know
//! whether a transaction committed, as with etcd) and the next request connects again (failing
//! at once while the server is down); a watch whose connection ends says so (`Closed`) and ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::{BoxFuture, Event, KeyValue, Result, Store, StoreError, Txn, TxnResponse, Watcher};

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Get(String),
    Range(String),
    Txn(Txn),
    Watch { prefix: String, after: Option<u64> },
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Value(Option<KeyValue>),
    Range(Vec<KeyValue>, u64),
    Txn(TxnResponse),
    Event(Event),
    Error(WireError),
}

/// A `StoreError` as it crosses the wire (causes become their messages).
#[derive(Debug, Serialize, Deserialize)]
enum WireError {
    Closed,
    Compacted { requested: u64, oldest: u64 },
    Lagged(u64),
    Corrupt(String),
    Other(String),
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => Self::Closed,
            StoreError::Compacted { requested, oldest } => Self::Compacted { requested, oldest },
            StoreError::Lagged(n) => Self::Lagged(n),
            StoreError::Corrupt(k) => Self::Corrupt(k),
            other => Self::Other(format!("{other}: {}", std::error::Error::source(&other).map(|s| s.to_string()).unwrap_or_default())),
        }
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Closed => Self::Closed,
            WireError::Compacted { requested, oldest } => Self::Compacted { requested, oldest },
            WireError::Lagged(n) => Self::Lagged(n),
            WireError::Corrupt(k) => Self::Corrupt(k),
            WireError::Other(m) => Self::Commit(m.into()),
        }
    }
}

fn line<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_else(|e| format!("{{\"Error\":{{\"Other\":\"encode: {e}\"}}}}").into_bytes());
    b.push(b'\n');
    b
}

/// Serves `store` to other daemons on `listener` until the listener fails.
pub async fn serve(store: Arc<dyn Store>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(serve_connection(store.clone(), conn));
            }
            Err(e) => {
                tracing::error!(error = %e, "store socket stopped accepting");
                return;
            }
        }
    }
}

async fn serve_connection(store: Arc<dyn Store>, conn: UnixStream) {
    let (r, mut w) = conn.into_split();
    let mut lines = BufReader::new(r).lines();
    // Answers in request order: each request is submitted to the store as it is read, its
    // answer awaited by the writer in turn (transactions of one connection share group commits).
    let (tx, mut rx) = mpsc::unbounded_channel::<BoxFuture<Response>>();
    let writer = tokio::spawn(async move {
        while let Some(answer) = rx.recv().await {
            if w.write_all(&line(&answer.await)).await.is_err() {
                return;
            }
        }
    });
    let ready = |r: Response| -> BoxFuture<Response> { Box::pin(std::future::ready(r)) };
    while let Ok(Some(text)) = lines.next_line().await {
        let answer: BoxFuture<Response> = match serde_json::from_str::<Request>(&text) {
            Err(e) => ready(Response::Error(WireError::Other(format!("bad request: {e}")))),
            Ok(Request::Get(k)) => {
                let f = store.get(&k);
                Box::pin(async move { f.await.map_or_else(|e| Response::Error(e.into()), Response::Value) })
            }
            Ok(Request::Range(p)) => {
                let f = store.range(&p);
                Box::pin(async move { f.await.map_or_else(|e| Response::Error(e.into()), |(kvs, rev)| Response::Range(kvs, rev)) })
            }
            Ok(Request::Txn(t)) => {
                let f = store.txn(t);
                Box::pin(async move { f.await.map_or_else(|e| Response::Error(e.into()), Response::Txn) })
            }
            Ok(Request::Watch { prefix, after }) => {
                let mut watch = store.watch(&prefix, after);
                while let Some(ev) = watch.next().await {
                    let r = ev.map_or_else(|e| Response::Error(e.into()), Response::Event);
                    if tx.send(ready(r)).is_err() {
                        break;
                    }
                }
                break;
            }
        };
        if tx.send(answer).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

type Pending = Arc<Mutex<VecDeque<oneshot::Sender<Response>>>>;
type Call = (Request, oneshot::Sender<Response>);

/// Another daemon's store, over its socket (see the module docs).
pub struct Remote {
    path: PathBuf,
    requests: mpsc::UnboundedSender<Call>,
}

/// One connection: its writing half, and the replies its reader owes (in request order).
struct Connection {
    w: tokio::net::unix::OwnedWriteHalf,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

async fn open_connection(path: &Path) -> std::io::Result<Connection> {
    let conn = UnixStream::connect(path).await?;
    let (r, w) = conn.into_split();
    let pending: Pending = Arc::default();
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (owed, flag) = (pending.clone(), alive.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(text)) = lines.next_line().await {
            let resp = serde_json::from_str(&text).unwrap_or_else(|e| Response::Error(WireError::Other(format!("bad answer: {e}"))));
            let Some(reply) = owed.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else { break };
            let _ = reply.send(resp);
        }
        tracing::warn!("the shared store's connection is closed");
        flag.store(false, std::sync::atomic::Ordering::SeqCst);
        // Outstanding requests fail as `Closed` when their senders drop here.
        owed.lock().unwrap_or_else(|p| p.into_inner()).clear();
    });
    Ok(Connection { w, pending, alive })
}

impl Remote {
    /// Connects to the store served at `path` (an error if it does not answer now).
    pub async fn connect(path: &Path) -> Result<Self> {
        let first = open_connection(path).await.map_err(|e| StoreError::Open { path: path.display().to_string(), source: Box::new(e) })?;
        let (requests, mut rx) = mpsc::unbounded_channel::<Call>();
        let path_buf = path.to_path_buf();
        // Requests go out in the order they were made, over one connection at a time.
        tokio::spawn(async move {
            let mut conn = Some(first);
            while let Some((req, reply)) = rx.recv().await {
                if conn.as_ref().is_none_or(|c| !c.alive.load(std::sync::atomic::Ordering::SeqCst)) {
                    conn = open_connection(&path_buf).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    continue; // the server is down: `reply` drops, the caller gets `Closed`
                };
                c.pending.lock().unwrap_or_else(|p| p.into_inner()).push_back(reply);
                if c.w.write_all(&line(&req)).await.is_err() {
                    c.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    conn = None;
                }
            }
        });
        Ok(Self { path: path.to_path_buf(), requests })
    }

    fn call(&self, req: Request) -> BoxFuture<Result<Response>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.requests.send((req, reply)).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            match rx.await.map_err(|_| StoreError::Closed)? {
                Response::Error(e) => Err(e.into()),
                r => Ok(r),
            }
        })
    }
}

fn unexpected(r: &Response) -> StoreError {
    StoreError::Read(format!("unexpected answer from the shared store: {r:?}").into())
}

impl Store for Remote {
    fn get(&self, key: &str) -> BoxFuture<Result<Option<KeyValue>>> {
        let f = self.call(Request::Get(key.to_string()));
        Box::pin(async move {
            match f.await? {
                Response::Value(v) => Ok(v),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn range(&self, prefix: &str) -> BoxFuture<Result<(Vec<KeyValue>, u64)>> {
        let f = self.call(Request::Range(prefix.to_string()));
        Box::pin(async move {
            match f.await? {
                Response::Range(kvs, rev) => Ok((kvs, rev)),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResponse>> {
        let f = self.call(Request::Txn(txn));
        Box::pin(async move {
            match f.await? {
                Response::Txn(t) => Ok(t),
                r => Err(unexpected(&r)),
            }
        })
    }

    /// A connection of its own; it starts when the server reads it, so a watch that must miss
    /// nothing gives `after` (the revision of a read).
    fn watch(&self, prefix: &str, after: Option<u64>) -> Watcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let (path, req) = (self.path.clone(), Request::Watch { prefix: prefix.to_string(), after });
        tokio::spawn(async move {
            let conn = match UnixStream::connect(&path).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(StoreError::Open { path: path.display().to_string(), source: Box::new(e) }));
                    return;
                }
            };
            let (r, mut w) = conn.into_split();
            if w.write_all(&line(&req)).await.is_err() {
                return;
            }
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(text)) = lines.next_line().await {
                let ev = match serde_json::from_str(&text) {
                    Ok(Response::Event(e)) => Ok(e),
                    Ok(Response::Error(e)) => Err(e.into()),
                    Ok(r) => Err(unexpected(&r)),
                    Err(e) => Err(StoreError::Read(Box::new(e))),
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
            // The server went away: events may be lost from here.
            let _ = tx.send(Err(StoreError::Closed));
        });
        Watcher::stream(prefix, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compare, Embedded, Op};

    /// Two clients of one served store: create-if-missing is exclusive across them, answers
    /// keep their order, watches see the other client's writes from a given revision.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_clients_share_one_store() {
        let dir = std::env::temp_dir().join(format!("weft-remote-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let store: Arc<dyn Store> = Arc::new(Embedded::open(&dir.join("db")).expect("open"));
        let sock = dir.join("store.sock");
        tokio::spawn(serve(store.clone(), UnixListener::bind(&sock).expect("bind")));
        let a = Arc::new(Remote::connect(&sock).await.expect("connect a"));
        let b = Arc::new(Remote::connect(&sock).await.expect("connect b"));
        let (_, rev0) = a.range("/ip/").await.expect("range");
        let mut watch = b.watch("/ip/", Some(rev0));

        // 2 x 100 claims of 50 keys: each key won exactly once.
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let key = format!("/ip/10.0.0.{}", i % 50);
                let t = Txn { compare: vec![Compare::Missing(key.clone())], success: vec![Op::Put(key, i.to_string().into_bytes())], ..Txn::default() };
                s.txn(t).await.expect("txn").succeeded
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.expect("join"));
        }
        assert_eq!(wins, 50);
        let (kvs, _) = b.range("/ip/").await.expect("range");
        assert_eq!(kvs.len(), 50);
        for _ in 0..50 {
            assert!(matches!(watch.next().await, Some(Ok(Event::Put(_)))));
        }
        // Transactions are ordered when sent: the second, sent before the first is awaited,
        // sees the first's key.
        let put = a.txn(Txn::ops(vec![Op::Put("/k".into(), b"v".to_vec())]));
        let create = a.txn(Txn { compare: vec![Compare::Missing("/k".into())], success: vec![Op::Put("/k".into(), b"w".to_vec())], ..Txn::default() });
        assert!(!create.await.expect("txn").succeeded);
        put.await.expect("put");
        assert_eq!(b.get("/k").await.expect("get").map(|kv| kv.value), Some(b"v".to_vec()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
