//! The experiment file: routers under test, traffic, mode. Parsed and
//! checked completely before anything is created; every error names its
//! field.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tinyvr_config::{CpuList, Prefix, RouterConfig};
use tinyvr_host::topology::Datapath;

/// The RFC 2544 frame sizes (bytes, Ethernet frame including the FCS).
pub const RFC2544: [u32; 7] = [64, 128, 256, 512, 1024, 1280, 1518];
/// Simple IMIX (7:4:1 of 64, 594, 1518 bytes), sent as a repeating pattern.
pub const IMIX: [(u32, u32); 3] = [(64, 7), (594, 4), (1518, 1)];
/// Bytes of an Ethernet frame the socket does not send: the FCS.
pub const FCS: u32 = 4;
/// The smallest frame: 60 bytes from the socket plus the FCS.
pub const MIN_FRAME: u32 = 64;
/// Highest offered rate anywhere in a file (sweep, isolation, search), pps:
/// 100 Mpps is above line rate of 64-byte frames at 40 Gb/s, and keeps the
/// generator's pacing (batch / rate) and every rate sum far from overflow.
pub const MAX_RATE_PPS: u64 = 100_000_000;
/// Longest drain after a trial: a minute is far more than any queue needs.
pub const MAX_DRAIN_MS: u64 = 60_000;
/// Most vCPUs of a VM: what qemu's `pc` machine takes.
pub const MAX_VM_CPUS: u32 = 255;
/// The RT budget is µs per 1 s period (the kernel's sched_rt_period_us).
pub const MAX_RT_RUNTIME_US: u64 = 1_000_000;
/// As for a config's interface `txqueuelen`.
pub const MAX_TXQUEUELEN: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Sweep,
    NdrPdr,
    Isolation,
    Scale,
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    #[default]
    Netns,
    Lxc,
    Vm,
}

impl Platform {
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Netns => "netns",
            Platform::Lxc => "lxc",
            Platform::Vm => "vm",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FlowOrder {
    #[default]
    RoundRobin,
    Random,
}

/// `frames = [64, 128]`, `frames = "rfc2544"` or `frames = "imix"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Frames {
    Sizes(Vec<u32>),
    Preset(String),
}

/// One frame-size point of an experiment: a fixed size or the IMIX mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FrameSpec {
    Fixed(u32),
    Imix,
}

impl FrameSpec {
    pub fn label(&self) -> String {
        match self {
            FrameSpec::Fixed(n) => n.to_string(),
            FrameSpec::Imix => "imix".into(),
        }
    }
    /// The sizes sent, in order, repeated.
    pub fn pattern(&self) -> Vec<u32> {
        match self {
            FrameSpec::Fixed(n) => vec![*n],
            FrameSpec::Imix => IMIX
                .iter()
                .flat_map(|&(s, n)| std::iter::repeat_n(s, n as usize))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    #[serde(default = "default_frames")]
    pub frames: Frames,
    #[serde(default = "one")]
    pub flows: u32,
    #[serde(default)]
    pub flow_order: FlowOrder,
    /// Destination addresses of the flows (routed by the bench to the
    /// sink); default: the sink's own address.
    pub dst: Option<Prefix>,
    /// CPUs the generator threads run on.
    pub cpus: Option<CpuList>,
    /// Offered rates of a sweep, in packets per second (0 is refused).
    #[serde(default)]
    pub rates_pps: Vec<u64>,
    /// As fast as the generator goes, as the last point of a sweep.
    #[serde(default)]
    pub max_rate: bool,
    /// Every trial also tracks each frame's sequence number at the sink:
    /// which were lost, duplicated or reordered, and the longest gap (a
    /// receiver that sees every frame: costs CPU where the sink receives).
    #[serde(default)]
    pub sequence: bool,
}

fn default_frames() -> Frames {
    Frames::Sizes(vec![64])
}
fn one() -> u32 {
    1
}

/// `mode = "scale"`: 1..N copies of the one `[[router]]`, all up at once on
/// the same CPUs, each offered every rate of `traffic.rates_pps`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// How many routers at a time, e.g. [1, 2, 4]; 1 is the baseline every
    /// other count is compared with (at the same total offered load).
    pub routers: Vec<u32>,
}

/// `mode = "migrate"`: each trial migrates the VM router once, `after_ms`
/// into it, while the offered load runs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateSpec {
    /// When the migration starts, ms after the trial's start.
    #[serde(default = "default_after")]
    pub after_ms: u64,
    /// QMP downtime-limit, ms.
    #[serde(default = "default_downtime")]
    pub downtime_limit_ms: u64,
    /// QMP max-bandwidth, MB/s (default: qemu's).
    pub bandwidth_mbps: Option<u64>,
    /// Post-copy instead of pre-copy.
    #[serde(default)]
    pub postcopy: bool,
}

fn default_after() -> u64 {
    2000
}
fn default_downtime() -> u64 {
    300
}

/// The most routers a scale point brings up at once.
pub const MAX_SCALE: u32 = 16;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// Loss ratio allowed at the PDR (default 0.005 = 0.5%).
    #[serde(default = "default_pdr")]
    pub pdr_loss: f64,
    /// Search interval, packets per second.
    #[serde(default = "default_min")]
    pub min_pps: u64,
    pub max_pps: u64,
    /// Stop when the interval is narrower than this.
    #[serde(default = "default_resolution")]
    pub resolution_pps: u64,
}

fn default_pdr() -> f64 {
    0.005
}
fn default_min() -> u64 {
    1000
}
fn default_resolution() -> u64 {
    2000
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Fractions of the PDR at which latency is measured (ndr-pdr mode).
    #[serde(default)]
    pub at_pdr: Vec<f64>,
    /// One packet in this many carries a sampled timestamp.
    #[serde(default = "default_sample")]
    pub sample_every: u32,
}

fn default_sample() -> u32 {
    100
}

