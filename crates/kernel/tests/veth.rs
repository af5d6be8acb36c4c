//! Root-only: builds bridge + veth with the peer born in a second namespace, configures it in one
//! batch, and checks the path with a real ping. Runs in throwaway namespaces it removes.

use std::path::Path;
use std::process::Command;

use weft_kernel::{netns, Netlink, VethSpec};

struct Ns(String);
impl Ns {
    fn new(tag: &str) -> Self {
        let name = format!("weftk-{tag}-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip").success();
        assert!(ok, "ip netns add {name} (tests need root)");
        Ns(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn bridge_veth_into_netns_and_ping() {
    let host = Ns::new("h");
    let ctr = Ns::new("c");
    let ctr_path = ctr.path();
    let ctr_path2 = ctr_path.clone();
    netns::run_in(Path::new(&host.path()), move || {
        let mut nl = Netlink::open()?;
        nl.loopback_up()?;
        let br = nl.create_bridge("kbr0", 1500, [0x02, 0x42, 0, 0, 0, 1])?;
        nl.add_addr(br, "10.250.0.1/24".parse().expect("net"))?;
        nl.add_addr(br, "10.250.0.1/24".parse().expect("net"))?; // EEXIST is done
        let fd = std::fs::File::open(&ctr_path2).expect("ctr ns");
        nl.create_veth(&VethSpec {
            host_name: "vethk000001",
            master: Some(br),
            mtu: 1400,
            peer_name: "eth0",
            peer_mac: Some([0x02, 0x42, 10, 250, 0, 2]),
            peer_netns: Some(std::os::fd::AsRawFd::as_raw_fd(&fd)),
            up: true,
            port_setup: false,
            proxy_arp: false,
            // Chosen indexes, and the neighbour pinned in the same datagram.
            index: 0x20_0001,
            peer_index: 0x20_0002,
            pin: Some("10.250.0.2".parse().expect("ip")),
        })?;
        let v = nl.link("vethk000001")?.expect("host end exists");
        assert_eq!((v.master, v.mtu, v.up, v.index), (Some(br), 1400, true, 0x20_0001));
        assert!(nl.link("eth0")?.is_none(), "peer was born in the other namespace");
        Ok(())
    })
    .expect("host side");
    let mut c = netns::open_in(Path::new(&ctr_path), &[("net.ipv4.conf.all.rp_filter", "0")])
        .expect("socket in container ns");
    c.configure_interface("eth0", 0x20_0002, "10.250.0.2/24".parse().expect("net"), Some("10.250.0.1".parse().expect("ip")), None)
        .expect("configure");
    let eth0 = c.link("eth0").expect("get").expect("eth0");
    assert_eq!((eth0.mtu, eth0.up, eth0.index), (1400, true, 0x20_0002));
    assert!(c.routes_v4().expect("routes").iter().any(|r| r.dst.prefix_len() == 0));
    let ping = Command::new("ip")
        .args(["netns", "exec", &ctr.0, "ping", "-c1", "-W2", "10.250.0.1"])
        .output()
        .expect("ping");
    let busybox_ping = if ping.status.success() {
        ping
    } else {
        Command::new("ip")
            .args(["netns", "exec", &ctr.0, "busybox", "ping", "-c1", "-W2", "10.250.0.1"])
            .output()
            .expect("busybox ping")
    };
    assert!(busybox_ping.status.success(), "{busybox_ping:?}");
    let neigh = Command::new("ip").args(["-n", &host.0, "neigh", "show", "dev", "kbr0", "10.250.0.2"]).output().expect("ip neigh");
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(neigh.contains("02:42:0a:fa:00:02") && neigh.contains("PERMANENT"), "pinned in the creation's datagram: {neigh}");
    netns::run_in(Path::new(&host.path()), || Netlink::open()?.delete_link("vethk000001")).expect("del");
}
