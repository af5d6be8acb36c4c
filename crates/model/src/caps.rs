//! Capabilities as `docker run` takes them: the default set a container gets, `--cap-add`,
//! `--cap-drop` (names with or without `CAP_`, any case, and `ALL`) and `--privileged`. The result
//! is a sorted list of kernel names (`CAP_NET_ADMIN`) that the runtime turns into bits.

use crate::ModelError;

/// Every capability the kernel knows (linux/capability.h, up to CAP_CHECKPOINT_RESTORE), in bit order.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What Docker grants a container by default (moby's `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The kernel name of a capability as a user may type it (`net_admin`, `NET_ADMIN`,
/// `CAP_NET_ADMIN`), or `ALL`.
fn normalize(name: &str) -> Result<&'static str, ModelError> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok("ALL");
    }
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    ALL_CAPS.iter().copied().find(|c| *c == full).ok_or_else(|| ModelError::Capability(name.to_string()))
}

/// The capability set of a container: everything with `privileged`, else Docker's defaults with
/// `drop` removed and then `add` added (so `--cap-drop ALL --cap-add NET_RAW` is just NET_RAW).
/// Sorted in bit order.
pub fn effective_caps(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<&'static str>, ModelError> {
    let add = add.iter().map(|c| normalize(c)).collect::<Result<Vec<_>, _>>()?;
    let drop = drop.iter().map(|c| normalize(c)).collect::<Result<Vec<_>, _>>()?;
    if privileged || add.contains(&"ALL") {
        return Ok(ALL_CAPS.to_vec());
    }
    let drop_all = drop.contains(&"ALL");
    Ok(ALL_CAPS
        .iter()
        .copied()
        .filter(|c| add.contains(c) || (!drop_all && DEFAULT_CAPS.contains(c) && !drop.contains(c)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn defaults_add_drop_all_and_privileged() {
        assert_eq!(effective_caps(false, &[], &[]).expect("caps").len(), 14);
        let c = effective_caps(false, &s(&["net_admin"]), &s(&["CAP_MKNOD"])).expect("caps");
        assert!(c.contains(&"CAP_NET_ADMIN") && !c.contains(&"CAP_MKNOD") && c.len() == 14);
        assert_eq!(effective_caps(false, &s(&["NET_RAW"]), &s(&["all"])).expect("caps"), ["CAP_NET_RAW"]);
        assert_eq!(effective_caps(false, &s(&["ALL"]), &[]).expect("caps").len(), 41);
        assert_eq!(effective_caps(true, &[], &s(&["ALL"])).expect("caps").len(), 41);
        assert_eq!(effective_caps(false, &s(&["NOPE"]), &[]), Err(ModelError::Capability("NOPE".into())));
        assert!(effective_caps(false, &s(&["net admin"]), &[]).is_err());
    }
}
