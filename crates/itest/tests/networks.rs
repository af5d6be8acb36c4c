//! Issue 4 (networks) and issue 3's isolation: user-defined networks, their options, several
//! networks per container, live connect/disconnect, internal networks, pool exhaustion.

use weft_itest::{eventually, first_inet, text, Host};

fn json(h: &Host, args: &[&str]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&h.ok(args)).expect("JSON");
    v[0].clone()
}

#[test]
fn create_inspect_options_and_remove() {
    let mut h = Host::new("net");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    let id = h.ok(&["network", "create", "front"]);
    let n = json(&h, &["network", "inspect", "front"]);
    assert_eq!(n["Id"], id.as_str());
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16", "the first free default pool");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "172.18.0.1");
    assert_eq!(n["Internal"], false);
    let bridge = format!("br-{}", &id[..12]);
    assert_eq!(first_inet(&h.ip(&["-4", "addr", "show", &bridge])).as_deref(), Some("172.18.0.1/16"));
    assert!(h.ok(&["network", "ls"]).contains("front"));
    // Explicit IPAM and bridge options.
    h.ok(&[
        "network", "create", "--subnet", "10.50.0.0/24", "--gateway", "10.50.0.254", "--ip-range", "10.50.0.128/25",
        "--aux-address", "printer=10.50.0.128", "-o", "com.docker.network.bridge.name=mybr0", "-o", "com.docker.network.driver.mtu=1400",
        "--label", "team=web", "back",
    ]);
    let ip = h.run_d("c1", &["--network", "back"], &["sleep", "300"]);
    assert_eq!(ip, "10.50.0.129", "from the range, skipping the aux address");
    let eth0 = h.exec_ok("c1", &["ip", "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1400"), "{eth0}");
    assert!(h.ip(&["-o", "link", "show", "master", "mybr0"]).contains("veth"));
    assert!(h.ping("c1", "10.50.0.254"));
    let ip2 = h.run_d("c2", &["--network", "back", "--ip", "10.50.0.200"], &["sleep", "300"]);
    assert_eq!(ip2, "10.50.0.200");
    assert!(h.ping("c1", &ip2));
    let n = json(&h, &["network", "inspect", "back"]);
    assert_eq!(n["Containers"].as_object().map(|m| m.len()), Some(2), "{n}");
    assert_eq!(n["Options"]["com.docker.network.driver.mtu"], "1400");
    // Errors: one line, nothing changed.
    let links = h.link_names();
    assert!(h.fails(&["network", "create", "back"]).contains("network with name back already exists"));
    assert!(h.fails(&["network", "create", "--subnet", "10.50.0.0/16", "x1"]).contains("overlaps with network back"));
    assert!(h.fails(&["network", "create", "--subnet", "10.60.0.0/24", "--gateway", "10.61.0.1", "x2"]).contains("is not a host address"));
    assert!(h.fails(&["network", "create", "-o", "com.docker.network.driver.mtu=9", "x3"]).contains("MTU"));
    assert!(h.fails(&["network", "create", "-o", "no.such.option=1", "x4"]).contains("unknown option"));
    assert!(h.fails(&["network", "create", "-d", "nosuch", "x5"]).contains("not supported"));
    assert!(h.fails(&["network", "create", "-d", "overlay", "x5"]).contains("an overlay network needs weftd --advertise-addr"));
    assert!(h.fails(&["network", "create", "bridge"]).contains("pre-defined"));
    assert!(h.fails(&["run", "-d", "--network", "back", "--ip", "10.50.0.200", "--", "true"]).contains("10.50.0.200 is already in use"));
    assert!(h.fails(&["network", "rm", "back"]).contains("has active endpoints (c"), "refused while in use");
    assert!(h.fails(&["network", "rm", "bridge"]).contains("cannot be removed"));
    assert_eq!(h.link_names(), links, "refused commands changed links");
    // rm and prune.
    h.ok(&["rm", "-f", "c1", "c2"]);
    h.ok(&["network", "rm", "back"]);
    eventually("mybr0 deleted", || !h.ip(&["-o", "link"]).contains("mybr0"));
    // host_binding_ipv4: the network's default address for -p.
    h.ok(&["network", "create", "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1", "local"]);
    h.web("pb", &["--network", "local", "-p", "8099:80", "-p", "0.0.0.0:8098:80"], "bound-local");
    assert_eq!(h.ok(&["port", "pb", "80"]), "127.0.0.1:8099\n0.0.0.0:8098");
    assert_eq!(h.host_fetch("127.0.0.1:8099"), "bound-local", "the default address answers on the host");
    let outside = |addr: &str| String::from_utf8_lossy(&h.in_outside(&format!("timeout 5 busybox wget -q -O- http://{addr}/")).stdout).trim().to_string();
    assert_eq!(outside("198.51.100.1:8098"), "bound-local", "an explicit 0.0.0.0 answers another host");
    assert_eq!(outside("198.51.100.1:8099"), "", "the network's default address, 127.0.0.1, does not");
    h.ok(&["rm", "-f", "pb"]);
    h.ok(&["network", "create", "unused"]);
    let bridges: Vec<String> = ["front", "local", "unused"].iter().map(|n| format!("br-{}", &h.ok(&["network", "inspect", "-f", "{{.Id}}", n])[..12])).collect();
    assert!(bridges.iter().all(|b| h.link_names().contains(b)), "{bridges:?}");
    let pruned = h.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("unused") && pruned.contains("front") && pruned.contains("local"), "{pruned}");
    assert_eq!(h.ok(&["network", "ls"]).lines().count(), 2, "header and bridge left");
    eventually("the pruned networks' bridges are deleted", || h.link_names().iter().all(|l| !bridges.contains(l)));
    assert!(h.link_names().contains(&"weft0".to_string()), "the default bridge stays");
    h.finish();
}

