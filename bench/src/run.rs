//! Drives an experiment: trials (generators, receivers, counters, CPU),
//! the three modes, repetitions and summaries. Results accumulate as they
//! are measured, so an interrupted run still has everything done so far.

use crate::counters::{self, Link};
use crate::cpu;
use crate::experiment::{FrameSpec, Loaded, Mode, Platform, RouterSpec};
use crate::gen::{self, Sent};
use crate::routers::{self, Env, Fleet, Running};
use crate::search;
use crate::stats::{self, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Set by SIGINT/SIGTERM: generators stop, the run winds down, results
/// so far are written and every router is torn down (one flag with the
/// platforms' own waits, so a router still booting is abandoned too).
pub use tinyvr_host::interrupt::{catch_signals, STOP};

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub router: String,
    pub label: String,
    pub platform: Platform,
    pub frame: String,
    pub step: usize,
    pub repetition: u32,
    /// None: as fast as the generator goes.
    pub target_pps: Option<u64>,
    pub sent: Sent,
    pub offered_pps: f64,
    pub received: u64,
    pub forwarded_pps: f64,
    pub lost: i64,
    pub loss_ratio: f64,
    /// Counter deltas of every hop, in path order.
    pub hops: Vec<(String, Link)>,
    /// Packets counted at each stage of the path, and how many went
    /// missing between consecutive stages: where the loss happened.
    pub path: Vec<(String, u64)>,
    pub lost_between: Vec<(String, i64)>,
    /// Percent of one core per thread class, softirq and cgroup.
    pub cpu: BTreeMap<String, f64>,
    pub latency: Option<stats::Latency>,
    /// With `traffic.sequence`: loss by sequence number at the sink.
    pub sequence: Option<Sequence>,
    /// What the router's kernel held after the trial (routes, addresses,
    /// neighbours, rules): read back in its namespace, or for a VM the
    /// guest's own latest count from its console. A trial whose router had
    /// lost part of its table shows it here and in `held_as_ready`.
    pub held: Option<tinyvr_host::verify::Held>,
    pub held_as_ready: Option<bool>,
    /// A VM: the guest's read-backs since READY that found its table not as
    /// configured (so a table lost and back between trials still shows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub departures: Option<u64>,
    /// The generator, not the router, set the rate: see [`generator_bound`].
    pub generator_bound: bool,
    /// Receive work per CPU during the trial (host-wide, all routers of
    /// the trial together): which CPU actually did the forwarding.
    pub softnet: Vec<crate::softnet::Cpu>,
    /// Each CPU's user, system, irq, softirq, guest and idle time during
    /// the trial, % of that CPU (host-wide).
    pub cores: Vec<cpu::CoreUse>,
    /// The forwarded rate in 10 ms bins through the trial.
    pub timeline: crate::timeline::Timeline,
}

/// How far short of its target the generator may fall before a trial is
/// the generator's measurement rather than the router's.
pub const GENERATOR_SHORTFALL: f64 = 0.02;

/// Whether a trial measured the generator: at a target rate, it offered
/// more than 2% less than the target; at max rate (no target), the router
/// forwarded everything offered, so the rate is what the generator could
/// send, not what the router can take. Pure.
pub fn generator_bound(target_pps: Option<u64>, offered_pps: f64, loss_ratio: f64) -> bool {
    match target_pps {
        Some(t) => offered_pps < t as f64 * (1.0 - GENERATOR_SHORTFALL),
        None => loss_ratio <= 0.0,
    }
}

