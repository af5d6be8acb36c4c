//! A container's input and output, as clients attach to them.
//!
//! Output has one path: the container's log file. A command without a terminal writes to it
//! directly (so its output outlives a daemon restart); with `-t`, weftd holds the terminal's
//! master side and copies it there ([`Console`]). Readers follow the file ([`Follower`]), woken
//! by inotify ([`LogWatch`]: one instance for the daemon), not by a timer; a follower ends once
//! the container's exit is processed and the file is read to its end (the exit waits for the
//! terminal to be drained into the file first).
//!
//! Input (`-i`, `-t`) goes through the container's [`Console`]: one writer task owning the
//! writing end of the command's stdin, or the terminal's master side, fed by every attached
//! client. `weft exec` processes have their own stdio, relayed directly ([`ExecSession`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

/// A descriptor read and written without blocking a thread (a pipe or a terminal's master).
#[derive(Clone)]
pub struct AsyncPipe(Arc<AsyncFd<OwnedFd>>);

impl AsyncPipe {
    pub fn new(fd: OwnedFd) -> std::io::Result<Self> {
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))?;
        // SAFETY: the OwnedFd is moved into the AsyncFd, stays open and is the same fd for its
        // lifetime.
        Ok(Self(Arc::new(unsafe { AsyncFd::register(fd) }?)))
    }

    /// Reads what is there; 0 at the end (for a terminal: when no process holds it any more,
    /// which the kernel reports as EIO).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), buf)?)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), data)?)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        weft_runtime::set_winsize(self.0.get_ref(), rows, cols)
    }
}

/// What attached clients send to a container's stdin.
enum Input {
    Data(Vec<u8>),
    /// End of input: the command reads end-of-file (ignored for a terminal).
    Close,
}

/// The input side of a running container with `-i` or `-t`, and its terminal.
#[derive(Clone)]
pub struct Console {
    pub tty: bool,
    pub stdin_once: bool,
    input: mpsc::UnboundedSender<Input>,
    /// The terminal's master side (for resizes).
    master: Option<AsyncPipe>,
    /// True once everything the terminal had was copied into the log.
    drained: watch::Receiver<bool>,
}

impl Console {
    /// Takes the descriptor pid 1 handed over: with `tty_log`, the terminal's master side
    /// (copied into that log until no process holds the terminal); else the writing end of stdin.
    pub(crate) fn start(fd: OwnedFd, tty_log: Option<File>, stdin_once: bool) -> std::io::Result<Self> {
        let tty = tty_log.is_some();
        let pipe = AsyncPipe::new(fd)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
        let (drained_tx, drained) = watch::channel(!tty);
        let writer = pipe.clone();
        tokio::spawn(async move {
            let mut writer = Some(writer);
            while let Some(input) = rx.recv().await {
                match (input, &writer) {
                    // The command closed its stdin: drop what follows.
                    (Input::Data(d), Some(w)) if w.write_all(&d).await.is_err() => writer = None,
                    (Input::Close, Some(_)) if !tty => writer = None,
                    _ => {}
                }
            }
        });
        let master = tty.then(|| pipe.clone());
        if let Some(mut log) = tty_log {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 || log.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = drained_tx.send(true);
            });
        }
        Ok(Self { tty, stdin_once, input: tx, master, drained })
    }

    pub fn write(&self, data: Vec<u8>) {
        let _ = self.input.send(Input::Data(data));
    }

    pub fn close_stdin(&self) {
        let _ = self.input.send(Input::Close);
    }

    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        match &self.master {
            Some(m) => m.resize(rows, cols),
            None => Err(std::io::Error::other("the container has no terminal (run it with -t)")),
        }
    }

    /// Waits (a bounded time: the pid namespace is gone, so nothing holds the terminal for long)
    /// until the terminal's output is all in the log.
    pub(crate) async fn drained(&self) {
        let mut rx = self.drained.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|d| *d)).await;
    }
}

/// One inotify instance for the daemon: a counter per followed log file, bumped on every write,
/// and the cap of each running container's log, checked on every write.
pub struct LogWatch {
    inner: Arc<Mutex<Watched>>,
}

struct Watched {
    watches: Watches,
    by_path: HashMap<PathBuf, WatchDescriptor>,
    by_wd: HashMap<WatchDescriptor, Watched1>,
}

