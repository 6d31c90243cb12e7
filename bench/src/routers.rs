//! Routers under test: the effective config each platform gets, bringing
//! it up between a source and a sink namespace, the hops whose counters a
//! trial reads, and tearing it down.

use crate::counters::Ns;
use crate::experiment::{self, Platform, RouterSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tinyvr_config::{HostLink, Prefix, RouterConfig, Vhost, VirtioNic};
use tinyvr_host::topology::{self, Topology};

/// What the bench needs from the outside: the image, the init binary,
/// where effective configs go, the flows' destination range.
pub struct Env {
    pub image: PathBuf,
    pub init: PathBuf,
    pub dir: PathBuf,
    pub dst: Option<Prefix>,
}

/// A counter source on the path: (name in the results, namespace, device).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hop {
    pub name: String,
    pub ns: Ns,
    pub dev: String,
    /// Which direction of the device carries the test traffic here.
    pub dir: Dir,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Dir {
    Rx,
    Tx,
    /// Received and kept: rx minus rx_dropped (a macvtap counts a frame as
    /// received before its queue drops it).
    Queued,
}

impl Dir {
    pub fn count(self, l: &crate::counters::Link) -> u64 {
        match self {
            Dir::Rx => l.rx_packets,
            Dir::Tx => l.tx_packets,
            Dir::Queued => l.rx_packets.saturating_sub(l.rx_dropped),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Rx => "rx",
            Dir::Tx => "tx",
            Dir::Queued => "queued",
        }
    }
}

pub struct Running {
    pub name: String,
    pub label: String,
    pub platform: Platform,
    pub topo: Topology,
    /// The config it runs (what a read-back is matched against).
    pub cfg: RouterConfig,
    /// The READY json with every applied and read-back setting.
    pub ready: serde_json::Value,
    /// (router, pid, is qemu) for CPU accounting.
    pub procs: Vec<(String, u32, bool)>,
    pub hops: Vec<Hop>,
}

/// The config the platform gets: NIC settings for VMs and a route for the
/// flows' destinations via the sink. Pure.
pub fn effective(
    spec: &RouterSpec,
    cfg: &RouterConfig,
    dst: Option<&Prefix>,
) -> Result<RouterConfig, String> {
    let mut cfg = cfg.clone();
    if spec.platform == Platform::Vm && (spec.txqueuelen.is_some() || spec.vhost.is_some()) {
        let vhost = match spec.vhost.as_deref() {
            Some("on") => Vhost::On,
            Some("off") => Vhost::Off,
            _ => Vhost::Auto,
        };
        for ifc in cfg.interfaces.iter_mut().take(2) {
            ifc.host = Some(HostLink::Tap {
                name: None,
                netns: None,
                bridge: None,
                nic: VirtioNic {
                    vhost,
                    txqueuelen: spec.txqueuelen,
                    ..Default::default()
                },
            });
        }
    }
    // The router's forwarding on its own CPUs: RPS on its ingress moves
    // receive processing off the generator's CPU (which a veth would
    // otherwise use: its receive runs in the sender's context).
    if let Some(c) = &spec.router_cpus {
        if spec.platform != Platform::Vm {
            cfg.interfaces[0].rps_cpus = Some(c.clone());
        }
    }
    let t = topology::plan_wired(&cfg, spec.datapath())?;
    if let Some(d) = dst {
        if t.sink.subnet.contains(d.addr) && !(d.len == 32 && d.addr == t.sink.ip) {
            return Err(format!(
                "traffic.dst: {d} is inside the sink's subnet {}: the router would resolve every address with ARP; use a prefix outside it (it is routed to the sink)",
                t.sink.subnet
            ));
        }
        if !t.sink.subnet.contains(d.addr) {
            let route: tinyvr_config::Route =
                toml::from_str(&format!("dest = \"{d}\"\nvia = \"{}\"", t.sink.ip))
                    .map_err(|e| format!("route for traffic.dst: {e}"))?;
            cfg.routes.push(route);
        }
    }
    cfg.validate()
        .map_err(|e| format!("router {}: {e}", cfg.name))?;
    Ok(cfg)
}

const LXC_TIMEOUT: Duration = Duration::from_secs(30);
const VM_TIMEOUT: Duration = Duration::from_secs(90);
const DOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// Brings one router up with its source/sink topology.
pub fn up(spec: &RouterSpec, cfg: &RouterConfig, env: &Env) -> Result<Running, String> {
    let cfg = effective(spec, cfg, env.dst.as_ref())?;
    let name = cfg.name.clone();
    std::fs::create_dir_all(&env.dir).map_err(|e| format!("{}: {e}", env.dir.display()))?;
    // Kept with the results: the exact config this router ran (the
    // platform gets the value itself, validated once).
    let path = env.dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg.to_toml()).map_err(|e| format!("{}: {e}", path.display()))?;
    let ready = start(spec, &cfg, env).map_err(|e| format!("router {name}: {e}"))?;
    // Up from here on: any early return must take it down again. The
    // topology is the one the platform planned and built (in READY), not
    // planned again here.
    serde_json::from_value::<Topology>(ready["topology"].clone())
        .map_err(|e| format!("router {name}: its topology in READY: {e}"))
        .and_then(|topo| finish_up(spec, &cfg, topo, ready))
        .inspect_err(|_| {
            if let Err(e) = down_named(spec.platform, &name) {
                log::error!("tearing down {name}: {e}");
            }
        })
}

