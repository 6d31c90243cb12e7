//! `tinyvr-init --apply` in fresh network namespaces, checked with `ip -json`
//! and /proc, not with tinyvr's own view.

use serde_json::Value;
use tinyvr_tests::*;

/// A namespace with the devices examples/router.toml expects: one veth end
/// with the MAC the config matches on (renamed to in0), one already named out0.
fn router_ns() -> Netns {
    let ns = Netns::new();
    ns.ip(&[
        "link",
        "add",
        "tmpa",
        "address",
        "02:00:00:00:01:01",
        "type",
        "veth",
        "peer",
        "name",
        "peera",
    ]);
    ns.ip(&[
        "link", "add", "out0", "type", "veth", "peer", "name", "peerb",
    ]);
    ns.ip(&["link", "set", "peera", "up"]);
    ns.ip(&["link", "set", "peerb", "up"]);
    ns
}

fn apply(ns: &Netns, config: &std::path::Path) -> std::process::Output {
    ns.exec(bin("tinyvr-init"))
        .arg("--apply")
        .arg(config)
        .output()
        .unwrap()
}

fn find<'a>(list: &'a Value, key: &str, val: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|v| v[key] == val)
        .collect()
}

#[test]
fn example_config_leaves_exactly_the_expected_state() {
    require!(is_root(), "needs root for network namespaces");
    let ns = router_ns();
    let cfg = workspace().join("examples/router.toml");
    let out = apply(&ns, &cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "apply failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = tagged_json(&stdout, "TINYVR-READY").expect("a READY line");
    assert_eq!(ready["routes"], 8 + 1000 + 100);
    assert_eq!(ready["interfaces"][0]["mac"], "02:00:00:00:01:01");
    for step in [
        "links",
        "sysctl",
        "addresses",
        "neighbors",
        "routes",
        "route_ranges",
        "rules",
        "queues",
    ] {
        assert!(
            ready["steps_ms"][step].is_number(),
            "no timing for {step}: {ready}"
        );
    }

    // Links: renamed, MTU, queue length, up; loopback up too.
    let links = ns.ip_json(&["link", "show"]);
    let in0 = find(&links, "ifname", "in0");
    assert_eq!(in0.len(), 1, "tmpa was not renamed to in0: {links}");
    assert_eq!(in0[0]["address"], "02:00:00:00:01:01");
    assert_eq!(in0[0]["mtu"], 1500);
    assert_eq!(in0[0]["txqlen"], 1000);
    let out0 = find(&links, "ifname", "out0")[0];
    assert_eq!(
        (out0["mtu"].as_u64(), out0["txqlen"].as_u64()),
        (Some(9000), Some(500))
    );
    for l in [in0[0], out0, find(&links, "ifname", "lo")[0]] {
        assert!(
            l["flags"].as_array().unwrap().contains(&"UP".into()),
            "{} not up",
            l["ifname"]
        );
    }

    // Addresses.
    let addrs = ns.ip_json(&["addr", "show"]);
    let have = |dev: &str| -> Vec<String> {
        find(&addrs, "ifname", dev)[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    };
    assert_eq!(have("in0"), ["10.1.0.1/24", "fd00:1::1/64"]);
    assert_eq!(have("out0"), ["10.2.0.1/24", "fd00:2::1/64"]);

    // Routes in main and table 100, both families.
    let main4 = ns.ip_json(&["-4", "route", "show", "table", "main"]);
    let route = |list: &Value, dst: &str| -> Value {
        find(list, "dst", dst)
            .first()
            .map(|v| (*v).clone())
            .unwrap_or_else(|| panic!("no route {dst} in {list}"))
    };
    let r = route(&main4, "10.9.0.0/16");
    assert_eq!(
        (
            r["gateway"].as_str(),
            r["dev"].as_str(),
            r["metric"].as_u64()
        ),
        (Some("10.2.0.2"), Some("out0"), Some(20))
    );
    assert_eq!(route(&main4, "default")["gateway"], "10.2.0.2");
    let mp = route(&main4, "10.10.0.0/16");
    let hops = mp["nexthops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(
        (hops[0]["gateway"].as_str(), hops[0]["weight"].as_u64()),
        (Some("10.2.0.2"), Some(1))
    );
    assert_eq!(
        (hops[1]["gateway"].as_str(), hops[1]["weight"].as_u64()),
        (Some("10.1.0.2"), Some(3))
    );
    assert_eq!(route(&main4, "10.66.0.0/16")["type"], "blackhole");
    assert_eq!(route(&main4, "10.68.0.0/16")["type"], "prohibit");
    let generated = main4
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"].as_str().unwrap().starts_with("16."))
        .count();
    assert_eq!(generated, 1000);
    assert_eq!(
        route(&main4, "16.3.231.0/24")["gateway"],
        "10.2.0.2",
        "last route of the range"
    );

    let t100 = ns.ip_json(&["-4", "route", "show", "table", "100"]);
    let onl = route(&t100, "10.11.0.0/16");
    assert!(
        onl["flags"].as_array().unwrap().contains(&"onlink".into()),
        "{onl}"
    );
    assert_eq!(route(&t100, "10.67.0.0/16")["type"], "unreachable");
    let t100v6 = ns.ip_json(&["-6", "route", "show", "table", "100"]);
    let gen6: Vec<_> = t100v6
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"].as_str().unwrap().starts_with("fd10:"))
        .collect();
    assert_eq!(gen6.len(), 100);
    assert!(gen6
        .iter()
        .all(|r| r["metric"] == 5 && r["gateway"] == "fd00:2::2"));
    let main6 = ns.ip_json(&["-6", "route", "show", "table", "main"]);
    let v6 = route(&main6, "fd00:9::/48");
    assert_eq!(
        (v6["gateway"].as_str(), v6["prefsrc"].as_str()),
        (Some("fd00:2::2"), Some("fd00:2::1"))
    );

    // Rules.
    let rules4 = ns.ip_json(&["-4", "rule", "show"]);
    let r4: Vec<_> = rules4
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["priority"] == 1000)
        .collect();
    assert_eq!(
        (
            r4[0]["src"].as_str(),
            r4[0]["srclen"].as_u64(),
            r4[0]["table"].as_str()
        ),
        (Some("10.1.0.0"), Some(24), Some("100"))
    );
    let rules6 = ns.ip_json(&["-6", "rule", "show"]);
    let r6: Vec<_> = rules6
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["priority"] == 1001)
        .collect();
    assert_eq!(
        (r6[0]["dst"].as_str(), r6[0]["iif"].as_str()),
        (Some("fd00:9::"), Some("in0"))
    );

    // Neighbours.
    let neigh = ns.ip_json(&["neigh", "show"]);
    for ip in ["10.2.0.2", "fd00:2::2"] {
        let n = find(&neigh, "dst", ip)[0];
        assert_eq!(n["lladdr"], "02:00:00:00:02:02");
        assert!(
            n["state"].as_array().unwrap().contains(&"PERMANENT".into()),
            "{n}"
        );
    }

    // Sysctls: router defaults and the config's own, from /proc.
    for (k, v) in [
        ("ipv4/ip_forward", "1"),
        ("ipv6/conf/all/forwarding", "1"),
        ("ipv4/conf/all/rp_filter", "0"),
        ("ipv4/conf/all/send_redirects", "0"),
        ("ipv4/icmp_ratelimit", "0"),
        ("ipv4/conf/all/log_martians", "1"),
    ] {
        assert_eq!(ns.read(&format!("/proc/sys/net/{k}")), v, "{k}");
    }
    // READY carries each of them as asked and as the init read it back.
    for (k, asked) in [
        ("sysctl net.ipv4.ip_forward", "1"),
        ("sysctl net.ipv4.conf.all.rp_filter", "0"),
        ("in0 rx-0 rps_cpus", "0"),
        ("out0 tx-0 xps_cpus", "0"),
    ] {
        let s = &ready["settings"][k];
        assert_eq!(
            (s["asked"].as_str(), s["held"].as_str()),
            (Some(asked), Some(asked)),
            "{k}: {s}"
        );
    }
    // RPS / XPS masks from sysfs.
    assert_eq!(
        ns.read("/sys/class/net/in0/queues/rx-0/rps_cpus")
            .trim_start_matches('0'),
        "1"
    );
    assert_eq!(
        ns.read("/sys/class/net/out0/queues/tx-0/xps_cpus")
            .trim_start_matches('0'),
        "1"
    );

    // Applying again changes nothing.
    let before = ns.snapshot();
    assert!(apply(&ns, &cfg).status.success());
    assert_eq!(
        before,
        ns.snapshot(),
        "a second apply changed the namespace"
    );
}

