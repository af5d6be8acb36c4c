//! The store's keys. A daemon owns the keys under its host id; a global network's keys are
//! everyone's:
//!
//! ```text
//! /weft/hosts/<host-id>/containers/<id>            ContainerRecord
//! /weft/hosts/<host-id>/sandboxes/<name>           SandboxRecord (a namespace weft did not start)
//! /weft/hosts/<host-id>/networks/<id>              NetworkRecord, scope local
//! /weft/hosts/<host-id>/addresses/<net-id>/<ip>    Claim of a local network's address
//! /weft/hosts/<host-id>/p2p/<id>                   P2pRecord (a point-to-point link)
//! /weft/hosts/<host-id>/network-names/<name>       a local network's id (its name, taken once)
//! /weft/hosts/<host-id>/subnet-claims/<4|6>/<bits> the local network (or link) holding that subnet
//! /weft/networks/<id>                              NetworkRecord, scope global
//! /weft/network-names/<name>                       its id (a global name is taken once)
//! /weft/subnet-claims/<4|6>/<bits>                 the global network holding that subnet
//! /weft/addresses/<net-id>/<ip>                    Claim of a global network's address
//! /weft/nodes/<host-id>                            NodeRecord, under the daemon's lease
//! /weft/vnis/<vni>                                 the overlay network holding that VXLAN id
//! /weft/subnets/<net-id>/<a.b.c.d_len>             the host holding that block of a routed network
//! ```
//!
//! Reconcile reads and repairs only its own host's keys and its own claims; an address is taken
//! by creating its claim key (create-if-absent), so two daemons sharing a store never hand out
//! one address of a global network.
//!
//! A subnet's claim key is its prefix written out (IPv4 in bits: `10.5.0.0/16` is
//! `4/0000101000000101`; IPv6 in hex digits, its length rounded down to one: `fd00::/8` is
//! `6/fd`), so the claims of two subnets that overlap are one the other's prefix: a subnet is free
//! when none of its shorter prefixes is a key and no key starts with it ([`Keys::take_subnet`]),
//! and the store refuses an overlap in the same transaction as the record, across hosts too. That
//! is one compare per digit: at most 32 for a subnet, within etcd's 128 per transaction for a
//! local dual-stack network (checked against both scopes). The price of the hex digits: two IPv6
//! subnets inside one /4n (two /66 of one /64) count as overlapping.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_model::{NetworkRecord, Scope};
use weft_store::{Compare, Op, Store, Txn};

use crate::{Engine, Result};

/// The shared keys' root.
const SHARED: &str = "/weft/";

pub(crate) struct Keys {
    host: String,
    /// `/weft/hosts/<host-id>/`
    own: String,
}

