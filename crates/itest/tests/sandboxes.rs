//! Namespaces weft did not start (seeds 001 and 003): an `ip netns` namespace and a process
//! started with `unshare -n`, attached with `weft network connect --netns / --pid`, reached by
//! address and by name, and released when the process exits.

use std::process::{Child, Command};

use weft_itest::{eventually, Host, Netns};

/// A process of the test's (`unshare -n sleep 300`, a server in a namespace), ended with it.
struct Sleeper(Child);


impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn foreign_namespaces_join_networks_and_leave_with_their_process() {
    let mut h = Host::new("sbx");
    h.start(&[]);
    let ns = Netns::new(&h);
    // (Dropped before the end: its removal is part of the test.)
    h.run_d("c1", &[], &["sleep", "300"]);
    let c1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "c1"]);

    h.outside("198.51.100.1", "198.51.100.2");
    // An `ip netns` namespace on the default bridge, with a chosen MAC and a published port:
    // traffic both ways, and from outside through the port.
    h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "probe", "--mac-address", "02:aa:bb:cc:dd:ee", "-p", "8088:80", "bridge"]);
    let probe = h.ok(&["sandbox", "inspect", "-f", "{{.IPAddress}}", "probe"]);
    let shown = String::from_utf8_lossy(&ns.sh("ip -4 -o addr show eth0").stdout).to_string();
    assert!(shown.contains(&format!("{probe}/16")), "eth0 of the namespace: {shown}");
    assert!(h.ping("c1", &probe), "container -> attached namespace");
    let o = ns.sh(&format!("busybox ping -c1 -W2 {c1}"));
    assert!(o.status.success(), "attached namespace -> container: {o:?}");
    // The chosen MAC is the one the network learned: in the container's ARP entry for it.
    let neigh = h.exec_ok("c1", &["ip", "neigh", "show", &probe]);
    assert!(neigh.contains("02:aa:bb:cc:dd:ee"), "c1's ARP entry for {probe}: {neigh}");
    let web = Sleeper(Command::new("ip").args(["netns", "exec", &ns.0, "busybox", "httpd", "-f", "-p", "80", "-h", "/proc/self/cwd"]).spawn().expect("httpd"));
    eventually("httpd in the namespace listens", || ns.sh("busybox netstat -ltn | grep -q ':80 '").status.success());
    let fetched = |addr: &str| String::from_utf8_lossy(&h.in_outside(&format!("timeout 5 busybox wget -q -S -O /dev/null http://{addr}/ 2>&1")).stdout).to_string();
    assert!(fetched("198.51.100.1:8088").contains("HTTP/1."), "the published port answers from outside");
    assert!(h.ok(&["sandbox", "inspect", "-f", "{{.MacAddress}}", "probe"]).contains("02:aa:bb:cc:dd:ee"));
    // Once per network; the host's own namespace is not a sandbox; a process must exist.
    assert!(h.fails(&["network", "connect", "--netns", &ns.path(), "--name", "again", "bridge"]).contains("already attached to network bridge (as probe)"));
    let own = format!("/proc/{}/ns/net", h.daemon_pid());
    assert!(h.fails(&["network", "connect", "--netns", &own, "bridge"]).contains("weftd's own network namespace"));
    assert!(h.fails(&["network", "connect", "--pid", "999999999", "bridge"]).contains("no process 999999999"));

    // A process's namespace on a user network, by name and alias through the embedded DNS.
    h.ok(&["network", "create", "front"]);
    assert!(h.fails(&["network", "connect", "--netns", &ns.path(), "--name", "c1", "front"]).contains("already in use"), "a container's name");
    h.run_d("c2", &["--network", "front"], &["sleep", "300"]);
    let sleeper = Sleeper(Command::new("ip").args(["netns", "exec", &h.ns, "unshare", "-n", "sleep", "300"]).spawn().expect("unshare"));
    // `ip netns exec` and `unshare` exec in place: the child is the sleep, once it is named so.
    let pid = sleeper.0.id().to_string();
    eventually("the unshared sleep", || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep"));
    h.ok(&["network", "connect", "--pid", &pid, "--alias", "napper", "front"]);
    let name = format!("pid{pid}");
    let ip = h.ok(&["sandbox", "inspect", "-f", "{{.IPAddress}}", &name]);
    assert!(h.ok(&["sandbox", "ls"]).contains(&name));
    for n in [name.as_str(), "napper"] {
        assert!(h.ping("c2", n), "c2 -> {n}");
    }
    assert!(!h.ping("c1", &ip), "the default bridge does not reach front");

    // The process exits: its address and names are released.
    drop(sleeper);
    eventually("detached when the process exited", || !h.ok(&["sandbox", "ls"]).contains(&name));
    eventually("its name gone from the DNS", || h.probe("c2", &format!("busybox nslookup {name} 127.0.0.11")) != 0);
    h.run_d("c3", &["--network", "front", "--ip", &ip], &["sleep", "300"]);

    // Disconnect by name: only lo is left in the namespace, and the port is closed.
    h.ok(&["network", "disconnect", "bridge", "probe"]);
    // Attached again at once (CNI's DEL then ADD): the old eth0, still queued for deletion, is
    // retired on the spot and the new one takes its name.
    h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "again", "bridge"]);
    let again = h.ok(&["sandbox", "inspect", "-f", "{{.IPAddress}}", "again"]);
    let shown = String::from_utf8_lossy(&ns.sh("ip -4 -o addr show eth0").stdout).to_string();
    assert!(shown.contains(&format!("{again}/16")), "the new eth0: {shown}");
    h.ok(&["network", "disconnect", "bridge", "again"]);
    assert!(!fetched("198.51.100.1:8088").contains("HTTP/1."), "the port went with the endpoint");
    drop(web);
    eventually("eth0 gone from the namespace", || !String::from_utf8_lossy(&ns.sh("ip -o link").stdout).contains("eth0"));
    assert!(h.fails(&["network", "disconnect", "bridge", "probe"]).contains("no such container: probe"));

    // The namespace itself goes (`ip netns del`, nothing else holds it): weft notices its veth
    // vanish and releases the rest.
    h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "doomed", "bridge"]);
    let doomed = h.ok(&["sandbox", "inspect", "-f", "{{.IPAddress}}", "doomed"]);
    drop(ns);
    eventually("detached when its namespace went", || !h.ok(&["sandbox", "ls"]).contains("doomed"));
    h.run_d("c4", &["--ip", &doomed], &["sleep", "300"]);
    h.finish();
}

