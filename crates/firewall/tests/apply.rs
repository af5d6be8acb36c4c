//! Root-only: the generated ruleset is accepted by the kernel, element changes apply, and the
//! result is what `nft list` shows, inside a throwaway namespace.

use std::path::Path;
use std::process::Command;

use weft_firewall::{Firewall, NetworkFw};

#[test]
fn ruleset_applies_in_a_namespace() {
    let ns = format!("weftfw-{}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().expect("ip").success());
    let path = format!("/run/netns/{ns}");
    let n = |b: &str, s: &str| NetworkFw { bridge: b.into(), subnet: s.parse().expect("cidr"), masquerade: true };
    let res = weft_kernel::netns::run_in(Path::new(&path), || {
        let fw = Firewall::new(true).expect("ctx");
        fw.reset(&[n("weft0", "172.17.0.0/16")]).expect("reset");
        fw.reset(&[n("weft0", "172.17.0.0/16")]).expect("reset twice");
        fw.add_network(&n("br-1", "172.18.0.0/16")).expect("add");
        fw.remove_network(&n("br-1", "172.18.0.0/16")).expect("remove");
        let bad = fw.add_network(&n("weft0", "172.17.0.0/16"));
        assert!(bad.is_err(), "a duplicate element is refused");
        let list = Command::new("nft").args(["list", "table", "inet", "weft"]).output().expect("nft");
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        Firewall::new(false).expect("ctx").reset(&[]).expect("remove table");
        let tables = Command::new("nft").args(["list", "tables"]).output().expect("nft");
        Ok((text, String::from_utf8_lossy(&tables.stdout).to_string()))
    });
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let (text, tables) = res.expect("run in ns");
    assert!(text.contains("172.17.0.0/16 : jump masq-weft0"), "{text}");
    assert!(!text.contains("masq-br-1"), "{text}");
    assert!(text.contains("oifname != \"weft0\" masquerade"), "{text}");
    assert!(!tables.contains("weft"), "{tables}");
}
