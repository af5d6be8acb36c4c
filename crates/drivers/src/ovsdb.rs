//! A small synchronous client of ovsdb-server (RFC 7047: JSON-RPC over its Unix socket), enough
//! for what `ovs-vsctl add-br / add-port / del-port / del-br` do, each as one `transact`.
//!
//! (The crates of the field, `ovsdb` 0.0.6 and `ovsdb-client` 0.0.1, are early, async-only and
//! pull a JSON-RPC framework; the driver's steps are blocking and need four transactions:
//! see `docs/dependencies.md`.)

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// ovsdb-server's socket.
#[derive(Debug, Clone)]
pub struct Ovsdb {
    pub socket: PathBuf,
}

/// An OVSDB set of one named row.
fn named(name: &str) -> Value {
    json!(["set", [["named-uuid", name]]])
}

/// An OVSDB map.
fn map(pairs: &[(&str, &str)]) -> Value {
    json!(["map", pairs.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()])
}

/// Fails the transaction unless bridge `name` exists.
fn bridge_exists(name: &str) -> Value {
    json!({"op": "wait", "table": "Bridge", "timeout": 0, "where": [["name", "==", name]], "columns": ["name"], "until": "==", "rows": [{"name": name}]})
}

/// `ovs-vsctl add-br NAME -- set bridge NAME datapath_type=DP` (with its internal interface).
pub fn add_bridge_ops(name: &str, datapath: &str) -> Vec<Value> {
    vec![
        json!({"op": "insert", "table": "Interface", "row": {"name": name, "type": "internal"}, "uuid-name": "iface"}),
        json!({"op": "insert", "table": "Port", "row": {"name": name, "interfaces": named("iface")}, "uuid-name": "port"}),
        json!({"op": "insert", "table": "Bridge", "row": {"name": name, "ports": named("port"), "datapath_type": datapath}, "uuid-name": "bridge"}),
        json!({"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["bridges", "insert", named("bridge")]]}),
    ]
}

/// `ovs-vsctl add-port BRIDGE PORT -- set interface PORT external-ids:…`: the port with its
/// interface, only if the bridge exists.
pub fn add_port_ops(bridge: &str, port: &str, external_ids: &[(&str, &str)]) -> Vec<Value> {
    vec![
        bridge_exists(bridge),
        json!({"op": "insert", "table": "Interface", "row": {"name": port, "external_ids": map(external_ids)}, "uuid-name": "iface"}),
        json!({"op": "insert", "table": "Port", "row": {"name": port, "interfaces": named("iface")}, "uuid-name": "port"}),
        json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]], "mutations": [["ports", "insert", named("port")]]}),
    ]
}

/// `ovs-vsctl add-port BRIDGE NAME -- set interface NAME type=TYPE options:remote_ip=IP` for
/// each tunnel, in one transaction, only if the bridge exists.
pub fn add_tunnels_ops(bridge: &str, tunnels: &[(String, &str, std::net::Ipv4Addr)]) -> Vec<Value> {
    let mut ops = vec![bridge_exists(bridge)];
    for (i, (name, kind, remote)) in tunnels.iter().enumerate() {
        let remote = remote.to_string();
        ops.push(json!({"op": "insert", "table": "Interface", "row": {"name": name, "type": kind, "options": map(&[("remote_ip", remote.as_str())])}, "uuid-name": format!("iface{i}")}));
        ops.push(json!({"op": "insert", "table": "Port", "row": {"name": name, "interfaces": named(&format!("iface{i}"))}, "uuid-name": format!("port{i}")}));
        ops.push(json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]], "mutations": [["ports", "insert", named(&format!("port{i}"))]]}));
    }
    ops
}

/// The rows of `table` named `name` (their `_uuid`s), as `select` answers.
fn uuids(result: &Value) -> Vec<Value> {
    result["rows"].as_array().into_iter().flatten().map(|r| r["_uuid"].clone()).collect()
}

impl Ovsdb {
    pub fn new(socket: &Path) -> Self {
        Self { socket: socket.to_path_buf() }
    }

    fn err(&self, what: &str) -> weft_kernel::KernelError {
        weft_kernel::KernelError::Path { op: "ovsdb transaction", path: self.socket.display().to_string(), source: std::io::Error::other(what.to_string()) }
    }

    /// One `transact` on the `Open_vSwitch` database: the operations' results, or the first
    /// error the server gave (the server applies all or none).
    pub fn transact(&self, ops: Vec<Value>) -> weft_kernel::Result<Vec<Value>> {
        let io = |source: std::io::Error| weft_kernel::KernelError::Path { op: "talk to ovsdb-server at", path: self.socket.display().to_string(), source };
        let mut s = UnixStream::connect(&self.socket).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
        let mut params = vec![json!("Open_vSwitch")];
        params.extend(ops);
        let req = json!({"method": "transact", "params": params, "id": 1});
        s.write_all(req.to_string().as_bytes()).map_err(io)?;
        let mut answers = serde_json::Deserializer::from_reader(s.try_clone().map_err(io)?).into_iter::<Value>();
        loop {
            let msg = match answers.next() {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(io(std::io::Error::other(e))),
                None => return Err(self.err("ovsdb-server closed the connection")),
            };
            // The server's inactivity probe.
            if msg["method"] == "echo" {
                let reply = json!({"result": msg["params"], "error": null, "id": msg["id"]});
                s.write_all(reply.to_string().as_bytes()).map_err(io)?;
                continue;
            }
            if msg["id"] != 1 {
                continue;
            }
            if !msg["error"].is_null() {
                return Err(self.err(&msg["error"].to_string()));
            }
            let results = msg["result"].as_array().cloned().unwrap_or_default();
            if let Some(e) = results.iter().find(|r| r.get("error").is_some_and(|e| !e.is_null())) {
                let details = e.get("details").and_then(Value::as_str).unwrap_or_default();
                return Err(self.err(format!("{} {details}", e["error"].as_str().unwrap_or("error")).trim()));
            }
            return Ok(results);
        }
    }

