//! The measurement topology: a source and a sink namespace, each joined by
//! a veth pair to the router's first (in) and second (out) interface, with
//! addresses, routes and permanent neighbours on every hop, so no ARP or
//! NDP happens on the measured path and no IPv6 chatter is counted.

use crate::{links, netns, HostError};
use serde::Serialize;
use std::net::IpAddr;
use tinyvr_config::values::{from_bits, to_bits};
use tinyvr_config::{CpuList, HostLink, MacAddr, MacvlanMode, Neighbor, Prefix, RouterConfig};

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct End {
    pub netns: String,
    /// The device in `netns` (the host-side name of the router interface).
    pub dev: String,
    pub ip: IpAddr,
    pub mac: MacAddr,
    /// The router's address on this link: the end's gateway.
    pub router_ip: IpAddr,
    pub subnet: Prefix,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Topology {
    pub src: End,
    pub sink: End,
    /// VMs only: the source reaches the VM's tap through a veth and a bridge
    /// in the source namespace, as traffic from a NIC would, so that a VM
    /// that falls behind drops at its tap's queue instead of pushing back on
    /// the generator's socket.
    pub src_bridge: Option<SrcBridge>,
    /// macvlan (netns, LXC) and macvtap (VM): the router's in and out
    /// devices sit on these, one veth end each in the host namespace whose
    /// peers are `src.dev` and `sink.dev`.
    #[serde(default)]
    pub lowers: Option<Lowers>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Lowers {
    /// In the host namespace: [in side, out side].
    pub devs: [String; 2],
    /// RPS on each lower: a macvlan's receive runs in its lower's softirq
    /// (the macvlan has no backlog of its own), so the CPUs the config asks
    /// for the router's interface are steered to here instead.
    pub rps_cpus: [Option<CpuList>; 2],
    /// The router interface's MTU, on the lower and its peer: a macvlan
    /// cannot be larger than its lower.
    pub mtu: [Option<u32>; 2],
}

/// How the source and the sink reach the router's in and out interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datapath {
    /// netns, LXC: a veth pair from each end's namespace to the router.
    Veth,
    /// netns, LXC: a macvlan (bridge mode) in the router on a veth the end feeds.
    Macvlan,
    /// VM: the source writes into the VM's tap itself.
    Tap,
    /// VM: the source reaches the VM's tap through a veth and a bridge.
    Bridge,
    /// VM: a macvtap (bridge mode) on a veth the end feeds.
    Macvtap,
}

impl Datapath {
    pub const NETNS: &'static [&'static str] = &["veth", "macvlan"];
    pub const VM: &'static [&'static str] = &["bridge", "tap", "macvtap"];

    pub fn default_for(for_vm: bool) -> Datapath {
        if for_vm {
            Datapath::Bridge
        } else {
            Datapath::Veth
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Datapath::Veth => "veth",
            Datapath::Macvlan => "macvlan",
            Datapath::Tap => "tap",
            Datapath::Bridge => "bridge",
            Datapath::Macvtap => "macvtap",
        }
    }

    pub fn for_vm(self) -> bool {
        matches!(self, Datapath::Tap | Datapath::Bridge | Datapath::Macvtap)
    }

    /// The datapath named `s` for a VM (`for_vm`) or a netns/LXC router;
    /// the error says which names the platform takes.
    pub fn parse(s: &str, for_vm: bool) -> Result<Datapath, String> {
        let d = match s {
            "veth" => Datapath::Veth,
            "macvlan" => Datapath::Macvlan,
            "tap" => Datapath::Tap,
            "bridge" => Datapath::Bridge,
            "macvtap" => Datapath::Macvtap,
            _ => return Err(Self::expected(s, for_vm)),
        };
        if d.for_vm() != for_vm {
            return Err(Self::expected(s, for_vm));
        }
        Ok(d)
    }

    fn expected(s: &str, for_vm: bool) -> String {
        let (names, platform) = if for_vm {
            (Self::VM, "vm")
        } else {
            (Self::NETNS, "netns and lxc")
        };
        let (last, rest) = names.split_last().expect("names");
        format!(
            "{s:?}: expected {} or {last} for platform {platform}",
            rest.join(", ")
        )
    }

    fn lowered(self) -> bool {
        matches!(self, Datapath::Macvlan | Datapath::Macvtap)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SrcBridge {
    pub bridge: String,
    /// The veth end on the bridge (its peer is `src.dev`).
    pub port: String,
    /// The VM's tap, on the bridge.
    pub tap: String,
}

/// Names inside the source namespace of a VM; the namespace is the
/// router's own, so fixed names cannot collide.
const GEN_DEV: &str = "gen0";
const GEN_PORT: &str = "gen0-br";
const GEN_BRIDGE: &str = "br0";
/// The sink's device when it feeds a lower (the sink namespace is the
/// router's own too).
const SNK_DEV: &str = "snk0";

/// A host address in the same subnet as the router's `a`: the next one,
/// or the previous one when `a` is the last usable.
fn neighbour_addr(a: &Prefix) -> Option<IpAddr> {
    let bits = to_bits(a.addr);
    let host_bits = a.max_len() - a.len;
    if host_bits < 2 {
        return None;
    }
    let last = to_bits(a.network()) + (1u128 << host_bits) - 2;
    let pick = if bits < last { bits + 1 } else { bits - 1 };
    Some(from_bits(a.addr, pick))
}

fn mac_for(router: &str, which: u8) -> MacAddr {
    // FNV-1a of the router name: stable, distinct per router.
    let h = router.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    });
    let b = h.to_be_bytes();
    MacAddr([0x02, 0x74, b[0], b[1], b[2], which])
}

