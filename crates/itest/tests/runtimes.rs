//! weft under other runtimes (issue 20): the CNI plugin driven by libcni (the library Podman,
//! containerd and CRI-O use) and run directly, Podman on its CNI backend, and runc with weft's
//! OCI hook. Each client is the real one; every container it starts gets a weft endpoint, shares
//! weft's IPAM, DNS and published ports, and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use weft_itest::{bin_dir, eventually, text, Host, Killed, Netns};

/// A directory of CNI plugins: `weft-cni` and the reference plugins weft is chained with.
fn cni_bin(h: &Host) -> PathBuf {
    let dir = h.dir.join("cni-bin");
    std::fs::create_dir_all(&dir).expect("cni bin dir");
    let link = |from: &Path, name: &str| {
        let to = dir.join(name);
        if !to.exists() {
            std::os::unix::fs::symlink(from, &to).expect("symlink");
        }
    };
    link(&bin_dir().join("weft-cni"), "weft-cni");
    for p in ["loopback", "tuning"] {
        let src = Path::new("/usr/lib/cni").join(p);
        assert!(src.is_file(), "{} missing: scripts/setup.sh installs containernetworking-plugins", src.display());
        link(&src, p);
    }
    dir
}

/// Builds the libcni client (`tools/cnitool.go`) with Debian's Go and libcni, offline.
fn cnitool(h: &Host) -> PathBuf {
    let out = h.dir.join("cnitool");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/cnitool.go");
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(src)
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:/usr/share/gocode", h.dir.join("gopath").display()))
        .env("GOCACHE", h.dir.join("gocache"))
        .output()
        .expect("go (scripts/setup.sh installs golang-go and golang-github-appc-cni-dev)");
    assert!(o.status.success(), "go build cnitool: {}", text(&o));
    out
}

/// `weft-cni` run directly, as a runtime execs it: `CNI_*` from `env`, `conf` on stdin.
fn plugin(h: &Host, env: &[(&str, &str)], conf: &str) -> (bool, Value) {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", h.ns)).arg(bin_dir().join("weft-cni")).env_clear().env("CNI_PATH", cni_bin(h));
    for (k, v) in env {
        c.env(format!("CNI_{k}"), v);
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("weft-cni");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), conf.as_bytes()).expect("write conf");
    let o = child.wait_with_output().expect("weft-cni");
    let out = String::from_utf8_lossy(&o.stdout);
    let v = if out.trim().is_empty() { Value::Null } else { serde_json::from_str(&out).unwrap_or_else(|e| panic!("weft-cni printed no JSON ({e}): {}", text(&o))) };
    (o.status.success(), v)
}

fn has_addr(ns: &Netns, ifname: &str, cidr: &str) -> bool {
    String::from_utf8_lossy(&ns.sh(&format!("ip -o addr show {ifname}")).stdout).contains(cidr)
}

