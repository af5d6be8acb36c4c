//! Gratuitous ARP (`arping -U`): an ARP request for one's own address, broadcast from an
//! interface through a packet socket. Sent in the caller's network namespace.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{KernelError, Result};

/// The Ethernet frame of a gratuitous ARP request for `ip` at `mac`.
pub fn garp_frame(ip: Ipv4Addr, mac: [u8; 6]) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, sizes, request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Broadcasts a gratuitous ARP for `ip` at `mac` from `ifname`.
pub fn announce(ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
    let err = |source: std::io::Error| KernelError::Netlink { op: "send gratuitous ARP from", subject: ifname.to_string(), source };
    let name = CString::new(ifname).map_err(|_| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let frame = garp_frame(ip, mac);
    // SAFETY: the frame and the address are valid for the given lengths during the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_layout() {
        let f = super::garp_frame("172.17.0.2".parse().expect("ip"), [2, 0x42, 1, 2, 3, 4]);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(f[28..32], f[38..42], "sender and target address are the same");
    }
}
