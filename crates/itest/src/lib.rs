//! The integration-test harness. A [`Host`] is a throwaway network namespace with its own weftd,
//! data-root, exec-root and socket, so tests run in parallel and never touch the machine's own
//! network. [`Host::finish`] removes every container with `weft rm -f`, stops the daemon, and then
//! runs the leak check ([`leaks`]) *before* sweeping anything: what weft left behind fails the
//! test, by name. A test that fails early gets the same teardown and check from `Drop` (the
//! failure stays the first message; what leaked is printed after it).
//!
//! Probes that can come out negative ([`Host::ping`], [`Host::tcp_open`], [`Host::probe`]) assert
//! that the probe itself ran, so "no answer" never stands for "the command failed to start".
//!
//! Tests need root and the binaries built (`cargo build --workspace` first; `WEFT_BIN_DIR`
//! overrides where they are looked for). A test that cannot run fails; nothing is skipped.

pub mod cluster;
pub mod leaks;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use leaks::{Leak, Proc};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Where weftd, weft and weft-init are.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("WEFT_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test binary> -> target/<profile>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    for b in ["weftd", "weft", "weft-init", "weft-cni"] {
        assert!(dir.join(b).is_file(), "{} missing: run `cargo build --workspace` first", dir.join(b).display());
    }
    dir
}

