//! `weftd`: parses dockerd-style flags, opens the store and the engine, serves the API.

mod api;
mod config_file;
mod docker_api;
mod docker_plugin;
mod server;
mod stream;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{FromArgMatches, Parser};
use ipnet::Ipv4Net;
use weft_engine::{Config, Engine};
use weft_ipam::AddressPool;

#[derive(Parser, Debug)]
#[command(name = "weftd", version, about = "weft container networking daemon")]
struct Args {
    /// Options as in dockerd's daemon.json (default /etc/weft/daemon.json, read if it exists);
    /// flags given here win.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// API socket.
    #[arg(short = 'H', long, default_value = "unix:///run/weft/weft.sock")]
    host: String,
    /// Persistent state (the store, container logs).
    #[arg(long, default_value = "/var/lib/weft")]
    data_root: PathBuf,
    /// Runtime state (namespace mounts, container files).
    #[arg(long, default_value = "/run/weft")]
    exec_root: PathBuf,
    /// Attach containers to this existing bridge instead of weft0.
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// Address and subnet of the default bridge, e.g. 192.168.1.5/24.
    #[arg(long)]
    bip: Option<Ipv4Net>,
    /// Hand out container addresses only from this range of the bridge subnet.
    #[arg(long)]
    fixed_cidr: Option<Ipv4Net>,
    /// MTU of container interfaces.
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Allow traffic between containers on the default bridge.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    icc: bool,
    /// Default host address of published ports.
    #[arg(long, default_value = "0.0.0.0")]
    ip: IpAddr,
    /// ovsdb-server's socket, for Open vSwitch networks (`-d ovs`).
    #[arg(long, default_value = "/run/openvswitch/db.sock")]
    ovsdb: PathBuf,
    /// Uplinked networks keep their uplink in the bridge when weftd stops (false: the uplink
    /// and its addresses go back, and come again at the next start).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    keep_uplink: bool,
    /// Masquerade traffic leaving the bridge subnets.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    ip_masq: bool,
    /// Enable IPv4 forwarding.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    ip_forward: bool,
    /// Install firewall rules (nftables) at all.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    iptables: bool,
    /// Also serve published ports from an in-process proxy (so 127.0.0.1 goes through it).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    userland_proxy: bool,
    /// Default DNS servers of containers.
    #[arg(long)]
    dns: Vec<IpAddr>,
    /// The addresses of point-to-point links (`weft link create`), /32 each.
    #[arg(long, default_value = "10.1.1.0/24")]
    link_pool: ipnet::Ipv4Net,
    /// Address pools for networks, as base=CIDR,size=N (repeatable; replaces the defaults).
    #[arg(long, value_parser = parse_pool)]
    default_address_pool: Vec<AddressPool>,
    /// The weft-init helper (default: next to weftd).
    #[arg(long)]
    init_path: Option<PathBuf>,
    /// This daemon's name among daemons sharing a store (default: made once, kept in the data-root).
    #[arg(long)]
    host_id: Option<String>,
    /// Keep state in etcd (`etcd://HOST:PORT[,HOST:PORT…]`) instead of the embedded store: global
    /// networks are then shared by every daemon on that etcd, and no address is handed out twice.
    #[arg(long)]
    store: Option<String>,
    /// Where other hosts reach this one (an IPv4 address of one of its links): overlay tunnels
    /// and routed mode use it.
    #[arg(long)]
    advertise_addr: Option<std::net::Ipv4Addr>,
    /// Seconds this daemon's registration outlives it: once it expires unrenewed (the daemon is
    /// dead or cut off from the store), other hosts forget this one's endpoints.
    #[arg(long, default_value_t = weft_engine::config::DEFAULT_NODE_TTL.as_secs())]
    node_ttl: u64,
    /// etcd over TLS: the PEM of the CA that signed the members' certificates.
    #[arg(long)]
    store_ca: Option<PathBuf>,
    /// etcd over TLS: this daemon's client certificate (PEM; with --store-key).
    #[arg(long)]
    store_cert: Option<PathBuf>,
    /// etcd over TLS: the key of --store-cert (PEM).
    #[arg(long)]
    store_key: Option<PathBuf>,
    /// Forwards of the embedded DNS in flight, all containers together (past it: SERVFAIL).
    #[arg(long, default_value_t = weft_dns::Limits::default().forwards)]
    dns_forward_max: usize,
    /// Forwards of the embedded DNS in flight from one container (past it: SERVFAIL).
    #[arg(long, default_value_t = weft_dns::Limits::default().forwards_per_container)]
    dns_forward_max_per_container: usize,
    /// Start with an empty store even though the exec-root and data-root hold an earlier run's
    /// containers: their processes are stopped and they are removed (without this or
    /// --adopt-state, such a start is refused: a lost store never silently orphans containers).
    #[arg(long, conflicts_with = "adopt_state")]
    reset_state: bool,
    /// Start with an empty store beside an earlier run's containers by rebuilding the records of
    /// its networks and of the containers still running from the copies in the data-root; the
    /// rest are stopped and removed.
    #[arg(long)]
    adopt_state: bool,
    /// Parent cgroup of containers' cgroups (`<parent>/<container id>` in every hierarchy):
    /// absolute with a leading `/`, else under weftd's own cgroup, as dockerd's.
    #[arg(long, default_value = "weft")]
    cgroup_parent: String,
    /// Pids limit of containers run without --pids-limit (0 or -1: none, as Docker's default).
    #[arg(long, default_value_t = weft_engine::config::DEFAULT_PIDS_LIMIT as i64, allow_negative_numbers = true)]
    default_pids_limit: i64,
    /// Also serve `GET /metrics` (Prometheus) over TCP at ADDR:PORT (it is always on the API
    /// socket).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Also serve Docker's plugin protocol (network and IPAM driver `weft`) on this unix
    /// socket: point dockerd at it with /etc/docker/plugins/weft.spec (`docs/integrations.md`).
    #[arg(long)]
    docker_plugin_socket: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. debug or weft_engine=debug.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn parse_pool(s: &str) -> Result<AddressPool, String> {
    let mut base = None;
    let mut size = None;
    for kv in s.split(',') {
        match kv.split_once('=') {
            Some(("base", v)) => base = Some(v.parse::<Ipv4Net>().map_err(|e| format!("base {v:?}: {e}"))?),
            Some(("size", v)) => size = Some(v.parse::<u8>().map_err(|e| format!("size {v:?}: {e}"))?),
            _ => return Err(format!("expected base=CIDR,size=N, got {kv:?}")),
        }
    }
    match (base, size) {
        (Some(base), Some(size)) if (base.prefix_len()..=30).contains(&size) => Ok(AddressPool { base, size }),
        (Some(base), Some(size)) => Err(format!("size {size} must be between {} and 30", base.prefix_len())),
        _ => Err("expected base=CIDR,size=N".into()),
    }
}

/// `--host-id`, or the id kept in the data-root (made on the first start).
/// `etcd://HOST:PORT[,HOST:PORT…]` -> the members' `HOST:PORT`s.
fn etcd_endpoints(s: &str) -> anyhow::Result<Vec<String>> {
    let Some(list) = s.strip_prefix("etcd://") else {
        bail!("invalid --store {s:?}: expected etcd://HOST:PORT[,HOST:PORT…]");
    };
    let endpoints: Vec<String> = list.split(',').map(|e| e.trim().trim_end_matches('/').to_string()).collect();
    for e in &endpoints {
        let valid = e.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && !host.contains(['/', ' ']) && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid {
            bail!("invalid --store endpoint {e:?}: expected HOST:PORT");
        }
    }
    Ok(endpoints)
}

/// The TLS material of `--store-ca/--store-cert/--store-key`, read now.
fn store_tls(ca: &Option<PathBuf>, cert: &Option<PathBuf>, key: &Option<PathBuf>) -> anyhow::Result<Option<weft_store::Tls>> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("read {}", p.display()));
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        (None, None) => None,
        _ => bail!("--store-cert and --store-key go together"),
    };
    match ca {
        Some(ca) => Ok(Some(weft_store::Tls { ca: read(ca)?, identity })),
        None if identity.is_some() => bail!("--store-cert needs --store-ca (the CA of the etcd members)"),
        None => Ok(None),
    }
}

