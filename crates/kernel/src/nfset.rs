//! nf_tables set elements over netlink: `nft add element` and `nft delete element` without
//! libnftables, for the per-endpoint operations of the attach path. libnftables parses text and
//! refreshes its cache on every call (about 0.1 ms alone, 0.3 ms and more under load, and memory
//! in every thread that calls it); these are a handful of bytes in one batch on a socket kept
//! open. The keys are the sets' own encoding (a concatenation's parts each padded to 4 bytes,
//! see [`key`]); the ruleset itself stays libnftables' (`weft-firewall`).

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::conntrack::{nla, nested};
use crate::{KernelError, Result};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

/// `NFPROTO_BRIDGE`: the family of a `bridge` table.
pub const FAMILY_BRIDGE: u8 = 7;

/// A set's key from its parts (a concatenation `a . b . c`): each part padded with zeros to a
/// multiple of 4 bytes, as the kernel's registers hold them. An `ifname` part is its 16 bytes
/// (`IFNAMSIZ`), NUL-padded.
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.extend_from_slice(p);
        k.resize(k.len().next_multiple_of(4), 0);
    }
    k
}

/// An interface name as a key part.
pub fn ifname(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// The elements of one set to add or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElems {
    pub set: String,
    pub keys: Vec<Vec<u8>>,
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id (big-endian).
    buf.push(family);
    buf.push(0);
    buf.extend_from_slice(&res_id.to_be_bytes());
}

fn finish(buf: &mut [u8]) {
    let len = buf.len() as u32;
    buf[..4].copy_from_slice(&len.to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The batch: begin, one message per set (sequence numbers `seq + 1 …`, each acknowledged),
/// end. Pure, for unit tests.
pub fn batch(seq: u32, family: u8, table: &str, add: bool, sets: &[SetElems]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut msg = Vec::new();
    header(&mut msg, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES);
    finish(&mut msg);
    out.extend_from_slice(&msg);
    let (kind, flags) = if add { (NFT_MSG_NEWSETELEM, NLM_F_CREATE) } else { (NFT_MSG_DELSETELEM, 0) };
    for (i, s) in sets.iter().enumerate() {
        let mut msg = Vec::new();
        header(&mut msg, (NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq + 1 + i as u32, family, 0);
        nla(&mut msg, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        nla(&mut msg, NFTA_SET_ELEM_LIST_SET, &cstr(&s.set));
        nested(&mut msg, NFTA_SET_ELEM_LIST_ELEMENTS, |els| {
            for k in &s.keys {
                nested(els, NFTA_LIST_ELEM, |el| nested(el, NFTA_SET_ELEM_KEY, |kv| nla(kv, NFTA_DATA_VALUE, k)));
            }
        });
        finish(&mut msg);
        out.extend_from_slice(&msg);
    }
    let mut msg = Vec::new();
    header(&mut msg, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1 + sets.len() as u32, 0, NFNL_SUBSYS_NFTABLES);
    finish(&mut msg);
    out.extend_from_slice(&msg);
    out
}

/// A netfilter socket for the elements of one table, in the namespace of the thread that opens
/// it (sockets stay where they were born).
pub struct NfSets {
    sock: Socket,
    seq: u32,
    family: u8,
    table: String,
}

impl NfSets {
    pub fn open(family: u8, table: &str) -> Result<Self> {
        let err = |source| KernelError::Netlink { op: "open a netfilter socket for", subject: table.to_string(), source };
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        // A batch is answered at once; never wait forever on a lost answer.
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        // SAFETY: setsockopt reads one timeval from a pointer to a live local of that size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(Self { sock, seq: 1, family, table: table.to_string() })
    }

    /// `nft add element` (`add`) or `nft delete element` of `sets`, in one transaction. Adding
    /// an element that is there, or deleting one that is not, is fine.
    pub fn apply(&mut self, add: bool, sets: &[SetElems]) -> Result<()> {
        let sets: Vec<SetElems> = sets.iter().filter(|s| !s.keys.is_empty()).cloned().collect();
        if sets.is_empty() {
            return Ok(());
        }
        match self.send(add, &sets) {
            // One missing element aborts the whole transaction: delete them one by one.
            Err(e) if !add && e.raw_os_error() == Some(libc::ENOENT) => {
                for s in &sets {
                    for k in &s.keys {
                        match self.send(false, &[SetElems { set: s.set.clone(), keys: vec![k.clone()] }]) {
                            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(self.error(add, e)),
                            _ => {}
                        }
                    }
                }
                Ok(())
            }
            r => r.map_err(|e| self.error(add, e)),
        }
    }

    fn error(&self, add: bool, source: std::io::Error) -> KernelError {
        KernelError::Netlink { op: if add { "add set elements to" } else { "delete set elements from" }, subject: self.table.clone(), source }
    }

    /// Sends one batch and reads an answer for each of its set messages; the first error wins.
    fn send(&mut self, add: bool, sets: &[SetElems]) -> std::io::Result<()> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(sets.len() as u32 + 2);
        self.sock.send(&batch(seq, self.family, &self.table, add, sets), 0)?;
        let (first, last) = (seq + 1, seq + sets.len() as u32);
        let mut answered = 0;
        let mut failed: Option<std::io::Error> = None;
        let mut buf = vec![0u8; 8192];
        while answered < sets.len() {
            let n = self.sock.recv(&mut &mut buf[..], 0)?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4 bytes"));
                if len < 16 || off + len > n {
                    break;
                }
                if kind == NLMSG_ERROR && (first..=last).contains(&mseq) && len >= 20 {
                    answered += 1;
                    let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4 bytes"));
                    if code != 0 && failed.is_none() {
                        failed = Some(std::io::Error::from_raw_os_error(-code));
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pad_each_part_to_four_bytes() {
        let k = key(&[&ifname("veth1234567"), &[2, 0x42, 0xac, 0x11, 0, 2], &[172, 17, 0, 2]]);
        assert_eq!(k.len(), 16 + 8 + 4);
        assert_eq!(&k[..12], b"veth1234567\0");
        assert_eq!(&k[16..24], &[2, 0x42, 0xac, 0x11, 0, 2, 0, 0]);
        assert_eq!(&k[24..], &[172, 17, 0, 2]);
    }

    #[test]
    fn a_batch_is_begin_one_message_per_set_and_end() {
        let sets = [SetElems { set: "v4".into(), keys: vec![vec![1; 28]] }, SetElems { set: "macs".into(), keys: vec![vec![2; 24], vec![3; 24]] }];
        let b = batch(7, FAMILY_BRIDGE, "weft", true, &sets);
        let mut off = 0;
        let mut kinds = Vec::new();
        while off < b.len() {
            let len = u32::from_ne_bytes(b[off..off + 4].try_into().expect("len")) as usize;
            assert_eq!(len % 4, 0);
            kinds.push((u16::from_ne_bytes([b[off + 4], b[off + 5]]), u32::from_ne_bytes(b[off + 8..off + 12].try_into().expect("seq")), b[off + 16]));
            off += len;
        }
        assert_eq!(off, b.len());
        assert_eq!(kinds, [(0x10, 7, 0), (0x0a0c, 8, FAMILY_BRIDGE), (0x0a0c, 9, FAMILY_BRIDGE), (0x11, 10, 0)]);
        assert!(b.windows(5).any(|w| w == b"weft\0") && b.windows(5).any(|w| w == b"macs\0"));
    }
}
