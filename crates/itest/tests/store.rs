//! The store conformance suite: the same tests against every backend, the embedded store and a
//! real etcd (one member, or three, in namespaces of the test's own). The engine relies on the
//! model, not on a backend: transactions with compares, revisions, prefix reads, watches from a
//! revision, compaction; and, for etcd, on requests that fail fast and recover when the
//! connection is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_itest::cluster::{in_netns, EtcdCluster, Netns, Underlay, ETCD_PORT};
use weft_store::{BoxFuture, Compare, Embedded, Etcd, Event, Op, Store, StoreError, Timeouts, Txn};

type Case = fn(Arc<dyn Store>) -> BoxFuture<()>;

fn timeouts() -> Timeouts {
    Timeouts { connect: Duration::from_secs(1), request: Duration::from_secs(2), keepalive: Duration::from_secs(1) }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn on_embedded(case: Case) {
    let dir = std::env::temp_dir().join(format!("weft-itest-store-{}-{}", std::process::id(), weft_store_seq()));
    std::fs::create_dir_all(&dir).expect("dir");
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(Embedded::open(&dir.join("s.redb")).expect("open"));
        case(store).await;
    });
    std::fs::remove_dir_all(&dir).expect("remove the store's dir");
}

fn weft_store_seq() -> u32 {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// `case` against a one-member etcd of its own, from a client in the member's namespace.
fn on_etcd(case: Case) {
    let ul = Underlay::new("st");
    let etcd = EtcdCluster::start(&ul, "st", 1);
    in_netns(etcd.member_ns(0), move || {
        runtime().block_on(async {
            let store: Arc<dyn Store> = Arc::new(Etcd::connect(&[format!("127.0.0.1:{ETCD_PORT}")], None, timeouts()).await.expect("connect"));
            case(store).await;
        })
    });
}

fn put(k: &str, v: &str) -> Op {
    Op::Put(k.to_string(), v.as_bytes().to_vec())
}

async fn commit(s: &dyn Store, ops: Vec<Op>) -> u64 {
    let r = s.txn(Txn::ops(ops)).await.expect("txn");
    assert!(r.succeeded);
    r.revision
}

async fn next(w: &mut weft_store::Watcher) -> Event {
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Ok(e))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn revisions_and_prefixes(s: Arc<dyn Store>) {
    let r1 = commit(&*s, vec![put("/t/a/1", "x"), put("/t/a/2", "y"), put("/t/b/1", "z")]).await;
    let kv = s.get("/t/a/1").await.expect("get").expect("present");
    assert_eq!((kv.value.as_slice(), kv.create_revision, kv.mod_revision), (&b"x"[..], r1, r1));
    let r2 = commit(&*s, vec![put("/t/a/1", "x2")]).await;
    assert_eq!(r2, r1 + 1, "one revision per transaction");
    let kv = s.get("/t/a/1").await.expect("get").expect("present");
    assert_eq!((kv.value.as_slice(), kv.create_revision, kv.mod_revision), (&b"x2"[..], r1, r2));
    let (kvs, at) = s.range("/t/a/").await.expect("range");
    assert_eq!(kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["/t/a/1", "/t/a/2"], "a prefix, in key order");
    assert_eq!(at, r2, "read at the last revision");
    let r3 = commit(&*s, vec![Op::Delete("/t/a/2".into())]).await;
    assert!(s.get("/t/a/2").await.expect("get").is_none());
    assert_eq!(s.range("/t/").await.expect("range").0.len(), 2);
    assert_eq!(s.range("/t/").await.expect("range").1, r3);
    assert!(s.get("/t/none").await.expect("get").is_none());
}

async fn compares_decide_the_branch(s: Arc<dyn Store>) {
    let create = |k: &str, v: &str| Txn { compare: vec![Compare::Missing(k.into())], success: vec![put(k, v)], failure: vec![put("/t/lost", v)], relaxed: false };
    let first = s.txn(create("/t/k", "1")).await.expect("txn");
    assert!(first.succeeded);
    let second = s.txn(create("/t/k", "2")).await.expect("txn");
    assert!(!second.succeeded, "the key exists");
    assert_eq!(s.get("/t/k").await.expect("get").expect("k").value, b"1");
    assert_eq!(s.get("/t/lost").await.expect("get").expect("the failure branch ran").value, b"2");
    let at = s.get("/t/k").await.expect("get").expect("k").mod_revision;
    let stale = Txn { compare: vec![Compare::ModRevision("/t/k".into(), at - 1)], success: vec![put("/t/k", "stale")], ..Txn::default() };
    assert!(!s.txn(stale).await.expect("txn").succeeded, "a stale revision fails");
    let fresh = Txn { compare: vec![Compare::ModRevision("/t/k".into(), at)], success: vec![put("/t/k", "3")], ..Txn::default() };
    assert!(s.txn(fresh).await.expect("txn").succeeded);
    assert_eq!(s.get("/t/k").await.expect("get").expect("k").value, b"3");
    // All compares must hold: one missing key and one present fail together.
    let both = Txn { compare: vec![Compare::Missing("/t/new".into()), Compare::Missing("/t/k".into())], success: vec![put("/t/new", "n")], ..Txn::default() };
    assert!(!s.txn(both).await.expect("txn").succeeded);
    assert!(s.get("/t/new").await.expect("get").is_none(), "nothing of a failed transaction is applied");
    // No key under a prefix: the prefix itself and longer keys count, a sibling does not.
    let none_under = |p: &str| Txn { compare: vec![Compare::NoneUnder(p.into())], success: vec![put("/t/u/ok", p)], ..Txn::default() };
    commit(&*s, vec![put("/t/u/0101", "a")]).await;
    for (p, free) in [("/t/u/0101", false), ("/t/u/01", false), ("/t/u/01011", true), ("/t/u/0100", true), ("/t/u/1", true), ("/t/v/", true)] {
        assert_eq!(s.txn(none_under(p)).await.expect("txn").succeeded, free, "NoneUnder({p})");
    }
}

async fn concurrent_creates_have_one_winner(s: Arc<dyn Store>) {
    let futs: Vec<_> = (0..64).map(|i| s.txn(Txn { compare: vec![Compare::Missing("/t/claim".into())], success: vec![put("/t/claim", &i.to_string())], ..Txn::default() })).collect();
    let mut winners = Vec::new();
    for (i, f) in futs.into_iter().enumerate() {
        if f.await.expect("txn").succeeded {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
    assert_eq!(s.get("/t/claim").await.expect("get").expect("claim").value, winners[0].to_string().into_bytes());
}

async fn watches_replay_from_a_revision_then_follow(s: Arc<dyn Store>) {
    let r0 = commit(&*s, vec![put("/t/p/0", "0")]).await;
    let r1 = commit(&*s, vec![put("/t/p/1", "1"), put("/t/q/1", "elsewhere")]).await;
    let r2 = commit(&*s, vec![Op::Delete("/t/p/0".into())]).await;
    let mut w = s.watch("/t/p/", Some(r0));
    match next(&mut w).await {
        Event::Put(kv) => assert_eq!((kv.key.as_str(), kv.mod_revision), ("/t/p/1", r1)),
        e => panic!("expected the put of /t/p/1, got {e:?}"),
    }
    assert_eq!(next(&mut w).await, Event::Delete { key: "/t/p/0".into(), mod_revision: r2 });
    let r3 = commit(&*s, vec![put("/t/q/2", "elsewhere"), put("/t/p/2", "2")]).await;
    match next(&mut w).await {
        Event::Put(kv) => assert_eq!((kv.key.as_str(), kv.mod_revision, kv.value.as_slice()), ("/t/p/2", r3, &b"2"[..]), "only keys under the prefix"),
        e => panic!("expected the put of /t/p/2, got {e:?}"),
    }
    // A watch from now sees what comes after it, not what came before.
    let mut now = s.watch("/t/p/", None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r4 = commit(&*s, vec![put("/t/p/3", "3")]).await;
    assert_eq!(next(&mut now).await.revision(), r4);
    assert_eq!(next(&mut w).await.revision(), r4);
}

async fn compaction_is_reported_to_old_watches(s: Arc<dyn Store>) {
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(commit(&*s, vec![put("/t/c", &i.to_string())]).await);
    }
    s.compact(revs[3]).await.expect("compact");
    let mut old = s.watch("/t/", Some(revs[0]));
    match tokio::time::timeout(Duration::from_secs(5), old.next()).await {
        Ok(Some(Err(StoreError::Compacted { oldest, .. }))) => assert!(oldest >= revs[3] && oldest <= revs[4], "oldest kept {oldest}, compacted at {}", revs[3]),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // From the compaction revision on, the history is there.
    let mut kept = s.watch("/t/", Some(revs[3] - 1));
    assert_eq!(next(&mut kept).await.revision(), revs[3]);
    assert_eq!(next(&mut kept).await.revision(), revs[4]);
}

async fn large_prefixes_are_read_whole(s: Arc<dyn Store>) {
    let value = "v".repeat(4096);
    for chunk in 0..12 {
        commit(&*s, (0..100).map(|i| put(&format!("/t/big/{:05}", chunk * 100 + i), &value)).collect()).await;
    }
    let during = commit(&*s, vec![put("/t/other", "x")]).await;
    let (kvs, at) = s.range("/t/big/").await.expect("range");
    assert_eq!(kvs.len(), 1200, "every key, past any one answer's size");
    assert!(kvs.windows(2).all(|w| w[0].key < w[1].key), "in key order");
    assert_eq!(at, during);
}

async fn leases_take_their_keys_with_them(s: Arc<dyn Store>) {
    let lease = s.grant(Duration::from_secs(10)).await.expect("grant");
    let r = commit(&*s, vec![Op::PutLeased("/t/n/host".into(), b"up".to_vec(), lease), put("/t/n/plain", "stays")]).await;
    assert!(s.keep_alive(lease).await.expect("keep alive"), "a live lease renews");
    s.revoke(lease).await.expect("revoke");
    assert!(s.get("/t/n/host").await.expect("get").is_none(), "the leased key went with its lease");
    assert!(s.get("/t/n/plain").await.expect("get").is_some(), "a key without the lease stays");
    let mut w = s.watch("/t/n/", Some(r));
    match next(&mut w).await {
        Event::Delete { key, .. } => assert_eq!(key, "/t/n/host", "the end of a lease is a delete event"),
        e => panic!("expected the lease's delete, got {e:?}"),
    }
    assert!(!s.keep_alive(lease).await.expect("keep alive"), "an ended lease does not renew");
    // A key put again without the lease is no longer the lease's.
    let l2 = s.grant(Duration::from_secs(10)).await.expect("grant");
    commit(&*s, vec![Op::PutLeased("/t/n/re".into(), b"1".to_vec(), l2)]).await;
    commit(&*s, vec![put("/t/n/re", "2")]).await;
    s.revoke(l2).await.expect("revoke");
    assert_eq!(s.get("/t/n/re").await.expect("get").expect("re").value, b"2");
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $case() { super::on_embedded(|s| Box::pin(super::$case(s))) } )*
        }
        mod etcd {
            $( #[test] fn $case() { super::on_etcd(|s| Box::pin(super::$case(s))) } )*
        }
    };
}

conformance!(revisions_and_prefixes, compares_decide_the_branch, concurrent_creates_have_one_winner, watches_replay_from_a_revision_then_follow, compaction_is_reported_to_old_watches, large_prefixes_are_read_whole, leases_take_their_keys_with_them);

/// How long `f` takes to fail with `Unavailable` (panics on anything else).
async fn unavailable_within<T: std::fmt::Debug>(what: &str, f: impl std::future::Future<Output = Option<Result<T, StoreError>>>) -> Duration {
    let t0 = Instant::now();
    match tokio::time::timeout(Duration::from_secs(15), f).await {
        Ok(Some(Err(StoreError::Unavailable(_)))) => t0.elapsed(),
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

/// etcd: with its only member gone, requests and watches fail within the client's deadlines
/// (never hang); when it is back, the same client goes on and a watch from the last revision
/// seen misses nothing.
#[test]
fn etcd_lost_connection_fails_fast_and_recovers() {
    let ul = Underlay::new("sl");
    let mut etcd = EtcdCluster::start(&ul, "sl", 1);
    let ns = etcd.member_ns(0).to_string();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        in_netns(&ns, move || {
            runtime().block_on(async move {
                let s: Arc<dyn Store> = Arc::new(Etcd::connect(&[format!("127.0.0.1:{ETCD_PORT}")], None, timeouts()).await.expect("connect"));
                let seen = commit(&*s, vec![put("/t/x", "1")]).await;
                let mut w = s.watch("/t/", Some(seen));
                tokio::time::sleep(Duration::from_millis(300)).await;
                tx.send(()).expect("signal");
                // The test kills the member; the requests start once it is gone (a get sent
                // before the kill could still be answered).
                killed_rx.recv().expect("member killed");
                let get = unavailable_within("get", async { Some(s.get("/t/x").await) }).await;
                let txn = unavailable_within("txn", async { Some(s.txn(Txn::ops(vec![put("/t/x", "2")])).await) }).await;
                let watch = unavailable_within("watch", w.next()).await;
                assert!(get < Duration::from_secs(5) && txn < Duration::from_secs(5), "requests fail within the deadline: get {get:?}, txn {txn:?}");
                assert!(watch < Duration::from_secs(8), "a watch learns of the lost member within the keepalive: {watch:?}");
                tx.send(()).expect("signal");
                back_rx.recv().expect("member back");
                // The same client reconnects; a watch from the last revision seen goes on.
                let t0 = Instant::now();
                let r = loop {
                    match s.txn(Txn::ops(vec![put("/t/x", "3")])).await {
                        Ok(r) => break r.revision,
                        Err(e) => assert!(t0.elapsed() < Duration::from_secs(15), "no recovery within 15 s: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                let mut w = s.watch("/t/", Some(seen));
                match next(&mut w).await {
                    Event::Put(kv) => assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"3"[..], r)),
                    e => panic!("expected the put after recovery, got {e:?}"),
                }
            })
        })
    });
    rx.recv().expect("client ready");
    etcd.kill(0);
    killed_tx.send(()).expect("signal");
    rx.recv().expect("client saw the loss");
    etcd.restart(0);
    back_tx.send(()).expect("signal");
    client.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
}

/// etcd: with one member of three killed (whichever it is, the leader and the member the client
/// was using included), the same client of all three goes on writing and reading.
#[test]
fn etcd_one_member_down_changes_nothing() {
    let ul = Underlay::new("sm");
    let etcd = std::sync::Arc::new(std::sync::Mutex::new(EtcdCluster::start(&ul, "sm", 3)));
    let client = Netns::new(&format!("wt-sm-client-{}", std::process::id()));
    ul.join_ns(&client.0, "eth0", "192.168.200.10");
    let endpoints = etcd.lock().expect("etcd").endpoints();
    let cluster = etcd.clone();
    in_netns(&client.0, move || {
        runtime().block_on(async move {
            let s = Etcd::connect(&endpoints, None, timeouts()).await.expect("connect");
            for down in 0..3 {
                // The first member is the one the client uses first: it goes first.
                cluster.lock().expect("etcd").kill(down);
                let t0 = Instant::now();
                // An election may be under way if the leader went: it takes well under the deadline.
                let r = loop {
                    match s.txn(Txn::ops(vec![put("/t/k", &down.to_string())])).await {
                        Ok(r) => break r,
                        Err(e) => assert!(t0.elapsed() < Duration::from_secs(10), "writes stopped with member {down} down: {e}"),
                    }
                };
                assert!(r.succeeded);
                assert_eq!(s.get("/t/k").await.expect("get").expect("k").value, down.to_string().into_bytes());
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.lock().expect("etcd").restart(down)).await.expect("restart");
            }
        })
    });
}

/// etcd: a lease that is not renewed expires and takes its key (a dead host's registration goes);
/// one that is renewed stays.
#[test]
fn etcd_an_unrenewed_lease_expires() {
    on_etcd(|s| {
        Box::pin(async move {
            let dead = s.grant(Duration::from_secs(2)).await.expect("grant");
            let live = s.grant(Duration::from_secs(2)).await.expect("grant");
            let r = commit(&*s, vec![Op::PutLeased("/t/dead".into(), b"x".to_vec(), dead), Op::PutLeased("/t/live".into(), b"x".to_vec(), live)]).await;
            let mut w = s.watch("/t/", Some(r));
            let t0 = Instant::now();
            let gone = loop {
                assert!(s.keep_alive(live).await.expect("renew"), "the renewed lease lives");
                match tokio::time::timeout(Duration::from_millis(500), w.next()).await {
                    Ok(Some(Ok(Event::Delete { key, .. }))) => break (key, t0.elapsed()),
                    Ok(other) => panic!("expected the expiry, got {other:?}"),
                    Err(_) => assert!(t0.elapsed() < Duration::from_secs(10), "the lease did not expire within 10 s"),
                }
            };
            assert_eq!(gone.0, "/t/dead");
            assert!(gone.1 >= Duration::from_millis(1500), "not before its time to live: {:?}", gone.1);
            assert!(s.get("/t/live").await.expect("get").is_some());
        })
    });
}

/// The embedded store: leases end with the process that granted them (at the next open, their
/// keys are gone), as a host's registration goes with its daemon.
#[test]
fn embedded_leases_end_with_the_process() {
    let dir = std::env::temp_dir().join(format!("weft-itest-store-lease-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("s.redb");
    runtime().block_on(async {
        let s = Embedded::open(&path).expect("open");
        let lease = s.grant(Duration::from_secs(5)).await.expect("grant");
        commit(&s, vec![Op::PutLeased("/t/node".into(), b"x".to_vec(), lease), put("/t/rec", "y")]).await;
    });
    runtime().block_on(async {
        let s = Embedded::open(&path).expect("open again");
        assert!(s.get("/t/node").await.expect("get").is_none(), "the earlier process's leased key is gone");
        assert!(s.get("/t/rec").await.expect("get").is_some());
    });
    std::fs::remove_dir_all(&dir).expect("remove");
}
