//! Resource limits as `docker run` takes them: `--memory` (`512m`, `1g`, `1024k`, bytes; at
//! least 6 MiB as Docker), `--cpus` (a decimal number of CPUs, kept as `NanoCpus`),
//! `--pids-limit` (`0` or `-1`: unlimited) and `--device-cgroup-rule` (`TYPE MAJOR:MINOR
//! ACCESS`, as the devices cgroup writes them), plus Docker's default list of allowed devices
//! and `weft stats`' reply. Parsing only: the runtime turns these into cgroup files.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Docker's smallest `--memory`.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// The smallest `--cpus` the kernel can enforce (1 ms of a 100 ms period), as Docker.
pub const MIN_NANO_CPUS: u64 = 10_000_000;

/// A memory size: bytes, or a number with `b`, `k`, `m`, `g` (any case, `kb`/`mb`/`gb` too),
/// in powers of 1024 as Docker's `RAMInBytes`.
pub fn parse_memory(s: &str) -> Result<u64, ModelError> {
    let bad = || ModelError::Memory(s.to_string());
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| r.ends_with(['k', 'm', 'g', 't'])).unwrap_or(&t);
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `--cpus 1.5` as nano-CPUs (`1500000000`); `0` is "no limit" as Docker.
pub fn parse_cpus(s: &str) -> Result<u64, ModelError> {
    let bad = || ModelError::Cpus(s.to_string());
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') || t.matches('.').count() > 1 {
        return Err(bad());
    }
    let v: f64 = t.parse().map_err(|_| bad())?;
    let nano = (v * 1e9).round();
    if !nano.is_finite() || nano >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(nano as u64)
}

/// One rule of the devices cgroup: `c 1:3 rwm`, `b 8:* r`, `a` (every device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// `a` (all), `b` (block), `c` (character).
    pub kind: char,
    /// `None`: `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceRule {
    /// The line the devices cgroup takes (`c 1:3 rwm`).
    pub fn line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                access.push(c);
            }
        }
        format!("{} {}:{} {access}", self.kind, num(self.major), num(self.minor))
    }
}

impl std::str::FromStr for DeviceRule {
    type Err = ModelError;

    /// `TYPE MAJOR:MINOR ACCESS` (Docker's `--device-cgroup-rule`), or `a` alone.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::DeviceRule(s.to_string());
        let parts: Vec<&str> = s.split_whitespace().collect();
        let all = DeviceRule { kind: 'a', major: None, minor: None, read: true, write: true, mknod: true };
        if parts == ["a"] {
            return Ok(all);
        }
        let [kind, nums, access] = parts[..] else { return Err(bad()) };
        let kind = match kind {
            "a" | "b" | "c" => kind.chars().next().ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let num = |n: &str| -> Result<Option<u32>, ModelError> {
            if n == "*" {
                return Ok(None);
            }
            if n.is_empty() || n.len() > 7 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse().map(Some).map_err(|_| bad())
        };
        let (major, minor) = nums.split_once(':').ok_or_else(bad)?;
        let (major, minor) = (num(major)?, num(minor)?);
        if access.is_empty() || access.len() > 3 || !access.bytes().all(|b| b"rwm".contains(&b)) {
            return Err(bad());
        }
        let has = |c: char| access.contains(c);
        if access.chars().any(|c| access.matches(c).count() > 1) {
            return Err(bad());
        }
        Ok(DeviceRule { kind, major, minor, read: has('r'), write: has('w'), mknod: has('m') })
    }
}

/// What every container may use, after "deny all", as Docker's default: make any node (`m`),
/// use only null, zero, full, random, urandom, tty, console, ptmx, the ptys and tun.
pub const DEFAULT_DEVICE_RULES: [&str; 12] = [
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",
    "c 10:200 rwm",
];

/// The default rules, parsed.
pub fn default_device_rules() -> Vec<DeviceRule> {
    DEFAULT_DEVICE_RULES.iter().map(|r| r.parse().expect("a constant rule")).collect()
}

