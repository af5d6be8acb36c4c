//! The whole API of the engine: one type per thing a client can ask, each with its own reply
//! type, run by [`Engine::execute`] (one span per action, named as the CLI command, with the
//! container or network it concerns; one log line when it is refused or fails). The daemon maps
//! each route to one of these; the bench and tests use them the same way. The work itself lives
//! in the engine's files by group: `container.rs` (run, stop, kill, rm, wait), `limits.rs`
//! (cgroups, stats), `attach.rs`
//! (attach, logs, resize, exec), `networks.rs` (network create, rm, prune), `connect.rs` and
//! `sandbox.rs` (network connect and disconnect, of containers and of namespaces weft did not
//! start), `p2p.rs` (point-to-point links).
//!
//! (An enum of actions with an enum of replies made every caller match the reply it expected at
//! run time; an associated type makes the reply part of the action's type.)

use std::future::Future;
use std::sync::Arc;

use weft_model::{ConnectSpec, ContainerRecord, DisconnectSpec, ExecSpec, NetworkRecord, NetworkSpec, P2pRecord, P2pSpec, RunSpec, SandboxRecord};

use crate::stdio::{Attachment, ExecSession, Follower};
use crate::{Engine, EngineError, Result};

/// Something a client asks of the engine.
pub trait Action: Send + 'static {
    type Reply: Send + 'static;
    /// Its name in the metrics.
    const KIND: &'static str;
    /// The span the action runs in.
    fn span(&self) -> tracing::Span;
    fn act(self, eng: Arc<Engine>) -> impl Future<Output = Result<Self::Reply>> + Send;
}

impl Engine {
    /// Runs one action: the API's single entry point.
    pub async fn execute<A: Action>(self: &Arc<Self>, action: A) -> Result<A::Reply> {
        let span = action.span();
        let eng = self.clone();
        let work = async move {
            let t0 = std::time::Instant::now();
            let metrics = eng.clone();
            let r = action.act(eng).await;
            metrics.metrics.action(A::KIND, r.is_ok(), t0.elapsed().as_secs_f64());
            match &r {
                Ok(_) => tracing::debug!(us = t0.elapsed().as_micros() as u64, "done"),
                Err(e) => tracing::info!(error = %e, "refused or failed"),
            }
            r
        };
        tracing::Instrument::instrument(work, span).await
    }
}

/// Declares an action: its fields, its reply, its span, and the engine call that does it.
macro_rules! action {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } -> $reply:ty,
     span($s:ident) $span:expr, act($a:ident, $e:ident) $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name { $(pub $field: $ty),* }

        impl Action for $name {
            type Reply = $reply;
            const KIND: &'static str = stringify!($name);
            fn span(&self) -> tracing::Span {
                let $s = self;
                $span
            }
            #[allow(clippy::manual_async_fn)]
            fn act(self, $e: Arc<Engine>) -> impl Future<Output = Result<$reply>> + Send {
                let $a = self;
                async move { $body }
            }
        }
    };
}

// Containers.

action!(
    /// `weft run -d`: creates and starts a container; its id.
    Run { spec: RunSpec } -> String,
    span(s) tracing::info_span!("run", container = tracing::field::Empty, name = tracing::field::Empty, network = %s.spec.network_mode),
    act(a, e) e.run(a.spec, false).await.map(|(id, _)| id)
);

action!(
    /// `weft run` in the foreground: as [`Run`], attached before the command starts (its
    /// output from the first byte, its input).
    RunAttached { spec: RunSpec } -> Attachment,
    span(s) tracing::info_span!("run", container = tracing::field::Empty, name = tracing::field::Empty, network = %s.spec.network_mode),
    act(a, e) match e.run(a.spec, true).await? {
        (_, Some(att)) => Ok(att),
        (id, None) => Err(EngineError::Internal(format!("container {id} started without its attachment"))),
    }
);

action!(
    /// `weft stop`: SIGTERM, SIGKILL after the timeout; done once the exit is processed.
    Stop { id: String, timeout_secs: u64 } -> (),
    span(s) tracing::info_span!("stop", container = %s.id),
    act(a, e) e.stop(&a.id, a.timeout_secs).await
);

action!(
    /// `weft kill [-s SIGNAL]` (empty: KILL).
    Kill { id: String, signal: String } -> (),
    span(s) tracing::info_span!("kill", container = %s.id),
    act(a, e) e.kill(&a.id, &a.signal)
);

action!(
    /// `weft rm [-f]`.
    Remove { id: String, force: bool } -> (),
    span(s) tracing::info_span!("rm", container = %s.id),
    act(a, e) e.remove(&a.id, a.force).await
);