/// The loss a search judges a trial by: the measured loss, or, when the
/// generator fell short of the rate, at least the shortfall — a rate that
/// was never offered cannot pass, so no NDR lies above what the generator
/// sends. Pure.
pub fn search_loss(target_pps: u64, offered_pps: f64, loss_ratio: f64) -> f64 {
    if generator_bound(Some(target_pps), offered_pps, loss_ratio) {
        loss_ratio.max(1.0 - offered_pps / target_pps as f64)
    } else {
        loss_ratio
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub router: String,
    pub label: String,
    pub platform: Platform,
    pub frame: String,
    pub step: usize,
    pub target_pps: Option<u64>,
    pub offered_pps: Summary,
    pub forwarded_pps: Summary,
    pub loss_ratio: Summary,
    pub cpu: BTreeMap<String, f64>,
    /// Some trial of this point was generator-bound.
    pub generator_bound: bool,
    /// Per CPU, the mean over the point's trials.
    pub cores: Vec<cpu::CoreUse>,
    /// Latency of the sampled flow over the point's trials (with a
    /// `[latency]` table): the trials' medians and 99th percentiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_us: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_us: Option<Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchRun {
    pub router: String,
    pub label: String,
    pub frame: String,
    pub repetition: u32,
    pub found: search::Found,
    /// (fraction of the PDR, rate, latency there).
    pub latency: Vec<(f64, u64, Option<stats::Latency>)>,
    /// Some trial of the search could not offer its rate: the search's
    /// upper bound there was the generator's (the NDR is below it).
    pub generator_bound: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NdrPdr {
    pub router: String,
    pub label: String,
    pub platform: Platform,
    pub frame: String,
    pub ndr_pps: Summary,
    pub pdr_pps: Summary,
    /// Some search reached the generator's ceiling.
    pub generator_bound: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct IsolationStep {
    pub step: usize,
    /// Per router: target, mean offered, mean forwarded with CI.
    pub routers: Vec<Point>,
    /// Jain's index over the routers' mean forwarded rates.
    pub jain_forwarded: Option<f64>,
    /// ...and over their CPU (cgroup where there is one, else threads).
    pub jain_cpu: Option<f64>,
    /// Each neighbour's state in this step, as read back (true: burning;
    /// false: frozen or paused).
    pub neighbours_burning: Vec<(String, bool)>,
}

/// One migration under load: what QMP measured, what the traffic saw.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRun {
    pub router: String,
    pub label: String,
    pub frame: String,
    pub rate_pps: u64,
    pub repetition: u32,
    /// `tinyvr vm migrate`'s report: QMP's figures (`migration`), the link
    /// switch, the new qemu and its threads; plus when it started and
    /// ended, ms after the trial's start (`started_ms`, `ended_ms`), and the
    /// sampled flow's latency before, during and after (`latency`).
    pub report: serde_json::Value,
    /// The sink's side: frames lost by sequence number, the longest run of
    /// them, and the longest silence between two arrivals.
    pub lost: u64,
    pub longest_loss_run: u64,
    pub longest_gap_ms: f64,
    /// The trial's forwarded rate in 10 ms bins, across the migration.
    pub timeline: crate::timeline::Timeline,
}

/// Migrations of one router at one rate and frame size, summarized.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationPoint {
    pub router: String,
    pub label: String,
    pub frame: String,
    pub rate_pps: u64,
    pub offered_pps: Summary,
    pub downtime_ms: Summary,
    pub total_time_ms: Summary,
    pub ram_transferred_mb: Summary,
    pub longest_gap_ms: Summary,
    pub lost: Summary,
}

/// Loss by sequence number at the sink, and whether the receiver saw
/// every frame that arrived (`receiver_dropped` 0: the counts are exact).
#[derive(Debug, Clone, Serialize)]
pub struct Sequence {
    #[serde(flatten)]
    pub stats: crate::seq::SeqStats,
    /// Frames the sink's receiving socket dropped itself (None: unread).
    pub receiver_dropped: Option<u64>,
}

/// One scale point: `routers` copies, each offered `rate_pps`.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    pub routers: u32,
    pub rate_pps: u64,
    /// Each copy's offered and forwarded rates.
    pub per_router: Vec<Point>,
    /// The copies' forwarded rates together, per repetition.
    pub aggregate_pps: Summary,
    pub jain_forwarded: Option<f64>,
    /// One router offered the same total load (routers x rate_pps), when
    /// measured (the baseline count 1 runs at every such total).
    pub baseline_pps: Option<f64>,
    /// aggregate / baseline: what sharing the CPUs among copies costs.
    pub efficiency: Option<f64>,
    /// A point of the baseline at another count's total load only.
    pub baseline_only: bool,
    /// Some copy's generator could not offer its rate: the aggregate (and
    /// the efficiency) measured the generators, not the routers.
    pub generator_bound: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub interrupted: bool,
    pub error: Option<String>,
    pub routers: Vec<serde_json::Value>,
    /// Isolation's burning neighbours: their READY jsons.
    pub neighbours: Vec<serde_json::Value>,
    pub trials: Vec<Trial>,
    pub points: Vec<Point>,
    pub searches: Vec<SearchRun>,
    pub ndr_pdr: Vec<NdrPdr>,
    pub isolation: Vec<IsolationStep>,
    pub scale: Vec<ScalePoint>,
    /// Migrate mode: every migration, and per router, frame and rate the
    /// summaries over the repetitions.
    pub migrations: Vec<MigrationRun>,
    pub migration_points: Vec<MigrationPoint>,
    /// The generator alone into a bare sink, per frame size, measured
    /// before the routers: the most any router here can be offered.
    pub generator_ceiling: Vec<crate::ceiling::Ceiling>,
}

struct Ctx<'a> {
    l: &'a Loaded,
    pb: ProgressBar,
}

impl Ctx<'_> {
    /// A result line above the progress bar, or on stderr without a terminal.
    fn say(&self, line: String) {
        if self.pb.is_hidden() {
            eprintln!("{line}");
        } else {
            self.pb.println(line);
        }
    }
}

/// What the generator of `r` sends.
fn gen_spec(
    ctx: &Ctx,
    r: &Running,
    frame: FrameSpec,
    pps: Option<u64>,
) -> Result<gen::Spec, String> {
    let t = &ctx.l.exp.traffic;
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err("the tester sends IPv4".to_string()),
    };
    let router_mac: tinyvr_config::MacAddr = r.ready["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or("")
        .parse()
        .map_err(|e| format!("router {}: its in interface's MAC: {e}", r.name))?;
    let (dst_base, dst_addrs) = match &t.dst {
        Some(p) => (v4(p.addr)?, crate::experiment::dst_addrs(Some(p))),
        None => (v4(r.topo.sink.ip)?, 1),
    };
    Ok(gen::Spec {
        netns: r.topo.src.netns.clone(),
        dev: r.topo.src.dev.clone(),
        ends: crate::frame::Endpoints {
            src_mac: r.topo.src.mac.0,
            dst_mac: router_mac.0,
            src_ip: v4(r.topo.src.ip)?,
        },
        dst_base,
        dst_addrs,
        flows: t.flows,
        order: t.flow_order,
        frame,
        pps,
        duration: Duration::from_secs_f64(ctx.l.exp.trial_secs),
        cpus: t.cpus.clone(),
        sample_every: ctx.l.exp.latency.as_ref().map_or(0, |l| l.sample_every),
    })
}

fn read_hops(r: &Running) -> Result<Vec<Link>, String> {
    // One read of /proc/net/dev per namespace on the path.
    let mut cache: std::collections::HashMap<&counters::Ns, BTreeMap<String, Link>> =
        Default::default();
    r.hops
        .iter()
        .map(|h| {
            if !cache.contains_key(&h.ns) {
                cache.insert(&h.ns, counters::read(&h.ns)?);
            }
            cache[&h.ns]
                .get(&h.dev)
                .copied()
                .ok_or_else(|| format!("{}: no device {} ({:?})", h.name, h.dev, h.ns))
        })
        .collect()
}

/// One trial: every router in `rs` offered its rate at once.
fn trial(
    ctx: &Ctx,
    rs: &[&Running],
    rates: &[Option<u64>],
    frames: &[FrameSpec],
    latency: bool,
) -> Result<Vec<Trial>, String> {
    trial_with(ctx, rs, rates, frames, latency, None).map(|(t, _)| t)
}

