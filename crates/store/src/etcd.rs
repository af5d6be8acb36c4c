//! The etcd backend: the same model served by an etcd v3 cluster, through the `etcd-client`
//! crate (gRPC over HTTP/2, one connection balanced over the endpoints given).
//!
//! - Revisions are etcd's own (one per transaction, cluster-wide), so the engine's revision
//!   checks mean the same on both backends.
//! - Every request is a task of its own, so it is sent whether or not its future is awaited (a
//!   rollback drops the future of its release). Unlike the embedded store's one committer, etcd
//!   orders only what was awaited: two transactions submitted together commit in either order.
//! - A request that cannot reach a member (down, partitioned, no leader) fails within
//!   [`Timeouts::request`] with [`StoreError::Unavailable`]: nothing waits for etcd forever.
//! - A watch ends with `Unavailable` when its connection is lost and with `Compacted` when etcd
//!   no longer keeps its start: the watcher reads again and watches from the read's revision.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, CompactionOptions, Compare as ECompare, CompareOp, ConnectOptions, EventType, GetOptions, Txn as ETxn, TxnOp, WatchOptions};
use tokio::sync::mpsc;

use crate::{BoxError, BoxFuture, Compare, Event, KeyValue, Op, Result, Store, StoreError, Txn, TxnResponse, Watcher};

/// How many keys one page of a prefix read carries (etcd's answers are bounded in bytes).
const PAGE: i64 = 500;

/// The client's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To open a connection to a member.
    pub connect: Duration,
    /// For one request's answer (a watch: for its creation).
    pub request: Duration,
    /// HTTP/2 pings on an idle connection: a member that stops answering them is gone after
    /// `keepalive` + `keepalive` (so a watch learns of a lost member that quickly).
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(2), request: Duration::from_secs(5), keepalive: Duration::from_secs(2) }
    }
}

/// Client certificates for an etcd that requires TLS (`--store-ca/--store-cert/--store-key`).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM of the CA that signed the members' certificates.
    pub ca: Vec<u8>,
    /// PEM of this client's certificate and key (both or neither).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The etcd backend (see the module docs).
pub struct Etcd {
    members: Arc<Members>,
    endpoints: Vec<String>,
}

/// One client per member, the one that answered last (asked first), and until when each member
/// that refused a connection is asked last.
struct Members {
    clients: Vec<Client>,
    preferred: AtomicUsize,
    /// Per member: milliseconds since `epoch` until which it counts as down.
    down_until: Vec<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
    /// How long one member may take before the next is asked (the last live one asked gets
    /// the whole request deadline).
    attempt: Duration,
}

/// How long a member that refused a connection is asked last.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// What one attempt on one member came to.
enum Attempt<T> {
    Done(T),
    /// The member could not be reached or did not answer in time; `sent`: the request may
    /// have reached it (and been applied).
    Unreachable { error: StoreError, sent: bool },
    Failed(StoreError),
}

impl Members {
    /// Asks the members in turn, the one that answered last first, for as long as they cannot
    /// be reached; a member that does not answer within `attempt` is passed over.
    async fn each<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(Client, Attempt<()>) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let now = self.epoch.elapsed().as_millis() as u64;
        let down = |i: usize| self.down_until[i].load(Ordering::Relaxed) > now;
        let first = self.preferred.load(Ordering::Relaxed);
        let n = self.clients.len();
        // The preferred member first, the others after it, those known to be down last.
        let mut order: Vec<usize> = (0..n).map(|k| (first + k) % n).collect();
        order.sort_by_key(|i| down(*i));
        let live = order.iter().filter(|i| !down(**i)).count();
        let mut last = None;
        let mut sent = false;
        for (k, &i) in order.iter().enumerate() {
            let before = if sent { Attempt::Unreachable { error: StoreError::Closed, sent } } else { Attempt::Done(()) };
            let attempt = f(self.clients[i].clone(), before);
            // The last live member (or any member once none is live) gets the whole deadline.
            let outcome = match k + 1 < live {
                true => tokio::time::timeout(self.attempt, attempt).await.unwrap_or_else(|_| Attempt::Unreachable { error: StoreError::Unavailable("no answer in time".into()), sent: true }),
                false => attempt.await,
            };
            match outcome {
                Attempt::Done(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    self.down_until[i].store(0, Ordering::Relaxed);
                    return Ok(v);
                }
                Attempt::Unreachable { error, sent: s } => {
                    if !s {
                        self.down_until[i].store(self.epoch.elapsed().as_millis() as u64 + DOWN_FOR.as_millis() as u64, Ordering::Relaxed);
                    }
                    sent |= s;
                    last = Some(error);
                }
                Attempt::Failed(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StoreError::Closed))
    }

