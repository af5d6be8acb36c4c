//! Queries for names weft does not hold go to the container's upstream servers, as a resolver
//! that cannot be poisoned from off the path and cannot be made to hold unbounded resources.
//!
//! Against forged answers (a container with `NET_RAW`, or a host on the LAN, spraying answers over
//! the port range): each forward goes out on its own socket, on a port the kernel picks at random,
//! `connect`ed to the server asked (the kernel drops datagrams from any other source), under a
//! random query ID and with the letters of the name in random case (0x20 encoding, as resolvers
//! do). Only an answer with that ID and that exact question, case included, is taken; anything
//! else is dropped and the wait goes on, so a forgery never discards the real answer either. The
//! client's ID and spelling are put back before it gets the answer. An attacker must guess port,
//! ID and case together (about 15 + 16 + one bit per letter) within the upstream's answer time.
//!
//! Against floods: forwards in flight are bounded in all and per container (dnsmasq's
//! `dns-forward-max`); past either bound the query is answered SERVFAIL at once, without a socket.
//! A socket per forward (not one shared socket: that would fix the port) costs one descriptor for
//! the forward's life, so the bound is also the resolver's share of the daemon's descriptors; the
//! answer's buffer is taken only once it has arrived. TCP connections from containers are bounded
//! the same way (per container and in all).

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per upstream attempt; two attempts stay under glibc's 5 s default.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1800);

/// How many of each the resolver holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Forwards in flight, all containers together (`weftd --dns-forward-max`).
    pub forwards: usize,
    /// Forwards in flight of one container (`weftd --dns-forward-max-per-container`).
    pub forwards_per_container: usize,
    /// TCP connections from containers to the resolver, in all.
    pub tcp: usize,
    /// TCP connections from one container.
    pub tcp_per_container: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { forwards: 1024, forwards_per_container: 128, tcp: 512, tcp_per_container: 16 }
    }
}

/// What an upstream answer must match to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Source, random ID, question with 0x20 case: the default, and the only mode of a release
    /// build's daemon.
    Strict,
    /// The first datagram on the forward's port, from anyone, with the client's own ID: how weft
    /// forwarded before the fix. Exists so the tests can show the attack succeeding against it.
    Off,
}

/// The daemon's forwarder: its limits and what is in flight.
pub struct Forwarder {
    limits: Limits,
    checks: Checks,
    forwards: Arc<Semaphore>,
    tcp: Arc<Semaphore>,
    /// What the resolvers did, for the metrics.
    pub stats: Stats,
}

/// Counts of the embedded DNS's UDP work since weftd started (the metrics read them).
#[derive(Debug, Default)]
pub struct Stats {
    /// Questions received.
    pub queries: std::sync::atomic::AtomicU64,
    /// Answered by weft itself (names of its networks, refusals of what may not leave).
    pub answered: std::sync::atomic::AtomicU64,
    /// Sent on to an upstream server, and of those, the ones that got no usable answer.
    pub forwarded: std::sync::atomic::AtomicU64,
    pub forward_failures: std::sync::atomic::AtomicU64,
    /// Not forwarded: over the forwarding bounds.
    pub refused: std::sync::atomic::AtomicU64,
    /// How long each forward waited for its upstream answer (or gave up).
    pub forward_seconds: ForwardLatency,
}

/// A histogram of forward latencies (Prometheus's own type, which the metrics register as is):
/// 250 µs to ~8 s.
#[derive(Debug, Clone)]
pub struct ForwardLatency(pub prometheus_client::metrics::histogram::Histogram);

impl Default for ForwardLatency {
    fn default() -> Self {
        Self(prometheus_client::metrics::histogram::Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00025, 2.0, 16)))
    }
}

