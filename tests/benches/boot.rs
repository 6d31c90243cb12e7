//! Boot-to-ready under qemu, side by side in one run: the image's kernel
//! with tinyvr-init (a two-interface router config by fw_cfg) against the
//! same kernel with a trivial static /init that prints the uptime and
//! powers off, both with the same two virtio NICs. What tinyvr's init adds
//! is the difference of their exec-to-ready times, paired per round (the
//! kernel's own boot jitters by hundreds of ms, so uptimes are not
//! compared); the wall time from qemu's start is taken on a quiet boot.
//!
//! qemu's memory is set as `tinyvr vm up` sets it under TCG (preallocated,
//! no THP); `--qemu-memory-defaults` boots with qemu's own defaults instead.
//!
//!   cargo bench -p tinyvr-tests --bench boot [-- ROUNDS] [--qemu-memory-defaults]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use tinyvr_tests::*;

/// What one boot showed, in ms.
struct Boot {
    /// Guest uptime at the ready line (the init's own report).
    guest: f64,
    /// From qemu's start to the ready line, host clock.
    wall: f64,
    /// The init's own start-to-READY report (tinyvr-init only).
    init: f64,
    /// From the kernel's "Run /init" line to the ready line, host clock;
    /// only on a verbose boot, where the kernel prints that line.
    exec_to_ready: Option<f64>,
}

/// Boots once and waits for the `tag` line. A verbose boot prints the
/// kernel log, so the moment the kernel starts /init is seen from outside:
/// under TCG the guest's clock is the host's, and both lines reach the
/// host as they are written, so the time between them is the guest time
/// from exec to ready, pre-main startup included, in the same clock for
/// both inits.
fn boot(kernel: &Path, initrd: &Path, cfg: &Path, tag: &str, verbose: bool, tuned: bool) -> Boot {
    let t = Instant::now();
    // TINYVR_BOOT_LOG=debug shows the init's own log lines (timings).
    let log = std::env::var("TINYVR_BOOT_LOG").unwrap_or("warn".into());
    let kernel_log = if verbose { "loglevel=7" } else { "quiet" };
    let append = format!("console=ttyS0 {kernel_log} tinyvr.log={log}");
    let mut child = KillOnDrop(
        qemu_by_hand_with(kernel, initrd, &append, cfg, tuned)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu"),
    );
    let mut exec_at = None;
    let mut result = None;
    for line in BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("Run /init as init process") {
            exec_at = Some(Instant::now());
        }
        if line.starts_with('[') && std::env::var_os("TINYVR_BOOT_LOG").is_some() {
            println!("       {}", line.trim_end());
        }
        if let Some(j) = line.trim_end_matches('\r').strip_prefix(tag) {
            let ready_at = Instant::now();
            let v: serde_json::Value = serde_json::from_str(j.trim()).expect("ready json");
            if v["pid1_ms"].is_object() && !verbose {
                println!(
                    "       pid1_ms {}  steps_ms {}",
                    v["pid1_ms"], v["steps_ms"]
                );
            }
            result = Some(Boot {
                guest: v["uptime_ms"].as_f64().unwrap(),
                wall: (ready_at - t).as_secs_f64() * 1000.0,
                init: v["init_ms"].as_f64().unwrap_or(0.0),
                exec_to_ready: exec_at.map(|e| (ready_at - e).as_secs_f64() * 1000.0),
            });
            break;
        }
    }
    drop(child);
    let b = result.unwrap_or_else(|| panic!("no {tag} line"));
    assert!(
        !verbose || b.exec_to_ready.is_some(),
        "a verbose boot printed no \"Run /init\" line"
    );
    b
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("ROUNDS"))
        .unwrap_or(9);
    let tuned = !std::env::args().any(|a| a == "--qemu-memory-defaults");
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
    let cfg = dir.file("router.toml", BOOT_ROUTER);
    let kernel = img.join("bzImage");

    println!(
        "{rounds} round(s), TCG, 1 vCPU, two virtio NICs, guest memory {}; per round a verbose \
         boot of each init (exec to ready) and a quiet tinyvr boot (wall); ms",
        if tuned {
            "preallocated, no THP (as vm up sets it)"
        } else {
            "as qemu defaults (faulted in, THP as the host allows)"
        }
    );
    println!(
        "{:<6} {:>15} {:>14} {:>8} {:>10} {:>12} {:>12}",
        "round",
        "trivial_exec..",
        "tinyvr_exec..",
        "adds",
        "init_ms",
        "tinyvr_guest",
        "tinyvr_wall"
    );
    let (mut adds, mut texec, mut vexec, mut im, mut vw) = (vec![], vec![], vec![], vec![], vec![]);
    let tinyvr_ird = img.join("initramfs.cpio.gz");
    for r in 0..rounds {
        let a = boot(&kernel, &trivial_ird, &cfg, "TRIVIAL-READY", true, tuned);
        let b = boot(&kernel, &tinyvr_ird, &cfg, "TINYVR-READY", true, tuned);
        let q = boot(&kernel, &tinyvr_ird, &cfg, "TINYVR-READY", false, tuned);
        let (ae, be) = (a.exec_to_ready.unwrap(), b.exec_to_ready.unwrap());
        println!(
            "{r:<6} {ae:>15.1} {be:>14.1} {:>8.1} {:>10.1} {:>12.0} {:>12.0}",
            be - ae,
            q.init,
            q.guest,
            q.wall
        );
        adds.push(be - ae);
        texec.push(ae);
        vexec.push(be);
        im.push(q.init);
        vw.push(q.wall);
    }
    let (t, v) = (median(texec), median(vexec));
    println!(
        "RESULT exec to ready (median): trivial {t:.1} ms, tinyvr {v:.1} ms (ratio {:.2}); \
         tinyvr-init adds {:.1} ms of guest time (paired median, target < 50); \
         its own start-to-READY {:.1} ms; wall from qemu start to READY {:.0} ms (target < 3000)",
        v / t,
        median(adds),
        median(im),
        median(vw)
    );
}
