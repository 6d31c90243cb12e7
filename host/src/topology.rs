//! The measurement topology: a source and a sink namespace, each joined by
//! a veth pair to the router's first (in) and second (out) interface, with
//! addresses, routes and permanent neighbours on every hop, so no ARP or
//! NDP happens on the measured path and no IPv6 chatter is counted.

use crate::{links, netns, HostError};
use serde::Serialize;
use std::net::IpAddr;
use tinyvr_config::values::{from_bits, to_bits};
use tinyvr_config::{HostLink, MacAddr, Neighbor, Prefix, RouterConfig};

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
    plan_wired(cfg, for_vm, for_vm)
}

/// As [`plan`]; for a VM, `src_bridge` false makes the VM's tap itself
/// the source's device (the generator writes into the tap).
pub fn plan_wired(cfg: &RouterConfig, for_vm: bool, src_bridge: bool) -> Result<Topology, String> {
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
    let src_bridge = (for_vm && src_bridge).then(|| {
        let tap = std::mem::replace(&mut src.dev, GEN_DEV.into());
        SrcBridge {
            bridge: GEN_BRIDGE.into(),
            port: GEN_PORT.into(),
            tap,
        }
    });
    Ok(Topology {
        src,
        sink: end(1, "snk", 0x0b)?,
        src_bridge,
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
        ifc.host = Some(if for_vm {
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
    resolve_wired(cfg, instance, topology, for_vm, for_vm)
}

/// As [`resolve`], choosing for a VM whether the source reaches its tap
/// through a bridge (`src_bridge`) or writes into the tap itself.
pub fn resolve_wired(
    cfg: &RouterConfig,
    instance: Option<&str>,
    topology: bool,
    for_vm: bool,
    src_bridge: bool,
) -> Result<(RouterConfig, Option<Topology>), HostError> {
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
        Some(plan_wired(&cfg, for_vm, src_bridge).map_err(HostError::Other)?)
    } else {
        None
    };
    if let Some(t) = &topo {
        attach(&mut cfg, t, for_vm);
    }
    Ok((cfg, topo))
}

/// Creates the source and sink namespaces (tinyvr's once made), quiet.
pub fn create_namespaces(t: &Topology, state: &mut crate::state::State) -> Result<(), HostError> {
    for ns in [&t.src.netns, &t.sink.netns] {
        crate::platform_netns::create_netns(state, ns)?;
        quiet(ns)?;
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