#[test]
fn networks_are_isolated_and_multi_network_containers_reach_both() {
    let mut h = Host::new("iso");
    h.start(&[]);
    h.ok(&["network", "create", "n1"]);
    h.ok(&["network", "create", "n2"]);
    let a = h.run_d("a1", &["--network", "n1"], &["sleep", "300"]);
    let b = h.web("b1", &["--network", "n2"], "hello-b1");
    h.run_d("d1", &[], &["sleep", "300"]);
    h.run_d("a2", &["--network", "n1"], &["sleep", "300"]);
    // Separate networks cannot reach each other (nor the default bridge); the same probes
    // succeed within a network and from a container on both.
    assert!(h.ping("a2", &a), "n1 -> n1");
    assert!(!h.ping("a1", &b), "n1 -> n2 must be dropped");
    assert!(!h.ping("b1", &a), "n2 -> n1 must be dropped");
    assert!(!h.ping("d1", &b), "bridge -> n2 must be dropped");
    assert!(!h.tcp_open("a1", &b, 80), "n1 -> n2 web must be dropped");
    // A container on both networks reaches both; eth0 is the first network given, eth1 the
    // second, whichever the order.
    h.run_d("both", &["--network", "n1", "--network", "n2"], &["sleep", "300"]);
    h.run_d("rev", &["--network", "n2", "--network", "n1"], &["sleep", "300"]);
    for (name, first, second) in [("both", "n1", "n2"), ("rev", "n2", "n1")] {
        for (eth, net) in [("eth0", first), ("eth1", second)] {
            let want = h.ok(&["inspect", "-f", &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"), name]);
            let addr = h.exec_ok(name, &["ip", "-4", "addr", "show", eth]);
            assert!(addr.contains(&format!("inet {want}/")), "{name} {eth} should be on {net} ({want}): {addr}");
        }
        let route = h.exec_ok(name, &["ip", "route"]);
        assert_eq!(route.lines().filter(|l| l.starts_with("default")).collect::<Vec<_>>().len(), 1, "{route}");
        assert!(route.lines().any(|l| l.starts_with("default") && l.contains("dev eth0")), "one default route, via eth0: {route}");
    }
    assert!(h.ping("both", &a) && h.ping("both", &b));
    assert!(h.tcp_open("both", &b, 80), "the web server answers a container of its network");
    // Live connect and disconnect.
    h.ok(&["network", "connect", "--ip", "172.19.0.77", "n2", "a1"]);
    let eth1 = h.exec_ok("a1", &["ip", "-4", "addr", "show", "eth1"]);
    assert!(eth1.contains("172.19.0.77/16"), "{eth1}");
    assert_eq!(h.get("a1", &b), "hello-b1");
    let nets = h.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "a1"]);
    assert!(nets.contains("\"n1\"") && nets.contains("\"n2\""), "{nets}");
    assert!(h.fails(&["network", "connect", "n2", "a1"]).contains("already connected"));
    h.ok(&["network", "disconnect", "n2", "a1"]);
    let links = h.exec_ok("a1", &["ip", "-o", "link"]);
    assert!(links.contains("eth0") && !links.contains("eth1"), "eth1 removed: {links}");
    assert!(!h.ping("a1", &b));
    assert!(h.fails(&["network", "disconnect", "n2", "a1"]).contains("is not connected"));
    // The address comes back once the old veth is gone: another container takes it, and it is
    // that container that answers there.
    assert!(!h.ping("b1", "172.19.0.77"), "nobody has 172.19.0.77 now");
    eventually("address released", || h.weft(&["network", "connect", "--ip", "172.19.0.77", "n2", "d1"]).status.success());
    assert!(h.exec_ok("d1", &["ip", "-4", "addr", "show", "eth1"]).contains("172.19.0.77/16"));
    assert!(h.ping("b1", "172.19.0.77"), "d1 answers at the released address");
    h.finish();
}

