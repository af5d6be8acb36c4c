//! macvlan networks (issue 11): containers on a host interface's L2 directly. The parent is the
//! test host's link `up0` to a second namespace (the "LAN", with a host of its own at
//! 192.168.50.100), so nothing leaves the test's namespaces.

use weft_itest::Host;

const SUBNET: &[&str] = &["--subnet", "192.168.50.0/24", "--gateway", "192.168.50.1"];

fn create(h: &Host, extra: &[&str], name: &str) -> std::process::Output {
    let mut args = vec!["network", "create", "-d", "macvlan"];
    args.extend_from_slice(extra);
    args.extend_from_slice(SUBNET);
    args.push(name);
    h.weft(&args)
}

fn ip_of(h: &Host, name: &str, net: &str) -> String {
    h.ok(&["inspect", "-f", &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"), name])
}

#[test]
fn macvlan_containers_sit_on_the_parents_link() {
    let mut h = Host::new("mvl");
    h.start(&[]);
    h.outside("192.168.50.2", "192.168.50.100");
    let links_before = h.link_names();

    // Bad input: one clear line each, nothing made.
    let refused = |extra: &[&str], needle: &str| {
        let o = create(&h, extra, "lan");
        assert!(!o.status.success() && weft_itest::text(&o).contains(needle), "{extra:?}: {}", weft_itest::text(&o));
    };
    refused(&["-o", "parent=nosuch0"], "parent interface nosuch0 does not exist");
    refused(&["-o", "parent=up0", "-o", "macvlan_mode=source"], "macvlan_mode=source: one of bridge, private, vepa, passthru");
    refused(&["-o", "parent=up0", "-o", "com.docker.network.bridge.name=x0"], "not an option of the macvlan driver");
    assert!(h.fails(&["network", "create", "-o", "parent=up0", "br0net"]).contains("option parent is not an option of the bridge driver"));
    assert_eq!(h.link_names(), links_before, "a refused create makes no link");
    assert!(!h.ok(&["network", "ls"]).contains("lan"));

    let o = create(&h, &["-o", "parent=up0", "--ip-range", "192.168.50.128/25"], "lan");
    assert!(o.status.success(), "{}", weft_itest::text(&o));
    assert!(h.ok(&["network", "inspect", "-f", "{{.Driver}} {{.Options.parent}}", "lan"]).contains("macvlan up0"));
    let o = create(&h, &["-o", "parent=up0"], "lan2");
    assert!(weft_itest::text(&o).contains("parent interface up0 is already used by network lan"), "{}", weft_itest::text(&o));

    h.run_d("m1", &["--network", "lan"], &["sleep", "300"]);
    h.run_d("m2", &["--network", "lan"], &["sleep", "300"]);
    let (m1, m2) = (ip_of(&h, "m1", "lan"), ip_of(&h, "m2", "lan"));
    for ip in [&m1, &m2] {
        let last: u8 = ip.rsplit('.').next().and_then(|o| o.parse().ok()).expect("an IPv4 address");
        assert!(ip.starts_with("192.168.50.") && last >= 128, "{ip} from --ip-range 192.168.50.128/25");
    }
    // No host end: the endpoints are links inside the containers, of kind macvlan.
    assert_eq!(h.link_names(), links_before, "no host-side link per endpoint");
    let pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "m1"]);
    let detail = h.sh_ok(&format!("nsenter -t {pid} -n ip -d link show eth0"));
    assert!(detail.contains("macvlan mode bridge"), "m1's eth0: {detail}");

    // The other host on the parent's link, both ways, directly: its neighbour entry for m1 is
    // m1's own MAC (no NAT, no router between).
    assert!(h.ping("m1", "192.168.50.100"), "macvlan container -> host on the parent's L2");
    h.outside_ok(&format!("busybox ping -c1 -W2 {m1}"));
    let mac1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.lan.MacAddress}}", "m1"]);
    let neigh = h.outside_ok(&format!("ip neigh show {m1}"));
    assert!(neigh.contains(&mac1), "the LAN host sees m1 at its own MAC {mac1}: {neigh}");
    // Another macvlan container on the same parent (bridge mode), by address and by name.
    assert!(h.ping("m1", &m2), "m1 -> m2 by address");
    assert!(h.ping("m2", "m1"), "m2 -> m1 by name (embedded DNS)");
    // Ports are not published on a network whose traffic does not cross the host.
    let rootfs = h.rootfs();
    assert!(h.fails(&["run", "-d", "--name", "pub", "--network", "lan", "-p", "8080:80", "--rootfs", &rootfs, "sleep", "300"]).contains("network lan does not publish ports"));

    // Disconnect while the container lives: its interface goes, its address comes back.
    h.ok(&["network", "disconnect", "lan", "m2"]);
    let links = h.exec_ok("m2", &["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "m2's eth0 is gone: {links}");
    h.ok(&["network", "connect", "--ip", &m2, "lan", "m2"]);
    assert!(h.ping("m2", "192.168.50.100"), "m2 back on the LAN with the same address");

    // A namespace weft did not start, on the LAN; detached, it keeps no macvlan of weft's.
    let ns = format!("{}-ns", h.ns);
    assert!(std::process::Command::new("ip").args(["netns", "add", &ns]).status().expect("ip").success());
    h.ok(&["network", "connect", "--netns", &format!("/run/netns/{ns}"), "--name", "probe", "lan"]);
    h.outside_ok(&format!("busybox ping -c1 -W2 {}", h.ok(&["sandbox", "inspect", "-f", "{{.IPAddress}}", "probe"])));
    h.ok(&["network", "disconnect", "lan", "probe"]);
    weft_itest::eventually("the namespace's macvlan is retired", || {
        let o = std::process::Command::new("ip").args(["-n", &ns, "-o", "link"]).output().expect("ip");
        !String::from_utf8_lossy(&o.stdout).contains("eth0")
    });
    let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();

    // kill -9 and restart: the network and its endpoints are adopted as they were.
    h.kill9_daemon();
    h.start(&[]);
    assert!(h.ping("m1", "192.168.50.100"), "after a restart");
    assert!(h.ping("m1", "m2"), "names after a restart");
    h.ok(&["rm", "-f", "m1", "m2"]);

    // Internal (or parentless): a parent of weft's with no way out; containers reach each other only.
    h.ok(&["network", "create", "-d", "macvlan", "--internal", "--subnet", "10.77.0.0/24", "iso"]);
    let dummy = h.link_names().into_iter().find(|n| n.starts_with("dm-")).expect("weft's dm- link for the internal network");
    h.run_d("i1", &["--network", "iso"], &["sleep", "300"]);
    h.run_d("i2", &["--network", "iso"], &["sleep", "300"]);
    assert!(h.ping("i1", "i2"), "internal macvlan containers reach each other");
    assert!(!h.ping("i1", "192.168.50.100"), "nothing beyond the internal network");
    h.ok(&["rm", "-f", "i1", "i2"]);
    h.ok(&["network", "rm", "iso", "lan"]);
    assert!(!h.link_names().contains(&dummy), "weft's link goes with its network");
    assert!(!h.link_names().iter().any(|n| n.starts_with("dp-")), "and its peer");
    assert!(h.ip(&["-4", "-o", "addr", "show", "up0"]).contains("192.168.50.2/24"), "the parent is untouched");

    // A parent gone while weftd was away: the daemon starts, the network is listed and
    // removable, and a container on it is refused with the reason.
    h.ip(&["link", "add", "tmp0", "type", "veth", "peer", "name", "tmp1"]);
    h.ok(&["network", "create", "-d", "macvlan", "-o", "parent=tmp0", "--subnet", "10.78.0.0/24", "orphan"]);
    h.stop_daemon();
    h.ip(&["link", "del", "tmp0"]);
    h.start(&[]);
    assert!(h.ok(&["network", "ls"]).contains("orphan"));
    let e = h.fails(&["run", "-d", "--name", "o1", "--network", "orphan", "--rootfs", &rootfs, "sleep", "300"]);
    assert!(e.contains("unavailable on this host") && e.contains("tmp0"), "{e}");
    assert!(!h.ok(&["ps", "-a"]).contains("o1"), "no container left by the refusal");
    h.ok(&["network", "rm", "orphan"]);
    h.finish();
}