/// A VM interface may carry its own `[interface.host]` of kind `tap` with
/// only NIC settings (vhost, queues, txqueuelen): the topology names and
/// places the tap and keeps those.
fn nic_only(h: &HostLink) -> bool {
    matches!(
        h,
        HostLink::Tap {
            name: None,
            netns: None,
            bridge: None,
            ..
        }
    )
}

/// Plans the ends for a router: pure, no system calls. A VM's source
/// reaches its tap through a veth and a bridge (see [`Topology`]).
pub fn plan(cfg: &RouterConfig, for_vm: bool) -> Result<Topology, String> {
    plan_wired(cfg, Datapath::default_for(for_vm))
}

/// As [`plan`], through the given datapath (which also says the platform:
/// VM or not).
pub fn plan_wired(cfg: &RouterConfig, datapath: Datapath) -> Result<Topology, String> {
    let for_vm = datapath.for_vm();
    if cfg.interfaces.len() < 2 {
        return Err(format!(
            "the topology needs two interfaces (in, out); {} has {}",
            cfg.name,
            cfg.interfaces.len()
        ));
    }
    let end = |i: usize, suffix: &str, which: u8| -> Result<End, String> {
        let ifc = &cfg.interfaces[i];
        if ifc.host.as_ref().is_some_and(|h| !(for_vm && nic_only(h))) {
            return Err(format!(
                "interface[{i}] ({}) has its own [interface.host]: the topology wires the in/out interfaces itself; drop one or the other",
                ifc.name
            ));
        }
        let a = ifc.addresses.iter().find(|a| a.is_ipv4()).ok_or_else(|| {
            format!(
                "interface[{i}] ({}): the topology needs an IPv4 address on it",
                ifc.name
            )
        })?;
        let ip = neighbour_addr(a).ok_or_else(|| {
            format!(
                "interface[{i}] ({}): {a} leaves no room for a second host",
                ifc.name
            )
        })?;
        // A neighbour the config already gives for this address fixes the end's MAC.
        let mac = cfg
            .neighbors
            .iter()
            .find(|n| n.ip == ip && n.dev == ifc.name)
            .map_or(mac_for(&cfg.name, which), |n| n.mac);
        Ok(End {
            netns: format!("{}-{suffix}", cfg.name),
            dev: ifc.host_name(&cfg.name),
            ip,
            mac,
            router_ip: a.addr,
            subnet: Prefix {
                addr: a.network(),
                len: a.len,
            },
        })
    };
    let mut src = end(0, "src", 0x0a)?;
    let mut sink = end(1, "snk", 0x0b)?;
    let src_bridge = (datapath == Datapath::Bridge).then(|| {
        let tap = std::mem::replace(&mut src.dev, GEN_DEV.into());
        SrcBridge {
            bridge: GEN_BRIDGE.into(),
            port: GEN_PORT.into(),
            tap,
        }
    });
    let lowers = if datapath.lowered() {
        let devs = [0, 1].map(|i| format!("{}-p{i}", cfg.name));
        if let Some(d) = devs.iter().find(|d| d.len() > 15) {
            return Err(format!(
                "datapath {}: the lower device {d:?} would be longer than 15 characters; use a router name of at most 12",
                datapath.as_str()
            ));
        }
        if datapath == Datapath::Macvlan {
            if let Some(i) = (0..2).find(|&i| cfg.interfaces[i].xps_cpus.is_some()) {
                return Err(format!(
                    "interface[{i}] ({}).xps_cpus: a macvlan has no transmit queue to steer (it sends in the caller's context); drop it for datapath macvlan",
                    cfg.interfaces[i].name
                ));
            }
        }
        if let Some(ifc) = cfg
            .interfaces
            .iter()
            .find(|i| devs.contains(&i.host_name(&cfg.name)))
        {
            return Err(format!(
                "interface {}: its host-side name {} is the lower of datapath {}; rename the interface",
                ifc.name,
                ifc.host_name(&cfg.name),
                datapath.as_str()
            ));
        }
        src.dev = GEN_DEV.into();
        sink.dev = SNK_DEV.into();
        // A VM steers its own receive inside the guest.
        let rps = |i: usize| {
            (datapath == Datapath::Macvlan)
                .then(|| cfg.interfaces[i].rps_cpus.clone())
                .flatten()
        };
        Some(Lowers {
            devs,
            rps_cpus: [rps(0), rps(1)],
            mtu: [0, 1].map(|i| cfg.interfaces[i].mtu),
        })
    } else {
        None
    };
    Ok(Topology {
        src,
        sink,
        src_bridge,
        lowers,
    })
}

