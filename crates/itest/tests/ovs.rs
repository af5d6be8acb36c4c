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
