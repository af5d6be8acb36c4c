//! Issue 2: the engine, the default bridge, network modes, NAT, daemon options, restart and crash
//! recovery, errors. Every check is real traffic or a real kernel object, in throwaway namespaces.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_itest::{eventually, first_inet, inspect, text, Host};

#[test]
fn bridge_containers_ping_and_talk_tcp() {
    let mut h = Host::new("br");
    h.start(&[]);
    let ip1 = h.web("web1", &[], "hello-from-web1");
    let ip2 = h.run_d("cli1", &[], &["sleep", "300"]);
    assert!(ip1.starts_with("172.17.") && ip2.starts_with("172.17.") && ip1 != ip2, "{ip1} {ip2}");
    assert!(h.ping("cli1", &ip1), "cli1 -> web1 ping");
    assert_eq!(h.get("cli1", &ip1), "hello-from-web1");
    // The Docker-shaped view matches the kernel: eth0 in the container has the inspected address,
    // MAC and gateway; the host end is a veth on weft0.
    let j = inspect(&h, "web1");
    let mac = j["NetworkSettings"]["MacAddress"].as_str().expect("mac").to_string();
    let eth0 = h.exec_ok("web1", &["ip", "addr", "show", "eth0"]);
    assert!(eth0.contains(&format!("{ip1}/16")) && eth0.contains(&mac), "{eth0}");
    // The MAC is derived from the address (02:42 + the four octets, as Docker does), and it is
    // what answers ARP: cli1 learned it by pinging.
    let octets: Vec<u8> = ip1.split('.').map(|o| o.parse().expect("octet")).collect();
    let derived = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", octets[0], octets[1], octets[2], octets[3]);
    assert_eq!(mac, derived);
    let neigh = h.exec_ok("cli1", &["ip", "neigh", "show", &ip1]);
    assert!(neigh.contains(&derived), "cli1's ARP entry for {ip1}: {neigh}");
    assert_eq!(j["NetworkSettings"]["Gateway"], "172.17.0.1");
    assert_eq!(j["HostConfig"]["NetworkMode"], "bridge");
    let pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "web1"]);
    assert!(pid.parse::<u32>().expect("pid") > 1);
    let ports = h.ip(&["-o", "link", "show", "master", "weft0"]);
    assert_eq!(ports.lines().filter(|l| l.contains(": veth")).count(), 2, "{ports}");
    // IPv4-only network: no IPv6 address on either end (no DAD/RS/MLD floods on the bridge).
    assert!(!h.exec_ok("web1", &["ip", "-6", "addr", "show", "eth0"]).contains("inet6"));
    assert!(!h.ip(&["-6", "addr", "show", "master", "weft0"]).contains("inet6"));
    assert!(h.exec_ok("web1", &["ip", "-6", "addr", "show", "lo"]).contains("::1"), "lo keeps ::1");
    // /etc/hosts and /etc/hostname are the container's own.
    let hosts = h.exec_ok("web1", &["cat", "/etc/hosts"]);
    let hostname = h.exec_ok("web1", &["hostname"]).trim().to_string();
    assert!(hosts.contains(&format!("{ip1}\t{hostname}")), "{hosts}");
    // Removing a container releases its veth (deleted in the background, within milliseconds).
    h.ok(&["rm", "-f", "web1"]);
    eventually("web1's veth is deleted", || h.ip(&["-o", "link", "show", "master", "weft0"]).lines().count() == 1);
    h.finish();
}

/// The test host's IPv4 forwarding switch.
fn ip_forward(h: &Host) -> String {
    h.sh_ok("cat /proc/sys/net/ipv4/ip_forward").trim().to_string()
}

#[test]
fn gateway_and_outbound_nat() {
    let mut h = Host::new("nat");
    h.outside("198.51.100.1", "198.51.100.2");
    // weftd turns forwarding on (--ip-forward defaults to true).
    h.sh_ok("echo 0 > /proc/sys/net/ipv4/ip_forward");
    h.start(&[]);
    assert_eq!(ip_forward(&h), "1");
    h.run_d("c1", &[], &["sleep", "300"]);
    assert!(h.ping("c1", "172.17.0.1"), "container -> gateway");
    assert!(h.ping("c1", "198.51.100.2"), "container -> outside via NAT");
    // The outside host sees the host's address as the source, not the container's.
    h.ok(&["run", "-d", "--name", "u1", "--", "sleep", "300"]);
    assert_eq!(h.udp_to_outside("u1", "198.51.100.2", 7000).as_deref(), Some("198.51.100.1"), "masqueraded");
    h.finish();
}

