//! `weft-bench attach`: the daemon-side network setup and teardown of one namespace, through the
//! engine's whole action path (`actions::Connect` with `--netns`: checks, IPAM, veth with its peer
//! born in the namespace, enslave, addresses, routes, link up, one durable store commit, the DNS
//! update), with 1, 100, 1,000 … endpoints already on the bridge, beside the kernel floor at each
//! level (a bare veth with its peer in a namespace, enslaved and up, in one request, no weft).
//! Run inside a throwaway network namespace (bench/attach does that).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

mod plot;
use clap::{Parser, Subcommand};
use weft_engine::actions::{Connect, Disconnect};
use weft_engine::{Config, Engine};
use weft_model::{ConnectSpec, DisconnectSpec};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// DNS load: concurrent UDP clients, each sending one query and waiting for its answer.
    Dns {
        #[arg(long)]
        server: std::net::SocketAddr,
        /// Names asked for A records (comma-separated).
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
        /// Addresses asked for PTR records, one query in ten (comma-separated).
        #[arg(long, value_delimiter = ',')]
        ptr: Vec<std::net::Ipv4Addr>,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Label of the row printed.
        #[arg(long)]
        label: String,
    },
    /// Time to publish the 1st, 100th, 1,000th, 10,000th port of one endpoint.
    Ports {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Setup and teardown per driver (bridge, macvlan, ovs) and of a point-to-point link.
    Drivers {
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// The macvlan network's parent (a link of the bench's host namespace).
        #[arg(long)]
        parent: Option<String>,
        /// ovsdb-server's socket, for the ovs row.
        #[arg(long)]
        ovsdb: Option<PathBuf>,
        #[arg(long)]
        dir: PathBuf,
    },
    /// One create-if-absent transaction through weft's own etcd client, `samples` times in turn:
    /// prints p50 and p99 in ms.
    Store {
        #[arg(long)]
        etcd: String,
        #[arg(long, default_value_t = 100)]
        samples: usize,
    },
    /// A PNG plot of a table the bench printed (markdown on stdin): lines with `--x` and
    /// `--series`, grouped bars with `--label`.
    Plot {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        title: String,
        /// Lines: the x column.
        #[arg(long)]
        x: Option<String>,
        /// Lines: the column naming each line.
        #[arg(long)]
        series: Option<String>,
        /// Bars: the column naming each group.
        #[arg(long)]
        label: Option<String>,
        /// The value columns (one for lines; one or more, each a bar, for bars).
        #[arg(long, required = true)]
        y: Vec<String>,
        #[arg(long)]
        x_desc: Option<String>,
        #[arg(long)]
        y_desc: Option<String>,
        #[arg(long)]
        log_x: bool,
        #[arg(long)]
        log_y: bool,
    },
    Attach {
        /// Endpoints already attached when sampling (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        existing: Vec<usize>,
        /// Setups and teardowns timed at each level.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Concurrent attaches in the concurrency run.
        #[arg(long, default_value_t = 100)]
        concurrent: usize,
        /// Scratch directory (store, namespaces).
        #[arg(long)]
        dir: PathBuf,
    },
}

