//! One HTTP/1.1 request to weftd over its unix socket, blocking, with `Connection: close`: all a
//! CNI call needs. (The plugin runs once per call; a runtime and an async client would cost
//! more to start than the request takes.)

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long weftd may take to answer one call (an attach takes milliseconds; a loaded machine
/// and a store on etcd take more).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `method path` with JSON `body`; the status and the body of the answer.
pub fn request(socket: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: weftd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(&[head.as_bytes(), body].concat())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    parse(&answer)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("weftd's answer: {what}"))
}

/// The status and body of a whole answer (a body by length, or chunked).
fn parse(answer: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| bad("no status"))?;
    let body = &answer[end + 4..];
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let (mut out, mut rest) = (Vec::new(), body);
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("cut chunk"))?;
        let size = std::str::from_utf8(&rest[..eol]).ok().and_then(|h| usize::from_str_radix(h.split(';').next().unwrap_or("").trim(), 16).ok()).ok_or_else(|| bad("chunk size"))?;
        if size == 0 {
            return Ok((status, out));
        }
        let data = rest.get(eol + 2..eol + 2 + size).ok_or_else(|| bad("cut chunk"))?;
        out.extend_from_slice(data);
        rest = rest.get(eol + 4 + size..).ok_or_else(|| bad("cut chunk"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn answers_by_length_and_chunked() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse(plain).expect("plain"), (201, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).expect("chunked"), (200, b"abcde".to_vec()));
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nabc").is_err(), "a cut chunk");
        assert!(parse(b"garbage").is_err());
    }
}
