//! Container actions: run (namespaces, files, network, commit, go), the exit of a container, stop,
//! kill, remove and wait.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::watch;
use weft_kernel::netns;
use weft_model::{new_id, parse_add_host, short_id, ContainerRecord, ContainerState, NetworkMode, RunSpec, Status};
use weft_runtime::{InitConfig, NetNs};
use weft_store::{Op, Txn};

use crate::network::loopback_only;
use crate::stdio::{Attachment, Console};
use crate::undo::Undo;
use crate::{blocking, files, find_container, now, Engine, EndpointPlan, EngineError, Result};

/// Where a new container's network comes from, decided under the state lock.
enum Plan {
    /// The first network (eth0, default route) and any more (eth1, …).
    Networks(Vec<EndpointPlan>),
    Join { path: String, ip: Option<IpAddr> },
    Host,
    None,
}

impl Plan {
    fn endpoints(&self) -> Vec<weft_model::EndpointRecord> {
        match self {
            Plan::Networks(plans) => plans.iter().map(|p| p.endpoint.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// What `reserve` took under the state lock: the network plan, the links (with the
/// linked containers' environments), and the networks marked as being set up.
struct Reserved {
    plan: Plan,
    links: Vec<(weft_model::LinkRecord, Vec<String>)>,
    _pending: crate::Pending,
}

/// What `wire` needs to give a new container its network.
struct Wiring<'a> {
    id: &'a str,
    pid: u32,
    plan: Plan,
    netns_kind: &'a NetNs,
    links: &'a [weft_model::LinkRecord],
    port_specs: &'a [weft_model::PortSpec],
    dns_client: bool,
}

/// What `wire` made: the namespace's path (the sandbox key), the endpoints, the published ports.
type Wired = (Option<String>, Vec<weft_model::EndpointRecord>, Vec<weft_model::PortMapping>);

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nimble", "proud", "quiet",
    "sharp", "swift", "vivid", "wise",
];
const NOUNS: [&str; 16] = [
    "heron", "otter", "lynx", "finch", "maple", "cedar", "falcon", "badger", "comet", "delta", "ember", "fjord",
    "harbor", "island", "meadow", "willow",
];

fn generated_name(id: &str, taken: impl Fn(&str) -> bool) -> String {
    let b = u8::from_str_radix(&id[..2], 16).unwrap_or(0);
    let base = format!("{}_{}", ADJECTIVES[(b >> 4) as usize], NOUNS[(b & 15) as usize]);
    if !taken(&base) {
        return base;
    }
    format!("{base}_{}", &id[..6])
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |source| EngineError::Io { op, path: path.display().to_string(), source }
}

/// Resolves `--link`s (default bridge only): each target must run there. Returns the links with
/// the targets' environments.
fn resolve_links(st: &crate::State, spec: &RunSpec, mode: &NetworkMode) -> Result<Vec<(weft_model::LinkRecord, Vec<String>)>> {
    if spec.links.is_empty() {
        return Ok(Vec::new());
    }
    if *mode != NetworkMode::Network(weft_model::DEFAULT_NETWORK.into()) || !spec.networks.is_empty() {
        return Err(EngineError::Refused("--link works on the default bridge network only; on user-defined networks containers find each other by name".into()));
    }
    let mut out = Vec::new();
    for l in &spec.links {
        let (target, alias) = weft_model::parse_link(l)?;
        let c = find_container(st, &target)?;
        if c.state.status != Status::Running {
            return Err(EngineError::NotRunning(target));
        }
        let ip = c
            .sandbox
            .endpoints
            .iter()
            .find(|e| e.network_name == weft_model::DEFAULT_NETWORK)
            .map(|e| e.ip)
            .ok_or_else(|| EngineError::Refused(format!("cannot link to {target}: it is not on the default bridge")))?;
        let mut ports: Vec<(u16, weft_model::Proto)> = c.sandbox.ports.iter().map(|m| (m.container_port, m.proto)).collect();
        for (range, proto) in c.spec.expose.iter().filter_map(|e| weft_model::parse_expose(e).ok()) {
            ports.extend(range.iter().map(|p| (p, proto)));
        }
        ports.sort();
        ports.dedup();
        out.push((weft_model::LinkRecord { target: c.id.clone(), name: c.name.clone(), alias, ip, ports }, c.spec.env.clone()));
    }
    Ok(out)
}

/// Signals a container's pid 1, if the process with that pid is still the one that was started
/// (same start time): a pid reused by another process is never signalled.
fn send_signal(c: &ContainerRecord, sig: Signal) -> Result<()> {
    let reused = c.state.pid_start != 0 && weft_runtime::pid_start_time(c.state.pid) != Some(c.state.pid_start);
    if c.state.pid == 0 || reused {
        return Ok(()); // already gone: its exit is being processed
    }
    Ok(weft_runtime::kill(c.state.pid, sig)?)
}

fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || EngineError::Signal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
}

impl Engine {

