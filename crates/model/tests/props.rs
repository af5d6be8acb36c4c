//! Property tests of every parser of user input: arbitrary strings never panic, and nothing
//! with whitespace or a control character is ever accepted where it would reach a generated
//! file (`/etc/hosts`, `resolv.conf`), a kernel name or a DNS answer.

use proptest::prelude::*;
use weft_model::*;

/// Strings that look like input, with the characters injections use mixed in.
fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9:./_\\- \\t\\n\\r\\x00\\[\\]=,;]{0,40}",
        "[a-z0-9]{1,12}(\\n|\\r|\\x00| |\\t)[a-z0-9 .:]{0,20}",
    ]
}

fn clean(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn names_accepted_are_clean(s in input()) {
        for ok in [validate_hostname(&s).is_ok(), validate_alias(&s).is_ok(), validate_dns_option(&s).is_ok(),
                   validate_container_name(&s).is_ok(), validate_network_name(&s).is_ok(), validate_ifname(&s).is_ok()] {
            prop_assert!(!ok || clean(&s), "accepted {s:?}");
        }
        if validate_ifname(&s).is_ok() {
            prop_assert!(s.len() <= 15);
        }
    }

    #[test]
    fn port_and_expose_specs_never_panic(s in input()) {
        let _ = parse_publish(&s);
        let _ = parse_expose(&s);
        let _ = parse_mac(&s);
        let _ = effective_caps(false, std::slice::from_ref(&s), &[]);
    }

    #[test]
    fn run_specs_that_validate_carry_no_injection(
        name in input(), hostname in input(), alias in input(), opt in input(), search in input(), host in input(), mode in input()
    ) {
        let spec = RunSpec {
            name: Some(name.clone()),
            hostname: Some(hostname.clone()),
            network_mode: mode,
            aliases: vec![alias.clone()],
            dns_options: vec![opt.clone()],
            dns_search: vec![search.clone()],
            extra_hosts: vec![host.clone()],
            cmd: vec!["true".into()],
            ..RunSpec::default()
        };
        if spec.validate().is_ok() {
            for s in [&name, &hostname, &alias, &opt, &search, &host] {
                prop_assert!(clean(s), "accepted {s:?}");
            }
        }
    }

    #[test]
    fn network_specs_that_validate_have_clean_names(name in input(), bridge in input(), subnet in input()) {
        let mut spec = NetworkSpec { name: name.clone(), ..NetworkSpec::default() };
        spec.options.insert("com.docker.network.bridge.name".into(), bridge.clone());
        spec.subnet = subnet.parse().ok();
        if spec.validate().is_ok() {
            prop_assert!(clean(&name) && clean(&bridge) && bridge.len() <= 15);
        }
    }

    #[test]
    fn api_bodies_never_panic(body in input()) {
        let _ = serde_json::from_str::<RunSpec>(&body);
        let _ = serde_json::from_str::<NetworkSpec>(&body);
        let _ = render_template(&body, &serde_json::json!({"State": {"Pid": 1}}));
    }
}

#[test]
fn subnets_that_cannot_be_networks_are_refused() {
    let spec = |s: &str| NetworkSpec { name: "n".into(), subnet: Some(s.parse().expect("cidr")), ..NetworkSpec::default() };
    for (cidr, want) in [
        ("127.0.0.0/8", "loopback"),
        ("224.0.0.0/4", "multicast"),
        ("169.254.0.0/16", "link-local"),
        ("240.0.0.0/8", "reserved"),
        ("0.0.0.0/8", "this network"),
        ("10.78.0.5/24", "it should be 10.78.0.0/24"),
    ] {
        let err = spec(cidr).validate().expect_err(cidr).to_string();
        assert!(err.contains(want), "{cidr}: {err}");
    }
    assert!(spec("10.78.0.0/24").validate().is_ok());
    let v6 = |s: &str| NetworkSpec { name: "n".into(), enable_ipv6: true, subnet6: Some(s.parse().expect("cidr")), ..NetworkSpec::default() };
    for (cidr, want) in [("ff00::/8", "multicast"), ("fe80::/64", "link-local"), ("fd00::1/64", "it should be fd00::/64")] {
        let err = v6(cidr).validate().expect_err(cidr).to_string();
        assert!(err.contains(want), "{cidr}: {err}");
    }
    assert!(parse_publish("::80").expect_err("::80").to_string().contains("empty IP address"));
    assert!(parse_publish("[::]::80").is_ok());
    assert!(parse_publish("127.0.0.1::80").is_ok());
}

#[test]
fn overlay_and_routed_options_are_checked() {
    let spec = |driver: &str, scope: &str, subnet: Option<&str>, opts: &[(&str, &str)]| NetworkSpec {
        name: "n".into(),
        driver: driver.into(),
        scope: scope.into(),
        subnet: subnet.map(|s| s.parse().expect("cidr")),
        options: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..NetworkSpec::default()
    };
    let refused = |s: NetworkSpec, want: &str| {
        let err = s.validate().expect_err(want).to_string();
        assert!(err.contains(want), "{err}");
    };
    assert_eq!(spec("overlay", "", None, &[("vxlan.id", "42")]).validate().expect("overlay").vni, Some(42));
    refused(spec("overlay", "", None, &[("vxlan.id", "0")]), "a VXLAN id between 1 and 16777215");
    refused(spec("overlay", "", None, &[("vxlan.id", "16777216")]), "a VXLAN id between 1 and 16777215");
    refused(spec("bridge", "", None, &[("vxlan.id", "42")]), "not an option of the bridge driver");
    refused(spec("overlay", "", None, &[("com.weft.bridge.uplink", "eth0")]), "not an option of the overlay driver");
    refused(NetworkSpec { enable_ipv6: true, ..spec("overlay", "", None, &[]) }, "IPv4 only");
    assert!(spec("overlay", "", None, &[("com.docker.network.bridge.enable_icc", "false")]).validate().is_ok(), "a bridge option an overlay has too");
    assert!(spec("bridge", "global", Some("10.93.0.0/16"), &[("com.weft.routed", "true")]).validate().is_ok());
    refused(spec("bridge", "", Some("10.93.0.0/16"), &[("com.weft.routed", "true")]), "give --scope global");
    refused(spec("bridge", "global", None, &[("com.weft.routed", "true")]), "give the whole range with --subnet");
    refused(spec("bridge", "global", Some("10.93.0.0/16"), &[("com.weft.routed", "maybe")]), "expected true or false");
    refused(spec("bridge", "global", Some("10.93.0.0/16"), &[("com.weft.routed", "true"), ("com.weft.routed.block", "16")]), "longer than the subnet's /16");
    assert!(spec("bridge", "global", Some("10.93.0.0/16"), &[("com.weft.routed", "true"), ("com.weft.routed.block", "26")]).validate().is_ok());
}
