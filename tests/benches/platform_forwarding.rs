//! Forwarding through the same router config on the bare-namespace baseline
//! and in LXC, side by side in one run with the same load: trafgen (one
//! CPU, 64-byte frames, as fast as it can) from the source namespace,
//! packets counted at the sink's link counters. Prints both rates and the
//! ratio LXC / netns (both forward in the same kernel: expect about 1).
//!
//!   cargo bench -p tinyvr-tests --bench platform_forwarding [-- PACKETS [ROUNDS]]

use serde_json::Value;
use std::process::Command;
use std::time::Instant;
use tinyvr_tests::*;

const CONFIG: &str = r#"name = "NAME"
[[interface]]
name = "in0"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
addresses = ["10.2.0.1/24"]
[sysctl]
"net.ipv6.conf.in0.disable_ipv6" = 1
"net.ipv6.conf.out0.disable_ipv6" = 1
"#;

/// Brings a router up on `platform`, offers `packets` frames, returns
/// (forwarded, seconds) and takes it down again.
fn trial(
    platform: &str,
    name: &str,
    cfg: &std::path::Path,
    rootfs: &str,
    packets: u64,
) -> (u64, f64) {
    let tinyvr = bin("tinyvr");
    let mut args = vec![platform, "up", cfg.to_str().unwrap(), "--topology"];
    if platform == "lxc" {
        args.extend(["--rootfs", rootfs]);
    }
    let out = run(Command::new(&tinyvr).args(&args));
    let ready: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &ready["topology"];
    let rmac = ready["interfaces"][0]["mac"].as_str().unwrap();
    let pkt = format!(
        "{{ eth(da={rmac}, sa={}), ipv4(saddr={}, daddr={}, ttl=64), udp(sport=4000, dport=5000), fill(0x00, 18) }}",
        t["src"]["mac"].as_str().unwrap(),
        t["src"]["ip"].as_str().unwrap(),
        t["sink"]["ip"].as_str().unwrap()
    );
    let (src, snk, sdev, ddev) = (
        t["src"]["netns"].as_str().unwrap().to_string(),
        t["sink"]["netns"].as_str().unwrap().to_string(),
        t["src"]["dev"].as_str().unwrap().to_string(),
        t["sink"]["dev"].as_str().unwrap().to_string(),
    );
    let before = link_stat(&snk, &ddev, "rx", "packets");
    let start = Instant::now();
    run(Command::new("ip").args([
        "netns",
        "exec",
        &src,
        "trafgen",
        "--dev",
        &sdev,
        "--cpus",
        "1",
        "-C",
        "--num",
        &packets.to_string(),
        &pkt,
    ]));
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(500)); // drain
    let got = link_stat(&snk, &ddev, "rx", "packets") - before;
    run(Command::new(&tinyvr).args([platform, "down", name]));
    (got, secs)
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let packets: u64 = args
        .next()
        .map(|a| a.parse().expect("PACKETS"))
        .unwrap_or(1_000_000);
    let rounds: u32 = args.next().map(|a| a.parse().expect("ROUNDS")).unwrap_or(3);
    if !is_root() || !has_cmd("lxc-start") || !has_cmd("trafgen") {
        eprintln!("skipped: platform_forwarding: needs root, lxc-start and trafgen (scripts/setup installs them)");
        std::process::exit(if std::env::var("CI").is_ok_and(|v| v == "true") {
            1
        } else {
            0
        });
    }
    bin("tinyvr-init");
    let img = workspace().join("target/tinyvr-bench-image");
    run(Command::new(bin("tinyvr"))
        .args(["image", "build", "--out"])
        .arg(&img));
    let rootfs = img.join("rootfs").display().to_string();
    let dir = Scratch::new("fwd");
    let name = format!("b{}", std::process::id() % 100_000);
    let cfg = dir.file("router.toml", &CONFIG.replace("NAME", &name));

    println!("{packets} x 64-byte frames per trial, {rounds} round(s), platforms alternating");
    println!(
        "{:<6} {:>6} {:>10} {:>10} {:>8}",
        "round", "where", "forwarded", "kpps", "loss"
    );
    let rate = |p: &str, r: u32| {
        let (got, secs) = trial(p, &name, &cfg, &rootfs, packets);
        let kpps = got as f64 / secs / 1000.0;
        println!(
            "{r:<6} {p:>6} {got:>10} {kpps:>10.0} {:>7.2}%",
            100.0 * (packets - got.min(packets)) as f64 / packets as f64
        );
        kpps
    };
    let (mut n, mut l) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            n.push(rate("netns", r));
            l.push(rate("lxc", r));
        } else {
            l.push(rate("lxc", r));
            n.push(rate("netns", r));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "RESULT netns_kpps={:.0} lxc_kpps={:.0} ratio={:.3} (target >= 0.95)",
        mean(&n),
        mean(&l),
        mean(&l) / mean(&n)
    );
}