#[test]
fn bad_configs_fail_with_their_field_and_touch_nothing() {
    require!(is_root(), "needs root for network namespaces");
    let ns = router_ns();
    // BASE's interfaces are in0/out0 by name: rename tmpa so they exist.
    ns.ip(&["link", "set", "tmpa", "name", "in0"]);
    let before = ns.snapshot();
    let dir = Scratch::new("bad");
    for (i, (extra, path, msg)) in bad_cases::CASES.iter().enumerate() {
        let f = dir.file(&format!("case{i}.toml"), &bad_cases::text(extra));
        let out = apply(&ns, &f);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "case {i} applied: {extra:?}");
        let err = tagged_json(&stdout, "TINYVR-ERROR")
            .unwrap_or_else(|| panic!("case {i}: no ERROR line: {stdout}"));
        let text = err["error"].as_str().unwrap();
        let want = if path.is_empty() {
            msg.to_string()
        } else {
            format!("{path}: ")
        };
        assert!(
            text.contains(&want) && text.contains(msg),
            "case {i}: want {path}: {msg}, got {text}"
        );
        assert_eq!(err["stage"], "config");
    }
    assert_eq!(
        before,
        ns.snapshot(),
        "a rejected config changed the namespace"
    );
}

#[test]
fn missing_device_times_out_naming_the_interface() {
    require!(is_root(), "needs root for network namespaces");
    let ns = router_ns();
    let dir = Scratch::new("missing");
    let f = dir.file(
        "router.toml",
        "name = \"r\"\n[init]\ninterface_timeout_ms = 300\n[[interface]]\nname = \"in0\"\nmac = \"02:00:00:00:09:09\"\n",
    );
    let t = std::time::Instant::now();
    let out = apply(&ns, &f);
    assert!(!out.status.success());
    let err = tagged_json(&String::from_utf8_lossy(&out.stdout), "TINYVR-ERROR").unwrap();
    let text = err["error"].as_str().unwrap();
    assert!(
        text.contains("interface[0] (in0): no device matched mac=02:00:00:00:09:09"),
        "{text}"
    );
    assert!(
        text.contains("tmpa (02:00:00:00:01:01"),
        "lists what is present: {text}"
    );
    assert!(
        t.elapsed().as_millis() >= 300,
        "did not wait the configured time"
    );
}