#[test]
fn internal_network_has_no_way_out() {
    let mut h = Host::new("int");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    h.ok(&["network", "create", "--internal", "vault"]);
    // v1 may change its own routes (NET_ADMIN): only the firewall stands between it and the outside.
    let a = h.run_d("v1", &["--network", "vault", "--cap-add", "NET_ADMIN"], &["sleep", "300"]);
    h.run_d("v2", &["--network", "vault"], &["sleep", "300"]);
    assert!(h.ping("v2", &a), "containers on an internal network reach each other");
    let route = h.exec_ok("v1", &["ip", "route"]);
    assert!(!route.contains("default"), "no default route: {route}");
    let n = json(&h, &["network", "inspect", "vault"]);
    assert_eq!(n["Internal"], true);
    let id = n["Id"].as_str().expect("id").to_string();
    let br = format!("br-{}", &id[..12]);
    // Give traffic every way but the firewall: a default route in the container, a route back
    // to the internal subnet on the outside host.
    let gw = n["IPAM"]["Config"][0]["Gateway"].as_str().expect("gateway").to_string();
    let subnet = n["IPAM"]["Config"][0]["Subnet"].as_str().expect("subnet").to_string();
    h.exec_ok("v1", &["ip", "route", "add", "default", "via", &gw]);
    h.outside_ok(&format!("ip route add {subnet} via 198.51.100.1"));
    let inbound = || match h.in_outside(&format!("busybox ping -c1 -W2 {a}")).status.code() {
        Some(0) => true,
        Some(1) => false,
        c => panic!("ping from outside: {c:?}"),
    };
    assert!(!h.ping("v1", "198.51.100.2"), "out of an internal bridge: dropped");
    assert!(!inbound(), "into an internal bridge: dropped");
    // Controls: without `oifname @internal drop` for this bridge, the same ping comes in (its
    // reply is established traffic); without the bridge's own chain, the ping goes out.
    h.sh_ok(&format!("nft delete element inet weft internal '{{ \"{br}\" }}'"));
    assert!(inbound(), "in once the internal rule is gone");
    assert!(!h.ping("v1", "198.51.100.2"), "out is the bridge chain's to drop");
    h.sh_ok(&format!("nft delete element inet weft from_bridge '{{ \"{br}\" }}'"));
    assert!(h.ping("v1", "198.51.100.2"), "out once the bridge's chain is gone");
    // Put the rules back: both ways are closed again.
    h.sh_ok(&format!("nft add element inet weft internal '{{ \"{br}\" }}'; nft add element inet weft from_bridge '{{ \"{br}\" : jump from-{br} }}'"));
    assert!(!h.ping("v1", "198.51.100.2") && !inbound(), "closed again");
    h.finish();
}

#[test]
fn pool_exhaustion_says_how_to_add_one() {
    let mut h = Host::new("pool");
    h.start(&["--default-address-pool", "base=10.77.0.0/23,size=24"]);
    assert_eq!(h.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "bridge"]), r#"[{"Gateway":"10.77.0.1","Subnet":"10.77.0.0/16"}]"#.replace("/16", "/24"));
    h.ok(&["network", "create", "p1"]);
    let err = h.fails(&["network", "create", "p2"]);
    assert!(err.contains("--default-address-pool base=CIDR,size=N"), "{err}");
    assert!(text(&h.weft(&["network", "ls"])).contains("p1"));
    h.finish();
}

#[test]
fn dual_stack_network_and_ping_by_name_over_both_families() {
    let mut h = Host::new("ds");
    // Names that are not local go nowhere outside the test's namespaces.
    h.start(&["--dns", "127.0.0.1"]);
    h.ok(&["network", "create", "--ipv6", "--subnet", "10.60.0.0/24", "--subnet", "fd00:60::/64", "ds"]);
    let n = json(&h, &["network", "inspect", "ds"]);
    assert_eq!(n["EnableIPv6"], true);
    assert_eq!(n["IPAM"]["Config"][1]["Subnet"], "fd00:60::/64", "{n}");
    assert_eq!(n["IPAM"]["Config"][1]["Gateway"], "fd00:60::1");
    h.run_d("a6", &["--network", "ds", "--ip6", "fd00:60::a"], &["sleep", "300"]);
    h.run_d("b6", &["--network", "ds"], &["sleep", "300"]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.ds.GlobalIPv6Address}}", "a6"]), "fd00:60::a");
    let b6_addr = h.exec_ok("b6", &["ip", "-6", "addr", "show", "eth0"]);
    assert!(b6_addr.contains("fd00:60::2/64"), "{b6_addr}");
    let route6 = h.exec_ok("b6", &["ip", "-6", "route"]);
    assert!(route6.contains("default via fd00:60::1"), "{route6}");
    // By name, both families, through the embedded DNS (A and AAAA).
    assert!(h.ping("b6", "-6 a6"), "ping -6 by name");
    assert!(h.ping("b6", "-4 a6"), "ping -4 by name");
    assert!(h.ping("b6", "-6 fd00:60::1"), "the IPv6 gateway");
    // --ipv6 without a subnet: a unique-local /64 of its own.
    h.ok(&["network", "create", "--ipv6", "auto6"]);
    let a = json(&h, &["network", "inspect", "auto6"]);
    let s6 = a["IPAM"]["Config"][1]["Subnet"].as_str().expect("a v6 subnet").to_string();
    assert!(s6.starts_with("fd") && s6.ends_with("::/64"), "{s6}");
    assert!(h.fails(&["run", "-d", "--ip6", "fd00:99::5", "--", "true"]).contains("has no IPv6 subnet"));
    assert!(h.fails(&["network", "create", "--subnet", "fd00:61::/64", "nov6"]).contains("needs --ipv6"));
    h.finish();
}

