//! The attach streams: a connection upgraded after `POST /containers/run?attach=1`,
//! `POST /containers/{id}/attach` or `POST /containers/{id}/exec` carries the client's input one
//! way and framed output the other (`weft_model::stream`). Each ends with an exit frame (the
//! process ended), a detach frame (the user pressed the detach keys), or nothing (weftd is
//! stopping).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weft_engine::stdio::{AsyncPipe, Attachment, Console, ExecSession};
use weft_model::stream::{frame, DetachScanner, FrameKind, MAX_FRAME};

use crate::api::Stopping;

/// The 101 answer that switches the connection to the stream, naming the container or exec.
pub fn switching(id_header: &'static str, id: &str) -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(id_header, v);
    }
    r
}

/// How a client's input is handled.
pub struct InputOpts {
    /// Read the client's input at all (`stdin=1`, `-i`).
    pub stdin: bool,
    /// The detach keys, watched for on a terminal.
    pub detach: Vec<u8>,
}

async fn send(w: &mut (impl AsyncWrite + Unpin), kind: FrameKind, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return w.write_all(&frame(kind, data)).await;
    }
    for piece in data.chunks(MAX_FRAME) {
        w.write_all(&frame(kind, piece)).await?;
    }
    Ok(())
}

/// Where a client's input goes.
pub enum Sink {
    /// A container's stdin or terminal (shared by every attached client).
    Console(Console),
    /// A `weft exec` process's stdin or terminal.
    Pipe { pipe: AsyncPipe, tty: bool },
}

impl Sink {
    fn tty(&self) -> bool {
        match self {
            Sink::Console(c) => c.tty,
            Sink::Pipe { tty, .. } => *tty,
        }
    }

    async fn write(&self, data: Vec<u8>) -> bool {
        match self {
            Sink::Console(c) => {
                c.write(data);
                true
            }
            Sink::Pipe { pipe, .. } => pipe.write_all(&data).await.is_ok(),
        }
    }

    /// The client's input ended: the command reads end-of-file if it asked for that (a
    /// terminal stays as it is).
    fn end(self) {
        match self {
            Sink::Console(c) if c.stdin_once => c.close_stdin(),
            Sink::Pipe { pipe, tty: false } => drop(pipe),
            _ => {}
        }
    }
}

/// Copies the client's input into `sink` until the detach keys (on a terminal), then returns;
/// at the end of input it ends the sink and waits forever (output decides when the stream ends).
async fn pump_input(mut r: impl AsyncRead + Unpin, sink: Option<Sink>, detach: &[u8]) {
    let Some(sink) = sink else { return std::future::pending().await };
    let mut scanner = sink.tty().then(|| DetachScanner::new(detach.to_vec()));
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            sink.end();
            return std::future::pending().await;
        }
        let (data, detached) = match &mut scanner {
            Some(s) => s.feed(&buf[..n]),
            None => (buf[..n].to_vec(), false),
        };
        if !data.is_empty() && !sink.write(data).await {
            return std::future::pending().await;
        }
        if detached {
            return;
        }
    }
}

/// How a stream ended.
enum Ended {
    /// The process exited with this code.
    Exit(i32),
    /// The user typed the detach keys.
    Detached,
    /// The client went away, or weftd is stopping: no last frame.
    Cut,
}

/// Sends the stream's last frame and closes it.
async fn close(mut w: impl AsyncWrite + Unpin, ended: Ended) {
    let _ = match ended {
        Ended::Exit(code) => send(&mut w, FrameKind::Exit, &code.to_be_bytes()).await,
        Ended::Detached => send(&mut w, FrameKind::Detached, &[]).await,
        Ended::Cut => Ok(()),
    };
    let _ = w.shutdown().await;
}

/// Serves one attachment to a container on the upgraded connection.
pub async fn serve_attach(upgrade: OnUpgrade, mut att: Attachment, opts: InputOpts, stopping: Stopping) {
    let Ok(upgraded) = upgrade.await else { return };
    let (r, mut w) = tokio::io::split(TokioIo::new(upgraded));
    let sink = att.console.clone().filter(|_| opts.stdin).map(Sink::Console);
    let input = pump_input(r, sink, &opts.detach);
    let output = async {
        while let Some(chunk) = att.output.next().await {
            if send(&mut w, FrameKind::Stdout, &chunk).await.is_err() {
                return None;
            }
        }
        att.output.exit_code()
    };
    let ended = tokio::select! {
        code = output => code.map_or(Ended::Cut, Ended::Exit),
        () = input => Ended::Detached,
        () = stopping.wait() => Ended::Cut,
    };
    close(w, ended).await;
}

/// Serves a `weft exec` process on the upgraded connection.
pub async fn serve_exec(upgrade: OnUpgrade, session: ExecSession, opts: InputOpts, stopping: Stopping) {
    let ExecSession { tty, output, stdin, exit, .. } = session;
    let Ok(upgraded) = upgrade.await else { return };
    let (r, mut w) = tokio::io::split(TokioIo::new(upgraded));
    let sink = stdin.filter(|_| opts.stdin).map(|pipe| Sink::Pipe { pipe, tty });
    let input = pump_input(r, sink, &opts.detach);
    let output = async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(FrameKind, Vec<u8>)>(16);
        for (i, pipe) in output.into_iter().enumerate() {
            let (tx, kind) = (tx.clone(), if i == 0 { FrameKind::Stdout } else { FrameKind::Stderr });
            tokio::spawn(relay(pipe, kind, tx));
        }
        drop(tx);
        while let Some((kind, data)) = rx.recv().await {
            if send(&mut w, kind, &data).await.is_err() {
                return None;
            }
        }
        exit.await.ok()
    };
    let ended = tokio::select! {
        code = output => code.map_or(Ended::Cut, Ended::Exit),
        () = input => Ended::Detached,
        () = stopping.wait() => Ended::Cut,
    };
    close(w, ended).await;
}

/// Copies one of a process's outputs into the frames to send, until it ends; once nobody takes
/// them (the client detached or left), output is read and dropped so the process never blocks.
async fn relay(pipe: AsyncPipe, kind: FrameKind, tx: tokio::sync::mpsc::Sender<(FrameKind, Vec<u8>)>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut tx = Some(tx);
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Some(t) = &tx {
            if t.send((kind, buf[..n].to_vec())).await.is_err() {
                tx = None;
            }
        }
    }
}
