//! Docker's plugin protocol (a legacy plugin over a unix socket): weft as Docker's network
//! driver and IPAM driver, so that `docker network create -d weft --ipam-driver weft …` and
//! `docker run --network NET` give Docker's containers weft endpoints. Each call is converted to
//! the engine's actions, as weft's own API and the CNI plugin are; Docker's shapes stay here.
//!
//! - A Docker network is a weft network labelled with Docker's network id (named `-o
//!   weft.name=NAME`, else `docker-` and the id's first 12 characters).
//! - An endpoint is an attachment of runtime `docker`: `Join` makes the pair with its inside
//!   end left in weftd's namespace (which is dockerd's) as `SrcName`, for dockerd to move and
//!   configure; `Leave` and `DeleteEndpoint` detach it, and succeed for endpoints weft does not
//!   know (dockerd sends them at start for endpoints no container holds).
//! - IPAM: a pool's id is its subnet. Addresses come from the weft network's own pool:
//!   `RequestAddress` promises one, the endpoint's `Join` takes it.
//! - Replies: a network driver's errors in `Err`, an IPAM driver's in `Error`.
//!
//! State lives in weft's store (the networks and the attachments), so restarts of dockerd (which
//! replays nothing to a network driver) and of weftd keep everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use weft_engine::actions::{AttachRuntime, CreateNetwork, DetachRuntime, FreeSubnet, ListNetworks, PromiseAddress, PublishSandbox, ReleasePromise, RemoveNetwork};
use weft_engine::{Engine, EngineError};
use weft_model::{AttachSpec, AttachmentRef, NetworkSpec, RuntimeRef};

/// The label that ties a weft network to Docker's network id.
const LABEL: &str = "io.weft.docker.network";
const KIND: &str = "docker";
const GENERIC: &str = "com.docker.network.generic";

/// Docker's endpoint id -> the weft network and the address its IPAM promised.
type Pending = HashMap<String, (String, Option<std::net::Ipv4Addr>)>;

#[derive(Clone)]
struct Plugin {
    engine: Arc<Engine>,
    /// Endpoints created and not joined yet: Docker's endpoint id -> (network, address).
    pending: Arc<Mutex<Pending>>,
}

pub fn router(engine: Arc<Engine>) -> Router {
    let p = Plugin { engine, pending: Arc::default() };
    Router::new()
        .route("/Plugin.Activate", post(|| async { reply(json!({"Implements": ["NetworkDriver", "IpamDriver"]})) }))
        .route("/NetworkDriver.GetCapabilities", post(|| async { reply(json!({"Scope": "local", "ConnectivityScope": "local"})) }))
        .route("/NetworkDriver.CreateNetwork", post(create_network))
        .route("/NetworkDriver.DeleteNetwork", post(delete_network))
        .route("/NetworkDriver.CreateEndpoint", post(create_endpoint))
        .route("/NetworkDriver.DeleteEndpoint", post(delete_endpoint))
        .route("/NetworkDriver.EndpointOperInfo", post(|| async { reply(json!({"Value": {}})) }))
        .route("/NetworkDriver.Join", post(join))
        .route("/NetworkDriver.Leave", post(leave))
        .route("/NetworkDriver.ProgramExternalConnectivity", post(program_external))
        .route("/NetworkDriver.RevokeExternalConnectivity", post(|| async { reply(json!({})) }))
        .route("/NetworkDriver.DiscoverNew", post(|| async { reply(json!({})) }))
        .route("/NetworkDriver.DiscoverDelete", post(|| async { reply(json!({})) }))
        .route("/NetworkDriver.AllocateNetwork", post(|| async { reply(json!({})) }))
        .route("/NetworkDriver.FreeNetwork", post(|| async { reply(json!({})) }))
        .route("/IpamDriver.GetCapabilities", post(|| async { reply(json!({"RequiresMACAddress": false, "RequiresRequestReplay": false})) }))
        .route("/IpamDriver.GetDefaultAddressSpaces", post(|| async { reply(json!({"LocalDefaultAddressSpace": "weft", "GlobalDefaultAddressSpace": "weft-global"})) }))
        .route("/IpamDriver.RequestPool", post(request_pool))
        .route("/IpamDriver.ReleasePool", post(|| async { reply(json!({})) }))
        .route("/IpamDriver.RequestAddress", post(request_address))
        .route("/IpamDriver.ReleaseAddress", post(release_address))
        .with_state(p)
}

fn reply(v: Value) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/vnd.docker.plugins.v1+json")], v.to_string()).into_response()
}