/// Something done while a trial's load runs (a migration), given the
/// trial's start; its result may carry `wall_start_ns`/`wall_end_ns`
/// (CLOCK_REALTIME), which split each router's latency samples into
/// before, during and after.
type During = Box<dyn FnOnce(std::time::Instant) -> Result<serde_json::Value, String> + Send>;

/// As [`trial`], running `during` beside the generators.
fn trial_with(
    ctx: &Ctx,
    rs: &[&Running],
    rates: &[Option<u64>],
    frames: &[FrameSpec],
    latency: bool,
    during: Option<During>,
) -> Result<(Vec<Trial>, Option<serde_json::Value>), String> {
    let before: Vec<Vec<Link>> = rs.iter().map(|r| read_hops(r)).collect::<Result<_, _>>()?;
    let procs: Vec<(String, u32, bool)> = rs.iter().flat_map(|r| r.procs.clone()).collect();
    let cpu0 = cpu::snapshot(&procs, None);
    let softnet0 = crate::softnet::read()?;
    let t0 = std::time::Instant::now();
    let rx_stop = Arc::new(AtomicBool::new(false));
    // Receivers end with the trial, also when it fails halfway.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_receivers = StopOnDrop(rx_stop.clone());
    let mut receivers = Vec::new();
    let track = ctx.l.exp.traffic.sequence;
    if latency || track {
        for r in rs {
            let (dev, stop) = (r.topo.sink.dev.clone(), rx_stop.clone());
            // Opened in the sink's namespace (a socket stays bound to it)
            // before the generator starts, so no frame is missed.
            let fd = gen::spawn_in(&r.topo.sink.netns, move || crate::sink::open(&dev, track))?
                .join()
                .map_err(|_| "opening the sink's receiver panicked".to_string())??;
            // On the generator's CPUs, as the rate sampler: off the router's.
            let cpus = ctx.l.exp.traffic.cpus.clone();
            receivers.push(std::thread::spawn(move || {
                if let Some(c) = &cpus {
                    gen::pin(c)?;
                }
                Ok::<_, String>(crate::sink::receive(fd, stop, track))
            }));
        }
    }
    let samplers: Vec<crate::timeline::Sampler> = rs
        .iter()
        .map(|r| {
            crate::timeline::Sampler::start(
                &r.topo.sink.netns,
                &r.topo.sink.dev,
                ctx.l.exp.traffic.cpus.clone(),
            )
        })
        .collect::<Result<_, _>>()?;
    let mut gens = Vec::new();
    for ((r, rate), frame) in rs.iter().zip(rates).zip(frames) {
        gens.push(gen::start_with(gen_spec(ctx, r, *frame, *rate)?, &STOP)?);
    }
    let during = during.map(|f| std::thread::spawn(move || f(t0)));
    let sent: Vec<Sent> = gens
        .into_iter()
        .map(|h| h.join().map_err(|_| "generator panicked".to_string())?)
        .collect::<Result<_, _>>()?;
    let mut during = during
        .map(|h| {
            h.join()
                .map_err(|_| "the trial's side task panicked".to_string())?
        })
        .transpose()?;
    std::thread::sleep(Duration::from_millis(ctx.l.exp.drain_ms));
    let timelines: Vec<crate::timeline::Timeline> = samplers
        .into_iter()
        .map(|s| s.finish())
        .collect::<Result<_, _>>()?;
    rx_stop.store(true, Ordering::Relaxed);
    let got: Vec<crate::sink::Received> = receivers
        .into_iter()
        .map(|h| h.join().map_err(|_| "receiver panicked".to_string())?)
        .collect::<Result<_, _>>()?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu::snapshot(&procs, Some(&cpu0));
    let softnet = crate::softnet::since(&crate::softnet::read()?, &softnet0);
    let cpu_pct = cpu::percent(&cpu0, &cpu1, secs);
    let mut out = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        let after = read_hops(r)?;
        let d: Vec<Link> = after
            .iter()
            .zip(&before[i])
            .map(|(a, b)| a.since(b))
            .collect();
        let s = sent[i];
        // Offered: what the generator handed to its device, taken or
        // dropped there (hop 0 is the source: a veth whose peer's backlog
        // is full or a tap whose queue is drops as it is sent, and the
        // kernel's tx_dropped is the count).
        let offered = s.packets + d[0].tx_dropped;
        let offered_pps = offered as f64 / s.secs.max(1e-9);
        let mut path = vec![("generator offered".to_string(), offered)];
        for (h, l) in r.hops.iter().zip(&d) {
            path.push((format!("{} {}", h.name, h.dir.as_str()), h.dir.count(l)));
        }
        let lost_between = path
            .windows(2)
            .map(|w| {
                (
                    format!("{} -> {}", w[0].0, w[1].0),
                    w[0].1 as i64 - w[1].1 as i64,
                )
            })
            .collect();
        let received = d.last().map_or(0, |l| l.rx_packets);
        let lost = offered as i64 - received as i64;
        let mut cpu: BTreeMap<String, f64> = cpu_pct
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{}/", r.name)) || k.starts_with("host/"))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        cpu.insert(
            "generator".into(),
            (s.cpu_secs / secs * 1000.0).round() / 10.0,
        );
        let (held, departures) = crate::routers::held(r)?;
        let loss_ratio = if offered > 0 {
            lost.max(0) as f64 / offered as f64
        } else {
            0.0
        };
        out.push(Trial {
            generator_bound: generator_bound(rates[i], offered_pps, loss_ratio),
            softnet: softnet.clone(),
            cores: cpu::cores(&cpu0, &cpu1),
            timeline: timelines[i].clone(),
            held_as_ready: held.as_ref().map(|h| {
                tinyvr_host::verify::compare(&r.ready, h).is_ok() && departures.unwrap_or(0) == 0
            }),
            held,
            departures,
            router: r.name.clone(),
            label: r.label.clone(),
            platform: r.platform,
            frame: frames[i].label(),
            step: 0,
            repetition: 0,
            target_pps: rates[i],
            sent: s,
            offered_pps,
            received,
            forwarded_pps: received as f64 / s.secs.max(1e-9),
            lost,
            loss_ratio,
            hops: r.hops.iter().map(|h| h.name.clone()).zip(d).collect(),
            path,
            lost_between,
            cpu,
            latency: got
                .get(i)
                .filter(|_| latency)
                .and_then(|g| stats::latency(g.latencies.clone())),
            sequence: got.get(i).and_then(|g| {
                g.seq.as_ref().map(|t| Sequence {
                    stats: t.finish(s.sequences),
                    receiver_dropped: g.socket_dropped,
                })
            }),
        });
    }
    if let Some(d) = &mut during {
        if let (Some(a), Some(b)) = (d["wall_start_ns"].as_u64(), d["wall_end_ns"].as_u64()) {
            let phases: Vec<serde_json::Value> = got
                .iter()
                .map(|g| {
                    let pick = |keep: &dyn Fn(u64) -> bool| {
                        let v: Vec<u64> = g
                            .latencies
                            .iter()
                            .zip(&g.latency_rx_ns)
                            .filter(|(_, &rx)| keep(rx))
                            .map(|(&l, _)| l)
                            .collect();
                        serde_json::to_value(stats::latency(v)).expect("latency serializes")
                    };
                    serde_json::json!({
                        "before": pick(&|rx| rx < a),
                        "during": pick(&|rx| rx >= a && rx <= b),
                        "after": pick(&|rx| rx > b),
                    })
                })
                .collect();
            d["latency"] = phases.into();
        }
    }
    if stopped() {
        return Err("interrupted".into());
    }
    Ok((out, during))
}

