//! Hosts that come and go: daemons on one etcd register under leases (`weft node ls`); a killed
//! daemon's registration goes from every host once its lease expires, and comes back with it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weft_itest::cluster::{addresses, run_many, Cluster};

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

/// The address of container `name` on network `net`.
fn addr_on(h: &weft_itest::Host, name: &str, net: &str) -> String {
    weft_itest::inspect(h, name)["NetworkSettings"]["Networks"][net]["IPAddress"].as_str().unwrap_or_else(|| panic!("{name} has no address on {net}")).to_string()
}

/// Whether host `h`'s VXLAN device `vx` forwards `mac` to some host (`bridge fdb show`).
fn fdb_has(h: &weft_itest::Host, vx: &str, mac: &str) -> bool {
    h.sh_ok(&format!("bridge fdb show dev {vx}")).lines().any(|l| l.starts_with(mac) && l.contains(" dst "))
}

/// Three hosts on one overlay: one network for the cluster, a bridge and a VXLAN device on each
/// host, containers reaching each other across hosts by address and by name, nothing learnt or
/// flooded; a published port and egress NAT on each host; a killed host's endpoints leave the
/// others' kernels and DNS once its lease expires, and come back with it.
#[test]
fn overlay_joins_containers_across_hosts() {
    let ttl = ["--node-ttl", "2"];
    let mut c = Cluster::new("ov", 3, 1, &ttl);
    // A network outside host 1 (no route back to the overlay: only NAT answers).
    c.hosts[1].outside("10.201.0.1", "10.201.0.2");
    let (h0, h1, h2) = (&c.hosts[0], &c.hosts[1], &c.hosts[2]);
    h0.ok(&["network", "create", "-d", "overlay", "--subnet", "10.90.0.0/24", "ov"]);
    let id = h0.ok(&["network", "inspect", "-f", "{{.Id}}", "ov"]);
    let vx = format!("vx-{}", &id[..12]);
    // The creator made it as every host does: from the watch (and had it when create returned).
    let log = h0.daemon_log();
    let adopted = log.lines().position(|l| l.contains("global network adopted network=ov"));
    let created = log.lines().position(|l| l.contains("global network created network=ov"));
    assert!(adopted.is_some() && adopted < created, "the creator adopted ov from the watch before create returned: {log}");
    for h in [h0, h1, h2] {
        weft_itest::eventually("every host has the overlay", || h.weft(&["network", "inspect", "ov"]).status.success());
        assert_eq!(h.ok(&["network", "inspect", "-f", "{{.Scope}}", "ov"]), "global");
        let dev = h.ip(&["-d", "link", "show", &vx]);
        assert!(dev.contains("vxlan id 4096") && dev.contains("dstport 4789") && dev.contains("nolearning") && dev.contains("proxy"), "{}: {dev}", h.ns);
        assert!(dev.contains("mtu 1450"), "the underlay's 1500 less the tunnel's 50: {dev}");
    }
    // A fixed address, as `weave run 10.90.0.200/24` gives one.
    h0.run_d("c0", &["--net", "ov", "--ip", "10.90.0.200"], &["sleep", "600"]);
    let c0 = addr_on(h0, "c0", "ov");
    assert_eq!(c0, "10.90.0.200");
    h1.run_d("c1", &["--net", "ov", "-p", "8081:80"], &["sh", "-c", "mkdir -p /tmp/w && echo from-c1 > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"]);
    h2.run_d("c2", &["--net", "ov"], &["sleep", "600"]);
    let (c1, c2) = (addr_on(h1, "c1", "ov"), addr_on(h2, "c2", "ov"));
    let all: std::collections::HashSet<&String> = [&c0, &c1, &c2].into_iter().collect();
    assert_eq!(all.len(), 3, "three addresses: {c0} {c1} {c2}");

    // By address and by name, both ways, across hosts.
    weft_itest::eventually("c0 reaches c1 across the overlay", || h0.ping("c0", &c1));
    assert!(h0.ping("c0", &c2), "c0 reaches c2");
    assert!(h2.ping("c2", &c0), "c2 reaches c0");
    assert!(h0.ping("c0", "c2"), "c0 reaches c2 by name (host 0's DNS answers for host 2's container)");
    h1.listening("c1", 80);
    assert_eq!(h0.get("c0", "c1"), "from-c1", "TCP across hosts by name");
    assert_eq!(h2.get("c2", "c1.ov"), "from-c1", "and by name.network");
    // Host 0's inspect names the hosts on ov (Docker's Peers) and the other hosts' members; its
    // graph draws them under their host.
    let (_, _, body) = weft_itest::http(h0, "GET", "/networks/ov", None, b"");
    let ov: serde_json::Value = serde_json::from_str(&body).expect("inspect json");
    let peers: Vec<(&str, &str)> = ov["Peers"].as_array().expect("Peers").iter().map(|p| (p["Name"].as_str().unwrap_or(""), p["IP"].as_str().unwrap_or(""))).collect();
    assert_eq!(peers.len(), 3, "{body}");
    assert_eq!(peers[0].1, "192.168.200.1", "this host first: {body}");
    let remote: Vec<(&str, &str)> = ov["RemoteContainers"].as_object().expect("RemoteContainers").values().map(|r| (r["Name"].as_str().unwrap_or(""), r["IPv4Address"].as_str().unwrap_or(""))).collect();
    for (name, ip) in [("c1", &c1), ("c2", &c2)] {
        assert!(remote.contains(&(name, &format!("{ip}/24"))), "{name} {ip} in {body}");
    }
    let svg = h0.ok(&["network", "graph", "ov"]);
    let headings: Vec<String> = peers[1..].iter().map(|(name, ip)| format!("on {name} ({ip})")).collect();
    for needle in ["hosts sharing the store", "ov (overlay, global)", "\nc0\n", "\nc1\n", "\nc2\n", &c0, &c1, &c2].into_iter().chain(headings.iter().map(String::as_str)) {
        assert!(svg.contains(needle), "{needle} in {svg}");
    }
    assert!(headings.iter().any(|h| h.contains("192.168.200.2")) && headings.iter().any(|h| h.contains("192.168.200.3")), "{headings:?}");
    // Nothing learnt, nothing flooded: only static entries with a destination, no default one.
    let fdb = h0.sh_ok(&format!("bridge fdb show dev {vx}"));
    assert!(!fdb.contains("00:00:00:00:00:00"), "no flooding entry: {fdb}");
    let c1_mac = weft_itest::inspect(h1, "c1")["NetworkSettings"]["Networks"]["ov"]["MacAddress"].as_str().expect("mac").to_string();
    assert!(fdb.contains(&format!("{c1_mac} dst 192.168.200.2")), "c1's MAC behind host 1: {fdb}");

    // A published port on host 1, reached from host 0's own namespace over the underlay.
    assert_eq!(h0.host_fetch("192.168.200.2:8081"), "from-c1");
    // Egress: a container on host 1 reaches the outside from host 1's own address (NAT).
    h1.ok(&["run", "-d", "--name", "egress", "--net", "ov", "--", "sleep", "600"]);
    assert_eq!(h1.udp_to_outside("egress", "10.201.0.2", 9911).as_deref(), Some("10.201.0.1"), "masqueraded behind host 1");
    // An address another host holds cannot be taken, fixed or not.
    let taken = h2.fails(&["run", "-d", "--net", "ov", "--ip", "10.90.0.200", "--rootfs", &h2.rootfs(), "--", "sleep", "600"]);
    assert!(taken.contains("10.90.0.200"), "{taken}");
    // A process weft did not start joins the overlay (as `weave attach`): reachable from host 0.
    let pid = h1.sh_ok("unshare -n sleep 600 >/dev/null 2>&1 & echo $!").trim().to_string();
    h1.ok(&["network", "connect", "--pid", &pid, "--ip", "10.90.0.201", "ov"]);
    weft_itest::eventually("the attached process is reachable across hosts", || h0.ping("c0", "10.90.0.201"));
    assert!(h0.ping("c0", &format!("pid{pid}")), "and by its name");
    h1.ok(&["network", "disconnect", "ov", &format!("pid{pid}")]);
    h1.sh_ok(&format!("kill {pid}"));

    // kill -9 of host 2's daemon: traffic between the others goes on; once host 2's lease
    // expires, its container leaves host 0's overlay entries and DNS.
    let c2_mac = weft_itest::inspect(h2, "c2")["NetworkSettings"]["Networks"]["ov"]["MacAddress"].as_str().expect("mac").to_string();
    c.hosts[2].kill9_daemon();
    let (h0, h1) = (&c.hosts[0], &c.hosts[1]);
    assert!(h0.ping("c0", &c1), "traffic between the live hosts is untouched");
    let t0 = Instant::now();
    while fdb_has(h0, &vx, &c2_mac) {
        assert!(t0.elapsed() < Duration::from_secs(10), "host 2's endpoint still in host 0's FDB after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(h0.probe("c0", "busybox nslookup c2 127.0.0.11") != 0, "c2 no longer resolves on host 0");
    assert!(h1.ping("c1", &c0), "still untouched");
    // Host 2 returns: its container (which kept running) is reachable again.
    c.start(2, &ttl);
    let h0 = &c.hosts[0];
    weft_itest::eventually("host 2's container is back in host 0's overlay", || fdb_has(h0, &vx, &c2_mac));
    assert!(h0.ping("c0", "c2"), "c0 reaches c2 by name again");
    // A removed endpoint leaves the other hosts' entries and names.
    c.hosts[2].ok(&["rm", "-f", "c2"]);
    let h0 = &c.hosts[0];
    weft_itest::eventually("c2 leaves host 0's FDB", || !fdb_has(h0, &vx, &c2_mac));
    assert!(!h0.sh_ok(&format!("ip neigh show dev {vx}")).lines().any(|l| l.starts_with(&format!("{c2} "))), "and its neighbour entry");
    assert!(h0.probe("c0", "busybox nslookup c2 127.0.0.11") != 0, "and its name");
    c.finish();
}

/// 201 containers started at once over three hosts on one overlay get 201 different addresses;
/// a host cut off from etcd can take no address at all (not even a free one), and once back, not
/// one another host holds.
#[test]
fn overlay_addresses_are_never_handed_out_twice() {
    let c = Cluster::new("oa", 3, 1, &[]);
    c.hosts[0].ok(&["network", "create", "-d", "overlay", "--subnet", "10.91.0.0/24", "ova"]);
    for h in &c.hosts {
        weft_itest::eventually("every host has the overlay", || h.weft(&["network", "inspect", "ova"]).status.success());
    }
    let started: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = c.hosts.iter().enumerate().map(|(i, h)| s.spawn(move || run_many(h, &format!("h{i}-"), "ova", 67, 6))).collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    for (i, (ok, refused)) in started.iter().enumerate() {
        assert!(refused.is_empty() && ok.len() == 67, "host {i}: {} started, refused: {refused:?}", ok.len());
    }
    let mut owner: HashMap<String, String> = HashMap::new();
    for (i, h) in c.hosts.iter().enumerate() {
        for (name, ip) in addresses(h, "ova") {
            if let Some(other) = owner.insert(ip.clone(), format!("{name} on host {i}")) {
                panic!("{ip} handed out twice: to {other} and {name} on host {i}");
            }
        }
    }
    assert_eq!(owner.len(), 201);

    // Host 2 cut off from the underlay (and so from etcd): it refuses, clearly and quickly.
    let held = addresses(&c.hosts[0], "ova").into_values().next().expect("an address of host 0's");
    let h2 = &c.hosts[2];
    c.ul.cut(&h2.ns, "eth0", true);
    let t0 = Instant::now();
    // (Host 2 knows the address is another's from its cache: refused at once, without etcd.)
    let cut_off = h2.fails(&["run", "-d", "--net", "ova", "--ip", &held, "--rootfs", &h2.rootfs(), "--", "sleep", "600"]);
    assert!(cut_off.contains(&held) && cut_off.contains("in use"), "{cut_off}");
    let free = h2.fails(&["run", "-d", "--net", "ova", "--rootfs", &h2.rootfs(), "--", "sleep", "600"]);
    assert!(free.contains("unreachable"), "not even a free address: {free}");
    assert!(t0.elapsed() < Duration::from_secs(20), "refused within the deadlines: {:?}", t0.elapsed());
    c.ul.cut(&h2.ns, "eth0", false);
    // Back: the address is host 0's, and stays so.
    let t0 = Instant::now();
    let back = loop {
        let o = h2.weft(&["run", "-d", "--net", "ova", "--ip", &held, "--rootfs", &h2.rootfs(), "--", "sleep", "600"]);
        let err = weft_itest::text(&o);
        assert!(!o.status.success(), "host 2 took {held}, host 0's");
        if !err.contains("unreachable") || t0.elapsed() > Duration::from_secs(20) {
            break err;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(back.contains(&held) && back.contains("in use"), "refused as another's: {back}");
    c.finish();
}

/// Routed mode over three hosts: each host takes a block of the range, routes to the others'
/// blocks through their advertised addresses, and containers talk across hosts without
/// encapsulation or NAT (the receiving host sees the sender's own address); a killed host's
/// route goes with its lease.
#[test]
fn routed_networks_route_between_hosts_blocks() {
    let ttl = ["--node-ttl", "2"];
    let mut c = Cluster::new("rt", 3, 1, &ttl);
    c.hosts[0].ok(&["network", "create", "--scope", "global", "-o", "com.weft.routed=true", "--subnet", "10.93.0.0/16", "rt"]);
    let mut blocks = Vec::new();
    for h in &c.hosts {
        weft_itest::eventually("every host has the routed network", || h.weft(&["network", "inspect", "rt"]).status.success());
        let v: serde_json::Value = serde_json::from_str(&h.ok(&["network", "inspect", "rt"])).expect("inspect JSON");
        let block = v[0]["IPAM"]["Config"][0]["Subnet"].as_str().expect("a subnet").to_string();
        assert!(block.starts_with("10.93.") && block.ends_with("/24"), "a /24 block of the range: {block}");
        blocks.push(block);
    }
    blocks.sort();
    blocks.dedup();
    assert_eq!(blocks.len(), 3, "a block each: {blocks:?}");
    for (i, h) in c.hosts.iter().enumerate() {
        h.run_d(&format!("r{i}"), &["--net", "rt"], &["sleep", "600"]);
    }
    let ips: Vec<String> = c.hosts.iter().enumerate().map(|(i, h)| addr_on(h, &format!("r{i}"), "rt")).collect();
    let (h0, h1) = (&c.hosts[0], &c.hosts[1]);
    // Routes to the other blocks through the other hosts.
    let routes = h0.ip(&["-4", "route"]);
    assert!(routes.contains("via 192.168.200.2") && routes.contains("via 192.168.200.3"), "{routes}");
    weft_itest::eventually("r0 reaches r1 on host 1", || h0.ping("r0", &ips[1]));
    assert!(h0.ping("r0", &ips[2]), "r0 reaches r2 on host 2");
    assert!(c.hosts[2].ping("r2", &ips[0]), "and back");
    assert!(h0.ping("r0", "r1"), "by name too");
    // No NAT between blocks: host 1's conntrack shows r0's own address as the source.
    let ct = h1.sh_ok("conntrack -L -p icmp 2>/dev/null");
    assert!(ct.contains(&format!("src={} ", ips[0])), "host 1 saw r0's address, not host 0's: {ct}");
    // A dead host's block loses its route once its lease expires.
    c.hosts[2].kill9_daemon();
    let h0 = &c.hosts[0];
    let t0 = Instant::now();
    while h0.ip(&["-4", "route"]).contains("via 192.168.200.3") {
        assert!(t0.elapsed() < Duration::from_secs(10), "host 2's route still on host 0 after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(h0.ping("r0", &ips[1]), "the others are untouched");
    c.start(2, &ttl);
    let h0 = &c.hosts[0];
    weft_itest::eventually("host 2's block is routed again", || h0.ip(&["-4", "route"]).contains("via 192.168.200.3"));
    assert_eq!(addr_on(&c.hosts[2], "r2", "rt"), ips[2], "host 2 kept its block and its container its address");
    assert!(h0.ping("r0", &ips[2]));
    // Removed, the network gives its whole range back (its claim is of the range, not a block).
    for (i, h) in c.hosts.iter().enumerate() {
        h.ok(&["rm", "-f", &format!("r{i}")]);
    }
    c.hosts[1].ok(&["network", "rm", "rt"]);
    c.hosts[1].ok(&["network", "create", "--scope", "global", "--subnet", "10.93.0.0/16", "rt2"]);
    c.finish();
}

/// Two hosts on a three-member etcd: with any one member killed (the leader included), daemons
/// go on creating containers on the overlay, and the containers reach each other across hosts.
#[test]
fn one_etcd_member_down_changes_nothing_for_the_daemons() {
    let mut c = Cluster::new("om", 2, 3, &[]);
    c.hosts[0].ok(&["network", "create", "-d", "overlay", "--subnet", "10.97.0.0/24", "om"]);
    weft_itest::eventually("host 1 has the overlay", || c.hosts[1].weft(&["network", "inspect", "om"]).status.success());
    for down in 0..3 {
        c.etcd.kill(down);
        let (a, b) = (format!("a{down}"), format!("b{down}"));
        c.hosts[0].run_d(&a, &["--net", "om"], &["sleep", "600"]);
        c.hosts[1].run_d(&b, &["--net", "om"], &["sleep", "600"]);
        let ip = addr_on(&c.hosts[1], &b, "om");
        weft_itest::eventually(&format!("{a} reaches {b} with member {down} down"), || c.hosts[0].ping(&a, &ip));
        assert!(c.hosts[0].ping(&a, &b), "by name too");
        c.etcd.restart(down);
    }
    c.finish();
}

/// A host cut off from the others (and from etcd) for longer than its lease: the others forget
/// its endpoints; when the link is back, the daemon, which never stopped, registers again under
/// a new lease and its containers are reachable again, without a restart.
#[test]
fn a_partitioned_host_comes_back_by_itself() {
    let c = Cluster::new("pt", 2, 1, &["--node-ttl", "2"]);
    let (h0, h1) = (&c.hosts[0], &c.hosts[1]);
    h0.ok(&["network", "create", "-d", "overlay", "--subnet", "10.98.0.0/24", "pt"]);
    weft_itest::eventually("host 1 has the overlay", || h1.weft(&["network", "inspect", "pt"]).status.success());
    h0.run_d("p0", &["--net", "pt"], &["sleep", "600"]);
    h1.run_d("p1", &["--net", "pt"], &["sleep", "600"]);
    let p1 = addr_on(h1, "p1", "pt");
    let mac = weft_itest::inspect(h1, "p1")["NetworkSettings"]["Networks"]["pt"]["MacAddress"].as_str().expect("mac").to_string();
    let vx = format!("vx-{}", &h0.ok(&["network", "inspect", "-f", "{{.Id}}", "pt"])[..12]);
    weft_itest::eventually("p0 reaches p1", || h0.ping("p0", &p1));
    let lease_before = nodes(h0).len();
    assert_eq!(lease_before, 2);

    c.ul.cut(&h1.ns, "eth0", true);
    let t0 = Instant::now();
    while fdb_has(h0, &vx, &mac) {
        assert!(t0.elapsed() < Duration::from_secs(10), "host 1's endpoint still on host 0 after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(nodes(h0).len(), 1, "host 1's registration expired");
    c.ul.cut(&h1.ns, "eth0", false);
    let t0 = Instant::now();
    while !fdb_has(h0, &vx, &mac) {
        assert!(t0.elapsed() < Duration::from_secs(15), "host 1 did not register again within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(h0.ping("p0", &p1), "p1 reachable again, its daemon never restarted");
    assert!(h0.ping("p0", "p1"), "and by name");
    c.finish();
}

/// A container's record changed in etcd behind the daemon's back (here: put again by hand, as
/// another writer would) is not overwritten: the daemon's next write of it is refused by its
/// revision check with one line (409), the daemon reads the record again, and the next attempt
/// goes through.
#[test]
fn a_record_changed_behind_the_daemon_is_not_overwritten() {
    let c = Cluster::new("rv", 1, 1, &[]);
    let h = &c.hosts[0];
    h.ok(&["network", "create", "side"]);
    h.run_d("r1", &[], &["sleep", "600"]);
    let id = h.ok(&["inspect", "-f", "{{.Id}}", "r1"]);
    let key = format!("/weft/hosts/h0/containers/{id}");
    let etcdctl = |args: &str| {
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", c.etcd.member_ns(0), "sh", "-c", &format!("etcdctl --endpoints http://127.0.0.1:2379 {args}")])
            .output()
            .expect("etcdctl");
        assert!(o.status.success(), "etcdctl {args}: {}", weft_itest::text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // Another writer puts the record again (same value, new revision).
    etcdctl(&format!("get --print-value-only {key} > /tmp/rv-{id} && etcdctl --endpoints http://127.0.0.1:2379 put {key} < /tmp/rv-{id} && rm /tmp/rv-{id}"));
    let o = h.weft(&["network", "connect", "side", "r1"]);
    let err = weft_itest::text(&o);
    assert!(!o.status.success() && err.contains("changed in the store meanwhile") && err.trim().lines().count() == 1, "refused in one line: {err}");
    assert!(!h.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "r1"]).contains("side"), "nothing of the refused connect stays");
    // The daemon read the record again: the next attempt goes through.
    h.ok(&["network", "connect", "side", "r1"]);
    assert!(h.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "r1"]).contains("side"));
    assert!(etcdctl(&format!("get --print-value-only {key}")).contains("side"), "and the store has it");

    // The same for a sandbox (a namespace weft did not start): its second endpoint is refused
    // while its record changed behind the daemon, then taken.
    let pid = h.sh_ok("unshare -n sleep 600 >/dev/null 2>&1 & echo $!").trim().to_string();
    h.ok(&["network", "connect", "--pid", &pid, "--name", "sbx", "bridge"]);
    let key = "/weft/hosts/h0/sandboxes/sbx";
    etcdctl(&format!("get --print-value-only {key} > /tmp/rv-sbx && etcdctl --endpoints http://127.0.0.1:2379 put {key} < /tmp/rv-sbx && rm /tmp/rv-sbx"));
    let o = h.weft(&["network", "connect", "--pid", &pid, "--name", "sbx", "side"]);
    let err = weft_itest::text(&o);
    assert!(!o.status.success() && err.contains("sandbox sbx changed in the store meanwhile") && err.trim().lines().count() == 1, "refused in one line: {err}");
    let side = h.ok(&["network", "inspect", "-f", "{{.Id}}", "side"]);
    assert!(!etcdctl(&format!("get --print-value-only {key}")).contains(&side), "nothing of the refused attach is in the store");
    assert!(!h.sh_ok(&format!("nsenter -t {pid} -n ip -o link")).contains("eth1"), "nor in the namespace");
    h.ok(&["network", "connect", "--pid", &pid, "--name", "sbx", "side"]);
    assert!(etcdctl(&format!("get --print-value-only {key}")).contains(&side), "the store has the second endpoint");
    assert!(h.sh_ok(&format!("nsenter -t {pid} -n ip -o link")).contains("eth1"), "and the namespace its interface");
    h.ok(&["network", "disconnect", "side", "sbx"]);
    h.ok(&["network", "disconnect", "bridge", "sbx"]);
    h.sh_ok(&format!("kill {pid}"));

    // An address claim the cache does not know (written behind the daemon, for the address the
    // pool hands out next): the run that meets it is refused with "try again" and leaves
    // nothing; the cache has taken the address, so the next run gets another and asking for it
    // says it is in use.
    h.run_d("fill0", &["--net", "side"], &["sleep", "600"]);
    let last: std::net::Ipv4Addr = addr_on(h, "fill0", "side").parse().expect("an address");
    let ip = std::net::Ipv4Addr::from(u32::from(last) + 1).to_string();
    etcdctl(&format!("put /weft/hosts/h0/addresses/{side}/{ip} '{{\"host\":\"h0\",\"owner\":\"ghost\",\"endpoint\":\"e\"}}'"));
    let veths = h.ip(&["-o", "link", "show", "type", "veth"]).lines().count();
    let o = h.weft(&["run", "-d", "--name", "fill1", "--net", "side", "--rootfs", &h.rootfs(), "--", "sleep", "600"]);
    let err = weft_itest::text(&o);
    assert!(!o.status.success() && err.contains(&format!("address {ip} of network side is claimed in the store already")) && err.contains("try again") && err.trim().lines().count() == 1, "{err}");
    assert_eq!(h.ip(&["-o", "link", "show", "type", "veth"]).lines().count(), veths, "the refused run left no veth");
    h.run_d("fill1", &["--net", "side"], &["sleep", "600"]);
    assert_ne!(addr_on(h, "fill1", "side"), ip, "the next run gets another address");
    assert!(h.fails(&["run", "-d", "--name", "fill2", "--net", "side", "--ip", &ip, "--rootfs", &h.rootfs(), "--", "sleep", "600"]).contains("in use"), "asked for: in use");
    c.finish();
}

/// Networks' names and subnets are claims in the store: hosts creating overlapping global
/// networks at the same moment (before any of them has seen the others' by the watch) get one
/// network, and the others a one-line refusal naming it; a local network is refused a subnet a
/// global one holds; local networks of two hosts may share a subnet.
#[test]
fn overlapping_networks_are_refused_by_the_store_across_hosts() {
    let c = Cluster::new("sn", 3, 1, &[]);
    for round in 0..4 {
        let asks = [(format!("g{round}a"), format!("10.6{round}.0.0/16")), (format!("g{round}b"), format!("10.6{round}.5.0/24")), (format!("g{round}c"), format!("10.6{round}.5.128/25"))];
        let outcomes: Vec<std::process::Output> = std::thread::scope(|s| {
            let runs: Vec<_> = c.hosts.iter().zip(&asks).map(|(h, (name, subnet))| s.spawn(move || h.weft(&["network", "create", "--scope", "global", "--subnet", subnet, name]))).collect();
            runs.into_iter().map(|r| r.join().expect("create")).collect()
        });
        let won: Vec<&str> = asks.iter().zip(&outcomes).filter(|(_, o)| o.status.success()).map(|((n, _), _)| n.as_str()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one of three overlapping networks is made: {won:?}");
        for o in outcomes.iter().filter(|o| !o.status.success()) {
            let err = weft_itest::text(o);
            // (Or with "the host's" address: the winner's bridge, made here as it was adopted.)
            assert!(err.contains("overlaps with") && err.trim().lines().count() == 1, "round {round}: {err}");
        }
        // Every host sees the one network, under its name, and none of the others.
        for h in &c.hosts {
            weft_itest::eventually("the winner reaches every host", || h.ok(&["network", "ls"]).contains(won[0]));
            assert!(asks.iter().filter(|(n, _)| n != won[0]).all(|(n, _)| !h.ok(&["network", "ls"]).contains(n.as_str())));
        }
    }
    // One name, asked on two hosts at once with disjoint subnets: one network.
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        let runs: Vec<_> = c.hosts[..2].iter().enumerate().map(|(i, h)| s.spawn(move || h.weft(&["network", "create", "--scope", "global", "--subnet", &format!("10.70.{i}.0/24"), "same"]).status.success())).collect();
        runs.into_iter().map(|r| r.join().expect("create")).collect()
    });
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "one network named same: {outcomes:?}");
    // A local network inside a global one's subnet: refused, naming it.
    let err = c.hosts[2].fails(&["network", "create", "--subnet", "10.60.5.0/24", "local1"]);
    assert!(err.contains("overlaps with network g0"), "{err}");
    // Local networks of two hosts are each their host's: one subnet twice is fine.
    for h in &c.hosts[..2] {
        h.ok(&["network", "create", "--subnet", "10.80.0.0/24", "mine"]);
    }
    // The longest claims fit in one etcd transaction (a /30 checked in both scopes and a /124).
    c.hosts[2].ok(&["network", "create", "--ipv6", "--subnet", "10.81.0.0/30", "--subnet", "fd00:81::/124", "tiny"]);
    assert!(c.hosts[2].fails(&["network", "create", "--ipv6", "--subnet", "10.82.0.0/24", "--subnet", "fd00:81::/64", "tiny2"]).contains("overlaps"));
    // A removed network gives its subnet back.
    c.hosts[0].ok(&["network", "rm", "mine"]);
    c.hosts[0].ok(&["network", "create", "--subnet", "10.80.0.0/25", "mine2"]);
    // The store decides, not the caches: a claim no daemon has seen (10.90.0.0/16, written
    // straight into etcd) refuses a network inside it, and one around it.
    let etcdctl = |args: &str| {
        let o = std::process::Command::new("ip").args(["netns", "exec", c.etcd.member_ns(0), "sh", "-c", &format!("etcdctl --endpoints http://127.0.0.1:2379 {args}")]).output().expect("etcdctl");
        assert!(o.status.success(), "etcdctl {args}: {}", weft_itest::text(&o));
    };
    etcdctl("put /weft/subnet-claims/4/0000101001011010 unseen-network");
    for subnet in ["10.90.3.0/24", "10.88.0.0/14"] {
        let err = c.hosts[1].fails(&["network", "create", "--scope", "global", "--subnet", subnet, "inside"]);
        assert!(err.contains("overlaps with network unseen-network (10.90.0.0/16)"), "{subnet}: {err}");
        let err = c.hosts[1].fails(&["network", "create", "--subnet", subnet, "inside"]);
        assert!(err.contains("overlaps with network unseen-network (10.90.0.0/16)"), "local {subnet}: {err}");
    }
    etcdctl("del /weft/subnet-claims/4/0000101001011010");
    c.hosts[1].ok(&["network", "create", "--scope", "global", "--subnet", "10.90.3.0/24", "inside"]);
    c.finish();
}