    /// Runs a container; with `attach`, also returns its output from the first byte and its
    /// input, set up before the command starts.
    pub(crate) async fn run(self: &Arc<Self>, spec: RunSpec, attach: bool) -> Result<(String, Option<Attachment>)> {
        if spec.cmd.is_empty() {
            return Err(EngineError::NoCommand);
        }
        let mode = spec.validate()?;
        let limits = self.limits(&spec)?;
        let id = new_id();
        let t0 = Instant::now();
        // Held from before the name is taken until the container is registered: an `rm` of the
        // name meanwhile waits for the run to end either way (see `remove`).
        let serial = self.lock_container(&id).await;
        let mut undo = Undo::new();
        // The name first, before anything that waits (a rootfs to unpack, bridges to settle).
        let name = {
            let mut st = self.lock();
            let name = match &spec.name {
                Some(n) => n.trim_start_matches('/').to_string(),
                None => generated_name(&id, |n| st.names.contains_key(n)),
            };
            if st.names.contains_key(&name) {
                return Err(EngineError::NameInUse(name));
            }
            st.names.insert(name.clone(), id.clone());
            name
        };
        {
            let (eng, name) = (self.clone(), name.clone());
            undo.push("release the name", move || {
                eng.lock().names.remove(&name);
            });
        }
        let mut spec = spec;
        spec.rootfs = self.resolve_rootfs(spec.rootfs.take()).await?;
        let extra_hosts = spec.extra_hosts.iter().map(|h| parse_add_host(h)).collect::<Result<Vec<_>, _>>()?;
        let port_specs = spec.port_specs()?;

        if let NetworkMode::Network(n) = &mode {
            let nets: Vec<&str> = std::iter::once(n.as_str()).chain(spec.networks.iter().map(String::as_str)).collect();
            self.settle_bridges(&nets).await;
        }
        let (reserved, claims) = self.reserve_claimed(&id, &mut undo, |u| self.reserve(u, &id, &spec, &mode), |r: &Reserved| r.plan.endpoints()).await?;
        let Reserved { plan, links, _pending } = reserved;
        tracing::Span::current().record("container", short_id(&id)).record("name", name.as_str());

        // Files: /etc/hosts, /etc/hostname, /etc/resolv.conf, and the log.
        let hostname = spec.hostname.clone().unwrap_or_else(|| short_id(&id).to_string());
        let run_dir = self.run_dir(&id);
        let data_dir = self.data_dir(&id);
        for d in [&run_dir, &data_dir] {
            std::fs::create_dir_all(d).map_err(io("create directory", d))?;
            let d = d.clone();
            undo.push("remove directory", move || {
                let _ = std::fs::remove_dir_all(d);
            });
        }
        let dns_client = self.write_files(&run_dir, &spec, &plan, &hostname, &links, extra_hosts)?;
        let log_path = data_dir.join("container.log");
        let log = std::fs::File::create(&log_path).map_err(io("create log", &log_path))?;
        if let Some(cap) = weft_model::parse_log_opts(&spec.log_opts)? {
            self.logs.cap(&log_path, cap).map_err(io("watch log", &log_path))?;
            let (eng, p) = (self.clone(), log_path.clone());
            undo.push("stop watching the log", move || eng.logs.forget(&p));
        }
        let reader = if attach { Some(std::fs::File::open(&log_path).map_err(io("open log", &log_path))?) } else { None };
        // With a terminal, weftd copies its output into the log.
        let tty_log = if spec.tty { Some(log.try_clone().map_err(io("open log", &log_path))?) } else { None };

        // Namespaces and pid 1, which waits for the go-ahead.
        let netns_kind = match &plan {
            Plan::Networks(_) | Plan::None => NetNs::New,
            Plan::Host => NetNs::Host,
            Plan::Join { path, .. } => NetNs::Join(path.clone()),
        };
        let mut env = weft_runtime::base_env(&hostname);
        for (l, target_env) in &links {
            env.extend(weft_model::link_env(&name, l, target_env));
        }
        env.extend(spec.env.iter().cloned());
        let links: Vec<weft_model::LinkRecord> = links.into_iter().map(|(l, _)| l).collect();
        let init_cfg = InitConfig {
            id: id.clone(),
            hostname: hostname.clone(),
            netns: netns_kind.clone(),
            rootfs: spec.rootfs.clone(),
            hosts: run_dir.join("hosts").display().to_string(),
            hostname_file: run_dir.join("hostname").display().to_string(),
            resolv_conf: run_dir.join("resolv.conf").display().to_string(),
            exit_file: run_dir.join("exit").display().to_string(),
            started_file: run_dir.join("started").display().to_string(),
            cmd: spec.cmd.clone(),
            env: env.clone(),
            caps: weft_model::effective_caps(spec.privileged, &spec.cap_add, &spec.cap_drop)?.into_iter().map(String::from).collect(),
            privileged: spec.privileged,
            tty: spec.tty,
            stdin: spec.open_stdin,
        };
        // Its cgroup with its limits, then pid 1 (waiting for the go-ahead) moved into it: all
        // the command starts is counted and limited there.
        let cgroup = self.make_cgroup(&id, limits).await?;
        {
            let cg = cgroup.clone();
            undo.push("remove the cgroup", move || {
                if let Err(e) = cg.destroy() {
                    tracing::error!(error = %crate::limits::chain(&e), "removing the cgroup failed; the next start retries");
                }
            });
        }
        let init_path = self.cfg.init_path.clone();
        let spawned = blocking(move || Ok(weft_runtime::spawn(&init_path, &init_cfg, log)?)).await?;
        let pid = spawned.pid;
        undo.push("kill pid 1", move || {
            let _ = weft_runtime::kill(pid, Signal::SIGKILL);
        });
        blocking(move || Ok(cgroup.add(pid).map_err(weft_runtime::RuntimeError::from)?)).await?;
        let t_spawn = t0.elapsed();

        // The network: keep the namespace, wire the endpoint.
        let t_net = Instant::now();
        let wiring = Wiring { id: &id, pid, plan, netns_kind: &netns_kind, links: &links, port_specs: &port_specs, dns_client };
        let (sandbox_key, endpoints, ports) = self.wire(&mut undo, wiring).await?;
        let t_net = t_net.elapsed();

        // Commit, then let the command run.
        let rec = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: now(),
            spec,
            state: ContainerState {
                status: Status::Running,
                pid,
                pid_start: weft_runtime::pid_start_time(pid).unwrap_or(0),
                exit_code: 0,
                started_at: now(),
                finished_at: 0,
            },
            sandbox: weft_model::Sandbox { netns: sandbox_key, endpoints, ports },
            log_path: log_path.display().to_string(),
            links,
            hostname: hostname.clone(),
            env,
        };
        let stdin_once = rec.spec.stdin_once;
        // The exit's channel is there before the commit puts the record in the cache: nobody
        // sees the container running without one. The exit is processed after this run has
        // registered the console (`serial` is still held): so it waits for the terminal's output
        // to be in the log.
        let (tx, exit) = watch::channel(None);
        self.lock().exits.insert(id.clone(), tx);
        {
            let (eng, id) = (self.clone(), id.clone());
            undo.push("drop the exit channel", move || drop(eng.lock().exits.remove(&id)));
        }
        let bytes = serde_json::to_vec(&rec)?;
        if !self.commit(claims.txn(vec![Op::Put(self.keys.container(&id), bytes.clone())])).await?.succeeded {
            return Err(self.claims_lost(&claims).await);
        }
        crate::mirror::container(&data_dir, &bytes);
        undo.commit();
        self.dns_update(&id);
        self.watch_exit(id.clone(), pid);
        // The record is committed: a command that cannot start leaves an exited container (with
        // its exit code and log), as in Docker, and the error goes to the user.
        let console = match blocking(move || Ok(spawned.start()?)).await {
            Ok(fd) => fd,
            Err(e) => {
                drop(serial);
                let _ = self.wait(&id).await;
                return Err(e);
            }
        };
        let console = match console {
            Some(fd) => {
                let c = Console::start(fd, tty_log, stdin_once).map_err(io("relay the terminal of", &log_path))?;
                self.lock().consoles.insert(id.clone(), c.clone());
                Some(c)
            }
            None => None,
        };
        drop(serial);
        let attachment = match reader {
            Some(file) => Some(Attachment {
                id: id.clone(),
                output: self.follower(&log_path.display().to_string(), file, Some(exit))?,
                console,
            }),
            None => None,
        };
        tracing::debug!(spawn_us = t_spawn.as_micros() as u64, network_us = t_net.as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64, "container running");
        Ok((id, attachment))
    }