/// Points the router's in/out host sides into the two namespaces and gives
/// the router permanent neighbours for the source and the sink.
pub fn attach(cfg: &mut RouterConfig, t: &Topology, for_vm: bool) {
    for (i, e) in [(0, &t.src), (1, &t.sink)] {
        let ifc = &mut cfg.interfaces[i];
        let bridged = t.src_bridge.as_ref().filter(|_| i == 0);
        let dev = Some(
            bridged
                .map_or(&e.dev, |b| &b.tap)
                .parse()
                .expect("validated name"),
        );
        let lower = t
            .lowers
            .as_ref()
            .map(|l| l.devs[i].parse().expect("checked when planned"));
        ifc.host = Some(if let Some(parent) = lower {
            if for_vm {
                let nic = match ifc.host.take() {
                    Some(HostLink::Tap { nic, .. }) => nic,
                    _ => Default::default(),
                };
                HostLink::Macvtap {
                    parent,
                    mode: MacvlanMode::Bridge,
                    nic,
                }
            } else {
                // Its RPS is the lower's (see Lowers::rps_cpus).
                ifc.rps_cpus = None;
                HostLink::Macvlan {
                    parent,
                    mode: MacvlanMode::Bridge,
                }
            }
        } else if for_vm {
            // A VM's end is its tap, moved into the namespace (and on the
            // source side put on the bridge there).
            let nic = match ifc.host.take() {
                Some(HostLink::Tap { nic, .. }) => nic,
                _ => Default::default(),
            };
            HostLink::Tap {
                name: dev,
                netns: Some(e.netns.clone()),
                bridge: bridged.map(|b| b.bridge.parse().expect("valid name")),
                nic,
            }
        } else {
            HostLink::Veth {
                peer: dev,
                peer_mac: Some(e.mac),
                netns: Some(e.netns.clone()),
                bridge: None,
            }
        });
        let n = Neighbor {
            ip: e.ip,
            mac: e.mac,
            dev: ifc.name.clone(),
        };
        if !cfg.neighbors.iter().any(|x| x.ip == n.ip && x.dev == n.dev) {
            cfg.neighbors.push(n);
        }
    }
}

