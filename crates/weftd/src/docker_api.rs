//! Docker's Engine API for networks and the read side of containers, under `/vX.YY/` as Docker's
//! clients call it (the docker CLI, docker-py, bollard): `_ping`, `version`, `info`, the networks
//! API, `containers/json`, `containers/{id}/json` and `events`. Each route converts Docker's shape
//! (`weft_model::docker`) to the action weft's own route runs; routes weft does not serve
//! (images, build, volumes, …) answer 501 naming weft. Unprefixed paths stay weft's own API
//! (`docs/api.md` says which is which).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use weft_engine::actions::{Connect, CreateNetwork, Disconnect, InspectContainer, InspectNetwork, ListContainers, ListNetworks, PruneNetworks, RemoveNetwork};
use weft_engine::Engine;
use weft_model::docker::{self, NetworkConnect, NetworkCreate, NetworkCreated, NetworkDisconnect, API_VERSION, MIN_API_VERSION};
use weft_model::{container_inspect, ContainerRecord, PruneReply, Status};

use crate::api::ApiError;

type Eng = State<Arc<Engine>>;
type Q = Query<HashMap<String, String>>;
type R<T> = Result<T, ApiError>;

/// Docker's routes, each under `/{version}/`.
pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/{v}/_ping", get(ping))
        .route("/{v}/version", get(version))
        .route("/version", get(version_unprefixed))
        .route("/{v}/info", get(info))
        .route("/info", get(info_unprefixed))
        .route("/{v}/networks", get(networks))
        .route("/{v}/networks/create", post(network_create))
        .route("/{v}/networks/prune", post(network_prune))
        .route("/{v}/networks/{id}", get(network).delete(network_remove))
        .route("/{v}/networks/{id}/connect", post(network_connect))
        .route("/{v}/networks/{id}/disconnect", post(network_disconnect))
        .route("/{v}/containers/json", get(containers))
        .route("/{v}/containers/{id}/json", get(container))
        .route("/{v}/events", get(events))
}

/// `/_ping` with Docker's headers (also unprefixed, where clients negotiate the version).
pub async fn ping_unprefixed() -> Response {
    with_headers("OK".into_response())
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(HeaderName::from_static("api-version"), HeaderValue::from_static(API_VERSION));
    h.insert(HeaderName::from_static("ostype"), HeaderValue::from_static("linux"));
    h.insert(HeaderName::from_static("docker-experimental"), HeaderValue::from_static("false"));
    h.insert(HeaderName::from_static("server"), HeaderValue::from_static(concat!("weft/", env!("CARGO_PKG_VERSION"))));
    r
}

/// A `/vX.YY` prefix Docker's clients send: versions weft speaks pass; another version is
/// Docker's 400; anything else is not a Docker path (404).
fn check(v: &str) -> R<()> {
    let parsed = v.strip_prefix('v').and_then(|n| n.split_once('.')).and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some(asked) = parsed else { return Err(ApiError::new(StatusCode::NOT_FOUND, "page not found")) };
    let num = |s: &str| s.split_once('.').map(|(a, b)| (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0))).unwrap_or_default();
    if asked < num(MIN_API_VERSION) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("client version {} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version", &v[1..])));
    }
    if asked > num(API_VERSION) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("client version {} is too new. Maximum supported API version is {API_VERSION}", &v[1..])));
    }
    Ok(())
}

/// What weftd does not serve under a Docker prefix: 501, naming weft (else weft's 404).
pub async fn not_served(uri: Uri) -> ApiError {
    let path = uri.path();
    let docker = path.strip_prefix("/v").and_then(|r| r.split_once('/')).is_some_and(|(v, _)| v.split_once('.').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok()));
    match docker {
        true => ApiError::new(StatusCode::NOT_IMPLEMENTED, format!("weft does not serve {path}: weftd speaks Docker's API for networks and the read side of containers only (docs/api.md)")),
        false => ApiError::new(StatusCode::NOT_FOUND, "page not found"),
    }
}

