//! The daemon's side of a container's processes: spawning the helper, the go-ahead, signals, and
//! waiting for the exit of a pid 1 that may not be our child (after a daemon restart) via a pidfd.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use crate::{InitConfig, Result, RuntimeError};

/// A container whose pid 1 exists and waits for [`Spawned::start`]. Dropping it without starting
/// closes the pipe, and the pid 1 exits without running anything.
pub struct Spawned {
    pub pid: u32,
    go: ChildStdin,
    report: BufReader<ChildStdout>,
}

impl Spawned {
    /// Lets the pid 1 mount its files and start the command; returns once the command runs (so
    /// an `exec` right after sees the container's root), or with the reason it could not start.
    pub fn start(mut self) -> Result<()> {
        self.go.write_all(b"g").map_err(|source| RuntimeError::Process { op: "start", pid: self.pid, source })?;
        let mut line = String::new();
        let _ = self.report.read_line(&mut line);
        match line.trim() {
            "started" => Ok(()),
            "" => Err(RuntimeError::Init("container init exited before starting the command".into())),
            other => Err(RuntimeError::Init(other.strip_prefix("error: ").unwrap_or(other).to_string())),
        }
    }
}

/// Spawns `weft-init` and hands it `cfg` over its stdin (never argv: the environment may hold
/// secrets); its pid 1 writes to `log`. Blocks for the helper's few syscalls (about a process
/// spawn), so call it from a blocking context.
pub fn spawn(init: &Path, cfg: &InitConfig, log: File) -> Result<Spawned> {
    let spawn_err = |source| RuntimeError::Spawn { path: init.display().to_string(), source };
    let json = serde_json::to_vec(cfg).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let len = u32::try_from(json.len()).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let mut child = Command::new(init).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log).spawn().map_err(spawn_err)?;
    let mut go = child.stdin.take().ok_or_else(|| RuntimeError::Init("no stdin pipe".into()))?;
    let out = child.stdout.take().ok_or_else(|| RuntimeError::Init("no stdout pipe".into()))?;
    // The helper reads exactly this much; the same pipe later carries the go-ahead to pid 1.
    let sent = go.write_all(&len.to_le_bytes()).and_then(|()| go.write_all(&json));
    let mut report = BufReader::new(out);
    let mut line = String::new();
    let _ = report.read_line(&mut line);
    let _ = child.wait();
    let line = line.trim();
    match line.parse::<u32>() {
        Ok(pid) => Ok(Spawned { pid, go, report }),
        Err(_) if line.is_empty() => Err(sent.err().map(spawn_err).unwrap_or_else(|| RuntimeError::Init("init helper exited without a word".into()))),
        Err(_) => Err(RuntimeError::Init(line.strip_prefix("error: ").unwrap_or(line).to_string())),
    }
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
