//! Each container's control groups: its processes counted and limited together. A container's
//! cgroup is `<parent>/<container id>` in every hierarchy weft uses: on cgroup v1, `pids`,
//! `memory`, `cpu`, `cpuacct` and `devices` (wherever they are mounted, together or apart); on
//! cgroup v2, the unified hierarchy with `pids`, `memory` and `cpu` enabled down to the parent,
//! and a device filter (an eBPF program, [`crate::devfilter`]) where v1 has the `devices`
//! controller. The parent is dockerd's `--cgroup-parent`: absolute when it starts with `/`,
//! else under the daemon's own cgroup.
//!
//! The daemon creates the cgroup and writes its limits before the container's pid 1 exists,
//! moves pid 1 in before giving it the go-ahead (so everything the command starts is inside),
//! and `weft exec`'s helper moves itself in before starting the command. Removal kills what is
//! left (a cgroup cannot be removed while it holds a process) and removes the directories.
//!
//! weft writes the cgroup files itself rather than through `cgroups-rs` (see
//! `docs/dependencies.md`): a dozen files, each named where it is written.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The v1 controllers weft uses; on v2 the same limits come from `pids`, `memory`, `cpu` and a
/// device filter.
const V1_CONTROLLERS: [&str; 5] = ["pids", "memory", "cpu", "cpuacct", "devices"];
const V2_CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

/// The CFS period weft uses with `--cpus` (Docker's).
pub const CPU_PERIOD_US: u64 = 100_000;

/// How long removal waits for a cgroup's killed processes to go.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy has the {0} controller: weftd needs pids, memory, cpu, cpuacct and devices (cgroup v1), or cgroup v2 with pids, memory and cpu")]
    Missing(String),
    #[error("invalid --cgroup-parent {0:?}: expected a path of [A-Za-z0-9_.-] names, absolute (/weft) or under weftd's own cgroup (weft)")]
    Parent(String),
    #[error("read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("write {value:?} to {path}")]
    Write { path: String, value: String, source: std::io::Error },
    #[error("create cgroup {path}")]
    Create { path: String, source: std::io::Error },
    #[error("remove cgroup {path}")]
    Remove { path: String, source: std::io::Error },
    #[error("enable the {controllers} controllers in {path} (cgroup v2 lets a cgroup that holds processes have no child with controllers: give an absolute --cgroup-parent such as /weft)")]
    Enable { path: String, controllers: String, source: std::io::Error },
    #[error("device filter of {path}")]
    DeviceFilter { path: String, source: std::io::Error },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// One rule of the devices cgroup (`c 1:3 rwm`); `None` is `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// `a`, `b` or `c`.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceRule {
    /// The line `devices.allow` takes.
    pub fn line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let access: String = [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')].iter().filter(|(on, _)| *on).map(|(_, c)| *c).collect();
        format!("{} {}:{} {access}", self.kind, num(self.major), num(self.minor))
    }
}

/// What a container may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (`--memory`); swap is as much again, as Docker's default.
    pub memory: Option<u64>,
    /// CFS bandwidth: quota and period, microseconds (`--cpus`).
    pub cpu: Option<(u64, u64)>,
    /// Processes and threads (`--pids-limit`).
    pub pids: Option<u64>,
    /// The devices allowed after "deny all"; `None` leaves every device allowed (`--privileged`).
    pub devices: Option<Vec<DeviceRule>>,
}

impl Limits {
    /// `--cpus` in nano-CPUs as a quota of [`CPU_PERIOD_US`].
    pub fn cpu_quota(nano_cpus: u64) -> (u64, u64) {
        ((nano_cpus * CPU_PERIOD_US / 1_000_000_000).max(1000), CPU_PERIOD_US)
    }
}