/// One row per driver: `samples` setups and teardowns (`network connect --netns` / `disconnect`)
/// of as many namespaces, one after the other, on a network of that driver; and `link create` /
/// `link rm` between two attached namespaces.
async fn drivers(samples: usize, parent: Option<String>, ovsdb: Option<PathBuf>, dir: &Path) -> anyhow::Result<()> {
    use weft_engine::actions::{CreateNetwork, CreateP2p, RemoveP2p};
    let have_ovs = ovsdb.is_some();
    let engine = open_engine_with(dir, ovsdb).await?;
    let nsdir = dir.join("ns");
    std::fs::create_dir_all(&nsdir)?;
    let ns = |name: &str| -> anyhow::Result<PathBuf> {
        let p = nsdir.join(name);
        weft_kernel::netns::create(&p)?;
        Ok(p)
    };
    let spec = |name: &str, driver: &str, subnet: &str, options: &[(&str, &str)]| weft_model::NetworkSpec {
        name: name.into(),
        driver: driver.into(),
        subnet: subnet.parse().ok(),
        gateway: subnet.parse::<ipnet::Ipv4Net>().ok().and_then(|s| s.hosts().next()),
        options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let mut nets = vec![("bridge", "bridge".to_string())];
    if let Some(p) = &parent {
        engine.execute(CreateNetwork { spec: spec("mv", "macvlan", "10.200.0.0/16", &[("parent", p)]) }).await?;
        nets.push(("macvlan", "mv".into()));
    }
    if have_ovs {
        engine.execute(CreateNetwork { spec: spec("ov", "ovs", "10.201.0.0/16", &[]) }).await?;
        nets.push(("ovs", "ov".into()));
    }
    println!("| driver | setup median (ms) | setup p99 (ms) | teardown median (ms) | teardown p99 (ms) |");
    println!("|---|---:|---:|---:|---:|");
    let sample: Vec<PathBuf> = (0..samples).map(|i| ns(&format!("s{i}"))).collect::<anyhow::Result<_>>()?;
    for (driver, net) in &nets {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (i, p) in sample.iter().enumerate() {
            let key = format!("{driver}{i}");
            let spec = ConnectSpec { netns: Some(p.display().to_string()), name: Some(key.clone()), ifname: Some("eth0".into()), ..ConnectSpec::default() };
            let t = Instant::now();
            engine.execute(Connect { network: net.clone(), spec }).await?;
            up.push(t.elapsed());
            let t = Instant::now();
            engine.execute(Disconnect { network: net.clone(), spec: DisconnectSpec { container: key, force: false } }).await?;
            down.push(t.elapsed());
        }
        row(driver, &mut up, &mut down);
    }
    // Point-to-point: two namespaces attached to the bridge, linked and unlinked.
    let (pa, pb) = (ns("pa")?, ns("pb")?);
    for (key, p) in [("pa", &pa), ("pb", &pb)] {
        let spec = ConnectSpec { netns: Some(p.display().to_string()), name: Some(key.into()), ifname: Some("eth0".into()), ..ConnectSpec::default() };
        engine.execute(Connect { network: "bridge".into(), spec }).await?;
    }
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = Instant::now();
        let l = engine.execute(CreateP2p { spec: weft_model::P2pSpec { a: "pa".into(), b: "pb".into(), ..Default::default() } }).await?;
        up.push(t.elapsed());
        let t = Instant::now();
        engine.execute(RemoveP2p { key: l.id }).await?;
        down.push(t.elapsed());
    }
    row("p2p link", &mut up, &mut down);
    for key in ["pa", "pb"] {
        engine.execute(Disconnect { network: "bridge".into(), spec: DisconnectSpec { container: key.into(), force: false } }).await?;
    }
    engine.shutdown();
    for p in sample.iter().chain([&pa, &pb]) {
        weft_kernel::netns::unbind(p)?;
    }
    Ok(())
}

fn row(label: &str, up: &mut [Duration], down: &mut [Duration]) {
    up.sort();
    down.sort();
    println!("| {label} | {:.3} | {:.3} | {:.3} | {:.3} |", pct(up, 0.5), pct(up, 0.99), pct(down, 0.5), pct(down, 0.99));
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn open_engine(dir: &Path) -> anyhow::Result<Arc<Engine>> {
    open_engine_with(dir, None).await
}

async fn open_engine_with(dir: &Path, ovsdb: Option<PathBuf>) -> anyhow::Result<Arc<Engine>> {
    std::fs::create_dir_all(dir.join("data"))?;
    let mut cfg = Config::new(dir.join("data"), dir.join("exec"), PathBuf::from("/unused/weft-init"));
    cfg.bip = Some("10.128.0.1/16".parse()?);
    if let Some(o) = ovsdb {
        cfg.ovsdb = o;
    }
    let store = weft_store::Embedded::open(&dir.join("data/weft.redb"))?;
    Ok(Engine::open(cfg, Arc::new(store)).await?)
}

/// Publishes `count` ports on one endpoint, one at a time, and prints the cost of the 1st,
/// 100th, 1,000th, 10,000th (each: the median of the 21 publishes around it, and its own time).
async fn ports(count: usize, dir: &Path) -> anyhow::Result<()> {
    weft_kernel::raise_nofile_limit()?;
    let engine = open_engine(dir).await?;
    let ns = dir.join("target-ns");
    weft_kernel::netns::create(&ns)?;
    let ep = engine.attach_sandbox("target", &ns, "bridge", "eth0").await?;
    let mut times = Vec::with_capacity(count);
    let t_all = Instant::now();
    for i in 0..count {
        let hp = 20_000 + i as u16;
        let spec = weft_model_spec(hp);
        let t = Instant::now();
        engine.publish("target", ep.ip, &[spec], "0.0.0.0".parse()?, false)?;
        times.push(t.elapsed());
    }
    let wall = t_all.elapsed();
    println!("| port # | publish time, median of 21 around it (ms) | that publish (ms) |");
    println!("|---:|---:|---:|");
    for n in [1usize, 100, 1000, 10_000].into_iter().filter(|n| *n <= count) {
        let lo = n.saturating_sub(11).min(count.saturating_sub(21));
        let mut w: Vec<Duration> = times[lo..(lo + 21).min(count)].to_vec();
        w.sort();
        println!("| {n} | {:.3} | {:.3} |", w[w.len() / 2].as_secs_f64() * 1e3, times[n - 1].as_secs_f64() * 1e3);
    }
    println!();
    println!("{count} ports published in {:.2} s; bench process RSS {:.1} MB", wall.as_secs_f64(), rss_mb());
    engine.shutdown();
    weft_kernel::netns::unbind(&ns)?;
    Ok(())
}

fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// Runs `clients` closed-loop UDP clients for `seconds` and prints one table row.
async fn dns_load(server: std::net::SocketAddr, names: Vec<String>, ptr: Vec<std::net::Ipv4Addr>, seconds: u64, clients: usize, label: &str) -> anyhow::Result<()> {
    let mut queries: Vec<Vec<u8>> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        queries.push(dns_query(i as u16, n, 1));
    }
    for (i, ip) in ptr.iter().enumerate().take(names.len().div_ceil(9).max(1)) {
        let o = ip.octets();
        queries.push(dns_query(i as u16, &format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]), 12));
    }
    anyhow::ensure!(!queries.is_empty(), "no queries");
    let queries = Arc::new(queries);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
            sock.connect(server).await?;
            let (mut lat, mut errors, mut buf) = (Vec::new(), 0u64, vec![0u8; 4096]);
            let mut i = c;
            while Instant::now() < end {
                let mut q = queries[i % queries.len()].clone();
                q[0..2].copy_from_slice(&(i as u16).to_be_bytes());
                i += clients;
                let t = Instant::now();
                sock.send(&q).await?;
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(n)) if n >= 4 && buf[3] & 0x0f == 0 => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            Ok::<_, std::io::Error>((lat, errors))
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await??;
        lat.extend(l);
        errors += e;
    }
    lat.sort();
    anyhow::ensure!(!lat.is_empty(), "{label}: no answers ({errors} errors)");
    println!(
        "| {label} | {:.0} | {:.3} | {:.3} | {errors} |",
        lat.len() as f64 / seconds as f64,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    Ok(())
}

