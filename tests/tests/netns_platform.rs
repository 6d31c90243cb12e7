//! `tinyvr netns up/down`: a router in a bare namespace between a source and
//! a sink namespace; traffic counted at the sink's link counters; the
//! state checked with ip -json; nothing left behind afterwards.

use serde_json::Value;
use std::process::Command;
use tinyvr_tests::*;

/// A unique router name (≤ 8 characters: `t`, the test process, a tag
/// letter) and its config.
fn router(tag: char) -> (String, String) {
    let name = format!("t{}{tag}", std::process::id() % 100_000);
    let cfg = format!(
        r#"name = "{name}"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
[sysctl]
"net.ipv6.conf.in0.disable_ipv6" = 1
"net.ipv6.conf.out0.disable_ipv6" = 1
"#
    );
    (name, cfg)
}

fn tinyvr(args: &[&str]) -> std::process::Output {
    bin("tinyvr-init"); // netns up runs the init next to the tinyvr binary
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

/// A router `tag` up with `--topology`: its name, READY json, and the
/// guards that take it down and remove its scratch directory.
fn up_with_topology(tag: char, scratch: &str) -> (String, Value, Down, Scratch) {
    let (name, cfg) = router(tag);
    let dir = Scratch::new(scratch);
    let f = dir.file("router.toml", &cfg);
    let down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap(), "--topology"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = serde_json::from_slice(&out.stdout).unwrap();
    (name, ready, down, dir)
}

#[test]
fn topology_forwards_10000_packets_and_down_removes_everything() {
    require!(is_root(), "needs root for network namespaces");
    let (name, cfg) = router('a');
    let dir = Scratch::new("netns");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap(), "--topology"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (src, snk) = (format!("{name}-src"), format!("{name}-snk"));
    assert_eq!(ready["topology"]["src"]["netns"], src.as_str());

    // The router's state, read with ip inside its namespace.
    let r = Netns { name: name.clone() };
    let addrs = r.ip_json(&["-4", "addr", "show", "dev", "out0"]);
    assert_eq!(addrs[0]["addr_info"][0]["local"], "10.2.0.1");
    std::mem::forget(r); // down removes it, not the test's Drop

    let sink_dev = format!("{name}-out0");
    let before = link_stat(&snk, &sink_dev, "rx", "packets");
    udp_send(&src, "10.2.0.2:9".parse().unwrap(), 10_000, 18);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = link_stat(&snk, &sink_dev, "rx", "packets") - before;
    assert_eq!(got, 10_000, "sink counted {got} packets");

    let out = tinyvr(&["netns", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn phys_and_macvlan_backends() {
    require!(is_root(), "needs root for network namespaces");
    let (name, _) = router('b');
    let (ph0, ph1, par) = (
        format!("{name}-ph0"),
        format!("{name}-ph1"),
        format!("{name}-par"),
    );
    // Host devices the router takes: one veth end moved in (phys), and a
    // veth end as the macvlan parent.
    let _links = HostLinks(vec![ph0.clone(), par.clone()]);
    run(Command::new("ip").args(["link", "add", &ph0, "type", "veth", "peer", "name", &ph1]));
    run(Command::new("ip").args([
        "link",
        "add",
        &par,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{name}-pp"),
    ]));
    let cfg = format!(
        r#"name = "{name}"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24"]
host = {{ kind = "phys", device = "{ph0}" }}
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
host = {{ kind = "macvlan", parent = "{par}", mode = "bridge" }}
"#
    );
    let dir = Scratch::new("phys");
    let f = dir.file("router.toml", &cfg);
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap()]);
    let cleanup = || {
        let _ = Command::new("ip").args(["link", "del", &ph0]).status();
        let _ = Command::new("ip").args(["link", "del", &par]).status();
    };
    if !out.status.success() {
        cleanup();
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let r = Netns { name: name.clone() };
    let links = r.ip_json(&["-d", "link", "show"]);
    let kind = |n: &str| -> String {
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == n)
            .map(|l| {
                l["linkinfo"]["info_kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        kind("in0"),
        "veth",
        "the phys device is in the router as in0"
    );
    assert_eq!(kind("out0"), "macvlan");
    let mv = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == "out0")
        .unwrap();
    assert_eq!(mv["linkinfo"]["info_data"]["mode"], "bridge");
    std::mem::forget(r);
    let out = tinyvr(&["netns", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The phys device is back on the host under its own name.
    let back = Command::new("ip")
        .args(["link", "show", &ph0])
        .output()
        .unwrap();
    cleanup();
    assert!(back.status.success(), "{ph0} did not come back to the host");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn failures_leave_nothing_behind() {
    require!(is_root(), "needs root for network namespaces");
    let dir = Scratch::new("netns-bad");
    // A phys device that does not exist.
    let (name, cfg) = router('c');
    let cfg = cfg.replace(
        "name = \"out0\"",
        "name = \"out0\"\nhost = { kind = \"phys\", device = \"nosuchdev0\" }",
    );
    let f = dir.file("phys.toml", &cfg);
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap(), "--topology"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("wires the in/out interfaces itself"),
        "{err}"
    );
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no device named \"nosuchdev0\""),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // A config mistake: nothing is created at all.
    let (name, cfg) = router('d');
    let f = dir.file("bad.toml", &cfg.replace("10.2.0.1/24", "10.2.0.1/99"));
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("interface[1].addresses[0]"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // A host-wide sysctl, refused for a namespace on the host's kernel:
    // READY never comes, everything is removed.
    let (name, cfg) = router('e');
    let f = dir.file(
        "refused.toml",
        &format!("{cfg}\"net.core.netdev_max_backlog\" = 5000\n"),
    );
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap(), "--topology"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("net.core.netdev_max_backlog"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn down_works_from_a_stale_state_file() {
    require!(is_root(), "needs root for network namespaces");
    let (name, _ready, _down, _dir) = up_with_topology('f', "stale");
    // Someone removed the sink namespace by hand: down still cleans the rest.
    run(Command::new("ip").args(["netns", "del", &format!("{name}-snk")]));
    let out = tinyvr(&["netns", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // And a second down says clearly there is nothing.
    let out = tinyvr(&["netns", "down", &name]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no router named {name} is up")));
}

#[test]
fn the_watcher_owns_the_router_and_gc_removes_it_when_it_dies() {
    require!(is_root(), "needs root for network namespaces");
    let (name, ready, _down, _dir) = up_with_topology('w', "netns-watch");
    let pid = ready["watcher_pid"].as_u64().unwrap();
    // In the router's namespace, in a session of its own.
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    let mine = Command::new("ip")
        .args(["netns", "exec", &name, "readlink", "/proc/self/ns/net"])
        .output()
        .unwrap();
    assert_eq!(
        ns(&pid.to_string()).to_string_lossy(),
        String::from_utf8_lossy(&mine.stdout).trim()
    );
    // A router whose owner is alive is not gc's.
    assert!(tinyvr(&["gc"]).status.success());
    assert!(
        std::path::Path::new(&format!("/run/netns/{name}")).exists(),
        "gc removed a live router"
    );
    // Its owner gone: stale, and gc removes all of it.
    run(Command::new("kill").args(["-9", &pid.to_string()]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(tinyvr(&["gc"]).status.success());
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_users_ip_netns_add_does_not_hide_tinyvrs_namespaces() {
    require!(is_root(), "needs root for network namespaces");
    let (name, _ready, _down, _dir) = up_with_topology('u', "netns-user-ns");
    // /run/netns is a shared mount point, as iproute2 makes it: a user's
    // `ip netns add` after tinyvr's first namespace stacks nothing over it.
    let prop = run(Command::new("findmnt").args(["-no", "PROPAGATION", "/run/netns"]));
    assert!(
        String::from_utf8_lossy(&prop.stdout).contains("shared"),
        "{prop:?}"
    );
    let user = format!("{name}x");
    run(Command::new("ip").args(["netns", "add", &user]));
    let _user = Netns { name: user.clone() };
    assert!(tinyvr(&["netns", "down", &name]).status.success());
    assert_eq!(
        leftovers(&name),
        vec![format!("netns {user}")],
        "only the user's namespace is left"
    );
}