impl Stats {
    pub(crate) fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A container's share of the forwarder, held by its serving tasks.
pub(crate) struct ClientShare {
    forwarder: Arc<Forwarder>,
    forwards: Arc<Semaphore>,
    tcp: Arc<Semaphore>,
}

/// One admitted forward or connection: its places in both bounds, given back on drop.
pub(crate) struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit, #[allow(dead_code)] OwnedSemaphorePermit);

impl Forwarder {
    pub fn new(limits: Limits, checks: Checks) -> Self {
        Self { limits, checks, forwards: Arc::new(Semaphore::new(limits.forwards)), tcp: Arc::new(Semaphore::new(limits.tcp)), stats: Stats::default() }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn share(self: &Arc<Self>) -> ClientShare {
        ClientShare {
            forwarder: self.clone(),
            forwards: Arc::new(Semaphore::new(self.limits.forwards_per_container)),
            tcp: Arc::new(Semaphore::new(self.limits.tcp_per_container)),
        }
    }
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new(Limits::default(), Checks::Strict)
    }
}

fn admit(mine: &Arc<Semaphore>, all: &Arc<Semaphore>) -> Option<Admitted> {
    let m = mine.clone().try_acquire_owned().ok()?;
    let a = all.clone().try_acquire_owned().ok()?;
    Some(Admitted(m, a))
}

impl ClientShare {
    /// A place for one more forward, or `None` past a bound (answer SERVFAIL).
    pub(crate) fn admit_forward(&self) -> Option<Admitted> {
        admit(&self.forwards, &self.forwarder.forwards)
    }

    /// A place for one more TCP connection, or `None` past a bound (close it).
    pub(crate) fn admit_tcp(&self) -> Option<Admitted> {
        admit(&self.tcp, &self.forwarder.tcp)
    }

    pub(crate) async fn udp(&self, query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
        let (s, t0) = (&self.forwarder.stats, std::time::Instant::now());
        Stats::add(&s.forwarded, 1);
        let answer = match self.forwarder.checks {
            Checks::Strict => forward_udp(query, upstream).await,
            Checks::Off => forward_udp_unchecked(query, upstream).await,
        };
        s.forward_seconds.0.observe(t0.elapsed().as_secs_f64());
        if answer.is_none() {
            Stats::add(&s.forward_failures, 1);
        }
        answer
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.forwarder.stats
    }

    pub(crate) async fn tcp(&self, query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
        forward_tcp(query, upstream).await
    }
}

/// A query as it goes upstream: a fresh ID, the name's letters in random case.
struct Outgoing {
    packet: Vec<u8>,
    /// Name, type and class of the question.
    question: Range<usize>,
}

impl Outgoing {
    /// `None` for a query whose question cannot be walked (the codec lets only well-formed
    /// single-question queries through, so this is a safety net, not a path).
    fn new(query: &[u8]) -> Option<Self> {
        if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
            return None;
        }
        let mut packet = query.to_vec();
        let mut off = 12;
        loop {
            let len = usize::from(*packet.get(off)?);
            if len == 0 {
                off += 1;
                break;
            }
            if len & 0xC0 != 0 {
                return None;
            }
            for b in packet.get_mut(off + 1..off + 1 + len)? {
                if b.is_ascii_alphabetic() && rand::random::<bool>() {
                    *b ^= 0x20;
                }
            }
            off += 1 + len;
        }
        let question = 12..off + 4;
        if packet.len() < question.end {
            return None;
        }
        packet[..2].copy_from_slice(&rand::random::<u16>().to_be_bytes());
        Some(Self { packet, question })
    }

    /// Whether `answer` answers this query (a response, this ID, this exact question); if so it
    /// is given the client's ID and spelling of `query`.
    fn take(&self, answer: &mut [u8], query: &[u8]) -> bool {
        let q = &self.question;
        let matches = answer.len() >= q.end
            && answer[..2] == self.packet[..2]
            && answer[2] & 0x80 != 0
            && answer[4..6] == [0, 1]
            && answer[q.clone()] == self.packet[q.clone()];
        if matches {
            answer[..2].copy_from_slice(&query[..2]);
            answer[q.clone()].copy_from_slice(&query[q.clone()]);
        }
        matches
    }
}