fn host_id(given: Option<String>, data_root: &std::path::Path) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    let path = data_root.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(id.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = weft_model::short_id(&weft_model::new_id()).to_string();
            std::fs::write(&path, format!("{id}\n")).with_context(|| format!("write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn socket_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("invalid --host {host:?}: only unix:///PATH is supported"),
    }
}

fn main() {
    // The man page, for the package (scripts/package.sh).
    if std::env::args().nth(1).as_deref() == Some("--print-man") {
        let rendered = clap_mangen::Man::new(<Args as clap::CommandFactory>::command()).render(&mut std::io::stdout());
        std::process::exit(i32::from(rendered.is_err()));
    }
    // Parsed once: the options become `Args`; the matches stay for SIGHUP to compare against.
    let (args, started) = match config_file::parse::<Args>(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) if e.starts_with("config file") => {
            eprintln!("weftd: {e}");
            std::process::exit(1);
        }
        // clap's own output (--help, --version, a bad flag), as it prints it.
        Err(_) => {
            Args::parse();
            std::process::exit(2);
        }
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The filter can change on SIGHUP (`reload_on_hangup`).
    let (filter, log_filter) = tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| "info".into()));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours for a terminal only: a log file (or journald) gets plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args, started, log_filter)) {
        eprintln!("weftd: {e:#}");
        std::process::exit(1);
    }
}

