//! Conntrack over ctnetlink: delete the entries of a published port, so that a flow (a UDP one
//! above all) does not keep going to a container whose mapping is gone. One filtered flush
//! request (`IPCTNL_MSG_CT_DELETE` with `CTA_FILTER`), the kernel walks its table; no `conntrack`
//! process. The message is small enough to encode by hand.

use std::net::Ipv4Addr;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::{KernelError, Result};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
// Filter flags (kernel nf_conntrack_netlink.c): which fields of the original tuple must match.
const F_IP_DST: u32 = 1 << 1;
const F_PROTO_NUM: u32 = 1 << 3;
const F_PROTO_DST_PORT: u32 = 1 << 5;

pub(crate) fn nla(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

pub(crate) fn nested(buf: &mut Vec<u8>, kind: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    nla(buf, kind | NLA_F_NESTED, &inner);
}

/// The request: delete every IPv4 entry whose original direction goes to `dst_port`/`proto`
/// (and `dst_ip`, if given). Pure, for unit tests.
pub fn delete_request(seq: u32, proto: u8, dst_ip: Option<Ipv4Addr>, dst_port: u16) -> Vec<u8> {
    let mut attrs = Vec::new();
    nested(&mut attrs, CTA_TUPLE_ORIG, |t| {
        if let Some(ip) = dst_ip {
            nested(t, CTA_TUPLE_IP, |i| nla(i, CTA_IP_V4_DST, &ip.octets()));
        }
        nested(t, CTA_TUPLE_PROTO, |p| {
            nla(p, CTA_PROTO_NUM, &[proto]);
            nla(p, CTA_PROTO_DST_PORT, &dst_port.to_be_bytes());
        });
    });
    let flags = F_PROTO_NUM | F_PROTO_DST_PORT | if dst_ip.is_some() { F_IP_DST } else { 0 };
    nested(&mut attrs, CTA_FILTER, |f| {
        nla(f, CTA_FILTER_ORIG_FLAGS, &flags.to_ne_bytes());
        nla(f, CTA_FILTER_REPLY_FLAGS, &0u32.to_ne_bytes());
    });
    let len = 16 + 4 + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family AF_INET, version 1 (so the family filters the flush), res_id 0.
    msg.extend_from_slice(&[libc::AF_INET as u8, 1, 0, 0]);
    msg.extend_from_slice(&attrs);
    msg
}

/// `conntrack -D -p PROTO [--orig-dst IP] --orig-port-dst PORT`, in the calling thread's
/// namespace. No matching entry is fine.
/// How many connections this network namespace tracks (`nf_conntrack_count`, per namespace);
/// `None` if conntrack is not loaded. A filtered delete walks the whole table, which all
/// namespaces share (~15 ms at its default size): with nothing tracked here it is skipped.
pub fn tracked() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count").ok()?.trim().parse().ok()
}

pub fn delete_by_dst(proto: u8, dst_ip: Option<Ipv4Addr>, dst_port: u16) -> Result<()> {
    let subject = format!("proto {proto} port {dst_port}");
    let err = |source| KernelError::Netlink { op: "delete conntrack entries", subject: subject.clone(), source };
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    sock.bind_auto().map_err(err)?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    sock.send(&delete_request(1, proto, dst_ip, dst_port), 0).map_err(err)?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut &mut buf[..], 0).map_err(err)?;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 && code != -libc::ENOENT {
            return Err(err(std::io::Error::from_raw_os_error(-code)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = delete_request(7, 17, Some(Ipv4Addr::new(10, 0, 0, 1)), 5353);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().expect("len")) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0102);
        assert_eq!(&m[16..20], &[2, 1, 0, 0]);
        assert_eq!(m.len() % 4, 0);
        // the port, big-endian, appears in the tuple
        assert!(m.windows(2).any(|w| w == 5353u16.to_be_bytes()));
    }
}