    /// Reserves a new container's addresses under the state lock (no kernel work
    /// here), released by `undo` unless the run commits; everything that can refuse without
    /// reserving anything comes first.
    fn reserve(self: &Arc<Self>, undo: &mut Undo, id: &str, spec: &RunSpec, mode: &NetworkMode) -> Result<Reserved> {
        let (plan, links, pending) = {
            let mut st = self.lock();
            // Everything that can refuse without reserving anything comes first.
            let links = resolve_links(&st, spec, mode)?;
            let plan = match mode {
                NetworkMode::Network(n) => {
                    // eth0 on the first network, eth1… on the others; each address is given back
                    // by `undo` unless the run commits.
                    let mut plans: Vec<EndpointPlan> = Vec::new();
                    for (i, net) in std::iter::once(n).chain(spec.networks.iter()).enumerate() {
                        let first = i == 0;
                        let mut p = st.plan_endpoint(id, net, &format!("eth{i}"), spec.ip.filter(|_| first), spec.ip6.filter(|_| first))?;
                        {
                            let (eng, e) = (self.clone(), p.endpoint.clone());
                            undo.push("release the address", move || eng.lock().release_addresses(&e));
                        }
                        if plans.iter().any(|q| q.endpoint.network_id == p.endpoint.network_id) {
                            return Err(EngineError::Refused(format!("network {net} given twice")));
                        }
                        if first {
                            p.publishes(spec.port_specs()?.len())?;
                            p.endpoint.aliases = spec.aliases.clone();
                            if let Some(m) = &spec.mac_address {
                                let mac = m.to_ascii_lowercase();
                                st.check_mac(&p.endpoint.network_id, net, &mac)?;
                                p.endpoint.mac = mac;
                            }
                        }
                        plans.push(p);
                    }
                    Plan::Networks(plans)
                }
                NetworkMode::Container(t) => {
                    let target = find_container(&st, t)?;
                    if target.state.status != Status::Running {
                        return Err(EngineError::NotRunning(t.clone()));
                    }
                    let path = target
                        .sandbox
                        .netns
                        .clone()
                        .unwrap_or_else(|| format!("/proc/{}/ns/net", target.state.pid));
                    Plan::Join { path, ip: target.sandbox.endpoints.first().map(|e| IpAddr::V4(e.ip)) }
                }
                NetworkMode::Host => Plan::Host,
                NetworkMode::None => Plan::None,
            };
            let nets = match &plan {
                Plan::Networks(plans) => plans.iter().map(|p| p.endpoint.network_id.clone()).collect(),
                _ => Vec::new(),
            };
            let pending = crate::Pending::new(self, &mut st, nets);
            (plan, links, pending)
        };
        Ok(Reserved { plan, links, _pending: pending })
    }

