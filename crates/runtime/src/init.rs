//! The code of `weft-init`: the helper the daemon spawns for each container, and the container's
//! pid 1 it forks. Single-threaded, so `fork` is safe here (it is never done in the daemon).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, fork, pivot_root, sethostname, setsid, ForkResult, Pid};

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use crate::{report, ExecConfig, HelperConfig, InitConfig, NetNs};

/// Exit code of a pid 1 that was told to give up (or whose daemon went away) before starting.
pub const ABORTED: i32 = 111;

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("weft-init: {what}: {e}");
    std::process::exit(ABORTED)
}

/// Entry point of `weft-init`: read what to do from stdin; then either make a container (unshare,
/// fork pid 1, report its pid, exit) or run a command in one ([`exec_main`]).
pub fn helper_main() -> ! {
    match read_config().unwrap_or_else(|e| fail("read config", e)) {
        HelperConfig::Container(cfg) => container_main(&cfg),
        HelperConfig::Exec(cfg) => exec_main(&cfg),
    }
}

fn container_main(cfg: &InitConfig) -> ! {
    if let NetNs::Join(path) = &cfg.netns {
        let ns = File::open(path).unwrap_or_else(|e| fail(&format!("open {path}"), e));
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| fail("join network namespace", e));
    }
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
    if cfg.netns == NetNs::New {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).unwrap_or_else(|e| fail("unshare namespaces", e));
    // SAFETY: this process is single-threaded (no thread was ever started in weft-init), so the
    // child may run arbitrary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            let _ = report::send(1, &child.to_string(), &[]);
            std::process::exit(0)
        }
        Ok(ForkResult::Child) => pid1(cfg),
        Err(e) => fail("fork", e),
    }
}

/// The config the daemon wrote to stdin: a 4-byte little-endian length, then that much JSON.
/// Read byte-exact, so nothing of the go-ahead that follows on the same pipe is consumed.
fn read_config() -> std::io::Result<HelperConfig> {
    let mut stdin = std::io::stdin().lock();
    let mut len = [0u8; 4];
    stdin.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(std::io::Error::other(format!("config of {len} bytes")));
    }
    let mut json = vec![0u8; len];
    stdin.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(std::io::Error::other)
}

/// A failure of the helper before pid 1 exists: reported on stdout, where the daemon reads it.
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    let _ = report::send(1, &format!("error: {what}: {e}"), &[]);
    std::process::exit(1)
}

/// `weft exec`: join the namespaces of the container's pid 1 (ipc, uts, net, pid, mount, and its
/// root directory), take its confinement, start the command on the stdio asked for, report its
/// pid with the daemon's ends of that stdio, and exit with the command's code.
fn exec_main(cfg: &ExecConfig) -> ! {
    let (child, ours) = match exec_start(cfg) {
        Ok(started) => started,
        Err(msg) => {
            let _ = report::send(1, &format!("error: {msg}"), &[]);
            std::process::exit(126)
        }
    };
    let raw: Vec<RawFd> = ours.iter().map(|f| f.as_raw_fd()).collect();
    if report::send(1, &format!("started {}", child.id()), &raw).is_err() {
        std::process::exit(126)
    }
    drop(ours);
    let mut child = child;
    let code = child.wait().map(exit_code).unwrap_or(126);
    std::process::exit(code)
}