/// libcni drives ADD (after `loopback`, before `tuning`: weft's result chains both ways),
/// CHECK (which fails once the interface is deleted by hand) and DEL; the container is reached
/// by name from a weft container, resolves weft's names, and its published port answers from
/// outside. Run directly, the plugin answers VERSION, STATUS and GC, refuses what it cannot do
/// with CNI error objects, and its DEL succeeds without a namespace, twice, and after a restart.
#[test]
fn the_cni_plugin_under_libcni_and_run_directly() {
    let mut h = Host::new("cni");
    h.start(&[]);
    h.ok(&["network", "create", "--subnet", "10.70.0.0/24", "cninet"]);
    h.run_d("w1", &["--network", "cninet"], &["sleep", "300"]);
    let w1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.cninet.IPAddress}}", "w1"]);
    h.outside("198.51.100.1", "198.51.100.2");
    let bin = cni_bin(&h);
    let tool = cnitool(&h);
    let list = h.dir.join("cninet.conflist");
    let conflist = format!(
        r#"{{"cniVersion":"1.0.0","name":"cninet","plugins":[{{"type":"loopback"}},{{"type":"weft-cni","socket":"{}","capabilities":{{"portMappings":true}}}},{{"type":"tuning","sysctl":{{"net.ipv4.conf.eth0.arp_filter":"1"}}}}]}}"#,
        h.sock
    );
    std::fs::write(&list, conflist).expect("conflist");
    let ns = Netns::named(&h, "c1");
    let cache = h.dir.join("cni-cache");
    let lib = |cmd: &str, id: &str, netns: &str, extra: &[(&str, &str)]| -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", h.ns)).arg(&tool).args([cmd, &list.display().to_string(), id, netns, "eth0"]);
        c.env("CNI_PATH", &bin).env("CNI_CACHE", &cache).envs(extra.iter().copied());
        c.output().expect("cnitool")
    };
    let o = lib("add", "libcni-c1", &ns.path(), &[("POD", "cpod"), ("PORTS", r#"[{"hostPort":8089,"containerPort":80,"protocol":"tcp"}]"#)]);
    assert!(o.status.success(), "libcni ADD: {}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("ADD result");
    let ips: Vec<&str> = r["ips"].as_array().expect("ips").iter().filter_map(|i| i["address"].as_str()).collect();
    assert!(ips.contains(&"127.0.0.1/8"), "loopback's address before weft's: {r}");
    let addr = ips.iter().find(|a| a.starts_with("10.70.0.")).unwrap_or_else(|| panic!("weft's address in the result: {r}")).to_string();
    assert_eq!(r["dns"]["nameservers"][0], "127.0.0.11", "the embedded DNS: {r}");
    assert!(has_addr(&ns, "eth0", &addr), "eth0 has {addr}");
    // `tuning` ran after weft, on weft's interface (it read weft's result).
    assert_eq!(String::from_utf8_lossy(&ns.sh("cat /proc/sys/net/ipv4/conf/eth0/arp_filter").stdout).trim(), "1");
    let ip = addr.split('/').next().expect("ip").to_string();
    assert!(h.ping("w1", "cpod"), "a weft container reaches the CNI container by its pod name");
    let o = ns.sh(&format!("busybox ping -c1 -W2 {w1} && busybox nslookup w1 127.0.0.11"));
    assert!(o.status.success(), "the CNI container reaches w1 and resolves its name: {}", text(&o));
    let web = Killed(Command::new("ip").args(["netns", "exec", &ns.0, "busybox", "httpd", "-f", "-p", "80", "-h", "/proc/self/cwd"]).spawn().expect("httpd"));
    eventually("httpd listens", || ns.sh("busybox netstat -ltn | grep -q ':80 '").status.success());
    let got = h.in_outside("timeout 5 busybox wget -q -S -O /dev/null http://198.51.100.1:8089/ 2>&1");
    assert!(String::from_utf8_lossy(&got.stdout).contains("HTTP/1."), "portMappings: the port answers from outside: {}", text(&got));

    let o = lib("check", "libcni-c1", &ns.path(), &[]);
    assert!(o.status.success(), "libcni CHECK: {}", text(&o));
    assert!(ns.sh("ip link set eth0 down").status.success());
    let o = lib("check", "libcni-c1", &ns.path(), &[]);
    assert!(!o.status.success() && text(&o).contains("eth0") && text(&o).contains("is down"), "CHECK after eth0 was set down: {}", text(&o));
    // Deleted by hand: weft sees its veth go and drops the attachment, which CHECK then misses.
    assert!(ns.sh("ip link del eth0").status.success());
    eventually("CHECK fails once eth0 is deleted", || {
        let o = lib("check", "libcni-c1", &ns.path(), &[]);
        !o.status.success() && text(&o).contains("libcni-c1 as eth0 on cninet")
    });
    let o = lib("del", "libcni-c1", &ns.path(), &[]);
    assert!(o.status.success(), "libcni DEL: {}", text(&o));
    assert!(!h.ok(&["sandbox", "ls"]).contains("cpod"), "DEL removed the attachment");
    h.run_d("w2", &["--network", "cninet", "--ip", &ip], &["sleep", "300"]);
    h.ok(&["rm", "-f", "w2"]);
    let got = h.in_outside("timeout 3 busybox wget -q -O /dev/null http://198.51.100.1:8089/ 2>&1");
    assert!(!got.status.success(), "the port went with the attachment");
    drop(web);
    drop(ns);

    // Run directly: VERSION, ADD of two containers, GC keeping one, STATUS, errors, DEL.
    let sock = h.sock.clone();
    let conf = |v: &str, extra: &str| format!(r#"{{"cniVersion":"{v}","name":"cninet","type":"weft-cni","socket":"{sock}"{extra}}}"#);
    let (ok, v) = plugin(&h, &[("COMMAND", "VERSION")], &conf("1.1.0", ""));
    assert!(ok && v["supportedVersions"].as_array().is_some_and(|a| a.contains(&Value::from("1.1.0"))), "VERSION: {v}");
    let (a, b) = (Netns::named(&h, "ga"), Netns::named(&h, "gb"));
    for (id, n) in [("gc-a", &a), ("gc-b", &b)] {
        let (ok, v) = plugin(&h, &[("COMMAND", "ADD"), ("CONTAINERID", id), ("NETNS", &n.path()), ("IFNAME", "eth0")], &conf("1.1.0", ""));
        assert!(ok, "ADD {id}: {v}");
        assert_eq!(v["cniVersion"], "1.1.0");
    }
    let (ok, v) = plugin(&h, &[("COMMAND", "ADD"), ("CONTAINERID", "gc-a"), ("NETNS", &a.path()), ("IFNAME", "eth0")], &conf("1.1.0", ""));
    assert!(!ok && v["code"].as_u64() == Some(100) && v["msg"].as_str().is_some_and(|m| m.contains("already")), "a second ADD of one attachment: {v}");
    let (ok, v) = plugin(&h, &[("COMMAND", "GC")], &conf("1.1.0", r#","cni.dev/valid-attachments":[{"containerID":"gc-a","ifname":"eth0"}]"#));
    assert!(ok, "GC: {v}");
    let shown = h.ok(&["sandbox", "ls"]);
    assert!(shown.contains("gc-a") && !shown.contains("gc-b"), "GC removed only gc-b: {shown}");
    eventually("gc-b's interface gone", || !has_addr(&b, "eth0", "10.70.0."));
    assert!(plugin(&h, &[("COMMAND", "STATUS")], &conf("1.1.0", "")).0, "STATUS of an existing network");
    let (ok, v) = plugin(&h, &[("COMMAND", "STATUS")], &format!(r#"{{"cniVersion":"1.1.0","name":"nonet","socket":"{}"}}"#, h.sock));
    assert!(!ok && v["code"] == 50, "STATUS of a missing network: {v}");
    let (ok, v) = plugin(&h, &[("COMMAND", "ADD"), ("CONTAINERID", "x"), ("NETNS", &a.path()), ("IFNAME", "eth1")], &conf("9.9.9", ""));
    assert!(!ok && v["code"] == 1, "an unknown version: {v}");
    let (ok, v) = plugin(&h, &[("COMMAND", "ADD"), ("CONTAINERID", "x"), ("IFNAME", "eth1")], &conf("1.0.0", ""));
    assert!(!ok && v["code"] == 4 && v["msg"].as_str().is_some_and(|m| m.contains("CNI_NETNS")), "no namespace: {v}");
    let (ok, v) = plugin(&h, &[("COMMAND", "ADD"), ("CONTAINERID", "x"), ("NETNS", &a.path()), ("IFNAME", "eth1")], "{not json");
    assert!(!ok && v["code"] == 6, "a configuration that is not JSON: {v}");
    assert!(!h.ok(&["sandbox", "ls"]).contains(" x "), "refused calls made nothing");
    // DEL: idempotent, without a namespace (containerd sends none), and after a restart.
    h.stop_daemon();
    let (ok, v) = plugin(&h, &[("COMMAND", "DEL"), ("CONTAINERID", "gc-a"), ("NETNS", ""), ("IFNAME", "eth0")], &conf("1.0.0", ""));
    assert!(!ok && v["code"] == 11, "DEL while weftd is away: try again later: {v}");
    h.start(&[]);
    for _ in 0..2 {
        let (ok, v) = plugin(&h, &[("COMMAND", "DEL"), ("CONTAINERID", "gc-a"), ("NETNS", ""), ("IFNAME", "eth0")], &conf("1.0.0", ""));
        assert!(ok, "DEL with an empty CNI_NETNS after a restart: {v}");
    }
    assert!(!h.ok(&["sandbox", "ls"]).contains("gc-a"), "gone");
    eventually("gc-a's interface gone", || !has_addr(&a, "eth0", "10.70.0."));
    drop((a, b));
    h.finish();
}

/// A runc bundle: busybox's root filesystem, `cmd` as its process, weft's hook for
/// createRuntime and poststop, and `annotations`; `own_netns: false` leaves the container in the
/// runtime's network namespace.
fn bundle(h: &Host, name: &str, annotations: Value, own_netns: bool) -> PathBuf {
    let dir = h.dir.join(format!("bundle-{name}"));
    std::fs::create_dir_all(&dir).expect("bundle dir");
    let o = Command::new("runc").arg("spec").current_dir(&dir).output().expect("runc (scripts/setup.sh installs it)");
    assert!(o.status.success(), "runc spec: {}", text(&o));
    let mut spec: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config.json")).expect("config.json");
    spec["root"] = serde_json::json!({"path": h.rootfs(), "readonly": true});
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sleep", "300"]);
    // ping needs a raw socket (runc's default spec leaves NET_RAW out).
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set].as_array_mut().expect("capabilities").push("CAP_NET_RAW".into());
    }
    spec["hostname"] = name.into();
    spec["annotations"] = annotations;
    spec["linux"]["cgroupsPath"] = format!("/weft-itest-{}-{name}", h.ns).into();
    if !own_netns {
        spec["linux"]["namespaces"].as_array_mut().expect("namespaces").retain(|n| n["type"] != "network");
    }
    let hook = serde_json::json!([{"path": bin_dir().join("weft"), "args": ["weft", "-H", format!("unix://{}", h.sock), "oci-hook"], "timeout": 30}]);
    spec["hooks"] = serde_json::json!({"createRuntime": hook, "poststop": hook});
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec).expect("json")).expect("write config.json");
    dir
}

/// `runc` in the test host's network namespace, its state under the test's directory.
fn runc(h: &Host, args: &[&str]) -> Output {
    runc_in(&h.ns, &h.dir, args)
}

fn runc_in(ns: &str, dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}")).arg("runc").arg("--root").arg(dir.join("runc")).args(args);
    through_file(&mut c, &dir.join("runc.out"))
}

/// Runs `c` with its output (both streams) through file `out`: a container it starts detached
/// inherits the output, and would hold a pipe open until it exits.
fn through_file(c: &mut Command, out: &Path) -> Output {
    let f = std::fs::File::create(out).expect("output file");
    let status = c.stdin(Stdio::null()).stdout(f.try_clone().expect("fd")).stderr(f).status().expect("spawn");
    Output { status, stdout: std::fs::read(out).expect("output"), stderr: Vec::new() }
}

/// Deletes runc containers of the test's however it ends (their processes, cgroups and state).
struct RuncContainers(String, PathBuf, &'static [&'static str]);

impl Drop for RuncContainers {
    fn drop(&mut self) {
        for id in self.2 {
            let _ = runc_in(&self.0, &self.1, &["delete", "-f", id]);
        }
    }
}

/// runc runs a bundle whose annotations name a weft network: weft's createRuntime hook gives it
/// `eth0` there (with the address asked for), a weft container reaches it by name and it reaches
/// the weft container; a bundle without a network namespace of its own is refused; the
/// container's exit and its poststop hook release the address.
#[test]
fn runc_containers_join_weft_networks_through_the_oci_hook() {
    let mut h = Host::new("oci");
    h.start(&[]);
    h.ok(&["network", "create", "--subnet", "10.71.0.0/24", "ocinet"]);
    h.run_d("w1", &["--network", "ocinet"], &["sleep", "300"]);
    let w1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.ocinet.IPAddress}}", "w1"]);
    let cleanup = RuncContainers(h.ns.clone(), h.dir.clone(), &["r1", "r2"]);
    let b = bundle(&h, "r1", serde_json::json!({"io.weft.network": "ocinet", "io.weft.name": "r1", "io.weft.ip": "10.71.0.50"}), true);
    let o = runc(&h, &["run", "-d", "--bundle", &b.display().to_string(), "r1"]);
    assert!(o.status.success(), "runc run: {}", text(&o));
    let o = runc(&h, &["exec", "r1", "ip", "-o", "addr", "show", "eth0"]);
    assert!(text(&o).contains("10.71.0.50/24"), "eth0 inside the runc container: {}", text(&o));
    let o = runc(&h, &["exec", "r1", "ping", "-c1", "-W2", &w1]);
    assert!(o.status.success(), "the runc container reaches w1: {}", text(&o));
    assert!(h.ping("w1", "r1"), "w1 reaches the runc container by name");
    assert!(h.ok(&["sandbox", "ls"]).contains("r1"));

    // No network namespace of its own: the hook refuses, runc fails, nothing is attached.
    let shared = bundle(&h, "r2", serde_json::json!({"io.weft.network": "ocinet", "io.weft.name": "r2"}), false);
    let o = runc(&h, &["run", "-d", "--bundle", &shared.display().to_string(), "r2"]);
    assert!(!o.status.success() && text(&o).contains("shares the runtime's network namespace"), "runc run without a network namespace: {}", text(&o));
    let _ = runc(&h, &["delete", "-f", "r2"]);
    assert!(!h.ok(&["sandbox", "ls"]).contains("r2"));

    // The container goes: its attachment and address with it.
    let o = runc(&h, &["kill", "r1", "KILL"]);
    assert!(o.status.success(), "runc kill: {}", text(&o));
    eventually("r1 stopped", || text(&runc(&h, &["state", "r1"])).contains("\"stopped\""));
    let o = runc(&h, &["delete", "r1"]);
    assert!(o.status.success(), "runc delete (the poststop hook detaches again: a no-op): {}", text(&o));
    eventually("r1's attachment gone", || !h.ok(&["sandbox", "ls"]).contains("r1"));
    h.run_d("w2", &["--network", "ocinet", "--ip", "10.71.0.50"], &["sleep", "300"]);
    drop(cleanup);
    h.finish();
}

