//! `tinyvr bench` end to end: a sweep through a baseline router below its
//! capacity is lossless; a VM past its capacity loses packets and every
//! hop's counters account for them; the NDR/PDR search's rate is
//! confirmed; bad experiment files fail before anything is made; Ctrl-C
//! still writes the results and leaves nothing behind.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tinyvr_tests::*;

const ROUTER: &str = include_str!("../../experiments/router.toml");

fn image() -> &'static Path {
    static I: OnceLock<PathBuf> = OnceLock::new();
    I.get_or_init(|| built_image("tinyvr-vm-image"))
}

/// Measurements in this file run one at a time: two at once on two cores
/// would measure each other.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

fn name(tag: &str) -> String {
    format!("b{}{tag}", std::process::id() % 10_000)
}

/// Writes the experiment (with the shipped router next to it) and runs it.
fn bench(dir: &Scratch, body: &str) -> (Output, PathBuf) {
    dir.file("router.toml", ROUTER);
    let exp = dir.file("e.toml", body);
    let out = dir.0.join("out");
    let o = Command::new(bin("tinyvr"))
        .args([
            "bench",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--image")
        .arg(image())
        .output()
        .unwrap();
    (o, out)
}

/// The `[[router]]` table of a netns router running the shipped config.
fn netns_router(name: &str) -> String {
    format!("[[router]]\nconfig = \"router.toml\"\nplatform = \"netns\"\nname = \"{name}\"\n")
}

fn results(out: &Path) -> Value {
    let t = std::fs::read_to_string(out.join("results.json")).unwrap();
    serde_json::from_str::<Value>(&t).unwrap()["results"].clone()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "tinyvr bench failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn vm_ok() -> Option<&'static str> {
    if !has_cmd("qemu-system-x86_64") {
        return Some("needs qemu-system-x86_64 (scripts/setup installs it)");
    }
    if !Path::new(tinyvr_image::kernel::DEFAULT_SOURCE).exists() {
        return Some("needs linux-source-6.1 to build the image (scripts/setup installs it)");
    }
    None
}

#[test]
fn sweep_below_capacity_forwards_everything() {
    require!(is_root(), "needs root (namespaces)");
    let _one = one_at_a_time();
    let n = name("s");
    let dir = Scratch::new("bench-sweep");
    let router = netns_router(&n);
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "sweep"
mode = "sweep"
repetitions = 2
trial_secs = 1.0
[traffic]
frames = [64, 512]
flows = 100
dst = "10.9.0.0/24"
rates_pps = [5000, 20000]
[latency]
sample_every = 50
{router}"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2 * 2 * 2, "frames x rates x repetitions");
    for t in trials {
        let sent = t["sent"]["packets"].as_u64().unwrap();
        let got = t["received"].as_u64().unwrap();
        assert_eq!(got, sent, "lost packets well below capacity: {t}");
        let (off, fwd) = (
            t["offered_pps"].as_f64().unwrap(),
            t["forwarded_pps"].as_f64().unwrap(),
        );
        assert!(
            (fwd - off).abs() / off < 0.01,
            "forwarded {fwd} vs offered {off}"
        );
        // The generator reports what it achieved; on a busy 2-core host it
        // can fall a little short of its target, never far.
        let target = t["target_pps"].as_f64().unwrap();
        assert!(
            (off - target).abs() / target < 0.05,
            "offered {off} vs target {target}"
        );
        // Every stage of the path saw every packet.
        for (stage, count) in t["path"].as_array().unwrap().iter().map(|p| (&p[0], &p[1])) {
            assert_eq!(count.as_u64(), Some(sent), "{stage}");
        }
        // The router's kernel held its whole table through every trial.
        assert_eq!(t["held_as_ready"], true, "{}", t["held"]);
        assert_eq!(
            t["held"]["routes"], r["routers"][0]["routes"],
            "{}",
            t["held"]
        );
    }
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    assert!(points.iter().all(|p| p["loss_ratio"]["max"] == 0.0));
    // The forwarded rate in 10 ms bins: the trial plus its drain, and
    // together every packet the sink counted.
    for t in trials {
        let bins: Vec<f64> = t["timeline"]["forwarded_pps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .collect();
        assert!(bins.len() >= 90, "{} bins", bins.len());
        let counted = bins.iter().sum::<f64>() * 0.01;
        let got = t["received"].as_f64().unwrap();
        assert!(
            (counted - got).abs() <= got * 0.05 + 50.0,
            "bins sum to {counted}, the sink counted {got}"
        );
    }
    // Latency of the sampled flow in a sweep too: one frame in 50 sampled.
    for t in trials {
        let sent = t["sent"]["packets"].as_u64().unwrap();
        let n = t["latency"]["samples"].as_u64().unwrap_or(0);
        assert!(
            n * 50 >= sent * 9 / 10,
            "{n} samples of {sent} sent: {}",
            t["latency"]
        );
    }
    for p in points {
        let (p50, p99) = (&p["latency_p50_us"], &p["latency_p99_us"]);
        assert!(p50["mean"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p99["mean"].as_f64() >= p50["mean"].as_f64(), "{p}");
    }
    assert!(out.join("latency.svg").exists());
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    for f in ["forwarded.svg", "forwarded.png", "cpu.svg", "cpu.png"] {
        let m = std::fs::metadata(out.join(f)).unwrap();
        assert!(m.len() > 1000, "{f} is {} bytes", m.len());
    }
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("environment.json")).unwrap())
            .unwrap();
    assert!(env["kernel"].as_str().unwrap().contains('.'));
    assert_eq!(env["routers"][0]["netns"], n.as_str());
    assert!(String::from_utf8_lossy(&o.stdout).contains("zero-loss"));
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn a_container_router_holds_its_generated_routes_in_every_trial() {
    require!(is_root(), "needs root (namespaces)");
    require!(
        has_cmd("lxc-start"),
        "needs lxc-start (scripts/setup installs it)"
    );
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let n = name("r");
    let dir = Scratch::new("bench-lxc-routes");
    // 20,000 generated routes via the sink; traffic to generated prefixes
    // only. `up` moving the host ends used to flap the container and flush
    // them before the first trial.
    dir.file(
        "routes.toml",
        &format!(
            "{ROUTER}\n[[route_range]]\nfirst = \"16.0.0.0/24\"\ncount = 20000\nvia = \"10.2.0.2\"\n"
        ),
    );
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "lxc-routes"
mode = "sweep"
repetitions = 2
trial_secs = 1.0
[traffic]
frames = [64]
flows = 100
dst = "16.0.0.0/16"
rates_pps = [5000, 10000]
[[router]]
config = "routes.toml"
platform = "lxc"
name = "{n}"
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    // The generated ones and the route the tester adds towards traffic.dst.
    let want = r["routers"][0]["routes"].as_u64().unwrap();
    assert_eq!(want, 20_001, "{}", r["routers"][0]);
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2 * 2);
    for t in trials {
        // Read back in the container's namespace after each trial: every
        // generated route, nothing missing, and the packets got through.
        assert_eq!(t["held_as_ready"], true, "{}", t["held"]);
        assert_eq!(t["held"]["routes"], want, "{}", t["held"]);
        // ...and the container's init saw no departure since READY.
        assert_eq!(t["departures"], 0, "{t}");
        assert_eq!(t["held"]["routes_by_table"]["254"], want, "{}", t["held"]);
        assert_eq!(
            t["received"], t["sent"]["packets"],
            "through generated routes below capacity: {t}"
        );
    }
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn a_vm_past_capacity_loses_and_the_hops_account_for_it() {
    require!(is_root(), "needs root (namespaces, taps)");
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let n = name("v");
    let dir = Scratch::new("bench-vm");
    // Under TCG on two cores the VM forwards a few tens of kpps.
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "overload"
mode = "sweep"
trial_secs = 1.0
drain_ms = 700
[traffic]
rates_pps = [150000]
[[router]]
config = "router.toml"
platform = "vm"
# TCG on any host: the overload below is sized for an emulated guest.
accel = "tcg"
name = "{n}"
txqueuelen = 50
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let t = &r["trials"][0];
    // The guest's own count of its table, from its console.
    assert_eq!(t["held_as_ready"], true, "{}", t["held"]);
    let sent = t["sent"]["packets"].as_u64().unwrap();
    let got = t["received"].as_u64().unwrap();
    let lost = t["lost"].as_i64().unwrap();
    assert!(lost > 0, "no loss at 150 kpps through a TCG VM: {t}");
    // Offered: what the generator sent plus what its own device dropped
    // as it was sent (the kernel's count).
    let at_source = t["hops"][0][1]["tx_dropped"].as_u64().unwrap();
    assert_eq!(t["path"][0][0], "generator offered");
    assert_eq!(t["path"][0][1].as_u64(), Some(sent + at_source));
    assert_eq!(lost, (sent + at_source) as i64 - got as i64);
    let between: i64 = t["lost_between"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[1].as_i64().unwrap())
        .sum();
    assert_eq!(between, lost, "the stages add up to the loss: {t}");
    let hop = |name: &str| -> &Value {
        t["hops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| &h[1])
            .unwrap_or_else(|| panic!("no hop {name}"))
    };
    let src_tx = hop("source")["tx_packets"].as_u64().unwrap();
    let tap = hop("vm tap in");
    assert_eq!(
        src_tx, sent,
        "the source device sent what the generator did"
    );
    assert_eq!(
        tap["tx_packets"].as_u64().unwrap() + tap["tx_dropped"].as_u64().unwrap(),
        src_tx,
        "what reached the tap went to the VM or was dropped at its queue: {t}"
    );
    assert!(tap["tx_dropped"].as_u64().unwrap() > 0);
    assert_eq!(hop("sink")["rx_packets"].as_u64().unwrap(), got);
    // The VM's settings as read back are in the environment.
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("environment.json")).unwrap())
            .unwrap();
    assert!(env["routers"][0]["vm"]["qemu_pid"].is_u64());
    assert!(t["cpu"][format!("{n}/vcpu")].as_f64().unwrap() > 1.0, "{t}");
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn a_vm_fed_through_its_tap_directly() {
    require!(is_root(), "needs root (namespaces)");
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let n = name("t");
    let dir = Scratch::new("bench-vm-tap");
    // datapath = "tap": no bridge in the source namespace, the generator
    // writes into the VM's tap; well below capacity nothing is lost.
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "vm-tap"
mode = "sweep"
trial_secs = 1.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
rates_pps = [5000]
[[router]]
config = "router.toml"
platform = "vm"
accel = "tcg"
name = "{n}"
datapath = "tap"
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    assert!(
        r["routers"][0]["topology"]["src_bridge"].is_null(),
        "{}",
        r["routers"][0]["topology"]
    );
    let t = &r["trials"][0];
    assert_eq!(t["received"], t["sent"]["packets"], "{t}");
    // The source's device is the tap: the first two stages count the same.
    let path = t["path"].as_array().unwrap();
    assert_eq!(path[1][0], "source tx");
    assert_eq!(path[2][0], "vm tap in tx");
    assert_eq!(path[1][1], path[2][1], "{path:?}");
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn the_ndr_is_confirmed_and_one_step_above_loses() {
    require!(is_root(), "needs root (namespaces, taps)");
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let n = name("n");
    let dir = Scratch::new("bench-ndr");
    // A TCG VM's capacity wanders between trials and between runs (40 to
    // 100 kpps seen here; one run lost at 61k and not at 73.5k), so the
    // resolution, which is also the step above the NDR, is wider than that
    // whole band: the search can only end with an NDR of 81.5k, 41.75k or
    // the 2k floor, and a step above each is past any capacity seen.
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "ndr"
mode = "ndr-pdr"
trial_secs = 1.0
drain_ms = 700
[traffic]
[search]
min_pps = 2000
max_pps = 320000
resolution_pps = 96000
[latency]
at_pdr = [0.5]
sample_every = 20
[[router]]
config = "router.toml"
platform = "vm"
# TCG on any host: the search range is sized for an emulated guest.
accel = "tcg"
name = "{n}"
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let f = &r["searches"][0]["found"];
    let ndr = f["ndr_pps"].as_u64().unwrap();
    assert!(ndr > 0 && ndr < 320_000, "{f}");
    assert_eq!(
        f["ndr_confirm_loss"], 0.0,
        "the confirming trial at the NDR lost: {f}"
    );
    assert!(
        f["above_loss"].as_f64().unwrap() > 0.0,
        "one step above the NDR did not lose: {f}"
    );
    assert!(f["pdr_pps"].as_u64().unwrap() >= ndr);
    let lat = &r["searches"][0]["latency"][0][2];
    assert!(lat["samples"].as_u64().unwrap() > 10, "{lat}");
    assert!(lat["p50_us"].as_f64().unwrap() > 0.0);
    assert!(out.join("ndr_pdr.png").exists() && out.join("ndr_pdr.csv").exists());
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn a_namespace_router_forwards_on_its_own_cpu() {
    require!(is_root(), "needs root (namespaces)");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    require!(
        online.trim() != "0",
        "needs two online CPUs: one for the generator, one for the router"
    );
    let _one = one_at_a_time();
    let n = name("c");
    let dir = Scratch::new("bench-own-cpu");
    // No CPUs given: the generator gets CPU 0, the router the others.
    let router = netns_router(&n);
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "own-cpu"
mode = "sweep"
trial_secs = 1.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
max_rate = true
{router}"#
        ),
    );
    ok(&o);
    let r = results(&out);
    // RPS on the router's ingress, as asked and as the init read it back.
    let rps = &r["routers"][0]["settings"]["in0 rx-0 rps_cpus"];
    assert_eq!(rps["held"], rps["asked"], "{rps}");
    let router_cpus: Vec<u64> = rps["held"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(!router_cpus.contains(&0), "{rps}");
    // At max rate, the receive and forwarding work was done on the
    // router's CPUs (each forwarded packet is processed twice there: the
    // router's ingress, then the sink's), not on the generator's CPU 0.
    let t = &r["trials"][0];
    let got = t["received"].as_u64().unwrap();
    let per_cpu = |want: &dyn Fn(u64) -> bool| -> u64 {
        t["softnet"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| want(c["cpu"].as_u64().unwrap()))
            .map(|c| c["processed"].as_u64().unwrap())
            .sum()
    };
    let on_router = per_cpu(&|c| router_cpus.contains(&c));
    let on_generator = per_cpu(&|c| c == 0);
    assert!(got > 10_000, "{t}");
    assert!(
        on_router >= got,
        "router CPUs processed {on_router} for {got} forwarded: {}",
        t["softnet"]
    );
    assert!(
        on_generator < got / 10,
        "the generator's CPU processed {on_generator} for {got} forwarded: {}",
        t["softnet"]
    );
    // /proc/stat per CPU agrees: the router's CPUs spent their time in
    // softirq (summed: on a host with more CPUs, RPS spreads the flows).
    let softirq: f64 = t["cores"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| router_cpus.contains(&c["cpu"].as_u64().unwrap()))
        .map(|c| c["softirq"].as_f64().unwrap())
        .sum();
    assert!(softirq > 20.0, "{}", t["cores"]);
    assert!(out.join("cores.svg").exists());
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn isolation_records_every_router_over_time_with_latency() {
    require!(is_root(), "needs root (namespaces)");
    let _one = one_at_a_time();
    let (a, b) = (name("i"), name("j"));
    let dir = Scratch::new("bench-isolation");
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "iso"
mode = "isolation"
trial_secs = 1.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
[latency]
sample_every = 20
[search]
min_pps = 1000
max_pps = 20000
resolution_pps = 5000
[[router]]
config = "router.toml"
platform = "netns"
name = "{a}"
label = "probe"
rates_frac = [0.25, 0.25]
[[router]]
config = "router.toml"
platform = "netns"
name = "{b}"
label = "neighbour"
max_rate = true
frame = 128
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let steps = r["isolation"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for st in steps {
        assert!(st["jain_forwarded"].as_f64().is_some(), "{st}");
        for p in st["routers"].as_array().unwrap() {
            // Every router's latency in every step: the probe's while its
            // neighbour is loaded is what isolation is about.
            assert!(p["latency_p99_us"]["mean"].as_f64().unwrap() > 0.0, "{p}");
        }
    }
    // The isolation steps' trials: 2 routers x 2 steps, after the probe's
    // search.
    let trials = r["trials"].as_array().unwrap();
    for t in &trials[trials.len() - 4..] {
        assert!(
            t["timeline"]["forwarded_pps"].as_array().unwrap().len() >= 90,
            "{t}"
        );
        // The neighbour at max rate with its own frame size; the probe at
        // its rate with the experiment's.
        // (The probe's rate is a quarter of the NDR searched first.)
        let ndr = r["searches"][0]["found"]["ndr_pps"].as_f64().unwrap();
        let (frame, target) = if t["label"] == "neighbour" {
            ("128", Value::Null)
        } else {
            ("64", ((ndr * 0.25).round() as u64).into())
        };
        assert_eq!(
            (&t["frame"], &t["target_pps"]),
            (&Value::from(frame), &target),
            "{t}"
        );
    }
    assert!(out.join("timeline.svg").exists());
    assert_eq!(leftovers(&a), Vec::<String>::new());
    assert_eq!(leftovers(&b), Vec::<String>::new());
}

#[test]
fn scale_compares_n_routers_with_one_at_the_same_total() {
    require!(is_root(), "needs root (namespaces)");
    let _one = one_at_a_time();
    let n = format!("k{}", std::process::id() % 1000);
    let dir = Scratch::new("bench-scale");
    let router = netns_router(&n);
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "scale"
mode = "scale"
trial_secs = 0.5
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
rates_pps = [5000]
[scale]
routers = [1, 2]
{router}"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let pts = r["scale"].as_array().unwrap();
    // One router at 5 and (the baseline for two) at 10 kpps; two at 5 each.
    let find = |routers: u64, rate: u64| {
        pts.iter()
            .find(|p| p["routers"] == routers && p["rate_pps"] == rate)
            .unwrap_or_else(|| panic!("no point {routers} x {rate}: {pts:?}"))
    };
    assert_eq!(find(1, 10_000)["baseline_only"], true);
    let two = find(2, 5000);
    assert_eq!(two["per_router"].as_array().unwrap().len(), 2);
    let agg = two["aggregate_pps"]["mean"].as_f64().unwrap();
    assert!((agg - 10_000.0).abs() < 500.0, "{two}");
    let eff = two["efficiency"].as_f64().unwrap();
    assert!(
        (eff - 1.0).abs() < 0.05,
        "well below capacity nothing is lost: {two}"
    );
    assert!(two["jain_forwarded"].as_f64().unwrap() > 0.99, "{two}");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("2 routers x 5.0 kpps"), "{table}");
    assert!(out.join("scale.svg").exists());
    for k in 1..=2 {
        assert_eq!(leftovers(&format!("{n}{k}")), Vec::<String>::new());
    }
}

#[test]
fn a_starved_generator_is_named_and_bounds_the_search() {
    require!(is_root(), "needs root (namespaces)");
    let _one = one_at_a_time();
    let n = name("g");
    let dir = Scratch::new("bench-starved");
    // 20 Mpps is far beyond what one CPU of any machine sends through a
    // veth: every trial there is the generator's, not the router's.
    let router = netns_router(&n);
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "starved"
mode = "sweep"
repetitions = 1
trial_secs = 0.5
[traffic]
frames = [64]
rates_pps = [5000, 20000000]
{router}"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let t = r["trials"].as_array().unwrap();
    assert_eq!(t[0]["generator_bound"], false, "{}", t[0]);
    assert_eq!(t[1]["generator_bound"], true, "{}", t[1]);
    let offered = t[1]["offered_pps"].as_f64().unwrap();
    assert!(offered < 19_600_000.0, "{offered}");
    // The generator alone into a bare sink was measured first, and the
    // bare sink is gone again.
    let c = &r["generator_ceiling"][0];
    assert_eq!(c["frame"], "64", "{c}");
    let ceiling = c["offered_pps"].as_f64().unwrap();
    assert!(ceiling > 0.0 && ceiling < 19_600_000.0, "{c}");
    // The sink receives on the other CPUs (as a router would): on a small
    // host its backlog may drop some of what the generator offers.
    let delivered = c["delivered_pps"].as_f64().unwrap();
    assert!(
        delivered > 0.0 && delivered <= ceiling * 1.001,
        "the sink saw at most what was offered: {c}"
    );
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("generator alone into a bare sink, 64B"),
        "{table}"
    );
    assert_eq!(
        leftovers("tvg"),
        Vec::<String>::new(),
        "the bare sink is left"
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let col = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "generator_bound")
        .unwrap();
    assert_eq!(
        csv.lines().nth(2).unwrap().split(',').nth(col),
        Some("true"),
        "{csv}"
    );

    // A search up to the same unreachable rate: the rates the generator
    // could not offer fail, so the NDR stays at or below what it sent.
    let router = netns_router(&n);
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "starved-search"
mode = "ndr-pdr"
repetitions = 1
trial_secs = 0.5
[traffic]
frames = [64]
[search]
min_pps = 10000
max_pps = 20000000
resolution_pps = 1000000
{router}"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let most = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["offered_pps"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let ndr = r["ndr_pdr"][0]["ndr_pps"]["mean"].as_f64().unwrap();
    assert!(
        ndr <= most,
        "NDR {ndr} above the most the generator offered, {most}"
    );
    assert_eq!(
        r["ndr_pdr"][0]["generator_bound"], true,
        "{}",
        r["ndr_pdr"][0]
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("the generator could not offer"));
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn bad_experiments_fail_before_anything_is_made() {
    let _one = one_at_a_time();
    let n = name("x");
    let dir = Scratch::new("bench-bad");
    let good = format!(
        "name = \"bad\"\nmode = \"sweep\"\n[traffic]\nrates_pps = [1000]\n[[router]]\nconfig = \"router.toml\"\nplatform = \"netns\"\nname = \"{n}\"\n"
    );
    for (from, to, field) in [
        ("platform = \"netns\"", "platform = \"xen\"", "platform"),
        (
            "rates_pps = [1000]",
            "rates_pps = [0]",
            "traffic.rates_pps[0]",
        ),
        (
            "rates_pps = [1000]",
            "rates_pps = [1000]\nflows = 2000000",
            "traffic.flows",
        ),
        (
            "rates_pps = [1000]",
            "rates_pps = [1000]\ncpus = \"64\"",
            "traffic.cpus",
        ),
        (
            "rates_pps = [1000]",
            "rates_pps = [1000]\nframes = [32]",
            "traffic.frames",
        ),
        (
            "rates_pps = [1000]",
            "rates_pps = [1000]\nframes = [9000]",
            "traffic.frames",
        ),
    ] {
        let (o, out) = bench(&dir, &good.replacen(from, to, 1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "accepted {to}");
        assert!(err.contains(field), "{to}: {err}");
        assert!(!out.exists(), "{to}: the output directory was made");
        assert_eq!(leftovers(&n), Vec::<String>::new());
    }
    // A requirement the machine lacks is a skip, before anything is made.
    if !host_has_kvm() {
        let (o, out) = bench(
            &dir,
            &good.replacen(
                "platform = \"netns\"",
                "platform = \"vm\"\naccel = \"kvm\"",
                1,
            ),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(77), "{err}");
        assert!(
            err.contains("skipped: router[0] (vm): accel = \"kvm\""),
            "{err}"
        );
        assert!(!out.exists());
        assert_eq!(leftovers(&n), Vec::<String>::new());
    }
    let o = Command::new(bin("tinyvr"))
        .args(["bench", "/nonexistent/e.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/e.toml"));
}

#[test]
fn ctrl_c_keeps_the_results_so_far_and_cleans_up() {
    require!(is_root(), "needs root (namespaces)");
    let _one = one_at_a_time();
    let n = name("c");
    let dir = Scratch::new("bench-int");
    dir.file("router.toml", ROUTER);
    let exp = dir.file(
        "e.toml",
        &format!(
            "name = \"int\"\nmode = \"sweep\"\ntrial_secs = 1.0\n[traffic]\nrates_pps = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000]\n[[router]]\nconfig = \"router.toml\"\nplatform = \"netns\"\nname = \"{n}\"\n"
        ),
    );
    let out = dir.0.join("out");
    let child = Command::new(bin("tinyvr"))
        .args([
            "bench",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("interrupted"), "{err}");
    let r = results(&out);
    assert_eq!(r["interrupted"], true);
    let done = r["trials"].as_array().unwrap().len();
    assert!((1..8).contains(&done), "{done} trials");
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn the_demo_compares_the_three_platforms() {
    require!(is_root(), "needs root (namespaces)");
    require!(
        has_cmd("lxc-start"),
        "needs lxc-start (scripts/setup installs it)"
    );
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let dir = Scratch::new("demo");
    let out = dir.0.join("demo");
    let o = Command::new(bin("tinyvr"))
        .args(["demo", "--out", out.to_str().unwrap(), "--image"])
        .arg(image())
        .output()
        .unwrap();
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    for p in ["baseline", "lxc", "vm"] {
        assert!(
            table.lines().any(|l| l.starts_with(p)),
            "no {p} row:\n{table}"
        );
    }
    let r = results(&out);
    let zero_loss_everywhere = |label: &str| {
        r["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["label"] == label && p["target_pps"] == 10000)
            .all(|p| p["loss_ratio"]["max"] == 0.0)
    };
    assert!(
        zero_loss_everywhere("baseline")
            && zero_loss_everywhere("lxc")
            && zero_loss_everywhere("vm")
    );
    // Every router held its whole table through every trial, as read back
    // in its namespace (netns, LXC) or counted by the guest (VM).
    for t in r["trials"].as_array().unwrap() {
        assert_eq!(t["held_as_ready"], true, "{}: {}", t["label"], t["held"]);
    }
    for f in [
        "forwarded.png",
        "forwarded.svg",
        "results.csv",
        "environment.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    for n in ["d-ns", "d-lxc", "d-vm"] {
        assert_eq!(leftovers(n), Vec::<String>::new());
    }
}

/// The hop named `name` of a trial: its link counters.
fn hop<'a>(t: &'a Value, name: &str) -> &'a Value {
    &t["hops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == name)
        .unwrap_or_else(|| panic!("no hop {name}: {}", t["hops"]))[1]
}

#[test]
fn macvlan_and_macvtap_datapaths_are_built_counted_and_removed() {
    require!(is_root(), "needs root (namespaces, macvlans)");
    require!(
        has_cmd("lxc-start"),
        "needs lxc-start (scripts/setup installs it)"
    );
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let (m, l, v) = (name("m"), name("l"), name("v"));
    let dir = Scratch::new("bench-lowers");
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "lowers"
mode = "sweep"
trial_secs = 1.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
rates_pps = [5000]
max_rate = true
[[router]]
config = "router.toml"
platform = "netns"
name = "{m}"
datapath = "macvlan"
[[router]]
config = "router.toml"
platform = "lxc"
name = "{l}"
datapath = "macvlan"
[[router]]
config = "router.toml"
platform = "vm"
accel = "tcg"
name = "{v}"
datapath = "macvtap"
txqueuelen = 20
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    for (i, n) in [&m, &l, &v].into_iter().enumerate() {
        let router = &r["routers"][i];
        // Each end feeds a veth whose host end is the lower.
        let lowers = router["datapath"]["lowers"].as_array().unwrap();
        assert_eq!(lowers[0]["dev"], format!("{n}-p0"), "{router}");
        let rps = &lowers[0]["rps_cpus_held"]["rx-0"];
        if i < 2 {
            // The router's CPUs steer the lower's receive (the macvlan's
            // own happens in it), never the generator's CPU 0.
            assert_eq!(Some(rps.as_str().unwrap()), lowers[0]["rps_cpus"].as_str());
            assert!(!rps.as_str().unwrap().split(',').any(|c| c == "0"), "{rps}");
        } else {
            assert_eq!(rps, "", "a VM steers inside the guest");
        }
        for t in r["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["router"] == *n)
        {
            assert_eq!(t["held_as_ready"], true, "{}", t["held"]);
            let path = t["path"].as_array().unwrap();
            assert_eq!(path[2][0], "lower in rx", "{path:?}");
            assert_eq!(path[path.len() - 2][0], "lower out tx", "{path:?}");
            // Offered is sent plus what the source's device dropped as it
            // was sent, and the stages add up to the loss.
            let sent = t["sent"]["packets"].as_u64().unwrap();
            let at_source = hop(t, "source")["tx_dropped"].as_u64().unwrap();
            assert_eq!(path[0][1].as_u64(), Some(sent + at_source), "{t}");
            let between: i64 = t["lost_between"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x[1].as_i64().unwrap())
                .sum();
            assert_eq!(between, t["lost"].as_i64().unwrap(), "{t}");
            if t["target_pps"].is_null() && i == 2 {
                // In overload a macvtap drops at its own queue (rx_dropped),
                // not at the lower and not back at the generator.
                let q = hop(t, "vm macvtap in");
                let dropped = q["rx_dropped"].as_u64().unwrap();
                assert!(dropped > 0, "{t}");
                assert_eq!(at_source, 0, "{t}");
                // ...and the path puts them there.
                let at_queue = t["lost_between"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x[0] == "lower in rx -> vm macvtap in queued")
                    .unwrap_or_else(|| panic!("{}", t["lost_between"]))[1]
                    .as_u64();
                assert_eq!(at_queue, Some(dropped), "{t}");
            }
            if t["target_pps"] == 5000 && i < 2 {
                assert_eq!(t["lost"], 0, "{t}");
            }
        }
    }
    for n in [&m, &l, &v] {
        assert_eq!(leftovers(n), Vec::<String>::new());
    }
}

#[test]
fn a_lower_name_taken_on_the_host_is_an_error_and_left_alone() {
    require!(is_root(), "needs root (namespaces, links)");
    let _one = one_at_a_time();
    let n = name("k");
    let dir = Scratch::new("bench-lower-clash");
    let theirs = format!("{n}-p0");
    let add = run(Command::new("ip").args(["link", "add", &theirs, "type", "bridge"]));
    assert!(add.status.success(), "{add:?}");
    let (o, _) = bench(
        &dir,
        &format!(
            r#"name = "clash"
mode = "sweep"
trial_secs = 1.0
[traffic]
frames = [64]
rates_pps = [1000]
{}datapath = "macvlan"
"#,
            netns_router(&n)
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let kept = leftovers(&n);
    run(Command::new("ip").args(["link", "del", &theirs]));
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&theirs), "{err}");
    assert_eq!(
        kept,
        vec![format!("link {theirs}")],
        "only the clash remains"
    );
}

#[test]
fn burning_neighbours_burn_only_in_their_steps_and_leave_nothing() {
    require!(is_root(), "needs root (namespaces, containers)");
    require!(
        has_cmd("lxc-start"),
        "needs lxc-start (scripts/setup installs it)"
    );
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    require!(
        online.trim() != "0",
        "needs two online CPUs: the generator's and the routers'"
    );
    let _one = one_at_a_time();
    let (p, c, v) = (name("p"), name("hc"), name("hv"));
    let dir = Scratch::new("bench-burn");
    // A light probe on CPU 1 while a container and a VM that only burn
    // share that CPU: frozen/paused in step 1, burning in step 2.
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "burn"
mode = "isolation"
trial_secs = 1.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
[latency]
sample_every = 100
{}router_cpus = "1"
rates_pps = [5000, 5000]
{}router_cpus = "1"
rates_pps = [5000, 5000]
[[neighbour]]
name = "{c}"
platform = "lxc"
cpus = "1"
burn = [false, true]
[[neighbour]]
name = "{v}"
platform = "vm"
cpus = "1"
memory_mb = 16
burn = [false, true]
"#,
            netns_router(&p),
            netns_router(&format!("{p}b"))
        ),
    );
    ok(&o);
    let r = results(&out);
    assert_eq!(r["neighbours"].as_array().unwrap().len(), 2);
    let steps = r["isolation"].as_array().unwrap();
    for (s, burning) in steps.iter().zip([false, true]) {
        let states: Vec<bool> = s["neighbours_burning"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[1].as_bool().unwrap())
            .collect();
        assert_eq!(states, [burning, burning], "{s}");
    }
    // CPU 1 is idle most of step 1 and has no idle time left in step 2.
    let idle = |step: u64| -> f64 {
        let t = r["trials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["step"] == step)
            .unwrap();
        t["cores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cpu"] == 1)
            .unwrap()["idle"]
            .as_f64()
            .unwrap()
    };
    assert!(idle(0) > 50.0, "CPU 1 idle {} in step 1", idle(0));
    assert!(idle(1) < 10.0, "CPU 1 idle {} in step 2", idle(1));
    for n in [&p, &c, &v] {
        assert_eq!(leftovers(n), Vec::<String>::new());
    }
    assert!(
        !std::path::Path::new(&format!("/var/lib/tinyvr/lxc/{c}")).exists(),
        "the container's directory is gone"
    );
}

#[test]
fn the_sink_accounts_every_sequence_number() {
    require!(is_root(), "needs root (namespaces, taps)");
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let (n, v) = (name("q"), name("qv"));
    let dir = Scratch::new("bench-seq");
    // Below capacity nothing is missing; a TCG VM far past its capacity
    // loses, and the sink names exactly the frames the counters miss.
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "seq"
mode = "sweep"
trial_secs = 1.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
rates_pps = [20000, 150000]
sequence = true
{}[[router]]
config = "router.toml"
platform = "vm"
accel = "tcg"
name = "{v}"
datapath = "macvtap"
"#,
            netns_router(&n)
        ),
    );
    ok(&o);
    let r = results(&out);
    for t in r["trials"].as_array().unwrap() {
        let s = &t["sequence"];
        assert_eq!(s["receiver_dropped"], 0, "{s}");
        let offered = t["path"][0][1].as_u64().unwrap();
        assert_eq!(s["received"].as_u64(), t["received"].as_u64(), "{t}");
        assert_eq!(
            s["lost"].as_u64(),
            Some(offered - s["received"].as_u64().unwrap())
        );
        assert_eq!(s["duplicates"], 0, "{s}");
        // Exactly the frames the counters miss (the namespace router may
        // lose a burst at its backlog even at 150 kpps on this host).
        assert_eq!(s["lost"].as_i64(), t["lost"].as_i64(), "{t}");
        if t["router"] == n.as_str() && t["target_pps"] == 20000 {
            assert_eq!(s["lost"], 0, "{s}");
            assert!(s["lost_ranges"].as_array().unwrap().is_empty());
        }
        if t["router"] == v.as_str() && t["target_pps"] == 150000 {
            let first = &s["lost_ranges"][0];
            assert!(first[0].as_u64() <= first[1].as_u64(), "{s}");
            assert!(s["longest_loss_run"].as_u64().unwrap() >= 1, "{s}");
        }
        assert!(s["longest_gap_us"].as_f64().unwrap() > 0.0, "{s}");
    }
    for x in [&n, &v] {
        assert_eq!(leftovers(x), Vec::<String>::new());
    }
}

#[test]
fn a_migrate_run_records_qemus_figures_and_the_traffics() {
    require!(is_root(), "needs root (namespaces, macvtaps)");
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    let _one = one_at_a_time();
    let n = name("mi");
    let dir = Scratch::new("bench-migrate");
    let (o, out) = bench(
        &dir,
        &format!(
            r#"name = "migrate"
mode = "migrate"
trial_secs = 4.0
[traffic]
frames = [64]
flows = 16
dst = "10.9.0.0/24"
rates_pps = [5000]
[latency]
sample_every = 50
[migrate]
after_ms = 1500
[[router]]
config = "router.toml"
platform = "vm"
accel = "tcg"
name = "{n}"
datapath = "macvtap"
"#
        ),
    );
    ok(&o);
    let r = results(&out);
    let m = &r["migrations"][0];
    let rep = &m["report"];
    assert_eq!(rep["migration"]["status"], "completed", "{m}");
    let (start, end) = (
        rep["started_ms"].as_f64().unwrap(),
        rep["ended_ms"].as_f64().unwrap(),
    );
    assert!(start >= 1500.0 && end > start, "{rep}");
    // The sink's side: the loss by sequence number and the longest
    // silence, consistent with qemu's pause plus the link switch (TCG
    // scheduling adds up to 250 ms here).
    let gap = m["longest_gap_ms"].as_f64().unwrap();
    let bound = rep["migration"]["downtime_ms"].as_f64().unwrap()
        + rep["links_switched_ms"].as_f64().unwrap()
        + 250.0;
    assert!(gap > 0.0 && gap <= bound, "gap {gap} ms, bound {bound} ms");
    let t = &r["trials"][0];
    assert_eq!(m["lost"], t["sequence"]["lost"], "{m}");
    assert_eq!(t["held_as_ready"], true, "{}", t["held"]);
    // The router's CPU across the switch: its cgroup, which the
    // destination joined, read where it was when the trial began.
    let cg = t["cpu"][format!("{n}/cgroup")].as_f64();
    assert!(cg.is_some_and(|c| c > 0.0), "{}", t["cpu"]);
    // Latency before, during and after, and the rate in 10 ms bins.
    for phase in ["before", "after"] {
        assert!(
            rep["latency"][0][phase]["samples"].as_u64().unwrap() > 0,
            "{rep}"
        );
    }
    assert!(m["timeline"]["forwarded_pps"].as_array().unwrap().len() > 300);
    let p = &r["migration_points"][0];
    assert_eq!(p["downtime_ms"]["n"], 1);
    for f in ["migration.png", "migration_data.png", "migration_trace.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    assert_eq!(leftovers(&n), Vec::<String>::new());
    assert_eq!(leftovers("mig"), Vec::<String>::new());
}

#[test]
fn a_container_migrate_run_is_skipped_where_criu_cannot_checkpoint() {
    require!(is_root(), "needs root");
    require!(
        has_cmd("lxc-start") && has_cmd("criu"),
        "needs lxc-start and criu (scripts/setup installs them)"
    );
    let criu_works = Command::new("criu")
        .arg("check")
        .output()
        .unwrap()
        .status
        .success();
    let _one = one_at_a_time();
    let n = name("cr");
    let dir = Scratch::new("bench-migrate-lxc");
    let (o, _) = bench(
        &dir,
        &format!(
            r#"name = "m"
mode = "migrate"
trial_secs = 4.0
[traffic]
rates_pps = [1000]
[migrate]
[[router]]
config = "router.toml"
platform = "lxc"
name = "{n}"
"#
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if criu_works {
        assert!(
            !o.status.success() && err.contains("not built yet"),
            "{err}"
        );
    } else {
        assert_eq!(o.status.code(), Some(77), "{err}");
        assert!(
            err.contains("skipped: router[0] (lxc): migrating a container: criu check fails"),
            "{err}"
        );
    }
    assert_eq!(leftovers(&n), Vec::<String>::new());
}

#[test]
fn the_same_experiment_through_libvirt_forwards_as_the_native_vm() {
    require!(is_root(), "needs root (namespaces, taps)");
    require!(vm_ok().is_none(), vm_ok().unwrap_or(""));
    require!(
        libvirtd_missing().is_none(),
        libvirtd_missing().unwrap_or("")
    );
    let _one = one_at_a_time();
    let (q, v) = (name("lq"), name("lv"));
    let dir = Scratch::new("bench-launchers");
    // One rate every VM forwards whole, one past what TCG forwards here.
    // THP as libvirt's qemu has it (the host's policy) for both.
    let router = |n: &str, launcher: &str| {
        format!(
            "[[router]]\nconfig = \"router.toml\"\nplatform = \"vm\"\nname = \"{n}\"\naccel = \"tcg\"\nlauncher = \"{launcher}\"\nthp = \"on\"\naffinity = {{ vcpu = \"1\", emulator = \"0\" }}\n"
        )
    };
    let (o, out) = bench(
        &dir,
        &format!(
            "name = \"launchers\"\nmode = \"sweep\"\ninterleave = true\nrepetitions = 3\ntrial_secs = 1.0\ndrain_ms = 700\n[traffic]\nrates_pps = [10000, 80000]\n{}{}",
            router(&q, "qemu"),
            router(&v, "libvirt")
        ),
    );
    ok(&o);
    let r = results(&out);
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("environment.json")).unwrap())
            .unwrap();
    let routers = env["routers"].as_array().unwrap();
    assert!(routers
        .iter()
        .any(|x| x["vm"]["libvirt"]["uuid"].is_string()));
    let points = r["points"].as_array().unwrap();
    for rate in [10000, 80000] {
        let at = |n: &str| {
            points
                .iter()
                .find(|p| p["router"] == n && p["target_pps"] == rate)
                .unwrap_or_else(|| panic!("no point for {n} at {rate}"))["forwarded_pps"]
                .clone()
        };
        let (a, b) = (at(&q), at(&v));
        let (ma, mb) = (a["mean"].as_f64().unwrap(), b["mean"].as_f64().unwrap());
        let (ca, cb) = (a["ci"].as_f64().unwrap(), b["ci"].as_f64().unwrap());
        eprintln!("at {rate} pps: native {ma:.0} ± {ca:.0}, libvirt {mb:.0} ± {cb:.0}");
        if rate == 10000 {
            // Below capacity both forward everything, exactly.
            for m in [ma, mb] {
                assert!(
                    m >= 0.995 * rate as f64,
                    "at {rate} pps: native {ma:.0}, libvirt {mb:.0}"
                );
            }
            continue;
        }
        // Past capacity: the intervals overlap, or, where three trials give
        // intervals narrower than the drift of TCG throughput on a shared
        // host (CI once saw 76.7 ± 0.7 against 72.3 ± 3.0 kpps, 6%), the
        // means are within 10%.
        let overlap = (ma - mb).abs() <= ca + cb;
        let close = (ma - mb).abs() <= 0.10 * ma.max(mb);
        assert!(
            overlap || close,
            "at {rate} pps: native {ma:.0} ± {ca:.0}, libvirt {mb:.0} ± {cb:.0}"
        );
    }
    assert_eq!(leftovers(&q), Vec::<String>::new());
    assert_eq!(leftovers(&v), Vec::<String>::new());
    let list = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&v));
}
