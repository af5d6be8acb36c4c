//! `weft`: the CLI. Each verb is one or two API calls; `run` in the foreground, `attach` and
//! `exec` then stream over the upgraded connection (`weft_model::stream`), the terminal in raw
//! mode when the container has one.

mod client;
mod graph;
mod oci;
mod term;

use std::io::Write;
use std::net::IpAddr;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use weft_model::stream::Frame;
use weft_model::{render_template, short_id, ConnectSpec, ContainerStats, ContainerSummary, DisconnectSpec, ExecSpec, IdReply, NetworkSpec, P2pSpec, PruneReply, RunSpec, WaitReply};

use client::{enc, Client};

#[derive(Parser)]
#[command(name = "weft", version, about = "weft: container networking, the Docker way")]
struct Cli {
    /// Daemon socket.
    #[arg(short = 'H', long, env = "WEFT_HOST", default_value = "unix:///run/weft/weft.sock", global = true)]
    host: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep stdin open (and relay it, in the foreground).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// The keys that detach from the container's terminal, as docker's (default ctrl-p,ctrl-q).
    #[arg(long)]
    detach_keys: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    hostname: Option<String>,
    /// bridge (default), host, none, container:NAME, or a network name; repeat to join more
    /// networks (eth1, eth2, …).
    #[arg(long = "net", visible_alias = "network")]
    net: Vec<String>,
    /// IPv4 address on the first network.
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// IPv6 address on the first network (a dual-stack network).
    #[arg(long)]
    ip6: Option<std::net::Ipv6Addr>,
    /// Extra name of the container on its first network.
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    network_alias: Vec<String>,
    /// NAME[:ALIAS]: link to another container (default bridge).
    #[arg(long)]
    link: Vec<String>,
    /// MAC address of the first network's interface.
    #[arg(long)]
    mac_address: Option<String>,
    #[arg(long)]
    dns: Vec<IpAddr>,
    #[arg(long)]
    dns_search: Vec<String>,
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    dns_option: Vec<String>,
    /// NAME:IP, added to /etc/hosts.
    #[arg(long)]
    add_host: Vec<String>,
    /// Root filesystem to pivot into: a directory, or a tar archive (`docker export`,
    /// `podman export`, .tar or .tar.gz) that weftd unpacks once into its data-root.
    #[arg(long)]
    rootfs: Option<String>,
    /// KEY=VALUE
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Publish ports: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp|sctp], ranges A-B, [IPv6]:...
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every exposed port on an ephemeral host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or range: PORT[-PORT][/proto].
    #[arg(long)]
    expose: Vec<String>,
    /// Every capability, no seccomp filter, no masked or read-only paths.
    #[arg(long)]
    privileged: bool,
    /// Add a capability to Docker's default set (NET_ADMIN, CAP_SYS_TIME, ALL, …).
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability from the default set (or ALL).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Memory limit: bytes, or a number with b, k, m or g (512m, 1g); at least 6m.
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// CPUs the container may use, in CPU time (1.5: one and a half CPUs).
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<String>,
    /// Processes (and threads) at most; 0 or -1: no limit (default: the daemon's, 4096).
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Also allow devices: 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 42:* rmw'.
    #[arg(long = "device-cgroup-rule")]
    device_cgroup_rule: Vec<String>,
    /// Log cap as Docker's json-file driver: max-size=SIZE (-1: none), max-file=N (default 20m, 5).
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    cmd: Vec<String>,
}

