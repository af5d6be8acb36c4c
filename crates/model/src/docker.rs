//! Docker Engine API shapes, for the part weftd serves under `/vX.YY/` (`docs/api.md`): the
//! requests as Docker's clients send them, converted to weft's own specs, and Docker's filters.
//! weft's own API stays as it is; these types only translate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ConnectSpec, DisconnectSpec, ModelError, NetworkRecord, NetworkSpec};

/// The API version weftd speaks (what Docker 20.10 speaks; newer clients negotiate down to it).
pub const API_VERSION: &str = "1.41";
/// The oldest version it accepts.
pub const MIN_API_VERSION: &str = "1.24";

fn bad(m: impl Into<String>) -> ModelError {
    ModelError::Network(m.into())
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkCreate {
    pub name: String,
    pub check_duplicate: Option<bool>,
    pub driver: Option<String>,
    pub scope: Option<String>,
    pub internal: Option<bool>,
    pub attachable: Option<bool>,
    pub ingress: Option<bool>,
    pub config_only: Option<bool>,
    pub config_from: Option<serde_json::Value>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    pub options: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Option<Vec<IpamConfig>>,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    #[serde(rename = "IPRange")]
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub auxiliary_addresses: Option<BTreeMap<String, String>>,
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ModelError> {
    s.parse().map_err(|_| bad(format!("invalid {what} {s:?}")))
}

impl NetworkCreate {
    /// weft's spec of the network; what weft cannot make (swarm's ingress and config networks,
    /// another IPAM driver) is refused.
    pub fn into_spec(self) -> Result<NetworkSpec, ModelError> {
        if self.ingress == Some(true) || self.config_only == Some(true) || self.config_from.as_ref().is_some_and(|c| !c.is_null()) {
            return Err(bad("ingress and config-only networks are swarm's: weft does not make them"));
        }
        let ipam = self.ipam.unwrap_or_default();
        if let Some(d) = ipam.driver.as_deref().filter(|d| !d.is_empty() && *d != "default") {
            return Err(bad(format!("IPAM driver {d:?}: weft has its own IPAM only (\"default\")")));
        }
        if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(bad("IPAM options: weft's IPAM takes none"));
        }
        let mut spec = NetworkSpec {
            name: self.name,
            driver: self.driver.filter(|d| !d.is_empty()).unwrap_or_else(|| "bridge".into()),
            scope: self.scope.unwrap_or_default(),
            internal: self.internal.unwrap_or(false),
            enable_ipv6: self.enable_ipv6.unwrap_or(false),
            options: self.options.unwrap_or_default(),
            labels: self.labels.unwrap_or_default(),
            ..Default::default()
        };
        let (mut v4, mut v6) = (false, false);
        for c in ipam.config.unwrap_or_default() {
            let subnet = c.subnet.unwrap_or_default();
            if subnet.contains(':') {
                if v6 {
                    return Err(bad("one IPv6 subnet per network"));
                }
                v6 = true;
                spec.subnet6 = Some(parse("IPv6 subnet", &subnet)?);
                spec.gateway6 = c.gateway.filter(|g| !g.is_empty()).map(|g| parse("IPv6 gateway", &g)).transpose()?;
                if c.ip_range.as_deref().is_some_and(|r| !r.is_empty()) || c.auxiliary_addresses.as_ref().is_some_and(|a| !a.is_empty()) {
                    return Err(bad("an IPv6 IP range or auxiliary addresses: weft takes them for IPv4 only"));
                }
            } else {
                if v4 {
                    return Err(bad("one IPv4 subnet per network"));
                }
                v4 = true;
                if !subnet.is_empty() {
                    spec.subnet = Some(parse("subnet", &subnet)?);
                }
                spec.gateway = c.gateway.filter(|g| !g.is_empty()).map(|g| parse("gateway", &g)).transpose()?;
                spec.ip_range = c.ip_range.filter(|r| !r.is_empty()).map(|r| parse("IP range", &r)).transpose()?;
                for (k, a) in c.auxiliary_addresses.unwrap_or_default() {
                    spec.aux_addresses.insert(k, parse("auxiliary address", &a)?);
                }
            }
        }
        if v6 {
            spec.enable_ipv6 = true;
        }
        Ok(spec)
    }
}

/// `POST /networks/create`'s answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreated {
    pub id: String,
    pub warning: String,
}

/// `POST /networks/{id}/connect`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkConnect {
    pub container: String,
    pub endpoint_config: Option<EndpointSettings>,
}

/// The endpoint settings a client may send (Docker's clients send the whole struct, mostly empty).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    pub aliases: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    pub mac_address: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    pub ipv4: Option<String>,
    #[serde(rename = "IPv6Address")]
    pub ipv6: Option<String>,
    #[serde(rename = "LinkLocalIPs")]
    pub link_local: Option<Vec<String>>,
}

impl NetworkConnect {
    /// weft's connect of a container; what weft does not do on a connect is refused.
    pub fn into_spec(self) -> Result<ConnectSpec, ModelError> {
        if self.container.is_empty() {
            return Err(ModelError::Connect("no Container given".into()));
        }
        let e = self.endpoint_config.unwrap_or_default();
        let ipam = e.ipam_config.unwrap_or_default();
        let nonempty = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
        if nonempty(&ipam.ipv6) || ipam.link_local.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(ModelError::Connect("an IPv6 or link-local address on connect: weft gives a connected container its IPv4 address only".into()));
        }
        if nonempty(&e.mac_address) || e.links.as_ref().is_some_and(|l| !l.is_empty()) || e.driver_opts.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(ModelError::Connect("a MAC address, links or driver options on connect: weft takes an address and aliases".into()));
        }
        let ip_address = ipam.ipv4.filter(|s| !s.is_empty()).map(|s| parse("IPv4 address", &s)).transpose()?;
        Ok(ConnectSpec { container: self.container, ip_address, aliases: e.aliases.unwrap_or_default(), ..Default::default() })
    }
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkDisconnect {
    pub container: String,
    pub force: bool,
}

