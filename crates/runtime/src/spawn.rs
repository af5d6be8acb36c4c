//! The daemon's side of a container's processes: spawning the helper, the go-ahead, signals, and
//! waiting for the exit of a pid 1 that may not be our child (after a daemon restart) via a pidfd.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use crate::{report, ExecConfig, HelperConfig, InitConfig, Result, RuntimeError};

/// A container whose pid 1 exists and waits for [`Spawned::start`]. Dropping it without starting
/// closes the pipe, and the pid 1 exits without running anything.
pub struct Spawned {
    pub pid: u32,
    go: ChildStdin,
    report: OwnedFd,
}

impl Spawned {
    /// Lets the pid 1 mount its files and start the command; returns once the command runs (so
    /// an `exec` right after sees the container's root), or with the reason it could not start.
    /// With `tty` it returns the terminal's master side; with `stdin` (and no `tty`), the
    /// writing end of the command's stdin.
    pub fn start(mut self) -> Result<Option<OwnedFd>> {
        self.go.write_all(b"g").map_err(|source| RuntimeError::Process { op: "start", pid: self.pid, source })?;
        let (msg, mut fds) = report::recv(&self.report).map_err(|source| RuntimeError::Process { op: "start", pid: self.pid, source })?;
        match msg.as_str() {
            "started" => Ok(fds.pop()),
            "" => Err(RuntimeError::Init("container init exited before starting the command".into())),
            other => Err(RuntimeError::Init(other.strip_prefix("error: ").unwrap_or(other).to_string())),
        }
    }
}

/// Starts `weft-init` with `cfg` on its stdin (a 4-byte little-endian length, then JSON; never
/// argv, which every user of the host can read, while the environment may hold secrets) and
/// the report socket as its stdout; returns the child, the stdin pipe and the report socket.
fn helper(init: &Path, cfg: &HelperConfig, stderr: Stdio) -> Result<(Child, ChildStdin, OwnedFd)> {
    let spawn_err = |source| RuntimeError::Spawn { path: init.display().to_string(), source };
    let json = serde_json::to_vec(cfg).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let len = u32::try_from(json.len()).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let (ours, theirs) = report::pair().map_err(spawn_err)?;
    let mut child = Command::new(init).stdin(Stdio::piped()).stdout(Stdio::from(theirs)).stderr(stderr).spawn().map_err(spawn_err)?;
    let mut go = child.stdin.take().ok_or_else(|| RuntimeError::Init("no stdin pipe".into()))?;
    // The helper reads exactly this much; the same pipe later carries pid 1's go-ahead. A helper
    // that died first is told by its report, below.
    let _ = go.write_all(&len.to_le_bytes()).and_then(|()| go.write_all(&json));
    Ok((child, go, ours))
}

/// The reason in a report that is not the expected one.
fn init_error(msg: &str) -> RuntimeError {
    if msg.is_empty() {
        return RuntimeError::Init("init helper exited without a word".into());
    }
    RuntimeError::Init(msg.strip_prefix("error: ").unwrap_or(msg).to_string())
}

/// Spawns `weft-init` for a new container; its pid 1 writes to `log`. Blocks for the helper's
/// few syscalls (about a process spawn), so call it from a blocking context.
pub fn spawn(init: &Path, cfg: &InitConfig, log: File) -> Result<Spawned> {
    let (mut child, go, report) = helper(init, &HelperConfig::Container(Box::new(cfg.clone())), Stdio::from(log))?;
    let received = report::recv(&report);
    let _ = child.wait();
    let (msg, _) = received.map_err(|source| RuntimeError::Spawn { path: init.display().to_string(), source })?;
    match msg.parse::<u32>() {
        Ok(pid) => Ok(Spawned { pid, go, report }),
        Err(_) => Err(init_error(&msg)),
    }
}

/// A command running in a container by `weft exec`: the helper (our child, which exits with
/// the command's code), the command's pid, and the daemon's ends of its stdio: `[master]` with
/// a tty, else `[stdout, stderr]` and then the stdin writer if asked for.
pub struct Exec {
    pub helper: Child,
    pub pid: u32,
    pub fds: Vec<OwnedFd>,
}

/// Starts `cfg.cmd` inside container `cfg.pid`'s namespaces, confined as its pid 1. Blocking.
pub fn spawn_exec(init: &Path, cfg: &ExecConfig) -> Result<Exec> {
    let (mut child, _go, report) = helper(init, &HelperConfig::Exec(cfg.clone()), Stdio::inherit())?;
    let (msg, fds) = match report::recv(&report) {
        Ok(r) => r,
        Err(source) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RuntimeError::Spawn { path: init.display().to_string(), source });
        }
    };
    match msg.strip_prefix("started ").and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => Ok(Exec { helper: child, pid, fds }),
        None => {
            let _ = child.wait();
            Err(init_error(&msg))
        }
    }
}

/// Sets the window size of the terminal whose master side is `master`.
pub fn set_winsize(master: &impl std::os::fd::AsRawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to `pid`; a process that is already gone is fine.
pub fn kill(pid: u32, sig: Signal) -> Result<()> {
    match nix::sys::signal::kill(Pid::from_raw(pid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::Process { op: "signal", pid, source: e.into() }),
    }
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot); `None` if no such process.
pub fn pid_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is the process that started at `start` (see [`pid_start_time`]) and has not
/// exited: a zombie waiting to be reaped has the same pid and start time but runs nothing.
pub fn pid_running(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return false };
    let mut fields = after_comm.split_whitespace();
    let state = fields.next();
    !matches!(state, None | Some("Z") | Some("X")) && fields.nth(18).and_then(|f| f.parse().ok()) == Some(start)
}

/// The exit code pid 1 recorded, if it got that far.
pub fn read_exit_code(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Resolves when `pid` has exited (works for processes that are not our children).
pub async fn wait_exit(pid: u32) -> Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(RuntimeError::Process { op: "pidfd_open", pid, source: err }),
        };
    }
    // SAFETY: fd is a fresh pidfd returned above that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd is moved into the AsyncFd, stays open and is the same fd for its lifetime.
    let afd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
        .map_err(|e| RuntimeError::Process { op: "watch", pid, source: e.into() })?;
    let _ = afd.readable().await.map_err(|source| RuntimeError::Process { op: "watch", pid, source })?;
    Ok(())
}
