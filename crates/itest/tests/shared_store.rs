//! Two hosts sharing one etcd (`weftd --store etcd://…`), each a namespace on an underlay with its
//! own daemon, etcd in namespaces of its own: a global network is seen by both, and its addresses
//! are claimed in etcd, so no address is handed out twice however the creations interleave.

use std::collections::HashMap;
use std::thread;

use weft_itest::cluster::{addresses, run_many, EtcdCluster, Underlay};
use weft_itest::{text, Host};

/// Two hosts (192.168.200.1 and .2) on an underlay with a one-member etcd; the daemons are
/// started on it as `host-a` and `host-b`. The cluster outlives the hosts (they are finished
/// first: their teardown needs etcd).
struct Pair {
    a: Host,
    b: Host,
    url: String,
    etcd: EtcdCluster,
    _ul: Underlay,
}

fn shared_pair(tag: &str) -> Pair {
    let ul = Underlay::new(tag);
    let etcd = EtcdCluster::start(&ul, tag, 1);
    let mut a = Host::new(&format!("{tag}a"));
    let mut b = Host::new(&format!("{tag}b"));
    ul.join(&a, "192.168.200.1");
    ul.join(&b, "192.168.200.2");
    let url = etcd.url();
    a.start(&["--host-id", "host-a", "--store", &url]);
    b.start(&["--host-id", "host-b", "--store", &url]);
    Pair { a, b, url, etcd, _ul: ul }
}