/// Where a router's threads go and what they get (LXC and VM).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Router config, relative to the experiment file.
    pub config: PathBuf,
    pub platform: Platform,
    /// Overrides the config's name (several routers from one config).
    pub name: Option<String>,
    /// Legend label; default the name.
    pub label: Option<String>,
    /// Isolation mode: this router's offered rate per step, pps.
    #[serde(default)]
    pub rates_pps: Vec<u64>,
    /// Isolation mode: offered as fast as its generator goes in every step
    /// (instead of `rates_pps`).
    #[serde(default)]
    pub max_rate: bool,
    /// Isolation mode: this router's rate per step as a fraction of its NDR,
    /// searched (with `[search]`) in the same run before the steps
    /// (instead of `rates_pps`).
    #[serde(default)]
    pub rates_frac: Vec<f64>,
    /// Isolation mode: this router's frame size (default: the first of
    /// `traffic.frames`).
    pub frame: Option<u32>,
    /// How the source reaches the router: `veth` (netns, lxc); `bridge`
    /// (default) or `tap` for a VM.
    pub datapath: Option<String>,
    /// netns, lxc: the CPUs the router forwards on (RPS on its ingress
    /// interface moves the receive and forwarding work there, off the
    /// generator's CPU). Default: every online CPU the generator does not
    /// use.
    pub router_cpus: Option<CpuList>,
    // cgroup (lxc, vm)
    pub cpu_weight: Option<u32>,
    pub cpu_max: Option<String>,
    pub cpuset: Option<String>,
    // vm
    #[serde(default)]
    pub accel: Option<String>,
    pub cpus: Option<u32>,
    pub memory_mb: Option<u32>,
    /// Preallocate guest memory (default true).
    pub prealloc: Option<bool>,
    /// THP for qemu's memory: auto (default), on or off.
    pub thp: Option<String>,
    /// CLASS = CPUS, e.g. { vcpu = "1", emulator = "0" }.
    #[serde(default)]
    pub affinity: BTreeMap<String, String>,
    /// CLASS = POLICY, e.g. { vcpu = "fifo:10", vhost = "deadline:70000/200000/200000" }.
    #[serde(default)]
    pub sched: BTreeMap<String, String>,
    pub rt_runtime_us: Option<u64>,
    /// Host-side queue length of the VM's tap (both interfaces).
    pub txqueuelen: Option<u32>,
    /// vhost on|off|auto for the VM's NICs.
    pub vhost: Option<String>,
    /// Who starts the VM: "qemu" (tinyvr runs qemu itself, the default)
    /// or "libvirt" (a transient domain through the local libvirtd,
    /// `vm up --libvirt`); the measurements and read-backs are the same.
    pub launcher: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub mode: Mode,
    #[serde(default = "one")]
    pub repetitions: u32,
    /// 0.95 or 0.99.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default = "default_trial")]
    pub trial_secs: f64,
    /// Wait after the generator stops before counting.
    #[serde(default = "default_drain")]
    pub drain_ms: u64,
    /// Sweep only: all routers up at once, their trials alternating
    /// (router A rep 1, router B rep 1, A rep 2...), for comparisons that
    /// a drift of the host over time must not bias.
    #[serde(default)]
    pub interleave: bool,
    pub traffic: Traffic,
    pub search: Option<Search>,
    pub latency: Option<Latency>,
    pub scale: Option<Scale>,
    pub migrate: Option<MigrateSpec>,
    #[serde(rename = "router")]
    pub routers: Vec<RouterSpec>,
    /// Isolation: neighbours that only burn, on or frozen per step.
    #[serde(default, rename = "neighbour")]
    pub neighbours: Vec<crate::neighbours::NeighbourSpec>,
    /// Directory with bzImage, initramfs.cpio.gz and rootfs/ (relative to
    /// the experiment file); default: `out` in the current directory.
    pub image: Option<PathBuf>,
}

fn default_confidence() -> f64 {
    0.95
}
fn default_trial() -> f64 {
    2.0
}
fn default_drain() -> u64 {
    500
}

/// A checked experiment: the file, and each router's config loaded with
/// its effective name.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub exp: Experiment,
    pub frames: Vec<FrameSpec>,
    pub routers: Vec<(RouterSpec, RouterConfig)>,
    pub image: PathBuf,
}

impl RouterSpec {
    /// The datapath the experiment names, or the platform's default
    /// (veth; a bridge in front of a VM's tap).
    pub fn datapath_checked(&self) -> Result<Datapath, String> {
        let vm = self.platform == Platform::Vm;
        self.datapath
            .as_deref()
            .map_or(Ok(Datapath::default_for(vm)), |d| Datapath::parse(d, vm))
    }

    /// As [`Self::datapath_checked`], once the file is validated.
    pub fn datapath(&self) -> Datapath {
        self.datapath_checked()
            .expect("the datapath was checked when the file was loaded")
    }

    pub fn label(&self, cfg: &RouterConfig) -> String {
        self.label.clone().unwrap_or_else(|| cfg.name.clone())
    }
}

