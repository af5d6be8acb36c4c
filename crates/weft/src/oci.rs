//! `weft oci-hook`: weft networking for containers an OCI runtime (runc) starts from a bundle.
//! As a `createRuntime` (or `prestart`) hook it reads the container's state on stdin, the
//! bundle's annotations, and attaches the container's network namespace to the networks they
//! name; the attachment goes when the container's process exits. As a `poststop` hook it
//! detaches at once (idempotent).
//!
//! Annotations: `io.weft.network` (networks, comma-separated: eth0, eth1, …), `io.weft.name`
//! (the DNS name; default the first 12 characters of the container id), `io.weft.ip` (the
//! address on the first network), `io.weft.alias` and `io.weft.publish` (comma-separated, as
//! `--alias` and `-p`).

use std::io::Read;

use anyhow::{bail, Context};
use hyper::Method;
use serde_json::Value;
use weft_model::{AttachReply, AttachSpec, AttachmentRef, RuntimeRef};

use crate::client::Client;

/// The runtime kind of OCI attachments in weft's records.
const KIND: &str = "oci";

pub async fn hook(c: &Client) -> anyhow::Result<()> {
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin).context("reading the container's state on stdin")?;
    let state: Value = serde_json::from_str(&stdin).context("the container's state on stdin is not JSON")?;
    let id = state["id"].as_str().filter(|i| !i.is_empty()).context("the state has no container id")?;
    let annotations = annotations(&state)?;
    let get = |k: &str| annotations.get(k).and_then(Value::as_str).map(str::to_string);
    let list = |k: &str| get(k).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>()).unwrap_or_default();
    let networks = list("io.weft.network");
    if networks.is_empty() {
        // Not a container for weft: nothing to do.
        return Ok(());
    }
    let runtime = Some(RuntimeRef { kind: KIND.into(), id: id.to_string() });
    match state["status"].as_str().unwrap_or_default() {
        "stopped" => {
            for (i, network) in networks.iter().enumerate() {
                let at = AttachmentRef { network: network.clone(), runtime: runtime.clone(), ifname: format!("eth{i}") };
                c.json(Method::POST, "/attachments/detach", Some(serde_json::to_value(&at)?)).await?;
            }
            Ok(())
        }
        _ => {
            let pid = state["pid"].as_u64().filter(|p| *p > 0).context("the state has no pid: run weft oci-hook as a createRuntime or prestart hook")? as u32;
            let netns = format!("/proc/{pid}/ns/net");
            let ns = std::fs::metadata(&netns).with_context(|| format!("the container's namespace {netns}"))?;
            let own = std::fs::metadata("/proc/self/ns/net")?;
            if std::os::unix::fs::MetadataExt::ino(&ns) == std::os::unix::fs::MetadataExt::ino(&own) {
                bail!("container {id} shares the runtime's network namespace: give it a network namespace of its own in config.json");
            }
            let ip = get("io.weft.ip").map(|s| s.parse().with_context(|| format!("io.weft.ip {s:?} is not an IPv4 address"))).transpose()?;
            for (i, network) in networks.iter().enumerate() {
                let first = i == 0;
                let spec = AttachSpec {
                    network: network.clone(),
                    runtime: runtime.clone(),
                    name: get("io.weft.name"),
                    netns: netns.clone(),
                    pid: Some(pid),
                    ifname: format!("eth{i}"),
                    ip_address: ip.filter(|_| first),
                    mac_address: None,
                    aliases: list("io.weft.alias"),
                    publish: if first { list("io.weft.publish") } else { Vec::new() },
                    host_end_only: false,
                };
                let _: AttachReply = c.typed(Method::POST, "/attachments", Some(&spec)).await?;
            }
            Ok(())
        }
    }
}

/// The state's annotations (runc passes them), else the bundle's `config.json`'s.
fn annotations(state: &Value) -> anyhow::Result<serde_json::Map<String, Value>> {
    if let Some(a) = state["annotations"].as_object().filter(|a| !a.is_empty()) {
        return Ok(a.clone());
    }
    let bundle = state["bundle"].as_str().context("the state has neither annotations nor a bundle")?;
    let path = std::path::Path::new(bundle).join("config.json");
    let config: Value = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(config["annotations"].as_object().cloned().unwrap_or_default())
}
