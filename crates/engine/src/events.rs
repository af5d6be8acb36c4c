//! The event stream (`weft events`, `GET /events`): what committed, told as Docker tells it
//! (container create, start, die, destroy; network create, destroy, connect, disconnect; link
//! create, destroy), each with the store revision it committed at. It is read from the store's
//! watch of this host's keys and of the global networks, never from the actions: an event is a
//! committed change, whichever action, reconcile or other host made it, and events come in
//! revision order per prefix. A follower keeps the last committed value of each key to tell what
//! changed; after lost events it rebuilds that from a fresh read without inventing events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use weft_model::{ContainerRecord, EndpointRecord, NetworkRecord, SandboxRecord, Status};
use weft_store::Event;

use crate::follow::{follow, Followed};
use crate::{Engine, Result};

/// How many events a slow subscriber may fall behind before it misses some.
const BACKLOG: usize = 4096;

/// One committed change, as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEvent {
    /// The store revision the change committed at.
    pub revision: u64,
    /// `container`, `network` or `link`.
    pub kind: &'static str,
    pub action: &'static str,
    /// The container's, network's or link's id.
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// When this daemon saw it (nanoseconds since the epoch).
    pub time_nano: u128,
}

impl StateEvent {
    /// Docker's shape of an event (`/events`), with the revision beside it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": (self.time_nano / 1_000_000_000) as u64,
            "timeNano": self.time_nano as u64,
            "Revision": self.revision,
        })
    }
}

pub(crate) struct Events {
    tx: tokio::sync::broadcast::Sender<StateEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self { tx: tokio::sync::broadcast::channel(BACKLOG).0 }
    }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Where `diff` tells its events: (kind, action, id, attributes).
type Emit<'a> = &'a mut dyn FnMut(&'static str, &'static str, String, BTreeMap<String, String>);

/// A sandbox's endpoints that came and went: network connect and disconnect.
fn endpoint_events(owner: &str, old: &[EndpointRecord], new: &[EndpointRecord], emit: Emit<'_>) {
    for e in new.iter().filter(|e| !old.iter().any(|o| o.endpoint_id == e.endpoint_id)) {
        emit("network", "connect", e.network_id.clone(), attrs(&[("container", owner), ("name", &e.network_name), ("ip", &e.ip.to_string())]));
    }
    for e in old.iter().filter(|o| !new.iter().any(|e| e.endpoint_id == o.endpoint_id)) {
        emit("network", "disconnect", e.network_id.clone(), attrs(&[("container", owner), ("name", &e.network_name)]));
    }
}

/// What a change of one key means. `key` is the part after the host's or the shared prefix
/// (`containers/<id>`, `networks/<id>`, …).
fn diff(key: &str, old: Option<&[u8]>, new: Option<&[u8]>, emit: Emit<'_>) {
    let Some((kind, id)) = key.split_once('/') else { return };
    match kind {
        "containers" => {
            let old: Option<ContainerRecord> = old.and_then(|v| serde_json::from_slice(v).ok());
            let new: Option<ContainerRecord> = new.and_then(|v| serde_json::from_slice(v).ok());
            let name = new.as_ref().or(old.as_ref()).map(|c| c.name.clone()).unwrap_or_default();
            let me = attrs(&[("name", &name)]);
            let running = |c: &Option<ContainerRecord>| c.as_ref().is_some_and(|c| c.state.status == Status::Running);
            if old.is_none() && new.is_some() {
                emit("container", "create", id.to_string(), me.clone());
            }
            if !running(&old) && running(&new) {
                emit("container", "start", id.to_string(), me.clone());
            }
            let eps = |c: &Option<ContainerRecord>| c.as_ref().map_or(Vec::new(), |c| c.sandbox.endpoints.clone());
            endpoint_events(id, &eps(&old), &eps(&new), emit);
            if running(&old) && !running(&new) {
                let code = new.as_ref().map(|c| c.state.exit_code.to_string()).unwrap_or_default();
                emit("container", "die", id.to_string(), attrs(&[("name", &name), ("exitCode", &code)]));
            }
            if old.is_some() && new.is_none() {
                emit("container", "destroy", id.to_string(), me);
            }
        }
        "sandboxes" => {
            let eps = |v: Option<&[u8]>| v.and_then(|v| serde_json::from_slice::<SandboxRecord>(v).ok()).map(|s| s.sandbox.endpoints).unwrap_or_default();
            endpoint_events(&format!("sandbox/{id}"), &eps(old), &eps(new), emit);
        }
        "networks" => {
            let rec = |v: Option<&[u8]>| v.and_then(|v| serde_json::from_slice::<NetworkRecord>(v).ok());
            match (rec(old), rec(new)) {
                (None, Some(n)) => emit("network", "create", id.to_string(), attrs(&[("name", &n.name), ("type", n.driver.name()), ("scope", n.scope.name())])),
                (Some(n), None) => emit("network", "destroy", id.to_string(), attrs(&[("name", &n.name), ("type", n.driver.name()), ("scope", n.scope.name())])),
                _ => {}
            }
        }
        "p2p" => match (old, new) {
            (None, Some(_)) => emit("link", "create", id.to_string(), BTreeMap::new()),
            (Some(_), None) => emit("link", "destroy", id.to_string(), BTreeMap::new()),
            _ => {}
        },
        _ => {}
    }
}

