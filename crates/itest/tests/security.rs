//! Issue 8: a container is confined as Docker's are, and attacks from inside fail. Each attack is
//! also tried where it should work (`--privileged`, `--cap-add`), so a refusal is weft's doing.

use weft_itest::{text, Host};

/// Docker's default capability set as a CapEff mask (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
const DOCKER_CAPS: &str = "00000000a80425fb";

fn status_field(h: &Host, name: &str, field: &str) -> String {
    let status = h.exec_ok(name, &["cat", "/proc/1/status"]);
    status.lines().find_map(|l| l.strip_prefix(field)).map(|v| v.trim().to_string()).unwrap_or_default()
}

#[test]
fn default_confinement_refuses_the_escapes() {
    let mut h = Host::new("conf");
    h.start(&[]);
    let rootfs = h.attacker_rootfs();
    let secret = h.dir.join("secret-outside-the-rootfs");
    std::fs::write(&secret, "host-secret-42").expect("secret");
    let secret_rel = secret.display().to_string().trim_start_matches('/').to_string();
    h.run_d("box", &[], &["sleep", "300"]);
    h.ok(&["run", "-d", "--name", "root", "--privileged", "--rootfs", &rootfs, "--", "sleep", "300"]);

    // Docker's capability set in every set, no_new_privs, a seccomp filter; the same for a
    // process `weft exec` starts.
    for field in ["CapBnd:", "CapPrm:", "CapEff:"] {
        assert_eq!(status_field(&h, "box", field), DOCKER_CAPS, "{field}");
    }
    assert_eq!(status_field(&h, "box", "CapInh:"), "0000000000000000");
    assert_eq!(status_field(&h, "box", "NoNewPrivs:"), "1");
    assert_eq!(status_field(&h, "box", "Seccomp:"), "2");
    let own = h.exec_ok("box", &["cat", "/proc/self/status"]);
    assert!(own.contains(&format!("CapEff:\t{DOCKER_CAPS}")) && own.contains("Seccomp:\t2"), "exec'd process: {own}");
    let ours = std::fs::read_to_string("/proc/self/status").expect("status");
    let ours = ours.lines().find_map(|l| l.strip_prefix("CapBnd:")).expect("CapBnd").trim().to_string();
    assert_eq!(status_field(&h, "root", "CapEff:"), ours, "--privileged keeps everything the host's root has");
    assert_eq!(status_field(&h, "root", "Seccomp:"), "0");

    // The shocker escape: a forged handle for the host filesystem's root, then a host file.
    let attack = |name: &str, args: &str| h.probe(name, &format!("/bin/weft-attack {args}"));
    assert_eq!(attack("box", &format!("open-by-handle {secret_rel}")), 1, "open_by_handle_at refused");
    let got = h.exec("root", &["/bin/weft-attack", "open-by-handle", &secret_rel]);
    assert!(text(&got).contains("host-secret-42"), "the same attack works privileged: {}", text(&got));
    // User namespaces, the keyring, mount.
    for (args, what) in [("unshare-user", "unshare(CLONE_NEWUSER)"), ("keyctl", "keyctl"), ("mount-proc /mnt", "mount")] {
        assert_eq!(attack("box", args), 1, "{what} refused");
    }
    h.exec_ok("root", &["mkdir", "-p", "/mnt"]);
    for args in ["unshare-user", "mount-proc /mnt"] {
        assert_eq!(attack("root", args), 0, "{args} works privileged");
    }
    assert_eq!(h.probe("box", "mount -t proc proc /mnt"), 1, "busybox mount refused");

    // A block device made with mknod (CAP_MKNOD is a default) cannot be opened: the rootfs is nodev.
    assert_eq!(h.probe("box", "mknod /tmp/disk b 254 0 && test -b /tmp/disk"), 0, "mknod itself works");
    assert_ne!(h.probe("box", "head -c 1 /tmp/disk"), 0, "the node cannot be read");
    assert_ne!(h.probe("box", "mknod /dev/disk b 254 0"), 0, "/dev takes no new node");

    // /proc/sys read-only (the attack writes the current value back, so nothing changes even if
    // it got through), /sys read-only, masked paths empty.
    assert_ne!(h.probe("box", "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern"), 0, "core_pattern is read-only");
    assert_ne!(h.probe("box", "echo 1 > /proc/sysrq-trigger"), 0);
    assert_eq!(h.probe("root", "cat /proc/sys/net/ipv4/ip_forward > /proc/sys/net/ipv4/ip_forward"), 0, "privileged writes its own namespace's sysctl");
    assert_ne!(h.probe("box", "mount -o remount,rw /sys"), 0, "/sys stays read-only");
    assert_ne!(h.probe("box", "touch /sys/kernel/x"), 0);
    assert!(h.exec_ok("box", &["cat", "/proc/mounts"]).lines().any(|l| l.starts_with("sysfs /sys sysfs ro,")), "sysfs mounted read-only");
    // (/proc/kcore and /proc/sched_debug are masked too where the kernel has them; this one has not.)
    assert_eq!(h.exec_ok("box", &["wc", "-c", "/proc/timer_list"]).split_whitespace().next(), Some("0"), "/proc/timer_list masked");
    assert_ne!(h.exec_ok("root", &["wc", "-c", "/proc/timer_list"]).split_whitespace().next(), Some("0"), "not masked privileged");
    assert_eq!(h.exec_ok("box", &["ls", "/sys/firmware"]).trim(), "", "/sys/firmware masked");
    assert_ne!(h.exec_ok("root", &["ls", "/sys/firmware"]).trim(), "", "not masked privileged");

    // A private /dev: Docker's nodes and links, a devpts of its own, nothing of the host's.
    let dev = h.exec_ok("box", &["ls", "/dev"]);
    let mut entries: Vec<&str> = dev.split_whitespace().collect();
    entries.sort();
    assert_eq!(entries, ["fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]);
    assert_eq!(h.probe("box", "head -c 4 /dev/urandom | wc -c | grep -q 4 && echo x > /dev/null"), 0, "the nodes work");
    assert!(h.exec_ok("box", &["cat", "/proc/mounts"]).contains("devpts /dev/pts devpts"), "a devpts instance");
    h.finish();
}

#[test]
fn changing_the_network_needs_net_admin() {
    let mut h = Host::new("netadm");
    h.start(&[]);
    h.run_d("plain", &[], &["sleep", "300"]);
    let victim = h.run_d("victim", &[], &["sleep", "300"]);
    h.run_d("admin", &["--cap-add", "NET_ADMIN"], &["sleep", "300"]);
    h.run_d("priv", &["--privileged"], &["sleep", "300"]);
    // Taking a neighbour's address (then announcing it) is what NET_ADMIN would allow.
    assert_ne!(h.probe("plain", &format!("ip addr add {victim}/32 dev eth0")), 0, "refused without NET_ADMIN");
    assert_ne!(h.probe("plain", "ip link set eth0 down"), 0);
    assert!(h.ping("plain", &victim), "plain still talks to victim");
    for name in ["admin", "priv"] {
        assert_eq!(h.probe(name, "ip addr add 10.123.0.1/32 dev eth0"), 0, "{name} may change its own network");
    }
    let inspect = h.ok(&["inspect", "-f", "{{.HostConfig.Privileged}} {{json .HostConfig.CapAdd}}", "admin"]);
    assert_eq!(inspect, "false [\"NET_ADMIN\"]");
    assert_eq!(h.ok(&["inspect", "-f", "{{.HostConfig.Privileged}}", "priv"]), "true");
    // --cap-drop: NET_RAW gone, so no ping socket; ALL then one back.
    h.run_d("noraw", &["--cap-drop", "NET_RAW"], &["sleep", "300"]);
    assert_eq!(status_field(&h, "noraw", "CapEff:"), "00000000a80405fb");
    h.run_d("only", &["--cap-drop", "ALL", "--cap-add", "net_bind_service"], &["sleep", "300"]);
    assert_eq!(status_field(&h, "only", "CapEff:"), "0000000000000400");
    assert!(h.fails(&["run", "-d", "--cap-add", "NOPE", "--", "true"]).contains("invalid capability \"NOPE\""));
    h.finish();
}

#[test]
fn the_environment_never_travels_in_argv() {
    let mut h = Host::new("argv");
    h.start(&[]);
    h.run_d("db", &["-e", "DB_PASSWORD=s3cret-in-env"], &["sleep", "300"]);
    assert!(h.exec_ok("db", &["env"]).contains("DB_PASSWORD=s3cret-in-env"), "the container has it");
    // No process's command line on the machine carries it (what any user sees in `ps`).
    let mut seen = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains("s3cret-in-env") {
                seen.push(e.file_name());
            }
        }
    }
    assert!(seen.is_empty(), "in the argv of {seen:?}");
    h.finish();
}