/// Reads and validates a router config file: what the CLI hands to a
/// platform (the bench hands over the config it built, validated once).
pub fn read(path: &std::path::Path) -> Result<RouterConfig, HostError> {
    tinyvr_init::check::check_file(path).map_err(|l| HostError::Other(l.join("\n")))
}

/// Resolves a validated router config for one platform: names the router
/// after the instance (`--name`: every host-side name derives from it, so
/// one config can run as several routers), checks that its
/// `[interface.host]` kinds belong to the platform (`for_vm`), and with
/// `topology` plans the source/sink ends and attaches them to the config.
/// Pure: every platform calls this before touching the system.
pub fn resolve(
    cfg: &RouterConfig,
    instance: Option<&str>,
    topology: bool,
    for_vm: bool,
) -> Result<(RouterConfig, Option<Topology>), HostError> {
    resolve_wired(cfg, instance, topology, Datapath::default_for(for_vm))
}

/// As [`resolve`], through the given datapath (which says the platform).
pub fn resolve_wired(
    cfg: &RouterConfig,
    instance: Option<&str>,
    topology: bool,
    datapath: Datapath,
) -> Result<(RouterConfig, Option<Topology>), HostError> {
    let for_vm = datapath.for_vm();
    if !for_vm {
        // The baseline and a container share the host's kernel.
        tinyvr_config::sysctl_scope::check_per_netns(cfg)
            .map_err(|e| HostError::Other(e.to_string()))?;
    }
    let mut cfg = cfg.clone();
    if let Some(n) = instance {
        crate::state::check_name("--name", n)?;
        cfg.name = n.to_string();
    }
    for (i, ifc) in cfg.interfaces.iter().enumerate() {
        if ifc.host.as_ref().is_some_and(|h| h.is_vm() != for_vm) {
            let want = if for_vm {
                "tap, macvtap, bridge or vfio"
            } else {
                "veth, macvlan or phys"
            };
            return Err(HostError::Other(format!(
                "interface[{i}].host: this kind belongs to another platform; here it is one of {want}"
            )));
        }
    }
    let topo = if topology {
        Some(plan_wired(&cfg, datapath).map_err(HostError::Other)?)
    } else {
        None
    };
    if let Some(t) = &topo {
        attach(&mut cfg, t, for_vm);
    }
    Ok((cfg, topo))
}

/// Creates the source and sink namespaces (tinyvr's once made), quiet,
/// and the lowers a macvlan or macvtap datapath sits on.
pub fn create_namespaces(t: &Topology, state: &mut crate::state::State) -> Result<(), HostError> {
    let mut host = netns::socket(None)?;
    // A name clash is an error before anything is made.
    for d in t.lowers.iter().flat_map(|l| &l.devs) {
        links::must_be_free(&mut host, d, None)?;
    }
    for ns in [&t.src.netns, &t.sink.netns] {
        crate::platform_netns::create_netns(state, ns)?;
        quiet(ns)?;
    }
    if let Some(l) = &t.lowers {
        for (i, e) in [&t.src, &t.sink].into_iter().enumerate() {
            add_lower(&mut host, &l.devs[i], e, l, i, state)?;
        }
    }
    if let Some(b) = &t.src_bridge {
        // Inside the namespace: deleted with it.
        let mut nl = netns::socket(Some(&t.src.netns))?;
        links::add_bridge(&mut nl, &b.bridge)?;
        links::add_veth(
            &mut nl,
            (&t.src.dev, Some(&t.src.mac)),
            (&b.port, None),
            None,
        )?;
        links::set_master(&mut nl, &b.port, &b.bridge)?;
        for dev in [&b.bridge, &b.port] {
            links::set_up(&mut nl, dev)?;
        }
    }
    Ok(())
}

