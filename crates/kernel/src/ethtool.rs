//! `ethtool -K IF tx off`: the one offload setting weft changes. A veth whose packets go through
//! Open vSwitch's userspace datapath must carry full checksums: the datapath reads and writes
//! frames through packet sockets, so a checksum left for the hardware to fill is never filled
//! and the receiver drops the segment (ping works, TCP does not).

use std::os::fd::AsRawFd;

use crate::{KernelError, Netlink, Result};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

impl Netlink {
    /// `ethtool -K IFNAME tx off` in this socket's namespace (a device ioctl on any socket acts
    /// in the socket's namespace; this one's is the netlink socket's).
    pub fn tx_checksum_off(&mut self, ifname: &str) -> Result<()> {
        let err = |source| KernelError::Netlink { op: "turn off tx checksum offload on", subject: ifname.to_string(), source };
        let bytes = ifname.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ {
            return Err(err(std::io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let mut value = EthtoolValue { cmd: ETHTOOL_STXCSUM, data: 0 };
        let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: &mut value, _pad: [0; 16] };
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: SIOCETHTOOL reads an ifreq whose ifr_data points at an ethtool_value; both
        // live on this stack frame for the whole call, and the fd is this socket's own.
        let rc = unsafe { libc::ioctl(self.raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfreqData) };
        if rc != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.socket().as_raw_fd()
    }
}
