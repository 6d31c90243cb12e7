//! Installs N generated routes (default 1,000,000) twice, side by side in
//! one run: with tinyvr's bulk netlink path (`tinyvr-init --apply` of a
//! route_range) and with `ip -batch` (one ACKed request per route). Prints
//! both times and the ratio; each count is checked with `ip route`.
//!
//!   cargo bench -p tinyvr-tests --bench route_install [-- COUNT [ROUNDS]]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;
use tinyvr_tests::*;

const CONFIG: &str = r#"name = "bench"
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
[[route_range]]
first = "16.0.0.0/24"
count = COUNT
via = "10.2.0.2"
"#;

fn fresh_ns() -> Netns {
    let ns = Netns::new();
    ns.ip(&[
        "link", "add", "out0", "type", "veth", "peer", "name", "peer0",
    ]);
    ns.ip(&["link", "set", "peer0", "up"]);
    ns
}

fn count_routes(ns: &Netns) -> usize {
    let out = run(Command::new("sh").args([
        "-c",
        &format!(
            "ip -n {} -4 route show table main proto static | wc -l",
            ns.name
        ),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let count: u32 = args
        .next()
        .map(|a| a.parse().expect("COUNT must be a number"))
        .unwrap_or(1_000_000);
    let rounds: u32 = args
        .next()
        .map(|a| a.parse().expect("ROUNDS must be a number"))
        .unwrap_or(1);
    if !is_root() {
        eprintln!("skipped: route_install: needs root for network namespaces");
        std::process::exit(if std::env::var("CI").is_ok_and(|v| v == "true") {
            1
        } else {
            0
        });
    }
    let init = build("tinyvr-init", true);
    let scratch = Scratch::new("bench-routes");
    let cfg = scratch.file("router.toml", &CONFIG.replace("COUNT", &count.to_string()));
    // The ip -batch input: the same prefixes, the same gateway, the same table.
    let mut batch = String::with_capacity(count as usize * 40);
    for i in 0..count {
        let net = (16u32 << 24) + (i << 8);
        batch.push_str(&format!(
            "route add {}/24 via 10.2.0.2 proto static\n",
            std::net::Ipv4Addr::from(net)
        ));
    }

    println!("installing {count} routes, {rounds} round(s), tinyvr and ip -batch in turn");
    let (mut t_tvr, mut t_ip) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Both namespaces live until both are measured: tearing down a
        // namespace with 1M routes keeps the kernel busy for seconds and
        // would slow whichever side ran next. The order alternates.
        let mut keep = Vec::new();
        let mut tvr = 0.0;
        let mut ip = 0.0;
        let mut step_ms = serde_json::Value::Null;
        for side in [round % 2, 1 - round % 2] {
            let ns = fresh_ns();
            if side == 0 {
                let t = Instant::now();
                let out = run(ns.exec(&init).arg("--apply").arg(&cfg));
                tvr = t.elapsed().as_secs_f64();
                let ready = tagged_json(&String::from_utf8_lossy(&out.stdout), "TINYVR-READY")
                    .expect("READY");
                step_ms = ready["steps_ms"]["route_ranges"].clone();
                assert_eq!(
                    count_routes(&ns),
                    count as usize,
                    "tinyvr installed a different number of routes"
                );
            } else {
                ns.ip(&["addr", "add", "10.2.0.1/24", "dev", "out0"]);
                ns.ip(&["link", "set", "out0", "up"]);
                let t = Instant::now();
                let mut child = Command::new("ip")
                    .args(["-n", &ns.name, "-batch", "-"])
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(batch.as_bytes())
                    .unwrap();
                assert!(child.wait().unwrap().success(), "ip -batch failed");
                ip = t.elapsed().as_secs_f64();
                assert_eq!(
                    count_routes(&ns),
                    count as usize,
                    "ip -batch installed a different number of routes"
                );
            }
            keep.push(ns);
        }
        drop(keep);
        println!("round {round}: tinyvr {tvr:.2} s (route_ranges step {step_ms} ms), ip -batch {ip:.2} s, ratio {:.1}x", ip / tvr);
        t_tvr.push(tvr);
        t_ip.push(ip);
        // Let the kernel finish freeing the namespaces before the next round.
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let (a, b) = (best(&t_tvr), best(&t_ip));
    println!(
        "RESULT routes={count} tinyvr_s={a:.2} ip_batch_s={b:.2} speedup={:.1}x{}",
        b / a,
        // The 5x target was met with one shared nexthop object per range
        // (~6x); routes with their own gateway, which survive carrier
        // flaps, measure ~4x: kept for correctness, see the README.
        if count >= 1_000_000 {
            " (target >= 5x; plain routes measure ~4x, see README)"
        } else {
            " (the 5x target is for 1M routes)"
        }
    );
}
