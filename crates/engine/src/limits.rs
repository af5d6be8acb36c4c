//! Resource limits: the cgroup of each container (made with its limits before pid 1 exists,
//! pid 1 moved in before the go-ahead, removed with the container), and its usage for `weft
//! stats`. The files themselves are `weft_runtime::cgroup`'s.

use weft_model::{ContainerStats, CpuStats, CpuUsage, MemoryStats, PidsStats, RunSpec, Status, Throttling};
use weft_runtime::cgroup::{Cgroup, DeviceRule, Limits};

use crate::{blocking, Engine, EngineError, Result};

/// An error and its causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    std::iter::successors(Some(e), |e| e.source()).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf reads a system constant; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

/// The host's CPU time (all CPUs, every state) in nanoseconds, from `/proc/stat`'s `cpu` line.
fn system_cpu_ns() -> u64 {
    // SAFETY: sysconf reads a system constant; no memory is passed.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|h| *h > 0).unwrap_or(100);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat.lines().find(|l| l.starts_with("cpu ")).map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0);
    ticks.saturating_mul(1_000_000_000 / hz)
}

fn host_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Engine {
    /// The limits of a container run with `spec` (already validated), checked against this
    /// machine: Docker's device rules and `--device-cgroup-rule`s unless `--privileged`, the
    /// daemon's default pids limit unless `--pids-limit` is given.
    pub(crate) fn limits(&self, spec: &RunSpec) -> Result<Limits> {
        let cpus = online_cpus();
        if spec.nano_cpus > u64::from(cpus) * 1_000_000_000 {
            return Err(EngineError::Refused(format!("range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available")));
        }
        let devices = if spec.privileged {
            None
        } else {
            let rules = weft_model::default_device_rules().into_iter().chain(spec.device_rules()?);
            Some(rules.map(|r| DeviceRule { kind: r.kind, major: r.major, minor: r.minor, read: r.read, write: r.write, mknod: r.mknod }).collect())
        };
        Ok(Limits {
            memory: (spec.memory > 0).then_some(spec.memory),
            cpu: (spec.nano_cpus > 0).then(|| Limits::cpu_quota(spec.nano_cpus)),
            pids: match spec.pids_limit {
                None => self.cfg.default_pids_limit,
                Some(n) if n <= 0 => None,
                Some(n) => Some(n as u64),
            },
            devices,
        })
    }

    /// Makes container `id`'s cgroup with `limits` (nothing is left if it fails).
    pub(crate) async fn make_cgroup(&self, id: &str, limits: Limits) -> Result<Cgroup> {
        let (h, id) = (self.cgroups.clone(), id.to_string());
        blocking(move || Ok(h.create(&id, &limits).map_err(weft_runtime::RuntimeError::from)?)).await
    }

    /// Removes container `id`'s cgroup, killing what is left in it; a failure is logged (the
    /// next start's reconcile retries).
    pub(crate) async fn remove_cgroup(&self, id: &str) {
        let cg = self.cgroups.cgroup(id);
        if let Err(e) = blocking(move || Ok(cg.destroy().map_err(weft_runtime::RuntimeError::from)?)).await {
            tracing::error!(container = %weft_model::short_id(id), error = %chain(&e), "removing the cgroup failed; the next start retries");
        }
    }

    /// Removes the cgroups under the parent that belong to no running container (containers
    /// that ended while the daemon was away, a crash between creating a cgroup and committing).
    pub(crate) fn sweep_cgroups(&self, keep: &std::collections::HashSet<String>) -> usize {
        let mut swept = 0;
        for id in self.cgroups.children() {
            if keep.contains(&id) {
                continue;
            }
            match self.cgroups.cgroup(&id).destroy() {
                Ok(()) => swept += 1,
                Err(e) => tracing::error!(cgroup = %id, error = %chain(&e), "cannot remove a leftover cgroup"),
            }
        }
        swept
    }

    /// One reading of container `key`'s usage (zeros once it has exited, as Docker's).
    pub(crate) async fn stats(&self, key: &str) -> Result<ContainerStats> {
        let c = self.container(key)?;
        let cg = self.cgroups.cgroup(&c.id);
        let running = c.state.status == Status::Running;
        blocking(move || {
            let host = host_memory();
            let u = if running { cg.usage() } else { Default::default() };
            let (quota, period) = u.cpu_quota.unwrap_or((0, 0));
            Ok(ContainerStats {
                id: c.id,
                name: c.name,
                read: now_ns(),
                cpu_stats: CpuStats {
                    cpu_usage: CpuUsage { total_usage: u.cpu_ns },
                    system_cpu_usage: system_cpu_ns(),
                    online_cpus: online_cpus(),
                    cpu_quota: quota,
                    cpu_period: period,
                    throttling_data: Throttling { periods: u.periods, throttled_periods: u.throttled },
                },
                memory_stats: MemoryStats {
                    usage: u.memory,
                    limit: match u.memory_limit {
                        Some(l) if host == 0 || l < host => l,
                        _ => host,
                    },
                    inactive_file: u.inactive_file,
                    failcnt: u.failcnt,
                    oom_kill: u.oom_kill,
                },
                pids_stats: PidsStats { current: u.pids, limit: u.pids_limit.unwrap_or(0) },
            })
        })
        .await
    }
}
