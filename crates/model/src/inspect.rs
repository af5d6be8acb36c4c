//! Docker-shaped JSON for `weft inspect` and `weft network inspect`, built from the records.

use serde_json::{json, Map, Value};

use crate::{ContainerRecord, NetworkRecord, Status};

pub fn rfc3339(secs: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), enough for timestamps after 1970.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since 1970 of an RFC 3339 UTC date (`2026-12-04T10:00:00Z`, fractions ignored); the
/// inverse of [`rfc3339`] (days-from-civil, Howard Hinnant's algorithm).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split('.').next()?.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// The `docker inspect` shape of a container.
pub fn container_inspect(c: &ContainerRecord) -> Value {
    let mut networks = Map::new();
    for e in &c.sandbox.endpoints {
        networks.insert(
            e.network_name.clone(),
            json!({
                "NetworkID": e.network_id,
                "EndpointID": e.endpoint_id,
                "Gateway": e.gateway.map(|g| g.to_string()).unwrap_or_default(),
                "IPAddress": e.ip.to_string(),
                "IPPrefixLen": e.prefix_len,
                "GlobalIPv6Address": e.ip6.map(|a| a.to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": e.prefix6,
                "IPv6Gateway": e.gateway6.map(|g| g.to_string()).unwrap_or_default(),
                "Aliases": e.aliases,
                "MacAddress": e.mac,
            }),
        );
    }
    let primary = c.sandbox.endpoints.first();
    let mut ports = Map::new();
    for (range, proto) in c.spec.expose.iter().filter_map(|e| crate::parse_expose(e).ok()) {
        for p in range.iter() {
            ports.insert(format!("{p}/{proto}"), Value::Null);
        }
    }
    for m in &c.sandbox.ports {
        let entry = ports.entry(format!("{}/{}", m.container_port, m.proto)).or_insert_with(|| json!([]));
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({"HostIp": m.host_ip.to_string(), "HostPort": m.host_port.to_string()}));
        }
    }
    json!({
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": c.spec.cmd.first().cloned().unwrap_or_default(),
        "Args": c.spec.cmd.iter().skip(1).collect::<Vec<_>>(),
        "Name": format!("/{}", c.name),
        "State": {
            "Status": c.state.status.to_string(),
            "Running": c.state.status == Status::Running,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "StartedAt": rfc3339(c.state.started_at),
            "FinishedAt": rfc3339(c.state.finished_at),
        },
        "LogPath": c.log_path,
        "Config": {
            "Hostname": c.hostname,
            "Env": c.env,
            "Cmd": c.spec.cmd,
            "Tty": c.spec.tty,
            "OpenStdin": c.spec.open_stdin,
            "StdinOnce": c.spec.stdin_once,
        },
        "HostConfig": {
            "NetworkMode": c.network_mode().to_string(),
            "Dns": c.spec.dns,
            "DnsSearch": c.spec.dns_search,
            "ExtraHosts": c.spec.extra_hosts,
            "AutoRemove": c.spec.auto_remove,
            "Privileged": c.spec.privileged,
            "CapAdd": c.spec.cap_add,
            "CapDrop": c.spec.cap_drop,
            "Memory": c.spec.memory,
            "NanoCpus": c.spec.nano_cpus,
            "PidsLimit": c.spec.pids_limit,
            "DeviceCgroupRules": c.spec.device_cgroup_rules,
        },
        "NetworkSettings": {
            "SandboxKey": c.sandbox.netns.clone().unwrap_or_default(),
            "IPAddress": primary.map(|e| e.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": primary.map(|e| e.prefix_len).unwrap_or(0),
            "Gateway": primary.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
            "MacAddress": primary.map(|e| e.mac.clone()).unwrap_or_default(),
            "GlobalIPv6Address": primary.and_then(|e| e.ip6).map(|a| a.to_string()).unwrap_or_default(),
            "GlobalIPv6PrefixLen": primary.map(|e| e.prefix6).unwrap_or(0),
            "IPv6Gateway": primary.and_then(|e| e.gateway6).map(|g| g.to_string()).unwrap_or_default(),
            "Ports": ports,
            "Networks": networks,
        },
    })
}

