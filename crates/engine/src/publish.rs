//! Publishing a container's ports: host ports reserved (sockets held), DNAT map elements added in
//! one firewall transaction, proxies started where needed; and the reverse, which also deletes
//! the mappings' conntrack entries.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::task::JoinHandle;
use weft_firewall::PortFw;
use weft_model::{PortMapping, PortSpec};

use crate::ports::{kernel_ip, needs_proxy, Hold};
use crate::undo::Undo;
use crate::{blocking, Engine, Result};

/// What holds a container's published ports: the reservation sockets and the proxy tasks
/// (aborted, and the sockets closed, when dropped).
#[derive(Default)]
pub(crate) struct Published {
    holds: Vec<socket2::Socket>,
    proxies: Vec<JoinHandle<()>>,
}

impl Drop for Published {
    fn drop(&mut self) {
        for p in &self.proxies {
            p.abort();
        }
    }
}

/// The kernel's view of the mappings (IPv6 host addresses have none: the proxy serves them).
pub(crate) fn kernel_ports(mappings: &[PortMapping], container_ip: std::net::Ipv4Addr) -> Vec<PortFw> {
    mappings
        .iter()
        .filter_map(|m| {
            kernel_ip(&m.host_ip).map(|host_ip| PortFw {
                host_ip,
                proto: m.proto,
                host_port: m.host_port,
                container_ip,
                container_port: m.container_port,
            })
        })
        .collect()
}

/// The firewall elements of a container's links: it may open each exposed port of each target.
pub(crate) fn link_rules(own_ip: std::net::Ipv4Addr, links: &[weft_model::LinkRecord]) -> Vec<weft_firewall::LinkFw> {
    links
        .iter()
        .flat_map(|l| l.ports.iter().map(move |(port, proto)| weft_firewall::LinkFw { src: own_ip, dst: l.ip, proto: *proto, port: *port }))
        .collect()
}

impl Engine {
    /// Takes the sockets of `holds` and starts the proxies the mappings need. With
    /// `runtime_holds` the sockets that would only reserve a port are let go: under CNI the
    /// runtime holds each host port itself (Podman binds it after `ADD`, as CRI does), and two
    /// holders of one port would refuse each other; weft's port table still counts it.
    fn hold(&self, id: &str, container_ip: std::net::Ipv4Addr, holds: Vec<(PortMapping, Hold)>, runtime_holds: bool) -> Result<()> {
        let mut p = Published::default();
        for (m, h) in holds {
            let Some(sock) = h.socket() else { continue };
            if needs_proxy(&m.host_ip, self.cfg.userland_proxy) {
                let target = SocketAddr::new(IpAddr::V4(container_ip), m.container_port);
                let proxy = crate::proxy::spawn(m.proto, sock, target)
                    .map_err(|source| crate::EngineError::Io { op: "start proxy", path: format!("{}:{}", m.host_ip, m.host_port), source })?;
                p.proxies.extend(proxy);
            } else if !runtime_holds {
                p.holds.push(sock);
            }
        }
        let mut st = self.lock();
        let entry = st.published.entry(id.to_string()).or_default();
        entry.holds.append(&mut p.holds);
        entry.proxies.append(&mut p.proxies);
        Ok(())
    }

    /// Allocates and publishes `specs` for `id` (a container, or a sandbox key) at `container_ip`
    /// (`default_ip`: the host address of specs without one):
    /// host ports held (by the runtime instead, with `runtime_holds`: see `hold`), DNAT elements
    /// added in one transaction, proxies started where needed.
    pub fn publish(self: &Arc<Self>, id: &str, container_ip: std::net::Ipv4Addr, specs: &[PortSpec], default_ip: IpAddr, runtime_holds: bool) -> Result<Vec<PortMapping>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let holds = self.lock().port_table().allocate(specs, default_ip)?;
        let mappings: Vec<PortMapping> = holds.iter().map(|(m, _)| *m).collect();
        let mut undo = Undo::new();
        {
            let (eng, m) = (self.clone(), mappings.clone());
            undo.push("free the host ports", move || {
                let mut st = eng.lock();
                for m in &m {
                    st.port_table().release(m);
                }
            });
        }
        let kernel = kernel_ports(&mappings, container_ip);
        self.fw.add_ports(&kernel)?;
        {
            let eng = self.clone();
            undo.push("remove the DNAT elements", move || {
                let _ = eng.fw.remove_ports(&kernel);
            });
        }
        self.hold(id, container_ip, holds, runtime_holds)?;
        undo.commit();
        Ok(mappings)
    }

    /// Re-takes the ports of a container adopted at start (the firewall gets them from reset);
    /// with `runtime_holds`, only counts them (see `hold`).
    pub(crate) fn readopt_ports(&self, id: &str, container_ip: std::net::Ipv4Addr, mappings: &[PortMapping], runtime_holds: bool) {
        if runtime_holds {
            let mut st = self.lock();
            mappings.iter().for_each(|m| st.port_table().count(m));
            return;
        }
        let mut holds = Vec::new();
        for m in mappings {
            match self.lock().port_table().reserve(m) {
                Ok(h) => holds.push((*m, h)),
                Err(e) => tracing::error!(container = id, error = %e, "cannot hold a published port again"),
            }
        }
        if let Err(e) = self.hold(id, container_ip, holds, false) {
            tracing::error!(container = id, error = %e, "cannot restart a port proxy");
        }
    }

    /// Removes the mappings' DNAT elements and frees their ports (rollback uses this directly).
    pub(crate) fn withdraw(&self, id: &str, container_ip: std::net::Ipv4Addr, mappings: &[PortMapping]) -> Result<Vec<PortFw>> {
        let kernel = kernel_ports(mappings, container_ip);
        let removed = self.fw.remove_ports(&kernel);
        let mut st = self.lock();
        st.published.remove(id);
        for m in mappings {
            st.port_table().release(m);
        }
        removed?;
        Ok(kernel)
    }

    /// Deletes the conntrack entries of `ports`' host side (blocking work, off the async workers).
    pub(crate) async fn flush_conntrack(&self, ports: Vec<PortFw>) -> Result<()> {
        if !self.fw.enabled() || ports.is_empty() {
            return Ok(());
        }
        blocking(move || {
            if weft_kernel::conntrack::tracked() == Some(0) {
                return Ok(());
            }
            for p in &ports {
                weft_kernel::conntrack::delete_by_dst(p.proto.number(), p.host_ip, p.host_port)?;
            }
            Ok(())
        })
        .await
    }

    /// [`Engine::withdraw`], then deletes the mappings' conntrack entries, so that no flow keeps
    /// going to the container.
    pub(crate) async fn unpublish(self: &Arc<Self>, id: &str, container_ip: std::net::Ipv4Addr, mappings: &[PortMapping]) -> Result<()> {
        if mappings.is_empty() {
            return Ok(());
        }
        let kernel = self.withdraw(id, container_ip, mappings)?;
        self.flush_conntrack(kernel).await
    }
}
