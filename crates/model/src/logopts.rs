//! `--log-opt` as `docker run` takes it for its `json-file` and `local` drivers: `max-size`
//! (`10k`, `20m`, `1g`, bytes; `-1`: no cap) and `max-file` (at least 1). weft keeps one file per
//! container and caps it in place (see `weft_engine::stdio`): at most `max-size × max-file`
//! bytes are kept, and when that is passed the oldest `max-size` go, as a rotation would drop
//! the oldest file. Docker's default is no cap; weft's is its `local` driver's, 20m × 5.

use crate::ModelError;

pub const DEFAULT_LOG_MAX_SIZE: u64 = 20 << 20;
pub const DEFAULT_LOG_MAX_FILE: u64 = 5;
/// The smallest `max-size`: a log is trimmed in whole filesystem blocks.
pub const MIN_LOG_MAX_SIZE: u64 = 64 << 10;

/// How much of a container's log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCap {
    pub max_size: u64,
    pub max_file: u64,
}

impl LogCap {
    /// The most the log holds before it is trimmed.
    pub fn limit(&self) -> u64 {
        self.max_size.saturating_mul(self.max_file)
    }

    /// What a trim keeps: all but the oldest `max-size` (with one file, half of it).
    pub fn keep(&self) -> u64 {
        if self.max_file > 1 {
            self.limit() - self.max_size
        } else {
            self.max_size / 2
        }
    }
}

/// The cap `opts` (`KEY=VALUE` each) ask for; `None`: `max-size=-1`, no cap.
pub fn parse_log_opts(opts: &[String]) -> Result<Option<LogCap>, ModelError> {
    let bad = |o: &str, reason: &str| ModelError::LogOpt { opt: o.to_string(), reason: reason.to_string() };
    let (mut max_size, mut max_file) = (Some(DEFAULT_LOG_MAX_SIZE), DEFAULT_LOG_MAX_FILE);
    for o in opts {
        match o.split_once('=') {
            Some(("max-size", "-1")) => max_size = None,
            Some(("max-size", v)) => {
                let n = crate::parse_memory(v).map_err(|_| bad(o, "expected a size such as 10k, 20m or 1g, or -1 for no cap"))?;
                if n < MIN_LOG_MAX_SIZE {
                    return Err(bad(o, "at least 64k"));
                }
                max_size = Some(n);
            }
            Some(("max-file", v)) => max_file = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| bad(o, "expected a number of files, at least 1"))?,
            Some((k, _)) => return Err(bad(o, &format!("unknown option {k:?} (weft takes max-size and max-file)"))),
            None => return Err(bad(o, "expected KEY=VALUE")),
        }
    }
    Ok(max_size.map(|max_size| LogCap { max_size, max_file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_docker_takes_them() {
        let o = |v: &[&str]| parse_log_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(o(&[]).expect("default"), Some(LogCap { max_size: 20 << 20, max_file: 5 }));
        let c = o(&["max-size=1m", "max-file=3"]).expect("ok").expect("capped");
        assert_eq!((c.limit(), c.keep()), (3 << 20, 2 << 20));
        assert_eq!(o(&["max-size=1m", "max-file=1"]).expect("ok").expect("capped").keep(), 512 << 10);
        assert_eq!(o(&["max-size=-1"]).expect("ok"), None);
        for bad in [&["max-size=12x"][..], &["max-size=1k"], &["max-file=0"], &["max-file=two"], &["compress=true"], &["max-size"]] {
            assert!(o(bad).is_err(), "{bad:?}");
        }
    }
}
