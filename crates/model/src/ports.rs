//! Port publishing input: `-p/--publish` specs in every form Docker accepts, `--expose`, and the
//! concrete mappings the engine allocates from them.
//!
//! Forms: `CPORT`, `HPORT:CPORT`, `IP:HPORT:CPORT`, `IP::CPORT`, `[IPv6]:HPORT:CPORT`, each port
//! possibly a range `A-B`, optionally followed by `/tcp`, `/udp` or `/sctp`. A host range with a
//! single container port means "one free host port from the range" (Docker's rule); otherwise the
//! two ranges must have the same length.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The IANA protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

impl FromStr for Proto {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(()),
        }
    }
}

/// An inclusive port range; a single port is `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

/// One `-p` argument, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `None`: the daemon's default binding address (`--ip`).
    pub host_ip: Option<IpAddr>,
    /// `None`: ephemeral host ports.
    pub host: Option<PortRange>,
    pub container: PortRange,
    pub proto: Proto,
}

/// A published port as allocated: what `weft port` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

fn bad(s: &str, why: &str) -> ModelError {
    ModelError::Publish { spec: s.to_string(), reason: why.to_string() }
}

fn parse_range(s: &str, whole: &str, allow_zero: bool) -> Result<PortRange, ModelError> {
    let port = |p: &str| -> Result<u16, ModelError> {
        let n: u16 = p.parse().map_err(|_| bad(whole, &format!("invalid port {p:?}")))?;
        if n == 0 && !allow_zero {
            return Err(bad(whole, "port 0 is not a valid container port"));
        }
        Ok(n)
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if a > b {
        return Err(bad(whole, &format!("invalid range {s}")));
    }
    Ok(PortRange { start: a, end: b })
}

/// Parses one `-p` argument.
/// Published ports of one container or namespace at most: each holds a host socket, and one
/// request must not take the daemon's descriptors (`-p 1-65535:1-65535` would bind 65,535).
pub const MAX_PUBLISHED_PORTS: usize = 1024;

/// Refuses more than [`MAX_PUBLISHED_PORTS`] ports in `specs`.
pub fn check_port_count(specs: &[PortSpec]) -> Result<(), ModelError> {
    let n: usize = specs.iter().map(|s| s.host.map_or(s.container.len(), |h| h.len())).sum();
    if n > MAX_PUBLISHED_PORTS {
        return Err(ModelError::TooManyPorts(n));
    }
    Ok(())
}

pub fn parse_publish(s: &str) -> Result<PortSpec, ModelError> {
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, p)) => (r, p.parse::<Proto>().map_err(|_| bad(s, &format!("invalid protocol {p:?}")))?),
        None => (s, Proto::Tcp),
    };
    // An IPv6 host address is bracketed: [::1]:8080:80, [::1]::80.
    let (ip, ports) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or_else(|| bad(s, "unclosed '['"))?;
        let after = after.strip_prefix(':').ok_or_else(|| bad(s, "expected ':' after the address"))?;
        (Some(ip), after)
    } else {
        match rest.matches(':').count() {
            0 | 1 => (None, rest),
            2 => {
                let (ip, ports) = rest.split_once(':').expect("two colons");
                (Some(ip), ports)
            }
            _ => return Err(bad(s, "too many ':' (bracket an IPv6 address: [::1]:8080:80)")),
        }
    };
    let host_ip = match ip {
        // `::80` reads as an empty address and an empty host port: say so rather than guess.
        Some("") if ports.starts_with(':') => return Err(bad(s, "empty IP address and host port (for IPv6, bracket it: [::]:8080:80)")),
        Some("") | None => None,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| bad(s, &format!("invalid IP address {ip:?}")))?),
    };
    let (host, container) = match ports.split_once(':') {
        Some((h, c)) => (if h.is_empty() { None } else { Some(parse_range(h, s, true)?) }, parse_range(c, s, false)?),
        None => {
            if ip.is_some() {
                return Err(bad(s, "expected IP:HOSTPORT:CONTAINERPORT"));
            }
            (None, parse_range(ports, s, false)?)
        }
    };
    let host = host.filter(|h| !(h.start == 0 && h.end == 0));
    if let Some(h) = host {
        if h.start == 0 {
            return Err(bad(s, "host port range cannot start at 0"));
        }
        if h.len() != container.len() && container.len() != 1 {
            return Err(bad(s, "host and container port ranges have different lengths"));
        }
    }
    Ok(PortSpec { host_ip, host, container, proto })
}

/// Parses `--expose PORT[-PORT][/proto]`.
pub fn parse_expose(s: &str) -> Result<(PortRange, Proto), ModelError> {
    let (ports, proto) = match s.rsplit_once('/') {
        Some((r, p)) => (r, p.parse::<Proto>().map_err(|_| bad(s, &format!("invalid protocol {p:?}")))?),
        None => (s, Proto::Tcp),
    };
    Ok((parse_range(ports, s, false)?, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u16, b: u16) -> PortRange {
        PortRange { start: a, end: b }
    }
    fn spec(ip: Option<&str>, host: Option<PortRange>, c: PortRange, proto: Proto) -> PortSpec {
        PortSpec { host_ip: ip.map(|i| i.parse().expect("ip")), host, container: c, proto }
    }

    #[test]
    fn every_docker_form() {
        use Proto::*;
        let cases = [
            ("80", spec(None, None, r(80, 80), Tcp)),
            ("8080:80", spec(None, Some(r(8080, 8080)), r(80, 80), Tcp)),
            ("127.0.0.1:8080:80", spec(Some("127.0.0.1"), Some(r(8080, 8080)), r(80, 80), Tcp)),
            ("127.0.0.1::80", spec(Some("127.0.0.1"), None, r(80, 80), Tcp)),
            ("53:53/udp", spec(None, Some(r(53, 53)), r(53, 53), Udp)),
            ("9000:9000/sctp", spec(None, Some(r(9000, 9000)), r(9000, 9000), Sctp)),
            ("8000-8010:80-90", spec(None, Some(r(8000, 8010)), r(80, 90), Tcp)),
            ("10.0.0.1:8000-8010:80-90/udp", spec(Some("10.0.0.1"), Some(r(8000, 8010)), r(80, 90), Udp)),
            ("8000-8010:80", spec(None, Some(r(8000, 8010)), r(80, 80), Tcp)),
            ("80-82", spec(None, None, r(80, 82), Tcp)),
            ("[::1]:8080:80", spec(Some("::1"), Some(r(8080, 8080)), r(80, 80), Tcp)),
            ("[::]::80/udp", spec(Some("::"), None, r(80, 80), Udp)),
            ("0:80", spec(None, None, r(80, 80), Tcp)),
            ("80/TCP", spec(None, None, r(80, 80), Tcp)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_publish(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "", "abc", "0", "80/icmp", "8000-8010:80-85", "70000:80", "8080:0", "1.2.3.4:80", "1.2.3.300:80:80",
            "::1:8080:80", "[::1:8080:80", "90-80:80", "a:b:c:d", "8080:80-", "-80",
        ] {
            assert!(parse_publish(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn expose() {
        assert_eq!(parse_expose("80"), Ok((r(80, 80), Proto::Tcp)));
        assert_eq!(parse_expose("53/udp"), Ok((r(53, 53), Proto::Udp)));
        assert_eq!(parse_expose("7000-7002/sctp"), Ok((r(7000, 7002), Proto::Sctp)));
        assert!(parse_expose("x").is_err());
    }
}
