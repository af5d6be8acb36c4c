//! The leak check. It runs after a test host's containers were removed with `weft rm -f` and its
//! daemon stopped, and it *looks before it sweeps*: what it finds is what weft left behind, not
//! what the harness failed to clean. It looks at
//!
//! - host-side veths (`veth*`) in the test host's namespace (the outside link `up0` is the test's);
//! - weft's nftables table: the `ports`, `ports_any` and `links` elements must be gone with the
//!   containers, and every bridge named in `bridges`, `internal` and `from_bridge` must exist;
//! - mounts under the test's directory (exec-root and data-root are inside it);
//! - processes of the test: in one of its namespaces, naming its directory in their command
//!   line, pivoted into a root under it, or a container pid the harness saw while the test ran.
//! - cgroups under the test daemon's `--cgroup-parent`, in every mounted hierarchy (v1 and v2):
//!   a container's must go with it.
//!
//! Then [`sweep`] removes what was found (and the namespaces and directory in any case). Each
//! finding names the object, so the failure message says what leaked.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// A process, recognised by pid and start time (a reused pid is another process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

impl Proc {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Field 22 (starttime), counted after the parenthesised command name.
        let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
        Some(Proc { pid, start })
    }

    fn alive(&self) -> bool {
        Proc::of(self.pid) == Some(*self)
    }
}

/// One thing left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    Veth(String),
    Element { set: String, element: String },
    Mount(String),
    Process { pid: u32, cmd: String },
    Cgroup(String),
    /// The teardown itself went wrong (a failed `rm -f`, a daemon that would not stop).
    Teardown(String),
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leak::Veth(n) => write!(f, "veth {n} on the test host"),
            Leak::Element { set, element } => write!(f, "element {element} in inet weft {set}"),
            Leak::Mount(m) => write!(f, "mount {m}"),
            Leak::Process { pid, cmd } => write!(f, "process {pid} ({cmd})"),
            Leak::Cgroup(path) => write!(f, "cgroup {path}"),
            Leak::Teardown(what) => write!(f, "teardown: {what}"),
        }
    }
}

/// What the check looks at.
pub struct Scope<'a> {
    /// The test host's namespace, then the other namespaces the test made.
    pub namespaces: &'a [String],
    pub dir: &'a Path,
    /// Container processes seen while the test ran.
    pub containers: &'a [Proc],
    /// The daemon's `--cgroup-parent` (relative: under the test process's own cgroups).
    pub cgroup_parent: &'a str,
}

/// Everything left behind in `scope`, without changing anything.
pub fn look(scope: &Scope) -> Vec<Leak> {
    let mut found = Vec::new();
    let host = &scope.namespaces[0];
    let links = link_names(host);
    found.extend(links.iter().filter(|n| n.starts_with("veth")).map(|n| Leak::Veth(n.clone())));
    found.extend(stale_elements(host, &links));
    found.extend(mounts_under(scope.dir).into_iter().map(Leak::Mount));
    found.extend(processes(scope).into_iter().map(|(p, cmd)| Leak::Process { pid: p.pid, cmd }));
    for parent in cgroup_parents(scope.cgroup_parent) {
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(Leak::Cgroup(e.path().display().to_string()));
            }
        }
    }
    found
}

/// The directory of the (relative) cgroup parent `parent` in every mounted cgroup hierarchy:
/// the mount point, plus this process's cgroup there (weftd inherits it), plus `parent`. Found
/// independently of weft's code, from `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub fn cgroup_parents(parent: &str) -> Vec<std::path::PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let (l, r): (Vec<&str>, Vec<&str>) = (left.split(' ').collect(), right.split(' ').collect());
        let (Some(point), Some(fstype)) = (l.get(4), r.first()) else { continue };
        let mine = match *fstype {
            // The v1 line whose controllers (or name=) are among this mount's options.
            "cgroup" => {
                let opts: Vec<&str> = r.get(2).map(|o| o.split(',').collect()).unwrap_or_default();
                own.lines().find_map(|o| {
                    let mut p = o.splitn(3, ':');
                    let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                    (!ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(&c))).then(|| path.to_string())
                })
            }
            "cgroup2" => own.lines().find_map(|o| o.strip_prefix("0::").map(String::from)),
            _ => None,
        };
        if let Some(path) = mine {
            out.push(Path::new(point).join(path.trim_start_matches('/')).join(parent));
        }
    }
    out
}

