//! Root-only: the typed link builders make what their `ip` commands would, and traffic passes:
//! two macvlans (bridge mode) born in two namespaces on one parent ping each other; a vxlan
//! carries the id and port it was given. Runs in throwaway namespaces it removes.

use std::path::Path;
use std::process::Command;

use weft_kernel::links::{LinkKind, LinkSpec, MacvlanMode};
use weft_kernel::{netns, Netlink, VethSpec};

struct Ns(String);
impl Ns {
    fn new(tag: &str) -> Self {
        let name = format!("weftl-{tag}-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip").success();
        assert!(ok, "ip netns add {name} (tests need root)");
        Ns(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    fn sh(&self, cmd: &str) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", &self.0, "sh", "-c", cmd]).output().expect("sh")
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn macvlans_on_one_parent_talk_and_vxlan_carries_its_id() {
    let (host, a, b) = (Ns::new("h"), Ns::new("a"), Ns::new("b"));
    let (pa, pb) = (a.path(), b.path());
    let commands = netns::run_in(Path::new(&host.path()), move || {
        let mut nl = Netlink::open()?;
        // The parent: one end of a veth pair.
        nl.create_veth(&VethSpec { host_name: "up0", master: None, mtu: 1500, peer_name: "up1", peer_mac: None, peer_netns: None, up: true, ..VethSpec::default() })?;
        let parent = nl.link("up0")?.expect("up0").index;
        // With carrier: the other end up too (a macvlan follows its parent's carrier).
        let other = nl.link("up1")?.expect("up1").index;
        nl.set_up(other)?;
        let mut cmds = Vec::new();
        for (ns, name) in [(&pa, "mva"), (&pb, "mvb")] {
            let fd = std::fs::File::open(ns).expect("ns");
            let spec = LinkSpec::new(name, LinkKind::Macvlan { parent, parent_name: "up0".into(), mode: MacvlanMode::Bridge }).netns(std::os::fd::AsRawFd::as_raw_fd(&fd));
            cmds.push(spec.ip_command());
            nl.create_link(&spec)?;
        }
        let vx = LinkSpec::new("vx42", LinkKind::Vxlan { vni: 42, port: 4789, local: None, dev: Some((parent, "up0".into())), learning: false, proxy: false }).up();
        cmds.push(vx.ip_command());
        nl.create_link(&vx)?;
        Ok(cmds)
    })
    .expect("links");
    assert_eq!(commands[0], "ip link add mva link up0 netns NS type macvlan mode bridge");
    for (ns, name, addr) in [(&a, "mva", "10.251.0.1/24"), (&b, "mvb", "10.251.0.2/24")] {
        let o = ns.sh(&format!("ip addr add {addr} dev {name} && ip link set {name} up && ip -d link show {name}"));
        assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("macvlan mode bridge"), "{o:?}");
    }
    let o = a.sh("busybox ping -c1 -W2 10.251.0.2");
    assert!(o.status.success(), "macvlan to macvlan on one parent: {o:?}");
    let o = host.sh("ip -d link show vx42");
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("vxlan id 42") && shown.contains("dstport 4789") && shown.contains("nolearning"), "{shown}");
}
