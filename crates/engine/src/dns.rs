//! The embedded DNS of user-defined networks. One resolver in the daemon: for each container on a
//! user-defined network, the daemon opens a UDP and a TCP socket *inside the container's network
//! namespace* on 127.0.0.11:53 (Docker's address) and serves them from async tasks. The socket a
//! query arrives on says which container asked, so a container sees exactly the names of the
//! networks it is attached to. Names live in an index snapshot that every change (run, exit,
//! connect, disconnect, rm) replaces: no reload, no dropped query.
//!
//! Answered here: A and AAAA for container names, short ids, network aliases and `name.network`;
//! PTR (in-addr.arpa and ip6.arpa) for their addresses. Anything else is forwarded to the
//! container's upstream servers (`--dns`, then weftd's `--dns`, then the host's resolv.conf, with
//! systemd-resolved's stub replaced by its upstream file as Docker does), with a timeout shorter
//! than a client's; containers only on internal networks get NXDOMAIN instead. Malformed queries
//! get FORMERR when they have a header, and are dropped otherwise.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use weft_model::{short_id, Status, DEFAULT_NETWORK};

use crate::files::Resolv;
use crate::{Result, State};

/// Docker's address of the embedded resolver, inside each container.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;
/// Per upstream attempt; two attempts stay under glibc's 5 s default.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1800);

/// What one container may resolve.
#[derive(Debug, Default, Clone)]
struct Client {
    networks: Vec<String>,
    /// Only internal networks: no forwarding.
    internal_only: bool,
    upstream: Vec<SocketAddr>,
}

/// A snapshot of every name, built from the engine's state.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// network id -> lowercase name -> addresses
    names: HashMap<String, HashMap<String, Vec<IpAddr>>>,
    /// network name -> network id
    networks: HashMap<String, String>,
    /// (network id, address) -> "name.network."
    ptr: HashMap<(String, IpAddr), String>,
    /// container id -> its view
    clients: HashMap<String, Client>,
}

/// Whether a container uses the embedded resolver: it is on a user-defined network.
pub(crate) fn is_client(endpoint_networks: &[String]) -> bool {
    endpoint_networks.iter().any(|n| n != DEFAULT_NETWORK)
}

/// The upstream servers of a container, in order of precedence.
pub(crate) fn upstreams(own: &[IpAddr], daemon: &[IpAddr], host: &Resolv) -> Vec<SocketAddr> {
    let list = if !own.is_empty() {
        own
    } else if !daemon.is_empty() {
        daemon
    } else {
        &host.nameservers
    };
    list.iter().map(|ip| SocketAddr::new(*ip, 53)).collect()
}

/// The host's resolvers: systemd-resolved's 127.0.0.53 stub stands for the servers it lists in
/// /run/systemd/resolve/resolv.conf (read as Docker does).
pub(crate) fn host_resolv() -> Resolv {
    let main = crate::files::parse_resolv(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let stub: IpAddr = Ipv4Addr::new(127, 0, 0, 53).into();
    if main.nameservers == [stub] {
        if let Ok(t) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            let real = crate::files::parse_resolv(&t);
            if !real.nameservers.is_empty() {
                return Resolv { search: main.search, options: main.options, ..real };
            }
        }
    }
    main
}

/// `/etc/resolv.conf` of a container that uses the embedded resolver.
pub(crate) fn container_resolv(host: &Resolv, search: &[String], options: &[String]) -> String {
    let search = if search.is_empty() { &host.search } else { search };
    let mut s = format!("nameserver {RESOLVER}\n");
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut opts = vec!["ndots:0".to_string()];
    opts.extend(options.iter().cloned());
    s.push_str(&format!("options {}\n", opts.join(" ")));
    s
}