#[test]
fn two_daemons_never_hand_out_one_address() {
    // (Bound first, dropped last: a failing test's hosts are torn down while etcd still runs.)
    let Pair { _ul, etcd, url, mut a, b } = shared_pair("sh");
    // A /24 (253 addresses for 200): the daemons' search starts (133 and 204 for these host ids)
    // are close enough that they offer the same addresses and race for them.
    a.ok(&["network", "create", "--scope", "global", "--subnet", "10.77.0.0/24", "shared"]);
    // The other daemon adopts it: same id, its own bridge with the gateway.
    let id = a.ok(&["network", "inspect", "-f", "{{.Id}}", "shared"]);
    weft_itest::eventually("host b sees the global network", || b.weft(&["network", "inspect", "-f", "{{.Id}}", "shared"]).stdout == format!("{id}\n").into_bytes());
    assert_eq!(b.ok(&["network", "inspect", "-f", "{{.Scope}}", "shared"]), "global");
    assert!(b.ip(&["-4", "addr"]).contains("10.77.0.1/24"), "host b's bridge has the gateway");
    // A local network of the same name on b is refused while the global one exists.
    assert!(b.fails(&["network", "create", "shared"]).contains("already exists"));

    // 200 creations at once, split across the daemons.
    let (a_started, b_started) = thread::scope(|s| {
        let ta = s.spawn(|| run_many(&a, "a", "shared", 100, 8));
        let tb = s.spawn(|| run_many(&b, "b", "shared", 100, 8));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    assert!(a_started.1.is_empty() && b_started.1.is_empty(), "every creation succeeds: {:?} {:?}", a_started.1, b_started.1);
    let (on_a, on_b) = (addresses(&a, "shared"), addresses(&b, "shared"));
    assert_eq!((on_a.len(), on_b.len()), (100, 100));
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (name, ip) in on_a.iter().chain(on_b.iter()) {
        assert!(ip.starts_with("10.77."), "{name} has {ip}");
        if let Some(other) = owner.insert(ip, name) {
            panic!("{ip} handed out twice: to {other} and {name}");
        }
    }

    // A daemon's restart reconciles only its own host's keys: host b's containers keep their
    // claims (a killed host a, restarted, hands out none of their addresses).
    a.kill9_daemon();
    a.start(&["--host-id", "host-a", "--store", &url]);
    assert_eq!(addresses(&a, "shared"), on_a, "host a's containers adopted as they were");
    let (more, refused) = run_many(&a, "late", "shared", 20, 4);
    assert!(refused.is_empty(), "{refused:?}");
    let after = addresses(&a, "shared");
    for name in &more {
        let ip = &after[name];
        assert!(!owner.contains_key(ip.as_str()), "{name} got {ip}, already {}'s", owner[ip.as_str()]);
    }
    let mut rm_late: Vec<&str> = vec!["rm", "-f"];
    rm_late.extend(more.iter().map(String::as_str));
    a.ok(&rm_late);

    // Traffic on each host's side of the network.
    let (b0, b1) = (&on_b["b0"], &on_b["b1"]);
    assert!(b.ping("b0", b1), "b0 reaches b1 ({b1}) over host b's bridge");
    assert!(a.ping("a0", &on_a["a1"]), "a0 reaches a1 over host a's bridge");
    let _ = b0;

    // Removing the network while the other host has endpoints on it is refused, naming it.
    let mut rm_a: Vec<&str> = vec!["rm", "-f"];
    rm_a.extend(on_a.keys().map(String::as_str));
    a.ok(&rm_a);
    let err = a.fails(&["network", "rm", "shared"]);
    assert!(err.contains("host-b"), "{err}");
    let mut rm_b: Vec<&str> = vec!["rm", "-f"];
    rm_b.extend(on_b.keys().map(String::as_str));
    b.ok(&rm_b);
    a.ok(&["network", "rm", "shared"]);
    weft_itest::eventually("host b removes its side of the network", || !b.weft(&["network", "inspect", "shared"]).status.success());
    assert!(!b.ip(&["-4", "addr"]).contains("10.77.0.1/24"), "host b's bridge is gone");
    b.finish();
    a.finish();
    drop(etcd);
}

#[test]
fn a_small_shared_subnet_is_shared_exactly() {
    let Pair { _ul, etcd, a, b, .. } = shared_pair("sx");
    // 10.78.0.0/27: 30 host addresses, one the gateway: 29 for containers.
    a.ok(&["network", "create", "--scope", "global", "--subnet", "10.78.0.0/27", "small"]);
    weft_itest::eventually("host b sees the network", || b.weft(&["network", "inspect", "small"]).status.success());
    // A global name is taken once, even by two daemons at the same instant.
    for round in 0..5 {
        let name = format!("dup{round}");
        let (ra, rb) = thread::scope(|s| {
            let ta = s.spawn(|| a.weft(&["network", "create", "--scope", "global", "--subnet", &format!("10.79.{round}.0/26"), &name]));
            let tb = s.spawn(|| b.weft(&["network", "create", "--scope", "global", "--subnet", &format!("10.79.{round}.64/26"), &name]));
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        assert_eq!(u8::from(ra.status.success()) + u8::from(rb.status.success()), 1, "one of {ra:?} {rb:?}");
        let loser = if ra.status.success() { &rb } else { &ra };
        assert!(String::from_utf8_lossy(&loser.stderr).contains("already exists"), "{loser:?}");
        let winner = if ra.status.success() { &a } else { &b };
        winner.ok(&["network", "rm", &name]);
    }
    let ((a_ok, a_err), (b_ok, b_err)) = thread::scope(|s| {
        let ta = s.spawn(|| run_many(&a, "a", "small", 20, 4));
        let tb = s.spawn(|| run_many(&b, "b", "small", 20, 4));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    assert_eq!(a_ok.len() + b_ok.len(), 29, "exactly the subnet's 29 addresses are handed out; refused: {a_err:?} {b_err:?}");
    for e in a_err.iter().chain(&b_err) {
        assert!(e.contains("no free address left in 10.78.0.0/27"), "refused clearly: {e}");
    }
    let (on_a, on_b) = (addresses(&a, "small"), addresses(&b, "small"));
    let mut all: Vec<&String> = on_a.values().chain(on_b.values()).collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (29, 29), "no address twice");
    // What host a gives back, host b can use (it follows the claims).
    let freed = on_a.len();
    assert!(freed > 0, "host a got some of the addresses");
    let mut rm: Vec<&str> = vec!["rm", "-f"];
    rm.extend(on_a.keys().map(String::as_str));
    a.ok(&rm);
    let (more, refused) = run_many(&b, "late", "small", freed, 1);
    assert_eq!(more.len(), freed, "host b takes the addresses host a released: {refused:?}");
    let o = b.weft(&["run", "-d", "--net", "small", "--rootfs", &b.rootfs(), "--", "sleep", "600"]);
    assert!(!o.status.success(), "the subnet is full again: {}", text(&o));
    b.finish();
    a.finish();
    drop(etcd);
}

/// With etcd gone, containers already running keep their traffic, reads of the daemon's own
/// state still answer, and every change is refused at once with one clear line (not a hang, not
/// a half-made container); when etcd is back, the daemons go on where they were.
#[test]
fn losing_etcd_refuses_changes_and_keeps_traffic() {
    let Pair { _ul, mut etcd, a, b, .. } = shared_pair("sd");
    a.ok(&["network", "create", "--scope", "global", "--subnet", "10.81.0.0/24", "g"]);
    weft_itest::eventually("host b sees the network", || b.weft(&["network", "inspect", "g"]).status.success());
    a.run_d("c1", &["--net", "g"], &["sleep", "600"]);
    a.run_d("c2", &["--net", "g"], &["sleep", "600"]);
    let c2 = weft_itest::inspect(&a, "c2")["NetworkSettings"]["Networks"]["g"]["IPAddress"].as_str().expect("c2's address").to_string();
    let links_before = a.link_names();

    etcd.kill(0);
    assert!(a.ping("c1", &c2), "traffic between running containers goes on without etcd");
    assert!(a.ok(&["ps"]).contains("c1"), "the daemon still answers reads");
    let t0 = std::time::Instant::now();
    let err = a.fails(&["run", "-d", "--name", "c3", "--net", "g", "--rootfs", &a.rootfs(), "--", "sleep", "600"]);
    let took = t0.elapsed();
    assert!(err.contains("unreachable") && err.lines().count() == 1, "one clear line: {err}");
    assert!(took < std::time::Duration::from_secs(10), "refused within the store's deadline, not hung: {took:?}");
    assert!(b.fails(&["network", "create", "--scope", "global", "--subnet", "10.82.0.0/24", "h"]).contains("unreachable"));
    assert_eq!(a.link_names(), links_before, "the refused run left nothing behind");
    assert!(a.weft(&["inspect", "c3"]).status.code() != Some(0), "no half-made container");

    etcd.restart(0);
    let mut started = None;
    let t0 = std::time::Instant::now();
    while started.is_none() && t0.elapsed() < std::time::Duration::from_secs(20) {
        let o = b.weft(&["run", "-d", "--name", "c4", "--net", "g", "--rootfs", &b.rootfs(), "--", "sleep", "600"]);
        if o.status.success() {
            started = Some(());
        } else {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    assert!(started.is_some(), "host b runs on the global network again once etcd is back");
    let c4 = weft_itest::inspect(&b, "c4")["NetworkSettings"]["Networks"]["g"]["IPAddress"].as_str().expect("c4's address").to_string();
    let c1 = weft_itest::inspect(&a, "c1")["NetworkSettings"]["Networks"]["g"]["IPAddress"].as_str().expect("c1's address").to_string();
    assert!(c4 != c1 && c4 != c2, "host b's new container got a free address ({c4}), not one of host a's ({c1}, {c2})");
    b.finish();
    a.finish();
}