/// One latency percentile over the trials that measured it.
fn latency_summary(
    trials: &[&Trial],
    pick: fn(&stats::Latency) -> f64,
    conf: f64,
) -> Option<Summary> {
    let v: Vec<f64> = trials
        .iter()
        .filter_map(|t| t.latency.as_ref().map(pick))
        .collect();
    (!v.is_empty()).then(|| stats::summarize(&v, conf))
}

/// Per CPU, the mean use over trials.
fn mean_cores(trials: &[&Trial]) -> Vec<cpu::CoreUse> {
    let mut out: Vec<cpu::CoreUse> = Vec::new();
    let n = trials.len().max(1) as f64;
    for c in trials.iter().flat_map(|t| &t.cores) {
        let i = match out.iter().position(|o| o.cpu == c.cpu) {
            Some(i) => i,
            None => {
                out.push(cpu::CoreUse {
                    cpu: c.cpu,
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let o = &mut out[i];
        for (sum, x) in [
            (&mut o.user, c.user),
            (&mut o.system, c.system),
            (&mut o.irq, c.irq),
            (&mut o.softirq, c.softirq),
            (&mut o.guest, c.guest),
            (&mut o.idle, c.idle),
        ] {
            *sum += x / n;
        }
    }
    for o in &mut out {
        for v in [
            &mut o.user,
            &mut o.system,
            &mut o.irq,
            &mut o.softirq,
            &mut o.guest,
            &mut o.idle,
        ] {
            *v = (*v * 10.0).round() / 10.0;
        }
    }
    out.sort_by_key(|o| o.cpu);
    out
}

fn point(trials: &[&Trial], conf: f64) -> Point {
    let t0 = trials[0];
    let col = |f: &dyn Fn(&Trial) -> f64| -> Vec<f64> { trials.iter().map(|t| f(t)).collect() };
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    for t in trials {
        for (k, v) in &t.cpu {
            *cpu.entry(k.clone()).or_default() += v / trials.len() as f64;
        }
    }
    Point {
        router: t0.router.clone(),
        label: t0.label.clone(),
        platform: t0.platform,
        frame: t0.frame.clone(),
        step: t0.step,
        target_pps: t0.target_pps,
        offered_pps: stats::summarize(&col(&|t| t.offered_pps), conf),
        forwarded_pps: stats::summarize(&col(&|t| t.forwarded_pps), conf),
        loss_ratio: stats::summarize(&col(&|t| t.loss_ratio), conf),
        generator_bound: trials.iter().any(|t| t.generator_bound),
        cores: mean_cores(trials),
        latency_p50_us: latency_summary(trials, |l| l.p50_us, conf),
        latency_p99_us: latency_summary(trials, |l| l.p99_us, conf),
        cpu: cpu
            .into_iter()
            .map(|(k, v)| (k, (v * 10.0).round() / 10.0))
            .collect(),
    }
}

/// How many trials the run will take (the search's is an estimate).
fn total_trials(l: &Loaded) -> u64 {
    let e = &l.exp;
    let reps = e.repetitions as u64;
    let frames = l.frames.len() as u64;
    match e.mode {
        Mode::Sweep => {
            let rates = e.traffic.rates_pps.len() as u64 + e.traffic.max_rate as u64;
            l.routers.len() as u64 * frames * rates * reps
        }
        Mode::NdrPdr => {
            let s = e.search.as_ref().expect("checked");
            let steps = (((s.max_pps - s.min_pps) / s.resolution_pps).max(1) as f64)
                .log2()
                .ceil() as u64;
            let lat = e.latency.as_ref().map_or(0, |l| l.at_pdr.len() as u64);
            l.routers.len() as u64 * frames * reps * (steps + 4 + lat)
        }
        Mode::Isolation => crate::experiment::isolation_steps(&l.routers) as u64 * reps,
        Mode::Migrate => l.routers.len() as u64 * frames * e.traffic.rates_pps.len() as u64 * reps,
        Mode::Scale => {
            let counts = e.scale.as_ref().map_or(1, |s| s.routers.len() as u64);
            let rates = e.traffic.rates_pps.len() as u64;
            // The baseline also runs at every other count's total load.
            (counts * rates + (counts - 1) * rates) * reps
        }
    }
}

/// Runs the experiment; routers come up and go down as the mode needs.
/// Results gathered so far are kept even when it fails or is stopped.
pub fn run(l: &Loaded, env: &Env, res: &mut Results) -> Result<(), String> {
    let pb = ProgressBar::new(total_trials(l));
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} trials  {msg}  (about {eta} left)")
            .expect("a valid template"),
    );
    let ctx = Ctx { l, pb };
    ctx.pb.set_message("the generator alone into a bare sink");
    let name = format!("tvg{}", std::process::id() % 100_000);
    match crate::ceiling::measure(l, &name) {
        Ok(c) => {
            for x in &c {
                ctx.say(format!(
                    "  generator alone {:>5}B: {:.1} kpps offered, {:.1} kpps at the sink ({:.0}% of a core)",
                    x.frame,
                    x.offered_pps / 1e3,
                    x.delivered_pps / 1e3,
                    x.generator_cpu
                ));
            }
            res.generator_ceiling = c;
        }
        Err(e) => {
            ctx.pb.finish_and_clear();
            return Err(e);
        }
    }
    let r = match l.exp.mode {
        Mode::Sweep => sweep(&ctx, env, res),
        Mode::NdrPdr => ndr_pdr(&ctx, env, res),
        Mode::Isolation => isolation(&ctx, env, res),
        Mode::Scale => scale(&ctx, env, res),
        Mode::Migrate => migrate(&ctx, env, res),
    };
    ctx.pb.finish_and_clear();
    res.interrupted = stopped();
    r
}

fn bring_up(
    ctx: &Ctx,
    fleet: &mut Fleet,
    i: usize,
    env: &Env,
    res: &mut Results,
) -> Result<(), String> {
    let (spec, cfg) = &ctx.l.routers[i];
    bring_up_as(ctx, fleet, spec, cfg, env, res)
}

/// Brings up `cfg` as `spec` says and adds it to the fleet.
fn bring_up_as(
    ctx: &Ctx,
    fleet: &mut Fleet,
    spec: &RouterSpec,
    cfg: &tinyvr_config::RouterConfig,
    env: &Env,
    res: &mut Results,
) -> Result<(), String> {
    ctx.pb
        .set_message(format!("starting {} ({:?})", cfg.name, spec.platform));
    let r = routers::up(spec, cfg, env)?;
    res.routers.push(r.ready.clone());
    fleet.0.push(r);
    if stopped() {
        return Err("interrupted".into());
    }
    Ok(())
}

fn sweep(ctx: &Ctx, env: &Env, res: &mut Results) -> Result<(), String> {
    let e = &ctx.l.exp;
    let mut rates: Vec<Option<u64>> = e.traffic.rates_pps.iter().map(|&r| Some(r)).collect();
    if e.traffic.max_rate {
        rates.push(None);
    }
    // Interleaved: all routers up at once and their trials alternating, so
    // a drift of the host (a noisy neighbour, a warming cache) reaches each
    // router alike instead of whichever ran in its block of time.
    let groups: Vec<Vec<usize>> = if e.interleave {
        vec![(0..ctx.l.routers.len()).collect()]
    } else {
        (0..ctx.l.routers.len()).map(|i| vec![i]).collect()
    };
    for group in groups {
        let mut fleet = Fleet::default();
        for &i in &group {
            bring_up(ctx, &mut fleet, i, env, res)?;
        }
        for &frame in &ctx.l.frames {
            for (step, &rate) in rates.iter().enumerate() {
                let first = res.trials.len();
                for rep in 0..e.repetitions {
                    for r in &fleet.0 {
                        ctx.pb.set_message(format!(
                            "{} {}B at {} (rep {})",
                            r.label,
                            frame.label(),
                            rate.map_or("max".into(), |x| format!("{} kpps", x / 1000)),
                            rep + 1
                        ));
                        let mut t = trial(ctx, &[r], &[rate], &[frame], e.latency.is_some())?;
                        t[0].step = step;
                        t[0].repetition = rep;
                        res.trials.extend(t);
                        ctx.pb.inc(1);
                    }
                }
                for r in &fleet.0 {
                    let mine: Vec<&Trial> = res.trials[first..]
                        .iter()
                        .filter(|t| t.router == r.name)
                        .collect();
                    let p = point(&mine, e.confidence);
                    say_point(ctx, &p);
                    res.points.push(p);
                }
            }
        }
        let errs = fleet.down_all();
        if !errs.is_empty() {
            return Err(errs.join("; "));
        }
    }
    Ok(())
}

/// One sweep point's line on the terminal.
fn say_point(ctx: &Ctx, p: &Point) {
    ctx.say(format!(
        "  {:<12} {:>5}B offered {:>8.1} kpps  forwarded {:>8.1} ± {:.1} kpps  loss {:.2}%{}{}",
        p.label,
        p.frame,
        p.offered_pps.mean / 1e3,
        p.forwarded_pps.mean / 1e3,
        p.forwarded_pps.ci / 1e3,
        p.loss_ratio.mean * 100.0,
        match (&p.latency_p50_us, &p.latency_p99_us) {
            (Some(a), Some(b)) => format!("  latency p50 {:.0} µs p99 {:.0} µs", a.mean, b.mean),
            _ => String::new(),
        },
        if p.generator_bound {
            "  (generator-bound)"
        } else {
            ""
        }
    ));
}

/// Migrate mode: per VM router, frame size and rate, each repetition a
/// trial whose load runs while the router migrates once, `after_ms` in.
fn migrate(ctx: &Ctx, env: &Env, res: &mut Results) -> Result<(), String> {
    let e = &ctx.l.exp;
    let m = e.migrate.as_ref().expect("checked");
    for i in 0..ctx.l.routers.len() {
        if ctx.l.routers[i].0.platform != crate::experiment::Platform::Vm {
            return Err(format!(
                "router[{i}]: criu works on this host, but tinyvr's container migration is not built yet"
            ));
        }
        let mut fleet = Fleet::default();
        bring_up(ctx, &mut fleet, i, env, res)?;
        // The VM's own macvtaps are replaced by a migration: their
        // counters restart. The source, the lowers and the sink stay.
        fleet.0[0]
            .hops
            .retain(|h| !h.name.starts_with("vm macvtap"));
        for &frame in &ctx.l.frames {
            for (step, &rate) in e.traffic.rates_pps.iter().enumerate() {
                let first = res.trials.len();
                let runs = res.migrations.len();
                for rep in 0..e.repetitions {
                    let r = &fleet.0[0];
                    ctx.pb.set_message(format!(
                        "{} {}B at {} kpps, migrating (rep {})",
                        r.label,
                        frame.label(),
                        rate / 1000,
                        rep + 1
                    ));
                    let (name, after) = (r.name.clone(), Duration::from_millis(m.after_ms));
                    let (limit, bw, postcopy) = (m.downtime_limit_ms, m.bandwidth_mbps, m.postcopy);
                    let during: During = Box::new(move |t0| {
                        std::thread::sleep(after.saturating_sub(t0.elapsed()));
                        let wall = || {
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_nanos() as u64)
                        };
                        // The trial's start on the wall clock QMP's window is read in.
                        let wall_t0 = wall() - t0.elapsed().as_nanos() as u64;
                        let mut rep = tinyvr_qemu::migrate::local(&tinyvr_qemu::migrate::Migrate {
                            name,
                            downtime_limit_ms: limit,
                            bandwidth_mbps: bw,
                            timeout: Duration::from_secs(120),
                            postcopy,
                        })
                        .map_err(|e| e.to_string())?;
                        // The migration's own window: from `migrate` to
                        // qemu's "completed".
                        let (a, b) = (
                            rep["wall_migrate_ns"].as_u64().unwrap_or(0),
                            rep["wall_completed_ns"].as_u64().unwrap_or(0),
                        );
                        rep["started_ms"] = (a.saturating_sub(wall_t0) as f64 / 1e6).into();
                        rep["ended_ms"] = (b.saturating_sub(wall_t0) as f64 / 1e6).into();
                        rep["wall_start_ns"] = a.into();
                        rep["wall_end_ns"] = b.into();
                        Ok(rep)
                    });
                    let (mut t, report) = trial_with(
                        ctx,
                        &[r],
                        &[Some(rate)],
                        &[frame],
                        e.latency.is_some(),
                        Some(during),
                    )?;
                    let report = report.expect("a migration ran");
                    // The router's qemu is the destination's from here on.
                    if let Some(pid) = report["qemu_pid"].as_u64() {
                        for p in &mut fleet.0[0].procs {
                            p.1 = pid as u32;
                        }
                    }
                    t[0].step = step;
                    t[0].repetition = rep;
                    let seq = t[0].sequence.as_ref().map(|s| s.stats.clone());
                    res.migrations.push(MigrationRun {
                        router: t[0].router.clone(),
                        label: t[0].label.clone(),
                        frame: t[0].frame.clone(),
                        rate_pps: rate,
                        repetition: rep,
                        report,
                        lost: seq.as_ref().map_or(t[0].lost.max(0) as u64, |s| s.lost),
                        longest_loss_run: seq.as_ref().map_or(0, |s| s.longest_loss_run),
                        longest_gap_ms: seq.as_ref().map_or(0.0, |s| s.longest_gap_us / 1e3),
                        timeline: t[0].timeline.clone(),
                    });
                    res.trials.extend(t);
                    ctx.pb.inc(1);
                }
                let runs = &res.migrations[runs..];
                let sum = |f: &dyn Fn(&MigrationRun) -> f64| {
                    stats::summarize(&runs.iter().map(f).collect::<Vec<_>>(), e.confidence)
                };
                let q =
                    |r: &MigrationRun, k: &str| r.report["migration"][k].as_f64().unwrap_or(0.0);
                let mp = MigrationPoint {
                    router: runs[0].router.clone(),
                    label: runs[0].label.clone(),
                    frame: runs[0].frame.clone(),
                    rate_pps: rate,
                    offered_pps: stats::summarize(
                        &res.trials[first..]
                            .iter()
                            .map(|t| t.offered_pps)
                            .collect::<Vec<_>>(),
                        e.confidence,
                    ),
                    downtime_ms: sum(&|r| q(r, "downtime_ms")),
                    total_time_ms: sum(&|r| q(r, "total_time_ms")),
                    ram_transferred_mb: sum(&|r| q(r, "ram_transferred_bytes") / 1e6),
                    longest_gap_ms: sum(&|r| r.longest_gap_ms),
                    lost: sum(&|r| r.lost as f64),
                };
                ctx.say(crate::report::migration_line(&mp));
                res.migration_points.push(mp);
                res.points.push(point(
                    &res.trials[first..].iter().collect::<Vec<_>>(),
                    e.confidence,
                ));
            }
        }
        let errs = fleet.down_all();
        if !errs.is_empty() {
            return Err(errs.join("; "));
        }
    }
    Ok(())
}

/// One NDR/PDR search of router `r` alone with the experiment's
/// `[search]`; every trial goes to the results, also when the search
/// fails. Returns what it found and whether a trial was generator-bound.
fn search_ndr(
    ctx: &Ctx,
    r: &Running,
    frame: FrameSpec,
    rep: u32,
    res: &mut Results,
) -> Result<(search::Found, bool), String> {
    let s = ctx.l.exp.search.as_ref().expect("checked");
    let mut trials = Vec::new();
    let mut one = |pps: u64| -> Result<f64, String> {
        ctx.pb.set_message(format!(
            "{} {}B search at {} kpps (rep {})",
            r.label,
            frame.label(),
            pps / 1000,
            rep + 1
        ));
        let mut t = trial(ctx, &[r], &[Some(pps)], &[frame], false)?;
        t[0].repetition = rep;
        let loss = search_loss(pps, t[0].offered_pps, t[0].loss_ratio);
        trials.extend(t);
        ctx.pb.inc(1);
        Ok(loss)
    };
    let found = search::ndr_pdr(&mut one, s.min_pps, s.max_pps, s.resolution_pps, s.pdr_loss);
    let bound = trials.iter().any(|t| t.generator_bound);
    res.trials.append(&mut trials);
    Ok((found?, bound))
}

fn ndr_pdr(ctx: &Ctx, env: &Env, res: &mut Results) -> Result<(), String> {
    let e = &ctx.l.exp;
    for i in 0..ctx.l.routers.len() {
        let mut fleet = Fleet::default();
        bring_up(ctx, &mut fleet, i, env, res)?;
        let r = &fleet.0[0];
        for &frame in &ctx.l.frames {
            let (mut ndrs, mut pdrs) = (Vec::new(), Vec::new());
            let mut searches_bound = false;
            for rep in 0..e.repetitions {
                let (found, bound) = search_ndr(ctx, r, frame, rep, res)?;
                searches_bound |= bound;
                let mut lat = Vec::new();
                for &f in e.latency.as_ref().map_or(&[][..], |l| &l.at_pdr[..]) {
                    let pps = ((found.pdr_pps as f64 * f) as u64).max(1);
                    ctx.pb
                        .set_message(format!("{} latency at {:.0}% of PDR", r.label, f * 100.0));
                    let t = trial(ctx, &[r], &[Some(pps)], &[frame], true)?;
                    lat.push((f, pps, t[0].latency.clone()));
                    res.trials.extend(t);
                    ctx.pb.inc(1);
                }
                ctx.say(format!(
                    "  {:<12} {:>5}B NDR {:>8.1} kpps  PDR {:>8.1} kpps  (confirming trials: loss {:.3}% / {:.3}%; {:.3}% one step above the NDR)",
                    r.label,
                    frame.label(),
                    found.ndr_pps as f64 / 1e3,
                    found.pdr_pps as f64 / 1e3,
                    found.ndr_confirm_loss * 100.0,
                    found.pdr_confirm_loss * 100.0,
                    found.above_loss * 100.0
                ));
                ndrs.push(found.ndr_pps as f64);
                pdrs.push(found.pdr_pps as f64);
                res.searches.push(SearchRun {
                    router: r.name.clone(),
                    label: r.label.clone(),
                    frame: frame.label(),
                    repetition: rep,
                    found,
                    latency: lat,
                    generator_bound: bound,
                });
            }
            res.ndr_pdr.push(NdrPdr {
                router: r.name.clone(),
                label: r.label.clone(),
                platform: r.platform,
                frame: frame.label(),
                ndr_pps: stats::summarize(&ndrs, e.confidence),
                pdr_pps: stats::summarize(&pdrs, e.confidence),
                generator_bound: searches_bound,
            });
        }
        let errs = fleet.down_all();
        if !errs.is_empty() {
            return Err(errs.join("; "));
        }
    }
    Ok(())
}

/// A router's CPU in a point: its cgroup where it has one, else the sum
/// of its thread classes, else (a namespace router) nothing of its own.
fn router_cpu(p: &Point) -> f64 {
    let own = |suffix: &str| p.cpu.get(&format!("{}/{suffix}", p.router)).copied();
    own("cgroup").unwrap_or_else(|| {
        p.cpu
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{}/", p.router)))
            .map(|(_, v)| v)
            .sum()
    })
}

/// The rates one router is offered in the baseline (count 1): every rate,
/// and every other count's total, so each count has its baseline. Pure.
pub fn baseline_rates(counts: &[u32], rates: &[u64]) -> Vec<u64> {
    let mut v: Vec<u64> = counts
        .iter()
        .flat_map(|&n| rates.iter().map(move |&r| r * n as u64))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn scale(ctx: &Ctx, env: &Env, res: &mut Results) -> Result<(), String> {
    let e = &ctx.l.exp;
    let counts = &e.scale.as_ref().expect("checked").routers;
    let (spec, cfg) = &ctx.l.routers[0];
    let frame = ctx.l.frames[0];
    let mut baseline: Vec<(u64, f64)> = Vec::new();
    let mut ordered = counts.clone();
    ordered.sort_unstable();
    ordered.dedup();
    for &n in &ordered {
        let mut fleet = Fleet::default();
        for k in 1..=n {
            let mut c = cfg.clone();
            c.name = format!("{}{k}", cfg.name);
            let mut s = spec.clone();
            s.label = Some(format!("{} #{k}", spec.label(cfg)));
            bring_up_as(ctx, &mut fleet, &s, &c, env, res)?;
        }
        let rs: Vec<&Running> = fleet.0.iter().collect();
        let rates = if n == 1 {
            baseline_rates(counts, &e.traffic.rates_pps)
        } else {
            e.traffic.rates_pps.clone()
        };
        for (step, &rate) in rates.iter().enumerate() {
            let first = res.trials.len();
            for rep in 0..e.repetitions {
                ctx.pb.set_message(format!(
                    "{n} routers at {} kpps each (rep {})",
                    rate / 1000,
                    rep + 1
                ));
                let mut t = trial(
                    ctx,
                    &rs,
                    &vec![Some(rate); rs.len()],
                    &vec![frame; rs.len()],
                    e.latency.is_some(),
                )?;
                for x in &mut t {
                    x.step = step;
                    x.repetition = rep;
                }
                res.trials.extend(t);
                ctx.pb.inc(1);
            }
            let ts = &res.trials[first..];
            let per_router: Vec<Point> = rs
                .iter()
                .map(|r| {
                    let mine: Vec<&Trial> = ts.iter().filter(|t| t.router == r.name).collect();
                    point(&mine, e.confidence)
                })
                .collect();
            let aggregate: Vec<f64> = (0..e.repetitions)
                .map(|rep| {
                    ts.iter()
                        .filter(|t| t.repetition == rep)
                        .map(|t| t.forwarded_pps)
                        .sum()
                })
                .collect();
            let aggregate_pps = stats::summarize(&aggregate, e.confidence);
            if n == 1 {
                baseline.push((rate, aggregate_pps.mean));
            }
            let total = rate * n as u64;
            let base = baseline.iter().find(|b| b.0 == total).map(|b| b.1);
            let fwd: Vec<f64> = per_router.iter().map(|p| p.forwarded_pps.mean).collect();
            let sp = ScalePoint {
                routers: n,
                rate_pps: rate,
                aggregate_pps,
                jain_forwarded: stats::jain(&fwd),
                baseline_pps: base,
                efficiency: base.filter(|b| *b > 0.0).map(|b| aggregate_pps.mean / b),
                baseline_only: n == 1 && !e.traffic.rates_pps.contains(&rate),
                generator_bound: per_router.iter().any(|p| p.generator_bound),
                per_router,
            };
            // The baseline's extra totals are its own points, not a row.
            if !sp.baseline_only {
                ctx.say(crate::report::scale_line(&sp));
            }
            res.scale.push(sp);
        }
        let errs = fleet.down_all();
        if !errs.is_empty() {
            return Err(errs.join("; "));
        }
    }
    Ok(())
}

fn isolation(ctx: &Ctx, env: &Env, res: &mut Results) -> Result<(), String> {
    let e = &ctx.l.exp;
    let mut fleet = Fleet::default();
    for i in 0..ctx.l.routers.len() {
        bring_up(ctx, &mut fleet, i, env, res)?;
    }
    let neighbours = &ctx.l.exp.neighbours;
    ctx.pb.set_message("starting the neighbours");
    let (mut burners, ready) = crate::neighbours::Up::start(neighbours, &ctx.l.image)?;
    res.neighbours = ready;
    // Quiet while the NDRs are searched.
    burners.quiet(neighbours)?;
    let rs: Vec<&Running> = fleet.0.iter().collect();
    // Each router's own frame size, and rate per step (None: max rate).
    let frames: Vec<FrameSpec> = ctx
        .l
        .routers
        .iter()
        .map(|(s, _)| s.frame.map_or(ctx.l.frames[0], FrameSpec::Fixed))
        .collect();
    // Routers offered fractions of their NDR: searched first, each alone
    // with the others up and idle, at its own frame size.
    let mut ndr: Vec<Option<u64>> = vec![None; rs.len()];
    for (i, (spec, _)) in ctx.l.routers.iter().enumerate() {
        if spec.rates_frac.is_empty() {
            continue;
        }
        let r = rs[i];
        let (found, bound) = search_ndr(ctx, r, frames[i], 0, res)?;
        ctx.say(format!(
            "  {}: NDR {:.1} kpps, the base of its rates_frac",
            r.label,
            found.ndr_pps as f64 / 1e3
        ));
        ndr[i] = Some(found.ndr_pps);
        res.searches.push(SearchRun {
            router: r.name.clone(),
            label: r.label.clone(),
            frame: frames[i].label(),
            repetition: 0,
            found,
            latency: Vec::new(),
            generator_bound: bound,
        });
    }
    for step in 0..crate::experiment::isolation_steps(&ctx.l.routers) {
        let rates: Vec<Option<u64>> = ctx
            .l
            .routers
            .iter()
            .zip(&ndr)
            .map(|((s, _), ndr)| match ndr {
                Some(n) => Some(((*n as f64 * s.rates_frac[step]).round() as u64).max(1)),
                None => (!s.max_rate).then(|| s.rates_pps[step]),
            })
            .collect();
        let burning = burners.set_step(neighbours, step)?;
        let first = res.trials.len();
        for rep in 0..e.repetitions {
            ctx.pb
                .set_message(format!("step {} (rep {})", step + 1, rep + 1));
            let mut t = trial(ctx, &rs, &rates, &frames, e.latency.is_some())?;
            for x in &mut t {
                x.step = step;
                x.repetition = rep;
            }
            res.trials.extend(t);
            ctx.pb.inc(1);
        }
        let points: Vec<Point> = rs
            .iter()
            .map(|r| {
                let ts: Vec<&Trial> = res.trials[first..]
                    .iter()
                    .filter(|t| t.router == r.name)
                    .collect();
                point(&ts, e.confidence)
            })
            .collect();
        let fwd: Vec<f64> = points.iter().map(|p| p.forwarded_pps.mean).collect();
        let cpus: Vec<f64> = points.iter().map(router_cpu).collect();
        let burning: Vec<(String, bool)> = neighbours
            .iter()
            .map(|n| n.name.clone())
            .zip(burning)
            .collect();
        let hot: Vec<&str> = burning
            .iter()
            .filter(|(_, b)| *b)
            .map(|(n, _)| n.as_str())
            .collect();
        ctx.say(format!(
            "  {}{}",
            crate::report::step_line(step, &points, stats::jain(&fwd)),
            if hot.is_empty() {
                String::new()
            } else {
                format!("  (burning: {})", hot.join(", "))
            }
        ));
        res.isolation.push(IsolationStep {
            step,
            jain_forwarded: stats::jain(&fwd),
            jain_cpu: stats::jain(&cpus),
            routers: points,
            neighbours_burning: burning,
        });
    }
    let mut errs = burners.down_all();
    errs.extend(fleet.down_all());
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod generator_tests {
    use super::{generator_bound, search_loss};

    #[test]
    fn a_trial_is_generator_bound_when_the_rate_was_not_offered() {
        // 2% short is still the router's trial; more is the generator's.
        assert!(!generator_bound(Some(100_000), 98_000.0, 0.0));
        assert!(generator_bound(Some(100_000), 97_900.0, 0.0));
        // At max rate: lossless means the generator set the rate.
        assert!(generator_bound(None, 300_000.0, 0.0));
        assert!(!generator_bound(None, 300_000.0, 0.1));
    }

    #[test]
    fn a_search_never_passes_a_rate_the_generator_did_not_offer() {
        assert_eq!(search_loss(100_000, 99_000.0, 0.0), 0.0);
        assert_eq!(search_loss(100_000, 99_000.0, 0.01), 0.01);
        let l = search_loss(1_000_000, 300_000.0, 0.0);
        assert!((l - 0.7).abs() < 1e-9, "{l}");
        assert_eq!(search_loss(1_000_000, 300_000.0, 0.8), 0.8);
    }
}

#[cfg(test)]
mod scale_tests {
    #[test]
    fn the_baseline_runs_at_every_total() {
        assert_eq!(
            super::baseline_rates(&[1, 2, 4], &[5000, 20000]),
            vec![5000, 10000, 20000, 40000, 80000]
        );
    }
}
