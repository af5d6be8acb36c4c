//! The bodies of the API that are not records: what a client sends to connect and disconnect,
//! and what weftd answers. One type each, used by weftd and the CLI alike (no hand-built JSON).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// `POST /networks/{id}/connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct ConnectSpec {
    pub container: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// Accepted as Docker's clients send it with a disconnect; meaningless here.
    pub force: bool,
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct DisconnectSpec {
    pub container: String,
    pub force: bool,
}

/// The answer naming what was made: `POST /containers/run`, `POST /networks/create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IdReply {
    pub id: String,
}

/// `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct WaitReply {
    pub status_code: i32,
}

/// `POST /networks/prune`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReply {
    pub networks_deleted: Vec<String>,
}