/// Podman 4.3 on its CNI backend, with a private configuration and storage under the test's
/// directory, run in weftd's network namespace and in weftd's private mount namespace (where
/// tmpfs covers /run and /var/lib: the namespaces Podman binds under /run/netns are visible to
/// weftd there, and nothing reaches the machine's own).
struct Podman {
    dir: PathBuf,
    mnt: String,
    net: String,
    cgroup: String,
}

impl Podman {
    fn new(h: &Host, network: &str) -> Self {
        let dir = h.dir.join("podman");
        for d in ["net.d", "tmp", "storage", "run"] {
            std::fs::create_dir_all(dir.join(d)).expect("podman dirs");
        }
        let mnt = format!("/proc/{}/ns/mnt", h.daemon_pid());
        let o = Command::new("nsenter").arg(format!("--mount={mnt}")).args(["sh", "-c", "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib"]).output().expect("nsenter");
        assert!(o.status.success(), "tmpfs in weftd's mount namespace: {}", text(&o));
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{0}/tmp\"\n[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{1}\"]\nnetwork_config_dir = \"{0}/net.d\"\n",
                dir.display(),
                cni_bin(h).display()
            ),
        )
        .expect("containers.conf");
        std::fs::write(dir.join("storage.conf"), format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/run\"\n", dir.display())).expect("storage.conf");
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"{network}","plugins":[{{"type":"weft-cni","socket":"{}","capabilities":{{"portMappings":true,"aliases":true}}}}]}}"#,
            h.sock
        );
        std::fs::write(dir.join("net.d").join(format!("{network}.conflist")), conf).expect("conflist");
        let p = Self { dir, mnt, net: format!("/run/netns/{}", h.ns), cgroup: format!("/weft-itest-{}-podman", h.ns) };
        let tar = p.dir.join("rootfs.tar");
        let o = Command::new("tar").arg("-C").arg(h.rootfs()).arg("-cf").arg(&tar).arg(".").output().expect("tar");
        assert!(o.status.success(), "tar: {}", text(&o));
        let o = p.run(&["import", &tar.display().to_string(), "localhost/bb"]);
        assert!(o.status.success(), "podman import: {}", text(&o));
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        Command::new("nsenter")
            .arg(format!("--mount={}", self.mnt))
            .arg(format!("--net={}", self.net))
            .arg("podman")
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--cni-config-dir")
            .arg(d.join("net.d"))
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .expect("podman (scripts/setup.sh installs it)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "podman {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `podman run -d` of busybox on `network`, with its cgroup under the test's.
    fn run_d(&self, name: &str, network: &str, extra: &[&str], cmd: &[&str]) -> String {
        let parent = format!("--cgroup-parent={}", self.cgroup);
        let args = [&["run", "-d", "--name", name, "--network", network, parent.as_str()], extra, &["localhost/bb"], cmd].concat();
        self.ok(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["rmi", "-af"]);
        // The cgroup parent and what Podman made under it (`conmon`), in every hierarchy.
        for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_cgroup(&h.path().join(self.cgroup.trim_start_matches('/')));
        }
    }
}

