//! Networks and bridge endpoints: the default network on `weft0` (or the user's `-b` bridge), and
//! the attach of one container to a bridge: `ip link add vethXXXXXXX master BR up type veth peer
//! name eth0 netns NS`, then inside the namespace `lo up`, address, `eth0 up`, default route, in one
//! netlink round trip each.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use ipnet::Ipv4Net;
use weft_kernel::{netns, Netlink};
use weft_model::{NetworkRecord, DEFAULT_NETWORK};
use weft_store::{Op, Txn};

use crate::config::DEFAULT_BRIDGE;
use crate::{blocking, Engine, EngineError, NetState, Result};

thread_local! {
    /// One netlink socket per blocking worker thread, in the daemon's own namespace (those threads
    /// never change namespace).
    static HOST_NL: RefCell<Option<Netlink>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's netlink socket in the daemon's namespace.
pub(crate) fn with_host<T>(f: impl FnOnce(&mut Netlink) -> weft_kernel::Result<T>) -> Result<T> {
    HOST_NL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Netlink::open()?);
        }
        let nl = slot.as_mut().expect("socket opened above");
        Ok(f(nl)?)
    })
}

pub use weft_model::mac_for;

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}


/// One endpoint to make, by its network's driver.
#[derive(Debug, Clone)]
pub struct EndpointAttach<'a> {
    pub net: &'a dyn weft_drivers::HostNetwork,
    /// The sandbox's owner (a container's id, `sandbox/NAME`) and the endpoint's id.
    pub owner: &'a str,
    pub endpoint_id: &'a str,
    pub netns: &'a Path,
    /// Empty for an endpoint without a host end.
    pub host_ifname: &'a str,
    pub ifname: &'a str,
    pub addr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// Dual-stack: the IPv6 address and, for the default route, the IPv6 gateway.
    pub v6: Option<(ipnet::Ipv6Net, Option<std::net::Ipv6Addr>)>,
    pub mac: [u8; 6],
    /// See [`weft_drivers::Join::configure_inside`].
    pub configure_inside: bool,
}

/// Creates and configures the endpoint through its network's driver; on failure the driver
/// removes what it made. Blocking.
///
/// For a bridge, two round trips in all: the veth (created, then up as a hairpin bridge port, in
/// one datagram) from the daemon's namespace, and the interface's configuration from inside.
/// Neither veth end generates an IPv6 link-local address on IPv4-only networks (addrgenmode none):
/// otherwise every new endpoint's duplicate-address probes, router solicitations and MLD reports
/// are multicast, which the bridge floods to every port and every namespace processes, an O(N)
/// cost per container (measured: setup grew from 0.7 ms to 6 ms at 1,000 endpoints).
/// A dual-stack interface: IPv6 on (in case an IPv4-only attach turned the namespace's default
/// off), no router advertisements taken.
const NETNS_SYSCTLS_V6: &[(&str, &str)] = &[("net.ipv6.conf.default.disable_ipv6", "0"), ("net.ipv6.conf.default.accept_ra", "0")];

/// Two interface indexes for an endpoint's ends: weft's own sequence, from a random place high
/// above where the kernel hands them out (it counts up from 1 and skips taken ones), so a
/// collision needs millions of interfaces; a taken one fails the creation like a taken name.
pub(crate) fn endpoint_indexes() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(0, 0x0100_0000 + (u32::from_str_radix(&weft_model::new_id()[..7], 16).unwrap_or(0) % 0x3000_0000) * 2, Ordering::Relaxed, Ordering::Relaxed);
    let n = NEXT.fetch_add(2, Ordering::Relaxed);
    if n >= 0x7fff_fff0 {
        NEXT.store(0x0100_0000, Ordering::Relaxed);
    }
    n
}

