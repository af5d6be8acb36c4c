//! Prometheus metrics (`GET /metrics`, `weftd --metrics-addr`), through the Prometheus project's
//! own Rust client: the durations of the actions by kind and outcome (histograms, kept as actions
//! run) and the repairs of reconcile and the link monitor (counted as they happen); gauges read
//! from the state at each scrape (containers, endpoints per network, IPAM pool usage, published
//! ports, attached namespaces, the reaper's backlog); the embedded DNS's counters and its
//! forward latency histogram (kept by `weft_dns`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::Engine;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
    driver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepairLabels {
    what: &'static str,
}

type Durations = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// What the engine records as it runs.
pub(crate) struct Metrics {
    actions: Durations,
    repairs: Family<RepairLabels, Counter>,
}

/// The kinds of repair reconcile and the link monitor count (the `what` label).
pub(crate) mod repair {
    /// A container whose pid 1 ended while the daemon was away, released.
    pub const EXITED_WHILE_AWAY: &str = "exited_while_away";
    /// An attached namespace gone while the daemon was away (or never completed), forgotten.
    pub const SANDBOX_GONE: &str = "sandbox_gone";
    /// A container's namespace file bound again from its pid 1.
    pub const NETNS_REBOUND: &str = "netns_rebound";
    /// Address claims created or deleted to match the live endpoints.
    pub const CLAIMS: &str = "claims";
    /// Kernel objects, files and cgroups no record owns, removed.
    pub const LEFTOVERS: &str = "leftovers";
    /// An attached namespace detached by the link monitor: the namespace was destroyed and its
    /// end of the veth pair took ours.
    pub const NAMESPACE_GONE: &str = "namespace_gone";
}

impl Default for Metrics {
    fn default() -> Self {
        // 100 µs to ~26 s.
        fn histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        }
        Self { actions: Family::new_with_constructor(histogram), repairs: Family::default() }
    }
}

impl Metrics {
    /// One action of kind `action` took `secs`.
    pub(crate) fn action(&self, action: &str, ok: bool, secs: f64) {
        let labels = ActionLabels { action: action.to_string(), outcome: if ok { "ok" } else { "error" }.to_string() };
        self.actions.get_or_create(&labels).observe(secs);
    }

    /// Reconcile or the link monitor repaired `n` things of kind `what` (see [`repair`]).
    pub(crate) fn repaired(&self, what: &'static str, n: usize) {
        if n > 0 {
            self.repairs.get_or_create(&RepairLabels { what }).inc_by(n as u64);
        }
    }
}

impl Engine {
    /// The metrics in the OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        let mut reg = Registry::with_prefix("weft");
        reg.register("action_duration_seconds", "How long the API's actions took, by action and outcome", self.metrics.actions.clone());
        reg.register("reconcile_repairs", "What reconcile (at start) and the link monitor repaired, by kind", self.metrics.repairs.clone());
        let endpoints = Family::<NetworkLabels, Gauge>::default();
        let used = Family::<NetworkLabels, Gauge>::default();
        let size = Family::<NetworkLabels, Gauge>::default();
        let (running, containers, sandboxes, ports) = {
            let st = self.lock();
            for n in st.networks.values() {
                let l = NetworkLabels { network: n.rec.name.clone(), driver: n.rec.driver.name().to_string() };
                let count = st.containers.values().flat_map(|c| &c.sandbox.endpoints).chain(st.sandboxes.values().flat_map(|s| &s.sandbox.endpoints)).filter(|e| e.network_id == n.rec.id).count();
                endpoints.get_or_create(&l).set(count as i64);
                if let Some((u, s)) = st.ipam.usage(&n.rec.id) {
                    used.get_or_create(&l).set(u as i64);
                    size.get_or_create(&l).set(s as i64);
                }
            }
            let running = st.containers.values().filter(|c| c.state.status == weft_model::Status::Running).count();
            let ports = st.containers.values().map(|c| c.sandbox.ports.len()).chain(st.sandboxes.values().map(|s| s.sandbox.ports.len())).sum::<usize>();
            (running, st.containers.len(), st.sandboxes.len(), ports)
        };
        reg.register("endpoints", "Endpoints on each network (containers' and attached namespaces')", endpoints);
        reg.register("ipam_addresses_used", "IPv4 addresses of each network's pool in use (with the gateway and claims)", used);
        reg.register("ipam_addresses", "IPv4 addresses of each network's pool", size);
        let gauge = |v: usize| {
            let g = Gauge::<i64>::default();
            g.set(v as i64);
            g
        };
        reg.register("containers", "Containers weft knows", gauge(containers));
        reg.register("containers_running", "Containers running", gauge(running));
        reg.register("sandboxes", "Namespaces weft did not start, attached (connect --netns, CNI, Docker, OCI)", gauge(sandboxes));
        reg.register("published_ports", "Host ports published", gauge(ports));
        let (queued, deleted, batches) = self.reaper.backlog();
        reg.register("reaper_backlog", "Links waiting for the reaper's next batched deletion", gauge(queued));
        reg.register("reaper_links_deleted", "Links the reaper deleted", prometheus_client::metrics::counter::ConstCounter::new(deleted));
        reg.register("reaper_batches", "The reaper's deletions (each takes a batch of links)", prometheus_client::metrics::counter::ConstCounter::new(batches));
        // The embedded DNS over UDP, since weftd started.
        let d = &self.forwarder.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let counter = |v: u64| prometheus_client::metrics::counter::ConstCounter::new(v);
        reg.register("dns_queries", "Questions the embedded DNS received (UDP)", counter(load(&d.queries)));
        reg.register("dns_answered", "Questions the embedded DNS answered itself", counter(load(&d.answered)));
        reg.register("dns_forwarded", "Questions sent on to an upstream server", counter(load(&d.forwarded)));
        reg.register("dns_forward_failures", "Forwarded questions that got no usable answer", counter(load(&d.forward_failures)));
        reg.register("dns_refused", "Questions not forwarded: over the forwarding bounds", counter(load(&d.refused)));
        reg.register("dns_forward_duration_seconds", "How long forwarded questions waited for their upstream answer", d.forward_seconds.0.clone());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
            tracing::warn!(error = %e, "encoding the metrics");
        }
        out
    }
}
