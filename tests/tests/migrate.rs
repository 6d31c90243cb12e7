//! `tinyvr vm migrate NAME --local`: a real TCG VM router migrated to a
//! second qemu on this host while traffic goes through it, a migration
//! whose destination dies, and bad input.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tinyvr_tests::*;

fn image() -> &'static Path {
    vm_image()
}

fn can_run() -> Option<&'static str> {
    vm_can_run()
}

/// Migrations here run one at a time (two would measure each other).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

fn tinyvr(args: &[&str]) -> Output {
    Command::new(bin("tinyvr")).args(args).output().unwrap()
}

/// A VM router between its source and sink, on the macvtap datapath.
fn up(dir: &Scratch, name: &str, datapath: &str) -> Value {
    let cfg = dir.file(
        "router.toml",
        &format!(
            "name = \"{name}\"\n[[interface]]\nname = \"in0\"\naddresses = [\"10.1.0.1/24\"]\n\
             [[interface]]\nname = \"out0\"\naddresses = [\"10.2.0.1/24\"]\n"
        ),
    );
    let out = tinyvr(&[
        "vm",
        "up",
        cfg.to_str().unwrap(),
        "--image",
        image().to_str().unwrap(),
        "--topology",
        "--datapath",
        datapath,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sink device's receive counter, read every 2 ms through a process
/// parked in the sink's namespace: (time since start, packets) samples.
struct Poller {
    stop: Arc<AtomicBool>,
    h: std::thread::JoinHandle<Vec<(f64, u64)>>,
    park: std::process::Child,
}

impl Poller {
    fn start(ns: &str, dev: &str) -> Poller {
        let park = Command::new("ip")
            .args(["netns", "exec", ns, "sleep", "600"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let path = format!("/proc/{}/net/dev", park.id());
        let (stop, dev) = (Arc::new(AtomicBool::new(false)), dev.to_string());
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Some(n) = text.lines().find_map(|l| {
                    let (d, rest) = l.split_once(':')?;
                    (d.trim() == dev)
                        .then(|| rest.split_whitespace().nth(1)?.parse::<u64>().ok())?
                }) {
                    out.push((t0.elapsed().as_secs_f64(), n));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            out
        });
        Poller { stop, h, park }
    }

    fn finish(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.park.kill();
        let _ = self.park.wait();
        self.h.join().unwrap()
    }
}

/// The longest time the counter did not move between `from` and `to` (s).
fn longest_gap(samples: &[(f64, u64)], from: f64, to: f64) -> f64 {
    let mut gap: f64 = 0.0;
    let mut last_change = from;
    let mut last = None;
    for &(t, n) in samples.iter().filter(|(t, _)| *t >= from && *t <= to) {
        if last.is_some_and(|l| n != l) {
            gap = gap.max(t - last_change);
            last_change = t;
        }
        last = Some(n);
    }
    gap
}

/// Takes a router down and checks that nothing of it is left.
fn down_clean(kind: &str, name: &str) {
    let out = tinyvr(&[kind, "down", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(name), Vec::<String>::new());
}

/// Sends `n` frames from router `r`'s source at 2000 pps; what its sink
/// counted meanwhile.
fn through(r: &str, n: u32) -> u64 {
    let snk = format!("{r}-snk");
    let before = link_stat(&snk, "snk0", "rx", "packets");
    udp_send_paced(
        &format!("{r}-src"),
        "10.2.0.2:9".parse().unwrap(),
        n,
        18,
        Some(2_000),
    );
    std::thread::sleep(Duration::from_millis(500));
    link_stat(&snk, "snk0", "rx", "packets") - before
}

fn mig_leftovers() -> Vec<String> {
    leftovers("mig")
}

#[test]
fn a_router_under_load_migrates_locally_and_keeps_forwarding() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one_at_a_time();
    let name = format!("m{}a", std::process::id() % 100_000);
    let dir = Scratch::new("migrate-load");
    let _down = Down::new("vm", &name);
    let ready = up(&dir, &name, "macvtap");
    let old_pid = ready["vm"]["qemu_pid"].as_u64().unwrap() as u32;
    let (src, snk) = (format!("{name}-src"), format!("{name}-snk"));
    let poller = Poller::start(&snk, "snk0");
    let t0 = Instant::now();
    // 3000 pps for 8 s through the router; the migration starts at 3 s.
    let src2 = src.clone();
    let sender = std::thread::spawn(move || {
        udp_send_paced(
            &src2,
            "10.2.0.2:9".parse().unwrap(),
            24_000,
            18,
            Some(3_000),
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    let started = t0.elapsed().as_secs_f64();
    let out = tinyvr(&["vm", "migrate", &name, "--local"]);
    let ended = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let after_migrate = link_stat(&snk, "snk0", "rx", "packets");
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let samples = poller.finish();
    let total = link_stat(&snk, "snk0", "rx", "packets");
    eprintln!("migration: {m}");
    // QMP's figures.
    assert_eq!(m["migration"]["status"], "completed", "{m}");
    let downtime_ms = m["migration"]["downtime_ms"].as_f64().unwrap();
    assert!(
        m["migration"]["total_time_ms"].as_f64().unwrap() > 0.0,
        "{m}"
    );
    assert!(
        m["migration"]["ram_transferred_bytes"].as_u64().unwrap() > 0,
        "{m}"
    );
    // The source is gone, the destination is the router now.
    assert!(
        !Path::new(&format!("/proc/{old_pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{old_pid}/stat")).unwrap_or_default();
            s.split_whitespace().nth(2) == Some("Z")
        }
    );
    let new_pid = m["qemu_pid"].as_u64().unwrap();
    // The links as read back after the switch: the router's names, up.
    for (k, dev) in ["in0", "out0"].iter().enumerate() {
        assert_eq!(m["links"][k]["dev"], format!("{name}-{dev}"), "{m}");
        assert_eq!(m["links"][k]["up"], true, "{m}");
        assert_eq!(m["links"][k]["source_up"], false, "{m}");
    }
    // In the router's cgroup, as the source was.
    let cg = std::fs::read_to_string(format!("/proc/{new_pid}/cgroup")).unwrap();
    assert!(cg.contains(&format!("tinyvr-{name}")), "{cg}");
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("/run/tinyvr/{name}.json")).unwrap())
            .unwrap();
    assert_eq!(st["owner_pid"].as_u64(), Some(new_pid), "{st}");
    // The console before the migration stays with the router.
    let before = std::fs::read_to_string(format!("/run/tinyvr/{name}.console.before")).unwrap();
    assert!(before.contains("TINYVR-READY"), "{before}");
    assert_eq!(mig_leftovers(), Vec::<String>::new());
    // It forwarded after the migration, without a new READY.
    assert!(
        total > after_migrate + 3_000,
        "the destination forwarded {} packets",
        total - after_migrate
    );
    let lost = 24_000u64.saturating_sub(total);
    // The longest silence at the sink around the migration, against
    // qemu's downtime and the link switch: TCG adds up to ~200 ms of
    // scheduling jitter here (measured: 5-60 ms), the poll 2 ms.
    let gap_ms = longest_gap(&samples, started - 0.1, ended + 0.5) * 1e3;
    let switch_ms = m["links_switched_ms"].as_f64().unwrap();
    eprintln!(
        "qemu downtime {downtime_ms} ms, links switched in {switch_ms} ms, longest sink gap {gap_ms:.1} ms, {lost} of 24000 lost"
    );
    assert!(
        gap_ms <= downtime_ms + switch_ms + 250.0,
        "gap {gap_ms} ms vs downtime {downtime_ms} + switch {switch_ms}"
    );
    assert!(lost < 3_000, "{lost} lost: more than a second of traffic");
    // And again: the destination, now the router, migrates like the first
    // (its QMP socket and pid file survive the old qemu's exit).
    let out = tinyvr(&["vm", "migrate", &name, "--local"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["qmp", "pid", "console"] {
        assert!(
            Path::new(&format!("/run/tinyvr/{name}.{f}")).exists(),
            "{f}"
        );
    }
    // Every one, and at most qemu's self-announcements (RARP, a few
    // rounds per NIC after a migration) besides.
    let got = through(&name, 1_000);
    assert!((1_000..=1_020).contains(&got), "the sink counted {got}");
    down_clean("vm", &name);
}

#[test]
fn a_migration_whose_destination_dies_leaves_the_source_forwarding() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one_at_a_time();
    let name = format!("m{}b", std::process::id() % 100_000);
    let dir = Scratch::new("migrate-fail");
    let _down = Down::new("vm", &name);
    let ready = up(&dir, &name, "macvtap");
    let pid = ready["vm"]["qemu_pid"].as_u64().unwrap();
    // 1 MB/s: slow enough to kill the destination mid-way.
    let child = Command::new(bin("tinyvr"))
        .args(["vm", "migrate", &name, "--local", "--bandwidth", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let (dest, dest_pid) = loop {
        let found = std::fs::read_dir("/run/tinyvr")
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("mig") && n.ends_with(".json")
            })
            .find_map(|e| {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
                Some((v["name"].as_str()?.to_string(), v["owner_pid"].as_u64()?))
            });
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < end, "no destination qemu in /run/tinyvr");
        std::thread::sleep(Duration::from_millis(20));
    };
    let state = format!("/run/tinyvr/{dest}.json");
    std::thread::sleep(Duration::from_millis(500));
    run(Command::new("kill").args(["-9", &dest_pid.to_string()]));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the migration succeeded: {err}");
    assert!(
        err.contains("destination qemu exited") || err.contains("migration failed"),
        "{err}"
    );
    // The source runs and forwards; nothing of the destination is left.
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(!Path::new(&state).exists(), "{state}");
    assert_eq!(leftovers(&dest), Vec::<String>::new());
    assert_eq!(through(&name, 1_000), 1_000);
    down_clean("vm", &name);
}

#[test]
fn bad_migrations_fail_before_anything_changes() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one_at_a_time();
    let fails = |args: &[&str], want: &str| {
        let out = tinyvr(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    };
    fails(
        &["vm", "migrate", "nosuch", "--local"],
        "no router named nosuch is up",
    );
    fails(&["vm", "migrate", "nosuch"], "--local");
    let name = format!("m{}c", std::process::id() % 100_000);
    let dir = Scratch::new("migrate-bad");
    let _down = Down::new("vm", &name);
    up(&dir, &name, "bridge");
    fails(
        &["vm", "migrate", &name, "--local", "--downtime-limit", "0"],
        "--downtime-limit 0: expected at least 1 ms",
    );
    fails(
        &["vm", "migrate", &name, "--local", "--bandwidth", "0"],
        "--bandwidth 0: expected 1 to 1048576 MB/s",
    );
    fails(
        &["vm", "migrate", &name, "--local", "--timeout", "0"],
        "--timeout 0: expected at least 1 s",
    );
    // Its sink side is a tap: nowhere for a destination to join.
    fails(&["vm", "migrate", &name, "--local"], "not a macvtap");
    assert_eq!(mig_leftovers(), Vec::<String>::new());
    down_clean("vm", &name);
}

#[test]
fn a_post_copy_migration_forwards_afterwards() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one_at_a_time();
    let name = format!("m{}d", std::process::id() % 100_000);
    let dir = Scratch::new("migrate-postcopy");
    let _down = Down::new("vm", &name);
    up(&dir, &name, "macvtap");
    let out = tinyvr(&["vm", "migrate", &name, "--local", "--postcopy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["migration"]["status"], "completed", "{m}");
    assert!(m["migration"]["postcopy_requests"].is_u64(), "{m}");
    let got = through(&name, 1_000);
    assert!((1_000..=1_020).contains(&got), "the sink counted {got}");
    down_clean("vm", &name);
    assert_eq!(mig_leftovers(), Vec::<String>::new());
}

#[test]
fn a_container_migration_says_why_it_cannot_run_here() {
    require!(is_root(), "needs root");
    require!(
        has_cmd("lxc-start") && has_cmd("criu"),
        "needs lxc-start and criu (scripts/setup installs them)"
    );
    let _one = one_at_a_time();
    let criu = Command::new("criu").arg("check").output().unwrap();
    let criu_works = criu.status.success();
    let name = format!("m{}e", std::process::id() % 100_000);
    let dir = Scratch::new("migrate-lxc");
    let cfg = dir.file(
        "router.toml",
        &format!(
            "name = \"{name}\"\n[[interface]]\nname = \"in0\"\naddresses = [\"10.1.0.1/24\"]\n\
             [[interface]]\nname = \"out0\"\naddresses = [\"10.2.0.1/24\"]\n"
        ),
    );
    let _down = Down::new("lxc", &name);
    let rootfs = vm_image().join("rootfs");
    let out = tinyvr(&[
        "lxc",
        "up",
        cfg.to_str().unwrap(),
        "--rootfs",
        rootfs.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tinyvr(&["lxc", "migrate", &name, "--local"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if criu_works {
        // Honest about what is not built, never a crash.
        assert!(err.contains("not built yet"), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(77), "{err}");
        assert!(
            err.contains("skipped: criu check fails on this host: Error"),
            "{err}"
        );
    }
    // The container router still runs, untouched.
    let state = std::fs::read_to_string(format!("/run/tinyvr/{name}.json")).unwrap();
    assert!(state.contains("\"lxc\""), "{state}");
    let out = tinyvr(&["lxc", "down", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_router_migrates_to_a_qemu_waiting_on_tcp_and_leaves_nothing_here() {
    require!(can_run().is_none(), can_run().unwrap_or(""));
    let _one = one_at_a_time();
    let (a, b) = (
        format!("m{}g", std::process::id() % 100_000),
        format!("m{}h", std::process::id() % 100_000),
    );
    let dir = Scratch::new("migrate-tcp");
    // Another host's view of the same router: the same config, NIC MACs
    // and topology ends pinned, so both instances look the same.
    let cfg = dir.file(
        "router.toml",
        &format!(
            "name = \"{a}\"\n\
             [[interface]]\nname = \"in0\"\nmac = \"52:54:00:aa:00:01\"\naddresses = [\"10.1.0.1/24\"]\n\
             [[interface]]\nname = \"out0\"\nmac = \"52:54:00:aa:00:02\"\naddresses = [\"10.2.0.1/24\"]\n\
             [[neighbor]]\nip = \"10.1.0.2\"\nmac = \"02:74:00:aa:00:0a\"\ndev = \"in0\"\n\
             [[neighbor]]\nip = \"10.2.0.2\"\nmac = \"02:74:00:aa:00:0b\"\ndev = \"out0\"\n"
        ),
    );
    let (_da, _db) = (Down::new("vm", &a), Down::new("vm", &b));
    let img = image().to_str().unwrap();
    let c = cfg.to_str().unwrap();
    let up = |more: &[&str]| {
        let mut args = vec![
            "vm",
            "up",
            c,
            "--image",
            img,
            "--topology",
            "--datapath",
            "macvtap",
        ];
        args.extend_from_slice(more);
        let out = tinyvr(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    up(&[]);
    let port = 40_000 + std::process::id() % 20_000;
    let uri = format!("tcp:127.0.0.1:{port}");
    let waiting = up(&["--name", &b, "--incoming", &uri]);
    assert_eq!(waiting["status"], "inmigrate", "{waiting}");
    // Nobody listens on port 1: the source is untouched and forwards.
    let out = tinyvr(&["vm", "migrate", &a, "--to", "tcp:127.0.0.1:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Connection refused"),
        "{err}"
    );
    assert_eq!(through(&a, 1_000), 1_000);
    let out = tinyvr(&["vm", "migrate", &a, "--to", &uri]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["migration"]["status"], "completed", "{m}");
    // Everything of the source is gone; the destination forwards.
    assert_eq!(leftovers(&a), Vec::<String>::new());
    let got = through(&b, 1_000);
    assert!(
        (1_000..=1_020).contains(&got),
        "the destination's sink counted {got}"
    );
    down_clean("vm", &b);
    // Bad URIs are refused before anything.
    let out = tinyvr(&["vm", "migrate", &a, "--to", "10.0.0.1:4444"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected tcp:HOST:PORT"));
}
