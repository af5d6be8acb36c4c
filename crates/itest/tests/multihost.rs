//! Hosts that come and go: daemons on one etcd register under leases (`weft node ls`); a killed
//! daemon's registration goes from every host once its lease expires, and comes back with it.

use std::time::{Duration, Instant};

use weft_itest::cluster::Cluster;

/// `weft node ls` of host `h` as (host id, address, self) rows.
fn nodes(h: &weft_itest::Host) -> Vec<(String, String, bool)> {
    let out = h.ok(&["node", "ls"]);
    out.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f.last() == Some(&"*"))
        })
        .collect()
}

#[test]
fn hosts_register_and_a_dead_one_goes_when_its_lease_expires() {
    let mut c = Cluster::new("nd", 2, 1, &["--node-ttl", "2"]);
    let want = vec![("h0".to_string(), "192.168.200.1".to_string(), true), ("h1".to_string(), "192.168.200.2".to_string(), false)];
    weft_itest::eventually("host 0 lists both daemons", || nodes(&c.hosts[0]) == want);
    assert!(nodes(&c.hosts[1]).contains(&("h1".into(), "192.168.200.2".into(), true)), "host 1 marks itself");

    // A live daemon keeps its registration past its time to live (it renews the lease).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(nodes(&c.hosts[0]).len(), 2, "renewed leases keep both");

    // kill -9: nothing renews host 1's lease; once it expires, host 0 forgets it.
    c.hosts[1].kill9_daemon();
    let t0 = Instant::now();
    while nodes(&c.hosts[0]).len() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(8), "host 1 still listed {:?} after its 2 s lease", t0.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t0.elapsed() >= Duration::from_millis(500), "not before the lease could expire: {:?}", t0.elapsed());
    c.start(1, &["--node-ttl", "2"]);
    weft_itest::eventually("host 1 is back", || nodes(&c.hosts[0]).len() == 2);

    // Bad flags: one line each, and the daemon does not start.
    let bad = c.hosts[1].start_fails(&["--host-id", "h9", "--store", &c.etcd.url(), "--advertise-addr", "10.9.9.9"]);
    assert!(bad.contains("--advertise-addr 10.9.9.9 is not an address of this host"), "{bad}");
    let bad = c.hosts[1].start_fails(&["--node-ttl", "0"]);
    assert!(bad.contains("invalid --node-ttl 0"), "{bad}");
    let bad = c.hosts[1].start_fails(&["--store", "etcd://nohostport"]);
    assert!(bad.contains("invalid --store endpoint"), "{bad}");
    let bad = c.hosts[1].start_fails(&["--store-ca", "/nonexistent"]);
    assert!(bad.contains("are for --store etcd://"), "{bad}");
    c.finish();
}
