//! Boot-to-ready under qemu, side by side in one run: the image's kernel
//! with tinyvr-init (a two-interface router config by fw_cfg) against the
//! same kernel with a trivial static /init that prints the uptime and
//! powers off, both with the same two virtio NICs. Prints the guest uptime
//! at the ready line, the wall time from qemu's start, and what tinyvr's
//! init adds.
//!
//!   cargo bench -p tinyvr-tests --bench boot [-- ROUNDS]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use tinyvr_tests::*;

const CONFIG: &str = r#"name = "boot"
[[interface]]
name = "in0"
mac = "52:54:00:00:01:01"
addresses = ["10.1.0.1/24"]
[[interface]]
name = "out0"
mac = "52:54:00:00:02:01"
addresses = ["10.2.0.1/24"]
[[route]]
dest = "10.9.0.0/16"
via = "10.2.0.2"
[[neighbor]]
ip = "10.2.0.2"
mac = "02:00:00:00:02:02"
dev = "out0"
"#;

/// Boots once; returns (guest uptime at the ready line in ms, wall ms from
/// qemu's start, the init's own start-to-READY time in ms if it reports one).
fn boot(kernel: &Path, initrd: &Path, cfg: &Path, tag: &str) -> (f64, f64, f64) {
    let t = Instant::now();
    // TINYVR_BOOT_LOG=debug shows the init's own log lines (timings).
    let log = std::env::var("TINYVR_BOOT_LOG").unwrap_or("warn".into());
    let append = format!("console=ttyS0 quiet tinyvr.log={log}");
    let mut child = qemu_by_hand(kernel, initrd, &append, cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu");
    let mut result = None;
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.starts_with('[') && std::env::var_os("TINYVR_BOOT_LOG").is_some() {
            println!("       {}", line.trim_end());
        }
        if let Some(j) = line.trim_end_matches('\r').strip_prefix(tag) {
            let v: serde_json::Value = serde_json::from_str(j.trim()).expect("ready json");
            if v["pid1_ms"].is_object() {
                println!(
                    "       pid1_ms {}  steps_ms {}",
                    v["pid1_ms"], v["steps_ms"]
                );
            }
            result = Some((
                v["uptime_ms"].as_f64().unwrap(),
                t.elapsed().as_secs_f64() * 1000.0,
                v["init_ms"].as_f64().unwrap_or(0.0),
            ));
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap_or_else(|| panic!("no {tag} line"))
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("ROUNDS"))
        .unwrap_or(9);
    if !is_root() || !has_cmd("qemu-system-x86_64") {
        eprintln!("skipped: boot: needs root and qemu-system-x86_64 (scripts/setup installs it)");
        std::process::exit(if std::env::var("CI").is_ok_and(|v| v == "true") {
            1
        } else {
            0
        });
    }
    let dir = Scratch::new("bootbench");
    let img = workspace().join("target/tinyvr-bench-image");
    run(Command::new(bin("tinyvr"))
        .args(["image", "build", "--out"])
        .arg(&img));
    // The trivial init, static like tinyvr-init, in an initramfs made by the same writer.
    run(
        Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .current_dir(workspace())
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "x86_64-unknown-linux-gnu",
                "-p",
                "tinyvr-tests",
                "--bin",
                "trivial-init",
            ]),
    );
    let trivial = workspace().join("target/x86_64-unknown-linux-gnu/release/trivial-init");
    let tree = tinyvr_image::tree::Tree::router(std::fs::read(&trivial).unwrap());
    let trivial_ird = dir.0.join("trivial.cpio.gz");
    tree.write_cpio_gz(&trivial_ird, 0).unwrap();
    let cfg = dir.file("router.toml", CONFIG);
    let kernel = img.join("bzImage");

    println!("{rounds} round(s), TCG, 1 vCPU, two virtio NICs, alternating; ms");
    println!(
        "{:<6} {:>14} {:>12} {:>14} {:>12} {:>10}",
        "round", "trivial_guest", "trivial_wall", "tinyvr_guest", "tinyvr_wall", "init_ms"
    );
    let (mut tg, mut vg, mut vw, mut im, mut diff) = (vec![], vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let a = boot(&kernel, &trivial_ird, &cfg, "TRIVIAL-READY");
        let b = boot(
            &kernel,
            &img.join("initramfs.cpio.gz"),
            &cfg,
            "TINYVR-READY",
        );
        println!(
            "{r:<6} {:>14.0} {:>12.0} {:>14.0} {:>12.0} {:>10.1}",
            a.0, a.1, b.0, b.1, b.2
        );
        tg.push(a.0);
        vg.push(b.0);
        vw.push(b.1);
        im.push(b.2);
        diff.push(b.0 - a.0);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "RESULT guest ms at ready (median): trivial {:.0}, tinyvr {:.0}, paired difference {:.0} (TCG boot jitter is hundreds of ms); \
         tinyvr-init's own start-to-READY {:.1} ms (target < 50); wall from qemu start to READY {:.0} ms (target < 3000)",
        med(tg),
        med(vg),
        med(diff),
        med(im),
        med(vw)
    );
}