/// Makes a busybox root filesystem at `dir` with the project's own `scripts/rootfs.sh` (what
/// users run too).
fn make_rootfs(dir: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/rootfs.sh");
    let o = run(Command::new("bash").arg(script).arg(dir));
    assert!(o.status.success(), "{script} {}: {}", dir.display(), text(&o));
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A test host: a network namespace with a daemon.
pub struct Host {
    pub ns: String,
    pub dir: PathBuf,
    pub sock: String,
    daemon: Option<Child>,
    /// The arguments of the last successful start (the teardown restarts a stopped daemon with
    /// them to remove the containers through weft).
    args: Option<Vec<String>>,
    finished: bool,
    /// Other namespaces the test made, removed with the host.
    extra_ns: Vec<String>,
    /// Open vSwitch's servers started in the host's namespace ([`Host::start_ovs`]).
    ovs: Vec<Child>,
    /// Container processes seen while the test ran (the leak check looks for them).
    containers: Mutex<Vec<Proc>>,
    /// Environment variables of the daemon's next starts ([`Host::daemon_env`]).
    env: Vec<(String, String)>,
    /// The daemon's next starts get a private mount namespace, as `ip netns exec` or systemd's
    /// `PrivateMounts` give it: its mounts die with it.
    pub private_mounts: bool,
}

impl Host {
    /// A fresh namespace (with `lo` up) and directories; the daemon is not started yet.
    pub fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let ns = format!("wt-{tag}-{}-{n}", std::process::id());
        let o = run(Command::new("ip").args(["netns", "add", &ns]));
        assert!(o.status.success(), "ip netns add {ns} (tests need root): {}", text(&o));
        let dir = std::env::temp_dir().join(format!("weft-itest-{ns}"));
        let host = Host {
            sock: dir.join("weft.sock").display().to_string(),
            dir,
            ns,
            daemon: None,
            args: None,
            finished: false,
            extra_ns: Vec::new(),
            ovs: Vec::new(),
            containers: Mutex::new(Vec::new()),
            env: Vec::new(),
            private_mounts: false,
        };
        host.ip(&["link", "set", "lo", "up"]);
        std::fs::create_dir_all(&host.dir).expect("test dir");
        host
    }

    /// This host's busybox rootfs (containers write into its /tmp).
    pub fn rootfs(&self) -> String {
        let dst = self.dir.join("rootfs");
        if !dst.join("bin/busybox").exists() {
            make_rootfs(&dst);
        }
        dst.display().to_string()
    }

    /// This host's rootfs with the attacker's tool as `/bin/weft-attack`.
    pub fn attacker_rootfs(&self) -> String {
        let rootfs = self.rootfs();
        std::fs::copy(attack_tool(), Path::new(&rootfs).join("bin/weft-attack")).expect("copy the attack tool");
        rootfs
    }

    /// `ip -n NS ARGS`, asserted to succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let o = run(Command::new("ip").arg("-n").arg(&self.ns).args(args));
        assert!(o.status.success(), "ip -n {} {args:?}: {}", self.ns, text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// The names of the host's links, sorted (states change asynchronously; names are what a
    /// refused command must not change).
    pub fn link_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ip(&["-o", "link"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
            .collect();
        v.sort();
        v
    }

    /// A shell command run in the host's namespace (not in a container).
    pub fn sh(&self, cmd: &str) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.ns, "sh", "-c", cmd]))
    }

    /// A shell command in the host's namespace, asserted to succeed; returns stdout.
    pub fn sh_ok(&self, cmd: &str) -> String {
        let o = self.sh(cmd);
        assert!(o.status.success(), "on the test host: {cmd}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn daemon_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns));
        if self.private_mounts {
            c.args(["unshare", "--mount", "--propagation", "private"]);
        }
        c.arg(bin_dir().join("weftd"))
            .arg("--host")
            .arg(format!("unix://{}", self.sock))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Sets (with `Some`) or clears an environment variable of the daemon's next starts.
    pub fn daemon_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.into(), v.into()));
        }
    }

    /// The test daemon's `--cgroup-parent`: relative (under the test process's cgroups, which
    /// weftd inherits) and unique to this host, so parallel tests never see each other's.
    pub fn cgroup_parent(&self) -> String {
        format!("weft-itest-{}", self.ns)
    }

    /// The parent's directory in each mounted cgroup hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        leaks::cgroup_parents(&self.cgroup_parent())
    }

    /// Starts weftd with `args` and waits until it answers.
    pub fn start(&mut self, args: &[&str]) {
        assert!(self.daemon.is_none(), "daemon already running");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Err(e) = self.try_start(&args) {
            panic!("{e}");
        }
    }

    fn try_start(&mut self, args: &[String]) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weftd.log"))
            .map_err(|e| format!("daemon log: {e}"))?;
        let child = self
            .daemon_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("log fd: {e}"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn weftd: {e}"))?;
        self.daemon = Some(child);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if self.weft(&["ps"]).status.success() {
                self.args = Some(args.to_vec());
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                self.daemon = None;
                return Err(format!("weftd exited with {status}: {}", self.daemon_log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("weftd did not answer within 10 s: {}", self.daemon_log()))
    }

    /// Starts weftd expecting it to refuse; returns what it printed.
    pub fn start_fails(&self, args: &[&str]) -> String {
        let o = run(self.daemon_cmd(args).stdin(Stdio::null()));
        assert!(!o.status.success(), "weftd {args:?} should have failed");
        text(&o)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weftd.log")).unwrap_or_default()
    }

    /// SIGTERM; the daemon must exit, successfully, within 5 s (containers keep running).
    pub fn stop_daemon(&mut self) {
        if let Err(e) = self.try_stop() {
            panic!("{e}");
        }
    }

    fn try_stop(&mut self) -> Result<(), String> {
        let Some(mut c) = self.daemon.take() else { return Ok(()) };
        let o = run(Command::new("kill").arg("-TERM").arg(c.id().to_string()));
        if !o.status.success() {
            return Err(format!("kill -TERM weftd: {}", text(&o)));
        }
        let t0 = Instant::now();
        loop {
            match c.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("weftd exited with {status} on SIGTERM: {}", self.daemon_log())),
                Ok(None) if t0.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return Err("weftd did not stop within 5 s of SIGTERM".into());
                }
            }
        }
    }

    /// The running daemon's pid.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// SIGKILL the daemon at whatever it is doing.
    pub fn kill9_daemon(&mut self) {
        let mut c = self.daemon.take().expect("kill9_daemon: no daemon running");
        c.kill().expect("SIGKILL weftd");
        c.wait().expect("reap weftd");
    }

    /// The CLI against this host's daemon, not yet run (for clients that stream or run in
    /// other threads).
    pub fn cli(&self) -> Command {
        cli(&self.sock)
    }

    /// The CLI with `args` on a terminal of the test's own (a pty pair): what a user at a shell
    /// types and sees.
    pub fn terminal(&self, args: &[&str]) -> Terminal {
        Terminal::spawn(self.cli().args(args))
    }

    /// The CLI against this host's daemon.
    pub fn weft(&self, args: &[&str]) -> Output {
        let o = run(self.cli().args(args));
        if args.first() == Some(&"run") && args.contains(&"-d") && o.status.success() {
            self.remember(String::from_utf8_lossy(&o.stdout).trim());
        }
        o
    }

    /// Notes container `id`'s process for the leak check.
    fn remember(&self, id: &str) {
        let o = run(self.cli().args(["inspect", "-f", "{{.State.Pid}}", id]));
        let pid = String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().unwrap_or(0);
        if let Some(p) = Proc::of(pid).filter(|_| pid > 0) {
            self.containers.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        }
    }

    /// The CLI, asserted to succeed; returns stdout trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.weft(args);
        assert!(o.status.success(), "weft {args:?} failed: {}\ndaemon log:\n{}", text(&o), self.daemon_log());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The CLI, asserted to fail with exactly one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.weft(args);
        assert!(!o.status.success(), "weft {args:?} should have failed: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "one error line expected, got: {err}");
        err
    }

    /// `weft run -d --rootfs … --name NAME EXTRA… -- CMD…`; returns the container's address.
    pub fn run_d(&self, name: &str, extra: &[&str], cmd: &[&str]) -> String {
        let rootfs = self.rootfs();
        let mut args = vec!["run", "-d", "--name", name, "--rootfs", &rootfs];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(cmd);
        self.ok(&args);
        self.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])
    }

    /// A web server in a new container, serving `body` at `/`; returns its address once the
    /// server listens.
    pub fn web(&self, name: &str, extra: &[&str], body: &str) -> String {
        let script = format!("mkdir -p /tmp/{name} && echo {body} > /tmp/{name}/index.html && exec httpd -f -p 80 -h /tmp/{name}");
        let ip = self.run_d(name, extra, &["sh", "-c", &script]);
        self.listening(name, 80);
        ip
    }

    /// Waits until something in container `name` listens on TCP `port`.
    pub fn listening(&self, name: &str, port: u16) {
        eventually(&format!("{name} listens on {port}"), || self.probe(name, &format!("busybox netstat -ltn | grep -q ':{port} '")) == 0);
    }

    /// `weft exec NAME -- CMD…`.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", name, "--"];
        args.extend_from_slice(cmd);
        self.weft(&args)
    }

    /// `weft exec NAME -- CMD…`, asserted to succeed; returns stdout.
    pub fn exec_ok(&self, name: &str, cmd: &[&str]) -> String {
        let o = self.exec(name, cmd);
        assert!(o.status.success(), "exec {cmd:?} in {name} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// The exit code of shell command `cmd` run in container `name` (busybox's applets, so it
    /// works with or without `--rootfs`). The exec itself must work: a probe that could not run
    /// fails the test instead of reading as a negative answer.
    pub fn probe(&self, name: &str, cmd: &str) -> i32 {
        let o = self.exec(name, &["/bin/busybox", "sh", "-c", &format!("{cmd} >/dev/null 2>&1; echo probe-rc=$?")]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let rc = out.lines().find_map(|l| l.strip_prefix("probe-rc=")).and_then(|c| c.parse().ok());
        match rc {
            Some(rc) if o.status.success() => rc,
            _ => panic!("probe `{cmd}` in {name} did not run: {}", text(&o)),
        }
    }

    /// Sends UDP datagrams from container `from` (started without `--rootfs`: the host's python3)
    /// to `dst:port` in the outside namespace until one arrives; returns the source address the
    /// outside host saw (`None` if nothing arrived within 5 s).
    pub fn udp_to_outside(&self, from: &str, dst: &str, port: u16) -> Option<String> {
        use std::io::BufRead;
        let out = self.extra_ns.first().expect("outside() first");
        let nt = nettool();
        let mut rx = Command::new("ip")
            .args(["netns", "exec", out, "python3", &nt, "udp-recv", &port.to_string(), "10", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("udp receiver");
        let mut lines = std::io::BufReader::new(rx.stdout.take().expect("stdout")).lines();
        assert!(lines.next().and_then(|l| l.ok()).is_some_and(|l| l.starts_with("bound")), "the receiver did not bind");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            let o = self.exec(from, &["python3", &nt, "udp-send", dst, &port.to_string(), "40000", "1", "0"]);
            assert!(o.status.success(), "udp-send from {from}: {}", text(&o));
            if rx.try_wait().expect("receiver").is_some() {
                let line = lines.next().and_then(|l| l.ok()).unwrap_or_default();
                return line.split(" from ").nth(1).and_then(|a| a.split(':').next()).map(String::from);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rx.kill();
        let _ = rx.wait();
        None
    }

    /// One ping from inside container `from`: true on a reply, false when none came back
    /// (busybox's exit code 1); anything else fails the test.
    pub fn ping(&self, from: &str, addr: &str) -> bool {
        match self.probe(from, &format!("busybox ping -c1 -W2 {addr}")) {
            0 => true,
            1 => false,
            rc => panic!("ping {addr} from {from}: exit code {rc}"),
        }
    }

    /// A TCP connection from container `from` to `addr:port` (`nc -e true`, 2 s): true if it opened.
    pub fn tcp_open(&self, from: &str, addr: &str, port: u16) -> bool {
        match self.probe(from, &format!("busybox nc -w 2 {addr} {port} -e true")) {
            0 => true,
            1 => false,
            rc => panic!("nc {addr}:{port} from {from}: exit code {rc}"),
        }
    }

    /// `wget` of `http://ADDR/` from inside container `from`.
    pub fn fetch(&self, from: &str, addr: &str) -> Output {
        self.exec(from, &["timeout", "5", "wget", "-q", "-O-", &format!("http://{addr}/")])
    }

    /// The body of `http://ADDR/` fetched from inside container `from`, asserted to arrive.
    pub fn get(&self, from: &str, addr: &str) -> String {
        let o = self.fetch(from, addr);
        assert!(o.status.success(), "GET http://{addr}/ from {from}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `wget` of `http://ADDR/` from the host's namespace (not a container).
    pub fn host_fetch(&self, addr: &str) -> String {
        let o = self.sh(&format!("timeout 5 busybox wget -q -O- http://{addr}/"));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// A command in the outside namespace, asserted to succeed.
    pub fn outside_ok(&self, cmd: &str) -> String {
        let o = self.in_outside(cmd);
        assert!(o.status.success(), "in the outside namespace: {cmd}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// A command in the outside namespace made by [`Host::outside`].
    pub fn in_outside(&self, cmd: &str) -> Output {
        let out = self.extra_ns.first().expect("outside() first");
        run(Command::new("ip").args(["netns", "exec", out, "sh", "-c", cmd]))
    }

    /// Starts Open vSwitch in the host's namespace, as Debian's `openvswitch-switch` has it but
    /// without systemd and with every file under the test's directory: a fresh database,
    /// ovsdb-server, `ovs-vsctl init`, ovs-vswitchd (the userspace datapath needs no kernel
    /// module). Returns ovsdb-server's socket (for `weftd --ovsdb`).
    pub fn start_ovs(&mut self) -> String {
        let dir = self.dir.join("ovs");
        std::fs::create_dir_all(&dir).expect("ovs dir");
        let db = dir.join("conf.db");
        let sock = dir.join("db.sock").display().to_string();
        if !db.exists() {
            let o = run(Command::new("ovsdb-tool").arg("create").arg(&db).arg("/usr/share/openvswitch/vswitch.ovsschema"));
            assert!(o.status.success(), "ovsdb-tool create (is openvswitch-switch installed?): {}", text(&o));
        }
        let server = self.ovs_cmd("ovsdb-server", &[db.display().to_string(), format!("--remote=punix:{sock}"), format!("--unixctl={}/ovsdb.ctl", dir.display()), format!("--log-file={}/ovsdb.log", dir.display())]);
        self.ovs.push(server);
        eventually("ovsdb-server listens", || Path::new(&sock).exists());
        let o = run(Command::new("ovs-vsctl").arg(format!("--db=unix:{sock}")).args(["--no-wait", "init"]));
        assert!(o.status.success(), "ovs-vsctl init: {}", text(&o));
        if self.ovs.len() == 1 {
            let switch = self.ovs_cmd("ovs-vswitchd", &[format!("unix:{sock}"), format!("--unixctl={}/vswitchd.ctl", dir.display()), format!("--log-file={}/vswitchd.log", dir.display())]);
            self.ovs.push(switch);
            eventually("ovs-vswitchd answers", || dir.join("vswitchd.ctl").exists());
        }
        sock
    }

    fn ovs_cmd(&self, program: &str, args: &[String]) -> Child {
        let dir = self.dir.join("ovs");
        Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .envs([("OVS_RUNDIR", &dir), ("OVS_DBDIR", &dir), ("OVS_LOGDIR", &dir), ("OVS_SYSCONFDIR", &dir)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"))
    }

    /// `ovs-vsctl --db=… ARGS` against the host's Open vSwitch, asserted to succeed.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let sock = self.dir.join("ovs/db.sock");
        let o = run(Command::new("ovs-vsctl").arg(format!("--db=unix:{}", sock.display())).arg("--timeout=10").args(args));
        assert!(o.status.success(), "ovs-vsctl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Stops ovsdb-server only (ovs-vswitchd keeps its datapath): a failure half-way for weft.
    pub fn stop_ovsdb(&mut self) {
        let mut server = self.ovs.remove(0);
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_file(self.dir.join("ovs/db.sock"));
    }

    /// Ends Open vSwitch's servers.
    fn stop_ovs(&mut self) {
        for mut c in self.ovs.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A second namespace linked to this host by a veth pair: `host_addr` on the host's end
    /// (`up0`), `peer_addr` on the other (`eth0`), both /24, with no route back to the bridge
    /// subnets (so only NAT lets containers reach it). Returns the namespace's name.
    pub fn outside(&mut self, host_addr: &str, peer_addr: &str) -> String {
        let out = format!("{}-o", self.ns);
        let o = run(Command::new("ip").args(["netns", "add", &out]));
        assert!(o.status.success(), "ip netns add {out}: {}", text(&o));
        self.extra_ns.push(out.clone());
        self.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &out]);
        self.ip(&["addr", "add", &format!("{host_addr}/24"), "dev", "up0"]);
        self.ip(&["link", "set", "up0", "up"]);
        for args in [vec!["link", "set", "lo", "up"], vec!["addr", "add", &format!("{peer_addr}/24"), "dev", "eth0"], vec!["link", "set", "eth0", "up"]] {
            let o = run(Command::new("ip").arg("-n").arg(&out).args(&args));
            assert!(o.status.success(), "ip -n {out} {args:?}: {}", text(&o));
        }
        out
    }

    /// Removes every container (`weft rm -f`), stops the daemon, and runs the leak check before
    /// sweeping: anything weft left behind fails the test, by name.
    pub fn finish(mut self) {
        self.finished = true;
        let found = self.teardown();
        assert!(found.is_empty(), "the leak check found, after rm -f of every container and a daemon stop:\n{}", listing(&found));
    }

    /// The test's own end through weft (restarting a daemon the test stopped), then the leak
    /// check, then the sweep of whatever it found. Never panics: problems are findings.
    fn teardown(&mut self) -> Vec<Leak> {
        let mut found = Vec::new();
        if self.daemon.is_none() {
            if let Some(args) = self.args.clone() {
                if let Err(e) = self.try_start(&args) {
                    found.push(Leak::Teardown(format!("restarting weftd to remove the containers: {e}")));
                }
            }
        }
        if self.daemon.is_some() {
            let ids = self.weft(&["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).lines().map(String::from).collect();
            for id in &ids {
                self.remember(id);
            }
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let o = self.weft(&args);
                if !o.status.success() {
                    found.push(Leak::Teardown(format!("weft rm -f: {}", text(&o))));
                }
            }
            if let Err(e) = self.try_stop() {
                found.push(Leak::Teardown(e));
            }
        }
        // Open vSwitch's servers are the test's, not weft's: stopped before the check.
        self.stop_ovs();
        let namespaces: Vec<String> = [self.ns.clone()].into_iter().chain(self.extra_ns.drain(..)).collect();
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let parent = self.cgroup_parent();
        let scope = leaks::Scope { namespaces: &namespaces, dir: &self.dir, containers: &containers, cgroup_parent: &parent };
        found.extend(leaks::look(&scope));
        leaks::sweep(&scope, &found);
        found
    }
}

fn listing(found: &[Leak]) -> String {
    found.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let found = self.teardown();
        if std::thread::panicking() {
            if !found.is_empty() {
                eprintln!("leak check after the failure above ({}):\n{}", self.ns, listing(&found));
            }
        } else {
            panic!("host {} dropped without finish(); the leak check found:\n{}", self.ns, listing(&found));
        }
    }
}

/// An `ip netns add` namespace of the test's, removed with it.
pub struct Netns(pub String);

impl Netns {
    pub fn new(h: &Host) -> Self {
        Self::named(h, "for")
    }
    /// A second (third…) namespace of the test's.
    pub fn named(h: &Host, suffix: &str) -> Self {
        let name = format!("{}-{suffix}", h.ns);
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip").success();
        assert!(ok, "ip netns add {name}");
        Self(name)
    }
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    pub fn sh(&self, cmd: &str) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", &self.0, "sh", "-c", cmd]).output().expect("sh")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The CLI against the daemon listening on `sock` (a path), not yet run.
pub fn cli(sock: &str) -> Command {
    let mut c = Command::new(bin_dir().join("weft"));
    c.arg("-H").arg(format!("unix://{sock}"));
    c
}

/// The traffic tool of the tests (UDP, raw SCTP, packet capture); containers started without
/// `--rootfs` see the host's filesystem, so they can run it with the host's python3.
pub fn nettool() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tools/nettool.py").to_string()
}

/// The attacker's tool (`tools/attack.c`), built static once per test process next to the
/// binaries, so it runs in a busybox rootfs.
pub fn attack_tool() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = bin_dir().join("weft-attack");
            let tmp = bin_dir().join(format!("weft-attack.{}", std::process::id()));
            let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/attack.c");
            let o = run(Command::new("gcc").args(["-static", "-O1", "-Wall", "-o"]).arg(&tmp).arg(src));
            assert!(o.status.success(), "build {src} (gcc and libc6-dev, which scripts/setup.sh installs): {}", text(&o));
            std::fs::rename(&tmp, &out).expect("place the attack tool");
            out
        })
        .clone()
}

/// Polls `cond` every 10 ms for up to 5 s (kernel work the daemon finishes in the background,
/// such as deleting a removed container's veth).
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(5), cond);
}

/// [`eventually`] with a deadline of the caller's: for work whose pace is the machine's (processes
/// forking under a loaded CI run), not the daemon's.
pub fn eventually_within(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("not within {limit:?}: {what}");
}

/// Parses `ip -o -4 addr show` style output for the first IPv4 address with its prefix.
pub fn first_inet(ip_addr_output: &str) -> Option<String> {
    ip_addr_output.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(String::from)
}

/// JSON of `weft inspect NAME`.
pub fn inspect(h: &Host, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", name])).expect("inspect JSON");
    v[0].clone()
}

/// A program running on a pty the test holds the master side of.
pub struct Terminal {
    master: std::fs::File,
    child: Child,
    /// Everything the program wrote so far.
    pub seen: String,
    /// Where the next [`Terminal::expect`] starts looking.
    from: usize,
}

impl Terminal {
    fn spawn(cmd: &mut Command) -> Self {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let io = || Stdio::from(slave.try_clone().expect("dup pty"));
        // SAFETY: runs in the forked child before exec; setsid and ioctl are async-signal-safe.
        // The program leads a session whose controlling terminal is the pty (so it gets SIGWINCH).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.stdin(io()).stdout(io()).stderr(io()).spawn().expect("spawn on the terminal");
        drop(slave);
        let master = std::fs::File::from(pty.master);
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).expect("nonblocking pty");
        Self { master, child, seen: String::new(), from: 0 }
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).expect("type on the terminal");
    }

    fn pump(&mut self) -> bool {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(n) if n > 0 => {
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                true
            }
            _ => false,
        }
    }

    /// Waits (10 s at most) until `needle` appears after what earlier expects matched; returns
    /// the output up to and including it.
    pub fn expect(&mut self, needle: &str) -> String {
        let t0 = Instant::now();
        loop {
            if let Some(i) = self.seen[self.from..].find(needle) {
                let end = self.from + i + needle.len();
                let got = self.seen[self.from..end].to_string();
                self.from = end;
                return got;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                panic!("terminal never showed {needle:?}; it showed:\n{}", self.seen);
            }
            if !self.pump() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Sets the terminal's size, as a user resizing the window (the program gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        assert!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } == 0, "resize the terminal");
    }

    /// The program's exit code (10 s at most), reading what it still writes.
    pub fn wait(mut self) -> i32 {
        let t0 = Instant::now();
        loop {
            self.pump();
            if let Some(status) = self.child.try_wait().expect("wait") {
                while self.pump() {}
                return status.code().unwrap_or(-1);
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("the program on the terminal did not exit; it showed:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process of the test's, killed and reaped when dropped (also when the test fails).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nettool dns-server` in namespace `ns` on `ip`:53 for 300 s: answers `name` with `addr`,
/// NXDOMAIN otherwise, each answer `delay` seconds late ("never": no answers). Returns once it
/// listens.
pub fn dns_server(ns: &str, ip: &str, name: &str, addr: &str, delay: &str) -> Killed {
    use std::io::BufRead;
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, "python3", &nettool(), "dns-server", ip, name, addr, "300", delay])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dns server");
    let mut lines = std::io::BufReader::new(c.stdout.take().expect("stdout")).lines();
    assert!(lines.next().and_then(|l| l.ok()).is_some_and(|l| l.starts_with("bound")), "the DNS server did not bind");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Killed(c)
}

/// One raw HTTP/1.1 exchange (the request closes the connection); returns status and body.
pub fn http(h: &Host, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String, String) {
    let mut s = std::os::unix::net::UnixStream::connect(&h.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n{ct}Content-Length: {}\r\n\r\n", body.len());
    std::io::Write::write_all(&mut s, head.as_bytes()).expect("write head");
    // A peer that answers before reading the whole body may close early: that is fine.
    let _ = std::io::Write::write_all(&mut s, body);
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}
