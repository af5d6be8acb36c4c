//! CNI's side of the plugin, without I/O: a call (its environment and network configuration)
//! becomes one request to weftd's attachment API, and weftd's answer becomes a CNI result or a
//! CNI error object. Versions 0.3.0 to 1.1.0 of the spec (results before 1.0.0 carry each IP's
//! `version`).

use serde_json::{json, Value};
use weft_model::{AttachReply, AttachSpec, AttachmentRef, CollectSpec, RuntimeRef};

pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The runtime kind of CNI attachments in weft's records.
pub const KIND: &str = "cni";
pub const DEFAULT_SOCKET: &str = "/run/weft/weft.sock";

/// The spec's error codes (weft's own start at 100).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const REFUSED: u32 = 100;
    pub const FAILED: u32 = 101;
}

/// A CNI error object.
#[derive(Debug, Clone, PartialEq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self { code, msg: msg.into(), details: String::new() }
    }
    pub fn to_json(&self, version: &str) -> Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

/// The call's environment (`CNI_*`).
#[derive(Debug, Clone, Default)]
pub struct Call {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: String,
}

impl Call {
    fn arg(&self, key: &str) -> Option<&str> {
        self.args.split(';').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }
    fn need(&self, what: &str, v: &str) -> Result<(), CniError> {
        if v.is_empty() {
            return Err(CniError::new(code::INVALID_ENV, format!("{what} is not set")));
        }
        Ok(())
    }
}

/// The network configuration on stdin, as far as weft reads it.
#[derive(Debug, Clone)]
pub struct Conf {
    pub version: String,
    pub raw: Value,
}

impl Conf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| CniError::new(code::DECODE, format!("the network configuration is not JSON: {e}")))?;
        if !raw.is_object() {
            return Err(CniError::new(code::DECODE, "the network configuration is not a JSON object"));
        }
        let version = raw["cniVersion"].as_str().unwrap_or_default().to_string();
        Ok(Self { version, raw })
    }
    /// Refuses a version weft does not speak (code 1).
    pub fn check_version(&self) -> Result<(), CniError> {
        if SUPPORTED.contains(&self.version.as_str()) {
            return Ok(());
        }
        Err(CniError::new(code::INCOMPATIBLE_VERSION, format!("cniVersion {:?} is not one of {}", self.version, SUPPORTED.join(", "))))
    }
    /// weftd's socket: `socket` in the configuration, else weftd's default.
    pub fn socket(&self) -> String {
        self.raw["socket"].as_str().map(|s| s.strip_prefix("unix://").unwrap_or(s).to_string()).unwrap_or_else(|| DEFAULT_SOCKET.into())
    }
    /// The weft network: `network`, else the configuration's `name`.
    pub fn network(&self) -> Result<String, CniError> {
        match self.raw["network"].as_str().or(self.raw["name"].as_str()) {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => Err(CniError::new(code::INVALID_CONFIG, "the network configuration has no name")),
        }
    }
    fn runtime_config(&self) -> &Value {
        &self.raw["runtimeConfig"]
    }
}

fn runtime(call: &Call) -> Option<RuntimeRef> {
    Some(RuntimeRef { kind: KIND.into(), id: call.container_id.clone() })
}

/// `ADD`: the attachment weft is asked for.
pub fn attach_spec(call: &Call, conf: &Conf) -> Result<AttachSpec, CniError> {
    call.need("CNI_CONTAINERID", &call.container_id)?;
    call.need("CNI_NETNS", &call.netns)?;
    call.need("CNI_IFNAME", &call.ifname)?;
    let network = conf.network()?;
    let rc = conf.runtime_config();
    let bad = |m: String| CniError::new(code::INVALID_CONFIG, m);
    // A static address: `runtimeConfig.ips` (the `ips` capability) or `CNI_ARGS` `IP=`.
    let ip = match rc["ips"].as_array().and_then(|a| a.first()).and_then(Value::as_str).or(call.arg("IP")) {
        Some(s) => Some(s.split('/').next().unwrap_or(s).parse().map_err(|_| bad(format!("{s:?} is not an IPv4 address")))?),
        None => None,
    };
    let mac = rc["mac"].as_str().or(call.arg("MAC")).map(str::to_string);
    // `aliases` (Podman's capability): by network name.
    let aliases = rc["aliases"][conf.raw["name"].as_str().unwrap_or_default()].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    let mut publish = Vec::new();
    for m in rc["portMappings"].as_array().into_iter().flatten() {
        let (host, ctr) = (m["hostPort"].as_u64(), m["containerPort"].as_u64());
        let (Some(host), Some(ctr)) = (host, ctr) else { return Err(bad(format!("a port mapping without hostPort or containerPort: {m}"))) };
        let proto = m["protocol"].as_str().filter(|p| !p.is_empty()).unwrap_or("tcp").to_ascii_lowercase();
        publish.push(match m["hostIP"].as_str().filter(|h| !h.is_empty()) {
            Some(h) if h.contains(':') => format!("[{h}]:{host}:{ctr}/{proto}"),
            Some(h) => format!("{h}:{host}:{ctr}/{proto}"),
            None => format!("{host}:{ctr}/{proto}"),
        });
    }
    Ok(AttachSpec {
        network,
        runtime: runtime(call),
        name: call.arg("K8S_POD_NAME").filter(|n| !n.is_empty()).map(str::to_string),
        netns: call.netns.clone(),
        pid: None,
        ifname: call.ifname.clone(),
        ip_address: ip,
        mac_address: mac,
        aliases,
        publish,
        host_end_only: false,
    })
}

