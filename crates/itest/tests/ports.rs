//! Issue 3: port publishing in every form and protocol, from another host, from the host, via
//! localhost and by hairpin; -P; ephemeral ports; conflicts; --icc=false; the user chain; the
//! removed-UDP-mapping case; the userland proxy. Real traffic only.

use weft_itest::{eventually, nettool, text, Host};

/// A container serving `name-PORT` on each of `ports` (busybox httpd, one per port).
fn multi_web(h: &Host, name: &str, extra: &[&str], ports: &[u16]) -> String {
    let mut script = String::new();
    for p in ports {
        script.push_str(&format!("mkdir -p /tmp/{name}{p} && echo {name}-{p} > /tmp/{name}{p}/index.html && httpd -p {p} -h /tmp/{name}{p}; "));
    }
    script.push_str("exec sleep 300");
    let ip = h.run_d(name, extra, &["sh", "-c", &script]);
    for p in ports {
        h.listening(name, *p);
    }
    ip
}

#[test]
fn tcp_forms_from_outside_host_localhost_and_hairpin() {
    let mut h = Host::new("pub");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    multi_web(&h, "web", &["-p", "8080:80", "-p", "127.0.0.1:8081:80", "-p", "127.0.0.1::80", "-p", "8100-8102:80-82", "-p", "8200-8210:80"], &[80, 81, 82]);
    h.run_d("cli", &[], &["sleep", "300"]);
    let out = |addr: &str| String::from_utf8_lossy(&h.in_outside(&format!("timeout 5 busybox wget -q -O- http://{addr}/")).stdout).trim().to_string();
    // HPORT:CPORT from another host, from the host, via localhost, by hairpin (host address and gateway).
    assert_eq!(out("198.51.100.1:8080"), "web-80");
    assert_eq!(h.host_fetch("198.51.100.1:8080"), "web-80");
    assert_eq!(h.host_fetch("127.0.0.1:8080"), "web-80");
    for addr in ["198.51.100.1:8080", "172.17.0.1:8080"] {
        assert_eq!(h.get("cli", addr), "web-80", "hairpin {addr}");
    }
    // A container reaching its own published port.
    assert_eq!(h.get("web", "198.51.100.1:8080"), "web-80");
    // IP:HPORT:CPORT answers only on that address.
    assert_eq!(h.host_fetch("127.0.0.1:8081"), "web-80");
    assert_eq!(out("198.51.100.1:8081"), "", "bound to 127.0.0.1 only");
    // IP::CPORT: an ephemeral port from ip_local_port_range.
    let eph = h.ok(&["port", "web", "80"]);
    let eph_port: u16 = eph.lines().find(|l| l.starts_with("127.0.0.1:") && !l.ends_with(":8081")).and_then(|l| l.rsplit(':').next()).and_then(|p| p.parse().ok()).expect("ephemeral mapping");
    let range = String::from_utf8_lossy(&h.sh("cat /proc/sys/net/ipv4/ip_local_port_range").stdout).to_string();
    let lo: u16 = range.split_whitespace().next().and_then(|p| p.parse().ok()).expect("range");
    assert!(eph_port >= lo, "{eph_port} below {range}");
    assert_eq!(h.host_fetch(&format!("127.0.0.1:{eph_port}")), "web-80");
    // Ranges map port by port; a host range for one container port takes its first free port.
    for (hp, want) in [(8100, "web-80"), (8101, "web-81"), (8102, "web-82"), (8200, "web-80")] {
        assert_eq!(out(&format!("198.51.100.1:{hp}")), want, "{hp}");
    }
    // `weft port` and inspect agree with what answered.
    let all = h.ok(&["port", "web"]);
    for line in ["80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081", "81/tcp -> 0.0.0.0:8101", "80/tcp -> 0.0.0.0:8200"] {
        assert!(all.contains(line), "{line} missing in:\n{all}");
    }
    let ports = h.ok(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "web"]);
    assert!(ports.contains(r#"{"HostIp":"0.0.0.0","HostPort":"8080"}"#), "{ports}");
    // Removing the container removes its mappings.
    h.ok(&["rm", "-f", "web"]);
    assert_eq!(out("198.51.100.1:8080"), "");
    let table = text(&h.sh("nft list map inet weft ports_any"));
    assert!(!table.contains("8080"), "{table}");
    h.finish();
}

#[test]
fn udp_and_sctp_reach_the_container() {
    let mut h = Host::new("udp");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    let nt = nettool();
    h.ok(&["run", "-d", "--name", "u1", "-p", "6000:6000/udp", "--", "python3", &nt, "udp-recv", "6000", "20"]);
    h.ok(&["run", "-d", "--name", "s1", "-p", "9000:9000/sctp", "--", "python3", &nt, "sniff", "eth0", "132", "9000", "20"]);
    let s1_ip = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "s1"]);
    eventually("u1 delivers", || {
        h.outside_ok(&format!("python3 {nt} udp-send 198.51.100.1 6000 40000 1 0"));
        h.ok(&["logs", "u1"]).contains("pkt0 from 198.51.100.2:40000")
    });
    // SCTP: no SCTP sockets on this kernel, so a raw INIT goes out and a packet socket in the
    // container sees it arrive, DNATed to the container's address.
    eventually("s1 sees the INIT", || {
        h.outside_ok(&format!("python3 {nt} sctp-init 198.51.100.1 9000"));
        h.ok(&["logs", "s1"]).contains(&format!("198.51.100.2:40001 -> {s1_ip}:9000"))
    });
    // -P: an exposed UDP port on an ephemeral host port carries traffic too.
    h.ok(&["run", "-d", "--name", "u2", "-P", "--expose", "6001/udp", "--", "python3", &nt, "udp-recv", "6001", "20"]);
    let eph = h.ok(&["port", "u2", "6001/udp"]);
    let port: u16 = eph.strip_prefix("0.0.0.0:").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("ephemeral mapping: {eph}"));
    eventually("u2 delivers on its ephemeral port", || {
        h.outside_ok(&format!("python3 {nt} udp-send 198.51.100.1 {port} 40002 1 0"));
        h.ok(&["logs", "u2"]).contains("pkt0 from 198.51.100.2:40002")
    });
    h.finish();
}