impl Keys {
    pub fn new(host: &str) -> Self {
        Self { host: host.to_string(), own: format!("/weft/hosts/{host}/") }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `/weft/hosts/<host-id>/`: every key of this host's.
    pub fn own(&self) -> &str {
        &self.own
    }

    fn root(&self, scope: Scope) -> &str {
        match scope {
            Scope::Local => &self.own,
            Scope::Global => SHARED,
        }
    }

    pub fn containers(&self) -> String {
        format!("{}containers/", self.own)
    }
    pub fn container(&self, id: &str) -> String {
        format!("{}containers/{id}", self.own)
    }
    pub fn sandboxes(&self) -> String {
        format!("{}sandboxes/", self.own)
    }
    pub fn sandbox(&self, name: &str) -> String {
        format!("{}sandboxes/{name}", self.own)
    }
    pub fn p2p(&self) -> String {
        format!("{}p2p/", self.own)
    }
    pub fn p2p_link(&self, id: &str) -> String {
        format!("{}p2p/{id}", self.own)
    }
    pub fn networks(&self, scope: Scope) -> String {
        format!("{}networks/", self.root(scope))
    }
    pub fn network(&self, rec: &NetworkRecord) -> String {
        format!("{}{}", self.networks(rec.scope), rec.id)
    }
    /// A network's name, claimed with its record in its scope.
    pub fn network_name(&self, scope: Scope, name: &str) -> String {
        format!("{}network-names/{name}", self.root(scope))
    }
    /// The claims of subnets of one scope and family (`4` or `6`).
    pub fn subnet_claims(&self, scope: Scope, family: u8) -> String {
        format!("{}subnet-claims/{family}/", self.root(scope))
    }
    /// The claim key of `net` (see the module docs).
    pub fn subnet_claim(&self, scope: Scope, net: IpNet) -> String {
        let mut key = self.subnet_claims(scope, if net.addr().is_ipv4() { 4 } else { 6 });
        match net {
            IpNet::V4(n) => {
                let bits = u32::from(n.network());
                key.extend((0..n.prefix_len()).map(|i| if bits >> (31 - i) & 1 == 1 { '1' } else { '0' }));
            }
            IpNet::V6(n) => key.push_str(&format!("{:032x}", u128::from(n.addr()))[..usize::from(n.prefix_len() / 4)]),
        }
        key
    }
    /// The compares under which `net` is free in `scope`'s claims: no shorter prefix of it is
    /// claimed (a subnet holding it), and nothing at or under it (itself, or a subnet inside it).
    pub fn subnet_free(&self, scope: Scope, net: IpNet) -> Vec<Compare> {
        let key = self.subnet_claim(scope, net);
        let root = self.subnet_claims(scope, if net.addr().is_ipv4() { 4 } else { 6 }).len();
        let mut compares: Vec<Compare> = (root + 1..key.len()).map(|end| Compare::Missing(key[..end].to_string())).collect();
        compares.push(Compare::NoneUnder(key));
        compares
    }
    /// Takes `net` for `holder` (a network or link id) in `scope`: the compares and the write.
    pub fn take_subnet(&self, txn: &mut Txn, scope: Scope, net: IpNet, holder: &str) {
        txn.compare.extend(self.subnet_free(scope, net));
        txn.success.push(Op::Put(self.subnet_claim(scope, net), holder.as_bytes().to_vec()));
    }
    /// The subnet a claim key of `scope` stands for.
    pub fn claimed_subnet(&self, scope: Scope, key: &str) -> Option<IpNet> {
        let (family, digits) = key.strip_prefix(&format!("{}subnet-claims/", self.root(scope)))?.split_once('/')?;
        let (radix, width) = match family {
            "4" => (2, 32),
            "6" => (16, 128),
            _ => return None,
        };
        let per_digit = if radix == 2 { 1 } else { 4 };
        let len = digits.len() * per_digit;
        if len > width {
            return None;
        }
        let value = digits.chars().try_fold(0u128, |v, c| Some(v << per_digit | u128::from(c.to_digit(radix)?)))?.checked_shl((width - len) as u32).unwrap_or(0);
        match family {
            "4" => Some(IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(value as u32), len as u8).ok()?)),
            _ => Some(IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(value), len as u8).ok()?)),
        }
    }
    /// The overlays' VXLAN ids (each holds its network's id).
    pub fn vnis(&self) -> String {
        format!("{SHARED}vnis/")
    }
    pub fn vni(&self, vni: u32) -> String {
        format!("{SHARED}vnis/{vni}")
    }
    /// The hosts' blocks of routed networks (`net_id` empty: of every network).
    pub fn subnets(&self, net_id: &str) -> String {
        match net_id {
            "" => format!("{SHARED}subnets/"),
            id => format!("{SHARED}subnets/{id}/"),
        }
    }
    /// The registered daemons.
    pub fn nodes(&self) -> String {
        format!("{SHARED}nodes/")
    }
    pub fn node(&self, id: &str) -> String {
        format!("{SHARED}nodes/{id}")
    }
    /// The claims of one network (`network_id` empty: of every network of that scope).
    pub fn addresses(&self, scope: Scope, network_id: &str) -> String {
        match network_id {
            "" => format!("{}addresses/", self.root(scope)),
            id => format!("{}addresses/{id}/", self.root(scope)),
        }
    }
    pub fn address(&self, scope: Scope, network_id: &str, ip: IpAddr) -> String {
        format!("{}{ip}", self.addresses(scope, network_id))
    }
}

/// A claim key's network id and address.
pub(crate) fn parse_address(prefix: &str, key: &str) -> Option<(String, IpAddr)> {
    let (net, ip) = key.strip_prefix(prefix)?.split_once('/')?;
    Some((net.to_string(), ip.parse().ok()?))
}

