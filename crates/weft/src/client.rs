//! A minimal HTTP/1.1 client of the daemon's unix socket.

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use weft_model::ErrorBody;

pub struct Client {
    socket: String,
}

impl Client {
    pub fn new(host: &str) -> anyhow::Result<Self> {
        match host.strip_prefix("unix://") {
            Some(p) if !p.is_empty() => Ok(Self { socket: p.to_string() }),
            _ => bail!("invalid host {host:?}: only unix:///PATH is supported"),
        }
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Sends a request; a non-2xx answer becomes the daemon's one-line message.
    pub async fn request(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| anyhow!("cannot connect to the weft daemon at unix://{}: is weftd running?", self.socket))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "weft")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await.context("daemon closed the connection")?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| format!("daemon answered {status}"));
            bail!("{msg}");
        }
        Ok(resp)
    }

    /// Sends a request that switches the connection to an attach stream (see
    /// `weft_model::stream`); returns the answer's headers and the stream.
    pub async fn upgrade(&self, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<(hyper::HeaderMap, TokioIo<hyper::upgrade::Upgraded>)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| anyhow!("cannot connect to the weft daemon at unix://{}: is weftd running?", self.socket))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn.with_upgrades());
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "weft")
            .header("content-type", "application/json")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await.context("daemon closed the connection")?;
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let msg = serde_json::from_slice::<ErrorBody>(&bytes).map(|e| e.message).unwrap_or_else(|_| format!("daemon answered {status}"));
            bail!("{msg}");
        }
        let headers = resp.headers().clone();
        let upgraded = hyper::upgrade::on(resp).await.context("switching to the stream")?;
        Ok((headers, TokioIo::new(upgraded)))
    }

    /// A request with a typed body and a typed answer.
    pub async fn typed<B: serde::Serialize, R: serde::de::DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> anyhow::Result<R> {
        let body = body.map(serde_json::to_value).transpose()?;
        let v = self.json(method, path, body).await?;
        serde_json::from_value(v).with_context(|| format!("the daemon's answer to {path}"))
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<serde_json::Value> {
        let resp = self.request(method, path, body).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