#[test]
fn ip_masq_false_sends_unmasqueraded() {
    let mut h = Host::new("nomasq");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&["--ip-masq=false"]);
    h.run_d("c1", &[], &["sleep", "300"]);
    let u1 = h.ok(&["run", "-d", "--name", "u1", "--", "sleep", "300"]);
    let u1_ip = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &u1]);
    assert!(h.ping("c1", "172.17.0.1"), "gateway still reachable");
    // Packets leave with the container's own address...
    assert_eq!(h.udp_to_outside("u1", "198.51.100.2", 7000), Some(u1_ip), "not masqueraded");
    // ...so the outside host cannot answer until it has a route back to the bridge subnet.
    assert!(!h.ping("c1", "198.51.100.2"), "no NAT and no route back: no reply");
    h.outside_ok("ip route add 172.17.0.0/16 via 198.51.100.1");
    assert!(h.ping("c1", "198.51.100.2"), "with a route back the same ping is answered");
    h.finish();
}

#[test]
fn ip_forward_false_leaves_forwarding_off() {
    let mut h = Host::new("nofwd");
    h.outside("198.51.100.1", "198.51.100.2");
    h.sh_ok("echo 0 > /proc/sys/net/ipv4/ip_forward");
    h.start(&["--ip-forward=false"]);
    assert_eq!(ip_forward(&h), "0", "weftd left the switch alone");
    h.run_d("c1", &[], &["sleep", "300"]);
    assert!(h.ping("c1", "172.17.0.1"), "the gateway is the host itself: no forwarding needed");
    assert!(!h.ping("c1", "198.51.100.2"), "nothing is forwarded");
    h.sh_ok("echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert!(h.ping("c1", "198.51.100.2"), "forwarding turned on by hand: the same ping goes through");
    h.finish();
}

#[test]
fn default_bridge_takes_the_next_pool_when_172_17_is_in_use() {
    let mut h = Host::new("pool17");
    // The host already has 172.17.0.0/24 on its uplink.
    h.outside("172.17.0.1", "172.17.0.2");
    h.start(&[]);
    let br = h.ip(&["-4", "addr", "show", "weft0"]);
    assert_eq!(first_inet(&br).as_deref(), Some("172.18.0.1/16"), "{br}");
    let ip = h.run_d("c1", &[], &["sleep", "300"]);
    assert!(ip.starts_with("172.18."), "{ip}");
    // The host's own 172.17 neighbour stays reachable, through NAT, from the container.
    assert!(h.ping("c1", "172.17.0.2"), "the uplink's subnet was left alone");
    h.finish();
}

#[test]
fn daemon_dns_serves_the_default_bridge_and_user_networks() {
    let mut h = Host::new("ddns");
    let out = h.outside("198.51.100.1", "198.51.100.2");
    let nt = weft_itest::nettool();
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &out, "python3", &nt, "dns-server", "198.51.100.2", "db.example.test", "203.0.113.7", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dns server");
    h.start(&["--dns", "198.51.100.2"]);
    // The default bridge: the container's resolv.conf names the daemon's server, and the C
    // library's resolver gets an answer from it.
    h.run_d("c1", &[], &["sleep", "300"]);
    let resolv = h.exec_ok("c1", &["cat", "/etc/resolv.conf"]);
    assert_eq!(resolv.lines().filter(|l| l.starts_with("nameserver")).collect::<Vec<_>>(), ["nameserver 198.51.100.2"], "{resolv}");
    eventually("db.example.test resolves on the default bridge (once the server is up)", || text(&h.exec("c1", &["nslookup", "db.example.test"])).contains("203.0.113.7"));
    // A user network: the embedded DNS forwards to the daemon's server.
    h.ok(&["network", "create", "front"]);
    h.run_d("c2", &["--network", "front"], &["sleep", "300"]);
    assert!(h.exec_ok("c2", &["cat", "/etc/resolv.conf"]).starts_with("nameserver 127.0.0.11"));
    assert!(h.exec_ok("c2", &["nslookup", "db.example.test"]).contains("203.0.113.7"));
    server.kill().expect("stop the server");
    let log = String::from_utf8_lossy(&server.wait_with_output().expect("server output").stdout).to_string();
    assert!(log.contains("served db.example.test"), "{log}");
    h.finish();
}

#[test]
fn iptables_false_installs_no_table() {
    let mut h = Host::new("noipt");
    h.start(&["--iptables=false"]);
    let ip = h.run_d("c1", &[], &["sleep", "300"]);
    let tables = h.sh("nft list tables");
    assert!(tables.status.success() && !text(&tables).contains("weft"), "{}", text(&tables));
    assert!(h.sh(&format!("busybox ping -c1 -W2 {ip}")).status.success(), "host -> container still works");
    h.finish();
}

#[test]
fn network_modes_none_host_container() {
    let mut h = Host::new("modes");
    h.start(&[]);
    let web_ip = h.web("web1", &[], "shared-netns");
    // none: only lo, up; no route anywhere.
    h.run_d("none1", &["--net", "none"], &["sleep", "300"]);
    let links = h.exec_ok("none1", &["ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    assert!(!h.ping("none1", "172.17.0.1"), "no way out of --net none");
    assert!(h.ping("web1", "172.17.0.1"), "the same ping from a bridge container");
    assert_eq!(h.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "none1"]), "none");
    // host: the host's interfaces, including weft0.
    h.run_d("host1", &["--net", "host"], &["sleep", "300"]);
    let links = h.exec_ok("host1", &["ip", "-o", "link"]);
    assert!(links.contains("weft0"), "{links}");
    assert!(h.ping("host1", &web_ip), "host mode reaches the bridge");
    // container:NAME: same eth0 and address; the web server answers on the shared loopback.
    h.run_d("side1", &["--net", "container:web1"], &["sleep", "300"]);
    let eth0 = h.exec_ok("side1", &["ip", "addr", "show", "eth0"]);
    assert!(eth0.contains(&format!("{web_ip}/16")), "{eth0}");
    assert_eq!(h.get("side1", "127.0.0.1"), "shared-netns");
    // Joining a container that is not running fails clearly and changes nothing.
    h.ok(&["stop", "-t", "1", "none1"]);
    let before = h.ok(&["ps", "-aq"]);
    let err = h.fails(&["run", "-d", "--net", "container:none1", "--", "true"]);
    assert!(err.contains("container none1 is not running"), "{err}");
    assert_eq!(h.ok(&["ps", "-aq"]), before);
    h.finish();
}

#[test]
fn bip_fixed_cidr_and_mtu() {
    let mut h = Host::new("bip");
    h.start(&["--bip", "192.168.77.1/24", "--fixed-cidr", "192.168.77.128/25", "--mtu", "1400"]);
    let ip = h.run_d("c1", &[], &["sleep", "300"]);
    let last: u8 = ip.rsplit('.').next().and_then(|o| o.parse().ok()).expect("ip");
    assert!(ip.starts_with("192.168.77.") && last >= 128, "{ip}");
    let eth0 = h.exec_ok("c1", &["ip", "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1400"), "{eth0}");
    let br = h.ip(&["-4", "addr", "show", "weft0"]);
    assert_eq!(first_inet(&br).as_deref(), Some("192.168.77.1/24"), "{br}");
    assert!(h.ping("c1", "192.168.77.1"));
    h.finish();
}

#[test]
fn user_bridge_with_b() {
    let mut h = Host::new("userbr");
    h.ip(&["link", "add", "br0", "type", "bridge"]);
    h.ip(&["addr", "add", "10.211.55.10/24", "dev", "br0"]);
    h.ip(&["link", "set", "br0", "up"]);
    let err = h.start_fails(&["-b", "br0", "--bip", "10.211.55.1/24"]);
    assert!(err.contains("--bip cannot be used with -b"), "{err}");
    let err = h.start_fails(&["-b", "nosuchbr"]);
    assert!(err.contains("bridge nosuchbr not found"), "{err}");
    h.start(&["-b", "br0", "--fixed-cidr", "10.211.55.64/26"]);
    let ip = h.run_d("c1", &[], &["sleep", "300"]);
    let last: u8 = ip.rsplit('.').next().and_then(|o| o.parse().ok()).expect("ip");
    assert!(ip.starts_with("10.211.55.") && (64..128).contains(&last), "{ip}");
    assert_eq!(h.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "c1"]), "10.211.55.10");
    assert!(h.ping("c1", "10.211.55.10"));
    assert!(!h.ip(&["link"]).contains("weft0"), "no weft0 with -b");
    h.ok(&["rm", "-f", "c1"]);
    h.stop_daemon();
    // weft never readdresses or deletes the user's bridge.
    assert_eq!(first_inet(&h.ip(&["-4", "addr", "show", "br0"])).as_deref(), Some("10.211.55.10/24"));
    h.finish();
}

