//! The event stream: `weft events` tells what committed, in order, each with its store
//! revision: network create, container create and start, network connect and disconnect,
//! container die and destroy, network destroy, as an action, an exit or a removal commits them.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use weft_itest::{Host, Killed};

/// `weft events --json`, its lines arriving on a channel.
fn follow(h: &Host) -> (Killed, mpsc::Receiver<serde_json::Value>) {
    let mut child = h.cli().args(["events", "--json"]).stdout(Stdio::piped()).spawn().expect("weft events");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).expect("an event is one JSON line")).is_err() {
                return;
            }
        }
    });
    (Killed(child), rx)
}

/// Events until one of `kind` `action` arrives (5 s at most), as "kind action" strings with the
/// events themselves.
fn until(rx: &mpsc::Receiver<serde_json::Value>, kind: &str, action: &str) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    loop {
        let ev = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("no {kind} {action} within 5 s; saw {:?}", names(&seen)));
        let done = ev["Type"] == kind && ev["Action"] == action;
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

fn names(evs: &[serde_json::Value]) -> Vec<String> {
    evs.iter().map(|e| format!("{} {}", e["Type"].as_str().unwrap_or_default(), e["Action"].as_str().unwrap_or_default())).collect()
}

#[test]
fn events_tell_what_committed_in_order() {
    let mut h = Host::new("ev");
    h.start(&[]);
    let (_events, rx) = follow(&h);
    // The stream is open once the first event arrives: a network of the test's own.
    std::thread::sleep(Duration::from_millis(300));
    let front = h.ok(&["network", "create", "front"]);
    let back = h.ok(&["network", "create", "back"]);
    let mut all = until(&rx, "network", "create");
    all.extend(until(&rx, "network", "create"));
    assert_eq!(all[0]["Actor"]["ID"], front.as_str());
    assert_eq!(all[1]["Actor"]["Attributes"]["name"], "back");
    assert_eq!(all[1]["Actor"]["ID"], back.as_str());

    h.run_d("web", &["--net", "front"], &["sleep", "600"]);
    let id = h.ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let run = until(&rx, "network", "connect");
    assert_eq!(names(&run), ["container create", "container start", "network connect"], "one run, one commit");
    assert!(run.iter().all(|e| e["Revision"] == run[0]["Revision"]), "committed together: {run:?}");
    assert_eq!(run[0]["Actor"]["ID"], id.as_str());
    assert_eq!(run[0]["Actor"]["Attributes"]["name"], "web");
    assert_eq!(run[2]["Actor"]["Attributes"]["container"], id.as_str());
    assert_eq!(run[2]["Actor"]["Attributes"]["name"], "front");
    all.extend(run);

    h.ok(&["network", "connect", "back", "web"]);
    let c = until(&rx, "network", "connect");
    assert_eq!(c.len(), 1);
    assert_eq!((c[0]["Actor"]["ID"].as_str(), c[0]["Actor"]["Attributes"]["name"].as_str()), (Some(back.as_str()), Some("back")));
    all.extend(c);
    h.ok(&["network", "disconnect", "back", "web"]);
    all.extend(until(&rx, "network", "disconnect"));

    // An exit is an event too, with its code; the stopped container leaves its network first
    // (as Docker tells it).
    h.ok(&["kill", "web"]);
    let die = until(&rx, "container", "die");
    assert_eq!(names(&die), ["network disconnect", "container die"]);
    assert_eq!(die[0]["Actor"]["Attributes"]["name"], "front");
    assert_eq!(die[1]["Actor"]["Attributes"]["exitCode"], "137");
    all.extend(die);
    h.ok(&["rm", "web"]);
    all.extend(until(&rx, "container", "destroy"));
    h.ok(&["network", "rm", "back"]);
    let gone = until(&rx, "network", "destroy");
    assert_eq!(gone.last().expect("destroy")["Actor"]["Attributes"]["name"], "back");
    all.extend(gone);

    assert_eq!(
        names(&all),
        [
            "network create",
            "network create",
            "container create",
            "container start",
            "network connect",
            "network connect",
            "network disconnect",
            "network disconnect",
            "container die",
            "container destroy",
            "network destroy"
        ]
    );
    let revs: Vec<u64> = all.iter().map(|e| e["Revision"].as_u64().expect("a revision")).collect();
    assert!(revs.windows(2).all(|w| w[0] <= w[1]), "in revision order: {revs:?}");
    // A reader idle for longer than the API's idle timeout stays connected.
    std::thread::sleep(Duration::from_millis(1500));
    h.ok(&["network", "rm", "front"]);
    until(&rx, "network", "destroy");
    h.finish();
}

/// `weft events --format --filter --until`, as `docker events`: run, stop and rm of a container
/// in order, a filter to one type, and the stream ending at `--until`; a `--since` in the past
/// is refused (weft streams from now on).
#[test]
fn weft_events_formats_filters_and_ends_at_until() {
    let mut h = Host::new("evf");
    h.start(&[]);
    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() + 6).to_string();
    let spawn = |extra: &[&str]| {
        let mut args = vec!["events", "--until", until.as_str()];
        args.extend_from_slice(extra);
        h.cli().args(&args).stdout(Stdio::piped()).spawn().expect("weft events")
    };
    let all = spawn(&["--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"]);
    let nets = spawn(&["--filter", "type=network", "--format", "{{.Action}}"]);
    std::thread::sleep(Duration::from_millis(500));
    h.run_d("c1", &[], &["sleep", "300"]);
    h.ok(&["stop", "-t", "0", "c1"]);
    h.ok(&["rm", "c1"]);
    // Both end by themselves at --until.
    let lines = |c: std::process::Child| String::from_utf8_lossy(&c.wait_with_output().expect("weft events").stdout).lines().map(str::to_string).collect::<Vec<_>>();
    let seen = lines(all);
    assert_eq!(seen, ["container create c1", "container start c1", "network connect bridge", "network disconnect bridge", "container die c1", "container destroy c1"], "run, stop, rm in order");
    assert_eq!(lines(nets), ["connect", "disconnect"], "--filter type=network");
    let past = h.fails(&["events", "--since", "10m"]);
    assert!(past.contains("from now on"), "{past}");
    assert!(h.fails(&["events", "--filter", "nonsense"]).contains("KEY=VALUE"));
    h.finish();
}