/// Removes cgroup directory `dir` and the cgroups under it, deepest first.
fn remove_cgroup(dir: &Path) {
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if sub.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&sub.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Podman on its CNI backend with weft-cni: two Podman containers on a weft network ping each
/// other by name, a Podman container and a weft container talk, `-p` answers from outside,
/// `podman network reload` attaches again, and `podman rm` releases the address.
#[test]
fn podman_containers_on_a_weft_network() {
    let mut h = Host::new("pod");
    h.private_mounts = true;
    h.start(&[]);
    h.ok(&["network", "create", "--subnet", "10.72.0.0/24", "pnet"]);
    h.run_d("w1", &["--network", "pnet"], &["sleep", "300"]);
    let w1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.pnet.IPAddress}}", "w1"]);
    h.outside("198.51.100.1", "198.51.100.2");
    let p = Podman::new(&h, "pnet");
    p.run_d("p1", "pnet", &[], &["sleep", "300"]);
    p.run_d("p2", "pnet", &["-p", "8080:80"], &["httpd", "-f", "-p", "80", "-h", "/etc"]);
    let ip = |name: &str| p.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.pnet.IPAddress}}", name]);
    let p1 = ip("p1");
    assert!(p1.starts_with("10.72.0."), "p1 has a weft address: {p1}");
    let shown = h.ok(&["sandbox", "ls"]);
    assert!(shown.contains("p1") && shown.contains("p2"), "weft holds both: {shown}");
    let o = p.run(&["exec", "p1", "ping", "-c1", "-W2", "p2"]);
    assert!(o.status.success(), "p1 pings p2 by name: {}", text(&o));
    let o = p.run(&["exec", "p1", "ping", "-c1", "-W2", &w1]);
    assert!(o.status.success(), "p1 reaches the weft container w1: {}", text(&o));
    assert!(h.ping("w1", "p1"), "w1 reaches p1 by name");
    eventually("p2's httpd answers from outside on 8080", || {
        String::from_utf8_lossy(&h.in_outside("timeout 3 busybox wget -q -S -O /dev/null http://198.51.100.1:8080/passwd 2>&1").stdout).contains("HTTP/1.")
    });
    // Reload: DEL and ADD again, same address.
    p.ok(&["network", "reload", "p1"]);
    assert_eq!(ip("p1"), p1);
    assert!(h.ping("w1", &p1), "p1 answers after the reload");
    // rm: the address is free again.
    p.ok(&["rm", "-f", "-t", "0", "p1"]);
    eventually("p1's attachment gone", || !h.ok(&["sandbox", "ls"]).contains("p1"));
    h.run_d("w2", &["--network", "pnet", "--ip", &p1], &["sleep", "300"]);
    drop(p);
    assert!(!h.ok(&["sandbox", "ls"]).contains("p2"), "podman rm -a detached p2");
    h.finish();
}