impl NetworkDisconnect {
    pub fn into_spec(self) -> DisconnectSpec {
        DisconnectSpec { container: self.container, force: self.force }
    }
}

/// Docker's `filters` query: `{"name":{"n1":true}}` (or the older `{"name":["n1"]}`), as
/// field -> values.
pub fn parse_filters(q: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, ModelError> {
    let Some(q) = q.filter(|q| !q.is_empty()) else { return Ok(BTreeMap::new()) };
    let v: serde_json::Value = serde_json::from_str(q).map_err(|e| bad(format!("invalid filters {q:?}: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad(format!("invalid filters {q:?}: expected an object")))?;
    let mut out = BTreeMap::new();
    for (k, vals) in obj {
        let list: Vec<String> = match vals {
            serde_json::Value::Object(m) => m.iter().filter(|(_, on)| on.as_bool() != Some(false)).map(|(s, _)| s.clone()).collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            _ => return Err(bad(format!("invalid filters {q:?}: {k} is neither a list nor a set"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Whether labels match every `label` filter (`KEY` or `KEY=VALUE`).
pub fn labels_match(labels: &BTreeMap<String, String>, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    })
}

/// The networks `docker network ls --filter` keeps: `name` (a part of the name), `id` (a
/// prefix), `driver`, `scope`, `label`, `type` (`builtin`: the default network; `custom`: the
/// rest). Another field is refused, as Docker does.
pub fn network_matches(n: &NetworkRecord, filters: &BTreeMap<String, Vec<String>>) -> Result<bool, ModelError> {
    for (field, vals) in filters {
        if vals.is_empty() {
            continue;
        }
        let builtin = n.name == crate::DEFAULT_NETWORK;
        let ok = match field.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.iter().any(|v| v == n.driver.name()),
            "scope" => vals.iter().any(|v| v == n.scope.name()),
            "label" => labels_match(&n.labels, vals),
            "type" => vals.iter().any(|v| (v == "builtin") == builtin && (v == "builtin" || v == "custom")),
            "dangling" => true,
            other => return Err(bad(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_network_create_becomes_weft_spec() {
        let body = r#"{"Name":"n1","CheckDuplicate":true,"Driver":"bridge","Scope":"local","EnableIPv6":false,"IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.60.0.0/24","IPRange":"10.60.0.128/25","Gateway":"10.60.0.254","AuxiliaryAddresses":{"r":"10.60.0.5"}}]},"Internal":false,"Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{"com.docker.network.bridge.name":"br-api"},"Labels":{"a":"b"}}"#;
        let spec = serde_json::from_str::<NetworkCreate>(body).expect("json").into_spec().expect("spec");
        assert_eq!(spec.subnet.map(|s| s.to_string()).as_deref(), Some("10.60.0.0/24"));
        assert_eq!(spec.gateway.map(|s| s.to_string()).as_deref(), Some("10.60.0.254"));
        assert_eq!(spec.ip_range.map(|s| s.to_string()).as_deref(), Some("10.60.0.128/25"));
        assert_eq!(spec.aux_addresses.get("r").map(|a| a.to_string()).as_deref(), Some("10.60.0.5"));
        assert_eq!(spec.options.get("com.docker.network.bridge.name").map(String::as_str), Some("br-api"));
        let v6 = r#"{"Name":"n6","IPAM":{"Config":[{"Subnet":"10.61.0.0/24"},{"Subnet":"fd00:61::/64","Gateway":"fd00:61::1"}]}}"#;
        let spec = serde_json::from_str::<NetworkCreate>(v6).expect("json").into_spec().expect("spec");
        assert!(spec.enable_ipv6 && spec.subnet6.is_some() && spec.gateway6.is_some());
        for refused in [r#"{"Name":"x","Ingress":true}"#, r#"{"Name":"x","IPAM":{"Driver":"other"}}"#, r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"nonsense"}]}}"#] {
            assert!(serde_json::from_str::<NetworkCreate>(refused).expect("json").into_spec().is_err(), "{refused}");
        }
    }

    #[test]
    fn a_docker_connect_becomes_weft_connect() {
        let body = r#"{"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.60.0.200"},"Links":null,"Aliases":["web"],"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","MacAddress":"","DriverOpts":null}}"#;
        let spec = serde_json::from_str::<NetworkConnect>(body).expect("json").into_spec().expect("spec");
        assert_eq!((spec.container.as_str(), spec.ip_address.map(|i| i.to_string()), spec.aliases), ("c1", Some("10.60.0.200".into()), vec!["web".to_string()]));
        let mac = r#"{"Container":"c1","EndpointConfig":{"MacAddress":"02:00:00:00:00:01"}}"#;
        assert!(serde_json::from_str::<NetworkConnect>(mac).expect("json").into_spec().is_err());
    }

    #[test]
    fn filters_in_both_layouts() {
        let f = parse_filters(Some(r#"{"name":{"n1":true},"label":["a=b"]}"#)).expect("filters");
        assert_eq!(f.get("name"), Some(&vec!["n1".to_string()]));
        assert_eq!(f.get("label"), Some(&vec!["a=b".to_string()]));
        assert!(parse_filters(Some("nope")).is_err());
        let labels: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        assert!(labels_match(&labels, &["a".into(), "a=b".into()]) && !labels_match(&labels, &["a=c".into()]));
    }
}