#[test]
fn restart_keeps_running_containers_reachable() {
    let mut h = Host::new("restart");
    h.start(&[]);
    let ip = h.web("web1", &[], "still-here");
    h.stop_daemon();
    assert!(h.sh(&format!("busybox ping -c1 -W2 {ip}")).status.success(), "reachable with the daemon down");
    h.start(&[]);
    h.run_d("cli1", &[], &["sleep", "300"]);
    assert_eq!(h.get("cli1", &ip), "still-here");
    h.kill9_daemon();
    h.start(&[]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "web1"]), "true");
    assert_eq!(h.get("cli1", &ip), "still-here");
    // The adopted container's exit is still noticed.
    h.ok(&["stop", "-t", "1", "web1"]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "web1"]), "false");
    h.finish();
}

/// One CLI call of the burst: when it ran and how it ended.
struct Op {
    verb: &'static str,
    name: String,
    start: Instant,
    end: Instant,
    ok: bool,
    out: String,
}

#[test]
fn kill9_during_a_burst_leaks_nothing() {
    let mut h = Host::new("crash");
    h.start(&[]);
    let survivor = h.run_d("keep1", &[], &["sleep", "300"]);
    let rootfs = h.rootfs();
    // Two threads of run/rm while the daemon is killed, at a moment when a command is in flight.
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let in_flight: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None, None]));
    let bursts: Vec<_> = (0..2)
        .map(|t| {
            let (sock, rootfs) = (h.sock.clone(), rootfs.clone());
            let (killed, done, in_flight) = (killed.clone(), done.clone(), in_flight.clone());
            std::thread::spawn(move || {
                let mut ops = Vec::new();
                let call = |verb: &'static str, name: &str, args: &[&str], ops: &mut Vec<Op>| {
                    let start = Instant::now();
                    in_flight.lock().expect("lock")[t] = Some(start);
                    let o = weft_itest::cli(&sock).args(args).output().expect("weft");
                    in_flight.lock().expect("lock")[t] = None;
                    ops.push(Op { verb, name: name.to_string(), start, end: Instant::now(), ok: o.status.success(), out: text(&o) });
                    done.fetch_add(1, Ordering::SeqCst);
                };
                let mut rounds_after = 0;
                for i in 0..200 {
                    // Two more rounds once the daemon is known dead, then stop.
                    if killed.load(Ordering::SeqCst) {
                        rounds_after += 1;
                        if rounds_after > 2 {
                            break;
                        }
                    }
                    let name = format!("burst{t}x{i}");
                    call("run", &name, &["run", "-d", "--name", &name, "--rootfs", &rootfs, "--", "sleep", "300"], &mut ops);
                    if i % 2 == 0 {
                        call("rm", &name, &["rm", "-f", &name], &mut ops);
                    }
                }
                ops
            })
        })
        .collect();
    // Kill once a few commands have completed and one has been in flight for 2 ms.
    eventually("the burst is under way", || done.load(Ordering::SeqCst) >= 6);
    let t0 = Instant::now();
    // `kill_at`: just before SIGKILL; `dead_at`: once the daemon is reaped.
    let (kill_at, dead_at) = loop {
        let busy = in_flight.lock().expect("lock").iter().flatten().any(|s| s.elapsed() >= Duration::from_millis(2));
        if busy {
            let kill_at = Instant::now();
            h.kill9_daemon();
            break (kill_at, Instant::now());
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no command in flight");
        std::thread::yield_now();
    };
    killed.store(true, Ordering::SeqCst);
    let ops: Vec<Op> = bursts.into_iter().flat_map(|b| b.join().expect("burst thread")).collect();
    // Every command that ended before the kill succeeded; every one that started once the daemon
    // was dead was refused for want of a daemon; at least one was in flight when it died.
    let before: Vec<&Op> = ops.iter().filter(|o| o.end < kill_at).collect();
    let after: Vec<&Op> = ops.iter().filter(|o| o.start > dead_at).collect();
    let straddling: Vec<&Op> = ops.iter().filter(|o| o.start < kill_at && o.end > kill_at).collect();
    assert!(before.len() >= 6 && !after.is_empty() && !straddling.is_empty(), "before {} after {} in flight {}", before.len(), after.len(), straddling.len());
    for o in &before {
        assert!(o.ok, "{} {} before the kill failed: {}", o.verb, o.name, o.out);
    }
    for o in &after {
        assert!(!o.ok && o.out.contains("is weftd running?"), "{} {} after the kill: {}", o.verb, o.name, o.out);
    }
    h.start(&[]);
    // What was committed before the kill is still there: every container whose run succeeded
    // and whose rm did not is known and running; every one removed is gone.
    let all = h.ok(&["ps", "-a"]);
    let names: Vec<&str> = all.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    for o in before.iter().filter(|o| o.verb == "run") {
        let removed = before.iter().any(|r| r.verb == "rm" && r.name == o.name);
        assert_eq!(names.contains(&o.name.as_str()), !removed, "{} after the restart:\n{all}", o.name);
    }
    // Every veth on the bridge belongs to a running container, every running container has one,
    // and no two containers share an address.
    let running = h.ok(&["ps", "-q"]);
    let ports = h.ip(&["-o", "link", "show", "master", "weft0"]);
    assert_eq!(ports.lines().count(), running.lines().count(), "veths {ports}\nrunning {running}");
    let mut ips = Vec::new();
    for id in running.lines() {
        ips.push(h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", id]));
    }
    for i in 0..3 {
        ips.push(h.run_d(&format!("after{i}"), &[], &["sleep", "300"]));
    }
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ips.len(), "duplicate address: {ips:?}");
    assert!(ips.contains(&survivor));
    // Namespace mounts only for running containers.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let netns_mounts = mounts.lines().filter(|l| l.contains(&format!("{}/exec/netns/", h.dir.display()))).count();
    assert_eq!(netns_mounts, running.lines().count() + 3);
    assert!(h.ping("after0", &survivor));
    let table = h.sh_ok("nft list table inet weft");
    assert!(table.contains("jump nat-weft0"), "{table}");
    h.finish();
}