/// Moves the records of the layout before host ids (`/weft/containers/…`, `/weft/sandboxes/…`,
/// local networks at `/weft/networks/…`) under `keys`' host, in one transaction; returns how many.
pub(crate) async fn migrate(store: &dyn Store, keys: &Keys) -> Result<usize> {
    let mut ops = Vec::new();
    for (old, new) in [("/weft/containers/", keys.containers()), ("/weft/sandboxes/", keys.sandboxes())] {
        for kv in store.range(old).await?.0 {
            let rest = &kv.key[old.len()..];
            ops.push(Op::Put(format!("{new}{rest}"), kv.value));
            ops.push(Op::Delete(kv.key));
        }
    }
    for kv in store.range(&keys.networks(Scope::Global)).await?.0 {
        match serde_json::from_slice::<NetworkRecord>(&kv.value) {
            Ok(rec) if rec.scope == Scope::Local => {
                ops.push(Op::Put(keys.network(&rec), kv.value));
                ops.push(Op::Delete(kv.key));
            }
            _ => {}
        }
    }
    let moved = ops.len() / 2;
    if moved > 0 {
        store.txn(Txn::ops(ops)).await?;
    }
    Ok(moved)
}

impl Engine {
    /// See [`migrate`].
    pub(crate) async fn migrate_keys(&self) -> Result<()> {
        let moved = migrate(self.store.as_ref(), &self.keys).await?;
        if moved > 0 {
            tracing::info!(records = moved, host = self.keys.host(), "moved records under this host's keys");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_old_layout_moves_under_the_host() {
        let dir = std::env::temp_dir().join(format!("weft-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let store = weft_store::Embedded::open(&dir.join("db")).expect("open");
        let net = |id: &str, scope: &str| format!(r#"{{"id":"{id}","name":"n{id}","driver":"bridge","bridge":"br-{id}","subnet":"10.1.0.0/24","gateway":"10.1.0.1","ip_range":null,"mtu":1500,"managed_bridge":true,"icc":true,"masquerade":true,"internal":false,"created":0,"options":{{}},"scope":"{scope}"}}"#);
        let old = vec![
            Op::Put("/weft/containers/c1".into(), b"{}".to_vec()),
            Op::Put("/weft/sandboxes/s1".into(), b"{}".to_vec()),
            // A record from before scopes (no field: local), and a global one, which stays.
            Op::Put("/weft/networks/a".into(), net("a", "local").replace(r#","scope":"local""#, "").into_bytes()),
            Op::Put("/weft/networks/g".into(), net("g", "global").into_bytes()),
        ];
        store.txn(Txn::ops(old)).await.expect("write the old layout");
        let keys = Keys::new("h1");
        assert_eq!(migrate(&store, &keys).await.expect("migrate"), 3);
        let (all, _) = store.range("/weft/").await.expect("range");
        let names: Vec<&str> = all.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(names, ["/weft/hosts/h1/containers/c1", "/weft/hosts/h1/networks/a", "/weft/hosts/h1/sandboxes/s1", "/weft/networks/g"]);
        assert_eq!(migrate(&store, &keys).await.expect("again"), 0, "nothing left to move");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn subnet_claims_of_overlapping_subnets_are_prefixes_of_each_other() {
        let k = Keys::new("h1");
        let net = |s: &str| s.parse::<IpNet>().expect("cidr");
        assert_eq!(k.subnet_claim(Scope::Global, net("10.5.0.0/16")), "/weft/subnet-claims/4/0000101000000101");
        assert_eq!(k.subnet_claim(Scope::Local, net("10.5.1.7/24")), "/weft/hosts/h1/subnet-claims/4/000010100000010100000001");
        assert_eq!(k.subnet_claim(Scope::Local, net("fd00::/8")), "/weft/hosts/h1/subnet-claims/6/fd");
        for s in ["10.5.0.0/16", "10.1.1.7/32", "0.0.0.0/1", "10.5.0.0/0", "fd12:3456::/64", "2001:db8::1/128"] {
            assert_eq!(k.claimed_subnet(Scope::Local, &k.subnet_claim(Scope::Local, net(s).trunc())), Some(net(s).trunc()), "{s}");
        }
        // An IPv6 length between hex digits: the /4n around it.
        assert_eq!(k.claimed_subnet(Scope::Global, &k.subnet_claim(Scope::Global, net("fd00:0:0:0:4000::/66"))), Some(net("fd00::/64")));
        assert_eq!(k.subnet_free(Scope::Global, net("2001:db8::1/128")).len(), 32, "at most 32 compares");
        let free = k.subnet_free(Scope::Global, net("10.5.1.0/24"));
        assert_eq!(free.len(), 24, "23 shorter prefixes and the subnet itself");
        assert!(free.contains(&Compare::Missing(k.subnet_claim(Scope::Global, net("10.5.0.0/16")))), "a subnet holding it");
        assert_eq!(free.last(), Some(&Compare::NoneUnder(k.subnet_claim(Scope::Global, net("10.5.1.0/24")))));
    }
}
