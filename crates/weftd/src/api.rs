//! The HTTP+JSON API (reference: `docs/api.md`). Routes mirror Docker's where Docker has the same
//! operation; every error answers `{"message": "..."}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum::extract::FromRequest;
use hyper::upgrade::OnUpgrade;
use weft_engine::actions::{
    Attach, AttachRuntime, CheckAttachment, CollectAttachments, Connect, CreateNetwork, CreateP2p, Disconnect, Exec, InspectContainer, InspectNetwork, InspectP2p, InspectSandbox, Kill, ListContainers, ListNetworks, ListNodes, ListP2p, ListSandboxes,
    DetachRuntime, Logs, PruneNetworks, Remove, RemoveNetwork, RemoveP2p, Resize, ResizeExec, Run, RunAttached, Stats, Stop, Wait,
};
use weft_engine::{Engine, EngineError};
use weft_model::stream::{parse_detach_keys, DEFAULT_DETACH_KEYS};
use weft_model::{
    container_inspect, network_inspect, sandbox_inspect, AttachReply, AttachSpec, AttachmentRef, CollectSpec, ConnectSpec, ContainerSummary, DisconnectSpec, ErrorBody, ExecSpec, IdReply, NetworkSpec, P2pRecord, P2pSpec, PruneReply, RunSpec, Status, WaitReply,
};

use crate::stream::{self, InputOpts};

type Eng = State<Arc<Engine>>;
type Q = Query<HashMap<String, String>>;

/// The largest request body weftd reads (a `RunSpec` with a large environment fits many times).
pub const BODY_LIMIT: usize = 1 << 20;
/// How long a client may take to send a body once its headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every error answer: a status and one line, as `{"message"}`.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(message = %self.message, "request failed");
        }
        (self.status, Json(ErrorBody { message: self.message })).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, message: one_line(&e) }
    }
}

/// The whole chain of causes on one line: "create veth vethabc: File exists (os error 17)".
pub fn one_line(e: &EngineError) -> String {
    let mut message = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    message
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body whose every rejection (no or wrong Content-Type, bad JSON, a wrong type,
/// an unknown field, too large, too slow) is an [`ApiError`]: 400 for bad input, 413 for too
/// large, 408 for too slow.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match tokio::time::timeout(BODY_TIMEOUT, Json::<T>::from_request(req, state)).await {
            Err(_) => Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "request body not received in time")),
            Ok(Ok(Json(v))) => Ok(Body(v)),
            Ok(Err(r)) => {
                let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE { r.status() } else { StatusCode::BAD_REQUEST };
                Err(ApiError::new(status, r.body_text().replace('\n', " ")))
            }
        }
    }
}

pub fn router(engine: Arc<Engine>, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/_ping", get(crate::docker_api::ping_unprefixed))
        .route("/containers/json", get(list))
        .route("/containers/run", post(run))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/exec", post(exec))
        .route("/exec/{id}/resize", post(resize_exec))
        .route("/containers/{id}", delete(remove))
        .route("/networks", get(networks))
        .route("/networks/create", post(network_create))
        .route("/networks/prune", post(network_prune))
        .route("/networks/{id}", get(network).delete(network_remove))
        .route("/networks/{id}/connect", post(network_connect))
        .route("/networks/{id}/disconnect", post(network_disconnect))
        .route("/nodes", get(nodes))
        .route("/events", get(crate::docker_api::filtered_events))
        .route("/metrics", get(metrics))
        .route("/rootfs/progress", get(unpack_progress))
        .route("/sandboxes", get(sandboxes))
        .route("/sandboxes/{name}", get(sandbox))
        .route("/links", get(p2p_links))
        .route("/links/create", post(p2p_create))
        .route("/links/{key}", get(p2p_link).delete(p2p_remove))
        .route("/attachments", post(attach_runtime))
        .route("/attachments/detach", post(detach_runtime))
        .route("/attachments/check", post(check_attachment))
        .route("/attachments/gc", post(collect_attachments))
        .merge(crate::docker_api::routes())
        .fallback(crate::docker_api::not_served)
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(Stopping(stopping)))
        .with_state(engine)
}

