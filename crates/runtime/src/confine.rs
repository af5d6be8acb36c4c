//! What a container's processes may do: Docker's defaults. The capability set (bounding,
//! permitted and effective; inheritable and ambient empty), `no_new_privs`, and a seccomp filter
//! that answers `EPERM` to the system calls Docker's default profile refuses — each unless a
//! capability that would allow it was granted (`--cap-add SYS_ADMIN` allows `mount`, as in
//! Docker), and `ENOSYS` to `clone3` (whose flags a filter cannot read; the C library falls back to
//! `clone`, whose flags it can). `--privileged` keeps every capability and installs no filter.
//!
//! Pid 1 applies it to itself just before starting the command, so everything in the container
//! inherits it; `weft exec` reads pid 1's (`/proc/PID/status`) and applies the same.

use std::collections::BTreeMap;

use caps::{CapSet, Capability, CapsHashSet};
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};

/// The confinement of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The capabilities the container keeps (kernel names, `CAP_…`).
    pub caps: CapsHashSet,
    /// Install `no_new_privs` and the seccomp filter (everything but `--privileged`).
    pub seccomp: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("unknown capability {0}")]
    Capability(String),
    #[error("drop capabilities")]
    Caps(#[source] caps::errors::CapsError),
    #[error("build seccomp filter")]
    Filter(#[source] seccompiler::BackendError),
    #[error("install seccomp filter")]
    Install(#[source] seccompiler::Error),
    #[error("read {path}")]
    Status { path: String, source: std::io::Error },
}

/// `CLONE_NEWUSER` (linux/sched.h).
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// System calls refused with `EPERM`, each with the capabilities that lift the refusal (none:
/// always refused), following Docker's default seccomp profile.
const DENIED: &[(i64, &[Capability])] = &[
    (libc::SYS_open_by_handle_at, &[Capability::CAP_DAC_READ_SEARCH]),
    (libc::SYS_mount, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_umount2, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_pivot_root, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_fsopen, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_fsconfig, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_fsmount, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_fspick, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_open_tree, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_move_mount, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_mount_setattr, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_setns, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_swapon, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_swapoff, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_quotactl, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_fanotify_init, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_lookup_dcookie, &[Capability::CAP_SYS_ADMIN]),
    (libc::SYS_bpf, &[Capability::CAP_SYS_ADMIN, Capability::CAP_BPF]),
    (libc::SYS_perf_event_open, &[Capability::CAP_SYS_ADMIN, Capability::CAP_PERFMON]),
    (libc::SYS_kexec_load, &[Capability::CAP_SYS_BOOT]),
    (libc::SYS_kexec_file_load, &[Capability::CAP_SYS_BOOT]),
    (libc::SYS_reboot, &[Capability::CAP_SYS_BOOT]),
    (libc::SYS_init_module, &[Capability::CAP_SYS_MODULE]),
    (libc::SYS_finit_module, &[Capability::CAP_SYS_MODULE]),
    (libc::SYS_delete_module, &[Capability::CAP_SYS_MODULE]),
    (libc::SYS_iopl, &[Capability::CAP_SYS_RAWIO]),
    (libc::SYS_ioperm, &[Capability::CAP_SYS_RAWIO]),
    (libc::SYS_settimeofday, &[Capability::CAP_SYS_TIME]),
    (libc::SYS_clock_settime, &[Capability::CAP_SYS_TIME]),
    (libc::SYS_clock_adjtime, &[Capability::CAP_SYS_TIME]),
    (libc::SYS_adjtimex, &[Capability::CAP_SYS_TIME]),
    (libc::SYS_acct, &[Capability::CAP_SYS_PACCT]),
    (libc::SYS_syslog, &[Capability::CAP_SYSLOG]),
    (libc::SYS_keyctl, &[]),
    (libc::SYS_add_key, &[]),
    (libc::SYS_request_key, &[]),
    (libc::SYS_userfaultfd, &[]),
    (libc::SYS__sysctl, &[]),
    (libc::SYS_uselib, &[]),
    (libc::SYS_nfsservctl, &[]),
];

impl Confinement {
    /// From the kernel names of the capabilities to keep (see `weft_model::effective_caps`).
    pub fn new(caps: &[String], privileged: bool) -> Result<Self, ConfineError> {
        let caps = caps.iter().map(|c| c.parse::<Capability>().map_err(|_| ConfineError::Capability(c.clone()))).collect::<Result<_, _>>()?;
        Ok(Confinement { caps, seccomp: !privileged })
    }

    /// What process `pid` (a container's pid 1) runs with: its bounding set and whether a
    /// seccomp filter is installed.
    pub fn of_process(pid: u32) -> Result<Self, ConfineError> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).map_err(|source| ConfineError::Status { path: path.clone(), source })?;
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("");
        let bits = u64::from_str_radix(field("CapBnd:"), 16).map_err(|e| ConfineError::Status { path: path.clone(), source: std::io::Error::other(e) })?;
        let caps = caps::all().into_iter().filter(|c| c.index() < 64 && bits & c.bitmask() != 0).collect();
        Ok(Confinement { caps, seccomp: field("Seccomp:") == "2" })
    }

    fn has(&self, any: &[Capability]) -> bool {
        any.iter().any(|c| self.caps.contains(c))
    }

    /// The filters for these capabilities: the `EPERM` one, then the `clone3` one.
    fn filters(&self) -> Result<[BpfProgram; 2], ConfineError> {
        let arch = std::env::consts::ARCH.try_into().map_err(|_| ConfineError::Filter(seccompiler::BackendError::InvalidTargetArch(std::env::consts::ARCH.into())))?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().filter(|(_, lift)| lift.is_empty() || !self.has(lift)).map(|(nr, _)| (*nr, Vec::new())).collect();
        if !self.has(&[Capability::CAP_SYS_ADMIN]) {
            // A user namespace would give back every capability inside it: refuse the flag in
            // unshare(flags) and clone(flags, …), both the first argument.
            let newuser = || -> Result<Vec<SeccompRule>, ConfineError> {
                let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(CLONE_NEWUSER), CLONE_NEWUSER).map_err(ConfineError::Filter)?;
                Ok(vec![SeccompRule::new(vec![cond]).map_err(ConfineError::Filter)?])
            };
            rules.insert(libc::SYS_unshare, newuser()?);
            rules.insert(libc::SYS_clone, newuser()?);
        }
        let eperm = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch).map_err(ConfineError::Filter)?;
        let clone3 = SeccompFilter::new([(libc::SYS_clone3, Vec::new())].into(), SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch).map_err(ConfineError::Filter)?;
        Ok([eperm.try_into().map_err(ConfineError::Filter)?, clone3.try_into().map_err(ConfineError::Filter)?])
    }

    /// Applies to the calling thread, which must be the only one: the bounding set first (it
    /// needs CAP_SETPCAP, still held), then effective, permitted, inheritable and ambient, then
    /// `no_new_privs` and the filters. The filters are built before anything changes, so a
    /// failure leaves the process as it was.
    pub fn apply(&self) -> Result<(), ConfineError> {
        let filters = if self.seccomp { Some(self.filters()?) } else { None };
        for c in caps::all() {
            if !self.caps.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, c).map_err(ConfineError::Caps)?;
            }
        }
        let keep: CapsHashSet = self.caps.iter().copied().filter(|c| caps::has_cap(None, CapSet::Permitted, *c).unwrap_or(false)).collect();
        caps::set(None, CapSet::Effective, &keep).map_err(ConfineError::Caps)?;
        caps::set(None, CapSet::Permitted, &keep).map_err(ConfineError::Caps)?;
        caps::clear(None, CapSet::Inheritable).map_err(ConfineError::Caps)?;
        caps::clear(None, CapSet::Ambient).map_err(ConfineError::Caps)?;
        if let Some(filters) = filters {
            for f in &filters {
                // Sets no_new_privs first.
                seccompiler::apply_filter(f).map_err(ConfineError::Install)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_depend_on_the_capabilities() {
        let default = Confinement::new(&["CAP_NET_RAW".into()], false).expect("caps");
        let admin = Confinement::new(&["CAP_SYS_ADMIN".into()], false).expect("caps");
        let [a, _] = default.filters().expect("filters");
        let [b, _] = admin.filters().expect("filters");
        assert!(a.len() > b.len(), "SYS_ADMIN lifts the mount family and the user-namespace rule");
        assert!(Confinement::new(&["CAP_NOPE".into()], false).is_err());
    }
}
