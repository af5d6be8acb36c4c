//! Issue 18: what a probe found as an attacker and as a careless operator, each tried again here
//! as the attack or fault itself. Each test also shows the attack getting through where the
//! defence is off, so the test can fail.

use std::time::{Duration, Instant};

use weft_itest::{nettool, text, Host, Killed};

/// The upstream of these tests lives on the outside host; the forwarder's ports are narrowed to
/// [`PORTS`] on the test host so an attacker there can hit every one of them many times a second.
const UPSTREAM: &str = "198.51.100.2";
const HOST_ADDR: &str = "198.51.100.1";
const PORTS: &str = "40000-40499";

/// A DNS server on the outside host answering `name` with `addr` after `delay` seconds (or
/// "never"); returns once it listens.
fn upstream(h: &Host, name: &str, addr: &str, delay: &str) -> Killed {
    weft_itest::dns_server(&format!("{}-o", h.ns), UPSTREAM, name, addr, delay)
}

/// A test host with the outside host (where the upstream and the LAN attacker are).
fn host(tag: &str) -> Host {
    let mut h = Host::new(tag);
    h.outside(HOST_ADDR, UPSTREAM);
    h
}

/// Looks `victim.test` up four times from container `victim` (with the client's ID 0x1234, which
/// the attacker knows) while a host on the LAN sprays forged answers from the upstream's address
/// and port over every forwarding port. Returns the answers' addresses.
fn lookups_under_attack(h: &Host) -> Vec<String> {
    let out = format!("{}-o", h.ns);
    let spoofer = std::process::Command::new("ip")
        .args(["netns", "exec", &out, "python3", &nettool(), "dns-spoof", UPSTREAM, HOST_ADDR, PORTS, "0x1234", "victim.test", "203.0.113.66", "7"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spoofer");
    std::thread::sleep(Duration::from_millis(300));
    let nt = nettool();
    let answers = (0..4)
        .map(|_| {
            let o = h.exec("victim", &["python3", &nt, "dns-query", "127.0.0.11", "victim.test", "A", "udp", "0x1234"]);
            let out = text(&o);
            assert!(out.starts_with("RCODE 0"), "no answer for victim.test: {out}");
            out.lines().nth(1).unwrap_or_default().to_string()
        })
        .collect();
    let o = spoofer.wait_with_output().expect("spoofer");
    let sent = String::from_utf8_lossy(&o.stdout);
    let n: u64 = sent.trim().strip_prefix("sent ").and_then(|n| n.parse().ok()).unwrap_or(0);
    // Enough forgeries to cover every port many times during each lookup.
    assert!(n > 50_000, "the attacker sent too little to mean anything: {sent}");
    answers
}

#[test]
fn dns_forwarder_takes_no_forged_answer() {
    let mut h = host("poison");
    // The forwarding ports narrowed to [`PORTS`], so the attacker hits each many times a second.
    let (lo, hi) = PORTS.split_once('-').expect("range");
    h.sh_ok(&format!("echo '{lo} {hi}' > /proc/sys/net/ipv4/ip_local_port_range"));
    let up = upstream(&h, "victim.test", "192.0.2.1", "1.0");
    h.start(&["--dns", UPSTREAM]);
    h.ok(&["network", "create", "front"]);
    h.ok(&["run", "-d", "--name", "victim", "--network", "front", "--", "sleep", "300"]);
    let answers = lookups_under_attack(&h);
    assert!(answers.iter().all(|a| a == "192.0.2.1"), "a forged answer was taken, or the real one lost: {answers:?}");

    // The control: the forwarder as it was (any datagram on its port, the client's ID passed on).
    h.stop_daemon();
    h.daemon_env("WEFT_TEST_UNCHECKED_DNS_FORWARD", Some("1"));
    h.start(&["--dns", UPSTREAM]);
    let answers = lookups_under_attack(&h);
    let poisoned = answers.iter().filter(|a| *a == "203.0.113.66").count();
    assert!(poisoned >= 3, "the attack should poison an unchecked forwarder: {answers:?}");
    h.stop_daemon();
    h.daemon_env("WEFT_TEST_UNCHECKED_DNS_FORWARD", None);
    h.start(&["--dns", UPSTREAM]);
    drop(up);
    h.finish();
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Floods the resolver from container `flood` with 20,000 queries for names that go upstream (an
/// upstream that never answers) and samples the daemon's descriptors meanwhile. Returns the
/// daemon's descriptors before, their peak, and what the flooder got.
fn flood(h: &Host) -> (usize, usize, String) {
    let pid = h.daemon_pid();
    let before = open_fds(pid);
    let nt = nettool();
    let mut flooder = h.cli();
    flooder.args(["exec", "flood", "--", "python3", &nt, "dns-flood", "127.0.0.11", "20000", "4"]);
    let run = std::thread::spawn(move || flooder.output().expect("flood"));
    let (mut peak, t0) = (before, Instant::now());
    while !run.is_finished() && t0.elapsed() < Duration::from_secs(20) {
        peak = peak.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = text(&run.join().expect("flood thread"));
    (before, peak, out)
}

#[test]
fn dns_flood_is_bounded_and_the_daemon_keeps_answering() {
    let mut h = host("flood");
    let up = upstream(&h, "none.test", "192.0.2.1", "never");
    h.start(&["--dns", UPSTREAM]);
    h.ok(&["network", "create", "front"]);
    h.ok(&["run", "-d", "--name", "flood", "--network", "front", "--", "sleep", "300"]);
    h.ok(&["run", "-d", "--name", "web", "--network", "front", "--", "sleep", "300"]);
    // While one container floods, the API and the other container's names keep answering.
    let nt = nettool();
    let mut during = h.cli();
    during.args(["exec", "web", "--", "sh", "-c", &format!("sleep 1; python3 {nt} dns-query 127.0.0.11 flood")]);
    let probe = std::thread::spawn(move || during.output().expect("probe"));
    let (before, peak, out) = flood(&h);
    let probe = text(&probe.join().expect("probe thread"));
    assert!(probe.starts_with("RCODE 0"), "a local name during the flood: {probe}");
    h.ok(&["ps"]);
    let servfail: u64 = out.split_whitespace().find_map(|w| w.strip_prefix("rcode2=")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(servfail > 500, "past the bound, queries are answered SERVFAIL at once (the rest overflow the socket): {out}");
    // 128 forwards of one container in flight, each one socket; some slack for the daemon's own (the execs' pipes).
    assert!(peak <= before + 128 + 48, "descriptors grew from {before} to {peak} under the flood ({out})");

    // The control: with the bounds lifted, the same flood takes the daemon's descriptors.
    h.stop_daemon();
    h.start(&["--dns", UPSTREAM, "--dns-forward-max", "100000", "--dns-forward-max-per-container", "100000"]);
    let (before_off, peak_off, out_off) = flood(&h);
    // (Well past the bound: how far depends on how fast a loaded machine lets weftd read.)
    assert!(peak_off > before_off + 4 * 128, "unbounded, the flood should hold many sockets: {before_off} -> {peak_off} ({out_off})");
    eprintln!("descriptors under the flood: bounded {before} -> {peak}, unbounded {before_off} -> {peak_off}");
    drop(up);
    h.finish();
}

#[test]
fn no_container_takes_the_bridges_mac_and_a_lost_bridge_entry_comes_back() {
    let mut h = Host::new("mac");
    h.start(&[]);
    h.run_d("web", &[], &["sleep", "300"]);
    let gw: std::net::Ipv4Addr = h.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "web"]).parse().expect("gateway");
    let o = gw.octets();
    let bridge_mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    let before = h.link_names();
    for (mac, why) in [(bridge_mac.as_str(), "own link weft0"), ("01:00:5e:00:00:01", "invalid"), ("00:00:00:00:00:00", "invalid"), ("ff:ff:ff:ff:ff:ff", "invalid")] {
        let err = h.fails(&["run", "-d", "--name", "evil", "--mac-address", mac, "--", "sleep", "300"]);
        assert!(err.contains(why) && err.lines().count() == 1, "--mac-address {mac}: {err}");
    }
    assert_eq!(h.link_names(), before, "a refused run changes nothing");
    assert!(h.fails(&["inspect", "evil"]).contains("no such container"));
    assert!(h.ping("web", &gw.to_string()));
    // The damage the probe did through weft, done by hand now that weft refuses it: a static
    // entry for the bridge's MAC on a port, then the port gone, takes the bridge's own entry.
    h.sh_ok(&format!(
        "ip link add vattack type veth peer name vattack-p && ip link set vattack master weft0 up && \
         bridge fdb replace {bridge_mac} dev vattack master static && ip link del vattack"
    ));
    assert!(!h.ping("web", &gw.to_string()), "the bridge should have lost its own entry");
    // Reconcile puts it back.
    h.stop_daemon();
    h.start(&[]);
    assert!(h.ping("web", &gw.to_string()), "the bridge's own entry is restored at start");
    h.finish();
}

/// `POST /containers/run` with `spec` (JSON): the status and the message.
fn run_status(h: &Host, spec: &str) -> (u16, String) {
    let (code, _, body) = weft_itest::http(h, "POST", "/containers/run", Some("application/json"), spec.as_bytes());
    (code, body)
}

#[test]
fn requests_that_would_exhaust_or_confuse_are_refused_with_the_right_code() {
    let mut h = Host::new("refuse");
    h.outside(HOST_ADDR, UPSTREAM);
    h.start(&[]);
    let rootfs = h.rootfs();
    h.run_d("web", &["-p", "8080:80", "--ip", "172.17.0.9"], &["sleep", "300"]);
    let pid = h.daemon_pid();
    let (links, fds) = (h.link_names(), open_fds(pid));
    let run = |extra: &str| format!(r#"{{"Name":"bad","Rootfs":"{rootfs}","Cmd":["sleep","300"]{extra}}}"#);
    for (extra, code, want) in [
        // One request would bind a socket per port of the machine.
        (r#","Publish":["1-65535:1-65535"]"#, 400, "too many published ports"),
        (r#","Publish":["8000-9000:8000-9000","9001-10100:9001-10100"]"#, 400, "too many published ports"),
        // Taken, or not the host's: a conflict and a bad input, not the daemon's fault.
        (r#","Publish":["8080:80"]"#, 409, "8080"),
        (r#","Publish":["203.0.113.7:8081:80"]"#, 400, "203.0.113.7"),
        (r#","Ip":"172.17.0.9""#, 409, "172.17.0.9"),
        (r#","NetworkMode":"none","Ip":"172.17.0.10""#, 400, "--ip"),
        (r#","NetworkMode":"host","MacAddress":"02:42:00:00:00:09""#, 400, "--mac-address"),
    ] {
        let (got, body) = run_status(&h, &run(extra));
        assert!(got == code && body.contains(want) && body.lines().count() == 1, "{extra}: {got} {body}");
    }
    let (got, body) = run_status(&h, r#"{"Name":"bad","Rootfs":"/","Cmd":["true"]}"#);
    assert!(got == 400 && body.contains("rootfs"), "--rootfs /: {got} {body}");
    // Bridge names that are not bridges of weft's: another kind's prefix, the host's own links.
    for name in ["eth0", "veth1234567", "lo", "up0"] {
        let err = h.fails(&["network", "create", "-o", &format!("com.docker.network.bridge.name={name}"), "n"]);
        assert!(err.contains(name) && err.lines().count() == 1, "{name}: {err}");
    }
    assert_eq!((h.link_names(), h.fails(&["inspect", "bad"]).contains("no such container")), (links, true), "nothing was made");
    assert!(open_fds(pid) <= fds + 4, "descriptors left behind: {fds} -> {}", open_fds(pid));
    h.ok(&["run", "-d", "--name", "good", "-p", "9000-9099:9000-9099", "--", "sleep", "300"]);
    h.finish();
}

#[test]
fn a_daemon_with_private_mounts_keeps_its_containers_across_restarts() {
    let mut h = Host::new("privmnt");
    h.private_mounts = true;
    let nt = nettool();
    h.start(&["--dns", "127.0.0.1"]);
    h.ok(&["network", "create", "front"]);
    h.ok(&["network", "create", "back"]);
    h.ok(&["run", "-d", "--name", "web", "--network", "front", "--", "sleep", "300"]);
    h.ok(&["run", "-d", "--name", "cli", "--network", "front", "--", "sleep", "300"]);
    for round in 0..3 {
        // The daemon's namespace mounts die with its mount namespace at every stop.
        h.stop_daemon();
        h.start(&["--dns", "127.0.0.1"]);
        let out = text(&h.exec("cli", &["python3", &nt, "dns-query", "127.0.0.11", "web"]));
        assert!(out.starts_with("RCODE 0") && out.lines().count() == 2, "round {round}: the embedded DNS after a restart: {out}");
        h.ok(&["network", "connect", "back", "web"]);
        let back = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.back.IPAddress}}", "web"]);
        assert!(!back.is_empty(), "round {round}: connect after a restart");
        h.ok(&["network", "disconnect", "back", "web"]);
    }
    assert!(h.daemon_log().contains("bound again from pid 1"), "the namespaces were rebound");
    h.finish();
}

#[test]
fn an_emptied_or_lost_store_is_not_a_fresh_start() {
    let mut h = Host::new("nostore");
    h.start(&[]);
    h.ok(&["network", "create", "front"]);
    let web = h.run_d("web", &["--network", "front", "-p", "8080:80"], &["sleep", "300"]);
    h.run_d("db", &[], &["sleep", "300"]);
    h.ok(&["network", "connect", "front", "db"]);
    h.ok(&["run", "-d", "--name", "done", "--", "true"]);
    let pid = |h: &Host, c: &str| -> u32 { h.ok(&["inspect", "-f", "{{.State.Pid}}", c]).parse().expect("pid") };
    let pids: Vec<u32> = ["web", "db"].iter().map(|c| pid(&h, c)).collect();
    h.stop_daemon();
    let links = h.link_names();
    let store = h.dir.join("data/weft.redb");
    let alive = |pid: &u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    // Emptied, then deleted: each start is refused, and changes nothing.
    for damage in ["emptied", "deleted"] {
        match damage {
            "emptied" => std::fs::File::create(&store).map(drop).expect("truncate the store"),
            _ => std::fs::remove_file(&store).expect("delete the store"),
        }
        let err = h.start_fails(&[]);
        assert!(err.contains("store is empty") && err.contains("3 containers") && err.contains("--adopt-state"), "{damage}: {err}");
        assert!(pids.iter().all(alive), "{damage}: the containers keep running");
        assert_eq!(h.link_names(), links, "{damage}: the kernel objects stay");
    }
    // Adopted: the records of what runs come back from their copies, and all of it works.
    h.start(&["--adopt-state"]);
    assert_eq!((pid(&h, "web"), pid(&h, "db")), (pids[0], pids[1]), "the same processes, adopted");
    assert!(h.fails(&["inspect", "done"]).contains("no such container"), "an exited container is not adopted");
    assert!(h.ping("db", "web"), "by name on the adopted network (db joined it after its run)");
    h.ok(&["network", "connect", "bridge", "web"]);
    assert_eq!(h.ok(&["port", "web", "80/tcp"]), "0.0.0.0:8080");
    assert!(h.fails(&["run", "-d", "--name", "web2", "--network", "front", "--ip", &web, "--", "sleep", "1"]).contains("already in use"), "its address is held again");
    h.stop_daemon();
    // Told to clean: the processes are stopped and everything of theirs goes.
    std::fs::remove_file(&store).expect("delete the store");
    h.start(&["--reset-state"]);
    assert!(!pids.iter().any(alive), "the earlier run's containers are stopped");
    assert_eq!(h.ok(&["ps", "-a", "-q"]), "");
    weft_itest::eventually("their veths and their network's bridge gone", || h.link_names().iter().all(|l| !l.starts_with("veth") && !l.starts_with("br-")));
    h.finish();
}

/// A field of container `name`'s inspect output.
fn field(h: &Host, name: &str, template: &str) -> String {
    h.ok(&["inspect", "-f", template, name])
}

/// What attacker `a` (default capabilities: NET_RAW) gets done against victim `v` on network
/// `net`: (the victim's gateway now resolves to the attacker's MAC, a datagram with the victim's
/// address reached the host).
fn spoof(h: &Host, net: &str, a: &str, v: &str) -> (bool, bool) {
    let nt = nettool();
    let tmpl = |k: &str| format!("{{{{.NetworkSettings.Networks.{net}.{k}}}}}");
    let (gw, vip, vmac) = (field(h, v, &tmpl("Gateway")), field(h, v, &tmpl("IPAddress")), field(h, v, &tmpl("MacAddress")));
    let amac = field(h, a, &tmpl("MacAddress"));
    let gw_mac = {
        let o = gw.parse::<std::net::Ipv4Addr>().expect("gateway").octets();
        format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    };
    // The victim knows its gateway; the attacker tells it the gateway is at the attacker's MAC.
    assert!(h.ping(v, &gw), "{v} reaches its gateway");
    h.exec_ok(a, &["python3", &nt, "arp-spoof", "eth0", &gw, &vip, &vmac, "2.5"]);
    let key = field(h, v, "{{.NetworkSettings.SandboxKey}}");
    let neigh = h.sh_ok(&format!("nsenter --net={key} ip neigh show {gw}"));
    let poisoned = neigh.contains(&amac);
    assert!(poisoned || neigh.contains(&gw_mac) || neigh.trim().is_empty() || neigh.contains("FAILED") || neigh.contains("INCOMPLETE"), "{neigh}");
    // A datagram to the host from the victim's address, sent from the attacker's own MAC.
    use std::io::BufRead;
    let mut rx = std::process::Command::new("ip")
        .args(["netns", "exec", &h.ns, "python3", &nt, "udp-recv", "7777", "2", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("receiver");
    let mut lines = std::io::BufReader::new(rx.stdout.take().expect("stdout")).lines();
    assert!(lines.next().and_then(|l| l.ok()).is_some_and(|l| l.starts_with("bound")));
    h.exec_ok(a, &["python3", &nt, "udp-forge", "eth0", "own", &vip, &gw_mac, &gw, "7777", "forged"]);
    let got = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let _ = rx.wait();
    (poisoned, got.contains(&format!("forged from {vip}")))
}

#[test]
fn a_container_cannot_spoof_its_neighbours_addresses() {
    let mut h = Host::new("spoof");
    h.start(&[]);
    h.ok(&["network", "create", "guarded"]);
    h.ok(&["network", "create", "-o", "com.weft.bridge.anti_spoof=false", "open"]);
    for net in ["guarded", "open"] {
        for c in ["v", "a"] {
            h.ok(&["run", "-d", "--name", &format!("{c}-{net}"), "--network", net, "--", "sleep", "300"]);
        }
    }
    // Guarded: everything legitimate works (by name, to the host, out), nothing forged gets through.
    let vip = field(&h, "v-guarded", "{{.NetworkSettings.Networks.guarded.IPAddress}}");
    assert!(h.ping("a-guarded", &vip) && h.ping("a-guarded", "v-guarded"), "neighbours talk");
    assert_eq!(spoof(&h, "guarded", "a-guarded", "v-guarded"), (false, false), "the guarded port's forgeries got through");
    assert!(h.ping("v-guarded", &vip) && h.ping("a-guarded", &vip), "still talking after the attack");
    // The control: the same attacks on a network that turned the guard off.
    assert_eq!(spoof(&h, "open", "a-open", "v-open"), (true, true), "the attacks should work without the guard");
    // Removed containers' ports leave no guard behind.
    h.ok(&["rm", "-f", "a-guarded", "v-guarded"]);
    weft_itest::eventually("guards forgotten", || !text(&h.sh("nft list set bridge weft guarded")).contains("veth"));
    h.finish();
}

/// `weft ARGS` on a thread of its own.
fn in_background(h: &Host, args: &[&str]) -> std::thread::JoinHandle<std::process::Output> {
    let mut c = h.cli();
    c.args(args);
    std::thread::spawn(move || c.output().expect("weft"))
}

#[test]
fn rm_during_a_run_of_the_name_and_rm_before_a_crash_both_remove() {
    let mut h = Host::new("rmrace");
    h.start(&[]);
    let rootfs = h.rootfs();
    // `rm -f NAME` sent while `run --name NAME` is in flight waits for it, then removes it.
    let names: Vec<String> = (0..10).map(|i| format!("race{i}")).collect();
    let runs: Vec<_> = names.iter().map(|n| in_background(&h, &["run", "-d", "--name", n, "--rootfs", &rootfs, "--", "sleep", "300"])).collect();
    // Each rm goes once its run has taken the name (so the daemon has the run first): a probe
    // says "in use" then, and before that fails harmlessly (`--rootfs /` is refused after the
    // name is taken, and the name given back).
    let rms: Vec<_> = names
        .iter()
        .map(|n| {
            weft_itest::eventually("the run took its name", || h.fails(&["run", "-d", "--name", n, "--rootfs", "/", "--", "true"]).contains("already in use"));
            in_background(&h, &["rm", "-f", n])
        })
        .collect();
    let runs: Vec<bool> = runs.into_iter().map(|t| t.join().expect("run thread").status.success()).collect();
    let rms: Vec<String> = rms.into_iter().map(|t| text(&t.join().expect("rm thread"))).collect();
    let left = h.ok(&["ps", "-a"]);
    assert!(names.iter().all(|n| !left.split_whitespace().any(|w| w == n)), "containers left after rm -f: {left}\nruns {runs:?}\nrms {rms:?}");

    // rm -f of running containers, the daemon killed right after: they stay removed.
    let victims: Vec<String> = (0..12).map(|i| format!("gone{i}")).collect();
    for v in &victims {
        h.ok(&["run", "-d", "--name", v, "--rootfs", &rootfs, "--", "sleep", "300"]);
    }
    let rms: Vec<_> = victims.iter().map(|n| in_background(&h, &["rm", "-f", n])).collect();
    std::thread::sleep(Duration::from_millis(30));
    h.kill9_daemon();
    for t in rms {
        let _ = t.join();
    }
    h.start(&[]);
    // Each is gone (its rm got as far as the kill) or still running (the rm never reached the
    // daemon); none is back as an exited record.
    let left = h.ok(&["ps", "-a"]);
    for l in left.lines().filter(|l| victims.iter().any(|v| l.split_whitespace().nth(1) == Some(v.as_str()))) {
        assert!(l.split_whitespace().nth(2) == Some("running"), "rm -f'd before the crash, back after it: {l}");
    }
    h.finish();
}

#[test]
fn a_container_cannot_stop_its_own_init() {
    let mut h = Host::new("ptrace");
    h.start(&[]);
    let rootfs = h.attacker_rootfs();
    // Refused, and the run ends (a traced, stopped pid 1 would hang it).
    let o = h.weft(&["run", "--rm", "--rootfs", &rootfs, "--", "/bin/weft-attack", "ptrace-init"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("refused: ptrace"), "{}", text(&o));
    // The control: with CAP_SYS_PTRACE the same attach gets through.
    let o = h.weft(&["run", "--rm", "--cap-add", "SYS_PTRACE", "--rootfs", &rootfs, "--", "/bin/weft-attack", "ptrace-init"]);
    assert!(o.status.success() && text(&o).contains("attached to pid 1"), "{}", text(&o));
    h.finish();
}
