//! Network namespaces: entering one only on a dedicated namespace worker that returns home after
//! every job (so no async worker or other daemon thread is ever in a foreign namespace, even on an
//! early return or a panic), and the bind mounts that keep a container's namespace alive while the
//! container exists.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};

use crate::{KernelError, Netlink, Result};

fn path_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KernelError + 'a {
    move |source| KernelError::Path { op, path: path.display().to_string(), source }
}

type Job = Box<dyn FnOnce() + Send>;

/// Namespace workers: long-lived threads that only ever run jobs inside other namespaces. Each
/// job enters the target namespace and, whatever happens, the thread returns to the namespace it
/// started in (the daemon's), so no namespace is kept alive by a thread left in it. A pool saves
/// the thread spawn a short-lived thread would cost per entry (~40 µs).
struct Workers {
    tx: Mutex<std::sync::mpsc::Sender<Job>>,
}

const WORKERS: usize = 4;

fn workers() -> Option<&'static Workers> {
    static POOL: OnceLock<Option<Workers>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = rx.clone();
            let home = File::open("/proc/thread-self/ns/net").ok()?;
            std::thread::Builder::new()
                .name(format!("netns-worker-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    if setns(home.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
                        return; // cannot go home: this worker retires rather than run elsewhere
                    }
                })
                .ok()?;
        }
        Some(Workers { tx: Mutex::new(tx) })
    })
    .as_ref()
}

/// Runs `f` inside the network namespace at `path` (`ip netns exec`), on a namespace worker (or a
/// short-lived thread if the pool is unavailable), and waits for it.
pub fn run_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    received(path, start_in(path, f)?)
}

/// What a job started with [`start_in`] returned.
fn received<T>(path: &Path, rx: std::sync::mpsc::Receiver<Result<T>>) -> Result<T> {
    rx.recv().unwrap_or_else(|_| Err(path_err("run in netns", path)(std::io::Error::other("namespace job panicked"))))
}

/// [`run_in`] without the wait: its result comes on the channel returned.
fn start_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<std::sync::mpsc::Receiver<Result<T>>> {
    let ns = File::open(path).map_err(path_err("open netns", path))?;
    let p = path.to_path_buf();
    let (done, wait) = std::sync::mpsc::channel();
    let job = move || {
        let r = setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| path_err("enter netns", &p)(e.into())).and_then(|()| f());
        let _ = done.send(r);
    };
    match workers() {
        Some(w) => {
            let sent = w.tx.lock().unwrap_or_else(|p| p.into_inner()).send(Box::new(job));
            if sent.is_err() {
                return Err(path_err("run in netns", path)(std::io::Error::other("namespace workers stopped")));
            }
        }
        None => {
            std::thread::spawn(job);
        }
    }
    Ok(wait)
}

/// Opens a netlink socket inside the namespace at `path`, first writing `sysctls` there. The
/// socket stays in that namespace and can be used from any thread.
pub fn open_in(path: &Path, sysctls: &[(&'static str, &'static str)]) -> Result<Netlink> {
    received(path, start_open(path, sysctls)?)
}

fn start_open(path: &Path, sysctls: &[(&'static str, &'static str)]) -> Result<std::sync::mpsc::Receiver<Result<Netlink>>> {
    let sysctls = sysctls.to_vec();
    start_in(path, move || {
        for (k, v) in sysctls {
            crate::sysctl::write(k, v)?;
        }
        Netlink::open()
    })
}

/// `ip -n NS link del NAME`: link `name` inside the namespace at `path`.
pub fn delete_link_in(path: &Path, name: &str) -> Result<()> {
    open_in(path, &[])?.delete_link(name)
}

/// [`open_in`] on a namespace worker while the caller goes on (a veth is made on the host side
/// meanwhile): the socket is waited for at its first use. Handing a job to a worker and back costs
/// two thread wake-ups (~0.1 ms on a VM), hidden this way behind the caller's own kernel work.
pub struct Opening {
    path: std::path::PathBuf,
    pending: Option<std::sync::mpsc::Receiver<Result<Netlink>>>,
    socket: Option<Netlink>,
}

pub fn open_in_background(path: &Path, sysctls: &[(&'static str, &'static str)]) -> Result<Opening> {
    Ok(Opening { path: path.to_path_buf(), pending: Some(start_open(path, sysctls)?), socket: None })
}

impl Opening {
    /// The socket, once opened (an error the first time only if opening failed).
    pub fn get(&mut self) -> Result<&mut Netlink> {
        if let Some(rx) = self.pending.take() {
            self.socket = Some(received(&self.path, rx)?);
        }
        let path = &self.path;
        self.socket.as_mut().ok_or_else(|| path_err("open netlink socket in netns", path)(std::io::Error::other("failed before")))
    }
}

/// Keeps the network namespace of `pid` alive at `target` (`ip netns attach`-style bind mount).
pub fn bind(pid: u32, target: &Path) -> Result<()> {
    File::create(target).map_err(path_err("create netns file", target))?;
    let src = format!("/proc/{pid}/ns/net");
    mount(Some(src.as_str()), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| path_err("bind netns", target)(e.into()))
}

/// Binds `pid`'s network namespace at `target` again unless `target` holds it already (a bind
/// mount dies with the mount namespace it was made in: a daemon started by `ip netns exec` or
/// with systemd's `PrivateMounts` loses them all when it stops). Returns whether it bound (not
/// when `pid` has just exited: its exit is processed as any other).
pub fn rebind(pid: u32, target: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let src = format!("/proc/{pid}/ns/net");
    let want = match std::fs::metadata(&src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(path_err("read the namespace of", Path::new(&src))(e)),
    };
    if std::fs::metadata(target).is_ok_and(|m| (m.dev(), m.ino()) == (want.dev(), want.ino())) {
        return Ok(false);
    }
    unbind(target)?;
    bind(pid, target)?;
    Ok(true)
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