/// A container's usage as its cgroups count it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub cpu_quota: Option<(u64, u64)>,
    pub periods: u64,
    pub throttled: u64,
    pub memory: u64,
    pub memory_limit: Option<u64>,
    pub inactive_file: u64,
    pub failcnt: u64,
    pub oom_kill: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where containers' cgroups go: the parent's directory in each hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub version: Version,
    /// Controller (v1) → the parent's directory in its hierarchy; on v2 one entry, `""`.
    parents: BTreeMap<&'static str, PathBuf>,
    /// v2: the mount point (controllers are enabled from there down).
    mount: PathBuf,
}

/// A mounted cgroup hierarchy, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    /// The mount's root inside the hierarchy (`/` unless a sub-tree is mounted).
    root: String,
    v2: bool,
    /// v1: the controllers of the hierarchy (super options).
    controllers: Vec<String>,
}

/// Undoes the octal escapes of mountinfo (`\040` for a space).
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (l.get(3), l.get(4), r.first()) else { continue };
        let v2 = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 { Vec::new() } else { r.get(2).map(|o| o.split(',').map(String::from).collect()).unwrap_or_default() };
        out.push(Mount { point: PathBuf::from(unescape(point)), root: unescape(root), v2, controllers });
    }
    out
}

/// The calling process's cgroup in the v1 hierarchy of `controller`, or (`None`) in v2's.
fn own_cgroup(proc_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            Some(c) => ctrls.split(',').any(|x| x == c),
            None => ctrls.is_empty(),
        };
        hit.then(|| path.to_string())
    })
}

/// `--cgroup-parent`: names of `[A-Za-z0-9_.-]` (not `.` or `..`), optionally absolute.
fn check_parent(parent: &str) -> Result<()> {
    let rel = parent.strip_prefix('/').unwrap_or(parent).trim_end_matches('/');
    let ok = !rel.is_empty()
        && rel.len() <= 512
        && rel.split('/').all(|n| !n.is_empty() && n != "." && n != ".." && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::Parent(parent.to_string()))
    }
}

/// The directory of `parent` in hierarchy `m`, for a process whose cgroup there is `own`.
fn parent_dir(m: &Mount, own: &str, parent: &str) -> PathBuf {
    let rel = parent.trim_end_matches('/');
    let path = if let Some(abs) = rel.strip_prefix('/') {
        // Absolute in the hierarchy: relative to what this mount shows of it.
        let under = m.root.trim_start_matches('/');
        abs.strip_prefix(under).map(|r| r.trim_start_matches('/')).unwrap_or(abs).to_string()
    } else {
        let own = own.strip_prefix(m.root.as_str()).unwrap_or(own).trim_matches('/');
        if own.is_empty() {
            rel.to_string()
        } else {
            format!("{own}/{rel}")
        }
    };
    m.point.join(path)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.display().to_string(), source })
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write { path: path.display().to_string(), value: value.to_string(), source })
}