action!(
    /// `weft wait`: the exit code.
    Wait { id: String } -> i32,
    span(s) tracing::info_span!("wait", container = %s.id),
    act(a, e) e.wait(&a.id).await
);

action!(
    /// `weft attach`: the output from now (or the start, with `logs`) and the input.
    Attach { id: String, logs: bool } -> Attachment,
    span(s) tracing::info_span!("attach", container = %s.id),
    act(a, e) e.attach(&a.id, a.logs)
);

action!(
    /// `weft logs [-f]`.
    Logs { id: String, follow: bool } -> Follower,
    span(s) tracing::info_span!("logs", container = %s.id),
    act(a, e) e.logs(&a.id, a.follow)
);

action!(
    /// The window size of a container's terminal.
    Resize { id: String, rows: u16, cols: u16 } -> (),
    span(s) tracing::debug_span!("resize", container = %s.id),
    act(a, e) e.resize(&a.id, a.rows, a.cols)
);

action!(
    /// `weft exec`: a command in a running container, streamed.
    Exec { id: String, spec: ExecSpec } -> ExecSession,
    span(s) tracing::info_span!("exec", container = %s.id),
    act(a, e) e.exec(&a.id, a.spec).await
);

action!(
    /// The window size of an exec's terminal.
    ResizeExec { exec_id: String, rows: u16, cols: u16 } -> (),
    span(s) tracing::debug_span!("exec resize", exec = %s.exec_id),
    act(a, e) e.resize_exec(&a.exec_id, a.rows, a.cols)
);

action!(
    /// `weft stats`: one reading of a container's usage (CPU time, memory, processes).
    Stats { id: String } -> weft_model::ContainerStats,
    span(s) tracing::debug_span!("stats", container = %s.id),
    act(a, e) e.stats(&a.id).await
);

action!(
    /// `weft ps [-a]`: newest first.
    ListContainers {} -> Vec<ContainerRecord>,
    span(_s) tracing::debug_span!("ps"),
    act(_a, e) Ok(e.containers())
);

action!(
    /// `weft inspect` of a container (name, id or unique id prefix).
    InspectContainer { id: String } -> ContainerRecord,
    span(s) tracing::debug_span!("inspect", container = %s.id),
    act(a, e) e.container(&a.id)
);

// Networks.

action!(
    /// `weft network create`: the new network.
    CreateNetwork { spec: NetworkSpec } -> NetworkRecord,
    span(s) tracing::info_span!("network create", network = %s.spec.name),
    act(a, e) e.create_network(a.spec).await
);

action!(
    /// `weft network rm`.
    RemoveNetwork { id: String } -> (),
    span(s) tracing::info_span!("network rm", network = %s.id),
    act(a, e) e.remove_network(&a.id).await
);

action!(
    /// `weft network prune`: the names of the networks removed.
    PruneNetworks { only: Option<Vec<String>> } -> Vec<String>,
    span(_s) tracing::info_span!("network prune"),
    act(a, e) e.prune_networks(a.only.as_deref()).await
);

action!(
    /// `weft network connect`: a container, or a namespace weft did not start (`--netns`,
    /// `--pid`), gains an interface on the network.
    Connect { network: String, spec: ConnectSpec } -> (),
    span(s) tracing::info_span!("network connect", network = %s.network, container = %s.spec.container),
    act(a, e) match a.spec.target()? {
        weft_model::ConnectTarget::Container(c) => e.connect(&a.network, &c, a.spec.ip_address, &a.spec.aliases).await,
        _ => e.connect_foreign(&a.network, &a.spec).await,
    }
);

action!(
    /// `weft network disconnect`.
    Disconnect { network: String, spec: DisconnectSpec } -> (),
    span(s) tracing::info_span!("network disconnect", network = %s.network, container = %s.spec.container),
    act(a, e) e.disconnect(&a.network, &a.spec.container, a.spec.force).await
);

action!(
    /// `weft network ls`: by name.
    ListNetworks {} -> Vec<NetworkRecord>,
    span(_s) tracing::debug_span!("network ls"),
    act(_a, e) Ok(e.networks())
);

action!(
    /// `weft network inspect` (name, id or id prefix).
    InspectNetwork { id: String } -> NetworkRecord,
    span(s) tracing::debug_span!("network inspect", network = %s.id),
    act(a, e) e.network(&a.id)
);

action!(
    /// `weft node ls`: the daemons registered in the store.
    ListNodes {} -> Vec<weft_model::NodeRecord>,
    span(_s) tracing::debug_span!("node ls"),
    act(_a, e) Ok(e.nodes())
);