/// The hops and processes of a router that is up.
fn finish_up(
    spec: &RouterSpec,
    cfg: &RouterConfig,
    topo: Topology,
    ready: serde_json::Value,
) -> Result<Running, String> {
    let name = cfg.name.clone();
    quiet_sink(&topo.sink.netns)?;
    let mut procs = Vec::new();
    let (i0, i1) = (
        cfg.interfaces[0].name.to_string(),
        cfg.interfaces[1].name.to_string(),
    );
    let mut hops = vec![Hop {
        name: "source".into(),
        ns: Ns::Named(topo.src.netns.clone()),
        dev: topo.src.dev.clone(),
        dir: Dir::Tx,
    }];
    // macvlan/macvtap: the veth ends in the host the router's devices sit
    // on. (A drop at the router's backlog is the source's tx_dropped: it
    // shows between "generator offered" and "source tx".)
    let lower = |i: usize, name: &str, dir| {
        topo.lowers.as_ref().map(|l| Hop {
            name: name.into(),
            ns: Ns::Host,
            dev: l.devs[i].clone(),
            dir,
        })
    };
    hops.extend(lower(0, "lower in", Dir::Rx));
    match spec.platform {
        Platform::Netns => {
            for (n, d, dir) in [("router in", &i0, Dir::Rx), ("router out", &i1, Dir::Tx)] {
                hops.push(Hop {
                    name: n.into(),
                    ns: Ns::Named(name.clone()),
                    dev: d.clone(),
                    dir,
                });
            }
        }
        Platform::Lxc => {
            let pid = ready["init_pid"]
                .as_u64()
                .ok_or("the container's init pid is unknown")? as u32;
            procs.push((name.clone(), pid, false));
            for (n, d, dir) in [("router in", &i0, Dir::Rx), ("router out", &i1, Dir::Tx)] {
                hops.push(Hop {
                    name: n.into(),
                    ns: Ns::Pid(pid),
                    dev: d.clone(),
                    dir,
                });
            }
        }
        Platform::Vm => {
            let pid = ready["vm"]["qemu_pid"]
                .as_u64()
                .ok_or("qemu's pid is unknown")? as u32;
            procs.push((name.clone(), pid, true));
            if topo.lowers.is_some() {
                // The macvtaps are in the host: what arrives for the guest
                // counts as their rx, a full queue as rx_dropped.
                for (n, i, dir) in [
                    ("vm macvtap in", 0, Dir::Queued),
                    ("vm macvtap out", 1, Dir::Tx),
                ] {
                    hops.push(Hop {
                        name: n.into(),
                        ns: Ns::Host,
                        dev: cfg.interfaces[i].host_name(&name),
                        dir,
                    });
                }
            } else {
                // With datapath = "tap" the source's device is the tap itself.
                let tap = topo
                    .src_bridge
                    .as_ref()
                    .map_or_else(|| topo.src.dev.clone(), |b| b.tap.clone());
                hops.push(Hop {
                    name: "vm tap in".into(),
                    ns: Ns::Named(topo.src.netns.clone()),
                    dev: tap,
                    dir: Dir::Tx,
                });
                hops.push(Hop {
                    name: "vm tap out".into(),
                    ns: Ns::Named(topo.sink.netns.clone()),
                    dev: topo.sink.dev.clone(),
                    dir: Dir::Rx,
                });
            }
        }
    }
    hops.extend(lower(1, "lower out", Dir::Tx));
    hops.push(Hop {
        name: "sink".into(),
        ns: Ns::Named(topo.sink.netns.clone()),
        dev: topo.sink.dev.clone(),
        dir: Dir::Rx,
    });
    // What the platform applied: the config with the topology's ends and
    // their neighbour entries attached (the read-backs compare with this).
    let mut applied = cfg.clone();
    topology::attach(&mut applied, &topo, spec.platform == Platform::Vm);
    Ok(Running {
        label: spec.label(cfg),
        cfg: applied,
        name,
        platform: spec.platform,
        topo,
        ready,
        procs,
        hops,
    })
}