fn exec_start(cfg: &ExecConfig) -> Result<(std::process::Child, Vec<OwnedFd>), String> {
    let pid = cfg.pid;
    // Into the container's cgroups first: the command is forked from here.
    for f in &cfg.cgroup_procs {
        std::fs::write(f, std::process::id().to_string()).map_err(|e| format!("join cgroup {f}: {e}"))?;
    }
    let open = |ns: &str| File::open(format!("/proc/{pid}/ns/{ns}")).map_err(|e| format!("open namespace {ns} of pid {pid}: {e}"));
    let order = [("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS), ("net", CloneFlags::CLONE_NEWNET), ("pid", CloneFlags::CLONE_NEWPID), ("mnt", CloneFlags::CLONE_NEWNS)];
    let files = order.iter().map(|(n, _)| open(n)).collect::<Result<Vec<_>, _>>()?;
    let root = File::open(format!("/proc/{pid}/root")).map_err(|e| format!("open root of pid {pid}: {e}"))?;
    // What pid 1 may do, this command may do, and no more.
    let confinement = crate::confine::Confinement::of_process(pid).map_err(|e| chain(&e))?;
    for (f, (name, flag)) in files.iter().zip(order) {
        setns(f, flag).map_err(|e| format!("join namespace {name}: {e}"))?;
    }
    nix::unistd::fchdir(&root).map_err(|e| format!("enter root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("enter root: {e}"))?;
    let stdio = Stdio3::open(cfg.tty, cfg.stdin, true).map_err(|e| format!("open stdio: {e}"))?;
    confinement.apply().map_err(|e| chain(&crate::RuntimeError::from(e)))?;
    let mut command = Command::new(&cfg.cmd[0]);
    command.args(&cfg.cmd[1..]).env_clear().envs(cfg.env.iter().filter_map(|kv| kv.split_once('='))).current_dir("/");
    let ours = stdio.attach(&mut command).map_err(|e| format!("open stdio: {e}"))?;
    let child = command.spawn().map_err(|e| format!("exec {}: {e}", cfg.cmd[0]))?;
    Ok((child, ours))
}

fn chain(e: &dyn std::error::Error) -> String {
    std::iter::successors(Some(e), |e| e.source()).map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
}

/// A command's stdio as asked for, and the daemon's ends of it.
struct Stdio3 {
    /// The terminal's slave side, for stdin, stdout and stderr (and as controlling terminal).
    slave: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Handed to the daemon: `[master]` with a tty; else the readers of stdout and stderr (when
    /// captured) and the writer of stdin (when open).
    ours: Vec<OwnedFd>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

impl Stdio3 {
    /// With `tty`, a pty of the devpts at `/dev/pts` (the container's own, once in its root);
    /// else pipes for stdout and stderr if `capture`, and for stdin if `stdin`.
    fn open(tty: bool, stdin: bool, capture: bool) -> std::io::Result<Self> {
        let mut s = Self { slave: None, stdin: None, stdout: None, stderr: None, ours: Vec::new() };
        if tty {
            use nix::fcntl::OFlag;
            let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
            nix::pty::grantpt(&master)?;
            nix::pty::unlockpt(&master)?;
            let name = nix::pty::ptsname_r(&master)?;
            let slave = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC).open(&name)?;
            s.slave = Some(slave.into());
            // SAFETY: the fd was just taken out of the PtyMaster, which no longer owns it.
            s.ours.push(unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) });
            return Ok(s);
        }
        if capture {
            let (r, w) = pipe()?;
            s.stdout = Some(w);
            s.ours.push(r);
            let (r, w) = pipe()?;
            s.stderr = Some(w);
            s.ours.push(r);
        }
        if stdin {
            let (r, w) = pipe()?;
            s.stdin = Some(r);
            s.ours.push(w);
        }
        Ok(s)
    }

    /// Gives `command` its side (stdin is /dev/null unless open; uncaptured output goes where
    /// this process's goes) and returns the daemon's ends.
    fn attach(self, command: &mut Command) -> std::io::Result<Vec<OwnedFd>> {
        if let Some(slave) = self.slave {
            let (out, err) = (slave.try_clone()?, slave.try_clone()?);
            command.stdin(Stdio::from(slave)).stdout(Stdio::from(out)).stderr(Stdio::from(err));
            // SAFETY: runs in the forked child before exec: setsid and ioctl are
            // async-signal-safe; the command leads a new session with the terminal (now its
            // stdin) as controlling terminal, so ^C and hangups reach it.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(command, || {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            return Ok(self.ours);
        }
        command.stdin(self.stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
        if let Some(out) = self.stdout {
            command.stdout(Stdio::from(out));
        }
        if let Some(err) = self.stderr {
            command.stderr(Stdio::from(err));
        }
        Ok(self.ours)
    }
}

fn pid1(cfg: &InitConfig) -> ! {
    // stdout is the pipe that reported our pid: keep it (close-on-exec) to report the start, and
    // send the container's output where stderr goes (the log the daemon opened).
    // SAFETY: fcntl/dup2 on fds this process owns; fd 1 is atomically replaced.
    let report = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: as above.
    if report < 0 || unsafe { libc::dup2(2, 1) } < 0 {
        std::process::exit(ABORTED);
    }
    // SAFETY: `report` is a fresh fd from F_DUPFD_CLOEXEC that nothing else owns.
    let report = unsafe { OwnedFd::from_raw_fd(report) };
    let tell = |msg: &str| {
        let _ = report::send(report.as_raw_fd(), msg, &[]);
    };
    let _ = setsid();
    // Not dumpable: no process of the container may ptrace pid 1 (it runs as the same root, and
    // a stopped pid 1 would hang the container's exit and `run --rm`), nor open its /proc files
    // that need ptrace access. The command gets its own dumpable state back at exec.
    // SAFETY: prctl(PR_SET_DUMPABLE) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        die("prctl(PR_SET_DUMPABLE)", std::io::Error::last_os_error());
    }
    // Wait for the daemon: 'g' starts the command; anything else, or EOF because the daemon
    // died or rolled back, ends this namespace before anything ran in it.
    let mut go = [0u8; 1];
    if !matches!(std::io::stdin().read(&mut go), Ok(1) if go[0] == b'g') {
        std::process::exit(ABORTED);
    }
    if let Err(e) = File::create(&cfg.started_file) {
        die(&format!("create {}", cfg.started_file), e);
    }
    let mut exit_file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&cfg.exit_file)
        .unwrap_or_else(|e| die(&format!("open {}", cfg.exit_file), e));
    sethostname(&cfg.hostname).unwrap_or_else(|e| die("set hostname", e));
    if let Err((what, e)) = setup_mounts(cfg) {
        tell(&format!("error: {what}: {e}"));
        die(&what, e)
    }
    // In the container's root now: a tty is of its own devpts.
    let stdio = Stdio3::open(cfg.tty, cfg.stdin, false).unwrap_or_else(|e| {
        tell(&format!("error: open the command's stdio: {e}"));
        die("open stdio", e)
    });

    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH] {
        mask.add(s);
    }
    mask.thread_block().unwrap_or_else(|e| die("block signals", e));
    // Close-on-exec: the command must not inherit it.
    let sfd = SignalFd::with_flags(&mask, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC).unwrap_or_else(|e| die("signalfd", e));

    // Docker's confinement, for pid 1 and so for everything it starts.
    let confined = crate::confine::Confinement::new(&cfg.caps, cfg.privileged).and_then(|c| c.apply());
    if let Err(e) = confined {
        let e = crate::RuntimeError::from(e);
        let msg = chain(&e);
        tell(&format!("error: {msg}"));
        die("confine", msg)
    }
    let env = cfg.env.iter().filter_map(|kv| kv.split_once('='));
    let mut command = Command::new(&cfg.cmd[0]);
    command.args(&cfg.cmd[1..]).env_clear().envs(env).current_dir("/");
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe
    // functions (sigprocmask, signal) on its own state. (Registered before the terminal's
    // setsid, so it runs first.)
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, reset_signals);
    }
    let ours = stdio.attach(&mut command).unwrap_or_else(|e| {
        tell(&format!("error: open the command's stdio: {e}"));
        die("open stdio", e)
    });
    let child = match command.spawn() {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("weft-init: exec {}: {e}", cfg.cmd[0]);
            tell(&format!("error: exec {}: {e}", cfg.cmd[0]));
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            finish(&mut exit_file, code)
        }
    };
    let raw: Vec<RawFd> = ours.iter().map(|f| f.as_raw_fd()).collect();
    let _ = report::send(report.as_raw_fd(), "started", &raw);
    drop(ours);
    drop(report);
    loop {
        let Ok(Some(info)) = sfd.read_signal() else { continue };
        let sig = info.ssi_signo as i32;
        if sig != libc::SIGCHLD {
            if let Ok(s) = Signal::try_from(sig) {
                let _ = kill(child, s);
            }
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => finish(&mut exit_file, code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => finish(&mut exit_file, 128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// The command starts with no blocked signal and default dispositions, whatever pid 1 (blocking
/// everything it forwards) or the daemon's launcher (often ignoring SIGINT/SIGQUIT) had.
fn reset_signals() -> std::io::Result<()> {
    // SAFETY: sigemptyset/sigprocmask/signal on local or process state, async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
    Ok(())
}

/// Records the command's exit code and exits; the kernel then kills what is left in the pid
/// namespace, as it does when any pid 1 exits. (Not synced to disk: the daemon reads it from the
/// page cache, even after its own restart; a machine that crashed has no containers left.)
fn finish(exit_file: &mut File, code: i32) -> ! {
    let _ = write!(exit_file, "{code}");
    std::process::exit(code)
}

type MountResult = Result<(), (String, nix::Error)>;

fn ctx(what: impl Fn() -> String) -> impl Fn(nix::Error) -> (String, nix::Error) {
    move |e| (what(), e)
}

/// [`ctx`] for std's I/O errors.
fn io_ctx(what: impl Fn() -> String) -> impl Fn(std::io::Error) -> (String, nix::Error) {
    move |e| (what(), nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn bind(src: &Path, dst: &Path) -> MountResult {
    if !dst.exists() {
        if let Some(parent) = dst.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = File::create(dst);
    }
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(ctx(|| format!("bind {} on {}", src.display(), dst.display())))
}

fn setup_mounts(cfg: &InitConfig) -> MountResult {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(ctx(|| "make mounts private".into()))?;
    let root = cfg.rootfs.as_deref().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    if cfg.rootfs.is_some() {
        mount(Some(&root), &root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(ctx(|| format!("bind rootfs {}", root.display())))?;
        for d in ["proc", "dev", "sys", "etc", "tmp"] {
            let _ = std::fs::create_dir_all(root.join(d));
        }
        if !cfg.privileged {
            // Device nodes made in the root filesystem (CAP_MKNOD is Docker's default) cannot be
            // opened: weft has no device cgroup, so `nodev` is what keeps a block device shut.
            remount_adding(&root, MsFlags::MS_NODEV)?;
        }
    }
    if !cfg.privileged {
        private_dev(&root.join("dev"))?;
        // Populated: now nothing can add a node to it either.
        remount_adding(&root.join("dev"), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID)?;
    } else if cfg.rootfs.is_some() {
        mount(Some("/dev"), &root.join("dev"), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(ctx(|| "bind /dev".into()))?;
    }
    // sysfs shows the container's own network devices; read-only unless privileged.
    let ro = if cfg.privileged { MsFlags::empty() } else { MsFlags::MS_RDONLY };
    let sys = root.join("sys");
    if mount(Some("sysfs"), &sys, Some("sysfs"), ro | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>).is_err() && !cfg.privileged {
        read_only(&sys)?;
    }
    mount(Some("proc"), &root.join("proc"), Some("proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>)
        .map_err(ctx(|| "mount /proc".into()))?;
    if !cfg.privileged {
        for p in MASKED {
            mask(&root, &root.join(p))?;
        }
        for p in READ_ONLY {
            let p = root.join(p);
            if p.exists() {
                read_only(&p)?;
            }
        }
    }
    bind(Path::new(&cfg.hosts), &root.join("etc/hosts"))?;
    bind(Path::new(&cfg.hostname_file), &root.join("etc/hostname"))?;
    bind(Path::new(&cfg.resolv_conf), &root.join("etc/resolv.conf"))?;
    if cfg.rootfs.is_some() {
        chdir(&root).map_err(ctx(|| "chdir rootfs".into()))?;
        pivot_root(".", ".").map_err(ctx(|| "pivot_root".into()))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(ctx(|| "detach old root".into()))?;
        chdir("/").map_err(ctx(|| "chdir /".into()))?;
    }
    Ok(())
}

/// Docker's masked paths: hidden behind an empty read-only tmpfs (directories) or `/dev/null`.
const MASKED: &[&str] = &[
    "proc/asound",
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
const READ_ONLY: &[&str] = &["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

fn mask(root: &Path, p: &Path) -> MountResult {
    if p.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("size=0"))
            .map_err(ctx(|| format!("mask {}", p.display())))
    } else if p.exists() {
        mount(Some(&root.join("dev/null")), p, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(ctx(|| format!("mask {}", p.display())))
    } else {
        Ok(())
    }
}

/// `mount -o remount,bind,FLAGS P`, keeping the mount's other flags.
fn remount_adding(p: &Path, add: MsFlags) -> MountResult {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let have = statvfs(p).map_err(ctx(|| format!("statvfs {}", p.display())))?.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | add;
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>).map_err(ctx(|| format!("remount {}", p.display())))
}

/// `mount --bind P P; mount -o remount,bind,ro P`.
fn read_only(p: &Path) -> MountResult {
    mount(Some(p), p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(ctx(|| format!("bind {}", p.display())))?;
    mount(None::<&str>, p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>)
        .map_err(ctx(|| format!("remount {} read-only", p.display())))
}

/// A `/dev` of the container's own, as Docker makes it: a tmpfs with the usual character
/// devices, a private devpts (its `ptmx` as `/dev/ptmx`), `shm`, `mqueue` and the std* links.
fn private_dev(dev: &Path) -> MountResult {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    mount(Some("tmpfs"), dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, Some("mode=755,size=65536k"))
        .map_err(ctx(|| "mount /dev".into()))?;
    for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
        let p = dev.join(name);
        mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor)).map_err(ctx(|| format!("mknod /dev/{name}")))?;
        // mknod's mode is cut by the umask.
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).map_err(io_ctx(|| format!("chmod /dev/{name}")))?;
    }
    let sub = |name: &str, fstype: &str, flags: MsFlags, data: &str| -> MountResult {
        let p = dev.join(name);
        let _ = std::fs::create_dir(&p);
        mount(Some(fstype), &p, Some(fstype), flags, Some(data)).map_err(ctx(|| format!("mount /dev/{name}")))
    };
    sub("pts", "devpts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")?;
    sub("shm", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, "mode=1777,size=65536k")?;
    sub("mqueue", "mqueue", MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, "")?;
    for (link, target) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        std::os::unix::fs::symlink(target, dev.join(link)).map_err(io_ctx(|| format!("link /dev/{link}")))?;
    }
    Ok(())
}

/// Maps a wait status to a shell-style exit code (128 + signal for a killed process).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}
