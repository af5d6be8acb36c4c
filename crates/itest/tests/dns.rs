//! Issue 4: the embedded DNS: names, aliases and name.network on user networks, scoped to the
//! networks a container is on, live on connect/disconnect/run/rm, PTR, UDP and TCP, forwarding to
//! an upstream the test runs, internal networks, malformed queries. Real DNS answers only.

use weft_itest::{dns_server, eventually, nettool, text, Host, Killed};

/// Daemon flags of these tests: names that are not local go to an upstream inside the test's own
/// host namespace (see [`nxdomain_upstream`]), so no query ever leaves the test's namespaces.
const NO_UPSTREAM: &[&str] = &["--dns", "127.0.0.1"];

/// The upstream of [`NO_UPSTREAM`]: answers NXDOMAIN to every name, so a name the embedded DNS
/// does not know gets an explicit answer. Returns once it listens.
fn nxdomain_upstream(h: &Host) -> Killed {
    dns_server(&h.ns, "127.0.0.1", "none.invalid", "192.0.2.1", "0")
}

/// Not resolvable: an explicit NXDOMAIN or REFUSED answer with no address (never a timeout or
/// an error: [`q`] fails the test when no answer came).
fn unresolved(out: &str) -> bool {
    (out.contains("RCODE 3") || out.contains("RCODE 5")) && out.lines().filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok()).count() == 0
}

/// `nettool dns-query` from inside container `from` (started without --rootfs: host python3);
/// an answer must come back ("RCODE n" and the records).
fn q(h: &Host, from: &str, name: &str, args: &[&str]) -> String {
    let nt = nettool();
    let mut cmd = vec!["python3", nt.as_str(), "dns-query", "127.0.0.11", name];
    cmd.extend_from_slice(args);
    let out = text(&h.exec(from, &cmd));
    assert!(out.starts_with("RCODE "), "no DNS answer for {name} in {from}: {out}");
    out
}

#[test]
fn names_aliases_scoping_and_live_changes() {
    let mut h = Host::new("dns");
    let upstream = nxdomain_upstream(&h);
    h.start(NO_UPSTREAM);
    h.ok(&["network", "create", "front"]);
    h.ok(&["network", "create", "back"]);
    let web = h.run_d("web", &["--network", "front", "--network-alias", "www"], &["sleep", "300"]);
    let db = h.run_d("db", &["--network", "back"], &["sleep", "300"]);
    h.ok(&["run", "-d", "--name", "cli", "--network", "front", "--", "sleep", "300"]);
    let resolv = h.exec_ok("cli", &["cat", "/etc/resolv.conf"]);
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    // Name, alias, name.network, short id; UDP and TCP.
    for name in ["web", "www", "web.front", "WEB"] {
        let out = q(&h, "cli", name, &[]);
        assert!(out.contains("RCODE 0") && out.contains(&web), "{name}: {out}");
    }
    let id = h.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    assert!(q(&h, "cli", &id[..12], &[]).contains(&web));
    assert!(q(&h, "cli", "web", &["A", "tcp"]).contains(&web), "over TCP");
    // The C library's resolver and real traffic by name (busybox rootfs container).
    h.run_d("bb", &["--network", "front"], &["sleep", "300"]);
    assert!(h.ping("bb", "web"), "ping by name");
    // PTR.
    let rev: Vec<&str> = web.split('.').rev().collect();
    let out = q(&h, "cli", &format!("{}.in-addr.arpa", rev.join(".")), &["PTR"]);
    assert!(out.contains("web.front."), "{out}");
    // Not across networks.
    let o = q(&h, "cli", "db", &[]); assert!(unresolved(&o), "db is on another network: {o}");
    // connect makes a name resolvable at once, disconnect removes it.
    h.ok(&["network", "connect", "front", "db"]);
    let db_front = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}", "db"]);
    let out = q(&h, "cli", "db", &[]);
    assert!(out.contains(&db_front) && !out.contains(&db), "only db's address on front: {out}");
    h.ok(&["network", "disconnect", "front", "db"]);
    assert!(unresolved(&q(&h, "cli", "db", &[])));
    // run and rm take effect at once.
    let late = h.run_d("late", &["--network", "front"], &["sleep", "300"]);
    assert!(q(&h, "cli", "late", &[]).contains(&late));
    h.ok(&["rm", "-f", "late"]);
    assert!(unresolved(&q(&h, "cli", "late", &[])));
    // The default bridge keeps the host's resolvers (as in Docker).
    h.run_d("plain", &[], &["sleep", "300"]);
    assert!(!h.exec_ok("plain", &["cat", "/etc/resolv.conf"]).contains("127.0.0.11"));
    drop(upstream);
    h.finish();
}

