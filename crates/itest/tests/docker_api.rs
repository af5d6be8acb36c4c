//! Docker's Engine API on weftd's socket (issue 21): the real docker CLI and docker-py manage
//! weft's networks and read its containers, with no dockerd anywhere; each answer is compared
//! with what `weft` shows.

use std::process::{Command, Output};

use weft_itest::{text, Host};

/// The docker CLI against the test's weftd (its own config directory: nothing of the machine's).
fn docker(h: &Host, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", h.sock))
        .args(args)
        .env("DOCKER_CONFIG", h.dir.join("docker-config"))
        .output()
        .expect("docker CLI (scripts/setup.sh installs docker.io)")
}

fn docker_ok(h: &Host, args: &[&str]) -> String {
    let o = docker(h, args);
    assert!(o.status.success(), "docker {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn the_docker_cli_manages_weft_networks_and_reads_its_containers() {
    let mut h = Host::new("dapi");
    h.start(&[]);
    h.run_d("c1", &[], &["sleep", "300"]);

    // Create, as the issue's command line has it; weft sees the same network.
    let id = docker_ok(&h, &["network", "create", "--subnet", "10.60.0.0/24", "--gateway", "10.60.0.254", "--ip-range", "10.60.0.128/25", "-o", "com.docker.network.bridge.name=br-api", "n1"]);
    assert_eq!(id, h.ok(&["network", "inspect", "-f", "{{.Id}}", "n1"]));
    assert!(h.link_names().iter().any(|l| l == "br-api"), "the bridge as -o named it");
    assert_eq!(docker_ok(&h, &["network", "ls", "--filter", "name=n1", "--format", "{{.Name}}"]), "n1");
    assert!(docker_ok(&h, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).lines().any(|l| l == "bridge bridge"));
    assert_eq!(docker_ok(&h, &["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "n1"]), "10.60.0.0/24");
    assert_eq!(docker_ok(&h, &["network", "inspect", "-f", "{{(index .IPAM.Config 0).IPRange}} {{(index .IPAM.Config 0).Gateway}}", "n1"]), "10.60.0.128/25 10.60.0.254");
    let dup = docker(&h, &["network", "create", "n1"]);
    assert!(!dup.status.success() && text(&dup).contains("n1"), "a second n1: {}", text(&dup));
    let bad = docker(&h, &["network", "create", "--subnet", "nonsense", "n9"]);
    assert!(!bad.status.success(), "a bad subnet: {}", text(&bad));

    // Connect a weft container with an address and an alias; another weft container reaches it
    // by the alias.
    h.run_d("c2", &["--network", "n1"], &["sleep", "300"]);
    docker_ok(&h, &["network", "connect", "--ip", "10.60.0.200", "--alias", "web", "n1", "c1"]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.n1.IPAddress}}", "c1"]), "10.60.0.200");
    assert!(h.ping("c2", "web"), "c2 reaches c1 by the alias docker gave it");
    assert!(docker_ok(&h, &["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "n1"]).contains("c1"));
    docker_ok(&h, &["network", "disconnect", "n1", "c1"]);
    assert!(!h.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "c1"]).contains("n1"), "c1 left n1");

    // The read side of containers.
    let ps = docker_ok(&h, &["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = ps.lines().collect();
    names.sort();
    assert_eq!(names, ["c1", "c2"], "docker ps");
    assert_eq!(docker_ok(&h, &["ps", "-q", "--filter", "name=c2"]).len(), 12);
    assert_eq!(docker_ok(&h, &["inspect", "-f", "{{.State.Pid}}", "c1"]), h.ok(&["inspect", "-f", "{{.State.Pid}}", "c1"]));

    // Remove: refused while in use, then done; prune removes what nothing uses.
    let busy = docker(&h, &["network", "rm", "n1"]);
    assert!(!busy.status.success(), "n1 is in use by c2: {}", text(&busy));
    h.ok(&["rm", "-f", "c2"]);
    docker_ok(&h, &["network", "rm", "n1"]);
    assert!(h.fails(&["network", "inspect", "n1"]).contains("n1"));
    docker_ok(&h, &["network", "create", "--label", "tmp=1", "n2"]);
    docker_ok(&h, &["network", "create", "n3"]);
    let pruned = docker_ok(&h, &["network", "prune", "-f", "--filter", "label=tmp"]);
    assert!(pruned.contains("n2") && !pruned.contains("n3"), "prune by label: {pruned}");
    assert!(docker_ok(&h, &["network", "prune", "-f"]).contains("n3"));
    let nets = h.ok(&["network", "ls"]);
    assert!(!nets.contains("n2") && !nets.contains("n3"), "{nets}");

    // docker events, filtered to networks: what the state layer publishes, in order.
    let mut events = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", h.sock))
        .args(["events", "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}}"])
        .env("DOCKER_CONFIG", h.dir.join("docker-config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker events");
    std::thread::sleep(std::time::Duration::from_millis(500));
    docker_ok(&h, &["network", "create", "n5"]);
    docker_ok(&h, &["network", "connect", "n5", "c1"]);
    docker_ok(&h, &["network", "disconnect", "n5", "c1"]);
    docker_ok(&h, &["network", "rm", "n5"]);
    h.run_d("c3", &["--net", "none"], &["true"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = events.kill();
    let seen = String::from_utf8_lossy(&events.wait_with_output().expect("docker events").stdout).to_string();
    assert_eq!(seen.lines().collect::<Vec<_>>(), ["create n5", "connect n5", "disconnect n5", "destroy n5"], "docker events (no container events: filtered)");
    let since = docker(&h, &["events", "--since", "10m", "--until", "1s"]);
    assert!(!since.status.success() && text(&since).contains("from now on"), "a since in the past: {}", text(&since));

    // Without the version prefix: Docker's bodies and filters are taken too (weft's own shapes
    // stay weft's, unknown fields refused).
    let json = Some("application/json");
    let (code, _, body) = weft_itest::http(&h, "POST", "/networks/create", json, br#"{"Name":"n6","CheckDuplicate":true,"IPAM":{"Driver":"default","Config":[{"Subnet":"10.62.0.0/24"}]}}"#);
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = weft_itest::http(&h, "GET", "/networks?filters=%7B%22name%22%3A%7B%22n6%22%3Atrue%7D%7D", None, b"");
    assert!(code == 200 && body.contains("10.62.0.0/24") && !body.contains(r#""Name":"bridge""#), "{code} {body}");
    let (code, _, body) = weft_itest::http(&h, "POST", "/networks/n6/connect", json, br#"{"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.62.0.7"}}}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(h.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.n6.IPAddress}}", "c1"]), "10.62.0.7");
    h.ok(&["network", "disconnect", "n6", "c1"]);
    h.ok(&["network", "rm", "n6"]);

    // What weft does not serve says so.
    let images = docker(&h, &["image", "ls"]);
    assert!(!images.status.success() && text(&images).contains("weft does not serve"), "{}", text(&images));
    h.finish();
}

/// docker-py (Debian's python3-docker) does the create/inspect/connect/remove cycle.
#[test]
fn docker_py_manages_weft_networks() {
    let mut h = Host::new("dpy");
    h.start(&[]);
    h.run_d("c1", &[], &["sleep", "300"]);
    let script = r#"
import sys, docker
from docker.types import IPAMConfig, IPAMPool
c = docker.DockerClient(base_url="unix://" + sys.argv[1], version="auto")
assert c.ping()
print("api", c.version()["ApiVersion"])
net = c.networks.create("py1", driver="bridge", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.61.0.0/24", gateway="10.61.0.1")]), labels={"by": "docker-py"})
net.reload()
print("subnet", net.attrs["IPAM"]["Config"][0]["Subnet"])
net.connect("c1", ipv4_address="10.61.0.9", aliases=["pyweb"])
net.reload()
print("members", sorted(v["Name"] for v in net.attrs["Containers"].values()))
print("listed", [n.name for n in c.networks.list(names=["py1"])])
net.disconnect("c1")
net.remove()
print("containers", sorted(x.name for x in c.containers.list()))
"#;
    // Debian's interpreter, where python3-docker is (not another python3 on the PATH).
    let o = Command::new("/usr/bin/python3").args(["-c", script, &h.sock]).output().expect("python3 (scripts/setup.sh installs python3-docker)");
    let out = text(&o);
    assert!(o.status.success(), "docker-py: {out}");
    for line in ["api 1.41", "subnet 10.61.0.0/24", "members ['c1']", "listed ['py1']", "containers ['c1']"] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(h.fails(&["network", "inspect", "py1"]).contains("py1"), "removed");
    h.finish();
}