#[test]
fn kernel_refusal_names_the_object() {
    require!(is_root(), "needs root for network namespaces");
    let ns = router_ns();
    let dir = Scratch::new("refuse");
    // Valid as a config, and per namespace, but there is no device nosuch0
    // for the kernel to find it under.
    let f = dir.file("router.toml", "name = \"r\"\n[[interface]]\nname = \"out0\"\n[sysctl]\n\"net.ipv4.conf.nosuch0.forwarding\" = 1\n");
    let out = apply(&ns, &f);
    assert!(!out.status.success());
    let err = tagged_json(&String::from_utf8_lossy(&out.stdout), "TINYVR-ERROR").unwrap();
    assert_eq!(err["stage"], "apply");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("setting sysctl net.ipv4.conf.nosuch0.forwarding = 1"),
        "{err}"
    );
}

#[test]
fn an_ipv4_only_router_has_ipv6_off_and_loopback_up() {
    require!(is_root(), "needs root for network namespaces");
    let ns = router_ns();
    let dir = Scratch::new("v4only");
    let f = dir.file(
        "router.toml",
        "name = \"r\"\n[[interface]]\nname = \"in0\"\nmac = \"02:00:00:00:01:01\"\naddresses = [\"10.1.0.1/24\"]\n[[interface]]\nname = \"out0\"\naddresses = [\"10.2.0.1/24\"]\n",
    );
    let out = apply(&ns, &f);
    assert!(out.status.success(), "{out:?}");
    for dev in ["all", "default", "lo", "in0", "out0"] {
        assert_eq!(
            ns.read(&format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"))
                .trim(),
            "1",
            "{dev}"
        );
    }
    // No IPv6 address anywhere, not even a link-local one or ::1.
    let v6 = ns.ip_json(&["-6", "addr"]);
    assert!(
        v6.as_array()
            .unwrap()
            .iter()
            .all(|l| l["addr_info"].as_array().is_none_or(|a| a.is_empty())),
        "{v6}"
    );
    let lo = &ns.ip_json(&["addr", "show", "lo"])[0];
    assert!(
        lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{lo}"
    );
    assert_eq!(lo["addr_info"][0]["local"], "127.0.0.1");
    // Nor is IPv6 forwarding switched on (it would join every device to
    // the all-routers group).
    assert_eq!(
        ns.read("/proc/sys/net/ipv6/conf/all/forwarding").trim(),
        "0"
    );
    assert_eq!(ns.read("/proc/sys/net/ipv4/ip_forward").trim(), "1");
    // One IPv6 address and IPv6 stays on, on every link.
    let ns = router_ns();
    let f = dir.file(
        "router6.toml",
        "name = \"r\"\n[[interface]]\nname = \"in0\"\nmac = \"02:00:00:00:01:01\"\naddresses = [\"10.1.0.1/24\", \"fd00:1::1/64\"]\n[[interface]]\nname = \"out0\"\naddresses = [\"10.2.0.1/24\"]\n",
    );
    let out = apply(&ns, &f);
    assert!(out.status.success(), "{out:?}");
    for dev in ["all", "lo", "in0", "out0"] {
        assert_eq!(
            ns.read(&format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"))
                .trim(),
            "0",
            "{dev}"
        );
    }
    assert_eq!(
        ns.read("/proc/sys/net/ipv6/conf/all/forwarding").trim(),
        "1"
    );
}

/// A namespace with veths `a` (MAC ..:0a) and `b` (MAC ..:0b), both up.
fn swap_ns() -> Netns {
    let ns = Netns::new();
    for (n, mac) in [("a", "02:00:00:00:00:0a"), ("b", "02:00:00:00:00:0b")] {
        let peer = format!("p{n}");
        ns.ip(&[
            "link", "add", "name", n, "address", mac, "type", "veth", "peer", "name", &peer,
        ]);
        ns.ip(&["link", "set", "dev", n, "up"]);
    }
    ns
}

/// Each link's MAC by name, as `ip -json` shows them.
fn macs(ns: &Netns) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ns
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_string(),
                l["address"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn devices_that_swap_names_go_through_temporary_ones() {
    require!(is_root(), "needs root for network namespaces");
    let ns = swap_ns();
    let dir = Scratch::new("swap");
    // The device now called `a` must become `b`, and the other way round.
    let f = dir.file(
        "router.toml",
        "name = \"r\"\n[[interface]]\nname = \"b\"\nmac = \"02:00:00:00:00:0a\"\n[[interface]]\nname = \"a\"\nmac = \"02:00:00:00:00:0b\"\n",
    );
    let out = apply(&ns, &f);
    assert!(out.status.success(), "{out:?}");
    let got = macs(&ns);
    let named = |n: &str| got.iter().find(|(k, _)| k == n).map(|(_, m)| m.as_str());
    assert_eq!(named("b"), Some("02:00:00:00:00:0a"), "{got:?}");
    assert_eq!(named("a"), Some("02:00:00:00:00:0b"), "{got:?}");
    assert!(
        !got.iter().any(|(k, _)| k.starts_with("tvrtmp")),
        "a temporary name is left: {got:?}"
    );
    for n in ["a", "b"] {
        let l = &ns.ip_json(&["link", "show", "dev", n])[0];
        assert!(
            l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "{l}"
        );
    }
}

#[test]
fn a_name_held_by_an_unmanaged_device_is_refused_before_any_rename() {
    require!(is_root(), "needs root for network namespaces");
    let ns = swap_ns();
    let dir = Scratch::new("taken");
    // `a` is to be renamed `b`, but `b` is not in the config.
    let f = dir.file(
        "router.toml",
        "name = \"r\"\n[[interface]]\nname = \"b\"\nmac = \"02:00:00:00:00:0a\"\n",
    );
    let before = macs(&ns);
    let out = apply(&ns, &f);
    assert!(!out.status.success());
    let err = tagged_json(&String::from_utf8_lossy(&out.stdout), "TINYVR-ERROR").unwrap();
    assert!(
        err["error"].as_str().unwrap().contains(
            "cannot rename a to b: the name belongs to a device the config does not manage"
        ),
        "{err}"
    );
    assert_eq!(macs(&ns), before, "something was renamed");
}