async fn ping(Path(v): Path<String>) -> R<Response> {
    check(&v)?;
    Ok(ping_unprefixed().await)
}

fn version_body() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let v = env!("CARGO_PKG_VERSION");
    json!({
        "Platform": {"Name": "weft"},
        "Components": [{"Name": "weft", "Version": v, "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": std::env::consts::ARCH, "KernelVersion": kernel}}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

async fn version(Path(v): Path<String>) -> R<Response> {
    check(&v)?;
    Ok(with_headers(Json(version_body()).into_response()))
}

async fn version_unprefixed() -> Response {
    with_headers(Json(version_body()).into_response())
}

async fn info_body(e: &Arc<Engine>) -> R<Value> {
    let cs = e.execute(ListContainers {}).await?;
    let running = cs.iter().filter(|c| c.state.status == Status::Running).count();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())).unwrap_or(0) * 1024;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    Ok(json!({
        "ID": host,
        "Name": host,
        "Containers": cs.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": cs.len() - running,
        "Images": 0,
        "Driver": "weft",
        "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": ["bridge", "macvlan", "ovs", "overlay", "host", "null"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "KernelVersion": kernel,
        "OperatingSystem": "weft",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"weft": {"path": "weft-init"}},
        "DefaultRuntime": "weft",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "SecurityOptions": ["name=seccomp,profile=default"],
        "Warnings": null,
    }))
}

async fn info(State(e): Eng, Path(v): Path<String>) -> R<Json<Value>> {
    check(&v)?;
    Ok(Json(info_body(&e).await?))
}

async fn info_unprefixed(State(e): Eng) -> R<Json<Value>> {
    Ok(Json(info_body(&e).await?))
}

fn filters(q: &HashMap<String, String>) -> R<std::collections::BTreeMap<String, Vec<String>>> {
    docker::parse_filters(q.get("filters").map(String::as_str)).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

fn body<T: serde::de::DeserializeOwned + Default>(b: &Bytes) -> R<T> {
    if b.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| bad(format!("invalid JSON: {e}")))
}

async fn containers_of(e: &Arc<Engine>) -> R<Vec<ContainerRecord>> {
    Ok(e.execute(ListContainers {}).await?)
}

async fn networks(State(e): Eng, Path(v): Path<String>, Query(q): Q) -> R<Json<Vec<Value>>> {
    check(&v)?;
    let f = filters(&q)?;
    let cs = containers_of(&e).await?;
    let refs: Vec<_> = cs.iter().collect();
    let mut out = Vec::new();
    for n in e.execute(ListNetworks {}).await? {
        if docker::network_matches(&n, &f).map_err(bad)? {
            out.push(crate::api::inspect_network(&e, &n, &refs));
        }
    }
    Ok(Json(out))
}

async fn network(State(e): Eng, Path((v, id)): Path<(String, String)>) -> R<Json<Value>> {
    check(&v)?;
    let n = e.execute(InspectNetwork { id }).await?;
    let cs = containers_of(&e).await?;
    let refs: Vec<_> = cs.iter().collect();
    Ok(Json(crate::api::inspect_network(&e, &n, &refs)))
}

async fn network_create(State(e): Eng, Path(v): Path<String>, b: Bytes) -> R<(StatusCode, Json<NetworkCreated>)> {
    check(&v)?;
    let spec = body::<NetworkCreate>(&b)?.into_spec().map_err(bad)?;
    let rec = e.execute(CreateNetwork { spec }).await?;
    Ok((StatusCode::CREATED, Json(NetworkCreated { id: rec.id, warning: String::new() })))
}

