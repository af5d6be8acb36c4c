//! Point-to-point links (seed 000, issue 11): `weft link create A B` gives two containers (or
//! an attached namespace) a veth pair with the seed's /32 addresses and host routes, beside
//! their networks; the link goes with either end and survives a daemon restart.

use std::process::Command;

use weft_itest::{eventually, Host};

fn links(h: &Host, name: &str) -> String {
    h.exec_ok(name, &["ip", "-o", "link"])
}

#[test]
fn point_to_point_links_join_two_sandboxes_beside_their_networks() {
    let mut h = Host::new("p2p");
    h.start(&[]);
    let c1 = h.run_d("c1", &[], &["sleep", "300"]);
    let c2 = h.web("c2", &[], "over-the-link");
    h.run_d("c3", &[], &["sleep", "300"]);

    // Bad input: one line each, nothing made.
    let before = (links(&h, "c1"), links(&h, "c2"));
    for (args, needle) in [
        (vec!["c1", "c1"], "both ends are c1"),
        (vec!["c1", "nosuch"], "no such container: nosuch"),
        (vec!["--addr", "10.1.1.1/24", "c1", "c2"], "a point-to-point link has no subnet"),
        (vec!["--addr", c2.as_str(), "c1", "c2"], "is in network bridge's subnet"),
        (vec!["--ifname-a", "eth0", "c1", "c2"], "c1 already has an interface eth0"),
        (vec!["--addr", "10.1.1.1", "--addr", "10.1.1.1", "c1", "c2"], "each end has its own address"),
    ] {
        let mut a = vec!["link", "create"];
        a.extend(args.iter().map(|s| &**s));
        let err = h.fails(&a);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!((links(&h, "c1"), links(&h, "c2")), before, "refused links change nothing");
    assert_eq!(h.ok(&["link", "ls"]).lines().count(), 1, "no link yet");

    // The seed's link: 10.1.1.1/32 on c1, 10.1.1.2/32 on c2, each with a host route to the other.
    h.ok(&["link", "create", "--addr", "10.1.1.1/32", "--addr", "10.1.1.2/32", "c1", "c2"]);
    let a = h.exec_ok("c1", &["ip", "-4", "-o", "addr", "show", "p2p0"]);
    assert!(a.contains("inet 10.1.1.1/32"), "c1's end: {a}");
    let r = h.exec_ok("c1", &["ip", "route"]);
    assert!(r.contains("10.1.1.2 dev p2p0"), "c1's host route to c2's end: {r}");
    assert!(h.exec_ok("c2", &["ip", "-4", "-o", "addr", "show", "p2p0"]).contains("inet 10.1.1.2/32"));
    assert!(h.exec_ok("c2", &["ip", "route"]).contains("10.1.1.1 dev p2p0"));
    // ping and TCP over the link, and each still on its bridge network.
    assert!(h.ping("c1", "10.1.1.2"), "ping over the link");
    assert!(h.ping("c2", "10.1.1.1"), "and back");
    assert_eq!(h.get("c1", "10.1.1.2"), "over-the-link", "TCP over the link");
    assert!(h.ping("c1", &c2), "c1 -> c2 on the bridge still");
    assert!(h.ping("c2", &c1), "c2 -> c1 on the bridge still");
    let shown = h.ok(&["link", "inspect", "-f", "{{.A.Name}} {{.A.Address}} {{.B.Name}} {{.B.Address}}", "c1:c2"]);
    assert_eq!(shown, "c1 10.1.1.1/32 c2 10.1.1.2/32");
    // A network over the link's addresses would hand them out again: refused, nothing made.
    let err = h.fails(&["network", "create", "--subnet", "10.1.0.0/16", "overlink"]);
    assert!(err.contains("subnet 10.1.0.0/16 holds 10.1.1.1, c1's end of point-to-point link c1:c2"), "{err}");
    assert!(!h.ok(&["network", "ls"]).contains("overlink"));

    // Without --addr: from the link pool; the next free p2pN on c1.
    h.ok(&["link", "create", "c1", "c3"]);
    let a = h.exec_ok("c1", &["ip", "-4", "-o", "addr", "show", "p2p1"]);
    assert!(a.contains("inet 10.1.1."), "a pool address on c1's second link: {a}");
    assert!(!a.contains("10.1.1.1/") && !a.contains("10.1.1.2/"), "not the first link's: {a}");
    let c3_end = h.ok(&["link", "inspect", "-f", "{{.B.Address}}", "c1:c3"]);
    assert!(h.ping("c1", c3_end.trim_end_matches("/32")), "the second link carries traffic");

    // An attached namespace is an end too.
    let ns = format!("{}-end", h.ns);
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().expect("ip").success());
    h.ok(&["network", "connect", "--netns", &format!("/run/netns/{ns}"), "--name", "probe", "bridge"]);
    // A failure half-way: the namespace has an interface weft does not know of by the name B's
    // end would take, so the kernel refuses the pair: nothing stays, and the error says so.
    assert!(Command::new("ip").args(["-n", &ns, "link", "add", "p2p0", "type", "veth", "peer", "name", "own1"]).status().expect("ip").success());
    let before = links(&h, "c3");
    let o = h.weft(&["link", "create", "c3", "probe"]);
    assert!(!o.status.success() && weft_itest::text(&o).contains("File exists"), "{}", weft_itest::text(&o));
    assert_eq!(links(&h, "c3"), before, "c3 keeps no end of the refused link");
    assert_eq!(h.ok(&["link", "ls"]).lines().count(), 3, "no record of it");
    assert!(Command::new("ip").args(["-n", &ns, "link", "del", "p2p0"]).status().expect("ip").success());
    h.ok(&["link", "create", "--addr", "10.1.2.1", "--addr", "10.1.2.2", "probe", "c3"]);
    let o = Command::new("ip").args(["netns", "exec", &ns, "busybox", "ping", "-c1", "-W2", "10.1.2.2"]).output().expect("ping");
    assert!(o.status.success(), "namespace -> c3 over the link: {o:?}");

    // kill -9 and restart: the links are adopted as they were.
    h.kill9_daemon();
    h.start(&[]);
    assert_eq!(h.ok(&["link", "ls"]).lines().count(), 4, "three links after the restart");
    assert!(h.ping("c1", "10.1.1.2"), "the seed's link after a restart");

    // rm: the pair goes from both sides.
    h.ok(&["link", "rm", "c1:c3"]);
    assert!(!links(&h, "c1").contains(" p2p1@"), "c1's end of the removed link");
    assert!(!links(&h, "c3").contains(" p2p0@"), "c3's end of the removed link");
    assert!(links(&h, "c3").contains(" p2p1@"), "c3's link to the namespace stays");
    assert!(h.fails(&["link", "rm", "c1:c3"]).contains("no such link: c1:c3"));

    // A link goes with either end: c2 removed, c1's end and the record go, the addresses are free.
    h.ok(&["rm", "-f", "c2"]);
    eventually("c1's end of the link to c2 is gone", || !links(&h, "c1").contains(" p2p0@"));
    assert!(!h.ok(&["link", "ls"]).contains("c2:"), "no record of c2's link");
    h.ok(&["link", "create", "--addr", "10.1.1.1", "--addr", "10.1.1.2", "c1", "c3"]);
    assert!(h.ping("c3", "10.1.1.1"), "the freed addresses serve a new link");
    // The namespace detached: its link goes too.
    h.ok(&["network", "disconnect", "bridge", "probe"]);
    assert!(!h.ok(&["link", "ls"]).contains("probe"), "the detached namespace's link is gone");
    let o = Command::new("ip").args(["-n", &ns, "-o", "link"]).output().expect("ip");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("p2p0"), "and its end in the namespace");
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    h.finish();
}