/// A veth from the end's namespace (`e.dev`) to `dev` in the host's: made
/// whole inside the end's namespace (it would go with it), recorded, and
/// only then is `dev` moved out; quiet, up, with its RPS written and read
/// back.
fn add_lower(
    host: &mut dyn tinyvr_init::netlink::Netlink,
    dev: &str,
    e: &End,
    l: &Lowers,
    i: usize,
    state: &mut crate::state::State,
) -> Result<(), HostError> {
    use crate::state::Resource;
    use std::os::fd::AsRawFd;
    let mut enl = netns::socket(Some(&e.netns))?;
    links::add_veth(&mut enl, (&e.dev, Some(&e.mac)), (dev, None), None)?;
    let index = links::must_index(&mut enl, dev, "the new lower")?;
    // Recorded where it is now, and relocated once it has moved.
    let entry = state.add_made(
        Resource::Link {
            name: dev.into(),
            netns: Some(e.netns.clone()),
        },
        index as u64,
    )?;
    if let Some(m) = l.mtu[i] {
        links::set_mtu(&mut enl, &e.dev, m)?;
        links::set_mtu(&mut enl, dev, m)?;
    }
    let to = netns::open_or_own(None)?;
    links::move_to(&mut enl, dev, to.as_raw_fd(), None)?;
    let moved = links::must_index(host, dev, "the moved lower")?;
    state.relocate(entry, None, moved as u64)?;
    links::quiet_ipv6(dev)?;
    links::set_up(host, dev)?;
    if let Some(c) = &l.rps_cpus[i] {
        tinyvr_init::sysfs::write_queue_masks(dev, "rx", "rps_cpus", c)
            .map_err(|e| HostError::Other(e.to_string()))?;
    }
    Ok(())
}

/// The lowers' RPS as the kernel holds it now, per lower and queue,
/// compared with what the topology asks: the READY json's `datapath`.
fn lowers_held(t: &Topology) -> Result<serde_json::Value, HostError> {
    let Some(l) = &t.lowers else {
        return Ok(serde_json::Value::Null);
    };
    let mut out = Vec::new();
    for (dev, asked) in l.devs.iter().zip(&l.rps_cpus) {
        let mut queues = serde_json::Map::new();
        let masks = tinyvr_init::sysfs::read_queue_masks(dev, "rx", "rps_cpus")
            .map_err(|e| HostError::Other(e.to_string()))?;
        for (name, held) in masks {
            let held = held.map_err(|t| {
                HostError::Other(format!(
                    "lower {dev} {name}: rps_cpus {t:?} is not a CPU mask"
                ))
            })?;
            // Unasked, it is the host's default (rps_default_mask), recorded.
            if let Some(want) = asked.as_ref().filter(|w| !held.same_cpus(w)) {
                return Err(HostError::Other(format!(
                    "lower {dev} {name}: rps_cpus asked CPUs \"{want}\", the kernel holds CPUs \"{held}\""
                )));
            }
            queues.insert(name, held.to_string().into());
        }
        out.push(serde_json::json!({
            "dev": dev,
            "rps_cpus": asked.as_ref().map(|c| c.to_string()),
            "rps_cpus_held": queues,
        }));
    }
    Ok(serde_json::json!({ "lowers": out }))
}

/// After READY: configures both ends from the router's MACs in the READY
/// json and adds the topology to it.
pub fn finish(t: &Topology, ready: &mut serde_json::Value) -> Result<(), HostError> {
    let mac = |i: usize| -> Result<MacAddr, HostError> {
        ready["interfaces"][i]["mac"]
            .as_str()
            .unwrap_or("")
            .parse()
            .map_err(HostError::Other)
    };
    // The ends carry the MACs the router's neighbour entries name (LXC and
    // tap devices get random ones when made).
    for e in [&t.src, &t.sink] {
        let mut nl = netns::socket(Some(&e.netns))?;
        if links::mac_of(&mut nl, &e.dev)? != e.mac {
            links::set_mac(&mut nl, &e.dev, &e.mac)?;
        }
    }
    configure_ends(t, [mac(0)?, mac(1)?])?;
    ready["topology"] = serde_json::to_value(t).expect("a topology serializes");
    ready["datapath"] = lowers_held(t)?;
    Ok(())
}