    /// Whether bridge `name` exists.
    pub fn has_bridge(&self, name: &str) -> weft_kernel::Result<bool> {
        let r = self.transact(vec![json!({"op": "select", "table": "Bridge", "where": [["name", "==", name]], "columns": ["_uuid"]})])?;
        Ok(r.first().is_some_and(|r| !uuids(r).is_empty()))
    }

    /// Bridge `name`'s `datapath_type` (empty: the default, `system`).
    pub fn datapath(&self, name: &str) -> weft_kernel::Result<String> {
        let r = self.transact(vec![json!({"op": "select", "table": "Bridge", "where": [["name", "==", name]], "columns": ["datapath_type"]})])?;
        Ok(r.first().and_then(|r| r["rows"][0]["datapath_type"].as_str()).unwrap_or_default().to_string())
    }

    /// `ovs-vsctl add-br`; an `Open_vSwitch` row is made first in an empty database.
    pub fn add_bridge(&self, name: &str, datapath: &str) -> weft_kernel::Result<()> {
        let root = self.transact(vec![json!({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["_uuid"]})])?;
        let mut ops = Vec::new();
        if root.first().is_none_or(|r| uuids(r).is_empty()) {
            ops.push(json!({"op": "insert", "table": "Open_vSwitch", "row": {}}));
        }
        ops.extend(add_bridge_ops(name, datapath));
        self.transact(ops).map(drop)
    }

    /// `ovs-vsctl --if-exists del-br NAME` (its ports go with it).
    pub fn del_bridge(&self, name: &str) -> weft_kernel::Result<()> {
        let r = self.transact(vec![json!({"op": "select", "table": "Bridge", "where": [["name", "==", name]], "columns": ["_uuid"]})])?;
        let found = r.first().map(uuids).unwrap_or_default();
        if found.is_empty() {
            return Ok(());
        }
        self.transact(vec![json!({"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["bridges", "delete", ["set", found]]]})]).map(drop)
    }

    /// `ovs-vsctl add-port` with the interface's external ids, in one transaction.
    pub fn add_port(&self, bridge: &str, port: &str, external_ids: &[(&str, &str)]) -> weft_kernel::Result<()> {
        self.transact(add_port_ops(bridge, port, external_ids)).map(drop)
    }

    /// Tunnel ports (name, type, remote) in one transaction.
    pub fn add_tunnels(&self, bridge: &str, tunnels: &[(String, &str, std::net::Ipv4Addr)]) -> weft_kernel::Result<()> {
        self.transact(add_tunnels_ops(bridge, tunnels)).map(drop)
    }

    /// The names of bridge `bridge`'s ports, with their uuids.
    pub fn ports(&self, bridge: &str) -> weft_kernel::Result<Vec<(String, Value)>> {
        let r = self.transact(vec![
            json!({"op": "select", "table": "Bridge", "where": [["name", "==", bridge]], "columns": ["ports"]}),
            json!({"op": "select", "table": "Port", "where": [], "columns": ["_uuid", "name"]}),
        ])?;
        let on_bridge: Vec<Value> = match &r[0]["rows"][0]["ports"] {
            Value::Array(a) if a.first() == Some(&json!("set")) => a[1].as_array().cloned().unwrap_or_default(),
            Value::Array(a) if a.first() == Some(&json!("uuid")) => vec![Value::Array(a.clone())],
            _ => Vec::new(),
        };
        Ok(r[1]["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| on_bridge.contains(&p["_uuid"]))
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["_uuid"].clone())))
            .collect())
    }

    /// `ovs-vsctl --if-exists del-port BRIDGE PORT…` for the ports of `names` that exist.
    pub fn del_ports(&self, bridge: &str, names: &[&str]) -> weft_kernel::Result<()> {
        let gone: Vec<Value> = self.ports(bridge)?.into_iter().filter(|(n, _)| names.contains(&n.as_str())).map(|(_, u)| u).collect();
        if gone.is_empty() {
            return Ok(());
        }
        self.transact(vec![json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]], "mutations": [["ports", "delete", ["set", gone]]]})]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_one_transaction_that_needs_its_bridge() {
        let ops = add_port_ops("br-int", "veth1234567", &[("iface-id", "e1"), ("vm-uuid", "c1")]);
        assert_eq!(ops[0]["op"], "wait", "the bridge must exist");
        assert_eq!(ops[1]["row"]["external_ids"], json!(["map", [["iface-id", "e1"], ["vm-uuid", "c1"]]]));
        assert_eq!(ops[2]["row"]["interfaces"], json!(["set", [["named-uuid", "iface"]]]));
        assert_eq!(ops[3]["mutations"][0], json!(["ports", "insert", ["set", [["named-uuid", "port"]]]]));
        let br = add_bridge_ops("ob-1", "netdev");
        assert_eq!(br[0]["row"]["type"], "internal");
        assert_eq!(br[2]["row"]["datapath_type"], "netdev");
        assert_eq!(br[3]["table"], "Open_vSwitch");
    }
}