fn start(spec: &RouterSpec, cfg: &RouterConfig, env: &Env) -> Result<serde_json::Value, String> {
    let e = |e: tinyvr_host::HostError| e.to_string();
    match spec.platform {
        Platform::Netns => tinyvr_host::platform_netns::up(&tinyvr_host::platform_netns::Up {
            config: cfg,
            name: None,
            topology: true,
            datapath: spec.datapath(),
            init: env.init.clone(),
        })
        .map_err(e),
        Platform::Lxc => tinyvr_lxc::platform::up(&tinyvr_lxc::platform::Up {
            config: cfg,
            name: None,
            rootfs: env.image.join("rootfs"),
            topology: true,
            datapath: spec.datapath(),
            resources: experiment::resources(spec),
            lxcpath: PathBuf::from(tinyvr_lxc::platform::DEFAULT_LXCPATH),
            timeout: LXC_TIMEOUT,
        })
        .map_err(e),
        Platform::Vm => tinyvr_qemu::platform::up(&tinyvr_qemu::platform::Up {
            config: cfg,
            name: None,
            image: env.image.clone(),
            topology: true,
            datapath: spec.datapath(),
            incoming: None,
            accel: spec.accel.clone().unwrap_or_else(|| "auto".into()),
            cpus: spec.cpus.unwrap_or(1),
            memory_mb: spec.memory_mb.unwrap_or(128),
            prealloc: spec.prealloc.unwrap_or(true),
            thp: spec.thp.as_deref().unwrap_or("auto").parse()?,
            console: false,
            timeout: VM_TIMEOUT,
            qemu: "qemu-system-x86_64".into(),
            placement: experiment::placement(spec)?,
            resources: experiment::resources(spec),
            rt_runtime_us: spec.rt_runtime_us,
            libvirt: (spec.launcher.as_deref() == Some("libvirt"))
                .then(|| tinyvr_host::libvirt::DEFAULT_URI.to_string()),
        })
        .map_err(e),
    }
}