#[test]
fn removed_udp_mapping_no_longer_delivers_to_the_old_container() {
    let mut h = Host::new("udpct");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    let nt = nettool();
    h.ok(&["run", "-d", "--name", "old1", "-p", "6000:6000/udp", "--", "python3", &nt, "udp-recv", "6000", "30"]);
    // One UDP flow (fixed source port) that keeps going while the mapping moves.
    let mut sender = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{}-o", h.ns), "python3", &nt, "udp-send", "198.51.100.1", "6000", "40000", "300", "0.05"])
        .spawn()
        .expect("udp sender");
    eventually("the flow reaches old1", || h.ok(&["logs", "old1"]).contains("from 198.51.100.2:40000"));
    h.ok(&["rm", "-f", "old1"]);
    // Packets of the flow arrive while the port has no mapping (their conntrack entry has no NAT).
    std::thread::sleep(std::time::Duration::from_millis(300));
    h.ok(&["run", "-d", "--name", "new1", "-p", "6000:6000/udp", "--", "python3", &nt, "udp-recv", "6000", "30"]);
    // Without deleting the flow's conntrack entries (at unpublish: the old DNAT; at publish: the
    // entry without NAT from the gap), its packets would not reach new1 for the UDP timeout.
    eventually("the same flow reaches new1", || h.ok(&["logs", "new1"]).contains("from 198.51.100.2:40000"));
    sender.kill().expect("stop the sender");
    sender.wait().expect("reap the sender");
    h.finish();
}