/// The reply to a call: its body, or its error in `field`, `Err` (network driver) or `Error`
/// (IPAM).
fn answer(field: &str, r: Result<Value, String>) -> Response {
    match r {
        Ok(v) => reply(v),
        Err(e) => failed(field, e),
    }
}

/// A failed call: `field` is `Err` (network driver) or `Error` (IPAM).
fn failed(field: &str, msg: impl std::fmt::Display) -> Response {
    reply(json!({ field: msg.to_string() }))
}

fn body(b: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(b).map_err(|e| format!("weft: a request that is not JSON: {e}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The interface `Join` leaves for dockerd: a name per endpoint, within IFNAMSIZ.
fn src_name(endpoint: &str) -> String {
    format!("wd{}", endpoint.chars().take(11).collect::<String>())
}

fn runtime(endpoint: &str) -> Option<RuntimeRef> {
    Some(RuntimeRef { kind: KIND.into(), id: endpoint.to_string() })
}

fn engine_error(e: EngineError) -> String {
    crate::api::one_line(&e)
}

/// An address as Docker gives it: `IP/LEN` or a plain IP.
fn addr(cidr: &str) -> Option<std::net::Ipv4Addr> {
    cidr.split('/').next().and_then(|a| a.parse().ok())
}

/// The weft network of Docker's network `id`.
async fn network_of(p: &Plugin, id: &str) -> Result<Option<weft_model::NetworkRecord>, String> {
    let all = p.engine.execute(ListNetworks {}).await.map_err(engine_error)?;
    Ok(all.into_iter().find(|n| n.labels.get(LABEL).is_some_and(|l| l == id)))
}

async fn create_network(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        let id = s(&v, "NetworkID");
        if !v["IPv6Data"].as_array().is_none_or(|a| a.is_empty()) {
            return Err("weft's Docker driver does not take IPv6 pools yet: create the network without --ipv6".to_string());
        }
        let v4 = &v["IPv4Data"][0];
        let mut options: std::collections::BTreeMap<String, String> = v["Options"][GENERIC].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect();
        let name = options.remove("weft.name").unwrap_or_else(|| format!("docker-{}", id.chars().take(12).collect::<String>()));
        let subnet = s(v4, "Pool").parse().map_err(|_| format!("weft: pool {:?} is not an IPv4 subnet", s(v4, "Pool")))?;
        let aux = v4["AuxAddresses"].as_object().into_iter().flatten().filter_map(|(k, a)| Some((k.clone(), addr(a.as_str()?)?))).collect();
        let spec = NetworkSpec {
            name,
            driver: "bridge".into(),
            subnet: Some(subnet),
            gateway: addr(s(v4, "Gateway")),
            aux_addresses: aux,
            internal: v["Options"]["com.docker.network.internal"].as_bool().unwrap_or(false),
            options,
            labels: [(LABEL.to_string(), id.to_string())].into(),
            ..Default::default()
        };
        p.engine.execute(CreateNetwork { spec }).await.map_err(engine_error)
    }
    .await;
    answer("Err", r.map(|_| json!({})))
}

async fn delete_network(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        match network_of(&p, s(&v, "NetworkID")).await? {
            Some(n) => p.engine.execute(RemoveNetwork { id: n.id }).await.map_err(engine_error),
            None => Ok(()),
        }
    }
    .await;
    answer("Err", r.map(|_| json!({})))
}

async fn create_endpoint(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        let net = network_of(&p, s(&v, "NetworkID")).await?.ok_or_else(|| format!("weft: no network for Docker network {}", s(&v, "NetworkID")))?;
        if !s(&v["Interface"], "AddressIPv6").is_empty() {
            return Err("weft's Docker driver does not take IPv6 addresses yet".to_string());
        }
        let ip = addr(s(&v["Interface"], "Address"));
        p.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(s(&v, "EndpointID").to_string(), (net.name, ip));
        Ok(())
    }
    .await;
    match r {
        // The interface's MAC is the one weft gives it (derived from its address).
        Ok(()) => reply(json!({"Interface": null})),
        Err(e) => failed("Err", e),
    }
}

async fn join(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        let endpoint = s(&v, "EndpointID").to_string();
        let pending = p.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&endpoint);
        let (network, ip) = match pending {
            Some(x) => x,
            None => (network_of(&p, s(&v, "NetworkID")).await?.ok_or("weft: Join of an endpoint it never created")?.name, None),
        };
        let spec = AttachSpec {
            network,
            runtime: runtime(&endpoint),
            name: None,
            netns: s(&v, "SandboxKey").to_string(),
            pid: None,
            ifname: src_name(&endpoint),
            ip_address: ip,
            mac_address: None,
            aliases: Vec::new(),
            publish: Vec::new(),
            host_end_only: true,
        };
        p.engine.execute(AttachRuntime { spec }).await.map_err(engine_error)
    }
    .await;
    match r {
        Ok(a) => reply(json!({
            "InterfaceName": {"SrcName": a.endpoint.ifname, "DstPrefix": "eth"},
            "Gateway": a.endpoint.gateway.map(|g| g.to_string()).unwrap_or_default(),
            "DisableGatewayService": false,
        })),
        Err(e) => failed("Err", e),
    }
}