async fn network_remove(State(e): Eng, Path((v, id)): Path<(String, String)>) -> R<StatusCode> {
    check(&v)?;
    e.execute(RemoveNetwork { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn network_connect(State(e): Eng, Path((v, network)): Path<(String, String)>, b: Bytes) -> R<StatusCode> {
    check(&v)?;
    let spec = body::<NetworkConnect>(&b)?.into_spec().map_err(bad)?;
    e.execute(Connect { network, spec }).await?;
    Ok(StatusCode::OK)
}

async fn network_disconnect(State(e): Eng, Path((v, network)): Path<(String, String)>, b: Bytes) -> R<StatusCode> {
    check(&v)?;
    let spec = body::<NetworkDisconnect>(&b)?.into_spec();
    e.execute(Disconnect { network, spec }).await?;
    Ok(StatusCode::OK)
}

/// `filters`: `label` (`KEY`, `KEY=VALUE`) and `until` (a Unix time or RFC 3339 date: networks
/// created before it).
async fn network_prune(State(e): Eng, Path(v): Path<String>, Query(q): Q) -> R<Json<PruneReply>> {
    check(&v)?;
    let f = filters(&q)?;
    let mut only = None;
    if !f.is_empty() {
        let mut ids = Vec::new();
        let until = match f.get("until").and_then(|u| u.first()) {
            Some(u) => Some(until_secs(u).ok_or_else(|| bad(format!("invalid until {u:?}: expected a Unix time or an RFC 3339 date")))?),
            None => None,
        };
        for k in f.keys() {
            if k != "label" && k != "until" {
                return Err(bad(format!("invalid filter '{k}'")));
            }
        }
        for n in e.execute(ListNetworks {}).await? {
            let old = until.is_none_or(|t| n.created < t);
            if old && docker::labels_match(&n.labels, f.get("label").map(Vec::as_slice).unwrap_or_default()) {
                ids.push(n.id);
            }
        }
        only = Some(ids);
    }
    let networks_deleted = e.execute(PruneNetworks { only }).await?;
    Ok(Json(PruneReply { networks_deleted }))
}

/// `until` as Unix seconds: a number, or an RFC 3339 date (`2026-12-04T10:00:00Z`).
fn until_secs(u: &str) -> Option<u64> {
    if let Ok(n) = u.split('.').next().unwrap_or(u).parse::<u64>() {
        return Some(n);
    }
    weft_model::parse_rfc3339(u)
}

/// A container's `State` in `docker ps`'s shape.
fn state(c: &ContainerRecord) -> &'static str {
    match c.state.status {
        Status::Running => "running",
        Status::Exited => "exited",
        _ => "created",
    }
}

/// A container in `docker ps`'s shape.
fn summary(c: &ContainerRecord) -> Value {
    let mut networks = serde_json::Map::new();
    for e in &c.sandbox.endpoints {
        networks.insert(
            e.network_name.clone(),
            json!({"NetworkID": e.network_id, "EndpointID": e.endpoint_id, "Gateway": e.gateway.map(|g| g.to_string()).unwrap_or_default(), "IPAddress": e.ip.to_string(), "IPPrefixLen": e.prefix_len, "MacAddress": e.mac, "Aliases": e.aliases}),
        );
    }
    let ports: Vec<Value> = c
        .sandbox
        .ports
        .iter()
        .map(|p| json!({"IP": p.host_ip.to_string(), "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto.to_string()}))
        .collect();
    let status = match c.state.status {
        Status::Running => "Up".to_string(),
        Status::Exited => format!("Exited ({})", c.state.exit_code),
        s => s.to_string(),
    };
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.spec.rootfs,
        "ImageID": "",
        "Command": c.spec.cmd.join(" "),
        "Created": c.created,
        "Ports": ports,
        "Labels": {},
        "State": state(c),
        "Status": status,
        "HostConfig": {"NetworkMode": c.network_mode().to_string()},
        "NetworkSettings": {"Networks": networks},
        "Mounts": [],
    })
}

/// `?all=1`, `filters`: `id` (a prefix), `name` (a part), `status`, `network`.
async fn containers(State(e): Eng, Path(v): Path<String>, Query(q): Q) -> R<Json<Vec<Value>>> {
    check(&v)?;
    let all = q.get("all").is_some_and(|a| a == "1" || a == "true");
    let f = filters(&q)?;
    for k in f.keys() {
        if !["id", "name", "status", "network"].contains(&k.as_str()) {
            return Err(bad(format!("invalid filter '{k}'")));
        }
    }
    let keep = |c: &ContainerRecord| {
        let any = |k: &str, ok: &dyn Fn(&str) -> bool| f.get(k).is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| ok(v)));
        (all || c.state.status == Status::Running || f.contains_key("status"))
            && any("id", &|v| c.id.starts_with(v))
            && any("name", &|v| c.name.contains(v.trim_start_matches('/')))
            && any("status", &|v| state(c) == v)
            && any("network", &|v| c.sandbox.endpoints.iter().any(|e| e.network_name == v || e.network_id.starts_with(v)))
    };
    let mut cs = containers_of(&e).await?;
    cs.retain(keep);
    Ok(Json(cs.iter().map(summary).collect()))
}

async fn container(State(e): Eng, Path((v, id)): Path<(String, String)>) -> R<Json<Value>> {
    check(&v)?;
    Ok(Json(container_inspect(&e.execute(InspectContainer { id }).await?)))
}

/// `filters`: `type`, `event` (the action), `container` and `network` (an id prefix or a name),
/// `label`; `until` ends the stream then. weft streams from now on: a `since` in the past is
/// refused.
async fn events(Path(v): Path<String>, State(e): Eng, stopping: axum::Extension<crate::api::Stopping>, q: Q) -> R<Response> {
    check(&v)?;
    filtered_events(State(e), stopping, q).await
}

/// The event stream with Docker's query (also weft's own `GET /events`, and `weft events`).
pub(crate) async fn filtered_events(State(e): Eng, axum::Extension(stopping): axum::Extension<crate::api::Stopping>, Query(q): Q) -> R<Response> {
    let f = filters(&q)?;
    for k in f.keys() {
        if !["type", "event", "container", "network", "label"].contains(&k.as_str()) {
            return Err(bad(format!("invalid filter '{k}'")));
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let time = |k: &str| -> R<Option<u64>> {
        match q.get(k).filter(|s| !s.is_empty()) {
            Some(s) => until_secs(s).map(Some).ok_or_else(|| bad(format!("invalid {k} {s:?}: expected a Unix time or an RFC 3339 date"))),
            None => Ok(None),
        }
    };
    if time("since")?.is_some_and(|s| s + 1 < now) {
        return Err(bad("weft streams events from now on: a since in the past is not served"));
    }
    let until = time("until")?.map(|u| std::time::Duration::from_secs(u.saturating_sub(now)));
    let keep = move |ev: &Value| {
        let actor = &ev["Actor"];
        let id = actor["ID"].as_str().unwrap_or_default();
        let attr = |k: &str| actor["Attributes"][k].as_str().unwrap_or_default().to_string();
        let kind = ev["Type"].as_str().unwrap_or_default();
        let any = |k: &str, ok: &dyn Fn(&str) -> bool| f.get(k).is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| ok(v)));
        let names = |v: &str| !v.is_empty() && (id.starts_with(v) || attr("name") == v);
        any("type", &|v| v == kind)
            && any("event", &|v| ev["Action"].as_str() == Some(v))
            && any("container", &|v| match kind {
                "container" => names(v),
                _ => attr("container").starts_with(v) || attr("container_name") == v,
            })
            && any("network", &|v| kind == "network" && names(v))
            && any("label", &|v| match v.split_once('=') {
                Some((k, x)) => attr(k) == x,
                None => !attr(v).is_empty(),
            })
    };
    Ok(crate::api::event_stream(&e, stopping, keep, until))
}
