//! The container runtime. A container is a set of namespaces (mount, uts, ipc, pid and, unless it
//! uses the host's or another container's, net) running one command. The daemon never forks: it
//! spawns the `weft-init` helper ([`spawn`]), which unshares the namespaces, forks the container's
//! pid 1 and reports its pid. That pid 1 waits on a pipe until the daemon has wired the network
//! ([`Spawned::start`]), then mounts `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` (and pivots
//! into `--rootfs`), starts the command, reaps zombies, forwards signals, and writes the command's
//! exit code to a file before exiting ([`init`]). If the daemon dies before the go-ahead, the pipe
//! closes and the pid 1 exits without running anything, so a crash cannot leave a half-made
//! container running.

pub mod cgroup;
pub mod confine;
pub mod devfilter;
pub mod init;
mod report;
pub mod rootfs;
mod spawn;

pub use spawn::{kill, pid_running, pid_start_time, read_exit_code, set_winsize, spawn, spawn_exec, wait_exit, Exec, Spawned};

use serde::{Deserialize, Serialize};

/// What the network namespace of a new container is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum NetNs {
    /// A new, empty namespace (bridge and none modes).
    New,
    /// The host's (the daemon's) namespace.
    Host,
    /// An existing namespace, by path (`container:NAME`).
    Join(String),
}

/// The instructions `weft-init` reads from its stdin (a 4-byte little-endian length, then JSON),
/// never from its argv, which every user of the host can read in `ps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitConfig {
    pub id: String,
    pub hostname: String,
    pub netns: NetNs,
    pub rootfs: Option<String>,
    /// Host files bind-mounted over `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub hosts: String,
    pub hostname_file: String,
    pub resolv_conf: String,
    /// Where pid 1 writes the exit code of the command.
    pub exit_file: String,
    /// Created by pid 1 when it got the go-ahead: a container without it never ran its command
    /// (its daemon died first) and is being torn down.
    pub started_file: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// The capabilities the container keeps (kernel names), and `--privileged` (no seccomp
    /// filter, no masked or read-only paths, the host's `/dev`).
    pub caps: Vec<String>,
    pub privileged: bool,
    /// The command's stdio is a terminal of the container's devpts; pid 1 hands its master side
    /// to the daemon.
    pub tty: bool,
    /// The command's stdin is a pipe whose writing end pid 1 hands to the daemon (without `tty`).
    pub stdin: bool,
}

/// A command to run in a running container (`weft exec`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecConfig {
    /// The container's pid 1, whose namespaces, root and confinement the command gets.
    pub pid: u32,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    /// The `cgroup.procs` files of the container's cgroups: the helper joins them before it
    /// starts the command, so the command is counted and limited with the container.
    #[serde(default)]
    pub cgroup_procs: Vec<String>,
}

/// What `weft-init` is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum HelperConfig {
    Container(Box<InitConfig>),
    Exec(ExecConfig),
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("spawn init helper {path}")]
    Spawn { path: String, source: std::io::Error },
    #[error("init helper failed: {0}")]
    Init(String),
    #[error("{op} of pid {pid}")]
    Process { op: &'static str, pid: u32, source: std::io::Error },
    #[error("exec {cmd}")]
    Exec { cmd: String, source: std::io::Error },
    #[error("confine")]
    Confine(#[from] confine::ConfineError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The environment every container starts with, before `-e`.
pub fn base_env(hostname: &str) -> Vec<String> {
    vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={hostname}"),
        "HOME=/root".into(),
    ]
}