async fn detach(p: &Plugin, v: &Value) -> Result<(), String> {
    let endpoint = s(v, "EndpointID");
    let at = AttachmentRef { network: String::new(), runtime: runtime(endpoint), ifname: src_name(endpoint) };
    p.engine.execute(DetachRuntime { at }).await.map_err(engine_error)
}

async fn leave(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async { detach(&p, &body(&b)?).await }.await;
    answer("Err", r.map(|()| json!({})))
}

async fn delete_endpoint(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        p.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(s(&v, "EndpointID"));
        detach(&p, &v).await
    }
    .await;
    answer("Err", r.map(|_| json!({})))
}

/// `-p`: `com.docker.network.portmap`, `{Proto: 6|17|132, IP, Port, HostIP, HostPort, HostPortEnd}`.
async fn program_external(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        let mut ports = Vec::new();
        for m in v["Options"]["com.docker.network.portmap"].as_array().into_iter().flatten() {
            let proto = match m["Proto"].as_u64() {
                Some(17) => "udp",
                Some(132) => "sctp",
                _ => "tcp",
            };
            let (port, host, end) = (m["Port"].as_u64().unwrap_or(0), m["HostPort"].as_u64().unwrap_or(0), m["HostPortEnd"].as_u64().unwrap_or(0));
            let hosts = match (host, end) {
                (0, _) => String::new(),
                (h, e) if e > h => format!("{h}-{e}"),
                (h, _) => h.to_string(),
            };
            let spec = match s(m, "HostIP") {
                "" => format!("{hosts}:{port}/{proto}"),
                ip => format!("{ip}:{hosts}:{port}/{proto}"),
            };
            ports.push(weft_model::parse_publish(&spec).map_err(|e| e.to_string())?);
        }
        let key: String = s(&v, "EndpointID").chars().take(12).collect();
        p.engine.execute(PublishSandbox { key, ports }).await.map_err(engine_error)
    }
    .await;
    answer("Err", r.map(|_| json!({})))
}

async fn request_pool(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        if v["V6"].as_bool() == Some(true) {
            return Err("weft's IPAM driver does not take IPv6 pools yet".to_string());
        }
        match s(&v, "Pool") {
            "" => p.engine.execute(FreeSubnet {}).await.map_err(engine_error),
            pool => pool.parse::<ipnet::Ipv4Net>().map(|n| n.trunc()).map_err(|_| format!("weft: pool {pool:?} is not an IPv4 subnet")),
        }
    }
    .await;
    match r {
        Ok(pool) => reply(json!({"PoolID": pool.to_string(), "Pool": pool.to_string(), "Data": {}})),
        Err(e) => failed("Error", e),
    }
}

async fn request_address(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        let pool: ipnet::Ipv4Net = s(&v, "PoolID").parse().map_err(|_| format!("weft: unknown pool {:?}", s(&v, "PoolID")))?;
        let asked = addr(s(&v, "Address"));
        // The gateway is the network's, made with it: only named here.
        if v["Options"]["RequestAddressType"] == "com.docker.network.gateway" {
            return asked.or_else(|| pool.hosts().next()).map(|g| (g, pool.prefix_len())).ok_or_else(|| format!("weft: pool {pool} has no host address"));
        }
        let ip = p.engine.execute(PromiseAddress { subnet: pool, ip: asked }).await.map_err(engine_error)?;
        Ok((ip, pool.prefix_len()))
    }
    .await;
    match r {
        Ok((ip, len)) => reply(json!({"Address": format!("{ip}/{len}"), "Data": {}})),
        Err(e) => failed("Error", e),
    }
}

async fn release_address(State(p): State<Plugin>, b: Bytes) -> Response {
    let r = async {
        let v = body(&b)?;
        let (Ok(subnet), Some(ip)) = (s(&v, "PoolID").parse(), addr(s(&v, "Address"))) else { return Ok(()) };
        p.engine.execute(ReleasePromise { subnet, ip }).await.map_err(engine_error)
    }
    .await;
    answer("Error", r.map(|_| json!({})))
}