/// containerd 1.6 started for the test: its own root, state and socket under the test's
/// directory, in the test host's network namespace and a private mount namespace where tmpfs
/// covers /run and /opt, and `/etc/cni/net.d` and `/opt/cni/bin` (the only places `ctr run --cni`
/// reads) are the test's.
struct Containerd {
    child: std::process::Child,
    dir: PathBuf,
    net: String,
    /// The cgroup its containers go under (`ctr run --cgroup CGROUP/ID`).
    cgroup: String,
}

impl Containerd {
    fn start(h: &Host, conf_dir: &Path) -> Self {
        let dir = h.dir.join("containerd");
        std::fs::create_dir_all(&dir).expect("containerd dir");
        std::fs::write(dir.join("config.toml"), "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n").expect("config.toml");
        let setup = format!(
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind {bin} /opt/cni/bin && mount --bind {conf} /etc/cni/net.d && exec containerd --config {d}/config.toml --root {d}/root --state {d}/state --address {d}/sock",
            bin = cni_bin(h).display(),
            conf = conf_dir.display(),
            d = dir.display()
        );
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", h.ns))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c", &setup])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("fd"))
            .stderr(log)
            .spawn()
            .expect("containerd (scripts/setup.sh installs it)");
        let c = Self { child, dir, net: format!("/run/netns/{}", h.ns), cgroup: format!("weft-itest-{}-ctr", h.ns) };
        eventually("containerd answers", || c.ctr(&["version"]).status.success());
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.child.id())).arg(format!("--net={}", self.net)).arg("ctr").arg("--address").arg(self.dir.join("sock")).args(args);
        through_file(&mut c, &self.dir.join("ctr.out"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for hier in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_cgroup(&hier.path().join(&self.cgroup));
        }
    }
}

