//! Root-only: a real UDP conntrack entry (a packet from a second namespace to a port nothing
//! listens on) is deleted by `conntrack::delete_by_dst`, and only the matching one.

use std::path::Path;
use std::process::Command;

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(ns: &str, cmd: &str) -> String {
    let o = Command::new("ip").args(["netns", "exec", ns, "sh", "-c", cmd]).output().expect("ip netns exec");
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn deletes_entries_of_one_port() {
    let (h, o) = (format!("weftct-h-{}", std::process::id()), format!("weftct-o-{}", std::process::id()));
    for n in [&h, &o] {
        assert!(Command::new("ip").args(["netns", "add", n]).status().expect("ip").success());
    }
    let _g = (Ns(h.clone()), Ns(o.clone()));
    let ip = |args: &str| assert!(Command::new("sh").args(["-c", &format!("ip {args}")]).status().expect("ip").success(), "{args}");
    ip(&format!("-n {h} link add up0 type veth peer name eth0 netns {o}"));
    ip(&format!("-n {h} addr add 198.51.100.1/24 dev up0"));
    ip(&format!("-n {h} link set up0 up"));
    ip(&format!("-n {o} addr add 198.51.100.2/24 dev eth0"));
    ip(&format!("-n {o} link set eth0 up"));
    // Conntrack only tracks a namespace that has a hook using it.
    sh(&h, "nft add table inet t; nft add chain inet t p '{ type filter hook prerouting priority 0; }'; nft add rule inet t p ct state new accept");
    for port in [6000, 6001] {
        sh(&o, &format!("python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 40000)); s.sendto(b'x', ('198.51.100.1', {port}))\""));
    }
    let before = sh(&h, "conntrack -L -p udp 2>/dev/null");
    assert!(before.contains("dport=6000") && before.contains("dport=6001"), "{before}");
    weft_kernel::netns::run_in(Path::new(&format!("/run/netns/{h}")), || weft_kernel::conntrack::delete_by_dst(17, None, 6000)).expect("delete");
    let after = sh(&h, "conntrack -L -p udp 2>/dev/null");
    assert!(!after.contains("dport=6000 "), "the entry of port 6000 is gone: {after}");
    assert!(after.contains("dport=6001"), "others stay: {after}");
    sh(&h, "nft delete table inet t");
}
