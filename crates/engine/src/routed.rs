//! Routed networks (`-d bridge -o com.weft.routed=true --scope global --subnet RANGE`): each host
//! takes a block of the range for its own containers, claimed in the shared store
//! (`/weft/subnets/<net-id>/<block>`, create-if-absent, holding the host's id), and routes to the
//! other hosts' blocks through their advertised addresses: the packets travel as they are, no
//! encapsulation. The other hosts' blocks reach this host's cache only through the store's watch;
//! a block's route exists while its host is registered (its lease renewed), as flannel's. A
//! block stays its host's while the network exists, so a host that comes back after its lease
//! expired (or across a partition) finds its block, and nobody else was handed its addresses.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_model::NetworkRecord;
use weft_store::{Compare, Event, Op, Txn};

use crate::follow::{follow, Followed};
use crate::{Engine, EngineError, Result, State};

/// `a.b.c.d_len`: a block as the last part of a key.
fn block_key(b: &Ipv4Net) -> String {
    format!("{}_{}", b.network(), b.prefix_len())
}

fn parse_block_key(s: &str) -> Option<Ipv4Net> {
    let (ip, len) = s.split_once('_')?;
    Ipv4Net::new(ip.parse().ok()?, len.parse().ok()?).ok()
}

impl State {
    /// The routes wanted now: other registered hosts' blocks of the routed networks this host
    /// has, through their addresses.
    pub(crate) fn wanted_routes(&self, me: &str) -> HashMap<Ipv4Net, Ipv4Addr> {
        self.blocks
            .iter()
            .filter(|((net, _), _)| self.networks.get(net).is_some_and(|n| n.rec.routed_range.is_some()))
            .filter(|(_, host)| host.as_str() != me)
            .filter_map(|((_, block), host)| Some((*block, self.nodes.get(host)?.addr?)))
            .collect()
    }
}

impl Engine {
    /// A routed network as this host has it: its subnet is this host's block of the range
    /// (claimed now if it has none yet), its gateway the block's first address. Other networks
    /// are returned as they are.
    pub(crate) async fn local_view(&self, rec: NetworkRecord) -> Result<NetworkRecord> {
        if !rec.routed() || rec.routed_range.is_some() {
            return Ok(rec);
        }
        let range = rec.subnet;
        let prefix = self.keys.subnets(&rec.id);
        let me = self.keys.host().to_string();
        let mut block = None;
        for _ in 0..8 {
            let (kvs, _) = self.store.range(&prefix).await?;
            if let Some(mine) = kvs.iter().find(|kv| kv.value == me.as_bytes()).and_then(|kv| parse_block_key(kv.key.strip_prefix(&prefix)?)) {
                block = Some(mine);
                break;
            }
            let taken: Vec<Ipv4Net> = kvs.iter().filter_map(|kv| parse_block_key(kv.key.strip_prefix(&prefix)?)).collect();
            let free = range.subnets(rec.routed_block()).map_err(|_| EngineError::Refused(format!("network {}: no /{} blocks in {range}", rec.name, rec.routed_block())))?.find(|b| !taken.contains(b));
            let Some(free) = free else {
                return Err(EngineError::Refused(format!("network {}: every /{} block of {range} is another host's", rec.name, rec.routed_block())));
            };
            let key = format!("{prefix}{}", block_key(&free));
            let txn = Txn { compare: vec![Compare::Missing(key.clone())], success: vec![Op::Put(key, me.clone().into_bytes())], ..Txn::default() };
            if self.store.txn(txn).await?.succeeded {
                block = Some(free);
                break;
            }
        }
        let block = block.ok_or_else(|| EngineError::Contention(format!("network {}: other hosts kept taking the blocks offered", rec.name)))?;
        let gateway = block.hosts().next().ok_or_else(|| EngineError::Refused(format!("block {block} has no host addresses")))?;
        tracing::info!(network = %rec.name, %block, "this host's block of the routed network");
        Ok(NetworkRecord { subnet: block, gateway, ip_range: None, routed_range: Some(range), ..rec })
    }

    /// The store operations that release every host's block of network `id` (with its record).
    pub(crate) async fn unclaim_blocks(&self, id: &str) -> Result<Vec<Op>> {
        Ok(self.store.range(&self.keys.subnets(id)).await?.0.into_iter().map(|kv| Op::Delete(kv.key)).collect())
    }

    /// Follows every host's blocks into the cache (the routes follow: `sync_peers`).
    pub(crate) async fn follow_blocks(self: &std::sync::Arc<Self>) -> Result<()> {
        let eng = self.clone();
        let root = self.keys.subnets("");
        let parse = {
            let root = root.clone();
            move |key: &str| -> Option<(String, Ipv4Net)> {
                let (net, block) = key.strip_prefix(&root)?.split_once('/')?;
                Some((net.to_string(), parse_block_key(block)?))
            }
        };
        follow(self.store.clone(), root, move |f| {
            {
                let mut st = eng.lock();
                match f {
                    Followed::Reset(kvs, _) => st.blocks = kvs.iter().filter_map(|kv| Some((parse(&kv.key)?, String::from_utf8(kv.value.clone()).ok()?))).collect(),
                    Followed::Change(Event::Put(kv)) => {
                        if let (Some(k), Ok(host)) = (parse(&kv.key), String::from_utf8(kv.value.clone())) {
                            st.blocks.insert(k, host);
                        }
                    }
                    Followed::Change(Event::Delete { key, .. }) => {
                        if let Some(k) = parse(&key) {
                            st.blocks.remove(&k);
                        }
                    }
                }
            }
            eng.sync_peers();
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_their_keys() {
        let b: Ipv4Net = "10.93.4.0/24".parse().expect("cidr");
        assert_eq!(block_key(&b), "10.93.4.0_24");
        assert_eq!(parse_block_key(&block_key(&b)), Some(b));
        assert_eq!(parse_block_key("10.93.4.0/24"), None);
        assert_eq!(parse_block_key("10.93.4.0_33"), None);
    }

    #[test]
    fn a_routed_network_cuts_its_range_into_blocks() {
        let rec = |subnet: &str, block: Option<&str>| {
            let mut options = std::collections::BTreeMap::from([(weft_model::OPT_ROUTED.to_string(), "true".to_string())]);
            if let Some(b) = block {
                options.insert(weft_model::OPT_ROUTED_BLOCK.to_string(), b.to_string());
            }
            let v = serde_json::json!({
                "id": "n1", "name": "rt", "driver": "bridge", "bridge": "br-n1", "subnet": subnet, "gateway": "10.93.0.1",
                "ip_range": null, "mtu": 1500, "managed_bridge": true, "icc": true, "masquerade": true, "internal": false, "created": 0,
                "options": options, "scope": "global"
            });
            serde_json::from_value::<NetworkRecord>(v).expect("record")
        };
        assert!(rec("10.93.0.0/16", None).routed());
        assert_eq!(rec("10.93.0.0/16", None).routed_block(), 24, "a /16: 256 blocks of /24");
        assert_eq!(rec("10.93.0.0/22", None).routed_block(), 26, "a /22: 16 blocks");
        assert_eq!(rec("10.93.0.0/24", None).routed_block(), 28, "a /24: 16 blocks of 14 addresses");
        assert_eq!(rec("10.93.0.0/16", Some("20")).routed_block(), 20);
    }
}