/// An attached namespace (`weft sandbox inspect`), in the inspect shapes' style: its endpoint's
/// fields at the top.
pub fn sandbox_inspect(s: &crate::SandboxRecord) -> Value {
    let mut v = json!({"Name": s.key, "Netns": s.netns(), "Pid": s.pid});
    if let (Some(e), Some(m)) = (s.endpoint(), v.as_object_mut()) {
        for (k, x) in [
            ("Network", json!(e.network_name)),
            ("NetworkID", json!(e.network_id)),
            ("EndpointID", json!(e.endpoint_id)),
            ("Interface", json!(e.ifname)),
            ("HostInterface", json!(e.host_ifname)),
            ("IPAddress", json!(e.ip.to_string())),
            ("IPPrefixLen", json!(e.prefix_len)),
            ("GlobalIPv6Address", json!(e.ip6.map(|ip| ip.to_string()).unwrap_or_default())),
            ("MacAddress", json!(e.mac)),
            ("Aliases", json!(e.aliases)),
        ] {
            m.insert(k.into(), x);
        }
    }
    v
}

/// The `docker network inspect` shape of a network; `containers` lists (id, name, endpoint).
pub fn network_inspect(n: &NetworkRecord, containers: &[&ContainerRecord]) -> Value {
    let mut members = Map::new();
    for c in containers {
        for e in c.sandbox.endpoints.iter().filter(|e| e.network_id == n.id) {
            members.insert(
                c.id.clone(),
                json!({
                    "Name": c.name,
                    "EndpointID": e.endpoint_id,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix_len),
                    "IPv6Address": e.ip6.map(|a| format!("{a}/{}", e.prefix6)).unwrap_or_default(),
                }),
            );
        }
    }
    let mut ipam = json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()});
    if let Some(r) = n.ip_range {
        ipam["IPRange"] = Value::String(r.to_string());
    }
    if !n.aux_addresses.is_empty() {
        ipam["AuxiliaryAddresses"] = json!(n.aux_addresses);
    }
    let mut configs = vec![ipam];
    if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
        configs.push(json!({"Subnet": s6.to_string(), "Gateway": g6.to_string()}));
    }
    let mut options: Map<String, Value> =
        n.options.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    match n.driver {
        crate::DriverKind::Bridge => {
            options.insert("com.docker.network.bridge.name".into(), n.bridge.clone().into());
            options.insert("com.docker.network.driver.mtu".into(), n.mtu.to_string().into());
            options.insert("com.docker.network.bridge.enable_icc".into(), n.icc.to_string().into());
            options.insert("com.docker.network.bridge.enable_ip_masquerade".into(), n.masquerade.to_string().into());
        }
        // The link the endpoints hang off: the parent, or the dummy made for an internal network.
        crate::DriverKind::Macvlan => {
            options.insert(crate::OPT_PARENT.into(), n.bridge.clone().into());
        }
        crate::DriverKind::Ovs => {
            options.insert(crate::OPT_OVS_BRIDGE.into(), n.bridge.clone().into());
        }
        crate::DriverKind::Overlay => {
            options.insert("com.docker.network.driver.mtu".into(), n.mtu.to_string().into());
            options.insert("com.docker.network.driver.overlay.vxlanid_list".into(), n.vni().map(|v| v.to_string()).unwrap_or_default().into());
        }
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": rfc3339(n.created),
        "Scope": n.scope.name(),
        "Driver": n.driver.name(),
        "IPAM": {"Driver": "default", "Options": {}, "Config": configs},
        "EnableIPv6": n.subnet6.is_some(),
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Labels": n.labels,
        "Containers": members,
        "Options": options,
    })
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