/// Set when weftd is shutting down: streams end, waits answer 503.
#[derive(Clone)]
pub struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    pub async fn wait(mut self) {
        // (The guard wait_for returns is not Send: drop it at once.)
        let _ = self.0.wait_for(|s| *s).await.map(|_| ());
    }
}

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "1" || v == "true")
}

/// The upgrade a streaming request asked for (`Connection: Upgrade`, `Upgrade: tcp`).
fn take_upgrade(req: &mut axum::extract::Request) -> ApiResult<OnUpgrade> {
    let asked = req.headers().get(axum::http::header::UPGRADE).is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"tcp"));
    match req.extensions_mut().remove::<OnUpgrade>() {
        Some(u) if asked => Ok(u),
        _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "this endpoint streams: send Connection: Upgrade and Upgrade: tcp")),
    }
}

/// `stdin=1` and `detachKeys=…` of a streaming request.
fn input_opts(q: &HashMap<String, String>) -> ApiResult<InputOpts> {
    let keys = q.get("detachKeys").filter(|k| !k.is_empty()).map_or(DEFAULT_DETACH_KEYS, String::as_str);
    let detach = parse_detach_keys(keys).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(InputOpts { stdin: flag(q, "stdin"), detach })
}

/// `POST /containers/run`: creates and starts a container. With `attach=1` (and an upgrade),
/// the connection then streams its output from the first byte and, with `stdin=1`, takes its
/// input: `weft run` in the foreground.
async fn run(State(e): Eng, axum::Extension(stopping): axum::Extension<Stopping>, Query(q): Q, mut req: axum::extract::Request) -> ApiResult<Response> {
    if !flag(&q, "attach") {
        let Body(spec) = Body::<RunSpec>::from_request(req, &()).await?;
        let id = e.execute(Run { spec }).await?;
        return Ok((StatusCode::CREATED, Json(IdReply { id })).into_response());
    }
    let upgrade = take_upgrade(&mut req)?;
    let opts = input_opts(&q)?;
    let Body(spec) = Body::<RunSpec>::from_request(req, &()).await?;
    let att = e.execute(RunAttached { spec }).await?;
    let answer = stream::switching("Weft-Container-Id", &att.id);
    tokio::spawn(stream::serve_attach(upgrade, att, opts, stopping));
    Ok(answer)
}

/// `POST /containers/{id}/attach`: streams a running container's output (from the start with
/// `logs=1`, else from now) and, with `stdin=1`, takes its input.
async fn attach(State(e): Eng, axum::Extension(stopping): axum::Extension<Stopping>, Path(id): Path<String>, Query(q): Q, mut req: axum::extract::Request) -> ApiResult<Response> {
    let upgrade = take_upgrade(&mut req)?;
    let opts = input_opts(&q)?;
    let att = e.execute(Attach { id, logs: flag(&q, "logs") }).await?;
    let answer = stream::switching("Weft-Container-Id", &att.id);
    tokio::spawn(stream::serve_attach(upgrade, att, opts, stopping));
    Ok(answer)
}

fn winsize(q: &HashMap<String, String>) -> ApiResult<(u16, u16)> {
    let dim = |k: &str| q.get(k).and_then(|v| v.parse::<u16>().ok()).filter(|v| *v > 0);
    match (dim("h"), dim("w")) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "resize needs h and w: rows and columns, 1 to 65535")),
    }
}

async fn resize(State(e): Eng, Path(id): Path<String>, Query(q): Q) -> ApiResult<StatusCode> {
    let (rows, cols) = winsize(&q)?;
    e.execute(Resize { id, rows, cols }).await?;
    Ok(StatusCode::OK)
}

async fn resize_exec(State(e): Eng, Path(id): Path<String>, Query(q): Q) -> ApiResult<StatusCode> {
    let (rows, cols) = winsize(&q)?;
    e.execute(ResizeExec { exec_id: id, rows, cols }).await?;
    Ok(StatusCode::OK)
}