/// Removes what [`look`] found, then the namespaces and the directory.
pub fn sweep(scope: &Scope, found: &[Leak]) {
    for l in found {
        if let Leak::Process { pid, .. } = l {
            // Only processes the check tied to this test, by pid.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
    // Deepest mounts first.
    let mut mounts: Vec<&String> = found.iter().filter_map(|l| if let Leak::Mount(m) = l { Some(m) } else { None }).collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    // Left cgroups: what is still in them is the test's (killed by pid), then the cgroups and
    // the test's parent go.
    for l in found {
        if let Leak::Cgroup(dir) = l {
            let procs = std::fs::read_to_string(Path::new(dir).join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
    }
    for parent in cgroup_parents(scope.cgroup_parent) {
        let mut left: Vec<std::path::PathBuf> = std::fs::read_dir(&parent).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        left.push(parent);
        for dir in left {
            for _ in 0..200 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
    for ns in scope.namespaces {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    let _ = std::fs::remove_dir_all(scope.dir);
}

/// The names of the links in namespace `ns`.
pub fn link_names(ns: &str) -> Vec<String> {
    let o = Command::new("ip").args(["-n", ns, "-o", "link"]).output();
    let Ok(o) = o else { return Vec::new() };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .collect()
}

/// Elements of weft's table that outlived what they stand for.
fn stale_elements(ns: &str, links: &[String]) -> Vec<Leak> {
    let o = Command::new("ip").args(["netns", "exec", ns, "nft", "-j", "list", "table", "inet", "weft"]).output();
    let Ok(o) = o else { return vec![Leak::Teardown("nft could not be run".into())] };
    if !o.status.success() {
        // No table: --iptables=false, or a daemon that never started.
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
        return vec![Leak::Teardown("nft -j printed no JSON".into())];
    };
    let mut found = Vec::new();
    let mut counts = std::collections::HashMap::new();
    for obj in v["nftables"].as_array().into_iter().flatten() {
        let Some((kind, set)) = ["set", "map"].iter().find_map(|k| obj.get(*k).map(|s| (*k, s))) else { continue };
        let name = set["name"].as_str().unwrap_or_default().to_string();
        let elems: Vec<&serde_json::Value> = set["elem"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        counts.insert(name.clone(), elems.len());
        for e in elems {
            // A map element is [key, value]; a set element is the key.
            let key = if kind == "map" { &e[0] } else { e };
            let stale = match name.as_str() {
                "ports" | "ports_any" | "links" => true,
                "bridges" | "internal" | "from_bridge" => !key.as_str().is_some_and(|br| links.iter().any(|l| l == br)),
                _ => false,
            };
            if stale {
                found.push(Leak::Element { set: name.clone(), element: e.to_string() });
            }
        }
    }
    // One source-NAT entry per network.
    let (masq, nets) = (counts.get("masq").copied().unwrap_or(0), counts.get("from_bridge").copied().unwrap_or(0));
    if masq != nets {
        found.push(Leak::Element { set: "masq".into(), element: format!("{masq} entries for {nets} networks") });
    }
    found
}

/// Mount points at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&dir)).map(String::from).collect()
}

/// The inode of a network namespace file (a `/run/netns` entry or a bind mount of one).
fn netns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Processes tied to the test, with their command lines.
fn processes(scope: &Scope) -> Vec<(Proc, String)> {
    let dir = scope.dir.display().to_string();
    let mut inodes: HashSet<u64> = scope.namespaces.iter().filter_map(|ns| netns_inode(&Path::new("/run/netns").join(ns))).collect();
    if let Ok(rd) = std::fs::read_dir(scope.dir.join("exec/netns")) {
        inodes.extend(rd.flatten().filter_map(|e| netns_inode(&e.path())));
    }
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return found };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Some(p) = Proc::of(pid) else { continue };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.lines().any(|l| l.starts_with("State:") && l.contains("zombie")) {
            // Exited, holding nothing but its pid until its new parent reaps it.
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string()).unwrap_or_default();
        let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok().and_then(|l| {
            let l = l.display().to_string();
            l.strip_prefix("net:[")?.strip_suffix(']')?.parse::<u64>().ok()
        });
        let root = std::fs::read_link(format!("/proc/{pid}/root")).map(|r| r.display().to_string()).unwrap_or_default();
        let ours = netns.is_some_and(|i| inodes.contains(&i)) || cmd.contains(&dir) || root.starts_with(&dir) || scope.containers.contains(&p);
        if ours && p.alive() {
            found.push((p, cmd));
        }
    }
    found
}
