//! A parsed file against a struct literal, and the example config.

use tinyvr_config::*;

#[test]
fn small_file_parses_to_the_expected_struct() {
    let text = r#"
        name = "vr1"
        [[interface]]
        name = "in0"
        mac = "52:54:00:00:01:01"
        driver = "virtio_net"
        index = 0
        addresses = ["10.1.0.1/24"]
        [[route]]
        dest = "default"
        via = "10.1.0.2"
        [sysctl]
        "net.core.netdev_max_backlog" = "2000"
        [[service]]
        name = "bird"
        exec = ["/usr/sbin/bird", "-f"]
    "#;
    let got = load(text).unwrap();
    let want = RouterConfig {
        name: "vr1".into(),
        init: InitOptions::default(),
        interfaces: vec![Interface {
            name: "in0".parse().unwrap(),
            mac: Some("52:54:00:00:01:01".parse().unwrap()),
            pci: None,
            driver: Some("virtio_net".into()),
            index: Some(0),
            mtu: None,
            txqueuelen: None,
            addresses: vec!["10.1.0.1/24".parse().unwrap()],
            rps_cpus: None,
            xps_cpus: None,
            host: None,
        }],
        routes: vec![Route {
            dest: Dest::Default,
            via: Some("10.1.0.2".parse().unwrap()),
            nexthops: vec![],
            dev: None,
            table: None,
            metric: None,
            kind: RouteKind::Unicast,
            onlink: false,
            src: None,
        }],
        route_ranges: vec![],
        rules: vec![],
        neighbors: vec![],
        sysctl: [(
            "net.core.netdev_max_backlog".to_string(),
            SysctlValue::Str("2000".into()),
        )]
        .into(),
        services: vec![Service {
            name: "bird".into(),
            exec: vec!["/usr/sbin/bird".into(), "-f".into()],
            net_admin: false,
        }],
    };
    assert_eq!(got, want);
    assert_eq!(got.routes[0].dest_prefix().to_string(), "0.0.0.0/0");
}

#[test]
fn example_config_is_valid_and_round_trips() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/router.toml"
    ))
    .unwrap();
    let cfg = load(&text).unwrap();
    assert_eq!(cfg.route_count(), 8 + 1000 + 100);
    let again = load(&cfg.to_toml()).unwrap();
    assert_eq!(cfg, again);
}

#[test]
fn route_range_prefixes_step_by_prefix_length() {
    let cfg = load(
        r#"name = "r"
        [[interface]]
        name = "a"
        addresses = ["10.0.0.1/24", "fd00::1/64"]
        [[route_range]]
        first = "16.0.0.0/24"
        count = 300
        via = "10.0.0.2"
        [[route_range]]
        first = "fd10::/64"
        count = 3
        via = "fd00::2"
        "#,
    )
    .unwrap();
    let r = &cfg.route_ranges[0];
    assert_eq!(r.prefix(0).to_string(), "16.0.0.0/24");
    assert_eq!(r.prefix(1).to_string(), "16.0.1.0/24");
    assert_eq!(r.prefix(299).to_string(), "16.1.43.0/24");
    assert_eq!(cfg.route_ranges[1].prefix(2).to_string(), "fd10:0:0:2::/64");
}

#[test]
fn default_route_takes_the_family_of_its_gateway() {
    let cfg = load(
        r#"name = "r"
        [[interface]]
        name = "a"
        addresses = ["fd00::1/64"]
        [[route]]
        dest = "default"
        via = "fd00::2"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.routes[0].dest_prefix().to_string(), "::/0");
}

#[test]
fn ipv6_is_off_only_in_a_config_without_any() {
    let base = r#"name = "r"
        [[interface]]
        name = "a"
        addresses = ["10.1.0.1/24"]
        [[interface]]
        name = "b"
        addresses = ["10.2.0.1/24"]
        [[rule]]
        table = 100
        "#;
    let defaults = |text: &str| {
        load(text)
            .unwrap()
            .default_sysctls()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    // A rule without prefixes is installed for both families: still IPv4 only.
    let v4 = defaults(base);
    assert!(v4.contains(&"net.ipv6.conf.all.disable_ipv6=1".to_string()));
    assert!(v4.contains(&"net.ipv6.conf.default.disable_ipv6=1".to_string()));
    assert!(v4.contains(&"net.ipv4.ip_forward=1".to_string()));
    assert!(!v4
        .iter()
        .any(|s| s.starts_with("net.ipv6.conf.all.forwarding")));
    // Any one IPv6 item keeps IPv6 on.
    for extra in [
        "[[route]]\ndest = \"fd00:9::/48\"\nvia = \"fe80::1\"\ndev = \"a\"",
        "[[neighbor]]\nip = \"fe80::2\"\nmac = \"02:00:00:00:00:02\"\ndev = \"b\"",
        "[[rule]]\nfrom = \"fd00:1::/64\"\ntable = 100",
        "[[route_range]]\nfirst = \"fd00:100::/64\"\ncount = 4\ndev = \"a\"",
    ] {
        let v6 = defaults(&format!("{base}\n{extra}"));
        assert!(
            !v6.iter().any(|s| s.contains("disable_ipv6")),
            "{extra}: {v6:?}"
        );
        assert!(v6.contains(&"net.ipv6.conf.all.forwarding=1".to_string()));
    }
    let with_address = base.replace("\"10.2.0.1/24\"", "\"10.2.0.1/24\", \"fd00:2::1/64\"");
    assert!(!defaults(&with_address)
        .iter()
        .any(|s| s.contains("disable_ipv6")));
}