fn unspecified(server: &SocketAddr) -> SocketAddr {
    if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

async fn forward_udp(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    let out = Outgoing::new(query)?;
    for server in upstream {
        let Ok(s) = UdpSocket::bind(unspecified(server)).await else { continue };
        if s.connect(server).await.is_err() || s.send(&out.packet).await.is_err() {
            continue;
        }
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
        loop {
            if tokio::time::timeout_at(deadline, s.readable()).await.is_err() {
                break;
            }
            // The buffer exists only once something arrived: waiting forwards hold none.
            let mut buf = vec![0u8; 65535];
            match s.try_recv(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    if out.take(&mut buf, query) {
                        return Some(buf);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // Refused (nothing listens there) and the like: the next server.
                Err(_) => break,
            }
        }
    }
    None
}

async fn forward_udp_unchecked(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let Ok(s) = UdpSocket::bind(unspecified(server)).await else { continue };
        if s.send_to(query, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(Ok((n, _))) = tokio::time::timeout(UPSTREAM_TIMEOUT, s.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

async fn forward_tcp(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    let out = Outgoing::new(query)?;
    for server in upstream {
        let attempt = async {
            let mut s = TcpStream::connect(server).await.ok()?;
            s.write_all(&(out.packet.len() as u16).to_be_bytes()).await.ok()?;
            s.write_all(&out.packet).await.ok()?;
            let len = s.read_u16().await.ok()?;
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.ok()?;
            out.take(&mut buf, query).then_some(buf)
        };
        if let Ok(Some(r)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            return Some(r);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.Example.com` A IN, ID 0x1234.
    fn query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in ["www", "Example", "com"] {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn answer_to(packet: &[u8], question: &Range<usize>) -> Vec<u8> {
        let mut a = packet[..question.end].to_vec();
        a[2] |= 0x80;
        a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        a[6..8].copy_from_slice(&[0, 1]);
        a
    }

    #[test]
    fn ids_and_case_are_random_and_the_question_is_kept() {
        let q = query();
        let outs: Vec<Outgoing> = (0..64).map(|_| Outgoing::new(&q).expect("walkable")).collect();
        assert!(outs.iter().all(|o| o.question == (12..q.len())));
        assert!(outs.iter().all(|o| o.packet[o.question.clone()].eq_ignore_ascii_case(&q[o.question.clone()])));
        let ids: std::collections::HashSet<[u8; 2]> = outs.iter().map(|o| [o.packet[0], o.packet[1]]).collect();
        assert!(ids.len() > 32, "IDs repeat: {ids:?}");
        let spellings: std::collections::HashSet<&[u8]> = outs.iter().map(|o| &o.packet[o.question.clone()]).collect();
        assert!(spellings.len() > 32, "the name's case does not vary");
    }

    #[test]
    fn only_the_matching_answer_is_taken_and_the_client_sees_its_own_id_and_spelling() {
        let q = query();
        let out = Outgoing::new(&q).expect("walkable");
        let good = answer_to(&out.packet, &out.question);
        // The client's ID (what an attacker who knows the client's query would use).
        let mut client_id = good.clone();
        client_id[..2].copy_from_slice(&q[..2]);
        // The right ID, the name in the client's (or any other) case.
        let mut other_case = good.clone();
        other_case[out.question.clone()].copy_from_slice(&q[out.question.clone()]);
        let mut lower = good.clone();
        lower[out.question.clone()].make_ascii_lowercase();
        let mut upper = good.clone();
        upper[out.question.clone()].make_ascii_uppercase();
        // A query, not a response; another type; cut short.
        let mut not_response = good.clone();
        not_response[2] &= 0x7f;
        let mut other_type = good.clone();
        other_type[out.question.end - 3] = 28;
        let short = good[..out.question.end - 1].to_vec();
        for (what, mut bad) in [("client id", client_id), ("not a response", not_response), ("other type", other_type), ("short", short)] {
            assert!(!out.take(&mut bad, &q), "{what} taken");
        }
        // Case: at most one of the three other spellings can equal the random one by chance
        // (a name with letters in both cases: not both lower and upper).
        let taken = [other_case, lower, upper].into_iter().filter(|a| a[out.question.clone()] != out.packet[out.question.clone()]).all(|mut a| !out.take(&mut a, &q));
        assert!(taken, "another spelling was taken");
        let mut ok = good.clone();
        assert!(out.take(&mut ok, &q));
        assert_eq!(ok[..2], q[..2], "the client's ID");
        assert_eq!(ok[out.question.clone()], q[out.question.clone()], "the client's spelling");
    }

    #[test]
    fn bounds_are_per_client_and_in_all() {
        let f = Arc::new(Forwarder::new(Limits { forwards: 3, forwards_per_container: 2, tcp: 1, tcp_per_container: 1 }, Checks::Strict));
        let (a, b) = (f.share(), f.share());
        let a1 = a.admit_forward().expect("a 1");
        let _a2 = a.admit_forward().expect("a 2");
        assert!(a.admit_forward().is_none(), "a's own bound");
        let _b1 = b.admit_forward().expect("b 1");
        assert!(b.admit_forward().is_none(), "the bound in all");
        drop(a1);
        assert!(b.admit_forward().is_some(), "a place given back");
        let _t = a.admit_tcp().expect("tcp");
        assert!(b.admit_tcp().is_none(), "tcp in all");
    }
}