type LogFilter = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// On SIGHUP: reads the configuration again (the command line and the config file) and applies
/// what can change live, the log level and the DNS servers; what else differs from what weftd
/// started with is named as needing a restart.
fn reload_on_hangup(engine: Arc<Engine>, started: clap::ArgMatches, log: LogFilter) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut running = Args::from_arg_matches(&started)?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let (new, matches) = match config_file::parse::<Args>(std::env::args().collect()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e.lines().next().unwrap_or_default(), "SIGHUP: the configuration was not reloaded");
                    continue;
                }
            };
            if new.log_level != running.log_level {
                match tracing_subscriber::EnvFilter::try_new(&new.log_level).map_err(|e| e.to_string()).and_then(|f| log.reload(f).map_err(|e| e.to_string())) {
                    Ok(()) => tracing::info!(level = %new.log_level, "SIGHUP: log level changed"),
                    Err(e) => tracing::error!(level = %new.log_level, error = %e, "SIGHUP: log level not changed"),
                }
            }
            if new.dns != running.dns {
                engine.set_daemon_dns(new.dns.clone());
                tracing::info!(dns = ?new.dns, "SIGHUP: DNS servers changed");
            }
            let restart = config_file::changed::<Args>(&started, &matches, &["log_level", "dns"]);
            if !restart.is_empty() {
                tracing::warn!(keys = %restart.join(", "), "SIGHUP: changed, applied when weftd restarts");
            }
            running = Args { log_level: new.log_level, dns: new.dns, ..running };
        }
    });
    Ok(())
}

