//! Issue 2: the engine, the default bridge, network modes, NAT, daemon options, restart and crash
//! recovery, errors. Every check is real traffic or a real kernel object, in throwaway namespaces.

use weft_itest::{eventually, first_inet, inspect, text, Host};

#[test]
fn bridge_containers_ping_and_talk_tcp() {
    let mut h = Host::new("br");
    h.start(&[]);
    let ip1 = h.web("web1", &[], "hello-from-web1");
    let ip2 = h.run_d("cli1", &[], &["sleep", "300"]);
    assert!(ip1.starts_with("172.17.") && ip2.starts_with("172.17.") && ip1 != ip2, "{ip1} {ip2}");
    assert!(h.ping("cli1", &ip1), "cli1 -> web1 ping");
    let o = h.fetch("cli1", &ip1);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hello-from-web1", "{}", text(&o));
    // The Docker-shaped view matches the kernel: eth0 in the container has the inspected address,
    // MAC and gateway; the host end is a veth on weft0.
    let j = inspect(&h, "web1");
    let mac = j["NetworkSettings"]["MacAddress"].as_str().expect("mac").to_string();
    let eth0 = String::from_utf8_lossy(&h.exec("web1", &["ip", "addr", "show", "eth0"]).stdout).to_string();
    assert!(eth0.contains(&format!("{ip1}/16")) && eth0.contains(&mac), "{eth0}");
    assert_eq!(j["NetworkSettings"]["Gateway"], "172.17.0.1");
    assert_eq!(j["HostConfig"]["NetworkMode"], "bridge");
    let pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "web1"]);
    assert!(pid.parse::<u32>().expect("pid") > 1);
    let ports = h.ip(&["-o", "link", "show", "master", "weft0"]);
    assert_eq!(ports.lines().filter(|l| l.contains(": veth")).count(), 2, "{ports}");
    // IPv4-only network: no IPv6 address on either end (no DAD/RS/MLD floods on the bridge).
    assert!(!text(&h.exec("web1", &["ip", "-6", "addr", "show", "eth0"])).contains("inet6"));
    assert!(!h.ip(&["-6", "addr", "show", "master", "weft0"]).contains("inet6"));
    assert!(text(&h.exec("web1", &["ip", "-6", "addr", "show", "lo"])).contains("::1"), "lo keeps ::1");
    // /etc/hosts and /etc/hostname are the container's own.
    let hosts = String::from_utf8_lossy(&h.exec("web1", &["cat", "/etc/hosts"]).stdout).to_string();
    let hostname = String::from_utf8_lossy(&h.exec("web1", &["hostname"]).stdout).trim().to_string();
    assert!(hosts.contains(&format!("{ip1}\t{hostname}")), "{hosts}");
    // Removing a container releases its veth (deleted in the background, within milliseconds).
    h.ok(&["rm", "-f", "web1"]);
    eventually("web1's veth is deleted", || h.ip(&["-o", "link", "show", "master", "weft0"]).lines().count() == 1);
    h.finish();
}

#[test]
fn gateway_and_outbound_nat() {
    let mut h = Host::new("nat");
    let out = h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    h.run_d("c1", &[], &["sleep", "300"]);
    assert!(h.ping("c1", "172.17.0.1"), "container -> gateway");
    assert!(h.ping("c1", "198.51.100.2"), "container -> outside via NAT");
    // The outside host saw the host's address, not the container's.
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &out, "sh", "-c", "ip neigh show dev eth0"])
        .output()
        .expect("ip neigh");
    assert!(String::from_utf8_lossy(&o.stdout).contains("198.51.100.1"), "{}", text(&o));
    h.finish();
}

#[test]
fn ip_masq_false_sends_unmasqueraded() {
    let mut h = Host::new("nomasq");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&["--ip-masq=false"]);
    h.run_d("c1", &[], &["sleep", "300"]);
    assert!(h.ping("c1", "172.17.0.1"), "gateway still reachable");
    assert!(!h.ping("c1", "198.51.100.2"), "no NAT: the outside host has no route back");
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
    let links = String::from_utf8_lossy(&h.exec("none1", &["ip", "-o", "link"]).stdout).to_string();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    assert!(!h.ping("none1", "172.17.0.1"));
    assert_eq!(h.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "none1"]), "none");
    // host: the host's interfaces, including weft0.
    h.run_d("host1", &["--net", "host"], &["sleep", "300"]);
    let links = String::from_utf8_lossy(&h.exec("host1", &["ip", "-o", "link"]).stdout).to_string();
    assert!(links.contains("weft0"), "{links}");
    assert!(h.ping("host1", &web_ip), "host mode reaches the bridge");
    // container:NAME: same eth0 and address; the web server answers on the shared loopback.
    h.run_d("side1", &["--net", "container:web1"], &["sleep", "300"]);
    let eth0 = String::from_utf8_lossy(&h.exec("side1", &["ip", "addr", "show", "eth0"]).stdout).to_string();
    assert!(eth0.contains(&format!("{web_ip}/16")), "{eth0}");
    let o = h.fetch("side1", "127.0.0.1");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "shared-netns", "{}", text(&o));
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
    let eth0 = String::from_utf8_lossy(&h.exec("c1", &["ip", "link", "show", "eth0"]).stdout).to_string();
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
    let o = h.fetch("cli1", &ip);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "still-here", "{}", text(&o));
    h.kill9_daemon();
    h.start(&[]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "web1"]), "true");
    let o = h.fetch("cli1", &ip);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "still-here", "{}", text(&o));
    // The adopted container's exit is still noticed.
    h.ok(&["stop", "-t", "1", "web1"]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "web1"]), "false");
    h.finish();
}

#[test]
fn kill9_during_a_burst_leaks_nothing() {
    let mut h = Host::new("crash");
    h.start(&[]);
    let survivor = h.run_d("keep1", &[], &["sleep", "300"]);
    let rootfs = h.rootfs();
    // A burst of run/rm from a second thread while the daemon is killed.
    let sock = format!("unix://{}", h.sock);
    let bin = weft_itest::bin_dir().join("weft");
    let burst = std::thread::spawn(move || {
        for i in 0..40 {
            let name = format!("burst{i}");
            let _ = std::process::Command::new(&bin).args(["-H", &sock, "run", "-d", "--name", &name, "--rootfs", &rootfs, "--", "sleep", "300"]).output();
            if i % 2 == 0 {
                let _ = std::process::Command::new(&bin).args(["-H", &sock, "rm", "-f", &name]).output();
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(150));
    h.kill9_daemon();
    burst.join().expect("burst thread");
    h.start(&[]);
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
    let table = h.sh("nft list table inet weft");
    assert!(text(&table).contains("jump nat-weft0"), "{}", text(&table));
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
    assert!(h.fails(&["run", "-d", "--rootfs", "/nonexistent/rootfs", "--", "true"]).contains("rootfs /nonexistent/rootfs is not a directory"));
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