/// `POST /containers/{id}/exec`: starts a command in the container and streams it (stdout and
/// stderr framed apart, or one terminal), ending with its exit code.
async fn exec(State(e): Eng, axum::Extension(stopping): axum::Extension<Stopping>, Path(id): Path<String>, Query(q): Q, mut req: axum::extract::Request) -> ApiResult<Response> {
    let upgrade = take_upgrade(&mut req)?;
    let opts = input_opts(&q)?;
    let Body(spec) = Body::<ExecSpec>::from_request(req, &()).await?;
    let session = e.execute(Exec { id, spec }).await?;
    let answer = stream::switching("Weft-Exec-Id", &session.id);
    tokio::spawn(stream::serve_exec(upgrade, session, opts, stopping));
    Ok(answer)
}

async fn list(State(e): Eng, Query(q): Q) -> ApiResult<Json<Vec<ContainerSummary>>> {
    let all = flag(&q, "all");
    Ok(Json(
        e.execute(ListContainers {})
            .await?
            .into_iter()
            .filter(|c| all || c.state.status == Status::Running)
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                name: c.name.clone(),
                command: c.spec.cmd.join(" "),
                status: match c.state.status {
                    Status::Exited => format!("Exited ({})", c.state.exit_code),
                    s => s.to_string(),
                },
                network_mode: c.network_mode().to_string(),
                ip_address: c.sandbox.endpoints.first().map(|e| e.ip.to_string()).unwrap_or_default(),
            })
            .collect(),
    ))
}

async fn inspect(State(e): Eng, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(container_inspect(&e.execute(InspectContainer { id }).await?)))
}

async fn stop(State(e): Eng, Path(id): Path<String>, Query(q): Q) -> ApiResult<StatusCode> {
    let timeout_secs = q.get("t").and_then(|t| t.parse().ok()).unwrap_or(10);
    e.execute(Stop { id, timeout_secs }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill(State(e): Eng, Path(id): Path<String>, Query(q): Q) -> ApiResult<StatusCode> {
    let signal = q.get("signal").cloned().unwrap_or_default();
    e.execute(Kill { id, signal }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wait(State(e): Eng, axum::Extension(stopping): axum::Extension<Stopping>, Path(id): Path<String>) -> ApiResult<Json<WaitReply>> {
    let status_code = tokio::select! {
        r = e.execute(Wait { id }) => r?,
        () = stopping.wait() => return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "weftd is shutting down")),
    };
    Ok(Json(WaitReply { status_code }))
}

async fn remove(State(e): Eng, Path(id): Path<String>, Query(q): Q) -> ApiResult<StatusCode> {
    e.execute(Remove { id, force: flag(&q, "force") }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The container's output; with `follow=1`, streamed until the container has exited.
async fn logs(State(e): Eng, axum::Extension(stopping): axum::Extension<Stopping>, Path(id): Path<String>, Query(q): Q) -> ApiResult<Response> {
    let follower = e.execute(Logs { id, follow: flag(&q, "follow") }).await?;
    let stream = futures_util::stream::unfold(follower, |mut f| async move { f.next().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), f)) });
    // A follower ends cleanly (end of stream) when weftd shuts down.
    let stream = futures_util::StreamExt::take_until(stream, Box::pin(stopping.wait()));
    Ok(Response::new(axum::body::Body::from_stream(stream)))
}

/// `GET /containers/{id}/stats`: one reading of the container's usage (Docker's `stream=false`
/// shape without `precpu_stats`: a client takes two readings for CPU %).
async fn stats(State(e): Eng, Path(id): Path<String>, Query(q): Q) -> ApiResult<Json<weft_model::ContainerStats>> {
    if q.get("stream").is_some_and(|v| v == "1" || v == "true") {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "stats streams are not served: ask again for each reading (stream=false)"));
    }
    Ok(Json(e.execute(Stats { id }).await?))
}

/// (Docker's `filters` apply here too, as under `/vX.YY/`.)
async fn networks(State(e): Eng, Query(q): Q) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let f = weft_model::docker::parse_filters(q.get("filters").map(String::as_str)).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let containers = e.execute(ListContainers {}).await?;
    let refs: Vec<_> = containers.iter().collect();
    let mut out = Vec::new();
    for n in e.execute(ListNetworks {}).await? {
        if weft_model::docker::network_matches(&n, &f).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))? {
            out.push(inspect_network(&e, &n, &refs));
        }
    }
    Ok(Json(out))
}

