//! The report channel from `weft-init` to the daemon: a `SOCK_SEQPACKET` socket pair (the helper's
//! stdout), so each message arrives whole and can carry file descriptors (`SCM_RIGHTS`): the
//! other side of a container's terminal or stdin, as runc's `--console-socket` hands a pty over.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};

/// The most descriptors one message carries (stdin, stdout, stderr).
const MAX_FDS: usize = 3;

/// A connected pair: (the daemon's end, the helper's end). Both close-on-exec; the helper's end
/// becomes its stdout, which clears the flag on that copy.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?)
}

/// Sends one message, with `fds` attached.
pub fn send(sock: RawFd, msg: &str, fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(msg.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one message and the descriptors it carries; an empty message is end of file (the
/// helper exited without a word).
pub fn recv(sock: &impl AsRawFd) -> std::io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(m) => {
                let mut fds = Vec::new();
                for c in m.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: SCM_RIGHTS gave this process new descriptors that nothing else owns.
                        fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                break (m.bytes, fds);
            }
        }
    };
    Ok((String::from_utf8_lossy(&buf[..len]).trim().to_string(), fds))
}