#[test]
fn connect_right_after_disconnect_never_collides() {
    let mut h = Host::new("recon");
    h.start(&[]);
    h.ok(&["network", "create", "n2"]);
    h.run_d("c1", &[], &["sleep", "300"]);
    let peer = h.web("peer", &["--network", "n2"], "peer-web");
    // 100 alternating connect/disconnect calls, each right after the other.
    for i in 0..50 {
        let o = h.weft(&["network", "connect", "n2", "c1"]);
        assert!(o.status.success(), "connect {i}: {}", text(&o));
        let o = h.weft(&["network", "disconnect", "n2", "c1"]);
        assert!(o.status.success(), "disconnect {i}: {}", text(&o));
    }
    h.ok(&["network", "connect", "n2", "c1"]);
    assert_eq!(h.get("c1", &peer), "peer-web", "the last connect works");
    h.ok(&["network", "disconnect", "n2", "c1"]);
    // 50 concurrent calls: each succeeds or is refused for a correct reason, never EEXIST.
    let outcomes: Vec<std::process::Output> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let h = &h;
                s.spawn(move || {
                    let verb = if i % 2 == 0 { "connect" } else { "disconnect" };
                    h.cli().args(["network", verb, "n2", "c1"]).output().expect("weft")
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("call")).collect()
    });
    for o in &outcomes {
        let t = text(o);
        assert!(o.status.success() || t.contains("is already connected") || t.contains("is not connected"), "{t}");
    }
    // Whatever the last word was, the container and its record agree.
    let connected = h.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "c1"]).contains("\"n2\"");
    let links = h.exec_ok("c1", &["ip", "-o", "link"]);
    assert_eq!(links.contains("eth1"), connected, "{links}");
    eventually("retired interfaces deleted", || !h.exec_ok("c1", &["ip", "-o", "link"]).contains("gone"));
    h.finish();
}

#[test]
fn proxy_arp_bridges_carry_no_broadcast_and_the_option_restores_it() {
    let mut h = Host::new("parp");
    h.start(&[]);
    let nt = weft_itest::nettool();
    for (net, opts, flooded) in [("flood", vec!["-o", "com.weft.bridge.proxy_arp=false"], true), ("quiet", vec![], false)] {
        let mut create = vec!["network", "create"];
        create.extend(opts.iter().copied());
        create.push(net);
        h.ok(&create);
        let rx = format!("rx-{net}");
        h.ok(&["run", "-d", "--name", &rx, "--network", net, "--", "python3", &nt, "udp-recv", "7777", "30"]);
        h.ok(&["run", "-d", "--name", &format!("tx-{net}"), "--network", net, "--", "sleep", "300"]);
        eventually("the receiver is bound", || h.ok(&["logs", &rx]).contains("bound 7777"));
        let rx_ip = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &rx]);
        let subnet = json(&h, &["network", "inspect", net])["IPAM"]["Config"][0]["Subnet"].as_str().expect("subnet").to_string();
        let bcast = {
            let (base, len) = subnet.split_once('/').expect("cidr");
            let base: u32 = base.parse::<std::net::Ipv4Addr>().expect("ip").into();
            std::net::Ipv4Addr::from(base | (u32::MAX >> len.parse::<u32>().expect("len"))).to_string()
        };
        // Unicast works either way (the control).
        assert!(h.ping(&format!("tx-{net}"), &rx_ip), "unicast on {net}");
        h.exec_ok(&format!("tx-{net}"), &["python3", &nt, "udp-bcast", &bcast, "7777", "10", "0.1"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let got = h.ok(&["logs", &rx]).contains("bcast");
        assert_eq!(got, flooded, "broadcast on {net} (proxy_arp={})", !flooded);
    }
    h.finish();
}
