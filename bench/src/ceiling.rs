//! Know the instrument: before any router, the generator sends as fast as
//! it can, from the experiment's generator CPUs, into a bare sink (a veth
//! pair between two namespaces, no router) whose receive is steered to the
//! other CPUs, as a router's is. What it offers per frame size (taken by
//! the sink or dropped at its backlog) is the ceiling every router's rate
//! is read against: a router whose zero-loss rate sits at this ceiling
//! measured the generator.
//!
//! The two namespaces are made through the same lifecycle as a netns
//! router (`tinyvr netns down NAME` or `gc` removes them after a crash);
//! the veth lives in them and goes with them.

use crate::counters::{self, Ns};
use crate::experiment::{FrameSpec, Loaded};
use crate::frame::Endpoints;
use crate::gen;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;
use tinyvr_config::{CpuList, MacAddr};
use tinyvr_host::{lifecycle, links, netns, platform_netns, topology, HostError};

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub frame: String,
    /// What the generator offered per second: taken by the sink's veth or
    /// dropped there (the generator's own count).
    pub offered_pps: f64,
    /// What the sink's device received, per second.
    pub delivered_pps: f64,
    /// CPU time of the generator thread, % of one core.
    pub generator_cpu: f64,
}

const SRC_DEV: &str = "gen0";
const SINK_DEV: &str = "sink0";
const SRC_MAC: MacAddr = MacAddr([0x02, 0x74, 0, 0, 0, 0x0a]);
const SINK_MAC: MacAddr = MacAddr([0x02, 0x74, 0, 0, 0, 0x0b]);
const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const SINK_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 1);

fn wire(name: &str) -> (String, String) {
    (format!("{name}-src"), format!("{name}-snk"))
}

/// The bare sink's two ends in the shape of a router topology's `src` and
/// `sink` (what the generator benchmark sends with): frames go to
/// `sink.mac`, addressed to `sink.ip`.
pub fn ends(name: &str) -> serde_json::Value {
    let (src, snk) = wire(name);
    serde_json::json!({
        "src": {"netns": src, "dev": SRC_DEV, "mac": SRC_MAC.to_string(), "ip": SRC_IP.to_string()},
        "sink": {"netns": snk, "dev": SINK_DEV, "mac": SINK_MAC.to_string(), "ip": SINK_IP.to_string()},
    })
}

/// Removes a bare sink made by [`build`].
pub fn remove(name: &str) -> Result<(), HostError> {
    lifecycle::down(name, "netns", |_| Vec::new()).map(|_| ())
}

/// Makes the bare sink: two quiet namespaces joined by a veth pair, up,
/// through the netns lifecycle under instance name `name`; with
/// `sink_cpus`, the sink receives on those CPUs (RPS).
pub fn build(name: &str, sink_cpus: Option<CpuList>) -> Result<(), HostError> {
    let (src, snk) = wire(name);
    lifecycle::up(name, "netns", |state| {
        for ns in [&src, &snk] {
            platform_netns::create_netns(state, ns)?;
            topology::quiet(ns)?;
        }
        let mut nl = netns::socket(Some(&src))?;
        links::add_veth(
            &mut nl,
            (SRC_DEV, Some(&SRC_MAC)),
            (SINK_DEV, Some(&SINK_MAC)),
            Some(&snk),
        )?;
        links::set_up(&mut nl, SRC_DEV)?;
        links::set_up(&mut netns::socket(Some(&snk))?, SINK_DEV)?;
        if let Some(c) = sink_cpus {
            // The sink's receive off the generator's CPUs, as a router's
            // is: the generator pays for sending only.
            netns::with_sysfs(&snk, move || {
                tinyvr_init::sysfs::write_queue_masks(SINK_DEV, "rx", "rps_cpus", &c)
                    .map_err(|e| HostError::Other(e.to_string()))
            })?;
        }
        Ok(())
    })
}

/// Measures the ceiling for each of the experiment's frame sizes, one run
/// of `trial_secs` each, under the instance name `name`.
pub fn measure(l: &Loaded, name: &str) -> Result<Vec<Ceiling>, String> {
    // Every online CPU the generator does not send from.
    let gen = l.exp.traffic.cpus.clone();
    let rest: Vec<u32> = tinyvr_host::cgroup::online_cpus()
        .into_iter()
        .filter(|c| gen.as_ref().is_some_and(|g| !g.0.contains(c)))
        .collect();
    let sink_cpus = (!rest.is_empty()).then_some(CpuList(rest));
    build(name, sink_cpus).map_err(|e| format!("the generator's bare sink: {e}"))?;
    let r = l.frames.iter().map(|&f| one(l, name, f)).collect();
    remove(name).map_err(|e| format!("removing the generator's bare sink: {e}"))?;
    r
}

fn one(l: &Loaded, name: &str, frame: FrameSpec) -> Result<Ceiling, String> {
    let (src, snk) = wire(name);
    let t = &l.exp.traffic;
    let dst = t.dst.as_ref();
    let dst_base = match dst.map(|p| p.addr) {
        Some(std::net::IpAddr::V4(a)) => a,
        _ => SINK_IP,
    };
    let spec = gen::Spec {
        netns: src,
        dev: SRC_DEV.into(),
        ends: Endpoints {
            src_mac: SRC_MAC.0,
            dst_mac: SINK_MAC.0,
            src_ip: SRC_IP,
        },
        dst_base,
        dst_addrs: crate::experiment::dst_addrs(dst),
        flows: t.flows,
        order: t.flow_order,
        frame,
        pps: None,
        duration: Duration::from_secs_f64(l.exp.trial_secs),
        cpus: t.cpus.clone(),
        sample_every: 0,
    };
    let sink = Ns::Named(snk);
    let rx = |c: &std::collections::BTreeMap<String, counters::Link>| {
        c.get(SINK_DEV).map_or(0, |l| l.rx_packets)
    };
    let before = rx(&counters::read(&sink)?);
    let sent = gen::start_with(spec, &crate::run::STOP)?
        .join()
        .map_err(|_| "generator panicked".to_string())??;
    std::thread::sleep(Duration::from_millis(l.exp.drain_ms));
    let got = rx(&counters::read(&sink)?).saturating_sub(before);
    Ok(Ceiling {
        frame: frame.label(),
        // Frames the sink's veth dropped were sent all the same.
        offered_pps: (sent.packets + sent.refused) as f64 / sent.secs.max(1e-9),
        delivered_pps: got as f64 / sent.secs.max(1e-9),
        generator_cpu: (sent.cpu_secs / sent.secs.max(1e-9) * 1000.0).round() / 10.0,
    })
}
