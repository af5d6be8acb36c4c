//! The I/O actions: attach to a container, follow its log, resize its terminal, and run a
//! command in it (`weft exec`). The mechanisms are in [`crate::stdio`].

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use weft_model::{new_id, short_id, ExecSpec, Status};
use weft_runtime::ExecConfig;

use crate::stdio::{AsyncPipe, Attachment, ExecSession, Follower};
use crate::{blocking, find_container, Engine, EngineError, Result};

fn open_log(path: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|source| EngineError::Io { op: "open log", path: path.to_string(), source })
}

impl Engine {
    /// A follower of the log at `path`, read from `file`'s offset; with `exit`, until the exit.
    pub(crate) fn follower(&self, path: &str, file: std::fs::File, exit: Option<tokio::sync::watch::Receiver<Option<i32>>>) -> Result<Follower> {
        Follower::new(&self.logs, Path::new(path), file, exit).map_err(|source| EngineError::Io { op: "follow log", path: path.to_string(), source })
    }

    /// Attaches to a running container: its output from now (or, with `from_start`, all of it)
    /// until it exits, and its input if it was started with `-i` or `-t` by this daemon.
    pub(crate) fn attach(&self, key: &str, from_start: bool) -> Result<Attachment> {
        let (c, exit, console) = {
            let st = self.lock();
            let c = find_container(&st, key)?.clone();
            if c.state.status != Status::Running {
                return Err(EngineError::NotRunning(key.to_string()));
            }
            let exit = st.exits.get(&c.id).map(|tx| tx.subscribe());
            let console = st.consoles.get(&c.id).cloned();
            (c, exit, console)
        };
        let mut file = open_log(&c.log_path)?;
        if !from_start {
            file.seek(SeekFrom::End(0)).map_err(|source| EngineError::Io { op: "seek log", path: c.log_path.clone(), source })?;
        }
        let output = self.follower(&c.log_path, file, exit)?;
        Ok(Attachment { id: c.id, output, console })
    }

    /// A container's output; with `follow`, until it exits.
    pub(crate) fn logs(&self, key: &str, follow: bool) -> Result<Follower> {
        let (c, exit) = {
            let st = self.lock();
            let c = find_container(&st, key)?.clone();
            let exit = st.exits.get(&c.id).filter(|_| follow).map(|tx| tx.subscribe());
            (c, exit)
        };
        self.follower(&c.log_path, open_log(&c.log_path)?, exit)
    }

    /// Sets the window size of a container's terminal (`-t`).
    pub(crate) fn resize(&self, key: &str, rows: u16, cols: u16) -> Result<()> {
        let console = {
            let st = self.lock();
            let c = find_container(&st, key)?;
            st.consoles.get(&c.id).cloned().ok_or_else(|| EngineError::NotRunning(key.to_string()))?
        };
        console.resize(rows, cols).map_err(|e| EngineError::Terminal(format!("resize {key}: {e}")))
    }

    /// Sets the window size of a `weft exec -t` process's terminal.
    pub(crate) fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
        let master = self.lock().execs.get(exec_id).cloned().ok_or_else(|| EngineError::NoSuchExec(exec_id.to_string()))?;
        master.resize(rows, cols).map_err(|e| EngineError::Terminal(format!("resize exec {exec_id}: {e}")))
    }

    /// Starts `spec.cmd` in running container `key`, in all its namespaces and confined as its
    /// pid 1; the session carries its stdio and, once it ends, its exit code.
    pub(crate) async fn exec(self: &Arc<Self>, key: &str, spec: ExecSpec) -> Result<ExecSession> {
        spec.validate()?;
        let c = self.container(key)?;
        if c.state.status != Status::Running {
            return Err(EngineError::NotRunning(key.to_string()));
        }
        let mut env = c.env.clone();
        env.extend(spec.env.iter().cloned());
        // The command joins the container's cgroup (one made before weft had cgroups has none).
        let cg = self.cgroups.cgroup(&c.id);
        let cgroup_procs = if cg.exists() { cg.procs_files() } else { Vec::new() };
        let cfg = ExecConfig { pid: c.state.pid, cmd: spec.cmd.clone(), env, tty: spec.tty, stdin: spec.attach_stdin, cgroup_procs };
        let init = self.cfg.init_path.clone();
        let exec = blocking(move || match weft_runtime::spawn_exec(&init, &cfg) {
            Err(weft_runtime::RuntimeError::Init(msg)) => Err(EngineError::Exec(msg)),
            other => Ok(other?),
        })
        .await?;
        let io = |e: std::io::Error| EngineError::Io { op: "relay stdio of exec in", path: c.name.clone(), source: e };
        let mut fds = exec.fds.into_iter();
        let (output, stdin) = if spec.tty {
            let master = AsyncPipe::new(fds.next().ok_or_else(|| EngineError::Exec("exec gave no terminal".into()))?).map_err(io)?;
            (vec![master.clone()], spec.attach_stdin.then_some(master))
        } else {
            let pipes = fds.map(AsyncPipe::new).collect::<std::io::Result<Vec<_>>>().map_err(io)?;
            let (mut output, mut stdin) = (pipes, None);
            if spec.attach_stdin {
                stdin = output.pop();
            }
            (output, stdin)
        };
        if output.len() != if spec.tty { 1 } else { 2 } {
            return Err(EngineError::Exec("exec gave the wrong stdio".into()));
        }
        let id = new_id();
        if spec.tty {
            self.lock().execs.insert(id.clone(), output[0].clone());
        }
        let (tx, exit) = tokio::sync::oneshot::channel();
        let (eng, exec_id, mut helper) = (self.clone(), id.clone(), exec.helper);
        tokio::spawn(async move {
            let _ = weft_runtime::wait_exit(helper.id()).await;
            let code = helper.wait().map(weft_runtime::init::exit_code).unwrap_or(126);
            eng.lock().execs.remove(&exec_id);
            let _ = tx.send(code);
        });
        tracing::debug!(container = short_id(&c.id), exec = short_id(&id), pid = exec.pid, "exec started");
        Ok(ExecSession { id, tty: spec.tty, output, stdin, exit })
    }
}
