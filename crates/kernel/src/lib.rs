//! The kernel interface of weft: links, addresses and routes over rtnetlink, sysctls through
//! `/proc/sys`, and network namespaces through `setns(2)` and bind mounts. Nothing here spawns a
//! process. A [`Netlink`] socket belongs to the namespace it was opened in, so the engine opens one
//! inside a container's namespace (on a short-lived thread, see [`netns::open_in`]) and keeps using
//! it from any thread; no async worker ever changes namespace.

pub mod arp;
pub mod conntrack;
pub mod ethtool;
pub mod links;
pub mod uplink;
pub mod netlink;
pub mod netns;
pub mod nfset;
pub mod ops;
pub mod sysctl;

pub use netlink::{AddrInfo, LinkInfo, LinkMonitor, Netlink, RouteInfo, VethSpec};

use std::io;

/// A failed kernel operation: what was done, to what, and the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op} {subject}")]
    Netlink { op: &'static str, subject: String, source: io::Error },
    #[error("{op} {path}")]
    Path { op: &'static str, path: String, source: io::Error },
    #[error("decode netlink answer to {op}: {reason}")]
    Decode { op: &'static str, reason: String },
}

impl KernelError {
    /// The errno of the failure, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { source, .. } | Self::Path { source, .. } => source.raw_os_error(),
            Self::Decode { .. } => None,
        }
    }
    /// "Already exists": the object is there, which callers may treat as done.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
    /// "No such device / entry": the object is already gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH))
    }
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Raises the soft open-files limit to the hard one (each published port holds a socket).
pub fn raise_nofile_limit() -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let err = |e: nix::Error| KernelError::Path { op: "raise open-files limit", path: "RLIMIT_NOFILE".into(), source: e.into() };
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(err)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(err)?;
    Ok(hard)
}
