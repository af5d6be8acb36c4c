//! The attach stream: what flows over a connection upgraded by `POST /containers/run?attach=1`,
//! `POST /containers/{id}/attach` and `POST /containers/{id}/exec` (see `docs/api.md`).
//!
//! Client to daemon: the raw bytes of stdin; shutting the write side down is end of input.
//! Daemon to client: frames as Docker's multiplexed stream has them (one byte of kind, three
//! zero bytes, a big-endian u32 length, the payload), with two kinds Docker does not have: the
//! exit code that ends a stream whose process ended, and the detach that ends one the user left.
//! A stream that ends without either was cut (the daemon went away).

/// The kind of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Stdout = 1,
    Stderr = 2,
    /// Payload: the exit code, a big-endian i32. The last frame.
    Exit = 3,
    /// No payload: the user pressed the detach keys; the process runs on. The last frame.
    Detached = 4,
}

/// The largest payload a frame carries (larger output is split).
pub const MAX_FRAME: usize = 1 << 16;

/// The header and payload of one frame.
pub fn frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind as u8, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    Detached,
}

/// Reassembles frames from the bytes of a stream, in whatever pieces they arrive.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Adds bytes; returns the frames they complete, or an error for bytes that are no frame.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            if self.buf.len() < 8 {
                return Ok(frames);
            }
            let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if len > MAX_FRAME || self.buf[1..4] != [0, 0, 0] {
                return Err(format!("bad frame header {:?}", &self.buf[..8]));
            }
            if self.buf.len() < 8 + len {
                return Ok(frames);
            }
            let payload: Vec<u8> = self.buf[8..8 + len].to_vec();
            let kind = self.buf[0];
            self.buf.drain(..8 + len);
            frames.push(match kind {
                1 => Frame::Stdout(payload),
                2 => Frame::Stderr(payload),
                3 => Frame::Exit(i32::from_be_bytes(payload.as_slice().try_into().map_err(|_| "bad exit frame".to_string())?)),
                4 => Frame::Detached,
                k => return Err(format!("unknown frame kind {k}")),
            });
        }
    }
}

/// Docker's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `--detach-keys` as Docker reads it: comma-separated keys, each a single character or
/// `ctrl-X` with X one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, crate::ModelError> {
    let bad = || crate::ModelError::DetachKeys(s.to_string());
    let keys = s
        .split(',')
        .map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0].to_ascii_lowercase() {
                l @ b'a'..=b'z' => Ok(l - b'a' + 1),
                b'@' => Ok(0),
                b @ (b'[' | b'\\' | b']' | b'^' | b'_') => Ok(b - b'@'),
                _ => Err(bad()),
            },
            _ if k.len() == 1 && k.is_ascii() => Ok(k.as_bytes()[0]),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<u8>, _>>()?;
    if keys.is_empty() {
        return Err(bad());
    }
    Ok(keys)
}

/// Watches an input stream for the detach keys: keys that could start the sequence are held
/// back until it completes (detach) or breaks (they pass through, as typed).
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    /// The bytes to pass on, and whether the sequence completed (what follows it is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            // Broken: what was held goes through, then this byte may start a new attempt.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_any_pieces() {
        let mut bytes = frame(FrameKind::Stdout, b"hello");
        bytes.extend(frame(FrameKind::Stderr, b""));
        bytes.extend(frame(FrameKind::Exit, &7i32.to_be_bytes()));
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        for piece in bytes.chunks(3) {
            got.extend(r.push(piece).expect("frames"));
        }
        assert_eq!(got, [Frame::Stdout(b"hello".to_vec()), Frame::Stderr(vec![]), Frame::Exit(7)]);
        assert!(FrameReader::default().push(&[9, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(FrameReader::default().push(&[1, 0, 0, 0, 0xff, 0, 0, 0]).is_err());
    }

    #[test]
    fn detach_keys_parse_as_docker() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS).expect("default"), [0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-[,a").expect("keys"), [0, 0x1b, b'a']);
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,,ctrl-q", "é"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn detach_scanner_holds_back_and_releases() {
        let mut s = DetachScanner::new(vec![0x10, 0x11]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // The sequence broken: the held key goes through.
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (vec![], true));
        assert_eq!(s.feed(b"x\x10\x11"), (b"x".to_vec(), true));
        let mut one = DetachScanner::new(vec![b'q']);
        assert_eq!(one.feed(b"abq"), (b"ab".to_vec(), true));
    }
}