/// One watched log.
struct Watched1 {
    changes: watch::Sender<u64>,
    cap: Option<Capped>,
}

/// Trims are whole blocks: the filesystem frees only those.
const BLOCK: u64 = 4096;

/// A log kept under its cap in place: when it passes `LogCap::limit`, its head is punched out
/// (`fallocate(PUNCH_HOLE | KEEP_SIZE)`) down to `LogCap::keep` bytes. Offsets never change, so
/// the writer (the container's stdout, or weftd's terminal relay) and every follower keep their
/// place; nothing is renamed or copied; the blocks are free at once. Readers skip the hole
/// ([`data_start`]). On a filesystem without hole punching the file is cut to nothing instead.
struct Capped {
    file: File,
    cap: weft_model::LogCap,
    /// The first byte kept.
    start: u64,
}

impl Capped {
    fn trim(&mut self) {
        let Ok(len) = self.file.metadata().map(|m| m.len()) else { return };
        if len.saturating_sub(self.start) <= self.cap.limit() {
            return;
        }
        let new_start = len.saturating_sub(self.cap.keep()) / BLOCK * BLOCK;
        if new_start <= self.start {
            return;
        }
        // SAFETY: fallocate on a descriptor this struct owns, with integer arguments only.
        let rc = unsafe {
            libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&self.file), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, self.start as libc::off_t, (new_start - self.start) as libc::off_t)
        };
        if rc == 0 {
            self.start = new_start;
            return;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            if self.file.set_len(0).is_ok() {
                self.start = 0;
            }
        } else {
            tracing::warn!(error = %e, "trimming a container log failed");
        }
    }
}

/// The offset of the first byte of data at or after `from` in `file` (past a trimmed head);
/// the file's length if there is none.
pub(crate) fn data_start(file: &File, from: u64) -> u64 {
    // SAFETY: lseek on a descriptor the caller owns; no memory is passed.
    let off = unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(file), from as libc::off_t, libc::SEEK_DATA) };
    if off >= 0 {
        off as u64
    } else {
        file.metadata().map(|m| m.len()).unwrap_or(from)
    }
}

impl LogWatch {
    pub fn start() -> std::io::Result<Self> {
        let inotify = Inotify::init()?;
        let inner = Arc::new(Mutex::new(Watched { watches: inotify.watches(), by_path: HashMap::new(), by_wd: HashMap::new() }));
        // SAFETY: the Inotify (owning its fd) is moved into the AsyncFd and lives as long.
        let mut afd = unsafe { AsyncFd::register(inotify) }?;
        let watched = inner.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let Ok(mut guard) = afd.readable_mut().await else { return };
                // (wd, whether the kernel dropped the watch: the file was deleted)
                let woken: Vec<(WatchDescriptor, bool)> = match guard.try_io(|fd| fd.get_mut().read_events(&mut buf).map(|evs| evs.map(|e| (e.wd, e.mask.contains(EventMask::IGNORED))).collect())) {
                    Ok(Ok(wds)) => wds,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "reading inotify events failed; followers fall back to the exit");
                        return;
                    }
                    Err(_would_block) => continue,
                };
                let mut w = watched.lock().unwrap_or_else(|p| p.into_inner());
                for (wd, dropped) in woken {
                    if let Some(e) = w.by_wd.get_mut(&wd) {
                        if let Some(c) = &mut e.cap {
                            c.trim();
                        }
                        e.changes.send_modify(|n| *n += 1);
                    }
                    if dropped {
                        w.by_wd.remove(&wd);
                        w.by_path.retain(|_, v| *v != wd);
                    }
                }
            }
        });
        Ok(Self { inner })
    }

    /// The watch of `path`, made if needed.
    fn entry<'a>(w: &'a mut Watched, path: &Path) -> std::io::Result<&'a mut Watched1> {
        let wd = match w.by_path.get(path) {
            Some(wd) => wd.clone(),
            None => {
                let wd = w.watches.add(path, WatchMask::MODIFY)?;
                w.by_wd.insert(wd.clone(), Watched1 { changes: watch::channel(0).0, cap: None });
                w.by_path.insert(path.to_path_buf(), wd.clone());
                wd
            }
        };
        w.by_wd.get_mut(&wd).ok_or_else(|| std::io::Error::other("watch without its entry"))
    }

    /// A counter that changes whenever `path` is written to.
    fn subscribe(&self, path: &Path) -> std::io::Result<watch::Receiver<u64>> {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Self::entry(&mut w, path)?.changes.subscribe())
    }

    /// Keeps the log at `path` under `cap` while its container runs (trimmed now if it is over).
    pub(crate) fn cap(&self, path: &Path, cap: weft_model::LogCap) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let start = data_start(&file, 0);
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = Self::entry(&mut w, path)?;
        let mut c = Capped { file, cap, start };
        c.trim();
        e.cap = Some(c);
        Ok(())
    }

    /// Stops watching `path` (its container exited: nothing writes to it any more), trimming it
    /// a last time.
    pub(crate) fn forget(&self, path: &Path) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wd) = w.by_path.remove(path) {
            if let Some(mut e) = w.by_wd.remove(&wd) {
                if let Some(c) = &mut e.cap {
                    c.trim();
                }
            }
            let _ = w.watches.remove(wd);
        }
    }
}