/// `KEY VALUE` lines (`memory.stat`, `cpu.stat`, `memory.events`, `memory.oom_control`).
fn field(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

fn number(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// A limit file: `max` (v2), `-1` or a number near 2^63 (v1) mean none.
fn limit(path: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let n: u64 = s.split_whitespace().next()?.parse().ok()?;
    (n < 1 << 62).then_some(n)
}

impl Hierarchy {
    /// Finds the hierarchies of this machine (v1 if it has every controller weft uses there,
    /// else v2) and where `parent` is in each.
    pub fn detect(parent: &str) -> Result<Self> {
        check_parent(parent)?;
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let own = read(Path::new("/proc/self/cgroup"))?;
        Self::from_tables(&mountinfo, &own, parent)
    }

    fn from_tables(mountinfo: &str, own: &str, parent: &str) -> Result<Self> {
        let ms = mounts(mountinfo);
        let v1 = |c: &str| ms.iter().find(|m| !m.v2 && m.controllers.iter().any(|x| x == c));
        if V1_CONTROLLERS.iter().all(|c| v1(c).is_some()) {
            let mut parents = BTreeMap::new();
            for c in V1_CONTROLLERS {
                let m = v1(c).ok_or_else(|| CgroupError::Missing(c.into()))?;
                let own = own_cgroup(own, Some(c)).unwrap_or_else(|| "/".into());
                parents.insert(c, parent_dir(m, &own, parent));
            }
            return Ok(Hierarchy { version: Version::V1, parents, mount: PathBuf::new() });
        }
        let has_v2 = |m: &&Mount| {
            let ctrls = std::fs::read_to_string(m.point.join("cgroup.controllers")).unwrap_or_default();
            m.v2 && V2_CONTROLLERS.iter().all(|c| ctrls.split_whitespace().any(|x| x == *c))
        };
        match ms.iter().find(has_v2) {
            Some(m) => {
                let own = own_cgroup(own, None).unwrap_or_else(|| "/".into());
                let parents = BTreeMap::from([("", parent_dir(m, &own, parent))]);
                Ok(Hierarchy { version: Version::V2, parents, mount: m.point.clone() })
            }
            None => {
                let missing = V1_CONTROLLERS.iter().find(|c| v1(c).is_none()).unwrap_or(&"pids");
                Err(CgroupError::Missing((*missing).to_string()))
            }
        }
    }

    /// The parent's directories (one per hierarchy).
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.parents.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    /// Container `id`'s cgroup (made or not).
    pub fn cgroup(&self, id: &str) -> Cgroup {
        Cgroup { version: self.version, dirs: self.parents.iter().map(|(c, p)| (*c, p.join(id))).collect() }
    }

    /// The names of the cgroups under the parent, in any hierarchy.
    pub fn children(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .parent_dirs()
            .iter()
            .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Makes the parent (v2: with the controllers enabled from the mount point down).
    fn make_parents(&self) -> Result<()> {
        for p in self.parent_dirs() {
            std::fs::create_dir_all(&p).map_err(|source| CgroupError::Create { path: p.display().to_string(), source })?;
        }
        if self.version == Version::V2 {
            let parent = self.parents.get("").cloned().unwrap_or_default();
            let mut dir = self.mount.clone();
            let below = parent.strip_prefix(&self.mount).map(Path::to_path_buf).unwrap_or_default();
            let mut levels = vec![dir.clone()];
            for c in below.components() {
                dir = dir.join(c);
                levels.push(dir.clone());
            }
            for d in levels {
                let have = read(&d.join("cgroup.subtree_control"))?;
                let want: Vec<String> = V2_CONTROLLERS.iter().filter(|c| !have.split_whitespace().any(|x| x == **c)).map(|c| format!("+{c}")).collect();
                if want.is_empty() {
                    continue;
                }
                let value = want.join(" ");
                std::fs::write(d.join("cgroup.subtree_control"), &value)
                    .map_err(|source| CgroupError::Enable { path: d.display().to_string(), controllers: value.clone(), source })?;
            }
        }
        Ok(())
    }

    /// Creates container `id`'s cgroup with `limits`; on any failure nothing is left.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<Cgroup> {
        self.make_parents()?;
        let cg = self.cgroup(id);
        let mut made = Vec::new();
        let result = (|| {
            for d in cg.unique_dirs() {
                std::fs::create_dir(&d).map_err(|source| CgroupError::Create { path: d.display().to_string(), source })?;
                made.push(d);
            }
            cg.apply(limits)
        })();
        if let Err(e) = result {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            return Err(e);
        }
        Ok(cg)
    }
}

/// One container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    version: Version,
    /// Controller (`""` on v2) → directory.
    dirs: BTreeMap<&'static str, PathBuf>,
}

impl Cgroup {
    fn dir(&self, controller: &str) -> &Path {
        let key = if self.version == Version::V2 { "" } else { controller };
        self.dirs.get(key).map(PathBuf::as_path).unwrap_or(Path::new("/nonexistent"))
    }

    /// Its directories, one per hierarchy.
    pub fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.dirs.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    /// The `cgroup.procs` files a process writes its pid to, to join.
    pub fn procs_files(&self) -> Vec<String> {
        self.unique_dirs().iter().map(|d| d.join("cgroup.procs").display().to_string()).collect()
    }

    /// Whether any of its directories exists.
    pub fn exists(&self) -> bool {
        self.unique_dirs().iter().any(|d| d.exists())
    }

    /// The limit files, in the order they must be written.
    pub fn limit_files(&self, limits: &Limits) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        match self.version {
            Version::V1 => {
                if let Some(n) = limits.pids {
                    out.push((self.dir("pids").join("pids.max"), n.to_string()));
                }
                if let Some(m) = limits.memory {
                    out.push((self.dir("memory").join("memory.limit_in_bytes"), m.to_string()));
                    // Swap as much again (Docker's default --memory-swap is twice --memory),
                    // where the kernel accounts swap.
                    let memsw = self.dir("memory").join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        out.push((memsw, m.saturating_mul(2).to_string()));
                    }
                }
                if let Some((quota, period)) = limits.cpu {
                    out.push((self.dir("cpu").join("cpu.cfs_period_us"), period.to_string()));
                    out.push((self.dir("cpu").join("cpu.cfs_quota_us"), quota.to_string()));
                }
                if let Some(rules) = &limits.devices {
                    out.push((self.dir("devices").join("devices.deny"), "a".into()));
                    for r in rules {
                        out.push((self.dir("devices").join("devices.allow"), r.line()));
                    }
                }
            }
            Version::V2 => {
                let d = self.dir("");
                if let Some(n) = limits.pids {
                    out.push((d.join("pids.max"), n.to_string()));
                }
                if let Some(m) = limits.memory {
                    out.push((d.join("memory.max"), m.to_string()));
                    if d.join("memory.swap.max").exists() {
                        out.push((d.join("memory.swap.max"), m.to_string()));
                    }
                }
                if let Some((quota, period)) = limits.cpu {
                    out.push((d.join("cpu.max"), format!("{quota} {period}")));
                }
            }
        }
        out
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        for (path, value) in self.limit_files(limits) {
            write(&path, &value)?;
        }
        if let (Version::V2, Some(rules)) = (self.version, &limits.devices) {
            let d = self.dir("");
            crate::devfilter::attach(d, rules).map_err(|source| CgroupError::DeviceFilter { path: d.display().to_string(), source })?;
        }
        Ok(())
    }

    /// Moves process `pid` (and its threads) in.
    pub fn add(&self, pid: u32) -> Result<()> {
        for f in self.procs_files() {
            write(Path::new(&f), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in it (in the daemon's pid namespace).
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<u32>>())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// What it uses now.
    pub fn usage(&self) -> Usage {
        match self.version {
            Version::V1 => {
                let mem = self.dir("memory");
                let stat = std::fs::read_to_string(mem.join("memory.stat")).unwrap_or_default();
                let cpu = std::fs::read_to_string(self.dir("cpu").join("cpu.stat")).unwrap_or_default();
                let quota = std::fs::read_to_string(self.dir("cpu").join("cpu.cfs_quota_us")).ok().and_then(|q| q.trim().parse::<i64>().ok()).filter(|q| *q > 0);
                let period = number(&self.dir("cpu").join("cpu.cfs_period_us"));
                Usage {
                    cpu_ns: number(&self.dir("cpuacct").join("cpuacct.usage")),
                    cpu_quota: quota.map(|q| (q as u64, period)),
                    periods: field(&cpu, "nr_periods"),
                    throttled: field(&cpu, "nr_throttled"),
                    memory: number(&mem.join("memory.usage_in_bytes")),
                    memory_limit: limit(&mem.join("memory.limit_in_bytes")),
                    inactive_file: field(&stat, "total_inactive_file"),
                    failcnt: number(&mem.join("memory.failcnt")),
                    oom_kill: field(&std::fs::read_to_string(mem.join("memory.oom_control")).unwrap_or_default(), "oom_kill"),
                    pids: number(&self.dir("pids").join("pids.current")),
                    pids_limit: limit(&self.dir("pids").join("pids.max")),
                }
            }
            Version::V2 => {
                let d = self.dir("");
                let text = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
                let (cpu, stat, events, max) = (text("cpu.stat"), text("memory.stat"), text("memory.events"), text("cpu.max"));
                let mut q = max.split_whitespace();
                let quota = match (q.next().and_then(|v| v.parse::<u64>().ok()), q.next().and_then(|v| v.parse::<u64>().ok())) {
                    (Some(a), Some(b)) => Some((a, b)),
                    _ => None,
                };
                Usage {
                    cpu_ns: field(&cpu, "usage_usec") * 1000,
                    cpu_quota: quota,
                    periods: field(&cpu, "nr_periods"),
                    throttled: field(&cpu, "nr_throttled"),
                    memory: number(&d.join("memory.current")),
                    memory_limit: limit(&d.join("memory.max")),
                    inactive_file: field(&stat, "inactive_file"),
                    failcnt: field(&events, "max"),
                    oom_kill: field(&events, "oom_kill"),
                    pids: number(&d.join("pids.current")),
                    pids_limit: limit(&d.join("pids.max")),
                }
            }
        }
    }

    /// Kills whatever is left in it and removes it; a cgroup already gone is fine. Blocks until
    /// the killed processes are gone (5 s at most).
    pub fn destroy(&self) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let left: Vec<PathBuf> = self.unique_dirs().into_iter().filter(|d| d.exists()).collect();
            if left.is_empty() {
                return Ok(());
            }
            if self.version == Version::V2 && left[0].join("cgroup.kill").exists() {
                let _ = std::fs::write(left[0].join("cgroup.kill"), "1");
            }
            for pid in self.pids() {
                self.kill_member(pid);
            }
            let mut busy = None;
            for d in &left {
                match std::fs::remove_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = Some((d.clone(), e)),
                    Err(source) => return Err(CgroupError::Remove { path: d.display().to_string(), source }),
                }
            }
            match busy {
                None => return Ok(()),
                Some((d, source)) if t0.elapsed() > REMOVE_TIMEOUT => return Err(CgroupError::Remove { path: d.display().to_string(), source }),
                Some(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// SIGKILL to `pid` if it is (still) in this cgroup: the process is pinned by a pidfd
    /// first, so a pid reused meanwhile by a process elsewhere is never signalled.
    fn kill_member(&self, pid: u32) {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return;
        }
        // SAFETY: fd is a fresh pidfd returned above that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if self.pids().binary_search(&pid).is_ok() {
            // SAFETY: pidfd_send_signal takes the pidfd, a signal, a null siginfo and flags.
            unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
30 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
31 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN_V1: &str = "8:pids:/\n4:memory:/session/abc\n2:cpuacct:/\n1:cpu:/\n5:devices:/\n0::/\n";

    #[test]
    fn v1_hierarchies_and_relative_parents() {
        let h = Hierarchy::from_tables(MOUNTINFO_V1, OWN_V1, "weft").expect("v1");
        assert_eq!(h.version, Version::V1);
        assert_eq!(h.parents["pids"], Path::new("/sys/fs/cgroup/pids/weft"));
        assert_eq!(h.parents["memory"], Path::new("/sys/fs/cgroup/memory/session/abc/weft"), "relative: under weftd's own cgroup");
        let h = Hierarchy::from_tables(MOUNTINFO_V1, OWN_V1, "/weft").expect("v1");
        assert_eq!(h.parents["memory"], Path::new("/sys/fs/cgroup/memory/weft"), "absolute");
        let cg = h.cgroup("c1");
        assert_eq!(cg.procs_files().len(), 5);
        // Co-mounted cpu and cpuacct share one directory.
        let co = MOUNTINFO_V1.replace("/sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu", "/sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct");
        let h = Hierarchy::from_tables(&co, "1:cpu,cpuacct:/\n", "weft").expect("co-mounted");
        assert_eq!(h.cgroup("c1").procs_files().len(), 4);
    }

    #[test]
    fn v1_limit_files() {
        let h = Hierarchy::from_tables(MOUNTINFO_V1, OWN_V1, "/weft").expect("v1");
        let cg = h.cgroup("c1");
        let rules = vec![DeviceRule { kind: 'c', major: Some(1), minor: Some(3), read: true, write: true, mknod: true }];
        let limits = Limits { memory: Some(64 << 20), cpu: Some(Limits::cpu_quota(500_000_000)), pids: Some(100), devices: Some(rules) };
        let files: Vec<(String, String)> = cg.limit_files(&limits).into_iter().map(|(p, v)| (p.display().to_string(), v)).collect();
        let want = [
            ("/sys/fs/cgroup/pids/weft/c1/pids.max", "100"),
            ("/sys/fs/cgroup/memory/weft/c1/memory.limit_in_bytes", "67108864"),
            ("/sys/fs/cgroup/cpu/weft/c1/cpu.cfs_period_us", "100000"),
            ("/sys/fs/cgroup/cpu/weft/c1/cpu.cfs_quota_us", "50000"),
            ("/sys/fs/cgroup/devices/weft/c1/devices.deny", "a"),
            ("/sys/fs/cgroup/devices/weft/c1/devices.allow", "c 1:3 rwm"),
        ];
        assert_eq!(files, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(cg.limit_files(&Limits::default()).is_empty(), "no limit, no file: every device allowed");
    }

    #[test]
    fn v2_hierarchy_and_limit_files() {
        let dir = std::env::temp_dir().join(format!("weft-cgroup-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").expect("controllers");
        let mountinfo = format!("35 25 0:30 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", dir.display());
        let h = Hierarchy::from_tables(&mountinfo, "0::/user.slice/weftd.service\n", "/weft").expect("v2");
        assert_eq!(h.version, Version::V2);
        let cg = h.cgroup("c1");
        let limits = Limits { memory: Some(64 << 20), cpu: Some((150_000, 100_000)), pids: Some(7), devices: None };
        let files: Vec<(String, String)> = cg.limit_files(&limits).into_iter().map(|(p, v)| (p.strip_prefix(&dir).expect("under").display().to_string(), v)).collect();
        assert_eq!(files, [("weft/c1/pids.max", "7"), ("weft/c1/memory.max", "67108864"), ("weft/c1/cpu.max", "150000 100000")].map(|(a, b)| (a.to_string(), b.to_string())));
        let h = Hierarchy::from_tables(&mountinfo, "0::/user.slice/weftd.service\n", "weft").expect("v2");
        assert_eq!(h.parents[""], dir.join("user.slice/weftd.service/weft"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(Hierarchy::from_tables("", "", "weft"), Err(CgroupError::Missing(_))));
    }

    #[test]
    fn parents_and_tables() {
        for ok in ["weft", "/weft", "a/b.c-d_e", "/x/"] {
            assert!(check_parent(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/", "..", "a/../b", "a//b", "a b", "a\nb", "/./x"] {
            assert!(check_parent(bad).is_err(), "{bad:?}");
        }
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(field("nr_periods 5\nnr_throttled 3\n", "nr_throttled"), 3);
        assert_eq!(field("total_inactive_file 4096\ninactive_file 1\n", "inactive_file"), 1);
        assert_eq!(Limits::cpu_quota(1_500_000_000), (150_000, 100_000));
        assert_eq!(Limits::cpu_quota(10_000_000), (1000, 100_000));
    }
}