#[test]
fn publish_all_ephemeral_and_conflicts() {
    let mut h = Host::new("pall");
    h.start(&[]);
    let rootfs = h.rootfs();
    multi_web(&h, "web", &["-P", "--expose", "80", "--expose", "53/udp"], &[80]);
    let ports = h.ok(&["port", "web"]);
    assert_eq!(ports.lines().count(), 2, "{ports}");
    let tcp = h.ok(&["port", "web", "80/tcp"]);
    assert!(tcp.starts_with("0.0.0.0:"), "{tcp}");
    assert_eq!(h.host_fetch(&tcp.replace("0.0.0.0", "127.0.0.1")), "web-80");
    // Conflicts and bad specs: one error line, nothing created.
    multi_web(&h, "web2", &["-p", "8080:80"], &[80]);
    let before = (h.ok(&["ps", "-aq"]), h.link_names(), text(&h.sh("nft list table inet weft")));
    let run = |p: &str| h.fails(&["run", "-d", "--rootfs", &rootfs, "-p", p, "--", "sleep", "300"]);
    assert!(run("8080:80").contains("host port 0.0.0.0:8080/tcp is already allocated"));
    assert!(run("127.0.0.1:8080:80").contains("already allocated"));
    assert!(run("8000-8010:80-85").contains("different lengths"));
    assert!(run("80/icmp").contains("invalid protocol"));
    assert!(run("99999:80").contains("invalid port"));
    assert!(run("10.99.99.99:8090:80").contains("host address 10.99.99.99 of -p 10.99.99.99:8090 is not an address of this host"), "an address the host does not have");
    assert!(h.fails(&["run", "-d", "--net", "host", "-p", "80:80", "--", "true"]).contains("needs a bridge network"));
    // A port some other program holds on the host.
    let mut holder = std::process::Command::new("ip")
        .args(["netns", "exec", &h.ns, "busybox", "nc", "-l", "-p", "9999"])
        .spawn()
        .expect("nc");
    eventually("holder listens", || text(&h.sh("busybox netstat -ltn")).contains(":9999"));
    assert!(run("9999:80").contains("host port 0.0.0.0:9999/tcp is already allocated"));
    holder.kill().expect("stop the holder");
    holder.wait().expect("reap the holder");
    let after = (h.ok(&["ps", "-aq"]), h.link_names(), text(&h.sh("nft list table inet weft")));
    assert_eq!(before, after, "a refused run changed state");
    h.finish();
}

#[test]
fn icc_false_blocks_containers_but_keeps_published_ports() {
    let mut h = Host::new("icc");
    h.start(&["--icc=false"]);
    let ip = multi_web(&h, "web", &["-p", "8080:80"], &[80]);
    h.run_d("cli", &[], &["sleep", "300"]);
    // A counting rule in the user chain: it sees the packets that weft's chain then drops, so
    // the user's chain runs first.
    h.sh_ok(&format!("nft add rule inet weft-user forward ip daddr {ip} tcp dport 80 counter"));
    assert!(!h.ping("cli", &ip), "direct container-to-container traffic is blocked");
    assert!(!h.tcp_open("cli", &ip, 80), "direct TCP is blocked");
    let chain = h.sh_ok("nft list chain inet weft-user forward");
    assert!(!chain.contains("counter packets 0 "), "the user chain saw the dropped SYNs: {chain}");
    assert_eq!(h.get("cli", "172.17.0.1:8080"), "web-80", "published port still reachable");
    h.sh_ok(&format!("busybox ping -c1 -W2 {ip}"));
    h.sh_ok(&format!("busybox nc -w 2 {ip} 80 -e true"));
    h.finish();
}

#[test]
fn user_chain_can_drop_a_published_port_and_survives_restart() {
    let mut h = Host::new("user");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    multi_web(&h, "web", &["-p", "8080:80"], &[80]);
    let out = |h: &Host| String::from_utf8_lossy(&h.in_outside("timeout 3 busybox wget -q -O- http://198.51.100.1:8080/").stdout).trim().to_string();
    assert_eq!(out(&h), "web-80");
    let add = h.sh("nft add rule inet weft-user forward meta l4proto tcp ct original proto-dst 8080 drop");
    assert!(add.status.success(), "{}", text(&add));
    assert_eq!(out(&h), "", "the user's rule drops the published port");
    h.stop_daemon();
    h.start(&[]);
    let rules = text(&h.sh("nft list chain inet weft-user forward"));
    assert!(rules.contains("proto-dst 8080 drop"), "{rules}");
    assert_eq!(out(&h), "", "still dropped after a restart");
    assert!(h.sh("nft flush chain inet weft-user forward").status.success());
    assert_eq!(out(&h), "web-80");
    h.finish();
}

#[test]
fn userland_proxy_serves_localhost_and_ipv6_loopback() {
    let mut h = Host::new("proxy");
    h.start(&["--userland-proxy=true"]);
    multi_web(&h, "web", &["-p", "8080:80", "-p", "[::1]:8090:80"], &[80]);
    assert_eq!(h.host_fetch("127.0.0.1:8080"), "web-80", "through the in-process proxy");
    assert_eq!(h.host_fetch("[::1]:8090"), "web-80", "IPv6 loopback to an IPv4 container");
    let output = text(&h.sh("nft list chain inet weft output"));
    assert!(output.contains("ip daddr 127.0.0.0/8 return"), "localhost is left to the proxy: {output}");
    assert!(h.ok(&["port", "web"]).contains("80/tcp -> [::1]:8090"));
    h.finish();
}