/// A body in weft's shape (unknown fields refused), or in Docker's if it has one of
/// `docker_keys`, fields only Docker's shape has (unprefixed paths take both).
fn weft_or_docker<W: serde::de::DeserializeOwned, D: serde::de::DeserializeOwned>(v: serde_json::Value, docker_keys: &[&str], from_docker: impl FnOnce(D) -> Result<W, weft_model::ModelError>) -> ApiResult<W> {
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, e);
    if docker_keys.iter().any(|k| v.get(k).is_some()) {
        let d = serde_json::from_value::<D>(v).map_err(|e| bad(format!("invalid body: {e}")))?;
        return from_docker(d).map_err(|e| bad(e.to_string()));
    }
    serde_json::from_value::<W>(v).map_err(|e| bad(format!("invalid body: {e}")))
}

async fn network(State(e): Eng, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let n = e.execute(InspectNetwork { id }).await?;
    let containers = e.execute(ListContainers {}).await?;
    let refs: Vec<_> = containers.iter().collect();
    Ok(Json(inspect_network(&e, &n, &refs)))
}

async fn network_create(State(e): Eng, Body(v): Body<serde_json::Value>) -> ApiResult<(StatusCode, Json<IdReply>)> {
    let spec: NetworkSpec = weft_or_docker(v, &["IPAM", "CheckDuplicate", "EnableIPv6", "Attachable", "Ingress", "ConfigOnly", "ConfigFrom"], weft_model::docker::NetworkCreate::into_spec)?;
    let id = e.execute(CreateNetwork { spec }).await?.id;
    Ok((StatusCode::CREATED, Json(IdReply { id })))
}

async fn network_remove(State(e): Eng, Path(id): Path<String>) -> ApiResult<StatusCode> {
    e.execute(RemoveNetwork { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn network_prune(State(e): Eng) -> ApiResult<Json<PruneReply>> {
    let networks_deleted = e.execute(PruneNetworks { only: None }).await?;
    Ok(Json(PruneReply { networks_deleted }))
}

/// `GET /events`: the committed changes from now on, one JSON object per line (Docker's shape,
/// with the store revision), until the client goes or weftd stops.
/// The event stream, the events `keep` keeps, until weftd stops, the client goes, or `until`
/// (a deadline) passes.
pub(crate) fn event_stream(e: &Arc<Engine>, stopping: Stopping, keep: impl Fn(&serde_json::Value) -> bool + Send + Sync + 'static, until: Option<std::time::Duration>) -> Response {
    let rx = e.subscribe();
    let keep = Arc::new(keep);
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let keep = keep.clone();
        async move {
            loop {
                let line = match rx.recv().await {
                    Ok(ev) => ev.to_json(),
                    // A reader this far behind lost events: it is told, and goes on from here.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => serde_json::json!({"Type": "events", "Action": "lost", "Actor": {"Attributes": {"count": n.to_string()}}}),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                };
                if keep(&line) {
                    return Some((Ok::<_, std::io::Error>(format!("{line}\n")), rx));
                }
            }
        }
    });
    let end = async move {
        match until {
            Some(d) => tokio::select! { () = stopping.wait() => {}, () = tokio::time::sleep(d) => {} },
            None => stopping.wait().await,
        }
    };
    let stream = futures_util::StreamExt::take_until(stream, Box::pin(end));
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    resp
}

/// Prometheus metrics, in the OpenMetrics text format.
pub(crate) async fn metrics(State(e): Eng) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], e.metrics_text()).into_response()
}