#[test]
fn foreground_run_exit_code_output_and_rm() {
    let mut h = Host::new("fg");
    h.start(&[]);
    let rootfs = h.rootfs();
    let o = h.weft(&["run", "--name", "fg1", "--rootfs", &rootfs, "-e", "GREETING=hi", "--", "sh", "-c", "echo $GREETING from $(hostname); exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("hi from "), "{}", text(&o));
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.ExitCode}}", "fg1"]), "3");
    assert!(h.ok(&["logs", "fg1"]).starts_with("hi from"));
    // A command that cannot be started is reported by `run` itself; the container stays, exited.
    let o = h.weft(&["run", "-d", "--name", "nocmd", "--rootfs", &rootfs, "--", "/no/such/cmd"]);
    assert!(!o.status.success() && text(&o).contains("exec /no/such/cmd: No such file or directory"), "{}", text(&o));
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}} {{.State.ExitCode}} {{.NetworkSettings.IPAddress}}", "nocmd"]), "false 127");
    let o = h.weft(&["run", "--rm", "--name", "fg2", "--rootfs", &rootfs, "--", "true"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!h.ok(&["ps", "-a"]).contains("fg2"), "--rm removed it");
    let o = h.weft(&["run", "--rootfs", &rootfs, "--hostname", "box1", "--add-host", "db:10.9.8.7", "--dns", "10.0.0.53", "--dns-search", "corp.example", "--", "sh", "-c", "hostname; cat /etc/hosts /etc/resolv.conf"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.starts_with("box1\n") && out.contains("10.9.8.7\tdb") && out.contains("nameserver 10.0.0.53") && out.contains("search corp.example"), "{out}");
    h.finish();
}

#[test]
fn errors_are_one_line_and_change_nothing() {
    let mut h = Host::new("err");
    h.start(&[]);
    let rootfs = h.rootfs();
    h.run_d("c1", &[], &["sleep", "300"]);
    let before = (h.ok(&["ps", "-aq"]), h.link_names());
    assert!(h.fails(&["inspect", "nosuch"]).contains("no such container: nosuch"));
    assert!(h.fails(&["rm", "nosuch"]).contains("no such container: nosuch"));
    assert!(h.fails(&["stop", "nosuch"]).contains("no such container"));
    assert!(h.fails(&["run", "-d", "--name", "c1", "--rootfs", &rootfs, "--", "true"]).contains("\"/c1\" is already in use"));
    assert!(h.fails(&["run", "-d", "--net", "nosuchnet", "--rootfs", &rootfs, "--", "true"]).contains("no such network: nosuchnet"));
    assert!(h.fails(&["run", "-d", "--rootfs", "/nonexistent/rootfs", "--", "true"]).contains("rootfs /nonexistent/rootfs: No such file or directory"));
    assert!(h.fails(&["run", "-d", "--net", "container:nosuch", "--", "true"]).contains("no such container: nosuch"));
    assert!(h.fails(&["run", "-d", "--name", "bad name", "--", "true"]).contains("invalid container name"));
    assert!(h.fails(&["run", "-d", "--add-host", "nocolon", "--", "true"]).contains("invalid --add-host"));
    assert!(h.fails(&["inspect", "-f", "{{.State.Nope}}", "c1"]).contains("can't evaluate field Nope"));
    assert!(h.fails(&["inspect", "-f", "{{.State.Pid", "c1"]).contains("unclosed action"));
    assert!(h.fails(&["rm", "c1"]).contains("is running: stop it first or use -f"));
    assert!(h.fails(&["network", "inspect", "nosuch"]).contains("no such network: nosuch"));
    assert!(h.fails(&["kill", "-s", "NOPE", "c1"]).contains("invalid signal NOPE"));
    assert_eq!((h.ok(&["ps", "-aq"]), h.link_names()), before, "errors changed state");
    // Daemon side: bad flags and combinations refuse to start.
    assert!(h.start_fails(&["--bip", "300.1.1.1/24"]).contains("invalid value"));
    assert!(h.start_fails(&["--bip", "10.1.0.1/24", "--fixed-cidr", "10.2.0.0/25"]).contains("not inside the bridge subnet"));
    assert!(h.start_fails(&["--mtu", "10"]).contains("invalid --mtu 10"));
    h.stop_daemon();
    let o = h.weft(&["ps"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.contains("is weftd running?") && err.trim().lines().count() == 1, "{err}");
    h.finish();
}

#[test]
fn logs_follow_kill_signal_wait_and_weft_host() {
    use std::io::BufRead;
    let mut h = Host::new("verbs");
    h.start(&[]);
    // logs -f: lines arrive while the container runs, and the stream ends when it exits.
    h.run_d("talker", &[], &["sh", "-c", "echo first; sleep 1; echo second"]);
    let mut follow = h
        .cli()
        .args(["logs", "-f", "talker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut lines = std::io::BufReader::new(follow.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("first"));
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "talker"]), "true", "first arrived while the container ran");
    assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("second"));
    assert!(lines.next().is_none(), "the stream ends with the container");
    assert!(follow.wait().expect("logs -f exit").success());
    // kill -s TERM reaches the command (through weft-init), which handles it its own way.
    h.run_d("trapper", &[], &["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"]);
    eventually("the trap is set", || h.ok(&["logs", "trapper"]).contains("ready"));
    // wait blocks until the exit and prints the code.
    let sock = format!("unix://{}", h.sock);
    let waiter = h
        .cli()
        .args(["wait", "trapper"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "trapper"]), "true", "wait does not stop anything");
    h.ok(&["kill", "-s", "TERM", "trapper"]);
    let waited = waiter.wait_with_output().expect("wait output");
    assert!(waited.status.success());
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "7");
    assert!(h.ok(&["logs", "trapper"]).contains("got-term"));
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.ExitCode}}", "trapper"]), "7");
    // WEFT_HOST picks the daemon when -H is not given.
    let ps = |host: &str| std::process::Command::new(weft_itest::bin_dir().join("weft")).env("WEFT_HOST", host).args(["ps", "-a"]).output().expect("weft ps");
    let o = ps(&sock);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("trapper"), "{}", text(&o));
    let o = ps(&format!("unix://{}/nosuch.sock", h.dir.display()));
    assert!(!o.status.success() && text(&o).contains("nosuch.sock"), "{}", text(&o));
    h.finish();
}

