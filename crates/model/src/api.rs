//! The bodies of the API that are not records: what a client sends to connect and disconnect,
//! and what weftd answers. One type each, used by weftd and the CLI alike (no hand-built JSON).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// `POST /networks/{id}/connect`: a container, or a network namespace weft did not start
/// (`Netns`: a path such as `/run/netns/NAME`; `Pid`: a process's), which then gets `Name`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct ConnectSpec {
    pub container: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// Accepted as Docker's clients send it with a disconnect; meaningless here.
    pub force: bool,
    pub netns: Option<String>,
    pub pid: Option<u32>,
    /// The name of an attached namespace (default: `pid<PID>` or the namespace file's name).
    pub name: Option<String>,
    /// Its interface's name (default: the first free `ethN` there).
    pub ifname: Option<String>,
    /// Its interface's MAC (default: derived from the address).
    pub mac_address: Option<String>,
    /// `-p` specs, as `docker run -p`.
    pub publish: Vec<String>,
}

/// What a connect attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    Container(String),
    Netns(String),
    Pid(u32),
}

impl ConnectSpec {
    /// Exactly one of `Container`, `Netns`, `Pid`; `Name` and `Ifname` only with the latter two.
    pub fn target(&self) -> Result<ConnectTarget, crate::ModelError> {
        let bad = |m: &str| Err(crate::ModelError::Connect(m.to_string()));
        let target = match (self.container.is_empty(), &self.netns, self.pid) {
            (false, None, None) => ConnectTarget::Container(self.container.clone()),
            (true, Some(p), None) if p.starts_with('/') && !p.contains('\0') => ConnectTarget::Netns(p.clone()),
            (true, Some(_), None) => return bad("--netns takes an absolute path such as /run/netns/NAME"),
            (true, None, Some(pid)) if pid > 0 => ConnectTarget::Pid(pid),
            (true, None, None) => return bad("give a container, --netns PATH or --pid PID"),
            _ => return bad("give one of a container, --netns PATH and --pid PID"),
        };
        if matches!(target, ConnectTarget::Container(_)) && (self.name.is_some() || self.ifname.is_some() || self.mac_address.is_some() || !self.publish.is_empty()) {
            return bad("--name, --ifname, --mac-address and -p are for --netns and --pid");
        }
        if let Some(m) = &self.mac_address {
            crate::parse_mac(m)?;
        }
        let specs = self.publish.iter().map(|p| crate::parse_publish(p)).collect::<Result<Vec<_>, _>>()?;
        crate::check_port_count(&specs)?;
        if let Some(n) = &self.name {
            crate::validate_container_name(n)?;
        }
        if let Some(i) = &self.ifname {
            crate::validate_ifname(i)?;
        }
        for a in &self.aliases {
            crate::validate_alias(a)?;
        }
        Ok(target)
    }
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct DisconnectSpec {
    pub container: String,
    pub force: bool,
}

/// The answer naming what was made: `POST /containers/run`, `POST /networks/create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IdReply {
    pub id: String,
}

/// `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct WaitReply {
    pub status_code: i32,
}

/// `POST /networks/prune`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReply {
    pub networks_deleted: Vec<String>,
}

/// `POST /attachments`: a container another runtime started joins a network (CNI `ADD`, the OCI
/// hook). Its namespace becomes a sandbox named `Name` (default: the first 12 characters of
/// the runtime's id), found again by `Runtime` and `Ifname`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct AttachSpec {
    pub network: String,
    pub runtime: Option<crate::RuntimeRef>,
    pub name: Option<String>,
    pub netns: String,
    /// The container's process: its exit detaches the namespace (the OCI hook gives it).
    pub pid: Option<u32>,
    pub ifname: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<Ipv4Addr>,
    pub mac_address: Option<String>,
    pub aliases: Vec<String>,
    /// `-p` specs, as `docker run -p`.
    pub publish: Vec<String>,
    /// Make the pair with its inside end left bare in weftd's own namespace, named `Ifname`,
    /// for the runtime to move into `Netns` and configure (Docker's `Join`).
    pub host_end_only: bool,
}

/// The answer to `POST /attachments`: the endpoint made, and the resolver the container should
/// use (the embedded DNS inside its namespace, on a user network).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AttachReply {
    pub sandbox: String,
    pub endpoint: crate::EndpointRecord,
    pub nameservers: Vec<std::net::IpAddr>,
}

/// One attachment of a runtime's container: `POST /attachments/detach` (idempotent: nothing
/// attached is success) and `POST /attachments/check`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct AttachmentRef {
    pub network: String,
    pub runtime: Option<crate::RuntimeRef>,
    pub ifname: String,
}

/// `POST /attachments/gc`: detaches the attachments of runtime `Kind` on `Network` that are not
/// in `Valid` (CNI's `GC`, with `cni.dev/valid-attachments`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct CollectSpec {
    pub network: String,
    pub kind: String,
    /// (runtime id, interface name).
    pub valid: Vec<(String, String)>,
}