    /// Runs `f` (a request that changes nothing, or whose repetition is harmless) on the
    /// members in turn (see `each`).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.each(|c, _| {
            let fut = f(c);
            async move {
                match fut.await {
                    Ok(v) => Attempt::Done(v),
                    Err(StoreError::Unavailable(e)) => {
                        let sent = !never_sent(&e);
                        Attempt::Unreachable { error: StoreError::Unavailable(e), sent }
                    }
                    Err(e) => Attempt::Failed(e),
                }
            }
        })
        .await
    }
}

/// Why etcd did not answer, in a few words (the innermost cause: "Connection refused (os
/// error 111)", "etcdserver: no leader"), and whether the request never reached a member (its
/// connection could not be opened), so that it can be sent to another.
#[derive(Debug)]
struct Unreachable {
    why: String,
    never_sent: bool,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Unreachable {}

impl Unreachable {
    fn of(e: &etcd_client::Error) -> Self {
        // (etcd_client's error names no source: the chain starts at what it wraps.)
        let mut innermost: &(dyn std::error::Error + 'static) = match e {
            etcd_client::Error::GRpcStatus(s) => s,
            etcd_client::Error::TransportError(t) => t,
            etcd_client::Error::IoError(io) => io,
            _ => e,
        };
        let mut connect = matches!(e, etcd_client::Error::TransportError(_));
        while let Some(next) = innermost.source() {
            connect |= next.to_string().contains("connect");
            innermost = next;
        }
        let why = match e {
            etcd_client::Error::GRpcStatus(s) if std::error::Error::source(s).is_none() => s.message().to_string(),
            _ => innermost.to_string(),
        };
        Self { why, never_sent: connect }
    }
}

fn never_sent(e: &BoxError) -> bool {
    e.downcast_ref::<Unreachable>().is_some_and(|u| u.never_sent)
}

/// A failed request: `Unavailable` if etcd could not be reached or could not decide (no
/// connection, no leader, past the deadline), else `failed` (a refusal of the request itself).
fn classify(e: etcd_client::Error, failed: fn(BoxError) -> StoreError) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    let unreachable = match &e {
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::EndpointError(_) => true,
        E::GRpcStatus(s) => matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted),
        _ => false,
    };
    if unreachable {
        StoreError::Unavailable(Box::new(Unreachable::of(&e)))
    } else {
        failed(Box::new(e))
    }
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    classify(e, StoreError::Read)
}

/// etcd's answers carry revisions as i64; they are never negative.
fn rev(r: i64) -> u64 {
    r.max(0) as u64
}

fn key_value(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv.key_str().map_err(|_| StoreError::Corrupt(String::from_utf8_lossy(kv.key()).into_owned()))?;
    Ok(KeyValue { key: key.to_string(), value: kv.value().to_vec(), create_revision: rev(kv.create_revision()), mod_revision: rev(kv.mod_revision()) })
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // the empty prefix: every key
}

impl Etcd {
    /// Connects to the cluster at `endpoints` (`host:port` or `http(s)://host:port`). Fails if
    /// no member answers within the connect timeout.
    pub async fn connect(endpoints: &[String], tls: Option<Tls>, timeouts: Timeouts) -> Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("{scheme}://{e}") }).collect();
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeouts.connect)
            .with_timeout(timeouts.request)
            .with_keep_alive(timeouts.keepalive, timeouts.keepalive)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(t) = tls {
            let mut cfg = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(t.ca));
            if let Some((cert, key)) = t.identity {
                cfg = cfg.identity(etcd_client::Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(cfg);
        }
        let open = |e: etcd_client::Error| StoreError::Open { path: endpoints.join(","), source: Box::new(e) as BoxError };
        let mut clients = Vec::new();
        for e in &endpoints {
            clients.push(Client::connect([e], Some(opts.clone())).await.map_err(open)?);
        }
        let attempt = timeouts.request.min(Duration::from_secs(2));
        let down_until = clients.iter().map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        let store = Self { members: Arc::new(Members { clients, preferred: AtomicUsize::new(0), down_until, epoch: std::time::Instant::now(), attempt }), endpoints };
        // The connection is lazy: one read shows that a member answers. During an election
        // ("leader changed") it is asked again, until the request deadline.
        let t0 = std::time::Instant::now();
        loop {
            match store.get("/weft/").await {
                Ok(_) => return Ok(store),
                Err(StoreError::Unavailable(_)) if t0.elapsed() < timeouts.request => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(StoreError::Open { path: store.endpoints.join(","), source: Box::new(e) }),
            }
        }
    }

    /// Runs `f` (see [`Members::call`]: a request that may be repeated) in a task of its own:
    /// sent even if the future is dropped.
    fn spawn<T: Send + 'static, F, Fut>(&self, f: F) -> BoxFuture<Result<T>>
    where
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let members = self.members.clone();
        let task = tokio::spawn(async move { members.call(f).await });
        Box::pin(async move { task.await.map_err(|e| StoreError::Commit(Box::new(e)))? })
    }
}

