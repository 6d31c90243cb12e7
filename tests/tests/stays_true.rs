//! What a router reports is what its kernel holds, and it stays so: a
//! router with a 20,000-route range, topology up, keeps every route through
//! carrier flaps of its links (the host-side peer down, then up), counted
//! with `ip` inside the router's namespace; `up` itself never flaps a
//! configured router (LXC moves the host ends before the init runs).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tinyvr_tests::*;

const ROUTES: u64 = 20_000;

fn config(name: &str) -> String {
    two_nic_config(
        name,
        &format!(
            r#"[[route_range]]
first = "16.0.0.0/24"
count = {ROUTES}
via = "10.2.0.2"
[sysctl]
"net.ipv6.conf.in0.disable_ipv6" = 1
"net.ipv6.conf.out0.disable_ipv6" = 1
"#
        ),
    )
}

fn tinyvr(args: &[&str]) -> Output {
    bin("tinyvr-init");
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

/// Static routes in the namespace `enter` selects (`-n NS` or a pid's).
fn routes(enter: &[&str]) -> u64 {
    let mut c = Command::new("nsenter");
    c.args(enter).args([
        "ip", "-4", "route", "show", "table", "all", "proto", "static",
    ]);
    let out = run(&mut c);
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

/// A read-back (READY's `held` or a TINYVR-HELD line) that found the
/// config's whole table in main and nothing missing or unexpected.
fn assert_whole(held: &Value) {
    assert_eq!(held["routes_by_table"]["254"], ROUTES, "{held}");
    assert!(held["missing"].is_null(), "{held}");
    assert!(held["unexpected"].is_null(), "{held}");
}

/// The TINYVR-HELD lines in `path`: one after the flaps (4 link events at
/// least), and none that found the table not as configured.
fn held_lines_never_departed(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("TINYVR-HELD "))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    assert!(
        lines.iter().any(|l| l["link_events"].as_u64() >= Some(4)),
        "no read-back after the flaps in {path}: {lines:?}"
    );
    for l in &lines {
        assert_eq!(l["departures"], 0, "{l}");
        assert_whole(l);
    }
}

/// Flaps the host-side peer of each router link and checks that every
/// route is there while carrier is gone and again within a second of its
/// return, and that the router forwards again.
fn flap_each_link(name: &str, enter: &[&str]) {
    let want = ROUTES;
    assert_eq!(routes(enter), want, "before any flap");
    for (ns, dev) in [
        (format!("{name}-snk"), format!("{name}-out0")),
        (format!("{name}-src"), format!("{name}-in0")),
    ] {
        run(Command::new("ip").args(["-n", &ns, "link", "set", &dev, "down"]));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(routes(enter), want, "{dev} down: routes flushed");
        run(Command::new("ip").args(["-n", &ns, "link", "set", &dev, "up"]));
        let t = Instant::now();
        while routes(enter) != want && t.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            routes(enter),
            want,
            "{dev} up again: routes missing after 1 s"
        );
    }
    let (src, snk, dev) = (
        format!("{name}-src"),
        format!("{name}-snk"),
        format!("{name}-out0"),
    );
    // Taking the source's own end down flushed the source's default route
    // (the ends are the test's instruments, not the router): put it back.
    run(Command::new("ip").args(["-n", &src, "route", "replace", "default", "via", "10.1.0.1"]));
    std::thread::sleep(Duration::from_millis(200));
    let before = link_stat(&snk, &dev, "rx", "packets");
    // Through a generated route: 16.0.5.1 is in 16.0.5.0/24 via the sink.
    udp_send(&src, "16.0.5.1:9".parse().unwrap(), 1000, 18);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(link_stat(&snk, &dev, "rx", "packets") - before, 1000);
}

#[test]
fn a_namespace_router_keeps_its_routes_through_link_flaps() {
    require!(is_root(), "needs root for network namespaces");
    let name = format!("f{}n", std::process::id() % 100_000);
    let dir = Scratch::new("flap-netns");
    let f = dir.file("r.toml", &config(&name));
    let _down = Down::new("netns", &name);
    let out = tinyvr(&["netns", "up", f.to_str().unwrap(), "--topology"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ready["routes"], ROUTES);
    assert_eq!(ready["held"]["routes"], ROUTES, "read back after up");
    assert_whole(&ready["held"]);
    let ns = format!("--net=/run/netns/{name}");
    flap_each_link(&name, &[ns.as_str()]);
    // The router's owner, `tinyvr-init --watch`, read the table back after
    // every link change: never without part of its config.
    let log = ready["watch_log"].as_str().unwrap().to_string();
    held_lines_never_departed(&log);
    let watcher = ready["watcher_pid"].as_u64().unwrap();
    assert!(tinyvr(&["netns", "down", &name]).status.success());
    assert!(
        !Path::new(&format!("/proc/{watcher}")).exists()
            || std::fs::read_to_string(format!("/proc/{watcher}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the watcher outlived down"
    );
}

fn rootfs() -> &'static Path {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| built_image("tinyvr-flap-image").join("rootfs"))
}

#[test]
fn a_container_router_keeps_its_routes_from_up_on_and_through_flaps() {
    require!(is_root(), "needs root");
    require!(
        has_cmd("lxc-start"),
        "needs lxc-start (scripts/setup installs it)"
    );
    require!(
        Path::new(tinyvr_image::kernel::DEFAULT_SOURCE).exists(),
        "needs linux-source-6.1 to build the image (scripts/setup installs it)"
    );
    let name = format!("f{}c", std::process::id() % 100_000);
    let dir = Scratch::new("flap-lxc");
    let f = dir.file("r.toml", &config(&name));
    let _down = Down::new("lxc", &name);
    let out = tinyvr(&[
        "lxc",
        "up",
        f.to_str().unwrap(),
        "--rootfs",
        rootfs().to_str().unwrap(),
        "--topology",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = ready["init_pid"].as_u64().unwrap().to_string();
    // Right after up returns, with ip in the container's namespace: the
    // moves of the host ends did not flush anything.
    let ns = format!("--net=/proc/{pid}/ns/net");
    assert_eq!(routes(&[ns.as_str()]), ROUTES, "after lxc up --topology");
    assert_eq!(ready["held"]["routes"], ROUTES);
    assert_whole(&ready["held"]);
    flap_each_link(&name, &[ns.as_str()]);
    // The container's init read its kernel back after READY and after every
    // link change (TINYVR-HELD on its console): never without part of its
    // config, not even while carrier was gone.
    held_lines_never_departed(&format!("/var/lib/tinyvr/lxc/{name}/console.log"));
    assert!(tinyvr(&["lxc", "down", &name]).status.success());
}
