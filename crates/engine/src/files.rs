//! The files a container gets: `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.

use std::net::IpAddr;

/// `/etc/hosts`: localhost entries, `--add-host` entries, then the container's own name.
pub fn hosts(own: Option<(IpAddr, &str)>, extra: &[(String, IpAddr)], host_file: Option<&str>) -> String {
    let mut s = match host_file {
        Some(h) => h.to_string(),
        None => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
                 ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            .to_string(),
    };
    if !s.ends_with('\n') && !s.is_empty() {
        s.push('\n');
    }
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some((ip, name)) = own {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

pub use weft_dns::{parse_resolv, Resolv};

/// Docker's rule: a container with its own network namespace cannot reach the host's loopback
/// resolvers, so those are dropped, and with none left it gets Google's public resolvers.
pub fn container_resolv(host: &Resolv, own_netns: bool, dns: &[IpAddr], search: &[String], options: &[String]) -> String {
    let mut servers: Vec<IpAddr> = if !dns.is_empty() {
        dns.to_vec()
    } else if own_netns {
        host.nameservers.iter().copied().filter(|ip| !ip.is_loopback()).collect()
    } else {
        host.nameservers.clone()
    };
    if servers.is_empty() && own_netns {
        servers = vec!["8.8.8.8".parse().expect("constant"), "8.8.4.4".parse().expect("constant")];
    }
    let search = if search.is_empty() { &host.search } else { search };
    let options = if options.is_empty() { &host.options } else { options };
    let mut s = String::new();
    for ip in servers {
        s.push_str(&format!("nameserver {ip}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_drops_loopback_for_own_netns() {
        let host = parse_resolv("nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp\noptions ndots:2\n");
        assert_eq!(container_resolv(&host, true, &[], &[], &[]), "nameserver 10.0.0.2\nsearch corp\noptions ndots:2\n");
        assert!(container_resolv(&host, false, &[], &[], &[]).starts_with("nameserver 127.0.0.53\n"));
        let only_local = parse_resolv("nameserver 127.0.0.53\n");
        assert_eq!(container_resolv(&only_local, true, &[], &[], &[]), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        let dns = ["1.1.1.1".parse().expect("ip")];
        assert_eq!(
            container_resolv(&host, true, &dns, &["a.b".into()], &["rotate".into()]),
            "nameserver 1.1.1.1\nsearch a.b\noptions rotate\n"
        );
    }

    #[test]
    fn hosts_file() {
        let h = hosts(Some(("172.17.0.2".parse().expect("ip"), "web")), &[("db".into(), "10.0.0.5".parse().expect("ip"))], None);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.0.0.5\tdb\n172.17.0.2\tweb\n"));
    }
}
