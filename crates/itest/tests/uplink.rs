//! Uplinked bridges (seed 004's first method, issue 11): a bridge network with
//! `-o com.weft.bridge.uplink=IF` takes a host interface as its port, with the host's address
//! and routes moved onto the bridge; two test hosts on one LAN with disjoint `--ip-range`
//! slices of one subnet give their containers direct reachability. The LAN is a veth pair
//! between the two test hosts' namespaces.

use weft_itest::Host;

const ROUTE: &str = "198.51.100.0/24 via 10.211.55.1";

fn create(h: &Host, slice: &str, uplink: &str, name: &str) -> std::process::Output {
    let opt = format!("com.weft.bridge.uplink={uplink}");
    h.weft(&["network", "create", "--subnet", "10.211.55.0/24", "--gateway", "10.211.55.1", "--ip-range", slice, "-o", &opt, name])
}

fn bridge_of(h: &Host, net: &str) -> String {
    h.ok(&["network", "inspect", "-f", "{{index .Options \"com.docker.network.bridge.name\"}}", net])
}

/// The host's own addressing: lan0 carries its address and the route through the LAN's router.
fn own_addressing(h: &Host, addr: &str) {
    assert!(h.ip(&["-4", "-o", "addr", "show", "lan0"]).contains(&format!("inet {addr}/24")), "lan0 has {addr} back");
    assert!(h.ip(&["route"]).contains(&format!("{ROUTE} dev lan0")), "the route is on lan0 again: {}", h.ip(&["route"]));
    assert!(!h.ip(&["-o", "link", "show", "lan0"]).contains(" master "), "lan0 is no bridge's port");
}

/// The move: the address and route on the bridge, lan0 its port without an address.
fn moved(h: &Host, addr: &str, bridge: &str) {
    assert!(h.ip(&["-4", "-o", "addr", "show", bridge]).contains(&format!("inet {addr}/24")), "{bridge} took {addr}");
    assert!(h.ip(&["route"]).contains(&format!("{ROUTE} dev {bridge}")), "the route moved: {}", h.ip(&["route"]));
    assert!(!h.ip(&["-4", "-o", "addr", "show", "lan0"]).contains("inet "), "lan0 keeps no address");
    assert!(h.ip(&["-o", "link", "show", "lan0"]).contains(&format!("master {bridge}")), "lan0 is the bridge's port");
}

#[test]
fn uplinked_bridges_put_two_hosts_containers_on_one_subnet() {
    let mut a = Host::new("upa");
    let mut b = Host::new("upb");
    a.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", &b.ns]);
    for (h, addr) in [(&a, "10.211.55.3"), (&b, "10.211.55.5")] {
        h.ip(&["addr", "add", &format!("{addr}/24"), "dev", "lan0"]);
        h.ip(&["link", "set", "lan0", "up"]);
        h.ip(&["route", "add", "198.51.100.0/24", "via", "10.211.55.1", "dev", "lan0"]);
    }
    a.start(&[]);
    b.start(&["--keep-uplink=false"]);

    // Refused: no such uplink; no slice; and a failure half-way (a bridge cannot be a bridge's
    // port: the enslaving fails after the addresses were copied) leaves everything as it was.
    assert!(a.fails(&["network", "create", "--subnet", "10.211.55.0/24", "-o", "com.weft.bridge.uplink=lan0", "x"]).contains("give --subnet, --gateway and --ip-range"));
    let o = create(&a, "10.211.55.64/26", "nosuch0", "x");
    assert!(weft_itest::text(&o).contains("find the uplink nosuch0"), "{}", weft_itest::text(&o));
    a.ip(&["link", "add", "brx", "type", "bridge"]);
    a.ip(&["addr", "add", "10.99.0.1/24", "dev", "brx"]);
    a.ip(&["link", "set", "brx", "up"]);
    let links = a.link_names();
    let o = a.weft(&["network", "create", "--subnet", "10.99.0.0/24", "--gateway", "10.99.0.1", "--ip-range", "10.99.0.64/26", "-o", "com.weft.bridge.uplink=brx", "x"]);
    assert!(!o.status.success() && weft_itest::text(&o).contains("move the uplink into the bridge"), "{}", weft_itest::text(&o));
    assert!(a.ip(&["-4", "-o", "addr", "show", "brx"]).contains("inet 10.99.0.1/24"), "the failed move was undone");
    assert_eq!(a.link_names(), links, "no bridge stays from the failed create");
    assert!(!a.ok(&["network", "ls"]).contains(" x "));
    own_addressing(&a, "10.211.55.3");

    // The seed's slices: 10.211.55.64/26 on host a, 10.211.55.128/26 on host b.
    for (h, slice) in [(&a, "10.211.55.64/26"), (&b, "10.211.55.128/26")] {
        let o = create(h, slice, "lan0", "lan");
        assert!(o.status.success(), "{}", weft_itest::text(&o));
    }
    let (bra, brb) = (bridge_of(&a, "lan"), bridge_of(&b, "lan"));
    moved(&a, "10.211.55.3", &bra);
    moved(&b, "10.211.55.5", &brb);
    let a1 = a.run_d("a1", &["--network", "lan"], &["sleep", "300"]);
    let b1 = b.run_d("b1", &["--network", "lan"], &["sleep", "300"]);
    let last = |ip: &str| ip.rsplit('.').next().and_then(|o| o.parse::<u8>().ok()).expect("an IPv4 address");
    assert!((64..128).contains(&last(&a1)) && (128..192).contains(&last(&b1)), "a1 {a1} and b1 {b1} from their hosts' slices");
    assert!(a.ping("a1", &b1), "a1 -> b1 on the other host, directly");
    assert!(b.ping("b1", &a1), "b1 -> a1");
    assert!(a.ping("a1", "10.211.55.5"), "a1 -> host b itself (its address on the bridge, with lan0's MAC)");
    b.sh_ok(&format!("busybox ping -c1 -W2 {a1}"));

    // kill -9 and restart of host a: the uplink stays in the bridge, adopted as it is.
    a.kill9_daemon();
    a.start(&[]);
    moved(&a, "10.211.55.3", &bra);
    assert!(a.ping("a1", &b1), "after a restart");
    // Host b stops with --keep-uplink=false: lan0 and its addressing go back, and return at start.
    b.stop_daemon();
    own_addressing(&b, "10.211.55.5");
    b.start(&["--keep-uplink=false"]);
    moved(&b, "10.211.55.5", &brb);
    assert!(b.ping("b1", &a1), "b1 reaches a1 again");

    // Removing the network gives the host its own addressing back.
    for (h, c, addr) in [(&a, "a1", "10.211.55.3"), (&b, "b1", "10.211.55.5")] {
        h.ok(&["rm", "-f", c]);
        h.ok(&["network", "rm", "lan"]);
        own_addressing(h, addr);
    }
    assert!(!a.link_names().contains(&bra), "the bridge is gone");
    a.finish();
    b.finish();
}
