//! `GET /metrics` (issue 22): Prometheus metrics on the API socket and on `--metrics-addr`,
//! parsed with the Prometheus client's own OpenMetrics parser (Debian's python3-prometheus-client);
//! the counters move after a run, a forwarded DNS question, a removal (the reaper's batch) and a
//! restart that finds a container dead (reconcile's repair).

use std::process::Command;

use weft_itest::{eventually, text, Host};

/// The scrape parsed: `name{labels} value` per sample, one per line.
fn samples(h: &Host, exposition: &str) -> String {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs python3-prometheus-client)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), exposition.as_bytes()).expect("write");
    let o = child.wait_with_output().expect("parser");
    assert!(o.status.success(), "the OpenMetrics parser refused weftd's metrics: {}\n{exposition}\n{}", text(&o), h.sock);
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn value(samples: &str, sample: &str) -> f64 {
    samples.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[test]
fn metrics_parse_and_move_after_a_run() {
    let mut h = Host::new("met");
    // The upstream DNS server: in the host's namespace, answering one name.
    let upstream = weft_itest::dns_server(&h.ns, "127.0.0.1", "up.example.test", "203.0.113.9", "0");
    h.start(&["--metrics-addr", "127.0.0.1:9323", "--dns", "127.0.0.1"]);
    let scrape = |h: &Host| {
        let (code, head, body) = weft_itest::http(h, "GET", "/metrics", None, b"");
        assert_eq!(code, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains("application/openmetrics-text"), "{head}");
        samples(h, &body)
    };
    let before = scrape(&h);
    let runs = r#"weft_action_duration_seconds_count{action="Run",outcome="ok"}"#;
    assert_eq!(value(&before, runs), 0.0);
    assert_eq!(value(&before, r#"weft_endpoints{driver="bridge",network="bridge"}"#), 0.0);
    let used_before = value(&before, r#"weft_ipam_addresses_used{driver="bridge",network="bridge"}"#);
    assert!(used_before >= 1.0, "the gateway is in use: {before}");
    assert_eq!(value(&before, r#"weft_ipam_addresses{driver="bridge",network="bridge"}"#), 65536.0);

    h.run_d("web", &["-p", "8080:80"], &["sleep", "300"]);
    let fail = h.fails(&["run", "-d", "--name", "web", "--", "true"]);
    assert!(fail.contains("web"), "{fail}");
    let after = scrape(&h);
    assert_eq!(value(&after, runs), 1.0, "{after}");
    assert_eq!(value(&after, r#"weft_action_duration_seconds_count{action="Run",outcome="error"}"#), 1.0, "the refused run: {after}");
    assert!(value(&after, r#"weft_action_duration_seconds_sum{action="Run",outcome="ok"}"#) > 0.0);
    assert_eq!(value(&after, r#"weft_endpoints{driver="bridge",network="bridge"}"#), 1.0);
    assert_eq!(value(&after, r#"weft_ipam_addresses_used{driver="bridge",network="bridge"}"#), used_before + 1.0);
    assert_eq!(value(&after, "weft_published_ports{}"), 1.0);
    assert_eq!(value(&after, "weft_containers_running{}"), 1.0);

    // The embedded DNS counts what it answered.
    h.ok(&["network", "create", "front"]);
    h.run_d("db", &["--network", "front"], &["sleep", "300"]);
    h.run_d("cli", &["--network", "front"], &["sleep", "300"]);
    let q0 = value(&scrape(&h), "weft_dns_queries_total{}");
    h.exec_ok("cli", &["nslookup", "db", "127.0.0.11"]);
    let dns = scrape(&h);
    assert!(value(&dns, "weft_dns_queries_total{}") >= q0 + 1.0 && value(&dns, "weft_dns_answered_total{}") >= 1.0, "{dns}");
    assert_eq!(value(&dns, r#"weft_endpoints{driver="bridge",network="front"}"#), 2.0);
    // A name of no network is forwarded: the latency histogram has each forward (busybox asks
    // for A and AAAA).
    let count = "weft_dns_forward_duration_seconds_count{}";
    let f0 = value(&dns, count);
    // (A forward is counted when sent, its latency when it ends.)
    assert!(f0 <= value(&dns, "weft_dns_forwarded_total{}"), "{dns}");
    let o = h.exec_ok("cli", &["nslookup", "up.example.test", "127.0.0.11"]);
    assert!(o.contains("203.0.113.9"), "{o}");
    let fwd = scrape(&h);
    let forwards = value(&fwd, count) - f0;
    assert!((1.0..=2.0).contains(&forwards), "{fwd}");
    assert_eq!(value(&fwd, "weft_dns_forwarded_total{}") - value(&dns, "weft_dns_forwarded_total{}"), forwards, "{fwd}");
    assert_eq!(value(&fwd, r#"weft_dns_forward_duration_seconds_bucket{le="+Inf"}"#), value(&fwd, count), "{fwd}");
    assert!(value(&fwd, "weft_dns_forward_duration_seconds_sum{}") > 0.0, "{fwd}");

    // The same over TCP (--metrics-addr), from inside the host's namespace.
    let o = h.sh("busybox wget -q -O- http://127.0.0.1:9323/metrics");
    assert!(o.status.success(), "metrics over TCP: {}", text(&o));
    let tcp = samples(&h, &String::from_utf8_lossy(&o.stdout));
    assert_eq!(value(&tcp, runs), 3.0, "web, db and cli: {tcp}");

    // A removal queues web's veth for the reaper, whose batch deletes it.
    assert_eq!(value(&tcp, "weft_reaper_links_deleted_total{}"), 0.0);
    h.ok(&["rm", "-f", "web"]);
    eventually("the reaper deleted web's veth", || {
        let m = scrape(&h);
        value(&m, "weft_reaper_links_deleted_total{}") == 1.0 && value(&m, "weft_reaper_batches_total{}") == 1.0 && value(&m, "weft_reaper_backlog{}") == 0.0
    });

    // weftd killed; db's pid 1 ends while it is away; the restart's reconcile releases db and
    // counts the repair (and web's too if its removal, a relaxed commit, had not reached the disk
    // yet: reconcile redoes it).
    let db_pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "db"]);
    assert_eq!(value(&scrape(&h), r#"weft_reconcile_repairs_total{what="exited_while_away"}"#), 0.0);
    h.kill9_daemon();
    assert!(Command::new("kill").args(["-KILL", &db_pid]).status().expect("kill").success());
    eventually("db's pid 1 gone", || !std::path::Path::new(&format!("/proc/{db_pid}")).exists());
    h.start(&["--metrics-addr", "127.0.0.1:9323", "--dns", "127.0.0.1"]);
    let again = scrape(&h);
    let repaired = value(&again, r#"weft_reconcile_repairs_total{what="exited_while_away"}"#);
    assert!((1.0..=2.0).contains(&repaired), "{again}\n{}", h.daemon_log());
    assert_eq!(value(&again, "weft_containers_running{}"), 1.0, "cli alone: {again}");
    assert_eq!(value(&again, "weft_containers{}"), 2.0, "db (exited) and cli; web stays removed: {again}");
    drop(upstream);
    h.finish();
}
