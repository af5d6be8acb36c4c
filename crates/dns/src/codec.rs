//! What to answer: the general path (hickory's messages) and the fast path (wire bytes).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::{ClientView, Index};

pub(crate) const TTL: u32 = 600;

/// What to do with a query.
pub(crate) enum Verdict {
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

pub(crate) fn decide(idx: &Index, container: &str, packet: &[u8]) -> Verdict {
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

/// The fast path: a standard query with one IN question of type A, AAAA, ANY or PTR for a local
/// name is answered straight from the wire bytes (the question is copied, answers point back to it
/// with a compression pointer): no message parsing, one buffer. `None`: use the general path.
pub(crate) fn fast_answer(idx: &Index, client: &ClientView, q: &[u8], out: &mut Vec<u8>) -> Option<()> {
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
pub(crate) fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    Some(reply(&req, ResponseCode::ServFail, vec![]))
}

/// UDP answers longer than 512 bytes to a client without EDNS are cut to the header (TC set).
pub(crate) fn fit_udp(mut r: Vec<u8>, query: &[u8]) -> Vec<u8> {
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Endpoint;

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
    fn fast_path_agrees_with_the_general_path() {
        let mut idx = Index::default();
        let web = Endpoint {
            network_id: "n1".into(),
            network_name: "front".into(),
            names: vec!["web".into()],
            ips: vec!["172.18.0.2".parse().expect("ip"), "fd00:77::2".parse().expect("ip")],
            ptr: "web.front.".into(),
        };
        idx.set_container("w", vec![web], None);
        idx.set_container("c", vec![], Some(ClientView { networks: vec!["n1".into()], internal_only: false, upstream: vec![] }));
        let query = |name: &str, qtype: u16| {
            let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for l in name.split('.') {
                q.push(l.len() as u8);
                q.extend_from_slice(l.as_bytes());
            }
            q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
            q
        };
        let client = idx.clients["c"].clone();
        for (name, qtype) in [("WEB", 1), ("web.front", 1), ("web", 28), ("2.0.18.172.in-addr.arpa", 12)] {
            let q = query(name, qtype);
            let mut out = Vec::new();
            fast_answer(&idx, &client, &q, &mut out).expect("fast path taken");
            let fast = Message::from_vec(&out).expect("fast answer parses");
            let Verdict::Reply(general) = decide(&idx, "c", &q) else { panic!("general path replies") };
            let general = Message::from_vec(&general).expect("general answer parses");
            assert_eq!(fast.metadata.id, 0x1234);
            assert_eq!(fast.metadata.response_code, general.metadata.response_code, "{name}");
            assert_eq!(fast.answers, general.answers, "{name}");
        }
        let mut out = Vec::new();
        assert!(fast_answer(&idx, &client, &query("nothere", 1), &mut out).is_none(), "unknown names take the general path");
        assert!(fast_answer(&idx, &client, &[0; 5], &mut out).is_none());
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
