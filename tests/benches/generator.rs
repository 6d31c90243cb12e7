//! The project's generator against trafgen (netsniff-ng), in one run,
//! into the same bare sink (a veth pair between two namespaces, no router:
//! what `tinyvr bench` measures as the generator's ceiling), same 64-byte
//! frame (60 bytes from the socket), on the same CPU, as fast as each goes.
//! The rate is what the sink's link counters saw per second of sending.
//! Rounds alternate which goes first. Target: ratio >= 1.0. (Through a
//! router on a CPU of its own, trafgen aborts once the router's backlog
//! drops — "Flushing TX_RING failed" — so the comparison is made where
//! only the generators differ.)
//!
//!   cargo bench -p tinyvr-tests --bench generator [-- SECONDS [ROUNDS]]

use serde_json::Value;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tinyvr_bench::experiment::{FlowOrder, FrameSpec};
use tinyvr_bench::{frame, gen};
use tinyvr_tests::*;

/// The CPU both generators run on (the bare sink's receive work lands
/// there too: veth hands the frame on in the sender's context), as in a
/// bench run where the generator gets the first online CPU.
const CPU: &str = "0";

fn sink_rx(t: &Value) -> u64 {
    link_stat(
        t["sink"]["netns"].as_str().unwrap(),
        t["sink"]["dev"].as_str().unwrap(),
        "rx",
        "packets",
    )
}

fn ours(t: &Value, rmac: &str, secs: f64) -> f64 {
    let mac = |s: &str| s.parse::<tinyvr_config::MacAddr>().unwrap().0;
    let ip = |s: &str| s.parse().unwrap();
    let spec = gen::Spec {
        netns: t["src"]["netns"].as_str().unwrap().into(),
        dev: t["src"]["dev"].as_str().unwrap().into(),
        ends: frame::Endpoints {
            src_mac: mac(t["src"]["mac"].as_str().unwrap()),
            dst_mac: mac(rmac),
            src_ip: ip(t["src"]["ip"].as_str().unwrap()),
        },
        dst_base: ip(t["sink"]["ip"].as_str().unwrap()),
        dst_addrs: 1,
        flows: 1,
        order: FlowOrder::RoundRobin,
        frame: FrameSpec::Fixed(64),
        pps: None,
        duration: Duration::from_secs_f64(secs),
        cpus: Some(CPU.parse().unwrap()),
        sample_every: 0,
    };
    static STOP: AtomicBool = AtomicBool::new(false);
    let before = sink_rx(t);
    let sent = gen::start_with(spec, &STOP)
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let got = sink_rx(t) - before;
    assert!(
        got >= sent.packets * 99 / 100,
        "the sink lost packets: {got} of {}",
        sent.packets
    );
    got as f64 / sent.secs
}

fn trafgen(t: &Value, rmac: &str, packets: u64) -> f64 {
    let pkt = format!(
        "{{ eth(da={rmac}, sa={}), ipv4(saddr={}, daddr={}, ttl=64), udp(sport=9000, dport=1024), fill(0x00, 18) }}",
        t["src"]["mac"].as_str().unwrap(),
        t["src"]["ip"].as_str().unwrap(),
        t["sink"]["ip"].as_str().unwrap()
    );
    let before = sink_rx(t);
    let start = Instant::now();
    run(Command::new("taskset").args([
        "-c",
        CPU,
        "ip",
        "netns",
        "exec",
        t["src"]["netns"].as_str().unwrap(),
        "trafgen",
        "--dev",
        t["src"]["dev"].as_str().unwrap(),
        "--cpus",
        "1", // one worker process, on the CPU taskset gives
        "--no-cpu-stats",
        "-q",
        "--num",
        &packets.to_string(),
        &pkt,
    ]));
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let got = sink_rx(t) - before;
    got as f64 / secs
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let secs: f64 = args
        .next()
        .map(|a| a.parse().expect("SECONDS"))
        .unwrap_or(3.0);
    let rounds: u32 = args.next().map(|a| a.parse().expect("ROUNDS")).unwrap_or(3);
    if !is_root() || !has_cmd("trafgen") || !has_cmd("taskset") {
        eprintln!("skipped: generator: needs root, trafgen (netsniff-ng) and taskset (scripts/setup installs them)");
        std::process::exit(if std::env::var("CI").is_ok_and(|v| v == "true") {
            1
        } else {
            0
        });
    }
    let name = format!("g{}", std::process::id() % 100_000);
    // The sink receives on the generator's CPU: steered to another one
    // (as a router's receive is in a bench run), the sink's backlog
    // overflows and trafgen aborts ("Flushing TX_RING failed").
    tinyvr_bench::ceiling::build(&name, None).expect("the bare sink");
    let _down = Down::new("netns", &name);
    let ends = tinyvr_bench::ceiling::ends(&name);
    let t = &ends;
    let rmac = t["sink"]["mac"].as_str().unwrap().to_string();
    println!("64-byte frames, CPU {CPU}, into a bare sink; {rounds} round(s) of {secs} s");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let mut go = |which: &str| {
            let kpps = if which == "tinyvr" {
                let x = ours(t, &rmac, secs);
                a.push(x);
                x
            } else {
                // As many packets as ours sent in the same time.
                let n = (a.last().copied().unwrap_or(300_000.0) * secs) as u64;
                let x = trafgen(t, &rmac, n);
                b.push(x);
                x
            };
            println!("round {r}  {which:<8} {:>8.1} kpps", kpps / 1e3);
        };
        if r % 2 == 0 {
            go("tinyvr");
            go("trafgen");
        } else {
            go("trafgen");
            go("tinyvr");
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "RESULT tinyvr_kpps={:.1} trafgen_kpps={:.1} ratio={:.3} (target >= 1.0)",
        mean(&a) / 1e3,
        mean(&b) / 1e3,
        mean(&a) / mean(&b)
    );
}