/// `--pids-limit`: `None` (not given: the daemon's default), `0` or `-1` (unlimited, as
/// Docker), or a positive limit. Anything below -1 is refused.
pub fn check_pids_limit(v: Option<i64>) -> Result<(), ModelError> {
    match v {
        Some(n) if n < -1 => Err(ModelError::PidsLimit(n)),
        _ => Ok(()),
    }
}

/// One reading of a container's usage (`GET /containers/{id}/stats`), in Docker's shape and
/// field names. CPU % is computed by the reader from two readings, as Docker's CLI does.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerStats {
    pub id: String,
    pub name: String,
    /// When it was read (RFC 3339 in Docker; here nanoseconds since the epoch).
    pub read: u64,
    pub cpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub pids_stats: PidsStats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    /// The host's total CPU time (all CPUs, from `/proc/stat`), nanoseconds.
    pub system_cpu_usage: u64,
    pub online_cpus: u32,
    /// `--cpus`: the quota and period of the CFS bandwidth control, microseconds (0: none).
    #[serde(default)]
    pub cpu_quota: u64,
    #[serde(default)]
    pub cpu_period: u64,
    /// Periods in which the container ran out of quota.
    #[serde(default)]
    pub throttling_data: Throttling,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUsage {
    /// Nanoseconds of CPU the container's processes used, since it started.
    pub total_usage: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryStats {
    /// Bytes charged to the container, page cache included.
    pub usage: u64,
    /// The limit, or the host's memory when there is none.
    pub limit: u64,
    /// Page cache that is not in use (Docker's CLI shows `usage - inactive_file`).
    pub inactive_file: u64,
    /// Times the limit was hit (v1 `memory.failcnt`, v2 `memory.events` max).
    #[serde(default)]
    pub failcnt: u64,
    /// Processes the kernel's OOM killer killed in the container.
    #[serde(default)]
    pub oom_kill: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsStats {
    pub current: u64,
    /// 0: no limit.
    pub limit: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_as_docker() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert_eq!(parse_memory("1024k"), Ok(1 << 20));
        assert_eq!(parse_memory("6291456"), Ok(MIN_MEMORY));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("100b"), Ok(100));
        for bad in ["12x", "", "m", "-1m", "1..5m", ".5m", "1m5", "1 m x", "9999999999999t", "0x10"] {
            assert_eq!(parse_memory(bad), Err(ModelError::Memory(bad.into())), "{bad}");
        }
    }

    #[test]
    fn cpus_as_nano_cpus() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("0.01"), Ok(MIN_NANO_CPUS));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("0"), Ok(0));
        for bad in ["-1", "", "abc", "1.2.3", "1e3", "inf", "NaN"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_rules() {
        let r: DeviceRule = "c 42:* rmw".parse().expect("rule");
        assert_eq!(r, DeviceRule { kind: 'c', major: Some(42), minor: None, read: true, write: true, mknod: true });
        assert_eq!(r.line(), "c 42:* rwm");
        assert_eq!("b 8:0 r".parse::<DeviceRule>().map(|r| r.line()), Ok("b 8:0 r".into()));
        assert_eq!("a".parse::<DeviceRule>().map(|r| r.line()), Ok("a *:* rwm".into()));
        for bad in ["garbage", "c 42 rwm", "c 42:* x", "c 42:* rr", "d 1:1 r", "c 1:1", "c 1:1 rwm extra", "c -1:1 r", "c 1:99999999 r", "c 1:1 \n"] {
            assert!(bad.parse::<DeviceRule>().is_err(), "{bad:?}");
        }
        assert_eq!(default_device_rules().len(), 12);
        assert_eq!(default_device_rules()[2].line(), "c 1:3 rwm");
    }

    #[test]
    fn pids_limits() {
        for ok in [None, Some(0), Some(-1), Some(1), Some(4096)] {
            assert!(check_pids_limit(ok).is_ok());
        }
        assert_eq!(check_pids_limit(Some(-2)), Err(ModelError::PidsLimit(-2)));
    }
}