/// Parses `text` (found at `path`, against which router configs resolve),
/// checks everything, and loads the router configs.
pub fn load(text: &str, path: &Path, online: &[u32]) -> Result<Loaded, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    let exp: Experiment = serde_path_to_error::deserialize(de).map_err(|e| {
        let p = e.path().to_string();
        format!("{p}: {}", e.into_inner().message())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut routers = Vec::new();
    for (i, r) in exp.routers.iter().enumerate() {
        let p = base.join(&r.config);
        let mut cfg = tinyvr_init::check::check_file(&p)
            .map_err(|l| format!("router[{i}].config ({}): {}", p.display(), l.join("; ")))?;
        if let Some(n) = &r.name {
            cfg.name = n.clone();
        }
        routers.push((r.clone(), cfg));
    }
    let mut exp = exp;
    place(&mut exp, &mut routers, online);
    // A migration's traffic side is counted by sequence number.
    if exp.mode == Mode::Migrate {
        exp.traffic.sequence = true;
    }
    let frames = check(&exp, &routers, online)?;
    let image = exp
        .image
        .as_ref()
        .map_or_else(|| PathBuf::from("out"), |i| base.join(i));
    Ok(Loaded {
        exp,
        frames,
        routers,
        image,
    })
}

/// Gives the generator and the routers CPUs of their own where the file
/// leaves them out and the host has two or more: the generator the first
/// online CPU no router asked for, each netns/LXC router the rest (RPS),
/// each VM's vCPU and emulator threads the rest too. Explicit choices stay, and
/// `check` refuses overlaps.
fn place(exp: &mut Experiment, routers: &mut [(RouterSpec, RouterConfig)], online: &[u32]) {
    if online.len() < 2 {
        return;
    }
    // CPUs the file gives routers: a default generator CPU avoids them.
    let taken: Vec<u32> = exp
        .routers
        .iter()
        .flat_map(|r| {
            let own = r.router_cpus.iter().flat_map(|c| c.0.clone());
            let vm = r
                .affinity
                .values()
                .filter_map(|v| v.parse::<CpuList>().ok());
            own.chain(vm.flat_map(|c| c.0)).collect::<Vec<_>>()
        })
        .collect();
    let Some(free) = online.iter().find(|c| !taken.contains(c)) else {
        return;
    };
    let gen = exp
        .traffic
        .cpus
        .get_or_insert_with(|| CpuList(vec![*free]))
        .clone();
    let rest: Vec<u32> = online
        .iter()
        .copied()
        .filter(|c| !gen.0.contains(c))
        .collect();
    if rest.is_empty() {
        return;
    }
    let rest = CpuList(rest);
    for r in exp
        .routers
        .iter_mut()
        .chain(routers.iter_mut().map(|(r, _)| r))
    {
        match r.platform {
            // A VM forwards on its vCPUs (and, without vhost, in qemu's
            // main loop): both off the generator's CPU unless the file
            // places them.
            Platform::Vm if r.affinity.is_empty() => {
                for class in ["vcpu", "emulator"] {
                    r.affinity.insert(class.into(), rest.to_string());
                }
            }
            Platform::Vm => {}
            _ if r.router_cpus.is_none() => r.router_cpus = Some(rest.clone()),
            _ => {}
        }
    }
}

fn frames(f: &Frames) -> Result<Vec<FrameSpec>, String> {
    match f {
        Frames::Sizes(v) if v.is_empty() => Err("traffic.frames: empty".into()),
        Frames::Sizes(v) => Ok(v.iter().map(|&n| FrameSpec::Fixed(n)).collect()),
        Frames::Preset(p) if p == "rfc2544" => {
            Ok(RFC2544.iter().map(|&n| FrameSpec::Fixed(n)).collect())
        }
        Frames::Preset(p) if p == "imix" => Ok(vec![FrameSpec::Imix]),
        Frames::Preset(p) => Err(format!(
            "traffic.frames: {p:?}: expected a list of sizes, \"rfc2544\" or \"imix\""
        )),
    }
}

/// The largest frame (with FCS) an interface with this MTU carries.
pub fn max_frame(mtu: u32) -> u32 {
    mtu + 14 + FCS
}

/// How many destination addresses flows cycle through: the range's
/// (at most 2^24), or the sink's one.
pub fn dst_addrs(dst: Option<&Prefix>) -> u32 {
    dst.map_or(1, |p| 1u32 << (32 - p.len.min(32)).min(24))
}

/// How many flows the destination range holds: addresses x ports.
pub fn flow_capacity(dst: Option<&Prefix>) -> u64 {
    dst_addrs(dst) as u64 * crate::frame::PORTS as u64
}

fn check(
    exp: &Experiment,
    routers: &[(RouterSpec, RouterConfig)],
    online: &[u32],
) -> Result<Vec<FrameSpec>, String> {
    let fr = frames(&exp.traffic.frames)?;
    if exp.routers.is_empty() {
        return Err("router: at least one [[router]] is needed".into());
    }
    if exp.repetitions == 0 || exp.repetitions > 1000 {
        return Err(format!(
            "repetitions: {}: expected 1 to 1000",
            exp.repetitions
        ));
    }
    if ![0.95, 0.99].contains(&exp.confidence) {
        return Err(format!(
            "confidence: {}: expected 0.95 or 0.99",
            exp.confidence
        ));
    }
    if !(0.1..=600.0).contains(&exp.trial_secs) {
        return Err(format!(
            "trial_secs: {}: expected 0.1 to 600 seconds",
            exp.trial_secs
        ));
    }
    if exp.drain_ms > MAX_DRAIN_MS {
        return Err(format!(
            "drain_ms: {}: expected 0 to {MAX_DRAIN_MS}",
            exp.drain_ms
        ));
    }
    let t = &exp.traffic;
    if t.flows == 0 || t.flows > 1_000_000 {
        return Err(format!("traffic.flows: {}: expected 1 to 1000000", t.flows));
    }
    if let Some(d) = &t.dst {
        if !d.is_ipv4() || d.has_host_bits() {
            return Err(format!(
                "traffic.dst: {d}: expected an IPv4 network prefix (no host bits)"
            ));
        }
    }
    let cap = flow_capacity(t.dst.as_ref());
    if t.flows as u64 > cap {
        return Err(format!(
            "traffic.flows: {} flows do not fit traffic.dst ({}): it holds {cap} (addresses x {} ports); widen traffic.dst",
            t.flows,
            t.dst.map_or("the sink's address".into(), |d| d.to_string()),
            crate::frame::PORTS
        ));
    }
    if let Some(c) = &t.cpus {
        for cpu in &c.0 {
            if !online.contains(cpu) {
                return Err(format!(
                    "traffic.cpus: CPU {cpu} is not online (online: {online:?})"
                ));
            }
        }
    }
    for (i, r) in t.rates_pps.iter().enumerate() {
        if *r == 0 || *r > MAX_RATE_PPS {
            return Err(format!(
                "traffic.rates_pps[{i}]: {r}: expected 1 to {MAX_RATE_PPS} packets per second"
            ));
        }
    }
    if exp.interleave && exp.mode != Mode::Sweep {
        return Err("interleave: only for mode = \"sweep\" (isolation and scale run their routers together already)".into());
    }
    if exp.migrate.is_some() && exp.mode != Mode::Migrate {
        return Err("migrate: only for mode = \"migrate\"".into());
    }
    match exp.mode {
        Mode::Sweep if t.rates_pps.is_empty() && !t.max_rate => {
            return Err("traffic.rates_pps: a sweep needs rates (or max_rate = true)".into())
        }
        Mode::NdrPdr => check_search(
            exp.search
                .as_ref()
                .ok_or("search: ndr-pdr needs a [search] table with max_pps")?,
        )?,
        Mode::Scale => {
            let s = exp.scale.as_ref().ok_or(
                "scale: mode = \"scale\" needs a [scale] table with routers = [1, 2, ...]",
            )?;
            if routers.len() != 1 {
                return Err(format!(
                    "router: scale copies one [[router]]; this file has {}",
                    routers.len()
                ));
            }
            if let Some(n) = s.routers.iter().find(|&&n| n == 0 || n > MAX_SCALE) {
                return Err(format!("scale.routers: {n}: expected 1 to {MAX_SCALE}"));
            }
            if !s.routers.contains(&1) {
                return Err(
                    "scale.routers: must include 1, the baseline the others are compared with"
                        .into(),
                );
            }
            if t.rates_pps.is_empty() || t.max_rate {
                return Err("traffic.rates_pps: scale offers each router these rates (max_rate is not used)".into());
            }
            if routers[0].1.name.len() > 6 {
                return Err(format!(
                    "router[0].name: {:?}: at most 6 characters in scale mode (the copies are named <name>1, <name>2, ...)",
                    routers[0].1.name
                ));
            }
        }
        Mode::Migrate => {
            let m = exp.migrate.as_ref().ok_or(
                "migrate: mode = \"migrate\" needs a [migrate] table (after_ms, downtime_limit_ms)",
            )?;
            if t.rates_pps.is_empty() || t.max_rate {
                return Err("traffic.rates_pps: a migrate run offers these rates as cross traffic (max_rate is not used)".into());
            }
            if m.after_ms == 0 || m.after_ms as f64 >= exp.trial_secs * 1000.0 {
                return Err(format!(
                    "migrate.after_ms: {}: expected at least 1 and less than the trial (trial_secs = {} s), so the migration starts under load",
                    m.after_ms, exp.trial_secs
                ));
            }
            if m.downtime_limit_ms == 0 {
                return Err("migrate.downtime_limit_ms: 0: expected at least 1 ms".into());
            }
            if m.bandwidth_mbps == Some(0) {
                return Err("migrate.bandwidth_mbps: 0: expected at least 1 MB/s".into());
            }
            for (i, (r, _)) in routers.iter().enumerate() {
                if r.platform == Platform::Netns {
                    return Err(format!(
                        "router[{i}].platform: a migrate run moves VM routers (or containers, with CRIU)"
                    ));
                }
                if r.platform == Platform::Vm && r.datapath.as_deref() != Some("macvtap") {
                    return Err(format!(
                        "router[{i}].datapath: a migrated VM needs datapath = \"macvtap\" (the destination joins the same lowers)"
                    ));
                }
            }
        }
        Mode::Isolation => {
            if routers.len() < 2 {
                return Err("router: isolation needs at least two routers".into());
            }
            let steps = isolation_steps(routers);
            if steps == 0 {
                return Err("router[0].rates_pps: isolation needs rates per step for at least one router (the others may say max_rate = true)".into());
            }
            for (i, (r, _)) in routers.iter().enumerate() {
                if r.max_rate {
                    if !r.rates_pps.is_empty() || !r.rates_frac.is_empty() {
                        return Err(format!(
                            "router[{i}].max_rate: a router offered max rate takes no rates_pps or rates_frac"
                        ));
                    }
                    continue;
                }
                if !r.rates_frac.is_empty() {
                    if !r.rates_pps.is_empty() {
                        return Err(format!(
                            "router[{i}].rates_frac: give rates_pps or rates_frac, not both"
                        ));
                    }
                    match &exp.search {
                        None => {
                            return Err(format!(
                                "router[{i}].rates_frac: fractions of the router's NDR need a [search] table to find it"
                            ))
                        }
                        Some(s) => check_search(s)?,
                    }
                    if let Some((j, f)) = r
                        .rates_frac
                        .iter()
                        .enumerate()
                        .find(|(_, f)| !(**f > 0.0 && **f <= 10.0))
                    {
                        return Err(format!(
                            "router[{i}].rates_frac[{j}]: {f}: expected a fraction of the NDR above 0 and at most 10"
                        ));
                    }
                    if r.rates_frac.len() != steps {
                        return Err(format!(
                            "router[{i}].rates_frac: isolation needs the same number of steps for every router ({steps} steps)"
                        ));
                    }
                    continue;
                }
                if r.rates_pps.len() != steps {
                    return Err(format!(
                        "router[{i}].rates_pps: isolation needs the same number of steps for every router ({steps} steps) or max_rate = true"
                    ));
                }
                if let Some(j) = r.rates_pps.iter().position(|&x| x == 0 || x > MAX_RATE_PPS) {
                    return Err(format!(
                        "router[{i}].rates_pps[{j}]: {}: expected 1 to {MAX_RATE_PPS} packets per second",
                        r.rates_pps[j]
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(l) = &exp.latency {
        if let Some(f) = l.at_pdr.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return Err(format!("latency.at_pdr: {f}: expected fractions in (0, 1]"));
        }
        if l.sample_every == 0 {
            return Err("latency.sample_every: 0: expected at least 1".into());
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, (r, cfg)) in routers.iter().enumerate() {
        let at = format!("router[{i}]");
        if !names.insert(cfg.name.clone()) {
            return Err(format!(
                "{at}.name: {:?} is used twice; give each router its own name",
                cfg.name
            ));
        }
        if cfg.name.len() > 8 {
            return Err(format!(
                "{at}.name: {:?}: at most 8 characters (host devices are named after it)",
                cfg.name
            ));
        }
        let datapath = r
            .datapath_checked()
            .map_err(|e| format!("{at}.datapath: {e}"))?;
        tinyvr_host::topology::plan_wired(cfg, datapath)
            .map_err(|e| format!("{at}.config: {e}"))?;
        let mtu = cfg.interfaces[0].mtu.unwrap_or(1500);
        for f in &fr {
            for size in f.pattern() {
                if size < MIN_FRAME || size > max_frame(mtu) {
                    return Err(format!(
                        "traffic.frames: {size}: expected {MIN_FRAME} to {} bytes (the in interface's MTU {mtu} plus Ethernet header and FCS)",
                        max_frame(mtu)
                    ));
                }
            }
        }
        if exp.mode != Mode::Isolation
            && (r.max_rate || r.frame.is_some() || !r.rates_frac.is_empty())
        {
            let k = if r.max_rate {
                "max_rate"
            } else if r.frame.is_some() {
                "frame"
            } else {
                "rates_frac"
            };
            return Err(format!("{at}.{k}: only for mode = \"isolation\""));
        }
        if let Some(size) = r.frame {
            if size < MIN_FRAME || size > max_frame(mtu) {
                return Err(format!(
                    "{at}.frame: {size}: expected {MIN_FRAME} to {} bytes (the in interface's MTU {mtu} plus Ethernet header and FCS)",
                    max_frame(mtu)
                ));
            }
        }
        let vm_only = [
            ("accel", r.accel.is_some()),
            ("cpus", r.cpus.is_some()),
            ("memory_mb", r.memory_mb.is_some()),
            ("prealloc", r.prealloc.is_some()),
            ("thp", r.thp.is_some()),
            ("affinity", !r.affinity.is_empty()),
            ("sched", !r.sched.is_empty()),
            ("rt_runtime_us", r.rt_runtime_us.is_some()),
            ("txqueuelen", r.txqueuelen.is_some()),
            ("vhost", r.vhost.is_some()),
            ("launcher", r.launcher.is_some()),
        ];
        if let Some(l) = r
            .launcher
            .as_deref()
            .filter(|l| !["qemu", "libvirt"].contains(l))
        {
            return Err(format!(
                "{at}.launcher: {l:?}: expected \"qemu\" or \"libvirt\""
            ));
        }
        if r.launcher.as_deref() == Some("libvirt") && exp.mode == Mode::Migrate {
            return Err(format!(
                "{at}.launcher: \"libvirt\" with mode = \"migrate\": tinyvr migrates the VMs it runs itself (a libvirt domain migrates through virsh migrate)"
            ));
        }
        if r.platform != Platform::Vm {
            if let Some((k, _)) = vm_only.iter().find(|(_, set)| *set) {
                return Err(format!("{at}.{k}: only for platform = \"vm\""));
            }
        }
        if let Some(c) = &r.router_cpus {
            if r.platform == Platform::Vm {
                return Err(format!(
                    "{at}.router_cpus: only for platform netns or lxc (a VM forwards on its vCPUs: set affinity.vcpu)"
                ));
            }
            if let Some(cpu) = c.0.iter().find(|c| !online.contains(c)) {
                return Err(format!(
                    "{at}.router_cpus: CPU {cpu} is not online (online: {online:?})"
                ));
            }
            if let Some(g) = &exp.traffic.cpus {
                if let Some(cpu) = c.0.iter().find(|c| g.0.contains(c)) {
                    return Err(format!(
                        "{at}.router_cpus: CPU {cpu} is also in traffic.cpus ({g}): the router would forward on the generator's CPU"
                    ));
                }
            }
            if let Some(own) = &cfg.interfaces.first().and_then(|i| i.rps_cpus.clone()) {
                if !own.same_cpus(c) {
                    return Err(format!(
                        "{at}.router_cpus: {c}, but the router config's interface[0].rps_cpus is {own}: give one of them"
                    ));
                }
            }
        }
        if r.platform == Platform::Netns
            && (r.cpu_weight.is_some() || r.cpu_max.is_some() || r.cpuset.is_some())
        {
            return Err(format!(
                "{at}: cpu_weight/cpu_max/cpuset need a cgroup: platform lxc or vm (a namespace router forwards in softirq, outside any cgroup)"
            ));
        }
        let res = resources(r);
        tinyvr_host::cgroup::check(&res, online).map_err(|e| format!("{at}: {e}"))?;
        let placement = placement(r).map_err(|e| format!("{at}.{e}"))?;
        placement.check(online).map_err(|e| format!("{at}: {e}"))?;
        if let Some(v) = &r.vhost {
            if !["on", "off", "auto"].contains(&v.as_str()) {
                return Err(format!("{at}.vhost: {v:?}: expected on, off or auto"));
            }
        }
        if let Some(q) = r.txqueuelen {
            if q == 0 || q > MAX_TXQUEUELEN {
                return Err(format!(
                    "{at}.txqueuelen: {q}: expected 1 to {MAX_TXQUEUELEN}"
                ));
            }
        }
        if let Some(rt) = r.rt_runtime_us {
            if rt > MAX_RT_RUNTIME_US {
                return Err(format!(
                    "{at}.rt_runtime_us: {rt}: expected 0 to {MAX_RT_RUNTIME_US} (µs per 1 s period)"
                ));
            }
        }
        if let Some(t) = &r.thp {
            t.parse::<tinyvr_qemu::memory::Thp>()
                .map_err(|e| format!("{at}.thp: {e}"))?;
        }
        if let Some(a) = &r.accel {
            if !["auto", "kvm", "tcg"].contains(&a.as_str()) {
                return Err(format!("{at}.accel: {a:?}: expected auto, kvm or tcg"));
            }
        }
        if let Some(c) = r.cpus {
            if c == 0 || c > MAX_VM_CPUS {
                return Err(format!("{at}.cpus: {c}: expected 1 to {MAX_VM_CPUS}"));
            }
        }
        if let Some(m) = r.memory_mb {
            if m < 64 {
                return Err(format!("{at}.memory_mb: {m}: expected at least 64 MB"));
            }
        }
    }
    let names: Vec<&str> = routers.iter().map(|(_, c)| c.name.as_str()).collect();
    crate::neighbours::check(exp, isolation_steps(routers), &names, online)?;
    Ok(fr)
}

/// The search interval and loss ratio, wherever a search runs (ndr-pdr,
/// isolation with rates_frac).
fn check_search(s: &Search) -> Result<(), String> {
    if !(0.0..1.0).contains(&s.pdr_loss) {
        return Err(format!(
            "search.pdr_loss: {}: expected a ratio in [0, 1)",
            s.pdr_loss
        ));
    }
    if s.min_pps == 0 || s.min_pps >= s.max_pps {
        return Err(format!(
            "search.min_pps/max_pps: {}..{}: expected 0 < min_pps < max_pps",
            s.min_pps, s.max_pps
        ));
    }
    if s.max_pps > MAX_RATE_PPS {
        return Err(format!(
            "search.max_pps: {}: expected at most {MAX_RATE_PPS} packets per second",
            s.max_pps
        ));
    }
    if s.resolution_pps == 0 || s.resolution_pps > s.max_pps {
        return Err(format!(
            "search.resolution_pps: {}: expected 1 to max_pps ({})",
            s.resolution_pps, s.max_pps
        ));
    }
    Ok(())
}

/// Isolation: how many steps, from the routers offered given rates.
pub fn isolation_steps(routers: &[(RouterSpec, RouterConfig)]) -> usize {
    routers
        .iter()
        .map(|(r, _)| r.rates_pps.len().max(r.rates_frac.len()))
        .max()
        .unwrap_or(0)
}

pub fn resources(r: &RouterSpec) -> tinyvr_host::cgroup::Resources {
    tinyvr_host::cgroup::Resources {
        cpu_weight: r.cpu_weight,
        cpu_max: r.cpu_max.clone(),
        cpuset: r.cpuset.clone(),
    }
}

/// The VM's thread placement from the `affinity` and `sched` tables.
pub fn placement(r: &RouterSpec) -> Result<tinyvr_qemu::sched::Placement, String> {
    use tinyvr_qemu::sched::{parse_affinity, parse_sched};
    let mut p = tinyvr_qemu::sched::Placement::default();
    for (k, v) in &r.affinity {
        p.affinity
            .push(parse_affinity(&format!("{k}={v}")).map_err(|e| format!("affinity.{k}: {e}"))?);
    }
    for (k, v) in &r.sched {
        p.sched
            .push(parse_sched(&format!("{k}={v}")).map_err(|e| format!("sched.{k}: {e}"))?);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: &str = include_str!("../../experiments/router.toml");

    fn try_load(body: &str) -> Result<Loaded, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tinyvr-exp-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("router.toml"), ROUTER).unwrap();
        let p = dir.join("e.toml");
        let r = load(body, &p, &[0, 1]);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    const GOOD: &str = r#"name = "t"
mode = "sweep"
[traffic]
rates_pps = [1000]
[[router]]
config = "router.toml"
platform = "netns"
"#;

    #[test]
    fn the_shipped_experiments_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.file_name().unwrap() == "router.toml" || p.extension().is_none_or(|x| x != "toml")
            {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let l = load(&text, &p, &[0, 1]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!l.routers.is_empty());
        }
        let l = try_load(GOOD).unwrap();
        assert_eq!(l.frames, vec![FrameSpec::Fixed(64)]);
        assert_eq!(l.routers[0].1.name, "vr");
    }

    #[test]
    fn presets() {
        let p = FrameSpec::Imix.pattern();
        let count = |n| p.iter().filter(|&&x| x == n).count();
        assert_eq!((count(64), count(594), count(1518), p.len()), (7, 4, 1, 12));
        let l = try_load(&GOOD.replace(
            "rates_pps = [1000]",
            "rates_pps = [1000]\nframes = \"rfc2544\"",
        ))
        .unwrap();
        assert_eq!(l.frames.len(), 7);
        assert_eq!(flow_capacity(None), 64512);
        assert_eq!(
            flow_capacity(Some(&"10.9.0.0/24".parse().unwrap())),
            256 * 64512
        );
    }

    #[test]
    fn bad_experiments_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("platform = \"netns\"", "platform = \"docker\"", "platform"),
            (
                "rates_pps = [1000]",
                "rates_pps = [0]",
                "traffic.rates_pps[0]",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nflows = 70000",
                "traffic.flows",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nflows = 1000000\ndst = \"10.9.0.0/30\"",
                "traffic.flows",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\ncpus = \"7\"",
                "traffic.cpus",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nframes = [59]",
                "traffic.frames",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nframes = [1519]",
                "traffic.frames",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nframes = \"jumbo\"",
                "traffic.frames",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\ndst = \"10.9.0.1/24\"",
                "traffic.dst",
            ),
            ("mode = \"sweep\"", "mode = \"stress\"", "mode"),
            ("mode = \"sweep\"", "mode = \"ndr-pdr\"", "search"),
            ("mode = \"sweep\"", "mode = \"isolation\"", "router"),
            (
                "mode = \"sweep\"",
                "mode = \"isolation\"\ninterleave = true",
                "interleave",
            ),
            (
                "name = \"t\"",
                "name = \"t\"\nrepetitions = 0",
                "repetitions",
            ),
            (
                "name = \"t\"",
                "name = \"t\"\nconfidence = 0.9",
                "confidence",
            ),
            ("name = \"t\"", "name = \"t\"\ntrial_secs = 0", "trial_secs"),
            (
                "config = \"router.toml\"",
                "config = \"nope.toml\"",
                "router[0].config",
            ),
            (
                "platform = \"netns\"",
                "platform = \"netns\"\ncpu_weight = 200",
                "router[0]",
            ),
            (
                "platform = \"netns\"",
                "platform = \"lxc\"\ntxqueuelen = 5",
                "router[0].txqueuelen",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\ntxqueuelen = 0",
                "router[0].txqueuelen",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\naffinity = { vcpu = \"9\" }",
                "router[0]",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nsched = { vcpu = \"deadline:300/200/200\" }",
                "router[0].sched.vcpu",
            ),
            (
                "platform = \"netns\"",
                "platform = \"lxc\"\ncpuset = \"5\"",
                "router[0]",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nthp = \"sometimes\"",
                "router[0].thp",
            ),
            (
                "platform = \"netns\"",
                "platform = \"lxc\"\nprealloc = false",
                "router[0].prealloc",
            ),
            (
                "platform = \"netns\"",
                "platform = \"netns\"\nname = \"muchtoolong\"",
                "router[0].name",
            ),
            (
                "platform = \"netns\"",
                "platform = \"netns\"\nbogus = 1",
                "bogus",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nrouter_cpus = \"1\"",
                "router[0].router_cpus",
            ),
            ("mode = \"sweep\"", "mode = \"scale\"", "scale"),
            (
                "platform = \"netns\"",
                "platform = \"netns\"\ndatapath = \"tap\"",
                "router[0].datapath: \"tap\": expected veth or macvlan for platform netns and lxc",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\ndatapath = \"macvlan\"",
                "router[0].datapath: \"macvlan\": expected bridge, tap or macvtap for platform vm",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"scale\"\n[scale]\nrouters = [2, 4]",
                "scale.routers",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"scale\"\n[scale]\nrouters = [1, 17]",
                "scale.routers",
            ),
            (
                "platform = \"netns\"",
                "platform = \"netns\"\nrouter_cpus = \"5\"",
                "router[0].router_cpus",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nlauncher = \"virsh\"",
                "router[0].launcher: \"virsh\": expected \"qemu\" or \"libvirt\"",
            ),
            (
                "platform = \"netns\"",
                "platform = \"lxc\"\nlauncher = \"libvirt\"",
                "router[0].launcher: only for platform = \"vm\"",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\ncpus = \"0\"\n[[router]]\nconfig = \"router.toml\"\nplatform = \"netns\"\nname = \"other\"\nrouter_cpus = \"0\"",
                "router[0].router_cpus",
            ),
            // Every number that feeds arithmetic: out of range, NaN, at
            // the integer limits.
            ("name = \"t\"", "name = \"t\"\ndrain_ms = 60001", "drain_ms"),
            ("name = \"t\"", "name = \"t\"\ndrain_ms = -1", "drain_ms"),
            (
                "name = \"t\"",
                "name = \"t\"\ntrial_secs = nan",
                "trial_secs",
            ),
            (
                "name = \"t\"",
                "name = \"t\"\ntrial_secs = inf",
                "trial_secs",
            ),
            (
                "name = \"t\"",
                "name = \"t\"\ntrial_secs = 601",
                "trial_secs",
            ),
            (
                "name = \"t\"",
                "name = \"t\"\nrepetitions = 1001",
                "repetitions",
            ),
            (
                "name = \"t\"",
                "name = \"t\"\nconfidence = nan",
                "confidence",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [100000001]",
                "traffic.rates_pps[0]",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000, 9223372036854775807]",
                "traffic.rates_pps[1]",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nflows = 0",
                "traffic.flows",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nflows = 4294967295",
                "traffic.flows",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nframes = [4294967295]",
                "traffic.frames",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\nframes = []",
                "traffic.frames",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\n[latency]\nsample_every = 0",
                "latency.sample_every",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\n[latency]\nat_pdr = [nan]",
                "latency.at_pdr",
            ),
            (
                "rates_pps = [1000]",
                "rates_pps = [1000]\n[latency]\nat_pdr = [1.5]",
                "latency.at_pdr",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 100000001",
                "search.max_pps",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 9223372036854775807",
                "search.max_pps",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 1000",
                "search.min_pps",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 100000\nmin_pps = 0",
                "search.min_pps",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 100000\nresolution_pps = 0",
                "search.resolution_pps",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 100000\nresolution_pps = 100001",
                "search.resolution_pps",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 100000\npdr_loss = nan",
                "search.pdr_loss",
            ),
            (
                "mode = \"sweep\"",
                "mode = \"ndr-pdr\"\n[search]\nmax_pps = 100000\npdr_loss = 1.0",
                "search.pdr_loss",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\ncpus = 0",
                "router[0].cpus",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\ncpus = 256",
                "router[0].cpus",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nmemory_mb = 63",
                "router[0].memory_mb",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nrt_runtime_us = 1000001",
                "router[0].rt_runtime_us",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\ntxqueuelen = 1000001",
                "router[0].txqueuelen",
            ),
            (
                "platform = \"netns\"",
                "platform = \"vm\"\nsched = { vcpu = \"deadline:2/2/18446744073709552\" }",
                "router[0].sched.vcpu",
            ),
            (
                "platform = \"netns\"",
                "platform = \"lxc\"\ncpu_weight = 0",
                "router[0]",
            ),
            (
                "platform = \"netns\"",
                "platform = \"lxc\"\ncpu_max = \"99999999999999999999 100000\"",
                "router[0]",
            ),
        ];
        for (from, to, field) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            match try_load(&text) {
                Ok(_) => panic!("accepted: {to}"),
                Err(e) => assert!(e.contains(field), "{to}: {e:?} does not name {field}"),
            }
        }
        let twice = format!("{GOOD}[[router]]\nconfig = \"router.toml\"\nplatform = \"lxc\"\n");
        let e = try_load(&twice).unwrap_err();
        assert!(e.contains("router[1].name"), "{e}");
        // Isolation: every router's rates, in range.
        let isolation = |rates: &str| {
            GOOD.replace("mode = \"sweep\"", "mode = \"isolation\"")
                .replace(
                    "platform = \"netns\"",
                    &format!("platform = \"netns\"\nname = \"a\"\nrates_pps = [1000]\n[[router]]\nconfig = \"router.toml\"\nplatform = \"netns\"\nname = \"b\"\nrates_pps = {rates}"),
                )
        };
        try_load(&isolation("[2000]")).unwrap();
        for (rates, want) in [
            ("[0]", "router[1].rates_pps[0]: 0"),
            ("[100000001]", "router[1].rates_pps[0]: 100000001"),
            ("[1000, 2000]", "isolation needs the same number of steps"),
            ("[1000]\nmax_rate = true", "router[1].max_rate"),
            (
                "[]\nrates_frac = [0.5]",
                "router[1].rates_frac: fractions of the router's NDR need a [search] table",
            ),
            (
                "[1000]\nrates_frac = [0.5]",
                "router[1].rates_frac: give rates_pps or rates_frac",
            ),
            ("[1000]\nframe = 40", "router[1].frame: 40"),
        ] {
            let e = try_load(&isolation(rates)).unwrap_err();
            assert!(e.contains(want), "{rates}: {e}");
        }
        // Burning neighbours: one state per step, on CPUs that exist.
        let burner = |extra: &str| {
            format!(
                "{}[[neighbour]]\nname = \"hog\"\nplatform = \"lxc\"\ncpus = \"1\"\nburn = [true]\n{extra}",
                isolation("[2000]")
            )
        };
        let l = try_load(&burner("")).unwrap();
        assert_eq!(l.exp.neighbours[0].memory_mb, 64);
        for (extra, want) in [
            ("threads = 0", "neighbour[0].threads: expected 1 to 64"),
            (
                "memory_mb = 5000",
                "neighbour[0].memory_mb: expected 1 to 4096",
            ),
            ("color = 1", "unknown field `color`"),
        ] {
            let e = try_load(&burner(extra)).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        for (from, to, want) in [
            (
                "burn = [true]",
                "burn = [true, false]",
                "neighbour[0].burn: 2 entries: expected one per isolation step (1)",
            ),
            (
                "cpus = \"1\"",
                "cpus = \"7\"",
                "neighbour[0].cpus: CPU 7 is not online",
            ),
            (
                "platform = \"lxc\"",
                "platform = \"netns\"",
                "neighbour[0].platform: \"netns\": expected lxc or vm",
            ),
            (
                "name = \"hog\"",
                "name = \"b\"",
                "neighbour[0].name: \"b\" is used twice",
            ),
            (
                "name = \"hog\"",
                "name = \"hog-is-long\"",
                "neighbour[0].name",
            ),
        ] {
            let e = try_load(&burner("").replace(from, to)).unwrap_err();
            assert!(e.contains(want), "{to}: {e}");
        }
        let e = try_load(&format!(
            "{GOOD}[[neighbour]]\nname = \"hog\"\nplatform = \"lxc\"\ncpus = \"1\"\nburn = [true]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("neighbour[0]: neighbours are for mode = \"isolation\""),
            "{e}"
        );
        // A neighbour at max rate with its own frame size.
        let l = try_load(&isolation("[]\nmax_rate = true\nframe = 128")).unwrap();
        assert_eq!(isolation_steps(&l.routers), 1);
        assert_eq!(l.routers[1].0.frame, Some(128));
        // Isolation-only keys elsewhere.
        let e =
            try_load(&GOOD.replace("platform = \"netns\"", "platform = \"netns\"\nframe = 128"))
                .unwrap_err();
        assert!(
            e.contains("router[0].frame: only for mode = \"isolation\""),
            "{e}"
        );
    }

    #[test]
    fn migrate_runs_are_checked() {
        let m = |platform: &str, tail: &str| {
            GOOD.replace("mode = \"sweep\"", "mode = \"migrate\"\ntrial_secs = 5.0")
                .replace("platform = \"netns\"", platform)
                + tail
        };
        let vm = "platform = \"vm\"\ndatapath = \"macvtap\"";
        let l = try_load(&m(vm, "[migrate]\n")).unwrap();
        assert!(l.exp.traffic.sequence, "sequence numbers are tracked");
        assert_eq!(l.exp.migrate.as_ref().unwrap().after_ms, 2000);
        for (platform, tail, want) in [
            (
                vm,
                "",
                "migrate: mode = \"migrate\" needs a [migrate] table",
            ),
            (
                "platform = \"netns\"",
                "[migrate]\n",
                "router[0].platform: a migrate run moves VM routers",
            ),
            (
                "platform = \"vm\"",
                "[migrate]\n",
                "router[0].datapath: a migrated VM needs datapath = \"macvtap\"",
            ),
            (vm, "[migrate]\nafter_ms = 0\n", "migrate.after_ms: 0"),
            (
                vm,
                "[migrate]\nafter_ms = 2000\ntrial_secs = 1\n",
                "unknown field `trial_secs`",
            ),
            (
                vm,
                "[migrate]\ndowntime_limit_ms = 0\n",
                "migrate.downtime_limit_ms: 0",
            ),
            (
                vm,
                "[migrate]\nbandwidth_mbps = 0\n",
                "migrate.bandwidth_mbps: 0",
            ),
        ] {
            let e = try_load(&m(platform, tail)).unwrap_err();
            assert!(e.contains(want), "{tail}: {e}");
        }
        let e = try_load(&format!("{GOOD}[migrate]\n")).unwrap_err();
        assert!(e.contains("migrate: only for mode = \"migrate\""), "{e}");
    }

    #[test]
    fn routers_and_the_generator_get_cpus_of_their_own() {
        // Left out on a two-CPU host: the generator on 0, the router on 1.
        let l = try_load(GOOD).unwrap();
        assert_eq!(l.exp.traffic.cpus, Some(CpuList(vec![0])));
        assert_eq!(l.routers[0].0.router_cpus, Some(CpuList(vec![1])));
        assert_eq!(l.exp.routers[0].router_cpus, Some(CpuList(vec![1])));
        // An explicit generator CPU: the router gets the others.
        let l = try_load(&GOOD.replace("rates_pps = [1000]", "rates_pps = [1000]\ncpus = \"1\""))
            .unwrap();
        assert_eq!(l.routers[0].0.router_cpus, Some(CpuList(vec![0])));
        // A router that names its CPUs: the generator gets another.
        let l = try_load(&GOOD.replace("\"netns\"", "\"netns\"\nrouter_cpus = \"0\"")).unwrap();
        assert_eq!(l.exp.traffic.cpus, Some(CpuList(vec![1])));
        // A VM: its vCPU and emulator threads off the generator's CPU.
        let l = try_load(&GOOD.replace("\"netns\"", "\"vm\"")).unwrap();
        assert_eq!(l.exp.traffic.cpus, Some(CpuList(vec![0])));
        assert_eq!(l.routers[0].0.router_cpus, None);
        assert_eq!(
            (
                l.routers[0].0.affinity["vcpu"].as_str(),
                l.routers[0].0.affinity["emulator"].as_str()
            ),
            ("1", "1")
        );
        // A VM placed by the file: kept, and the generator avoids it.
        let l =
            try_load(&GOOD.replace("\"netns\"", "\"vm\"\naffinity = { vcpu = \"0\" }")).unwrap();
        assert_eq!(l.exp.traffic.cpus, Some(CpuList(vec![1])));
        assert_eq!(l.routers[0].0.affinity.len(), 1);
        // The router's ingress gets RPS to its CPUs.
        let cfg = crate::routers::effective(&l.routers[0].0, &l.routers[0].1, None).unwrap();
        assert_eq!(cfg.interfaces[0].rps_cpus, None);
        let l = try_load(GOOD).unwrap();
        let cfg = crate::routers::effective(&l.routers[0].0, &l.routers[0].1, None).unwrap();
        assert_eq!(cfg.interfaces[0].rps_cpus, Some(CpuList(vec![1])));
    }

    #[test]
    fn every_shipped_experiment_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml")
                && p.file_name() != Some("router.toml".as_ref())
            {
                let text = std::fs::read_to_string(&p).unwrap();
                load(&text, &p, &[0, 1]).unwrap_or_else(|err| panic!("{}: {err}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 7, "{n} experiments");
    }
}