/// The sink drops what is not addressed to it; it must not answer with
/// ICMP errors that would flow back through the router under test.
fn quiet_sink(ns: &str) -> Result<(), String> {
    tinyvr_host::netns::run_in(Some(ns), || {
        for (k, v) in [("icmp_msgs_per_sec", "0"), ("icmp_msgs_burst", "0")] {
            let p = format!("/proc/sys/net/ipv4/{k}");
            std::fs::write(&p, v)
                .map_err(|e| tinyvr_host::HostError::io(format!("writing {p}"), e))?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}

pub fn down(r: &Running) -> Result<(), String> {
    down_named(r.platform, &r.name)
}

/// Takes a router down and returns once its processes are gone.
fn down_named(platform: Platform, name: &str) -> Result<(), String> {
    match platform {
        Platform::Netns => tinyvr_host::platform_netns::down(name).map_err(|e| e.to_string()),
        Platform::Lxc => tinyvr_lxc::platform::down(
            name,
            Path::new(tinyvr_lxc::platform::DEFAULT_LXCPATH),
            DOWN_TIMEOUT,
        )
        .map(|_| ())
        .map_err(|e| e.to_string()),
        Platform::Vm => tinyvr_qemu::platform::down(name, DOWN_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// What the router's kernel holds now: read in its namespace (netns and
/// LXC), or for a VM the guest init's latest TINYVR-HELD line on its
/// console (printed after READY and after every link, address, route or
/// rule change) with its count of read-backs that found the table not as
/// configured.
pub type HeldNow = (Option<tinyvr_host::verify::Held>, Option<u64>);

pub fn held(r: &Running) -> Result<HeldNow, String> {
    // Every router's watcher (a VM's or container's init, a namespace
    // router's `init --watch`) counts its departures since READY, which
    // show a table lost and back between two read-backs.
    // A migrated VM's console starts afresh; what it said before is kept
    // beside it (`<name>.console.before`).
    let last = held_lines(r).and_then(|p| {
        let mut before = p.clone().into_os_string();
        before.push(".before");
        tinyvr_host::console::all_tagged(&p, "TINYVR-HELD ")
            .pop()
            .or_else(|| tinyvr_host::console::all_tagged(Path::new(&before), "TINYVR-HELD ").pop())
    });
    let departures = last.as_ref().and_then(|l| l["departures"].as_u64());
    let ns = match r.platform {
        // A VM's kernel is the guest's: its latest line is the read-back.
        Platform::Vm => {
            let Some(line) = last else {
                return Ok((None, None));
            };
            let held = serde_json::from_value(line)
                .map_err(|e| format!("router {}: bad TINYVR-HELD line: {e}", r.name))?;
            return Ok((Some(held), departures));
        }
        Platform::Netns => tinyvr_host::netns::open(&r.name).map_err(|e| e.to_string())?,
        Platform::Lxc => {
            let pid = r.ready["init_pid"]
                .as_u64()
                .ok_or("the container's init pid is unknown")?;
            std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| format!("router {}: its namespace: {e}", r.name))?
        }
    };
    tinyvr_host::verify::read_back(ns, &r.cfg)
        .map(|h| (Some(h), departures))
        .map_err(|e| format!("router {}: {e}", r.name))
}

/// Where a router's watcher writes its TINYVR-HELD lines: a VM's console,
/// a container's console log, a namespace router's watch log.
fn held_lines(r: &Running) -> Option<std::path::PathBuf> {
    match r.platform {
        Platform::Vm => Some(
            std::path::PathBuf::from(tinyvr_host::state::DIR).join(format!("{}.console", r.name)),
        ),
        Platform::Lxc => r.ready["lxcpath"]
            .as_str()
            .map(|dir| std::path::Path::new(dir).join(&r.name).join("console.log")),
        Platform::Netns => Some(tinyvr_host::platform_netns::held_log(&r.name)),
    }
}

/// Routers that are up, torn down when dropped (errors, Ctrl-C).
#[derive(Default)]
pub struct Fleet(pub Vec<Running>);

impl Fleet {
    pub fn down_all(&mut self) -> Vec<String> {
        self.0
            .drain(..)
            .filter_map(|r| down(&r).err().map(|e| format!("{}: {e}", r.name)))
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for e in self.down_all() {
            log::error!("tearing down {e}");
        }
    }
}