#[test]
fn forwards_to_upstream_and_internal_networks_do_not() {
    let mut h = Host::new("dnsup");
    let out = h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    let nt = nettool();
    let log_path = h.dir.join("upstream.log");
    let log = std::fs::File::create(&log_path).expect("upstream log");
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &out, "python3", &nt, "dns-server", "198.51.100.2", "db.example.test", "203.0.113.7", "30"])
        .stdout(log)
        .spawn()
        .expect("dns server");
    let served = || std::fs::read_to_string(&log_path).expect("upstream log").matches("served db.example.test to 198.51.100.1").count();
    h.ok(&["network", "create", "front"]);
    h.ok(&["network", "create", "--internal", "vault"]);
    h.ok(&["run", "-d", "--name", "cli", "--network", "front", "--dns", "198.51.100.2", "--dns-search", "example.test", "--dns-option", "timeout:2", "--", "sleep", "300"]);
    h.ok(&["run", "-d", "--name", "sealed", "--network", "vault", "--dns", "198.51.100.2", "--", "sleep", "300"]);
    eventually("upstream answers through the embedded DNS", || q(&h, "cli", "db.example.test", &[]).contains("203.0.113.7"));
    assert!(q(&h, "cli", "nothing.example.test", &[]).contains("RCODE 3"), "upstream NXDOMAIN relayed");
    assert!(q(&h, "cli", "db.example.test", &["A", "tcp"]).contains("RCODE"), "TCP client gets an answer");
    let resolv = h.exec_ok("cli", &["cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("search example.test") && resolv.contains("timeout:2"), "{resolv}");
    // search domain applied by the container's resolver: the short name reaches upstream.
    let bb = h.exec_ok("cli", &["getent", "hosts", "db"]);
    assert!(bb.contains("203.0.113.7"), "{bb}");
    // Internal: outside names are NXDOMAIN, never forwarded; the same query from cli is.
    let n0 = served();
    assert!(n0 > 0, "forwarded from the daemon's side");
    assert!(unresolved(&q(&h, "sealed", "db.example.test", &[])));
    assert_eq!(served(), n0, "the upstream never saw sealed's query");
    assert!(q(&h, "cli", "db.example.test", &[]).contains("203.0.113.7"));
    eventually("the upstream saw cli's query", || served() == n0 + 1);
    server.kill().expect("stop the server");
    server.wait().expect("reap the server");
    h.finish();
}

#[test]
fn malformed_truncated_and_oversized_queries_do_no_harm() {
    let mut h = Host::new("dnsbad");
    h.start(NO_UPSTREAM);
    h.ok(&["network", "create", "front"]);
    let web = h.run_d("web", &["--network", "front"], &["sleep", "300"]);
    h.ok(&["run", "-d", "--name", "cli", "--network", "front", "--", "sleep", "300"]);
    let nt = nettool();
    let o = h.exec("cli", &["python3", &nt, "dns-garbage", "127.0.0.11"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(q(&h, "cli", "web", &[]).contains(&web), "still answering");
    h.finish();
}