pub fn attach_endpoint(a: &EndpointAttach<'_>) -> Result<()> {
    let t0 = std::time::Instant::now();
    let index = endpoint_indexes();
    let ns = std::fs::File::open(a.netns)
        .map_err(|source| EngineError::Io { op: "open netns", path: a.netns.display().to_string(), source })?;
    // Opened inside while the driver works on the host side.
    let mut inside = netns::open_in_background(a.netns, if a.v6.is_some() { NETNS_SYSCTLS_V6 } else { &[] })?;
    let t_open = t0.elapsed();
    let join = weft_drivers::Join {
        owner: a.owner,
        endpoint_id: a.endpoint_id,
        netns_fd: ns.as_raw_fd(),
        host_ifname: a.host_ifname,
        ifname: a.ifname,
        addr: a.addr,
        gateway: a.gateway,
        v6: a.v6,
        mac: a.mac,
        configure_inside: a.configure_inside,
        host_index: index,
        index: index + 1,
    };
    let attached = with_host(|host| Ok(a.net.join(host, &mut inside, &join).map_err(EngineError::from)))?;
    // A MAC derived from the address is the only MAC that address ever has here, so every ARP
    // cache already agrees with it: only a chosen MAC (--mac-address) is announced. (A broadcast is
    // flooded to every port of the bridge and processed in every namespace: +2.2 ms per setup at
    // 1,000 endpoints.) The bridge learns the port's carrier asynchronously, so an announcement
    // right at link-up can be dropped: it is sent now and again 100 ms later, in the background.
    if attached.is_ok() && a.configure_inside && a.mac != mac_for(a.addr.addr()) {
        let (ns, ifname, ip, mac) = (a.netns.to_path_buf(), a.ifname.to_string(), a.addr.addr(), a.mac);
        std::thread::spawn(move || {
            for delay in [0, 100] {
                std::thread::sleep(std::time::Duration::from_millis(delay));
                let (i, n) = (ifname.clone(), ns.clone());
                if let Err(e) = netns::run_in(&n, move || weft_kernel::arp::announce(&i, ip, mac)) {
                    tracing::debug!(error = %e, "gratuitous ARP not sent");
                }
            }
        });
    }
    tracing::debug!(started_us = t_open.as_micros() as u64, total_us = t0.elapsed().as_micros() as u64, host_if = a.host_ifname, ok = attached.is_ok(), "endpoint attach");
    attached
}

/// Removes an endpoint: by its host end through its network's driver (a veth's peer goes with
/// it), or inside namespace `netns` if it has none. Blocking.
pub(crate) fn detach_endpoint(net: &dyn weft_drivers::HostNetwork, e: &weft_model::EndpointRecord, netns: &Path) -> Result<()> {
    match e.host_end() {
        Some(link) => with_host(|nl| net.leave(nl, link)),
        None => Ok(netns::delete_link_in(netns, &e.ifname)?),
    }
}

/// `ip link set lo up` inside a namespace (`--net none`). Blocking.
pub(crate) fn loopback_only(ns: &Path) -> Result<()> {
    Ok(netns::open_in(ns, &[])?.loopback_up()?)
}