/// A Docker image archive of busybox's root filesystem (for `ctr image import`, no registry).
fn image_archive(h: &Host) -> PathBuf {
    let dir = h.dir.join("image");
    std::fs::create_dir_all(&dir).expect("image dir");
    let o = Command::new("tar").arg("-C").arg(h.rootfs()).arg("-cf").arg(dir.join("layer.tar")).arg(".").output().expect("tar");
    assert!(o.status.success(), "tar: {}", text(&o));
    let sum = |f: &Path| {
        let o = Command::new("sha256sum").arg(f).output().expect("sha256sum");
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().expect("sum").to_string()
    };
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sum(&dir.join("layer.tar")))]}});
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["localhost/bb:latest"], "Layers": ["layer.tar"]}]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("manifest");
    let archive = h.dir.join("bb.tar");
    let o = Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&archive).args(["manifest.json", "config.json", "layer.tar"]).output().expect("tar");
    assert!(o.status.success(), "tar: {}", text(&o));
    archive
}

/// `ctr run --cni`: a containerd container gets an address on a weft network and reaches a
/// weft container; its DEL, sent with an empty CNI_NETNS, detaches it.
#[test]
fn containerd_ctr_run_cni_on_a_weft_network() {
    let mut h = Host::new("ctr");
    // (The actions' outcomes in the log: ctr's DEL must be seen to arrive and succeed.)
    h.start(&["--log-level", "info,weft_engine::actions=debug"]);
    h.ok(&["network", "create", "--subnet", "10.73.0.0/24", "cnet"]);
    h.run_d("w1", &["--network", "cnet"], &["sleep", "300"]);
    let w1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.cnet.IPAddress}}", "w1"]);
    let conf_dir = h.dir.join("net.d");
    std::fs::create_dir_all(&conf_dir).expect("net.d");
    let conf = format!(r#"{{"cniVersion":"1.0.0","name":"cnet","plugins":[{{"type":"weft-cni","socket":"{}"}}]}}"#, h.sock);
    std::fs::write(conf_dir.join("10-cnet.conflist"), conf).expect("conflist");
    let c = Containerd::start(&h, &conf_dir);
    let o = c.ctr(&["image", "import", "--snapshotter", "native", &image_archive(&h).display().to_string()]);
    assert!(o.status.success(), "ctr image import: {}", text(&o));
    let cgroup = format!("/{}/c1", c.cgroup);
    let o = c.ctr(&["run", "--rm", "--cni", "--snapshotter", "native", "--cgroup", &cgroup, "localhost/bb:latest", "c1", "sh", "-c", &format!("ip -o -4 addr show eth0 && ping -c1 -W2 {w1}")]);
    assert!(o.status.success(), "ctr run --cni: {}", text(&o));
    assert!(text(&o).contains("10.73.0."), "c1's eth0 had a weft address: {}", text(&o));
    eventually("c1 detached (ctr's DEL comes with an empty CNI_NETNS)", || !h.ok(&["sandbox", "ls"]).contains("c1"));
    // The DEL itself (ctr names the container default-c1), not only the link monitor seeing the
    // namespace go, succeeded.
    let log = h.daemon_log();
    assert!(log.lines().any(|l| l.contains("detach{") && l.contains(r#"id: "default-c1""#) && l.contains("actions: done")), "ctr's DEL reached weftd and succeeded: {log}");
    drop(c);
    h.finish();
}

/// dockerd started for the test in the test host's network namespace (weftd's) and a private
/// mount namespace (tmpfs on /run and /etc/docker, where a plugin spec points at weftd's Docker
/// plugin socket), its data, sockets and cgroups the test's.
struct Dockerd {
    child: Option<std::process::Child>,
    dir: PathBuf,
    net: String,
    cgroup: String,
    plugin_sock: PathBuf,
}

impl Dockerd {
    fn start(h: &Host, plugin_sock: &Path) -> Self {
        let mut d = Self { child: None, dir: h.dir.join("docker"), net: format!("/run/netns/{}", h.ns), cgroup: format!("weft-itest-{}-docker", h.ns), plugin_sock: plugin_sock.to_path_buf() };
        std::fs::create_dir_all(&d.dir).expect("docker dir");
        d.launch();
        d
    }

    fn launch(&mut self) {
        let d = self.dir.display();
        let setup = format!(
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /etc/docker && mkdir -p /etc/docker/plugins && echo unix://{plugin} > /etc/docker/plugins/weft.spec && exec dockerd --data-root {d}/data --exec-root {d}/exec -H unix://{d}/docker.sock --pidfile {d}/pid --cgroup-parent /{cg}",
            plugin = self.plugin_sock.display(),
            cg = self.cgroup
        );
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.net))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c", &setup])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("fd"))
            .stderr(log)
            .spawn()
            .expect("dockerd (scripts/setup.sh installs docker.io)");
        self.child = Some(child);
        weft_itest::eventually_within("dockerd answers", std::time::Duration::from_secs(60), || self.docker(&["info"]).status.success());
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let t0 = std::time::Instant::now();
            while t0.elapsed() < std::time::Duration::from_secs(20) && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker").arg("-H").arg(format!("unix://{}/docker.sock", self.dir.display())).args(args).stdin(Stdio::null()).output().expect("docker")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(o.status.success(), "docker {args:?}: {}\ndockerd log: {}", text(&o), std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default().lines().rev().take(15).collect::<Vec<_>>().join("\n"));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.docker(&["rm", "-f", "d1", "d2", "d3", "d4"]);
        }
        self.stop();
        for hier in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_cgroup(&hier.path().join(&self.cgroup));
        }
    }
}

