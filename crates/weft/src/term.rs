//! The user's terminal: raw mode while a container's terminal is attached, and its size.

use std::io::IsTerminal;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Raw mode on stdin (every key goes to the container as typed, ^C included); the previous mode
/// comes back when this is dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// `None` when stdin is not a terminal.
    pub fn enter() -> anyhow::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// Rows and columns of the terminal on stdout (or stdin).
pub fn size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which outlives the call.
        if unsafe { tiocgwinsz(fd, &mut ws) }.is_ok() && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Progress of a long operation on the user's terminal (stderr), one line redrawn in place and
/// cleared at the end; nothing at all when stderr is not a terminal (piped, logged).
pub struct Progress {
    verb: &'static str,
    total: usize,
    shown: bool,
}

impl Progress {
    /// `None` when there is no terminal to draw on, or a single item (nothing to follow).
    pub fn new(verb: &'static str, total: usize) -> Option<Self> {
        (total > 1 && std::io::stderr().is_terminal()).then_some(Self { verb, total, shown: false })
    }

    /// Item `done` (counting from 1) of the total, named `what`.
    pub fn step(&mut self, done: usize, what: &str) {
        use std::io::Write;
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{} {done}/{} {what}", self.verb, self.total);
        let _ = e.flush();
        self.shown = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            use std::io::Write;
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// A line that says an operation without steps is under way (`network prune`), with the time
/// it has taken, redrawn until the returned guard is dropped; nothing when stderr is not a
/// terminal.
pub fn spinner(what: &'static str) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            use std::io::Write;
            let _ = write!(std::io::stderr(), "\r\x1b[2K{what}… {:.1} s", t0.elapsed().as_secs_f64());
            let _ = std::io::stderr().flush();
        }
    }))
}

/// Ends a [`spinner`] and clears its line.
pub fn stop_spinner(s: Option<tokio::task::JoinHandle<()>>) {
    if let Some(s) = s {
        s.abort();
        use std::io::Write;
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}