/// `DEL` and `CHECK`: the attachment they concern (only the container id and interface are
/// needed: `CNI_NETNS` may be empty).
pub fn attachment(call: &Call, conf: &Conf) -> Result<AttachmentRef, CniError> {
    call.need("CNI_CONTAINERID", &call.container_id)?;
    call.need("CNI_IFNAME", &call.ifname)?;
    Ok(AttachmentRef { network: conf.network()?, runtime: runtime(call), ifname: call.ifname.clone() })
}

/// `GC`: the attachments to keep, from `cni.dev/valid-attachments` (or `cni.dev/attachments`).
pub fn collect_spec(conf: &Conf) -> Result<CollectSpec, CniError> {
    let list = conf.raw.get("cni.dev/valid-attachments").or(conf.raw.get("cni.dev/attachments"));
    let Some(list) = list.and_then(Value::as_array) else {
        return Err(CniError::new(code::INVALID_CONFIG, "GC needs cni.dev/valid-attachments"));
    };
    let valid = list
        .iter()
        .map(|a| match (a["containerID"].as_str(), a["ifname"].as_str()) {
            (Some(c), Some(i)) => Ok((c.to_string(), i.to_string())),
            _ => Err(CniError::new(code::INVALID_CONFIG, format!("an attachment without containerID or ifname: {a}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(CollectSpec { network: conf.network()?, kind: KIND.into(), valid })
}

/// The CNI result of an `ADD`: the previous plugins' result (`prevResult`) with weft's
/// interface, addresses, default route and resolver after it.
pub fn result(conf: &Conf, call: &Call, reply: &AttachReply) -> Value {
    let prev = &conf.raw["prevResult"];
    let list = |k: &str| prev[k].as_array().cloned().unwrap_or_default();
    let mut interfaces = list("interfaces");
    let index = interfaces.len();
    let e = &reply.endpoint;
    interfaces.push(json!({"name": e.ifname, "mac": e.mac, "sandbox": call.netns}));
    let old = conf.version.starts_with("0.");
    let ip = |addr: String, gw: Option<String>, v: &str| {
        let mut o = json!({"address": addr, "interface": index});
        if let Some(g) = gw {
            o["gateway"] = json!(g);
        }
        if old {
            o["version"] = json!(v);
        }
        o
    };
    let mut ips = list("ips");
    ips.push(ip(format!("{}/{}", e.ip, e.prefix_len), e.gateway.map(|g| g.to_string()), "4"));
    if let Some(a6) = e.ip6 {
        ips.push(ip(format!("{a6}/{}", e.prefix6), e.gateway6.map(|g| g.to_string()), "6"));
    }
    let mut routes = list("routes");
    if let Some(g) = e.gateway {
        routes.push(json!({"dst": "0.0.0.0/0", "gw": g.to_string()}));
    }
    if let Some(g) = e.gateway6 {
        routes.push(json!({"dst": "::/0", "gw": g.to_string()}));
    }
    let mut dns = if prev["dns"].is_object() { prev["dns"].clone() } else { json!({}) };
    if !reply.nameservers.is_empty() {
        let mut ns: Vec<Value> = reply.nameservers.iter().map(|n| json!(n.to_string())).collect();
        ns.extend(dns["nameservers"].as_array().cloned().unwrap_or_default());
        dns["nameservers"] = Value::Array(ns);
    }
    json!({"cniVersion": conf.version, "interfaces": interfaces, "ips": ips, "routes": routes, "dns": dns})
}

/// weftd's error answer as a CNI error: `CHECK`'s "no such attachment" is the spec's unknown
/// container; the rest are weft's.
pub fn from_status(status: u16, body: &[u8]) -> CniError {
    let msg = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["message"].as_str().map(str::to_string)).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let code = match status {
        404 => code::UNKNOWN_CONTAINER,
        s if s >= 500 => code::FAILED,
        _ => code::REFUSED,
    };
    CniError::new(code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &str) -> Call {
        Call { command: "ADD".into(), container_id: "0123456789abcdef0123".into(), netns: "/run/netns/c1".into(), ifname: "eth0".into(), args: args.into() }
    }

    fn reply() -> AttachReply {
        let e = r#"{"endpoint_id":"e1","network_id":"n1","network_name":"front","ifname":"eth0","host_ifname":"veth1","ip":"10.1.0.5","prefix_len":24,"gateway":"10.1.0.1","mac":"02:42:0a:01:00:05"}"#;
        AttachReply { sandbox: "web".into(), endpoint: serde_json::from_str(e).expect("endpoint"), nameservers: vec!["127.0.0.11".parse().expect("ip")] }
    }

    #[test]
    fn add_reads_names_addresses_ports_and_aliases() {
        let conf = Conf::parse(br#"{"cniVersion":"1.0.0","name":"front","type":"weft","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"10.9.0.1"}],"aliases":{"front":["www"]}}}"#).expect("conf");
        let s = attach_spec(&call("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.0.9"), &conf).expect("spec");
        assert_eq!((s.network.as_str(), s.name.as_deref(), s.ip_address.map(|i| i.to_string())), ("front", Some("web"), Some("10.1.0.9".into())));
        assert_eq!(s.publish, vec!["8080:80/tcp".to_string(), "10.9.0.1:53:53/udp".into()]);
        assert_eq!(s.aliases, vec!["www".to_string()]);
        assert_eq!(s.runtime, Some(RuntimeRef { kind: "cni".into(), id: "0123456789abcdef0123".into() }));
        // `network` names the weft network when it differs from the configuration's name.
        let conf = Conf::parse(br#"{"cniVersion":"1.0.0","name":"list","network":"front"}"#).expect("conf");
        assert_eq!(attach_spec(&call(""), &conf).expect("spec").network, "front");
        let e = attach_spec(&Call { netns: String::new(), ..call("") }, &conf).expect_err("no netns");
        assert_eq!(e.code, code::INVALID_ENV);
        assert_eq!(attach_spec(&call("IP=nonsense"), &conf).expect_err("bad ip").code, code::INVALID_CONFIG);
    }

    #[test]
    fn results_chain_after_a_previous_plugin_and_by_version() {
        let conf = Conf::parse(br#"{"cniVersion":"1.0.0","name":"front","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"/run/netns/c1"}],"ips":[{"address":"127.0.0.1/8","interface":0}],"dns":{"nameservers":["10.0.0.53"]}}}"#).expect("conf");
        let r = result(&conf, &call(""), &reply());
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(r["ips"][0]["address"], "127.0.0.1/8", "the previous plugin's address stays");
        assert_eq!(r["ips"][1], json!({"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}));
        assert_eq!(r["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"}));
        assert_eq!(r["dns"]["nameservers"], json!(["127.0.0.11", "10.0.0.53"]));
        let old = Conf::parse(br#"{"cniVersion":"0.4.0","name":"front"}"#).expect("conf");
        assert_eq!(result(&old, &call(""), &reply())["ips"][0]["version"], "4");
        assert_eq!(Conf::parse(br#"{"cniVersion":"9.9.9","name":"x"}"#).expect("conf").check_version().expect_err("version").code, code::INCOMPATIBLE_VERSION);
    }

    #[test]
    fn gc_keeps_the_valid_attachments() {
        let conf = Conf::parse(br#"{"cniVersion":"1.1.0","name":"front","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#).expect("conf");
        assert_eq!(collect_spec(&conf).expect("gc").valid, vec![("a".to_string(), "eth0".to_string())]);
        assert_eq!(collect_spec(&Conf::parse(br#"{"cniVersion":"1.1.0","name":"front"}"#).expect("conf")).expect_err("no list").code, code::INVALID_CONFIG);
    }

    #[test]
    fn weftd_errors_become_cni_errors() {
        assert_eq!(from_status(404, br#"{"message":"no such sandbox: eth0 on front"}"#), CniError::new(code::UNKNOWN_CONTAINER, "no such sandbox: eth0 on front"));
        assert_eq!(from_status(409, br#"{"message":"name web is already in use"}"#).code, code::REFUSED);
        assert_eq!(from_status(500, b"boom").msg, "boom");
    }
}