#[test]
fn sandbox_key_recipe_wires_a_none_container_by_hand() {
    let mut h = Host::new("sbkey");
    h.start(&[]);
    h.run_d("box", &["--net", "none"], &["sleep", "300"]);
    let key = h.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "box"]);
    assert!(key.starts_with(&format!("{}/exec/netns/", h.dir.display())), "{key}");
    // The seeds' recipe: a veth pair, one end moved into the container's namespace, addressed
    // from outside with nsenter, and traffic both ways.
    h.ip(&["link", "add", "hand0", "type", "veth", "peer", "name", "hand1"]);
    h.ip(&["link", "set", "hand1", "netns", &key]);
    h.ip(&["addr", "add", "10.99.0.1/24", "dev", "hand0"]);
    h.ip(&["link", "set", "hand0", "up"]);
    for cmd in ["ip link set hand1 name eth0", "ip addr add 10.99.0.2/24 dev eth0", "ip link set eth0 up"] {
        h.sh_ok(&format!("nsenter --net={key} {cmd}"));
    }
    assert!(h.exec_ok("box", &["ip", "addr", "show", "eth0"]).contains("10.99.0.2/24"));
    assert!(h.ping("box", "10.99.0.1"), "container -> host end");
    h.sh_ok("busybox ping -c1 -W2 10.99.0.2");
    h.ok(&["rm", "-f", "box"]);
    // The host end went with the container's namespace.
    eventually("hand0 gone with the namespace", || !h.link_names().contains(&"hand0".to_string()));
    h.finish();
}

