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
        draw(&format!("{} {done}/{} {what}", self.verb, self.total));
        self.shown = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            draw("");
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
            draw(&format!("{what}… {:.1} s", t0.elapsed().as_secs_f64()));
        }
    }))
}

/// While weftd unpacks `archive` for a run (its first run from that archive), the share read
/// and the size, redrawn on the terminal; nothing when stderr is not a terminal or the archive
/// was unpacked before. Polls `GET /rootfs/progress` until the unpacking is over (or did not
/// start within two seconds of the run); end it with [`stop_spinner`].
pub fn unpack_progress(socket: String, archive: String) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let Ok(c) = crate::client::Client::new(&format!("unix://{socket}")) else { return };
        let path = format!("/rootfs/progress?archive={}", crate::client::enc(&archive));
        let name = std::path::Path::new(&archive).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let t0 = std::time::Instant::now();
        let mut seen = false;
        loop {
            match c.json(hyper::Method::GET, &path, None).await {
                Ok(p) => {
                    let (read, size) = (p["read"].as_u64().unwrap_or(0), p["size"].as_u64().unwrap_or(0).max(1));
                    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                    draw(&format!("unpacking {name} {:>3}% ({:.1}/{:.1} MiB)", read * 100 / size, mib(read), mib(size)));
                    seen = true;
                }
                Err(_) if seen || t0.elapsed() > std::time::Duration::from_secs(2) => {
                    if seen {
                        draw("");
                    }
                    return;
                }
                Err(_) => {}
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }))
}

/// Ends a [`spinner`] (or [`unpack_progress`]) and clears its line.
pub fn stop_spinner(s: Option<tokio::task::JoinHandle<()>>) {
    if let Some(s) = s {
        s.abort();
        draw("");
    }
}

/// Redraws the terminal's (stderr's) last line as `line` (empty: clears it).
fn draw(line: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r\x1b[2K{line}");
    let _ = e.flush();
}
