//! weftd's configuration file (issue 22): dockerd's `daemon.json` keys take effect (shown with
//! traffic), flags on the command line win, and an unknown key or a bad value stops the start
//! with one line naming the key.

use weft_itest::Host;

#[test]
fn daemon_json_configures_the_default_bridge_and_flags_win() {
    let mut h = Host::new("cfg");
    let write = |name: &str, body: &str| {
        let p = h.dir.join(name);
        std::fs::write(&p, body).expect("config file");
        p.display().to_string()
    };
    // Refused, each in one line naming its key; nothing is made.
    for (body, said) in [
        (r#"{"bipp": "10.55.0.1/24"}"#, r#"unknown key "bipp""#),
        (r#"{"mtu": "big"}"#, r#"key "mtu""#),
        (r#"{"icc": "perhaps"}"#, r#"key "icc""#),
        (r#"{"log-driver": "json-file"}"#, r#"key "log-driver" is dockerd's"#),
        (r#"["bip"]"#, "expected a JSON object"),
    ] {
        let path = write("bad.json", body);
        let out = h.start_fails(&["--config-file", &path]);
        let line = out.lines().find(|l| l.contains("weftd:")).unwrap_or_default();
        assert!(line.contains(said) && line.contains("bad.json"), "{body}: {out}");
        assert!(!h.link_names().iter().any(|l| l == "weft0"), "a refused start made no bridge");
    }

    let conf = write(
        "daemon.json",
        r#"{"bip": "10.55.0.1/24", "fixed-cidr": "10.55.0.128/25", "mtu": 1400, "icc": false, "dns": ["10.55.0.53"], "default-address-pools": [{"base": "10.66.0.0/16", "size": 24}]}"#,
    );
    // --mtu on the command line wins over the file's.
    h.start(&["--config-file", &conf, "--mtu", "1450"]);
    assert!(h.ip(&["-o", "addr", "show", "weft0"]).contains("10.55.0.1/24"), "bip");
    assert!(h.ip(&["link", "show", "weft0"]).contains("mtu 1450"), "the flag's mtu, not the file's");
    h.run_d("c1", &[], &["sleep", "300"]);
    h.run_d("c2", &[], &["sleep", "300"]);
    for c in ["c1", "c2"] {
        let ip: std::net::Ipv4Addr = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", c]).parse().expect("ip");
        assert!(ip.octets()[..3] == [10, 55, 0] && ip.octets()[3] >= 128, "fixed-cidr: {c} at {ip}");
    }
    let c2 = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "c2"]);
    assert!(!h.ping("c1", &c2), "icc false: containers of the default bridge do not talk");
    assert!(h.exec_ok("c1", &["cat", "/etc/resolv.conf"]).contains("nameserver 10.55.0.53"), "dns");
    h.ok(&["network", "create", "pooled"]);
    let ipam = h.ok(&["network", "inspect", "-f", "{{.IPAM.Config}}", "pooled"]);
    assert!(ipam.contains("10.66.") && ipam.contains("/24"), "default-address-pools: {ipam}");
    h.finish();
}

/// SIGHUP reads the configuration again: the DNS servers change at once for running containers
/// (the embedded DNS forwards to the new one), the log level changes, and a key that needs a
/// restart is named as such.
#[test]
fn sighup_reloads_dns_servers_and_log_level_and_names_the_rest() {
    let mut h = Host::new("hup");
    let conf = h.dir.join("daemon.json");
    std::fs::write(&conf, r#"{"dns": ["198.51.100.2"], "log-level": "info"}"#).expect("config");
    let conf_arg = conf.display().to_string();
    h.start(&["--config-file", &conf_arg]);
    let out = h.outside("198.51.100.1", "198.51.100.2");
    let o = std::process::Command::new("ip").args(["-n", &out, "addr", "add", "198.51.100.3/24", "dev", "eth0"]).output().expect("ip");
    assert!(o.status.success(), "a second upstream address");
    let _first = weft_itest::dns_server(&out, "198.51.100.2", "db.example.test", "203.0.113.7", "0");
    let _second = weft_itest::dns_server(&out, "198.51.100.3", "db.example.test", "203.0.113.8", "0");
    h.ok(&["network", "create", "front"]);
    h.run_d("c1", &["--network", "front"], &["sleep", "300"]);
    let answer = |h: &Host| String::from_utf8_lossy(&h.exec("c1", &["nslookup", "db.example.test", "127.0.0.11"]).stdout).to_string();
    assert!(answer(&h).contains("203.0.113.7"), "through the first server: {}", answer(&h));

    std::fs::write(&conf, r#"{"dns": ["198.51.100.3"], "log-level": "debug", "mtu": 1400}"#).expect("config");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.daemon_pid() as i32), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    weft_itest::eventually("the second server answers for the running container", || answer(&h).contains("203.0.113.8"));
    let log = h.daemon_log();
    assert!(log.contains("SIGHUP: DNS servers changed") && log.contains("SIGHUP: log level changed"), "{log}");
    assert!(log.lines().any(|l| l.contains("SIGHUP: changed, applied when weftd restarts") && l.contains("keys=mtu")), "{log}");
    h.ok(&["ps"]);
    assert!(h.daemon_log().lines().any(|l| l.contains("DEBUG")), "debug lines once the level is debug");
    // A bad file on SIGHUP changes nothing and says so.
    std::fs::write(&conf, r#"{"dns": ["nonsense"]}"#).expect("config");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.daemon_pid() as i32), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    weft_itest::eventually("the refusal is logged", || h.daemon_log().contains("SIGHUP: the configuration was not reloaded"));
    assert!(answer(&h).contains("203.0.113.8"), "still the second server");
    drop((_first, _second));
    h.finish();
}