#[test]
fn interfaces_of_kinds_weft_does_not_use_do_not_stop_it() {
    let mut h = Host::new("kinds");
    // Kinds this kernel has that weft never makes (dummy and vcan are not loadable here).
    h.ip(&["link", "add", "ifb7", "type", "ifb"]);
    h.ip(&["tuntap", "add", "mode", "tun", "tun7"]);
    h.ip(&["tuntap", "add", "mode", "tap", "tap7"]);
    h.ip(&["link", "add", "vx7", "type", "vxlan", "id", "7", "dstport", "4789"]);
    h.ip(&["link", "add", "other7", "type", "bridge"]);
    h.ip(&["addr", "add", "10.77.7.1/24", "dev", "other7"]);
    h.ip(&["link", "set", "other7", "up"]);
    h.start(&[]);
    let ip = h.run_d("c1", &[], &["sleep", "300"]);
    h.ok(&["network", "create", "n1"]);
    let ip2 = h.run_d("c2", &[], &["sleep", "300"]);
    assert!(h.ping("c1", &ip2) && h.ping("c2", &ip));
    assert!(h.fails(&["network", "create", "--subnet", "10.77.7.0/24", "clash"]).contains("overlaps with the host's"), "the other bridge's subnet is seen");
    h.finish();
}