async fn serve(args: Args, started: clap::ArgMatches, log_filter: LogFilter) -> anyhow::Result<()> {
    let sock = socket_path(&args.host)?;
    if let Err(e) = weft_kernel::raise_nofile_limit() {
        tracing::warn!(error = %e, "open-files limit stays low: fewer ports can be published");
    }
    let init_path = match args.init_path {
        Some(p) => p,
        None => std::env::current_exe().context("locate weftd")?.with_file_name("weft-init"),
    };
    if !init_path.is_file() {
        bail!("init helper {} not found: build weft-init or pass --init-path", init_path.display());
    }
    let mut cfg = Config::new(args.data_root.clone(), args.exec_root.clone(), init_path);
    cfg.bridge = args.bridge;
    cfg.bip = args.bip;
    cfg.fixed_cidr = args.fixed_cidr;
    cfg.mtu = args.mtu;
    cfg.icc = args.icc;
    cfg.ip = args.ip;
    cfg.userland_proxy = args.userland_proxy;
    cfg.ip_masq = args.ip_masq;
    cfg.ip_forward = args.ip_forward;
    cfg.iptables = args.iptables;
    cfg.dns = args.dns;
    cfg.link_pool = args.link_pool;
    cfg.keep_uplink = args.keep_uplink;
    cfg.ovsdb = args.ovsdb;
    cfg.empty_store = match (args.adopt_state, args.reset_state) {
        (true, _) => weft_engine::config::EmptyStore::Adopt,
        (false, true) => weft_engine::config::EmptyStore::Reset,
        (false, false) => weft_engine::config::EmptyStore::Refuse,
    };
    cfg.dns_limits = weft_dns::Limits { forwards: args.dns_forward_max, forwards_per_container: args.dns_forward_max_per_container, ..weft_dns::Limits::default() };
    // Only a debug build (the tests') can turn the answer checks off, to show the attack they stop.
    if cfg!(debug_assertions) && std::env::var_os("WEFT_TEST_UNCHECKED_DNS_FORWARD").is_some() {
        tracing::warn!("the embedded DNS takes any answer from anyone (WEFT_TEST_UNCHECKED_DNS_FORWARD)");
        cfg.dns_checks = weft_dns::Checks::Off;
    }
    cfg.cgroup_parent = args.cgroup_parent;
    cfg.default_pids_limit = match args.default_pids_limit {
        n if n < -1 => bail!("invalid --default-pids-limit {n}: expected a number of processes, or 0 or -1 for no limit"),
        n if n <= 0 => None,
        n => Some(n as u64),
    };
    if !args.default_address_pool.is_empty() {
        cfg.default_pools = args.default_address_pool;
    }
    cfg.validate()?;
    for d in [&args.data_root, &args.exec_root] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    cfg.host_id = host_id(args.host_id, &args.data_root)?;
    if !(1..=3600).contains(&args.node_ttl) {
        bail!("invalid --node-ttl {}: expected 1 to 3600 seconds", args.node_ttl);
    }
    cfg.node_ttl = std::time::Duration::from_secs(args.node_ttl);
    if let Some(a) = args.advertise_addr {
        // Only an address of this host's can be bound.
        if std::net::UdpSocket::bind((a, 0)).is_err() {
            bail!("--advertise-addr {a} is not an address of this host");
        }
    }
    cfg.advertise_addr = args.advertise_addr;
    let store: Arc<dyn weft_store::Store> = match args.store.as_deref() {
        None => {
            if args.store_ca.is_some() || args.store_cert.is_some() || args.store_key.is_some() {
                bail!("--store-ca, --store-cert and --store-key are for --store etcd://…");
            }
            Arc::new(weft_store::Embedded::open(&args.data_root.join("weft.redb")).context("open the store (is another weftd using this --data-root?)")?)
        }
        Some(s) => {
            let endpoints = etcd_endpoints(s)?;
            let tls = store_tls(&args.store_ca, &args.store_cert, &args.store_key)?;
            let store = weft_store::Etcd::connect(&endpoints, tls, weft_store::Timeouts::default()).await.with_context(|| format!("connect to etcd at {}", endpoints.join(",")))?;
            tracing::info!(endpoints = %endpoints.join(","), "state in etcd");
            Arc::new(store)
        }
    };
    let engine = Engine::open(cfg, store).await?;
    // What runs now, to tell a reload what changed (parsed again: `args` was taken apart above).
    reload_on_hangup(engine.clone(), started, log_filter)?;

    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).with_context(|| format!("listen on {}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %sock.display(), "weftd ready");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        tracing::info!("shutting down; containers keep running");
    };
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = args.metrics_addr {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen on {addr} for metrics"))?;
        let router = axum::Router::new().route("/metrics", axum::routing::get(api::metrics)).with_state(engine.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!(error = %e, "metrics listener");
            }
        });
        tracing::info!(%addr, "serving metrics");
    }
    if let Some(path) = &args.docker_plugin_socket {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        // Served as the API is (bounded connections, header timeout); it stops with it.
        let mut main_stopping = stopping.subscribe();
        let until = async move {
            let _ = main_stopping.wait_for(|s| *s).await;
        };
        tokio::spawn(server::serve(l, docker_plugin::router(engine.clone()), tokio::sync::watch::channel(false).0, until));
        tracing::info!(socket = %path.display(), "serving Docker's network and IPAM driver weft");
    }
    server::serve(listener, api::router(engine.clone(), stopping_rx), stopping, shutdown).await;
    engine.shutdown();
    let _ = std::fs::remove_file(&sock);
    Ok(())
}