/// Turns IPv6 off in a namespace before its links exist, so nothing but
/// the offered load crosses the measured links.
pub fn quiet(ns: &str) -> Result<(), HostError> {
    netns::run_in(Some(ns), || {
        for k in ["all", "default"] {
            let p = format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6");
            std::fs::write(&p, "1").map_err(|e| HostError::io(format!("writing {p}"), e))?;
        }
        Ok(())
    })
}

/// Once the router is up: addresses, a default route via the router and a
/// permanent neighbour for it, at both ends.
pub fn configure_ends(t: &Topology, router_macs: [MacAddr; 2]) -> Result<(), HostError> {
    for (e, rmac) in [(&t.src, router_macs[0]), (&t.sink, router_macs[1])] {
        let mut nl = netns::socket(Some(&e.netns))?;
        links::add_address(
            &mut nl,
            &e.dev,
            &Prefix {
                addr: e.ip,
                len: e.subnet.len,
            },
        )?;
        links::set_up(&mut nl, &e.dev)?;
        links::add_neighbor(&mut nl, &e.dev, e.router_ip, rmac)?;
        // Everything else is behind the router.
        let default = Prefix {
            addr: from_bits(e.ip, 0),
            len: 0,
        };
        links::add_route(&mut nl, &default, e.router_ip)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_ends_next_to_the_router() {
        let mut cfg = tinyvr_config::load(include_str!("../../examples/router.toml")).unwrap();
        let t = plan(&cfg, false).unwrap();
        assert!(t.src_bridge.is_none());
        assert_eq!(t.src.ip.to_string(), "10.1.0.2");
        assert_eq!(t.sink.ip.to_string(), "10.2.0.2");
        assert_eq!(
            (t.src.netns.as_str(), t.sink.netns.as_str()),
            ("vr1-src", "vr1-snk")
        );
        assert_eq!(t.src.dev, "vr1-in0");
        assert_eq!(t.sink.subnet.to_string(), "10.2.0.0/24");
        attach(&mut cfg, &t, false);
        assert!(
            matches!(&cfg.interfaces[0].host, Some(HostLink::Veth { netns: Some(n), .. }) if n == "vr1-src")
        );
        assert!(cfg
            .neighbors
            .iter()
            .any(|n| n.ip == t.src.ip && n.mac == t.src.mac));
        assert_eq!(
            t.sink.mac.to_string(),
            "02:00:00:00:02:02",
            "the config's own neighbour entry wins"
        );
        cfg.validate().unwrap();
    }

    #[test]
    fn a_vm_source_reaches_the_tap_through_a_bridge() {
        let mut cfg = tinyvr_config::load(include_str!("../../examples/router.toml")).unwrap();
        cfg.interfaces[0].host = Some(HostLink::Tap {
            name: None,
            netns: None,
            bridge: None,
            nic: tinyvr_config::VirtioNic {
                txqueuelen: Some(50),
                ..Default::default()
            },
        });
        let t = plan(&cfg, true).unwrap();
        let b = t.src_bridge.clone().unwrap();
        assert_eq!((t.src.dev.as_str(), b.tap.as_str()), ("gen0", "vr1-in0"));
        attach(&mut cfg, &t, true);
        match &cfg.interfaces[0].host {
            Some(HostLink::Tap {
                name: Some(n),
                netns: Some(ns),
                bridge: Some(br),
                nic,
            }) => {
                assert_eq!(
                    (n.as_str(), ns.as_str(), br.as_str()),
                    ("vr1-in0", "vr1-src", "br0")
                );
                assert_eq!(nic.txqueuelen, Some(50), "the NIC settings are kept");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &cfg.interfaces[1].host,
            Some(HostLink::Tap { bridge: None, netns: Some(ns), .. }) if ns == "vr1-snk"
        ));
        // A named tap is the user's own wiring: refused with the topology.
        cfg.interfaces[0].host = Some(HostLink::Tap {
            name: Some("x0".parse().unwrap()),
            netns: None,
            bridge: None,
            nic: Default::default(),
        });
        assert!(plan(&cfg, true).is_err());
    }

    #[test]
    fn a_macvlan_or_macvtap_sits_on_a_lower_per_end() {
        let mut cfg = tinyvr_config::load(include_str!("../../examples/router.toml")).unwrap();
        let err = plan_wired(&cfg, Datapath::Macvlan).unwrap_err();
        assert!(err.starts_with("interface[1] (out0).xps_cpus"), "{err}");
        cfg.interfaces[1].xps_cpus = None;
        let t = plan_wired(&cfg, Datapath::Macvlan).unwrap();
        let l = t.lowers.clone().unwrap();
        assert_eq!(l.devs, ["vr1-p0".to_string(), "vr1-p1".to_string()]);
        assert_eq!((t.src.dev.as_str(), t.sink.dev.as_str()), ("gen0", "snk0"));
        // The in interface's RPS goes on its lower, and its MTU on both.
        assert_eq!(
            l.rps_cpus[0].as_ref().map(|c| c.to_string()),
            Some("0".into())
        );
        assert_eq!(l.mtu, [Some(1500), Some(9000)]);
        let mut m = cfg.clone();
        attach(&mut m, &t, false);
        assert!(m.interfaces[0].rps_cpus.is_none());
        assert!(matches!(
            &m.interfaces[1].host,
            Some(HostLink::Macvlan { parent, mode: MacvlanMode::Bridge }) if parent.as_str() == "vr1-p1"
        ));
        m.validate().unwrap();
        // A VM's macvtap keeps the NIC settings; no RPS on the lower.
        cfg.interfaces[0].host = Some(HostLink::Tap {
            name: None,
            netns: None,
            bridge: None,
            nic: tinyvr_config::VirtioNic {
                txqueuelen: Some(5),
                ..Default::default()
            },
        });
        let t = plan_wired(&cfg, Datapath::Macvtap).unwrap();
        assert_eq!(t.lowers.as_ref().unwrap().rps_cpus, [None, None]);
        attach(&mut cfg, &t, true);
        assert!(matches!(
            &cfg.interfaces[0].host,
            Some(HostLink::Macvtap { parent, nic, .. })
                if parent.as_str() == "vr1-p0" && nic.txqueuelen == Some(5)
        ));
        cfg.name = "thirteen-char".into();
        cfg.interfaces[0].host = None;
        cfg.interfaces[1].host = None;
        let err = plan_wired(&cfg, Datapath::Macvtap).unwrap_err();
        assert!(err.contains("\"thirteen-char-p0\""), "{err}");
    }

    #[test]
    fn a_datapath_belongs_to_its_platform() {
        assert_eq!(Datapath::parse("macvtap", true), Ok(Datapath::Macvtap));
        assert_eq!(
            Datapath::parse("macvtap", false).unwrap_err(),
            "\"macvtap\": expected veth or macvlan for platform netns and lxc"
        );
        assert_eq!(
            Datapath::parse("veth", true).unwrap_err(),
            "\"veth\": expected bridge, tap or macvtap for platform vm"
        );
        for d in Datapath::NETNS.iter().chain(Datapath::VM) {
            let vm = Datapath::VM.contains(d);
            assert_eq!(Datapath::parse(d, vm).unwrap().as_str(), *d);
        }
    }

    #[test]
    fn last_address_picks_the_previous_one() {
        assert_eq!(
            neighbour_addr(&"10.0.0.254/24".parse().unwrap())
                .unwrap()
                .to_string(),
            "10.0.0.253"
        );
        assert!(neighbour_addr(&"10.0.0.1/32".parse().unwrap()).is_none());
    }
}