impl Engine {
    /// Creates or adopts the default network (`bridge` on `weft0`, or on `-b BRIDGE`).
    pub(crate) async fn setup_default_network(&self) -> Result<()> {
        let (items, _) = self.store.range(&self.keys.networks(weft_model::Scope::Local)).await?;
        let stored: Option<NetworkRecord> = items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<NetworkRecord>(&kv.value).ok())
            .find(|n| n.name == DEFAULT_NETWORK);
        let cfg = self.cfg.clone();
        let stored_subnet = stored.as_ref().filter(|s| s.managed_bridge).map(|s| (s.subnet, s.gateway));
        let (bridge, managed, subnet, gateway) = blocking(move || {
            let managed = cfg.bridge.is_none();
            let name = cfg.bridge.clone().unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
            with_host(|nl| Ok((nl.link(&name)?, nl.addrs()?, nl.routes_v4()?))).and_then(|(link, addrs, routes)| {
                let own_addr = link.as_ref().and_then(|l| {
                    addrs.iter().find_map(|a| match a.addr {
                        IpAddr::V4(ip) if a.index == l.index => Ipv4Net::new(ip, a.prefix_len).ok(),
                        _ => None,
                    })
                });
                let (subnet, gateway) = if !managed {
                    if link.is_none() {
                        return Err(EngineError::Config(format!("bridge {name} not found: create it first or omit -b")));
                    }
                    let a = own_addr.ok_or_else(|| EngineError::Config(format!("bridge {name} has no IPv4 address")))?;
                    (a.trunc(), a.addr())
                } else if let Some(bip) = cfg.bip {
                    if let Some(a) = own_addr.filter(|a| *a != bip) {
                        return Err(EngineError::Config(format!(
                            "bridge {name} has address {a}, not --bip {bip}: delete the bridge or change --bip"
                        )));
                    }
                    (bip.trunc(), bip.addr())
                } else if let Some(a) = own_addr {
                    (a.trunc(), a.addr())
                } else if let Some((s, g)) = stored_subnet {
                    (s, g)
                } else {
                    let mut in_use: Vec<Ipv4Net> = routes.iter().map(|r| r.dst).collect();
                    in_use.extend(addrs.iter().filter_map(|a| match a.addr {
                        IpAddr::V4(ip) if !ip.is_loopback() => Ipv4Net::new(ip, a.prefix_len).ok(),
                        _ => None,
                    }));
                    let s = weft_ipam::pick_subnet(&cfg.default_pools, &in_use).ok_or_else(|| {
                        EngineError::Config("no default address pool has a free subnet: set --bip".into())
                    })?;
                    (s, s.hosts().next().expect("pool subnets have hosts"))
                };
                if let Some(fixed) = cfg.fixed_cidr {
                    if !subnet.contains(&fixed) {
                        return Err(EngineError::Config(format!("--fixed-cidr {fixed} is not inside the bridge subnet {subnet}")));
                    }
                }
                Ok((name, managed, subnet, gateway))
            })
        })
        .await?;
        if self.cfg.ip_forward {
            weft_kernel::sysctl::write("net.ipv4.ip_forward", "1")?;
        }
        let rec = NetworkRecord {
            id: stored.as_ref().map(|s| s.id.clone()).unwrap_or_else(weft_model::new_id),
            name: DEFAULT_NETWORK.into(),
            driver: weft_model::DriverKind::Bridge,
            bridge,
            subnet,
            gateway,
            ip_range: self.cfg.fixed_cidr,
            mtu: self.cfg.mtu,
            managed_bridge: managed,
            icc: self.cfg.icc,
            masquerade: self.cfg.ip_masq,
            internal: false,
            created: stored.as_ref().map(|s| s.created).unwrap_or_else(crate::now),
            options: BTreeMap::new(),
            aux_addresses: BTreeMap::new(),
            labels: BTreeMap::new(),
            host_binding_ipv4: None,
            subnet6: None,
            gateway6: None,
            scope: weft_model::Scope::Local,
            proxy_arp_option: Some(true),
            routed_range: None,
        };
        // The bridge (made, or adopted as it is with -b), through the bridge driver; with the
        // firewall, `route_localnet` on it: published ports answer on 127.0.0.1, and DNATed
        // loopback traffic may leave by the bridge (masqueraded there), as Docker does without
        // its proxy.
        let (r, o) = (rec.clone(), self.host_options());
        let made = blocking(move || crate::networks::make_network(&r, &o)).await?;
        if stored.as_ref() != Some(&rec) {
            // What the record held before (its subnet may have changed) is given back with it
            // (all but the record itself, the first key, which is put again).
            let mut ops: Vec<Op> = match &stored {
                Some(s) => crate::networks::written(&self.network_txn(s)?).into_iter().skip(1).map(Op::Delete).collect(),
                None => Vec::new(),
            };
            ops.push(Op::Put(self.keys.network(&rec), serde_json::to_vec(&rec)?));
            self.commit(Txn::ops(ops)).await?;
        }
        self.ensure_claims(&rec).await?;
        crate::mirror::network(&self.cfg.data_root, &rec);
        tracing::info!(network = %rec.name, bridge = %rec.bridge, subnet = %rec.subnet, gateway = %rec.gateway, "default network ready");
        let pool = weft_ipam::Pool::new(subnet, self.cfg.fixed_cidr, &[gateway])?;
        let mut st = self.lock();
        st.ipam.add(&rec.id, pool, None);
        st.networks.insert(rec.id.clone(), NetState::new(rec, made));
        Ok(())
    }
}
