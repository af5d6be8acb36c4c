//! Network namespaces: entering one only on a dedicated thread that ends with the work (so no
//! thread of the daemon is ever left in a foreign namespace, even on an early return), and the bind
//! mounts that keep a container's namespace alive while the container exists.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};

use crate::{KernelError, Netlink, Result};

fn path_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KernelError + 'a {
    move |source| KernelError::Path { op, path: path.display().to_string(), source }
}

/// Runs `f` on a new thread that has joined the network namespace at `path` (`ip netns exec`).
/// The thread exits afterwards, so the namespace change can never leak to another task.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = File::open(path).map_err(path_err("open netns", path))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| path_err("enter netns", path)(e.into()))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(KernelError::Path {
                op: "run in netns",
                path: path.display().to_string(),
                source: std::io::Error::other("worker thread panicked"),
            })
        })
    })
}

/// Opens a netlink socket inside the namespace at `path`, first writing `sysctls` there. The
/// socket stays in that namespace and can be used from any thread.
pub fn open_in(path: &Path, sysctls: &[(&str, &str)]) -> Result<Netlink> {
    run_in(path, || {
        for (k, v) in sysctls {
            crate::sysctl::write(k, v)?;
        }
        Netlink::open()
    })
}

/// Keeps the network namespace of `pid` alive at `target` (`ip netns attach`-style bind mount).
pub fn bind(pid: u32, target: &Path) -> Result<()> {
    File::create(target).map_err(path_err("create netns file", target))?;
    let src = format!("/proc/{pid}/ns/net");
    mount(Some(src.as_str()), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| path_err("bind netns", target)(e.into()))
}

/// Releases a namespace kept by [`bind`]; a target that is already gone is fine.
pub fn unbind(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(path_err("unmount netns", target)(e.into())),
    }
    match std::fs::remove_file(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(path_err("remove netns file", target)(e)),
    }
}

/// Whether `path` is a mounted namespace file (a bind that [`unbind`] has not undone).
pub fn is_bound(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let p = path.display().to_string();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// `ip netns add`: a new, empty network namespace kept at `target` (made on a thread that ends).
pub fn create(target: &Path) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| path_err("unshare netns", target)(e.into()))?;
            File::create(target).map_err(path_err("create netns file", target))?;
            mount(Some("/proc/thread-self/ns/net"), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| path_err("bind netns", target)(e.into()))
        })
        .join()
        .unwrap_or_else(|_| Err(path_err("create netns", target)(std::io::Error::other("worker thread panicked"))))
    })
}