#[test]
fn loopback_published_ports_stay_on_loopback() {
    let mut h = Host::new("lo127");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    h.web("web", &["-p", "127.0.0.1:8081:80"], "loopback-only");
    assert_eq!(h.host_fetch("127.0.0.1:8081"), "loopback-only", "the host's own 127.0.0.1 works");
    // The attack (CVE-2020-8558's class): send to 127.0.0.1 out of a real interface, towards
    // the host, and hope its DNAT takes it. From a privileged container, and from a neighbour
    // on the host's LAN. Each sender gives up its own 127.0.0.1 so that the address routes out.
    h.run_d("evil", &["--privileged"], &["sleep", "300"]);
    let redirect = |gw: &str| format!("echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet && ip addr del 127.0.0.1/8 dev lo && ip route add 127.0.0.1/32 via {gw} dev eth0");
    assert_eq!(h.probe("evil", &redirect("172.17.0.1")), 0, "the container's route to 127.0.0.1 via the host");
    h.outside_ok(&redirect("198.51.100.1"));
    let from_lan = || h.in_outside("busybox nc -w 2 127.0.0.1 8081 -e true").status.code();
    assert!(!h.tcp_open("evil", "127.0.0.1", 8081), "a container does not reach the host's 127.0.0.1:8081");
    assert_eq!(from_lan(), Some(1), "a LAN neighbour does not either");
    assert_eq!(h.host_fetch("127.0.0.1:8081"), "loopback-only");
    // Control: without weft's `loopback` chain both attacks get through.
    h.sh_ok("nft flush chain inet weft loopback");
    assert!(h.tcp_open("evil", "127.0.0.1", 8081), "the attack is real");
    assert_eq!(from_lan(), Some(0), "the attack is real from the LAN too");
    h.finish();
}

