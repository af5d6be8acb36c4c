//! Root-only: the generated ruleset is accepted by the kernel, element changes apply, and the
//! result is what `nft list` shows, inside a throwaway namespace.

use std::path::Path;
use std::process::Command;

use weft_firewall::{Firewall, NetworkFw, Options, PortFw};

#[test]
fn ruleset_applies_in_a_namespace() {
    let ns = format!("weftfw-{}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().expect("ip").success());
    let path = format!("/run/netns/{ns}");
    let n = |b: &str, s: &str| NetworkFw { bridge: b.into(), subnet: s.parse().expect("cidr"), subnet6: None, masquerade: true, icc: false, internal: false, routed_range: None };
    let p = PortFw { host_ip: None, proto: weft_model::Proto::Tcp, host_port: 8080, container_ip: "172.17.0.2".parse().expect("ip"), container_port: 80 };
    let res = weft_kernel::netns::run_in(Path::new(&path), move || {
        let fw = Firewall::new(true).expect("ctx");
        fw.reset(&[n("weft0", "172.17.0.0/16")], &[p], &[], &[], Options::default()).expect("reset");
        fw.reset(&[n("weft0", "172.17.0.0/16")], &[p], &[], &[], Options::default()).expect("reset twice");
        assert!(fw.add_ports(&[p]).is_err(), "a duplicate port is refused");
        fw.remove_ports(&[p]).expect("unpublish");
        fw.add_ports(&[p]).expect("publish");
        fw.add_network(&n("br-1", "172.18.0.0/16")).expect("add");
        fw.remove_network(&n("br-1", "172.18.0.0/16")).expect("remove");
        let bad = fw.add_network(&n("weft0", "172.17.0.0/16"));
        assert!(bad.is_err(), "a duplicate element is refused");
        let list = Command::new("nft").args(["list", "table", "inet", "weft"]).output().expect("nft");
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        Firewall::new(false).expect("ctx").reset(&[], &[], &[], &[], Options::default()).expect("remove table");
        let tables = Command::new("nft").args(["list", "tables"]).output().expect("nft");
        Ok((text, String::from_utf8_lossy(&tables.stdout).to_string()))
    });
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let (text, tables) = res.expect("run in ns");
    assert!(text.contains("172.17.0.0/16 : jump nat-weft0"), "{text}");
    assert!(text.contains("tcp . 8080 : 172.17.0.2 . 80"), "{text}");
    assert!(!text.contains("nat-br-1"), "{text}");
    assert!(text.contains("oifname != \"weft0\" masquerade"), "{text}");
    assert!(!tables.contains("inet weft\n"), "{tables}");
    assert!(tables.contains("inet weft-user"), "the user's table stays: {tables}");
}