impl Index {
    pub(crate) fn build(st: &State, daemon_dns: &[IpAddr], host: &Resolv) -> Self {
        let mut idx = Index::default();
        for n in st.networks.values() {
            idx.networks.insert(n.rec.name.to_ascii_lowercase(), n.rec.id.clone());
        }
        for c in st.containers.values().filter(|c| c.state.status == Status::Running) {
            let nets: Vec<String> = c.endpoints.iter().map(|e| e.network_name.clone()).collect();
            for e in &c.endpoints {
                let names = idx.names.entry(e.network_id.clone()).or_default();
                let ips: Vec<IpAddr> = std::iter::once(IpAddr::V4(e.ip)).chain(e.ip6.map(IpAddr::V6)).collect();
                for n in std::iter::once(c.name.as_str()).chain([short_id(&c.id)]).chain(e.aliases.iter().map(String::as_str)) {
                    let v = names.entry(n.to_ascii_lowercase()).or_default();
                    for ip in &ips {
                        if !v.contains(ip) {
                            v.push(*ip);
                        }
                    }
                }
                for ip in ips {
                    idx.ptr.insert((e.network_id.clone(), ip), format!("{}.{}.", c.name, e.network_name));
                }
            }
            if is_client(&nets) {
                let internal_only = c.endpoints.iter().all(|e| st.networks.get(&e.network_id).is_some_and(|n| n.rec.internal));
                idx.clients.insert(
                    c.id.clone(),
                    Client {
                        networks: c.endpoints.iter().map(|e| e.network_id.clone()).collect(),
                        internal_only,
                        upstream: upstreams(&c.spec.dns, daemon_dns, host),
                    },
                );
            }
        }
        idx
    }

    /// Local addresses of `name` for `client`: `name` or `name.network` on one of its networks.
    fn lookup(&self, client: &Client, name: &str) -> Option<Vec<IpAddr>> {
        let mut found: Vec<IpAddr> = Vec::new();
        let mut any = false;
        for net in &client.networks {
            if let Some(ips) = self.names.get(net).and_then(|m| m.get(name)) {
                any = true;
                found.extend(ips);
            }
        }
        if !any {
            if let Some((host, netname)) = name.rsplit_once('.') {
                if let Some(net) = self.networks.get(netname).filter(|id| client.networks.contains(id)) {
                    if let Some(ips) = self.names.get(net).and_then(|m| m.get(host)) {
                        any = true;
                        found.extend(ips);
                    }
                }
            }
        }
        any.then_some(found)
    }

    fn reverse(&self, client: &Client, ip: IpAddr) -> Option<&str> {
        client.networks.iter().find_map(|n| self.ptr.get(&(n.clone(), ip)).map(String::as_str))
    }
}

/// What to do with a query.
enum Verdict {
    Reply(Vec<u8>),
    Forward(Vec<SocketAddr>),
    Drop,
}

fn reply(req: &Message, code: ResponseCode, answers: Vec<Record>) -> Vec<u8> {
    let mut m = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = true;
    m.metadata.response_code = code;
    m.queries = req.queries.clone();
    m.answers = answers;
    m.to_vec().unwrap_or_default()
}

/// The address of a reverse name: `d.c.b.a.in-addr.arpa` or 32 nibbles `.ip6.arpa`.
fn ptr_addr(name: &str) -> Option<IpAddr> {
    if let Some(rev) = name.strip_suffix(".in-addr.arpa") {
        let o: Vec<u8> = rev.split('.').rev().map(|p| p.parse().ok()).collect::<Option<_>>()?;
        return (o.len() == 4).then(|| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])));
    }
    let rev = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rev.split('.').rev().map(|p| if p.len() == 1 { u8::from_str_radix(p, 16).ok() } else { None }).collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let v = nibbles.iter().fold(0u128, |acc, n| (acc << 4) | u128::from(*n));
    Some(IpAddr::V6(std::net::Ipv6Addr::from(v)))
}