/// While the daemon is away: an attached namespace whose host veth vanished (as after a crash
/// between the record's commit and the interface's creation, which run side by side) is not an
/// attachment at start; one whose veth is there is adopted as it was.
#[test]
fn a_restart_keeps_attachments_with_their_veth_and_drops_the_rest() {
    let mut h = Host::new("sbr");
    h.start(&[]);
    let (kept, gone) = (Netns::new(&h), Netns::named(&h, "gone"));
    h.ok(&["network", "connect", "--netns", &kept.path(), "--name", "kept", "--ip", "172.17.0.50", "bridge"]);
    h.ok(&["network", "connect", "--netns", &gone.path(), "--name", "gone", "--ip", "172.17.0.51", "bridge"]);
    let host_if = h.ok(&["sandbox", "inspect", "-f", "{{.HostInterface}}", "gone"]);
    assert!(h.link_names().contains(&host_if), "{host_if} on the host");
    h.kill9_daemon();
    h.ip(&["link", "del", &host_if]);
    h.start(&[]);
    let names: Vec<String> = h.ok(&["sandbox", "ls"]).lines().skip(1).filter_map(|l| l.split_whitespace().next().map(String::from)).collect();
    assert_eq!(names, ["kept"]);
    // Its address is free again; the kept one is still held.
    let e = h.fails(&["network", "connect", "--netns", &gone.path(), "--name", "again", "--ip", "172.17.0.50", "bridge"]);
    assert!(e.contains("172.17.0.50"), "{e}");
    h.ok(&["network", "connect", "--netns", &gone.path(), "--name", "again", "--ip", "172.17.0.51", "bridge"]);
    h.run_d("c9", &[], &["sleep", "300"]);
    assert!(h.ping("c9", "172.17.0.50") && h.ping("c9", "172.17.0.51"), "both attached namespaces answer");
    h.ok(&["network", "disconnect", "bridge", "kept"]);
    h.ok(&["network", "disconnect", "bridge", "again"]);
    drop((kept, gone));
    h.finish();
}

