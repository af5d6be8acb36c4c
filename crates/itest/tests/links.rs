//! Issue 4: links on the default bridge (hosts entries, Docker's link environment, and with
//! --icc=false exactly the linked container's exposed ports), and --mac-address.

use weft_itest::Host;

#[test]
fn links_hosts_env_and_icc_false() {
    let mut h = Host::new("link");
    h.start(&["--icc=false"]);
    let web = h.web("web", &["--expose", "80", "-e", "GREETING=hi"], "linked-web");
    // A second server in web, on a port it does not expose.
    h.exec_ok("web", &["httpd", "-p", "81", "-h", "/tmp/web"]);
    h.listening("web", 81);
    h.run_d("cli", &["--link", "web:www"], &["sleep", "300"]);
    h.run_d("other", &[], &["sleep", "300"]);
    let hosts = h.exec_ok("cli", &["cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{web}\twww web")), "{hosts}");
    let env = h.exec_ok("cli", &["env"]);
    for want in [
        "WWW_NAME=/cli/www".to_string(),
        format!("WWW_PORT=tcp://{web}:80"),
        format!("WWW_PORT_80_TCP_ADDR={web}"),
        "WWW_PORT_80_TCP_PORT=80".into(),
        "WWW_PORT_80_TCP_PROTO=tcp".into(),
        "WWW_ENV_GREETING=hi".into(),
    ] {
        assert!(env.contains(&want), "{want} missing:\n{env}");
    }
    // The link's exposed port is open to cli, by its alias; nothing else is, to anyone. The
    // host reaches everything, so what is closed is closed by the firewall, not by web.
    assert_eq!(h.get("cli", "www"), "linked-web");
    assert!(h.tcp_open("cli", &web, 80), "the exposed port, by address");
    assert!(!h.tcp_open("cli", &web, 81), "a port web does not expose");
    assert!(!h.ping("cli", &web), "ICMP is not an exposed port");
    assert!(!h.tcp_open("other", &web, 80), "no link, no way");
    for port in [80, 81] {
        h.sh_ok(&format!("busybox nc -w 2 {web} {port} -e true"));
    }
    h.sh_ok(&format!("busybox ping -c1 -W2 {web}"));
    let cli = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "cli"]);
    let links = h.sh_ok("nft list set inet weft links");
    assert!(links.contains(&format!("{cli} . {web} . tcp . 80")), "{links}");
    // Errors.
    assert!(h.fails(&["run", "-d", "--link", "nosuch:x", "--", "true"]).contains("no such container: nosuch"));
    h.ok(&["network", "create", "front"]);
    assert!(h.fails(&["run", "-d", "--network", "front", "--link", "web", "--", "true"]).contains("default bridge network only"));
    // The rule goes with the linking container.
    h.ok(&["rm", "-f", "cli"]);
    let links = h.sh_ok("nft list set inet weft links");
    assert!(links.contains("set links") && !links.contains(&web), "{links}");
    h.finish();
}

#[test]
fn mac_address() {
    let mut h = Host::new("mac");
    h.start(&[]);
    // A chosen MAC is announced with a gratuitous ARP (a derived one never changes, see
    // docs/architecture.md); a packet socket on the host's bridge sees it.
    let sniffer = std::process::Command::new("ip")
        .args(["netns", "exec", &h.ns, "python3", &weft_itest::nettool(), "arp-sniff", "weft0", "172.17.0.2", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sniffer");
    std::thread::sleep(std::time::Duration::from_millis(300));
    h.run_d("m1", &["--mac-address", "02:42:0a:0b:0c:0d"], &["sleep", "300"]);
    let seen = sniffer.wait_with_output().expect("sniffer output");
    assert!(String::from_utf8_lossy(&seen.stdout).contains("garp 172.17.0.2 from 02:42:0a:0b:0c:0d"), "{seen:?}");
    let eth0 = h.exec_ok("m1", &["ip", "link", "show", "eth0"]);
    assert!(eth0.contains("02:42:0a:0b:0c:0d"), "{eth0}");
    assert_eq!(h.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "m1"]), "02:42:0a:0b:0c:0d");
    assert!(h.ping("m1", "172.17.0.1"));
    assert!(h.fails(&["run", "-d", "--mac-address", "01:00:5e:00:00:01", "--", "true"]).contains("invalid MAC address"));
    h.finish();
}