/// dockerd with weft as its network and IPAM driver: two Docker containers on a weft network
/// ping each other, one reaches a weft container (and is reached), `-p` answers from outside,
/// restarts of weftd and of dockerd keep it all, and `docker rm` / `network rm` leave nothing in
/// weft or the kernel.
#[test]
fn dockerd_runs_containers_on_weft_networks_through_the_plugin() {
    let mut h = Host::new("dkr");
    let plugin = h.dir.join("docker-plugin.sock");
    let plugin_arg = plugin.display().to_string();
    h.start(&["--docker-plugin-socket", &plugin_arg]);
    h.outside("198.51.100.1", "198.51.100.2");
    let mut d = Dockerd::start(&h, &plugin);
    let tar = h.dir.join("bb.tar");
    let o = Command::new("tar").arg("-C").arg(h.rootfs()).arg("-cf").arg(&tar).arg(".").output().expect("tar");
    assert!(o.status.success(), "tar: {}", text(&o));
    let o = Command::new("sh").arg("-c").arg(format!("docker -H unix://{}/docker.sock import {} bb", d.dir.display(), tar.display())).output().expect("docker import");
    assert!(o.status.success(), "docker import: {}", text(&o));

    // Bad input is refused in one line and makes nothing.
    let before = h.ok(&["network", "ls"]);
    let o = d.docker(&["network", "create", "-d", "weft", "--ipam-driver", "weft", "--subnet", "10.74.0.0/24", "-o", "com.docker.network.driver.mtu=nonsense", "bad"]);
    assert!(!o.status.success() && text(&o).contains("mtu"), "a bad -o: {}", text(&o));
    assert_eq!(h.ok(&["network", "ls"]), before, "nothing made");
    // -o options pass through (com.docker.network.generic): the bridge's name.
    d.ok(&["network", "create", "-d", "weft", "--ipam-driver", "weft", "--subnet", "10.74.0.0/24", "-o", "weft.name=dnet", "-o", "com.docker.network.bridge.name=br-dnet", "dnet"]);
    let shown = h.ok(&["network", "inspect", "-f", "{{.IPAM.Config}}", "dnet"]);
    assert!(shown.contains("10.74.0.0/24"), "weft has the network: {shown}");
    assert!(h.link_names().iter().any(|l| l == "br-dnet"), "the bridge is named as -o said");
    h.run_d("w1", &["--network", "dnet"], &["sleep", "300"]);
    let w1 = h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "w1"]);
    d.ok(&["run", "-d", "--name", "d1", "--network", "dnet", "bb", "sleep", "300"]);
    d.ok(&["run", "-d", "--name", "d2", "--network", "dnet", "-p", "8090:80", "bb", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let ip = |d: &Dockerd, name: &str| d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", name]);
    let (d1, d2) = (ip(&d, "d1"), ip(&d, "d2"));
    assert!(d1.starts_with("10.74.0.") && d2.starts_with("10.74.0.") && d1 != w1 && d2 != w1 && d1 != d2, "weft's IPAM: w1 {w1}, d1 {d1}, d2 {d2}");
    assert!(h.ok(&["sandbox", "ls"]).lines().count() == 3, "two Docker endpoints in weft: {}", h.ok(&["sandbox", "ls"]));
    let o = d.docker(&["exec", "d1", "ping", "-c1", "-W2", "d2"]);
    assert!(o.status.success(), "d1 pings d2 by name: {}", text(&o));
    let o = d.docker(&["exec", "d1", "ping", "-c1", "-W2", &w1]);
    assert!(o.status.success(), "d1 reaches the weft container: {}", text(&o));
    assert!(h.ping("w1", &d1), "w1 reaches d1");
    let fetched = |h: &Host, port: u16| String::from_utf8_lossy(&h.in_outside(&format!("timeout 3 busybox wget -q -S -O /dev/null http://198.51.100.1:{port}/passwd 2>&1")).stdout).contains("HTTP/1.");
    eventually("d2's -p 8090 answers from outside", || fetched(&h, 8090));

    // weftd restarts: the network, the endpoints and the port stay.
    h.stop_daemon();
    h.start(&["--docker-plugin-socket", &plugin_arg]);
    assert!(h.ping("w1", &d1) && fetched(&h, 8090), "after weftd's restart");
    d.ok(&["run", "-d", "--name", "d3", "--network", "dnet", "bb", "sleep", "300"]);
    assert!(h.ping("w1", &ip(&d, "d3")), "a container started after weftd's restart");

    // docker rm: weft releases the endpoints (an address is free again at once).
    d.ok(&["rm", "-f", "d1", "d2", "d3"]);
    eventually("Docker's endpoints gone from weft", || h.ok(&["sandbox", "ls"]).lines().count() == 1);
    assert!(!fetched(&h, 8090), "the port went with d2");
    h.run_d("w2", &["--network", "dnet", "--ip", &d1], &["sleep", "300"]);
    eventually("no interface of Docker's left on the host", || !h.link_names().iter().any(|l| l.starts_with("wd")));

    // dockerd restarts (it replays nothing to a network driver): the network still works.
    d.stop();
    d.launch();
    d.ok(&["run", "-d", "--name", "d4", "--network", "dnet", "bb", "sleep", "300"]);
    assert!(h.ping("w1", &ip(&d, "d4")), "a container after dockerd's restart");
    d.ok(&["rm", "-f", "d4"]);
    h.ok(&["rm", "-f", "w1", "w2"]);
    d.ok(&["network", "rm", "dnet"]);
    assert!(h.fails(&["network", "inspect", "dnet"]).contains("dnet"), "docker network rm removed weft's network");
    drop(d);
    h.finish();
}