#[test]
fn inputs_that_would_inject_are_refused_and_change_nothing() {
    let mut h = Host::new("inject");
    h.outside("198.51.100.1", "198.51.100.2");
    h.start(&[]);
    h.ok(&["network", "create", "front"]);
    let victim_mac = "02:42:0a:0b:0c:0d";
    h.run_d("victim", &["--mac-address", victim_mac], &["sleep", "300"]);
    let before = (h.ok(&["ps", "-aq"]), h.link_names(), h.ok(&["network", "ls"]));
    // A second nameserver smuggled in an option; names with a newline or a space.
    assert!(h.fails(&["run", "-d", "--dns-option", "ndots:1\nnameserver 6.6.6.6", "--", "true"]).contains("invalid --dns-option"));
    assert!(h.fails(&["run", "-d", "--network", "front", "--network-alias", "al\n6.6.6.6 evil", "--", "true"]).contains("invalid network alias"));
    assert!(h.fails(&["run", "-d", "--network", "front", "--network-alias", "a b", "--", "true"]).contains("invalid network alias"));
    assert!(h.fails(&["network", "connect", "--alias", "x\ty", "front", "victim"]).contains("invalid network alias"));
    assert!(h.fails(&["run", "-d", "--dns-search", "a.example\nnameserver 6.6.6.6", "--", "true"]).contains("invalid hostname"));
    // Another container's MAC on the same network.
    let err = h.fails(&["run", "-d", "--mac-address", victim_mac, "--", "true"]);
    assert!(err.contains(&format!("MAC address {victim_mac} is already used by victim on network bridge")), "{err}");
    // Subnets that cannot be a network, or that are the host's own.
    for (subnet, want) in [
        ("127.0.0.0/8", "loopback address space"),
        ("224.0.0.0/4", "multicast address space"),
        ("169.254.0.0/16", "link-local address space"),
        ("10.78.0.5/24", "invalid subnet 10.78.0.5/24: it should be 10.78.0.0/24"),
        ("198.51.100.0/24", "overlaps with the host's 198.51.100.0/24"),
    ] {
        let err = h.fails(&["network", "create", "--subnet", subnet, "bad"]);
        assert!(err.contains(want), "{subnet}: {err}");
    }
    assert!(h.fails(&["network", "create", "--subnet", "10.80.0.0/24", "--subnet", "10.81.0.0/24", "bad"]).contains("one IPv4 and one IPv6 --subnet"));
    assert!(h.fails(&["run", "-d", "-p", "::80", "--", "true"]).contains("empty IP address"));
    assert_eq!((h.ok(&["ps", "-aq"]), h.link_names(), h.ok(&["network", "ls"])), before, "a refusal changed state");
    // The host's subnet is allowed when the user says so with --gateway (as Docker allows -b).
    h.ok(&["network", "create", "--subnet", "198.51.100.0/24", "--gateway", "198.51.100.254", "meant"]);
    // A derived MAC that someone chose already is not reused: `chooser` takes the MAC that
    // 172.17.0.50 would derive; the container at .50 gets a random one, and both answer.
    let chooser = h.run_d("chooser", &["--mac-address", "02:42:ac:11:00:32"], &["sleep", "300"]);
    let n50 = h.run_d("n50", &["--ip", "172.17.0.50"], &["sleep", "300"]);
    let mac = h.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "n50"]);
    assert!(mac != "02:42:ac:11:00:32" && mac.starts_with("02:"), "{mac}");
    assert!(h.exec_ok("n50", &["ip", "link", "show", "eth0"]).contains(&mac));
    assert!(h.ping("victim", &n50) && h.ping("victim", &chooser));
    h.finish();
}