    /// Bytes read of archive `path` and its size, while a run unpacks it (`weft run` draws
    /// this on the user's terminal).
    pub fn unpack_progress(&self, path: &str) -> Option<(u64, u64)> {
        self.unpacks.lock().unwrap_or_else(|p| p.into_inner()).get(path).copied()
    }

    /// `--rootfs`: a directory as it is; a tar archive (`docker export`, `podman export`)
    /// unpacked once into the data-root.
    async fn resolve_rootfs(&self, rootfs: Option<String>) -> Result<Option<String>> {
        let Some(r) = rootfs else { return Ok(None) };
        if Path::new(&r).is_file() {
            let cache = self.cfg.data_root.join("rootfs");
            let unpacks = self.unpacks.clone();
            let dir = blocking(move || {
                /// Forgets the archive's progress when its unpacking ends, however it ends.
                struct Forget<'a>(&'a std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>, &'a str);
                impl Drop for Forget<'_> {
                    fn drop(&mut self) {
                        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(self.1);
                    }
                }
                let _forget = Forget(&unpacks, &r);
                let progress = |read, size| {
                    let mut u = unpacks.lock().unwrap_or_else(|p| p.into_inner());
                    match u.get_mut(&r) {
                        Some(p) => *p = (read, size),
                        None => {
                            u.insert(r.clone(), (read, size));
                        }
                    }
                };
                Ok(weft_runtime::rootfs::unpacked(Path::new(&r), &cache, &progress).map_err(weft_runtime::RuntimeError::from)?)
            })
            .await?;
            return Ok(Some(dir.display().to_string()));
        }
        if !Path::new(&r).is_dir() {
            return Err(EngineError::MissingRootfs(r));
        }
        // The host's own root (by any spelling): a container without --rootfs already sees it,
        // and it cannot be pivoted into.
        if std::fs::canonicalize(&r).is_ok_and(|c| c == Path::new("/")) {
            return Err(EngineError::Refused(format!("--rootfs {r} is the host's root: leave --rootfs out to run on the host's files")));
        }
        Ok(Some(r))
    }

    /// A new container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` in `run_dir`;
    /// returns whether it resolves through the embedded DNS.
    fn write_files(&self, run_dir: &Path, spec: &RunSpec, plan: &Plan, hostname: &str, links: &[(weft_model::LinkRecord, Vec<String>)], extra_hosts: Vec<(String, IpAddr)>) -> Result<bool> {
        let own_ip = match plan {
            Plan::Networks(plans) => plans.first().map(|p| IpAddr::V4(p.endpoint.ip)),
            Plan::Join { ip, .. } => *ip,
            Plan::Host | Plan::None => None,
        };
        let host_hosts = matches!(plan, Plan::Host).then(|| std::fs::read_to_string("/etc/hosts").unwrap_or_default());
        let dns_client = match plan {
            Plan::Networks(plans) => crate::dns_client(&plans.iter().map(|p| p.endpoint.network_name.clone()).collect::<Vec<_>>()),
            _ => false,
        };
        let host_resolv = files::parse_resolv(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let daemon_dns = self.daemon_dns();
        let dns = if spec.dns.is_empty() { &daemon_dns } else { &spec.dns };
        let resolv = if dns_client {
            weft_dns::container_resolv(&self.host_resolv, &spec.dns_search, &spec.dns_options)
        } else {
            files::container_resolv(&host_resolv, !matches!(plan, Plan::Host), dns, &spec.dns_search, &spec.dns_options)
        };
        let mut extra_hosts = extra_hosts;
        if let Plan::Networks(plans) = plan {
            if let Some(ip6) = plans.first().and_then(|p| p.endpoint.ip6) {
                extra_hosts.push((hostname.to_string(), IpAddr::V6(ip6)));
            }
        }
        for (l, _) in links {
            let names = if l.alias == l.name { l.name.clone() } else { format!("{} {}", l.alias, l.name) };
            extra_hosts.push((names, IpAddr::V4(l.ip)));
        }
        let contents = [
            ("hosts", files::hosts(own_ip.map(|ip| (ip, hostname)), &extra_hosts, host_hosts.as_deref())),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv),
        ];
        for (f, text) in &contents {
            let p = run_dir.join(f);
            std::fs::write(&p, text).map_err(io("write", &p))?;
        }
        Ok(dns_client)
    }

    /// The network of a new container whose pid 1 is `pid`: its own namespace kept (bound under
    /// the exec-root), its endpoints wired (the first with the links' rules and the published
    /// ports), the embedded DNS served in it; each step registered with `undo`. Returns the
    /// sandbox key, the endpoints and the ports.
    async fn wire(self: &Arc<Self>, undo: &mut Undo, w: Wiring<'_>) -> Result<Wired> {
        let Wiring { id, pid, plan, netns_kind, links, port_specs, dns_client } = w;
        let mut sandbox_key = None;
        let mut endpoints = Vec::new();
        let mut ports = Vec::new();
        if *netns_kind == NetNs::New {
            let path = self.netns_path(id);
            let p = path.clone();
            blocking(move || Ok(netns::bind(pid, &p)?)).await?;
            let p = path.clone();
            undo.push("unbind netns", move || {
                let _ = netns::unbind(&p);
            });
            match plan {
                Plan::Networks(plans) => {
                    for (i, plan) in plans.into_iter().enumerate() {
                        self.join(undo, &plan, &path, i == 0).await?;
                        if i == 0 && !links.is_empty() {
                            let rules = crate::publish::link_rules(plan.endpoint.ip, links);
                            self.fw.add_links(&rules)?;
                            let eng = self.clone();
                            undo.push("remove link rules", move || {
                                let _ = eng.fw.remove_links(&rules);
                            });
                        }
                        if i == 0 {
                            let default_ip = plan.host_binding.map(IpAddr::V4).unwrap_or(self.cfg.ip);
                            ports = self.publish(id, plan.endpoint.ip, port_specs, default_ip, false)?;
                            let (eng, cid, ip, p) = (self.clone(), id.to_string(), plan.endpoint.ip, ports.clone());
                            undo.push("unpublish ports", move || {
                                let _ = eng.withdraw(&cid, ip, &p);
                            });
                            // A UDP flow that reached the port while it had no mapping follows a
                            // conntrack entry without NAT: clear it so the flow takes the new one.
                            let udp = crate::publish::kernel_ports(&ports, plan.endpoint.ip)
                                .into_iter()
                                .filter(|p| p.proto == weft_model::Proto::Udp)
                                .collect();
                            self.flush_conntrack(udp).await?;
                        }
                        endpoints.push(plan.endpoint);
                    }
                }
                _ => {
                    let p = path.clone();
                    blocking(move || loopback_only(&p)).await?;
                }
            }
            if dns_client {
                self.start_dns(id, path.clone()).await?;
                let (eng, cid) = (self.clone(), id.to_string());
                undo.push("stop resolver", move || eng.stop_dns(&cid));
            }
            sandbox_key = Some(path.display().to_string());
        } else if let NetNs::Join(p) = netns_kind {
            sandbox_key = Some(p.clone());
        }
        Ok((sandbox_key, endpoints, ports))
    }

    /// Processes the container's exit when its pid 1 ends.
    pub(crate) fn watch_exit(self: &Arc<Self>, id: String, pid: u32) {
        let eng = self.clone();
        tokio::spawn(async move {
            if let Err(e) = weft_runtime::wait_exit(pid).await {
                tracing::error!(container = short_id(&id), error = %e, "cannot watch pid 1");
                return;
            }
            if let Err(e) = eng.on_exit(&id).await {
                tracing::error!(container = short_id(&id), error = %e, "processing exit failed");
            }
        });
    }

    /// Releases what a stopped container held (endpoint, namespace, address) and records its exit.
    pub(crate) async fn on_exit(self: &Arc<Self>, id: &str) -> Result<()> {
        let t0 = Instant::now();
        let _serial = self.lock_container(id).await;
        let Some(mut rec) = self.lock().containers.get(id).cloned() else { return Ok(()) };
        if rec.state.status != Status::Running {
            return Ok(());
        }
        let code = weft_runtime::read_exit_code(&self.run_dir(id).join("exit")).unwrap_or(137);
        // A terminal's last output goes into the log before anyone learns of the exit.
        let console = self.lock().consoles.remove(id);
        if let Some(c) = console {
            c.drained().await;
        }
        let log_path = rec.log_path.clone();
        let endpoints = std::mem::take(&mut rec.sandbox.endpoints);
        let ports = std::mem::take(&mut rec.sandbox.ports);
        if let Some(e) = endpoints.first() {
            if let Err(err) = self.fw.remove_links(&crate::publish::link_rules(e.ip, &rec.links)) {
                tracing::error!(container = short_id(id), error = %err, "removing link rules failed; reconcile will repair the firewall");
            }
            if let Err(err) = self.unpublish(id, e.ip, &ports).await {
                tracing::error!(container = short_id(id), error = %err, "unpublishing ports failed; reconcile will repair the firewall");
            }
        }
        self.stop_dns(id);
        // pid 1 is gone, so is its pid namespace: what `weft exec` left is killed with the cgroup.
        self.remove_cgroup(id).await;
        self.drop_p2p_of(id, rec.sandbox.netns.clone()).await;
        // Only the container's own namespace: a `container:` joiner must not take its target's.
        let own_ns = self.netns_path(id);
        if rec.sandbox.netns.as_deref() == Some(own_ns.to_string_lossy().as_ref()) {
            if let Err(e) = blocking(move || Ok(netns::unbind(&own_ns)?)).await {
                tracing::error!(container = short_id(id), error = %e, "unbinding the namespace failed; reconcile will retry");
            }
        }
        rec.sandbox.netns = None;
        rec.state = ContainerState { status: Status::Exited, exit_code: code, finished_at: now(), ..rec.state };
        rec.state.pid = 0;
        // The in-memory transition and the notification happen whatever the store says: a
        // container must never stay "running" with a dead pid (wait, stop and rm would hang).
        // The record is submitted first (the store orders transactions when they are submitted:
        // a name freed below and taken again commits after this), relaxed (after a crash, the
        // reconcile finds the pid gone and records this exit again), and awaited last, so the
        // exit is not held up by the store.
        let unclaim = self.unclaim(&endpoints);
        let saving = if rec.spec.auto_remove {
            Ok(self.commit(Txn::relaxed([vec![Op::Delete(self.keys.container(id))], unclaim].concat())))
        } else {
            serde_json::to_vec(&rec).map(|v| self.commit(Txn::relaxed([vec![Op::Put(self.keys.container(id), v)], unclaim].concat())))
        };
        let auto_remove = rec.spec.auto_remove;
        let tx = {
            let mut st = self.lock();
            if auto_remove {
                st.containers.remove(id);
                st.names.remove(&rec.name);
            } else {
                st.containers.insert(id.to_string(), rec);
            }
            st.exits.remove(id)
        };
        self.dns_update(id);
        for e in &endpoints {
            self.release_endpoint(e, false, None);
        }
        if let Some(tx) = tx {
            let _ = tx.send(Some(code));
        }
        // Followers have the exit: they read to the end of the file and stop.
        self.logs.forget(Path::new(&log_path));
        if auto_remove {
            // (Followers hold the log open: they read it to the end all the same.)
            self.remove_files(id);
        }
        let saved = match saving {
            Ok(commit) => commit.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = saved {
            tracing::error!(container = short_id(id), error = %e, "recording the exit failed; reconcile will redo it");
        }
        tracing::info!(container = short_id(id), exit_code = code, us = t0.elapsed().as_micros() as u64, "container exited");
        Ok(())
    }

    fn remove_files(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.run_dir(id));
        let _ = std::fs::remove_dir_all(self.data_dir(id));
    }

    /// The exit code, once the container has exited and its exit was processed.
    pub(crate) async fn wait(&self, key: &str) -> Result<i32> {
        let mut rx = {
            let st = self.lock();
            let c = find_container(&st, key)?;
            match st.exits.get(&c.id) {
                Some(tx) => tx.subscribe(),
                None => return Ok(c.state.exit_code),
            }
        };
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return Ok(code);
            }
            if rx.changed().await.is_err() {
                // The sender went away with the exit processed; the record has the code.
                return self.container(key).map(|c| c.state.exit_code).or(Ok(0));
            }
        }
    }

    pub(crate) fn kill(&self, key: &str, signal: &str) -> Result<()> {
        let sig = parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        let c = self.container(key)?;
        if c.state.status != Status::Running {
            return Err(EngineError::NotRunning(key.to_string()));
        }
        send_signal(&c, sig)
    }

    /// SIGTERM, then SIGKILL after `timeout_secs`; returns once the exit is processed.
    pub(crate) async fn stop(&self, key: &str, timeout_secs: u64) -> Result<()> {
        let c = self.container(key)?;
        if c.state.status != Status::Running {
            return Ok(());
        }
        send_signal(&c, Signal::SIGTERM)?;
        if tokio::time::timeout(Duration::from_secs(timeout_secs), self.wait(&c.id)).await.is_err() {
            send_signal(&c, Signal::SIGKILL)?;
            self.wait(&c.id).await?;
        }
        Ok(())
    }

    pub(crate) async fn remove(&self, key: &str, force: bool) -> Result<()> {
        // A run of that name still in flight (its name reserved, its record not yet there): wait
        // for it to end, then remove what it made, or find nothing if it failed.
        let in_flight = {
            let st = self.lock();
            st.names.get(key.trim_start_matches('/')).filter(|id| !st.containers.contains_key(*id)).cloned()
        };
        if let Some(id) = in_flight {
            drop(self.lock_container(&id).await);
        }
        let mut c = self.container(key)?;
        if c.state.status == Status::Running && !force {
            return Err(EngineError::Running(key.to_string()));
        }
        // Its log goes first: on a disk the log filled, what the removal commits needs the room.
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&c.log_path) {
            let _ = f.set_len(0);
        }
        if c.state.status == Status::Running {
            if !c.spec.auto_remove {
                // The removal is recorded before the kill (the container becomes one that is
                // removed at its exit), so a daemon killed before the record is gone still
                // removes it: at its exit now, or at the reconcile that finds pid 1 gone.
                let _serial = self.lock_container(&c.id).await;
                let Some(mut rec) = self.lock().containers.get(&c.id).cloned() else { return Ok(()) };
                if rec.state.status == Status::Running {
                    rec.spec.auto_remove = true;
                    self.commit(Txn::ops(vec![Op::Put(self.keys.container(&c.id), serde_json::to_vec(&rec)?)])).await?;
                }
                c = rec;
            }
            if c.state.status == Status::Running {
                // Subscribed before the kill: the exit (which may remove the container at once)
                // cannot be missed.
                let exit = self.lock().exits.get(&c.id).map(|tx| tx.subscribe());
                send_signal(&c, Signal::SIGKILL)?;
                if let Some(mut rx) = exit {
                    let _ = rx.wait_for(|code| code.is_some()).await;
                }
            }
        }
        if c.spec.auto_remove {
            return Ok(()); // the exit already removed it
        }
        let _serial = self.lock_container(&c.id).await;
        if self.lock().containers.get(&c.id).is_none_or(|r| r.state.status == Status::Running) {
            return Ok(()); // removed meanwhile, or started again
        }
        self.commit(Txn::ops(vec![Op::Delete(self.keys.container(&c.id))])).await?;
        self.remove_files(&c.id);
        // Gone with the exit already, unless that removal failed.
        self.remove_cgroup(&c.id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").ok(), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm").ok(), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("15").ok(), Some(Signal::SIGTERM));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn names_are_generated_and_deduplicated() {
        let id = "a3".to_string() + &"0".repeat(62);
        assert_eq!(generated_name(&id, |_| false), "proud_finch");
        assert_eq!(generated_name(&id, |_| true), "proud_finch_a30000");
    }
}
