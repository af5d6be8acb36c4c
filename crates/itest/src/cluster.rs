//! Several hosts on one machine: an [`Underlay`] (a namespace holding one bridge, the hosts'
//! "physical" network) that test hosts and etcd members join by veth, and an [`EtcdCluster`]
//! (Debian's `etcd`, one namespace per member on the underlay). Everything is the test's: it is
//! all removed on drop, members killed by pid.
//!
//! Addresses: the underlay is 192.168.200.0/24 inside its own namespaces (tests run in parallel,
//! each with its own underlay); etcd members are .201 upwards, hosts take what the test gives.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{run, text, Host};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The underlay's prefix length.
pub const UNDERLAY_PREFIX: u8 = 24;

/// A namespace of the test's own (with `lo` up), deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Self {
        add_ns(name);
        Self(name.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        del_ns(&self.0);
    }
}

/// A shared L2 segment: bridge `ul0` in a namespace of its own.
pub struct Underlay {
    pub ns: String,
    ports: AtomicU32,
}

fn ip_in(ns: &str, args: &[&str]) {
    let o = run(Command::new("ip").arg("-n").arg(ns).args(args));
    assert!(o.status.success(), "ip -n {ns} {args:?}: {}", text(&o));
}

fn add_ns(ns: &str) {
    let o = run(Command::new("ip").args(["netns", "add", ns]));
    assert!(o.status.success(), "ip netns add {ns} (tests need root): {}", text(&o));
    ip_in(ns, &["link", "set", "lo", "up"]);
}

fn del_ns(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

impl Underlay {
    pub fn new(tag: &str) -> Self {
        let ns = format!("wt-{tag}-ul-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        add_ns(&ns);
        ip_in(&ns, &["link", "add", "ul0", "type", "bridge"]);
        ip_in(&ns, &["link", "set", "ul0", "up"]);
        Self { ns, ports: AtomicU32::new(0) }
    }

    /// Joins namespace `ns` with interface `ifname` at `addr` (/24); returns the interface name.
    pub fn join_ns(&self, ns: &str, ifname: &str, addr: &str) {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::SeqCst));
        ip_in(&self.ns, &["link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", ns]);
        ip_in(&self.ns, &["link", "set", &port, "master", "ul0", "up"]);
        ip_in(ns, &["addr", "add", &format!("{addr}/{UNDERLAY_PREFIX}"), "dev", ifname]);
        ip_in(ns, &["link", "set", ifname, "up"]);
    }

    /// Joins test host `h` at `addr` with interface `eth0`.
    pub fn join(&self, h: &Host, addr: &str) {
        self.join_ns(&h.ns, "eth0", addr);
    }

    /// Cuts namespace `ns`'s port off the underlay (or puts it back): a partition.
    pub fn cut(&self, ns: &str, ifname: &str, cut: bool) {
        ip_in(ns, &["link", "set", ifname, if cut { "down" } else { "up" }]);
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        del_ns(&self.ns);
    }
}

/// One etcd member.
struct Member {
    name: String,
    ns: String,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of the test's own, on an underlay.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
    /// The cluster's token (the same for every member).
    token: String,
}

/// The client port of every member.
pub const ETCD_PORT: u16 = 2379;