fn weft_model_spec(host_port: u16) -> weft_model::PortSpec {
    weft_model::PortSpec {
        host_ip: None,
        host: Some(weft_model::PortRange { start: host_port, end: host_port }),
        container: weft_model::PortRange { start: 80, end: 80 },
        proto: weft_model::Proto::Tcp,
    }
}

/// See `Cmd::Store`.
async fn store_txn(etcd: &str, samples: usize) -> anyhow::Result<()> {
    use weft_store::{Compare, Op, Store, Txn};
    let store = weft_store::Etcd::connect(&[etcd.to_string()], None, weft_store::Timeouts::default()).await?;
    let run = std::process::id();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let key = format!("/bench/client/{run}/{i}");
        let txn = Txn { compare: vec![Compare::Missing(key.clone())], success: vec![Op::Put(key, b"x".to_vec())], ..Txn::default() };
        let t0 = Instant::now();
        anyhow::ensure!(store.txn(txn).await?.succeeded, "the key existed");
        times.push(t0.elapsed());
    }
    times.sort();
    let q = |p: usize| times[(p * (times.len() - 1)).div_ceil(100)].as_secs_f64() * 1e3;
    println!("store_txn p50_ms={:.2} p99_ms={:.2}", q(50), q(99));
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if let Ok(f) = std::env::var("WEFT_LOG") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(f)).with_writer(std::io::stderr).init();
    }
    let (mut existing, samples, concurrent, dir) = match Args::parse().cmd {
        Cmd::Attach { existing, samples, concurrent, dir } => (existing, samples, concurrent, dir),
        Cmd::Ports { count, dir } => return ports(count, &dir).await,
        Cmd::Dns { server, names, ptr, seconds, clients, label } => return dns_load(server, names, ptr, seconds, clients, &label).await,
        Cmd::Drivers { samples, parent, ovsdb, dir } => return drivers(samples, parent, ovsdb, &dir).await,
        Cmd::Store { etcd, samples } => return store_txn(&etcd, samples).await,
        Cmd::Plot { out, title, x, series, label, y, x_desc, y_desc, log_x, log_y } => {
            let input = std::io::read_to_string(std::io::stdin())?;
            let style = plot::Style { title, x_desc: x_desc.or_else(|| x.clone()).or_else(|| y.first().cloned()).unwrap_or_default(), y_desc: y_desc.unwrap_or_else(|| y.join(", ")), log_x, log_y };
            return plot::run(plot::Request { out, style, x, series, label, y }, &input);
        }
    };
    existing.sort_unstable();
    let nsdir = dir.join("ns");
    std::fs::create_dir_all(&nsdir)?;
    let engine = open_engine(&dir).await?;

    let max = existing.last().copied().unwrap_or(0);
    let total = max + samples + concurrent;
    let t = Instant::now();
    let mut nss = Vec::with_capacity(total);
    for i in 0..total {
        let p = nsdir.join(format!("n{i}"));
        weft_kernel::netns::create(&p).with_context(|| format!("create {}", p.display()))?;
        nss.push(p);
    }
    eprintln!("created {total} namespaces in {:.1} s", t.elapsed().as_secs_f64());
    let (background, rest) = nss.split_at(max);
    let (sample_ns, concurrent_ns) = rest.split_at(samples);
    let attach = |key: String, p: &Path| {
        let (e, p) = (engine.clone(), p.to_path_buf());
        async move {
            let spec = ConnectSpec { netns: Some(p.display().to_string()), name: Some(key), ifname: Some("eth0".into()), ..ConnectSpec::default() };
            e.execute(Connect { network: "bridge".into(), spec }).await
        }
    };
    let detach = |key: String| {
        let e = engine.clone();
        async move { e.execute(Disconnect { network: "bridge".into(), spec: DisconnectSpec { container: key, force: false } }).await }
    };
    let mut host = weft_kernel::Netlink::open()?;
    let bridge = host.link("weft0")?.context("the default bridge")?.index;

    // Concurrency: `concurrent` attaches at once (the store groups their commits).
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, p) in concurrent_ns.iter().enumerate() {
        tasks.push(tokio::spawn(attach(format!("c{i}"), p)));
    }
    for t in tasks {
        t.await??;
    }
    let wall = t.elapsed();
    let concurrency = format!(
        "{concurrent} setups started at once: {:.1} ms wall, {:.3} ms per setup (the store groups their commits)",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3 / concurrent as f64
    );
    for i in 0..concurrent {
        detach(format!("c{i}")).await?;
    }

    println!("| endpoints already attached | setup median (ms) | setup p99 (ms) | teardown median (ms) | teardown p99 (ms) | kernel floor setup median / p99 (ms) | floor teardown median (ms) | setup ÷ floor |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut attached = 0;
    for &level in &existing {
        while attached < level {
            attach(format!("bg{attached}"), &background[attached]).await?;
            attached += 1;
        }
        let (mut setup, mut teardown, mut floor_up, mut floor_down) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, p) in sample_ns.iter().enumerate() {
            let key = format!("s{i}");
            let t = Instant::now();
            attach(key.clone(), p).await?;
            setup.push(t.elapsed());
            let t = Instant::now();
            detach(key).await?;
            teardown.push(t.elapsed());
        }
        // The floor, on the same bridge with the same population: a link with carrier, made in the
        // fewest requests (`ip link add flr0 type veth peer name eth9 index N netns NS master
        // weft0 up; ip -n NS link set eth9 up`, indexes chosen as weft chooses them: a peer index is
        // only honoured with the host end's), then `ip link del flr0`.
        for p in sample_ns {
            let fd = std::fs::File::open(p)?;
            let mut inside = weft_kernel::netns::open_in(p, &[])?;
            let spec = weft_kernel::VethSpec {
                host_name: "flr0",
                master: Some(bridge),
                peer_name: "eth9",
                peer_netns: Some(std::os::fd::AsRawFd::as_raw_fd(&fd)),
                index: 0x7000_0000,
                peer_index: 0x7000_0001,
                up: true,
                ..weft_kernel::VethSpec::default()
            };
            let t = Instant::now();
            host.create_veth(&spec)?;
            inside.set_up(0x7000_0001)?;
            floor_up.push(t.elapsed());
            let t = Instant::now();
            host.delete_link("flr0")?;
            floor_down.push(t.elapsed());
        }
        for v in [&mut setup, &mut teardown, &mut floor_up, &mut floor_down] {
            v.sort();
        }
        println!(
            "| {level} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {:.3} | {:.1} |",
            pct(&setup, 0.5),
            pct(&setup, 0.99),
            pct(&teardown, 0.5),
            pct(&teardown, 0.99),
            pct(&floor_up, 0.5),
            pct(&floor_up, 0.99),
            pct(&floor_down, 0.5),
            pct(&setup, 0.5) / pct(&floor_up, 0.5)
        );
    }

    println!();
    println!("{concurrency}");
    println!("bench process RSS with {attached} endpoints: {:.1} MB", rss_mb());
    for i in 0..attached {
        detach(format!("bg{i}")).await?;
    }
    engine.shutdown();
    for p in &nss {
        weft_kernel::netns::unbind(p)?;
    }
    Ok(())
}
