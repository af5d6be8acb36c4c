//! Prometheus metrics (`GET /metrics`, `weftd --metrics-addr`), through the Prometheus project's
//! own Rust client: the durations of the actions by kind and outcome (histograms, kept as actions
//! run), gauges read from the state at each scrape (containers, endpoints per network, IPAM
//! pool usage, published ports, attached namespaces), and the embedded DNS's counters.

use prometheus_client::encoding::EncodeLabelSet;
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

type Durations = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// What the engine records as it runs.
pub(crate) struct Metrics {
    actions: Durations,
}

impl Default for Metrics {
    fn default() -> Self {
        // 100 µs to ~26 s.
        fn histogram() -> Histogram {
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        }
        Self { actions: Family::new_with_constructor(histogram) }
    }
}

impl Metrics {
    /// One action of kind `action` took `secs`.
    pub(crate) fn action(&self, action: &str, ok: bool, secs: f64) {
        let labels = ActionLabels { action: action.to_string(), outcome: if ok { "ok" } else { "error" }.to_string() };
        self.actions.get_or_create(&labels).observe(secs);
    }
}

impl Engine {
    /// The metrics in the OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        let mut reg = Registry::with_prefix("weft");
        reg.register("action_duration_seconds", "How long the API's actions took, by action and outcome", self.metrics.actions.clone());
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
        // The embedded DNS over UDP, since weftd started.
        let d = &self.forwarder.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let counter = |v: u64| prometheus_client::metrics::counter::ConstCounter::new(v);
        reg.register("dns_queries", "Questions the embedded DNS received (UDP)", counter(load(&d.queries)));
        reg.register("dns_answered", "Questions the embedded DNS answered itself", counter(load(&d.answered)));
        reg.register("dns_forwarded", "Questions sent on to an upstream server", counter(load(&d.forwarded)));
        reg.register("dns_forward_failures", "Forwarded questions that got no usable answer", counter(load(&d.forward_failures)));
        reg.register("dns_refused", "Questions not forwarded: over the forwarding bounds", counter(load(&d.refused)));
        reg.register("dns_forward_seconds", "Time spent waiting for upstream answers (divide by dns_forwarded for the mean)", prometheus_client::metrics::counter::ConstCounter::new(load(&d.forward_micros) as f64 / 1e6));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
            tracing::warn!(error = %e, "encoding the metrics");
        }
        out
    }
}
