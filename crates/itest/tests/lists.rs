//! `--filter` and `--format` on the lists (issue 22): `ps`, `network ls`, `sandbox ls`, `link ls`
//! filtered and formatted as docker's, and a bad filter refused in one line.

use weft_itest::{Host, Netns};

#[test]
fn lists_filter_and_format_as_dockers() {
    let mut h = Host::new("lst");
    h.start(&[]);
    h.ok(&["network", "create", "--label", "team=a", "front"]);
    h.ok(&["network", "create", "back"]);
    h.run_d("c1", &[], &["sleep", "300"]);
    h.run_d("c2", &["--network", "front"], &["sleep", "300"]);
    h.run_d("c3", &["--net", "none"], &["true"]);
    h.ok(&["wait", "c3"]);
    let lines = |args: &[&str]| {
        let mut v: Vec<String> = h.ok(args).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(lines(&["ps", "--format", "{{.Name}}"]), ["c1", "c2"]);
    assert_eq!(lines(&["ps", "-a", "--filter", "status=exited", "--format", "{{.Name}}"]), ["c3"], "{}", h.ok(&["ps", "-a", "--format", "json"]));
    assert_eq!(lines(&["ps", "--filter", "network=front", "--format", "{{.Name}} {{.NetworkMode}}"]), ["c2 front"]);
    assert_eq!(lines(&["ps", "--filter", "name=c", "--filter", "name=nothing", "--format", "{{.Name}}"]), ["c1", "c2"], "a key's values are alternatives");
    let json: Vec<serde_json::Value> = h.ok(&["ps", "--format", "json"]).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(json.len(), 2);
    assert_eq!(lines(&["network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}"]), ["front"]);
    assert_eq!(lines(&["network", "ls", "--filter", "name=ba", "--format", "{{.Name}} {{.Driver}}"]), ["back bridge"]);
    let ns = Netns::named(&h, "s1");
    h.ok(&["network", "connect", "--netns", &ns.path(), "--name", "probe", "back"]);
    assert_eq!(lines(&["sandbox", "ls", "--filter", "network=back", "--format", "{{.Name}}"]), ["probe"]);
    h.ok(&["link", "create", "c1", "probe"]);
    assert_eq!(lines(&["link", "ls", "--filter", "name=probe", "--format", "{{.A.Name}}-{{.B.Name}}"]), ["c1-probe"]);
    assert!(h.ok(&["link", "ls", "--filter", "name=c2", "--format", "{{.Id}}"]).is_empty());
    // The picture: valid SVG naming every network, container, namespace, address and port.
    h.run_d("web", &["--network", "front", "-p", "8080:80"], &["sleep", "300"]);
    let svg = h.ok(&["network", "graph"]);
    let script = "import sys, xml.etree.ElementTree as ET\nroot = ET.fromstring(sys.stdin.read())\nprint('\\n'.join(t.text.strip() for t in root.iter('{http://www.w3.org/2000/svg}text') if t.text))";
    let mut py = std::process::Command::new("/usr/bin/python3").args(["-c", script]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().expect("python3");
    std::io::Write::write_all(&mut py.stdin.take().expect("stdin"), svg.as_bytes()).expect("svg to the parser");
    let o = py.wait_with_output().expect("parser");
    assert!(o.status.success(), "not valid SVG (XML): {svg}");
    let texts = String::from_utf8_lossy(&o.stdout).to_string();
    let mut wanted: Vec<String> = vec!["bridge (bridge)".into(), "front (bridge)".into(), "back (bridge)".into(), "probe".into(), "port 0.0.0.0:8080→80/tcp".into()];
    for c in ["c1", "c2", "web"] {
        wanted.push(c.into());
        wanted.push(h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", c]));
    }
    wanted.push(h.ok(&["sandbox", "inspect", "-f", "{{.IPAddress}}", "probe"]));
    for w in &wanted {
        assert!(texts.lines().any(|l| l == w || l.contains(w.as_str())), "{w:?} in the picture: {texts}");
    }
    assert!(texts.contains("c1:") && texts.contains("probe:"), "the link: {texts}");
    let only = h.ok(&["network", "graph", "back"]);
    assert!(only.contains("back (bridge)") && !only.contains("front (bridge)"), "one network");
    assert!(h.fails(&["network", "graph", "nosuch"]).contains("no such network: nosuch"));
    std::fs::write(h.dir.join("net.svg"), &svg).expect("svg file");

    let bad = h.fails(&["ps", "--filter", "driver=bridge"]);
    assert!(bad.contains("invalid filter 'driver'") && bad.lines().count() == 1, "{bad}");
    assert!(h.fails(&["network", "ls", "--filter", "nonsense"]).contains("KEY=VALUE"));
    h.ok(&["network", "disconnect", "back", "probe"]);
    drop(ns);
    h.finish();
}

/// Long operations show where they are on a terminal and stay quiet when piped: `rm -f` of many
/// containers.
#[test]
fn rm_of_many_shows_progress_on_a_terminal_only() {
    let mut h = Host::new("prg");
    h.start(&[]);
    let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    for n in &names {
        h.run_d(n, &["--net", "none"], &["sleep", "300"]);
    }
    let mut args = vec!["rm", "-f"];
    args.extend(names[..2].iter().map(String::as_str));
    let piped = h.weft(&args);
    assert!(piped.status.success());
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("removing") && !err.contains('\r'), "nothing on a pipe: {err:?}");
    assert_eq!(String::from_utf8_lossy(&piped.stdout).lines().collect::<Vec<_>>(), ["p0", "p1"]);
    let mut args = vec!["rm", "-f"];
    args.extend(names[2..].iter().map(String::as_str));
    let mut t = h.terminal(&args);
    t.expect("removing 2/2 p3");
    let seen = t.seen.clone();
    assert!(seen.contains("removing 1/2 p2"), "{seen:?}");
    assert_eq!(t.wait(), 0);
    h.finish();
}
