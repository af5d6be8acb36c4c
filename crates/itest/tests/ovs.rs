//! Open vSwitch networks (seeds 000 and 003, issue 11): containers' veths as ports of an OVS
//! bridge with nova-docker's external ids, IPAM, DNS and published ports as on any network.
//! ovsdb-server and ovs-vswitchd run in the test host's namespace with the userspace datapath.

use weft_itest::{text, Host};

#[test]
fn containers_on_an_open_vswitch_bridge() {
    let mut h = Host::new("ovs");
    let db = h.start_ovs();
    h.start(&["--ovsdb", &db]);
    h.outside("198.51.100.1", "198.51.100.2");

    // Bad input: one line each, nothing made.
    assert!(h.fails(&["network", "create", "-d", "ovs", "-o", "ovs.bridge=nosuch0", "x"]).contains("Open vSwitch bridge nosuch0 does not exist"));
    assert!(h.fails(&["network", "create", "-d", "ovs", "-o", "ovs.datapath_type=dpdk", "x"]).contains("system or netdev"));
    assert!(h.fails(&["network", "create", "-d", "ovs", "-o", "parent=eth0", "x"]).contains("not an option of the ovs driver"));
    assert_eq!(h.vsctl(&["list-br"]).trim(), "", "no bridge made by a refused create");

    // weft's own bridge: made in OVSDB, the gateway on its internal interface.
    h.ok(&["network", "create", "-d", "ovs", "--subnet", "10.60.0.0/24", "ovsnet"]);
    let br = h.ok(&["network", "inspect", "-f", "{{index .Options \"ovs.bridge\"}}", "ovsnet"]);
    assert!(br.starts_with("ob-"), "{br}");
    assert_eq!(h.vsctl(&["list-br"]).trim(), br);
    assert!(h.ip(&["-4", "-o", "addr", "show", &br]).contains("inet 10.60.0.1/24"), "the gateway on the internal interface");
    let o1 = h.web("o1", &["--network", "ovsnet", "-p", "8080:80"], "ovs-web");
    let o2 = h.run_d("o2", &["--network", "ovsnet"], &["sleep", "300"]);
    assert!(o1.starts_with("10.60.0.") && o2.starts_with("10.60.0."), "{o1} {o2}");
    assert!(h.ping("o2", &o1), "o2 -> o1 through the OVS bridge");
    assert!(h.ping("o1", "o2"), "o1 -> o2 by name (embedded DNS)");
    assert_eq!(h.get("o2", "o1"), "ovs-web", "TCP by name");
    let fetched = h.outside_ok("timeout 5 busybox wget -q -O- http://198.51.100.1:8080/");
    assert_eq!(fetched.trim(), "ovs-web", "the published port answers from an outside namespace");

    // nova-docker's external ids on the container's interface.
    let id1 = h.ok(&["inspect", "-f", "{{.Id}}", "o1"]);
    let mac1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.ovsnet.MacAddress}}", "o1"]);
    let ports = h.vsctl(&["list-ports", &br]);
    assert_eq!(ports.lines().filter(|p| p.starts_with("veth")).count(), 2, "one port per container: {ports}");
    let ifaces = h.vsctl(&["--columns=name,external_ids", "list", "interface"]);
    // (ovs-vsctl quotes a value only when it must.)
    let o1_row = ifaces.split("\n\n").find(|r| r.contains(&id1)).unwrap_or_else(|| panic!("an interface with vm-uuid {id1}: {ifaces}")).replace('"', "");
    for needle in [format!("vm-uuid={id1}"), format!("attached-mac={mac1}"), "iface-status=active".to_string(), "iface-id=".to_string()] {
        assert!(o1_row.contains(&needle), "{needle} in {o1_row}");
    }

    // A bridge of the user's (nova-docker's br-int): used as it is, kept at network rm.
    h.vsctl(&["add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev"]);
    h.ok(&["network", "create", "-d", "ovs", "-o", "ovs.bridge=br-int", "--subnet", "10.61.0.0/24", "--gateway", "10.61.0.1", "intnet"]);
    h.run_d("n1", &["--network", "intnet"], &["sleep", "300"]);
    h.run_d("n2", &["--network", "intnet"], &["sleep", "300"]);
    assert_eq!(h.vsctl(&["list-ports", "br-int"]).lines().filter(|p| p.starts_with("veth")).count(), 2);
    assert!(h.ping("n1", "n2"), "on the user's bridge");

    // kill -9 and restart: the networks and ports adopted as they were.
    h.kill9_daemon();
    h.start(&["--ovsdb", &db]);
    assert!(h.ping("o2", "o1"), "after a restart");
    assert_eq!(h.vsctl(&["list-ports", &br]).lines().filter(|p| p.starts_with("veth")).count(), 2);

    // ovsdb-server down: a new container fails, says why, and leaves nothing behind.
    let links = h.link_names();
    h.stop_ovsdb();
    let rootfs = h.rootfs();
    let o = h.weft(&["run", "-d", "--name", "o3", "--network", "ovsnet", "--rootfs", &rootfs, "sleep", "300"]);
    assert!(!o.status.success() && text(&o).contains("ovsdb-server"), "{}", text(&o));
    assert_eq!(h.link_names(), links, "no veth left by the failed attach");
    assert!(!h.ok(&["ps", "-a"]).contains("o3"), "no container o3");
    h.start_ovs();
    assert_eq!(h.vsctl(&["list-ports", &br]).lines().filter(|p| p.starts_with("veth")).count(), 2, "no port left either");

    // Removal: ports go with their containers, weft's bridge with its network; br-int stays.
    h.ok(&["rm", "-f", "o1", "o2", "n1", "n2"]);
    weft_itest::eventually("the containers' ports are removed", || !h.vsctl(&["list-ports", "br-int"]).contains("veth"));
    h.ok(&["network", "rm", "ovsnet", "intnet"]);
    assert_eq!(h.vsctl(&["list-br"]).trim(), "br-int", "weft's bridge is gone, the user's stays");
    h.finish();
}