/// A sandbox is a namespace with endpoints: the same namespace connected to a second network
/// under its name gains `eth1` there (no second default route), is found by name on both, and
/// loses one network at a time.
#[test]
fn a_namespace_joins_two_networks_under_one_name() {
    let mut h = Host::new("sb2");
    h.start(&[]);
    let (ns, other) = (Netns::new(&h), Netns::named(&h, "other"));
    h.ok(&["network", "create", "--subnet", "10.61.0.0/24", "back"]);
    h.ok(&["network", "create", "--subnet", "10.62.0.0/24", "side"]);
    h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "lab", "-p", "8089:80", "bridge"]);
    h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "lab", "--ip", "10.61.0.20", "back"]);
    let addrs = String::from_utf8_lossy(&ns.sh("ip -4 -o addr show").stdout).to_string();
    assert!(addrs.contains("eth0") && addrs.contains("eth1") && addrs.contains("10.61.0.20/24"), "{addrs}");
    let routes = String::from_utf8_lossy(&ns.sh("ip route show default").stdout).to_string();
    assert_eq!(routes.lines().count(), 1, "one default route, through the first network: {routes}");
    assert!(routes.contains("172.17.0.1"), "{routes}");
    h.run_d("peer", &["--net", "back"], &["sleep", "300"]);
    assert!(h.ping("peer", "lab"), "found by name on its second network");
    // Ports are the first attachment's; another namespace cannot take the name.
    let e = h.fails(&["network", "connect", "--netns", &ns.path(), "--name", "lab", "-p", "8090:80", "side"]);
    assert!(e.contains("first attachment"), "{e}");
    let e = h.fails(&["network", "connect", "--netns", &other.path(), "--name", "lab", "side"]);
    assert!(e.contains("another namespace"), "{e}");
    // One network at a time.
    h.ok(&["network", "disconnect", "back", "lab"]);
    assert_eq!(h.ok(&["sandbox", "inspect", "-f", "{{.Network}}", "lab"]), "bridge");
    let addrs = String::from_utf8_lossy(&ns.sh("ip -4 -o addr show").stdout).to_string();
    assert!(!addrs.contains("10.61.0.20"), "{addrs}");
    assert!(!h.ping("peer", "lab"), "its name is gone from back");
    h.ok(&["network", "disconnect", "bridge", "lab"]);
    assert_eq!(h.ok(&["sandbox", "ls"]).lines().count(), 1, "only the header");
    drop((ns, other));
    h.finish();
}

#[test]
fn a_namespace_hops_between_networks_of_two_kinds_at_once() {
    let mut h = Host::new("hop");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    h.ok(&["network", "create", "-d", "macvlan", "-o", "parent=up0", "--subnet", "198.51.100.0/24", "--gateway", "198.51.100.2", "--ip-range", "198.51.100.128/25", "mv"]);
    let ns = Netns::new(&h);
    // Each attach takes the name eth0 while the last interface of that name (a veth being
    // retired, a macvlan being deleted) may still be there.
    for round in 0..5 {
        for net in ["bridge", "mv"] {
            h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "hop", "--ifname", "eth0", net]);
            let addr = weft_itest::text(&ns.sh("ip -4 -o addr show eth0"));
            assert!(addr.contains("inet "), "round {round}, {net}: {addr}");
            h.ok(&["network", "disconnect", net, "hop"]);
        }
    }
    drop(ns);
    h.finish();
}