action!(
    /// `weft sandbox ls`: the attached namespaces, by name.
    ListSandboxes {} -> Vec<SandboxRecord>,
    span(_s) tracing::debug_span!("sandbox ls"),
    act(_a, e) Ok(e.sandboxes())
);

action!(
    /// `weft sandbox inspect`.
    InspectSandbox { name: String } -> SandboxRecord,
    span(s) tracing::debug_span!("sandbox inspect", sandbox = %s.name),
    act(a, e) e.sandboxes().into_iter().find(|s| s.key == a.name).ok_or_else(|| EngineError::NoSuchSandbox(a.name.clone()))
);

// Point-to-point links.

action!(
    /// `weft link create A B`.
    CreateP2p { spec: P2pSpec } -> P2pRecord,
    span(s) tracing::info_span!("link create", a = %s.spec.a, b = %s.spec.b),
    act(a, e) e.create_p2p(a.spec).await
);

action!(
    /// `weft link ls`: oldest first.
    ListP2p {} -> Vec<P2pRecord>,
    span(_s) tracing::debug_span!("link ls"),
    act(_a, e) Ok(e.p2p_links())
);

action!(
    /// `weft link inspect` (id, id prefix, or `A:B`).
    InspectP2p { key: String } -> P2pRecord,
    span(s) tracing::debug_span!("link inspect", link = %s.key),
    act(a, e) e.p2p_link(&a.key)
);

action!(
    /// `weft link rm` (id, id prefix, or `A:B`).
    RemoveP2p { key: String } -> (),
    span(s) tracing::info_span!("link rm", link = %s.key),
    act(a, e) e.remove_p2p(&a.key).await
);

// Containers of other runtimes (`weft-cni`, `weft oci-hook`).

action!(
    /// CNI `ADD`, the OCI hook: a runtime's container joins a network.
    AttachRuntime { spec: weft_model::AttachSpec } -> weft_model::AttachReply,
    span(s) tracing::info_span!("attach", network = %s.spec.network, runtime = ?s.spec.runtime),
    act(a, e) e.attach_netns(&a.spec).await
);

action!(
    /// CNI `DEL`: idempotent.
    DetachRuntime { at: weft_model::AttachmentRef } -> (),
    span(s) tracing::info_span!("detach", network = %s.at.network, runtime = ?s.at.runtime, ifname = %s.at.ifname),
    act(a, e) e.detach_runtime(&a.at).await
);

action!(
    /// CNI `CHECK`.
    CheckAttachment { at: weft_model::AttachmentRef } -> (),
    span(s) tracing::debug_span!("check", network = %s.at.network, runtime = ?s.at.runtime, ifname = %s.at.ifname),
    act(a, e) e.check_runtime(&a.at).await
);

action!(
    /// CNI `GC`: the sandboxes detached.
    CollectAttachments { spec: weft_model::CollectSpec } -> Vec<String>,
    span(s) tracing::info_span!("gc", network = %s.spec.network, kind = %s.spec.kind),
    act(a, e) e.collect_runtime(&a.spec).await
);

// Docker's IPAM driver and the steps of its network driver that are not an attachment.

action!(
    /// `IpamDriver.RequestPool` without a pool: a free subnet.
    FreeSubnet {} -> ipnet::Ipv4Net,
    span(_s) tracing::debug_span!("ipam request pool"),
    act(_a, e) e.free_subnet().await
);

action!(
    /// `IpamDriver.RequestAddress`: an address of the network with that subnet, promised.
    PromiseAddress { subnet: ipnet::Ipv4Net, ip: Option<std::net::Ipv4Addr> } -> std::net::Ipv4Addr,
    span(s) tracing::debug_span!("ipam request address", subnet = %s.subnet),
    act(a, e) e.promise_address(a.subnet, a.ip)
);

action!(
    /// `IpamDriver.ReleaseAddress`.
    ReleasePromise { subnet: ipnet::Ipv4Net, ip: std::net::Ipv4Addr } -> (),
    span(s) tracing::debug_span!("ipam release address", subnet = %s.subnet, ip = %s.ip),
    act(a, e) { e.release_promise(a.subnet, a.ip); Ok(()) }
);

action!(
    /// `NetworkDriver.ProgramExternalConnectivity`: publish ports on an attached sandbox.
    PublishSandbox { key: String, ports: Vec<weft_model::PortSpec> } -> (),
    span(s) tracing::info_span!("publish", sandbox = %s.key),
    act(a, e) e.publish_sandbox(&a.key, &a.ports).await
);