/// `--filter` and `--format` of the `ls` commands, as docker's.
#[derive(clap::Args, Default)]
struct ListOpts {
    /// KEY=VALUE (repeatable; a key's values are alternatives, keys all apply): name (a part of
    /// it), id (a prefix), and the list's own keys (ps: status, network; network ls: driver,
    /// scope, label).
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// A Go template per row, e.g. '{{.Name}}', or `json` (one object per line).
    #[arg(long)]
    format: Option<String>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Cmd {
    /// Run a command in a new container.
    Run(RunArgs),
    /// List containers.
    Ps {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
        #[command(flatten)]
        list: ListOpts,
    },
    /// Docker-shaped JSON of containers.
    Inspect {
        /// Go-template, e.g. '{{.State.Pid}}'.
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Run a command in a running container.
    Exec {
        /// Relay stdin to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the command a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// KEY=VALUE, after the container's environment.
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        #[arg(long)]
        detach_keys: Option<String>,
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Attach to a running container's output, and its input if it has one (-i/-t).
    Attach {
        /// Do not relay stdin.
        #[arg(long)]
        no_stdin: bool,
        #[arg(long)]
        detach_keys: Option<String>,
        name: String,
    },
    /// Print a container's output.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        name: String,
    },
    /// Stop containers (SIGTERM, then SIGKILL after the timeout).
    Stop {
        #[arg(short = 't', long, default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal to containers (default KILL).
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers.
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print a container's published ports (as `docker port`).
    Port {
        name: String,
        /// CONTAINERPORT[/proto]
        port: Option<String>,
    },
    /// Resource usage of containers (CPU %, memory, processes), every second as docker stats.
    Stats {
        /// Print one table and exit.
        #[arg(long)]
        no_stream: bool,
        /// Containers (default: every running one).
        names: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(NetCmd),
    /// Network namespaces weft did not start, attached with `network connect --netns/--pid`.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// The daemons sharing the store (hosts).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Follow what changes (containers, networks, links) as it commits, one line each.
    Events {
        /// One JSON object per line (Docker's shape, with the store revision).
        #[arg(long)]
        json: bool,
        /// KEY=VALUE, as docker events: type, event, container, network, label (repeatable).
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// A Go template per event, e.g. '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'.
        #[arg(long)]
        format: Option<String>,
        /// Stop at this time: a Unix time, an RFC 3339 date, or a duration ago (10s, 5m, 1h), as docker's.
        #[arg(long)]
        until: Option<String>,
        /// From this time (weft streams from now on: a time in the past is refused).
        #[arg(long)]
        since: Option<String>,
    },
    /// Point-to-point links between two containers or attached namespaces.
    #[command(subcommand)]
    Link(LinkCmd),
    /// An OCI runtime hook (createRuntime/prestart: attach; poststop: detach): the container's
    /// state on stdin, its networks in the bundle's `io.weft.*` annotations.
    OciHook,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum LinkCmd {
    /// Join two containers (or attached namespaces) by a veth pair: a /32 address on each end
    /// and a host route to the other.
    Create {
        /// An end's address (IP or IP/32): A's, then B's; the others from the link pool.
        #[arg(long)]
        addr: Vec<String>,
        /// A's interface (default: the first free p2pN).
        #[arg(long)]
        ifname_a: Option<String>,
        /// B's interface (default: the first free p2pN).
        #[arg(long)]
        ifname_b: Option<String>,
        a: String,
        b: String,
    },
    /// List links.
    Ls(ListOpts),
    /// JSON of links (id, id prefix, or A:B).
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        links: Vec<String>,
    },
    /// Remove links (id, id prefix, or A:B).
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        links: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// List the registered daemons: host id, advertised address, lease.
    Ls,
}

#[derive(Subcommand)]
enum SandboxCmd {
    /// List attached namespaces.
    Ls(ListOpts),
    /// JSON of attached namespaces.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NetCmd {
    /// Create a network: a bridge (default), or macvlan (`-d macvlan -o parent=IF`).
    Create {
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// local (this host's), or global (every weftd sharing the store; no address handed out twice).
        #[arg(long, default_value = "local")]
        scope: String,
        /// IPv4 and/or (with --ipv6) IPv6 subnet; repeat for both.
        #[arg(long)]
        subnet: Vec<ipnet::IpNet>,
        /// Gateway of each subnet given.
        #[arg(long)]
        gateway: Vec<std::net::IpAddr>,
        #[arg(long)]
        ip_range: Option<ipnet::Ipv4Net>,
        /// NAME=IP, an address IPAM must not hand out.
        #[arg(long)]
        aux_address: Vec<String>,
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        ipv6: bool,
        /// Driver option KEY=VALUE (bridge: com.docker.network.bridge.name, …driver.mtu, …enable_icc, …enable_ip_masquerade, …host_binding_ipv4; macvlan: parent, macvlan_mode).
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        #[arg(long)]
        label: Vec<String>,
        name: String,
    },
    /// Remove networks.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network without containers.
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Connect a running container to a network (a new interface, live), or a network
    /// namespace weft did not start: `--netns /run/netns/NAME` or `--pid PID`.
    Connect {
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        #[arg(long)]
        alias: Vec<String>,
        /// A network namespace file (`ip netns add` makes /run/netns/NAME).
        #[arg(long, conflicts_with_all = ["pid", "container"])]
        netns: Option<String>,
        /// A process's network namespace; detached when the process exits.
        #[arg(long, conflicts_with = "container")]
        pid: Option<u32>,
        /// The attached namespace's name (in the DNS, and for disconnect).
        #[arg(long)]
        name: Option<String>,
        /// Its interface's name (default: the first free ethN).
        #[arg(long)]
        ifname: Option<String>,
        /// Its interface's MAC.
        #[arg(long)]
        mac_address: Option<String>,
        /// Publish its ports, as run -p.
        #[arg(short = 'p', long = "publish")]
        publish: Vec<String>,
        network: String,
        container: Option<String>,
    },
    /// Disconnect a container from a network.
    Disconnect {
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
    /// List networks.
    Ls(ListOpts),
    /// Draw the networks (all, or these) with their containers, attached namespaces, addresses,
    /// published ports and point-to-point links, as SVG on stdout: `weft network graph > net.svg`.
    Graph { networks: Vec<String> },
    /// Docker-shaped JSON of networks.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(dispatch(cli)) {
        Ok(Outcome::Exit(code)) => code,
        Err(e) => {
            eprintln!("weft: {e:#}");
            1
        }
    };
    // (Not dropping the runtime: a thread may still be blocked reading stdin.)
    std::process::exit(code)
}

enum Outcome {
    Exit(i32),
}

/// The rows of an `ls` kept by `--filter` (`keys`: filter key -> the row's field, a dotted path;
/// a key may name several fields, any matching), or `None` once `--format` printed them.
fn listed(rows: Value, o: &ListOpts, keys: &[(&str, &str)]) -> anyhow::Result<Option<Value>> {
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for f in &o.filter {
        let (k, v) = f.split_once('=').with_context(|| format!("invalid --filter {f:?}: expected KEY=VALUE"))?;
        if !keys.iter().any(|(key, _)| *key == k) {
            bail!("invalid filter '{k}': this list filters by {}", keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "));
        }
        match wanted.iter_mut().find(|(key, _)| key == k) {
            Some((_, vals)) => vals.push(v.to_string()),
            None => wanted.push((k.to_string(), vec![v.to_string()])),
        }
    }
    let field = |row: &Value, path: &str| path.split('.').fold(row.clone(), |v, p| v[p].clone());
    let matches = |row: &Value, key: &str, want: &str| {
        keys.iter().filter(|(k, _)| *k == key).any(|(_, path)| {
            let v = field(row, path);
            match (key, &v) {
                ("label", Value::Object(m)) => match want.split_once('=') {
                    Some((lk, lv)) => m.get(lk).and_then(Value::as_str) == Some(lv),
                    None => m.contains_key(want),
                },
                ("name", _) => v.as_str().is_some_and(|s| s.contains(want)),
                ("id", _) => v.as_str().is_some_and(|s| s.starts_with(want)),
                // (A status "Exited (0)" is `exited`, as docker's.)
                _ => v.as_str().is_some_and(|s| s == want || s.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(want))),
            }
        })
    };
    let kept: Vec<Value> = rows.as_array().into_iter().flatten().filter(|r| wanted.iter().all(|(k, vals)| vals.iter().any(|v| matches(r, k, v)))).cloned().collect();
    match o.format.as_deref() {
        None => Ok(Some(Value::Array(kept))),
        Some("json") => {
            kept.iter().for_each(|r| println!("{r}"));
            Ok(None)
        }
        Some(f) => {
            for r in &kept {
                println!("{}", render_template(f, r)?);
            }
            Ok(None)
        }
    }
}

fn print_formatted(format: &Option<String>, items: Vec<Value>) -> anyhow::Result<()> {
    match format {
        Some(f) => {
            for v in &items {
                println!("{}", render_template(f, v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&items)?),
    }
    Ok(())
}

async fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    let c = Client::new(&cli.host)?;
    match cli.cmd {
        Cmd::Run(a) => run(&c, a).await,
        Cmd::Ps { all, quiet, list } => {
            let v = c.json(Method::GET, &format!("/containers/json?all={}", u8::from(all)), None).await?;
            let Some(v) = listed(v, &list, &[("name", "Name"), ("id", "Id"), ("status", "Status"), ("network", "NetworkMode")])? else { return Ok(Outcome::Exit(0)) };
            let rows: Vec<ContainerSummary> = serde_json::from_value(v)?;
            if quiet {
                rows.iter().for_each(|r| println!("{}", short_id(&r.id)));
            } else {
                println!("{:<12}  {:<20}  {:<14}  {:<16}  {:<15}  COMMAND", "CONTAINER ID", "NAME", "STATUS", "NETWORK", "IP");
                for r in rows {
                    println!("{:<12}  {:<20}  {:<14}  {:<16}  {:<15}  {}", short_id(&r.id), r.name, r.status, r.network_mode, r.ip_address, r.command);
                }
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Inspect { format, names } => {
            if let Some(f) = &format {
                render_template(f, &json!({}))
                    .or_else(|e| if e.to_string().contains("can't evaluate field") { Ok(String::new()) } else { Err(e) })?;
            }
            inspect(&c, &names, &format, |n| format!("/containers/{}/json", enc(n))).await
        }
        Cmd::Exec { interactive, tty, env, detach_keys, name, cmd } => {
            check_tty(interactive, tty)?;
            let spec = ExecSpec { cmd, env, tty, attach_stdin: interactive };
            spec.validate()?;
            let path = format!("/containers/{}/exec?stdin={}{}", enc(&name), u8::from(interactive), detach_query(&detach_keys)?);
            match attached(&c, &path, Some(serde_json::to_value(&spec)?), interactive, tty, "Weft-Exec-Id", |id| format!("/exec/{id}/resize")).await {
                Ok(code) => Ok(Outcome::Exit(code)),
                // As docker: 127 for a command that is not there, 126 for one that cannot run.
                Err(e) if format!("{e:#}").contains("No such file or directory") => {
                    eprintln!("weft: {e:#}");
                    Ok(Outcome::Exit(127))
                }
                Err(e) => {
                    eprintln!("weft: {e:#}");
                    Ok(Outcome::Exit(126))
                }
            }
        }
        Cmd::Attach { no_stdin, detach_keys, name } => {
            let v = c.json(Method::GET, &format!("/containers/{}/json", enc(&name)), None).await?;
            let tty = v["Config"]["Tty"] == json!(true);
            let stdin = !no_stdin && (tty || v["Config"]["OpenStdin"] == json!(true));
            let path = format!("/containers/{}/attach?stdin={}{}", enc(&name), u8::from(stdin), detach_query(&detach_keys)?);
            let code = attached(&c, &path, None, stdin, tty, "Weft-Container-Id", |id| format!("/containers/{id}/resize")).await?;
            Ok(Outcome::Exit(code))
        }
        Cmd::Logs { follow, name } => {
            stream_logs(&c, &name, follow).await?;
            Ok(Outcome::Exit(0))
        }
        Cmd::Stop { time, names } => each(&c, Method::POST, &names, |n| format!("/containers/{}/stop?t={time}", enc(n))).await,
        Cmd::Kill { signal, names } => {
            each(&c, Method::POST, &names, |n| format!("/containers/{}/kill?signal={}", enc(n), enc(&signal))).await
        }
        Cmd::Rm { force, names } => {
            each(&c, Method::DELETE, &names, |n| format!("/containers/{}?force={}", enc(n), u8::from(force))).await
        }
        Cmd::Port { name, port } => {
            let v = c.json(Method::GET, &format!("/containers/{}/json", enc(&name)), None).await?;
            let want = port.map(|p| if p.contains('/') { p } else { format!("{p}/tcp") });
            let mut found = false;
            for (key, bindings) in v["NetworkSettings"]["Ports"].as_object().into_iter().flatten() {
                if want.as_ref().is_some_and(|w| w != key) {
                    continue;
                }
                for b in bindings.as_array().into_iter().flatten() {
                    found = true;
                    let ip = b["HostIp"].as_str().unwrap_or_default();
                    let ip = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                    let host = format!("{ip}:{}", b["HostPort"].as_str().unwrap_or_default());
                    if want.is_some() {
                        println!("{host}");
                    } else {
                        println!("{key} -> {host}");
                    }
                }
            }
            if let (Some(w), false) = (want, found) {
                bail!("no public port '{w}' published for {name}");
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Stats { no_stream, names } => stats(&c, names, no_stream).await,
        Cmd::Wait { names } => {
            for n in &names {
                let r: WaitReply = c.typed(Method::POST, &format!("/containers/{}/wait", enc(n)), None::<&()>).await?;
                println!("{}", r.status_code);
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Network(NetCmd::Create { driver, scope, subnet, gateway, ip_range, aux_address, internal, ipv6, opt, label, name }) => {
            // One subnet and one gateway per family: refuse more rather than drop them.
            let v4: Vec<_> = subnet.iter().filter_map(|s| if let ipnet::IpNet::V4(v) = s { Some(*v) } else { None }).collect();
            let v6: Vec<_> = subnet.iter().filter_map(|s| if let ipnet::IpNet::V6(v) = s { Some(*v) } else { None }).collect();
            let gw4: Vec<_> = gateway.iter().filter_map(|g| if let IpAddr::V4(v) = g { Some(*v) } else { None }).collect();
            let gw6: Vec<_> = gateway.iter().filter_map(|g| if let IpAddr::V6(v) = g { Some(*v) } else { None }).collect();
            if v4.len() > 1 || v6.len() > 1 || gw4.len() > 1 || gw6.len() > 1 {
                bail!("one IPv4 and one IPv6 --subnet (and --gateway) per network");
            }
            let aux_addresses = key_values(&aux_address, "--aux-address")?
                .into_iter()
                .map(|(k, v)| v.parse().map(|ip| (k, ip)).map_err(|_| anyhow::anyhow!("invalid --aux-address {v:?}: expected NAME=IPv4")))
                .collect::<anyhow::Result<_>>()?;
            let spec = NetworkSpec {
                name,
                driver,
                scope,
                subnet: v4.first().copied(),
                gateway: gw4.first().copied(),
                ip_range,
                aux_addresses,
                internal,
                enable_ipv6: ipv6,
                subnet6: v6.first().copied(),
                gateway6: gw6.first().copied(),
                options: key_values(&opt, "-o")?,
                labels: key_values(&label, "--label")?,
            };
            let r: IdReply = c.typed(Method::POST, "/networks/create", Some(&spec)).await?;
            println!("{}", r.id);
            Ok(Outcome::Exit(0))
        }
        Cmd::Network(NetCmd::Rm { names }) => each(&c, Method::DELETE, &names, |n| format!("/networks/{}", enc(n))).await,
        Cmd::Network(NetCmd::Prune { .. }) => {
            let spinner = term::spinner("pruning networks");
            let r: anyhow::Result<PruneReply> = c.typed(Method::POST, "/networks/prune", None::<&()>).await;
            term::stop_spinner(spinner);
            let r = r?;
            r.networks_deleted.iter().for_each(|n| println!("{n}"));
            Ok(Outcome::Exit(0))
        }
        Cmd::Network(NetCmd::Connect { ip, alias, netns, pid, name, ifname, mac_address, publish, network, container }) => {
            // A relative namespace path is the user's: weftd resolves nothing against its own cwd.
            let netns = netns.map(|p| std::fs::canonicalize(&p).map(|c| c.display().to_string()).unwrap_or(p));
            let spec = ConnectSpec { container: container.unwrap_or_default(), ip_address: ip, aliases: alias, force: false, netns, pid, name, ifname, mac_address, publish };
            spec.target()?;
            c.json(Method::POST, &format!("/networks/{}/connect", enc(&network)), Some(serde_json::to_value(&spec)?)).await?;
            Ok(Outcome::Exit(0))
        }
        Cmd::Network(NetCmd::Disconnect { force, network, container }) => {
            let spec = DisconnectSpec { container, force };
            c.json(Method::POST, &format!("/networks/{}/disconnect", enc(&network)), Some(serde_json::to_value(&spec)?)).await?;
            Ok(Outcome::Exit(0))
        }
        Cmd::Events { json, filter, format, until, since } => {
            let mut filters = serde_json::Map::new();
            for f in &filter {
                let (k, v) = f.split_once('=').with_context(|| format!("invalid --filter {f:?}: expected KEY=VALUE"))?;
                filters.entry(k.to_string()).or_insert_with(|| json!({})).as_object_mut().map(|m| m.insert(v.to_string(), json!(true)));
            }
            let mut query = vec![format!("filters={}", enc(&Value::Object(filters).to_string()))];
            for (k, t) in [("until", until), ("since", since)] {
                if let Some(t) = t {
                    query.push(format!("{k}={}", enc(&event_time(&t)?)));
                }
            }
            let resp = c.request(Method::GET, &format!("/events?{}", query.join("&")), None).await?;
            let mut body = resp.into_body();
            let mut out = std::io::stdout();
            let mut pending = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else { continue };
                pending.extend_from_slice(&data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let v: serde_json::Value = serde_json::from_slice(&line)?;
                    if json {
                        out.write_all(&line)?;
                    } else if let Some(f) = &format {
                        writeln!(out, "{}", render_template(f, &v)?)?;
                    } else {
                        writeln!(out, "{}", event_line(&v))?;
                    }
                    out.flush()?;
                }
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::OciHook => oci::hook(&c).await.map(|()| Outcome::Exit(0)),
        Cmd::Completion { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "weft", &mut std::io::stdout());
            Ok(Outcome::Exit(0))
        }
        Cmd::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?;
            Ok(Outcome::Exit(0))
        }
        Cmd::Node(NodeCmd::Ls) => {
            let v = c.json(Method::GET, "/nodes", None).await?;
            println!("{:<24}  {:<15}  {:<16}  {:<5}  SELF", "HOST ID", "ADDRESS", "LEASE", "TTL");
            for n in v.as_array().into_iter().flatten() {
                let me = if n["Self"].as_bool() == Some(true) { "*" } else { "" };
                println!("{:<24}  {:<15}  {:<16}  {:<5}  {me}", n["ID"].as_str().unwrap_or_default(), n["Addr"].as_str().unwrap_or_default(), n["Lease"].as_str().unwrap_or_default(), n["TTL"].as_u64().unwrap_or_default());
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Sandbox(SandboxCmd::Ls(list)) => {
            let v = c.json(Method::GET, "/sandboxes", None).await?;
            let Some(v) = listed(v, &list, &[("name", "Name"), ("network", "Network")])? else { return Ok(Outcome::Exit(0)) };
            println!("{:<20}  {:<16}  {:<15}  {:<8}  NETNS", "NAME", "NETWORK", "IP", "PID");
            for s in v.as_array().into_iter().flatten() {
                let pid = s["Pid"].as_u64().map(|p| p.to_string()).unwrap_or_default();
                println!("{:<20}  {:<16}  {:<15}  {:<8}  {}", s["Name"].as_str().unwrap_or_default(), s["Network"].as_str().unwrap_or_default(), s["IPAddress"].as_str().unwrap_or_default(), pid, s["Netns"].as_str().unwrap_or_default());
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Link(LinkCmd::Create { addr, ifname_a, ifname_b, a, b }) => {
            let spec = P2pSpec { a, b, addr, ifname_a, ifname_b };
            spec.validate()?;
            let r: IdReply = c.typed(Method::POST, "/links/create", Some(&spec)).await?;
            println!("{}", r.id);
            Ok(Outcome::Exit(0))
        }
        Cmd::Link(LinkCmd::Ls(list)) => {
            let v = c.json(Method::GET, "/links", None).await?;
            let Some(v) = listed(v, &list, &[("id", "Id"), ("name", "A.Name"), ("name", "B.Name")])? else { return Ok(Outcome::Exit(0)) };
            println!("{:<12}  {:<34}  B", "LINK ID", "A");
            let end = |e: &serde_json::Value| format!("{}:{} {}", e["Name"].as_str().unwrap_or_default(), e["Interface"].as_str().unwrap_or_default(), e["Address"].as_str().unwrap_or_default());
            for l in v.as_array().into_iter().flatten() {
                println!("{:<12}  {:<34}  {}", short_id(l["Id"].as_str().unwrap_or_default()), end(&l["A"]), end(&l["B"]));
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Link(LinkCmd::Inspect { format, links }) => inspect(&c, &links, &format, |n| format!("/links/{}", enc(n))).await,
        Cmd::Link(LinkCmd::Rm { links }) => each(&c, Method::DELETE, &links, |n| format!("/links/{}", enc(n))).await,
        Cmd::Sandbox(SandboxCmd::Inspect { format, names }) => {
            inspect(&c, &names, &format, |n| format!("/sandboxes/{}", enc(n))).await
        }
        Cmd::Network(NetCmd::Graph { networks }) => {
            let mut nets: Vec<Value> = c.json(Method::GET, "/networks", None).await?.as_array().cloned().unwrap_or_default();
            for n in &networks {
                if !nets.iter().any(|x| x["Name"] == n.as_str() || x["Id"].as_str().is_some_and(|id| id.starts_with(n.as_str()))) {
                    bail!("no such network: {n}");
                }
            }
            if !networks.is_empty() {
                nets.retain(|x| networks.iter().any(|n| x["Name"] == n.as_str() || x["Id"].as_str().is_some_and(|id| id.starts_with(n.as_str()))));
            }
            let rows: Vec<ContainerSummary> = serde_json::from_value(c.json(Method::GET, "/containers/json", None).await?)?;
            let mut containers = Vec::new();
            for r in rows {
                containers.push(c.json(Method::GET, &format!("/containers/{}/json", enc(&r.id)), None).await?);
            }
            let sandboxes = c.json(Method::GET, "/sandboxes", None).await?.as_array().cloned().unwrap_or_default();
            let links = c.json(Method::GET, "/links", None).await?.as_array().cloned().unwrap_or_default();
            let nodes = c.json(Method::GET, "/nodes", None).await.ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
            // The host's name as the store knows it (its --host-id) when it shares one.
            let host = match nodes.iter().find(|n| n["Self"] == true) {
                Some(me) => me["ID"].as_str().unwrap_or_default().to_string(),
                None => c.json(Method::GET, "/info", None).await?["Name"].as_str().unwrap_or_default().to_string(),
            };
            println!("{}", graph::render(&host, &nodes, &nets, &containers, &sandboxes, &links));
            Ok(Outcome::Exit(0))
        }
        Cmd::Network(NetCmd::Ls(list)) => {
            let v = c.json(Method::GET, "/networks", None).await?;
            let Some(v) = listed(v, &list, &[("name", "Name"), ("id", "Id"), ("driver", "Driver"), ("scope", "Scope"), ("label", "Labels")])? else { return Ok(Outcome::Exit(0)) };
            println!("{:<12}  {:<20}  {:<8}  SCOPE", "NETWORK ID", "NAME", "DRIVER");
            for n in v.as_array().into_iter().flatten() {
                println!("{:<12}  {:<20}  {:<8}  {}", short_id(n["Id"].as_str().unwrap_or_default()), n["Name"].as_str().unwrap_or_default(), n["Driver"].as_str().unwrap_or_default(), n["Scope"].as_str().unwrap_or_default());
            }
            Ok(Outcome::Exit(0))
        }
        Cmd::Network(NetCmd::Inspect { format, names }) => {
            inspect(&c, &names, &format, |n| format!("/networks/{}", enc(n))).await
        }
    }
}

/// `GET path(name)` for each name, printed as JSON or through the `-f` template.
async fn inspect(c: &Client, names: &[String], format: &Option<String>, path: impl Fn(&str) -> String) -> anyhow::Result<Outcome> {
    let mut items = Vec::new();
    for n in names {
        items.push(c.json(Method::GET, &path(n), None).await?);
    }
    print_formatted(format, items)?;
    Ok(Outcome::Exit(0))
}

/// Calls `path(name)` for each name, printing the name on success (as docker does); fails if any
/// failed.
async fn each(c: &Client, method: Method, names: &[String], path: impl Fn(&str) -> String) -> anyhow::Result<Outcome> {
    let mut code = 0;
    // Many at once: where it is, on a terminal.
    let verb = if method == Method::DELETE { "removing" } else { "working on" };
    let mut progress = term::Progress::new(verb, names.len());
    for (i, n) in names.iter().enumerate() {
        if let Some(p) = progress.as_mut() {
            p.step(i + 1, n);
        }
        let r = c.json(method.clone(), &path(n), None).await;
        if progress.is_some() {
            // (The line is cleared for what is printed.)
            eprint!("\r\x1b[2K");
        }
        match r {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("weft: {e:#}");
                code = 1;
            }
        }
    }
    Ok(Outcome::Exit(code))
}

/// `KEY=VALUE` items of a flag.
fn key_values(items: &[String], what: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid {what} {i:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// `-t` with `-i` needs a terminal to read from, as docker says.
fn check_tty(interactive: bool, tty: bool) -> anyhow::Result<()> {
    if interactive && tty && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("the input device is not a TTY");
    }
    Ok(())
}

fn detach_query(keys: &Option<String>) -> anyhow::Result<String> {
    match keys {
        Some(k) => {
            weft_model::stream::parse_detach_keys(k)?;
            Ok(format!("&detachKeys={}", enc(k)))
        }
        None => Ok(String::new()),
    }
}

/// Streams an attach connection opened by `POST path` (with `body`): output to stdout and
/// stderr, stdin to the daemon when `stdin`, the terminal raw and its size followed when `tty`;
/// returns the exit code (0 after a detach).
async fn attached(c: &Client, path: &str, body: Option<Value>, stdin: bool, tty: bool, id_header: &str, resize: impl Fn(&str) -> String) -> anyhow::Result<i32> {
    let (headers, io) = c.upgrade(path, body).await?;
    stream_attached(c, headers, io, stdin, tty, id_header, resize).await
}

/// The streaming half of [`attached`], on a connection already upgraded.
async fn stream_attached(
    c: &Client,
    headers: hyper::HeaderMap,
    io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    stdin: bool,
    tty: bool,
    id_header: &str,
    resize: impl Fn(&str) -> String,
) -> anyhow::Result<i32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let id = headers.get(id_header).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // Raw only when the keys go to the container (as docker: `-t` alone leaves ^C to the CLI).
    let _raw = if tty && stdin { term::RawMode::enter()? } else { None };
    if tty {
        // The size now, and again whenever the window changes.
        let (c2, resize_path) = (Client::new(&format!("unix://{}", c.socket()))?, resize(&enc(&id)));
        let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
        tokio::spawn(async move {
            loop {
                if let Some((h, w)) = term::size() {
                    let _ = c2.json(Method::POST, &format!("{resize_path}?h={h}&w={w}"), None).await;
                }
                if winch.recv().await.is_none() {
                    return;
                }
            }
        });
    }
    if !(tty && stdin) && id_header == "Weft-Container-Id" {
        // No terminal of the container's to carry ^C: pass it on as docker's --sig-proxy does.
        let (c2, kill) = (Client::new(&format!("unix://{}", c.socket()))?, format!("/containers/{}/kill?signal=INT", enc(&id)));
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                let _ = c2.json(Method::POST, &kill, None).await;
            }
        });
    }
    let (mut r, mut w) = tokio::io::split(io);
    if stdin {
        tokio::spawn(async move {
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // End of input: the daemon closes the command's stdin (run -i, exec -i).
            let _ = w.shutdown().await;
        });
    }
    let mut frames = weft_model::stream::FrameReader::default();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await.context("reading the stream")?;
        if n == 0 {
            bail!("the connection to weftd ended before the command did");
        }
        for f in frames.push(&buf[..n]).map_err(anyhow::Error::msg)? {
            match f {
                Frame::Stdout(d) => {
                    out.write_all(&d)?;
                    out.flush()?;
                }
                Frame::Stderr(d) => {
                    err.write_all(&d)?;
                    err.flush()?;
                }
                Frame::Exit(code) => return Ok(code),
                Frame::Detached => return Ok(0),
            }
        }
    }
}

/// An event as `docker events` prints it: `TIME TYPE ACTION ID (k=v, …)`, with the revision.
/// A time of `--since`/`--until`, as docker's: a duration (`10s`, `5m`, `1h`) is that long ago;
/// a Unix time or an RFC 3339 date goes as it is.
fn event_time(t: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let unit = |u: &str| match u {
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        _ => None,
    };
    if let Some((n, u)) = t.char_indices().last().and_then(|(i, _)| Some((t[..i].parse::<u64>().ok()?, unit(&t[i..])?))) {
        return Ok(now.saturating_sub(n * u).to_string());
    }
    if t.parse::<u64>().is_ok() || weft_model::parse_rfc3339(t).is_some() {
        return Ok(t.to_string());
    }
    bail!("invalid time {t:?}: expected a Unix time, an RFC 3339 date or a duration such as 10s, 5m, 1h")
}

fn event_line(v: &serde_json::Value) -> String {
    let attrs: Vec<String> = v["Actor"]["Attributes"].as_object().into_iter().flatten().map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or_default())).collect();
    let nanos = v["timeNano"].as_u64().unwrap_or_default();
    let time = weft_model::rfc3339(nanos / 1_000_000_000).replace('Z', &format!(".{:09}Z", nanos % 1_000_000_000));
    format!(
        "{time} {} {} {} ({}) rev={}",
        v["Type"].as_str().unwrap_or_default(),
        v["Action"].as_str().unwrap_or_default(),
        v["Actor"]["ID"].as_str().unwrap_or_default(),
        attrs.join(", "),
        v["Revision"].as_u64().unwrap_or_default()
    )
}

async fn stream_logs(c: &Client, name: &str, follow: bool) -> anyhow::Result<()> {
    let resp = c.request(Method::GET, &format!("/containers/{}/logs?follow={}", enc(name), u8::from(follow)), None).await?;
    let mut body = resp.into_body();
    let mut out = std::io::stdout();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.write_all(&data)?;
            out.flush()?;
        }
    }
    Ok(())
}

async fn run(c: &Client, a: RunArgs) -> anyhow::Result<Outcome> {
    if !a.detach {
        check_tty(a.interactive, a.tty)?;
    }
    let detach_keys = detach_query(&a.detach_keys)?;
    let rootfs = match &a.rootfs {
        Some(r) => Some(std::fs::canonicalize(r).map_err(|e| anyhow::anyhow!("rootfs {r}: {e}"))?.display().to_string()),
        None => None,
    };
    let spec = RunSpec {
        name: a.name,
        hostname: a.hostname,
        network_mode: a.net.first().cloned().unwrap_or_else(|| "bridge".into()),
        networks: a.net.iter().skip(1).cloned().collect(),
        ip: a.ip,
        aliases: a.network_alias,
        links: a.link,
        mac_address: a.mac_address,
        ip6: a.ip6,
        dns: a.dns,
        dns_search: a.dns_search,
        dns_options: a.dns_option,
        extra_hosts: a.add_host,
        rootfs,
        env: a.env,
        cmd: a.cmd,
        auto_remove: a.rm,
        publish: a.publish,
        publish_all: a.publish_all,
        expose: a.expose,
        privileged: a.privileged,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        memory: a.memory.as_deref().map(weft_model::parse_memory).transpose()?.unwrap_or(0),
        nano_cpus: a.cpus.as_deref().map(weft_model::parse_cpus).transpose()?.unwrap_or(0),
        pids_limit: a.pids_limit,
        device_cgroup_rules: a.device_cgroup_rule,
        log_opts: a.log_opt,
        tty: a.tty,
        open_stdin: a.interactive,
        // In the foreground, stdin ends with the user's (`echo hi | weft run -i … cat`).
        stdin_once: a.interactive && !a.detach,
    };
    spec.validate()?;
    // A first run from an archive waits for weftd to unpack it: show how far it has come.
    let unpacking = spec.rootfs.clone().filter(|r| std::path::Path::new(r).is_file()).and_then(|r| term::unpack_progress(c.socket().to_string(), r));
    if a.detach {
        let r = c.typed::<_, IdReply>(Method::POST, "/containers/run", Some(&spec)).await;
        term::stop_spinner(unpacking);
        println!("{}", r?.id);
        return Ok(Outcome::Exit(0));
    }
    // Foreground: one request creates, attaches (output from its first byte) and starts.
    let path = format!("/containers/run?attach=1&stdin={}{detach_keys}", u8::from(a.interactive));
    let upgraded = c.upgrade(&path, Some(serde_json::to_value(&spec)?)).await;
    term::stop_spinner(unpacking);
    let (headers, io) = upgraded?;
    let code = stream_attached(c, headers, io, a.interactive, a.tty, "Weft-Container-Id", |id| format!("/containers/{id}/resize")).await?;
    Ok(Outcome::Exit(code))
}

/// `1.5MiB`, as Docker's CLI prints sizes.
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

/// Docker's CPU %: the container's CPU time over the host's, times the CPUs, between two readings.
fn cpu_percent(before: &ContainerStats, now: &ContainerStats) -> f64 {
    let cpu = now.cpu_stats.cpu_usage.total_usage.saturating_sub(before.cpu_stats.cpu_usage.total_usage) as f64;
    let system = now.cpu_stats.system_cpu_usage.saturating_sub(before.cpu_stats.system_cpu_usage) as f64;
    if system <= 0.0 {
        return 0.0;
    }
    cpu / system * f64::from(now.cpu_stats.online_cpus.max(1)) * 100.0
}

async fn read_stats(c: &Client, names: &[String]) -> anyhow::Result<Vec<ContainerStats>> {
    let mut out = Vec::new();
    for n in names {
        out.push(c.typed(Method::GET, &format!("/containers/{}/stats?stream=false", enc(n)), None::<&()>).await?);
    }
    Ok(out)
}

/// `weft stats`: two readings a second apart make the first table; then one a second.
async fn stats(c: &Client, names: Vec<String>, no_stream: bool) -> anyhow::Result<Outcome> {
    let names = if names.is_empty() {
        let rows: Vec<ContainerSummary> = serde_json::from_value(c.json(Method::GET, "/containers/json", None).await?)?;
        rows.into_iter().map(|r| r.id).collect()
    } else {
        names
    };
    let clear = !no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut before = read_stats(c, &names).await?;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = read_stats(c, &names).await?;
        let mut table = format!("{:<12}   {:<20}   {:>7}   {:>22}   {:>7}   {:>5}\n", "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS");
        for (b, n) in before.iter().zip(&now) {
            let m = &n.memory_stats;
            let used = m.usage.saturating_sub(m.inactive_file);
            let mem_pct = if m.limit > 0 { used as f64 / m.limit as f64 * 100.0 } else { 0.0 };
            table.push_str(&format!(
                "{:<12}   {:<20}   {:>6.2}%   {:>22}   {:>6.2}%   {:>5}\n",
                short_id(&n.id),
                n.name,
                cpu_percent(b, n),
                format!("{} / {}", human(used), human(m.limit)),
                mem_pct,
                n.pids_stats.current
            ));
        }
        let mut out = std::io::stdout();
        if clear {
            out.write_all(b"\x1b[2J\x1b[H")?;
        }
        out.write_all(table.as_bytes())?;
        out.flush()?;
        if no_stream {
            return Ok(Outcome::Exit(0));
        }
        before = now;
    }
}