fn decide(idx: &Index, container: &str, packet: &[u8]) -> Verdict {
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) if packet.len() >= 12 => {
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            return Verdict::Reply(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().unwrap_or_default());
        }
        Err(_) => return Verdict::Drop,
    };
    if req.metadata.message_type != MessageType::Query {
        return Verdict::Drop;
    }
    if req.metadata.op_code != OpCode::Query || req.queries.len() != 1 {
        return Verdict::Reply(reply(&req, ResponseCode::NotImp, vec![]));
    }
    let Some(client) = idx.clients.get(container) else { return Verdict::Reply(reply(&req, ResponseCode::Refused, vec![])) };
    let q = &req.queries[0];
    let qname = q.name().to_ascii().to_ascii_lowercase();
    let name = qname.trim_end_matches('.');
    let owner = q.name().clone();
    match q.query_type() {
        RecordType::A | RecordType::AAAA | RecordType::ANY => {
            if let Some(ips) = idx.lookup(client, name) {
                let (want_v4, want_v6) = match q.query_type() {
                    RecordType::A => (true, false),
                    RecordType::AAAA => (false, true),
                    _ => (true, true),
                };
                let answers = ips
                    .into_iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) if want_v4 => Some(Record::from_rdata(owner.clone(), TTL, RData::A(A(v4)))),
                        IpAddr::V6(v6) if want_v6 => Some(Record::from_rdata(owner.clone(), TTL, RData::AAAA(AAAA(v6)))),
                        _ => None,
                    })
                    .collect();
                return Verdict::Reply(reply(&req, ResponseCode::NoError, answers));
            }
        }
        RecordType::PTR => {
            if let Some(target) = ptr_addr(name).and_then(|ip| idx.reverse(client, ip)) {
                if let Ok(n) = Name::from_ascii(target) {
                    return Verdict::Reply(reply(&req, ResponseCode::NoError, vec![Record::from_rdata(owner, TTL, RData::PTR(PTR(n)))]));
                }
            }
        }
        _ => {}
    }
    if client.internal_only || client.upstream.is_empty() {
        return Verdict::Reply(reply(&req, ResponseCode::NXDomain, vec![]));
    }
    Verdict::Forward(client.upstream.clone())
}