impl Engine {
    /// Subscribes to the event stream (from now on).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StateEvent> {
        self.events.tx.subscribe()
    }

    /// Follows this host's keys and the global networks into the event stream.
    pub(crate) async fn follow_events(self: &Arc<Self>) -> Result<()> {
        let last: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        // (prefix followed, the part of a key before what `diff` reads)
        let own = self.keys.own().to_string();
        for (prefix, p) in [(own.clone(), own), (self.keys.networks(weft_model::Scope::Global), "/weft/".to_string())] {
            let (eng, last) = (self.clone(), last.clone());
            let watched = prefix.clone();
            follow(self.store.clone(), prefix, move |f| {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                match f {
                    Followed::Reset(kvs, _) => {
                        last.retain(|k, _| !k.starts_with(&watched));
                        last.extend(kvs.into_iter().map(|kv| (kv.key, kv.value)));
                    }
                    Followed::Change(ev) => {
                        let (key, revision) = (ev.key().to_string(), ev.revision());
                        let old = match &ev {
                            Event::Put(kv) => last.insert(key.clone(), kv.value.clone()),
                            Event::Delete { .. } => last.remove(&key),
                        };
                        let new = match &ev {
                            Event::Put(kv) => Some(kv.value.as_slice()),
                            Event::Delete { .. } => None,
                        };
                        let rest = key.strip_prefix(&p).unwrap_or_default();
                        let time_nano = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                        diff(rest, old.as_deref(), new, &mut |kind, action, id, attributes| {
                            let _ = eng.events.tx.send(StateEvent { revision, kind, action, id, attributes, time_nano });
                        });
                    }
                }
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::{ContainerState, RunSpec, Sandbox};

    fn endpoint(id: &str, net: &str) -> EndpointRecord {
        EndpointRecord {
            endpoint_id: id.into(),
            network_id: format!("{net}-id"),
            network_name: net.into(),
            ifname: "eth0".into(),
            host_ifname: String::new(),
            ip: "10.0.0.2".parse().expect("ip"),
            prefix_len: 24,
            gateway: None,
            mac: "02:42:0a:00:00:02".into(),
            aliases: Vec::new(),
            ip6: None,
            prefix6: 0,
            gateway6: None,
        }
    }

    fn container(status: Status, code: i32, endpoints: Vec<EndpointRecord>) -> Vec<u8> {
        let rec = ContainerRecord {
            id: "c1".into(),
            name: "web".into(),
            created: 0,
            spec: RunSpec::default(),
            state: ContainerState { status, exit_code: code, ..ContainerState::default() },
            sandbox: Sandbox { netns: None, endpoints, ports: Vec::new() },
            log_path: String::new(),
            links: Vec::new(),
            hostname: String::new(),
            env: Vec::new(),
        };
        serde_json::to_vec(&rec).expect("encode")
    }

    fn events(key: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> Vec<String> {
        let mut out = Vec::new();
        diff(key, old, new, &mut |kind, action, id, attrs| {
            let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(format!("{kind} {action} {id} {}", attrs.join(",")));
        });
        out
    }

    #[test]
    fn a_container_life_is_told_by_its_record_changes() {
        let running = container(Status::Running, 0, vec![endpoint("e1", "front")]);
        assert_eq!(
            events("containers/c1", None, Some(&running)),
            ["container create c1 name=web", "container start c1 name=web", "network connect front-id container=c1,ip=10.0.0.2,name=front"]
        );
        let two = container(Status::Running, 0, vec![endpoint("e1", "front"), endpoint("e2", "back")]);
        assert_eq!(events("containers/c1", Some(&running), Some(&two)), ["network connect back-id container=c1,ip=10.0.0.2,name=back"]);
        assert_eq!(events("containers/c1", Some(&two), Some(&two)), Vec::<String>::new(), "a put that changes nothing tells nothing");
        let exited = container(Status::Exited, 137, Vec::new());
        assert_eq!(
            events("containers/c1", Some(&two), Some(&exited)),
            ["network disconnect front-id container=c1,name=front", "network disconnect back-id container=c1,name=back", "container die c1 exitCode=137,name=web"]
        );
        assert_eq!(events("containers/c1", Some(&exited), None), ["container destroy c1 name=web"]);
        // Removed while running (rm -f of an auto-removed container): it dies, then goes.
        assert_eq!(events("containers/c1", Some(&running), None), ["network disconnect front-id container=c1,name=front", "container die c1 name=web", "container destroy c1 name=web"]);
    }

    #[test]
    fn networks_and_links_come_and_go() {
        let net = serde_json::json!({
            "id": "n1", "name": "front", "driver": "overlay", "bridge": "br-n1", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1",
            "ip_range": null, "mtu": 1450, "managed_bridge": true, "icc": true, "masquerade": true, "internal": false, "created": 0,
            "options": {}, "scope": "global"
        })
        .to_string();
        assert_eq!(events("networks/n1", None, Some(net.as_bytes())), ["network create n1 name=front,scope=global,type=overlay"]);
        assert_eq!(events("networks/n1", Some(net.as_bytes()), Some(net.as_bytes())), Vec::<String>::new());
        assert_eq!(events("networks/n1", Some(net.as_bytes()), None), ["network destroy n1 name=front,scope=global,type=overlay"]);
        assert_eq!(events("p2p/l1", None, Some(b"{}")), ["link create l1 "]);
        assert_eq!(events("p2p/l1", Some(b"{}"), None), ["link destroy l1 "]);
        assert_eq!(events("addresses/n1/10.0.0.2", None, Some(b"{}")), Vec::<String>::new(), "claims are no events");
    }
}
