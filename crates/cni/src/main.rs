//! `weft-cni`: weft's CNI plugin (spec 0.3.0 to 1.1.0: ADD, DEL, CHECK, STATUS, GC, VERSION).
//! Each call is one request to weftd's attachment API (`docs/integrations.md`): the container
//! gets a weft endpoint, with weft's IPAM, DNS, published ports and firewall. Errors are CNI
//! error objects on stdout, as libcni reads them.

mod cni;
mod http;

use std::io::{Read, Write};

use cni::{code, Call, CniError, Conf};
use serde_json::{json, Value};

fn main() {
    let call = Call {
        command: env("CNI_COMMAND"),
        container_id: env("CNI_CONTAINERID"),
        netns: env("CNI_NETNS"),
        ifname: env("CNI_IFNAME"),
        args: env("CNI_ARGS"),
    };
    let mut stdin = Vec::new();
    // VERSION may come without a configuration.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let conf = Conf::parse(&stdin);
    let version = conf.as_ref().map(|c| c.version.clone()).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "1.1.0".into());
    let out = match conf.and_then(|c| run(&call, &c)) {
        Ok(v) => v,
        Err(e) => {
            print(&e.to_json(&version));
            std::process::exit(1);
        }
    };
    if let Some(v) = out {
        print(&v);
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

fn print(v: &Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{v}");
}

/// One call: what to print on success.
fn run(call: &Call, conf: &Conf) -> Result<Option<Value>, CniError> {
    if call.command == "VERSION" {
        return Ok(Some(json!({"cniVersion": conf.version, "supportedVersions": cni::SUPPORTED})));
    }
    conf.check_version()?;
    let sock = conf.socket();
    match call.command.as_str() {
        "ADD" => {
            let spec = cni::attach_spec(call, conf)?;
            let reply = api(&sock, "POST", "/attachments", &spec)?;
            let reply = serde_json::from_slice(&reply).map_err(|e| CniError::new(code::FAILED, format!("weftd's answer to ADD: {e}")))?;
            Ok(Some(cni::result(conf, call, &reply)))
        }
        "DEL" => api(&sock, "POST", "/attachments/detach", &cni::attachment(call, conf)?).map(|_| None),
        "CHECK" => api(&sock, "POST", "/attachments/check", &cni::attachment(call, conf)?).map(|_| None),
        "GC" => api(&sock, "POST", "/attachments/gc", &cni::collect_spec(conf)?).map(|_| None),
        "STATUS" => {
            let net = conf.network()?;
            match http::request(&sock, "GET", &format!("/networks/{net}"), b"") {
                Ok((200, _)) => Ok(None),
                Ok((_, body)) => Err(CniError::new(code::NOT_AVAILABLE, cni::from_status(404, &body).msg)),
                Err(e) => Err(CniError::new(code::NOT_AVAILABLE, format!("weftd is not answering at {sock}: {e}"))),
            }
        }
        "" => Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set")),
        other => Err(CniError::new(code::INVALID_ENV, format!("unknown CNI_COMMAND {other:?}"))),
    }
}

/// One request to weftd; its answer's body, or the CNI error for its failure.
fn api(sock: &str, method: &str, path: &str, body: &impl serde::Serialize) -> Result<Vec<u8>, CniError> {
    let body = serde_json::to_vec(body).map_err(|e| CniError::new(code::FAILED, e.to_string()))?;
    match http::request(sock, method, path, &body) {
        Ok((s, b)) if (200..300).contains(&s) => Ok(b),
        Ok((s, b)) => Err(cni::from_status(s, &b)),
        Err(e) => Err(CniError::new(code::TRY_AGAIN, format!("weftd is not answering at {sock}: {e}"))),
    }
}