/// Reads a container's log as it grows, until the container has exited and all is read.
pub struct Follower {
    file: File,
    /// `None` for a container that is not running: read to the end and stop.
    changes: Option<watch::Receiver<u64>>,
    exit: Option<watch::Receiver<Option<i32>>>,
    buf: Vec<u8>,
    /// Past a trimmed head: the line cut by the trim is skipped.
    mid_line: bool,
}

impl Follower {
    /// `file` is open at the offset to start from; `exit` is the container's exit notification
    /// while it runs.
    pub(crate) fn new(watch: &LogWatch, path: &Path, file: File, exit: Option<watch::Receiver<Option<i32>>>) -> std::io::Result<Self> {
        let changes = exit.as_ref().map(|_| watch.subscribe(path)).transpose()?;
        Ok(Self { file, changes, exit, buf: vec![0u8; 64 * 1024], mid_line: false })
    }

    /// The next piece of output, or `None` at the end. A follower that fell behind the log's
    /// cap goes on from the first byte kept (never through the trimmed hole's zeros).
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            // Marked seen before reading: a write after this read wakes the wait below.
            if let Some(c) = &mut self.changes {
                c.borrow_and_update();
            }
            if let Ok(pos) = self.file.stream_position() {
                let len = self.file.metadata().map(|m| m.len()).unwrap_or(pos);
                let to = if pos > len { 0 } else { data_start(&self.file, pos) };
                if to != pos && pos < len || pos > len {
                    let _ = self.file.seek(SeekFrom::Start(to));
                    self.mid_line = to > 0;
                }
            }
            let exited = self.exit.as_ref().is_none_or(|e| e.borrow().is_some() || e.has_changed().is_err());
            match self.file.read(&mut self.buf) {
                Ok(n) if n > 0 && self.mid_line => {
                    if let Some(i) = self.buf[..n].iter().position(|b| *b == b'\n') {
                        self.mid_line = false;
                        if i + 1 < n {
                            return Some(self.buf[i + 1..n].to_vec());
                        }
                    }
                }
                Ok(n) if n > 0 => return Some(self.buf[..n].to_vec()),
                Ok(_) if exited => return None,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading a container log failed");
                    return None;
                }
            }
            let exit = self.exit.as_mut()?;
            match &mut self.changes {
                Some(changes) => tokio::select! {
                    r = changes.changed() => if r.is_err() { self.changes = None; },
                    _ = exit.changed() => {}
                },
                None => {
                    let _ = exit.changed().await;
                }
            }
        }
    }

    /// The exit code, once the end was reached because the container exited.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit.as_ref().and_then(|e| *e.borrow())
    }
}

/// What a client gets when it attaches: the output to follow, the input to write to (with
/// `-i`/`-t`), and the container's id.
pub struct Attachment {
    pub id: String,
    pub output: Follower,
    pub console: Option<Console>,
}

/// A `weft exec` process: its stdio (the terminal's master, or stdout and stderr, and stdin
/// when attached) and its exit code, once it ends.
pub struct ExecSession {
    pub id: String,
    pub tty: bool,
    /// `[master]` with a terminal; else `[stdout, stderr]`.
    pub output: Vec<AsyncPipe>,
    pub stdin: Option<AsyncPipe>,
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}