impl EtcdCluster {
    /// `n` members on `ul` (192.168.200.201…), started and healthy.
    pub fn start(ul: &Underlay, tag: &str, n: usize) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let ns = format!("wt-{tag}-etcd{i}-{}-{seq}", std::process::id());
                add_ns(&ns);
                let addr = format!("192.168.200.{}", 201 + i);
                ul.join_ns(&ns, "eth0", &addr);
                let dir = std::env::temp_dir().join(format!("weft-itest-{ns}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("etcd dir");
                Member { name: format!("m{i}"), ns, addr, dir, child: None }
            })
            .collect();
        let initial = members.iter().map(|m| format!("{}=http://{}:2380", m.name, m.addr)).collect::<Vec<_>>().join(",");
        let token = format!("wt-{tag}-{}-{seq}", std::process::id());
        let mut c = Self { members, initial, token };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let (initial, token) = (self.initial.clone(), self.token.clone());
        let m = &mut self.members[i];
        let log = std::fs::File::create(m.dir.join("etcd.log")).expect("etcd log");
        let client = format!("http://{}:{ETCD_PORT}", m.addr);
        let peer = format!("http://{}:2380", m.addr);
        let child = Command::new("ip")
            .args(["netns", "exec", &m.ns, "etcd", "--name", &m.name, "--data-dir"])
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &format!("{client},http://127.0.0.1:{ETCD_PORT}"), "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial, "--initial-cluster-state", "new", "--initial-cluster-token", &token])
            // Quick elections: the tests kill members and wait for the others to go on.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log)
            .spawn()
            .expect("start etcd (installed by scripts/setup.sh)");
        m.child = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let m = &self.members[i];
        let t0 = Instant::now();
        loop {
            let o = run(Command::new("ip").args(["netns", "exec", &m.ns, "etcdctl", "--endpoints", &format!("http://127.0.0.1:{ETCD_PORT}"), "--command-timeout=1s", "endpoint", "health"]));
            if o.status.success() {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "etcd member {} not healthy within 20 s: {}\n{}", m.name, text(&o), std::fs::read_to_string(m.dir.join("etcd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcd://A:2379,B:2379,…` for weftd's `--store`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// The members' client endpoints (`ADDR:2379`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("{}:{ETCD_PORT}", m.addr)).collect()
    }

    /// The namespace of member `i` (a client there reaches it at 127.0.0.1:2379).
    pub fn member_ns(&self, i: usize) -> &str {
        &self.members[i].ns
    }

    /// Kills member `i` (`kill -9`); its data stays for [`EtcdCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
        self.wait_healthy(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        for m in &self.members {
            del_ns(&m.ns);
            let _ = std::fs::remove_dir_all(&m.dir);
        }
    }
}

/// Runs `f` on a thread of its own that has entered namespace `ns` (sockets it opens live there),
/// with a single-threaded tokio runtime: for clients the test itself runs against a namespace's
/// servers.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Test hosts on one underlay and one etcd: host `i` is `h{i}` at 192.168.200.(i+1) (its
/// `--advertise-addr`), its daemon on the cluster's etcd. Fields drop in order: the hosts (their
/// teardown needs etcd), then etcd, then the underlay.
pub struct Cluster {
    pub hosts: Vec<Host>,
    pub etcd: EtcdCluster,
    pub ul: Underlay,
}

impl Cluster {
    /// `hosts` hosts and `members` etcd members; each daemon started with `extra` flags too.
    pub fn new(tag: &str, hosts: usize, members: usize, extra: &[&str]) -> Self {
        let ul = Underlay::new(tag);
        let etcd = EtcdCluster::start(&ul, tag, members);
        let mut c = Self { hosts: Vec::new(), etcd, ul };
        for i in 0..hosts {
            let h = Host::new(&format!("{tag}{i}"));
            c.ul.join(&h, &Self::addr(i));
            c.hosts.push(h);
            c.start(i, extra);
        }
        c
    }

    /// Host `i`'s underlay address.
    pub fn addr(i: usize) -> String {
        format!("192.168.200.{}", i + 1)
    }

    /// Host `i`'s daemon flags on this cluster, then `extra`.
    pub fn args(&self, i: usize, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = ["--host-id", &format!("h{i}"), "--store", &self.etcd.url(), "--advertise-addr", &Self::addr(i)].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// Starts (or restarts) host `i`'s daemon.
    pub fn start(&mut self, i: usize, extra: &[&str]) {
        let args = self.args(i, extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hosts[i].start(&refs);
    }

    /// Finishes every host (leak checks), then removes etcd and the underlay.
    pub fn finish(mut self) {
        for h in self.hosts.drain(..) {
            h.finish();
        }
    }
}

/// `n` containers named `{prefix}{i}` on network `net`, started from `threads` threads at
/// once; returns the names that started and the one-line errors of those that did not.
pub fn run_many(h: &Host, prefix: &str, net: &str, n: usize, threads: usize) -> (Vec<String>, Vec<String>) {
    let rootfs = h.rootfs();
    let mut started = Vec::new();
    let mut refused = Vec::new();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let rootfs = rootfs.clone();
                s.spawn(move || {
                    let mut ok = Vec::new();
                    let mut err = Vec::new();
                    for i in (t..n).step_by(threads) {
                        let name = format!("{prefix}{i}");
                        let o = h.weft(&["run", "-d", "--name", &name, "--net", net, "--rootfs", &rootfs, "--", "sleep", "600"]);
                        if o.status.success() {
                            ok.push(name);
                        } else {
                            err.push(String::from_utf8_lossy(&o.stderr).trim().to_string());
                        }
                    }
                    (ok, err)
                })
            })
            .collect();
        for w in workers {
            let (ok, err) = w.join().expect("worker");
            started.extend(ok);
            refused.extend(err);
        }
    });
    (started, refused)
}

/// name -> address on `net`, for every container of `h` on it.
pub fn addresses(h: &Host, net: &str) -> HashMap<String, String> {
    let ids = h.ok(&["ps", "-q"]);
    let mut out = HashMap::new();
    for id in ids.lines() {
        let v = crate::inspect(h, id);
        if let Some(ip) = v["NetworkSettings"]["Networks"][net]["IPAddress"].as_str() {
            out.insert(v["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(), ip.to_string());
        }
    }
    out
}
