//! `weft network graph [NET…] > net.svg`: a picture of this host's networks, drawn as SVG
//! through the `svg` crate. Each network is a column (name, driver, subnet, bridge) holding its
//! containers and attached namespaces with their addresses and published ports; a global
//! network's column goes on with the other hosts' members, under the host they are on. The hosts
//! sharing the store head the picture; point-to-point links are listed under the columns.

use serde_json::Value;
use svg::node::element::{Line, Rectangle, Text};
use svg::Document;

const COL: usize = 330;
const ROW: usize = 22;
const TOP: usize = 60;

fn text(x: usize, y: usize, size: u32, weight: &str, s: &str) -> Text {
    Text::new(s).set("x", x).set("y", y).set("font-family", "DejaVu Sans, Helvetica, sans-serif").set("font-size", size).set("font-weight", weight)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The published ports of a container (its inspect JSON) as `HOST:PORT→PORT/PROTO` entries.
fn ports(c: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (port, binds) in c["NetworkSettings"]["Ports"].as_object().into_iter().flatten() {
        for b in binds.as_array().into_iter().flatten() {
            out.push(format!("{}:{}→{port}", s(b, "HostIp"), s(b, "HostPort")));
        }
    }
    out
}

/// A row of a network's column: kind (container, namespace, another host's member or a host's
/// heading), name, address, published ports.
type Member = (&'static str, String, String, Vec<String>);

/// A host's name with its address, when it has one.
fn host_label(name: &str, addr: &str) -> String {
    if addr.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({addr})")
    }
}

/// The SVG: `host` names the machine; `nodes` the hosts sharing its store (`/nodes`: none
/// without one); `networks` as `network inspect` gives them; `containers` as `inspect` does;
/// `sandboxes` and `links` as their lists do.
pub fn render(host: &str, nodes: &[Value], networks: &[Value], containers: &[Value], sandboxes: &[Value], links: &[Value]) -> String {
    // Each network's members: (kind, name, address, ports).
    let columns: Vec<(&Value, Vec<Member>)> = networks
        .iter()
        .map(|n| {
            let mut members: Vec<Member> = Vec::new();
            for c in containers {
                if let Some(e) = c["NetworkSettings"]["Networks"].get(s(n, "Name")) {
                    // Ports are published on the first endpoint's address (`NetworkSettings.IPAddress`).
                    let p = if s(e, "IPAddress") == s(&c["NetworkSettings"], "IPAddress") { ports(c) } else { Vec::new() };
                    members.push(("container", s(c, "Name").trim_start_matches('/').to_string(), s(e, "IPAddress").to_string(), p));
                }
            }
            for sb in sandboxes.iter().filter(|sb| s(sb, "Network") == s(n, "Name")) {
                members.push(("namespace", s(sb, "Name").to_string(), s(sb, "IPAddress").to_string(), Vec::new()));
            }
            // The other hosts' members, under each host's heading.
            let remote: Vec<&Value> = n["RemoteContainers"].as_object().map(|m| m.values().collect()).unwrap_or_default();
            for p in n["Peers"].as_array().into_iter().flatten().filter(|p| s(p, "Name") != host) {
                members.push(("host", format!("on {}", host_label(s(p, "Name"), s(p, "IP"))), String::new(), Vec::new()));
                for r in remote.iter().filter(|r| s(r, "Host") == s(p, "Name")) {
                    members.push(("remote", s(r, "Name").to_string(), s(r, "IPv4Address").split('/').next().unwrap_or_default().to_string(), Vec::new()));
                }
            }
            (n, members)
        })
        .collect();
    let rows = columns.iter().map(|(_, m)| m.iter().map(|x| 1 + x.3.len()).sum::<usize>()).max().unwrap_or(0);
    let links_h = if links.is_empty() { 0 } else { 40 + ROW * links.len() };
    let title = if nodes.len() > 1 {
        let hosts: Vec<String> = nodes.iter().map(|n| host_label(s(n, "ID"), s(n, "Addr")) + if n["Self"] == true { " ← this one" } else { "" }).collect();
        format!("hosts sharing the store: {}", hosts.join(" · "))
    } else {
        format!("host {host}")
    };
    // Wide enough for the columns and the title (bold 18 px: ~11 px a character).
    let width = (40 + COL * columns.len().max(1)).max(40 + 11 * title.chars().count());
    let height = TOP + 90 + ROW * rows + 40 + links_h;
    let mut doc = Document::new().set("width", width).set("height", height).set("viewBox", (0, 0, width, height));
    doc = doc.add(Rectangle::new().set("width", width).set("height", height).set("fill", "#ffffff"));
    doc = doc.add(text(20, 30, 18, "bold", &title));
    for (i, (n, members)) in columns.iter().enumerate() {
        let x = 20 + i * COL;
        let h = 80 + ROW * members.iter().map(|m| 1 + m.3.len()).sum::<usize>() + 10;
        doc = doc.add(Rectangle::new().set("x", x).set("y", TOP - 20 + 20).set("width", COL - 20).set("height", h).set("rx", 8).set("fill", "#eef4fb").set("stroke", "#3a6ea5").set("stroke-width", 2));
        let subnet = n["IPAM"]["Config"].as_array().map(|c| c.iter().map(|x| s(x, "Subnet").to_string()).collect::<Vec<_>>().join(" ")).unwrap_or_default();
        let bridge = n["Options"]["com.docker.network.bridge.name"].as_str().or(n["Options"]["parent"].as_str()).or(n["Options"]["ovs.bridge"].as_str()).unwrap_or_default();
        let scope = if s(n, "Scope") == "global" { ", global" } else { "" };
        doc = doc.add(text(x + 12, TOP + 24, 16, "bold", &format!("{} ({}{scope})", s(n, "Name"), s(n, "Driver"))));
        doc = doc.add(text(x + 12, TOP + 44, 12, "normal", &format!("{subnet}  {bridge}")));
        doc = doc.add(Line::new().set("x1", x + 10).set("y1", TOP + 54).set("x2", x + COL - 30).set("y2", TOP + 54).set("stroke", "#3a6ea5"));
        let mut y = TOP + 54 + ROW;
        for (kind, name, ip, ps) in members {
            let (fill, weight, indent) = match *kind {
                "container" => ("#1f3b57", "bold", 14),
                "namespace" => ("#6a3d9a", "bold", 14),
                "host" => ("#3a6ea5", "bold", 8),
                _ => ("#2e6b30", "normal", 14),
            };
            doc = doc.add(text(x + indent, y, 13, weight, name).set("fill", fill));
            doc = doc.add(text(x + 150, y, 13, "normal", ip));
            y += ROW;
            for p in ps {
                doc = doc.add(text(x + 30, y, 12, "normal", &format!("port {p}")).set("fill", "#8a4b08"));
                y += ROW;
            }
        }
    }
    if !links.is_empty() {
        let mut y = TOP + 90 + ROW * rows + 40;
        doc = doc.add(text(20, y, 15, "bold", "point-to-point links"));
        for l in links {
            y += ROW;
            let end = |e: &Value| format!("{}:{} {}", s(e, "Name"), s(e, "Interface"), s(e, "Address"));
            doc = doc.add(text(30, y, 13, "normal", &format!("{} ⟷ {}", end(&l["A"]), end(&l["B"]))));
        }
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_network_container_namespace_address_port_and_link_is_drawn() {
        let nets = [json!({"Name": "front", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.60.0.0/24"}]}, "Options": {"com.docker.network.bridge.name": "br-front"}})];
        let cs = [json!({"Name": "/web", "NetworkSettings": {"IPAddress": "10.60.0.2", "Networks": {"front": {"IPAddress": "10.60.0.2"}}, "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}}})];
        let sbs = [json!({"Name": "probe", "Network": "front", "IPAddress": "10.60.0.3"})];
        let links = [json!({"A": {"Name": "web", "Interface": "p0", "Address": "10.1.1.1"}, "B": {"Name": "probe", "Interface": "p1", "Address": "10.1.1.2"}})];
        let out = super::render("h1", &[], &nets, &cs, &sbs, &links);
        for needle in ["<svg", "host h1", "front (bridge)", "10.60.0.0/24", "br-front", "\nweb\n", "10.60.0.2", "port 0.0.0.0:8080→80/tcp", "\nprobe\n", "10.60.0.3", "web:p0 10.1.1.1"] {
            assert!(out.contains(needle), "{needle} in {out}");
        }
    }

    #[test]
    fn a_global_network_shows_the_other_hosts_members_under_their_host() {
        let nodes = [json!({"ID": "h1", "Addr": "192.168.200.1", "Self": true}), json!({"ID": "h2", "Addr": "192.168.200.2", "Self": false})];
        let nets = [json!({"Name": "ov", "Driver": "overlay", "Scope": "global", "IPAM": {"Config": [{"Subnet": "10.70.0.0/24"}]},
            "Peers": [{"Name": "h1", "IP": "192.168.200.1"}, {"Name": "h2", "IP": "192.168.200.2"}],
            "RemoteContainers": {"ep1": {"Name": "db", "IPv4Address": "10.70.0.3/24", "Host": "h2"}}})];
        let cs = [json!({"Name": "/web", "NetworkSettings": {"IPAddress": "10.70.0.2", "Networks": {"ov": {"IPAddress": "10.70.0.2"}}}})];
        let out = super::render("h1", &nodes, &nets, &cs, &[], &[]);
        for needle in ["h1 (192.168.200.1) ← this one", "h2 (192.168.200.2)", "ov (overlay, global)", "\nweb\n", "on h2 (192.168.200.2)", "\ndb\n", "10.70.0.3"] {
            assert!(out.contains(needle), "{needle} in {out}");
        }
        assert!(!out.contains("on h1"), "this host's members are not under a heading: {out}");
    }
}