/// Whether every write of `writes` is what the store holds (puts there with exactly that value,
/// deletes gone).
async fn already_written(c: &Client, writes: &[Op]) -> Result<bool> {
    let mut kv = c.kv_client();
    for w in writes {
        let (key, want) = match w {
            Op::Put(k, v) | Op::PutLeased(k, v, _) => (k, Some(v)),
            Op::Delete(k) => (k, None),
        };
        let resp = kv.get(key.clone(), None).await.map_err(unavailable)?;
        if resp.kvs().first().map(|kv| kv.value()) != want.map(Vec::as_slice) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every key under `prefix` at one revision, page by page.
async fn range_all(client: Client, prefix: String) -> Result<(Vec<KeyValue>, u64)> {
    let mut kv = client.kv_client();
    let end = prefix_end(&prefix);
    let mut from = prefix.into_bytes();
    let mut at: Option<i64> = None;
    let mut out = Vec::new();
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if let Some(r) = at {
            opts = opts.with_revision(r);
        }
        let resp = kv.get(from.clone(), Some(opts)).await.map_err(unavailable)?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let at_rev = *at.get_or_insert(revision);
        for k in resp.kvs() {
            out.push(key_value(k)?);
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((out, rev(at_rev))),
        }
    }
}

fn txn_op(op: Op) -> TxnOp {
    match op {
        Op::Put(k, v) => TxnOp::put(k, v, None),
        Op::PutLeased(k, v, lease) => TxnOp::put(k, v, Some(etcd_client::PutOptions::new().with_lease(lease))),
        Op::Delete(k) => TxnOp::delete(k, None),
    }
}

impl Store for Etcd {
    fn get(&self, key: &str) -> BoxFuture<Result<Option<KeyValue>>> {
        let key = key.to_string();
        self.spawn(move |c| {
            let key = key.clone();
            async move {
                let resp = c.kv_client().get(key, None).await.map_err(unavailable)?;
                resp.kvs().first().map(key_value).transpose()
            }
        })
    }

    fn range(&self, prefix: &str) -> BoxFuture<Result<(Vec<KeyValue>, u64)>> {
        let prefix = prefix.to_string();
        self.spawn(move |c| range_all(c, prefix.clone()))
    }

    /// A transaction that may have reached a member that then went silent is sent to the next;
    /// if that one's compares fail, and what the transaction writes is exactly there, the first
    /// one committed it (every write of weft's carries ids of its own): it counts as done.
    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResponse>> {
        let compare: Vec<ECompare> = txn
            .compare
            .iter()
            .map(|c| match c {
                Compare::Missing(k) => ECompare::create_revision(k.clone(), CompareOp::Equal, 0),
                Compare::ModRevision(k, r) => ECompare::mod_revision(k.clone(), CompareOp::Equal, *r as i64),
                Compare::NoneUnder(p) => ECompare::create_revision(p.clone(), CompareOp::Equal, 0).with_range(prefix_end(p)),
            })
            .collect();
        let t = ETxn::new().when(compare).and_then(txn.success.iter().cloned().map(txn_op).collect::<Vec<_>>()).or_else(txn.failure.iter().cloned().map(txn_op).collect::<Vec<_>>());
        let members = self.members.clone();
        let task = tokio::spawn(async move {
            let writes = txn.success;
            members
                .each(|c, before| {
                    let (t, writes) = (t.clone(), writes.clone());
                    let maybe_applied = matches!(before, Attempt::Unreachable { sent: true, .. });
                    async move {
                        let resp = match c.kv_client().txn(t).await {
                            Ok(r) => TxnResponse { succeeded: r.succeeded(), revision: rev(r.header().map(|h| h.revision()).unwrap_or_default()) },
                            Err(e) => {
                                return match classify(e, StoreError::Commit) {
                                    StoreError::Unavailable(e) => Attempt::Unreachable { sent: !never_sent(&e), error: StoreError::Unavailable(e) },
                                    e => Attempt::Failed(e),
                                }
                            }
                        };
                        if resp.succeeded || !maybe_applied {
                            return Attempt::Done(resp);
                        }
                        match already_written(&c, &writes).await {
                            Ok(true) => Attempt::Done(TxnResponse { succeeded: true, ..resp }),
                            Ok(false) => Attempt::Done(resp),
                            Err(e) => Attempt::Failed(e),
                        }
                    }
                })
                .await
        });
        Box::pin(async move { task.await.map_err(|e| StoreError::Commit(Box::new(e)))? })
    }

    fn watch(&self, prefix: &str, after: Option<u64>) -> Watcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let (members, key) = (self.members.clone(), prefix.to_string());
        tokio::spawn(async move {
            let start = after.map(|a| a as i64 + 1);
            let mut opts = WatchOptions::new().with_prefix();
            if let Some(s) = start {
                opts = opts.with_start_revision(s);
            }
            // Opening a watch changes nothing: it may be tried on every member.
            let opened = members.call(|c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.watch_client().watch(key, Some(opts)).await.map_err(unavailable) }
            });
            let mut stream = match opened.await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            loop {
                let resp = tokio::select! {
                    r = stream.message() => r,
                    _ = tx.closed() => return, // the watcher was dropped: the stream goes with us
                };
                let resp = match resp {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        let _ = tx.send(Err(StoreError::Unavailable("the watch stream ended".into())));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(unavailable(e)));
                        return;
                    }
                };
                if resp.compact_revision() > 0 {
                    let _ = tx.send(Err(StoreError::Compacted { requested: start.map_or(0, rev), oldest: rev(resp.compact_revision()) }));
                    return;
                }
                if resp.canceled() {
                    let _ = tx.send(Err(StoreError::Unavailable(format!("the watch was cancelled: {}", resp.cancel_reason()).into())));
                    return;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let ev = match ev.event_type() {
                        EventType::Put => key_value(kv).map(Event::Put),
                        EventType::Delete => key_value(kv).map(|kv| Event::Delete { key: kv.key, mod_revision: kv.mod_revision }),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        });
        Watcher::stream(prefix, rx)
    }

    fn compact(&self, revision: u64) -> BoxFuture<Result<()>> {
        self.spawn(move |c| async move {
            c.kv_client().compact(revision as i64, Some(CompactionOptions::new().with_physical())).await.map_err(|e| classify(e, StoreError::Commit))?;
            Ok(())
        })
    }

    fn grant(&self, ttl: Duration) -> BoxFuture<Result<i64>> {
        let secs = ttl.as_secs().max(1) as i64;
        self.spawn(move |c| async move { Ok(c.lease_client().grant(secs, None).await.map_err(|e| classify(e, StoreError::Commit))?.id()) })
    }

    fn keep_alive(&self, lease: i64) -> BoxFuture<Result<bool>> {
        self.spawn(move |c| async move {
            let renewed = async {
                let (mut keeper, mut answers) = c.lease_client().keep_alive(lease).await?;
                keeper.keep_alive().await?;
                answers.message().await
            };
            match renewed.await {
                Ok(Some(a)) => Ok(a.ttl() > 0),
                Ok(None) => Err(StoreError::Unavailable("the lease's keep-alive stream ended".into())),
                // An ended lease: etcd says so as an error.
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("lease not found") => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn revoke(&self, lease: i64) -> BoxFuture<Result<()>> {
        self.spawn(move |c| async move {
            match c.lease_client().revoke(lease).await {
                Ok(_) => Ok(()),
                // Already gone (expired): what was asked is done.
                Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("lease not found") => Ok(()),
                Err(e) => Err(classify(e, StoreError::Commit)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_the_next_key() {
        assert_eq!(prefix_end("/weft/"), b"/weft0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