/// Seed 004's second method: two test hosts whose OVS bridges are joined by tunnel ports, with
/// the underlay on `br-phy` as Open vSwitch's userspace tunneling wants it.
#[test]
fn two_hosts_joined_by_ovs_tunnels() {
    let mut a = Host::new("ova");
    let mut b = Host::new("ovb");
    a.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", &b.ns]);
    let mut dbs = Vec::new();
    for (h, addr) in [(&mut a, "192.168.77.1/24"), (&mut b, "192.168.77.2/24")] {
        let db = h.start_ovs();
        h.vsctl(&["add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev"]);
        h.ip(&["link", "set", "lan0", "up"]);
        h.vsctl(&["add-port", "br-phy", "lan0"]);
        weft_itest::eventually("br-phy's internal interface", || h.link_names().contains(&"br-phy".to_string()));
        h.ip(&["addr", "add", addr, "dev", "br-phy"]);
        h.ip(&["link", "set", "br-phy", "up"]);
        h.start(&["--ovsdb", &db]);
        dbs.push(db);
    }
    assert!(a.fails(&["network", "create", "-d", "ovs", "-o", "ovs.tunnel=vxlan", "x"]).contains("give the other hosts with -o ovs.remote"));
    assert!(a.fails(&["network", "create", "-d", "ovs", "-o", "ovs.tunnel=ipip", "-o", "ovs.remote=192.168.77.2", "x"]).contains("one of vxlan, gre, geneve"));
    assert!(a.fails(&["network", "create", "-d", "ovs", "-o", "ovs.tunnel=gre", "-o", "ovs.remote=192.168.77.300", "x"]).contains("not a host's IPv4 address"));

    // GRE too: this kernel has no GRE, but the userspace datapath's tunnels are its own.
    for kind in ["vxlan", "gre"] {
        let net = format!("t{kind}");
        for (h, gw, slice, remote) in [(&a, "10.70.0.1", "10.70.0.64/26", "192.168.77.2"), (&b, "10.70.0.2", "10.70.0.128/26", "192.168.77.1")] {
            let (tunnel, remote) = (format!("ovs.tunnel={kind}"), format!("ovs.remote={remote}"));
            h.ok(&["network", "create", "-d", "ovs", "--subnet", "10.70.0.0/24", "--gateway", gw, "--ip-range", slice, "-o", &tunnel, "-o", &remote, &net]);
        }
        let shown = a.vsctl(&["--columns=type,options", "list", "interface", "tun-c0a84d02"]);
        assert!(shown.contains(kind) && shown.contains("remote_ip=\"192.168.77.2\""), "host a's tunnel port: {shown}");
        let ta = a.web("ta", &["--network", &net], &format!("over-{kind}"));
        let tb = b.run_d("tb", &["--network", &net], &["sleep", "300"]);
        assert!(b.ping("tb", &ta), "tb on host b -> ta on host a through the {kind} tunnel");
        assert!(a.ping("ta", &tb), "and back");
        assert_eq!(b.get("tb", &ta), format!("over-{kind}"), "TCP through the {kind} tunnel");
        for (h, c) in [(&a, "ta"), (&b, "tb")] {
            h.ok(&["rm", "-f", c]);
            h.ok(&["network", "rm", &net]);
        }
        assert!(!a.vsctl(&["list-br"]).contains("ob-"), "weft's bridge went with its network, its tunnel with it");
    }
    a.finish();
    b.finish();
}
