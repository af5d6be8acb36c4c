//! `weft exec`: run a command inside all the namespaces of a running container. Called from the
//! CLI while it is single-threaded (joining a mount namespace requires it).

use std::fs::File;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::{Result, RuntimeError};

/// Joins the namespaces of `pid` (ipc, uts, net, pid, mount, and its root directory) and runs
/// `cmd` there with `env`, confined as pid 1 is (its capabilities and seccomp filter); returns
/// the command's exit code.
pub fn exec_in(pid: u32, cmd: &[String], env: &[String]) -> Result<i32> {
    let err = |op: &'static str| move |source: std::io::Error| RuntimeError::Process { op, pid, source };
    let open = |ns: &str| File::open(format!("/proc/{pid}/ns/{ns}")).map_err(err("open namespace"));
    let order = [("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS), ("net", CloneFlags::CLONE_NEWNET), ("pid", CloneFlags::CLONE_NEWPID), ("mnt", CloneFlags::CLONE_NEWNS)];
    let files = order.iter().map(|(n, _)| open(n)).collect::<Result<Vec<_>>>()?;
    let root = File::open(format!("/proc/{pid}/root")).map_err(err("open root"))?;
    // What pid 1 may do, this command may do, and no more.
    let confinement = crate::confine::Confinement::of_process(pid)?;
    for (f, (_, flag)) in files.iter().zip(order) {
        setns(f, flag).map_err(|e| err("join namespace")(e.into()))?;
    }
    nix::unistd::fchdir(&root).map_err(|e| err("enter root")(e.into()))?;
    nix::unistd::chroot(".").map_err(|e| err("enter root")(e.into()))?;
    confinement.apply()?;
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env_clear()
        .envs(env.iter().filter_map(|kv| kv.split_once('=')))
        .current_dir("/")
        .status()
        .map_err(|source| RuntimeError::Exec { cmd: cmd[0].clone(), source })?;
    Ok(crate::init::exit_code(status))
}
