//! The HTTP server around the API router: one task per connection, at most
//! [`MAX_CONNECTIONS`] at once and [`PER_PEER`] of one client process (the next is answered 503
//! and closed, so weftd never runs out of file descriptors and one client cannot lock the others
//! out), a first byte within [`IDLE_TIMEOUT`] and headers within [`HEADER_TIMEOUT`] (an idle or
//! half-open connection is closed), and a shutdown that ends within a second whatever clients
//! are connected: streams are told to end (see `api::Stopping`), connections to close, and what
//! is left is dropped.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub const MAX_CONNECTIONS: usize = 256;
/// Connections over the limit being answered 503 at once; beyond these, closed unanswered.
pub const MAX_REFUSING: usize = 32;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of one client process (by its pid) at once.
pub const PER_PEER: usize = 32;
/// How long a new connection may stay silent before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections per client process; an entry goes with its last connection.
#[derive(Clone, Default)]
struct Peers(Arc<std::sync::Mutex<std::collections::HashMap<i32, usize>>>);

/// One connection's place among its process's.
struct PeerSlot(Peers, i32);

impl Peers {
    fn take(&self, pid: i32) -> Option<PeerSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(pid).or_default();
        if *n >= PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot(self.clone(), pid))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}
/// How long connections get to finish once weftd is stopping.
const DRAIN: Duration = Duration::from_millis(700);

/// Serves `router` on `listener` until `shutdown` resolves; then sets `stopping` and drains.
pub async fn serve(listener: UnixListener, router: axum::Router, stopping: watch::Sender<bool>, shutdown: impl std::future::Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let peers = Peers::default();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // (A peer whose pid cannot be read counts as pid 0: all such share one allowance.)
        let pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
        let Some((slot, peer)) = slots.clone().try_acquire_owned().ok().and_then(|s| Some((s, peers.take(pid)?))) else {
            if let Ok(r) = refusing.clone().try_acquire_owned() {
                conns.spawn(async move {
                    refuse(stream).await;
                    drop(r);
                });
            }
            continue;
        };
        let svc = TowerToHyperService::new(router.clone());
        let mut stop = stopping.subscribe();
        conns.spawn(async move {
            let (_slot, _peer) = (slot, peer);
            // A connection that says nothing is closed before it holds its place for long.
            if !matches!(tokio::time::timeout(IDLE_TIMEOUT, stream.readable()).await, Ok(Ok(()))) {
                return;
            }
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// The answer to a connection over the limit: once its request is in (or after a moment), so
/// that the client reads the answer instead of a broken pipe.
async fn refuse(mut stream: tokio::net::UnixStream) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut head)).await;
    let body = format!(r#"{{"message":"too many connections: weftd serves at most {MAX_CONNECTIONS} at once, {PER_PEER} of one process"}}"#);
    let answer = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