/// `network inspect` as the model writes it; a global network's also names the hosts with
/// endpoints on it as Docker's overlay networks do (`Peers`: this host first) and the other
/// hosts' endpoints (`RemoteContainers`, by endpoint id, with their `Host`).
pub(crate) fn inspect_network(e: &Engine, n: &weft_model::NetworkRecord, containers: &[&weft_model::ContainerRecord]) -> serde_json::Value {
    let mut v = network_inspect(n, containers);
    if n.scope != weft_model::Scope::Global {
        return v;
    }
    let remote = e.remote_members(&n.id);
    let me = e.nodes().into_iter().find(|x| x.id == e.host_id());
    let addr = |a: Option<std::net::Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
    let mut peers = vec![serde_json::json!({ "Name": e.host_id(), "IP": addr(me.and_then(|m| m.addr)) })];
    for m in &remote {
        if !peers.iter().any(|p| p["Name"] == m.host.as_str()) {
            peers.push(serde_json::json!({ "Name": m.host, "IP": addr(m.host_addr) }));
        }
    }
    let members: serde_json::Map<String, serde_json::Value> =
        remote.iter().map(|m| (m.endpoint.clone(), serde_json::json!({ "Name": m.name, "IPv4Address": format!("{}/{}", m.ip, n.subnet.prefix_len()), "Host": m.host }))).collect();
    v["Peers"] = serde_json::Value::Array(peers);
    v["RemoteContainers"] = serde_json::Value::Object(members);
    v
}

/// How far the unpacking of `?archive=PATH` (a run's `--rootfs`) has come: `{"read","size"}`
/// in bytes of the archive; 404 when it is not being unpacked.
async fn unpack_progress(State(e): Eng, Query(q): Q) -> ApiResult<Json<serde_json::Value>> {
    let path = q.get("archive").ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "archive: a path is needed"))?;
    let (read, size) = e.unpack_progress(path).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("{path} is not being unpacked")))?;
    Ok(Json(serde_json::json!({ "read": read, "size": size })))
}

async fn nodes(State(e): Eng) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let me = e.host_id().to_string();
    Ok(Json(e.execute(ListNodes {}).await?.iter().map(|n| n.to_json(n.id == me)).collect()))
}

async fn sandboxes(State(e): Eng) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(e.execute(ListSandboxes {}).await?.iter().map(sandbox_inspect).collect()))
}

async fn sandbox(State(e): Eng, Path(name): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(sandbox_inspect(&e.execute(InspectSandbox { name }).await?)))
}

async fn p2p_links(State(e): Eng) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(e.execute(ListP2p {}).await?.iter().map(P2pRecord::to_json).collect()))
}

async fn p2p_link(State(e): Eng, Path(key): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(e.execute(InspectP2p { key }).await?.to_json()))
}

async fn p2p_create(State(e): Eng, Body(spec): Body<P2pSpec>) -> ApiResult<(StatusCode, Json<IdReply>)> {
    let id = e.execute(CreateP2p { spec }).await?.id;
    Ok((StatusCode::CREATED, Json(IdReply { id })))
}

async fn p2p_remove(State(e): Eng, Path(key): Path<String>) -> ApiResult<StatusCode> {
    e.execute(RemoveP2p { key }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn attach_runtime(State(e): Eng, Body(spec): Body<AttachSpec>) -> ApiResult<(StatusCode, Json<AttachReply>)> {
    Ok((StatusCode::CREATED, Json(e.execute(AttachRuntime { spec }).await?)))
}

async fn detach_runtime(State(e): Eng, Body(at): Body<AttachmentRef>) -> ApiResult<StatusCode> {
    e.execute(DetachRuntime { at }).await?;
    Ok(StatusCode::OK)
}

async fn check_attachment(State(e): Eng, Body(at): Body<AttachmentRef>) -> ApiResult<StatusCode> {
    e.execute(CheckAttachment { at }).await?;
    Ok(StatusCode::OK)
}

async fn collect_attachments(State(e): Eng, Body(spec): Body<CollectSpec>) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(e.execute(CollectAttachments { spec }).await?))
}

async fn network_connect(State(e): Eng, Path(network): Path<String>, Body(v): Body<serde_json::Value>) -> ApiResult<StatusCode> {
    let spec: ConnectSpec = weft_or_docker(v, &["EndpointConfig"], weft_model::docker::NetworkConnect::into_spec)?;
    e.execute(Connect { network, spec }).await?;
    Ok(StatusCode::OK)
}

async fn network_disconnect(State(e): Eng, Path(network): Path<String>, Body(spec): Body<DisconnectSpec>) -> ApiResult<StatusCode> {
    e.execute(Disconnect { network, spec }).await?;
    Ok(StatusCode::OK)
}
