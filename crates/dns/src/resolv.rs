//! The resolv.conf files around the embedded resolver: the host's (read as Docker reads it), and
//! the one a container on a user-defined network gets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::RESOLVER;

/// The parts of a resolv.conf weft reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

pub fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().and_then(|w| w.parse::<IpAddr>().ok())),
            Some("search") | Some("domain") => r.search = words.map(String::from).collect(),
            Some("options") => r.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    r
}

/// The upstream servers of a container, in order of precedence.
pub fn upstreams(own: &[IpAddr], daemon: &[IpAddr], host: &Resolv) -> Vec<SocketAddr> {
    let list = if !own.is_empty() {
        own
    } else if !daemon.is_empty() {
        daemon
    } else {
        &host.nameservers
    };
    list.iter().map(|ip| SocketAddr::new(*ip, 53)).collect()
}

/// The host's resolvers: systemd-resolved's 127.0.0.53 stub stands for the servers it lists in
/// /run/systemd/resolve/resolv.conf (read as Docker does).
pub fn host_resolv() -> Resolv {
    let main = parse_resolv(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let stub: IpAddr = Ipv4Addr::new(127, 0, 0, 53).into();
    if main.nameservers == [stub] {
        if let Ok(t) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            let real = parse_resolv(&t);
            if !real.nameservers.is_empty() {
                return Resolv { search: main.search, options: main.options, ..real };
            }
        }
    }
    main
}

/// `/etc/resolv.conf` of a container that uses the embedded resolver.
pub fn container_resolv(host: &Resolv, search: &[String], options: &[String]) -> String {
    let search = if search.is_empty() { &host.search } else { search };
    let mut s = format!("nameserver {RESOLVER}\n");
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut opts = vec!["ndots:0".to_string()];
    opts.extend(options.iter().cloned());
    s.push_str(&format!("options {}\n", opts.join(" ")));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_for_clients() {
        let host = parse_resolv("nameserver 10.0.0.2\nsearch corp\n");
        assert_eq!(container_resolv(&host, &[], &[]), "nameserver 127.0.0.11\nsearch corp\noptions ndots:0\n");
        assert_eq!(container_resolv(&host, &["a.b".into()], &["timeout:1".into()]), "nameserver 127.0.0.11\nsearch a.b\noptions ndots:0 timeout:1\n");
        let own: Vec<IpAddr> = vec!["1.1.1.1".parse().expect("ip")];
        assert_eq!(upstreams(&own, &[], &host), vec!["1.1.1.1:53".parse::<SocketAddr>().expect("sa")]);
        assert_eq!(upstreams(&[], &[], &host), vec!["10.0.0.2:53".parse::<SocketAddr>().expect("sa")]);
    }
}