async fn forward_udp(packet: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(s) = UdpSocket::bind(bind).await else { continue };
        if s.send_to(packet, server).await.is_err() {
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

async fn forward_tcp(packet: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let attempt = async {
            let mut s = TcpStream::connect(server).await.ok()?;
            s.write_all(&(packet.len() as u16).to_be_bytes()).await.ok()?;
            s.write_all(packet).await.ok()?;
            let len = s.read_u16().await.ok()?;
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        if let Ok(Some(r)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            return Some(r);
        }
    }
    None
}

/// The fast path: a standard query with one IN question of type A, AAAA, ANY or PTR for a local
/// name is answered straight from the wire bytes (the question is copied, answers point back to it
/// with a compression pointer): no message parsing, one buffer. `None`: use the general path.
fn fast_answer(idx: &Index, client: &Client, q: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if q.len() < 17 || q[2] & 0xF8 != 0 || q[4..6] != [0, 1] || q[6..12] != [0, 0, 0, 0, 0, 0] {
        return None; // a response, another opcode, not exactly one question, or extra sections
    }
    let mut name = [0u8; 255];
    let (mut len, mut off) = (0usize, 12usize);
    loop {
        let l = *q.get(off)? as usize;
        off += 1;
        if l == 0 {
            break;
        }
        if l > 63 || off + l > q.len() || len + l + 1 > name.len() {
            return None;
        }
        if len > 0 {
            name[len] = b'.';
            len += 1;
        }
        for (d, s) in name[len..len + l].iter_mut().zip(&q[off..off + l]) {
            *d = s.to_ascii_lowercase();
        }
        len += l;
        off += l;
    }
    let qtype = u16::from_be_bytes([*q.get(off)?, *q.get(off + 1)?]);
    if q.get(off + 2..off + 4)? != [0, 1] {
        return None;
    }
    let end = off + 4;
    let name = std::str::from_utf8(&name[..len]).ok()?;
    out.clear();
    out.extend_from_slice(&q[..end]);
    out[2] = 0x84 | (q[2] & 0x01); // QR, AA, copy RD
    out[3] = 0x80; // RA, NOERROR
    let mut count: u16 = 0;
    match qtype {
        1 | 28 | 255 => {
            for ip in idx.lookup(client, name)? {
                match (ip, qtype) {
                    (IpAddr::V4(v4), 1 | 255) => {
                        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
                        out.extend_from_slice(&TTL.to_be_bytes());
                        out.extend_from_slice(&[0, 4]);
                        out.extend_from_slice(&v4.octets());
                        count += 1;
                    }
                    (IpAddr::V6(v6), 28 | 255) => {
                        out.extend_from_slice(&[0xC0, 0x0C, 0, 28, 0, 1]);
                        out.extend_from_slice(&TTL.to_be_bytes());
                        out.extend_from_slice(&[0, 16]);
                        out.extend_from_slice(&v6.octets());
                        count += 1;
                    }
                    _ => {}
                }
            }
        }
        12 => {
            let target = idx.reverse(client, ptr_addr(name)?)?;
            let mut rdata = Vec::with_capacity(target.len() + 2);
            for label in target.trim_end_matches('.').split('.') {
                rdata.push(label.len() as u8);
                rdata.extend_from_slice(label.as_bytes());
            }
            rdata.push(0);
            out.extend_from_slice(&[0xC0, 0x0C, 0, 12, 0, 1]);
            out.extend_from_slice(&TTL.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(&rdata);
            count = 1;
        }
        _ => return None,
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    Some(())
}

/// A SERVFAIL for a query whose upstreams did not answer.
fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    Some(reply(&req, ResponseCode::ServFail, vec![]))
}

/// UDP answers longer than 512 bytes to a client without EDNS are cut to the header (TC set).
fn fit_udp(mut r: Vec<u8>, query: &[u8]) -> Vec<u8> {
    let edns = Message::from_vec(query).map(|m| m.edns.is_some()).unwrap_or(false);
    if r.len() > 512 && !edns {
        if let Ok(mut m) = Message::from_vec(&r) {
            m.answers.clear();
            m.authorities.clear();
            m.additionals.clear();
            m.metadata.truncation = true;
            r = m.to_vec().unwrap_or(r);
        }
    }
    r
}

/// The shared part of the resolver: the current index.
#[derive(Default)]
pub(crate) struct Resolver {
    index: RwLock<Arc<Index>>,
}

impl Resolver {
    pub fn set(&self, idx: Index) {
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(idx);
    }
    fn get(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Opens the resolver's sockets inside the namespace at `netns` (before its `lo` is up, hence
/// IP_FREEBIND). Blocking.
pub(crate) fn open_sockets(netns: &Path) -> Result<(Socket, Socket)> {
    let addr = SocketAddr::new(IpAddr::V4(RESOLVER), 53);
    let err = move |source| weft_kernel::KernelError::Path { op: "bind the resolver at", path: addr.to_string(), source };
    Ok(weft_kernel::netns::run_in(netns, move || {
        let mk = |ty, proto| -> std::io::Result<Socket> {
            let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
            s.set_cloexec(true)?;
            s.set_freebind(true)?;
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let udp = mk(Type::DGRAM, Protocol::UDP).map_err(err)?;
        let tcp = mk(Type::STREAM, Protocol::TCP).and_then(|t| t.listen(128).map(|()| t)).map_err(err)?;
        Ok((udp, tcp))
    })?)
}

/// Serves `container`'s resolver sockets until the tasks are aborted.
pub(crate) fn serve(resolver: Arc<Resolver>, container: String, udp: Socket, tcp: Socket) -> std::io::Result<Vec<JoinHandle<()>>> {
    let udp = Arc::new(UdpSocket::from_std(udp.into())?);
    let tcp = TcpListener::from_std(tcp.into())?;
    // Two readers of the UDP socket: both of the runtime's workers can answer.
    let readers: Vec<JoinHandle<()>> = (0..UDP_READERS).map(|_| tokio::spawn(udp_loop(udp.clone(), resolver.clone(), container.clone()))).collect();
    let t = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                tokio::time::sleep(crate::proxy::ERROR_PAUSE).await;
                continue;
            };
            let (r, c) = (resolver.clone(), container.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(10), s.read_u16()).await else { return };
                    let mut packet = vec![0u8; len as usize];
                    if s.read_exact(&mut packet).await.is_err() {
                        return;
                    }
                    let out = match decide(&r.get(), &c, &packet) {
                        Verdict::Reply(r) => Some(r),
                        Verdict::Forward(up) => forward_tcp(&packet, &up).await.or_else(|| servfail(&packet)),
                        Verdict::Drop => return,
                    };
                    if let Some(out) = out {
                        if s.write_all(&(out.len() as u16).to_be_bytes()).await.is_err() || s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(readers.into_iter().chain([t]).collect())
}

const UDP_READERS: usize = 2;

async fn udp_loop(udp: Arc<UdpSocket>, resolver: Arc<Resolver>, container: String) {
    let (mut buf, mut out) = (vec![0u8; 4096], Vec::with_capacity(512));
    // This container's view, looked up again only when the index is replaced.
    let mut cached: (Arc<Index>, Option<Client>) = (Arc::default(), None);
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            tokio::time::sleep(crate::proxy::ERROR_PAUSE).await;
            continue;
        };
        let idx = resolver.get();
        if !Arc::ptr_eq(&idx, &cached.0) {
            cached = (idx.clone(), idx.clients.get(&container).cloned());
        }
        if cached.1.as_ref().and_then(|client| fast_answer(&idx, client, &buf[..n], &mut out)).is_some() {
            let _ = udp.send_to(&out, peer).await;
            continue;
        }
        let packet = buf[..n].to_vec();
        match decide(&idx, &container, &packet) {
            Verdict::Reply(r) => {
                let _ = udp.send_to(&fit_udp(r, &packet), peer).await;
            }
            Verdict::Forward(up) => {
                let udp = udp.clone();
                tokio::spawn(async move {
                    if let Some(r) = forward_udp(&packet, &up).await.or_else(|| servfail(&packet)) {
                        let _ = udp.send_to(&r, peer).await;
                    }
                });
            }
            Verdict::Drop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(ptr_addr("2.0.17.172.in-addr.arpa"), Some("172.17.0.2".parse().expect("ip")));
        assert_eq!(ptr_addr("x.in-addr.arpa"), None);
        let v6 = "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(ptr_addr(v6), Some("fd00:60::a".parse().expect("ip")));
        assert_eq!(ptr_addr("1.ip6.arpa"), None);
        assert_eq!(ptr_addr("example.com"), None);
    }

    #[test]
    fn resolv_for_clients() {
        let host = crate::files::parse_resolv("nameserver 10.0.0.2\nsearch corp\n");
        assert_eq!(container_resolv(&host, &[], &[]), "nameserver 127.0.0.11\nsearch corp\noptions ndots:0\n");
        assert_eq!(container_resolv(&host, &["a.b".into()], &["timeout:1".into()]), "nameserver 127.0.0.11\nsearch a.b\noptions ndots:0 timeout:1\n");
        let own: Vec<IpAddr> = vec!["1.1.1.1".parse().expect("ip")];
        assert_eq!(upstreams(&own, &[], &host), vec!["1.1.1.1:53".parse::<SocketAddr>().expect("sa")]);
        assert_eq!(upstreams(&[], &[], &host), vec!["10.0.0.2:53".parse::<SocketAddr>().expect("sa")]);
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let mut idx = Index::default();
        idx.networks.insert("front".into(), "n1".into());
        idx.names.entry("n1".into()).or_default().insert("web".into(), vec!["172.18.0.2".parse().expect("ip"), "fd00:77::2".parse().expect("ip")]);
        idx.ptr.insert(("n1".into(), "172.18.0.2".parse().expect("ip")), "web.front.".into());
        idx.clients.insert("c".into(), Client { networks: vec!["n1".into()], internal_only: false, upstream: vec![] });
        let query = |name: &str, qtype: u16| {
            let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for l in name.split('.') {
                q.push(l.len() as u8);
                q.extend_from_slice(l.as_bytes());
            }
            q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
            q
        };
        for (name, qtype) in [("WEB", 1), ("web.front", 1), ("web", 28), ("2.0.18.172.in-addr.arpa", 12)] {
            let q = query(name, qtype);
            let mut out = Vec::new();
            fast_answer(&idx, &idx.clients["c"], &q, &mut out).expect("fast path taken");
            let fast = Message::from_vec(&out).expect("fast answer parses");
            let Verdict::Reply(general) = decide(&idx, "c", &q) else { panic!("general path replies") };
            let general = Message::from_vec(&general).expect("general answer parses");
            assert_eq!(fast.metadata.id, 0x1234);
            assert_eq!(fast.metadata.response_code, general.metadata.response_code, "{name}");
            assert_eq!(fast.answers, general.answers, "{name}");
        }
        let mut out = Vec::new();
        assert!(fast_answer(&idx, &idx.clients["c"], &query("nothere", 1), &mut out).is_none(), "unknown names take the general path");
        assert!(fast_answer(&idx, &idx.clients["c"], &[0; 5], &mut out).is_none());
    }

    #[test]
    fn malformed_and_truncated_queries() {
        let idx = Index::default();
        assert!(matches!(decide(&idx, "x", &[1, 2, 3]), Verdict::Drop));
        match decide(&idx, "x", &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]) {
            Verdict::Reply(r) => {
                let m = Message::from_vec(&r).expect("reply parses");
                assert_eq!((m.metadata.id, m.metadata.response_code), (0xabcd, ResponseCode::FormErr));
            }
            _ => panic!("a header-bearing garbage query gets FORMERR"),
        }
    }
}
